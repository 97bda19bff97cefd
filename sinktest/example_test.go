package sinktest_test

import (
	"fmt"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/sinktest"
)

// An append-only sink declares the Log capability and reads its log back:
// the suite then runs the subtests that apply to a sink without tables.
func ExampleCapabilities() {
	h := sinktest.Harness{
		New:          func(t *testing.T) dmworker.Sink { return &eventLog{} },
		Capabilities: sinktest.Log,
		Log:          func(t *testing.T, s dmworker.Sink) []dmworker.Change { return s.(*eventLog).changes() },
	}
	_ = func(t *testing.T) { sinktest.RunSinkConformance(t, h) }
	fmt.Println(h.Capabilities&sinktest.Tables != 0, sinktest.AllCapabilities&sinktest.KeyChecks != 0)
	// Output: false true
}

// A checkpoint store is checked from its own test, with a new store (or a
// new client on a shared backend) per subtest.
func ExampleRunCheckpointStoreConformance() {
	_ = func(t *testing.T) {
		sinktest.RunCheckpointStoreConformance(t, func(t *testing.T) dmworker.CheckpointStore {
			return &dmworker.MemoryCheckpointStore{}
		})
	}
}
