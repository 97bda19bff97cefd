package dmworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdHost writes the keys a host writes to drive SourceWorkers in etcd
// mode (see the key layout): which worker serves a source, the subtasks of
// a source and their stages, the relay's stage. Source configs are written
// by PutSourceConfig, which seals the password. Every method checks its
// names (non-empty, no "/") and values before writing, and writes with one
// etcd request; it is safe for concurrent use.
//
// A Coordinator binds sources itself: BindSource and UnbindSource are for a
// host that assigns sources without one (a single worker, tests, a
// placement of its own).
type EtcdHost struct {
	cli  *clientv3.Client
	keys etcdKeys
}

// NewEtcdHost returns a writer of the keys under prefix ("" for
// DefaultEtcdPrefix), the prefix the workers are given by WithEtcdPrefix.
func NewEtcdHost(cli *clientv3.Client, prefix string) (*EtcdHost, error) {
	if cli == nil {
		return nil, errors.New("dmworker: etcd host: an etcd client is required")
	}
	return &EtcdHost{cli: cli, keys: newEtcdKeys(prefix)}, nil
}

// Keys names the keys the host writes and the workers report under.
func (h *EtcdHost) Keys() EtcdKeys { return EtcdKeys{h.keys} }

// BindSource binds source to worker: it puts SourceBinding{source} under
// bound/<worker> and returns the binding's epoch (the key's new
// ModRevision). Putting it again, even with the same source, is a
// rebinding: the worker restarts its subtasks under the new epoch.
func (h *EtcdHost) BindSource(ctx context.Context, worker, source string) (epoch int64, err error) {
	if err := checkNames("bind source", "worker", worker, "source", source); err != nil {
		return 0, err
	}
	resp, err := h.put(ctx, "bind source", h.keys.bound(worker), SourceBinding{Source: source})
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// UnbindSource deletes worker's binding: the worker stops serving its
// source. Deleting a missing binding is not an error.
func (h *EtcdHost) UnbindSource(ctx context.Context, worker string) error {
	if err := checkNames("unbind source", "worker", worker); err != nil {
		return err
	}
	return h.del(ctx, "unbind source", h.keys.bound(worker))
}

// DeleteSourceConfig deletes a source's config: a Coordinator unbinds the
// source; a worker still bound to it reports an error (no config). Its
// subtasks and stages stay.
func (h *EtcdHost) DeleteSourceConfig(ctx context.Context, source string) error {
	if err := checkNames("delete source config", "source", source); err != nil {
		return err
	}
	return h.del(ctx, "delete source config", h.keys.source(source))
}

// PutSubTaskConfig puts cfg under subtask/<source>/<cfg.Name>: the worker
// serving source runs it (stage Running unless a stage key says otherwise)
// or, when it runs already, restarts it with the new config. Nothing is put
// when the key holds the same JSON already, so that every process of a
// cluster may publish the same config without making the serving worker
// read its state again. cfg.Source, if set, must be source.
func (h *EtcdHost) PutSubTaskConfig(ctx context.Context, source string, cfg SubTaskConfig) error {
	if err := checkNames("put subtask config", "source", source, "task", cfg.Name); err != nil {
		return err
	}
	if cfg.Source != "" && cfg.Source != source {
		return fmt.Errorf("dmworker: put subtask config %s: it names source %q, not %q", cfg.Name, cfg.Source, source)
	}
	key := h.keys.subtask(source, cfg.Name)
	val, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("dmworker: put subtask config: %s: %w", key, err)
	}
	if _, err := h.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", string(val))).
		Else(clientv3.OpPut(key, string(val))).Commit(); err != nil {
		return fmt.Errorf("dmworker: put subtask config: put %s: %w", key, err)
	}
	return nil
}

// DeleteSubTaskConfig deletes a subtask's config and its stage key in one
// transaction: the worker stops the subtask and deletes its status key. A
// config put later starts afresh (stage Running).
func (h *EtcdHost) DeleteSubTaskConfig(ctx context.Context, source, task string) error {
	if err := checkNames("delete subtask config", "source", source, "task", task); err != nil {
		return err
	}
	cfgKey, stageKey := h.keys.subtask(source, task), h.keys.subtaskStage(source, task)
	if _, err := h.cli.Txn(ctx).Then(clientv3.OpDelete(cfgKey), clientv3.OpDelete(stageKey)).Commit(); err != nil {
		return fmt.Errorf("dmworker: delete subtask config: delete %s and %s: %w", cfgKey, stageKey, err)
	}
	return nil
}

// PutSubTaskStage sets a subtask's expected stage: SubTaskRunning,
// SubTaskPaused or SubTaskStopped. Putting a stage again applies it again:
// Running resumes a subtask that an error paused.
func (h *EtcdHost) PutSubTaskStage(ctx context.Context, source, task string, stage SubTaskStage) error {
	if err := checkNames("put subtask stage", "source", source, "task", task); err != nil {
		return err
	}
	switch stage {
	case SubTaskRunning, SubTaskPaused, SubTaskStopped:
	default:
		return fmt.Errorf("dmworker: put subtask stage %s/%s: stage %q: want Running, Paused or Stopped", source, task, stage)
	}
	_, err := h.put(ctx, "put subtask stage", h.keys.subtaskStage(source, task), string(stage))
	return err
}

// PutRelayStage sets the expected stage of a source's relay: RelayRunning
// or RelayPaused. Putting RelayRunning again runs a relay that a fault
// stopped once more.
func (h *EtcdHost) PutRelayStage(ctx context.Context, source string, stage RelayStage) error {
	if err := checkNames("put relay stage", "source", source); err != nil {
		return err
	}
	switch stage {
	case RelayRunning, RelayPaused:
	default:
		return fmt.Errorf("dmworker: put relay stage %s: stage %q: want Running or Paused", source, stage)
	}
	_, err := h.put(ctx, "put relay stage", h.keys.relayStage(source), string(stage))
	return err
}

// DeleteRelayStage deletes a source's relay stage key: the relay runs when
// the source config turns it on.
func (h *EtcdHost) DeleteRelayStage(ctx context.Context, source string) error {
	if err := checkNames("delete relay stage", "source", source); err != nil {
		return err
	}
	return h.del(ctx, "delete relay stage", h.keys.relayStage(source))
}

// put writes v, a string as is, anything else as JSON.
func (h *EtcdHost) put(ctx context.Context, op, key string, v any) (*clientv3.PutResponse, error) {
	val, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("dmworker: %s: %s: %w", op, key, err)
		}
		val = string(b)
	}
	resp, err := h.cli.Put(ctx, key, val)
	if err != nil {
		return nil, fmt.Errorf("dmworker: %s: put %s: %w", op, key, err)
	}
	return resp, nil
}

func (h *EtcdHost) del(ctx context.Context, op, key string) error {
	if _, err := h.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("dmworker: %s: delete %s: %w", op, key, err)
	}
	return nil
}

// checkNames checks pairs of (what, name) as key segments.
func checkNames(op string, pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !validName(pairs[i+1]) {
			return fmt.Errorf("dmworker: %s: %s name %q: want a non-empty name without \"/\"", op, pairs[i], pairs[i+1])
		}
	}
	return nil
}
