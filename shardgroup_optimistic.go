package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// ErrShardIncompatibleDDL means a shard table, in optimistic shard mode,
// ran a DDL whose effect the downstream table cannot take while the other
// shards keep their schema: it narrows or renames a column or an index,
// changes a column's type in a way that is not a widening, adds a column
// NOT NULL without a default, adds a column or an index the downstream
// has with another definition, or drops a column the others still write
// and whose rows could not be written without it. The subtask stops before
// the DDL; the error is a *ShardIncompatibleDDLError.
var ErrShardIncompatibleDDL = errors.New("dmworker: shard DDL incompatible with the other shards")

// ShardIncompatibleDDLError is the ErrShardIncompatibleDDL of a shard's
// DDL clause in optimistic shard mode: which shard ran what, why the
// downstream table cannot take it, and the shards it conflicts with.
//
// Resolution: the statement is not applied downstream and the shard's
// subtask stops before it (its checkpoint is before the DDL). Then either
//   - make it compatible: Replace it in that shard's subtask
//     (SubTask.Replace at the error's position, or
//     SourceWorker.ReplaceSubTaskDDL for a subtask a SourceWorker runs)
//     with a statement the downstream can take, or Skip it (SubTask.Skip,
//     SourceWorker.SkipSubTaskDDL) when the downstream needs nothing (a
//     narrowing: the shard's rows fit the wider column), and resume; or
//   - apply it by hand once every shard has run it: stop the writes to
//     the shard tables, run the statement on every shard, alter the
//     downstream table to match, and Skip the statement in each shard's
//     subtask as it reaches it; or
//   - run the change in pessimistic shard mode: stop the task and start it
//     again with ShardMode "pessimistic" and a new ShardGroup until every
//     shard has passed the DDL.
type ShardIncompatibleDDLError struct {
	Task string
	// Target is the downstream table, "schema.table".
	Target string
	// Shard is the shard that ran the DDL; Statement its clause, routed
	// (for a CREATE TABLE, "CREATE TABLE" and the shard table).
	Shard     ShardRef
	Statement string
	// Reason says what the downstream cannot take.
	Reason string
	// Others are the shards whose schema conflicts with it (those that
	// still have what it drops or changes), sorted.
	Others []ShardRef
}

func (e *ShardIncompatibleDDLError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dmworker: task %s: shard %s ran %q on %s: %s", e.Task, e.Shard, e.Statement, e.Target, e.Reason)
	if len(e.Others) > 0 {
		b.WriteString(" (other shards:")
		for _, r := range e.Others {
			b.WriteString(" " + r.String())
		}
		b.WriteString(")")
	}
	b.WriteString("; the subtask stops before it: Replace or Skip it in that subtask, or apply it by hand once every shard has run it, or run it in pessimistic shard mode (see ShardIncompatibleDDLError)")
	return b.String()
}

// Is makes errors.Is(err, ErrShardIncompatibleDDL) true.
func (e *ShardIncompatibleDDLError) Is(target error) bool { return target == ErrShardIncompatibleDDL }

// optState is a ShardGroup's optimistic shard mode state.
type optState struct {
	targets map[string]*optTarget
	// registered are the sources that have told their shard tables (at
	// the start of each run): until all have, no drop is applied.
	registered map[string]bool
	// complete is set once every source has registered: the drops held
	// back are then inferred from the shards' schemas (see optInfer).
	complete bool
	// settle is closed (and replaced) when drops held back may be due
	// without a DDL: a source taken out of the group. The syncers of the
	// group watch it between transactions and settle (syncRun.optCtx).
	settle chan struct{}
}

// optTarget is one downstream table in optimistic mode.
type optTarget struct {
	// ddl is held while a DDL of the target is decided and applied, so
	// that no shard passes a DDL another is still applying downstream.
	ddl sync.Mutex
	// shards are each shard's schema, as far as its DDLs have come.
	shards map[ShardRef]*schema.TableDef
	// down is the downstream table as the group knows it: the join of the
	// shards' schemas, plus what some shards dropped and others still
	// have.
	down *schema.TableDef
	// pending are the drops some shards ran and others not yet, by
	// statement (as Status shows them).
	pending map[string]*optPending
}

type optPending struct {
	step    *schema.Step
	stmt    string
	kind    schema.StepKind
	name    string // the column or index
	since   time.Time
	reached map[ShardRef]time.Time
}

func (g *ShardGroup) optLocked() *optState {
	if g.opt == nil {
		g.opt = &optState{targets: map[string]*optTarget{}, registered: map[string]bool{}, settle: make(chan struct{})}
	}
	return g.opt
}

func (o *optState) target(name string) *optTarget {
	t := o.targets[name]
	if t == nil {
		t = &optTarget{shards: map[ShardRef]*schema.TableDef{}, pending: map[string]*optPending{}}
		o.targets[name] = t
	}
	return t
}

// joinInto widens down with def's columns and indexes that down lacks
// (and takes def whole when down is nil).
func joinInto(down, def *schema.TableDef) *schema.TableDef {
	if def == nil {
		return down
	}
	if down == nil {
		return def
	}
	var add []schema.ColumnDef
	for _, c := range def.Columns {
		if down.Column(c.Name) < 0 {
			add = append(add, c)
		}
	}
	var addIx []schema.IndexDef
	for _, ix := range def.Indexes {
		if !slices.ContainsFunc(down.Indexes, func(x schema.IndexDef) bool { return strings.EqualFold(x.Name, ix.Name) }) {
			addIx = append(addIx, ix)
		}
	}
	if len(add) == 0 && len(addIx) == 0 {
		return down
	}
	j := *down
	j.Columns = append(slices.Clone(down.Columns), add...)
	j.Indexes = append(slices.Clone(down.Indexes), addIx...)
	return &j
}

// optRegister records the shard tables of source as its tracker has them
// now, by target: at the start of each of its runs, which makes it count
// among the sources whose shards are known. The downstream schema the
// group knows widens to take them (after a restart it is rebuilt so).
//
// downs are the downstream tables as the sink reads them (by target; nil
// or missing when unknown): the columns and indexes only they have join
// the group's view too, so that it knows what only the downstream still
// has (a column some shards dropped while another, not registered yet,
// still has it, after a restart; a column added downstream by hand).
func (g *ShardGroup) optRegister(source string, shards map[string]map[ShardRef]*schema.TableDef, downs map[string]*schema.TableDef) {
	g.mu.Lock()
	defer g.mu.Unlock()
	o := g.optLocked()
	for _, t := range o.targets {
		for r := range t.shards {
			if r.Source == source {
				delete(t.shards, r)
			}
		}
	}
	for target, defs := range shards {
		t := o.target(target)
		for r, d := range defs {
			t.shards[r] = d
			t.down = joinInto(t.down, d)
		}
	}
	for target, d := range downs {
		if d != nil {
			t := o.target(target)
			t.down = joinInto(t.down, d)
		}
	}
	o.registered[source] = true
	g.optCompleteAndPrune()
}

// allRegistered reports whether every source has registered (g.mu held).
func (g *ShardGroup) allRegistered() bool {
	for _, s := range g.sources {
		if !g.opt.registered[s] {
			return false
		}
	}
	return true
}

// optInfer records, once every source has registered, as held back the
// drop of each column and index of the downstream table that some shards
// have and others lack (g.mu held): a group that starts (after a restart)
// cannot tell a column some shards dropped from one some shards have not
// added yet, so it shows both in Status, reached by the shards without it,
// until the shards agree. It then drops the column downstream when no
// shard has it any more (what the last shard's drop does anyway), and
// forgets it when every shard has it. A column or index no shard has (one
// added downstream by hand) is left alone.
func (g *ShardGroup) optInfer(target string, t *optTarget) {
	if t.down == nil || len(t.shards) == 0 {
		return
	}
	sch, tbl, _ := strings.Cut(target, ".")
	now := time.Now()
	infer := func(kind schema.StepKind, name, clause string) {
		var has, lacks []ShardRef
		for r, d := range t.shards {
			if kind == schema.StepDropColumn && d.Column(name) >= 0 || kind == schema.StepDropIndex && indexOf(d, name) >= 0 {
				has = append(has, r)
			} else {
				lacks = append(lacks, r)
			}
		}
		if len(has) == 0 || len(lacks) == 0 || t.pendingFor(kind, name) != nil {
			return
		}
		stmts, err := schema.Split(sch, "ALTER TABLE "+quoteIdent(sch)+"."+quoteIdent(tbl)+" "+clause)
		if err != nil || len(stmts) != 1 {
			return
		}
		steps, err := stmts[0].Steps(t.down)
		if err != nil || len(steps) != 1 {
			return
		}
		stmt, err := steps[0].Render(nil)
		if err != nil {
			return
		}
		p := &optPending{step: &steps[0], stmt: stmt, kind: kind, name: name, since: now, reached: map[ShardRef]time.Time{}}
		for _, r := range lacks {
			p.reached[r] = now
		}
		t.pending[stmt] = p
	}
	for _, c := range t.down.Columns {
		infer(schema.StepDropColumn, c.Name, "DROP COLUMN "+quoteIdent(c.Name))
	}
	for _, ix := range t.down.Indexes {
		if !strings.EqualFold(ix.Name, "PRIMARY") {
			infer(schema.StepDropIndex, ix.Name, "DROP INDEX "+quoteIdent(ix.Name))
		}
	}
}

// pendingFor is the drop held back of the column or index name (g.mu
// held), nil when none.
func (t *optTarget) pendingFor(kind schema.StepKind, name string) *optPending {
	for _, p := range t.pending {
		if p.kind == kind && strings.EqualFold(p.name, name) {
			return p
		}
	}
	return nil
}

// prune forgets the drops held back whose column or index every shard has
// again (g.mu held): one that added it back, or, for a drop inferred after
// a restart, a column the shards lacking it were still to add.
func (t *optTarget) prune() {
	if len(t.shards) == 0 {
		return
	}
	for k, p := range t.pending {
		all := true
		for _, d := range t.shards {
			if p.kind == schema.StepDropColumn && d.Column(p.name) < 0 || p.kind == schema.StepDropIndex && indexOf(d, p.name) < 0 {
				all = false
				break
			}
		}
		if all {
			delete(t.pending, k)
		}
	}
}

// optRemoveLocked forgets source (taken out of the group, g.mu held): its
// registration, its shard tables of every target and their arrivals at
// the drops held back; the drops every remaining shard has again are
// forgotten (prune), and the syncers are woken to apply those no
// remaining shard needs (optimisticSettle). Once the remaining sources
// have all registered, the drops held back are inferred as optRegister
// does when the last one registers.
func (g *ShardGroup) optRemoveLocked(source string) {
	o := g.opt
	if o == nil {
		return
	}
	delete(o.registered, source)
	for _, t := range o.targets {
		optForgetSource(t, source)
	}
	g.optCompleteAndPrune()
	close(o.settle)
	o.settle = make(chan struct{})
}

// optCompleteAndPrune marks the group complete once every source has
// registered (inferring each target's state then), and prunes every
// target (g.mu held).
func (g *ShardGroup) optCompleteAndPrune() {
	o := g.opt
	if !o.complete && g.allRegistered() {
		o.complete = true
		for name, t := range o.targets {
			g.optInfer(name, t)
		}
	}
	for _, t := range o.targets {
		t.prune()
	}
}

// optForgetSource takes source's shard tables out of t (g.mu held).
func optForgetSource(t *optTarget, source string) {
	for r := range t.shards {
		if r.Source == source {
			delete(t.shards, r)
		}
	}
	for _, p := range t.pending {
		for r := range p.reached {
			if r.Source == source {
				delete(p.reached, r)
			}
		}
	}
}

// optSettleChan is the channel closed when drops held back may be due
// without a DDL (see optState.settle).
func (g *ShardGroup) optSettleChan() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.optLocked().settle
}

// optShard records one shard table's schema after a DDL that is not
// coordinated (CREATE TABLE, DROP TABLE, RENAME TABLE): def nil drops it.
func (g *ShardGroup) optShard(shard ShardRef, target string, def *schema.TableDef) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.optLocked().target(target)
	if def == nil {
		delete(t.shards, shard)
		return
	}
	t.shards[shard] = def
	t.down = joinInto(t.down, def)
}

// optShardRun is optShard, through etcd when the group coordinates
// through it.
func (g *ShardGroup) optShardRun(ctx context.Context, io *optIO, shard ShardRef, target string, def *schema.TableDef) error {
	if g.etcd == nil {
		g.optShard(shard, target, def)
		return nil
	}
	return g.optTargetDo(ctx, io, target, func(t *optTarget) error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if def == nil {
			delete(t.shards, shard)
			return nil
		}
		t.shards[shard] = def
		t.down = joinInto(t.down, def)
		return nil
	})
}

// optAction is what optimistic mode does with one clause.
type optAction int

const (
	optSkip  optAction = iota // the downstream has it already, or needs nothing
	optApply                  // apply it downstream
	optDefer                  // a drop other shards have not run yet
)

// optimistic is a shard's DDL in optimistic mode: its clauses (steps, from
// the shard's schema before the statement), each decided against the
// downstream schema and the other shards' and applied downstream (exec
// with the clause rendered for the target) when it widens the downstream
// table, skipped when the downstream has it already, held back when it
// drops what other shards still have, and refused with a
// *ShardIncompatibleDDLError when the downstream cannot take it. Clauses
// before a refused one stay applied. io (nil in one process) is what a
// group through etcd needs to finish a statement another process left half
// applied.
func (g *ShardGroup) optimistic(ctx context.Context, shard ShardRef, target string, steps []schema.Step,
	render func(*schema.Step) (string, error), exec func(query string) error, io *optIO) (err error) {
	g.mu.Lock()
	if g.err != nil {
		g.mu.Unlock()
		return g.err
	}
	if !slices.Contains(g.sources, shard.Source) {
		g.mu.Unlock()
		return fmt.Errorf("dmworker: shard group of task %s: source %s is not one of its sources %v", g.task, shard.Source, g.sources)
	}
	t := g.optLocked().target(target)
	g.mu.Unlock()
	t.ddl.Lock()
	defer t.ddl.Unlock()
	end, err := g.optEtcdBegin(ctx, target, t, io)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	for i := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		st := &steps[i]
		stmt, err := render(st)
		if err != nil {
			return err
		}
		g.mu.Lock()
		act, others, reason := g.optDecide(t, shard, st)
		if reason != "" {
			g.mu.Unlock()
			return &ShardIncompatibleDDLError{Task: g.task, Target: target, Shard: shard, Statement: stmt, Reason: reason, Others: others}
		}
		var after *schema.TableDef
		if act == optApply && g.etcd != nil {
			base := t.down
			if base == nil {
				base = st.Before
			}
			if after, err = st.ApplyTo(base); err != nil {
				after = joinInto(base, st.After)
			}
		}
		g.mu.Unlock()
		if act == optApply {
			if err := g.optEtcdApplying(ctx, target, t, stmt, st.Kind, optName(st), after); err != nil {
				return err
			}
			if err := exec(stmt); err != nil {
				return err
			}
		}
		g.mu.Lock()
		t.shards[shard] = st.After
		switch act {
		case optApply:
			if d, err := st.ApplyTo(t.down); err == nil {
				t.down = d
			} else {
				// The downstream ran it; the group's view follows the
				// shard's columns at least.
				t.down = joinInto(t.down, st.After)
			}
			for k, p := range t.pending {
				if p.kind == st.Kind && strings.EqualFold(p.name, optName(st)) {
					delete(t.pending, k)
				}
			}
		case optDefer:
			p := t.pending[stmt]
			if p == nil {
				p = t.pendingFor(st.Kind, optName(st)) // one inferred after a restart
			}
			if p == nil {
				p = &optPending{step: st, stmt: stmt, kind: st.Kind, name: optName(st), since: time.Now(), reached: map[ShardRef]time.Time{}}
				t.pending[stmt] = p
			}
			if _, ok := p.reached[shard]; !ok {
				p.reached[shard] = time.Now()
			}
		}
		t.prune()
		g.mu.Unlock()
		if act == optApply {
			if err := g.optEtcdApplied(ctx, target, t); err != nil {
				return err
			}
		}
	}
	return nil
}

func optName(st *schema.Step) string {
	if st.Kind == schema.StepAddIndex || st.Kind == schema.StepDropIndex || st.Kind == schema.StepRenameIndex {
		return st.Index
	}
	return st.Column
}

// optDecide decides a clause of shard's DDL (g.mu held): the action, or a
// reason it is incompatible and the shards it conflicts with.
func (g *ShardGroup) optDecide(t *optTarget, shard ShardRef, st *schema.Step) (optAction, []ShardRef, string) {
	down := t.down
	if down == nil {
		down = st.Before
	}
	// others are the other shards that have the column (or index) name.
	others := func(has func(*schema.TableDef) bool) []ShardRef {
		var out []ShardRef
		for r, d := range t.shards {
			if r != shard && has(d) {
				out = append(out, r)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
		return out
	}
	allKnown := g.allRegistered()
	hasColumn := func(name string) func(*schema.TableDef) bool {
		return func(d *schema.TableDef) bool { return d.Column(name) >= 0 }
	}
	hasIndex := func(name string) func(*schema.TableDef) bool {
		return func(d *schema.TableDef) bool { return indexOf(d, name) >= 0 }
	}
	col := func(d *schema.TableDef, name string) *schema.ColumnDef {
		if i := d.Column(name); i >= 0 {
			return &d.Columns[i]
		}
		return nil
	}
	switch st.Kind {
	case schema.StepAddColumn:
		nc := col(st.After, st.Column)
		if dc := col(down, st.Column); dc != nil {
			if fitsCharsetKnown(nc, dc) && nc.Default == dc.Default {
				return optSkip, nil, ""
			}
			return 0, others(hasColumn(st.Column)), fmt.Sprintf("it adds column %s as %s, the downstream has it as %s", st.Column, describeColumn(nc), describeColumn(dc))
		}
		if o := others(func(*schema.TableDef) bool { return true }); len(o) > 0 && !nc.Omittable() {
			return 0, o, fmt.Sprintf("it adds column %s NOT NULL without a default: the rows of the shards without it could not be written", st.Column)
		}
		return optApply, nil, ""
	case schema.StepDropColumn:
		dc := col(down, st.Column)
		if dc == nil {
			return optSkip, nil, ""
		}
		holders := others(hasColumn(st.Column))
		if len(holders) == 0 && allKnown {
			return optApply, nil, ""
		}
		if !dc.Omittable() {
			return 0, holders, fmt.Sprintf("it drops column %s, which other shards still write and which is NOT NULL without a default downstream: this shard's rows could not be written without it", st.Column)
		}
		return optDefer, nil, ""
	case schema.StepModifyColumn:
		oc, nc, dc := col(st.Before, st.Column), col(st.After, st.Column), col(down, st.Column)
		switch {
		case oc == nil || nc == nil:
			return optSkip, nil, ""
		case !schema.Fits(oc, nc):
			return 0, others(hasColumn(st.Column)), fmt.Sprintf("it changes column %s from %s to %s, which is not a widening", st.Column, describeColumn(oc), describeColumn(nc))
		case dc == nil:
			return optApply, nil, ""
		case schema.Fits(nc, dc) && schema.Fits(dc, nc) && nc.Default == dc.Default:
			return optSkip, nil, ""
		case schema.Fits(dc, nc):
			return optApply, nil, ""
		case schema.Fits(nc, dc):
			return optSkip, nil, "" // the downstream's is wider already
		}
		return 0, others(hasColumn(st.Column)), fmt.Sprintf("it changes column %s to %s, which the downstream's %s does not fit in nor widen to", st.Column, describeColumn(nc), describeColumn(dc))
	case schema.StepAddIndex:
		ni := indexOf(st.After, st.Index)
		di := indexOf(down, st.Index)
		if ni < 0 {
			return optSkip, nil, ""
		}
		if di < 0 {
			return optApply, nil, ""
		}
		a, b := st.After.Indexes[ni], down.Indexes[di]
		if a.Unique == b.Unique && a.Primary == b.Primary && slices.EqualFunc(a.Columns, b.Columns, strings.EqualFold) {
			return optSkip, nil, ""
		}
		return 0, others(hasIndex(st.Index)), fmt.Sprintf("it adds index %s on (%s), the downstream has it on (%s)", st.Index,
			strings.Join(a.Columns, ","), strings.Join(b.Columns, ","))
	case schema.StepDropIndex:
		if indexOf(down, st.Index) < 0 {
			return optSkip, nil, ""
		}
		if strings.EqualFold(st.Index, "PRIMARY") {
			return 0, others(hasIndex(st.Index)), "it drops the primary key"
		}
		if len(others(hasIndex(st.Index))) == 0 && allKnown {
			return optApply, nil, ""
		}
		return optDefer, nil, ""
	case schema.StepRenameColumn:
		return 0, others(hasColumn(st.Column)), fmt.Sprintf("it renames column %s", st.Column)
	case schema.StepRenameIndex:
		return 0, others(hasIndex(st.Index)), fmt.Sprintf("it renames index %s", st.Index)
	case schema.StepRenameTable:
		return 0, nil, "it renames the shard table"
	}
	if !slices.EqualFunc(st.Before.Columns, st.After.Columns, sameColumnDef) {
		return 0, nil, "it changes columns in a way optimistic mode does not join (one clause at a time: add, drop, modify)"
	}
	return optSkip, nil, "" // table options and the like: not forwarded
}

func indexOf(d *schema.TableDef, name string) int {
	return slices.IndexFunc(d.Indexes, func(ix schema.IndexDef) bool { return strings.EqualFold(ix.Name, name) })
}

// fitsCharsetKnown is schema.Fits(a, b), where a character set that is
// not known ("": a shard's tracker that never saw the server's default)
// is taken to be the other's: the downstream's definition, read from the
// server, always says one.
func fitsCharsetKnown(a, b *schema.ColumnDef) bool {
	if a.Charset == "" || b.Charset == "" {
		a2, b2 := *a, *b
		a2.Charset, b2.Charset = "", ""
		a, b = &a2, &b2
	}
	return schema.Fits(a, b)
}

func sameColumnDef(a, b schema.ColumnDef) bool {
	return strings.EqualFold(a.Name, b.Name) && schema.Fits(&a, &b) && schema.Fits(&b, &a) && a.Default == b.Default
}

func describeColumn(c *schema.ColumnDef) string {
	s := c.Type
	if !c.Nullable {
		s += " NOT NULL"
	}
	if c.Default != "" {
		s += " DEFAULT " + c.Default
	}
	return s
}

// optStatus lists the drops held back (g.mu held): each statement some
// shards ran and others not yet, with the sources still to run it.
func (g *ShardGroup) optStatus() []ShardLockStatus {
	if g.opt == nil {
		return nil
	}
	var out []ShardLockStatus
	for target, t := range g.opt.targets {
		for _, p := range t.pending {
			st := ShardLockStatus{Task: g.task, Mode: ShardOptimistic, Target: target, Statement: p.stmt, Since: p.since}
			for r, at := range p.reached {
				st.Reached = append(st.Reached, ShardReached{r, at})
			}
			sort.Slice(st.Reached, func(i, j int) bool { return st.Reached[i].String() < st.Reached[j].String() })
			waiting := map[string]bool{}
			for r, d := range t.shards {
				if p.kind == schema.StepDropColumn && d.Column(p.name) >= 0 || p.kind == schema.StepDropIndex && indexOf(d, p.name) >= 0 {
					waiting[r.Source] = true
				}
			}
			for _, s := range g.sources {
				if waiting[s] || !g.opt.registered[s] {
					st.Waiting = append(st.Waiting, s)
				}
			}
			out = append(out, st)
		}
	}
	return out
}

// optimisticSettle applies the drops held back that no shard still has,
// once every source has registered (io.exec runs a statement on a target):
// at the start of each run, and when RemoveSource wakes the runs
// (optTick).
func (g *ShardGroup) optimisticSettle(ctx context.Context, io *optIO) error {
	g.mu.Lock()
	if g.opt == nil || !g.allRegistered() {
		g.mu.Unlock()
		return nil
	}
	targets := make(map[string]*optTarget, len(g.opt.targets))
	for name, t := range g.opt.targets {
		targets[name] = t
	}
	g.mu.Unlock()
	for name, t := range targets {
		if err := g.settleTarget(ctx, name, t, io); err != nil {
			return err
		}
	}
	return nil
}

func (g *ShardGroup) settleTarget(ctx context.Context, name string, t *optTarget, io *optIO) (err error) {
	t.ddl.Lock()
	defer t.ddl.Unlock()
	end, err := g.optEtcdBegin(ctx, name, t, io)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	g.mu.Lock()
	var done []*optPending
	for _, p := range t.pending {
		held := false
		for _, d := range t.shards {
			if p.kind == schema.StepDropColumn && d.Column(p.name) >= 0 || p.kind == schema.StepDropIndex && indexOf(d, p.name) >= 0 {
				held = true
			}
		}
		if !held {
			done = append(done, p)
		}
	}
	g.mu.Unlock()
	sort.Slice(done, func(i, j int) bool { return done[i].since.Before(done[j].since) })
	for _, p := range done {
		g.mu.Lock()
		after := t.down
		if p.step != nil && t.down != nil {
			if d, err := p.step.ApplyTo(t.down); err == nil {
				after = d
			}
		}
		g.mu.Unlock()
		if after != nil {
			if err := g.optEtcdApplying(ctx, name, t, p.stmt, p.kind, p.name, after); err != nil {
				return err
			}
		}
		if err := io.exec(name, p.stmt); err != nil {
			return err
		}
		g.mu.Lock()
		t.down = after
		delete(t.pending, p.stmt)
		g.mu.Unlock()
		if err := g.optEtcdApplied(ctx, name, t); err != nil {
			return err
		}
	}
	return nil
}

// optimisticStart registers, at the start of a run in optimistic shard
// mode, the source's shard tables (those a route renames) as its tracker
// has them, then applies the drops that no shard holds back any more.
func (r *syncRun) optimisticStart(ctx context.Context) error {
	g := r.s.shard
	if g == nil || r.s.cfg.ShardMode != ShardOptimistic {
		return nil
	}
	shards := map[string]map[ShardRef]*schema.TableDef{}
	for _, n := range r.tracker.Tables() {
		target, ok := r.shardTarget(n)
		if !ok {
			continue
		}
		def, _ := r.tracker.Table(n.Schema, n.Name)
		if shards[target] == nil {
			shards[target] = map[ShardRef]*schema.TableDef{}
		}
		shards[target][ShardRef{Source: r.s.cfg.Source, Table: n.Schema + "." + n.Name}] = def
	}
	downs := map[string]*schema.TableDef{}
	if td, ok := r.s.sink.(TableDefiner); ok {
		for target := range shards {
			sch, tbl, _ := strings.Cut(target, ".")
			create, err := td.ShowCreateTable(ctx, sch, tbl)
			if err != nil {
				return err
			}
			if create == "" {
				continue
			}
			tr := schema.New()
			if err := tr.CreateFromSQL(sch, create); err != nil {
				// The group does without it, as with a sink that cannot
				// tell (its view is then the shards' join).
				r.s.log.Warn("optimistic shard mode: downstream table definition not understood", slog.String("target", target), errAttr(err))
				continue
			}
			downs[target], _ = tr.Table(sch, tbl)
		}
	}
	if !slices.Contains(g.Sources(), r.s.cfg.Source) {
		return fmt.Errorf("dmworker: shard group of task %s: source %s is not one of its sources %v (removed?)", g.task, r.s.cfg.Source, g.Sources())
	}
	r.opt = &optWatch{}
	io := r.optIO(ctx)
	if g.etcd != nil {
		if err := g.optRegisterEtcd(ctx, io, r.s.cfg.Source, shards, downs); err != nil {
			return err
		}
	} else {
		g.optRegister(r.s.cfg.Source, shards, downs)
	}
	return g.optimisticSettle(ctx, io)
}

// optWatch is a run's watch, in optimistic shard mode, for drops held back
// that become due without a DDL of its own (a source taken out of the
// group: optState.settle).
type optWatch struct {
	inTxn bool // a transaction's rows are being read
	// wctx ends (wcancel) when the group's settle channel is closed.
	wctx    context.Context
	wcancel context.CancelFunc
}

// optCtx is shardCtx in optimistic mode: parent's context, ending also
// when drops held back may be due; nil mid-transaction (the rest of it
// comes first).
func (r *syncRun) optCtx(parent context.Context) context.Context {
	if r.opt.inTxn {
		return nil
	}
	if r.opt.wctx != nil {
		return r.opt.wctx
	}
	ch := r.s.shard.optSettleChan()
	wctx, cancel := context.WithCancel(parent)
	r.opt.wctx, r.opt.wcancel = wctx, cancel
	go func() {
		select {
		case <-ch:
		case <-wctx.Done():
		}
		cancel()
	}()
	return wctx
}

// optTick is shardTick in optimistic mode: woken between transactions, the
// run applies (with nothing applying) the drops held back that no shard
// needs any more.
func (r *syncRun) optTick(ctx context.Context) error {
	if r.opt.wcancel != nil {
		r.opt.wcancel()
	}
	r.opt.wctx, r.opt.wcancel = nil, nil
	if r.opt.inTxn {
		return nil
	}
	pos := r.lastTxnEnd
	return r.apply.ddl(ctx, pos, func() error {
		if err := r.s.shard.optimisticSettle(ctx, r.optIO(ctx)); err != nil {
			return err
		}
		return r.w.saveCheckpoint(ctx, pos)
	})
}

// optIO is what the syncer's ShardGroup needs to run a statement of
// optimistic mode downstream and read a target's definition there.
func (r *syncRun) optIO(ctx context.Context) *optIO {
	io := &optIO{exec: func(target, stmt string) error { return r.optExec(ctx, target, stmt, "", streamer.Position{}) }}
	if td, ok := r.s.sink.(TableDefiner); ok {
		io.down = func(ctx context.Context, target string) (*schema.TableDef, error) {
			sch, tbl, _ := strings.Cut(target, ".")
			create, err := td.ShowCreateTable(ctx, sch, tbl)
			if err != nil || create == "" {
				return nil, err
			}
			tr := schema.New()
			if err := tr.CreateFromSQL(sch, create); err != nil {
				return nil, nil //nolint:nilerr // not understood: the caller runs the statement again (safe mode)
			}
			d, _ := tr.Table(sch, tbl)
			return d, nil
		}
	}
	return io
}

// shardTarget is the downstream table of a shard table: one the task
// replicates and a route renames.
func (r *syncRun) shardTarget(n schema.TableName) (string, bool) {
	if n.Name == "" || !r.s.rules.allowed(n.Schema, n.Name) {
		return "", false
	}
	rs, rt := r.s.rules.route(n.Schema, n.Name)
	if rs == n.Schema && rt == n.Name {
		return "", false
	}
	return rs + "." + rt, true
}

// optExec runs a statement of optimistic mode on a target: in safe mode,
// since a crash may come after it ran and before the checkpoint passed it.
func (r *syncRun) optExec(ctx context.Context, target, stmt, source string, pos streamer.Position) error {
	sch, tbl, _ := strings.Cut(target, ".")
	r.s.log.Info("optimistic shard DDL applied downstream", slog.String("target", target), slog.String("query", stmt))
	return r.execDDL(ctx, &DDL{Schema: sch, Table: tbl, Query: stmt, SourceQuery: source, Pos: pos, SafeMode: true})
}

// optimisticDDL is optimistic shard mode's hook in the DDL path (see
// shardDDL): the clauses of an ALTER TABLE, CREATE INDEX or DROP INDEX of
// a shard table go through the group, which applies downstream those
// that widen it; CREATE, DROP and RENAME TABLE run as they come and tell
// the group the shard's new schema.
func (r *syncRun) optimisticDDL(ctx context.Context, ev *streamer.Event, st *schema.Stmt, prev *schema.TableDef, d *DDL, exec func() error) error {
	g := r.s.shard
	_, isShard := r.shardTarget(st.Table)
	shard := ShardRef{Source: r.s.cfg.Source, Table: st.Table.Schema + "." + st.Table.Name}
	target := d.Schema + "." + d.Table
	switch {
	case !isShard:
		return exec()
	case shardKinds[st.Kind]:
		steps, err := st.Steps(prev)
		if err != nil {
			return err
		}
		return g.optimistic(ctx, shard, target, steps,
			func(s *schema.Step) (string, error) { return s.Render(r.s.rules.route) },
			func(q string) error { return r.optExec(ctx, target, q, d.SourceQuery, ev.Pos) }, r.optIO(ctx))
	}
	if st.Kind == schema.KindCreateTable {
		def, _ := r.tracker.Table(st.Table.Schema, st.Table.Name)
		return g.optCreate(ctx, shard, target, def, exec, func(q string) error { return r.optExec(ctx, target, q, d.SourceQuery, ev.Pos) }, r.optIO(ctx))
	}
	if st.Kind == schema.KindDropTable {
		// A shard table dropped upstream leaves the merged table
		// downstream, which holds the other shards' rows: the group only
		// forgets the shard.
		r.s.log.Info("shard table dropped upstream; not downstream, the merged table stays",
			slog.String("shard", shard.String()), slog.String("target", target))
	} else if err := exec(); err != nil {
		return err
	}
	for _, n := range st.Tables() {
		if t, ok := r.shardTarget(n); ok {
			def, _ := r.tracker.Table(n.Schema, n.Name) // nil once dropped or renamed away
			if err := g.optShardRun(ctx, r.optIO(ctx), ShardRef{Source: r.s.cfg.Source, Table: n.Schema + "." + n.Name}, t, def); err != nil {
				return err
			}
		}
	}
	return nil
}

// optCreate is the CREATE TABLE of a shard table (create runs it: on a
// downstream table that exists already it does nothing). A shard created
// with columns the downstream table lacks gets them added downstream
// (ALTER TABLE ... ADD COLUMN, from the tracked definition), when the
// other shards' rows can do without them; a column the downstream has
// that this shard's rows cannot fit in, or that they cannot do without,
// is a *ShardIncompatibleDDLError. io is optimistic's.
func (g *ShardGroup) optCreate(ctx context.Context, shard ShardRef, target string, def *schema.TableDef, create func() error, exec func(q string) error, io *optIO) (err error) {
	if def == nil {
		return create()
	}
	g.mu.Lock()
	t := g.optLocked().target(target)
	g.mu.Unlock()
	t.ddl.Lock()
	defer t.ddl.Unlock()
	end, err := g.optEtcdBegin(ctx, target, t, io)
	if err != nil {
		return err
	}
	defer func() { err = end(err) }()
	if err := create(); err != nil {
		return err
	}
	g.mu.Lock()
	down := t.down
	var others []ShardRef
	for r := range t.shards {
		if r != shard {
			others = append(others, r)
		}
	}
	sort.Slice(others, func(i, j int) bool { return others[i].String() < others[j].String() })
	g.mu.Unlock()
	sch, tbl, _ := strings.Cut(target, ".")
	fail := func(reason string) error {
		return &ShardIncompatibleDDLError{Task: g.task, Target: target, Shard: shard, Statement: "CREATE TABLE " + def.QualifiedName().String(), Reason: reason, Others: others}
	}
	if down != nil {
		for _, dc := range down.Columns {
			if i := def.Column(dc.Name); i < 0 && !dc.Omittable() {
				return fail(fmt.Sprintf("the shard table lacks column %s, which is NOT NULL without a default downstream", dc.Name))
			} else if i >= 0 && !schema.Fits(&def.Columns[i], &dc) {
				return fail(fmt.Sprintf("it has column %s as %s, which does not fit the downstream's %s", dc.Name, describeColumn(&def.Columns[i]), describeColumn(&dc)))
			}
		}
		for _, c := range def.Columns {
			if down.Column(c.Name) >= 0 {
				continue
			}
			if c.Generated || (!c.Omittable() && len(others) > 0) {
				return fail(fmt.Sprintf("it has column %s, which the downstream lacks and which cannot be added for the other shards (NOT NULL without a default, or generated)", c.Name))
			}
			q := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s", schema.TableName{Schema: sch, Name: tbl}, columnSQL(&c))
			g.mu.Lock()
			after := joinInto(t.down, &schema.TableDef{Schema: sch, Name: tbl, Columns: []schema.ColumnDef{c}})
			g.mu.Unlock()
			if err := g.optEtcdApplying(ctx, target, t, q, schema.StepAddColumn, c.Name, after); err != nil {
				return err
			}
			if err := exec(q); err != nil {
				return err
			}
			g.mu.Lock()
			t.down = joinInto(t.down, &schema.TableDef{Schema: sch, Name: tbl, Columns: []schema.ColumnDef{c}})
			down = t.down
			g.mu.Unlock()
			if err := g.optEtcdApplied(ctx, target, t); err != nil {
				return err
			}
		}
	}
	g.mu.Lock()
	t.shards[shard] = def
	t.down = joinInto(t.down, def)
	g.mu.Unlock()
	return nil
}

// columnSQL is a column's definition as ADD COLUMN takes it, from what
// the tracker keeps (type, character set, nullability, default).
func columnSQL(c *schema.ColumnDef) string {
	var b strings.Builder
	b.WriteString(schema.TableName{Schema: c.Name}.String())
	b.WriteString(" " + c.Type)
	if c.Charset != "" && !c.Binary {
		b.WriteString(" CHARACTER SET " + c.Charset)
	}
	if !c.Nullable {
		b.WriteString(" NOT NULL")
	}
	if c.Default != "" {
		b.WriteString(" DEFAULT " + c.Default)
	}
	return b.String()
}
