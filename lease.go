package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

// leaseKeeper grants etcd leases and keeps one alive, for KeepAlive (the
// worker's key) and Coordinator (its election key). It renews every sixth of
// the TTL with KeepAliveOnce calls, so it knows when each confirmed renewal
// was sent: etcd keeps the lease at least until then plus the TTL. It declares the lease lost when a renewal answers "not found", or
// when no renewal has been confirmed for two thirds of the TTL, a third of
// the TTL before etcd may expire it.
type leaseKeeper struct {
	cli *clientv3.Client
	ttl time.Duration
	log *slog.Logger
}

// threshold is how long a lease counts as held after its last confirmed
// renewal was sent.
func (l leaseKeeper) threshold() time.Duration { return l.ttl * 2 / 3 }

// opTimeout bounds one etcd call.
func (l leaseKeeper) opTimeout() time.Duration { return l.ttl / 3 }

// grant grants a lease; sent is when the request left, the start of the
// lease's confirmed life.
func (l leaseKeeper) grant(ctx context.Context) (lease clientv3.LeaseID, sent time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.opTimeout())
	defer cancel()
	sent = time.Now()
	g, err := l.cli.Grant(ctx, int64(l.ttl/time.Second))
	if err != nil {
		return 0, sent, err
	}
	return g.ID, sent, nil
}

// revoke revokes lease within the operation timeout. A lease already gone
// returns rpctypes.ErrLeaseNotFound.
func (l leaseKeeper) revoke(ctx context.Context, lease clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(ctx, l.opTimeout())
	defer cancel()
	_, err := l.cli.Revoke(ctx, lease)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		l.log.Warn("revoke lease", slog.String("lease", fmt.Sprintf("%x", int64(lease))), errAttr(err))
	}
	return err
}

// closeRevokeTimeout bounds the revocation on the way out of Run: Close
// must not wait long for an unreachable etcd, and an unrevoked lease expires
// by itself.
const closeRevokeTimeout = 2 * time.Second

// revokeOnClose revokes lease, best effort, within closeRevokeTimeout.
func (l leaseKeeper) revokeOnClose(ctx context.Context, lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(ctx, min(closeRevokeTimeout, l.opTimeout()))
	defer cancel()
	if _, err := l.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		l.log.Warn("revoke lease on close", slog.String("lease", fmt.Sprintf("%x", int64(lease))), errAttr(err))
	}
}

// renewal is the outcome of one renewal sent at sent.
type renewal struct {
	sent time.Time
	err  error
}

// keep renews lease, confirmed (sent) at confirmed, until it is lost: it
// returns an error wrapping ErrLeaseLost, or ctx's error when ctx ends
// first. onConfirm, if not nil, is told each newly confirmed sending time.
func (l leaseKeeper) keep(ctx context.Context, lease clientv3.LeaseID, confirmed time.Time, onConfirm func(time.Time)) error {
	ctx, cancel := context.WithCancel(ctx)
	var g errgroup.Group // the renewal loop, over before keep returns
	defer g.Wait()
	defer cancel()

	renewed := make(chan renewal)
	g.Go(func() error {
		l.renewLoop(ctx, lease, renewed)
		return nil
	})
	deadline := time.NewTimer(l.threshold() - time.Since(confirmed))
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w: lease %x: no renewal confirmed for %s (TTL %s)", ErrLeaseLost, int64(lease), time.Since(confirmed).Round(time.Millisecond), l.ttl)
		case r := <-renewed:
			if errors.Is(r.err, rpctypes.ErrLeaseNotFound) {
				return fmt.Errorf("%w: lease %x expired or revoked", ErrLeaseLost, int64(lease))
			}
			if r.err != nil {
				l.log.Debug("lease renewal failed", slog.String("lease", fmt.Sprintf("%x", int64(lease))), errAttr(r.err))
				continue
			}
			if r.sent.After(confirmed) {
				confirmed = r.sent
				if onConfirm != nil {
					onConfirm(confirmed)
				}
				deadline.Reset(l.threshold() - time.Since(confirmed))
			}
		}
	}
}

// renewLoop sends a renewal of lease every sixth of the TTL, each in its
// own goroutine and given until the loss threshold to answer, and reports
// each outcome: a slow answer still confirms the time its renewal was sent,
// and a stalled one does not hold the next ones back. At most four are in
// flight.
func (l leaseKeeper) renewLoop(ctx context.Context, lease clientv3.LeaseID, out chan<- renewal) {
	var g errgroup.Group // the renewals in flight, over before renewLoop returns
	defer g.Wait()
	t := time.NewTicker(l.ttl / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.Go(func() error {
			opCtx, cancel := context.WithTimeout(ctx, l.threshold())
			sent := time.Now()
			_, err := l.cli.KeepAliveOnce(opCtx, lease)
			cancel()
			select {
			case out <- renewal{sent, err}:
			case <-ctx.Done():
			}
			return nil // reported on out
		})
	}
}
