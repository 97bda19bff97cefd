package dmworker

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/internal/schema"
)

// Optimistic shard mode through etcd (a ShardGroup made by
// NewEtcdShardGroup whose subtasks run in ShardMode "optimistic").
//
// Keys, under the group's prefix:
//
//	shardopt/<task>/<target>     the target's state: each shard's schema,
//	                             the downstream table as the groups know it
//	                             (the join), the drops held back, and the
//	                             statement being applied, if any
//	shardoptreg/<task>/<source>  a source whose syncer registered its
//	                             shard tables (at the start of a run)
//	shardowner/<task>/<target>   the group deciding and applying a DDL of
//	                             the target now, under its lease (the key
//	                             pessimistic mode's steps are claimed by)
//
// Every change of a target's state is made by the group that holds the
// target's owner key: it takes the key (waiting while another group holds
// it), reads the state, decides the shard's DDL clauses against it as in
// one process, and writes it back by a compare on its owner key and the
// state's revision (a group whose lease expired meanwhile gets
// ErrShardOwnerLost). A clause to apply downstream is first recorded in
// the state with the downstream table it makes ("applying"), then run (in
// safe mode), then the state is written without it. A group that finds a
// statement recorded as applying (its claimant died, or lost its lease,
// between the two writes) reads the downstream table (TableDefiner) and
// runs the statement again only when the downstream does not show its
// effect: a DDL is applied once, whatever process dies where.

// optIO is what optimistic shard mode through etcd needs of a syncer to
// finish a statement another process left half applied: running it on a
// target downstream (in safe mode), and reading the target's definition
// there (nil, or down nil, when the sink cannot tell).
type optIO struct {
	exec func(target, stmt string) error
	down func(ctx context.Context, target string) (*schema.TableDef, error)
}

// optTargetJSON is the value of a target's shardopt key.
type optTargetJSON struct {
	Shards   []optShardJSON   `json:"shards,omitempty"`
	Down     json.RawMessage  `json:"down,omitempty"`
	Pending  []optPendingJSON `json:"pending,omitempty"`
	Applying *optApplyingJSON `json:"applying,omitempty"`
}

type optShardJSON struct {
	Shard ShardRef        `json:"shard"`
	Def   json.RawMessage `json:"def"`
}

type optPendingJSON struct {
	Stmt    string          `json:"stmt"`
	Kind    schema.StepKind `json:"kind"`
	Name    string          `json:"name"`
	Since   time.Time       `json:"since"`
	Reached []ShardReached  `json:"reached,omitempty"`
}

// optApplyingJSON is a statement being applied downstream: the clause's
// kind and the column or index it concerns, and the downstream table
// once it has run.
type optApplyingJSON struct {
	Stmt string          `json:"stmt"`
	Kind schema.StepKind `json:"kind"`
	Name string          `json:"name"`
	Down json.RawMessage `json:"down"`
}

// optEncodeLocked is t's state as its key holds it (g.mu held).
func optEncodeLocked(t *optTarget, applying *optApplyingJSON) ([]byte, error) {
	var j optTargetJSON
	for r, d := range t.shards {
		b, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		j.Shards = append(j.Shards, optShardJSON{Shard: r, Def: b})
	}
	sort.Slice(j.Shards, func(a, b int) bool { return j.Shards[a].Shard.String() < j.Shards[b].Shard.String() })
	if t.down != nil {
		b, err := json.Marshal(t.down)
		if err != nil {
			return nil, err
		}
		j.Down = b
	}
	for _, p := range t.pending {
		pj := optPendingJSON{Stmt: p.stmt, Kind: p.kind, Name: p.name, Since: p.since}
		for r, at := range p.reached {
			pj.Reached = append(pj.Reached, ShardReached{r, at})
		}
		sort.Slice(pj.Reached, func(a, b int) bool { return pj.Reached[a].String() < pj.Reached[b].String() })
		j.Pending = append(j.Pending, pj)
	}
	sort.Slice(j.Pending, func(a, b int) bool { return j.Pending[a].Stmt < j.Pending[b].Stmt })
	j.Applying = applying
	return json.Marshal(j)
}

// optDecodeLocked replaces t's state with the one a key holds (g.mu held)
// and returns the statement it records as being applied.
func optDecodeLocked(target string, t *optTarget, b []byte) (*optApplyingJSON, error) {
	var j optTargetJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("optimistic state of %s in etcd: %w", target, err)
	}
	shards := map[ShardRef]*schema.TableDef{}
	for _, s := range j.Shards {
		d, err := schema.UnmarshalTableDef(s.Def)
		if err != nil {
			return nil, fmt.Errorf("optimistic state of %s in etcd: shard %s: %w", target, s.Shard, err)
		}
		shards[s.Shard] = d
	}
	var down *schema.TableDef
	if len(j.Down) > 0 {
		d, err := schema.UnmarshalTableDef(j.Down)
		if err != nil {
			return nil, fmt.Errorf("optimistic state of %s in etcd: downstream: %w", target, err)
		}
		down = d
	}
	pending := map[string]*optPending{}
	for _, pj := range j.Pending {
		p := &optPending{step: optStepOf(target, pj.Stmt, down), stmt: pj.Stmt, kind: pj.Kind, name: pj.Name, since: pj.Since, reached: map[ShardRef]time.Time{}}
		for _, r := range pj.Reached {
			p.reached[r.ShardRef] = r.At
		}
		pending[pj.Stmt] = p
	}
	t.shards, t.down, t.pending = shards, down, pending
	return j.Applying, nil
}

// optStepOf is the one clause of stmt (a statement rendered for target)
// against down; nil when it is not one.
func optStepOf(target, stmt string, down *schema.TableDef) *schema.Step {
	if down == nil {
		return nil
	}
	sch, _, _ := strings.Cut(target, ".")
	stmts, err := schema.Split(sch, stmt)
	if err != nil || len(stmts) != 1 {
		return nil
	}
	steps, err := stmts[0].Steps(down)
	if err != nil || len(steps) != 1 {
		return nil
	}
	return &steps[0]
}

// optTargetDo runs fn on target's state with the target's DDL lock held,
// and through etcd its claim (see optEtcdBegin).
func (g *ShardGroup) optTargetDo(ctx context.Context, io *optIO, target string, fn func(t *optTarget) error) error {
	g.mu.Lock()
	t := g.optLocked().target(target)
	g.mu.Unlock()
	t.ddl.Lock()
	defer t.ddl.Unlock()
	end, err := g.optEtcdBegin(ctx, target, t, io)
	if err != nil {
		return err
	}
	return end(fn(t))
}

// optEtcdBegin, with t.ddl held, claims target through etcd and reads its
// state into t, finishing a statement left half applied (see the file's
// comment). end writes t back, releases the claim and returns the error
// given, or its own. Without etcd it does nothing.
func (g *ShardGroup) optEtcdBegin(ctx context.Context, target string, t *optTarget, io *optIO) (end func(error) error, err error) {
	if g.etcd == nil {
		return func(err error) error { return err }, nil
	}
	if err := g.optEtcdClaim(ctx, target); err != nil {
		return nil, err
	}
	release := func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shardOwnerTTL/3)
		defer cancel()
		g.mu.Lock()
		defer g.mu.Unlock()
		g.etcd.optHeld[target] = false
		g.etcdUnclaimLocked(uctx, target)
	}
	ap, err := g.optEtcdLoad(ctx, target, t)
	if err == nil && ap != nil {
		err = g.optEtcdResolve(ctx, target, t, ap, io)
	}
	if err != nil {
		release()
		return nil, err
	}
	return func(err error) error {
		if perr := g.optEtcdPut(ctx, target, t, nil); err == nil {
			err = perr
		}
		release()
		return err
	}, nil
}

// optEtcdClaim puts target's owner key under the group's lease, waiting
// while another group holds it.
func (g *ShardGroup) optEtcdClaim(ctx context.Context, target string) error {
	e := g.etcd
	owner := e.ownerDir + target
	for {
		g.mu.Lock()
		val, err := json.Marshal(shardOwnerJSON{Owner: e.id, Round: -1, Stmt: "optimistic"})
		lease, wake := e.lease, g.wake
		g.mu.Unlock()
		if err != nil {
			return err
		}
		resp, err := e.cli.Txn(ctx).If(append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(owner), "=", 0)}, shardFenceCmps(ctx)...)...).
			Then(clientv3.OpPut(owner, string(val), clientv3.WithLease(lease))).
			Else(append([]clientv3.Op{clientv3.OpGet(owner)}, shardFenceGet(ctx)...)...).Commit()
		if err != nil {
			return Retryable(fmt.Errorf("dmworker: shard group of task %s: claim %s: %w", g.task, target, err))
		}
		if err := g.shardFenceCheck(ctx, resp, "the claim of "+target); err != nil {
			return err
		}
		held := ""
		if resp.Succeeded {
			held = string(val)
		} else if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			var o shardOwnerJSON
			if json.Unmarshal(kvs[0].Value, &o) == nil && o.Owner == e.id {
				held = string(kvs[0].Value) // ours, left by a release that failed
			}
		}
		if held != "" {
			g.mu.Lock()
			e.claimed[target], e.optHeld[target] = held, true
			g.mu.Unlock()
			return nil
		}
		// Another group holds it: its deletion (or its lease's expiry)
		// comes through the watch, which wakes the group.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(time.Second):
		}
	}
}

// optEtcdLoad reads target's state into t (kept when the key is absent)
// and the sources registered; it returns the statement recorded as being
// applied.
func (g *ShardGroup) optEtcdLoad(ctx context.Context, target string, t *optTarget) (*optApplyingJSON, error) {
	e := g.etcd
	resp, err := e.cli.Txn(ctx).Then(clientv3.OpGet(e.optDir+target), clientv3.OpGet(e.regDir, clientv3.WithPrefix())).Commit()
	if err != nil {
		return nil, Retryable(fmt.Errorf("dmworker: shard group of task %s: read the state of %s: %w", g.task, target, err))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	o := g.optLocked()
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		o.registered[strings.TrimPrefix(string(kv.Key), e.regDir)] = true
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		e.optRev[target] = 0
		return nil, nil
	}
	e.optRev[target] = kvs[0].ModRevision
	ap, err := optDecodeLocked(target, t, kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("dmworker: shard group of task %s: %w", g.task, err)
	}
	return ap, nil
}

// optEtcdPut writes t as target's state, applying (nil: none) the
// statement being applied, if the group still holds target's owner key
// and the state is as it read it.
func (g *ShardGroup) optEtcdPut(ctx context.Context, target string, t *optTarget, applying *optApplyingJSON) error {
	e := g.etcd
	g.mu.Lock()
	b, err := optEncodeLocked(t, applying)
	claim, rev := e.claimed[target], e.optRev[target]
	g.mu.Unlock()
	if err != nil {
		return err
	}
	lost := Retryable(fmt.Errorf("%w: task %s, %s", ErrShardOwnerLost, g.task, target))
	if claim == "" {
		return lost
	}
	key, owner := e.optDir+target, e.ownerDir+target
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.Value(owner), "=", claim), clientv3.Compare(clientv3.ModRevision(key), "=", rev)},
		shardFenceCmps(ctx)...)
	resp, err := e.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(b))).Else(shardFenceGet(ctx)...).Commit()
	if err != nil {
		return Retryable(fmt.Errorf("dmworker: shard group of task %s: store the state of %s: %w", g.task, target, err))
	}
	if err := g.shardFenceCheck(ctx, resp, "the optimistic state of "+target); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !resp.Succeeded {
		delete(e.claimed, target)
		return lost
	}
	e.optRev[target] = resp.Header.Revision
	return nil
}

// optEtcdApplying records, before stmt (a clause of kind on the column or
// index name) runs downstream, that it is being applied and the
// downstream table after makes (nothing without etcd).
func (g *ShardGroup) optEtcdApplying(ctx context.Context, target string, t *optTarget, stmt string, kind schema.StepKind, name string, after *schema.TableDef) error {
	if g.etcd == nil {
		return nil
	}
	b, err := json.Marshal(after)
	if err != nil {
		return err
	}
	return g.optEtcdPut(ctx, target, t, &optApplyingJSON{Stmt: stmt, Kind: kind, Name: name, Down: b})
}

// optEtcdApplied writes t once a statement recorded as being applied ran
// (nothing without etcd).
func (g *ShardGroup) optEtcdApplied(ctx context.Context, target string, t *optTarget) error {
	if g.etcd == nil {
		return nil
	}
	return g.optEtcdPut(ctx, target, t, nil)
}

// optEtcdResolve finishes the statement ap another claimant recorded as
// being applied: it runs it (in safe mode) unless the downstream table,
// as the sink reads it, shows its effect already; then the state takes
// the downstream table it makes and is written without it.
func (g *ShardGroup) optEtcdResolve(ctx context.Context, target string, t *optTarget, ap *optApplyingJSON, io *optIO) error {
	want, err := schema.UnmarshalTableDef(ap.Down)
	if err != nil {
		return fmt.Errorf("dmworker: shard group of task %s: statement being applied on %s in etcd: %w", g.task, target, err)
	}
	var have *schema.TableDef
	if io != nil && io.down != nil {
		if have, err = io.down(ctx, target); err != nil {
			return err
		}
	}
	if have == nil || !optShows(have, want, ap.Kind, ap.Name) {
		if io == nil || io.exec == nil {
			return fmt.Errorf("dmworker: shard group of task %s: %q was being applied on %s by a process gone, and this syncer cannot run it", g.task, ap.Stmt, target)
		}
		if err := io.exec(target, ap.Stmt); err != nil {
			return err
		}
	}
	g.mu.Lock()
	t.down = want
	g.mu.Unlock()
	return g.optEtcdPut(ctx, target, t, nil)
}

// optShows reports whether the downstream table have shows the effect of
// a clause of kind on the column or index name, whose result is want.
func optShows(have, want *schema.TableDef, kind schema.StepKind, name string) bool {
	switch kind {
	case schema.StepAddColumn, schema.StepModifyColumn:
		h, w := have.Column(name), want.Column(name)
		if h < 0 || w < 0 {
			return false
		}
		hc, wc := have.Columns[h], want.Columns[w]
		return fitsCharsetKnown(&hc, &wc) && fitsCharsetKnown(&wc, &hc) && hc.Nullable == wc.Nullable
	case schema.StepDropColumn:
		return have.Column(name) < 0
	case schema.StepAddIndex:
		h, w := indexOf(have, name), indexOf(want, name)
		return h >= 0 && w >= 0 && slices.EqualFunc(have.Indexes[h].Columns, want.Indexes[w].Columns, strings.EqualFold)
	case schema.StepDropIndex:
		return indexOf(have, name) < 0
	}
	return false
}

// optRegisterEtcd is optRegister through etcd: the source is recorded
// registered, and each target's state takes the source's shard tables
// (in place of those it had) and the downstream table's columns.
func (g *ShardGroup) optRegisterEtcd(ctx context.Context, io *optIO, source string, shards map[string]map[ShardRef]*schema.TableDef, downs map[string]*schema.TableDef) error {
	e := g.etcd
	resp, err := e.cli.Txn(ctx).If(shardFenceCmps(ctx)...).Then(clientv3.OpPut(e.regDir+source, time.Now().UTC().Format(time.RFC3339Nano))).
		Else(shardFenceGet(ctx)...).Commit()
	if err != nil {
		return Retryable(fmt.Errorf("dmworker: shard group of task %s: register source %s: %w", g.task, source, err))
	}
	if err := g.shardFenceCheck(ctx, resp, "the registration of source "+source); err != nil {
		return err
	}
	g.mu.Lock()
	o := g.optLocked()
	o.registered[source] = true
	names := map[string]bool{}
	for name, t := range o.targets {
		for r := range t.shards {
			if r.Source == source {
				names[name] = true
			}
		}
	}
	for name := range shards {
		names[name] = true
	}
	for name, d := range downs {
		if d != nil {
			names[name] = true
		}
	}
	g.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(names)) {
		err := g.optTargetDo(ctx, io, name, func(t *optTarget) error {
			g.mu.Lock()
			defer g.mu.Unlock()
			for r := range t.shards {
				if r.Source == source {
					delete(t.shards, r)
				}
			}
			for r, d := range shards[name] {
				t.shards[r] = d
				t.down = joinInto(t.down, d)
			}
			if d := downs[name]; d != nil {
				t.down = joinInto(t.down, d)
			}
			t.prune()
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// optRemoveEtcd takes source out of optimistic mode's state in etcd (for
// RemoveSourceContext): its shard tables out of each target's state, by
// the same claim and compare as every change of it, then its registration
// key deleted. Removing what is not there does nothing, so each process
// can call it.
func (g *ShardGroup) optRemoveEtcd(ctx context.Context, source string) error {
	e := g.etcd
	resp, err := e.cli.Get(ctx, e.optDir, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return Retryable(fmt.Errorf("dmworker: shard group of task %s: read its targets to remove source %s: %w", g.task, source, err))
	}
	names := map[string]bool{}
	for _, kv := range resp.Kvs {
		names[strings.TrimPrefix(string(kv.Key), e.optDir)] = true
	}
	g.mu.Lock()
	if g.opt != nil {
		for name := range g.opt.targets {
			names[name] = true
		}
	}
	g.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(names)) {
		err := g.optTargetDo(ctx, nil, name, func(t *optTarget) error {
			g.mu.Lock()
			defer g.mu.Unlock()
			optForgetSource(t, source)
			t.prune()
			return nil
		})
		if err != nil {
			return err
		}
	}
	dresp, err := e.cli.Txn(ctx).If(shardFenceCmps(ctx)...).Then(clientv3.OpDelete(e.regDir + source)).Else(shardFenceGet(ctx)...).Commit()
	if err != nil {
		return Retryable(fmt.Errorf("dmworker: shard group of task %s: delete the registration of source %s: %w", g.task, source, err))
	}
	return g.shardFenceCheck(ctx, dresp, "the removal of source "+source)
}

// optEtcdEventLocked merges a change of a shardopt or shardoptreg key made
// by another group (or by this one: the watch returns its own writes)
// into the group's view; a target this group holds the claim of is its
// own to change. It reports whether the key was one of those.
func (g *ShardGroup) optEtcdEventLocked(ev *clientv3.Event) bool {
	e := g.etcd
	key := string(ev.Kv.Key)
	switch {
	case strings.HasPrefix(key, e.optDir):
		target := strings.TrimPrefix(key, e.optDir)
		if ev.Type == clientv3.EventTypePut && !e.optHeld[target] {
			// A value that does not decode is left for the claimant to
			// refuse (optEtcdLoad).
			_, _ = optDecodeLocked(target, g.optLocked().target(target), ev.Kv.Value)
		}
		return true
	case strings.HasPrefix(key, e.regDir):
		if ev.Type == clientv3.EventTypePut {
			g.optLocked().registered[strings.TrimPrefix(key, e.regDir)] = true
		} else {
			delete(g.optLocked().registered, strings.TrimPrefix(key, e.regDir)) // a source removed (optRemoveEtcd)
		}
		return true
	}
	return false
}

// optEtcdReloadOps are the reads etcdReloadLocked adds for optimistic
// mode: every target's state and the sources registered.
func (e *shardEtcd) optEtcdReloadOps() []clientv3.Op {
	return []clientv3.Op{clientv3.OpGet(e.optDir, clientv3.WithPrefix()), clientv3.OpGet(e.regDir, clientv3.WithPrefix())}
}
