package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// relayLease is a reader's registration: the oldest position it needs.
type relayLease struct {
	r    *Relay
	name string
	pos  streamer.RelayPos
}

// RegisterReader records that the named reader needs everything from pos on;
// Purge keeps it until the lease advances past it or is released. It
// implements streamer.RelayRegistry.
func (r *Relay) RegisterReader(name string, pos streamer.RelayPos) (streamer.ReaderLease, error) {
	if name == "" {
		return nil, errors.New("dmworker: relay reader registration needs a name")
	}
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

// PurgeResult lists what a purge removed and what held it back.
type PurgeResult struct {
	Removed []string // paths of the files removed
	// Kept is the oldest file kept because a reader needs it or it is being
	// written; zero when nothing held the purge back.
	Kept streamer.RelayPos
}

// relayFile is one file of the relay directory, in order.
type relayFile struct {
	pos  streamer.RelayPos // SubDir and Name; Offset 0
	path string
	mod  time.Time
	size int64
}

// files lists the relay's files, oldest first.
func (r *Relay) files() ([]relayFile, error) {
	names, err := streamer.ReadRelayIndex(r.dir)
	if err != nil {
		return nil, err
	}
	var out []relayFile
	for _, sd := range names {
		fs, err := streamer.RelayFiles(filepath.Join(r.dir, sd))
		if err != nil {
			return nil, err
		}
		for _, f := range fs {
			p := filepath.Join(r.dir, sd, f)
			st, err := os.Stat(p)
			if err != nil {
				return nil, err
			}
			out = append(out, relayFile{pos: streamer.RelayPos{SubDir: sd, Name: f}, path: p, mod: st.ModTime(), size: st.Size()})
		}
	}
	return out, nil
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
func (r *Relay) purge(remove func(f relayFile) bool) (PurgeResult, error) {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	var res PurgeResult
	files, err := r.files()
	if err != nil {
		return res, err
	}
	need := r.needed()
	// The newest file is the one being written (or resumed), whatever the
	// registrations say.
	if n := len(files); n > 0 {
		if last := files[n-1].pos; need.IsZero() || last.Compare(need) < 0 {
			need = last
		}
	}
	needFile := streamer.RelayPos{SubDir: need.SubDir, Name: need.Name}
	touched := map[string]bool{}
	for _, f := range files {
		if f.pos.Compare(needFile) >= 0 {
			res.Kept = needFile
			break
		}
		if !remove(f) {
			continue
		}
		if err := os.Remove(f.path); err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, f.path)
		touched[f.pos.SubDir] = true
	}
	for sd := range touched {
		if err := streamer.SyncDir(filepath.Join(r.dir, sd)); err != nil {
			return res, err
		}
	}
	// A subdirectory left without files, other than the newest, goes
	// with its index line: the index first, so that a crash leaves at worst
	// an unlisted directory.
	names, err := streamer.ReadRelayIndex(r.dir)
	if err != nil {
		return res, err
	}
	keep := slices.Clone(names)
	var empty []string
	for i, sd := range names {
		if i == len(names)-1 || !touched[sd] {
			continue
		}
		fs, err := streamer.RelayFiles(filepath.Join(r.dir, sd))
		if err != nil {
			return res, err
		}
		if len(fs) == 0 {
			keep = slices.DeleteFunc(keep, func(n string) bool { return n == sd })
			empty = append(empty, sd)
		}
	}
	if len(empty) > 0 {
		if err := streamer.WriteRelayIndex(r.dir, keep); err != nil {
			return res, err
		}
		for _, sd := range empty {
			if err := os.RemoveAll(filepath.Join(r.dir, sd)); err != nil {
				return res, err
			}
		}
		if err := streamer.SyncDir(r.dir); err != nil {
			return res, err
		}
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
	return r.purge(func(f relayFile) bool { return f.pos.Compare(to) < 0 })
}

// PurgeOlderThan removes the relay files last written before t, except what
// a registered reader still needs and the file being written.
func (r *Relay) PurgeOlderThan(t time.Time) (PurgeResult, error) {
	return r.purge(func(f relayFile) bool { return f.mod.Before(t) })
}

// PurgeForSpace removes the oldest relay files while the file system holding
// the relay has less than minFree bytes available, except what a registered
// reader still needs and the file being written.
func (r *Relay) PurgeForSpace(minFree uint64) (PurgeResult, error) {
	free, err := freeSpace(r.dir)
	if err != nil {
		return PurgeResult{}, err
	}
	return r.purge(func(f relayFile) bool {
		if free >= minFree {
			return false
		}
		free += uint64(f.size)
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
				r.log.Warn("relay auto purge by age failed", slog.String("error", err.Error()))
			}
		}
		if r.cfg.PurgeRemainSpace > 0 {
			if _, err := r.PurgeForSpace(r.cfg.PurgeRemainSpace); err != nil {
				r.log.Warn("relay auto purge by space failed", slog.String("error", err.Error()))
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
