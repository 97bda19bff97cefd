package dmworker_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/dmworker/dmworker"
)

// TestShardMergeOptimisticDownstreamColumn: the group of a task that
// starts again knows, through the sink (mysqlsink is a TableDefiner), a
// column only the downstream table has: a shard adding it with another
// type stops with a ShardIncompatibleDDLError rather than adding it
// twice; another adding it as the downstream has it runs nothing
// downstream and goes on with its rows.
func TestShardMergeOptimisticDownstreamColumn(t *testing.T) {
	noLeaks(t)
	f := newShardFleet(t, 2, 1830)
	names := []string{sourceName(0), sourceName(1)}
	g, err := dmworker.NewShardGroup("merge", names...)
	if err != nil {
		t.Fatal(err)
	}
	workers, stop := optWorkers(t, f, g)
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
	// A column added downstream by hand, which no shard has.
	mustExec(t, f.downdb, "ALTER TABLE merged.orders ADD COLUMN kept VARCHAR(10) NULL")

	// The process starts again: a new group.
	stop()
	if g, err = dmworker.NewShardGroup("merge", names...); err != nil {
		t.Fatal(err)
	}
	workers, _ = optWorkers(t, f, g)
	mustExec(t, f.updbs[0], "ALTER TABLE shop.orders_01 ADD COLUMN kept INT NULL")
	mustExec(t, f.updbs[0], "INSERT INTO shop.orders_01 (id, customer, kept) VALUES (901, 'k', 7)")
	st := waitStage(t, taskStatus(workers[0], "merge"), dmworker.SubTaskPaused)
	var ie *dmworker.ShardIncompatibleDDLError
	var se *dmworker.SyncError
	if !errors.As(st.LastError, &ie) || !errors.As(st.LastError, &se) || ie.Target != "merged.orders" ||
		ie.Shard != (dmworker.ShardRef{Source: "src1", Table: "shop.orders_01"}) {
		t.Fatalf("%s: %v, want a ShardIncompatibleDDLError", workers[0].Name(), st.LastError)
	}
	t.Log(st.LastError)
	// Another shard adding it as the downstream has it runs nothing
	// downstream and goes on, its rows with the column.
	mustExec(t, f.updbs[1], "ALTER TABLE shop.orders_02 ADD COLUMN kept VARCHAR(10) NULL")
	mustExec(t, f.updbs[1], "INSERT INTO shop.orders_02 (id, customer, kept) VALUES (902, 'l', 'x')")
	mustExec(t, f.updbs[1], "INSERT INTO shop.orders_01 (id, customer) VALUES (903, 'm')")
	waitWorkerSynced(t, workers[1], "merge", f.ups[1])
	if cs := columnNames(t, shardColumns(t, f.downdb, "merged", "orders")); !slices.Equal(cs, []string{"id", "customer", "amount", "note", "kept"}) {
		t.Fatalf("downstream columns %q", cs)
	}
	want := tableRows(t, f.updbs[1], "(SELECT id, customer, NULL AS kept FROM shop.orders_01 UNION ALL SELECT id, customer, kept FROM shop.orders_02) x")
	got := tableRows(t, f.downdb, "(SELECT id, customer, kept FROM merged.orders WHERE id BETWEEN 100 AND 199 OR id IN (902, 903)) x")
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has src2's rows\n%q\nwant\n%q", got, want)
	}
	// src1 stays stopped before the DDL (its row with kept is not there).
	if st := taskStatus(workers[0], "merge")(); st.Stage != dmworker.SubTaskPaused || !errors.As(st.LastError, &ie) {
		t.Fatalf("%s: %s %v", workers[0].Name(), st.Stage, st.LastError)
	}
}
