package streamer_test

import (
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
