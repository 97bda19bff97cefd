package streamer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/go-mysql-org/go-mysql/replication"
)

// UsedServerIDsForTest exposes usedServerIDs to the external tests.
func UsedServerIDsForTest(ctx context.Context, t testing.TB, c UpstreamConfig) map[uint32]bool {
	t.Helper()
	conn, err := c.connect(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	used, err := usedServerIDs(conn)
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// DeferredRowsAgree parses the events of file (a binlog file, magic first)
// twice: as the local reader does (rows decoded by the parser) and as the
// remote reader does (the header by the parser, the row images afterwards
// by decodeDeferredRows; the events a Transaction_payload holds too). Both
// must fail on the same event, or agree on every rows event's Rows and
// SkippedColumns. It returns how many rows events had their images decoded
// both ways; the comparison stops at the first event both refuse.
func DeferredRowsAgree(file []byte) (int, error) {
	n, _, err := DeferredRowsAgreeFast(file)
	return n, err
}

// DeferredRowsAgreeFast is DeferredRowsAgree, also returning how many rows
// events the deferred decoding decoded itself rather than through
// go-mysql (rowdecode.go).
func DeferredRowsAgreeFast(file []byte) (int, int, error) {
	var dec rowDecoder
	n, err := deferredRowsAgree(&dec, file)
	return n, dec.fastEvents, err
}

func deferredRowsAgree(dec *rowDecoder, file []byte) (int, error) {
	if len(file) < 4 || string(file[:4]) != binlogMagic {
		return 0, nil
	}
	eager := newDecodeParser("", nil)
	lazy := newDecodeParser("", nil)
	lazy.SetRowsEventDecodeFunc(decodeRowsHeaderChecked)
	crc, n := false, 0
	var postHeader []byte
	for off := 4; off+eventHeaderSize <= len(file); {
		size := int(binary.LittleEndian.Uint32(file[off+9:]))
		if size < eventHeaderSize || off+size > len(file) {
			return n, nil
		}
		raw := slices.Clone(file[off : off+size])
		off += size
		// As the local reader parses: counts go-mysql would trust are
		// checked first (checkDecodable), a panic is an error.
		withCRC := crc && replication.EventType(raw[4]) != replication.FORMAT_DESCRIPTION_EVENT
		if replication.EventType(raw[4]) == replication.TRANSACTION_PAYLOAD_EVENT {
			// go-mysql inflates a payload without bounds: only one the
			// local reader's bounded decoder takes goes to it.
			body := raw[eventHeaderSize:]
			if withCRC {
				body = body[:max(len(body)-checksumSize, 0)]
			}
			var pd payloadDecoder
			if _, err := pd.decode(body, postHeader); err != nil {
				return n, nil
			}
		}
		// Both see the event's bytes and nothing past them (a clone's
		// capacity is rounded up to the allocator's size class), as
		// RawData is cut where its event ends.
		be1, err1 := parseEvent(eager, slices.Clip(slices.Clone(raw)), withCRC, postHeader)
		be2, err2 := parseEvent(lazy, raw, withCRC, postHeader)
		if err1 == nil && err2 == nil {
			if fde, ok := be2.Event.(*replication.FormatDescriptionEvent); ok {
				crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
				postHeader = slices.Clone(fde.EventTypeHeaderLengths)
			}
			m, err := sameRows(dec, be1, be2, crc)
			n += m
			if err != nil {
				return n, err
			}
			continue
		}
		if err2 == nil {
			// The eager parse failed: the lazy one must fail when it
			// decodes the images.
			_, err := sameRows(dec, nil, be2, crc)
			if err == nil {
				return n, fmt.Errorf("event at %d: the parser refuses it (%v), the deferred decoding does not", off-size, err1)
			}
			if !errors.Is(err, errLazyFailed) {
				return n, err
			}
			return n, nil
		}
		if err1 == nil {
			return n, fmt.Errorf("event at %d: the header-only parse refuses it (%v), the full one does not", off-size, err2)
		}
		return n, nil
	}
	return n, nil
}

// sameRows decodes the deferred images of lazy's rows events (the event's
// or those its payload holds) and compares them with eager's. eager nil:
// one of lazy's must fail (errLazyFailed).
func sameRows(dec *rowDecoder, eager, lazy *replication.BinlogEvent, crc bool) (int, error) {
	var pairs [][2]*replication.BinlogEvent
	var crcs []bool
	if tp, ok := lazy.Event.(*replication.TransactionPayloadEvent); ok {
		var inner []*replication.BinlogEvent
		if eager != nil {
			inner = eager.Event.(*replication.TransactionPayloadEvent).Events
			if len(inner) != len(tp.Events) {
				return 0, fmt.Errorf("payload of %d events, %d parsed eagerly", len(tp.Events), len(inner))
			}
		}
		for i, e := range tp.Events {
			p := [2]*replication.BinlogEvent{nil, e}
			if eager != nil {
				p[0] = inner[i]
			}
			pairs, crcs = append(pairs, p), append(crcs, false)
		}
	} else {
		pairs, crcs = append(pairs, [2]*replication.BinlogEvent{eager, lazy}), append(crcs, crc)
	}
	n := 0
	for i, p := range pairs {
		re, ok := p[1].Event.(*replication.RowsEvent)
		if !ok {
			continue
		}
		if re.Rows != nil {
			return n, errors.New("the header-only parse decoded rows")
		}
		if err := decodeDeferredRows(dec, re, p[1].RawData, crcs[i]); err != nil {
			if p[0] == nil {
				return n, fmt.Errorf("%w: %w", errLazyFailed, err)
			}
			return n, fmt.Errorf("%s: the parser decodes it, the deferred decoding fails: %w", p[1].Header.EventType, err)
		}
		if p[0] == nil {
			continue
		}
		want := p[0].Event.(*replication.RowsEvent)
		if !rowsEqual(want.Rows, re.Rows) || !reflect.DeepEqual(want.SkippedColumns, re.SkippedColumns) {
			return n, fmt.Errorf("%s: deferred rows %v, the parser's %v", p[1].Header.EventType, re.Rows, want.Rows)
		}
		n++
	}
	return n, nil
}

var errLazyFailed = errors.New("deferred decoding failed")

// rowsEqual is reflect.DeepEqual but for NaN, which a damaged DOUBLE may
// decode to and which equals nothing.
func rowsEqual(a, b [][]any) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			x, y := a[i][j], b[i][j]
			if fx, ok := x.(float64); ok {
				if fy, ok := y.(float64); ok && math.IsNaN(fx) && math.IsNaN(fy) {
					continue
				}
			}
			if fx, ok := x.(float32); ok {
				if fy, ok := y.(float32); ok && fx != fx && fy != fy {
					continue
				}
			}
			if !reflect.DeepEqual(x, y) {
				return false
			}
		}
	}
	return true
}

// RowsDecoders parses file, a binlog file whose last event is a rows event,
// and returns functions that decode that event's row images again and
// again: with go-mysql's RowsEvent.DecodeData, and with the row decoder
// (rowdecode.go), as the remote reader's deferred decoding does.
func RowsDecoders(file []byte) (goMySQL, ours func() error, err error) {
	p := newDecodeParser("", nil)
	p.SetRowsEventDecodeFunc(decodeRowsHeaderChecked)
	crc := false
	var re *replication.RowsEvent
	var raw []byte
	var crcRows bool
	for off := 4; off+eventHeaderSize <= len(file); {
		size := int(binary.LittleEndian.Uint32(file[off+9:]))
		ev := file[off : off+size : off+size]
		off += size
		withCRC := crc && replication.EventType(ev[4]) != replication.FORMAT_DESCRIPTION_EVENT
		be, err := parseEvent(p, ev, withCRC, nil)
		if err != nil {
			return nil, nil, err
		}
		switch e := be.Event.(type) {
		case *replication.FormatDescriptionEvent:
			crc = e.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
		case *replication.RowsEvent:
			re, raw, crcRows = e, ev, withCRC
		}
	}
	if re == nil {
		return nil, nil, errors.New("no rows event")
	}
	var d rowDecoder
	return func() error { return decodeDeferredRows(nil, re, raw, crcRows) },
		func() error { return decodeDeferredRows(&d, re, raw, crcRows) }, nil
}

// RemoteBlocksReused is how many blocks RemoteReaders have read packets
// into a second time (see remoteBlocks).
func RemoteBlocksReused() int64 { return remoteBlocks.reused.Load() }

// RemoteBlocksTracked is how many blocks RemoteReaders have handed out for
// reuse that have not come back yet.
func RemoteBlocksTracked() int64 { return remoteBlocks.tracked.Load() }
