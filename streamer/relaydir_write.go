package streamer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// ErrRelayLocked means another process holds the relay directory's lock
// (RelayDir.Lock). It is wrapped in *RelayError.
var ErrRelayLocked = errors.New("streamer: relay directory in use by another process")

// RelayDir is the write half of a relay directory (layout in the package
// doc): the lock that keeps a second writer out, the index and its
// subdirectories, the repair of the newest subdirectory after a crash,
// relay.meta, the removal of old files for purge, and the copy of older
// upstream files. dmworker.Relay holds one. Its methods are safe for
// concurrent use; those that change the index are serialised.
type RelayDir struct {
	path     string
	fileMode os.FileMode
	dirMode  os.FileMode
	log      *slog.Logger

	indexMu sync.Mutex // serialises changes of the index and subdirectories
}

// NewRelayDir returns the write half of the relay directory at path. Files
// it creates get fileMode, directories dirMode (before the process's umask;
// DefaultRelayFileMode and DefaultRelayDirMode unless the host widens them).
// It touches nothing on disk: Lock creates the directory. A nil logger
// discards.
func NewRelayDir(path string, fileMode, dirMode os.FileMode, log *slog.Logger) *RelayDir {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RelayDir{path: path, fileMode: fileMode.Perm(), dirMode: dirMode.Perm(), log: log}
}

// Path is the relay directory.
func (d *RelayDir) Path() string { return d.path }

// Lock creates the directory when missing and takes an exclusive lock on it
// (flock on its .lock file), which unlock releases: one writer per
// directory, across processes. A directory another process holds fails with
// ErrRelayLocked.
func (d *RelayDir) Lock() (unlock func(), err error) {
	if err := os.MkdirAll(d.path, d.dirMode); err != nil {
		return nil, fmt.Errorf("streamer: relay directory %s: %w", d.path, err)
	}
	lock := filepath.Join(d.path, ".lock")
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, d.fileMode)
	if err != nil {
		return nil, fmt.Errorf("streamer: relay directory %s: lock: %w", d.path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &RelayError{Path: d.path, Offset: -1, Kind: ErrRelayLocked}
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// RelayRepair is where a repaired subdirectory stands (RelayDir.Prepare).
type RelayRepair struct {
	// File is the newest binlog file ("" when the subdirectory has none)
	// and End where it ends after the repair (0: it was removed, having
	// not even its magic; the writer starts it again).
	File string
	End  uint64
	// GTIDSet is the set executed at End, when the files or relay.meta
	// say; nil otherwise.
	GTIDSet mysql.GTIDSet
	// ResumeFile and ResumeAt are where a writer resumes reading the
	// upstream: at the last transaction-ending event of the subdirectory
	// (re-reading it checks that the upstream's file is still the one
	// copied), or at the newest file's start.
	ResumeFile string
	ResumeAt   uint64
}

// RelayDirState is what RelayDir.Prepare found.
type RelayDirState struct {
	// Subdirs lists the subdirectories in the index, oldest first.
	Subdirs []string
	// Newest is the repaired state of the newest subdirectory (zero when
	// Subdirs is empty).
	Newest RelayRepair
}

// Prepare reads the index, checks that no subdirectory holding relay files
// is missing from it, and repairs the newest subdirectory: it checks it
// against its relay.meta, cuts a torn tail (an event or transaction a crash
// cut short) off its newest file and rewrites relay.meta to match. Damage
// that a crash cannot leave (a file shorter than relay.meta's durable end,
// a checksum mismatch before it, a meta or index holding garbage, an index
// that lost subdirectories holding files) fails with a *RelayError wrapping
// ErrRelayCorrupt that names the file and offset, and nothing is changed.
// flavor is the upstream's, to read GTID sets. Call it with the lock held.
func (d *RelayDir) Prepare(flavor string) (RelayDirState, error) {
	d.indexMu.Lock()
	defer d.indexMu.Unlock()
	names, err := ReadRelayIndex(d.path)
	if err != nil {
		return RelayDirState{}, err
	}
	// A subdirectory with files that the index does not list means a
	// damaged index: writing a new one would drop it from the relay.
	unlisted, err := unlistedSubdirs(d.path, names)
	if err != nil {
		return RelayDirState{}, err
	}
	if len(unlisted) > 0 {
		return RelayDirState{}, corruptf(filepath.Join(d.path, RelayIndexFile), -1,
			"the index lists %q but not %q, which holds relay files", names, unlisted)
	}
	st := RelayDirState{Subdirs: names}
	if len(names) == 0 {
		return st, nil
	}
	st.Newest, err = d.repair(filepath.Join(d.path, names[len(names)-1]), flavor)
	return st, err
}

// NewSubdir creates the next subdirectory, for the upstream server
// identity, and appends it to the index: its sequence follows the newest
// subdirectory's (1 in an empty relay). It returns the subdirectory's name.
func (d *RelayDir) NewSubdir(identity string) (string, error) {
	d.indexMu.Lock()
	defer d.indexMu.Unlock()
	names, err := ReadRelayIndex(d.path)
	if err != nil {
		return "", err
	}
	seq := 1
	if n := len(names); n > 0 {
		_, last, _ := ParseSubDirName(names[n-1])
		seq = last + 1
	}
	name := SubDirName(identity, seq)
	if err := os.MkdirAll(filepath.Join(d.path, name), d.dirMode); err != nil {
		return "", err
	}
	if err := syncDir(d.path); err != nil {
		return "", err
	}
	if err := WriteRelayIndex(d.path, append(names, name)); err != nil {
		return "", err
	}
	return name, nil
}

// Writer returns a writer appending to subdirectory sub, resuming at the
// end of file when set (a file Prepare repaired).
func (d *RelayDir) Writer(sub, file string) (*RelayFileWriter, error) {
	w, err := newRelayFileWriter(filepath.Join(d.path, sub), file)
	if err != nil {
		return nil, err
	}
	w.perm = d.fileMode
	return w, nil
}

// WriteMeta replaces subdirectory sub's relay.meta atomically.
func (d *RelayDir) WriteMeta(sub string, m RelayMeta) error {
	return WriteRelayMeta(filepath.Join(d.path, sub), m)
}

// RelayFileInfo is one binlog file of a relay directory, as Purge offers it.
type RelayFileInfo struct {
	Pos     RelayPos // SubDir and Name; Offset 0
	Path    string
	ModTime time.Time
	Size    int64
}

// files lists the relay's binlog files, oldest first.
func (d *RelayDir) files() ([]RelayFileInfo, error) {
	names, err := ReadRelayIndex(d.path)
	if err != nil {
		return nil, err
	}
	var out []RelayFileInfo
	for _, sd := range names {
		fs, err := RelayFiles(filepath.Join(d.path, sd))
		if err != nil {
			return nil, err
		}
		for _, f := range fs {
			p := filepath.Join(d.path, sd, f)
			st, err := os.Stat(p)
			if err != nil {
				return nil, err
			}
			out = append(out, RelayFileInfo{Pos: RelayPos{SubDir: sd, Name: f}, Path: p, ModTime: st.ModTime(), Size: st.Size()})
		}
	}
	return out, nil
}

// Purge removes binlog files, oldest first, for which remove returns true,
// up to (not including) the file of need, the oldest position a reader or
// the writer needs, and never the newest file (the one being written,
// whatever need says). A subdirectory left without files, other than the
// newest, goes with its index line (the index first, so that a crash leaves
// at worst an unlisted empty directory). It returns the paths removed, and
// the oldest file kept because it is needed (zero when nothing held the
// purge back).
func (d *RelayDir) Purge(need RelayPos, remove func(RelayFileInfo) bool) (removed []string, kept RelayPos, err error) {
	d.indexMu.Lock()
	defer d.indexMu.Unlock()
	files, err := d.files()
	if err != nil {
		return nil, kept, err
	}
	if n := len(files); n > 0 {
		if last := files[n-1].Pos; need.IsZero() || last.Compare(need) < 0 {
			need = last
		}
	}
	needFile := RelayPos{SubDir: need.SubDir, Name: need.Name}
	touched := map[string]bool{}
	for _, f := range files {
		if f.Pos.Compare(needFile) >= 0 {
			kept = needFile
			break
		}
		if !remove(f) {
			continue
		}
		if err := os.Remove(f.Path); err != nil {
			return removed, kept, err
		}
		removed = append(removed, f.Path)
		touched[f.Pos.SubDir] = true
	}
	for sd := range touched {
		if err := syncDir(filepath.Join(d.path, sd)); err != nil {
			return removed, kept, err
		}
	}
	names, err := ReadRelayIndex(d.path)
	if err != nil {
		return removed, kept, err
	}
	keep := slices.Clone(names)
	var empty []string
	for i, sd := range names {
		if i == len(names)-1 || !touched[sd] {
			continue
		}
		fs, err := RelayFiles(filepath.Join(d.path, sd))
		if err != nil {
			return removed, kept, err
		}
		if len(fs) == 0 {
			keep = slices.DeleteFunc(keep, func(n string) bool { return n == sd })
			empty = append(empty, sd)
		}
	}
	if len(empty) > 0 {
		if err := WriteRelayIndex(d.path, keep); err != nil {
			return removed, kept, err
		}
		for _, sd := range empty {
			if err := os.RemoveAll(filepath.Join(d.path, sd)); err != nil {
				return removed, kept, err
			}
		}
		if err := syncDir(d.path); err != nil {
			return removed, kept, err
		}
	}
	return removed, kept, nil
}

// Oldest is the relay's oldest subdirectory and its oldest binlog file (""
// when it has none; both "" in an empty relay).
func (d *RelayDir) Oldest() (sub, file string, err error) {
	names, err := ReadRelayIndex(d.path)
	if err != nil || len(names) == 0 {
		return "", "", err
	}
	files, err := RelayFiles(filepath.Join(d.path, names[0]))
	if err != nil || len(files) == 0 {
		return names[0], "", err
	}
	return names[0], files[0], nil
}

// Holds reports whether a subdirectory of the relay has the binlog file
// (after a change of upstream, file names may start over in a newer one).
func (d *RelayDir) Holds(file string) bool {
	names, _ := ReadRelayIndex(d.path)
	for _, n := range names {
		if fs, err := RelayFiles(filepath.Join(d.path, n)); err == nil && slices.Contains(fs, file) {
			return true
		}
	}
	return false
}

// CopyUpstream copies the upstream's binlog files from `from` up to, not
// including, `until` into subdirectory sub, beside a writer appending to its
// newest file: see copyUpstreamFiles. It returns the names of the files
// copied, oldest first. The caller serialises copies into one
// subdirectory.
func (d *RelayDir) CopyUpstream(ctx context.Context, up UpstreamConfig, sub, from, until string, opts ...RemoteOption) ([]string, error) {
	return copyUpstreamFiles(ctx, up, filepath.Join(d.path, sub), from, until, d.fileMode, opts...)
}

// repairSubdir checks a subdirectory against its meta, cuts a torn tail off
// its newest file and rewrites the meta to match. Damage before the durable
// end recorded in the meta is an error, and then nothing is changed.
func (d *RelayDir) repair(path, flavor string) (RelayRepair, error) {
	log := d.log
	files, err := RelayFiles(path)
	if err != nil {
		return RelayRepair{}, err
	}
	meta, err := ReadRelayMeta(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return RelayRepair{}, err
	}
	metaPath := filepath.Join(path, RelayMetaFile)
	if len(files) == 0 {
		if meta.BinlogName != "" {
			return RelayRepair{}, corruptf(metaPath, -1, "relay.meta names %s, which is missing", meta.BinlogName)
		}
		return RelayRepair{}, nil
	}
	newest := files[len(files)-1]
	durable := uint64(0)
	if meta.BinlogName != "" {
		if !slices.Contains(files, meta.BinlogName) {
			return RelayRepair{}, corruptf(metaPath, -1, "relay.meta names %s, which is missing", meta.BinlogName)
		}
		if meta.BinlogName == newest {
			durable = meta.BinlogPos
		} else {
			st, err := os.Stat(filepath.Join(path, meta.BinlogName))
			if err != nil {
				return RelayRepair{}, err
			}
			if uint64(st.Size()) < meta.BinlogPos {
				return RelayRepair{}, &RelayError{Path: filepath.Join(path, meta.BinlogName), Offset: st.Size(),
					Kind: ErrRelayCorrupt,
					Err:  fmt.Errorf("the file ends at %d, before the durable end %d that %s records", st.Size(), meta.BinlogPos, metaPath)}
			}
		}
	}
	file := filepath.Join(path, newest)
	scan, err := ScanRelayFile(file, flavor)
	if err != nil {
		return RelayRepair{}, err
	}
	if durable > uint64(scan.Size) {
		// The file lost bytes that were durable: truncated by someone.
		return RelayRepair{}, &RelayError{Path: file, Offset: scan.Size, Kind: ErrRelayCorrupt,
			Err: fmt.Errorf("the file ends at %d, before the durable end %d that %s records", scan.Size, durable, metaPath)}
	}
	if scan.BadAt >= 0 && uint64(scan.BadAt) < durable {
		return RelayRepair{}, &RelayError{Path: file, Offset: scan.BadAt, Kind: ErrRelayCorrupt,
			Err: fmt.Errorf("before the durable end %d: %w", durable, scan.Bad)}
	}
	if uint64(scan.TxnEnd) < durable {
		return RelayRepair{}, corruptf(file, -1, "the last whole transaction ends at %d, before the durable end %d", scan.TxnEnd, durable)
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
				return RelayRepair{}, err
			}
		}
		rep := RelayRepair{File: newest, End: 4, ResumeFile: newest, ResumeAt: 4}
		m := RelayMeta{BinlogName: newest, BinlogPos: 4}
		if meta.BinlogName == newest && meta.BinlogPos == 4 && meta.BinlogGTID != "" {
			if g, err := NewGTIDSet(flavor, meta.BinlogGTID); err == nil {
				rep.GTIDSet, m.BinlogGTID = g, meta.BinlogGTID
			}
		}
		if m != meta {
			return rep, WriteRelayMeta(path, m)
		}
		return rep, nil
	}
	if scan.EventEnd < 4 {
		// Not even the magic made it: start the file again.
		log.Warn("relay file without a whole header, removing it", slog.String("file", file))
		if err := os.Remove(file); err != nil {
			return RelayRepair{}, err
		}
		if err := syncDir(path); err != nil {
			return RelayRepair{}, err
		}
		rep := RelayRepair{File: newest, End: 0, ResumeFile: newest, ResumeAt: 4}
		return rep, WriteRelayMeta(path, RelayMeta{BinlogName: newest, BinlogPos: 4})
	}
	if cut < scan.Size {
		log.Warn("cutting a torn tail off the relay file", slog.String("file", file),
			slog.Int64("at", cut), slog.Int64("bytes", scan.Size-cut), slog.Any("why", scan.Bad))
		if err := truncateSync(file, cut); err != nil {
			return RelayRepair{}, err
		}
	}
	rep := RelayRepair{File: newest, End: uint64(cut), GTIDSet: scan.GTIDSet, ResumeFile: newest, ResumeAt: 4}
	if scan.LastTxnEventStart >= 0 {
		rep.ResumeAt = uint64(scan.LastTxnEventStart)
	} else if len(files) > 1 {
		// No transaction in the newest file yet: resume in the previous
		// one, which is whole (it ends with a rotate).
		prev := filepath.Join(path, files[len(files)-2])
		ps, err := ScanRelayFile(prev, flavor)
		if err != nil {
			return RelayRepair{}, err
		}
		if ps.BadAt >= 0 {
			return RelayRepair{}, &RelayError{Path: prev, Offset: ps.BadAt, Kind: ErrRelayCorrupt, Err: ps.Bad}
		}
		if ps.LastTxnEventStart >= 0 {
			rep.ResumeFile, rep.ResumeAt = files[len(files)-2], uint64(ps.LastTxnEventStart)
		}
	}
	if rep.GTIDSet == nil && meta.BinlogName == newest && meta.BinlogPos == rep.End && meta.BinlogGTID != "" {
		if g, err := NewGTIDSet(flavor, meta.BinlogGTID); err == nil {
			rep.GTIDSet = g
		}
	}
	m := RelayMeta{BinlogName: newest, BinlogPos: rep.End}
	if rep.GTIDSet != nil {
		m.BinlogGTID = rep.GTIDSet.String()
	}
	if m != meta {
		if err := WriteRelayMeta(path, m); err != nil {
			return RelayRepair{}, err
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
