package dmworker

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestEtcdShardGroupOptimisticResolve: a process records that it applies
// a column's addition downstream and dies (its lease revoked) before it
// records it applied. The next group to claim the target finishes it: it
// runs the statement again only when the downstream table does not show
// the column (died before the ALTER ran), not when it does (died after);
// either way the shard that runs the same addition then passes it, and
// the state in etcd records the column downstream, nothing being applied.
func TestEtcdShardGroupOptimisticResolve(t *testing.T) {
	e := testserver.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const create = "CREATE TABLE o1 (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL)"
	const withMemo = "CREATE TABLE o1 (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, memo VARCHAR(20) NULL)"
	a, b := ShardRef{"s1", "s.o1"}, ShardRef{"s2", "s.o1"}
	route := func(string, string) (string, string) { return "m", "o" }
	for i, downHasIt := range []bool{false, true} {
		task := []string{"before", "after"}[i]
		g1, err := NewEtcdShardGroup(ctx, e.NewClient(t), "/sgtest/", task, "s1", "s2")
		if err != nil {
			t.Fatal(err)
		}
		for src, ref := range map[string]ShardRef{"s1": a, "s2": b} {
			if err := g1.optRegisterEtcd(ctx, nil, src, map[string]map[ShardRef]*schema.TableDef{"m.o": {ref: optShardDef(t, create)}}, nil); err != nil {
				t.Fatal(err)
			}
		}
		// g1 claims m.o, records the addition as being applied, and dies.
		g1.mu.Lock()
		tg := g1.optLocked().target("m.o")
		g1.mu.Unlock()
		if _, err := g1.optEtcdBegin(ctx, "m.o", tg, nil); err != nil {
			t.Fatal(err)
		}
		stmts, err := schema.Split("s", "ALTER TABLE o1 ADD COLUMN memo VARCHAR(20) NULL")
		if err != nil {
			t.Fatal(err)
		}
		steps, err := stmts[0].Steps(optShardDef(t, create))
		if err != nil {
			t.Fatal(err)
		}
		stmt, _ := steps[0].Render(route)
		g1.mu.Lock()
		after, err := steps[0].ApplyTo(tg.down)
		g1.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := g1.optEtcdApplying(ctx, "m.o", tg, stmt, steps[0].Kind, "memo", after); err != nil {
			t.Fatal(err)
		}
		g1.Close() // its lease revoked: the claim goes

		g2, err := NewEtcdShardGroup(ctx, e.NewClient(t), "/sgtest/", task, "s1", "s2")
		if err != nil {
			t.Fatal(err)
		}
		var reran, applied []string
		io := &optIO{
			exec: func(target, q string) error { reran = append(reran, q); return nil },
			down: func(context.Context, string) (*schema.TableDef, error) {
				if downHasIt {
					return optShardDef(t, withMemo), nil
				}
				return optShardDef(t, create), nil
			},
		}
		err = g2.optimistic(ctx, b, "m.o", steps, func(s *schema.Step) (string, error) { return s.Render(route) },
			func(q string) error { applied = append(applied, q); return nil }, io)
		want := []string{stmt}
		if downHasIt {
			want = nil
		}
		if err != nil || !slices.Equal(reran, want) || len(applied) != 0 {
			t.Fatalf("downstream with memo %v: %v; ran again %q (want %q), applied %q (want none)", downHasIt, err, reran, want, applied)
		}
		resp, err := e.Client.Get(ctx, "/sgtest/shardopt/"+task+"/m.o")
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("state: %v %v", resp, err)
		}
		g2.mu.Lock()
		tg2 := g2.optLocked().target("m.o")
		ap, derr := optDecodeLocked("m.o", tg2, resp.Kvs[0].Value)
		down := tg2.down
		g2.mu.Unlock()
		if derr != nil || ap != nil || down.Column("memo") < 0 {
			t.Fatalf("state after: %v, applying %+v, downstream %+v", derr, ap, down)
		}
		owners, err := e.Client.Get(ctx, "/sgtest/shardowner/", clientv3.WithPrefix())
		if err != nil || len(owners.Kvs) != 0 {
			t.Fatalf("owner keys left: %v %v", owners, err)
		}
		g2.Close()
	}
}
