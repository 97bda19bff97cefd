package dmworker_test

import (
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/sinktest"
)

// TestCheckpointStores runs the checkpoint store conformance suite on the
// in-memory store and on the etcd store against a real embedded etcd.
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
		t.Run(name, func(t *testing.T) { sinktest.RunCheckpointStoreConformance(t, newStore) })
	}
}
