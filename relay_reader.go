package dmworker

import (
	"context"
	"errors"

	"github.com/dmworker/dmworker/streamer"
)

// relayLease is a reader's registration: the oldest position it needs.
type relayLease struct {
	r    *Relay
	name string
	pos  streamer.RelayPos
}

// RegisterReader records that the named reader needs everything from pos on:
// purge (PurgeTo, PurgeOlderThan, PurgeForSpace and the automatic purge)
// keeps every file from pos's on until the lease advances past it or is
// released. Registering a name again replaces its position and returns the
// same lease. It implements streamer.RelayRegistry: a streamer.LocalReader
// given WithRelayRegistry(r, name) takes its lease at its start, advances
// it with Ack (or WithAutoAck) and releases it on Close; OpenReader opens
// such a reader. A lease may be used from any goroutine.
func (r *Relay) RegisterReader(name string, pos streamer.RelayPos) (streamer.ReaderLease, error) {
	if name == "" {
		return nil, errors.New("dmworker: relay reader registration needs a name")
	}
	r.purgeMu.Lock() // not in the middle of a purge that read the leases before
	defer r.purgeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range r.leases {
		if l.name == name {
			l.pos = pos
			return l, nil
		}
	}
	l := &relayLease{r: r, name: name, pos: pos}
	r.leases[l] = struct{}{}
	return l, nil
}

// Advance moves the lease forward; a position behind the current one is
// ignored.
func (l *relayLease) Advance(pos streamer.RelayPos) {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	if pos.Compare(l.pos) > 0 {
		l.pos = pos
	}
}

// Release ends the registration.
func (l *relayLease) Release() {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	delete(l.r.leases, l)
}

// OpenReader opens a reader of the relay's binlog from start (a file and
// offset, or a GTID set alone, as streamer.StartAtPosition takes it) that
// is safe from purge: it holds a reader lease under name (see
// RegisterReader) from the start's file on, advanced by the reader's Ack
// (or streamer.WithAutoAck among opts) and released by its Close. It
// follows the relay's durable end (Relayed) without polling, across
// subdirectories, and waits at the end for more. opts are added to those
// (the relay's logger comes first, so WithLocalLogger overrides it).
//
// OpenReader first waits for the relay to have started and, when the relay
// is writing the start's file, to have reached the start; it returns the
// relay's fault if the relay stops with one meanwhile, ErrRelayClosed after
// Close, or ctx's error. A start older than the relay's oldest file is
// fetched from the upstream into the relay first, which needs a running
// relay; streamer.ErrBinlogPurged when neither the relay nor the upstream
// holds it. The relay is not closed by the reader: close the reader first.
func (r *Relay) OpenReader(ctx context.Context, name string, start streamer.Position, opts ...streamer.LocalOption) (*streamer.LocalReader, error) {
	if name == "" {
		return nil, errors.New("dmworker: relay reader needs a name")
	}
	if err := r.waitStarted(ctx, start); err != nil {
		return nil, err
	}
	return r.openReader(ctx, name, start, opts...)
}

// waitStarted waits for the relay to have started and, when it is writing
// the start's file, to have reached the start.
func (r *Relay) waitStarted(ctx context.Context, start streamer.Position) error {
	for {
		r.mu.Lock()
		pos, changed, closed, stage, fault := r.relayed, r.notify, r.closed, r.stage, r.lastErr
		r.mu.Unlock()
		switch {
		case closed:
			return ErrRelayClosed
		// (A relay that has chosen its subdirectory but written nothing
		// yet reports a position with no file.)
		case pos.Name != "" && (pos.Name != start.Name || pos.Offset >= start.Offset):
			return nil
		case stage == RelayStopped && fault != nil:
			return fault
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// openReader is OpenReader once the relay has started: it fetches a start
// older than the relay's oldest file and opens the reader.
func (r *Relay) openReader(ctx context.Context, name string, start streamer.Position, opts ...streamer.LocalOption) (*streamer.LocalReader, error) {
	lease, err := r.hold(ctx, name, start)
	if err != nil {
		return nil, err
	}
	all := make([]streamer.LocalOption, 0, len(opts)+3)
	all = append(all, streamer.WithLocalLogger(r.opts.logger))
	all = append(all, opts...)
	all = append(all, streamer.WithRelayTail(r), streamer.WithRelayRegistry(r, name))
	lr, err := streamer.NewLocalReader(r.dir, streamer.StartAtPosition(start), all...)
	if err != nil && lease != nil {
		lease.Release() // hold's: no reader took it over
	}
	return lr, err
}
