package mysqlsink_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/dmworker/dmworker"
)

// TestApplyBulk loads rows with ApplyBulk and the same rows with Apply into
// a twin table: the tables read back equal. A row whose key is taken fails
// the load with nothing applied and an error that is neither retryable nor
// ErrBulkUnsupported (as Apply's duplicate key); batches ApplyBulk does not
// take (safe mode, two tables, an update) are ErrBulkUnsupported.
func TestApplyBulk(t *testing.T) {
	m := server(t, 373)
	db := openDB(t, m, nil)
	s := newSink(t, db)
	ctx := context.Background()
	mk := func(name string) *dmworker.Table {
		tbl := &dmworker.Table{Schema: "bulk", Name: name, PrimaryKey: []int{0}, Columns: []dmworker.Column{
			col("id", "int", false), col("s", "varchar(64)", true), {Name: "b", Type: "varbinary(16)", Nullable: true, Binary: true},
			col("f", "float", true), col("d", "double", true), col("u", "bigint(20) unsigned", true),
			col("bt", "bit(12)", true), col("y", "year(4)", true), col("dt", "datetime(6)", true), col("dec", "decimal(30,10)", true),
			col("e", "enum('a','b c','🥝')", true), {Name: "g", Type: "int", Nullable: true, Generated: true},
		}}
		createTable(t, db, tbl)
		exec(t, db, "ALTER TABLE "+quote(tbl.Schema)+"."+quote(tbl.Name)+" DROP COLUMN g, ADD COLUMN g INT AS (id * 2) VIRTUAL")
		return tbl
	}
	bulk, twin := mk("bulk"), mk("twin")
	rows := [][]any{
		{int64(1), "tab\tnew\nline\\", []byte{0, '\t', '\n', '\\', 'N'}, float32(1.5), 0.1, uint64(18446744073709551615), uint64(0xABC), int64(0), "2024-02-29 23:59:59.000001", "-12345678901234567890.0123456789", "🥝", nil},
		{int64(2), `\N`, []byte{}, float32(-3.4028235e38), -1.7976931348623157e308, uint64(0), uint64(0), int64(2155), "0000-00-00 00:00:00.000000", "0.0000000000", "b c", nil},
		{int64(3), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
		{int64(4), "", []byte(`\\`), float32(1e-45), 5e-324, uint64(1), uint64(1), int64(1901), "1000-01-01 00:00:00.000000", "1", "a", nil},
	}
	batch := func(tbl *dmworker.Table, rs [][]any) *dmworker.Batch {
		b := &dmworker.Batch{}
		for _, r := range rs {
			b.Changes = append(b.Changes, dmworker.Change{Kind: dmworker.Insert, Table: tbl, After: r})
		}
		return b
	}
	if err := s.ApplyBulk(ctx, batch(bulk, rows)); err != nil {
		t.Fatal(err)
	}
	apply(t, s, batch(twin, rows))
	got, want := readRows(t, db, "bulk", "bulk"), readRows(t, db, "bulk", "twin")
	if len(got) != len(rows) || !reflect.DeepEqual(got, want) {
		t.Fatalf("bulk loaded:\n%v\napplied:\n%v", got, want)
	}

	// A taken key: nothing of the batch goes in.
	err := s.ApplyBulk(ctx, batch(bulk, [][]any{
		{int64(5), "new", nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
		{int64(1), "taken", nil, nil, nil, nil, nil, nil, nil, nil, nil, nil},
	}))
	if err == nil || errors.Is(err, dmworker.ErrBulkUnsupported) || dmworker.IsRetryable(err) {
		t.Fatalf("duplicate key: %v", err)
	}
	if n := len(readRows(t, db, "bulk", "bulk")); n != len(rows) {
		t.Fatalf("%d rows after a failed load, want %d", n, len(rows))
	}

	// Batches it does not take.
	one := []any{int64(9), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}
	safe := batch(bulk, [][]any{one})
	safe.SafeMode = true
	two := batch(bulk, [][]any{one})
	two.Changes = append(two.Changes, batch(twin, [][]any{one}).Changes...)
	upd := &dmworker.Batch{Changes: []dmworker.Change{{Kind: dmworker.Update, Table: bulk, Before: rows[2], After: one}}}
	for i, b := range []*dmworker.Batch{safe, two, upd} {
		if err := s.ApplyBulk(ctx, b); !errors.Is(err, dmworker.ErrBulkUnsupported) {
			t.Errorf("batch %d: %v, want ErrBulkUnsupported", i, err)
		}
	}
	if n := len(readRows(t, db, "bulk", "bulk")); n != len(rows) {
		t.Fatalf("%d rows after refused batches, want %d", n, len(rows))
	}

	// A value the column stores other than as sent (a warning): refused,
	// nothing applied.
	err = s.ApplyBulk(ctx, batch(bulk, [][]any{{int64(6), fmt.Sprintf("%070d", 0), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}}))
	if !errors.Is(err, dmworker.ErrBulkUnsupported) {
		t.Fatalf("truncated value: %v, want ErrBulkUnsupported", err)
	}
	if n := len(readRows(t, db, "bulk", "bulk")); n != len(rows) {
		t.Fatalf("%d rows after a refused load, want %d", n, len(rows))
	}
}
