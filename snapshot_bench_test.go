package dmworker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// snapshotBenchEnv names the servers BenchmarkSnapshotCopy copies between:
// "upstream user:pass@host:port|downstream user:pass@host:port|schema|concurrency".
// bench/snapshot.sh sets it; without it the benchmark is skipped.
const snapshotBenchEnv = "DMWORKER_BENCH_SNAPSHOT"

// BenchmarkSnapshotCopy copies one schema of the upstream into a fresh
// downstream with the snapshot unit and mysqlsink (parallel writers), once
// per iteration (run it with -test.benchtime=1x), and prints one JSON line
// with rows, bytes (the values' sizes), seconds and how the consistent point
// was reached.
func BenchmarkSnapshotCopy(b *testing.B) {
	spec := os.Getenv(snapshotBenchEnv)
	if spec == "" {
		b.Skip(snapshotBenchEnv + " is not set: run bench/snapshot.sh")
	}
	parts := strings.SplitN(spec, "|", 4)
	if len(parts) != 4 {
		b.Fatalf("%s=%q: want up|down|schema|concurrency", snapshotBenchEnv, spec)
	}
	up, err := streamer.ParseUpstream(parts[0])
	if err != nil {
		b.Fatal(err)
	}
	down, err := streamer.ParseUpstream(parts[1])
	if err != nil {
		b.Fatal(err)
	}
	conc, err := strconv.Atoi(parts[3])
	if err != nil {
		b.Fatal(err)
	}
	c := gomysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr = down.User, down.Password, "tcp", down.Addr()
	c.InterpolateParams = true // as mysqlsink's doc advises
	conn, err := gomysql.NewConnector(c)
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxIdleConns(conc + 2)
	sc := dmworker.SnapshotConfig{Concurrency: conc}
	sinkOpts := []mysqlsink.Option{mysqlsink.WithExclusivePool()}
	// Knobs for experiments: DMWORKER_BENCH_SNAPSHOT_{BATCH,CHUNK,STMT}.
	for name, set := range map[string]func(int){
		"BATCH": func(n int) { sc.BatchRows = n },
		"CHUNK": func(n int) { sc.ChunkRows = n },
		"STMT":  func(n int) { sinkOpts = append(sinkOpts, mysqlsink.WithMaxStatementRows(n)) },
	} {
		if v := os.Getenv(snapshotBenchEnv + "_" + name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				b.Fatalf("%s_%s=%q: %v", snapshotBenchEnv, name, v, err)
			}
			set(n)
		}
	}
	if os.Getenv(snapshotBenchEnv+"_NOBINLOG") != "" {
		sinkOpts = append(sinkOpts, mysqlsink.WithoutBinlog())
	}
	sink, err := mysqlsink.New(db, sinkOpts...)
	if err != nil {
		b.Fatal(err)
	}
	// The unit's log (where the copy's time went: "rows copied") on stderr.
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := dmworker.SyncerConfig{Task: "bench", Upstream: up, Filter: dmworker.BlockAllowList{DoDBs: []string{parts[2]}}}
	for i := 0; i < b.N; i++ {
		task := cfg
		task.Task = fmt.Sprintf("bench-%d", i)
		u, err := dmworker.NewSnapshotUnitForTest(task, sc, concurrentSink{sink}, dmworker.SinkStoreForTest(sink), 0, logger)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := u.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		secs := time.Since(t0).Seconds()
		st := u.Status()
		b.ReportMetric(float64(st.Rows)/secs, "rows/s")
		b.ReportMetric(float64(st.Bytes)/1e6/secs, "MB/s")
		out, _ := json.Marshal(map[string]any{"rows": st.Rows, "bytes": st.Bytes, "seconds": secs, "method": st.Method,
			"blocked_ms":       float64(st.Blocked.Microseconds()) / 1000,
			"readers_waited_s": st.ReadersWaited.Seconds(), "writers_waited_s": st.WritersWaited.Seconds(), "tables": len(st.Tables), "concurrency": conc,
			"batch_rows": u.Config().BatchRows, "chunk_rows": u.Config().ChunkRows})
		fmt.Println(string(out))
	}
}
