package dmworker

import (
	"context"
	"errors"
)

// BulkSink is a Sink with a faster path for loading rows: the snapshot unit
// uses it, when the sink implements it, for the rows it copies on a first
// run (batches of inserts into one table, not in safe mode, with no
// checkpoint). Other sinks and the syncer are unaffected.
type BulkSink interface {
	Sink
	// ApplyBulk has the effect of Apply(ctx, b) for a batch whose changes
	// are all inserts into one table, with SafeMode false and Checkpoint
	// nil: every row or none, in one transaction, b.Fence checked as Apply
	// checks it; a row whose key is taken fails the call with nothing
	// applied, as Apply's plain insert does. When the sink cannot load the
	// batch so (its table's types, the server's settings, a value the fast
	// path would store differently), it returns an error wrapping
	// ErrBulkUnsupported with nothing applied, and the caller uses Apply.
	// Errors are otherwise as Apply's (ErrRetryable, ErrStaleEpoch).
	ApplyBulk(ctx context.Context, b *Batch) error
}

// ErrBulkUnsupported is returned by BulkSink.ApplyBulk for a batch it does
// not load, having applied nothing: the caller applies it with Apply.
var ErrBulkUnsupported = errors.New("dmworker: bulk load not supported for this batch")
