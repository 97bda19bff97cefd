package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// smallFS is a small file system mounted for a test: tmpfs, or ext4 on a
// loop device (mounted errors=remount-ro, so that an error it meets turns
// it read-only under open files, as a failing disk does).
type smallFS struct {
	kind, mnt, img string
}

// mountSmallFS mounts a small file system of the kind named and returns it;
// it is unmounted at the end of the test. Mounting needs root: without it
// the test is skipped, with a message.
func mountSmallFS(t *testing.T, kind string, size int64) *smallFS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("mounting a small %s needs root", kind)
	}
	fs := &smallFS{kind: kind, mnt: filepath.Join(t.TempDir(), "mnt")}
	if err := os.Mkdir(fs.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if kind == "ext4" {
		fs.img = filepath.Join(t.TempDir(), "fs.img")
		if err := os.WriteFile(fs.img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(fs.img, size); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", fs.img).CombinedOutput(); err != nil {
			t.Skipf("mkfs.ext4: %v: %s", err, out)
		}
	}
	if err := fs.mount(); err != nil {
		t.Skipf("cannot mount a small %s: %v", kind, err)
	}
	t.Cleanup(func() {
		// Lazy: a descriptor left open must not keep it mounted.
		if out, err := exec.Command("umount", "-l", fs.mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", fs.mnt, err, out)
		}
	})
	return fs
}

func (fs *smallFS) mount() error {
	cmd := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", fs.mnt)
	if fs.kind == "ext4" {
		cmd = exec.Command("mount", "-o", "loop,errors=remount-ro", fs.img, fs.mnt)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// fail makes the ext4 file system meet an error: it turns read-only at
// once, open files included (writes and fsyncs fail with EROFS).
func (fs *smallFS) fail(t *testing.T) {
	t.Helper()
	out, err := exec.Command("findmnt", "-no", "SOURCE", fs.mnt).Output()
	if err != nil {
		t.Fatalf("findmnt %s: %v", fs.mnt, err)
	}
	dev := filepath.Base(strings.TrimSpace(string(out)))
	if err := os.WriteFile(filepath.Join("/sys/fs/ext4", dev, "trigger_fs_error"), []byte("dmworker test\n"), 0); err != nil {
		t.Skipf("cannot make %s fail: %v", fs.mnt, err)
	}
}

// repair unmounts the failed file system (nothing may hold it open),
// checks it and mounts it again, writable.
func (fs *smallFS) repair(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("umount", fs.mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount %s: %v: %s", fs.mnt, err, out)
	}
	// e2fsck exits 1 when it fixed something (the error flag).
	if out, err := exec.Command("e2fsck", "-fy", fs.img).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck: %v: %s", err, out)
		}
	}
	if err := fs.mount(); err != nil {
		t.Fatal(err)
	}
}

// fillFS takes the free space of the file system at mnt, leaving about
// leave bytes, with a file it returns the path of.
func fillFS(t *testing.T, mnt string, leave int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	n := free - leave
	if n <= 0 {
		t.Fatalf("only %d bytes free, cannot leave %d", free, leave)
	}
	p := filepath.Join(mnt, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
		t.Fatalf("fallocate %d: %v", n, err)
	}
	return p
}

// relayStopped waits until the relay's Run returns, feeding the upstream
// transactions meanwhile, and returns Run's error.
func relayStopped(t *testing.T, m *testserver.MariaDB, errc <-chan error, from int) error {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for i := from; ; i += 20 {
		select {
		case err := <-errc:
			return err
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay went on writing on a full file system")
		}
		relayWorkload(t, m.DB(t), i, 20)
	}
}

// checkRelayDurable checks what a stopped relay left: relay.meta is at or
// behind the end it published, and every file up to that end holds whole
// valid events equal to the upstream's bytes (what readers may have read).
func checkRelayDurable(t *testing.T, sub string, m *testserver.MariaDB, published streamer.RelayPos) {
	t.Helper()
	meta, err := streamer.ReadRelayMeta(sub)
	if err != nil {
		t.Fatal(err)
	}
	pub := streamer.Position{Name: published.Name, Offset: published.Offset}
	if c := (streamer.Position{Name: meta.BinlogName, Offset: meta.BinlogPos}).Compare(pub); c > 0 {
		t.Fatalf("relay.meta %s:%d past what the relay published, %s", meta.BinlogName, meta.BinlogPos, published)
	}
	up := upstreamFiles(t, m)
	files, err := streamer.RelayFiles(sub)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if (streamer.Position{Name: f}).Compare(streamer.Position{Name: pub.Name}) > 0 {
			continue // written past the durable end: the next start removes it or cuts it
		}
		p := filepath.Join(sub, f)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		end := int64(len(got))
		if f == pub.Name {
			end = int64(pub.Offset)
		}
		if end > int64(len(got)) {
			t.Fatalf("%s: the published end %d past the file's %d bytes", p, end, len(got))
		}
		if i := firstDiff(got[:end], up[f][:min(end, int64(len(up[f])))]); i >= 0 {
			t.Fatalf("%s differs from the upstream at %d, before the published end %d", p, i, end)
		}
		scan, err := streamer.ScanRelayFile(p, streamer.FlavorMariaDB)
		if err != nil {
			t.Fatal(err)
		}
		if scan.EventEnd < end || (scan.BadAt >= 0 && scan.BadAt < end) {
			t.Fatalf("%s: whole events end at %d (bad at %d: %v), before the published end %d", p, scan.EventEnd, scan.BadAt, scan.Bad, end)
		}
	}
}

// TestRelayDiskFull puts the relay directory on a small file system (tmpfs,
// and ext4 on a loop device; direct I/O on) and takes its free space away
// while the relay copies: the relay must stop with an error that is
// errors.Is ENOSPC and names the file and offset (a *streamer.RelayError),
// what it published must be durable and equal to the upstream, and once
// space is freed a new run resumes and the relay files equal the
// upstream's byte for byte.
func TestRelayDiskFull(t *testing.T) {
	for _, kind := range []string{"tmpfs", "ext4"} {
		t.Run(kind, func(t *testing.T) {
			seed := faultSeed(t)
			rnd := rand.New(rand.NewPCG(seed, 9))
			m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 930, MaxBinlogSize: 64 << 10})
			relayWorkload(t, m.DB(t), 0, 20)
			mnt := mountSmallFS(t, kind, 8<<20).mnt
			dir := filepath.Join(mnt, "relay")

			r, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{})
			if err != nil {
				t.Fatal(err)
			}
			errc := runRelay(t, r)
			waitRelayed(t, r, m.DB(t), errc)
			leave := int64(16<<10 + rnd.IntN(256<<10))
			filler := fillFS(t, mnt, leave)
			t.Logf("free space left: %d bytes", leave)
			err = relayStopped(t, m, errc, 1000)
			var re *streamer.RelayError
			if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &re) || re.Offset < 0 ||
				!strings.HasPrefix(re.Path, dir) || !strings.Contains(err.Error(), re.Path) {
				t.Fatalf("relay stopped with %v: want ENOSPC in a *streamer.RelayError naming the file and offset", err)
			}
			t.Logf("relay stopped: %v", err)
			st := r.Status(t.Context())
			if st.Stage != dmworker.RelayStopped || !errors.Is(st.LastError, syscall.ENOSPC) {
				t.Fatalf("status %+v", st)
			}
			// relay.meta may lag what was published (fsynced) when the
			// file system refused its own write: checkRelayDurable checks
			// it is not ahead, and that the files hold what was published.
			sub := onlySubdir(t, dir)
			checkRelayDurable(t, sub, m, st.Relayed)

			// Space freed: a new run repairs, resumes and catches up.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			relayWorkload(t, m.DB(t), 5000, 10)
			relayOnce(t, m, dir, dmworker.RelayConfig{})
			checkRelayEqualsUpstream(t, sub, upstreamFiles(t, m), nil)
		})
	}
}

// TestSourceWorkerRelayFSFault: the relay directory of a SourceWorker (a
// subtask reading it) is on a small ext4 that fills up, or that meets an
// error and turns read-only under the relay's open files. The subtask must
// end paused with ErrRelayStopped wrapping the file system's error (ENOSPC;
// EROFS, or EIO from an fsync under way) in a *streamer.RelayError naming
// the file, having read nothing
// past what the relay published (durable, equal to the upstream); once the
// space is freed (ResumeRelay), or the file system repaired and mounted
// again (a new worker), the subtask catches up and the downstream and the
// relay files equal the upstream.
func TestSourceWorkerRelayFSFault(t *testing.T) {
	for _, fault := range []string{"full", "readonly"} {
		t.Run(fault, func(t *testing.T) {
			seed := faultSeed(t)
			rnd := rand.New(rand.NewPCG(seed, 10))
			p := newPair(t, 940, 941, testserver.MariaDBOptions{MaxBinlogSize: 64 << 10})
			fs := mountSmallFS(t, "ext4", 8<<20)
			base := filepath.Join(fs.mnt, "relay")
			up := upstreamOf(p.up)
			up.ServerID = 942
			src := dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}
			newWorker := func() (*dmworker.SourceWorker, <-chan error) {
				w, err := dmworker.NewSourceWorker("w", mysqlSinks(p.downdb), dmworker.WithSource(src), dmworker.WithRelayDir(base),
					dmworker.WithAutoResume(20*time.Millisecond, 100*time.Millisecond, 3))
				if err != nil {
					t.Fatal(err)
				}
				errc := make(chan error, 1)
				go func() { errc <- w.Run(context.Background()) }()
				if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "t"}); err != nil {
					t.Fatal(err)
				}
				return w, errc
			}
			stopWorker := func(w *dmworker.SourceWorker, errc <-chan error) {
				w.Close()
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			for _, db := range []*sql.DB{p.updb, p.downdb} {
				relayWorkload(t, db, 0, 0) // the table, on both sides
			}
			w, errc := newWorker()
			defer func() { stopWorker(w, errc) }()
			waitUntil(t, "subtask t reading", func() bool { return taskStatus(w, "t")().Syncer.Read.Name != "" })
			relayWorkload(t, p.updb, 0, 20)
			waitSubTaskSynced(t, taskStatus(w, "t"), p)

			var filler string
			failAt := 1000 + 20*rnd.IntN(5)
			if fault == "full" {
				leave := int64(16<<10 + rnd.IntN(256<<10))
				filler = fillFS(t, fs.mnt, leave)
				t.Logf("free space left: %d bytes", leave)
			} else {
				t.Logf("file system fails after %d transactions", failAt-1000)
			}
			var st dmworker.SubTaskStatus
			deadline := time.Now().Add(time.Minute)
			for i := 1000; ; i += 20 {
				st = taskStatus(w, "t")()
				if st.Stage == dmworker.SubTaskPaused && errors.Is(st.LastError, dmworker.ErrRelayStopped) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the subtask was not paused by the relay's fault: %+v", st)
				}
				if fault == "readonly" && i == failAt {
					fs.fail(t)
				}
				relayWorkload(t, p.updb, i, 20)
			}
			// A file system turned read-only by an error refuses writes
			// with EROFS, and may fail an fsync under way with EIO.
			want := []error{syscall.ENOSPC}
			if fault == "readonly" {
				want = []error{syscall.EROFS, syscall.EIO}
			}
			var re *streamer.RelayError
			if !slices.ContainsFunc(want, func(e error) bool { return errors.Is(st.LastError, e) }) ||
				!errors.Is(st.LastError, streamer.ErrRelayWrite) || !errors.As(st.LastError, &re) ||
				!strings.HasPrefix(re.Path, base) || !strings.Contains(st.LastError.Error(), re.Path) {
				t.Fatalf("subtask paused with %v: want ErrRelayStopped and %v in a *streamer.RelayError naming the file", st.LastError, want)
			}
			t.Logf("subtask paused: %v", st.LastError)
			ws := w.Status(context.Background())
			if ws.Relay == nil || ws.Relay.Stage != dmworker.RelayStopped {
				t.Fatalf("relay status %+v", ws.Relay)
			}
			pub := streamer.Position{Name: ws.Relay.Relayed.Name, Offset: ws.Relay.Relayed.Offset}
			st = taskStatus(w, "t")()
			if st.Syncer.Read.Compare(pub) > 0 || st.Syncer.Checkpoint.Compare(pub) > 0 {
				t.Fatalf("the subtask read to %s, checkpointed %s, past the relay's durable end %s", st.Syncer.Read, st.Syncer.Checkpoint, pub)
			}
			sub := onlySubdir(t, filepath.Join(base, "src"))
			checkRelayDurable(t, sub, p.up, ws.Relay.Relayed)

			if fault == "full" {
				if err := os.Remove(filler); err != nil {
					t.Fatal(err)
				}
				if err := w.ResumeRelay(); err != nil {
					t.Fatal(err)
				}
			} else {
				stopWorker(w, errc)
				fs.repair(t)
				w, errc = newWorker()
			}
			relayWorkload(t, p.updb, 5000, 10)
			waitSubTaskSynced(t, taskStatus(w, "t"), p)
			checkEqual(t, p.updb, p.downdb, "rl.t", "rl.t")
			if err := w.PauseRelay(); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "the relay paused", func() bool {
				rs := w.Status(context.Background()).Relay
				return rs != nil && rs.Stage == dmworker.RelayPaused
			})
			checkRelayEqualsUpstream(t, sub, upstreamFiles(t, p.up), nil)
		})
	}
}
