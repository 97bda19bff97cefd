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
package dmworker
