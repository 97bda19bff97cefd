package dmworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

// Coordinator binds each source to one live worker, through etcd, so that a
// host need not write its own master. Run it in every process of a cluster:
// the processes elect one leader among them (under <prefix>coordinator/)
// and the others stand by until it goes.
//
// The leader reads the live workers (<prefix>worker/, kept by KeepAlive),
// the sources (<prefix>source/) and the bindings (<prefix>bound/<worker>,
// value SourceBinding), and makes them agree:
//   - a binding is deleted when its source is gone, or when its worker's
//     key is gone or was created after the binding (the worker lost its
//     registration, even if it registered again at once: it has stopped
//     serving the source, and the binding's epoch belongs to the past);
//   - a live binding is kept: a source never moves while its worker lives;
//   - each unbound source, in name order, gets an idle live worker (one
//     worker serves at most one source, as in DM): the worker that served it
//     last if it is idle again (it may still hold the source's relay log),
//     unless that worker has just failed and another is idle (the source
//     fails over); else the idle worker first in name order. A source with
//     no idle worker stays unbound (and logged) until one appears.
//
// It does so again on every change under those prefixes (watched), and
// reads everything afresh when a watch fails (compaction, etcd restart), so
// no change is missed. A binding's epoch is its key's ModRevision: each
// (re)binding makes a new one, higher than any before, which fences off a
// worker still running under an older binding.
//
// Every write is an etcd transaction guarded by the leader's election key
// (a deposed leader cannot write), by the binding key's revision (create
// only if absent, delete only the version read) and by no binding having
// changed since the state was read, so a source is never bound to two
// workers at once. Leadership is held under a lease with the TTL of
// WithKeepAliveTTL, renewed like a KeepAlive's: the leader stops acting when
// a renewal has not been confirmed for two thirds of the TTL, before etcd
// can expire the lease and let another coordinator lead. Close and the end
// of Run's context give leadership up at once (the lease is revoked).
//
// The election keys have the layout of etcd's concurrency.Election
// (<prefix>coordinator/<lease in hex>, the lowest create revision leads), so
// its tools can observe it; the campaign is the library's own so that
// giving up never waits for an unreachable etcd.
//
// A Coordinator is safe for concurrent use.
type Coordinator struct {
	cli     *clientv3.Client
	lease   leaseKeeper
	keys    etcdKeys
	id      string
	backoff [2]time.Duration
	log     *slog.Logger
	metrics metricsOptions

	// last maps a source to the worker that served it last; Run's only.
	last map[string]string
	// hookBeforeWatch, set by tests only, runs after each reconciliation
	// and before watching from its revision.
	hookBeforeWatch func()

	runMu   sync.Mutex // held by Run
	mu      sync.Mutex // guards the fields below
	leading bool
	notify  chan struct{} // closed and replaced when leading changes
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returns; nil before Run
	closed  bool
}

// Binding is a source bound to a worker, with the binding's epoch (the
// ModRevision of the worker's bound key).
type Binding struct {
	Worker string
	Source string
	Epoch  int64
}

// Coordinator errors.
var (
	// ErrCoordinatorClosed is returned by Run after Close.
	ErrCoordinatorClosed = errors.New("dmworker: coordinator closed")
	// ErrCoordinatorRunning is returned by a second concurrent Run.
	ErrCoordinatorRunning = errors.New("dmworker: coordinator already running")
	// ErrNotLeader means a coordinator's write was refused because it no
	// longer leads (its election key is gone or was replaced).
	ErrNotLeader = errors.New("dmworker: coordinator is not the leader")
)

// errStaleView means a guarded write failed because the state changed
// since it was read: read again.
var errStaleView = errors.New("dmworker: coordinator: state changed since read")

// coordinatorOptions are a Coordinator's options, defaults filled in.
type coordinatorOptions struct{ leaseOptions }

func defaultCoordinatorOptions() coordinatorOptions {
	return coordinatorOptions{defaultLeaseOptions()}
}

// NewCoordinator returns a coordinator working with the host's etcd client
// (never closed by the Coordinator). It checks its arguments and touches
// nothing: Run campaigns.
func NewCoordinator(cli *clientv3.Client, opts ...CoordinatorOption) (*Coordinator, error) {
	o := defaultCoordinatorOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyCoordinator(&o)
		}
	}
	if cli == nil {
		return nil, errors.New("dmworker: coordinator: an etcd client is required")
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("dmworker: coordinator: %w", err)
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s:%d", host, os.Getpid())
	log := o.logger.With(slog.String("component", "coordinator"))
	return &Coordinator{
		cli:     cli,
		lease:   leaseKeeper{cli: cli, ttl: o.ttl, log: log},
		keys:    newEtcdKeys(o.etcdPrefix),
		id:      id,
		backoff: [2]time.Duration{o.backoffMin, o.backoffMax},
		log:     log,
		metrics: o.metrics,
		last:    map[string]string{},
		notify:  make(chan struct{}),
	}, nil
}

// Leading reports whether this coordinator leads now, and a channel closed
// at the next change.
func (c *Coordinator) Leading() (leading bool, changed <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading, c.notify
}

func (c *Coordinator) setLeading(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leading != v {
		c.leading = v
		close(c.notify)
		c.notify = make(chan struct{})
	}
}

// Bindings reads the bindings from etcd, by source. It works whether or not
// Run runs, and fails if a source is bound to two workers (which the
// coordinator never does).
func (c *Coordinator) Bindings(ctx context.Context) (map[string]Binding, error) {
	resp, err := c.cli.Get(ctx, c.keys.bounds(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("dmworker: coordinator: read bindings under %s: %w", c.keys.bounds(), err)
	}
	out := map[string]Binding{}
	for _, kv := range resp.Kvs {
		worker := strings.TrimPrefix(string(kv.Key), c.keys.bounds())
		var sb SourceBinding
		if err := json.Unmarshal(kv.Value, &sb); err != nil {
			return nil, fmt.Errorf("dmworker: coordinator: binding %s: %w", kv.Key, err)
		}
		if old, ok := out[sb.Source]; ok {
			return nil, fmt.Errorf("dmworker: coordinator: source %s bound to two workers, %s (epoch %d) and %s (epoch %d)", sb.Source, old.Worker, old.Epoch, worker, kv.ModRevision)
		}
		out[sb.Source] = Binding{Worker: worker, Source: sb.Source, Epoch: kv.ModRevision}
	}
	return out, nil
}

// Run campaigns for leadership and, while leading, keeps the bindings in
// line (see Coordinator), until ctx ends or Close is called; it then gives
// leadership up and returns nil. etcd faults and lost leadership are retried
// with backoff, never returned.
func (c *Coordinator) Run(ctx context.Context) (err error) {
	defer func() { err = withStack(err) }()
	if !c.runMu.TryLock() {
		return ErrCoordinatorRunning
	}
	defer c.runMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrCoordinatorClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.cancel = cancel
	c.done = make(chan struct{})
	done := c.done
	c.mu.Unlock()
	defer close(done)
	unregister, err := c.metrics.register(newCollector(
		prometheus.Labels{"task": "", "source": "", "worker": ""}, coordFamilies, c.emitMetrics))
	if err != nil {
		return fmt.Errorf("dmworker: coordinator: %w", err)
	}
	defer unregister()

	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = c.backoff[0], c.backoff[1], 0
	b.Reset()
	for {
		led, err := c.term(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if led {
			b.Reset()
		}
		d := b.NextBackOff()
		c.log.Warn("coordinator term ended, campaigning again", slog.Duration("wait", d), errAttr(err))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// term runs one lease: campaign, then lead until the lease or the
// leadership is lost (it returns why) or ctx ends. led tells whether it led.
func (c *Coordinator) term(ctx context.Context) (led bool, err error) {
	lease, sent, err := c.lease.grant(ctx)
	if err != nil {
		return false, fmt.Errorf("dmworker: coordinator: grant lease: %w", err)
	}
	// Revoking the lease deletes the election key: it resigns.
	defer c.lease.revokeOnClose(context.WithoutCancel(ctx), lease)

	// The lease's renewals run beside the campaign and the leading, in a
	// group over before term returns; the lease's loss cancels them and is
	// the reason to report.
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(tctx)
	g.Go(func() error {
		if err := c.lease.keep(gctx, lease, sent, nil); err != nil && gctx.Err() == nil {
			return fmt.Errorf("dmworker: coordinator: %w", err)
		}
		return nil
	})
	ld, err := c.campaign(gctx, lease)
	if err == nil {
		led = true
		c.log.Info("leading", slog.String("key", ld.key), slog.Int64("rev", ld.rev))
		c.setLeading(true)
		err = c.lead(gctx, ld)
		c.setLeading(false)
	}
	cancel()
	if lost := g.Wait(); lost != nil {
		err = lost
	}
	return led, err
}

// leader is a coordinator's election key and its create revision.
type leader struct {
	key string
	rev int64
}

// guard is the comparison that holds only while ld leads.
func (ld leader) guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(ld.key), "=", ld.rev)
}

// campaign puts the election key under lease and waits until every key
// created before it is gone.
func (c *Coordinator) campaign(ctx context.Context, lease clientv3.LeaseID) (leader, error) {
	pfx := c.keys.coordinator()
	ld := leader{key: fmt.Sprintf("%s%x", pfx, int64(lease))}
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ld.key), "=", 0)).
		Then(clientv3.OpPut(ld.key, c.id, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(ld.key)).
		Commit()
	if err != nil {
		return ld, fmt.Errorf("dmworker: coordinator: put election key %s: %w", ld.key, err)
	}
	ld.rev = resp.Header.Revision
	if !resp.Succeeded {
		ld.rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	for {
		opts := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(ld.rev-1))
		g, err := c.cli.Get(ctx, pfx, opts...)
		if err != nil {
			return ld, fmt.Errorf("dmworker: coordinator: read election under %s: %w", pfx, err)
		}
		if len(g.Kvs) == 0 {
			return ld, nil
		}
		ahead := string(g.Kvs[0].Key)
		c.log.Debug("standing by", slog.String("leader", ahead), slog.String("value", string(g.Kvs[0].Value)))
		// Wait for the key ahead to go; if the watch fails, read again.
		wctx, wcancel := context.WithCancel(ctx)
	watch:
		for wr := range c.cli.Watch(clientv3.WithRequireLeader(wctx), ahead, clientv3.WithRev(g.Header.Revision+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					break watch
				}
			}
		}
		wcancel()
		if ctx.Err() != nil {
			return ld, ctx.Err()
		}
	}
}

// lead reconciles the bindings and again at every change until ctx ends or
// leadership is lost.
func (c *Coordinator) lead(ctx context.Context, ld leader) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = c.backoff[0], c.backoff[1], 0
	b.Reset()
	for {
		rev, err := c.reconcile(ctx, ld)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrNotLeader):
			return err
		case errors.Is(err, errStaleView):
			c.log.Debug("state changed while reconciling, reading again")
			continue
		case err != nil:
			d := b.NextBackOff()
			c.log.Warn("reconcile failed, retrying", slog.Duration("wait", d), errAttr(err))
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			continue
		}
		b.Reset()
		if c.hookBeforeWatch != nil {
			c.hookBeforeWatch()
		}
		if err := c.waitChange(ctx, ld, rev); err != nil {
			if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
				return err
			}
			c.log.Info("watch ended, reading everything again", errAttr(err))
		}
	}
}

// waitChange returns nil at the first change to workers, sources or
// bindings after rev, ErrNotLeader when the election key goes, or the
// watch's error (then the caller reads everything again).
func (c *Coordinator) waitChange(ctx context.Context, ld leader, rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	from := clientv3.WithRev(rev + 1)
	type watched struct {
		what string
		ch   clientv3.WatchChan
	}
	ws := []watched{
		{"election key", c.cli.Watch(ctx, ld.key, from)},
		{"workers", c.cli.Watch(ctx, c.keys.workers(), clientv3.WithPrefix(), from)},
		{"sources", c.cli.Watch(ctx, c.keys.sources(), clientv3.WithPrefix(), from)},
		{"bindings", c.cli.Watch(ctx, c.keys.bounds(), clientv3.WithPrefix(), from)},
	}
	var wr clientv3.WatchResponse
	var ok bool
	var i int
	select {
	case wr, ok = <-ws[0].ch:
	case wr, ok = <-ws[1].ch:
		i = 1
	case wr, ok = <-ws[2].ch:
		i = 2
	case wr, ok = <-ws[3].ch:
		i = 3
	case <-ctx.Done():
		return ctx.Err()
	}
	switch {
	case !ok:
		return fmt.Errorf("dmworker: coordinator: watch of %s from revision %d closed", ws[i].what, rev+1)
	case wr.Err() != nil:
		return fmt.Errorf("dmworker: coordinator: watch of %s from revision %d: %w", ws[i].what, rev+1, wr.Err())
	case i == 0:
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return fmt.Errorf("%w: election key %s deleted", ErrNotLeader, ld.key)
			}
		}
	}
	return nil
}

// Close stops Run, which gives leadership up (waiting at most 2s for etcd to
// revoke the lease; an unrevoked lease expires after the TTL), and waits
// for it to return. It is safe to call more than once.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
	return nil
}

// emitMetrics sends the coordinator's metrics: whether it leads and, while
// it does, the bindings (read from etcd, within a second).
func (c *Coordinator) emitMetrics(e emitter) {
	leading, _ := c.Leading()
	e.value(famCoordLeader, boolValue(leading))
	if !leading {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	bs, err := c.Bindings(ctx)
	if err != nil {
		return
	}
	var epoch int64
	for _, b := range bs {
		epoch = max(epoch, b.Epoch)
	}
	e.value(famCoordBindings, float64(len(bs)))
	e.value(famCoordEpoch, float64(epoch))
}
