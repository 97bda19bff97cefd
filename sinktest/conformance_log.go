package sinktest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dmworker/dmworker"
)

// The subtests for sinks with the Log capability: append-only sinks, which
// keep the changes themselves rather than tables.

// logged returns the changes the sink has logged for the subtest's schema.
func (e *env) logged() []dmworker.Change {
	e.t.Helper()
	var out []dmworker.Change
	for _, c := range e.h.Log(e.t, e.s) {
		if c.Table != nil && c.Table.Schema == e.schema {
			out = append(out, c)
		}
	}
	return out
}

// wantLog checks that the sink has logged exactly want, in order.
func (e *env) wantLog(want ...dmworker.Change) {
	e.t.Helper()
	got := e.logged()
	var b strings.Builder
	for i := range max(len(got), len(want)) {
		if b.Len() > 2000 {
			b.WriteString("...\n")
			break
		}
		switch {
		case i >= len(got):
			fmt.Fprintf(&b, "change %d: missing, want %s\n", i, fmtChange(want[i]))
		case i >= len(want):
			fmt.Fprintf(&b, "change %d: got %s, want none\n", i, fmtChange(got[i]))
		default:
			if d := diffChange(got[i], want[i]); d != "" {
				fmt.Fprintf(&b, "change %d: %s\n", i, d)
			}
		}
	}
	if b.Len() > 0 {
		e.t.Fatalf("log of %s (%d changes, want %d):\n%s", e.schema, len(got), len(want), b.String())
	}
}

func fmtChange(c dmworker.Change) string {
	return fmt.Sprintf("%s before %s after %s txn %s #%d", c, formatRow(c.Before), formatRow(c.After), c.TxnPos, c.TxnIndex)
}

// diffChange describes how got differs from want, "" when it does not.
func diffChange(got, want dmworker.Change) string {
	switch {
	case got.Kind != want.Kind:
		return fmt.Sprintf("kind %s, want %s", got.Kind, want.Kind)
	case got.Table == nil || got.Table.Schema != want.Table.Schema || got.Table.Name != want.Table.Name:
		return fmt.Sprintf("got %s, want %s", got, want)
	case len(got.Table.Columns) != len(want.Table.Columns):
		return fmt.Sprintf("table with %d columns, want %d", len(got.Table.Columns), len(want.Table.Columns))
	case !got.TxnPos.Equal(want.TxnPos) || got.TxnIndex != want.TxnIndex:
		return fmt.Sprintf("transaction %s #%d, want %s #%d", got.TxnPos, got.TxnIndex, want.TxnPos, want.TxnIndex)
	}
	for i, c := range want.Table.Columns {
		if got.Table.Columns[i].Name != c.Name {
			return fmt.Sprintf("column %d named %q, want %q", i, got.Table.Columns[i].Name, c.Name)
		}
	}
	for _, img := range []struct {
		name      string
		got, want []any
	}{{"before", got.Before, want.Before}, {"after", got.After, want.After}} {
		if (img.got == nil) != (img.want == nil) {
			return fmt.Sprintf("%s image %s, want %s", img.name, formatRow(img.got), formatRow(img.want))
		}
		if img.want == nil {
			continue
		}
		if d := diffRows(want.Table, [][]any{img.want}, [][]any{img.got}); d != "" {
			return fmt.Sprintf("%s image: %s", img.name, strings.TrimSpace(d))
		}
	}
	return ""
}

// withTxn sets the transaction position of changes: each batch one
// transaction, numbered from n.
func (e *env) withTxn(n int, changes ...dmworker.Change) []dmworker.Change {
	pos := mustPos(e.t, fmt.Sprintf("mysql-bin.000001:%d mariadb-gtid=0-1-%d", 1000+100*n, n))
	for i := range changes {
		changes[i].TxnPos, changes[i].TxnIndex = pos, i
	}
	return changes
}

func testLogOrder(e *env) {
	tbl := e.table("t", []int{0}, nil,
		col("id", "bigint(20)", false), col("name", "varchar(64)", true), col("n", "int(11)", true))
	other := e.table("u", nil, nil, col("v", "varchar(8)", true))
	b1 := e.withTxn(1,
		ins(tbl, int64(1), "a", int64(10)),
		ins(other, "x"),
		ins(tbl, int64(2), "b", nil),
	)
	e.apply(batch(b1...))
	e.wantLog(b1...)
	b2 := e.withTxn(2,
		upd(tbl, r(int64(2), "b", nil), r(int64(2), "bb", int64(21))),
		del(tbl, int64(1), "a", int64(10)),
		ins(tbl, int64(1), "a", int64(10)),
	)
	e.apply(batch(b2...))
	b3 := e.withTxn(3, upd(tbl, r(int64(1), "a", int64(10)), r(int64(1), "a", nil)))
	e.apply(safeBatch(b3...))
	var all []dmworker.Change
	all = append(append(append(all, b1...), b2...), b3...)
	e.wantLog(all...)
	e.apply(batch())
	e.wantLog(all...)
}

func testLogValueTypes(e *env) {
	tbl := e.table("t", []int{0}, nil, typesColumns()...)
	rows := typesRows()
	var changes []dmworker.Change
	for _, row := range rows {
		changes = append(changes, ins(tbl, row...))
	}
	changes = append(changes, upd(tbl, rows[0], rows[1]), del(tbl, rows[2]...))
	changes = e.withTxn(1, changes...)
	e.apply(batch(changes...))
	e.wantLog(changes...)
}

func testLogCancelledContext(e *env) {
	tbl := e.table("t", []int{0}, nil, col("id", "bigint(20)", false))
	first := e.withTxn(1, ins(tbl, int64(1)))
	e.apply(batch(first...))
	ctx, cancel := context.WithCancel(e.t.Context())
	cancel()
	if err := e.s.Apply(ctx, batch(e.withTxn(2, ins(tbl, int64(2)), del(tbl, int64(1)))...)); err == nil {
		e.t.Errorf("Apply with a cancelled context: no error")
	}
	e.wantLog(first...)
}

func testLogStaleEpoch(e *env) {
	cs := e.checkpointSink()
	tbl := e.table("t", []int{0}, nil, col("id", "bigint(20)", false))
	cp5 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:500"), Epoch: 5}
	first := e.withTxn(1, ins(tbl, int64(1)))
	e.apply(&dmworker.Batch{Changes: first, Checkpoint: &cp5})
	cp4 := dmworker.Checkpoint{Task: e.task, Source: "src", Pos: mustPos(e.t, "mysql-bin.000001:900"), Epoch: 4}
	err := e.s.Apply(e.t.Context(), &dmworker.Batch{Changes: e.withTxn(2, ins(tbl, int64(2))), Checkpoint: &cp4})
	if !errors.Is(err, dmworker.ErrStaleEpoch) {
		e.t.Fatalf("batch from an older epoch: got %v, want dmworker.ErrStaleEpoch", err)
	}
	e.wantLog(first...)
	e.wantCheckpoint(cs, "src", &cp5)
}
