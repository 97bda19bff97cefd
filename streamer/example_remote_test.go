package streamer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/streamer"
)

// Reading an upstream's binlog from a file position, checkpointing at each
// transaction end. (Not run: it needs a server.)
func ExampleNewRemoteReader() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	up.Flavor = streamer.FlavorMariaDB
	start, err := streamer.ParsePosition("mysql-bin.000001:4")
	if err != nil {
		log.Fatal(err)
	}
	r, err := streamer.NewRemoteReader(up, start, streamer.WithHeartbeat(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		ev, err := r.GetEvent(ctx)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return
		case errors.Is(err, streamer.ErrBinlogPurged):
			log.Fatalf("start from a GTID set or a newer file: %v", err)
		case err != nil:
			log.Fatal(err)
		}
		if ev.TxnEnd {
			fmt.Println("safe to resume from", ev.Pos)
		}
	}
}

// Parsing a connection string; the password never shows when printed.
func ExampleParseUpstream() {
	up, err := streamer.ParseUpstream("repl:s3cret@db1.internal:3307")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(up.User, up.Host, up.Port)
	fmt.Println(up)
	// Output:
	// repl db1.internal 3307
	// repl:***@db1.internal:3307 (name=db1.internal:3307 flavor= server-id=0)
}

// Telling errors apart: every reader error is an *Error naming the source and
// position, wrapping a sentinel.
func ExampleError() {
	pos, _ := streamer.ParsePosition("mysql-bin.000007:4")
	var err error = &streamer.Error{Source: "db1:3306", Op: "connect", Pos: pos, Kind: streamer.ErrBinlogPurged}
	var se *streamer.Error
	fmt.Println(errors.Is(err, streamer.ErrBinlogPurged), errors.As(err, &se) && se.Source == "db1:3306")
	fmt.Println(err)
	// Output:
	// true true
	// streamer: source db1:3306: connect at mysql-bin.000007:4: binlog file not found (purged?)
}

// PickServerID finds a replica id nobody uses on the upstream. (Not run: it
// needs a server.)
func ExamplePickServerID() {
	up, _ := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	id, err := streamer.PickServerID(context.Background(), up)
	if err != nil {
		log.Fatal(err)
	}
	up.ServerID = id
	fmt.Println("replica server id", up.ServerID)
}

// Copying an upstream's binlog as raw bytes, as the relay does: each event
// is appended to a file, and the GTID set is asked for at a checkpoint, not
// per event. (Not run: it needs a server.)
func ExampleNewRawReader() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	up.Flavor = streamer.FlavorMariaDB
	r, err := streamer.NewRawReader(up, streamer.Position{Name: "mysql-bin.000001", Offset: 4},
		streamer.WithHeartbeat(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var copied int
	for {
		ev, err := r.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if ev.Artificial() {
			continue // not part of the binlog file
		}
		copied += len(ev.Data) // ev.Data is only valid until the next Next
		if ev.Boundary && copied > 64<<20 {
			fmt.Println("checkpoint at", ev.Pos, "with GTID set", r.GTIDSet())
			copied = 0
		}
	}
}

// Telling the events a dump makes up for its connection (fake rotate,
// re-sent format description, heartbeat) from those of the binlog file.
func ExampleRawEvent_Artificial() {
	fake := streamer.RawEvent{Header: replication.EventHeader{EventType: replication.ROTATE_EVENT, Flags: replication.LOG_EVENT_ARTIFICIAL_F}}
	heartbeat := streamer.RawEvent{Header: replication.EventHeader{EventType: replication.HEARTBEAT_EVENT, LogPos: 1234}}
	xid := streamer.RawEvent{Header: replication.EventHeader{EventType: replication.XID_EVENT, LogPos: 1234}}
	fmt.Println(fake.Artificial(), heartbeat.Artificial(), xid.Artificial())
	// Output: true true false
}

// Reading only what a consumer replicates: the rows of the tables of schema
// app are decoded; the rows events of every other table come in their place
// with their header and table map but Rows nil, so that positions and
// transaction ends are as without the filter. (Not run: it needs a server.)
func ExampleWithTableFilter() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	keep := func(schema, table string) bool { return schema == "app" }
	r, err := streamer.NewRemoteReader(up, streamer.Position{Name: "mysql-bin.000001", Offset: 4}, streamer.WithTableFilter(keep))
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	for {
		ev, err := r.GetEvent(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		if re, ok := ev.Event.(*replication.RowsEvent); ok && keep(string(re.Table.Schema), string(re.Table.Table)) {
			fmt.Println(len(re.Rows), "row images in", string(re.Table.Table), "ending at", ev.Pos)
		}
	}
}

// A consumer handed a reader it did not build sets the filter through the
// TableFilterer interface, as the syncer does with a ReaderFactory's
// readers. (Not run: it needs a relay directory.)
func ExampleTableFilterer() {
	var r streamer.Reader
	r, err := streamer.NewLocalReader("/var/lib/relay", streamer.StartAtPosition(streamer.Position{}))
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	if f, ok := r.(streamer.TableFilterer); ok {
		f.SetTableFilter(func(schema, table string) bool { return schema == "app" })
	}
	ev, err := r.GetEvent(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Header.EventType, ev.Pos)
}
