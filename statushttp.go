package dmworker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dmworker/dmworker/streamer"
)

// StatusHandlerConfig is what StatusHandler serves.
type StatusHandlerConfig struct {
	// Gatherer is what /metrics serves (the registry given to
	// WithMetrics, or prometheus.DefaultGatherer). Default nil: /metrics
	// answers 404.
	Gatherer prometheus.Gatherer
	// MaxLag makes /healthz fail while a running subtask's syncer lags
	// more (SyncerStatus.LagSeconds). Default 0: no limit.
	MaxLag time.Duration
	// Timeout bounds each request's wait for the worker's status (the
	// relay asks the upstream how far behind it is). Default 2s.
	Timeout time.Duration
}

// StatusHandler returns an http.Handler, for the host to mount, that
// serves the worker's state:
//
//   - GET /status: the source, relay and subtask status as JSON
//     (StatusJSON: snake_case keys, errors as strings, stages as words);
//   - GET /healthz: 200 "ok", or 503 with one reason a line when the
//     worker is not alive (its lease is lost, or Run is not running), its
//     source cannot be served, the relay is broken, a subtask is paused on
//     an error, or a running syncer lags more than cfg.MaxLag;
//   - GET /metrics: cfg.Gatherer in Prometheus' text format (promhttp).
func StatusHandler(w *SourceWorker, cfg StatusHandlerConfig) http.Handler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	status := func(r *http.Request) SourceWorkerStatus {
		ctx, cancel := context.WithTimeout(r.Context(), cfg.Timeout)
		defer cancel()
		return w.Status(ctx)
	}
	mux.HandleFunc("GET /status", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(rw)
		enc.SetIndent("", "  ")
		_ = enc.Encode(NewStatusJSON(status(r)))
	})
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		reasons := Unhealthy(status(r), cfg.MaxLag)
		if len(reasons) == 0 {
			_, _ = fmt.Fprintln(rw, "ok")
			return
		}
		rw.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(rw, strings.Join(reasons, "\n"))
	})
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

// Unhealthy returns why a worker in status st is not healthy, one reason
// each, none when it is: the worker is not alive (lease lost, or Run not
// running), its source cannot be served, its relay is broken, a subtask
// is paused on an error, or (maxLag > 0) a running subtask's syncer lags
// more than maxLag. /healthz answers 503 with these.
func Unhealthy(st SourceWorkerStatus, maxLag time.Duration) []string {
	var out []string
	if !st.Alive {
		out = append(out, fmt.Sprintf("worker %s is not alive: its lease is lost or Run is not running", st.Name))
	}
	if st.Error != nil {
		out = append(out, fmt.Sprintf("source not served: %v", st.Error))
	}
	if st.Relay != nil && st.Relay.LastError != nil {
		out = append(out, fmt.Sprintf("relay broken: %v", st.Relay.LastError))
	}
	for _, t := range st.SubTasks {
		switch {
		case t.Stage == SubTaskPaused && t.LastError != nil:
			out = append(out, fmt.Sprintf("subtask %s paused on error: %v", t.Name, t.LastError))
		case maxLag > 0 && t.Stage == SubTaskRunning && t.Unit == "syncer" && t.Syncer.LagSeconds > maxLag.Seconds():
			out = append(out, fmt.Sprintf("subtask %s lags %.1fs, more than %s", t.Name, t.Syncer.LagSeconds, maxLag))
		}
	}
	return out
}

// StatusJSON is a SourceWorkerStatus as /status writes it: snake_case
// keys, errors as their text ("" when none), stages as words, positions
// as file, offset and GTID set.
type StatusJSON struct {
	Worker   string           `json:"worker"`
	Source   string           `json:"source"`
	Epoch    int64            `json:"epoch"`
	Alive    bool             `json:"alive"`
	Error    string           `json:"error"`
	Relay    *RelayStatusJSON `json:"relay"` // null when no relay runs
	SubTasks []SubTaskJSON    `json:"subtasks"`
}

// PositionJSON is a binlog position in StatusJSON.
type PositionJSON struct {
	Name    string `json:"name"`
	Offset  uint64 `json:"offset"`
	GTIDSet string `json:"gtid_set"`
}

// RelayStatusJSON is a RelayStatus in StatusJSON.
type RelayStatusJSON struct {
	Stage          string       `json:"stage"`
	Dir            string       `json:"dir"`
	RelayedSubDir  string       `json:"relayed_sub_dir"`
	RelayedName    string       `json:"relayed_name"`
	RelayedOffset  uint64       `json:"relayed_offset"`
	RelayedGTIDSet string       `json:"relayed_gtid_set"`
	Upstream       PositionJSON `json:"upstream"`
	BytesBehind    uint64       `json:"bytes_behind"`
	Error          string       `json:"error"`
}

// SubTaskJSON is a SubTaskStatus in StatusJSON.
type SubTaskJSON struct {
	Name     string             `json:"name"`
	Source   string             `json:"source"`
	Mode     string             `json:"mode"`
	Stage    string             `json:"stage"`
	Unit     string             `json:"unit"`
	Epoch    int64              `json:"epoch"`
	Retries  int                `json:"retries"`
	Error    string             `json:"error"`
	Syncer   SyncerStatusJSON   `json:"syncer"`
	Snapshot SnapshotStatusJSON `json:"snapshot"`
	// ShardLocks are the shard DDL locks the subtask's source takes part
	// in ([] when none).
	ShardLocks []ShardLockJSON `json:"shard_locks"`
}

// ShardLockJSON is a ShardLockStatus in StatusJSON.
type ShardLockJSON struct {
	Task      string `json:"task"`
	Mode      string `json:"mode"`
	Target    string `json:"target"`
	Statement string `json:"statement"`
	// Since is when the first shard reached the DDL.
	Since   time.Time          `json:"since"`
	Reached []ShardReachedJSON `json:"reached"`
	Waiting []string           `json:"waiting"`
	// WaitingTables are the shard tables not there yet, "source:schema.table".
	WaitingTables []string `json:"waiting_tables"`
}

// ShardReachedJSON is a shard that reached a held DDL, in ShardLockJSON.
type ShardReachedJSON struct {
	Source string    `json:"source"`
	Table  string    `json:"table"`
	At     time.Time `json:"at"`
}

// SyncerStatusJSON is a SyncerStatus in StatusJSON.
type SyncerStatusJSON struct {
	Stage           string       `json:"stage"`
	Checkpoint      PositionJSON `json:"checkpoint"`
	Read            PositionJSON `json:"read"`
	SafeUntil       PositionJSON `json:"safe_until"`
	Rows            int64        `json:"rows"`
	DDLs            int64        `json:"ddls"`
	Events          int64        `json:"events"`
	Batches         int64        `json:"batches"`
	RowsPerSecond   float64      `json:"rows_per_second"`
	EventsPerSecond float64      `json:"events_per_second"`
	LagSeconds      float64      `json:"lag_seconds"`
	LastProgress    *time.Time   `json:"last_progress"` // null before the first
	Workers         int          `json:"workers"`
	QueueBytes      int64        `json:"queue_bytes"`
	Conflicts       int64        `json:"conflicts"`
	Error           string       `json:"error"`
}

// SnapshotStatusJSON is a SnapshotStatus in StatusJSON.
type SnapshotStatusJSON struct {
	Stage          string       `json:"stage"`
	Pos            PositionJSON `json:"pos"`
	Done           bool         `json:"done"`
	Method         string       `json:"method"`
	BlockedSeconds float64      `json:"blocked_seconds"`
	Rows           int64        `json:"rows"`
	EstRows        int64        `json:"est_rows"`
	Bytes          int64        `json:"bytes"`
	EstBytes       int64        `json:"est_bytes"`
	Chunks         int          `json:"chunks"`
	ChunksDone     int          `json:"chunks_done"`
	Tables         int          `json:"tables"`
	TablesDone     int          `json:"tables_done"`
	Error          string       `json:"error"`
}

// NewStatusJSON converts a worker's status to what /status writes.
func NewStatusJSON(st SourceWorkerStatus) StatusJSON {
	out := StatusJSON{Worker: st.Name, Source: st.Source, Epoch: st.Epoch, Alive: st.Alive,
		Error: errText(st.Error), SubTasks: make([]SubTaskJSON, 0, len(st.SubTasks))}
	if r := st.Relay; r != nil {
		out.Relay = &RelayStatusJSON{Stage: string(r.Stage), Dir: r.Dir, RelayedSubDir: r.Relayed.SubDir,
			RelayedName: r.Relayed.Name, RelayedOffset: r.Relayed.Offset, RelayedGTIDSet: r.RelayedGTID,
			Upstream: positionJSON(r.Upstream), BytesBehind: r.BytesBehind, Error: errText(r.LastError)}
	}
	for _, t := range st.SubTasks {
		s, n := t.Syncer, t.Snapshot
		sj := SyncerStatusJSON{Stage: s.Stage.String(), Checkpoint: positionJSON(s.Checkpoint), Read: positionJSON(s.Read),
			SafeUntil: positionJSON(s.SafeUntil), Rows: s.Rows, DDLs: s.DDLs, Events: s.Events, Batches: s.Batches,
			RowsPerSecond: s.RowsPerSecond, EventsPerSecond: s.EventsPerSecond, LagSeconds: s.LagSeconds,
			Workers: s.Workers, QueueBytes: s.QueueBytes, Conflicts: s.Conflicts, Error: errText(s.LastError)}
		if !s.LastProgress.IsZero() {
			lp := s.LastProgress
			sj.LastProgress = &lp
		}
		nj := SnapshotStatusJSON{Stage: n.Stage.String(), Pos: positionJSON(n.Pos), Done: n.Done, Method: n.Method,
			BlockedSeconds: n.Blocked.Seconds(), Rows: n.Rows, EstRows: n.EstRows, Bytes: n.Bytes, EstBytes: n.EstBytes,
			Tables: len(n.Tables), Error: errText(n.LastError)}
		for _, tb := range n.Tables {
			nj.Chunks += tb.Chunks
			nj.ChunksDone += tb.ChunksDone
			if tb.Done {
				nj.TablesDone++
			}
		}
		locks := make([]ShardLockJSON, 0, len(t.ShardLocks))
		for _, l := range t.ShardLocks {
			lj := ShardLockJSON{Task: l.Task, Mode: string(l.Mode), Target: l.Target, Statement: l.Statement, Since: l.Since,
				Reached: make([]ShardReachedJSON, 0, len(l.Reached)), Waiting: append(make([]string, 0, len(l.Waiting)), l.Waiting...)}
			for _, r := range l.Reached {
				lj.Reached = append(lj.Reached, ShardReachedJSON{Source: r.Source, Table: r.Table, At: r.At})
			}
			lj.WaitingTables = make([]string, 0, len(l.WaitingTables))
			for _, r := range l.WaitingTables {
				lj.WaitingTables = append(lj.WaitingTables, r.String())
			}
			locks = append(locks, lj)
		}
		out.SubTasks = append(out.SubTasks, SubTaskJSON{Name: t.Name, Source: t.Source, Mode: string(t.Mode),
			Stage: string(t.Stage), Unit: t.Unit, Epoch: t.Epoch, Retries: t.Retries, Error: errText(t.LastError),
			Syncer: sj, Snapshot: nj, ShardLocks: locks})
	}
	return out
}

func positionJSON(p streamer.Position) PositionJSON {
	j := PositionJSON{Name: p.Name, Offset: p.Offset}
	if p.GTIDSet != nil {
		j.GTIDSet = p.GTIDSet.String()
	}
	return j
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
