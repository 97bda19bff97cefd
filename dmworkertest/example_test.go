package dmworkertest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// A Binlog holds the tables' definitions and the events built from them.
func ExampleBinlog() {
	b := dmworkertest.NewBinlog(dmworkertest.WithServerID(3))
	if err := b.Define("shop", "CREATE DATABASE shop", "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2))"); err != nil {
		panic(err)
	}
	fmt.Println(b.Start())
	pos, err := b.Begin().Insert("shop", "orders", []any{int64(1), "9.99"}).Commit()
	if err != nil {
		panic(err)
	}
	fmt.Println(pos)
	pos, _ = b.DDL("shop", "ALTER TABLE orders ADD COLUMN note TEXT")
	fmt.Println(pos)
	fmt.Println(b.Rotate())
	// Output:
	// mysql-bin.000001:280 mariadb-gtid=
	// mysql-bin.000001:499 mariadb-gtid=0-3-1
	// mysql-bin.000001:630 mariadb-gtid=0-3-2
	// mysql-bin.000002:296 mariadb-gtid=0-3-2
}

// A Tx is one transaction: its changes are written at Commit.
func ExampleTx() {
	b := dmworkertest.NewBinlog()
	_ = b.Define("db", "CREATE DATABASE db", "CREATE TABLE kv (k INT PRIMARY KEY, v VARCHAR(10))")
	_, err := b.Begin().
		Insert("db", "kv", []any{int64(1), "one"}, []any{int64(2), "two"}).
		Update("db", "kv", []any{int64(1), "one"}, []any{int64(1), "uno"}).
		Delete("db", "kv", []any{int64(2), "two"}).
		Commit()
	fmt.Println(err)
	_, err = b.Begin().Insert("db", "kv", []any{"not a number", nil}).Commit()
	fmt.Println(err)
	// Output:
	// <nil>
	// dmworkertest: `db`.`kv` row 0: column k (int(11)): cannot encode string not a number
}

// A Reader replays the events as a streamer.Reader, with their positions.
func ExampleReader() {
	b := dmworkertest.NewBinlog()
	_ = b.Define("db", "CREATE DATABASE db", "CREATE TABLE kv (k INT PRIMARY KEY)")
	_, _ = b.Begin().Insert("db", "kv", []any{int64(1)}).Commit()
	r := b.NewReader(b.Start(), dmworkertest.StopAtEnd())
	defer r.Close()
	for {
		ev, err := r.GetEvent(context.Background())
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Println(ev.Header.EventType, ev.Pos, ev.GTID, ev.TxnEnd)
	}
	// Output:
	// MariadbGTIDEvent mysql-bin.000001:322 mariadb-gtid= 0-1-1 false
	// QueryEvent mysql-bin.000001:373 mariadb-gtid= 0-1-1 false
	// TableMapEvent mysql-bin.000001:416 mariadb-gtid= 0-1-1 false
	// WriteRowsEventV1 mysql-bin.000001:454 mariadb-gtid= 0-1-1 false
	// XIDEvent mysql-bin.000001:485 mariadb-gtid=0-1-1 0-1-1 true
	// streamer: end of stream
}

// A syncer with no upstream reads the Binlog into a sink; WaitApplied
// waits for its checkpoint.
func ExampleWaitApplied() {
	b := dmworkertest.NewBinlog()
	_ = b.Define("shop", "CREATE DATABASE shop", "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2))")
	end, _ := b.Begin().Insert("shop", "orders", []any{int64(1), "9.99"}, []any{int64(2), "0.50"}).Commit()

	sink := sinktest.NewMemSink()
	s, err := dmworker.NewSyncer(dmworker.SyncerConfig{Task: "orders", Source: "shop-db", Start: b.Start()}, sink, b.SyncerOptions()...)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	err = dmworkertest.WaitApplied(ctx, s, end)
	cancel()
	fmt.Println(err, <-done)
	rows := sink.Rows("shop", "orders")
	sinktest.SortRows(rows)
	fmt.Println(rows)
	// Output:
	// <nil> <nil>
	// [[1 9.99] [2 0.50]]
}

var _ streamer.Reader = (*dmworkertest.Reader)(nil)
