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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// syncerChildEnv makes the test binary run a syncer instead of the tests:
// "task|upstream user:pass@host:port|downstream user:pass@host:port|workers|start".
const syncerChildEnv = "DMWORKER_TEST_SYNCER_CHILD"

// childDB opens a pool on the server a child process's spec names
// ("user:pass@host:port").
func childDB(spec string) (*sql.DB, error) {
	down, err := streamer.ParseUpstream(spec)
	if err != nil {
		return nil, err
	}
	c := gomysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr = down.User, down.Password, "tcp", down.Addr()
	conn, err := gomysql.NewConnector(c)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

func syncerChild(spec string) int {
	parts := strings.SplitN(spec, "|", 5)
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
	sink, err := mysqlsink.New(db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	workers, err := strconv.Atoi(parts[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	start, err := streamer.ParsePosition(parts[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: parts[0], Upstream: up, Start: start, SyncerTuning: dmworker.SyncerTuning{BatchSize: 7, Workers: workers}}, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// killSyncerChildren runs a syncer of task from p's upstream into its
// downstream in a child process (see syncerChild: BatchSize 7, workers,
// starting at file:pos without a checkpoint) rounds times, killing it with
// SIGKILL each time after a random stretch of work (fault injection, not a
// timing assertion).
func killSyncerChildren(t *testing.T, p *syncPair, task string, workers int, file string, pos uint64, rounds int, rnd *rand.Rand) {
	t.Helper()
	spec := fmt.Sprintf("%s|%s:%s@%s|%s:%s@%s|%d|%s:%d", task, p.up.User, p.up.Password, p.up.Addr(), p.down.User, p.down.Password, p.down.Addr(), workers, file, pos)
	for range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), syncerChildEnv+"="+spec)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(300+rnd.IntN(700)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("syncer child ended on its own (%v): %s", err, stderr.String())
		}
	}
}

// recoverSyncer runs the killed children's syncer (same task, batch size,
// workers and start) in the test until it has checkpointed the upstream's
// current position, and returns it.
func recoverSyncer(t *testing.T, p *syncPair, task string, workers int, file string, pos uint64) *dmworker.Syncer {
	t.Helper()
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{
		Task:     task,
		Upstream: upstreamOf(p.up),
		// As the children: a child killed before it stored anything
		// leaves no checkpoint.
		Start:        streamer.Position{Name: file, Offset: pos},
		SyncerTuning: dmworker.SyncerTuning{BatchSize: 7, Workers: workers},
	}, p.sink)
	if err != nil {
		t.Fatal(err)
	}
	waitSynced(t, runSyncer(t, s), p.updb)
	return s
}

// TestSyncerCrashRecovery kills a syncer process with SIGKILL at random
// points of a running workload, again and again; after a last clean run the
// downstream equals the upstream.
func TestSyncerCrashRecovery(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 44, MaxBinlogSize: 64 << 10})
		p.workers = workers
		// Tables exist before the first start: the task's schema is seeded
		// from the upstream, and the downstream gets them by hand (a snapshot's
		// job, not the syncer's).
		for _, db := range []*sql.DB{p.updb, p.downdb} {
			mustExec(t, db, "CREATE DATABASE app")
			// With the column syncWorkload's ALTER adds: the schema is seeded
			// from the upstream's current definition, which must be the one at
			// the start position.
			mustExec(t, db, "CREATE TABLE app.accounts (id INT PRIMARY KEY, owner VARCHAR(64) NOT NULL, flags SET('a','b','c') DEFAULT 'a,c', balance DECIMAL(12,2), note TEXT, UNIQUE KEY (owner))")
			mustExec(t, db, "CREATE TABLE app.events (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, account INT, kind ENUM('open','deposit','withdraw','close'), at DATETIME(6), payload JSON)")
		}
		// Every child that finds no checkpoint yet must start at the same
		// place: where the tables were created on both sides.
		file, pos := masterPos(t, p.updb)

		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(44, 2))
			db := p.up.DB(t)
			for {
				select {
				case <-stop:
					return
				default:
				}
				syncWorkload(t, db, rnd, 10)
			}
		}()

		killSyncerChildren(t, p, "crash", workers, file, pos, 6, rand.New(rand.NewPCG(44, 3)))
		close(stop)
		wg.Wait()

		s := recoverSyncer(t, p, "crash", workers, file, pos)
		checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
		checkEqual(t, p.updb, p.downdb, "app.events", "app.events")
		if st := s.Status(); st.Rows == 0 && st.Checkpoint.IsZero() {
			t.Fatalf("status %+v", st)
		}
	})
}

// TestSyncerSysbench runs sysbench's oltp_write_only and oltp_read_write on
// several tables while the syncer runs; afterwards every table equals the
// upstream's.
func TestSyncerSysbench(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		bin, err := exec.LookPath("sysbench")
		if err != nil {
			if testserver.Required() {
				t.Fatalf("sysbench not found (apt-get install sysbench, or make test): %v", err)
			}
			t.Skip("sysbench not found: apt-get install sysbench, or run make test")
		}
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 45})
		p.workers = workers
		s, err := dmworker.NewSyncer(p.config("sb"), p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		mustExec(t, p.updb, "CREATE DATABASE sbtest")
		sb := func(args ...string) {
			t.Helper()
			base := []string{"--db-driver=mysql", "--mysql-host=127.0.0.1", fmt.Sprintf("--mysql-port=%d", p.up.Port),
				"--mysql-user=" + p.up.User, "--mysql-password=" + p.up.Password, "--mysql-db=sbtest",
				"--tables=4", "--table-size=500"}
			cmd := exec.Command(bin, append(base, args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("sysbench %v: %v\n%s", args, err, out)
			}
		}
		sb("oltp_write_only", "prepare")
		sb("oltp_write_only", "--threads=2", "--time=4", "--events=0", "run")
		sb("oltp_read_write", "--threads=2", "--time=3", "--events=0", "run")
		waitSynced(t, run, p.updb)
		for i := 1; i <= 4; i++ {
			tbl := fmt.Sprintf("sbtest.sbtest%d", i)
			checkEqual(t, p.updb, p.downdb, tbl, tbl)
		}
	})
}
