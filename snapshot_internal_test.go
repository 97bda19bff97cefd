package dmworker

import (
	"context"
	"testing"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestSnapshotGTIDAt checks the fallback that finds the GTID set at a
// snapshot's binlog point by reading the binlog: at points in the middle of
// a file and at its end it equals @@gtid_binlog_pos read there, across a
// rotation and in two domains.
func TestSnapshotGTIDAt(t *testing.T) {
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 359})
	db := m.DB(t)
	u, err := newSnapshotUnit(SyncerConfig{Task: "gtid", Upstream: streamer.UpstreamConfig{Host: m.Host, Port: uint16(m.Port),
		User: m.User, Password: m.Password, Flavor: streamer.FlavorMariaDB}}, SnapshotConfig{}, nopSink{}, &MemoryCheckpointStore{}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	type point struct {
		file string
		pos  uint64
		gtid string
	}
	here := func() point {
		t.Helper()
		var p point
		var a, b any
		if err := db.QueryRow("SHOW MASTER STATUS").Scan(&p.file, &p.pos, &a, &b); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow("SELECT @@gtid_binlog_pos").Scan(&p.gtid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var points []point
	exec("CREATE DATABASE g")
	exec("CREATE TABLE g.t (id INT PRIMARY KEY)")
	points = append(points, here())
	for i := 0; i < 5; i++ {
		exec("INSERT INTO g.t VALUES (" + string(rune('1'+i)) + ")")
	}
	points = append(points, here())
	exec("FLUSH BINARY LOGS")
	points = append(points, here())
	exec("SET SESSION gtid_domain_id = 7")
	exec("INSERT INTO g.t VALUES (10)")
	exec("SET SESSION gtid_domain_id = 0")
	exec("INSERT INTO g.t VALUES (11)")
	points = append(points, here())
	for _, p := range points {
		got, err := u.gtidAt(context.Background(), p.file, p.pos)
		if err != nil {
			t.Fatalf("%s:%d: %v", p.file, p.pos, err)
		}
		want, _ := streamer.NewGTIDSet(streamer.FlavorMariaDB, p.gtid)
		gs, err := streamer.NewGTIDSet(streamer.FlavorMariaDB, got)
		if err != nil || !gs.Equal(want) {
			t.Fatalf("GTID set at %s:%d from the binlog: %q (%v), the server said %q", p.file, p.pos, got, err, p.gtid)
		}
	}
	if _, err := u.gtidAt(context.Background(), points[0].file, points[0].pos+1); err == nil {
		t.Fatal("no error for a point inside an event")
	}
}

type nopSink struct{}

func (nopSink) Apply(context.Context, *Batch) error { return nil }
func (nopSink) ExecDDL(context.Context, *DDL) error { return nil }
