package streamer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

const (
	eventHeaderSize = replication.EventHeaderSize
	checksumSize    = replication.BinlogChecksumLength
	// maxEventSize bounds what a header may claim before it is taken for
	// garbage: MariaDB's max_allowed_packet tops out at 1 GiB.
	maxEventSize = 1 << 30
)

// errTornEvent marks an event cut short by the end of the file.
var errTornEvent = errors.New("event cut short by the end of the file")

// eventFramer reads whole raw events from a binlog file, verifying their
// checksums, and decodes the few event types that frame transactions.
type eventFramer struct {
	r       *bufio.Reader
	off     int64 // offset of the next event
	parser  *replication.BinlogParser
	crc     bool // events carry a CRC32 checksum (known after the FDE)
	sawFDE  bool
	scratch []byte
}

func newEventFramer(r io.Reader, flavor string) *eventFramer {
	p := replication.NewBinlogParser()
	p.SetFlavor(flavor)
	p.SetVerifyChecksum(true)
	return &eventFramer{r: bufio.NewReaderSize(r, 256<<10), parser: p}
}

// readMagic checks the 4-byte binlog header.
func (f *eventFramer) readMagic() error {
	var m [4]byte
	n, err := io.ReadFull(f.r, m[:])
	f.off += int64(n)
	if err != nil {
		return errTornEvent
	}
	if string(m[:]) != binlogMagic {
		return fmt.Errorf("not a binlog file: header %q", m[:])
	}
	return nil
}

// next returns the next event's raw bytes (valid until the next call) and
// its header. It returns io.EOF at a clean end, errTornEvent when the file
// ends inside an event, and another error when the event is damaged.
func (f *eventFramer) next() ([]byte, *replication.EventHeader, error) {
	hdr, err := f.r.Peek(eventHeaderSize)
	if err != nil {
		if len(hdr) == 0 && errors.Is(err, io.EOF) {
			return nil, nil, io.EOF
		}
		return nil, nil, errTornEvent
	}
	size := binary.LittleEndian.Uint32(hdr[9:13])
	if size < eventHeaderSize || size > maxEventSize {
		return nil, nil, fmt.Errorf("event header claims %d bytes", size)
	}
	if cap(f.scratch) < int(size) {
		f.scratch = make([]byte, size)
	}
	raw := f.scratch[:size]
	n, err := io.ReadFull(f.r, raw)
	if err != nil {
		_ = n
		return nil, nil, errTornEvent
	}
	h := &replication.EventHeader{}
	if err := h.Decode(raw); err != nil {
		return nil, nil, err
	}
	if !f.sawFDE {
		if h.EventType != replication.FORMAT_DESCRIPTION_EVENT {
			return nil, nil, fmt.Errorf("first event is %s, want a format description", h.EventType)
		}
		ev, err := f.parser.Parse(raw)
		if err != nil {
			return nil, nil, err
		}
		f.sawFDE = true
		f.crc = ev.Event.(*replication.FormatDescriptionEvent).ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
	} else if f.crc {
		body := raw[:len(raw)-checksumSize]
		if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(raw[len(raw)-checksumSize:]) {
			return nil, nil, ErrChecksum
		}
	}
	f.off += int64(size)
	return raw, h, nil
}

// framesTxn reports whether the event type matters for transaction framing
// or the GTID set, and so must be decoded while scanning.
func framesTxn(t replication.EventType) bool {
	switch t {
	case replication.QUERY_EVENT, replication.XID_EVENT, replication.GTID_EVENT, replication.ANONYMOUS_GTID_EVENT,
		replication.GTID_TAGGED_LOG_EVENT, replication.PREVIOUS_GTIDS_EVENT, replication.MARIADB_GTID_EVENT,
		replication.MARIADB_GTID_LIST_EVENT, replication.MARIADB_QUERY_COMPRESSED_EVENT, replication.XA_PREPARE_LOG_EVENT:
		return true
	}
	return false
}

// RelayFileScan describes a relay binlog file read from its start.
type RelayFileScan struct {
	Size     int64 // bytes in the file
	EventEnd int64 // end of the last whole, valid event (0 if even the magic is incomplete)
	TxnEnd   int64 // end of the last whole transaction, or of the last event outside one
	// TxnEndEventStart is where the event ending at TxnEnd starts (4 when
	// TxnEnd is 4): a writer resuming there re-reads one event and so checks
	// that the upstream still has the same bytes.
	TxnEndEventStart int64
	// LastTxnEventStart is where the last event that ended a transaction
	// (XID, COMMIT, DDL) starts, -1 when the file has none. Its bytes are
	// unique to this binlog history (transaction ids, timestamps), which
	// makes it the event to re-read when checking that the upstream still
	// has the file that was copied.
	LastTxnEventStart int64
	GTIDSet           mysql.GTIDSet // executed set at TxnEnd, when the file says (GTID list / previous GTIDs)
	Flavor            string        // flavour of GTIDSet
	Events            int           // whole events up to EventEnd
	// BadAt is the offset of the first event that could not be read whole
	// and valid, or -1 when the file ends cleanly. Bad says why; errors.Is
	// (Bad, ErrChecksum) tells a checksum mismatch from a torn event.
	BadAt int64
	Bad   error
	// Rotated is true when the last whole event is a rotate or stop event:
	// the upstream finished this file.
	Rotated bool
}

// ScanRelayFile reads a relay (or any binlog) file from its start: it checks
// every event's frame and checksum, and follows transactions to find the
// last point a writer can resume from. It reports damage in the result
// rather than as an error; the error is for failing to read the file at all.
func ScanRelayFile(path, flavor string) (RelayFileScan, error) {
	s := RelayFileScan{BadAt: -1, LastTxnEventStart: -1}
	f, err := os.Open(path)
	if err != nil {
		return s, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return s, err
	}
	s.Size = st.Size()
	fr := newEventFramer(f, flavor)
	if err := fr.readMagic(); err != nil {
		s.BadAt, s.Bad = 0, err
		return s, nil
	}
	s.EventEnd, s.TxnEnd, s.TxnEndEventStart = 4, 4, 4
	tr := newTxnTracker(flavor, nil)
	for {
		start := fr.off
		raw, h, err := fr.next()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			s.BadAt, s.Bad = start, err
			return s, nil
		}
		txnEnd := false
		if framesTxn(h.EventType) {
			ev, perr := fr.parser.Parse(raw)
			if perr != nil {
				s.BadAt, s.Bad = start, perr
				return s, nil
			}
			if _, txnEnd, perr = tr.observe(ev); perr != nil {
				s.BadAt, s.Bad = start, perr
				return s, nil
			}
		}
		s.Events++
		s.EventEnd = fr.off
		s.Rotated = h.EventType == replication.ROTATE_EVENT || h.EventType == replication.STOP_EVENT
		if txnEnd {
			s.LastTxnEventStart = start
		}
		if txnEnd || !tr.inTxn {
			s.TxnEnd, s.TxnEndEventStart = fr.off, start
			s.GTIDSet, s.Flavor = tr.gset, tr.flavor
		}
	}
}

// RelayFileWriter appends upstream events to the binlog files of one relay
// subdirectory (RelayDir.Writer returns one), keeping each file's offsets equal to the upstream's: an
// event is written at the offset it has upstream. It is not safe for
// concurrent use.
type RelayFileWriter struct {
	dir      string
	perm     os.FileMode // of the files it creates
	name     string      // current file name ("" before the first rotate)
	f        *os.File    // nil until the current file is opened
	size     int64
	dirDirty bool // a file was created since the last Sync
	synced   bool // everything written is fsynced
	// buf holds the file's last len(buf) bytes (up to size), not yet
	// written: one write per buffer-full instead of one per event.
	buf []byte
	// Write-behind (WriteBehind): a full buffer goes to a goroutine of
	// the writer's, which writes it while the caller fills a spare one.
	// At most behindDepth writes are in flight; whatever reads the file,
	// syncs it or switches files waits for them first.
	behind     chan behindWrite // to the goroutine; nil without write-behind
	behindDone chan behindWrite // back from it, with the write's error
	behindExit chan struct{}    // closed when the goroutine ends
	inflight   int              // writes handed over and not taken back
	handed     uint64           // writes handed over, ever
	progress   *behindProgress  // writes finished, for a syncer (FlushBehind)
	spares     [][]byte
	behindErr  error // the first error a write behind returned, not reported yet
	// Direct I/O (DirectIO, relayfile_direct.go): df is the current
	// file's O_DIRECT descriptor (nil when off or refused); while it is
	// open, buf starts at an offset aligned to dioAlign, and its first
	// clean bytes are in the file already (the partial block a flush
	// wrote through f).
	direct bool
	df     *os.File
	clean  int
	// Copy mode (RelayDir.CopyUpstream): files are written under hidden names
	// (partName) and the writer stops at a rotate to stopAt.
	hidden  bool
	stopAt  string
	stopped bool
	created []string // files created, in order (copy mode)
	// failed is the first I/O error the writer met (a write, an fsync,
	// a creation): a failed write may have dropped bytes the writer had
	// taken, so it writes, flushes and syncs nothing more and returns
	// this error again; Close still releases the descriptors.
	failed error
}

// fail records err as the writer's failure (the first one stays) and
// returns it.
func (w *RelayFileWriter) fail(err error) error {
	if err != nil && w.failed == nil {
		w.failed = err
	}
	return err
}

// relayWriteBuffer is how many bytes the writer gathers before a write.
const relayWriteBuffer = 1 << 20

// relayBufferKeep bounds the buffers the writer keeps for reuse.
const relayBufferKeep = 2 * relayDirectBuffer

// newRelayFileWriter returns a writer for the subdirectory dir. When name is
// set, writing resumes at the end of that file, which must already be
// repaired (see ScanRelayFile).
func newRelayFileWriter(dir, name string) (*RelayFileWriter, error) {
	w := &RelayFileWriter{dir: dir, synced: true, perm: DefaultRelayFileMode}
	if name != "" {
		if err := w.open(name, false); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// File is the current file's name and size.
func (w *RelayFileWriter) File() (name string, size int64) { return w.name, w.size }

// partName is the hidden name a file is copied under before it is complete.
func partName(name string) string { return "." + name + ".part" }

func (w *RelayFileWriter) open(name string, create bool) error {
	if err := validateName(name); err != nil {
		return err
	}
	if err := w.closeFile(); err != nil {
		return err
	}
	path := filepath.Join(w.dir, name)
	if w.hidden {
		path = filepath.Join(w.dir, partName(name))
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) && create {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, w.perm)
		if err == nil {
			w.dirDirty = true
			if w.hidden {
				// Copy mode renames them at its end; the live relay's
				// writer, which lives as long as the relay, keeps no
				// list of the files it made.
				w.created = append(w.created, name)
			}
			if _, err = f.Write([]byte(binlogMagic)); err != nil {
				f.Close()
				return w.fail(writeFailed(path, 0, err))
			}
		} else if !errors.Is(err, os.ErrExist) {
			return w.fail(writeFailed(path, 0, err))
		}
	}
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.name, w.size = f, name, st.Size()
	if w.size < 4 {
		f.Close()
		w.f = nil
		return corruptf(path, 0, "file shorter than the binlog header")
	}
	return w.openDirect()
}

func (w *RelayFileWriter) closeFile() error {
	if w.f == nil {
		return nil
	}
	err := w.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if w.df != nil {
		if cerr := w.df.Close(); err == nil {
			err = cerr
		}
		w.df = nil
	}
	w.f, w.buf, w.clean = nil, w.buf[:0], 0
	return err
}

// Write appends ev to the relay if it belongs there. Heartbeats and other
// artificial events are not written; a fake rotate switches to (creating if
// needed) the file it names. An event the file already holds is skipped when
// its bytes are identical and refused with ErrRelayOverlap otherwise; an
// event that would leave a hole is refused with ErrRelayGap. It reports
// whether bytes were written. The events a Transaction_payload event holds
// (RemoteReader and LocalReader deliver them in its place) cannot be
// written: the payload they came in is not theirs to rebuild; they are
// refused with ErrRelayGap. Copy such a binlog with a RawReader.
func (w *RelayFileWriter) Write(ev *Event) (bool, error) {
	if !ev.Artificial() && len(ev.RawData) >= eventHeaderSize && binary.LittleEndian.Uint32(ev.RawData[13:]) == 0 {
		// On the server, only the events of a payload have no log_pos.
		return false, &RelayError{Path: filepath.Join(w.dir, w.name), Offset: w.size, Kind: ErrRelayGap,
			Err: fmt.Errorf("%s event of a transaction payload: write the payload event (RawReader)", ev.Header.EventType)}
	}
	we := writeEvent{typ: ev.Header.EventType, logPos: ev.Header.LogPos, artificial: ev.Artificial(),
		raw: ev.RawData, end: ev.Pos.Offset}
	if rot, ok := ev.Event.(*replication.RotateEvent); ok {
		we.next = string(rot.NextLogName)
	}
	return w.write(&we)
}

// WriteRaw is Write for an event from a RawReader. It copies what it keeps:
// ev may be reused once it returns.
func (w *RelayFileWriter) WriteRaw(ev *RawEvent) (bool, error) {
	we := writeEvent{typ: ev.Header.EventType, logPos: ev.Header.LogPos, artificial: ev.Artificial(),
		raw: ev.Data, end: ev.Pos.Offset}
	if we.typ == replication.ROTATE_EVENT {
		// A rotate's position is the file it names.
		we.next = ev.Pos.Name
	}
	return w.write(&we)
}

// writeEvent is what the writer needs of an event, however it was read.
type writeEvent struct {
	typ        replication.EventType
	logPos     uint32
	artificial bool
	raw        []byte // the whole event
	end        uint64 // the stream's offset after the event
	next       string // a rotate's next file
}

func (w *RelayFileWriter) write(ev *writeEvent) (bool, error) {
	if w.failed != nil {
		return false, w.failed
	}
	if ev.artificial {
		switch ev.typ {
		case replication.ROTATE_EVENT:
			if w.stopAt != "" && ev.next == w.stopAt {
				w.stopped = true
				return false, w.closeFile()
			}
			if ev.next != w.name || w.f == nil {
				return false, w.open(ev.next, true)
			}
		case replication.FORMAT_DESCRIPTION_EVENT:
			// Sent when reading resumes inside a file: it must be the
			// format description the relay copy starts with, or the
			// upstream's file is another one under the same name.
			return false, w.checkFDE(ev.raw)
		}
		return false, nil
	}
	if w.f == nil {
		return false, fmt.Errorf("relay: event %s before any rotate names its file", ev.typ)
	}
	raw := ev.raw
	end := ev.end
	if ev.typ == replication.ROTATE_EVENT {
		end = extendOffset(uint64(w.size), ev.logPos)
	}
	start := int64(end) - int64(len(raw))
	if start < w.size {
		// The overlap check reads the file back.
		if err := w.flushBuf(); err != nil {
			return false, err
		}
	}
	switch {
	case start > w.size:
		return false, &RelayError{Path: filepath.Join(w.dir, w.name), Offset: w.size, Kind: ErrRelayGap,
			Err: fmt.Errorf("upstream event %s starts at %d", ev.typ, start)}
	case start < w.size:
		held := min(int64(len(raw)), w.size-start)
		have := make([]byte, held)
		if _, err := w.f.ReadAt(have, start); err != nil {
			return false, err
		}
		if !bytes.Equal(have, raw[:held]) {
			return false, &RelayError{Path: filepath.Join(w.dir, w.name), Offset: start, Kind: ErrRelayOverlap,
				Err: fmt.Errorf("upstream event %s of %d bytes", ev.typ, len(raw))}
		}
		raw, start = raw[held:], start+held
	}
	wrote := false
	if len(raw) > 0 {
		w.buf = append(w.buf, raw...)
		w.size = start + int64(len(raw))
		w.synced = false
		wrote = true
		if len(w.buf) >= w.flushAt() {
			if err := w.flushBehind(); err != nil {
				return false, err
			}
		}
	}
	if ev.typ == replication.ROTATE_EVENT {
		// The upstream finished this file (whether we wrote its rotate
		// now or held it already): make it durable and move on.
		if err := w.closeFile(); err != nil {
			return wrote, err
		}
		if w.stopAt != "" && ev.next == w.stopAt {
			w.stopped = true
			return wrote, nil
		}
		return wrote, w.open(ev.next, true)
	}
	return wrote, nil
}

// checkFDE compares a format description the upstream re-sent with the one
// at the start of the current file, ignoring the header (the re-sent one has
// log_pos 0 and may differ in flags) and the checksum.
func (w *RelayFileWriter) checkFDE(raw []byte) error {
	if w.f == nil || w.size <= 4 || len(raw) < eventHeaderSize+checksumSize {
		return nil
	}
	if err := w.flushBuf(); err != nil {
		return err
	}
	have := make([]byte, len(raw))
	if _, err := w.f.ReadAt(have, 4); err != nil {
		return &RelayError{Path: filepath.Join(w.dir, w.name), Offset: 4, Kind: ErrRelayDiverged, Err: err}
	}
	if binary.LittleEndian.Uint32(have[9:13]) != uint32(len(raw)) || !equalFDEBodies(have, raw) {
		return &RelayError{Path: filepath.Join(w.dir, w.name), Offset: 4, Kind: ErrRelayDiverged,
			Err: errors.New("the upstream's format description differs from the relay copy's")}
	}
	return nil
}

// fdeCreatedAt is where a format description's "created" timestamp lies in
// its body (after the 2-byte binlog version and the 50-byte server
// version). The server zeroes it when it re-sends the event.
const fdeCreatedAt = 2 + 50

// equalFDEBodies compares two format description events' bodies, leaving
// out the created timestamp.
func equalFDEBodies(a, b []byte) bool {
	ab, bb := a[eventHeaderSize:len(a)-checksumSize], b[eventHeaderSize:len(b)-checksumSize]
	if len(ab) != len(bb) || len(ab) < fdeCreatedAt+4 {
		return bytes.Equal(ab, bb)
	}
	return bytes.Equal(ab[:fdeCreatedAt], bb[:fdeCreatedAt]) && bytes.Equal(ab[fdeCreatedAt+4:], bb[fdeCreatedAt+4:])
}

// Sync makes everything written so far durable: the current file, and the
// directory entries of files created since the last Sync.
func (w *RelayFileWriter) Sync() error {
	if err := w.flushBuf(); err != nil {
		return err
	}
	if w.f != nil && !w.synced {
		if err := w.f.Sync(); err != nil {
			return w.fail(writeFailed(w.f.Name(), w.size, err))
		}
		w.synced = true
	}
	if w.dirDirty {
		if err := syncDir(w.dir); err != nil {
			return w.fail(err)
		}
		w.dirDirty = false
	}
	return nil
}

// RelaySyncPoint is what an fsync must cover to make durable what a
// RelayFileWriter had written when Flush or FlushBehind returned it: its
// current file, and the subdirectory when a file was created in it since
// the previous point or Sync (and, from FlushBehind, the writes still to
// finish). A file the writer finished (at a rotate) was fsynced before the
// next one was created, so the current file is the only one that may hold
// data not durable yet. A RelayFileSyncer makes a point durable, on another
// goroutine than the writer's if need be.
type RelaySyncPoint struct {
	// File is the path of the current file ("" before the first rotate
	// names one).
	File string
	// Dir is the subdirectory to fsync ("" when no file was created
	// since the previous point).
	Dir string

	// A point from FlushBehind: the writes behind that must finish
	// before the fsync (the first seq handed over), and the bytes to
	// write at tailAt before it.
	progress *behindProgress
	seq      uint64
	tail     []byte
	tailAt   int64
	end      int64 // the file's size at the point (for errors)
}

// behindProgress counts the writes behind that finished, for a syncer on
// another goroutine than the writer's.
type behindProgress struct {
	mu   sync.Mutex
	cond sync.Cond // on mu: n moved
	n    uint64    // writes finished
	err  error     // the first failed write's error
}

func newBehindProgress() *behindProgress {
	p := &behindProgress{}
	p.cond.L = &p.mu
	return p
}

// finished records one more write done, with its error.
func (p *behindProgress) finished(err error) {
	p.mu.Lock()
	p.n++
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.cond.Broadcast()
}

// wait waits until n writes finished, or one failed: then it returns that
// write's error.
func (p *behindProgress) wait(n uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n < n && p.err == nil {
		p.cond.Wait()
	}
	return p.err
}

// Flush writes the bytes the writer gathers to its current file, without
// fsync, after the writes behind it (if any) are done, and returns what an
// fsync must cover to make everything written so far durable (with direct
// I/O too: the device's cache and the file's size are only made durable by
// an fsync). The directory entry of a file created since the last point
// or Sync is handed over with the point: the writer's next Sync does not
// fsync the directory for it again, so the caller must make the point
// durable before it reports anything after it as durable.
func (w *RelayFileWriter) Flush() (RelaySyncPoint, error) {
	if err := w.flushBuf(); err != nil {
		return RelaySyncPoint{}, err
	}
	return w.syncPoint(), nil
}

// FlushBehind is Flush without waiting for the disk: with write-behind on
// (WriteBehind), the whole blocks gathered go to the write-behind
// goroutine (the caller waits only while its queue is full), and the point
// returned carries those writes and a copy of the partial block left (with
// direct I/O): RelayFileSyncer.Sync waits for the writes, writes the
// partial block and only then fsyncs. A write behind that failed fails
// that Sync (and the writer's next write, flush or sync). Without
// write-behind it is Flush.
func (w *RelayFileWriter) FlushBehind() (RelaySyncPoint, error) {
	if w.behind == nil {
		return w.Flush()
	}
	if w.failed != nil {
		return RelaySyncPoint{}, w.failed
	}
	var tail []byte
	var tailAt int64
	if w.f != nil && len(w.buf) > w.clean {
		if err := w.flushBehind(); err != nil {
			return RelaySyncPoint{}, err
		}
		if len(w.buf) > w.clean {
			// Less than a block (direct I/O): the syncer writes a copy
			// through the page cache. The writer's buffer keeps it, to
			// be written again (whole) with its block: the bytes are
			// the same whichever lands first.
			tail, tailAt = append([]byte(nil), w.buf...), w.size-int64(len(w.buf))
		}
	}
	pt := w.syncPoint()
	pt.progress, pt.seq, pt.tail, pt.tailAt = w.progress, w.handed, tail, tailAt
	return pt, nil
}

// syncPoint is what an fsync must cover now (see Flush); it hands the
// directory entry over.
func (w *RelayFileWriter) syncPoint() RelaySyncPoint {
	var pt RelaySyncPoint
	if w.f != nil {
		pt.File = filepath.Join(w.dir, w.name)
		if w.hidden {
			pt.File = filepath.Join(w.dir, partName(w.name))
		}
		pt.end = w.size
	}
	if w.dirDirty {
		pt.Dir = w.dir
		w.dirDirty = false
	}
	return pt
}

// RelayFileSyncer makes RelaySyncPoints durable through file descriptors of
// its own: an fsync covers what every descriptor of the file wrote before
// it, so the syncer can run on another goroutine than the writer's and the
// writer goes on writing meanwhile. It keeps the last file it synced open.
// It is not safe for concurrent use; Close releases the descriptor.
type RelayFileSyncer struct {
	path     string
	f        *os.File
	writable bool // f is open for writing (a point carried bytes)
}

// Sync fsyncs pt's file, then its directory when pt names one. For a point
// from FlushBehind it first waits for the writes it carries.
func (s *RelayFileSyncer) Sync(pt RelaySyncPoint) error {
	if pt.progress != nil {
		if err := pt.progress.wait(pt.seq); err != nil {
			return err
		}
	}
	if pt.File != "" {
		if pt.File != s.path || s.f == nil || (len(pt.tail) > 0 && !s.writable) {
			if err := s.Close(); err != nil {
				return err
			}
			// fsync needs no write access (Linux, the BSDs); writing
			// a point's partial block does.
			flag := os.O_RDONLY
			if len(pt.tail) > 0 {
				flag = os.O_WRONLY
			}
			f, err := os.OpenFile(pt.File, flag, 0)
			if err != nil {
				return err
			}
			s.f, s.path, s.writable = f, pt.File, flag == os.O_WRONLY
		}
		if len(pt.tail) > 0 {
			if n, err := s.f.WriteAt(pt.tail, pt.tailAt); err != nil {
				return writeFailed(pt.File, pt.tailAt+int64(n), err)
			}
		}
		if err := s.f.Sync(); err != nil {
			return writeFailed(pt.File, pt.end, err)
		}
	}
	if pt.Dir != "" {
		return syncDir(pt.Dir)
	}
	return nil
}

// Close closes the descriptor the syncer holds.
func (s *RelayFileSyncer) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f, s.path, s.writable = nil, "", false
	return err
}

// behindWrite is one buffer written behind the caller's back.
type behindWrite struct {
	f, df *os.File // df: direct descriptor, nil without direct I/O
	buf   []byte
	off   int64
	err   error
}

// behindDepth is how many full buffers may wait for, or be in, a write
// behind: more than one absorbs a burst from the upstream while the disk
// is busy with the previous buffer.
const behindDepth = 2

// WriteBehind makes the writer write each full buffer on a goroutine of its
// own while the caller goes on filling another: the write (the copy into
// the page cache, or the device's direct write) overlaps with the caller's
// reading. Sync, Flush, switching files and reading the file back wait for
// the writes in flight; an error comes back from the next of them, or from
// a write that hands over a buffer. After a failed write the goroutine
// writes nothing more. Close ends the goroutine. Calling it again does
// nothing.
func (w *RelayFileWriter) WriteBehind() {
	if w.behind != nil {
		return
	}
	w.behind = make(chan behindWrite, behindDepth)
	w.behindDone = make(chan behindWrite, behindDepth)
	w.behindExit = make(chan struct{})
	w.progress, w.handed = newBehindProgress(), 0
	go func(in <-chan behindWrite, out chan<- behindWrite, exit chan<- struct{}, prog *behindProgress) {
		defer close(exit)
		var failed error
		for b := range in {
			if b.err = failed; failed == nil {
				b.err = writeDirect(b.f, b.df, b.buf, b.off)
				failed = b.err
			}
			prog.finished(b.err)
			out <- b
		}
	}(w.behind, w.behindDone, w.behindExit, w.progress)
}

// flushBehind hands the buffered bytes to the write-behind goroutine, once
// fewer than behindDepth writes are in flight, and goes on with a spare
// buffer. Without write-behind it is flushBuf.
func (w *RelayFileWriter) flushBehind() error {
	if w.behind == nil {
		return w.flushBuf()
	}
	if w.failed != nil {
		return w.failed
	}
	if len(w.buf) == 0 || w.f == nil {
		return nil
	}
	if w.inflight == behindDepth {
		w.takeBehind()
	}
	if err := w.behindErr; err != nil {
		w.behindErr = nil
		return w.fail(err)
	}
	buf, tail := w.buf, []byte(nil)
	if w.df != nil {
		// Whole blocks go now; the partial one starts the next buffer.
		if buf, tail = w.splitDirect(); len(buf) == 0 {
			return nil
		}
	}
	var spare []byte
	if n := len(w.spares); n > 0 {
		spare, w.spares = w.spares[n-1][:0], w.spares[:n-1]
	} else if w.df != nil {
		spare = alignedBuffer(relayDirectBuffer)
	}
	w.behind <- behindWrite{f: w.f, df: w.df, buf: buf, off: w.size - int64(len(w.buf))}
	w.inflight++
	w.handed++
	w.buf, w.clean = append(spare, tail...), 0
	return nil
}

// takeBehind waits for the oldest write in flight and takes its buffer
// back as a spare, keeping its error for the caller.
func (w *RelayFileWriter) takeBehind() {
	b := <-w.behindDone
	w.inflight--
	if cap(b.buf) <= relayBufferKeep {
		// (A buffer a huge event grew is left to the collector.)
		w.spares = append(w.spares, b.buf[:0])
	}
	if w.behindErr == nil {
		w.behindErr = b.err
	}
}

// waitBehind waits for the writes in flight, if any, and returns the first
// error of a write behind not reported yet.
func (w *RelayFileWriter) waitBehind() error {
	for w.inflight > 0 {
		w.takeBehind()
	}
	err := w.behindErr
	w.behindErr = nil
	return err
}

// stopBehind waits for the writes in flight and ends the write-behind
// goroutine.
func (w *RelayFileWriter) stopBehind() error {
	if w.behind == nil {
		return nil
	}
	err := w.waitBehind()
	close(w.behind)
	<-w.behindExit
	w.behind = nil
	return err
}

// flushBuf writes the buffered bytes to the file (without fsync), after the
// write in flight (write-behind) is done.
func (w *RelayFileWriter) flushBuf() error {
	if w.failed != nil {
		return w.failed
	}
	if err := w.waitBehind(); err != nil {
		return w.fail(err)
	}
	if len(w.buf) == w.clean || w.f == nil {
		return nil
	}
	base := w.size - int64(len(w.buf))
	if w.df != nil {
		// Whole blocks directly; the partial one through the page
		// cache, and kept to be written again with its block.
		blocks, tail := w.splitDirect()
		if len(blocks) > 0 {
			if err := writeDirect(w.f, w.df, blocks, base); err != nil {
				return w.fail(err)
			}
		}
		if n, err := w.f.WriteAt(tail, base+int64(len(blocks))); err != nil {
			return w.fail(writeFailed(w.f.Name(), base+int64(len(blocks)+n), err))
		}
		w.buf = append(w.buf[:0], tail...)
		w.clean = len(w.buf)
		return nil
	}
	if n, err := w.f.WriteAt(w.buf, base); err != nil {
		return w.fail(writeFailed(w.f.Name(), base+int64(n), err))
	}
	w.buf = w.buf[:0]
	return nil
}

// Close syncs and closes the current file, and ends the write-behind
// goroutine.
func (w *RelayFileWriter) Close() error {
	err := w.closeFile()
	if serr := w.stopBehind(); err == nil {
		err = serr
	}
	return err
}
