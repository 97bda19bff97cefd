package dmworker

import (
	"context"
	"log/slog"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// shardKinds are the statements a ShardGroup coordinates.
var shardKinds = map[string]bool{schema.KindAlterTable: true, schema.KindCreateIndex: true, schema.KindDropIndex: true}

// shardTarget returns the downstream table a tracked upstream table merges
// into, and whether it is a shard table (one a route renames).
func (s *Syncer) shardTarget(n schema.TableName) (string, bool) {
	ts, tt := s.rules.route(n.Schema, n.Name)
	return ts + "." + tt, n.Name != "" && (ts != n.Schema || tt != n.Name)
}

// shardLocks are the locks of the syncer's ShardGroup its source takes
// part in; nil when none or without a group.
func (s *Syncer) shardLocks() []ShardLockStatus {
	if s.shard == nil {
		return nil
	}
	return s.shard.statusOf(s.cfg.Source)
}

// shardBegin tells the syncer's ShardGroup, at the start of a run, which
// targets the source has shard tables of (taken by the task) and which it
// has only filtered-out ones of: those no lock waits for.
func (r *syncRun) shardBegin(ctx context.Context) error {
	g := r.s.shard
	if g == nil {
		return nil
	}
	present, filtered := map[string]bool{}, map[string]bool{}
	for _, n := range r.tracker.Tables() {
		target, ok := r.s.shardTarget(n)
		if !ok {
			continue
		}
		if r.s.rules.allowed(n.Schema, n.Name) {
			present[target] = true
		} else {
			filtered[target] = true
		}
	}
	var in, out []string
	for t := range present {
		in = append(in, t)
	}
	for t := range filtered {
		if !present[t] {
			out = append(out, t)
			r.s.log.Info("shard tables filtered out of the task: no shard DDL lock of their target waits for this source", slog.String("target", t))
		}
	}
	return g.begin(ctx, shardLockStoreOf(r.s.store), r.s.cfg.Source, in, out)
}

// shardDDL is pessimistic shard mode's hook in the DDL path: exec (the
// DDL d of statement st, routed) runs at once unless the syncer has a
// ShardGroup and st shapes a shard table (one a route renames); then the
// stream holds here, its checkpoint saved before the DDL, until the group
// has applied the DDL once for all its sources (see ShardGroup). The DROP
// TABLE of a shard table is not applied (the merged table stays): the
// source leaves the target's locks when it was its last shard table there;
// a shard table's CREATE TABLE enters it in them.
func (r *syncRun) shardDDL(ctx context.Context, ev *streamer.Event, st *schema.Stmt, d *DDL, exec func() error) error {
	g := r.s.shard
	if g == nil || st.Table.Name == "" || (d.Schema == st.Table.Schema && d.Table == st.Table.Name) {
		return exec()
	}
	shard := ShardRef{Source: r.s.cfg.Source, Table: st.Table.Schema + "." + st.Table.Name}
	target := d.Schema + "." + d.Table
	store := shardLockStoreOf(r.s.store)
	switch {
	case st.Kind == schema.KindDropTable:
		for _, n := range r.tracker.Tables() {
			if t, ok := r.s.shardTarget(n); ok && t == target && r.s.rules.allowed(n.Schema, n.Name) {
				r.s.log.Info("shard table dropped upstream; not downstream, the merged table stays", slog.String("shard", shard.String()), slog.String("target", target))
				return nil
			}
		}
		r.s.log.Info("last shard table of the target dropped upstream; not downstream, and no lock of the target waits for this source",
			slog.String("shard", shard.String()), slog.String("target", target))
		return g.leave(ctx, store, shard.Source, target)
	case st.Kind == schema.KindCreateTable:
		if err := exec(); err != nil {
			return err
		}
		return g.join(ctx, store, shard, target, ev.Pos)
	case !shardKinds[st.Kind]:
		return exec()
	}
	r.s.log.Info("shard DDL reached: holding until every source of the group reaches it",
		slog.String("shard", shard.String()), slog.String("target", target), slog.String("query", d.Query), slog.String("pos", ev.Pos.String()))
	if err := g.arrive(ctx, store, shard, target, d.Query, ev.Pos, exec); err != nil {
		return err
	}
	r.s.log.Info("shard DDL passed", slog.String("shard", shard.String()), slog.String("target", target))
	return nil
}
