package dmworker

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DefaultStopTimeout bounds, unless WithStopTimeout says otherwise, the
// work a Syncer, SubTask or SourceWorker still does once told to stop.
const DefaultStopTimeout = 5 * time.Second

// WithStopTimeout bounds the work a Syncer, SubTask or SourceWorker still
// does once told to stop (Close, Stop, Pause, or the end of Run's context):
// the final batch and checkpoint, the note that makes the next run replay in
// safe mode, the last status report to etcd. Whatever is unreachable or
// stalled (the upstream, the downstream, etcd), stopping returns within d
// (plus the moment it takes to close connections). Work not done by then is
// abandoned, never half applied: a sink call cut short rolls back with the
// checkpoint it carried, so the next run replays from the checkpoint stored
// before, as after a crash; a status report not written is written by the
// next run. A SourceWorker's bound covers its subtasks and syncers: they
// stop within the same d. Default DefaultStopTimeout, 5s.
//
// (KeepAlive and Coordinator need no option: their Close waits at most 2s
// for etcd to revoke their lease, which otherwise expires after its TTL.)
func WithStopTimeout(d time.Duration) StopTimeoutOption { return StopTimeoutOption{d} }

// StopTimeoutOption is WithStopTimeout's option, taken by NewSyncer,
// NewSubTask and NewSourceWorker.
type StopTimeoutOption struct{ d time.Duration }

func (o StopTimeoutOption) applySyncer(s *syncerOptions)   { s.stopTimeout = o.d }
func (o StopTimeoutOption) applySubTask(t *subTaskOptions) { o.applySyncer(&t.syncerOptions) }
func (o StopTimeoutOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySubTask(&w.subTaskOptions)
}

// stopKey is the context key of a stop's bounded context (see stopBound).
type stopKey struct{}

// errStopTimeout is the cause of a stop's bounded context ending.
var errStopTimeout = fmt.Errorf("dmworker: stop timeout reached")

// stopBound returns ctx carrying the context for the work to do after ctx
// ends: that context ends d after ctx does, or earlier with the one an
// enclosing component's ctx carries (so nested components share the outer
// bound, and a component stopped on its own, such as a subtask by Stop,
// gets its own). release frees it; call it once that work is done.
func stopBound(ctx context.Context, d time.Duration) (context.Context, func()) {
	parent, ok := ctx.Value(stopKey{}).(context.Context)
	if !ok {
		parent = context.WithoutCancel(ctx)
	}
	after, cancel := context.WithCancelCause(parent)
	var mu sync.Mutex
	var timer *time.Timer
	released := false
	unwatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !released {
			timer = time.AfterFunc(d, func() { cancel(fmt.Errorf("%w (%s)", errStopTimeout, d)) })
		}
	})
	release := func() {
		unwatch()
		mu.Lock()
		released = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel(context.Canceled)
	}
	return context.WithValue(ctx, stopKey{}, after), release
}

// afterStop returns the context for work that must still be done once ctx
// has ended (a final flush, a checkpoint, a status report): it ends at the
// stop timeout of the component that bound ctx with stopBound.
func afterStop(ctx context.Context) context.Context {
	if after, ok := ctx.Value(stopKey{}).(context.Context); ok {
		return after
	}
	return context.WithoutCancel(ctx) // every Run binds its context: not reached
}
