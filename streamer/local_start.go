package streamer

// Where a LocalReader starts: registration with the relay, the start
// position resolved to a relay file (by name, by DM position, by GTID set).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// errNotReady means the relay does not hold the start yet: wait for it.
var errNotReady = errors.New("relay holds nothing to start from yet")

// open registers the reader, finds the start and enters its file. It may
// wait (and return a context error, to be called again).
func (r *LocalReader) open(ctx context.Context) error {
	if r.cfg.registry != nil && r.lease == nil {
		oldest, err := r.oldestRelayPos()
		if err != nil {
			return r.newErr("open", nil, err)
		}
		lease, err := r.cfg.registry.RegisterReader(r.cfg.regName, oldest)
		if err != nil {
			return r.newErr("register", nil, err)
		}
		r.ackMu.Lock()
		r.lease = lease
		r.ackMu.Unlock()
	}
	if r.cfg.tail != nil {
		r.refreshTail()
	}
	for {
		sub, name, off, err := r.resolveStart()
		if errors.Is(err, errNotReady) {
			if !r.cfg.follow {
				return r.newErr("open", ErrEndOfStream, nil)
			}
			if err := r.wait(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		r.ackMu.Lock()
		if r.lease != nil {
			r.lease.Advance(RelayPos{SubDir: sub, Name: name, Offset: uint64(off)})
		}
		r.ackMu.Unlock()
		r.cfg.logger.Info("reading relay log", slog.String("relay-dir", r.dir), slog.String("from", r.start.String()),
			slog.String("subdir", sub), slog.String("file", name), slog.Int64("offset", off))
		if err := r.enterFile(sub, name, off); err != nil {
			return err
		}
		if r.start.pos.Name != "" || r.start.dmName != "" || r.start.pos.GTIDSet == nil {
			r.delivered = r.posAt(name, uint64(off))
		}
		r.midStart = off > 4
		r.opened = true
		return nil
	}
}

// oldestRelayPos is the first file of the first subdirectory, or the zero
// RelayPos (before everything) when the relay is empty.
func (r *LocalReader) oldestRelayPos() (RelayPos, error) {
	subs, err := ReadRelayIndex(r.dir)
	if err != nil || len(subs) == 0 {
		return RelayPos{}, err
	}
	files, err := RelayFiles(filepath.Join(r.dir, subs[0]))
	if err != nil || len(files) == 0 {
		return RelayPos{SubDir: subs[0]}, nil
	}
	return RelayPos{SubDir: subs[0], Name: files[0], Offset: 4}, nil
}

// resolveStart finds the subdirectory, file and offset to start from.
func (r *LocalReader) resolveStart() (sub, name string, off int64, err error) {
	subs, err := ReadRelayIndex(r.dir)
	if err != nil {
		return "", "", 0, r.newErr("open", nil, err)
	}
	if len(subs) == 0 {
		return "", "", 0, errNotReady
	}
	s := r.start
	off = int64(min(s.pos.Offset, math.MaxInt64))
	switch {
	case s.subDir != "" || s.dmName != "":
		sub, name = s.subDir, s.pos.Name
		if s.dmName != "" {
			seq, file, _ := ParseDMPosition(s.dmName)
			name = file
			for _, c := range subs {
				if _, n, err := ParseSubDirName(c); err == nil && n == seq {
					sub = c
				}
			}
			if sub == "" {
				return "", "", 0, r.newErr("open", ErrBinlogPurged,
					fmt.Errorf("no relay subdirectory with sequence %d for %s", seq, s.dmName))
			}
		} else if !slices.Contains(subs, sub) {
			return "", "", 0, r.newErr("open", ErrBinlogPurged, fmt.Errorf("relay subdirectory %s is not in the index", sub))
		}
		if err := r.checkFileThere(subs, sub, name); err != nil {
			return "", "", 0, err
		}
		return sub, name, off, nil
	case s.pos.Name != "":
		sub, err := r.findFile(subs, s.pos)
		return sub, s.pos.Name, off, err
	case s.pos.GTIDSet != nil:
		sub, name, err := r.findGTIDStart(subs, s.pos.GTIDSet)
		return sub, name, 4, err
	}
	files, err := RelayFiles(filepath.Join(r.dir, subs[0]))
	if err != nil {
		return "", "", 0, r.newErr("open", nil, err)
	}
	if len(files) == 0 {
		return "", "", 0, errNotReady
	}
	return subs[0], files[0], 4, nil
}

// checkFileThere reports a missing start file: not there yet (the next file
// of the newest subdirectory, about to be created) or gone.
func (r *LocalReader) checkFileThere(subs []string, sub, name string) error {
	files, err := RelayFiles(filepath.Join(r.dir, sub))
	if err != nil {
		return r.newErr("open", nil, err)
	}
	if slices.Contains(files, name) {
		return nil
	}
	if sub == subs[len(subs)-1] && (len(files) == 0 || compareNames(name, files[len(files)-1]) > 0) {
		return errNotReady
	}
	return r.newErr("open", ErrBinlogPurged, fmt.Errorf("relay file %s/%s not found", sub, name))
}

// findFile looks for a start file by name, newest subdirectory first (see
// StartAtPosition).
func (r *LocalReader) findFile(subs []string, p Position) (string, error) {
	var cands []string
	for i := len(subs) - 1; i >= 0; i-- {
		if st, err := os.Stat(filepath.Join(r.dir, subs[i], p.Name)); err == nil && st.Mode().IsRegular() {
			cands = append(cands, subs[i])
		}
	}
	if len(cands) == 0 {
		if err := r.checkFileThere(subs, subs[len(subs)-1], p.Name); err != nil {
			return "", err
		}
		return subs[len(subs)-1], nil
	}
	if p.GTIDSet == nil {
		if len(cands) > 1 {
			return "", r.newErr("open", ErrBadPosition,
				fmt.Errorf("%s is in several relay subdirectories (%s): start with a relay or DM position, or a GTID set", p.Name, strings.Join(cands, ", ")))
		}
		return cands[0], nil
	}
	for _, sub := range cands {
		set, ok, err := fileStartSet(filepath.Join(r.dir, sub, p.Name))
		if err != nil {
			return "", r.newErr("open", nil, err)
		}
		if ok && p.GTIDSet.Contain(set) {
			return sub, nil
		}
	}
	return "", r.newErr("open", ErrBadPosition,
		fmt.Errorf("no copy of %s in the relay starts within the GTID set %s", p.Name, formatGTIDSet(p.GTIDSet)))
}

// findGTIDStart picks the newest relay file whose starting GTID set want
// contains.
func (r *LocalReader) findGTIDStart(subs []string, want mysql.GTIDSet) (sub, name string, err error) {
	found := false
	for i := len(subs) - 1; i >= 0; i-- {
		files, err := RelayFiles(filepath.Join(r.dir, subs[i]))
		if err != nil {
			return "", "", r.newErr("open", nil, err)
		}
		for j := len(files) - 1; j >= 0; j-- {
			found = true
			set, ok, err := fileStartSet(filepath.Join(r.dir, subs[i], files[j]))
			if err != nil {
				return "", "", r.newErr("open", nil, err)
			}
			if ok && want.Contain(set) {
				return subs[i], files[j], nil
			}
		}
	}
	if !found {
		return "", "", errNotReady
	}
	return "", "", r.newErr("open", ErrGTIDNotServable,
		fmt.Errorf("no relay file starts within %s (purged, or another server's GTIDs)", formatGTIDSet(want)))
}

// fileStartSet reads the GTID set a binlog file starts with: its MariaDB GTID
// list or MySQL previous-GTIDs event. ok is false when the file does not
// (yet) have one.
func fileStartSet(path string) (set mysql.GTIDSet, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		return nil, false, nil
	}
	if string(magic[:]) != binlogMagic {
		return nil, false, corruptf(path, 0, "not a binlog file: header %q", magic[:])
	}
	p := newDecodeParser("", nil)
	off := int64(4)
	crc := false
	var postHeader []byte
	for i := 0; i < 8; i++ {
		var hdr [eventHeaderSize]byte
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return nil, false, nil // not written yet
		}
		size := binary.LittleEndian.Uint32(hdr[9:13])
		if size < eventHeaderSize || size > maxEventSize {
			return nil, false, corruptf(path, off, "event header claims %d bytes", size)
		}
		if st, err := f.Stat(); err != nil || off+int64(size) > st.Size() {
			return nil, false, nil // not written yet, or damaged: the reader will tell
		}
		raw := make([]byte, size)
		if _, err := f.ReadAt(raw, off); err != nil {
			return nil, false, nil
		}
		t := replication.EventType(raw[4])
		if i == 0 {
			fde, fraw, err := checkFDE(raw)
			if err != nil {
				return nil, false, corruptf(path, off, "%w", err)
			}
			crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
			if _, err := parseEvent(p, fraw, crc, fde.EventTypeHeaderLengths); err != nil {
				return nil, false, corruptf(path, off, "%w", err)
			}
			postHeader = fde.EventTypeHeaderLengths
		} else {
			if crc && !crcOK(raw) {
				return nil, false, corruptf(path, off, "%s: %w", t, ErrChecksum)
			}
			switch t {
			case replication.MARIADB_GTID_LIST_EVENT, replication.PREVIOUS_GTIDS_EVENT:
				ev, err := parseEvent(p, raw, crc, postHeader)
				if err != nil {
					return nil, false, corruptf(path, off, "%w", err)
				}
				return startSetOf(ev)
			case replication.GTID_EVENT, replication.ANONYMOUS_GTID_EVENT, replication.GTID_TAGGED_LOG_EVENT,
				replication.MARIADB_GTID_EVENT, replication.QUERY_EVENT, replication.XID_EVENT, replication.ROTATE_EVENT:
				return nil, false, nil // transactions began without a starting set
			}
		}
		off += int64(size)
	}
	return nil, false, nil
}

// startSetOf turns a GTID list or previous-GTIDs event into a set.
func startSetOf(ev *replication.BinlogEvent) (mysql.GTIDSet, bool, error) {
	switch e := ev.Event.(type) {
	case *replication.MariadbGTIDListEvent:
		s := &mysql.MariadbGTIDSet{Sets: make(map[uint32]*mysql.MariadbGTID)}
		for i := range e.GTIDs {
			if err := s.AddSet(&e.GTIDs[i]); err != nil {
				return nil, false, err
			}
		}
		return s, true, nil
	case *replication.PreviousGTIDsEvent:
		s, err := mysql.ParseMysqlGTIDSet(e.GTIDSets)
		if err != nil {
			return nil, false, err
		}
		return s, true, nil
	}
	return nil, false, nil
}
