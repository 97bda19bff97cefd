package dmworker

import (
	"context"
	"errors"
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
		go func() { c <- g.arrive(ctx, ShardRef{src, table}, target, stmt, shardPos(off), exec) }()
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
		a <- g.arrive(context.Background(), ShardRef{"a", "s.o"}, target, ddl, shardPos(10), func() error { return nil })
	}()
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	boom := errors.New("boom")
	if err := g.arrive(context.Background(), ShardRef{"b", "s.o"}, target, ddl, shardPos(20), func() error { return boom }); err != boom {
		t.Fatalf("owner: %v", err)
	}
	select {
	case err := <-a:
		t.Fatalf("a passed a DDL not applied: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	var n int
	if err := g.arrive(context.Background(), ShardRef{"b", "s.o"}, target, ddl, shardPos(20), func() error { n++; return nil }); err != nil || n != 1 {
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
	if _, err := g.Release(target); err == nil {
		t.Fatal("Release with nothing held")
	}
	a := make(chan error, 1)
	ran := false
	go func() {
		a <- g.arrive(context.Background(), ShardRef{"a", "s.o"}, target, ddl, shardPos(10), func() error { ran = true; return nil })
	}()
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	if stmt, err := g.Release(target); err != nil || stmt != ddl {
		t.Fatalf("Release: %q, %v", stmt, err)
	}
	if err := <-a; err != nil || ran {
		t.Fatalf("held source after Release: %v (DDL ran: %v)", err, ran)
	}
	if err := g.arrive(context.Background(), ShardRef{"b", "s.o"}, target, ddl, shardPos(20), func() error { ran = true; return nil }); err != nil || ran {
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
		a <- g.arrive(context.Background(), ShardRef{"a", "s.x1"}, "m.x", "ALTER TABLE `m`.`x` ADD COLUMN `c` INT", shardPos(10), func() error { return nil })
	}()
	waitFor(t, func() bool { return len(g.Status()) == 1 })
	err := g.arrive(context.Background(), ShardRef{"b", "s.y1"}, "m.y", "ALTER TABLE `m`.`y` ADD COLUMN `c` INT", shardPos(10), func() error { return nil })
	if !errors.Is(err, ErrShardLockCycle) || !strings.Contains(err.Error(), "m.x") || !strings.Contains(err.Error(), "m.y") {
		t.Fatalf("b: %v, want ErrShardLockCycle naming both tables", err)
	}
	if err := <-a; !errors.Is(err, ErrShardLockCycle) {
		t.Fatalf("a: %v", err)
	}
}
