package dmworker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// ShardMode is how a task coordinates the DDL of shard tables that several
// sources merge into one downstream table (SubTaskConfig.ShardMode,
// SyncerConfig.ShardMode).
type ShardMode string

// Shard modes.
const (
	// ShardModeOff ("") applies each DDL as it comes, from each source.
	ShardModeOff ShardMode = ""
	// ShardPessimistic holds a source's stream at a shard table's DDL
	// until every source of the task's ShardGroup has reached the same
	// DDL, then applies it downstream once (see ShardGroup).
	ShardPessimistic ShardMode = "pessimistic"
	// ShardOptimistic applies a shard table's DDL as it comes when the
	// downstream table can take it while the other shards keep their
	// schema (the downstream is the join of the shards' schemas), holds
	// back a drop until every shard has run it, and stops a shard at a
	// DDL the others' rows could not live with (see ShardGroup and
	// ShardIncompatibleDDLError).
	ShardOptimistic ShardMode = "optimistic"
)

// Shard errors.
var (
	// ErrShardModeNotBuilt refuses a task in a shard mode this version
	// does not have (none since optimistic mode was built; kept for
	// callers that test for it).
	ErrShardModeNotBuilt = errors.New("dmworker: shard mode not built yet")
	// ErrShardDDLConflict means the shards of one group reached differing
	// DDL statements: the task stops. The error is a *ShardDDLConflictError
	// naming the shards and statements.
	ErrShardDDLConflict = errors.New("dmworker: shards ran differing DDL")
	// ErrShardLockCycle means every source of a ShardGroup holds at a DDL
	// that waits for another source held elsewhere (the sources ran DDLs
	// of two merged tables in different orders): no lock can complete, so
	// the task stops rather than hang. Not resolved by itself yet: run the
	// DDLs of merged tables in one order on every source.
	ErrShardLockCycle = errors.New("dmworker: shard DDL locks wait for each other")
)

// validate checks the mode's name and refuses the modes not built.
func (m ShardMode) validate() error {
	switch m {
	case ShardModeOff, ShardPessimistic, ShardOptimistic:
		return nil
	}
	return fmt.Errorf("shard mode %q is none of %q, %q (or empty: off)", m, ShardPessimistic, ShardOptimistic)
}

// ShardRef names a shard table: an upstream table of one source.
type ShardRef struct {
	Source string
	// Table is the upstream table, "schema.table".
	Table string
}

func (r ShardRef) String() string { return r.Source + ":" + r.Table }

// ShardDDLConflictError is the ErrShardDDLConflict a ShardGroup returns
// when two shards of one downstream table reach differing DDLs at the same
// step: each shard's statement (as routed to the target).
type ShardDDLConflictError struct {
	Task string
	// Target is the downstream table, "schema.table".
	Target string
	// Statements are the statements by shard: the one the group was
	// holding for and the differing one.
	Statements map[ShardRef]string
}

func (e *ShardDDLConflictError) Error() string {
	refs := make([]ShardRef, 0, len(e.Statements))
	for r := range e.Statements {
		refs = append(refs, r)
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].String() < refs[j].String() })
	var b strings.Builder
	fmt.Fprintf(&b, "dmworker: task %s: shards of %s ran differing DDL:", e.Task, e.Target)
	for _, r := range refs {
		fmt.Fprintf(&b, " %s %q;", r, e.Statements[r])
	}
	b.WriteString(" the task stops: make the shards' statements equal (Skip or Replace the odd one in each subtask) and restart the task with a new ShardGroup")
	return b.String()
}

// Is makes errors.Is(err, ErrShardDDLConflict) true.
func (e *ShardDDLConflictError) Is(target error) bool { return target == ErrShardDDLConflict }

// ShardLockStatus is one held shard DDL lock: a downstream table whose DDL
// waits for some sources.
type ShardLockStatus struct {
	Task string
	Mode ShardMode
	// Target is the downstream table, "schema.table"; Statement the DDL
	// held (as routed to it).
	Target, Statement string
	// Since is when the first shard reached it.
	Since time.Time
	// Reached are the shards that reached it (and hold their source's
	// stream), with when; Waiting the sources not there yet.
	Reached []ShardReached
	Waiting []string
}

// ShardReached is a shard that has reached a held DDL, and when.
type ShardReached struct {
	ShardRef
	At time.Time
}

// ShardGroup coordinates, within one process and without etcd, the DDL of
// one task's shard tables in pessimistic shard mode. The host makes one per
// task with the task's sources and gives it (WithShardGroup) to each of
// those sources' SourceWorker, SubTask or Syncer; the task's config sets
// ShardMode "pessimistic".
//
// A shard table is an upstream table a route renames (its target differs
// from its own name). When a source's stream reaches an ALTER TABLE,
// CREATE INDEX or DROP INDEX of a shard table, the syncer first applies
// everything before it and saves its checkpoint before the DDL, then holds:
// its whole stream waits until every source of the group has reached the
// same DDL (the statement as routed to the target, compared as text) on
// one of its shard tables. The last to arrive applies it downstream, once;
// then every held source goes on. A source's other shard tables that reach
// the same DDL later pass it without applying it again; until they do,
// their rows keep their older shape, which the DDLs that add a nullable
// column or one with a default, add an index or widen a column accept (a
// DDL that drops or narrows a column needs each source's shards to reach
// it before the merge: not built yet).
//
// Differing statements at the same step stop every subtask of the group
// with a *ShardDDLConflictError (ErrShardDDLConflict), and the group stays
// stopped; so does a cycle, every source holding at a DDL that waits for
// another source held at another table's DDL (ErrShardLockCycle). A subtask stopped or restarted while held reaches the DDL again
// from its checkpoint (before it) and takes its place again; one restarted
// after the DDL was applied but before its checkpoint moved passes it
// (safe-mode replay). Status lists the held locks. A ShardGroup lives as
// long as the process: its state is not stored. A process restarted in the
// middle of a lock finds every source before the DDL (their checkpoints
// are) and the lock starts again; but one killed after the DDL was applied
// and before every held source saved its checkpoint past it leaves those
// sources, in the new process, holding for sources already past it: the
// host checks the downstream table has the DDL and calls Release.
//
// In optimistic shard mode (ShardMode "optimistic") nothing holds: each
// clause of a shard table's ALTER TABLE, CREATE INDEX or DROP INDEX is
// decided against the downstream table, which the group knows as the join
// of the shards' schemas (rebuilt, after a restart, from the schemas each
// source's checkpoint holds). A clause that widens the downstream table
// (adds a column that is nullable or has a default, adds an index, widens
// a column's type, changes a default) is applied downstream, once: the
// shards that run it later pass it. One that drops a column or an index
// is held back while another shard still has it (the downstream keeps it,
// and the rows of shards without it get its default), and applied when
// the last shard drops it. The rows of a shard whose schema is behind the
// downstream's name only its own columns, so the others take their
// defaults (a safe-mode REPLACE of such a row sets them to their defaults
// again, which is what that shard's rows hold; the old values of a column
// the shard has dropped and others still have are not kept). A clause the downstream cannot take (narrowing or otherwise
// changing a column's type, renaming, adding a column NOT NULL without a
// default, a definition that differs from the downstream's, dropping a
// column NOT NULL without a default that others still write) stops that
// shard's subtask before the DDL with a *ShardIncompatibleDDLError
// (ErrShardIncompatibleDDL), which says how to go on; the other shards go
// on. Status lists the drops held back, with Mode "optimistic". A group
// serves one mode: the first subtask that takes it sets it.
type ShardGroup struct {
	task    string
	sources []string

	mu     sync.Mutex
	locks  map[string]*shardLock // by target
	seen   map[ShardRef]int      // rounds of its target each shard has passed
	passed map[ShardRef]streamer.Position
	// holding is, by source, the step its stream holds at and its target.
	holding map[string]heldAt
	err     error     // the conflict that stopped the group
	mode    ShardMode // the mode of the subtasks that took it ("" until one does)
	opt     *optState // optimistic mode's state (shardgroup_optimistic.go)
}

type heldAt struct {
	rd     *shardRound
	target string
}

// shardLock is the DDL steps of one target table.
type shardLock struct {
	rounds []*shardRound
}

// shardRound is one DDL step of a target: its statement, which sources have
// reached it, whether it is applied.
type shardRound struct {
	stmt    string
	first   ShardRef
	since   time.Time
	reached map[string]ShardReached // by source: its first shard to reach it
	running bool                    // the owner is applying it
	applied bool
	done    chan struct{} // closed once applied or failed
	err     error
}

// NewShardGroup returns the shard group of task over sources (their
// SourceConfig names; at least one, no repeats).
func NewShardGroup(task string, sources ...string) (*ShardGroup, error) {
	if !validName(task) {
		return nil, fmt.Errorf("dmworker: shard group: task name %q must be non-empty and hold no '/'", task)
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("dmworker: shard group of task %s: no source", task)
	}
	for i, s := range sources {
		if !validName(s) || slices.Contains(sources[:i], s) {
			return nil, fmt.Errorf("dmworker: shard group of task %s: source %q is empty, holds '/' or repeats", task, s)
		}
	}
	return &ShardGroup{task: task, sources: slices.Clone(sources),
		locks: map[string]*shardLock{}, seen: map[ShardRef]int{}, passed: map[ShardRef]streamer.Position{},
		holding: map[string]heldAt{}}, nil
}

// Task is the group's task name.
func (g *ShardGroup) Task() string { return g.task }

// Sources are the group's sources.
func (g *ShardGroup) Sources() []string { return slices.Clone(g.sources) }

// Err is the conflict that stopped the group, nil while none has.
func (g *ShardGroup) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Status lists the locks held now (DDLs reached by some sources and not
// yet applied), by target; in optimistic mode the drops held back.
func (g *ShardGroup) Status() []ShardLockStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []ShardLockStatus
	for target, lk := range g.locks {
		for _, rd := range lk.rounds {
			if rd.applied || rd.err != nil {
				continue
			}
			st := ShardLockStatus{Task: g.task, Mode: ShardPessimistic, Target: target, Statement: rd.stmt, Since: rd.since}
			for _, s := range g.sources {
				if r, ok := rd.reached[s]; ok {
					st.Reached = append(st.Reached, r)
				} else {
					st.Waiting = append(st.Waiting, s)
				}
			}
			out = append(out, st)
			break // later steps wait behind this one
		}
	}
	out = append(out, g.optStatus()...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// Release marks the DDL held for target (the first step not applied) as
// applied without running it, and lets the sources held there go on. It is
// the way out of a lock whose other sources are already past the DDL (see
// ShardGroup): call it once the downstream table has the DDL. It returns
// the statement released, or an error when no DDL is held for target.
func (g *ShardGroup) Release(target string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if lk := g.locks[target]; lk != nil {
		for _, rd := range lk.rounds {
			if rd.applied || rd.err != nil {
				continue
			}
			if rd.running {
				return "", fmt.Errorf("dmworker: shard group of task %s: the DDL of %s is being applied", g.task, target)
			}
			rd.applied = true
			close(rd.done)
			return rd.stmt, nil
		}
	}
	return "", fmt.Errorf("dmworker: shard group of task %s: no DDL held for %s", g.task, target)
}

// arrive is a shard's arrival at a DDL stmt (routed to target) at pos: it
// returns once the DDL is applied downstream, by exec when this arrival
// completes the step, or ctx's error, or the group's conflict.
func (g *ShardGroup) arrive(ctx context.Context, shard ShardRef, target, stmt string, pos streamer.Position, exec func() error) error {
	g.mu.Lock()
	if g.err != nil {
		g.mu.Unlock()
		return g.err
	}
	if !slices.Contains(g.sources, shard.Source) {
		g.mu.Unlock()
		return fmt.Errorf("dmworker: shard group of task %s: source %s is not one of its sources %v", g.task, shard.Source, g.sources)
	}
	if p, ok := g.passed[shard]; ok && !pos.IsZero() && pos.Compare(p) <= 0 {
		// Replayed after a restart: this shard has passed it already.
		g.mu.Unlock()
		return nil
	}
	lk := g.locks[target]
	if lk == nil {
		lk = &shardLock{}
		g.locks[target] = lk
	}
	n := g.seen[shard]
	if n == len(lk.rounds) {
		lk.rounds = append(lk.rounds, &shardRound{stmt: stmt, first: shard, since: time.Now(),
			reached: map[string]ShardReached{}, done: make(chan struct{})})
	}
	rd := lk.rounds[n]
	if rd.stmt != stmt {
		err := &ShardDDLConflictError{Task: g.task, Target: target, Statements: map[ShardRef]string{rd.first: rd.stmt, shard: stmt}}
		g.fail(err)
		g.mu.Unlock()
		return err
	}
	pass := func() {
		g.seen[shard] = n + 1
		g.passed[shard] = pos
	}
	if rd.applied {
		pass()
		g.mu.Unlock()
		return nil
	}
	if _, ok := rd.reached[shard.Source]; !ok {
		rd.reached[shard.Source] = ShardReached{shard, time.Now()}
	}
	if len(rd.reached) == len(g.sources) && !rd.running {
		// The last to arrive applies it.
		rd.running = true
		g.mu.Unlock()
		err := exec()
		g.mu.Lock()
		defer g.mu.Unlock()
		rd.running = false
		if err != nil {
			return err // a retry arrives again and applies it
		}
		if rd.err == nil {
			rd.applied = true
			close(rd.done)
		}
		pass()
		return nil
	}
	g.holding[shard.Source] = heldAt{rd, target}
	if err := g.cycle(); err != nil {
		g.fail(err)
		g.mu.Unlock()
		return err
	}
	g.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-rd.done:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if h, ok := g.holding[shard.Source]; ok && h.rd == rd {
		delete(g.holding, shard.Source)
	}
	if rd.err != nil {
		return rd.err
	}
	if !rd.applied {
		return ctx.Err()
	}
	pass()
	return nil
}

// fail stops the group with err: every step not applied fails with it.
func (g *ShardGroup) fail(err error) {
	g.err = err
	for _, l := range g.locks {
		for _, r := range l.rounds {
			if !r.applied && r.err == nil {
				r.err = err
				close(r.done)
			}
		}
	}
}

// cycle reports ErrShardLockCycle when every source holds at a step that
// waits for another source (none complete nor being applied).
func (g *ShardGroup) cycle() error {
	if len(g.holding) < len(g.sources) {
		return nil
	}
	var parts []string
	for _, s := range g.sources {
		h := g.holding[s]
		if h.rd.running || h.rd.applied || len(h.rd.reached) == len(g.sources) {
			return nil
		}
		parts = append(parts, fmt.Sprintf("%s holds at %s %q", s, h.target, h.rd.stmt))
	}
	return fmt.Errorf("%w: task %s: %s; run the DDLs of merged tables in one order on every source", ErrShardLockCycle, g.task, strings.Join(parts, "; "))
}

// ShardGroupOption is WithShardGroup's option, taken by NewSyncer,
// NewSubTask and NewSourceWorker.
type ShardGroupOption struct{ g *ShardGroup }

// WithShardGroup gives the task's ShardGroup (pessimistic or optimistic
// shard mode in one process) to a Syncer or SubTask of that task, or to a
// SourceWorker, which gives it to its subtask of the group's task (a worker
// may take one per task). A task whose ShardMode is pessimistic or
// optimistic needs it; a task whose ShardMode is off must not have one.
// Default: none.
func WithShardGroup(g *ShardGroup) ShardGroupOption { return ShardGroupOption{g} }

func (o ShardGroupOption) applySyncer(s *syncerOptions) {
	if o.g != nil {
		s.shardGroups = append(s.shardGroups, o.g)
	}
}
func (o ShardGroupOption) applySubTask(s *subTaskOptions) { o.applySyncer(&s.syncerOptions) }
func (o ShardGroupOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySyncer(&w.subTaskOptions.syncerOptions)
}

// shardGroupFor picks the group of cfg's task among those given and checks
// it against the task's ShardMode.
func shardGroupFor(cfg *SyncerConfig, groups []*ShardGroup) (*ShardGroup, error) {
	if err := cfg.ShardMode.validate(); err != nil {
		return nil, err
	}
	var g *ShardGroup
	for _, x := range groups {
		if x.task != cfg.Task {
			continue
		}
		if g != nil {
			return nil, fmt.Errorf("two shard groups for task %s", cfg.Task)
		}
		g = x
	}
	switch {
	case cfg.ShardMode == ShardModeOff && g != nil:
		return nil, fmt.Errorf("a shard group is given for task %s but its shard mode is off", cfg.Task)
	case cfg.ShardMode != ShardModeOff && g == nil:
		return nil, fmt.Errorf("shard mode %q needs the task's ShardGroup (WithShardGroup); coordination through etcd is not built yet", cfg.ShardMode)
	case g != nil && !slices.Contains(g.sources, cfg.Source):
		return nil, fmt.Errorf("source %s is not one of the shard group's sources %v", cfg.Source, g.sources)
	}
	if g != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.mode != ShardModeOff && g.mode != cfg.ShardMode {
			return nil, fmt.Errorf("the shard group of task %s serves shard mode %q, not %q", cfg.Task, g.mode, cfg.ShardMode)
		}
		g.mode = cfg.ShardMode
	}
	return g, nil
}
