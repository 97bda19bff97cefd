package dmworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/streamer"
)

// SourceConfig is one upstream source as a SourceWorker serves it: how to
// reach it and whether to keep a relay log of it. It is a plain struct so
// that it can travel through files and etcd (it is the JSON value of the key
// source/<source>).
type SourceConfig struct {
	// Name identifies the source in etcd keys, checkpoints, logs and
	// status. Required, no "/". It replaces Upstream.Name.
	Name string `json:"name" toml:"name"`
	// Upstream is the server: host, port, user, password, flavour and
	// server id. Upstream.ServerID, when set, is the relay's; subtasks
	// (reading the upstream directly when relay is off, or a stretch of
	// binlog for a snapshot's position) and the relay's fetches of older
	// files each pick their own, since two binlog dumps with one server id
	// make the server drop one. In etcd the password is never stored in
	// plain text (json.Marshal refuses it): it is sealed into
	// SealedPassword or named by PasswordRef, and the worker fills
	// Upstream.Password in.
	Upstream streamer.UpstreamConfig `json:"upstream" toml:"upstream"`
	// SealedPassword is the upstream's password sealed (AES-GCM) with the
	// host's credential key, as SealSourceConfig and PutSourceConfig write
	// it; a SourceWorker given the same key (WithCredentialKey) opens it.
	// It is bound to the source's Name. Default "".
	SealedPassword string `json:"password-sealed,omitempty" toml:"password-sealed"`
	// PasswordRef names the upstream's password for the host's
	// CredentialResolver (WithCredentialResolver), so that etcd holds
	// only the reference. Default "".
	PasswordRef string `json:"password-ref,omitempty" toml:"password-ref"`
	// EnableRelay keeps a relay log of the source, and subtasks read it
	// instead of the upstream. Default off.
	EnableRelay bool `json:"enable-relay,omitempty" toml:"enable-relay"`
	// RelayDir is the relay directory: an absolute path, or one relative
	// to the worker's WithRelayDir. Default: the source's Name under
	// WithRelayDir.
	RelayDir string `json:"relay-dir,omitempty" toml:"relay-dir"`
	// RelayConfig is how the relay keeps its copy (start, sync policy,
	// purge, file modes, reader settings; see RelayConfig). Its JSON keys
	// are the source's own ("relay-start", "purge-interval", ...). A
	// subtask whose start or checkpoint is older than what the relay holds
	// makes the relay fetch the older files (see SourceWorker); it fails
	// with streamer.ErrBinlogPurged only when the upstream no longer has
	// them.
	RelayConfig
}

// adjust checks the config and resolves the relay directory under base.
func (c *SourceConfig) adjust(base string) error {
	if !validName(c.Name) {
		return fmt.Errorf("source name %q must be non-empty and hold no '/'", c.Name)
	}
	c.Upstream.Name = c.Name
	if err := c.Upstream.Validate(); err != nil {
		return fmt.Errorf("source %s: %w", c.Name, err)
	}
	if !c.EnableRelay {
		return nil
	}
	dir := c.RelayDir
	if dir == "" {
		dir = c.Name
	}
	if !filepath.IsAbs(dir) {
		if base == "" {
			return fmt.Errorf("source %s: relay directory %q is relative and the worker has no WithRelayDir", c.Name, dir)
		}
		dir = filepath.Join(base, dir)
	}
	c.RelayDir = dir
	if err := c.RelayConfig.validate(); err != nil {
		return fmt.Errorf("source %s: relay: %w", c.Name, err)
	}
	return nil
}

// SinkFactory makes the sink a subtask writes into. A SourceWorker calls it
// each time it starts a subtask (again after an update of its config that
// needs a new subtask, a rebinding or a return of liveness); when the sink
// also implements io.Closer, the worker closes it when it drops the subtask.
type SinkFactory func(ctx context.Context, source SourceConfig, task SubTaskConfig) (Sink, error)

// Liveness tells a SourceWorker whether it may work: *KeepAlive implements it.
// When the Liveness also has a method Status() KeepAliveStatus (a *KeepAlive
// has), a worker in etcd mode ignores a binding whose epoch (ModRevision) is
// below the registration's Revision: it was made for an earlier life of the
// worker, and a Coordinator replaces it.
type Liveness interface {
	// Alive reports whether the worker's registration is confirmed now, and a channel closed at the next change.
	Alive() (alive bool, changed <-chan struct{})
}

type alwaysAlive struct{}

func (alwaysAlive) Alive() (bool, <-chan struct{}) { return true, nil }

// WithLiveness makes a SourceWorker work only while l says it is alive: it
// stops its subtasks and relay at once when l says not alive, and starts
// them again from its state (in etcd mode, re-read from etcd) when alive
// again. Default: always alive.
func WithLiveness(l Liveness) SourceWorkerOption { return livenessOption{l} }

// WithSource makes a SourceWorker serve one source the host drives
// directly (StartSubTask, PauseSubTask, ...), with no etcd. Exactly one of
// WithSource and WithEtcd is required.
func WithSource(cfg SourceConfig) SourceWorkerOption { return sourceOption{cfg} }

// WithEtcd makes a SourceWorker work through etcd with the host's client,
// which the library never closes: it reads which source is bound to it,
// that source's config, subtasks and stages, and reports its status (see
// the key layout in the package doc). Exactly one of WithSource and
// WithEtcd is required.
func WithEtcd(cli *clientv3.Client) SourceWorkerOption { return etcdOption{cli} }

// WithRelayDir sets the directory under which a SourceWorker keeps its
// sources' relay logs (see SourceConfig.RelayDir). Default: none, so relay
// needs an absolute SourceConfig.RelayDir.
func WithRelayDir(dir string) SourceWorkerOption { return relayDirOption(dir) }

// WithStatusInterval sets how often a SourceWorker in etcd mode writes its
// status under status/<worker>/ even when no stage changed (stage changes
// are written within a second). Default 10s.
func WithStatusInterval(d time.Duration) SourceWorkerOption { return statusIntervalOption(d) }

type (
	livenessOption       struct{ l Liveness }
	sourceOption         struct{ cfg SourceConfig }
	etcdOption           struct{ cli *clientv3.Client }
	relayDirOption       string
	statusIntervalOption time.Duration
)

func (o livenessOption) applySourceWorker(w *sourceWorkerOptions) { w.liveness = o.l }
func (o sourceOption) applySourceWorker(w *sourceWorkerOptions) {
	c := o.cfg
	w.source = &c
}
func (o etcdOption) applySourceWorker(w *sourceWorkerOptions)     { w.etcd = o.cli }
func (o relayDirOption) applySourceWorker(w *sourceWorkerOptions) { w.relayBaseDir = string(o) }
func (o statusIntervalOption) applySourceWorker(w *sourceWorkerOptions) {
	w.statusInterval, w.statusIntervalSet = time.Duration(o), true
}

const defaultStatusInterval = 10 * time.Second

// sourceWorkerOptions are a SourceWorker's options, defaults filled in.
// Its subtasks get subTaskOptions (logger, stop timeout, checkpoint store,
// sink retry, auto-resume, remote reader options), with the binding's
// epoch and the relay's reader added by the worker; its relays get the
// logger and the remote reader options.
type sourceWorkerOptions struct {
	subTaskOptions
	etcd                  *clientv3.Client
	etcdPrefix            string
	etcdPrefixSet         bool
	source                *SourceConfig
	relayBaseDir          string
	liveness              Liveness
	statusInterval        time.Duration
	statusIntervalSet     bool
	credentialKey         credentialKey
	credentialResolver    CredentialResolver
	credentialResolverSet bool
}

func defaultSourceWorkerOptions() sourceWorkerOptions {
	return sourceWorkerOptions{
		subTaskOptions: defaultSubTaskOptions(),
		liveness:       alwaysAlive{},
		statusInterval: defaultStatusInterval,
	}
}

// validate checks the options.
func (o *sourceWorkerOptions) validate() error {
	switch {
	case o.source == nil && o.etcd == nil:
		return errors.New("give WithSource (direct mode) or WithEtcd")
	case o.source != nil && o.etcd != nil:
		return errors.New("WithSource and WithEtcd exclude each other")
	case o.etcd == nil && (o.etcdPrefixSet || o.statusIntervalSet):
		return errors.New("WithEtcdPrefix and WithStatusInterval need WithEtcd")
	case o.statusInterval <= 0:
		return fmt.Errorf("status interval %s must be positive", o.statusInterval)
	case o.liveness == nil:
		return errors.New("WithLiveness(nil)")
	case o.etcd == nil && (o.credentialKey.given || o.credentialResolverSet):
		return errors.New("WithCredentialKey and WithCredentialResolver need WithEtcd (in direct mode give Upstream.Password)")
	case o.credentialResolverSet && o.credentialResolver == nil:
		return errors.New("WithCredentialResolver(nil)")
	case o.source != nil && (o.source.SealedPassword != "" || o.source.PasswordRef != ""):
		return fmt.Errorf("source %s: SealedPassword and PasswordRef are read from etcd; in direct mode give Upstream.Password", o.source.Name)
	}
	if err := o.credentialKey.validate(); err != nil {
		return err
	}
	return o.subTaskOptions.validate()
}

// SourceWorker errors.
var (
	// ErrEtcdMode is returned by the direct-mode methods (StartSubTask,
	// PauseRelay, ...) of a worker driven through etcd: write the keys
	// instead.
	ErrEtcdMode = errors.New("dmworker: the worker is driven through etcd")
	// ErrSubTaskNotFound means the worker has no subtask of that name.
	ErrSubTaskNotFound = errors.New("dmworker: no such subtask")
	// ErrSubTaskExists means StartSubTask named a subtask the worker has.
	ErrSubTaskExists = errors.New("dmworker: subtask already exists")
	// ErrRelayOff means a relay operation on a source without relay.
	ErrRelayOff = errors.New("dmworker: the source has no relay")
	// ErrWorkerClosed is returned by Run after Close, and by a second Run.
	ErrWorkerClosed = errors.New("dmworker: source worker closed or already running")
	// ErrRelayStopped is the last error of a subtask its worker paused
	// because the source's relay stopped on a fault it does not retry (or
	// retried in vain); the error also wraps that fault (for example
	// streamer.ErrRelayCorrupt, with the file and offset in a
	// *streamer.RelayError).
	ErrRelayStopped = errors.New("dmworker: relay stopped")
)

// SourceWorker serves one upstream source: it holds the source's config,
// its Relay when relay is on, and the source's subtasks, which read the
// relay when it is on and the upstream when it is off.
//
// Relay faults: when the relay stops on a fault that a new try may cure (a
// connection lost for longer than its reader retries, a full disk), the
// worker runs it again with the backoff and attempt limit of
// WithAutoResume (default 1s doubling to 1m, 10 attempts without the relay
// moving), logging a warning with the cause before each try; its subtasks
// wait meanwhile. Any other fault (a damaged relay directory, one that
// cannot be written, another process holding it, bad credentials), or the
// last failed try, stops the relay: RelayStatus.LastError holds the fault,
// and every subtask reading the relay is paused with an error wrapping
// ErrRelayStopped and the fault (a subtask still copying its snapshot is
// paused when it reaches the binlog). ResumeRelay (in etcd mode, writing
// the relay's stage key again) runs the relay again; once it pulls, the
// worker resumes the subtasks it paused.
//
// Relay start: a fresh relay begins at the upstream's current binlog file
// (or SourceConfig.RelayStart). A subtask that needs an older file (its
// start or checkpoint, by file or GTID set) makes the relay fetch the
// missing files from the upstream into its subdirectory first (see
// streamer.CopyUpstreamFiles); only when the upstream no longer has them
// does the subtask stop with streamer.ErrBinlogPurged.
//
// In direct mode (WithSource) the host drives it with StartSubTask,
// PauseSubTask, ResumeSubTask, UpdateSubTask, StopSubTask, PauseRelay,
// ResumeRelay and PurgeRelay. In etcd mode (WithEtcd) it reads which source
// is bound to it, that source's config, subtasks and stages from etcd,
// applies them, follows their changes, fences its writes with the binding's
// epoch and reports status; see the key layout in the package doc.
//
// Run works until ctx ends or Close; subtasks run only while Run does (and,
// with WithLiveness, while alive). Methods are safe for concurrent use.
type SourceWorker struct {
	name  string
	sinks SinkFactory
	opts  sourceWorkerOptions
	log   *slog.Logger
	keys  etcdKeys

	// testHookBeforeWatch, when set, runs before the watch starts at rev.
	testHookBeforeWatch func(rev int64)

	mu      sync.Mutex // guards desired, alive, closed, running, runCtx, cancel, done
	desired workerState
	alive   bool
	closed  bool
	running bool
	runCtx  context.Context
	cancel  context.CancelFunc
	done    chan struct{}

	// kick asks Run's loop to reconcile again (the relay failed or
	// recovered).
	kick chan struct{}

	applyMu      sync.Mutex // serialises reconcile; guards the fields below
	applied      *SourceConfig
	applyErr     error // why the source could not be applied
	appliedEpoch int64
	relay        *relayRun
	tasks        map[string]*liveTask
	wg           sync.WaitGroup // subtask and relay goroutines
	reported     map[string]string
	// final are the subtasks as they stopped when Run last returned.
	final []SubTaskStatus
}

// workerState is what the worker should be doing.
type workerState struct {
	source      *SourceConfig // nil: no source
	epoch       int64         // binding epoch (etcd mode)
	bound       string        // the source bound (etcd mode), even when source is nil
	err         error         // why source is nil although one is bound
	relayPaused bool
	// relayRev changes when the relay's stage is set again (ResumeRelay; in
	// etcd, the stage key's ModRevision): a relay a fault stopped runs
	// again.
	relayRev int64
	tasks    map[string]desiredTask
}

type desiredTask struct {
	cfg   SubTaskConfig
	stage SubTaskStage // Running, Paused or Stopped
	// rev changes when the stage is set again (in etcd, the stage key's
	// ModRevision): the stage is then applied again even if unchanged.
	rev int64
	err error // the config could not be read
}

// liveTask is a subtask as applied.
type liveTask struct {
	cfg        SubTaskConfig
	applied    SubTaskStage // the desired stage last applied
	appliedRev int64        // and its revision
	t          *SubTask     // nil when it could not be built, or stage Stopped before any start
	sink       Sink
	err        error // why t is nil, or why the last update failed
	done       chan struct{}
	// relayErr is the relay fault the worker paused t with (nil: none).
	relayErr error
}

// relayRun is a relay as applied, run by superviseRelay.
type relayRun struct {
	r       *Relay
	paused  bool
	rev     int64 // the desired relayRev last applied
	cancel  context.CancelFunc
	done    chan struct{} // closed when superviseRelay returns
	restart chan struct{} // (buffered) run a stopped relay again

	mu      sync.Mutex
	err     error         // the fault that stopped the relay (wrapping ErrRelayStopped); nil while it runs or retries
	changed chan struct{} // closed and replaced when err changes
}

// NewSourceWorker returns a worker named name (its etcd keys use the name)
// that gets its subtasks' sinks from sinks. It checks its arguments;
// nothing runs until Run.
func NewSourceWorker(name string, sinks SinkFactory, opts ...SourceWorkerOption) (*SourceWorker, error) {
	o := defaultSourceWorkerOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applySourceWorker(&o)
		}
	}
	switch {
	case !validName(name):
		return nil, fmt.Errorf("dmworker: source worker name %q must be non-empty and hold no '/'", name)
	case sinks == nil:
		return nil, fmt.Errorf("dmworker: source worker %s: a sink factory is required", name)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("dmworker: source worker %s: %w", name, err)
	}
	var err error
	if o.relayBaseDir != "" {
		if o.relayBaseDir, err = filepath.Abs(o.relayBaseDir); err != nil {
			return nil, fmt.Errorf("dmworker: source worker %s: relay dir: %w", name, err)
		}
	}
	w := &SourceWorker{
		name:     name,
		sinks:    sinks,
		opts:     o,
		log:      o.logger.With(slog.String("component", "source-worker"), slog.String("worker", name)),
		keys:     newEtcdKeys(o.etcdPrefix),
		kick:     make(chan struct{}, 1),
		tasks:    map[string]*liveTask{},
		reported: map[string]string{},
	}
	w.desired.tasks = map[string]desiredTask{}
	if o.source != nil {
		src := *o.source
		if err := src.adjust(o.relayBaseDir); err != nil {
			return nil, fmt.Errorf("dmworker: source worker %s: %w", name, err)
		}
		w.desired.source = &src
	}
	return w, nil
}

// Name is the worker's name.
func (w *SourceWorker) Name() string { return w.name }

// Run applies the worker's state until ctx ends or Close is called, and
// returns nil then, after stopping its subtasks and relay (within the stop
// timeout, WithStopTimeout, whatever is unreachable). In etcd mode it
// reads and follows the state in etcd, surviving etcd outages and watch
// compaction by reading it again. It fails with ErrWorkerClosed after Close
// or while another Run runs.
func (w *SourceWorker) Run(ctx context.Context) (err error) {
	defer func() { err = withStack(err) }()
	w.mu.Lock()
	if w.closed || w.running {
		w.mu.Unlock()
		return fmt.Errorf("source worker %s: %w", w.name, ErrWorkerClosed)
	}
	w.running = true
	ctx, cancel := context.WithCancel(ctx)
	ctx, release := stopBound(ctx, w.opts.stopTimeout)
	w.runCtx, w.cancel = ctx, cancel
	w.done = make(chan struct{})
	done := w.done
	w.mu.Unlock()
	w.applyMu.Lock()
	w.final = nil
	w.applyMu.Unlock()
	defer func() {
		cancel()
		w.applyMu.Lock()
		w.shutdown(ctx)
		w.applyMu.Unlock()
		release()
		w.mu.Lock()
		w.running, w.alive = false, false
		w.mu.Unlock()
		close(done)
	}()
	unregister, err := w.opts.metrics.register(newCollector(
		prometheus.Labels{"worker": w.name}, workerFamilies, w.emitMetrics))
	if err != nil {
		return fmt.Errorf("dmworker: source worker %s: %w", w.name, err)
	}
	defer unregister()
	if w.opts.etcd != nil {
		w.runEtcd(ctx)
		return nil
	}
	for {
		alive, changed := w.opts.liveness.Alive()
		w.setAlive(alive)
		w.reconcile()
		select {
		case <-changed:
		case <-w.kick:
		case <-ctx.Done():
			return nil
		}
	}
}

// kickReconcile asks Run's loop to reconcile again.
func (w *SourceWorker) kickReconcile() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *SourceWorker) setAlive(alive bool) {
	w.mu.Lock()
	if w.alive != alive {
		w.log.Info("liveness changed", slog.Bool("alive", alive))
	}
	w.alive = alive
	w.mu.Unlock()
}

// Close stops Run (subtasks and relay first) and waits for it to return,
// within the stop timeout (WithStopTimeout) whatever is unreachable. It is
// safe to call more than once, and before Run.
func (w *SourceWorker) Close() error {
	w.mu.Lock()
	w.closed = true
	cancel, done, running := w.cancel, w.done, w.running
	w.mu.Unlock()
	if running {
		cancel()
		<-done
	}
	return nil
}

// direct checks that the worker is in direct mode.
func (w *SourceWorker) direct(op string) error {
	if w.opts.etcd != nil {
		return fmt.Errorf("dmworker: source worker %s: %s: %w (write the keys under %s)", w.name, op, ErrEtcdMode, w.keys.prefix)
	}
	return nil
}

// StartSubTask adds a subtask and starts it (at once when Run runs and the
// worker is alive, else when it does). The config is checked first; the
// error of building or starting the subtask is returned too.
func (w *SourceWorker) StartSubTask(cfg SubTaskConfig) error {
	if err := w.direct("start subtask"); err != nil {
		return err
	}
	src := w.desired.source // fixed in direct mode
	if err := cfg.adjust(src.Upstream); err != nil {
		return fmt.Errorf("dmworker: source worker %s: %w", w.name, err)
	}
	w.mu.Lock()
	if _, ok := w.desired.tasks[cfg.Name]; ok {
		w.mu.Unlock()
		return fmt.Errorf("dmworker: source worker %s: subtask %s: %w", w.name, cfg.Name, ErrSubTaskExists)
	}
	w.desired.tasks[cfg.Name] = desiredTask{cfg: cfg, stage: SubTaskRunning}
	w.mu.Unlock()
	return w.reconcile()[cfg.Name]
}

// PauseSubTask pauses a subtask; it returns once the subtask has stopped
// writing.
func (w *SourceWorker) PauseSubTask(name string) error {
	return w.setStage("pause subtask", name, SubTaskPaused)
}

// ResumeSubTask resumes a paused subtask (also one an error paused).
func (w *SourceWorker) ResumeSubTask(name string) error {
	return w.setStage("resume subtask", name, SubTaskRunning)
}

// StopSubTask stops a subtask and removes it from the worker; its
// checkpoint stays, so StartSubTask with the same name continues from it.
func (w *SourceWorker) StopSubTask(name string) error {
	if err := w.direct("stop subtask"); err != nil {
		return err
	}
	w.mu.Lock()
	if _, ok := w.desired.tasks[name]; !ok {
		w.mu.Unlock()
		return fmt.Errorf("dmworker: source worker %s: stop subtask %s: %w", w.name, name, ErrSubTaskNotFound)
	}
	delete(w.desired.tasks, name)
	w.mu.Unlock()
	return w.reconcile()[name]
}

// UpdateSubTask replaces a subtask's config (see SubTask.Update for what may
// change): the subtask is paused, updated and resumed if it was running.
// A change of mode makes a new subtask, which continues from the
// checkpoint.
func (w *SourceWorker) UpdateSubTask(cfg SubTaskConfig) error {
	if err := w.direct("update subtask"); err != nil {
		return err
	}
	if err := cfg.adjust(w.desired.source.Upstream); err != nil {
		return fmt.Errorf("dmworker: source worker %s: %w", w.name, err)
	}
	w.mu.Lock()
	d, ok := w.desired.tasks[cfg.Name]
	if !ok {
		w.mu.Unlock()
		return fmt.Errorf("dmworker: source worker %s: update subtask %s: %w", w.name, cfg.Name, ErrSubTaskNotFound)
	}
	d.cfg = cfg
	w.desired.tasks[cfg.Name] = d
	w.mu.Unlock()
	return w.reconcile()[cfg.Name]
}

func (w *SourceWorker) setStage(op, name string, stage SubTaskStage) error {
	if err := w.direct(op); err != nil {
		return err
	}
	w.mu.Lock()
	d, ok := w.desired.tasks[name]
	if !ok {
		w.mu.Unlock()
		return fmt.Errorf("dmworker: source worker %s: %s %s: %w", w.name, op, name, ErrSubTaskNotFound)
	}
	// A new revision applies the stage again even when it is unchanged:
	// ResumeSubTask resumes a subtask an error paused.
	d.stage = stage
	d.rev++
	w.desired.tasks[name] = d
	w.mu.Unlock()
	return w.reconcile()[name]
}

// SkipSubTaskDDL tells subtask task to pass over the DDL at pos (a
// *SyncError's Start or Pos, as SubTask.Skip) the next time it reaches it:
// the way past a DDL that stopped it (ErrUnsupportedDDL, a
// ShardIncompatibleDDLError, a ShardDDLConflictError). ResumeSubTask then
// lets the subtask go on.
//
// The instruction is given to the subtask this worker runs now and lives
// with it: it is forgotten when the subtask is built anew (StopSubTask then
// StartSubTask, a change of mode, the worker losing its source); the
// subtask then stops at the DDL again, to be given it again. It is no
// stage change, so a worker driven through etcd takes it too: call it on
// the worker that runs the subtask, then resume the subtask through its
// stage key. A worker that does not run the subtask returns
// ErrSubTaskNotFound.
func (w *SourceWorker) SkipSubTaskDDL(task string, pos streamer.Position) error {
	return w.operate("skip DDL", task, func(t *SubTask) { t.Skip(pos) })
}

// ReplaceSubTaskDDL tells subtask task to run stmts downstream instead of
// the DDL at pos (as SubTask.Replace) the next time it reaches it; see
// SkipSubTaskDDL for when to call it and how long it holds.
func (w *SourceWorker) ReplaceSubTaskDDL(task string, pos streamer.Position, stmts ...string) error {
	if len(stmts) == 0 {
		return fmt.Errorf("dmworker: source worker %s: replace DDL %s: no statement (SkipSubTaskDDL passes over it)", w.name, task)
	}
	return w.operate("replace DDL", task, func(t *SubTask) { t.Replace(pos, stmts...) })
}

// operate gives f to the subtask name runs as now.
func (w *SourceWorker) operate(op, name string, f func(*SubTask)) error {
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	lt := w.tasks[name]
	if lt == nil || lt.t == nil {
		return fmt.Errorf("dmworker: source worker %s: %s %s: %w (the worker runs no such subtask now)", w.name, op, name, ErrSubTaskNotFound)
	}
	f(lt.t)
	return nil
}

// PauseRelay pauses the relay (subtasks wait at its end).
func (w *SourceWorker) PauseRelay() error { return w.setRelayPaused("pause relay", true) }

// ResumeRelay resumes the relay; a relay a fault stopped runs again, and
// once it pulls, the subtasks the fault paused are resumed.
func (w *SourceWorker) ResumeRelay() error { return w.setRelayPaused("resume relay", false) }

func (w *SourceWorker) setRelayPaused(op string, paused bool) error {
	if err := w.direct(op); err != nil {
		return err
	}
	if !w.desired.source.EnableRelay {
		return fmt.Errorf("dmworker: source worker %s: %s: source %s: %w", w.name, op, w.desired.source.Name, ErrRelayOff)
	}
	w.mu.Lock()
	w.desired.relayPaused = paused
	w.desired.relayRev++
	w.mu.Unlock()
	w.reconcile()
	return nil
}

// RelayPurge says what PurgeRelay removes; give one of its forms. Purge
// never removes what a subtask still needs nor the file being written.
type RelayPurge struct {
	// SubDir and File: the files before File in SubDir (Relay.PurgeTo).
	SubDir, File string
	// Before: the files last written before it (Relay.PurgeOlderThan).
	Before time.Time
	// MinFree: the oldest files while less than MinFree bytes are free
	// (Relay.PurgeForSpace).
	MinFree uint64
}

// PurgeRelay removes relay files as req says. It works in both modes; it
// fails with ErrRelayOff when no relay runs.
func (w *SourceWorker) PurgeRelay(req RelayPurge) (PurgeResult, error) {
	w.applyMu.Lock()
	rr := w.relay
	w.applyMu.Unlock()
	if rr == nil {
		return PurgeResult{}, fmt.Errorf("dmworker: source worker %s: purge relay: %w", w.name, ErrRelayOff)
	}
	n := 0
	if req.File != "" || req.SubDir != "" {
		n++
	}
	if !req.Before.IsZero() {
		n++
	}
	if req.MinFree > 0 {
		n++
	}
	switch {
	case n != 1:
		return PurgeResult{}, fmt.Errorf("dmworker: source worker %s: purge relay: give one of SubDir and File, Before, MinFree", w.name)
	case req.File != "":
		return rr.r.PurgeTo(req.SubDir, req.File)
	case !req.Before.IsZero():
		return rr.r.PurgeOlderThan(req.Before)
	default:
		return rr.r.PurgeForSpace(req.MinFree)
	}
}

// SourceWorkerStatus is a snapshot of a worker.
type SourceWorkerStatus struct {
	Name string
	// Source is the source served, "" when none; Epoch its binding's
	// epoch in etcd mode.
	Source string
	Epoch  int64
	// Alive is what the worker's Liveness says (false while Run is not
	// running).
	Alive bool
	// Relay is the relay's status, nil when relay is off or not running.
	Relay *RelayStatus
	// SubTasks are the subtasks, by name. Once Run has returned, they are
	// the subtasks as they stopped: stage Stopped (or Finished), the last
	// checkpoint saved, the last error.
	SubTasks []SubTaskStatus
	// Error is why the bound source is not served (its config is missing
	// or invalid), nil when none.
	Error error
}

// Status reports the worker's source, relay and subtasks. The relay's
// distance to the upstream is asked within ctx.
func (w *SourceWorker) Status(ctx context.Context) SourceWorkerStatus {
	w.mu.Lock()
	st := SourceWorkerStatus{Name: w.name, Alive: w.alive, Error: w.desired.err}
	w.mu.Unlock()
	w.applyMu.Lock()
	if w.applied != nil {
		st.Source, st.Epoch = w.applied.Name, w.appliedEpoch
	}
	if st.Error == nil {
		st.Error = w.applyErr
	}
	rr := w.relay
	st.SubTasks = w.taskStatuses()
	if len(st.SubTasks) == 0 {
		st.SubTasks = w.final
	}
	w.applyMu.Unlock()
	if rr != nil {
		rs := rr.r.Status(ctx)
		if rs.LastError == nil {
			rs.LastError = rr.failure()
		}
		st.Relay = &rs
	}
	return st
}

// taskStatuses lists the subtasks' statuses by name; applyMu is held.
func (w *SourceWorker) taskStatuses() []SubTaskStatus {
	names := make([]string, 0, len(w.tasks))
	for n := range w.tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]SubTaskStatus, 0, len(names))
	for _, n := range names {
		out = append(out, w.tasks[n].status())
	}
	return out
}

func (lt *liveTask) status() SubTaskStatus {
	if lt.t == nil {
		st := SubTaskStatus{Name: lt.cfg.Name, Source: lt.cfg.Source, Mode: lt.cfg.Mode, Stage: SubTaskStopped, LastError: lt.err}
		if lt.err != nil {
			st.Stage = SubTaskPaused
		}
		return st
	}
	st := lt.t.Status()
	if st.LastError == nil {
		st.LastError = lt.err
	}
	return st
}

// reconcile makes the applied state match the desired one and returns the
// errors met per subtask.
func (w *SourceWorker) reconcile() map[string]error {
	w.mu.Lock()
	d := w.desired
	d.tasks = make(map[string]desiredTask, len(w.desired.tasks))
	for k, v := range w.desired.tasks {
		d.tasks[k] = v
	}
	alive, running, ctx := w.alive, w.running, w.runCtx
	w.mu.Unlock()

	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	if !running || ctx.Err() != nil {
		return nil // Run applies the state when it starts
	}
	if w.applied != nil && (!alive || d.source == nil || !reflect.DeepEqual(*d.source, *w.applied) || d.epoch != w.appliedEpoch) {
		w.log.Info("stopping everything", slog.Bool("alive", alive), slog.String("source", w.applied.Name))
		w.stopAll()
	}
	if !alive || d.source == nil {
		return nil
	}
	src := *d.source
	if w.applied == nil {
		w.applied, w.appliedEpoch = &src, d.epoch
		w.log.Info("serving source", slog.String("source", src.Name), slog.Int64("epoch", d.epoch))
		if src.EnableRelay {
			if err := w.startRelay(ctx, &src, d.relayRev); err != nil {
				w.applied = nil
				w.applyErr = err
				return nil
			}
		}
		w.applyErr = nil
	}
	if rr := w.relay; rr != nil && rr.paused != d.relayPaused {
		rr.paused = d.relayPaused
		if rr.paused {
			rr.r.Pause()
		} else {
			rr.r.Resume()
		}
	}
	if rr := w.relay; rr != nil && rr.rev != d.relayRev {
		rr.rev = d.relayRev
		if !rr.paused && rr.failure() != nil {
			select {
			case rr.restart <- struct{}{}:
			default:
			}
		}
	}
	errs := map[string]error{}
	for name, lt := range w.tasks {
		if _, ok := d.tasks[name]; !ok {
			w.dropTask(lt)
			delete(w.tasks, name)
		}
	}
	names := make([]string, 0, len(d.tasks))
	for n := range d.tasks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := w.applyTask(ctx, &src, d.tasks[n]); err != nil {
			errs[n] = err
		}
	}
	if rr := w.relay; rr != nil {
		w.applyRelayFault(rr)
	}
	return errs
}

// applyRelayFault pauses the running subtasks that read a relay that has
// stopped, and resumes those it paused once the relay runs again.
func (w *SourceWorker) applyRelayFault(rr *relayRun) {
	ferr := rr.failure()
	for _, lt := range w.tasks {
		if lt.t == nil || lt.applied != SubTaskRunning {
			lt.relayErr = nil // the host's stage rules
			continue
		}
		switch {
		case ferr != nil && lt.relayErr != ferr:
			if lt.t.Status().Unit == "snapshot" {
				continue // it pauses when it reaches the relay
			}
			lt.t.pauseWith(ferr)
			lt.relayErr = ferr
		case ferr == nil && (lt.relayErr != nil || pausedByRelay(lt.t)):
			// (A subtask that reached the stopped relay by itself paused
			// with its fault too.)
			lt.relayErr = nil
			if err := lt.t.Resume(); err != nil {
				w.log.Warn("cannot resume a subtask after the relay recovered", slog.String("task", lt.cfg.Name), errAttr(err))
			} else {
				w.log.Info("subtask resumed: its relay runs again", slog.String("task", lt.cfg.Name))
			}
		}
	}
}

// applyTask brings one subtask to its desired config and stage.
func (w *SourceWorker) applyTask(ctx context.Context, src *SourceConfig, dt desiredTask) error {
	name := dt.cfg.Name
	lt := w.tasks[name]
	if dt.err != nil {
		if lt != nil {
			w.dropTask(lt)
		}
		w.tasks[name] = &liveTask{cfg: dt.cfg, applied: dt.stage, appliedRev: dt.rev, err: dt.err}
		return dt.err
	}
	same := lt != nil && reflect.DeepEqual(lt.cfg, dt.cfg)
	switch {
	case lt == nil:
	case lt.t == nil && same && lt.applied == dt.stage && lt.appliedRev == dt.rev:
		return lt.err // nothing new to try
	case lt.t == nil:
		delete(w.tasks, name)
		lt = nil
	case dt.stage == SubTaskStopped:
		if lt.applied != SubTaskStopped {
			w.stopTask(lt)
			lt.applied = SubTaskStopped
		}
		lt.cfg = dt.cfg
		return nil
	case lt.applied == SubTaskStopped:
		// Stopped for good: a new subtask continues from the checkpoint.
		w.dropTask(lt)
		delete(w.tasks, name)
		lt = nil
	case !same:
		return w.updateTask(ctx, src, lt, dt)
	case lt.applied != dt.stage || lt.appliedRev != dt.rev:
		lt.applied, lt.appliedRev = dt.stage, dt.rev
		if dt.stage == SubTaskPaused {
			return lt.t.Pause()
		}
		return lt.t.Resume()
	default:
		return nil
	}
	if dt.stage == SubTaskStopped {
		w.tasks[name] = &liveTask{cfg: dt.cfg, applied: SubTaskStopped, appliedRev: dt.rev}
		return nil
	}
	return w.startTask(ctx, src, dt)
}

// updateTask applies a new config to a live subtask.
func (w *SourceWorker) updateTask(ctx context.Context, src *SourceConfig, lt *liveTask, dt desiredTask) error {
	name := dt.cfg.Name
	if err := lt.t.Pause(); err != nil {
		w.dropTask(lt)
		delete(w.tasks, name)
		return w.startTask(ctx, src, dt)
	}
	err := lt.t.Update(dt.cfg)
	if errors.Is(err, ErrImmutableConfig) {
		w.log.Info("subtask config changed its mode: starting it anew", slog.String("task", name))
		w.dropTask(lt)
		delete(w.tasks, name)
		return w.startTask(ctx, src, dt)
	}
	lt.cfg, lt.err, lt.applied, lt.appliedRev = dt.cfg, err, dt.stage, dt.rev
	if err != nil {
		w.log.Error("subtask update failed; it stays paused with its old config", slog.String("task", name), errAttr(err))
		return err
	}
	if dt.stage == SubTaskRunning {
		return lt.t.Resume()
	}
	return nil
}

// startTask builds a subtask and runs it.
func (w *SourceWorker) startTask(ctx context.Context, src *SourceConfig, dt desiredTask) error {
	name := dt.cfg.Name
	fail := func(err error) error {
		w.tasks[name] = &liveTask{cfg: dt.cfg, applied: dt.stage, appliedRev: dt.rev, err: err}
		w.log.Error("subtask cannot start", slog.String("task", name), errAttr(err))
		return err
	}
	sink, err := w.sinks(ctx, *src, dt.cfg)
	if err != nil {
		return fail(fmt.Errorf("dmworker: source worker %s: sink of subtask %s: %w", w.name, name, err))
	}
	if sink == nil {
		return fail(fmt.Errorf("dmworker: source worker %s: the sink factory returned no sink for subtask %s", w.name, name))
	}
	opts := w.opts.subTaskOptions
	opts.metrics = w.opts.metrics.child() // the worker collects
	if w.opts.etcd != nil {
		opts.epoch, opts.fenced = w.appliedEpoch, true
		opts.fenceKey = w.keys.bound(w.name)
	}
	up := src.Upstream
	// The relay's server id is the relay's alone: a subtask that dumps the
	// upstream's binlog (reading it directly, or a snapshot finding its
	// GTID set) picks its own, since the upstream drops a replica when
	// another connects with its id.
	up.ServerID = 0
	var st *SubTask
	if rr := w.relay; rr != nil {
		opts.readerFactory = relayReaderFactory(rr, "subtask/"+name, w.opts.logger, func() streamer.Position {
			return st.Status().Syncer.Checkpoint
		})
	}
	st, err = newSubTask(dt.cfg, up, sink, opts)
	if err != nil {
		closeSink(sink)
		return fail(err)
	}
	if dt.stage == SubTaskPaused {
		_ = st.Pause() // a New subtask can always pause
	}
	lt := &liveTask{cfg: dt.cfg, applied: dt.stage, appliedRev: dt.rev, t: st, sink: sink, done: make(chan struct{})}
	w.tasks[name] = lt
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(lt.done)
		if err := st.Run(ctx); err != nil {
			w.log.Error("subtask run", slog.String("task", name), errAttr(err))
		}
	}()
	w.log.Info("subtask started", slog.String("task", name), slog.String("stage", string(dt.stage)))
	return nil
}

// stopTask stops a subtask and waits for its Run; the sink is closed.
func (w *SourceWorker) stopTask(lt *liveTask) {
	if lt.t == nil {
		return
	}
	lt.t.Stop()
	<-lt.done
	if lt.sink != nil {
		closeSink(lt.sink)
		lt.sink = nil
	}
}

// dropTask stops a subtask that is being removed.
func (w *SourceWorker) dropTask(lt *liveTask) {
	w.stopTask(lt)
	w.log.Info("subtask removed", slog.String("task", lt.cfg.Name))
}

func closeSink(s Sink) {
	if c, ok := s.(io.Closer); ok {
		_ = c.Close()
	}
}

// startRelay starts the source's relay.
func (w *SourceWorker) startRelay(ctx context.Context, src *SourceConfig, rev int64) error {
	rel, err := NewRelay(src.Upstream, src.RelayDir, src.RelayConfig, WithLogger(w.opts.logger), WithRemoteOptions(w.opts.remoteOpts...),
		ownedMetrics(w.opts.metrics.child()))
	if err != nil {
		// adjust checked the config: this is not expected.
		w.log.Error("relay cannot start", errAttr(err))
		return fmt.Errorf("dmworker: source worker %s: relay of source %s: %w", w.name, src.Name, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	rr := &relayRun{r: rel, rev: rev, cancel: cancel, done: make(chan struct{}), restart: make(chan struct{}, 1),
		changed: make(chan struct{})}
	rel.onStart = func() {
		if rr.setFailure(nil) {
			w.kickReconcile()
		}
	}
	w.relay = rr
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(rr.done)
		w.superviseRelay(rctx, src.Name, rr)
	}()
	return nil
}

// pausedByRelay reports whether the subtask is paused by a relay fault.
func pausedByRelay(t *SubTask) bool {
	st := t.Status()
	return st.Stage == SubTaskPaused && errors.Is(st.LastError, ErrRelayStopped)
}

// superviseRelay runs the relay until ctx ends: again after a fault a new
// try may cure, with backoff, until the attempts allowed without progress
// are spent; after any other fault it records the fault (the reconcile
// loop then pauses the subtasks) and waits for a restart.
func (w *SourceWorker) superviseRelay(ctx context.Context, source string, rr *relayRun) {
	initial, maxWait, attempts := w.opts.resume.initial, w.opts.resume.max, w.opts.resume.attempts
	var bo *backoff.ExponentialBackOff
	tries := 0
	for {
		from, _ := rr.r.Relayed()
		err := rr.r.Run(ctx)
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrRelayClosed) {
			return
		}
		if to, _ := rr.r.Relayed(); to != from && to.Name != "" {
			tries, bo = 0, nil // it moved: a new fault
		}
		if relayRetryable(err) && tries < attempts {
			tries++
			if bo == nil {
				bo = backoff.NewExponentialBackOff()
				bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = initial, maxWait, 0
				bo.Reset()
			}
			wait := bo.NextBackOff()
			w.log.Warn("relay runs again after a retryable error", slog.String("source", source), slog.Int("attempt", tries),
				slog.Int("attempts", attempts), slog.Duration("wait", wait), errAttr(err))
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-rr.restart:
			case <-ctx.Done():
				t.Stop()
				return
			}
			t.Stop()
			continue
		}
		ferr := fmt.Errorf("dmworker: source worker %s: source %s: relay %s: %w: %w", w.name, source, rr.r.Dir(), ErrRelayStopped, err)
		w.log.Error("relay stopped; the subtasks reading it are paused", slog.String("source", source), errAttr(err))
		rr.setFailure(ferr)
		w.kickReconcile()
		select {
		case <-rr.restart:
			tries, bo = 0, nil
			w.log.Info("relay runs again", slog.String("source", source))
		case <-ctx.Done():
			return
		}
	}
}

// relayRetryable reports whether running the relay again may cure err.
func relayRetryable(err error) bool {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return true // purge, or the operator, may free space
	case errors.Is(err, streamer.ErrRelayCorrupt), errors.Is(err, ErrRelayLocked):
		return false
	}
	return retryable(err)
}

// failure is the fault that stopped the relay, nil while it runs or retries.
func (rr *relayRun) failure() error {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.err
}

// setFailure records the relay's fault (nil: it runs) and reports whether
// that changed it.
func (rr *relayRun) setFailure(err error) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.err == err {
		return false
	}
	rr.err = err
	close(rr.changed)
	rr.changed = make(chan struct{})
	return true
}

// failed returns the relay's fault and a channel closed when it changes.
func (rr *relayRun) failed() (error, <-chan struct{}) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.err, rr.changed
}

// stopAll stops every subtask, then the relay, and forgets the source.
func (w *SourceWorker) stopAll() {
	for name, lt := range w.tasks {
		w.stopTask(lt)
		delete(w.tasks, name)
	}
	if rr := w.relay; rr != nil {
		rr.cancel()
		rr.r.Close()
		<-rr.done
		w.relay = nil
	}
	w.applied, w.appliedEpoch = nil, 0
}

// shutdown is Run's end: everything stops, the last status is reported
// (within the stop bound of ctx, which has ended).
func (w *SourceWorker) shutdown(ctx context.Context) {
	for _, lt := range w.tasks {
		w.stopTask(lt)
	}
	w.final = w.taskStatuses()
	if w.opts.etcd != nil {
		w.writeReports(afterStop(ctx), w.reportValues(), true)
	}
	w.stopAll()
	w.wg.Wait()
}

// relayReaderFactory opens local readers of a live relay for one subtask:
// registered with the relay under name, following its durable end, and
// acknowledging what the subtask has checkpointed so that purge may remove
// it. It fails with the relay's fault (ErrRelayStopped) when the relay has
// stopped.
func relayReaderFactory(rr *relayRun, name string, log *slog.Logger, checkpoint func() streamer.Position) ReaderFactory {
	rel := rr.r
	return func(ctx context.Context, start streamer.Position) (streamer.Reader, error) {
		// Wait for the relay to have started (a fresh relay begins at the
		// upstream's current file) and, when it is writing the start's
		// file, to have reached the start: the local reader checks the
		// GTID set the file starts with, which must be written by then.
		for {
			ferr, fchanged := rr.failed()
			if ferr != nil {
				return nil, ferr
			}
			pos, changed := rel.Relayed()
			// (A relay that has chosen its subdirectory but written nothing
			// yet reports a position with no file.)
			if pos.Name != "" && (pos.Name != start.Name || pos.Offset >= start.Offset) {
				break
			}
			select {
			case <-changed:
			case <-fchanged:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// (A start older than the relay's oldest file is fetched.)
		lr, err := rel.openReader(ctx, name, start, streamer.WithLocalLogger(log))
		if err != nil {
			return nil, err
		}
		return &ackReader{LocalReader: lr, checkpoint: checkpoint}, nil
	}
}

// ackReader acknowledges to the relay the files its consumer has
// checkpointed past: it remembers the relay position of the first
// transaction end in each file, and at most once a second acknowledges the
// newest one the checkpoint has reached. Positions compare by file name and
// offset: after the relay moved to a new upstream server whose file names
// start over, nothing more is acknowledged until the subtask restarts (its
// registration then starts from its checkpoint), which holds purge back
// rather than removing a file the subtask may need.
type ackReader struct {
	*streamer.LocalReader
	checkpoint func() streamer.Position
	pending    []ackPoint
	lastFile   string
	lastCheck  time.Time
}

type ackPoint struct {
	pos streamer.Position
	rp  streamer.RelayPos
}

func (a *ackReader) GetEvent(ctx context.Context) (*streamer.Event, error) {
	ev, err := a.LocalReader.GetEvent(ctx)
	if err != nil || !ev.TxnEnd {
		return ev, err
	}
	rp := a.LocalReader.RelayPos()
	if key := rp.SubDir + "/" + rp.Name; key != a.lastFile {
		a.lastFile = key
		a.pending = append(a.pending, ackPoint{pos: streamer.Position{Name: ev.Pos.Name, Offset: ev.Pos.Offset}, rp: rp})
	}
	if len(a.pending) > 0 && time.Since(a.lastCheck) >= time.Second {
		a.lastCheck = time.Now()
		cp := a.checkpoint()
		i := 0
		for i < len(a.pending) && a.pending[i].pos.Compare(cp) <= 0 {
			i++
		}
		if i > 0 {
			a.LocalReader.Ack(a.pending[i-1].rp)
			a.pending = a.pending[i:]
		}
	}
	return ev, nil
}

// emitMetrics sends the worker's metrics and those of its relay and
// subtasks (with their syncers and snapshots).
func (w *SourceWorker) emitMetrics(e emitter) {
	w.mu.Lock()
	alive := w.alive
	w.mu.Unlock()
	w.applyMu.Lock()
	var (
		source string
		epoch  int64
	)
	if w.applied != nil {
		source, epoch = w.applied.Name, w.appliedEpoch
	}
	rr := w.relay
	tasks := make([]*SubTask, 0, len(w.tasks))
	for _, lt := range w.tasks {
		if lt.t != nil {
			tasks = append(tasks, lt.t)
		}
	}
	w.applyMu.Unlock()
	we := e.with("", source)
	we.value(famWorkerEpoch, float64(epoch))
	we.value(famWorkerAlive, boolValue(alive))
	if rr != nil {
		emitRelay(we, rr.r)
	}
	for _, t := range tasks {
		emitSubTask(e.with(t.name, t.source), t)
	}
}
