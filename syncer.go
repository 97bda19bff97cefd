package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmworker/dmworker/internal/progress"
	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// SyncerConfig is what a syncer replicates and how. It is a plain struct so
// that it can travel in task configs through files and etcd.
type SyncerConfig struct {
	// Task names the replication task; with Source it keys the checkpoint.
	Task string `json:"task" toml:"task"`
	// Source names the upstream; with Task it keys the checkpoint, so that
	// the same task reached through another address (a proxy, a virtual IP
	// after a failover, a new DNS name) goes on from its checkpoint.
	// Default Upstream.SourceName(): Upstream.Name, or "host:port" when it
	// is empty, which changes with the address (give a name when it may).
	// A checkpoint stored under the upstream's "host:port" is taken over
	// when Source has none (see CheckpointMover). At every start the
	// checkpoint is checked against the server reached (see
	// ErrCheckpointLineage).
	Source string `json:"source,omitempty" toml:"source"`
	// Upstream is read for its binlog (unless a reader is supplied with
	// WithReaderFactory) and for the tables' definitions at a fresh start.
	Upstream streamer.UpstreamConfig `json:"upstream" toml:"upstream"`
	// Start is where a task with no checkpoint begins; zero means the
	// upstream's current position, with the table definitions read from
	// the upstream at that position (read again if a DDL is logged while
	// they are read; listing the binlog's events for that takes BINLOG
	// MONITOR or REPLICATION CLIENT). The start is stored before the
	// first event is read, and SyncerStatus shows it once it is: a task
	// stopped before that starts afresh. Ignored once a checkpoint exists.
	Start streamer.Position `json:"start,omitzero" toml:"-"`
	// Filter, EventFilters and Routes select and rename what is replicated.
	Filter       BlockAllowList    `json:"block-allow-list,omitzero" toml:"block-allow-list"`
	EventFilters []EventFilterRule `json:"event-filters,omitempty" toml:"event-filters"`
	Routes       []RouteRule       `json:"routes,omitempty" toml:"routes"`
	// ShardMode coordinates the DDL of shard tables several sources merge
	// into one downstream table: off (""), ShardPessimistic or
	// ShardOptimistic (each needs the task's ShardGroup, WithShardGroup).
	// Default off.
	ShardMode ShardMode `json:"shard-mode,omitempty" toml:"shard-mode"`
	// OnlineDDLConfig says how online schema changes (gh-ost,
	// pt-online-schema-change) are replicated; on by default. Its keys are
	// the config's own ("online-ddl", "shadow-table-rules", ...).
	OnlineDDLConfig
	// SyncerTuning sets batch sizes, flush and checkpoint intervals,
	// parallelism, safe mode and compaction; zero values take the
	// defaults. Its keys are the config's own ("batch", "workers", ...).
	SyncerTuning
}

// SyncerTuning is how a syncer applies what it replicates: batches,
// parallelism, safe mode. SyncerConfig and SubTaskConfig embed it, so that
// its fields read as theirs (cfg.Workers) and their JSON and TOML keys are
// its own. Zero values take the defaults.
type SyncerTuning struct {
	// BatchSize is how many row changes a sink call carries at most (a
	// transaction bigger than MaxBatchRows is split). Default 256.
	BatchSize int `json:"batch,omitempty" toml:"batch"`
	// MaxBatchRows bounds a batch even inside one upstream transaction;
	// the rest of the transaction follows in later batches, in safe mode
	// until it ends. Default 10000.
	MaxBatchRows int `json:"max-batch-rows,omitempty" toml:"max-batch-rows"`
	// FlushInterval is the longest changes wait in a partial batch.
	// Default 100ms.
	FlushInterval Duration `json:"flush-interval,omitzero" toml:"flush-interval"`
	// SafeMode makes every write idempotent (inserts replace, updates are
	// delete + replace; on tables with Table.CheckForeignKeys, changes
	// apply only where the row is as the upstream found it), not only
	// during the replay after a restart.
	SafeMode bool `json:"safe-mode,omitempty" toml:"safe-mode"`
	// Workers is how many goroutines apply changes in parallel. Default,
	// when the sink is a ConcurrentSink, twice the CPUs this process may
	// use (GOMAXPROCS), at least 4 and at most 16; else 1 (more than 1
	// needs a ConcurrentSink). More workers than the downstream has cores
	// to run them cost it more than they bring: its transactions then
	// wait on each other's latches (see BENCHMARKS.md); set Workers when
	// the downstream is a bigger machine than this one. With 1 every
	// batch carries its checkpoint; with more, changes to one row (or one
	// unique-key value) stay in order on one worker, unrelated ones run in
	// parallel, and the checkpoint is the low watermark saved every
	// CheckpointInterval (see the package doc).
	Workers int `json:"workers,omitempty" toml:"workers"`
	// Compact merges several changes to one row within a worker's batch
	// (insert+update -> insert, anything+delete -> delete, update+update ->
	// update, delete+insert -> update), on tables with a primary key and no
	// other unique key, outside foreign key cascade groups (see
	// Table.CheckForeignKeys). It is on by default, with Workers > 1
	// (a single worker applies batches as they were read); NoCompact turns
	// it off. Compact set says so explicitly and changes nothing; set
	// together with NoCompact it is an error. (Before compaction was the
	// default, Compact turned it on: a config written then keeps its
	// meaning, but "compact": false no longer turns it off.) A downstream
	// trigger sees the merged change (an UPDATE where the upstream deleted
	// and inserted a row): set NoCompact where triggers must see each one.
	Compact bool `json:"compact,omitempty" toml:"compact"`
	// NoCompact turns compaction off (see Compact): every change is
	// written as read. Default false.
	NoCompact bool `json:"no-compact,omitempty" toml:"no-compact"`
	// QueueBytes bounds the memory of changes read but not yet applied
	// (estimated from their values) when Workers > 1; the reader waits
	// while it is spent. Default 64 MiB.
	QueueBytes int64 `json:"queue-bytes,omitempty" toml:"queue-bytes"`
	// CheckpointInterval is how often parallel workers' progress is saved
	// as a checkpoint. Default 1s.
	CheckpointInterval Duration `json:"checkpoint-interval,omitzero" toml:"checkpoint-interval"`
}

// Duration is a time.Duration that reads and writes as text ("100ms") in
// JSON and TOML.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// adjust sets defaults and validates; without an upstream (see
// WithStartSchema) Upstream is not checked.
func (c *SyncerConfig) adjust(noUpstream bool) error {
	if c.Task == "" {
		return errors.New("a task name is required")
	}
	if err := c.Upstream.Validate(); err != nil && !noUpstream {
		return err
	}
	if c.Source == "" {
		c.Source = c.Upstream.SourceName()
	}
	if c.BatchSize == 0 {
		c.BatchSize = 256
	}
	if c.MaxBatchRows == 0 {
		c.MaxBatchRows = 10000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = Duration(100 * time.Millisecond)
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 64 << 20
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = Duration(time.Second)
	}
	switch {
	case c.BatchSize < 1:
		return fmt.Errorf("batch size %d must be positive", c.BatchSize)
	case c.MaxBatchRows < c.BatchSize:
		return fmt.Errorf("max batch rows %d must be at least the batch size %d", c.MaxBatchRows, c.BatchSize)
	case c.FlushInterval < 0:
		return fmt.Errorf("flush interval %s must not be negative", time.Duration(c.FlushInterval))
	case c.Workers < 0 || c.Workers > 1024:
		return fmt.Errorf("worker count %d must be between 1 and 1024", c.Workers)
	case c.QueueBytes < 0:
		return fmt.Errorf("queue bytes %d must be positive", c.QueueBytes)
	case c.Compact && c.NoCompact:
		return errors.New("compact and no-compact are both set")
	case c.CheckpointInterval < 0:
		return fmt.Errorf("checkpoint interval %s must not be negative", time.Duration(c.CheckpointInterval))
	}
	if !c.Start.IsZero() {
		if err := c.Start.Validate(); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	return nil
}

// defaultWorkers is SyncerTuning.Workers' default with a ConcurrentSink:
// twice GOMAXPROCS, between 4 and 16.
func defaultWorkers() int { return min(16, max(4, 2*runtime.GOMAXPROCS(0))) }

// compacting reports whether workers compact their batches.
func (c *SyncerTuning) compacting() bool { return !c.NoCompact }

// ReaderFactory opens the event stream a syncer reads, from a position.
// When the reader it returns implements streamer.TableFilterer (the
// streamer package's readers do), the syncer sets its table filter to the
// task's block and allow lists: rows events of the tables it does not
// replicate come with their rows undecoded.
type ReaderFactory func(ctx context.Context, start streamer.Position) (streamer.Reader, error)

// syncerOptions are a Syncer's options, defaults filled in. A SubTask
// (and through it a SourceWorker) builds its syncer's from its own.
type syncerOptions struct {
	logger          *slog.Logger
	stopTimeout     time.Duration
	readerFactory   ReaderFactory
	remoteOpts      []streamer.RemoteOption // WithRemoteOptions'
	checkpointStore CheckpointStore
	sinkRetry       time.Duration
	sinkTimeout     time.Duration // 0: unbounded
	epoch           int64
	fenced          bool // WithEpoch given
	// fenceKey is the etcd key whose ModRevision is epoch (a SourceWorker
	// in etcd mode gives its binding key): an etcd ShardGroup writes the
	// syncer's shard locks only while it is there (shardgroup_fence.go).
	fenceKey       string
	skipPrecheck   bool // WithoutPrecheck given
	startSchema    []string
	hasStartSchema bool // WithStartSchema given
	metrics        metricsOptions
	shardGroups    []*ShardGroup // WithShardGroup's
	// inst, when a SubTask collects its syncers' metrics, is the one it
	// keeps for all of them.
	inst *syncerInstruments
}

const defaultSinkRetry = 5 * time.Minute

// DefaultSinkTimeout is WithSinkTimeout's default.
const DefaultSinkTimeout = 5 * time.Minute

// defaultSyncerOptions are the options a Syncer has before its own apply.
func defaultSyncerOptions() syncerOptions {
	return syncerOptions{logger: discardLogger(), stopTimeout: DefaultStopTimeout, sinkRetry: defaultSinkRetry, sinkTimeout: DefaultSinkTimeout}
}

// validate checks the options.
func (o *syncerOptions) validate() error {
	if o.stopTimeout <= 0 {
		return fmt.Errorf("stop timeout %s must be positive", o.stopTimeout)
	}
	return nil
}

// ReaderFactoryOption is WithReaderFactory's option, taken by NewSyncer
// and NewSubTask (for its syncer).
type ReaderFactoryOption struct{ f ReaderFactory }

// WithReaderFactory sets how the syncer opens its event stream (for example
// a streamer.LocalReader over a relay). Default: a streamer.RemoteReader on
// SyncerConfig.Upstream.
func WithReaderFactory(f ReaderFactory) ReaderFactoryOption { return ReaderFactoryOption{f} }

func (o ReaderFactoryOption) applySyncer(s *syncerOptions)   { s.readerFactory = o.f }
func (o ReaderFactoryOption) applySubTask(t *subTaskOptions) { o.applySyncer(&t.syncerOptions) }

// CheckpointStoreOption is WithCheckpointStore's option, taken by
// NewSyncer, NewSubTask and NewSourceWorker (for their syncers).
type CheckpointStoreOption struct{ s CheckpointStore }

// WithCheckpointStore sets where checkpoints are kept. Default: in the sink,
// when it is a CheckpointSink (mysqlsink is); otherwise this option is
// required.
func WithCheckpointStore(s CheckpointStore) CheckpointStoreOption { return CheckpointStoreOption{s} }

func (o CheckpointStoreOption) applySyncer(s *syncerOptions)   { s.checkpointStore = o.s }
func (o CheckpointStoreOption) applySubTask(t *subTaskOptions) { o.applySyncer(&t.syncerOptions) }
func (o CheckpointStoreOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySubTask(&w.subTaskOptions)
}

// SinkRetryOption is WithSinkRetry's option, taken by NewSyncer,
// NewSubTask and NewSourceWorker (for their syncers).
type SinkRetryOption struct{ d time.Duration }

// WithSinkRetry bounds how long the syncer retries a sink call that failed
// with a retryable error, with exponential backoff from 100ms to 5s, before
// it stops with the error. Default (and when d is 0) 5 minutes.
func WithSinkRetry(d time.Duration) SinkRetryOption { return SinkRetryOption{d} }

func (o SinkRetryOption) applySyncer(s *syncerOptions) {
	if o.d != 0 {
		s.sinkRetry = o.d
	}
}
func (o SinkRetryOption) applySubTask(t *subTaskOptions) { o.applySyncer(&t.syncerOptions) }
func (o SinkRetryOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySubTask(&w.subTaskOptions)
}

// SinkTimeoutOption is WithSinkTimeout's option, taken by NewSyncer,
// NewSubTask and NewSourceWorker (for their syncers).
type SinkTimeoutOption struct{ d time.Duration }

// WithSinkTimeout bounds each call the syncer makes to apply a batch or
// store a checkpoint, and each batch of a SubTask's snapshot copy: a call with no answer after d (a downstream
// connection gone half-open, a server hung) is abandoned, its context
// cancelled, and the syncer stops with a retryable error wrapping
// ErrSinkTimeout, which a SubTask resumes by itself (WithAutoResume) from
// the checkpoint stored downstream. A WARN is logged when half of d has
// passed. A DDL is never abandoned (it may rightly run for hours): it gets
// the same WARN, again each d while it runs. The continuous validator's
// passes (their reads of the downstream) have the same bound: a pass that
// gives up puts an error wrapping ErrSinkTimeout in the validator's
// status and the next pass tries again. Default DefaultSinkTimeout (5
// minutes); 0 keeps the default, a negative d turns the bound off.
func WithSinkTimeout(d time.Duration) SinkTimeoutOption { return SinkTimeoutOption{d} }

func (o SinkTimeoutOption) applySyncer(s *syncerOptions) {
	switch {
	case o.d > 0:
		s.sinkTimeout = o.d
	case o.d < 0:
		s.sinkTimeout = 0
	}
}
func (o SinkTimeoutOption) applySubTask(t *subTaskOptions) { o.applySyncer(&t.syncerOptions) }
func (o SinkTimeoutOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySubTask(&w.subTaskOptions)
}

// EpochOption is WithEpoch's option, taken by NewSyncer and NewSubTask (a
// SourceWorker in etcd mode gives its subtasks the binding's epoch).
type EpochOption struct{ epoch int64 }

// WithEpoch makes the syncer write under a fencing epoch (the binding
// epoch a coordinator hands out): every batch and checkpoint carries it, and
// a fenced sink refuses them once a newer epoch has written. Run fails with
// ErrStaleEpoch at once when the stored checkpoint is from a newer epoch.
// Default: the stored checkpoint's epoch (0 at a fresh start).
func WithEpoch(epoch int64) EpochOption { return EpochOption{epoch} }

func (o EpochOption) applySyncer(s *syncerOptions)   { s.epoch, s.fenced = o.epoch, true }
func (o EpochOption) applySubTask(t *subTaskOptions) { o.applySyncer(&t.syncerOptions) }

// WithStartSchema gives the definitions of the tables at the start of a
// task with no checkpoint, as DDL statements the syncer applies in order to
// an empty schema (CREATE DATABASE, CREATE TABLE; "USE db" sets the schema
// of the unqualified names that follow, as in a dump), instead of reading
// them from the upstream: for a task started at a position where they were
// not what they are now. Default: SHOW CREATE DATABASE and TABLE on the
// upstream, for the tables the task replicates.
//
// With it and WithReaderFactory, SyncerConfig.Upstream may be left zero:
// the syncer then reaches no server at all (unit tests of a host's code,
// with events from package dmworkertest). It then does not check the
// upstream's binlog settings or identity (checkpoints record no Server and
// are not checked for lineage), does not poll the upstream's binlog end
// (LagSeconds counts from the events read), a task with no checkpoint
// starts at SyncerConfig.Start (zero: the reader is opened at the zero
// Position), SyncerConfig.Source is required, and a restart replays in safe
// mode only up to the checkpoint's SafeUntil (with no upstream end to bound
// what a checkpoint store apart from the sink may have missed: set
// SyncerConfig.SafeMode where that matters).
func WithStartSchema(stmts ...string) SyncerOption { return startSchemaOption{stmts} }

type startSchemaOption struct{ stmts []string }

func (o startSchemaOption) applySyncer(s *syncerOptions) {
	s.startSchema, s.hasStartSchema = o.stmts, true
}

// Syncer replicates one source's row changes and DDL into a Sink, for one
// task: it reads binlog events, filters and routes them, decodes rows with
// the table definitions they were written with, applies them in batches
// with a checkpoint, and after a restart replays from the checkpoint in safe
// mode so that the downstream converges whatever moment the process died.
//
// Run works until its context ends or an error stops it; the error names
// the task, source, position and statement. For an event the syncer cannot
// apply (an unsupported DDL), Skip or Replace it and Run again.
type Syncer struct {
	cfg   SyncerConfig
	sink  Sink
	store CheckpointStore
	opts  syncerOptions
	log   *slog.Logger
	rules *rules
	shard *ShardGroup // pessimistic shard mode's; nil when off
	// shardFloor is where checkpoints stay while a shard DDL lock holds
	// some of the run's events (nil when none): the status says so.
	shardFloor atomic.Pointer[streamer.Position]
	// xaFloor is where checkpoints stay while an XA transaction is
	// prepared and not resolved (nil when none): the status says so.
	xaFloor atomic.Pointer[streamer.Position]

	runMu sync.Mutex

	mu        sync.Mutex
	operators map[string]errorOperator // by event position text
	status    SyncerStatus
	prog      progress.Tracker // lag and rates
	queueFn   func() int64     // reads the parallel queue's bytes while running

	// reached is set once the upstream has answered (a query, an event
	// read, a poll of its position): from then on an unreachable upstream
	// is an outage to wait out, not a wrong address.
	reached atomic.Bool

	inst *syncerInstruments // nil without metrics

	// feed, when set (by a subtask whose validator runs), gets the changes
	// the syncer reads and the checkpoints it stores (validator_feed.go).
	feed atomic.Pointer[validatorFeed]
}

// errorOperator is what the host said to do with a failing event.
type errorOperator struct {
	skip    bool
	replace []string
}

// NewSyncer returns a syncer for cfg writing into sink. It validates the
// configuration and options; nothing runs until Run.
func NewSyncer(cfg SyncerConfig, sink Sink, opts ...SyncerOption) (*Syncer, error) {
	o := defaultSyncerOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applySyncer(&o)
		}
	}
	return newSyncer(cfg, sink, o)
}

// newSyncer is NewSyncer with its options applied (a SubTask builds them
// from its own).
func newSyncer(cfg SyncerConfig, sink Sink, o syncerOptions) (*Syncer, error) {
	offline := cfg.Upstream == (streamer.UpstreamConfig{})
	if offline && (o.readerFactory == nil || !o.hasStartSchema || cfg.Source == "") {
		return nil, fmt.Errorf("dmworker: syncer for task %q: no upstream: a syncer without one needs WithReaderFactory, WithStartSchema and a Source name", cfg.Task)
	}
	if err := cfg.adjust(offline); err != nil {
		return nil, fmt.Errorf("dmworker: syncer for task %q: %w", cfg.Task, err)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("dmworker: syncer for task %s: %w", cfg.Task, err)
	}
	if sink == nil {
		return nil, fmt.Errorf("dmworker: syncer for task %s: a sink is required", cfg.Task)
	}
	store := o.checkpointStore
	if store == nil {
		cs, ok := sink.(CheckpointSink)
		if !ok {
			return nil, fmt.Errorf("dmworker: syncer for task %s: the sink keeps no checkpoints; give WithCheckpointStore", cfg.Task)
		}
		store = sinkStore{s: cs, timeout: o.sinkTimeout}
	}
	concurrent := false
	if cs, ok := sink.(ConcurrentSink); ok {
		concurrent = cs.Concurrent()
	}
	switch {
	case cfg.Workers == 0 && concurrent:
		cfg.Workers = defaultWorkers()
	case cfg.Workers == 0:
		cfg.Workers = 1
	case cfg.Workers > 1 && !concurrent:
		return nil, fmt.Errorf("dmworker: syncer for task %s: %d workers need a ConcurrentSink; %T is not one", cfg.Task, cfg.Workers, sink)
	}
	rs, err := newRules(cfg)
	if err != nil {
		return nil, fmt.Errorf("dmworker: syncer for task %s: %w", cfg.Task, err)
	}
	shard, err := shardGroupFor(&cfg, o.shardGroups)
	if err != nil {
		return nil, fmt.Errorf("dmworker: syncer for task %s source %s: %w", cfg.Task, cfg.Source, err)
	}
	s := &Syncer{
		shard:     shard,
		cfg:       cfg,
		sink:      sink,
		store:     store,
		opts:      o,
		rules:     rs,
		log:       o.logger.With(slog.String("component", "syncer"), slog.String("task", cfg.Task), slog.String("source", cfg.Source)),
		operators: map[string]errorOperator{},
	}
	s.status.Stage = SyncerNew
	s.inst = o.inst
	if s.inst == nil && o.metrics.enabled() {
		s.inst = &syncerInstruments{}
	}
	return s, nil
}

// offline reports whether the syncer has no upstream (see WithStartSchema).
func (s *Syncer) offline() bool { return s.cfg.Upstream == (streamer.UpstreamConfig{}) }

// startSchema builds the tracker WithStartSchema describes.
func startSchema(stmts []string) (*schema.Tracker, error) {
	t := schema.New()
	db := ""
	for _, q := range stmts {
		if f := strings.Fields(q); len(f) == 2 && strings.EqualFold(f[0], "USE") {
			db = strings.Trim(strings.TrimSuffix(f[1], ";"), "`")
			continue
		}
		if _, err := t.Apply(db, q); err != nil {
			return nil, &definitionError{create: q, err: err}
		}
	}
	return t, nil
}

// sinkStore adapts a CheckpointSink to CheckpointStore, each call bounded
// by the sink timeout (0: none): a run that starts or stops on a hung
// downstream fails with ErrSinkTimeout instead of waiting for ever.
type sinkStore struct {
	s       CheckpointSink
	timeout time.Duration
}

func (s sinkStore) Load(ctx context.Context, task, source string) (cp Checkpoint, found bool, err error) {
	err = boundCall(ctx, s.timeout, "load checkpoint", nil, func(ctx context.Context) error {
		cp, found, err = s.s.LoadCheckpoint(ctx, task, source)
		return err
	})
	return cp, found, err
}

func (s sinkStore) Save(ctx context.Context, cp Checkpoint) error {
	return boundCall(ctx, s.timeout, "save checkpoint", nil, func(ctx context.Context) error { return s.s.SaveCheckpoint(ctx, cp) })
}

// Skip tells the syncer to pass over the DDL at pos the next time it
// reaches it; also a row change logged as a statement (ErrStatementBinlog),
// an XA COMMIT (ErrXAPreparedBeforeStart) or an INCIDENT event
// (ErrUpstreamIncident) that stopped it, whose changes are then the host's
// to bring over. pos is either position a *SyncError names: its Start (where
// the event begins) or its Pos (right after it); only the file and offset
// count.
func (s *Syncer) Skip(pos streamer.Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.operators[opKey(pos)] = errorOperator{skip: true}
}

// Replace tells the syncer to run stmts downstream instead of the DDL at pos
// (a *SyncError's Start or Pos, as for Skip) the next time it reaches it.
// The statements are applied to the tracked schema too; they are taken as
// written, in the default sql_mode, not routed.
func (s *Syncer) Replace(pos streamer.Position, stmts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.operators[opKey(pos)] = errorOperator{replace: stmts}
}

func opKey(p streamer.Position) string { return fmt.Sprintf("%s:%d", p.Name, p.Offset) }

// takeOperator returns (and forgets) what the host said to do with the
// event that ends at end and starts at start. No other event the syncer
// asks about ends where this one starts: the event before a statement is
// its transaction's GTID event.
func (s *Syncer) takeOperator(end, start streamer.Position) (errorOperator, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range []streamer.Position{end, start} {
		if p.Name == "" {
			continue
		}
		if op, ok := s.operators[opKey(p)]; ok {
			delete(s.operators, opKey(p))
			return op, true
		}
	}
	return errorOperator{}, false
}

// SyncerStage is where a Syncer is in its life: New until Run, Running,
// Stopped once Run has returned (LastError says why, nil after a plain stop).
type SyncerStage string

// Syncer stages.
const (
	SyncerNew     SyncerStage = "New"
	SyncerRunning SyncerStage = "Running"
	SyncerStopped SyncerStage = "Stopped"
)

// String returns the stage's word.
func (s SyncerStage) String() string { return string(s) }

// MarshalText writes the stage's word.
func (s SyncerStage) MarshalText() ([]byte, error) { return []byte(s), nil }

// SyncerStatus is a snapshot of a syncer's progress.
type SyncerStatus struct {
	Stage SyncerStage
	// Checkpoint is the position saved last; Read the position after the
	// last event read.
	Checkpoint streamer.Position
	Read       streamer.Position
	// SafeUntil is the end of the safe-mode replay window (zero if none).
	SafeUntil streamer.Position
	// Rows and DDLs applied, binlog events read, and batches applied (sink
	// transactions), since the syncer was made.
	Rows, DDLs, Events, Batches int64
	// RowsPerSecond and EventsPerSecond are the rows applied and the
	// events read per second over the last ten seconds (since the start
	// of the run when that is shorter): they fall to 0 within ten seconds
	// once nothing is applied or read.
	RowsPerSecond, EventsPerSecond float64
	// LagSeconds is how far the downstream is behind the upstream: the
	// seconds since the latest moment up to which everything the upstream
	// had written is known to be applied (covered by Checkpoint). That
	// moment is the latest of: the upstream timestamp of the oldest event
	// read and not yet applied, that of the last event applied, and the
	// last time the syncer saw the upstream's binlog end (a heartbeat on
	// the stream, or a poll of its position every 2s) and has applied up
	// to that end since. So it grows while applying stalls (a lock
	// downstream) and while reading stalls (a half-open connection, an
	// outage: with the upstream out of sight for more than 5s it counts
	// from when it was last seen), and it reads 0 when the syncer has
	// applied everything the upstream had when last seen, less than 5s
	// ago. Event timestamps have a resolution of a second and come from
	// the upstream's clock. It keeps counting after Run has returned.
	LagSeconds float64
	// LastProgress is when the syncer last applied something: rows, a
	// DDL, or a move of the checkpoint (zero before the first). An idle
	// upstream gives nothing to apply; tell a stall from idleness by
	// LagSeconds.
	LastProgress time.Time
	// Workers is how many workers apply changes; QueueBytes the estimated
	// memory of changes read and not yet applied; Conflicts how many
	// changes had to wait for another worker (their keys were held by two).
	Workers    int
	QueueBytes int64
	Conflicts  int64
	// LastError is the error that stopped Run, nil while it runs.
	LastError error
}

// Status reports the syncer's progress.
func (s *Syncer) Status() SyncerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	if s.queueFn != nil {
		st.QueueBytes = s.queueFn()
	}
	now := time.Now()
	st.RowsPerSecond, st.EventsPerSecond = s.prog.Rates(now)
	st.LagSeconds = s.prog.Lag(now)
	if f := s.shardFloor.Load(); f != nil && st.Checkpoint.Compare(*f) > 0 {
		st.Checkpoint = *f
	}
	if f := s.xaFloor.Load(); f != nil && st.Checkpoint.Compare(*f) > 0 {
		st.Checkpoint = *f
	}
	st.Checkpoint, st.Read, st.SafeUntil = st.Checkpoint.Clone(), st.Read.Clone(), st.SafeUntil.Clone()
	return st
}

// updateStatus changes the status with f and keeps the rates, the lag and
// LastProgress in step with what f changed.
func (s *Syncer) updateStatus(f func(*SyncerStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.status
	rows, ddls, events, cp := st.Rows, st.DDLs, st.Events, st.Checkpoint
	f(st)
	moved := st.Checkpoint.Name != cp.Name || st.Checkpoint.Offset != cp.Offset
	if !moved && st.Rows == rows && st.DDLs == ddls && st.Events == events {
		return
	}
	now := time.Now()
	s.prog.Count(now, st.Rows-rows, st.Events-events)
	if moved {
		s.prog.Applied(st.Checkpoint)
		if s.inst != nil {
			s.inst.cpMoved.Store(now.UnixNano())
		}
	}
	if moved || st.Rows != rows || st.DDLs != ddls {
		st.LastProgress = now
	}
}

// Exported syncer errors; every error Run returns is a *SyncError wrapping
// one of these where one applies.
var (
	// ErrUnsupportedDDL is a DDL the syncer cannot apply to its tracked
	// schema. Skip or Replace it.
	ErrUnsupportedDDL = schema.ErrUnsupportedDDL
	// ErrSchemaMismatch means a row does not fit the tracked definition of
	// its table (column count or names differ).
	ErrSchemaMismatch = errors.New("dmworker: row does not match the tracked table definition")
	// ErrUnknownTable means a row event names a table the syncer has no
	// definition for.
	ErrUnknownTable = errors.New("dmworker: no definition for the table")
	// ErrSyncerRunning is returned by a second concurrent Run.
	ErrSyncerRunning = errors.New("dmworker: syncer already running")
	// ErrStatementBinlog is a row change the upstream logged as an SQL
	// statement (binlog_format STATEMENT or MIXED, globally or in the
	// writing session) on a table the task replicates: its rows never
	// reach the binlog as row events, so the syncer stops there, before
	// its checkpoint passes the statement. The SyncError names the
	// statement and its position. Set binlog_format=ROW upstream, then
	// bring the table's rows in line (or Skip the event) and Run again.
	// LOAD DATA logged as a statement stops the syncer whatever its table;
	// so does a stored function call that wrote (logged as SELECT f()),
	// and a statement on a table with triggers upstream.
	ErrStatementBinlog = errors.New("dmworker: a row change logged as a statement (binlog_format is not ROW)")
	// ErrBinlogFormat is returned by Run (and by SubTask in mode all, before
	// the copy) when the upstream's binlog does not carry every row change
	// in full: binlog_format must be ROW and binlog_row_image FULL. The
	// message says which setting to change.
	ErrBinlogFormat = errors.New("dmworker: the upstream's binlog settings lose row changes")
	// ErrUnsupportedColumn is a table map, of a table the task
	// replicates, with a column type the binlog decoder cannot read:
	// MariaDB's COMPRESSED columns, or column metadata of another length
	// than the column types call for. The syncer stops at the table map,
	// before any of the table's rows; the SyncError names the table and
	// the position.
	ErrUnsupportedColumn = errors.New("dmworker: a column type the binlog decoder cannot read")
)

// SyncError names where replication stopped.
type SyncError struct {
	Task, Source string
	// Start is where the failing event begins in its binlog file, with the
	// GTID set executed before its transaction; zero when the error is not
	// about one event. A task started there (SyncerConfig.Start) reads the
	// event again.
	Start streamer.Position
	// Pos is the position right after the failing event (or, when the
	// error is not about one event, where the syncer stood): a task
	// started there passes over the event. Skip and Replace take Start or
	// Pos alike. (An event of a MySQL 8 compressed transaction has no
	// place of its own: Start is where its Transaction_payload event
	// begins, and so is Pos unless it is the transaction's last event; the
	// transaction is read again, or passed over, whole.)
	Pos   streamer.Position
	Table string // schema.table, when one is concerned
	// Statement is the DDL, the kind of row change, or, for a table's
	// definition read from the upstream at a fresh start (SHOW CREATE
	// TABLE) that the tracker cannot take, that whole definition. The
	// message shows its first 200 bytes.
	Statement string
	Err       error
}

func (e *SyncError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dmworker: task %s source %s at %s", e.Task, e.Source, e.Pos)
	if !e.Start.IsZero() {
		fmt.Fprintf(&b, " (the event starts at %s:%d)", e.Start.Name, e.Start.Offset)
	}
	if e.Table != "" {
		fmt.Fprintf(&b, " table %s", e.Table)
	}
	if e.Statement != "" {
		st := e.Statement
		if len(st) > 200 {
			st = st[:200] + "..."
		}
		fmt.Fprintf(&b, " statement %q", st)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the cause.
func (e *SyncError) Unwrap() error { return e.Err }
