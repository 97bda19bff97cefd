// Package dmworker is an embeddable binlog replication worker: it follows an
// upstream MySQL or MariaDB server's binlog, keeps a durable local copy of it
// (the relay log), and replays the changes into a downstream that the host
// program supplies, under tasks a coordinator can start, pause, resume and
// move between workers through etcd.
//
// The library is built in layers, each usable on its own:
//
//   - package streamer: binlog event streams behind one pull-based Reader
//     interface. RemoteReader reads from the upstream server, reconnecting
//     with backoff and resuming at the last whole transaction without
//     delivering anything twice; LocalReader reads a relay directory.
//   - Position (an alias of streamer.Position): a binlog file, a 64-bit
//     offset and the executed GTID set, in the MySQL or MariaDB flavour, with
//     a text form, a JSON form and an order.
//   - Relay: a crash-safe copy of one upstream's binlog in DM's relay layout.
//   - Syncer: one task's replication of one source into a Sink, with
//     filters, routes, schema tracking and checkpoints.
//   - SubTask: one task on one source as a unit of work with stages (New,
//     Running, Paused, Stopped, Finished): Run, Pause, Resume, Update (while
//     Paused), Stop, Status. Retryable faults are resumed automatically with
//     backoff (WithAutoResume: 1s doubling to 1m, 10 attempts); other errors
//     and fencing refusals (ErrStaleEpoch) leave it Paused with the error in
//     its status. Modes full and all need the snapshot unit and fail with
//     ErrModeUnavailable until it is part of the build.
//   - SourceWorker: one upstream source, its Relay (SourceConfig.EnableRelay)
//     and its subtasks, which read the relay when it is on and the upstream
//     when it is off. In direct mode (WithSource) the host drives it with
//     StartSubTask, PauseSubTask, ResumeSubTask, UpdateSubTask, StopSubTask,
//     PauseRelay, ResumeRelay and PurgeRelay, with no etcd at all. In etcd
//     mode (WithEtcd) it follows the keys below. WithLiveness (a KeepAlive)
//     makes it stop everything at once while its registration is not
//     confirmed, and start again from its state when it is.
//
// # etcd key layout
//
// Every key lives under one prefix (DefaultEtcdPrefix, "/dmworker/", unless
// WithEtcdPrefix says otherwise); values are JSON unless noted:
//
//	<prefix>worker/<worker>                  KeepAlive: the worker is alive (WorkerInfo), under its lease.
//	<prefix>bound/<worker>                   Coordinator: the source bound to the worker (SourceBinding);
//	                                         the key's ModRevision is the binding's fencing epoch.
//	<prefix>source/<source>                  Host: the source's configuration (SourceConfig).
//	<prefix>subtask/<source>/<task>          Host: a subtask's configuration (SubTaskConfig).
//	<prefix>stage/relay/<source>             Host: "Running" or "Paused" (no key: Running).
//	<prefix>stage/subtask/<source>/<task>    Host: "Running", "Paused" or "Stopped" (no key: Running).
//	<prefix>status/<worker>/relay            Worker: its relay's status (RelayReport).
//	<prefix>status/<worker>/subtask/<task>   Worker: a subtask's status (SubTaskReport).
//	<prefix>coordinator/                     Coordinator: the election among coordinators.
//	<prefix>checkpoint/<task>/<source>       EtcdCheckpointStore: checkpoints.
//
// A SourceWorker reads bound/<worker>, then the source's config, subtask
// configs and stage keys at that one revision, applies them, and watches
// those keys from the next revision; after any change, watch failure or
// compaction it reads them all again and reconciles (see etcdkeys.go for
// the details: re-putting a stage applies it again, "Stopped" keeps a
// subtask stopped, deleting its config removes it).
//
// # Fencing
//
// Every binding of a source to a worker carries an epoch, the ModRevision
// of the bound key. Subtasks write under it (WithEpoch): the sink checks the
// epoch in the same transaction as each batch and its checkpoint and refuses
// a write from an older epoch with ErrStaleEpoch, data and checkpoint alike.
// A subtask taking a task over from an older epoch first stores the
// checkpoint under its own epoch, so that the old worker, if it still runs,
// cannot write again, and replays in safe mode up to the upstream's end,
// since the old worker may have applied changes past its checkpoint. A
// subtask refused with ErrStaleEpoch stays Paused with the error.
//
// Nothing in this package starts a goroutine, opens a connection or writes
// a file before the caller asks it to (Run); Close stops what was started
// and waits for it.
package dmworker
