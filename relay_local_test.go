package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// realEvent is an event's identity for comparing streams: where it ends, its
// bytes, its transaction and whether it ends one.
type realEvent struct {
	pos    string
	raw    []byte
	gtid   string
	txnEnd bool
}

// readReal reads r until fn says stop, keeping the real (non-artificial)
// events.
func readReal(ctx context.Context, t *testing.T, r streamer.Reader, stop func(*streamer.Event) bool) []realEvent {
	t.Helper()
	var out []realEvent
	for {
		ev, err := r.GetEvent(ctx)
		if err != nil {
			t.Fatalf("GetEvent after %d events: %v", len(out), err)
		}
		if !ev.Artificial() {
			out = append(out, realEvent{pos: ev.Pos.String(), raw: append([]byte(nil), ev.RawData...), gtid: ev.GTID, txnEnd: ev.TxnEnd})
		}
		if stop(ev) {
			return out
		}
	}
}

// TestLocalReaderFollowsLiveRelay: a LocalReader follows a live relay
// directory while the upstream writes and rotates and the relay process is
// restarted in the middle (the reader polls, as from another process; the
// in-process notification is tested in package streamer); the local stream
// equals the remote one event for event, positions and GTIDs included.
func TestLocalReaderFollowsLiveRelay(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 51, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 20)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	rel, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, rel)
	waitRelayed(t, rel, db, errc)

	local, err := streamer.NewLocalReader(dir, streamer.StartAtPosition(streamer.Position{Name: "mysql-bin.000001", Offset: 4}),
		streamer.WithPollInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Read in the background from now on.
	var (
		mu       sync.Mutex
		got      []realEvent
		lastPos  streamer.Position
		readErr  error
		rctx, rc = context.WithCancel(ctx)
		readDone = make(chan struct{})
	)
	go func() {
		defer close(readDone)
		for {
			ev, err := local.GetEvent(rctx)
			if err != nil {
				if rctx.Err() == nil {
					mu.Lock()
					readErr = err
					mu.Unlock()
				}
				return
			}
			if ev.Artificial() {
				continue
			}
			mu.Lock()
			got = append(got, realEvent{pos: ev.Pos.String(), raw: append([]byte(nil), ev.RawData...), gtid: ev.GTID, txnEnd: ev.TxnEnd})
			lastPos = ev.Pos
			mu.Unlock()
		}
	}()

	relayWorkload(t, db, 20, 30)
	if err := rel.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	relayWorkload(t, db, 50, 30) // while no relay runs
	rel2, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	errc2 := runRelay(t, rel2)
	relayWorkload(t, db, 80, 30)
	waitRelayed(t, rel2, db, errc2)

	file, pos := masterPos(t, db)
	end := streamer.Position{Name: file, Offset: pos}
	waitUntil(t, "the local reader at the end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if readErr != nil {
			t.Fatalf("local reader: %v", readErr)
		}
		return lastPos.Compare(end) >= 0
	})
	rc()
	<-readDone
	local.Close()

	remote, err := streamer.NewRemoteReader(upstreamOf(m), streamer.Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	atEnd := func(ev *streamer.Event) bool { return !ev.Artificial() && ev.Pos.Compare(end) >= 0 }
	want := readReal(ctx, t, remote, atEnd)
	for len(got) > len(want) && got[len(got)-1].pos != want[len(want)-1].pos {
		got = got[:len(got)-1] // read past end (a checkpoint event written since)
	}
	sameEvents(t, got, want)
}

// TestPurgeKeepsWhatALocalReaderNeeds: a local reader registered with the
// relay holds back purge at the position it acknowledged; everything it
// still needs stays, and it reads on to the end.
func TestPurgeKeepsWhatALocalReaderNeeds(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 52, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 80)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rel, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, rel)
	waitRelayed(t, rel, db, errc)

	local, err := streamer.NewLocalReader(dir, streamer.StartAtPosition(streamer.Position{Name: "mysql-bin.000001", Offset: 4}),
		streamer.WithRelayTail(rel), streamer.WithRelayRegistry(rel, "syncer-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	// Read into the third file and confirm progress there.
	var acked streamer.RelayPos
	for acked.Name != "mysql-bin.000003" {
		ev, err := local.GetEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.TxnEnd {
			acked = local.RelayPos()
			local.Ack(acked)
		}
	}
	res, err := rel.PurgeOlderThan(time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := streamer.RelayFiles(filepath.Join(dir, acked.SubDir))
	if len(res.Removed) != 2 || files[0] != "mysql-bin.000003" {
		t.Fatalf("purge removed %v and left %v; want the two files before the acknowledged %s", res.Removed, files, acked)
	}
	// The reader goes on to the end of the relay.
	file, pos := masterPos(t, db)
	end := streamer.Position{Name: file, Offset: pos}
	for {
		ev, err := local.GetEvent(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ev.Artificial() && ev.Pos.Compare(end) >= 0 {
			break
		}
	}
}

// sixesTable creates d.t, which sixesInsert fills.
func sixesTable(t testing.TB, db *sql.DB) {
	t.Helper()
	mustExec(t, db, "CREATE DATABASE d")
	mustExec(t, db, "CREATE TABLE d.t (v VARBINARY(2000))")
}

// sixesInsert inserts a row of size bytes into d.t. The statement begins
// with a comment of 160 bytes 0x06, which its annotate event carries: the
// transaction holds 0x06 from about its 64th byte to its 220th. See the test
// of the same name in package streamer.
func sixesInsert(t testing.TB, db *sql.DB, size int) {
	t.Helper()
	mustExec(t, db, fmt.Sprintf("/*%s*/ INSERT INTO d.t VALUES (REPEAT(X'06', %d))", strings.Repeat("\x06", 160), size))
}

// TestLocalReaderFromCheckpointFollowsLiveRelay is a subtask taking a source
// over: a fresh relay copies the upstream's current file from its start, a
// reader of it starts at a checkpoint in the middle of that file (as
// relayReaderFactory opens it) and follows the relay's end while the
// upstream writes one transaction at a time, waiting at the end between
// them. It delivers the upstream's stream from the checkpoint, event for
// event. (The reader used to keep the file's format description as a slice
// of its read buffer after a start in the middle of a file; reading on after
// a wait refills the buffer, and a table map was refused as corrupt, "table
// map with 0 columns", when the byte found there for its post-header length
// was 6.)
func TestLocalReaderFromCheckpointFollowsLiveRelay(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 901, ExtraArgs: []string{"--binlog-annotate-row-events=ON"}})
	db := m.DB(t)
	sixesTable(t, db)
	sixesInsert(t, db, 1)
	file, pos := masterPos(t, db)
	var executed string
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&executed); err != nil {
		t.Fatal(err)
	}
	set, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, executed)
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := streamer.Position{Name: file, Offset: pos, Flavor: streamer.FlavorMariaDB, GTIDSet: set}
	sixesInsert(t, db, 2) // written before the takeover

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rel, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, rel)
	waitRelayed(t, rel, db, errc)
	local, err := streamer.NewLocalReader(dir, streamer.StartAtPosition(checkpoint), streamer.WithRelayTail(rel))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()

	upTo := func() func(*streamer.Event) bool {
		file, pos := masterPos(t, db)
		end := streamer.Position{Name: file, Offset: pos}
		return func(ev *streamer.Event) bool { return !ev.Artificial() && ev.Pos.Compare(end) >= 0 }
	}
	got := readReal(ctx, t, local, upTo())
	for i := range 8 {
		sixesInsert(t, db, 3+i)
		got = append(got, readReal(ctx, t, local, upTo())...)
	}

	remote, err := streamer.NewRemoteReader(upstreamOf(m), checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	want := readReal(ctx, t, remote, upTo())
	sameEvents(t, got, want)
	if len(want) < 9*3 {
		t.Fatalf("only %d events from the checkpoint", len(want))
	}
}

// sameEvents checks that the local reader delivered the remote reader's
// events: positions, GTIDs, transaction ends and bytes.
func sameEvents(t *testing.T, got, want []realEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("local delivered %d real events, remote %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.pos != w.pos || g.gtid != w.gtid || g.txnEnd != w.txnEnd || !bytes.Equal(g.raw, w.raw) {
			t.Fatalf("event %d: local %s %q end=%v, remote %s %q end=%v", i, g.pos, g.gtid, g.txnEnd, w.pos, w.gtid, w.txnEnd)
		}
	}
}
