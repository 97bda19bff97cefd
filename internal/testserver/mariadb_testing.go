package testserver

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

const (
	// startTimeout bounds StartMariaDB, template build included.
	startTimeout = 3 * time.Minute
	// execTimeout bounds one Exec.
	execTimeout = 2 * time.Minute
)

// StartMariaDB starts a MariaDB for a test in a directory under tb.TempDir()
// and registers a cleanup that stops it and removes its files, whether the
// test passed or not (after logging the tail of the error log if it failed).
// When MariaDB is not installed the test is skipped, or fails if Required().
// Any number may run at once, each on its own free port.
func StartMariaDB(tb testing.TB, opts MariaDBOptions) *MariaDB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	m, err := Start(ctx, tb.TempDir(), opts)
	if errors.Is(err, ErrNoBinaries) {
		const hint = "install MariaDB (`apt-get install mariadb-server`) or run `make test`"
		if Required() {
			tb.Fatalf("%v; %s=1 requires it: %s", err, RequireServersEnv, hint)
		}
		tb.Skipf("skipping, no MariaDB: %v; %s", err, hint)
	}
	if err != nil {
		tb.Fatalf("start mariadb: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("mariadb %s (server_id %d) error log tail:\n%s", m.Addr(), m.opts.ServerID, logSince(m.errLog, 0))
		}
		if err := m.Close(); err != nil {
			tb.Errorf("close mariadb %s: %v", m.Addr(), err)
		}
	})
	return m
}

// DB opens a connection pool for DSN("") and closes it at the end of the
// test.
func (m *MariaDB) DB(tb testing.TB) *sql.DB {
	tb.Helper()
	conn, err := mysql.NewConnector(m.quietConfig())
	if err != nil {
		tb.Fatalf("mariadb %s: %v", m.Addr(), err)
	}
	db := sql.OpenDB(conn)
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// Exec runs query (several statements are allowed) and fails the test on
// error.
func (m *MariaDB) Exec(tb testing.TB, query string, args ...any) {
	tb.Helper()
	db, err := m.sqlDB()
	if err != nil {
		tb.Fatalf("mariadb %s: %v", m.Addr(), err)
	}
	// Not tb.Context(): that is cancelled before cleanups run, and Exec is
	// fair to use in a cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		tb.Fatalf("mariadb %s: exec %q: %v", m.Addr(), shorten(query, 200), err)
	}
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
