package dmworker

import (
	"context"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// PurgeResult lists what a purge removed and what held it back.
type PurgeResult struct {
	Removed []string // paths of the files removed
	// Kept is the oldest file kept because a reader needs it or it is being
	// written; zero when nothing held the purge back.
	Kept streamer.RelayPos
}

// needed is the oldest position a reader or the writer needs: nothing at or
// after its file may go.
func (r *Relay) needed() streamer.RelayPos {
	r.mu.Lock()
	defer r.mu.Unlock()
	need := r.relayed
	for l := range r.leases {
		if need.IsZero() || l.pos.Compare(need) < 0 {
			need = l.pos
		}
	}
	return need
}

// purge removes files, oldest first, while remove says so, stopping at the
// first file that is needed.
func (r *Relay) purge(remove func(f streamer.RelayFileInfo) bool) (PurgeResult, error) {
	r.purgeMu.Lock()
	removed, kept, err := r.rdir.Purge(r.needed(), remove)
	r.purgeMu.Unlock()
	res := PurgeResult{Removed: removed, Kept: kept}
	if err != nil {
		return res, err
	}
	if len(res.Removed) > 0 {
		if r.inst != nil {
			r.inst.purged.Add(uint64(len(res.Removed)))
		}
		r.log.Info("relay purged", slog.Int("files", len(res.Removed)), slog.String("kept-from", res.Kept.String()))
	}
	return res, nil
}

// PurgeTo removes the relay files before the named one (file in subdir, as
// listed in the index), except what a registered reader still needs and the
// file being written.
func (r *Relay) PurgeTo(subdir, file string) (PurgeResult, error) {
	to := streamer.RelayPos{SubDir: subdir, Name: file}
	if _, _, err := streamer.ParseSubDirName(subdir); err != nil {
		return PurgeResult{}, fmt.Errorf("dmworker: purge relay %s: %w", r.dir, err)
	}
	return r.purge(func(f streamer.RelayFileInfo) bool { return f.Pos.Compare(to) < 0 })
}

// PurgeOlderThan removes the relay files last written before t, except what
// a registered reader still needs and the file being written.
func (r *Relay) PurgeOlderThan(t time.Time) (PurgeResult, error) {
	return r.purge(func(f streamer.RelayFileInfo) bool { return f.ModTime.Before(t) })
}

// PurgeForSpace removes the oldest relay files while the file system holding
// the relay has less than minFree bytes available, except what a registered
// reader still needs and the file being written.
func (r *Relay) PurgeForSpace(minFree uint64) (PurgeResult, error) {
	free, err := freeSpace(r.dir)
	if err != nil {
		return PurgeResult{}, err
	}
	return r.purge(func(f streamer.RelayFileInfo) bool {
		if free >= minFree {
			return false
		}
		free += uint64(f.Size)
		return true
	})
}

func freeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// purgeLoop runs the automatic purge until ctx ends.
func (r *Relay) purgeLoop(ctx context.Context) {
	t := time.NewTicker(time.Duration(r.cfg.PurgeInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.cfg.PurgeExpires > 0 {
			if _, err := r.PurgeOlderThan(time.Now().Add(-time.Duration(r.cfg.PurgeExpires))); err != nil {
				r.log.Warn("relay auto purge by age failed", errAttr(err))
			}
		}
		if r.cfg.PurgeRemainSpace > 0 {
			if _, err := r.PurgeForSpace(r.cfg.PurgeRemainSpace); err != nil {
				r.log.Warn("relay auto purge by space failed", errAttr(err))
			}
		}
	}
}

// RelayStatus is a snapshot of a relay.
type RelayStatus struct {
	Stage RelayStage
	Dir   string
	// Relayed is the durable end of the relay, and RelayedGTID the GTID
	// set executed there ("" when unknown).
	Relayed     streamer.RelayPos
	RelayedGTID string
	// Upstream is the upstream's SHOW MASTER STATUS, zero when it could not
	// be read; BytesBehind how many binlog bytes the relay lacks.
	Upstream    streamer.Position
	BytesBehind uint64
	// LastError is the fault that stopped the relay; it is cleared when a
	// new Run has repaired the directory and pulls again.
	LastError error
}

// Status reports the relay's stage and position and, when the upstream
// answers within ctx, how far behind it the relay is.
func (r *Relay) Status(ctx context.Context) RelayStatus {
	r.mu.Lock()
	s := RelayStatus{Stage: r.stage, Dir: r.dir, Relayed: r.relayed, LastError: r.lastErr}
	if r.gtid != nil {
		s.RelayedGTID = r.gtid.String()
	}
	identity := r.identity
	r.mu.Unlock()
	st, err := streamer.QueryUpstream(ctx, r.up)
	if err != nil {
		return s
	}
	s.Upstream = st.Master
	if st.Identity != identity || s.Relayed.Name == "" {
		for _, b := range st.Binlogs {
			s.BytesBehind += b.Size
		}
		return s
	}
	cur := streamer.Position{Name: s.Relayed.Name}
	for _, b := range st.Binlogs {
		switch c := (streamer.Position{Name: b.Name}).Compare(cur); {
		case c == 0 && b.Size > s.Relayed.Offset:
			s.BytesBehind += b.Size - s.Relayed.Offset
		case c > 0:
			s.BytesBehind += b.Size
		}
	}
	return s
}
