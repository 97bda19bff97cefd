package dmworker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dmworker/dmworker/streamer"
)

// validatorFeed hands the continuous validator what the syncer reads, so
// that the validator does not read and decode the binlog a second time:
// the changes of each rows event and each DDL (in the order read), and the
// checkpoints the syncer stores. The validator takes the changes as they
// come, packs them (its rows hold no pointer into the syncer's decoded
// events), and holds a change to be checked only once a stored checkpoint
// has passed it (runFeed), so it never checks a change the syncer has not
// applied, and takes the checkpoint with it as its own position.
//
// The feed is bounded: when the changes waiting in it, with the rows the
// validator holds (used), would take more than limit bytes (the validator
// fell behind), it drops them and stops, and the validator goes back to
// reading the binlog from its own checkpoint with its own reader, for the
// rest of the syncer's run.
type validatorFeed struct {
	limit int64
	wake  chan struct{} // one pending wake-up for take
	// used is what the validator holds (validator.used); nil: nothing.
	used *atomic.Int64

	mu    sync.Mutex
	begun bool
	start Checkpoint // where the syncer's run starts, with its schema
	cp    Checkpoint // the syncer's last stored checkpoint (schema merged)
	taken streamer.Position
	// done is where the syncer's workers have applied every change
	// before (past cp, between the checkpoints it stores); doneTaken
	// what take returned of it last.
	done, doneTaken streamer.Position
	items           []feedItem
	bytes           int64
	woke            int64 // bytes queued at the last wake-up for changes
	off             bool  // stopped: takes nothing more
	over            bool  // stopped because it overflowed
}

// feedItem is a rows event's changes, or a DDL, at pos.
type feedItem struct {
	pos     streamer.Position
	changes []Change
	ddl     *DDL
	bytes   int64
}

// errFeedOff: the feed stopped (it overflowed, or the validator left it).
var errFeedOff = errors.New("validator: the syncer's feed stopped")

func newValidatorFeed(limit int64) *validatorFeed {
	return &validatorFeed{limit: limit, wake: make(chan struct{}, 1)}
}

func (f *validatorFeed) notify() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// begin records where the syncer's run starts.
func (f *validatorFeed) begin(cp Checkpoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.begun || f.off {
		f.stopLocked(false) // one run per feed
		return
	}
	cp.Pos = cp.Pos.Clone()
	f.begun, f.start, f.cp = true, cp, cp
	f.notify()
}

// rows queues the changes of a rows event at pos (the syncer is about to
// apply them).
func (f *validatorFeed) rows(changes []Change, pos streamer.Position) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return
	}
	var n int64
	for i := range changes {
		n += 96 + valuesSize(changes[i].Before) + valuesSize(changes[i].After)
	}
	f.push(feedItem{pos: pos, changes: slices.Clone(changes), bytes: n})
}

// ddl queues a DDL the syncer applied.
func (f *validatorFeed) ddl(d *DDL) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return
	}
	f.push(feedItem{pos: d.Pos, ddl: &DDL{Schema: d.Schema, Table: d.Table, Query: d.Query, Pos: d.Pos}, bytes: 256})
}

// push queues it, or stops the feed when it would pass the limit (f.mu
// held). It wakes the validator each time another sixteenth of the limit
// is queued, so that changes wait in the feed, decoded, no longer than
// that.
func (f *validatorFeed) push(it feedItem) {
	var used int64
	if f.used != nil {
		used = f.used.Load()
	}
	if len(f.items) > 0 && f.bytes+it.bytes+used > f.limit {
		f.stopLocked(true)
		return
	}
	f.items = append(f.items, it)
	f.bytes += it.bytes
	if f.bytes-f.woke >= f.limit/16 {
		f.woke = f.bytes
		f.notify()
	}
}

// saved records a checkpoint the syncer stored: every change before its
// position is applied.
func (f *validatorFeed) saved(cp Checkpoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off || !f.begun || cp.Pos.Compare(f.cp.Pos) < 0 {
		return
	}
	if cp.Schema == nil {
		cp.Schema = f.cp.Schema
	}
	cp.Pos, cp.Epoch, cp.SafeUntil, cp.Snapshot = cp.Pos.Clone(), 0, streamer.Position{}, nil
	f.cp = cp
	f.notify()
}

// stopOver stops the feed as overflowed: the validator holds too much to
// take more from it.
func (f *validatorFeed) stopOver() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked(true)
}

// applied records that the syncer has applied every change before pos
// (it has not stored a checkpoint there yet).
func (f *validatorFeed) applied(pos streamer.Position) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off || !f.begun || pos.Compare(f.done) <= 0 || pos.Compare(f.cp.Pos) <= 0 {
		return
	}
	f.done = pos.Clone()
	f.notify()
}

// stop stops the feed; the syncer queues nothing more.
func (f *validatorFeed) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked(false)
}

func (f *validatorFeed) stopLocked(over bool) {
	if !f.off {
		f.off, f.over = true, over
	}
	f.items, f.bytes = nil, 0
	f.notify()
}

// usable reports whether the feed still runs.
func (f *validatorFeed) usable() bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.off
}

// waitBegin waits until the syncer's run has started and returns where.
func (f *validatorFeed) waitBegin(ctx context.Context) (Checkpoint, error) {
	for {
		f.mu.Lock()
		off, begun, start := f.off, f.begun, f.start
		f.mu.Unlock()
		switch {
		case off:
			return Checkpoint{}, errFeedOff
		case begun:
			return start, nil
		}
		select {
		case <-ctx.Done():
			return Checkpoint{}, ctx.Err()
		case <-f.wake:
		}
	}
}

// take waits until changes are queued, or the syncer has stored a
// checkpoint past the one take returned last, or applied changes past
// what take returned last, and returns the changes queued (in the order
// read), the checkpoint, and the position before which every change is
// applied (done: the checkpoint's, or past it). It returns errFeedOff once
// the feed stopped.
func (f *validatorFeed) take(ctx context.Context) (items []feedItem, cp Checkpoint, done streamer.Position, err error) {
	for {
		f.mu.Lock()
		if f.off {
			f.mu.Unlock()
			return nil, Checkpoint{}, streamer.Position{}, errFeedOff
		}
		if f.begun && (len(f.items) > 0 || f.cp.Pos.Compare(f.taken) > 0 || f.done.Compare(f.doneTaken) > 0) {
			items = f.items
			f.items, f.bytes, f.woke = make([]feedItem, 0, len(items)), 0, 0
			cp = f.cp
			f.taken = cp.Pos
			done = cp.Pos
			if f.done.Compare(done) > 0 {
				done = f.done
			}
			f.doneTaken = done
			f.mu.Unlock()
			return items, cp, done, nil
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, Checkpoint{}, streamer.Position{}, ctx.Err()
		case <-f.wake:
		}
	}
}

// stopIf stops the feed (f may be nil) and reports whether it had
// overflowed.
func (f *validatorFeed) stopIf() bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked(false)
	return f.over
}
