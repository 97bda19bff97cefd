package streamer

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// RawReader reads an upstream's binlog as raw events, for consumers that copy
// the binlog rather than apply it (the relay). It speaks the dump protocol
// itself on one goroutine, reads packets into one reused buffer and decodes
// only event headers and the few fields that frame transactions (GTID,
// query, XID, rotate and format description events), so reading costs no
// allocation per event. Checksums are verified (CRC32, as the server writes
// them). A Transaction_payload event (MySQL 8 compressed transaction) is
// delivered as it is; the events it holds are decompressed and framed like
// the others, so that it ends its transaction (see the package doc).
//
// It keeps RemoteReader's guarantees: when the connection drops it
// reconnects with backoff from the end of the last whole transaction it
// delivered and skips what it had delivered already, so that its consumer
// sees the sequence of events a clean read gives; the read timeout and
// heartbeats work alike (the same RemoteOptions apply; WithEventQueueSize and
// WithoutRowValues have nothing to do here), so does the end at once of a
// first connection that cannot work (ErrUnreachable, ErrAccessDenied,
// ErrUnknownHost; see WithRetryFirstConnect). Connecting happens at the
// first Next.
//
// A RawReader is not safe for concurrent Next calls; Close may be called from
// any goroutine.
type RawReader struct {
	reconnect[*dumpConn] // positions without GTID sets: see GTIDSet

	// Touched by Next only (one caller at a time).
	tracker *txnTracker // in place: the set is the reader's own
	parser  *replication.BinlogParser
	crc     bool // events on this connection carry a CRC32
	ev      RawEvent
	snap    mysql.GTIDSet // copy of tracker.gset at snapVer
	snapVer uint64
	// cur is the connection attached (nil when none): Next takes it
	// without the reconnect core's lock while closing is false.
	cur      *dumpConn
	caughtUp func() // see OnCaughtUp
	closing  atomic.Bool
}

// RawEvent is one binlog event as the server sent it. The RawReader reuses
// it: it and Data are valid until the next call to Next.
type RawEvent struct {
	// Header is the event's decoded 19-byte header.
	Header replication.EventHeader
	// Data is the event's bytes, header and checksum included.
	Data []byte
	// Pos is the position right after the event, as in Event: for a rotate
	// event, the file it names and the offset in it; for an artificial
	// event, the position before it. Pos.GTIDSet is always nil: the set
	// executed there is RawReader.GTIDSet.
	Pos Position
	// TxnEnd and Boundary are as in Event.
	TxnEnd   bool
	Boundary bool
}

// Artificial reports whether the server made the event up for this stream
// (fake rotate, re-sent format description, heartbeat): it is not part of the
// binlog file.
func (e *RawEvent) Artificial() bool { return isArtificial(&e.Header) }

// NewRawReader returns a raw reader of up's binlog from start, which selects
// the mode as in NewRemoteReader. It validates its arguments and does not
// connect.
func NewRawReader(up UpstreamConfig, start Position, opts ...RemoteOption) (*RawReader, error) {
	cfg, up, start, err := remoteSetup(up, start, opts)
	if err != nil {
		return nil, err
	}
	flavor := start.Flavor
	if flavor == "" {
		flavor = up.Flavor
	}
	// remoteSetup cloned the start's set: the tracker may own it.
	tr := newTxnTracker(flavor, start.GTIDSet)
	tr.inPlace = true
	p := replication.NewBinlogParser()
	p.SetFlavor(flavor)
	p.SetVerifyChecksum(true)
	r := &RawReader{tracker: tr, parser: p}
	r.init(up, cfg, start)
	r.pos = Position{Name: start.Name, Offset: start.Offset}
	r.delivered, r.safe = r.pos, r.pos
	return r, nil
}

// Source is the name of the upstream, as it appears in errors.
func (r *RawReader) Source() string { return r.source() }

// Position is the position after the last event delivered, with the GTID set
// executed there (see GTIDSet). Like Next, it must not be called
// concurrently with Next.
func (r *RawReader) Position() Position {
	p := r.delivered
	if p.GTIDSet = r.GTIDSet(); p.GTIDSet != nil {
		p.Flavor = r.tracker.flavor
	}
	return p
}

// GTIDSet is the GTID set executed at the position after the last event
// delivered, which is also the set at the last Boundary delivered (only a
// transaction's end changes it); nil while unknown. The set is a copy the
// reader does not modify afterwards; it is made again only after the set
// changed, so calling GTIDSet once per sync rather than once per event
// keeps reading free of allocation. Like Next, it must not be called
// concurrently with Next.
func (r *RawReader) GTIDSet() mysql.GTIDSet {
	if r.tracker.gset == nil {
		return nil
	}
	if r.snap == nil || r.snapVer != r.tracker.version {
		r.snap, r.snapVer = r.tracker.gset.Clone(), r.tracker.version
	}
	return r.snap
}

// Next returns the next event. Errors follow Reader's contract: ctx.Err()
// (unwrapped) when ctx ends first, and the reader stays usable; any other
// error is a terminal *Error; ErrClosed after Close.
func (r *RawReader) Next(ctx context.Context) (*RawEvent, error) {
	if r.err != nil {
		return nil, r.err
	}
	for {
		d := r.cur
		if d == nil || r.closing.Load() {
			var err error
			if d, err = r.ensure(ctx, r.connect); err != nil {
				return nil, r.fail(ctx, err)
			}
			r.cur = d
		}
		d.ctx = ctx
		payload, err := d.pr.next()
		d.ctx = nil
		if err == nil {
			switch {
			case len(payload) > 0 && payload[0] == mysql.OK_HEADER:
				deliver, perr := r.process(payload[1:])
				if perr == nil {
					if deliver {
						return &r.ev, nil
					}
					continue
				}
				if errors.Is(perr, ErrChecksum) || !errors.Is(perr, errStream) {
					return nil, r.setErr(&Error{Source: r.Source(), Op: "read", Pos: r.delivered, Kind: kindOf(perr), Err: perr})
				}
				err = perr
			case len(payload) > 0 && payload[0] == mysql.ERR_HEADER:
				err = d.c.HandleErrorPacket(payload)
			case len(payload) > 0 && payload[0] == mysql.EOF_HEADER && len(payload) < 9:
				err = fmt.Errorf("%w: the server ended the dump", errStream)
			default:
				err = fmt.Errorf("%w: unexpected packet of %d bytes", errStream, len(payload))
			}
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if r.isClosed() {
			return nil, r.setErr(r.closedErr("read"))
		}
		if err := r.dropConn(ctx, "read", err); err != nil {
			return nil, r.fail(ctx, err)
		}
	}
}

// OnCaughtUp sets f to be called when the reader has taken everything the
// upstream has sent so far and is about to wait for more: the upstream
// paused, or reached the end of its binlog. It is called on the goroutine
// that calls Next, from within Next, between two events: f may call
// Position and GTIDSet (which then describe the last event Next
// delivered) but not Next. A copier uses it to make what it wrote durable
// at once rather than on a timer. While the upstream streams faster than
// the reader takes, f is not called. It works where the reader batches
// its reads (TCP on Linux; not through TLS); elsewhere f is never called.
// Like Next, it must not be called concurrently with Next; nil removes f.
func (r *RawReader) OnCaughtUp(f func()) {
	r.caughtUp = f
	if r.cur != nil {
		r.cur.idle = f
	}
}

// maxRotatePos bounds the offset a rotate event may name (256 TiB): beyond
// it the event is garbage, and offsets would overflow.
const maxRotatePos = 1 << 48

// errStream marks a malformed stream: a new connection may cure it.
var errStream = errors.New("malformed binlog stream")

func kindOf(err error) error {
	if errors.Is(err, ErrChecksum) {
		return ErrChecksum
	}
	return nil
}

// process decodes what the reader needs of the event in data (header
// included), updates the positions and the transaction state, and reports
// whether the consumer sees it (as RemoteReader.process). On true, r.ev
// holds the event.
func (r *RawReader) process(data []byte) (bool, error) {
	ev := &r.ev
	h := &ev.Header
	if err := decodeHeader(h, data); err != nil {
		return false, err
	}
	artificial := isArtificial(h)
	body := data[eventHeaderSize:]
	if h.EventType == replication.FORMAT_DESCRIPTION_EVENT {
		// Rare (once a file and per connection): go-mysql decodes it,
		// checks its checksum and learns the checksum algorithm.
		be, err := parseSafe(r.parser, data)
		if err != nil {
			if errors.Is(err, replication.ErrChecksumMismatch) {
				return false, fmt.Errorf("%w: format description at %s:%d", ErrChecksum, r.pos.Name, h.LogPos)
			}
			return false, fmt.Errorf("%w: format description at %s:%d: %v", errStream, r.pos.Name, h.LogPos, err)
		}
		fde := be.Event.(*replication.FormatDescriptionEvent)
		r.crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
		r.tracker.postHeader = append(r.tracker.postHeader[:0], fde.EventTypeHeaderLengths...)
		if r.crc {
			body = body[:len(body)-checksumSize]
		}
	} else if r.crc {
		if len(body) < checksumSize {
			return false, fmt.Errorf("%w: %s event of %d bytes has no room for its checksum", errStream, h.EventType, len(data))
		}
		n := len(data) - checksumSize
		if crc32.ChecksumIEEE(data[:n]) != le32(data[n:]) {
			return false, fmt.Errorf("%w: %s event ending at %s:%d", ErrChecksum, h.EventType, r.pos.Name, h.LogPos)
		}
		body = body[:len(body)-checksumSize]
	}
	next := r.pos
	if h.EventType == replication.ROTATE_EVENT {
		// A fake rotate names the file the server is about to send; a
		// real one ends the file.
		if len(body) < 8 {
			return false, fmt.Errorf("%w: rotate event of %d bytes", errStream, len(data))
		}
		if next.Offset = le64(body); next.Offset > maxRotatePos {
			return false, fmt.Errorf("%w: rotate to offset %d", errStream, next.Offset)
		}
		if name := body[8:]; string(name) != next.Name {
			next.Name = string(name)
		}
	} else if !artificial {
		next.Offset = extendOffset(r.pos.Offset, h.LogPos)
	}
	txnEnd := false
	if !artificial {
		var err error
		txnEnd, err = r.tracker.observeRaw(h.EventType, h.ServerID, body, data, r.parser)
		if err != nil {
			return false, fmt.Errorf("event %s at %s:%d: %w", h.EventType, next.Name, h.LogPos, err)
		}
	}
	r.pos = next
	if r.skip(next, artificial) {
		return false, nil
	}
	boundary := txnEnd || (!r.tracker.inTxn && !artificial)
	r.deliver(next, boundary)
	ev.Data, ev.Pos, ev.TxnEnd, ev.Boundary = data, next, txnEnd, boundary
	return true, nil
}

// decodeHeader decodes the 19-byte event header at the start of data and
// checks that the event is exactly data.
func decodeHeader(h *replication.EventHeader, data []byte) error {
	if len(data) < eventHeaderSize {
		return fmt.Errorf("%w: event of %d bytes, shorter than its header", errStream, len(data))
	}
	h.Timestamp = le32(data)
	h.EventType = replication.EventType(data[4])
	h.ServerID = le32(data[5:])
	h.EventSize = le32(data[9:])
	h.LogPos = le32(data[13:])
	h.Flags = le16(data[17:])
	if int(h.EventSize) != len(data) {
		return fmt.Errorf("%w: %s event header says %d bytes, the packet holds %d", errStream, h.EventType, h.EventSize, len(data))
	}
	return nil
}

func (r *RawReader) connect(ctx context.Context) (*dumpConn, error) {
	learnt, err := r.identify(ctx)
	if err != nil {
		return nil, err
	}
	if learnt {
		if r.tracker.flavor == "" {
			r.tracker.flavor = r.up.Flavor
		}
		r.parser.SetFlavor(r.up.Flavor)
	}
	req := dumpRequest{up: r.up, heartbeat: r.cfg.heartbeat, timeout: r.cfg.readTimeout, dialer: r.cfg.dialer}
	var pos uint32
	if req.file, pos, req.gtid, err = r.resumeAt(r.tracker.gset); err != nil {
		return nil, err
	}
	if req.gtid == nil {
		req.pos = max(pos, 4)
	}
	d, err := openDump(ctx, req)
	if err != nil {
		return nil, err
	}
	// The relay copies at the upstream's pace: fewer, larger reads.
	d.batchReads()
	d.idle = r.caughtUp
	// A new connection starts with a fake rotate without checksum and a
	// format description that says what follows.
	r.parser.Reset()
	r.crc = false
	if err := r.attach(d); err != nil {
		return nil, err
	}
	from := r.safe
	from.GTIDSet = req.gtid
	r.cfg.logger.Info("reading upstream binlog", slog.String("source", r.Source()),
		slog.String("from", from.String()), slog.Bool("gtid", req.gtid != nil),
		slog.Uint64("server-id", uint64(r.up.ServerID)), slog.Bool("raw", true))
	return d, nil
}

// dropConn closes the failed connection. The next ensureConn reconnects
// from the last boundary, and process skips up to what was delivered.
func (r *RawReader) dropConn(ctx context.Context, op string, cause error) error {
	r.cur = nil
	r.rewind()
	// Only a transaction's end changes the set, so the tracker's set is
	// the one at r.safe already.
	r.tracker.reset()
	if r.tracker.flavor == "" {
		r.tracker.flavor = r.up.Flavor
	}
	return r.retryOrFail(ctx, op, cause)
}

// Close stops the reader: a Next blocked on the network returns ErrClosed.
// The server's dump thread is ended too. It starts no goroutine, is safe to
// call from any goroutine, and more than once.
func (r *RawReader) Close() error {
	r.closing.Store(true)
	if d, first := r.shut(); first && d != nil {
		killDump(context.Background(), r.up, r.cfg.dialer, d.id)
	}
	return nil
}
