package streamer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	keeper *tableKeeper // WithTableFilter's or SetTableFilter's
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
	keep     func(schema, table string) bool // WithTableFilter's
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
		limit:   -1,
	}
	r.keeper = newTableKeeper(cfg.keep)
	r.parser = newDecodeParser(start.pos.Flavor, r.keeper)
	r.skipping = start.pos.Name == "" && start.dmName == "" && start.pos.GTIDSet != nil
	r.delivered = Position{Flavor: start.pos.Flavor, GTIDSet: start.pos.GTIDSet}
	return r, nil
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
