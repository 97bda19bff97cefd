package dmworker

import (
	"context"
	"fmt"
	"testing"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// TestShardRunForgetsDroppedShards: a syncer's run in pessimistic shard
// mode keeps where each shard table last reached a step only while the
// table exists. Before, a run through 200 shard tables made, altered and
// dropped kept 200 places until it ended (a run lasts as long as the
// subtask runs without a pause: weeks).
func TestShardRunForgetsDroppedShards(t *testing.T) {
	ctx := context.Background()
	g, err := NewShardGroup("t", "src")
	if err != nil {
		t.Fatal(err)
	}
	cfg := SyncerConfig{ShardMode: ShardPessimistic,
		Routes: []RouteRule{{SchemaPattern: "s", TablePattern: "t*", TargetSchema: "m", TargetTable: "o"}}}
	s := applierSyncer(cfg, nil, &MemoryCheckpointStore{}, posAt(4))
	if s.rules, err = newRules(s.cfg); err != nil {
		t.Fatal(err)
	}
	s.shard = g
	r := &syncRun{s: s, tracker: schema.New(), w: &runWriter{s: s}}
	if _, err := r.tracker.Apply("", "CREATE DATABASE s"); err != nil {
		t.Fatal(err)
	}
	if err := r.shardBegin(ctx); err != nil {
		t.Fatal(err)
	}
	off := uint64(4)
	ddl := func(query string) {
		t.Helper()
		stmts, err := schema.Split("s", query)
		if err != nil || len(stmts) != 1 {
			t.Fatalf("%s: %v", query, err)
		}
		st := &stmts[0]
		if _, err := r.tracker.ApplyStmts(*st); err != nil {
			t.Fatal(err)
		}
		routed, err := st.Render(s.rules.route)
		if err != nil {
			t.Fatal(err)
		}
		off += 100
		d := &DDL{Schema: "m", Table: "o", Query: routed, Pos: posAt(off)}
		if err := r.shardDDL(ctx, &streamer.Event{Pos: posAt(off)}, st, nil, d, func() error { return nil }); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	for i := range 200 {
		ddl(fmt.Sprintf("CREATE TABLE s.t%d (id INT PRIMARY KEY)", i))
		ddl(fmt.Sprintf("ALTER TABLE s.t%d ADD COLUMN c%d INT", i, i))
		ddl(fmt.Sprintf("DROP TABLE s.t%d", i))
	}
	if n := len(r.sh.last); n != 0 {
		t.Fatalf("the run keeps the place of %d shard tables after 200 were made, altered and dropped", n)
	}
}
