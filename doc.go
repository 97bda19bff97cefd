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
//     its status. Modes full and all first copy the existing data (the
//     snapshot unit, see SnapshotConfig): at one consistent point, chunked,
//     in parallel, resumable; mode full then finishes, mode all replicates
//     from exactly that point. With SubTaskConfig.Validation a continuous
//     validator runs beside the syncer and checks the rows it changed
//     against the downstream (see ValidationConfig; SubTaskStatus.Validator).
//   - SourceWorker: one upstream source, its Relay (SourceConfig.EnableRelay)
//     and its subtasks, which read the relay when it is on and the upstream
//     when it is off. In direct mode (WithSource) the host drives it with
//     StartSubTask, PauseSubTask, ResumeSubTask, UpdateSubTask, StopSubTask,
//     PauseRelay, ResumeRelay and PurgeRelay, with no etcd at all. In etcd
//     mode (WithEtcd) it follows the keys below. WithLiveness (a KeepAlive)
//     makes it stop everything at once while its registration is not
//     confirmed, and start again from its state when it is.
//   - Diff: an on-demand comparison of tables upstream and downstream at one
//     consistent upstream point, by chunk checksums both servers compute,
//     row by row only inside chunks that differ, with type-aware rules (see
//     Diff); resumable, it reports the differing keys (DiffResult) and
//     writes the repair SQL (DiffResult.WriteFixSQL).
//
// # Configs and options
//
// What a host writes in files or etcd is a plain config struct: RelayConfig
// (NewRelay; embedded in SourceConfig), SyncerConfig and SubTaskConfig
// (both embed SyncerTuning), SourceConfig, SnapshotConfig. What only code
// can supply (a logger, a checkpoint store, a liveness, an etcd client,
// timeouts of the process) is a functional option, typed per constructor:
// NewRelay takes RelayOptions, NewSyncer SyncerOptions, NewSubTask
// SubTaskOptions, NewSourceWorker SourceWorkerOptions, NewKeepAlive
// KeepAliveOptions, NewCoordinator CoordinatorOptions. An option several
// types take (WithLogger, WithStopTimeout, WithEtcdPrefix, ...) returns a
// type that is each of theirs; one a type does not take does not compile.
// A SubTask hands its options to its Syncer, and a SourceWorker to its
// subtasks and relays. Constructors check configs and options and return
// the error; they never panic.
//
// # What the upstream must be
//
// The binlog must be on and carry every row change in full:
// binlog_format=ROW and binlog_row_image=FULL. A Syncer (and a SubTask in
// mode all, before it copies anything) checks them at start and refuses
// others with ErrBinlogFormat, saying what to set (WithoutPrecheck skips
// this). Check runs these and the other prechecks of a task (privileges,
// server ids, the start position, filters, keys, the downstream, the relay
// directory) and says what to fix, as DM's check-task does. A row change that still arrives as a
// statement (a session that set binlog_format=STATEMENT or MIXED) on a table
// the task replicates stops it with ErrStatementBinlog at that statement,
// before its checkpoint passes it: its rows are nowhere in the binlog. So
// does, in such a session, a call of a stored function that writes (the
// binlog holds "SELECT f()") and a statement on a table with triggers
// (asked of the upstream): what they wrote cannot be told. Skip passes
// over such a statement.
//
// XA transactions are applied when their XA COMMIT comes, not at XA
// PREPARE (where MariaDB logs their rows), and dropped at XA ROLLBACK; the
// checkpoint stays before the oldest prepared one meanwhile. An XA COMMIT
// of one prepared before the task's start stops it with
// ErrXAPreparedBeforeStart. An INCIDENT event (changes the upstream could
// not log) stops it with ErrUpstreamIncident.
//
// Any sql_mode is fine, global or per session. The library's own
// connections to the upstream set an empty session sql_mode (so SHOW CREATE
// prints backquoted names and every option), and each DDL of the binlog is
// parsed with the sql_mode its query event recorded (ANSI_QUOTES,
// PIPES_AS_CONCAT, IGNORE_SPACE, NO_BACKSLASH_ESCAPES, HIGH_NOT_PRECEDENCE,
// REAL_AS_FLOAT, ANSI, MAXDB, EMPTY_STRING_IS_NULL, and MariaDB's ORACLE with
// its VARCHAR2, NUMBER, RAW, CLOB, BLOB and DATE types). DDL.Query is written
// back in the default mode, with the same meaning; expressions whose ORACLE
// meaning has no default-mode spelling (||, CONCAT, LENGTH, TRIM, ...) are
// refused as ErrUnsupportedDDL (Replace them).
//
// # etcd key layout
//
// Every key lives under one prefix (DefaultEtcdPrefix, "/dmworker/", unless
// WithEtcdPrefix says otherwise); values are JSON unless noted:
//
//	<prefix>worker/<worker>                  KeepAlive: the worker is alive (WorkerInfo), under its lease.
//	<prefix>bound/<worker>                   Coordinator: the source bound to the worker (SourceBinding);
//	                                         the key's ModRevision is the binding's fencing epoch.
//	<prefix>source/<source>                  Host: the source's configuration (SourceConfig), its
//	                                         password sealed or referenced, never in plain text.
//	<prefix>subtask/<source>/<task>          Host: a subtask's configuration (SubTaskConfig).
//	<prefix>stage/relay/<source>             Host: "Running" or "Paused" (no key: Running); put again: restart a failed relay.
//	<prefix>stage/subtask/<source>/<task>    Host: "Running", "Paused" or "Stopped" (no key: Running).
//	<prefix>status/<worker>/relay            Worker: its relay's status (RelayReport).
//	<prefix>status/<worker>/subtask/<task>   Worker: a subtask's status (SubTaskReport).
//	<prefix>coordinator/<lease>              Coordinator: the election (one key per coordinator).
//	<prefix>checkpoint/<task>/<source>       EtcdCheckpointStore: checkpoints.
//
// A SourceWorker reads bound/<worker>, then the source's config, subtask
// configs and stage keys at that one revision, applies them, and watches
// those keys from the next revision; after any change, watch failure or
// compaction it reads them all again and reconciles (see etcdkeys.go for
// the details: re-putting a stage applies it again, "Stopped" keeps a
// subtask stopped, deleting its config removes it).
//
// # Parallel apply
//
// With SyncerConfig.Workers above 1 (the default, 16, for a ConcurrentSink
// such as mysqlsink) the syncer reads and decodes on one goroutine and
// applies on N workers. Each change is reduced to keys, one per primary or
// unique key of its table for its old and new row (text folded as a case-
// and accent-insensitive collation compares it): changes sharing a key stay
// on one worker, in order; a change whose keys two workers hold waits only
// for those workers to apply what they hold. Changes to the tables of a
// foreign key cascade group (see Table.CheckForeignKeys) are applied by the
// reading goroutine itself, in upstream order, once the workers have applied
// everything before them, in batches of whole transactions that carry an
// exact checkpoint: an ON DELETE or ON UPDATE action reaches rows the binlog
// never names, and a replay could not tell whether it ran. Each worker
// gathers up to
// BatchSize changes (waiting at most FlushInterval), merges changes to one
// row (unless NoCompact is set), groups them by table and kind where rows are
// independent, and applies them as one sink transaction fenced by the
// syncer's epoch. DDL is a barrier. Changes read but not applied are bounded
// by QueueBytes (64 MiB): the reader waits when it is spent, so a
// transaction of a million rows streams through. The checkpoint saved every
// CheckpointInterval (1s) is the low watermark, the end of the last
// upstream transaction every worker has applied; its SafeUntil reaches a
// little past what has been handed to the workers, so that after a crash
// the replay runs in safe mode over everything that may have been applied.
// Status reports rows/s, events/s, lag, queue bytes and conflict waits.
//
// # Online schema changes
//
// gh-ost and pt-online-schema-change change a table t by copying it into a
// shadow table they alter (_t_gho, _t_new), keeping it in step (gh-ost
// from the binlog, pt-osc by triggers), and swapping names at the cut-over:
// RENAME TABLE t TO _t_del, _t_gho TO t (pt-osc: t TO _t_old, _t_new TO
// t). With OnlineDDLConfig on (the default) the syncer replicates none of
// the tools' tables (shadow, changelog, sentry, old: told by name, by
// ShadowTableRules and TrashTableRules, DM's regular expressions); it
// records the ALTERs run on a shadow table against the real table it names
// and, at the cut-over, runs them downstream on the real table (routed) as
// DDL, once, while the tracked schema takes the shadow table's definition.
// The records travel with the checkpoint, inside Checkpoint.Schema, so
// every CheckpointStore keeps them: a syncer killed between the ALTER and
// the cut-over finds them on restart, and a cut-over replayed after a crash
// runs its ALTERs in safe mode. A shadow table dropped (an aborted run
// cleaned up) takes its record with it; nothing changes downstream.
// Online changes of tables the task does not replicate are passed over.
// gh-ost's ALTER of its ghost table's AUTO_INCREMENT is not recorded: the
// downstream table is never rebuilt and keeps its counter.
//
// # Liveness and coordination through etcd
//
// KeepAlive registers a worker: it puts <prefix>worker/<name> under a lease
// (TTL 60s unless WithKeepAliveTTL says otherwise) and renews the lease
// every sixth of the TTL. Its Alive turns false at once when the key is
// deleted or the lease is reported gone, and when no renewal has been
// confirmed for two thirds of the TTL (counted from when the last confirmed
// renewal was sent), so a worker cut off from etcd stops serving a third of
// the TTL before etcd can expire its key and let its source move. It then
// revokes the old lease and registers again under a new one, with backoff
// (500ms doubling to 10s unless WithEtcdBackoff says otherwise); it never
// takes over a key another process holds.
//
// Coordinator, run in every process of a cluster, elects one leader under
// <prefix>coordinator/. The leader binds each source (<prefix>source/) to
// one idle live worker (<prefix>bound/<worker>), keeps live bindings, and
// deletes the binding of a worker whose key is gone or was created again,
// binding the source to another idle worker; it reacts to every change
// (watched) and reads everything again when a watch fails. A binding's
// epoch is its key's ModRevision, higher for every new binding. Every write
// is a transaction guarded by the leader's election key and the bindings'
// revisions: a deposed leader cannot write, and no source is ever bound to
// two workers at once.
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
// # Credentials in etcd
//
// A source's config never holds the upstream's password in plain text in
// etcd. The host writes it with PutSourceConfig (or SealSourceConfig and a
// put of its own), which seals the password with AES-GCM under a key the
// host keeps outside etcd (WithCredentialKey: the same key on the workers),
// or gives a PasswordRef that the workers' CredentialResolver turns into
// the password (WithCredentialResolver). json.Marshal of a SourceConfig
// with a password refuses it (ErrPlaintextPassword), and a worker refuses
// to serve a config read from etcd with a plaintext password (written by an
// older host): its status says ErrPlaintextPassword until the config is
// written again with PutSourceConfig. A sealed password it cannot open, or
// a reference it cannot resolve, is ErrCredentials. SourceConfig and
// SyncerConfig hide the password from slog (text and JSON) and fmt.
//
// # Source names and checkpoint lineage
//
// A checkpoint belongs to a task and a source name (SourceConfig.Name,
// SubTaskConfig.Source, SyncerConfig.Source), never to the address the
// upstream is reached through: the same task through a proxy, a virtual IP
// after a failover or a new DNS name goes on from its checkpoint. Without a
// name, a source is named by its "host:port" (UpstreamConfig.SourceName),
// which changes with the address; give one when it may. A checkpoint stored
// under the upstream's "host:port" (the only key before names) is taken
// over by a task whose named source has none: moved where the store is a
// CheckpointMover (the in-memory and etcd stores, mysqlsink), copied
// otherwise.
//
// Checkpoints record the identity of the server their position is in
// (Checkpoint.Server: @@server_uuid on MySQL, "<gtid_domain_id>-<server_id>"
// on MariaDB). When the syncer starts from a checkpoint it asks the server
// reached now for its identity, binlog files and executed GTID set, and
// resumes from the file position when the checkpoint can be a place in that
// server's binlog (same server, or unknown for an older checkpoint; the file
// present with the offset in it, or older than the oldest, which the reader
// then reports as purged; the checkpoint's GTIDs executed there), from the
// GTID set alone when the server is another one that has executed every
// GTID of the checkpoint (a promoted replica, as DM does with GTIDs; what
// may have been applied past the checkpoint is then replayed in safe mode
// up to that server's end), and refuses with ErrCheckpointLineage
// otherwise: it never starts anywhere else silently.
//
// # Stopping
//
// Nothing in this package starts a goroutine, opens a connection or writes
// a file before the caller asks it to (Run); Close stops what was started
// and waits for it. What a stop still has to do (the last batch and its
// checkpoint, the note that the next run replays in safe mode, the last
// status report to etcd) is bounded by WithStopTimeout (5s): Close, Pause,
// Stop and the end of Run's context return within it whatever is
// unreachable or stalled, and work not done by then is abandoned, never
// half applied (a sink transaction commits with its checkpoint or not at
// all). KeepAlive and Coordinator give up their lease within 2s.
//
// # Errors
//
// Callers tell errors apart with errors.Is (the Err... sentinels, and those
// of package streamer) and errors.As (SyncError, SnapshotError,
// streamer.RelayError, ...); each message names the task, source, position
// and object it concerns. An error that stops a unit (the syncer, the
// snapshot, the relay, a subtask's pause) and an error a Run returns carry
// the stack where they crossed into or out of this package, recorded with
// github.com/pingcap/errors: ErrorStack returns it, and this package's log
// lines write it under "stack" beside "error". The stack changes neither the
// message nor what errors.Is and errors.As find.
//
// # Metrics, status and health
//
// WithMetrics gives a type a prometheus.Registerer: it registers its
// dmworker_* metrics (labels task, source, worker) while Run runs, a
// SourceWorker for its relay, subtasks, syncers and snapshots too; nothing
// is registered without it, nor globally. StatusHandler serves a
// SourceWorker's /status (StatusJSON), /healthz (Unhealthy's reasons) and
// /metrics for the host to mount. The README lists the metrics.
//
// # Shard merge
//
// One process may run any number of SourceWorkers, one per upstream: they
// share no package state, their metrics carry their own worker and source
// labels (one registry serves them all), and in etcd mode they may share
// the host's client. A task spanning several sources is one subtask per
// source with the same task name (its checkpoints are keyed by task and
// source); routes send each source's shard tables (orders_01, orders_02,
// ...) to one downstream table. With SubTaskConfig.ShardMode
// ShardPessimistic and one ShardGroup per task given to each of its
// sources' workers (WithShardGroup), a shard table's DDL holds its source
// until every source has reached it, then reaches the downstream table once
// (see ShardGroup). With ShardOptimistic a shard table's DDL reaches the
// downstream table as it comes when the downstream can take it while the
// other shards keep their schema (adding a nullable column or one with a
// default, an index, widening a column), a drop waits for the last shard,
// and a DDL the others' rows could not live with stops that shard with a
// ShardIncompatibleDDLError. With the sources in several processes, each
// makes the task's group with NewEtcdShardGroup over one etcd, in either
// mode.
package dmworker
