package dmworker_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// optRemoveDef is shardOrdersDef with a nullable column memo, which src1
// and src2 drop.
const optRemoveDef = "(id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2), note TEXT, memo VARCHAR(20) NULL)"

// optRemoveHeld runs, on the three upstreams of f (whose subtasks "merge"
// run in optimistic shard mode, workerOf(i) the worker of upstream i),
// the part before a source is removed: shard tables under a write load,
// then src1 and src2 drop column memo on both their shard tables while
// src3 still has it, so that the drop is held back (status, a group's
// Status, shows it reached by src1's and src2's shards and waiting for
// src3), and src1 and src2 write rows without memo. It ends with src3's
// subtask stopped.
func optRemoveHeld(t *testing.T, f *shardFleet, workerOf func(i int) *dmworker.SourceWorker, status func() []dmworker.ShardLockStatus) {
	t.Helper()
	for i := range f.ups {
		w := workerOf(i)
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+optRemoveDef)
		}
	}
	load := func(ups []int, phase int64, n int) {
		var wg sync.WaitGroup
		for _, i := range ups {
			for j, tb := range shardTables {
				wg.Add(1)
				go func() {
					defer wg.Done()
					shardLoad(t, f.updbs[i], tb, int64(i*10+j+1)*1_000_000+phase*300_000, n, nil)
				}()
			}
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for _, i := range ups {
			waitWorkerSynced(t, workerOf(i), "merge", f.ups[i])
		}
	}
	load([]int{0, 1, 2}, 0, 60)
	for _, i := range []int{0, 1} {
		for _, tb := range shardTables {
			mustExec(t, f.updbs[i], "ALTER TABLE shop."+tb+" DROP COLUMN memo")
		}
	}
	waitUntil(t, "the drop held back for src3", func() bool {
		st := status()
		return len(st) == 1 && st[0].Mode == dmworker.ShardOptimistic && st[0].Target == "merged.orders" &&
			strings.Contains(st[0].Statement, "DROP COLUMN `memo`") && len(st[0].Reached) == 4 && slices.Equal(st[0].Waiting, []string{"src3"})
	})
	load([]int{0, 1}, 1, 40)
	if cs := columnNames(t, shardColumns(t, f.downdb, "merged", "orders")); !slices.Contains(cs, "memo") {
		t.Fatalf("memo dropped downstream while src3 still has it: %q", cs)
	}
	if err := workerOf(2).StopSubTask("merge"); err != nil {
		t.Fatal(err)
	}
}

// optRemoveApplied waits, after src3 was taken out of the group, for the
// drop held back to be applied downstream (no further DDL runs) and no
// lock to be left, then checks the downstream rows: those of every shard
// of the three upstreams (src3's, written before it was removed, stay),
// as the columns left. src1 and src2 write on and the rows follow.
func optRemoveApplied(t *testing.T, f *shardFleet, workerOf func(i int) *dmworker.SourceWorker, status func() []dmworker.ShardLockStatus) {
	t.Helper()
	waitUntil(t, "memo dropped downstream", func() bool {
		return !slices.Contains(columnNames(t, shardColumns(t, f.downdb, "merged", "orders")), "memo")
	})
	waitUntil(t, "no lock left", func() bool { return len(status()) == 0 })
	check := func(what string) {
		for _, i := range []int{0, 1} {
			waitWorkerSynced(t, workerOf(i), "merge", f.ups[i])
		}
		var want []string
		for _, db := range f.updbs {
			for _, tb := range shardTables {
				want = append(want, tableRows(t, db, "(SELECT id, customer, amount, note FROM shop."+tb+") x")...)
			}
		}
		slices.Sort(want)
		got := tableRows(t, f.downdb, "merged.orders")
		if !slices.Equal(want, got) {
			t.Fatalf("%s: merged.orders has %d rows, the shards of src1, src2 and src3 (as it was removed) %d; they differ: %s",
				what, len(got), len(want), rowDiff(want, got))
		}
		t.Logf("%s: %d rows", what, len(got))
	}
	check("drop applied")
	for _, i := range []int{0, 1} {
		for j, tb := range shardTables {
			shardLoad(t, f.updbs[i], tb, int64(i*10+j+1)*1_000_000+2*300_000, 20, nil)
		}
	}
	check("after more writes")
	if cs, want := shardColumns(t, f.downdb, "merged", "orders"), shardColumns(t, f.updbs[0], "shop", "orders_01"); !slices.Equal(cs, want) {
		t.Fatalf("downstream schema %q, src1's shards' %q", cs, want)
	}
}

// TestShardGroupOptimisticRemoveSource: three sources in one process in
// optimistic shard mode; src1 and src2 drop a column src3 still has, so
// the drop is held back waiting for src3. src3's subtask is stopped and
// RemoveSource takes it out of the group: the drop is applied downstream
// by itself (no other DDL runs), Status shows no lock, and the downstream
// holds the shards' rows, src3's written before included. src3 is no
// longer one of the group's sources.
func TestShardGroupOptimisticRemoveSource(t *testing.T) {
	noLeaks(t)
	f := newShardFleet(t, 3, 1910)
	g, err := dmworker.NewShardGroup("merge", "src1", "src2", "src3")
	if err != nil {
		t.Fatal(err)
	}
	workers, _ := optWorkers(t, f, g)
	workerOf := func(i int) *dmworker.SourceWorker { return workers[i] }
	optRemoveHeld(t, f, workerOf, g.Status)
	if err := g.RemoveSource("src3"); err != nil {
		t.Fatal(err)
	}
	optRemoveApplied(t, f, workerOf, g.Status)
	if s := g.Sources(); !slices.Equal(s, []string{"src1", "src2"}) {
		t.Fatalf("sources %q after src3 removed", s)
	}
	if err := g.RemoveSource("src3"); err == nil {
		t.Fatal("src3 removed twice")
	}
	// src3's subtask started again is refused.
	err = workers[2].StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: dmworker.ShardOptimistic})
	if err == nil || !strings.Contains(err.Error(), "source src3 is not one of the shard group's sources") {
		t.Fatalf("src3's subtask started after its removal: %v", err)
	}
}

// TestShardMergeOptimisticEtcdRemoveSource: TestShardGroupOptimisticRemoveSource
// with the sources in two processes coordinating through etcd (src1 and
// src2, src3). Each process calls RemoveSourceContext: src3's process
// first, which takes src3's shard tables out of the target's state in etcd
// and deletes its registration (the drop is not applied yet: src1's and
// src2's process still counts src3); then src1's and src2's, whose syncers
// then apply the drop by themselves. etcd holds nothing of src3 after.
func TestShardMergeOptimisticEtcdRemoveSource(t *testing.T) {
	noLeaks(t)
	f := newShardFleet(t, 3, 1920)
	e := testserver.StartEtcd(t)
	procs := startOptProcs(t, e, f)
	workerOf := func(i int) *dmworker.SourceWorker {
		if i < 2 {
			return procs[0].workers[i]
		}
		return procs[1].workers[0]
	}
	optRemoveHeld(t, f, workerOf, procs[0].g.Status)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := procs[1].g.RemoveSourceContext(ctx, "src3"); err != nil {
		t.Fatal(err)
	}
	resp, err := procs[0].cli.Get(ctx, testPrefix+"shardoptreg/merge/src3")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("src3's registration after its removal: %v, %v", resp, err)
	}
	resp, err = procs[0].cli.Get(ctx, testPrefix+"shardopt/merge/merged.orders")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the target's state: %v, %v", resp, err)
	}
	if v := string(resp.Kvs[0].Value); strings.Contains(v, `"Source":"src3"`) || !strings.Contains(v, `"Source":"src1"`) {
		t.Fatalf("the target's state after src3's removal: %s", v)
	}
	// Nothing in src1's and src2's process settles before its own call.
	if cs := columnNames(t, shardColumns(t, f.downdb, "merged", "orders")); !slices.Contains(cs, "memo") {
		t.Fatalf("memo dropped downstream before src1's and src2's process removed src3: %q", cs)
	}
	if err := procs[0].g.RemoveSourceContext(ctx, "src3"); err != nil {
		t.Fatal(err)
	}
	optRemoveApplied(t, f, workerOf, procs[0].g.Status)
	if st := procs[1].g.Status(); len(st) != 0 {
		t.Fatalf("src3's process shows locks: %+v", st)
	}
	resp, err = procs[0].cli.Get(ctx, testPrefix+"shardopt/merge/merged.orders")
	if err != nil || len(resp.Kvs) != 1 || strings.Contains(string(resp.Kvs[0].Value), "pending") {
		t.Fatalf("the target's state at the end: %v, %v", resp, err)
	}
}
