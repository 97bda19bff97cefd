package dmworker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
)

// lostCommitSink applies batches through mysqlsink, and for the batches
// lose picks applies them and then fails as a lost commit reply does: the
// batch is in, the caller is told the outcome is unknown.
type lostCommitSink struct {
	*mysqlsink.Sink
	mu    sync.Mutex
	n     int
	lose  func(n int, b *dmworker.Batch) bool
	fired int
}

func (s *lostCommitSink) lost(b *dmworker.Batch, err error) error {
	if err != nil || len(b.Changes) == 0 {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if !s.lose(s.n, b) {
		return nil
	}
	s.fired++
	return dmworker.Retryable(fmt.Errorf("test: reply of batch %d lost after its commit: %w", s.n, dmworker.ErrOutcomeUnknown))
}

func (s *lostCommitSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	return s.lost(b, s.Sink.Apply(ctx, b))
}

func (s *lostCommitSink) ApplyBulk(ctx context.Context, b *dmworker.Batch) error {
	return s.lost(b, s.Sink.ApplyBulk(ctx, b))
}

func (s *lostCommitSink) Fired() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired
}

// TestOutcomeUnknownReplayed: batches the sink applied but could not
// confirm (ErrOutcomeUnknown) are applied again in safe mode by the
// parallel syncer, with no duplicate key and no row twice; and a snapshot
// copy does not retry such a batch of a keyless table in place, but stops
// and starts the table again, so that its rows are there once.
func TestOutcomeUnknownReplayed(t *testing.T) {
	p := newPair(t, 880, 881, testserver.MariaDBOptions{})
	mustExec(t, p.updb, "CREATE DATABASE ou")
	mustExec(t, p.updb, "CREATE DATABASE seq")
	mustExec(t, p.updb, "CREATE TABLE ou.k (id INT PRIMARY KEY, v VARCHAR(40))")
	mustExec(t, p.updb, "CREATE TABLE ou.nk (a INT, b VARCHAR(40))")
	mustExec(t, p.updb, "INSERT INTO ou.k SELECT seq, CONCAT('pre-', seq) FROM seq.seq_1_to_3000")
	mustExec(t, p.updb, "INSERT INTO ou.nk SELECT seq, CONCAT('pre-', seq) FROM seq.seq_1_to_3000")

	seen := map[string]bool{}
	sink := &lostCommitSink{Sink: p.sink, lose: func(n int, b *dmworker.Batch) bool {
		// The first batch of each table (the copy's), then every fifth
		// batch.
		tbl := b.Changes[0].Table.QualifiedName()
		if !seen[tbl] {
			seen[tbl] = true
			return true
		}
		return n%5 == 0
	}}
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "outcome", Mode: dmworker.ModeAll,
		Snapshot:     dmworker.SnapshotConfig{ChunkRows: 500, Concurrency: 1},
		SyncerTuning: dmworker.SyncerTuning{Workers: 4}}, upstreamOf(p.up), sink,
		dmworker.WithAutoResume(50*time.Millisecond, time.Second, 100))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the copy done and the syncer reading", func() bool { return st.Status().Syncer.Read.Name != "" })
	for i := 0; i < 200; i++ {
		mustExec(t, p.updb, fmt.Sprintf("INSERT INTO ou.k VALUES (%d, 'new'), (%d, 'new')", 10000+2*i, 10001+2*i))
		mustExec(t, p.updb, fmt.Sprintf("INSERT INTO ou.nk VALUES (%d, 'new')", 10000+i))
		if i%10 == 0 {
			mustExec(t, p.updb, fmt.Sprintf("UPDATE ou.k SET v = 'upd' WHERE id <= %d", i+5))
		}
	}
	waitSubTaskSynced(t, st.Status, p)
	if sink.Fired() < 3 {
		t.Fatalf("only %d lost replies injected", sink.Fired())
	}
	if s := st.Status(); s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("subtask %s: %v", s.Stage, s.LastError)
	}
	t.Logf("%d lost replies", sink.Fired())
	for _, tbl := range []string{"ou.k", "ou.nk"} {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}
