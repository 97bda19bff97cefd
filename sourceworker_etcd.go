package dmworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/streamer"
)

// etcdTimeout bounds each etcd call the worker makes.
const etcdTimeout = 10 * time.Second

// SubTaskReport is the JSON value a SourceWorker writes under
// status/<worker>/subtask/<task>.
type SubTaskReport struct {
	Worker string       `json:"worker"`
	Name   string       `json:"name"`
	Source string       `json:"source"`
	Mode   Mode         `json:"mode,omitempty"`
	Stage  SubTaskStage `json:"stage"`
	Unit   string       `json:"unit,omitempty"`
	// Epoch is the binding epoch the subtask writes under.
	Epoch int64 `json:"epoch,omitempty"`
	// Checkpoint and Read are the syncer's saved and read positions.
	Checkpoint streamer.Position `json:"checkpoint,omitzero"`
	Read       streamer.Position `json:"read,omitzero"`
	Rows       int64             `json:"rows,omitempty"`
	DDLs       int64             `json:"ddls,omitempty"`
	LagSeconds float64           `json:"lag-seconds,omitempty"`
	Retries    int               `json:"retries,omitempty"`
	// Error is the last error's text; StaleEpoch says it is a fencing
	// refusal (ErrStaleEpoch): a newer binding writes the task now.
	Error      string `json:"error,omitempty"`
	StaleEpoch bool   `json:"stale-epoch,omitempty"`
}

// RelayReport is the JSON value a SourceWorker writes under
// status/<worker>/relay.
type RelayReport struct {
	Worker      string     `json:"worker"`
	Source      string     `json:"source"`
	Stage       RelayStage `json:"stage"`
	Dir         string     `json:"dir"`
	Relayed     string     `json:"relayed,omitempty"` // "<subdir>/<file>:<offset>"
	RelayedGTID string     `json:"relayed-gtid,omitempty"`
	Error       string     `json:"error,omitempty"`
}

func (w *SourceWorker) subTaskReport(st SubTaskStatus) SubTaskReport {
	r := SubTaskReport{Worker: w.name, Name: st.Name, Source: st.Source, Mode: st.Mode, Stage: st.Stage, Unit: st.Unit,
		Epoch: st.Epoch, Checkpoint: st.Syncer.Checkpoint, Read: st.Syncer.Read, Rows: st.Syncer.Rows, DDLs: st.Syncer.DDLs,
		LagSeconds: st.Syncer.LagSeconds, Retries: st.Retries}
	if st.LastError != nil {
		r.Error = st.LastError.Error()
		r.StaleEpoch = errors.Is(st.LastError, ErrStaleEpoch)
	}
	return r
}

// runEtcd is Run in etcd mode: read the state, apply it, watch for changes,
// and read it all again after any watch failure or compaction.
func (w *SourceWorker) runEtcd(ctx context.Context) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 100*time.Millisecond, 5*time.Second, 0
	bo.Reset()
	for ctx.Err() == nil {
		alive, changed := w.opts.liveness.Alive()
		if !alive {
			w.setAlive(false)
			w.reconcile()
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		w.setAlive(true)
		rev, err := w.load(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// What runs keeps running on the last state read.
			wait := bo.NextBackOff()
			w.log.Warn("reading the worker's state from etcd failed", slog.Duration("retry-in", wait), errAttr(err))
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-changed:
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		bo.Reset()
		w.reconcile()
		w.report(ctx, false)
		w.watch(ctx, rev, changed)
	}
}

// load reads the worker's whole state at one revision and makes it the
// desired state; it returns the revision.
func (w *SourceWorker) load(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	cli := w.opts.etcd
	resp, err := cli.Get(ctx, w.keys.bound(w.name))
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", w.keys.bound(w.name), err)
	}
	rev := resp.Header.Revision
	st := workerState{tasks: map[string]desiredTask{}}
	defer func() {
		w.mu.Lock()
		w.desired = st
		w.mu.Unlock()
	}()
	if len(resp.Kvs) == 0 {
		return rev, nil
	}
	var b SourceBinding
	if err := json.Unmarshal(resp.Kvs[0].Value, &b); err != nil || !validName(b.Source) {
		st.err = fmt.Errorf("dmworker: worker %s: binding %s at revision %d: not a SourceBinding with a valid source name (%v)",
			w.name, w.keys.bound(w.name), resp.Kvs[0].ModRevision, err)
		return rev, nil
	}
	if reg := w.registration(); resp.Kvs[0].ModRevision < reg {
		// Made for an earlier registration of this worker: a coordinator
		// deletes it and binds anew; until then, serve nothing.
		w.log.Info("ignoring a binding made before this registration", slog.String("source", b.Source),
			slog.Int64("epoch", resp.Kvs[0].ModRevision), slog.Int64("registered", reg))
		return rev, nil
	}
	st.bound, st.epoch = b.Source, resp.Kvs[0].ModRevision

	at := clientv3.WithRev(rev)
	sresp, err := cli.Get(ctx, w.keys.source(b.Source), at)
	if err != nil {
		return 0, fmt.Errorf("get %s at revision %d: %w", w.keys.source(b.Source), rev, err)
	}
	if len(sresp.Kvs) == 0 {
		st.err = fmt.Errorf("dmworker: worker %s: bound to source %s, which has no config at %s", w.name, b.Source, w.keys.source(b.Source))
		return rev, nil
	}
	var src SourceConfig
	if err := json.Unmarshal(sresp.Kvs[0].Value, &src); err != nil {
		st.err = fmt.Errorf("dmworker: worker %s: source config %s: %w", w.name, w.keys.source(b.Source), err)
		return rev, nil
	}
	if src.Name == "" {
		src.Name = b.Source
	}
	if src.Name != b.Source {
		st.err = fmt.Errorf("dmworker: worker %s: source config %s names source %q", w.name, w.keys.source(b.Source), src.Name)
		return rev, nil
	}
	if err := w.opts.openCredentials(ctx, &src); err != nil {
		st.err = fmt.Errorf("dmworker: worker %s: source config %s: %w", w.name, w.keys.source(b.Source), err)
		w.log.Error("source not served", slog.String("source", b.Source), errAttr(st.err))
		return rev, nil
	}
	if err := src.adjust(w.opts.relayBaseDir); err != nil {
		st.err = fmt.Errorf("dmworker: worker %s: source config %s: %w", w.name, w.keys.source(b.Source), err)
		return rev, nil
	}
	st.source = &src

	tresp, err := cli.Get(ctx, w.keys.subtasks(b.Source), clientv3.WithPrefix(), at)
	if err != nil {
		return 0, fmt.Errorf("get %s at revision %d: %w", w.keys.subtasks(b.Source), rev, err)
	}
	for _, kv := range tresp.Kvs {
		key := string(kv.Key)
		name := strings.TrimPrefix(key, w.keys.subtasks(b.Source))
		if !validName(name) {
			continue
		}
		var cfg SubTaskConfig
		err := json.Unmarshal(kv.Value, &cfg)
		if err == nil && cfg.Name == "" {
			cfg.Name = name
		}
		if err == nil && cfg.Name != name {
			err = fmt.Errorf("the config names task %q", cfg.Name)
		}
		if err == nil {
			err = cfg.adjust(src.Upstream)
		}
		dt := desiredTask{cfg: cfg, stage: SubTaskRunning}
		if err != nil {
			dt.cfg = SubTaskConfig{Name: name, Source: src.Name}
			dt.err = fmt.Errorf("dmworker: worker %s: subtask config %s: %w", w.name, key, err)
		}
		st.tasks[name] = dt
	}
	gresp, err := cli.Get(ctx, w.keys.subtaskStages(b.Source), clientv3.WithPrefix(), at)
	if err != nil {
		return 0, fmt.Errorf("get %s at revision %d: %w", w.keys.subtaskStages(b.Source), rev, err)
	}
	for _, kv := range gresp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), w.keys.subtaskStages(b.Source))
		dt, ok := st.tasks[name]
		if !ok {
			continue // a stage with no config: nothing to run
		}
		switch stage := SubTaskStage(strings.TrimSpace(string(kv.Value))); stage {
		case SubTaskRunning, SubTaskPaused, SubTaskStopped:
			dt.stage, dt.rev = stage, kv.ModRevision
		default:
			w.log.Warn("ignoring an unknown subtask stage", slog.String("key", string(kv.Key)), slog.String("stage", string(stage)))
		}
		st.tasks[name] = dt
	}
	rresp, err := cli.Get(ctx, w.keys.relayStage(b.Source), at)
	if err != nil {
		return 0, fmt.Errorf("get %s at revision %d: %w", w.keys.relayStage(b.Source), rev, err)
	}
	if len(rresp.Kvs) > 0 {
		st.relayPaused = RelayStage(strings.TrimSpace(string(rresp.Kvs[0].Value))) == RelayPaused
		st.relayRev = rresp.Kvs[0].ModRevision
	}
	return rev, nil
}

// registration is the create revision of the worker's registration when its
// Liveness tells it (a *KeepAlive does, through Status), else 0.
func (w *SourceWorker) registration() int64 {
	if r, ok := w.opts.liveness.(interface{ Status() KeepAliveStatus }); ok {
		return r.Status().Revision
	}
	return 0
}

// watch follows the keys of the worker's state from rev+1 and returns at
// the first change (the caller reads the state again), at a watch failure
// or compaction, when liveness changes, or when ctx ends. Meanwhile it
// reports status.
func (w *SourceWorker) watch(ctx context.Context, rev int64, livenessChanged <-chan struct{}) {
	w.mu.Lock()
	bound := w.desired.bound
	w.mu.Unlock()
	type watched struct {
		key    string
		prefix bool
	}
	keys := []watched{{w.keys.bound(w.name), false}}
	if bound != "" {
		keys = append(keys, watched{w.keys.source(bound), false}, watched{w.keys.subtasks(bound), true},
			watched{w.keys.subtaskStages(bound), true}, watched{w.keys.relayStage(bound), false})
	}
	if w.testHookBeforeWatch != nil {
		w.testHookBeforeWatch(rev)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	notes := make(chan error, 1)
	for _, k := range keys {
		opts := []clientv3.OpOption{clientv3.WithRev(rev + 1)}
		if k.prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		ch := w.opts.etcd.Watch(wctx, k.key, opts...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for resp := range ch {
				var note error
				switch {
				case resp.CompactRevision != 0:
					note = fmt.Errorf("watch %s: compacted at revision %d", k.key, resp.CompactRevision)
				case resp.Err() != nil:
					note = fmt.Errorf("watch %s: %w", k.key, resp.Err())
				case len(resp.Events) == 0:
					continue // progress notification
				}
				select {
				case notes <- note:
				case <-wctx.Done():
					return
				}
			}
			// The channel closes when wctx ends, or when the client
			// gives up: read the state again either way.
			select {
			case notes <- fmt.Errorf("watch %s: channel closed", k.key):
			case <-wctx.Done():
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastFull := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-livenessChanged:
			return
		case err := <-notes:
			if err != nil {
				w.log.Warn("watch failed; reading the state again", errAttr(err))
			}
			return
		case <-w.kick:
			w.reconcile()
			w.report(ctx, false)
		case now := <-tick.C:
			full := now.Sub(lastFull) >= w.opts.statusInterval
			if full {
				lastFull = now
			}
			w.report(ctx, full)
		}
	}
}

// report writes the status keys: all of them when full, else those whose
// stage or error changed; keys of subtasks gone are deleted. Best effort,
// given up when ctx ends.
func (w *SourceWorker) report(ctx context.Context, full bool) {
	w.applyMu.Lock()
	values := w.reportValues()
	w.applyMu.Unlock()
	w.writeReports(ctx, values, full)
}

// reportValues builds the status values by key; applyMu is held.
func (w *SourceWorker) reportValues() map[string]reportValue {
	out := map[string]reportValue{}
	for _, st := range w.taskStatuses() {
		r := w.subTaskReport(st)
		out[w.keys.subtaskStatus(w.name, st.Name)] = reportValue{json: mustJSON(r), sig: string(r.Stage) + "|" + r.Error}
	}
	if rr := w.relay; rr != nil {
		// A cancelled context: the report needs no round trip to the
		// upstream.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rs := rr.r.Status(ctx)
		r := RelayReport{Worker: w.name, Source: w.applied.Name, Stage: rs.Stage, Dir: rs.Dir, RelayedGTID: rs.RelayedGTID}
		if !rs.Relayed.IsZero() {
			r.Relayed = rs.Relayed.String()
		}
		if err := rs.LastError; err != nil {
			r.Error = err.Error()
		} else if err := rr.failure(); err != nil {
			r.Error = err.Error()
		}
		out[w.keys.relayStatus(w.name)] = reportValue{json: mustJSON(r), sig: string(r.Stage) + "|" + r.Error}
	}
	return out
}

type reportValue struct{ json, sig string }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf(`{"error":%q}`, err.Error())
	}
	return string(b)
}

// writeReports puts the values that changed (all when full) and deletes
// the keys no longer reported, in transactions of at most 64 operations,
// each within etcdTimeout and ctx.
func (w *SourceWorker) writeReports(ctx context.Context, values map[string]reportValue, full bool) {
	var ops []clientv3.Op
	next := map[string]string{}
	for k, v := range values {
		next[k] = v.sig
		if old, ok := w.reported[k]; full || !ok || old != v.sig {
			ops = append(ops, clientv3.OpPut(k, v.json))
		}
	}
	for k := range w.reported {
		if _, ok := values[k]; !ok {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	for len(ops) > 0 {
		n := min(len(ops), 64)
		if _, err := w.opts.etcd.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			w.log.Warn("writing status to etcd failed", errAttr(err))
			return // w.reported unchanged: written again next time
		}
		ops = ops[n:]
	}
	w.reported = next
}
