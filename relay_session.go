package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dmworker/dmworker/streamer"
)

// relayPlan is where a relay session writes and from where it pulls.
type relayPlan struct {
	subdir string // subdirectory name
	path   string // subdirectory path
	file   string // file to resume appending to; "" to start with a new file
	start  streamer.Position
	fresh  bool // a new subdirectory (or file) with nothing to resume
}

// session pulls from the upstream until pause closes, ctx ends, or a fault
// stops it. It returns nil in the first two cases.
func (r *Relay) session(ctx context.Context, pause <-chan struct{}) error {
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go func() {
		select {
		case <-pause:
			scancel()
		case <-sctx.Done():
		}
	}()

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
	writer, err := streamer.NewRelayFileWriter(plan.path, plan.file)
	if err != nil {
		return err
	}
	defer writer.Close()
	writer.SetFileMode(r.cfg.FileMode)

	var (
		policy   = r.cfg.SyncPolicy
		dirty    bool // written data not yet durable and published
		written  bool // this session has written something
		lastSync = time.Now()
		pending  streamer.RelayPos
		// deadline bounds a wait while data is not durable yet
		deadline waitDeadline
	)
	defer deadline.stop()
	in := r.inst
	syncPublish := func() error {
		var t0 time.Time
		if in != nil {
			t0 = time.Now()
		}
		if err := writer.Sync(); err != nil {
			return err
		}
		lastSync = time.Now()
		if in != nil {
			in.fsyncs.Add(1)
			in.fsyncDur.observe(lastSync.Sub(t0))
		}
		if dirty {
			dirty = false
			// Only a transaction's end changes the reader's set, and
			// no event delivered since pending ended one: a written
			// boundary would have moved pending, and events the file
			// held already (not written) come only before the
			// session's first write. So the reader's set is the set
			// at pending; it is copied here, once per sync, not once
			// per transaction.
			if err := r.publish(plan.path, pending, reader.GTIDSet()); err != nil {
				return err
			}
		}
		deadline.stop()
		return nil
	}
	// finish makes what was written durable when the session ends.
	finish := func(err error) error {
		if serr := syncPublish(); err == nil {
			err = serr
		}
		return err
	}
	for {
		gctx := sctx
		if dirty && policy.kind == syncInterval {
			gctx = deadline.context(sctx, lastSync.Add(policy.interval))
		}
		ev, err := reader.Next(gctx)
		if err != nil {
			if sctx.Err() != nil {
				return finish(nil)
			}
			if !written && !plan.fresh && errors.Is(err, streamer.ErrBadPosition) {
				// The upstream has no event where the relay's copy has
				// one: its binlog is not the one copied.
				r.log.Warn("upstream rejects the relay's resume position", slog.String("error", err.Error()))
				r.forceReset = true
				return finish(nil)
			}
			if gctx != sctx && gctx.Err() != nil {
				// The interval passed with nothing new: sync now.
				if err := syncPublish(); err != nil {
					return err
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
				r.log.Warn("upstream binlog differs from the relay copy", slog.String("error", err.Error()))
				r.forceReset = true
				return finish(nil)
			}
			return finish(err)
		}
		written = written || wrote
		if wrote && in != nil {
			in.events.Add(1)
			in.bytes.Add(uint64(len(ev.Data)))
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
		switch {
		case policy.kind == syncEachTxn,
			policy.kind == syncInterval && time.Since(lastSync) >= policy.interval,
			policy.kind == syncOnRotate && pending.Offset == 4:
			if err := syncPublish(); err != nil {
				return err
			}
		}
	}
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
		r.log.Warn("upstream not reachable, retrying", slog.Duration("wait", wait), slog.String("error", err.Error()))
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
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	names, err := streamer.ReadRelayIndex(r.dir)
	if err != nil {
		return relayPlan{}, err
	}
	// A subdirectory with files that the index does not list means a
	// damaged index: writing a new one would drop it from the relay.
	unlisted, err := streamer.UnlistedSubdirs(r.dir, names)
	if err != nil {
		return relayPlan{}, err
	}
	if len(unlisted) > 0 {
		return relayPlan{}, relayCorrupt(filepath.Join(r.dir, streamer.RelayIndexFile),
			"the index lists %q but not %q, which holds relay files", names, unlisted)
	}
	if len(names) == 0 {
		start, err := r.freshStart(ctx, up, st)
		if err != nil {
			return relayPlan{}, err
		}
		return r.newSubdir(names, st.Identity, 1, start)
	}
	last := names[len(names)-1]
	id, seq, _ := streamer.ParseSubDirName(last)
	path := filepath.Join(r.dir, last)
	rep, err := repairSubdir(path, st.Flavor, r.log)
	if err != nil {
		return relayPlan{}, err
	}
	if rep.file == "" {
		// A subdirectory with no file yet (a crash right after creating
		// it): start it as a fresh relay would.
		start, err := r.freshStart(ctx, up, st)
		if err != nil {
			return relayPlan{}, err
		}
		r.setRelayed(streamer.RelayPos{SubDir: last}, nil)
		return relayPlan{subdir: last, path: path, start: streamer.Position{Name: start.Name, Offset: 4}, fresh: true}, nil
	}
	r.setRelayed(streamer.RelayPos{SubDir: last, Name: rep.file, Offset: rep.offset}, rep.gset)
	reset := id == st.Identity && (r.forceReset || binlogReset(st, rep))
	r.forceReset = false
	if id == st.Identity && !reset {
		r.setIdentity(id)
		// Resume a little early, at the last transaction-ending event:
		// re-reading it (its transaction id and timestamp are unique to
		// this history) checks that the upstream's file is still the one
		// copied, since a reset binlog reuses the names.
		start := streamer.Position{Name: rep.resumeFile, Offset: rep.resumeAt}
		if rep.gset != nil {
			start.Flavor, start.GTIDSet = st.Flavor, rep.gset
		}
		file := rep.resumeFile
		if rep.offset < 4 && rep.resumeFile == rep.file {
			file = "" // the torn file was removed; the upstream's rotate recreates it
			start.Offset = 4
		}
		return relayPlan{subdir: last, path: path, file: file, start: start}, nil
	}

	// A new server, or the same one with its binlog reset.
	r.log.Warn("upstream changed, starting a new relay subdirectory",
		slog.String("old", id), slog.String("new", st.Identity), slog.Bool("binlog-reset", reset))
	var start streamer.Position
	if rep.gset != nil && !reset {
		file, err := locateGTID(ctx, up, rep.gset, r.remoteOptions())
		if err != nil {
			return relayPlan{}, fmt.Errorf("dmworker: relay %s: the new upstream %s cannot continue from %s: %w",
				r.dir, st.Identity, rep.gset, err)
		}
		start = streamer.Position{Name: file, Offset: 4}
	} else {
		// The binlog history restarted: copy it from its beginning.
		if len(st.Binlogs) == 0 {
			return relayPlan{}, fmt.Errorf("dmworker: relay %s: upstream %s has no binlog", r.dir, r.up.SourceName())
		}
		start = streamer.Position{Name: st.Binlogs[0].Name, Offset: 4}
	}
	return r.newSubdir(names, st.Identity, seq+1, start)
}

// newSubdir creates subdirectory seq for identity and adds it to the index.
func (r *Relay) newSubdir(names []string, identity string, seq int, start streamer.Position) (relayPlan, error) {
	name := streamer.SubDirName(identity, seq)
	path := filepath.Join(r.dir, name)
	if err := os.MkdirAll(path, r.cfg.DirMode); err != nil {
		return relayPlan{}, err
	}
	if err := streamer.SyncDir(r.dir); err != nil {
		return relayPlan{}, err
	}
	if err := streamer.WriteRelayIndex(r.dir, append(slices.Clone(names), name)); err != nil {
		return relayPlan{}, err
	}
	r.setIdentity(identity)
	r.setRelayed(streamer.RelayPos{SubDir: name}, nil)
	return relayPlan{subdir: name, path: path, start: streamer.Position{Name: start.Name, Offset: 4}, fresh: true}, nil
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
func binlogReset(st streamer.UpstreamState, rep repaired) bool {
	cur := streamer.Position{Name: rep.file}
	newer := false
	for _, b := range st.Binlogs {
		if b.Name == rep.file {
			return b.Size < rep.offset
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

// repaired is a subdirectory's resume point after repair.
type repaired struct {
	file       string
	offset     uint64 // where the file ends after repair
	gset       mysql.GTIDSet
	resumeFile string // where to resume reading: the last transaction-ending
	resumeAt   uint64 // event of the subdirectory, or the newest file's start
}

// repairSubdir checks a subdirectory against its meta, cuts a torn tail off
// its newest file and rewrites the meta to match. Damage before the durable
// end recorded in the meta is an error, and then nothing is changed.
func repairSubdir(path, flavor string, log *slog.Logger) (repaired, error) {
	files, err := streamer.RelayFiles(path)
	if err != nil {
		return repaired{}, err
	}
	meta, err := streamer.ReadRelayMeta(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return repaired{}, err
	}
	metaPath := filepath.Join(path, streamer.RelayMetaFile)
	if len(files) == 0 {
		if meta.BinlogName != "" {
			return repaired{}, relayCorrupt(metaPath, "relay.meta names %s, which is missing", meta.BinlogName)
		}
		return repaired{}, nil
	}
	newest := files[len(files)-1]
	durable := uint64(0)
	if meta.BinlogName != "" {
		if !slices.Contains(files, meta.BinlogName) {
			return repaired{}, relayCorrupt(metaPath, "relay.meta names %s, which is missing", meta.BinlogName)
		}
		if meta.BinlogName == newest {
			durable = meta.BinlogPos
		} else {
			st, err := os.Stat(filepath.Join(path, meta.BinlogName))
			if err != nil {
				return repaired{}, err
			}
			if uint64(st.Size()) < meta.BinlogPos {
				return repaired{}, &streamer.RelayError{Path: filepath.Join(path, meta.BinlogName), Offset: st.Size(),
					Kind: streamer.ErrRelayCorrupt,
					Err:  fmt.Errorf("the file ends at %d, before the durable end %d that %s records", st.Size(), meta.BinlogPos, metaPath)}
			}
		}
	}
	file := filepath.Join(path, newest)
	scan, err := streamer.ScanRelayFile(file, flavor)
	if err != nil {
		return repaired{}, err
	}
	if durable > uint64(scan.Size) {
		// The file lost bytes that were durable: truncated by someone.
		return repaired{}, &streamer.RelayError{Path: file, Offset: scan.Size, Kind: streamer.ErrRelayCorrupt,
			Err: fmt.Errorf("the file ends at %d, before the durable end %d that %s records", scan.Size, durable, metaPath)}
	}
	if scan.BadAt >= 0 && uint64(scan.BadAt) < durable {
		return repaired{}, &streamer.RelayError{Path: file, Offset: scan.BadAt, Kind: streamer.ErrRelayCorrupt,
			Err: fmt.Errorf("before the durable end %d: %w", durable, scan.Bad)}
	}
	if uint64(scan.TxnEnd) < durable {
		return repaired{}, relayCorrupt(file, "the last whole transaction ends at %d, before the durable end %d", scan.TxnEnd, durable)
	}
	cut := scan.TxnEnd
	if scan.EventEnd >= 4 && scan.Events == 0 {
		// The magic but no whole format description: keep the file,
		// cut back to its magic, and go on writing it from there. (A
		// reader following the relay may hold it open already:
		// removing it would leave that reader with a deleted file
		// while the next one is written.)
		if scan.Size > 4 {
			log.Warn("cutting a torn header off the relay file", slog.String("file", file), slog.Int64("bytes", scan.Size-4))
			if err := truncateSync(file, 4); err != nil {
				return repaired{}, err
			}
		}
		rep := repaired{file: newest, offset: 4, resumeFile: newest, resumeAt: 4}
		m := streamer.RelayMeta{BinlogName: newest, BinlogPos: 4}
		if meta.BinlogName == newest && meta.BinlogPos == 4 && meta.BinlogGTID != "" {
			if g, err := streamer.NewGTIDSet(flavor, meta.BinlogGTID); err == nil {
				rep.gset, m.BinlogGTID = g, meta.BinlogGTID
			}
		}
		if m != meta {
			return rep, streamer.WriteRelayMeta(path, m)
		}
		return rep, nil
	}
	if scan.EventEnd < 4 {
		// Not even the magic made it: start the file again.
		log.Warn("relay file without a whole header, removing it", slog.String("file", file))
		if err := os.Remove(file); err != nil {
			return repaired{}, err
		}
		if err := streamer.SyncDir(path); err != nil {
			return repaired{}, err
		}
		rep := repaired{file: newest, offset: 0, resumeFile: newest, resumeAt: 4}
		return rep, streamer.WriteRelayMeta(path, streamer.RelayMeta{BinlogName: newest, BinlogPos: 4})
	}
	if cut < scan.Size {
		log.Warn("cutting a torn tail off the relay file", slog.String("file", file),
			slog.Int64("at", cut), slog.Int64("bytes", scan.Size-cut), slog.Any("why", scan.Bad))
		if err := truncateSync(file, cut); err != nil {
			return repaired{}, err
		}
	}
	rep := repaired{file: newest, offset: uint64(cut), gset: scan.GTIDSet, resumeFile: newest, resumeAt: 4}
	if scan.LastTxnEventStart >= 0 {
		rep.resumeAt = uint64(scan.LastTxnEventStart)
	} else if len(files) > 1 {
		// No transaction in the newest file yet: resume in the previous
		// one, which is whole (it ends with a rotate).
		prev := filepath.Join(path, files[len(files)-2])
		ps, err := streamer.ScanRelayFile(prev, flavor)
		if err != nil {
			return repaired{}, err
		}
		if ps.BadAt >= 0 {
			return repaired{}, &streamer.RelayError{Path: prev, Offset: ps.BadAt, Kind: streamer.ErrRelayCorrupt, Err: ps.Bad}
		}
		if ps.LastTxnEventStart >= 0 {
			rep.resumeFile, rep.resumeAt = files[len(files)-2], uint64(ps.LastTxnEventStart)
		}
	}
	if rep.gset == nil && meta.BinlogName == newest && meta.BinlogPos == rep.offset && meta.BinlogGTID != "" {
		if g, err := streamer.NewGTIDSet(flavor, meta.BinlogGTID); err == nil {
			rep.gset = g
		}
	}
	m := streamer.RelayMeta{BinlogName: newest, BinlogPos: rep.offset}
	if rep.gset != nil {
		m.BinlogGTID = rep.gset.String()
	}
	if m != meta {
		if err := streamer.WriteRelayMeta(path, m); err != nil {
			return repaired{}, err
		}
	}
	return rep, nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func relayCorrupt(path, format string, args ...any) error {
	return &streamer.RelayError{Path: path, Offset: -1, Kind: streamer.ErrRelayCorrupt, Err: fmt.Errorf(format, args...)}
}
