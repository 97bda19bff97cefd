package dmworker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
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
			dmworker.WithShardGroup(g), dmworker.WithAutoResume(50*time.Millisecond, time.Second, 0))
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
// since before), no owner key left.
func shardFaultCheck(t *testing.T, e *testserver.Etcd, f *shardFleet, procs []*shardProc, before map[string]int64, ddls int) {
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
	if d := comCounters(t, f.downdb)["com_alter_table"] - before["com_alter_table"]; d != int64(ddls) {
		t.Fatalf("downstream ran %d ALTERs for %d shard DDLs: want each once", d, ddls)
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
// ran once downstream, and no lock nor owner key is left.
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
			// The child's source goes on in this process for the checks.
			child.stop(t)
			childAlive = false
			procB := startShardProcMode(t, e, f, []int{2}, mysqlSinks(f.downdb), mode)
			defer procB.stop(t, false)
			shardFaultCheck(t, e, f, []*shardProc{procA, procB}, before, len(ddls))
		})
	}
}
