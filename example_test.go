package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
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
	r, err := dmworker.NewRelay(up, "/var/lib/dmworker/relay",
		dmworker.WithSyncPolicy(dmworker.SyncInterval(50*time.Millisecond)),
		dmworker.WithAutoPurge(time.Hour, 7*24*time.Hour, 10<<30))
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
