package dmworker_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// smallFS mounts a small file system of the kind named ("tmpfs", or
// "ext4": an image on a loop device) and returns its mount point; it is
// unmounted at the end of the test. Mounting needs root: without it the
// test is skipped, with a message.
func smallFS(t *testing.T, kind string, size int64) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	switch kind {
	case "tmpfs":
		cmd = exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", mnt)
	case "ext4":
		img := filepath.Join(t.TempDir(), "fs.img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, size); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
			t.Skipf("mkfs.ext4: %v: %s", err, out)
		}
		cmd = exec.Command("mount", "-o", "loop,errors=remount-ro", img, mnt)
	}
	if os.Geteuid() != 0 {
		t.Skipf("mounting a small %s needs root", kind)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small %s: %v: %s", kind, err, out)
	}
	t.Cleanup(func() {
		// Lazy: a child's descriptor must not keep it mounted.
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
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

// checkRelayDurable checks what a stopped relay left: its published end
// (relay.meta) names a file, every file up to it holds whole valid events
// equal to the upstream's bytes up to that end.
func checkRelayDurable(t *testing.T, sub string, m *testserver.MariaDB, published streamer.RelayPos) {
	t.Helper()
	meta, err := streamer.ReadRelayMeta(sub)
	if err != nil {
		t.Fatal(err)
	}
	if meta.BinlogName != published.Name || meta.BinlogPos != published.Offset {
		t.Fatalf("relay.meta %s:%d, the relay published %s", meta.BinlogName, meta.BinlogPos, published)
	}
	up := upstreamFiles(t, m)
	files, err := streamer.RelayFiles(sub)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if (streamer.Position{Name: f}).Compare(streamer.Position{Name: meta.BinlogName}) > 0 {
			continue // written past the durable end: the next start removes it or cuts it
		}
		p := filepath.Join(sub, f)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		end := int64(len(got))
		if f == meta.BinlogName {
			end = int64(meta.BinlogPos)
		}
		if end > int64(len(got)) {
			t.Fatalf("%s: relay.meta's durable end %d past the file's %d bytes", p, end, len(got))
		}
		if i := firstDiff(got[:end], up[f][:min(end, int64(len(up[f])))]); i >= 0 {
			t.Fatalf("%s differs from the upstream at %d, before the durable end %d", p, i, end)
		}
		scan, err := streamer.ScanRelayFile(p, streamer.FlavorMariaDB)
		if err != nil {
			t.Fatal(err)
		}
		if scan.EventEnd < end || (scan.BadAt >= 0 && scan.BadAt < end) {
			t.Fatalf("%s: whole events end at %d (bad at %d: %v), before the durable end %d", p, scan.EventEnd, scan.BadAt, scan.Bad, end)
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
			mnt := smallFS(t, kind, 8<<20)
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
