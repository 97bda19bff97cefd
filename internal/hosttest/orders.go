// Package hosttest stands for a host program's code: a sink wrapper that
// counts the orders a task replicates, as a host would write one, and is
// unit-tested against a dmworker.Syncer fed by dmworkertest, with no
// server (see orders_test.go).
package hosttest

import (
	"context"
	"sync"

	"github.com/dmworker/dmworker"
)

// CountingSink passes batches to its Sink and counts the changes to each
// table it saw applied.
type CountingSink struct {
	dmworker.CheckpointSink

	mu     sync.Mutex
	counts map[string]int
}

// Apply applies b, then counts its changes.
func (s *CountingSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	if err := s.CheckpointSink.Apply(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts == nil {
		s.counts = map[string]int{}
	}
	for _, c := range b.Changes {
		s.counts[c.Table.QualifiedName()]++
	}
	return nil
}

// Count returns how many changes to table ("schema.name") were applied.
func (s *CountingSink) Count(table string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[table]
}
