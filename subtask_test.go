package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// newPair starts an upstream and a downstream MariaDB with the given server
// ids and a mysqlsink on the downstream.
func newPair(t *testing.T, upID, downID uint32, upOpts testserver.MariaDBOptions) *syncPair {
	t.Helper()
	upOpts.ServerID = upID
	p := &syncPair{up: testserver.StartMariaDB(t, upOpts), down: testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: downID})}
	p.updb, p.downdb = p.up.DB(t), p.down.DB(t)
	var err error
	if p.sink, err = mysqlsink.New(p.downdb); err != nil {
		t.Fatal(err)
	}
	return p
}

// runSubTask runs t.Run in a goroutine; the channel gets its result. The
// cleanup stops the subtask.
func runSubTask(t *testing.T, st *dmworker.SubTask) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- st.Run(context.Background()) }()
	t.Cleanup(st.Stop)
	return errc
}

// waitCopyDone waits for st's copy to end and its syncer to start, failing
// at once if the subtask pauses on an error.
func waitCopyDone(t *testing.T, st *dmworker.SubTask) {
	t.Helper()
	waitUntil(t, "the syncer after the copy", func() bool {
		s := st.Status()
		if s.Stage == dmworker.SubTaskPaused && s.LastError != nil {
			t.Fatalf("paused: %v", s.LastError)
		}
		return s.Unit == "syncer"
	})
}

// waitSubTaskSynced waits until the subtask has checkpointed everything the
// upstream has written now: its position, or its GTID set (the checkpoint
// moves at transaction ends only, so after a rotation with no transaction
// since, the position is out of reach while the GTID set is not).
func waitSubTaskSynced(t *testing.T, status func() dmworker.SubTaskStatus, p *syncPair) {
	t.Helper()
	ust, err := streamer.QueryUpstream(context.Background(), upstreamOf(p.up))
	if err != nil {
		t.Fatal(err)
	}
	want := ust.Master
	var st dmworker.SubTaskStatus
	defer func() {
		if t.Failed() {
			t.Logf("last status: %+v", st)
		}
	}()
	waitUntil(t, "the subtask at "+want.String(), func() bool {
		st = status()
		if st.LastError != nil && st.Stage == dmworker.SubTaskPaused {
			t.Fatalf("subtask %s paused by an error: %v", st.Name, st.LastError)
		}
		cp := st.Syncer.Checkpoint
		if c, ok := cp.CompareGTID(want); ok && c >= 0 {
			return true
		}
		return cp.Compare(want) >= 0
	})
}

func waitStage(t *testing.T, status func() dmworker.SubTaskStatus, want dmworker.SubTaskStage) dmworker.SubTaskStatus {
	t.Helper()
	var st dmworker.SubTaskStatus
	waitUntil(t, "stage "+string(want), func() bool {
		st = status()
		return st.Stage == want
	})
	return st
}

// TestSubTaskStages: Run, Pause during a long workload (nothing is written
// while paused), Update while paused (a new filter takes effect), Resume,
// Stop; the downstream equals the upstream by content.
func TestSubTaskStages(t *testing.T) {
	p := newPair(t, 400, 401, testserver.MariaDBOptions{})
	up := upstreamOf(p.up)
	cfg := dmworker.SubTaskConfig{Name: "stages", SyncerTuning: dmworker.SyncerTuning{BatchSize: 20}}
	st, err := dmworker.NewSubTask(cfg, up, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Status(); s.Stage != dmworker.SubTaskNew || s.Source != up.SourceName() || s.Mode != dmworker.ModeIncremental {
		t.Fatalf("new subtask status %+v", s)
	}
	errc := runSubTask(t, st)
	waitUntil(t, "the syncer to start", func() bool { return st.Status().Syncer.Read.Name != "" })
	if s := st.Status(); s.Stage != dmworker.SubTaskRunning || s.Unit != "syncer" {
		t.Fatalf("running subtask status %+v", s)
	}
	if err := st.Update(cfg); !errors.Is(err, dmworker.ErrStage) {
		t.Fatalf("Update while running: %v, want ErrStage", err)
	}

	// A long workload, paused in the middle.
	rnd := rand.New(rand.NewPCG(400, 1))
	wl := make(chan struct{})
	go func() {
		defer close(wl)
		syncWorkload(t, p.updb, rnd, 400)
	}()
	waitUntil(t, "rows applied", func() bool { return st.Status().Syncer.Rows > 50 })
	if err := st.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := st.Status()
	if paused.Stage != dmworker.SubTaskPaused {
		t.Fatalf("after Pause: stage %s", paused.Stage)
	}
	// Whatever was read past the checkpoint (the start of a transaction
	// the pause cut) is marked for a safe-mode replay.
	var cpText, safeText string
	if err := p.downdb.QueryRow("SELECT pos, safe_until FROM dmworker_meta.checkpoint WHERE task = 'stages'").Scan(&cpText, &safeText); err != nil {
		t.Fatal(err)
	}
	stored, err1 := streamer.ParsePosition(cpText)
	safe, err2 := streamer.ParsePosition(safeText)
	if err1 != nil || err2 != nil {
		t.Fatalf("stored checkpoint %q safe until %q: %v %v", cpText, safeText, err1, err2)
	}
	if read := paused.Syncer.Read; read.Compare(stored) > 0 && read.Compare(safe) > 0 {
		t.Fatalf("paused after reading to %s, checkpoint %s, safe only until %s", read, stored, safe)
	}
	<-wl
	// Pause returned once the syncer stopped: nothing moved since.
	if now := st.Status(); !now.Syncer.Checkpoint.Equal(paused.Syncer.Checkpoint) || now.Syncer.Rows != paused.Syncer.Rows {
		t.Fatalf("paused subtask moved from %s (%d rows) to %s (%d rows)", paused.Syncer.Checkpoint, paused.Syncer.Rows, now.Syncer.Checkpoint, now.Syncer.Rows)
	}
	if n := countRows(t, p.downdb, "app.events"); n >= countRows(t, p.updb, "app.events") {
		t.Fatalf("the paused subtask has every event downstream (%d rows): the pause came too late to prove anything", n)
	}

	// Update while paused: ignore a table from now on.
	upd := cfg
	upd.Filter.IgnoreTables = []dmworker.TablePattern{{Schema: "app", Name: "skipped"}}
	upd.BatchSize = 50
	if err := st.Update(upd); err != nil {
		t.Fatal(err)
	}
	if got := st.Config(); got.BatchSize != 50 || len(got.Filter.IgnoreTables) != 1 {
		t.Fatalf("config after Update: %+v", got)
	}
	bad := upd
	bad.Mode = dmworker.ModeAll
	if err := st.Update(bad); !errors.Is(err, dmworker.ErrImmutableConfig) {
		t.Fatalf("Update of the mode: %v, want ErrImmutableConfig", err)
	}
	mustExec(t, p.updb, "CREATE TABLE app.skipped (id INT PRIMARY KEY)")
	mustExec(t, p.updb, "INSERT INTO app.skipped VALUES (1), (2)")
	if err := st.Resume(); err != nil {
		t.Fatal(err)
	}
	syncWorkload(t, p.updb, rnd, 50)
	waitSubTaskSynced(t, st.Status, p)
	checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
	checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
	var n int
	if err := p.downdb.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'skipped'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the updated filter let app.skipped through (%d tables, %v)", n, err)
	}

	// Pause returns with the stage Paused, every time (the stage used to be
	// set by Run's loop just after Pause returned).
	for i := range 10 {
		if err := st.Pause(); err != nil {
			t.Fatal(err)
		}
		if s := st.Status(); s.Stage != dmworker.SubTaskPaused {
			t.Fatalf("cycle %d: after Pause: stage %s", i, s.Stage)
		}
		if err := st.Resume(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the subtask running", func() bool { return st.Status().Stage == dmworker.SubTaskRunning })
	}

	st.Stop()
	if err := <-errc; err != nil {
		t.Fatalf("Run after Stop: %v", err)
	}
	if s := st.Status(); s.Stage != dmworker.SubTaskStopped {
		t.Fatalf("after Stop: stage %s", s.Stage)
	}
	if err := st.Resume(); !errors.Is(err, dmworker.ErrStage) {
		t.Fatalf("Resume after Stop: %v, want ErrStage", err)
	}
	if err := st.Run(context.Background()); !errors.Is(err, dmworker.ErrStage) {
		t.Fatalf("Run after Stop: %v, want ErrStage", err)
	}
}

func countRows(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSubTaskErrors: a retryable fault (the downstream down) is resumed
// automatically and converges once the downstream is back; a DDL the syncer
// cannot apply leaves the subtask Paused with the error, and Skip + Resume
// go past it.
func TestSubTaskErrors(t *testing.T) {
	p := newPair(t, 402, 403, testserver.MariaDBOptions{})
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "errs"}, upstreamOf(p.up), p.sink,
		dmworker.WithSinkRetry(200*time.Millisecond), dmworker.WithAutoResume(50*time.Millisecond, 200*time.Millisecond, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the syncer to start", func() bool { return st.Status().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE d")
	mustExec(t, p.updb, "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)")
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (1, 1)")
	waitSubTaskSynced(t, st.Status, p)

	// Retryable: the downstream goes away, writes pile up, it comes back.
	if err := p.down.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 40; i++ {
		mustExec(t, p.updb, "INSERT INTO d.t VALUES (?, ?)", i, i)
	}
	waitUntil(t, "an automatic resume", func() bool {
		s := st.Status()
		return s.Retries > 0 && s.LastError != nil && dmworker.IsRetryable(s.LastError)
	})
	if s := st.Status(); s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("retrying subtask in stage %s (%v)", s.Stage, s.LastError)
	}
	if err := p.down.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitSubTaskSynced(t, st.Status, p)
	checkEqual(t, p.updb, p.downdb, "d.t", "d.t")

	// Not retryable: partitioning is beyond the schema tracker.
	mustExec(t, p.updb, "ALTER TABLE d.t PARTITION BY HASH(id) PARTITIONS 2")
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (100, 100)")
	s := waitStage(t, st.Status, dmworker.SubTaskPaused)
	var se *dmworker.SyncError
	if !errors.Is(s.LastError, dmworker.ErrUnsupportedDDL) || !errors.As(s.LastError, &se) {
		t.Fatalf("paused with %v, want ErrUnsupportedDDL in a SyncError", s.LastError)
	}
	if !strings.Contains(s.LastError.Error(), "errs") {
		t.Fatalf("the error does not name the task: %v", s.LastError)
	}
	st.Skip(se.Pos)
	if err := st.Resume(); err != nil {
		t.Fatal(err)
	}
	waitSubTaskSynced(t, st.Status, p)
	if s := st.Status(); s.LastError != nil || s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("after Skip and Resume: %s %v", s.Stage, s.LastError)
	}
	checkEqual(t, p.updb, p.downdb, "d.t", "d.t")
}

// TestNewSubTaskRejects: bad configs and options fail in the constructor,
// with errors that say what is wrong.
func TestNewSubTaskRejects(t *testing.T) {
	up := streamer.UpstreamConfig{Host: "127.0.0.1", Port: 3306, User: "u", Name: "src"}
	sink := sinktest.NewMemSink()
	cases := []struct {
		name string
		cfg  dmworker.SubTaskConfig
		up   streamer.UpstreamConfig
		sink dmworker.Sink
		opts []dmworker.SubTaskOption
		want string
		is   error
	}{
		{"no name", dmworker.SubTaskConfig{}, up, sink, nil, "name", nil},
		{"slash", dmworker.SubTaskConfig{Name: "a/b"}, up, sink, nil, "name", nil},
		{"mode", dmworker.SubTaskConfig{Name: "t", Mode: "fast"}, up, sink, nil, "mode", nil},
		{"full", dmworker.SubTaskConfig{Name: "t", Mode: dmworker.ModeFull, Snapshot: dmworker.SnapshotConfig{Concurrency: -1}}, up, sink, nil, "concurrency", nil},
		{"all", dmworker.SubTaskConfig{Name: "t", Mode: dmworker.ModeAll, Snapshot: dmworker.SnapshotConfig{ChunkRows: -5}}, up, sink, nil, "chunk", nil},
		{"source", dmworker.SubTaskConfig{Name: "t", Source: "other"}, up, sink, nil, "source", nil},
		{"upstream", dmworker.SubTaskConfig{Name: "t"}, streamer.UpstreamConfig{Host: "h"}, sink, nil, "port", nil},
		{"no sink", dmworker.SubTaskConfig{Name: "t"}, up, nil, nil, "sink", nil},
		{"no store", dmworker.SubTaskConfig{Name: "t"}, up, noCheckpoints{sink}, nil, "WithCheckpointStore", nil},
		{"batch", dmworker.SubTaskConfig{Name: "t", SyncerTuning: dmworker.SyncerTuning{BatchSize: -1}}, up, sink, nil, "batch", nil},
		{"compact", dmworker.SubTaskConfig{Name: "t", SyncerTuning: dmworker.SyncerTuning{Compact: true, NoCompact: true}}, up, sink, nil, "no-compact", nil},
		{"resume", dmworker.SubTaskConfig{Name: "t"}, up, sink, []dmworker.SubTaskOption{dmworker.WithAutoResume(time.Second, time.Millisecond, 3)}, "auto-resume", nil},
		// (An option a SubTask does not take, WithStatusInterval, no
		// longer compiles: SubTaskOption is typed.)
	}
	for _, c := range cases {
		_, err := dmworker.NewSubTask(c.cfg, c.up, c.sink, c.opts...)
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// A sink without checkpoints works with a store.
	if _, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "t"}, up, noCheckpoints{sink},
		dmworker.WithCheckpointStore(&dmworker.MemoryCheckpointStore{})); err != nil {
		t.Fatal(err)
	}
}

// noCheckpoints hides a sink's checkpoint methods.
type noCheckpoints struct{ s dmworker.Sink }

func (n noCheckpoints) Apply(ctx context.Context, b *dmworker.Batch) error { return n.s.Apply(ctx, b) }
func (n noCheckpoints) ExecDDL(ctx context.Context, d *dmworker.DDL) error {
	return n.s.ExecDDL(ctx, d)
}

// TestSubTaskSnapshotModes: mode full copies the existing tables and
// finishes; mode all copies them with writes going on and then replicates
// from the copy's point: both downstreams end equal to the upstream.
func TestSubTaskSnapshotModes(t *testing.T) {
	p := newPair(t, 505, 506, testserver.MariaDBOptions{})
	mustExec(t, p.updb, "CREATE DATABASE app")
	mustExec(t, p.updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(32), b BLOB)")
	mustExec(t, p.updb, "CREATE TABLE app.nokey (a INT, b VARCHAR(8))")
	mustExec(t, p.updb, "INSERT INTO app.t SELECT seq, CONCAT('v', seq), REPEAT('x', seq % 50) FROM app.seq_1_to_3000")
	mustExec(t, p.updb, "INSERT INTO app.nokey VALUES (1, 'a'), (1, 'a'), (2, NULL)")
	up := upstreamOf(p.up)

	// Mode full, into the downstream's database "full" (routed).
	full := dmworker.SubTaskConfig{Name: "full", Mode: dmworker.ModeFull,
		Routes:   []dmworker.RouteRule{{SchemaPattern: "app", TargetSchema: "full"}},
		Snapshot: dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 500}}
	st, err := dmworker.NewSubTask(full, up, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	errc := runSubTask(t, st)
	s := waitStage(t, st.Status, dmworker.SubTaskFinished)
	if err := <-errc; err != nil {
		t.Fatalf("mode full: %v", err)
	}
	if !s.Snapshot.Done || s.Snapshot.Rows != 3003 || s.Unit != "" && s.Unit != "snapshot" {
		t.Fatalf("mode full status: %+v", s)
	}
	checkEqual(t, p.updb, p.downdb, "app.t", "full.t")
	checkEqual(t, p.updb, p.downdb, "app.nokey", "full.nokey")

	// Mode all, with writes before, during and after the copy.
	all := dmworker.SubTaskConfig{Name: "all", Mode: dmworker.ModeAll,
		Snapshot: dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 300}}
	st2, err := dmworker.NewSubTask(all, up, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		db := p.up.DB(t)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.Exec("UPDATE app.t SET v = CONCAT(v, '+') WHERE id = ?", 1+i%3000); err != nil {
				t.Error(err)
				return
			}
			if _, err := db.Exec("INSERT INTO app.t VALUES (?, 'new', NULL)", 10000+i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	runSubTask(t, st2)
	waitCopyDone(t, st2)
	close(stop)
	<-wrote
	waitSubTaskSynced(t, st2.Status, p)
	checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
	checkEqual(t, p.updb, p.downdb, "app.nokey", "app.nokey")
	if s := st2.Status(); !s.Snapshot.Done || s.Snapshot.Pos.IsZero() {
		t.Fatalf("mode all status: %+v", s.Snapshot)
	}
}
