package dmworker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"

	"github.com/dmworker/dmworker"
)

// A SnapshotConfig travels in task configs as JSON or TOML; fields left out
// take their defaults (4 connections, chunks of 200000 rows, batches of
// 10000, secondary indexes added after the rows).
func ExampleSnapshotConfig() {
	var sc dmworker.SnapshotConfig
	if err := json.Unmarshal([]byte(`{"concurrency": 8, "chunk-rows": 20000, "indexes-first": true}`), &sc); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", sc)
	// Output: {Concurrency:8 ChunkRows:20000 BatchRows:0 IndexesFirst:true}
}

// Progress of a copy, as a host prints it from a SubTask's status: rows and
// bytes done against the upstream's estimates, per table and in total.
func ExampleSnapshotStatus() {
	st := dmworker.SnapshotStatus{
		Stage: dmworker.SnapshotCopying,
		Tables: []dmworker.SnapshotTableStatus{
			{Schema: "app", Name: "orders", Chunks: 20, ChunksDone: 5, Rows: 250000, EstRows: 1000000, Bytes: 47 << 20, EstBytes: 190 << 20},
			{Schema: "app", Name: "users", Chunks: 1, ChunksDone: 1, Rows: 1200, EstRows: 1180, Bytes: 1 << 20, EstBytes: 1 << 20, Done: true},
		},
		Rows: 251200, EstRows: 1001180, Bytes: 48 << 20, EstBytes: 191 << 20,
	}
	for _, t := range st.Tables {
		fmt.Printf("%s.%s: %d/%d chunks, %d of ~%d rows, %d of ~%d MiB\n",
			t.Schema, t.Name, t.ChunksDone, t.Chunks, t.Rows, t.EstRows, t.Bytes>>20, t.EstBytes>>20)
	}
	fmt.Printf("%s: %.0f%% of the rows\n", st.Stage, 100*float64(st.Rows)/float64(st.EstRows))
	// Output:
	// app.orders: 5/20 chunks, 250000 of ~1000000 rows, 47 of ~190 MiB
	// app.users: 1/1 chunks, 1200 of ~1180 rows, 1 of ~1 MiB
	// Copying: 25% of the rows
}

// A SnapshotError names the task, source, consistent point and table where
// a copy stopped; what it wraps tells why.
func ExampleSnapshotError() {
	var err error = &dmworker.SnapshotError{Task: "t1", Source: "db1", Table: "app.orders", Op: "resume",
		Err: fmt.Errorf("%w: its definition differs from the one the copy began with", dmworker.ErrSnapshotSchemaChanged)}
	var se *dmworker.SnapshotError
	if errors.As(err, &se) && errors.Is(err, dmworker.ErrSnapshotSchemaChanged) {
		fmt.Println("start the copy of", se.Table, "over")
	}
	fmt.Println(err)
	// Output:
	// start the copy of app.orders over
	// dmworker: snapshot of task t1 source db1 table app.orders (resume): dmworker: a table changed while the snapshot copied it: its definition differs from the one the copy began with
}
