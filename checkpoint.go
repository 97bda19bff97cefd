package dmworker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/streamer"
)

// CheckpointStore keeps syncer checkpoints, one per task and source.
//
// Load returns false (and no error) when none is stored. Save replaces the
// stored checkpoint; it must be durable when it returns, and it must refuse
// with ErrStaleEpoch a checkpoint whose Epoch is lower than the stored one's.
// Both honour ctx. Implementations are safe for concurrent use.
type CheckpointStore interface {
	Load(ctx context.Context, task, source string) (Checkpoint, bool, error)
	Save(ctx context.Context, cp Checkpoint) error
}

// checkpointJSON is a checkpoint as stored outside a sink.
type checkpointJSON struct {
	Task      string            `json:"task"`
	Source    string            `json:"source"`
	Pos       streamer.Position `json:"pos"`
	SafeUntil streamer.Position `json:"safe-until"`
	Schema    json.RawMessage   `json:"schema,omitempty"`
	Epoch     int64             `json:"epoch,omitempty"`
	// Snapshot is base64 in JSON ([]byte); absent when nil.
	Snapshot []byte `json:"snapshot,omitempty"`
	Server   string `json:"server,omitempty"`
}

func marshalCheckpoint(cp Checkpoint) ([]byte, error) {
	j := checkpointJSON{Task: cp.Task, Source: cp.Source, Pos: cp.Pos, SafeUntil: cp.SafeUntil, Epoch: cp.Epoch, Snapshot: cp.Snapshot, Server: cp.Server}
	if len(cp.Schema) > 0 {
		j.Schema = cp.Schema
	}
	return json.Marshal(j)
}

func unmarshalCheckpoint(b []byte) (Checkpoint, error) {
	var j checkpointJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Task: j.Task, Source: j.Source, Pos: j.Pos, SafeUntil: j.SafeUntil, Schema: []byte(j.Schema), Epoch: j.Epoch,
		Snapshot: j.Snapshot, Server: j.Server}, nil
}

// MemoryCheckpointStore is an in-process CheckpointStore, for tests and for
// hosts that keep checkpoints elsewhere. The zero value is ready to use.
type MemoryCheckpointStore struct {
	mu    sync.Mutex
	cps   map[[2]string]Checkpoint
	locks map[[2]string][]byte // shard locks by task and target
}

// Load implements CheckpointStore.
func (m *MemoryCheckpointStore) Load(_ context.Context, task, source string) (Checkpoint, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.cps[[2]string{task, source}]
	if ok {
		cp.Pos, cp.SafeUntil = cp.Pos.Clone(), cp.SafeUntil.Clone()
		cp.Snapshot, cp.Schema = bytes.Clone(cp.Snapshot), bytes.Clone(cp.Schema)
	}
	return cp, ok, nil
}

// Save implements CheckpointStore.
func (m *MemoryCheckpointStore) Save(_ context.Context, cp Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cps == nil {
		m.cps = map[[2]string]Checkpoint{}
	}
	k := [2]string{cp.Task, cp.Source}
	if old, ok := m.cps[k]; ok && cp.Epoch < old.Epoch {
		return fmt.Errorf("%w: task %s source %s: epoch %d < stored %d", ErrStaleEpoch, cp.Task, cp.Source, cp.Epoch, old.Epoch)
	}
	if cp.Schema == nil {
		cp.Schema = m.cps[k].Schema
	} else {
		cp.Schema = bytes.Clone(cp.Schema)
	}
	cp.Pos, cp.SafeUntil = cp.Pos.Clone(), cp.SafeUntil.Clone()
	cp.Snapshot = bytes.Clone(cp.Snapshot) // stored as given: nil clears it
	m.cps[k] = cp
	return nil
}

// MoveCheckpoint implements CheckpointMover.
func (m *MemoryCheckpointStore) MoveCheckpoint(_ context.Context, task, from, to string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp, ok := m.cps[[2]string{task, from}]
	if _, taken := m.cps[[2]string{task, to}]; !ok || taken {
		return false, nil
	}
	delete(m.cps, [2]string{task, from})
	cp.Source = to
	m.cps[[2]string{task, to}] = cp
	return true, nil
}

// EtcdCheckpointStore keeps checkpoints in etcd under
// <prefix>checkpoint/<task>/<source>, as JSON. It uses the host's client and
// never closes it.
type EtcdCheckpointStore struct {
	cli    *clientv3.Client
	prefix string
}

// NewEtcdCheckpointStore returns a store under prefix (default "/dmworker/"
// when empty).
func NewEtcdCheckpointStore(cli *clientv3.Client, prefix string) (*EtcdCheckpointStore, error) {
	if cli == nil {
		return nil, errors.New("dmworker: etcd checkpoint store needs a client")
	}
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	return &EtcdCheckpointStore{cli: cli, prefix: prefix}, nil
}

// DefaultEtcdPrefix is where dmworker keeps its keys in etcd unless told
// otherwise.
const DefaultEtcdPrefix = "/dmworker/"

func (s *EtcdCheckpointStore) key(task, source string) string {
	return path.Join(s.prefix, "checkpoint", task, source)
}

// Load implements CheckpointStore.
func (s *EtcdCheckpointStore) Load(ctx context.Context, task, source string) (Checkpoint, bool, error) {
	resp, err := s.cli.Get(ctx, s.key(task, source))
	if err != nil {
		return Checkpoint{}, false, Retryable(fmt.Errorf("dmworker: load checkpoint of task %s source %s from etcd: %w", task, source, err))
	}
	if len(resp.Kvs) == 0 {
		return Checkpoint{}, false, nil
	}
	cp, err := unmarshalCheckpoint(resp.Kvs[0].Value)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("dmworker: checkpoint of task %s source %s in etcd: %w", task, source, err)
	}
	return cp, true, nil
}

// Save implements CheckpointStore. The write is conditional on the stored
// checkpoint being the one read (compare-and-swap on its revision), so that
// the epoch check and the write are one atomic step.
func (s *EtcdCheckpointStore) Save(ctx context.Context, cp Checkpoint) error {
	key := s.key(cp.Task, cp.Source)
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return Retryable(fmt.Errorf("dmworker: save checkpoint %s: %w", key, err))
		}
		var cmp clientv3.Cmp
		if len(resp.Kvs) == 0 {
			cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		} else {
			old, err := unmarshalCheckpoint(resp.Kvs[0].Value)
			if err == nil && cp.Epoch < old.Epoch {
				return fmt.Errorf("%w: checkpoint %s: epoch %d < stored %d", ErrStaleEpoch, key, cp.Epoch, old.Epoch)
			}
			if cp.Schema == nil && err == nil {
				cp.Schema = old.Schema
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		}
		b, err := marshalCheckpoint(cp)
		if err != nil {
			return err
		}
		tr, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return Retryable(fmt.Errorf("dmworker: save checkpoint %s: %w", key, err))
		}
		if tr.Succeeded {
			return nil
		}
		// Someone else wrote in between: read again and re-check.
	}
}

// MoveCheckpoint implements CheckpointMover: one transaction puts the
// checkpoint under the new key and deletes the old one, on condition that
// the old one is unchanged and the new one absent.
func (s *EtcdCheckpointStore) MoveCheckpoint(ctx context.Context, task, from, to string) (bool, error) {
	fromKey, toKey := s.key(task, from), s.key(task, to)
	resp, err := s.cli.Get(ctx, fromKey)
	if err != nil {
		return false, Retryable(fmt.Errorf("dmworker: move checkpoint %s: %w", fromKey, err))
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	cp, err := unmarshalCheckpoint(resp.Kvs[0].Value)
	if err != nil {
		return false, fmt.Errorf("dmworker: checkpoint %s in etcd: %w", fromKey, err)
	}
	cp.Source = to
	b, err := marshalCheckpoint(cp)
	if err != nil {
		return false, err
	}
	tr, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(fromKey), "=", resp.Kvs[0].ModRevision), clientv3.Compare(clientv3.CreateRevision(toKey), "=", 0)).
		Then(clientv3.OpPut(toKey, string(b)), clientv3.OpDelete(fromKey)).Commit()
	if err != nil {
		return false, Retryable(fmt.Errorf("dmworker: move checkpoint %s to %s: %w", fromKey, toKey, err))
	}
	return tr.Succeeded, nil
}
