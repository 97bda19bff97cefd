package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dmworker/dmworker"
)

// progress prints what the program does: the snapshot's progress (a bar
// rewritten in place on a terminal, a line a second otherwise), the
// replication's progress lines, and the final line with the run's summary.
type progress struct {
	w      io.Writer
	prefix string    // "worker=<name> " in cluster mode
	bar    bool      // draw the snapshot's progress as a bar
	open   bool      // a bar is drawn and its line not ended
	start  time.Time // when the run began, for the summary

	snapRows int64     // the snapshot's rows at the last sample
	snapAt   time.Time // and when
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// line prints one line, ending a bar drawn before.
func (p *progress) line(s string) {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
	fmt.Fprintln(p.w, p.prefix+s)
}

// snapshot prints the copy's progress: rows and bytes done against the
// upstream's estimates, the rate over the last sample, the time left at
// that rate, and tables done.
func (p *progress) snapshot(st dmworker.SnapshotStatus, now time.Time) {
	done := 0
	for _, t := range st.Tables {
		if t.Done {
			done++
		}
	}
	if p.snapAt.IsZero() || st.Rows < p.snapRows {
		p.snapRows, p.snapAt = 0, p.start // the first sample: the rate since the start
	}
	rate := 0.0
	if d := now.Sub(p.snapAt); d > 0 {
		rate = float64(st.Rows-p.snapRows) / d.Seconds()
	}
	p.snapRows, p.snapAt = st.Rows, now
	eta := "?"
	switch {
	case st.EstRows > 0 && st.Rows >= st.EstRows:
		eta = "0s" // done, or the estimate was low
	case rate > 0:
		eta = time.Duration(float64(st.EstRows-st.Rows) / rate * float64(time.Second)).Round(time.Second).String()
	}
	if !p.bar {
		p.line(fmt.Sprintf("snapshot %s at %s: rows=%d/%d bytes=%d/%d tables=%d/%d rows/s=%.0f eta=%s", strings.ToLower(st.Stage.String()), st.Pos,
			st.Rows, st.EstRows, st.Bytes, st.EstBytes, done, len(st.Tables), rate, eta))
		return
	}
	frac := 0.0
	if st.EstRows > 0 {
		frac = min(float64(st.Rows)/float64(st.EstRows), 1)
	}
	const width = 30
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r%ssnapshot [%s%s] %3.0f%% rows %d/%d %s/%s %.0f rows/s ETA %s tables %d/%d\x1b[K", p.prefix,
		strings.Repeat("#", n), strings.Repeat("-", width-n), frac*100, st.Rows, st.EstRows, bytesText(st.Bytes), bytesText(st.EstBytes),
		rate, eta, done, len(st.Tables))
	p.open = true
}

// bytesText is n bytes for people: 9.5 MiB.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// syncer prints a replication progress line: rows applied over d.
func (p *progress) syncer(st dmworker.SyncerStatus, rows int64, d time.Duration) {
	rate := 0.0
	if d > 0 {
		rate = float64(rows) / d.Seconds()
	}
	p.line(fmt.Sprintf("pos=%s rows=%d rows/s=%.1f lag=%.1fs", st.Checkpoint, st.Rows, rate, st.LagSeconds))
}

// final prints the last line: the final checkpoint of the subtask (st, as
// it stopped), the rows applied, the run's time and mean rate, and why the
// program ends.
func (p *progress) final(st dmworker.SubTaskStatus, why string) {
	d := time.Since(p.start)
	mean := func(rows int64) string {
		r := 0.0
		if d > 0 {
			r = float64(rows) / d.Seconds()
		}
		return fmt.Sprintf("time=%s rows/s=%.1f", d.Round(100*time.Millisecond), r)
	}
	switch {
	case st.Name == "":
		p.line("stopped, not serving the task: " + why)
	case st.Unit == "snapshot" || st.Mode == dmworker.ModeFull:
		s := st.Snapshot
		p.line(fmt.Sprintf("snapshot at %s rows=%d/%d %s: %s", s.Pos, s.Rows, s.EstRows, mean(s.Rows), why))
	default:
		p.line(fmt.Sprintf("stopped at pos=%s rows=%d %s: %s", st.Syncer.Checkpoint, st.Syncer.Rows, mean(st.Syncer.Rows), why))
	}
}
