package streamer

import (
	"context"

	"github.com/go-mysql-org/go-mysql/replication"
)

// Reader is a pull-based stream of binlog events: the one interface the
// syncer reads through, whether the events come from the upstream server
// (RemoteReader) or from the local relay directory.
//
// Contract:
//   - GetEvent blocks until the next event is available, ctx is done, or the
//     stream fails. It returns ctx.Err() (unwrapped) when ctx ends first; the
//     reader stays usable and the next call resumes where this one stopped.
//   - Any other error is terminal: later calls return the same error. Errors
//     wrap one of the package's exported sentinels where one applies, so
//     callers tell them apart with errors.Is.
//   - A live stream has no end: it waits for new events. A reader built to
//     stop at the end of what exists returns ErrEndOfStream there.
//   - Events are delivered in binlog order, each once; a transaction's events
//     are delivered contiguously.
//   - After Close, GetEvent returns ErrClosed. Close is idempotent and waits
//     for every goroutine the reader started.
//   - A Reader is not safe for concurrent GetEvent calls; Close may be called
//     from any goroutine.
type Reader interface {
	GetEvent(ctx context.Context) (*Event, error)
	Close() error
}

// Event is one binlog event with the position the stream has reached after it.
type Event struct {
	// BinlogEvent is the event as decoded by go-mysql: Header, Event and
	// RawData (the event's bytes as the server wrote them, checksum included).
	*replication.BinlogEvent

	// Pos is the position right after this event: the binlog file, the offset
	// where the next event starts, and the GTID set executed by every
	// transaction that has ended at or before this event. Pos.GTIDSet is
	// shared between events and must not be modified; Clone it to keep a copy.
	// For events the server marks as artificial (fake rotate, heartbeat, the
	// format description re-sent at a reconnect) Pos is the position before
	// the event, since they do not occupy space in the file.
	Pos Position

	// GTID is the GTID of the transaction this event belongs to, in the
	// upstream's flavour ("0-1-42" or "uuid:42"), or "" outside a transaction
	// or when the upstream does not use GTIDs.
	GTID string

	// TxnEnd is true when this event ends a transaction (XID, COMMIT, or the
	// single statement of a DDL).
	TxnEnd bool

	// Boundary is true when Pos lies between transactions: after a
	// transaction's end, or after a real event outside any transaction
	// (format description, GTID list, rotate, ...). Pos is then a safe point
	// to resume reading from.
	Boundary bool

	// payloadStart is, for an event a Transaction_payload event holds,
	// the offset where that payload begins; 0 for any other event.
	payloadStart uint64
}

// Start is where the event begins in its binlog file (file and offset, no
// GTID set): Pos less the event's size; for an event a Transaction_payload
// event holds, which has no place of its own in the file, where the payload
// begins (see the package doc). Zero for an artificial event and for a
// rotate (whose Pos is in the next file).
func (e *Event) Start() Position {
	if e.payloadStart > 0 {
		return Position{Name: e.Pos.Name, Offset: e.payloadStart}
	}
	size := uint64(e.Header.EventSize)
	if e.Artificial() || size == 0 || size > e.Pos.Offset || e.Header.EventType == replication.ROTATE_EVENT {
		return Position{}
	}
	return Position{Name: e.Pos.Name, Offset: e.Pos.Offset - size}
}

// Artificial reports whether the server made the event up for this stream
// (a fake rotate, a format description re-sent at the start of a dump, a
// heartbeat): it is not part of the binlog file and occupies no space in it.
func (e *Event) Artificial() bool { return isArtificial(e.Header) }
