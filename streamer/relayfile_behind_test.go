package streamer

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// TestRelayFileWriterWriteBehind writes a dump of several MiB (many write
// buffers) through a writer with write-behind, handing sync points to a
// RelayFileSyncer as the relay does, and through one without: both files
// must hold exactly the binlog the dump carries, and the sync points must
// name the file, and its directory only once, after the file's creation.
func TestRelayFileWriterWriteBehind(t *testing.T) {
	seed := rawSeedBinlog(t)
	fdeSize := int(binary.LittleEndian.Uint32(seed[4+9:]))
	fde := seed[4 : 4+fdeSize]
	listSize := int(binary.LittleEndian.Uint32(seed[4+fdeSize+9:]))
	list := seed[4+fdeSize : 4+fdeSize+listSize]
	const txns = 3000
	want := append([]byte(binlogMagic), seed[4:4+fdeSize+listSize]...)
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
		add(replication.WRITE_ROWS_EVENTv1, rows)
		add(replication.XID_EVENT, make([]byte, 8))
	}
	if len(want) < 4*relayWriteBuffer {
		t.Fatalf("the dump holds %d bytes: too few to fill several buffers", len(want))
	}
	stream := packets(1, payloads...)

	for _, behind := range []bool{true, false} {
		dir := t.TempDir()
		w, err := newRelayFileWriter(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if behind {
			w.WriteBehind()
			w.WriteBehind() // a second call does nothing
		}
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
			if events%997 != 0 {
				continue
			}
			pt, err := w.Flush()
			if err != nil {
				t.Fatal(err)
			}
			if wantFile := filepath.Join(dir, "mysql-bin.000001"); pt.File != wantFile {
				t.Fatalf("sync point names %q, want %q", pt.File, wantFile)
			}
			if pt.Dir != "" {
				dirs++
				if pt.Dir != dir {
					t.Fatalf("sync point names directory %q, want %q", pt.Dir, dir)
				}
			}
			// Flush wrote everything out: the file holds what was written.
			_, size := w.File()
			if st, err := os.Stat(pt.File); err != nil || st.Size() != size {
				t.Fatalf("after Flush the file holds %v bytes (%v), the writer wrote %d", st.Size(), err, size)
			}
			if err := fs.Sync(pt); err != nil {
				t.Fatal(err)
			}
		}
		if dirs != 1 {
			t.Fatalf("write-behind %v: %d sync points named the directory, want 1 (the file's creation)", behind, dirs)
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
		got, err := os.ReadFile(filepath.Join(dir, "mysql-bin.000001"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("write-behind %v: the file holds %d bytes, not the %d of the binlog", behind, len(got), len(want))
		}
	}
}
