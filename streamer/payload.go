package streamer

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/klauspost/compress/zstd"
)

// MySQL 8.0.20+ with binlog_transaction_compression=ON writes each
// transaction's events (BEGIN, table maps, rows, XID or COMMIT; never its
// GTID event, which stays in front of it) as one Transaction_payload event.
// Its body, after the common header and before the checksum:
//
//	field*    type (length-encoded integer: 1 payload size, 2 compression
//	          type, 3 uncompressed size), length of the value in bytes
//	          (length-encoded), value (a length-encoded integer); fields of
//	          unknown type are skipped
//	0x00      end of the fields
//	payload   the compressed events, payload size bytes: a zstd frame
//	          (compression type 0), or the events as they are (255, NONE)
//
// Uncompressed, the events lie back to back, each with its common header
// (log_pos 0: the server never stamped them) and no checksum.
//
// How the readers deliver them (the positions follow go-mysql, whose
// BinlogParser stamps the inner events' log_pos the same way):
//   - RemoteReader and LocalReader deliver the inner events, each as an
//     Event, in place of the payload event; RawData is the inner event's
//     bytes (no checksum, log_pos 0). An inner event has no position of its
//     own on the server: Pos (and Header.LogPos) is the payload event's
//     start for every inner event but the last, and the payload event's end
//     for the last, which ends the transaction (TxnEnd). Resuming at the
//     start reads the whole payload again; at the end, after it.
//   - RawReader delivers the payload event itself, byte for byte (the relay
//     copies it), with TxnEnd and the GTID set at its end taken from the
//     inner events it holds.

// Transaction_payload field types and compression types.
const (
	payloadFieldEnd         = 0
	payloadFieldSize        = 1
	payloadFieldCompression = 2
	payloadFieldRawSize     = 3

	payloadZstd = 0
	payloadNone = 255

	// maxPayloadSize bounds a payload's events uncompressed: they are
	// held in memory whole, as go-mysql and MySQL before 8.0.30 hold them.
	// 1 GiB, MySQL's largest max_allowed_packet.
	maxPayloadSize = 1 << 30
	// maxZstdRatio bounds zstd's compression ratio (an RLE block of 128
	// KiB takes 4 bytes), so that a damaged frame header cannot make the
	// decoder allocate for more than its data can hold.
	maxZstdRatio = 1 << 15
)

// errPayload marks a Transaction_payload event that cannot be decoded.
var errPayload = errors.New("bad transaction payload")

// payloadDecoder decodes Transaction_payload events. It reuses its zstd
// decoder (made with no reader, so it starts no goroutine) and its buffer;
// not safe for concurrent use.
type payloadDecoder struct {
	zd  *zstd.Decoder
	buf []byte
}

// payloadHeader is what a Transaction_payload event's fields say.
type payloadHeader struct {
	compression       uint64
	size, rawSize     uint64
	hasSize, hasRawSz bool
}

// parsePayloadHeader splits a Transaction_payload event's body (without
// header and checksum) into its fields and the payload.
func parsePayloadHeader(body []byte) (payloadHeader, []byte, error) {
	var h payloadHeader
	hasType := false
	pos := 0
	for {
		typ, n, ok := lenenc(body, pos)
		if !ok {
			return h, nil, fmt.Errorf("%w: its fields end before the end mark", errPayload)
		}
		pos += n
		if typ == payloadFieldEnd {
			break
		}
		l, n, ok := lenenc(body, pos)
		if !ok || l > uint64(len(body)-pos-n) {
			return h, nil, fmt.Errorf("%w: field %d runs past the event", errPayload, typ)
		}
		pos += n
		field := body[pos : pos+int(l)]
		pos += int(l)
		var v uint64
		switch typ {
		case payloadFieldSize, payloadFieldCompression, payloadFieldRawSize:
			if v, n, ok = lenenc(field, 0); !ok || n != len(field) {
				return h, nil, fmt.Errorf("%w: field %d of %d bytes is not one integer", errPayload, typ, len(field))
			}
		default:
			continue // a field of a later version
		}
		switch typ {
		case payloadFieldSize:
			h.size, h.hasSize = v, true
		case payloadFieldCompression:
			h.compression, hasType = v, true
		case payloadFieldRawSize:
			h.rawSize, h.hasRawSz = v, true
		}
	}
	data := body[pos:]
	switch {
	case !hasType:
		return h, nil, fmt.Errorf("%w: no compression type", errPayload)
	case h.compression != payloadZstd && h.compression != payloadNone:
		return h, nil, fmt.Errorf("%w: unknown compression type %d", errPayload, h.compression)
	case h.hasSize && h.size != uint64(len(data)):
		return h, nil, fmt.Errorf("%w: payload of %d bytes, its size field says %d", errPayload, len(data), h.size)
	case h.hasRawSz && h.rawSize > maxPayloadSize:
		return h, nil, fmt.Errorf("%w: %d bytes uncompressed, more than the %d this reader holds", errPayload, h.rawSize, maxPayloadSize)
	}
	return h, data, nil
}

// decode returns the events a Transaction_payload event's body holds,
// back to back: each whole (at least a header, its size within the
// payload), of a type a transaction may hold, and decodable by go-mysql
// without allocating more than it holds (checkDecodable, with the format
// description's post-header lengths). The bytes are the decoder's buffer
// (or body itself, uncompressed): valid until the next decode.
func (d *payloadDecoder) decode(body, postHeader []byte) ([]byte, error) {
	h, data, err := parsePayloadHeader(body)
	if err != nil {
		return nil, err
	}
	events := data
	if h.compression == payloadZstd {
		if events, err = d.decompress(data, h); err != nil {
			return nil, err
		}
	}
	if h.hasRawSz && uint64(len(events)) != h.rawSize {
		return nil, fmt.Errorf("%w: %d bytes uncompressed, its field says %d", errPayload, len(events), h.rawSize)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", errPayload)
	}
	for off := 0; off < len(events); {
		if len(events)-off < eventHeaderSize {
			return nil, fmt.Errorf("%w: %d bytes at %d, too few for an event header", errPayload, len(events)-off, off)
		}
		ev := events[off:]
		size := int(binary.LittleEndian.Uint32(ev[9:13]))
		t := replication.EventType(ev[4])
		if size < eventHeaderSize || size > len(ev) {
			return nil, fmt.Errorf("%w: %s event at %d claims %d bytes, %d left", errPayload, t, off, size, len(ev))
		}
		switch {
		case t >= replication.MARIADB_ANNOTATE_ROWS_EVENT:
			return nil, fmt.Errorf("%w: a MariaDB %s event at %d", errPayload, t, off)
		}
		switch t {
		case replication.FORMAT_DESCRIPTION_EVENT, replication.ROTATE_EVENT, replication.TRANSACTION_PAYLOAD_EVENT,
			replication.GTID_EVENT, replication.ANONYMOUS_GTID_EVENT, replication.GTID_TAGGED_LOG_EVENT,
			replication.PREVIOUS_GTIDS_EVENT, replication.HEARTBEAT_EVENT, replication.HEARTBEAT_LOG_EVENT_V2,
			replication.UNKNOWN_EVENT:
			return nil, fmt.Errorf("%w: a %s event at %d, which no transaction holds", errPayload, t, off)
		}
		if err := checkDecodable(t, ev[eventHeaderSize:size], postHeader); err != nil {
			return nil, fmt.Errorf("%w: %s event at %d: %v", errPayload, t, off, err)
		}
		off += size
	}
	return events, nil
}

// decompress inflates a zstd payload into d.buf.
func (d *payloadDecoder) decompress(data []byte, h payloadHeader) ([]byte, error) {
	var fh zstd.Header
	if err := fh.Decode(data); err != nil {
		return nil, fmt.Errorf("%w: zstd frame header: %v", errPayload, err)
	}
	if fh.HasFCS {
		switch {
		case fh.FrameContentSize > maxPayloadSize || fh.FrameContentSize > uint64(len(data))*maxZstdRatio:
			return nil, fmt.Errorf("%w: %d compressed bytes claim %d uncompressed", errPayload, len(data), fh.FrameContentSize)
		case h.hasRawSz && fh.FrameContentSize != h.rawSize:
			return nil, fmt.Errorf("%w: zstd frame of %d bytes, the uncompressed size field says %d", errPayload, fh.FrameContentSize, h.rawSize)
		}
	}
	if d.zd == nil {
		zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxPayloadSize),
			zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
		d.zd = zd
	}
	if cap(d.buf) > rawBigKeep {
		d.buf = nil
	}
	out, err := d.zd.DecodeAll(data, d.buf[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", errPayload, err)
	}
	d.buf = out
	return out, nil
}

// innerEvents calls f with each event of a payload decode returned, and
// whether it is the last.
func innerEvents(events []byte, f func(ev []byte, last bool) error) error {
	for off := 0; off < len(events); {
		size := int(binary.LittleEndian.Uint32(events[off+9:]))
		if err := f(events[off:off+size], off+size == len(events)); err != nil {
			return err
		}
		off += size
	}
	return nil
}
