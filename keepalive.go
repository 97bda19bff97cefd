package dmworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

// KeepAlive registers a worker in etcd and keeps the registration alive: it
// puts the worker's key (<prefix>worker/<name>, value WorkerInfo) under a
// lease with the TTL of WithKeepAliveTTL, and renews the lease every sixth
// of the TTL (each renewal may take until the threshold below to answer).
// A coordinator watching these keys knows which workers are alive, and
// moves the source of a worker whose key disappears.
//
// Alive tells the worker whether its registration is confirmed now. It turns
// false at once when:
//   - the lease is reported expired or revoked (a renewal answers "not
//     found"), or the worker's key is deleted or overwritten by another
//     lease (seen through a watch, so a revocation from outside is seen at
//     once);
//   - no renewal has been confirmed for two thirds of the TTL, counted from
//     the moment the last confirmed renewal (or the grant) was sent. etcd
//     cannot have expired the lease before that moment plus the TTL, so the
//     worker considers itself dead at least a third of the TTL before a
//     coordinator can see its key gone and give its source to another
//     worker.
//
// After a loss, Run revokes the old lease (best effort: the key must not
// outlive the registration it stood for) and registers again, with a new
// lease, retrying with exponential backoff (WithEtcdBackoff) until it
// succeeds or Run ends. Registration only creates the key: when it exists
// under another lease (another process with the same worker name), Run does
// not take it over; it logs ErrWorkerRegistered, shows it in Status, and
// keeps retrying. (So a worker restarted after a crash registers once its
// previous key has expired, at most a TTL later.)
//
// A KeepAlive is safe for concurrent use. It implements the Liveness that a
// SourceWorker takes.
type KeepAlive struct {
	cli     *clientv3.Client
	lease   leaseKeeper
	name    string
	keys    etcdKeys
	addr    string
	backoff [2]time.Duration
	log     *slog.Logger
	metrics metricsOptions

	runMu  sync.Mutex // held by Run
	mu     sync.Mutex // guards the fields below
	status KeepAliveStatus
	notify chan struct{} // closed and replaced when alive changes
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns; nil before Run
	closed bool
}

// KeepAliveStatus is a KeepAlive's registration state.
type KeepAliveStatus struct {
	// Alive reports whether the registration is confirmed.
	Alive bool
	// Lease is the lease the worker's key is under while Alive (else the
	// last one, or 0).
	Lease clientv3.LeaseID
	// Revision is the worker key's create revision for this registration.
	// A binding (<prefix>bound/<worker>) whose ModRevision is lower was made
	// for an earlier registration: it is stale, and a Coordinator deletes
	// it and binds the source anew.
	Revision int64
	// Confirmed is when the last confirmed renewal (or grant) of Lease was
	// sent: etcd keeps the lease at least until Confirmed plus the TTL.
	Confirmed time.Time
	// Since is when Alive last changed.
	Since time.Time
	// Err is why the registration was lost or why registering failed last;
	// nil while Alive.
	Err error
}

// KeepAlive errors.
var (
	// ErrWorkerRegistered means the worker's key exists under another
	// lease: another process runs a worker with the same name.
	ErrWorkerRegistered = errors.New("dmworker: worker name already registered")
	// ErrLeaseLost means the registration ended: the lease expired or was
	// revoked, the key was deleted or taken over, or no renewal could be
	// confirmed in time.
	ErrLeaseLost = errors.New("dmworker: worker lease lost")
	// ErrKeepAliveClosed is returned by Run after Close.
	ErrKeepAliveClosed = errors.New("dmworker: keepalive closed")
	// ErrKeepAliveRunning is returned by a second concurrent Run.
	ErrKeepAliveRunning = errors.New("dmworker: keepalive already running")
)

// DefaultKeepAliveTTL is the lease TTL unless WithKeepAliveTTL says
// otherwise (DM's default too).
const DefaultKeepAliveTTL = 60 * time.Second

const (
	defaultBackoffMin = 500 * time.Millisecond
	defaultBackoffMax = 10 * time.Second
)

// WithKeepAliveTTL sets the TTL of the lease the type keeps alive in etcd:
// the worker's key for KeepAlive, the leadership for Coordinator. It must be
// a whole number of seconds, at least one (etcd leases count in seconds; the
// server may raise a TTL below its minimum, about 2s by default). A shorter
// TTL moves a dead worker's source sooner and costs more renewals.
// Default DefaultKeepAliveTTL, 60s.
func WithKeepAliveTTL(ttl time.Duration) KeepAliveTTLOption { return KeepAliveTTLOption{ttl} }

// KeepAliveTTLOption is WithKeepAliveTTL's option, taken by NewKeepAlive
// and NewCoordinator.
type KeepAliveTTLOption struct{ ttl time.Duration }

func (o KeepAliveTTLOption) applyKeepAlive(k *keepAliveOptions)     { k.ttl = o.ttl }
func (o KeepAliveTTLOption) applyCoordinator(c *coordinatorOptions) { c.ttl = o.ttl }

// WithWorkerAddr sets the address a KeepAlive publishes in its WorkerInfo
// (free text: where the host can be reached). Default "".
func WithWorkerAddr(addr string) KeepAliveOption { return workerAddrOption(addr) }

type workerAddrOption string

func (o workerAddrOption) applyKeepAlive(k *keepAliveOptions) { k.workerAddr = string(o) }

// WithEtcdBackoff sets how long the type waits before retrying after an etcd
// fault or a lost registration: from initial, doubling (with ±50% jitter)
// up to maximum. Default 500ms up to 10s.
func WithEtcdBackoff(initial, maximum time.Duration) EtcdBackoffOption {
	return EtcdBackoffOption{initial, maximum}
}

// EtcdBackoffOption is WithEtcdBackoff's option, taken by NewKeepAlive and
// NewCoordinator.
type EtcdBackoffOption struct{ min, max time.Duration }

func (o EtcdBackoffOption) applyKeepAlive(k *keepAliveOptions) {
	k.backoffMin, k.backoffMax = o.min, o.max
}
func (o EtcdBackoffOption) applyCoordinator(c *coordinatorOptions) {
	c.backoffMin, c.backoffMax = o.min, o.max
}

// leaseOptions are the options KeepAlive and Coordinator share, defaults
// filled in.
type leaseOptions struct {
	logger     *slog.Logger
	etcdPrefix string
	ttl        time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	metrics    metricsOptions
}

func defaultLeaseOptions() leaseOptions {
	return leaseOptions{logger: discardLogger(), ttl: DefaultKeepAliveTTL, backoffMin: defaultBackoffMin, backoffMax: defaultBackoffMax}
}

// validate checks the options.
func (o *leaseOptions) validate() error {
	switch {
	case o.ttl < time.Second || o.ttl%time.Second != 0:
		return fmt.Errorf("keepalive TTL %s must be a whole number of seconds, at least 1s", o.ttl)
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return fmt.Errorf("backoff %s..%s: the initial wait must be positive and the maximum at least the initial", o.backoffMin, o.backoffMax)
	}
	return nil
}

// keepAliveOptions are a KeepAlive's options, defaults filled in.
type keepAliveOptions struct {
	leaseOptions
	workerAddr string
}

func defaultKeepAliveOptions() keepAliveOptions {
	return keepAliveOptions{leaseOptions: defaultLeaseOptions()}
}

// NewKeepAlive returns a keepalive for the worker named worker, with the
// host's etcd client (never closed by the KeepAlive). It checks its
// arguments and touches nothing: Run registers.
func NewKeepAlive(cli *clientv3.Client, worker string, opts ...KeepAliveOption) (*KeepAlive, error) {
	o := defaultKeepAliveOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyKeepAlive(&o)
		}
	}
	if cli == nil {
		return nil, fmt.Errorf("dmworker: keepalive of worker %q: an etcd client is required", worker)
	}
	if !validName(worker) {
		return nil, fmt.Errorf("dmworker: keepalive: worker name %q must be non-empty and hold no \"/\"", worker)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("dmworker: keepalive of worker %s: %w", worker, err)
	}
	log := o.logger.With(slog.String("component", "keepalive"), slog.String("worker", worker))
	return &KeepAlive{
		cli:     cli,
		lease:   leaseKeeper{cli: cli, ttl: o.ttl, log: log},
		name:    worker,
		keys:    newEtcdKeys(o.etcdPrefix),
		addr:    o.workerAddr,
		backoff: [2]time.Duration{o.backoffMin, o.backoffMax},
		log:     log,
		metrics: o.metrics,
		notify:  make(chan struct{}),
	}, nil
}

// Name is the worker's name.
func (k *KeepAlive) Name() string { return k.name }

// Alive reports whether the worker's registration is confirmed now, and a
// channel closed at the next change. It is false before Run registers, from
// the moment the registration is lost or can no longer be confirmed (see
// KeepAlive) until Run has registered again, and after Close. It implements
// Liveness.
func (k *KeepAlive) Alive() (alive bool, changed <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status.Alive, k.notify
}

// Status returns the registration state.
func (k *KeepAlive) Status() KeepAliveStatus {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status
}

// setAlive records a registration (lease != 0) or its loss (err != nil).
func (k *KeepAlive) setAlive(alive bool, lease clientv3.LeaseID, rev int64, confirmed time.Time, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	changed := k.status.Alive != alive
	k.status.Alive, k.status.Err = alive, err
	if lease != 0 {
		k.status.Lease, k.status.Revision, k.status.Confirmed = lease, rev, confirmed
	}
	if changed {
		k.status.Since = time.Now()
		close(k.notify)
		k.notify = make(chan struct{})
	}
}

func (k *KeepAlive) confirm(at time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if at.After(k.status.Confirmed) {
		k.status.Confirmed = at
	}
}

// Run registers the worker and keeps it registered until ctx ends or Close
// is called; it then revokes the lease (best effort: it waits at most
// closeRevokeTimeout, 2s, for etcd) and returns nil. Losses and etcd faults are retried, never returned.
func (k *KeepAlive) Run(ctx context.Context) (err error) {
	defer func() { err = withStack(err) }()
	if !k.runMu.TryLock() {
		return ErrKeepAliveRunning
	}
	defer k.runMu.Unlock()
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return ErrKeepAliveClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	k.cancel = cancel
	k.done = make(chan struct{})
	done := k.done
	k.mu.Unlock()
	defer close(done)
	unregister, err := k.metrics.register(newCollector(
		prometheus.Labels{"task": "", "source": "", "worker": k.name}, leaseFamilies,
		func(e emitter) {
			st := k.Status()
			e.value(famKeepAliveLease, boolValue(st.Alive))
			e.value(famKeepAliveRev, float64(st.Revision))
		}))
	if err != nil {
		return fmt.Errorf("dmworker: keepalive of worker %s: %w", k.name, err)
	}
	defer unregister()

	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = k.backoff[0], k.backoff[1], 0
	b.Reset()
	var prev clientv3.LeaseID // the last lease granted, to revoke before registering again
	defer func() {
		if prev != 0 {
			k.lease.revokeOnClose(context.WithoutCancel(ctx), prev)
		}
		k.setAlive(false, 0, 0, time.Time{}, nil)
	}()
	var cause error // why the last attempt failed; nil on the first
	for {
		if cause != nil && !k.wait(ctx, b, cause) {
			return nil
		}
		if prev != 0 {
			if err := k.lease.revoke(ctx, prev); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
				cause = fmt.Errorf("dmworker: worker %s: revoke the previous lease %x: %w", k.name, int64(prev), err)
				continue
			}
			prev = 0
		}
		lease, rev, sent, err := k.register(ctx)
		if lease != 0 {
			prev = lease
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			k.setAlive(false, 0, 0, time.Time{}, err)
			k.log.Warn("worker not registered", errAttr(err))
			cause = err
			continue
		}
		b.Reset()
		k.setAlive(true, lease, rev, sent, nil)
		k.log.Info("worker registered", slog.String("lease", fmt.Sprintf("%x", int64(lease))), slog.Int64("revision", rev), slog.Duration("ttl", k.lease.ttl))
		err = k.hold(ctx, lease, rev, sent)
		if ctx.Err() != nil {
			return nil
		}
		k.setAlive(false, 0, 0, time.Time{}, err)
		k.log.Warn("worker registration lost", slog.String("lease", fmt.Sprintf("%x", int64(lease))), errAttr(err))
		// Revoke at once, so that the key goes now rather than at the
		// lease's expiry; if etcd does not answer, the next attempt tries
		// again.
		if err := k.lease.revoke(ctx, prev); err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			prev = 0
		}
		cause = err
	}
}

// wait sleeps the next backoff interval; false when ctx ended first.
func (k *KeepAlive) wait(ctx context.Context, b backoff.BackOff, cause error) bool {
	d := b.NextBackOff()
	k.log.Debug("registering again after backoff", slog.Duration("wait", d), slog.String("cause", cause.Error()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// register grants a lease and creates the worker's key under it. It returns
// the lease (also on failure after the grant, for the caller to revoke), the
// key's revision and when the grant was sent.
func (k *KeepAlive) register(ctx context.Context) (clientv3.LeaseID, int64, time.Time, error) {
	key := k.keys.worker(k.name)
	val, err := json.Marshal(WorkerInfo{Name: k.name, Addr: k.addr, Started: time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	lease, sent, err := k.lease.grant(ctx)
	if err != nil {
		return 0, 0, sent, fmt.Errorf("dmworker: register worker %s: grant lease: %w", k.name, err)
	}
	opCtx, cancel := context.WithTimeout(ctx, k.lease.opTimeout())
	defer cancel()
	resp, err := k.cli.Txn(opCtx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return lease, 0, sent, fmt.Errorf("dmworker: register worker %s: put %s: %w", k.name, key, err)
	}
	if !resp.Succeeded {
		holder := clientv3.LeaseID(0)
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			holder = clientv3.LeaseID(kvs[0].Lease)
		}
		return lease, 0, sent, fmt.Errorf("%w: worker %s: key %s is held by lease %x", ErrWorkerRegistered, k.name, key, int64(holder))
	}
	if time.Since(sent) >= k.lease.threshold() {
		return lease, 0, sent, fmt.Errorf("%w: worker %s: registering took %s, longer than the TTL allows", ErrLeaseLost, k.name, time.Since(sent).Round(time.Millisecond))
	}
	return lease, resp.Header.Revision, sent, nil
}

// hold keeps lease alive and watches the worker's key (put at rev) until
// the registration is lost (it returns why) or ctx ends.
func (k *KeepAlive) hold(ctx context.Context, lease clientv3.LeaseID, rev int64, confirmed time.Time) error {
	// The renewals and the watch, each in its own goroutine: Watch blocks
	// while etcd is unreachable, and that must not delay the renewal
	// deadline. The first loss cancels the other; both are over before
	// hold returns.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := k.lease.keep(gctx, lease, confirmed, k.confirm); err != nil {
			return fmt.Errorf("worker %s: %w", k.name, err)
		}
		return nil
	})
	g.Go(func() error { return k.watchKey(gctx, lease, rev) })
	err := g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// watchKey watches the worker's key from rev on and returns ErrLeaseLost
// when it is deleted or put under another lease, or ctx's error.
func (k *KeepAlive) watchKey(ctx context.Context, lease clientv3.LeaseID, rev int64) error {
	key := k.keys.worker(k.name)
	for ctx.Err() == nil {
		for wr := range k.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			if err := k.checkEvents(wr.Events, lease); err != nil {
				return err
			}
			rev = wr.Header.Revision
		}
		if ctx.Err() != nil {
			break
		}
		// The watch ended (compaction, lost leader, etcd down): read the
		// key as it is now and watch again from there.
		now, err := k.checkKey(ctx, lease)
		if err != nil {
			return err
		}
		if now != 0 {
			rev = now
			continue
		}
		// etcd did not answer (the renewal deadline covers that): wait a
		// little before watching again from the last revision seen, as a
		// compaction meanwhile makes that watch fail and read again.
		t := time.NewTimer(k.lease.opTimeout())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return ctx.Err()
}

func (k *KeepAlive) lost(why string) error {
	return fmt.Errorf("%w: worker %s: key %s %s", ErrLeaseLost, k.name, k.keys.worker(k.name), why)
}

// checkEvents returns ErrLeaseLost when the events show the worker's key
// deleted or put under another lease.
func (k *KeepAlive) checkEvents(evs []*clientv3.Event, lease clientv3.LeaseID) error {
	for _, ev := range evs {
		switch {
		case ev.Type == clientv3.EventTypeDelete:
			return k.lost("deleted")
		case clientv3.LeaseID(ev.Kv.Lease) != lease:
			return k.lost(fmt.Sprintf("now under lease %x", ev.Kv.Lease))
		}
	}
	return nil
}

// checkKey reads the worker's key and returns ErrLeaseLost when it is gone
// or under another lease, else the revision read (0 when etcd did not
// answer: the renewal deadline covers an unreachable etcd).
func (k *KeepAlive) checkKey(ctx context.Context, lease clientv3.LeaseID) (int64, error) {
	opCtx, cancel := context.WithTimeout(ctx, k.lease.opTimeout())
	defer cancel()
	resp, err := k.cli.Get(opCtx, k.keys.worker(k.name))
	switch {
	case err != nil:
		return 0, nil
	case len(resp.Kvs) == 0:
		return 0, k.lost("deleted")
	case clientv3.LeaseID(resp.Kvs[0].Lease) != lease:
		return 0, k.lost(fmt.Sprintf("now under lease %x", resp.Kvs[0].Lease))
	}
	return resp.Header.Revision, nil
}

// Close stops Run, which revokes the lease (waiting at most 2s for etcd; an
// unrevoked lease expires after the TTL), and waits for it to return. It
// is safe to call more than once.
func (k *KeepAlive) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	cancel, done := k.cancel, k.done
	k.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
	return nil
}
