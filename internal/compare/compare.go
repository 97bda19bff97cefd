// Package compare holds the machinery of dmworker.Diff: the per-chunk
// checksum statements both servers run, the row reads inside a chunk that
// differs, the type-aware comparison of two values and the SQL literals
// the report and the repair SQL are written with.
//
// A chunk's checksum is COUNT(*) and the SUM of a hash of each row's
// normalised text (CONCAT_WS of the compared columns and a NULL map, as
// pt-table-checksum builds it): CRC32 (32 bits a row, as pt-table-checksum
// and sync-diff-inspector use), or 64 bits (CRC32 and CRC32C, or the first
// 64 bits of MD5) at twice the servers' work. A SUM, not a BIT_XOR, so that
// duplicate rows of a table without a key do not cancel out, and so that
// the checksums of several upstream shards of one merged table add up to
// the checksum of the same chunk of their union downstream.
//
// Normalisation keeps equal values equal however the two servers print
// them: FLOAT and DOUBLE rounded to 6 and 15 significant digits (-0 is 0),
// JSON through JSON_NORMALIZE (MariaDB) or CAST AS CHAR (MySQL), and every
// other type as the server stores it (DECIMAL exact, temporal types with
// their fractional digits, strings and binary strings byte for byte).
// A rounded float may land on either side of a rounding boundary: the
// chunk then only looks different, and the row compare, which allows a
// difference below half a unit of the last significant digit, settles it.
package compare

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dmworker/dmworker/internal/schema"
)

// Kind is how a column's values are compared.
type Kind int

const (
	// Exact compares values as stored: bytes, text or numbers.
	Exact Kind = iota
	// Float compares within Digits significant digits.
	Float
	// JSON compares documents by value.
	JSON
)

// Column is one compared column: its position in the upstream and
// downstream definitions and how its values compare.
type Column struct {
	Name   string
	Up     *schema.ColumnDef
	Down   *schema.ColumnDef
	Kind   Kind
	Digits int // Float: significant digits
	// Nullable is true when either side's column allows NULL.
	Nullable bool
	// Weight is true for a key column of a character type: rows are
	// matched by its collation weight (WEIGHT_STRING), not its bytes.
	Weight bool
}

var jsonValid = regexp.MustCompile("(?i)json_valid\\(`((?:[^`]|``)+)`\\)")

// JSONColumns are the columns a CREATE TABLE declares JSON: MariaDB's JSON
// is LONGTEXT with a json_valid CHECK.
func JSONColumns(create string) map[string]bool {
	out := map[string]bool{}
	for _, m := range jsonValid.FindAllStringSubmatch(create, -1) {
		out[strings.ReplaceAll(m[1], "``", "`")] = true
	}
	return out
}

// Columns pairs the columns of up and down by name, in up's order. A
// column generated on the downstream is skipped (the downstream computes
// it), as is one that only one side has; skipped lists them. key is up's
// row key by name (empty for none); keyPos are their positions in cols.
func Columns(up, down *schema.TableDef, upJSON, downJSON map[string]bool) (cols []Column, skipped []string, keyPos []int, err error) {
	key := map[string]bool{}
	for _, i := range up.RowKey() {
		key[up.Columns[i].Name] = true
	}
	for i := range up.Columns {
		uc := &up.Columns[i]
		di := down.Column(uc.Name)
		if di < 0 {
			if key[uc.Name] {
				return nil, nil, nil, fmt.Errorf("key column %s missing downstream", uc.Name)
			}
			skipped = append(skipped, uc.Name)
			continue
		}
		dc := &down.Columns[di]
		if dc.Generated {
			if key[uc.Name] {
				return nil, nil, nil, fmt.Errorf("key column %s is generated downstream", uc.Name)
			}
			skipped = append(skipped, uc.Name)
			continue
		}
		c := Column{Name: uc.Name, Up: uc, Down: dc, Nullable: uc.Nullable || dc.Nullable}
		switch {
		case upJSON[uc.Name] || downJSON[uc.Name] || uc.TypeCode == mysql.TypeJSON || dc.TypeCode == mysql.TypeJSON:
			c.Kind = JSON
		case uc.TypeCode == mysql.TypeFloat || dc.TypeCode == mysql.TypeFloat:
			c.Kind, c.Digits = Float, 6
		case uc.TypeCode == mysql.TypeDouble || dc.TypeCode == mysql.TypeDouble:
			c.Kind, c.Digits = Float, 15
		}
		if key[uc.Name] {
			c.Weight = isText(uc) || isText(dc)
		}
		cols = append(cols, c)
	}
	for _, i := range down.Columns {
		if up.Column(i.Name) < 0 {
			skipped = append(skipped, i.Name)
		}
	}
	// Key in key order, not column order.
	if rk := up.RowKey(); len(rk) > 0 {
		for _, i := range rk {
			for j := range cols {
				if cols[j].Name == up.Columns[i].Name {
					keyPos = append(keyPos, j)
				}
			}
		}
	}
	return cols, skipped, keyPos, nil
}

func isText(c *schema.ColumnDef) bool {
	if c.Binary {
		return false
	}
	switch c.TypeCode {
	case mysql.TypeString, mysql.TypeVarchar, mysql.TypeVarString, mysql.TypeBlob, mysql.TypeTinyBlob,
		mysql.TypeMediumBlob, mysql.TypeLongBlob, mysql.TypeEnum, mysql.TypeSet:
		return true
	}
	return false
}

// Quote quotes an identifier.
func Quote(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// norm is a column's normalised expression for the checksum. mariadb
// selects JSON_NORMALIZE.
func norm(c Column, mariadb bool) string {
	q := Quote(c.Name)
	switch c.Kind {
	case Float:
		d := strconv.Itoa(c.Digits - 1)
		return "IF(" + q + " = 0, 0, ROUND(CAST(" + q + " AS DOUBLE), " + d + " - FLOOR(LOG10(ABS(" + q + ")))))"
	case JSON:
		if mariadb {
			return "JSON_NORMALIZE(" + q + ")"
		}
		return "CAST(" + q + " AS CHAR)"
	}
	return q
}

// RowExpr is a row's normalised text: the columns' normalised values and a
// map of which of the nullable ones are NULL (CONCAT_WS skips NULLs).
func RowExpr(cols []Column, mariadb bool) string {
	parts := make([]string, 0, len(cols)+1)
	var nulls []string
	for _, c := range cols {
		parts = append(parts, norm(c, mariadb))
		if c.Nullable {
			nulls = append(nulls, "ISNULL("+Quote(c.Name)+")")
		}
	}
	if nulls != nil {
		parts = append(parts, "CONCAT("+strings.Join(nulls, ", ")+")")
	}
	return "CONCAT_WS('#', " + strings.Join(parts, ", ") + ")"
}

// Hash selects the row hash both servers compute.
type Hash int

const (
	// CRC is CRC32 and CRC32C of the row's text: 64 bits, as fast as a
	// single CRC32 (MariaDB 10.8 and later have CRC32C).
	CRC Hash = iota
	// MD5 is the first 64 bits of MD5 of the row's text, for servers
	// without CRC32C (three times slower).
	MD5
	// CRC32 is CRC32 of the row's text alone: 32 bits, for chunk sums
	// (a row that changed keeps its CRC32 once in 2^32), at half the
	// servers' work of CRC (its row text is built once, not twice).
	CRC32
)

// HashExpr is a row's hash as text (equal rows, equal text).
func HashExpr(cols []Column, mariadb bool, h Hash) string {
	x := RowExpr(cols, mariadb)
	switch h {
	case CRC:
		return "CONCAT(CRC32(" + x + "), ':', CRC32C(" + x + "))"
	case CRC32:
		return "CRC32(" + x + ")"
	}
	return "LEFT(MD5(" + x + "), 16)"
}

// ChecksumQuery counts the rows of table within where (may be "") and
// sums their hashes: two columns, the count and the sums as text (see
// Sum).
func ChecksumQuery(table string, cols []Column, mariadb bool, h Hash, where string) string {
	x := RowExpr(cols, mariadb)
	var sum string
	switch h {
	case CRC:
		sum = "CONCAT(COALESCE(SUM(CRC32(" + x + ")), 0), ':', COALESCE(SUM(CRC32C(" + x + ")), 0))"
	case CRC32:
		sum = "CAST(COALESCE(SUM(CRC32(" + x + ")), 0) AS CHAR)"
	default:
		sum = "CAST(COALESCE(SUM(CAST(CONV(LEFT(MD5(" + x + "), 16), 16, 10) AS UNSIGNED)), 0) AS CHAR)"
	}
	q := "SELECT COUNT(*), " + sum + " FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	return q
}

// Sum adds two sums ChecksumQuery returned (decimal texts, or
// colon-separated lists of them), part by part.
func Sum(a, b string) string {
	as, bs := strings.Split(a, ":"), strings.Split(b, ":")
	if a == "" {
		as = make([]string, len(bs))
	}
	if b == "" {
		bs = make([]string, len(as))
	}
	if len(as) != len(bs) {
		return a + "|" + b
	}
	out := make([]string, len(as))
	for i := range as {
		x, _ := new(big.Int).SetString(as[i], 10)
		y, _ := new(big.Int).SetString(bs[i], 10)
		if x == nil {
			x = new(big.Int)
		}
		if y == nil {
			y = new(big.Int)
		}
		out[i] = x.Add(x, y).String()
	}
	return strings.Join(out, ":")
}

// Param is the placeholder for a value of a key column: decimals travel as
// text and must compare as decimals.
func Param(c *schema.ColumnDef) string {
	if c.TypeCode == mysql.TypeNewDecimal {
		return "CAST(? AS DECIMAL(65,30))"
	}
	return "?"
}

// Tuple is the condition (k1, k2, ...) op (v1, v2, ...) written as ORed
// prefixes, which MariaDB plans as ranges on the key. op is one of > >= <
// <=.
func Tuple(key []*schema.ColumnDef, op string, vals []any) (string, []any) {
	strict := strings.TrimSuffix(op, "=")
	var ors []string
	var args []any
	for i := range key {
		var ands []string
		for j := 0; j <= i; j++ {
			o := " = "
			if j == i {
				o = " " + strict + " "
			}
			ands = append(ands, Quote(key[j].Name)+o+Param(key[j]))
			args = append(args, vals[j])
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	if op != strict {
		var ands []string
		for j := range key {
			ands = append(ands, Quote(key[j].Name)+" = "+Param(key[j]))
			args = append(args, vals[j])
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

// Range is the condition of the chunk lo <= key < hi (nil: unbounded).
func Range(key []*schema.ColumnDef, lo, hi []any) (string, []any) {
	var conds []string
	var args []any
	if lo != nil {
		c, a := Tuple(key, ">=", lo)
		conds, args = append(conds, c), append(args, a...)
	}
	if hi != nil {
		c, a := Tuple(key, "<", hi)
		conds, args = append(conds, c), append(args, a...)
	}
	return strings.Join(conds, " AND "), args
}

// SelectList is the columns of a row read for the row compare (side up or
// down), then a collation weight for each Weight key column.
func SelectList(cols []Column, keyPos []int) string {
	var out []string
	for _, c := range cols {
		out = append(out, Quote(c.Name))
	}
	for _, p := range keyPos {
		if cols[p].Weight {
			out = append(out, "WEIGHT_STRING("+Quote(cols[p].Name)+")")
		}
	}
	return strings.Join(out, ", ")
}

// ReadDef is the definition snapshot.Read converts a row of SelectList
// with: the side's column definitions, then binary weights.
func ReadDef(cols []Column, keyPos []int, up bool) *schema.TableDef {
	d := &schema.TableDef{}
	for _, c := range cols {
		if up {
			d.Columns = append(d.Columns, *c.Up)
		} else {
			d.Columns = append(d.Columns, *c.Down)
		}
	}
	for _, p := range keyPos {
		if cols[p].Weight {
			d.Columns = append(d.Columns, schema.ColumnDef{Name: "weight", TypeCode: mysql.TypeVarString, Binary: true})
		}
	}
	return d
}

// MatchKey is the text rows are matched by: each key value, or its
// collation weight, in an unambiguous form.
func MatchKey(cols []Column, keyPos []int, row []any) string {
	var b strings.Builder
	w := len(cols)
	for _, p := range keyPos {
		v := row[p]
		if cols[p].Weight {
			v = row[w]
			w++
		}
		s := fmt.Sprintf("%T:%v", v, v)
		if x, ok := v.([]byte); ok {
			s = "b:" + hex.EncodeToString(x)
		}
		fmt.Fprintf(&b, "%d:%s|", len(s), s)
	}
	return b.String()
}

// Equal reports whether two values of column c are the same under its
// comparison rule.
func Equal(c Column, a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	switch c.Kind {
	case Float:
		x, ok1 := toFloat(a)
		y, ok2 := toFloat(b)
		if ok1 && ok2 {
			return FloatEqual(x, y, c.Digits)
		}
	case JSON:
		if eq, ok := jsonEqual(toString(a), toString(b)); ok {
			return eq
		}
	}
	switch x := a.(type) {
	case []byte:
		if y, ok := b.([]byte); ok {
			return bytes.Equal(x, y)
		}
	case string:
		if y, ok := b.(string); ok {
			return x == y
		}
	}
	return toString(a) == toString(b)
}

// FloatEqual reports whether a and b are the same to digits significant
// digits: they round to the same digits digits, or they differ by less
// than half a unit of the last one (two values either side of a rounding
// boundary). Values that differ by a unit or more never compare equal, and
// values FloatEqual calls different always round differently, so that the
// chunk checksum (which rounds) sees every difference this sees.
func FloatEqual(a, b float64, digits int) bool {
	if a == b {
		return true
	}
	if strconv.FormatFloat(a, 'e', digits-1, 64) == strconv.FormatFloat(b, 'e', digits-1, 64) {
		return true
	}
	m := math.Max(math.Abs(a), math.Abs(b))
	unit := math.Pow(10, math.Floor(math.Log10(m))-float64(digits-1))
	return math.Abs(a-b) < unit/2
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func toString(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// jsonEqual compares two JSON documents by value: objects by key set,
// arrays in order, numbers as numbers. ok is false when one is not JSON.
func jsonEqual(a, b string) (eq, ok bool) {
	var x, y any
	if jsonDecode(a, &x) != nil || jsonDecode(b, &y) != nil {
		return false, false
	}
	return jsonValueEqual(x, y), true
}

func jsonDecode(s string, v *any) error {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	return d.Decode(v)
}

func jsonValueEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonValueEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonValueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		p, _, e1 := big.ParseFloat(string(x), 10, 256, big.ToNearestEven)
		q, _, e2 := big.ParseFloat(string(y), 10, 256, big.ToNearestEven)
		return e1 == nil && e2 == nil && p.Cmp(q) == 0
	}
	return a == b
}

// Literal writes a value (as snapshot.Value converts it) as an SQL
// literal of column c: numbers as numbers, floats in their shortest exact
// form, binary values as X'..', text quoted (for a session without
// NO_BACKSLASH_ESCAPES).
func Literal(c *schema.ColumnDef, v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		if c.TypeCode == mysql.TypeBit {
			return fmt.Sprintf("b'%b'", x)
		}
		return strconv.FormatUint(x, 10)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return "X'" + strings.ToUpper(hex.EncodeToString(x)) + "'"
	case string:
		if c.TypeCode == mysql.TypeNewDecimal {
			return x
		}
		return QuoteString(x)
	}
	return QuoteString(fmt.Sprint(v))
}

// QuoteString quotes s as an SQL string literal.
func QuoteString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '\'':
			b.WriteString(`\'`)
		case '\\':
			b.WriteString(`\\`)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case 0x1a:
			b.WriteString(`\Z`)
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
