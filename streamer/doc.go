// Package streamer is everything about a stream of binlog events: the Reader
// interface the syncer reads through, the readers that implement it, and the
// binlog Position they report.
//
// # Readers
//
// A Reader is pulled one event at a time with GetEvent(ctx); see Reader for
// the full contract (blocking, context, terminal errors, Close).
//
// RemoteReader reads from an upstream MySQL or MariaDB server through
// go-mysql's BinlogSyncer, from a file and offset or from a GTID set, with
// heartbeats, a read timeout and CRC32 verification of every event. When the
// connection drops it reconnects with exponential backoff from the end of the
// last whole transaction it delivered, and skips what it had already delivered
// of the transaction that was cut: the consumer sees the same sequence of
// events as a clean read. Row values are decoded the same way by every reader:
// DECIMAL as exact decimals, TIMESTAMP in UTC, JSON as MySQL's text.
//
// # Positions
//
// Every Event carries the Position after it: the file, the 64-bit offset
// where the next event starts, and the GTID set executed by every transaction
// ended so far. Event.TxnEnd marks the events after which that position is a
// safe point to resume from. Position has a text form that parses back
// (ParsePosition), a JSON form, and an order (Compare, CompareGTID).
//
// # Errors
//
// Readers return *Error, which names the source, the operation and the
// position, and wraps one of the exported sentinels where one applies:
// ErrAccessDenied, ErrUnknownHost, ErrBinlogPurged, ErrGTIDNotServable,
// ErrBadPosition, ErrChecksum, ErrUpstream, ErrRetryExhausted, ErrClosed.
// Passwords never appear in errors or logs: UpstreamConfig redacts itself in
// every fmt verb and in slog.
package streamer
