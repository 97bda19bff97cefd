package dmworker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// startOptProcs starts two processes with optimistic shard groups on f's
// three upstreams (src1 and src2 in the first, src3 in the second),
// stopped when the test ends.
func startOptProcs(t *testing.T, e *testserver.Etcd, f *shardFleet) []*shardProc {
	procs := []*shardProc{
		startShardProcMode(t, e, f, []int{0, 1}, mysqlSinks(f.downdb), dmworker.ShardOptimistic),
		startShardProcMode(t, e, f, []int{2}, mysqlSinks(f.downdb), dmworker.ShardOptimistic),
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.stop(t, false)
		}
	})
	return procs
}

// optLoad runs shardLoad on every shard table of f (ids of phase); the
// returned stop ends it (the caller checks t.Failed after).
func optLoad(t *testing.T, f *shardFleet, phase int64) (stop func()) {
	return startShardLoadsAt(t, f, phase*300_000)
}

// optEtcdCheck checks, once every source is synced, that no lock shows in
// the groups, and that merged.orders has the shards' rows and schema (the
// shards all at one schema by then).
func optEtcdCheck(t *testing.T, f *shardFleet, procs []*shardProc) {
	t.Helper()
	for _, p := range procs {
		for _, w := range p.workers {
			waitWorkerSynced(t, w, "merge", f.ups[int(w.Name()[1]-'1')])
		}
	}
	for gi, p := range procs {
		if st := p.g.Status(); len(st) != 0 {
			t.Fatalf("group %d: locks left: %+v", gi, st)
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
}

// TestShardMergeOptimisticEtcd: TestShardMergeOptimistic's DDLs with the
// three sources in two "processes" (src1 and src2 under one ShardGroup,
// src3 under another, each made by NewEtcdShardGroup with its own client
// of one etcd), in optimistic shard mode under a write load on every
// shard. Each shard table adds a column with a default, a nullable column,
// an index and widens a column at its own moment; midway the downstream
// has the join of the shards' schemas and their rows (with defaults where
// they lack columns). Then each drops the nullable column: the drop is
// held (both groups show it, waiting for the sources still with it) until
// the last shard has run it. Each DDL reaches the downstream once. Last, a
// narrowing DDL on src3 stops its subtask with a ShardIncompatibleDDLError
// (src1 and src2 go on); skipped (SkipSubTaskDDL), src3 goes on, and the
// downstream again equals the shards.
func TestShardMergeOptimisticEtcd(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 590)
	e := testserver.StartEtcd(t)
	procs := startOptProcs(t, e, f)
	workerOf := func(i int) *dmworker.SourceWorker {
		for _, p := range procs {
			for _, w := range p.workers {
				if w.Name() == fmt.Sprintf("w%d", i+1) {
					return w
				}
			}
		}
		t.Fatalf("no worker of upstream %d", i)
		return nil
	}
	for i := range n {
		w := workerOf(i)
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	shards := allShards(n)
	rng := rand.New(rand.NewPCG(590, 1))
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
	stopLoad := optLoad(t, f, 0)
	half := len(schedule) / 2
	run(schedule[:half])
	if lo, hi := slices.Min(done), slices.Max(done); lo >= 2 || hi < 2 {
		t.Fatalf("midway the shards have run %v of the DDLs: want some without memo and some with", done)
	}
	stopLoad()
	if t.Failed() {
		t.FailNow()
	}
	for i := range n {
		waitWorkerSynced(t, workerOf(i), "merge", f.ups[i])
	}
	// Midway: the downstream's columns are the union of the shards', and
	// its rows theirs with the defaults where they lack columns.
	down := shardColumns(t, f.downdb, "merged", "orders")
	cols := columnNames(t, down)
	var union []string
	for _, db := range f.updbs {
		for _, tb := range shardTables {
			for _, c := range columnNames(t, shardColumns(t, db, "shop", tb)) {
				if !slices.Contains(union, c) {
					union = append(union, c)
				}
			}
		}
	}
	if a, b := slices.Sorted(slices.Values(cols)), slices.Sorted(slices.Values(union)); !slices.Equal(a, b) {
		t.Fatalf("midway: the downstream has columns %q, the shards' union %q", a, b)
	}
	want, got := optExpected(t, f, cols), tableRows(t, f.downdb, "(SELECT "+strings.Join(cols, ", ")+" FROM merged.orders) x")
	if !slices.Equal(want, got) {
		t.Fatalf("midway: merged.orders has %d rows, the shards (with defaults) %d; they differ", len(got), len(want))
	}
	t.Logf("midway: downstream %q, %d rows", down, len(got))

	stopLoad = optLoad(t, f, 1)
	run(schedule[half:])
	order := rng.Perm(len(shards))
	for x, k := range order {
		sh := shards[k]
		time.Sleep(time.Duration(10+rng.IntN(60)) * time.Millisecond)
		mustExec(t, f.updbs[sh.i], fmt.Sprintf(optDrop, shardTables[sh.j]))
		if x != len(order)/2 {
			continue
		}
		var still []string
		for _, k2 := range order[x+1:] {
			if s := sourceName(shards[k2].i); !slices.Contains(still, s) {
				still = append(still, s)
			}
		}
		slices.Sort(still)
		for gi, p := range procs {
			waitUntil(t, fmt.Sprintf("the held drop in group %d", gi), func() bool {
				st := p.g.Status()
				return len(st) == 1 && st[0].Mode == dmworker.ShardOptimistic && st[0].Target == "merged.orders" &&
					strings.Contains(st[0].Statement, "DROP COLUMN `memo`") && len(st[0].Reached) == x+1 && slices.Equal(st[0].Waiting, still)
			})
		}
		if cs := columnNames(t, shardColumns(t, f.downdb, "merged", "orders")); !slices.Contains(cs, "memo") {
			t.Fatalf("memo dropped downstream while shards still have it: %q", cs)
		}
	}
	time.Sleep(200 * time.Millisecond)
	stopLoad()
	if t.Failed() {
		t.FailNow()
	}
	optEtcdCheck(t, f, procs)
	var ddls int64
	for i := range n {
		ddls += taskStatus(workerOf(i), "merge")().Syncer.DDLs
	}
	// Each widening clause and the drop once (by one process), plus each
	// source's CREATE DATABASE and CREATE TABLEs.
	if want := int64(len(optDDLs) + 1 + n*(1+len(shardTables))); ddls != want {
		t.Fatalf("%d DDL applied, want %d: the %d shard DDLs once and the creations", ddls, want, len(optDDLs)+1)
	}

	// A narrowing DDL on src3 stops its subtask; the others go on.
	w3 := workerOf(2)
	mustExec(t, f.updbs[2], "ALTER TABLE shop.orders_01 MODIFY customer VARCHAR(60) NOT NULL")
	st := waitStage(t, taskStatus(w3, "merge"), dmworker.SubTaskPaused)
	var ie *dmworker.ShardIncompatibleDDLError
	var se *dmworker.SyncError
	if !errors.As(st.LastError, &ie) || !errors.As(st.LastError, &se) || ie.Target != "merged.orders" ||
		ie.Shard != (dmworker.ShardRef{Source: "src3", Table: "shop.orders_01"}) || len(ie.Others) != len(shards)-1 {
		t.Fatalf("%s: %v, want a ShardIncompatibleDDLError naming the %d other shards", w3.Name(), st.LastError, len(shards)-1)
	}
	t.Logf("%s: %v", w3.Name(), st.LastError)
	mustExec(t, f.updbs[0], "INSERT INTO shop.orders_02 (id, customer) VALUES (99000001, 'after')")
	waitWorkerSynced(t, workerOf(0), "merge", f.ups[0])
	if cs := shardColumns(t, f.downdb, "merged", "orders"); !slices.Contains(cs, "customer varchar(80) NO NULL") {
		t.Fatalf("customer narrowed downstream: %q", cs)
	}
	// The documented way on: skip the narrowing (the shard's rows fit the
	// wider column) and resume.
	if err := w3.SkipSubTaskDDL("merge", se.Pos); err != nil {
		t.Fatal(err)
	}
	if err := w3.ResumeSubTask("merge"); err != nil {
		t.Fatal(err)
	}
	mustExec(t, f.updbs[2], "INSERT INTO shop.orders_01 (id, customer) VALUES (99000002, 'skipped')")
	waitWorkerSynced(t, w3, "merge", f.ups[2])
	want, got = f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("after the skip merged.orders has %d rows, the shards' union %d; they differ", len(got), len(want))
	}
	resp, err := e.Client.Get(context.Background(), testPrefix+"shardowner/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("owner keys left: %v %v", resp, err)
	}
}

// applyCounter counts the DDLs holding a word that reach the downstream,
// and traps, once armed, the first of them: it runs it, reports the
// source, and blocks until the worker's context ends (the process killed
// after the DDL ran and before the group recorded it).
type applyCounter struct {
	word  string
	ran   atomic.Int64
	armed atomic.Bool
	hit   chan string
}

func (c *applyCounter) factory(f *shardFleet) dmworker.SinkFactory {
	return func(_ context.Context, src dmworker.SourceConfig, _ dmworker.SubTaskConfig) (dmworker.Sink, error) {
		s, err := mysqlsink.New(f.downdb)
		return &countSink{Sink: s, c: c, src: src.Name}, err
	}
}

type countSink struct {
	*mysqlsink.Sink
	c   *applyCounter
	src string
}

func (s *countSink) ExecDDL(ctx context.Context, d *dmworker.DDL) error {
	if !strings.Contains(d.Query, s.c.word) {
		return s.Sink.ExecDDL(ctx, d)
	}
	if err := s.Sink.ExecDDL(ctx, d); err != nil {
		return err
	}
	s.c.ran.Add(1)
	if s.c.armed.CompareAndSwap(true, false) {
		s.c.hit <- s.src
		<-ctx.Done()
		return errors.New("killed after applying the DDL")
	}
	return nil
}

// TestShardMergeOptimisticEtcdKilled: three sources in two processes in
// optimistic shard mode through etcd, under a write load. The process that
// applies a column's addition dies right after the ALTER ran downstream
// and before its group recorded it (its lease left to expire). The other
// process's shard, running the same addition later, waits for the dead
// claim to expire, finds the statement recorded as being applied, sees
// the column downstream and does not run it again; the dead process,
// started again, replays its shards' DDL and passes it. Every shard's DDLs
// then go on; in the end the downstream equals the shards, and the ALTER
// ran downstream once.
func TestShardMergeOptimisticEtcdKilled(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 600)
	e := testserver.StartEtcd(t)
	ac := &applyCounter{word: "`memo`", hit: make(chan string, 1)}
	split := [][]int{{0, 1}, {2}}
	procs := []*shardProc{
		startShardProcMode(t, e, f, split[0], ac.factory(f), dmworker.ShardOptimistic),
		startShardProcMode(t, e, f, split[1], ac.factory(f), dmworker.ShardOptimistic),
	}
	defer func() {
		for _, p := range procs {
			p.stop(t, false)
		}
	}()
	for _, p := range procs {
		for _, w := range p.workers {
			waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
		}
	}
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	stopLoad := optLoad(t, f, 0)
	defer stopLoad()
	all := func(ddl string, srcs ...int) {
		for _, i := range srcs {
			for _, tb := range shardTables {
				mustExec(t, f.updbs[i], fmt.Sprintf(ddl, tb))
			}
		}
	}
	all(optDDLs[0], 0, 1, 2)
	// src1's orders_01 adds memo first: its process applies it and dies.
	ac.armed.Store(true)
	mustExec(t, f.updbs[0], fmt.Sprintf(optDDLs[1], "orders_01"))
	var afterDDL [n]streamer.Position
	var src string
	select {
	case src = <-ac.hit:
	case <-time.After(time.Minute):
		t.Fatal("nobody applies the DDL")
	}
	if src != sourceName(0) {
		t.Fatalf("%s applied src1's DDL", src)
	}
	t0 := time.Now()
	procs[0].stop(t, true)
	// src3's shards add memo: their process waits for the dead claim, and
	// passes the statement, applied already.
	all(optDDLs[1], 2)
	for i := range n {
		afterDDL[i] = upstreamEnd(t, f.ups[i])
	}
	w3 := procs[1].workers[0]
	waitUntil(t, "src3 past its DDLs", func() bool { return taskStatus(w3, "merge")().Syncer.Checkpoint.Compare(afterDDL[2]) >= 0 })
	t.Logf("src3 past the addition %v after the kill", time.Since(t0))
	procs[0] = startShardProcMode(t, e, f, split[0], ac.factory(f), dmworker.ShardOptimistic)
	for _, w := range procs[0].workers {
		i := int(w.Name()[1] - '1')
		waitUntil(t, w.Name()+" past the DDL after its restart", func() bool {
			return taskStatus(w, "merge")().Syncer.Checkpoint.Compare(afterDDL[i]) >= 0
		})
	}
	t.Logf("the restarted process past it %v after the kill", time.Since(t0))
	mustExec(t, f.updbs[0], fmt.Sprintf(optDDLs[1], "orders_02"))
	all(optDDLs[1], 1)
	for _, ddl := range optDDLs[2:] {
		all(ddl, 2, 0, 1)
	}
	time.Sleep(200 * time.Millisecond)
	stopLoad()
	if t.Failed() {
		t.FailNow()
	}
	optEtcdCheck(t, f, procs)
	if got := ac.ran.Load(); got != 1 {
		t.Fatalf("the addition of memo ran %d times downstream, want once", got)
	}
	resp, err := e.Client.Get(context.Background(), testPrefix+"shardowner/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("owner keys left: %v %v", resp, err)
	}
}
