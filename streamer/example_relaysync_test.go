package streamer_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// Copying an upstream's binlog into a relay subdirectory the way
// dmworker.Relay does: the reading goroutine writes (write-behind) and hands
// sync points to a second goroutine, which fsyncs them while reading goes
// on, and only then records the position as durable (group commit: one
// fsync covers every write before it).
func ExampleRelayFileSyncer() {
	up, err := streamer.ParseUpstream("repl:secret@127.0.0.1:3306")
	if err != nil {
		log.Fatal(err)
	}
	up.Flavor = streamer.FlavorMariaDB
	path, err := os.MkdirTemp("", "relay")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(path)
	d := streamer.NewRelayDir(path, streamer.DefaultRelayFileMode, streamer.DefaultRelayDirMode, nil)
	unlock, err := d.Lock()
	if err != nil {
		log.Fatal(err)
	}
	defer unlock()
	sub, err := d.NewSubdir("53ea0ac5-2ec4-11ef-9a4e-0242ac110002")
	if err != nil {
		log.Fatal(err)
	}
	w, err := d.Writer(sub, "")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	w.WriteBehind()

	// The syncer: the latest point waits in a one-slot channel.
	type job struct {
		pt  streamer.RelaySyncPoint
		pos streamer.Position
	}
	jobs := make(chan job, 1)
	synced := make(chan error, 1)
	go func() {
		var s streamer.RelayFileSyncer
		defer s.Close()
		for j := range jobs {
			if err := s.Sync(j.pt); err != nil {
				synced <- err
				return
			}
			fmt.Println("durable up to", j.pos) // publish, write relay.meta
		}
		synced <- nil
	}()

	r, err := streamer.NewRawReader(up, streamer.Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		last    = time.Now()
		pending streamer.Position // the last boundary written
		dirOwed string            // a directory a dropped point was to sync
	)
	post := func(wait bool) {
		pt, err := w.Flush() // into the page cache; no fsync here
		if err != nil {
			log.Fatal(err)
		}
		if pt.Dir == "" {
			pt.Dir = dirOwed
		}
		if wait {
			jobs <- job{pt, pending}
			return
		}
		select {
		case jobs <- job{pt, pending}:
			dirOwed = ""
		default:
			// An fsync is under way and a point waits: a later one goes,
			// with the directory this one was to sync.
			dirOwed = pt.Dir
		}
	}
	for ctx.Err() == nil {
		ev, err := r.Next(ctx)
		if err != nil {
			break
		}
		if _, err := w.WriteRaw(ev); err != nil {
			log.Fatal(err)
		}
		if !ev.Boundary {
			continue
		}
		pending = ev.Pos
		if time.Since(last) >= 50*time.Millisecond {
			last = time.Now()
			post(false)
		}
	}
	post(true) // the end: wait for a slot
	close(jobs)
	if err := <-synced; err != nil {
		log.Fatal(err)
	}
}
