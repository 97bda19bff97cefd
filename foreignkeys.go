package dmworker

import (
	"github.com/dmworker/dmworker/internal/schema"
)

// Foreign keys.
//
// InnoDB does not write what a foreign key's ON DELETE / ON UPDATE action
// does (CASCADE, SET NULL) to the binlog: a DELETE of a parent row is logged,
// the child rows it deleted are not. The downstream gets there the way a
// MariaDB replica does: it has the same foreign keys (the syncer forwards
// the upstream's DDL, the snapshot its SHOW CREATE TABLE) and the sink
// applies the parent's change with its foreign key checks on, so that the
// downstream's own foreign keys act.
//
// Which tables: the replicated tables are joined into groups by the foreign
// keys between them (downstream names, so that shards routed into one table
// share a group); a group with at least one foreign key that acts is a
// cascade group. Its tables get Table.CheckForeignKeys, except a table with
// a foreign key to a table the task does not replicate (the downstream may
// lack that table or its rows: a check would fail); its changes still
// follow the group's order.
//
// Order and replays: an action reaches rows the binlog never names (a
// child's child, the subtree of a self-referencing table), so no row key can
// order the changes it interacts with, and no replay can tell which of them
// were applied and which not: running an action twice, or missing one,
// loses rows. The changes of cascade groups are therefore applied in
// upstream order and never ahead of the checkpoint: the serial syncer's
// batches carry their checkpoint anyway; the parallel syncer applies them
// on its dispatcher, after the workers have applied everything before them,
// each batch with an exact checkpoint (syncer_parallel.go), never compacted.
// With checks on, a child insert then always follows its parent's, a
// parent delete its children's. Tables outside cascade groups keep the full
// parallelism and are applied with checks off, as before: foreign keys that
// only restrict change nothing the binlog does not carry.

// fkGroups is what the foreign keys of a tracked schema mean for the
// tables of a task.
type fkGroups struct {
	rs *rules
	tr *schema.Tracker
	// group maps the upstream name of each table in a cascade group to the
	// group's name (the downstream name of its first table).
	group map[schema.TableName]string
	// outside holds the tables with a foreign key to a table the task does
	// not replicate.
	outside map[schema.TableName]bool
}

// newFKGroups works out the cascade groups of the tables rs replicates in
// tr.
func newFKGroups(tr *schema.Tracker, rs *rules) *fkGroups {
	g := &fkGroups{rs: rs, tr: tr, group: map[schema.TableName]string{}, outside: map[schema.TableName]bool{}}
	parent := map[string]string{} // union-find over downstream names
	var find func(string) string
	find = func(n string) string {
		p, ok := parent[n]
		if !ok || p == n {
			return n
		}
		root := find(p)
		parent[n] = root
		return root
	}
	union := func(a, b string) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		if rb < ra {
			ra, rb = rb, ra
		}
		parent[rb] = ra
	}
	target := func(n schema.TableName) string {
		s, t := rs.route(n.Schema, n.Name)
		return s + "." + t
	}
	acting := map[string]bool{} // downstream names of tables with an acting key
	for _, n := range tr.Tables() {
		if !rs.allowed(n.Schema, n.Name) {
			continue
		}
		def, _ := tr.Table(n.Schema, n.Name)
		if len(def.ForeignKeys) == 0 {
			continue
		}
		for i := range def.ForeignKeys {
			fk := &def.ForeignKeys[i]
			ref := fk.Ref()
			if !g.replicated(ref) {
				g.outside[n] = true
				continue
			}
			union(target(n), target(ref))
			if fk.Acts() {
				acting[target(n)] = true
			}
		}
	}
	cascading := map[string]bool{}
	for n := range acting {
		cascading[find(n)] = true
	}
	if len(cascading) == 0 {
		return g
	}
	// Every replicated table whose downstream name is in a cascade group
	// (parents without foreign keys of their own included).
	for _, n := range tr.Tables() {
		if !rs.allowed(n.Schema, n.Name) {
			continue
		}
		if root := find(target(n)); cascading[root] {
			g.group[n] = root
		}
	}
	return g
}

// replicated reports whether the task replicates table n, as tracked.
func (g *fkGroups) replicated(n schema.TableName) bool {
	_, ok := g.tr.Table(n.Schema, n.Name)
	return ok && g.rs.allowed(n.Schema, n.Name)
}

// decorate sets t's foreign key fields for def's table.
func (g *fkGroups) decorate(t *Table, def *schema.TableDef) {
	n := def.QualifiedName()
	for i := range def.ForeignKeys {
		fk := &def.ForeignKeys[i]
		ref := fk.Ref()
		if !g.replicated(ref) {
			continue
		}
		out := ForeignKey{Name: fk.Name, RefColumns: fk.RefColumns, OnDelete: fkAction(fk.OnDelete), OnUpdate: fkAction(fk.OnUpdate)}
		out.RefSchema, out.RefTable = g.rs.route(ref.Schema, ref.Name)
		for _, c := range fk.Columns {
			out.Columns = append(out.Columns, def.Column(c))
		}
		t.ForeignKeys = append(t.ForeignKeys, out)
	}
	if grp, ok := g.group[n]; ok {
		t.fkGroup = grp
		t.CheckForeignKeys = !g.outside[n]
	}
}

func fkAction(a string) FKAction {
	switch a {
	case "CASCADE":
		return FKCascade
	case "SET NULL":
		return FKSetNull
	case "SET DEFAULT":
		return FKSetDefault
	}
	return FKRestrict
}
