// Command syncer is the driver of bench/syncer.sh: it applies the binlog an
// upstream recorded (sysbench, from the script) to a fresh downstream with
// dmworker's Syncer and mysqlsink, and reports rows/s, events/s and seconds
// as one JSON line. The script times `mariadb-binlog | mariadb` itself.
//
// Usage: syncer -upstream user:pass@host:port -downstream user:pass@host:port
// [-workers N] [-batch N] [-compact | -no-compact] [-queue-bytes N] [-cpuprofile FILE]
// [-discard]
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/benchutil"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "syncer bench:", err)
		os.Exit(1)
	}
}

func run() error {
	upFlag := flag.String("upstream", "", "upstream user:pass@host:port")
	downFlag := flag.String("downstream", "", "downstream user:pass@host:port")
	batch := flag.Int("batch", 0, "SyncerConfig.BatchSize (0: the default)")
	workers := flag.Int("workers", 0, "SyncerConfig.Workers (0: the default)")
	compact := flag.Bool("compact", false, "SyncerConfig.Compact (compaction is on by default)")
	noCompact := flag.Bool("no-compact", false, "SyncerConfig.NoCompact")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	queueBytes := flag.Int64("queue-bytes", 0, "SyncerConfig.QueueBytes (0: the default)")
	metrics := flag.Bool("metrics", false, "WithMetrics, with a registry scraped every second")
	discard := flag.Bool("discard", false, "apply to a sink that drops every row (checkpoints and DDL kept in memory): what reading, decoding and dispatch alone cost")
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
	var total uint64
	for _, b := range st.Binlogs {
		total += b.Size
	}

	c := gomysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr = down.User, down.Password, "tcp", down.Addr()
	// As mysqlsink's doc advises: parameters interpolated client-side (one
	// round trip a statement), a connection kept for every worker, and the
	// pool declared the sink's alone (WithExclusivePool).
	c.InterpolateParams = true
	conn, err := gomysql.NewConnector(c)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxIdleConns(max(*workers, 16) + 2)
	var sink dmworker.Sink
	if *discard {
		sink = discardSink{sinktest.NewMemSink()}
	} else if sink, err = mysqlsink.New(db, mysqlsink.WithExclusivePool()); err != nil {
		return err
	}
	var syncerOpts []dmworker.SyncerOption
	if *metrics {
		// Counted where the work happens and scraped as Prometheus would.
		reg := prometheus.NewRegistry()
		syncerOpts = append(syncerOpts, dmworker.WithMetrics(reg))
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		go func() {
			for range tick.C {
				_, _ = reg.Gather()
			}
		}()
	}
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{
		Task:         "bench",
		Upstream:     up,
		Start:        streamer.Position{Name: st.Binlogs[0].Name, Offset: 4},
		SyncerTuning: dmworker.SyncerTuning{BatchSize: *batch, Workers: *workers, Compact: *compact, NoCompact: *noCompact, QueueBytes: *queueBytes},
	}, sink, syncerOpts...)
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		stop, err := benchutil.StartCPUProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- s.Run(rctx) }()
	for {
		if s.Status().Checkpoint.Compare(end) >= 0 {
			break
		}
		select {
		case err := <-done:
			cancel()
			return fmt.Errorf("syncer stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	secs := time.Since(begin).Seconds()
	cancel()
	if err := <-done; err != nil {
		return err
	}
	stt := s.Status()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"rows": stt.Rows, "ddls": stt.DDLs, "events": stt.Events, "seconds": secs, "binlog_bytes": total,
		"rows_per_s": float64(stt.Rows) / secs, "events_per_s": float64(stt.Events) / secs, "mb_per_s": float64(total) / 1e6 / secs,
		"conflicts": stt.Conflicts, "batches": stt.Batches, "cpu_s": cpuSeconds(), "workers": stt.Workers, "peak_rss_kb": benchutil.PeakRSSKB(),
	})
}

// discardSink drops the rows of every batch; a MemSink keeps checkpoints
// and DDLs.
type discardSink struct{ *sinktest.MemSink }

func (d discardSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	if b.Checkpoint == nil {
		return nil
	}
	return d.MemSink.Apply(ctx, &dmworker.Batch{Checkpoint: b.Checkpoint, Fence: b.Fence})
}

// cpuSeconds is the user and system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
