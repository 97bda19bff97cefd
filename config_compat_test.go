package dmworker_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// Configs as etcd and files hold them, written by the release before
// RelayConfig and SyncerTuning were split out of SourceConfig and
// SubTaskConfig (main 6c84c06): they still decode to the same values, and
// encode back to the same JSON.
const (
	oldSourceJSON = `{"name":"shop-db","upstream":{"host":"10.0.0.5","port":3306,"user":"repl","flavor":"mysql","server-id":101},"password-ref":"vault:shop","enable-relay":true,"relay-dir":"/var/lib/relay/shop","relay-start":{"name":"mysql-bin.000007","offset":1234},"purge-interval":"1h0m0s","purge-expires":"48h0m0s","purge-remain-space":10737418240}`
	oldTaskJSON   = `{"name":"orders","source":"shop-db","mode":"all","start":{"name":"mysql-bin.000007","offset":4},"block-allow-list":{"do-dbs":["shop"]},"routes":[{"schema-pattern":"shop","target-schema":"shop_copy"}],"batch":200,"max-batch-rows":5000,"flush-interval":"250ms","safe-mode":true,"workers":8,"compact":true,"queue-bytes":33554432,"checkpoint-interval":"3s","snapshot":{"concurrency":4,"chunk-rows":1000}}`
	oldTaskTOML   = `name = "orders"
source = "shop-db"
mode = "all"
batch = 200
max-batch-rows = 5000
flush-interval = "250ms"
safe-mode = true
workers = 8
compact = true
queue-bytes = 33554432
checkpoint-interval = "3s"

[block-allow-list]
  do-dbs = ["shop"]

[[routes]]
  schema-pattern = "shop"
  target-schema = "shop_copy"

[snapshot]
  concurrency = 4
  chunk-rows = 1000
  batch-rows = 0
  indexes-first = false
`
)

func TestConfigJSONCompatible(t *testing.T) {
	wantSrc := dmworker.SourceConfig{
		Name:        "shop-db",
		Upstream:    streamer.UpstreamConfig{Host: "10.0.0.5", Port: 3306, User: "repl", Flavor: streamer.FlavorMySQL, ServerID: 101},
		PasswordRef: "vault:shop",
		EnableRelay: true,
		RelayDir:    "/var/lib/relay/shop",
		RelayConfig: dmworker.RelayConfig{
			RelayStart:    streamer.Position{Name: "mysql-bin.000007", Offset: 1234},
			PurgeInterval: dmworker.Duration(time.Hour), PurgeExpires: dmworker.Duration(48 * time.Hour), PurgeRemainSpace: 10 << 30,
		},
	}
	var src dmworker.SourceConfig
	if err := json.Unmarshal([]byte(oldSourceJSON), &src); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(src, wantSrc) {
		t.Errorf("source config decoded to\n%+v\nwant\n%+v", src, wantSrc)
	}
	if b, err := json.Marshal(wantSrc); err != nil || string(b) != oldSourceJSON {
		t.Errorf("source config encodes to\n%s (%v)\nwant\n%s", b, err, oldSourceJSON)
	}

	wantTask := dmworker.SubTaskConfig{
		Name: "orders", Source: "shop-db", Mode: dmworker.ModeAll,
		Start:  streamer.Position{Name: "mysql-bin.000007", Offset: 4},
		Filter: dmworker.BlockAllowList{DoDBs: []string{"shop"}},
		Routes: []dmworker.RouteRule{{SchemaPattern: "shop", TargetSchema: "shop_copy"}},
		SyncerTuning: dmworker.SyncerTuning{
			BatchSize: 200, MaxBatchRows: 5000, FlushInterval: dmworker.Duration(250 * time.Millisecond), SafeMode: true,
			Workers: 8, Compact: true, QueueBytes: 32 << 20, CheckpointInterval: dmworker.Duration(3 * time.Second),
		},
		Snapshot: dmworker.SnapshotConfig{Concurrency: 4, ChunkRows: 1000},
	}
	var task dmworker.SubTaskConfig
	if err := json.Unmarshal([]byte(oldTaskJSON), &task); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(task, wantTask) {
		t.Errorf("subtask config decoded to\n%+v\nwant\n%+v", task, wantTask)
	}
	if b, err := json.Marshal(wantTask); err != nil || string(b) != oldTaskJSON {
		t.Errorf("subtask config encodes to\n%s (%v)\nwant\n%s", b, err, oldTaskJSON)
	}
	wantTask.Start = streamer.Position{} // not in TOML
	task = dmworker.SubTaskConfig{}
	if _, err := toml.Decode(oldTaskTOML, &task); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(task, wantTask) {
		t.Errorf("subtask config decoded from TOML to\n%+v\nwant\n%+v", task, wantTask)
	}
}

// The relay's settings a SourceConfig newly carries (sync policy, file
// modes, reader settings) travel through JSON too.
func TestRelayConfigJSON(t *testing.T) {
	for _, c := range []dmworker.RelayConfig{
		{},
		{SyncPolicy: dmworker.SyncEachTransaction(), FileMode: 0o600, DirMode: 0o700},
		{SyncPolicy: dmworker.SyncOnRotate()},
		{SyncPolicy: dmworker.SyncInterval(20 * time.Millisecond),
			Reader: dmworker.ReaderConfig{Heartbeat: dmworker.Duration(time.Second), ReadTimeout: dmworker.Duration(3 * time.Second),
				BackoffMin: dmworker.Duration(10 * time.Millisecond), BackoffMax: dmworker.Duration(time.Second),
				MaxRetryTime: dmworker.Duration(time.Minute), EventQueueSize: 64}},
	} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back dmworker.RelayConfig
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s decoded to %+v, want %+v", b, back, c)
		}
	}
	var c dmworker.RelayConfig
	if err := json.Unmarshal([]byte(`{"relay-sync":"50ms"}`), &c); err != nil || c.SyncPolicy != dmworker.SyncInterval(50*time.Millisecond) {
		t.Errorf("a bare duration: %+v, %v", c, err)
	}
	if err := json.Unmarshal([]byte(`{"relay-sync":"sometimes"}`), &c); err == nil {
		t.Error("an unknown sync policy decoded")
	}
}
