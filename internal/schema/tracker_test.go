package schema

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// describe is a compact form of a table for assertions:
// "a int(11) NOT NULL, b varchar(3) | pk(a) uk(b)".
func describe(d *TableDef) string {
	var cols []string
	for _, c := range d.Columns {
		s := c.Name + " " + c.Type
		if !c.Nullable {
			s += " NOT NULL"
		}
		if c.Generated {
			s += " GENERATED"
		}
		if c.Invisible {
			s += " INVISIBLE"
		}
		cols = append(cols, s)
	}
	keys := func(k []int) string {
		var names []string
		for _, i := range k {
			names = append(names, d.Columns[i].Name)
		}
		return strings.Join(names, ",")
	}
	out := strings.Join(cols, ", ")
	var ks []string
	if len(d.PrimaryKey) > 0 {
		ks = append(ks, "pk("+keys(d.PrimaryKey)+")")
	}
	for _, u := range d.UniqueKeys {
		ks = append(ks, "uk("+keys(u)+")")
	}
	if len(ks) > 0 {
		out += " | " + strings.Join(ks, " ")
	}
	return out
}

func TestApply(t *testing.T) {
	const base = "CREATE TABLE t (id int NOT NULL, a varchar(10), b int, PRIMARY KEY (id), UNIQUE KEY ua (a))"
	tests := []struct {
		name  string
		setup []string
		query string
		table string // the table to describe afterwards ("db.t" by default); "-" when it must be gone
		want  string // describe(table), or the error kind "ErrUnsupportedDDL" / "ErrUnknownTable"
	}{
		{name: "create", query: base, want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "create if not exists keeps", setup: []string{base}, query: "CREATE TABLE IF NOT EXISTS t (x int)", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "create over existing replaces", setup: []string{base}, query: "CREATE TABLE t (x int)", want: "x int(11)"},
		{name: "create or replace", setup: []string{base}, query: "CREATE OR REPLACE TABLE t (x int)", want: "x int(11)"},
		{name: "create qualified", query: "CREATE TABLE other.t (x int)", table: "other.t", want: "x int(11)"},
		{name: "create like", setup: []string{base}, query: "CREATE TABLE u LIKE t", table: "db.u", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "create like unknown", query: "CREATE TABLE u LIKE nope", want: "ErrUnknownTable"},
		{name: "create select", query: "CREATE TABLE u AS SELECT 1 AS x", want: "ErrUnsupportedDDL"},
		{name: "create temporary ignored", query: "CREATE TEMPORARY TABLE t (x int)", table: "-"},
		{name: "inline keys", query: "CREATE TABLE t (a int primary key, b int unique, c int unique key)", want: "a int(11) NOT NULL, b int(11), c int(11) | pk(a) uk(b) uk(c)"},
		{name: "generated and invisible", query: "CREATE TABLE t (a int, b int as (a+1) virtual, c int generated always as (a*2) stored, d int invisible, e int as (a) persistent)", want: "a int(11), b int(11) GENERATED, c int(11) GENERATED, d int(11) INVISIBLE, e int(11) GENERATED"},
		{name: "types", query: "CREATE TABLE t (a tinyint unsigned, b smallint zerofill, c decimal, d float(7,3), e double, f bit, g char, h binary, i varbinary(3), j text(100), k blob(70000), l json, m year, n time(2), o enum('a','b''c'), p set('x'), q point, r uuid, s bool)",
			want: "a tinyint(3) unsigned, b smallint(5) unsigned zerofill, c decimal(10,0), d float(7,3), e double, f bit(1), g char(1), h binary(1), i varbinary(3), j text, k mediumblob, l longtext, m year(4), n time(2), o enum('a','b''c'), p set('x'), q point, r uuid, s tinyint(1)"},
		{name: "table charset binary", query: "CREATE TABLE t (a varchar(3), b text) CHARSET=binary", want: "a varbinary(3), b blob"},
		{name: "add column first/after", setup: []string{base}, query: "ALTER TABLE t ADD COLUMN x int FIRST, ADD COLUMN y int AFTER a", want: "x int(11), id int(11) NOT NULL, a varchar(10), y int(11), b int(11) | pk(id) uk(a)"},
		{name: "add columns", setup: []string{base}, query: "ALTER TABLE t ADD (x int, y int)", want: "id int(11) NOT NULL, a varchar(10), b int(11), x int(11), y int(11) | pk(id) uk(a)"},
		{name: "add column if not exists", setup: []string{base}, query: "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "add existing column", setup: []string{base}, query: "ALTER TABLE t ADD COLUMN a int", want: "ErrUnsupportedDDL"},
		{name: "add column with key", setup: []string{"CREATE TABLE t (a int)"}, query: "ALTER TABLE t ADD COLUMN id int auto_increment primary key first", want: "id int(11) NOT NULL, a int(11) | pk(id)"},
		{name: "drop column", setup: []string{base}, query: "ALTER TABLE t DROP COLUMN a", want: "id int(11) NOT NULL, b int(11) | pk(id)"},
		{name: "drop column if exists", setup: []string{base}, query: "ALTER TABLE t DROP COLUMN IF EXISTS zz", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		// The clauses are one change: the server takes DROP of the only
		// column with an ADD (the tracker refused it, mid-statement).
		{name: "drop only column and add it again", setup: []string{"CREATE TABLE t (i int NOT NULL, PRIMARY KEY (i))"}, query: "ALTER TABLE t DROP i, ADD i int unsigned NOT NULL auto_increment, DROP PRIMARY KEY, ADD PRIMARY KEY (i)", want: "i int(10) unsigned NOT NULL | pk(i)"},
		{name: "drop every column", setup: []string{"CREATE TABLE t (i int, j int)"}, query: "ALTER TABLE t DROP i, DROP j", want: "ErrUnsupportedDDL"},
		// MariaDB's SET STATEMENT ... FOR: the statement decides (it was
		// ErrUnsupportedDDL).
		{name: "set statement", setup: []string{base}, query: "SET STATEMENT max_statement_time=60, sql_mode = 'NO_ENGINE_SUBSTITUTION' FOR\nALTER TABLE t ADD z int", want: "id int(11) NOT NULL, a varchar(10), b int(11), z int(11) | pk(id) uk(a)"},
		{name: "set statement for create", query: "SET STATEMENT foreign_key_checks=0 FOR CREATE TABLE t (x int primary key)", want: "x int(11) NOT NULL | pk(x)"},
		{name: "set statement ignored", setup: []string{base}, query: "SET STATEMENT max_statement_time=60 FOR FLUSH TABLES", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "drop column shrinks key", setup: []string{"CREATE TABLE t (a int, b int, UNIQUE KEY u (a, b))"}, query: "ALTER TABLE t DROP COLUMN b", want: "a int(11) | uk(a)"},
		{name: "modify", setup: []string{base}, query: "ALTER TABLE t MODIFY b bigint unsigned NOT NULL FIRST", want: "b bigint(20) unsigned NOT NULL, id int(11) NOT NULL, a varchar(10) | pk(id) uk(a)"},
		{name: "modify pk keeps not null", setup: []string{base}, query: "ALTER TABLE t MODIFY id bigint", want: "id bigint(20) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "change renames in keys", setup: []string{base}, query: "ALTER TABLE t CHANGE COLUMN a aa varchar(20) AFTER b", want: "id int(11) NOT NULL, b int(11), aa varchar(20) | pk(id) uk(aa)"},
		{name: "change if exists", setup: []string{base}, query: "ALTER TABLE t CHANGE COLUMN IF EXISTS zz yy int", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "rename column", setup: []string{base}, query: "ALTER TABLE t RENAME COLUMN id TO pk", want: "pk int(11) NOT NULL, a varchar(10), b int(11) | pk(pk) uk(a)"},
		{name: "swap primary key", setup: []string{base}, query: "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (b, id)", want: "id int(11) NOT NULL, a varchar(10), b int(11) NOT NULL | pk(b,id) uk(a)"},
		{name: "drop unique", setup: []string{base}, query: "ALTER TABLE t DROP INDEX ua", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id)"},
		{name: "drop key primary", setup: []string{base}, query: "ALTER TABLE t DROP KEY `PRIMARY`", want: "id int(11) NOT NULL, a varchar(10), b int(11) | uk(a)"},
		{name: "add unique and index", setup: []string{base}, query: "ALTER TABLE t ADD UNIQUE (b), ADD INDEX (a, b)", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a) uk(b)"},
		{name: "options ignored", setup: []string{base}, query: "ALTER TABLE t ENGINE=InnoDB, AUTO_INCREMENT=5, COMMENT='x', ALGORITHM=INSTANT, LOCK=NONE", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "alter partition", setup: []string{base}, query: "ALTER TABLE t PARTITION BY HASH(id) PARTITIONS 4", want: "ErrUnsupportedDDL"},
		{name: "alter truncate partition", setup: []string{base}, query: "ALTER TABLE t TRUNCATE PARTITION p0", want: "ErrUnsupportedDDL"},
		{name: "alter unknown", query: "ALTER TABLE nope ADD x int", want: "ErrUnknownTable"},
		{name: "alter rename", setup: []string{base}, query: "ALTER TABLE t ADD x int, RENAME TO other.u", table: "other.u", want: "id int(11) NOT NULL, a varchar(10), b int(11), x int(11) | pk(id) uk(a)"},
		{name: "alter rename leaves old", setup: []string{base}, query: "ALTER TABLE t RENAME u", table: "db.t", want: "-"},
		{name: "drop", setup: []string{base}, query: "DROP TABLE t", want: "-"},
		{name: "drop several", setup: []string{base, "CREATE TABLE u (x int)"}, query: "DROP TABLE IF EXISTS t, u, nope /* generated by server */", table: "db.u", want: "-"},
		{name: "rename pairs in order", setup: []string{base, "CREATE TABLE u (x int)"}, query: "RENAME TABLE t TO tmp, u TO t, tmp TO u", table: "db.u", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "rename unknown", query: "RENAME TABLE nope TO x", want: "ErrUnknownTable"},
		{name: "truncate", setup: []string{base}, query: "TRUNCATE TABLE t", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a)"},
		{name: "create index", setup: []string{base}, query: "CREATE UNIQUE INDEX ub ON t (b)", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id) uk(a) uk(b)"},
		{name: "drop index", setup: []string{base}, query: "DROP INDEX ua ON t", want: "id int(11) NOT NULL, a varchar(10), b int(11) | pk(id)"},
		{name: "drop database", setup: []string{base, "CREATE TABLE other.u (x int)"}, query: "DROP DATABASE db", want: "-"},
		{name: "drop database keeps others", setup: []string{base, "CREATE TABLE other.u (x int)"}, query: "DROP DATABASE db", table: "other.u", want: "x int(11)"},
		{name: "database charset inherited", setup: []string{"CREATE DATABASE db CHARACTER SET latin1"}, query: "CREATE TABLE t (a text(100))", want: "a tinytext"},
		{name: "convert grows text", setup: []string{"CREATE TABLE t (a text, b tinytext) CHARSET latin1"}, query: "ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4", want: "a mediumtext, b text"},
		{name: "convert to binary", setup: []string{base}, query: "ALTER TABLE t CONVERT TO CHARACTER SET binary", want: "ErrUnsupportedDDL"},
		{name: "statement-based dml", query: "INSERT INTO t VALUES (1)", want: "ErrUnsupportedDDL"},
		{name: "unparsable", query: "ALTER TABLE t ADD COLUMN", want: "ErrUnsupportedDDL"},
		{name: "system versioning", query: "CREATE TABLE t (a int) WITH SYSTEM VERSIONING", want: "ErrUnsupportedDDL"},
		{name: "grant ignored", query: "GRANT ALL ON *.* TO 'u'@'%'", table: "-"},
		{name: "atomic", setup: []string{base}, query: "DROP TABLE t; ALTER TABLE nope ADD x int", want: "ErrUnknownTable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := New()
			for _, q := range tc.setup {
				if _, err := tr.Apply("db", q); err != nil {
					t.Fatalf("setup %s: %v", q, err)
				}
			}
			before, _ := tr.Marshal()
			_, err := tr.Apply("db", tc.query)
			switch tc.want {
			case "ErrUnsupportedDDL", "ErrUnknownTable":
				want := map[string]error{"ErrUnsupportedDDL": ErrUnsupportedDDL, "ErrUnknownTable": ErrUnknownTable}[tc.want]
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %s", err, tc.want)
				}
				var de *DDLError
				if !errors.As(err, &de) || !strings.Contains(tc.query, de.Query) {
					t.Errorf("error %v does not carry the statement", err)
				}
				if after, _ := tr.Marshal(); string(after) != string(before) {
					t.Errorf("failed statement changed the tracker:\n%s\n%s", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			name := tc.table
			if name == "" {
				name = "db.t"
			}
			if name == "-" {
				if len(tr.Tables()) != 0 {
					t.Fatalf("tables %v, want none", tr.Tables())
				}
				return
			}
			s, n, _ := strings.Cut(name, ".")
			d, ok := tr.Table(s, n)
			if tc.want == "-" {
				if ok {
					t.Fatalf("%s still exists: %s", name, describe(d))
				}
				return
			}
			if !ok {
				t.Fatalf("%s unknown; tables %v", name, tr.Tables())
			}
			if got := describe(d); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestTableDefsAreImmutable(t *testing.T) {
	tr := New()
	if _, err := tr.Apply("db", "CREATE TABLE t (a int, b int, PRIMARY KEY (a))"); err != nil {
		t.Fatal(err)
	}
	before, _ := tr.Table("db", "t")
	snapshot := describe(before)
	for _, q := range []string{"ALTER TABLE t ADD c int FIRST", "ALTER TABLE t DROP PRIMARY KEY", "ALTER TABLE t CHANGE a aa bigint", "RENAME TABLE t TO u"} {
		if _, err := tr.Apply("db", q); err != nil {
			t.Fatal(err)
		}
	}
	if got := describe(before); got != snapshot {
		t.Fatalf("a handed-out definition changed: %s -> %s", snapshot, got)
	}
}

func TestRowKey(t *testing.T) {
	for _, tc := range []struct {
		create string
		want   []int
	}{
		{"CREATE TABLE t (a int, b int, PRIMARY KEY (b))", []int{1}},
		{"CREATE TABLE t (a int, b int NOT NULL, UNIQUE (a), UNIQUE (b))", []int{1}},
		{"CREATE TABLE t (a int, b int, UNIQUE (a))", nil},
		{"CREATE TABLE t (a int, b int, UNIQUE ((a + 1)))", nil},
	} {
		tr := New()
		if _, err := tr.Apply("db", tc.create); err != nil {
			t.Fatal(err)
		}
		d, _ := tr.Table("db", "t")
		if got := d.RowKey(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: RowKey %v, want %v", tc.create, got, tc.want)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	tr := New()
	for _, q := range []string{
		"CREATE DATABASE db CHARACTER SET latin1",
		"CREATE TABLE t (id int primary key, a varchar(10) charset utf8mb4, e enum('x','y'), s set('p'), g point, v int as (id) virtual, i int invisible, UNIQUE KEY u (a), KEY k (e))",
		"CREATE TABLE other.`Mixed``Case` (x bigint unsigned, b varbinary(3))",
	} {
		if _, err := tr.Apply("db", q); err != nil {
			t.Fatal(err)
		}
	}
	b, err := tr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tr2, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := tr2.Marshal()
	if string(b) != string(b2) {
		t.Fatalf("round trip changed the state:\n%s\n%s", b, b2)
	}
	for _, n := range tr.Tables() {
		d1, _ := tr.Table(n.Schema, n.Name)
		d2, ok := tr2.Table(n.Schema, n.Name)
		if !ok || describe(d1) != describe(d2) || fmt.Sprint(d1) != fmt.Sprint(d2) {
			t.Errorf("%s: %+v\nafter round trip %+v", n, d1, d2)
		}
	}
	// The database charset survives: a new table inherits it.
	if _, err := tr2.Apply("db", "CREATE TABLE n (a text(100))"); err != nil {
		t.Fatal(err)
	}
	if d, _ := tr2.Table("db", "n"); d.Columns[0].Type != "tinytext" {
		t.Errorf("after round trip, text(100) in a latin1 database is %s", d.Columns[0].Type)
	}

	for _, bad := range []string{
		``, `{}`, `{"version":2,"tables":[]}`, `{"version":1,"tables":[null]}`,
		`{"version":1,"tables":[{"schema":"a","name":"b","columns":[]}]}`,
		`{"version":1,"tables":[{"schema":"a","name":"b","columns":[{"name":"x","type":"int"}],"indexes":[{"name":"i","columns":["y"]}]}]}`,
		`{"version":1,"tables":[{"schema":"a","name":"b","columns":[{"name":"x","type":"int"},{"name":"X","type":"int"}]}]}`,
		`{"version":1,"tables":[{"schema":"a","name":"b","columns":[{"name":"x","type":"int"}]},{"schema":"a","name":"b","columns":[{"name":"x","type":"int"}]}]}`,
	} {
		if _, err := Unmarshal([]byte(bad)); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}

func TestCreateFromSQL(t *testing.T) {
	tr := New()
	if err := tr.CreateFromSQL("db", "CREATE TABLE `t` (`a` int(11) NOT NULL, PRIMARY KEY (`a`))"); err != nil {
		t.Fatal(err)
	}
	// Seeding again replaces, even with IF NOT EXISTS.
	if err := tr.CreateFromSQL("db", "CREATE TABLE IF NOT EXISTS `t` (`b` bigint(20) DEFAULT NULL)"); err != nil {
		t.Fatal(err)
	}
	if d, _ := tr.Table("db", "t"); describe(d) != "b bigint(20)" {
		t.Errorf("after reseeding: %s", describe(d))
	}
	if err := tr.CreateFromSQL("", "CREATE DATABASE `db` /*!40100 DEFAULT CHARACTER SET latin1 COLLATE latin1_swedish_ci */"); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Apply("db", "CREATE TABLE u (a text(100))"); err != nil {
		t.Fatal(err)
	}
	if d, _ := tr.Table("db", "u"); d.Columns[0].Type != "tinytext" || d.Columns[0].Charset != "latin1" {
		t.Errorf("table in a seeded latin1 database: %+v", d.Columns[0])
	}
	for _, bad := range []string{"ALTER TABLE t ADD c int", "CREATE TABLE v LIKE t", "CREATE TABLE a (x int); CREATE TABLE b (y int)", "GRANT ALL ON *.* TO u", "not sql"} {
		err := tr.CreateFromSQL("db", bad)
		if !errors.Is(err, ErrUnsupportedDDL) {
			t.Errorf("CreateFromSQL(%q) = %v, want ErrUnsupportedDDL", bad, err)
			continue
		}
		var de *DDLError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "schema: unsupported DDL") || !strings.Contains(err.Error(), de.Query) {
			t.Errorf("error message %q", err)
		}
	}
	long := "CREATE TABLE t (" + strings.Repeat("a", 300)
	_, err := tr.Apply("db", long)
	var de *DDLError
	if !errors.As(err, &de) || de.Query != long[:200] {
		t.Errorf("error for a long statement: %v", err)
	}
}

// TestTrackerForeignKeys follows foreign keys across schemas, through a
// rename of the referenced schema's table, a dropped referenced table and a
// dropped database, and through Marshal and Unmarshal. (Single-schema cases
// are checked against a server by TestTrackerMatchesServer.)
func TestTrackerForeignKeys(t *testing.T) {
	tr := New()
	for _, q := range []string{
		"CREATE DATABASE a",
		"CREATE DATABASE b",
		"CREATE TABLE a.p (id int primary key, k varchar(8) unique)",
		"CREATE TABLE b.c (id int primary key, pid int, pk varchar(8), FOREIGN KEY (pid) REFERENCES a.p (id) ON DELETE CASCADE, CONSTRAINT byk FOREIGN KEY (pk) REFERENCES a.p (k) ON UPDATE SET NULL)",
		"CREATE TABLE b.d (id int primary key, cid int REFERENCES c (id))",
		"RENAME TABLE a.p TO b.p2",
		"ALTER TABLE b.p2 CHANGE k kk varchar(8)",
	} {
		if _, err := tr.Apply("", q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	fks := func(schema, name string) []string {
		t.Helper()
		d, ok := tr.Table(schema, name)
		if !ok {
			t.Fatalf("no table %s.%s", schema, name)
		}
		return trackerForeignKeys(d)
	}
	want := []string{
		"byk (pk) -> `b`.`p2` (kk) delete=restrict update=set null",
		"c_ibfk_1 (pid) -> `b`.`p2` (id) delete=cascade update=restrict",
	}
	if got := fks("b", "c"); !slices.Equal(got, want) {
		t.Fatalf("b.c: got %q, want %q", got, want)
	}
	if got, want := fks("b", "d"), []string{"d_ibfk_1 (cid) -> `b`.`c` (id) delete=restrict update=restrict"}; !slices.Equal(got, want) {
		t.Fatalf("b.d: got %q, want %q", got, want)
	}
	c, _ := tr.Table("b", "c")
	d, _ := tr.Table("b", "d")
	if !c.ForeignKeys[0].Acts() || !c.ForeignKeys[1].Acts() || d.ForeignKeys[0].Acts() {
		t.Fatalf("Acts: %+v %+v", c.ForeignKeys, d.ForeignKeys)
	}

	data, err := tr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := back.Marshal(); string(again) != string(data) {
		t.Fatalf("round trip changed the state:\n%s\n%s", data, again)
	}

	// The referenced table dropped, the references stay (as on the
	// server, where a new table of that name takes them up).
	for _, q := range []string{"DROP TABLE b.p2", "DROP DATABASE a"} {
		if _, err := tr.Apply("", q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if got := fks("b", "c"); !slices.Equal(got, want) {
		t.Fatalf("b.c after the drops: got %q, want %q", got, want)
	}
	if _, err := tr.Apply("b", "ALTER TABLE c DROP FOREIGN KEY byk, DROP FOREIGN KEY c_ibfk_1"); err != nil {
		t.Fatal(err)
	}
	if got := fks("b", "c"); len(got) != 0 {
		t.Fatalf("b.c after DROP FOREIGN KEY: %q", got)
	}

	// A state whose foreign key names a column the table lacks is refused.
	bad := strings.Replace(string(data), `"columns":["pid"]`, `"columns":["nope"]`, 1)
	if _, err := Unmarshal([]byte(bad)); err == nil {
		t.Fatal("Unmarshal accepted a foreign key on an unknown column")
	}
}
