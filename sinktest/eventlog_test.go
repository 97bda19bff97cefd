package sinktest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// eventLog is an append-only sink: it keeps the changes, not tables, as a
// sink writing to a message queue would. It de-duplicates a replay by
// Change.TxnPos and TxnIndex: a change at or before the last one logged
// has been logged already.
type eventLog struct {
	mu      sync.Mutex
	log     []dmworker.Change
	last    dmworker.Change // the last change logged with a position
	skipped int             // changes of a replay left out
}

func (l *eventLog) Apply(ctx context.Context, b *dmworker.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range b.Changes {
		if !c.TxnPos.IsZero() && l.last.Table != nil {
			if cmp := c.TxnPos.Compare(l.last.TxnPos); cmp < 0 || cmp == 0 && c.TxnIndex <= l.last.TxnIndex {
				l.skipped++
				continue
			}
		}
		l.log = append(l.log, c)
		if !c.TxnPos.IsZero() {
			l.last = c
		}
	}
	return nil
}

// ExecDDL logs nothing: the log carries each change's table definition.
func (l *eventLog) ExecDDL(ctx context.Context, d *dmworker.DDL) error { return ctx.Err() }

func (l *eventLog) changes() []dmworker.Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dmworker.Change(nil), l.log...)
}

func TestEventLogConformance(t *testing.T) {
	sinktest.RunSinkConformance(t, sinktest.Harness{
		New:          func(t *testing.T) dmworker.Sink { return &eventLog{} },
		Capabilities: sinktest.Log,
		Log:          func(t *testing.T, s dmworker.Sink) []dmworker.Change { return s.(*eventLog).changes() },
	})
}

// failingStore is a checkpoint store whose Save fails once, after a given
// number of saves: a crash between a batch and its checkpoint.
type failingStore struct {
	dmworker.MemoryCheckpointStore
	mu        sync.Mutex
	failAfter int // saves that succeed before the failure; <0: never fail
}

var errCrash = errors.New("simulated crash")

func (s *failingStore) Save(ctx context.Context, cp dmworker.Checkpoint) error {
	s.mu.Lock()
	fail := s.failAfter == 0
	s.failAfter--
	s.mu.Unlock()
	if fail {
		return errCrash
	}
	return s.MemoryCheckpointStore.Save(ctx, cp)
}

// TestEventLogDeduplicatesReplay runs a syncer from built events into the
// event log, fails it between a batch and its checkpoint, and runs it
// again: the changes are replayed with the same transaction positions and
// the log keeps each once.
func TestEventLogDeduplicatesReplay(t *testing.T) {
	b := dmworkertest.NewBinlog()
	if err := b.Define("shop", "CREATE DATABASE shop", "CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(20), qty INT)"); err != nil {
		t.Fatal(err)
	}
	var end streamer.Position
	for i := range 5 {
		tx := b.Begin().Insert("shop", "orders", []any{int64(2 * i), fmt.Sprint("item", i), int64(i)}, []any{int64(2*i + 1), "other", nil})
		if i > 0 {
			tx.Update("shop", "orders", []any{int64(2*i - 2), fmt.Sprint("item", i-1), int64(i - 1)}, []any{int64(2*i - 2), fmt.Sprint("item", i-1), int64(100)})
		}
		var err error
		if end, err = tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.DDL("shop", "ALTER TABLE orders ADD COLUMN note TEXT"); err != nil {
		t.Fatal(err)
	}
	end, err := b.Begin().Delete("shop", "orders", []any{int64(1), "other", nil, nil}).Commit()
	if err != nil {
		t.Fatal(err)
	}

	sink := &eventLog{}
	store := &failingStore{failAfter: 1} // the start's checkpoint, then a crash
	cfg := dmworker.SyncerConfig{Task: "log", Source: "shop-db", Start: b.Start(), SyncerTuning: dmworker.SyncerTuning{FlushInterval: dmworker.Duration(time.Millisecond)}}
	runSyncer := func() error {
		s, err := dmworker.NewSyncer(cfg, sink, append(b.SyncerOptions(), dmworker.WithCheckpointStore(store))...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		werr := dmworkertest.WaitApplied(ctx, s, end)
		cancel()
		if rerr := <-done; rerr != nil {
			return rerr
		}
		return werr
	}
	if err := runSyncer(); !errors.Is(err, errCrash) {
		t.Fatalf("first run: got %v, want the simulated crash", err)
	}
	logged := len(sink.changes())
	if logged == 0 {
		t.Fatal("nothing logged before the crash")
	}
	if err := runSyncer(); err != nil {
		t.Fatalf("second run: %v", err)
	}
	got := sink.changes()
	if sink.skipped == 0 {
		t.Errorf("no change replayed (%d logged before the crash)", logged)
	}
	// 5 transactions of 2 inserts and (but the first) an update, and the
	// delete.
	if want := 5*2 + 4 + 1; len(got) != want {
		t.Fatalf("logged %d changes, want %d", len(got), want)
	}
	for i := 1; i < len(got); i++ {
		a, c := got[i-1], got[i]
		if cmp := c.TxnPos.Compare(a.TxnPos); cmp < 0 || cmp == 0 && c.TxnIndex != a.TxnIndex+1 || cmp > 0 && c.TxnIndex != 0 {
			t.Errorf("change %d at %s #%d after %s #%d", i, c.TxnPos, c.TxnIndex, a.TxnPos, a.TxnIndex)
		}
	}
	last := got[len(got)-1]
	if last.Kind != dmworker.Delete || len(last.Table.Columns) != 4 || last.Before[0] != int64(1) {
		t.Errorf("last change: %s %v", last, last.Before)
	}
	if gtid := last.TxnPos.GTIDSet.String(); gtid != "0-1-6" {
		t.Errorf("the delete's transaction starts after GTID set %q, want 0-1-6", gtid)
	}
}
