package dmworker

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/streamer"
)

// ShardLockStore is a CheckpointStore (or CheckpointSink) that also keeps
// the state of a ShardGroup's DDL locks, so that a process restarted in the
// middle of a lock resolves it by itself (see ShardGroup). The syncer finds
// it by type assertion on its checkpoint store, or on its sink when the
// sink keeps the checkpoints. MemoryCheckpointStore, EtcdCheckpointStore
// and the mysqlsink Sink are ones.
//
// The state is opaque bytes, one value per task and downstream table
// ("schema.table"). LoadShardLocks returns every value stored for task
// (an empty map when none); SaveShardLock replaces the value of task and
// target, and deletes it when state is nil; it must be durable when it
// returns. Both honour ctx. Implementations are safe for concurrent use
// and keep no reference to the bytes given or returned.
type ShardLockStore interface {
	LoadShardLocks(ctx context.Context, task string) (map[string][]byte, error)
	SaveShardLock(ctx context.Context, task, target string, state []byte) error
}

// shardLockStoreOf returns the ShardLockStore behind a syncer's checkpoint
// store, nil when it is none.
func shardLockStoreOf(store CheckpointStore) ShardLockStore {
	if ss, ok := store.(sinkStore); ok {
		ls, _ := ss.s.(ShardLockStore)
		return ls
	}
	ls, _ := store.(ShardLockStore)
	return ls
}

// shardLockJSON is a target's lock as stored. Part of the stored format:
// fields are only added.
type shardLockJSON struct {
	Rounds []shardRoundJSON `json:"rounds"`
	// Base is the number of steps compacted away before Rounds[0] (all
	// applied; the place of each shard table that last reached one is in
	// Joined). Absent in what was stored before compaction: 0.
	Base   int             `json:"base,omitempty"`
	Left   []string        `json:"left,omitempty"`
	Joined []shardJoinJSON `json:"joined,omitempty"`
	// Members are, by source, its shard tables of the target: written
	// only by a group coordinating through etcd (NewEtcdShardGroup),
	// where the other processes' sources are known from them.
	Members map[string][]string `json:"members,omitempty"`
	// Conflict is, through etcd, the differing DDLs that stopped the
	// group (its processes all stop).
	Conflict *shardConflictJSON `json:"conflict,omitempty"`
}

// shardConflictJSON is a ShardDDLConflictError as stored.
type shardConflictJSON struct {
	Statements []shardConflictStmtJSON `json:"statements"`
}

type shardConflictStmtJSON struct {
	Shard ShardRef `json:"shard"`
	Stmt  string   `json:"stmt"`
}

type shardRoundJSON struct {
	Stmt    string             `json:"stmt"`
	First   ShardRef           `json:"first"`
	Since   time.Time          `json:"since"`
	Applied bool               `json:"applied,omitempty"`
	Reached []shardArrivalJSON `json:"reached"`
}

type shardArrivalJSON struct {
	Source string            `json:"source"`
	Table  string            `json:"table"`
	Pos    streamer.Position `json:"pos"`
	At     time.Time         `json:"at"`
}

type shardJoinJSON struct {
	Source string            `json:"source"`
	Table  string            `json:"table"`
	Pos    streamer.Position `json:"pos"`
	Base   int               `json:"base"`
}

func marshalShardLock(lk *shardLock) ([]byte, error) {
	j := shardLockJSON{Rounds: []shardRoundJSON{}, Base: lk.base}
	for _, rd := range lk.rounds {
		r := shardRoundJSON{Stmt: rd.stmt, First: rd.first, Since: rd.since, Applied: rd.applied, Reached: []shardArrivalJSON{}}
		for ref, a := range rd.reached {
			r.Reached = append(r.Reached, shardArrivalJSON{Source: ref.Source, Table: ref.Table, Pos: a.pos, At: a.at})
		}
		j.Rounds = append(j.Rounds, r)
	}
	for s := range lk.left {
		j.Left = append(j.Left, s)
	}
	for ref, jn := range lk.joined {
		j.Joined = append(j.Joined, shardJoinJSON{Source: ref.Source, Table: ref.Table, Pos: jn.pos, Base: jn.base})
	}
	return json.Marshal(j)
}

func unmarshalShardLock(b []byte) (*shardLock, error) {
	var j shardLockJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, err
	}
	lk := &shardLock{base: j.Base}
	for _, r := range j.Rounds {
		rd := &shardRound{stmt: r.Stmt, first: r.First, since: r.Since, applied: r.Applied,
			reached: map[ShardRef]shardArrival{}, done: make(chan struct{})}
		for _, a := range r.Reached {
			rd.reached[ShardRef{a.Source, a.Table}] = shardArrival{pos: a.Pos, at: a.At}
		}
		if rd.applied {
			close(rd.done)
		}
		lk.rounds = append(lk.rounds, rd)
	}
	for _, s := range j.Left {
		if lk.left == nil {
			lk.left = map[string]bool{}
		}
		lk.left[s] = true
	}
	for src, tables := range j.Members {
		if lk.members == nil {
			lk.members = map[string]map[string]bool{}
		}
		lk.members[src] = map[string]bool{}
		for _, t := range tables {
			lk.members[src][t] = true
		}
	}
	for _, jn := range j.Joined {
		if lk.joined == nil {
			lk.joined = map[ShardRef]shardJoin{}
		}
		lk.joined[ShardRef{jn.Source, jn.Table}] = shardJoin{pos: jn.Pos, base: jn.Base}
	}
	return lk, nil
}

var (
	_ ShardLockStore = (*MemoryCheckpointStore)(nil)
	_ ShardLockStore = (*EtcdCheckpointStore)(nil)
)

// LoadShardLocks implements ShardLockStore.
func (m *MemoryCheckpointStore) LoadShardLocks(_ context.Context, task string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.locks {
		if k[0] == task {
			out[k[1]] = append([]byte(nil), v...)
		}
	}
	return out, nil
}

// SaveShardLock implements ShardLockStore.
func (m *MemoryCheckpointStore) SaveShardLock(_ context.Context, task, target string, state []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if state == nil {
		delete(m.locks, [2]string{task, target})
		return nil
	}
	if m.locks == nil {
		m.locks = map[[2]string][]byte{}
	}
	m.locks[[2]string{task, target}] = append([]byte(nil), state...)
	return nil
}

func (s *EtcdCheckpointStore) shardLockDir(task string) string {
	return path.Join(s.prefix, "shardlock", task) + "/"
}

// LoadShardLocks implements ShardLockStore: the values under
// <prefix>shardlock/<task>/<target>.
func (s *EtcdCheckpointStore) LoadShardLocks(ctx context.Context, task string) (map[string][]byte, error) {
	dir := s.shardLockDir(task)
	resp, err := s.cli.Get(ctx, dir, clientv3.WithPrefix())
	if err != nil {
		return nil, Retryable(fmt.Errorf("dmworker: load shard locks of task %s from etcd: %w", task, err))
	}
	out := map[string][]byte{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), dir)] = kv.Value
	}
	return out, nil
}

// SaveShardLock implements ShardLockStore.
func (s *EtcdCheckpointStore) SaveShardLock(ctx context.Context, task, target string, state []byte) error {
	key := s.shardLockDir(task) + target
	var err error
	if state == nil {
		_, err = s.cli.Delete(ctx, key)
	} else {
		_, err = s.cli.Put(ctx, key, string(state))
	}
	if err != nil {
		return Retryable(fmt.Errorf("dmworker: save shard lock %s: %w", key, err))
	}
	return nil
}
