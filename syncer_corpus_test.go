package dmworker_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/snapshot"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// The corpus: testdata/corpus/*.sql are schemas and workloads in the shapes
// real applications and other projects' replication test suites write
// (type edge values, keys of every kind, foreign keys, multi-table DML,
// upserts, DDL mid-stream, sql_modes). Each file creates its own databases,
// named c_*. A line "-- @snapshot" splits a file: what comes before it runs
// before a full+incremental subtask starts (its snapshot copies it), what
// comes after while the subtask replicates. Statements end with ";" at the
// end of a line, or with the delimiter a "DELIMITER x" line sets, as the
// mysql client reads them.

// corpusStmt is one statement of a corpus file.
type corpusStmt struct {
	sql  string
	line int
	pre  bool // before the file's "-- @snapshot"
}

// corpusFile is one file of the corpus.
type corpusFile struct {
	name  string
	stmts []corpusStmt
}

func loadCorpus(t *testing.T) []corpusFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.sql"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus files: %v", err)
	}
	var files []corpusFile
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		cf := corpusFile{name: filepath.Base(path)}
		delim, pre := ";", true
		var cur strings.Builder
		start := 0
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			trim := strings.TrimSpace(line)
			if cur.Len() == 0 {
				switch {
				case trim == "-- @snapshot":
					pre = false
					continue
				case trim == "" || strings.HasPrefix(trim, "--"):
					continue
				case strings.HasPrefix(strings.ToUpper(trim), "DELIMITER "):
					delim = strings.TrimSpace(trim[len("DELIMITER "):])
					continue
				}
				start = n
			}
			cur.WriteString(line)
			cur.WriteByte('\n')
			if strings.HasSuffix(trim, delim) {
				q := strings.TrimSpace(cur.String())
				q = strings.TrimSpace(strings.TrimSuffix(q, delim))
				cf.stmts = append(cf.stmts, corpusStmt{sql: q, line: start, pre: pre})
				cur.Reset()
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if cur.Len() != 0 {
			t.Fatalf("%s: statement at line %d does not end", path, start)
		}
		files = append(files, cf)
	}
	return files
}

// corpusRunner runs the corpus on an upstream, each file on a session of
// its own (sql_mode, time zone and USE carry from a file's first part to
// its second).
type corpusRunner struct {
	db    *sql.DB
	files []corpusFile
	conns map[string]*sql.Conn
	// before, when set, is called before each statement (fault injection).
	before func()
	// ids are the upstream connection ids of the runner's sessions.
	mu  sync.Mutex
	ids map[int64]bool
}

func newCorpusRunner(t *testing.T, db *sql.DB) *corpusRunner {
	t.Helper()
	r := &corpusRunner{db: db, files: loadCorpus(t), conns: map[string]*sql.Conn{}, ids: map[int64]bool{}}
	t.Cleanup(func() {
		for _, c := range r.conns {
			_ = c.Close()
		}
	})
	return r
}

// sessionIDs returns the connection ids of the runner's sessions.
func (r *corpusRunner) sessionIDs() map[int64]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.ids)
}

// run runs the statements of every file with pre == part ("pre", "post")
// or all of them ("all"), file by file.
func (r *corpusRunner) run(t *testing.T, part string) {
	t.Helper()
	ctx := context.Background()
	for _, f := range r.files {
		conn := r.conns[f.name]
		if conn == nil {
			var err error
			if conn, err = r.db.Conn(ctx); err != nil {
				t.Fatal(err)
			}
			var id int64
			if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
				t.Fatal(err)
			}
			r.mu.Lock()
			r.ids[id] = true
			r.mu.Unlock()
			r.conns[f.name] = conn
		}
		for _, s := range f.stmts {
			if part == "pre" && !s.pre || part == "post" && s.pre {
				continue
			}
			if r.before != nil {
				r.before()
			}
			if _, err := conn.ExecContext(ctx, s.sql); err != nil {
				t.Fatalf("%s:%d: %v\n%s", f.name, s.line, err, s.sql)
			}
		}
	}
}

// queryRows returns the rows of a query as strings, in its order.
func queryRows(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if i > 0 {
				b.WriteString("|")
			}
			if v == nil {
				b.WriteString("NULL")
			} else {
				fmt.Fprintf(&b, "%q", string(v))
			}
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkCorpusEqual compares the corpus databases (c_*) of up and down: the
// same databases, the same base tables, the same columns (type, charset,
// collation, nullability, default, generation, visibility) and the same
// rows, invisible columns included.
func checkCorpusEqual(t *testing.T, up, down *sql.DB) { checkCorpusEqualExcept(t, up, down, nil) }

// checkCorpusEqualExcept is checkCorpusEqual, but the rows of the tables
// rowsExempt names are not compared (their columns are).
func checkCorpusEqualExcept(t *testing.T, up, down *sql.DB, rowsExempt map[string]bool) {
	t.Helper()
	if len(queryRows(t, up, `SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'c\_%'`)) == 0 {
		t.Fatal("no corpus databases upstream")
	}
	if d := schemaDiff(t, up, down, `LIKE 'c\_%'`, rowsExempt); d != "" {
		t.Fatal(d)
	}
}

// schemaDiff compares the databases whose names match cond (an SQL
// condition on the name, such as "LIKE 'c\_%'") of up and down: the same
// databases, the same tables (base and system-versioned; views and
// sequences are not replicated: see the README's limits), the same columns (type, charset, collation, nullability,
// default, generation, visibility) and the same rows, invisible columns
// and the history of system-versioned tables included. It returns the
// first difference, or "" when there is none. The rows of the tables
// rowsExempt names are not compared (their columns are).
func schemaDiff(t *testing.T, up, down *sql.DB, cond string, rowsExempt map[string]bool) string {
	t.Helper()
	differ := func(what string, a, b []string) string {
		if slices.Equal(a, b) {
			return ""
		}
		return fmt.Sprintf("%s differ:\n up:   %q\n down: %q", what, a, b)
	}
	schemas := `SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME ` + cond + ` ORDER BY 1`
	if d := differ("databases", queryRows(t, up, schemas), queryRows(t, down, schemas)); d != "" {
		return d
	}
	tables := `SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA ` + cond + `
		AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY 1`
	tbls := queryRows(t, up, tables)
	if d := differ("tables", tbls, queryRows(t, down, tables)); d != "" {
		return d
	}
	for _, q := range tbls {
		nameq, kind, _ := strings.Cut(q, "|")
		name := strings.Trim(nameq, `"`)
		schema, table, _ := strings.Cut(name, ".")
		var history string
		if kind == `"SYSTEM VERSIONED"` {
			history = " FOR SYSTEM_TIME ALL"
		}
		// A nullable column without a default and one with DEFAULT NULL
		// differ only in how information_schema reports them (NULL,
		// 'NULL'); a CREATE TABLE ... SELECT is logged with DEFAULT NULL,
		// and MariaDB's own replicas differ from their primary so too.
		// The tracker renders string literals of expressions (defaults,
		// generated columns) with a _utf8mb4 introducer (same values; reported as a difference).
		const columns = `SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME,
			REPLACE(IF(IS_NULLABLE = 'YES', COALESCE(COLUMN_DEFAULT, 'NULL'), COLUMN_DEFAULT), '_utf8mb4''', ''''),
			REPLACE(GENERATION_EXPRESSION, '_utf8mb4''', ''''), IS_GENERATED, EXTRA
			FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`
		if d := differ(name+" columns", queryRows(t, up, columns, schema, table), queryRows(t, down, columns, schema, table)); d != "" {
			return d
		}
		var names []string
		for _, c := range queryRows(t, up, "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", schema, table) {
			names = append(names, "`"+strings.ReplaceAll(strings.Trim(c, `"`), "`", "``")+"`")
		}
		if rowsExempt[name] {
			t.Logf("%s: rows not compared", name)
			continue
		}
		sel := "SELECT " + strings.Join(names, ", ") + " FROM `" + schema + "`.`" + table + "`" + history
		a, b := queryRows(t, up, sel), queryRows(t, down, sel)
		slices.Sort(a)
		slices.Sort(b)
		if len(a) != len(b) {
			return fmt.Sprintf("%s has %d rows upstream, %d downstream:\n up:   %.600q\n down: %.600q", name, len(a), len(b), a, b)
		}
		for i := range a {
			if a[i] != b[i] {
				return fmt.Sprintf("%s differs at sorted row %d:\n up:   %.400s\n down: %.400s", name, i, a[i], b[i])
			}
		}
	}
	return ""
}

// TestSyncerCorpus replicates the whole corpus, DDL included, through the
// syncer with the parallel applier, starting before its first statement.
// With binlog_row_metadata MINIMAL too, where column names and charsets
// come from the tracker only.
func TestSyncerCorpus(t *testing.T) {
	for _, meta := range []string{"FULL", "MINIMAL"} {
		t.Run(meta, func(t *testing.T) {
			p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 71, MaxBinlogSize: 256 << 10, RowMetadata: meta})
			p.workers = 8
			s, err := dmworker.NewSyncer(p.config("corpus"), p.sink)
			if err != nil {
				t.Fatal(err)
			}
			run := runSyncer(t, s)
			newCorpusRunner(t, p.updb).run(t, "all")
			waitSynced(t, run, p.updb)
			checkCorpusEqual(t, p.updb, p.downdb)
			if err := run.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSubTaskCorpus runs each corpus file's first part, copies it with a
// full+incremental subtask and replicates the second part.
func TestSubTaskCorpus(t *testing.T) {
	p := newPair(t, 72, 172, testserver.MariaDBOptions{})
	r := newCorpusRunner(t, p.updb)
	r.run(t, "pre")
	cfg := dmworker.SubTaskConfig{Name: "corpus", Mode: dmworker.ModeAll,
		Snapshot:     dmworker.SnapshotConfig{Concurrency: 4, ChunkRows: 300},
		SyncerTuning: dmworker.SyncerTuning{Workers: 8}}
	st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	// The second part runs once the copy is done: a DDL while the copy's
	// snapshot transactions hold a table's metadata lock can wait on one
	// of them while another waits on the DDL (see the report of this
	// test's commit; TestSubTaskSnapshotNonTransactional writes during
	// the copy).
	waitCopyDone(t, st)
	r.run(t, "post")
	waitSubTaskSynced(t, st.Status, p)
	checkCorpusEqual(t, p.updb, p.downdb)
}

// TestSubTaskSnapshotNonTransactional: a MyISAM and an Aria table are read
// as they are when read, not at the snapshot's point; rows written to them
// during the copy are in the copy and in the binlog after the point. The
// syncer replays them in safe mode, and the downstream equals the
// upstream (it stopped on a duplicate key).
func TestSubTaskSnapshotNonTransactional(t *testing.T) {
	p := newPair(t, 76, 176, testserver.MariaDBOptions{})
	mustExec(t, p.updb, "CREATE DATABASE c_ntx")
	mustExec(t, p.updb, "CREATE TABLE c_ntx.big (id INT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB")
	mustExec(t, p.updb, "CREATE TABLE c_ntx.my (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)) ENGINE=MyISAM")
	mustExec(t, p.updb, "CREATE TABLE c_ntx.ar (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)) ENGINE=Aria")
	mustExec(t, p.updb, "INSERT INTO c_ntx.big SELECT seq, REPEAT('x', 200) FROM c_ntx.seq_1_to_20000")
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "ntx", Mode: dmworker.ModeAll,
		Snapshot: dmworker.SnapshotConfig{Concurrency: 1, ChunkRows: 500}}, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		db := p.up.DB(t)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, q := range []string{"INSERT INTO c_ntx.my (v) VALUES ('w')", "INSERT INTO c_ntx.ar (v) VALUES ('w')", "UPDATE c_ntx.my SET v = 'u' WHERE id % 7 = 0"} {
				if _, err := db.Exec(q); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	runSubTask(t, st)
	waitCopyDone(t, st)
	close(stop)
	<-wrote
	waitSubTaskSynced(t, st.Status, p)
	if s := st.Status(); s.Snapshot.SafeUntil.Compare(s.Snapshot.Pos) <= 0 {
		t.Fatalf("the copy read non-transactional tables and left no replay window: %+v", s.Snapshot)
	}
	for _, tb := range []string{"c_ntx.big", "c_ntx.my", "c_ntx.ar"} {
		checkEqual(t, p.updb, p.downdb, tb, tb)
	}
}

// TestSyncerCorpusCrash kills syncer processes with SIGKILL at random
// points while the corpus runs upstream; a last run from their checkpoint
// makes the downstream equal the upstream.
func TestSyncerCorpusCrash(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 73, MaxBinlogSize: 64 << 10})
	const workers = 8
	file, pos := masterPos(t, p.updb)
	r := newCorpusRunner(t, p.updb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(t, "all")
	}()
	killSyncerChildren(t, p, "corpuscrash", workers, file, pos, 4, rand.New(rand.NewPCG(73, 1)))
	<-done
	recoverSyncer(t, p, "corpuscrash", workers, file, pos)
	// A restart replays in safe mode, where a table without any unique
	// key replaces one equal row per insert: it converges only when its
	// rows are distinct all along (mysqlsink's documented limit). The
	// corpus has such a table with duplicate rows on purpose (c_keys.nokey);
	// the rows of keyless tables are exempt here, and only here.
	exempt := map[string]bool{}
	for _, name := range queryRows(t, p.updb, `SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES t
		WHERE TABLE_SCHEMA LIKE 'c\_%' AND TABLE_TYPE = 'BASE TABLE' AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS s
		WHERE s.TABLE_SCHEMA = t.TABLE_SCHEMA AND s.TABLE_NAME = t.TABLE_NAME AND s.NON_UNIQUE = 0)`) {
		exempt[strings.Trim(name, `"`)] = true
	}
	if !exempt["c_keys.nokey"] || exempt["c_keys.uk_only"] {
		t.Fatalf("keyless tables: %v", exempt)
	}
	checkCorpusEqualExcept(t, p.updb, p.downdb, exempt)
}

// TestSubTaskCorpusKilledConnections kills the worker's upstream sessions
// (binlog dump included) and its downstream sessions with KILL CONNECTION
// at random statements of the corpus; the subtask resumes by itself and the
// downstream ends equal to the upstream.
func TestSubTaskCorpusKilledConnections(t *testing.T) {
	p := newPair(t, 74, 174, testserver.MariaDBOptions{})
	r := newCorpusRunner(t, p.updb)
	r.run(t, "pre")
	cfg := dmworker.SubTaskConfig{Name: "corpuskill", Mode: dmworker.ModeAll,
		Snapshot:     dmworker.SnapshotConfig{Concurrency: 2, ChunkRows: 500},
		SyncerTuning: dmworker.SyncerTuning{Workers: 8}}
	st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink, dmworker.WithAutoResume(50*time.Millisecond, 200*time.Millisecond, 1000))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitCopyDone(t, st)
	upKiller, downKiller := p.up.DB(t), p.down.DB(t)
	kill := func(db *sql.DB, spare map[int64]bool) int {
		var ids []int64
		rows, err := db.Query("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler') AND COMMAND NOT IN ('Daemon', 'Killed')")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			if !spare[id] {
				ids = append(ids, id)
			}
		}
		rows.Close()
		for _, id := range ids {
			// The connection may have gone already.
			_, _ = db.Exec(fmt.Sprintf("KILL CONNECTION %d", id))
		}
		return len(ids)
	}
	rnd := rand.New(rand.NewPCG(74, 1))
	kills := 0
	r.before = func() {
		if rnd.IntN(12) != 0 {
			return
		}
		switch rnd.IntN(3) {
		case 0:
			kills += kill(upKiller, r.sessionIDs())
		case 1:
			kills += kill(downKiller, nil)
		default:
			kills += kill(upKiller, r.sessionIDs()) + kill(downKiller, nil)
		}
	}
	r.run(t, "post")
	if kills == 0 {
		t.Fatal("no connection was killed")
	}
	waitSubTaskSynced(t, st.Status, p)
	checkCorpusEqual(t, p.updb, p.downdb)
	t.Logf("%d connections killed, %d resumes", kills, st.Status().Retries)
}

// TestSyncerUnsupportedDefaultExpression: DEFAULT with an operator
// expression (DEFAULT ('a' || 'b') under PIPES_AS_CONCAT, DEFAULT (1 + 2)),
// which MariaDB accepts, is beyond the tracker's parser: the syncer stops
// with ErrUnsupportedDDL naming the task, position and statement, and a
// Replace with an equivalent form goes on.
func TestSyncerUnsupportedDefaultExpression(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 75})
	p.workers = 4
	s, err := dmworker.NewSyncer(p.config("defexpr"), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	mustExec(t, p.updb, "CREATE DATABASE c_def")
	conn, err := p.updb.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION sql_mode = 'PIPES_AS_CONCAT'",
		"CREATE TABLE c_def.t (id INT PRIMARY KEY, s VARCHAR(20) DEFAULT ('a' || 'b'), n INT DEFAULT (1 + 2))",
		"INSERT INTO c_def.t (id) VALUES (1)"} {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	runErr := run.Wait(t)
	var se *dmworker.SyncError
	if !errors.Is(runErr, dmworker.ErrUnsupportedDDL) || !errors.As(runErr, &se) {
		t.Fatalf("Run: %v, want ErrUnsupportedDDL in a *SyncError", runErr)
	}
	if se.Task != "defexpr" || se.Pos.Name == "" || !strings.Contains(se.Statement, "DEFAULT ('a' || 'b')") {
		t.Fatalf("error does not name task, position and statement: %+v", se)
	}
	s2, err := dmworker.NewSyncer(p.config("defexpr"), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	s2.Replace(se.Pos, "CREATE TABLE c_def.t (id INT PRIMARY KEY, s VARCHAR(20) DEFAULT (CONCAT('a', 'b')), n INT DEFAULT 3)")
	waitSynced(t, runSyncer(t, s2), p.updb)
	checkEqual(t, p.updb, p.downdb, "c_def.t", "c_def.t")
}

// TestSubTaskCorpusDuringCopy runs the corpus' second part while the
// subtask copies the first: its DDL comes while snapshot connections hold
// tables' metadata locks. A DDL on a table one connection has read waits
// for the end of that connection's transaction, and another connection's
// read of the table waits behind the DDL: the copy, which waits for that
// read, never ended (this test hung). With the snapshot connections' lock
// wait bounded, the read fails, the DDL goes through, and the subtask
// pauses with the lock wait error naming the table, or copies and
// replicates everything.
func TestSubTaskCorpusDuringCopy(t *testing.T) {
	old := snapshot.LockWaitTimeout
	snapshot.LockWaitTimeout = 2 * time.Second
	t.Cleanup(func() { snapshot.LockWaitTimeout = old })
	p := newPair(t, 77, 177, testserver.MariaDBOptions{})
	r := newCorpusRunner(t, p.updb)
	r.run(t, "pre")
	st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{Name: "duringcopy", Mode: dmworker.ModeAll,
		Snapshot:     dmworker.SnapshotConfig{Concurrency: 4, ChunkRows: 300},
		SyncerTuning: dmworker.SyncerTuning{Workers: 8}}, upstreamOf(p.up), p.sink, dmworker.WithAutoResume(50*time.Millisecond, 100*time.Millisecond, 0))
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	r.run(t, "post")
	var s dmworker.SubTaskStatus
	waitUntil(t, "the subtask synced or paused", func() bool {
		s = st.Status()
		if s.Stage == dmworker.SubTaskPaused && s.LastError != nil {
			return true
		}
		if s.Unit != "syncer" {
			return false
		}
		ust, err := streamer.QueryUpstream(context.Background(), upstreamOf(p.up))
		return err == nil && s.Syncer.Checkpoint.Compare(ust.Master) >= 0
	})
	if s.Stage == dmworker.SubTaskPaused {
		var me *gomysql.MySQLError
		if !errors.As(s.LastError, &me) || me.Number != 1205 || !strings.Contains(s.LastError.Error(), "c_") {
			t.Fatalf("paused by %v, want the lock wait timeout naming a corpus table", s.LastError)
		}
		t.Logf("paused: %v", s.LastError)
		return
	}
	checkCorpusEqual(t, p.updb, p.downdb)
}

// TestSyncerCreateTableSelect: row format logs CREATE TABLE ... SELECT as
// a CREATE TABLE with its columns followed by the rows, all in one
// transaction; the syncer skipped a DDL inside a transaction, so the table
// was never created and its rows stopped it ("no definition for the
// table"). It is applied where it comes; a restart from the checkpoint
// saved after it, inside the transaction, goes on with the rows.
func TestSyncerCreateTableSelect(t *testing.T) {
	for _, w := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", w), func(t *testing.T) {
			p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 78})
			p.workers = w
			store := &recordingStore{}
			s, err := dmworker.NewSyncer(p.config("ctas"), p.sink, dmworker.WithCheckpointStore(store))
			if err != nil {
				t.Fatal(err)
			}
			run := runSyncer(t, s)
			mustExec(t, p.updb, "CREATE DATABASE c_ctas")
			mustExec(t, p.updb, "CREATE TABLE c_ctas.u (id INT PRIMARY KEY, v VARCHAR(10))")
			mustExec(t, p.updb, "INSERT INTO c_ctas.u SELECT seq, CONCAT('v', seq) FROM c_ctas.seq_1_to_100")
			waitSynced(t, run, p.updb)
			before := upstreamPos(t, p.updb)
			mustExec(t, p.updb, "CREATE TABLE c_ctas.s AS SELECT id, v, id * 2 AS d FROM c_ctas.u WHERE id % 3 = 0")
			after := upstreamPos(t, p.updb)
			waitSynced(t, run, p.updb)
			checkEqual(t, p.updb, p.downdb, "c_ctas.s", "c_ctas.s")
			if err := run.Stop(); err != nil {
				t.Fatal(err)
			}

			// The checkpoint inside the CREATE TABLE ... SELECT's
			// transaction, with the schema then.
			var mid dmworker.Checkpoint
			var schema []byte
			store.mu.Lock()
			for _, c := range store.saved {
				if c.Schema != nil {
					schema = c.Schema
				}
				if c.Pos.Compare(before) > 0 && c.Pos.Compare(after) < 0 {
					mid, mid.Schema = c, schema
					break
				}
			}
			store.mu.Unlock()
			if mid.Pos.IsZero() {
				t.Fatalf("no checkpoint between %s and %s: the CREATE TABLE was not applied inside its transaction", before, after)
			}
			mid.SafeUntil = streamer.Position{}
			// A downstream as it was at that checkpoint.
			d := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 79})
			ddb := d.DB(t)
			mustExec(t, ddb, "CREATE DATABASE c_ctas")
			mustExec(t, ddb, "CREATE TABLE c_ctas.u (id INT PRIMARY KEY, v VARCHAR(10))")
			copyTable(t, p.updb, ddb, "c_ctas.u")
			mustExec(t, ddb, "CREATE TABLE c_ctas.s (id INT NOT NULL, v VARCHAR(10), d BIGINT(12) NOT NULL)")
			mem := &dmworker.MemoryCheckpointStore{}
			if err := mem.Save(context.Background(), mid); err != nil {
				t.Fatal(err)
			}
			sink, err := mysqlsink.New(ddb)
			if err != nil {
				t.Fatal(err)
			}
			s2, err := dmworker.NewSyncer(p.config("ctas"), sink, dmworker.WithCheckpointStore(mem))
			if err != nil {
				t.Fatal(err)
			}
			run2 := runSyncer(t, s2)
			waitSynced(t, run2, p.updb)
			checkEqual(t, p.updb, ddb, "c_ctas.s", "c_ctas.s")
			checkEqual(t, p.updb, ddb, "c_ctas.u", "c_ctas.u")
			if err := run2.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// lostReplySink runs each DDL, and reports the first attempt of each as
// failed with a retryable error, as when the connection is lost after the
// server ran the statement, before its reply.
type lostReplySink struct {
	*mysqlsink.Sink
	mu      sync.Mutex
	tried   map[string]bool
	retried []bool // SafeMode of each retry
}

func (l *lostReplySink) ExecDDL(ctx context.Context, d *dmworker.DDL) error {
	if err := l.Sink.ExecDDL(ctx, d); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.tried[d.Query] {
		l.tried[d.Query] = true
		return dmworker.Retryable(errors.New("connection lost before the reply"))
	}
	l.retried = append(l.retried, d.SafeMode)
	return nil
}

// TestSyncerDDLRetryIsAReplay: a DDL whose attempt failed may have run; the
// retry runs in safe mode (a retried DROP COLUMN met "Can't DROP COLUMN"
// and the task stopped).
func TestSyncerDDLRetryIsAReplay(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 80})
	sink := &lostReplySink{Sink: p.sink, tried: map[string]bool{}}
	s, err := dmworker.NewSyncer(p.config("ddlretry"), sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	for _, q := range []string{"CREATE DATABASE c_retry", "CREATE TABLE c_retry.t (id INT PRIMARY KEY, a INT, b INT)",
		"INSERT INTO c_retry.t VALUES (1, 1, 1)", "ALTER TABLE c_retry.t DROP COLUMN a", "ALTER TABLE c_retry.t ADD COLUMN c INT DEFAULT 5",
		"CREATE INDEX bi ON c_retry.t (b)", "RENAME TABLE c_retry.t TO c_retry.t2", "INSERT INTO c_retry.t2 VALUES (2, 2, 2)"} {
		mustExec(t, p.updb, q)
	}
	waitSynced(t, run, p.updb)
	checkEqual(t, p.updb, p.downdb, "c_retry.t2", "c_retry.t2")
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.retried) < 6 || slices.Contains(sink.retried, false) {
		t.Fatalf("retries' safe mode: %v", sink.retried)
	}
}

// TestSyncerPartialRowImage: a session may set binlog_row_image MINIMAL
// (or NOBLOB) whatever the global setting: its updates and deletes carry
// the key and the changed columns only, which the syncer wrote as NULL and
// zero into the other columns. It stops with ErrBinlogFormat naming the
// table and the position.
func TestSyncerPartialRowImage(t *testing.T) {
	p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 81})
	p.workers = 4
	s, err := dmworker.NewSyncer(p.config("image"), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	run := runSyncer(t, s)
	mustExec(t, p.updb, "CREATE DATABASE c_image")
	mustExec(t, p.updb, "CREATE TABLE c_image.t (id INT PRIMARY KEY, a INT, b VARCHAR(10), c TEXT)")
	mustExec(t, p.updb, "INSERT INTO c_image.t VALUES (1, 1, 'x', 'blob'), (2, 2, 'y', NULL)")
	waitSynced(t, run, p.updb)
	conn, err := p.updb.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION binlog_row_image = 'MINIMAL'", "UPDATE c_image.t SET a = 10 WHERE id = 1"} {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	runErr := run.Wait(t)
	var se *dmworker.SyncError
	if !errors.Is(runErr, dmworker.ErrBinlogFormat) || !errors.As(runErr, &se) {
		t.Fatalf("Run: %v, want ErrBinlogFormat in a *SyncError", runErr)
	}
	if se.Task != "image" || se.Table != "c_image.t" || se.Pos.Name == "" {
		t.Fatalf("error does not name task, table and position: %+v", se)
	}
	// Nothing of it was written.
	if got := tableRows(t, p.downdb, "c_image.t"); len(got) != 2 || got[0] != `"1"|"1"|"x"|"blob"` {
		t.Fatalf("downstream rows %v", got)
	}
}
