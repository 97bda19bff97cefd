package schema

import (
	"slices"
	"testing"
)

// TestStatementDML: which query events are row changes logged as
// statements, and the tables they may write.
func TestStatementDML(t *testing.T) {
	tn := func(s, n string) TableName { return TableName{s, n} }
	for _, c := range []struct {
		mode   SQLMode
		q      string
		dml    bool
		kind   string
		tables []TableName
	}{
		{0, "INSERT INTO t VALUES (1)", true, KindInsert, []TableName{tn("def", "t")}},
		{0, "insert into d.t select * from o.u", true, KindInsert, []TableName{tn("d", "t")}},
		{0, "REPLACE INTO `d`.`t` (a) VALUES (1)", true, KindInsert, []TableName{tn("d", "t")}},
		{ModeANSIQuotes, `INSERT INTO "d"."t" ("a") VALUES ('x')`, true, KindInsert, []TableName{tn("d", "t")}},
		{0, "UPDATE d.t SET v = v + 1 WHERE id < 3", true, KindUpdate, []TableName{tn("d", "t")}},
		{0, "UPDATE d.t JOIN o.u ON t.id = u.id SET t.v = u.v", true, KindUpdate, []TableName{tn("d", "t"), tn("o", "u")}},
		{0, "DELETE FROM t WHERE id = 1", true, KindDelete, []TableName{tn("def", "t")}},
		{0, "DELETE a FROM d.t AS a JOIN d.u ON a.id = u.id", true, KindDelete, []TableName{tn("def", "a"), tn("d", "t"), tn("d", "u")}},
		{0, "LOAD DATA INFILE '/tmp/x' INTO TABLE d.t", true, KindInsert, []TableName{tn("d", "t")}},
		{0, "SET STATEMENT max_statement_time=10 FOR UPDATE d.t SET v = 1", true, KindUpdate, []TableName{tn("d", "t")}},
		{0, "INSERT INTO d.t VALUES (1) RETURNING id", true, KindInsert, nil}, // MariaDB syntax the parser lacks
		{ModePipesAsConcat, "UPDATE d.t SET s = s || 'x'", true, KindUpdate, []TableName{tn("d", "t")}},
		{0, "SAVEPOINT sp", false, "", nil},
		{0, "CREATE TABLE d.t (a int)", false, "", nil},
		{0, "BEGIN", false, "", nil},
		{0, "", false, "", nil},
	} {
		kind, tables, dml := StatementDML(c.mode, "def", c.q)
		if dml != c.dml || kind != c.kind || !slices.Equal(tables, c.tables) {
			t.Errorf("%q: %q %v %v, want %q %v %v", c.q, kind, tables, dml, c.kind, c.tables, c.dml)
		}
	}
}
