package dmworker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestEtcdHost: each writer puts the key of the layout a worker reads, with
// the value it decodes, and refuses bad names and stages without writing.
func TestEtcdHost(t *testing.T) {
	e := testserver.StartEtcd(t)
	cli := e.Client
	ctx := t.Context()
	if _, err := dmworker.NewEtcdHost(nil, ""); err == nil {
		t.Fatal("NewEtcdHost(nil): no error")
	}
	h, err := dmworker.NewEtcdHost(cli, "/hosttest") // the trailing "/" is added
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) (string, int64) {
		t.Helper()
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return "", 0
		}
		return string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
	}

	epoch, err := h.BindSource(ctx, "w1", "src")
	if err != nil {
		t.Fatal(err)
	}
	if v, rev := get("/hosttest/bound/w1"); v != `{"source":"src"}` || rev != epoch {
		t.Errorf("bound/w1 = %q at revision %d, want {\"source\":\"src\"} at the epoch %d", v, rev, epoch)
	}
	again, err := h.BindSource(ctx, "w1", "src")
	if err != nil || again <= epoch {
		t.Errorf("binding again: epoch %d, %v; want one above %d", again, err, epoch)
	}

	task := dmworker.SubTaskConfig{Name: "t1", Mode: dmworker.ModeIncremental, SyncerTuning: dmworker.SyncerTuning{BatchSize: 25},
		Filter: dmworker.BlockAllowList{DoDBs: []string{"shop"}}}
	if err := h.PutSubTaskConfig(ctx, "src", task); err != nil {
		t.Fatal(err)
	}
	v, rev := get("/hosttest/subtask/src/t1")
	if err := h.PutSubTaskConfig(ctx, "src", task); err != nil {
		t.Fatal(err)
	}
	if _, again := get("/hosttest/subtask/src/t1"); again != rev {
		t.Errorf("the same config put again: revision %d, was %d", again, rev)
	}
	var back dmworker.SubTaskConfig
	if err := json.Unmarshal([]byte(v), &back); err != nil || back.Name != "t1" || back.BatchSize != 25 || back.Filter.DoDBs[0] != "shop" {
		t.Errorf("subtask/src/t1 = %s (%v)", v, err)
	}
	if err := h.PutSubTaskStage(ctx, "src", "t1", dmworker.SubTaskPaused); err != nil {
		t.Fatal(err)
	}
	if v, _ := get("/hosttest/stage/subtask/src/t1"); v != "Paused" {
		t.Errorf("stage/subtask/src/t1 = %q, want Paused", v)
	}
	if err := h.PutRelayStage(ctx, "src", dmworker.RelayPaused); err != nil {
		t.Fatal(err)
	}
	if v, _ := get("/hosttest/stage/relay/src"); v != "Paused" {
		t.Errorf("stage/relay/src = %q, want Paused", v)
	}

	// Refusals write nothing.
	before, err := cli.Get(ctx, "/hosttest/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"bind to a/b":         func() error { _, err := h.BindSource(ctx, "w1", "a/b"); return err }(),
		"bind empty worker":   func() error { _, err := h.BindSource(ctx, "", "src"); return err }(),
		"unnamed task":        h.PutSubTaskConfig(ctx, "src", dmworker.SubTaskConfig{}),
		"task of another":     h.PutSubTaskConfig(ctx, "src", dmworker.SubTaskConfig{Name: "t2", Source: "other"}),
		"subtask stage Foo":   h.PutSubTaskStage(ctx, "src", "t1", "Foo"),
		"subtask stage ''":    h.PutSubTaskStage(ctx, "src", "t1", ""),
		"relay stage Stopped": h.PutRelayStage(ctx, "src", dmworker.RelayStage("Stopped")),
		"stage of ..":         h.PutSubTaskStage(ctx, "src", "..", dmworker.SubTaskRunning),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	after, err := cli.Get(ctx, "/hosttest/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Count != before.Count || after.Header.Revision != before.Header.Revision {
		t.Errorf("a refused write wrote: %d keys at revision %d, were %d at %d", after.Count, after.Header.Revision, before.Count, before.Header.Revision)
	}

	// Deleting a subtask deletes its stage too; the other deletes.
	if err := h.DeleteSubTaskConfig(ctx, "src", "t1"); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteRelayStage(ctx, "src"); err != nil {
		t.Fatal(err)
	}
	if err := h.UnbindSource(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if err := h.UnbindSource(ctx, "w1"); err != nil { // missing: no error
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/hosttest/source/src", "{}"); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteSourceConfig(ctx, "src"); err != nil {
		t.Fatal(err)
	}
	left, err := cli.Get(ctx, "/hosttest/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range left.Kvs {
		t.Errorf("left after the deletes: %s", kv.Key)
	}
}

// TestEtcdKeys: the exported names are those of the layout in the package
// doc, under the prefix as WithEtcdPrefix takes it.
func TestEtcdKeys(t *testing.T) {
	var zero dmworker.EtcdKeys
	k := dmworker.NewEtcdKeys("/p")
	for _, c := range []struct{ got, want string }{
		{zero.Prefix(), dmworker.DefaultEtcdPrefix},
		{zero.Bound("w"), dmworker.DefaultEtcdPrefix + "bound/w"},
		{dmworker.NewEtcdKeys("").Worker("w"), dmworker.DefaultEtcdPrefix + "worker/w"},
		{k.Prefix(), "/p/"},
		{k.Worker("w"), "/p/worker/w"},
		{k.Workers(), "/p/worker/"},
		{k.Bound("w"), "/p/bound/w"},
		{k.Bounds(), "/p/bound/"},
		{k.Source("s"), "/p/source/s"},
		{k.Sources(), "/p/source/"},
		{k.SubTask("s", "t"), "/p/subtask/s/t"},
		{k.SubTasks("s"), "/p/subtask/s/"},
		{k.RelayStage("s"), "/p/stage/relay/s"},
		{k.SubTaskStage("s", "t"), "/p/stage/subtask/s/t"},
		{k.SubTaskStages("s"), "/p/stage/subtask/s/"},
		{k.RelayStatus("w"), "/p/status/w/relay"},
		{k.SubTaskStatus("w", "t"), "/p/status/w/subtask/t"},
		{k.Statuses("w"), "/p/status/w/"},
		{k.Statuses(""), "/p/status/"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if !strings.HasPrefix(k.SubTaskStatus("w", "t"), k.Statuses("w")) {
		t.Error("a status key is not under Statuses")
	}
}

// The keys a host watches, named under the prefix its workers use.
func ExampleEtcdKeys() {
	keys := dmworker.NewEtcdKeys("/prod/dmworker")
	fmt.Println(keys.Bound("worker-1"))
	fmt.Println(keys.SubTask("shop-db", "orders"))
	fmt.Println(keys.SubTaskStatus("worker-1", "orders"))
	fmt.Println(keys.Statuses("")) // watch with clientv3.WithPrefix()
	// Output:
	// /prod/dmworker/bound/worker-1
	// /prod/dmworker/subtask/shop-db/orders
	// /prod/dmworker/status/worker-1/subtask/orders
	// /prod/dmworker/status/
}

// A host drives the worker serving shop-db through etcd: it binds the
// source (where no Coordinator does), adds a task, pauses and resumes it,
// then removes it. (Not run: it needs etcd.)
func ExampleEtcdHost() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	host, err := dmworker.NewEtcdHost(cli, dmworker.DefaultEtcdPrefix)
	if err != nil {
		log.Fatal(err)
	}
	epoch, err := host.BindSource(ctx, "worker-1", "shop-db")
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("shop-db bound to worker-1, epoch %d", epoch)
	task := dmworker.SubTaskConfig{Name: "orders", Mode: dmworker.ModeIncremental,
		Filter: dmworker.BlockAllowList{DoDBs: []string{"shop"}}}
	if err := host.PutSubTaskConfig(ctx, "shop-db", task); err != nil {
		log.Fatal(err)
	}
	_ = host.PutSubTaskStage(ctx, "shop-db", "orders", dmworker.SubTaskPaused)
	_ = host.PutSubTaskStage(ctx, "shop-db", "orders", dmworker.SubTaskRunning)
	// The worker reports under host.Keys().SubTaskStatus("worker-1", "orders").
	if err := host.DeleteSubTaskConfig(ctx, "shop-db", "orders"); err != nil {
		log.Fatal(err)
	}
}
