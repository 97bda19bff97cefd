package dmworker_test

import (
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// An option several constructors take, such as WithLogger or
// WithStopTimeout, is one value that each of them accepts; a SubTask hands
// its options on to its Syncer. An option a constructor does not take
// (WithEpoch for a SourceWorker) does not compile.
func ExampleLoggerOption() {
	logger := dmworker.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	stop := dmworker.WithStopTimeout(10 * time.Second)
	up := streamer.UpstreamConfig{Name: "shop-db", Host: "127.0.0.1", Port: 3306, User: "repl"}
	sink := sinktest.NewMemSink()
	store := dmworker.WithCheckpointStore(&dmworker.MemoryCheckpointStore{})

	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "orders", Upstream: up}, sink, logger, stop, store)
	if err != nil {
		log.Fatal(err)
	}
	t, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "orders"}, up, sink, logger, stop, store,
		dmworker.WithAutoResume(time.Second, time.Minute, 10))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Status().Stage, t.Status().Stage)
	// Output: New New
}

// A RelayConfig is how a Relay keeps its copy; a SourceConfig embeds it,
// so that a SourceWorker's relay is configured the same way, through etcd
// too: its fields are the source config's JSON keys.
func ExampleRelayConfig() {
	relay := dmworker.RelayConfig{
		SyncPolicy:    dmworker.SyncEachTransaction(),
		PurgeInterval: dmworker.Duration(time.Hour),
		PurgeExpires:  dmworker.Duration(7 * 24 * time.Hour),
		FileMode:      0o600,
		Reader:        dmworker.ReaderConfig{Heartbeat: dmworker.Duration(time.Second), ReadTimeout: dmworker.Duration(5 * time.Second)},
	}
	src := dmworker.SourceConfig{Name: "shop-db", Upstream: streamer.UpstreamConfig{Host: "10.0.0.5", Port: 3306, User: "repl"},
		PasswordRef: "vault:shop-db", EnableRelay: true, RelayConfig: relay}
	b, err := json.Marshal(src)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	fmt.Println(src.SyncPolicy, time.Duration(src.PurgeExpires))
	// Output:
	// {"name":"shop-db","upstream":{"host":"10.0.0.5","port":3306,"user":"repl"},"password-ref":"vault:shop-db","enable-relay":true,"relay-sync":"each-transaction","purge-interval":"1h0m0s","purge-expires":"168h0m0s","relay-file-mode":384,"relay-reader":{"heartbeat":"1s","read-timeout":"5s"}}
	// each-transaction 168h0m0s
}

// SyncerTuning is embedded in SyncerConfig and SubTaskConfig: its fields
// read as theirs, and its keys are theirs in JSON and TOML.
func ExampleSyncerTuning() {
	cfg := dmworker.SubTaskConfig{Name: "orders",
		SyncerTuning: dmworker.SyncerTuning{Workers: 8, BatchSize: 200, Compact: true}}
	cfg.SafeMode = true
	b, err := json.Marshal(cfg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	fmt.Println(cfg.Workers)
	// Output:
	// {"name":"orders","batch":200,"safe-mode":true,"workers":8,"compact":true}
	// 8
}

// A syncer's stage is a word in its status and in JSON.
func ExampleSyncerStage() {
	b, _ := json.Marshal(dmworker.SyncerStatus{Stage: dmworker.SyncerRunning}.Stage)
	fmt.Println(dmworker.SyncerRunning, string(b))
	// Output: Running "Running"
}

// WithSinkTimeout bounds how long a batch may wait for the downstream's
// answer: after it, the call is abandoned and the subtask resumes from the
// checkpoint stored downstream, with ErrSinkTimeout in its status. The
// timeout is best set well above the downstream's own lock wait timeout.
func ExampleSinkTimeoutOption() {
	up := streamer.UpstreamConfig{Name: "shop-db", Host: "127.0.0.1", Port: 3306, User: "repl"}
	t, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "orders"}, up, sinktest.NewMemSink(),
		dmworker.WithSinkTimeout(2*time.Minute), dmworker.WithAutoResume(time.Second, time.Minute, 10))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Status().Stage, dmworker.DefaultSinkTimeout)
	// Output: New 5m0s
}
