package dmworker_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// MariaDB's own test suite (the Debian package mariadb-test) as a
// workload: each file below runs, with the mariadb-test client, against a
// throwaway upstream that a native MariaDB replica and a Syncer (parallel,
// default options) both follow. Test files clean up after themselves, so
// comparing at their end proves little; the oracle is the native replica
// at intermediate points: before every DDL of the file's binlog (sampled
// down to mtrMaxPoints), and at its end, the replica is stopped there with
// START SLAVE UNTIL, the syncer's event stream is held there (mtrGate), and
// every table of every database of the two must be the same (schemaDiff).
// Nothing of MariaDB's test files is copied here: what they found is
// reproduced by SQL of our own (testdata/corpus, syncer_mtr_cases_test.go).

// mtrDir is where the Debian package mariadb-test installs the suite.
const mtrDir = "/usr/share/mysql/mysql-test"

// mtrMaxPoints bounds the comparison points of one file.
const mtrMaxPoints = 40

// mtrFile is one file of the suite the harness runs.
type mtrFile struct {
	path string // under mtrDir
	// workers is SyncerTuning.Workers; 0 is the default (parallel).
	workers int
	// meta is the upstream's binlog_row_metadata ("" is FULL).
	meta string
	// limit, when set, is the error the syncer must stop with: an
	// expected limit, which must come as a *SyncError naming a position.
	limit error
}

// mtrFiles are the files the harness runs, one line each with why it is
// there. Left out: the files that need mtr's topology (rpl, multi-source),
// a debug build, restarts, plugins, files under MYSQLTEST_VARDIR or LOAD
// DATA from std_data (most of main); those the native replica itself
// cannot follow in row format (main/rename, main/temp_table: a RENAME
// TABLE of temporary tables); main/insert_update (a sequence, not
// replicated: the DEFAULT NEXTVAL that uses it fails downstream with the
// sink's error); period/delete (stops where period/update does);
// main/type_year (stops at YEAR(2) at once, as main/null does later); the
// gcol and vcol files that need a larger max_allowed_packet than these
// servers'.
var mtrFiles = []mtrFile{
	// ALTER TABLE in most forms (found DROP and ADD of the only column);
	// stops at DROP FOREIGN KEY IF EXISTS. One worker: an ALTER adding an
	// AUTO_INCREMENT column to a MyISAM table numbers its rows in their
	// physical order, which parallel workers do not keep (README, Limits).
	{path: "main/alter_table.test", limit: errUnsup, workers: 1},
	{path: "main/alter_table.test", meta: "MINIMAL", limit: errUnsup, workers: 1}, // the same, names and charsets from the tracker only
	{path: "main/auto_increment.test"},                                            // AUTO_INCREMENT made by ALTER over rows holding 0 (found DDL.ZeroGetsAutoValue)
	{path: "main/check_constraint.test", limit: errUnsup},                         // rows written with check_constraint_checks=0 (found the sink's checks); stops at DROP CONSTRAINT IF EXISTS
	{path: "main/ctype_latin1.test", limit: errUnsup},                             // latin1 statements, a table named with 0xFF (found QueryText); stops at YEAR(2)
	{path: "main/cte_recursive.test"},                                             // INSERT ... WITH RECURSIVE: many rows from one statement, views (not replicated)
	{path: "main/delete.test"},                                                    // multi-table DELETE, DELETE ... ORDER BY LIMIT, keyless tables
	{path: "main/foreign_key.test", limit: errUnsup},                              // stops at a column's REFERENCES t without a column list
	{path: "main/insert_select.test"},                                             // INSERT ... SELECT between tables, IGNORE, ON DUPLICATE KEY
	{path: "main/replace.test"},                                                   // REPLACE: delete + insert in one row event pair
	{path: "main/truncate.test"},                                                  // TRUNCATE of MyISAM and InnoDB tables, with and without rows
	{path: "main/type_bit.test"},                                                  // BIT(1..64) values, keys on BIT
	{path: "main/type_char.test"},                                                 // CHAR padding
	{path: "main/type_int.test"},                                                  // integer edges, signed and unsigned, ZEROFILL
	{path: "main/type_int.test", meta: "MINIMAL"},                                 // the same with binlog_row_metadata MINIMAL (signedness from the tracker)
	{path: "main/type_newdecimal.test"},                                           // DECIMAL precision and scale edges, rounding
	{path: "main/null.test", limit: errUnsup},                                     // NULL in every type and position; stops at YEAR(2)
	{path: "main/type_time.test", limit: dmworker.ErrUnsupportedColumn},           // TIME edges (found MariaDB 5.3-format TIME(n) replicated as zeros); stops at the first such table
	{path: "main/type_set.test"},                                                  // SET columns with 64 members (found SET STATEMENT ... FOR CREATE TABLE)
	{path: "main/type_uint.test"},                                                 // unsigned edges
	{path: "main/update.test"},                                                    // multi-row UPDATE, ORDER BY LIMIT, key changes
	{path: "suite/json/t/json_table.test"},
	{path: "suite/json/t/type_json.test", limit: dmworker.ErrUnsupportedColumn}, // JSON under ALTER; stops at COMPRESSED columns                                        // JSON columns and JSON_TABLE reads feeding writes
	{path: "suite/period/t/update.test", limit: errUnsup},                       // PERIOD FOR: must stop, loudly, at the first CREATE TABLE
	{path: "suite/vcol/t/vcol_keys_innodb.test"},                                // keys on virtual and stored generated columns
	{path: "suite/versioning/t/simple.test", limit: errUnsup},                   // WITH SYSTEM VERSIONING: must stop, loudly
}

// errUnsup is dmworker.ErrUnsupportedDDL, short for the list above.
var errUnsup = dmworker.ErrUnsupportedDDL

// TestSyncerMTR runs mtrFiles (see above) and compares the native replica
// and the syncer's downstream at each file's points.
func TestSyncerMTR(t *testing.T) {
	bin, err := exec.LookPath("mariadb-test")
	if err == nil {
		_, err = os.Stat(filepath.Join(mtrDir, "include"))
	}
	if err != nil {
		if os.Getenv("DMWORKER_REQUIRE_SERVERS") == "1" {
			t.Fatalf("MariaDB's test suite is not installed (Debian package mariadb-test; make deps installs it): %v", err)
		}
		t.Skipf("MariaDB's test suite is not installed (Debian package mariadb-test): %v", err)
	}
	for i, f := range mtrFiles {
		name := strings.TrimSuffix(strings.ReplaceAll(strings.TrimPrefix(f.path, "suite/"), "/t/", "/"), ".test")
		if f.meta != "" {
			name += "/" + f.meta
		}
		t.Run(name, func(t *testing.T) { runMTRFile(t, bin, f, uint32(300+3*i)) })
	}
}

// runMTRFile runs one file on a new upstream, replica and downstream.
func runMTRFile(t *testing.T, bin string, f mtrFile, id uint32) {
	// The three servers are set up as mtr sets up its servers
	// (include/default_mysqld.cnf, mysql-test-run's MyISAM default), the
	// test files' results depend on it: latin1, MyISAM.
	args := []string{"--log-bin-trust-function-creators=1", "--character-set-server=latin1",
		"--collation-server=latin1_swedish_ci", "--default-storage-engine=MyISAM"}
	var up, rep, down *testserver.MariaDB
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		up = testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: id, RowMetadata: f.meta, ExtraArgs: args})
	}()
	go func() {
		defer wg.Done()
		rep = testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: id + 1, ExtraArgs: args})
	}()
	go func() {
		defer wg.Done()
		down = testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: id + 2, ExtraArgs: args})
	}()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	updb, repdb, downdb := up.DB(t), rep.DB(t), down.DB(t)
	// mtr's helper database, outside what is replicated: include files
	// call mtr.add_suppression.
	mustExec(t, updb, "CREATE DATABASE IF NOT EXISTS mtr")
	mustExec(t, updb, "CREATE PROCEDURE mtr.add_suppression(pattern VARCHAR(255)) BEGIN END")
	mustExec(t, updb, "DROP DATABASE IF EXISTS test")
	startFile, startPos := masterPos(t, updb)
	start := streamer.Position{Name: startFile, Offset: startPos}

	mustExec(t, repdb, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST = '%s', MASTER_PORT = %d, MASTER_USER = '%s', MASTER_PASSWORD = '%s', MASTER_LOG_FILE = '%s', MASTER_LOG_POS = %d, MASTER_USE_GTID = no",
		up.Host, up.Port, up.User, up.Password, startFile, startPos))

	gate := newMTRGate(start)
	sink, err := mysqlsink.New(downdb)
	if err != nil {
		t.Fatal(err)
	}
	cfg := dmworker.SyncerConfig{Task: "mtr", Upstream: upstreamOf(up), SyncerTuning: dmworker.SyncerTuning{Workers: f.workers}}
	s, err := dmworker.NewSyncer(cfg, sink, dmworker.WithReaderFactory(func(ctx context.Context, from streamer.Position) (streamer.Reader, error) {
		r, err := streamer.NewRemoteReader(upstreamOf(up), from)
		if err != nil {
			return nil, err
		}
		return &mtrGateReader{r: r, g: gate}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)

	mustExec(t, updb, "CREATE DATABASE test")
	tmp := t.TempDir()
	// As root over the socket, as mtr runs them: the files' own
	// "connect" commands use localhost and root.
	cmd := exec.Command(bin, "--socket="+up.Socket(), "--user=root", "--database=test", "--tmpdir="+tmp, "--basedir="+mtrDir+"/", "--test-file="+filepath.Join(mtrDir, f.path))
	cmd.Dir = mtrDir
	cmd.Env = append(os.Environ(), "MYSQL_TMP_DIR="+tmp, "MYSQLTEST_VARDIR="+tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("mariadb-test %s: %v\n%s", f.path, err, tail(out.String(), 2000))
	}

	points := mtrPoints(t, updb, start)
	t.Logf("%s: %d comparison points", f.path, len(points))
	prev := start
	for _, p := range points {
		// The native replica, to p.
		mustExec(t, repdb, fmt.Sprintf("START SLAVE UNTIL MASTER_LOG_FILE = '%s', MASTER_LOG_POS = %d", p.pos.Name, p.pos.Offset))
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			st := slaveStatus(t, repdb)
			if st["Last_SQL_Errno"] != "0" || st["Last_IO_Errno"] != "0" {
				t.Fatalf("%s: the native replica failed before %s: %s %s", f.path, p, st["Last_SQL_Error"], st["Last_IO_Error"])
			}
			// At the binlog's end the replica reaches the position but
			// stops only at the next event.
			if st["Slave_SQL_Running"] == "No" || st["Relay_Master_Log_File"] == p.pos.Name && st["Exec_Master_Log_Pos"] == strconv.FormatUint(p.pos.Offset, 10) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the native replica did not stop at %s: %v", f.path, p, st)
			}
		}
		st := slaveStatus(t, repdb)
		if st["Relay_Master_Log_File"] != p.pos.Name || st["Exec_Master_Log_Pos"] != strconv.FormatUint(p.pos.Offset, 10) {
			t.Fatalf("the replica stopped at %s:%s, not %s", st["Relay_Master_Log_File"], st["Exec_Master_Log_Pos"], p.pos)
		}
		// The syncer, to p.
		gate.raise(p.pos)
		deadline := time.Now().Add(time.Minute)
		for s.Status().Checkpoint.Compare(p.pos) < 0 {
			select {
			case <-run.done:
				checkMTRStop(t, f, run.err, p)
				return
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the syncer is at %s (read %s), not at %s", s.Status().Checkpoint, s.Status().Read, p)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if d := schemaDiff(t, repdb, downdb, "NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'mtr', 'dmworker_meta')", nil); d != "" {
			t.Fatalf("%s: the native replica and the downstream differ at %s:\n%s\nthe binlog since the last point:\n%s", f.path, p, d, binlogSince(t, updb, prev, p.pos))
		}
		prev = p.pos
	}
	if f.limit != nil {
		t.Fatalf("%s: the syncer did not stop with %v", f.path, f.limit)
	}
	_ = run.Stop()
}

// checkMTRStop checks the error the syncer stopped with before p.
func checkMTRStop(t *testing.T, f mtrFile, err error, p mtrPoint) {
	t.Helper()
	var se *dmworker.SyncError
	if f.limit == nil || !errors.Is(err, f.limit) {
		t.Fatalf("%s: the syncer stopped before %s: %v", f.path, p, err)
	}
	if !errors.As(err, &se) || se.Pos.Name == "" {
		t.Fatalf("%s: %v does not name its position", f.path, err)
	}
	t.Logf("%s: the syncer stopped with the expected limit: %v", f.path, err)
}

// mtrPoint is a comparison point: a position between transactions, and
// the DDL that comes next (empty at the end).
type mtrPoint struct {
	pos  streamer.Position
	next string
}

func (p mtrPoint) String() string {
	if p.next == "" {
		return p.pos.String() + " (the end)"
	}
	return fmt.Sprintf("%s (before %.200s)", p.pos, p.next)
}

// mtrPoints returns the positions before each DDL of the upstream's binlog
// from start on, sampled down to mtrMaxPoints, and its end.
func mtrPoints(t *testing.T, db *sql.DB, start streamer.Position) []mtrPoint {
	t.Helper()
	var pts []mtrPoint
	var end streamer.Position
	for _, lf := range queryRows(t, db, "SHOW BINARY LOGS") {
		fields := strings.Split(lf, "|")
		file := strings.Trim(fields[0], `"`)
		if compareBinlogName(file, start.Name) < 0 {
			continue
		}
		rows, err := db.Query("SHOW BINLOG EVENTS IN '" + file + "'")
		if err != nil {
			t.Fatal(err)
		}
		var gtidAt uint64
		var inDDL bool
		for rows.Next() {
			var logName, typ, info string
			var pos, srv, endPos uint64
			if err := rows.Scan(&logName, &pos, &typ, &srv, &endPos, &info); err != nil {
				t.Fatal(err)
			}
			end = streamer.Position{Name: file, Offset: endPos}
			if file == start.Name && pos < start.Offset {
				continue
			}
			switch {
			case typ == "Gtid":
				gtidAt, inDDL = pos, !strings.HasPrefix(info, "BEGIN")
			case typ == "Query" && inDDL:
				pts = append(pts, mtrPoint{pos: streamer.Position{Name: file, Offset: gtidAt}, next: info})
				inDDL = false
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(pts) > mtrMaxPoints {
		sampled := make([]mtrPoint, 0, mtrMaxPoints)
		for i := range mtrMaxPoints {
			sampled = append(sampled, pts[i*len(pts)/mtrMaxPoints])
		}
		pts = sampled
	}
	return append(pts, mtrPoint{pos: end})
}

// binlogSince returns the events of the upstream's binlog from one
// position to another (same file), the last 60, one a line.
func binlogSince(t *testing.T, db *sql.DB, from, to streamer.Position) string {
	t.Helper()
	if from.Name != to.Name {
		return "(another file)"
	}
	var lines []string
	for _, r := range queryRows(t, db, fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d", from.Name, from.Offset)) {
		f := strings.Split(r, "|")
		if end, _ := strconv.ParseUint(strings.Trim(f[4], `"`), 10, 64); end > to.Offset {
			break
		}
		lines = append(lines, fmt.Sprintf("%.300s", r))
	}
	return strings.Join(lines[max(0, len(lines)-60):], "\n")
}

// compareBinlogName orders binlog file names of one server.
func compareBinlogName(a, b string) int {
	return streamer.Position{Name: a}.Compare(streamer.Position{Name: b})
}

// slaveStatus returns SHOW SLAVE STATUS as column → value.
func slaveStatus(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query("SHOW SLAVE STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	st := map[string]string{}
	if !rows.Next() {
		t.Fatal("no replica status")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		st[c] = vals[i].String
	}
	return st
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// mtrGate holds a syncer's events after a position until it is raised.
type mtrGate struct {
	mu     sync.Mutex
	limit  streamer.Position
	raised chan struct{} // closed, and replaced, by raise
}

func newMTRGate(limit streamer.Position) *mtrGate {
	return &mtrGate{limit: limit, raised: make(chan struct{})}
}

// raise lets events through up to limit.
func (g *mtrGate) raise(limit streamer.Position) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit = limit
	close(g.raised)
	g.raised = make(chan struct{})
}

// mtrGateReader is a reader that delivers no event whose end lies beyond
// its gate's limit.
type mtrGateReader struct {
	r    streamer.Reader
	g    *mtrGate
	held *streamer.Event
}

func (r *mtrGateReader) GetEvent(ctx context.Context) (*streamer.Event, error) {
	ev := r.held
	if ev == nil {
		var err error
		if ev, err = r.r.GetEvent(ctx); err != nil {
			return nil, err
		}
	}
	for {
		r.g.mu.Lock()
		ok, raised := ev.Pos.Compare(r.g.limit) <= 0, r.g.raised
		r.g.mu.Unlock()
		if ok {
			r.held = nil
			return ev, nil
		}
		r.held = ev
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-raised:
		}
	}
}

// SetTableFilter passes the syncer's table filter on.
func (r *mtrGateReader) SetTableFilter(keep func(schema, table string) bool) {
	if f, ok := r.r.(streamer.TableFilterer); ok {
		f.SetTableFilter(keep)
	}
}

func (r *mtrGateReader) Close() error { return r.r.Close() }

// TestSyncerLatin1Statements: the server logs a statement in its client's
// character set. A table named, by a latin1 client, with a byte above 0x7F
// (`abc\xffdef`, "abcÿdef") was tracked under the latin1 bytes while its
// rows events name it in UTF-8: the rows stopped the task with
// ErrUnknownTable. The syncer reads latin1 statements as what they say;
// string literals of the DDL come with their meaning too.
func TestSyncerLatin1Statements(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 82})
	p.workers = 4
	s, err := dmworker.NewSyncer(p.config("latin1"), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	conn, err := p.updb.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET NAMES latin1", "CREATE DATABASE c_l\xe41 CHARACTER SET utf8mb4",
		"CREATE TABLE c_l\xe41.`abc\xffdef` (id INT PRIMARY KEY, `v\xe9` VARCHAR(10) DEFAULT 'd\xe9j\xe0', w VARCHAR(10) CHARACTER SET latin1 DEFAULT '\x80uro')",
		"INSERT INTO c_l\xe41.`abc\xffdef` (id) VALUES (1)",
		"INSERT INTO c_l\xe41.`abc\xffdef` VALUES (2, '\xe7a', '\xe7a')",
		"ALTER TABLE c_l\xe41.`abc\xffdef` ADD COLUMN `\xdf` INT DEFAULT 7, RENAME TO c_l\xe41.`\xe5\xe4\xf6`",
		"INSERT INTO c_l\xe41.`\xe5\xe4\xf6` (id, w) VALUES (3, 'x')"} {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%q: %v", q, err)
		}
	}
	waitSynced(t, run, p.updb)
	if got := queryRows(t, p.downdb, "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'c_lä1'"); len(got) != 1 || got[0] != `"c_lä1"|"åäö"` {
		t.Fatalf("downstream tables %q", got)
	}
	if d := schemaDiff(t, p.updb, p.downdb, "= 'c_lä1'", nil); d != "" {
		t.Fatal(d)
	}
}

// TestSyncerUnsupportedColumns: MariaDB's COMPRESSED columns (binlog types
// 140 and 141) and the TIME, DATETIME and TIMESTAMP of MariaDB 5.3's format
// (mysql56_temporal_format=OFF, as in tables made before 10.1) are beyond
// go-mysql's decoder: the reader stopped at their rows with an error of
// its own, or a recovered panic, that nothing could match. The syncer
// stops at the table map with ErrUnsupportedColumn naming table and
// position, before any row; a table the task does not replicate does not
// stop it.
func TestSyncerUnsupportedColumns(t *testing.T) {
	for _, tc := range []struct{ name, setup, create string }{
		{"compressed", "", "CREATE TABLE c_col.t (id INT PRIMARY KEY, v VARCHAR(30) COMPRESSED, b TEXT COMPRESSED, w VARCHAR(300))"},
		{"temporal53", "SET GLOBAL mysql56_temporal_format = OFF", "CREATE TABLE c_col.t (id INT PRIMARY KEY, t TIME(3), d DATETIME(2), w VARCHAR(300))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 83})
			p.workers = 4
			cfg := p.config("cols")
			cfg.Filter = dmworker.BlockAllowList{IgnoreDBs: []string{"c_skip"}}
			s, err := dmworker.NewSyncer(cfg, p.sink)
			if err != nil {
				t.Fatal(err)
			}
			run := runSyncer(t, s)
			if tc.setup != "" {
				mustExec(t, p.updb, tc.setup)
			}
			mustExec(t, p.updb, "CREATE DATABASE c_skip")
			mustExec(t, p.updb, strings.Replace(tc.create, "c_col.", "c_skip.", 1))
			mustExec(t, p.updb, "INSERT INTO c_skip.t (id, w) VALUES (1, 'x')")
			mustExec(t, p.updb, "CREATE DATABASE c_col")
			mustExec(t, p.updb, tc.create)
			mustExec(t, p.updb, "INSERT INTO c_col.t (id, w) VALUES (1, 'x')")
			runErr := run.Wait(t)
			var se *dmworker.SyncError
			if !errors.Is(runErr, dmworker.ErrUnsupportedColumn) || !errors.As(runErr, &se) {
				t.Fatalf("Run: %v, want ErrUnsupportedColumn in a *SyncError", runErr)
			}
			if se.Table != "c_col.t" || se.Pos.Name == "" {
				t.Fatalf("error does not name table and position: %+v", se)
			}
			if n := queryRows(t, p.downdb, "SELECT COUNT(*) FROM c_col.t"); n[0] != `"0"` {
				t.Fatalf("%s rows written downstream", n[0])
			}
		})
	}
}
