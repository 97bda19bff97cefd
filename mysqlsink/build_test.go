package mysqlsink_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
)

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

// TestPlan checks the statements built for each kind of table and mode.
func TestPlan(t *testing.T) {
	pk := &dmworker.Table{Schema: "d`b", Name: "t", Columns: []dmworker.Column{
		col("id", "bigint(20)", false), col("v", "varchar(8)", true),
		{Name: "g", Type: "bigint(20)", Generated: true, Nullable: true},
	}, PrimaryKey: []int{0}}
	comp := &dmworker.Table{Schema: "db", Name: "c", Columns: []dmworker.Column{
		col("a", "decimal(10,2)", false), col("b", "int(11)", false), col("j", "json", true),
	}, PrimaryKey: []int{0, 1}}
	uk := &dmworker.Table{Schema: "db", Name: "u", Columns: []dmworker.Column{
		col("a", "int(11)", true), col("b", "int(11)", false),
	}, UniqueKeys: [][]int{{0}, {1}}}
	none := &dmworker.Table{Schema: "db", Name: "n", Columns: []dmworker.Column{
		col("a", "int(11)", true), col("j", "json", true),
	}}
	tests := []struct {
		name     string
		changes  []dmworker.Change
		safe     bool
		jsonCast bool
		want     []string
	}{
		{
			name: "multi-row insert skips generated columns",
			changes: []dmworker.Change{
				ins(pk, int64(1), "a", int64(9)), ins(pk, int64(2), nil, int64(9)), ins(pk, int64(3), "c", int64(9)),
			},
			want: []string{"INSERT INTO `d``b`.`t` (`id`,`v`) VALUES (?,?),(?,?),(?,?)"},
		},
		{
			name: "updates that keep their key share an UPDATE ... CASE",
			changes: []dmworker.Change{
				upd(pk, r(int64(1), "a", nil), r(int64(1), "b", nil)),
				upd(pk, r(int64(2), "a", nil), r(int64(2), "c", nil)),
				upd(pk, r(int64(1), "b", nil), r(int64(1), "d", nil)),
				upd(comp, r("1.00", int64(1), nil), r("1.00", int64(1), "{}")),
				upd(comp, r("2.00", int64(1), nil), r("2.00", int64(1), "[]")),
			},
			jsonCast: true,
			want: []string{
				"UPDATE `d``b`.`t` SET `v`=CASE WHEN `id`=? THEN ? WHEN `id`=? THEN ? END WHERE `id` IN (?,?)",
				"UPDATE `db`.`c` SET `j`=CASE WHEN (`a`,`b`)=(CAST(? AS DECIMAL(10,2)),?) THEN CAST(? AS JSON) " +
					"WHEN (`a`,`b`)=(CAST(? AS DECIMAL(10,2)),?) THEN CAST(? AS JSON) END " +
					"WHERE (`a`,`b`) IN ((CAST(? AS DECIMAL(10,2)),?),(CAST(? AS DECIMAL(10,2)),?))",
			},
		},
		{
			name: "updates that move a unique value stay one by one",
			changes: []dmworker.Change{
				upd(uk, r(int64(1), int64(1)), r(int64(1), int64(9))),
				upd(uk, r(int64(2), int64(2)), r(int64(2), int64(1))),
			},
			want: []string{
				"UPDATE `db`.`u` SET `a`=?,`b`=? WHERE `a`=?",
				"UPDATE `db`.`u` SET `a`=?,`b`=? WHERE `a`=?",
			},
		},
		{
			name:    "rows per statement",
			changes: []dmworker.Change{ins(pk, int64(1), "a", nil), ins(pk, int64(2), "b", nil), ins(pk, int64(3), "c", nil)},
			want: []string{
				"INSERT INTO `d``b`.`t` (`id`,`v`) VALUES (?,?),(?,?)",
				"INSERT INTO `d``b`.`t` (`id`,`v`) VALUES (?,?)",
			},
		},
		{
			name: "kinds and tables split statements",
			changes: []dmworker.Change{
				ins(pk, int64(1), "a", nil), ins(comp, "1.00", int64(1), nil), ins(pk, int64(2), "b", nil),
				del(pk, int64(1), "a", nil), del(pk, int64(2), "b", nil),
				upd(pk, r(int64(3), "c", nil), r(int64(4), "d", nil)),
				del(comp, "1.00", int64(1), nil), del(comp, "2.50", int64(7), "{}"),
			},
			want: []string{
				"INSERT INTO `d``b`.`t` (`id`,`v`) VALUES (?,?)",
				"INSERT INTO `db`.`c` (`a`,`b`,`j`) VALUES (?,?,?)",
				"INSERT INTO `d``b`.`t` (`id`,`v`) VALUES (?,?)",
				"DELETE FROM `d``b`.`t` WHERE `id` IN (?,?)",
				"UPDATE `d``b`.`t` SET `id`=?,`v`=? WHERE `id`=?",
				"DELETE FROM `db`.`c` WHERE (`a`,`b`) IN ((CAST(? AS DECIMAL(10,2)),?),(CAST(? AS DECIMAL(10,2)),?))",
			},
		},
		{
			name: "safe mode",
			safe: true,
			changes: []dmworker.Change{
				ins(pk, int64(1), "a", nil), ins(pk, int64(2), "b", nil),
				upd(pk, r(int64(1), "a", nil), r(int64(1), "x", nil)),
				upd(pk, r(int64(2), "b", nil), r(int64(2), "y", nil)),
				upd(pk, r(int64(2), "y", nil), r(int64(5), "y", nil)),
				del(pk, int64(5), "y", nil),
			},
			want: []string{
				"REPLACE INTO `d``b`.`t` (`id`,`v`) VALUES (?,?),(?,?)",
				"DELETE FROM `d``b`.`t` WHERE `id` IN (?,?)",
				"REPLACE INTO `d``b`.`t` (`id`,`v`) VALUES (?,?),(?,?)",
				"DELETE FROM `d``b`.`t` WHERE `id`=?",
				"REPLACE INTO `d``b`.`t` (`id`,`v`) VALUES (?,?)",
				"DELETE FROM `d``b`.`t` WHERE `id`=?",
			},
		},
		{
			name: "unique keys: the first without NULL in the row",
			changes: []dmworker.Change{
				del(uk, int64(1), int64(10)), del(uk, int64(2), int64(20)), del(uk, nil, int64(30)),
				upd(uk, r(nil, int64(40)), r(int64(4), int64(40))),
			},
			want: []string{
				"DELETE FROM `db`.`u` WHERE `a` IN (?,?)",
				"DELETE FROM `db`.`u` WHERE `b`=?",
				"UPDATE `db`.`u` SET `a`=?,`b`=? WHERE `b`=?",
			},
		},
		{
			name: "no key: NULL-safe match of every column, one row",
			changes: []dmworker.Change{
				ins(none, int64(1), nil), ins(none, int64(1), nil),
				del(none, int64(1), nil), del(none, nil, "[1]"),
				upd(none, r(int64(2), "{}"), r(int64(3), "{}")),
			},
			jsonCast: true,
			want: []string{
				"INSERT INTO `db`.`n` (`a`,`j`) VALUES (?,?),(?,?)",
				"DELETE FROM `db`.`n` WHERE `a`<=>? AND `j` IS NULL LIMIT 1",
				"DELETE FROM `db`.`n` WHERE `a` IS NULL AND `j`<=>CAST(? AS JSON) LIMIT 1",
				"UPDATE `db`.`n` SET `a`=?,`j`=? WHERE `a`<=>? AND `j`<=>CAST(? AS JSON) LIMIT 1",
			},
		},
		{
			name: "no key, safe mode: replace one equal row",
			safe: true,
			changes: []dmworker.Change{
				ins(none, int64(1), nil),
				upd(none, r(int64(1), nil), r(int64(2), nil)),
			},
			want: []string{
				"DELETE FROM `db`.`n` WHERE `a`<=>? AND `j` IS NULL LIMIT 1",
				"INSERT INTO `db`.`n` (`a`,`j`) VALUES (?,?)",
				"DELETE FROM `db`.`n` WHERE `a`<=>? AND `j` IS NULL LIMIT 1",
				"DELETE FROM `db`.`n` WHERE `a`<=>? AND `j` IS NULL LIMIT 1",
				"INSERT INTO `db`.`n` (`a`,`j`) VALUES (?,?)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			maxRows := 256
			if tc.name == "rows per statement" {
				maxRows = 2
			}
			got, _, err := mysqlsink.PlanSQL(tc.changes, tc.safe, maxRows, tc.jsonCast)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("statements:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestPlanArgs(t *testing.T) {
	tbl := &dmworker.Table{Schema: "db", Name: "t", Columns: []dmworker.Column{
		col("id", "bigint(20)", false), col("b", "blob", true),
	}, PrimaryKey: []int{0}}
	_, args, err := mysqlsink.PlanSQL([]dmworker.Change{
		ins(tbl, int64(1), []byte(nil)), ins(tbl, int64(2), nil),
	}, false, 256, false)
	if err != nil {
		t.Fatal(err)
	}
	// A nil []byte is an empty value; only a nil interface is NULL.
	want := []any{int64(1), []byte{}, int64(2), nil}
	if !reflect.DeepEqual(args[0], want) {
		t.Fatalf("args %#v, want %#v", args[0], want)
	}
}

func TestPlanPlaceholderLimit(t *testing.T) {
	var cols []dmworker.Column
	for i := range 300 {
		cols = append(cols, col("c"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "int(11)", true))
	}
	tbl := &dmworker.Table{Schema: "db", Name: "wide", Columns: cols}
	var changes []dmworker.Change
	for range 256 {
		changes = append(changes, ins(tbl, make([]any, 300)...))
	}
	stmts, args, err := mysqlsink.PlanSQL(changes, false, 256, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 2 || len(args[0]) != 218*300 || len(args[1]) != 38*300 {
		t.Fatalf("%d statements, args %d and %d; want 218 and 38 rows", len(stmts), len(args[0]), len(args[len(args)-1]))
	}
}

func TestPlanRejectsBadChanges(t *testing.T) {
	tbl := &dmworker.Table{Schema: "db", Name: "t", Columns: []dmworker.Column{col("id", "int(11)", false)}, PrimaryKey: []int{0}}
	for _, c := range []dmworker.Change{
		{Kind: dmworker.Insert, After: r(int64(1))},
		{Kind: dmworker.Insert, Table: tbl, After: r(int64(1), int64(2))},
		{Kind: dmworker.Update, Table: tbl, After: r(int64(1))},
		{Kind: dmworker.Delete, Table: tbl},
		{Kind: 0, Table: tbl, After: r(int64(1))},
		{Kind: dmworker.Insert, Table: &dmworker.Table{Name: "t", Columns: tbl.Columns, PrimaryKey: []int{3}}, After: r(int64(1))},
	} {
		if _, _, err := mysqlsink.PlanSQL([]dmworker.Change{c}, false, 256, false); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	// Through Apply, the error wraps ErrInvalidBatch and nothing is sent
	// (the sink's pool points nowhere).
	s := newSink(t, openNowhere(t))
	err := s.Apply(t.Context(), &dmworker.Batch{Changes: []dmworker.Change{{Kind: dmworker.Delete, Table: tbl}}})
	if !errors.Is(err, mysqlsink.ErrInvalidBatch) || dmworker.IsRetryable(err) {
		t.Fatalf("got %v, want ErrInvalidBatch, not retryable", err)
	}
}
