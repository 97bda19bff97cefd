package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

// TestMigrateCheck: migrate -check passes on a good upstream and fails,
// saying what to set, on one whose binlog_format is STATEMENT, on one with
// the binlog off and for a user without REPLICATION SLAVE.
func TestMigrateCheck(t *testing.T) {
	up := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 76})
	off := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 77, ExtraArgs: []string{"--skip-log-bin"}})
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 78})
	up.Exec(t, "CREATE DATABASE app")
	up.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	up.Exec(t, "CREATE USER 'norepl'@'%' IDENTIFIED BY 'pw'")
	up.Exec(t, "GRANT SELECT, RELOAD, BINLOG MONITOR ON *.* TO 'norepl'@'%'")
	to := fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr())
	from := func(m *testserver.MariaDB) string { return fmt.Sprintf("%s:%s@%s", m.User, m.Password, m.Addr()) }
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	check := func(from string, code int, says string) {
		t.Helper()
		var stdout, stderr syncBuffer
		got := run(ctx, []string{"-check", "-from", from, "-to", to, "-tables", "app.*", "-data-dir", t.TempDir()}, &stdout, &stderr)
		if got != code || !strings.Contains(stdout.String(), says) {
			t.Errorf("-check -from %s: exit %d, want %d saying %q\nstdout:\n%s\nstderr:\n%s", from, got, code, says, stdout.String(), stderr.String())
		}
	}
	check(from(up), 0, "0 failed")
	up.Exec(t, "SET GLOBAL binlog_format = 'STATEMENT'")
	check(from(up), 1, "fail binlog_format: binlog_format is STATEMENT: row changes are logged as statements; fix: set binlog_format=ROW")
	up.Exec(t, "SET GLOBAL binlog_format = 'ROW'")
	check(from(off), 1, "fail log_bin: the binlog is off")
	check("norepl:pw@"+up.Addr(), 1, "fail upstream privileges: the upstream user lacks REPLICATION SLAVE")
}
