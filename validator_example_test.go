package dmworker_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// A subtask with a continuous validator in mode full: rows that still differ
// downstream after five minutes are recorded in
// dmworker_meta.validator_errors. mysqlsink.Sink gives the validator the
// downstream (it is a ValidatorSink). (Not run: it needs servers.)
func ExampleValidationConfig() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	downstream, err := sql.Open("mysql", "root:pw@tcp(127.0.0.1:3307)/")
	if err != nil {
		log.Fatal(err)
	}
	sink, err := mysqlsink.New(downstream)
	if err != nil {
		log.Fatal(err)
	}
	cfg := dmworker.SubTaskConfig{Name: "orders", Validation: dmworker.ValidationConfig{
		Mode:          dmworker.ValidationFull,
		RowErrorDelay: dmworker.Duration(5 * time.Minute), // default 30m
		MemoryBytes:   16 << 20,                           // default 64 MiB
	}}
	st, err := dmworker.NewSubTask(cfg, up, sink)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := st.Run(context.Background()); err != nil {
			log.Print(err)
		}
	}()
	defer st.Stop()

	v := st.Status().Validator
	fmt.Println(v.Pending, v.Checked, v.Differing, v.ErrorRows, v.Validated)
	rows, err := downstream.Query(`SELECT table_schema, table_name, row_key, upstream_row, downstream_row
		FROM dmworker_meta.validator_errors WHERE task = 'orders'`)
	if err != nil {
		log.Fatal(err)
	}
	defer rows.Close()
}
