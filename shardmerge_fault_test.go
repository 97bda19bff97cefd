package dmworker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/faultnet"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// shardChildEnv makes the test binary run a shard merge "process" (an etcd
// shard group and the workers of some sources, subtask "merge") instead of
// the tests; its value is a shardChildSpec in JSON. The child prints
// "reading" once every subtask reads, and stops cleanly on SIGTERM.
const shardChildEnv = "DMWORKER_TEST_SHARD_CHILD"

type shardChildSpec struct {
	Etcd    []string           `json:"etcd"`
	Mode    dmworker.ShardMode `json:"mode"`
	Sources []string           `json:"sources"` // every source of the task
	Mine    []int              `json:"mine"`    // the child's, by index
	Ups     []string           `json:"ups"`     // user:pass@host:port of each of Mine
	Down    string             `json:"down"`
}

func init() {
	if spec := os.Getenv(shardChildEnv); spec != "" {
		os.Exit(shardChild(spec))
	}
}

func shardChild(spec string) int {
	var sp shardChildSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: sp.Etcd, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer cli.Close()
	g, err := dmworker.NewEtcdShardGroup(ctx, cli, testPrefix, "merge", sp.Sources...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer g.Close()
	db, err := childDB(sp.Down)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var workers []*dmworker.SourceWorker
	done := make(chan error, len(sp.Mine))
	for k, i := range sp.Mine {
		up, err := streamer.ParseUpstream(sp.Ups[k])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(db),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: up}),
			dmworker.WithShardGroup(g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0),
			dmworker.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := w.StartSubTask(shardMergeTask(sp.Mode, i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		go func() { done <- w.Run(ctx) }()
		workers = append(workers, w)
	}
	for _, w := range workers {
		for taskStatus(w, "merge")().Syncer.Read.Name == "" {
			select {
			case <-ctx.Done():
				return 1
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	fmt.Println("reading")
	code := 0
	for range workers {
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}

// shardMergeTask is the subtask of source i of the shard merge "processes".
func shardMergeTask(mode dmworker.ShardMode, i int) dmworker.SubTaskConfig {
	return dmworker.SubTaskConfig{Name: "merge", Routes: shardRoutes, ShardMode: mode,
		SyncerTuning: dmworker.SyncerTuning{BatchSize: 50, Workers: 1 + i%2*3}}
}

// shardChildProc is a shard merge process run by the test binary.
type shardChildProc struct {
	cmd *exec.Cmd
	out syncBuffer
}

// startShardChild starts a process with the workers of f's upstreams
// mine, and waits until their subtasks read.
func startShardChild(t *testing.T, e *testserver.Etcd, f *shardFleet, mode dmworker.ShardMode, mine ...int) *shardChildProc {
	t.Helper()
	sp := shardChildSpec{Etcd: e.Endpoints, Mode: mode, Mine: mine,
		Down: fmt.Sprintf("%s:%s@%s", f.down.User, f.down.Password, f.down.Addr())}
	for i := range f.ups {
		sp.Sources = append(sp.Sources, sourceName(i))
	}
	for _, i := range mine {
		sp.Ups = append(sp.Ups, fmt.Sprintf("%s:%s@%s", f.ups[i].User, f.ups[i].Password, f.ups[i].Addr()))
	}
	spec, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	c := &shardChildProc{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), shardChildEnv+"="+string(spec))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shard child output:\n%s", c.out.String())
		}
	})
	waitUntil(t, "the shard child reading", func() bool { return strings.Contains(c.out.String(), "reading") })
	return c
}

// kill kills the child with SIGKILL; it must not have ended on its own.
func (c *shardChildProc) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("shard child ended on its own (%v): %s", err, c.out.String())
	}
}

// stop stops the child with SIGTERM: its group closes (its lease revoked).
func (c *shardChildProc) stop(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("shard child: %v\n%s", err, c.out.String())
	}
}

// shardFaultCheck checks the end of a shard merge fault test, every source
// synced: no lock in the groups, merged.orders equal to the shards' union
// with their schema, each shard DDL run once downstream (ALTERs counted
// since before; unknown more may run again, in safe mode: the DDLs a
// process died while applying, whose outcome it could not know), no owner
// key left.
func shardFaultCheck(t *testing.T, e *testserver.Etcd, f *shardFleet, procs []*shardProc, before map[string]int64, ddls, unknown int) {
	t.Helper()
	for _, p := range procs {
		for _, w := range p.workers {
			waitWorkerSynced(t, w, "merge", f.ups[int(w.Name()[1]-'1')])
		}
	}
	for gi, p := range procs {
		waitUntil(t, fmt.Sprintf("no lock left in group %d", gi), func() bool { return len(p.g.Status()) == 0 })
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	wantCols, gotCols := shardColumns(t, f.updbs[0], "shop", "orders_01"), shardColumns(t, f.downdb, "merged", "orders")
	if !slices.Equal(wantCols, gotCols) {
		t.Fatalf("downstream schema %q, the shards' %q", gotCols, wantCols)
	}
	if d := comCounters(t, f.downdb)["com_alter_table"] - before["com_alter_table"]; d < int64(ddls) || d > int64(ddls+unknown) {
		t.Fatalf("downstream ran %d ALTERs for %d shard DDLs: want each once (%d more at most)", d, ddls, unknown)
	}
	resp, err := e.Client.Get(context.Background(), testPrefix+"shardowner/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("owner keys left: %v %v", resp, err)
	}
}

// TestShardMergeWorkerKilled: three sources merged through etcd shard
// groups (src1 and src2 in the test's process, src3 in a child process),
// pessimistic and optimistic, under a write load on every shard. While one
// shard DDL is under way (some shard tables have run it, others not: a
// random cut of a random DDL), the child is killed (SIGKILL: its lease is
// left to expire); the remaining shard tables run the DDL meanwhile, and
// the child is started again a random moment later. In the end the merged
// table equals the shards' union with their final schema, each shard DDL
// ran once downstream (once more at most: the kill may fall while the child
// applies one, and its next owner runs it again, in safe mode), and no lock
// nor owner key is left.
func TestShardMergeWorkerKilled(t *testing.T) {
	for mi, mode := range []dmworker.ShardMode{dmworker.ShardPessimistic, dmworker.ShardOptimistic} {
		t.Run(string(mode), func(t *testing.T) {
			seed := faultSeed(t)
			rnd := rand.New(rand.NewPCG(seed, 13))
			const n = 3
			f := newShardFleet(t, n, uint32(970+10*mi))
			e := testserver.StartEtcd(t)
			procA := startShardProcMode(t, e, f, []int{0, 1}, mysqlSinks(f.downdb), mode)
			stopped := false
			defer func() {
				if !stopped {
					procA.stop(t, false)
				}
			}()
			child := startShardChild(t, e, f, mode, 2)
			childAlive := true
			defer func() {
				if childAlive {
					child.kill(t)
				}
			}()
			for _, w := range procA.workers {
				waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
			}
			before := comCounters(t, f.downdb)
			for _, db := range f.updbs {
				mustExec(t, db, "CREATE DATABASE shop")
				for _, tb := range shardTables {
					mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
				}
			}
			stopLoads := startShardLoads(t, f)
			defer stopLoads()
			ddls := []string{
				"ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'",
				"ALTER TABLE shop.%s ADD INDEX idx_customer (customer)",
				"ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL",
			}
			if mode == dmworker.ShardOptimistic {
				ddls = optDDLs
			}
			shards := allShards(n)
			killDDL, killAt := rnd.IntN(len(ddls)), 1+rnd.IntN(len(shards)-1)
			t.Logf("the child dies in DDL %d after %d of %d shard tables ran it", killDDL, killAt, len(shards))
			for k, ddl := range ddls {
				order := slices.Clone(shards)
				rnd.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
				for x, sh := range order {
					time.Sleep(time.Duration(20+rnd.IntN(120)) * time.Millisecond)
					if k == killDDL && x == killAt {
						child.kill(t)
						childAlive = false
					}
					mustExec(t, f.updbs[sh.i], fmt.Sprintf(ddl, shardTables[sh.j]))
				}
				if k == killDDL {
					time.Sleep(time.Duration(rnd.IntN(1500)) * time.Millisecond)
					child = startShardChild(t, e, f, mode, 2)
					childAlive = true
				}
			}
			time.Sleep(300 * time.Millisecond)
			stopLoads()
			if t.Failed() {
				t.FailNow()
			}
			// The child's source goes on in this process for the checks,
			// once every step is applied: a stop in the middle of applying
			// one would leave its outcome unknown.
			for _, w := range procA.workers {
				waitWorkerSynced(t, w, "merge", f.ups[int(w.Name()[1]-'1')])
			}
			waitUntil(t, "no lock left", func() bool { return len(procA.g.Status()) == 0 })
			child.stop(t)
			childAlive = false
			procB := startShardProcMode(t, e, f, []int{2}, mysqlSinks(f.downdb), mode)
			defer procB.stop(t, false)
			// The kill may fall while the child applies a step (the one
			// before, late): its next owner runs it again.
			shardFaultCheck(t, e, f, []*shardProc{procA, procB}, before, len(ddls), 1)
		})
	}
}

// changeLog records the changes a source's sinks apply.
type changeLog struct {
	mu      sync.Mutex
	changes []dmworker.Change
}

func (l *changeLog) sinks(db *sql.DB) dmworker.SinkFactory {
	return func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		s, err := mysqlsink.New(db)
		return &logSink{Sink: s, l: l}, err
	}
}

// of returns the changes recorded of the upstream table schema.name.
func (l *changeLog) of(schema, name string) []dmworker.Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []dmworker.Change
	for _, c := range l.changes {
		if c.Table.SourceSchema == schema && c.Table.SourceName == name {
			out = append(out, c)
		}
	}
	return out
}

type logSink struct {
	*mysqlsink.Sink
	l *changeLog
}

func (s *logSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	if err := s.Sink.Apply(ctx, b); err != nil {
		return err
	}
	s.l.mu.Lock()
	s.l.changes = append(s.l.changes, b.Changes...)
	s.l.mu.Unlock()
	return nil
}

// TestShardMergeChainedStepReplay: pessimistic mode, two sources. src1's
// orders_01 reaches step A (held: the floor goes before it); its
// orders_02 changes rows, reaches A, changes them again (held), and
// reaches step B, which waits for A with the whole stream; src2 reaches A,
// A completes and is released, and B holds. The floor must now be before
// B, not the older one before A. src1's process then dies (its worker
// stopped) and starts again: the replay must not apply again the changes
// of orders_02 before its last arrival (B), which were applied (it met
// orders_02's older arrival at A on the way, which must not move where the
// shard last arrived back). In the end the merged table equals the shards.
func TestShardMergeChainedStepReplay(t *testing.T) {
	noLeaks(t)
	f := newShardFleet(t, 2, 990)
	g, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1))
	if err != nil {
		t.Fatal(err)
	}
	start := func(i int, sinks dmworker.SinkFactory) (*dmworker.SourceWorker, func()) {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), sinks,
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(shardMergeTask(dmworker.ShardPessimistic, i)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("%s: %v", w.Name(), err)
				}
			})
		}
		t.Cleanup(stop)
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
		return w, stop
	}
	var first changeLog
	w1, stop1 := start(0, first.sinks(f.downdb))
	w2, _ := start(1, mysqlSinks(f.downdb))
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range shardTables {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	up1 := f.updbs[0]
	for i := range 10 {
		mustExec(t, up1, "INSERT INTO shop.orders_02 (id, customer, amount, note) VALUES (?, 'c', 1, 'orders_02')", 1000+i)
		mustExec(t, up1, "INSERT INTO shop.orders_01 (id, customer, amount, note) VALUES (?, 'c', 1, 'orders_01')", 2000+i)
	}
	const stepA = "ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'"
	const stepB = "ALTER TABLE shop.%s ADD INDEX idx_customer (customer)"
	mustExec(t, up1, fmt.Sprintf(stepA, "orders_01"))
	waitUntil(t, "src1's orders_01 held at A", func() bool {
		st := g.Status()
		return len(st) == 1 && len(st[0].Reached) == 1
	})
	mustExec(t, up1, "UPDATE shop.orders_02 SET amount = amount + 1")
	mustExec(t, up1, fmt.Sprintf(stepA, "orders_02"))
	mustExec(t, up1, "UPDATE shop.orders_02 SET amount = amount + 10")
	beforeB := upstreamEnd(t, f.ups[0])
	mustExec(t, up1, fmt.Sprintf(stepB, "orders_02"))
	lastB := upstreamEnd(t, f.ups[0])
	for _, tb := range shardTables {
		mustExec(t, f.updbs[1], fmt.Sprintf(stepA, tb))
	}
	waitUntil(t, "src1's orders_02 held at B", func() bool {
		st := g.Status()
		return len(st) == 1 && strings.Contains(st[0].Statement, "idx_customer") && len(st[0].Reached) == 1
	})
	mustExec(t, up1, "UPDATE shop.orders_02 SET amount = amount + 100")
	end := upstreamEnd(t, f.ups[0])
	waitUntil(t, "src1 read to the end", func() bool { return taskStatus(w1, "merge")().Syncer.Read.Compare(end) >= 0 })
	// The floor while B holds is before B, after A.
	probe, err := mysqlsink.New(f.downdb)
	if err != nil {
		t.Fatal(err)
	}
	var cp dmworker.Checkpoint
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		if cp, ok, err = probe.LoadCheckpoint(context.Background(), "merge", sourceName(0)); err != nil {
			t.Fatal(err)
		}
		if ok && cp.Pos.Compare(beforeB) >= 0 {
			break
		}
		if time.Now().After(deadline) {
			// (Go on: the replay below checks the worse effect.)
			t.Errorf("src1's checkpoint at %s while B (at %s) holds: the floor is not before B but older", cp.Pos, beforeB)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cp.Pos.Compare(lastB) >= 0 {
		t.Fatalf("src1's checkpoint at %s, past the held DDL B at %s", cp.Pos, beforeB)
	}

	stop1()
	var second changeLog
	w1, _ = start(0, second.sinks(f.downdb))
	waitUntil(t, "src1 read to the end again", func() bool { return taskStatus(w1, "merge")().Syncer.Read.Compare(end) >= 0 })
	mustExec(t, up1, fmt.Sprintf(stepB, "orders_01"))
	for _, tb := range shardTables {
		mustExec(t, f.updbs[1], fmt.Sprintf(stepB, tb))
	}
	waitWorkerSynced(t, w1, "merge", f.ups[0])
	waitWorkerSynced(t, w2, "merge", f.ups[1])
	for _, c := range second.of("shop", "orders_02") {
		if c.TxnPos.Compare(lastB) < 0 {
			t.Fatalf("the restarted src1 applied again a change of orders_02 at %s, before its last arrival (B, ending at %s): %+v",
				c.TxnPos, lastB, c.After)
		}
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
}

// TestShardMergeReplayPastOlderArrival: pessimistic mode, two sources, two
// merged tables. src1's items_01 holds a step of merged.items (the floor
// goes before it, and stays while it holds). Meanwhile src1's orders_02
// reaches step A of merged.orders, which completes, changes rows, and
// reaches step B (held). src1's process dies and starts again: its replay
// from the floor meets orders_02's arrival at A, older than its last one
// (B), and must not apply again the changes before B, applied already.
func TestShardMergeReplayPastOlderArrival(t *testing.T) {
	noLeaks(t)
	f := newShardFleet(t, 2, 995)
	g, err := dmworker.NewShardGroup("merge", sourceName(0), sourceName(1))
	if err != nil {
		t.Fatal(err)
	}
	routes := append([]dmworker.RouteRule{{SchemaPattern: "shop", TablePattern: "items_*", TargetSchema: "merged", TargetTable: "items"}}, shardRoutes...)
	start := func(i int, sinks dmworker.SinkFactory) (*dmworker.SourceWorker, func()) {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), sinks,
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0))
		if err != nil {
			t.Fatal(err)
		}
		cfg := shardMergeTask(dmworker.ShardPessimistic, i)
		cfg.Routes = routes
		if err := w.StartSubTask(cfg); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("%s: %v", w.Name(), err)
				}
			})
		}
		t.Cleanup(stop)
		waitUntil(t, w.Name()+" reading", func() bool { return taskStatus(w, "merge")().Syncer.Read.Name != "" })
		return w, stop
	}
	w1, stop1 := start(0, mysqlSinks(f.downdb))
	w2, _ := start(1, mysqlSinks(f.downdb))
	for _, db := range f.updbs {
		mustExec(t, db, "CREATE DATABASE shop")
		for _, tb := range append([]string{"items_01"}, shardTables...) {
			mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
		}
	}
	up1 := f.updbs[0]
	for i := range 10 {
		mustExec(t, up1, "INSERT INTO shop.orders_02 (id, customer, amount, note) VALUES (?, 'c', 1, 'orders_02')", 1000+i)
	}
	locks := func(what string, cond func([]dmworker.ShardLockStatus) bool) {
		waitUntil(t, what, func() bool { return cond(g.Status()) })
	}
	const stepY = "ALTER TABLE shop.items_01 ADD COLUMN extra INT NULL"
	const stepA = "ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'"
	const stepB = "ALTER TABLE shop.%s ADD INDEX idx_customer (customer)"
	mustExec(t, up1, stepY)
	locks("merged.items held", func(st []dmworker.ShardLockStatus) bool { return len(st) == 1 })
	for _, tb := range shardTables {
		mustExec(t, up1, fmt.Sprintf(stepA, tb))
	}
	mustExec(t, up1, "UPDATE shop.orders_02 SET amount = amount + 1")
	for _, tb := range shardTables {
		mustExec(t, f.updbs[1], fmt.Sprintf(stepA, tb))
	}
	locks("step A done", func(st []dmworker.ShardLockStatus) bool { return len(st) == 1 && st[0].Target == "merged.items" })
	mustExec(t, up1, "UPDATE shop.orders_02 SET amount = amount + 10")
	mustExec(t, up1, fmt.Sprintf(stepB, "orders_02"))
	lastB := upstreamEnd(t, f.ups[0])
	locks("step B held", func(st []dmworker.ShardLockStatus) bool { return len(st) == 2 })
	mustExec(t, up1, "UPDATE shop.orders_02 SET amount = amount + 100")
	end := upstreamEnd(t, f.ups[0])
	waitUntil(t, "src1 read to the end", func() bool { return taskStatus(w1, "merge")().Syncer.Read.Compare(end) >= 0 })

	stop1()
	var second changeLog
	w1, _ = start(0, second.sinks(f.downdb))
	waitUntil(t, "src1 read to the end again", func() bool { return taskStatus(w1, "merge")().Syncer.Read.Compare(end) >= 0 })
	mustExec(t, up1, fmt.Sprintf(stepB, "orders_01"))
	mustExec(t, f.updbs[1], stepY)
	for _, tb := range shardTables {
		mustExec(t, f.updbs[1], fmt.Sprintf(stepB, tb))
	}
	waitWorkerSynced(t, w1, "merge", f.ups[0])
	waitWorkerSynced(t, w2, "merge", f.ups[1])
	for _, c := range second.of("shop", "orders_02") {
		if c.TxnPos.Compare(lastB) < 0 {
			t.Fatalf("the restarted src1 applied again a change of orders_02 at %s, before its last arrival (B, ending at %s): %+v",
				c.TxnPos, lastB, c.After)
		}
	}
	want, got := f.unionRows(t), tableRows(t, f.downdb, "merged.orders")
	if !slices.Equal(want, got) {
		t.Fatalf("merged.orders has %d rows, the shards' union %d; they differ: %s", len(got), len(want), rowDiff(want, got))
	}
	if len(g.Status()) != 0 {
		t.Fatalf("locks left: %+v", g.Status())
	}
}

// startShardProcClient is startShardProcMode with the process's etcd
// client given (one through a fault proxy), and its subtasks resuming by
// themselves after a retryable error (an etcd fault is one).
func startShardProcClient(t *testing.T, cli *clientv3.Client, f *shardFleet, srcs []int, mode dmworker.ShardMode) *shardProc {
	t.Helper()
	p := &shardProc{srcs: srcs, cli: cli, done: make(chan error, len(srcs))}
	var names []string
	for i := range f.ups {
		names = append(names, sourceName(i))
	}
	var err error
	if p.g, err = dmworker.NewEtcdShardGroup(context.Background(), cli, testPrefix, "merge", names...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	for _, i := range srcs {
		w, err := dmworker.NewSourceWorker(fmt.Sprintf("w%d", i+1), mysqlSinks(f.downdb),
			dmworker.WithSource(dmworker.SourceConfig{Name: sourceName(i), Upstream: upstreamOf(f.ups[i])}),
			dmworker.WithShardGroup(p.g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 1000))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.StartSubTask(shardMergeTask(mode, i)); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- w.Run(ctx) }()
		p.workers = append(p.workers, w)
	}
	return p
}

// TestShardMergeEtcdCut: three sources merged through etcd shard groups
// (src1 and src2 in one process whose etcd client goes through a fault
// proxy, src3 in another), pessimistic and optimistic, under a write load.
// In the middle of a shard DDL (a random cut of a random DDL) the first
// process's etcd connection fails: cut again and again for two seconds,
// stalled for 0.5 to 9 seconds (past the shard group's lease, 10s, two
// thirds of which without a renewal count it lost), or left half-open.
// In the end the merged table equals the shards' union with their final
// schema, each shard DDL ran once downstream, and no lock nor owner key is
// left.
func TestShardMergeEtcdCut(t *testing.T) {
	for mi, mode := range []dmworker.ShardMode{dmworker.ShardPessimistic, dmworker.ShardOptimistic} {
		t.Run(string(mode), func(t *testing.T) {
			seed := faultSeed(t)
			rnd := rand.New(rand.NewPCG(seed, 14))
			const n = 3
			f := newShardFleet(t, n, uint32(1010+10*mi))
			e := testserver.StartEtcd(t)
			px, err := faultnet.New(strings.TrimPrefix(e.Endpoints[0], "http://"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { px.Close() })
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{px.Addr()}, DialTimeout: 2 * time.Second,
				DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() })
			procs := []*shardProc{startShardProcClient(t, cli, f, []int{0, 1}, mode),
				startShardProcClient(t, e.NewClient(t), f, []int{2}, mode)}
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
			before := comCounters(t, f.downdb)
			for _, db := range f.updbs {
				mustExec(t, db, "CREATE DATABASE shop")
				for _, tb := range shardTables {
					mustExec(t, db, "CREATE TABLE shop."+tb+" "+shardOrdersDef)
				}
			}
			stopLoads := startShardLoads(t, f)
			defer stopLoads()
			ddls := []string{
				"ALTER TABLE shop.%s ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'",
				"ALTER TABLE shop.%s ADD INDEX idx_customer (customer)",
				"ALTER TABLE shop.%s MODIFY customer VARCHAR(80) NOT NULL",
			}
			if mode == dmworker.ShardOptimistic {
				ddls = optDDLs
			}
			shards := allShards(n)
			faultDDL, faultAt, kind := rnd.IntN(len(ddls)), 1+rnd.IntN(len(shards)-1), rnd.IntN(3)
			stall := time.Duration(500+rnd.IntN(8500)) * time.Millisecond
			cutWaits := make([]time.Duration, 64)
			for i := range cutWaits {
				cutWaits[i] = time.Duration(50+rnd.IntN(250)) * time.Millisecond
			}
			faultDone := make(chan struct{})
			fault := func() {
				defer close(faultDone)
				switch kind {
				case 0:
					end := time.Now().Add(2 * time.Second)
					for i := 0; time.Now().Before(end); i++ {
						px.CutAll()
						time.Sleep(cutWaits[i%len(cutWaits)])
					}
				case 1:
					px.Stall(true)
					time.Sleep(stall)
					px.Stall(false)
				case 2:
					px.StallOpen()
				}
			}
			t.Logf("DDL %d after %d of %d shard tables: fault %s", faultDDL, faultAt, len(shards),
				[]string{"cut for 2s", "stalled for " + stall.String(), "half-open"}[kind])
			for k, ddl := range ddls {
				order := slices.Clone(shards)
				rnd.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
				for x, sh := range order {
					time.Sleep(time.Duration(20+rnd.IntN(120)) * time.Millisecond)
					if k == faultDDL && x == faultAt {
						go fault()
					}
					mustExec(t, f.updbs[sh.i], fmt.Sprintf(ddl, shardTables[sh.j]))
				}
			}
			<-faultDone
			time.Sleep(300 * time.Millisecond)
			stopLoads()
			if t.Failed() {
				t.FailNow()
			}
			shardFaultCheck(t, e, f, procs, before, len(ddls), 0)
		})
	}
}
