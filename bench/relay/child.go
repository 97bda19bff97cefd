package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dmworker/dmworker/internal/benchutil"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// result is one timed copy.
type result struct {
	Bytes   int64   `json:"bytes"`   // bytes of binlog files written
	Files   int     `json:"files"`   // binlog files written
	Seconds float64 `json:"seconds"` // wall clock
	PeakKB  int64   `json:"peak_kb"` // peak resident set size of the copying process
	CPU     float64 `json:"cpu"`     // user + system CPU seconds of the copying process
	// Behind is the relay's Status().BytesBehind once it reached the end
	// position (relay runs only; must be 0 for a full copy).
	Behind uint64 `json:"behind"`
	// SyncSeconds is, for a native run, how long an fsync of each file it
	// wrote took once it had exited (not in Seconds).
	SyncSeconds float64 `json:"-"`
	// Load is the machine's 1-minute load average when the run started:
	// other processes competing for the CPUs make runs slower.
	Load float64 `json:"-"`
	// UpCPU is the CPU time the upstream server's process used during
	// the copy (its dump thread sending the binlog, mostly); -1 when the
	// server is not a process of this machine.
	UpCPU float64 `json:"-"`
}

func (r result) mbps() float64 { return float64(r.Bytes) / 1e6 / r.Seconds }

// upstreamEnv carries the upstream to the child, so that the password stays
// off command lines.
const upstreamEnv = "RELAYBENCH_UPSTREAM"

// relayChild is the child process's side of runRelay: a fresh Relay with
// the default options (the default sync policy among them) copies into the
// empty directory out, from the start of file first, until its relayed
// position reaches until; the time from Run to then is the result. A process
// of its own per run gives each run its own peak RSS and a fresh heap.
func relayChild(out, first, until, cpuprofile, tracefile string) error {
	up, err := streamer.ParseUpstream(os.Getenv(upstreamEnv))
	if err != nil {
		return err
	}
	end, err := streamer.ParsePosition(until)
	if err != nil {
		return err
	}
	stopProfile, err := benchutil.StartCPUProfile(cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if tracefile != "" {
		f, err := os.Create(tracefile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	r, err := dmworker.NewRelay(up, out, dmworker.RelayConfig{RelayStart: streamer.Position{Name: first, Offset: 4}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	t0 := time.Now()
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runErr = r.Run(ctx)
	}()
	timeout := time.NewTimer(30 * time.Minute)
	defer timeout.Stop()
	for {
		pos, moved := r.Relayed()
		if reached(pos, end) {
			break
		}
		select {
		case <-moved:
			continue
		case <-done:
			return fmt.Errorf("relay stopped at %s before %s: %w", pos, end, runErr)
		case <-timeout.C:
			r.Close()
			return fmt.Errorf("relay at %s after 30 min, short of %s", pos, end)
		}
	}
	res := result{Seconds: time.Since(t0).Seconds()}

	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	st := r.Status(sctx)
	scancel()
	if st.Upstream.Name == "" {
		r.Close()
		return errors.New("relay status: the upstream did not answer")
	}
	res.Behind = st.BytesBehind
	if err := r.Close(); err != nil {
		return err
	}
	<-done
	if runErr != nil {
		return runErr
	}
	res.Bytes, res.Files, err = binlogBytes(out)
	if err != nil {
		return err
	}
	res.PeakKB = benchutil.PeakRSSKB()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// reached reports whether the relay's durable end is at or past end.
func reached(pos streamer.RelayPos, end streamer.Position) bool {
	if pos.Name == "" {
		return false
	}
	switch c := (streamer.Position{Name: pos.Name}).Compare(streamer.Position{Name: end.Name}); {
	case c > 0:
		return true
	case c == 0:
		return pos.Offset >= end.Offset
	}
	return false
}

// binlogBytes adds up the binlog files under dir: files whose name ends in a
// numeric extension, as both mysql-bin.000001 and relay files do. The relay's
// index, meta and lock files are not counted.
func binlogBytes(dir string) (total int64, files int, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := filepath.Ext(d.Name())
		if _, perr := strconv.Atoi(strings.TrimPrefix(ext, ".")); ext == "" || perr != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		files++
		return nil
	})
	return total, files, err
}
