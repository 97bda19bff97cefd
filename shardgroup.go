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
	// ErrShardLockCycle means every source of a ShardGroup waits, its
	// whole stream held, at a DDL that waits for another source held
	// elsewhere: no lock can complete, so the task stops rather than hang.
	// The syncer holds only a target's shard tables' events, so DDLs of
	// two merged tables run in different orders no longer wait for each
	// other; a whole stream waits only past the bound of held events.
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
	b.WriteString(" the task stops: make the shards' statements equal (Skip or Replace the odd one in each subtask: SubTask.Skip/Replace, or SourceWorker.SkipSubTaskDDL/ReplaceSubTaskDDL) and restart the task with a new ShardGroup")
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
	// Reached are the shards that reached it (their later events held),
	// with when; Waiting the sources none of whose shards is there yet;
	// WaitingTables the shard tables known (their source's syncer runs in
	// this process) that are not there yet.
	Reached       []ShardReached
	Waiting       []string
	WaitingTables []ShardRef
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
// ShardMode "pessimistic". With the sources in several processes, each
// process makes the task's group with NewEtcdShardGroup over one etcd
// instead (either mode).
//
// A shard table is an upstream table a route renames (its target differs
// from its own name). The DDL of a target's shard tables (ALTER TABLE,
// CREATE INDEX, DROP INDEX) is a sequence of steps. When a shard table
// reaches a step (the statement as routed to the target, compared as
// text), the syncer first applies everything before it, records the
// shard's arrival, and goes on; but from there it holds that target's
// shard tables' events that come after their own DDL, in memory, and its
// checkpoints stay before the DDL. The step completes when every shard
// table of the target on every source has reached it: each source's shard
// tables are known from its tracked schema when its syncer starts (a
// source not started yet in this process counts once one of its shards
// arrives), and CREATE TABLE and DROP TABLE change them. The last to
// arrive applies the DDL downstream, once; then each source applies the
// events it held (in safe mode) and its checkpoints move on. Shards that
// have not reached the step meanwhile write in their old shape, which
// the downstream table still has: a DDL that drops or narrows a column is
// safe. Past 64 MiB of held events, or when a shard reaches its next step
// of a target still held, the source's whole stream waits for the step.
//
// Differing statements at the same step stop every subtask of the group
// with a *ShardDDLConflictError (ErrShardDDLConflict), and the group stays
// stopped.
//
// The locks' state (per target: its DDL steps, the shards that reached
// each and where, whether it is applied, the sources that left it) is
// stored, when the syncers' checkpoint store is a ShardLockStore (the
// mysqlsink Sink keeps it in its checkpoint schema, dmworker_meta by
// default): a shard's arrival before its source holds, a step's being
// applied right after its DDL ran and before any source passes it. A
// process restarted (or killed) in the middle of a lock resolves it by
// itself: each source's checkpoint is before the first DDL it held at, so
// its stream reaches the DDL again and takes its place again; a step
// already applied is passed without running it again; a step every shard
// had reached is applied by the first to come back (the DDL in safe
// mode); a shard's events before its recorded arrival are not applied
// again. A subtask stopped or restarted while held does the same. Without
// a ShardLockStore the state lives as long as the process, and a source
// restarted after the DDL was applied (its checkpoint still before it)
// waits for sources already past it: the host checks the downstream table
// has the DDL and calls Release.
//
// The state of a target is the size of the steps in flight, not of every
// DDL it ever had: a step applied that every shard table known (those of
// the sources whose syncers started in this process, or shared through
// etcd) has passed is dropped, each shard's place (its last arrival's
// position, for telling replays) kept in its stead; a shard table not
// known then that reaches such a step later passes it. A target whose
// shard tables are all dropped upstream, with every step applied and
// every source's syncer started in this process (through etcd: every
// source known, here or from what the other processes shared), is
// forgotten, its stored state (its etcd key) deleted.
//
// A shard table dropped upstream (DROP TABLE, not applied downstream: the
// merged table stays) is no longer waited for, nor its source once it has
// no other shard table of that target; nor is a source whose shard
// tables of the target are all filtered out of the task when its syncer
// starts; RemoveSource takes a source out of the whole group. A lock that
// waited only for what was taken out completes at once, applied by a
// source that holds it.
//
// A shard table made after some steps were applied (CREATE TABLE) is
// taken to have the target's shape then: it waits for no step applied
// before its creation.
//
// In either mode the DROP TABLE of a shard table is not applied downstream
// (the merged table holds the other shards' rows), and the TRUNCATE TABLE
// of a shard table stops its subtask with ErrUnsupportedDDL naming the
// shard and the merged table: applied, it would empty the merged table of
// every shard's rows. Skip it (the shard's rows stay downstream) or
// Replace it, and resume.
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
// the last shard drops it, or once the sources of the shards that still
// have it are taken out (RemoveSource): the remaining syncers apply it. The rows of a shard whose schema is behind the
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
	task string

	mu      sync.Mutex
	sources []string
	locks   map[string]*shardLock // by target
	// holding is, by source, the step its stream holds at and its target.
	holding map[string]heldAt
	err     error     // the conflict that stopped the group
	mode    ShardMode // the mode of the subtasks that took it ("" until one does)
	opt     *optState // optimistic mode's state (shardgroup_optimistic.go)
	// store keeps the locks' state: the first ShardLockStore a syncer
	// arrives with; nil until then (and for syncers without one).
	store  ShardLockStore
	loaded bool // the stored state is read
	// begun are the sources whose syncer started in this process: their
	// shard tables of each target are known (shardLock.members; none
	// when absent).
	begun map[string]bool
	// wake is closed (and replaced) when a step may have completed
	// without an arrival: a source taken out of the group or a target.
	wake chan struct{}
	// etcd is the coordination through etcd of a group made by
	// NewEtcdShardGroup (shardgroup_etcd.go); nil in one process.
	etcd *shardEtcd
}

type heldAt struct {
	rd     *shardRound
	target string
}

// shardLock is the DDL steps of one target table.
type shardLock struct {
	rounds []*shardRound
	// base is the number of steps compacted away before rounds[0]
	// (compactLocked): all applied, and every shard table known then
	// past them. Step numbers (lastOf's next, shardJoin.base) count from
	// the target's first step, so rounds[i] is step base+i.
	base int
	// left are the sources with no shard table of the target any more
	// (dropped upstream or filtered out): no step waits for them.
	left map[string]bool
	// joined are shards created after steps were applied: they begin at
	// step base (the CREATE TABLE at pos).
	joined map[ShardRef]shardJoin
	// members are, by source, its shard tables of the target (those the
	// task takes), as its syncer found them at its start and as CREATE
	// and DROP TABLE changed them since; a step completes once each has
	// reached it. A source not here yet (its syncer not started in this
	// process) counts as reached once one of its shards has.
	members map[string]map[string]bool
	dirty   bool // changed since last stored
}

type shardJoin struct {
	pos  streamer.Position
	base int
}

// shardRound is one DDL step of a target: its statement, which shards have
// reached it and where, whether it is applied.
type shardRound struct {
	stmt    string
	first   ShardRef
	since   time.Time
	reached map[ShardRef]shardArrival
	running bool // the owner is applying it
	applied bool
	done    chan struct{} // closed once applied or failed
	err     error
}

// shardArrival is a shard's arrival at a step: the end of its DDL event.
type shardArrival struct {
	pos streamer.Position
	at  time.Time
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
		locks: map[string]*shardLock{}, holding: map[string]heldAt{}, begun: map[string]bool{}, wake: make(chan struct{})}, nil
}

// Task is the group's task name.
func (g *ShardGroup) Task() string { return g.task }

// Sources are the group's sources.
func (g *ShardGroup) Sources() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.sources)
}

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
			for ref, a := range rd.reached {
				st.Reached = append(st.Reached, ShardReached{ref, a.at})
			}
			sort.Slice(st.Reached, func(i, j int) bool { return st.Reached[i].String() < st.Reached[j].String() })
			n := lk.base + slices.Index(lk.rounds, rd)
			for _, s := range g.sources {
				if lk.left[s] {
					continue
				}
				if !rd.reachedBy(s) {
					st.Waiting = append(st.Waiting, s)
				}
				for t := range lk.members[s] {
					ref := ShardRef{s, t}
					if _, ok := rd.reached[ref]; !ok && (lk.joined[ref].base <= n) {
						st.WaitingTables = append(st.WaitingTables, ref)
					}
				}
			}
			sort.Slice(st.WaitingTables, func(i, j int) bool { return st.WaitingTables[i].String() < st.WaitingTables[j].String() })
			out = append(out, st)
			break // later steps wait behind this one
		}
	}
	out = append(out, g.optStatus()...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// statusOf is Status restricted to the locks source takes part in.
func (g *ShardGroup) statusOf(source string) []ShardLockStatus {
	var out []ShardLockStatus
	for _, st := range g.Status() {
		if slices.Contains(st.Waiting, source) || slices.ContainsFunc(st.Reached, func(r ShardReached) bool { return r.Source == source }) {
			out = append(out, st)
		}
	}
	return out
}

func (rd *shardRound) reachedBy(source string) bool {
	for ref := range rd.reached {
		if ref.Source == source {
			return true
		}
	}
	return false
}

// Release marks the DDL held for target (the first step not applied) as
// applied without running it, and lets the sources held there go on. It is
// the way out of a lock whose other sources are already past the DDL when
// the state is not stored (see ShardGroup): call it once the downstream
// table has the DDL. It returns the statement released, or an error when
// no DDL is held for target or the state could not be stored.
func (g *ShardGroup) Release(ctx context.Context, target string) (string, error) {
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
			lk.dirty = true
			if err := g.saveLocked(ctx, nil, target); err != nil {
				rd.applied = false
				return "", err
			}
			close(rd.done)
			return rd.stmt, nil
		}
	}
	return "", fmt.Errorf("dmworker: shard group of task %s: no DDL held for %s", g.task, target)
}

// RemoveSource takes source out of the group: no lock waits for it any
// more, and a lock that waited only for it completes (its DDL applied by a
// source held there). It is the way to shrink a task by a source while a
// lock may be held: stop the source's subtask first (its checkpoint stays
// where it is; a later arrival of that source is refused), then call
// RemoveSource. It reports an error when source is not one of the group's
// sources or is the last one.
//
// In optimistic shard mode the group forgets the source's shard tables
// (their schemas and their arrivals at the drops held back), and a drop
// held back that no remaining shard still needs (one waiting only for the
// source's shards) is applied downstream by itself, without waiting for
// another DDL: RemoveSource wakes the syncers of the remaining sources,
// and the first of them applies it (between two of its transactions).
//
// RemoveSource is RemoveSourceContext with context.Background(): for a
// group made by NewEtcdShardGroup in optimistic mode, which writes to
// etcd, call RemoveSourceContext with a deadline.
func (g *ShardGroup) RemoveSource(source string) error {
	return g.RemoveSourceContext(context.Background(), source)
}

// RemoveSourceContext is RemoveSource under ctx. For a group made by
// NewEtcdShardGroup in optimistic shard mode it first takes the source
// out of the state shared through etcd: its shard tables out of each
// target's state (under the target's owner key and a compare on the
// state's revision, as every change of it), and its registration
// (<prefix>shardoptreg/<task>/<source>) deleted. That part is idempotent:
// each process that runs some of the task's sources calls it (each
// group's sources are its own), and on an error (the source stays in the
// group then) the call can be made again.
func (g *ShardGroup) RemoveSourceContext(ctx context.Context, source string) error {
	g.mu.Lock()
	i := slices.Index(g.sources, source)
	if i < 0 {
		defer g.mu.Unlock()
		return fmt.Errorf("dmworker: shard group of task %s: source %s is not one of its sources %v", g.task, source, g.sources)
	}
	if len(g.sources) == 1 {
		defer g.mu.Unlock()
		return fmt.Errorf("dmworker: shard group of task %s: source %s is its last source", g.task, source)
	}
	shared := g.etcd != nil && g.mode != ShardPessimistic
	g.mu.Unlock()
	if shared {
		if err := g.optRemoveEtcd(ctx, source); err != nil {
			return err
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	i = slices.Index(g.sources, source)
	if i < 0 || len(g.sources) == 1 {
		return fmt.Errorf("dmworker: shard group of task %s: source %s removed meanwhile, or is its last source", g.task, source)
	}
	g.sources = slices.Delete(slices.Clone(g.sources), i, i+1)
	delete(g.holding, source)
	g.optRemoveLocked(source)
	g.wakeLocked()
	return nil
}

// wakeLocked wakes every held source to look again at its step.
func (g *ShardGroup) wakeLocked() {
	close(g.wake)
	g.wake = make(chan struct{})
}

// loadLocked reads the stored state once, from the first ShardLockStore
// given.
func (g *ShardGroup) loadLocked(ctx context.Context, store ShardLockStore) error {
	if g.loaded || store == nil || g.etcd != nil {
		return nil
	}
	stored, err := store.LoadShardLocks(ctx, g.task)
	if err != nil {
		return fmt.Errorf("dmworker: shard group of task %s: load its locks: %w", g.task, err)
	}
	for target, b := range stored {
		lk, err := unmarshalShardLock(b)
		if err != nil {
			return fmt.Errorf("dmworker: shard group of task %s: stored lock of %s: %w", g.task, target, err)
		}
		if cur := g.locks[target]; cur != nil && (len(cur.rounds) > 0 || cur.base > 0) {
			continue // kept in memory since before: newer
		}
		g.locks[target] = lk
	}
	g.store, g.loaded = store, true
	return nil
}

// saveLocked stores target's lock when changed, through store (the
// caller's, which shares its fate) or else the group's.
func (g *ShardGroup) saveLocked(ctx context.Context, store ShardLockStore, target string) error {
	lk := g.locks[target]
	if g.etcd != nil {
		return g.etcdSaveLocked(ctx, target)
	}
	if store == nil {
		store = g.store
	}
	if store == nil || lk == nil || !lk.dirty {
		return nil
	}
	b, err := marshalShardLock(lk)
	if err != nil {
		return err
	}
	if err := store.SaveShardLock(ctx, g.task, target, b); err != nil {
		return fmt.Errorf("dmworker: shard group of task %s: store the lock of %s: %w", g.task, target, err)
	}
	lk.dirty = false
	return nil
}

// lockLocked returns target's lock, made when missing.
func (g *ShardGroup) lockLocked(target string) *shardLock {
	lk := g.locks[target]
	if lk == nil {
		lk = &shardLock{}
		g.locks[target] = lk
	}
	return lk
}

// begin readies the group for a source's syncer: it reads the stored
// state, sets the source's shard tables of each target in present (those
// the task takes, by target), and takes source out of the targets in
// filtered (whose shard tables it has are all filtered out of the task)
// and back into those in present.
func (g *ShardGroup) begin(ctx context.Context, store ShardLockStore, source string, present map[string][]string, filtered []string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.loadLocked(ctx, store); err != nil {
		return err
	}
	if !slices.Contains(g.sources, source) {
		return fmt.Errorf("dmworker: shard group of task %s: source %s is not one of its sources %v", g.task, source, g.sources)
	}
	for _, lk := range g.locks {
		delete(lk.members, source)
	}
	g.begun[source] = true
	for _, target := range filtered {
		if err := g.setLeftLocked(ctx, store, target, source, true); err != nil {
			return err
		}
	}
	for target, tables := range present {
		lk := g.lockLocked(target)
		if lk.members == nil {
			lk.members = map[string]map[string]bool{}
		}
		lk.members[source] = map[string]bool{}
		for _, t := range tables {
			lk.members[source][t] = true
		}
		if lk.left[source] {
			if err := g.setLeftLocked(ctx, store, target, source, false); err != nil {
				return err
			}
		}
	}
	if err := g.etcdShareMembersLocked(ctx); err != nil {
		return err
	}
	g.wakeLocked()
	return nil
}

// setLeftLocked records that source left target (or is back) and stores it.
func (g *ShardGroup) setLeftLocked(ctx context.Context, store ShardLockStore, target, source string, left bool) error {
	lk := g.lockLocked(target)
	if lk.left[source] == left {
		return nil
	}
	if lk.left == nil {
		lk.left = map[string]bool{}
	}
	if left {
		lk.left[source] = true
	} else {
		delete(lk.left, source)
	}
	lk.dirty = true
	if err := g.saveLocked(ctx, store, target); err != nil {
		return err
	}
	g.wakeLocked()
	return nil
}

// leave records that shard was dropped upstream: no step of target waits
// for it any more, nor for its source once it has no other shard table of
// target (last). Stored before the source goes on.
func (g *ShardGroup) leave(ctx context.Context, store ShardLockStore, shard ShardRef, target string, last bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.loadLocked(ctx, store); err != nil {
		return err
	}
	lk := g.lockLocked(target)
	if m := lk.members[shard.Source]; m != nil {
		delete(m, shard.Table)
	}
	if _, ok := lk.joined[shard]; ok {
		// Gone: its place is no step's business any more (a table made
		// again with its name joins afresh).
		delete(lk.joined, shard)
		lk.dirty = true
	}
	g.compactLocked(lk)
	g.wakeLocked()
	if g.etcd != nil {
		lk.dirty = true // the members are shared
	}
	if !last {
		return g.saveLocked(ctx, store, target)
	}
	if err := g.setLeftLocked(ctx, store, target, shard.Source, true); err != nil {
		return err
	}
	return g.forgetLocked(ctx, store, target)
}

// compactLocked drops the steps at the head of lk that are applied and
// that every shard table known of every source has passed (reached, or
// was made after): nobody arrives at them any more, and a target's
// state and its stored value stay the size of the steps in flight, not
// of every DDL the target ever had. The place of each shard table whose
// last arrival was at a step dropped is kept in lk.joined (its position,
// for telling replays, and its next step). A step is kept while a source
// of the group still in the target has shard tables not known here (its
// syncer not started in this process, and no members of it shared
// through etcd): one of them may still arrive at it.
func (g *ShardGroup) compactLocked(lk *shardLock) {
	k := 0
	for k < len(lk.rounds) {
		rd := lk.rounds[k]
		if !rd.applied || rd.err != nil || rd.running || !g.passedLocked(lk, lk.base+k) {
			break
		}
		k++
	}
	if k == 0 {
		return
	}
	end := lk.base + k
	for _, rd := range lk.rounds[:k] {
		for ref := range rd.reached {
			if tables, known := lk.members[ref.Source]; known && !tables[ref.Table] {
				continue // dropped since
			}
			if pos, next, ok := lk.lastOf(ref); ok && next <= end {
				if lk.joined == nil {
					lk.joined = map[ShardRef]shardJoin{}
				}
				lk.joined[ref] = shardJoin{pos: pos, base: next}
			}
		}
	}
	lk.rounds = slices.Clone(lk.rounds[k:])
	lk.base = end
	lk.dirty = true
}

// passedLocked reports whether every shard table known of every source of
// the group still in lk's target has passed step (see compactLocked).
func (g *ShardGroup) passedLocked(lk *shardLock, step int) bool {
	for _, s := range g.sources {
		if lk.left[s] {
			continue
		}
		tables, known := lk.members[s]
		if !known && !g.begun[s] {
			return false
		}
		for t := range tables {
			if _, next, ok := lk.lastOf(ShardRef{s, t}); !ok || next <= step {
				return false
			}
		}
	}
	return true
}

// forgetLocked drops target's lock, in memory and in the store, once
// nothing of it is left to know (emptyLocked): every step applied and
// compacted away, and no source of the group with a shard table of the
// target (all dropped upstream). A shard table made again later starts a
// new lock, which has the same effect. Through etcd, the lock's key is
// deleted (etcdForgetLocked) and the other processes drop theirs.
func (g *ShardGroup) forgetLocked(ctx context.Context, store ShardLockStore, target string) error {
	lk := g.locks[target]
	if lk == nil || !g.emptyLocked(lk) {
		return nil
	}
	if g.etcd != nil {
		return g.etcdForgetLocked(ctx, target)
	}
	if store == nil {
		store = g.store
	}
	if store != nil {
		if err := store.SaveShardLock(ctx, g.task, target, nil); err != nil {
			return fmt.Errorf("dmworker: shard group of task %s: delete the lock of %s: %w", g.task, target, err)
		}
	}
	delete(g.locks, target)
	return nil
}

// emptyLocked reports whether lk holds nothing to know: no step left
// (after compactLocked), and every source of the group known to have no
// shard table of the target. A source is known when its syncer started
// in this process or, through etcd, when another process shared its
// shard tables or its leaving.
func (g *ShardGroup) emptyLocked(lk *shardLock) bool {
	g.compactLocked(lk)
	if len(lk.rounds) > 0 {
		return false
	}
	for _, s := range g.sources {
		tables, shared := lk.members[s]
		known := g.begun[s] || (g.etcd != nil && (shared || lk.left[s]))
		if !known || len(tables) > 0 {
			return false
		}
	}
	return true
}

// join records that shard was created at pos: it has no step of target to
// reach before those not applied yet; its source is back in target.
func (g *ShardGroup) join(ctx context.Context, store ShardLockStore, shard ShardRef, target string, pos streamer.Position) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.loadLocked(ctx, store); err != nil {
		return err
	}
	lk := g.lockLocked(target)
	if lk.members == nil {
		lk.members = map[string]map[string]bool{}
	}
	if lk.members[shard.Source] == nil {
		lk.members[shard.Source] = map[string]bool{}
	}
	lk.members[shard.Source][shard.Table] = true
	if g.etcd != nil {
		lk.dirty = true // the members are shared
	}
	if lk.left[shard.Source] {
		delete(lk.left, shard.Source)
		lk.dirty = true
	}
	g.compactLocked(lk)
	if last, _, ok := lk.lastOf(shard); !ok || pos.IsZero() || pos.Compare(last) > 0 {
		i := 0
		for i < len(lk.rounds) && lk.rounds[i].applied {
			i++
		}
		if base := lk.base + i; base > 0 {
			if lk.joined == nil {
				lk.joined = map[ShardRef]shardJoin{}
			}
			lk.joined[shard] = shardJoin{pos: pos.Clone(), base: base}
			lk.dirty = true
		}
	}
	return g.saveLocked(ctx, store, target)
}

// lastOf returns where shard last reached a step of lk (or was created)
// and the step it is to reach next; ok is false when it has done neither.
func (lk *shardLock) lastOf(shard ShardRef) (pos streamer.Position, next int, ok bool) {
	if j, has := lk.joined[shard]; has {
		pos, next, ok = j.pos, j.base, true
	}
	for i, rd := range lk.rounds {
		if a, has := rd.reached[shard]; has && (!ok || lk.base+i >= next) {
			pos, next, ok = a.pos, lk.base+i+1, true
		}
	}
	return pos, next, ok
}

// completeLocked reports whether every shard table of target of every
// source of the group still in it has reached rd (see shardLock.members).
func (g *ShardGroup) completeLocked(lk *shardLock, rd *shardRound) bool {
	n := lk.base + slices.Index(lk.rounds, rd)
	for _, s := range g.sources {
		if lk.left[s] {
			continue
		}
		tables, known := lk.members[s]
		if !known && !g.begun[s] {
			if !rd.reachedBy(s) {
				return false
			}
			continue
		}
		for t := range tables {
			ref := ShardRef{s, t}
			if _, ok := rd.reached[ref]; ok {
				continue
			}
			if j, ok := lk.joined[ref]; ok && j.base > n {
				continue // made after the step
			}
			return false
		}
		if len(tables) == 0 && !rd.reachedBy(s) {
			// Its shard tables are not made yet where its stream is:
			// it reaches the step through their creation or not at all.
			continue
		}
	}
	return true
}

// lastArrival is where shard last reached a step of target (or was
// created after steps were applied); ok is false when it has done
// neither. Every event of shard before it is applied downstream.
func (g *ShardGroup) lastArrival(shard ShardRef, target string) (streamer.Position, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	lk := g.locks[target]
	if lk == nil {
		return streamer.Position{}, false
	}
	pos, _, ok := lk.lastOf(shard)
	return pos, ok
}

// shardHold is a step a source's shard reached and that was not applied
// when it did: the source holds the events of the target's shard tables
// until it is.
type shardHold struct {
	g      *ShardGroup
	rd     *shardRound
	target string
}

// reachedBy reports whether shard reached the held step.
func (h *shardHold) reachedBy(shard ShardRef) bool {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	_, ok := h.rd.reached[shard]
	return ok
}

// chans returns whether the step is settled (applied or failed), and
// else the channels closed when it may have changed: its own (applied or
// failed) and the group's wake (sources or members changed).
func (h *shardHold) chans() (settled bool, done, wake <-chan struct{}) {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	if h.rd.applied || h.rd.err != nil {
		return true, nil, nil
	}
	return false, h.rd.done, h.g.wake
}

// ready reports whether settle has something to do: the step is applied,
// failed, or complete and not being applied.
func (h *shardHold) ready() bool {
	g := h.g
	g.mu.Lock()
	defer g.mu.Unlock()
	return h.rd.applied || h.rd.err != nil || (!g.busyLocked(h.target, h.rd) && g.completeLocked(g.locks[h.target], h.rd))
}

// settle applies the step when it is complete and nobody applies it
// (sources or members changed since the last arrival), by exec. It
// reports whether the step is applied; an error when it failed or the
// group stopped.
func (h *shardHold) settle(ctx context.Context, store ShardLockStore, exec func() error) (bool, error) {
	g := h.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if h.rd.err != nil {
		return false, h.rd.err
	}
	if h.rd.applied {
		return true, nil
	}
	lk := g.locks[h.target]
	if g.busyLocked(h.target, h.rd) || !g.completeLocked(lk, h.rd) {
		return false, nil
	}
	if err := g.applyLocked(ctx, store, lk, h.rd, h.target, exec); err != nil {
		if errors.Is(err, errShardOwnedElsewhere) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// wait blocks until the step is applied (by exec when it completes
// without an arrival), ctx ends or the group fails.
func (h *shardHold) wait(ctx context.Context, store ShardLockStore, exec func() error) error {
	for {
		ok, err := h.settle(ctx, store, exec)
		if ok || err != nil {
			return err
		}
		settled, done, wake := h.chans()
		if settled {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
		case <-wake:
		}
	}
}

// arrive is a shard's arrival at a DDL stmt (routed to target) ending at
// pos: it returns once the DDL is applied downstream, by exec when this
// arrival completes the step, or ctx's error, or the group's conflict.
// store (nil when the syncer's checkpoint store is not one) keeps the
// group's state.
func (g *ShardGroup) arrive(ctx context.Context, store ShardLockStore, shard ShardRef, target, stmt string, pos streamer.Position, exec func() error) error {
	return g.arriveHold(ctx, store, shard, target, stmt, pos, exec, nil)
}

// arriveHold is arrive that, with hold given, does not wait: it sets
// *hold to the step when it is not applied yet (and leaves it nil when it
// is, by exec or before).
func (g *ShardGroup) arriveHold(ctx context.Context, store ShardLockStore, shard ShardRef, target, stmt string, pos streamer.Position, exec func() error, hold **shardHold) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.loadLocked(ctx, store); err != nil {
		return err
	}
	if g.err != nil {
		return g.err
	}
	if !slices.Contains(g.sources, shard.Source) {
		return fmt.Errorf("dmworker: shard group of task %s: source %s is not one of its sources %v", g.task, shard.Source, g.sources)
	}
	lk := g.lockLocked(target)
	g.compactLocked(lk)
	n := 0
	if last, next, ok := lk.lastOf(shard); ok {
		n = next
		switch {
		case pos.IsZero() || last.IsZero():
			// No position to tell a replay by: a step not applied
			// is the one it holds at again (a step compacted away
			// is applied).
			if next > lk.base && !lk.rounds[next-1-lk.base].applied {
				n = next - 1
			}
		case pos.Compare(last) < 0:
			return nil // replayed after a restart: passed already
		case pos.Compare(last) == 0:
			n = next - 1 // the same arrival again (a DDL event's end is no CREATE TABLE's)
		}
	}
	if n < lk.base {
		// A step compacted away (applied, and passed by every shard
		// table known then): a shard unknown then passes it, its
		// arrival recorded as the place it is at.
		if lk.joined == nil {
			lk.joined = map[ShardRef]shardJoin{}
		}
		lk.joined[shard] = shardJoin{pos: pos.Clone(), base: n + 1}
		lk.dirty = true
		return g.saveLocked(ctx, store, target)
	}
	added := n-lk.base == len(lk.rounds)
	if added {
		lk.rounds = append(lk.rounds, &shardRound{stmt: stmt, first: shard, since: time.Now(),
			reached: map[ShardRef]shardArrival{}, done: make(chan struct{})})
		lk.dirty = true
	}
	rd := lk.rounds[n-lk.base]
	if rd.stmt != stmt {
		err := &ShardDDLConflictError{Task: g.task, Target: target, Statements: map[ShardRef]string{rd.first: rd.stmt, shard: stmt}}
		g.fail(err)
		g.etcdConflictLocked(ctx, target, err)
		return err
	}
	_, had := rd.reached[shard]
	if !had {
		rd.reached[shard] = shardArrival{pos: pos.Clone(), at: time.Now()}
		lk.dirty = true
	}
	// Stored before the source holds: a restart finds it here.
	if err := g.saveLocked(ctx, store, target); err != nil {
		if errors.Is(err, ErrStaleEpoch) && !had {
			// Refused by the binding's fence: the arrival is not this
			// worker's to record, nor for the group to write later.
			delete(rd.reached, shard)
			if added && len(rd.reached) == 0 && !rd.applied {
				lk.rounds = lk.rounds[:len(lk.rounds)-1] // rd, the last
			}
		}
		return err
	}
	if hold != nil {
		// The caller holds the shard's events, not its stream.
		switch {
		case rd.err != nil:
			return rd.err
		case rd.applied:
			return nil
		case !g.busyLocked(target, rd) && g.completeLocked(lk, rd):
			err := g.applyLocked(ctx, store, lk, rd, target, exec)
			if !errors.Is(err, errShardOwnedElsewhere) {
				return err
			}
		}
		*hold = &shardHold{g: g, rd: rd, target: target}
		return nil
	}
	for {
		if rd.err != nil {
			return rd.err
		}
		if rd.applied {
			return nil
		}
		if !g.busyLocked(target, rd) && g.completeLocked(lk, rd) {
			err := g.applyLocked(ctx, store, lk, rd, target, exec)
			if !errors.Is(err, errShardOwnedElsewhere) {
				return err
			}
			continue // another process applies it: wait for its mark
		}
		g.holding[shard.Source] = heldAt{rd, target}
		if err := g.cycle(); err != nil {
			g.fail(err)
			return err
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-rd.done:
		case <-wake:
		}
		g.mu.Lock()
		if h, ok := g.holding[shard.Source]; ok && h.rd == rd {
			delete(g.holding, shard.Source)
		}
		if rd.err == nil && !rd.applied && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// applyLocked runs rd's DDL (exec), then stores that it is applied before
// any held source passes it. On an error nobody passes: the next arrival
// runs it again (in safe mode, as the syncer replays it).
func (g *ShardGroup) applyLocked(ctx context.Context, store ShardLockStore, lk *shardLock, rd *shardRound, target string, exec func() error) error {
	if g.etcd != nil {
		// Through etcd: only the process whose claim of target's
		// owner key succeeds applies it (errShardOwnedElsewhere).
		if applied, err := g.etcdClaimLocked(ctx, lk, rd, target); applied || err != nil {
			return err
		}
		defer g.etcdUnclaimLocked(ctx, target)
	}
	rd.running = true
	g.mu.Unlock()
	err := exec()
	g.mu.Lock()
	rd.running = false
	if err != nil {
		return err // the owner's retry arrives again and applies it
	}
	if rd.err != nil {
		return rd.err
	}
	if rd.applied {
		return nil // marked applied meanwhile by another process
	}
	rd.applied = true
	lk.dirty = true
	if err := g.saveLocked(ctx, store, target); err != nil {
		rd.applied = false
		return err
	}
	close(rd.done)
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
		h, ok := g.holding[s]
		if !ok || g.busyLocked(h.target, h.rd) || h.rd.applied || g.completeLocked(g.locks[h.target], h.rd) {
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
// shard mode, in one process or through etcd) to a Syncer or SubTask of that task, or to a
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
		return nil, fmt.Errorf("shard mode %q needs the task's ShardGroup (WithShardGroup) (NewShardGroup in one process, NewEtcdShardGroup across processes)", cfg.ShardMode)
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
