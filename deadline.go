package dmworker

import (
	"context"
	"time"
)

// waitDeadline is a context with a deadline that lives across several waits
// until it fires or is stopped: a loop that must act by a moment (sync the
// relay, flush a batch) waits on it instead of making a context per event.
type waitDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// context returns the deadline's context, creating it under parent with the
// deadline at when it is not running.
func (d *waitDeadline) context(parent context.Context, at time.Time) context.Context {
	if d.ctx == nil {
		d.ctx, d.cancel = context.WithDeadline(parent, at)
	}
	return d.ctx
}

// stop releases the context; the next call to context starts a new one.
func (d *waitDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	d.ctx, d.cancel = nil, nil
}
