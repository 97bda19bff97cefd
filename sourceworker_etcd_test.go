package dmworker_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

const testPrefix = "/dmtest/"

// testKeys names the test workers' keys.
var testKeys = dmworker.NewEtcdKeys(testPrefix)

// testHost writes keys under testPrefix as a host does.
func testHost(t *testing.T, cli *clientv3.Client) *dmworker.EtcdHost {
	t.Helper()
	h, err := dmworker.NewEtcdHost(cli, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// bindSource binds source to worker and returns the binding's epoch.
func bindSource(t *testing.T, cli *clientv3.Client, worker, source string) int64 {
	t.Helper()
	epoch, err := testHost(t, cli).BindSource(context.Background(), worker, source)
	if err != nil {
		t.Fatal(err)
	}
	return epoch
}

// putSubTask writes a subtask's config.
func putSubTask(t *testing.T, cli *clientv3.Client, source string, cfg dmworker.SubTaskConfig) {
	t.Helper()
	if err := testHost(t, cli).PutSubTaskConfig(context.Background(), source, cfg); err != nil {
		t.Fatal(err)
	}
}

// putStage writes a subtask's stage.
func putStage(t *testing.T, cli *clientv3.Client, source, task string, stage dmworker.SubTaskStage) {
	t.Helper()
	if err := testHost(t, cli).PutSubTaskStage(context.Background(), source, task, stage); err != nil {
		t.Fatal(err)
	}
}

// testCredentialKey seals the test sources' passwords in etcd.
var testCredentialKey = []byte("0123456789abcdef0123456789abcdef")

// putSourceConfig writes a source config as a host does, its password sealed.
func putSourceConfig(t *testing.T, cli *clientv3.Client, cfg dmworker.SourceConfig) {
	t.Helper()
	if err := dmworker.PutSourceConfig(t.Context(), cli, cfg, dmworker.WithCredentialKey(testCredentialKey), dmworker.WithEtcdPrefix(testPrefix)); err != nil {
		t.Fatal(err)
	}
}

// TestSourceWorkerEtcd: a worker driven through etcd. Writing a subtask
// config starts it; its stage key pauses and resumes it; a compaction of
// the watched revision is survived; a liveness loss stops everything and the
// return restarts it from the state in etcd (changed meanwhile); deleting the
// config stops the subtask; status is reported under status/<worker>/.
func TestSourceWorkerEtcd(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 406, 407, testserver.MariaDBOptions{})
	e := testserver.StartEtcd(t)
	cli := e.Client
	live := newTestLiveness()
	logs := &lockedBuffer{}
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb), dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix),
		dmworker.WithCredentialKey(testCredentialKey), dmworker.WithLiveness(live), dmworker.WithLogger(slog.New(slog.NewTextHandler(logs, nil))), dmworker.WithStatusInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// The hook compacts etcd past the revision the worker is about to
	// watch from, once armed, after changing the subtask's stage.
	var armed atomic.Bool
	dmworker.SetWatchHook(w, func(rev int64) {
		if !armed.CompareAndSwap(true, false) {
			return
		}
		putStage(t, cli, "src", "t1", dmworker.SubTaskPaused)
		// Compact past the put: the watch from rev+1 must fail.
		resp := etcdPut(t, cli, testPrefix+"unwatched", "x")
		if _, err := cli.Compact(context.Background(), resp.Header.Revision); err != nil {
			t.Errorf("compact: %v", err)
		}
	})
	putSourceConfig(t, cli, dmworker.SourceConfig{Name: "src", Upstream: upstreamOf(p.up)})
	bind := bindSource(t, cli, "w1", "src")
	runWorker(t, w)
	putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t1", SyncerTuning: dmworker.SyncerTuning{BatchSize: 25}})
	st := taskStatus(w, "t1")
	waitUntil(t, "t1 reading", func() bool { return st().Syncer.Read.Name != "" })
	if s := st(); s.Epoch != bind || s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("t1: stage %s epoch %d, want Running under epoch %d", s.Stage, s.Epoch, bind)
	}
	rnd := rand.New(rand.NewPCG(406, 1))
	syncWorkload(t, p.updb, rnd, 80)
	waitSubTaskSynced(t, st, p)
	checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
	statusKey := testKeys.SubTaskStatus("w1", "t1")
	waitUntil(t, "t1's status in etcd", func() bool {
		r := reportOf(t, cli, statusKey)
		return r.Stage == dmworker.SubTaskRunning && r.Worker == "w1" && r.Source == "src" && r.Rows > 0
	})

	// Stage keys pause and resume.
	putStage(t, cli, "src", "t1", dmworker.SubTaskPaused)
	waitStage(t, st, dmworker.SubTaskPaused)
	waitUntil(t, "Paused in etcd", func() bool { return reportOf(t, cli, statusKey).Stage == dmworker.SubTaskPaused })
	putStage(t, cli, "src", "t1", dmworker.SubTaskRunning)
	waitStage(t, st, dmworker.SubTaskRunning)

	// A compaction past the watched revision: the worker reads the whole
	// state again (the hook paused t1 meanwhile), then watches on.
	armed.Store(true)
	putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t1", SyncerTuning: dmworker.SyncerTuning{BatchSize: 30}})
	waitUntil(t, "t1 updated and paused after the compaction", func() bool {
		return !armed.Load() && st().Stage == dmworker.SubTaskPaused && w.Status(context.Background()).SubTasks[0].Name == "t1"
	})
	if !strings.Contains(logs.String(), "compacted at revision") {
		t.Fatalf("the worker did not meet the compaction; its log:\n%s", logs.String())
	}
	putStage(t, cli, "src", "t1", dmworker.SubTaskRunning)
	waitStage(t, st, dmworker.SubTaskRunning)
	syncWorkload(t, p.updb, rnd, 40)
	waitSubTaskSynced(t, st, p)

	// Liveness lost: everything stops; the state changes meanwhile; back
	// alive, the worker starts from the state in etcd.
	live.set(false)
	waitUntil(t, "everything stopped", func() bool { return len(w.Status(context.Background()).SubTasks) == 0 })
	putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t2",
		Filter: dmworker.BlockAllowList{DoTables: []dmworker.TablePattern{{Schema: "app", Name: "only2"}}},
		Routes: []dmworker.RouteRule{{SchemaPattern: "app", TargetSchema: "app2"}}})
	putStage(t, cli, "src", "t1", dmworker.SubTaskPaused)
	syncWorkload(t, p.updb, rnd, 20)
	live.set(true)
	waitStage(t, st, dmworker.SubTaskPaused)
	st2 := taskStatus(w, "t2")
	waitUntil(t, "t2 reading", func() bool { return st2().Syncer.Read.Name != "" })
	mustExec(t, p.downdb, "CREATE DATABASE app2") // the route renames tables, not this schema's creation
	mustExec(t, p.updb, "CREATE TABLE app.only2 (id INT PRIMARY KEY, v VARCHAR(20))")
	mustExec(t, p.updb, "INSERT INTO app.only2 VALUES (1, 'a'), (2, 'b')")
	waitSubTaskSynced(t, st2, p)
	checkEqual(t, p.updb, p.downdb, "app.only2", "app2.only2")
	putStage(t, cli, "src", "t1", dmworker.SubTaskRunning)
	waitSubTaskSynced(t, st, p)
	checkEqual(t, p.updb, p.downdb, "app.events", "app.events")

	// Stage Stopped stops and keeps the subtask stopped; Running starts it
	// anew from its checkpoint; deleting the config of the running subtask
	// removes it and its status.
	putStage(t, cli, "src", "t2", dmworker.SubTaskStopped)
	waitStage(t, st2, dmworker.SubTaskStopped)
	waitUntil(t, "Stopped in etcd", func() bool {
		return reportOf(t, cli, testKeys.SubTaskStatus("w1", "t2")).Stage == dmworker.SubTaskStopped
	})
	mustExec(t, p.updb, "INSERT INTO app.only2 VALUES (3, 'c')")
	putStage(t, cli, "src", "t2", dmworker.SubTaskRunning)
	waitSubTaskSynced(t, st2, p)
	checkEqual(t, p.updb, p.downdb, "app.only2", "app2.only2")
	if err := testHost(t, cli).DeleteSubTaskConfig(context.Background(), "src", "t2"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "t2 gone", func() bool {
		return st2().Stage == "" && reportOf(t, cli, testKeys.SubTaskStatus("w1", "t2")).Stage == ""
	})

	// Unbinding stops everything.
	if err := testHost(t, cli).UnbindSource(context.Background(), "w1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the worker idle", func() bool {
		s := w.Status(context.Background())
		return s.Source == "" && len(s.SubTasks) == 0 && reportOf(t, cli, statusKey).Stage == ""
	})
}

// TestSourceWorkerFencing: two workers on one source. The binding moves
// from A to B while A still runs (A is never told); B fences A off at its
// start: A's later writes are refused with ErrStaleEpoch (seen in A's
// status and report), the stored checkpoint stays under B's epoch, and the
// downstream ends equal to the upstream.
func TestSourceWorkerFencing(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 408, 409, testserver.MariaDBOptions{})
	e := testserver.StartEtcd(t)
	cli := e.Client
	newWorker := func(name string) *dmworker.SourceWorker {
		w, err := dmworker.NewSourceWorker(name, mysqlSinks(p.downdb), dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix),
			dmworker.WithCredentialKey(testCredentialKey), dmworker.WithStatusInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	putSourceConfig(t, cli, dmworker.SourceConfig{Name: "src", Upstream: upstreamOf(p.up)})
	putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t", SyncerTuning: dmworker.SyncerTuning{BatchSize: 10}})
	bindA := bindSource(t, cli, "A", "src")
	a := newWorker("A")
	runWorker(t, a)
	stA := taskStatus(a, "t")
	waitUntil(t, "A reading", func() bool { return stA().Syncer.Read.Name != "" })
	rnd := rand.New(rand.NewPCG(408, 1))
	syncWorkload(t, p.updb, rnd, 60)
	waitSubTaskSynced(t, stA, p)
	if ep := checkpointEpoch(t, p.downdb, "t", "src"); ep != bindA {
		t.Fatalf("A's checkpoint under epoch %d, want %d", ep, bindA)
	}

	// Rebind to B, leaving A's key alone: A runs on, unaware.
	bindB := bindSource(t, cli, "B", "src")
	b := newWorker("B")
	runWorker(t, b)
	stB := taskStatus(b, "t")
	waitUntil(t, "B took over", func() bool {
		return stB().Syncer.Read.Name != "" && checkpointEpoch(t, p.downdb, "t", "src") == bindB
	})
	if s := stA(); s.Stage != dmworker.SubTaskRunning {
		t.Fatalf("A is not running any more (%s, %v): the test proves nothing", s.Stage, s.LastError)
	}

	// Both read the new writes; only B may apply them.
	syncWorkload(t, p.updb, rnd, 60)
	waitUntil(t, "A refused", func() bool {
		s := stA()
		return s.Stage == dmworker.SubTaskPaused && errors.Is(s.LastError, dmworker.ErrStaleEpoch)
	})
	waitUntil(t, "A's report says stale epoch", func() bool {
		r := reportOf(t, cli, testKeys.SubTaskStatus("A", "t"))
		return r.StaleEpoch && r.Stage == dmworker.SubTaskPaused
	})
	waitSubTaskSynced(t, stB, p)
	checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
	checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
	if ep := checkpointEpoch(t, p.downdb, "t", "src"); ep != bindB {
		t.Fatalf("checkpoint under epoch %d after A's refused writes, want B's %d", ep, bindB)
	}
	// A resumed by hand is refused again, at once: it cannot move the
	// task's progress backwards.
	cpB := checkpointOf(t, p.downdb, "t", "src")
	putStage(t, cli, "src", "t", dmworker.SubTaskPaused)
	putStage(t, cli, "src", "t", dmworker.SubTaskRunning)
	syncWorkload(t, p.updb, rnd, 10)
	waitSubTaskSynced(t, stB, p)
	waitUntil(t, "A refused again", func() bool {
		s := stA()
		return s.Stage == dmworker.SubTaskPaused && errors.Is(s.LastError, dmworker.ErrStaleEpoch)
	})
	if cp := checkpointOf(t, p.downdb, "t", "src"); cp == cpB {
		t.Fatalf("B's checkpoint did not move: %s", cp)
	}
	checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
}

// TestSourceWorkerIgnoresEarlierBinding: a binding put before the worker's
// KeepAlive registered belongs to an earlier life of the worker; the worker
// serves nothing under it, and serves the source once it is bound anew.
func TestSourceWorkerIgnoresEarlierBinding(t *testing.T) {
	noLeaks(t)
	e := testserver.StartEtcd(t)
	cli := e.Client
	up := streamer.UpstreamConfig{Host: "127.0.0.1", Port: 1, User: "u"} // relay off, no subtask: never dialled
	etcdPut(t, cli, testKeys.Source("src"), dmworker.SourceConfig{Name: "src", Upstream: up})
	old := bindSource(t, cli, "w1", "src")
	ka := runKeepAlive(t, cli, "w1", dmworker.WithEtcdPrefix(testPrefix))
	waitUntil(t, "w1 registered", func() bool { return ka.Status().Alive })
	reg := ka.Status().Revision
	if reg <= old {
		t.Fatalf("registration revision %d not after the binding's %d", reg, old)
	}
	var loaded atomic.Int64 // the last revision the worker read its state at
	w, err := dmworker.NewSourceWorker("w1", func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return nil, errors.New("no subtask expected")
	}, dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix), dmworker.WithLiveness(ka))
	if err != nil {
		t.Fatal(err)
	}
	dmworker.SetWatchHook(w, func(rev int64) { loaded.Store(rev) })
	runWorker(t, w)
	waitUntil(t, "w1 read its state", func() bool { return loaded.Load() >= reg })
	if st := w.Status(t.Context()); st.Source != "" || st.Error != nil {
		t.Fatalf("w1 serves %q (epoch %d, error %v) under the binding of revision %d, made before its registration at %d",
			st.Source, st.Epoch, st.Error, old, reg)
	}
	fresh := bindSource(t, cli, "w1", "src")
	waitUntil(t, "w1 serves src under the new binding", func() bool {
		st := w.Status(t.Context())
		return st.Source == "src" && st.Epoch == fresh
	})
}
