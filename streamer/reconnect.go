package streamer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// upstreamConn is one connection of a reader to the upstream: a dump
// connection read on a goroutine of its own for RemoteReader
// (remoteconn.go), one read by Next for RawReader.
type upstreamConn interface {
	comparable
	// close ends the connection; a read blocked on it returns. It may be
	// called from any goroutine, more than once.
	close()
}

// remoteSetup applies and checks the options and the start position, as both
// remote readers need.
func remoteSetup(up UpstreamConfig, start Position, opts []RemoteOption) (remoteConfig, UpstreamConfig, Position, error) {
	cfg := defaultRemoteConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.readTimeout == 0 && cfg.heartbeat > 0 {
		cfg.readTimeout = 3 * cfg.heartbeat
	}
	if err := up.Validate(); err != nil {
		return cfg, up, start, err
	}
	if err := cfg.validate(); err != nil {
		return cfg, up, start, fmt.Errorf("streamer: remote reader for %s: %w", up.SourceName(), err)
	}
	if err := start.Validate(); err != nil {
		return cfg, up, start, fmt.Errorf("streamer: remote reader for %s: start: %w", up.SourceName(), err)
	}
	if start.GTIDSet != nil {
		if up.Flavor == "" {
			up.Flavor = start.Flavor
		} else if up.Flavor != start.Flavor {
			return cfg, up, start, fmt.Errorf("streamer: remote reader for %s: start GTID set is %s but the upstream is configured as %s", up.SourceName(), start.Flavor, up.Flavor)
		}
	}
	start = start.Clone()
	if start.Name != "" && start.Offset < 4 {
		start.Offset = 4
	}
	if start.Offset > math.MaxUint32 && start.Name != "" {
		return cfg, up, start, fmt.Errorf("streamer: remote reader for %s: start %s: the dump protocol takes 32-bit offsets; start from a GTID set instead", up.SourceName(), start)
	}
	return cfg, up, start, nil
}

// reconnect is what RemoteReader and RawReader share: where the consumer is
// (after the last event read, delivered, and the last boundary delivered),
// the reconnect after a fault from that boundary with backoff, the skipping
// on the new connection of what had been delivered already, the upstream
// identity learnt once, and the connection that Close ends from any
// goroutine.
type reconnect[C upstreamConn] struct {
	up  UpstreamConfig
	cfg remoteConfig

	// Touched by the reading goroutine only (one caller at a time).
	pos       Position // after the last event read from the server
	delivered Position // after the last event delivered (or the start)
	safe      Position // after the last boundary delivered (or the start)
	skipUntil Position // while skipping: deliver nothing up to here
	skipping  bool
	bo        backoff.BackOff
	failing   time.Time // when the current run of failed connections began
	connected bool      // a connection has succeeded once
	gtidMode  bool      // started from a GTID set alone: reconnects use the set
	err       error     // terminal error

	mu     sync.Mutex // guards conn, closed
	conn   C          // the zero C when not connected
	closed bool
	done   chan struct{} // closed by shut
}

// init sets the core up for a reader of up from start.
func (c *reconnect[C]) init(up UpstreamConfig, cfg remoteConfig, start Position) {
	c.up, c.cfg = up, cfg
	c.pos, c.delivered, c.safe = start, start, start
	c.gtidMode = start.Name == "" && start.GTIDSet != nil
	c.done = make(chan struct{})
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = cfg.backoffMin
	eb.MaxInterval = cfg.backoffMax
	eb.MaxElapsedTime = 0
	c.bo = eb
}

// source is the name of the upstream, as it appears in errors.
func (c *reconnect[C]) source() string { return c.up.SourceName() }

// ensure returns the connection, connecting when there is none and waiting
// out the backoff after a failed attempt. connect opens a connection and
// hands it over with attach.
func (c *reconnect[C]) ensure(ctx context.Context, connect func(context.Context) (C, error)) (C, error) {
	var zero C
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	if closed {
		return zero, c.closedErr("connect")
	}
	if conn != zero {
		return conn, nil
	}
	for {
		conn, err := connect(ctx)
		if err == nil {
			return conn, nil
		}
		if err := c.retryOrFail(ctx, "connect", err); err != nil {
			return zero, err
		}
	}
}

// attach makes conn the reader's connection, unless the reader was closed
// meanwhile: then conn is closed and the error is ErrClosed.
func (c *reconnect[C]) attach(conn C) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.close()
		return c.closedErr("connect")
	}
	c.conn = conn
	c.connected = true
	return nil
}

// detach closes the connection, if any.
func (c *reconnect[C]) detach() {
	var zero C
	c.mu.Lock()
	conn := c.conn
	c.conn = zero
	c.mu.Unlock()
	if conn != zero {
		conn.close()
	}
}

// rewind closes the failed connection and moves the read position back to
// the last boundary delivered: the next connection starts there, and skip
// leaves out what had been delivered after it.
func (c *reconnect[C]) rewind() {
	c.detach()
	if c.delivered.Name != "" {
		c.skipUntil, c.skipping = Position{Name: c.delivered.Name, Offset: c.delivered.Offset}, true
	}
	c.pos = c.safe
}

// skip reports whether an event ending at next is left out after a
// reconnect: it, or the artificial events the server sends before it (the
// rotate and format description naming the resume position), had been
// delivered already. An artificial rotate past what was delivered is news,
// never skipped: the server sends one, and no real rotate, when it moves on
// from a file that ends without one (the upstream crashed while writing it,
// or stopped), and a relay that missed it would write the next file's
// events into the old one.
func (c *reconnect[C]) skip(next Position, artificial bool) bool {
	if !c.skipping {
		return false
	}
	if next.Compare(c.skipUntil) <= 0 {
		return true
	}
	c.skipping = false
	return false
}

// deliver records that the event ending at next goes to the consumer.
func (c *reconnect[C]) deliver(next Position, boundary bool) {
	c.delivered = next
	if boundary {
		c.safe = next
	}
	if !c.failing.IsZero() {
		c.bo.Reset()
		c.failing = time.Time{}
	}
}

// identify learns the upstream's flavor and picks a free server id, once:
// every reconnect then uses the same identity. It reports whether it
// learnt anything.
func (c *reconnect[C]) identify(ctx context.Context) (bool, error) {
	up := c.up
	if up.Flavor != "" && up.ServerID != 0 {
		return false, nil
	}
	conn, err := up.connect(ctx, boundedDialer(c.cfg.dialer))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if up.Flavor == "" {
		up.Flavor = detectFlavor(conn)
	}
	if up.ServerID == 0 {
		used, err := usedServerIDs(conn)
		if err != nil {
			return false, err
		}
		up.ServerID = pickServerID(used, rand.Uint32N)
	}
	c.up = up
	return true, nil
}

// resumeAt says where the next connection starts: from the GTID set
// executed at the last boundary (set) when the reader started from a set
// alone or when the boundary is past 4 GiB into its file (the dump command
// takes a 32-bit offset), from the boundary's file and offset otherwise.
func (c *reconnect[C]) resumeAt(set mysql.GTIDSet) (file string, offset uint32, gtid mysql.GTIDSet, err error) {
	switch {
	case c.gtidMode:
		return "", 0, set, nil
	case c.safe.Offset > math.MaxUint32:
		if set == nil {
			return "", 0, nil, &Error{Source: c.source(), Op: "reconnect", Pos: c.delivered, Kind: ErrBadPosition,
				Err: errorf("cannot resume at offset %d: past 4 GiB and no GTID set known", c.safe.Offset)}
		}
		return "", 0, set, nil
	}
	return c.safe.Name, uint32(c.safe.Offset), nil, nil
}

// retryOrFail, for a reader that lost its connection, waits before the next
// attempt when err is worth retrying and the retry budget (counted from the
// start of this run of failures) is not spent, and returns the error to give
// up with otherwise. An unreachable upstream is worth retrying only once it
// has been reached or with WithRetryFirstConnect.
func (c *reconnect[C]) retryOrFail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.isClosed() {
		return c.closedErr(op)
	}
	kind, retryable := classify(err)
	if !retryable || (kind == ErrUnreachable && !c.connected && !c.cfg.retryFirst) {
		return &Error{Source: c.source(), Op: op, Pos: c.delivered, Kind: kind, Err: err}
	}
	now := time.Now()
	if c.failing.IsZero() {
		c.failing = now
	}
	if c.cfg.maxRetryTime > 0 && now.Sub(c.failing) >= c.cfg.maxRetryTime {
		return &Error{Source: c.source(), Op: op, Pos: c.delivered, Kind: ErrRetryExhausted, Err: err}
	}
	wait := c.bo.NextBackOff()
	c.cfg.logger.Warn("upstream connection failed, retrying",
		slog.String("source", c.source()), slog.String("op", op),
		slog.String("pos", c.delivered.String()), slog.Duration("wait", wait), slog.String("error", err.Error()))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.closedErr(op)
	}
}

// fail ends the reader with err, unless err is ctx's own end: the reader
// then stays usable.
func (c *reconnect[C]) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return ctx.Err()
	}
	return c.setErr(err)
}

// setErr ends the reader with err, which every later read returns.
func (c *reconnect[C]) setErr(err error) error {
	c.err = err
	c.cfg.logger.Error("upstream reader stopped", slog.String("source", c.source()), slog.String("error", err.Error()))
	c.detach()
	return err
}

func (c *reconnect[C]) closedErr(op string) error {
	return &Error{Source: c.source(), Op: op, Pos: c.delivered, Kind: ErrClosed}
}

func (c *reconnect[C]) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// shut marks the reader closed, wakes a backoff wait and closes the
// connection. It returns the connection closed (the zero C when none) and
// whether this call closed the reader.
func (c *reconnect[C]) shut() (C, bool) {
	var zero C
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return zero, false
	}
	c.closed = true
	close(c.done)
	conn := c.conn
	c.conn = zero
	c.mu.Unlock()
	if conn != zero {
		conn.close()
	}
	return conn, true
}
