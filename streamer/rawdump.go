package streamer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
)

// The binlog dump protocol, as the raw reader speaks it.
//
// A dump connection is an ordinary client connection (go-mysql's client.Conn
// does the handshake and the few statements that prepare it) on which the
// replica sends COM_REGISTER_SLAVE and then COM_BINLOG_DUMP (or
// COM_BINLOG_DUMP_GTID on MySQL). From then on the server only sends:
//
//	packet  = length(3, little endian) sequence(1) payload(length)
//	payload = 0x00 event        one binlog event, header and checksum included
//	        | 0xff error        the dump failed (code, state, message)
//	        | 0xfe ...          end of stream (only with BINLOG_DUMP_NON_BLOCK)
//
// A payload of 2^24-1 bytes or more is split into packets of 2^24-1 bytes,
// the last one shorter (possibly empty). Sequence numbers count up by one
// per packet and wrap at 256.
//
// The packets are read here, not through go-mysql's packet reader: it copies
// each packet through a pooled buffer into a new slice and sets a read
// deadline for every 16 KiB, which costs more than the copy is worth.

const (
	// maxPacketPayload is the largest payload of one protocol packet; a
	// payload this long continues in the next packet.
	maxPacketPayload = 1<<24 - 1
	// rawReadBuffer is the size of the buffer packets are read into: large
	// enough that one read system call fetches many events.
	rawReadBuffer = 1 << 20
	// rawBigKeep bounds the assembly buffer kept between events: a larger
	// one, left by a huge event, is dropped after use.
	rawBigKeep = 4 << 20
)

// errPacketSequence means the server's packets are out of order: the stream
// cannot be trusted any more (a new connection may cure it).
var errPacketSequence = errors.New("packet out of sequence")

// packetReader reads protocol packets from rd into one reused buffer. next
// returns payloads that alias the buffer: valid until the next call. A read
// error (a timeout, an interruption) leaves the reader consistent: what was
// read so far is kept, and the next call goes on from there.
type packetReader struct {
	rd   io.Reader
	buf  []byte // made at the first read (a RemoteReader's never reads)
	size int    // of buf
	r, w int    // unread bytes are buf[r:w]
	seq  uint8

	// A payload that does not fit the buffer or spans packets is
	// assembled in big.
	big        []byte
	assembling bool
	need       int  // bytes of the current packet still to copy into big
	more       bool // the current packet is full: another one follows
}

func newPacketReader(rd io.Reader, seq uint8, size int) *packetReader {
	return &packetReader{rd: rd, size: size, seq: seq}
}

// next returns the next logical packet's payload.
func (p *packetReader) next() ([]byte, error) {
	if !p.assembling {
		if cap(p.big) > rawBigKeep {
			p.big = nil
		}
		if err := p.fill(4); err != nil {
			return nil, err
		}
		n, err := p.header()
		if err != nil {
			return nil, err
		}
		if n < maxPacketPayload && 4+n <= len(p.buf) {
			if err := p.fill(4 + n); err != nil {
				return nil, err
			}
			p.seq++
			out := p.buf[p.r+4 : p.r+4+n : p.r+4+n]
			p.r += 4 + n
			return out, nil
		}
		p.seq++
		p.r += 4
		p.assembling, p.big, p.need, p.more = true, p.big[:0], n, n == maxPacketPayload
	}
	for {
		for p.need > 0 {
			if p.r == p.w {
				if err := p.fill(1); err != nil {
					return nil, err
				}
			}
			k := min(p.need, p.w-p.r)
			p.big = append(p.big, p.buf[p.r:p.r+k]...)
			p.r += k
			p.need -= k
		}
		if !p.more {
			p.assembling = false
			return p.big, nil
		}
		if err := p.fill(4); err != nil {
			return nil, err
		}
		n, err := p.header()
		if err != nil {
			return nil, err
		}
		p.seq++
		p.r += 4
		p.need, p.more = n, n == maxPacketPayload
	}
}

// ready reports whether the next packet is buffered whole, so that next
// returns it without reading.
func (p *packetReader) ready() bool {
	if p.assembling || p.w-p.r < 4 {
		return false
	}
	h := p.buf[p.r : p.r+4]
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	return n < maxPacketPayload && p.w-p.r >= 4+n
}

// header decodes the packet header at buf[r:] and checks its sequence.
func (p *packetReader) header() (int, error) {
	h := p.buf[p.r : p.r+4]
	n := int(h[0]) | int(h[1])<<8 | int(h[2])<<16
	if h[3] != p.seq {
		return 0, fmt.Errorf("%w: got %d, want %d", errPacketSequence, h[3], p.seq)
	}
	return n, nil
}

// fill reads until at least k unread bytes are buffered (k <= len(buf)).
func (p *packetReader) fill(k int) error {
	if p.w-p.r >= k {
		return nil
	}
	if p.buf == nil {
		p.buf = make([]byte, p.size)
	}
	if len(p.buf)-p.r < k {
		p.w = copy(p.buf, p.buf[p.r:p.w])
		p.r = 0
	}
	for p.w-p.r < k {
		n, err := p.rd.Read(p.buf[p.w:])
		p.w += n
		if err != nil {
			if p.w-p.r >= k {
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

// dumpConn is one binlog dump connection. Its Read (used by the packet
// reader) applies the read timeout and lets a context interrupt a blocked
// read without losing the connection.
type dumpConn struct {
	c       *client.Conn
	nc      net.Conn
	id      uint32 // server connection id, for KILL
	timeout time.Duration
	pr      *packetReader

	// Read batching (batchReads): while the upstream streams, the
	// socket wakes the reader only once lowat bytes wait (SO_RCVLOWAT),
	// and a read waits at most batchWait for them before it takes what
	// came. lowat is 0 when off.
	lowat   int
	lowatOn bool // SO_RCVLOWAT is lowat now (1 otherwise)
	rc      syscall.RawConn
	// idle, when set (and rc), is called by Read before it waits for
	// bytes while the upstream is not streaming (batching is off): the
	// reader has taken everything the upstream sent.
	idle func()

	ctx       context.Context // set by the reader around each read
	armedAt   time.Time       // when the read deadline was last set
	lastData  time.Time       // when bytes last arrived
	poisoned  bool            // an interruption set the deadline in the past
	intr      sync.WaitGroup  // an interruption in flight
	interrupt func()

	closeOnce sync.Once
}

// aLongTimeAgo is a deadline in the past: it wakes a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// interrupted wraps the context's error when it stopped a read.
type interrupted struct{ err error }

func (e *interrupted) Error() string { return "read interrupted: " + e.err.Error() }
func (e *interrupted) Unwrap() error { return e.err }

// Read reads from the connection. A read blocks at most until the read
// timeout has passed since bytes last arrived, or until the reader's
// context ends.
func (d *dumpConn) Read(b []byte) (int, error) {
	for {
		if d.idle != nil && d.rc != nil && !d.lowatOn {
			// The upstream is not streaming: look before waiting, and
			// tell the reader's owner when there is nothing to take.
			n, wouldBlock := d.readNow(b)
			if n > 0 {
				return n, nil
			}
			if wouldBlock {
				d.idle()
			}
			// An error or the end of the stream: the read below
			// reports it.
		}
		now := time.Now()
		if d.lowatOn {
			// Wait for a batch a short while only; the read deadline
			// is set again once batching stops.
			if err := d.nc.SetReadDeadline(now.Add(batchWait)); err != nil {
				return 0, err
			}
			d.poisoned = true
		} else if d.timeout > 0 {
			// Setting a deadline costs a timer update: do it when an
			// eighth of the timeout has passed, not for every read.
			if d.poisoned || now.Sub(d.armedAt) > d.timeout/8 {
				if err := d.nc.SetReadDeadline(now.Add(d.timeout)); err != nil {
					return 0, err
				}
				d.armedAt, d.poisoned = now, false
			}
		} else if d.poisoned {
			if err := d.nc.SetReadDeadline(time.Time{}); err != nil {
				return 0, err
			}
			d.poisoned = false
		}
		var stop func() bool
		if ctx := d.ctx; ctx != nil && ctx.Done() != nil {
			if err := ctx.Err(); err != nil {
				return 0, &interrupted{err}
			}
			d.intr.Add(1)
			stop = context.AfterFunc(ctx, d.interrupt)
		}
		n, err := d.nc.Read(b)
		if stop != nil {
			if stop() {
				d.intr.Done()
			} else {
				// The interruption ran or is running: wait for it, and
				// take its deadline back before the next read.
				d.intr.Wait()
				d.poisoned = true
			}
		}
		if n > 0 {
			d.got(n)
			return n, nil
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if d.ctx != nil && d.ctx.Err() != nil {
				return 0, &interrupted{d.ctx.Err()}
			}
			if d.lowatOn {
				// Less than a batch came in batchWait: take it.
				d.setLowat(false)
				continue
			}
			if d.timeout > 0 && time.Since(d.lastData) < d.timeout {
				// The deadline was set before the last bytes came:
				// the connection is not silent for long enough yet.
				if err := d.nc.SetReadDeadline(d.lastData.Add(d.timeout)); err != nil {
					return 0, err
				}
				// Not again at the top of the loop: the deadline must
				// stay one timeout after the last bytes.
				d.armedAt = time.Now()
				continue
			}
		}
		return 0, err
	}
}

// got records that n bytes arrived.
func (d *dumpConn) got(n int) {
	d.lastData = time.Now()
	if d.lowat > 0 && !d.lowatOn && n >= d.lowat/2 {
		// The upstream streams: wait for batches.
		d.setLowat(true)
	}
}

// readNow reads what the socket holds without waiting. wouldBlock is true
// when it holds nothing; n is 0 and wouldBlock false when the read failed
// or the stream ended (a read that waits reports it again). A read
// deadline already passed (an interruption) fails it too.
func (d *dumpConn) readNow(b []byte) (n int, wouldBlock bool) {
	var rerr error
	err := d.rc.Read(func(fd uintptr) bool {
		n, rerr = readNow(fd, b)
		return true // one attempt: never wait
	})
	switch {
	case err != nil:
		return 0, false
	case errors.Is(rerr, syscall.EAGAIN):
		return 0, true
	case rerr != nil || n <= 0:
		return 0, false
	}
	d.got(n)
	return n, false
}

// Read batching: the socket's low-water mark while the upstream streams,
// how long a read waits for that much, and the packet buffer of a
// connection that batches (room for a batch and what came meanwhile, so
// that a read takes all that waits). 1 MiB batches against 256 KiB: about
// a tenth less of the relay's CPU and a fifth fewer of its context
// switches per copy (BENCHMARKS.md, issue #19's eighth session); at full
// speed a batch comes in well under batchWait.
const (
	batchLowat      = 1 << 20
	batchWait       = 2 * time.Millisecond
	batchReadBuffer = 4 << 20
)

// batchReads turns read batching on: while the upstream sends faster than
// the reader takes (a read returns at least half a batch), the socket wakes
// the reader only once batchLowat bytes wait, or batchWait has passed.
// Fewer, larger reads cost the reader fewer wake-ups and system calls, and
// the server fewer wake-ups of the reader; a stream that slows down is read
// as before, after at most batchWait. Where the connection offers no
// socket option (not TCP, TLS) it does nothing.
func (d *dumpConn) batchReads() {
	sc, ok := d.nc.(syscall.Conn)
	if !ok || !canSetRcvLowat {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	d.rc, d.lowat = rc, batchLowat
	if d.pr != nil && d.pr.buf == nil {
		d.pr.size = batchReadBuffer
	}
}

// setLowat sets the socket's low-water mark to a batch or back to 1; if
// the socket refuses, batching stops.
func (d *dumpConn) setLowat(on bool) {
	v := 1
	if on {
		v = d.lowat
	}
	var serr error
	if err := d.rc.Control(func(fd uintptr) { serr = setRcvLowat(fd, v) }); err == nil {
		err = serr
	} else if serr == nil {
		serr = err
	}
	if serr != nil {
		d.lowat, d.lowatOn = 0, false
		return
	}
	d.lowatOn = on
}

func (d *dumpConn) interruptRead() {
	defer d.intr.Done()
	_ = d.nc.SetReadDeadline(aLongTimeAgo)
}

// close closes the connection; it is safe to call more than once and from
// any goroutine.
func (d *dumpConn) close() {
	// The socket, not the client: nothing may be written (COM_QUIT) while
	// a read may be running.
	d.closeOnce.Do(func() { _ = d.nc.Close() })
}

// dumpRequest is what a dump connection asks the server for.
type dumpRequest struct {
	up        UpstreamConfig // Flavor and ServerID known
	heartbeat time.Duration
	timeout   time.Duration
	dialer    client.Dialer
	// Either a file position, or (gtid set) a GTID set.
	file string
	pos  uint32
	gtid mysql.GTIDSet
}

// openDump connects, prepares the session as a replica and sends the dump
// command. The returned connection's first packet is the server's answer.
func openDump(ctx context.Context, req dumpRequest) (*dumpConn, error) {
	c, err := req.up.connect(ctx, boundedDialer(req.dialer))
	if err != nil {
		return nil, err
	}
	d, err := startDump(c, req)
	if err != nil {
		c.Close()
		return nil, err
	}
	return d, nil
}

func startDump(c *client.Conn, req dumpRequest) (*dumpConn, error) {
	if c.Compression != mysql.MYSQL_COMPRESS_NONE {
		return nil, errors.New("a compressed connection cannot carry a raw binlog dump")
	}
	// Until a dump starts, statements run with a bound on each answer.
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, err
	}
	mariadb := req.up.Flavor == FlavorMariaDB
	// Being checksum-aware is what makes the server send events with
	// their checksums, as they are in its files; 'NONE' only says that
	// the fake rotate it starts with carries none (mysqlbinlog does the
	// same).
	id := uuid.New().String()
	set := []string{
		"@master_binlog_checksum='NONE'", "@source_binlog_checksum='NONE'",
		"@slave_uuid='" + id + "'", "@replica_uuid='" + id + "'",
	}
	if req.heartbeat > 0 {
		// In nanoseconds.
		set = append(set, fmt.Sprintf("@master_heartbeat_period=%d, @source_heartbeat_period=%d",
			req.heartbeat.Nanoseconds(), req.heartbeat.Nanoseconds()))
	}
	if mariadb {
		// MARIA_SLAVE_CAPABILITY_GTID: the replica understands GTID
		// events (MariaDB otherwise rewrites them as dummy events).
		set = append(set, "@mariadb_slave_capability=4")
		if req.gtid != nil {
			gs := req.gtid.String()
			if strings.ContainsAny(gs, `'\`) {
				return nil, fmt.Errorf("GTID set %q cannot be sent", gs)
			}
			// Strict mode, as a real replica sets it when its
			// gtid_strict_mode is on: the server refuses a start it
			// cannot serve exactly instead of guessing.
			set = append(set, "@slave_connect_state='"+gs+"'", "@slave_gtid_strict_mode=1")
		}
	}
	if _, err := c.Execute("SET " + strings.Join(set, ", ")); err != nil {
		return nil, err
	}
	if err := writeRegisterSlave(c, req.up); err != nil {
		return nil, err
	}
	if _, err := c.ReadOKPacket(); err != nil {
		return nil, err
	}
	switch {
	case req.gtid != nil && !mariadb:
		err := writeDumpGTID(c, req.up.ServerID, req.gtid)
		if err != nil {
			return nil, err
		}
	case req.gtid != nil:
		// MariaDB: the start is @slave_connect_state; file and
		// position are ignored.
		if err := writeDump(c, req.up.ServerID, "", 0, replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT); err != nil {
			return nil, err
		}
	default:
		var flags uint16
		if mariadb {
			// Without this flag MariaDB leaves Annotate_rows events
			// out and the stream has holes where they were.
			flags = replication.BINLOG_SEND_ANNOTATE_ROWS_EVENT
		}
		if err := writeDump(c, req.up.ServerID, req.file, req.pos, flags); err != nil {
			return nil, err
		}
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	d := &dumpConn{c: c, nc: c.Conn.Conn, id: c.GetConnectionID(), timeout: req.timeout, lastData: time.Now()}
	d.interrupt = d.interruptRead
	// The client's own buffered reader holds nothing at this point: every
	// answer was read whole and the server sends nothing unasked.
	d.pr = newPacketReader(d, c.Sequence, rawReadBuffer)
	return d, nil
}

// writeRegisterSlave sends COM_REGISTER_SLAVE: server id, our host name,
// user, password (empty), port, rank, master id.
func writeRegisterSlave(c *client.Conn, up UpstreamConfig) error {
	user := up.User
	if len(user) > 255 {
		user = user[:255]
	}
	host, _ := os.Hostname()
	if len(host) > 255 {
		host = host[:255]
	}
	data := make([]byte, 4, 4+1+4+1+len(host)+1+len(user)+1+2+4+4)
	data = append(data, mysql.COM_REGISTER_SLAVE)
	data = binary.LittleEndian.AppendUint32(data, up.ServerID)
	data = append(data, byte(len(host)))
	data = append(data, host...)
	data = append(data, byte(len(user)))
	data = append(data, user...)
	data = append(data, 0) // password
	data = binary.LittleEndian.AppendUint16(data, up.Port)
	data = binary.LittleEndian.AppendUint32(data, 0) // rank
	data = binary.LittleEndian.AppendUint32(data, 0) // master id
	c.ResetSequence()
	return c.WritePacket(data)
}

// writeDump sends COM_BINLOG_DUMP: position, flags, server id, file name.
func writeDump(c *client.Conn, serverID uint32, file string, pos uint32, flags uint16) error {
	data := make([]byte, 4, 4+1+4+2+4+len(file))
	data = append(data, mysql.COM_BINLOG_DUMP)
	data = binary.LittleEndian.AppendUint32(data, pos)
	data = binary.LittleEndian.AppendUint16(data, flags)
	data = binary.LittleEndian.AppendUint32(data, serverID)
	data = append(data, file...)
	c.ResetSequence()
	return c.WritePacket(data)
}

// writeDumpGTID sends MySQL's COM_BINLOG_DUMP_GTID: flags, server id, an
// empty file name, position 4 and the encoded GTID set.
func writeDumpGTID(c *client.Conn, serverID uint32, gset mysql.GTIDSet) error {
	enc := gset.Encode()
	data := make([]byte, 4, 4+1+2+4+4+8+4+len(enc))
	data = append(data, mysql.COM_BINLOG_DUMP_GTID)
	data = binary.LittleEndian.AppendUint16(data, 0)
	data = binary.LittleEndian.AppendUint32(data, serverID)
	data = binary.LittleEndian.AppendUint32(data, 0) // file name length
	data = binary.LittleEndian.AppendUint64(data, 4)
	data = binary.LittleEndian.AppendUint32(data, uint32(len(enc)))
	data = append(data, enc...)
	c.ResetSequence()
	return c.WritePacket(data)
}

// killDumpTimeout bounds the connection that ends a dump thread when a
// reader closes.
const killDumpTimeout = 2 * time.Second

// killDump asks the server, on a connection of its own, to end the dump
// thread of connection id, so that it does not linger until it notices the
// closed socket. It kills only a binlog dump thread: after a server restart
// the id may belong to another client. Failure is harmless: the server
// reaps the thread on its own, and a new dump with the same server id
// replaces it. (A reconnect does not kill the old thread for that reason.)
func killDump(ctx context.Context, up UpstreamConfig, dialer client.Dialer, id uint32) {
	ctx, cancel := context.WithTimeout(ctx, killDumpTimeout)
	defer cancel()
	c, err := up.connect(ctx, boundedDialer(dialer))
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r, err := c.Execute(fmt.Sprintf("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %d AND COMMAND LIKE 'Binlog Dump%%'", id))
	if err != nil || r.RowNumber() == 0 {
		return
	}
	_, _ = c.Execute(fmt.Sprintf("KILL %d", id))
}

// boundedDialer dials with d (a net.Dialer when nil) and bounds the whole
// connection set-up, handshake included, by the context's deadline: a
// handshake through a stalled network would otherwise wait forever.
func boundedDialer(d client.Dialer) client.Dialer {
	if d == nil {
		nd := &net.Dialer{}
		d = nd.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			if err := nc.SetDeadline(dl); err != nil {
				nc.Close()
				return nil, err
			}
		}
		return nc, nil
	}
}
