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
//     delivering anything twice.
//   - Position (an alias of streamer.Position): a binlog file, a 64-bit
//     offset and the executed GTID set, in the MySQL or MariaDB flavour, with
//     a text form, a JSON form and an order.
//
// Relay, Syncer, SubTask, SourceWorker and KeepAlive, the worker's public
// types, are added by later changes; their files hold their place in the
// layout and say so. Nothing in this package starts a goroutine, opens a
// connection or writes a file before the caller asks it to.
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
package dmworker
