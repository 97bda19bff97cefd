package streamer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// localFuzzSeedPath is a corpus entry of FuzzLocalReader whose data is a
// real MariaDB binlog file (finished by a rotation); the fuzz setup also
// builds its valid relay files from it. Regenerate it with
// DMWORKER_WRITE_FUZZ_SEED=1 go test -run TestLocalReaderWriteFuzzSeed ./streamer/
const localFuzzSeedPath = "testdata/fuzz/FuzzLocalReader/mariadb-10.11-binlog"

// TestLocalReaderWriteFuzzSeed writes the seed file from a throwaway server.
func TestLocalReaderWriteFuzzSeed(t *testing.T) {
	if os.Getenv("DMWORKER_WRITE_FUZZ_SEED") == "" {
		t.Skip("set DMWORKER_WRITE_FUZZ_SEED=1 to regenerate " + localFuzzSeedPath)
	}
	m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 61})
	db := m.DB(t)
	// A few column types each, so that the seed reaches row decoding of
	// decimals, times, JSON, blobs, enums, sets and bits.
	mustExec(t, db, "CREATE DATABASE fz")
	mustExec(t, db, `CREATE TABLE fz.t (id INT PRIMARY KEY, d DECIMAL(10,2), dt DATETIME(3), ts TIMESTAMP(6) NULL,
		j JSON, b BLOB, f DOUBLE, e ENUM('a','b'), s SET('x','y'), bt BIT(5), v VARCHAR(20) CHARACTER SET utf8mb4)`)
	mustExec(t, db, `INSERT INTO fz.t VALUES (1, 12.34, '2024-02-29 10:11:12.345', '2024-01-01 00:00:00.5', '{"k":[1,2]}', x'00ff', 1.5, 'b', 'x,y', b'10101', 'Grüße'),
		(2, -0.01, NULL, NULL, 'null', '', -2e10, 'a', '', b'0', '')`)
	mustExec(t, db, "BEGIN")
	mustExec(t, db, "UPDATE fz.t SET d = d * 2, j = JSON_SET(j, '$.n', 3) WHERE id = 1")
	mustExec(t, db, "DELETE FROM fz.t WHERE id = 2")
	mustExec(t, db, "COMMIT")
	mustExec(t, db, "FLUSH BINARY LOGS")
	files, err := m.BinlogFiles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	entry := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(false)\nbool(false)\n", data)
	if err := os.WriteFile(localFuzzSeedPath, []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d bytes of binlog", localFuzzSeedPath, len(data))
}

// localFuzzSeed reads the binlog bytes out of the seed corpus entry.
func localFuzzSeed(tb testing.TB) []byte {
	tb.Helper()
	text, err := os.ReadFile(localFuzzSeedPath)
	if err != nil {
		tb.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		tb.Fatalf("%s: not a corpus entry with []byte data", localFuzzSeedPath)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		tb.Fatalf("%s: %v", localFuzzSeedPath, err)
	}
	return []byte(s)
}

// localFixCRCs recomputes the checksum of every whole event it can frame, so
// that mutations get past the CRC32 and reach the decoders.
func localFixCRCs(data []byte) []byte {
	data = bytes.Clone(data)
	for off := 4; off+19 <= len(data); {
		size := int(binary.LittleEndian.Uint32(data[off+9:]))
		if size < 23 || off+size > len(data) {
			break
		}
		ev := data[off : off+size]
		binary.LittleEndian.PutUint32(ev[size-4:], crc32.ChecksumIEEE(ev[:size-4]))
		off += size
	}
	return data
}

// localExported reports whether err is an error a caller can act on: a
// *streamer.Error wrapping one of the package's sentinels.
func localExported(err error) bool {
	var se *streamer.Error
	if !errors.As(err, &se) {
		return false
	}
	for _, s := range []error{streamer.ErrEndOfStream, streamer.ErrRelayCorrupt, streamer.ErrBadPosition,
		streamer.ErrBinlogPurged, streamer.ErrGTIDNotServable} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzLocalReader feeds mutated relay files to a non-following reader: it
// must not panic, must come to an end, and must fail only with exported
// errors. data is the first relay file; with nonLast a second, valid file
// follows it (so a damaged end is corruption, not a torn tail); with fixCRC
// the mutated events get valid checksums, which takes them to go-mysql's
// decoders.
func FuzzLocalReader(f *testing.F) {
	seed := localFuzzSeed(f)
	f.Add(seed, true, false)
	f.Add(seed[:len(seed)-10], false, false)
	flipped := bytes.Clone(seed)
	flipped[len(flipped)/2] ^= 0x10
	f.Add(flipped, true, true)
	mysqlDir := f.TempDir()
	for _, name := range writeMySQLRelay(f, mysqlDir, streamer.SubDirName("1", 1), mysqlRelayLayout) {
		data, err := os.ReadFile(filepath.Join(mysqlDir, streamer.SubDirName("1", 1), name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false, false)
	}
	f.Add(localHugeGTIDList(f, seed), false, false)
	// MySQL 8 with compressed transactions (Transaction_payload events).
	for _, mf := range mysql8Files(f) {
		f.Add(mf.Data, true, false)
	}
	// A file that holds only the magic and the format description: the
	// relay has just created it.
	fdeEnd := 4 + int(binary.LittleEndian.Uint32(seed[4+9:]))
	next := seed[:fdeEnd]

	// One relay directory per fuzzing process, its index written once:
	// inputs run one at a time in a process, and a cheap run keeps
	// minimization fast.
	dir := f.TempDir()
	sub := streamer.SubDirName("1", 1)
	localAddSubDir(f, dir, sub)
	first, second := filepath.Join(dir, sub, "mysql-bin.000001"), filepath.Join(dir, sub, "mysql-bin.000002")

	f.Fuzz(func(t *testing.T, data []byte, nonLast, fixCRC bool) {
		if fixCRC {
			data = localFixCRCs(data)
		}
		if err := os.WriteFile(first, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if nonLast {
			if err := os.WriteFile(second, next, 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Remove(second); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		plain := localFuzzRead(t, dir, len(data)+len(next))
		// With a table filter the reader decodes less: the same events
		// up to where the plain reader failed, and an error only where
		// it failed too.
		filtered := localFuzzRead(t, dir, len(data)+len(next), streamer.WithTableFilter(func(schema, table string) bool {
			return (len(schema)+len(table))%2 == 0
		}))
		n := min(len(plain.keys), len(filtered.keys))
		for i := range n {
			if plain.keys[i] != filtered.keys[i] {
				t.Fatalf("event %d: %s without the filter, %s with", i, plain.keys[i], filtered.keys[i])
			}
		}
		if len(filtered.keys) < len(plain.keys) || len(filtered.keys) > len(plain.keys) && plain.err == nil {
			t.Fatalf("%d events and %v with the filter, %d and %v without", len(filtered.keys), filtered.err, len(plain.keys), plain.err)
		}
		if len(filtered.keys) == len(plain.keys) && (filtered.err == nil) != (plain.err == nil) {
			t.Fatalf("after %d events: %v with the filter, %v without", len(plain.keys), filtered.err, plain.err)
		}
	})
}

// localFuzzRun is what a fuzzed local read delivered: its events' keys and
// the terminal error (nil at the end of the relay).
type localFuzzRun struct {
	keys []streamKey
	err  error
}

// localFuzzRead reads the relay in dir (size bytes in its files) with a
// non-following reader: it must not panic, must come to an end, and must
// fail only with exported errors.
func localFuzzRead(t *testing.T, dir string, size int, opts ...streamer.LocalOption) localFuzzRun {
	r, err := streamer.NewLocalReader(dir, streamer.StartAtPosition(streamer.Position{}), append(opts, streamer.WithFollow(false))...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Every real event takes 19 bytes or more; each file adds a fake
	// rotate. The events a Transaction_payload holds (log_pos 0 in
	// their bytes) are not in the file as such: they count apart.
	limit := size/19 + 8
	inner := 0
	var run localFuzzRun
	for n := 0; ; n++ {
		ev, err := r.GetEvent(ctx)
		if err == nil && !ev.Artificial() && len(ev.RawData) >= 19 && binary.LittleEndian.Uint32(ev.RawData[13:]) == 0 {
			if inner++; inner > 1<<20 {
				t.Fatalf("%d events from payloads", inner)
			}
			n--
		}
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("no end after %d events: %v", n, err)
			}
			if !localExported(err) {
				t.Fatalf("unexported error after %d events: %v (%T)", n, err, err)
			}
			if _, err2 := r.GetEvent(ctx); err2 != err {
				t.Fatalf("error %v, then %v: want the same terminal error", err, err2)
			}
			if !errors.Is(err, streamer.ErrEndOfStream) {
				run.err = err
			}
			return run
		}
		run.keys = append(run.keys, streamKeys([]*streamer.Event{ev})...)
		if n > limit {
			t.Fatalf("%d events from %d bytes", n, size)
		}
	}
}

// TestLocalReaderFuzzSeedReads checks that the fuzz seed is a whole binlog
// the reader reads to its end, so that mutations start from a valid file.
func TestLocalReaderFuzzSeedReads(t *testing.T) {
	seed := localFuzzSeed(t)
	dir := t.TempDir()
	sub := streamer.SubDirName("1", 1)
	localWriteFile(t, filepath.Join(dir, sub, "mysql-bin.000001"), seed)
	localAddSubDir(t, dir, sub)
	r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithFollow(false))
	evs := localReadAll(testCtx(t), t, r)
	if len(evs) < 20 || evs[len(evs)-1].Pos.Name != "mysql-bin.000002" {
		t.Fatalf("%d events, ending at %s: want the whole file up to its rotation", len(evs), evs[len(evs)-1].Pos)
	}
	checkTransactions(t, evs)
}

// localHugeGTIDList returns the seed with its GTID list (the event after the
// format description) claiming 2^28-1 GTIDs, checksum fixed: go-mysql would
// allocate 4 GiB for it.
func localHugeGTIDList(tb testing.TB, seed []byte) []byte {
	tb.Helper()
	data := bytes.Clone(seed)
	off := 4 + int(binary.LittleEndian.Uint32(data[4+9:]))
	if data[off+4] != 0xa3 { // MARIADB_GTID_LIST_EVENT
		tb.Fatalf("the seed's second event is of type %#x, want a GTID list", data[off+4])
	}
	binary.LittleEndian.PutUint32(data[off+19:], 1<<28-1)
	return localFixCRCs(data)
}

// TestLocalReaderRefusesHugeCounts checks that an event claiming more than
// it holds is corruption, not an allocation of what it claims.
func TestLocalReaderRefusesHugeCounts(t *testing.T) {
	data := localHugeGTIDList(t, localFuzzSeed(t))
	dir := t.TempDir()
	sub := streamer.SubDirName("1", 1)
	localWriteFile(t, filepath.Join(dir, sub, "mysql-bin.000001"), data)
	localAddSubDir(t, dir, sub)
	r := newLocal(t, dir, streamer.StartAtPosition(streamer.Position{}), streamer.WithFollow(false))
	var err error
	for err == nil {
		_, err = r.GetEvent(testCtx(t))
	}
	var re *streamer.RelayError
	if !errors.Is(err, streamer.ErrRelayCorrupt) || !errors.As(err, &re) || re.Offset != int64(4+binary.LittleEndian.Uint32(data[4+9:])) {
		t.Fatalf("error %v, want ErrRelayCorrupt at the GTID list", err)
	}
}
