package streamer_test

import (
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestRemoteReaderRowsOwnTheirBytes: the strings and byte slices a
// RemoteReader decodes do not share the bytes of their event, which lie in
// a 256 KiB block with other events: a consumer that keeps rows (the
// validator, a held shard step, a batch) keeps only their event's bytes,
// not the block. Rows kept by the validator held ten times the memory they
// were counted for before.
func TestRemoteReaderRowsOwnTheirBytes(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 343})
	db := m.DB(t)
	mustExec(t, db, "CREATE DATABASE al")
	mustExec(t, db, "CREATE TABLE al.t (id INT PRIMARY KEY, v VARCHAR(100), b VARBINARY(100), tx TEXT)")
	for i := range 20 {
		mustExec(t, db, "INSERT INTO al.t VALUES (?, REPEAT('v', ?), REPEAT('b', ?), REPEAT('t', ?))", i, 10+i, 20+i, 30+i)
	}
	st, err := streamer.QueryUpstream(testCtx(t), upstreamOf(m))
	if err != nil {
		t.Fatal(err)
	}
	end := st.Master
	r, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	inEvent := func(ev *streamer.Event, p unsafe.Pointer) bool {
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(ev.RawData)))
		return uintptr(p) >= lo && uintptr(p) < lo+uintptr(len(ev.RawData))
	}
	values := 0
	for _, ev := range drain(testCtx(t), t, r, end, nil) {
		re, ok := ev.Event.(*replication.RowsEvent)
		if !ok || len(ev.RawData) == 0 {
			continue
		}
		for _, row := range re.Rows {
			for _, v := range row {
				var p unsafe.Pointer
				switch v := v.(type) {
				case string:
					p = unsafe.Pointer(unsafe.StringData(v))
				case []byte:
					p = unsafe.Pointer(unsafe.SliceData(v))
				default:
					continue
				}
				values++
				if inEvent(ev, p) {
					t.Fatalf("a value of the event ending at %s shares the event's bytes: %q", ev.Pos, v)
				}
			}
		}
	}
	if values < 60 {
		t.Fatalf("%d string values checked, want the 60 written", values)
	}
}

// TestRemoteReaderHeldEventsOutliveBlockReuse: the blocks a RemoteReader
// reads packets into are reused once nothing refers to them, never while a
// consumer holds an event read into one. Events kept while the reader goes
// on over reused blocks (collections forced along the way) keep their
// bytes, their decoded fields and their rows.
func TestRemoteReaderHeldEventsOutliveBlockReuse(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 344})
	db := m.DB(t)
	mustExec(t, db, "CREATE DATABASE ru")
	mustExec(t, db, "CREATE TABLE ru.t (id INT PRIMARY KEY, v MEDIUMTEXT)")
	const stmts, rows = 240, 20 // some 19 MB of binlog, over 70 blocks
	for i := range stmts {
		q := "INSERT INTO ru.t VALUES "
		var args []any
		for j := range rows {
			if j > 0 {
				q += ","
			}
			q += "(?, REPEAT(?, 4000))"
			args = append(args, i*rows+j, string(rune('a'+(i+j)%26)))
		}
		mustExec(t, db, q, args...)
	}
	st, err := streamer.QueryUpstream(testCtx(t), upstreamOf(m))
	if err != nil {
		t.Fatal(err)
	}
	end := st.Master
	// A short queue keeps the reader from reading far ahead of GetEvent:
	// it takes blocks all along the drain, so that a block that comes back
	// is taken again while events are held.
	r, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4},
		streamer.WithEventQueueSize(64))
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	type held struct {
		ev   *streamer.Event
		raw  string
		dump string // the decoded event as printed when it came
	}
	var kept []held
	ctx := testCtx(t)
	reused := streamer.RemoteBlocksReused()
	for n := 0; ; n++ {
		ev, err := r.GetEvent(ctx)
		if err != nil {
			t.Fatalf("GetEvent after %d events: %v", n, err)
		}
		// One event in 97 (some 800 KB apart) in the first 8 MB or so,
		// one in 997 after: the blocks they lie in stay, the others
		// come back. (Events held all along would in the end hold
		// every block tracked for reuse: reuse would stop, as it does
		// for a consumer that keeps events for good.)
		if n%97 == 0 && n < 1000 || n%997 == 0 {
			kept = append(kept, held{ev, string(ev.RawData), fmt.Sprintf("%+v %+v", ev.Header, ev.Event)})
		}
		// The blocks nothing refers to get their finalizers run, and
		// are put back for reuse until the second collection after.
		if n%40 == 39 {
			runtime.GC()
		}
		if ev.Pos.Compare(end) >= 0 {
			break
		}
	}
	if streamer.RemoteBlocksReused() == reused {
		t.Fatalf("the drain ended before any block was reused (%d blocks tracked)", streamer.RemoteBlocksTracked())
	}
	runtime.GC()
	rowsHeld := 0
	for _, h := range kept {
		if string(h.ev.RawData) != h.raw {
			t.Fatalf("the bytes of the event ending at %s changed while it was held", h.ev.Pos)
		}
		if got := fmt.Sprintf("%+v %+v", h.ev.Header, h.ev.Event); got != h.dump {
			t.Fatalf("the event ending at %s changed while it was held:\n%s\nwas\n%s", h.ev.Pos, got, h.dump)
		}
		if re, ok := h.ev.Event.(*replication.RowsEvent); ok && len(re.Rows) > 0 {
			rowsHeld++
		}
	}
	if rowsHeld < 5 {
		t.Fatalf("%d rows events held, want 5 or more", rowsHeld)
	}
}
