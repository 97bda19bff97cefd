package snapshot

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"math/big"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dmworker/dmworker/internal/schema"
)

// Table modes: how a table is cut into chunks.
const (
	// ModeRange: a single-column integer key, cut into key ranges planned
	// up front from its MIN and MAX; the chunks are read in parallel.
	ModeRange = "range"
	// ModeKeyset: any other orderable key (composite, text, decimal,
	// temporal): pages of ChunkRows rows in key order, read one after the
	// other, each starting after the last key of the page before.
	ModeKeyset = "keyset"
	// ModeWhole: one chunk, the whole table (no usable key).
	ModeWhole = "whole"
)

// TablePlan is how one table is copied, and how far the copy got. It is
// part of the progress stored in the checkpoint, so its JSON form must stay
// readable by later versions.
type TablePlan struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	Mode   string `json:"mode"`
	// Key is the key's column names (primary key, else a unique key of NOT
	// NULL columns); empty in ModeWhole for a table without one.
	Key []string `json:"key,omitempty"`
	// Bounds (ModeRange) are the chunks' boundaries as decimal text:
	// chunk i holds keys >= Bounds[i-1] (no lower bound for i == 0) and
	// < Bounds[i] (no upper bound for the last chunk). len(Bounds) is the
	// number of chunks minus one.
	Bounds []string `json:"bounds,omitempty"`
	// Done (ModeRange) marks the chunks copied, one byte '0' or '1' each.
	Done string `json:"done,omitempty"`
	// Last (ModeKeyset) is the last key copied, each value encoded by
	// EncodeKey; empty before the first page.
	Last []string `json:"last,omitempty"`
	// Finished is true once every row is copied.
	Finished bool `json:"finished,omitempty"`
	// Deferred are the secondary index definitions ("KEY `k` (`c`)", as
	// SHOW CREATE TABLE writes them) left out of the downstream table when
	// the copy created it, still to be added once its rows are in.
	Deferred []string `json:"deferred,omitempty"`
	// EstRows and EstBytes are the server's estimates of the table's rows
	// and data size (information_schema.TABLES) when the copy began.
	EstRows  int64 `json:"est-rows"`
	EstBytes int64 `json:"est-bytes"`
	// Rows and Bytes copied by finished chunks (bytes: the values' sizes).
	Rows  int64 `json:"rows"`
	Bytes int64 `json:"bytes"`
}

// Chunks is the number of chunks in ModeRange, else 1.
func (t *TablePlan) Chunks() int {
	if t.Mode == ModeRange {
		return len(t.Bounds) + 1
	}
	return 1
}

// QualifiedName is "schema.name".
func (t *TablePlan) QualifiedName() string { return t.Schema + "." + t.Name }

// Plan decides how to copy def, reading its key's range and the server's
// estimates through q (a connection inside the snapshot).
func Plan(ctx context.Context, q Querier, def *schema.TableDef, chunkRows int) (*TablePlan, error) {
	t := &TablePlan{Schema: def.Schema, Name: def.Name, Mode: ModeWhole}
	var rows, bytes sql.NullInt64
	err := q.QueryRowContext(ctx, "SELECT TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
		def.Schema, def.Name).Scan(&rows, &bytes)
	if err != nil && err != sql.ErrNoRows {
		return nil, fmt.Errorf("estimates of %s: %w", t.QualifiedName(), err)
	}
	t.EstRows, t.EstBytes = rows.Int64, bytes.Int64
	key := def.RowKey()
	for _, i := range key {
		t.Key = append(t.Key, def.Columns[i].Name)
	}
	switch {
	case len(key) == 1 && isInteger(&def.Columns[key[0]]):
		t.Mode = ModeRange
	case len(key) > 0 && keysetable(def, key):
		t.Mode = ModeKeyset
		return t, nil
	default:
		return t, nil
	}
	col := quote(def.Columns[key[0]].Name)
	var lo, hi sql.NullString
	query := "SELECT CAST(MIN(" + col + ") AS CHAR), CAST(MAX(" + col + ") AS CHAR) FROM " + tableName(def)
	if err := q.QueryRowContext(ctx, query).Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("key range of %s: %w", t.QualifiedName(), err)
	}
	t.Done = "0"
	if !lo.Valid || chunkRows <= 0 || t.EstRows <= int64(chunkRows) {
		return t, nil // empty or small: one chunk
	}
	n := (t.EstRows + int64(chunkRows) - 1) / int64(chunkRows)
	l, _ := new(big.Int).SetString(lo.String, 10)
	h, _ := new(big.Int).SetString(hi.String, 10)
	if l == nil || h == nil {
		return nil, fmt.Errorf("key range of %s: MIN %q, MAX %q are not integers", t.QualifiedName(), lo.String, hi.String)
	}
	span := new(big.Int).Sub(h, l)
	span.Add(span, big.NewInt(1))
	if span.Cmp(big.NewInt(n)) < 0 {
		n = span.Int64()
	}
	step := new(big.Int).Div(span, big.NewInt(n))
	b := new(big.Int).Set(l)
	for i := int64(1); i < n; i++ {
		b.Add(b, step)
		t.Bounds = append(t.Bounds, b.String())
	}
	t.Done = strings.Repeat("0", t.Chunks())
	return t, nil
}

func isInteger(c *schema.ColumnDef) bool {
	switch c.TypeCode {
	case mysql.TypeTiny, mysql.TypeShort, mysql.TypeInt24, mysql.TypeLong, mysql.TypeLonglong:
		return true
	}
	return false
}

// keysetable reports whether a key's columns compare with ">" in the order
// ORDER BY sorts them, for typed parameters: integers, decimals, dates and
// times, CHAR, VARCHAR and VARBINARY. ENUM and SET sort by index but compare
// as text; BINARY, BIT, floats, BLOB/TEXT and the rest are left out.
func keysetable(def *schema.TableDef, key []int) bool {
	for _, i := range key {
		switch def.Columns[i].TypeCode {
		case mysql.TypeTiny, mysql.TypeShort, mysql.TypeInt24, mysql.TypeLong, mysql.TypeLonglong,
			mysql.TypeNewDecimal, mysql.TypeDate, mysql.TypeDatetime, mysql.TypeTimestamp, mysql.TypeDuration,
			mysql.TypeYear, mysql.TypeVarchar, mysql.TypeVarString:
		case mysql.TypeString:
			// BINARY(n) values lose their padding on the way (see
			// Value): they would not compare as stored.
			if def.Columns[i].Binary {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Querier is a connection or pool.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func quote(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func tableName(def *schema.TableDef) string { return quote(def.Schema) + "." + quote(def.Name) }

// selectList is every column of def in definition order (SELECT * would
// leave out MariaDB's INVISIBLE columns, which row images carry).
func selectList(def *schema.TableDef) string {
	cols := make([]string, len(def.Columns))
	for i, c := range def.Columns {
		cols[i] = quote(c.Name)
	}
	return strings.Join(cols, ", ")
}

// ChunkQuery is the SELECT of chunk i (ModeRange) or of the whole table
// (ModeWhole), with its arguments.
func (t *TablePlan) ChunkQuery(def *schema.TableDef, i int) (string, []any, error) {
	q := "SELECT " + selectList(def) + " FROM " + tableName(def)
	if t.Mode != ModeRange {
		return q, nil, nil
	}
	ci := def.Column(t.Key[0])
	if ci < 0 {
		return "", nil, fmt.Errorf("%s has no key column %s", t.QualifiedName(), t.Key[0])
	}
	col := &def.Columns[ci]
	var conds []string
	var args []any
	bound := func(s string) (any, error) {
		if col.Unsigned {
			var u uint64
			_, err := fmt.Sscan(s, &u)
			return u, err
		}
		var v int64
		_, err := fmt.Sscan(s, &v)
		return v, err
	}
	if i > 0 {
		v, err := bound(t.Bounds[i-1])
		if err != nil {
			return "", nil, fmt.Errorf("%s chunk %d: bound %q: %w", t.QualifiedName(), i, t.Bounds[i-1], err)
		}
		conds, args = append(conds, quote(col.Name)+" >= ?"), append(args, v)
	}
	if i < len(t.Bounds) {
		v, err := bound(t.Bounds[i])
		if err != nil {
			return "", nil, fmt.Errorf("%s chunk %d: bound %q: %w", t.QualifiedName(), i, t.Bounds[i], err)
		}
		conds, args = append(conds, quote(col.Name)+" < ?"), append(args, v)
	}
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	return q, args, nil
}

// PageQuery is the SELECT of the next page of at most limit rows after the
// key last (nil: from the start), in key order (ModeKeyset).
func (t *TablePlan) PageQuery(def *schema.TableDef, last []any, limit int) (string, []any, error) {
	q := "SELECT " + selectList(def) + " FROM " + tableName(def)
	cols := make([]*schema.ColumnDef, len(t.Key))
	for i, k := range t.Key {
		ci := def.Column(k)
		if ci < 0 {
			return "", nil, fmt.Errorf("%s has no key column %s", t.QualifiedName(), k)
		}
		cols[i] = &def.Columns[ci]
	}
	var args []any
	if last != nil {
		// (a > ?) OR (a = ? AND b > ?) OR ...: MariaDB plans the ORed
		// ranges on the key; a row constructor it would scan.
		var ors []string
		for i := range cols {
			var ands []string
			for j := 0; j <= i; j++ {
				op := " = "
				if j == i {
					op = " > "
				}
				ands = append(ands, quote(cols[j].Name)+op+param(cols[j]))
				args = append(args, last[j])
			}
			ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		}
		q += " WHERE " + strings.Join(ors, " OR ")
	}
	order := make([]string, len(cols))
	for i, c := range cols {
		order[i] = quote(c.Name)
	}
	q += " ORDER BY " + strings.Join(order, ", ") + fmt.Sprintf(" LIMIT %d", limit)
	return q, args, nil
}

// param is the placeholder for a key value of col: decimals travel as text
// and must compare as decimals, not as floating point.
func param(col *schema.ColumnDef) string {
	if col.TypeCode == mysql.TypeNewDecimal {
		return "CAST(? AS DECIMAL(65,30))"
	}
	return "?"
}

// KeyOf picks the key's values out of a converted row.
func (t *TablePlan) KeyOf(def *schema.TableDef, row []any) []any {
	out := make([]any, len(t.Key))
	for i, k := range t.Key {
		out[i] = row[def.Column(k)]
	}
	return out
}

// EncodeKey writes key values (as Value returns them) as text that
// DecodeKey reads back: a type letter, ':' and the value.
func EncodeKey(key []any) ([]string, error) {
	out := make([]string, len(key))
	for i, v := range key {
		switch x := v.(type) {
		case int64:
			out[i] = fmt.Sprintf("i:%d", x)
		case uint64:
			out[i] = fmt.Sprintf("u:%d", x)
		case string:
			out[i] = "s:" + x
		case []byte:
			out[i] = fmt.Sprintf("b:%x", x)
		default:
			return nil, fmt.Errorf("key value of type %T", v)
		}
	}
	return out, nil
}

// DecodeKey reads what EncodeKey wrote.
func DecodeKey(enc []string) ([]any, error) {
	out := make([]any, len(enc))
	for i, e := range enc {
		tag, val, ok := strings.Cut(e, ":")
		if !ok {
			return nil, fmt.Errorf("key value %q", e)
		}
		var err error
		switch tag {
		case "i":
			var v int64
			_, err = fmt.Sscan(val, &v)
			out[i] = v
		case "u":
			var v uint64
			_, err = fmt.Sscan(val, &v)
			out[i] = v
		case "s":
			out[i] = val
		case "b":
			var b []byte
			_, err = fmt.Sscanf(val, "%x", &b)
			if val == "" {
				b, err = []byte{}, nil
			}
			out[i] = b
		default:
			err = fmt.Errorf("unknown tag %q", tag)
		}
		if err != nil {
			return nil, fmt.Errorf("key value %q: %w", e, err)
		}
	}
	return out, nil
}

// Read runs query on conn as a prepared statement (the binary protocol,
// which carries FLOAT and DOUBLE exactly) and calls emit with each row
// converted by Value, in def's column order, and its size in bytes.
func Read(ctx context.Context, conn *sql.Conn, def *schema.TableDef, query string, args []any, emit func(row []any, size int) error) error {
	// Straight from the driver: database/sql's Scan would copy every
	// []byte once more before Value converts it.
	return conn.Raw(func(dc any) error {
		prep, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("snapshot: the driver connection %T cannot prepare statements", dc)
		}
		st, err := prep.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer st.Close()
		sq, ok := st.(driver.StmtQueryContext)
		if !ok {
			return fmt.Errorf("snapshot: the driver statement %T cannot query with a context", st)
		}
		named := make([]driver.NamedValue, len(args))
		for i, a := range args {
			named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
			if c, ok := dc.(driver.NamedValueChecker); ok {
				err = c.CheckNamedValue(&named[i])
			} else {
				named[i].Value, err = driver.DefaultParameterConverter.ConvertValue(a)
			}
			if err != nil {
				return fmt.Errorf("snapshot: argument %d: %w", i+1, err)
			}
		}
		rows, err := sq.QueryContext(ctx, named)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := len(def.Columns)
		if got := len(rows.Columns()); got != n {
			return fmt.Errorf("snapshot: %d columns read, %d in the definition of %s.%s", got, n, def.Schema, def.Name)
		}
		raw := make([]driver.Value, n)
		for {
			if err := rows.Next(raw); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			// raw's bytes are the driver's buffer, reused by the next
			// row: the row's text and binary values are copied into
			// one allocation, which the converted values then share.
			total := 0
			for _, v := range raw {
				if b, ok := v.([]byte); ok {
					total += len(b)
				}
			}
			arena := make([]byte, 0, total)
			row := make([]any, n)
			size := 0
			for i, v := range raw {
				if b, ok := v.([]byte); ok {
					at := len(arena)
					arena = append(arena, b...)
					v = arena[at:len(arena):len(arena)]
				}
				c, err := valueOwned(v, &def.Columns[i])
				if err != nil {
					return err
				}
				if b, ok := c.([]byte); ok && b == nil {
					c = []byte{} // empty, not NULL
				}
				row[i] = c
				size += Size(c)
			}
			if err := emit(row, size); err != nil {
				return err
			}
		}
	})
}
