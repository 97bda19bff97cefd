package mysqlsink_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/mysqlsink"
	_ "github.com/go-sql-driver/mysql"
)

// A Sink writes batches of row changes, with the checkpoint they reach,
// into a MySQL or MariaDB server. (Not run: it needs a server.)
func ExampleNew() {
	db, err := sql.Open("mysql", "user:secret@tcp(127.0.0.1:3306)/?interpolateParams=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close() // the host's pool: the sink never closes it

	sink, err := mysqlsink.New(db,
		mysqlsink.WithCheckpointSchema("migration_meta"),
		mysqlsink.WithMaxStatementRows(500))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	cp, ok, err := sink.LoadCheckpoint(ctx, "task1", "source1")
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("stored checkpoint: %v (found %v)", cp.Pos, ok)

	users := &dmworker.Table{
		Schema: "app", Name: "users",
		Columns: []dmworker.Column{
			{Name: "id", Type: "bigint(20) unsigned", Unsigned: true},
			{Name: "name", Type: "varchar(64)", Nullable: true},
		},
		PrimaryKey: []int{0},
	}
	cp.Task, cp.Source = "task1", "source1"
	err = sink.Apply(ctx, &dmworker.Batch{
		Changes: []dmworker.Change{
			{Kind: dmworker.Insert, Table: users, After: []any{uint64(1), "ann"}},
			{Kind: dmworker.Update, Table: users, Before: []any{uint64(1), "ann"}, After: []any{uint64(1), "anne"}},
		},
		Checkpoint: &cp, // stored in the same transaction
	})
	if dmworker.IsRetryable(err) {
		log.Printf("try again later: %v", err)
	} else if err != nil {
		log.Fatal(err)
	}
}
