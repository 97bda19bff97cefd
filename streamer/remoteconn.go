package streamer

// A RemoteReader's connection: the dump protocol as the raw reader speaks it
// (rawdump.go), read on a goroutine of its own that reads packets into
// blocks the events it delivers are slices of (blockReader), decodes each
// event with go-mysql's parser (a rows event's header only: GetEvent
// decodes the row images it keeps) and hands events to GetEvent in
// batches.
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
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

const (
	// remoteBatchMax bounds the events handed over at once.
	remoteBatchMax = 64
	// remoteBlockSize is the size of the blocks packets are read into, and
	// which the events delivered are slices of: one allocation and no
	// copy for many events. A larger packet gets a block of its own.
	remoteBlockSize = 256 << 10
	// remoteMinRead is the least free space in a block worth a read system
	// call: with less, the unread bytes move to a new block first.
	remoteMinRead = 16 << 10
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
	var batch []*replication.BinlogEvent
	br := &blockReader{rd: c.d, seq: c.d.pr.seq}
	for {
		payload, err := br.next()
		if err == nil {
			switch {
			case len(payload) > 0 && payload[0] == mysql.OK_HEADER:
				be, perr := parseSafe(p, payload[1:])
				if perr == nil {
					batch = append(batch, be)
					if len(batch) >= max || !br.ready() {
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

// blockReader reads protocol packets from rd into blocks it never writes
// again once it has handed out a packet in them (a block is reused only
// once nothing refers to it: see remoteBlocks): next returns payloads
// that stay valid (the events delivered keep them as RawData), without a
// copy. A block goes when the next packet does not fit what is left of it;
// the bytes of that packet read so far move to the next block. A payload
// that spans packets (16 MiB or more) is assembled in a slice of its own.
//
// Unlike the raw reader's packetReader, it is not resumed after a read
// error: the connection's goroutine ends there.
type blockReader struct {
	rd   io.Reader
	buf  []byte // the current block: [0:r) handed out, [r:w) read ahead
	r, w int
	seq  uint8
}

// next returns the next logical packet's payload.
func (b *blockReader) next() ([]byte, error) {
	n, err := b.header()
	if err != nil {
		return nil, err
	}
	if n == maxPacketPayload {
		return b.assemble()
	}
	if err := b.fill(4 + n); err != nil {
		return nil, err
	}
	out := b.buf[b.r+4 : b.r+4+n : b.r+4+n]
	b.r += 4 + n
	b.seq++
	return out, nil
}

// header reads the next packet's header, checks its sequence number and
// returns its payload length; the header stays unread.
func (b *blockReader) header() (int, error) {
	if err := b.fill(4); err != nil {
		return 0, err
	}
	h := b.buf[b.r : b.r+4]
	if h[3] != b.seq {
		return 0, fmt.Errorf("%w: got %d, want %d", errPacketSequence, h[3], b.seq)
	}
	return int(h[0]) | int(h[1])<<8 | int(h[2])<<16, nil
}

// assemble joins the packets of a payload of maxPacketPayload bytes or
// more.
func (b *blockReader) assemble() ([]byte, error) {
	var out []byte
	for {
		n, err := b.header()
		if err != nil {
			return nil, err
		}
		if err := b.fill(4 + n); err != nil {
			return nil, err
		}
		out = append(out, b.buf[b.r+4:b.r+4+n]...)
		b.r += 4 + n
		b.seq++
		if n < maxPacketPayload {
			return out, nil
		}
	}
}

// ready reports whether the next packet is buffered whole, so that next
// returns it without reading.
func (b *blockReader) ready() bool {
	if b.w-b.r < 4 {
		return false
	}
	h := b.buf[b.r : b.r+4]
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	return n < maxPacketPayload && b.w-b.r >= 4+n
}

// fill reads until at least k unread bytes are buffered, starting a new
// block (with the unread bytes moved to it) when the current one cannot
// hold them or has too little room left for a read.
func (b *blockReader) fill(k int) error {
	if b.w-b.r >= k {
		return nil
	}
	if len(b.buf)-b.r < k || len(b.buf)-b.w < remoteMinRead {
		var nb []byte
		if k <= remoteBlockSize {
			nb = getRemoteBlock()
		} else {
			nb = make([]byte, k)
		}
		b.w = copy(nb, b.buf[b.r:b.w])
		b.r, b.buf = 0, nb
	}
	for b.w-b.r < k {
		n, err := b.rd.Read(b.buf[b.w:])
		b.w += n
		if err != nil {
			if b.w-b.r >= k {
				return nil
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// remoteBlock is a block a blockReader reads packets into.
type remoteBlock [remoteBlockSize]byte

// Blocks are reused once nothing refers to them any more.
//
// A block's bytes are handed out in events (RawData, and the go-mysql
// fields that slice it) that a consumer may keep as long as it likes, and
// no consumer tells the reader when it is done with one. So a block is
// reused not when the reader is done with it but when the garbage
// collector finds that nothing points into it: its finalizer, set anew
// each time the block is handed out, puts it in remoteBlocks instead of
// letting it be freed. Nothing can read a block's bytes after that, so
// writing them again cannot change an event anyone holds. Reuse saves
// what a fresh block costs: its clearing, the page faults of its first
// touch, the heap growth that brings the next collection nearer, and the
// scavenger giving the memory back to the system in between.
//
// A block with a finalizer outlives its last reference by one collection
// (the finalizer runs after it), which counts it in the live heap and so
// raises the heap goal: with every block tracked, the heap grew with the
// rate of reading (a drain of 545 MB peaked at 100-170 MB of RSS instead
// of 45). So at most remoteBlocksMax blocks are tracked at a time; past
// that, blocks are plain allocations. The pool is a sync.Pool so that the
// collector drops the blocks an idle process no longer uses. A block a
// consumer keeps an event of for good keeps its place among the tracked
// ones: with enough of them, reuse stops, and blocks are fresh as they
// were before reuse.
var remoteBlocks = newReusePool[remoteBlock](remoteBlocksMax)

// remoteBlocksMax bounds the blocks tracked for reuse, in all readers
// together: 16 MiB. Measured on a filtered drain of 540 MB (BENCHMARKS.md):
// 32 blocks took a quarter of the CPU off, 64 some 7 % more (blocks come
// back a collection or two after their use, and a drain reads some 7 MB
// between collections), 128 no more; peak RSS 43 MB with fresh blocks,
// about 53 with 32, 66 with 64, 95 with 128, 100 to 170 with every block.
const remoteBlocksMax = 64

// getRemoteBlock returns a block of remoteBlockSize bytes, reused or new;
// its contents are undefined.
func getRemoteBlock() []byte {
	if b := remoteBlocks.get(); b != nil {
		return b[:]
	}
	return make([]byte, remoteBlockSize)
}

// reusePool hands out arrays of type B (bytes) that come back for reuse
// once nothing refers to them, as remoteBlocks describes: at most max of
// them are tracked at a time, in all readers of the process together.
type reusePool[B any] struct {
	pool    sync.Pool // of *B, finalizer cleared
	tracked atomic.Int64
	reused  atomic.Int64 // arrays taken from pool, for tests
	max     int64
	recycle func(*B) // the finalizer
}

func newReusePool[B any](max int64) *reusePool[B] {
	p := &reusePool[B]{max: max}
	p.recycle = func(b *B) {
		p.tracked.Add(-1)
		p.pool.Put(b)
	}
	return p
}

// get returns an array, reused or new, with the finalizer that makes it
// reusable once nothing refers to it; nil when max are tracked already
// (the caller then allocates as it would without the pool). Its contents
// are undefined.
func (p *reusePool[B]) get() *B {
	b, _ := p.pool.Get().(*B)
	if b != nil {
		p.reused.Add(1)
	} else if p.tracked.Load() < p.max {
		b = new(B)
	} else {
		return nil
	}
	p.tracked.Add(1)
	runtime.SetFinalizer(b, p.recycle)
	return b
}
