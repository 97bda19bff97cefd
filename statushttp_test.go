package dmworker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// httpClient keeps no connection open after a request (no goroutine left).
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// scrape reads url/metrics and returns its families by name.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := httpClient.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return fams
}

// metricSum sums the values of family name whose labels include want.
func metricSum(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

// get returns the status code and body of url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestStatusHandler runs a worker (relay on, a subtask in mode incremental
// and one in mode all) under a write load and reads it over HTTP: every
// metric family moves, /status has its keys, /healthz turns 503 with the
// reason when a syncer lags past the threshold and when a subtask pauses on
// an unsupported DDL. The worker's metrics go when it stops; two workers
// share a registry, a third with a name taken cannot run.
func TestStatusHandler(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 470, 471, testserver.MariaDBOptions{MaxBinlogSize: 16 << 10})
	up := upstreamOf(p.up)
	up.ServerID = 470 + 40
	reg := prometheus.NewRegistry()
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb),
		dmworker.WithSource(dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}),
		dmworker.WithRelayDir(t.TempDir()), dmworker.WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background()) }()
	closed := false
	closeWorker := func() {
		if closed {
			return
		}
		closed = true
		w.Close()
		if err := <-errc; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	}
	t.Cleanup(closeWorker)
	const maxLag = 2 * time.Second
	srv := httptest.NewServer(dmworker.StatusHandler(w, dmworker.StatusHandlerConfig{Gatherer: reg, MaxLag: maxLag}))
	defer srv.Close()

	waitUntil(t, "subtask a reading", func() bool { return taskStatus(w, "a")().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE app")
	mustExec(t, p.updb, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(100))")
	for i := range 20 {
		var vals []string
		for j := range 50 {
			vals = append(vals, fmt.Sprintf("(%d, 'row %d')", i*50+j, i*50+j))
		}
		mustExec(t, p.updb, "INSERT INTO app.t VALUES "+strings.Join(vals, ","))
	}
	mustExec(t, p.updb, "CREATE TABLE app.load (id INT PRIMARY KEY, v INT)")
	waitSubTaskSynced(t, taskStatus(w, "a"), p)
	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz of a healthy worker: %d %q", code, body)
	}
	before := scrape(t, srv.URL)
	if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "s", Mode: dmworker.ModeAll,
		Routes: []dmworker.RouteRule{{SchemaPattern: "app", TargetSchema: "app_s"}}}); err != nil {
		t.Fatal(err)
	}

	// The load: transactions of inserts, updates and deletes on random
	// keys, some changing a row's key (so that parallel workers conflict), and a DDL now and then.
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		loadErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tx, err := p.updb.Begin()
			if err != nil {
				loadErr = err
				return
			}
			for range 5 {
				id := r.IntN(200)
				if _, err = tx.Exec("INSERT INTO app.load VALUES (?, 0) ON DUPLICATE KEY UPDATE v = v + 1", id); err != nil {
					break
				}
				if _, err = tx.Exec("DELETE FROM app.load WHERE id = ?", r.IntN(200)); err != nil {
					break
				}
				// A new key for a row: its change holds two keys, which
				// two workers may hold.
				if _, err = tx.Exec("UPDATE IGNORE app.load SET id = ? WHERE id = ?", r.IntN(200), r.IntN(200)); err != nil {
					break
				}
			}
			if err != nil {
				_ = tx.Rollback()
				loadErr = err
				return
			}
			if err := tx.Commit(); err != nil {
				loadErr = err
				return
			}
			if i%100 == 99 {
				if _, err := p.updb.Exec(fmt.Sprintf("CREATE TABLE app.ddl%d (id INT PRIMARY KEY)", i)); err != nil {
					loadErr = err
					return
				}
			}
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
		if loadErr != nil {
			t.Fatalf("load: %v", loadErr)
		}
	}
	defer stopLoad()
	time.Sleep(3 * time.Second)

	// A lag past the threshold: hold a row of subtask a's table downstream
	// and change it upstream.
	mustExec(t, p.updb, "INSERT INTO app.load VALUES (1000, 0) ON DUPLICATE KEY UPDATE v = 0")
	waitSubTaskSynced(t, taskStatus(w, "a"), p)
	ctx := context.Background()
	conn, err := p.downdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("SELECT v FROM app.load WHERE id = 1000 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p.updb, "UPDATE app.load SET v = v + 1 WHERE id = 1000")
	var lagBody string
	sawLag, sawQueue := false, false
	waitUntil(t, "/healthz to report the lag", func() bool {
		if fams := scrape(t, srv.URL); !sawLag || !sawQueue {
			if v, _ := metricSum(fams, "dmworker_syncer_lag_seconds", map[string]string{"task": "a", "worker": "w1"}); v > 0 {
				sawLag = true
			}
			if v, _ := metricSum(fams, "dmworker_syncer_queue_bytes", map[string]string{"task": "a"}); v > 0 {
				sawQueue = true
			}
		}
		code, body := get(t, srv.URL+"/healthz")
		lagBody = body
		return code == http.StatusServiceUnavailable && strings.Contains(body, "subtask a lags")
	})
	if strings.Contains(lagBody, "paused") {
		t.Fatalf("/healthz during a lag: %q", lagBody)
	}
	if !sawLag || !sawQueue {
		t.Fatalf("during the stall: lag seen %v, queue bytes seen %v", sawLag, sawQueue)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stopLoad()
	waitSubTaskSynced(t, taskStatus(w, "a"), p)
	waitSubTaskSynced(t, taskStatus(w, "s"), p)
	waitUntil(t, "/healthz ok again", func() bool {
		code, _ := get(t, srv.URL+"/healthz")
		return code == http.StatusOK
	})
	if _, err := w.PurgeRelay(dmworker.RelayPurge{Before: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// Every family moved (histograms by their count, the rest by value);
	// lag and queue bytes were seen above zero during the stall.
	after := scrape(t, srv.URL)
	checkpointAge, _ := metricSum(after, "dmworker_syncer_checkpoint_age_seconds", map[string]string{"task": "a"})
	if checkpointAge < 0 || checkpointAge > 60 {
		t.Errorf("checkpoint age %v", checkpointAge)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"dmworker_relay_binlog_file", nil},
		{"dmworker_relay_binlog_pos", nil},
		{"dmworker_relay_write_bytes_total", nil},
		{"dmworker_relay_events_written_total", nil},
		{"dmworker_relay_fsyncs_total", nil},
		{"dmworker_relay_fsync_duration_seconds", nil},
		{"dmworker_relay_purged_files_total", nil},
		{"dmworker_syncer_transactions_total", map[string]string{"task": "a"}},
		{"dmworker_syncer_row_changes_total", map[string]string{"task": "a", "kind": "insert"}},
		{"dmworker_syncer_row_changes_total", map[string]string{"task": "a", "kind": "update"}},
		{"dmworker_syncer_row_changes_total", map[string]string{"task": "a", "kind": "delete"}},
		{"dmworker_syncer_ddls_total", map[string]string{"task": "a"}},
		{"dmworker_syncer_events_read_total", map[string]string{"task": "a"}},
		{"dmworker_syncer_batches_total", map[string]string{"task": "a"}},
		{"dmworker_syncer_batch_apply_duration_seconds", map[string]string{"task": "a"}},
		{"dmworker_syncer_conflict_waits_total", map[string]string{"task": "a"}},
		{"dmworker_syncer_checkpoint_binlog_file", map[string]string{"task": "a"}},
		{"dmworker_syncer_checkpoint_binlog_pos", map[string]string{"task": "a"}},
		{"dmworker_syncer_transactions_total", map[string]string{"task": "s"}},
		{"dmworker_snapshot_rows", map[string]string{"task": "s"}},
		{"dmworker_snapshot_estimated_rows", map[string]string{"task": "s"}},
		{"dmworker_snapshot_bytes", map[string]string{"task": "s"}},
		{"dmworker_snapshot_estimated_bytes", map[string]string{"task": "s"}},
		{"dmworker_snapshot_chunks", map[string]string{"task": "s"}},
		{"dmworker_snapshot_chunks_done", map[string]string{"task": "s"}},
	} {
		want := map[string]string{"worker": "w1", "source": "src"}
		for k, v := range c.labels {
			want[k] = v
		}
		a, ok := metricSum(after, c.name, want)
		if !ok {
			t.Errorf("%s%v: not scraped", c.name, c.labels)
			continue
		}
		if b, _ := metricSum(before, c.name, want); a == b {
			t.Errorf("%s%v: did not move (%v)", c.name, c.labels, a)
		}
	}
	for _, name := range []string{"dmworker_relay_read_errors_total", "dmworker_relay_running", "dmworker_subtask_state",
		"dmworker_worker_alive", "dmworker_worker_binding_epoch"} {
		if _, ok := metricSum(after, name, map[string]string{"worker": "w1"}); !ok {
			t.Errorf("%s: not scraped", name)
		}
	}
	if v, _ := metricSum(after, "dmworker_subtask_state", map[string]string{"task": "a"}); v != 2 {
		t.Errorf("subtask a state %v, want 2 (Running)", v)
	}

	// /status: snake_case keys, stages as words, errors as strings.
	code, body := get(t, srv.URL+"/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	for _, k := range []string{"worker", "source", "epoch", "alive", "error", "relay", "subtasks"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/status has no %q: %s", k, body)
		}
	}
	relay, _ := st["relay"].(map[string]any)
	if relay["stage"] != "Running" || relay["relayed_name"] == "" {
		t.Errorf("/status relay: %v", relay)
	}
	subtasks, _ := st["subtasks"].([]any)
	if len(subtasks) != 2 {
		t.Fatalf("/status subtasks: %v", st["subtasks"])
	}
	a := subtasks[0].(map[string]any)
	syncer, _ := a["syncer"].(map[string]any)
	if a["name"] != "a" || a["stage"] != "Running" || a["error"] != "" || syncer["stage"] != "Running" {
		t.Errorf("/status subtask a: %v", a)
	}
	for _, k := range []string{"checkpoint", "read", "rows", "lag_seconds", "queue_bytes", "conflicts", "last_progress", "error"} {
		if _, ok := syncer[k]; !ok {
			t.Errorf("/status subtask a's syncer has no %q: %v", k, syncer)
		}
	}
	if cp, _ := syncer["checkpoint"].(map[string]any); cp["name"] == "" || cp["offset"] == nil {
		t.Errorf("/status checkpoint: %v", syncer["checkpoint"])
	}
	snap, _ := subtasks[1].(map[string]any)["snapshot"].(map[string]any)
	if snap["stage"] != "Done" || snap["rows"].(float64) < 1000 {
		t.Errorf("/status subtask s's snapshot: %v", snap)
	}

	// An unsupported DDL pauses both subtasks: 503 with the reason.
	mustExec(t, p.updb, "ALTER TABLE app.t PARTITION BY HASH(id) PARTITIONS 2")
	waitStage(t, taskStatus(w, "a"), dmworker.SubTaskPaused)
	code, body = get(t, srv.URL+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "subtask a paused on error") ||
		!strings.Contains(strings.ToLower(body), "partition") {
		t.Fatalf("/healthz with a paused subtask: %d %q", code, body)
	}
	code, body = get(t, srv.URL+"/status")
	var paused dmworker.StatusJSON
	if err := json.Unmarshal([]byte(body), &paused); err != nil || code != http.StatusOK {
		t.Fatalf("/status with a paused subtask: %d %v %s", code, err, body)
	}
	if e := paused.SubTasks[0].Error; paused.SubTasks[0].Stage != "Paused" || !strings.Contains(strings.ToLower(e), "partition") {
		t.Fatalf("/status of the paused subtask: %+v", paused.SubTasks[0])
	}

	// Two workers share the registry; a name taken cannot run; a worker's
	// metrics go when it stops.
	mk := func(name string) *dmworker.SourceWorker {
		x, err := dmworker.NewSourceWorker(name, mysqlSinks(p.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: "src", Upstream: up}), dmworker.WithMetrics(reg))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	w2 := mk("w2")
	runWorker(t, w2)
	waitUntil(t, "w2's metrics", func() bool {
		_, ok := metricSum(scrape(t, srv.URL), "dmworker_worker_alive", map[string]string{"worker": "w2"})
		return ok
	})
	if err := mk("w1").Run(context.Background()); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("a second w1 on the registry: Run returned %v", err)
	}
	closeWorker()
	fams := scrape(t, srv.URL)
	for name := range fams {
		if _, ok := metricSum(fams, name, map[string]string{"worker": "w1"}); ok {
			t.Errorf("%s of w1 still registered after Close", name)
		}
	}
	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not alive") {
		t.Fatalf("/healthz of a closed worker: %d %q", code, body)
	}
}

// TestMetricsLeases: a KeepAlive's and a Coordinator's metrics move as the
// lease is held, a source is bound and moves to another worker (its epoch
// grows), and go when they stop.
func TestMetricsLeases(t *testing.T) {
	e := testserver.StartEtcd(t)
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	a, err := dmworker.NewKeepAlive(e.Client, "worker-a", dmworker.WithKeepAliveTTL(testTTL), fastBackoff, dmworker.WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	aErr := make(chan error, 1)
	go func() { aErr <- a.Run(context.Background()) }()
	b := runKeepAlive(t, e.Client, "worker-b", dmworker.WithMetrics(reg))
	waitAlive(t, a, true, etcdWait)
	waitAlive(t, b, true, etcdWait)
	putSource(t, e.Client, "mysql-1")
	c, stop := runCoordinator(t, e.Client, dmworker.WithMetrics(reg))
	first := waitBindings(t, c, map[string]string{"mysql-1": "worker-a"})["mysql-1"]
	value := func(name string, labels map[string]string) float64 {
		v, ok := metricSum(scrape(t, srv.URL), name, labels)
		if !ok {
			t.Fatalf("%s%v not scraped", name, labels)
		}
		return v
	}
	for _, w := range []string{"worker-a", "worker-b"} {
		if v := value("dmworker_keepalive_lease_held", map[string]string{"worker": w}); v != 1 {
			t.Fatalf("%s lease held %v", w, v)
		}
		if v := value("dmworker_keepalive_registration_revision", map[string]string{"worker": w}); v <= 0 {
			t.Fatalf("%s registration revision %v", w, v)
		}
	}
	if v := value("dmworker_coordinator_leader", nil); v != 1 {
		t.Fatalf("coordinator leader %v", v)
	}
	if v := value("dmworker_coordinator_bindings", nil); v != 1 {
		t.Fatalf("coordinator bindings %v", v)
	}
	if v := value("dmworker_coordinator_max_epoch", nil); v != float64(first.Epoch) {
		t.Fatalf("coordinator max epoch %v, binding %+v", v, first)
	}

	// worker-a stops: its metrics go, the source moves, the epoch grows.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-aErr; err != nil {
		t.Fatal(err)
	}
	if _, ok := metricSum(scrape(t, srv.URL), "dmworker_keepalive_lease_held", map[string]string{"worker": "worker-a"}); ok {
		t.Fatal("worker-a's metrics still registered after Close")
	}
	moved := waitBindings(t, c, map[string]string{"mysql-1": "worker-b"})["mysql-1"]
	if v := value("dmworker_coordinator_max_epoch", nil); v != float64(moved.Epoch) || moved.Epoch <= first.Epoch {
		t.Fatalf("coordinator max epoch %v, bindings %+v then %+v", v, first, moved)
	}
	stop()
	if _, ok := scrape(t, srv.URL)["dmworker_coordinator_leader"]; ok {
		t.Fatal("the coordinator's metrics still registered after Close")
	}
}

// TestMetricsStandalone: a Relay and a SubTask given WithMetrics register
// their own metrics (worker label empty) while they run, and unregister
// when they stop.
func TestMetricsStandalone(t *testing.T) {
	p := newPair(t, 472, 473, testserver.MariaDBOptions{})
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	up := upstreamOf(p.up)
	rup := up
	rup.ServerID = 472 + 40
	r, err := dmworker.NewRelay(rup, t.TempDir(), dmworker.RelayConfig{}, dmworker.WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	relayErr := runRelay(t, r)
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "solo"}, up, p.sink, dmworker.WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the syncer to start", func() bool { return st.Status().Syncer.Read.Name != "" })
	mustExec(t, p.updb, "CREATE DATABASE d")
	mustExec(t, p.updb, "CREATE TABLE d.t (id INT PRIMARY KEY)")
	mustExec(t, p.updb, "INSERT INTO d.t VALUES (1), (2), (3)")
	waitSubTaskSynced(t, st.Status, p)
	source := up.SourceName()
	waitUntil(t, "the metrics of both", func() bool {
		fams := scrape(t, srv.URL)
		rows, _ := metricSum(fams, "dmworker_syncer_row_changes_total", map[string]string{"task": "solo", "kind": "insert", "worker": ""})
		state, _ := metricSum(fams, "dmworker_subtask_state", map[string]string{"task": "solo"})
		written, _ := metricSum(fams, "dmworker_relay_write_bytes_total", map[string]string{"source": source, "task": "", "worker": ""})
		return rows == 3 && state == 2 && written > 0
	})
	st.Stop()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-relayErr; err != nil {
		t.Fatal(err)
	}
	if fams := scrape(t, srv.URL); len(fams) != 0 {
		t.Fatalf("metrics left after the relay and the subtask stopped: %v", fams)
	}
}
