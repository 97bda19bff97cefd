package mysqlsink_test

import (
	"errors"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/go-sql-driver/mysql"
)

// TestDDLSafeMode runs DDLs, then runs them again as a replay would: in
// safe mode the errors that say "done already" are success, in normal mode
// they are errors.
func TestDDLSafeMode(t *testing.T) {
	m := server(t, 22)
	db := openDB(t, m, nil)
	s := newSink(t, db)
	ddls := []*dmworker.DDL{
		{Query: "CREATE DATABASE d"},
		{Schema: "d", Table: "t", Query: "CREATE TABLE t (id INT PRIMARY KEY, a INT, b INT)"},
		{Schema: "d", Table: "p", Query: "CREATE TABLE p (id INT PRIMARY KEY)"},
		{Schema: "d", Table: "t", Query: "ALTER TABLE t ADD COLUMN c INT"},
		{Schema: "d", Table: "t", Query: "ALTER TABLE t ADD INDEX ia (a)"},
		{Schema: "d", Table: "t", Query: "ALTER TABLE t RENAME INDEX ia TO ia2"},
		{Schema: "d", Table: "t", Query: "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (b) REFERENCES p (id)"},
		{Schema: "d", Table: "t", Query: "ALTER TABLE t ADD CONSTRAINT ck CHECK (a > 0)"},
		{Schema: "d", Table: "t", Query: "ALTER TABLE t CHANGE COLUMN c c2 INT"},
		{Schema: "d", Table: "t", Query: "ALTER TABLE t DROP COLUMN c2"},
		{Schema: "d", Table: "v", Query: "CREATE VIEW v AS SELECT id FROM t"},
		{Schema: "d", Table: "v", Query: "DROP VIEW v"},
		{Schema: "d", Table: "t", Query: "RENAME TABLE t TO t2"},
		{Schema: "d", Table: "x", Query: "CREATE TABLE x (id INT)"},
		{Schema: "d", Table: "x", Query: "DROP TABLE x"},
		{Schema: "d", Table: "t2", Query: "ALTER TABLE t2 DROP INDEX ia2"},
		{Query: "CREATE DATABASE e"},
		{Query: "DROP DATABASE e"},
	}
	for i, d := range ddls {
		if err := s.ExecDDL(t.Context(), d); err != nil {
			t.Fatalf("%s: %v", d.Query, err)
		}
		if i == 0 {
			continue
		}
		again := *d
		err := s.ExecDDL(t.Context(), &again)
		var me *mysql.MySQLError
		if !errors.As(err, &me) {
			t.Errorf("%s again: got %v, want a server error", d.Query, err)
			continue
		}
		t.Logf("%s again: error %d", d.Query, me.Number)
		again.SafeMode = true
		if err := s.ExecDDL(t.Context(), &again); err != nil {
			t.Errorf("%s again in safe mode (error %d in normal mode): %v", d.Query, me.Number, err)
		}
	}
	// Other errors still fail in safe mode.
	err := s.ExecDDL(t.Context(), &dmworker.DDL{Schema: "d", Query: "ALTER TABLE t2 ADD COLUMN z NOSUCHTYPE", SafeMode: true})
	var e *mysqlsink.Error
	if !errors.As(err, &e) || e.Op != "ddl" {
		t.Errorf("syntax error in safe mode: %v", err)
	}
}
