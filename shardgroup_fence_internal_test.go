package dmworker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestEtcdShardGroupFencedByEpoch: a worker whose binding moved on (the
// bound key rewritten since it read its epoch) is refused by the etcd
// ShardGroup with ErrStaleEpoch: its pessimistic arrival is not recorded
// (the other process never sees it), and in optimistic mode its DDL is
// not applied; the live worker, writing under the new epoch, proceeds.
func TestEtcdShardGroupFencedByEpoch(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const bound = "/sgtest/bound/w1"
	put := func() int64 {
		resp, err := e.Client.Put(ctx, bound, `{"source":"s1"}`)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	staleCtx := withShardFence(ctx, shardFence{key: bound, epoch: put()})
	liveCtx := withShardFence(ctx, shardFence{key: bound, epoch: put()}) // s1 rebound: the old worker is stale

	// Pessimistic.
	const target = "db.t"
	gs := etcdShardGroups(t, ctx, []*clientv3.Client{e.NewClient(t), e.NewClient(t)}, target, []string{"d.t1"},
		[][]string{{"s1"}, {"s2"}}, "s1", "s2")
	const stmt = "ALTER TABLE `db`.`t` ADD COLUMN `a` INT"
	pos := streamer.Position{Name: "mysql-bin.000001", Offset: 100}
	ran := 0
	exec := func() error { ran++; return nil }
	var hold *shardHold
	err := gs[0].arriveHold(staleCtx, nil, ShardRef{"s1", "d.t1"}, target, stmt, pos, exec, &hold)
	if !errors.Is(err, ErrStaleEpoch) || !strings.Contains(err.Error(), bound) {
		t.Fatalf("the stale worker's arrival: %v, want ErrStaleEpoch naming %s", err, bound)
	}
	got, err := e.Client.Get(ctx, "/sgtest/shardlock/task/"+target)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || strings.Contains(string(got.Kvs[0].Value), "ADD COLUMN") {
		t.Fatalf("the lock in etcd after the stale arrival: %q", got.Kvs)
	}
	gs[0].mu.Lock()
	rounds := len(gs[0].locks[target].rounds)
	gs[0].mu.Unlock()
	if rounds != 0 {
		t.Fatalf("the stale arrival stays in its group's memory: %d steps", rounds)
	}
	// The live worker's arrival is recorded; s2's, in the other process,
	// completes the step.
	if err := gs[0].arriveHold(liveCtx, nil, ShardRef{"s1", "d.t1"}, target, stmt, pos, exec, &hold); err != nil || hold == nil {
		t.Fatalf("the live worker's arrival: %v (held %v)", err, hold != nil)
	}
	if err := gs[1].arrive(ctx, nil, ShardRef{"s2", "d.t1"}, target, stmt, pos, exec); err != nil {
		t.Fatalf("s2's arrival: %v", err)
	}
	if err := hold.wait(liveCtx, nil, exec); err != nil || ran != 1 {
		t.Fatalf("the step: %v, applied %d times", err, ran)
	}

	// Optimistic.
	og, err := NewEtcdShardGroup(ctx, e.NewClient(t), "/sgtest/", "otask", "s1", "s2")
	if err != nil {
		t.Fatal(err)
	}
	defer og.Close()
	const create = "CREATE TABLE o1 (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL)"
	a, b := ShardRef{"s1", "s.o1"}, ShardRef{"s2", "s.o1"}
	if err := og.optRegisterEtcd(staleCtx, nil, "s1", map[string]map[ShardRef]*schema.TableDef{"m.o": {a: optShardDef(t, create)}}, nil); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("the stale worker's registration: %v, want ErrStaleEpoch", err)
	}
	for src, ref := range map[string]ShardRef{"s1": a, "s2": b} {
		if err := og.optRegisterEtcd(liveCtx, nil, src, map[string]map[ShardRef]*schema.TableDef{"m.o": {ref: optShardDef(t, create)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	stmts, err := schema.Split("s", "ALTER TABLE o1 ADD COLUMN memo VARCHAR(20) NULL")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := stmts[0].Steps(optShardDef(t, create))
	if err != nil {
		t.Fatal(err)
	}
	var applied []string
	run := func(ctx context.Context) error {
		return og.optimistic(ctx, a, "m.o", steps,
			func(s *schema.Step) (string, error) {
				return s.Render(func(string, string) (string, string) { return "m", "o" })
			},
			func(q string) error { applied = append(applied, q); return nil }, nil)
	}
	if err := run(staleCtx); !errors.Is(err, ErrStaleEpoch) || len(applied) != 0 {
		t.Fatalf("the stale worker's DDL: %v, applied %q", err, applied)
	}
	if err := run(liveCtx); err != nil || len(applied) != 1 {
		t.Fatalf("the live worker's DDL: %v, applied %q", err, applied)
	}
	resp, err := e.Client.Get(ctx, "/sgtest/shardowner/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("owner keys left: %v %v", resp.Kvs, err)
	}
}
