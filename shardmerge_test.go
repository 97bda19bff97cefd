package dmworker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// shardFleet is a sharded upstream fleet: several MariaDB servers, each
// with the same schema "shop" holding shard tables orders_01, orders_02,
// and one downstream server the shards merge into (merged.orders).
type shardFleet struct {
	ups    []*testserver.MariaDB
	updbs  []*sql.DB
	down   *testserver.MariaDB
	downdb *sql.DB
}

// shardTables are the shard tables every upstream holds.
var shardTables = []string{"orders_01", "orders_02"}

// shardRoutes send every shard table of every source to merged.orders.
var shardRoutes = []dmworker.RouteRule{
	{SchemaPattern: "shop", TablePattern: "orders_*", TargetSchema: "merged", TargetTable: "orders"},
	{SchemaPattern: "shop", TargetSchema: "merged"},
}

const shardOrdersDef = "(id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2), note TEXT)"

// newShardFleet starts n upstreams (server ids base..base+n-1) and a
// downstream (base+n), all at once.
func newShardFleet(t *testing.T, n int, base uint32) *shardFleet {
	t.Helper()
	f := &shardFleet{ups: make([]*testserver.MariaDB, n), updbs: make([]*sql.DB, n)}
	var wg sync.WaitGroup
	for i := 0; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := testserver.Start(context.Background(), t.TempDir(), testserver.MariaDBOptions{ServerID: base + uint32(i), MaxBinlogSize: 64 << 10})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { m.Close() })
			if i == n {
				f.down = m
			} else {
				f.ups[i] = m
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, m := range f.ups {
		f.updbs[i] = m.DB(t)
	}
	f.downdb = f.down.DB(t)
	return f
}

// sourceName is the i-th upstream's source name.
func sourceName(i int) string { return fmt.Sprintf("src%d", i+1) }

// shardLoad writes on one shard table until stop is closed or n
// transactions are done: inserts of ids unique across the fleet, updates
// and deletes of its own rows.
func shardLoad(t *testing.T, db *sql.DB, table string, idBase int64, n int, stop <-chan struct{}) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(idBase), 7))
	next := idBase
	for i := 0; i < n; i++ {
		select {
		case <-stop:
			return
		default:
		}
		tx, err := db.Begin()
		if err != nil {
			t.Error(err)
			return
		}
		for j := 0; j < 1+rng.IntN(3); j++ {
			next++
			if _, err := tx.Exec("INSERT INTO shop."+table+" (id, customer, amount, note) VALUES (?, ?, ?, ?)",
				next, fmt.Sprintf("c%d", rng.IntN(50)), float64(rng.IntN(100000))/100, table); err != nil {
				tx.Rollback()
				t.Error(err)
				return
			}
		}
		if next > idBase+5 {
			id := idBase + 1 + rng.Int64N(next-idBase)
			q := "UPDATE shop." + table + " SET amount = amount + 1 WHERE id = ?"
			if rng.IntN(4) == 0 {
				q = "DELETE FROM shop." + table + " WHERE id = ?"
			}
			if _, err := tx.Exec(q, id); err != nil {
				tx.Rollback()
				t.Error(err)
				return
			}
		}
		if err := tx.Commit(); err != nil {
			t.Error(err)
			return
		}
	}
}

// unionRows is the rows of every shard table of every upstream, as
// tableRows gives them, sorted.
func (f *shardFleet) unionRows(t *testing.T) []string {
	var all []string
	for _, db := range f.updbs {
		for _, tb := range shardTables {
			all = append(all, tableRows(t, db, "shop."+tb)...)
		}
	}
	slices.Sort(all)
	return all
}

// waitWorkerSynced waits until the worker's subtask task has checkpointed
// everything its upstream has written now.
func waitWorkerSynced(t *testing.T, w *dmworker.SourceWorker, task string, up *testserver.MariaDB) {
	t.Helper()
	ust, err := streamer.QueryUpstream(context.Background(), upstreamOf(up))
	if err != nil {
		t.Fatal(err)
	}
	want := ust.Master
	waitUntil(t, w.Name()+" at "+want.String(), func() bool {
		st := taskStatus(w, task)()
		if st.LastError != nil && st.Stage == dmworker.SubTaskPaused {
			t.Fatalf("subtask %s of %s paused by an error: %v", task, w.Name(), st.LastError)
		}
		if c, ok := st.Syncer.Checkpoint.CompareGTID(want); ok && c >= 0 {
			return true
		}
		return st.Syncer.Checkpoint.Compare(want) >= 0
	})
}

// TestShardMergeManySources: three SourceWorkers in one process, direct
// mode, one metrics registry, each serving one upstream with two shard
// tables; one task spans the three sources (one subtask each, same name)
// and routes the six shard tables into one downstream table. Under a write
// load on every shard, the downstream table ends equal to the union of the
// shards by content, each source keeps its own checkpoint (task, source),
// and the workers' metrics do not collide.
func TestShardMergeManySources(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 480)
	reg := prometheus.NewRegistry()
	workers := make([]*dmworker.SourceWorker, n)
	for i := range workers {
		up := upstreamOf(f.ups[i])
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(f.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: up}),
			dmworker.WithMetrics(reg))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes,
			SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}}); err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		workers[i] = w
	}
	shardMergeLoad(t, f, workers, reg)
}

// TestShardMergeManySourcesEtcd: TestShardMergeManySources with the three
// workers driven through etcd, sharing the host's one client: each bound
// to its source, the task's subtask config put for each source.
func TestShardMergeManySourcesEtcd(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 510)
	cli := testserver.StartEtcd(t).Client
	reg := prometheus.NewRegistry()
	workers := make([]*dmworker.SourceWorker, n)
	for i := range workers {
		name := fmt.Sprintf("w%d", i+1)
		putSourceConfig(t, cli, dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])})
		putSubTask(t, cli, sourceName(i), dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes,
			SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}})
		bindSource(t, cli, name, sourceName(i))
		w, err := dmworker.NewSourceWorker(name, mysqlSinks(f.downdb), dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix),
			dmworker.WithCredentialKey(testCredentialKey), dmworker.WithMetrics(reg))
		if err != nil {
			t.Fatal(err)
		}
		runWorker(t, w)
		workers[i] = w
	}
	shardMergeLoad(t, f, workers, reg)
}

// shardMergeLoad runs the shard merge of TestShardMergeManySources on
// running workers, one per upstream of f, each with a subtask "merge"
// routing with shardRoutes and metrics in reg.
func shardMergeLoad(t *testing.T, f *shardFleet, workers []*dmworker.SourceWorker, reg *prometheus.Registry) {
	n := len(workers)
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	// The shards' CREATE DATABASE and CREATE TABLE all reach the one
	// target: the first creates it, the others find it.
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	var wg sync.WaitGroup
	for i, db := range f.updbs {
		for j, tb := range shardTables {
			wg.Add(1)
			go func() {
				defer wg.Done()
				shardLoad(t, db, tb, int64(i*10+j+1)*1_000_000, 150, nil)
			}()
		}
	}
	// Metrics of the three workers gather with no duplicate series
	// while they work.
	time.Sleep(200 * time.Millisecond)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather the workers' metrics: %v", err)
	}
	sources := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "dmworker_syncer_events_read_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" {
					sources[l.GetValue()] = true
				}
			}
		}
	}
	if len(sources) != n {
		t.Errorf("syncer metrics by source: %v, want the %d sources", sources, n)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, w := range workers {
		waitWorkerSynced(t, w, "merge", f.ups[i])
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	// One checkpoint per source of the task.
	var cps int
	if err := f.downdb.QueryRow("SELECT COUNT(DISTINCT source) FROM dmworker_meta.checkpoint WHERE task = 'merge'").Scan(&cps); err != nil {
		t.Fatal(err)
	}
	if cps != n {
		t.Fatalf("%d checkpoints for task merge, want one per source (%d)", cps, n)
	}
}

// shardColumns describes a table's columns and indexes, as text.
func shardColumns(t *testing.T, db *sql.DB, schemaName, table string) []string {
	t.Helper()
	var out []string
	rows, err := db.Query(`SELECT CONCAT_WS(' ', column_name, column_type, is_nullable, IFNULL(column_default, 'NULL'))
		FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position`, schemaName, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	irows, err := db.Query(`SELECT CONCAT_WS(' ', 'index', index_name, seq_in_index, column_name, non_unique)
		FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? ORDER BY index_name, seq_in_index`, schemaName, table)
	if err != nil {
		t.Fatal(err)
	}
	defer irows.Close()
	for irows.Next() {
		var s string
		if err := irows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestShardMergePessimistic: the three sources of TestShardMergeManySources
// in pessimistic shard mode with one ShardGroup: under a write load on
// every shard, each shard table runs the same DDLs (add a column with a
// default, add an index, widen a column) at its own moment; each reaches
// the downstream table once, when every source has reached it, and the
// downstream rows and schema end equal to the shards'. A subtask paused
// and resumed while its source holds at a DDL takes its place again. Then
// two sources run differing DDLs: their subtasks stop with a
// ShardDDLConflictError.
func TestShardMergePessimistic(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 490)
	var names []string
	for i := range n {
		names = append(names, sourceName(i))
	}
	g, err := dmworker.NewShardGroup("merge", names...)
	if err != nil {
		t.Fatal(err)
	}
	workers := make([]*dmworker.SourceWorker, n)
	logs := failureLogs(t)
	for i := range workers {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(f.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0),
			dmworker.WithLogger(slog.New(slog.NewTextHandler(logs, nil)).With("worker", fmt.Sprintf("w%d", i+1))))
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
	stopLoads := startShardLoads(t, f)
	ddls := []string{
		"ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'",
		"ALTER TABLE shop.%s ADD INDEX idx_customer (customer)",
		"ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL",
	}
	rng := rand.New(rand.NewPCG(490, 1))
	for k, ddl := range ddls {
		order := allShards(n)
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for x, sh := range order {
			time.Sleep(time.Duration(20+rng.IntN(120)) * time.Millisecond)
			mustExec(t, f.updbs[sh.i], fmt.Sprintf(ddl, shardTables[sh.j]))
			if k != 0 || x != 0 {
				continue
			}
			ust, err := streamer.QueryUpstream(context.Background(), upstreamOf(f.ups[sh.i]))
			if err != nil {
				t.Fatal(err)
			}
			afterDDL := ust.Master // at or past the DDL's end
			// The first shard's source holds at the first DDL: the lock
			// shows; its subtask paused and resumed takes its place again.
			src := sourceName(sh.i)
			waitUntil(t, "the first lock", func() bool {
				st := g.Status()
				return len(st) == 1 && len(st[0].Reached) == 1 && st[0].Reached[0].Source == src && len(st[0].Waiting) == n-1
			})
			if st := g.Status()[0]; st.Target != "merged.orders" || st.Since.IsZero() {
				t.Fatalf("lock status %+v", st)
			}
			checkLockStatus(t, workers, sh.i, "shop."+shardTables[sh.j])
			if err := workers[sh.i].PauseSubTask("merge"); err != nil {
				t.Fatal(err)
			}
			held := waitStage(t, taskStatus(workers[sh.i], "merge"), dmworker.SubTaskPaused)
			// Stopped while held: its checkpoint is before the DDL.
			if cp := held.Syncer.Checkpoint; cp.Name == "" || cp.Compare(afterDDL) >= 0 {
				t.Fatalf("held subtask's checkpoint %s, want one before the DDL (which ends by %s)", cp, afterDDL)
			}
			if err := workers[sh.i].ResumeSubTask("merge"); err != nil {
				t.Fatal(err)
			}
			waitStage(t, taskStatus(workers[sh.i], "merge"), dmworker.SubTaskRunning)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stopLoads()
	if t.Failed() {
		t.FailNow()
	}
	for i, w := range workers {
		waitWorkerSynced(t, w, "merge", f.ups[i])
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks left: %+v", st)
	}
	for _, w := range workers {
		if l := taskStatus(w, "merge")().ShardLocks; len(l) != 0 {
			t.Fatalf("%s shows locks: %+v", w.Name(), l)
		}
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	wantCols, gotCols := shardColumns(t, f.updbs[0], "shop", "orders_01"), shardColumns(t, f.downdb, "merged", "orders")
	if !slices.Equal(wantCols, gotCols) {
		t.Fatalf("downstream schema %q, the shards' %q", gotCols, wantCols)
	}
	var ddlsApplied int64
	for _, w := range workers {
		ddlsApplied += taskStatus(w, "merge")().Syncer.DDLs
	}
	// Each shard DDL once, plus each source's CREATE DATABASE and CREATE
	// TABLEs (the later ones finding the target made).
	if want := int64(len(ddls) + n*(1+len(shardTables))); ddlsApplied != want {
		t.Fatalf("%d DDL applied, want %d: the %d shard DDLs once and the creations", ddlsApplied, want, len(ddls))
	}

	// Differing DDLs: src1 and src2 add the same column with two types.
	mustExec(t, f.updbs[0], "ALTER TABLE shop.orders_01 ADD COLUMN z INT")
	waitUntil(t, "src1 held", func() bool { return len(g.Status()) == 1 })
	mustExec(t, f.updbs[1], "ALTER TABLE shop.orders_01 ADD COLUMN z BIGINT")
	for _, w := range workers[:2] {
		st := waitStage(t, taskStatus(w, "merge"), dmworker.SubTaskPaused)
		var ce *dmworker.ShardDDLConflictError
		if !errors.Is(st.LastError, dmworker.ErrShardDDLConflict) || !errors.As(st.LastError, &ce) || len(ce.Statements) != 2 {
			t.Fatalf("%s: %v, want a ShardDDLConflictError", w.Name(), st.LastError)
		}
		t.Logf("%s: %v", w.Name(), st.LastError)
	}
	if !errors.Is(g.Err(), dmworker.ErrShardDDLConflict) {
		t.Fatalf("group error %v", g.Err())
	}
}

// freezer freezes the sinks of some sources: every write through them
// blocks, and after kill fails, so that nothing more of theirs lands
// downstream (a process killed with -9 at that moment).
type freezer struct {
	mu      sync.Mutex
	frozen  map[string]bool
	blocked map[string]int
	killed  chan struct{}
}

func newFreezer() *freezer {
	return &freezer{frozen: map[string]bool{}, blocked: map[string]int{}, killed: make(chan struct{})}
}

func (f *freezer) freeze(src string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen[src] = true
}

func (f *freezer) blockedCalls(src string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[src]
}

// hold blocks a frozen source's write until ctx ends or the kill, then
// fails it; it returns nil at once for a source not frozen.
func (f *freezer) hold(ctx context.Context, src string) error {
	f.mu.Lock()
	if !f.frozen[src] {
		f.mu.Unlock()
		return nil
	}
	f.blocked[src]++
	f.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-f.killed:
	}
	return errors.New("killed")
}

// sinks returns a SinkFactory of mysqlsink Sinks on db whose writes f
// freezes by source.
func (f *freezer) sinks(db *sql.DB) dmworker.SinkFactory {
	return func(_ context.Context, src dmworker.SourceConfig, _ dmworker.SubTaskConfig) (dmworker.Sink, error) {
		s, err := mysqlsink.New(db)
		return &freezeSink{Sink: s, f: f, src: src.Name}, err
	}
}

type freezeSink struct {
	*mysqlsink.Sink
	f   *freezer
	src string
}

func (s *freezeSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	if err := s.f.hold(ctx, s.src); err != nil {
		return err
	}
	return s.Sink.Apply(ctx, b)
}

func (s *freezeSink) ExecDDL(ctx context.Context, d *dmworker.DDL) error {
	if err := s.f.hold(ctx, s.src); err != nil {
		return err
	}
	return s.Sink.ExecDDL(ctx, d)
}

func (s *freezeSink) SaveCheckpoint(ctx context.Context, cp dmworker.Checkpoint) error {
	if err := s.f.hold(ctx, s.src); err != nil {
		return err
	}
	return s.Sink.SaveCheckpoint(ctx, cp)
}

func (s *freezeSink) SaveShardLock(ctx context.Context, task, target string, state []byte) error {
	if err := s.f.hold(ctx, s.src); err != nil {
		return err
	}
	return s.Sink.SaveShardLock(ctx, task, target, state)
}

// startShardWorkers starts one worker per upstream of f with the subtask
// "merge" in pessimistic mode with g, sinks made by sinks, each run with
// ctx; it returns the workers and a channel of their Run results.
func startShardWorkers(t *testing.T, ctx context.Context, f *shardFleet, g *dmworker.ShardGroup, sinks dmworker.SinkFactory) ([]*dmworker.SourceWorker, <-chan error) {
	t.Helper()
	workers := make([]*dmworker.SourceWorker, len(f.ups))
	done := make(chan error, len(f.ups))
	logs := failureLogs(t)
	for i := range workers {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), sinks,
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0),
			dmworker.WithLogger(slog.New(slog.NewTextHandler(logs, nil)).With("worker", fmt.Sprintf("w%d", i+1))))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: dmworker.ShardPessimistic,
			SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}}); err != nil {
			t.Fatal(err)
		}
		go func() { done <- w.Run(ctx) }()
		workers[i] = w
	}
	return workers, done
}

// upstreamEnd is where an upstream's binlog ends now.
func upstreamEnd(t *testing.T, m *testserver.MariaDB) streamer.Position {
	t.Helper()
	ust, err := streamer.QueryUpstream(context.Background(), upstreamOf(m))
	if err != nil {
		t.Fatal(err)
	}
	return ust.Master
}

// TestShardMergeKilledInLock: three sources in pessimistic mode under a
// write load; src1 and src2 hold at a shard DDL (both their shard tables
// reached it, as did src3's first); src3's second reaches it, src3 applies
// it and goes on past it; the process dies (its writes frozen, then every
// worker stopped with nothing more written) before src1 and src2 saved a
// checkpoint past the DDL. A new process with a new ShardGroup finds the
// lock's state in the downstream's meta schema: src1 and src2 reach the
// DDL again and pass it without waiting for src3 (already past) and
// without Release; the later DDLs coordinate as usual, and in the end the
// downstream equals the union of the shards by rows and schema, with no
// lock left.
func TestShardMergeKilledInLock(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 530)
	g1, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1), sourceName(2))
	if err != nil {
		t.Fatal(err)
	}
	fz := newFreezer()
	ctx1, kill := context.WithCancel(context.Background())
	defer kill()
	workers, done := startShardWorkers(t, ctx1, f, g1, fz.sinks(f.downdb))
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	stopLoads := startShardLoads(t, f)
	const addCol = "ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'"
	time.Sleep(100 * time.Millisecond)
	// Every shard table but src3's orders_02 reaches the DDL.
	var afterDDL [n]streamer.Position
	for i := range n {
		for _, tb := range shardTables {
			if i == 2 && tb == "orders_02" {
				continue
			}
			mustExec(t, f.updbs[i], fmt.Sprintf(addCol, tb))
		}
		afterDDL[i] = upstreamEnd(t, f.ups[i])
	}
	waitUntil(t, "src1 and src2 held", func() bool {
		st := g1.Status()
		return len(st) == 1 && len(st[0].Reached) == 5 && slices.Equal(st[0].WaitingTables, []dmworker.ShardRef{{Source: sourceName(2), Table: "shop.orders_02"}})
	})
	fz.freeze(sourceName(0))
	fz.freeze(sourceName(1))
	mustExec(t, f.updbs[2], fmt.Sprintf(addCol, "orders_02"))
	afterDDL[2] = upstreamEnd(t, f.ups[2])
	// src3 applies the DDL and goes on past it; src1 and src2 pass it in
	// memory and block on their next write.
	waitUntil(t, "src3 past the DDL", func() bool { return taskStatus(workers[2], "merge")().Syncer.Checkpoint.Compare(afterDDL[2]) >= 0 })
	waitUntil(t, "src1 and src2 writing past the DDL", func() bool {
		return fz.blockedCalls(sourceName(0)) > 0 && fz.blockedCalls(sourceName(1)) > 0
	})
	close(fz.killed)
	kill()
	for range workers {
		<-done // errors of a killed process do not matter
	}
	probe, err := mysqlsink.New(f.downdb)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		cp, ok, err := probe.LoadCheckpoint(context.Background(), "merge", sourceName(i))
		if err != nil || !ok || cp.Pos.Compare(afterDDL[i]) >= 0 {
			t.Fatalf("%s's checkpoint after the kill: %s (%v, %v), want one before the DDL (which ends by %s)", sourceName(i), cp.Pos, ok, err, afterDDL[i])
		}
	}

	// A new process.
	g2, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1), sourceName(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	workers, done = startShardWorkers(t, ctx2, f, g2, mysqlSinks(f.downdb))
	defer func() {
		cancel2()
		for range workers {
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		}
	}()
	for i, w := range workers[:2] {
		waitUntil(t, w.Name()+" past the DDL", func() bool { return taskStatus(w, "merge")().Syncer.Checkpoint.Compare(afterDDL[i]) >= 0 })
	}
	if st := g2.Status(); len(st) != 0 {
		t.Fatalf("locks after the restart: %+v", st)
	}
	// An index on every shard.
	for i := range n {
		for _, tb := range shardTables {
			mustExec(t, f.updbs[(i+1)%n], "ALTER TABLE shop."+tb+" ADD INDEX idx_customer (customer)")
		}
	}
	time.Sleep(200 * time.Millisecond)
	stopLoads()
	if t.Failed() {
		t.FailNow()
	}
	for i, w := range workers {
		waitWorkerSynced(t, w, "merge", f.ups[i])
	}
	if st := g2.Status(); len(st) != 0 {
		t.Fatalf("locks left: %+v", st)
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	wantCols, gotCols := shardColumns(t, f.updbs[0], "shop", "orders_01"), shardColumns(t, f.downdb, "merged", "orders")
	if !slices.Equal(wantCols, gotCols) {
		t.Fatalf("downstream schema %q, the shards' %q", gotCols, wantCols)
	}
}

// coreRows is a shard or merged table's rows by the columns every shard
// has from the start (id, customer, amount, note), as text, sorted.
func coreRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.Query("SELECT CONCAT_WS('|', id, customer, IFNULL(amount, 'NULL'), IFNULL(note, 'NULL')) FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestShardMergeNoStuckLock: pessimistic locks that would wait forever for
// a source resolve by themselves or by one documented call, under a write
// load, without losing a checkpoint:
//   - every subtask stopped and started again while a source holds (a task
//     restarted in the middle of a lock): the lock completes when the
//     others reach the DDL;
//   - a source removed from the task while the others hold
//     (ShardGroup.RemoveSource after stopping its subtask): the lock
//     completes; its checkpoint stays;
//   - a source whose shard tables are filtered out of the task (its
//     subtask restarted with them in IgnoreTables) while another holds;
//   - a source that drops its shard tables upstream while another holds
//     (DROP TABLE: the merged table stays).
//
// In the end the downstream holds every row the shards wrote (those of
// the dropped tables as they were when dropped) and the schema of the
// shards that ran every DDL, with no lock left.
func TestShardMergeNoStuckLock(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 540)
	g, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1), sourceName(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	workers, done := startShardWorkers(t, ctx, f, g, mysqlSinks(f.downdb))
	defer func() {
		cancel()
		for range workers {
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		}
	}()
	cfg := func(i int) dmworker.SubTaskConfig {
		return dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: dmworker.ShardPessimistic,
			SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}}
	}
	restart := func(i int, c dmworker.SubTaskConfig) {
		t.Helper()
		if err := workers[i].StopSubTask("merge"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "subtask stopped", func() bool { return taskStatus(workers[i], "merge")().Stage == "" })
		if err := workers[i].StartSubTask(c); err != nil {
			t.Fatal(err)
		}
		waitStage(t, taskStatus(workers[i], "merge"), dmworker.SubTaskRunning)
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
	stops := make([]chan struct{}, n)
	var wg [n]sync.WaitGroup // the loads by source
	for i, db := range f.updbs {
		stops[i] = make(chan struct{})
		for j, tb := range shardTables {
			wg[i].Add(1)
			go func() {
				defer wg[i].Done()
				shardLoad(t, db, tb, int64(i*10+j+1)*1_000_000, 1_000_000, stops[i])
			}()
		}
	}
	stopLoad := func(i int) {
		t.Helper()
		close(stops[i])
		wg[i].Wait()
		waitWorkerSynced(t, workers[i], "merge", f.ups[i])
	}
	// held waits until the one lock has the shards reached (by source
	// and table number, "src1:1") and waits for the sources waiting.
	held := func(what string, reached []string, waiting ...string) {
		t.Helper()
		waitUntil(t, what, func() bool {
			st := g.Status()
			if len(st) != 1 || !slices.Equal(st[0].Waiting, waiting) || len(st[0].Reached) != len(reached) {
				return false
			}
			for k, r := range st[0].Reached {
				if r.Source+":"+r.Table[len(r.Table)-1:] != reached[k] {
					return false
				}
			}
			return true
		})
	}
	noLock := func(what string) {
		t.Helper()
		waitUntil(t, what, func() bool { return len(g.Status()) == 0 })
	}
	ddl := func(i int, table, stmt string) {
		t.Helper()
		mustExec(t, f.updbs[i], fmt.Sprintf(stmt, table))
	}
	const (
		ddl1 = "ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'"
		ddl2 = "ALTER TABLE shop.%s ADD INDEX idx_customer (customer)"
		ddl3 = "ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL"
		ddl4 = "ALTER TABLE shop.%s ADD COLUMN flag INT NULL"
	)
	s1, s2, s3 := sourceName(0), sourceName(1), sourceName(2)

	// The task restarted in the middle of a lock.
	ddl(0, "orders_01", ddl1)
	held("src1 at ddl1", []string{s1 + ":1"}, s2, s3)
	for i := range workers {
		restart(i, cfg(i))
	}
	held("src1 at ddl1 after the restart", []string{s1 + ":1"}, s2, s3)
	ddl(1, "orders_01", ddl1)
	ddl(2, "orders_01", ddl1)
	held("every orders_01 at ddl1", []string{s1 + ":1", s2 + ":1", s3 + ":1"})
	for i := range n {
		ddl(i, "orders_02", ddl1)
	}
	noLock("ddl1 applied")

	// src3 removed from the task while src1 and src2 hold.
	stopLoad(2)
	for i := range 2 {
		for _, tb := range shardTables {
			ddl(i, tb, ddl2)
		}
	}
	held("src1 and src2 at ddl2", []string{s1 + ":1", s1 + ":2", s2 + ":1", s2 + ":2"}, s3)
	cp3 := taskStatus(workers[2], "merge")().Syncer.Checkpoint
	if err := workers[2].StopSubTask("merge"); err != nil {
		t.Fatal(err)
	}
	if err := g.RemoveSource(s3); err != nil {
		t.Fatal(err)
	}
	noLock("ddl2 applied without src3")
	probe, err := mysqlsink.New(f.downdb)
	if err != nil {
		t.Fatal(err)
	}
	if cp, ok, err := probe.LoadCheckpoint(context.Background(), "merge", s3); err != nil || !ok || cp.Pos.Compare(cp3) != 0 {
		t.Fatalf("src3's checkpoint after RemoveSource: %s (%v, %v), want %s", cp.Pos, ok, err, cp3)
	}

	// src2's shard tables filtered out of the task while src1 holds.
	stopLoad(1)
	ddl(0, "orders_01", ddl3)
	ddl(0, "orders_02", ddl3)
	held("src1 at ddl3", []string{s1 + ":1", s1 + ":2"}, s2)
	filtered := cfg(1)
	filtered.Filter = dmworker.BlockAllowList{IgnoreTables: []dmworker.TablePattern{{Schema: "shop", Name: "orders_*"}}}
	restart(1, filtered)
	noLock("ddl3 applied without src2")

	// src2 back in the task (it runs ddl3, applied already); src1 drops
	// its shard tables while src2 holds at ddl4.
	restart(1, cfg(1))
	ddl(1, "orders_01", ddl3)
	ddl(1, "orders_02", ddl3)
	ddl(1, "orders_01", ddl4)
	ddl(1, "orders_02", ddl4)
	held("src2 at ddl4", []string{s2 + ":1", s2 + ":2"}, s1)
	stopLoad(0)
	var dropped []string
	for _, tb := range shardTables {
		dropped = append(dropped, coreRows(t, f.updbs[0], "shop."+tb)...)
	}
	mustExec(t, f.updbs[0], "DROP TABLE shop.orders_01")
	waitWorkerSynced(t, workers[0], "merge", f.ups[0])
	held("src2 at ddl4 while src1 has a shard table", []string{s2 + ":1", s2 + ":2"}, s1)
	mustExec(t, f.updbs[0], "DROP TABLE shop.orders_02")
	noLock("ddl4 applied once src1 has no shard table")

	if t.Failed() {
		t.FailNow()
	}
	for i := range 2 {
		waitWorkerSynced(t, workers[i], "merge", f.ups[i])
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks left: %+v", st)
	}
	want := dropped
	for _, db := range f.updbs[1:] {
		for _, tb := range shardTables {
			want = append(want, coreRows(t, db, "shop."+tb)...)
		}
	}
	slices.Sort(want)
	if got := coreRows(t, f.downdb, "merged.orders"); !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards wrote %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	wantCols, gotCols := shardColumns(t, f.updbs[1], "shop", "orders_01"), shardColumns(t, f.downdb, "merged", "orders")
	if !slices.Equal(wantCols, gotCols) {
		t.Fatalf("downstream schema %q, the shards' %q", gotCols, wantCols)
	}
}

// failureLogs returns a buffer for the workers' logs, written to the
// test's log if it fails.
func failureLogs(t *testing.T) *lockedBuffer {
	logs := new(lockedBuffer)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the workers' logs:\n%s", logs.String())
		}
	})
	return logs
}

// startShardLoads runs shardLoad on every shard table of every upstream
// of f (ids apart by source and table) until the function it returns is
// called, which waits for them.
func startShardLoads(t *testing.T, f *shardFleet) (stop func()) {
	return startShardLoadsAt(t, f, 0)
}

// startShardLoadsAt is startShardLoads with every id offset by off; its
// stop may be called more than once.
func startShardLoadsAt(t *testing.T, f *shardFleet, off int64) (stop func()) {
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for i, db := range f.updbs {
		for j, tb := range shardTables {
			wg.Add(1)
			go func() {
				defer wg.Done()
				shardLoad(t, db, tb, int64(i*10+j+1)*1_000_000+off, 1_000_000, ch)
			}()
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(ch)
			wg.Wait()
		})
	}
}

// shardAt is a shard table by upstream (i) and shardTables index (j).
type shardAt struct{ i, j int }

// allShards lists every shard table of n upstreams, by upstream then
// table.
func allShards(n int) []shardAt {
	var out []shardAt
	for i := range n {
		for j := range shardTables {
			out = append(out, shardAt{i, j})
		}
	}
	return out
}

// rowDiff describes how the coreRows got differ from want: the rows
// missing and extra (at most 20 of each), and how many by shard table (the
// note column).
func rowDiff(want, got []string) string {
	var missing, extra []string
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i] < got[j]):
			missing = append(missing, want[i])
			i++
		case i == len(want) || got[j] < want[i]:
			extra = append(extra, got[j])
			j++
		default:
			i++
			j++
		}
	}
	byShard := func(rows []string) map[string]int {
		m := map[string]int{}
		for _, r := range rows {
			f := strings.Split(r, "|")
			id, _ := strconv.ParseInt(f[0], 10, 64)
			m[fmt.Sprintf("src%d:%s", id/10_000_000+1, f[len(f)-1])]++
		}
		return m
	}
	return fmt.Sprintf("missing %d %v %q; extra %d %v %q", len(missing), byShard(missing), missing[:min(20, len(missing))],
		len(extra), byShard(extra), extra[:min(20, len(extra))])
}

// checkLockStatus checks that each worker's subtask "merge" shows the one
// lock on merged.orders that worker held's shard table reached (and
// the others are waited for), in SubTaskStatus and in /status.
func checkLockStatus(t *testing.T, workers []*dmworker.SourceWorker, held int, table string) {
	t.Helper()
	var waiting []string
	for i := range workers {
		if i != held {
			waiting = append(waiting, sourceName(i))
		}
	}
	for i, w := range workers {
		locks := taskStatus(w, "merge")().ShardLocks
		if len(locks) != 1 {
			t.Fatalf("%s: shard locks %+v, want one", w.Name(), locks)
		}
		l := locks[0]
		if l.Task != "merge" || l.Mode != dmworker.ShardPessimistic || l.Target != "merged.orders" || l.Since.IsZero() ||
			len(l.Reached) != 1 || l.Reached[0].Source != sourceName(held) || l.Reached[0].Table != table || l.Reached[0].At.Before(l.Since) ||
			!slices.Equal(l.Waiting, waiting) {
			t.Fatalf("%s (%d): shard lock %+v", w.Name(), i, l)
		}
		srv := httptest.NewServer(dmworker.StatusHandler(w, dmworker.StatusHandlerConfig{}))
		resp, err := srv.Client().Get(srv.URL + "/status")
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		var st dmworker.StatusJSON
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.SubTasks) != 1 || len(st.SubTasks[0].ShardLocks) != 1 {
			t.Fatalf("%s: /status %+v", w.Name(), st.SubTasks)
		}
		j := st.SubTasks[0].ShardLocks[0]
		if j.Target != "merged.orders" || j.Mode != "pessimistic" || j.Statement != l.Statement || !j.Since.Equal(l.Since) ||
			len(j.Reached) != 1 || j.Reached[0].Source != sourceName(held) || j.Reached[0].Table != table || !slices.Equal(j.Waiting, waiting) {
			t.Fatalf("%s: /status shard lock %+v", w.Name(), j)
		}
	}
}

// TestShardMergePessimisticDropColumn: three upstreams with two shard
// tables each, merged in pessimistic mode under a write load on every
// shard; each shard table runs, at its own moment, a sequence of DDLs:
// add a column with a default, add an index, widen a column, drop a
// column. Each step waits for every shard table of every source, so rows
// of a shard that has not dropped the column yet still find it
// downstream; while a source holds a step, its events of other tables go
// on (rows written meanwhile to shop.audit reach merged.audit before the
// step completes). In the end the downstream rows and schema equal the
// shards', each DDL applied once.
func TestShardMergePessimisticDropColumn(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 550)
	g, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1), sourceName(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	workers, done := startShardWorkers(t, ctx, f, g, mysqlSinks(f.downdb))
	defer func() {
		cancel()
		for range workers {
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		}
	}()
	for _, w := range workers {
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
	}
	const def = "(id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2), note TEXT, legacy VARCHAR(20) NULL DEFAULT 'old')"
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		mustExec(t, db, "CREATE TABLE shop.audit (id BIGINT PRIMARY KEY, v INT)")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+def)
		}
	}
	stopLoads := startShardLoads(t, f)
	ddls := []string{
		"ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'",
		"ALTER TABLE shop.%s ADD INDEX idx_customer (customer)",
		"ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL",
		"ALTER TABLE shop.%s DROP COLUMN legacy",
	}
	rng := rand.New(rand.NewPCG(550, 1))
	for k, ddl := range ddls {
		order := allShards(n)
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for x, sh := range order {
			time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
			mustExec(t, f.updbs[sh.i], fmt.Sprintf(ddl, shardTables[sh.j]))
			if k != 0 || x != 0 {
				continue
			}
			// The first shard's source holds the step: its other
			// tables' events go on meanwhile.
			src := sourceName(sh.i)
			waitUntil(t, "the first lock", func() bool {
				st := g.Status()
				return len(st) == 1 && len(st[0].Reached) == 1 && st[0].Reached[0].Source == src && len(st[0].WaitingTables) == 2*n-1
			})
			for a := range 20 {
				mustExec(t, f.updbs[sh.i], "INSERT INTO shop.audit VALUES (?, ?)", a, sh.i)
			}
			waitUntil(t, "audit rows of the held source downstream", func() bool {
				var c int
				_ = f.downdb.QueryRow("SELECT COUNT(*) FROM merged.audit").Scan(&c)
				return c == 20
			})
			if st := g.Status(); len(st) != 1 || len(st[0].Reached) != 1 {
				t.Fatalf("the lock completed before the other shards reached it: %+v", st)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	stopLoads()
	if t.Failed() {
		t.FailNow()
	}
	for i, w := range workers {
		waitWorkerSynced(t, w, "merge", f.ups[i])
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks left: %+v", st)
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	for i, db := range f.updbs {
		for _, tb := range shardTables {
			if wantCols, gotCols := shardColumns(t, db, "shop", tb), shardColumns(t, f.downdb, "merged", "orders"); !slices.Equal(wantCols, gotCols) {
				t.Fatalf("downstream schema %q, %s's %s %q", gotCols, sourceName(i), tb, wantCols)
			}
		}
	}
	var ddlsApplied int64
	for _, w := range workers {
		ddlsApplied += taskStatus(w, "merge")().Syncer.DDLs
	}
	// Each shard DDL once, plus each source's CREATE DATABASE and CREATE
	// TABLEs.
	if want := int64(len(ddls) + n*(2+len(shardTables))); ddlsApplied != want {
		t.Fatalf("%d DDL applied, want %d: the %d shard DDLs once and the creations", ddlsApplied, want, len(ddls))
	}
}
