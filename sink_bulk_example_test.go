package dmworker_test

import (
	"database/sql"
	"fmt"
	"log"

	_ "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
)

// The snapshot unit finds a sink's bulk path by type assertion: mysqlsink
// has one (LOAD DATA LOCAL INFILE), so a copy's first-run batches go
// through ApplyBulk, and the rest (safe mode, the syncer's) through Apply.
// A host that wraps a sink keeps the path by forwarding ApplyBulk.
func ExampleBulkSink() {
	db, err := sql.Open("mysql", "user:password@tcp(127.0.0.1:3306)/") // no connection yet
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	sink, err := mysqlsink.New(db)
	if err != nil {
		log.Fatal(err)
	}
	var s dmworker.Sink = sink
	_, bulk := s.(dmworker.BulkSink)
	fmt.Println("bulk path:", bulk)
	// Output: bulk path: true
}
