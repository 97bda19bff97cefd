package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// workerChildEnv makes the test binary run a SourceWorker (relay on, one
// subtask "t" in mode all) instead of the tests:
// "relaydir|upstream user:pass@host:port|downstream user:pass@host:port".
const workerChildEnv = "DMWORKER_TEST_WORKER_CHILD"

// faultWorkerSource is the source the worker children and the test's own
// worker run: relay on, a fixed server id.
func faultWorkerSource(up streamer.UpstreamConfig) dmworker.SourceConfig {
	up.Flavor, up.ServerID = streamer.FlavorMariaDB, 791
	return dmworker.SourceConfig{Name: "src", Upstream: up, EnableRelay: true}
}

// faultWorkerTask is the subtask they run: a snapshot in small chunks (a
// long copy to be killed in), then incremental.
var faultWorkerTask = dmworker.SubTaskConfig{Name: "t", Mode: dmworker.ModeAll,
	Snapshot: dmworker.SnapshotConfig{ChunkRows: 200, Concurrency: 2}}

func workerChild(spec string) int {
	parts := strings.SplitN(spec, "|", 3)
	up, err := streamer.ParseUpstream(parts[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	db, err := childDB(parts[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	w, err := dmworker.NewSourceWorker("w", mysqlSinks(db), dmworker.WithSource(faultWorkerSource(up)), dmworker.WithRelayDir(parts[0]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := w.StartSubTask(faultWorkerTask); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := w.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestSourceWorkerKilled kills a SourceWorker process (relay on, a subtask
// in mode all) with SIGKILL at random moments, again and again, while the
// upstream takes a concurrent workload: the first kills fall in the
// snapshot copy (tables of thousands of rows in chunks of 200, a keyless
// one among them), the later ones in the incremental phase, with the
// upstream's binlog rotating every 16 KiB (relay file rotations). A last
// worker run in the test then catches up, and the downstream equals the
// upstream.
func TestSourceWorkerKilled(t *testing.T) {
	seed := faultSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 0))
	p := newPair(t, 790, 792, testserver.MariaDBOptions{MaxBinlogSize: 16 << 10})
	faultCopySchema(t, p.updb, true)
	tables := append([]string{"fw.big"}, faultTables...)

	relayDir := t.TempDir()
	spec := fmt.Sprintf("%s|%s:%s@%s|%s:%s@%s", relayDir, p.up.User, p.up.Password, p.up.Addr(), p.down.User, p.down.Password, p.down.Addr())
	fw := startFaultWriter(t, p.updb, seed, 2)
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), workerChildEnv+"="+spec)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Fault injection at a random moment, not a timing assertion.
		d := time.Duration(150+rnd.IntN(1000)) * time.Millisecond
		time.Sleep(d)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("worker child ended on its own (%v): %s", err, stderr.String())
		}
		t.Logf("round %d: worker killed after %s; downstream fw.big %d rows", round, d, countRowsIfAny(p.downdb, "fw.big"))
	}
	fw.waitCommitted(t, 50)
	fw.Stop()

	w, err := dmworker.NewSourceWorker("w", mysqlSinks(p.downdb), dmworker.WithSource(faultWorkerSource(upstreamOf(p.up))), dmworker.WithRelayDir(relayDir))
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	if err := w.StartSubTask(faultWorkerTask); err != nil {
		t.Fatal(err)
	}
	waitSubTaskSynced(t, taskStatus(w, "t"), p)
	for _, tbl := range tables {
		checkEqual(t, p.updb, p.downdb, tbl, tbl)
	}
}

// countRowsIfAny counts a table's rows, -1 when it cannot (not there yet).
func countRowsIfAny(db *sql.DB, table string) int {
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		return -1
	}
	return n
}
