package streamer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// LocalReader reads binlog events from a relay directory (see relaydir.go
// for the layout). It implements Reader and delivers, for the same start,
// the same stream as a RemoteReader on the upstream the relay copies: the
// same real events with the same Pos, GTID and TxnEnd.
//
// Artificial events: when it enters a binlog file the reader delivers a fake
// rotate naming the file and the offset it reads from (as the server does at
// the start of a dump and after each rotation), and at a start in the middle
// of a file it then delivers the file's format description with LogPos 0.
// Their RawData is built by the reader (with a CRC32 when the file has
// checksums) and need not equal the server's bytes byte for byte. It sends no
// heartbeats, and no fake GTID list event at a GTID start (MariaDB sends one).
//
// Subdirectories: the reader follows the relay's subdirectories in index
// order. The first event it delivers from a newer subdirectory (the upstream
// server changed, e.g. after a master switch) is the fake rotate of that
// subdirectory's first file; from that event on SubDir and RelayPos name the
// new subdirectory, so a consumer that checks SubDir at each fake rotate tells
// a new server from a replay. In a subdirectory entered that way, a
// transaction whose GTID the reader's GTID set already holds (the new server's
// first file often repeats what was read from the old one) is skipped whole.
//
// Tail: with WithRelayTail the reader never reads past the relay's durable
// end and waits on the relay's notification channel; without it, it reads
// what the files hold and polls (WithPollInterval) at the end, and an event
// cut short at the end of the last file is waited for, not an error.
//
// Damage (a checksum mismatch, a header that cannot be right, an event that
// does not decode, an event cut short in a file that is not the one being
// written) is a terminal error wrapping a *RelayError with ErrRelayCorrupt
// that names the file and offset; nothing is ever skipped.
//
// Purge: with WithRelayRegistry the reader holds back the relay's purge from
// the oldest position it still needs, moved forward by Ack (or WithAutoAck).
//
// GetEvent must not be called concurrently; Close, Ack and Source may be
// called from any goroutine. The reader starts no goroutine.
type LocalReader struct {
	dir   string
	cfg   localConfig
	start LocalStart

	done      chan struct{}
	closeOnce sync.Once

	// mu is held by GetEvent for its whole call and by Close while it
	// tears down, so Close waits for a GetEvent in progress to return.
	mu     sync.Mutex
	closed bool
	err    error // terminal error
	opened bool

	tracker  *txnTracker
	skipping bool // skip transactions whose GTID the tracked set holds
	inSkip   bool // inside a skipped transaction

	// The file being read.
	sub      string // subdirectory name
	file     string // binlog file name
	f        *os.File
	off      int64 // offset of the next event
	hdrDone  bool  // the magic and the format description have been read
	startOff int64 // where events are read from once the header is read
	crc      bool  // events carry a CRC32
	serverID uint32
	// postHeader is the format description's post-header lengths: a
	// copy, never a slice of buf (which later reads overwrite).
	postHeader []byte
	rotateTo   string // file named by a real rotate read in this file
	stuck      int    // bytes available at off when the last read gave up
	// midStart is true from a start in the middle of a file until its first
	// event has been read: damage there means a bad start offset.
	midStart    bool
	sawTableMap bool

	parser *replication.BinlogParser
	buf    []byte
	bufOff int64 // file offset of buf[0]
	bufLen int

	// Transaction_payload events: the decoder, the file's format
	// description (a copy) and the parser of the events a payload holds
	// (made from it, checksums off; nil until needed).
	payload payloadDecoder
	fdeRaw  []byte
	inner   *replication.BinlogParser

	// Relay tail (WithRelayTail): the durable end last seen, its channel,
	// and the read limit in the current file it implies (-1: none).
	tailEnd    RelayPos
	tailCh     <-chan struct{}
	limit      int64
	pending    []*Event // artificial events to deliver before reading on
	delivered  Position
	relayPos   RelayPos
	lastAutoAt RelayPos

	ackMu sync.Mutex // guards lease
	lease ReaderLease
}

// LocalStart is where a LocalReader begins. Build it with StartAtPosition,
// StartAtGTID, StartAtRelayPos or StartAtDMPos; the zero LocalStart starts
// at the oldest event the relay holds.
type LocalStart struct {
	subDir string   // full subdirectory name (StartAtRelayPos)
	dmName string   // DM-style name (StartAtDMPos)
	pos    Position // file, offset and/or GTID set
}

// StartAtPosition starts at an upstream position, with the meaning
// NewRemoteReader gives it:
//   - Name set: that file and offset (an Offset below 4 means 4). A GTIDSet
//     given with it is the set executed there and is kept up to date in each
//     event's Pos. The file is looked for in the subdirectories from the
//     newest to the oldest; when the position has a GTID set, a subdirectory
//     whose copy of the file starts with GTIDs outside that set is passed
//     over (it is another server's file of the same name). Without a GTID
//     set, a name found in more than one subdirectory is ambiguous and
//     refused with ErrBadPosition: use StartAtRelayPos or StartAtDMPos then.
//   - Name empty, GTIDSet set: as StartAtGTID.
//   - the zero Position: from the oldest event the relay holds.
func StartAtPosition(p Position) LocalStart { return LocalStart{pos: p} }

// StartAtGTID starts at the first transaction not in set: the reader opens
// the newest relay file whose starting set (MariaDB GTID list, MySQL
// previous GTIDs) the set contains, searching subdirectories from the newest,
// and skips every transaction the set already holds. set must be a
// *mysql.MariadbGTIDSet or *mysql.MysqlGTIDSet.
func StartAtGTID(set mysql.GTIDSet) LocalStart {
	return LocalStart{pos: Position{Flavor: flavorOf(set), GTIDSet: set}}
}

// StartAtRelayPos starts at a place in one relay subdirectory. executed, if
// not nil, is the GTID set executed at that place.
func StartAtRelayPos(p RelayPos, executed mysql.GTIDSet) LocalStart {
	return LocalStart{subDir: p.SubDir, pos: withSet(Position{Name: p.Name, Offset: p.Offset}, executed)}
}

// StartAtDMPos starts at DM's form of a relay position: a file named as
// "mysql-bin|000002.000123" (binlog base name, subdirectory sequence, file
// sequence; see DMPosition) and an offset in it. executed, if not nil, is the
// GTID set executed there.
func StartAtDMPos(dmName string, offset uint64, executed mysql.GTIDSet) LocalStart {
	return LocalStart{dmName: dmName, pos: withSet(Position{Offset: offset}, executed)}
}

func withSet(p Position, set mysql.GTIDSet) Position {
	if set != nil {
		p.Flavor, p.GTIDSet = flavorOf(set), set
	}
	return p
}

// String describes the start for logs and errors.
func (s LocalStart) String() string {
	switch {
	case s.subDir != "":
		return s.subDir + "/" + s.pos.String()
	case s.dmName != "":
		p := s.pos
		p.Name = s.dmName
		return p.String()
	case s.pos.IsZero():
		return "oldest relay event"
	}
	return s.pos.String()
}

// validate checks the start, and resolves a DM name's file part.
func (s LocalStart) validate() error {
	p := s.pos
	if s.dmName != "" {
		_, name, err := ParseDMPosition(s.dmName)
		if err != nil {
			return err
		}
		p.Name = name
	}
	if s.subDir != "" {
		if _, _, err := ParseSubDirName(s.subDir); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidPosition, err)
		}
		if s.pos.Name == "" {
			return fmt.Errorf("%w: relay position in %s without a file name", ErrInvalidPosition, s.subDir)
		}
	}
	if s.pos.GTIDSet != nil && s.pos.Flavor == "" {
		return fmt.Errorf("%w: GTID set of unknown type %T", ErrInvalidPosition, s.pos.GTIDSet)
	}
	return p.Validate()
}

// LocalOption configures a LocalReader.
type LocalOption interface{ applyLocal(*localConfig) }

type localOptionFunc func(*localConfig)

func (f localOptionFunc) applyLocal(c *localConfig) { f(c) }

type localConfig struct {
	logger   *slog.Logger
	tail     RelayTail
	registry RelayRegistry
	regName  string
	regSet   bool
	follow   bool
	poll     time.Duration
	autoAck  bool
	bufSize  int
}

func defaultLocalConfig() localConfig {
	return localConfig{
		logger:  slog.New(slog.DiscardHandler),
		follow:  true,
		poll:    100 * time.Millisecond,
		bufSize: 256 << 10,
	}
}

func (c *localConfig) validate() error {
	switch {
	case c.poll <= 0:
		return fmt.Errorf("poll interval %s must be positive", c.poll)
	case c.regSet && c.registry == nil:
		return errors.New("WithRelayRegistry: nil registry")
	case c.regSet && c.regName == "":
		return errors.New("WithRelayRegistry: empty reader name")
	case c.autoAck && c.registry == nil:
		return errors.New("WithAutoAck needs WithRelayRegistry")
	}
	return nil
}

// WithLocalLogger sets the logger. Default: discard.
func WithLocalLogger(l *slog.Logger) LocalOption {
	return localOptionFunc(func(c *localConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithRelayTail makes the reader follow a live Relay in the same process: it
// reads only what tail reports as durably written and waits on its channel
// at the end, without polling. Default: none; the reader reads what the
// files hold and polls at the end (see WithPollInterval).
func WithRelayTail(tail RelayTail) LocalOption {
	return localOptionFunc(func(c *localConfig) { c.tail = tail })
}

// WithRelayRegistry registers the reader with reg under name, so that the
// relay purges nothing the reader still needs. The reader registers when it
// opens the relay (at the first GetEvent), holding everything from the
// relay's oldest file until its start is found, then from its start; it
// moves forward when the consumer calls Ack (or by itself with WithAutoAck),
// and Close releases the registration. Default: not registered.
func WithRelayRegistry(reg RelayRegistry, name string) LocalOption {
	return localOptionFunc(func(c *localConfig) { c.registry, c.regName, c.regSet = reg, name, true })
}

// WithAutoAck makes the reader advance its registration by itself at each
// transaction end it delivers (once per file), instead of waiting for Ack.
// That lets the relay purge files the consumer may need again if it restarts
// from an older checkpoint; use it only when the consumer does not restart
// from behind what it has read. Requires WithRelayRegistry. Default false.
func WithAutoAck(on bool) LocalOption {
	return localOptionFunc(func(c *localConfig) { c.autoAck = on })
}

// WithFollow sets whether the reader waits for new events at the end of the
// relay (true) or returns ErrEndOfStream there (false). Default true.
func WithFollow(follow bool) LocalOption {
	return localOptionFunc(func(c *localConfig) { c.follow = follow })
}

// WithPollInterval sets how often a reader without a RelayTail looks for new
// data at the end of the relay. Default 100ms.
func WithPollInterval(d time.Duration) LocalOption {
	return localOptionFunc(func(c *localConfig) { c.poll = d })
}

// NewLocalReader returns a reader of the relay directory dir from start. It
// only checks its arguments; the relay is opened at the first GetEvent,
// which fails (terminally) when the start cannot be served:
// ErrBinlogPurged when the start's file or subdirectory is not in the relay,
// ErrGTIDNotServable when no relay file starts within a GTID start's set,
// ErrBadPosition when the offset is past the end of a finished file or not
// at an event boundary, or the file name is ambiguous. While the relay holds
// nothing yet, a following reader waits for it.
func NewLocalReader(dir string, start LocalStart, opts ...LocalOption) (*LocalReader, error) {
	cfg := defaultLocalConfig()
	for _, o := range opts {
		o.applyLocal(&cfg)
	}
	if dir == "" {
		return nil, errors.New("streamer: local reader: empty relay directory")
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("streamer: local reader for %s: %w", dir, err)
	}
	if err := start.validate(); err != nil {
		return nil, fmt.Errorf("streamer: local reader for %s: start: %w", dir, err)
	}
	start.pos = start.pos.Clone()
	if start.pos.Offset < 4 && (start.pos.Name != "" || start.dmName != "") {
		start.pos.Offset = 4
	}
	r := &LocalReader{
		dir:     dir,
		cfg:     cfg,
		start:   start,
		done:    make(chan struct{}),
		tracker: newTxnTracker(start.pos.Flavor, start.pos.GTIDSet),
		parser:  newDecodeParser(start.pos.Flavor),
		limit:   -1,
	}
	r.skipping = start.pos.Name == "" && start.dmName == "" && start.pos.GTIDSet != nil
	r.delivered = Position{Flavor: start.pos.Flavor, GTIDSet: start.pos.GTIDSet}
	return r, nil
}

// newDecodeParser returns a parser that decodes events exactly as the
// RemoteReader's BinlogSyncer does: applyDecodeSettings fills a syncer
// config, and its decode fields are copied the way go-mysql's
// NewBinlogSyncer copies them. Checksums are verified by the caller.
func newDecodeParser(flavor string) *replication.BinlogParser {
	var c replication.BinlogSyncerConfig
	applyDecodeSettings(&c)
	p := replication.NewBinlogParser()
	if flavor == "" {
		flavor = FlavorMySQL
	}
	p.SetFlavor(flavor)
	p.SetRawMode(c.RawModeEnabled)
	p.SetParseTime(c.ParseTime)
	p.SetTimestampStringLocation(c.TimestampStringLocation)
	p.SetUseDecimal(c.UseDecimal)
	p.SetUseFloatWithTrailingZero(c.UseFloatWithTrailingZero)
	p.SetRenderJSONAsMySQLText(c.RenderJSONAsMySQLText)
	p.SetPayloadDecoderConcurrency(c.PayloadDecoderConcurrency)
	p.SetRowsEventDecodeFunc(guardRowsDecode(c.RowsEventDecodeFunc))
	p.SetTableMapOptionalMetaDecodeFunc(c.TableMapOptionalMetaDecodeFunc)
	return p
}

// guardRowsDecode decodes a rows event as go-mysql does (RowsEvent.Decode,
// or the configured hook), after a check go-mysql lacks: a row image that
// selects no column makes RowsEvent.DecodeData loop forever, appending empty
// rows. Only damaged data holds such an event; it is refused.
func guardRowsDecode(inner func(*replication.RowsEvent, []byte) error) func(*replication.RowsEvent, []byte) error {
	return func(e *replication.RowsEvent, data []byte) error {
		pos, err := e.DecodeHeader(data)
		if err != nil {
			return err
		}
		if e.ColumnCount > maxColumns {
			// decodeImage allocates a slot per column for every row.
			return fmt.Errorf("rows event with %d columns", e.ColumnCount)
		}
		if pos < len(data) && (!anyBit(e.ColumnBitmap1, e.ColumnCount) || e.ColumnBitmap2 != nil && !anyBit(e.ColumnBitmap2, e.ColumnCount)) {
			return errors.New("rows event image selects no column")
		}
		if inner != nil {
			return inner(e, data)
		}
		return e.DecodeData(pos, data)
	}
}

// anyBit reports whether one of the first n bits of bitmap is set.
func anyBit(bitmap []byte, n uint64) bool {
	for i, b := range bitmap {
		if uint64(i)*8 >= n {
			break
		}
		if rest := n - uint64(i)*8; rest < 8 {
			b &= byte(1<<rest) - 1
		}
		if b != 0 {
			return true
		}
	}
	return false
}

// Source is the relay directory, as it appears in errors.
func (r *LocalReader) Source() string { return r.dir }

// Position is the position after the last event delivered. Like GetEvent,
// it must not be called concurrently with GetEvent.
func (r *LocalReader) Position() Position { return r.delivered }

// RelayPos is the relay position after the last event delivered: its
// subdirectory, and the file and offset of Position. Pass it to Ack once the
// consumer no longer needs what comes before. Like GetEvent, it must not be
// called concurrently with GetEvent.
func (r *LocalReader) RelayPos() RelayPos { return r.relayPos }

// SubDir is the relay subdirectory of the last event delivered ("" before
// the first). It changes at the fake rotate that opens a newer subdirectory.
// Like GetEvent, it must not be called concurrently with GetEvent.
func (r *LocalReader) SubDir() string { return r.relayPos.SubDir }

// Ack tells the relay (WithRelayRegistry) that the consumer no longer needs
// anything before pos, typically a RelayPos taken after a transaction end the
// consumer has checkpointed. Positions behind an earlier Ack are ignored.
// Without a registry it does nothing. Safe for concurrent use.
func (r *LocalReader) Ack(pos RelayPos) {
	r.ackMu.Lock()
	defer r.ackMu.Unlock()
	if r.lease != nil {
		r.lease.Advance(pos)
	}
}

// GetEvent returns the next event. See Reader for the contract.
func (r *LocalReader) GetEvent(ctx context.Context) (*Event, error) {
	select {
	case <-r.done:
		return nil, r.closedErr()
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, r.closedErr()
	}
	if r.err != nil {
		return nil, r.err
	}
	if !r.opened {
		if err := r.open(ctx); err != nil {
			return nil, r.fail(err)
		}
	}
	for {
		if len(r.pending) > 0 {
			ev := r.pending[0]
			r.pending[0] = nil
			r.pending = r.pending[1:]
			r.setDelivered(ev)
			return ev, nil
		}
		ev, err := r.step(ctx)
		if err != nil {
			return nil, r.fail(err)
		}
		if ev != nil {
			return ev, nil
		}
	}
}

func (r *LocalReader) setDelivered(ev *Event) {
	r.delivered = ev.Pos
	r.relayPos = RelayPos{SubDir: r.sub, Name: ev.Pos.Name, Offset: ev.Pos.Offset}
	if ev.TxnEnd && r.cfg.autoAck && (r.relayPos.SubDir != r.lastAutoAt.SubDir || r.relayPos.Name != r.lastAutoAt.Name) {
		r.lastAutoAt = r.relayPos
		r.Ack(r.relayPos)
	}
}

// Close stops the reader: a GetEvent waiting for data returns ErrClosed,
// Close waits for it to return, then closes the file and releases the
// registration. Safe to call from any goroutine, more than once.
func (r *LocalReader) Close() error {
	r.closeOnce.Do(func() { close(r.done) })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.f != nil {
		err = r.f.Close()
		r.f = nil
	}
	r.ackMu.Lock()
	if r.lease != nil {
		r.lease.Release()
		r.lease = nil
	}
	r.ackMu.Unlock()
	return err
}

func (r *LocalReader) closedErr() error {
	return &Error{Source: r.dir, Op: "read", Pos: r.delivered, Kind: ErrClosed}
}

// fail turns err into what GetEvent returns: a context error as is (the
// reader stays usable), anything else as a terminal *Error.
func (r *LocalReader) fail(err error) error {
	var own *Error
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if !errors.As(err, &own) {
			return err
		}
	}
	if !errors.As(err, &own) {
		own = &Error{Source: r.dir, Op: "read", Pos: r.delivered, Err: err}
		// Damage is classified: a consumer must not take it for a
		// fault that trying again may cure.
		var re *RelayError
		if errors.As(err, &re) {
			own.Kind = re.Kind
		}
	}
	if errors.Is(own, ErrClosed) {
		return own
	}
	r.err = own
	if !errors.Is(own, ErrEndOfStream) {
		r.cfg.logger.Error("relay reader stopped", slog.String("relay-dir", r.dir), slog.Any("error", own))
	}
	return own
}

func (r *LocalReader) newErr(op string, kind, cause error) *Error {
	return &Error{Source: r.dir, Op: op, Pos: r.delivered, Kind: kind, Err: cause}
}

func (r *LocalReader) corrupt(off int64, format string, args ...any) error {
	return corruptf(filepath.Join(r.dir, r.sub, r.file), off, format, args...)
}

// errNotReady means the relay does not hold the start yet: wait for it.
var errNotReady = errors.New("relay holds nothing to start from yet")

// open registers the reader, finds the start and enters its file. It may
// wait (and return a context error, to be called again).
func (r *LocalReader) open(ctx context.Context) error {
	if r.cfg.registry != nil && r.lease == nil {
		oldest, err := r.oldestRelayPos()
		if err != nil {
			return r.newErr("open", nil, err)
		}
		lease, err := r.cfg.registry.RegisterReader(r.cfg.regName, oldest)
		if err != nil {
			return r.newErr("register", nil, err)
		}
		r.ackMu.Lock()
		r.lease = lease
		r.ackMu.Unlock()
	}
	if r.cfg.tail != nil {
		r.refreshTail()
	}
	for {
		sub, name, off, err := r.resolveStart()
		if errors.Is(err, errNotReady) {
			if !r.cfg.follow {
				return r.newErr("open", ErrEndOfStream, nil)
			}
			if err := r.wait(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		r.ackMu.Lock()
		if r.lease != nil {
			r.lease.Advance(RelayPos{SubDir: sub, Name: name, Offset: uint64(off)})
		}
		r.ackMu.Unlock()
		r.cfg.logger.Info("reading relay log", slog.String("relay-dir", r.dir), slog.String("from", r.start.String()),
			slog.String("subdir", sub), slog.String("file", name), slog.Int64("offset", off))
		if err := r.enterFile(sub, name, off); err != nil {
			return err
		}
		if r.start.pos.Name != "" || r.start.dmName != "" || r.start.pos.GTIDSet == nil {
			r.delivered = r.posAt(name, uint64(off))
		}
		r.midStart = off > 4
		r.opened = true
		return nil
	}
}

// oldestRelayPos is the first file of the first subdirectory, or the zero
// RelayPos (before everything) when the relay is empty.
func (r *LocalReader) oldestRelayPos() (RelayPos, error) {
	subs, err := ReadRelayIndex(r.dir)
	if err != nil || len(subs) == 0 {
		return RelayPos{}, err
	}
	files, err := RelayFiles(filepath.Join(r.dir, subs[0]))
	if err != nil || len(files) == 0 {
		return RelayPos{SubDir: subs[0]}, nil
	}
	return RelayPos{SubDir: subs[0], Name: files[0], Offset: 4}, nil
}

// resolveStart finds the subdirectory, file and offset to start from.
func (r *LocalReader) resolveStart() (sub, name string, off int64, err error) {
	subs, err := ReadRelayIndex(r.dir)
	if err != nil {
		return "", "", 0, r.newErr("open", nil, err)
	}
	if len(subs) == 0 {
		return "", "", 0, errNotReady
	}
	s := r.start
	off = int64(min(s.pos.Offset, math.MaxInt64))
	switch {
	case s.subDir != "" || s.dmName != "":
		sub, name = s.subDir, s.pos.Name
		if s.dmName != "" {
			seq, file, _ := ParseDMPosition(s.dmName)
			name = file
			for _, c := range subs {
				if _, n, err := ParseSubDirName(c); err == nil && n == seq {
					sub = c
				}
			}
			if sub == "" {
				return "", "", 0, r.newErr("open", ErrBinlogPurged,
					fmt.Errorf("no relay subdirectory with sequence %d for %s", seq, s.dmName))
			}
		} else if !slices.Contains(subs, sub) {
			return "", "", 0, r.newErr("open", ErrBinlogPurged, fmt.Errorf("relay subdirectory %s is not in the index", sub))
		}
		if err := r.checkFileThere(subs, sub, name); err != nil {
			return "", "", 0, err
		}
		return sub, name, off, nil
	case s.pos.Name != "":
		sub, err := r.findFile(subs, s.pos)
		return sub, s.pos.Name, off, err
	case s.pos.GTIDSet != nil:
		sub, name, err := r.findGTIDStart(subs, s.pos.GTIDSet)
		return sub, name, 4, err
	}
	files, err := RelayFiles(filepath.Join(r.dir, subs[0]))
	if err != nil {
		return "", "", 0, r.newErr("open", nil, err)
	}
	if len(files) == 0 {
		return "", "", 0, errNotReady
	}
	return subs[0], files[0], 4, nil
}

// checkFileThere reports a missing start file: not there yet (the next file
// of the newest subdirectory, about to be created) or gone.
func (r *LocalReader) checkFileThere(subs []string, sub, name string) error {
	files, err := RelayFiles(filepath.Join(r.dir, sub))
	if err != nil {
		return r.newErr("open", nil, err)
	}
	if slices.Contains(files, name) {
		return nil
	}
	if sub == subs[len(subs)-1] && (len(files) == 0 || compareNames(name, files[len(files)-1]) > 0) {
		return errNotReady
	}
	return r.newErr("open", ErrBinlogPurged, fmt.Errorf("relay file %s/%s not found", sub, name))
}

// findFile looks for a start file by name, newest subdirectory first (see
// StartAtPosition).
func (r *LocalReader) findFile(subs []string, p Position) (string, error) {
	var cands []string
	for i := len(subs) - 1; i >= 0; i-- {
		if st, err := os.Stat(filepath.Join(r.dir, subs[i], p.Name)); err == nil && st.Mode().IsRegular() {
			cands = append(cands, subs[i])
		}
	}
	if len(cands) == 0 {
		if err := r.checkFileThere(subs, subs[len(subs)-1], p.Name); err != nil {
			return "", err
		}
		return subs[len(subs)-1], nil
	}
	if p.GTIDSet == nil {
		if len(cands) > 1 {
			return "", r.newErr("open", ErrBadPosition,
				fmt.Errorf("%s is in several relay subdirectories (%s): start with a relay or DM position, or a GTID set", p.Name, strings.Join(cands, ", ")))
		}
		return cands[0], nil
	}
	for _, sub := range cands {
		set, ok, err := fileStartSet(filepath.Join(r.dir, sub, p.Name))
		if err != nil {
			return "", r.newErr("open", nil, err)
		}
		if ok && p.GTIDSet.Contain(set) {
			return sub, nil
		}
	}
	return "", r.newErr("open", ErrBadPosition,
		fmt.Errorf("no copy of %s in the relay starts within the GTID set %s", p.Name, formatGTIDSet(p.GTIDSet)))
}

// findGTIDStart picks the newest relay file whose starting GTID set want
// contains.
func (r *LocalReader) findGTIDStart(subs []string, want mysql.GTIDSet) (sub, name string, err error) {
	found := false
	for i := len(subs) - 1; i >= 0; i-- {
		files, err := RelayFiles(filepath.Join(r.dir, subs[i]))
		if err != nil {
			return "", "", r.newErr("open", nil, err)
		}
		for j := len(files) - 1; j >= 0; j-- {
			found = true
			set, ok, err := fileStartSet(filepath.Join(r.dir, subs[i], files[j]))
			if err != nil {
				return "", "", r.newErr("open", nil, err)
			}
			if ok && want.Contain(set) {
				return subs[i], files[j], nil
			}
		}
	}
	if !found {
		return "", "", errNotReady
	}
	return "", "", r.newErr("open", ErrGTIDNotServable,
		fmt.Errorf("no relay file starts within %s (purged, or another server's GTIDs)", formatGTIDSet(want)))
}

// fileStartSet reads the GTID set a binlog file starts with: its MariaDB GTID
// list or MySQL previous-GTIDs event. ok is false when the file does not
// (yet) have one.
func fileStartSet(path string) (set mysql.GTIDSet, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		return nil, false, nil
	}
	if string(magic[:]) != binlogMagic {
		return nil, false, corruptf(path, 0, "not a binlog file: header %q", magic[:])
	}
	p := newDecodeParser("")
	off := int64(4)
	crc := false
	var postHeader []byte
	for i := 0; i < 8; i++ {
		var hdr [eventHeaderSize]byte
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return nil, false, nil // not written yet
		}
		size := binary.LittleEndian.Uint32(hdr[9:13])
		if size < eventHeaderSize || size > maxEventSize {
			return nil, false, corruptf(path, off, "event header claims %d bytes", size)
		}
		if st, err := f.Stat(); err != nil || off+int64(size) > st.Size() {
			return nil, false, nil // not written yet, or damaged: the reader will tell
		}
		raw := make([]byte, size)
		if _, err := f.ReadAt(raw, off); err != nil {
			return nil, false, nil
		}
		t := replication.EventType(raw[4])
		if i == 0 {
			fde, fraw, err := checkFDE(raw)
			if err != nil {
				return nil, false, corruptf(path, off, "%w", err)
			}
			crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
			if _, err := parseEvent(p, fraw, crc, fde.EventTypeHeaderLengths); err != nil {
				return nil, false, corruptf(path, off, "%w", err)
			}
			postHeader = fde.EventTypeHeaderLengths
		} else {
			if crc && !crcOK(raw) {
				return nil, false, corruptf(path, off, "%s: %w", t, ErrChecksum)
			}
			switch t {
			case replication.MARIADB_GTID_LIST_EVENT, replication.PREVIOUS_GTIDS_EVENT:
				ev, err := parseEvent(p, raw, crc, postHeader)
				if err != nil {
					return nil, false, corruptf(path, off, "%w", err)
				}
				return startSetOf(ev)
			case replication.GTID_EVENT, replication.ANONYMOUS_GTID_EVENT, replication.GTID_TAGGED_LOG_EVENT,
				replication.MARIADB_GTID_EVENT, replication.QUERY_EVENT, replication.XID_EVENT, replication.ROTATE_EVENT:
				return nil, false, nil // transactions began without a starting set
			}
		}
		off += int64(size)
	}
	return nil, false, nil
}

// startSetOf turns a GTID list or previous-GTIDs event into a set.
func startSetOf(ev *replication.BinlogEvent) (mysql.GTIDSet, bool, error) {
	switch e := ev.Event.(type) {
	case *replication.MariadbGTIDListEvent:
		s := &mysql.MariadbGTIDSet{Sets: make(map[uint32]*mysql.MariadbGTID)}
		for i := range e.GTIDs {
			if err := s.AddSet(&e.GTIDs[i]); err != nil {
				return nil, false, err
			}
		}
		return s, true, nil
	case *replication.PreviousGTIDsEvent:
		s, err := mysql.ParseMysqlGTIDSet(e.GTIDSets)
		if err != nil {
			return nil, false, err
		}
		return s, true, nil
	}
	return nil, false, nil
}

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

// process decodes a verified event, updates the stream's position and GTID
// state, and returns the event unless it is skipped.
func (r *LocalReader) process(raw []byte) (*Event, error) {
	start := r.off
	end := start + int64(len(raw))
	t := replication.EventType(raw[4])
	if t == replication.TRANSACTION_PAYLOAD_EVENT {
		return r.processPayload(raw)
	}
	be, err := parseEvent(r.parser, raw, r.crc && t != replication.FORMAT_DESCRIPTION_EVENT, r.postHeader)
	if err != nil {
		if r.midStart && !r.sawTableMap && isRowsEvent(t) {
			return nil, r.newErr("open", ErrBadPosition, fmt.Errorf("%s/%s:%d is inside a transaction, after its table map: %v", r.sub, r.file, start, err))
		}
		return nil, r.badEvent(start, "%w", err)
	}
	if fde, ok := be.Event.(*replication.FormatDescriptionEvent); ok {
		r.crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
		// A copy: fde's lengths are a slice of the event's RawData,
		// which belongs to the consumer.
		r.postHeader = slices.Clone(fde.EventTypeHeaderLengths)
		r.fdeRaw, r.inner = slices.Clone(raw), nil
	} else if t == replication.TABLE_MAP_EVENT {
		r.sawTableMap = true
	}
	h := be.Header
	artificial := isArtificial(h)
	if !artificial && h.LogPos != uint32(end) {
		return nil, r.badEvent(start, "%s says it ends at %d, but it ends at %d", t, h.LogPos, end)
	}
	r.off = end
	r.midStart = false

	var next Position
	switch rot, ok := be.Event.(*replication.RotateEvent); {
	case ok:
		next.Name, next.Offset = string(rot.NextLogName), rot.Position
		if !artificial {
			if compareNames(next.Name, r.file) <= 0 || validateName(next.Name) != nil {
				return nil, r.corrupt(start, "rotate from %s to %q", r.file, next.Name)
			}
			r.rotateTo = next.Name
		}
	case artificial:
		next = r.delivered
	default:
		next.Name, next.Offset = r.file, uint64(end)
	}
	ev, _, err := r.observe(be, next, artificial, start)
	if ev != nil {
		r.setDelivered(ev)
	}
	return ev, err
}

// observe updates the stream's GTID state with be, whose position after it
// is next, and returns it as an Event, or nil when it is skipped (a
// transaction the GTID set holds already). start is where its bytes begin,
// for errors. txnEnd reports whether be ends a transaction, skipped or not.
func (r *LocalReader) observe(be *replication.BinlogEvent, next Position, artificial bool, start int64) (ev *Event, txnEnd bool, err error) {
	gtid := ""
	if !artificial {
		wasIn, before := r.tracker.inTxn, r.tracker.gset
		if gtid, txnEnd, err = observeSafe(r.tracker, be); err != nil {
			return nil, false, r.corrupt(start, "%s: %w", be.Header.EventType, err)
		}
		if r.skipping && !wasIn && r.tracker.inTxn && gtid != "" && before != nil && containsGTID(before, be) {
			// The commit must leave the set alone: forget the GTID.
			r.inSkip = true
			r.tracker.currentGTID = ""
		}
	}
	if r.inSkip {
		if txnEnd || !r.tracker.inTxn {
			r.inSkip = false
		}
		return nil, txnEnd, nil
	}
	next.GTIDSet, next.Flavor = r.tracker.gset, r.tracker.flavor
	if next.GTIDSet == nil {
		next.Flavor = ""
	}
	return &Event{BinlogEvent: be, Pos: next, GTID: gtid, TxnEnd: txnEnd}, txnEnd, nil
}

// processPayload delivers the events a Transaction_payload event holds in
// its place (the first now, the others queued), each with its position (see
// payload.go). They are decoded by a parser of their own: go-mysql's would
// inflate the payload without bounds.
func (r *LocalReader) processPayload(raw []byte) (*Event, error) {
	start := r.off
	end := start + int64(len(raw))
	var h replication.EventHeader
	if err := h.Decode(raw); err != nil {
		return nil, r.badEvent(start, "%w", err)
	}
	if h.LogPos != uint32(end) {
		return nil, r.badEvent(start, "%s says it ends at %d, but it ends at %d", h.EventType, h.LogPos, end)
	}
	body := raw[eventHeaderSize:]
	if r.crc {
		body = body[:len(body)-checksumSize]
	}
	events, err := r.payload.decode(body, r.postHeader)
	if err != nil {
		return nil, r.badEvent(start, "%s: %w", h.EventType, err)
	}
	// The events escape to the consumer: one copy of them all.
	events = slices.Clone(events)
	if r.inner == nil {
		if r.inner, err = r.innerParser(); err != nil {
			return nil, r.corrupt(start, "%w", err)
		}
	}
	r.off = end
	r.midStart = false
	var first *Event
	err = innerEvents(events, func(ev []byte, last bool) error {
		be, err := parseEvent(r.inner, ev, false, r.postHeader)
		if err != nil {
			return err
		}
		next := Position{Name: r.file, Offset: uint64(start)}
		be.Header.LogPos = uint32(start)
		if last {
			next.Offset, be.Header.LogPos = uint64(end), h.LogPos
		}
		e, txnEnd, err := r.observe(be, next, false, start)
		if err != nil {
			return err
		}
		if err := checkPayloadTxn(be.Header.EventType, txnEnd, last); err != nil {
			return err
		}
		if e != nil {
			e.payloadStart = uint64(start)
		}
		switch {
		case e == nil:
		case first == nil:
			first = e
		default:
			r.pending = append(r.pending, e)
		}
		return nil
	})
	if err != nil {
		var re *RelayError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, r.corrupt(start, "%s: %w", h.EventType, err)
	}
	if first != nil {
		r.setDelivered(first)
	}
	return first, nil
}

// innerParser returns a parser for the events a payload holds: decoding as
// the file's, after its format description with checksums off.
func (r *LocalReader) innerParser() (*replication.BinlogParser, error) {
	if len(r.fdeRaw) < eventHeaderSize+checksumSize+1 {
		return nil, errors.New("no format description before a transaction payload")
	}
	p := newDecodeParser(r.tracker.flavor)
	fde := slices.Clone(r.fdeRaw)
	fde[len(fde)-checksumSize-1] = byte(replication.BINLOG_CHECKSUM_ALG_OFF)
	if _, err := parseEvent(p, fde, false, nil); err != nil {
		return nil, err
	}
	return p, nil
}

func observeSafe(t *txnTracker, be *replication.BinlogEvent) (gtid string, txnEnd bool, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("GTID bookkeeping: %v", x)
		}
	}()
	return t.observe(be)
}

func isRowsEvent(t replication.EventType) bool {
	switch t {
	case replication.WRITE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv0,
		replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
		replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
		return true
	}
	return false
}

// containsGTID reports whether set holds the GTID that be (a GTID event)
// announces.
func containsGTID(set mysql.GTIDSet, be *replication.BinlogEvent) bool {
	switch e := be.Event.(type) {
	case *replication.MariadbGTIDEvent:
		s, ok := set.(*mysql.MariadbGTIDSet)
		if !ok {
			return false
		}
		g, ok := s.Sets[e.GTID.DomainID]
		return ok && g.SequenceNumber >= e.GTID.SequenceNumber
	case *replication.GTIDEvent:
		return mysqlSetHas(set, mysqlGTIDString(e.SID, e.Tag, e.GNO))
	case *replication.GtidTaggedLogEvent:
		return mysqlSetHas(set, mysqlGTIDString(e.SID, e.Tag, e.GNO))
	}
	return false
}

func mysqlSetHas(set mysql.GTIDSet, gtid string) bool {
	if gtid == "" {
		return false
	}
	one, err := mysql.ParseMysqlGTIDSet(gtid)
	return err == nil && set.Contain(one)
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

// refreshTail asks the relay for its durable end and reports whether the
// read limit in the current file moved.
func (r *LocalReader) refreshTail() bool {
	r.tailEnd, r.tailCh = r.cfg.tail.Relayed()
	old := r.limit
	r.limit = r.computeLimit()
	return r.limit != old
}

// computeLimit is how far the current file may be read: -1 when the relay's
// durable end is past the file (it is complete), 0 when it is before it.
func (r *LocalReader) computeLimit() int64 {
	if r.cfg.tail == nil {
		return -1
	}
	e := r.tailEnd
	if e.SubDir == r.sub && e.Name == r.file {
		return int64(min(e.Offset, math.MaxInt64))
	}
	if e.Compare(RelayPos{SubDir: r.sub, Name: r.file, Offset: math.MaxUint64}) > 0 {
		return -1
	}
	return 0
}

// atEnd is called when the current file has no whole event left: it moves
// to the next file when the current one is finished, and otherwise waits
// (following) or ends the stream.
func (r *LocalReader) atEnd(ctx context.Context) error {
	sub, name, finished, err := r.nextFile()
	if err != nil {
		return err
	}
	if finished {
		// Bytes may have been added before the next file appeared.
		d, err := r.peek(r.off, r.stuck+1)
		if err != nil {
			return err
		}
		if len(d) > r.stuck {
			return nil
		}
		if err := r.checkEndOfFile(); err != nil {
			return err
		}
		return r.enterFile(sub, name, 4)
	}
	if !r.cfg.follow {
		if err := r.checkStartInFile(); err != nil {
			return err
		}
		return r.newErr("read", ErrEndOfStream, nil)
	}
	return r.wait(ctx)
}

// checkEndOfFile is called at the end of a finished file.
func (r *LocalReader) checkEndOfFile() error {
	if err := r.checkStartInFile(); err != nil {
		return err
	}
	if !r.hdrDone {
		return r.corrupt(r.off, "file ends inside its header (%d bytes)", r.off+int64(r.stuck))
	}
	if r.stuck > 0 {
		return r.badEvent(r.off, "truncated: the file ends %d bytes into an event", r.stuck)
	}
	return nil
}

// checkStartInFile refuses a start offset past the end of the file.
func (r *LocalReader) checkStartInFile() error {
	if !r.midStart || !r.hdrDone || r.stuck > 0 {
		return nil
	}
	st, err := r.f.Stat()
	if err != nil {
		return r.newErr("read", nil, err)
	}
	if r.startOff > st.Size() {
		return r.newErr("open", ErrBadPosition, fmt.Errorf("offset %d is past the end of %s/%s (%d bytes)", r.startOff, r.sub, r.file, st.Size()))
	}
	return nil
}

// nextFile says whether the current file is finished, and which file comes
// next: the file a rotate named, the next file of the subdirectory, or the
// first file of the next subdirectory in the index.
func (r *LocalReader) nextFile() (sub, name string, finished bool, err error) {
	if r.cfg.tail != nil && r.limit != -1 {
		return "", "", false, nil
	}
	files, err := RelayFiles(filepath.Join(r.dir, r.sub))
	if err != nil {
		return "", "", false, r.newErr("read", nil, err)
	}
	if r.rotateTo != "" && slices.Contains(files, r.rotateTo) {
		return r.sub, r.rotateTo, true, nil
	}
	for _, f := range files {
		if compareNames(f, r.file) > 0 {
			if r.rotateTo != "" && f != r.rotateTo {
				return "", "", false, r.corrupt(r.off, "the file rotates to %s, but the next relay file is %s", r.rotateTo, f)
			}
			return r.sub, f, true, nil
		}
	}
	subs, err := ReadRelayIndex(r.dir)
	if err != nil {
		return "", "", false, r.newErr("read", nil, err)
	}
	i := slices.Index(subs, r.sub)
	if i < 0 {
		return "", "", false, r.newErr("read", ErrBinlogPurged, fmt.Errorf("relay subdirectory %s left the index", r.sub))
	}
	if i+1 < len(subs) {
		nf, err := RelayFiles(filepath.Join(r.dir, subs[i+1]))
		if err != nil {
			return "", "", false, r.newErr("read", nil, err)
		}
		if len(nf) > 0 {
			return subs[i+1], nf[0], true, nil
		}
	}
	return "", "", false, nil
}

// wait blocks until the relay may have more: the tail's channel, or the poll
// interval without a tail (or when the tail's relay has stopped and its
// channel stays closed).
func (r *LocalReader) wait(ctx context.Context) error {
	// Read what is past off afresh after the wait: a relay that restarts
	// cuts its file back and writes it again.
	if end := r.off - r.bufOff; end >= 0 && end < int64(r.bufLen) {
		r.bufLen = int(end)
	}
	if r.cfg.tail != nil {
		select {
		case <-r.tailCh:
			// Closed since we looked: the end moved, or the relay has
			// stopped and hands out closed channels. Only the latter
			// falls back to polling.
			old := r.tailEnd
			r.refreshTail()
			if r.tailEnd != old || !isClosed(r.tailCh) {
				return nil
			}
		default:
			select {
			case <-r.tailCh:
			case <-ctx.Done():
				return ctx.Err()
			case <-r.done:
				return r.closedErr()
			}
			r.refreshTail()
			return nil
		}
	}
	t := time.NewTimer(r.cfg.poll)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		return r.closedErr()
	}
	if r.cfg.tail != nil {
		r.refreshTail()
	}
	return nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Limits that hold for any server's binlog, used to refuse damaged events
// before go-mysql allocates what they claim.
const (
	// maxColumns is MySQL's and MariaDB's limit of columns in a table.
	maxColumns = 4096
	// maxZlibRatio bounds zlib's compression ratio (1032:1 at best).
	maxZlibRatio = 1100
)

// checkDecodable refuses an event whose counts or sizes go-mysql would
// trust before checking them against the event: a GTID list's count, the
// uncompressed size of MariaDB's compressed events, the string-value counts
// of a table map's optional metadata. Each would otherwise have go-mysql
// allocate up to gigabytes for a damaged event, which the runtime cannot
// recover from. body is the event without header and checksum.
func checkDecodable(t replication.EventType, body []byte, postHeader []byte) error {
	tableIDSize := 6
	if int(t) >= 1 && int(t) <= len(postHeader) && postHeader[t-1] == 6 {
		tableIDSize = 4
	}
	switch t {
	case replication.MARIADB_GTID_LIST_EVENT:
		if len(body) < 4 {
			return errors.New("GTID list too short")
		}
		if n := uint64(binary.LittleEndian.Uint32(body) & (1<<28 - 1)); 4+16*n > uint64(len(body)) {
			return fmt.Errorf("GTID list claims %d GTIDs in %d bytes", n, len(body))
		}
	case replication.MARIADB_QUERY_COMPRESSED_EVENT:
		// Post-header: thread id 4, time 4, schema length 1, error 2,
		// status length 2; then status, schema, NUL, compressed query.
		if len(body) < 13 {
			return errors.New("query event too short")
		}
		pos := 13 + int(binary.LittleEndian.Uint16(body[11:13])) + int(body[8]) + 1
		if pos > len(body) {
			return errors.New("query event too short")
		}
		return checkCompressed(body[pos:])
	case replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		pos := tableIDSize + 2
		cols, n, ok := lenenc(body, pos)
		if !ok || cols > maxColumns {
			return fmt.Errorf("rows event with %d columns", cols)
		}
		pos += n + int(cols+7)/8
		if t == replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1 {
			pos += int(cols+7) / 8
		}
		if pos > len(body) {
			return errors.New("rows event too short")
		}
		return checkCompressed(body[pos:])
	case replication.TABLE_MAP_EVENT:
		return checkTableMap(body, tableIDSize)
	}
	return nil
}

// checkCompressed checks the declared size of MariaDB's compressed data
// (a header byte whose low 3 bits count the big-endian size bytes that
// follow, then zlib data) against what zlib can expand it to.
func checkCompressed(data []byte) error {
	if len(data) == 0 {
		return errors.New("no compressed data")
	}
	n := int(data[0] & 0x07)
	if 1+n > len(data) {
		return errors.New("compressed data too short")
	}
	var size uint64
	for _, b := range data[1 : 1+n] {
		size = size<<8 | uint64(b)
	}
	if size > uint64(len(data))*maxZlibRatio {
		return fmt.Errorf("%d compressed bytes claim to expand to %d", len(data), size)
	}
	return nil
}

// checkTableMap walks a table map event to its optional metadata and checks
// the counts of ENUM and SET string values against their lengths.
func checkTableMap(body []byte, tableIDSize int) error {
	short := errors.New("table map too short")
	pos := tableIDSize + 2
	for range 2 { // schema, then table: length, name, NUL
		if pos >= len(body) {
			return short
		}
		pos += 1 + int(body[pos]) + 1
	}
	cols, n, ok := lenenc(body, pos)
	if !ok || cols > maxColumns {
		return fmt.Errorf("table map with %d columns", cols)
	}
	pos += n + int(cols)
	meta, n, ok := lenenc(body, pos)
	if !ok || meta > uint64(len(body)) {
		return short
	}
	pos += n + int(meta) + int(cols+7)/8
	if pos > len(body) {
		return short
	}
	opt := body[pos:]
	for p := 0; p < len(opt); {
		typ := opt[p]
		l, n, ok := lenenc(opt, p+1)
		if !ok || l > uint64(len(opt)) || p+1+n+int(l) > len(opt) {
			return errors.New("table map optional metadata too short")
		}
		v := opt[p+1+n : p+1+n+int(l)]
		p += 1 + n + int(l)
		if typ != byte(replication.TABLE_MAP_OPT_META_SET_STR_VALUE) && typ != byte(replication.TABLE_MAP_OPT_META_ENUM_STR_VALUE) {
			continue
		}
		for q := 0; q < len(v); {
			count, n, ok := lenenc(v, q)
			// Every value takes at least its length byte.
			if !ok || count > uint64(len(v)-q-n) {
				return fmt.Errorf("table map claims %d ENUM or SET values in %d bytes", count, len(v)-q)
			}
			q += n
			for range count {
				sl, n, ok := lenenc(v, q)
				if !ok || sl > uint64(len(v)) || q+n+int(sl) > len(v) {
					return errors.New("table map ENUM or SET values too short")
				}
				q += n + int(sl)
			}
		}
	}
	return nil
}

// lenenc reads a MySQL length-encoded integer at b[pos:], reporting false
// when b is too short.
func lenenc(b []byte, pos int) (v uint64, n int, ok bool) {
	if pos >= len(b) {
		return 0, 0, false
	}
	switch c := b[pos]; {
	case c < 0xfb:
		return uint64(c), 1, true
	case c == 0xfb:
		return 0, 1, true // NULL
	case c == 0xfc:
		n = 3
	case c == 0xfd:
		n = 4
	case c == 0xfe:
		n = 9
	default:
		return 0, 0, false
	}
	if pos+n > len(b) {
		return 0, 0, false
	}
	for i := n - 1; i >= 1; i-- {
		v = v<<8 | uint64(b[pos+i])
	}
	return v, n, true
}
