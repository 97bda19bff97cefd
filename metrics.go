package dmworker

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics. WithMetrics gives a type a prometheus.Registerer; the type
// registers one collector when Run starts and unregisters it when Run
// returns (after Close), so nothing is registered globally and nothing at
// all without the option. A SourceWorker collects for its relay, subtasks,
// syncers and snapshots itself; a standalone Relay, Syncer, SubTask,
// KeepAlive or Coordinator collects for itself. Every metric is named
// dmworker_..., and carries the labels task, source and worker (empty where
// they do not apply: a relay has no task, a standalone type no worker), so
// two workers in one process with one registerer never collide: their
// worker labels differ. A second collector with the same label values
// (two workers with one name) makes Run fail with the registerer's error.
//
// Most values are read from the types' Status at scrape time; the few
// counted where the work happens (bytes and events a relay writes, its
// fsyncs, row changes by kind, apply durations) are atomic additions, kept
// only when the option is given. The metrics, their types and meaning are
// listed in the README.

// MetricsOption is WithMetrics' option, taken by NewRelay, NewSyncer,
// NewSubTask, NewSourceWorker, NewKeepAlive and NewCoordinator.
type MetricsOption struct{ reg prometheus.Registerer }

// WithMetrics registers the type's Prometheus metrics with reg while Run
// runs. Default: none, nothing is counted or registered.
func WithMetrics(reg prometheus.Registerer) MetricsOption { return MetricsOption{reg} }

func (o MetricsOption) applyRelay(r *relayOptions)               { r.metrics.reg = o.reg }
func (o MetricsOption) applySyncer(s *syncerOptions)             { s.metrics.reg = o.reg }
func (o MetricsOption) applySubTask(s *subTaskOptions)           { s.metrics.reg = o.reg }
func (o MetricsOption) applySourceWorker(w *sourceWorkerOptions) { w.metrics.reg = o.reg }
func (o MetricsOption) applyKeepAlive(k *keepAliveOptions)       { k.metrics.reg = o.reg }
func (o MetricsOption) applyCoordinator(c *coordinatorOptions)   { c.metrics.reg = o.reg }

// metricsOptions say whether a type keeps metrics and who collects them.
type metricsOptions struct {
	// reg is WithMetrics' registerer: the type registers its own collector.
	reg prometheus.Registerer
	// owned: a parent (SubTask, SourceWorker) collects this part; it keeps
	// its instruments and registers nothing.
	owned bool
}

func (m metricsOptions) enabled() bool { return m.reg != nil || m.owned }

// child is what a parent that collects gives a part it owns.
func (m metricsOptions) child() metricsOptions { return metricsOptions{owned: m.enabled()} }

// register registers c with m's registerer unless a parent collects; the
// returned function unregisters it.
func (m metricsOptions) register(c prometheus.Collector) (func(), error) {
	if m.reg == nil || m.owned {
		return func() {}, nil
	}
	if err := m.reg.Register(c); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return func() { m.reg.Unregister(c) }, nil
}

// ownedMetrics is the option a SourceWorker gives the relay it collects for.
type ownedMetrics metricsOptions

func (o ownedMetrics) applyRelay(r *relayOptions) { r.metrics = metricsOptions(o) }

// A family is one metric name.
type family struct {
	name, help string
	typ        metricType
	extra      []string // labels beyond task, source and worker
}

type metricType int

const (
	gaugeType metricType = iota
	counterType
	histogramType
)

// The label names every metric has.
var metricLabelNames = []string{"task", "source", "worker"}

// The metric families. Their names, types and labels are stable.
var (
	famRelayBinlogFile = &family{name: "dmworker_relay_binlog_file", typ: gaugeType,
		help: "Index (numeric suffix) of the binlog file the relay has written durably up to. Replaces DM's dm_relay_binlog_file."}
	famRelayBinlogPos = &family{name: "dmworker_relay_binlog_pos", typ: gaugeType,
		help: "Offset in that file up to which the relay has written durably. Replaces DM's dm_relay_binlog_pos."}
	famRelayBytes = &family{name: "dmworker_relay_write_bytes_total", typ: counterType,
		help: "Binlog bytes the relay has written. Replaces DM's dm_relay_write_size (a histogram of event sizes)."}
	famRelayEvents = &family{name: "dmworker_relay_events_written_total", typ: counterType,
		help: "Binlog events the relay has written."}
	famRelayFsyncs = &family{name: "dmworker_relay_fsyncs_total", typ: counterType,
		help: "Fsyncs of relay files."}
	famRelayFsyncDur = &family{name: "dmworker_relay_fsync_duration_seconds", typ: histogramType,
		help: "Duration of each fsync of a relay file. DM's dm_relay_write_duration times each event's write instead."}
	famRelayReadErrors = &family{name: "dmworker_relay_read_errors_total", typ: counterType,
		help: "Errors reading the upstream's binlog or state that ended a relay session. Replaces DM's dm_relay_read_error_count."}
	famRelayPurged = &family{name: "dmworker_relay_purged_files_total", typ: counterType,
		help: "Relay files removed by purges (by hand or by the purge loop)."}
	famRelayUp = &family{name: "dmworker_relay_running", typ: gaugeType,
		help: "1 while the relay pulls, 0 when it is paused or stopped (after an error: see /status)."}

	famSyncerTxns = &family{name: "dmworker_syncer_transactions_total", typ: counterType,
		help: "Upstream transactions the syncer has read to their end. Replaces DM's dm_syncer_finished_transaction_total."}
	famSyncerRows = &family{name: "dmworker_syncer_row_changes_total", typ: counterType, extra: []string{"kind"},
		help: "Row changes applied to the sink, by kind (insert, update, delete). Replaces DM's dm_syncer_finished_jobs_total for DML types."}
	famSyncerDDLs = &family{name: "dmworker_syncer_ddls_total", typ: counterType,
		help: "DDL statements applied. Replaces DM's dm_syncer_finished_jobs_total{type=\"ddl\"}."}
	famSyncerEvents = &family{name: "dmworker_syncer_events_read_total", typ: counterType,
		help: "Binlog events the syncer has read."}
	famSyncerBatches = &family{name: "dmworker_syncer_batches_total", typ: counterType,
		help: "Batches applied to the sink (one sink transaction each)."}
	famSyncerApplyDur = &family{name: "dmworker_syncer_batch_apply_duration_seconds", typ: histogramType,
		help: "Duration of each batch's apply to the sink, retries included. Replaces DM's dm_syncer_txn_duration_time."}
	famSyncerConflicts = &family{name: "dmworker_syncer_conflict_waits_total", typ: counterType,
		help: "Changes that waited for another apply worker because their keys were held by two workers."}
	famSyncerQueue = &family{name: "dmworker_syncer_queue_bytes", typ: gaugeType,
		help: "Estimated memory of changes read and not yet applied. Replaces DM's dm_syncer_queue_size (which counts jobs)."}
	famSyncerCPFile = &family{name: "dmworker_syncer_checkpoint_binlog_file", typ: gaugeType,
		help: "Index (numeric suffix) of the binlog file of the syncer's last saved checkpoint. Replaces DM's dm_syncer_binlog_file{node=\"syncer\"}."}
	famSyncerCPPos = &family{name: "dmworker_syncer_checkpoint_binlog_pos", typ: gaugeType,
		help: "Offset of the syncer's last saved checkpoint. Replaces DM's dm_syncer_binlog_pos{node=\"syncer\"}."}
	famSyncerCPAge = &family{name: "dmworker_syncer_checkpoint_age_seconds", typ: gaugeType,
		help: "Seconds since the syncer last moved its checkpoint (0 before the first). Replaces DM's dm_syncer_flush_checkpoints_time_interval."}
	famSyncerLag = &family{name: "dmworker_syncer_lag_seconds", typ: gaugeType,
		help: "Replication lag: seconds the downstream is behind the upstream (SyncerStatus.LagSeconds). Replaces DM's dm_syncer_replication_lag_gauge."}

	famSnapRows = &family{name: "dmworker_snapshot_rows", typ: gaugeType,
		help: "Rows the snapshot has copied. DM shows the dump and load progress in query-status, with no metric."}
	famSnapEstRows = &family{name: "dmworker_snapshot_estimated_rows", typ: gaugeType,
		help: "Rows the snapshot estimates it copies (information_schema.TABLES)."}
	famSnapBytes = &family{name: "dmworker_snapshot_bytes", typ: gaugeType,
		help: "Bytes of values the snapshot has copied."}
	famSnapEstBytes = &family{name: "dmworker_snapshot_estimated_bytes", typ: gaugeType,
		help: "The upstream's estimate of the copied tables' on-disk data size."}
	famSnapChunks = &family{name: "dmworker_snapshot_chunks", typ: gaugeType,
		help: "Chunks (key ranges) the snapshot's plan has."}
	famSnapChunksDone = &family{name: "dmworker_snapshot_chunks_done", typ: gaugeType,
		help: "Chunks the snapshot has copied."}

	famSubTaskState = &family{name: "dmworker_subtask_state", typ: gaugeType,
		help: "Stage of the subtask: 1 New, 2 Running, 3 Paused, 4 Stopped, 5 Finished (DM's numbers). Replaces DM's dm_worker_task_state."}

	famWorkerEpoch = &family{name: "dmworker_worker_binding_epoch", typ: gaugeType,
		help: "Epoch of the binding of the worker's source (etcd mode; 0 otherwise)."}
	famWorkerAlive = &family{name: "dmworker_worker_alive", typ: gaugeType,
		help: "1 while the worker's Liveness (its KeepAlive) says it holds its lease."}
	famKeepAliveLease = &family{name: "dmworker_keepalive_lease_held", typ: gaugeType,
		help: "1 while the KeepAlive's registration is confirmed (it holds its lease)."}
	famKeepAliveRev = &family{name: "dmworker_keepalive_registration_revision", typ: gaugeType,
		help: "Create revision of the worker's key for the current registration (bindings older than it are stale)."}
	famCoordLeader = &family{name: "dmworker_coordinator_leader", typ: gaugeType,
		help: "1 while this coordinator leads (holds the election lease)."}
	famCoordBindings = &family{name: "dmworker_coordinator_bindings", typ: gaugeType,
		help: "Sources bound to a worker, read while leading."}
	famCoordEpoch = &family{name: "dmworker_coordinator_max_epoch", typ: gaugeType,
		help: "Highest binding epoch, read while leading."}
)

var (
	relayFamilies    = []*family{famRelayBinlogFile, famRelayBinlogPos, famRelayBytes, famRelayEvents, famRelayFsyncs, famRelayFsyncDur, famRelayReadErrors, famRelayPurged, famRelayUp}
	syncerFamilies   = []*family{famSyncerTxns, famSyncerRows, famSyncerDDLs, famSyncerEvents, famSyncerBatches, famSyncerApplyDur, famSyncerConflicts, famSyncerQueue, famSyncerCPFile, famSyncerCPPos, famSyncerCPAge, famSyncerLag}
	snapshotFamilies = []*family{famSnapRows, famSnapEstRows, famSnapBytes, famSnapEstBytes, famSnapChunks, famSnapChunksDone}
	subTaskFamilies  = append(append([]*family{famSubTaskState}, syncerFamilies...), snapshotFamilies...)
	workerFamilies   = append(append([]*family{famWorkerEpoch, famWorkerAlive}, relayFamilies...), subTaskFamilies...)
	leaseFamilies    = []*family{famKeepAliveLease, famKeepAliveRev}
	coordFamilies    = []*family{famCoordLeader, famCoordBindings, famCoordEpoch}
)

// collector is a type's prometheus.Collector: fixed values for some of the
// labels task, source and worker (they make its descriptors its own), the
// others given when collecting.
type collector struct {
	descs   map[*family]*prometheus.Desc
	collect func(e emitter)
}

// newCollector returns a collector of fams with the labels in fixed set
// to their values, the other of task, source and worker variable.
func newCollector(fixed prometheus.Labels, fams []*family, collect func(e emitter)) *collector {
	var vars []string
	for _, l := range metricLabelNames {
		if _, ok := fixed[l]; !ok {
			vars = append(vars, l)
		}
	}
	c := &collector{descs: make(map[*family]*prometheus.Desc, len(fams)), collect: collect}
	for _, f := range fams {
		c.descs[f] = prometheus.NewDesc(f.name, f.help, append(append([]string(nil), vars...), f.extra...), fixed)
	}
	return c
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends the current values.
func (c *collector) Collect(ch chan<- prometheus.Metric) { c.collect(emitter{c: c, ch: ch}) }

// emitter sends metrics with the values of the variable labels.
type emitter struct {
	c    *collector
	ch   chan<- prometheus.Metric
	vals []string
}

// with returns e with the variable labels' values (in the order task,
// source, worker, those fixed left out).
func (e emitter) with(vals ...string) emitter { e.vals = vals; return e }

func (e emitter) labels(extra []string) []string {
	if len(extra) == 0 {
		return e.vals
	}
	return append(append([]string(nil), e.vals...), extra...)
}

func (e emitter) value(f *family, v float64, extra ...string) {
	t := prometheus.GaugeValue
	if f.typ == counterType {
		t = prometheus.CounterValue
	}
	m, err := prometheus.NewConstMetric(e.c.descs[f], t, v, e.labels(extra)...)
	if err == nil {
		e.ch <- m
	}
}

func (e emitter) hist(f *family, h *histogram) {
	count, sum, buckets := h.read()
	m, err := prometheus.NewConstHistogram(e.c.descs[f], count, sum, buckets, e.labels(nil)...)
	if err == nil {
		e.ch <- m
	}
}

// histogram is a cheap fixed-bucket histogram of seconds: an observation
// is a few atomic additions, no lock, no allocation.
type histogram struct {
	counts [len(durationBuckets) + 1]atomic.Uint64 // the last: above every bound
	sum    atomic.Uint64                           // nanoseconds
}

// durationBuckets are the upper bounds, in seconds, of every duration
// histogram: 0.5ms to about 16s, doubling.
var durationBuckets = func() [16]float64 {
	var b [16]float64
	for i := range b {
		b[i] = 0.0005 * math.Pow(2, float64(i))
	}
	return b
}()

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(durationBuckets) && s > durationBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(uint64(max(d, 0)))
}

func (h *histogram) read() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(durationBuckets))
	for i, b := range durationBuckets {
		count += h.counts[i].Load()
		buckets[b] = count
	}
	count += h.counts[len(durationBuckets)].Load()
	return count, time.Duration(h.sum.Load()).Seconds(), buckets
}

// binlogIndex is the numeric suffix of a binlog file name (mysql-bin.000042
// is 42), 0 when it has none.
func binlogIndex(name string) float64 {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseUint(name[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return float64(n)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// relayInstruments are what a relay counts where it works.
type relayInstruments struct {
	bytes, events, fsyncs, readErrors, purged atomic.Uint64
	fsyncDur                                  histogram
}

// syncerInstruments are what a syncer counts where it works. A SubTask
// keeps one for every syncer it builds, so that counts survive an Update.
type syncerInstruments struct {
	kinds    [Delete + 1]atomic.Uint64 // row changes applied, by ChangeKind
	txns     atomic.Uint64
	applyDur histogram
	cpMoved  atomic.Int64 // unix nanoseconds of the last checkpoint move
}

// kindCounts counts changes by kind.
func kindCounts(changes []Change) (n [Delete + 1]uint64) {
	for i := range changes {
		if k := changes[i].Kind; k <= Delete {
			n[k]++
		}
	}
	return n
}

// addKinds adds counts by kind to the applied row changes.
func (in *syncerInstruments) addKinds(n [Delete + 1]uint64) {
	for k := Insert; k <= Delete; k++ {
		if n[k] > 0 {
			in.kinds[k].Add(n[k])
		}
	}
}

// emitRelay sends a relay's metrics.
func emitRelay(e emitter, r *Relay) {
	r.mu.Lock()
	relayed, stage := r.relayed, r.stage
	r.mu.Unlock()
	e.value(famRelayBinlogFile, binlogIndex(relayed.Name))
	e.value(famRelayBinlogPos, float64(relayed.Offset))
	e.value(famRelayUp, boolValue(stage == RelayRunning))
	in := r.inst
	if in == nil {
		return
	}
	e.value(famRelayBytes, float64(in.bytes.Load()))
	e.value(famRelayEvents, float64(in.events.Load()))
	e.value(famRelayFsyncs, float64(in.fsyncs.Load()))
	e.hist(famRelayFsyncDur, &in.fsyncDur)
	e.value(famRelayReadErrors, float64(in.readErrors.Load()))
	e.value(famRelayPurged, float64(in.purged.Load()))
}

// emitSyncer sends a syncer's metrics from st and in.
func emitSyncer(e emitter, st SyncerStatus, in *syncerInstruments) {
	e.value(famSyncerDDLs, float64(st.DDLs))
	e.value(famSyncerEvents, float64(st.Events))
	e.value(famSyncerBatches, float64(st.Batches))
	e.value(famSyncerConflicts, float64(st.Conflicts))
	e.value(famSyncerQueue, float64(st.QueueBytes))
	e.value(famSyncerCPFile, binlogIndex(st.Checkpoint.Name))
	e.value(famSyncerCPPos, float64(st.Checkpoint.Offset))
	e.value(famSyncerLag, st.LagSeconds)
	if in == nil {
		return
	}
	for k := Insert; k <= Delete; k++ {
		e.value(famSyncerRows, float64(in.kinds[k].Load()), k.String())
	}
	e.value(famSyncerTxns, float64(in.txns.Load()))
	e.hist(famSyncerApplyDur, &in.applyDur)
	age := 0.0
	if t := in.cpMoved.Load(); t != 0 {
		age = time.Since(time.Unix(0, t)).Seconds()
	}
	e.value(famSyncerCPAge, age)
}

// emitSnapshot sends a snapshot's metrics.
func emitSnapshot(e emitter, st SnapshotStatus) {
	e.value(famSnapRows, float64(st.Rows))
	e.value(famSnapEstRows, float64(st.EstRows))
	e.value(famSnapBytes, float64(st.Bytes))
	e.value(famSnapEstBytes, float64(st.EstBytes))
	var chunks, done int
	for _, t := range st.Tables {
		chunks += t.Chunks
		done += t.ChunksDone
	}
	e.value(famSnapChunks, float64(chunks))
	e.value(famSnapChunksDone, float64(done))
}

// subTaskStateValue is DM's number for a stage (dm_worker_task_state).
func subTaskStateValue(s SubTaskStage) float64 {
	switch s {
	case SubTaskNew:
		return 1
	case SubTaskRunning:
		return 2
	case SubTaskPaused:
		return 3
	case SubTaskStopped:
		return 4
	case SubTaskFinished:
		return 5
	}
	return 0
}

// emitSubTask sends a subtask's metrics: its state, its syncer's and, in
// modes full and all, its snapshot's.
func emitSubTask(e emitter, t *SubTask) {
	st := t.Status()
	e.value(famSubTaskState, subTaskStateValue(st.Stage))
	emitSyncer(e, st.Syncer, t.inst)
	if st.Mode != ModeIncremental {
		emitSnapshot(e, st.Snapshot)
	}
}
