package dmworker_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// relayOnce relays everything the upstream holds into dir and stops.
func relayOnce(t *testing.T, m *testserver.MariaDB, dir string, cfg dmworker.RelayConfig) {
	t.Helper()
	r, err := dmworker.NewRelay(upstreamOf(m), dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	waitRelayed(t, r, m.DB(t), errc)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// newestFile returns the path of the newest file of the only subdirectory.
func newestFile(t *testing.T, dir string) string {
	t.Helper()
	sub := onlySubdir(t, dir)
	files, err := streamer.RelayFiles(sub)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(sub, files[len(files)-1])
}

// TestRelayRepairsTornTail damages the end of the newest file past the
// durable end recorded in relay.meta, as a crash would, and checks that the
// next start cuts the damage off and the relay again equals the upstream.
func TestRelayRepairsTornTail(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
	}{
		{"half an event appended", func(t *testing.T, path string, size int64) {
			appendBytes(t, path, []byte{0x10, 0x20, 0x30, 0x40, 0x02, 0x00, 0x00, 0x00, 0x50})
		}},
		{"zeros appended", func(t *testing.T, path string, size int64) {
			appendBytes(t, path, make([]byte, 4096))
		}},
		{"a whole event with a bad checksum appended", func(t *testing.T, path string, size int64) {
			b := mustRead(t, path)
			// Re-append the last event with its last byte flipped.
			ev := append([]byte(nil), b[size-31:]...) // an XID event: 19 + 8 + 4 bytes
			ev[len(ev)-1] ^= 0xff
			appendBytes(t, path, ev)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 23, MaxBinlogSize: 64 << 10})
			db := m.DB(t)
			relayWorkload(t, db, 0, 30)
			dir := t.TempDir()
			relayOnce(t, m, dir, dmworker.RelayConfig{})
			path := newestFile(t, dir)
			st, _ := os.Stat(path)
			tc.damage(t, path, st.Size())

			relayWorkload(t, db, 30, 30)
			relayOnce(t, m, dir, dmworker.RelayConfig{})
			checkRelayEqualsUpstream(t, onlySubdir(t, dir), upstreamFiles(t, m), nil)
		})
	}
}

// TestRelayCutsPartialTransaction leaves the newest file ending inside a
// transaction with a meta behind it (a crash between write and sync): the
// partial transaction is cut and pulled again.
func TestRelayCutsPartialTransaction(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 24})
	db := m.DB(t)
	relayWorkload(t, db, 0, 20)
	dir := t.TempDir()
	relayOnce(t, m, dir, dmworker.RelayConfig{})
	path := newestFile(t, dir)
	sub := filepath.Dir(path)
	scan, err := streamer.ScanRelayFile(path, streamer.FlavorMariaDB)
	if err != nil {
		t.Fatal(err)
	}
	// Move the meta back three transactions' worth and cut the file in the
	// middle of the last transaction.
	meta, _ := streamer.ReadRelayMeta(sub)
	if err := os.Truncate(path, scan.Size-40); err != nil {
		t.Fatal(err)
	}
	meta.BinlogPos = uint64(scan.Size) - 3000
	meta.BinlogGTID = ""
	if err := streamer.WriteRelayMeta(sub, meta); err != nil {
		t.Fatal(err)
	}
	cut, _ := streamer.ScanRelayFile(path, streamer.FlavorMariaDB)
	if cut.TxnEnd >= cut.Size {
		t.Fatalf("the cut left no partial transaction (txn end %d, size %d)", cut.TxnEnd, cut.Size)
	}
	relayWorkload(t, db, 20, 10)
	relayOnce(t, m, dir, dmworker.RelayConfig{})
	checkRelayEqualsUpstream(t, sub, upstreamFiles(t, m), nil)
}

// TestRelayRefusesCorruption: damage that is not a torn tail stops the relay
// at start with an exported error naming the file (and, where one applies,
// the offset), and nothing is overwritten: an emptied index is not written
// anew over the subdirectories it lost.
func TestRelayRefusesCorruption(t *testing.T) {
	type place struct {
		path   string
		offset int64 // -2: any
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, dir, sub, newest string) place
	}{
		{"flipped byte in the middle of the newest file", func(t *testing.T, dir, sub, newest string) place {
			b := mustRead(t, newest)
			b[len(b)/2] ^= 0x5a
			if err := os.WriteFile(newest, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return place{newest, -2}
		}},
		{"meta points past the end of the file", func(t *testing.T, dir, sub, newest string) place {
			meta, _ := streamer.ReadRelayMeta(sub)
			meta.BinlogPos += 1 << 20
			if err := streamer.WriteRelayMeta(sub, meta); err != nil {
				t.Fatal(err)
			}
			return place{newest, int64(len(mustRead(t, newest)))}
		}},
		{"newest file truncated below the meta", func(t *testing.T, dir, sub, newest string) place {
			size := int64(len(mustRead(t, newest)))
			if err := os.Truncate(newest, size-100); err != nil {
				t.Fatal(err)
			}
			return place{newest, size - 100}
		}},
		{"meta names a missing file", func(t *testing.T, dir, sub, newest string) place {
			meta, _ := streamer.ReadRelayMeta(sub)
			meta.BinlogName = "mysql-bin.999999"
			if err := streamer.WriteRelayMeta(sub, meta); err != nil {
				t.Fatal(err)
			}
			return place{filepath.Join(sub, streamer.RelayMetaFile), -2}
		}},
		{"garbage in the meta", func(t *testing.T, dir, sub, newest string) place {
			if err := os.WriteFile(filepath.Join(sub, streamer.RelayMetaFile), []byte("binlog-name = \"mysql-bin.0\x00\x17\xff\n[[["), 0o644); err != nil {
				t.Fatal(err)
			}
			return place{filepath.Join(sub, streamer.RelayMetaFile), -2}
		}},
		{"index names a missing directory", func(t *testing.T, dir, sub, newest string) place {
			names, _ := streamer.ReadRelayIndex(dir)
			if err := os.WriteFile(filepath.Join(dir, streamer.RelayIndexFile), []byte(names[0]+"\n0-99.000002\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return place{filepath.Join(dir, streamer.RelayIndexFile), -2}
		}},
		{"index emptied", func(t *testing.T, dir, sub, newest string) place {
			if err := os.WriteFile(filepath.Join(dir, streamer.RelayIndexFile), []byte("\n \n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return place{filepath.Join(dir, streamer.RelayIndexFile), -2}
		}},
		{"index removed", func(t *testing.T, dir, sub, newest string) place {
			if err := os.Remove(filepath.Join(dir, streamer.RelayIndexFile)); err != nil {
				t.Fatal(err)
			}
			return place{filepath.Join(dir, streamer.RelayIndexFile), -2}
		}},
		{"index overwritten by a long line of garbage", func(t *testing.T, dir, sub, newest string) place {
			if err := os.WriteFile(filepath.Join(dir, streamer.RelayIndexFile), bytes.Repeat([]byte{0xa5}, 100<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			return place{filepath.Join(dir, streamer.RelayIndexFile), -2}
		}},
	}
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 25})
	db := m.DB(t)
	relayWorkload(t, db, 0, 40)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			relayOnce(t, m, dir, dmworker.RelayConfig{})
			sub := onlySubdir(t, dir)
			newest := newestFile(t, dir)
			where := tc.damage(t, dir, sub, newest)
			before := snapshotDir(t, dir)

			r, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = r.Run(ctx)
			if !errors.Is(err, streamer.ErrRelayCorrupt) {
				t.Fatalf("Run: %v, want ErrRelayCorrupt", err)
			}
			var re *streamer.RelayError
			if !errors.As(err, &re) || re.Path != where.path || where.offset != -2 && re.Offset != where.offset {
				t.Fatalf("error %v does not name %s at offset %d", err, where.path, where.offset)
			}
			if st := r.Status(ctx); !errors.Is(st.LastError, streamer.ErrRelayCorrupt) || st.Stage != dmworker.RelayStopped {
				t.Fatalf("status %+v", st)
			}
			if after := snapshotDir(t, dir); !equalSnapshots(before, after) {
				t.Fatal("the failed start changed the relay directory")
			}
			r.Close()
		})
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// snapshotDir maps every file under dir (but the lock) to its content.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Base(p) == ".lock" {
			return nil
		}
		out[p] = string(mustRead(t, p))
		return nil
	})
	return out
}

func equalSnapshots(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestRelayKeepsAHeaderlessNewFile leaves a new newest file holding the
// binlog magic and part of a format description (a stop right after the
// upstream's rotate): the next start cuts it back to the magic and goes on
// writing the same file, so that a reader holding it open sees it filled
// instead of a deleted file.
func TestRelayKeepsAHeaderlessNewFile(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 321, MaxBinlogSize: 64 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 20)
	dir := t.TempDir()
	relayOnce(t, m, dir, dmworker.RelayConfig{})
	last := newestFile(t, dir)
	mustExec(t, db, "FLUSH BINARY LOGS")
	name, _ := masterPos(t, db)
	next := filepath.Join(filepath.Dir(last), name)
	fde := mustRead(t, last)[4 : 4+30]
	if err := os.WriteFile(next, append([]byte("\xfebin"), fde...), 0o644); err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(next)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	relayWorkload(t, db, 20, 20)
	relayOnce(t, m, dir, dmworker.RelayConfig{})
	files := upstreamFiles(t, m)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slicesSortNames(names)
	checkRelayEqualsUpstream(t, onlySubdir(t, dir), files, names)
	// The file held open is the relay's file of that name, filled. (Its
	// size is compared with the relay's copy, which checkRelayEqualsUpstream
	// compared with the upstream's file: the upstream may have appended an
	// event since, a binlog checkpoint say.)
	st, err := held.Stat()
	if err != nil {
		t.Fatal(err)
	}
	cur, err := os.Stat(next)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(st, cur) {
		t.Fatalf("the file held open is no longer the relay's %s: it was replaced", name)
	}
	if st.Size() != cur.Size() || st.Size() <= int64(4+len(fde)) {
		t.Fatalf("the file held open has %d bytes, the relay's %s %d", st.Size(), name, cur.Size())
	}
}
