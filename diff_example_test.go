package dmworker_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/dmworker/dmworker"
)

// Compare a schema and print each differing row by key; the repair SQL
// goes to a file. The downstream is assumed quiescent here (see
// ExampleWithDiffWait for a replica that still applies).
func ExampleDiff() {
	ctx := context.Background()
	up, _ := sql.Open("mysql", "user:pass@tcp(upstream:3306)/")
	down, _ := sql.Open("mysql", "user:pass@tcp(downstream:3306)/")
	res, err := dmworker.Diff(ctx, up, down, []dmworker.TablePattern{{Schema: "shop", Name: "*"}},
		dmworker.WithDiffWorkers(8), dmworker.WithDiffProgressFile("/var/tmp/shop-diff.json"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("snapshot at", res.Position)
	for _, t := range res.Tables {
		fmt.Printf("%s: %d rows, %d differ\n", t.String(), t.UpstreamRows, len(t.Rows)+t.Omitted)
	}
	if !res.Equal() {
		f, _ := os.Create("fix.sql")
		defer f.Close()
		if err := res.WriteFixSQL(f); err != nil {
			log.Fatal(err)
		}
	}
}

// Wait for the replica to apply up to the snapshot's position before the
// downstream is read: here by polling a SubTask's status until its
// checkpoint passes it.
func ExampleWithDiffWait() {
	var task *dmworker.SubTask // the running task that feeds the downstream
	wait := dmworker.WithDiffWait(func(ctx context.Context, pos dmworker.Position) error {
		for {
			if cp := task.Status().Syncer.Checkpoint; cp.Name != "" && cp.Compare(pos) >= 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	_ = wait // dmworker.Diff(ctx, up, down, tables, wait)
}

// A task's filter and routes: shards app_1.orders .. app_N.orders merged
// into app.orders compare as their union against it.
func ExampleWithDiffRules() {
	opt := dmworker.WithDiffRules(dmworker.BlockAllowList{DoDBs: []string{"app_*"}},
		[]dmworker.RouteRule{{SchemaPattern: "app_*", TablePattern: "orders", TargetSchema: "app", TargetTable: "orders"}})
	_ = opt // dmworker.Diff(ctx, up, down, nil, opt)
}

// Options are typed: only DiffOptions (and WithLogger) go to Diff.
func ExampleDiffOption() {
	opts := []dmworker.DiffOption{
		dmworker.WithDiffWorkers(4),
		dmworker.WithDiffChunkRows(50000),
		dmworker.WithDiffMaxRows(100),
		dmworker.WithLogger(nil),
	}
	fmt.Println(len(opts))
	// Output: 4
}

// A result as a host walks it.
func ExampleDiffResult() {
	res := dmworker.DiffResult{Tables: []dmworker.DiffTable{{
		Schema: "shop", Name: "orders", Sources: []string{"shop.orders"},
		Key: []string{"id"}, Columns: []string{"id", "total"},
		Chunks: 10, DifferingChunks: 1, UpstreamRows: 1000, DownstreamRows: 999,
		Rows: []dmworker.DiffRow{{Kind: dmworker.DiffMissing, Key: []string{"42"}, Upstream: []string{"42", "9.50"}}},
	}}}
	fmt.Println(res.Equal())
	for _, t := range res.Tables {
		for _, r := range t.Rows {
			fmt.Println(t.String(), r.Kind, r.Key)
		}
	}
	_ = res.WriteFixSQL(os.Stdout)
	// Output:
	// false
	// shop.orders missing [42]
	// -- dmworker diff repair at upstream (none)
	// SET NAMES utf8mb4;
	// SET SESSION time_zone = '+00:00';
	// SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';
	// SET SESSION foreign_key_checks = 0;
	// REPLACE INTO `shop`.`orders` (`id`, `total`) VALUES (42, 9.50);
}

// One table's comparison: equal when no row differs and the table exists
// downstream.
func ExampleDiffTable() {
	t := dmworker.DiffTable{Schema: "shop", Name: "users", Sources: []string{"shop.users"}, Chunks: 3, UpstreamRows: 500, DownstreamRows: 500}
	fmt.Println(t.String(), t.Equal())
	// Output: shop.users true
}

// A changed row names the columns that differ and both sides' values.
func ExampleDiffRow() {
	r := dmworker.DiffRow{Kind: dmworker.DiffChanged, Key: []string{"7"}, Columns: []string{"name"},
		Upstream: []string{"7", "'Ann'"}, Downstream: []string{"7", "'Anne'"}}
	fmt.Println(r.Kind, r.Key, r.Columns, r.Upstream[1], "->", r.Downstream[1])
	// Output: changed [7] [name] 'Ann' -> 'Anne'
}

// The kinds of difference print as words.
func ExampleDiffKind() {
	fmt.Println(dmworker.DiffMissing, dmworker.DiffExtra, dmworker.DiffChanged)
	// Output: missing extra changed
}
