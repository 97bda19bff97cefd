package hosttest

import (
	"context"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// TestSyncerWithoutServer drives a Syncer from built events into
// sinktest's in-memory sink, through the host's CountingSink, with no
// server: rows, a DDL, a rotation, a restart from the checkpoint.
func TestSyncerWithoutServer(t *testing.T) {
	b := dmworkertest.NewBinlog()
	if err := b.Define("shop", "CREATE DATABASE shop",
		"CREATE TABLE orders (id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, total DECIMAL(10,2), placed DATETIME(3))"); err != nil {
		t.Fatal(err)
	}
	commit := func(tx *dmworkertest.Tx) streamer.Position {
		t.Helper()
		pos, err := tx.Commit()
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	commit(b.Begin().Insert("shop", "orders",
		[]any{int64(1), "ann", "10.50", "2026-01-02 03:04:05.678"},
		[]any{int64(2), "bob", nil, nil}))
	commit(b.Begin().Update("shop", "orders",
		[]any{int64(2), "bob", nil, nil}, []any{int64(2), "bob", "99.99", "2026-01-03 00:00:00.000"}))

	mem := sinktest.NewMemSink()
	sink := &CountingSink{CheckpointSink: mem}
	cfg := dmworker.SyncerConfig{Task: "orders", Source: "shop-db", Start: b.Start(),
		SyncerTuning: dmworker.SyncerTuning{FlushInterval: dmworker.Duration(5 * time.Millisecond)}}
	runUntil := func(pos streamer.Position) {
		t.Helper()
		s, err := dmworker.NewSyncer(cfg, sink, b.SyncerOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		werr := dmworkertest.WaitApplied(ctx, s, pos)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if werr != nil {
			t.Fatal(werr)
		}
	}
	runUntil(b.End())
	want := [][]any{
		{int64(1), "ann", "10.50", "2026-01-02 03:04:05.678"},
		{int64(2), "bob", "99.99", "2026-01-03 00:00:00.000"},
	}
	checkRows(t, mem.Rows("shop", "orders"), want)
	if n := sink.Count("shop.orders"); n != 3 {
		t.Errorf("counted %d changes, want 3", n)
	}

	// More events after a restart: a DDL, a new file, a delete.
	if _, err := b.DDL("shop", "ALTER TABLE orders ADD COLUMN note VARCHAR(100)"); err != nil {
		t.Fatal(err)
	}
	b.Rotate()
	end := commit(b.Begin().
		Delete("shop", "orders", []any{int64(1), "ann", "10.50", "2026-01-02 03:04:05.678", nil}).
		Insert("shop", "orders", []any{int64(3), "cy", "0.01", nil, "gift"}))
	runUntil(end)
	checkRows(t, mem.Rows("shop", "orders"), [][]any{
		{int64(2), "bob", "99.99", "2026-01-03 00:00:00.000", nil},
		{int64(3), "cy", "0.01", nil, "gift"},
	})
	if n := sink.Count("shop.orders"); n != 5 {
		t.Errorf("counted %d changes, want 5 (nothing applied twice)", n)
	}
	if ddls := mem.DDLs(); len(ddls) != 1 || ddls[0].Table != "orders" {
		t.Errorf("DDLs: %+v", ddls)
	}
	cp, ok, err := mem.LoadCheckpoint(t.Context(), "orders", "shop-db")
	if err != nil || !ok || !cp.Pos.Equal(end) {
		t.Errorf("checkpoint %s (found %v, %v), want %s", cp.Pos, ok, err, end)
	}
}

func checkRows(t *testing.T, got, want [][]any) {
	t.Helper()
	sinktest.SortRows(got)
	sinktest.SortRows(want)
	if len(got) != len(want) {
		t.Fatalf("got rows %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("row %d: got %v, want %v", i, got[i], want[i])
		}
		for j := range want[i] {
			if sinktest.CompareValues(got[i][j], want[i][j]) != 0 {
				t.Errorf("row %d column %d: got %#v, want %#v", i, j, got[i][j], want[i][j])
			}
		}
	}
}
