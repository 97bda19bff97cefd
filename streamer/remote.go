package streamer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/replication"
)

// RemoteReader reads the binlog from an upstream server over the dump
// protocol and decodes its events with go-mysql's parser, but for the row
// images of the common column types, which it decodes itself, on the
// goroutine that calls GetEvent, into the values (and Go types) go-mysql
// gives. It implements Reader.
//
// When the connection drops (server restart, KILL of the dump thread, a
// network cut noticed by the read timeout) it reconnects with backoff from
// the end of the last whole transaction it delivered and skips what it had
// already delivered of the transaction that was cut, so that its consumer sees
// the same sequence of events as a clean read: nothing missing, nothing twice.
// A connection that has gone silent (half-open: the upstream or the network
// vanished without a reset) is given up after the read timeout, 15s by
// default.
//
// Connecting happens at the first GetEvent, not in NewRemoteReader. Until a
// first connection has succeeded, an upstream that cannot be reached
// (ErrUnreachable), refuses the user (ErrAccessDenied) or does not resolve
// (ErrUnknownHost) ends the reader at once: that is a configuration to fix,
// not a fault to wait out (WithRetryFirstConnect changes it).
type RemoteReader struct {
	reconnect[*remoteConn]
	start Position

	// Touched by GetEvent only (one caller at a time).
	tracker *txnTracker
	inner   []*Event // a Transaction_payload's events still to deliver
	keeper  *tableKeeper
	rows    rowDecoder
	// crc: the events of the connection carry a CRC32 (as its last format
	// description says); row images are decoded by GetEvent, which must
	// know where they end.
	crc bool
}

// RemoteOption configures a RemoteReader.
type RemoteOption interface{ apply(*remoteConfig) }

type remoteOptionFunc func(*remoteConfig)

func (f remoteOptionFunc) apply(c *remoteConfig) { f(c) }

type remoteConfig struct {
	logger         *slog.Logger
	heartbeat      time.Duration
	readTimeout    time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	maxRetryTime   time.Duration
	dialer         client.Dialer
	eventQueueSize int
	skipRows       bool
	retryFirst     bool
	keep           func(schema, table string) bool // WithTableFilter's
}

// defaultHeartbeat is the heartbeat period a reader asks for by default; the
// read timeout is three of them: a half-open connection is noticed within
// 15s.
const defaultHeartbeat = 5 * time.Second

func defaultRemoteConfig() remoteConfig {
	return remoteConfig{
		logger:         slog.New(slog.DiscardHandler),
		heartbeat:      defaultHeartbeat,
		backoffMin:     100 * time.Millisecond,
		backoffMax:     10 * time.Second,
		eventQueueSize: 1024,
	}
}

func (c *remoteConfig) validate() error {
	switch {
	case c.heartbeat < 0:
		return errors.New("heartbeat period must not be negative")
	case c.readTimeout < 0:
		return errors.New("read timeout must not be negative")
	case c.readTimeout > 0 && c.heartbeat > 0 && c.readTimeout <= c.heartbeat:
		return fmt.Errorf("read timeout %s must be longer than the heartbeat period %s", c.readTimeout, c.heartbeat)
	case c.heartbeat == 0 && c.readTimeout > 0:
		return errors.New("a read timeout needs heartbeats, or an idle upstream would look dead")
	case c.backoffMin <= 0 || c.backoffMax < c.backoffMin:
		return fmt.Errorf("backoff %s..%s: need 0 < min <= max", c.backoffMin, c.backoffMax)
	case c.maxRetryTime < 0:
		return errors.New("max retry time must not be negative")
	case c.eventQueueSize <= 0:
		return errors.New("event queue size must be positive")
	}
	return nil
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithHeartbeat sets how often the upstream sends a heartbeat when it has
// nothing else to send. Default 5s; 0 turns heartbeats off (and with them
// the default read timeout).
func WithHeartbeat(d time.Duration) RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.heartbeat = d })
}

// WithReadTimeout sets how long the reader waits for any packet before it
// takes the connection for dead (half-open) and reconnects. Default: three
// heartbeat periods (15s with the default heartbeat). It must exceed the
// heartbeat period.
func WithReadTimeout(d time.Duration) RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.readTimeout = d })
}

// WithBackoff sets the reconnect delay: exponential with jitter from min up to
// max. Default 100ms to 10s.
func WithBackoff(min, max time.Duration) RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.backoffMin, c.backoffMax = min, max })
}

// WithRetryFirstConnect makes the reader retry its first connection as it
// retries later ones, when the upstream cannot be reached (ErrUnreachable):
// for a reader that takes over from one that had reached the upstream, so
// that an outage is waited out rather than taken for a wrong address.
// Access denied and an unknown host still end it. Default: before its first
// successful connection the reader ends with ErrUnreachable at once.
func WithRetryFirstConnect() RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.retryFirst = true })
}

// WithMaxRetryTime bounds how long the reader keeps reconnecting after the
// connection fails before it gives up with ErrRetryExhausted. Default 0: it
// retries until the context ends or the reader is closed.
func WithMaxRetryTime(d time.Duration) RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.maxRetryTime = d })
}

// WithDialer sets the function that opens connections to the upstream.
// Default: a net.Dialer.
func WithDialer(d client.Dialer) RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.dialer = d })
}

// WithEventQueueSize sets how many decoded events may wait between the
// network and GetEvent (handed over in batches of up to 64). Default 1024.
func WithEventQueueSize(n int) RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.eventQueueSize = n })
}

// WithoutRowValues leaves the row images of rows events undecoded: a
// RowsEvent then carries its table id and flags but no Rows. RawData is
// complete as always. For consumers that copy events (the relay) rather
// than apply them; it saves most of the reader's CPU. Default: rows are
// decoded.
func WithoutRowValues() RemoteOption {
	return remoteOptionFunc(func(c *remoteConfig) { c.skipRows = true })
}

// NewRemoteReader returns a reader of up's binlog from start.
//
// start selects the mode:
//   - Name set: from that file and offset (Offset < 4 means 4). A GTIDSet
//     given with it is taken as the set executed at that position and kept
//     up to date in each event's Pos; reconnects use the file position.
//   - Name empty, GTIDSet set: from the first transaction not in the set;
//     reconnects use the GTID set reached.
//   - zero Position: from the oldest binlog the upstream still holds.
//
// Without a GTID set, Pos.GTIDSet stays nil until the reader passes the
// previous-GTIDs (MySQL) or GTID-list (MariaDB) event at a file's start.
func NewRemoteReader(up UpstreamConfig, start Position, opts ...RemoteOption) (*RemoteReader, error) {
	cfg, up, start, err := remoteSetup(up, start, opts)
	if err != nil {
		return nil, err
	}
	r := &RemoteReader{
		start:   start,
		tracker: newTxnTracker(start.Flavor, start.GTIDSet),
		keeper:  newTableKeeper(cfg.keep),
	}
	r.init(up, cfg, start)
	return r, nil
}

// Source is the name of the upstream, as it appears in errors.
func (r *RemoteReader) Source() string { return r.source() }

// Position is the position after the last event delivered. Like GetEvent, it
// must not be called concurrently with GetEvent.
func (r *RemoteReader) Position() Position { return r.delivered }

// GetEvent returns the next event. See Reader for the contract.
func (r *RemoteReader) GetEvent(ctx context.Context) (*Event, error) {
	if r.err != nil {
		return nil, r.err
	}
	for {
		if len(r.inner) > 0 && !r.isClosed() {
			ev := r.inner[0]
			r.inner[0] = nil
			r.inner = r.inner[1:]
			r.deliver(ev.Pos, ev.Boundary)
			return r.decodeRows(ev)
		}
		conn, err := r.ensure(ctx, r.connect)
		if err != nil {
			return nil, r.fail(ctx, err)
		}
		be, err := conn.next(ctx)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, ctx.Err()
			}
			if r.isClosed() {
				return nil, r.setErr(r.closedErr("read"))
			}
			if err := r.dropStream(ctx, "read", err); err != nil {
				return nil, r.fail(ctx, err)
			}
			continue
		}
		if fde, ok := be.Event.(*replication.FormatDescriptionEvent); ok {
			r.crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
		}
		if tp, ok := be.Event.(*replication.TransactionPayloadEvent); ok && !isArtificial(be.Header) {
			if err := r.expandPayload(be, tp); err != nil {
				return nil, r.setErr(&Error{Source: r.Source(), Op: "read", Pos: r.delivered, Err: err})
			}
			continue
		}
		ev, deliver, err := r.process(be)
		if err != nil {
			return nil, r.setErr(&Error{Source: r.Source(), Op: "read", Pos: r.delivered, Err: err})
		}
		if deliver {
			return r.decodeRows(ev)
		}
	}
}

// decodeRows decodes the row images of ev, a rows event whose header alone
// the network goroutine decoded, unless the table filter drops its table
// (or WithoutRowValues is on). Doing it here rather than in go-mysql's
// goroutine spreads the work over two goroutines and skips the rows the
// consumer would throw away. A failure is terminal: the event's checksum
// was good, so reading it again would fail again.
func (r *RemoteReader) decodeRows(ev *Event) (*Event, error) {
	re, ok := ev.Event.(*replication.RowsEvent)
	if !ok || r.cfg.skipRows || !r.keeper.keeps(re.Table) {
		return ev, nil
	}
	// The events a payload holds have no checksum of their own.
	crc := r.crc && ev.payloadStart == 0
	if err := decodeDeferredRows(&r.rows, re, ev.RawData, crc); err != nil {
		return nil, r.setErr(&Error{Source: r.Source(), Op: "read", Pos: ev.Pos,
			Err: fmt.Errorf("event %s ending at %s:%d: %w", ev.Header.EventType, ev.Pos.Name, ev.Header.LogPos, err)})
	}
	return ev, nil
}

// process updates the reader's position with be and decides whether the
// consumer sees it: after a reconnect, what had been delivered already, and
// the artificial events the server sends before it, are not delivered again.
func (r *RemoteReader) process(be *replication.BinlogEvent) (*Event, bool, error) {
	ev, err := r.advance(be)
	if err != nil {
		return nil, false, err
	}
	if r.skip(ev.Pos, ev.Artificial()) {
		return nil, false, nil
	}
	r.deliver(ev.Pos, ev.Boundary)
	return ev, true, nil
}

// advance moves the reader's position past be and returns it as an Event.
func (r *RemoteReader) advance(be *replication.BinlogEvent) (*Event, error) {
	h := be.Header
	artificial := isArtificial(h)
	next := r.pos
	if rot, ok := be.Event.(*replication.RotateEvent); ok {
		// A fake rotate names the file the server is about to send; a
		// real one ends the file.
		next.Name, next.Offset = string(rot.NextLogName), rot.Position
	} else if !artificial {
		next.Offset = extendOffset(r.pos.Offset, h.LogPos)
	}
	gtid, txnEnd, err := "", false, error(nil)
	if !artificial {
		gtid, txnEnd, err = r.tracker.observe(be)
		if err != nil {
			return nil, fmt.Errorf("event %s at %s:%d: %w", h.EventType, next.Name, h.LogPos, err)
		}
	}
	next.GTIDSet, next.Flavor = r.tracker.gset, r.tracker.flavor
	if next.GTIDSet == nil {
		next.Flavor = ""
	}
	r.pos = next
	boundary := txnEnd || (!r.tracker.inTxn && !artificial)
	return &Event{BinlogEvent: be, Pos: next, GTID: gtid, TxnEnd: txnEnd, Boundary: boundary}, nil
}

// expandPayload queues the events a Transaction_payload event holds (go-mysql
// decoded them), each with its position (see payload.go), unless a
// reconnect skips the payload whole: it was delivered whole, since nothing
// is read from the network while its events wait.
func (r *RemoteReader) expandPayload(be *replication.BinlogEvent, tp *replication.TransactionPayloadEvent) error {
	h := be.Header
	end := extendOffset(r.pos.Offset, h.LogPos)
	if end < uint64(h.EventSize) || len(tp.Events) == 0 {
		return fmt.Errorf("event %s at %s:%d: %w: %d events, %d bytes", h.EventType, r.pos.Name, h.LogPos, errPayload, len(tp.Events), h.EventSize)
	}
	skip := r.skipping && (Position{Name: r.pos.Name, Offset: end}).Compare(r.skipUntil) <= 0
	if !skip {
		r.skipping = false
	}
	for i, inner := range tp.Events {
		last := i == len(tp.Events)-1
		// As go-mysql stamps them; done here too for a header it left.
		inner.Header.LogPos = uint32(end - uint64(h.EventSize))
		if last {
			inner.Header.LogPos = h.LogPos
		}
		ev, err := r.advance(inner)
		if err == nil {
			err = checkPayloadTxn(inner.Header.EventType, ev.TxnEnd, last)
		}
		if err != nil {
			return fmt.Errorf("event %s at %s:%d: %w", h.EventType, r.pos.Name, h.LogPos, err)
		}
		ev.payloadStart = end - uint64(h.EventSize)
		if !skip {
			r.inner = append(r.inner, ev)
		}
	}
	return nil
}

// extendOffset turns the 32-bit log_pos of an event header into a 64-bit
// offset: the smallest value not below prev with those low 32 bits.
func extendOffset(prev uint64, logPos uint32) uint64 {
	cand := prev&^0xffffffff | uint64(logPos)
	if cand < prev {
		cand += 1 << 32
	}
	return cand
}

// dropStream closes the failed connection. The next ensureStream reconnects
// from the last transaction end, and process skips up to what was delivered.
func (r *RemoteReader) dropStream(ctx context.Context, op string, cause error) error {
	r.rewind()
	r.tracker.reset()
	r.tracker.gset, r.tracker.flavor = r.safe.GTIDSet, r.safe.Flavor
	if r.tracker.flavor == "" {
		r.tracker.flavor = r.up.Flavor
	}
	return r.retryOrFail(ctx, op, cause)
}

func (r *RemoteReader) connect(ctx context.Context) (*remoteConn, error) {
	learnt, err := r.identify(ctx)
	if err != nil {
		return nil, err
	}
	if learnt && r.tracker.flavor == "" {
		r.tracker.flavor = r.up.Flavor
	}
	up := r.up
	req := dumpRequest{up: up, heartbeat: r.cfg.heartbeat, timeout: r.cfg.readTimeout, dialer: r.cfg.dialer}
	var pos uint32
	if req.file, pos, req.gtid, err = r.resumeAt(r.safe.GTIDSet); err != nil {
		return nil, err
	}
	if req.gtid != nil {
		req.gtid = req.gtid.Clone()
	} else {
		req.pos = max(pos, 4)
	}
	d, err := openDump(ctx, req)
	if err != nil {
		return nil, err
	}
	conn := newRemoteConn(d, newRemoteParser(up.Flavor, r.cfg.skipRows), r.cfg.eventQueueSize)
	if err := r.attach(conn); err != nil {
		return nil, err
	}
	r.cfg.logger.Info("reading upstream binlog", slog.String("source", r.Source()),
		slog.String("from", r.safe.String()), slog.Bool("gtid", r.gtidMode),
		slog.Uint64("server-id", uint64(up.ServerID)))
	return conn, nil
}

// decodeRowsHeaderOnly decodes a rows event's header and leaves its rows.
func decodeRowsHeaderOnly(e *replication.RowsEvent, data []byte) error {
	_, err := e.DecodeHeader(data)
	return err
}

// applyDecodeSettings fixes how row values are decoded, for every reader
// alike: exact decimals, TIMESTAMP rendered in UTC, JSON as MySQL text.
func applyDecodeSettings(c *replication.BinlogSyncerConfig) {
	c.UseDecimal = true
	c.TimestampStringLocation = time.UTC
	c.RenderJSONAsMySQLText = true
}

// Close stops the reader and waits for its connection goroutine; the
// server's dump thread is ended too. It is safe to call from any goroutine,
// more than once.
func (r *RemoteReader) Close() error {
	if c, first := r.shut(); first && c != nil {
		killDump(context.Background(), r.up, r.cfg.dialer, c.d.id)
	}
	return nil
}
