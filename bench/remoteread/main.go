// Command remoteread measures how fast streamer.RemoteReader drains an
// upstream's binlog, side by side with `mariadb-binlog
// --read-from-remote-server --raw` copying the same files, and prints the
// figures as markdown. bench/remote-read.sh runs it against a throwaway
// MariaDB; see BENCHMARKS.md for results.
//
// Usage:
//
//	remoteread [-upstream user:pass@host:port] [-fill-mb 512] [-runs 3]
//	    [-fill-workers 2] [-mariadb-binlog PATH] [-dir DIR] [-cpuprofile FILE]
//	    [-mixed]
//
// Without -upstream (or $REMOTEREAD_UPSTREAM) it starts a throwaway MariaDB
// itself (max_binlog_size 256 MiB) under -dir and removes it at the end.
//
// Steps:
//  1. Fill: unless the upstream's binlog already holds -fill-mb MB (10^6
//     bytes), write transactions until it does (see fill.go for the
//     workload).
//  2. Drain -runs times each way, alternating ours and native: ours reads
//     from the first binlog file, offset 4, to the master position, in a
//     child process of its own (fresh heap, its own peak RSS); native is
//     mariadb-binlog copying from the first file to the end of the last one
//     into a scratch directory. Both are timed by wall clock, connection
//     included, and must read the same number of bytes.
//  3. Print each run, the medians and the ratio of ours to native MB/s.
//
// With -mixed, each run drains a third time, between the two: ours with
// streamer.WithTableFilter keeping half the fill's tables (t0 and t1 of
// four, which get half the rows), as a syncer replicating those tables
// reads; the rows events of the other half are delivered undecoded.
//
// With -cpuprofile, one more drain of ours, untimed, writes a CPU profile
// (of the filtered drain with -mixed).
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"github.com/dmworker/dmworker/internal/benchutil"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "remoteread:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		upstream    = flag.String("upstream", os.Getenv(upstreamEnv), "upstream as user:pass@host:port (default $"+upstreamEnv+"; empty: start a throwaway MariaDB)")
		fillMB      = flag.Int64("fill-mb", 512, "fill the upstream's binlog up to this many MB (10^6 bytes)")
		fillWorkers = flag.Int("fill-workers", 2, "connections writing the fill workload")
		runs        = flag.Int("runs", 3, "timed runs of each reader")
		nativeBin   = flag.String("mariadb-binlog", "mariadb-binlog", "the mariadb-binlog binary")
		dir         = flag.String("dir", "", "scratch directory (default: a new temporary one)")
		cpuprofile  = flag.String("cpuprofile", "", "write a CPU profile of one extra drain of ours to this file")
		mixed       = flag.Bool("mixed", false, "also drain with a table filter that keeps half the tables (in the child: drain so)")

		child = flag.Bool("drain-child", false, "internal: drain once and print the result as JSON")
		first = flag.String("first", "", "internal: first binlog file")
		end   = flag.String("end", "", "internal: position to stop at")
	)
	flag.Parse()
	if *child {
		return drainChild(*first, *end, *cpuprofile, *mixed)
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *runs < 1 || *fillWorkers < 1 {
		return errors.New("-runs and -fill-workers must be at least 1")
	}
	nativePath, err := exec.LookPath(*nativeBin)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	scratch := *dir
	if scratch == "" {
		if scratch, err = os.MkdirTemp("", "remoteread-"); err != nil {
			return err
		}
		defer os.RemoveAll(scratch)
	} else if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}

	if *upstream == "" {
		logf("starting a throwaway MariaDB under %s", scratch)
		m, err := testserver.Start(ctx, filepath.Join(scratch, "upstream"), testserver.MariaDBOptions{MaxBinlogSize: 256 << 20})
		if err != nil {
			return err
		}
		defer m.Close()
		*upstream = fmt.Sprintf("%s:%s@%s", m.User, m.Password, m.Addr())
	}
	up, err := streamer.ParseUpstream(*upstream)
	if err != nil {
		return err
	}
	db, err := openDB(up)
	if err != nil {
		return err
	}
	defer db.Close()

	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return fmt.Errorf("upstream %s: %w", up.SourceName(), err)
	}
	if _, err := fill(ctx, db, *fillMB*1e6, *fillWorkers, logf); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	// Let the server write out what the fill left behind (MariaDB adds a
	// binlog checkpoint event after the last commit), so that the first
	// run does not pay for it and every reader reads the same bytes.
	total, err := settledBinlogBytes(ctx, db)
	if err != nil {
		return err
	}
	files, err := benchutil.BinlogFiles(ctx, db)
	if err != nil {
		return err
	}
	endPos, err := masterPosition(ctx, db)
	if err != nil {
		return err
	}
	firstFile := files[0].Name
	logf("binlog: %d files, %d bytes, %s to %s", len(files), total, firstFile, endPos)

	loadBefore := benchutil.LoadAvg()
	var ours, filtered, native []result
	for i := range *runs {
		r, err := runOurs(ctx, *upstream, firstFile, endPos, "", false)
		if err != nil {
			return err
		}
		logf("run %d ours:   %s", i+1, r)
		ours = append(ours, r)
		if *mixed {
			f, err := runOurs(ctx, *upstream, firstFile, endPos, "", true)
			if err != nil {
				return err
			}
			logf("run %d ours, half the tables filtered: %s; rows events decoded %d, left undecoded %d", i+1, f, f.RowsDecoded, f.RowsSkipped)
			if f.Bytes != total {
				return fmt.Errorf("run %d: filtered read %d bytes, the binlog holds %d", i+1, f.Bytes, total)
			}
			filtered = append(filtered, f)
		}
		n, err := runNative(ctx, nativePath, up, firstFile, scratch)
		if err != nil {
			return err
		}
		logf("run %d native: %s", i+1, n)
		native = append(native, n)
		if r.Bytes != total || n.Bytes != total {
			return fmt.Errorf("run %d: ours read %d bytes, native %d, the binlog holds %d", i+1, r.Bytes, n.Bytes, total)
		}
	}
	loadAfter := benchutil.LoadAvg()
	if *cpuprofile != "" {
		r, err := runOurs(ctx, *upstream, firstFile, endPos, *cpuprofile, *mixed)
		if err != nil {
			return err
		}
		logf("profiled run ours: %s; profile in %s", r, *cpuprofile)
	}

	report(os.Stdout, reportData{
		version: version, native: nativePath, up: up, first: firstFile, files: len(files), total: total,
		ours: ours, filtered: filtered, nativeRes: native, load: [2]string{loadBefore, loadAfter},
	})
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r result) String() string {
	return fmt.Sprintf("%d bytes, %d events in %.2f s: %.1f MB/s, %.0f events/s, peak RSS %.1f MB, CPU %.2f s",
		r.Bytes, r.Events, r.Seconds, r.mbps(), r.eventsps(), float64(r.PeakKB)/1024, r.CPU)
}

func openDB(up streamer.UpstreamConfig) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = up.User, up.Password, "tcp", up.Addr()
	cfg.InterpolateParams = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

func masterPosition(ctx context.Context, db *sql.DB) (streamer.Position, error) {
	rows, err := db.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		return streamer.Position{}, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return streamer.Position{}, err
	}
	if !rows.Next() {
		return streamer.Position{}, errors.New("SHOW MASTER STATUS: no row; is the binlog on?")
	}
	var p streamer.Position
	dest := []any{&p.Name, &p.Offset}
	for range cols[2:] {
		dest = append(dest, new(sql.RawBytes))
	}
	return p, rows.Scan(dest...)
}

type reportData struct {
	version   string
	native    string
	up        streamer.UpstreamConfig
	first     string
	files     int
	total     int64
	ours      []result
	filtered  []result // -mixed: ours with half the tables filtered
	nativeRes []result
	load      [2]string // load averages before and after the timed runs
}

// report prints the machine, the commands, every run and the medians as
// markdown.
func report(w io.Writer, d reportData) {
	fmt.Fprintf(w, "Machine: %s\n", benchutil.Machine())
	fmt.Fprintf(w, "Upstream: MariaDB %s; binlog %d files, %.1f MB (%s onwards)\n", d.version, d.files, float64(d.total)/1e6, d.first)
	fmt.Fprintf(w, "Go: %s; %s\n", runtime.Version(), benchutil.ToolVersion(d.native))
	fmt.Fprintf(w, "Load average (1, 5, 15 min) before the runs: %s; after: %s\n\n", d.load[0], d.load[1])
	fmt.Fprintf(w, "ours:   streamer.NewRemoteReader(up, Position{Name: %q, Offset: 4}) drained to the master position, in a child process\n", d.first)
	if len(d.filtered) > 0 {
		fmt.Fprintf(w, "ours, filtered: the same with streamer.WithTableFilter keeping %s.t0 and t1 of t0-t3 (rows events decoded: %d, left undecoded: %d)\n",
			fillSchema, d.filtered[0].RowsDecoded, d.filtered[0].RowsSkipped)
	}
	fmt.Fprintf(w, "native: %s %s\n\n", filepath.Base(d.native), strings.Join(nativeArgs(d.up, d.first, "DIR/", true), " "))

	fmt.Fprintln(w, "| run | reader | MB/s | events/s | seconds | peak RSS MB | CPU s |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|")
	for i := range d.ours {
		type namedRun struct {
			name string
			r    result
		}
		row := []namedRun{{"ours", d.ours[i]}}
		if len(d.filtered) > 0 {
			row = append(row, namedRun{"ours, filtered", d.filtered[i]})
		}
		row = append(row, namedRun{"mariadb-binlog --raw", d.nativeRes[i]})
		for _, x := range row {
			fmt.Fprintf(w, "| %d | %s | %.1f | %.0f | %.2f | %.1f | %.2f |\n",
				i+1, x.name, x.r.mbps(), x.r.eventsps(), x.r.Seconds, float64(x.r.PeakKB)/1024, x.r.CPU)
		}
	}
	fmt.Fprintln(w)

	mo, mn := medians(d.ours), medians(d.nativeRes)
	fmt.Fprintf(w, "Medians of %d runs each (MB = 10^6 bytes; %d events):\n\n", len(d.ours), d.ours[0].Events)
	fmt.Fprintln(w, "| reader | MB/s | events/s | seconds | peak RSS MB | CPU s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	type named struct {
		name string
		m    median
	}
	meds := []named{{"streamer.RemoteReader (decode + CRC32)", mo}}
	var mf median
	if len(d.filtered) > 0 {
		mf = medians(d.filtered)
		meds = append(meds, named{"streamer.RemoteReader, half the tables filtered", mf})
	}
	meds = append(meds, named{"mariadb-binlog --raw (copy to files)", mn})
	for _, x := range meds {
		fmt.Fprintf(w, "| %s | %.1f | %.0f | %.2f | %.1f | %.2f |\n", x.name, x.m.mbps, x.m.eventsps, x.m.seconds, x.m.peakMB, x.m.cpu)
	}
	fmt.Fprintf(w, "\nRatio ours/native (median MB/s): %.2f\n", mo.mbps/mn.mbps)
	if len(d.filtered) > 0 {
		fmt.Fprintf(w, "Ratio ours filtered/native (median MB/s): %.2f\n", mf.mbps/mn.mbps)
	}
}

type median struct{ mbps, eventsps, seconds, peakMB, cpu float64 }

func medians(rs []result) median {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return median{
		mbps:     pick(result.mbps),
		eventsps: pick(result.eventsps),
		seconds:  pick(func(r result) float64 { return r.Seconds }),
		peakMB:   pick(func(r result) float64 { return float64(r.PeakKB) / 1024 }),
		cpu:      pick(func(r result) float64 { return r.CPU }),
	}
}

// settledBinlogBytes waits until the size of the upstream's binlog has not
// changed for two seconds (at most 30 s) and returns it.
func settledBinlogBytes(ctx context.Context, db *sql.DB) (int64, error) {
	last, err := benchutil.BinlogBytes(ctx, db)
	if err != nil {
		return 0, err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Second):
		}
		n, err := benchutil.BinlogBytes(ctx, db)
		if err != nil {
			return 0, err
		}
		if n == last {
			return n, nil
		}
		last = n
	}
	return 0, errors.New("the upstream's binlog kept growing for 30 s after the fill")
}
