// Command snapshot is the driver of bench/snapshot.sh: it copies one schema
// of an upstream into three fresh downstreams, one after the other, with
//
//   - ours: the snapshot unit + mysqlsink, run as the root package's
//     BenchmarkSnapshotCopy in a test binary built by the script (the unit
//     is reached through SubTask in the library; the test binary calls it
//     directly);
//   - mariadb-dump --single-transaction | mariadb;
//   - mydumper then myloader, with as many threads as ours, once as it
//     loads by default (its session does not write the downstream's binlog)
//     and once with -e (it does, as ours and mariadb do);
//
// measures each one's wall time, CPU time and peak RSS (the largest of its
// processes), checks every table downstream against the upstream (CHECKSUM
// TABLE), and prints a Markdown table with rows/s, MB/s and the ratios.
//
// Usage: snapshot -upstream u:p@h:port -ours u:p@h:port -dump u:p@h:port
// -mydumper u:p@h:port -mydumper-binlog u:p@h:port -test-bin PATH
// -schema sbtest -threads 4 -dir DIR
package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker/internal/benchutil"
	"github.com/dmworker/dmworker/streamer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "snapshot bench:", err)
		os.Exit(1)
	}
}

// result is one tool's run.
type result struct {
	name    string
	load    string // 1-minute load average when it started
	seconds float64
	cpu     float64
	rssKB   int64
	detail  string
}

func run() error {
	upFlag := flag.String("upstream", "", "upstream user:pass@host:port")
	oursFlag := flag.String("ours", "", "downstream for ours")
	oursNoBinFlag := flag.String("ours-nobinlog", "", "downstream for ours with mysqlsink.WithoutBinlog")
	dumpFlag := flag.String("dump", "", "downstream for mariadb-dump | mariadb")
	myFlag := flag.String("mydumper", "", "downstream for mydumper + myloader")
	myBinFlag := flag.String("mydumper-binlog", "", "downstream for mydumper + myloader -e")
	testBin := flag.String("test-bin", "", "test binary of the root package (go test -c)")
	schema := flag.String("schema", "sbtest", "schema to copy")
	threads := flag.Int("threads", 4, "parallel connections for ours and for mydumper/myloader")
	dir := flag.String("dir", "", "work directory (mydumper's files)")
	flag.Parse()
	var cfgs [6]streamer.UpstreamConfig
	for i, f := range []string{*upFlag, *oursFlag, *dumpFlag, *myFlag, *myBinFlag, *oursNoBinFlag} {
		c, err := streamer.ParseUpstream(f)
		if err != nil {
			return err
		}
		cfgs[i] = c
	}
	up, ours, dump, myd, mydBin, oursNoBin := cfgs[0], cfgs[1], cfgs[2], cfgs[3], cfgs[4], cfgs[5]
	updb := open(up)
	defer updb.Close()
	var rows int64
	if err := updb.QueryRow("SELECT SUM(TABLE_ROWS) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", *schema).Scan(&rows); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "copying %s (about %d rows), %d threads\n", *schema, rows, *threads)
	load := benchutil.LoadAvg()

	// Ours, with the downstream's binlog (as the syncer needs it) and
	// without (as myloader loads by default).
	oursRes, report, err := runOurs(*testBin, up, ours, *schema, *threads, false)
	if err != nil {
		return err
	}
	oursNoBinRes, _, err := runOurs(*testBin, up, oursNoBin, *schema, *threads, true)
	if err != nil {
		return err
	}
	rows = report.Rows

	// mariadb-dump | mariadb.
	fmt.Fprintln(os.Stderr, "mariadb-dump | mariadb")
	dumpCmd := exec.Command("mariadb-dump", "--protocol=tcp", "-h", up.Host, "-P", fmt.Sprint(up.Port), "-u", up.User, "-p"+up.Password,
		"--single-transaction", "--quick", "--databases", *schema)
	loadCmd := exec.Command("mariadb", "--protocol=tcp", "-h", dump.Host, "-P", fmt.Sprint(dump.Port), "-u", dump.User, "-p"+dump.Password)
	pipe, err := dumpCmd.StdoutPipe()
	if err != nil {
		return err
	}
	loadCmd.Stdin, loadCmd.Stderr, dumpCmd.Stderr = pipe, os.Stderr, os.Stderr
	dumpLoad := load1()
	t0 := time.Now()
	if err := loadCmd.Start(); err != nil {
		return err
	}
	if err := dumpCmd.Run(); err != nil {
		return fmt.Errorf("mariadb-dump: %w", err)
	}
	if err := loadCmd.Wait(); err != nil {
		return fmt.Errorf("mariadb: %w", err)
	}
	dumpRes := result{name: "mariadb-dump --single-transaction \\| mariadb", load: dumpLoad, seconds: time.Since(t0).Seconds(),
		cpu:   benchutil.CPUSeconds(dumpCmd.ProcessState) + benchutil.CPUSeconds(loadCmd.ProcessState),
		rssKB: max(maxRSS(dumpCmd.ProcessState), maxRSS(loadCmd.ProcessState)), detail: "one thread, one pipe"}
	fmt.Fprintf(os.Stderr, "mariadb-dump | mariadb: %.2fs\n", dumpRes.seconds)

	// mydumper + myloader, without and with the downstream's binlog.
	myRes, err := mydumper(up, myd, *schema, *threads, filepath.Join(*dir, "mydumper"), false)
	if err != nil {
		return err
	}
	myBinRes, err := mydumper(up, mydBin, *schema, *threads, filepath.Join(*dir, "mydumper-binlog"), true)
	if err != nil {
		return err
	}

	// Every table equal everywhere: a tool whose copy differs is marked,
	// and the run fails after printing the table.
	results := []*result{&oursRes, &oursNoBinRes, &dumpRes, &myRes, &myBinRes}
	failed := false
	for i, c := range []streamer.UpstreamConfig{ours, oursNoBin, dump, myd, mydBin} {
		if err := checkSame(updb, *schema, c); err != nil {
			results[i].detail += "; **copy differs from the upstream: " + err.Error() + "**"
			failed = true
		}
	}

	fmt.Printf("Machine: %s; load average before the runs: %s, after: %s\n\n", benchutil.Machine(), load, benchutil.LoadAvg())
	fmt.Printf("%d rows, %.1f MB of values (the sum of the copied values' sizes)\n\n", rows, float64(report.Bytes)/1e6)
	fmt.Println("| tool | load at start | seconds | rows/s | MB/s | CPU s | peak RSS MB | notes |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range results {
		fmt.Printf("| %s | %s | %.2f | %.0f | %.1f | %.1f | %.0f | %s |\n", r.name, r.load, r.seconds, float64(rows)/r.seconds,
			float64(report.Bytes)/1e6/r.seconds, r.cpu, float64(r.rssKB)/1024, r.detail)
	}
	fmt.Printf("\nSpeed ratios (time of the other / ours), binlog on for both: mariadb-dump | mariadb %.2f, mydumper + myloader -e %.2f\n",
		dumpRes.seconds/oursRes.seconds, myBinRes.seconds/oursRes.seconds)
	fmt.Printf("Binlog off for both: mydumper + myloader / ours WithoutBinlog %.2f\n", myRes.seconds/oursNoBinRes.seconds)
	fmt.Printf("Ours with the binlog against myloader without it: %.2f\n", myRes.seconds/oursRes.seconds)
	if failed {
		return fmt.Errorf("a copy differs from the upstream")
	}
	return nil
}

func dsn(c streamer.UpstreamConfig) string {
	return fmt.Sprintf("%s:%s@%s", c.User, c.Password, c.Addr())
}

func open(c streamer.UpstreamConfig) *sql.DB {
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = c.User, c.Password, "tcp", c.Addr()
	conn, _ := gomysql.NewConnector(cfg)
	return sql.OpenDB(conn)
}

// maxRSS is a finished process's peak RSS in kB.
func maxRSS(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// checkSame compares CHECKSUM TABLE of every table of schema upstream with
// the downstream's.
func checkSame(updb *sql.DB, schema string, down streamer.UpstreamConfig) error {
	rows, err := updb.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1", schema)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		tables = append(tables, n)
	}
	rows.Close()
	sum := func(db *sql.DB, table string) (int64, error) {
		var name string
		var v sql.NullInt64
		err := db.QueryRow("CHECKSUM TABLE `"+schema+"`.`"+table+"`").Scan(&name, &v)
		return v.Int64, err
	}
	for _, tbl := range tables {
		want, err := sum(updb, tbl)
		if err != nil {
			return err
		}
		db := open(down)
		got, err := sum(db, tbl)
		db.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", tbl, err)
		}
		if got != want {
			return fmt.Errorf("table %s (checksum %d, want %d)", tbl, got, want)
		}
	}
	fmt.Fprintf(os.Stderr, "all %d tables on %s equal the upstream's (CHECKSUM TABLE)\n", len(tables), down.Addr())
	return nil
}

// mydumper dumps schema from up into dir with mydumper, then loads it into
// down with myloader (with -e when binlog: the load is written to the
// downstream's binlog).
func mydumper(up, down streamer.UpstreamConfig, schema string, threads int, dir string, binlog bool) (result, error) {
	name := fmt.Sprintf("mydumper + myloader (%d threads, chunks 50000)", threads)
	if binlog {
		name = fmt.Sprintf("mydumper + myloader -e (%d threads, chunks 50000, binlog on)", threads)
	}
	fmt.Fprintln(os.Stderr, name)
	md := exec.Command("mydumper", "-h", up.Host, "-P", fmt.Sprint(up.Port), "-u", up.User, "-p", up.Password,
		"-B", schema, "-t", fmt.Sprint(threads), "-r", "50000", "-o", dir)
	md.Stdout, md.Stderr = os.Stderr, os.Stderr
	load := load1()
	t0 := time.Now()
	if err := md.Run(); err != nil {
		return result{}, fmt.Errorf("mydumper: %w", err)
	}
	dumped := time.Since(t0).Seconds()
	args := []string{"-h", down.Host, "-P", fmt.Sprint(down.Port), "-u", down.User, "-p", down.Password, "-d", dir, "-t", fmt.Sprint(threads)}
	if binlog {
		args = append(args, "-e")
	}
	ml := exec.Command("myloader", args...)
	ml.Stdout, ml.Stderr = os.Stderr, os.Stderr
	t1 := time.Now()
	// A failed load (myloader does not retry a deadlock) is reported in the
	// notes; the checksums then tell.
	loadErr := ml.Run()
	loaded := time.Since(t1).Seconds()
	fmt.Fprintf(os.Stderr, "%s: dump %.2fs + load %.2fs%s\n", name, dumped, loaded, failure(loadErr))
	return result{name: name, load: load, seconds: dumped + loaded,
		cpu:    benchutil.CPUSeconds(md.ProcessState) + benchutil.CPUSeconds(ml.ProcessState),
		rssKB:  max(maxRSS(md.ProcessState), maxRSS(ml.ProcessState)),
		detail: fmt.Sprintf("dump %.2fs + load %.2fs, %s%s", dumped, loaded, benchutil.ToolVersion("mydumper"), failure(loadErr))}, nil
}

func failure(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("; myloader failed: %v", err)
}

// load1 is the 1-minute load average.
func load1() string {
	l := benchutil.LoadAvg()
	if i := bytes.IndexByte([]byte(l), ' '); i > 0 {
		return l[:i]
	}
	return l
}

// oursReport is what BenchmarkSnapshotCopy prints.
type oursReport struct {
	Rows      int64   `json:"rows"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
	Method    string  `json:"method"`
	BlockedMS float64 `json:"blocked_ms"`
	BatchRows int     `json:"batch_rows"`
	ChunkRows int     `json:"chunk_rows"`
}

// runOurs copies schema from up into down with the snapshot unit, in the
// root package's test binary (BenchmarkSnapshotCopy).
func runOurs(testBin string, up, down streamer.UpstreamConfig, schema string, threads int, noBinlog bool) (result, oursReport, error) {
	name := "ours"
	if noBinlog {
		name = "ours, WithoutBinlog"
	}
	fmt.Fprintf(os.Stderr, "%s: snapshot unit + mysqlsink\n", name)
	cmd := exec.Command(testBin, "-test.run=^$", "-test.bench=^BenchmarkSnapshotCopy$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(), fmt.Sprintf("DMWORKER_BENCH_SNAPSHOT=%s|%s|%s|%d", dsn(up), dsn(down), schema, threads))
	if noBinlog {
		cmd.Env = append(cmd.Env, "DMWORKER_BENCH_SNAPSHOT_NOBINLOG=1")
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	l := load1()
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, oursReport{}, fmt.Errorf("%s: %w\n%s", name, err, out.String())
	}
	secs := time.Since(t0).Seconds()
	var report oursReport
	for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
		if bytes.HasPrefix(line, []byte("{")) {
			if err := json.Unmarshal(line, &report); err != nil {
				return result{}, oursReport{}, fmt.Errorf("%s' report %q: %w", name, line, err)
			}
		}
	}
	if report.Rows == 0 {
		return result{}, oursReport{}, fmt.Errorf("%s printed no report:\n%s", name, out.String())
	}
	label := "dmworker snapshot + mysqlsink"
	if noBinlog {
		label += " WithoutBinlog"
	}
	res := result{name: fmt.Sprintf("%s (%d connections, chunks %d, batches %d)", label, threads, report.ChunkRows, report.BatchRows),
		load: l, seconds: secs, cpu: benchutil.CPUSeconds(cmd.ProcessState), rssKB: maxRSS(cmd.ProcessState)}
	// The table shows the process's wall time, start included, as for the
	// other tools; the unit's own is in the notes.
	res.detail = fmt.Sprintf("unit alone %.2fs; consistent point by %s, commits blocked %.1f ms",
		report.Seconds, report.Method, report.BlockedMS)
	fmt.Fprintf(os.Stderr, "%s: %.2fs (%s)\n", name, res.seconds, res.detail)
	return res, report, nil
}
