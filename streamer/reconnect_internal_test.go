package streamer

import "testing"

// TestReconnectSkip: after a reconnect, what had been delivered and the
// artificial events naming the resume position are left out; an
// artificial rotate to a later file is delivered. The server sends only
// that when it moves on from a file that ends without a rotate event (the
// upstream was killed while writing it): a relay that skipped it wrote the
// next file's events into the old file (ErrRelayOverlap at offset 4 after
// an upstream SIGKILL).
func TestReconnectSkip(t *testing.T) {
	type ev struct {
		name       string
		off        uint64
		artificial bool
		skip       bool
	}
	for _, tc := range []struct {
		what            string
		safe, delivered Position
		events          []ev
	}{
		{"the upstream crashed at the end of the file", Position{Name: "mysql-bin.000001", Offset: 18413}, Position{Name: "mysql-bin.000001", Offset: 18413}, []ev{
			{"mysql-bin.000001", 18413, true, true}, // fake rotate to the resume position
			{"mysql-bin.000001", 18413, true, true}, // its format description
			{"mysql-bin.000002", 4, true, false},    // fake rotate to the next file
			{"mysql-bin.000002", 256, false, false}, // its format description
			{"mysql-bin.000002", 299, false, false}, // Gtid_list
		}},
		{"mid-transaction", Position{Name: "mysql-bin.000003", Offset: 300}, Position{Name: "mysql-bin.000003", Offset: 500}, []ev{
			{"mysql-bin.000003", 300, true, true},
			{"mysql-bin.000003", 300, true, true},
			{"mysql-bin.000003", 400, false, true},
			{"mysql-bin.000003", 500, false, true},
			{"mysql-bin.000003", 500, true, true}, // a heartbeat
			{"mysql-bin.000003", 600, false, false},
			{"mysql-bin.000003", 600, true, false},
		}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			var c reconnect[*dumpConn]
			c.safe, c.delivered = tc.safe, tc.delivered
			c.rewind()
			if c.pos != tc.safe {
				t.Fatalf("resumes at %s, want %s", c.pos, tc.safe)
			}
			for i, e := range tc.events {
				if got := c.skip(Position{Name: e.name, Offset: e.off}, e.artificial); got != e.skip {
					t.Fatalf("event %d (%s:%d, artificial %v): skip %v, want %v", i, e.name, e.off, e.artificial, got, e.skip)
				}
			}
		})
	}
}
