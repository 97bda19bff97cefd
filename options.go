package dmworker

import (
	"log/slog"
)

// Options are typed per constructor: each constructor takes its own option
// interface (RelayOption, SyncerOption, SubTaskOption, SourceWorkerOption,
// KeepAliveOption, CoordinatorOption, PutSourceConfigOption), so that an
// option given to a type it does not apply to is a compile error. An option
// that one type takes returns that type's interface (WithWorkerAddr returns
// a KeepAliveOption); an option several types take returns its own struct
// type, which implements each of their interfaces (WithLogger returns a
// LoggerOption, taken by every constructor). Each type fills its defaults in
// one place and checks its options in one place, whose error its
// constructor returns. Every option's doc states its default.

// RelayOption configures a Relay (NewRelay). How a relay keeps its copy is
// its RelayConfig; options carry what only code supplies: WithLogger,
// WithRemoteOptions, WithMetrics.
type RelayOption interface{ applyRelay(*relayOptions) }

// SyncerOption configures a Syncer (NewSyncer): WithLogger,
// WithStopTimeout, WithCheckpointStore, WithReaderFactory, WithSinkRetry,
// WithEpoch, WithRemoteOptions, WithStartSchema, WithoutPrecheck,
// WithShardGroup, WithMetrics.
type SyncerOption interface{ applySyncer(*syncerOptions) }

// SubTaskOption configures a SubTask (NewSubTask): WithAutoResume, and the
// options it passes to its Syncer (WithLogger, WithStopTimeout,
// WithCheckpointStore, WithReaderFactory, WithSinkRetry, WithEpoch,
// WithRemoteOptions, WithoutPrecheck, WithShardGroup), and WithMetrics (it collects its
// syncer's and snapshot's metrics).
type SubTaskOption interface{ applySubTask(*subTaskOptions) }

// SourceWorkerOption configures a SourceWorker (NewSourceWorker): WithSource
// or WithEtcd (with WithEtcdPrefix, WithStatusInterval, WithCredentialKey,
// WithCredentialResolver), WithRelayDir, WithLiveness, and what it passes
// to its subtasks and relays (WithLogger, WithStopTimeout, WithAutoResume,
// WithCheckpointStore, WithSinkRetry, WithRemoteOptions, WithoutPrecheck,
// WithShardGroup), and WithMetrics (it collects for its relay and subtasks).
type SourceWorkerOption interface{ applySourceWorker(*sourceWorkerOptions) }

// KeepAliveOption configures a KeepAlive (NewKeepAlive): WithLogger,
// WithEtcdPrefix, WithKeepAliveTTL, WithEtcdBackoff, WithWorkerAddr,
// WithMetrics.
type KeepAliveOption interface{ applyKeepAlive(*keepAliveOptions) }

// CoordinatorOption configures a Coordinator (NewCoordinator): WithLogger,
// WithEtcdPrefix, WithKeepAliveTTL, WithEtcdBackoff, WithMetrics.
type CoordinatorOption interface{ applyCoordinator(*coordinatorOptions) }

// PutSourceConfigOption configures PutSourceConfig: WithCredentialKey,
// WithEtcdPrefix.
type PutSourceConfigOption interface {
	applyPutSourceConfig(*putSourceConfigOptions)
}

// discardLogger is every type's default logger.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// LoggerOption is WithLogger's option, taken by every New... constructor
// and by Diff.
type LoggerOption struct{ l *slog.Logger }

// WithLogger sets the logger. Default: discard everything.
func WithLogger(l *slog.Logger) LoggerOption { return LoggerOption{l} }

func (o LoggerOption) set(dst **slog.Logger) {
	if o.l != nil {
		*dst = o.l
	}
}

func (o LoggerOption) applyRelay(r *relayOptions)               { o.set(&r.logger) }
func (o LoggerOption) applySyncer(s *syncerOptions)             { o.set(&s.logger) }
func (o LoggerOption) applySubTask(s *subTaskOptions)           { o.set(&s.logger) }
func (o LoggerOption) applySourceWorker(w *sourceWorkerOptions) { o.set(&w.logger) }
func (o LoggerOption) applyKeepAlive(k *keepAliveOptions)       { o.set(&k.logger) }
func (o LoggerOption) applyCoordinator(c *coordinatorOptions)   { o.set(&c.logger) }

// EtcdPrefixOption is WithEtcdPrefix's option, taken by NewSourceWorker,
// NewKeepAlive, NewCoordinator and PutSourceConfig.
type EtcdPrefixOption struct{ prefix string }

// WithEtcdPrefix sets the prefix under which every etcd key lives (see the
// key layout in the package doc). Default DefaultEtcdPrefix, "/dmworker/".
// A SourceWorker takes it only with WithEtcd.
func WithEtcdPrefix(prefix string) EtcdPrefixOption { return EtcdPrefixOption{prefix} }

func (o EtcdPrefixOption) applySourceWorker(w *sourceWorkerOptions) {
	w.etcdPrefix, w.etcdPrefixSet = o.prefix, true
}
func (o EtcdPrefixOption) applyKeepAlive(k *keepAliveOptions)     { k.etcdPrefix = o.prefix }
func (o EtcdPrefixOption) applyCoordinator(c *coordinatorOptions) { c.etcdPrefix = o.prefix }
func (o EtcdPrefixOption) applyPutSourceConfig(p *putSourceConfigOptions) {
	p.etcdPrefix = o.prefix
}
