package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
)

// taskWorkers are the worker counts the tests of upstream settings, routes
// and filters run with.
var taskWorkers = []int{1, 16}

// forTaskModes runs f as a subtest for each of the modes a task replicates
// the binlog in (incremental: the syncer alone; all: the snapshot, then the
// syncer), with 1 and 16 workers.
func forTaskModes(t *testing.T, f func(t *testing.T, mode dmworker.Mode, workers int)) {
	for _, mode := range []dmworker.Mode{dmworker.ModeIncremental, dmworker.ModeAll} {
		for _, w := range taskWorkers {
			t.Run(fmt.Sprintf("%s/workers=%d", mode, w), func(t *testing.T) { f(t, mode, w) })
		}
	}
}

// setupBoth runs statements upstream and, in mode incremental, downstream
// too: a task without a checkpoint then starts at the upstream's end and
// expects the tables it finds there; in mode all, its copy brings them.
func setupBoth(t *testing.T, up, down *sql.DB, mode dmworker.Mode, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		mustExec(t, up, q)
		if mode == dmworker.ModeIncremental {
			mustExec(t, down, q)
		}
	}
}

// startTask runs a subtask and, in mode all, waits for its syncer (the copy
// done).
func startTask(t *testing.T, p *syncPair, cfg dmworker.SubTaskConfig) *dmworker.SubTask {
	t.Helper()
	st, err := dmworker.NewSubTask(cfg, upstreamOf(p.up), p.sink)
	if err != nil {
		t.Fatal(err)
	}
	runSubTask(t, st)
	waitUntil(t, "the syncer of "+cfg.Name, func() bool {
		s := st.Status()
		if s.Stage == dmworker.SubTaskPaused && s.LastError != nil {
			t.Fatalf("subtask %s paused: %v", cfg.Name, s.LastError)
		}
		return s.Unit == "syncer" && s.Syncer.Read.Name != ""
	})
	return st
}

// columnsOf describes a table's columns as the server does: name, type,
// nullability, default and generation expression, in order. Render writes
// string literals with their character set (_utf8mb4'x'), which the server
// keeps in expressions; in the utf8mb4 tables here that is the same literal.
func columnsOf(t *testing.T, db *sql.DB, schema, table string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COALESCE(COLUMN_DEFAULT, 'NULL'), GENERATION_EXPRESSION
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, typ, null, def string
		var gen sql.NullString
		if err := rows.Scan(&name, &typ, &null, &def, &gen); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.ReplaceAll(strings.Join([]string{name, typ, null, def, gen.String}, " | "), "_utf8mb4'", "'"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sqlModeCases are workloads written under an sql_mode that changes how
// statements parse or what a type means: setup runs before the task starts
// (copied by the snapshot in mode all, run on both sides in mode
// incremental), after while it runs. %[1]s is the case's schema. Generated
// columns show by content whether the downstream computes what the upstream
// does (|| as CONCAT, NOT's precedence); column types and defaults whether
// the DDL means the same.
var sqlModeCases = []struct {
	mode         string
	setup, after []string
	tables       []string
}{
	{"ANSI_QUOTES",
		[]string{`CREATE TABLE %[1]s."t" ("id" int primary key, "v" varchar(20) default 'x', "w""q" int)`,
			`INSERT INTO %[1]s."t" ("id", "v", "w""q") VALUES (1, 'a"b', 1), (2, DEFAULT, 2)`},
		[]string{`create table %[1]s."u"("id" int primary key, "s" varchar(9) default 'it''s')`,
			`ALTER TABLE %[1]s."t" ADD COLUMN "z" varchar(5) default 'zz' AFTER "id"`,
			`INSERT INTO %[1]s."t" ("id", "v") VALUES (3, 'c')`, `INSERT INTO %[1]s."u" ("id") VALUES (7)`,
			`UPDATE %[1]s."t" SET "v" = 'd' WHERE "id" = 1`},
		[]string{"t", "u"}},
	{"PIPES_AS_CONCAT",
		[]string{`CREATE TABLE %[1]s.p (id int primary key, a varchar(10), b varchar(40) as (a || '-x') virtual)`,
			`INSERT INTO %[1]s.p (id, a) VALUES (1, 'a' || 'b'), (2, NULL)`},
		[]string{`ALTER TABLE %[1]s.p ADD COLUMN c varchar(50) as (b || '!') persistent`,
			`CREATE TABLE %[1]s.q (id int primary key, a varchar(5), s varchar(20) as (a || 'q') virtual)`,
			`INSERT INTO %[1]s.p (id, a) VALUES (3, 'c' || 'd')`, `INSERT INTO %[1]s.q (id, a) VALUES (1, '0'), (2, 'z')`},
		[]string{"p", "q"}},
	{"IGNORE_SPACE",
		[]string{`CREATE TABLE %[1]s.i (id int primary key, count int, n int default abs (-3))`,
			`INSERT INTO %[1]s.i (id, count) VALUES (1, 5)`},
		[]string{`ALTER TABLE %[1]s.i ADD COLUMN m int default abs (-4), ADD COLUMN d datetime default now ()`,
			`INSERT INTO %[1]s.i (id, count) VALUES (2, 6)`, `UPDATE %[1]s.i SET count = count + 1`},
		[]string{"i"}},
	{"NO_BACKSLASH_ESCAPES",
		[]string{`CREATE TABLE %[1]s.b (id int primary key, v varchar(10) default 'a\b', e enum('x\y','z') default 'x\y')`,
			`INSERT INTO %[1]s.b (id) VALUES (1)`, `INSERT INTO %[1]s.b VALUES (2, 'c:\d', 'z')`},
		[]string{`ALTER TABLE %[1]s.b ADD COLUMN w varchar(10) default '\n'`,
			`CREATE TABLE %[1]s.b2 (id int primary key, v varchar(10) default 'q\')`,
			`INSERT INTO %[1]s.b (id) VALUES (3)`, `INSERT INTO %[1]s.b2 (id) VALUES (1)`},
		[]string{"b", "b2"}},
	{"HIGH_NOT_PRECEDENCE",
		[]string{`CREATE TABLE %[1]s.h (id int primary key, b int, c int as (not b between 1 and 2) virtual)`,
			`INSERT INTO %[1]s.h (id, b) VALUES (1, 0), (2, 1), (3, 5)`},
		[]string{`ALTER TABLE %[1]s.h ADD COLUMN d int as (not b between 4 and 6) persistent`,
			`CREATE TABLE %[1]s.h2 (id int primary key, b int, c int as (not b between 1 and 2) persistent)`,
			`INSERT INTO %[1]s.h (id, b) VALUES (4, 5), (5, -1)`, `INSERT INTO %[1]s.h2 (id, b) VALUES (1, 5), (2, 0)`},
		[]string{"h", "h2"}},
	{"REAL_AS_FLOAT",
		[]string{`CREATE TABLE %[1]s.r (id int primary key, a real, b real(10,2))`,
			`INSERT INTO %[1]s.r VALUES (1, 1.1, 2.25)`},
		[]string{`ALTER TABLE %[1]s.r ADD COLUMN c real`, `CREATE TABLE %[1]s.r2 (id int primary key, x real)`,
			`INSERT INTO %[1]s.r VALUES (2, 3.3, 4.5, 5.5)`, `INSERT INTO %[1]s.r2 VALUES (1, 0.1)`},
		[]string{"r", "r2"}},
	{"ANSI",
		[]string{`CREATE TABLE %[1]s."an" ("id" int primary key, "a" real, "b" varchar(5), "c" varchar(20) as ("b" || 'x') virtual)`,
			`INSERT INTO %[1]s."an" ("id", "a", "b") VALUES (1, 1.1, 'q')`},
		[]string{`ALTER TABLE %[1]s."an" ADD COLUMN "d" real`,
			`INSERT INTO %[1]s."an" ("id", "a", "b", "d") VALUES (2, 2.2, 'r', 3.3)`},
		[]string{"an"}},
	{"ORACLE",
		[]string{`CREATE TABLE %[1]s."o" ("id" NUMBER(10) PRIMARY KEY, "a" VARCHAR2(20), "b" NUMBER, "c" DATE, "d" RAW(8), "e" CLOB, "f" BLOB, "g" NUMBER(8,2))`,
			`INSERT INTO %[1]s."o" VALUES (1, 'x', 1.5, '2024-01-02 03:04:05', 'raw', 'clob', 'blob', 12.34)`},
		[]string{`ALTER TABLE %[1]s."o" ADD COLUMN "h" DATE`,
			`CREATE TABLE %[1]s."o2" ("id" NUMBER(5) PRIMARY KEY, "v" VARCHAR2(10), "w" mariadb_schema.date)`,
			`INSERT INTO %[1]s."o" ("id", "h") VALUES (2, '2023-05-06 07:08:09')`, `INSERT INTO %[1]s."o2" VALUES (1, 'v', '2020-01-01')`},
		[]string{"o", "o2"}},
	{"MAXDB",
		[]string{`CREATE TABLE %[1]s.mx (id int primary key, t timestamp, t2 timestamp(3))`,
			`INSERT INTO %[1]s.mx VALUES (1, '2024-01-02 03:04:05', '2024-01-02 03:04:05.123')`},
		[]string{`ALTER TABLE %[1]s.mx ADD COLUMN t3 timestamp`,
			`INSERT INTO %[1]s.mx VALUES (2, '1990-01-01 00:00:00', NULL, '2040-02-01 00:00:00')`},
		[]string{"mx"}},
	{"EMPTY_STRING_IS_NULL",
		[]string{`CREATE TABLE %[1]s.es (id int primary key, v varchar(10) default '', w varchar(10))`,
			`INSERT INTO %[1]s.es (id, w) VALUES (1, '')`},
		[]string{`ALTER TABLE %[1]s.es ADD COLUMN x varchar(5) default ''`, `INSERT INTO %[1]s.es (id) VALUES (2)`},
		[]string{"es"}},
}

// TestSQLModes: with the upstream's GLOBAL sql_mode set to each mode of
// sqlModeCases (and the downstream's too, which the sink must not depend
// on), a task copies and replicates tables created and changed under it: the
// snapshot and the tracker read the upstream's definitions whatever the
// mode, each DDL of the binlog is parsed with the sql_mode its query event
// recorded, and the DDL run downstream means what it meant upstream: the
// tables end equal by content and by column definitions.
func TestSQLModes(t *testing.T) {
	forTaskModes(t, func(t *testing.T, mode dmworker.Mode, workers int) {
		p := newPair(t, 601, 602, testserver.MariaDBOptions{})
		var defUp, defDown string
		if err := p.updb.QueryRow("SELECT @@GLOBAL.sql_mode").Scan(&defUp); err != nil {
			t.Fatal(err)
		}
		if err := p.downdb.QueryRow("SELECT @@GLOBAL.sql_mode").Scan(&defDown); err != nil {
			t.Fatal(err)
		}
		for _, c := range sqlModeCases {
			t.Run(c.mode, func(t *testing.T) {
				p.up.Exec(t, "SET GLOBAL sql_mode = '"+c.mode+"'")
				p.down.Exec(t, "SET GLOBAL sql_mode = '"+c.mode+"'")
				t.Cleanup(func() {
					p.up.Exec(t, "SET GLOBAL sql_mode = '"+defUp+"'")
					p.down.Exec(t, "SET GLOBAL sql_mode = '"+defDown+"'")
				})
				// New pools: their sessions take the global mode.
				up, down := p.up.DB(t), p.down.DB(t)
				db := "m_" + strings.ToLower(c.mode)
				setup := []string{"CREATE DATABASE " + db}
				for _, q := range c.setup {
					setup = append(setup, fmt.Sprintf(q, db))
				}
				setupBoth(t, up, down, mode, setup...)
				st := startTask(t, p, dmworker.SubTaskConfig{
					Name:         db,
					Mode:         mode,
					Filter:       dmworker.BlockAllowList{DoDBs: []string{db}},
					SyncerTuning: dmworker.SyncerTuning{Workers: workers},
				})
				for _, q := range c.after {
					mustExec(t, up, fmt.Sprintf(q, db))
				}
				waitSubTaskSynced(t, st.Status, p)
				for _, tbl := range c.tables {
					checkEqual(t, up, down, db+"."+tbl, db+"."+tbl)
					if a, b := columnsOf(t, up, db, tbl), columnsOf(t, down, db, tbl); !slices.Equal(a, b) {
						t.Errorf("%s.%s columns differ:\nupstream   %q\ndownstream %q", db, tbl, a, b)
					}
				}
				st.Stop()
			})
		}
	})
}

// TestStatementBinlog: a row change the upstream logs as a statement (a
// session with binlog_format=STATEMENT) stops the task with
// ErrStatementBinlog naming the statement and where it is, before the
// checkpoint passes it, when it writes a replicated table; one on a table
// the task does not replicate, or on a temporary table, does not. The downstream keeps exactly what
// the upstream had before the statement.
func TestStatementBinlog(t *testing.T) {
	forTaskModes(t, func(t *testing.T, mode dmworker.Mode, workers int) {
		p := newPair(t, 611, 612, testserver.MariaDBOptions{})
		setupBoth(t, p.updb, p.downdb, mode, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)",
			"INSERT INTO app.t VALUES (1, 1), (2, 2), (3, 3)")
		mustExec(t, p.updb, "CREATE DATABASE other")
		mustExec(t, p.updb, "CREATE TABLE other.t (id INT PRIMARY KEY)")
		st := startTask(t, p, dmworker.SubTaskConfig{
			Name:         "stmt",
			Mode:         mode,
			Filter:       dmworker.BlockAllowList{DoDBs: []string{"app"}},
			SyncerTuning: dmworker.SyncerTuning{Workers: workers},
		})

		conn, err := p.updb.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		exec := func(q string) {
			t.Helper()
			if _, err := conn.ExecContext(context.Background(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec("SET SESSION binlog_format = 'STATEMENT'")
		exec("INSERT INTO other.t VALUES (1)") // not replicated: no harm
		exec("CREATE TEMPORARY TABLE app.tmp (id INT)")
		exec("INSERT INTO app.tmp VALUES (1)") // a temporary table: no harm
		mustExec(t, p.updb, "INSERT INTO app.t VALUES (4, 4)")
		waitSubTaskSynced(t, st.Status, p)
		checkEqual(t, p.updb, p.downdb, "app.t", "app.t")
		before := tableRows(t, p.updb, "app.t")

		exec("UPDATE app.t SET v = v + 10 WHERE id < 3")
		s := waitStage(t, st.Status, dmworker.SubTaskPaused)
		var se *dmworker.SyncError
		if !errors.Is(s.LastError, dmworker.ErrStatementBinlog) || !errors.As(s.LastError, &se) {
			t.Fatalf("paused with %v, want ErrStatementBinlog in a SyncError", s.LastError)
		}
		if !strings.Contains(se.Statement, "UPDATE app.t") || se.Table != "app.t" || se.Start.Name == "" || se.Start.Compare(se.Pos) >= 0 {
			t.Fatalf("the error does not name the statement, its table and where it is: %+v", se)
		}
		cp, _, err := p.sink.LoadCheckpoint(context.Background(), "stmt", upstreamOf(p.up).SourceName())
		if err != nil {
			t.Fatal(err)
		}
		if cp.Pos.Compare(se.Start) > 0 {
			t.Fatalf("the checkpoint %s passed the statement at %s", cp.Pos, se.Start)
		}
		if got := tableRows(t, p.downdb, "app.t"); !slices.Equal(got, before) {
			t.Fatalf("downstream app.t %q, want the rows before the statement %q", got, before)
		}
	})
}

// TestBinlogSettingsRefused: a task refuses to start on an upstream whose
// binlog_format is not ROW or whose binlog_row_image is not FULL, saying
// what to set (in mode all before copying anything); with the settings
// fixed it resumes and replicates.
func TestBinlogSettingsRefused(t *testing.T) {
	p := newPair(t, 613, 614, testserver.MariaDBOptions{})
	for _, mode := range []dmworker.Mode{dmworker.ModeIncremental, dmworker.ModeAll} {
		for _, w := range taskWorkers {
			for _, bad := range []struct{ set, want string }{
				{"binlog_format = 'MIXED'", "binlog_format=ROW"},
				{"binlog_row_image = 'MINIMAL'", "binlog_row_image=FULL"},
			} {
				name := fmt.Sprintf("%s_%d_%s", mode, w, strings.Fields(bad.set)[0])
				t.Run(name, func(t *testing.T) {
					setupBoth(t, p.updb, p.downdb, mode, "CREATE DATABASE "+name, "CREATE TABLE "+name+".t (id INT PRIMARY KEY, v INT)",
						"INSERT INTO "+name+".t VALUES (1, 1)")
					p.up.Exec(t, "SET GLOBAL "+bad.set)
					st, err := dmworker.NewSubTask(dmworker.SubTaskConfig{
						Name:         name,
						Mode:         mode,
						Filter:       dmworker.BlockAllowList{DoDBs: []string{name}},
						SyncerTuning: dmworker.SyncerTuning{Workers: w},
					}, upstreamOf(p.up), p.sink)
					if err != nil {
						t.Fatal(err)
					}
					runSubTask(t, st)
					s := waitStage(t, st.Status, dmworker.SubTaskPaused)
					if !errors.Is(s.LastError, dmworker.ErrBinlogFormat) || !strings.Contains(s.LastError.Error(), bad.want) {
						t.Fatalf("paused with %v, want ErrBinlogFormat saying %s", s.LastError, bad.want)
					}
					if mode == dmworker.ModeAll && s.Snapshot.Rows != 0 {
						t.Fatalf("copied %d rows before refusing", s.Snapshot.Rows)
					}
					p.up.Exec(t, "SET GLOBAL binlog_format = 'ROW', GLOBAL binlog_row_image = 'FULL'")
					if err := st.Resume(); err != nil {
						t.Fatal(err)
					}
					// A task without a checkpoint starts at the upstream's
					// end: write once it has.
					waitUntil(t, "the syncer to start", func() bool { return st.Status().Syncer.Read.Name != "" })
					up := p.up.DB(t) // new sessions, with the new settings
					mustExec(t, up, "INSERT INTO "+name+".t VALUES (2, 2)")
					mustExec(t, up, "UPDATE "+name+".t SET v = 10 WHERE id = 1")
					waitSubTaskSynced(t, st.Status, p)
					checkEqual(t, p.updb, p.downdb, name+".t", name+".t")
					st.Stop()
				})
			}
		}
	}
}
