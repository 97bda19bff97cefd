package dmworker

import (
	"cmp"
	"slices"
	"strings"

	"github.com/dmworker/dmworker/internal/causality"
)

// compact merges, within one worker's batch, consecutive changes to one row
// into one (SyncerConfig.Compact):
//
//	insert + update  -> insert of the new row
//	insert + delete  -> delete
//	update + update  -> one update from the first old row to the last new one
//	update + delete  -> delete of the first old row
//	delete + insert  -> update from the deleted row to the inserted one
//
// Outside safe mode an insert then a delete of one row become nothing: the
// insert succeeded upstream, so the row did not exist before it, and normal
// mode takes the downstream to hold what the upstream held at the
// checkpoint. In safe mode (a replay, where the downstream may hold the row
// already) the delete is kept.
//
// The delete + insert rule assumes, as normal mode does everywhere, that the
// downstream holds the deleted row; in safe mode an update is written as a
// delete and an insert-or-replace anyway. A delete merged from an insert of
// this batch does not merge with a later insert: the row it deletes may
// not exist before the batch, and the update would then change nothing.
// Only tables with a primary
// key and no other unique key take part, whose key compares values byte
// for byte (no text in a collation, where 'a' = 'A ', no prefix part: two
// changes to one row may then carry different key values), and only
// updates that keep the primary key: with another unique key, moving a change earlier could make
// two rows collide on it for a moment. The merged change takes the place of
// the first; changes in between concern other rows, so order is kept where
// it matters. The result reuses changes' backing array.
func compact(changes []Change, safe bool) []Change {
	if len(changes) < 2 {
		return changes
	}
	type key struct {
		t *Table
		k string
	}
	type slot struct {
		i int
		// born: out[i] is a delete merged from an insert of this batch,
		// of a row that may not exist before it.
		born bool
	}
	at := make(map[key]slot, len(changes))
	var buf []byte
	dropped := false // some changes became nothing (Table nil)
	out := changes[:0]
	for _, c := range changes {
		t := c.Table
		ok := len(t.PrimaryKey) > 0 && len(t.UniqueKeys) == 0 && t.exactPrimaryKey()
		row := c.After
		if c.Kind != Insert {
			row = c.Before
		}
		var k key
		if ok {
			buf = causality.AppendExact(buf[:0], t.PrimaryKey, row)
			k = key{t, string(buf)}
			if c.Kind == Update {
				buf = causality.AppendExact(buf[:0], t.PrimaryKey, c.After)
				ok = k.k == string(buf)
			}
		}
		if !ok {
			if c.Kind == Update && len(t.PrimaryKey) > 0 && len(t.UniqueKeys) == 0 && t.exactPrimaryKey() {
				// The key changes: nothing may merge across this change
				// for either key.
				delete(at, k)
				buf = causality.AppendExact(buf[:0], t.PrimaryKey, c.After)
				delete(at, key{t, string(buf)})
			}
			out = append(out, c)
			continue
		}
		if sl, seen := at[k]; seen && !(sl.born && c.Kind == Insert) {
			if !safe && out[sl.i].Kind == Insert && c.Kind == Delete {
				// Born and gone within the batch: nothing to write.
				out[sl.i] = Change{}
				delete(at, k)
				dropped = true
				continue
			}
			if merged, ok := mergeChanges(out[sl.i], c); ok {
				born := sl.born || (out[sl.i].Kind == Insert && c.Kind == Delete)
				out[sl.i] = merged
				at[k] = slot{sl.i, born}
				continue
			}
		}
		at[k] = slot{len(out), false}
		out = append(out, c)
	}
	if dropped {
		out = slices.DeleteFunc(out, func(c Change) bool { return c.Table == nil })
	}
	clear(changes[len(out):])
	return out
}

// mergeChanges merges b, which follows a on the same row, into one change,
// which carries b's transaction position.
func mergeChanges(a, b Change) (Change, bool) {
	m, ok := mergeKinds(a, b)
	m.TxnPos, m.TxnIndex = b.TxnPos, b.TxnIndex
	return m, ok
}

func mergeKinds(a, b Change) (Change, bool) {
	switch {
	case a.Kind == Insert && b.Kind == Update:
		return Change{Kind: Insert, Table: b.Table, After: b.After}, true
	case a.Kind == Insert && b.Kind == Delete:
		return Change{Kind: Delete, Table: b.Table, Before: b.Before}, true
	case a.Kind == Update && b.Kind == Update:
		return Change{Kind: Update, Table: b.Table, Before: a.Before, After: b.After}, true
	case a.Kind == Update && b.Kind == Delete:
		return Change{Kind: Delete, Table: b.Table, Before: a.Before}, true
	case a.Kind == Delete && b.Kind == Insert:
		return Change{Kind: Update, Table: b.Table, Before: a.Before, After: b.After}, true
	}
	return Change{}, false
}

// groupable reports whether c may move past changes to other rows within a
// batch: its table has a primary key and no other unique key (rows are
// independent but for the key), and an update keeps the key.
func groupable(c *Change) bool {
	t := c.Table
	if len(t.PrimaryKey) == 0 || len(t.UniqueKeys) > 0 {
		return false
	}
	if c.Kind == Update {
		for _, i := range t.PrimaryKey {
			if c.Before[i] == nil || !sameValue(c.Before[i], c.After[i]) {
				return false
			}
		}
	}
	return true
}

// kindRank orders kinds within a group: deletes, then updates, then
// inserts, so that a key deleted and inserted again keeps that order.
func kindRank(k ChangeKind) int {
	switch k {
	case Delete:
		return 0
	case Update:
		return 1
	}
	return 2
}

// group reorders a worker's batch so that changes of one kind to one table
// are next to each other, and the sink can write them with few multi-row
// statements. Only changes that concern different rows move past each
// other: it works on stretches of groupable changes, cut where one row has
// changes whose kinds would be reordered (an insert then an update of one
// key, say; compaction merges most of those first). The result has the same
// effect as changes.
func group(changes []Change) []Change {
	start := 0
	for i := 0; i <= len(changes); i++ {
		if i < len(changes) && groupable(&changes[i]) {
			continue
		}
		if i-start > 2 {
			groupStretch(changes[start:i])
		}
		start = i + 1
	}
	return changes
}

func groupStretch(s []Change) {
	type key struct {
		t *Table
		k string
	}
	last := make(map[key]int, len(s))
	tableOrder := map[*Table]int{}
	var buf []byte
	start := 0
	sorted := true
	for i := range s {
		c := &s[i]
		row := c.After
		if c.Kind == Delete {
			row = c.Before
		}
		// Values the key's collation or prefix calls equal are one row.
		buf = causality.AppendKey(buf[:0], c.Table.primaryKeyDef(), row)
		k := key{c.Table, string(buf)}
		r := kindRank(c.Kind)
		if prev, ok := last[k]; ok && prev > r {
			// This row's changes would be reordered: sort what came
			// before, and start a new stretch here.
			sortStretch(s[start:i], tableOrder, sorted)
			start, sorted = i, true
			clear(last)
			clear(tableOrder)
		}
		last[k] = r
		if _, ok := tableOrder[c.Table]; !ok {
			tableOrder[c.Table] = len(tableOrder)
		}
		if i > start && sorted {
			p := &s[i-1]
			sorted = tableOrder[p.Table] < tableOrder[c.Table] ||
				(p.Table == c.Table && kindRank(p.Kind) <= r)
		}
	}
	sortStretch(s[start:], tableOrder, sorted)
}

// sortStretch orders s by table (in order of first appearance) and kind,
// keeping the order within each, unless it is sorted already.
func sortStretch(s []Change, tableOrder map[*Table]int, sorted bool) {
	if sorted || len(s) < 3 {
		return
	}
	slices.SortStableFunc(s, func(a, b Change) int {
		if c := cmp.Compare(tableOrder[a.Table], tableOrder[b.Table]); c != 0 {
			return c
		}
		return cmp.Compare(kindRank(a.Kind), kindRank(b.Kind))
	})
}

// sameValue reports whether two contract values are equal.
func sameValue(a, b any) bool {
	if x, ok := a.([]byte); ok {
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	}
	if _, ok := b.([]byte); ok {
		return false
	}
	return a == b
}

// exactPrimaryKey reports whether equal rows of t's primary key are equal
// values: no part is a prefix, and none is text compared through a
// collation (where 'a', 'A' and 'a ' may be one key value).
func (t *Table) exactPrimaryKey() bool {
	if t.pkPrefix != nil {
		return false
	}
	for _, i := range t.PrimaryKey {
		if collatedText(&t.Columns[i]) {
			return false
		}
	}
	return true
}

// primaryKeyDef is t's primary key as causality sees it: text folded as a
// collation may compare it, prefixes cut.
func (t *Table) primaryKeyDef() causality.KeyDef {
	k := causality.KeyDef{Columns: t.PrimaryKey, Prefix: t.pkPrefix, Fold: make([]bool, len(t.PrimaryKey))}
	for j, i := range t.PrimaryKey {
		k.Fold[j] = !t.Columns[i].Binary
	}
	return k
}

// collatedText reports whether c holds text compared through a collation.
func collatedText(c *Column) bool {
	if c.Binary {
		return false
	}
	base := c.Type
	if i := strings.IndexAny(base, "( "); i >= 0 {
		base = base[:i]
	}
	switch base {
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		return true
	}
	return false
}
