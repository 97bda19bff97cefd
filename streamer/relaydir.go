package streamer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Relay directory layout. These names and formats are shared with PingCAP
// DM's relay log and must never change.
const (
	// RelayIndexFile lists the relay subdirectories, one name a line,
	// oldest first.
	RelayIndexFile = "server-uuid.index"
	// RelayMetaFile, in each subdirectory, records how far the relay has
	// durably written that subdirectory: TOML with binlog-name, binlog-pos
	// and binlog-gtid.
	RelayMetaFile = "relay.meta"
	// subDirSeqSep separates the server identity from the subdirectory's
	// sequence number: "<uuid>.000001".
	subDirSeqSep = "."
	// binlogMagic opens every binlog file.
	binlogMagic = "\xfebin"
	// dmPosSep separates a binlog base name from the subdirectory sequence
	// in DM's relay position form: "mysql-bin|000002.000123".
	dmPosSep = "|"
)

// Permissions of what the relay creates, unless its config widens them (see
// dmworker.RelayConfig): relay binlog files hold every statement the
// upstream logged, passwords in CREATE USER ... IDENTIFIED BY included, so
// they are not readable by others.
const (
	// DefaultRelayFileMode is the mode of relay binlog files (before the
	// process's umask).
	DefaultRelayFileMode os.FileMode = 0o640
	// DefaultRelayDirMode is the mode of the relay directory and its
	// subdirectories when the relay creates them.
	DefaultRelayDirMode os.FileMode = 0o750
)

// Relay errors; all are wrapped in *RelayError.
var (
	// ErrRelayCorrupt means a relay file, meta or index is damaged in a way
	// that is not a torn tail of the file being written: a checksum
	// mismatch or a truncation before the durable end, a meta pointing past
	// its file's end, an index naming a missing subdirectory.
	ErrRelayCorrupt = errors.New("streamer: relay log corrupt")
	// ErrRelayOverlap means the upstream sent, for bytes the relay already
	// holds, an event that differs from what is on disk.
	ErrRelayOverlap = errors.New("streamer: relay overlap differs from upstream")
	// ErrRelayDiverged means the upstream's binlog file is not the one the
	// relay copied: same name, different content (its binlog was reset).
	ErrRelayDiverged = errors.New("streamer: upstream binlog differs from the relay copy")
	// ErrRelayGap means the upstream sent an event that does not start where
	// the relay file ends: bytes are missing between them.
	ErrRelayGap = errors.New("streamer: relay gap")
	// ErrRelayWrite means the file system refused to write, fsync, create
	// or rename something of the relay's (no space left, a read-only file
	// system, an I/O error). The *RelayError names the file and the offset
	// the write was at (-1 for the meta, the index and directories) and
	// wraps the cause: errors.Is(err, syscall.ENOSPC), EROFS, EIO tell them
	// apart. What the relay published before it stays durable and valid.
	ErrRelayWrite = errors.New("streamer: relay write failed")
)

// RelayError names the relay path and offset an error concerns.
type RelayError struct {
	Path   string // file or directory
	Offset int64  // -1 when no offset applies
	Kind   error  // ErrRelayCorrupt, ErrRelayOverlap, ErrRelayGap, ErrRelayWrite, ErrRelayLocked, ErrRelayDiverged
	Err    error  // detail, may be nil
}

func (e *RelayError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	b.WriteString(": ")
	b.WriteString(e.Path)
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " at offset %d", e.Offset)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind and the detail.
func (e *RelayError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// writeFailed wraps the file system's refusal to write path at off in a
// *RelayError of kind ErrRelayWrite; an error that is a *RelayError already
// is returned as it is.
func writeFailed(path string, off int64, err error) error {
	if err == nil {
		return nil
	}
	var re *RelayError
	if errors.As(err, &re) {
		return err
	}
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Path == path {
		// (The RelayError names the path already.)
		err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return &RelayError{Path: path, Offset: off, Kind: ErrRelayWrite, Err: err}
}

func corruptf(path string, off int64, format string, args ...any) error {
	return &RelayError{Path: path, Offset: off, Kind: ErrRelayCorrupt, Err: fmt.Errorf(format, args...)}
}

// RelayMeta is the content of a subdirectory's relay.meta.
type RelayMeta struct {
	BinlogName string `toml:"binlog-name"`
	BinlogPos  uint64 `toml:"binlog-pos"`
	BinlogGTID string `toml:"binlog-gtid"`
}

// SubDirName is the name of the seq-th subdirectory for a server identity.
func SubDirName(serverID string, seq int) string {
	return fmt.Sprintf("%s%s%06d", serverID, subDirSeqSep, seq)
}

// ParseSubDirName splits a subdirectory name into server identity and
// sequence number.
func ParseSubDirName(name string) (serverID string, seq int, err error) {
	i := strings.LastIndex(name, subDirSeqSep)
	if i <= 0 || i == len(name)-1 {
		return "", 0, fmt.Errorf("relay subdirectory %q: want <server-id>.<6-digit sequence>", name)
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n <= 0 || len(name[i+1:]) < 6 {
		return "", 0, fmt.Errorf("relay subdirectory %q: bad sequence %q", name, name[i+1:])
	}
	return name[:i], n, nil
}

// ReadRelayIndex returns the subdirectory names listed in dir's index, oldest
// first, checking that each exists. A missing or empty index means an empty
// relay directory and returns no names and no error, unless a subdirectory
// holding relay files is there: the index was then lost or damaged, and the
// error (ErrRelayCorrupt) says so rather than let a writer start the relay
// afresh over it.
func ReadRelayIndex(dir string) ([]string, error) {
	path := filepath.Join(dir, RelayIndexFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	off := int64(0) // where the line read starts
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		at := off
		off += int64(len(sc.Bytes())) + 1
		if line == "" {
			continue
		}
		if _, _, err := ParseSubDirName(line); err != nil {
			return nil, corruptf(path, at, "%v", err)
		}
		st, err := os.Stat(filepath.Join(dir, line))
		if err != nil || !st.IsDir() {
			return nil, corruptf(path, at, "the index names subdirectory %q, which is missing", line)
		}
		names = append(names, line)
	}
	if err := sc.Err(); err != nil {
		return nil, corruptf(path, off, "%v", err)
	}
	if len(names) == 0 {
		held, err := unlistedSubdirs(dir, nil)
		if err != nil {
			return nil, err
		}
		if len(held) > 0 {
			return nil, corruptf(path, -1, "the index lists no subdirectory, but %s holds relay files", strings.Join(held, ", "))
		}
	}
	return names, nil
}

// unlistedSubdirs returns the subdirectories of dir that are named like relay
// subdirectories and hold relay binlog files but are not in listed: after a
// crash the relay leaves none (a subdirectory is listed before its first
// file is written, and purge empties one before unlisting it), so any is a
// sign of a damaged index.
func unlistedSubdirs(dir string, listed []string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || slices.Contains(listed, n) {
			continue
		}
		if _, _, err := ParseSubDirName(n); err != nil {
			continue
		}
		files, err := RelayFiles(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		if len(files) > 0 {
			out = append(out, n)
		}
	}
	return out, nil
}

// WriteRelayIndex replaces dir's index atomically.
func WriteRelayIndex(dir string, names []string) error {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return writeFileAtomic(filepath.Join(dir, RelayIndexFile), []byte(b.String()))
}

// ReadRelayMeta reads a subdirectory's relay.meta. A missing meta returns the
// zero RelayMeta and os.ErrNotExist.
func ReadRelayMeta(subdir string) (RelayMeta, error) {
	var m RelayMeta
	path := filepath.Join(subdir, RelayMetaFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if _, err := toml.Decode(string(data), &m); err != nil {
		off := int64(-1)
		var pe toml.ParseError
		if errors.As(err, &pe) {
			off = int64(pe.Position.Start)
		}
		return m, corruptf(path, off, "%v", err)
	}
	return m, nil
}

// WriteRelayMeta replaces a subdirectory's relay.meta atomically.
func WriteRelayMeta(subdir string, m RelayMeta) error {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(m); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(subdir, RelayMetaFile), buf.Bytes())
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content: write a temporary file, fsync it, rename it over
// path, fsync the directory. The file keeps the permissions of the one it
// replaces; a new file gets those of its directory without the execute bits
// (0640 in a 0750 directory).
func writeFileAtomic(path string, data []byte) error {
	return writeFailed(path, -1, writeFileAtomicErr(path, data))
}

func writeFileAtomicErr(path string, data []byte) error {
	dir := filepath.Dir(path)
	perm, err := atomicFileMode(path)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// atomicFileMode is the permission writeFileAtomic gives path.
func atomicFileMode(path string) (os.FileMode, error) {
	if st, err := os.Stat(path); err == nil {
		return st.Mode().Perm(), nil
	}
	st, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return 0, err
	}
	return st.Mode().Perm() &^ 0o111, nil
}

// syncDir fsyncs a directory, making creations, renames and removals in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return writeFailed(dir, -1, err)
}

// RelayFiles lists the binlog files of a relay subdirectory in binlog order.
func RelayFiles(subdir string) ([]string, error) {
	ents, err := os.ReadDir(subdir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || n == RelayMetaFile || strings.HasPrefix(n, ".") {
			continue
		}
		if _, _, ok := splitName(n); !ok {
			continue
		}
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return compareNames(names[i], names[j]) < 0 })
	return names, nil
}

// DMPosition formats a relay position the way DM names it: the binlog base
// name, '|', the subdirectory's sequence, '.', the file's sequence. For
// mysql-bin.000123 in subdirectory <uuid>.000002 it is
// "mysql-bin|000002.000123".
func DMPosition(subdirSeq int, fileName string) (string, error) {
	base, seq, ok := splitName(fileName)
	if !ok {
		return "", fmt.Errorf("binlog file name %q has no numeric suffix", fileName)
	}
	return fmt.Sprintf("%s%s%06d.%s", base, dmPosSep, subdirSeq, seq), nil
}

// ParseDMPosition splits DM's relay file name form "mysql-bin|000002.000123"
// into the subdirectory sequence (2) and the binlog file name
// ("mysql-bin.000123").
func ParseDMPosition(s string) (subdirSeq int, fileName string, err error) {
	i := strings.LastIndex(s, dmPosSep)
	if i <= 0 {
		return 0, "", fmt.Errorf("%w: %q is not of the form base|000002.000123", ErrInvalidPosition, s)
	}
	base, rest := s[:i], s[i+1:]
	j := strings.IndexByte(rest, '.')
	if j <= 0 {
		return 0, "", fmt.Errorf("%w: %q is not of the form base|000002.000123", ErrInvalidPosition, s)
	}
	n, err := strconv.Atoi(rest[:j])
	if err != nil || n <= 0 {
		return 0, "", fmt.Errorf("%w: %q: bad subdirectory sequence", ErrInvalidPosition, s)
	}
	fileName = base + "." + rest[j+1:]
	if _, _, ok := splitName(fileName); !ok {
		return 0, "", fmt.Errorf("%w: %q: bad file sequence", ErrInvalidPosition, s)
	}
	return n, fileName, nil
}
