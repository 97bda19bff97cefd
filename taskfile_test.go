package dmworker_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
)

// TestParseDMTaskExample: the example task and source files of
// examples/migrate read as documented.
func TestParseDMTaskExample(t *testing.T) {
	data, err := os.ReadFile("examples/migrate/task.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	task, err := dmworker.ParseDMTask(data)
	if err != nil {
		t.Fatal(err)
	}
	if task.Target.Host != "127.0.0.1" || task.Target.Port != 4000 || task.Target.User != "root" || task.Target.Password != "" {
		t.Errorf("target %+v", task.Target)
	}
	st, err := task.SubTask("")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "shop" || st.Source != "mysql-replica-01" || st.Mode != dmworker.ModeIncremental || !st.Start.IsZero() {
		t.Errorf("subtask %+v", st)
	}
	if f := st.Filter; len(f.DoDBs) != 1 || f.DoDBs[0] != "shop" || len(f.IgnoreTables) != 1 || f.IgnoreTables[0] != (dmworker.TablePattern{Schema: "shop", Name: "tmp_*"}) {
		t.Errorf("filter %+v", f)
	}
	if r := st.Routes; len(r) != 1 || r[0] != (dmworker.RouteRule{SchemaPattern: "shop", TablePattern: "orders_*", TargetSchema: "shop", TargetTable: "orders"}) {
		t.Errorf("routes %+v", r)
	}
	if e := st.EventFilters; len(e) != 1 || e[0].Action != "Ignore" || e[0].Events[0] != "delete" || e[0].TablePattern != "history" {
		t.Errorf("filters %+v", e)
	}
	if s := st.SyncerTuning; s.Workers != 16 || s.BatchSize != 100 || s.SafeMode || s.Compact || s.CheckpointInterval != dmworker.Duration(time.Second) {
		t.Errorf("syncer %+v", s)
	}
	if !st.NoCompact {
		t.Errorf("the example's compact: false reads as NoCompact %v, want true", st.NoCompact)
	}
	if _, err := task.SubTask("other"); err == nil || !strings.Contains(err.Error(), "no source \"other\"") {
		t.Errorf("SubTask(other): %v", err)
	}

	data, err = os.ReadFile("examples/migrate/source.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := dmworker.ParseDMSource(data)
	if err != nil {
		t.Fatal(err)
	}
	if src.Name != "mysql-replica-01" || src.Upstream.Host != "127.0.0.1" || src.Upstream.Port != 3306 || src.Upstream.User != "repl" || src.EnableRelay {
		t.Errorf("source %+v", src)
	}
}

// TestParseDMTaskErrors: what the files may say and how a mistake or a
// feature dmworker does not have is reported.
func TestParseDMTaskErrors(t *testing.T) {
	const base = `
name: t
task-mode: all
target-database: {host: down, port: 4000, user: root, password: pw}
mysql-instances:
  - source-id: s1
    meta: {binlog-name: mysql-bin.000002, binlog-pos: 120, binlog-gtid: "0-1-5"}
    black-white-list: bw
    syncer-config-name: g
    syncer-thread: 4
  - source-id: s2
    meta: {binlog-gtid: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"}
black-white-list:
  bw: {do-tables: [{db-name: a, tbl-name: "t*"}]}
syncers:
  g: {worker-count: 8, batch: 50, safe-mode: true, compact: true}
`
	task, err := dmworker.ParseDMTask([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := task.SubTasks[0], task.SubTasks[1]
	if s1.Mode != dmworker.ModeAll || s1.Start.Name != "mysql-bin.000002" || s1.Start.Offset != 120 || s1.Start.GTIDSet.String() != "0-1-5" ||
		s1.Workers != 4 || s1.BatchSize != 50 || !s1.SafeMode || !s1.Compact || s1.Filter.DoTables[0].Name != "t*" || task.Target.Password != "pw" {
		t.Errorf("s1 %+v", s1)
	}
	if s2.Start.Flavor != "mysql" || s2.Start.Name != "" || s2.Workers != 0 {
		t.Errorf("s2 %+v", s2)
	}
	if s1.NoCompact || s2.Compact || s2.NoCompact {
		t.Errorf("compact: true gives NoCompact %v; no syncer config gives Compact %v, NoCompact %v: want false, false, false (the default)", s1.NoCompact, s2.Compact, s2.NoCompact)
	}
	if task, err := dmworker.ParseDMTask([]byte(base + "shard-mode: pessimistic\n")); err != nil ||
		task.SubTasks[0].ShardMode != dmworker.ShardPessimistic || task.SubTasks[1].ShardMode != dmworker.ShardPessimistic {
		t.Errorf("shard-mode pessimistic: %+v, %v", task.SubTasks, err)
	}
	if task, err := dmworker.ParseDMTask([]byte(base + "shard-mode: optimistic\n")); err != nil ||
		task.SubTasks[0].ShardMode != dmworker.ShardOptimistic || task.SubTasks[1].ShardMode != dmworker.ShardOptimistic {
		t.Errorf("shard-mode optimistic: %+v, %v", task.SubTasks, err)
	}
	if !s1.OnlineDDLEnabled() || s1.ShadowTableRules != nil {
		t.Errorf("s1 online DDL: %+v, want on with the default rules", s1.OnlineDDLConfig)
	}
	online, err := dmworker.ParseDMTask([]byte(base + "online-ddl: false\nshadow-table-rules: ['^_(.+)_shadow$']\ntrash-table-rules: ['^_(.+)_trash$']\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range online.SubTasks {
		if sub.OnlineDDLEnabled() || len(sub.ShadowTableRules) != 1 || sub.ShadowTableRules[0] != "^_(.+)_shadow$" || sub.TrashTableRules[0] != "^_(.+)_trash$" {
			t.Errorf("online-ddl keys: %+v", sub.OnlineDDLConfig)
		}
	}
	if online, err = dmworker.ParseDMTask([]byte(base + "online-ddl-scheme: gh-ost\n")); err != nil || !online.SubTasks[0].OnlineDDLEnabled() {
		t.Errorf("online-ddl-scheme gh-ost: %v", err)
	}
	if _, err := task.SubTask(""); err == nil || !strings.Contains(err.Error(), "s1, s2") {
		t.Errorf("SubTask of two: %v", err)
	}
	for _, c := range []struct {
		yaml, want string
		feature    bool
	}{
		{base + "bogus: 1\n", `unknown field "bogus"`, false},
		{base + "is-sharding: true\n", `"is-sharding"`, true},
		{base + "shard-mode: bogus\n", `"shard-mode"`, false},
		{base + "mydumpers: {}\n", `"mydumpers"`, true},
		{strings.Replace(base, "syncer-thread: 4", "mydumper-thread: 4", 1), `mysql-instances: "mydumper-thread"`, true},
		{strings.Replace(base, "compact: true", "compact: true, multiple-rows: true", 1), `syncers: "multiple-rows"`, true},
		{strings.Replace(base, "password: pw", "password: pw, session: {}", 1), `target-database: "session"`, true},
		{strings.Replace(base, "task-mode: all", "task-mode: dump", 1), `task-mode "dump"`, true},
		{strings.Replace(base, "task-mode: all", "task-mode: fast", 1), "want full, incremental or all", false},
		{strings.Replace(base, "syncer-config-name: g", "syncer-config-name: h", 1), `syncer config "h" is not defined`, false},
		{strings.Replace(base, "black-white-list: bw\n", "route-rules: [r]\n", 1), `route rule "r" is not defined`, false},
		{strings.Replace(base, "source-id: s2", "source-id: s1", 1), "appears twice", false},
		{strings.Replace(base, `"0-1-5"`, `"x"`, 1), "binlog-gtid", false},
		{"name: t\n", "target-database is required", false},
		{base + "online-ddl-scheme: osc\n", "none of gh-ost, pt", false},
	} {
		_, err := dmworker.ParseDMTask([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, dmworker.ErrDMFeature) != c.feature {
			t.Errorf("error %v, want %q (a DM feature: %v)", err, c.want, c.feature)
		}
	}

	const src = "source-id: s\nfrom: {host: h, user: u, password: p}\nenable-relay: true\nrelay-binlog-name: mysql-bin.000003\npurge: {interval: 60, expires: 2}\n"
	sc, err := dmworker.ParseDMSource([]byte(src))
	if err != nil || !sc.EnableRelay || sc.RelayStart.Name != "mysql-bin.000003" || sc.PurgeInterval != dmworker.Duration(time.Minute) ||
		sc.PurgeExpires != dmworker.Duration(2*time.Hour) || sc.Upstream.Port != 3306 || sc.Upstream.Password != "p" {
		t.Errorf("source %+v, %v", sc, err)
	}
	for _, c := range []struct{ yaml, want string }{
		{src + "checker: {}\n", `"checker"`},
		{src + "nope: 1\n", `unknown field "nope"`},
		{"from: {host: h, user: u}\n", "source-id is required"},
	} {
		if _, err := dmworker.ParseDMSource([]byte(c.yaml)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("source error %v, want %q", err, c.want)
		}
	}
}

func ExampleParseDMTask() {
	task, err := dmworker.ParseDMTask([]byte(`
name: shop
task-mode: incremental
target-database: {host: 127.0.0.1, port: 4000, user: root}
mysql-instances:
  - source-id: replica-01
    meta: {binlog-name: mysql-bin.000003, binlog-pos: 4}
    block-allow-list: shop
    syncer-config-name: global
block-allow-list:
  shop: {do-dbs: [shop]}
syncers:
  global: {worker-count: 16, batch: 100}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	st, _ := task.SubTask("replica-01")
	fmt.Println(task.Target.Addr(), st.Name, st.Source, st.Mode, st.Start, st.Filter.DoDBs, st.Workers, st.BatchSize)
	_, err = dmworker.ParseDMTask([]byte("name: shop\nis-sharding: true\n"))
	fmt.Println(err)
	// Output:
	// 127.0.0.1:4000 shop replica-01 incremental mysql-bin.000003:4 [shop] 16 100
	// dmworker: task file: task: "is-sharding": a DM feature dmworker does not have
}
