package dmworker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// applierSink keeps every batch it is given (a ConcurrentSink), and
// fails every Apply with fail when set.
type applierSink struct {
	mu      sync.Mutex
	batches []Batch
	fail    error
}

func (k *applierSink) Apply(_ context.Context, b *Batch) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return k.fail
	}
	c := *b
	c.Changes = slices.Clone(b.Changes)
	if b.Checkpoint != nil {
		cp := *b.Checkpoint
		c.Checkpoint = &cp
	}
	k.batches = append(k.batches, c)
	return nil
}
func (k *applierSink) ExecDDL(context.Context, *DDL) error { return nil }
func (k *applierSink) Concurrent() bool                    { return true }

func (k *applierSink) applied() (batches []Batch, rows int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range k.batches {
		rows += len(b.Changes)
	}
	return slices.Clone(k.batches), rows
}

// applierStore keeps every checkpoint saved.
type applierStore struct {
	mu    sync.Mutex
	saved []Checkpoint
}

func (m *applierStore) Load(context.Context, string, string) (Checkpoint, bool, error) {
	return Checkpoint{}, false, nil
}
func (m *applierStore) Save(_ context.Context, cp Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved = append(m.saved, cp)
	return nil
}
func (m *applierStore) last() Checkpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.saved) == 0 {
		return Checkpoint{}
	}
	return m.saved[len(m.saved)-1]
}

// applierSyncer is a Syncer with no upstream, enough for an applier.
func applierSyncer(cfg SyncerConfig, sink Sink, store CheckpointStore, start streamer.Position) *Syncer {
	cfg.Task, cfg.Source = "t", "src"
	s := &Syncer{cfg: cfg, sink: sink, store: store,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), operators: map[string]errorOperator{}}
	s.status.Checkpoint, s.status.Read = start, start
	s.prog.Begin(start, time.Now())
	return s
}

func posAt(off uint64) streamer.Position { return streamer.Position{Name: "bin.000001", Offset: off} }

var applierTable = &Table{Schema: "s", Name: "t", Columns: []Column{{Name: "id"}, {Name: "v"}}, PrimaryKey: []int{0}}

func applierInserts(from, n int) []Change {
	var out []Change
	for i := from; i < from+n; i++ {
		out = append(out, Change{Kind: Insert, Table: applierTable, After: []any{int64(i), "v"}})
	}
	return out
}

// markRead does what syncRun.handle does with the status before it hands an
// event to the applier.
func markRead(s *Syncer, pos streamer.Position) {
	s.updateStatus(func(st *SyncerStatus) { st.Read = pos; st.Events++ })
}

// TestSerialApplier: batches of whole transactions carry their checkpoint;
// a transaction over MaxBatchRows is applied in parts, in safe mode, with
// the checkpoint before it; a DDL runs after the batch before it; a stop
// applies what is read.
func TestSerialApplier(t *testing.T) {
	ctx := context.Background()
	sink, store := &applierSink{}, &applierStore{}
	cfg := SyncerConfig{}
	cfg.BatchSize, cfg.MaxBatchRows, cfg.FlushInterval = 3, 5, Duration(time.Hour)
	s := applierSyncer(cfg, sink, store, posAt(4))
	var a applier = newSerialApplier(ctx, &runWriter{s: s}, posAt(4))

	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	markRead(s, posAt(100))
	step("rows", a.rows(ctx, applierInserts(0, 2), posAt(100), false, false))
	markRead(s, posAt(110))
	step("commit", a.txnEnd(ctx, posAt(110), true))
	if b, _ := sink.applied(); len(b) != 0 {
		t.Fatalf("2 changes, batch size 3: %d batches applied", len(b))
	}
	if _, ok := a.wakeAt(); !ok || a.settled() {
		t.Fatal("a batch waits between transactions: the run must wake to flush it")
	}
	markRead(s, posAt(200))
	step("rows", a.rows(ctx, applierInserts(2, 2), posAt(200), false, false))
	markRead(s, posAt(210))
	step("commit", a.txnEnd(ctx, posAt(210), true))
	b, rows := sink.applied()
	if len(b) != 1 || rows != 4 || b[0].Checkpoint == nil || !b[0].Checkpoint.Pos.Equal(posAt(210)) || b[0].SafeMode {
		t.Fatalf("after 4 changes: batches %+v", b)
	}
	if !a.settled() {
		t.Fatal("everything applied and saved: settled")
	}

	// A transaction of 6 changes, MaxBatchRows 5.
	markRead(s, posAt(300))
	step("rows", a.rows(ctx, applierInserts(4, 3), posAt(300), false, false))
	markRead(s, posAt(400))
	step("rows", a.rows(ctx, applierInserts(7, 3), posAt(400), false, false))
	b, _ = sink.applied()
	if len(b) != 2 {
		t.Fatalf("MaxBatchRows reached: %d batches", len(b))
	}
	if cp := b[1].Checkpoint; !cp.Pos.Equal(posAt(210)) || !cp.SafeUntil.Equal(posAt(400)) || !b[1].SafeMode {
		t.Fatalf("part of a transaction: checkpoint %+v safe %v, want at the last transaction end, safe until the read position", cp, b[1].SafeMode)
	}
	if _, ok := a.wakeAt(); ok {
		t.Fatal("inside a transaction: no flush moment")
	}
	markRead(s, posAt(500))
	step("rows", a.rows(ctx, applierInserts(10, 1), posAt(500), false, false))
	markRead(s, posAt(510))
	step("commit", a.txnEnd(ctx, posAt(510), true))
	step("ddl", a.ddl(ctx, posAt(600), func() error {
		if b, _ := sink.applied(); len(b) != 3 || !b[2].Checkpoint.Pos.Equal(posAt(510)) || !b[2].SafeMode {
			t.Errorf("the rest of the big transaction, before the DDL: %+v", b)
		}
		return (&runWriter{s: s}).saveCheckpoint(ctx, posAt(600))
	}))
	step("the DDL's transaction end", a.txnEnd(ctx, posAt(600), true))
	if !a.settled() {
		t.Fatal("after the DDL: settled")
	}

	// A stop inside a transaction.
	markRead(s, posAt(700))
	step("rows", a.rows(ctx, applierInserts(11, 1), posAt(700), false, false))
	step("close", a.close(ctx, nil))
	b, rows = sink.applied()
	if last := b[len(b)-1]; len(b) != 4 || rows != 12 || !last.Checkpoint.Pos.Equal(posAt(600)) || !last.Checkpoint.SafeUntil.Equal(posAt(700)) || !last.SafeMode {
		t.Fatalf("stopped inside a transaction: %+v", b)
	}
	if st := s.Status(); !st.Checkpoint.Equal(posAt(600)) || st.Rows != 12 {
		t.Fatalf("status: checkpoint %s rows %d", st.Checkpoint, st.Rows)
	}
}

// TestParallelApplier: a DDL runs once the workers have applied everything
// before it; the checkpoint follows; a worker's failure is what the run
// returns.
func TestParallelApplier(t *testing.T) {
	ctx := context.Background()
	sink, store := &applierSink{}, &applierStore{}
	cfg := SyncerConfig{}
	cfg.BatchSize, cfg.MaxBatchRows, cfg.FlushInterval, cfg.Workers = 10, 100, Duration(time.Hour), 4
	cfg.QueueBytes, cfg.CheckpointInterval = 1<<20, Duration(time.Hour)
	s := applierSyncer(cfg, sink, store, posAt(4))
	w := &runWriter{s: s}
	var a applier = newParallelApplier(ctx, w, posAt(4))
	for i := range 8 {
		pos := posAt(uint64(100 * (i + 1)))
		markRead(s, pos)
		if err := a.rows(a.context(), applierInserts(5*i, 5), pos, false, false); err != nil {
			t.Fatal(err)
		}
		if err := a.txnEnd(a.context(), posAt(uint64(100*(i+1)+10)), true); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.ddl(a.context(), posAt(1000), func() error {
		if _, rows := sink.applied(); rows != 40 {
			t.Errorf("the DDL runs after %d of 40 changes", rows)
		}
		return w.saveCheckpoint(ctx, posAt(1000))
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.txnEnd(a.context(), posAt(1000), true); err != nil {
		t.Fatal(err)
	}
	if !a.settled() {
		t.Fatal("after the DDL: settled")
	}
	if got := store.last(); !got.Pos.Equal(posAt(1000)) {
		t.Fatalf("checkpoint %s after the DDL", got.Pos)
	}

	boom := errors.New("boom")
	sink.mu.Lock()
	sink.fail = boom
	sink.mu.Unlock()
	markRead(s, posAt(1100))
	if err := a.rows(a.context(), applierInserts(100, 1), posAt(1100), false, false); err != nil {
		t.Fatal(err)
	}
	if err := a.txnEnd(a.context(), posAt(1110), true); err != nil {
		t.Fatal(err)
	}
	if err := a.pause(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a worker failed: the applier's context must end")
	}
	if err := a.failed(); !errors.Is(err, boom) {
		t.Fatalf("failed: %v", err)
	}
	if err := a.close(ctx, errors.New("the reader's")); !errors.Is(err, boom) {
		t.Fatalf("close: %v, want the worker's failure", err)
	}
	if got := store.last(); !got.Pos.Equal(posAt(1000)) {
		t.Fatalf("checkpoint %s past a failed change", got.Pos)
	}
}

// TestBatchTable: a failed batch's SyncError names its table only when
// every change of the batch writes that table (the sink's error, wrapped,
// names the one that failed otherwise).
func TestBatchTable(t *testing.T) {
	a := &Table{Schema: "s", Name: "a"}
	a2 := &Table{Schema: "s", Name: "a"} // the same table after a DDL
	b := &Table{Schema: "s", Name: "b"}
	q := func(ts ...*Table) []queued {
		var out []queued
		for _, t := range ts {
			out = append(out, queued{ch: Change{Table: t}})
		}
		return out
	}
	for _, c := range []struct {
		batch []queued
		want  string
	}{
		{q(a), "s.a"},
		{q(a, a, a2), "s.a"},
		{q(a, b), ""},
		{q(b, a, a), ""},
	} {
		if got := batchTable(c.batch); got != c.want {
			t.Errorf("batchTable(%v) = %q, want %q", c.batch, got, c.want)
		}
	}
}
