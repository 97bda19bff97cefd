package dmworker

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
	"golang.org/x/sync/errgroup"

	"github.com/dmworker/dmworker/streamer"
)

// Relay keeps a durable local copy of one upstream's binlog in DM's relay
// directory layout (documented in package streamer): a subdirectory per
// upstream server identity, listed in server-uuid.index, each holding the
// upstream's binlog files byte for byte and a relay.meta.
//
// Run pulls the binlog until ctx ends or Close is called. On start it repairs
// the newest file (a torn trailing event or transaction from a crash is cut
// off; damage before the durable end is an error), brings relay.meta in line
// and resumes at the end of the last whole transaction. When the upstream's
// identity changes (the source now points at another server, or its binlog
// was reset) a new subdirectory is started and the old one kept for readers.
//
// Readers in the same process wait on Relayed instead of polling, and
// register the oldest position they need with RegisterReader so that Purge
// never removes it; OpenReader opens such a reader. A Relay is safe for
// concurrent use. The directory's files are written through a
// streamer.RelayDir.
//
// A directory damaged in a way a crash cannot leave it (a file shorter than
// relay.meta's durable end, a checksum mismatch before it, relay.meta or
// server-uuid.index holding garbage, an index that lost subdirectories
// holding files) is never written over: Run fails with a
// *streamer.RelayError wrapping streamer.ErrRelayCorrupt that names the file
// and offset, and changes nothing. Run may be called again after it failed.
type Relay struct {
	up   streamer.UpstreamConfig
	dir  string
	opts options
	log  *slog.Logger

	runMu   sync.Mutex // held by Run
	mu      sync.Mutex // guards the fields below
	stage   RelayStage
	paused  bool
	resume  chan struct{} // closed by Resume while paused
	pauseCh chan struct{} // closed by Pause while running
	cancel  context.CancelFunc
	closed  bool
	done    chan struct{} // closed when Run returns; nil before Run

	relayed  streamer.RelayPos // durable end
	gtid     mysql.GTIDSet     // executed set at relayed
	notify   chan struct{}     // closed and replaced when relayed moves
	lastErr  error
	leases   map[*relayLease]struct{}
	identity string // upstream identity of the current subdirectory

	rdir       *streamer.RelayDir // the directory's write half
	forceReset bool               // Run only: the upstream's file diverged, start a new subdirectory
	reached    bool               // Run only: the upstream has answered once

	copying chan struct{} // (one slot) serialises copies of older upstream files (see hold)
	// onStart, when set (by a SourceWorker, before Run), is called each time
	// a session has repaired the directory and starts pulling.
	onStart func()
}

// RelayStage is where a Relay is in its life.
type RelayStage string

// Relay stages.
const (
	RelayNew     RelayStage = "New"
	RelayRunning RelayStage = "Running"
	RelayPaused  RelayStage = "Paused"
	RelayStopped RelayStage = "Stopped"
)

// Relay errors.
var (
	// ErrRelayClosed is returned by Run after Close.
	ErrRelayClosed = errors.New("dmworker: relay closed")
	// ErrRelayRunning is returned by a second concurrent Run.
	ErrRelayRunning = errors.New("dmworker: relay already running")
	// ErrRelayLocked means another process holds the relay directory.
	ErrRelayLocked = streamer.ErrRelayLocked
)

// SyncPolicy says when the relay fsyncs what it has written. A position is
// reported as relayed, to readers and in Status, only once it is durable
// under the policy.
type SyncPolicy struct {
	kind     syncKind
	interval time.Duration
}

type syncKind int

const (
	syncInterval syncKind = iota
	syncEachTxn
	syncOnRotate
)

const defaultSyncInterval = 50 * time.Millisecond

// SyncEachTransaction fsyncs at the end of every upstream transaction: the
// least lag for readers, one fsync per transaction.
func SyncEachTransaction() SyncPolicy { return SyncPolicy{kind: syncEachTxn} }

// SyncInterval fsyncs at the end of a transaction when the last fsync is at
// least d old, and otherwise d after the last fsync: a quiet upstream's
// transaction is durable at once, a busy one costs at most one fsync per d.
// This is the default, with d = 50ms: it bounds the fsync rate to 20/s under
// load, adds at most 50ms of relay lag, and on a crash loses nothing that
// cannot be pulled again from the upstream.
func SyncInterval(d time.Duration) SyncPolicy { return SyncPolicy{kind: syncInterval, interval: d} }

// SyncOnRotate fsyncs only when a binlog file is complete (and on pause and
// close): the fewest fsyncs, but readers see a file's data only once the
// upstream has rotated past it.
func SyncOnRotate() SyncPolicy { return SyncPolicy{kind: syncOnRotate} }

func (p SyncPolicy) String() string {
	switch p.kind {
	case syncEachTxn:
		return "each-transaction"
	case syncOnRotate:
		return "on-rotate"
	}
	return fmt.Sprintf("interval(%s)", p.interval)
}

// WithSyncPolicy sets when the relay fsyncs. Default SyncInterval(50ms).
func WithSyncPolicy(p SyncPolicy) Option {
	return Option{"WithSyncPolicy", func(o *options) { o.syncPolicy = p }}
}

// WithRelayStart sets where a relay with an empty directory starts: a file
// and offset, or a GTID set. The relay copies whole files, so it starts at
// the beginning of the file that holds the position (found through the GTID
// set when no file is given). Default: the beginning of the upstream's
// current binlog file.
func WithRelayStart(p streamer.Position) Option {
	return Option{"WithRelayStart", func(o *options) { o.relayStart = p.Clone() }}
}

// WithRemoteOptions passes options to the reader the relay pulls the
// upstream's binlog with, a streamer.RawReader (heartbeat, read timeout,
// backoff, max retry time, dialer, logger), and to the streamer.RemoteReader
// it asks where a GTID set starts. Default: the readers' defaults and the
// relay's logger.
func WithRemoteOptions(opts ...streamer.RemoteOption) Option {
	return Option{"WithRemoteOptions", func(o *options) { o.remoteOpts = append(o.remoteOpts, opts...) }}
}

// WithAutoPurge turns on the relay's purge loop: every interval it removes
// files older than expires (0: no age limit) and, while the file system has
// less than remainSpace bytes free (0: no space limit), the oldest files,
// never one a registered reader needs nor the file being written.
// Default: off.
func WithAutoPurge(interval, expires time.Duration, remainSpace uint64) Option {
	return Option{"WithAutoPurge", func(o *options) {
		o.purgeInterval, o.purgeExpires, o.purgeRemainSpace = interval, expires, remainSpace
	}}
}

// WithRelayFileMode sets the permissions of what the relay creates: its
// binlog files (file), relay.meta, server-uuid.index and the lock file
// (file), and the relay directory and its subdirectories (dir), each
// before the process's umask. Directories and files that exist keep their mode. The relay files
// hold every statement the upstream logged, passwords in CREATE USER ...
// IDENTIFIED BY included: widen them only for a group that may read them.
// The owner must keep read and write (and, on directories, execute)
// permission. Default 0640 and 0750 (streamer.DefaultRelayFileMode and
// DefaultRelayDirMode); a SourceWorker given it applies it to its relays.
func WithRelayFileMode(file, dir os.FileMode) Option {
	return Option{"WithRelayFileMode", func(o *options) { o.relayFileMode, o.relayDirMode = file, dir }}
}

// checkModes validates WithRelayFileMode's modes.
func (o *options) checkModes() error {
	f, d := o.relayFileMode, o.relayDirMode
	switch {
	case f&^os.ModePerm != 0 || d&^os.ModePerm != 0:
		return fmt.Errorf("relay file mode %s and directory mode %s: only permission bits are allowed", f, d)
	case f&0o600 != 0o600:
		return fmt.Errorf("relay file mode %s: the owner needs read and write permission", f)
	case d&0o700 != 0o700:
		return fmt.Errorf("relay directory mode %s: the owner needs read, write and execute permission", d)
	}
	return nil
}

var relayOptions = []string{"WithLogger", "WithSyncPolicy", "WithRelayStart", "WithRemoteOptions", "WithAutoPurge", "WithRelayFileMode"}

// NewRelay returns a relay of up's binlog into dir. It checks its arguments
// but touches neither the directory nor the network: Run does.
func NewRelay(up streamer.UpstreamConfig, dir string, opts ...Option) (*Relay, error) {
	o, err := collect("Relay", relayOptions, opts)
	if err != nil {
		return nil, err
	}
	if err := up.Validate(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("dmworker: relay for %s: a directory is required", up.SourceName())
	}
	switch {
	case o.syncPolicy.kind == syncInterval && o.syncPolicy.interval <= 0:
		return nil, fmt.Errorf("dmworker: relay for %s: sync interval %s must be positive", up.SourceName(), o.syncPolicy.interval)
	case o.set["WithAutoPurge"] && o.purgeInterval <= 0:
		return nil, fmt.Errorf("dmworker: relay for %s: purge interval %s must be positive", up.SourceName(), o.purgeInterval)
	case o.set["WithAutoPurge"] && o.purgeExpires == 0 && o.purgeRemainSpace == 0:
		return nil, fmt.Errorf("dmworker: relay for %s: auto purge needs an age or a free-space limit", up.SourceName())
	case o.purgeExpires < 0:
		return nil, fmt.Errorf("dmworker: relay for %s: purge age %s must not be negative", up.SourceName(), o.purgeExpires)
	}
	if err := o.checkModes(); err != nil {
		return nil, fmt.Errorf("dmworker: relay for %s: %w", up.SourceName(), err)
	}
	if !o.relayStart.IsZero() {
		if err := o.relayStart.Validate(); err != nil {
			return nil, fmt.Errorf("dmworker: relay for %s: start: %w", up.SourceName(), err)
		}
		if o.relayStart.Name == "" && o.relayStart.GTIDSet == nil {
			return nil, fmt.Errorf("dmworker: relay for %s: start needs a file or a GTID set", up.SourceName())
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &Relay{
		up:      up,
		dir:     abs,
		opts:    o,
		log:     o.logger.With(slog.String("component", "relay"), slog.String("source", up.SourceName())),
		stage:   RelayNew,
		notify:  make(chan struct{}),
		leases:  map[*relayLease]struct{}{},
		rdir:    streamer.NewRelayDir(abs, o.relayFileMode, o.relayDirMode, o.logger.With(slog.String("component", "relay"), slog.String("source", up.SourceName()))),
		copying: make(chan struct{}, 1),
	}, nil
}

// Dir is the relay directory.
func (r *Relay) Dir() string { return r.dir }

// Run pulls the upstream's binlog into the relay directory until ctx ends or
// Close is called (it then returns nil), or a fault that retrying cannot cure
// stops it (it returns that error, which Status also shows). Connection
// faults are retried by the reader with backoff, once the upstream has
// answered: before, an unreachable upstream (streamer.ErrUnreachable), a
// refused login (streamer.ErrAccessDenied) or an unknown host stop Run at
// once. While paused, Run waits.
func (r *Relay) Run(ctx context.Context) error {
	if !r.runMu.TryLock() {
		return ErrRelayRunning
	}
	defer r.runMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrRelayClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.cancel = cancel
	r.done = make(chan struct{})
	done := r.done
	r.mu.Unlock()
	defer close(done)

	unlock, err := r.rdir.Lock()
	if err != nil {
		return r.fail(err)
	}
	defer unlock()

	// The pull loop and the purge loop share one context: Close, the end
	// of ctx, or a fault that stops pulling ends both, and Run returns
	// once both have.
	g, gctx := errgroup.WithContext(ctx)
	if r.opts.set["WithAutoPurge"] {
		g.Go(func() error {
			r.purgeLoop(gctx)
			return nil
		})
	}
	g.Go(func() error {
		defer cancel() // stop the purge loop when pulling ends
		return r.pull(gctx)
	})
	if err := g.Wait(); err != nil {
		return r.fail(err)
	}
	r.setStage(RelayStopped)
	return nil
}

// pull runs sessions, waiting while paused, until ctx ends (it returns nil)
// or a session fails.
func (r *Relay) pull(ctx context.Context) error {
	for {
		r.mu.Lock()
		if r.paused {
			r.stage = RelayPaused
			resume := r.resume
			r.mu.Unlock()
			select {
			case <-resume:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		r.stage = RelayRunning
		pause := make(chan struct{})
		r.pauseCh = pause
		r.mu.Unlock()

		err := r.session(ctx, pause)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (r *Relay) fail(err error) error {
	r.mu.Lock()
	r.lastErr = err
	r.stage = RelayStopped
	// Wake whoever waits on Relayed: the relay will not move.
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
	r.log.Error("relay stopped", slog.String("error", err.Error()))
	return err
}

// started records that a session has repaired the directory and pulls: the
// last fault is over.
func (r *Relay) started() {
	r.mu.Lock()
	r.lastErr = nil
	r.mu.Unlock()
	if r.onStart != nil {
		r.onStart()
	}
}

func (r *Relay) setStage(s RelayStage) {
	r.mu.Lock()
	r.stage = s
	r.mu.Unlock()
}

// Pause stops pulling after the current event; what was written is synced
// and published. Run keeps waiting for Resume.
func (r *Relay) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused {
		return
	}
	r.paused = true
	r.resume = make(chan struct{})
	if r.pauseCh != nil {
		close(r.pauseCh)
		r.pauseCh = nil
	}
}

// Resume continues pulling after Pause.
func (r *Relay) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.paused {
		return
	}
	r.paused = false
	close(r.resume)
}

// Close stops Run, waits for it to return, and wakes every waiting reader.
// It is safe to call more than once.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
	r.mu.Lock()
	close(r.notify)
	r.notify = make(chan struct{})
	r.stage = RelayStopped
	r.mu.Unlock()
	return nil
}

// Relayed returns the end of the durable relay data and a channel closed when
// it moves or the relay stops. It implements streamer.RelayTail.
func (r *Relay) Relayed() (streamer.RelayPos, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.relayed, r.notify
}

// publish makes pos the durable end, wakes readers and records it in the
// subdirectory's relay.meta.
func (r *Relay) publish(pos streamer.RelayPos, gset mysql.GTIDSet) error {
	r.mu.Lock()
	if r.relayed == pos {
		r.mu.Unlock()
		return nil
	}
	r.relayed, r.gtid = pos, gset
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
	meta := streamer.RelayMeta{BinlogName: pos.Name, BinlogPos: pos.Offset}
	if gset != nil {
		meta.BinlogGTID = gset.String()
	}
	return r.rdir.WriteMeta(pos.SubDir, meta)
}
