package dmworker_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestRelayOpenReader: a host reads a running relay through OpenReader; the
// reader's lease keeps its file from purge until it acknowledges a later
// position; after the reader's and the relay's Close (auto purge on, so two
// goroutines in Run) no goroutine of the library is left.
func TestRelayOpenReader(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 57, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 40)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	before := libraryGoroutines()
	first := streamer.Position{Name: "mysql-bin.000001", Offset: 4}
	rel, err := dmworker.NewRelay(upstreamOf(m), t.TempDir(), dmworker.RelayConfig{RelayStart: first,
		PurgeInterval: dmworker.Duration(20 * time.Millisecond), PurgeExpires: dmworker.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rel.OpenReader(ctx, "", first); err == nil {
		t.Fatal("OpenReader without a name: no error")
	}
	errc := runRelay(t, rel)
	lr, err := rel.OpenReader(ctx, "host-reader", first)
	if err != nil {
		t.Fatal(err)
	}
	waitRelayed(t, rel, db, errc)
	file, pos := masterPos(t, db)
	end := streamer.Position{Name: file, Offset: pos}
	got := readReal(ctx, t, lr, func(ev *streamer.Event) bool { return ev.Pos.Compare(end) >= 0 })
	if len(got) == 0 {
		t.Fatal("no event read")
	}
	if file == first.Name {
		t.Fatalf("the workload did not rotate past %s", file)
	}

	// Nothing acknowledged: the reader's lease keeps its first file.
	res, err := rel.PurgeOlderThan(time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || res.Kept.Name != first.Name {
		t.Fatalf("purge with the lease at the first file: removed %v, kept %s", res.Removed, res.Kept)
	}
	// Acknowledged up to where it is: the files before go.
	at := lr.RelayPos()
	lr.Ack(at)
	res, err = rel.PurgeOlderThan(time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) == 0 || res.Kept.Name != at.Name {
		t.Fatalf("purge with the lease at %s: removed %v, kept %s", at, res.Removed, res.Kept)
	}

	if err := lr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rel.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := rel.OpenReader(ctx, "late", first); err != dmworker.ErrRelayClosed {
		t.Fatalf("OpenReader after Close: %v, want ErrRelayClosed", err)
	}
	waitNoLibraryGoroutines(t, before)
}

// libraryGoroutines returns the stacks, by goroutine id, of the goroutines
// running code of the library (root, streamer) or of go-mysql's binlog
// syncer, test runners aside.
func libraryGoroutines() map[string]string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.(*T)") || strings.Contains(g, "testing.tRunner") {
			continue
		}
		if strings.Contains(g, "github.com/dmworker/dmworker.") || strings.Contains(g, "github.com/dmworker/dmworker/streamer.") ||
			strings.Contains(g, "go-mysql-org/go-mysql/replication.") {
			id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
			out[id] = g
		}
	}
	return out
}

// waitNoLibraryGoroutines fails when, within a few seconds, goroutines
// running code of the library or of go-mysql's binlog syncer are there that
// were not in before (libraryGoroutines at the test's start: other tests'
// may still be ending).
func waitNoLibraryGoroutines(t *testing.T, before map[string]string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		var left []string
		for id, g := range libraryGoroutines() {
			if _, ok := before[id]; !ok {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
