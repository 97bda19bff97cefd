package dmworker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// shardSteps runs steps DDL steps of target in g, each reached by shard
// table s.t of every source of srcs in turn (the last arrival applies it),
// with arrival positions from *off on.
func shardSteps(t *testing.T, g *ShardGroup, store ShardLockStore, srcs []string, target string, from, steps int, off *uint32) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+steps; i++ {
		stmt := fmt.Sprintf("ALTER TABLE `m`.`o` ADD COLUMN `c%d` INT", i)
		var holds []*shardHold
		for _, src := range srcs {
			*off += 100
			var h *shardHold
			if err := g.arriveHold(ctx, store, ShardRef{src, "s.t"}, target, stmt, shardPos(*off), func() error { return nil }, &h); err != nil {
				t.Fatalf("step %d, source %s: %v", i, src, err)
			}
			if h != nil {
				holds = append(holds, h)
			}
		}
		for _, h := range holds {
			if settled, _, _ := h.chans(); !settled {
				t.Fatalf("step %d not applied once every source reached it", i)
			}
		}
	}
}

// storedSize is the size of target's stored lock (0 when none).
func storedSize(t *testing.T, store ShardLockStore, task, target string) int {
	t.Helper()
	m, err := store.LoadShardLocks(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	return len(m[target])
}

// TestShardGroupStepsCompacted: a pessimistic lock keeps the steps in
// flight, not every DDL its target ever had. Before, every applied step
// stayed in memory and in the stored value (written whole at every
// arrival): after 2,000 DDLs of one merged table the lock held 2,000
// steps and its stored value was about 1 MB, so each arrival wrote
// about 1 MB, and the work of N DDLs grew as N² (46 s for these 2,000,
// without the race detector). Now the steps applied and
// passed by every shard are compacted away: the lock holds at most one
// step and its stored value stays the size it had after 10 DDLs. A new
// process loaded from the store tells a replay of an old arrival (it
// passes, nothing runs) and coordinates the next step as before.
func TestShardGroupStepsCompacted(t *testing.T) {
	ctx := context.Background()
	const target = "m.o"
	srcs := []string{"a", "b", "c"}
	store := &MemoryCheckpointStore{}
	g, _ := NewShardGroup("t", srcs...)
	for _, src := range srcs {
		if err := g.begin(ctx, store, src, map[string][]string{target: {"s.t"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var off uint32
	shardSteps(t, g, store, srcs, target, 0, 10, &off)
	small := storedSize(t, store, "t", target)
	shardSteps(t, g, store, srcs, target, 10, 1990, &off)
	g.mu.Lock()
	rounds, base := len(g.locks[target].rounds), g.locks[target].base
	g.mu.Unlock()
	size := storedSize(t, store, "t", target)
	t.Logf("after 10 steps: stored %d bytes; after 2000: %d steps kept (%d compacted), stored %d bytes", small, rounds, base, size)
	if rounds > 1 || size > 2*small {
		t.Fatalf("after 2000 applied DDLs the lock keeps %d steps and its stored value is %d bytes (%d after 10)", rounds, size, small)
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks held: %+v", st)
	}

	// A restarted process: a replay of an old arrival passes without
	// running anything; the next step waits for every source, then runs
	// once.
	g2, _ := NewShardGroup("t", srcs...)
	var execs int
	exec := func() error { execs++; return nil }
	var h *shardHold
	if err := g2.arriveHold(ctx, store, ShardRef{"a", "s.t"}, target, "ALTER TABLE `m`.`o` ADD COLUMN `c5` INT", shardPos(1600), exec, &h); err != nil || h != nil || execs != 0 {
		t.Fatalf("replayed arrival: %v, held %v, %d run", err, h != nil, execs)
	}
	next := "ALTER TABLE `m`.`o` ADD COLUMN `next` INT"
	for i, src := range srcs {
		h = nil
		off += 100
		if err := g2.arriveHold(ctx, store, ShardRef{src, "s.t"}, target, next, shardPos(off), exec, &h); err != nil {
			t.Fatalf("%s at the next step: %v", src, err)
		}
		if last := i == len(srcs)-1; (h == nil) != last || execs != map[bool]int{false: 0, true: 1}[last] {
			t.Fatalf("%s at the next step: held %v, %d run", src, h != nil, execs)
		}
	}
	// A differing statement at a step still stops the group.
	if err := g2.arriveHold(ctx, store, ShardRef{"a", "s.t"}, target, "ALTER TABLE `m`.`o` ADD COLUMN `x` INT", shardPos(off+100), exec, &h); err != nil {
		t.Fatal(err)
	}
	var conflict *ShardDDLConflictError
	if err := g2.arriveHold(ctx, store, ShardRef{"b", "s.t"}, target, "ALTER TABLE `m`.`o` ADD COLUMN `y` INT", shardPos(off+200), exec, &h); !errors.As(err, &conflict) {
		t.Fatalf("differing DDL after compaction: %v", err)
	}
}

// TestShardGroupStepsKeptForUnknownShards: a step is not compacted away
// while a source's shard tables are not known (its syncer has not started
// here): a late shard of it must still find the step's statement.
func TestShardGroupStepsKeptForUnknownShards(t *testing.T) {
	ctx := context.Background()
	const target = "m.o"
	g, _ := NewShardGroup("t", "a", "b")
	if err := g.begin(ctx, nil, "a", map[string][]string{target: {"s.t"}}, nil); err != nil {
		t.Fatal(err)
	}
	var off uint32
	shardSteps(t, g, nil, []string{"a", "b"}, target, 0, 5, &off)
	g.mu.Lock()
	rounds := len(g.locks[target].rounds)
	g.mu.Unlock()
	if rounds != 5 {
		t.Fatalf("%d steps kept, want all 5 (b's other shard tables are unknown)", rounds)
	}
	// b's second shard table reaches the first step late: it passes.
	if err := g.arrive(ctx, nil, ShardRef{"b", "s.u"}, target, "ALTER TABLE `m`.`o` ADD COLUMN `c0` INT", shardPos(off+100), func() error {
		return fmt.Errorf("ran again")
	}); err != nil {
		t.Fatal(err)
	}
}

// TestShardGroupDroppedTargetsForgotten: the lock of a merged table whose
// shard tables are all dropped upstream goes, from memory and from the
// store. Before, create-alter-drop of 500 merged tables left 500 locks in
// the group and 500 values in the store (about 200 KB) forever.
func TestShardGroupDroppedTargetsForgotten(t *testing.T) {
	ctx := context.Background()
	srcs := []string{"a", "b"}
	store := &MemoryCheckpointStore{}
	g, _ := NewShardGroup("t", srcs...)
	for _, src := range srcs {
		if err := g.begin(ctx, store, src, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	var off uint32
	for i := range 500 {
		target := fmt.Sprintf("m.o%d", i)
		for _, src := range srcs {
			off += 100
			if err := g.join(ctx, store, ShardRef{src, "s.t"}, target, shardPos(off)); err != nil {
				t.Fatal(err)
			}
		}
		shardSteps(t, g, store, srcs, target, 0, 2, &off)
		for _, src := range srcs {
			if err := g.leave(ctx, store, ShardRef{src, "s.t"}, target, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	stored, err := store.LoadShardLocks(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	n := len(g.locks)
	g.mu.Unlock()
	if n != 0 || len(stored) != 0 {
		t.Fatalf("after 500 merged tables were made and dropped: %d locks in memory, %d stored", n, len(stored))
	}
	// A table made again with a dropped one's name is coordinated afresh.
	target := "m.o7"
	for _, src := range srcs {
		off += 100
		if err := g.join(ctx, store, ShardRef{src, "s.t"}, target, shardPos(off)); err != nil {
			t.Fatal(err)
		}
	}
	shardSteps(t, g, store, srcs, target, 0, 1, &off)
}

// TestEtcdShardGroupStepsCompacted: through etcd too, the lock of a
// target (its key under <prefix>shardlock/) keeps the steps in flight:
// two processes, three sources, 100 DDLs; the stored value stays the size
// it had after 5 (before: it held every step, 51 KB after 100 against 2.6 KB after 5).
func TestEtcdShardGroupStepsCompacted(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const target = "db.t"
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, target, []string{"d.t1"},
		[][]string{{"s1", "s2"}, {"s3"}}, "s1", "s2", "s3")
	groupOf := map[string]*ShardGroup{"s1": gs[0], "s2": gs[0], "s3": gs[1]}
	stored := func() int {
		resp, err := e.Client.Get(ctx, "/sgtest/shardlock/task/"+target)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("stored lock: %v %v", resp, err)
		}
		return len(resp.Kvs[0].Value)
	}
	var execs atomic.Int32
	var small int
	for k := range 100 {
		stmt := fmt.Sprintf("ALTER TABLE `db`.`t` ADD COLUMN `c%d` INT", k)
		errs := make(chan error, 3)
		for src, g := range groupOf {
			go func() {
				pos := streamer.Position{Name: "mysql-bin.000001", Offset: uint64(1000 * (k + 1))}
				errs <- g.arrive(ctx, nil, ShardRef{src, "d.t1"}, target, stmt, pos, func() error { execs.Add(1); return nil })
			}()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatalf("step %d: %v", k, err)
			}
		}
		if k == 4 {
			small = stored()
		}
	}
	size := stored()
	kept := make([]int, len(gs))
	for i, g := range gs {
		g.mu.Lock()
		kept[i] = len(g.locks[target].rounds)
		g.mu.Unlock()
	}
	t.Logf("stored after 5 steps: %d bytes, after 100: %d bytes; steps kept in the groups: %v; DDLs run: %d", small, size, kept, execs.Load())
	if execs.Load() < 100 || size > 2*small || kept[0] > 2 || kept[1] > 2 {
		t.Fatalf("after 100 DDLs (%d runs): stored %d bytes (%d after 5), steps kept %v", execs.Load(), size, small, kept)
	}
}

// TestEtcdShardGroupDroppedTargetsForgotten: through etcd, the lock of a
// merged table whose shard tables are all dropped goes too: its key under
// <prefix>shardlock/ is deleted and both processes drop it. Before, 20
// merged tables made, altered once and dropped (and the seed's) left 21
// keys and 21 locks in each process.
func TestEtcdShardGroupDroppedTargetsForgotten(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, "db.seed", []string{"d.seed"},
		[][]string{{"s1", "s2"}, {"s3"}}, "s1", "s2", "s3")
	groupOf := map[string]*ShardGroup{"s1": gs[0], "s2": gs[0], "s3": gs[1]}
	// The seed target's shard tables go first.
	for src, g := range groupOf {
		if err := g.leave(ctx, nil, ShardRef{src, "d.seed"}, "db.seed", true); err != nil {
			t.Fatal(err)
		}
	}
	var off uint64
	for k := range 20 {
		target := fmt.Sprintf("db.t%d", k)
		for src, g := range groupOf {
			off += 100
			if err := g.join(ctx, nil, ShardRef{src, "d.t"}, target, streamer.Position{Name: "mysql-bin.000001", Offset: off}); err != nil {
				t.Fatal(err)
			}
		}
		stmt := fmt.Sprintf("ALTER TABLE `db`.`t%d` ADD COLUMN `c` INT", k)
		errs := make(chan error, 3)
		for src, g := range groupOf {
			go func() {
				off := uint64(100000 + 1000*k)
				errs <- g.arrive(ctx, nil, ShardRef{src, "d.t"}, target, stmt, streamer.Position{Name: "mysql-bin.000001", Offset: off}, func() error { return nil })
			}()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatalf("%s: %v", target, err)
			}
		}
		for src, g := range groupOf {
			if err := g.leave(ctx, nil, ShardRef{src, "d.t"}, target, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func() (keys int, locks []int) {
		resp, err := e.Client.Get(ctx, "/sgtest/shardlock/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			g.mu.Lock()
			locks = append(locks, len(g.locks))
			g.mu.Unlock()
		}
		return int(resp.Count), locks
	}
	waitFor(t, func() bool { keys, locks := count(); return keys == 0 && locks[0] == 0 && locks[1] == 0 })
	// A merged table made again with a dropped one's name is coordinated
	// afresh.
	target := "db.t3"
	for src, g := range groupOf {
		if err := g.join(ctx, nil, ShardRef{src, "d.t"}, target, streamer.Position{Name: "mysql-bin.000001", Offset: 900000}); err != nil {
			t.Fatal(err)
		}
	}
	var execs atomic.Int32
	errs := make(chan error, 3)
	for src, g := range groupOf {
		go func() {
			errs <- g.arrive(ctx, nil, ShardRef{src, "d.t"}, target, "ALTER TABLE `db`.`t3` ADD COLUMN `d` INT",
				streamer.Position{Name: "mysql-bin.000001", Offset: 900100}, func() error { execs.Add(1); return nil })
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := execs.Load(); n != 1 {
		t.Fatalf("the DDL of the merged table made again ran %d times, want 1", n)
	}
}
