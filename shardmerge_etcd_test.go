package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
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
	stopLoads := startShardLoads(t, f)
	ddls := []string{
		"ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'",
		"ALTER TABLE shop.%s ADD INDEX idx_customer (customer)",
		"ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL",
		"ALTER TABLE shop.%s ADD COLUMN legacy INT NULL",
		"ALTER TABLE shop.%s DROP COLUMN legacy",
	}
	rng := rand.New(rand.NewPCG(570, 1))
	for k, ddl := range ddls {
		order := allShards(n)
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
	stopLoads()
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

// ddlTrap traps, once armed, the first ExecDDL of a statement holding
// word: it reports the source and blocks until the worker's context ends
// (the process killed in the middle of applying it), then fails.
type ddlTrap struct {
	mu    sync.Mutex
	armed string
	hit   chan string
}

func (tr *ddlTrap) arm(word string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.armed = word
}

func (tr *ddlTrap) sinks(db *sql.DB) dmworker.SinkFactory {
	return func(_ context.Context, src dmworker.SourceConfig, _ dmworker.SubTaskConfig) (dmworker.Sink, error) {
		s, err := mysqlsink.New(db)
		return &trapSink{Sink: s, tr: tr, src: src.Name}, err
	}
}

type trapSink struct {
	*mysqlsink.Sink
	tr  *ddlTrap
	src string
}

func (s *trapSink) ExecDDL(ctx context.Context, d *dmworker.DDL) error {
	s.tr.mu.Lock()
	if w := s.tr.armed; w != "" && strings.Contains(d.Query, w) {
		s.tr.armed = ""
		s.tr.mu.Unlock()
		s.tr.hit <- s.src
		<-ctx.Done()
		return errors.New("killed while applying the DDL")
	}
	s.tr.mu.Unlock()
	return s.Sink.ExecDDL(ctx, d)
}

// shardProc is a "process" of TestShardMergeEtcdOwnerKilled: its etcd
// client, ShardGroup and workers (of the upstreams srcs).
type shardProc struct {
	srcs    []int
	cli     *clientv3.Client
	g       *dmworker.ShardGroup
	cancel  context.CancelFunc
	workers []*dmworker.SourceWorker
	done    chan error
}

func startShardProc(t *testing.T, e *testserver.Etcd, f *shardFleet, srcs []int, sinks dmworker.SinkFactory) *shardProc {
	t.Helper()
	return startShardProcMode(t, e, f, srcs, sinks, dmworker.ShardPessimistic)
}

// startShardProcMode is startShardProc with the subtasks in shard mode.
func startShardProcMode(t *testing.T, e *testserver.Etcd, f *shardFleet, srcs []int, sinks dmworker.SinkFactory, mode dmworker.ShardMode) *shardProc {
	t.Helper()
	p := &shardProc{srcs: srcs, cli: e.NewClient(t), done: make(chan error, len(srcs))}
	var names []string
	for i := range f.ups {
		names = append(names, sourceName(i))
	}
	var err error
	if p.g, err = dmworker.NewEtcdShardGroup(context.Background(), p.cli, testPrefix, "merge", names...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	for _, i := range srcs {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), sinks,
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(p.g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: mode,
			SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}}); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- w.Run(ctx) }()
		p.workers = append(p.workers, w)
	}
	return p
}

// stop ends the process: killed, its etcd client closed first so that its
// lease is not revoked (it expires, as after a kill -9); else stopped.
func (p *shardProc) stop(t *testing.T, killed bool) {
	if killed {
		_ = p.cli.Close()
	}
	p.cancel()
	for range p.workers {
		if err := <-p.done; err != nil && !killed {
			t.Errorf("worker Run: %v", err)
		}
	}
	if err := p.g.Close(); err != nil && !killed {
		t.Errorf("close the shard group: %v", err)
	}
}

// TestShardMergeEtcdOwnerKilled: three sources in two processes (src1 and
// src2, src3) coordinating through etcd under a write load; the process
// that claims a shard DDL dies while applying it (its etcd lease left to
// expire). The other process's group takes the claim over once the lease
// is gone and applies the DDL; the dead process, started again with a new
// group, passes the DDL; a later DDL coordinates as usual; in the end the
// downstream equals the shards' union, with no lock nor owner key left.
func TestShardMergeEtcdOwnerKilled(t *testing.T) {
	noLeaks(t)
	const n = 3
	f := newShardFleet(t, n, 580)
	e := testserver.StartEtcd(t)
	tr := &ddlTrap{hit: make(chan string, 1)}
	split := [][]int{{0, 1}, {2}}
	procs := []*shardProc{startShardProc(t, e, f, split[0], tr.sinks(f.downdb)), startShardProc(t, e, f, split[1], tr.sinks(f.downdb))}
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
	stopLoads := startShardLoads(t, f)
	const addCol = "ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'"
	time.Sleep(100 * time.Millisecond)
	// Every shard table but src1's orders_02 reaches the DDL.
	for i := range n {
		for _, tb := range shardTables {
			if i == 0 && tb == "orders_02" {
				continue
			}
			mustExec(t, f.updbs[i], fmt.Sprintf(addCol, tb))
		}
	}
	for gi, p := range procs {
		waitUntil(t, fmt.Sprintf("five shards held, seen by group %d", gi), func() bool {
			st := p.g.Status()
			return len(st) == 1 && len(st[0].Reached) == 5
		})
	}
	tr.arm("region")
	mustExec(t, f.updbs[0], fmt.Sprintf(addCol, "orders_02"))
	var afterDDL [n]streamer.Position
	for i := range n {
		afterDDL[i] = upstreamEnd(t, f.ups[i])
	}
	var owner string
	select {
	case owner = <-tr.hit:
	case <-time.After(time.Minute):
		t.Fatal("nobody applies the DDL")
	}
	dead := 0
	if owner == sourceName(2) {
		dead = 1
	}
	t.Logf("%s's process (%d) claimed the DDL and dies", owner, dead)
	procs[dead].stop(t, true)
	// The other process takes over once the dead one's lease expires.
	for _, w := range procs[1-dead].workers {
		i := int(w.Name()[1] - '1')
		waitUntil(t, w.Name()+" past the DDL", func() bool { return taskStatus(w, "merge")().Syncer.Checkpoint.Compare(afterDDL[i]) >= 0 })
	}
	procs[dead] = startShardProc(t, e, f, split[dead], mysqlSinks(f.downdb))
	for _, w := range procs[dead].workers {
		i := int(w.Name()[1] - '1')
		waitUntil(t, w.Name()+" past the DDL after its restart", func() bool {
			return taskStatus(w, "merge")().Syncer.Checkpoint.Compare(afterDDL[i]) >= 0
		})
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
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	wantCols, gotCols := shardColumns(t, f.updbs[0], "shop", "orders_01"), shardColumns(t, f.downdb, "merged", "orders")
	if !slices.Equal(wantCols, gotCols) {
		t.Fatalf("downstream schema %q, the shards' %q", gotCols, wantCols)
	}
	resp, err := e.Client.Get(context.Background(), testPrefix+"shardowner/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("owner keys left: %v %v", resp, err)
	}
}
