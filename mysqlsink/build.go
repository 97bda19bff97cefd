package mysqlsink

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/causality"
)

// stmt is one statement of a batch's plan.
type stmt struct {
	op    string // "insert", "replace", "insert ignore", "update", "delete"
	table string // "schema.table", for errors
	sql   string
	args  []any
	rows  int
	// fkChecks: run with foreign_key_checks on (see
	// dmworker.Table.CheckForeignKeys); off otherwise.
	fkChecks bool
}

// planner turns a batch's changes into statements.
type planner struct {
	maxRows int
	// jsonCast compares JSON columns through CAST(? AS JSON): MySQL's
	// JSON type does not equal a string. MariaDB's JSON is text.
	jsonCast bool
	// inline writes values into the statements as literals instead of
	// placeholders: no arguments to interpolate or prepare (see put).
	inline bool
	tables map[*dmworker.Table]*tableInfo
	out    []stmt
}

// tableInfo is what the planner derives once per table.
type tableInfo struct {
	tbl      *dmworker.Table
	name     string // `schema`.`table`
	writable []int  // non-generated columns, in order
	insert   string // "`schema`.`table` (`a`,`b`) VALUES "
	hasKey   bool   // a primary key or a unique key
	// selfRef: the table has a foreign key to itself, checked; a
	// multi-row DELETE would take its rows in key order, not the
	// upstream's, and could trip over a reference between them.
	selfRef bool
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func quoteTable(schema, name string) string {
	if schema == "" {
		return quoteIdent(name)
	}
	return quoteIdent(schema) + "." + quoteIdent(name)
}

func (p *planner) info(tbl *dmworker.Table) *tableInfo {
	if ti, ok := p.tables[tbl]; ok {
		return ti
	}
	ti := &tableInfo{tbl: tbl, name: quoteTable(tbl.Schema, tbl.Name)}
	var cols []string
	for i, c := range tbl.Columns {
		if c.Generated {
			continue
		}
		ti.writable = append(ti.writable, i)
		cols = append(cols, quoteIdent(c.Name))
	}
	ti.insert = ti.name + " (" + strings.Join(cols, ",") + ") VALUES "
	if tbl.CheckForeignKeys {
		for _, fk := range tbl.ForeignKeys {
			if fk.RefSchema == tbl.Schema && fk.RefTable == tbl.Name {
				ti.selfRef = true
			}
		}
	}
	ti.hasKey = len(tbl.PrimaryKey) > 0
	for _, uk := range tbl.UniqueKeys {
		if len(uk) > 0 {
			ti.hasKey = true
		}
	}
	if p.tables == nil {
		p.tables = make(map[*dmworker.Table]*tableInfo)
	}
	p.tables[tbl] = ti
	return ti
}

// sameTable reports whether two changes' tables are the same table with the
// same layout, so that their rows can share a statement.
func sameTable(a, b *dmworker.Table) bool {
	if a == b {
		return true
	}
	if a.Schema != b.Schema || a.Name != b.Name || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i].Name != b.Columns[i].Name || a.Columns[i].Generated != b.Columns[i].Generated ||
			baseType(a.Columns[i].Type) != baseType(b.Columns[i].Type) {
			return false
		}
	}
	return equalInts(a.PrimaryKey, b.PrimaryKey)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// baseType is the lower-case type name without length or attributes.
func baseType(colType string) string {
	t := strings.ToLower(strings.TrimSpace(colType))
	if i := strings.IndexAny(t, "( "); i >= 0 {
		t = t[:i]
	}
	return t
}

// param returns the placeholder expression for a value of col compared in
// a WHERE clause. A DECIMAL compared with a string is compared as a double
// where the server does not turn the string into a key value first (MySQL;
// MariaDB in an IN list it evaluates row by row), which takes close values
// for one another: the string is cast to the column's own DECIMAL type,
// which keeps the key's index usable. MySQL's JSON type does not equal a
// string: the text is cast to JSON there.
func (p *planner) param(col dmworker.Column) string {
	switch baseType(col.Type) {
	case "decimal", "numeric", "dec", "fixed":
		t := strings.ToLower(col.Type)
		prec := "(10,0)"
		if i := strings.IndexByte(t, '('); i >= 0 {
			if j := strings.IndexByte(t[i:], ')'); j >= 0 {
				prec = t[i : i+j+1]
			}
		}
		return "CAST(? AS DECIMAL" + prec + ")"
	case "json":
		if p.jsonCast {
			return "CAST(? AS JSON)"
		}
	}
	return "?"
}

// arg adapts a contract value for the driver: a nil []byte is the empty
// value, not NULL (the driver sends a nil slice as NULL).
func arg(v any) any {
	if b, ok := v.([]byte); ok && b == nil {
		return []byte{}
	}
	return v
}

// approxSize estimates the bytes a value adds to a statement.
func approxSize(v any) int {
	switch x := v.(type) {
	case string:
		return 2*len(x) + 3
	case []byte:
		return 2*len(x) + 10
	}
	return 24
}

// identity returns the columns that find row: the primary key, else the first
// unique key with no NULL in row, else nil (match every column).
func identity(tbl *dmworker.Table, row []any) []int {
	if len(tbl.PrimaryKey) > 0 {
		return tbl.PrimaryKey
	}
	for _, uk := range tbl.UniqueKeys {
		if len(uk) == 0 {
			continue
		}
		null := false
		for _, i := range uk {
			if row[i] == nil {
				null = true
				break
			}
		}
		if !null {
			return uk
		}
	}
	return nil
}

// validateChanges checks every change against the contract.
func validateChanges(changes []dmworker.Change) error {
	for i, c := range changes {
		if err := validateChange(c); err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
	}
	return nil
}

// validateChange checks a change against the contract before anything is
// sent.
func validateChange(c dmworker.Change) error {
	t := c.Table
	if t == nil {
		return fmt.Errorf("change without a table")
	}
	if t.Name == "" {
		return fmt.Errorf("table without a name")
	}
	keys := append([][]int{t.PrimaryKey}, t.UniqueKeys...)
	for _, k := range keys {
		for _, i := range k {
			if i < 0 || i >= len(t.Columns) {
				return fmt.Errorf("table %s: key column index %d out of range", t.QualifiedName(), i)
			}
		}
	}
	needBefore := c.Kind == dmworker.Update || c.Kind == dmworker.Delete
	needAfter := c.Kind == dmworker.Insert || c.Kind == dmworker.Update
	if !needBefore && !needAfter {
		return fmt.Errorf("%s: unknown kind", c)
	}
	if needBefore != (c.Before != nil) || needAfter != (c.After != nil) {
		return fmt.Errorf("%s: before image present %v, after image present %v", c, c.Before != nil, c.After != nil)
	}
	for _, row := range [][]any{c.Before, c.After} {
		if row != nil && len(row) != len(t.Columns) {
			return fmt.Errorf("%s: %d values for %d columns", c, len(row), len(t.Columns))
		}
	}
	return nil
}

// plan returns the statements that apply changes, in order. Consecutive
// changes of one kind to one table share multi-row statements where that
// gives the same result as one statement each. The changes have passed
// validateChanges.
func (p *planner) plan(changes []dmworker.Change, safe bool) []stmt {
	p.out = p.out[:0]
	for i := 0; i < len(changes); {
		c := changes[i]
		ti := p.info(c.Table)
		start := len(p.out)
		// run is how many changes from i can share statements.
		run := 1
		kind := c.Kind
		if safe && c.Table.CheckForeignKeys {
			run, kind = p.planKeeping(ti, changes, i), 0 // planned
		}
		switch kind {
		case dmworker.Insert:
			if safe && identity(c.Table, c.After) == nil {
				// Insert-or-replace of a row without a usable key:
				// replace one equal row. Rows one by one, as equal rows
				// in one statement would replace each other.
				p.deleteOne(ti, c.After, false)
				p.insertRows(ti, "insert", changes[i:i+1])
				break
			}
			for i+run < len(changes) && sameRun(c, changes[i+run]) && !(safe && identity(c.Table, changes[i+run].After) == nil) {
				run++
			}
			op := "insert"
			if safe {
				op = "replace"
			}
			p.insertRows(ti, op, changes[i:i+run])
		case dmworker.Delete:
			key := identity(c.Table, c.Before)
			if key == nil {
				p.deleteOne(ti, c.Before, false)
				break
			}
			for !ti.selfRef && i+run < len(changes) && sameRun(c, changes[i+run]) && equalInts(identity(c.Table, changes[i+run].Before), key) {
				run++
			}
			p.deleteKeys(ti, key, changes[i:i+run])
		case dmworker.Update:
			if !safe {
				key := identity(c.Table, c.Before)
				if key == nil || !sameKey(c, key) {
					p.update(ti, c, false)
					break
				}
				// Updates that keep their key: one UPDATE ... CASE per
				// chunk, which like single-row updates leaves missing
				// rows missing.
				for i+run < len(changes) && sameRun(c, changes[i+run]) && equalInts(identity(c.Table, changes[i+run].Before), key) && sameKey(changes[i+run], key) {
					run++
				}
				p.updateRows(ti, key, changes[i:i+run])
				break
			}
			key := identity(c.Table, c.Before)
			if key == nil || !sameKey(c, key) {
				// Delete the old row, insert-or-replace the new one.
				if key == nil {
					p.deleteOne(ti, c.Before, false)
				} else {
					p.deleteKeys(ti, key, changes[i:i+1])
				}
				if identity(c.Table, c.After) == nil {
					p.deleteOne(ti, c.After, false)
					p.insertRows(ti, "insert", changes[i:i+1])
				} else {
					p.insertRows(ti, "replace", changes[i:i+1])
				}
				break
			}
			// Updates that keep their key: delete all old rows, then
			// replace all new ones. A key updated twice ends with its
			// last image either way.
			for i+run < len(changes) && sameRun(c, changes[i+run]) && equalInts(identity(c.Table, changes[i+run].Before), key) && sameKey(changes[i+run], key) {
				run++
			}
			for _, chunk := range p.chunks(ti, changes[i:i+run], len(ti.writable)) {
				p.deleteKeys(ti, key, chunk)
				p.insertRows(ti, "replace", chunk)
			}
		}
		if c.Table.CheckForeignKeys && !c.NoForeignKeyChecks {
			for k := start; k < len(p.out); k++ {
				p.out[k].fkChecks = true
			}
		}
		i += run
	}
	return p.out
}

// sameRun reports whether b may share a statement with a: a change of the
// same kind to the same table, to run with the same foreign key checks.
func sameRun(a, b dmworker.Change) bool {
	return b.Kind == a.Kind && sameTable(b.Table, a.Table) && (!a.Table.CheckForeignKeys || a.NoForeignKeyChecks == b.NoForeignKeyChecks)
}

// planKeeping plans, in safe mode, the changes from i to a table with
// CheckForeignKeys that share statements with the one at i, and returns how
// many. A replay must not write a row it finds again (REPLACE, or delete and
// insert): with the downstream's foreign key checks on, that would run the
// row's ON DELETE action and delete or orphan its children. It must not
// run an action twice either. So each change is applied only where the
// row is as the change found it upstream: an insert where its key is free
// (INSERT IGNORE), an update or a delete to the row equal to the old image
// in every column (UPDATE IGNORE / DELETE IGNORE ... WHERE every column
// <=> its old value, LIMIT 1). Replayed in order from a state the changes of
// these tables reached in order (the syncer applies them so), a change not
// yet applied finds its row so and applies; one already applied finds its
// row gone or changed since, and is skipped, as is (IGNORE) one whose
// duplicate key or foreign key check says later changes, replayed next,
// undid what it needs. An insert whose row later changes deleted or moved
// away is inserted again: a replayed delete finds it, and so does a
// replayed move, which deletes it when the row it moved is in place
// (deleteMovedFrom).
func (p *planner) planKeeping(ti *tableInfo, changes []dmworker.Change, i int) int {
	c := changes[i]
	run := 1
	switch c.Kind {
	case dmworker.Insert:
		for i+run < len(changes) && sameRun(c, changes[i+run]) {
			run++
		}
		p.insertRows(ti, "insert ignore", changes[i:i+run])
	case dmworker.Delete:
		p.deleteOne(ti, c.Before, true)
	case dmworker.Update:
		p.update(ti, c, true)
		if key := identity(c.Table, c.After); key != nil && !sameKey(c, key) {
			p.deleteMovedFrom(ti, c, key)
		}
	}
	return run
}

// sameKey reports whether an update keeps the values of key, with no NULL
// in the new row's key.
func sameKey(c dmworker.Change, key []int) bool {
	for _, i := range key {
		if c.After[i] == nil || compareValue(c.Before[i], c.After[i]) != 0 {
			return false
		}
	}
	return true
}

// compareValue returns 0 when a and b are the same contract value.
func compareValue(a, b any) int {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		if ok && string(x) == string(y) {
			return 0
		}
		return 1
	case nil:
		if b == nil {
			return 0
		}
		return 1
	}
	if a == b {
		return 0
	}
	return 1
}

// chunks cuts changes into runs that fit one statement each, by row count,
// placeholders (perRow each) and approximate size of the after images.
func (p *planner) chunks(ti *tableInfo, changes []dmworker.Change, perRow int) [][]dmworker.Change {
	maxRows := p.maxRows
	if perRow > 0 && maxPlaceholders/perRow < maxRows {
		maxRows = max(1, maxPlaceholders/perRow)
	}
	var out [][]dmworker.Change
	start, size := 0, 0
	for i, c := range changes {
		row := c.After
		if row == nil {
			row = c.Before
		}
		rs := 0
		for _, j := range ti.writable {
			rs += approxSize(row[j])
		}
		if i > start && (i-start >= maxRows || size+rs > maxStatementBytes) {
			out = append(out, changes[start:i])
			start, size = i, 0
		}
		size += rs
	}
	if start < len(changes) {
		out = append(out, changes[start:])
	}
	return out
}

// insertRows emits INSERT (op "insert"), REPLACE (op "replace") or INSERT
// IGNORE (op "insert ignore") statements for the after images of changes.
func (p *planner) insertRows(ti *tableInfo, op string, changes []dmworker.Change) {
	verb := "INSERT INTO "
	switch op {
	case "replace":
		verb = "REPLACE INTO "
	case "insert ignore":
		verb = "INSERT IGNORE INTO "
	}
	for _, chunk := range p.chunks(ti, changes, len(ti.writable)) {
		var b strings.Builder
		// "(?,?)," a row with placeholders.
		grow := len(verb) + len(ti.insert) + len(chunk)*(2*len(ti.writable)+2)
		if p.inline {
			// The literals, their quotes and commas, and some escapes.
			for _, c := range chunk {
				for _, j := range ti.writable {
					switch x := c.After[j].(type) {
					case string:
						grow += len(x) + len(x)/16 + 3
					case []byte:
						grow += len(x) + len(x)/16 + 10
					default:
						grow += 21
					}
				}
			}
		}
		b.Grow(grow)
		b.WriteString(verb)
		b.WriteString(ti.insert)
		args := make([]any, 0, len(chunk)*len(ti.writable))
		for k, c := range chunk {
			if k > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for n, j := range ti.writable {
				if n > 0 {
					b.WriteByte(',')
				}
				args = p.put(&b, "?", c.After[j], args)
			}
			b.WriteByte(')')
		}
		p.out = append(p.out, stmt{op: op, table: ti.tbl.QualifiedName(), sql: b.String(), args: args, rows: len(chunk)})
	}
}

// deleteKeys emits DELETE ... WHERE key IN (...) for the before images of
// changes, all identified by key.
func (p *planner) deleteKeys(ti *tableInfo, key []int, changes []dmworker.Change) {
	for _, chunk := range p.chunks(ti, changes, len(key)) {
		var b strings.Builder
		b.WriteString("DELETE FROM ")
		b.WriteString(ti.name)
		b.WriteString(" WHERE ")
		args := make([]any, 0, len(chunk)*len(key))
		if len(chunk) == 1 {
			args = p.whereKey(&b, ti, key, chunk[0].Before, args)
		} else {
			if len(key) > 1 {
				b.WriteByte('(')
			}
			for k, i := range key {
				if k > 0 {
					b.WriteByte(',')
				}
				b.WriteString(quoteIdent(ti.tbl.Columns[i].Name))
			}
			if len(key) > 1 {
				b.WriteByte(')')
			}
			b.WriteString(" IN (")
			for k, c := range chunk {
				if k > 0 {
					b.WriteByte(',')
				}
				args = p.keyTuple(&b, ti, key, c.Before, args)
			}
			b.WriteByte(')')
		}
		p.out = append(p.out, stmt{op: "delete", table: ti.tbl.QualifiedName(), sql: b.String(), args: args, rows: len(chunk)})
	}
}

// whereKey writes `k1`=? AND `k2`=? for row's key values.
func (p *planner) whereKey(b *strings.Builder, ti *tableInfo, key []int, row []any, args []any) []any {
	for k, i := range key {
		if k > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(quoteIdent(ti.tbl.Columns[i].Name))
		b.WriteString("=")
		args = p.put(b, p.param(ti.tbl.Columns[i]), row[i], args)
	}
	return args
}

// whereAll writes a NULL-safe match of every non-generated column of row,
// each column name after prefix (a table alias and a dot, or "").
func (p *planner) whereAll(b *strings.Builder, ti *tableInfo, prefix string, row []any, args []any) []any {
	for k, i := range ti.writable {
		if k > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(prefix)
		b.WriteString(quoteIdent(ti.tbl.Columns[i].Name))
		if row[i] == nil {
			b.WriteString(" IS NULL")
			continue
		}
		b.WriteString("<=>")
		args = p.put(b, p.param(ti.tbl.Columns[i]), row[i], args)
	}
	return args
}

// deleteOne emits a DELETE of one row equal to row in every column; DELETE
// IGNORE with ignore.
func (p *planner) deleteOne(ti *tableInfo, row []any, ignore bool) {
	var b strings.Builder
	b.WriteString("DELETE ")
	if ignore {
		b.WriteString("IGNORE ")
	}
	b.WriteString("FROM ")
	b.WriteString(ti.name)
	b.WriteString(" WHERE ")
	args := p.whereAll(&b, ti, "", row, nil)
	b.WriteString(" LIMIT 1")
	p.out = append(p.out, stmt{op: "delete", table: ti.tbl.QualifiedName(), sql: b.String(), args: args, rows: 1})
}

// update emits UPDATE ... SET every writable column WHERE the old row's
// identity; with matching, UPDATE IGNORE ... WHERE every column equals the
// old row's, NULL-safe, LIMIT 1.
func (p *planner) update(ti *tableInfo, c dmworker.Change, matching bool) {
	var b strings.Builder
	b.WriteString("UPDATE ")
	if matching {
		b.WriteString("IGNORE ")
	}
	b.WriteString(ti.name)
	b.WriteString(" SET ")
	args := p.setAll(&b, ti, c.After, make([]any, 0, 2*len(ti.writable)))
	b.WriteString(" WHERE ")
	if key := identity(c.Table, c.Before); key != nil && !matching {
		args = p.whereKey(&b, ti, key, c.Before, args)
	} else {
		args = p.whereAll(&b, ti, "", c.Before, args)
		b.WriteString(" LIMIT 1")
	}
	p.out = append(p.out, stmt{op: "update", table: ti.tbl.QualifiedName(), sql: b.String(), args: args, rows: 1})
}

// deleteMovedFrom emits, for an update that moves a row from one key
// (c.Before's) to another (c.After's values of key), a DELETE IGNORE of the
// row equal to c.Before in every column when a row holds the new key: the
// update was applied before (its UPDATE found the new key taken), and the
// old row is one a replayed insert brought back.
func (p *planner) deleteMovedFrom(ti *tableInfo, c dmworker.Change, key []int) {
	var b strings.Builder
	// The deleted table unaliased: MariaDB resolves an alias in the
	// delete list in the default database.
	b.WriteString("DELETE IGNORE ")
	b.WriteString(ti.name)
	b.WriteString(" FROM ")
	b.WriteString(ti.name)
	b.WriteString(" JOIN ")
	b.WriteString(ti.name)
	b.WriteString(" AS n ON ")
	var args []any
	for k, i := range key {
		if k > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("n.")
		b.WriteString(quoteIdent(ti.tbl.Columns[i].Name))
		b.WriteString("=")
		args = p.put(&b, p.param(ti.tbl.Columns[i]), c.After[i], args)
	}
	b.WriteString(" WHERE ")
	args = p.whereAll(&b, ti, ti.name+".", c.Before, args)
	p.out = append(p.out, stmt{op: "delete", table: ti.tbl.QualifiedName(), sql: b.String(), args: args, rows: 1})
}

// setAll writes `a`=?,`b`=? for row's writable columns.
func (p *planner) setAll(b *strings.Builder, ti *tableInfo, row []any, args []any) []any {
	for k, i := range ti.writable {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quoteIdent(ti.tbl.Columns[i].Name))
		b.WriteString("=")
		args = p.put(b, "?", row[i], args)
	}
	return args
}

// updateRows emits, for updates that keep their key, UPDATE ... SET each
// other writable column = CASE WHEN key = ? THEN ? ... END WHERE key IN
// (...): one statement for many rows, with the effect of one UPDATE each
// (rows not found stay missing). A key updated more than once gets its last
// image.
func (p *planner) updateRows(ti *tableInfo, key []int, changes []dmworker.Change) {
	if len(changes) == 1 || changesUniqueValue(ti.tbl, key, changes) {
		// One row, or a unique value moves: a multi-row UPDATE checks
		// uniqueness row by row in its own order, and could trip over a
		// value another row of it gives up.
		for _, c := range changes {
			p.update(ti, c, false)
		}
		return
	}
	// The last image per key, in first-seen order.
	at := make(map[string]int, len(changes))
	rows := make([][]any, 0, len(changes))
	var buf []byte
	for _, c := range changes {
		buf = causality.AppendExact(buf[:0], key, c.After)
		if j, ok := at[string(buf)]; ok {
			rows[j] = c.After
			continue
		}
		at[string(buf)] = len(rows)
		rows = append(rows, c.After)
	}
	isKey := make(map[int]bool, len(key))
	for _, i := range key {
		isKey[i] = true
	}
	var set []int
	for _, i := range ti.writable {
		if !isKey[i] {
			set = append(set, i)
		}
	}
	if len(set) == 0 {
		return // every writable column is in the key, which stays
	}
	// cols is "`k`" or "(`k1`,`k2`)".
	var cols strings.Builder
	if len(key) > 1 {
		cols.WriteByte('(')
	}
	for k, i := range key {
		if k > 0 {
			cols.WriteByte(',')
		}
		cols.WriteString(quoteIdent(ti.tbl.Columns[i].Name))
	}
	if len(key) > 1 {
		cols.WriteByte(')')
	}
	perRow := len(set)*(len(key)+1) + len(key)
	chunkChanges := make([]dmworker.Change, len(rows))
	for j, r := range rows {
		chunkChanges[j] = dmworker.Change{Kind: dmworker.Update, Table: ti.tbl, Before: r, After: r}
	}
	for _, chunk := range p.chunks(ti, chunkChanges, perRow) {
		var b strings.Builder
		args := make([]any, 0, len(chunk)*perRow)
		b.WriteString("UPDATE ")
		b.WriteString(ti.name)
		b.WriteString(" SET ")
		for k, i := range set {
			if k > 0 {
				b.WriteByte(',')
			}
			col := ti.tbl.Columns[i]
			b.WriteString(quoteIdent(col.Name))
			b.WriteString("=CASE")
			for _, c := range chunk {
				b.WriteString(" WHEN ")
				b.WriteString(cols.String())
				b.WriteByte('=')
				args = p.keyTuple(&b, ti, key, c.After, args)
				b.WriteString(" THEN ")
				args = p.put(&b, p.param(col), c.After[i], args)
			}
			b.WriteString(" END")
		}
		b.WriteString(" WHERE ")
		b.WriteString(cols.String())
		b.WriteString(" IN (")
		for k, c := range chunk {
			if k > 0 {
				b.WriteByte(',')
			}
			args = p.keyTuple(&b, ti, key, c.After, args)
		}
		b.WriteByte(')')
		p.out = append(p.out, stmt{op: "update", table: ti.tbl.QualifiedName(), sql: b.String(), args: args, rows: len(chunk)})
	}
}

// changesUniqueValue reports whether an update in changes changes a column
// of a unique key other than key.
func changesUniqueValue(tbl *dmworker.Table, key []int, changes []dmworker.Change) bool {
	keys := append([][]int{tbl.PrimaryKey}, tbl.UniqueKeys...)
	for _, k := range keys {
		if equalInts(k, key) {
			continue
		}
		for _, i := range k {
			for _, c := range changes {
				if compareValue(c.Before[i], c.After[i]) != 0 {
					return true
				}
			}
		}
	}
	return false
}

// keyTuple writes row's key values, "v" or "(v1,v2)", each where
// p.param puts it, and returns args with the values not inlined.
func (p *planner) keyTuple(b *strings.Builder, ti *tableInfo, key []int, row []any, args []any) []any {
	if len(key) > 1 {
		b.WriteByte('(')
	}
	for k, i := range key {
		if k > 0 {
			b.WriteByte(',')
		}
		args = p.put(b, p.param(ti.tbl.Columns[i]), row[i], args)
	}
	if len(key) > 1 {
		b.WriteByte(')')
	}
	return args
}

// put writes v where the placeholder expression ph ("?" or "CAST(? AS
// ...)") goes: with p.inline as a literal in ph, else ph itself with v
// appended to args. A value of a type outside the sink contract is never
// inlined.
func (p *planner) put(b *strings.Builder, ph string, v any, args []any) []any {
	if p.inline {
		i := strings.IndexByte(ph, '?')
		var tmp [32]byte
		lit := true
		b.WriteString(ph[:i])
		switch x := v.(type) {
		case nil:
			b.WriteString("NULL")
		case int64:
			b.Write(strconv.AppendInt(tmp[:0], x, 10))
		case uint64:
			b.Write(strconv.AppendUint(tmp[:0], x, 10))
		case float64:
			b.Write(strconv.AppendFloat(tmp[:0], x, 'g', -1, 64))
		case float32:
			// As the driver sends it: the float64 of the same value.
			b.Write(strconv.AppendFloat(tmp[:0], float64(x), 'g', -1, 64))
		case string:
			b.WriteByte('\'')
			writeEscaped(b, x)
			b.WriteByte('\'')
		case []byte:
			b.WriteString("_binary'")
			writeEscaped(b, unsafe.String(unsafe.SliceData(x), len(x)))
			b.WriteByte('\'')
		default:
			lit = false
		}
		if lit {
			b.WriteString(ph[i+1:])
			return args
		}
		b.WriteByte('?')
		b.WriteString(ph[i+1:])
		return append(args, arg(v))
	}
	b.WriteString(ph)
	return append(args, arg(v))
}

// writeEscaped writes s for the inside of a quoted string literal, with
// backslash escapes (the session's sql_mode has no NO_BACKSLASH_ESCAPES):
// NUL, newline, carriage return, Ctrl-Z, both quotes and the backslash.
// Safe for character sets in which no multi-byte character holds the byte
// of a backslash or a quote (see Sink.canInline).
func writeEscaped(b *strings.Builder, s string) {
	start := 0
	for i := 0; i < len(s); i++ {
		esc := escapes[s[i]]
		if esc == 0 {
			continue
		}
		b.WriteString(s[start:i])
		b.WriteByte('\\')
		b.WriteByte(esc)
		start = i + 1
	}
	b.WriteString(s[start:])
}

// escapes maps the bytes writeEscaped escapes to the letter after the
// backslash; 0 for the others.
var escapes = [256]byte{0: '0', '\n': 'n', '\r': 'r', 0x1a: 'Z', '\'': '\'', '"': '"', '\\': '\\'}
