package dmworker_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// A Position prints, parses back and orders binlog positions.
func ExamplePosition() {
	a, err := dmworker.ParsePosition("mysql-bin.000009:1234 mariadb-gtid=0-1-100")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := dmworker.ParsePosition("mysql-bin.000010:4")
	fmt.Println(a.Name, a.Offset, a.GTIDSet)
	fmt.Println(a.Compare(b))
	// Output:
	// mysql-bin.000009 1234 0-1-100
	// -1
}

// A Relay copies an upstream's binlog into a local directory until stopped.
// (Not run: it needs a server.)
func ExampleNewRelay() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	r, err := dmworker.NewRelay(up, "/var/lib/dmworker/relay",
		dmworker.WithSyncPolicy(dmworker.SyncInterval(50*time.Millisecond)),
		dmworker.WithAutoPurge(time.Hour, 7*24*time.Hour, 10<<30))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		// A reader in the same process waits for new data without polling.
		for {
			pos, changed := r.Relayed()
			fmt.Println("relayed up to", pos)
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
