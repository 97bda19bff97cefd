package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/dmworker/dmworker/internal/onlineddl"
	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// A run has two halves, and an event travels one way through them:
//
//	reader -> syncRun.handle (syncer_run.go: decode, filter, route, track
//	          the schema) -> applier (this file: serialApplier;
//	          syncer_parallel.go: parallelApplier) -> sink and checkpoint
//	          store (through runWriter)
//
// syncRun turns events into changes and DDL and tells its applier where
// transactions end; it holds the applier only through the interface, and
// the appliers know nothing of syncRun. Both halves write through one
// runWriter, which builds checkpoints (with the tracked schema when it
// changed) and stores them.
//
// Why two appliers and not a parallel one with one worker: the serial
// applier stores each checkpoint in the sink transaction of its batch, so
// a replay after a crash repeats nothing (exactly once, and no safe mode
// but for a transaction cut at MaxBatchRows), and it works with a sink that
// is not a ConcurrentSink. The parallel applier's checkpoint is a low
// watermark saved apart from the data, with a SafeUntil lease ahead of it:
// every replay after a crash runs in safe mode over the lease. One worker
// would keep the weaker guarantee and add a goroutine hop, causality
// hashing and a queue per change.

// applier applies what a run decoded, in upstream order. Its methods are
// called from the run's goroutine only.
type applier interface {
	// context is what the run reads and applies under: Run's context, or
	// one that also ends when the applier fails on its own (a worker).
	context() context.Context
	// rows takes the changes decoded from one rows event, which ends at
	// pos; safe says they need safe mode (replayed, or SafeMode set);
	// txnEnd that the event ends its transaction. changes is the caller's
	// buffer: rows copies what it keeps.
	rows(ctx context.Context, changes []Change, pos streamer.Position, safe, txnEnd bool) error
	// txnEnd notes a transaction ending at pos (commit), or a real event
	// between transactions at pos that a checkpoint may pass (!commit).
	txnEnd(ctx context.Context, pos streamer.Position, commit bool) error
	// ddl runs exec (a DDL and the checkpoints it stores) once everything
	// before it is applied, with nothing applying meanwhile. exec stores a
	// checkpoint at pos when it returns nil.
	ddl(ctx context.Context, pos streamer.Position, exec func() error) error
	// wakeAt is when the run should stop waiting for the next event and
	// call pause; false for no such moment (leaving one already set).
	wakeAt() (time.Time, bool)
	// settled reports that nothing waits to be applied or saved: the
	// moment wakeAt set may be dropped.
	settled() bool
	// pause applies and saves what waits, the stream having paused.
	pause(ctx context.Context) error
	// failed returns the error the applier failed with on its own, if any:
	// it takes precedence over what the run saw.
	failed() error
	// handleError returns what Run returns when handling an event failed
	// with err.
	handleError(ctx context.Context, err error) error
	// close ends the applier whatever ended the run: err is the error,
	// nil when Run's ctx ended (a stop: what is read is then applied,
	// within the stop timeout). It returns what Run returns.
	close(ctx context.Context, err error) error
}

var (
	_ applier = (*serialApplier)(nil)
	_ applier = (*parallelApplier)(nil)
)

// runWriter is what both halves of a run write through: it builds
// checkpoints and stores them, and applies batches with their checkpoint.
type runWriter struct {
	s       *Syncer
	tracker *schema.Tracker // the run's; carried by a checkpoint when dirty
	// schemaDirty is set when the tracker changed since the last
	// checkpoint that carried it.
	schemaDirty bool
	// online is what is recorded of online schema changes under way,
	// carried in the checkpoint's schema (changes set schemaDirty).
	online    *onlineddl.State
	safeUntil streamer.Position // end of the replay window, from the stored checkpoint
	epoch     int64
	server    string // the upstream's identity, recorded in checkpoints
	// floor, while a shard DDL lock holds some of the run's events, is
	// where checkpoints stay (before the held DDL, with the schema there):
	// a checkpoint never passes an event not applied (shardgroup_syncer.go).
	// floored is set once a checkpoint stayed there: the next one past it
	// carries the schema. Both change only with nothing applying.
	floor   *shardFloor
	floored bool
	// xaFloor, while an XA transaction is prepared and not resolved, is
	// the checkpoint before the oldest such (syncer_xa.go); it changes
	// only in the run's goroutine.
	xaFloor *shardFloor
	// ddlAt, while a DDL event is being handled (the tracker may hold
	// its statements already, the checkpoint is not past it), is its
	// position, and ddlPre the schema before it: a checkpoint before the
	// event carries that one, not the tracker's. They stay set when the
	// event fails, for the checkpoint the run's end stores.
	ddlAt  streamer.Position
	ddlPre []byte
}

// lowFloor is the earlier of the floors, nil when there is none.
func (w *runWriter) lowFloor() *shardFloor {
	f := w.floor
	if x := w.xaFloor; x != nil && (f == nil || x.pos.Compare(f.pos) < 0) {
		f = x
	}
	return f
}

// beginDDL notes that the DDL event at pos is being handled, with the
// schema before it.
func (w *runWriter) beginDDL(pos streamer.Position) {
	w.ddlAt, w.ddlPre = pos, w.schemaState()
}

// endDDL notes that the DDL event is handled: the next checkpoint (at
// its end) carries the tracker's schema.
func (w *runWriter) endDDL() {
	w.ddlAt, w.ddlPre = streamer.Position{}, nil
	w.schemaDirty = true
}

// checkpoint returns the checkpoint at pos.
func (w *runWriter) checkpoint(pos streamer.Position) Checkpoint {
	if f := w.lowFloor(); f != nil && pos.Compare(f.pos) > 0 {
		w.floored = true
		// Everything up to pos may be applied: a replay from the floor
		// is in safe mode up to there.
		safe := pos
		if w.safeUntil.Compare(safe) > 0 {
			safe = w.safeUntil
		}
		return Checkpoint{Task: w.s.cfg.Task, Source: w.s.cfg.Source, Pos: f.pos, SafeUntil: safe, Epoch: w.epoch, Server: w.server, Schema: f.schema}
	}
	cp := Checkpoint{Task: w.s.cfg.Task, Source: w.s.cfg.Source, Pos: pos, Epoch: w.epoch, Server: w.server}
	if !w.safeUntil.IsZero() && pos.Compare(w.safeUntil) < 0 {
		cp.SafeUntil = w.safeUntil
	}
	if w.floored {
		w.floored, w.schemaDirty = false, true
	}
	if w.ddlPre != nil && pos.Compare(w.ddlAt) < 0 {
		// Before the DDL event at hand: the tracker may hold its
		// statements already.
		cp.Schema = w.ddlPre
		return cp
	}
	if w.schemaDirty {
		cp.Schema = w.schemaState()
	}
	return cp
}

// schemaState is the tracked schema (with the online DDL state) as a
// checkpoint stores it; nil when it cannot be marshalled.
func (w *runWriter) schemaState() []byte {
	b, err := w.tracker.Marshal()
	if err == nil {
		b, err = onlineddl.Attach(b, w.online)
	}
	if err != nil {
		return nil
	}
	return b
}

// startCheckpoint is the checkpoint at pos, where a run starts, with the
// schema tracked there (for the validator's feed).
func (w *runWriter) startCheckpoint(pos streamer.Position) Checkpoint {
	return Checkpoint{Task: w.s.cfg.Task, Source: w.s.cfg.Source, Pos: pos, Schema: w.schemaState()}
}

// save stores cp (with no data).
func (w *runWriter) save(ctx context.Context, cp Checkpoint) error {
	if err := w.s.retryBounded(ctx, "save checkpoint", func(ctx context.Context) error { return w.s.store.Save(ctx, cp) }); err != nil {
		return w.s.wrap(cp.Pos, "", "save checkpoint", err)
	}
	w.schemaDirty = false
	if f := w.s.feed.Load(); f != nil {
		f.saved(cp)
	}
	return nil
}

// applyReplaying applies b; when the sink cannot tell whether it took
// effect (ErrOutcomeUnknown), b is switched to safe mode, so that the next
// attempt replays it over what the failed one may have left.
func applyReplaying(ctx context.Context, sink Sink, b *Batch) error {
	err := sink.Apply(ctx, b)
	if errors.Is(err, ErrOutcomeUnknown) {
		b.SafeMode = true
	}
	return err
}

// saveCheckpoint stores a checkpoint at pos with no data and reports it.
func (w *runWriter) saveCheckpoint(ctx context.Context, pos streamer.Position) error {
	if err := w.save(ctx, w.checkpoint(pos)); err != nil {
		return err
	}
	w.s.updateStatus(func(st *SyncerStatus) { st.Checkpoint = pos })
	return nil
}

// applyAt applies changes in one batch with the checkpoint cp: stored by the
// sink in the batch's transaction, or by the store after it.
func (w *runWriter) applyAt(ctx context.Context, changes []Change, safe bool, cp Checkpoint) error {
	s := w.s
	b := &Batch{Changes: changes, SafeMode: safe, Checkpoint: &cp}
	var t0 time.Time
	if s.inst != nil {
		t0 = time.Now()
	}
	if err := s.retryBounded(ctx, "apply batch", func(ctx context.Context) error { return applyReplaying(ctx, s.sink, b) }); err != nil {
		return s.wrap(cp.Pos, "", "apply batch", err)
	}
	if s.inst != nil {
		s.inst.applyDur.observe(time.Since(t0))
		s.inst.addKinds(kindCounts(changes))
	}
	if _, ok := s.store.(sinkStore); !ok {
		// The sink did not store the checkpoint with the data.
		if err := s.retryBounded(ctx, "save checkpoint", func(ctx context.Context) error { return s.store.Save(ctx, cp) }); err != nil {
			return s.wrap(cp.Pos, "", "save checkpoint", err)
		}
	}
	w.schemaDirty = false
	if f := s.feed.Load(); f != nil {
		f.saved(cp)
	}
	return nil
}

// retry runs f until it succeeds, fails with a non-retryable error, or the
// retry budget is spent. A call that got no answer (ErrSinkTimeout) is not
// retried here: its outcome is unknown, so the run ends and the next one
// starts from the stored checkpoint.
func (s *Syncer) retry(ctx context.Context, f func() error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 5*time.Second, s.opts.sinkRetry
	return backoff.Retry(func() error {
		err := f()
		if err == nil || !IsRetryable(err) || errors.Is(err, ErrSinkTimeout) {
			if err != nil {
				return backoff.Permanent(err)
			}
			return nil
		}
		s.log.Warn("retrying sink call", errAttr(err))
		return err
	}, backoff.WithContext(b, ctx))
}

// retryBounded is retry for a call bounded by WithSinkTimeout (an Apply, a
// checkpoint Save): each attempt gets a context that is cancelled when the
// bound passes, and then fails with ErrSinkTimeout.
func (s *Syncer) retryBounded(ctx context.Context, op string, f func(context.Context) error) error {
	return s.retry(ctx, func() error { return s.bounded(ctx, op, f) })
}

// errSinkAbandoned is the cause a bounded call's context is cancelled with.
var errSinkAbandoned = errors.New("abandoned")

// bounded runs f with a context that the sink timeout cancels, logging a
// WARN at half of it; an abandoned call's error wraps ErrSinkTimeout.
func (s *Syncer) bounded(ctx context.Context, op string, f func(context.Context) error) error {
	return boundCall(ctx, s.opts.sinkTimeout, op, s.log, f)
}

// boundCall runs f with a context cancelled after d (d <= 0: no bound),
// logging a WARN at half of d when log is not nil. When d passed and f
// failed, the error is retryable and wraps ErrSinkTimeout.
func boundCall(ctx context.Context, d time.Duration, op string, log *slog.Logger, f func(context.Context) error) error {
	if d <= 0 {
		return f(ctx)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	if log != nil {
		warn := time.AfterFunc(d/2, func() {
			log.Warn("sink call has no answer yet: the downstream may be hung or its connection half-open",
				slog.String("op", op), slog.Duration("waited", time.Since(start).Round(time.Millisecond)), slog.Duration("abandoned after", d))
		})
		defer warn.Stop()
	}
	abandon := time.AfterFunc(d, func() { cancel(errSinkAbandoned) })
	defer abandon.Stop()
	err := f(cctx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), errSinkAbandoned) {
		if log != nil {
			log.Warn("sink call abandoned: no answer in time; the run stops and resumes from the stored checkpoint",
				slog.String("op", op), slog.Duration("timeout", d), errAttr(err))
		}
		return Retryable(fmt.Errorf("%w: %s abandoned after %s: %w", ErrSinkTimeout, op, d, err))
	}
	return err
}

// watchDDL runs f (a DDL, never abandoned) logging a WARN each sink
// timeout while it runs.
func (s *Syncer) watchDDL(f func() error) error {
	d := s.opts.sinkTimeout
	if d <= 0 {
		return f()
	}
	start := time.Now()
	var warn *time.Timer
	var mu sync.Mutex
	warn = time.AfterFunc(d, func() {
		s.log.Warn("DDL still running downstream (it is not abandoned)", slog.Duration("waited", time.Since(start).Round(time.Second)))
		mu.Lock()
		warn.Reset(d)
		mu.Unlock()
	})
	defer func() {
		mu.Lock()
		warn.Stop()
		mu.Unlock()
	}()
	return f()
}

// serialApplier applies changes in batches of whole transactions, each
// with its checkpoint (SyncerConfig.Workers 1): a batch is applied at a
// transaction end once it holds BatchSize changes or FlushInterval has
// passed since its first, when the stream pauses, before a DDL and when Run
// stops. A transaction of more than MaxBatchRows changes is applied in
// parts, the checkpoint staying before it and the rest of it in safe mode.
type serialApplier struct {
	w          *runWriter
	ctx        context.Context
	batch      []Change
	batchSafe  bool
	batchStart time.Time
	lastTxnEnd streamer.Position // end of the last whole transaction read
	midTxn     bool              // the batch holds part of an open transaction
	saved      streamer.Position // the last stored checkpoint
}

// newSerialApplier returns a serial applier for a run that starts at start
// (its checkpoint stored).
func newSerialApplier(ctx context.Context, w *runWriter, start streamer.Position) *serialApplier {
	return &serialApplier{w: w, ctx: ctx, lastTxnEnd: start, saved: start}
}

func (a *serialApplier) context() context.Context { return a.ctx }

func (a *serialApplier) rows(ctx context.Context, changes []Change, pos streamer.Position, safe, txnEnd bool) error {
	if len(a.batch) == 0 {
		a.batchStart = time.Now()
	}
	a.batchSafe = a.batchSafe || safe
	a.midTxn = !txnEnd
	a.batch = append(a.batch, changes...)
	if len(a.batch) >= a.w.s.cfg.MaxBatchRows {
		// A huge transaction: apply what we have, in safe mode from
		// here to its end, checkpoint unchanged.
		return a.flush(ctx, a.lastTxnEnd, true)
	}
	return nil
}

func (a *serialApplier) txnEnd(ctx context.Context, pos streamer.Position, commit bool) error {
	a.lastTxnEnd = pos
	if !commit {
		return nil
	}
	a.midTxn = false
	cfg := &a.w.s.cfg
	if len(a.batch) > 0 && (len(a.batch) >= cfg.BatchSize || time.Since(a.batchStart) >= time.Duration(cfg.FlushInterval)) {
		return a.flush(ctx, pos, false)
	}
	return nil
}

func (a *serialApplier) ddl(ctx context.Context, pos streamer.Position, exec func() error) error {
	if err := a.flush(ctx, a.lastTxnEnd, false); err != nil {
		return err
	}
	if err := exec(); err != nil {
		return err
	}
	a.saved = pos
	return nil
}

func (a *serialApplier) wakeAt() (time.Time, bool) {
	flushEvery := time.Duration(a.w.s.cfg.FlushInterval)
	switch {
	case len(a.batch) > 0 && !a.midTxn:
		return a.batchStart.Add(flushEvery), true
	case len(a.batch) == 0 && !a.saved.Equal(a.lastTxnEnd):
		// Only events with no rows since the last checkpoint (filtered,
		// or between transactions): save it there once nothing more
		// comes for a while.
		return time.Now().Add(flushEvery), true
	}
	return time.Time{}, false
}

func (a *serialApplier) settled() bool { return len(a.batch) == 0 && a.saved.Equal(a.lastTxnEnd) }

func (a *serialApplier) pause(ctx context.Context) error {
	if len(a.batch) == 0 {
		if err := a.w.saveCheckpoint(ctx, a.lastTxnEnd); err != nil {
			return err
		}
		a.saved = a.lastTxnEnd
		return nil
	}
	return a.flush(ctx, a.lastTxnEnd, false)
}

func (a *serialApplier) failed() error { return nil }

func (a *serialApplier) handleError(_ context.Context, err error) error { return err }

// close, at a stop, applies what is read, with the checkpoint at the last
// whole transaction; when the batch ends inside one, the rest of it is
// replayed in safe mode.
func (a *serialApplier) close(ctx context.Context, err error) error {
	if err != nil {
		return err
	}
	return a.flush(afterStop(ctx), a.lastTxnEnd, a.midTxn)
}

// flush applies the batch with a checkpoint at pos. partial means the batch
// ends inside a transaction: the checkpoint stays at pos (the last whole
// transaction) and what follows is replayed in safe mode after a crash.
func (a *serialApplier) flush(ctx context.Context, pos streamer.Position, partial bool) error {
	s := a.w.s
	if len(a.batch) == 0 {
		return nil
	}
	cp := a.w.checkpoint(pos)
	if partial {
		cp.SafeUntil = s.Status().Read
		a.batchSafe = true
	}
	if err := a.w.applyAt(ctx, a.batch, a.batchSafe, cp); err != nil {
		return err
	}
	n := int64(len(a.batch))
	a.batch = nil
	a.batchSafe = partial
	if !partial {
		a.saved = pos
	}
	s.updateStatus(func(st *SyncerStatus) {
		st.Rows += n
		st.Batches++
		if !partial {
			st.Checkpoint = pos
		}
	})
	return nil
}
