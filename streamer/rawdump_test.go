package streamer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// errTestInterrupt stands for a read the reader's context interrupted.
var errTestInterrupt = errors.New("test interruption")

// choppyReader hands out its data in pieces of at most chunk bytes and fails
// every third read with errTestInterrupt, without losing anything.
type choppyReader struct {
	data  []byte
	chunk int
	reads int
}

func (c *choppyReader) Read(b []byte) (int, error) {
	c.reads++
	if c.reads%3 == 0 {
		return 0, errTestInterrupt
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// packets frames payloads as the server sends them, sequence numbers from
// seq on: a payload of 2^24-1 bytes or more is split, with an empty packet
// after an exact multiple.
func packets(seq uint8, payloads ...[]byte) []byte {
	var out []byte
	for _, p := range payloads {
		for {
			n := min(len(p), maxPacketPayload)
			out = append(out, byte(n), byte(n>>8), byte(n>>16), seq)
			out = append(out, p[:n]...)
			seq++
			p = p[n:]
			if n < maxPacketPayload {
				break
			}
		}
	}
	return out
}

// nextRetrying calls next until it returns something other than an
// interruption.
func nextRetrying(p *packetReader) ([]byte, error) {
	for {
		b, err := p.next()
		if !errors.Is(err, errTestInterrupt) {
			return b, err
		}
	}
}

func TestPacketReader(t *testing.T) {
	seed := byte(0)
	payload := func(n int) []byte {
		seed++
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7) + seed
		}
		return b
	}
	const buf = 256
	small := []int{0, 1, 100, buf - 5, buf - 4, buf - 3, buf, 3 * buf, 17}
	huge := []int{maxPacketPayload - 1, maxPacketPayload, maxPacketPayload + 5, 9}
	for _, tc := range []struct {
		sizes  []int
		chunks []int
	}{
		{small, []int{1, 7, 300}},
		{append(small, huge...), []int{4093, 1 << 20}},
	} {
		var want [][]byte
		for _, n := range tc.sizes {
			want = append(want, payload(n))
		}
		stream := packets(1, want...)
		for _, chunk := range tc.chunks {
			t.Run(fmt.Sprintf("%d payloads in reads of %d", len(want), chunk), func(t *testing.T) {
				p := newPacketReader(&choppyReader{data: stream, chunk: chunk}, 1, buf)
				for i, w := range want {
					got, err := nextRetrying(p)
					if err != nil {
						t.Fatalf("payload %d (%d bytes): %v", i, len(w), err)
					}
					if !bytes.Equal(got, w) {
						t.Fatalf("payload %d: got %d bytes, want %d, equal prefix %v", i, len(got), len(w), bytes.HasPrefix(w, got))
					}
				}
				if _, err := nextRetrying(p); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("after the last packet: %v", err)
				}
			})
		}
	}

	t.Run("sequence", func(t *testing.T) {
		s := packets(1, []byte("a"), []byte("b"))
		s[4+1+3] = 9 // the second packet's sequence number
		p := newPacketReader(bytes.NewReader(s), 1, buf)
		if _, err := p.next(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.next(); !errors.Is(err, errPacketSequence) {
			t.Fatalf("out-of-sequence packet: %v", err)
		}
	})
	t.Run("cut short", func(t *testing.T) {
		s := packets(1, payload(1000))
		p := newPacketReader(bytes.NewReader(s[:500]), 1, buf)
		if _, err := p.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated packet: %v", err)
		}
	})
}

// rawSeedBinlog is the real MariaDB binlog file of FuzzLocalReader's seed.
func rawSeedBinlog(tb testing.TB) []byte {
	tb.Helper()
	text, err := os.ReadFile("testdata/fuzz/FuzzLocalReader/mariadb-10.11-binlog")
	if err != nil {
		tb.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(s)
}

// fakeRotate is the artificial rotate a dump starts with (no checksum).
func fakeRotate(name string, pos uint64) []byte {
	ev := make([]byte, replication.EventHeaderSize, replication.EventHeaderSize+8+len(name))
	ev[4] = byte(replication.ROTATE_EVENT)
	binary.LittleEndian.PutUint32(ev[9:], uint32(replication.EventHeaderSize+8+len(name)))
	binary.LittleEndian.PutUint16(ev[17:], replication.LOG_EVENT_ARTIFICIAL_F)
	ev = binary.LittleEndian.AppendUint64(ev, pos)
	return append(ev, name...)
}

// dumpStream frames a binlog file as a dump of it: the fake rotate, then
// each event the file's headers delimit as an OK packet; bytes the headers
// do not delimit go last, as one more packet.
func dumpStream(binlog []byte) []byte {
	payloads := [][]byte{append([]byte{0}, fakeRotate("mysql-bin.000001", 4)...)}
	off := 0
	if bytes.HasPrefix(binlog, []byte(binlogMagic)) {
		off = 4
	}
	for off+replication.EventHeaderSize <= len(binlog) {
		size := int(binary.LittleEndian.Uint32(binlog[off+9:]))
		if size < replication.EventHeaderSize || off+size > len(binlog) {
			break
		}
		payloads = append(payloads, append([]byte{0}, binlog[off:off+size]...))
		off += size
	}
	if off < len(binlog) {
		payloads = append(payloads, append([]byte{0}, binlog[off:]...))
	}
	return packets(1, payloads...)
}

func fixCRCs(data []byte) []byte {
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

func newFuzzRawReader(tb testing.TB) *RawReader {
	r, err := NewRawReader(UpstreamConfig{Host: "fuzz", Port: 1, User: "u", Flavor: FlavorMariaDB},
		Position{Name: "mysql-bin.000001", Offset: 4})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// TestRawStreamSeed reads the seed binlog as a dump and checks the raw
// reader against go-mysql's parser and the decoded-event tracker: the same
// bytes, positions, transaction ends and GTID sets.
func TestRawStreamSeed(t *testing.T) {
	binlog := rawSeedBinlog(t)
	r := newFuzzRawReader(t)
	p := newPacketReader(&choppyReader{data: dumpStream(binlog), chunk: 100}, 1, 512)

	parser := replication.NewBinlogParser()
	parser.SetFlavor(FlavorMariaDB)
	parser.SetVerifyChecksum(true)
	tr := newTxnTracker(FlavorMariaDB, nil)
	off, events, ends := 4, 0, 0
	for {
		payload, err := nextRetrying(p)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		deliver, err := r.process(payload[1:])
		if err != nil {
			t.Fatalf("event %d: %v", events, err)
		}
		if !deliver {
			t.Fatalf("event %d not delivered", events)
		}
		ev := &r.ev
		if ev.Artificial() {
			continue
		}
		size := int(ev.Header.EventSize)
		if !bytes.Equal(ev.Data, binlog[off:off+size]) {
			t.Fatalf("event at %d: bytes differ from the file", off)
		}
		be, err := parser.Parse(binlog[off : off+size])
		if err != nil {
			t.Fatal(err)
		}
		_, txnEnd, err := tr.observe(be)
		if err != nil {
			t.Fatal(err)
		}
		off += size
		events++
		if ev.TxnEnd != txnEnd {
			t.Fatalf("event %s at %d: raw txn end %v, decoded %v", ev.Header.EventType, off, ev.TxnEnd, txnEnd)
		}
		if ev.Header.EventType != replication.ROTATE_EVENT && (ev.Pos.Name != "mysql-bin.000001" || ev.Pos.Offset != uint64(off)) {
			t.Fatalf("event %s ending at %d: position %s", ev.Header.EventType, off, ev.Pos)
		}
		if txnEnd {
			ends++
			if got := r.GTIDSet(); got == nil || tr.gset == nil || got.String() != tr.gset.String() {
				t.Fatalf("at %d: raw GTID set %v, decoded %v", off, got, tr.gset)
			}
		}
	}
	if off != len(binlog) || ends < 3 {
		t.Fatalf("read %d of %d bytes, %d transactions", off, len(binlog), ends)
	}
	if r.ev.Header.EventType != replication.ROTATE_EVENT || r.ev.Pos.Name != "mysql-bin.000002" || r.ev.Pos.Offset != 4 {
		t.Fatalf("the file ends with %s, position %s", r.ev.Header.EventType, r.ev.Pos)
	}
}

// FuzzRawStream feeds the raw reader's decoding (packets, headers,
// checksums, framing fields, rotates) with mutated dumps: either a mutated
// binlog framed as a dump (wire false; fixCRC recomputes the checksums so
// that mutations reach the decoders) or mutated wire bytes. It must never
// panic, must report damage as errors, and may not move a file's offset
// backwards.
func FuzzRawStream(f *testing.F) {
	seed := rawSeedBinlog(f)
	f.Add(seed, false, false, uint8(100))
	f.Add(dumpStream(seed), true, false, uint8(7))
	f.Add(seed[:len(seed)/2], false, true, uint8(1))
	f.Add(packets(1, []byte{0xff, 0x28, 0x05, '#', 'H', 'Y', '0', '0', '0', 'x'}), true, false, uint8(3))
	// MySQL 8 with compressed transactions (Transaction_payload events).
	f.Add(readFixtureFile(f, "binlog.000002"), false, false, uint8(200))
	f.Add(readFixtureFile(f, "binlog.000001"), false, true, uint8(50))
	f.Fuzz(fuzzRawStream)
}

func fuzzRawStream(t *testing.T, data []byte, wire, fixCRC bool, chunk uint8) {
	stream := data
	if !wire {
		if fixCRC {
			data = fixCRCs(data)
		}
		stream = dumpStream(data)
	}
	r := newFuzzRawReader(t)
	p := newPacketReader(&choppyReader{data: stream, chunk: int(chunk) + 1}, 1, 256)
	var last Position
	for i := 0; i < 10000; i++ {
		payload, err := nextRetrying(p)
		if err != nil {
			return
		}
		if len(payload) == 0 || payload[0] != 0 {
			return
		}
		deliver, err := r.process(payload[1:])
		if err != nil {
			if !errors.Is(err, errStream) && !errors.Is(err, ErrChecksum) && !strings.HasPrefix(err.Error(), "event ") {
				t.Fatalf("error %q names no event and is neither a malformed stream nor a checksum mismatch", err)
			}
			return
		}
		if !deliver {
			continue
		}
		ev := &r.ev
		if len(ev.Data) != len(payload)-1 || int(ev.Header.EventSize) != len(ev.Data) {
			t.Fatalf("event of %d bytes from a payload of %d, header says %d", len(ev.Data), len(payload), ev.Header.EventSize)
		}
		if ev.Header.EventType != replication.ROTATE_EVENT && !ev.Artificial() &&
			ev.Pos.Name == last.Name && ev.Pos.Offset < last.Offset {
			t.Fatalf("position went back from %s to %s", last, ev.Pos)
		}
		last = ev.Pos
		_ = r.GTIDSet()
	}
}

// rawEvent builds an event with a valid checksum.
func rawEvent(typ replication.EventType, serverID, logPos uint32, body []byte) []byte {
	size := replication.EventHeaderSize + len(body) + 4
	ev := make([]byte, replication.EventHeaderSize, size)
	ev[4] = byte(typ)
	binary.LittleEndian.PutUint32(ev[5:], serverID)
	binary.LittleEndian.PutUint32(ev[9:], uint32(size))
	binary.LittleEndian.PutUint32(ev[13:], logPos)
	ev = append(ev, body...)
	return binary.LittleEndian.AppendUint32(ev, crc32.ChecksumIEEE(ev))
}

// TestRawReaderAllocatesNothingPerEvent reads a dump of many MariaDB
// transactions (GTID, BEGIN, table map, rows, XID) through the packet reader
// and process into a RelayFileWriter, as the relay does, and counts
// allocations: the promise is none per event, the GTID set being updated in
// place.
func TestRawReaderAllocatesNothingPerEvent(t *testing.T) {
	seed := rawSeedBinlog(t)
	fdeSize := int(binary.LittleEndian.Uint32(seed[4+9:]))
	fde := seed[4 : 4+fdeSize]
	listSize := int(binary.LittleEndian.Uint32(seed[4+fdeSize+9:]))
	list := seed[4+fdeSize : 4+fdeSize+listSize] // the GTID list: a known set from the start
	const txns = 2000
	payloads := [][]byte{append([]byte{0}, fakeRotate("mysql-bin.000001", 4)...), append([]byte{0}, fde...), append([]byte{0}, list...)}
	pos := uint32(4 + fdeSize + listSize)
	add := func(typ replication.EventType, body []byte) {
		pos += uint32(replication.EventHeaderSize + len(body) + 4)
		payloads = append(payloads, append([]byte{0}, rawEvent(typ, 1, pos, body)...))
	}
	query := func(q string) []byte {
		b := make([]byte, 13, 13+1+len(q))
		b[8] = 0 // schema length
		return append(append(b, 0), q...)
	}
	for i := range txns {
		gtid := binary.LittleEndian.AppendUint64(nil, uint64(1000+i))
		gtid = append(binary.LittleEndian.AppendUint32(gtid, 0), 0, 0, 0, 0, 0, 0, 0)
		add(replication.MARIADB_GTID_EVENT, gtid)
		add(replication.QUERY_EVENT, query("BEGIN"))
		add(replication.TABLE_MAP_EVENT, make([]byte, 40))
		add(replication.WRITE_ROWS_EVENTv1, make([]byte, 500))
		add(replication.XID_EVENT, make([]byte, 8))
	}
	stream := packets(1, payloads...)

	var r *RawReader
	var p *packetReader
	var w *RelayFileWriter
	events := 0
	read := func() {
		for {
			payload, err := p.next()
			if err != nil {
				break
			}
			deliver, err := r.process(payload[1:])
			if err != nil {
				t.Fatalf("event %d: %v", events, err)
			}
			if deliver {
				events++
				if _, err := w.WriteRaw(&r.ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	setup := func() {
		dir, err := os.MkdirTemp(t.TempDir(), "")
		if err != nil {
			t.Fatal(err)
		}
		if w, err = newRelayFileWriter(dir, ""); err != nil {
			t.Fatal(err)
		}
		r = newFuzzRawReader(t)
		p = newPacketReader(bytes.NewReader(stream), 1, 64<<10)
		events = 0
	}
	setup()
	read()
	if events != len(payloads) {
		t.Fatalf("%d of %d events delivered", events, len(payloads))
	}
	if got := r.GTIDSet().String(); got != fmt.Sprintf("0-1-%d", 1000+txns-1) {
		t.Fatalf("GTID set %s after %d transactions", got, txns)
	}
	if _, size := w.File(); size != int64(pos) {
		t.Fatalf("relay file of %d bytes, want %d", size, pos)
	}
	allocs := testing.AllocsPerRun(3, func() {
		setup()
		read()
	})
	// Setting up a reader, a writer, their buffers and file, the set
	// from the GTID list and the format description cost a fixed number,
	// whatever the number of events.
	if perEvent := allocs / float64(events); allocs > 200 || perEvent > 0.02 {
		t.Fatalf("%.0f allocations for %d events (%.4f per event)", allocs, events, perEvent)
	}
	t.Logf("%.0f allocations for %d events", allocs, events)
}
