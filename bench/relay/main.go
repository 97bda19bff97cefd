// Command relay measures how fast dmworker.Relay copies an upstream's binlog
// into a relay directory, side by side with `mariadb-binlog
// --read-from-remote-server --raw --to-last-log` copying the same files, and
// whether the relay's memory grows with the size of the binlog. It prints
// the figures as markdown. bench/relay.sh runs it against a throwaway
// MariaDB; see BENCHMARKS.md for results.
//
// Usage:
//
//	relay [-upstream user:pass@host:port] [-fill-mb 1100] [-remoteread PATH]
//	    [-runs 3] [-mariadb-binlog PATH] [-dir DIR] [-cpuprofile FILE] [-trace FILE]
//
// The upstream comes from -upstream or $RELAYBENCH_UPSTREAM.
//
// Steps:
//  1. Fill: unless the upstream's binlog already holds -fill-mb MB (10^6
//     bytes), run bench/remoteread's generator (the binary given by
//     -remoteread) until it does, then stop it before it goes on to
//     measure its own reader.
//  2. Copy -runs times each way, alternating relay and native, each into a
//     new empty directory under -dir that is removed afterwards (the first
//     pair is compared byte for byte before removal):
//     relay: dmworker.NewRelay(up, DIR, RelayConfig{RelayStart: first file:4}) with
//     every other option at its default (so the default sync policy), in a
//     child process of its own (fresh heap, its own peak RSS), timed from
//     Run until Relayed() reaches the upstream's master position;
//     native: mariadb-binlog copying from the first file to the end of the
//     last one, timed from start to exit; then an fsync of each file it
//     wrote, timed apart (the relay's copy is durable when timed,
//     mariadb-binlog's is in the page cache when it exits).
//     Both must write as many bytes as the upstream's binlog holds.
//  3. Copy once more with the relay, stopping at half the binlog, to compare
//     its peak RSS with the full copies'.
//  4. Print each run (with the CPU time the upstream server's process used
//     during it, when that server runs on this machine: its dump thread is
//     the other half of every copy), the medians, the ratio of relay to
//     native MB/s (and to native followed by its fsync) and the peak RSS at
//     half and full size.
//
// With -cpuprofile or -trace, one more full relay copy, untimed, writes a CPU
// profile or an execution trace (runtime/trace: `go tool trace -pprof=syscall
// FILE` tells where the relay's goroutines wait in system calls, `-pprof=sync`
// where they wait on each other), or both.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker/streamer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		upstream   = flag.String("upstream", os.Getenv(upstreamEnv), "upstream as user:pass@host:port (default $"+upstreamEnv+")")
		fillMB     = flag.Int64("fill-mb", 1100, "fill the upstream's binlog up to this many MB (10^6 bytes)")
		remoteread = flag.String("remoteread", "", "bench/remoteread binary, run to fill the upstream when its binlog is short")
		runs       = flag.Int("runs", 3, "timed runs of each copier")
		nativeBin  = flag.String("mariadb-binlog", "mariadb-binlog", "the mariadb-binlog binary")
		dir        = flag.String("dir", "", "scratch directory for the copies (default: a new temporary one)")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of one extra relay copy to this file")
		tracefile  = flag.String("trace", "", "write an execution trace of one extra relay copy to this file")

		child = flag.Bool("relay-child", false, "internal: copy once with a relay and print the result as JSON")
		out   = flag.String("out", "", "internal: relay directory")
		first = flag.String("first", "", "internal: first binlog file")
		until = flag.String("until", "", "internal: position to stop at")
	)
	flag.Parse()
	if *child {
		return relayChild(*out, *first, *until, *cpuprofile, *tracefile)
	}
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	case *runs < 1:
		return errors.New("-runs must be at least 1")
	case *upstream == "":
		return errors.New("no upstream: give -upstream user:pass@host:port or set $" + upstreamEnv)
	}
	nativePath, err := exec.LookPath(*nativeBin)
	if err != nil {
		return err
	}
	up, err := streamer.ParseUpstream(*upstream)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	scratch := *dir
	if scratch == "" {
		if scratch, err = os.MkdirTemp("", "relaybench-"); err != nil {
			return err
		}
		defer os.RemoveAll(scratch)
	} else if err := os.MkdirAll(scratch, 0o755); err != nil {
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

	findUpstreamPID(ctx, db)
	files, err := benchutil.BinlogFiles(ctx, db)
	if err != nil {
		return err
	}
	if sum(files) < *fillMB*1e6 {
		if *remoteread == "" {
			return fmt.Errorf("the upstream's binlog holds %d bytes, short of -fill-mb %d MB; give -remoteread to fill it", sum(files), *fillMB)
		}
		if err := fill(ctx, db, *remoteread, *upstream, *fillMB, scratch); err != nil {
			return err
		}
		if files, err = benchutil.BinlogFiles(ctx, db); err != nil {
			return err
		}
		logf("filled: the binlog holds %d bytes", sum(files))
	}
	// Let the server write out what the fill left behind, so that the
	// first run does not pay for it.
	time.Sleep(2 * time.Second)
	end, err := masterPosition(ctx, db)
	if err != nil {
		return err
	}
	if files, err = benchutil.BinlogFiles(ctx, db); err != nil {
		return err
	}
	total := sum(files)
	firstFile := files[0].Name
	half := halfway(files)
	logf("binlog: %d files, %d bytes, %s to %s; half way at %s", len(files), total, firstFile, end, half)

	var relays, natives []result
	for i := range *runs {
		keep := i == 0 // the first pair is compared before removal
		relayDir := filepath.Join(scratch, fmt.Sprintf("relay-%d", i+1))
		r, err := runRelay(ctx, *upstream, relayDir, firstFile, end, "", "")
		if err != nil {
			return err
		}
		logf("run %d relay:  %s", i+1, r)
		relays = append(relays, r)
		if !keep {
			os.RemoveAll(relayDir)
		}
		nativeDir := filepath.Join(scratch, fmt.Sprintf("native-%d", i+1))
		n, err := runNative(ctx, nativePath, up, firstFile, nativeDir)
		if err != nil {
			return err
		}
		logf("run %d native: %s", i+1, n)
		natives = append(natives, n)
		if keep {
			if err := compareCopies(relayDir, nativeDir); err != nil {
				return err
			}
			logf("run %d: the relay's files equal mariadb-binlog's byte for byte", i+1)
			os.RemoveAll(relayDir)
		}
		os.RemoveAll(nativeDir)
		if r.Bytes != total || n.Bytes != total || r.Behind != 0 {
			return fmt.Errorf("run %d: relay wrote %d bytes (%d behind), native %d, the binlog holds %d",
				i+1, r.Bytes, r.Behind, n.Bytes, total)
		}
	}

	halfDir := filepath.Join(scratch, "relay-half")
	h, err := runRelay(ctx, *upstream, halfDir, firstFile, half, "", "")
	if err != nil {
		return err
	}
	os.RemoveAll(halfDir)
	logf("half relay:    %s", h)

	if *cpuprofile != "" || *tracefile != "" {
		profDir := filepath.Join(scratch, "relay-profiled")
		p, err := runRelay(ctx, *upstream, profDir, firstFile, end, *cpuprofile, *tracefile)
		if err != nil {
			return err
		}
		os.RemoveAll(profDir)
		logf("profiled relay: %s; CPU profile in %q, trace in %q", p, *cpuprofile, *tracefile)
	}

	report(os.Stdout, reportData{
		version: version, native: nativePath, up: up, first: firstFile, files: len(files), total: total,
		relays: relays, natives: natives, half: h,
	})
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r result) String() string {
	return fmt.Sprintf("%d bytes in %d files, %.2f s: %.1f MB/s, peak RSS %.1f MB, CPU %.2f s, upstream CPU %.2f s, load %.2f",
		r.Bytes, r.Files, r.Seconds, r.mbps(), float64(r.PeakKB)/1024, r.CPU, r.UpCPU, r.Load)
}

// fill runs bench/remoteread's generator until the binlog holds fillMB MB.
// remoteread has no fill-only mode: once the binlog is big enough it goes on
// to drain it, so it is stopped (SIGTERM) as soon as the binlog has grown
// to the target, and its exit status is not held against it then.
func fill(ctx context.Context, db *sql.DB, bin, upstream string, fillMB int64, scratch string) error {
	logf("filling the upstream's binlog to %d MB with %s", fillMB, bin)
	cmd := exec.CommandContext(ctx, bin, "-fill-mb", strconv.FormatInt(fillMB, 10), "-runs", "1",
		"-dir", filepath.Join(scratch, "remoteread"))
	cmd.Env = append(os.Environ(), "REMOTEREAD_UPSTREAM="+upstream)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	full := func() bool {
		files, err := benchutil.BinlogFiles(ctx, db)
		return err == nil && sum(files) >= fillMB*1e6
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-exited:
			break wait
		case <-tick.C:
			if full() {
				cmd.Process.Signal(syscall.SIGTERM)
				err = <-exited
				break wait
			}
		}
	}
	os.RemoveAll(filepath.Join(scratch, "remoteread"))
	if !full() {
		return fmt.Errorf("fill with %s: the binlog is still short of %d MB: %v", bin, fillMB, err)
	}
	return nil
}

// runRelay runs one relay copy in a child process, into the new directory
// out, stopping at until.
func runRelay(ctx context.Context, up, out, first string, until streamer.Position, cpuprofile, tracefile string) (result, error) {
	upCPU := startUpstreamCPU()
	if err := prepare(out); err != nil {
		return result{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	args := []string{"-relay-child", "-out", out, "-first", first, "-until", fmt.Sprintf("%s:%d", until.Name, until.Offset)}
	if cpuprofile != "" {
		args = append(args, "-cpuprofile", cpuprofile)
	}
	if tracefile != "" {
		args = append(args, "-trace", tracefile)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), upstreamEnv+"="+up)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	load := loadAvg()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("relay child: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var res result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return result{}, fmt.Errorf("relay child output %q: %w", stdout.String(), err)
	}
	res.CPU, res.Load, res.UpCPU = benchutil.CPUSeconds(cmd.ProcessState), load, upCPU()
	return res, nil
}

// runNative copies the binlog with mariadb-binlog --raw into the new
// directory out.
func runNative(ctx context.Context, bin string, up streamer.UpstreamConfig, first, out string) (result, error) {
	if err := prepare(out); err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, bin, nativeArgs(up, first, out+"/", false)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	load := loadAvg()
	upCPU := startUpstreamCPU()
	t0 := time.Now()
	err := cmd.Run()
	secs := time.Since(t0).Seconds()
	upSecs := upCPU()
	if err != nil {
		return result{}, fmt.Errorf("%s: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	res := result{Seconds: secs, CPU: benchutil.CPUSeconds(cmd.ProcessState), Load: load, UpCPU: upSecs}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakKB = ru.Maxrss // kilobytes on Linux
	}
	// mariadb-binlog leaves its copy in the page cache; the relay's is on
	// disk when timed. Time the fsync that would make the copy as durable.
	t0 = time.Now()
	if err := fsyncFiles(out); err != nil {
		return res, err
	}
	res.SyncSeconds = time.Since(t0).Seconds()
	res.Bytes, res.Files, err = binlogBytes(out)
	return res, err
}

// fsyncFiles fsyncs every file in dir, then dir.
func fsyncFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range append(entries, nil) {
		p := dir
		if e != nil {
			p = filepath.Join(dir, e.Name())
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// prepare creates the empty directory out and writes back what earlier runs
// left dirty in the page cache, so that no run pays for another's writes.
func prepare(out string) error {
	syscall.Sync()
	return os.Mkdir(out, 0o755)
}

// upstreamPID is the upstream server's process id when it runs on this
// machine (its pid file, from @@pid_file, is readable here), 0 otherwise.
var upstreamPID int

// findUpstreamPID sets upstreamPID from the server's pid file.
func findUpstreamPID(ctx context.Context, db *sql.DB) {
	var path string
	if err := db.QueryRowContext(ctx, "SELECT @@pid_file").Scan(&path); err != nil {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return
	}
	// A pid file of another machine's server may name a local process
	// that is no server.
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err == nil && (strings.Contains(string(comm), "mysqld") || strings.Contains(string(comm), "mariadbd")) {
		upstreamPID = pid
	}
}

// startUpstreamCPU samples the upstream's CPU time; the function it
// returns gives the CPU seconds used since (-1 when unknown).
func startUpstreamCPU() func() float64 {
	c0 := benchutil.ProcCPU(upstreamPID)
	return func() float64 {
		c1 := benchutil.ProcCPU(upstreamPID)
		if c0 < 0 || c1 < 0 {
			return -1
		}
		return c1 - c0
	}
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	var l float64
	fmt.Sscan(benchutil.LoadAvg(), &l)
	return l
}

// nativeArgs is mariadb-binlog's command line; redact hides the password for
// printing.
func nativeArgs(up streamer.UpstreamConfig, first, resultFile string, redact bool) []string {
	pw := up.Password
	if redact {
		pw = "***"
	}
	return []string{"--read-from-remote-server", "--raw", "--to-last-log",
		"--host", up.Host, "--port", strconv.Itoa(int(up.Port)), "--user", up.User, "--password=" + pw,
		"--result-file=" + resultFile, first}
}

// compareCopies checks that the relay's subdirectory holds the same binlog
// files as mariadb-binlog wrote, byte for byte.
func compareCopies(relayDir, nativeDir string) error {
	names, err := streamer.ReadRelayIndex(relayDir)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return fmt.Errorf("relay %s: index lists %q, want one subdirectory", relayDir, names)
	}
	sub := filepath.Join(relayDir, names[0])
	relayFiles, err := streamer.RelayFiles(sub)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(nativeDir)
	if err != nil {
		return err
	}
	var nativeFiles []string
	for _, e := range entries {
		nativeFiles = append(nativeFiles, e.Name())
	}
	if !slices.Equal(relayFiles, nativeFiles) {
		return fmt.Errorf("relay files %q, mariadb-binlog's %q", relayFiles, nativeFiles)
	}
	for _, f := range relayFiles {
		if err := sameFile(filepath.Join(sub, f), filepath.Join(nativeDir, f)); err != nil {
			return err
		}
	}
	return nil
}

func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("%s and %s differ in the 1 MiB block at %d", a, b, off)
		}
		off += int64(na)
		if ea != nil || eb != nil {
			if errors.Is(ea, io.ErrUnexpectedEOF) || errors.Is(ea, io.EOF) {
				return nil
			}
			return errors.Join(ea, eb)
		}
	}
}

func openDB(up streamer.UpstreamConfig) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = up.User, up.Password, "tcp", up.Addr()
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

func sum(files []benchutil.BinlogFile) int64 {
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return n
}

// halfway is the position half way through the binlog's bytes.
func halfway(files []benchutil.BinlogFile) streamer.Position {
	want := sum(files) / 2
	for _, f := range files {
		if want < f.Size {
			return streamer.Position{Name: f.Name, Offset: uint64(max(want, 4))}
		}
		want -= f.Size
	}
	last := files[len(files)-1]
	return streamer.Position{Name: last.Name, Offset: uint64(last.Size)}
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
	version string
	native  string
	up      streamer.UpstreamConfig
	first   string
	files   int
	total   int64
	relays  []result
	natives []result
	half    result
}

// report prints the machine, the commands, every run, the medians and the
// memory comparison as markdown.
func report(w io.Writer, d reportData) {
	fmt.Fprintf(w, "Machine: %s\n", benchutil.Machine())
	fmt.Fprintf(w, "Upstream: MariaDB %s; binlog %d files, %.1f MB (%s onwards)\n", d.version, d.files, float64(d.total)/1e6, d.first)
	fmt.Fprintf(w, "Go: %s; %s\n\n", runtime.Version(), benchutil.ToolVersion(d.native))
	fmt.Fprintf(w, "relay:  dmworker.NewRelay(up, DIR, RelayConfig{RelayStart: %s:4}), default sync policy, in a child process,"+
		" timed from Run until Relayed() reaches the master position\n", d.first)
	fmt.Fprintf(w, "native: %s %s\n\n", filepath.Base(d.native), strings.Join(nativeArgs(d.up, d.first, "DIR/", true), " "))

	fmt.Fprintln(w, "| run | copier | MB/s | seconds | peak RSS MB | CPU s | upstream CPU s | load before |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|")
	for i := range d.relays {
		for _, x := range []struct {
			name string
			r    result
		}{{"relay", d.relays[i]}, {"mariadb-binlog --raw", d.natives[i]}} {
			fmt.Fprintf(w, "| %d | %s | %.1f | %.2f | %.1f | %.2f | %.2f | %.2f |\n",
				i+1, x.name, x.r.mbps(), x.r.Seconds, float64(x.r.PeakKB)/1024, x.r.CPU, x.r.UpCPU, x.r.Load)
		}
	}
	fmt.Fprintln(w)

	mr, mn := medians(d.relays), medians(d.natives)
	fmt.Fprintf(w, "Medians of %d runs each (MB = 10^6 bytes):\n\n", len(d.relays))
	fmt.Fprintln(w, "| copier | MB | MB/s | seconds | peak RSS MB | CPU s |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, x := range []struct {
		name string
		m    median
	}{{"dmworker.Relay (default fsync policy)", mr}, {"mariadb-binlog --raw --to-last-log", mn}} {
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.2f | %.1f | %.2f |\n",
			x.name, float64(d.total)/1e6, x.m.mbps, x.m.seconds, x.m.peakMB, x.m.cpu)
	}
	fmt.Fprintf(w, "\nRatio relay/native (median MB/s): %.2f\n\n", mr.mbps/mn.mbps)
	synced := make([]result, len(d.natives))
	for i, n := range d.natives {
		n.Seconds += n.SyncSeconds
		synced[i] = n
	}
	ms := medians(synced)
	fmt.Fprintf(w, "mariadb-binlog's copy is in the page cache when it exits; the relay's is fsynced when timed."+
		" mariadb-binlog followed by an fsync of each file it wrote (as durable as the relay's copy): median %.2f s, %.1f MB/s;"+
		" ratio relay/that: %.2f\n\n", ms.seconds, ms.mbps, mr.mbps/ms.mbps)

	fmt.Fprintln(w, "Relay peak RSS against binlog size:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| relay copy of | MB | peak RSS MB |")
	fmt.Fprintln(w, "|---|---:|---:|")
	fmt.Fprintf(w, "| half the binlog | %.1f | %.1f |\n", float64(d.half.Bytes)/1e6, float64(d.half.PeakKB)/1024)
	fmt.Fprintf(w, "| all of it (median of %d) | %.1f | %.1f |\n", len(d.relays), float64(d.total)/1e6, mr.peakMB)
}

type median struct{ mbps, seconds, peakMB, cpu float64 }

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
		mbps:    pick(result.mbps),
		seconds: pick(func(r result) float64 { return r.Seconds }),
		peakMB:  pick(func(r result) float64 { return float64(r.PeakKB) / 1024 }),
		cpu:     pick(func(r result) float64 { return r.CPU }),
	}
}
