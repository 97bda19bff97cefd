package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// Three sharded upstreams merged into one downstream table by one process:
// a SourceWorker per upstream, one task over the three sources in
// pessimistic shard mode with one ShardGroup. (Not run: it needs servers.)
func ExampleShardGroup() {
	down, err := sql.Open("mysql", "root:secret@tcp(127.0.0.1:4000)/")
	if err != nil {
		log.Fatal(err)
	}
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return mysqlsink.New(down)
	}
	sources := map[string]string{
		"shard-a": "repl:secret@10.0.0.1:3306",
		"shard-b": "repl:secret@10.0.0.2:3306",
		"shard-c": "repl:secret@10.0.0.3:3306",
	}
	g, err := dmworker.NewShardGroup("orders", "shard-a", "shard-b", "shard-c")
	if err != nil {
		log.Fatal(err)
	}
	task := dmworker.SubTaskConfig{
		Name:      "orders",
		ShardMode: dmworker.ShardPessimistic,
		Routes: []dmworker.RouteRule{
			{SchemaPattern: "shop", TablePattern: "orders_*", TargetSchema: "merged", TargetTable: "orders"},
			{SchemaPattern: "shop", TargetSchema: "merged"},
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	done := make(chan error, len(sources))
	for name, dsn := range sources {
		up, err := streamer.ParseUpstream(dsn)
		if err != nil {
			log.Fatal(err)
		}
		w, err := dmworker.NewSourceWorker("worker-"+name, sinks,
			dmworker.WithSource(dmworker.SourceConfig{Name: name, Upstream: up}),
			dmworker.WithShardGroup(g))
		if err != nil {
			log.Fatal(err)
		}
		if err := w.StartSubTask(task); err != nil {
			log.Fatal(err)
		}
		go func() { done <- w.Run(ctx) }()
	}
	// A held DDL shows in the group's status.
	for _, l := range g.Status() {
		fmt.Println(l.Target, l.Statement, "since", l.Since, "reached", l.Reached, "waiting for", l.Waiting)
	}
	for range sources {
		if err := <-done; err != nil {
			log.Print(err)
		}
	}
	if err := g.Err(); errors.Is(err, dmworker.ErrShardDDLConflict) {
		log.Print(err) // the shards and their statements
	}
}

// The mysqlsink Sink keeps a ShardGroup's lock state beside the
// checkpoints (dmworker_meta.shard_lock), so a process restarted in the
// middle of a lock resolves it by itself; a host can list what is stored.
// (Not run: it needs a server.)
func ExampleShardLockStore() {
	down, err := sql.Open("mysql", "root:secret@tcp(127.0.0.1:4000)/")
	if err != nil {
		log.Fatal(err)
	}
	sink, err := mysqlsink.New(down)
	if err != nil {
		log.Fatal(err)
	}
	var store dmworker.ShardLockStore = sink
	locks, err := store.LoadShardLocks(context.Background(), "orders")
	if err != nil {
		log.Fatal(err)
	}
	for target, state := range locks {
		fmt.Println(target, len(state), "bytes of lock state")
	}
}

// Two processes share the merge of three sources through etcd: this one
// runs shard-a and shard-b, another runs shard-c with the same call. (Not
// run: it needs servers.)
func ExampleNewEtcdShardGroup() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	g, err := dmworker.NewEtcdShardGroup(ctx, cli, "/dmworker/", "orders", "shard-a", "shard-b", "shard-c")
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close() // after the workers stop
	down, err := sql.Open("mysql", "root:secret@tcp(127.0.0.1:4000)/")
	if err != nil {
		log.Fatal(err)
	}
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return mysqlsink.New(down)
	}
	task := dmworker.SubTaskConfig{Name: "orders", ShardMode: dmworker.ShardPessimistic,
		Routes: []dmworker.RouteRule{{SchemaPattern: "shop", TablePattern: "orders_*", TargetSchema: "merged", TargetTable: "orders"}}}
	done := make(chan error, 2)
	for _, name := range []string{"shard-a", "shard-b"} { // this process's sources
		up, err := streamer.ParseUpstream("repl:secret@" + name + ":3306")
		if err != nil {
			log.Fatal(err)
		}
		w, err := dmworker.NewSourceWorker("worker-"+name, sinks,
			dmworker.WithSource(dmworker.SourceConfig{Name: name, Upstream: up}), dmworker.WithShardGroup(g))
		if err != nil {
			log.Fatal(err)
		}
		if err := w.StartSubTask(task); err != nil {
			log.Fatal(err)
		}
		go func() { done <- w.Run(ctx) }()
	}
	for range 2 {
		if err := <-done; err != nil {
			log.Print(err)
		}
	}
}
