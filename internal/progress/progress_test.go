package progress

import (
	"testing"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

func pos(off uint64) streamer.Position {
	return streamer.Position{Name: "mysql-bin.000001", Offset: off}
}

// TestLag walks one run through idleness, a stall with events read and not
// applied, a catch-up, and an upstream out of sight, on a clock of its own.
func TestLag(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var tr Tracker
	tr.Begin(pos(100), at(0))
	if got := tr.Lag(at(3)); got != 3 {
		t.Fatalf("nothing known after 3s: lag %v, want 3 (since the start)", got)
	}
	tr.Look(pos(100), at(3))
	if got := tr.Lag(at(4)); got != 0 {
		t.Fatalf("caught up, seen 1s ago: lag %v", got)
	}
	// Events written at 10 are read, not applied.
	tr.Read(pos(200), uint32(at(10).Unix()), at(10.2))
	tr.Read(pos(300), uint32(at(10).Unix()), at(10.3))
	tr.Read(pos(400), uint32(at(11).Unix()), at(11.1))
	if got := tr.Lag(at(16)); got != 6 {
		t.Fatalf("stalled since 10: lag %v, want 6", got)
	}
	tr.Look(pos(500), at(16))
	tr.Applied(pos(300))
	if got := tr.Lag(at(17)); got != 6 {
		t.Fatalf("applied up to the events of second 10: lag %v, want 6", got)
	}
	tr.Applied(pos(400))
	if got := tr.Lag(at(17)); got != 6 {
		t.Fatalf("all read applied (the last written at 11), the upstream at 500 at 16: lag %v, want 6", got)
	}
	tr.Applied(pos(500))
	if got := tr.Lag(at(17)); got != 0 {
		t.Fatalf("caught up with the look at 16: lag %v", got)
	}
	// Out of sight: no look for longer than Fresh.
	if got := tr.Lag(at(16).Add(Fresh + 2*time.Second)); got != (Fresh + 2*time.Second).Seconds() {
		t.Fatalf("no look for %s: lag %v", Fresh+2*time.Second, got)
	}
	// Replayed events (at or before the applied position) do not count.
	tr.Read(pos(450), uint32(at(1).Unix()), at(18))
	tr.Look(pos(500), at(18))
	if got := tr.Lag(at(18.5)); got != 0 {
		t.Fatalf("a replayed event: lag %v", got)
	}
}

// TestRates: rates cover the window, and fall to exactly 0 once it has
// passed with nothing counted.
func TestRates(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var tr Tracker
	tr.Begin(pos(4), t0)
	for i := range 20 {
		tr.Count(t0.Add(time.Duration(i)*time.Second+time.Millisecond), 10, 20)
	}
	rows, events := tr.Rates(t0.Add(19*time.Second + 500*time.Millisecond))
	if rows < 9 || rows > 11 || events < 18 || events > 22 {
		t.Fatalf("steady 10 rows/s, 20 events/s: got %v, %v", rows, events)
	}
	for _, idle := range []time.Duration{RateWindow, time.Hour} {
		if rows, events := tr.Rates(t0.Add(20*time.Second + idle)); rows != 0 || events != 0 {
			t.Fatalf("idle for %s: %v rows/s %v events/s", idle, rows, events)
		}
	}
	if rows, _ := tr.Rates(t0.Add(24 * time.Second)); rows <= 0 || rows >= 10 {
		t.Fatalf("idle for 4s: %v rows/s, want between 0 and 10", rows)
	}
}
