package dmworker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/dmworker/dmworker/streamer"
)

// hold makes sure the relay holds the binlog file that a reader named name,
// starting at start (a file, or a GTID set alone), begins with. A start at
// or after the relay's oldest file needs nothing (the local reader waits for
// a file not written yet). A start before it is fetched: the upstream's
// files from the start's up to the relay's oldest are copied into the
// relay's oldest subdirectory, provided that subdirectory is the one being
// written (the upstream's current binlog history). The reader's
// registration (returned, for the reader to take over; nil for a GTID set
// alone) is taken before the relay's files are looked at, so that no purge
// removes the start's file, or what is fetched, between this look and the
// reader's opening.
//
// Errors: streamer.ErrBinlogPurged when the upstream no longer has the
// file (SHOW BINARY LOGS); an error naming both histories when the relay's
// oldest subdirectory copies another server or an earlier binlog history.
func (r *Relay) hold(ctx context.Context, name string, start streamer.Position) (lease streamer.ReaderLease, err error) {
	want := start.Name
	if want == "" && start.GTIDSet == nil {
		return nil, nil
	}
	defer func() {
		if err != nil && lease != nil {
			lease.Release()
			lease = nil
		}
	}()
	sub, oldest, err := r.rdir.Oldest()
	if err != nil || oldest == "" {
		return nil, err
	}
	if want != "" {
		// From the oldest subdirectory on: the reader finds its file in
		// whichever holds it, and registers where it is once open.
		if lease, err = r.RegisterReader(name, streamer.RelayPos{SubDir: sub, Name: want, Offset: 4}); err != nil {
			return nil, err
		}
		// What a purge removed before the registration is seen now.
		if sub, oldest, err = r.rdir.Oldest(); err != nil || oldest == "" {
			return lease, err
		}
		if !older(want, oldest) || r.rdir.Holds(want) {
			return lease, nil
		}
	}
	r.mu.Lock()
	current, identity := r.relayed.SubDir, r.identity
	r.mu.Unlock()
	st, err := streamer.QueryUpstream(ctx, r.up)
	if err != nil {
		return lease, err
	}
	if want == "" {
		// A GTID set: the upstream says which file holds the first
		// transaction after it.
		up := r.up
		up.Flavor, up.ServerID = st.Flavor, 0
		if want, err = locateGTID(ctx, up, start.GTIDSet, r.remoteOptions()); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			// The relay may still serve it (the upstream purged what the
			// relay holds): the local reader decides.
			r.log.Info("the upstream cannot locate a reader's GTID start", slog.String("reader", name), errAttr(err))
			return nil, nil
		}
		if !older(want, oldest) || r.rdir.Holds(want) {
			return nil, nil
		}
	}
	notServable := func(why string) error {
		// Not a streamer.Error: no retry helps.
		return fmt.Errorf("dmworker: relay %s: start %s: the relay's oldest file is %s/%s and %s cannot be fetched before it: %s",
			r.dir, start, sub, oldest, want, why)
	}
	if sub != current || st.Identity != identity {
		return lease, notServable(fmt.Sprintf("that subdirectory copies another binlog history than the upstream %s (%s)", r.up.SourceName(), st.Identity))
	}
	upHas := func(f string) bool {
		return slices.ContainsFunc(st.Binlogs, func(b streamer.BinlogFile) bool { return b.Name == f })
	}
	if !upHas(want) {
		upOldest := "none"
		if len(st.Binlogs) > 0 {
			upOldest = st.Binlogs[0].Name
		}
		return lease, &streamer.Error{Source: r.dir, Op: "open", Pos: start, Kind: streamer.ErrBinlogPurged,
			Err: fmt.Errorf("%s is not in the relay (its oldest file is %s/%s) and the upstream %s has purged it (its oldest binlog is %s)",
				want, sub, oldest, r.up.SourceName(), upOldest)}
	}
	if !upHas(oldest) {
		return lease, notServable(fmt.Sprintf("the upstream %s no longer lists %s", r.up.SourceName(), oldest))
	}
	// Registered at the file found (a GTID set's) or again from sub.
	if lease, err = r.RegisterReader(name, streamer.RelayPos{SubDir: sub, Name: want, Offset: 4}); err != nil {
		return nil, err
	}
	return lease, r.fetch(ctx, sub, want, st.Flavor)
}

// fetch copies the upstream's files from want up to the oldest file of
// subdirectory sub, one copy at a time.
func (r *Relay) fetch(ctx context.Context, sub, want, flavor string) error {
	select {
	case r.copying <- struct{}{}:
		defer func() { <-r.copying }()
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	stage := r.stage
	r.mu.Unlock()
	if stage != RelayRunning && stage != RelayPaused {
		// Without Run, the directory is not locked.
		return fmt.Errorf("dmworker: relay %s: cannot fetch %s: the relay is %s", r.dir, want, stage)
	}
	// Another reader may have fetched it meanwhile.
	s, oldest, err := r.rdir.Oldest()
	if err != nil {
		return err
	}
	if s != sub || !older(want, oldest) {
		return nil
	}
	up := r.up
	// Its own server id: a second dump under the relay's id would make the
	// upstream drop the relay's connection.
	up.Flavor, up.ServerID = flavor, 0
	ropts := append([]streamer.RemoteOption{streamer.WithLogger(r.opts.logger)}, r.remoteOptions()...)
	r.log.Info("relay fetching older upstream files", slog.String("subdir", sub), slog.String("from", want), slog.String("until", oldest))
	files, err := r.rdir.CopyUpstream(ctx, up, sub, want, oldest, ropts...)
	if err != nil {
		return fmt.Errorf("dmworker: relay %s: fetch %s up to %s/%s from the upstream: %w", r.dir, want, sub, oldest, err)
	}
	r.log.Info("relay fetched older upstream files", slog.String("subdir", sub), slog.Any("files", files))
	return nil
}

// older reports whether binlog file a comes before b.
func older(a, b string) bool {
	return streamer.Position{Name: a}.Compare(streamer.Position{Name: b}) < 0
}
