package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/dmworker/dmworker/internal/benchutil"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/streamer"
)

// result is one timed drain.
type result struct {
	Bytes   int64   `json:"bytes"`   // binlog bytes read: whole files, magic included
	Events  int64   `json:"events"`  // events that occupy space in the files
	Seconds float64 `json:"seconds"` // wall clock
	PeakKB  int64   `json:"peak_kb"` // peak resident set size
	CPU     float64 `json:"cpu"`     // user + system CPU seconds of the reading process
	// Rows events whose row images the reader decoded, and those it left
	// undecoded (tables the filter drops); ours only.
	RowsDecoded int64 `json:"rows_decoded"`
	RowsSkipped int64 `json:"rows_skipped"`
}

func (r result) mbps() float64     { return float64(r.Bytes) / 1e6 / r.Seconds }
func (r result) eventsps() float64 { return float64(r.Events) / r.Seconds }

// upstreamEnv carries the upstream to the drain child, so that the password
// stays off command lines.
const upstreamEnv = "REMOTEREAD_UPSTREAM"

// drainChild is the child process's side of runOurs: it drains with
// streamer.RemoteReader from the first file to end and prints a result as
// JSON. A process of its own per run gives each run its own peak RSS and a
// fresh heap.
func drainChild(first, end, cpuprofile string, filtered bool) error {
	up, err := streamer.ParseUpstream(os.Getenv(upstreamEnv))
	if err != nil {
		return err
	}
	stop, err := streamer.ParsePosition(end)
	if err != nil {
		return err
	}
	stopProfile, err := benchutil.StartCPUProfile(cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var opts []streamer.RemoteOption
	if filtered {
		opts = append(opts, streamer.WithTableFilter(keepHalf))
	}
	res, err := drain(context.Background(), up, streamer.Position{Name: first, Offset: 4}, stop, opts...)
	if err != nil {
		return err
	}
	res.PeakKB = benchutil.PeakRSSKB()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// keepHalf is the table filter of the mixed mode: it keeps the first half
// of the fill's tables, which get half its rows (each writer alternates
// between a table of each half).
func keepHalf(schema, table string) bool {
	if schema != fillSchema {
		return false
	}
	for i := range fillTables / 2 {
		if table == fmt.Sprintf("t%d", i) {
			return true
		}
	}
	return false
}

// drain reads from start until an event ends at or after end.
func drain(ctx context.Context, up streamer.UpstreamConfig, start, end streamer.Position, opts ...streamer.RemoteOption) (result, error) {
	var res result
	t0 := time.Now()
	r, err := streamer.NewRemoteReader(up, start, opts...)
	if err != nil {
		return res, err
	}
	defer r.Close()
	file := ""
	for {
		ev, err := r.GetEvent(ctx)
		if err != nil {
			return res, err
		}
		if ev.Artificial() {
			continue
		}
		// A rotate event ends its file but its Pos names the next one.
		if ev.Pos.Name != file && ev.Header.EventType != replication.ROTATE_EVENT {
			file = ev.Pos.Name
			res.Bytes += 4 // the file's magic number
		}
		res.Events++
		res.Bytes += int64(ev.Header.EventSize)
		if re, ok := ev.Event.(*replication.RowsEvent); ok {
			if re.Rows != nil {
				res.RowsDecoded++
			} else {
				res.RowsSkipped++
			}
		}
		if (streamer.Position{Name: ev.Pos.Name, Offset: ev.Pos.Offset}).Compare(end) >= 0 {
			break
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, nil
}

// runOurs runs one drain in a child process.
func runOurs(ctx context.Context, up, first string, end streamer.Position, cpuprofile string, filtered bool) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	args := []string{"-drain-child", "-first", first, "-end", fmt.Sprintf("%s:%d", end.Name, end.Offset)}
	if cpuprofile != "" {
		args = append(args, "-cpuprofile", cpuprofile)
	}
	if filtered {
		args = append(args, "-mixed")
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), upstreamEnv+"="+up)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		return result{}, fmt.Errorf("drain child: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return result{}, fmt.Errorf("drain child output %q: %w", stdout.String(), err)
	}
	res.CPU = benchutil.CPUSeconds(cmd.ProcessState)
	return res, nil
}

// runNative copies the binlog with mariadb-binlog --raw into a new directory
// under dir and removes it again.
func runNative(ctx context.Context, bin string, up streamer.UpstreamConfig, first, dir string) (result, error) {
	out, err := os.MkdirTemp(dir, "raw-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(out)
	cmd := exec.CommandContext(ctx, bin, nativeArgs(up, first, out+"/", false)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	t0 := time.Now()
	err = cmd.Run()
	secs := time.Since(t0).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		return result{}, fmt.Errorf("%s: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	res := result{Seconds: secs, CPU: benchutil.CPUSeconds(cmd.ProcessState)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakKB = ru.Maxrss // kilobytes on Linux
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return result{}, err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return result{}, err
		}
		res.Bytes += fi.Size()
		n, err := countEvents(filepath.Join(out, e.Name()))
		if err != nil {
			return result{}, err
		}
		res.Events += n
	}
	return res, nil
}

// nativeArgs is mariadb-binlog's command line; redact hides the password for
// printing.
func nativeArgs(up streamer.UpstreamConfig, first, resultFile string, redact bool) []string {
	pw := up.Password
	if redact {
		pw = "***"
	}
	return []string{"--read-from-remote-server", "--raw",
		"--host", up.Host, "--port", strconv.Itoa(int(up.Port)), "--user", up.User, "--password=" + pw,
		"--result-file=" + resultFile, "--to-last-log", first}
}

// countEvents counts the events in a binlog file by walking the event
// headers (event_size at byte 9 of each 19-byte header). Not timed.
func countEvents(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	if _, err := br.Discard(4); err != nil {
		return 0, err
	}
	var n int64
	hdr := make([]byte, 19)
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			if err == io.EOF {
				return n, nil
			}
			return n, fmt.Errorf("%s: event %d: %w", path, n, err)
		}
		size := int(uint32(hdr[9]) | uint32(hdr[10])<<8 | uint32(hdr[11])<<16 | uint32(hdr[12])<<24)
		if size < 19 {
			return n, fmt.Errorf("%s: event %d: size %d", path, n, size)
		}
		if _, err := br.Discard(size - 19); err != nil {
			return n, fmt.Errorf("%s: event %d: %w", path, n, err)
		}
		n++
	}
}
