package dmworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// shardOwnerTTL is the life of an etcd shard group's lease: a process
// killed while it applies a DDL holds its owner key that long at most.
const shardOwnerTTL = 10 * time.Second

// errShardOwnedElsewhere means another process holds the owner key of a
// target: it applies the step, and this one waits for its mark.
var errShardOwnedElsewhere = errors.New("dmworker: shard DDL applied by another process")

// ErrShardOwnerLost means a ShardGroup made by NewEtcdShardGroup ran a
// step's DDL but lost its claim on the target (its lease expired) before
// it could mark the step applied: another process runs it again, in safe
// mode, and marks it. The subtask that got it retries.
var ErrShardOwnerLost = errors.New("dmworker: shard DDL owner's claim lost")

// shardEtcd is the coordination through etcd of a ShardGroup (g.etcd).
// Its maps are guarded by the group's mu.
type shardEtcd struct {
	cli *clientv3.Client
	// lockDir holds <prefix>shardlock/<task>/<target>: the lock of each
	// target, shared by every process (the ShardLockStore's keys);
	// ownerDir <prefix>shardowner/<task>/<target>: the process applying
	// a step of target, under its lease.
	lockDir, ownerDir string
	base              string // <prefix>shard: both dirs' common prefix, watched
	lease             clientv3.LeaseID
	id                string // this group's owner name
	// owners are, by target, the owner keys of other groups seen, with
	// their revision.
	owners map[string]shardOwnerSeen
	// claimed are, by target, the owner key values this group put.
	claimed map[string]string
	// conflicts are, by target, the conflicts that stopped the group,
	// kept in what it writes.
	conflicts map[string]*ShardDDLConflictError
	// optDir holds <prefix>shardopt/<task>/<target>, regDir
	// <prefix>shardoptreg/<task>/<source>: optimistic mode's state
	// (shardgroup_optimistic_etcd.go). optRev are, by target, the
	// revision of its state as read under the claim; optHeld the targets
	// this group holds the claim of in optimistic mode.
	optDir, regDir string
	optRev         map[string]int64
	optHeld        map[string]bool

	cancel    context.CancelFunc
	done      chan struct{}  // closed when the watch ends
	keeper    sync.WaitGroup // the lease's keeper
	closeOnce sync.Once
}

// shardOwnerJSON is an owner key's value.
type shardOwnerJSON struct {
	Owner string `json:"owner"`
	Round int    `json:"round"`
	Stmt  string `json:"stmt"`
}

type shardOwnerSeen struct {
	shardOwnerJSON
	rev int64
}

// NewEtcdShardGroup returns the shard group of task over sources (as
// NewShardGroup) that coordinates shard DDL with the groups of the same
// task in other processes through etcd, under prefix (default
// DefaultEtcdPrefix when empty). Every process that runs some of the
// task's sources makes one with the same task and sources and gives it to
// its subtasks (WithShardGroup); the group keeps the checkpoint stores'
// ShardLockStore out of it (the state lives in etcd).
//
// Keys: <prefix>shardlock/<task>/<target> is the lock of a downstream
// table, the JSON a ShardLockStore holds plus each source's shard tables
// of the target; every change goes through a compare-and-swap on its
// revision after merging what the other processes wrote (shards reached,
// steps applied), so none overwrites another's. Each group watches the
// keys and merges the others' changes into its own state, waking its held
// sources. <prefix>shardowner/<task>/<target> names the group applying a
// step of the target, put under the group's lease (10s) only when absent:
// the one group that puts it runs the DDL, marks the step applied (a
// compare on its owner key fences a group whose lease expired meanwhile:
// ErrShardOwnerLost) and deletes it. A process killed while it applies a
// step leaves its key until its lease expires; then another group whose
// sources hold there runs the DDL again (in safe mode, as a replay does)
// and marks it.
//
// Close stops the watch and revokes the lease. Release marks the step
// applied in etcd, so the sources held there in every process go on;
// RemoveSource takes the source out of this process's group only (each
// process calls it); in optimistic mode it also takes the source's shard
// tables and registration out of the state in etcd (RemoveSourceContext).
// The cycle check (ErrShardLockCycle) sees this
// process's sources only.
//
// The writes are fenced by the bindings' epochs: for a subtask of a
// SourceWorker in etcd mode (which writes under its binding's epoch, the
// ModRevision of <prefix>bound/<worker>), every write of the group (an
// arrival, a claim, an applied mark, optimistic state) compares, in the
// same transaction, that key's ModRevision with that epoch; a worker
// whose binding moved on gets ErrStaleEpoch and its write is not made.
//
// In optimistic shard mode the keys are <prefix>shardopt/<task>/<target>
// (each shard's schema, the downstream table as the groups know it, the
// drops held back), <prefix>shardoptreg/<task>/<source> (a source that
// registered its shard tables) and the same owner key, held while a
// shard's DDL is decided and applied: see shardgroup_optimistic_etcd.go.
// A statement being applied is recorded before it runs; a group that finds
// one left by a process gone runs it again (safe mode) only when the
// downstream table (TableDefiner) does not show it.
func NewEtcdShardGroup(ctx context.Context, cli *clientv3.Client, prefix, task string, sources ...string) (*ShardGroup, error) {
	if cli == nil {
		return nil, errors.New("dmworker: etcd shard group needs a client")
	}
	g, err := NewShardGroup(task, sources...)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	gctx, cancel := context.WithTimeout(ctx, shardOwnerTTL)
	defer cancel()
	lease, err := cli.Grant(gctx, int64(shardOwnerTTL/time.Second))
	if err != nil {
		return nil, Retryable(fmt.Errorf("dmworker: shard group of task %s: grant a lease: %w", task, err))
	}
	e := &shardEtcd{cli: cli,
		lockDir:  path.Join(prefix, "shardlock", task) + "/",
		ownerDir: path.Join(prefix, "shardowner", task) + "/",
		base:     path.Join(prefix, "shard"),
		lease:    lease.ID, id: fmt.Sprintf("%x", int64(lease.ID)),
		optDir: path.Join(prefix, "shardopt", task) + "/",
		regDir: path.Join(prefix, "shardoptreg", task) + "/",
		owners: map[string]shardOwnerSeen{}, claimed: map[string]string{}, conflicts: map[string]*ShardDDLConflictError{},
		optRev: map[string]int64{}, optHeld: map[string]bool{}, done: make(chan struct{})}
	g.etcd, g.loaded = e, true
	g.mu.Lock()
	rev, err := g.etcdReloadLocked(gctx)
	g.mu.Unlock()
	if err != nil {
		_, _ = cli.Revoke(context.WithoutCancel(gctx), lease.ID)
		return nil, err
	}
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = rcancel
	ka, err := cli.KeepAlive(rctx, lease.ID)
	if err != nil {
		rcancel()
		_, _ = cli.Revoke(context.WithoutCancel(gctx), lease.ID)
		return nil, Retryable(fmt.Errorf("dmworker: shard group of task %s: keep its lease: %w", task, err))
	}
	e.keeper.Add(1)
	go func() {
		defer e.keeper.Done()
		g.etcdKeepLease(rctx, ka)
	}()
	go g.etcdWatch(rctx, rev)
	return g, nil
}

// Close ends a group made by NewEtcdShardGroup: it stops its watch and
// revokes its lease (an owner key it holds goes with it). Its subtasks are
// stopped first. It does nothing for a group made by NewShardGroup.
func (g *ShardGroup) Close() error {
	e := g.etcd
	if e == nil {
		return nil
	}
	var err error
	e.closeOnce.Do(func() {
		e.cancel()
		<-e.done
		e.keeper.Wait()
		g.mu.Lock()
		lease := e.lease
		g.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), shardOwnerTTL/3)
		defer cancel()
		_, err = e.cli.Revoke(ctx, lease)
	})
	return err
}

// busyLocked reports whether rd is being applied: here, or by another
// process that holds target's owner key.
func (g *ShardGroup) busyLocked(target string, rd *shardRound) bool {
	if rd.running {
		return true
	}
	if g.etcd == nil {
		return false
	}
	_, ok := g.etcd.owners[target]
	return ok
}

// etcdReloadLocked reads every lock and owner key of the task and merges
// them in; it returns the revision read at.
func (g *ShardGroup) etcdReloadLocked(ctx context.Context) (int64, error) {
	e := g.etcd
	resp, err := e.cli.Txn(ctx).Then(append([]clientv3.Op{clientv3.OpGet(e.lockDir, clientv3.WithPrefix()), clientv3.OpGet(e.ownerDir, clientv3.WithPrefix())},
		e.optEtcdReloadOps()...)...).Commit()
	if err != nil {
		return 0, Retryable(fmt.Errorf("dmworker: shard group of task %s: read its locks from etcd: %w", g.task, err))
	}
	stored := map[string]bool{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		target := strings.TrimPrefix(string(kv.Key), e.lockDir)
		stored[target] = true
		if err := g.etcdMergeKVLocked(target, kv.Value); err != nil {
			return 0, err
		}
	}
	for target := range g.locks {
		if !stored[target] {
			g.etcdForgottenLocked(target) // deleted while the watch was broken
		}
	}
	clear(e.owners)
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		g.etcdOwnerPutLocked(strings.TrimPrefix(string(kv.Key), e.ownerDir), kv)
	}
	for _, r := range resp.Responses[2:] {
		for _, kv := range r.GetResponseRange().Kvs {
			g.optEtcdEventLocked(&clientv3.Event{Type: clientv3.EventTypePut, Kv: kv})
		}
	}
	g.wakeLocked()
	return resp.Header.Revision, nil
}

// etcdWatch merges the changes of the task's keys from rev on until ctx
// ends, reading them afresh when the watch breaks (compaction).
func (g *ShardGroup) etcdWatch(ctx context.Context, rev int64) {
	e := g.etcd
	defer close(e.done)
	for ctx.Err() == nil {
		wch := e.cli.Watch(clientv3.WithRequireLeader(ctx), e.base, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			g.mu.Lock()
			for _, ev := range resp.Events {
				g.etcdEventLocked(ev)
			}
			g.wakeLocked()
			g.mu.Unlock()
			if resp.Header.Revision > rev {
				rev = resp.Header.Revision
			}
		}
		for ctx.Err() == nil {
			g.mu.Lock()
			r, err := g.etcdReloadLocked(ctx)
			g.mu.Unlock()
			if err == nil {
				rev = r
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// etcdEventLocked merges one change of a key under the task's dirs.
func (g *ShardGroup) etcdEventLocked(ev *clientv3.Event) {
	e := g.etcd
	key := string(ev.Kv.Key)
	if g.optEtcdEventLocked(ev) {
		return
	}
	switch {
	case strings.HasPrefix(key, e.lockDir):
		if ev.Type == mvccpb.PUT {
			// A conflict fails the group (g.err), which its sources see.
			_ = g.etcdMergeKVLocked(strings.TrimPrefix(key, e.lockDir), ev.Kv.Value)
		} else {
			g.etcdForgottenLocked(strings.TrimPrefix(key, e.lockDir))
		}
	case strings.HasPrefix(key, e.ownerDir):
		target := strings.TrimPrefix(key, e.ownerDir)
		if ev.Type == mvccpb.PUT {
			g.etcdOwnerPutLocked(target, ev.Kv)
		} else if o, ok := e.owners[target]; ok && o.rev < ev.Kv.ModRevision {
			delete(e.owners, target)
		}
	}
}

// etcdOwnerPutLocked records an owner key of another group.
func (g *ShardGroup) etcdOwnerPutLocked(target string, kv *mvccpb.KeyValue) {
	var o shardOwnerJSON
	if json.Unmarshal(kv.Value, &o) != nil || o.Owner == g.etcd.id {
		return
	}
	if cur, ok := g.etcd.owners[target]; ok && cur.rev > kv.ModRevision {
		return
	}
	g.etcd.owners[target] = shardOwnerSeen{o, kv.ModRevision}
}

// etcdMergeKVLocked merges a stored lock of target into the group's.
func (g *ShardGroup) etcdMergeKVLocked(target string, value []byte) error {
	r, err := unmarshalShardLock(value)
	var j shardLockJSON
	if err == nil {
		err = json.Unmarshal(value, &j)
	}
	if err != nil {
		return fmt.Errorf("dmworker: shard group of task %s: lock of %s in etcd: %w", g.task, target, err)
	}
	if j.Conflict != nil && g.etcd.conflicts[target] == nil {
		cerr := &ShardDDLConflictError{Task: g.task, Target: target, Statements: map[ShardRef]string{}}
		for _, c := range j.Conflict.Statements {
			cerr.Statements[c.Shard] = c.Stmt
		}
		g.etcd.conflicts[target] = cerr
		if g.err == nil {
			g.fail(cerr)
		}
		return cerr
	}
	return g.mergeShardLockLocked(target, g.lockLocked(target), r)
}

// mergeShardLockLocked merges r (target's lock as another process wrote
// it) into lk: steps and arrivals are added, applied marks kept (waking
// whoever waits), the members and the sources that left taken from r for
// the sources whose syncer does not run here. Differing statements at
// one step fail the group.
func (g *ShardGroup) mergeShardLockLocked(target string, lk *shardLock, r *shardLock) error {
	if r.base > lk.base {
		// Another process compacted steps away: they are applied, and
		// every shard table it knew had passed them.
		k := min(r.base-lk.base, len(lk.rounds))
		for _, rd := range lk.rounds[:k] {
			if !rd.applied && rd.err == nil {
				rd.applied = true
				close(rd.done)
			}
		}
		lk.rounds = slices.Clone(lk.rounds[k:])
		lk.base = r.base
	}
	for i, rr := range r.rounds {
		if r.base+i < lk.base {
			continue // compacted away here
		}
		i := r.base + i - lk.base
		if i == len(lk.rounds) {
			lk.rounds = append(lk.rounds, &shardRound{stmt: rr.stmt, first: rr.first, since: rr.since,
				reached: map[ShardRef]shardArrival{}, done: make(chan struct{})})
		}
		rd := lk.rounds[i]
		if rd.stmt != rr.stmt {
			err := &ShardDDLConflictError{Task: g.task, Target: target, Statements: map[ShardRef]string{rd.first: rd.stmt, rr.first: rr.stmt}}
			if g.err == nil {
				g.fail(err)
			}
			return err
		}
		if rr.since.Before(rd.since) {
			rd.since, rd.first = rr.since, rr.first
		}
		for ref, a := range rr.reached {
			if _, ok := rd.reached[ref]; !ok {
				rd.reached[ref] = a
			}
		}
		if rr.applied && !rd.applied && rd.err == nil {
			rd.applied = true
			close(rd.done)
		}
	}
	if lk.base+len(lk.rounds) > r.base+len(r.rounds) || lk.base > r.base {
		lk.dirty = true // ours to write
	}
	for ref, j := range r.joined {
		if cur, ok := lk.joined[ref]; !ok || j.base > cur.base {
			if lk.joined == nil {
				lk.joined = map[ShardRef]shardJoin{}
			}
			lk.joined[ref] = j
		}
	}
	for _, s := range g.sources {
		if g.begun[s] {
			continue
		}
		if tables, ok := r.members[s]; ok {
			if lk.members == nil {
				lk.members = map[string]map[string]bool{}
			}
			lk.members[s] = maps.Clone(tables)
		} else {
			delete(lk.members, s)
		}
		if r.left[s] {
			if lk.left == nil {
				lk.left = map[string]bool{}
			}
			lk.left[s] = true
		} else {
			delete(lk.left, s)
		}
	}
	return nil
}

// marshalSharedShardLock is marshalShardLock with the members and the
// conflict.
func (g *ShardGroup) marshalSharedShardLock(target string, lk *shardLock) ([]byte, error) {
	b, err := marshalShardLock(lk)
	if err != nil {
		return nil, err
	}
	var j shardLockJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, err
	}
	j.Members = map[string][]string{}
	for s, tables := range lk.members {
		list := []string{}
		for t := range tables {
			list = append(list, t)
		}
		sort.Strings(list)
		j.Members[s] = list
	}
	if c := g.etcd.conflicts[target]; c != nil {
		j.Conflict = &shardConflictJSON{}
		for ref, stmt := range c.Statements {
			j.Conflict.Statements = append(j.Conflict.Statements, shardConflictStmtJSON{ref, stmt})
		}
		sort.Slice(j.Conflict.Statements, func(a, b int) bool {
			return j.Conflict.Statements[a].Shard.String() < j.Conflict.Statements[b].Shard.String()
		})
	}
	return json.Marshal(j)
}

// etcdSaveLocked writes target's lock when changed: it merges what is
// stored, then writes the whole if the key is still at the revision read,
// and while this group claims target, if its owner key is still its own.
func (g *ShardGroup) etcdSaveLocked(ctx context.Context, target string) error {
	e := g.etcd
	lk := g.locks[target]
	if lk == nil || !lk.dirty {
		return nil
	}
	key, owner := e.lockDir+target, e.ownerDir+target
	for {
		got, err := e.cli.Get(ctx, key)
		if err != nil {
			return Retryable(fmt.Errorf("dmworker: shard group of task %s: read the lock of %s: %w", g.task, target, err))
		}
		var rev int64
		if len(got.Kvs) > 0 {
			rev = got.Kvs[0].ModRevision
			if err := g.etcdMergeKVLocked(target, got.Kvs[0].Value); err != nil {
				return err
			}
		}
		b, err := g.marshalSharedShardLock(target, lk)
		if err != nil {
			return err
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}, shardFenceCmps(ctx)...)
		claim := e.claimed[target]
		if claim != "" {
			cmps = append(cmps, clientv3.Compare(clientv3.Value(owner), "=", claim))
		}
		resp, err := e.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(b))).
			Else(append([]clientv3.Op{clientv3.OpGet(owner)}, shardFenceGet(ctx)...)...).Commit()
		if err != nil {
			return Retryable(fmt.Errorf("dmworker: shard group of task %s: store the lock of %s: %w", g.task, target, err))
		}
		if resp.Succeeded {
			lk.dirty = false
			return nil
		}
		if err := g.shardFenceCheck(ctx, resp, "the lock of "+target); err != nil {
			return err
		}
		if claim != "" {
			kvs := resp.Responses[0].GetResponseRange().Kvs
			if len(kvs) == 0 || string(kvs[0].Value) != claim {
				delete(e.claimed, target)
				return Retryable(fmt.Errorf("%w: task %s, %s", ErrShardOwnerLost, g.task, target))
			}
		}
		// Another process wrote it meanwhile: merge again.
	}
}

// etcdForgetLocked deletes target's lock key once the lock, merged with
// what is stored, holds nothing to know (emptyLocked), if the key is still
// at the revision read and nobody holds target's owner key; then drops the
// lock here. Another process that wrote meanwhile makes it read again;
// one whose lock still holds something when it sees the deletion writes
// it again (etcdForgottenLocked).
func (g *ShardGroup) etcdForgetLocked(ctx context.Context, target string) error {
	e := g.etcd
	key, owner := e.lockDir+target, e.ownerDir+target
	for {
		got, err := e.cli.Get(ctx, key)
		if err != nil {
			return Retryable(fmt.Errorf("dmworker: shard group of task %s: read the lock of %s: %w", g.task, target, err))
		}
		if len(got.Kvs) == 0 {
			delete(g.locks, target)
			return nil
		}
		if err := g.etcdMergeKVLocked(target, got.Kvs[0].Value); err != nil {
			return err
		}
		if lk := g.locks[target]; lk == nil || !g.emptyLocked(lk) {
			return g.etcdSaveLocked(ctx, target)
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", got.Kvs[0].ModRevision),
			clientv3.Compare(clientv3.CreateRevision(owner), "=", 0)}, shardFenceCmps(ctx)...)
		resp, err := e.cli.Txn(ctx).If(cmps...).Then(clientv3.OpDelete(key)).
			Else(append([]clientv3.Op{clientv3.OpGet(owner)}, shardFenceGet(ctx)...)...).Commit()
		if err != nil {
			return Retryable(fmt.Errorf("dmworker: shard group of task %s: delete the lock of %s: %w", g.task, target, err))
		}
		if resp.Succeeded {
			delete(g.locks, target)
			return nil
		}
		if err := g.shardFenceCheck(ctx, resp, "the deletion of the lock of "+target); err != nil {
			return err
		}
		if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
			return nil // a step being applied: whoever applies it writes the lock again
		}
		// Written meanwhile: read again.
	}
}

// etcdForgottenLocked handles the deletion of target's lock key by
// another process: the lock goes here too when it holds nothing to know;
// else it is written again at its next save.
func (g *ShardGroup) etcdForgottenLocked(target string) {
	lk := g.locks[target]
	if lk == nil {
		return
	}
	if g.emptyLocked(lk) {
		delete(g.locks, target)
		return
	}
	lk.dirty = true
}

// etcdClaimLocked puts target's owner key for step rd when absent. It
// reports applied when the step turns out applied (by another process,
// as the lock read with the claim says), errShardOwnedElsewhere when
// another group holds the key.
func (g *ShardGroup) etcdClaimLocked(ctx context.Context, lk *shardLock, rd *shardRound, target string) (applied bool, err error) {
	e := g.etcd
	key, owner := e.lockDir+target, e.ownerDir+target
	val, err := json.Marshal(shardOwnerJSON{Owner: e.id, Round: lk.base + slices.Index(lk.rounds, rd), Stmt: rd.stmt})
	if err != nil {
		return false, err
	}
	resp, err := e.cli.Txn(ctx).If(append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(owner), "=", 0)}, shardFenceCmps(ctx)...)...).
		Then(clientv3.OpPut(owner, string(val), clientv3.WithLease(e.lease)), clientv3.OpGet(key)).
		Else(append([]clientv3.Op{clientv3.OpGet(owner), clientv3.OpGet(key)}, shardFenceGet(ctx)...)...).Commit()
	if err != nil {
		return false, Retryable(fmt.Errorf("dmworker: shard group of task %s: claim the DDL of %s: %w", g.task, target, err))
	}
	if err := g.shardFenceCheck(ctx, resp, "the claim of the DDL of "+target); err != nil {
		return false, err
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := g.etcdMergeKVLocked(target, kvs[0].Value); err != nil {
			return false, err
		}
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			var o shardOwnerJSON
			if json.Unmarshal(kvs[0].Value, &o) == nil && o.Owner == e.id {
				e.claimed[target] = string(kvs[0].Value) // ours from before
			} else {
				g.etcdOwnerPutLocked(target, kvs[0])
				if !rd.applied && rd.err == nil {
					return false, errShardOwnedElsewhere
				}
			}
		}
	} else {
		e.claimed[target] = string(val)
	}
	if rd.err != nil {
		g.etcdUnclaimLocked(ctx, target)
		return false, rd.err
	}
	if rd.applied {
		g.etcdUnclaimLocked(ctx, target)
		return true, nil
	}
	if e.claimed[target] == "" {
		// The key was deleted between: try again.
		return false, errShardOwnedElsewhere
	}
	return false, nil
}

// etcdUnclaimLocked deletes target's owner key if it is still this
// group's.
func (g *ShardGroup) etcdUnclaimLocked(ctx context.Context, target string) {
	e := g.etcd
	claim, ok := e.claimed[target]
	if !ok {
		return
	}
	delete(e.claimed, target)
	owner := e.ownerDir + target
	// Best effort: a key left behind goes with the lease.
	_, _ = e.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(owner), "=", claim)).Then(clientv3.OpDelete(owner)).Commit()
}

// etcdShareMembersLocked writes every lock of a group through etcd, so
// that the other processes learn the members a source's start set.
func (g *ShardGroup) etcdShareMembersLocked(ctx context.Context) error {
	if g.etcd == nil {
		return nil
	}
	for target, lk := range g.locks {
		lk.dirty = true
		if err := g.etcdSaveLocked(ctx, target); err != nil {
			return err
		}
	}
	return nil
}

// etcdConflictLocked writes the conflict that stopped the group into
// target's lock, so that the other processes stop too (best effort: the
// group is stopped here whatever etcd answers).
func (g *ShardGroup) etcdConflictLocked(ctx context.Context, target string, err *ShardDDLConflictError) {
	if g.etcd == nil {
		return
	}
	g.etcd.conflicts[target] = err
	lk := g.lockLocked(target)
	lk.dirty = true
	_ = g.etcdSaveLocked(ctx, target)
}

// etcdKeepLease drains the lease's keep-alive answers (the client renews
// it) until ctx ends; when the lease is lost (expired while etcd was out
// of reach, or revoked), it grants a new one, so that the group can claim
// steps again: its claims under the old lease are gone with it (and its
// applied marks under them fenced, ErrShardOwnerLost).
func (g *ShardGroup) etcdKeepLease(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	e := g.etcd
	for {
		for range ka { //nolint:revive // drained: the client renews
		}
		for {
			if ctx.Err() != nil {
				return
			}
			gctx, cancel := context.WithTimeout(ctx, shardOwnerTTL/3)
			l, err := e.cli.Grant(gctx, int64(shardOwnerTTL/time.Second))
			cancel()
			if err == nil {
				var nka <-chan *clientv3.LeaseKeepAliveResponse
				if nka, err = e.cli.KeepAlive(ctx, l.ID); err == nil {
					g.mu.Lock()
					e.lease, e.id = l.ID, fmt.Sprintf("%x", int64(l.ID))
					g.wakeLocked()
					g.mu.Unlock()
					ka = nka
					break
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}
