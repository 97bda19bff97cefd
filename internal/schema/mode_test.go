package schema

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/testserver"
)

// modeDDL are statements written under an sql_mode that changes how they
// parse or what their types mean, run in schema md.
var modeDDL = []struct {
	mode  string
	stmts []string
}{
	{"ANSI_QUOTES", []string{
		`CREATE TABLE "aq" ("id" int primary key, "v" varchar(10) default 'x', "w""q" int, "s" varchar(5) default 'a"b')`,
		`ALTER TABLE "aq" ADD COLUMN "z" text, ADD INDEX "iz" ("z"(5))`,
		`CREATE INDEX "iv" ON md."aq" ("v")`,
		`RENAME TABLE "aq" TO "aq2"`,
	}},
	{"PIPES_AS_CONCAT", []string{
		`CREATE TABLE pc (a varchar(10), b varchar(20) as (a || 'z') virtual)`,
		`ALTER TABLE pc ADD COLUMN c varchar(40) as (b || a || '!') persistent`,
	}},
	{"IGNORE_SPACE", []string{
		`CREATE TABLE isp (id int primary key, d datetime default now (), count int, n int default abs (-3))`,
	}},
	{"NO_BACKSLASH_ESCAPES", []string{
		`CREATE TABLE nbe (a varchar(10) default 'a\b', b varchar(10) default 'it''s\', c enum('x\y','z') default 'x\y') comment 'c:\dir'`,
		`ALTER TABLE nbe ADD COLUMN d varchar(5) default '\n'`,
	}},
	{"HIGH_NOT_PRECEDENCE", []string{
		`CREATE TABLE hnp (b int, c int as (not b between 1 and 2) virtual, check (not b between -5 and -4))`,
	}},
	{"REAL_AS_FLOAT", []string{
		`CREATE TABLE raf (a real, b real(10,2), c double)`,
		`ALTER TABLE raf ADD COLUMN d real unsigned, MODIFY c real`,
	}},
	{"ANSI", []string{
		`CREATE TABLE "an" ("a" real, "b" varchar(5), "c" varchar(20) as ("b" || 'x'))`,
	}},
	{"ORACLE", []string{
		`CREATE TABLE "ora" ("id" NUMBER(10) PRIMARY KEY, "a" VARCHAR2(20), "b" NUMBER, "c" DATE, "d" RAW(10), "e" CLOB, "f" BLOB,
			"g" NUMBER(8,2), "h" mariadb_schema.date, "i" BLOB(100), "j" int as ("id" + 1), "k" TIMESTAMP NULL)`,
		`ALTER TABLE ora ADD COLUMN l DATE, MODIFY a VARCHAR2(30)`,
	}},
	{"MAXDB", []string{
		`CREATE TABLE mx (id int primary key, t timestamp, t2 timestamp(3))`,
	}},
	{"EMPTY_STRING_IS_NULL", []string{
		`CREATE TABLE esn (id int primary key, v varchar(10) default '', w varchar(5) comment '')`,
	}},
}

// TestSQLModesMatchServer runs statements under each sql_mode of modeDDL on
// a real MariaDB and follows them as a syncer does, from the binlog: the
// sql_mode each query event records must be the session's, the tracker fed
// with SplitMode must describe the tables as the server does, and each
// statement rendered (default mode) and run in a session with the sink's
// sql_mode must give the same SHOW CREATE TABLE.
func TestSQLModesMatchServer(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 204})
	db := m.DB(t)
	ctx := context.Background()
	m.Exec(t, "CREATE DATABASE md")
	m.Exec(t, "CREATE DATABASE md_r")
	m.Exec(t, "CREATE DATABASE scratch")
	rend := useConn(t, db, "scratch")
	// mysqlsink's DDL session.
	if _, err := rend.ExecContext(ctx, "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES,NO_ENGINE_SUBSTITUTION'"); err != nil {
		t.Fatal(err)
	}
	rename := func(s, tb string) (string, string) { return s + "_r", tb }
	tr := New()
	if err := tr.CreateFromSQL("", showCreateDatabase(t, db, "md")); err != nil {
		t.Fatal(err)
	}
	var sent []SQLMode // the mode of each statement, in order
	for _, g := range modeDDL {
		conn := useConn(t, db, "md")
		if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = '"+g.mode+"'"); err != nil {
			t.Fatal(err)
		}
		var expanded string
		if err := conn.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode").Scan(&expanded); err != nil {
			t.Fatal(err)
		}
		mode := ParseSQLMode(expanded)
		if mode == 0 {
			t.Fatalf("%s: no mode read from %q", g.mode, expanded)
		}
		for _, q := range g.stmts {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				t.Fatalf("server (%s): %s: %v", g.mode, q, err)
			}
			sent = append(sent, mode)
			stmts, err := SplitMode(mode, "md", q)
			if err != nil {
				t.Fatalf("split (%s) %s: %v", g.mode, q, err)
			}
			if _, err := tr.ApplyStmts(stmts...); err != nil {
				t.Fatalf("tracker (%s) %s: %v", g.mode, q, err)
			}
			compareWithServer(t, db, tr, g.mode+": "+q, "md")
			for _, s := range stmts {
				out, err := s.Render(rename)
				if err != nil {
					t.Fatalf("render (%s) %s: %v", g.mode, q, err)
				}
				if _, err := rend.ExecContext(ctx, out); err != nil {
					t.Fatalf("rendered %q (from %q under %s): %v", out, q, g.mode, err)
				}
			}
			a, b := serverTableNames(t, db, "md"), serverTableNames(t, db, "md_r")
			if len(a) != len(b) {
				t.Fatalf("after %s: md has %v, md_r %v", q, a, b)
			}
			for i := range a {
				// Render writes string literals with their character set
				// (_utf8mb4'z'); the sessions here are utf8mb4, where
				// 'z' is the same literal.
				ca, cb := showCreate(t, db, a[i]), strings.ReplaceAll(showCreate(t, db, b[i]), "_utf8mb4'", "'")
				if ca != cb {
					t.Fatalf("after %s (%s):\n%s\n%s", q, g.mode, ca, cb)
				}
			}
			if t.Failed() {
				t.FailNow()
			}
		}
		_ = conn.Close()
	}

	// The binlog's query events record each statement's mode.
	files, err := m.BinlogFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var logged []SQLMode
	p := replication.NewBinlogParser()
	for _, f := range files {
		err := p.ParseFile(f, 4, func(e *replication.BinlogEvent) error {
			qe, ok := e.Event.(*replication.QueryEvent)
			if !ok || string(qe.Schema) != "md" || strings.HasPrefix(string(qe.Query), "CREATE DATABASE") {
				return nil
			}
			mode, found, err := StatusVarsSQLMode(qe.StatusVars)
			if err != nil || !found {
				t.Errorf("%s: sql_mode %v found=%v: %v", qe.Query, mode, found, err)
			}
			logged = append(logged, mode)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(logged) != len(sent) {
		t.Fatalf("%d query events in md, %d statements", len(logged), len(sent))
	}
	for i := range sent {
		if logged[i] != sent[i] {
			t.Errorf("statement %d: binlog mode %s, session %s", i, logged[i], sent[i])
		}
	}
}

// TestSplitModeRefuses: what a mode makes the tracker refuse, clearly.
func TestSplitModeRefuses(t *testing.T) {
	for _, c := range []struct {
		mode SQLMode
		q    string
	}{
		{ModeEmptyStringIsNull, "CREATE TABLE t (a enum('', 'x'))"},
		{ModeEmptyStringIsNull, "CREATE TABLE t (a varchar(3), b varchar(3) as (concat(a, '')))"},
		{ModeOracle | ModeANSIQuotes | ModePipesAsConcat | ModeIgnoreSpace, `CREATE TABLE "t" ("a" NVARCHAR2(3))`},
		{ModeOracle | ModeANSIQuotes | ModePipesAsConcat | ModeIgnoreSpace, `CREATE TABLE "t" ("a" VARCHAR2(3), "b" varchar(9) as ("a" || '!'))`},
		{ModeOracle | ModeANSIQuotes | ModePipesAsConcat | ModeIgnoreSpace, `ALTER TABLE "t" ADD "c" int as (length ("a"))`},
	} {
		if _, err := SplitMode(c.mode, "d", c.q); !errors.Is(err, ErrUnsupportedDDL) {
			t.Errorf("%s under %s: %v, want ErrUnsupportedDDL", c.q, c.mode, err)
		}
	}
	// Without the mode, the same texts mean something else or nothing.
	if _, err := SplitMode(0, "d", `CREATE TABLE "t" (a int)`); !errors.Is(err, ErrUnsupportedDDL) {
		t.Errorf("double-quoted name without ANSI_QUOTES: %v", err)
	}
}

// TestStatusVarsSQLMode decodes hand-made status variables around the
// sql_mode, and refuses cut ones.
func TestStatusVarsSQLMode(t *testing.T) {
	mode := func(m uint64) []byte { return binary.LittleEndian.AppendUint64([]byte{qSQLModeCode}, m) }
	flags2 := []byte{qFlags2Code, 0, 0, 0, 0}
	cat := []byte{qCatalogNZ, 3, 'd', 'e', 'f'}
	cases := []struct {
		vars  []byte
		want  SQLMode
		found bool
		bad   bool
	}{
		{append(append([]byte{}, flags2...), mode(uint64(ModeANSIQuotes|ModePipesAsConcat)|1<<21)...), ModeANSIQuotes | ModePipesAsConcat, true, false},
		{append(append([]byte{}, cat...), mode(uint64(ModeOracle))...), ModeOracle, true, false},
		{append([]byte{qInvoker, 1, 'u', 1, 'h'}, mode(1<<32)...), ModeEmptyStringIsNull, true, false},
		{append([]byte{qUpdatedDBs, 2, 'a', 0, 'b', 0}, mode(uint64(ModeRealAsFloat))...), ModeRealAsFloat, true, false},
		{flags2, 0, false, false},
		{nil, 0, false, false},
		{[]byte{qSQLModeCode, 1, 2}, 0, false, true},
		{[]byte{qUpdatedDBs, 2, 'a', 0}, 0, false, true},
		{[]byte{qInvoker, 5, 'u'}, 0, false, true},
		{[]byte{99, 1, 2}, 0, false, true},
	}
	for i, c := range cases {
		got, found, err := StatusVarsSQLMode(c.vars)
		if (err != nil) != c.bad || got != c.want || found != c.found {
			t.Errorf("case %d: %s %v %v, want %s %v bad=%v", i, got, found, err, c.want, c.found, c.bad)
		}
	}
	if got := ParseSQLMode("ANSI,STRICT_TRANS_TABLES"); got != ModeRealAsFloat|ModePipesAsConcat|ModeANSIQuotes|ModeIgnoreSpace {
		t.Errorf("ParseSQLMode(ANSI) = %s", got)
	}
}

// FuzzStatusVarsSQLMode: any bytes decode or fail, never panic.
func FuzzStatusVarsSQLMode(f *testing.F) {
	f.Add([]byte{qFlags2Code, 0, 0, 0, 0, qSQLModeCode, 4, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{qUpdatedDBs, 1, 'x', 0, qSQLModeCode, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{qInvoker, 1, 'u', 1, 'h'})
	f.Fuzz(func(t *testing.T, vars []byte) {
		m, found, err := StatusVarsSQLMode(vars)
		if err != nil && (found || m != 0) {
			t.Fatalf("error %v with a mode", err)
		}
		if m&^relevantModes != 0 {
			t.Fatalf("mode %x has bits Split does not read", uint64(m))
		}
	})
}

// FuzzSplitMode feeds statements under arbitrary modes to SplitMode and
// Render: they may fail, never panic.
func FuzzSplitMode(f *testing.F) {
	for _, g := range modeDDL {
		for _, q := range g.stmts {
			f.Add(q, uint64(ParseSQLMode(g.mode)))
		}
	}
	f.Add(`CREATE TABLE "t" ("a" mariadb_schema.`, uint64(ModeOracle|ModeANSIQuotes))
	f.Add(`ALTER TABLE t ADD COLUMN b varchar(3) DEFAULT ''`, uint64(ModeEmptyStringIsNull))
	f.Fuzz(func(t *testing.T, q string, mode uint64) {
		stmts, err := SplitMode(SQLMode(mode), "trk", q)
		if err != nil {
			return
		}
		for _, s := range stmts {
			_, _ = s.Render(nil)
		}
	})
}

// TestConcurrentSplitRender: Split and Render from many goroutines give
// what they give alone (the pooled parsers reuse their result slices).
func TestConcurrentSplitRender(t *testing.T) {
	type query struct {
		mode SQLMode
		q    string
	}
	var queries []query
	for _, g := range modeDDL[:3] {
		for _, q := range g.stmts {
			queries = append(queries, query{ParseSQLMode(g.mode), q})
		}
	}
	render := func(q query) string {
		stmts, err := SplitMode(q.mode, "md", q.q)
		if err != nil {
			t.Error(err)
			return ""
		}
		var out []string
		for _, s := range stmts {
			r, err := s.Render(nil)
			if err != nil {
				t.Error(err)
			}
			out = append(out, r)
		}
		return strings.Join(out, "; ")
	}
	want := map[string]string{}
	for _, q := range queries {
		want[q.q] = render(q)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				q := queries[(w+i)%len(queries)]
				if got := render(q); got != want[q.q] {
					t.Errorf("%q rendered as %q, alone %q", q.q, got, want[q.q])
					return
				}
			}
		}()
	}
	wg.Wait()
}
