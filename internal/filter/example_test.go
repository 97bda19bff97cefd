package filter_test

import (
	"fmt"

	"github.com/dmworker/dmworker/internal/filter"
)

func ExampleRouter() {
	r, err := filter.NewRouter([]filter.RouteRule{
		{SchemaPattern: "shard_*", TablePattern: "t_*", TargetSchema: "all", TargetTable: "t"},
		{SchemaPattern: "shard_*", TargetSchema: "all"},
	}, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Route("shard_1", "t_1"))
	fmt.Println(r.Route("shard_2", "t_7"))
	fmt.Println(r.Route("shard_2", "config"))
	fmt.Println(r.Route("other", "t_1"))
	// Output:
	// all t
	// all t
	// all config
	// other t_1
}

func ExampleEventFilter() {
	f, _ := filter.NewEventFilter([]filter.EventRule{
		{SchemaPattern: "test_*", TablePattern: "t_*", Events: []string{"truncate table", "drop table", "delete"}, Action: "Ignore"},
	}, false)
	for _, ev := range []string{"delete", "insert", "drop table"} {
		skip, _ := f.Skip("test_1", "t_1", ev, "")
		fmt.Println(ev, skip)
	}
	// Output:
	// delete true
	// insert false
	// drop table true
}

func ExampleBlockAllowList() {
	b, _ := filter.NewBlockAllowList(filter.BlockAllowRules{
		DoDBs:        []string{"shop", "~^shard_[0-9]+$"},
		IgnoreTables: []filter.Table{{Schema: "shop", Name: "*_log"}},
	})
	fmt.Println(b.Allowed("shop", "orders"), b.Allowed("shop", "access_log"), b.Allowed("shard_12", "t"), b.Allowed("mysql", "user"))
	// Output: true false true false
}
