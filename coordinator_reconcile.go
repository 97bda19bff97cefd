package dmworker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file holds the leader's work: read the state, plan the changes to the
// bindings, and apply each in a guarded transaction.

// boundKV is a binding as read: its source and its key's ModRevision.
type boundKV struct {
	source string
	rev    int64
}

// action is one guarded change to a binding.
type action struct {
	bind      bool // else unbind
	worker    string
	source    string
	rev       int64 // unbind: the bound key's ModRevision
	workerRev int64 // bind: the worker key's CreateRevision
	sourceRev int64 // bind: the source key's CreateRevision
	reason    string
}

// reconcile reads workers, sources and bindings at one revision and applies
// the plan; it returns the revision read.
func (c *Coordinator) reconcile(ctx context.Context, ld leader) (int64, error) {
	opCtx, cancel := context.WithTimeout(ctx, c.lease.opTimeout())
	defer cancel()
	resp, err := c.cli.Txn(opCtx).Then(
		clientv3.OpGet(c.keys.workers(), clientv3.WithPrefix()),
		clientv3.OpGet(c.keys.sources(), clientv3.WithPrefix()),
		clientv3.OpGet(c.keys.bounds(), clientv3.WithPrefix()),
		clientv3.OpGet(ld.key),
	).Commit()
	if err != nil {
		return 0, fmt.Errorf("dmworker: coordinator: read state under %s: %w", c.keys.prefix, err)
	}
	rev := resp.Header.Revision
	if kvs := resp.Responses[3].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != ld.rev {
		return rev, fmt.Errorf("%w: election key %s gone", ErrNotLeader, ld.key)
	}
	names := func(i int, pfx string) map[string]int64 {
		m := map[string]int64{}
		for _, kv := range resp.Responses[i].GetResponseRange().Kvs {
			if name := strings.TrimPrefix(string(kv.Key), pfx); validName(name) {
				m[name] = kv.CreateRevision
			}
		}
		return m
	}
	workers := names(0, c.keys.workers())
	sources := names(1, c.keys.sources())
	bound := map[string]boundKV{}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		var sb SourceBinding
		if err := json.Unmarshal(kv.Value, &sb); err != nil {
			c.log.Warn("binding unreadable, removing it", slog.String("key", string(kv.Key)), errAttr(err))
		}
		bound[strings.TrimPrefix(string(kv.Key), c.keys.bounds())] = boundKV{sb.Source, kv.ModRevision}
	}

	for s := range c.last {
		if _, ok := sources[s]; !ok {
			delete(c.last, s) // removed: a source added again later starts afresh
		}
	}
	actions, unbound := plan(workers, sources, bound, c.last)
	known := rev
	for _, a := range actions {
		if known, err = c.apply(ctx, ld, known, a); err != nil {
			return rev, err
		}
	}
	if len(unbound) > 0 {
		c.log.Warn("sources without a worker: no idle live worker", slog.String("sources", strings.Join(unbound, ",")))
	}
	return rev, nil
}

// plan decides the changes that bring the bindings in line: unbind dead
// workers (key gone, or registered again since the binding was made: the
// binding belonged to a registration that ended), gone sources, and all but
// the newest binding of a source bound twice; then bind each unbound source
// to an idle live worker. It returns the sources left unbound for want of
// one. It is deterministic.
func plan(workers, sources map[string]int64, bound map[string]boundKV, last map[string]string) (actions []action, unbound []string) {
	served := map[string]string{} // source -> the worker whose binding stays
	busy := map[string]bool{}     // workers whose binding stays
	failed := map[string]string{} // source -> the worker just unbound from it for dying
	for _, w := range sortedKeys(bound) {
		b := bound[w]
		switch {
		case workers[w] == 0:
			actions = append(actions, action{worker: w, source: b.source, rev: b.rev, reason: "worker gone"})
			failed[b.source] = w
		case workers[w] > b.rev:
			actions = append(actions, action{worker: w, source: b.source, rev: b.rev, reason: "worker registered again"})
			failed[b.source] = w
		case sources[b.source] == 0:
			actions = append(actions, action{worker: w, source: b.source, rev: b.rev, reason: "source gone"})
		default:
			if o, ok := served[b.source]; ok {
				// Bound twice (never by a coordinator): keep the newest
				// binding, the one fencing lets write.
				drop := w
				if b.rev > bound[o].rev {
					drop, served[b.source] = o, w
					delete(busy, o)
					busy[w] = true
				}
				actions = append(actions, action{worker: drop, source: b.source, rev: bound[drop].rev, reason: "source bound twice"})
				continue
			}
			served[b.source], busy[w] = w, true
		}
	}
	var idle []string
	for _, w := range sortedKeys(workers) {
		if !busy[w] {
			idle = append(idle, w)
		}
	}
	for _, s := range sortedKeys(sources) {
		if _, ok := served[s]; ok {
			continue
		}
		if len(idle) == 0 {
			unbound = append(unbound, s)
			continue
		}
		// The worker that served the source last, if idle, unless it just
		// failed and another is idle: then the source fails over.
		i := 0
		if j := slices.Index(idle, last[s]); j >= 0 && (last[s] != failed[s] || len(idle) == 1) {
			i = j
		} else if idle[0] == failed[s] && len(idle) > 1 {
			i = 1
		}
		w := idle[i]
		idle = slices.Delete(idle, i, i+1)
		actions = append(actions, action{bind: true, worker: w, source: s, workerRev: workers[w], sourceRev: sources[s], reason: "unbound source"})
	}
	return actions, unbound
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// apply makes one change in a transaction guarded by ld's leadership, by no
// binding having changed after known, and by the keys the change relies on.
// It returns the revision of the change.
func (c *Coordinator) apply(ctx context.Context, ld leader, known int64, a action) (int64, error) {
	key := c.keys.bound(a.worker)
	unchanged := clientv3.Compare(clientv3.ModRevision(c.keys.bounds()), "<", known+1)
	cmps := []clientv3.Cmp{ld.guard(), unchanged.WithPrefix()}
	var op clientv3.Op
	if a.bind {
		val, err := json.Marshal(SourceBinding{Source: a.source})
		if err != nil {
			return known, err
		}
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(c.keys.worker(a.worker)), "=", a.workerRev),
			clientv3.Compare(clientv3.CreateRevision(c.keys.source(a.source)), "=", a.sourceRev))
		op = clientv3.OpPut(key, string(val))
	} else {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", a.rev))
		op = clientv3.OpDelete(key)
	}
	opCtx, cancel := context.WithTimeout(ctx, c.lease.opTimeout())
	defer cancel()
	resp, err := c.cli.Txn(opCtx).If(cmps...).Then(op).Else(clientv3.OpGet(ld.key)).Commit()
	if err != nil {
		return known, fmt.Errorf("dmworker: coordinator: %s worker %s source %s: %w", verb(a), a.worker, a.source, err)
	}
	if !resp.Succeeded {
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != ld.rev {
			return known, fmt.Errorf("%w: %s worker %s source %s refused: election key %s gone", ErrNotLeader, verb(a), a.worker, a.source, ld.key)
		}
		return known, fmt.Errorf("%w: %s worker %s source %s", errStaleView, verb(a), a.worker, a.source)
	}
	rev := resp.Header.Revision
	if a.bind {
		c.last[a.source] = a.worker
		c.log.Info("source bound", slog.String("source", a.source), slog.String("worker", a.worker), slog.Int64("epoch", rev))
	} else {
		c.log.Info("source unbound", slog.String("source", a.source), slog.String("worker", a.worker), slog.Int64("epoch", a.rev), slog.String("reason", a.reason))
	}
	return rev, nil
}

func verb(a action) string {
	if a.bind {
		return "bind"
	}
	return "unbind"
}
