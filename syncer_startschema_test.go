package dmworker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestSyncerStartSchema starts a task at a position before an ALTER TABLE,
// with the table's definition at that position given by WithStartSchema:
// the rows before the ALTER decode with it, where the upstream's current
// definition (which a fresh start reads otherwise) does not fit them.
func TestSyncerStartSchema(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 61})
	mustExec(t, p.updb, "CREATE DATABASE app")
	mustExec(t, p.updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10))")
	file, pos := masterPos(t, p.updb)
	start := streamer.Position{Name: file, Offset: pos}
	mustExec(t, p.updb, "INSERT INTO app.t VALUES (1, 'a')")
	mustExec(t, p.updb, "ALTER TABLE app.t ADD COLUMN w INT")
	mustExec(t, p.updb, "INSERT INTO app.t VALUES (2, 'b', 5)")
	mustExec(t, p.downdb, "CREATE DATABASE app")
	mustExec(t, p.downdb, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10))")

	// Without: the upstream's definition has three columns, the first
	// row two.
	cfg := p.config("without")
	cfg.Start = start
	s, err := dmworker.NewSyncer(cfg, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.Run(ctx); !errors.Is(err, dmworker.ErrSchemaMismatch) {
		t.Fatalf("without a start schema: %v, want ErrSchemaMismatch", err)
	}

	cfg = p.config("with")
	cfg.Start = start
	s, err = dmworker.NewSyncer(cfg, p.sink, dmworker.WithStartSchema("CREATE DATABASE app", "USE app", "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"))
	if err != nil {
		t.Fatal(err)
	}
	r := runSyncer(t, s)
	waitSynced(t, r, p.updb)
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
}

// gatedStore is a CheckpointStore whose first Save waits for release.
type gatedStore struct {
	dmworker.CheckpointStore
	once             sync.Once
	entered, release chan struct{}
}

func (g *gatedStore) Save(ctx context.Context, cp dmworker.Checkpoint) error {
	g.once.Do(func() {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	return g.CheckpointStore.Save(ctx, cp)
}

// TestSyncerStartShownOnceRecorded: a fresh start's status shows its start
// position only once the start is stored, so that a caller who waits for
// it (to write, or to stop) knows a restart resumes there. Before, the
// status showed it while the first save was still retrying (a deadlock on
// the meta table, say); a restart meanwhile started afresh at a later
// binlog end, and the rows written in between were never applied.
func TestSyncerStartShownOnceRecorded(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 362})
	mustExec(t, p.updb, "CREATE DATABASE s")
	mustExec(t, p.updb, "CREATE TABLE s.t (id INT PRIMARY KEY)")
	mustExec(t, p.downdb, "CREATE DATABASE s")
	mustExec(t, p.downdb, "CREATE TABLE s.t (id INT PRIMARY KEY)")
	store := &gatedStore{CheckpointStore: &dmworker.MemoryCheckpointStore{}, entered: make(chan struct{}), release: make(chan struct{})}
	s, err := dmworker.NewSyncer(p.config("gated"), p.sink, dmworker.WithCheckpointStore(store))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-store.entered:
	case err := <-done:
		t.Fatalf("Run returned before saving its start: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no checkpoint saved")
	}
	if st := s.Status(); !st.Read.IsZero() || !st.Checkpoint.IsZero() {
		t.Fatalf("while the start is not stored, the status shows read %s, checkpoint %s", st.Read, st.Checkpoint)
	}
	close(store.release)
	waitUntil(t, "the start shown", func() bool { return s.Status().Read.Name != "" })
	cp, ok, err := store.Load(context.Background(), "gated", upstreamOf(p.up).SourceName())
	if err != nil || !ok || cp.Pos.Compare(s.Status().Read) != 0 {
		t.Fatalf("stored start %s (%v, %v), shown %s", cp.Pos, ok, err, s.Status().Read)
	}
	mustExec(t, p.updb, "INSERT INTO s.t VALUES (1), (2)")
	waitUntil(t, "the rows applied", func() bool {
		var n int
		return p.downdb.QueryRow("SELECT COUNT(*) FROM s.t").Scan(&n) == nil && n == 2
	})
}
