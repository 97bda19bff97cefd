package streamer

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

// BenchBinlogDirEnv names a directory of binlog files (a server's datadir or
// a copy of its binlogs) or a relay directory, for BenchmarkLocalReader and
// BenchmarkParseFile; without it they are skipped. bench/local-read.sh sets
// it up with 500 MB of binlog.
const BenchBinlogDirEnv = "DMWORKER_BENCH_BINLOG_DIR"

// benchRelay returns a relay directory holding the binlog files of
// $DMWORKER_BENCH_BINLOG_DIR (the directory itself when it is a relay
// directory; otherwise one built of symlinks), the files' paths in order and
// their total size.
func benchRelay(b *testing.B) (dir string, files []string, total int64) {
	src := os.Getenv(BenchBinlogDirEnv)
	if src == "" {
		b.Skipf("set %s to a directory of binlog files (bench/local-read.sh does)", BenchBinlogDirEnv)
	}
	subs, err := ReadRelayIndex(src)
	if err != nil {
		b.Fatal(err)
	}
	if len(subs) > 0 {
		dir = src
		for _, sub := range subs {
			names, err := RelayFiles(filepath.Join(src, sub))
			if err != nil {
				b.Fatal(err)
			}
			for _, n := range names {
				files = append(files, filepath.Join(src, sub, n))
			}
		}
	} else {
		names, err := RelayFiles(src)
		if err != nil {
			b.Fatal(err)
		}
		dir = b.TempDir()
		sub := SubDirName("bench", 1)
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			b.Fatal(err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".index") {
				continue
			}
			abs, err := filepath.Abs(filepath.Join(src, n))
			if err != nil {
				b.Fatal(err)
			}
			if err := os.Symlink(abs, filepath.Join(dir, sub, n)); err != nil {
				b.Fatal(err)
			}
			files = append(files, abs)
		}
		if err := WriteRelayIndex(dir, []string{sub}); err != nil {
			b.Fatal(err)
		}
	}
	if len(files) == 0 {
		b.Fatalf("no binlog files in %s", src)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			b.Fatal(err)
		}
		total += st.Size()
	}
	return dir, files, total
}

// BenchmarkLocalReader drains a LocalReader (not following) over every file:
// framing, CRC32, decoding, positions and GTID bookkeeping. The events/s
// metric counts real events, as BenchmarkParseFile does.
func BenchmarkLocalReader(b *testing.B) {
	dir, _, total := benchRelay(b)
	ctx := context.Background()
	b.SetBytes(total)
	b.ReportAllocs()
	var events int64
	cpu0 := processCPU()
	for b.Loop() {
		r, err := NewLocalReader(dir, StartAtPosition(Position{}), WithFollow(false))
		if err != nil {
			b.Fatal(err)
		}
		for {
			ev, err := r.GetEvent(ctx)
			if errors.Is(err, ErrEndOfStream) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if !ev.Artificial() {
				events++
			}
		}
		r.Close()
	}
	reportRates(b, events, total, cpu0)
}

// BenchmarkParseFile is the floor the local reader is measured against:
// go-mysql's BinlogParser.ParseFile over the same files, one parser for all
// of them, decoding rows with the readers' settings (applyDecodeSettings,
// copied as BinlogSyncer copies them) and verifying checksums.
func BenchmarkParseFile(b *testing.B) {
	_, files, total := benchRelay(b)
	b.SetBytes(total)
	b.ReportAllocs()
	var events int64
	cpu0 := processCPU()
	for b.Loop() {
		p := benchParser()
		for _, f := range files {
			err := p.ParseFile(f, 4, func(*replication.BinlogEvent) error {
				events++
				return nil
			})
			if err != nil {
				b.Fatalf("%s: %v", f, err)
			}
		}
	}
	reportRates(b, events, total, cpu0)
}

// BenchmarkParseReaderBuffered is ParseFile without its two read calls per
// event: BinlogParser.ParseReader over a 256 KiB bufio.Reader, the same
// buffer size as the local reader's.
func BenchmarkParseReaderBuffered(b *testing.B) {
	_, files, total := benchRelay(b)
	b.SetBytes(total)
	b.ReportAllocs()
	var events int64
	cpu0 := processCPU()
	for b.Loop() {
		p := benchParser()
		for _, name := range files {
			f, err := os.Open(name)
			if err != nil {
				b.Fatal(err)
			}
			br := bufio.NewReaderSize(f, 256<<10)
			if _, err := br.Discard(4); err != nil {
				b.Fatal(err)
			}
			err = p.ParseReader(br, func(*replication.BinlogEvent) error {
				events++
				return nil
			})
			f.Close()
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
		}
	}
	reportRates(b, events, total, cpu0)
}

// benchParser is a parser set up as BinlogSyncer sets up its own from a
// config that applyDecodeSettings filled, verifying checksums.
func benchParser() *replication.BinlogParser {
	var c replication.BinlogSyncerConfig
	applyDecodeSettings(&c)
	p := replication.NewBinlogParser()
	p.SetFlavor(FlavorMariaDB)
	p.SetParseTime(c.ParseTime)
	p.SetTimestampStringLocation(c.TimestampStringLocation)
	p.SetUseDecimal(c.UseDecimal)
	p.SetUseFloatWithTrailingZero(c.UseFloatWithTrailingZero)
	p.SetRenderJSONAsMySQLText(c.RenderJSONAsMySQLText)
	p.SetVerifyChecksum(true)
	return p
}

// reportRates adds events/s (wall clock) and, where the process CPU time can
// be read, MB and events per CPU-second: on a shared machine those move far
// less with the neighbours' load than the wall-clock figures.
func reportRates(b *testing.B, events, bytesPerOp int64, cpu0 time.Duration) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	if cpu0 < 0 {
		return
	}
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
		b.ReportMetric(float64(events)/cpu.Seconds(), "events/cpu-s")
	}
}

// processCPU is the user and system time of this process so far, from
// /proc/self/stat (Linux), or -1 when it cannot be read.
func processCPU() time.Duration {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 and stime 15, in clock ticks
	// (USER_HZ, 100 on Linux).
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * (time.Second / 100)
}
