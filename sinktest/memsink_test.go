package sinktest_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/sinktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMemSinkConformance(t *testing.T) {
	sinktest.RunSinkConformance(t, sinktest.Harness{
		New: func(t *testing.T) dmworker.Sink { return sinktest.NewMemSink() },
		Rows: func(t *testing.T, s dmworker.Sink, schema, table string) [][]any {
			return s.(*sinktest.MemSink).Rows(schema, table)
		},
	})
}

var kv = &dmworker.Table{
	Schema: "db", Name: "kv",
	Columns: []dmworker.Column{
		{Name: "k", Type: "bigint(20)"},
		{Name: "v", Type: "varchar(16)", Nullable: true},
	},
	PrimaryKey: []int{0},
}

func insert(k int64, v string) dmworker.Change {
	return dmworker.Change{Kind: dmworker.Insert, Table: kv, After: []any{k, v}}
}

func TestMemSinkDuplicateKey(t *testing.T) {
	s := sinktest.NewMemSink()
	ctx := t.Context()
	if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{insert(1, "a")}}); err != nil {
		t.Fatal(err)
	}
	err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{insert(2, "b"), insert(1, "again")}})
	if !errors.Is(err, sinktest.ErrDuplicateKey) || dmworker.IsRetryable(err) {
		t.Fatalf("duplicate insert: %v", err)
	}
	if got := s.Rows("db", "kv"); !reflect.DeepEqual(got, [][]any{{int64(1), "a"}}) {
		t.Fatalf("rows after a failed batch: %v", got)
	}
	if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{insert(1, "again")}, SafeMode: true}); err != nil {
		t.Fatal(err)
	}
	if got := s.Rows("db", "kv"); !reflect.DeepEqual(got, [][]any{{int64(1), "again"}}) {
		t.Fatalf("rows after a safe-mode insert: %v", got)
	}
}

func TestMemSinkBadChanges(t *testing.T) {
	s := sinktest.NewMemSink()
	for _, c := range []dmworker.Change{
		{Kind: dmworker.Insert, Table: kv, After: []any{int64(1)}},                 // short row
		{Kind: dmworker.Insert, Table: kv, After: []any{uint64(1), "a"}},           // wrong type
		{Kind: dmworker.Insert, Table: kv, After: []any{int64(1), []byte("a")}},    // wrong type
		{Kind: dmworker.Insert, Table: kv, After: []any{int(1), "a"}},              // not a contract type
		{Kind: dmworker.Update, Table: kv, After: []any{int64(1), "a"}},            // no before image
		{Kind: dmworker.Delete, Table: kv, After: []any{int64(1), "a"}},            // after image on delete
		{Kind: 9, Table: kv, After: []any{int64(1), "a"}},                          // unknown kind
		{Kind: dmworker.Insert, After: []any{int64(1), "a"}},                       // no table
		{Kind: dmworker.Insert, Table: &dmworker.Table{Name: "x"}, After: []any{}}, // no columns
	} {
		err := s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{insert(5, "ok"), c}})
		if !errors.Is(err, sinktest.ErrBadChange) {
			t.Errorf("%+v: got %v, want ErrBadChange", c, err)
		}
	}
	if got := s.Tables(); len(got) != 0 {
		t.Errorf("tables after failed batches: %v", got)
	}
}

func TestMemSinkDDL(t *testing.T) {
	s := sinktest.NewMemSink()
	ctx := t.Context()
	tbl := func(schema, name string) *dmworker.Table {
		return &dmworker.Table{Schema: schema, Name: name, Columns: kv.Columns, PrimaryKey: []int{0}}
	}
	fill := func() {
		t.Helper()
		var changes []dmworker.Change
		for _, n := range [][2]string{{"a", "t1"}, {"a", "t2"}, {"a", "t`3"}, {"b", "t1"}, {"b", "t 2"}} {
			changes = append(changes, dmworker.Change{Kind: dmworker.Insert, Table: tbl(n[0], n[1]), After: []any{int64(1), "x"}})
		}
		if err := s.Apply(ctx, &dmworker.Batch{Changes: changes}); err != nil {
			t.Fatal(err)
		}
	}
	fill()
	all := []string{"a.t1", "a.t2", "a.t`3", "b.t 2", "b.t1"}
	if got := s.Tables(); !reflect.DeepEqual(got, all) {
		t.Fatalf("tables: %v", got)
	}
	for _, tc := range []struct {
		schema, query string
		tables        []string
		emptied       string
	}{
		{"a", "ALTER TABLE t1 ADD COLUMN z INT", all, ""},
		{"a", "/* comment */ drop table if exists t1, `b`.`t 2`;", []string{"a.t2", "a.t`3", "b.t1"}, ""},
		{"b", "DROP TABLE `a`.`t``3` -- trailing comment", []string{"a.t2", "b.t1"}, ""},
		{"a", "truncate t2", []string{"a.t2", "b.t1"}, "a.t2"},
		{"", "TRUNCATE TABLE b.t1", []string{"a.t2", "b.t1"}, "b.t1"},
		{"", "DROP SCHEMA IF EXISTS `a`", []string{"b.t1"}, ""},
		{"", "DROP DATABASE b", []string{}, ""},
		{"a", "DROP TABLE t1 garbage", []string{}, ""},
	} {
		if err := s.ExecDDL(ctx, &dmworker.DDL{Schema: tc.schema, Query: tc.query}); err != nil {
			t.Fatal(err)
		}
		if got := s.Tables(); !reflect.DeepEqual(got, tc.tables) {
			t.Errorf("after %q: tables %v, want %v", tc.query, got, tc.tables)
		}
		if tc.emptied != "" {
			if rows := s.Rows(tc.emptied[:1], tc.emptied[2:]); len(rows) != 0 {
				t.Errorf("after %q: %s has %d rows", tc.query, tc.emptied, len(rows))
			}
		}
	}
	ddls := s.DDLs()
	if len(ddls) != 8 || ddls[0].Query != "ALTER TABLE t1 ADD COLUMN z INT" || ddls[7].Query != "DROP TABLE t1 garbage" {
		t.Errorf("DDLs not recorded in order: %v", ddls)
	}
}

func TestMemSinkLayoutChange(t *testing.T) {
	s := sinktest.NewMemSink()
	ctx := t.Context()
	if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{insert(1, "a")}}); err != nil {
		t.Fatal(err)
	}
	v2 := &dmworker.Table{Schema: "db", Name: "kv", Columns: []dmworker.Column{
		{Name: "n", Type: "int(11)", Nullable: true},
		{Name: "k", Type: "bigint(20)"},
	}, PrimaryKey: []int{1}}
	err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{
		{Kind: dmworker.Update, Table: v2, Before: []any{nil, int64(1)}, After: []any{int64(5), int64(1)}},
		{Kind: dmworker.Insert, Table: v2, After: []any{nil, int64(2)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{nil, int64(2)}, {int64(5), int64(1)}}
	if got := s.Rows("db", "kv"); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows after a layout change: %v, want %v", got, want)
	}
}

func TestMemSinkUnmatchedAndFailNext(t *testing.T) {
	s := sinktest.NewMemSink()
	ctx := t.Context()
	del := dmworker.Change{Kind: dmworker.Delete, Table: kv, Before: []any{int64(7), "x"}}
	if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{del}, SafeMode: true}); err != nil {
		t.Fatal(err)
	}
	if got := s.Unmatched(); len(got) != 0 {
		t.Fatalf("safe-mode delete counted as unmatched: %v", got)
	}
	if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{del}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Unmatched(); len(got) != 1 {
		t.Fatalf("unmatched: %v", got)
	}

	boom := dmworker.Retryable(errors.New("boom"))
	s.FailNext(boom)
	s.FailNext(errors.New("second"))
	if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{insert(1, "a")}}); err != boom {
		t.Fatalf("first call: %v", err)
	}
	if err := s.ExecDDL(ctx, &dmworker.DDL{Query: "DROP DATABASE db"}); err == nil || err.Error() != "second" {
		t.Fatalf("second call: %v", err)
	}
	if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{insert(1, "a")}}); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if len(s.DDLs()) != 0 || len(s.Rows("db", "kv")) != 1 {
		t.Fatalf("failed calls had an effect: %v, %v", s.DDLs(), s.Rows("db", "kv"))
	}
}

func TestMemSinkConcurrent(t *testing.T) {
	s := sinktest.NewMemSink()
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				k := int64(w*1000 + i)
				cp := dmworker.Checkpoint{Task: "t", Source: fmt.Sprint(w), Epoch: int64(i)}
				if err := s.Apply(ctx, &dmworker.Batch{Changes: []dmworker.Change{insert(k, "v")}, Checkpoint: &cp}); err != nil {
					t.Error(err)
					return
				}
				_ = s.Rows("db", "kv")
				_ = s.Tables()
			}
		})
	}
	wg.Wait()
	if n := len(s.Rows("db", "kv")); n != 400 {
		t.Fatalf("%d rows, want 400", n)
	}
}

func TestSortRowsAndCompareValues(t *testing.T) {
	rows := [][]any{
		{[]byte("b")}, {"b"}, {float64(1)}, {float32(1)}, {uint64(1)}, {int64(2)}, {int64(-1)}, {nil}, {"a"}, {[]byte("a")},
	}
	sinktest.SortRows(rows)
	want := [][]any{
		{nil}, {int64(-1)}, {int64(2)}, {uint64(1)}, {float32(1)}, {float64(1)}, {"a"}, {"b"}, {[]byte("a")}, {[]byte("b")},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("sorted: %v", rows)
	}
	if sinktest.CompareValues([]byte{}, []byte(nil)) != 0 {
		t.Error("empty and nil byte slices differ")
	}
}

// The in-memory sink keeps what it is given; a test reads it back.
func ExampleMemSink() {
	s := sinktest.NewMemSink()
	users := &dmworker.Table{
		Schema: "app", Name: "users",
		Columns:    []dmworker.Column{{Name: "id", Type: "bigint(20)"}, {Name: "name", Type: "varchar(64)"}},
		PrimaryKey: []int{0},
	}
	err := s.Apply(context.Background(), &dmworker.Batch{Changes: []dmworker.Change{
		{Kind: dmworker.Insert, Table: users, After: []any{int64(2), "bob"}},
		{Kind: dmworker.Insert, Table: users, After: []any{int64(1), "ann"}},
		{Kind: dmworker.Update, Table: users, Before: []any{int64(2), "bob"}, After: []any{int64(2), "bo"}},
	}})
	fmt.Println(err)
	fmt.Println(s.Tables())
	fmt.Println(s.Rows("app", "users"))
	// Output:
	// <nil>
	// [app.users]
	// [[1 ann] [2 bo]]
}
