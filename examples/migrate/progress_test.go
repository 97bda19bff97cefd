package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker"
)

// TestProgress: the snapshot's progress as a bar (rewritten in place, ended
// by the next line) and as plain lines, with rate and ETA; the final line's
// summary; -h's description and examples.
func TestProgress(t *testing.T) {
	st := dmworker.SnapshotStatus{Rows: 500, EstRows: 1000, Bytes: 5 << 20, EstBytes: 10 << 20,
		Tables: []dmworker.SnapshotTableStatus{{Done: true}, {}}}
	t0 := time.Now()
	var b bytes.Buffer
	p := &progress{w: &b, bar: true, start: t0.Add(-10 * time.Second)}
	p.snapshot(dmworker.SnapshotStatus{Rows: 0, EstRows: 1000}, t0)
	p.snapshot(st, t0.Add(time.Second))
	out := b.String()
	for _, want := range []string{"\rsnapshot [###############---------------]  50% rows 500/1000 5.0 MiB/10.0 MiB 500 rows/s ETA 1s tables 1/2\x1b[K"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "\n") {
		t.Errorf("a bar ends its line: %q", out)
	}
	p.final(dmworker.SubTaskStatus{Name: "t", Mode: dmworker.ModeAll, Unit: "syncer", Syncer: dmworker.SyncerStatus{Rows: 100}}, "done")
	if last := b.String()[len(out):]; !strings.HasPrefix(last, "\n") || !strings.Contains(last, "stopped at pos=") ||
		!strings.Contains(last, " rows=100 time=10s rows/s=10.0: done\n") {
		t.Errorf("final line %q", last)
	}

	b.Reset()
	p = &progress{w: &b}
	p.snapshot(dmworker.SnapshotStatus{EstRows: 1000}, t0)
	p.snapshot(st, t0.Add(time.Second))
	if want := "rows=500/1000 bytes=5242880/10485760 tables=1/2 rows/s=500 eta=1s\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("plain %q, want the suffix %q", b.String(), want)
	}
	if isTerminal(&b) {
		t.Error("a buffer is a terminal")
	}

	var stderr bytes.Buffer
	if code := run(t.Context(), []string{"-h"}, &b, &stderr); code != 0 || !strings.Contains(stderr.String(), "Examples:") ||
		!strings.Contains(stderr.String(), "-workers 16") || !strings.Contains(stderr.String(), "-progress") {
		t.Errorf("-h: exit %d\n%s", code, stderr.String())
	}
}
