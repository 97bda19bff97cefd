package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver sql.Open("mysql") needs
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// A Position prints, parses back and orders binlog positions.
func ExamplePosition() {
	a, err := dmworker.ParsePosition("mysql-bin.000009:1234 mariadb-gtid=0-1-100")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := dmworker.ParsePosition("mysql-bin.000010:4")
	fmt.Println(a.Name, a.Offset, a.GTIDSet)
	fmt.Println(a.Compare(b))
	// Output:
	// mysql-bin.000009 1234 0-1-100
	// -1
}

// A Relay copies an upstream's binlog into a local directory until stopped.
// (Not run: it needs a server.)
func ExampleNewRelay() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	r, err := dmworker.NewRelay(up, "/var/lib/dmworker/relay", dmworker.RelayConfig{
		SyncPolicy:       dmworker.SyncInterval(50 * time.Millisecond),
		PurgeInterval:    dmworker.Duration(time.Hour),
		PurgeExpires:     dmworker.Duration(7 * 24 * time.Hour),
		PurgeRemainSpace: 10 << 30,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		// A reader in the same process waits for new data without polling.
		for {
			pos, changed := r.Relayed()
			fmt.Println("relayed up to", pos)
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// A Syncer replicates an upstream into a MySQL-compatible downstream, merging
// shard tables on the way. (Not run: it needs servers.)
func ExampleNewSyncer() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	downstream, err := sql.Open("mysql", "root:pw@tcp(127.0.0.1:3307)/")
	if err != nil {
		log.Fatal(err)
	}
	sink, err := mysqlsink.New(downstream) // keeps the checkpoint with the data
	if err != nil {
		log.Fatal(err)
	}
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{
		Task:     "orders",
		Upstream: up,
		Filter:   dmworker.BlockAllowList{DoDBs: []string{"shop_*"}},
		Routes: []dmworker.RouteRule{
			{SchemaPattern: "shop_*", TargetSchema: "shop"},
			{SchemaPattern: "shop_*", TablePattern: "orders_*", TargetSchema: "shop", TargetTable: "orders"},
		},
	}, sink)
	if err != nil {
		log.Fatal(err)
	}
	err = s.Run(context.Background())
	var se *dmworker.SyncError
	if errors.Is(err, dmworker.ErrUnsupportedDDL) && errors.As(err, &se) {
		// Look at se.Statement, then skip it (or Replace it) and go on.
		s.Skip(se.Pos)
		err = s.Run(context.Background())
	}
	if err != nil {
		log.Fatal(err)
	}
}

// Checkpoints can live in etcd when the sink cannot keep them. (Not run: it
// needs etcd.)
func ExampleNewEtcdCheckpointStore() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	store, err := dmworker.NewEtcdCheckpointStore(cli, "/dmworker/")
	if err != nil {
		log.Fatal(err)
	}
	cp, ok, err := store.Load(context.Background(), "orders", "db1:3306")
	fmt.Println(cp.Pos, ok, err)
}

// The in-memory store keeps the newest checkpoint per task and source and
// refuses one from an older epoch.
func ExampleMemoryCheckpointStore() {
	var store dmworker.MemoryCheckpointStore
	ctx := context.Background()
	pos, _ := dmworker.ParsePosition("mysql-bin.000002:120")
	fmt.Println(store.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "s", Pos: pos, Epoch: 2}))
	err := store.Save(ctx, dmworker.Checkpoint{Task: "t", Source: "s", Pos: pos, Epoch: 1})
	fmt.Println(errors.Is(err, dmworker.ErrStaleEpoch))
	cp, ok, _ := store.Load(ctx, "t", "s")
	fmt.Println(cp.Pos, cp.Epoch, ok)
	// Output:
	// <nil>
	// true
	// mysql-bin.000002:120 2 true
}

// A SubTask runs one task on one source, with stages the host drives: here
// it is paused for a config change and resumed. (Not run: it needs servers.)
func ExampleNewSubTask() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	downstream, err := sql.Open("mysql", "root:pw@tcp(127.0.0.1:3307)/")
	if err != nil {
		log.Fatal(err)
	}
	sink, err := mysqlsink.New(downstream)
	if err != nil {
		log.Fatal(err)
	}
	cfg := dmworker.SubTaskConfig{Name: "orders", Mode: dmworker.ModeIncremental,
		Filter: dmworker.BlockAllowList{DoDBs: []string{"shop"}}}
	st, err := dmworker.NewSubTask(cfg, up, sink,
		dmworker.WithAutoResume(time.Second, time.Minute, 10)) // the defaults
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := st.Run(context.Background()); err != nil {
			log.Print(err)
		}
	}()
	defer st.Stop()

	if err := st.Pause(); err != nil { // returns once nothing is written
		log.Fatal(err)
	}
	cfg.Filter.DoDBs = append(cfg.Filter.DoDBs, "billing")
	if err := st.Update(cfg); err != nil {
		log.Fatal(err)
	}
	if err := st.Resume(); err != nil {
		log.Fatal(err)
	}
	s := st.Status()
	fmt.Println(s.Stage, s.Syncer.Checkpoint, s.Syncer.LagSeconds, s.LastError)
}

// A SourceWorker in direct mode: the host gives it its source and drives
// its subtasks; with EnableRelay they read a local relay log. (Not run: it
// needs servers.)
func ExampleNewSourceWorker() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	downstream, err := sql.Open("mysql", "root:pw@tcp(127.0.0.1:3307)/")
	if err != nil {
		log.Fatal(err)
	}
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return mysqlsink.New(downstream)
	}
	w, err := dmworker.NewSourceWorker("worker-1", sinks,
		dmworker.WithSource(dmworker.SourceConfig{Name: "shop-db", Upstream: up, EnableRelay: true}),
		dmworker.WithRelayDir("/var/lib/dmworker/relay"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "orders"}); err != nil {
			log.Print(err)
		}
		for _, st := range w.Status(ctx).SubTasks {
			fmt.Println(st.Name, st.Stage, st.Syncer.Checkpoint)
		}
	}()
	if err := w.Run(ctx); err != nil { // until ctx ends; subtasks and relay stop with it
		log.Fatal(err)
	}
}

// In etcd mode a SourceWorker takes its source, subtasks and stages from
// etcd (see the key layout in the package doc): here the host writes them
// itself, as a coordinator would, the upstream's password sealed with a key
// that host and workers share and etcd never sees. (Not run: it needs
// servers and etcd.)
func ExampleWithEtcd() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	key, err := os.ReadFile("/etc/dmworker/credential.key") // 32 random bytes
	if err != nil {
		log.Fatal(err)
	}
	up, _ := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	ctx := context.Background()
	// The password is sealed: etcd never holds it in plain text.
	if err := dmworker.PutSourceConfig(ctx, cli, dmworker.SourceConfig{Name: "shop-db", Upstream: up}, dmworker.WithCredentialKey(key)); err != nil {
		log.Fatal(err)
	}
	host, err := dmworker.NewEtcdHost(cli, dmworker.DefaultEtcdPrefix)
	if err != nil {
		log.Fatal(err)
	}
	if err := host.PutSubTaskConfig(ctx, "shop-db", dmworker.SubTaskConfig{Name: "orders"}); err != nil {
		log.Fatal(err)
	}
	if _, err := host.BindSource(ctx, "worker-1", "shop-db"); err != nil { // a Coordinator's job, when there is one
		log.Fatal(err)
	}
	downstream, _ := sql.Open("mysql", "root:pw@tcp(127.0.0.1:3307)/")
	w, err := dmworker.NewSourceWorker("worker-1",
		func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
			return mysqlsink.New(downstream)
		},
		dmworker.WithEtcd(cli), dmworker.WithCredentialKey(key))
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		// Pause the task: the worker applies it and reports the stage under
		// host.Keys().SubTaskStatus("worker-1", "orders").
		_ = host.PutSubTaskStage(ctx, "shop-db", "orders", dmworker.SubTaskPaused)
	}()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// A SubTaskConfig is what a host writes under subtask/<source>/<task> in
// etcd, or in a file: zero fields take their documented defaults.
func ExampleSubTaskConfig() {
	cfg := dmworker.SubTaskConfig{
		Name:   "orders",
		Mode:   dmworker.ModeIncremental,
		Filter: dmworker.BlockAllowList{DoDBs: []string{"shop"}},
		Routes: []dmworker.RouteRule{{SchemaPattern: "shop", TablePattern: "orders_*", TargetSchema: "shop", TargetTable: "orders"}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		log.Fatal(err)
	}
	var back dmworker.SubTaskConfig
	if err := json.Unmarshal(b, &back); err != nil {
		log.Fatal(err)
	}
	fmt.Println(back.Name, back.Mode, back.Filter.DoDBs, back.Routes[0].TargetTable)
	// Output:
	// orders incremental [shop] orders
}

// A SourceConfig is what a host writes under source/<source>: the upstream
// and whether to keep a relay log of it. Its password travels sealed with
// the host's credential key (or as a reference the workers resolve), never
// in plain text; logs and fmt never show it.
func ExampleSourceConfig() {
	up, _ := streamer.ParseUpstream("repl:secret@10.0.0.5:3306")
	src := dmworker.SourceConfig{Name: "shop-db", Upstream: up, EnableRelay: true,
		RelayConfig: dmworker.RelayConfig{PurgeInterval: dmworker.Duration(time.Hour), PurgeExpires: dmworker.Duration(7 * 24 * time.Hour)}}
	_, err := json.Marshal(src)
	fmt.Println(errors.Is(err, dmworker.ErrPlaintextPassword))
	key := bytes.Repeat([]byte{7}, 32) // in practice 32 random bytes kept outside etcd
	sealed, err := dmworker.SealSourceConfig(src, key)
	if err != nil {
		log.Fatal(err)
	}
	b, _ := json.Marshal(sealed) // what PutSourceConfig(ctx, cli, src, WithCredentialKey(key)) writes
	var back dmworker.SourceConfig
	_ = json.Unmarshal(b, &back)
	fmt.Println(back.Name, back.Upstream.Addr(), back.EnableRelay, time.Duration(back.PurgeExpires))
	fmt.Println(strings.Contains(string(b), "secret"), back.SealedPassword != "")
	fmt.Printf("%v\n", src.Upstream)
	// Output:
	// true
	// shop-db 10.0.0.5:3306 true 168h0m0s
	// false true
	// repl:***@10.0.0.5:3306 (name=10.0.0.5:3306 flavor= server-id=0)
}

// A coordinator reads what workers report under status/<worker>/.
func ExampleSubTaskReport() {
	value := `{"worker":"w1","name":"orders","source":"shop-db","mode":"incremental","stage":"Paused",` +
		`"epoch":42,"error":"dmworker: write from a stale epoch refused","stale-epoch":true}`
	var r dmworker.SubTaskReport
	if err := json.Unmarshal([]byte(value), &r); err != nil {
		log.Fatal(err)
	}
	if r.Stage == dmworker.SubTaskPaused && r.StaleEpoch {
		fmt.Printf("%s on %s was fenced off (epoch %d): another worker writes it now\n", r.Name, r.Worker, r.Epoch)
	}
	// Output:
	// orders on w1 was fenced off (epoch 42): another worker writes it now
}

// switchLiveness is a Liveness a host switches itself (a KeepAlive is the
// usual one).
type switchLiveness struct {
	mu      sync.Mutex
	alive   bool
	changed chan struct{}
}

func (s *switchLiveness) Alive() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alive, s.changed
}

func (s *switchLiveness) set(alive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alive = alive
	close(s.changed)
	s.changed = make(chan struct{})
}

// A SourceWorker given a Liveness stops its subtasks and relay at once when
// it says not alive, and starts them again when alive.
func ExampleLiveness() {
	l := &switchLiveness{alive: true, changed: make(chan struct{})}
	_, changed := l.Alive()
	l.set(false) // the worker would stop everything now
	<-changed
	alive, _ := l.Alive()
	fmt.Println(alive)
	_ = dmworker.WithLiveness(l)
	// Output:
	// false
}

// A SinkFactory gives each subtask its sink; one that also implements
// io.Closer is closed when the worker drops the subtask.
func ExampleSinkFactory() {
	downstream, err := sql.Open("mysql", "root:pw@tcp(127.0.0.1:3307)/")
	if err != nil {
		log.Fatal(err)
	}
	defer downstream.Close()
	var sinks dmworker.SinkFactory = func(ctx context.Context, src dmworker.SourceConfig, task dmworker.SubTaskConfig) (dmworker.Sink, error) {
		// One checkpoint schema per source, say.
		return mysqlsink.New(downstream, mysqlsink.WithCheckpointSchema("dmworker_"+strings.ReplaceAll(src.Name, "-", "_")))
	}
	_, err = dmworker.NewSourceWorker("w1", sinks, dmworker.WithSource(dmworker.SourceConfig{Name: "shop-db",
		Upstream: streamer.UpstreamConfig{Host: "127.0.0.1", Port: 3306, User: "repl"}}))
	fmt.Println(err)
	// Output:
	// <nil>
}

// PurgeRelay removes relay files no subtask needs any more. (Not run: it
// needs a running worker with relay on.)
func ExampleSourceWorker_PurgeRelay() {
	var w *dmworker.SourceWorker // a running worker with relay on
	res, err := w.PurgeRelay(dmworker.RelayPurge{Before: time.Now().Add(-24 * time.Hour)})
	if errors.Is(err, dmworker.ErrRelayOff) {
		return
	}
	fmt.Println(len(res.Removed), "files removed; kept from", res.Kept)
}

// A subtask stopped by a DDL it cannot apply (here one the downstream
// needs nothing of) is told to pass over it, then resumed; a statement the
// downstream can take may be given instead with ReplaceSubTaskDDL.
// (Not run.)
func ExampleSourceWorker_SkipSubTaskDDL() {
	var w *dmworker.SourceWorker // a running worker in direct mode
	for _, st := range w.Status(context.Background()).SubTasks {
		var se *dmworker.SyncError
		if st.Stage != dmworker.SubTaskPaused || !errors.Is(st.LastError, dmworker.ErrUnsupportedDDL) || !errors.As(st.LastError, &se) {
			continue
		}
		fmt.Println(st.Name, "passes over", se.Pos)
		if err := w.SkipSubTaskDDL(st.Name, se.Pos); err != nil {
			log.Fatal(err)
		}
		if err := w.ResumeSubTask(st.Name); err != nil {
			log.Fatal(err)
		}
	}
}

// A shard's DDL the other shards' rows cannot take, replaced in that
// shard's subtask by one they can. (Not run.)
func ExampleSourceWorker_ReplaceSubTaskDDL() {
	var w *dmworker.SourceWorker // a running worker in direct mode, optimistic shard mode
	for _, st := range w.Status(context.Background()).SubTasks {
		var ie *dmworker.ShardIncompatibleDDLError
		var se *dmworker.SyncError
		if !errors.As(st.LastError, &ie) || !errors.As(st.LastError, &se) {
			continue
		}
		// The shard made the column NOT NULL; the merged table keeps it nullable.
		if err := w.ReplaceSubTaskDDL(st.Name, se.Pos, "ALTER TABLE shop.orders_01 COMMENT 'region NOT NULL upstream only'"); err != nil {
			log.Fatal(err)
		}
		if err := w.ResumeSubTask(st.Name); err != nil {
			log.Fatal(err)
		}
	}
}

// A sink that can tell how a downstream table is defined; optimistic shard
// mode asks it when a run starts. mysqlsink's is SHOW CREATE TABLE.
// (Not run: it needs a server.)
func ExampleTableDefiner() {
	db, err := sql.Open("mysql", "root:secret@tcp(127.0.0.1:4000)/")
	if err != nil {
		log.Fatal(err)
	}
	sink, err := mysqlsink.New(db)
	if err != nil {
		log.Fatal(err)
	}
	var td dmworker.TableDefiner = sink
	create, err := td.ShowCreateTable(context.Background(), "merged", "orders")
	switch {
	case err != nil:
		log.Fatal(err)
	case create == "":
		fmt.Println("merged.orders does not exist")
	default:
		fmt.Println(create)
	}
}

// Status lists the worker's source, relay and subtasks. (Not run.)
func ExampleSourceWorker_Status() {
	var w *dmworker.SourceWorker // a running worker
	st := w.Status(context.Background())
	if st.Relay != nil {
		fmt.Println("relay", st.Relay.Stage, st.Relay.Relayed, st.Relay.BytesBehind)
	}
	for _, t := range st.SubTasks {
		fmt.Println(t.Name, t.Stage, t.Unit, t.Syncer.Checkpoint, t.Syncer.LagSeconds, t.LastError)
	}
}

// A KeepAlive registers a worker in etcd; the worker serves only while Alive
// says so. (Not run: it needs etcd.)
func ExampleKeepAlive() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close() // after ka.Close: the library never closes the host's client
	ka, err := dmworker.NewKeepAlive(cli, "worker-1",
		dmworker.WithKeepAliveTTL(10*time.Second), // not alive after ~6.7s without etcd
		dmworker.WithWorkerAddr("10.0.0.7:8262"))
	if err != nil {
		log.Fatal(err)
	}
	defer ka.Close() // revokes the lease: the coordinator moves the source at once
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go ka.Run(ctx)

	for {
		alive, changed := ka.Alive()
		if alive {
			fmt.Println("registered: serve the bound source")
		} else {
			fmt.Println("not registered: stop serving at once", ka.Status().Err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// A Coordinator in each process of a cluster: one leads and binds every
// source (<prefix>source/<name>) to one live worker. (Not run: it needs
// etcd.)
func ExampleCoordinator() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	c, err := dmworker.NewCoordinator(cli, dmworker.WithKeepAliveTTL(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // gives leadership up at once
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go c.Run(ctx)

	for {
		leading, changed := c.Leading()
		bindings, err := c.Bindings(ctx)
		fmt.Println("leading:", leading, "bindings:", bindings, err)
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}
