package dmworker_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestCheckpointStores runs the same checks on the in-memory store and on
// the etcd store against a real embedded etcd.
func TestCheckpointStores(t *testing.T) {
	stores := map[string]func(t *testing.T) dmworker.CheckpointStore{
		"memory": func(*testing.T) dmworker.CheckpointStore { return &dmworker.MemoryCheckpointStore{} },
		"etcd": func(t *testing.T) dmworker.CheckpointStore {
			e := testserver.StartEtcd(t)
			s, err := dmworker.NewEtcdCheckpointStore(e.Client, "/test/")
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, ok, err := s.Load(ctx, "t", "src"); ok || err != nil {
				t.Fatalf("empty store: %v %v", ok, err)
			}
			p1, _ := streamer.ParsePosition("mysql-bin.000002:120 mariadb-gtid=0-1-5")
			p2, _ := streamer.ParsePosition("mysql-bin.000002:900 mariadb-gtid=0-1-7")
			if err := s.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "src", Pos: p1, Schema: []byte(`{"v":1}`), Epoch: 3}); err != nil {
				t.Fatal(err)
			}
			// nil Schema keeps the stored one.
			if err := s.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "src", Pos: p2, SafeUntil: p2, Epoch: 3}); err != nil {
				t.Fatal(err)
			}
			cp, ok, err := s.Load(ctx, "t", "src")
			if err != nil || !ok || !cp.Pos.Equal(p2) || !cp.SafeUntil.Equal(p2) || string(cp.Schema) != `{"v":1}` || cp.Epoch != 3 {
				t.Fatalf("loaded %+v %v %v", cp, ok, err)
			}
			// Snapshot is stored as given, binary safe; nil clears it.
			progress := []byte("{\"done\":[1]}\x00\xff")
			if err := s.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "src", Pos: p2, Epoch: 3, Snapshot: progress}); err != nil {
				t.Fatal(err)
			}
			if cp, _, err := s.Load(ctx, "t", "src"); err != nil || !bytes.Equal(cp.Snapshot, progress) || string(cp.Schema) != `{"v":1}` {
				t.Fatalf("snapshot %q schema %q, %v", cp.Snapshot, cp.Schema, err)
			}
			if err := s.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "src", Pos: p2, SafeUntil: p2, Epoch: 3}); err != nil {
				t.Fatal(err)
			}
			if cp, _, err := s.Load(ctx, "t", "src"); err != nil || cp.Snapshot != nil {
				t.Fatalf("snapshot %q after a save without one, %v", cp.Snapshot, err)
			}
			// An older epoch is refused and changes nothing.
			err = s.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "src", Pos: p1, Epoch: 2})
			if !errors.Is(err, dmworker.ErrStaleEpoch) {
				t.Fatalf("stale save: %v", err)
			}
			if cp, _, _ := s.Load(ctx, "t", "src"); !cp.Pos.Equal(p2) {
				t.Fatalf("stale save changed the checkpoint to %s", cp.Pos)
			}
			// Concurrent writers of two epochs: the newer epoch wins for
			// good once stored.
			var wg sync.WaitGroup
			for epoch := int64(4); epoch <= 5; epoch++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 20; i++ {
						err := s.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "src", Pos: p1, Epoch: epoch})
						if err != nil && !errors.Is(err, dmworker.ErrStaleEpoch) {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			if cp, _, _ := s.Load(ctx, "t", "src"); cp.Epoch != 5 {
				t.Fatalf("epoch %d after concurrent saves, want 5", cp.Epoch)
			}
			// Other tasks and sources are separate.
			if _, ok, _ := s.Load(ctx, "t", "other"); ok {
				t.Fatal("a checkpoint for another source")
			}
		})
	}
}
