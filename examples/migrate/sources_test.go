package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

// TestMigrateSeveralSources: three upstreams given as -from NAME=..., their
// shard tables routed into one downstream table, in pessimistic shard mode:
// rows written on every shard and a column added on each at its own moment
// reach the downstream, which ends with the union of the shards' rows and
// the column once; migrate exits 0 once all are idle.
func TestMigrateSeveralSources(t *testing.T) {
	var ups []*testserver.MariaDB
	for i := range 3 {
		ups = append(ups, testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: uint32(520 + i)}))
	}
	down := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 523})
	args := []string{"-to", fmt.Sprintf("%s:%s@%s", down.User, down.Password, down.Addr()),
		"-task", "shards", "-route", "shop.orders_*:merged.orders,shop:merged", "-shard-mode", "pessimistic",
		"-exit-when-idle", "2s", "-workers", "1"}
	for i, up := range ups {
		args = append(args, "-from", fmt.Sprintf("s%d=%s:%s@%s", i+1, up.User, up.Password, up.Addr()))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &stdout, &stderr) }()
	for deadline := time.Now().Add(time.Minute); strings.Count(stdout.String(), "pos=") < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("no progress after a minute:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, up := range ups {
		up.Exec(t, "CREATE DATABASE shop")
		for _, tb := range []string{"orders_01", "orders_02"} {
			up.Exec(t, "CREATE TABLE shop."+tb+" (id INT PRIMARY KEY, v VARCHAR(20))")
			for j := range 20 {
				up.Exec(t, "INSERT INTO shop."+tb+" VALUES (?, ?)", (i*10+len(tb))*1000+j+100*int(tb[len(tb)-1]-'0'), tb)
			}
		}
	}
	for _, tb := range []string{"orders_01", "orders_02"} {
		for i, up := range ups {
			up.Exec(t, "ALTER TABLE shop."+tb+" ADD COLUMN region VARCHAR(8) NOT NULL DEFAULT 'eu'")
			up.Exec(t, "INSERT INTO shop."+tb+" VALUES (?, 'after', 'us')", 900000+i*10+int(tb[len(tb)-1]-'0'))
		}
	}
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	var want, got []string
	for _, up := range ups {
		for _, tb := range []string{"orders_01", "orders_02"} {
			want = append(want, rowsText(t, up, "SELECT id, v, region FROM shop."+tb)...)
		}
	}
	got = rowsText(t, down, "SELECT id, v, region FROM merged.orders")
	if len(want) != 6*21 || strings.Join(sorted(want), ";") != strings.Join(sorted(got), ";") {
		t.Fatalf("downstream %d rows, shards %d; differ\nstdout:\n%s", len(got), len(want), stdout.String())
	}
	for i := range ups {
		if !strings.Contains(stdout.String(), fmt.Sprintf("source=s%d stopped at pos=", i+1)) {
			t.Fatalf("no final line for s%d:\n%s", i+1, stdout.String())
		}
	}
}

func rowsText(t *testing.T, m *testserver.MariaDB, q string) []string {
	t.Helper()
	rs, err := m.DB(t).Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var id int
		var v, r string
		if err := rs.Scan(&id, &v, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d|%s|%s", id, v, r))
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
