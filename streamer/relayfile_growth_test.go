package streamer

import (
	"fmt"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// TestRelayFileWriterForgetsFiles: a relay's writer keeps no state per
// file it has written. Before, every file it created was appended to a
// list kept for copy mode (RelayDir.CopyUpstream), in the writer of the
// live relay too, which lives as long as the relay: a relay on small
// binlog files grew by a name per rotation for ever (2,000 after 2,000
// rotations). Copy mode still lists its files.
func TestRelayFileWriterForgetsFiles(t *testing.T) {
	for _, copyMode := range []bool{false, true} {
		dir := t.TempDir()
		w, err := newRelayFileWriter(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		w.hidden = copyMode
		const files = 2000
		for i := 1; i <= files; i++ {
			if _, err := w.write(&writeEvent{typ: replication.ROTATE_EVENT, artificial: true, next: fmt.Sprintf("mysql-bin.%06d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want := 0
		if copyMode {
			want = files
		}
		if len(w.created) != want {
			t.Fatalf("copy mode %v: the writer lists %d files after %d rotations, want %d", copyMode, len(w.created), files, want)
		}
	}
}
