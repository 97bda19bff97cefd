package dmworkertest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// sample builds a binlog of two files: a DDL, two transactions, a rotation,
// one more transaction. It returns the binlog and the position after each
// step.
func sample(t *testing.T) (*dmworkertest.Binlog, []streamer.Position) {
	t.Helper()
	b := dmworkertest.NewBinlog(dmworkertest.WithServerID(7), dmworkertest.WithTime(time.Unix(1700000000, 0)))
	if err := b.Define("db", "CREATE DATABASE db"); err != nil {
		t.Fatal(err)
	}
	var ps []streamer.Position
	add := func(p streamer.Position, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	add(b.DDL("db", "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"))
	add(b.Begin().Insert("db", "t", []any{int64(1), "a"}, []any{int64(2), "b"}).Commit())
	add(b.Begin().Update("db", "t", []any{int64(1), "a"}, []any{int64(1), "aa"}).Delete("db", "t", []any{int64(2), "b"}).Commit())
	add(b.Rotate(), nil)
	add(b.Begin().Insert("db", "t", []any{int64(3), "c"}).Commit())
	return b, ps
}

// readAll reads events until the end.
func readAll(t *testing.T, r streamer.Reader) []*streamer.Event {
	t.Helper()
	var out []*streamer.Event
	for {
		ev, err := r.GetEvent(t.Context())
		if errors.Is(err, streamer.ErrEndOfStream) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

func describe(evs []*streamer.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s at %s gtid=%q end=%v boundary=%v\n", ev.Header.EventType, ev.Pos, ev.GTID, ev.TxnEnd, ev.Boundary)
	}
	return b.String()
}

func TestReaderPositions(t *testing.T) {
	b, ps := sample(t)
	evs := readAll(t, b.NewReader(streamer.Position{}, dmworkertest.StopAtEnd()))
	got := describe(evs)
	want := []string{
		"FormatDescriptionEvent at mysql-bin.000001:",
		"MariadbGTIDListEvent at mysql-bin.000001:",
		"MariadbGTIDEvent at mysql-bin.000001:", `gtid="0-7-1"`,
		"QueryEvent at " + ps[0].String() + ` gtid="0-7-1" end=true boundary=true`,
		"XIDEvent at " + ps[1].String() + ` gtid="0-7-2" end=true boundary=true`,
		"XIDEvent at " + ps[2].String(),
		"RotateEvent at mysql-bin.000002:4 mariadb-gtid=0-7-3",
		"XIDEvent at " + ps[4].String() + ` gtid="0-7-4" end=true`,
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("events lack %q:\n%s", w, got)
		}
	}
	if ps[4].Name != "mysql-bin.000002" || ps[4].GTIDSet.String() != "0-7-4" {
		t.Errorf("last position %s", ps[4])
	}
	// Every event but the rotate starts where the one before ends.
	for i := 1; i < len(evs); i++ {
		prev, ev := evs[i-1], evs[i]
		if prev.Header.EventType == replication.ROTATE_EVENT || ev.Header.EventType == replication.ROTATE_EVENT {
			continue
		}
		if s := ev.Start(); s.Name != prev.Pos.Name || s.Offset != prev.Pos.Offset {
			t.Errorf("event %d (%s) starts at %s, the one before ends at %s", i, ev.Header.EventType, s, prev.Pos)
		}
	}

	// From a file position: the events after it; from a GTID set: the
	// transactions after it.
	for _, start := range []streamer.Position{ps[1], {Flavor: ps[1].Flavor, GTIDSet: ps[1].GTIDSet}} {
		evs := readAll(t, b.NewReader(start, dmworkertest.StopAtEnd()))
		if len(evs) == 0 || evs[0].Header.EventType != replication.MARIADB_GTID_EVENT || evs[0].GTID != "0-7-3" {
			t.Errorf("from %s: first events:\n%s", start, describe(evs))
		}
	}
	if evs := readAll(t, b.NewReader(b.End(), dmworkertest.StopAtEnd())); len(evs) != 0 {
		t.Errorf("from the end: %s", describe(evs))
	}
}

func TestReaderWaitsAndCloses(t *testing.T) {
	b, _ := sample(t)
	r := b.NewReader(b.End())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.GetEvent(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("at the end: %v, want the context's error", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(10 * time.Millisecond)
		if _, err := b.Begin().Insert("db", "t", []any{int64(9), nil}).Commit(); err != nil {
			t.Error(err)
		}
	}()
	ev, err := r.GetEvent(t.Context())
	if err != nil || ev.Header.EventType != replication.MARIADB_GTID_EVENT {
		t.Fatalf("after an append: %v %v", ev, err)
	}
	wg.Wait()
	r.Close()
	if _, err := r.GetEvent(t.Context()); !errors.Is(err, streamer.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestFilesAreBinlogs checks that the files parse as binlog files.
func TestFilesAreBinlogs(t *testing.T) {
	b, _ := sample(t)
	files := b.Files()
	if len(files) != 2 {
		t.Fatalf("%d files", len(files))
	}
	for name, data := range files {
		p := replication.NewBinlogParser()
		p.SetFlavor("mariadb")
		p.SetVerifyChecksum(true)
		n := 0
		err := p.ParseReader(bytes.NewReader(data[4:]), func(e *replication.BinlogEvent) error { n++; return nil })
		if err != nil || n < 3 || !bytes.HasPrefix(data, replication.BinLogFileHeader) {
			t.Errorf("%s: %d events, %v", name, n, err)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	b, _ := sample(t)
	for name, tx := range map[string]*dmworkertest.Tx{
		"unknown table": b.Begin().Insert("db", "nope", []any{int64(1)}),
		"row length":    b.Begin().Insert("db", "t", []any{int64(1)}),
		"value type":    b.Begin().Insert("db", "t", []any{"x", "y"}),
		"too long":      b.Begin().Insert("db", "t", []any{int64(1), "more than ten"}),
		"odd update":    b.Begin().Update("db", "t", []any{int64(1), "a"}),
	} {
		end := b.End()
		if _, err := tx.Commit(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if !b.End().Equal(end) {
			t.Errorf("%s: events written", name)
		}
	}
	if _, err := b.DDL("db", "ALTER TABLE nope ADD COLUMN x INT"); err == nil {
		t.Error("DDL on an unknown table: no error")
	}
}

// captureSink keeps the changes it is given, in a MemSink too.
type captureSink struct {
	*sinktest.MemSink
	mu      sync.Mutex
	changes []dmworker.Change
}

func (s *captureSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	if err := s.MemSink.Apply(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = append(s.changes, b.Changes...)
	return nil
}

// Concurrent is false: one worker, changes in order.
func (s *captureSink) Concurrent() bool { return false }

// TestChangeTxnPos checks the transaction positions the syncer gives
// changes: where each transaction begins, and the change's place in it.
func TestChangeTxnPos(t *testing.T) {
	b, ps := sample(t)
	sink := &captureSink{MemSink: sinktest.NewMemSink()}
	s := newSyncer(t, b, sink)
	stop := run(t, s)
	waitApplied(t, s, b.End())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	type at struct {
		pos streamer.Position
		idx int
	}
	want := []at{{ps[0], 0}, {ps[0], 1}, {ps[1], 0}, {ps[1], 1}}
	// The last transaction begins after the new file's header events.
	if len(sink.changes) != 5 {
		t.Fatalf("%d changes", len(sink.changes))
	}
	for i, w := range want {
		c := sink.changes[i]
		if !c.TxnPos.Equal(w.pos) || c.TxnIndex != w.idx {
			t.Errorf("change %d (%s): transaction %s #%d, want %s #%d", i, c, c.TxnPos, c.TxnIndex, w.pos, w.idx)
		}
	}
	last := sink.changes[4]
	if last.TxnPos.Name != "mysql-bin.000002" || last.TxnPos.GTIDSet.String() != "0-7-3" || last.TxnIndex != 0 {
		t.Errorf("last change: transaction %s #%d", last.TxnPos, last.TxnIndex)
	}
}

func TestSyncerWithoutUpstreamNeeds(t *testing.T) {
	b, _ := sample(t)
	sink := sinktest.NewMemSink()
	for name, c := range map[string]struct {
		cfg  dmworker.SyncerConfig
		opts []dmworker.SyncerOption
	}{
		"no source":         {dmworker.SyncerConfig{Task: "x"}, b.SyncerOptions()},
		"no reader":         {dmworker.SyncerConfig{Task: "x", Source: "s"}, []dmworker.SyncerOption{dmworker.WithStartSchema()}},
		"no start schema":   {dmworker.SyncerConfig{Task: "x", Source: "s"}, []dmworker.SyncerOption{dmworker.WithReaderFactory(b.ReaderFactory())}},
		"no options at all": {dmworker.SyncerConfig{Task: "x", Source: "s"}, nil},
	} {
		if _, err := dmworker.NewSyncer(c.cfg, sink, c.opts...); err == nil || !strings.Contains(err.Error(), "no upstream") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A start schema the tracker cannot take stops Run with it.
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "x", Source: "s"}, sink,
		dmworker.WithReaderFactory(b.ReaderFactory()), dmworker.WithStartSchema("CREATE TABLE t (id INT)"))
	if err != nil {
		t.Fatal(err)
	}
	var se *dmworker.SyncError
	if err := s.Run(t.Context()); !errors.As(err, &se) || se.Statement != "CREATE TABLE t (id INT)" {
		t.Fatalf("bad start schema: %v", err)
	}
}

// TestFilesReadByMariaDBBinlog has mariadb-binlog decode the built files,
// rows included: an independent check of the encoding.
func TestFilesReadByMariaDBBinlog(t *testing.T) {
	tool, err := exec.LookPath("mariadb-binlog")
	if err != nil {
		if testserver.Required() {
			t.Fatal("mariadb-binlog not found (apt-get install mariadb-client)")
		}
		t.Skip("mariadb-binlog not found")
	}
	b, _ := sample(t)
	if err := b.Define("db", typesTable); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, b.Begin().Insert("db", "types", typesRow(1, 1), typesRow(2, -1), typesRow(3, 0)))
	dir := t.TempDir()
	var paths []string
	for name, data := range b.Files() {
		paths = append(paths, filepath.Join(dir, name))
		if err := os.WriteFile(paths[len(paths)-1], data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(paths)
	out, err := exec.Command(tool, append([]string{"--base64-output=decode-rows", "-v"}, paths...)...).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("ERROR")) {
		t.Fatalf("mariadb-binlog: %v\n%s", err, out)
	}
	for _, want := range []string{
		"GTID 0-7-1 ddl", "CREATE TABLE t", "@2='aa'", "Rotate to mysql-bin.000002", "Gtid list [0-7-3]",
		"@13=-12345678901234567890123456789012345.123456789012345678901234567890",
		"@35='-00:00:01.5'", "@36='-12:00:00.0001'", "@31='2024-02-29 12:34:56.000001'",
		"@42=b'101010111100'", "@40=b'00000101'", "@11=-1 (18446744073709551615)",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("mariadb-binlog's output lacks %q", want)
		}
	}
}
