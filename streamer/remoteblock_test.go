package streamer

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
)

// packetSource is an io.Reader of n protocol packets, the i-th of size(i)
// bytes of payload, each byte of which is fill(i, j), with sequence
// numbers from 0; it hands out at most chunk bytes per Read, as a socket
// does.
type packetSource struct {
	n, i  int
	size  func(i int) int
	chunk int
	cur   []byte
}

func fill(i, j int) byte { return byte(i*131 + j*7 + j>>8) }

func (s *packetSource) Read(p []byte) (int, error) {
	if len(s.cur) == 0 {
		if s.i == s.n {
			return 0, io.EOF
		}
		n := s.size(s.i)
		s.cur = make([]byte, 4+n)
		binary.LittleEndian.PutUint32(s.cur, uint32(n))
		s.cur[3] = byte(s.i)
		for j := range n {
			s.cur[4+j] = fill(s.i, j)
		}
		s.i++
	}
	k := copy(p[:min(len(p), s.chunk)], s.cur)
	s.cur = s.cur[k:]
	return k, nil
}

// TestBlockReuseKeepsHeldPackets: blocks come back for reuse once nothing
// refers to them, and never while a consumer still holds a packet read
// into one: the packets kept while the reader goes on (over reused blocks,
// collections forced along the way) keep their bytes.
func TestBlockReuseKeepsHeldPackets(t *testing.T) {
	const packets = 12000 // some 48 MB: many times the tracked blocks
	size := func(i int) int { return 1000 + (i*7919)%7000 }
	src := &packetSource{n: packets, size: size, chunk: 40 << 10}
	br := &blockReader{rd: src}
	type held struct {
		i       int
		payload []byte
	}
	var kept []held
	reused := remoteBlocks.reused.Load()
	for i := 0; i < packets; i++ {
		p, err := br.next()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if len(p) != size(i) || p[0] != fill(i, 0) || p[len(p)-1] != fill(i, len(p)-1) {
			t.Fatalf("packet %d: %d bytes, want %d of its pattern", i, len(p), size(i))
		}
		// Packets held some 400 KB apart at first, 4 MB after: the
		// blocks they lie in stay, the others come back.
		if i%97 == 0 && i < 2000 || i%997 == 0 {
			kept = append(kept, held{i, p})
		}
		if i%300 == 299 {
			runtime.GC() // the blocks nothing refers to get their finalizers run
		}
	}
	if got := remoteBlocks.reused.Load() - reused; got == 0 {
		t.Fatal("no block was reused")
	}
	for _, h := range kept {
		want := make([]byte, size(h.i))
		for j := range want {
			want[j] = fill(h.i, j)
		}
		if !bytes.Equal(h.payload, want) {
			t.Fatalf("packet %d, held by the consumer, changed under it", h.i)
		}
	}
}

// FuzzBlockReader reads packets whose sizes come from the fuzzer (two bytes
// each, times a scale up to 64, so that a few bytes make a stream of many
// blocks) through a blockReader, in reads of the fuzzer's chunk size, with
// a collection now and then: every payload must come out whole and in
// order, and every third one, held to the end, must keep its bytes,
// whatever block it was read into and whatever blocks came back for reuse.
func FuzzBlockReader(f *testing.F) {
	f.Add([]byte{0, 1, 0xff, 0xff, 0x10, 0}, uint16(4096), uint8(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0}, uint16(100), uint8(64))
	f.Add([]byte{0xf0, 0x0f, 0, 0, 0x33, 0x33, 0xff, 0x7f}, uint16(65535), uint8(9))
	f.Fuzz(func(t *testing.T, sizes []byte, chunk uint16, scale uint8) {
		n := len(sizes) / 2
		size := func(i int) int {
			return int(binary.LittleEndian.Uint16(sizes[2*i:])) * (int(scale)%64 + 1) % (3 * remoteBlockSize)
		}
		src := &packetSource{n: n, size: size, chunk: int(chunk) + 1}
		br := &blockReader{rd: src}
		held := make([][]byte, n)
		for i := range n {
			p, err := br.next()
			if err != nil {
				t.Fatalf("packet %d of %d: %v", i, n, err)
			}
			if len(p) != size(i) {
				t.Fatalf("packet %d: %d bytes, want %d", i, len(p), size(i))
			}
			checkFill(t, i, p)
			if i%3 == 0 {
				held[i] = p
			}
			if i%7 == 6 {
				runtime.GC()
			}
		}
		if _, err := br.next(); err == nil {
			t.Fatal("a packet after the last one")
		}
		runtime.GC()
		for i, p := range held {
			checkFill(t, i, p)
		}
	})
}

// checkFill fails t unless p holds the bytes of packet i of a packetSource.
func checkFill(t *testing.T, i int, p []byte) {
	t.Helper()
	for j := range p {
		if p[j] != fill(i, j) {
			t.Fatalf("packet %d, byte %d: %d, want %d", i, j, p[j], fill(i, j))
		}
	}
}

// TestRowCopyReuseKeepsHeldCopies: the chunks the bodies of rows events
// are copied into (rowDecoder.copyBody) come back for reuse once nothing
// refers to them, and never while a consumer still holds a copy (a value
// decoded from it) in one: copies kept while the decoder goes on keep
// their bytes; each has the capacity of its length, so that nothing
// appended to a value can reach the next copy.
func TestRowCopyReuseKeepsHeldCopies(t *testing.T) {
	const bodies = 12000 // some 60 MB: many times the tracked chunks
	size := func(i int) int { return 1 + (i*7919)%(40<<10) }
	body := func(i int) []byte {
		b := make([]byte, size(i))
		for j := range b {
			b[j] = fill(i, j)
		}
		return b
	}
	type held struct {
		i    int
		copy []byte
	}
	var (
		d    rowDecoder
		kept []held
	)
	reused := rowCopies.reused.Load()
	for i := range bodies {
		b := body(i)
		c := d.copyBody(b)
		if !bytes.Equal(c, b) || cap(c) != len(c) {
			t.Fatalf("copy %d: %d bytes of capacity %d, want the %d bytes copied", i, len(c), cap(c), len(b))
		}
		if i%97 == 0 && i < 2000 || i%997 == 0 {
			kept = append(kept, held{i, c})
		}
		if i%300 == 299 {
			runtime.GC()
		}
	}
	if got := rowCopies.reused.Load() - reused; got == 0 {
		t.Fatal("no chunk was reused")
	}
	for _, h := range kept {
		if !bytes.Equal(h.copy, body(h.i)) {
			t.Fatalf("copy %d, held by the consumer, changed under it", h.i)
		}
	}
}
