package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// Optimistic shard mode: two sharded upstreams merged into one table, each
// shard's compatible DDL applied as it comes. A subtask stopped by an
// incompatible DDL says why; here the operator decides the downstream
// needs nothing (a narrowing: the rows fit the wider column), skips the
// statement in that subtask and resumes it. (Not run: it needs servers.)
func ExampleShardIncompatibleDDLError() {
	down, err := sql.Open("mysql", "root:secret@tcp(127.0.0.1:4000)/")
	if err != nil {
		log.Fatal(err)
	}
	g, err := dmworker.NewShardGroup("orders", "shard-a", "shard-b")
	if err != nil {
		log.Fatal(err)
	}
	var tasks []*dmworker.SubTask
	for name, dsn := range map[string]string{"shard-a": "repl:secret@10.0.0.1:3306", "shard-b": "repl:secret@10.0.0.2:3306"} {
		up, err := streamer.ParseUpstream(dsn)
		if err != nil {
			log.Fatal(err)
		}
		sink, err := mysqlsink.New(down)
		if err != nil {
			log.Fatal(err)
		}
		st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{
			Name:      "orders",
			Source:    name,
			ShardMode: dmworker.ShardOptimistic,
			Routes: []dmworker.RouteRule{
				{SchemaPattern: "shop", TablePattern: "orders_*", TargetSchema: "merged", TargetTable: "orders"},
				{SchemaPattern: "shop", TargetSchema: "merged"},
			},
		}, up, sink, dmworker.WithShardGroup(g))
		if err != nil {
			log.Fatal(err)
		}
		go st.Run(context.Background())
		tasks = append(tasks, st)
	}
	// Drops some shards ran and others not yet.
	for _, l := range g.Status() {
		fmt.Println(l.Mode, l.Target, l.Statement, "waiting for", l.Waiting)
	}
	for _, st := range tasks {
		err := st.Status().LastError
		var ie *dmworker.ShardIncompatibleDDLError
		var se *dmworker.SyncError
		if !errors.As(err, &ie) || !errors.As(err, &se) {
			continue
		}
		fmt.Println(ie.Shard, ie.Statement, ie.Reason, ie.Others)
		st.Skip(se.Pos)
		if err := st.Resume(); err != nil {
			log.Print(err)
		}
	}
}
