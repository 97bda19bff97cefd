package streamer

import (
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
			testRelayFileWriter(t, stream, want, behind, true, resumeAt, false)
		}
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
