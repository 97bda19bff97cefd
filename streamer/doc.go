// Package streamer is everything about a stream of binlog events: the Reader
// interface the syncer reads through, the readers that implement it, and the
// binlog Position they report.
//
// # Readers
//
// A Reader is pulled one event at a time with GetEvent(ctx); see Reader for
// the full contract (blocking, context, terminal errors, Close).
//
// RemoteReader reads from an upstream MySQL or MariaDB server over the dump
// protocol (its own dump loop, as RawReader's, and go-mysql's parser, on a
// goroutine of its own: remoteconn.go), from a file and offset or from a
// GTID set, with heartbeats, a read timeout and CRC32 verification of every event. A
// connection gone silent (half-open) is given up after the read timeout,
// 15s by default (heartbeats every 5s). Before its first successful
// connection, an upstream that cannot be reached (ErrUnreachable) or refuses
// the login (ErrAccessDenied) ends the reader at once, since retrying cannot
// cure a wrong address or password. Later, when the connection drops, it
// reconnects with exponential backoff from the end of the last whole
// transaction it delivered, and skips what it had already delivered of the
// transaction that was cut: the consumer sees the same sequence of events as
// a clean read. Row values are decoded the same way by every reader:
// DECIMAL as exact decimals, TIMESTAMP in UTC, JSON as MySQL's text.
// RemoteReader decodes them in GetEvent, on the consumer's goroutine (go-mysql's
// network goroutine decodes a rows event's header only), and, with
// WithTableFilter (or TableFilterer's SetTableFilter), only for the tables
// the consumer keeps; the rows events of the others are delivered in their
// place with Rows nil (filter.go).
//
// RawReader reads the same upstream stream for consumers that copy it rather
// than apply it (dmworker.Relay): it speaks the dump protocol itself on one
// goroutine, reads packets into one reused buffer and decodes only event
// headers and the fields that frame transactions, so reading allocates
// nothing per event. It is pulled with Next(ctx), returns events as raw
// bytes (RawEvent, valid until the next call), and keeps RemoteReader's
// reconnect, skip, timeout, heartbeat, checksum and error behaviour (the
// two share one reconnect core, reconnect.go). The wire format it reads is
// drawn in rawdump.go.
//
// LocalReader reads a relay directory (see below) as RemoteReader reads the
// upstream: for the same start it delivers the same events with the same
// positions, GTIDs and transaction ends (heartbeats aside). It starts at a
// position, a relay position, DM's "mysql-bin|000002.000123" form, or a GTID
// set; follows rotations and subdirectories in index order, skipping in a
// newer subdirectory the transactions already read; waits at the tail on the
// in-process Relay's notification (WithRelayTail) or by a bounded poll; holds
// back purge with a lease (WithRelayRegistry, Ack; dmworker.Relay.OpenReader
// opens one so); and reports corruption (ErrRelayCorrupt, naming file and
// offset) instead of skipping it. Its code is split by concern: local.go (the
// type, options, GetEvent), local_start.go (finding the start),
// local_frame.go (framing a file), local_events.go (checking and decoding
// events), local_tail.go (following the tail).
//
// # Compressed transactions (MySQL 8)
//
// MySQL 8.0.20+ with binlog_transaction_compression=ON writes a
// transaction's events (BEGIN through XID or COMMIT; its GTID event stays in
// front) zstd-compressed in one Transaction_payload event (format in
// payload.go). RemoteReader and LocalReader deliver the events it holds in
// its place, each an Event of its own whose RawData is the inner event's
// bytes (no checksum, log_pos 0): an inner event has no position on the
// server, so, as go-mysql stamps them, Pos is the payload's start for every
// inner event but the last, and the payload's end for the last, which
// carries TxnEnd and the GTID set after the transaction; Event.Start is the
// payload's start for all of them. RawReader delivers
// the payload event itself, byte for byte (the relay copies it), with
// TxnEnd and the GTID set at its end; it decompresses it to check that it
// holds one whole transaction. A payload that does not (damaged, nested,
// over 1 GiB uncompressed, a transaction that ends early or not at all) is
// an error: ErrRelayCorrupt from LocalReader, naming the file and offset.
//
// # Positions
//
// Every Event carries the Position after it: the file, the 64-bit offset
// where the next event starts, and the GTID set executed by every transaction
// ended so far. Event.TxnEnd marks the events after which that position is a
// safe point to resume from. Position has a text form that parses back
// (ParsePosition), a JSON form, and an order (Compare, CompareGTID).
//
// # Relay directory
//
// The relay log (written by dmworker.Relay, read by the local reader) keeps
// PingCAP DM's layout, so that DM's tools and ours can read each other's:
//
//	<relay-dir>/
//	  server-uuid.index          subdirectory names, one a line, oldest first
//	  <server-id>.000001/        one subdirectory per upstream binlog history
//	    relay.meta               TOML: binlog-name, binlog-pos, binlog-gtid
//	    mysql-bin.000001         the upstream's binlog files, same names
//	    mysql-bin.000002
//	  <other-id>.000002/         added when the upstream's identity changes
//
// These names and formats must never change:
//
//   - A subdirectory is named "<server-id>.<6-digit sequence>". The server id
//     is the upstream's @@server_uuid; MariaDB has none, so it is
//     "<gtid_domain_id>-<server_id>" (e.g. "0-1.000001"). The sequence grows
//     by one with every new subdirectory, so the index order is also the
//     name order of the sequences.
//
//   - A relay binlog file is a valid binlog file: the 4-byte magic
//     0xfe 'b' 'i' 'n', then the upstream's events byte for byte, at the
//     offsets they have upstream (the first is the format description).
//     Heartbeats and the artificial events the server makes up for a
//     connection are not written. mariadb-binlog and mysqlbinlog read it.
//
//   - relay.meta says how far the subdirectory has been written durably:
//
//     binlog-name = "mysql-bin.000002"
//     binlog-pos = 1234
//     binlog-gtid = "0-1-42"
//
//     Everything before binlog-pos of binlog-name, and every older file, has
//     been fsynced. relay.meta and server-uuid.index are replaced
//     atomically (temporary file, fsync, rename, fsync of the directory).
//
//   - Relay positions (RelayPos) name a subdirectory, a file and an offset.
//     DM's text form puts the subdirectory's sequence into the file name:
//     "mysql-bin|000002.000123" is mysql-bin.000123 in subdirectory
//     <server-id>.000002 (DMPosition, ParseDMPosition).
//
// After a crash, bytes past binlog-pos of the newest file may be torn: a
// writer cuts them back to the end of the last whole transaction
// (ScanRelayFile finds it), and a relay.meta behind the files is brought
// forward. A bad checksum or a truncation before binlog-pos, a relay.meta or
// server-uuid.index that does not parse, and an index that is empty or
// missing (or does not list a subdirectory) while a subdirectory holds
// relay files are corruption (ErrRelayCorrupt, in a *RelayError naming the
// file and offset): never skipped, never written over.
//
// A write, fsync or creation the file system refuses (no space left, a
// read-only file system, an I/O error) is ErrRelayWrite, in a *RelayError
// naming the file and the offset the write was at and wrapping the cause
// (errors.Is(err, syscall.ENOSPC)). A RelayFileWriter that met one writes
// nothing more (a failed write may have dropped bytes it had taken): every
// later call returns the same error, and nothing after the last point made
// durable is published; the next writer resumes from what the repair finds.
//
// The write half is one type, RelayDir: the directory's lock (one writer
// across processes), the index and its subdirectories, the repair above
// (Prepare), relay.meta, the removal of old files (Purge, which never
// removes the newest file nor one a reader needs) and the copy of older
// upstream files. The read half is LocalReader, with ReadRelayIndex,
// ReadRelayMeta, RelayFiles and ScanRelayFile for tools.
//
// Files older than the oldest one of a subdirectory may be added to it
// later, when a reader needs them (RelayDir.CopyUpstream): each is written
// under a hidden name (".<name>.part", ignored by readers) and renamed into place
// once it and every newer missing file are complete, newest first.
//
// Permissions: a relay creates binlog files, relay.meta, server-uuid.index
// and its lock 0640 and directories 0750 (DefaultRelayFileMode,
// DefaultRelayDirMode; dmworker.RelayConfig's FileMode and DirMode widen
// them): the files hold every statement the upstream logged, passwords in
// CREATE USER included. relay.meta and server-uuid.index keep the mode of the file they
// replace; a new one gets its directory's without the execute bits.
//
// # Errors
//
// Readers return *Error, which names the source, the operation and the
// position, and wraps one of the exported sentinels where one applies:
// ErrAccessDenied, ErrUnknownHost, ErrBinlogPurged, ErrGTIDNotServable,
// ErrBadPosition, ErrChecksum, ErrUpstream, ErrRetryExhausted, ErrClosed;
// a LocalReader that meets damage returns one whose Kind is ErrRelayCorrupt
// and which wraps the *RelayError naming file and offset. An *Error with no
// Kind is a connection fault that a new try may cure.
// Passwords never appear in errors or logs: UpstreamConfig redacts itself in
// every fmt verb and in slog.
package streamer
