package streamer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// copyUpstreamFiles copies the upstream's binlog files from `from` up to, not
// including, `until` into the relay subdirectory dir, byte for byte as a
// relay writes them (files created with perm, before the umask). It is how a
// relay fetches files older than the oldest one it holds, beside the writer
// appending to the newest: each file is written under a hidden name (which
// RelayFiles and readers ignore) and fsynced, and only once all are complete
// are they renamed into place, newest first, so that a reader never sees a
// partial file and a crash leaves the files copied so far contiguous with
// until. Hidden files an interrupted copy left are removed first. It returns
// the names of the files copied, oldest first.
//
// The caller checks that the upstream holds both files and that dir copies
// the upstream's current binlog history; the copy fails if the upstream's
// stream passes until without rotating to it.
func copyUpstreamFiles(ctx context.Context, up UpstreamConfig, dir, from, until string, perm os.FileMode, opts ...RemoteOption) ([]string, error) {
	for _, n := range []string{from, until} {
		if err := validateName(n); err != nil {
			return nil, err
		}
	}
	if compareNames(from, until) >= 0 {
		return nil, fmt.Errorf("streamer: copy of upstream files into %s: %s is not before %s", dir, from, until)
	}
	if err := removePartialCopies(dir); err != nil {
		return nil, err
	}
	rr, err := NewRawReader(up, Position{Name: from, Offset: 4}, opts...)
	if err != nil {
		return nil, err
	}
	defer rr.Close()
	w := &RelayFileWriter{dir: dir, synced: true, perm: perm.Perm(), hidden: true, stopAt: until}
	defer w.closeFile()
	for !w.stopped {
		ev, err := rr.Next(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := w.WriteRaw(ev); err != nil {
			return nil, err
		}
		if w.name != "" && compareNames(w.name, until) >= 0 {
			return nil, fmt.Errorf("streamer: copy of upstream files into %s: the upstream's binlog reached %s without a rotate to %s",
				dir, w.name, until)
		}
	}
	if err := w.closeFile(); err != nil {
		return nil, err
	}
	for i := len(w.created) - 1; i >= 0; i-- {
		n := w.created[i]
		if err := os.Rename(filepath.Join(dir, partName(n)), filepath.Join(dir, n)); err != nil {
			return nil, err
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return w.created, nil
}

// removePartialCopies removes the hidden files an interrupted
// copyUpstreamFiles left in the relay subdirectory dir.
func removePartialCopies(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".part") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		removed = true
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}
