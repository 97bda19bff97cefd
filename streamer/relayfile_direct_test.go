package streamer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// TestRelayFileWriterDirectIO copies the dump of
// TestRelayFileWriterWriteBehind through writers with direct I/O, with and
// without write-behind, and resuming a file whose last block is partial
// (the writer loads it back to align its buffer): after every Flush the
// file must hold exactly what was written (the partial block goes through
// the page cache, the whole ones directly), and at the end the binlog.
// Where the file system takes O_DIRECT, the writer must use it.
func TestRelayFileWriterDirectIO(t *testing.T) {
	stream, want := relayTestDump(t)
	for _, behind := range []bool{true, false} {
		for _, resumeAt := range []int{0, 3001} {
			testRelayFileWriter(t, stream, want, behind, true, false, resumeAt)
		}
	}
}

// TestRelayFileWriterFlushBehind copies the dump through writers with
// write-behind, buffered and direct, taking sync points with FlushBehind
// as the relay does: once the syncer synced a point the file must hold
// exactly what was written, and at the end the binlog.
func TestRelayFileWriterFlushBehind(t *testing.T) {
	stream, want := relayTestDump(t)
	for _, direct := range []bool{false, true} {
		for _, resumeAt := range []int{0, 3001} {
			testRelayFileWriter(t, stream, want, true, direct, true, resumeAt)
		}
	}
}

// TestFlushBehindPointFailsWithTheWrite makes a write behind fail (its
// file's descriptors closed under the writer): the sync point FlushBehind
// returns must fail with that error rather than be fsynced as if the bytes
// were written, and so must the writer's next flush.
func TestFlushBehindPointFailsWithTheWrite(t *testing.T) {
	stream, _ := relayTestDump(t)
	for _, direct := range []bool{false, true} {
		dir := t.TempDir()
		w, err := newRelayFileWriter(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		w.WriteBehind()
		if direct {
			if err := w.DirectIO(); err != nil {
				t.Fatal(err)
			}
		}
		r := newFuzzRawReader(t)
		p := newPacketReader(bytes.NewReader(stream), 1, 64<<10)
		var fs RelayFileSyncer
		var pt RelaySyncPoint
		broken := false
		for events := 0; ; {
			payload, err := p.next()
			if err != nil {
				t.Fatalf("direct %v: the dump ended before the failure showed", direct)
			}
			deliver, err := r.process(payload[1:])
			if err != nil {
				t.Fatal(err)
			}
			if !deliver {
				continue
			}
			events++
			if _, err := w.WriteRaw(&r.ev); err != nil {
				if !broken {
					t.Fatal(err)
				}
				break // a later hand-over reported it: fine too
			}
			if events == 100 {
				// Break the file under the writer: every write from now on fails.
				w.f.Close()
				if w.df != nil {
					w.df.Close()
				}
				broken = true
			}
			if broken && w.seq > 0 {
				if pt, err = w.FlushBehind(); err != nil {
					break
				}
				if err := fs.Sync(pt); err == nil {
					t.Fatalf("direct %v: a point whose write failed synced without error", direct)
				}
				if _, err := w.FlushBehind(); err == nil {
					t.Fatalf("direct %v: the writer's next flush after a failed write behind succeeded", direct)
				}
				break
			}
		}
		w.Close()
		fs.Close()
	}
}

// TestWriteDirectFallsBack writes through writeDirect what a direct write
// cannot take (a length or offset off the alignment, or no direct
// descriptor): the bytes must land in the file all the same.
func TestWriteDirectFallsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var df *os.File
	if oDirect != 0 {
		if df, err = os.OpenFile(path, os.O_WRONLY|oDirect, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Fatal(err)
		}
		if df != nil {
			defer df.Close()
		}
	}
	buf := alignedBuffer(3 * dioAlign)
	for i := range cap(buf) {
		buf = append(buf, byte(i*7+1))
	}
	writes := []struct {
		b   []byte
		off int64
	}{
		{buf[:dioAlign], 0},                 // aligned: direct
		{buf[:100], dioAlign},               // short
		{buf[1 : 1+dioAlign], 2 * dioAlign}, // memory off the alignment
		{buf[:dioAlign], 3*dioAlign + 1},    // offset off the alignment
	}
	want := make([]byte, 4*dioAlign+1)
	for _, w := range writes {
		if err := writeDirect(f, df, w.b, w.off); err != nil {
			t.Fatalf("write of %d bytes at %d: %v", len(w.b), w.off, err)
		}
		copy(want[w.off:], w.b)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("the file holds %d bytes that differ from the %d written", len(got), len(want))
	}
}

var (
	directIOOnce sync.Once
	directIOOK   bool
)

// directIOWorks reports whether the file system under dir takes O_DIRECT.
func directIOWorks(t *testing.T, dir string) bool {
	directIOOnce.Do(func() {
		if oDirect == 0 {
			return
		}
		f, err := os.OpenFile(filepath.Join(dir, ".probe"), os.O_WRONLY|os.O_CREATE|oDirect, 0o600)
		if err != nil {
			t.Logf("O_DIRECT refused here: %v", err)
			return
		}
		f.Close()
		os.Remove(filepath.Join(dir, ".probe"))
		directIOOK = true
	})
	return directIOOK
}
