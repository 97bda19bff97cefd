package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-mysql-org/go-mysql/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/dmworker/dmworker/streamer"
)

// relayPlan is where a relay session writes and from where it pulls.
type relayPlan struct {
	subdir string // subdirectory name
	file   string // file to resume appending to; "" to start with a new file
	start  streamer.Position
	fresh  bool // a new subdirectory (or file) with nothing to resume
}

// session pulls from the upstream until pause closes, ctx ends, or a fault
// stops it. It returns nil in the first two cases.
func (r *Relay) session(ctx context.Context, pause <-chan struct{}) error {
	// Pause ends the session's context; the watcher ends with the session.
	sctx, scancel := context.WithCancel(ctx)
	var watch errgroup.Group
	defer watch.Wait()
	defer scancel()
	watch.Go(func() error {
		select {
		case <-pause:
			scancel()
		case <-sctx.Done():
		}
		return nil
	})

	st, err := r.queryUpstream(sctx)
	if err != nil {
		if sctx.Err() != nil {
			return nil
		}
		return err
	}
	up := r.up
	up.Flavor = st.Flavor
	plan, err := r.plan(sctx, up, st)
	if err != nil {
		if sctx.Err() != nil {
			return nil
		}
		return err
	}
	r.log.Info("relay pulling", slog.String("subdir", plan.subdir), slog.String("from", plan.start.String()),
		slog.String("sync", r.cfg.SyncPolicy.String()))
	r.started()

	// The relay copies bytes: the raw reader decodes no more of an event
	// than framing needs, and allocates nothing per event. The upstream
	// has just answered: failing to reach it now is an outage to wait out.
	ropts := append([]streamer.RemoteOption{streamer.WithLogger(r.opts.logger), streamer.WithRetryFirstConnect()}, r.remoteOptions()...)
	reader, err := streamer.NewRawReader(up, plan.start, ropts...)
	if err != nil {
		return err
	}
	defer reader.Close()
	writer, err := r.rdir.Writer(plan.subdir, plan.file)
	if err != nil {
		return err
	}
	defer writer.Close()
	// Full buffers go to the file from the writer's goroutine while this
	// one goes on reading; whole blocks with direct I/O unless the host
	// asked for the page cache.
	writer.WriteBehind()
	if !r.cfg.BufferedIO {
		if err := writer.DirectIO(); err != nil {
			return err
		}
	}

	// The syncer fsyncs and publishes in the background (group commit,
	// see relaySyncer); a failure there ends the session through fctx.
	fctx, fcancel := context.WithCancelCause(sctx)
	defer fcancel(nil)
	syncer := r.startSyncer(fcancel)
	defer syncer.stop()

	var (
		policy   = r.cfg.SyncPolicy
		dirty    bool   // a boundary written and not yet handed to the syncer
		written  bool   // this session has written something
		total    uint64 // bytes this session has written
		lastSync = time.Now()
		pending  streamer.RelayPos
		// startReached: pending has reached the upstream's end as of
		// the session's start (st.Master)
		startReached bool
		// deadline bounds a wait while data is not handed to the syncer
		deadline waitDeadline
	)
	defer deadline.stop()
	in := r.inst
	// requestSync writes out the writer's buffer and hands the boundary
	// pending to the syncer, which makes it durable and publishes it. It
	// does not wait for the disk.
	requestSync := func() error {
		deadline.stop()
		if !dirty {
			return nil
		}
		// The writes go on behind: the syncer waits for them before
		// its fsync, this goroutine goes on reading.
		pt, err := writer.FlushBehind()
		if err != nil {
			return err
		}
		dirty = false
		lastSync = time.Now()
		// Only a transaction's end changes the reader's set, and no
		// event delivered since pending ended one: a written boundary
		// would have moved pending, and events the file held already
		// (not written) come only before the session's first write. So
		// the reader's set is the set at pending; it is copied here,
		// once per sync, not once per transaction.
		if err := syncer.post(relaySyncJob{pt: pt, pos: pending, gset: reader.GTIDSet(), written: total}); err != nil {
			return err
		}
		return syncer.catchUp(total)
	}
	// finish makes what was written durable when the session ends: the
	// syncer finishes what it was handed, and the rest is synced here.
	finish := func(err error) error {
		rerr := requestSync()
		if serr := syncer.stop(); serr != nil {
			// Nothing after the syncer's failure is published.
			if err == nil {
				err = serr
			}
			return err
		}
		if rerr == nil {
			rerr = writer.Sync()
		}
		if err == nil {
			err = rerr
		}
		return err
	}
	if policy.kind == syncInterval {
		// Once the relay has taken everything the upstream sent, what it
		// wrote is synced at once rather than when the interval ends: a
		// burst's last transactions are durable (and readers see them)
		// without waiting. At most once per interval, so that a trickle
		// of transactions costs at most two fsyncs per interval.
		var lastEarly time.Time
		reader.OnCaughtUp(func() {
			if !dirty || (!lastEarly.IsZero() && time.Since(lastEarly) < policy.interval) {
				return
			}
			lastEarly = time.Now()
			if err := requestSync(); err != nil {
				// Next returns with fctx ended, and the loop below
				// finishes the session with err.
				fcancel(err)
			}
		})
	}
	for {
		gctx := fctx
		if dirty && policy.kind == syncInterval {
			gctx = deadline.context(fctx, lastSync.Add(policy.interval))
		}
		ev, err := reader.Next(gctx)
		if err != nil {
			if sctx.Err() != nil {
				return finish(nil)
			}
			if fctx.Err() != nil {
				// The syncer failed.
				return finish(context.Cause(fctx))
			}
			if !written && !plan.fresh && errors.Is(err, streamer.ErrBadPosition) {
				// The upstream has no event where the relay's copy has
				// one: its binlog is not the one copied.
				r.log.Warn("upstream rejects the relay's resume position", errAttr(err))
				r.forceReset = true
				return finish(nil)
			}
			if gctx != fctx && gctx.Err() != nil {
				// The interval passed with nothing new: sync now.
				if err := requestSync(); err != nil {
					return finish(err)
				}
				continue
			}
			if in != nil {
				in.readErrors.Add(1)
			}
			return finish(err)
		}
		wrote, err := writer.WriteRaw(ev)
		if err != nil {
			if !written && (errors.Is(err, streamer.ErrRelayDiverged) || errors.Is(err, streamer.ErrRelayOverlap)) {
				// Same server, same file name, other content: its binlog
				// was reset. The next session starts a new subdirectory.
				r.log.Warn("upstream binlog differs from the relay copy", errAttr(err))
				r.forceReset = true
				return finish(nil)
			}
			return finish(err)
		}
		written = written || wrote
		if wrote {
			total += uint64(len(ev.Data))
			if in != nil {
				in.events.Add(1)
				in.bytes.Add(uint64(len(ev.Data)))
			}
		}
		if !wrote || !ev.Boundary {
			continue
		}
		name, _ := writer.File()
		pending = streamer.RelayPos{SubDir: plan.subdir, Name: name, Offset: ev.Pos.Offset}
		if ev.Pos.Name != name {
			// A rotate: the writer has moved to the next file.
			pending.Offset = 4
		}
		dirty = true
		// Reaching where the upstream's binlog ended when the session
		// began is catching up too (without waiting for the reader to
		// find the socket empty): synced at once, once a session.
		reachedStart := policy.kind == syncInterval && !startReached && relayPosReached(pending, st.Master)
		startReached = startReached || reachedStart
		switch {
		case policy.kind == syncEachTxn,
			policy.kind == syncInterval && time.Since(lastSync) >= policy.interval,
			reachedStart,
			policy.kind == syncOnRotate && pending.Offset == 4:
			if err := requestSync(); err != nil {
				return finish(err)
			}
		}
	}
}

// relayPosReached reports whether the relay position pos is at or past the
// upstream position end (a file name and offset; false when end names no
// file).
func relayPosReached(pos streamer.RelayPos, end streamer.Position) bool {
	if end.Name == "" || pos.Name == "" {
		return false
	}
	switch c := (streamer.Position{Name: pos.Name}).Compare(streamer.Position{Name: end.Name}); {
	case c > 0:
		return true
	case c == 0:
		return pos.Offset >= end.Offset
	}
	return false
}

// queryUpstream reads the upstream's identity and binlog list, retrying
// faults that a new connection may cure. Until the upstream has answered
// once, an unreachable upstream is a wrong address, not a fault: it fails.
func (r *Relay) queryUpstream(ctx context.Context) (streamer.UpstreamState, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 10*time.Second, 0
	for {
		st, err := streamer.QueryUpstream(ctx, r.up)
		if err == nil {
			r.reached = true
			return st, nil
		}
		if errors.Is(err, streamer.ErrAccessDenied) || errors.Is(err, streamer.ErrUnknownHost) || ctx.Err() != nil ||
			(!r.reached && errors.Is(err, streamer.ErrUnreachable)) {
			return st, err
		}
		wait := b.NextBackOff()
		r.log.Warn("upstream not reachable, retrying", slog.Duration("wait", wait), errAttr(err))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return st, ctx.Err()
		}
	}
}

// plan repairs the newest subdirectory and decides where this session
// writes: on in it when the upstream is the same server with the same
// binlog history, in a new subdirectory otherwise.
func (r *Relay) plan(ctx context.Context, up streamer.UpstreamConfig, st streamer.UpstreamState) (relayPlan, error) {
	dir, err := r.rdir.Prepare(st.Flavor)
	if err != nil {
		return relayPlan{}, err
	}
	if len(dir.Subdirs) == 0 {
		start, err := r.freshStart(ctx, up, st)
		if err != nil {
			return relayPlan{}, err
		}
		return r.newSubdir(st.Identity, start)
	}
	last := dir.Subdirs[len(dir.Subdirs)-1]
	id, _, _ := streamer.ParseSubDirName(last)
	rep := dir.Newest
	if rep.File == "" {
		// A subdirectory with no file yet (a crash right after creating
		// it): start it as a fresh relay would.
		start, err := r.freshStart(ctx, up, st)
		if err != nil {
			return relayPlan{}, err
		}
		r.setRelayed(streamer.RelayPos{SubDir: last}, nil)
		return relayPlan{subdir: last, start: streamer.Position{Name: start.Name, Offset: 4}, fresh: true}, nil
	}
	r.setRelayed(streamer.RelayPos{SubDir: last, Name: rep.File, Offset: rep.End}, rep.GTIDSet)
	reset := id == st.Identity && (r.forceReset || binlogReset(st, rep))
	r.forceReset = false
	if id == st.Identity && !reset {
		r.setIdentity(id)
		// Resume a little early, at the last transaction-ending event:
		// re-reading it (its transaction id and timestamp are unique to
		// this history) checks that the upstream's file is still the one
		// copied, since a reset binlog reuses the names.
		start := streamer.Position{Name: rep.ResumeFile, Offset: rep.ResumeAt}
		if rep.GTIDSet != nil {
			start.Flavor, start.GTIDSet = st.Flavor, rep.GTIDSet
		}
		file := rep.ResumeFile
		if rep.End < 4 && rep.ResumeFile == rep.File {
			file = "" // the torn file was removed; the upstream's rotate recreates it
			start.Offset = 4
		}
		return relayPlan{subdir: last, file: file, start: start}, nil
	}

	// A new server, or the same one with its binlog reset.
	r.log.Warn("upstream changed, starting a new relay subdirectory",
		slog.String("old", id), slog.String("new", st.Identity), slog.Bool("binlog-reset", reset))
	var start streamer.Position
	if rep.GTIDSet != nil && !reset {
		file, err := locateGTID(ctx, up, rep.GTIDSet, r.remoteOptions())
		if err != nil {
			return relayPlan{}, fmt.Errorf("dmworker: relay %s: the new upstream %s cannot continue from %s: %w",
				r.dir, st.Identity, rep.GTIDSet, err)
		}
		start = streamer.Position{Name: file, Offset: 4}
	} else {
		// The binlog history restarted: copy it from its beginning.
		if len(st.Binlogs) == 0 {
			return relayPlan{}, fmt.Errorf("dmworker: relay %s: upstream %s has no binlog", r.dir, r.up.SourceName())
		}
		start = streamer.Position{Name: st.Binlogs[0].Name, Offset: 4}
	}
	return r.newSubdir(st.Identity, start)
}

// newSubdir starts the next subdirectory, for identity.
func (r *Relay) newSubdir(identity string, start streamer.Position) (relayPlan, error) {
	name, err := r.rdir.NewSubdir(identity)
	if err != nil {
		return relayPlan{}, err
	}
	r.setIdentity(identity)
	r.setRelayed(streamer.RelayPos{SubDir: name}, nil)
	return relayPlan{subdir: name, start: streamer.Position{Name: start.Name, Offset: 4}, fresh: true}, nil
}

// freshStart is the first file an empty relay copies.
func (r *Relay) freshStart(ctx context.Context, up streamer.UpstreamConfig, st streamer.UpstreamState) (streamer.Position, error) {
	s := r.cfg.RelayStart
	switch {
	case s.Name != "":
		return streamer.Position{Name: s.Name, Offset: 4}, nil
	case s.GTIDSet != nil:
		file, err := locateGTID(ctx, up, s.GTIDSet, r.remoteOptions())
		if err != nil {
			return streamer.Position{}, err
		}
		return streamer.Position{Name: file, Offset: 4}, nil
	case st.Master.Name != "":
		return streamer.Position{Name: st.Master.Name, Offset: 4}, nil
	}
	return streamer.Position{}, fmt.Errorf("dmworker: relay for %s: the upstream has no binlog (is log_bin on?)", r.up.SourceName())
}

// locateGTID asks the upstream which file holds the first transaction not in
// gset: a GTID dump starts with a rotate to that file.
func locateGTID(ctx context.Context, up streamer.UpstreamConfig, gset mysql.GTIDSet, ropts []streamer.RemoteOption) (string, error) {
	rr, err := streamer.NewRemoteReader(up, streamer.Position{Flavor: up.Flavor, GTIDSet: gset.Clone()}, ropts...)
	if err != nil {
		return "", err
	}
	defer rr.Close()
	for {
		ev, err := rr.GetEvent(ctx)
		if err != nil {
			return "", err
		}
		if ev.Pos.Name != "" {
			return ev.Pos.Name, nil
		}
	}
}

// binlogReset reports whether the upstream's binlog restarted since the
// relay copied rep: the relay's file is gone while every upstream file is
// older, or it is shorter than what the relay holds.
func binlogReset(st streamer.UpstreamState, rep streamer.RelayRepair) bool {
	cur := streamer.Position{Name: rep.File}
	newer := false
	for _, b := range st.Binlogs {
		if b.Name == rep.File {
			return b.Size < rep.End
		}
		if (streamer.Position{Name: b.Name}).Compare(cur) > 0 {
			newer = true
		}
	}
	// Missing: purged if later files exist (the reader will say so),
	// reset if all are older.
	return !newer
}

func (r *Relay) setIdentity(id string) {
	r.mu.Lock()
	r.identity = id
	r.mu.Unlock()
}

func (r *Relay) setRelayed(pos streamer.RelayPos, gset mysql.GTIDSet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.relayed != pos {
		r.relayed, r.gtid = pos, gset
		close(r.notify)
		r.notify = make(chan struct{})
	}
}
