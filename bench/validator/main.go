// Command validator is the driver of bench/validator.sh: it applies the
// binlog an upstream recorded (sysbench, from the script) to a fresh
// downstream with a dmworker.SubTask (mysqlsink, WORKERS workers) whose
// continuous validator runs in the given mode, and reports as one JSON
// line the apply's seconds and rows/s (until the syncer's checkpoint
// reaches the binlog's end) and, with a validator, how long until it has
// validated everything, the rows it checked and the error rows it recorded.
//
// Usage: validator -upstream user:pass@host:port -downstream user:pass@host:port
// [-workers 16] [-mode off|fast|full] [-cpuprofile FILE]
//
// It also reports its own CPU seconds (user and system, "cpu_s"), the CPU
// seconds of the upstream's and the downstream's mysqld over the run
// ("upstream_cpu_s", "downstream_cpu_s": read from /proc, the servers on
// this machine; -1 when unknown) and the downstream's statement counters
// (SHOW GLOBAL STATUS: Questions, Com_select, Com_insert, Com_update,
// Com_delete, Com_replace, Handler_read_key,
// Handler_read_rnd_next).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/benchutil"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "validator bench:", err)
		os.Exit(1)
	}
}

func run() error {
	upFlag := flag.String("upstream", "", "upstream user:pass@host:port")
	downFlag := flag.String("downstream", "", "downstream user:pass@host:port")
	workers := flag.Int("workers", 16, "SyncerTuning.Workers")
	mode := flag.String("mode", "off", "ValidationConfig.Mode: off, fast or full")
	logLevel := flag.String("log-level", "warn", "log level to stderr: debug, info, warn or error")
	stall := flag.Duration("stall", 5*time.Minute, "give up (status and goroutines to stderr, exit 1) when the validator has not validated the binlog's end this long after the syncer applied it")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run (apply and validation) to this file")
	memprofile := flag.String("memprofile", "", "write a heap profile to this file when the syncer has applied the binlog (the validator's rows are then at their most)")
	flag.Parse()
	up, err := streamer.ParseUpstream(*upFlag)
	if err != nil {
		return err
	}
	down, err := streamer.ParseUpstream(*downFlag)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := streamer.QueryUpstream(ctx, up)
	if err != nil {
		return err
	}
	end := streamer.Position{Name: st.Master.Name, Offset: st.Master.Offset}

	c := gomysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr = down.User, down.Password, "tcp", down.Addr()
	c.InterpolateParams = true
	conn, err := gomysql.NewConnector(c)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxIdleConns(*workers + 4)
	sink, err := mysqlsink.New(db)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	t, err := dmworker.NewSubTask(dmworker.SubTaskConfig{
		Name:         "bench",
		Start:        streamer.Position{Name: st.Binlogs[0].Name, Offset: 4},
		SyncerTuning: dmworker.SyncerTuning{Workers: *workers},
		Validation:   dmworker.ValidationConfig{Mode: dmworker.ValidationMode(*mode)},
	}, up, sink, dmworker.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))))
	if err != nil {
		return err
	}
	load := benchutil.LoadAvg()
	before, err := counters(ctx, db)
	if err != nil {
		return err
	}
	updb, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/", up.User, up.Password, up.Addr()))
	if err != nil {
		return err
	}
	defer updb.Close()
	upCPU0, downCPU0 := serverCPU(ctx, updb), serverCPU(ctx, db)
	stopProfile, err := benchutil.StartCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	// The live heap (as the last collection marked it), sampled: its peak
	// is what the process keeps, the garbage collector's headroom aside.
	var peakLive atomic.Uint64
	sampleDone := make(chan struct{})
	defer close(sampleDone)
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleDone:
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peakLive.Load() {
				peakLive.Store(v)
			}
		}
	}()
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- t.Run(ctx) }()
	defer t.Stop()
	wait := func(limit time.Duration, cond func(dmworker.SubTaskStatus) bool) error {
		deadline := time.Now().Add(limit)
		for {
			s := t.Status()
			if s.LastError != nil && s.Stage == dmworker.SubTaskPaused {
				return s.LastError
			}
			if cond(s) {
				return nil
			}
			if time.Now().After(deadline) {
				b, _ := json.Marshal(s)
				fmt.Fprintf(os.Stderr, "status: %s\n", b)
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
				return fmt.Errorf("not reached within %s", limit)
			}
			select {
			case err := <-done:
				return fmt.Errorf("subtask stopped: %v", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	if err := wait(time.Hour, func(s dmworker.SubTaskStatus) bool { return s.Syncer.Checkpoint.Compare(end) >= 0 }); err != nil {
		return err
	}
	secs := time.Since(begin).Seconds()
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	vsecs := 0.0
	if *mode != "off" {
		if err := wait(*stall, func(s dmworker.SubTaskStatus) bool {
			v := s.Validator
			return v.Validated.Compare(end) >= 0 && v.Pending == v.Differing
		}); err != nil {
			return err
		}
		vsecs = time.Since(begin).Seconds()
	}
	s := t.Status()
	stopProfile()
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	after, err := counters(ctx, db)
	if err != nil {
		return err
	}
	upCPU, downCPU := serverCPU(ctx, updb)-upCPU0, serverCPU(ctx, db)-downCPU0
	if upCPU0 < 0 {
		upCPU = -1
	}
	if downCPU0 < 0 {
		downCPU = -1
	}
	delta := map[string]int64{}
	for k, v := range after {
		delta[k] = v - before[k]
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"load": load, "cpu_s": cpuSeconds(ru1) - cpuSeconds(ru0), "downstream": delta,
		"upstream_cpu_s": upCPU, "downstream_cpu_s": downCPU,
		"mode": *mode, "workers": s.Syncer.Workers, "rows": s.Syncer.Rows, "seconds": secs,
		"rows_per_s": float64(s.Syncer.Rows) / secs, "validated_s": vsecs,
		"checked": s.Validator.Checked, "error_rows": s.Validator.ErrorRows, "differing": s.Validator.Differing,
		"validator_peak_bytes": s.Validator.PeakBytes, "spilled": s.Validator.Spilled, "reading": s.Validator.Reading,
		"peak_rss_kb": benchutil.PeakRSSKB(), "peak_live_heap_mb": float64(peakLive.Load()) / (1 << 20),
	})
}

func cpuSeconds(ru syscall.Rusage) float64 {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// counters reads the downstream's statement counters.
func counters(ctx context.Context, db *sql.DB) (map[string]int64, error) {
	rs, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_select', 'Com_insert', 'Com_update', 'Com_delete', 'Com_replace', 'Handler_read_key', 'Handler_read_rnd_next')")
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := map[string]int64{}
	for rs.Next() {
		var k string
		var v int64
		if err := rs.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rs.Err()
}

// serverCPU is the user and system CPU seconds of the server's mysqld (its
// pid file, /proc/PID/stat), -1 when unknown.
func serverCPU(ctx context.Context, db *sql.DB) float64 {
	var file string
	if err := db.QueryRowContext(ctx, "SELECT @@pid_file").Scan(&file); err != nil {
		return -1
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return -1
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return benchutil.ProcCPU(pid)
}
