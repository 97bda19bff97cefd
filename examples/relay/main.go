// Command relay keeps a durable local copy of an upstream MySQL or MariaDB
// server's binlog with dmworker.Relay, printing its progress once a second.
// It shows the public Relay API at work: NewRelay with options, Run, Status,
// the Relayed notification and Close.
//
// Usage:
//
//	go run ./examples/relay -from 'user@127.0.0.1:3306' [-from-password-file F] -dir DIR
//	    [-server-id N] [-flavor mariadb|mysql] [-start mysql-bin.000001:4]
//	    [-sync each-txn|interval=50ms|on-rotate] [-exit-when-idle 2s]
//
// DIR is the relay directory, in DM's layout (see package streamer): it is
// created if missing, and a relay that finds its own files there goes on
// from where it stopped, repairing a torn tail first.
//
// Flags:
//   - -from: the upstream, user[:password]@host:port (required). A password
//     on the command line is visible to every user (ps): give it instead
//     in a file, -from-password-file F (its content, one trailing newline
//     removed), or in the environment variable DMWORKER_FROM_PASSWORD (the
//     file first, then the password in -from, then the environment).
//   - -dir: the relay directory (required).
//   - -server-id: the replica server id the relay uses; 0 (the default)
//     picks one that no replica of the upstream uses.
//   - -flavor: mariadb or mysql; default: detect from the server's version.
//   - -start: where an empty relay directory starts, in the text form of
//     streamer.ParsePosition; the relay copies whole files, so it starts at
//     the beginning of that file. Default: the upstream's current file.
//     Ignored when DIR already holds a relay.
//   - -sync: when the relay fsyncs, and so when a position counts as
//     relayed: each-txn (after every transaction), interval=D (at most every
//     D, e.g. interval=50ms) or on-rotate (only when a file is complete).
//     Default: the library's default, interval=50ms.
//   - -exit-when-idle D: exit 0 once the relay has caught up with the
//     upstream (nothing behind, and the relayed position equal to SHOW MASTER
//     STATUS) and its relayed position has not moved for D. It cannot be
//     combined with -sync on-rotate, under which the relayed position moves
//     only when the upstream rotates its binlog.
//
// # Output
//
// Once a second, one line on stdout, fields separated by two spaces:
//
//	relayed SUBDIR/FILE:OFFSET  behind N bytes  R MB/s
//
// SUBDIR/FILE:OFFSET is the durable end of the relay ("-" before the relay
// has picked a subdirectory and file); N is how many binlog bytes the
// upstream holds that the relay does not ("?" when the upstream did not
// answer); R is the rate at which the relayed position moved over the last
// interval, in MB (10^6 bytes) per second. For example:
//
//	relayed 0-1.000001/mysql-bin.000002:48213  behind 1204 bytes  3.2 MB/s
//
// When the program stops, after the relay has made what it wrote durable, a
// last line gives the final relayed position and the bytes relayed by this
// run, its duration and their rate:
//
//	done: relayed 0-1.000001/mysql-bin.000003:1270  123456789 bytes in 12.3 s  10.0 MB/s
//
// # Stopping
//
// SIGINT or SIGTERM stop the relay, which makes what it has written durable,
// and exit 0; so does -exit-when-idle. A fault the relay cannot retry (bad
// credentials, a relay directory in use, not writable, or damaged in a way
// a crash cannot leave it: a file cut short before its durable end, garbage
// in relay.meta or server-uuid.index, an index that lost subdirectories)
// goes to stderr, never with the password, naming the file and offset, and
// exits 1; the directory is left as it was. Bad flags exit 2.
// Warnings, such as each failed connection attempt, are logged to stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/streamer"
)

func main() { cli.Main(run) }

// Timings of the watch loop.
const (
	progressEvery = time.Second
	// idleCheckEvery is how often, once the relay has been quiet for the
	// idle time, the upstream is asked whether the relay has caught up.
	idleCheckEvery = 250 * time.Millisecond
	statusTimeout  = 5 * time.Second
)

// config is what the command line asks for.
type config struct {
	up    streamer.UpstreamConfig
	dir   string
	idle  time.Duration // 0: run until interrupted
	relay dmworker.RelayConfig
}

// run is the whole program: it parses args, relays until ctx ends, the relay
// is caught up and idle for -exit-when-idle, or a fault stops it, and
// returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return cli.UsageStatus(stderr, "relay", err)
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "relay:", redact(err.Error(), cfg.up.Password))
		return cli.ExitFailure
	}
	logger := cli.WarningsLogger(stderr)
	r, err := dmworker.NewRelay(cfg.up, cfg.dir, cfg.relay, dmworker.WithLogger(logger))
	if err != nil {
		return fail(err)
	}
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runErr = r.Run(ctx)
	}()

	start := time.Now()
	m := &meter{dir: r.Dir()}
	watch(ctx, r, cfg.idle, stdout, done, m)
	r.Close() // stops Run, which makes what it wrote durable first
	<-done
	pos, _ := r.Relayed()
	m.advance(pos)
	secs := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "done: relayed %s  %d bytes in %.1f s  %.1f MB/s\n",
		posString(pos), m.total, secs, float64(m.total)/1e6/secs)
	if runErr != nil {
		return fail(runErr)
	}
	return cli.ExitOK
}

// watch prints progress, counting relayed bytes in m, until ctx ends, Run
// returns (closing done), or with idle > 0, the relay has caught up and been
// quiet for idle.
func watch(ctx context.Context, r *dmworker.Relay, idle time.Duration, out io.Writer, done <-chan struct{}, m *meter) {
	pos, moved := r.Relayed()
	m.advance(pos)
	var (
		lastMove  = time.Now() // when the relayed position last moved
		lastPrint = lastMove
		printed   int64 // m.total at the last print
		tick      = time.NewTicker(idleCheckEvery)
	)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done: // a fault stopped the relay; run reports it
			return
		case <-moved:
			pos, moved = r.Relayed()
			m.advance(pos)
			lastMove = time.Now()
			continue
		case <-tick.C:
		}
		now := time.Now()
		var st *dmworker.RelayStatus
		status := func() dmworker.RelayStatus {
			if st == nil {
				sctx, cancel := context.WithTimeout(ctx, statusTimeout)
				s := r.Status(sctx)
				cancel()
				st = &s
			}
			return *st
		}
		if now.Sub(lastPrint) >= progressEvery {
			s := status()
			m.advance(s.Relayed)
			secs := now.Sub(lastPrint).Seconds()
			fmt.Fprintf(out, "relayed %s  behind %s  %.1f MB/s\n",
				posString(s.Relayed), behind(s), float64(m.total-printed)/1e6/secs)
			lastPrint, printed = now, m.total
		}
		if idle > 0 && now.Sub(lastMove) >= idle && !cli.IdleHeld(ctx) {
			if s := status(); caughtUp(s) {
				// A move this loop has not seen yet means the
				// upstream was not idle after all.
				if p, _ := r.Relayed(); p == s.Relayed {
					return
				}
			}
		}
	}
}

// caughtUp reports whether the relay holds everything the upstream said it
// had.
func caughtUp(s dmworker.RelayStatus) bool {
	return s.Upstream.Name != "" && s.BytesBehind == 0 &&
		s.Relayed.Name == s.Upstream.Name && s.Relayed.Offset == s.Upstream.Offset
}

func posString(p streamer.RelayPos) string {
	if p.Name == "" {
		return "-"
	}
	return p.String()
}

func behind(s dmworker.RelayStatus) string {
	if s.Upstream.Name == "" {
		return "? bytes"
	}
	return fmt.Sprintf("%d bytes", s.BytesBehind)
}

// meter counts the bytes the relayed position has moved over, across files
// of a subdirectory: a closed file's size comes from the relay directory.
type meter struct {
	dir   string
	last  streamer.RelayPos
	total int64
}

func (m *meter) advance(p streamer.RelayPos) {
	if p.SubDir == "" || p == m.last {
		return
	}
	if m.last.SubDir == "" {
		// The first position seen: where this run starts, not progress.
		m.last = p
		return
	}
	if p.SubDir != m.last.SubDir {
		// A new subdirectory (the upstream changed): count from its start.
		m.last = streamer.RelayPos{SubDir: p.SubDir}
	}
	switch {
	case p.Name == "":
	case p.Name == m.last.Name:
		if p.Offset > m.last.Offset {
			m.total += int64(p.Offset - m.last.Offset)
		}
	default:
		// The rest of the last file, the files in between, and the new
		// file up to p.
		from, to := streamer.Position{Name: m.last.Name}, streamer.Position{Name: p.Name}
		files, _ := streamer.RelayFiles(filepath.Join(m.dir, p.SubDir))
		for _, f := range files {
			fp := streamer.Position{Name: f}
			if m.last.Name != "" && fp.Compare(from) < 0 || fp.Compare(to) >= 0 {
				continue
			}
			fi, err := os.Stat(filepath.Join(m.dir, p.SubDir, f))
			if err != nil {
				continue // purged meanwhile: not counted
			}
			n := fi.Size()
			if f == m.last.Name {
				n -= int64(m.last.Offset)
			}
			m.total += max(n, 0)
		}
		m.total += int64(p.Offset)
	}
	m.last = p
}

// redact hides the password should a message carry it. The library keeps
// it out of its errors; this guards against a dependency that does not.
func redact(msg, password string) string {
	if len(password) < 3 { // too short to replace without mangling the text
		return msg
	}
	return strings.ReplaceAll(msg, password, "***")
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	fs := cli.NewFlagSet("relay", stderr)
	var (
		from     = cli.Server(fs, "from", "upstream", "required", "DMWORKER_FROM_PASSWORD")
		dir      = fs.String("dir", "", "relay directory (required)")
		serverID = fs.Uint("server-id", 0, "replica server id (0: pick a free one)")
		flavor   = fs.String("flavor", "", "mariadb or mysql (default: detect)")
		start    = fs.String("start", "", "where an empty relay starts, e.g. mysql-bin.000001:4 (default: the upstream's current file)")
		sync     = fs.String("sync", "", "fsync policy: each-txn, interval=D or on-rotate (default interval=50ms)")
		idle     = fs.Duration("exit-when-idle", 0, "exit once caught up and idle for this long (0: never)")
	)
	if err := cli.Parse(fs, args); err != nil {
		return config{}, err
	}
	var cfg config
	switch {
	case !from.Given():
		return cfg, errors.New("-from user:password@host:port is required")
	case *dir == "":
		return cfg, errors.New("-dir is required")
	case *idle < 0:
		return cfg, errors.New("-exit-when-idle must not be negative")
	case *serverID > 1<<32-1:
		return cfg, fmt.Errorf("-server-id %d: must fit in 32 bits", *serverID)
	case !strings.Contains(*from.Addr, "@"):
		// Not echoed: without the '@' the password may be all there is.
		return cfg, errors.New("-from: want user[:password]@host:port")
	}
	up, err := from.Config()
	if err != nil {
		return cfg, fmt.Errorf("-from: %w", err)
	}
	switch *flavor {
	case "", streamer.FlavorMariaDB, streamer.FlavorMySQL:
	default:
		return cfg, fmt.Errorf("-flavor %q: want %s or %s", *flavor, streamer.FlavorMariaDB, streamer.FlavorMySQL)
	}
	up.Flavor = *flavor
	up.ServerID = uint32(*serverID)
	cfg.up, cfg.dir, cfg.idle = up, *dir, *idle

	if *sync != "" {
		p, onRotate, err := parseSync(*sync)
		if err != nil {
			return cfg, err
		}
		if onRotate && *idle > 0 {
			return cfg, errors.New("-exit-when-idle cannot tell when a -sync on-rotate relay has caught up: its position moves only at rotations")
		}
		cfg.relay.SyncPolicy = p
	}
	if *start != "" {
		p, err := streamer.ParsePosition(*start)
		if err != nil {
			return cfg, fmt.Errorf("-start: %w", err)
		}
		cfg.relay.RelayStart = p
	}
	return cfg, nil
}

// parseSync parses a -sync value; onRotate reports SyncOnRotate.
func parseSync(s string) (p dmworker.SyncPolicy, onRotate bool, err error) {
	switch {
	case s == "each-txn":
		return dmworker.SyncEachTransaction(), false, nil
	case s == "on-rotate":
		return dmworker.SyncOnRotate(), true, nil
	case strings.HasPrefix(s, "interval="):
		d, err := time.ParseDuration(strings.TrimPrefix(s, "interval="))
		if err != nil || d <= 0 {
			return p, false, fmt.Errorf("-sync %q: want a positive duration after interval=", s)
		}
		return dmworker.SyncInterval(d), false, nil
	}
	return p, false, fmt.Errorf("-sync %q: want each-txn, interval=D or on-rotate", s)
}
