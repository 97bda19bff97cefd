package dmworker_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// A host reads a running relay with a purge-safe reader: the reader's lease
// keeps the files it still needs from the relay's purge, Ack moves the lease
// on once the host has made an event's effect durable, and Close releases
// it. (Not run: it needs a server.)
func ExampleRelay_OpenReader() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	r, err := dmworker.NewRelay(up, "/var/lib/dmworker/relay", dmworker.RelayConfig{})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		if err := r.Run(ctx); err != nil {
			log.Print(err)
		}
	}()
	defer r.Close()

	start := streamer.Position{Name: "mysql-bin.000042", Offset: 4}
	lr, err := r.OpenReader(ctx, "audit-log", start)
	if err != nil {
		log.Fatal(err)
	}
	defer lr.Close()
	for {
		ev, err := lr.GetEvent(ctx)
		if err != nil {
			return // ctx ended, or the reader's *streamer.Error
		}
		if ev.TxnEnd {
			fmt.Println("transaction ends at", ev.Pos)
			lr.Ack(lr.RelayPos()) // purge may now remove what is before it
		}
	}
}
