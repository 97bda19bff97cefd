package schema

import (
	"strings"
	"testing"
)

// TestSteps: an ALTER TABLE splits into its clauses, each classified,
// applied in turn and rendered alone with names routed; defaults are kept.
func TestSteps(t *testing.T) {
	tr := New()
	if err := tr.CreateFromSQL("s", "CREATE TABLE t (id INT PRIMARY KEY, c VARCHAR(10) NOT NULL DEFAULT 'x', n INT)"); err != nil {
		t.Fatal(err)
	}
	before, _ := tr.Table("s", "t")
	if c := before.Columns[1]; c.Default != "'x'" {
		t.Fatalf("default kept as %q", c.Default)
	}
	stmts, err := Split("s", "ALTER TABLE t ADD COLUMN (a INT, b INT NOT NULL DEFAULT 3), DROP COLUMN n, MODIFY c VARCHAR(20) NOT NULL, ADD INDEX k (c), CHANGE a a2 INT, ALTER COLUMN b SET DEFAULT 4, ENGINE = InnoDB")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := stmts[0].Steps(before)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind StepKind
		name string
		sql  string
	}{
		{StepAddColumn, "a", "ALTER TABLE `m`.`o` ADD COLUMN (`a` INT)"},
		{StepAddColumn, "b", "ALTER TABLE `m`.`o` ADD COLUMN (`b` INT NOT NULL DEFAULT 3)"},
		{StepDropColumn, "n", "ALTER TABLE `m`.`o` DROP COLUMN `n`"},
		{StepModifyColumn, "c", "ALTER TABLE `m`.`o` MODIFY COLUMN `c` VARCHAR(20) NOT NULL"},
		{StepAddIndex, "k", "ALTER TABLE `m`.`o` ADD INDEX `k`(`c`)"},
		{StepRenameColumn, "a", "ALTER TABLE `m`.`o` CHANGE COLUMN `a` `a2` INT"},
		{StepModifyColumn, "b", "ALTER TABLE `m`.`o` ALTER COLUMN `b` SET DEFAULT 4"},
		{StepOther, "", "ALTER TABLE `m`.`o` ENGINE = InnoDB"},
	}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(steps), len(want))
	}
	route := func(string, string) (string, string) { return "m", "o" }
	for i, w := range want {
		st := steps[i]
		name := st.Column
		if st.Kind == StepAddIndex {
			name = st.Index
		}
		sql, err := st.Render(route)
		if err != nil {
			t.Fatal(err)
		}
		if st.Kind != w.kind || name != w.name || sql != w.sql {
			t.Errorf("step %d: %s %q %q, want %s %q %q", i, st.Kind, name, sql, w.kind, w.name, w.sql)
		}
	}
	last := steps[len(steps)-1].After
	if b := last.Columns[last.Column("b")]; b.Default != "4" || b.Omittable() != true {
		t.Errorf("b after SET DEFAULT: %+v", b)
	}
	if last.Column("n") >= 0 || last.Column("a2") < 0 || before.Column("n") < 0 {
		t.Errorf("steps applied in turn: before %+v, after %+v", before.Columns, last.Columns)
	}
	if c := last.Columns[last.Column("c")]; c.Type != "varchar(20)" || c.Omittable() || c.Default != "" {
		// MODIFY redefines the column whole: no default now.
		t.Errorf("c: %+v", c)
	}
	if steps[0].After.Columns[3].Omittable() != true {
		t.Errorf("a INT: not omittable")
	}
	ci, _ := Split("s", "CREATE INDEX k2 ON t (n)")
	cs, err := ci[0].Steps(before)
	if err != nil || len(cs) != 1 || cs[0].Kind != StepAddIndex || cs[0].Index != "k2" {
		t.Fatalf("create index: %+v %v", cs, err)
	}
	if sql, _ := cs[0].Render(route); !strings.HasPrefix(sql, "CREATE INDEX `k2` ON `m`.`o`") {
		t.Errorf("create index rendered %q", sql)
	}
}

func TestFits(t *testing.T) {
	col := func(typ string, nullable bool) *ColumnDef {
		tr := New()
		null := " NOT NULL"
		if nullable {
			null = ""
		}
		if err := tr.CreateFromSQL("s", "CREATE TABLE t (c "+typ+null+")"); err != nil {
			t.Fatal(err)
		}
		d, _ := tr.Table("s", "t")
		return &d.Columns[0]
	}
	cases := []struct {
		a, b string
		an   bool
		bn   bool
		fits bool
	}{
		{"VARCHAR(40)", "VARCHAR(80)", false, false, true},
		{"VARCHAR(80)", "VARCHAR(40)", false, false, false},
		{"VARCHAR(40)", "VARCHAR(40)", true, false, false},
		{"VARCHAR(40)", "VARCHAR(40)", false, true, true},
		{"INT", "BIGINT", false, false, true},
		{"BIGINT", "INT", false, false, false},
		{"INT UNSIGNED", "BIGINT", false, false, true},
		{"INT UNSIGNED", "INT", false, false, false},
		{"INT", "INT UNSIGNED", false, false, false},
		{"DECIMAL(12,2)", "DECIMAL(14,2)", false, false, true},
		{"DECIMAL(12,2)", "DECIMAL(12,4)", false, false, false},
		{"FLOAT", "DOUBLE", false, false, true},
		{"TEXT", "MEDIUMTEXT", false, false, true},
		{"VARCHAR(40)", "TEXT", false, false, true},
		{"ENUM('a','b')", "ENUM('a','b','c')", false, false, true},
		{"ENUM('a','b')", "ENUM('b','a')", false, false, false},
		{"INT", "VARCHAR(20)", false, false, false},
	}
	for _, c := range cases {
		if got := Fits(col(c.a, c.an), col(c.b, c.bn)); got != c.fits {
			t.Errorf("Fits(%s null=%v, %s null=%v) = %v", c.a, c.an, c.b, c.bn, got)
		}
	}
}

// TestDefaultText: defaults read from CREATE TABLE as written and as SHOW
// CREATE TABLE prints them compare equal.
func TestDefaultText(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"c VARCHAR(8) NOT NULL DEFAULT 'eu'", "c varchar(8) NOT NULL DEFAULT 'eu'"},
		{"c VARCHAR(8)", "c varchar(8) DEFAULT NULL"},
		{"c INT DEFAULT 3", "c int(11) DEFAULT 3"},
	} {
		var defs []string
		for _, col := range []string{c.a, c.b} {
			tr := New()
			if err := tr.CreateFromSQL("s", "CREATE TABLE t ("+col+")"); err != nil {
				t.Fatal(err)
			}
			d, _ := tr.Table("s", "t")
			defs = append(defs, d.Columns[0].Default)
		}
		if defs[0] != defs[1] {
			t.Errorf("%q and %q: defaults %q", c.a, c.b, defs)
		}
	}
}
