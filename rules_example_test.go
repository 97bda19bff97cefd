package dmworker_test

import (
	"encoding/json"
	"fmt"
	"log"

	"github.com/dmworker/dmworker"
)

// A task's rules in DM's shapes: replicate the shop schema and the shard
// tables, merge the shards into all.t, and keep their truncations and drops
// from the downstream. They encode with DM's keys.
func ExampleBlockAllowList() {
	cfg := dmworker.SubTaskConfig{
		Name: "orders",
		Filter: dmworker.BlockAllowList{
			DoDBs:    []string{"shop", "shard_*"},
			DoTables: []dmworker.TablePattern{{Schema: "shop", Name: "*"}, {Schema: "shard_*", Name: "t_*"}},
		},
		EventFilters: []dmworker.EventFilterRule{{SchemaPattern: "shard_*", TablePattern: "t_*",
			Events: []string{"truncate table", "drop table"}, Action: dmworker.EventActionIgnore}},
		Routes: []dmworker.RouteRule{
			{SchemaPattern: "shard_*", TablePattern: "t_*", TargetSchema: "all", TargetTable: "t"},
			{SchemaPattern: "shard_*", TargetSchema: "all"},
		},
	}
	b, err := json.Marshal(cfg.Filter)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	b, _ = json.Marshal(cfg.EventFilters)
	fmt.Println(string(b))
	b, _ = json.Marshal(cfg.Routes[0])
	fmt.Println(string(b))
	// Output:
	// {"do-dbs":["shop","shard_*"],"do-tables":[{"db-name":"shop","tbl-name":"*"},{"db-name":"shard_*","tbl-name":"t_*"}]}
	// [{"schema-pattern":"shard_*","table-pattern":"t_*","events":["truncate table","drop table"],"action":"Ignore"}]
	// {"schema-pattern":"shard_*","table-pattern":"t_*","target-schema":"all","target-table":"t"}
}
