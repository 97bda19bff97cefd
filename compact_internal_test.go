package dmworker

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// applyModel applies changes to a table keyed by its first column, as a
// sink would in normal mode: an insert adds the row (and fails on a key
// that exists), an update of an existing row removes the old row's key and
// sets the new, an update of a missing row changes nothing, a delete
// removes.
func applyModel(rows map[int64][]any, changes []Change) error {
	for _, c := range changes {
		switch c.Kind {
		case Insert:
			if _, ok := rows[c.After[0].(int64)]; ok {
				return fmt.Errorf("insert of existing key %v", c.After[0])
			}
			rows[c.After[0].(int64)] = c.After
		case Update:
			if _, ok := rows[c.Before[0].(int64)]; !ok {
				continue
			}
			delete(rows, c.Before[0].(int64))
			rows[c.After[0].(int64)] = c.After
		case Delete:
			delete(rows, c.Before[0].(int64))
		}
	}
	return nil
}

// TestCompactKeepsTheOutcome: random valid change sequences on a table with
// a primary key (and, in a second table, one with a unique key too, which
// must not be compacted) end in the same rows with and without compaction,
// and compaction does shrink them.
func TestCompactKeepsTheOutcome(t *testing.T) {
	pkOnly := &Table{Schema: "s", Name: "pk", Columns: []Column{{Name: "id"}, {Name: "v"}}, PrimaryKey: []int{0}}
	withUK := &Table{Schema: "s", Name: "uk", Columns: []Column{{Name: "id"}, {Name: "v"}}, PrimaryKey: []int{0}, UniqueKeys: [][]int{{1}}}
	rnd := rand.New(rand.NewPCG(1, 2))
	shrunk, reordered := 0, 0
	for round := range 2000 {
		// Some rows exist before the batch, as downstream.
		initial := map[*Table]map[int64][]any{pkOnly: {}, withUK: {}}
		for _, tbl := range []*Table{pkOnly, withUK} {
			for id := range int64(5) {
				if rnd.IntN(2) == 0 {
					initial[tbl][id] = []any{id, int64(rnd.IntN(100))}
				}
			}
		}
		fresh := func() map[*Table]map[int64][]any {
			return map[*Table]map[int64][]any{pkOnly: maps.Clone(initial[pkOnly]), withUK: maps.Clone(initial[withUK])}
		}
		state := fresh()
		var changes []Change
		for range 1 + rnd.IntN(30) {
			tbl := pkOnly
			if rnd.IntN(4) == 0 {
				tbl = withUK
			}
			rows := state[tbl]
			id := int64(rnd.IntN(5))
			old, exists := rows[id]
			var c Change
			switch {
			case !exists:
				c = Change{Kind: Insert, Table: tbl, After: []any{id, int64(rnd.IntN(100))}}
			case rnd.IntN(3) == 0:
				c = Change{Kind: Delete, Table: tbl, Before: old}
			default:
				newID := id
				if rnd.IntN(4) == 0 {
					newID = int64(5 + rnd.IntN(5))
					if _, taken := rows[newID]; taken {
						newID = id
					}
				}
				c = Change{Kind: Update, Table: tbl, Before: old, After: []any{newID, int64(rnd.IntN(100))}}
			}
			if err := applyModel(rows, []Change{c}); err != nil {
				t.Fatalf("round %d: the generator made an invalid change: %v", round, err)
			}
			changes = append(changes, c)
		}
		want := fresh()
		split := func(cs []Change) map[*Table][]Change {
			m := map[*Table][]Change{}
			for _, c := range cs {
				m[c.Table] = append(m[c.Table], c)
			}
			return m
		}
		for tbl, cs := range split(changes) {
			if err := applyModel(want[tbl], cs); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		n := len(changes)
		compacted := compact(append([]Change(nil), changes...), true)
		normal := compact(append([]Change(nil), changes...), false)
		if len(compacted) < n {
			shrunk++
		}
		grouped := group(append([]Change(nil), changes...))
		both := group(compact(append([]Change(nil), changes...), true))
		if fmt.Sprint(rowsOf(grouped)) != fmt.Sprint(rowsOf(changes)) {
			reordered++
		}
		for name, cs := range map[string][]Change{"compacted": compacted, "compacted outside safe mode": normal, "grouped": grouped, "compacted and grouped": both} {
			got := fresh()
			// Applied in order across tables, as a sink would.
			for _, c := range cs {
				if err := applyModel(got[c.Table], []Change{c}); err != nil {
					t.Fatalf("round %d table %s: %s changes: %v\nchanges %v\n%s %v", round, c.Table.Name, name, err, changes, name, cs)
				}
			}
			for _, tbl := range []*Table{pkOnly, withUK} {
				if !maps.EqualFunc(want[tbl], got[tbl], func(a, b []any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
					t.Fatalf("round %d table %s: %s changes end in %v, the originals in %v\nchanges %v\n%s %v",
						round, tbl.Name, name, got[tbl], want[tbl], changes, name, cs)
				}
			}
		}
		// The unique-key table's changes are never merged.
		if len(split(compacted)[withUK]) != len(split(changes)[withUK]) {
			t.Fatalf("round %d: changes to a table with a unique key were compacted", round)
		}
	}
	if shrunk == 0 || reordered == 0 {
		t.Fatalf("compaction merged in %d rounds, grouping reordered in %d: both must happen", shrunk, reordered)
	}
}

func TestCompactRules(t *testing.T) {
	tbl := &Table{Schema: "s", Name: "t", Columns: []Column{{Name: "id"}, {Name: "v"}}, PrimaryKey: []int{0}}
	row := func(id, v int64) []any { return []any{id, v} }
	for _, tc := range []struct {
		name string
		in   []Change
		want []Change
	}{
		{"insert+update", []Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Update, Table: tbl, Before: row(1, 1), After: row(1, 2)}},
			[]Change{{Kind: Insert, Table: tbl, After: row(1, 2)}}},
		{"insert+delete", []Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Delete, Table: tbl, Before: row(1, 1)}},
			[]Change{{Kind: Delete, Table: tbl, Before: row(1, 1)}}},
		{"update+update", []Change{{Kind: Update, Table: tbl, Before: row(1, 1), After: row(1, 2)}, {Kind: Update, Table: tbl, Before: row(1, 2), After: row(1, 3)}},
			[]Change{{Kind: Update, Table: tbl, Before: row(1, 1), After: row(1, 3)}}},
		{"update+delete", []Change{{Kind: Update, Table: tbl, Before: row(1, 1), After: row(1, 2)}, {Kind: Delete, Table: tbl, Before: row(1, 2)}},
			[]Change{{Kind: Delete, Table: tbl, Before: row(1, 1)}}},
		{"delete+insert", []Change{{Kind: Delete, Table: tbl, Before: row(1, 1)}, {Kind: Insert, Table: tbl, After: row(1, 2)}},
			[]Change{{Kind: Update, Table: tbl, Before: row(1, 1), After: row(1, 2)}}},
		{"delete+insert+delete", []Change{{Kind: Delete, Table: tbl, Before: row(1, 1)}, {Kind: Insert, Table: tbl, After: row(1, 2)}, {Kind: Delete, Table: tbl, Before: row(1, 2)}},
			[]Change{{Kind: Delete, Table: tbl, Before: row(1, 1)}}},
		{"insert+delete+insert", []Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Delete, Table: tbl, Before: row(1, 1)}, {Kind: Insert, Table: tbl, After: row(1, 2)}},
			[]Change{{Kind: Delete, Table: tbl, Before: row(1, 1)}, {Kind: Insert, Table: tbl, After: row(1, 2)}}},
		{"key change is a wall", []Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Update, Table: tbl, Before: row(1, 1), After: row(2, 1)}, {Kind: Update, Table: tbl, Before: row(2, 1), After: row(2, 5)}},
			[]Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Update, Table: tbl, Before: row(1, 1), After: row(2, 1)}, {Kind: Update, Table: tbl, Before: row(2, 1), After: row(2, 5)}}},
	} {
		got := compact(append([]Change(nil), tc.in...), true)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || fmt.Sprintf("%v", rowsOf(got)) != fmt.Sprintf("%v", rowsOf(tc.want)) {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, rowsOf(got), tc.want, rowsOf(tc.want))
		}
	}
}

// TestCompactRulesNormalMode: outside safe mode a row inserted and deleted
// within the batch leaves nothing to write; the other rules are those of
// safe mode.
func TestCompactRulesNormalMode(t *testing.T) {
	tbl := &Table{Schema: "s", Name: "t", Columns: []Column{{Name: "id"}, {Name: "v"}}, PrimaryKey: []int{0}}
	row := func(id, v int64) []any { return []any{id, v} }
	for _, tc := range []struct {
		name string
		in   []Change
		want []Change
	}{
		{"insert+delete", []Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Delete, Table: tbl, Before: row(1, 1)}}, nil},
		{"insert+update+delete", []Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Update, Table: tbl, Before: row(1, 1), After: row(1, 2)}, {Kind: Delete, Table: tbl, Before: row(1, 2)}}, nil},
		{"insert+delete+insert", []Change{{Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Delete, Table: tbl, Before: row(1, 1)}, {Kind: Insert, Table: tbl, After: row(1, 2)}},
			[]Change{{Kind: Insert, Table: tbl, After: row(1, 2)}}},
		{"others kept around", []Change{{Kind: Insert, Table: tbl, After: row(2, 1)}, {Kind: Insert, Table: tbl, After: row(1, 1)}, {Kind: Update, Table: tbl, Before: row(3, 1), After: row(3, 2)}, {Kind: Delete, Table: tbl, Before: row(1, 1)}},
			[]Change{{Kind: Insert, Table: tbl, After: row(2, 1)}, {Kind: Update, Table: tbl, Before: row(3, 1), After: row(3, 2)}}},
		{"delete+insert", []Change{{Kind: Delete, Table: tbl, Before: row(1, 1)}, {Kind: Insert, Table: tbl, After: row(1, 2)}},
			[]Change{{Kind: Update, Table: tbl, Before: row(1, 1), After: row(1, 2)}}},
	} {
		got := compact(append([]Change(nil), tc.in...), false)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || fmt.Sprintf("%v", rowsOf(got)) != fmt.Sprintf("%v", rowsOf(tc.want)) {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, rowsOf(got), tc.want, rowsOf(tc.want))
		}
	}
}

func rowsOf(cs []Change) [][2][]any {
	var out [][2][]any
	for _, c := range cs {
		out = append(out, [2][]any{c.Before, c.After})
	}
	return out
}

// TestCompactGroupCollatedKey: with a primary key of text in a
// case-insensitive collation, 'ABC' and 'abc' are one row: an insert of
// 'ABC' then a delete of 'abc' must stay in that order (grouping put the
// delete first, leaving the row downstream), and compaction keeps them.
func TestCompactGroupCollatedKey(t *testing.T) {
	tb := &Table{Schema: "s", Name: "ci", Columns: []Column{{Name: "k", Type: "varchar(10)"}, {Name: "v", Type: "int(11)"}}, PrimaryKey: []int{0}}
	other := &Table{Schema: "s", Name: "o", Columns: []Column{{Name: "id", Type: "int(11)"}}, PrimaryKey: []int{0}}
	changes := []Change{
		{Kind: Insert, Table: tb, After: []any{"ABC", int64(1)}},
		{Kind: Insert, Table: other, After: []any{int64(1)}},
		{Kind: Update, Table: tb, Before: []any{"abc", int64(1)}, After: []any{"abc", int64(2)}},
		{Kind: Insert, Table: other, After: []any{int64(2)}},
		{Kind: Delete, Table: tb, Before: []any{"abc ", int64(2)}},
	}
	out := group(compact(append([]Change(nil), changes...), false))
	var seq []ChangeKind
	for _, c := range out {
		if c.Table == tb {
			seq = append(seq, c.Kind)
		}
	}
	if len(seq) != 3 || seq[0] != Insert || seq[1] != Update || seq[2] != Delete {
		t.Fatalf("changes of one row reordered or merged: %v", seq)
	}
	if tb.exactPrimaryKey() || !other.exactPrimaryKey() {
		t.Fatal("exactPrimaryKey")
	}
	pre := &Table{Schema: "s", Name: "p", Columns: []Column{{Name: "b", Type: "varbinary(20)", Binary: true}}, PrimaryKey: []int{0}, pkPrefix: []int{4}}
	if pre.exactPrimaryKey() {
		t.Fatal("a prefix key is exact")
	}
}
