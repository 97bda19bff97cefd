package dmworker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmworker/dmworker/streamer"
)

// Mode is what a subtask copies: the existing data, the binlog, or both.
type Mode string

// Subtask modes.
const (
	// ModeIncremental replicates the binlog from the start position (or
	// the checkpoint) on.
	ModeIncremental Mode = "incremental"
	// ModeFull copies the existing data (the snapshot unit) and finishes.
	ModeFull Mode = "full"
	// ModeAll copies the existing data, then replicates the binlog from
	// the snapshot's position.
	ModeAll Mode = "all"
)

// SubTaskConfig is one task's share of one source: what it replicates and
// how. It is a plain struct so that it can travel through files and etcd
// (it is the JSON value of the key subtask/<source>/<task>); the upstream's
// connection comes from the source (SourceConfig), not from here.
type SubTaskConfig struct {
	// Name is the task's name; with the source it keys the checkpoint.
	// Required, no "/".
	Name string `json:"name" toml:"name"`
	// Source names the source the subtask reads; with Name it keys the
	// checkpoint, whatever address the upstream is reached through.
	// Default: the upstream's SourceName (in a SourceWorker, the source's
	// Name; otherwise the upstream's Name, or its "host:port" when it has
	// none, which changes with the address: give a name when it may). When
	// the upstream has a Name, Source must be it. A checkpoint stored
	// under the upstream's "host:port" is taken over when Source has none
	// (see CheckpointMover).
	Source string `json:"source,omitempty" toml:"source"`
	// Mode is ModeIncremental, ModeFull or ModeAll. Default incremental.
	Mode Mode `json:"mode,omitempty" toml:"mode"`
	// Start is where incremental replication begins when the task has no
	// checkpoint; zero means the upstream's current position.
	Start streamer.Position `json:"start,omitzero" toml:"-"`
	// Filter, EventFilters and Routes select and rename what is
	// replicated (see SyncerConfig).
	Filter       BlockAllowList    `json:"block-allow-list,omitzero" toml:"block-allow-list"`
	EventFilters []EventFilterRule `json:"event-filters,omitempty" toml:"event-filters"`
	Routes       []RouteRule       `json:"routes,omitempty" toml:"routes"`
	// ShardMode coordinates the DDL of the task's shard tables across its
	// sources (see SyncerConfig.ShardMode and ShardGroup). Default off.
	ShardMode ShardMode `json:"shard-mode,omitempty" toml:"shard-mode"`
	// OnlineDDLConfig says how online schema changes are replicated (see
	// OnlineDDLConfig); on by default. Its keys are the config's own.
	OnlineDDLConfig
	// SyncerTuning tunes the subtask's syncer (see SyncerTuning); zero
	// values take its defaults. Its keys are the config's own ("batch",
	// "workers", ...).
	SyncerTuning
	// Snapshot tunes the copy of existing data in modes full and all.
	Snapshot SnapshotConfig `json:"snapshot,omitzero" toml:"snapshot"`
	// Validation runs a continuous validator beside the syncer (see
	// ValidationConfig). Default off.
	Validation ValidationConfig `json:"validation,omitzero" toml:"validation"`
}

// syncerConfig is the syncer's share of the subtask's config.
func (c SubTaskConfig) syncerConfig(up streamer.UpstreamConfig) SyncerConfig {
	return SyncerConfig{
		Task: c.Name, Source: c.Source, Upstream: up, Start: c.Start.Clone(),
		Filter: c.Filter, EventFilters: c.EventFilters, Routes: c.Routes,
		ShardMode: c.ShardMode, OnlineDDLConfig: c.OnlineDDLConfig, SyncerTuning: c.SyncerTuning,
	}
}

// adjust fills defaults and checks the config against the upstream.
func (c *SubTaskConfig) adjust(up streamer.UpstreamConfig) error {
	if !validName(c.Name) {
		return fmt.Errorf("subtask name %q must be non-empty and hold no '/'", c.Name)
	}
	if c.Mode == "" {
		c.Mode = ModeIncremental
	}
	switch c.Mode {
	case ModeIncremental, ModeFull, ModeAll:
	default:
		return fmt.Errorf("subtask %s: mode %q is none of incremental, full, all", c.Name, c.Mode)
	}
	if c.Source == "" {
		c.Source = up.SourceName()
	} else if up.Name != "" && c.Source != up.Name {
		return fmt.Errorf("subtask %s: source %q is not the upstream's %q", c.Name, c.Source, up.Name)
	}
	if err := c.ShardMode.validate(); err != nil {
		return fmt.Errorf("subtask %s: %w", c.Name, err)
	}
	if c.Workers < 0 {
		return fmt.Errorf("subtask %s: workers %d must not be negative", c.Name, c.Workers)
	}
	if err := c.Validation.adjust(); err != nil {
		return fmt.Errorf("subtask %s: %w", c.Name, err)
	}
	return nil
}

// SubTaskStage is where a subtask is in its life.
//
//	New --Run--> Running <--Pause/Resume--> Paused --Stop--> Stopped
//	              |  a non-retryable error, or     ^
//	              |  auto-resume given up: Paused  |
//	              +--mode full done--> Finished    +-- Stop from any stage
type SubTaskStage string

// Subtask stages.
const (
	SubTaskNew      SubTaskStage = "New"
	SubTaskRunning  SubTaskStage = "Running"
	SubTaskPaused   SubTaskStage = "Paused"
	SubTaskStopped  SubTaskStage = "Stopped"
	SubTaskFinished SubTaskStage = "Finished"
)

// Subtask errors.
var (
	// ErrStage means an operation is not allowed in the subtask's current
	// stage (Update while Running, Resume while Stopped, Run twice, ...).
	ErrStage = errors.New("dmworker: operation not allowed in this stage")
	// ErrImmutableConfig means Update tried to change a field that cannot
	// change on a live subtask: Name, Source or Mode.
	ErrImmutableConfig = errors.New("dmworker: subtask name, source and mode cannot be updated")
)

// Auto-resume defaults; see WithAutoResume.
const (
	defaultResumeInitial  = time.Second
	defaultResumeMax      = time.Minute
	defaultResumeAttempts = 10
)

// WithAutoResume sets how a SubTask resumes by itself after a retryable
// error (a lost connection the reader could not restore, a sink error still
// failing after the syncer's own retries): it waits initial, doubling up to
// max between attempts, and after attempts failures in a row without
// progress it stays Paused with the error. The count starts again only when
// the checkpoint moves: a Resume (by the host or a SourceWorker) does not
// clear it, so a subtask resumed while its fault lasts is paused again at
// its next failure. Errors that trying again cannot cure (relay corruption,
// a relay that stopped, a purged binlog, a DDL the sink refuses, ...) pause
// it at once. Attempts 0 turns auto-resume off. A SourceWorker given it
// applies it to its subtasks and its relay (see SourceWorker).
// Default: 1s, 1m, 10 attempts.
func WithAutoResume(initial, max time.Duration, attempts int) AutoResumeOption {
	return AutoResumeOption{autoResume{initial, max, attempts}}
}

// AutoResumeOption is WithAutoResume's option, taken by NewSubTask and
// NewSourceWorker.
type AutoResumeOption struct{ r autoResume }

func (o AutoResumeOption) applySubTask(t *subTaskOptions) { t.resume = o.r }
func (o AutoResumeOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySubTask(&w.subTaskOptions)
}

// autoResume is WithAutoResume's policy.
type autoResume struct {
	initial, max time.Duration
	attempts     int
}

// subTaskOptions are a SubTask's options, defaults filled in. Its syncer
// gets syncerOptions as they are; a SourceWorker builds its subtasks' from
// its own.
type subTaskOptions struct {
	syncerOptions
	resume       autoResume
	validationDB *sql.DB // WithValidationDB's
}

// defaultSubTaskOptions are the options a SubTask has before its own apply.
func defaultSubTaskOptions() subTaskOptions {
	return subTaskOptions{
		syncerOptions: defaultSyncerOptions(),
		resume:        autoResume{defaultResumeInitial, defaultResumeMax, defaultResumeAttempts},
	}
}

// validate checks the options.
func (o *subTaskOptions) validate() error {
	switch r := o.resume; {
	case r.attempts < 0:
		return fmt.Errorf("auto-resume attempts %d must not be negative", r.attempts)
	case r.attempts > 0 && (r.initial <= 0 || r.max < r.initial):
		return fmt.Errorf("auto-resume waits %s..%s must be positive and ordered", r.initial, r.max)
	}
	return o.syncerOptions.validate()
}

// SubTask runs one task on one source: its units in order (the snapshot of
// existing data in modes full and all, then the Syncer in modes incremental
// and all), with stages the host or a SourceWorker drives. A retryable error
// is resumed automatically with backoff (WithAutoResume); any other error,
// and a fencing refusal (ErrStaleEpoch), leaves the subtask Paused with the
// error in its Status. An upstream that cannot be reached before it has
// ever been (streamer.ErrUnreachable: a wrong host or port) or refuses the
// login (streamer.ErrAccessDenied) pauses it at once; once reached, an
// unreachable upstream is an outage, retried.
//
// Run works until Stop, ctx's end or (mode full) the end of the copy; it
// waits while Paused. Pause, Resume, Update, Stop and Status may be called
// from any goroutine; Pause and Stop return once the running unit has
// stopped writing.
type SubTask struct {
	name   string // cfg.Name and cfg.Source, which never change
	source string
	up     streamer.UpstreamConfig
	sink   Sink
	opts   subTaskOptions
	log    *slog.Logger

	mu       sync.Mutex
	cfg      SubTaskConfig
	syncer   *Syncer
	snap     *snapshotUnit // modes full and all
	store    CheckpointStore
	stage    SubTaskStage
	paused   bool          // Pause asked, or an error paused it
	stopped  bool          // Stop asked
	wake     chan struct{} // closed by Resume, Stop and Update to wake a waiting Run
	cancel   context.CancelFunc
	unitDone chan struct{} // closed when the running unit returns; nil when none runs
	running  bool          // Run is in progress
	done     chan struct{} // closed when Run returns
	unit     string
	lastErr  error
	retries  int
	// streakFrom is the checkpoint when the current run of failures
	// began: retries count until the checkpoint moves past it.
	streakFrom streamer.Position
	unsafe     bool               // the last syncer run was interrupted: see markUnsafe
	metrics    metricsOptions     // the subtask's own (opts has its syncers')
	inst       *syncerInstruments // its syncers' counts; nil without metrics
	validator  *validator         // nil when validation is off
}

// NewSubTask returns a subtask of cfg on the upstream up, writing into sink.
// It validates the configuration and options; nothing runs until Run.
// Checkpoints are kept in the sink when it is a CheckpointSink, else in the
// store given with WithCheckpointStore.
func NewSubTask(cfg SubTaskConfig, up streamer.UpstreamConfig, sink Sink, opts ...SubTaskOption) (*SubTask, error) {
	o := defaultSubTaskOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applySubTask(&o)
		}
	}
	return newSubTask(cfg, up, sink, o)
}

// newSubTask is NewSubTask with its options applied (a SourceWorker builds
// them from its own).
func newSubTask(cfg SubTaskConfig, up streamer.UpstreamConfig, sink Sink, o subTaskOptions) (*SubTask, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("dmworker: subtask %s: %w", cfg.Name, err)
	}
	if err := up.Validate(); err != nil {
		return nil, fmt.Errorf("dmworker: subtask %s: %w", cfg.Name, err)
	}
	if err := cfg.adjust(up); err != nil {
		return nil, fmt.Errorf("dmworker: %w", err)
	}
	if sink == nil {
		return nil, fmt.Errorf("dmworker: subtask %s source %s: a sink is required", cfg.Name, cfg.Source)
	}
	// The subtask collects its syncers' and snapshot's metrics; its
	// syncers (one per build) share one set of counts.
	metrics := o.metrics
	var inst *syncerInstruments
	if metrics.enabled() {
		inst = &syncerInstruments{}
		o.inst, o.syncerOptions.metrics = inst, metrics.child()
	}
	t := &SubTask{
		metrics: metrics,
		inst:    inst,
		name:    cfg.Name,
		source:  cfg.Source,
		up:      up,
		sink:    sink,
		opts:    o,
		log:     o.logger.With(slog.String("component", "subtask"), slog.String("task", cfg.Name), slog.String("source", cfg.Source)),
		stage:   SubTaskNew,
		wake:    make(chan struct{}),
	}
	if err := t.build(cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// build makes the units for cfg (validating it) and installs them.
func (t *SubTask) build(cfg SubTaskConfig) error {
	store := t.opts.checkpointStore
	if store == nil {
		cs, ok := t.sink.(CheckpointSink)
		if !ok {
			return fmt.Errorf("dmworker: subtask %s source %s: the sink keeps no checkpoints; give WithCheckpointStore", cfg.Name, cfg.Source)
		}
		store = sinkStore{s: cs, timeout: t.opts.sinkTimeout}
	}
	s, err := newSyncer(cfg.syncerConfig(t.up), t.sink, t.opts.syncerOptions)
	if err != nil {
		return fmt.Errorf("dmworker: subtask %s source %s: %w", cfg.Name, cfg.Source, err)
	}
	var snap *snapshotUnit
	if cfg.Mode != ModeIncremental {
		if snap, err = newSnapshotUnit(cfg.syncerConfig(t.up), cfg.Snapshot, t.sink, store, t.opts.epoch, t.opts.logger); err != nil {
			return fmt.Errorf("dmworker: subtask %s source %s mode %s: %w", cfg.Name, cfg.Source, cfg.Mode, err)
		}
		snap.sinkTimeout = t.opts.sinkTimeout
	}
	var v *validator
	if m := cfg.Validation.Mode; m != "" && m != ValidationOff {
		db := t.opts.validationDB
		if vs, ok := t.sink.(ValidatorSink); ok && db == nil {
			db = vs.DB()
		}
		if db == nil {
			return fmt.Errorf("dmworker: subtask %s source %s: validation needs the downstream: a ValidatorSink, or WithValidationDB", cfg.Name, cfg.Source)
		}
		v = newValidator(cfg.Validation, cfg.Name, cfg.Source, db, t.log)
	}
	if t.syncer != nil && t.syncer.reached.Load() {
		// The upstream was reached before: a new config does not make an
		// outage a wrong address.
		s.reached.Store(true)
	}
	t.cfg, t.syncer, t.snap, t.store, t.validator = cfg, s, snap, store, v
	return nil
}

// Config returns the subtask's configuration, defaults filled in.
func (t *SubTask) Config() SubTaskConfig {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cfg
}

func (t *SubTask) errorf(op string, format string, args ...any) error {
	return fmt.Errorf("dmworker: subtask %s source %s: %s: %w", t.name, t.source, op, fmt.Errorf(format, args...))
}

// Run runs the subtask's units until Stop, ctx's end or, in mode full, the
// end of the copy; it returns nil then. While Paused it waits for Resume.
// It fails with ErrStage when the subtask is already running or stopped.
func (t *SubTask) Run(ctx context.Context) (err error) {
	defer func() { err = withStack(err) }()
	t.mu.Lock()
	if t.running || t.stopped || t.stage == SubTaskFinished {
		st := t.stage
		t.mu.Unlock()
		return t.errorf("run", "%w: stage %s", ErrStage, st)
	}
	t.running = true
	t.done = make(chan struct{})
	done := t.done
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.running = false
		if t.stage != SubTaskFinished {
			t.stage = SubTaskStopped
			t.stopped = true
		}
		t.mu.Unlock()
		close(done)
	}()

	unregister, err := t.metrics.register(newCollector(
		prometheus.Labels{"task": t.name, "source": t.source, "worker": ""}, subTaskFamilies,
		func(e emitter) { emitSubTask(e, t) }))
	if err != nil {
		return t.errorf("run", "%w", err)
	}
	defer unregister()

	var bo *backoff.ExponentialBackOff
	for {
		t.mu.Lock()
		if t.stopped || ctx.Err() != nil {
			t.mu.Unlock()
			return nil
		}
		if t.paused {
			t.stage = SubTaskPaused
			wake := t.wake
			t.mu.Unlock()
			select {
			case <-wake:
			case <-ctx.Done():
			}
			continue
		}
		t.stage = SubTaskRunning
		uctx, cancel := context.WithCancel(ctx)
		// What the unit and the replay note below still do once it is
		// stopped (Pause, Stop, ctx's end) is bounded from that moment.
		uctx, release := stopBound(uctx, t.opts.stopTimeout)
		t.cancel = cancel
		t.unitDone = make(chan struct{})
		unitDone := t.unitDone
		s := t.syncer
		t.mu.Unlock()

		before := s.Status().Checkpoint
		finished, err := t.runUnits(uctx, s)
		cancel()
		if t.unit == "syncer" {
			// Even a clean stop may leave rows of a transaction it had
			// only begun to read applied past the checkpoint.
			t.unsafe = true
		}
		if t.unsafe {
			// Best effort now, so that whoever runs the task next (this
			// subtask after a pause, or another after Stop) replays safely;
			// runUnits tries again before the next run if this fails.
			mctx, mcancel := context.WithTimeout(afterStop(uctx), 30*time.Second)
			if merr := t.markUnsafe(mctx, s); merr != nil {
				t.log.Warn("could not mark the replay window after an interrupted run", errAttr(merr))
			}
			mcancel()
		}
		if errors.Is(context.Cause(afterStop(uctx)), errStopTimeout) {
			t.log.Warn("stopping took longer than the stop timeout: the rest was abandoned, the next run replays from the checkpoint",
				slog.String("checkpoint", s.Status().Checkpoint.String()), slog.Duration("stop-timeout", t.opts.stopTimeout))
		}
		release()

		t.mu.Lock()
		t.cancel, t.unitDone = nil, nil
		if t.paused {
			// Pause returns once unitDone is closed: its caller sees
			// the stage it asked for.
			t.stage = SubTaskPaused
		}
		close(unitDone)
		switch {
		case t.stopped || ctx.Err() != nil:
			t.mu.Unlock()
			return nil
		case err == nil && finished:
			t.stage, t.unit = SubTaskFinished, ""
			t.mu.Unlock()
			t.log.Info("subtask finished")
			return nil
		case err == nil:
			// Pause stopped the unit (it saved its checkpoint).
			t.mu.Unlock()
			continue
		}
		err = withStack(err)
		t.lastErr = err
		if t.retries == 0 {
			t.streakFrom = before
		}
		if progressed := s.Status().Checkpoint.Compare(t.streakFrom) > 0; progressed {
			t.retries, bo, t.streakFrom = 0, nil, s.Status().Checkpoint
		}
		if t.paused || !retryable(err) || t.retries >= t.opts.resume.attempts {
			t.paused = true
			t.stage = SubTaskPaused
			t.mu.Unlock()
			t.log.Error("subtask paused by an error", errAttr(err))
			continue
		}
		t.retries++
		if bo == nil {
			bo = backoff.NewExponentialBackOff()
			bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = t.opts.resume.initial, t.opts.resume.max, 0
			bo.Reset()
		}
		wait := bo.NextBackOff()
		wake := t.wake
		n := t.retries
		t.mu.Unlock()
		t.log.Warn("subtask resumes after a retryable error", slog.Int("attempt", n), slog.Duration("wait", wait), errAttr(err))
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-wake:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// runUnits runs the units the mode asks for; finished is true when mode
// full has copied everything.
func (t *SubTask) runUnits(ctx context.Context, s *Syncer) (finished bool, err error) {
	t.mu.Lock()
	cfg := t.cfg
	t.mu.Unlock()
	// Before anything reads the checkpoint: take over one stored under
	// the upstream's address, if the source has none.
	if _, _, err := loadCheckpoint(ctx, t.store, cfg.Name, cfg.Source, t.up, t.log); err != nil {
		return false, t.errorf("load checkpoint", "%w", err)
	}
	if t.opts.fenced {
		if err := t.takeOver(ctx, cfg, s); err != nil {
			return false, err
		}
	}
	if cfg.Mode != ModeIncremental {
		// The copy of existing data; it returns at once when it is done
		// already (its checkpoint then has no snapshot progress).
		t.setUnit("snapshot")
		t.mu.Lock()
		snap := t.snap
		t.mu.Unlock()
		if cfg.Mode == ModeAll && !snap.status().Done && !t.opts.skipPrecheck {
			// The syncer would refuse the binlog after the copy: say so
			// before it.
			if err := checkUpstreamBinlog(ctx, t.up); errors.Is(err, ErrBinlogFormat) {
				return false, t.errorf("check upstream", "%w", err)
			}
		}
		if _, err := snap.run(ctx); err != nil {
			return false, err
		}
		if cfg.Mode == ModeFull {
			return true, nil
		}
	}
	t.setUnit("syncer")
	if t.unsafe {
		if err := t.markUnsafe(ctx, s); err != nil {
			return false, err
		}
	}
	t.mu.Lock()
	v := t.validator
	t.mu.Unlock()
	if v != nil {
		// Beside the syncer, stopped with it. Outside a shard mode (whose
		// held and replayed rows the feed does not follow) the syncer
		// hands it what it reads (validator_feed.go).
		var feed *validatorFeed
		if cfg.ShardMode == ShardModeOff {
			feed = newValidatorFeed(v.cfg.MemoryBytes)
			feed.used = &v.used // one budget: the feed and the rows held
			s.feed.Store(feed)
		}
		vctx, vcancel := context.WithCancel(ctx)
		vdone := make(chan struct{})
		go func() {
			defer close(vdone)
			v.run(vctx, t, cfg, s, feed)
		}()
		defer func() {
			s.feed.Store(nil)
			vcancel()
			<-vdone
		}()
	}
	return false, s.Run(ctx)
}

func (t *SubTask) setUnit(u string) {
	t.mu.Lock()
	t.unit = u
	t.mu.Unlock()
}

// takeOver fences off the previous writer when the stored checkpoint is from
// an older epoch (the task moved to this worker): it stores the checkpoint
// under this epoch first, so that every later write of the old epoch is
// refused, then marks everything up to the upstream's current end for a
// safe-mode replay, since the old writer may have applied changes past the
// checkpoint it had stored before it was fenced.
func (t *SubTask) takeOver(ctx context.Context, cfg SubTaskConfig, s *Syncer) error {
	epoch := t.opts.epoch
	cp, found, err := t.store.Load(ctx, cfg.Name, cfg.Source)
	if err != nil {
		return t.errorf("take over", "load checkpoint: %w", err)
	}
	if !found || cp.Epoch == epoch {
		return nil
	}
	if cp.Epoch > epoch {
		return t.errorf("take over", "%w: checkpoint at %s is from epoch %d, this subtask writes under %d", ErrStaleEpoch, cp.Pos, cp.Epoch, epoch)
	}
	old := cp.Epoch
	cp.Epoch = epoch
	if err := t.store.Save(ctx, cp); err != nil {
		return t.errorf("take over", "fence checkpoint at %s under epoch %d: %w", cp.Pos, epoch, err)
	}
	st, err := s.queryUpstream(ctx)
	if err != nil {
		return t.errorf("take over", "%w", err)
	}
	if end := (streamer.Position{Name: st.Master.Name, Offset: st.Master.Offset}); end.Compare(cp.SafeUntil) > 0 && end.Compare(cp.Pos) > 0 {
		cp.SafeUntil = end
		cp.Schema = nil // unchanged
		if err := t.store.Save(ctx, cp); err != nil {
			return t.errorf("take over", "checkpoint at %s safe until %s: %w", cp.Pos, end, err)
		}
	}
	t.log.Info("took the task over from an older epoch", slog.Int64("old-epoch", old), slog.Int64("epoch", epoch),
		slog.String("pos", cp.Pos.String()), slog.String("safe-until", cp.SafeUntil.String()))
	return nil
}

// markUnsafe makes the next run of the syncer replay in safe mode what its
// last run read past the stored checkpoint. A run that stopped may have
// applied rows past its checkpoint: when stopped in the middle of a
// transaction it flushes the rows read so far with the checkpoint at the
// transaction's start, and when a pause, stop or lost connection cut a sink
// call short, the transaction may still commit downstream after the next
// run has loaded the older checkpoint. Saving the checkpoint waits for such
// a transaction (a sink that fences locks the checkpoint row) and sets
// SafeUntil to the furthest position read, which bounds what was applied.
func (t *SubTask) markUnsafe(ctx context.Context, s *Syncer) error {
	read := s.Status().Read
	cp, found, err := t.store.Load(ctx, t.name, t.source)
	if err != nil {
		return t.errorf("mark replay window", "load checkpoint: %w", err)
	}
	t.unsafe = false
	if !found || read.Name == "" || read.Compare(cp.Pos) <= 0 || read.Compare(cp.SafeUntil) <= 0 {
		return nil
	}
	cp.SafeUntil = streamer.Position{Name: read.Name, Offset: read.Offset}
	if err := t.store.Save(ctx, cp); err != nil {
		t.unsafe = true
		return t.errorf("mark replay window", "checkpoint at %s safe until %s: %w", cp.Pos, cp.SafeUntil, err)
	}
	t.log.Info("the next run replays in safe mode", slog.String("pos", cp.Pos.String()), slog.String("safe-until", cp.SafeUntil.String()))
	return nil
}

// retryable reports whether resuming may cure err: a sink error marked
// retryable, or a reader that gave up reconnecting or lost its connection.
func retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrStaleEpoch), errors.Is(err, ErrRelayStopped), errors.Is(err, streamer.ErrRelayCorrupt):
		// (A stopped relay is the SourceWorker's to restart; it resumes
		// the subtask then.)
		return false
	case errors.Is(err, ErrRetryable), errors.Is(err, streamer.ErrRetryExhausted):
		return true
	}
	// A reader error with no classification is a connection fault (see
	// streamer's classify); a classified one (purged binlog, access
	// denied, corruption, an upstream never reached: ErrUnreachable, which
	// the syncer marks retryable once it has reached the upstream) is not
	// cured by trying again.
	var se *streamer.Error
	if errors.As(err, &se) {
		return se.Kind == nil
	}
	return false
}

// Pause stops the running unit (it saves its checkpoint) and returns once it
// has stopped, within the stop timeout (WithStopTimeout); Run then waits for
// Resume. Pausing a New subtask makes Run
// start Paused; pausing a Paused one does nothing. It fails with ErrStage
// once the subtask is Stopped or Finished.
func (t *SubTask) Pause() error {
	t.mu.Lock()
	if t.stopped || t.stage == SubTaskFinished {
		st := t.stage
		t.mu.Unlock()
		return t.errorf("pause", "%w: stage %s", ErrStage, st)
	}
	t.paused = true
	if !t.running {
		t.stage = SubTaskPaused
	}
	cancel, unitDone := t.cancel, t.unitDone
	if t.running && cancel == nil {
		// Run waits to retry: make it pause now.
		t.stage = SubTaskPaused
		close(t.wake)
		t.wake = make(chan struct{})
	}
	t.mu.Unlock()
	if cancel != nil {
		cancel()
		<-unitDone
	}
	return nil
}

// Resume continues a Paused subtask (also one an error paused: the error is
// cleared and the units run again; the count of failures without progress
// is kept, see WithAutoResume). It fails with ErrStage unless the subtask is
// Paused; resuming a Running one does nothing.
func (t *SubTask) Resume() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.stopped || t.stage == SubTaskFinished:
		return t.errorf("resume", "%w: stage %s", ErrStage, t.stage)
	case !t.paused:
		return nil
	}
	t.paused = false
	t.lastErr = nil
	if t.running {
		t.stage = SubTaskRunning // Run's loop is about to run the units
	} else {
		t.stage = SubTaskNew
	}
	close(t.wake)
	t.wake = make(chan struct{})
	return nil
}

// pauseWith pauses the subtask as Pause does and makes cause its last
// error: a SourceWorker does so when the relay the subtask reads has
// stopped. Pausing a paused subtask only replaces its error.
func (t *SubTask) pauseWith(cause error) {
	if err := t.Pause(); err != nil {
		return
	}
	t.mu.Lock()
	if t.paused && !t.stopped {
		t.lastErr = cause
	}
	t.mu.Unlock()
	t.log.Error("subtask paused: its relay stopped", errAttr(cause))
}

// Update replaces the configuration of a Paused (or New) subtask; the new
// one takes effect at Resume (Run). Filters, routes, batch sizes, flush
// interval, safe mode, workers and the start position (used only while no
// checkpoint exists) may change; Name, Source and Mode may not
// (ErrImmutableConfig). It fails with ErrStage in any other stage.
func (t *SubTask) Update(cfg SubTaskConfig) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || t.stage == SubTaskFinished || (t.running && !t.paused) || t.cancel != nil {
		return t.errorf("update", "%w: stage %s (pause it first)", ErrStage, t.stage)
	}
	if err := cfg.adjust(t.up); err != nil {
		return t.errorf("update", "%w", err)
	}
	if cfg.Name != t.cfg.Name || cfg.Source != t.cfg.Source || cfg.Mode != t.cfg.Mode {
		return t.errorf("update", "%w: name %s source %s mode %s", ErrImmutableConfig, cfg.Name, cfg.Source, cfg.Mode)
	}
	return t.build(cfg)
}

// Stop ends the subtask for good: the running unit stops (saving its
// checkpoint), Run returns, and Stop returns after it, within the stop
// timeout (WithStopTimeout). Stopping a Stopped
// subtask does nothing.
func (t *SubTask) Stop() {
	t.mu.Lock()
	t.stopped = true
	if !t.running && t.stage != SubTaskFinished {
		t.stage = SubTaskStopped
	}
	if t.cancel != nil {
		t.cancel()
	}
	close(t.wake)
	t.wake = make(chan struct{})
	done := t.done
	running := t.running
	t.mu.Unlock()
	if running {
		<-done
	}
}

// Skip tells the syncer to pass over the DDL at pos (a *SyncError's Start or
// Pos, see Syncer.Skip) the next time it reaches it; Resume to go on.
func (t *SubTask) Skip(pos streamer.Position) {
	t.mu.Lock()
	s := t.syncer
	t.mu.Unlock()
	s.Skip(pos)
}

// Replace tells the syncer to run stmts instead of the DDL at pos (a
// *SyncError's Start or Pos) the next time it reaches it; Resume to go on.
func (t *SubTask) Replace(pos streamer.Position, stmts ...string) {
	t.mu.Lock()
	s := t.syncer
	t.mu.Unlock()
	s.Replace(pos, stmts...)
}

// SubTaskStatus is a snapshot of a subtask.
type SubTaskStatus struct {
	Name, Source string
	Mode         Mode
	Stage        SubTaskStage
	// Unit is the unit running or last run: "snapshot" or "syncer" ("" before
	// the first run).
	Unit string
	// Epoch is the fencing epoch the subtask writes under (0: unfenced).
	Epoch int64
	// Syncer is the syncer's progress: checkpoint, read position, lag, rows.
	Syncer SyncerStatus
	// Snapshot is the copy's progress in modes full and all: rows and
	// bytes done and estimated, per table.
	Snapshot SnapshotStatus
	// Validator is the continuous validator's progress (zero when
	// validation is off): rows pending, checked, differing, error rows,
	// the position validated up to.
	Validator ValidatorStatus
	// Retries counts the automatic resumes of the current run of errors
	// without progress between them. While the subtask waits to resume
	// after a retryable error, Stage stays Running and LastError holds that
	// error. A subtask that recovered keeps both as they were until the
	// next error (which starts a new count at 1 if the checkpoint moved
	// since) or Resume: compare Syncer.Checkpoint over time to tell a
	// recovered subtask from one still failing.
	Retries int
	// LastError is the error that paused the subtask, or the last one it
	// resumed after (nil when none). Resume clears it.
	LastError error
	// ShardLocks are the shard DDL locks held now that the subtask's
	// source takes part in (reached or waited for), in pessimistic shard
	// mode; nil when none.
	ShardLocks []ShardLockStatus
}

// Status reports the subtask's stage, unit, positions, lag and last error.
func (t *SubTask) Status() SubTaskStatus {
	t.mu.Lock()
	st := SubTaskStatus{Name: t.cfg.Name, Source: t.cfg.Source, Mode: t.cfg.Mode, Stage: t.stage, Unit: t.unit,
		Retries: t.retries, LastError: t.lastErr}
	if t.opts.fenced {
		st.Epoch = t.opts.epoch
	}
	s, snap, v := t.syncer, t.snap, t.validator
	t.mu.Unlock()
	st.Syncer = s.Status()
	st.ShardLocks = s.shardLocks()
	if v != nil {
		st.Validator = v.status()
	}
	if snap != nil {
		st.Snapshot = snap.status()
	}
	return st
}
