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

// WaitInnoDBTrx waits, up to two minutes, until ok accepts the number of
// the server's transactions (information_schema.INNODB_TRX) that match
// where (an SQL condition; "" for all), and returns that number. It polls
// every 150ms: InnoDB refreshes that table's cache only when it has not been
// read for 100ms, so a faster poll reads a stale list for ever. On timeout
// it fails tb with what, the transactions it sees, and detail().
func WaitInnoDBTrx(tb testing.TB, db *sql.DB, what, where string, ok func(n int) bool, detail func() string) int {
	tb.Helper()
	q := "SELECT COUNT(*) FROM information_schema.INNODB_TRX"
	if where != "" {
		q += " WHERE " + where
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			tb.Fatal(err)
		}
		if ok(n) {
			return n
		}
		if time.Now().After(deadline) {
			more := ""
			if detail != nil {
				more = detail()
			}
			tb.Fatalf("no %s after two minutes (%d transactions: %s)\n%s", what, n, innoDBTrxList(db), more)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// innoDBTrxList describes the server's transactions, for a failure message.
func innoDBTrxList(db *sql.DB) string {
	rs, err := db.Query("SELECT CONCAT_WS(' ', trx_mysql_thread_id, trx_state, trx_started, IFNULL(trx_query, '')) FROM information_schema.INNODB_TRX")
	if err != nil {
		return err.Error()
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			return err.Error()
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}
