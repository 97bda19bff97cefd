package streamer

// How a LocalReader checks and decodes the events it frames: the decode
// settings shared with the remote reader, the limits that refuse damaged
// events before go-mysql trusts them, payloads and the GTID state.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// newDecodeParser returns a parser that decodes events as every reader does
// (the RemoteReader's parser is one, newRemoteParser): applyDecodeSettings
// fills a syncer config, and its decode fields are copied the way go-mysql's
// NewBinlogSyncer copies them. Checksums are verified by the caller.
//
// keep, when not nil, leaves the row images of the tables it drops
// undecoded (WithTableFilter).
func newDecodeParser(flavor string, keep *tableKeeper) *replication.BinlogParser {
	var c replication.BinlogSyncerConfig
	applyDecodeSettings(&c)
	p := replication.NewBinlogParser()
	if flavor == "" {
		flavor = FlavorMySQL
	}
	p.SetFlavor(flavor)
	p.SetRawMode(c.RawModeEnabled)
	p.SetParseTime(c.ParseTime)
	p.SetTimestampStringLocation(c.TimestampStringLocation)
	p.SetUseDecimal(c.UseDecimal)
	p.SetUseFloatWithTrailingZero(c.UseFloatWithTrailingZero)
	p.SetRenderJSONAsMySQLText(c.RenderJSONAsMySQLText)
	p.SetPayloadDecoderConcurrency(c.PayloadDecoderConcurrency)
	p.SetRowsEventDecodeFunc(guardRowsDecode(c.RowsEventDecodeFunc, keep))
	p.SetTableMapOptionalMetaDecodeFunc(c.TableMapOptionalMetaDecodeFunc)
	return p
}

// guardRowsDecode decodes a rows event as go-mysql does (RowsEvent.Decode,
// or the configured hook), after a check go-mysql lacks: a row image that
// selects no column makes RowsEvent.DecodeData loop forever, appending empty
// rows. Only damaged data holds such an event; it is refused. The row images
// of a table keep drops are left undecoded.
func guardRowsDecode(inner func(*replication.RowsEvent, []byte) error, keep *tableKeeper) func(*replication.RowsEvent, []byte) error {
	return func(e *replication.RowsEvent, data []byte) error {
		pos, err := e.DecodeHeader(data)
		if err != nil {
			return err
		}
		if err := checkRowsHeader(e, pos, len(data)); err != nil {
			return err
		}
		if !keep.keeps(e.Table) {
			return nil
		}
		if inner != nil {
			return inner(e, data)
		}
		return e.DecodeData(pos, data)
	}
}

// anyBit reports whether one of the first n bits of bitmap is set.
func anyBit(bitmap []byte, n uint64) bool {
	for i, b := range bitmap {
		if uint64(i)*8 >= n {
			break
		}
		if rest := n - uint64(i)*8; rest < 8 {
			b &= byte(1<<rest) - 1
		}
		if b != 0 {
			return true
		}
	}
	return false
}

// process decodes a verified event, updates the stream's position and GTID
// state, and returns the event unless it is skipped.
func (r *LocalReader) process(raw []byte) (*Event, error) {
	start := r.off
	end := start + int64(len(raw))
	t := replication.EventType(raw[4])
	if t == replication.TRANSACTION_PAYLOAD_EVENT {
		return r.processPayload(raw)
	}
	be, err := parseEvent(r.parser, raw, r.crc && t != replication.FORMAT_DESCRIPTION_EVENT, r.postHeader)
	if err != nil {
		if r.midStart && !r.sawTableMap && isRowsEvent(t) {
			return nil, r.newErr("open", ErrBadPosition, fmt.Errorf("%s/%s:%d is inside a transaction, after its table map: %v", r.sub, r.file, start, err))
		}
		return nil, r.badEvent(start, "%w", err)
	}
	if fde, ok := be.Event.(*replication.FormatDescriptionEvent); ok {
		r.crc = fde.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
		// A copy: fde's lengths are a slice of the event's RawData,
		// which belongs to the consumer.
		r.postHeader = slices.Clone(fde.EventTypeHeaderLengths)
		r.fdeRaw, r.inner = slices.Clone(raw), nil
	} else if t == replication.TABLE_MAP_EVENT {
		r.sawTableMap = true
	}
	h := be.Header
	artificial := isArtificial(h)
	if !artificial && h.LogPos != uint32(end) {
		return nil, r.badEvent(start, "%s says it ends at %d, but it ends at %d", t, h.LogPos, end)
	}
	r.off = end
	r.midStart = false

	var next Position
	switch rot, ok := be.Event.(*replication.RotateEvent); {
	case ok:
		next.Name, next.Offset = string(rot.NextLogName), rot.Position
		if !artificial {
			if compareNames(next.Name, r.file) <= 0 || validateName(next.Name) != nil {
				return nil, r.corrupt(start, "rotate from %s to %q", r.file, next.Name)
			}
			r.rotateTo = next.Name
		}
	case artificial:
		next = r.delivered
	default:
		next.Name, next.Offset = r.file, uint64(end)
	}
	ev, _, err := r.observe(be, next, artificial, start)
	if ev != nil {
		r.setDelivered(ev)
	}
	return ev, err
}

// observe updates the stream's GTID state with be, whose position after it
// is next, and returns it as an Event, or nil when it is skipped (a
// transaction the GTID set holds already). start is where its bytes begin,
// for errors. txnEnd reports whether be ends a transaction, skipped or not.
func (r *LocalReader) observe(be *replication.BinlogEvent, next Position, artificial bool, start int64) (ev *Event, txnEnd bool, err error) {
	gtid := ""
	if !artificial {
		wasIn, before := r.tracker.inTxn, r.tracker.gset
		if gtid, txnEnd, err = observeSafe(r.tracker, be); err != nil {
			return nil, false, r.corrupt(start, "%s: %w", be.Header.EventType, err)
		}
		if r.skipping && !wasIn && r.tracker.inTxn && gtid != "" && before != nil && containsGTID(before, be) {
			// The commit must leave the set alone: forget the GTID.
			r.inSkip = true
			r.tracker.currentGTID = ""
		}
	}
	if r.inSkip {
		if txnEnd || !r.tracker.inTxn {
			r.inSkip = false
		}
		return nil, txnEnd, nil
	}
	next.GTIDSet, next.Flavor = r.tracker.gset, r.tracker.flavor
	if next.GTIDSet == nil {
		next.Flavor = ""
	}
	// Between transactions after it, as the remote reader says.
	boundary := txnEnd || (!r.tracker.inTxn && !artificial)
	return &Event{BinlogEvent: be, Pos: next, GTID: gtid, TxnEnd: txnEnd, Boundary: boundary}, txnEnd, nil
}

// processPayload delivers the events a Transaction_payload event holds in
// its place (the first now, the others queued), each with its position (see
// payload.go). They are decoded by a parser of their own: go-mysql's would
// inflate the payload without bounds.
func (r *LocalReader) processPayload(raw []byte) (*Event, error) {
	start := r.off
	end := start + int64(len(raw))
	var h replication.EventHeader
	if err := h.Decode(raw); err != nil {
		return nil, r.badEvent(start, "%w", err)
	}
	if h.LogPos != uint32(end) {
		return nil, r.badEvent(start, "%s says it ends at %d, but it ends at %d", h.EventType, h.LogPos, end)
	}
	body := raw[eventHeaderSize:]
	if r.crc {
		body = body[:len(body)-checksumSize]
	}
	events, err := r.payload.decode(body, r.postHeader)
	if err != nil {
		return nil, r.badEvent(start, "%s: %w", h.EventType, err)
	}
	// The events escape to the consumer: one copy of them all.
	events = slices.Clone(events)
	if r.inner == nil {
		if r.inner, err = r.innerParser(); err != nil {
			return nil, r.corrupt(start, "%w", err)
		}
	}
	r.off = end
	r.midStart = false
	var first *Event
	err = innerEvents(events, func(ev []byte, last bool) error {
		be, err := parseEvent(r.inner, ev, false, r.postHeader)
		if err != nil {
			return err
		}
		next := Position{Name: r.file, Offset: uint64(start)}
		be.Header.LogPos = uint32(start)
		if last {
			next.Offset, be.Header.LogPos = uint64(end), h.LogPos
		}
		e, txnEnd, err := r.observe(be, next, false, start)
		if err != nil {
			return err
		}
		if err := checkPayloadTxn(be.Header.EventType, txnEnd, last); err != nil {
			return err
		}
		if e != nil {
			e.payloadStart = uint64(start)
		}
		switch {
		case e == nil:
		case first == nil:
			first = e
		default:
			r.pending = append(r.pending, e)
		}
		return nil
	})
	if err != nil {
		var re *RelayError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, r.corrupt(start, "%s: %w", h.EventType, err)
	}
	if first != nil {
		r.setDelivered(first)
	}
	return first, nil
}

// innerParser returns a parser for the events a payload holds: decoding as
// the file's, after its format description with checksums off.
func (r *LocalReader) innerParser() (*replication.BinlogParser, error) {
	if len(r.fdeRaw) < eventHeaderSize+checksumSize+1 {
		return nil, errors.New("no format description before a transaction payload")
	}
	p := newDecodeParser(r.tracker.flavor, r.keeper)
	fde := slices.Clone(r.fdeRaw)
	fde[len(fde)-checksumSize-1] = byte(replication.BINLOG_CHECKSUM_ALG_OFF)
	if _, err := parseEvent(p, fde, false, nil); err != nil {
		return nil, err
	}
	return p, nil
}

func observeSafe(t *txnTracker, be *replication.BinlogEvent) (gtid string, txnEnd bool, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("GTID bookkeeping: %v", x)
		}
	}()
	return t.observe(be)
}

func isRowsEvent(t replication.EventType) bool {
	switch t {
	case replication.WRITE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv0,
		replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
		replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1, replication.PARTIAL_UPDATE_ROWS_EVENT:
		return true
	}
	return false
}

// containsGTID reports whether set holds the GTID that be (a GTID event)
// announces.
func containsGTID(set mysql.GTIDSet, be *replication.BinlogEvent) bool {
	switch e := be.Event.(type) {
	case *replication.MariadbGTIDEvent:
		s, ok := set.(*mysql.MariadbGTIDSet)
		if !ok {
			return false
		}
		g, ok := s.Sets[e.GTID.DomainID]
		return ok && g.SequenceNumber >= e.GTID.SequenceNumber
	case *replication.GTIDEvent:
		return mysqlSetHas(set, mysqlGTIDString(e.SID, e.Tag, e.GNO))
	case *replication.GtidTaggedLogEvent:
		return mysqlSetHas(set, mysqlGTIDString(e.SID, e.Tag, e.GNO))
	}
	return false
}

func mysqlSetHas(set mysql.GTIDSet, gtid string) bool {
	if gtid == "" {
		return false
	}
	one, err := mysql.ParseMysqlGTIDSet(gtid)
	return err == nil && set.Contain(one)
}

// Limits that hold for any server's binlog, used to refuse damaged events
// before go-mysql allocates what they claim.
const (
	// maxColumns is MySQL's and MariaDB's limit of columns in a table.
	maxColumns = 4096
	// maxZlibRatio bounds zlib's compression ratio (1032:1 at best).
	maxZlibRatio = 1100
)

// checkDecodable refuses an event whose counts or sizes go-mysql would
// trust before checking them against the event: a GTID list's count, the
// uncompressed size of MariaDB's compressed events, the string-value counts
// of a table map's optional metadata. Each would otherwise have go-mysql
// allocate up to gigabytes for a damaged event, which the runtime cannot
// recover from. body is the event without header and checksum.
func checkDecodable(t replication.EventType, body []byte, postHeader []byte) error {
	tableIDSize := 6
	if int(t) >= 1 && int(t) <= len(postHeader) && postHeader[t-1] == 6 {
		tableIDSize = 4
	}
	switch t {
	case replication.MARIADB_GTID_LIST_EVENT:
		if len(body) < 4 {
			return errors.New("GTID list too short")
		}
		if n := uint64(binary.LittleEndian.Uint32(body) & (1<<28 - 1)); 4+16*n > uint64(len(body)) {
			return fmt.Errorf("GTID list claims %d GTIDs in %d bytes", n, len(body))
		}
	case replication.MARIADB_QUERY_COMPRESSED_EVENT:
		// Post-header: thread id 4, time 4, schema length 1, error 2,
		// status length 2; then status, schema, NUL, compressed query.
		if len(body) < 13 {
			return errors.New("query event too short")
		}
		pos := 13 + int(binary.LittleEndian.Uint16(body[11:13])) + int(body[8]) + 1
		if pos > len(body) {
			return errors.New("query event too short")
		}
		return checkCompressed(body[pos:])
	case replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		pos := tableIDSize + 2
		cols, n, ok := lenenc(body, pos)
		if !ok || cols > maxColumns {
			return fmt.Errorf("rows event with %d columns", cols)
		}
		pos += n + int(cols+7)/8
		if t == replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1 {
			pos += int(cols+7) / 8
		}
		if pos > len(body) {
			return errors.New("rows event too short")
		}
		return checkCompressed(body[pos:])
	case replication.TABLE_MAP_EVENT:
		return checkTableMap(body, tableIDSize)
	}
	return nil
}

// checkCompressed checks the declared size of MariaDB's compressed data
// (a header byte whose low 3 bits count the big-endian size bytes that
// follow, then zlib data) against what zlib can expand it to.
func checkCompressed(data []byte) error {
	if len(data) == 0 {
		return errors.New("no compressed data")
	}
	n := int(data[0] & 0x07)
	if 1+n > len(data) {
		return errors.New("compressed data too short")
	}
	var size uint64
	for _, b := range data[1 : 1+n] {
		size = size<<8 | uint64(b)
	}
	if size > uint64(len(data))*maxZlibRatio {
		return fmt.Errorf("%d compressed bytes claim to expand to %d", len(data), size)
	}
	return nil
}

// checkTableMap walks a table map event to its optional metadata and checks
// the counts of ENUM and SET string values against their lengths.
func checkTableMap(body []byte, tableIDSize int) error {
	short := errors.New("table map too short")
	pos := tableIDSize + 2
	for range 2 { // schema, then table: length, name, NUL
		if pos >= len(body) {
			return short
		}
		pos += 1 + int(body[pos]) + 1
	}
	cols, n, ok := lenenc(body, pos)
	if !ok || cols > maxColumns {
		return fmt.Errorf("table map with %d columns", cols)
	}
	pos += n + int(cols)
	meta, n, ok := lenenc(body, pos)
	if !ok || meta > uint64(len(body)) {
		return short
	}
	pos += n + int(meta) + int(cols+7)/8
	if pos > len(body) {
		return short
	}
	opt := body[pos:]
	for p := 0; p < len(opt); {
		typ := opt[p]
		l, n, ok := lenenc(opt, p+1)
		if !ok || l > uint64(len(opt)) || p+1+n+int(l) > len(opt) {
			return errors.New("table map optional metadata too short")
		}
		v := opt[p+1+n : p+1+n+int(l)]
		p += 1 + n + int(l)
		if typ != byte(replication.TABLE_MAP_OPT_META_SET_STR_VALUE) && typ != byte(replication.TABLE_MAP_OPT_META_ENUM_STR_VALUE) {
			continue
		}
		for q := 0; q < len(v); {
			count, n, ok := lenenc(v, q)
			// Every value takes at least its length byte.
			if !ok || count > uint64(len(v)-q-n) {
				return fmt.Errorf("table map claims %d ENUM or SET values in %d bytes", count, len(v)-q)
			}
			q += n
			for range count {
				sl, n, ok := lenenc(v, q)
				if !ok || sl > uint64(len(v)) || q+n+int(sl) > len(v) {
					return errors.New("table map ENUM or SET values too short")
				}
				q += n + int(sl)
			}
		}
	}
	return nil
}

// lenenc reads a MySQL length-encoded integer at b[pos:], reporting false
// when b is too short.
func lenenc(b []byte, pos int) (v uint64, n int, ok bool) {
	if pos >= len(b) {
		return 0, 0, false
	}
	switch c := b[pos]; {
	case c < 0xfb:
		return uint64(c), 1, true
	case c == 0xfb:
		return 0, 1, true // NULL
	case c == 0xfc:
		n = 3
	case c == 0xfd:
		n = 4
	case c == 0xfe:
		n = 9
	default:
		return 0, 0, false
	}
	if pos+n > len(b) {
		return 0, 0, false
	}
	for i := n - 1; i >= 1; i-- {
		v = v<<8 | uint64(b[pos+i])
	}
	return v, n, true
}
