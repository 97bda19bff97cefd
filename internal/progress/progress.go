// Package progress measures how far a replica is behind its upstream (lag)
// and how fast it goes (rates), from what the syncer reads, applies and
// sees of the upstream's binlog end.
//
// Lag is the time since the latest moment up to which everything the
// upstream had written is known to be applied. Two kinds of facts move that
// moment forward:
//   - a look at the upstream's end (a heartbeat on the binlog stream, which
//     the server sends only when it has nothing more; or a poll of its
//     binlog position): once the applied position reaches the end seen at
//     time t, everything written by t is applied;
//   - an event read and not yet applied, written (by its timestamp) at t:
//     what was written before t is applied;
//   - an event applied, written at t: so is what was written before t.
//
// With nothing read and not applied and a recent look that found nothing
// more upstream, the lag is 0. When looks stop (the upstream or the network
// is down), it grows from the last one: the replica can no longer tell that
// it is up to date.
package progress

import (
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// Fresh is how recent a look must be for an up-to-date replica to read a
// lag of 0: looks come at least every PollInterval (and heartbeats while
// the upstream is idle), so a longer silence means the upstream is out of
// sight.
const Fresh = 5 * time.Second

// PollInterval is how often the upstream's binlog end should be looked at.
const PollInterval = 2 * time.Second

// RateWindow is the span rates are measured over.
const RateWindow = 10 * time.Second

// maxPending and maxLooks bound the queues; past them entries merge, which
// only makes the lag err on the high side.
const (
	maxPending = 4096
	maxLooks   = 64
)

// Tracker keeps what Lag and Rates need. It is not safe for concurrent use:
// its owner locks.
type Tracker struct {
	applied  streamer.Position
	pending  []pendingEvent // read past applied, in binlog order
	looks    []look         // upstream ends seen past applied, oldest first
	upToDate time.Time      // everything written by then is applied
	written  time.Time      // the latest write time of an event applied this run
	begun    time.Time      // when the current run began
	rates    rates
}

// pendingEvent is a run of events read and not yet applied that share one
// upstream timestamp (a second): end is where the last of them ends.
type pendingEvent struct {
	end     streamer.Position
	written time.Time
}

// look is the upstream's binlog end at a moment.
type look struct {
	end streamer.Position
	at  time.Time
}

// Begin starts a run from applied (the checkpoint it resumes from): what was
// read and not applied is forgotten. What earlier looks established stays.
func (t *Tracker) Begin(applied streamer.Position, now time.Time) {
	t.applied = applied
	t.pending, t.looks = t.pending[:0], t.looks[:0]
	t.begun, t.written = now, time.Time{}
	t.rates.begin(now)
}

// Read records an event read that ends at end, written upstream at ts (the
// event header's timestamp, seconds; 0 when unknown).
func (t *Tracker) Read(end streamer.Position, ts uint32, now time.Time) {
	if end.Compare(t.applied) <= 0 {
		return // replayed, or applied already
	}
	written := now
	if ts != 0 {
		written = time.Unix(int64(ts), 0)
	}
	if n := len(t.pending); n > 0 && (t.pending[n-1].written.Equal(written) || n >= maxPending) {
		t.pending[n-1].end = end
		return
	}
	t.pending = append(t.pending, pendingEvent{end: end, written: written})
}

// Applied records that everything up to pos is applied (a checkpoint).
func (t *Tracker) Applied(pos streamer.Position) {
	t.applied = pos
	i := 0
	for i < len(t.pending) && t.pending[i].end.Compare(pos) <= 0 {
		t.written = later(t.written, t.pending[i].written)
		i++
	}
	t.pending = t.pending[:copy(t.pending, t.pending[i:])]
	i = 0
	for i < len(t.looks) && t.looks[i].end.Compare(pos) <= 0 {
		t.seen(t.looks[i].at)
		i++
	}
	t.looks = t.looks[:copy(t.looks, t.looks[i:])]
}

// Look records that at time at the upstream's binlog ended at end.
func (t *Tracker) Look(end streamer.Position, at time.Time) {
	if end.Compare(t.applied) <= 0 {
		t.seen(at)
		return
	}
	if n := len(t.looks); n > 0 && (t.looks[n-1].end.Compare(end) >= 0 || n >= maxLooks) {
		// The same end seen later (or the queue full): the later moment
		// is the one that counts once the end is reached.
		t.looks[n-1] = look{end: later(t.looks[n-1].end, end), at: later(t.looks[n-1].at, at)}
		return
	}
	t.looks = append(t.looks, look{end: end, at: at})
}

func later[T interface{ Compare(T) int }](a, b T) T {
	if a.Compare(b) >= 0 {
		return a
	}
	return b
}

func (t *Tracker) seen(at time.Time) {
	if at.After(t.upToDate) {
		t.upToDate = at
	}
}

// Lag is the lag in seconds at now: 0 when nothing read is unapplied, the
// upstream was last seen with nothing more, and that was less than Fresh
// ago; otherwise the seconds since the latest moment everything written by
// then is known to be applied: the later of the last look reached, the
// write time of the last event applied and that of the first event read
// and not applied (from the start of the run when nothing is known).
func (t *Tracker) Lag(now time.Time) float64 {
	if len(t.pending) == 0 && len(t.looks) == 0 && !t.upToDate.IsZero() && now.Sub(t.upToDate) <= Fresh {
		return 0
	}
	since := later(t.upToDate, t.written)
	if len(t.pending) > 0 {
		since = later(since, t.pending[0].written)
	}
	if since.IsZero() {
		since = t.begun
	}
	if since.IsZero() || !now.After(since) {
		return 0
	}
	return now.Sub(since).Seconds()
}

// Count adds rows applied and events read at now.
func (t *Tracker) Count(now time.Time, rows, events int64) { t.rates.add(now, rows, events) }

// Rates are rows applied and events read per second over the last
// RateWindow (less at the start of a run): they fall to 0 over the window
// once nothing moves.
func (t *Tracker) Rates(now time.Time) (rows, events float64) { return t.rates.get(now) }

// rates counts per second of the clock in a ring of one slot a second.
type rates struct {
	begun  time.Time
	sec    [rateSlots]int64 // the Unix second each slot counts
	rows   [rateSlots]int64
	events [rateSlots]int64
}

const rateSlots = int64(RateWindow / time.Second)

func (r *rates) begin(now time.Time) { r.begun = now }

func (r *rates) add(now time.Time, rows, events int64) {
	s := now.Unix()
	i := s % rateSlots
	if r.sec[i] != s {
		r.sec[i], r.rows[i], r.events[i] = s, 0, 0
	}
	r.rows[i] += rows
	r.events[i] += events
}

func (r *rates) get(now time.Time) (rows, events float64) {
	s := now.Unix()
	var nr, ne int64
	for i := range r.sec {
		if r.sec[i] > s-rateSlots && r.sec[i] <= s {
			nr += r.rows[i]
			ne += r.events[i]
		}
	}
	if nr == 0 && ne == 0 {
		return 0, 0
	}
	// The slots counted cover from the start of the oldest second to now,
	// or from the run's start when that is later; at least a second, so
	// that the first events do not make a spike.
	from := time.Unix(s-rateSlots+1, 0)
	if r.begun.After(from) {
		from = r.begun
	}
	span := max(now.Sub(from), time.Second).Seconds()
	return float64(nr) / span, float64(ne) / span
}
