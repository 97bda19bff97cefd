package mysqlsink_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
)

// TestShowCreateTable: the sink is a dmworker.TableDefiner: a table's
// CREATE TABLE as the server prints it, "" for a table or a database that
// does not exist, and an *Error naming the table for a server refusing.
func TestShowCreateTable(t *testing.T) {
	m := server(t, 1821)
	db := openDB(t, m, nil)
	var td dmworker.TableDefiner = newSink(t, db)
	exec(t, db, "CREATE DATABASE merged")
	exec(t, db, "CREATE TABLE merged.orders (id BIGINT PRIMARY KEY, memo VARCHAR(20) DEFAULT 'x', KEY idx_memo (memo))")
	ctx := context.Background()
	got, err := td.ShowCreateTable(ctx, "merged", "orders")
	if err != nil || !strings.HasPrefix(got, "CREATE TABLE `orders`") || !strings.Contains(got, "`memo` varchar(20) DEFAULT 'x'") || !strings.Contains(got, "KEY `idx_memo`") {
		t.Fatalf("ShowCreateTable: %q, %v", got, err)
	}
	for _, n := range [][2]string{{"merged", "nosuch"}, {"nosuch", "orders"}} {
		if got, err := td.ShowCreateTable(ctx, n[0], n[1]); got != "" || err != nil {
			t.Fatalf("%s.%s: %q, %v, want \"\" and no error", n[0], n[1], got, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var me *mysqlsink.Error
	if _, err := td.ShowCreateTable(cctx, "merged", "orders"); !errors.As(err, &me) || me.Op != "schema" || me.Table != "merged.orders" || !errors.Is(err, context.Canceled) {
		t.Fatalf("with a done context: %v, want a *mysqlsink.Error", err)
	}
}
