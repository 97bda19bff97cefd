package dmworker

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/streamer"
)

// The continuous validator's value comparison (see ValidationConfig for
// the rules). Upstream values are as Change carries them; downstream values
// are as database/sql scans them into any (text or binary protocol).

func isRowsEvent(ev *streamer.Event) bool {
	if ev == nil || ev.BinlogEvent == nil {
		return false
	}
	_, ok := ev.Event.(*replication.RowsEvent)
	return ok
}

// checkBatch is how many keys one query looks up.
const checkBatch = 200

type checkResult struct {
	equal bool
	down  []any // downstream image, column order (nil: no row)
}

// check looks the rows up downstream and compares them.
func (v *validator) check(ctx context.Context, todo []*vrow) (map[*vrow]checkResult, error) {
	out := make(map[*vrow]checkResult, len(todo))
	if len(todo) == 0 {
		return out, nil
	}
	groups := map[string][]*vrow{}
	var order []string
	for _, r := range todo {
		g := r.table.QualifiedName() + "\x00" + fmt.Sprint(r.key) + "\x00" + columnSig(r.table)
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], r)
	}
	conn, err := v.db.Conn(ctx)
	if err != nil {
		return out, fmt.Errorf("validator: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION time_zone = '+00:00'"); err != nil {
		return out, fmt.Errorf("validator: %w", err)
	}
	var firstErr error
	for _, g := range order {
		rows := groups[g]
		for i := 0; i < len(rows); i += checkBatch {
			chunk := rows[i:min(i+checkBatch, len(rows))]
			if err := v.checkChunk(ctx, conn, chunk, out); err != nil {
				if ctx.Err() != nil {
					return out, err
				}
				if firstErr == nil {
					firstErr = err
				}
				break // the table's other rows wait for the next pass
			}
		}
	}
	return out, firstErr
}

func columnSig(t *Table) string {
	var b strings.Builder
	for _, c := range t.Columns {
		b.WriteString(c.Name)
		b.WriteByte(0)
	}
	return b.String()
}

func (v *validator) checkChunk(ctx context.Context, conn *sql.Conn, chunk []*vrow, out map[*vrow]checkResult) error {
	t, key := chunk[0].table, chunk[0].key
	// Columns read: the key's, then (mode full) every stored column.
	var cols []int
	cols = append(cols, key...)
	if v.cfg.Mode == ValidationFull {
		for i, c := range t.Columns {
			if !c.Generated && !contains(key, i) {
				cols = append(cols, i)
			}
		}
	}
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, c := range cols {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(quoteIdent(t.Columns[c].Name))
	}
	q.WriteString(" FROM " + quoteIdent(t.Schema) + "." + quoteIdent(t.Name) + " WHERE (")
	for i, k := range key {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(quoteIdent(t.Columns[k].Name))
	}
	q.WriteString(") IN (")
	args := make([]any, 0, len(chunk)*len(key))
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", len(key)), ",") + ")"
	images := make([][]any, len(chunk))
	keyVals := make([][]any, len(chunk))
	for i, r := range chunk {
		img, kv, err := r.unpack()
		if err != nil {
			return err
		}
		images[i], keyVals[i] = img, kv
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(tuple)
		args = append(args, kv...)
	}
	q.WriteByte(')')
	rs, err := conn.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return fmt.Errorf("validator: check %s: %w", t.QualifiedName(), err)
	}
	defer rs.Close()
	found := map[string][]any{} // key text -> downstream image (column order)
	var foundList [][]any
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return fmt.Errorf("validator: check %s: %w", t.QualifiedName(), err)
		}
		img := make([]any, len(t.Columns))
		for i, c := range cols {
			img[c] = vals[i]
		}
		found[keyText(t, key, img)] = img
		foundList = append(foundList, img)
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("validator: check %s: %w", t.QualifiedName(), err)
	}
	for j, r := range chunk {
		kv := keyVals[j]
		full := make([]any, len(t.Columns))
		for i, k := range key {
			full[k] = kv[i]
		}
		down, ok := found[keyText(t, key, full)]
		if !ok {
			// A key equal under the column's collation, not byte for byte.
			for _, img := range foundList {
				if keysFold(t, key, full, img) {
					down, ok = img, true
					break
				}
			}
		}
		var res checkResult
		switch {
		case r.deleted:
			res.equal = !ok
		case !ok:
			res.equal = false
		case v.cfg.Mode == ValidationFast:
			res.equal = true
		default:
			res.equal = rowEqual(t, images[j], down)
		}
		if !res.equal {
			res.down = down // kept for a row that differs only
		}
		out[r] = res
	}
	return nil
}

func contains(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// keyText is the key of img as text, to match downstream rows to held ones.
func keyText(t *Table, key []int, img []any) string {
	var b strings.Builder
	for _, k := range key {
		b.WriteString(canonText(t.Columns[k], img[k]))
		b.WriteByte(0)
	}
	return b.String()
}

func keysFold(t *Table, key []int, a, b []any) bool {
	for _, k := range key {
		x, y := canonText(t.Columns[k], a[k]), canonText(t.Columns[k], b[k])
		if !strings.EqualFold(strings.TrimRight(x, " "), strings.TrimRight(y, " ")) {
			return false
		}
	}
	return true
}

// rowEqual compares every stored column of up and down.
func rowEqual(t *Table, up, down []any) bool {
	for i, c := range t.Columns {
		if c.Generated {
			continue
		}
		if !valueEqual(c, up[i], down[i]) {
			return false
		}
	}
	return true
}

// valueFamily is a column's type family, from its type text.
func valueFamily(c Column) string {
	ty := c.Type
	if i := strings.IndexAny(ty, "( "); i >= 0 {
		ty = ty[:i]
	}
	switch ty {
	case "float":
		return "float"
	case "double", "real":
		return "double"
	case "decimal", "numeric":
		return "decimal"
	case "date", "datetime", "timestamp", "time":
		return "temporal"
	case "json":
		return "json"
	case "longtext":
		if c.Binary {
			return "other"
		}
		return "longtext"
	case "bit":
		return "bit"
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year":
		return "int"
	case "binary":
		return "binary"
	case "char":
		if c.Binary {
			return "binary"
		}
		return "char"
	}
	return "other"
}

// valueEqual compares one column's values under the validator's rules.
func valueEqual(c Column, up, down any) bool {
	if up == nil || down == nil {
		return up == nil && down == nil
	}
	fam := valueFamily(c)
	if d, ok := down.([]byte); ok {
		// The common cases, without a copy of the downstream's text.
		switch u := up.(type) {
		case string:
			switch fam {
			case "char":
				return strings.TrimRight(u, " ") == string(bytes.TrimRight(d, " "))
			case "other", "int":
				return u == string(d)
			}
		case int64:
			if fam == "int" || fam == "other" {
				var buf [24]byte
				return string(strconv.AppendInt(buf[:0], u, 10)) == string(d)
			}
		case uint64:
			if fam == "int" || fam == "other" {
				var buf [24]byte
				return string(strconv.AppendUint(buf[:0], u, 10)) == string(d)
			}
		}
	}
	switch fam {
	case "float":
		return floatEqual(toFloat(up), toFloat(down), 1e-6)
	case "double":
		return floatEqual(toFloat(up), toFloat(down), 1e-14)
	case "decimal":
		a, ok1 := new(big.Rat).SetString(asString(up))
		b, ok2 := new(big.Rat).SetString(asString(down))
		if ok1 && ok2 {
			return a.Cmp(b) == 0
		}
		return asString(up) == asString(down)
	case "json":
		return jsonEqual(asString(up), asString(down))
	case "bit":
		return toUint(up) == toUint(down)
	case "binary":
		return bytes.Equal(padBinary(c, asBytes(up)), padBinary(c, asBytes(down)))
	case "char":
		return strings.TrimRight(asString(up), " ") == strings.TrimRight(asString(down), " ")
	case "longtext":
		// MariaDB's JSON is a LONGTEXT: two JSON documents compare by value.
		a, b := asString(up), asString(down)
		return a == b || isJSONDoc(a) && isJSONDoc(b) && jsonEqual(a, b)
	}
	return canonText(c, up) == canonText(c, down)
}

// canonText is a value's text for comparison: temporal values without
// trailing fractional zeros, numbers in decimal.
func canonText(c Column, v any) string {
	if v == nil {
		return "\x00NULL"
	}
	switch valueFamily(c) {
	case "temporal":
		s := asString(v)
		if i := strings.LastIndexByte(s, '.'); i >= 0 && i > strings.LastIndexByte(s, ':') {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return s
	case "decimal":
		if r, ok := new(big.Rat).SetString(asString(v)); ok {
			return r.RatString()
		}
	case "binary":
		return string(padBinary(c, asBytes(v)))
	case "bit":
		return strconv.FormatUint(toUint(v), 10)
	case "float", "double":
		return strconv.FormatFloat(toFloat(v), 'g', -1, 64)
	}
	return asString(v)
}

func padBinary(c Column, b []byte) []byte {
	if !strings.HasPrefix(c.Type, "binary(") {
		return b
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(c.Type, "binary("), ")"))
	if err != nil || len(b) >= n {
		return b
	}
	return append(bytes.Clone(b), make([]byte, n-len(b))...)
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.Format("2006-01-02 15:04:05.999999")
	case bool:
		if x {
			return "1"
		}
		return "0"
	}
	return fmt.Sprint(v)
}

func asBytes(v any) []byte {
	if b, ok := v.([]byte); ok {
		return b
	}
	return []byte(asString(v))
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float32:
		return float64(x)
	case float64:
		return x
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	f, err := strconv.ParseFloat(asString(v), 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

func toUint(v any) uint64 {
	switch x := v.(type) {
	case uint64:
		return x
	case int64:
		return uint64(x)
	case []byte:
		// BIT as the server sends it: big-endian bytes.
		var buf [8]byte
		if len(x) > 8 {
			x = x[len(x)-8:]
		}
		copy(buf[8-len(x):], x)
		return binary.BigEndian.Uint64(buf[:])
	}
	n, _ := strconv.ParseUint(asString(v), 10, 64)
	return n
}

// floatEqual reports whether a and b agree within rel of the larger
// magnitude (FLOAT keeps about 7 significant digits, DOUBLE about 16).
func floatEqual(a, b, rel float64) bool {
	if a == b {
		return true
	}
	if math.IsNaN(a) || math.IsNaN(b) {
		return false
	}
	m := math.Max(math.Abs(a), math.Abs(b))
	if m < 1e-300 {
		return true
	}
	return math.Abs(a-b) <= rel*m
}

// jsonEqual compares two JSON texts by value: objects by key, numbers by
// value; text that is not JSON compares as text.
func jsonEqual(a, b string) bool {
	if a == b {
		return true
	}
	x, err1 := decodeJSON(a)
	y, err2 := decodeJSON(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return jsonValueEqual(x, y)
}

func isJSONDoc(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[")
}

func decodeJSON(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func jsonValueEqual(x, y any) bool {
	switch a := x.(type) {
	case map[string]any:
		b, ok := y.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !jsonValueEqual(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := y.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !jsonValueEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := y.(json.Number)
		if !ok {
			return false
		}
		ra, ok1 := new(big.Rat).SetString(string(a))
		rb, ok2 := new(big.Rat).SetString(string(b))
		if ok1 && ok2 {
			return ra.Cmp(rb) == 0
		}
		return a == b
	}
	return x == y
}

// tvalue is a value with its Go type, for the validator's stored state.
type tvalue struct {
	T byte   `json:"t"`
	V string `json:"v,omitempty"`
}

func encodeValues(vals []any) []tvalue {
	out := make([]tvalue, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case nil:
			out[i] = tvalue{T: 'n'}
		case int64:
			out[i] = tvalue{'i', strconv.FormatInt(x, 10)}
		case uint64:
			out[i] = tvalue{'u', strconv.FormatUint(x, 10)}
		case float32:
			out[i] = tvalue{'f', strconv.FormatFloat(float64(x), 'g', -1, 32)}
		case float64:
			out[i] = tvalue{'d', strconv.FormatFloat(x, 'g', -1, 64)}
		case string:
			out[i] = tvalue{'s', x}
		case []byte:
			out[i] = tvalue{'b', base64.StdEncoding.EncodeToString(x)}
		default:
			out[i] = tvalue{'s', fmt.Sprint(x)}
		}
	}
	return out
}

func decodeValues(tv []tvalue) []any {
	out := make([]any, len(tv))
	for i, t := range tv {
		switch t.T {
		case 'i':
			out[i], _ = strconv.ParseInt(t.V, 10, 64)
		case 'u':
			out[i], _ = strconv.ParseUint(t.V, 10, 64)
		case 'f':
			f, _ := strconv.ParseFloat(t.V, 32)
			out[i] = float32(f)
		case 'd':
			out[i], _ = strconv.ParseFloat(t.V, 64)
		case 's':
			out[i] = t.V
		case 'b':
			out[i], _ = base64.StdEncoding.DecodeString(t.V)
		}
	}
	return out
}

// displayValue is a value as the error table shows it: numbers as
// numbers, text as text, bytes that are not UTF-8 as "0x" hex.
func displayValue(v any) any {
	switch x := v.(type) {
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return fmt.Sprintf("0x%X", x)
	case float32:
		return float64(x)
	}
	return v
}

func displayValues(vals []any) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = displayValue(v)
	}
	return out
}
