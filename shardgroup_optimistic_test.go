package dmworker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// optWorkers runs one SourceWorker per upstream of f in optimistic shard
// mode with group g, each with subtask "merge"; stop closes them and
// checks their Run returned nil.
func optWorkers(t *testing.T, f *shardFleet, g *dmworker.ShardGroup) (workers []*dmworker.SourceWorker, stop func()) {
	t.Helper()
	var errcs []chan error
	for i := range f.ups {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(f.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(g))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: dmworker.ShardOptimistic,
			SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}}); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- w.Run(context.Background()) }()
		workers, errcs = append(workers, w), append(errcs, errc)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for i, w := range workers {
				w.Close()
				if err := <-errcs[i]; err != nil {
					t.Errorf("worker %s Run: %v", w.Name(), err)
				}
			}
		})
	}
	t.Cleanup(stop)
	return workers, stop
}

// optDDLs are the DDLs every shard table runs, in this order, each at its
// own moment; optDrop comes after them.
var optDDLs = []string{
	"ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'",
	"ALTER TABLE shop.%s ADD COLUMN memo VARCHAR(20) NULL",
	"ALTER TABLE shop.%s ADD INDEX idx_customer (customer)",
	"ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL",
}

const optDrop = "ALTER TABLE shop.%s DROP COLUMN memo"

// optUse writes the columns a shard table has gained: some rows of a
// shard with region move to another region, some with memo get one.
// Row by row, by key: the load's transactions lock rows too, and a
// statement that locks one row at a time cannot deadlock with them.
func optUse(t *testing.T, f *shardFleet, i int, table string, step int) {
	t.Helper()
	set := map[int]string{0: "region = 'us'", 1: "memo = CONCAT('m', id)"}[step]
	if set == "" {
		return
	}
	rows, err := f.updbs[i].Query(fmt.Sprintf("SELECT id FROM shop.%s WHERE id %% 5 = 0 ORDER BY id DESC LIMIT 20", table))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		mustExec(t, f.updbs[i], fmt.Sprintf("UPDATE shop.%s SET %s WHERE id = ?", table, set), id)
	}
}

// optExpected is the rows the downstream should hold, as columns cols
// (those of merged.orders): each shard's rows, with the columns it lacks
// at their defaults (region 'eu', memo NULL).
func optExpected(t *testing.T, f *shardFleet, cols []string) []string {
	t.Helper()
	defaults := map[string]string{"region": "'eu'", "memo": "NULL"}
	var all []string
	for _, db := range f.updbs {
		for _, tb := range shardTables {
			has := map[string]bool{}
			for _, c := range shardColumns(t, db, "shop", tb) {
				has[strings.Fields(c)[0]] = true
			}
			var sel []string
			for _, c := range cols {
				if has[c] {
					sel = append(sel, c)
				} else {
					sel = append(sel, defaults[c]+" AS "+c)
				}
			}
			all = append(all, tableRows(t, db, "(SELECT "+strings.Join(sel, ", ")+" FROM shop."+tb+") x")...)
		}
	}
	slices.Sort(all)
	return all
}

// columnNames are the names of a table's columns, in order.
func columnNames(t *testing.T, desc []string) []string {
	var out []string
	for _, d := range desc {
		if w := strings.Fields(d); w[0] != "index" {
			out = append(out, w[0])
		}
	}
	return out
}

// TestShardMergeOptimistic: three upstreams of two shard tables each merged
// into one downstream table in optimistic shard mode, under a write load on
// every shard. Each shard table runs, each at its own moment, a column
// added with a default, a nullable column, an index and a widened column,
// and writes the new columns. Midway (load paused, every source caught up)
// the downstream table has the union of the shards' columns and indexes
// and each shard's rows, with the columns that shard lacks at their
// defaults. Then the process "restarts" (new workers, new ShardGroup,
// resuming from the checkpoints), the shards finish their DDLs and drop a
// column at their own moments: the drop waits (Status shows it, with the
// sources still to run it) until the last shard has dropped it, across
// another restart while it waits. The
// downstream ends with the shards' schema and rows. Last, a narrowing DDL
// on one shard stops its subtask with a ShardIncompatibleDDLError while
// the other sources go on.
func TestShardMergeOptimistic(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 560)
	names := make([]string, n)
	for i := range names {
		names[i] = sourceName(i)
	}
	g, err := dmworker.NewShardGroup("merge", names...)
	if err != nil {
		t.Fatal(err)
	}
	workers, stop := optWorkers(t, f, g)
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	shards := allShards(n)
	load := func(phase int64) (stop func()) {
		ch := make(chan struct{})
		var wg sync.WaitGroup
		for _, sh := range shards {
			wg.Add(1)
			go func() {
				defer wg.Done()
				shardLoad(t, f.updbs[sh.i], shardTables[sh.j], int64(sh.i*10+sh.j+1)*1_000_000+phase*300_000, 1_000_000, ch)
			}()
		}
		return func() {
			close(ch)
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
		}
	}
	synced := func(ws []*dmworker.SourceWorker) {
		for i, w := range ws {
			waitWorkerSynced(t, w, "merge", f.ups[i])
		}
	}
	// A random interleaving of the shards' DDLs, each shard's in order;
	// the first half runs before the midway check.
	rng := rand.New(rand.NewPCG(560, 1))
	next := make([]int, len(shards))
	var schedule []int
	for len(schedule) < len(shards)*len(optDDLs) {
		k := rng.IntN(len(shards))
		if next[k] < len(optDDLs) {
			schedule = append(schedule, k)
			next[k]++
		}
	}
	done := make([]int, len(shards))
	run := func(steps []int) {
		for _, k := range steps {
			sh := shards[k]
			time.Sleep(time.Duration(10+rng.IntN(60)) * time.Millisecond)
			mustExec(t, f.updbs[sh.i], fmt.Sprintf(optDDLs[done[k]], shardTables[sh.j]))
			optUse(t, f, sh.i, shardTables[sh.j], done[k])
			done[k]++
		}
	}
	stopLoad := load(0)
	half := len(schedule) / 2
	run(schedule[:half])
	// The check means something: some shards have memo, some not.
	if lo, hi := slices.Min(done), slices.Max(done); lo >= 2 || hi < 2 {
		t.Fatalf("midway the shards have run %v of the DDLs: want some without memo and some with", done)
	}
	t.Logf("midway the shards have run %v of the DDLs", done)
	stopLoad()
	synced(workers)
	// Midway: the downstream has the union of the shards' columns and
	// indexes, and their rows with the defaults where they lack columns.
	// namesOf are a table's columns and indexes by name, and the customer
	// column's type.
	namesOf := func(desc []string) []string {
		var out []string
		for _, d := range desc {
			w := strings.Fields(d)
			if w[0] == "customer" {
				out = append(out, "customer "+w[1])
			}
			if k := w[0] + " " + w[1]; w[0] == "index" && !slices.Contains(out, k) {
				out = append(out, k)
			} else if w[0] != "index" && !slices.Contains(out, w[0]) {
				out = append(out, w[0])
			}
		}
		slices.Sort(out)
		return out
	}
	down := shardColumns(t, f.downdb, "merged", "orders")
	var union []string
	wide := false
	for _, db := range f.updbs {
		for _, tb := range shardTables {
			desc := shardColumns(t, db, "shop", tb)
			wide = wide || slices.Contains(desc, "customer varchar(80) NO NULL")
			for _, c := range namesOf(desc) {
				if !slices.Contains(union, c) && !strings.HasPrefix(c, "customer ") {
					union = append(union, c)
				}
			}
		}
	}
	union = append(union, map[bool]string{false: "customer varchar(40)", true: "customer varchar(80)"}[wide])
	slices.Sort(union)
	if got := namesOf(down); !slices.Equal(got, union) {
		t.Fatalf("midway: the downstream has %q, the join of the shards %q", got, union)
	}
	cols := columnNames(t, down)
	want, got := optExpected(t, f, cols), tableRows(t, f.downdb, "(SELECT "+strings.Join(cols, ", ")+" FROM merged.orders) x")
	if !slices.Equal(want, got) {
		t.Fatalf("midway: merged.orders has %d rows, the shards (with defaults) %d; they differ", len(got), len(want))
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("midway: downstream %q, %d rows", down, len(got))

	// The process restarts: a new group, rebuilt from the checkpoints'
	// schemas.
	stop()
	g, err = dmworker.NewShardGroup("merge", names...)
	if err != nil {
		t.Fatal(err)
	}
	workers, stop = optWorkers(t, f, g)
	stopLoad = load(1)
	run(schedule[half:])
	// Each shard drops memo at its own moment; the drop waits for the
	// last.
	order := rng.Perm(len(shards))
	for x, k := range order {
		sh := shards[k]
		time.Sleep(time.Duration(10+rng.IntN(60)) * time.Millisecond)
		mustExec(t, f.updbs[sh.i], fmt.Sprintf(optDrop, shardTables[sh.j]))
		if x != len(order)/2 {
			continue
		}
		// Midway through the drops: the lock shows, waiting for the
		// sources of the shards still with memo.
		var still []string
		for _, k2 := range order[x+1:] {
			if s := sourceName(shards[k2].i); !slices.Contains(still, s) {
				still = append(still, s)
			}
		}
		slices.Sort(still)
		waitUntil(t, "the held drop", func() bool {
			st := g.Status()
			return len(st) == 1 && st[0].Mode == dmworker.ShardOptimistic && st[0].Target == "merged.orders" &&
				strings.Contains(st[0].Statement, "DROP COLUMN `memo`") && len(st[0].Reached) == x+1 && slices.Equal(st[0].Waiting, still)
		})
		if cs := columnNames(t, shardColumns(t, f.downdb, "merged", "orders")); !slices.Contains(cs, "memo") {
			t.Fatalf("memo dropped downstream while shards still have it: %q", cs)
		}
		// The process restarts while the drop is held back: the new
		// group knows it from the shards' schemas (Status shows it again
		// once every source has registered, reached by the shards
		// without memo), and applies it when the last shard drops memo.
		stopLoad()
		stop()
		if g, err = dmworker.NewShardGroup("merge", names...); err != nil {
			t.Fatal(err)
		}
		workers, _ = optWorkers(t, f, g)
		waitUntil(t, "the held drop after the restart", func() bool {
			st := g.Status()
			return len(st) == 1 && st[0].Mode == dmworker.ShardOptimistic && st[0].Target == "merged.orders" &&
				strings.Contains(st[0].Statement, "DROP COLUMN `memo`") && len(st[0].Reached) == x+1 && slices.Equal(st[0].Waiting, still)
		})
		stopLoad = load(2)
	}
	time.Sleep(200 * time.Millisecond)
	stopLoad()
	synced(workers)
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks left: %+v", st)
	}
	want, got = f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	wantCols, gotCols := shardColumns(t, f.updbs[0], "shop", "orders_01"), shardColumns(t, f.downdb, "merged", "orders")
	if !slices.Equal(wantCols, gotCols) {
		t.Fatalf("downstream schema %q, the shards' %q", gotCols, wantCols)
	}
	t.Logf("end: downstream %q, %d rows", gotCols, len(got))

	// A narrowing DDL stops its shard's subtask; the others go on.
	mustExec(t, f.updbs[0], "ALTER TABLE shop.orders_01 MODIFY customer VARCHAR(60) NOT NULL")
	ust, err := streamer.QueryUpstream(context.Background(), upstreamOf(f.ups[0]))
	if err != nil {
		t.Fatal(err)
	}
	st := waitStage(t, taskStatus(workers[0], "merge"), dmworker.SubTaskPaused)
	var ie *dmworker.ShardIncompatibleDDLError
	if !errors.Is(st.LastError, dmworker.ErrShardIncompatibleDDL) || !errors.As(st.LastError, &ie) ||
		ie.Target != "merged.orders" || ie.Shard != (dmworker.ShardRef{Source: "src1", Table: "shop.orders_01"}) || len(ie.Others) != len(shards)-1 {
		t.Fatalf("%s: %v, want a ShardIncompatibleDDLError", workers[0].Name(), st.LastError)
	}
	t.Logf("%s: %v", workers[0].Name(), st.LastError)
	if cp := st.Syncer.Checkpoint; cp.Name == "" || cp.Compare(ust.Master) >= 0 {
		t.Fatalf("stopped subtask's checkpoint %s, want one before the DDL (which ends by %s)", cp, ust.Master)
	}
	mustExec(t, f.updbs[1], "INSERT INTO shop.orders_02 (id, customer) VALUES (99000001, 'after')")
	waitWorkerSynced(t, workers[1], "merge", f.ups[1])
	var c int
	if err := f.downdb.QueryRow("SELECT COUNT(*) FROM merged.orders WHERE id = 99000001").Scan(&c); err != nil || c != 1 {
		t.Fatalf("a row of src2 after src1 stopped: %d, %v", c, err)
	}
	if cs := shardColumns(t, f.downdb, "merged", "orders"); !slices.Contains(cs, "customer varchar(80) NO NULL") {
		t.Fatalf("customer narrowed downstream: %q", cs)
	}
}
