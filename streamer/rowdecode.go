package streamer

// A row image decoder for the common column types, used by the remote
// reader in place of go-mysql's RowsEvent.DecodeData. It gives the same
// values, of the same Go types, as go-mysql with the decode settings every
// reader uses (applyDecodeSettings: exact decimals, TIMESTAMP in UTC,
// parseTime off), but costs less: the table's layout (column kinds,
// signedness) is worked out once per table map rather than once per row
// (go-mysql builds TableMapEvent.UnsignedMap, a map, for every row image),
// the rows of an event share one backing array, the strings of times and
// dates share one buffer per event, and times and decimals are formatted
// without fmt or a parse of their own text.
//
// Whatever it does not handle it leaves to go-mysql, for the whole event: a
// column type outside the list below, metadata out of range, an event type
// other than the plain WRITE/UPDATE/DELETE v1/v2 (MariaDB's compressed rows
// events, MySQL's partial JSON updates), and any image that does not fit the
// event's bytes (go-mysql then returns its error, or what it reads past the
// end). So its results equal go-mysql's by construction where it declines,
// and by test where it does not (TestRowDecoderAgrees, FuzzRowDecoder and
// the DeferredRowsAgree comparisons, which run through it).
//
// Handled: TINYINT, SMALLINT, MEDIUMINT, INT, BIGINT (signed and unsigned),
// FLOAT, DOUBLE, DECIMAL, YEAR, DATE, DATETIME(fsp), TIMESTAMP(fsp), CHAR,
// VARCHAR, BINARY, VARBINARY, ENUM, the BLOB and TEXT family (MariaDB's JSON
// is LONGTEXT). Not handled (go-mysql decodes them): BIT, SET, TIME, MySQL's
// JSON, GEOMETRY, VECTOR, the pre-5.6 temporal types.

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"time"
	"unsafe"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/shopspring/decimal"
)

// colKind is how a column's values are decoded.
type colKind uint8

const (
	kindUnsupported colKind = iota
	kindInt8
	kindUint8
	kindInt16
	kindUint16
	kindInt24
	kindUint24
	kindInt32
	kindUint32
	kindInt64
	kindUint64
	kindFloat
	kindDouble
	kindDecimal
	kindYear
	kindDate
	kindDatetime2
	kindTimestamp2
	kindEnum1
	kindEnum2
	kindString1 // length prefix of 1 byte
	kindString2 // of 2 bytes
	kindBlob    // length prefix of n bytes (col.n, 1 to 4)
)

// colLayout is one column's decoding.
type colLayout struct {
	kind colKind
	// DECIMAL: precision and scale; DATETIME2/TIMESTAMP2: fsp (in dec);
	// BLOB: bytes of the length prefix (in n).
	prec, dec uint8
	n         uint8
}

// tableLayout is a table map's columns as the decoder sees them, with
// copies of what it was worked out from (so that it holds no part of the
// event, whose bytes are a slice of a 256 KiB block).
type tableLayout struct {
	types  []byte
	meta   []uint16
	signed []byte
	cols   []colLayout
	fast   bool // every column is of a kind the decoder handles
	// text is the most bytes a row's formatted values (dates and times)
	// take.
	text int
	// boxed counts, by slab, the values of a row that are boxed in one
	// (see valueSlabs).
	boxed [numSlabs]int
	// imageBytes is the bytes an image of the table's last event took,
	// on average: it sizes the next event's arrays.
	imageBytes int
}

// matches reports whether tm describes the columns l was worked out from.
func (l *tableLayout) matches(tm *replication.TableMapEvent) bool {
	return bytes.Equal(l.types, tm.ColumnType) && slices.Equal(l.meta, tm.ColumnMeta) &&
		bytes.Equal(l.signed, tm.SignednessBitmap) && uint64(len(l.types)) == tm.ColumnCount
}

// rowDecoder decodes row images. It remembers the layout of the tables it
// met, by table id; it is not safe for concurrent use.
type rowDecoder struct {
	layouts map[uint64]*tableLayout
	lastTM  *replication.TableMapEvent
	last    *tableLayout
	// fastEvents and slowEvents count the events decoded each way (tests).
	fastEvents, slowEvents int
	// chunk is where the next event's body is copied (copyBody).
	chunk []byte
}

// rowCopyChunk is a chunk the bodies of the rows events a RemoteReader
// decodes are copied into, the values decoded sharing the copy. Several
// events share a chunk, which is reused once nothing refers to it
// (rowCopies) rather than allocated afresh: a copy per event was two
// fifths of the bytes a filtered drain allocated, and the collections
// they brought about. The chunk's size bounds what a value kept alone
// holds: 64 KiB, where the block the event was read into is 256 KiB.
type rowCopyChunk [64 << 10]byte

// rowCopies are the chunks of copies. 64 of them (4 MiB) are tracked:
// measured on a filtered drain of 600 MB (BENCHMARKS.md), that took the
// collections per drain from about 60 to about 47, nearly the 44 of no
// copy at all.
var rowCopies = newReusePool[rowCopyChunk](64)

// copyBody returns a copy of b, of capacity len(b), in a chunk shared with
// other events' copies when it takes at most half of one.
func (d *rowDecoder) copyBody(b []byte) []byte {
	if d == nil || len(b) > len(rowCopyChunk{})/2 {
		return slices.Clip(bytes.Clone(b))
	}
	if cap(d.chunk)-len(d.chunk) < len(b) {
		if c := rowCopies.get(); c != nil {
			d.chunk = c[:0]
		} else {
			d.chunk = make([]byte, 0, len(rowCopyChunk{}))
		}
	}
	n := len(d.chunk)
	d.chunk = append(d.chunk, b...)
	return d.chunk[n:len(d.chunk):len(d.chunk)]
}

// maxLayouts bounds the layouts remembered: past it, the map starts over.
const maxLayouts = 4096

// layout returns the layout of tm: the one remembered for its table id if
// the columns are the same (a table map comes again in every transaction),
// or a new one.
func (d *rowDecoder) layout(tm *replication.TableMapEvent) *tableLayout {
	if d.lastTM == tm {
		return d.last
	}
	l, ok := d.layouts[tm.TableID]
	if !ok || !l.matches(tm) {
		if d.layouts == nil || len(d.layouts) >= maxLayouts {
			d.layouts = make(map[uint64]*tableLayout)
		}
		l = newTableLayout(tm)
		d.layouts[tm.TableID] = l
	}
	d.lastTM, d.last = tm, l
	return l
}

// newTableLayout works out how each column of tm decodes, as go-mysql's
// decodeValue would.
func newTableLayout(tm *replication.TableMapEvent) *tableLayout {
	l := &tableLayout{types: bytes.Clone(tm.ColumnType), meta: slices.Clone(tm.ColumnMeta),
		signed: bytes.Clone(tm.SignednessBitmap), fast: true}
	n := min(len(tm.ColumnType), len(tm.ColumnMeta))
	if uint64(n) != tm.ColumnCount {
		l.fast = false
		return l
	}
	unsigned := tm.UnsignedMap()
	l.cols = make([]colLayout, n)
	for i := range n {
		c := columnLayout(tm.ColumnType[i], tm.ColumnMeta[i], unsigned[i])
		l.cols[i] = c
		if k := slabOf[c.kind]; k != noSlab {
			l.boxed[k]++
		}
		switch c.kind {
		case kindUnsupported:
			l.fast = false
		case kindDate:
			l.text += 10
		case kindDatetime2, kindTimestamp2:
			l.text += 27
		}
	}
	return l
}

// columnLayout is decodeValue's choice for a column of type tp with
// metadata meta, for the types the decoder handles.
func columnLayout(tp byte, meta uint16, unsigned bool) colLayout {
	length := 0
	if tp == mysql.MYSQL_TYPE_STRING {
		if meta >= 256 {
			b0, b1 := uint8(meta>>8), uint8(meta&0xFF)
			if b0&0x30 != 0x30 {
				length = int(uint16(b1) | uint16((b0&0x30)^0x30)<<4)
				tp = b0 | 0x30
			} else {
				length = int(meta & 0xFF)
				tp = b0
			}
		} else {
			length = int(meta)
		}
	}
	pick := func(signed, uns colKind) colLayout {
		if unsigned {
			return colLayout{kind: uns}
		}
		return colLayout{kind: signed}
	}
	switch tp {
	case mysql.MYSQL_TYPE_TINY:
		return pick(kindInt8, kindUint8)
	case mysql.MYSQL_TYPE_SHORT:
		return pick(kindInt16, kindUint16)
	case mysql.MYSQL_TYPE_INT24:
		return pick(kindInt24, kindUint24)
	case mysql.MYSQL_TYPE_LONG:
		return pick(kindInt32, kindUint32)
	case mysql.MYSQL_TYPE_LONGLONG:
		return pick(kindInt64, kindUint64)
	case mysql.MYSQL_TYPE_FLOAT:
		return colLayout{kind: kindFloat}
	case mysql.MYSQL_TYPE_DOUBLE:
		return colLayout{kind: kindDouble}
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		prec, scale := uint8(meta>>8), uint8(meta&0xFF)
		if prec == 0 || prec > 65 || scale > 30 || scale > prec {
			return colLayout{}
		}
		return colLayout{kind: kindDecimal, prec: prec, dec: scale}
	case mysql.MYSQL_TYPE_YEAR:
		return colLayout{kind: kindYear}
	case mysql.MYSQL_TYPE_DATE:
		return colLayout{kind: kindDate}
	case mysql.MYSQL_TYPE_DATETIME2:
		if meta > 6 {
			return colLayout{}
		}
		return colLayout{kind: kindDatetime2, dec: uint8(meta)}
	case mysql.MYSQL_TYPE_TIMESTAMP2:
		if meta > 6 {
			return colLayout{}
		}
		return colLayout{kind: kindTimestamp2, dec: uint8(meta)}
	case mysql.MYSQL_TYPE_ENUM:
		switch meta & 0xFF {
		case 1:
			return colLayout{kind: kindEnum1}
		case 2:
			return colLayout{kind: kindEnum2}
		}
	case mysql.MYSQL_TYPE_BLOB:
		if meta >= 1 && meta <= 4 {
			return colLayout{kind: kindBlob, n: uint8(meta)}
		}
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING:
		if meta < 256 {
			return colLayout{kind: kindString1}
		}
		return colLayout{kind: kindString2}
	case mysql.MYSQL_TYPE_STRING:
		if length < 256 {
			return colLayout{kind: kindString1}
		}
		return colLayout{kind: kindString2}
	}
	return colLayout{}
}

// decode decodes the row images of e, a rows event of type t whose header
// was decoded, from data[pos:] (data: the event's body without checksum),
// as e.DecodeData(pos, data) would.
func (d *rowDecoder) decode(e *replication.RowsEvent, t replication.EventType, pos int, data []byte) error {
	if d != nil && e.Table != nil {
		switch t {
		case replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
			replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
			replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2:
			if l := d.layout(e.Table); l.fast && e.ColumnCount <= uint64(len(l.cols)) {
				if rows, skipped, ok := decodeImages(e, l, data[pos:]); ok {
					e.Rows, e.SkippedColumns = rows, skipped
					d.fastEvents++
					return nil
				}
			}
		}
		d.slowEvents++
	}
	return e.DecodeData(pos, data)
}

// decodeImages decodes every image of data; ok false: data does not hold
// whole images as the layout reads them (go-mysql is to decide).
func decodeImages(e *replication.RowsEvent, l *tableLayout, data []byte) (rows [][]any, skipped [][]int, ok bool) {
	ncol := int(e.ColumnCount)
	perRow := 1
	if e.ColumnBitmap2 != nil {
		perRow = 2
	}
	var (
		cells []any // the rows' values, sliced row by row
		vs    = valueSlabs{counts: &l.boxed}
	)
	// The images the event holds, as guessed before decoding any: from
	// the size of the images of the table's last event, so that an event
	// like the last one allocates its arrays once.
	first := perRow
	if l.imageBytes > 0 {
		first = max(perRow, min(len(data)/l.imageBytes+1, 1024))
	}
	rows = make([][]any, 0, first)
	skipped = make([][]int, 0, first)
	for pos := 0; pos < len(data); {
		for img := range perRow {
			bitmap := e.ColumnBitmap1
			if img == 1 {
				bitmap = e.ColumnBitmap2
			}
			if len(cells) < ncol {
				// Room for as many more images as the ones so far
				// suggest the rest of the event holds.
				guess := first
				if pos > 0 && len(rows) > 0 {
					guess = min((len(data)-pos)*len(rows)/pos+1, 1024)
					rows = slices.Grow(rows, guess)
					skipped = slices.Grow(skipped, guess)
				}
				cells = make([]any, ncol*guess)
				if l.text > 0 && cap(vs.arena)-len(vs.arena) < l.text*guess {
					vs.arena = make([]byte, 0, l.text*guess)
				}
				vs.images = guess
			}
			row := cells[:ncol:ncol]
			cells = cells[ncol:]
			n, skips, ok := decodeImage(row, bitmap, l.cols, data[pos:], &vs)
			if !ok {
				return nil, nil, false
			}
			pos += n
			rows = append(rows, row)
			skipped = append(skipped, skips)
		}
	}
	if len(rows) > 0 {
		l.imageBytes = max(1, len(data)/len(rows))
	}
	return rows, skipped, true
}

// decodeImage decodes one image into row; it returns the bytes it took and
// the columns the bitmap leaves out.
func decodeImage(row []any, bitmap []byte, cols []colLayout, data []byte, vs *valueSlabs) (int, []int, bool) {
	ncol := len(row)
	count, col := 0, 0
	for ; col+8 <= ncol; col += 8 {
		count += bits.OnesCount8(bitmap[col>>3])
	}
	if col < ncol {
		count += bits.OnesCount8(bitmap[col>>3] & byte((1<<(ncol-col))-1))
	}
	skips := make([]int, 0, ncol-count)
	nb := (count + 7) / 8
	if nb > len(data) {
		return 0, nil, false
	}
	nulls := data[:nb]
	pos, ni := nb, 0
	for i := range ncol {
		if bitmap[i>>3]&(1<<(uint(i)&7)) == 0 {
			skips = append(skips, i)
			continue
		}
		isNull := nulls[ni>>3]&(1<<(uint(ni)&7)) != 0
		ni++
		if isNull {
			continue
		}
		v, n, ok := decodeCell(cols[i], data[pos:], vs)
		if !ok {
			return 0, nil, false
		}
		row[i] = v
		pos += n
	}
	return pos, skips, true
}

// decodeCell decodes one value as decodeValue does; ok false: it does not
// fit data. Values that would cost an allocation each to box are boxed in
// vs's slabs.
func decodeCell(c colLayout, data []byte, vs *valueSlabs) (v any, n int, ok bool) {
	need := func(k int) bool { return k <= len(data) }
	switch c.kind {
	case kindInt8:
		if !need(1) {
			return nil, 0, false
		}
		return int8(data[0]), 1, true // boxing a byte allocates nothing
	case kindUint8:
		if !need(1) {
			return nil, 0, false
		}
		return data[0], 1, true
	case kindInt16:
		if !need(2) {
			return nil, 0, false
		}
		return boxNum(vs, int16(binary.LittleEndian.Uint16(data))), 2, true
	case kindUint16:
		if !need(2) {
			return nil, 0, false
		}
		return boxNum(vs, binary.LittleEndian.Uint16(data)), 2, true
	case kindInt24:
		if !need(3) {
			return nil, 0, false
		}
		return boxNum(vs, mysql.ParseBinaryInt24(data)), 3, true
	case kindUint24:
		if !need(3) {
			return nil, 0, false
		}
		return boxNum(vs, mysql.ParseBinaryUint24(data)), 3, true
	case kindInt32:
		if !need(4) {
			return nil, 0, false
		}
		return boxNum(vs, int32(binary.LittleEndian.Uint32(data))), 4, true
	case kindUint32:
		if !need(4) {
			return nil, 0, false
		}
		return boxNum(vs, binary.LittleEndian.Uint32(data)), 4, true
	case kindInt64:
		if !need(8) {
			return nil, 0, false
		}
		return boxNum(vs, int64(binary.LittleEndian.Uint64(data))), 8, true
	case kindUint64:
		if !need(8) {
			return nil, 0, false
		}
		return boxNum(vs, binary.LittleEndian.Uint64(data)), 8, true
	case kindFloat:
		if !need(4) {
			return nil, 0, false
		}
		return boxNum(vs, math.Float32frombits(binary.LittleEndian.Uint32(data))), 4, true
	case kindDouble:
		if !need(8) {
			return nil, 0, false
		}
		return boxNum(vs, math.Float64frombits(binary.LittleEndian.Uint64(data))), 8, true
	case kindDecimal:
		d, n, ok := decodeDecimalCell(data, int(c.prec), int(c.dec), vs)
		if !ok {
			return nil, 0, false
		}
		return boxIn(&vs.dec, slabDecimal, vs, typDecimal, d), n, true
	case kindYear:
		if !need(1) {
			return nil, 0, false
		}
		if data[0] == 0 {
			return 0, 1, true
		}
		return boxNum(vs, int(data[0])+1900), 1, true
	case kindDate:
		if !need(3) {
			return nil, 0, false
		}
		v := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16
		if v == 0 {
			return "0000-00-00", 3, true
		}
		b, start := arenaFor(&vs.arena, 16)
		b = appendPadded(b, uint64(v/(16*32)), 4)
		b = append(b, '-')
		b = appendPadded(b, uint64(v/32%16), 2)
		b = append(b, '-')
		b = appendPadded(b, uint64(v%32), 2)
		return vs.str(arenaString(&vs.arena, b, start)), 3, true
	case kindDatetime2:
		s, n, ok := decodeDatetime2Cell(data, int(c.dec), &vs.arena)
		if !ok {
			return nil, 0, false
		}
		return vs.str(s), n, true
	case kindTimestamp2:
		s, n, ok := decodeTimestamp2Cell(data, int(c.dec), &vs.arena)
		if !ok {
			return nil, 0, false
		}
		return vs.str(s), n, true
	case kindEnum1:
		if !need(1) {
			return nil, 0, false
		}
		return int64(data[0]), 1, true // below 256: boxed without allocation
	case kindEnum2:
		if !need(2) {
			return nil, 0, false
		}
		return boxNum(vs, int64(binary.LittleEndian.Uint16(data))), 2, true
	case kindString1, kindString2:
		p := 1
		if c.kind == kindString2 {
			p = 2
		}
		if !need(p) {
			return nil, 0, false
		}
		l := int(data[0])
		if p == 2 {
			l = int(binary.LittleEndian.Uint16(data))
		}
		if !need(p + l) {
			return nil, 0, false
		}
		// Like go-mysql, the string shares the event's bytes.
		return vs.str(unsafe.String(unsafe.SliceData(data[p:p+l]), l)), p + l, true
	case kindBlob:
		p := int(c.n)
		if !need(p) {
			return nil, 0, false
		}
		var l uint64
		for i := range p {
			l |= uint64(data[i]) << (8 * i)
		}
		if l > uint64(len(data)-p) {
			return nil, 0, false
		}
		// Like go-mysql: a slice of the event's bytes, capacity and all.
		return boxIn(&vs.bytes, slabBytes, vs, typBytes, data[p:p+int(l)]), p + int(l), true
	}
	return nil, 0, false
}

// arenaFor makes room for k more bytes in *arena and returns it with the
// length it had: the bytes of formatted values of one event share it.
// Strings made of it stay valid as it grows (a new array is allocated, the
// old one is never written again).
func arenaFor(arena *[]byte, k int) ([]byte, int) {
	b := *arena
	if cap(b)-len(b) < k {
		b = make([]byte, 0, max(256, k))
	}
	return b, len(b)
}

// arenaString keeps b as the arena and returns b[start:] as a string.
func arenaString(arena *[]byte, b []byte, start int) string {
	*arena = b
	if len(b) == start {
		return ""
	}
	return unsafe.String(&b[start], len(b)-start)
}

// appendPadded appends v in decimal, zero-padded to width digits, as
// fmt's %0<width>d does for a non-negative value.
func appendPadded(b []byte, v uint64, width int) []byte {
	// The widths of dates and times, without a loop.
	switch {
	case width == 2 && v < 100:
		return append(b, byte('0'+v/10), byte('0'+v%10))
	case width == 4 && v < 10000:
		return append(b, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
	}
	return appendPaddedSlow(b, v, width)
}

// appendPaddedSlow is appendPadded for other widths (fractions of
// seconds, groups of decimal digits): the digits are written in place,
// from the last, rather than through a buffer and a copy.
func appendPaddedSlow(b []byte, v uint64, width int) []byte {
	n := 1
	for x := v; x >= 10; x /= 10 {
		n++
	}
	n = max(n, width)
	b = slices.Grow(b, n)
	b = b[:len(b)+n]
	for i := len(b) - 1; i >= len(b)-n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// appendTimeText appends "YYYY-MM-DD hh:mm:ss" and, for dec > 0, the
// fraction frac as go-mysql's formatDatetime prints it: %06d, then the last
// 6-dec characters cut.
func appendTimeText(b []byte, year, month, day, hour, minute, second, frac uint64, dec int) []byte {
	b = appendPadded(b, year, 4)
	b = append(b, '-')
	b = appendPadded(b, month, 2)
	b = append(b, '-')
	b = appendPadded(b, day, 2)
	b = append(b, ' ')
	b = appendPadded(b, hour, 2)
	b = append(b, ':')
	b = appendPadded(b, minute, 2)
	b = append(b, ':')
	b = appendPadded(b, second, 2)
	if dec > 0 {
		b = append(b, '.')
		b = appendPadded(b, frac, 6)
		b = b[:len(b)-(6-dec)]
	}
	return b
}

// fracOf reads the fractional seconds of a DATETIME2/TIMESTAMP2 of fsp
// dec, as go-mysql does, from data (which holds them).
func fracOf(data []byte, dec int) int64 {
	switch dec {
	case 1, 2:
		return int64(data[0]) * 10000
	case 3, 4:
		return int64(binary.BigEndian.Uint16(data)) * 100
	case 5, 6:
		return int64(data[0])<<16 | int64(data[1])<<8 | int64(data[2])
	}
	return 0
}

// decodeDatetime2Cell is go-mysql's decodeDatetime2 with parseTime off.
func decodeDatetime2Cell(data []byte, dec int, arena *[]byte) (string, int, bool) {
	n := 5 + (dec+1)/2
	if n > len(data) {
		return "", 0, false
	}
	intPart := int64(data[0])<<32 | int64(data[1])<<24 | int64(data[2])<<16 | int64(data[3])<<8 | int64(data[4])
	intPart -= replication.DATETIMEF_INT_OFS
	frac := fracOf(data[5:], dec)
	b, start := arenaFor(arena, 40)
	if intPart == 0 {
		b = appendTimeText(b, 0, 0, 0, 0, 0, 0, uint64(frac), dec)
		return arenaString(arena, b, start), n, true
	}
	tmp := intPart<<24 + frac
	if tmp < 0 {
		tmp = -tmp
	}
	ymdhms := tmp >> 24
	ymd := ymdhms >> 17
	ym := ymd >> 5
	hms := ymdhms % (1 << 17)
	b = appendTimeText(b, uint64(ym/13), uint64(ym%13), uint64(ymd%(1<<5)),
		uint64(hms>>12), uint64((hms>>6)%(1<<6)), uint64(hms%(1<<6)), uint64(frac), dec)
	return arenaString(arena, b, start), n, true
}

// decodeTimestamp2Cell is go-mysql's decodeTimestamp2, rendered in UTC as
// its fracTime.String does with parseTime off.
func decodeTimestamp2Cell(data []byte, dec int, arena *[]byte) (string, int, bool) {
	n := 4 + (dec+1)/2
	if n > len(data) {
		return "", 0, false
	}
	sec := int64(binary.BigEndian.Uint32(data))
	usec := fracOf(data[4:], dec)
	b, start := arenaFor(arena, 40)
	if sec == 0 {
		b = appendTimeText(b, 0, 0, 0, 0, 0, 0, uint64(usec), dec)
		return arenaString(arena, b, start), n, true
	}
	t := time.Unix(sec, usec*1000).UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	b = appendTimeText(b, uint64(year), uint64(month), uint64(day), uint64(hour), uint64(minute), uint64(second), 0, 0)
	if dec > 0 {
		// time.Format's ".000000"[:dec+1]: the nanoseconds, truncated.
		b = append(b, '.')
		b = appendPadded(b, uint64(t.Nanosecond()), 9)
		b = b[:len(b)-(9-dec)]
	}
	return arenaString(arena, b, start), n, true
}

// compressedBytes is the bytes a group of 0 to 8 leftover decimal digits
// takes.
var compressedBytes = [10]int{0, 1, 1, 2, 2, 3, 3, 4, 4, 4}

// decodeDecimalCell is go-mysql's decodeDecimal with useDecimal on: it
// writes the same text go-mysql writes and hands it to decimal the same
// way, but for text of at most 18 digits (the common case), which
// decimal.NewFromString turns into big.NewInt of its digits, it makes that
// Decimal directly.
func decodeDecimalCell(data []byte, precision, decimals int, vs *valueSlabs) (decimal.Decimal, int, bool) {
	const digitsPerInteger = 9
	integral := precision - decimals
	uncompIntegral := integral / digitsPerInteger
	uncompFractional := decimals / digitsPerInteger
	compIntegral := integral - uncompIntegral*digitsPerInteger
	compFractional := decimals - uncompFractional*digitsPerInteger
	binSize := uncompIntegral*4 + compressedBytes[compIntegral] + uncompFractional*4 + compressedBytes[compFractional]
	if binSize > len(data) || binSize == 0 {
		return decimal.Decimal{}, 0, false
	}
	var mask uint32
	neg := data[0]&0x80 == 0
	if neg {
		mask = math.MaxUint32
	}
	// word reads size bytes big-endian at off, the sign bit cleared.
	word := func(off, size int) uint32 {
		var v uint32
		for i := range size {
			x := data[off+i]
			if off+i == 0 {
				x ^= 0x80
			}
			v = v<<8 | uint32(x^uint8(mask))
		}
		return v
	}
	var text [96]byte
	b := text[:0]
	if neg {
		b = append(b, '-')
	}
	zeroLeading := true
	pos := compressedBytes[compIntegral]
	if v := word(0, pos); v != 0 {
		zeroLeading = false
		b = appendPadded(b, uint64(v), 0)
	}
	for range uncompIntegral {
		v := word(pos, 4)
		pos += 4
		if zeroLeading {
			if v != 0 {
				zeroLeading = false
				b = appendPadded(b, uint64(v), 0)
			}
		} else if v >= 1e9 {
			return decimal.Decimal{}, 0, false // go-mysql fails padding it
		} else {
			b = appendPadded(b, uint64(v), digitsPerInteger)
		}
	}
	if zeroLeading {
		b = append(b, '0')
	}
	point := -1
	if pos < binSize {
		point = len(b)
		b = append(b, '.')
		for range uncompFractional {
			v := word(pos, 4)
			if v >= 1e9 {
				return decimal.Decimal{}, 0, false // go-mysql fails padding it
			}
			b = appendPadded(b, uint64(v), digitsPerInteger)
			pos += 4
		}
		if size := compressedBytes[compFractional]; size > 0 {
			b = appendPadded(b, uint64(word(pos, size)), compFractional)
			pos += size
		}
	}
	// As decimal.NewFromString parses b.
	digits, exp := len(b), 0
	if point >= 0 {
		digits--
		exp = -(len(b) - point - 1)
	}
	if digits > 18 {
		bs, start := arenaFor(&vs.arena, len(b))
		bs = append(bs, b...)
		d, err := decimal.NewFromString(arenaString(&vs.arena, bs, start))
		if err != nil {
			return decimal.Decimal{}, 0, false
		}
		return d, pos, true
	}
	var v int64
	for _, c := range b {
		if c >= '0' && c <= '9' {
			v = v*10 + int64(c-'0')
		}
	}
	if neg {
		v = -v
	}
	return vs.decimal(v, int32(exp)), pos, true
}
