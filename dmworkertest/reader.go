package dmworkertest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// Reader replays a Binlog's events as a streamer.Reader, decoded by
// go-mysql as the library's own readers decode them (exact decimals,
// TIMESTAMP in UTC), each with the position, GTID, transaction end and
// boundary flags a reader on a MariaDB server gives. At the end of what the
// Binlog holds it waits for more (a live stream), or returns
// streamer.ErrEndOfStream when made with StopAtEnd. GetEvent is not safe
// for concurrent use; Close may be called from any goroutine.
type Reader struct {
	b         *Binlog
	start     streamer.Position
	stopAtEnd bool

	closeOnce sync.Once
	closed    chan struct{}

	parser  *replication.BinlogParser
	file    int // index in b.files of the file being read
	event   int // index in its events of the next event
	started bool
	err     error

	gset    *mysql.MariadbGTIDSet
	inTxn   bool
	gtid    string
	standal bool
}

// ReaderOption configures NewReader.
type ReaderOption func(*Reader)

// StopAtEnd makes GetEvent return streamer.ErrEndOfStream at the end of the
// events, instead of waiting for more: for tests that read events
// themselves (a syncer stops with that error; wait for its checkpoint with
// WaitApplied instead).
func StopAtEnd() ReaderOption { return func(r *Reader) { r.stopAtEnd = true } }

// NewReader returns a reader from start: the zero Position reads from the
// first file's start; a file position from there (as a server does, it
// must be where an event begins); a GTID-only position from the first
// place where every GTID of its set has been executed.
func (b *Binlog) NewReader(start streamer.Position, opts ...ReaderOption) *Reader {
	r := &Reader{b: b, start: start.Clone(), closed: make(chan struct{}), gset: &mysql.MariadbGTIDSet{Sets: map[uint32]*mysql.MariadbGTID{}}}
	for _, o := range opts {
		o(r)
	}
	r.newParser()
	return r
}

// ReaderFactory returns a dmworker.ReaderFactory that opens a Reader on b
// (waiting for more at the end), for dmworker.WithReaderFactory.
func (b *Binlog) ReaderFactory() dmworker.ReaderFactory {
	return func(_ context.Context, start streamer.Position) (streamer.Reader, error) {
		return b.NewReader(start), nil
	}
}

// SyncerOptions returns the options that make a syncer read b with no
// server: b's ReaderFactory and, as its start schema, what Define was
// given. Give the syncer a zero SyncerConfig.Upstream, a Source name and,
// to skip the first file's header events, Start (b.Start()).
func (b *Binlog) SyncerOptions() []dmworker.SyncerOption {
	return []dmworker.SyncerOption{dmworker.WithReaderFactory(b.ReaderFactory()), dmworker.WithStartSchema(b.Schema()...)}
}

func (r *Reader) newParser() {
	p := replication.NewBinlogParser()
	p.SetFlavor(mysql.MariaDBFlavor)
	p.SetVerifyChecksum(true)
	p.SetUseDecimal(true)
	p.SetTimestampStringLocation(time.UTC)
	p.SetRenderJSONAsMySQLText(true)
	r.parser = p
}

// GetEvent returns the next event; see streamer.Reader.
func (r *Reader) GetEvent(ctx context.Context) (*streamer.Event, error) {
	for {
		select {
		case <-r.closed:
			return nil, streamer.ErrClosed
		default:
		}
		if r.err != nil {
			return nil, r.err
		}
		ev, wait, err := r.next()
		if err != nil {
			r.err = err
			return nil, err
		}
		if ev != nil {
			return ev, nil
		}
		if r.stopAtEnd {
			return nil, streamer.ErrEndOfStream
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.closed:
			return nil, streamer.ErrClosed
		}
	}
}

// next decodes the next event to deliver; at the end it returns the
// channel that is closed when events are added.
func (r *Reader) next() (*streamer.Event, <-chan struct{}, error) {
	b := r.b
	for {
		b.mu.Lock()
		if r.file >= len(b.files) || r.event >= len(b.files[r.file].ends) {
			if r.file+1 < len(b.files) {
				r.file, r.event = r.file+1, 0
				b.mu.Unlock()
				continue
			}
			wait := b.changed
			b.mu.Unlock()
			return nil, wait, nil
		}
		f := b.files[r.file]
		begin := uint64(4)
		if r.event > 0 {
			begin = f.ends[r.event-1]
		}
		end := f.ends[r.event]
		data := f.data[begin:end] // never modified once written
		name := f.name
		b.mu.Unlock()
		r.event++

		be, err := r.parser.Parse(data)
		if err != nil {
			return nil, nil, fmt.Errorf("dmworkertest: decode the event at %s:%d: %w", name, begin, err)
		}
		ev := r.observe(be, name, end)
		if !r.started {
			r.started = r.startsAfter(name, begin, ev)
			if !r.started {
				continue
			}
			if r.start.Name == "" && r.start.GTIDSet != nil {
				continue // the boundary itself was read before
			}
		}
		return ev, nil, nil
	}
}

// startsAfter reports whether delivery starts with this event (file
// position) or after it (GTID-only position).
func (r *Reader) startsAfter(name string, begin uint64, ev *streamer.Event) bool {
	switch {
	case r.start.IsZero():
		return true
	case r.start.Name != "":
		return name == r.start.Name && begin >= r.start.Offset ||
			(streamer.Position{Name: name}).Compare(streamer.Position{Name: r.start.Name}) > 0
	}
	// GTID-only: at the first boundary where the set is executed.
	return ev.Boundary && (r.start.GTIDSet.IsEmpty() || ev.Pos.GTIDSet.Contain(r.start.GTIDSet))
}

// observe builds the streamer.Event for be, which ends at end of file
// name, following transactions as a reader does.
func (r *Reader) observe(be *replication.BinlogEvent, name string, end uint64) *streamer.Event {
	ev := &streamer.Event{BinlogEvent: be}
	var txnEnd bool
	switch e := be.Event.(type) {
	case *replication.MariadbGTIDEvent:
		r.inTxn, r.gtid, r.standal = true, e.GTID.String(), e.IsStandalone()
	case *replication.QueryEvent:
		q := string(e.Query)
		switch {
		case q == "BEGIN":
		case q == "COMMIT" || q == "ROLLBACK" || r.standal || !r.inTxn:
			txnEnd = true
		}
	case *replication.XIDEvent:
		txnEnd = true
	}
	if r.inTxn {
		ev.GTID = r.gtid
	}
	if txnEnd && r.inTxn && r.gtid != "" {
		next := r.gset.Clone().(*mysql.MariadbGTIDSet)
		_ = next.Update(r.gtid)
		r.gset = next
	}
	ev.TxnEnd = txnEnd
	ev.Boundary = txnEnd || !r.inTxn
	if txnEnd {
		r.inTxn, r.gtid, r.standal = false, "", false
	}
	ev.Pos = streamer.Position{Name: name, Offset: end, Flavor: streamer.FlavorMariaDB, GTIDSet: r.gset}
	if be.Header.EventType == replication.ROTATE_EVENT {
		rot := be.Event.(*replication.RotateEvent)
		ev.Pos.Name, ev.Pos.Offset = string(rot.NextLogName), rot.Position
	}
	return ev
}

// Close ends the reader; GetEvent then returns streamer.ErrClosed.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	return nil
}

var _ streamer.Reader = (*Reader)(nil)

// WaitApplied waits until the syncer's checkpoint has reached pos (by file
// and offset) and returns nil, or returns the error that stopped its Run,
// or ctx's error. Run must have been started (in another goroutine).
func WaitApplied(ctx context.Context, s *dmworker.Syncer, pos streamer.Position) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		st := s.Status()
		if st.Checkpoint.Compare(pos) >= 0 {
			return nil
		}
		if st.LastError != nil {
			return st.LastError
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dmworkertest: waiting for the checkpoint to reach %s (at %s, read %s): %w", pos, st.Checkpoint, st.Read, ctx.Err())
		case <-t.C:
		}
	}
}
