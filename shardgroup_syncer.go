package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/dmworker/dmworker/internal/onlineddl"
	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// shardKinds are the statements a ShardGroup coordinates.
var shardKinds = map[string]bool{schema.KindAlterTable: true, schema.KindCreateIndex: true, schema.KindDropIndex: true}

// shardHoldBytes bounds the binlog bytes of the row events a run holds for
// shard DDL locks; past it, the run's whole stream waits for the locks.
const shardHoldBytes = 64 << 20

// shardFlushRows is the most rows in one batch of held events applied
// once their step is.
const shardFlushRows = 2000

// shardFloor is where a run's checkpoints stay while a shard DDL lock
// holds some of its events: the position before the first held DDL, and
// the schema tracked there.
type shardFloor struct {
	pos    streamer.Position
	schema []byte
}

// shardRun is a run's share of pessimistic shard mode. When one of its
// shard tables reaches a DDL step that is not applied yet, the run goes
// on with every other table and holds the events of the step's target's
// shard tables that come after their own DDL: shards of the target that
// have not reached the DDL yet are applied as they come (the downstream
// table still has its old shape), those that have are kept in memory, in
// order, until the step is applied, then applied (in safe mode). Its
// checkpoints stay before the first held DDL meanwhile (runWriter.floor),
// their SafeUntil moving on, so a restart reads the held events again.
// Events of a shard at or before its last arrival at a step are applied
// already (the syncer applies everything before a DDL before it records
// the arrival): a replay skips them.
type shardRun struct {
	g     *ShardGroup
	store ShardLockStore
	held  map[string]*shardHeld // by target
	// last caches where each shard table last reached a step.
	last  map[ShardRef]*streamer.Position
	pre   *shardFloor // the checkpoint before the DDL at hand
	bytes int64
	full  bool // the held events passed shardHoldBytes
	inTxn bool // a transaction's rows are being read
	// wctx ends (wcancel) when a held step may have changed.
	wctx    context.Context
	wcancel context.CancelFunc
}

type shardHeld struct {
	hold *shardHold
	exec func() error // the DDL, for a step that completes with no arrival
	buf  [][]Change
	size int64
}

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
// shard tables of which targets the source has (taken by the task) and
// which targets it has only filtered-out ones of: those no lock waits for.
func (r *syncRun) shardBegin(ctx context.Context) error {
	g := r.s.shard
	if g == nil || r.s.cfg.ShardMode != ShardPessimistic {
		return nil
	}
	r.s.shardFloor.Store(nil) // the run starts at the stored checkpoint
	r.sh = &shardRun{g: g, store: shardLockStoreOf(r.s.store), held: map[string]*shardHeld{}, last: map[ShardRef]*streamer.Position{}}
	present, filtered := map[string][]string{}, map[string]bool{}
	for _, n := range r.tracker.Tables() {
		target, ok := r.s.shardTarget(n)
		if !ok {
			continue
		}
		if r.s.rules.allowed(n.Schema, n.Name) {
			present[target] = append(present[target], n.Schema+"."+n.Name)
		} else {
			filtered[target] = true
		}
	}
	var out []string
	for t := range filtered {
		if present[t] == nil {
			out = append(out, t)
			r.s.log.Info("shard tables filtered out of the task: no shard DDL lock of their target waits for this source", slog.String("target", t))
		}
	}
	return g.begin(ctx, r.sh.store, r.s.cfg.Source, present, out)
}

// shardEnd ends what the run watches.
func (r *syncRun) shardEnd() {
	if r.sh != nil && r.sh.wcancel != nil {
		r.sh.wcancel()
	}
	if r.opt != nil && r.opt.wcancel != nil {
		r.opt.wcancel()
	}
}

// shardPre notes, at the start of a DDL event, the checkpoint before it:
// the floor if one of its statements is held.
//
// It notes it even while a floor is set: the DDL may wait for the held
// step (the same shard's next step), whose release lifts that floor, and
// then hold a step of its own, whose floor is the position before it, not
// the older floor's.
func (r *syncRun) shardPre() {
	if r.sh == nil {
		return
	}
	b, err := r.tracker.Marshal()
	if err == nil {
		b, err = onlineddl.Attach(b, r.w.online)
	}
	if err != nil {
		r.sh.pre = nil
		return
	}
	r.sh.pre = &shardFloor{pos: r.lastTxnEnd.Clone(), schema: b}
}

// shardDDL is pessimistic shard mode's hook in the DDL path (run with
// nothing applying): exec (the DDL d of statement st, routed) runs at once
// unless the syncer has a ShardGroup and st shapes a shard table (one a
// route renames). Then the shard's arrival at the step is recorded; when
// it completes the step, exec runs (once for every shard of every source);
// when the step waits for other shards, the run holds the target's shard
// tables' events after it (see shardRun). The DROP TABLE of a shard table
// is not applied (the merged table stays): no step waits for that table
// any more; a shard table's CREATE TABLE makes one more to wait for.
//
// In optimistic shard mode it hands the statement to optimisticDDL, prev
// being the table's definition before it (nil when the tracker had none).
func (r *syncRun) shardDDL(ctx context.Context, ev *streamer.Event, st *schema.Stmt, prev *schema.TableDef, d *DDL, exec func() error) error {
	if r.s.shard != nil && st.Kind == schema.KindTruncateTable && st.Table.Name != "" &&
		(d.Schema != st.Table.Schema || d.Table != st.Table.Name) {
		// Downstream it would empty the merged table, the other shards'
		// rows with it.
		return fmt.Errorf("%w: TRUNCATE TABLE of shard table %s.%s would empty the merged table %s.%s with the other shards' rows: "+
			"Skip it (this shard's rows stay downstream) or Replace it (a DELETE of this shard's rows, if they can be told apart)",
			ErrUnsupportedDDL, st.Table.Schema, st.Table.Name, d.Schema, d.Table)
	}
	if r.s.shard != nil && r.s.cfg.ShardMode == ShardOptimistic {
		return r.optimisticDDL(ctx, ev, st, prev, d, exec)
	}
	if r.sh == nil || st.Table.Name == "" || (d.Schema == st.Table.Schema && d.Table == st.Table.Name) {
		return exec()
	}
	g, store := r.sh.g, r.sh.store
	shard := ShardRef{Source: r.s.cfg.Source, Table: st.Table.Schema + "." + st.Table.Name}
	target := d.Schema + "." + d.Table
	switch {
	case st.Kind == schema.KindDropTable:
		last := true
		for _, n := range r.tracker.Tables() {
			if t, ok := r.s.shardTarget(n); ok && t == target && r.s.rules.allowed(n.Schema, n.Name) {
				last = false
			}
		}
		r.s.log.Info("shard table dropped upstream; not downstream, the merged table stays", slog.String("shard", shard.String()),
			slog.String("target", target), slog.Bool("last-of-source", last))
		if err := g.leave(ctx, store, shard, target, last); err != nil {
			return err
		}
		delete(r.sh.last, shard) // a table made again under its name starts afresh
		return r.shardRelease(ctx, false)
	case st.Kind == schema.KindCreateTable:
		if err := exec(); err != nil {
			return err
		}
		return g.join(ctx, store, shard, target, ev.Pos)
	case !shardKinds[st.Kind]:
		return exec()
	}
	if h := r.sh.held[target]; h != nil && h.hold.reachedBy(shard) {
		// The shard's next step while its last one is held: the whole
		// stream waits for that one first.
		if err := r.shardRelease(ctx, true); err != nil {
			return err
		}
	}
	r.s.log.Info("shard DDL reached", slog.String("shard", shard.String()), slog.String("target", target),
		slog.String("query", d.Query), slog.String("pos", ev.Pos.String()))
	var hold *shardHold
	if err := g.arriveHold(ctx, store, shard, target, d.Query, ev.Pos, exec, &hold); err != nil {
		return err
	}
	// A replay (from a floor before an older step of this shard) meets
	// arrivals older than the last one recorded: the events up to that
	// one are applied already, and stay skipped.
	if prev := r.sh.lastOf(shard, target); prev == nil || prev.IsZero() || prev.Compare(ev.Pos) < 0 {
		p := ev.Pos.Clone()
		r.sh.last[shard] = &p
	}
	if hold == nil {
		r.s.log.Info("shard DDL applied", slog.String("shard", shard.String()), slog.String("target", target))
		return r.shardRelease(ctx, false)
	}
	if r.sh.held[target] == nil {
		r.s.log.Info("shard DDL held: holding the target's shard tables until every shard reaches it",
			slog.String("shard", shard.String()), slog.String("target", target))
		r.sh.held[target] = &shardHeld{hold: hold, exec: exec}
		if r.w.floor == nil {
			if r.sh.pre == nil {
				return r.s.wrap(ev.Pos, target, d.Query, errShardFloor)
			}
			r.w.floor = r.sh.pre
			r.s.shardFloor.Store(&r.sh.pre.pos)
		}
		r.sh.resetWake()
	}
	return nil
}

var errShardFloor = errors.New("the schema before a held shard DDL could not be recorded")

// shardRows decides about the changes in r.changes, decoded from the rows
// event ev of one table: false when they are to be applied now; true when
// the run holds them (their target's step is not applied) or they were
// applied before (a replay).
func (r *syncRun) shardRows(ev *streamer.Event) bool {
	if r.sh == nil || len(r.changes) == 0 {
		return false
	}
	t := r.changes[0].Table
	n := schema.TableName{Schema: t.SourceSchema, Name: t.SourceName}
	target, ok := r.s.shardTarget(n)
	if !ok {
		return false
	}
	shard := ShardRef{Source: r.s.cfg.Source, Table: n.Schema + "." + n.Name}
	if last := r.sh.lastOf(shard, target); last != nil && !last.IsZero() && ev.Pos.Compare(*last) <= 0 {
		return true // applied before its DDL, before a restart
	}
	h := r.sh.held[target]
	if h == nil || !h.hold.reachedBy(shard) {
		return false
	}
	h.buf = append(h.buf, slices.Clone(r.changes))
	h.size += int64(ev.Header.EventSize)
	r.sh.bytes += int64(ev.Header.EventSize)
	if r.sh.bytes > shardHoldBytes {
		r.sh.full = true
	}
	return true
}

// lastOf is where shard last reached a step of target (cached; nil when
// it never did).
func (sh *shardRun) lastOf(shard ShardRef, target string) *streamer.Position {
	last, cached := sh.last[shard]
	if !cached {
		if p, ok := sh.g.lastArrival(shard, target); ok {
			last = &p
		}
		sh.last[shard] = last
	}
	return last
}

// shardReady reports whether a held step has something to do, or the
// held events passed their bound.
func (r *syncRun) shardReady() bool {
	if r.sh == nil || len(r.sh.held) == 0 {
		return false
	}
	if r.sh.full {
		return true
	}
	for _, h := range r.sh.held {
		if h.hold.ready() {
			return true
		}
	}
	return false
}

// shardTick releases, between transactions, what held steps that are
// applied (or complete) let go, through the applier (nothing applying
// meanwhile). In optimistic mode it is optTick.
func (r *syncRun) shardTick(ctx context.Context) error {
	if r.opt != nil {
		return r.optTick(ctx)
	}
	r.sh.resetWake()
	if r.sh.inTxn || !r.shardReady() {
		return nil
	}
	pos := r.lastTxnEnd
	return r.apply.ddl(ctx, pos, func() error {
		if err := r.shardRelease(ctx, r.sh.full); err != nil {
			return err
		}
		return r.w.saveCheckpoint(ctx, pos)
	})
}

// shardRelease applies the held events of each target whose step is
// applied (applying the step first when it completed with no arrival;
// with wait, waiting for every held step), and lifts the floor once
// nothing is held. It runs with nothing applying.
func (r *syncRun) shardRelease(ctx context.Context, wait bool) error {
	for target, h := range r.sh.held {
		var ok bool
		var err error
		if wait {
			r.s.log.Info("waiting for a held shard DDL with the whole stream", slog.String("target", target))
			err = h.hold.wait(ctx, r.sh.store, h.exec)
			ok = err == nil
		} else {
			ok, err = h.hold.settle(ctx, r.sh.store, h.exec)
		}
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		// In batches of up to shardFlushRows rows (whole rows events),
		// in safe mode: the checkpoint stays at the floor meanwhile.
		limit := shardFlushRows
		if m := r.s.cfg.MaxBatchRows; m > 0 && m < limit {
			limit = m
		}
		var batch []Change
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			if err := r.w.applyAt(ctx, batch, true, r.w.checkpoint(r.lastTxnEnd)); err != nil {
				return err
			}
			n := int64(len(batch))
			r.s.updateStatus(func(st *SyncerStatus) { st.Rows += n; st.Batches++ })
			batch = nil
			return nil
		}
		for _, changes := range h.buf {
			if len(batch) > 0 && len(batch)+len(changes) > limit {
				if err := flush(); err != nil {
					return err
				}
			}
			batch = append(batch, changes...)
		}
		if err := flush(); err != nil {
			return err
		}
		r.s.log.Info("shard DDL applied: held events applied", slog.String("target", target), slog.Int("batches", len(h.buf)))
		r.sh.bytes -= h.size
		delete(r.sh.held, target)
	}
	r.sh.full = r.sh.bytes > shardHoldBytes
	if len(r.sh.held) == 0 {
		r.w.floor = nil
		r.s.shardFloor.Store(nil)
	}
	return nil
}

// shardCtx returns the context to read the next event under while steps
// are held, between transactions: parent's, ending also when a held step
// may have changed; nil when nothing is held or a transaction is open.
// In optimistic mode it is optCtx (drops held back that may be due).
func (r *syncRun) shardCtx(parent context.Context) context.Context {
	if r.opt != nil {
		return r.optCtx(parent)
	}
	if r.sh == nil || len(r.sh.held) == 0 || r.sh.inTxn {
		// Mid-transaction the rest of it comes first: its end releases.
		return nil
	}
	if r.sh.wctx != nil {
		return r.sh.wctx
	}
	wctx, cancel := context.WithCancel(parent)
	r.sh.wctx, r.sh.wcancel = wctx, cancel
	for _, h := range r.sh.held {
		settled, done, wake := h.hold.chans()
		if settled {
			cancel()
			break
		}
		go func() {
			select {
			case <-done:
			case <-wake:
			case <-wctx.Done():
			}
			cancel()
		}()
	}
	return wctx
}

// shardWoken reports whether the read ended because a held step may have
// changed.
func (r *syncRun) shardWoken(parent context.Context) bool {
	if r.opt != nil {
		return r.opt.wctx != nil && r.opt.wctx.Err() != nil && parent.Err() == nil
	}
	return r.sh != nil && r.sh.wctx != nil && r.sh.wctx.Err() != nil && parent.Err() == nil
}

// resetWake drops the watch of held steps: the next read watches them
// afresh.
func (sh *shardRun) resetWake() {
	if sh.wcancel != nil {
		sh.wcancel()
	}
	sh.wctx, sh.wcancel = nil, nil
}
