package dmworker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// noLeaks checks, once every cleanup of the test has run (servers stopped,
// workers closed), that the test left no goroutine behind.
func noLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// testLiveness is a Liveness the test switches by hand.
type testLiveness struct {
	mu      sync.Mutex
	alive   bool
	changed chan struct{}
}

func newTestLiveness() *testLiveness { return &testLiveness{alive: true, changed: make(chan struct{})} }

func (l *testLiveness) Alive() (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.alive, l.changed
}

func (l *testLiveness) set(alive bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alive = alive
	close(l.changed)
	l.changed = make(chan struct{})
}

// mysqlSinks makes a mysqlsink on db for every subtask.
func mysqlSinks(db *sql.DB) dmworker.SinkFactory {
	return func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return mysqlsink.New(db)
	}
}

// runWorker runs w.Run in a goroutine; the cleanup closes w and checks Run
// returned nil.
func runWorker(t *testing.T, w *dmworker.SourceWorker) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background()) }()
	t.Cleanup(func() {
		w.Close()
		if err := <-errc; err != nil {
			t.Errorf("worker %s Run: %v", w.Name(), err)
		}
	})
}

// taskStatus returns a function reporting the worker's subtask name (a
// zero status with stage "" when it has none).
func taskStatus(w *dmworker.SourceWorker, name string) func() dmworker.SubTaskStatus {
	return func() dmworker.SubTaskStatus {
		for _, st := range w.Status(context.Background()).SubTasks {
			if st.Name == name {
				return st
			}
		}
		return dmworker.SubTaskStatus{}
	}
}

// TestSourceWorkerDirect: a worker with no etcd, relay on, two subtasks
// (one routing to another schema) reading the relay; pause and resume of a
// subtask and of the relay, purge, stop; a liveness loss stops everything
// at once and a return starts it again from the worker's state.
func TestSourceWorkerDirect(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 404, 405, testserver.MariaDBOptions{MaxBinlogSize: 16 << 10})
	up := upstreamOf(p.up)
	up.ServerID = 404 + 40
	live := newTestLiveness()
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb),
		dmworker.WithSource(dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}),
		dmworker.WithRelayDir(t.TempDir()), dmworker.WithLiveness(live))
	if err != nil {
		t.Fatal(err)
	}
	// Started before Run: applied when Run starts.
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "a", SyncerTuning: dmworker.SyncerTuning{BatchSize: 30}}); err != nil {
		t.Fatal(err)
	}
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "a"}); !errors.Is(err, dmworker.ErrSubTaskExists) {
		t.Fatalf("second start: %v, want ErrSubTaskExists", err)
	}
	runWorker(t, w)
	routed := dmworker.SubTaskConfig{Name: "b", Routes: []dmworker.RouteRule{{SchemaPattern: "app", TargetSchema: "app_b"}}}
	if err := w.StartSubTask(routed); err != nil {
		t.Fatal(err)
	}
	waitStage(t, taskStatus(w, "a"), dmworker.SubTaskRunning)
	waitUntil(t, "both subtasks reading", func() bool {
		return taskStatus(w, "a")().Syncer.Read.Name != "" && taskStatus(w, "b")().Syncer.Read.Name != ""
	})

	rnd := rand.New(rand.NewPCG(404, 1))
	syncWorkload(t, p.updb, rnd, 150)
	waitSubTaskSynced(t, taskStatus(w, "a"), p)
	waitSubTaskSynced(t, taskStatus(w, "b"), p)
	for _, tbl := range []string{"accounts", "events"} {
		checkEqual(t, p.updb, p.downdb, "app."+tbl, "app."+tbl)
		checkEqual(t, p.updb, p.downdb, "app."+tbl, "app_b."+tbl)
	}
	st := w.Status(context.Background())
	if st.Source != "src" || st.Relay == nil || st.Relay.Stage != dmworker.RelayRunning || len(st.SubTasks) != 2 || !st.Alive {
		t.Fatalf("worker status %+v", st)
	}

	// Pause one subtask and the relay; resume both.
	if err := w.PauseSubTask("a"); err != nil {
		t.Fatal(err)
	}
	if s := taskStatus(w, "a")(); s.Stage != dmworker.SubTaskPaused {
		t.Fatalf("after PauseSubTask: %s", s.Stage)
	}
	if err := w.PauseRelay(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the relay paused", func() bool { return w.Status(context.Background()).Relay.Stage == dmworker.RelayPaused })
	syncWorkload(t, p.updb, rnd, 30)
	if err := w.ResumeRelay(); err != nil {
		t.Fatal(err)
	}
	if err := w.ResumeSubTask("a"); err != nil {
		t.Fatal(err)
	}
	waitSubTaskSynced(t, taskStatus(w, "a"), p)
	waitSubTaskSynced(t, taskStatus(w, "b"), p)
	checkEqual(t, p.updb, p.downdb, "app.events", "app.events")

	// Purge what both subtasks have checkpointed past; they read on.
	if _, err := w.PurgeRelay(dmworker.RelayPurge{}); err == nil {
		t.Fatal("PurgeRelay with no request succeeded")
	}
	res, err := w.PurgeRelay(dmworker.RelayPurge{Before: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept.IsZero() {
		t.Fatalf("purge kept nothing back: %+v", res)
	}
	// What the subtasks registered (at most their checkpoints) stays.
	sub := onlySubdir(t, w.Status(context.Background()).Relay.Dir)
	for _, name := range []string{"a", "b"} {
		cp := taskStatus(w, name)().Syncer.Checkpoint
		if _, err := os.Stat(filepath.Join(sub, cp.Name)); err != nil {
			t.Fatalf("purge removed %s, which holds subtask %s's checkpoint %s: %v (removed %v)", cp.Name, name, cp, err, res.Removed)
		}
	}

	// Liveness lost: everything stops at once.
	live.set(false)
	waitUntil(t, "everything stopped", func() bool {
		st := w.Status(context.Background())
		return !st.Alive && st.Relay == nil && len(st.SubTasks) == 0
	})
	before := checkpointOf(t, p.downdb, "a", "src")
	syncWorkload(t, p.updb, rnd, 30)
	if after := checkpointOf(t, p.downdb, "a", "src"); after != before {
		t.Fatalf("a dead worker moved the checkpoint from %s to %s", before, after)
	}
	// Back: the subtasks start again from the worker's state and catch up.
	live.set(true)
	waitSubTaskSynced(t, taskStatus(w, "a"), p)
	waitSubTaskSynced(t, taskStatus(w, "b"), p)
	for _, tbl := range []string{"accounts", "events"} {
		checkEqual(t, p.updb, p.downdb, "app."+tbl, "app."+tbl)
		checkEqual(t, p.updb, p.downdb, "app."+tbl, "app_b."+tbl)
	}

	// Update a subtask, stop the other.
	upd := routed
	upd.BatchSize = 7
	if err := w.UpdateSubTask(upd); err != nil {
		t.Fatal(err)
	}
	if s := taskStatus(w, "b")(); s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("after UpdateSubTask: %s %v", s.Stage, s.LastError)
	}
	if err := w.StopSubTask("b"); err != nil {
		t.Fatal(err)
	}
	if err := w.PauseSubTask("b"); !errors.Is(err, dmworker.ErrSubTaskNotFound) {
		t.Fatalf("pause of a stopped subtask: %v, want ErrSubTaskNotFound", err)
	}
	if n := len(w.Status(context.Background()).SubTasks); n != 1 {
		t.Fatalf("%d subtasks after StopSubTask", n)
	}
}

// checkpointOf reads the checkpoint mysqlsink stored for task and source.
func checkpointOf(t *testing.T, db *sql.DB, task, source string) string {
	t.Helper()
	var pos string
	var epoch int64
	if err := db.QueryRow("SELECT pos, epoch FROM dmworker_meta.checkpoint WHERE task = ? AND source = ?", task, source).Scan(&pos, &epoch); err != nil {
		t.Fatal(err)
	}
	return pos
}

func checkpointEpoch(t *testing.T, db *sql.DB, task, source string) int64 {
	t.Helper()
	var epoch int64
	if err := db.QueryRow("SELECT epoch FROM dmworker_meta.checkpoint WHERE task = ? AND source = ?", task, source).Scan(&epoch); err != nil {
		t.Fatal(err)
	}
	return epoch
}

// TestNewSourceWorkerRejects: bad arguments fail in the constructor, and
// direct-mode calls fail in etcd mode.
func TestNewSourceWorkerRejects(t *testing.T) {
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return nil, nil
	}
	up := streamer.UpstreamConfig{Host: "127.0.0.1", Port: 3306, User: "u"}
	src := dmworker.SourceConfig{Name: "s", Upstream: up}
	cli := &clientv3.Client{}
	cases := []struct {
		name  string
		wname string
		sinks dmworker.SinkFactory
		opts  []dmworker.SourceWorkerOption
		want  string
	}{
		{"name", "", sinks, []dmworker.SourceWorkerOption{dmworker.WithSource(src)}, "name"},
		{"sinks", "w", nil, []dmworker.SourceWorkerOption{dmworker.WithSource(src)}, "sink factory"},
		{"no mode", "w", sinks, nil, "WithSource"},
		{"both modes", "w", sinks, []dmworker.SourceWorkerOption{dmworker.WithSource(src), dmworker.WithEtcd(cli)}, "exclude"},
		{"prefix", "w", sinks, []dmworker.SourceWorkerOption{dmworker.WithSource(src), dmworker.WithEtcdPrefix("/x/")}, "need WithEtcd"},
		{"source name", "w", sinks, []dmworker.SourceWorkerOption{dmworker.WithSource(dmworker.SourceConfig{Name: "a/b", Upstream: up})}, "source name"},
		{"relay dir", "w", sinks, []dmworker.SourceWorkerOption{dmworker.WithSource(dmworker.SourceConfig{Name: "s", Upstream: up, EnableRelay: true})}, "WithRelayDir"},
		{"purge", "w", sinks, []dmworker.SourceWorkerOption{dmworker.WithSource(dmworker.SourceConfig{Name: "s", Upstream: up, EnableRelay: true,
			RelayDir: "/tmp/x", RelayConfig: dmworker.RelayConfig{PurgeInterval: dmworker.Duration(time.Minute)}})}, "purge"},
		// (An option a SourceWorker does not take, WithEpoch, no longer
		// compiles: SourceWorkerOption is typed.)
	}
	for _, c := range cases {
		_, err := dmworker.NewSourceWorker(c.wname, c.sinks, c.opts...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	w, err := dmworker.NewSourceWorker("w", sinks, dmworker.WithEtcd(cli))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{w.StartSubTask(dmworker.SubTaskConfig{Name: "t"}), w.PauseSubTask("t"), w.PauseRelay()} {
		if !errors.Is(err, dmworker.ErrEtcdMode) {
			t.Errorf("direct call in etcd mode: %v, want ErrEtcdMode", err)
		}
	}
	w.Close()
	if err := w.Run(context.Background()); !errors.Is(err, dmworker.ErrWorkerClosed) {
		t.Errorf("Run after Close: %v, want ErrWorkerClosed", err)
	}
}

// etcdPut writes a key or fails the test.
func etcdPut(t *testing.T, cli *clientv3.Client, key string, v any) *clientv3.PutResponse {
	t.Helper()
	var s string
	switch v := v.(type) {
	case string:
		s = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		s = string(b)
	}
	resp, err := cli.Put(context.Background(), key, s)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// reportOf reads a subtask's status report from etcd (stage "" when none).
func reportOf(t *testing.T, cli *clientv3.Client, key string) dmworker.SubTaskReport {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var r dmworker.SubTaskReport
	if len(resp.Kvs) > 0 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
			t.Fatal(err)
		}
	}
	return r
}
