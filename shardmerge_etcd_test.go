package dmworker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestShardMergePessimisticEtcd is TestShardMergePessimistic's DDL
// sequence (plus adding and dropping a column) with the three sources in
// two "processes": src1 and src2 under one ShardGroup, src3 under
// another, each made by NewEtcdShardGroup with its own client of one
// etcd. Under a write load on every shard, each shard DDL reaches the
// downstream table once, and the downstream rows and schema end equal to
// the shards'.
func TestShardMergePessimisticEtcd(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 570)
	e := testserver.StartEtcd(t)
	var names []string
	for i := range n {
		names = append(names, sourceName(i))
	}
	ctx := context.Background()
	var groups []*dmworker.ShardGroup
	for range 2 {
		g, err := dmworker.NewEtcdShardGroup(ctx, e.NewClient(t), testPrefix, "merge", names...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := g.Close(); err != nil {
				t.Errorf("close the shard group: %v", err)
			}
		})
		groups = append(groups, g)
	}
	groupOf := []*dmworker.ShardGroup{groups[0], groups[0], groups[1]}
	workers := make([]*dmworker.SourceWorker, n)
	for i := range workers {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(f.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(groupOf[i]), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: dmworker.ShardPessimistic,
			SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}}); err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		workers[i] = w
	}
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, db := range f.updbs {
		for j, tb := range shardTables {
			wg.Add(1)
			go func() {
				defer wg.Done()
				shardLoad(t, db, tb, int64(i*10+j+1)*1_000_000, 1_000_000, stop)
			}()
		}
	}
	ddls := []string{
		"ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'",
		"ALTER TABLE shop.%s ADD INDEX idx_customer (customer)",
		"ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL",
		"ALTER TABLE shop.%s ADD COLUMN legacy INT NULL",
		"ALTER TABLE shop.%s DROP COLUMN legacy",
	}
	rng := rand.New(rand.NewPCG(570, 1))
	for k, ddl := range ddls {
		type shard struct{ i, j int }
		var order []shard
		for i := range n {
			for j := range shardTables {
				order = append(order, shard{i, j})
			}
		}
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for x, sh := range order {
			time.Sleep(time.Duration(20+rng.IntN(120)) * time.Millisecond)
			mustExec(t, f.updbs[sh.i], fmt.Sprintf(ddl, shardTables[sh.j]))
			if k != 0 || x != 0 {
				continue
			}
			// The first lock shows in both processes, the reaching
			// source's arrival merged into the other's group.
			src := sourceName(sh.i)
			for gi, g := range groups {
				waitUntil(t, fmt.Sprintf("the first lock in group %d", gi), func() bool {
					st := g.Status()
					return len(st) == 1 && len(st[0].Reached) == 1 && st[0].Reached[0].Source == src && len(st[0].Waiting) == n-1
				})
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, w := range workers {
		waitWorkerSynced(t, w, "merge", f.ups[i])
	}
	for gi, g := range groups {
		if st := g.Status(); len(st) != 0 {
			t.Fatalf("group %d: locks left: %+v", gi, st)
		}
	}
	for _, w := range workers {
		if l := taskStatus(w, "merge")().ShardLocks; len(l) != 0 {
			t.Fatalf("%s shows locks: %+v", w.Name(), l)
		}
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ", len(got), len(want))
	}
	wantCols, gotCols := shardColumns(t, f.updbs[0], "shop", "orders_01"), shardColumns(t, f.downdb, "merged", "orders")
	if !slices.Equal(wantCols, gotCols) {
		t.Fatalf("downstream schema %q, the shards' %q", gotCols, wantCols)
	}
	var ddlsApplied int64
	for _, w := range workers {
		ddlsApplied += taskStatus(w, "merge")().Syncer.DDLs
	}
	// Each shard DDL once (by one process), plus each source's CREATE
	// DATABASE and CREATE TABLEs.
	if want := int64(len(ddls) + n*(1+len(shardTables))); ddlsApplied != want {
		t.Fatalf("%d DDL applied, want %d: the %d shard DDLs once and the creations", ddlsApplied, want, len(ddls))
	}
	resp, err := e.Client.Get(ctx, testPrefix+"shardowner/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("owner keys left: %v %v", resp, err)
	}
}
