package streamer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// relayTestDump is a dump of several MiB (many write buffers, of either
// size, and one event larger than a buffer): the packets a server sends,
// and the binlog file they carry.
func relayTestDump(t *testing.T) (stream, want []byte) {
	t.Helper()
	seed := rawSeedBinlog(t)
	fdeSize := int(binary.LittleEndian.Uint32(seed[4+9:]))
	fde := seed[4 : 4+fdeSize]
	listSize := int(binary.LittleEndian.Uint32(seed[4+fdeSize+9:]))
	list := seed[4+fdeSize : 4+fdeSize+listSize]
	const txns = 5000
	want = append([]byte(binlogMagic), seed[4:4+fdeSize+listSize]...)
	payloads := [][]byte{append([]byte{0}, fakeRotate("mysql-bin.000001", 4)...), append([]byte{0}, fde...), append([]byte{0}, list...)}
	pos := uint32(4 + fdeSize + listSize)
	add := func(typ replication.EventType, body []byte) {
		pos += uint32(replication.EventHeaderSize + len(body) + 4)
		ev := rawEvent(typ, 1, pos, body)
		want = append(want, ev...)
		payloads = append(payloads, append([]byte{0}, ev...))
	}
	rows := make([]byte, 3000)
	for i := range txns {
		gtid := binary.LittleEndian.AppendUint64(nil, uint64(1000+i))
		gtid = append(binary.LittleEndian.AppendUint32(gtid, 0), 0, 0, 0, 0, 0, 0, 0)
		add(replication.MARIADB_GTID_EVENT, gtid)
		add(replication.TABLE_MAP_EVENT, make([]byte, 40))
		rows[i%len(rows)] = byte(i) // no two buffers alike
		if i == txns/2 {
			// One event larger than any buffer.
			huge := bytes.Repeat(rows, (relayDirectBuffer+len(rows))/len(rows))
			add(replication.WRITE_ROWS_EVENTv1, huge)
		} else {
			add(replication.WRITE_ROWS_EVENTv1, rows)
		}
		add(replication.XID_EVENT, make([]byte, 8))
	}
	if len(want) < 3*relayDirectWrite {
		t.Fatalf("the dump holds %d bytes: too few to fill several buffers", len(want))
	}
	stream = packets(1, payloads...)
	return stream, want
}

// TestRelayFileWriterWriteBehind writes a dump of several MiB (many write
// buffers) through a writer with write-behind, handing sync points to a
// RelayFileSyncer as the relay does, and through one without: both files
// must hold exactly the binlog the dump carries, and the sync points must
// name the file, and its directory only once, after the file's creation.
func TestRelayFileWriterWriteBehind(t *testing.T) {
	stream, want := relayTestDump(t)
	for _, behind := range []bool{true, false} {
		testRelayFileWriter(t, stream, want, behind, false, 0, false)
	}
}

// TestRelayFileWriterFlushBehind copies the dump handing sync points from
// FlushBehind to a RelayFileSyncer: once Sync returned, the file holds
// everything written before the point, with and without direct I/O, also
// across a resume.
func TestRelayFileWriterFlushBehind(t *testing.T) {
	stream, want := relayTestDump(t)
	for _, direct := range []bool{false, true} {
		for _, resumeAt := range []int{0, 7777} {
			testRelayFileWriter(t, stream, want, true, direct, resumeAt, true)
		}
	}
}

// testRelayFileWriter copies the dump in stream through a writer (with
// write-behind and direct I/O as asked), handing sync points to a
// RelayFileSyncer as the relay does, and checks that the file holds want.
// With resumeAt > 0 the writer is closed after that many events and a new
// one resumes the file, as a relay does after a restart.
func testRelayFileWriter(t *testing.T, stream, want []byte, behind, direct bool, resumeAt int, flushBehind bool) {
	t.Helper()
	mode := fmt.Sprintf("write-behind %v, direct I/O %v, resume at %d, FlushBehind %v", behind, direct, resumeAt, flushBehind)
	dir := t.TempDir()
	file := filepath.Join(dir, "mysql-bin.000001")
	w, err := newRelayFileWriter(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	setUp := func(w *RelayFileWriter) {
		if behind {
			w.WriteBehind()
			w.WriteBehind() // a second call does nothing
		}
		if direct {
			if err := w.DirectIO(); err != nil {
				t.Fatal(err)
			}
		}
	}
	setUp(w)
	var fs RelayFileSyncer
	r := newFuzzRawReader(t)
	p := newPacketReader(bytes.NewReader(stream), 1, 64<<10)
	events, dirs := 0, 0
	for {
		payload, err := p.next()
		if err != nil {
			break
		}
		deliver, err := r.process(payload[1:])
		if err != nil {
			t.Fatalf("event %d: %v", events, err)
		}
		if !deliver {
			continue
		}
		events++
		if _, err := w.WriteRaw(&r.ev); err != nil {
			t.Fatal(err)
		}
		if direct && w.f != nil && directIOWorks(t, dir) && w.df == nil {
			t.Fatalf("%s: the file system takes O_DIRECT, the writer does not use it", mode)
		}
		if events == resumeAt {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if w, err = newRelayFileWriter(dir, "mysql-bin.000001"); err != nil {
				t.Fatal(err)
			}
			setUp(w)
			continue
		}
		// Often at first (partial blocks flushed one after the other),
		// then rarely (full buffers written behind, or directly).
		if events%6007 != 0 && (events > 3000 || events%97 != 0) {
			continue
		}
		flush := w.Flush
		if flushBehind {
			flush = w.FlushBehind
		}
		pt, err := flush()
		if err != nil {
			t.Fatal(err)
		}
		if flushBehind {
			// The syncer finishes the writes the point carries.
			if err := fs.Sync(pt); err != nil {
				t.Fatal(err)
			}
		}
		if pt.File != file {
			t.Fatalf("sync point names %q, want %q", pt.File, file)
		}
		if pt.Dir != "" {
			dirs++
			if pt.Dir != dir {
				t.Fatalf("sync point names directory %q, want %q", pt.Dir, dir)
			}
		}
		// Flush (or Sync of FlushBehind's point) wrote everything out:
		// the file holds what was written.
		_, size := w.File()
		got, err := os.ReadFile(pt.File)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != size || !bytes.Equal(got, want[:size]) {
			t.Fatalf("%s: after Flush the file holds %d bytes, the writer wrote %d (equal to the binlog: %v)",
				mode, len(got), size, bytes.Equal(got, want[:min(int64(len(got)), size)]))
		}
		if err := fs.Sync(pt); err != nil {
			t.Fatal(err)
		}
	}
	if dirs != 1 {
		t.Fatalf("%s: %d sync points named the directory, want 1 (the file's creation)", mode, dirs)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := fs.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: the file holds %d bytes, not the %d of the binlog", mode, len(got), len(want))
	}
}

// TestBehindProgressWait: a syncer's wait returns once the writes it needs
// finished, and the error of one that failed, then and later.
func TestBehindProgressWait(t *testing.T) {
	p := newBehindProgress()
	done := make(chan error, 1)
	go func() { done <- p.wait(2) }()
	p.finished(nil)
	p.finished(nil)
	if err := <-done; err != nil {
		t.Fatalf("wait after two good writes: %v", err)
	}
	boom := errors.New("disk on fire")
	go func() { done <- p.wait(4) }()
	p.finished(boom)
	if err := <-done; err != boom {
		t.Fatalf("wait across a failed write: %v, want %v", err, boom)
	}
	if err := p.wait(1); err != boom {
		t.Fatalf("wait after a failed write: %v, want %v", err, boom)
	}
}
