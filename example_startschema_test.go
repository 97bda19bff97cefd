package dmworker_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/dmworkertest"
	"github.com/dmworker/dmworker/sinktest"
)

// txnLog is a sink that prints each change with the transaction it
// belongs to.
type txnLog struct {
	sinktest.MemSink
	mu sync.Mutex
}

func (l *txnLog) Apply(ctx context.Context, b *dmworker.Batch) error {
	l.mu.Lock()
	for _, c := range b.Changes {
		fmt.Println(c, c.After, "transaction from", c.TxnPos, "#", c.TxnIndex)
	}
	l.mu.Unlock()
	return l.MemSink.Apply(ctx, b)
}

// With WithStartSchema and a reader factory, a syncer with no Upstream runs
// without any server: here from events built by dmworkertest.
func ExampleWithStartSchema() {
	b := dmworkertest.NewBinlog()
	_ = b.Define("shop", "CREATE DATABASE shop", "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2))")
	end, _ := b.Begin().Insert("shop", "orders", []any{int64(1), "9.99"}, []any{int64(2), "0.50"}).Commit()

	cfg := dmworker.SyncerConfig{Task: "orders", Source: "shop-db", Start: b.Start(), SyncerTuning: dmworker.SyncerTuning{Workers: 1}}
	s, err := dmworker.NewSyncer(cfg, &txnLog{},
		dmworker.WithReaderFactory(b.ReaderFactory()),
		dmworker.WithStartSchema("CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, total DECIMAL(10,2))"))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if err := dmworkertest.WaitApplied(ctx, s, end); err != nil {
		panic(err)
	}
	cancel()
	fmt.Println(<-done)
	// Output:
	// insert on shop.orders [1 9.99] transaction from mysql-bin.000001:280 mariadb-gtid= # 0
	// insert on shop.orders [2 0.50] transaction from mysql-bin.000001:280 mariadb-gtid= # 1
	// <nil>
}
