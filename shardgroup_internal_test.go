package dmworker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

func shardPos(off uint32) streamer.Position {
	return streamer.Position{Name: "mysql-bin.000001", Offset: uint64(off)}
}

// TestShardGroupArrive: sources wait at a DDL until all have reached it;
// the last applies it once; a source's second shard passes it without
// applying; a replay after a restart passes; Status shows the lock while
// held; a cancelled waiter arrives again; differing DDLs stop the group.
func TestShardGroupArrive(t *testing.T) {
	g, err := NewShardGroup("t", "a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	var execs atomic.Int32
	exec := func() error { execs.Add(1); return nil }
	const target, ddl = "m.orders", "ALTER TABLE `m`.`orders` ADD COLUMN `x` INT"
	arrive := func(ctx context.Context, src, table string, off uint32, stmt string) <-chan error {
		c := make(chan error, 1)
		go func() { c <- g.arrive(ctx, nil, ShardRef{src, table}, target, stmt, shardPos(off), exec) }()
		return c
	}
	a := arrive(context.Background(), "a", "s.o1", 100, ddl)
	// b arrives, is cancelled (its subtask paused), arrives again.
	bctx, bcancel := context.WithCancel(context.Background())
	b := arrive(bctx, "b", "s.o1", 200, ddl)
	waitFor(t, func() bool { st := g.Status(); return len(st) == 1 && len(st[0].Reached) == 2 })
	st := g.Status()[0]
	if st.Target != target || st.Statement != ddl || len(st.Waiting) != 1 || st.Waiting[0] != "c" || st.Since.IsZero() {
		t.Fatalf("status %+v", st)
	}
	bcancel()
	if err := <-b; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	b = arrive(context.Background(), "b", "s.o1", 200, ddl)
	select {
	case err := <-a:
		t.Fatalf("a passed before c arrived: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := <-arrive(context.Background(), "c", "s.o2", 300, ddl); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan error{a, b} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if n := execs.Load(); n != 1 {
		t.Fatalf("DDL applied %d times, want 1", n)
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("locks left: %+v", st)
	}
	// a's other shard passes at once, without applying; a replay of a's
	// first shard after a restart passes too.
	if err := <-arrive(context.Background(), "a", "s.o2", 150, ddl); err != nil {
		t.Fatal(err)
	}
	if err := <-arrive(context.Background(), "a", "s.o1", 100, ddl); err != nil {
		t.Fatal(err)
	}
	if n := execs.Load(); n != 1 {
		t.Fatalf("DDL applied %d times, want 1", n)
	}
	// The next step: a differing statement stops the group, the waiter too.
	next := "ALTER TABLE `m`.`orders` ADD INDEX `k` (`x`)"
	a = arrive(context.Background(), "a", "s.o1", 400, next)
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	err = <-arrive(context.Background(), "b", "s.o1", 500, "ALTER TABLE `m`.`orders` DROP COLUMN `x`")
	var ce *ShardDDLConflictError
	if !errors.Is(err, ErrShardDDLConflict) || !errors.As(err, &ce) || ce.Target != target ||
		ce.Statements[ShardRef{"a", "s.o1"}] != next || len(ce.Statements) != 2 {
		t.Fatalf("conflict: %v", err)
	}
	if err := <-a; !errors.Is(err, ErrShardDDLConflict) {
		t.Fatalf("waiter after the conflict: %v", err)
	}
	if err := <-arrive(context.Background(), "c", "s.o1", 600, next); !errors.Is(err, ErrShardDDLConflict) || g.Err() == nil {
		t.Fatalf("arrival after the conflict: %v", err)
	}
}

// TestShardGroupOwnerFails: the last to arrive fails to apply the DDL
// (its subtask retries): nobody passes, and its next arrival applies it.
func TestShardGroupOwnerFails(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b")
	const target, ddl = "m.o", "ALTER TABLE `m`.`o` ADD COLUMN `y` INT"
	a := make(chan error, 1)
	go func() {
		a <- g.arrive(context.Background(), nil, ShardRef{"a", "s.o"}, target, ddl, shardPos(10), func() error { return nil })
	}()
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	boom := errors.New("boom")
	if err := g.arrive(context.Background(), nil, ShardRef{"b", "s.o"}, target, ddl, shardPos(20), func() error { return boom }); err != boom {
		t.Fatalf("owner: %v", err)
	}
	select {
	case err := <-a:
		t.Fatalf("a passed a DDL not applied: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	var n int
	if err := g.arrive(context.Background(), nil, ShardRef{"b", "s.o"}, target, ddl, shardPos(20), func() error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("owner again: %v, applied %d", err, n)
	}
	if err := <-a; err != nil {
		t.Fatal(err)
	}
}

func TestShardModeConfig(t *testing.T) {
	g, _ := NewShardGroup("t", "a")
	cases := []struct {
		mode   ShardMode
		groups []*ShardGroup
		task   string
		ok     bool
	}{
		{"", nil, "t", true},
		{"", []*ShardGroup{g}, "other", true},
		{"", []*ShardGroup{g}, "t", false},
		{ShardPessimistic, nil, "t", false},
		{ShardPessimistic, []*ShardGroup{g}, "t", true},
		{ShardOptimistic, []*ShardGroup{g}, "t", false}, // the group serves pessimistic mode now
		{ShardOptimistic, nil, "t", false},
		{"bogus", nil, "t", false},
	}
	for _, c := range cases {
		_, err := shardGroupFor(&SyncerConfig{Task: c.task, Source: "a", ShardMode: c.mode}, c.groups)
		if (err == nil) != c.ok {
			t.Errorf("mode %q task %s groups %d: %v", c.mode, c.task, len(c.groups), err)
		}
	}
	if err := ShardOptimistic.validate(); err != nil {
		t.Fatalf("optimistic: %v", err)
	}
	og, _ := NewShardGroup("t", "a")
	if _, err := shardGroupFor(&SyncerConfig{Task: "t", Source: "a", ShardMode: ShardOptimistic}, []*ShardGroup{og}); err != nil {
		t.Fatalf("optimistic with a group: %v", err)
	}
	if _, err := shardGroupFor(&SyncerConfig{Task: "t", Source: "z", ShardMode: ShardPessimistic}, []*ShardGroup{g}); err == nil {
		t.Fatal("a source not in the group was taken")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestShardGroupRelease: a source holding for sources already past the DDL
// (a process restarted after the DDL was applied) goes on after Release,
// which does not run the DDL; a later shard of the same step passes.
func TestShardGroupRelease(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b")
	const target, ddl = "m.o", "ALTER TABLE `m`.`o` ADD COLUMN `y` INT"
	if _, err := g.Release(context.Background(), target); err == nil {
		t.Fatal("Release with nothing held")
	}
	a := make(chan error, 1)
	ran := false
	go func() {
		a <- g.arrive(context.Background(), nil, ShardRef{"a", "s.o"}, target, ddl, shardPos(10), func() error { ran = true; return nil })
	}()
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	if stmt, err := g.Release(context.Background(), target); err != nil || stmt != ddl {
		t.Fatalf("Release: %q, %v", stmt, err)
	}
	if err := <-a; err != nil || ran {
		t.Fatalf("held source after Release: %v (DDL ran: %v)", err, ran)
	}
	if err := g.arrive(context.Background(), nil, ShardRef{"b", "s.o"}, target, ddl, shardPos(20), func() error { ran = true; return nil }); err != nil || ran {
		t.Fatalf("b after Release: %v (DDL ran: %v)", err, ran)
	}
}

// TestShardGroupCycle: two sources each holding at the DDL of a different
// merged table, each waiting for the other: the group stops with
// ErrShardLockCycle instead of hanging.
func TestShardGroupCycle(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b")
	a := make(chan error, 1)
	go func() {
		a <- g.arrive(context.Background(), nil, ShardRef{"a", "s.x1"}, "m.x", "ALTER TABLE `m`.`x` ADD COLUMN `c` INT", shardPos(10), func() error { return nil })
	}()
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	err := g.arrive(context.Background(), nil, ShardRef{"b", "s.y1"}, "m.y", "ALTER TABLE `m`.`y` ADD COLUMN `c` INT", shardPos(10), func() error { return nil })
	if !errors.Is(err, ErrShardLockCycle) || !strings.Contains(err.Error(), "m.x") || !strings.Contains(err.Error(), "m.y") {
		t.Fatalf("b: %v, want ErrShardLockCycle naming both tables", err)
	}
	if err := <-a; !errors.Is(err, ErrShardLockCycle) {
		t.Fatalf("a: %v", err)
	}
}

// TestShardGroupStored: the lock state kept in a ShardLockStore outlives
// the group (a process killed and started again): a step applied before
// is passed without running it again by sources that come back before it;
// a step every source had reached is applied by the first to come back;
// the next DDL is the next step; a source that left a target (its last
// shard table dropped) stays out of its locks.
func TestShardGroupStored(t *testing.T) {
	store := &MemoryCheckpointStore{}
	ctx := context.Background()
	const target, s1, s2 = "m.o", "ALTER TABLE `m`.`o` ADD COLUMN `y` INT", "ALTER TABLE `m`.`o` ADD INDEX `k` (`y`)"
	var execs atomic.Int32
	exec := func() error { execs.Add(1); return nil }
	g1, _ := NewShardGroup("t", "a", "b", "c")
	arrive := func(g *ShardGroup, ctx context.Context, src string, off uint32, stmt string) <-chan error {
		c := make(chan error, 1)
		go func() { c <- g.arrive(ctx, store, ShardRef{src, "s.o1"}, target, stmt, shardPos(off), exec) }()
		return c
	}
	ctx1, kill1 := context.WithCancel(ctx)
	a := arrive(g1, ctx1, "a", 100, s1)
	b := arrive(g1, ctx1, "b", 200, s1)
	waitFor(t, func() bool { st := g1.Status(); return len(st) == 1 && len(st[0].Reached) == 2 })
	if err := <-arrive(g1, ctx1, "c", 300, s1); err != nil || execs.Load() != 1 {
		t.Fatalf("c: %v, %d applied", err, execs.Load())
	}
	<-a
	<-b
	kill1()
	// A new process: a and b had not saved their checkpoints past the
	// DDL and reach it again: they pass, nothing runs again.
	g2, _ := NewShardGroup("t", "a", "b", "c")
	for _, src := range []string{"a", "b"} {
		off := map[string]uint32{"a": 100, "b": 200}[src]
		if err := <-arrive(g2, ctx, src, off, s1); err != nil {
			t.Fatalf("%s after the restart: %v", src, err)
		}
	}
	if n := execs.Load(); n != 1 || len(g2.Status()) != 0 {
		t.Fatalf("after the restart: %d applied, locks %+v", n, g2.Status())
	}
	// The next DDL: all three reach it, the process dies before it runs.
	ctx3, kill3 := context.WithCancel(ctx)
	a = arrive(g2, ctx3, "a", 400, s2)
	b = arrive(g2, ctx3, "b", 500, s2)
	waitFor(t, func() bool { st := g2.Status(); return len(st) == 1 && len(st[0].Reached) == 2 })
	boom := errors.New("killed")
	if err := g2.arrive(ctx, store, ShardRef{"c", "s.o1"}, target, s2, shardPos(600), func() error { return boom }); err != boom {
		t.Fatalf("c: %v", err)
	}
	kill3()
	<-a
	<-b
	// Every source had reached it: the first back applies it.
	g3, _ := NewShardGroup("t", "a", "b", "c")
	if st := (<-arrive(g3, ctx, "b", 500, s2)); st != nil || execs.Load() != 2 {
		t.Fatalf("b after the restart: %v, %d applied", st, execs.Load())
	}
	// An older DDL replayed passes; c's replay passes.
	if err := <-arrive(g3, ctx, "a", 100, s1); err != nil {
		t.Fatal(err)
	}
	if err := <-arrive(g3, ctx, "c", 600, s2); err != nil || execs.Load() != 2 {
		t.Fatalf("c: %v, %d applied", err, execs.Load())
	}
	// c drops its last shard table of the target: the next step waits for
	// a and b only, also after a restart.
	if err := g3.leave(ctx, store, ShardRef{"c", "s.o1"}, target, true); err != nil {
		t.Fatal(err)
	}
	g4, _ := NewShardGroup("t", "a", "b", "c")
	const s3 = "ALTER TABLE `m`.`o` DROP INDEX `k`"
	a = arrive(g4, ctx, "a", 700, s3)
	waitFor(t, func() bool {
		st := g4.Status()
		return len(st) == 1 && len(st[0].Waiting) == 1 && st[0].Waiting[0] == "b"
	})
	if err := <-arrive(g4, ctx, "b", 800, s3); err != nil {
		t.Fatal(err)
	}
	if err := <-a; err != nil || execs.Load() != 3 {
		t.Fatalf("a: %v, %d applied", err, execs.Load())
	}
}

// TestShardGroupRemoveSource: a lock that waits only for a source removed
// from the group completes: a held source applies the DDL.
func TestShardGroupRemoveSource(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b")
	const target, ddl = "m.o", "ALTER TABLE `m`.`o` ADD COLUMN `y` INT"
	var ran atomic.Int32
	a := make(chan error, 1)
	go func() {
		a <- g.arrive(context.Background(), nil, ShardRef{"a", "s.o"}, target, ddl, shardPos(10), func() error { ran.Add(1); return nil })
	}()
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	if err := g.RemoveSource("z"); err == nil {
		t.Fatal("removed a source not in the group")
	}
	if err := g.RemoveSource("b"); err != nil {
		t.Fatal(err)
	}
	if err := <-a; err != nil || ran.Load() != 1 {
		t.Fatalf("a: %v, applied %d", err, ran.Load())
	}
	if err := g.RemoveSource("a"); err == nil {
		t.Fatal("removed the last source")
	}
	if err := g.arrive(context.Background(), nil, ShardRef{"b", "s.o"}, target, ddl, shardPos(20), func() error { return nil }); err == nil {
		t.Fatal("a removed source arrived")
	}
}

// TestShardGroupTables: a step completes once every shard table a source
// listed at its start has reached it (a source not started yet counts
// once one of its shards has); a table created after steps were applied
// waits for none of them; a dropped one is not waited for; Status lists
// the tables waited for.
func TestShardGroupTables(t *testing.T) {
	ctx := context.Background()
	g, _ := NewShardGroup("t", "a", "b")
	const target = "m.o"
	s1, s2 := "ALTER TABLE `m`.`o` ADD COLUMN `y` INT", "ALTER TABLE `m`.`o` DROP COLUMN `z`"
	if err := g.begin(ctx, nil, "a", map[string][]string{target: {"s.o1", "s.o2"}}, nil); err != nil {
		t.Fatal(err)
	}
	exec := func() error { return nil }
	arrive := func(src, table string, off uint32, stmt string) *shardHold {
		t.Helper()
		var hold *shardHold
		if err := g.arriveHold(ctx, nil, ShardRef{src, table}, target, stmt, shardPos(off), exec, &hold); err != nil {
			t.Fatal(err)
		}
		return hold
	}
	h := arrive("a", "s.o1", 10, s1)
	if h == nil {
		t.Fatal("a step applied with a's s.o2 and b missing")
	}
	st := g.Status()
	if len(st) != 1 || !slices.Equal(st[0].Waiting, []string{"b"}) || !slices.Equal(st[0].WaitingTables, []ShardRef{{"a", "s.o2"}}) {
		t.Fatalf("status %+v", st)
	}
	// b has not started: one of its shards is enough.
	if arrive("b", "s.o1", 10, s1) == nil || h.ready() {
		t.Fatal("complete without a's s.o2")
	}
	if arrive("a", "s.o2", 20, s1) != nil || !h.ready() {
		t.Fatal("not applied once every table reached it")
	}
	if ok, err := h.settle(ctx, nil, exec); !ok || err != nil {
		t.Fatalf("settle: %v %v", ok, err)
	}
	// a's s.o3 is made now: it waits for no step before; s.o2 dropped is
	// not waited for.
	if err := g.join(ctx, nil, ShardRef{"a", "s.o3"}, target, shardPos(30)); err != nil {
		t.Fatal(err)
	}
	if err := g.leave(ctx, nil, ShardRef{"a", "s.o2"}, target, false); err != nil {
		t.Fatal(err)
	}
	if arrive("b", "s.o1", 40, s2) == nil {
		t.Fatal("step 2 applied with a missing")
	}
	h = arrive("a", "s.o1", 50, s2)
	st = g.Status()
	if h == nil || len(st) != 1 || !slices.Equal(st[0].WaitingTables, []ShardRef{{"a", "s.o3"}}) {
		t.Fatalf("status %+v", st)
	}
	if arrive("a", "s.o3", 60, s2) != nil {
		t.Fatal("step 2 not applied once a's tables reached it")
	}
}
