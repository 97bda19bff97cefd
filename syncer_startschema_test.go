package dmworker_test

import (
	"context"
	"errors"
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
