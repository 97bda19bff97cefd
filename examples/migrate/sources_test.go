package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestMigrateSeveralSources: three upstreams given as -from NAME=..., their
// shard tables routed into one downstream table, in pessimistic shard mode:
// rows written on every shard and a column added on each at its own moment
// reach the downstream, which ends with the union of the shards' rows and
// the column once; migrate exits 0 once all are idle.
func TestMigrateSeveralSources(t *testing.T) { migrateSeveralSources(t, "pessimistic", 520) }

// TestMigrateSeveralSourcesOptimistic: TestMigrateSeveralSources in
// optimistic shard mode (the column reaches the downstream with the first
// shard that adds it).
func TestMigrateSeveralSourcesOptimistic(t *testing.T) { migrateSeveralSources(t, "optimistic", 564) }

// migrateSeveralSources runs TestMigrateSeveralSources in a shard mode,
// with servers base to base+3.
func migrateSeveralSources(t *testing.T, mode string, base uint32) {
	var ups []*testserver.MariaDB
	for i := range 3 {
		ups = append(ups, testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: base + uint32(i)}))
	}
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: base + 3})
	args := []string{"-to", fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr()),
		"-task", "shards", "-route", "shop.orders_*:merged.orders,shop:merged", "-shard-mode", mode,
		"-exit-when-idle", "2s", "-workers", "1"}
	for i, up := range ups {
		args = append(args, "-from", fmt.Sprintf("s%d=%s:%s@%s", i+1, up.User, up.Password, up.Addr()))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	hctx, release := cli.HoldIdle(ctx)
	defer release()
	go func() { done <- run(hctx, args, &stdout, &stderr) }()
	// Write once every source has taken its start position (the upstream's
	// position then): "pos=(none)" is printed before.
	started := func() bool {
		for i := range ups {
			if !strings.Contains(stdout.String(), fmt.Sprintf("source=s%d pos=mysql-bin", i+1)) {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(time.Minute); !started(); {
		if time.Now().After(deadline) {
			t.Fatalf("no progress after a minute:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, up := range ups {
		up.Exec(t, "CREATE DATABASE shop")
		for _, tb := range []string{"orders_01", "orders_02"} {
			up.Exec(t, "CREATE TABLE shop."+tb+" (id INT PRIMARY KEY, v VARCHAR(20))")
			for j := range 20 {
				up.Exec(t, "INSERT INTO shop."+tb+" VALUES (?, ?)", (i*10+len(tb))*1000+j+100*int(tb[len(tb)-1]-'0'), tb)
			}
		}
	}
	for _, tb := range []string{"orders_01", "orders_02"} {
		for i, up := range ups {
			up.Exec(t, "ALTER TABLE shop."+tb+" ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'")
			up.Exec(t, "INSERT INTO shop."+tb+" VALUES (?, 'after', 'us')", 900000+i*10+int(tb[len(tb)-1]-'0'))
		}
	}
	release()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var want, got []string
	for _, up := range ups {
		for _, tb := range []string{"orders_01", "orders_02"} {
			want = append(want, rowsText(t, up, "SELECT id, v, region FROM shop."+tb)...)
		}
	}
	got = rowsText(t, down, "SELECT id, v, region FROM merged.orders")
	if len(want) != 6*21 || strings.Join(sorted(want), ";") != strings.Join(sorted(got), ";") {
		t.Fatalf("downstream %d rows, shards %d; differ\nstdout:\n%s", len(got), len(want), stdout.String())
	}
	for i := range ups {
		if !strings.Contains(stdout.String(), fmt.Sprintf("source=s%d stopped at pos=", i+1)) {
			t.Fatalf("no final line for s%d:\n%s", i+1, stdout.String())
		}
	}
}

func rowsText(t *testing.T, m *testserver.MariaDB, q string) []string {
	t.Helper()
	rs, err := m.DB(t).Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var id int
		var v, r string
		if err := rs.Scan(&id, &v, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d|%s|%s", id, v, r))
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestParseSeveralSources: -from NAME=... once per source, alone or with a
// task file of several mysql-instances (each source's subtask is its
// instance, flags given overriding it), and the mistakes refused.
func TestParseSeveralSources(t *testing.T) {
	t.Setenv(envCredentialKey, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))) // for -etcd
	dir := t.TempDir()
	file := dir + "/task.yaml"
	const yaml = `
name: shards
task-mode: incremental
shard-mode: pessimistic
target-database: {host: 127.0.0.1, port: 4000, user: root}
mysql-instances:
  - source-id: a
    meta: {binlog-name: mysql-bin.000002, binlog-pos: 120}
    route-rules: [r]
  - source-id: b
    route-rules: [r]
    syncer-config-name: g
routes:
  r: {schema-pattern: shop, table-pattern: "orders_*", target-schema: merged, target-table: orders}
syncers:
  g: {worker-count: 2}
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cfg, err := parseArgs([]string{"-config", file, "-from", "a=u:p@127.0.0.1:1", "-from", "b=u:p@127.0.0.1:2", "-workers", "4"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.multi.tasks["a"], cfg.multi.tasks["b"]
	if len(cfg.multi.sources) != 2 || cfg.multi.shardMode != dmworker.ShardPessimistic ||
		a.Name != "shards" || a.Source != "a" || a.Start.Name != "mysql-bin.000002" || len(a.Routes) != 1 || a.Workers != 4 ||
		b.Source != "b" || b.Start.Name != "" || b.Workers != 4 || b.ShardMode != dmworker.ShardPessimistic ||
		cfg.multi.sources[1].Upstream.Port != 2 {
		t.Fatalf("sources %+v tasks %+v", cfg.multi.sources, cfg.multi.tasks)
	}
	to := []string{"-to", "u@127.0.0.1:3"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-config", file, "-from", "a=u:p@127.0.0.1:1"}, "mysql-instance b has no -from"},
		{[]string{"-config", file, "-from", "a=u:p@127.0.0.1:1", "-from", "b=u:p@127.0.0.1:2", "-from", "c=u:p@127.0.0.1:3"}, "no mysql-instance with source-id c"},
		{append([]string{"-from", "u:p@127.0.0.1:1", "-from", "u:p@127.0.0.1:2"}, to...), "need a name each"},
		{append([]string{"-from", "a=u:p@127.0.0.1:1", "-from", "u:p@127.0.0.1:2"}, to...), "give every upstream as NAME="},
		{append([]string{"-from", "a=u:p@127.0.0.1:1", "-from", "a=u:p@127.0.0.1:2"}, to...), "given twice"},
		{append([]string{"-from", "a=u@127.0.0.1:1", "-etcd", "127.0.0.1:2379"}, to...), "leave out -etcd"},
		{append([]string{"-from", "u:p@127.0.0.1:1", "-shard-mode", "pessimistic"}, to...), "-shard-mode needs several"},
		{append([]string{"-from", "u:p@127.0.0.1:1", "-shard-mode", "pessimistic", "-shard-sources", "a,b"}, to...), "-shard-sources is for -etcd"},
		{append([]string{"-from", "u:p@127.0.0.1:1", "-etcd", "127.0.0.1:2379", "-source", "a", "-shard-mode", "pessimistic"}, to...), "go together"},
		{append([]string{"-from", "u:p@127.0.0.1:1", "-etcd", "127.0.0.1:2379", "-source", "c", "-shard-mode", "optimistic", "-shard-sources", "a,b"}, to...), "not among them"},
	} {
		if _, err := parseArgs(c.args, &stderr); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
	// With -etcd, -shard-mode and -shard-sources name the task's sources.
	cfg, err = parseArgs(append([]string{"-from", "u:p@127.0.0.1:1", "-etcd", "127.0.0.1:2379", "-source", "b",
		"-shard-mode", "optimistic", "-shard-sources", "a,b"}, to...), &stderr)
	if err != nil || !slices.Equal(cfg.shardSources, []string{"a", "b"}) || cfg.task.ShardMode != dmworker.ShardOptimistic || len(cfg.multi.sources) != 0 {
		t.Fatalf("-etcd with -shard-sources: %v %q %q", err, cfg.shardSources, cfg.task.ShardMode)
	}
	// The single-source form is unchanged.
	if cfg, err := parseArgs(append([]string{"-from", "u:p@127.0.0.1:1"}, to...), &stderr); err != nil || len(cfg.multi.sources) != 0 || cfg.up.Port != 1 {
		t.Fatalf("single -from: %+v, %v", cfg.up, err)
	}
}

// TestMigrateShardEtcd: two upstreams, each the source of one migrate
// process of a cluster (-etcd, -source, -shard-sources s1,s2), their shard
// tables routed into one downstream table; run in both shard modes. Rows
// and a column added on every shard at its own moment reach the
// downstream once, coordinated through etcd: the lock (pessimistic) or
// the optimistic state of merged.orders is under /dmworker/ in etcd.
func TestMigrateShardEtcd(t *testing.T) {
	for i, mode := range []string{"pessimistic", "optimistic"} {
		t.Run(mode, func(t *testing.T) { migrateShardEtcd(t, mode, uint32(1870+10*i)) })
	}
}

func migrateShardEtcd(t *testing.T, mode string, base uint32) {
	var ups []*testserver.MariaDB
	for i := range 2 {
		ups = append(ups, testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: base + uint32(i)}))
	}
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: base + 2})
	e := testserver.StartEtcd(t)
	t.Setenv(envCredentialKey, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	hctx, release := cli.HoldIdle(ctx)
	defer release()
	type proc struct {
		stdout, stderr syncBuffer
		done           chan int
	}
	procs := make([]*proc, len(ups))
	for i, up := range ups {
		p := &proc{done: make(chan int, 1)}
		procs[i] = p
		args := []string{"-to", fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr()),
			"-from", fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr()), "-source", fmt.Sprintf("s%d", i+1),
			"-worker", fmt.Sprintf("w%d", i+1), "-etcd", strings.Join(e.Endpoints, ","), "-keepalive-ttl", "2s",
			"-task", "shards", "-route", "shop.orders_*:merged.orders,shop:merged", "-shard-mode", mode, "-shard-sources", "s1,s2",
			"-exit-when-idle", "2s", "-workers", "1"}
		go func() { p.done <- run(hctx, args, &p.stdout, &p.stderr) }()
	}
	// Every worker serves a source (the coordinator binds one to each).
	for i, p := range procs {
		waitOutput(t, &p.stdout, &p.stderr, fmt.Sprintf("worker=w%d pos=mysql-bin", i+1))
	}
	tables := []string{"orders_01", "orders_02"}
	for i, up := range ups {
		up.Exec(t, "CREATE DATABASE shop")
		for _, tb := range tables {
			up.Exec(t, "CREATE TABLE shop."+tb+" (id INT PRIMARY KEY, v VARCHAR(20))")
			for j := range 20 {
				up.Exec(t, "INSERT INTO shop."+tb+" VALUES (?, ?)", i*10000+int(tb[len(tb)-1]-'0')*1000+j, tb)
			}
		}
	}
	for _, tb := range tables {
		for i, up := range ups {
			up.Exec(t, "ALTER TABLE shop."+tb+" ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'")
			up.Exec(t, "INSERT INTO shop."+tb+" VALUES (?, 'after', 'us')", 900000+i*10+int(tb[len(tb)-1]-'0'))
		}
	}
	// Coordinated through etcd: the group's key of merged.orders.
	key := map[string]string{"pessimistic": "/dmworker/shardlock/shards/merged.orders", "optimistic": "/dmworker/shardopt/shards/merged.orders"}[mode]
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := e.Client.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), "region") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in etcd naming region: %v", key, resp.Kvs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	for i, p := range procs {
		if code := <-p.done; code != 0 {
			t.Fatalf("w%d: exit %d\nstdout:\n%s\nstderr:\n%s", i+1, code, p.stdout.String(), p.stderr.String())
		}
	}
	var want []string
	for _, up := range ups {
		for _, tb := range tables {
			want = append(want, rowsText(t, up, "SELECT id, v, region FROM shop."+tb)...)
		}
	}
	got := rowsText(t, down, "SELECT id, v, region FROM merged.orders")
	if len(want) != 4*21 || strings.Join(sorted(want), ";") != strings.Join(sorted(got), ";") {
		t.Fatalf("downstream %d rows, shards %d; differ\nstdout:\n%s\n%s", len(got), len(want), procs[0].stdout.String(), procs[1].stdout.String())
	}
}
