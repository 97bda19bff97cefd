package dmworkertest

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dmworker/dmworker/internal/rows"
	"github.com/dmworker/dmworker/internal/schema"
)

// column is how one column travels in a table map and in row images.
type column struct {
	def     *schema.ColumnDef
	charset string // for text: the column's, else the table's
	tp      byte   // binlog type code
	meta    []byte // table-map metadata
	// decoded from the type text
	length     int // bytes (strings), bits (BIT)
	chars      int // characters (VARCHAR, CHAR)
	prec, frac int // DECIMAL precision and scale; fsp of temporal types
	lenBytes   int // BLOB length prefix size; ENUM pack length; SET bytes
}

// typeArgs returns the numbers between parentheses in a type such as
// "decimal(10,2)" or "varchar(64)", none for "enum(...)" and "set(...)".
func typeArgs(typ string) []int {
	open := strings.IndexByte(typ, '(')
	if open < 0 || strings.HasPrefix(typ, "enum") || strings.HasPrefix(typ, "set") {
		return nil
	}
	end := strings.IndexByte(typ[open:], ')')
	if end < 0 {
		return nil
	}
	var out []int
	for _, p := range strings.Split(typ[open+1:open+end], ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

// mbMaxLen is the most bytes a character of charset cs takes; a charset
// left to the server's default ("") is taken as utf8mb4, MariaDB's and
// MySQL 8's.
func mbMaxLen(cs string) int {
	switch strings.ToLower(cs) {
	case "binary", "latin1", "ascii", "latin2", "latin5", "latin7", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852",
		"cp866", "dec8", "greek", "hebrew", "hp8", "keybcs2", "koi8r", "koi8u", "macce", "macroman", "swe7", "tis620", "armscii8", "geostd8":
		return 1
	case "big5", "gbk", "sjis", "cp932", "euckr", "gb2312", "ucs2", "utf16", "utf16le":
		return 2
	case "utf8", "utf8mb3", "ujis", "eucjpms":
		return 3
	}
	return 4
}

// newColumn works out how def travels in the binlog (as MariaDB 10.3+ and
// MySQL 5.6+ write it).
func newColumn(def *schema.ColumnDef, tableCharset string) (*column, error) {
	c := &column{def: def, tp: def.BinlogType(), charset: def.Charset}
	if c.charset == "" {
		c.charset = tableCharset
	}
	if def.Binary {
		c.charset = "binary"
	}
	args := typeArgs(def.Type)
	arg := func(i, dflt int) int {
		if i < len(args) {
			return args[i]
		}
		return dflt
	}
	switch def.TypeCode {
	case mysql.TypeTiny, mysql.TypeShort, mysql.TypeInt24, mysql.TypeLong, mysql.TypeLonglong, mysql.TypeYear, mysql.TypeDate:
	case mysql.TypeFloat:
		c.meta = []byte{4}
	case mysql.TypeDouble:
		c.meta = []byte{8}
	case mysql.TypeNewDecimal:
		c.prec, c.frac = arg(0, 10), arg(1, 0)
		c.meta = []byte{byte(c.prec), byte(c.frac)}
	case mysql.TypeDatetime, mysql.TypeTimestamp, mysql.TypeDuration:
		c.frac = arg(0, 0)
		c.meta = []byte{byte(c.frac)}
	case mysql.TypeBit:
		c.length = arg(0, 1)
		c.meta = []byte{byte(c.length % 8), byte(c.length / 8)}
	case mysql.TypeVarchar, mysql.TypeVarString:
		c.chars = arg(0, 0)
		c.length = c.chars * mbMaxLen(c.charset)
		c.meta = binary.LittleEndian.AppendUint16(nil, uint16(c.length))
	case mysql.TypeString:
		c.chars = arg(0, 1)
		c.length = c.chars * mbMaxLen(c.charset)
		if c.length > 1023 {
			return nil, fmt.Errorf("column %s (%s): more than 1023 bytes", def.Name, def.Type)
		}
		c.meta = []byte{byte(mysql.TypeString) ^ byte((c.length&0x300)>>4), byte(c.length)}
	case mysql.TypeEnum:
		c.lenBytes = 1
		if len(def.EnumValues) > 255 {
			c.lenBytes = 2
		}
		c.meta = []byte{mysql.TypeEnum, byte(c.lenBytes)}
	case mysql.TypeSet:
		c.lenBytes = (len(def.SetValues) + 7) / 8
		c.meta = []byte{mysql.TypeSet, byte(c.lenBytes)}
	case mysql.TypeTinyBlob:
		c.lenBytes = 1
	case mysql.TypeBlob:
		c.lenBytes = 2
	case mysql.TypeMediumBlob:
		c.lenBytes = 3
	case mysql.TypeLongBlob, mysql.TypeJSON, mysql.TypeGeometry:
		c.lenBytes = 4
	default:
		return nil, fmt.Errorf("column %s: type %s is not supported by dmworkertest", def.Name, def.Type)
	}
	if c.lenBytes > 0 && c.meta == nil {
		c.meta = []byte{byte(c.lenBytes)}
	}
	return c, nil
}

// encode appends v, a value of the Go type the dmworker.Change contract
// gives the column (or an int, or a string for a binary column), in the
// row image format.
func (c *column) encode(b []byte, v any) ([]byte, error) {
	d := c.def
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("column %s (%s): cannot encode %T %v", d.Name, d.Type, v, v)
	}
	switch d.TypeCode {
	case mysql.TypeTiny, mysql.TypeShort, mysql.TypeInt24, mysql.TypeLong, mysql.TypeLonglong:
		n, ok := intBits(v)
		if !ok {
			return bad()
		}
		size := map[byte]int{mysql.TypeTiny: 1, mysql.TypeShort: 2, mysql.TypeInt24: 3, mysql.TypeLong: 4, mysql.TypeLonglong: 8}[d.TypeCode]
		for i := range size {
			b = append(b, byte(n>>(8*i)))
		}
		return b, nil
	case mysql.TypeYear:
		n, ok := intBits(v)
		if !ok {
			return bad()
		}
		if n != 0 {
			n -= 1900
		}
		return append(b, byte(n)), nil
	case mysql.TypeFloat:
		f, ok := v.(float32)
		if !ok {
			return bad()
		}
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(f)), nil
	case mysql.TypeDouble:
		f, ok := v.(float64)
		if !ok {
			return bad()
		}
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(f)), nil
	case mysql.TypeNewDecimal:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		return appendDecimal(b, s, c.prec, c.frac)
	case mysql.TypeDate:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		var y, m, day int
		if _, err := fmt.Sscanf(s, "%4d-%2d-%2d", &y, &m, &day); err != nil {
			return nil, fmt.Errorf("column %s: date %q: %w", d.Name, s, err)
		}
		n := uint32(day | m<<5 | y<<9)
		return append(b, byte(n), byte(n>>8), byte(n>>16)), nil
	case mysql.TypeDatetime:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		var y, mo, day, h, mi, sec int
		if _, err := fmt.Sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d", &y, &mo, &day, &h, &mi, &sec); err != nil {
			return nil, fmt.Errorf("column %s: datetime %q: %w", d.Name, s, err)
		}
		usec, err := fraction(s, c.frac)
		if err != nil {
			return nil, fmt.Errorf("column %s: datetime %q: %w", d.Name, s, err)
		}
		ym := uint64(y*13 + mo)
		n := uint64(1)<<39 | ym<<22 | uint64(day)<<17 | uint64(h)<<12 | uint64(mi)<<6 | uint64(sec)
		b = append(b, byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		return appendFrac(b, usec, c.frac), nil
	case mysql.TypeTimestamp:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		var secs int64
		if !strings.HasPrefix(s, "0000-00-00") {
			t, err := time.ParseInLocation("2006-01-02 15:04:05", s[:min(len(s), 19)], time.UTC)
			if err != nil {
				return nil, fmt.Errorf("column %s: timestamp %q: %w", d.Name, s, err)
			}
			secs = t.Unix()
		}
		usec, err := fraction(s, c.frac)
		if err != nil {
			return nil, fmt.Errorf("column %s: timestamp %q: %w", d.Name, s, err)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(secs))
		return appendFrac(b, usec, c.frac), nil
	case mysql.TypeDuration:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		return appendTime2(b, s, c.frac)
	case mysql.TypeBit:
		n, ok := intBits(v)
		if !ok {
			return bad()
		}
		size := (c.length + 7) / 8
		for i := size - 1; i >= 0; i-- {
			b = append(b, byte(n>>(8*i)))
		}
		return b, nil
	case mysql.TypeEnum:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		idx := 0
		for i, name := range d.EnumValues {
			if name == s {
				idx = i + 1
				break
			}
		}
		if idx == 0 && s != "" {
			return nil, fmt.Errorf("column %s: %q is not a member of %s", d.Name, s, d.Type)
		}
		if c.lenBytes == 1 {
			return append(b, byte(idx)), nil
		}
		return binary.LittleEndian.AppendUint16(b, uint16(idx)), nil
	case mysql.TypeSet:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		var bits uint64
		if s != "" {
			for _, m := range strings.Split(s, ",") {
				found := false
				for i, name := range d.SetValues {
					if name == m {
						bits |= 1 << uint(i)
						found = true
					}
				}
				if !found {
					return nil, fmt.Errorf("column %s: %q is not a member of %s", d.Name, m, d.Type)
				}
			}
		}
		for i := range c.lenBytes {
			b = append(b, byte(bits>>(8*i)))
		}
		return b, nil
	}
	// Strings: VARCHAR, CHAR, BINARY, BLOB, TEXT, JSON.
	var data string
	switch x := v.(type) {
	case string:
		data = x
	case []byte:
		data = string(x)
	default:
		return bad()
	}
	if c.chars > 0 && !d.Binary && utf8.RuneCountInString(data) > c.chars {
		return nil, fmt.Errorf("column %s (%s): %d characters do not fit", d.Name, d.Type, utf8.RuneCountInString(data))
	}
	if !d.Binary {
		enc, err := rows.FromUTF8(data, c.charset)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", d.Name, err)
		}
		data = enc
	}
	prefix := c.lenBytes
	switch c.tp {
	case mysql.TypeVarchar, mysql.TypeVarString, mysql.TypeString:
		if len(data) > c.length {
			return nil, fmt.Errorf("column %s (%s): %d bytes do not fit", d.Name, d.Type, len(data))
		}
		prefix = 1
		if c.length > 255 {
			prefix = 2
		}
	}
	for i := range prefix {
		b = append(b, byte(len(data)>>(8*i)))
	}
	return append(b, data...), nil
}

// intBits returns an integer value's bits as a uint64.
func intBits(v any) (uint64, bool) {
	switch x := v.(type) {
	case int64:
		return uint64(x), true
	case uint64:
		return x, true
	case int:
		return uint64(x), true
	case int32:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	}
	return 0, false
}

// fraction reads the fractional seconds of a temporal text ("...12.5" is
// 500000 microseconds), which must fit in fsp digits.
func fraction(s string, fsp int) (int64, error) {
	dot := strings.LastIndexByte(s, '.')
	if dot < 0 {
		return 0, nil
	}
	digits := s[dot+1:]
	if len(digits) > 6 || len(strings.TrimRight(digits, "0")) > fsp {
		return 0, fmt.Errorf("more fractional digits than the column's %d", fsp)
	}
	n, err := strconv.Atoi((digits + "000000")[:6])
	return int64(n), err
}

// appendFrac appends the fractional part of a DATETIME2 or TIMESTAMP2 value.
func appendFrac(b []byte, usec int64, fsp int) []byte {
	switch fsp {
	case 1, 2:
		return append(b, byte(usec/10000))
	case 3, 4:
		return binary.BigEndian.AppendUint16(b, uint16(usec/100))
	case 5, 6:
		return append(b, byte(usec>>16), byte(usec>>8), byte(usec))
	}
	return b
}

// appendTime2 appends a TIME2 value as MySQL's my_time_packed_to_binary
// writes it.
func appendTime2(b []byte, s string, fsp int) ([]byte, error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	var h, m, sec int64
	if _, err := fmt.Sscanf(body, "%d:%2d:%2d", &h, &m, &sec); err != nil {
		return nil, fmt.Errorf("time %q: %w", s, err)
	}
	usec, err := fraction(body, fsp)
	if err != nil {
		return nil, fmt.Errorf("time %q: %w", s, err)
	}
	nr := (h<<12|m<<6|sec)<<24 + usec
	if neg {
		nr = -nr
	}
	const intOfs, ofs = 0x800000, 0x800000000000
	intPart, fracPart := nr>>24, nr%(1<<24)
	put3 := func(n int64) []byte { return append(b, byte(n>>16), byte(n>>8), byte(n)) }
	// Go's >> floors and % truncates, as MySQL's C does: a negative
	// time's fraction is stored in reverse order, as the decoder expects.
	switch fsp {
	case 1, 2:
		b = put3(intOfs + intPart)
		return append(b, byte(int8(fracPart/10000))), nil
	case 3, 4:
		b = put3(intOfs + intPart)
		return binary.BigEndian.AppendUint16(b, uint16(int16(fracPart/100))), nil
	case 5, 6:
		n := uint64(nr + ofs)
		return append(b, byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n)), nil
	}
	return put3(intOfs + intPart), nil
}

// appendDecimal appends s in MySQL's binary DECIMAL(prec, frac) format.
func appendDecimal(b []byte, s string, prec, frac int) ([]byte, error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	ip, fp, _ := strings.Cut(body, ".")
	if len(fp) > frac {
		return nil, fmt.Errorf("decimal %q: more than %d fractional digits", s, frac)
	}
	if _, ok := new(big.Int).SetString(ip+fp+"0", 10); !ok {
		return nil, fmt.Errorf("decimal %q: not a number", s)
	}
	ip = strings.TrimLeft(ip, "0")
	intg := prec - frac
	if len(ip) > intg {
		return nil, fmt.Errorf("decimal %q does not fit DECIMAL(%d,%d)", s, prec, frac)
	}
	ip = strings.Repeat("0", intg-len(ip)) + ip
	fp += strings.Repeat("0", frac-len(fp))
	dig2bytes := [10]int{0, 1, 1, 2, 2, 3, 3, 4, 4, 4}
	start := len(b)
	put := func(digits string) {
		if digits == "" {
			return
		}
		n, _ := strconv.ParseUint(digits, 10, 32)
		size := 4
		if len(digits) < 9 {
			size = dig2bytes[len(digits)]
		}
		for i := size - 1; i >= 0; i-- {
			b = append(b, byte(n>>(8*i)))
		}
	}
	lead := intg % 9
	put(ip[:lead])
	for i := lead; i < len(ip); i += 9 {
		put(ip[i : i+9])
	}
	for i := 0; i+9 <= len(fp); i += 9 {
		put(fp[i : i+9])
	}
	put(fp[len(fp)-frac%9:])
	b[start] ^= 0x80
	if neg {
		for i := start; i < len(b); i++ {
			b[i] = ^b[i]
		}
	}
	return b, nil
}
