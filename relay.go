package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/prometheus/client_golang/prometheus"
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
//
// A file system that refuses a write (full, read-only, failing) stops Run
// with a *streamer.RelayError wrapping streamer.ErrRelayWrite and the cause
// (errors.Is(err, syscall.ENOSPC)), naming the file and offset. What was
// published before stays valid and durable; nothing after it is published,
// and the next Run cuts back whatever torn tail the failure left.
type Relay struct {
	up   streamer.UpstreamConfig
	dir  string
	cfg  RelayConfig // defaults filled in
	opts relayOptions
	log  *slog.Logger

	runMu sync.Mutex // held by Run
	// purgeMu is held by a purge from reading the leases to its last
	// removal, and by RegisterReader: a reader registered once
	// RegisterReader returns is seen by every purge that removes files
	// after that.
	purgeMu sync.Mutex
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
	inst    *relayInstruments // nil without metrics
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
// reported as relayed, to readers and in Status, and recorded in relay.meta,
// only once an fsync that began after its bytes were written has returned.
// The fsyncs run on a goroutine of the session's own while it goes on
// receiving from the upstream (group commit): a sync the policy asks for
// while one is under way is done right after it, and covers every
// transaction written meanwhile. The session waits for the disk only when
// what it has written runs 128 MiB ahead of what is durable, and at a
// binlog file's end (a file is durable before the next one is created).
type SyncPolicy struct {
	kind     syncKind
	interval time.Duration
}

type syncKind int

const (
	syncDefault syncKind = iota // the zero SyncPolicy: SyncInterval(defaultSyncInterval)
	syncInterval
	syncEachTxn
	syncOnRotate
)

const defaultSyncInterval = 50 * time.Millisecond

// SyncEachTransaction asks for an fsync at the end of every upstream
// transaction: the least lag for readers; at most one fsync per
// transaction (transactions that end while an fsync runs share the next).
func SyncEachTransaction() SyncPolicy { return SyncPolicy{kind: syncEachTxn} }

// SyncInterval fsyncs at the end of a transaction when the last fsync is at
// least d old, and otherwise d after the last fsync: a quiet upstream's
// transaction is durable at once, a busy one costs at most one fsync per d.
// When the relay has caught up with the upstream, what it wrote is synced at
// once instead of at the end of the interval: when it reaches where the
// upstream's binlog ended as the relay connected (once per connection), and
// when it has taken everything the upstream sent (the upstream paused or
// reached the end of its binlog; at most once per d, so that the fsync
// rate stays at most two per d; this needs batched reads: TCP on Linux).
// The last transactions of a burst are durable without waiting. This is the default, with d = 50ms: it
// bounds the fsync rate under load, adds at most 50ms (plus the fsync's own
// time) of relay lag, and on a crash loses nothing that cannot be pulled
// again from the upstream.
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
	case syncDefault:
		return fmt.Sprintf("interval(%s)", defaultSyncInterval)
	}
	return fmt.Sprintf("interval(%s)", p.interval)
}

// NewRelay returns a relay of up's binlog into dir, kept as cfg says. It
// checks its arguments but touches neither the directory nor the network:
// Run does.
func NewRelay(up streamer.UpstreamConfig, dir string, cfg RelayConfig, opts ...RelayOption) (*Relay, error) {
	o := defaultRelayOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyRelay(&o)
		}
	}
	if err := up.Validate(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("dmworker: relay for %s: a directory is required", up.SourceName())
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("dmworker: relay for %s: %w", up.SourceName(), err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := o.logger.With(slog.String("component", "relay"), slog.String("source", up.SourceName()))
	var inst *relayInstruments
	if o.metrics.enabled() {
		inst = &relayInstruments{}
	}
	return &Relay{
		inst:    inst,
		up:      up,
		dir:     abs,
		cfg:     cfg,
		opts:    o,
		log:     log,
		stage:   RelayNew,
		notify:  make(chan struct{}),
		leases:  map[*relayLease]struct{}{},
		rdir:    streamer.NewRelayDir(abs, cfg.FileMode, cfg.DirMode, log),
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

	unregister, err := r.opts.metrics.register(newCollector(
		prometheus.Labels{"task": "", "source": r.up.SourceName(), "worker": ""}, relayFamilies,
		func(e emitter) { emitRelay(e, r) }))
	if err != nil {
		return r.fail(fmt.Errorf("dmworker: relay for %s: %w", r.up.SourceName(), err))
	}
	defer unregister()

	unlock, err := r.rdir.Lock()
	if err != nil {
		return r.fail(err)
	}
	defer unlock()

	// The pull loop and the purge loop share one context: Close, the end
	// of ctx, or a fault that stops pulling ends both, and Run returns
	// once both have.
	g, gctx := errgroup.WithContext(ctx)
	if r.cfg.PurgeInterval > 0 {
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
	err = withStack(err)
	r.mu.Lock()
	r.lastErr = err
	r.stage = RelayStopped
	// Wake whoever waits on Relayed: the relay will not move.
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
	r.log.Error("relay stopped", errAttr(err))
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
