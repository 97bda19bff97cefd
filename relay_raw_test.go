package dmworker_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestRelayCopiesThroughFaults copies an upstream whose binlog holds events
// over 1 and 16 MiB (the sizes where the raw reader assembles payloads)
// while the dump connection is killed by the server, stalled until the read
// timeout gives up on it, and reset: the relay files still equal the
// upstream's byte for byte, and relay.meta holds the GTID set reached.
func TestRelayCopiesThroughFaults(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 320, MaxBinlogSize: 64 << 10,
		ExtraArgs: []string{"--max-allowed-packet=64M"}})
	db := m.DB(t)
	relayWorkload(t, db, 0, 40)
	mustExec(t, db, "CREATE TABLE rl.big (id INT PRIMARY KEY, b LONGBLOB)")
	mustExec(t, db, "INSERT INTO rl.big VALUES (1, REPEAT('a', 3 << 20)), (2, REPEAT('b', 2 << 20))")
	mustExec(t, db, "INSERT INTO rl.big VALUES (3, REPEAT('c', 17 << 20))")
	relayWorkload(t, db, 40, 40)

	p, err := faultnet.New(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	up := upstreamOf(m)
	up.Port = uint16(p.Port())
	dir := t.TempDir()
	r, err := dmworker.NewRelay(up, dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}},
		dmworker.WithRemoteOptions(streamer.WithHeartbeat(200*time.Millisecond), streamer.WithReadTimeout(time.Second),
			streamer.WithBackoff(20*time.Millisecond, 200*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	waitRelayed(t, r, db, errc)

	dumpThread := func() int64 {
		var id int64
		if err := db.QueryRow("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'").Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	faults := []struct {
		name  string
		fault func()
	}{
		{"the server kills the dump thread", func() { mustExec(t, db, fmt.Sprintf("KILL %d", dumpThread())) }},
		{"the network stalls", func() {
			before := p.Accepted()
			p.Stall(true)
			waitUntil(t, "a new connection after the read timeout", func() bool { return p.Accepted() > before })
			p.CutAll()
			p.Stall(false)
		}},
		{"the connection is reset", func() { p.CutAll() }},
	}
	for i, f := range faults {
		// Start a big transaction, break the connection while it is
		// on its way, and write more after.
		done := make(chan error, 1)
		go func() {
			_, err := db.Exec(fmt.Sprintf("INSERT INTO rl.big VALUES (%d, REPEAT('d', 5 << 20))", 10+i))
			done <- err
		}()
		f.fault()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		relayWorkload(t, db, 100+40*i, 30)
		waitRelayed(t, r, db, errc)
		t.Logf("%s: relayed on", f.name)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if p.Accepted() < 3 {
		t.Fatalf("%d connections through the proxy: the faults did not force reconnects", p.Accepted())
	}

	files := upstreamFiles(t, m)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slicesSortNames(names)
	sub := onlySubdir(t, dir)
	checkRelayEqualsUpstream(t, sub, files, names)
	meta, err := streamer.ReadRelayMeta(sub)
	if err != nil {
		t.Fatal(err)
	}
	var gtid string
	if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		t.Fatal(err)
	}
	if meta.BinlogGTID != gtid || !strings.HasPrefix(filepath.Base(sub), "0-320.") {
		t.Fatalf("relay.meta GTID %q in %s, upstream at %q", meta.BinlogGTID, sub, gtid)
	}
}
