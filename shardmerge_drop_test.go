package dmworker_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
)

// TestShardMergeOptimisticDropTruncate: in optimistic shard mode the DROP
// TABLE of one shard table leaves the merged table downstream with every
// row in it; the TRUNCATE TABLE of a shard table, which would empty the
// merged table of the other shards' rows, stops that shard's subtask with
// ErrUnsupportedDDL naming both tables, and goes on once skipped.
func TestShardMergeOptimisticDropTruncate(t *testing.T) {
	noLeaks(t)
	f := newShardFleet(t, 2, 1850)
	g, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1))
	if err != nil {
		t.Fatal(err)
	}
	workers, _ := optWorkers(t, f, g)
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for i, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for j, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
			mustExec(t, db, "INSERT INTO shop."+tb+" (id, customer) VALUES (?, 'a'), (?, 'b')", i*100+j*10+1, i*100+j*10+2)
		}
	}
	for i, w := range workers {
		waitWorkerSynced(t, w, "merge", f.ups[i])
	}
	all := func() []string {
		var rows []string
		for _, db := range f.updbs {
			rows = append(rows, tableRows(t, db, "(SELECT id, customer FROM shop.orders_01 UNION ALL SELECT id, customer FROM shop.orders_02) x")...)
		}
		slices.Sort(rows)
		return rows
	}
	before := all()
	if len(before) != 8 {
		t.Fatalf("upstream rows %q: want 8", before)
	}

	// src1 drops a shard table: the merged table keeps every row.
	mustExec(t, f.updbs[0], "DROP TABLE shop.orders_01")
	mustExec(t, f.updbs[0], "INSERT INTO shop.orders_02 (id, customer) VALUES (13, 'c')")
	waitWorkerSynced(t, workers[0], "merge", f.ups[0])
	got := tableRows(t, f.downdb, "(SELECT id, customer FROM merged.orders) x")
	slices.Sort(got)
	want := append(slices.Clone(before), `"13"|"c"`)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after src1's DROP TABLE merged.orders holds\n%q\nwant\n%q", got, want)
	}

	// src2 truncates a shard table: its subtask stops before it, and the
	// merged table keeps every row.
	mustExec(t, f.updbs[1], "TRUNCATE TABLE shop.orders_02")
	status := taskStatus(workers[1], "merge")
	st := waitStage(t, status, dmworker.SubTaskPaused)
	var se *dmworker.SyncError
	if !errors.Is(st.LastError, dmworker.ErrUnsupportedDDL) || !errors.As(st.LastError, &se) {
		t.Fatalf("%s paused with %v, want ErrUnsupportedDDL in a SyncError", workers[1].Name(), st.LastError)
	}
	for _, name := range []string{"shop.orders_02", "merged.orders"} {
		if !strings.Contains(st.LastError.Error(), name) {
			t.Fatalf("the error %q does not name %s", st.LastError, name)
		}
	}
	got = tableRows(t, f.downdb, "(SELECT id, customer FROM merged.orders) x")
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("after src2's TRUNCATE merged.orders holds\n%q\nwant\n%q", got, want)
	}
	// Skipped, it goes on; the truncated shard's rows stay downstream.
	if err := workers[1].SkipSubTaskDDL("merge", se.Pos); err != nil {
		t.Fatal(err)
	}
	if err := workers[1].ResumeSubTask("merge"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, f.updbs[1], "INSERT INTO shop.orders_02 (id, customer) VALUES (113, 'd')")
	waitWorkerSynced(t, workers[1], "merge", f.ups[1])
	got = tableRows(t, f.downdb, "(SELECT id, customer FROM merged.orders) x")
	slices.Sort(got)
	want = append(want, `"113"|"d"`)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after the skip merged.orders holds\n%q\nwant\n%q", got, want)
	}
}

// TestShardMergePessimisticTruncate: in pessimistic shard mode the
// TRUNCATE TABLE of a shard table, which would empty the merged table of
// the other shards' rows, stops that shard's subtask with
// ErrUnsupportedDDL naming both tables, the merged table keeping every
// row; skipped (SkipSubTaskDDL) and resumed, the subtask goes on and the
// merged table holds every row written since too.
func TestShardMergePessimisticTruncate(t *testing.T) {
	noLeaks(t)
	f := newShardFleet(t, 2, 1860)
	g, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1))
	if err != nil {
		t.Fatal(err)
	}
	var workers []*dmworker.SourceWorker
	for i := range f.ups {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(f.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(g))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: dmworker.ShardPessimistic}); err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		workers = append(workers, w)
	}
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for i, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for j, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
			mustExec(t, db, "INSERT INTO shop."+tb+" (id, customer) VALUES (?, 'a'), (?, 'b')", i*100+j*10+1, i*100+j*10+2)
		}
	}
	for i, w := range workers {
		waitWorkerSynced(t, w, "merge", f.ups[i])
	}
	merged := func() []string {
		rows := tableRows(t, f.downdb, "(SELECT id, customer FROM merged.orders) x")
		slices.Sort(rows)
		return rows
	}
	want := merged()
	if len(want) != 8 {
		t.Fatalf("merged rows %q: want 8", want)
	}
	mustExec(t, f.updbs[1], "TRUNCATE TABLE shop.orders_02")
	st := waitStage(t, taskStatus(workers[1], "merge"), dmworker.SubTaskPaused)
	var se *dmworker.SyncError
	if !errors.Is(st.LastError, dmworker.ErrUnsupportedDDL) || !errors.As(st.LastError, &se) {
		t.Fatalf("%s paused with %v, want ErrUnsupportedDDL in a SyncError", workers[1].Name(), st.LastError)
	}
	for _, name := range []string{"shop.orders_02", "merged.orders"} {
		if !strings.Contains(st.LastError.Error(), name) {
			t.Fatalf("the error %q does not name %s", st.LastError, name)
		}
	}
	// src1 goes on meanwhile.
	mustExec(t, f.updbs[0], "INSERT INTO shop.orders_01 (id, customer) VALUES (21, 'c')")
	waitWorkerSynced(t, workers[0], "merge", f.ups[0])
	want = append(want, `"21"|"c"`)
	slices.Sort(want)
	if got := merged(); !slices.Equal(got, want) {
		t.Fatalf("after src2's TRUNCATE merged.orders holds\n%q\nwant\n%q", got, want)
	}
	if err := workers[1].SkipSubTaskDDL("merge", se.Pos); err != nil {
		t.Fatal(err)
	}
	if err := workers[1].ResumeSubTask("merge"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, f.updbs[1], "INSERT INTO shop.orders_02 (id, customer) VALUES (113, 'd')")
	waitWorkerSynced(t, workers[1], "merge", f.ups[1])
	want = append(want, `"113"|"d"`)
	slices.Sort(want)
	if got := merged(); !slices.Equal(got, want) {
		t.Fatalf("after the skip merged.orders holds\n%q\nwant\n%q", got, want)
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks left: %+v", st)
	}
}
