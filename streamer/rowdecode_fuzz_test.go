package streamer_test

import (
	"encoding/binary"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/streamer"
)

// fuzzColumnTypes are the column types FuzzRowDecoder builds tables of: the
// ones the row decoder handles and some it leaves to go-mysql.
var fuzzColumnTypes = []byte{
	mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG,
	mysql.MYSQL_TYPE_LONGLONG, mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_NEWDECIMAL,
	mysql.MYSQL_TYPE_YEAR, mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIMESTAMP2,
	mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_BLOB,
	mysql.MYSQL_TYPE_BIT, mysql.MYSQL_TYPE_TIME2, mysql.MYSQL_TYPE_JSON, mysql.MYSQL_TYPE_DATETIME,
	mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_GEOMETRY,
}

// fuzzRowsTypes are the rows event types FuzzRowDecoder builds.
var fuzzRowsTypes = []replication.EventType{
	replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1,
	replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2,
}

// metaBytes is how many bytes of table map metadata a column of type t has
// (go-mysql's TableMapEvent.decodeMeta).
func metaBytes(t byte) int {
	switch t {
	case mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_VAR_STRING,
		mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_BIT:
		return 2
	case mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_GEOMETRY,
		mysql.MYSQL_TYPE_JSON, mysql.MYSQL_TYPE_TIME2, mysql.MYSQL_TYPE_DATETIME2, mysql.MYSQL_TYPE_TIMESTAMP2:
		return 1
	}
	return 0
}

// rowsFile builds a binlog file of the seed's format description, a table
// map of a table with the given columns (types index fuzzColumnTypes, meta
// is their metadata back to back, signed the optional signedness bitmap)
// and one rows event of kind (fuzzRowsTypes) with the column bitmaps and
// row images given.
func rowsFile(fde []byte, types, meta, signed []byte, kind uint8, bitmaps, images []byte) []byte {
	ncol := min(len(types), 64)
	cols := make([]byte, ncol)
	var metas []byte
	for i := range ncol {
		cols[i] = fuzzColumnTypes[int(types[i])%len(fuzzColumnTypes)]
		for range metaBytes(cols[i]) {
			var b byte
			if len(meta) > 0 {
				b, meta = meta[0], meta[1:]
			}
			metas = append(metas, b)
		}
	}
	nb := (ncol + 7) / 8
	tm := []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 's', 0, 1, 't', 0, byte(ncol)}
	tm = append(tm, cols...)
	tm = append(tm, byte(len(metas)))
	tm = append(tm, metas...)
	for range nb {
		tm = append(tm, 0xff)
	}
	if len(signed) > 0 {
		tm = append(tm, 1, byte(len(signed))) // SIGNEDNESS
		tm = append(tm, signed...)
	}
	t := fuzzRowsTypes[int(kind)%len(fuzzRowsTypes)]
	rows := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if t >= replication.WRITE_ROWS_EVENTv2 {
		rows = append(rows, 2, 0)
	}
	rows = append(rows, byte(ncol))
	perRow := 1
	if t == replication.UPDATE_ROWS_EVENTv1 || t == replication.UPDATE_ROWS_EVENTv2 {
		perRow = 2
	}
	for range perRow * nb {
		b := byte(0xff)
		if len(bitmaps) > 0 {
			b, bitmaps = bitmaps[0], bitmaps[1:]
		}
		rows = append(rows, b)
	}
	rows = append(rows, images...)
	file := []byte("\xfebin")
	file = append(file, fde...)
	file = appendEvent(file, replication.TABLE_MAP_EVENT, tm)
	return appendEvent(file, t, rows)
}

// appendEvent appends an event of type t with body, a header and a
// checksum (not verified by DeferredRowsAgree).
func appendEvent(file []byte, t replication.EventType, body []byte) []byte {
	size := 19 + len(body) + 4
	h := make([]byte, 19)
	h[4] = byte(t)
	binary.LittleEndian.PutUint32(h[5:], 1)
	binary.LittleEndian.PutUint32(h[9:], uint32(size))
	binary.LittleEndian.PutUint32(h[13:], uint32(len(file)+size-4))
	file = append(file, h...)
	file = append(file, body...)
	return append(file, 0, 0, 0, 0)
}

// fuzzSeedFDE is the format description event of the local reader's seed
// file (MariaDB, CRC32 checksums).
func fuzzSeedFDE(tb testing.TB) []byte {
	seed := localFuzzSeed(tb)
	size := binary.LittleEndian.Uint32(seed[4+9:])
	if replication.EventType(seed[4+4]) != replication.FORMAT_DESCRIPTION_EVENT {
		tb.Fatal("the seed does not start with a format description")
	}
	return seed[4 : 4+size]
}

// benchRowImage is one row of the bench's table (bench/remoteread): id,
// k, c VARCHAR(160) utf8mb4, pad CHAR(60), amount DECIMAL(12,2), score
// DOUBLE, created DATETIME(6), ts TIMESTAMP, flags TINYINT UNSIGNED, body
// TEXT.
func benchRowImage() (types, meta, image []byte) {
	idx := func(t byte) byte {
		for i, x := range fuzzColumnTypes {
			if x == t {
				return byte(i)
			}
		}
		panic(t)
	}
	types = []byte{idx(mysql.MYSQL_TYPE_LONGLONG), idx(mysql.MYSQL_TYPE_LONG), idx(mysql.MYSQL_TYPE_VARCHAR),
		idx(mysql.MYSQL_TYPE_STRING), idx(mysql.MYSQL_TYPE_NEWDECIMAL), idx(mysql.MYSQL_TYPE_DOUBLE),
		idx(mysql.MYSQL_TYPE_DATETIME2), idx(mysql.MYSQL_TYPE_TIMESTAMP2), idx(mysql.MYSQL_TYPE_TINY),
		idx(mysql.MYSQL_TYPE_BLOB)}
	meta = []byte{0x80, 0x02, mysql.MYSQL_TYPE_STRING, 240, 12, 2, 8, 6, 0, 2}
	image = []byte{0, 0}                                                // no NULL
	image = binary.LittleEndian.AppendUint64(image, 1<<40+7)            // id
	image = binary.LittleEndian.AppendUint32(image, 1234567)            // k
	image = append(image, 3, 0, 'a', 0xc3, 0xa9)                        // c
	image = append(image, 2, 'p', 'd')                                  // pad
	image = append(image, 0x80, 0, 0, 0x04, 0xd2, 0x32)                 // amount 1234.50
	image = binary.LittleEndian.AppendUint64(image, 0x40091eb851eb851f) // score 3.14
	ymd := uint64((2024*13+2)<<5 | 29)
	hms := uint64(12<<12 | 34<<6 | 56)
	dt := ymd<<17 | hms + 0x8000000000
	image = append(image, byte(dt>>32), byte(dt>>24), byte(dt>>16), byte(dt>>8), byte(dt)) // created
	image = append(image, 0x01, 0xe2, 0x40)                                                // .123456
	image = binary.BigEndian.AppendUint32(image, 1700000000)                               // ts
	image = append(image, 200)                                                             // flags
	image = append(image, 3, 0, 'b', 'o', 'd')                                             // body
	return types, meta, image
}

// FuzzRowDecoder builds a table map and a rows event from the fuzzer's
// bytes (column types, metadata, signedness, column bitmaps, row images)
// and decodes the images both with go-mysql's parser and with the remote
// reader's deferred decoding, which runs the row decoder (rowdecode.go):
// both must fail, or agree on every value and its type.
func FuzzRowDecoder(f *testing.F) {
	fde := fuzzSeedFDE(f)
	types, meta, image := benchRowImage()
	twice := append(append([]byte(nil), image...), image...)
	f.Add(types, meta, []byte{0x60}, uint8(0), []byte{}, image)
	f.Add(types, meta, []byte{}, uint8(1), []byte{}, twice)
	f.Add(types, meta, []byte{}, uint8(5), []byte{}, twice)
	f.Add(types, meta, []byte{0xff}, uint8(3), []byte{0xfd, 0xff}, image[:len(image)-5])
	f.Add([]byte{7, 9, 11, 12, 15}, []byte{65, 30, 3, 4, 0xf7, 2, 4}, []byte{}, uint8(2), []byte{}, []byte{0x10, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, types, meta, signed []byte, kind uint8, bitmaps, images []byte) {
		if len(types) == 0 {
			return
		}
		file := rowsFile(fde, types, meta, signed, kind, bitmaps, images)
		if _, _, err := streamer.DeferredRowsAgreeFast(file); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRowDecoderSeeds: the fuzz seeds of the bench's table decode through
// the row decoder itself, not go-mysql.
func TestRowDecoderSeeds(t *testing.T) {
	fde := fuzzSeedFDE(t)
	types, meta, image := benchRowImage()
	twice := append(append([]byte(nil), image...), image...)
	for _, tc := range []struct {
		kind   uint8
		images []byte
	}{{0, image}, {1, twice}, {5, twice}} {
		n, fast, err := streamer.DeferredRowsAgreeFast(rowsFile(fde, types, meta, nil, tc.kind, nil, tc.images))
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 || fast != 1 {
			t.Fatalf("kind %d: %d rows events compared, %d by the row decoder; want 1 and 1", tc.kind, n, fast)
		}
	}
}

// BenchmarkRowDecode decodes a rows event of 20 of the bench's rows (an
// insert's, and an update's of 10 before and after images) with go-mysql
// and with the row decoder.
func BenchmarkRowDecode(b *testing.B) {
	fde := fuzzSeedFDE(b)
	types, meta, image := benchRowImage()
	var images []byte
	for range 20 {
		images = append(images, image...)
	}
	for _, kind := range []struct {
		name string
		kind uint8
	}{{"insert", 0}, {"update", 1}} {
		goMySQL, ours, err := streamer.RowsDecoders(rowsFile(fde, types, meta, nil, kind.kind, nil, images))
		if err != nil {
			b.Fatal(err)
		}
		for _, way := range []struct {
			name string
			f    func() error
		}{{"go-mysql", goMySQL}, {"ours", ours}} {
			b.Run(kind.name+"/"+way.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(images)))
				for b.Loop() {
					if err := way.f(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
