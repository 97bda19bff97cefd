package dmworker

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// TestValidatorValueRules: the type-aware comparison rules, value by value.
func TestValidatorValueRules(t *testing.T) {
	col := func(ty string, binary bool) Column { return Column{Name: "c", Type: ty, Binary: binary} }
	for _, tc := range []struct {
		c        Column
		up, down any
		equal    bool
	}{
		{col("float", false), float32(1.5), float32(1.5000001), true},
		{col("float", false), float32(1.5), []byte("1.50000012"), true},
		{col("float", false), float32(1.5), float32(1.51), false},
		{col("double", false), 2.25, 2.250000000000001, true},
		{col("double", false), 2.25, 2.2500001, false},
		{col("double", false), 0.0, []byte("0"), true},
		{col("decimal(10,2)", false), "1.50", []byte("1.50"), true},
		{col("decimal(10,2)", false), "1.50", []byte("1.5"), true},
		{col("decimal(65,30)", false), "0.000000000000000000000000000001", []byte("0.000000000000000000000000000002"), false},
		{col("datetime(6)", false), "2020-01-02 03:04:05.500000", []byte("2020-01-02 03:04:05.5"), true},
		{col("datetime(6)", false), "2020-01-02 03:04:05.500000", []byte("2020-01-02 03:04:05.500001"), false},
		{col("timestamp", false), "2020-01-02 03:04:05", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), true},
		{col("time(6)", false), "-838:59:59.000000", []byte("-838:59:59"), true},
		{col("json", false), `{"a": 1, "b": [1, 2]}`, []byte(`{"b":[1,2.0],"a":1}`), true},
		{col("json", false), `{"a": 1, "b": [1, 2]}`, []byte(`{"b":[2,1],"a":1}`), false},
		{col("longtext", false), `{"a": 1}`, []byte(`{"a":1.0}`), true},
		{col("longtext", false), `a  b`, []byte(`a b`), false},
		{col("binary(4)", true), []byte{1, 2}, []byte{1, 2, 0, 0}, true},
		{col("varbinary(4)", true), []byte{1, 2}, []byte{1, 2, 0}, false},
		{col("blob", true), []byte{0xff}, []byte{0xff}, true},
		{col("char(10)", false), "ab", []byte("ab"), true},
		{col("varchar(10)", false), "ab ", []byte("ab"), false},
		{col("varchar(10)", false), "Ab", []byte("ab"), false},
		{col("bit(64)", false), uint64(0x7FFFFFFFFFFFFFFF), []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, true},
		{col("bit(5)", false), uint64(1), []byte{2}, false},
		{col("bigint(20) unsigned", false), uint64(18446744073709551615), []byte("18446744073709551615"), true},
		{col("int(11)", false), int64(-1), int64(-1), true},
		{col("int(11)", false), int64(-1), nil, false},
		{col("int(11)", false), nil, nil, true},
		{col("year", false), int64(1999), []byte("1999"), true},
		{col("int(11)", false), int64(-7), []byte("-7"), true},
		{col("int(11)", false), int64(-7), []byte("7"), false},
		{col("bigint(20) unsigned", false), uint64(7), []byte("8"), false},
		{col("varchar(10)", false), "ab", []byte("ab"), true},
		{col("text", false), "ab", []byte("abc"), false},
		{col("char(10)", false), "ab  ", []byte("ab"), true},
		{col("char(10)", false), "ab", []byte("ac"), false},
	} {
		if got := valueEqual(tc.c, tc.up, tc.down); got != tc.equal {
			t.Errorf("%s: %#v vs %#v: equal %v, want %v", tc.c.Type, tc.up, tc.down, got, tc.equal)
		}
	}
}

// TestValidatorValuesRoundTrip: the stored state keeps each value's Go type.
func TestValidatorValuesRoundTrip(t *testing.T) {
	in := []any{nil, int64(-3), uint64(1 << 63), float32(1.25), 2.5, "x", []byte{0, 0xff}}
	out := decodeValues(encodeValues(in))
	for i := range in {
		if !valueEqual(Column{Type: "blob", Binary: true}, in[i], out[i]) && in[i] != nil {
			t.Errorf("value %d: %#v came back as %#v", i, in[i], out[i])
		}
		if in[i] != nil && out[i] == nil || in[i] == nil && out[i] != nil {
			t.Errorf("value %d: %#v came back as %#v", i, in[i], out[i])
		}
	}
	if _, ok := out[3].(float32); !ok {
		t.Errorf("float32 came back as %T", out[3])
	}
}

// TestValidatorMemoryBound: held rows count against the budget until
// checked, and a newer image of a row replaces the older one.
func TestValidatorMemoryBound(t *testing.T) {
	v := newValidator(ValidationConfig{Mode: ValidationFull, RowErrorDelay: Duration(time.Minute), MemoryBytes: 1000}, "t", "s", nil, discardLogger())
	tb := &Table{Schema: "d", Name: "t", Columns: []Column{{Name: "id", Type: "int(11)"}, {Name: "v", Type: "varchar(100)"}}, PrimaryKey: []int{0}}
	v.add([]Change{{Kind: Insert, Table: tb, After: []any{int64(1), "a"}}})
	if v.full() {
		t.Fatal("full after one small row")
	}
	for i := 0; i < 5; i++ {
		v.add([]Change{{Kind: Update, Table: tb, Before: []any{int64(1), "a"}, After: []any{int64(1), string(make([]byte, 100))}}})
	}
	if st := v.status(); st.Pending != 1 {
		t.Fatalf("a row changed six times is held %d times", st.Pending)
	}
	for i := 2; i < 20; i++ {
		v.add([]Change{{Kind: Insert, Table: tb, After: []any{int64(i), string(make([]byte, 100))}}})
	}
	if !v.full() {
		t.Fatalf("not full with %d bytes held", v.status().PendingBytes)
	}
	// An update that changes the key: the old key must not exist.
	v.add([]Change{{Kind: Update, Table: tb, Before: []any{int64(2), "x"}, After: []any{int64(200), "x"}}})
	v.mu.Lock()
	old := v.rows[rowID(tb, []any{int64(2)})]
	v.mu.Unlock()
	if old == nil {
		t.Fatal("the old key's row is not held")
	}
	if img, kv, err := old.unpack(); err != nil || img != nil || !old.deleted || kv[0] != int64(2) {
		t.Fatalf("the old key's row: %+v: image %v key %v (%v)", old, img, kv, err)
	}
	v.dropTable("d", "t")
	if v.full() || v.status().Pending != 0 {
		t.Fatal("a DDL's table still held")
	}
}

// TestValidatorRowIDs: a row's id (and so the key hash its spilled and
// error rows are stored by) is the JSON of its key's encoded values,
// whether written directly (integer keys) or by encoding/json; sameKey
// agrees with comparing those.
func TestValidatorRowIDs(t *testing.T) {
	tbl := &Table{Schema: "s", Name: "t"}
	keys := [][]any{
		{int64(0)}, {int64(-42)}, {int64(math.MaxInt64)}, {int64(math.MinInt64)},
		{uint64(math.MaxUint64)}, {int64(1), uint64(2)}, {int64(1), "a<b&\"c"},
		{"x"}, {[]byte{0, 1}}, {nil}, {2.5}, {int64(1), nil},
	}
	for _, k := range keys {
		j, err := json.Marshal(encodeValues(k))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := rowID(tbl, k), "s\x00t\x00"+string(j); got != want {
			t.Errorf("rowID(%#v) = %q, want %q", k, got, want)
		}
		for _, o := range keys {
			jo, _ := json.Marshal(encodeValues(o))
			if got, want := sameKey(k, o), string(j) == string(jo); got != want {
				t.Errorf("sameKey(%#v, %#v) = %v, want %v", k, o, got, want)
			}
			if len(k) == len(o) {
				// The same keys inside rows, at the key's columns.
				idx := make([]int, len(k))
				a, b := []any{"pad"}, []any{"other"}
				for i := range k {
					idx[i] = len(a)
					a, b = append(a, k[i], "x"), append(b, o[i], "y")
				}
				if got, want := sameKeyAt(a, b, idx), sameKey(k, o); got != want {
					t.Errorf("sameKeyAt(%#v, %#v) = %v, want %v", a, b, got, want)
				}
				if got, want := rowIDAt(tbl, a, idx), rowID(tbl, k); got != want {
					t.Errorf("rowIDAt(%#v) = %q, want %q", a, got, want)
				}
			}
		}
	}
}

// TestValidatorFeed: the validator takes the syncer's changes as they come
// but holds a change (to be checked) only once the syncer has applied it
// (stored a checkpoint past it, or told the feed its workers applied
// past it), with the last checkpoint stored (its schema carried over when
// the syncer stored none); the feed stops when what waits in it, with what
// the validator holds, would pass its bound.
func TestValidatorFeed(t *testing.T) {
	ctx := context.Background()
	pos := func(o uint64) streamer.Position { return streamer.Position{Name: "b.000001", Offset: o} }
	tbl := &Table{Schema: "s", Name: "t", Columns: []Column{{Name: "id"}}, PrimaryKey: []int{0}}
	ch := func(id int64) []Change { return []Change{{Kind: Insert, Table: tbl, After: []any{id}}} }
	v := newValidator(ValidationConfig{Mode: ValidationFull, RowErrorDelay: Duration(time.Minute), MemoryBytes: 1 << 20}, "t", "s", nil, discardLogger())
	held := func() (ids []int64) {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, r := range v.rows {
			img, _, err := r.unpack()
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, img[0].(int64))
		}
		slices.Sort(ids)
		return ids
	}
	f := newValidatorFeed(1 << 20)
	f.used = &v.used
	f.begin(Checkpoint{Pos: pos(100), Schema: []byte("s1")})
	if !f.usable() {
		t.Fatal("begin stopped the feed")
	}
	items, cp, done, err := f.take(ctx)
	if err != nil || len(items) != 0 || cp.Pos.Compare(pos(100)) != 0 || string(cp.Schema) != "s1" {
		t.Fatalf("first take: %v %+v %v", items, cp, err)
	}
	f.rows(ch(1), pos(150))
	f.rows(ch(2), pos(250))
	f.ddl(&DDL{Schema: "s", Table: "t", Query: "CREATE INDEX i ON t (id)", Pos: pos(300)})
	f.saved(Checkpoint{Pos: pos(200)}) // covers the first change only
	items, cp, done, err = f.take(ctx)
	if err != nil || len(items) != 3 || items[0].changes[0].After[0] != int64(1) || items[2].ddl == nil || cp.Pos.Compare(pos(200)) != 0 || string(cp.Schema) != "s1" {
		t.Fatalf("take at 200: %+v %+v %v", items, cp, err)
	}
	staged, err := v.feedStep(ctx, f, nil, items, done)
	if err != nil || len(staged) != 2 || !slices.Equal(held(), []int64{1}) {
		t.Fatalf("after the checkpoint at 200: held %v, staged %+v (%v)", held(), staged, err)
	}
	if st := v.status(); st.Pending != 2 || st.PendingBytes != staged[0].bytes+v.heldBytes || staged[0].bytes == 0 {
		t.Fatalf("status with one row held and one staged: %+v", st)
	}
	// Nothing new queued or stored: take waits.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if items, _, _, err := f.take(wctx); err == nil {
		t.Fatalf("take with nothing new returned %+v", items)
	}
	cancel()
	f.saved(Checkpoint{Pos: pos(300), Schema: []byte("s2"), Epoch: 7})
	items, cp, done, err = f.take(ctx)
	if err != nil || len(items) != 0 || string(cp.Schema) != "s2" || cp.Epoch != 0 || cp.Pos.Compare(pos(300)) != 0 {
		t.Fatalf("take at 300: %+v %+v %v", items, cp, err)
	}
	staged, err = v.feedStep(ctx, f, staged, items, done)
	if err != nil || len(staged) != 0 || !slices.Equal(held(), []int64{1, 2}) {
		t.Fatalf("after the checkpoint at 300: held %v, staged %+v (%v)", held(), staged, err)
	}
	if st := v.status(); st.Pending != 2 || st.PendingBytes != v.heldBytes {
		t.Fatalf("status with two rows held: %+v", st)
	}
	// Between the checkpoints, what the workers have applied: the rows
	// before it are held, the checkpoint stays the one stored.
	f.rows(ch(3), pos(350))
	f.rows(ch(4), pos(450))
	f.applied(pos(400))
	items, cp, done, err = f.take(ctx)
	if err != nil || len(items) != 2 || cp.Pos.Compare(pos(300)) != 0 || done.Compare(pos(400)) != 0 {
		t.Fatalf("take with 400 applied: %+v %+v %v %v", items, cp, done, err)
	}
	staged, err = v.feedStep(ctx, f, staged, items, done)
	if err != nil || len(staged) != 1 || !slices.Equal(held(), []int64{1, 2, 3}) {
		t.Fatalf("after 400 applied: held %v, staged %+v (%v)", held(), staged, err)
	}
	f.applied(pos(380)) // behind: changes nothing
	f.saved(Checkpoint{Pos: pos(500)})
	items, cp, done, err = f.take(ctx)
	if err != nil || len(items) != 0 || cp.Pos.Compare(pos(500)) != 0 || done.Compare(pos(500)) != 0 {
		t.Fatalf("take at 500: %+v %+v %v %v", items, cp, done, err)
	}
	staged, err = v.feedStep(ctx, f, staged, items, done)
	if err != nil || len(staged) != 0 || !slices.Equal(held(), []int64{1, 2, 3, 4}) {
		t.Fatalf("after the checkpoint at 500: held %v, staged %+v (%v)", held(), staged, err)
	}
	// Over the bound: the feed stops and says so.
	small := newValidatorFeed(300)
	small.begin(Checkpoint{Pos: pos(100)})
	small.rows(ch(1), pos(150))
	small.rows(ch(2), pos(250))
	small.rows(ch(3), pos(350))
	small.saved(Checkpoint{Pos: pos(400)})
	if _, _, _, err := small.take(ctx); !errors.Is(err, errFeedOff) {
		t.Fatalf("take after an overflow: %v", err)
	}
	if !small.stopIf() {
		t.Fatal("the overflow is not reported")
	}
	// The rows the validator holds count against the same bound.
	var used atomic.Int64
	shared := newValidatorFeed(1000)
	shared.used = &used
	shared.begin(Checkpoint{Pos: pos(100)})
	shared.rows(ch(1), pos(150))
	used.Store(900)
	shared.rows(ch(2), pos(250))
	if _, _, _, err := shared.take(ctx); !errors.Is(err, errFeedOff) {
		t.Fatalf("take after an overflow with 900 bytes held: %v", err)
	}
}

// TestValidatorAddsIndex: the DDLs after which the rows held stay, and
// those that need no check when no row of their table is held.
func TestValidatorAddsIndex(t *testing.T) {
	for q, want := range map[string]bool{
		"CREATE INDEX k_1 ON sbtest1(k)":               true,
		"  create unique index u ON t (a)":             true,
		"/* generated */ CREATE INDEX i ON t (a)":      true,
		"CREATE TABLE t (id INT PRIMARY KEY)":          false,
		"ALTER TABLE t ADD INDEX (a)":                  false,
		"DROP INDEX k_1 ON sbtest1":                    false,
		"CREATE OR REPLACE TABLE t (id INT)":           false,
		"/* unterminated CREATE INDEX i ON t (a)":      false,
		"CREATE UNIQUE":                                false,
		"CREATE DEFINER=x VIEW v AS SELECT 1 AS INDEX": false,
	} {
		if got := addsIndex(q); got != want {
			t.Errorf("addsIndex(%q) = %v, want %v", q, got, want)
		}
	}
	for q, want := range map[string]bool{
		"CREATE TABLE sbtest2 (id INT PRIMARY KEY)":    true,
		"create or replace table t (id INT)":           true,
		"/* x */ CREATE TABLE IF NOT EXISTS t (a INT)": true,
		"CREATE INDEX i ON t (a)":                      false,
		"CREATE DATABASE d":                            false,
		"ALTER TABLE t ADD COLUMN b INT":               false,
		"CREATE OR REPLACE VIEW v AS SELECT 1":         false,
	} {
		if got := createsTable(q); got != want {
			t.Errorf("createsTable(%q) = %v, want %v", q, got, want)
		}
	}
}
