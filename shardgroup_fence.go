package dmworker

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// shardFence is the binding a syncer writes under, in etcd mode: the
// worker's bound key (<prefix>bound/<worker>) and the epoch it read there
// (the key's ModRevision). A ShardGroup made by NewEtcdShardGroup writes
// a shard lock for that syncer (an arrival, a claim, a step applied, an
// optimistic state) only while the bound key is still at that revision:
// a worker whose binding moved on (the source rebound, to it or to
// another worker) is refused with ErrStaleEpoch, in the same etcd
// transaction, so that it cannot add to a lock the live worker of the
// source now takes part in.
type shardFence struct {
	key   string
	epoch int64
}

type shardFenceKey struct{}

// withShardFence makes ctx carry the fence of a syncer's shard writes.
func withShardFence(ctx context.Context, f shardFence) context.Context {
	return context.WithValue(ctx, shardFenceKey{}, f)
}

// shardFenceOf is the fence ctx carries; ok false when none (a syncer not
// driven through etcd bindings, or a host's own call).
func shardFenceOf(ctx context.Context) (f shardFence, ok bool) {
	f, ok = ctx.Value(shardFenceKey{}).(shardFence)
	return f, ok && f.key != ""
}

// shardFenceCmps are the compares that fence a write made for ctx.
func shardFenceCmps(ctx context.Context) []clientv3.Cmp {
	if f, ok := shardFenceOf(ctx); ok {
		return []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(f.key), "=", f.epoch)}
	}
	return nil
}

// shardFenceGet is the read, added to a fenced transaction's Else, that
// tells a refusal by the fence (nil without one).
func shardFenceGet(ctx context.Context) []clientv3.Op {
	if f, ok := shardFenceOf(ctx); ok {
		return []clientv3.Op{clientv3.OpGet(f.key)}
	}
	return nil
}

// shardFenceCheck reports the ErrStaleEpoch of a fenced transaction that
// failed, from the last of its Else responses (shardFenceGet's), or nil
// when the fence still holds (the transaction failed on another compare).
func (g *ShardGroup) shardFenceCheck(ctx context.Context, resp *clientv3.TxnResponse, what string) error {
	f, ok := shardFenceOf(ctx)
	if !ok || resp.Succeeded || len(resp.Responses) == 0 {
		return nil
	}
	kvs := resp.Responses[len(resp.Responses)-1].GetResponseRange().Kvs
	var now int64
	if len(kvs) > 0 {
		now = kvs[0].ModRevision
	}
	if now == f.epoch {
		return nil
	}
	return staleShardWrite(g.task, what, f, kvs)
}

func staleShardWrite(task, what string, f shardFence, kvs []*mvccpb.KeyValue) error {
	now := "deleted"
	if len(kvs) > 0 {
		now = fmt.Sprintf("at epoch %d", kvs[0].ModRevision)
	}
	return fmt.Errorf("%w: shard group of task %s: %s refused: this worker's binding %s is %s, it writes under epoch %d",
		ErrStaleEpoch, task, what, f.key, now, f.epoch)
}
