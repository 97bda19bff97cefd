package dmworker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// WithMetrics takes the host's registerer; a SourceWorker collects for its
// relay, subtasks, syncers and snapshots, and registers only while Run
// runs. Nothing is registered before.
func ExampleMetricsOption() {
	reg := prometheus.NewRegistry()
	up := streamer.UpstreamConfig{Name: "shop-db", Host: "127.0.0.1", Port: 3306, User: "repl"}
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return sinktest.NewMemSink(), nil
	}
	w, err := dmworker.NewSourceWorker("worker-1", sinks,
		dmworker.WithSource(dmworker.SourceConfig{Name: "shop-db", Upstream: up}), dmworker.WithMetrics(reg))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	fams, err := reg.Gather()
	fmt.Println(len(fams), err)
	// Output: 0 <nil>
}

// The host mounts StatusHandler on its own server; here a worker that
// does not run answers /healthz with 503 and the reason.
func ExampleStatusHandler() {
	reg := prometheus.NewRegistry()
	up := streamer.UpstreamConfig{Name: "shop-db", Host: "127.0.0.1", Port: 3306, User: "repl"}
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return sinktest.NewMemSink(), nil
	}
	w, err := dmworker.NewSourceWorker("worker-1", sinks,
		dmworker.WithSource(dmworker.SourceConfig{Name: "shop-db", Upstream: up}), dmworker.WithMetrics(reg))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	mux := http.NewServeMux()
	mux.Handle("/", dmworker.StatusHandler(w, dmworker.StatusHandlerConfig{Gatherer: reg, MaxLag: 30 * time.Second}))
	// In a program: go http.ListenAndServe("127.0.0.1:8261", mux)

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 503 worker worker-1 is not alive: its lease is lost or Run is not running
}

// /status writes a SourceWorkerStatus as a StatusJSON: snake_case keys,
// errors as text, stages as words.
func ExampleStatusJSON() {
	st := dmworker.SourceWorkerStatus{Name: "worker-1", Source: "shop-db", Alive: true,
		SubTasks: []dmworker.SubTaskStatus{{Name: "orders", Source: "shop-db", Mode: dmworker.ModeIncremental,
			Stage: dmworker.SubTaskPaused, Unit: "syncer", LastError: errors.New("dmworker: unsupported DDL"),
			Syncer: dmworker.SyncerStatus{Stage: dmworker.SyncerStopped,
				Checkpoint: streamer.Position{Name: "mysql-bin.000042", Offset: 1234}, Rows: 10}}}}
	j := dmworker.NewStatusJSON(st)
	b, err := json.Marshal(j.SubTasks[0].Syncer.Checkpoint)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(j.SubTasks[0].Stage, j.SubTasks[0].Error)
	fmt.Println(string(b))
	fmt.Println(dmworker.Unhealthy(st, 0))
	// Output:
	// Paused dmworker: unsupported DDL
	// {"name":"mysql-bin.000042","offset":1234,"gtid_set":""}
	// [subtask orders paused on error: dmworker: unsupported DDL]
}
