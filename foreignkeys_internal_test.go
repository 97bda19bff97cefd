package dmworker

import (
	"slices"
	"testing"

	"github.com/dmworker/dmworker/internal/schema"
)

// TestFKGroups checks which tables the syncer treats as one cascade group
// and which it applies with the downstream's foreign key checks on: a group
// forms around an acting foreign key and takes in every table joined to it
// (a restricting neighbour, a parent without keys of its own); restricting
// keys alone form none; a table with a key to a table the task does not
// replicate stays in its group, unchecked; shards routed into one table
// share a group; the sink's ForeignKeys carry downstream names.
func TestFKGroups(t *testing.T) {
	tr := schema.New()
	for _, q := range []string{
		"CREATE DATABASE a", "CREATE DATABASE hidden", "CREATE DATABASE s1", "CREATE DATABASE s2",
		"CREATE TABLE a.p (id int primary key)",
		"CREATE TABLE a.c (id int primary key, pid int, FOREIGN KEY (pid) REFERENCES a.p (id) ON DELETE CASCADE)",
		"CREATE TABLE a.r (id int primary key, pid int REFERENCES a.p (id))",
		"CREATE TABLE hidden.h (id int primary key)",
		"CREATE TABLE a.o (id int primary key, pid int, hid int, FOREIGN KEY (pid) REFERENCES a.c (id) ON UPDATE SET NULL, FOREIGN KEY (hid) REFERENCES hidden.h (id))",
		"CREATE TABLE a.x (id int primary key)",
		"CREATE TABLE a.y (id int primary key, xid int REFERENCES a.x (id))",
		"CREATE TABLE a.alone (id int primary key)",
		"CREATE TABLE s1.p (id int primary key)",
		"CREATE TABLE s1.c (id int primary key, pid int, FOREIGN KEY (pid) REFERENCES s1.p (id) ON DELETE CASCADE)",
		"CREATE TABLE s2.p (id int primary key)",
		"CREATE TABLE s2.c (id int primary key, pid int, FOREIGN KEY (pid) REFERENCES s2.p (id) ON DELETE CASCADE)",
	} {
		if _, err := tr.Apply("", q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rs, err := newRules(SyncerConfig{
		Filter: BlockAllowList{IgnoreDBs: []string{"hidden"}},
		Routes: []RouteRule{{SchemaPattern: "s*", TargetSchema: "merged"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := newFKGroups(tr, rs)
	table := func(schemaName, name string) *Table {
		t.Helper()
		def, ok := tr.Table(schemaName, name)
		if !ok {
			t.Fatalf("no %s.%s", schemaName, name)
		}
		st := sinkTableOf(rs, def)
		g.decorate(st, def)
		return st
	}
	for _, tc := range []struct {
		schema, name string
		group        string
		checked      bool
	}{
		{"a", "p", "a.c", true},
		{"a", "c", "a.c", true},
		{"a", "r", "a.c", true},
		{"a", "o", "a.c", false}, // a key to hidden.h
		{"a", "x", "", false},
		{"a", "y", "", false},
		{"a", "alone", "", false},
		{"s1", "p", "merged.c", true},
		{"s1", "c", "merged.c", true},
		{"s2", "c", "merged.c", true},
	} {
		st := table(tc.schema, tc.name)
		if st.fkGroup != tc.group || st.CheckForeignKeys != tc.checked {
			t.Errorf("%s.%s: group %q checked %v, want %q %v", tc.schema, tc.name, st.fkGroup, st.CheckForeignKeys, tc.group, tc.checked)
		}
	}
	o := table("a", "o")
	if len(o.ForeignKeys) != 1 {
		t.Fatalf("a.o ForeignKeys %+v, want the one to a.c", o.ForeignKeys)
	}
	if fk := o.ForeignKeys[0]; fk.RefSchema != "a" || fk.RefTable != "c" || !slices.Equal(fk.Columns, []int{1}) ||
		!slices.Equal(fk.RefColumns, []string{"id"}) || fk.OnDelete != FKRestrict || fk.OnUpdate != FKSetNull {
		t.Fatalf("a.o's key: %+v", fk)
	}
	if fk := table("s2", "c").ForeignKeys; len(fk) != 1 || fk[0].RefSchema != "merged" || fk[0].RefTable != "p" || fk[0].OnDelete != FKCascade {
		t.Fatalf("s2.c's keys: %+v", fk)
	}
}
