package streamer

// How a LocalReader frames a relay file into events: the file header, the
// read buffer bounded by the tail limit, checksums, and fake rotates.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/replication"
)

// enterFile opens a relay file; reading starts at off once its header has
// been read. Entering a newer subdirectory turns on skipping of repeated
// transactions.
func (r *LocalReader) enterFile(sub, name string, off int64) error {
	f, err := os.Open(filepath.Join(r.dir, sub, name))
	if errors.Is(err, os.ErrNotExist) {
		return r.newErr("open", ErrBinlogPurged, fmt.Errorf("relay file %s/%s not found (purged while needed?)", sub, name))
	}
	if err != nil {
		return r.newErr("open", nil, err)
	}
	if r.f != nil {
		r.f.Close()
	}
	if r.sub != "" && sub != r.sub {
		r.skipping = true
		r.cfg.logger.Info("relay subdirectory switch", slog.String("relay-dir", r.dir),
			slog.String("from", r.sub), slog.String("to", sub), slog.String("file", name))
	} else {
		r.cfg.logger.Debug("relay file", slog.String("relay-dir", r.dir), slog.String("subdir", sub), slog.String("file", name))
	}
	r.f, r.sub, r.file = f, sub, name
	r.off, r.startOff, r.hdrDone, r.rotateTo, r.stuck = 0, off, false, "", 0
	r.bufOff, r.bufLen = 0, 0
	r.limit = r.computeLimit()
	return nil
}

// step reads one event of the current file and returns it when it is to be
// delivered; at the end of the data it moves on or waits.
func (r *LocalReader) step(ctx context.Context) (*Event, error) {
	if !r.hdrDone {
		err := r.readHeader()
		if errors.Is(err, errNeedMore) {
			return nil, r.atEnd(ctx)
		}
		return nil, err
	}
	raw, err := r.nextRaw()
	if errors.Is(err, errNeedMore) {
		return nil, r.atEnd(ctx)
	}
	if err != nil {
		return nil, err
	}
	return r.process(raw)
}

// errNeedMore means the data ends before the next whole event.
var errNeedMore = errors.New("need more data")

// readHeader checks the magic and the format description, and queues the
// fake rotate (and at a mid-file start the artificial format description).
func (r *LocalReader) readHeader() error {
	d, err := r.peek(0, 4)
	if err != nil {
		return err
	}
	if len(d) < 4 {
		r.off, r.stuck = 0, len(d)
		return errNeedMore
	}
	if string(d) != binlogMagic {
		return r.corrupt(0, "not a binlog file: header %q", d)
	}
	r.off = 4
	raw, err := r.frame()
	if err != nil {
		return err
	}
	fde, fraw, err := checkFDE(raw)
	if err != nil {
		return r.corrupt(4, "%w", err)
	}
	flavor := FlavorMySQL
	if strings.Contains(strings.ToLower(fde.ServerVersion), "mariadb") {
		flavor = FlavorMariaDB
	}
	r.parser.SetFlavor(flavor)
	if r.tracker.flavor == "" {
		r.tracker.flavor = flavor
	}
	r.crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
	// fde's lengths are a slice of raw, which is the read buffer: at a
	// start in the middle of the file nothing reads the format description
	// again, and the buffer is refilled from the start offset on.
	r.postHeader = slices.Clone(fde.EventTypeHeaderLengths)
	r.fdeRaw, r.inner = slices.Clone(fraw), nil
	r.serverID = binary.LittleEndian.Uint32(fraw[5:9])
	pos := r.posAt(r.file, uint64(r.startOff))
	r.pending = append(r.pending, r.fakeRotate(pos))
	if r.startOff > 4 {
		art := slices.Clone(fraw)
		binary.LittleEndian.PutUint32(art[13:17], 0)
		if r.crc {
			binary.LittleEndian.PutUint32(art[len(art)-4:], crc32.ChecksumIEEE(art[:len(art)-4]))
		}
		be, err := parseEvent(r.parser, art, r.crc, r.postHeader)
		if err != nil {
			return r.corrupt(4, "%w", err)
		}
		r.pending = append(r.pending, &Event{BinlogEvent: be, Pos: pos})
		r.off = r.startOff
	}
	r.hdrDone = true
	r.stuck = 0
	return nil
}

// posAt is a position in the current stream's GTID state.
func (r *LocalReader) posAt(name string, off uint64) Position {
	p := Position{Name: name, Offset: off, Flavor: r.tracker.flavor, GTIDSet: r.tracker.gset}
	if p.GTIDSet == nil {
		p.Flavor = ""
	}
	return p
}

// fakeRotate builds the artificial rotate the server sends when it starts
// sending a file: ROTATE_EVENT with LOG_EVENT_ARTIFICIAL_F, timestamp and
// log_pos 0, naming the file and the offset.
func (r *LocalReader) fakeRotate(pos Position) *Event {
	size := eventHeaderSize + 8 + len(pos.Name)
	if r.crc {
		size += checksumSize
	}
	raw := make([]byte, size)
	raw[4] = byte(replication.ROTATE_EVENT)
	binary.LittleEndian.PutUint32(raw[5:], r.serverID)
	binary.LittleEndian.PutUint32(raw[9:], uint32(size))
	binary.LittleEndian.PutUint16(raw[17:], replication.LOG_EVENT_ARTIFICIAL_F)
	binary.LittleEndian.PutUint64(raw[eventHeaderSize:], pos.Offset)
	copy(raw[eventHeaderSize+8:], pos.Name)
	if r.crc {
		binary.LittleEndian.PutUint32(raw[size-checksumSize:], crc32.ChecksumIEEE(raw[:size-checksumSize]))
	}
	h := &replication.EventHeader{EventType: replication.ROTATE_EVENT, ServerID: r.serverID,
		EventSize: uint32(size), Flags: replication.LOG_EVENT_ARTIFICIAL_F}
	rot := &replication.RotateEvent{Position: pos.Offset, NextLogName: []byte(pos.Name)}
	return &Event{BinlogEvent: &replication.BinlogEvent{RawData: raw, Header: h, Event: rot}, Pos: pos}
}

// checkFDE verifies a format description event's checksum and returns it
// decoded, with the raw bytes to deliver. A server marks the binlog file it
// is writing as in use (LOG_EVENT_BINLOG_IN_USE_F) after computing the
// checksum and sends the event with the mark cleared; a copy of such a file
// is read the way the server sends it.
func checkFDE(raw []byte) (*replication.FormatDescriptionEvent, []byte, error) {
	if replication.EventType(raw[4]) != replication.FORMAT_DESCRIPTION_EVENT {
		return nil, nil, fmt.Errorf("first event is %s, want a format description", replication.EventType(raw[4]))
	}
	fde := &replication.FormatDescriptionEvent{}
	if err := decodeFDE(fde, raw[eventHeaderSize:]); err != nil {
		return nil, nil, err
	}
	if fde.ChecksumAlgorithm != replication.BINLOG_CHECKSUM_ALG_CRC32 {
		return fde, raw, nil
	}
	if crcOK(raw) {
		return fde, raw, nil
	}
	flags := binary.LittleEndian.Uint16(raw[17:19])
	if flags&replication.LOG_EVENT_BINLOG_IN_USE_F != 0 {
		c := slices.Clone(raw)
		binary.LittleEndian.PutUint16(c[17:19], flags&^replication.LOG_EVENT_BINLOG_IN_USE_F)
		if crcOK(c) {
			return fde, c, nil
		}
	}
	return nil, nil, fmt.Errorf("%s: %w", replication.FORMAT_DESCRIPTION_EVENT, ErrChecksum)
}

func decodeFDE(fde *replication.FormatDescriptionEvent, body []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("format description does not decode: %v", p)
		}
	}()
	// Short of the fixed part go-mysql reads without checking.
	if len(body) < 2+50+4+1+5 {
		return fmt.Errorf("format description of %d bytes is too short", len(body))
	}
	return fde.Decode(body)
}

func crcOK(raw []byte) bool {
	n := len(raw) - checksumSize
	return n >= eventHeaderSize && crc32.ChecksumIEEE(raw[:n]) == binary.LittleEndian.Uint32(raw[n:])
}

// parseEvent decodes raw with p; go-mysql panics on some malformed input,
// which is turned into an error. crc says whether raw ends with a checksum;
// postHeader is the format description's post-header lengths.
func parseEvent(p *replication.BinlogParser, raw []byte, crc bool, postHeader []byte) (be *replication.BinlogEvent, err error) {
	defer func() {
		if x := recover(); x != nil {
			be, err = nil, fmt.Errorf("%s does not decode: %v", replication.EventType(raw[4]), x)
		}
	}()
	body := raw[eventHeaderSize:]
	if crc {
		body = body[:max(len(body)-checksumSize, 0)]
	}
	if err := checkDecodable(replication.EventType(raw[4]), body, postHeader); err != nil {
		return nil, fmt.Errorf("%s does not decode: %w", replication.EventType(raw[4]), err)
	}
	be, err = p.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s does not decode: %w", replication.EventType(raw[4]), err)
	}
	return be, nil
}

// frame returns the whole event at r.off (valid until the next read),
// checking its size and, past the format description, its checksum.
func (r *LocalReader) frame() ([]byte, error) {
	d, err := r.peek(r.off, eventHeaderSize)
	if err != nil {
		return nil, err
	}
	if len(d) < eventHeaderSize && r.cfg.tail != nil && r.refreshTail() {
		if d, err = r.peek(r.off, eventHeaderSize); err != nil {
			return nil, err
		}
	}
	if len(d) < eventHeaderSize {
		r.stuck = len(d)
		return nil, errNeedMore
	}
	size := binary.LittleEndian.Uint32(d[9:13])
	if size < eventHeaderSize || size > maxEventSize {
		return nil, r.badEvent(r.off, "event header claims %d bytes", size)
	}
	d, err = r.peek(r.off, int(size))
	if err != nil {
		return nil, err
	}
	if len(d) < int(size) && r.cfg.tail != nil && r.refreshTail() {
		if d, err = r.peek(r.off, int(size)); err != nil {
			return nil, err
		}
	}
	if len(d) < int(size) {
		r.stuck = len(d)
		return nil, errNeedMore
	}
	return d, nil
}

// badEvent reports damage at off; right after a start in the middle of a
// file it more likely means the start offset is not at an event boundary.
func (r *LocalReader) badEvent(off int64, format string, args ...any) error {
	if r.midStart && off == r.startOff {
		return r.newErr("open", ErrBadPosition, fmt.Errorf("%s/%s:%d is not the start of a valid event: "+format,
			append([]any{r.sub, r.file, off}, args...)...))
	}
	return r.corrupt(off, format, args...)
}

// nextRaw returns a copy of the next whole, verified event.
func (r *LocalReader) nextRaw() ([]byte, error) {
	d, err := r.frame()
	if err != nil {
		return nil, err
	}
	t := replication.EventType(d[4])
	// The event escapes to the consumer: copy it out of the buffer (append
	// does not zero the memory first, as make would).
	raw := append([]byte(nil), d...)
	if t == replication.FORMAT_DESCRIPTION_EVENT {
		if _, raw, err = checkFDE(raw); err != nil {
			return nil, r.badEvent(r.off, "%w", err)
		}
	} else if r.crc && !crcOK(raw) {
		return nil, r.badEvent(r.off, "%s: %w", t, ErrChecksum)
	}
	return raw, nil
}

// peek returns up to n bytes of the current file from off, reading more
// from the file (within the tail limit) when the buffer holds fewer. Fewer
// than n bytes means the data ends there for now.
func (r *LocalReader) peek(off int64, n int) ([]byte, error) {
	if off < r.bufOff || off > r.bufOff+int64(r.bufLen) {
		r.bufOff, r.bufLen = off, 0
	}
	i := int(off - r.bufOff)
	if r.bufLen-i >= n {
		return r.buf[i : i+n], nil
	}
	if i > 0 {
		copy(r.buf, r.buf[i:r.bufLen])
		r.bufLen -= i
		r.bufOff = off
	}
	if r.buf == nil {
		r.buf = make([]byte, r.cfg.bufSize)
	}
	if n > len(r.buf) {
		// Grow for a big event, but never past what the file holds: a
		// damaged header may claim up to maxEventSize.
		st, err := r.f.Stat()
		if err != nil {
			return nil, r.newErr("read", nil, err)
		}
		avail := st.Size() - r.bufOff
		if r.limit >= 0 {
			avail = min(avail, r.limit-r.bufOff)
		}
		if want := min(int64(max(n, 2*len(r.buf))), avail); want > int64(len(r.buf)) {
			nb := make([]byte, want)
			copy(nb, r.buf[:r.bufLen])
			r.buf = nb
		}
	}
	for r.bufLen < n {
		want := len(r.buf) - r.bufLen
		at := r.bufOff + int64(r.bufLen)
		if r.limit >= 0 {
			want = int(min(int64(want), r.limit-at))
			if want <= 0 {
				break
			}
		}
		m, err := r.f.ReadAt(r.buf[r.bufLen:r.bufLen+want], at)
		r.bufLen += m
		if errors.Is(err, io.EOF) || m == 0 {
			break
		}
		if err != nil {
			return nil, r.newErr("read", nil, err)
		}
	}
	return r.buf[:min(n, r.bufLen)], nil
}
