package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// checkResult returns the result named name, failing when there is none.
func checkResult(t *testing.T, rs []dmworker.CheckResult, name string) dmworker.CheckResult {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %q result in:\n%s", name, checkText(rs))
	return dmworker.CheckResult{}
}

func checkText(rs []dmworker.CheckResult) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintln(&b, r)
	}
	return b.String()
}

// wantCheck asserts the verdict of one check and that Found or Fix says
// what the test expects.
func wantCheck(t *testing.T, rs []dmworker.CheckResult, name string, st dmworker.CheckStatus, says string) {
	t.Helper()
	r := checkResult(t, rs, name)
	if r.Status != st || !strings.Contains(r.Found+" "+r.Fix, says) {
		t.Errorf("%s: got %q, want %s saying %q; all:\n%s", name, r, st, says, checkText(rs))
	}
}

// limitedUser creates a user with the given global grants on m and returns
// its config.
func limitedUser(t *testing.T, m *testserver.MariaDB, user, grants string) streamer.UpstreamConfig {
	t.Helper()
	m.Exec(t, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY 'pw-%s'", user, user))
	if grants != "" {
		m.Exec(t, fmt.Sprintf("GRANT %s ON *.* TO '%s'@'%%'", grants, user))
	}
	return streamer.UpstreamConfig{Host: m.Host, Port: uint16(m.Port), User: user, Password: "pw-" + user}
}

func openCheckDB(t *testing.T, c streamer.UpstreamConfig) *sql.DB {
	t.Helper()
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = c.User, c.Password, "tcp", c.Addr()
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestCheck: every precheck passes on a well set up pair, and each one
// fails (or warns) on a server or user set up to make it.
func TestCheck(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 631})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 632})
	up.Exec(t, "CREATE DATABASE app")
	up.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10)) DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci")
	src := dmworker.SourceConfig{Name: "src", Upstream: upstreamOf(up), EnableRelay: true, RelayDir: filepath.Join(t.TempDir(), "relay", "src")}
	task := dmworker.SubTaskConfig{Name: "task", Mode: dmworker.ModeAll, Filter: dmworker.BlockAllowList{DoDBs: []string{"app"}}}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	downDB := down.DB(t)

	start := time.Now()
	rs := dmworker.Check(ctx, src, task, dmworker.WithCheckDownstream(downDB))
	t.Logf("Check took %s:\n%s", time.Since(start), checkText(rs))
	if dmworker.CheckFailed(rs) {
		t.Fatalf("a good pair fails:\n%s", checkText(rs))
	}
	for _, r := range rs {
		if r.Status != dmworker.CheckPass {
			t.Errorf("a good pair: %s", r)
		}
	}
	for _, name := range []string{"connect", "log_bin", "binlog_format", "binlog_row_image", "server_id", "start position", "prepared XA",
		"upstream privileges", "filters", "primary keys", "downstream privileges", "charsets", "max_allowed_packet", "relay directory"} {
		checkResult(t, rs, name)
	}

	t.Run("binlog_format", func(t *testing.T) {
		up.Exec(t, "SET GLOBAL binlog_format = 'STATEMENT'")
		defer up.Exec(t, "SET GLOBAL binlog_format = 'ROW'")
		rs := dmworker.Check(ctx, src, task)
		wantCheck(t, rs, "binlog_format", dmworker.CheckFail, "binlog_format=ROW")
		if !dmworker.CheckFailed(rs) {
			t.Error("CheckFailed is false")
		}
	})
	t.Run("prepared XA", func(t *testing.T) {
		c, err := up.DB(t).Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{"XA START 'chk'", "INSERT INTO app.t VALUES (1, 'x')", "XA END 'chk'", "XA PREPARE 'chk'"} {
			if _, err := c.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		defer func() {
			if _, err := c.ExecContext(ctx, "XA ROLLBACK 'chk'"); err != nil {
				t.Error(err)
			}
			c.Close()
		}()
		wantCheck(t, dmworker.Check(ctx, src, task), "prepared XA", dmworker.CheckWarn, "ErrXAPreparedBeforeStart")
	})
	t.Run("binlog_row_image", func(t *testing.T) {
		up.Exec(t, "SET GLOBAL binlog_row_image = 'MINIMAL'")
		defer up.Exec(t, "SET GLOBAL binlog_row_image = 'FULL'")
		wantCheck(t, dmworker.Check(ctx, src, task), "binlog_row_image", dmworker.CheckFail, "binlog_row_image=FULL")
	})
	t.Run("server_id", func(t *testing.T) {
		s := src
		s.Upstream.ServerID = 631
		wantCheck(t, dmworker.Check(ctx, s, task), "server_id", dmworker.CheckFail, "the upstream's own")
	})
	t.Run("start purged", func(t *testing.T) {
		files, err := up.BinlogFiles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		first, last := filepath.Base(files[0]), filepath.Base(files[len(files)-1])
		tk := task
		tk.Start = streamer.Position{Name: strings.TrimSuffix(first, filepath.Ext(first)) + ".000000", Offset: 4}
		wantCheck(t, dmworker.Check(ctx, src, tk), "start position", dmworker.CheckFail, "is purged")
		tk.Start = streamer.Position{Name: last, Offset: 4}
		wantCheck(t, dmworker.Check(ctx, src, tk), "start position", dmworker.CheckPass, "is on the upstream")
	})
	t.Run("no REPLICATION SLAVE", func(t *testing.T) {
		s := src
		s.Upstream = limitedUser(t, up, "norepl", "SELECT, RELOAD, BINLOG MONITOR")
		wantCheck(t, dmworker.Check(ctx, s, task), "upstream privileges", dmworker.CheckFail, "REPLICATION SLAVE")
	})
	t.Run("no RELOAD", func(t *testing.T) {
		s := src
		s.Upstream = limitedUser(t, up, "noreload", "SELECT, REPLICATION SLAVE, BINLOG MONITOR")
		wantCheck(t, dmworker.Check(ctx, s, task), "upstream privileges", dmworker.CheckWarn, "RELOAD")
		tk := task
		tk.Mode = dmworker.ModeIncremental
		wantCheck(t, dmworker.Check(ctx, s, tk), "upstream privileges", dmworker.CheckPass, "")
	})
	t.Run("filters", func(t *testing.T) {
		tk := task
		tk.Filter = dmworker.BlockAllowList{DoDBs: []string{"nosuchdb"}}
		wantCheck(t, dmworker.Check(ctx, src, tk), "filters", dmworker.CheckWarn, "matches no upstream table")
	})
	t.Run("primary keys", func(t *testing.T) {
		up.Exec(t, "CREATE TABLE app.nokey (v INT)")
		defer up.Exec(t, "DROP TABLE app.nokey")
		wantCheck(t, dmworker.Check(ctx, src, task), "primary keys", dmworker.CheckWarn, "app.nokey")
	})
	t.Run("downstream privileges", func(t *testing.T) {
		db := openCheckDB(t, limitedUser(t, down, "reader", "SELECT"))
		wantCheck(t, dmworker.Check(ctx, src, task, dmworker.WithCheckDownstream(db)), "downstream privileges", dmworker.CheckFail, "INSERT")
	})
	t.Run("max_allowed_packet", func(t *testing.T) {
		down.Exec(t, "SET GLOBAL max_allowed_packet = 1048576")
		defer down.Exec(t, "SET GLOBAL max_allowed_packet = 16777216")
		up.Exec(t, "SET GLOBAL max_allowed_packet = 16777216")
		db := openCheckDB(t, upstreamOf(down)) // a new session sees the new value
		wantCheck(t, dmworker.Check(ctx, src, task, dmworker.WithCheckDownstream(db)), "max_allowed_packet", dmworker.CheckWarn, "smaller than the upstream's")
	})
	t.Run("relay directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		s := src
		s.RelayDir = filepath.Join(file, "relay")
		wantCheck(t, dmworker.Check(ctx, s, task), "relay directory", dmworker.CheckFail, "not writable")
	})
	t.Run("gtid start purged", func(t *testing.T) {
		// A GTID start from before the oldest binlog file: the transactions
		// between are gone. MariaDB says where that file begins in its
		// Gtid_list event.
		var old string
		if err := up.DB(t).QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&old); err != nil {
			t.Fatal(err)
		}
		up.Exec(t, "FLUSH BINARY LOGS")
		up.Exec(t, "INSERT INTO app.t VALUES (100, 'gone')")
		up.Exec(t, "FLUSH BINARY LOGS")
		var current string
		var pos uint64
		var rest [2]sql.NullString
		if err := up.DB(t).QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(&current, &pos, &rest[0], &rest[1]); err != nil {
			t.Fatal(err)
		}
		// MariaDB keeps a file until its binlog checkpoint has passed it
		// (after the flush, in the background): purge until it is gone.
		for deadline := time.Now().Add(30 * time.Second); ; {
			up.Exec(t, "PURGE BINARY LOGS TO '"+current+"'")
			var first string
			var size sql.NullString
			if err := up.DB(t).QueryRowContext(ctx, "SHOW BINARY LOGS").Scan(&first, &size); err != nil {
				t.Fatal(err)
			}
			if first == current {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the upstream keeps %s after PURGE BINARY LOGS TO %s", first, current)
			}
			time.Sleep(100 * time.Millisecond)
		}
		up.Exec(t, "INSERT INTO app.t VALUES (101, 'kept')")
		var now string
		if err := up.DB(t).QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&now); err != nil {
			t.Fatal(err)
		}
		tk := task
		set, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, old)
		if err != nil {
			t.Fatal(err)
		}
		tk.Start = streamer.Position{GTIDSet: set}
		wantCheck(t, dmworker.Check(ctx, src, tk), "gtid", dmworker.CheckFail, "is purged")
		if set, err = streamer.NewGTIDSet(streamer.FlavorMariaDB, now); err != nil {
			t.Fatal(err)
		}
		tk.Start = streamer.Position{GTIDSet: set}
		wantCheck(t, dmworker.Check(ctx, src, tk), "gtid", dmworker.CheckPass, "within the start set")
	})
	t.Run("unreachable", func(t *testing.T) {
		s := src
		s.Upstream.Password = "wrong"
		rs := dmworker.Check(ctx, s, task)
		wantCheck(t, rs, "connect", dmworker.CheckFail, "password")
	})
}

// TestCheckBinlogOff: an upstream with the binlog off fails the log_bin
// check.
func TestCheckBinlogOff(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 633, ExtraArgs: []string{"--skip-log-bin"}})
	rs := dmworker.Check(t.Context(), dmworker.SourceConfig{Name: "src", Upstream: upstreamOf(up)}, dmworker.SubTaskConfig{Name: "task"})
	wantCheck(t, rs, "log_bin", dmworker.CheckFail, "the binlog is off")
}

// TestSubTaskPrecheck: a subtask checks the upstream's binlog before it
// starts (a binlog that is off pauses it with ErrBinlogFormat saying so),
// and WithoutPrecheck skips that check.
func TestSubTaskPrecheck(t *testing.T) {
	p := newPair(t, 634, 635, testserver.MariaDBOptions{ExtraArgs: []string{"--skip-log-bin"}})
	cfg := dmworker.SubTaskConfig{Name: "pre", Filter: dmworker.BlockAllowList{DoDBs: []string{"app"}}}
	st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runSubTask(t, st)
	s := waitStage(t, st.Status, dmworker.SubTaskPaused)
	t.Logf("refused after %s", time.Since(start))
	if !errors.Is(s.LastError, dmworker.ErrBinlogFormat) || !strings.Contains(s.LastError.Error(), "the binlog is off") {
		t.Fatalf("paused with %v, want ErrBinlogFormat saying the binlog is off", s.LastError)
	}

	q := newPair(t, 636, 637, testserver.MariaDBOptions{})
	q.up.Exec(t, "SET GLOBAL binlog_format = 'MIXED'")
	st, err = dmworker.NewSubTask(cfg, upstreamOf(q.up), q.sink, dmworker.WithoutPrecheck())
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the syncer to start without the precheck", func() bool { return st.Status().Syncer.Read.Name != "" })
	if s := st.Status(); s.Stage != dmworker.SubTaskRunning || s.LastError != nil {
		t.Fatalf("stage %s, error %v", s.Stage, s.LastError)
	}
}

// ExampleCheck runs the prechecks of a task before starting it, as migrate
// -check does, and refuses to start when one fails.
func ExampleCheck() {
	ctx := context.Background()
	src := dmworker.SourceConfig{Name: "shop-db", Upstream: streamer.UpstreamConfig{Host: "10.0.0.5", Port: 3306, User: "repl", Password: "..."}}
	task := dmworker.SubTaskConfig{Name: "shop", Mode: dmworker.ModeAll, Filter: dmworker.BlockAllowList{DoDBs: []string{"shop"}}}
	down, err := sql.Open("mysql", "root:...@tcp(127.0.0.1:4000)/")
	if err != nil {
		return
	}
	defer down.Close()
	rs := dmworker.Check(ctx, src, task, dmworker.WithCheckDownstream(down), dmworker.WithCheckRelayDir("/var/lib/dmworker/relay"))
	for _, r := range rs {
		fmt.Println(r) // "fail binlog_format: binlog_format is MIXED: ...; fix: set binlog_format=ROW ..."
	}
	if dmworker.CheckFailed(rs) {
		return // fix what the failures say first
	}
	// ... start the task: NewSubTask, or SourceWorker.StartSubTask
}

// WithoutPrecheck skips the binlog checks a Syncer or SubTask runs before
// it starts; a SourceWorker passes it to its subtasks.
func ExampleWithoutPrecheck() {
	up := streamer.UpstreamConfig{Name: "shop-db", Host: "127.0.0.1", Port: 3306, User: "repl"}
	t, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "orders"}, up, sinktest.NewMemSink(),
		dmworker.WithCheckpointStore(&dmworker.MemoryCheckpointStore{}), dmworker.WithoutPrecheck())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(t.Status().Stage)
	// Output: New
}
