// Package benchutil holds what the benchmark drivers under bench/ share:
// the machine's description for reports, the upstream's binlog files, a
// process's CPU time and peak memory, and CPU profiling.
package benchutil

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
)

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// Machine describes this machine in one line: CPUs, CPU model, memory,
// operating system and kernel.
func Machine() string {
	return fmt.Sprintf("%d CPUs (%s), %s RAM, %s, kernel %s",
		runtime.NumCPU(), cpuModel(), memTotal(), osName(), strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")))
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

func osName() string {
	for _, l := range strings.Split(readFile("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

// ToolVersion is what bin --version prints, or bin's name.
func ToolVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return filepath.Base(bin)
	}
	return strings.TrimSpace(string(out))
}

// BinlogFile is one row of SHOW BINARY LOGS.
type BinlogFile struct {
	Name string
	Size int64
}

// BinlogFiles lists the server's binlog files, oldest first.
func BinlogFiles(ctx context.Context, db *sql.DB) ([]BinlogFile, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var files []BinlogFile
	for rows.Next() {
		var f BinlogFile
		dest := []any{&f.Name, &f.Size}
		for range cols[2:] { // MySQL 8 adds Encrypted
			dest = append(dest, new(sql.RawBytes))
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, rows.Err()
}

// BinlogBytes is the total size of the server's binlog files.
func BinlogBytes(ctx context.Context, db *sql.DB) (int64, error) {
	files, err := BinlogFiles(ctx, db)
	var total int64
	for _, f := range files {
		total += f.Size
	}
	return total, err
}

// CPUSeconds is the user plus system time of a finished process.
func CPUSeconds(ps *os.ProcessState) float64 {
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

// PeakRSSKB is this process's peak resident set size in kB (VmHWM in
// /proc/self/status), 0 when unknown.
func PeakRSSKB() int64 {
	for _, l := range strings.Split(readFile("/proc/self/status"), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// StartCPUProfile profiles the process into path until the returned stop is
// called; an empty path profiles nothing.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// LoadAvg is the 1, 5 and 15 minute load averages, "unknown" when unread:
// a benchmark on a busy machine says so.
func LoadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// ProcCPU is the user + system CPU seconds process pid has used (from
// /proc/PID/stat), -1 when unknown.
func ProcCPU(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command (which may hold spaces) start after
	// its closing parenthesis; utime and stime are the 14th and 15th of
	// the line, in clock ticks.
	rest := string(b)
	i := strings.LastIndexByte(rest, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(rest[i+1:])
	if len(f) < 13 {
		return -1
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}
