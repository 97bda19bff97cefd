package dmworker

import (
	"errors"
	"testing"

	"github.com/dmworker/dmworker/streamer"
)

// TestCheckLineage walks the rules by which a stored checkpoint is taken as
// a place in the binlog of the server reached now, continued from its GTID
// set on another server, or refused.
func TestCheckLineage(t *testing.T) {
	pos := func(s string) streamer.Position {
		t.Helper()
		p, err := streamer.ParsePosition(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := []streamer.BinlogFile{{Name: "mysql-bin.000003", Size: 5000}, {Name: "mysql-bin.000004", Size: 300}}
	server := func(identity, master string) streamer.UpstreamState {
		m := pos(master)
		return streamer.UpstreamState{Flavor: m.Flavor, Identity: identity, Binlogs: files, Master: m}
	}
	a := server("0-1", "mysql-bin.000004:300 mariadb-gtid=0-1-50")
	for _, c := range []struct {
		name   string
		cp     Checkpoint
		st     streamer.UpstreamState
		refuse bool
		start  string // the resume position's text, when not refused
	}{
		{"same server, file there", Checkpoint{Pos: pos("mysql-bin.000004:200 mariadb-gtid=0-1-40"), Server: "0-1"}, a, false, "mysql-bin.000004:200 mariadb-gtid=0-1-40"},
		{"unknown server, file there", Checkpoint{Pos: pos("mysql-bin.000003:4000")}, a, false, "mysql-bin.000003:4000"},
		{"purged file", Checkpoint{Pos: pos("mysql-bin.000001:4"), Server: "0-1"}, a, false, "mysql-bin.000001:4"},
		{"offset past the end", Checkpoint{Pos: pos("mysql-bin.000004:301")}, a, true, ""},
		{"newer file", Checkpoint{Pos: pos("mysql-bin.000005:4"), Server: "0-1"}, a, true, ""},
		{"other base name", Checkpoint{Pos: pos("binlog.000001:4")}, a, true, ""},
		{"binlog reset: GTIDs not executed", Checkpoint{Pos: pos("mysql-bin.000003:100 mariadb-gtid=0-1-70"), Server: "0-1"}, a, true, ""},
		{"unknown server, newer file, GTIDs executed", Checkpoint{Pos: pos("mysql-bin.000009:4 mariadb-gtid=0-1-45")}, a, false, "mariadb-gtid=0-1-45"},
		{"another server with the GTIDs", Checkpoint{Pos: pos("mysql-bin.000007:900 mariadb-gtid=0-1-45"), Server: "0-9"}, a, false, "mariadb-gtid=0-1-45"},
		{"another server without them", Checkpoint{Pos: pos("mysql-bin.000004:100 mariadb-gtid=0-9-60"), Server: "0-9"}, a, true, ""},
		{"another server, other domain", Checkpoint{Pos: pos("mysql-bin.000004:100 mariadb-gtid=1-9-3"), Server: "1-9"}, a, true, ""},
		{"another server, no GTID set", Checkpoint{Pos: pos("mysql-bin.000004:100"), Server: "0-9"}, a, true, ""},
		{"another server, empty GTID set", Checkpoint{Pos: pos("mysql-bin.000004:100 mariadb-gtid="), Server: "0-9"}, a, true, ""},
		{"GTID-only checkpoint", Checkpoint{Pos: pos("mariadb-gtid=0-1-50"), Server: "0-1"}, a, false, "mariadb-gtid=0-1-50"},
		{"MySQL checkpoint on MariaDB", Checkpoint{Pos: pos("mysql-bin.000004:100 mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")}, a, true, ""},
		{"MySQL replica of the same primary", Checkpoint{Pos: pos("binlog.000002:700 mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"), Server: "3e11fa47-71ca-11e1-9e33-c80aa9429562"},
			server("4e11fa47-71ca-11e1-9e33-c80aa9429562", "mysql-bin.000004:300 mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-2"),
			false, "mysql-gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := checkLineage(c.cp, c.st)
			switch {
			case c.refuse && !errors.Is(err, ErrCheckpointLineage):
				t.Fatalf("got %v (start %s), want ErrCheckpointLineage", err, res.start)
			case !c.refuse && err != nil:
				t.Fatalf("refused: %v", err)
			case !c.refuse && res.start.String() != c.start:
				t.Fatalf("resumes at %s, want %s", res.start, c.start)
			case !c.refuse && res.switched != (res.start.Name == "" && c.cp.Pos.Name != ""):
				t.Fatalf("switched %v for a resume at %s", res.switched, res.start)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}
