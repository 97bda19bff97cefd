package dmworker

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dmworker/dmworker/internal/schema"
)

// optShardDef is a shard table's definition from CREATE TABLE.
func optShardDef(t *testing.T, create string) *schema.TableDef {
	t.Helper()
	tr := schema.New()
	if err := tr.CreateFromSQL("s", create); err != nil {
		t.Fatal(err)
	}
	n := tr.Tables()[0]
	d, _ := tr.Table(n.Schema, n.Name)
	return d
}

// optRun runs query on shard (whose definition is *def, updated) through
// g, and returns the statements applied downstream.
func optRun(t *testing.T, g *ShardGroup, shard ShardRef, def **schema.TableDef, query string) ([]string, error) {
	t.Helper()
	stmts, err := schema.Split("s", query)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := stmts[0].Steps(*def)
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	route := func(string, string) (string, string) { return "m", "o" }
	err = g.optimistic(context.Background(), shard, "m.o", steps,
		func(s *schema.Step) (string, error) { return s.Render(route) },
		func(q string) error { ran = append(ran, q); return nil }, nil)
	if err == nil {
		*def = steps[len(steps)-1].After
	}
	return ran, err
}

// TestShardGroupOptimistic: widening clauses are applied once, by the
// first shard to run them; a drop waits for every shard (Status shows
// it); incompatible clauses stop the shard with a ShardIncompatibleDDLError
// naming the others.
func TestShardGroupOptimistic(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b")
	const create = "CREATE TABLE o1 (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, note TEXT)"
	a, b := ShardRef{"a", "s.o1"}, ShardRef{"b", "s.o1"}
	da, db := optShardDef(t, create), optShardDef(t, create)
	g.optRegister("a", map[string]map[ShardRef]*schema.TableDef{"m.o": {a: da}}, nil)
	g.optRegister("b", map[string]map[ShardRef]*schema.TableDef{"m.o": {b: db}}, nil)
	step := func(sh ShardRef, def **schema.TableDef, q string, want ...string) {
		t.Helper()
		ran, err := optRun(t, g, sh, def, q)
		if err != nil || !slices.Equal(ran, want) {
			t.Fatalf("%s %q: applied %q (%v), want %q", sh, q, ran, err, want)
		}
	}
	step(a, &da, "ALTER TABLE o1 ADD COLUMN x INT", "ALTER TABLE `m`.`o` ADD COLUMN `x` INT")
	step(b, &db, "ALTER TABLE o1 ADD COLUMN x INT")
	step(b, &db, "ALTER TABLE o1 ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu', ADD INDEX k (customer)",
		"ALTER TABLE `m`.`o` ADD COLUMN `region` VARCHAR(8) NOT NULL DEFAULT _UTF8MB4'eu'", "ALTER TABLE `m`.`o` ADD INDEX `k`(`customer`)")
	step(a, &da, "CREATE INDEX k ON o1 (customer)")
	step(a, &da, "ALTER TABLE o1 ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'")
	step(a, &da, "ALTER TABLE o1 MODIFY customer VARCHAR(80) NOT NULL", "ALTER TABLE `m`.`o` MODIFY COLUMN `customer` VARCHAR(80) NOT NULL")
	step(b, &db, "ALTER TABLE o1 MODIFY customer VARCHAR(60) NOT NULL") // fits the downstream's
	step(b, &db, "ALTER TABLE o1 MODIFY customer VARCHAR(80) NOT NULL")

	// A drop waits for the other shard.
	step(a, &da, "ALTER TABLE o1 DROP COLUMN note")
	st := g.Status()
	if len(st) != 1 || st[0].Mode != ShardOptimistic || st[0].Statement != "ALTER TABLE `m`.`o` DROP COLUMN `note`" ||
		len(st[0].Reached) != 1 || st[0].Reached[0].ShardRef != a || !slices.Equal(st[0].Waiting, []string{"b"}) || st[0].Since.IsZero() {
		t.Fatalf("status %+v", st)
	}
	step(b, &db, "ALTER TABLE o1 DROP COLUMN note", "ALTER TABLE `m`.`o` DROP COLUMN `note`")
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("status after the last drop: %+v", st)
	}

	// Incompatible clauses.
	step(b, &db, "ALTER TABLE o1 ADD COLUMN w INT DEFAULT 1", "ALTER TABLE `m`.`o` ADD COLUMN `w` INT DEFAULT 1")
	for _, c := range []struct{ q, others string }{
		{"ALTER TABLE o1 MODIFY customer VARCHAR(20) NOT NULL", "b:s.o1"},
		{"ALTER TABLE o1 ADD COLUMN y INT NOT NULL", "b:s.o1"},
		{"ALTER TABLE o1 ADD COLUMN w INT DEFAULT 2", "b:s.o1"},
		{"ALTER TABLE o1 ADD COLUMN w BIGINT DEFAULT 1", "b:s.o1"},
		{"ALTER TABLE o1 CHANGE x x2 INT", "b:s.o1"},
		{"ALTER TABLE o1 DROP COLUMN customer", "b:s.o1"},
		{"ALTER TABLE o1 MODIFY x VARCHAR(10)", "b:s.o1"},
	} {
		before := da
		ran, err := optRun(t, g, a, &da, c.q)
		var ie *ShardIncompatibleDDLError
		if !errors.Is(err, ErrShardIncompatibleDDL) || !errors.As(err, &ie) || len(ran) != 0 || ie.Target != "m.o" || ie.Shard != a ||
			len(ie.Others) != 1 || ie.Others[0].String() != c.others || da != before {
			t.Fatalf("%q: %v (applied %q)", c.q, err, ran)
		}
		t.Log(err)
	}
}

// TestShardGroupOptimisticSettle: a drop every known shard has run waits
// until every source has told its shards; the last to register applies it.
func TestShardGroupOptimisticSettle(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b", "c")
	const create = "CREATE TABLE o1 (id INT PRIMARY KEY, note TEXT)"
	a, b := ShardRef{"a", "s.o1"}, ShardRef{"b", "s.o1"}
	da, db := optShardDef(t, create), optShardDef(t, create)
	g.optRegister("a", map[string]map[ShardRef]*schema.TableDef{"m.o": {a: da}}, nil)
	g.optRegister("b", map[string]map[ShardRef]*schema.TableDef{"m.o": {b: db}}, nil)
	for _, s := range []struct {
		r   ShardRef
		def **schema.TableDef
	}{{a, &da}, {b, &db}} {
		if ran, err := optRun(t, g, s.r, s.def, "ALTER TABLE o1 DROP COLUMN note"); err != nil || len(ran) != 0 {
			t.Fatalf("%s: %q %v", s.r, ran, err)
		}
	}
	if st := g.Status(); len(st) != 1 || !slices.Equal(st[0].Waiting, []string{"c"}) {
		t.Fatalf("status %+v", st)
	}
	g.optRegister("c", nil, nil) // c has no shard of m.o
	var ran []string
	if err := g.optimisticSettle(context.Background(), &optIO{exec: func(target, stmt string) error { ran = append(ran, target+": "+stmt); return nil }}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ran, []string{"m.o: ALTER TABLE `m`.`o` DROP COLUMN `note`"}) || len(g.Status()) != 0 {
		t.Fatalf("settled %q, status %+v", ran, g.Status())
	}
}

// TestShardGroupOptimisticCreate: a shard table created late with a column
// the downstream lacks gets it added downstream; one lacking a column the
// downstream cannot do without stops with a ShardIncompatibleDDLError.
func TestShardGroupOptimisticCreate(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b")
	a := ShardRef{"a", "s.o1"}
	g.optRegister("a", map[string]map[ShardRef]*schema.TableDef{"m.o": {a: optShardDef(t,
		"CREATE TABLE o1 (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, region VARCHAR(8) NOT NULL DEFAULT 'eu')")}}, nil)
	g.optRegister("b", nil, nil)
	var ran []string
	exec := func(q string) error { ran = append(ran, q); return nil }
	created := 0
	create := func() error { created++; return nil }
	def := optShardDef(t, "CREATE TABLE o2 (id INT PRIMARY KEY, customer VARCHAR(20) NOT NULL, memo VARCHAR(20) CHARACTER SET latin1 DEFAULT 'm')")
	if err := g.optCreate(context.Background(), ShardRef{"b", "s.o2"}, "m.o", def, create, exec, nil); err != nil || created != 1 ||
		!slices.Equal(ran, []string{"ALTER TABLE `m`.`o` ADD COLUMN `memo` varchar(20) CHARACTER SET latin1 DEFAULT 'm'"}) {
		t.Fatalf("create with a new column: %v, ran %q", err, ran)
	}
	ran = nil
	def = optShardDef(t, "CREATE TABLE o3 (id INT PRIMARY KEY, region VARCHAR(8))")
	err := g.optCreate(context.Background(), ShardRef{"b", "s.o3"}, "m.o", def, create, exec, nil)
	var ie *ShardIncompatibleDDLError
	if !errors.As(err, &ie) || len(ran) != 0 || len(ie.Others) != 2 {
		t.Fatalf("create without customer: %v, ran %q", err, ran)
	}
	t.Log(err)
}

// TestShardGroupOptimisticRestart: a group that starts with shards that
// differ on a column shows, once every source has registered, its drop
// as held back (reached by the shards without it, waiting for those with
// it) and applies it with the last shard's drop; a difference the shards
// resolve by adding the column goes from Status without a statement run.
// The downstream table's definition, when the sink tells it, makes a
// column only the downstream has known: a shard adding it the same way
// runs nothing downstream.
func TestShardGroupOptimisticRestart(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b", "c")
	a, b, c := ShardRef{"a", "s.o1"}, ShardRef{"b", "s.o1"}, ShardRef{"c", "s.o1"}
	da := optShardDef(t, "CREATE TABLE o1 (id INT PRIMARY KEY, note TEXT)")
	db := optShardDef(t, "CREATE TABLE o1 (id INT PRIMARY KEY, note TEXT, memo VARCHAR(20))")
	dc := optShardDef(t, "CREATE TABLE o1 (id INT PRIMARY KEY, note TEXT, extra INT)")
	down := optShardDef(t, "CREATE TABLE o (id INT PRIMARY KEY, note TEXT, memo VARCHAR(20), extra INT, kept VARCHAR(10))")
	downs := map[string]*schema.TableDef{"m.o": down}
	g.optRegister("a", map[string]map[ShardRef]*schema.TableDef{"m.o": {a: da}}, downs)
	g.optRegister("b", map[string]map[ShardRef]*schema.TableDef{"m.o": {b: db}}, downs)
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("status before every source registered: %+v", st)
	}
	g.optRegister("c", map[string]map[ShardRef]*schema.TableDef{"m.o": {c: dc}}, downs)
	st := g.Status()
	byStmt := map[string]ShardLockStatus{}
	for _, l := range st {
		byStmt[l.Statement] = l
	}
	reached := func(l ShardLockStatus) []string {
		var out []string
		for _, r := range l.Reached {
			out = append(out, r.ShardRef.String())
		}
		return out
	}
	memo, extra := byStmt["ALTER TABLE `m`.`o` DROP COLUMN `memo`"], byStmt["ALTER TABLE `m`.`o` DROP COLUMN `extra`"]
	if len(st) != 2 || memo.Mode != ShardOptimistic || memo.Target != "m.o" || !slices.Equal(memo.Waiting, []string{"b"}) ||
		!slices.Equal(reached(memo), []string{a.String(), c.String()}) || !slices.Equal(extra.Waiting, []string{"c"}) {
		t.Fatalf("status after every source registered: %+v", st)
	}
	// b drops memo, the last with it: applied downstream, gone from Status.
	if ran, err := optRun(t, g, b, &db, "ALTER TABLE o1 DROP COLUMN memo"); err != nil ||
		!slices.Equal(ran, []string{"ALTER TABLE `m`.`o` DROP COLUMN `memo`"}) {
		t.Fatalf("the last drop of memo: %q %v", ran, err)
	}
	// a and b add extra as c has it: nothing runs, the difference goes.
	for _, s := range []struct {
		r   ShardRef
		def **schema.TableDef
	}{{a, &da}, {b, &db}} {
		if ran, err := optRun(t, g, s.r, s.def, "ALTER TABLE o1 ADD COLUMN extra INT"); err != nil || len(ran) != 0 {
			t.Fatalf("%s adds extra: %q %v", s.r, ran, err)
		}
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("status once the shards agree: %+v", st)
	}
	// kept, which only the downstream has: a shard adding it as the
	// downstream has it runs nothing; one with another type is refused.
	if ran, err := optRun(t, g, a, &da, "ALTER TABLE o1 ADD COLUMN kept VARCHAR(10)"); err != nil || len(ran) != 0 {
		t.Fatalf("a adds kept: %q %v", ran, err)
	}
	if ran, err := optRun(t, g, c, &dc, "ALTER TABLE o1 ADD COLUMN kept VARCHAR(40) NOT NULL"); !errors.Is(err, ErrShardIncompatibleDDL) || len(ran) != 0 {
		t.Fatalf("c adds kept otherwise: %q %v", ran, err)
	}

	// Without the downstream's definition, the group would add kept.
	g2, _ := NewShardGroup("t", "a")
	da2 := optShardDef(t, "CREATE TABLE o1 (id INT PRIMARY KEY, note TEXT)")
	g2.optRegister("a", map[string]map[ShardRef]*schema.TableDef{"m.o": {a: da2}}, nil)
	if ran, err := optRun(t, g2, a, &da2, "ALTER TABLE o1 ADD COLUMN kept VARCHAR(10)"); err != nil || len(ran) != 1 {
		t.Fatalf("a adds kept, the downstream unknown: %q %v", ran, err)
	}
}

// TestShardGroupOptimisticRemove: a source taken out of the group takes
// its shards with it. A drop held back only for its shards is no longer
// waited for (Status shows it waiting for no source) and is applied by
// the next settle, which RemoveSource wakes the syncers for; a drop only
// its shards ran is forgotten; its later DDLs are refused.
func TestShardGroupOptimisticRemove(t *testing.T) {
	g, _ := NewShardGroup("t", "a", "b", "c")
	const create = "CREATE TABLE o1 (id INT PRIMARY KEY, note TEXT, memo TEXT)"
	a, b, c := ShardRef{"a", "s.o1"}, ShardRef{"b", "s.o1"}, ShardRef{"c", "s.o1"}
	da, db, dc := optShardDef(t, create), optShardDef(t, create), optShardDef(t, create)
	for _, s := range []struct {
		r ShardRef
		d *schema.TableDef
	}{{a, da}, {b, db}, {c, dc}} {
		g.optRegister(s.r.Source, map[string]map[ShardRef]*schema.TableDef{"m.o": {s.r: s.d}}, nil)
	}
	for _, s := range []struct {
		r   ShardRef
		def **schema.TableDef
		q   string
	}{{a, &da, "ALTER TABLE o1 DROP COLUMN note"}, {b, &db, "ALTER TABLE o1 DROP COLUMN note"}, {c, &dc, "ALTER TABLE o1 DROP COLUMN memo"}} {
		if ran, err := optRun(t, g, s.r, s.def, s.q); err != nil || len(ran) != 0 {
			t.Fatalf("%s %q: %q %v", s.r, s.q, ran, err)
		}
	}
	if st := g.Status(); len(st) != 2 {
		t.Fatalf("status %+v", st)
	}
	woken := g.optSettleChan()
	if err := g.RemoveSource("c"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	default:
		t.Fatal("RemoveSource did not wake the syncers to settle")
	}
	st := g.Status()
	if len(st) != 1 || st[0].Statement != "ALTER TABLE `m`.`o` DROP COLUMN `note`" || len(st[0].Waiting) != 0 ||
		len(st[0].Reached) != 2 || st[0].Reached[0].ShardRef != a || st[0].Reached[1].ShardRef != b {
		t.Fatalf("status after c removed: %+v", st)
	}
	var ran []string
	if err := g.optimisticSettle(context.Background(), &optIO{exec: func(target, stmt string) error {
		ran = append(ran, target+": "+stmt)
		return nil
	}}); err != nil || !slices.Equal(ran, []string{"m.o: ALTER TABLE `m`.`o` DROP COLUMN `note`"}) {
		t.Fatalf("settle after c removed: %q %v", ran, err)
	}
	if st := g.Status(); len(st) != 0 {
		t.Fatalf("status after the settle: %+v", st)
	}
	if _, err := optRun(t, g, c, &dc, "ALTER TABLE o1 ADD COLUMN x INT"); err == nil {
		t.Fatal("a DDL of the removed source c went through")
	}
	if g.opt.registered["c"] {
		t.Fatal("c still registered")
	}
}
