package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// Harness tells RunSinkConformance how to make a sink under test, how to
// create a table in it and how to read a table back.
type Harness struct {
	// New returns a sink to test. It is called once per subtest. Sinks
	// may share one downstream: every subtest writes to tables of its own
	// schema, named "sc_<run>_<subtest>" (lower case, at most 40 bytes, run
	// being random per RunSinkConformance call), and checkpoints of its
	// own task. Required.
	New func(t *testing.T) dmworker.Sink

	// Rows returns the rows of schema.table, in any order, each value of
	// the Go type the dmworker.Change contract gives its column's type
	// (nil for NULL): the suite compares them exactly, except values of
	// columns of type "json", compared as parsed JSON documents.
	// Required with the Tables capability (the default).
	Rows func(t *testing.T, s dmworker.Sink, schema, table string) [][]any

	// Prepare creates schema and table downstream, empty, before the suite
	// first writes to tbl, for sinks whose tables must exist beforehand
	// (for a SQL database: CREATE DATABASE IF NOT EXISTS, DROP TABLE IF
	// EXISTS, then a CREATE TABLE built from tbl, its column types taken as
	// they are, NULL or NOT NULL as Column.Nullable says, the primary key
	// and the unique keys). Nil when the sink creates tables itself, as
	// MemSink does. The tables the DDL subtest makes are created by
	// ExecDDL only.
	Prepare func(t *testing.T, s dmworker.Sink, tbl *dmworker.Table)

	// Capabilities says what the sink does, so that the suite runs the
	// subtests that apply to it. Zero means AllCapabilities: a sink that
	// keeps tables as a database does (MemSink, mysqlsink). An append-only
	// sink (an event log, a queue) declares Log, with no Tables, and gives
	// Log instead of Rows.
	Capabilities Capabilities

	// Log returns, for a sink with the Log capability, the changes it has
	// appended, in order, as it would hand them to a reader: their Kind,
	// Table (schema, name and columns), Before, After, TxnPos and TxnIndex
	// are compared with what was applied. Required with Log.
	Log func(t *testing.T, s dmworker.Sink) []dmworker.Change
}

// Capabilities is a set of behaviours a sink under test has; each
// subtest of RunSinkConformance runs only when the sink has every
// capability it needs (the subtest list says which).
type Capabilities uint

const (
	// Tables: the sink keeps rows by key, read back with Harness.Rows; an
	// update or delete finds its row, and safe mode makes a replay
	// idempotent.
	Tables Capabilities = 1 << iota
	// KeyChecks: in normal mode a change that collides with another row
	// on the primary key or a unique key fails its batch, which then
	// applies nothing.
	KeyChecks
	// DDL: ExecDDL runs the statement, and later batches see its effect.
	DDL
	// Log: the sink appends every change of every batch, in order, and
	// Harness.Log reads them back.
	Log

	// AllCapabilities is what a sink that keeps tables as a database does.
	AllCapabilities = Tables | KeyChecks | DDL
)

// RunSinkConformance checks that a Sink keeps the dmworker.Sink contract,
// and the dmworker.CheckpointSink contract when it implements it, with one
// subtest per behaviour:
//
//   - InsertUpdateDelete: the three kinds round trip;
//   - MultiRowBatches: hundreds of changes per batch over two tables,
//     interleaved, a composite primary key, the same key inserted, deleted
//     and inserted again within a batch;
//   - SafeModeReplay: replaying batches in safe mode after they were all, or
//     partly, applied converges to the same rows, replaying twice too;
//   - SafeModeReplayRandom: the same with random workloads (inserts,
//     updates of values, unique keys and primary keys, deletes, keys reused)
//     cut and replayed at random points;
//   - SafeModeCheckedForeignKeys: random workloads cut at random points,
//     the rest applied in safe mode, on tables with CheckForeignKeys (whose
//     safe mode must not delete rows that exist; the syncer never replays
//     their changes over themselves but where the dmworker.Table doc says);
//   - UpdateRuns: many updates in a row that keep their key, in normal
//     mode, on a composite key: a key updated twice ends with its last
//     image, an update of a missing row adds nothing, a unique value given
//     up by one row and taken by the next works;
//   - UpdatePrimaryKey: an update that moves a row to another key; a
//     collision is refused in normal mode and replaces in safe mode;
//   - UniqueKeyWithoutPrimaryKey: rows matched by the first unique key
//     without NULLs in the row, a collision refused in normal mode;
//   - NoKey: equal rows are a multiset, a delete removes one of them;
//   - DecimalKeys: DECIMAL keys that differ beyond a double's precision are
//     told apart, in a primary key and in a table without keys;
//   - Nulls: NULL apart from zero, empty string and empty bytes;
//   - ValueTypes, ValueTypesWithoutKey: every value type of the contract at
//     its edges, read back equal; matched by value in a table without keys;
//   - AtomicBatch: a batch that fails half way applies nothing and is not
//     retryable;
//   - DDLOrder: DDLs run in order, with DDL.Schema the default schema, and
//     batches in between see their effect;
//   - DDLSafeMode: DDLs run a second time with DDL.SafeMode succeed;
//   - CancelledContext: a call with a cancelled context fails and does
//     nothing;
//   - for a CheckpointSink: CheckpointRoundTrip (a nil Schema keeps the
//     stored one; Snapshot and Server are stored as given, nil and ""
//     clear them),
//     CheckpointWithBatch (stored with its batch, or not at all with a
//     failing one, also through ExecDDL) and StaleEpoch (a batch, a fenced
//     batch without checkpoint, a DDL or a checkpoint from an older epoch is
//     refused with
//     dmworker.ErrStaleEpoch and changes nothing; fencing is per task and
//     source).
//   - for a sink with the Log capability (an append-only sink): LogOrder
//     (every change of every batch appended in order, with its table,
//     images and transaction position, safe-mode batches too), LogValueTypes
//     (every value type of the contract at its edges, logged equal),
//     LogCancelledContext (a call with a cancelled context fails and
//     appends nothing) and, for a CheckpointSink, LogStaleEpoch (a batch
//     from an older epoch is refused and appends nothing).
//
// Each subtest needs capabilities (see Harness.Capabilities) and runs only
// for a sink that has them: CheckpointRoundTrip none; DDLSafeMode DDL;
// DDLOrder Tables and DDL; UpdatePrimaryKey, UniqueKeyWithoutPrimaryKey,
// AtomicBatch and CheckpointWithBatch Tables and KeyChecks; the Log ones
// Log; every other one Tables. Subtests run one after the other.
func RunSinkConformance(t *testing.T, h Harness) {
	t.Helper()
	caps := h.Capabilities
	if caps == 0 {
		caps = AllCapabilities
	}
	switch {
	case h.New == nil:
		t.Fatal("sinktest: Harness.New is required")
	case caps&Tables != 0 && h.Rows == nil:
		t.Fatal("sinktest: Harness.Rows is required with the Tables capability")
	case caps&Log != 0 && h.Log == nil:
		t.Fatal("sinktest: Harness.Log is required with the Log capability")
	}
	su := &suite{h: h, run: fmt.Sprintf("%06x", rand.Uint32()&0xffffff)}
	const (
		tk = Tables | KeyChecks
		td = Tables | DDL
	)
	tests := []struct {
		name string
		need Capabilities
		fn   func(*env)
	}{
		{"InsertUpdateDelete", Tables, testInsertUpdateDelete},
		{"MultiRowBatches", Tables, testMultiRowBatches},
		{"UpdateRuns", Tables, testUpdateRuns},
		{"SafeModeReplay", Tables, testSafeModeReplay},
		{"SafeModeReplayRandom", Tables, testSafeModeReplayRandom},
		{"SafeModeCheckedForeignKeys", Tables, testSafeModeChecked},
		{"UpdatePrimaryKey", tk, testUpdatePrimaryKey},
		{"UniqueKeyWithoutPrimaryKey", tk, testUniqueKeyWithoutPrimaryKey},
		{"NoKey", Tables, testNoKey},
		{"DecimalKeys", Tables, testDecimalKeys},
		{"Nulls", Tables, testNulls},
		{"ValueTypes", Tables, testValueTypes},
		{"ValueTypesWithoutKey", Tables, testValueTypesWithoutKey},
		{"AtomicBatch", tk, testAtomicBatch},
		{"DDLOrder", td, testDDLOrder},
		{"DDLSafeMode", DDL, testDDLSafeMode},
		{"CancelledContext", Tables, testCancelledContext},
		{"CheckpointRoundTrip", 0, testCheckpointRoundTrip},
		{"CheckpointWithBatch", tk, testCheckpointWithBatch},
		{"StaleEpoch", Tables, testStaleEpoch},
		{"LogOrder", Log, testLogOrder},
		{"LogValueTypes", Log, testLogValueTypes},
		{"LogCancelledContext", Log, testLogCancelledContext},
		{"LogStaleEpoch", Log, testLogStaleEpoch},
	}
	for _, tc := range tests {
		if tc.need&caps != tc.need {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(su.env(t, tc.name))
		})
	}
}

type suite struct {
	h   Harness
	run string
}

// env is one subtest's sink and schema.
type env struct {
	t      *testing.T
	h      Harness
	s      dmworker.Sink
	schema string
	task   string
}

func (su *suite) env(t *testing.T, name string) *env {
	short := strings.ToLower(name)
	if len(short) > 28 {
		short = short[:28]
	}
	return &env{
		t:      t,
		h:      su.h,
		s:      su.h.New(t),
		schema: "sc_" + su.run + "_" + short,
		task:   "conformance-" + su.run + "-" + name,
	}
}

// checkpointSink returns the sink as a CheckpointSink, skipping the test if
// it is not one.
func (e *env) checkpointSink() dmworker.CheckpointSink {
	e.t.Helper()
	cs, ok := e.s.(dmworker.CheckpointSink)
	if !ok {
		e.t.Skip("not a dmworker.CheckpointSink")
	}
	return cs
}

// col describes a column; "unsigned" in the type sets Unsigned, a binary
// string type sets Binary.
func col(name, typ string, nullable bool) dmworker.Column {
	c := dmworker.Column{Name: name, Type: typ, Nullable: nullable}
	c.Unsigned = strings.Contains(typ, "unsigned")
	switch baseType(typ) {
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		c.Binary = true
	}
	return c
}

// table describes a table of the subtest's schema and has the harness
// prepare it.
func (e *env) table(name string, pk []int, uks [][]int, cols ...dmworker.Column) *dmworker.Table {
	e.t.Helper()
	tbl := &dmworker.Table{
		Schema: e.schema, Name: name,
		SourceSchema: "up_" + e.schema, SourceName: name,
		Columns: cols, PrimaryKey: pk, UniqueKeys: uks,
	}
	if e.h.Prepare != nil {
		e.h.Prepare(e.t, e.s, tbl)
	}
	return tbl
}

func ins(tbl *dmworker.Table, row ...any) dmworker.Change {
	return dmworker.Change{Kind: dmworker.Insert, Table: tbl, After: row}
}

func upd(tbl *dmworker.Table, before, after []any) dmworker.Change {
	return dmworker.Change{Kind: dmworker.Update, Table: tbl, Before: before, After: after}
}

func del(tbl *dmworker.Table, row ...any) dmworker.Change {
	return dmworker.Change{Kind: dmworker.Delete, Table: tbl, Before: row}
}

func r(vals ...any) []any { return vals }

func batch(changes ...dmworker.Change) *dmworker.Batch {
	return &dmworker.Batch{Changes: changes}
}

func safeBatch(changes ...dmworker.Change) *dmworker.Batch {
	return &dmworker.Batch{Changes: changes, SafeMode: true}
}

func (e *env) apply(b *dmworker.Batch) {
	e.t.Helper()
	if err := e.s.Apply(e.t.Context(), b); err != nil {
		e.t.Fatalf("apply (%d changes, safe mode %v): %v", len(b.Changes), b.SafeMode, err)
	}
}

// applyFails applies a batch that must fail without being retryable.
func (e *env) applyFails(b *dmworker.Batch, what string) error {
	e.t.Helper()
	err := e.s.Apply(e.t.Context(), b)
	if err == nil {
		e.t.Fatalf("%s: apply succeeded, want an error", what)
	}
	if dmworker.IsRetryable(err) {
		e.t.Errorf("%s: error is retryable, want not: %v", what, err)
	}
	return err
}

// want checks that tbl holds exactly rows.
func (e *env) want(tbl *dmworker.Table, rows ...[]any) {
	e.t.Helper()
	got := e.h.Rows(e.t, e.s, tbl.Schema, tbl.Name)
	if diff := diffRows(tbl, rows, got); diff != "" {
		e.t.Fatalf("rows of %s:\n%s", tbl.QualifiedName(), diff)
	}
}

// normalize makes rows comparable: JSON documents are re-encoded in one
// canonical form. It returns new rows.
func normalize(tbl *dmworker.Table, rows [][]any) [][]any {
	out := make([][]any, len(rows))
	for i, row := range rows {
		nrow := make([]any, len(row))
		copy(nrow, row)
		for j := range nrow {
			if j < len(tbl.Columns) && baseType(tbl.Columns[j].Type) == "json" {
				nrow[j] = canonicalJSON(nrow[j])
			}
		}
		out[i] = nrow
	}
	SortRows(out)
	return out
}

// canonicalJSON re-encodes a JSON document given as text (or bytes) with
// sorted keys and no spaces; other values are returned as they are.
func canonicalJSON(v any) any {
	var text []byte
	switch x := v.(type) {
	case string:
		text = []byte(x)
	case []byte:
		text = x
	default:
		return v
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return v
	}
	enc, err := json.Marshal(doc)
	if err != nil {
		return v
	}
	if _, ok := v.(string); ok {
		return "json:" + string(enc)
	}
	return enc
}

// diffRows returns "" when want and got hold the same rows (in any order),
// else a description of the difference.
func diffRows(tbl *dmworker.Table, want, got [][]any) string {
	w, g := normalize(tbl, want), normalize(tbl, got)
	var b strings.Builder
	n := max(len(w), len(g))
	lines := 0
	for i := range n {
		if lines >= 20 {
			b.WriteString("...\n")
			break
		}
		var wr, gr []any
		if i < len(w) {
			wr = w[i]
		}
		if i < len(g) {
			gr = g[i]
		}
		if wr != nil && gr != nil && len(wr) == len(gr) {
			same := true
			for j := range wr {
				if !valueEqual(wr[j], gr[j]) {
					same = false
					lines++
					fmt.Fprintf(&b, "row %d column %s: got %s, want %s\n", i, colName(tbl, j), formatValue(gr[j]), formatValue(wr[j]))
				}
			}
			if same {
				continue
			}
		} else {
			lines++
			fmt.Fprintf(&b, "row %d: got %s, want %s\n", i, formatRow(gr), formatRow(wr))
		}
	}
	if b.Len() > 0 && len(g)+len(w) <= 20 {
		fmt.Fprintf(&b, "got %d rows:\n", len(g))
		for _, row := range g {
			fmt.Fprintf(&b, "  %s\n", formatRow(row))
		}
		fmt.Fprintf(&b, "want %d rows:\n", len(w))
		for _, row := range w {
			fmt.Fprintf(&b, "  %s\n", formatRow(row))
		}
	}
	return b.String()
}

func colName(tbl *dmworker.Table, i int) string {
	if i < len(tbl.Columns) {
		return tbl.Columns[i].Name
	}
	return fmt.Sprint(i)
}

func formatRow(row []any) string {
	if row == nil {
		return "(none)"
	}
	parts := make([]string, len(row))
	for i, v := range row {
		parts[i] = formatValue(v)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func formatValue(v any) string {
	const limit = 48
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		if len(x) > limit {
			return fmt.Sprintf("%q...(%d bytes)", x[:limit], len(x))
		}
		return fmt.Sprintf("%q", x)
	case []byte:
		if len(x) > limit {
			return fmt.Sprintf("0x%x...(%d bytes)", x[:limit], len(x))
		}
		return fmt.Sprintf("0x%x", x)
	}
	return fmt.Sprintf("%T(%v)", v, v)
}

func testInsertUpdateDelete(e *env) {
	tbl := e.table("t", []int{0}, nil,
		col("id", "bigint(20)", false), col("name", "varchar(64)", true), col("n", "int(11)", true))
	e.apply(batch(
		ins(tbl, int64(1), "a", int64(10)),
		ins(tbl, int64(2), "b", int64(20)),
		ins(tbl, int64(3), "c", nil),
	))
	e.want(tbl, r(int64(1), "a", int64(10)), r(int64(2), "b", int64(20)), r(int64(3), "c", nil))

	e.apply(batch(upd(tbl, r(int64(2), "b", int64(20)), r(int64(2), "bb", int64(21)))))
	e.want(tbl, r(int64(1), "a", int64(10)), r(int64(2), "bb", int64(21)), r(int64(3), "c", nil))

	e.apply(batch(del(tbl, int64(1), "a", int64(10))))
	e.want(tbl, r(int64(2), "bb", int64(21)), r(int64(3), "c", nil))

	e.apply(batch(
		ins(tbl, int64(4), "d", int64(40)),
		upd(tbl, r(int64(4), "d", int64(40)), r(int64(4), "dd", int64(41))),
		del(tbl, int64(3), "c", nil),
		upd(tbl, r(int64(2), "bb", int64(21)), r(int64(2), "bb", nil)),
	))
	e.want(tbl, r(int64(2), "bb", nil), r(int64(4), "dd", int64(41)))
}

// model is a reference for tables with a primary key: rows by key.
type model map[*dmworker.Table]map[string][]any

func (m model) apply(changes []dmworker.Change) {
	key := func(tbl *dmworker.Table, row []any) string {
		parts := make([]string, len(tbl.PrimaryKey))
		for i, c := range tbl.PrimaryKey {
			parts[i] = fmt.Sprintf("%T:%v", row[c], row[c])
		}
		return strings.Join(parts, "|")
	}
	for _, c := range changes {
		rows := m[c.Table]
		if rows == nil {
			rows = make(map[string][]any)
			m[c.Table] = rows
		}
		if c.Before != nil {
			delete(rows, key(c.Table, c.Before))
		}
		if c.After != nil {
			rows[key(c.Table, c.After)] = c.After
		}
	}
}

func (m model) rows(tbl *dmworker.Table) [][]any {
	var out [][]any
	for _, row := range m[tbl] {
		out = append(out, row)
	}
	return out
}

func testMultiRowBatches(e *env) {
	t1 := e.table("t1", []int{0}, nil,
		col("id", "bigint(20)", false), col("v", "varchar(32)", true), col("n", "bigint(20) unsigned", true))
	t2 := e.table("t2", []int{0, 1}, nil,
		col("a", "int(11)", false), col("b", "varchar(16)", false), col("c", "double", true))
	m := model{}
	run := func(b *dmworker.Batch) {
		e.t.Helper()
		e.apply(b)
		m.apply(b.Changes)
		e.want(t1, m.rows(t1)...)
		e.want(t2, m.rows(t2)...)
	}
	row1 := func(i int, v string) []any { return r(int64(i), fmt.Sprintf("%s%d", v, i), uint64(i)*1000003) }
	row2 := func(i int, c float64) []any { return r(int64(i), fmt.Sprintf("k%d", i%7), c) }

	// 700 inserts, switching table every 100 rows.
	var b1 []dmworker.Change
	for i := range 700 {
		if (i/100)%2 == 0 {
			b1 = append(b1, ins(t1, row1(i, "v")...))
		} else {
			b1 = append(b1, ins(t2, row2(i, float64(i)/3)...))
		}
	}
	run(batch(b1...))

	// Updates and deletes, interleaved in key order.
	var b2 []dmworker.Change
	for i := range 700 {
		if (i/100)%2 == 0 {
			switch {
			case i%3 == 0:
				b2 = append(b2, upd(t1, row1(i, "v"), row1(i, "u")))
			case i%5 == 1:
				b2 = append(b2, del(t1, row1(i, "v")...))
			}
		} else {
			switch {
			case i%4 == 0:
				b2 = append(b2, upd(t2, row2(i, float64(i)/3), row2(i, -float64(i))))
			case i%6 == 1:
				b2 = append(b2, del(t2, row2(i, float64(i)/3)...))
			}
		}
	}
	run(batch(b2...))

	// The same keys inserted, deleted and inserted again; keys moved.
	var b3 []dmworker.Change
	for i := 1000; i < 1010; i++ {
		b3 = append(b3, ins(t1, row1(i, "v")...), del(t1, row1(i, "v")...), ins(t1, row1(i, "again")...))
	}
	for i := 101; i < 200; i += 10 {
		old := row2(i, float64(i)/3)
		if i%4 == 0 {
			old = row2(i, -float64(i))
		}
		if i%6 == 1 {
			continue // deleted above
		}
		b3 = append(b3, upd(t2, old, r(int64(i), "moved", nil)))
	}
	run(batch(b3...))
}

// replayBatches returns the batches of the SafeModeReplay subtest for tbl,
// and the rows that applying them all gives.
func replayBatches(tbl *dmworker.Table) ([]*dmworker.Batch, [][]any) {
	row := func(id int, v, code string) []any { return r(int64(id), v, code) }
	var b1 []dmworker.Change
	for i := 1; i <= 8; i++ {
		b1 = append(b1, ins(tbl, row(i, fmt.Sprintf("v%d", i), fmt.Sprintf("c%d", i))...))
	}
	b2 := []dmworker.Change{
		upd(tbl, row(1, "v1", "c1"), row(1, "w1", "c1")),
		upd(tbl, row(2, "v2", "c2"), row(2, "w2", "c2")),
		upd(tbl, row(2, "w2", "c2"), row(2, "x2", "c2")),
		upd(tbl, row(6, "v6", "c6"), row(16, "v6", "c6")),
		del(tbl, row(7, "v7", "c7")...),
	}
	b3 := []dmworker.Change{
		ins(tbl, row(7, "again", "c7")...),
		upd(tbl, row(16, "v6", "c6"), row(6, "back", "c6")),
		del(tbl, row(8, "v8", "c8")...),
		upd(tbl, row(3, "v3", "c3"), row(3, "v3", "c33")),
	}
	b4 := []dmworker.Change{
		del(tbl, row(1, "w1", "c1")...),
		ins(tbl, row(20, "v20", "c20")...),
		upd(tbl, row(4, "v4", "c4"), row(4, "v4", "c3")),
	}
	final := [][]any{
		row(2, "x2", "c2"), row(3, "v3", "c33"), row(4, "v4", "c3"), row(5, "v5", "c5"),
		row(6, "back", "c6"), row(7, "again", "c7"), row(20, "v20", "c20"),
	}
	return []*dmworker.Batch{batch(b1...), batch(b2...), batch(b3...), batch(b4...)}, final
}

func testUpdateRuns(e *env) {
	tbl := e.table("runs", []int{0, 1}, [][]int{{4}},
		col("a", "int(11)", false), col("b", "varchar(8)", false), col("amount", "decimal(10,2)", true),
		col("note", "text", true), col("code", "varchar(8)", true))
	var rows []dmworker.Change
	for i := int64(1); i <= 6; i++ {
		rows = append(rows, ins(tbl, i, "k", fmt.Sprintf("%d.50", i), "n", fmt.Sprintf("c%d", i)))
	}
	e.apply(batch(rows...))
	e.apply(batch(
		upd(tbl, r(int64(1), "k", "1.50", "n", "c1"), r(int64(1), "k", "10.00", "first", "c1")),
		upd(tbl, r(int64(2), "k", "2.50", "n", "c2"), r(int64(2), "k", nil, nil, "c2")),
		upd(tbl, r(int64(1), "k", "10.00", "first", "c1"), r(int64(1), "k", "11.25", "second", "c1")),
		upd(tbl, r(int64(9), "k", "9.50", "n", "c9"), r(int64(9), "k", "9.75", "missing", "c9")),
		upd(tbl, r(int64(5), "k", "5.50", "n", "c5"), r(int64(5), "k", "-5.50", "it's \\ 'q'", "c5")),
	))
	e.apply(batch(
		upd(tbl, r(int64(3), "k", "3.50", "n", "c3"), r(int64(3), "k", "3.50", "n", "c33")),
		upd(tbl, r(int64(4), "k", "4.50", "n", "c4"), r(int64(4), "k", "4.50", "n", "c3")),
	))
	e.want(tbl,
		r(int64(1), "k", "11.25", "second", "c1"), r(int64(2), "k", nil, nil, "c2"), r(int64(3), "k", "3.50", "n", "c33"),
		r(int64(4), "k", "4.50", "n", "c3"), r(int64(5), "k", "-5.50", "it's \\ 'q'", "c5"), r(int64(6), "k", "6.50", "n", "c6"))
}

func testSafeModeReplay(e *env) {
	newTable := func(name string) *dmworker.Table {
		return e.table(name, []int{0}, [][]int{{2}},
			col("id", "bigint(20)", false), col("v", "varchar(32)", true), col("code", "varchar(16)", true))
	}
	replay := func(bs []*dmworker.Batch) {
		e.t.Helper()
		for _, b := range bs {
			sb := *b
			sb.SafeMode = true
			e.apply(&sb)
		}
	}
	// An insert-or-replace replaces every row it collides with, on the
	// primary key and on a unique key.
	tbl := newTable("collide")
	e.apply(batch(ins(tbl, int64(1), "a", "c1"), ins(tbl, int64(2), "b", "c2"), ins(tbl, int64(3), "c", "c3")))
	e.apply(safeBatch(ins(tbl, int64(1), "x", "c2")))
	e.want(tbl, r(int64(1), "x", "c2"), r(int64(3), "c", "c3"))

	for _, tc := range []struct {
		name    string
		applied int // batches applied in normal mode before the "crash"
		from    int // first batch replayed in safe mode
	}{
		{"all_applied", 4, 0},
		{"half_applied", 2, 0},
		{"suffix", 3, 2},
		{"none_applied", 0, 0},
	} {
		tbl := newTable(tc.name)
		bs, final := replayBatches(tbl)
		for _, b := range bs[:tc.applied] {
			e.apply(b)
		}
		replay(bs[tc.from:])
		e.want(tbl, final...)
		replay(bs[tc.from:])
		e.want(tbl, final...)
	}
}

// randomWorkload returns n batches of random changes to tbl (id primary key,
// v, code unique and nullable) that are valid in sequence, and the rows they
// leave.
func randomWorkload(rng *rand.Rand, tbl *dmworker.Table, n int) ([]*dmworker.Batch, [][]any) {
	rows := map[int64][]any{}
	var ids, deleted []int64
	next := int64(1)
	// Codes are never reused, so they stay unique.
	newCode := func() any {
		if rng.IntN(5) == 0 {
			return nil
		}
		next++
		return fmt.Sprintf("k%d", next-1)
	}
	pick := func() int {
		return rng.IntN(len(ids))
	}
	var batches []*dmworker.Batch
	for range n {
		var changes []dmworker.Change
		for range 1 + rng.IntN(25) {
			op := rng.IntN(10)
			if len(ids) < 3 {
				op = 0
			}
			switch {
			case op <= 2: // insert, reusing a deleted id sometimes
				id := next
				next++
				if len(deleted) > 0 && rng.IntN(2) == 0 {
					id, deleted = deleted[len(deleted)-1], deleted[:len(deleted)-1]
				}
				row := r(id, fmt.Sprintf("v%d", rng.IntN(1000)), newCode())
				rows[id] = row
				ids = append(ids, id)
				changes = append(changes, ins(tbl, row...))
			case op <= 5: // update v
				i := pick()
				old := rows[ids[i]]
				row := r(old[0], fmt.Sprintf("u%d", rng.IntN(1000)), old[2])
				rows[ids[i]] = row
				changes = append(changes, upd(tbl, old, row))
			case op == 6: // update code
				i := pick()
				old := rows[ids[i]]
				row := r(old[0], old[1], newCode())
				rows[ids[i]] = row
				changes = append(changes, upd(tbl, old, row))
			case op == 7: // move to a new id
				i := pick()
				old := rows[ids[i]]
				id := next
				next++
				row := r(id, old[1], old[2])
				delete(rows, ids[i])
				deleted = append(deleted, ids[i])
				rows[id] = row
				ids[i] = id
				changes = append(changes, upd(tbl, old, row))
			default: // delete
				i := pick()
				old := rows[ids[i]]
				delete(rows, ids[i])
				deleted = append(deleted, ids[i])
				ids = append(ids[:i], ids[i+1:]...)
				changes = append(changes, del(tbl, old...))
			}
		}
		batches = append(batches, batch(changes...))
	}
	var final [][]any
	for _, row := range rows {
		final = append(final, row)
	}
	return batches, final
}

func testSafeModeReplayRandom(e *env) { replayRandom(e, false) }

func testSafeModeChecked(e *env) { replayRandom(e, true) }

// replayRandom runs random workloads cut and replayed at random points; with
// checked, on tables with CheckForeignKeys, replaying only what was not
// applied, once.
func replayRandom(e *env, checked bool) {
	for round := range 6 {
		seed := rand.Uint64()
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		tbl := e.table(fmt.Sprintf("r%d", round), []int{0}, [][]int{{2}},
			col("id", "bigint(20)", false), col("v", "varchar(32)", true), col("code", "varchar(16)", true))
		tbl.CheckForeignKeys = checked
		bs, final := randomWorkload(rng, tbl, 20)
		applied := rng.IntN(len(bs) + 1)
		from, replays := rng.IntN(applied+1), 2
		if checked {
			from, replays = applied, 1
		}
		e.t.Logf("round %d: seed %d, %d batches applied, replay from %d", round, seed, applied, from)
		for _, b := range bs[:applied] {
			e.apply(b)
		}
		for range replays {
			for _, b := range bs[from:] {
				sb := *b
				sb.SafeMode = true
				e.apply(&sb)
			}
			e.want(tbl, final...)
		}
	}
}

func testUpdatePrimaryKey(e *env) {
	tbl := e.table("t", []int{0, 1}, nil,
		col("id", "bigint(20)", false), col("sub", "varchar(8)", false), col("v", "varchar(32)", true))
	e.apply(batch(ins(tbl, int64(1), "a", "one"), ins(tbl, int64(2), "a", "two")))
	e.apply(batch(upd(tbl, r(int64(1), "a", "one"), r(int64(3), "b", "one"))))
	e.want(tbl, r(int64(2), "a", "two"), r(int64(3), "b", "one"))

	e.applyFails(batch(upd(tbl, r(int64(3), "b", "one"), r(int64(2), "a", "one"))), "update onto an existing key")
	e.want(tbl, r(int64(2), "a", "two"), r(int64(3), "b", "one"))

	e.apply(safeBatch(upd(tbl, r(int64(3), "b", "one"), r(int64(2), "a", "merged"))))
	e.want(tbl, r(int64(2), "a", "merged"))

	// Moving a row there and back within one batch.
	e.apply(batch(
		upd(tbl, r(int64(2), "a", "merged"), r(int64(5), "a", "merged")),
		upd(tbl, r(int64(5), "a", "merged"), r(int64(2), "a", "back")),
	))
	e.want(tbl, r(int64(2), "a", "back"))
}

func testUniqueKeyWithoutPrimaryKey(e *env) {
	// The first unique key (u) is nullable: rows with u NULL are matched by
	// the second (code).
	tbl := e.table("t", nil, [][]int{{1}, {0}},
		col("code", "varchar(32)", false), col("u", "bigint(20)", true), col("v", "varchar(32)", true))
	e.apply(batch(
		ins(tbl, "a", int64(1), "x"),
		ins(tbl, "b", nil, "y"),
		ins(tbl, "c", nil, "z"),
		ins(tbl, "d", int64(2), "w"),
	))
	e.apply(batch(
		upd(tbl, r("b", nil, "y"), r("b", nil, "y2")),
		del(tbl, "c", nil, "z"),
		upd(tbl, r("a", int64(1), "x"), r("a", int64(1), "x2")),
		upd(tbl, r("d", int64(2), "w"), r("d", nil, "w")),
	))
	e.want(tbl, r("a", int64(1), "x2"), r("b", nil, "y2"), r("d", nil, "w"))

	e.applyFails(batch(ins(tbl, "b", int64(5), "q")), "insert of an existing unique key")
	e.want(tbl, r("a", int64(1), "x2"), r("b", nil, "y2"), r("d", nil, "w"))

	for range 2 {
		e.apply(safeBatch(ins(tbl, "a", int64(1), "x"), ins(tbl, "e", nil, "v")))
	}
	e.want(tbl, r("a", int64(1), "x"), r("b", nil, "y2"), r("d", nil, "w"), r("e", nil, "v"))
}

func testNoKey(e *env) {
	tbl := e.table("t", nil, nil, col("a", "bigint(20)", true), col("b", "varchar(16)", true))
	e.apply(batch(
		ins(tbl, int64(1), "x"), ins(tbl, int64(1), "x"),
		ins(tbl, int64(2), nil), ins(tbl, int64(3), "y"), ins(tbl, int64(4), "z"),
	))
	e.want(tbl, r(int64(1), "x"), r(int64(1), "x"), r(int64(2), nil), r(int64(3), "y"), r(int64(4), "z"))

	e.apply(batch(del(tbl, int64(1), "x")))
	e.want(tbl, r(int64(1), "x"), r(int64(2), nil), r(int64(3), "y"), r(int64(4), "z"))

	e.apply(batch(upd(tbl, r(int64(2), nil), r(int64(2), "n")), del(tbl, int64(3), "y")))
	e.want(tbl, r(int64(1), "x"), r(int64(2), "n"), r(int64(4), "z"))

	e.apply(batch(ins(tbl, int64(5), "d"), ins(tbl, int64(5), "d"), ins(tbl, int64(5), "d")))
	e.apply(batch(del(tbl, int64(5), "d"), del(tbl, int64(5), "d")))
	e.want(tbl, r(int64(1), "x"), r(int64(2), "n"), r(int64(4), "z"), r(int64(5), "d"))

	// Safe mode: an insert replaces one equal row, so replaying it is
	// idempotent for rows that are unique.
	for range 2 {
		e.apply(safeBatch(ins(tbl, int64(6), "s"), upd(tbl, r(int64(2), "n"), r(int64(2), "m"))))
	}
	e.want(tbl, r(int64(1), "x"), r(int64(2), "m"), r(int64(4), "z"), r(int64(5), "d"), r(int64(6), "s"))
}

func testDecimalKeys(e *env) {
	// Equal as doubles: a server comparing a DECIMAL with a string as
	// doubles takes one for another.
	const a, b, c = "1.000000000000000000000000000001", "1.000000000000000000000000000002", "1.000000000000000000000000000003"
	pk := e.table("pk", []int{0}, nil, col("d", "decimal(65,30)", false), col("v", "varchar(8)", true))
	none := e.table("nokey", nil, nil, col("d", "decimal(65,30)", true), col("v", "varchar(8)", true))
	for _, tbl := range []*dmworker.Table{pk, none} {
		e.apply(batch(ins(tbl, a, "x"), ins(tbl, b, "x"), ins(tbl, c, "x")))
		e.apply(batch(del(tbl, c, "x"), upd(tbl, r(b, "x"), r(b, "y"))))
		e.want(tbl, r(a, "x"), r(b, "y"))
		e.apply(batch(del(tbl, b, "y"), ins(tbl, c, "z")))
		e.want(tbl, r(a, "x"), r(c, "z"))
		// Several rows in one batch, which a sink may delete together.
		e.apply(batch(ins(tbl, b, "w")))
		e.apply(batch(del(tbl, a, "x"), del(tbl, c, "z")))
		e.want(tbl, r(b, "w"))
	}
}

func testNulls(e *env) {
	tbl := e.table("t", []int{0}, nil,
		col("id", "bigint(20)", false),
		col("i", "bigint(20)", true),
		col("u", "bigint(20) unsigned", true),
		col("s", "varchar(16)", true),
		col("b", "varbinary(16)", true),
		col("d", "datetime", true),
		col("f", "double", true),
	)
	nulls := r(int64(1), nil, nil, nil, nil, nil, nil)
	zeros := r(int64(2), int64(0), uint64(0), "", []byte{}, "2020-01-01 00:00:00", float64(0))
	vals := r(int64(1), int64(-1), uint64(1), "s", []byte{0}, "2021-02-03 04:05:06", 1.5)
	e.apply(batch(ins(tbl, nulls...), ins(tbl, zeros...)))
	e.want(tbl, nulls, zeros)

	nulls2 := r(int64(2), nil, nil, nil, nil, nil, nil)
	e.apply(batch(upd(tbl, nulls, vals), upd(tbl, zeros, nulls2)))
	e.want(tbl, vals, nulls2)

	e.apply(batch(del(tbl, nulls2...)))
	e.want(tbl, vals)
}

// typesColumns are the columns of the ValueTypes tables, one per type family.
func typesColumns() []dmworker.Column {
	return []dmworker.Column{
		col("id", "bigint(20)", false),
		col("ti", "tinyint(4)", true), col("tiu", "tinyint(3) unsigned", true),
		col("si", "smallint(6)", true), col("siu", "smallint(5) unsigned", true),
		col("mi", "mediumint(9)", true), col("miu", "mediumint(8) unsigned", true),
		col("i", "int(11)", true), col("iu", "int(10) unsigned", true),
		col("bi", "bigint(20)", true), col("biu", "bigint(20) unsigned", true),
		col("dec1", "decimal(65,30)", true), col("dec2", "decimal(10,2)", true), col("dec0", "decimal(20,0)", true),
		col("f", "float", true), col("d", "double", true),
		col("dt", "date", true), col("dtm", "datetime", true), col("dtm6", "datetime(6)", true),
		col("ts", "timestamp(6)", true), col("tm", "time", true), col("tm6", "time(6)", true), col("yr", "year(4)", true),
		col("c", "char(10)", true), col("vc", "varchar(255)", true), col("tx", "text", true),
		col("e", "enum('a','b','c')", true), col("st", "set('x','y','z')", true),
		col("bin", "binary(4)", true), col("vb", "varbinary(64)", true), col("bl", "blob", true),
		col("j", "json", true),
		col("b1", "bit(1)", true), col("b10", "bit(10)", true), col("b64", "bit(64)", true),
		col("g", "geometry", true),
	}
}

// geomPoint returns MySQL's internal geometry format of POINT(x y): the SRID
// (4 bytes, little endian), then the WKB.
func geomPoint(srid uint32, x, y float64) []byte {
	b := le32(nil, srid)
	b = append(b, 1)
	b = le32(b, 1)
	b = le64f(b, x)
	return le64f(b, y)
}

// geomLine returns the internal format of a LINESTRING through the points.
func geomLine(srid uint32, xy ...float64) []byte {
	b := le32(nil, srid)
	b = append(b, 1)
	b = le32(b, 2)
	b = le32(b, uint32(len(xy)/2))
	for _, v := range xy {
		b = le64f(b, v)
	}
	return b
}

func le32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func le64f(b []byte, f float64) []byte {
	v := math.Float64bits(f)
	for i := range 8 {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// typesRows are edge values of every type, in the columns of typesColumns.
func typesRows() [][]any {
	blob := make([]byte, 2000)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	minRow := r(int64(1),
		int64(-128), uint64(0), int64(-32768), uint64(0), int64(-8388608), uint64(0),
		int64(-2147483648), uint64(0), int64(-1<<63), uint64(0),
		"-99999999999999999999999999999999999.999999999999999999999999999999", "-99999999.99", "-99999999999999999999",
		float32(-3.4028235e38), -1.7976931348623157e308,
		"1000-01-01", "1000-01-01 00:00:00", "1000-01-01 00:00:00.000000",
		"1970-01-01 00:00:01.000000", "-838:59:59", "-838:59:59.000000", int64(1901),
		"", "", "", "a", "",
		[]byte{0, 0, 0, 0}, []byte{}, []byte{},
		"[]",
		uint64(0), uint64(0), uint64(0),
		geomPoint(0, 0, 0),
	)
	maxRow := r(int64(2),
		int64(127), uint64(255), int64(32767), uint64(65535), int64(8388607), uint64(16777215),
		int64(2147483647), uint64(4294967295), int64(1<<63-1), uint64(1<<64-1),
		"99999999999999999999999999999999999.999999999999999999999999999999", "99999999.99", "99999999999999999999",
		float32(3.4028235e38), 1.7976931348623157e308,
		"9999-12-31", "9999-12-31 23:59:59", "9999-12-31 23:59:59.999999",
		"2038-01-19 03:14:07.999999", "838:59:59", "838:59:59.000000", int64(2155),
		"abcdefghij", "😀𝄞 漢字 'quote' \"dq\" back\\slash trailing  ", strings.Repeat("👩‍💻 text\x00nul ", 200),
		"c", "x,y,z",
		[]byte{0xff, 0, 0xfe, 0}, []byte{0, 0xff, 0xfe, 0x80, 0, '\'', '\\', '"', 0x1a, '\n', '\r', 0xc3, 0x28}, blob,
		`{"a": [1, 2.5, "x", null, true], "b": {"c": "é😀", "d": {}}}`,
		uint64(1), uint64(1023), uint64(1<<64-1),
		geomLine(4326, 0, 0, 1.5, -2.25, 1e300, -1e-300),
	)
	zeroRow := r(int64(3),
		int64(0), uint64(1), int64(-1), uint64(1), int64(0), uint64(1),
		int64(0), uint64(1), int64(0), uint64(1),
		"0.000000000000000000000000000000", "-0.01", "0",
		float32(1.1), 0.1,
		"0000-00-00", "0000-00-00 00:00:00", "0000-00-00 00:00:00.000000",
		"0000-00-00 00:00:00.000000", "00:00:00", "-00:00:00.000001", int64(0),
		"z", "ünïcödé", "short", "b", "x,z",
		[]byte{0, 0, 0, 1}, []byte("\x00"), []byte{0},
		`"a string"`,
		uint64(0), uint64(512), uint64(1<<63),
		geomPoint(0, -1.5, 2.5),
	)
	miscRow := r(int64(4),
		int64(-1), uint64(128), int64(12345), uint64(54321), int64(-1), uint64(8388608),
		int64(-1), uint64(2147483648), int64(-1), uint64(1<<63),
		"12345678901234567890.123456789012345678901234567890", "12.30", "18446744073709551616",
		float32(1.17549435e-38), 5e-324,
		"2024-02-29", "2024-02-29 12:34:56", "2024-02-29 12:34:56.000001",
		"2024-02-29 12:34:56.123456", "123:45:06", "-123:45:06.789012", int64(2024),
		" lead", "x", "", "c", "y",
		[]byte("abcd"), []byte("plain ascii"), []byte("text"),
		`null`,
		uint64(1), uint64(1), uint64(0x8000000000000001),
		geomPoint(3857, 1e6, -1e6),
	)
	nullRow := make([]any, len(typesColumns()))
	nullRow[0] = int64(5)
	return [][]any{minRow, maxRow, zeroRow, miscRow, nullRow}
}

func testValueTypes(e *env) {
	tbl := e.table("t", []int{0}, nil, typesColumns()...)
	rows := typesRows()
	for _, row := range rows {
		if err := CheckRow(tbl, row); err != nil {
			e.t.Fatalf("suite bug: %v", err)
		}
	}
	var changes []dmworker.Change
	for _, row := range rows {
		changes = append(changes, ins(tbl, row...))
	}
	e.apply(batch(changes...))
	e.want(tbl, rows...)

	// Swap the values of two rows through updates, then delete one.
	a, b := rows[0], rows[1]
	a2 := append(r(a[0]), b[1:]...)
	b2 := append(r(b[0]), a[1:]...)
	e.apply(batch(upd(tbl, a, a2), upd(tbl, b, b2)))
	e.apply(batch(del(tbl, rows[2]...)))
	e.want(tbl, a2, b2, rows[3], rows[4])
}

func testValueTypesWithoutKey(e *env) {
	tbl := e.table("t", nil, nil, typesColumns()...)
	rows := typesRows()
	var changes []dmworker.Change
	for _, row := range rows {
		changes = append(changes, ins(tbl, row...))
	}
	e.apply(batch(changes...))
	e.want(tbl, rows...)

	// Rows are found by all their values.
	var dels []dmworker.Change
	for _, row := range rows[1:] {
		dels = append(dels, del(tbl, row...))
	}
	moved := append(r(int64(9)), rows[1][1:]...)
	e.apply(batch(dels[0], dels[1], upd(tbl, rows[0], moved)))
	e.want(tbl, moved, rows[3], rows[4])
	e.apply(batch(dels[2:]...))
	e.want(tbl, moved)
}

func testAtomicBatch(e *env) {
	t1 := e.table("t1", []int{0}, nil, col("id", "bigint(20)", false), col("v", "varchar(16)", true))
	t2 := e.table("t2", []int{0}, nil, col("id", "bigint(20)", false), col("v", "varchar(16)", true))
	e.apply(batch(ins(t1, int64(1), "one"), ins(t2, int64(1), "one")))

	e.applyFails(batch(
		ins(t1, int64(2), "two"),
		upd(t2, r(int64(1), "one"), r(int64(1), "uno")),
		del(t1, int64(1), "one"),
		ins(t2, int64(1), "dup"), // collides: the batch fails here
		ins(t1, int64(3), "three"),
	), "batch with a duplicate key")
	e.want(t1, r(int64(1), "one"))
	e.want(t2, r(int64(1), "one"))

	// The sink is still usable.
	e.apply(batch(ins(t1, int64(2), "two")))
	e.want(t1, r(int64(1), "one"), r(int64(2), "two"))
}

func (e *env) ddl(schema, table, query string) {
	e.t.Helper()
	d := &dmworker.DDL{Schema: schema, Table: table, Query: query, SourceQuery: query}
	if err := e.s.ExecDDL(e.t.Context(), d); err != nil {
		e.t.Fatalf("exec ddl %q: %v", query, err)
	}
}

func testDDLOrder(e *env) {
	q := quoteIdent
	s := e.schema
	e.ddl("", "", "CREATE DATABASE IF NOT EXISTS "+q(s))
	e.ddl(s, "t", "DROP TABLE IF EXISTS t")
	e.ddl(s, "t", "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(20) NULL)")
	v1 := &dmworker.Table{Schema: s, Name: "t", Columns: []dmworker.Column{
		col("id", "bigint(20)", false), col("v", "varchar(20)", true),
	}, PrimaryKey: []int{0}}
	e.apply(batch(ins(v1, int64(1), "a")))

	e.ddl(s, "t", "ALTER TABLE "+q(s)+".t ADD COLUMN w INT NULL")
	v2 := &dmworker.Table{Schema: s, Name: "t", Columns: []dmworker.Column{
		col("id", "bigint(20)", false), col("v", "varchar(20)", true), col("w", "int(11)", true),
	}, PrimaryKey: []int{0}}
	e.apply(batch(ins(v2, int64(2), "b", int64(7))))
	e.want(v2, r(int64(1), "a", nil), r(int64(2), "b", int64(7)))

	e.ddl(s, "t", "DROP TABLE "+q(s)+"."+q("t"))
	e.ddl(s, "t", "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY)")
	v3 := &dmworker.Table{Schema: s, Name: "t", Columns: []dmworker.Column{col("id", "bigint(20)", false)}, PrimaryKey: []int{0}}
	e.apply(batch(ins(v3, int64(9))))
	e.want(v3, r(int64(9)))

	e.ddl(s, "t", "TRUNCATE TABLE t")
	e.want(v3)
	e.apply(batch(ins(v3, int64(10))))
	e.want(v3, r(int64(10)))
}

func testDDLSafeMode(e *env) {
	q := quoteIdent
	s := e.schema
	ddls := []*dmworker.DDL{
		{Query: "CREATE DATABASE " + q(s)},
		{Schema: s, Table: "t", Query: "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(20) NULL)"},
		{Schema: s, Table: "t", Query: "ALTER TABLE t ADD COLUMN w INT NULL"},
		{Schema: s, Table: "t", Query: "ALTER TABLE t ADD INDEX iw (w)"},
		{Schema: s, Table: "t", Query: "ALTER TABLE t DROP COLUMN v"},
		{Schema: s, Table: "t", Query: "RENAME TABLE t TO t2"},
		{Schema: s, Table: "t2", Query: "DROP TABLE t2"},
	}
	for _, d := range ddls {
		for i := range 2 {
			again := *d
			again.SourceQuery = d.Query
			again.SafeMode = i > 0
			if err := e.s.ExecDDL(e.t.Context(), &again); err != nil {
				e.t.Fatalf("%q, safe mode %v: %v", d.Query, again.SafeMode, err)
			}
		}
	}
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func testCancelledContext(e *env) {
	tbl := e.table("t", []int{0}, nil, col("id", "bigint(20)", false))
	e.apply(batch(ins(tbl, int64(1))))
	ctx, cancel := context.WithCancel(e.t.Context())
	cancel()
	check := func(what string, err error) {
		e.t.Helper()
		if err == nil {
			e.t.Errorf("%s with a cancelled context: no error", what)
			return
		}
		if !errors.Is(err, context.Canceled) {
			e.t.Logf("%s with a cancelled context: the error does not wrap context.Canceled: %v", what, err)
		}
	}
	check("Apply", e.s.Apply(ctx, batch(ins(tbl, int64(2)), del(tbl, int64(1)))))
	e.want(tbl, r(int64(1)))
	check("ExecDDL", e.s.ExecDDL(ctx, &dmworker.DDL{Schema: e.schema, Table: "t", Query: "TRUNCATE TABLE t"}))
	e.want(tbl, r(int64(1)))

	if cs, ok := e.s.(dmworker.CheckpointSink); ok {
		cp := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:4")}
		check("SaveCheckpoint", cs.SaveCheckpoint(ctx, cp))
		check("Apply with a checkpoint", e.s.Apply(ctx, &dmworker.Batch{
			Changes: []dmworker.Change{ins(tbl, int64(3))}, Checkpoint: &cp,
		}))
		_, _, err := cs.LoadCheckpoint(ctx, e.task, "src")
		check("LoadCheckpoint", err)
		if _, ok, err := cs.LoadCheckpoint(e.t.Context(), e.task, "src"); err != nil || ok {
			e.t.Errorf("checkpoint after cancelled saves: found %v, error %v; want none", ok, err)
		}
		e.want(tbl, r(int64(1)))
	}
}

func mustPos(t *testing.T, s string) streamer.Position {
	t.Helper()
	p, err := streamer.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sameCheckpoint(a, b dmworker.Checkpoint) bool {
	return a.Task == b.Task && a.Source == b.Source && a.Pos.Equal(b.Pos) &&
		a.SafeUntil.Equal(b.SafeUntil) && bytes.Equal(a.Schema, b.Schema) && a.Epoch == b.Epoch &&
		bytes.Equal(a.Snapshot, b.Snapshot) && a.Server == b.Server
}

func fmtCheckpoint(cp dmworker.Checkpoint) string {
	return fmt.Sprintf("{task %q source %q pos %s safe-until %s schema %d bytes epoch %d snapshot %q server %q}",
		cp.Task, cp.Source, cp.Pos, cp.SafeUntil, len(cp.Schema), cp.Epoch, cp.Snapshot, cp.Server)
}

// wantCheckpoint checks the stored checkpoint of task and source; want nil
// means none.
func (e *env) wantCheckpoint(cs dmworker.CheckpointSink, source string, want *dmworker.Checkpoint) {
	e.t.Helper()
	got, ok, err := cs.LoadCheckpoint(e.t.Context(), e.task, source)
	if err != nil {
		e.t.Fatalf("load checkpoint: %v", err)
	}
	switch {
	case want == nil && ok:
		e.t.Fatalf("checkpoint of source %q: got %s, want none", source, fmtCheckpoint(got))
	case want != nil && !ok:
		e.t.Fatalf("checkpoint of source %q: none, want %s", source, fmtCheckpoint(*want))
	case want != nil && !sameCheckpoint(got, *want):
		e.t.Fatalf("checkpoint of source %q:\n got %s\nwant %s", source, fmtCheckpoint(got), fmtCheckpoint(*want))
	}
}

func testCheckpointRoundTrip(e *env) {
	cs := e.checkpointSink()
	ctx := e.t.Context()
	e.wantCheckpoint(cs, "src-a", nil)

	cp := dmworker.Checkpoint{
		Task: e.task, Source: "src-a",
		Pos:       mustPos(e.t, "mysql-bin.000003:1234 mariadb-gtid=0-1-100,1-2-5"),
		SafeUntil: mustPos(e.t, "mysql-bin.000004:99 mariadb-gtid=0-1-130,1-2-5"),
		Schema:    []byte("{\"tables\":{}}\x00\xff binary"),
		Epoch:     3,
		Snapshot:  []byte("{\"chunks\":[1,2]}\x00\xfe progress"),
		Server:    "3e11fa47-71ca-11e1-9e33-c80aa9429562",
	}
	if err := cs.SaveCheckpoint(ctx, cp); err != nil {
		e.t.Fatal(err)
	}
	e.wantCheckpoint(cs, "src-a", &cp)
	e.wantCheckpoint(cs, "src-b", nil)

	// Overwrite; zero SafeUntil, GTID-only and file-only positions. A nil
	// Schema keeps the stored one, an empty one replaces it; a nil Snapshot
	// clears the stored one.
	cp2 := dmworker.Checkpoint{Task: e.task, Source: "src-a", Pos: mustPos(e.t, "mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"), Epoch: 3}
	if err := cs.SaveCheckpoint(ctx, cp2); err != nil {
		e.t.Fatal(err)
	}
	e.wantCheckpoint(cs, "src-a", withSchema(cp2, cp.Schema))
	cp3 := dmworker.Checkpoint{Task: e.task, Source: "src-a", Pos: mustPos(e.t, "mysql-bin.000009:4"), Schema: []byte{}, Epoch: 3}
	if err := cs.SaveCheckpoint(ctx, cp3); err != nil {
		e.t.Fatal(err)
	}
	e.wantCheckpoint(cs, "src-a", &cp3)
	cpB := dmworker.Checkpoint{Task: e.task, Source: "src-b", Pos: mustPos(e.t, "mysql-bin.000001:4")}
	if err := cs.SaveCheckpoint(ctx, cpB); err != nil {
		e.t.Fatal(err)
	}
	e.wantCheckpoint(cs, "src-b", &cpB)
	e.wantCheckpoint(cs, "src-a", &cp3)
}

// withSchema returns a copy of cp with schema: what a sink stores for a
// checkpoint with a nil Schema after one with schema.
func withSchema(cp dmworker.Checkpoint, schema []byte) *dmworker.Checkpoint {
	cp.Schema = schema
	return &cp
}

func testCheckpointWithBatch(e *env) {
	cs := e.checkpointSink()
	tbl := e.table("t", []int{0}, nil, col("id", "bigint(20)", false), col("v", "varchar(16)", true))
	cp1 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:100"), Schema: []byte("s1"), Epoch: 1}
	e.apply(&dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1), "a")}, Checkpoint: &cp1})
	e.want(tbl, r(int64(1), "a"))
	e.wantCheckpoint(cs, "src", &cp1)

	// A failing batch stores neither rows nor checkpoint.
	cp2 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:200"), Epoch: 1}
	e.applyFails(&dmworker.Batch{
		Changes:    []dmworker.Change{ins(tbl, int64(2), "b"), ins(tbl, int64(1), "dup")},
		Checkpoint: &cp2,
	}, "batch with a duplicate key and a checkpoint")
	e.want(tbl, r(int64(1), "a"))
	e.wantCheckpoint(cs, "src", &cp1)

	// A safe-mode batch, then a batch of no changes: the checkpoint only.
	// Both keep the schema stored (their Schema is nil).
	e.apply(&dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1), "a"), ins(tbl, int64(2), "b")}, SafeMode: true, Checkpoint: &cp2})
	e.wantCheckpoint(cs, "src", withSchema(cp2, cp1.Schema))
	cp3 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:300"), SafeUntil: mustPos(e.t, "mysql-bin.000002:4"), Epoch: 2}
	e.apply(&dmworker.Batch{Checkpoint: &cp3})
	e.wantCheckpoint(cs, "src", withSchema(cp3, cp1.Schema))
	e.want(tbl, r(int64(1), "a"), r(int64(2), "b"))

	// ExecDDL stores its checkpoint once the DDL is done.
	cp4 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:400"), Schema: []byte("s4"), Epoch: 2}
	d := &dmworker.DDL{Schema: e.schema, Table: "t", Query: "TRUNCATE TABLE t", SourceQuery: "TRUNCATE TABLE t", Pos: cp4.Pos, Checkpoint: &cp4}
	if err := e.s.ExecDDL(e.t.Context(), d); err != nil {
		e.t.Fatal(err)
	}
	e.wantCheckpoint(cs, "src", &cp4)
	e.want(tbl)
}

func testStaleEpoch(e *env) {
	cs := e.checkpointSink()
	ctx := e.t.Context()
	tbl := e.table("t", []int{0}, nil, col("id", "bigint(20)", false))
	cp5 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:500"), Epoch: 5}
	e.apply(&dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(1))}, Checkpoint: &cp5})

	stale := func(what string, err error) {
		e.t.Helper()
		if !errors.Is(err, dmworker.ErrStaleEpoch) {
			e.t.Fatalf("%s from an older epoch: got %v, want dmworker.ErrStaleEpoch", what, err)
		}
		if dmworker.IsRetryable(err) {
			e.t.Errorf("%s from an older epoch: error is retryable: %v", what, err)
		}
		e.want(tbl, r(int64(1)))
		e.wantCheckpoint(cs, "src", &cp5)
	}
	cp4 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:900"), Epoch: 4}
	stale("batch", e.s.Apply(ctx, &dmworker.Batch{
		Changes: []dmworker.Change{ins(tbl, int64(2)), del(tbl, int64(1))}, Checkpoint: &cp4,
	}))
	stale("safe-mode batch", e.s.Apply(ctx, &dmworker.Batch{
		Changes: []dmworker.Change{ins(tbl, int64(2))}, SafeMode: true, Checkpoint: &cp4,
	}))
	stale("fenced batch", e.s.Apply(ctx, &dmworker.Batch{
		Changes: []dmworker.Change{ins(tbl, int64(2))}, Fence: dmworker.Fence{Task: e.task, Source: "src", Epoch: 4},
	}))
	stale("checkpoint", cs.SaveCheckpoint(ctx, cp4))
	stale("DDL checkpoint", e.s.ExecDDL(ctx, &dmworker.DDL{
		Schema: e.schema, Table: "t", Query: "TRUNCATE TABLE t", Pos: cp4.Pos, Checkpoint: &cp4,
	}))

	// A fenced batch of the stored epoch, or of another source, is
	// applied; one of the stored epoch with no stored row for its source
	// too.
	e.apply(&dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(3))}, Fence: dmworker.Fence{Task: e.task, Source: "src", Epoch: 5}})
	e.apply(&dmworker.Batch{Changes: []dmworker.Change{del(tbl, int64(3))}, Fence: dmworker.Fence{Task: e.task, Source: "nowhere", Epoch: 0}})
	e.want(tbl, r(int64(1)))

	// The same epoch is accepted, a newer one fences the older.
	cp5b := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:600"), Epoch: 5}
	if err := cs.SaveCheckpoint(ctx, cp5b); err != nil {
		e.t.Fatal(err)
	}
	cp6 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:700"), Epoch: 6}
	e.apply(&dmworker.Batch{Changes: []dmworker.Change{ins(tbl, int64(6))}, Checkpoint: &cp6})
	if err := cs.SaveCheckpoint(ctx, cp5b); !errors.Is(err, dmworker.ErrStaleEpoch) {
		e.t.Fatalf("epoch 5 after epoch 6: got %v, want dmworker.ErrStaleEpoch", err)
	}
	e.wantCheckpoint(cs, "src", &cp6)
	e.want(tbl, r(int64(1)), r(int64(6)))

	// Fencing is per task and source.
	other := dmworker.Checkpoint{Task: e.task, Source: "other", Pos: mustPos(e.t, "mysql-bin.000001:4"), Epoch: 1}
	if err := cs.SaveCheckpoint(ctx, other); err != nil {
		e.t.Fatalf("epoch 1 of another source: %v", err)
	}
}
