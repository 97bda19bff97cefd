package testserver_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 30 * time.Second

func queryString(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	var s sql.NullString
	if err := db.QueryRowContext(t.Context(), query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s.String
}

// startConcurrently starts one server per options value at the same time,
// through Start, and stops them at cleanup.
func startConcurrently(t *testing.T, opts ...testserver.MariaDBOptions) []*testserver.MariaDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	servers := make([]*testserver.MariaDB, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		dir := t.TempDir()
		wg.Go(func() { servers[i], errs[i] = testserver.Start(ctx, dir, o) })
	}
	wg.Wait()
	for _, m := range servers {
		if m != nil {
			t.Cleanup(func() {
				if err := m.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
		}
	}
	for _, err := range errs {
		if errors.Is(err, testserver.ErrNoBinaries) && !testserver.Required() {
			t.Skipf("no MariaDB: %v", err)
		}
		if err != nil {
			t.Fatalf("start: %v", err)
		}
	}
	return servers
}

func TestTwoServersAtOnce(t *testing.T) {
	t.Parallel()
	servers := startConcurrently(t,
		testserver.MariaDBOptions{ServerID: 11},
		testserver.MariaDBOptions{ServerID: 22},
	)
	if servers[0].Port == servers[1].Port {
		t.Fatalf("both servers on port %d", servers[0].Port)
	}
	for i, m := range servers {
		wantID := fmt.Sprint([]uint32{11, 22}[i])
		db := m.DB(t)

		for _, c := range []struct{ query, want string }{
			{"SELECT @@log_bin", "1"},
			{"SELECT @@binlog_format", "ROW"},
			{"SELECT @@binlog_row_image", "FULL"},
			{"SELECT @@binlog_row_metadata", "FULL"},
			{"SELECT @@binlog_checksum", "CRC32"},
			{"SELECT @@log_slave_updates", "1"},
			{"SELECT @@server_id", wantID},
			{"SELECT @@gtid_domain_id", "0"},
			{"SELECT @@port", fmt.Sprint(m.Port)},
		} {
			if got := queryString(t, db, c.query); got != c.want {
				t.Errorf("server %d: %s = %q, want %q", i, c.query, got, c.want)
			}
		}
		grants := queryString(t, db, "SHOW GRANTS")
		if !strings.Contains(grants, "ALL PRIVILEGES ON *.*") || !strings.Contains(grants, "WITH GRANT OPTION") {
			t.Errorf("server %d: grants %q", i, grants)
		}

		before := queryString(t, db, "SELECT @@gtid_binlog_pos")
		m.Exec(t, "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(20))")
		m.Exec(t, "INSERT INTO d.t VALUES (?, ?)", i, "server"+wantID)
		after := queryString(t, db, "SELECT @@gtid_binlog_pos")
		if after == before || !strings.HasPrefix(after, "0-"+wantID+"-") {
			t.Errorf("server %d: gtid_binlog_pos %q -> %q, want a new 0-%s-N", i, before, after, wantID)
		}

		files, err := m.BinlogFiles(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 || filepath.Base(files[0]) != "mysql-bin.000001" {
			t.Fatalf("server %d: binlog files %v", i, files)
		}
		for _, f := range files {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("server %d: %v", i, err)
			}
		}
		if !strings.Contains(m.DSN("d"), "tcp("+m.Addr()+")/d?") ||
			!strings.Contains(m.DSN("d"), "interpolateParams=true") ||
			!strings.Contains(m.DSN("d"), "multiStatements=true") {
			t.Errorf("DSN %q", m.DSN("d"))
		}
	}
	// Each server has its own data.
	if got := queryString(t, servers[1].DB(t), "SELECT v FROM d.t"); got != "server22" {
		t.Errorf("second server has %q", got)
	}
}

func TestRowMetadataMinimalAndDomainID(t *testing.T) {
	t.Parallel()
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{
		ServerID: 3, RowMetadata: "MINIMAL", GTIDDomainID: 7,
	})
	db := m.DB(t)
	if got := queryString(t, db, "SELECT @@binlog_row_metadata"); got != "MINIMAL" {
		t.Errorf("binlog_row_metadata = %q, want MINIMAL", got)
	}
	m.Exec(t, "CREATE DATABASE d")
	if got := queryString(t, db, "SELECT @@gtid_binlog_pos"); !strings.HasPrefix(got, "7-3-") {
		t.Errorf("gtid_binlog_pos = %q, want 7-3-N", got)
	}
}

func TestMaxBinlogSizeRotates(t *testing.T) {
	t.Parallel()
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{MaxBinlogSize: 4096})
	db := m.DB(t)
	if got := queryString(t, db, "SELECT @@max_binlog_size"); got != "4096" {
		t.Errorf("max_binlog_size = %s", got)
	}
	m.Exec(t, "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT)")

	// Each transaction is ~2 KB of binlog: the file rotates every few.
	deadline := time.Now().Add(waitTimeout)
	var files []string
	for i := 0; len(files) < 4; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d inserts the binlog files are still %v", i, files)
		}
		m.Exec(t, "INSERT INTO d.t VALUES (?, ?)", i, strings.Repeat("x", 2000))
		var err error
		if files, err = m.BinlogFiles(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		if want := fmt.Sprintf("mysql-bin.%06d", i+1); filepath.Base(f) != want {
			t.Errorf("file %d is %s, want %s", i, f, want)
		}
	}
	rows, err := db.QueryContext(t.Context(), "SHOW BINARY LOGS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var n int
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n < len(files) {
		t.Errorf("SHOW BINARY LOGS lists %d files, index %d", n, len(files))
	}
}

func TestKillRestartKeepsData(t *testing.T) {
	t.Parallel()
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 5})
	m.Exec(t, "CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)")
	for i := range 100 {
		m.Exec(t, "INSERT INTO d.t VALUES (?)", i)
	}
	db := m.DB(t)
	gtid := queryString(t, db, "SELECT @@gtid_binlog_pos")
	port := m.Port

	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	probe, err := sql.Open("mysql", m.DSN("")+"&timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.PingContext(ctx); err == nil {
		t.Error("ping succeeded after Kill")
	}
	probe.Close()
	cancel()

	if err := m.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m.Port != port {
		t.Errorf("port changed from %d to %d", port, m.Port)
	}
	if got := queryString(t, db, "SELECT COUNT(*) FROM d.t"); got != "100" {
		t.Errorf("after kill and restart: %s rows, want 100", got)
	}
	if got := queryString(t, db, "SELECT @@gtid_binlog_pos"); got != gtid {
		t.Errorf("gtid_binlog_pos after restart %q, want %q", got, gtid)
	}

	// A graceful stop and restart works too, and writes go on.
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	m.Exec(t, "INSERT INTO d.t VALUES (100)")
	if got := queryString(t, db, "SELECT COUNT(*) FROM d.t"); got != "101" {
		t.Errorf("after stop and restart: %s rows, want 101", got)
	}
	if err := m.Restart(t.Context()); err == nil {
		t.Error("Restart of a running server succeeded")
	}
	files, err := m.BinlogFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 { // each start opens a new binlog file
		t.Errorf("binlog files after two restarts: %v", files)
	}
	log, err := os.ReadFile(m.ErrorLog())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(log), "ready for connections") != 3 {
		t.Errorf("error log does not show three starts:\n%s", log)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []testserver.MariaDBOptions{
		{RowMetadata: "bogus"},
		{MaxBinlogSize: 100},
		{MaxBinlogSize: 2 << 30},
		{MaxBinlogSize: -1},
	} {
		if _, err := testserver.Start(t.Context(), t.TempDir(), o); err == nil || errors.Is(err, testserver.ErrNoBinaries) {
			t.Errorf("Start(%+v) = %v, want an options error", o, err)
		}
	}
}

func TestStartRefusesNonEmptyDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := testserver.Start(t.Context(), dir, testserver.MariaDBOptions{})
	if errors.Is(err, testserver.ErrNoBinaries) && !testserver.Required() {
		t.Skip(err)
	}
	if err == nil {
		t.Fatal("Start in a non-empty directory succeeded")
	}
	if _, statErr := os.Stat(keep); statErr != nil {
		t.Errorf("Start removed existing files: %v", statErr)
	}
}

func TestCloseRemovesDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a-rather-long-directory-name-to-push-the-unix-socket-path-beyond-its-limit", "instance")
	m, err := testserver.Start(t.Context(), dir, testserver.MariaDBOptions{})
	if errors.Is(err, testserver.ErrNoBinaries) && !testserver.Required() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.Socket()) > 107 {
		t.Errorf("socket path %d bytes long: %s", len(m.Socket()), m.Socket())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory still there after Close: %v", err)
	}
	if _, err := os.Stat(m.Socket()); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
