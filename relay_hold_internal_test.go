package dmworker

import (
	"context"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestRelayReaderStartSafeFromPurge: a reader opened at a file the relay
// holds is safe from purge from the moment the relay looked at its files.
// Before, OpenReader registered the reader only when it had to fetch older
// files: a start the relay held was registered by the local reader once
// open, and a purge in between (the purge loop, or by hand) removed the
// start's file, or the files after it while the reader read the start's
// (TestSoakSourceWorkerCycles met it: a subtask restarted from its
// checkpoint found its file rotating to one the purge had removed, and
// paused with streamer.ErrRelayCorrupt). A purge now also sees a reader
// registered while it runs: it reads the leases and removes under the
// lock the registration takes.
func TestRelayReaderStartSafeFromPurge(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 492, MaxBinlogSize: 4096})
	db := m.DB(t)
	up := streamer.UpstreamConfig{Host: m.Host, Port: uint16(m.Port), User: m.User, Password: m.Password, Flavor: streamer.FlavorMariaDB}
	ctx := context.Background()
	r, err := NewRelay(up, t.TempDir(), RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		if err := <-runErr; err != nil {
			t.Error(err)
		}
	}()
	for _, q := range []string{"CREATE DATABASE hold", "CREATE TABLE hold.t (id INT PRIMARY KEY, v VARCHAR(200))"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 {
		if _, err := db.Exec("INSERT INTO hold.t VALUES (?, REPEAT('x', 200))", i); err != nil {
			t.Fatal(err)
		}
	}
	var st streamer.UpstreamState
	waitFor(t, func() bool {
		if st, err = streamer.QueryUpstream(ctx, up); err != nil {
			t.Fatal(err)
		}
		p, _ := r.Relayed()
		return p.Name == st.Master.Name && p.Offset >= st.Master.Offset
	})
	sub, oldest, err := r.rdir.Oldest()
	if err != nil || oldest == "" || oldest == st.Master.Name {
		t.Fatalf("the relay's oldest file %s/%s (upstream at %s): %v", sub, oldest, st.Master, err)
	}
	// The reader's start is looked at; a purge of everything it may
	// remove runs before the reader opens.
	if _, err := r.hold(ctx, "late", streamer.Position{Name: oldest, Offset: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PurgeOlderThan(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !r.rdir.Holds(oldest) {
		t.Fatalf("purge removed %s, the start of a reader being opened", oldest)
	}
	lr, err := r.OpenReader(ctx, "late", streamer.Position{Name: oldest, Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lr.GetEvent(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lr.Close(); err != nil {
		t.Fatal(err)
	}
}
