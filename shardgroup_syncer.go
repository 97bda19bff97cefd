package dmworker

import (
	"context"
	"log/slog"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// shardKinds are the statements a ShardGroup coordinates.
var shardKinds = map[string]bool{schema.KindAlterTable: true, schema.KindCreateIndex: true, schema.KindDropIndex: true}

// shardDDL is pessimistic shard mode's hook in the DDL path: exec (the
// DDL d of statement st, routed) runs at once unless the syncer has a
// ShardGroup and st shapes a shard table (one a route renames); then the
// stream holds here, its checkpoint saved before the DDL, until the group
// has applied the DDL once for all its sources (see ShardGroup).
//
// In optimistic shard mode it hands the statement to optimisticDDL, prev
// being the table's definition before it (nil when the tracker had none).
func (r *syncRun) shardDDL(ctx context.Context, ev *streamer.Event, st *schema.Stmt, prev *schema.TableDef, d *DDL, exec func() error) error {
	g := r.s.shard
	if g != nil && r.s.cfg.ShardMode == ShardOptimistic {
		return r.optimisticDDL(ctx, ev, st, prev, d, exec)
	}
	if g == nil || !shardKinds[st.Kind] || st.Table.Name == "" ||
		(d.Schema == st.Table.Schema && d.Table == st.Table.Name) {
		return exec()
	}
	shard := ShardRef{Source: r.s.cfg.Source, Table: st.Table.Schema + "." + st.Table.Name}
	target := d.Schema + "." + d.Table
	r.s.log.Info("shard DDL reached: holding until every source of the group reaches it",
		slog.String("shard", shard.String()), slog.String("target", target), slog.String("query", d.Query), slog.String("pos", ev.Pos.String()))
	if err := g.arrive(ctx, shard, target, d.Query, ev.Pos, exec); err != nil {
		return err
	}
	r.s.log.Info("shard DDL passed", slog.String("shard", shard.String()), slog.String("target", target))
	return nil
}
