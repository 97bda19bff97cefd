package mysqlsink

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
)

var _ dmworker.BulkSink = (*Sink)(nil)

// bulkState is what ApplyBulk learns once and keeps.
type bulkState struct {
	mu sync.Mutex
	// off: the server refused LOAD DATA LOCAL INFILE; every batch goes
	// through Apply.
	off bool
	// charset is the pool's character_set_client, "" until asked.
	charset string
	tables  map[*dmworker.Table]*bulkTable
}

// maxBulkTables bounds bulkState.tables; the map is emptied when full.
const maxBulkTables = 1024

// bulkTable is how ApplyBulk loads one table.
type bulkTable struct {
	// unsupported, when not nil, says why the table is not bulk loaded
	// (it wraps dmworker.ErrBulkUnsupported).
	unsupported error
	name        string // schema.table, for errors
	// head and tail go around the reader's name in the statement.
	head, tail string
	cols       []int  // the writable columns, in order
	kinds      []byte // how each is written: kindText, kindBit, kindYear
}

const (
	kindText = iota // a value of the contract as text, escaped
	kindBit         // uint64 as the 8 big-endian bytes BIT stores
	kindYear        // int64 with four digits: "0000" is year 0, "0" 2000
)

// bulkSeq names the reader of each load.
var bulkSeq atomic.Uint64

// bulkBufs holds encoding buffers for reuse: a batch's rows are a few MB,
// which allocating (and zeroing) anew for every load costs CPU. Buffers
// over maxPooledBuf are not kept.
var bulkBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledBuf = 16 << 20

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", dmworker.ErrBulkUnsupported, fmt.Sprintf(format, args...))
}

// ApplyBulk loads a batch of inserts into one table with LOAD DATA LOCAL
// INFILE (rows streamed from memory through go-sql-driver's reader
// handlers), which the server parses for less CPU than INSERT text: one
// transaction, b.Fence checked first as Apply checks it, the session as
// Apply's (time zone, sql_mode, foreign key checks off, WithoutBinlog).
//
// Every value is sent in the bytes Apply's INSERT would store: text columns
// raw, under CHARACTER SET binary, so only in tables whose text columns'
// character sets store the client's bytes as they are (the pool's
// character_set_client, or utf8mb3 under utf8mb4); BIT as the 8 bytes a
// number stores; YEAR with four digits. A load that skips a row (LOCAL
// INFILE ignores a duplicate key instead of failing) fails with nothing
// applied; one that gives a warning (a value stored other than as sent) is
// rolled back and reported as dmworker.ErrBulkUnsupported, as is a table
// with another character set, a table whose foreign keys are checked,
// MySQL's JSON, and a server whose local_infile is off.
func (s *Sink) ApplyBulk(ctx context.Context, b *dmworker.Batch) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, &Error{Op: "load", Err: err})
	}
	if b == nil || (len(b.Changes) == 0 && b.Checkpoint == nil) {
		return nil
	}
	if b.SafeMode || b.Checkpoint != nil {
		return unsupported("safe mode or a checkpoint")
	}
	if err := validateChanges(b.Changes); err != nil {
		return fail(ctx, &Error{Op: "validate", Err: fmt.Errorf("%w: %v", ErrInvalidBatch, err)})
	}
	tbl := b.Changes[0].Table
	for _, c := range b.Changes {
		if c.Kind != dmworker.Insert || !sameTable(c.Table, tbl) {
			return unsupported("not inserts into one table")
		}
	}
	if b.Fence.Task != "" {
		if e := s.ensureCheckpointTable(ctx); e != nil {
			return fail(ctx, e)
		}
	}
	bt, e := s.bulkTable(ctx, tbl)
	if e != nil {
		return fail(ctx, e)
	}
	if bt.unsupported != nil {
		return bt.unsupported
	}
	buf := bulkBufs.Get().(*[]byte)
	defer bulkBufs.Put(buf)
	data, err := bt.encode((*buf)[:0], b.Changes)
	if err != nil {
		return err
	}
	if cap(data) <= maxPooledBuf {
		*buf = data
	}
	name := "dmworker-bulk-" + strconv.FormatUint(bulkSeq.Add(1), 10)
	mysql.RegisterReaderHandler(name, func() io.Reader { return bytes.NewReader(data) })
	defer mysql.DeregisterReaderHandler(name)
	query := bt.head + name + bt.tail
	err = s.withSession(ctx, func(conn *sql.Conn) error {
		return s.loadTx(ctx, conn, bt, query, len(b.Changes), b.Fence)
	})
	var lost *commitLost
	if errors.As(err, &lost) {
		return s.commitFailed(ctx, lost.err, nil, nil)
	}
	return err
}

// loadTx runs the load in a transaction and commits it when every row went
// in as sent.
func (s *Sink) loadTx(ctx context.Context, conn *sql.Conn, bt *bulkTable, query string, rows int, fence dmworker.Fence) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fail(ctx, &Error{Op: "begin", Err: err})
	}
	if fence.Task != "" {
		if e := s.checkFence(ctx, tx, fence); e != nil {
			_ = tx.Rollback()
			return fail(ctx, e)
		}
	}
	res, err := tx.ExecContext(ctx, query)
	if err != nil {
		_ = tx.Rollback()
		if infileRefused(err) {
			s.bulk.mu.Lock()
			s.bulk.off = true
			s.bulk.mu.Unlock()
			return unsupported("the server refuses LOAD DATA LOCAL INFILE: %v", err)
		}
		return fail(ctx, &Error{Op: "load", Table: bt.name, Rows: rows, Statement: shorten(query), Err: err})
	}
	loaded, err := res.RowsAffected()
	var warnings int64
	if err == nil {
		err = tx.QueryRowContext(ctx, "SELECT @@warning_count").Scan(&warnings)
	}
	if err != nil {
		_ = tx.Rollback()
		return fail(ctx, &Error{Op: "load", Table: bt.name, Rows: rows, Err: err})
	}
	if loaded != int64(rows) {
		_ = tx.Rollback()
		// What Apply's INSERT meets as a duplicate key error.
		return fail(ctx, &Error{Op: "load", Table: bt.name, Rows: rows,
			Err: fmt.Errorf("%d of %d rows loaded: a key is taken", loaded, rows), noRetry: true})
	}
	if warnings > 0 {
		_ = tx.Rollback()
		return &Error{Op: "load", Table: bt.name, Rows: rows, Err: unsupported("%d warnings: a value would be stored other than as sent", warnings)}
	}
	if s.commit != nil {
		err = s.commit(ctx, tx)
	} else {
		err = commitTx(ctx, tx)
	}
	if err != nil {
		return &commitLost{err: err}
	}
	return nil
}

// infileRefused reports the server's refusal of LOCAL INFILE
// (ER_NOT_ALLOWED_COMMAND, MariaDB's ER_LOAD_INFILE_CAPABILITY_DISABLED,
// MySQL's ER_CLIENT_LOCAL_FILES_DISABLED).
func infileRefused(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1148, 4166, 3948:
		return true
	}
	return false
}

// bulkTable returns how tbl is loaded, working it out on first use.
func (s *Sink) bulkTable(ctx context.Context, tbl *dmworker.Table) (*bulkTable, *Error) {
	s.bulk.mu.Lock()
	bt, ok := s.bulk.tables[tbl]
	off, cs := s.bulk.off, s.bulk.charset
	s.bulk.mu.Unlock()
	if off {
		return &bulkTable{unsupported: unsupported("the server refuses LOAD DATA LOCAL INFILE")}, nil
	}
	if ok {
		return bt, nil
	}
	if cs == "" {
		if err := s.db.QueryRowContext(ctx, "SELECT @@SESSION.character_set_client").Scan(&cs); err != nil {
			return nil, &Error{Op: "connect", Statement: "SELECT @@SESSION.character_set_client", Err: err}
		}
		cs = strings.ToLower(cs)
	}
	bt, e := s.planBulk(ctx, tbl, cs)
	if e != nil {
		return nil, e
	}
	s.bulk.mu.Lock()
	s.bulk.charset = cs
	if s.bulk.tables == nil || len(s.bulk.tables) >= maxBulkTables {
		s.bulk.tables = make(map[*dmworker.Table]*bulkTable)
	}
	s.bulk.tables[tbl] = bt
	s.bulk.mu.Unlock()
	return bt, nil
}

// planBulk works out how tbl is loaded: the statement, and each writable
// column's encoding; or why it is not.
func (s *Sink) planBulk(ctx context.Context, tbl *dmworker.Table, clientCS string) (*bulkTable, *Error) {
	bt := &bulkTable{name: tbl.QualifiedName()}
	if !inlineCharsets[clientCS] {
		bt.unsupported = unsupported("client character set %s", clientCS)
		return bt, nil
	}
	if tbl.CheckForeignKeys {
		bt.unsupported = unsupported("table %s has its foreign keys checked", bt.name)
		return bt, nil
	}
	// The character sets the text columns store.
	q := "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?"
	rows, err := s.db.QueryContext(ctx, q, tbl.Schema, tbl.Name)
	if err != nil {
		return nil, &Error{Op: "connect", Table: bt.name, Statement: q, Err: err}
	}
	charsets := map[string]sql.NullString{}
	for rows.Next() {
		var col string
		var cs sql.NullString
		if err := rows.Scan(&col, &cs); err != nil {
			rows.Close()
			return nil, &Error{Op: "connect", Table: bt.name, Statement: q, Err: err}
		}
		charsets[strings.ToLower(col)] = cs
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, &Error{Op: "connect", Table: bt.name, Statement: q, Err: err}
	}
	var names []string
	for i, c := range tbl.Columns {
		if c.Generated {
			continue
		}
		cs, ok := charsets[strings.ToLower(c.Name)]
		if !ok {
			bt.unsupported = unsupported("column %s of %s not found downstream", c.Name, bt.name)
			return bt, nil
		}
		if cs.Valid && !c.Binary && !sameBytes(clientCS, strings.ToLower(cs.String)) {
			bt.unsupported = unsupported("column %s of %s is in %s, the connection in %s", c.Name, bt.name, cs.String, clientCS)
			return bt, nil
		}
		kind := byte(kindText)
		switch baseType(c.Type) {
		case "bit":
			kind = kindBit
		case "year":
			kind = kindYear
		case "json":
			f, e := s.serverFlavor(ctx)
			if e != nil {
				return nil, e
			}
			if f == flavorMySQL {
				bt.unsupported = unsupported("MySQL's JSON column %s of %s", c.Name, bt.name)
				return bt, nil
			}
		}
		bt.cols = append(bt.cols, i)
		bt.kinds = append(bt.kinds, kind)
		names = append(names, quoteIdent(c.Name))
	}
	bt.head = "LOAD DATA LOCAL INFILE 'Reader::"
	bt.tail = "' INTO TABLE " + quoteTable(tbl.Schema, tbl.Name) +
		" CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (" + strings.Join(names, ",") + ")"
	return bt, nil
}

// sameBytes reports whether a column in character set col stores a string
// sent in the client's character set client as the same bytes.
func sameBytes(client, col string) bool {
	if client == "utf8" {
		client = "utf8mb3"
	}
	if col == "utf8" {
		col = "utf8mb3"
	}
	return col == client || (client == "utf8mb4" && col == "utf8mb3")
}

// encode writes the rows as LOAD DATA's default text format: fields
// separated by tabs, rows ended by newlines, \N for NULL, and backslash,
// tab, newline and NUL escaped.
// The rows are appended to buf.
func (bt *bulkTable) encode(buf []byte, changes []dmworker.Change) ([]byte, error) {
	size := 0
	for _, c := range changes {
		for _, j := range bt.cols {
			switch x := c.After[j].(type) {
			case string:
				size += len(x) + 1
			case []byte:
				size += len(x) + 1
			default:
				size += 21
			}
		}
	}
	buf = slices.Grow(buf, size+size/32+64)
	var tmp [8]byte
	for _, c := range changes {
		for n, j := range bt.cols {
			if n > 0 {
				buf = append(buf, '\t')
			}
			v := c.After[j]
			if v == nil {
				buf = append(buf, '\\', 'N')
				continue
			}
			switch bt.kinds[n] {
			case kindBit:
				u, ok := v.(uint64)
				if !ok {
					return nil, unsupported("a %T for BIT column %s", v, c.Table.Columns[j].Name)
				}
				binary.BigEndian.PutUint64(tmp[:], u)
				buf = appendLoadEscaped(buf, tmp[:])
				continue
			case kindYear:
				y, ok := v.(int64)
				if !ok || y < 0 || y > 9999 {
					return nil, unsupported("YEAR value %v in column %s", v, c.Table.Columns[j].Name)
				}
				buf = append(buf, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10))
				continue
			}
			switch x := v.(type) {
			case int64:
				buf = strconv.AppendInt(buf, x, 10)
			case uint64:
				buf = strconv.AppendUint(buf, x, 10)
			case float64:
				buf = strconv.AppendFloat(buf, x, 'g', -1, 64)
			case float32:
				// As Apply writes it: the float64 of the same value.
				buf = strconv.AppendFloat(buf, float64(x), 'g', -1, 64)
			case string:
				buf = appendLoadEscaped(buf, x)
			case []byte:
				buf = appendLoadEscaped(buf, x)
			default:
				return nil, unsupported("a %T in column %s", v, c.Table.Columns[j].Name)
			}
		}
		buf = append(buf, '\n')
	}
	return buf, nil
}

// appendLoadEscaped appends s escaped for a LOAD DATA field (ESCAPED BY
// '\\'): backslash, tab, newline and NUL.
func appendLoadEscaped[T string | []byte](buf []byte, s T) []byte {
	start, i := 0, 0
	// Eight bytes at a time while none of them needs escaping (the
	// common case): a word has a byte equal to c when (w ^ c*ones) has a
	// zero byte, which the classic test below finds.
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if hasZero(w) || hasZero(w^(ones*'\t')) || hasZero(w^(ones*'\n')) || hasZero(w^(ones*'\\')) {
			break
		}
	}
	for ; i < len(s); i++ {
		esc := loadEscapes[s[i]]
		if esc == 0 {
			continue
		}
		buf = append(buf, s[start:i]...)
		buf = append(buf, '\\', esc)
		start = i + 1
	}
	return append(buf, s[start:]...)
}

const ones = 0x0101010101010101

// hasZero reports whether a byte of w is zero.
func hasZero(w uint64) bool { return (w-ones)&^w&(ones*0x80) != 0 }

// loadEscapes maps the bytes appendLoadEscaped escapes to the letter after
// the backslash; 0 for the others.
var loadEscapes = [256]byte{0: '0', '\t': 't', '\n': 'n', '\\': '\\'}
