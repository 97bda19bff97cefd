package streamer

// A RemoteReader's connection: the dump protocol as the raw reader speaks it
// (rawdump.go), read on a goroutine of its own that copies each event out of
// the reused read buffer, decodes it with go-mysql's parser (a rows event's
// header only: GetEvent decodes the row images it keeps) and hands events to
// GetEvent in batches.
//
// It replaces go-mysql's BinlogSyncer, whose reading goroutine copied each
// packet twice, set a read deadline per packet and sent events one by one
// over a channel: with row decoding moved to the consumer, that goroutine
// had become the reader's bottleneck.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

const (
	// remoteBatchMax bounds the events handed over at once.
	remoteBatchMax = 64
	// remoteSlabSize is the size of the blocks events are copied into: one
	// allocation for many events. A larger event gets a block of its own.
	remoteSlabSize = 256 << 10
)

// remoteBatch is what the reading goroutine hands over: events, or the
// error that ended the connection.
type remoteBatch struct {
	evs []*replication.BinlogEvent
	err error
}

// remoteConn is a RemoteReader's connection.
type remoteConn struct {
	d     *dumpConn
	items chan remoteBatch
	quit  chan struct{} // closed by close
	done  chan struct{} // closed when the reading goroutine has returned
	once  sync.Once

	// Touched by next only (GetEvent's goroutine).
	cur []*replication.BinlogEvent
	err error
}

// errConnClosed ends next when the connection was closed under it (by
// Close: GetEvent then reports ErrClosed).
var errConnClosed = errors.New("connection closed")

// newRemoteConn starts reading d with parser p; queue bounds the events
// waiting for next.
func newRemoteConn(d *dumpConn, p *replication.BinlogParser, queue int) *remoteConn {
	batch := min(remoteBatchMax, queue)
	c := &remoteConn{
		d:     d,
		items: make(chan remoteBatch, max(1, queue/batch)),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go c.pump(p, batch)
	return c
}

// close ends the connection and waits for its goroutine. Safe from any
// goroutine, more than once.
func (c *remoteConn) close() {
	c.once.Do(func() {
		close(c.quit)
		c.d.close()
	})
	<-c.done
}

// next returns the next event, or the error that ended the connection, or
// ctx's error (the connection stays usable).
func (c *remoteConn) next(ctx context.Context) (*replication.BinlogEvent, error) {
	for len(c.cur) == 0 {
		if c.err != nil {
			return nil, c.err
		}
		select {
		case b := <-c.items:
			c.cur, c.err = b.evs, b.err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			select {
			case b := <-c.items:
				c.cur, c.err = b.evs, b.err
			default:
				c.err = errConnClosed
			}
		}
	}
	be := c.cur[0]
	c.cur[0] = nil
	c.cur = c.cur[1:]
	return be, nil
}

// pump reads packets until an error or close, decoding events and handing
// them over in batches of up to max: a batch goes as soon as the next
// packet is not buffered whole, so that an event never waits for the
// network to be delivered.
func (c *remoteConn) pump(p *replication.BinlogParser, max int) {
	defer close(c.done)
	send := func(b remoteBatch) bool {
		select {
		case c.items <- b:
			return true
		case <-c.quit:
			return false
		}
	}
	var (
		batch []*replication.BinlogEvent
		slab  []byte
	)
	for {
		payload, err := c.d.pr.next()
		if err == nil {
			switch {
			case len(payload) > 0 && payload[0] == mysql.OK_HEADER:
				data := payload[1:]
				var raw []byte
				if len(data) > remoteSlabSize/4 {
					raw = bytes.Clone(data)
				} else {
					if cap(slab)-len(slab) < len(data) {
						slab = make([]byte, 0, remoteSlabSize)
					}
					n := len(slab)
					slab = append(slab, data...)
					raw = slab[n:len(slab):len(slab)]
				}
				be, perr := parseSafe(p, raw)
				if perr == nil {
					batch = append(batch, be)
					if len(batch) >= max || !c.d.pr.ready() {
						if !send(remoteBatch{evs: batch}) {
							return
						}
						batch = make([]*replication.BinlogEvent, 0, max)
					}
					continue
				}
				err = perr
			case len(payload) > 0 && payload[0] == mysql.ERR_HEADER:
				err = c.d.c.HandleErrorPacket(bytes.Clone(payload))
			case len(payload) > 0 && payload[0] == mysql.EOF_HEADER && len(payload) < 9:
				err = fmt.Errorf("%w: the server ended the dump", errStream)
			default:
				err = fmt.Errorf("%w: unexpected packet of %d bytes", errStream, len(payload))
			}
		}
		if len(batch) > 0 && !send(remoteBatch{evs: batch}) {
			return
		}
		send(remoteBatch{err: err})
		return
	}
}

// newRemoteParser returns the parser of a RemoteReader's connection: the
// decode settings every reader shares, checksums verified, a rows event's
// header only (GetEvent decodes the images), or not even that check with
// WithoutRowValues.
func newRemoteParser(flavor string, skipRows bool) *replication.BinlogParser {
	p := newDecodeParser(flavor, nil)
	p.SetVerifyChecksum(true)
	p.SetRowsEventDecodeFunc(decodeRowsHeaderChecked)
	if skipRows {
		p.SetRowsEventDecodeFunc(decodeRowsHeaderOnly)
	}
	return p
}
