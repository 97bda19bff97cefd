package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// Soak tests: what a worker left running for weeks does over and over
// (pause and resume, subtasks started and stopped, the upstream
// connection killed, the lease lost and regained, status served), done
// tens of times in seconds; after each phase the goroutines and open file
// descriptors come back to what they were before it.

// resources are what a leak shows in: goroutines, open fds, and the heap
// after a GC (0: not compared).
type resources struct {
	goroutines, fds int
	heap            uint64
}

func (r resources) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, heap %.1f MiB", r.goroutines, r.fds, float64(r.heap)/(1<<20))
}

func countResources(t testing.TB) resources {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return resources{runtime.NumGoroutine(), len(ents), ms.HeapAlloc}
}

// noHeap is r without its heap, for a baseline taken before a type ran:
// the pools it fills (buffers kept for reuse) stay after it closed.
func noHeap(r resources) resources { r.heap = 0; return r }

// The slack over a baseline: database/sql pools keep up to two idle
// connections each (the test's own, the sinks' and the validator's) and
// the etcd and HTTP clients keep a few goroutines that come and go. A leak
// of one goroutine or fd per cycle over the 30-50 cycles of a phase is
// well past it. The heap's slack covers the streamer's buffer pools,
// whose size follows what is in flight (up to 64 read blocks of 256 KiB
// and 64 row copies of 64 KiB, 20 MiB, freed a few collections after
// their last use), and the collector's noise: a leak of 1 MiB a cycle
// over 30 cycles is past it. Finer growth is looked for by running the
// phases ten times longer by hand (BENCHMARKS.md, Soak).
const goroutineSlack, fdSlack, heapSlack = 8, 8, 24 << 20

// settle waits (with a deadline) until the goroutines and fds are back
// within the slack of base; it fails with every goroutine's stack if they
// are not.
func settle(t *testing.T, phase string, base resources) resources {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur := countResources(t)
		if cur.goroutines <= base.goroutines+goroutineSlack && cur.fds <= base.fds+fdSlack &&
			(base.heap == 0 || cur.heap <= base.heap+heapSlack) {
			t.Logf("%s: %s (baseline %s)", phase, cur, base)
			return cur
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 4<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fds, _ := os.ReadDir("/proc/self/fd")
			var links []string
			for _, e := range fds {
				l, _ := os.Readlink("/proc/self/fd/" + e.Name())
				links = append(links, l)
			}
			t.Fatalf("%s: %s, baseline %s (slack %d, %d, %d MiB)\nfds: %v\ngoroutines:\n%s", phase, cur, base, goroutineSlack, fdSlack, heapSlack>>20, links, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seriesCount is the number of series reg gathers.
func seriesCount(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// gathered is what reg gathers, by family name.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// relayDumpThread returns the id of the upstream's binlog dump connection
// (the relay's; the subtasks read the relay), 0 when none.
func relayDumpThread(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var id int64
	err := db.QueryRow("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%' ORDER BY ID DESC LIMIT 1").Scan(&id)
	if err == sql.ErrNoRows {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSoakSourceWorkerCycles: a worker with a relay (upstream binlog files
// of 4 KB, so the relay rotates all along, purged every 100ms) and metrics;
// phases of 30-50 cycles each of: a subtask paused and resumed; a second
// subtask (with a validator) started and stopped; the relay's upstream
// connection killed (KILL CONNECTION); the worker's liveness lost and
// regained; the status handler served from an HTTP server started and
// closed. Rows flow all along and reach the downstream. After each phase
// the goroutines and fds are back within a small slack of the baseline
// taken after its first cycle, and the metrics' series count is back to
// what it was; once the worker is closed, to what they were before it ran.
func TestSoakSourceWorkerCycles(t *testing.T) {
	p := newPair(t, 470, 471, testserver.MariaDBOptions{MaxBinlogSize: 4096})
	// Subtask b's target, made by hand: b starts where the upstream is.
	mustExec(t, p.downdb, "CREATE DATABASE soak_b")
	mustExec(t, p.downdb, "CREATE TABLE soak_b.t (id INT PRIMARY KEY, v VARCHAR(200))")
	row := 0
	write := func(n int) {
		for range n {
			row++
			mustExec(t, p.updb, "INSERT INTO soak.t VALUES (?, REPEAT('x', 200))", row)
		}
	}
	up := upstreamOf(p.up)
	up.ServerID = 470 + 40
	live := newTestLiveness()
	reg := prometheus.NewRegistry()
	src := dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}
	src.PurgeInterval = dmworker.Duration(100 * time.Millisecond)
	src.PurgeExpires = dmworker.Duration(time.Millisecond)
	src.Reader = dmworker.ReaderConfig{BackoffMin: dmworker.Duration(10 * time.Millisecond), BackoffMax: dmworker.Duration(100 * time.Millisecond)}
	w, err := dmworker.NewSourceWorker("soak", mysqlSinks(p.downdb), dmworker.WithSource(src),
		dmworker.WithRelayDir(t.TempDir()), dmworker.WithLiveness(live), dmworker.WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	before := noHeap(countResources(t))
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background()) }()
	closed := false
	closeWorker := func() {
		if !closed {
			closed = true
			w.Close()
			if err := <-errc; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		}
	}
	t.Cleanup(closeWorker)
	a := taskStatus(w, "a")
	waitStage(t, a, dmworker.SubTaskRunning)
	waitUntil(t, "a reading", func() bool { return a().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE soak")
	mustExec(t, p.updb, "CREATE TABLE soak.t (id INT PRIMARY KEY, v VARCHAR(200))")
	write(20)
	waitSubTaskSynced(t, a, p)
	synced := func() {
		t.Helper()
		waitSubTaskSynced(t, a, p)
		if n := countRows(t, p.downdb, "soak.t"); n != row {
			t.Fatalf("%d rows downstream, want %d", n, row)
		}
	}

	// Pause and resume.
	var base resources
	var series int
	for i := range 50 {
		write(2)
		if err := w.PauseSubTask("a"); err != nil {
			t.Fatal(err)
		}
		write(2)
		if err := w.ResumeSubTask("a"); err != nil {
			t.Fatal(err)
		}
		waitStage(t, a, dmworker.SubTaskRunning)
		if i == 0 {
			synced()
			base, series = settle(t, "pause/resume, first cycle", countResources(t)), seriesCount(t, reg)
		}
	}
	synced()
	settle(t, "pause/resume, 50 cycles", base)

	// A second subtask, with a validator, started and stopped.
	b := taskStatus(w, "b")
	bcfg := dmworker.SubTaskConfig{Name: "b", Routes: []dmworker.RouteRule{{SchemaPattern: "soak", TargetSchema: "soak_b"}},
		Validation: dmworker.ValidationConfig{Mode: dmworker.ValidationFast, CheckInterval: dmworker.Duration(50 * time.Millisecond)}}
	for i := range 30 {
		write(2)
		if err := w.StartSubTask(bcfg); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "b reading", func() bool {
			st := b()
			if st.Stage == dmworker.SubTaskPaused && st.LastError != nil {
				t.Fatalf("b paused: %v", st.LastError)
			}
			return st.Stage == dmworker.SubTaskRunning && st.Syncer.Read.Name != ""
		})
		if err := w.StopSubTask("b"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "b gone", func() bool { return b().Stage == "" })
		if i == 0 {
			synced()
			base = settle(t, "subtask start/stop, first cycle", countResources(t))
		}
	}
	synced()
	settle(t, "subtask start/stop, 30 cycles", base)
	if n := seriesCount(t, reg); n != series {
		t.Fatalf("%d metric series after subtask b came and went 30 times, %d before", n, series)
	}

	// The relay's upstream connection killed.
	for i := range 30 {
		var id int64
		waitUntil(t, "the relay's dump connection", func() bool { id = relayDumpThread(t, p.updb); return id != 0 })
		mustExec(t, p.updb, fmt.Sprintf("KILL CONNECTION %d", id))
		write(2)
		waitUntil(t, "the relay back", func() bool { n := relayDumpThread(t, p.updb); return n != 0 && n != id })
		if i == 0 {
			synced()
			base = settle(t, "relay reconnect, first cycle", countResources(t))
		}
	}
	synced()
	settle(t, "relay reconnect, 30 cycles", base)
	if n, _ := metricSum(gathered(t, reg), "dmworker_relay_purged_files_total", nil); n == 0 {
		t.Fatal("the relay purged no file: the phases did not rotate through purged files")
	} else {
		t.Logf("relay files purged so far: %v", n)
	}

	// The lease lost and regained.
	for i := range 30 {
		live.set(false)
		waitUntil(t, "everything stopped", func() bool {
			st := w.Status(context.Background())
			return !st.Alive && st.Relay == nil && len(st.SubTasks) == 0
		})
		write(2)
		live.set(true)
		waitStage(t, a, dmworker.SubTaskRunning)
		if i == 0 {
			synced()
			base = settle(t, "liveness lost/regained, first cycle", countResources(t))
		}
	}
	synced()
	settle(t, "liveness lost/regained, 30 cycles", base)
	if n := seriesCount(t, reg); n != series {
		t.Fatalf("%d metric series after 30 lease losses, %d before", n, series)
	}

	// The status handler, served and closed.
	h := dmworker.StatusHandler(w, dmworker.StatusHandlerConfig{Gatherer: reg})
	for i := range 30 {
		srv := httptest.NewServer(h)
		for _, path := range []string{"/status", "/healthz", "/metrics"} {
			resp, err := srv.Client().Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("GET %s: %s", path, resp.Status)
			}
		}
		srv.Client().CloseIdleConnections()
		srv.Close()
		if i == 0 {
			base = settle(t, "status server, first cycle", countResources(t))
		}
	}
	settle(t, "status server, 30 cycles", base)

	closeWorker()
	settle(t, "worker closed", before)
	if n := seriesCount(t, reg); n != 0 {
		t.Fatalf("%d metric series left registered after the worker closed", n)
	}
}

// refusingSink refuses every batch with a retryable error; DDL and
// checkpoints go through.
type refusingSink struct {
	dmworker.Sink
	refused atomic.Int64
}

func (s *refusingSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	s.refused.Add(1)
	return dmworker.Retryable(errors.New("downstream refuses"))
}

// TestSoakSubTaskErrorLoop: a subtask whose downstream refuses every
// batch, resumed automatically without limit, goes round its error loop
// 40 times: its goroutines, fds, heap (after GC), metric series and the
// size of its status' error stay what they were after the 5th time.
func TestSoakSubTaskErrorLoop(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 480})
	db := m.DB(t)
	sink := &refusingSink{Sink: noCheckpoints{sinktest.NewMemSink()}}
	reg := prometheus.NewRegistry()
	var logged countingWriter
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "loop"}, upstreamOf(m), sink,
		dmworker.WithCheckpointStore(&dmworker.MemoryCheckpointStore{}), dmworker.WithSinkRetry(time.Millisecond),
		dmworker.WithAutoResume(time.Millisecond, 5*time.Millisecond, 1<<30), dmworker.WithMetrics(reg),
		dmworker.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	if err != nil {
		t.Fatal(err)
	}
	before := noHeap(countResources(t))
	errc := make(chan error, 1)
	go func() { errc <- st.Run(context.Background()) }()
	waitUntil(t, "the syncer reading", func() bool { return st.Status().Syncer.Read.Name != "" })
	mustExec(t, db, "CREATE DATABASE errloop")
	mustExec(t, db, "CREATE TABLE errloop.t (id INT PRIMARY KEY)")
	mustExec(t, db, "INSERT INTO errloop.t VALUES (1)")
	retries := func(n int) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("%d resumes", n), func() bool {
			s := st.Status()
			if s.Stage == dmworker.SubTaskPaused {
				t.Fatalf("paused: %v", s.LastError)
			}
			return s.Retries >= n
		})
	}
	var ms runtime.MemStats
	heap := func() uint64 { runtime.GC(); runtime.ReadMemStats(&ms); return ms.HeapAlloc }
	retries(5)
	base := settle(t, "5 resumes", countResources(t))
	series, heap5, log5 := seriesCount(t, reg), heap(), logged.n.Load()
	errLen := len(st.Status().LastError.Error())
	retries(45)
	settle(t, "45 resumes", base)
	heap45, log45 := heap(), logged.n.Load()
	t.Logf("heap after GC: %d bytes after 5 resumes, %d after 45; log: %d bytes, %d; batches refused %d", heap5, heap45, log5, log45, sink.refused.Load())
	if n := seriesCount(t, reg); n != series {
		t.Fatalf("%d metric series after 45 resumes, %d after 5", n, series)
	}
	if n := len(st.Status().LastError.Error()); n > errLen+64 {
		t.Fatalf("the status' error grew from %d to %d bytes", errLen, n)
	}
	// A leak of a few hundred KB a resume shows here; the pools and the
	// GC's noise do not.
	if heap45 > heap5+heapSlack {
		t.Fatalf("heap grew from %d to %d bytes over 40 resumes", heap5, heap45)
	}
	st.Stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	settle(t, "stopped", before)
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n.Add(int64(len(p))); return len(p), nil }

// TestSoakDDLChurn: tables made, renamed, altered and dropped by the
// hundred (and schemas now and then) while a subtask replicates them:
// what the subtask keeps per table (the tracked schema it checkpoints, its
// metric series, its heap) goes when the tables go. Measured after 40
// cycles and again after 240: the checkpoint's schema is the same size,
// the heap after GC within the slack, the series count the same.
func TestSoakDDLChurn(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 482})
	db := m.DB(t)
	// A sink that keeps nothing, so that what grows is the subtask's.
	store := &dmworker.MemoryCheckpointStore{}
	reg := prometheus.NewRegistry()
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "churn"}, upstreamOf(m), discardSink{},
		dmworker.WithCheckpointStore(store), dmworker.WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	before := noHeap(countResources(t))
	errc := make(chan error, 1)
	go func() { errc <- st.Run(context.Background()) }()
	waitUntil(t, "the syncer reading", func() bool { return st.Status().Syncer.Read.Name != "" })
	mustExec(t, db, "CREATE DATABASE churn")
	mustExec(t, db, "CREATE TABLE churn.keep (id INT PRIMARY KEY, n INT)")
	mustExec(t, db, "INSERT INTO churn.keep VALUES (1, 0)")
	cycle := func(i int) {
		mustExec(t, db, fmt.Sprintf("CREATE TABLE churn.t%d (id INT PRIMARY KEY, v VARCHAR(20), KEY (v))", i))
		mustExec(t, db, fmt.Sprintf("INSERT INTO churn.t%d VALUES (1, 'a'), (2, 'b')", i))
		mustExec(t, db, fmt.Sprintf("RENAME TABLE churn.t%d TO churn.r%d", i, i))
		mustExec(t, db, fmt.Sprintf("ALTER TABLE churn.r%d ADD COLUMN w INT", i))
		mustExec(t, db, fmt.Sprintf("DROP TABLE churn.r%d", i))
		if i%10 == 0 {
			mustExec(t, db, fmt.Sprintf("CREATE DATABASE churn%d", i))
			mustExec(t, db, fmt.Sprintf("CREATE TABLE churn%d.x (id INT PRIMARY KEY)", i))
			mustExec(t, db, fmt.Sprintf("DROP DATABASE churn%d", i))
		}
		mustExec(t, db, "UPDATE churn.keep SET n = ? WHERE id = 1", i)
	}
	synced := func() {
		t.Helper()
		ust, err := streamer.QueryUpstream(context.Background(), upstreamOf(m))
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the subtask synced", func() bool {
			s := st.Status()
			if s.Stage == dmworker.SubTaskPaused {
				t.Fatalf("paused: %v", s.LastError)
			}
			c, ok := s.Syncer.Checkpoint.CompareGTID(ust.Master)
			return ok && c >= 0
		})
	}
	var ms runtime.MemStats
	measure := func() (schema int, heap uint64, series int) {
		cp, ok, err := store.Load(context.Background(), "churn", st.Status().Source)
		if err != nil || !ok {
			t.Fatalf("checkpoint: %v %v", ok, err)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return len(cp.Schema), ms.HeapAlloc, seriesCount(t, reg)
	}
	for i := range 40 {
		cycle(i)
	}
	synced()
	base := settle(t, "40 cycles", countResources(t))
	schema40, heap40, series40 := measure()
	for i := 40; i < 240+soakExtra(); i++ {
		cycle(i)
	}
	synced()
	settle(t, "240 cycles", base)
	schema240, heap240, series240 := measure()
	t.Logf("checkpoint schema: %d bytes after 40 cycles, %d after 240; heap after GC %d, %d; series %d, %d; DDLs %d",
		schema40, schema240, heap40, heap240, series40, series240, st.Status().Syncer.DDLs)
	if schema240 > schema40+64 || series240 != series40 || heap240 > heap40+heapSlack {
		t.Fatalf("grew with the tables dropped: checkpoint schema %d -> %d bytes, series %d -> %d, heap %d -> %d",
			schema40, schema240, series40, series240, heap40, heap240)
	}
	st.Stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	settle(t, "stopped", before)
}

// discardSink applies everything by forgetting it.
type discardSink struct{}

func (discardSink) Apply(context.Context, *dmworker.Batch) error { return nil }
func (discardSink) ExecDDL(context.Context, *dmworker.DDL) error { return nil }

// soakExtra is the cycles SOAK_EXTRA asks TestSoakDDLChurn to add, for a
// longer run by hand (0 unless set).
func soakExtra() int { n, _ := strconv.Atoi(os.Getenv("SOAK_EXTRA")); return n }

// etcdKeys counts the keys under prefix.
func etcdKeys(t *testing.T, cli *clientv3.Client, prefix string) int {
	t.Helper()
	resp, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// TestSoakEtcdWorkerLeaseCycles: a worker driven through etcd, its
// liveness a KeepAlive whose lease is revoked from outside 30 times (it
// loses it, everything stops, it registers again, the source is bound to
// it again, the subtasks start again), then a second subtask's config written and deleted 30 times.
// After each phase the goroutines and fds are back within the slack of
// the baseline, etcd holds as many keys and leases as before, and the
// rows reach the downstream.
func TestSoakEtcdWorkerLeaseCycles(t *testing.T) {
	p := newPair(t, 484, 485, testserver.MariaDBOptions{})
	mustExec(t, p.downdb, "CREATE DATABASE soak_b")
	mustExec(t, p.downdb, "CREATE TABLE soak_b.t (id INT PRIMARY KEY)")
	e := testserver.StartEtcd(t)
	cli := e.Client
	row := 0
	write := func(n int) {
		for range n {
			row++
			mustExec(t, p.updb, "INSERT INTO soak.t VALUES (?)", row)
		}
	}
	ka, err := dmworker.NewKeepAlive(cli, "w1", dmworker.WithKeepAliveTTL(testTTL), fastBackoff, dmworker.WithEtcdPrefix(testPrefix))
	if err != nil {
		t.Fatal(err)
	}
	kaErr := make(chan error, 1)
	go func() { kaErr <- ka.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := ka.Close(); err != nil {
			t.Errorf("keepalive close: %v", err)
		}
		if err := <-kaErr; err != nil {
			t.Errorf("keepalive run: %v", err)
		}
	})
	waitAlive(t, ka, true, etcdWait)
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb), dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix),
		dmworker.WithCredentialKey(testCredentialKey), dmworker.WithLiveness(ka), dmworker.WithStatusInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	putSourceConfig(t, cli, dmworker.SourceConfig{Name: "src", Upstream: upstreamOf(p.up)})
	bindSource(t, cli, "w1", "src")
	runWorker(t, w)
	putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t1"})
	st := taskStatus(w, "t1")
	waitUntil(t, "t1 reading", func() bool { return st().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE soak")
	mustExec(t, p.updb, "CREATE TABLE soak.t (id INT PRIMARY KEY)")
	write(5)
	synced := func() {
		t.Helper()
		waitSubTaskSynced(t, st, p)
		if n := countRows(t, p.downdb, "soak.t"); n != row {
			t.Fatalf("%d rows downstream, want %d", n, row)
		}
	}
	statusKey := testKeys.SubTaskStatus("w1", "t1")
	leases := func() int {
		resp, err := cli.Leases(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Leases)
	}

	var base resources
	var keys, nleases int
	for i := range 30 {
		old := ka.Status().Lease
		if _, err := cli.Revoke(t.Context(), old); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "a new lease", func() bool { s := ka.Status(); return s.Alive && s.Lease != old })
		// A binding older than the registration is stale: bound again,
		// as a coordinator does.
		bindSource(t, cli, "w1", "src")
		write(2)
		waitStage(t, st, dmworker.SubTaskRunning)
		if i == 0 {
			synced()
			waitUntil(t, "t1's status in etcd", func() bool { return reportOf(t, cli, statusKey).Stage == dmworker.SubTaskRunning })
			base = settle(t, "lease lost/regained, first cycle", countResources(t))
			keys, nleases = etcdKeys(t, cli, testPrefix), leases()
		}
	}
	synced()
	waitUntil(t, "t1's status in etcd", func() bool { return reportOf(t, cli, statusKey).Stage == dmworker.SubTaskRunning })
	settle(t, "lease lost/regained, 30 cycles", base)
	if k, l := etcdKeys(t, cli, testPrefix), leases(); k != keys || l != nleases {
		t.Fatalf("etcd holds %d keys and %d leases after 30 lease losses, %d and %d after the first", k, l, keys, nleases)
	}

	// A second subtask's config written and deleted.
	st2 := taskStatus(w, "t2")
	for i := range 30 {
		putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t2", Routes: []dmworker.RouteRule{{SchemaPattern: "soak", TargetSchema: "soak_b"}}})
		waitUntil(t, "t2 reading", func() bool { return st2().Syncer.Read.Name != "" })
		write(1)
		if err := testHost(t, cli).DeleteSubTaskConfig(context.Background(), "src", "t2"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "t2 gone", func() bool {
			return st2().Stage == "" && reportOf(t, cli, testKeys.SubTaskStatus("w1", "t2")).Stage == ""
		})
		if i == 0 {
			synced()
			compactEtcd(t, cli)
			base = settle(t, "subtask config put/deleted, first cycle", countResources(t))
			keys = etcdKeys(t, cli, testPrefix)
		}
	}
	synced()
	compactEtcd(t, cli)
	settle(t, "subtask config put/deleted, 30 cycles", base)
	if k := etcdKeys(t, cli, testPrefix); k != keys {
		t.Fatalf("etcd holds %d keys after 30 subtasks came and went, %d after the first", k, keys)
	}
}

// TestSoakCloseCycles: "no goroutine outlives Close", for each public type
// that has one, 30 times over: a KeepAlive, a Coordinator (leading), an
// etcd ShardGroup, a Relay (relaying), a RemoteReader, a RawReader and a
// LocalReader (each having read), each closed; and the same types closed
// before they ran or read. The goroutines and fds come back to the
// baseline taken after the first cycle, and etcd holds no more keys or
// leases than then.
func TestSoakCloseCycles(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 486, MaxBinlogSize: 4096})
	db := m.DB(t)
	mustExec(t, db, "CREATE DATABASE soak")
	mustExec(t, db, "CREATE TABLE soak.t (id INT PRIMARY KEY)")
	for i := range 20 {
		mustExec(t, db, "INSERT INTO soak.t VALUES (?)", i)
	}
	e := testserver.StartEtcd(t)
	cli := e.Client
	up := upstreamOf(m)
	ctx := context.Background()
	relayDir := t.TempDir()
	leases := func() int {
		resp, err := cli.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Leases)
	}
	cycle := func(i int) {
		// KeepAlive.
		ka, err := dmworker.NewKeepAlive(cli, "w1", dmworker.WithKeepAliveTTL(testTTL), fastBackoff)
		if err != nil {
			t.Fatal(err)
		}
		kaErr := make(chan error, 1)
		go func() { kaErr <- ka.Run(ctx) }()
		waitAlive(t, ka, true, etcdWait)
		if err := ka.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-kaErr; err != nil {
			t.Fatal(err)
		}
		if ka, err = dmworker.NewKeepAlive(cli, "w2"); err != nil {
			t.Fatal(err)
		} else if err := ka.Close(); err != nil {
			t.Fatal(err)
		}
		// Coordinator.
		c, err := dmworker.NewCoordinator(cli, dmworker.WithKeepAliveTTL(testTTL), fastBackoff)
		if err != nil {
			t.Fatal(err)
		}
		cErr := make(chan error, 1)
		go func() { cErr <- c.Run(ctx) }()
		waitUntil(t, "the coordinator leading", func() bool { l, _ := c.Leading(); return l })
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-cErr; err != nil {
			t.Fatal(err)
		}
		// ShardGroup through etcd.
		g, err := dmworker.NewEtcdShardGroup(ctx, cli, testPrefix, "task", "s1", "s2")
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		// Relay.
		r, err := dmworker.NewRelay(up, relayDir, dmworker.RelayConfig{})
		if err != nil {
			t.Fatal(err)
		}
		rErr := make(chan error, 1)
		go func() { rErr <- r.Run(ctx) }()
		var relayed streamer.RelayPos
		waitUntil(t, "the relay relaying", func() bool { relayed, _ = r.Relayed(); return relayed.Name != "" })
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-rErr; err != nil {
			t.Fatal(err)
		}
		if r, err = dmworker.NewRelay(up, relayDir, dmworker.RelayConfig{}); err != nil {
			t.Fatal(err)
		} else if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		// Readers.
		start := streamer.Position{Name: "mysql-bin.000001", Offset: 4}
		rr, err := streamer.NewRemoteReader(up, start)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rr.GetEvent(ctx); err != nil {
			t.Fatal(err)
		}
		if err := rr.Close(); err != nil {
			t.Fatal(err)
		}
		raw, err := streamer.NewRawReader(up, start)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Next(ctx); err != nil {
			t.Fatal(err)
		}
		if err := raw.Close(); err != nil {
			t.Fatal(err)
		}
		lr, err := streamer.NewLocalReader(relayDir, streamer.StartAtPosition(streamer.Position{Name: relayed.Name, Offset: 4}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lr.GetEvent(ctx); err != nil {
			t.Fatal(err)
		}
		if err := lr.Close(); err != nil {
			t.Fatal(err)
		}
		mustExec(t, db, "INSERT INTO soak.t VALUES (?)", 100+i)
	}
	cycle(0)
	base := settle(t, "close cycles, first", countResources(t))
	keys, nleases := etcdKeys(t, cli, ""), leases()
	for i := 1; i < 30; i++ {
		cycle(i)
	}
	settle(t, "close cycles, 30", base)
	waitUntil(t, "etcd's keys and leases back", func() bool { return etcdKeys(t, cli, "") <= keys && leases() <= nleases })
}

// TestSoakShardDDLSteps: two sources merge their shard tables in
// pessimistic shard mode (the mysqlsink keeping the group's state in
// dmworker_meta.shard_lock) through 40 DDLs: the stored state of the
// merged table stays the size it had after 8 (before, it kept every step,
// and grew by each one), the group holds no lock, and the downstream
// table has the last DDL's shape; then a shard table made and dropped on
// both sources under a second merged table leaves no state of it.
func TestSoakShardDDLSteps(t *testing.T) {
	f := newShardFleet(t, 2, 487)
	names := []string{sourceName(0), sourceName(1)}
	g, err := dmworker.NewShardGroup("merge", names...)
	if err != nil {
		t.Fatal(err)
	}
	routes := []dmworker.RouteRule{
		{SchemaPattern: "shop", TablePattern: "orders_*", TargetSchema: "merged", TargetTable: "orders"},
		{SchemaPattern: "shop", TablePattern: "tmp_*", TargetSchema: "merged", TargetTable: "tmp"},
		{SchemaPattern: "shop", TargetSchema: "merged"},
	}
	workers := make([]*dmworker.SourceWorker, 2)
	for i := range workers {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(f.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(g))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: routes, ShardMode: dmworker.ShardPessimistic}); err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		workers[i] = w
	}
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for i, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		mustExec(t, db, fmt.Sprintf("CREATE TABLE shop.orders_0%d (id BIGINT PRIMARY KEY, v INT)", i+1))
	}
	stored := func(target string) int {
		var n sql.NullInt64
		if err := f.downdb.QueryRow("SELECT MAX(LENGTH(state)) FROM dmworker_meta.shard_lock WHERE task = 'merge' AND target = ?", target).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return int(n.Int64)
	}
	synced := func() {
		t.Helper()
		for i, w := range workers {
			waitWorkerSynced(t, w, "merge", f.ups[i])
		}
	}
	var small int
	for k := range 40 {
		ddl := "ALTER TABLE shop.orders_0%d ADD INDEX iv (v)"
		if k%2 == 1 {
			ddl = "ALTER TABLE shop.orders_0%d DROP INDEX iv"
		}
		for i, db := range f.updbs {
			mustExec(t, db, fmt.Sprintf(ddl, i+1))
			mustExec(t, db, fmt.Sprintf("INSERT INTO shop.orders_0%d VALUES (?, ?)", i+1), int64(k)*10+int64(i), k)
		}
		if k == 7 {
			synced()
			small = stored("merged.orders")
		}
	}
	synced()
	size := stored("merged.orders")
	t.Logf("stored state of merged.orders: %d bytes after 8 DDLs, %d after 40", small, size)
	if small == 0 || size > small+small/2 {
		t.Fatalf("stored state of merged.orders: %d bytes after 8 DDLs, %d after 40", small, size)
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks held: %+v", st)
	}
	if n := countRows(t, f.downdb, "merged.orders"); n != 80 {
		t.Fatalf("%d rows merged, want 80", n)
	}
	// A second merged table whose shard tables come and go.
	for i, db := range f.updbs {
		mustExec(t, db, fmt.Sprintf("CREATE TABLE shop.tmp_0%d (id INT PRIMARY KEY)", i+1))
	}
	synced() // both made before the DDL: a shard table made after a step is applied waits for none before it
	for i, db := range f.updbs {
		mustExec(t, db, fmt.Sprintf("ALTER TABLE shop.tmp_0%d ADD COLUMN w INT", i+1))
	}
	for i, db := range f.updbs {
		mustExec(t, db, fmt.Sprintf("DROP TABLE shop.tmp_0%d", i+1))
	}
	synced()
	if n := stored("merged.tmp"); n != 0 {
		t.Fatalf("the state of merged.tmp, whose shard tables are all dropped, is still stored (%d bytes)", n)
	}
}

// TestSoakValidatorDDLChurn: a subtask with a validator (mode full, a
// check every 50ms) while tables are made, written, renamed and dropped
// 60 times, beside a table that stays: once caught up, the validator holds no row (none pending,
// none spilled, none differing or in error) after 20 cycles and after 60,
// and the heap after GC has not grown with the cycles.
func TestSoakValidatorDDLChurn(t *testing.T) {
	p := newPair(t, 488, 489, testserver.MariaDBOptions{})
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "vchurn",
		Validation: dmworker.ValidationConfig{Mode: dmworker.ValidationFull, CheckInterval: dmworker.Duration(50 * time.Millisecond)}},
		upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the syncer reading", func() bool { return st.Status().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE vchurn")
	mustExec(t, p.updb, "CREATE TABLE vchurn.keep (id INT PRIMARY KEY)")
	cycle := func(i int) {
		mustExec(t, p.updb, "INSERT INTO vchurn.keep VALUES (?)", i)
		mustExec(t, p.updb, fmt.Sprintf("CREATE TABLE vchurn.t%d (id INT PRIMARY KEY, v VARCHAR(20))", i))
		mustExec(t, p.updb, fmt.Sprintf("INSERT INTO vchurn.t%d VALUES (1, 'a'), (2, 'b'), (3, 'c')", i))
		mustExec(t, p.updb, fmt.Sprintf("UPDATE vchurn.t%d SET v = 'x' WHERE id = 2", i))
		mustExec(t, p.updb, fmt.Sprintf("RENAME TABLE vchurn.t%d TO vchurn.r%d", i, i))
		mustExec(t, p.updb, fmt.Sprintf("INSERT INTO vchurn.r%d VALUES (4, 'd')", i))
		mustExec(t, p.updb, fmt.Sprintf("DROP TABLE vchurn.r%d", i))
	}
	var ms runtime.MemStats
	caughtUp := func(what string) (dmworker.ValidatorStatus, uint64) {
		t.Helper()
		waitSubTaskSynced(t, st.Status, p)
		var v dmworker.ValidatorStatus
		waitUntil(t, "the validator caught up and empty", func() bool {
			v = st.Status().Validator
			if v.LastError != nil {
				t.Fatalf("validator: %v", v.LastError)
			}
			return v.Running && v.Pending == 0 && v.Spilled == 0
		})
		if v.Differing != 0 || v.ErrorRows != 0 || v.Checked == 0 {
			t.Fatalf("%s: validator status %+v", what, v)
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return v, ms.HeapAlloc
	}
	for i := range 20 {
		cycle(i)
	}
	v20, heap20 := caughtUp("20 cycles")
	for i := 20; i < 60; i++ {
		cycle(i)
	}
	v60, heap60 := caughtUp("60 cycles")
	t.Logf("after 20 cycles: checked %d, peak %d bytes, heap %d; after 60: checked %d, peak %d bytes, heap %d",
		v20.Checked, v20.PeakBytes, heap20, v60.Checked, v60.PeakBytes, heap60)
	if heap60 > heap20+heapSlack {
		t.Fatalf("heap grew from %d to %d bytes over 40 cycles", heap20, heap60)
	}
}

// compactEtcd compacts the test's etcd (which runs in the test process)
// to its current revision, so that the history of the keys the test
// changed does not count in the heap.
func compactEtcd(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	resp, err := cli.Get(t.Context(), "compact")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}
