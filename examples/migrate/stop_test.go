package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// TestMain runs the program itself when the test binary is started as a
// child by startMigrate, so that signals reach it as they reach the
// command.
func TestMain(m *testing.M) {
	if os.Getenv("DMWORKER_MIGRATE_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// proc is the program running as a child process.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	code           int
}

// startMigrate starts the program with args and env added to the test's
// environment; the cleanup kills it if it still runs.
func startMigrate(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), env...), "DMWORKER_MIGRATE_MAIN=1")
	p := &proc{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// signal sends sig and returns the exit status, failing the test unless
// the program exits within the stop bound and a margin for a loaded machine
// (the code before the bound waited 10s for a dead etcd and 30s or more for
// a stalled downstream).
func (p *proc) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	within := dmworker.DefaultStopTimeout + 10*time.Second
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case <-p.done:
		t.Logf("exit %d %s after %s; last lines:\n%s\nstderr:\n%s", p.code, time.Since(sent).Round(time.Millisecond), sig,
			lastLine(p.stdout.String()), p.stderr)
		return p.code
	case <-time.After(within):
		t.Fatalf("still running %s after %s (the bound is %s)\nstdout:\n%s\nstderr:\n%s", sig, within, dmworker.DefaultStopTimeout, p.stdout, p.stderr)
		return -1
	}
}

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// storedCheckpoint is the position the sink stored for the task, as text.
func storedCheckpoint(t *testing.T, db *sql.DB, task string) string {
	t.Helper()
	var pos string
	if err := db.QueryRow("SELECT pos FROM dmworker_meta.checkpoint WHERE task = ?", task).Scan(&pos); err != nil {
		t.Fatal(err)
	}
	return pos
}

// waitRows waits up to a minute for the downstream's rows of q to equal
// the upstream's.
func waitRows(t *testing.T, up, down *sql.DB, q string, p *proc) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); rowsOf(t, up, q) != rowsOf(t, down, q); {
		if time.Now().After(deadline) {
			t.Fatalf("downstream not caught up after a minute:\nup   %s\ndown %s\nstdout:\n%s\nstderr:\n%s",
				rowsOf(t, up, q), rowsOf(t, down, q), p.stdout, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMigrateStopEtcdDown: a cluster worker (with a relay log) whose etcd
// has gone away stops on SIGTERM within the stop bound, its last line the checkpoint stored
// downstream, and the downstream consistent.
func TestMigrateStopEtcdDown(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 421})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 422})
	e := testserver.StartEtcd(t)
	upDB, downDB := up.DB(t), down.DB(t)
	up.Exec(t, "CREATE DATABASE wl")
	up.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")
	down.Exec(t, "CREATE DATABASE wl")
	down.Exec(t, "CREATE TABLE wl.t (id INT PRIMARY KEY, v VARCHAR(64))")
	// The registration outlives the test's etcd outage (two thirds of the
	// TTL): the worker goes on replicating meanwhile.
	key := base64.StdEncoding.EncodeToString([]byte("secret-key-of-32-bytes-for-tests"))
	p := startMigrate(t, []string{envCredentialKey + "=" + key},
		"-from", fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr()), "-to", fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr()),
		"-tables", "wl.*", "-etcd", strings.Join(e.Endpoints, ","), "-worker", "w1", "-keepalive-ttl", "40s", "-data-dir", t.TempDir())
	waitOutput(t, p.stdout, p.stderr, "worker=w1 pos=mysql-bin")
	const q = "SELECT id, v FROM wl.t ORDER BY id"
	for i := 0; i < 30; i++ {
		up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("v", i))
	}
	waitRows(t, upDB, downDB, q, p)

	e.Stop()
	for i := 30; i < 40; i++ {
		up.Exec(t, "INSERT INTO wl.t VALUES (?, ?)", i, fmt.Sprint("w", i))
	}
	waitRows(t, upDB, downDB, q, p)
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	cp := storedCheckpoint(t, downDB, "migrate")
	last := lastLine(p.stdout.String())
	if want := "worker=w1 stopped at pos=" + cp + " "; !strings.HasPrefix(last, want) || !strings.Contains(last, "terminated (SIGTERM)") {
		t.Fatalf("last line %q, want it to start with %q and say SIGTERM\nstderr:\n%s", last, want, p.stderr)
	}
	if u, d := rowsOf(t, upDB, q), rowsOf(t, downDB, q); u != d {
		t.Fatalf("wl.t differs:\nup   %s\ndown %s", u, d)
	}
}

// TestMigrateStopStalledDownstream: with the downstream stalled on a row
// lock, SIGINT stops the program within the stop bound, serial (-workers 1)
// or parallel; its last line is the checkpoint stored downstream and says
// how to resume; the stalled sink transaction rolls back rather than
// commit once the lock goes, and running the same command again brings the
// downstream level with the upstream.
func TestMigrateStopStalledDownstream(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 423})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 424})
	upDB, downDB := up.DB(t), down.DB(t)
	for _, workers := range []string{"1", "16"} {
		t.Run("workers="+workers, func(t *testing.T) {
			db := "wl" + workers
			for _, s := range []*testserver.MariaDB{up, down} {
				s.Exec(t, "CREATE DATABASE "+db)
				s.Exec(t, "CREATE TABLE "+db+".t (id INT PRIMARY KEY, v VARCHAR(64))")
			}
			args := []string{"-from", fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr()),
				"-to", fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr()),
				"-tables", db + ".*", "-task", db, "-workers", workers}
			p := startMigrate(t, nil, args...)
			waitOutput(t, p.stdout, p.stderr, "pos=mysql-bin")
			q := "SELECT id, v FROM " + db + ".t ORDER BY id"
			for i := 0; i < 20; i++ {
				up.Exec(t, "INSERT INTO "+db+".t VALUES (?, ?)", i, fmt.Sprint("v", i))
			}
			waitRows(t, upDB, downDB, q, p)

			// Another client holds row 1: the next batch waits for its lock.
			tx, err := downDB.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec("SELECT * FROM " + db + ".t WHERE id = 1 FOR UPDATE"); err != nil {
				t.Fatal(err)
			}
			up.Exec(t, "UPDATE "+db+".t SET v = 'stalled' WHERE id = 1; INSERT INTO "+db+".t VALUES (100, 'after')")
			waitTrx(t, downDB, "the batch waiting for the lock", "trx_state = 'LOCK WAIT'", func(n int) bool { return n > 0 }, p)
			if code := p.signal(t, os.Interrupt); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
			}
			cp := storedCheckpoint(t, downDB, db)
			last := lastLine(p.stdout.String())
			if want := "stopped at pos=" + cp + " "; !strings.HasPrefix(last, want) ||
				!strings.Contains(last, "interrupted (SIGINT): run the same command again to continue from this checkpoint") {
				t.Fatalf("last line %q, want it to start with %q and say how to resume\nstderr:\n%s", last, want, p.stderr)
			}
			// Once the lock goes, the batch the stop cut short ends without
			// committing: row 1 keeps its old value.
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			waitTrx(t, downDB, "no transaction left", "TRUE", func(n int) bool { return n == 0 }, p)
			var v string
			if err := downDB.QueryRow("SELECT v FROM " + db + ".t WHERE id = 1").Scan(&v); err != nil || v != "v1" {
				t.Fatalf("row 1 is %q (%v): the batch cut short by the stop committed", v, err)
			}

			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			var stdout, stderr syncBuffer
			if code := run(ctx, append(args, "-exit-when-idle", "2s"), &stdout, &stderr); code != 0 {
				t.Fatalf("second run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			if u, d := rowsOf(t, upDB, q), rowsOf(t, downDB, q); u != d {
				t.Fatalf("%s.t differs after the second run:\nup   %s\ndown %s", db, u, d)
			}
		})
	}
}

// waitTrx waits up to two minutes (a connection cut short may hold its
// locks until the server notices it is gone) until ok holds for the number
// of the downstream's InnoDB transactions that match where.
func waitTrx(t *testing.T, db *sql.DB, what, where string, ok func(int) bool, p *proc) {
	t.Helper()
	testserver.WaitInnoDBTrx(t, db, what, where, ok, func() string {
		return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
	})
}

// TestMigrateUnsupportedDefinition: a table whose definition the schema
// tracker cannot take ends the run with exit 1 and the whole definition on
// stderr, in the snapshot (mode full) as at a fresh incremental start,
// instead of the snapshot retrying forever or the statement printed empty.
func TestMigrateUnsupportedDefinition(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 425})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 426})
	up.Exec(t, "CREATE DATABASE wl")
	up.Exec(t, "CREATE TABLE wl.ok (id INT PRIMARY KEY)")
	// An application-time period: MariaDB's own syntax, which the parser
	// does not know.
	up.Exec(t, "CREATE TABLE wl.pd (id INT PRIMARY KEY, s DATE, e DATE, PERIOD FOR p (s, e))")
	base := []string{"-from", fmt.Sprintf("%s:%s@%s", up.User, up.Password, up.Addr()),
		"-to", fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr()), "-tables", "wl.*"}
	for _, c := range []struct {
		mode, stopped string
	}{
		{"full", "migrate: the copy stopped at"},
		{"incremental", "migrate: replication stopped at"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		var stdout, stderr syncBuffer
		code := run(ctx, append(base, "-mode", c.mode, "-task", c.mode), &stdout, &stderr)
		cancel()
		out := stderr.String()
		if code != 1 {
			t.Fatalf("mode %s: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", c.mode, code, stdout.String(), out)
		}
		_, stmt, _ := strings.Cut(out, c.stopped)
		_, stmt, _ = strings.Cut(stmt, " on the statement:\n\t")
		if !strings.HasPrefix(stmt, "CREATE TABLE `pd`") || !strings.Contains(stmt, "PERIOD FOR `p`") {
			t.Errorf("mode %s: stderr does not show the definition after %q:\n%s", c.mode, c.stopped, out)
		}
		if last := lastLine(stdout.String()); !strings.HasSuffix(last, "stopped by the error above") {
			t.Errorf("mode %s: last line %q", c.mode, last)
		}
		if strings.Contains(stdout.String()+out, up.Password) {
			t.Errorf("mode %s: the output shows the password", c.mode)
		}
	}
}
