package dmworker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// etcdShardGroups makes one etcd ShardGroup per client (each standing for
// a process) of task over sources, begun with the sources given per
// group, each source holding tables of target.
func etcdShardGroups(t *testing.T, ctx context.Context, clis []*clientv3.Client, target string, tables []string, begun [][]string, sources ...string) []*ShardGroup {
	t.Helper()
	var gs []*ShardGroup
	for i, cli := range clis {
		g, err := NewEtcdShardGroup(ctx, cli, "/sgtest/", "task", sources...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		for _, s := range begun[i] {
			if err := g.begin(ctx, nil, s, map[string][]string{target: tables}, nil); err != nil {
				t.Fatal(err)
			}
		}
		gs = append(gs, g)
	}
	return gs
}

// TestEtcdShardGroupTwoProcesses: three sources, two shard tables each,
// split 2+1 over two groups on one etcd (two processes); every shard runs
// a sequence of DDLs at its own pace. Each DDL is applied exactly once,
// in order, only after all six shards reached it, and no lock is left.
func TestEtcdShardGroupTwoProcesses(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const target = "db.t"
	tables := []string{"d.t1", "d.t2"}
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, target, tables,
		[][]string{{"s1", "s2"}, {"s3"}}, "s1", "s2", "s3")
	groupOf := map[string]*ShardGroup{"s1": gs[0], "s2": gs[0], "s3": gs[1]}
	stmts := []string{
		"ALTER TABLE `db`.`t` ADD COLUMN `c1` INT",
		"ALTER TABLE `db`.`t` ADD INDEX `i1` (`c1`)",
		"ALTER TABLE `db`.`t` MODIFY COLUMN `c1` BIGINT",
		"ALTER TABLE `db`.`t` ADD COLUMN `c2` VARCHAR(10)",
		"ALTER TABLE `db`.`t` DROP COLUMN `c2`",
	}
	var mu sync.Mutex
	arrived := map[string]int{} // by statement: shards that called arrive
	var applied []string
	var bad []string
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for _, src := range []string{"s1", "s2", "s3"} {
		for ti, tbl := range tables {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := groupOf[src]
				shard := ShardRef{src, tbl}
				for k, stmt := range stmts {
					mu.Lock()
					arrived[stmt]++
					mu.Unlock()
					exec := func() error {
						mu.Lock()
						defer mu.Unlock()
						if arrived[stmt] != 6 {
							bad = append(bad, fmt.Sprintf("%q applied with %d shards arrived", stmt, arrived[stmt]))
						}
						applied = append(applied, stmt)
						return nil
					}
					pos := streamer.Position{Name: "mysql-bin.000001", Offset: uint64(1000*(k+1) + ti)}
					if err := g.arrive(ctx, nil, shard, target, stmt, pos, exec); err != nil {
						errs <- fmt.Errorf("%s at %q: %w", shard, stmt, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	if fmt.Sprint(applied) != fmt.Sprint(stmts) {
		t.Fatalf("applied %q, want each of %q once, in order", applied, stmts)
	}
	for i, g := range gs {
		if st := g.Status(); len(st) != 0 {
			t.Errorf("group %d: locks left: %+v", i, st)
		}
	}
	// The stored lock has every step applied, reached by the six shards:
	// those kept, and those compacted away (every shard's place is past
	// the last step).
	resp, err := e.Client.Get(ctx, "/sgtest/shardlock/task/"+target)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("stored lock: %v %v", resp, err)
	}
	lk, err := unmarshalShardLock(resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if lk.base+len(lk.rounds) != len(stmts) {
		t.Fatalf("stored %d steps (%d compacted away), want %d", lk.base+len(lk.rounds), lk.base, len(stmts))
	}
	for _, rd := range lk.rounds {
		if !rd.applied || len(rd.reached) != 6 {
			t.Errorf("stored step %q: applied %v, reached by %d", rd.stmt, rd.applied, len(rd.reached))
		}
	}
	for _, src := range []string{"s1", "s2", "s3"} {
		for _, tbl := range tables {
			if _, next, ok := lk.lastOf(ShardRef{src, tbl}); !ok || next != len(stmts) {
				t.Errorf("stored place of %s.%s: next step %d (known %v), want %d", src, tbl, next, ok, len(stmts))
			}
		}
	}
	if len(lk.members) != 3 {
		t.Errorf("stored members %v, want the three sources'", lk.members)
	}
	if resp, err := e.Client.Get(ctx, "/sgtest/shardowner/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("owner keys left: %v %v", resp, err)
	}
}

// TestEtcdShardGroupOwnerKilled: the group that claims a step is "killed"
// while its DDL runs (its lease revoked, the step not marked applied); the
// other group runs the DDL again and marks it, and the held shards of both
// go on.
func TestEtcdShardGroupOwnerKilled(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const target = "db.t"
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, target, []string{"d.t1"},
		[][]string{{"s1", "s2"}, {"s3"}}, "s1", "s2", "s3")
	groupIdx := map[string]int{"s1": 0, "s2": 0, "s3": 1}
	const stmt = "ALTER TABLE `db`.`t` ADD COLUMN `c1` INT"
	var mu sync.Mutex
	execs := 0
	owner := make(chan int, 1)
	resume := make(chan struct{})
	done := make(map[string]chan error)
	for src, gi := range groupIdx {
		ch := make(chan error, 1)
		done[src] = ch
		go func() {
			exec := func() error {
				mu.Lock()
				execs++
				first := execs == 1
				mu.Unlock()
				if first {
					owner <- gi
					<-resume // killed here: never marks it before the other does
				}
				return nil
			}
			ch <- gs[gi].arrive(ctx, nil, ShardRef{src, "d.t1"}, target, stmt, streamer.Position{Name: "mysql-bin.000001", Offset: 100}, exec)
		}()
	}
	var killed int
	select {
	case killed = <-owner:
	case <-ctx.Done():
		t.Fatal("no group applies the DDL")
	}
	gs[killed].mu.Lock()
	oldLease := gs[killed].etcd.lease
	gs[killed].mu.Unlock()
	if _, err := gs[killed].etcd.cli.Revoke(ctx, oldLease); err != nil {
		t.Fatal(err)
	}
	for src, gi := range groupIdx {
		if gi == killed {
			continue
		}
		select {
		case err := <-done[src]:
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s still held after the owner was killed", src)
		}
	}
	// The killed group learns through its watch that the step is applied.
	gs[killed].mu.Lock()
	rd := gs[killed].locks[target].rounds[0]
	gs[killed].mu.Unlock()
	select {
	case <-rd.done:
	case <-ctx.Done():
		t.Fatal("the killed group never saw the step applied")
	}
	close(resume)
	for src, gi := range groupIdx {
		if gi != killed {
			continue
		}
		select {
		case err := <-done[src]:
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s still held", src)
		}
	}
	if execs != 2 {
		t.Fatalf("the DDL ran %d times, want 2 (the killed owner's, the other's)", execs)
	}
	for i, g := range gs {
		if st := g.Status(); len(st) != 0 {
			t.Errorf("group %d: locks left: %+v", i, st)
		}
	}

	// The group whose lease was lost takes a new one and can apply the
	// next step: the other group's sources reach it and that group goes
	// away; the first group's sources complete it and apply it.
	kg := gs[killed]
	for {
		kg.mu.Lock()
		lease, wake := kg.etcd.lease, kg.wake
		kg.mu.Unlock()
		if lease != oldLease {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("no new lease after the old one was revoked")
		}
	}
	const stmt2 = "ALTER TABLE `db`.`t` ADD COLUMN `c2` INT"
	other := gs[1-killed]
	octx, ocancel := context.WithCancel(ctx)
	var odone []chan error
	for src, gi := range groupIdx {
		if gi == killed {
			continue
		}
		ch := make(chan error, 1)
		odone = append(odone, ch)
		go func() {
			ch <- other.arrive(octx, nil, ShardRef{src, "d.t1"}, target, stmt2, streamer.Position{Name: "mysql-bin.000001", Offset: 200},
				func() error { return errors.New("the closed group must not apply it") })
		}()
	}
	// Its arrivals are in etcd once the killed group has merged them.
	for {
		kg.mu.Lock()
		lk, wake := kg.locks[target], kg.wake
		n := 0
		if i := 1 - lk.base; i >= 0 && len(lk.rounds) > i { // the second step (the first may be compacted away)
			n = len(lk.rounds[i].reached)
		}
		kg.mu.Unlock()
		if n == len(odone) {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("the other group's arrivals never reached the killed group")
		}
	}
	ocancel()
	for _, ch := range odone {
		if err := <-ch; !errors.Is(err, context.Canceled) {
			t.Fatalf("the other group's arrival: %v, want it cancelled", err)
		}
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	execs2 := 0
	for src, gi := range groupIdx {
		if gi != killed {
			continue
		}
		ch := make(chan error, 1)
		go func() {
			ch <- kg.arrive(ctx, nil, ShardRef{src, "d.t1"}, target, stmt2, streamer.Position{Name: "mysql-bin.000001", Offset: 200},
				func() error { mu.Lock(); execs2++; mu.Unlock(); return nil })
		}()
		done[src] = ch
	}
	for src, gi := range groupIdx {
		if gi != killed {
			continue
		}
		if err := <-done[src]; err != nil {
			t.Fatalf("%s at the second step: %v", src, err)
		}
	}
	if execs2 != 1 {
		t.Fatalf("the second DDL ran %d times, want once", execs2)
	}
}

// TestEtcdShardGroupConflict: differing statements at one step in two
// processes stop both groups with a ShardDDLConflictError.
func TestEtcdShardGroupConflict(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const target = "db.t"
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, target, []string{"d.t1"},
		[][]string{{"s1"}, {"s2"}}, "s1", "s2")
	pos := streamer.Position{Name: "mysql-bin.000001", Offset: 100}
	errA := make(chan error, 1)
	go func() {
		errA <- gs[0].arrive(ctx, nil, ShardRef{"s1", "d.t1"}, target, "ALTER TABLE `db`.`t` ADD COLUMN `a` INT", pos, func() error { return errors.New("must not run") })
	}()
	// Wait for s1's arrival to be in etcd, then s2 arrives differing.
	for {
		gs[1].mu.Lock()
		lk := gs[1].locks[target]
		n := 0
		if lk != nil {
			n = len(lk.rounds)
		}
		wake := gs[1].wake
		gs[1].mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("s1's arrival never seen by the other group")
		}
	}
	err := gs[1].arrive(ctx, nil, ShardRef{"s2", "d.t1"}, target, "ALTER TABLE `db`.`t` ADD COLUMN `b` INT", pos, func() error { return errors.New("must not run") })
	if !errors.Is(err, ErrShardDDLConflict) {
		t.Fatalf("s2: %v, want a conflict", err)
	}
	select {
	case err := <-errA:
		if !errors.Is(err, ErrShardDDLConflict) {
			t.Fatalf("s1: %v, want a conflict", err)
		}
	case <-ctx.Done():
		t.Fatal("s1 still held after the conflict")
	}
}

// TestEtcdShardGroupRelease: Release in one process lets the sources held
// in another go on; an etcd group takes optimistic mode.
func TestEtcdShardGroupRelease(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const target = "db.t"
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, target, []string{"d.t1"},
		[][]string{{"s1"}, {"s2"}}, "s1", "s2")
	const stmt = "ALTER TABLE `db`.`t` ADD COLUMN `a` INT"
	held := make(chan error, 1)
	go func() {
		held <- gs[0].arrive(ctx, nil, ShardRef{"s1", "d.t1"}, target, stmt, streamer.Position{Name: "mysql-bin.000001", Offset: 100},
			func() error { return errors.New("released: must not run") })
	}()
	for {
		gs[1].mu.Lock()
		lk, wake := gs[1].locks[target], gs[1].wake
		n := len(lk.rounds)
		gs[1].mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("s1's arrival never seen by the other group")
		}
	}
	got, err := gs[1].Release(ctx, target)
	if err != nil || got != stmt {
		t.Fatalf("Release: %q, %v", got, err)
	}
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("s1: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("s1 still held after the release in the other process")
	}
	// Optimistic mode through etcd is built: a fresh etcd group takes it.
	g3, err := NewEtcdShardGroup(ctx, e.NewClient(t), "/t/", "task", "s1", "s2")
	if err != nil {
		t.Fatal(err)
	}
	defer g3.Close()
	cfg := &SyncerConfig{Task: "task", Source: "s1", ShardMode: ShardOptimistic}
	if got, err := shardGroupFor(cfg, []*ShardGroup{g3}); err != nil || got != g3 {
		t.Fatalf("an etcd group in optimistic mode: %v, %v", got, err)
	}
}

// TestEtcdShardGroupEtcdRestart: etcd stops and comes back while a source
// is held; the step completes after it, in both processes.
func TestEtcdShardGroupEtcdRestart(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const target = "db.t"
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, target, []string{"d.t1"},
		[][]string{{"s1"}, {"s2"}}, "s1", "s2")
	const stmt = "ALTER TABLE `db`.`t` ADD COLUMN `a` INT"
	pos := streamer.Position{Name: "mysql-bin.000001", Offset: 100}
	var mu sync.Mutex
	execs := 0
	exec := func() error { mu.Lock(); execs++; mu.Unlock(); return nil }
	held := make(chan error, 1)
	go func() { held <- gs[0].arrive(ctx, nil, ShardRef{"s1", "d.t1"}, target, stmt, pos, exec) }()
	for {
		gs[1].mu.Lock()
		lk, wake := gs[1].locks[target], gs[1].wake
		n := len(lk.rounds)
		gs[1].mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("s1's arrival never seen by the other group")
		}
	}
	// s1 holds (its arrival's write has returned, not only reached etcd)
	// before etcd stops.
	for {
		gs[0].mu.Lock()
		_, holding := gs[0].holding["s1"]
		wake := gs[0].wake
		gs[0].mu.Unlock()
		if holding {
			break
		}
		select {
		case <-wake:
		case <-time.After(10 * time.Millisecond):
		case err := <-held:
			t.Fatalf("s1 returned before etcd stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("s1 never held")
		}
	}
	e.Stop()
	e.Restart(t)
	// The arrival may meet etcd still reconnecting: a syncer retries it.
	var err error
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		err = gs[1].arrive(actx, nil, ShardRef{"s2", "d.t1"}, target, stmt, pos, exec)
		acancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		t.Logf("s2's arrival, etcd back: %v", err)
	}
	if err != nil {
		t.Fatalf("s2: %v", err)
	}
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("s1: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("s1 still held after etcd came back")
	}
	if execs != 1 {
		t.Fatalf("the DDL ran %d times, want once", execs)
	}
}
