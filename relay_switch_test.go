package dmworker_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestRelayMasterSwitch relays A, then points the same relay directory at B,
// A's replica promoted after a failover: a new subdirectory continues from
// B's copy of A's transactions, and the old one stays as it was.
func TestRelayMasterSwitch(t *testing.T) {
	a := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 31, MaxBinlogSize: 32 << 10})
	b := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 32, MaxBinlogSize: 32 << 10})
	adb, bdb := a.DB(t), b.DB(t)
	mustExec(t, bdb, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos",
		a.Port, a.User, a.Password))
	mustExec(t, bdb, "START SLAVE")

	relayWorkload(t, adb, 0, 60)
	dir := t.TempDir()
	relayOnce(t, a, dir, dmworker.RelayConfig{})
	oldSub := onlySubdir(t, dir)
	before := snapshotDir(t, oldSub)

	// More on A while no relay runs, then the failover: B catches up, stops
	// replicating, and takes writes of its own.
	relayWorkload(t, adb, 60, 30)
	promote(t, adb, bdb)
	relayWorkload(t, bdb, 1000, 30)

	relayOnce(t, b, dir, dmworker.RelayConfig{})
	names, err := streamer.ReadRelayIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] != filepath.Base(oldSub) || names[1] != "0-32.000002" {
		t.Fatalf("index %v, want [%s 0-32.000002]", names, filepath.Base(oldSub))
	}
	if after := snapshotDir(t, oldSub); !equalSnapshots(before, after) {
		t.Fatal("the old subdirectory changed")
	}
	newSub := filepath.Join(dir, names[1])
	checkRelayEqualsUpstream(t, newSub, upstreamFiles(t, b), nil)
	// The new subdirectory starts with the file of B holding the first
	// transaction the old one lacked, and holds every later one.
	files, _ := streamer.RelayFiles(newSub)
	bFiles, _ := b.BinlogFiles(context.Background())
	if filepath.Base(bFiles[len(bFiles)-1]) != files[len(files)-1] {
		t.Fatalf("new subdirectory ends at %s, B at %s", files[len(files)-1], bFiles[len(bFiles)-1])
	}
	meta, _ := streamer.ReadRelayMeta(newSub)
	var bPos string
	if err := bdb.QueryRow("SELECT @@gtid_binlog_pos").Scan(&bPos); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(meta.BinlogGTID, "0-32-") || meta.BinlogGTID != bPos {
		t.Fatalf("new meta GTID %q, B at %q", meta.BinlogGTID, bPos)
	}
}

// TestRelayBinlogReset: RESET MASTER on the same server restarts its binlog
// under the same names; the relay notices and starts a new subdirectory.
func TestRelayBinlogReset(t *testing.T) {
	for _, rotate := range []bool{true, false} {
		t.Run(fmt.Sprintf("relay past the first file %v", rotate), func(t *testing.T) {
			size := int64(1 << 30)
			if rotate {
				size = 16 << 10
			}
			m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 33, MaxBinlogSize: size})
			db := m.DB(t)
			relayWorkload(t, db, 0, 30)
			dir := t.TempDir()
			relayOnce(t, m, dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}})
			oldSub := onlySubdir(t, dir)
			before := snapshotDir(t, oldSub)

			mustExec(t, db, "RESET MASTER")
			// Enough new data that the new first file is longer than the
			// relay's copy of the old one.
			relayWorkload(t, db, 100, 60)
			relayOnce(t, m, dir, dmworker.RelayConfig{})

			names, _ := streamer.ReadRelayIndex(dir)
			if len(names) != 2 || names[1] != "0-33.000002" {
				t.Fatalf("index %v, want a second subdirectory 0-33.000002", names)
			}
			if after := snapshotDir(t, oldSub); !equalSnapshots(before, after) {
				t.Fatal("the old subdirectory changed")
			}
			newSub := filepath.Join(dir, names[1])
			files, _ := streamer.RelayFiles(newSub)
			if files[0] != "mysql-bin.000001" {
				t.Fatalf("new subdirectory starts at %s", files[0])
			}
			checkRelayEqualsUpstream(t, newSub, upstreamFiles(t, m), nil)
		})
	}
}

// promote waits until the replica b has applied everything its primary a
// has written, and stops its replication: b is promoted.
func promote(t testing.TB, a, b *sql.DB) {
	t.Helper()
	var aPos string
	if err := a.QueryRow("SELECT @@gtid_binlog_pos").Scan(&aPos); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "B caught up with A", func() bool {
		var bPos string
		_ = b.QueryRow("SELECT @@gtid_slave_pos").Scan(&bPos)
		return bPos == aPos
	})
	mustExec(t, b, "STOP SLAVE")
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRelayPurge: purge by name, age and space never removes what a
// registered reader needs nor the file being written; emptying an old
// subdirectory removes it and its index line.
func TestRelayPurge(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 34, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 80)
	dir := t.TempDir()
	r, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{RelayStart: streamer.Position{Name: "mysql-bin.000001", Offset: 4}})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	waitRelayed(t, r, db, errc)
	sub := onlySubdir(t, dir)
	subName := filepath.Base(sub)
	files, _ := streamer.RelayFiles(sub)
	if len(files) < 8 {
		t.Fatalf("only %d files", len(files))
	}

	// A reader still needs files[3] onward.
	lease, err := r.RegisterReader("syncer-1", streamer.RelayPos{SubDir: subName, Name: files[3], Offset: 1234})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.PurgeTo(subName, files[6])
	if err != nil {
		t.Fatal(err)
	}
	left, _ := streamer.RelayFiles(sub)
	if len(res.Removed) != 3 || left[0] != files[3] {
		t.Fatalf("removed %v, left from %s; want files before %s only", res.Removed, left[0], files[3])
	}
	if res.Kept.Name != files[3] {
		t.Fatalf("kept from %v", res.Kept)
	}

	// The lease moves on; age-based purge removes up to it.
	lease.Advance(streamer.RelayPos{SubDir: subName, Name: files[5], Offset: 4})
	lease.Advance(streamer.RelayPos{SubDir: subName, Name: files[4], Offset: 4}) // backwards: ignored
	if _, err := r.PurgeOlderThan(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	left, _ = streamer.RelayFiles(sub)
	if left[0] != files[5] {
		t.Fatalf("after age purge the oldest is %s, want %s", left[0], files[5])
	}

	// Released: everything but the file being written may go, even when
	// asking for more free space than the disk has.
	lease.Release()
	if _, err := r.PurgeForSpace(1 << 62); err != nil {
		t.Fatal(err)
	}
	left, _ = streamer.RelayFiles(sub)
	relayed, _ := r.Relayed()
	if len(left) != 1 || left[0] != relayed.Name {
		t.Fatalf("left %v, want only the active file %s", left, relayed.Name)
	}
	// The relay goes on writing.
	relayWorkload(t, db, 80, 20)
	waitRelayed(t, r, db, errc)
	r.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkRelayEqualsUpstream(t, sub, upstreamFiles(t, m), nil)
}

// TestRelayPurgeRemovesEmptySubdir: after a master switch, purging every file
// of the old subdirectory removes it and its index line.
func TestRelayPurgeRemovesEmptySubdir(t *testing.T) {
	a := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 35, MaxBinlogSize: 16 << 10})
	relayWorkload(t, a.DB(t), 0, 20)
	dir := t.TempDir()
	relayOnce(t, a, dir, dmworker.RelayConfig{})
	oldName := filepath.Base(onlySubdir(t, dir))

	mustExec(t, a.DB(t), "RESET MASTER")
	relayWorkload(t, a.DB(t), 100, 20)
	r, err := dmworker.NewRelay(upstreamOf(a), dir, dmworker.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	waitRelayed(t, r, a.DB(t), errc)
	names, _ := streamer.ReadRelayIndex(dir)
	if len(names) != 2 {
		t.Fatalf("index %v", names)
	}
	newFiles, _ := streamer.RelayFiles(filepath.Join(dir, names[1]))
	if _, err := r.PurgeTo(names[1], newFiles[0]); err != nil {
		t.Fatal(err)
	}
	names, _ = streamer.ReadRelayIndex(dir)
	if len(names) != 1 || names[0] == oldName {
		t.Fatalf("index after purge %v", names)
	}
	if _, err := os.Stat(filepath.Join(dir, oldName)); !os.IsNotExist(err) {
		t.Fatalf("old subdirectory still there: %v", err)
	}
	r.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestRelayPauseResumeStatus pauses a running relay, checks that nothing
// moves while paused and that Status reports the lag, then resumes.
func TestRelayPauseResumeStatus(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 36})
	db := m.DB(t)
	relayWorkload(t, db, 0, 10)
	dir := t.TempDir()
	r, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{SyncPolicy: dmworker.SyncEachTransaction()})
	if err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	waitRelayed(t, r, db, errc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if st := r.Status(ctx); st.Stage != dmworker.RelayRunning || st.BytesBehind != 0 || st.LastError != nil {
		t.Fatalf("status while caught up: %+v", st)
	}

	r.Pause()
	waitUntil(t, "paused", func() bool { return r.Status(ctx).Stage == dmworker.RelayPaused })
	at, _ := r.Relayed()
	relayWorkload(t, db, 10, 10)
	st := r.Status(ctx)
	if st.BytesBehind == 0 || st.Relayed != at {
		t.Fatalf("status while paused behind the upstream: %+v (relayed before %s)", st, at)
	}
	r.Resume()
	waitRelayed(t, r, db, errc)
	if st := r.Status(ctx); st.Stage != dmworker.RelayRunning || st.BytesBehind != 0 {
		t.Fatalf("status after resume: %+v", st)
	}
	r.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkRelayEqualsUpstream(t, onlySubdir(t, dir), upstreamFiles(t, m), nil)
}

func TestNewRelayRejectsBadOptions(t *testing.T) {
	up := streamer.UpstreamConfig{Host: "h", Port: 1, User: "u"}
	cases := map[string]dmworker.RelayConfig{
		"zero interval":            {SyncPolicy: dmworker.SyncInterval(0)},
		"auto purge without limit": {PurgeInterval: dmworker.Duration(time.Minute)},
		"auto purge zero interval": {PurgeExpires: dmworker.Duration(time.Hour)},
		"bad start":                {RelayStart: streamer.Position{Name: "a b", Offset: 4}},
	}
	for name, cfg := range cases {
		if _, err := dmworker.NewRelay(up, t.TempDir(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := dmworker.NewRelay(up, "", dmworker.RelayConfig{}); err == nil {
		t.Error("no dir: no error")
	}
	if _, err := dmworker.NewRelay(streamer.UpstreamConfig{}, t.TempDir(), dmworker.RelayConfig{}); err == nil {
		t.Error("no upstream: no error")
	}
}

// TestRelayAutoPurge: the purge loop removes old files on its own, keeping
// the file a reader registered before the relay ran and everything after.
func TestRelayAutoPurge(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 37, MaxBinlogSize: 16 << 10})
	db := m.DB(t)
	relayWorkload(t, db, 0, 60)
	dir := t.TempDir()
	r, err := dmworker.NewRelay(upstreamOf(m), dir, dmworker.RelayConfig{
		RelayStart:    streamer.Position{Name: "mysql-bin.000001", Offset: 4},
		PurgeInterval: dmworker.Duration(10 * time.Millisecond), PurgeExpires: dmworker.Duration(time.Nanosecond)})
	if err != nil {
		t.Fatal(err)
	}
	keep := streamer.RelayPos{SubDir: "0-37.000001", Name: "mysql-bin.000003", Offset: 4}
	if _, err := r.RegisterReader("reader", keep); err != nil {
		t.Fatal(err)
	}
	errc := runRelay(t, r)
	waitRelayed(t, r, db, errc)
	sub := filepath.Join(dir, keep.SubDir)
	waitUntil(t, "the purge loop", func() bool {
		files, _ := streamer.RelayFiles(sub)
		return len(files) > 0 && files[0] == keep.Name
	})
	r.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	files, _ := streamer.RelayFiles(sub)
	up := upstreamFiles(t, m)
	for _, f := range files {
		if (streamer.Position{Name: f}).Compare(streamer.Position{Name: keep.Name}) < 0 {
			t.Fatalf("%s should have been purged", f)
		}
	}
	checkRelayEqualsUpstream(t, sub, up, nil)
}
