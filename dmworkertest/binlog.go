package dmworkertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/internal/schema"
	"github.com/dmworker/dmworker/streamer"
)

// Binlog builds a MariaDB binlog in memory: DDL and row changes in, binlog
// events out, each with its file, offset and GTID set, as a MariaDB 10.3+
// server with binlog_format=ROW, binlog_row_image=FULL and CRC32 checksums
// writes them. Its files start with a format description and a GTID list;
// a transaction is a GTID event, BEGIN, table maps and rows events, and an
// XID; a DDL is a standalone GTID event and its query.
//
// The Binlog tracks the tables' definitions from the DDL it is given (the
// same parser and tracker the syncer uses), and encodes row values from the
// Go types of the dmworker.Change contract. Readers (NewReader) replay what
// it holds and wait for more, so a test may append while a syncer reads.
// A Binlog is safe for concurrent use.
type Binlog struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when events are added

	serverID uint32
	domain   uint32
	seq      uint64
	file     string // current file name
	fileNo   int
	offset   uint64
	gset     *mysql.MariadbGTIDSet // executed at the end of the last transaction
	start    streamer.Position
	tracker  *schema.Tracker
	tableIDs map[schema.TableName]uint64
	nextID   uint64
	xid      uint64
	now      time.Time

	files   []*binlogFile // every file, in order
	defined []string      // what Define applied, for Schema
}

// binlogFile is one binlog file's bytes: the magic header, then events.
type binlogFile struct {
	name string
	data []byte
	ends []uint64 // end offset of each event
}

// BinlogOption configures NewBinlog.
type BinlogOption func(*Binlog)

// WithServerID sets the server id written in events and GTIDs. Default 1.
func WithServerID(id uint32) BinlogOption { return func(b *Binlog) { b.serverID = id } }

// WithGTIDDomain sets the GTID domain id. Default 0.
func WithGTIDDomain(domain uint32) BinlogOption { return func(b *Binlog) { b.domain = domain } }

// WithFirstFile sets the name of the first binlog file. Default
// "mysql-bin.000001". Rotate numbers the following files after it.
func WithFirstFile(name string) BinlogOption { return func(b *Binlog) { b.file = name } }

// WithTime sets the timestamp of the first event; each event after it is a
// second later. Default: the time NewBinlog is called.
func WithTime(t time.Time) BinlogOption { return func(b *Binlog) { b.now = t } }

// NewBinlog returns a binlog holding its first file's header events (format
// description, GTID list): Start is the position after them, with an empty
// GTID set.
func NewBinlog(opts ...BinlogOption) *Binlog {
	b := &Binlog{
		changed:  make(chan struct{}),
		serverID: 1,
		file:     "mysql-bin.000001",
		tracker:  schema.New(),
		tableIDs: map[schema.TableName]uint64{},
		nextID:   100,
		now:      time.Now(),
		gset:     &mysql.MariadbGTIDSet{Sets: map[uint32]*mysql.MariadbGTID{}},
	}
	for _, o := range opts {
		o(b)
	}
	b.openFile()
	b.start = b.posLocked()
	return b
}

// Start is the position after the first file's header events: where a
// reader or a syncer begins to see everything the test adds.
func (b *Binlog) Start() streamer.Position {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.start.Clone()
}

// End is the position after the last event: the checkpoint a syncer
// reaches once it has applied everything.
func (b *Binlog) End() streamer.Position {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.posLocked()
}

func (b *Binlog) posLocked() streamer.Position {
	return streamer.Position{Name: b.file, Offset: b.offset, Flavor: streamer.FlavorMariaDB, GTIDSet: b.gset.Clone()}
}

// Schema returns the statements Define was given, each after a USE of its
// default schema: the tables' definitions at Start, for
// dmworker.WithStartSchema.
func (b *Binlog) Schema() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.defined...)
}

func quote(s string) string {
	q := []byte{'`'}
	for i := 0; i < len(s); i++ {
		if s[i] == '`' {
			q = append(q, '`')
		}
		q = append(q, s[i])
	}
	return string(append(q, '`'))
}

// Define applies DDL statements (CREATE DATABASE, CREATE TABLE, ...) to the
// tracked definitions without writing events: the tables as they exist
// before the binlog starts, which Schema gives to the syncer. defaultSchema
// names the schema of unqualified tables. Call it before adding events.
func (b *Binlog) Define(defaultSchema string, stmts ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range stmts {
		if _, err := b.tracker.Apply(defaultSchema, q); err != nil {
			return fmt.Errorf("dmworkertest: %q: %w", q, err)
		}
		if defaultSchema != "" {
			b.defined = append(b.defined, "USE "+quote(defaultSchema))
		}
		b.defined = append(b.defined, q)
	}
	return nil
}

// DDL writes a DDL statement as its own transaction (a standalone GTID
// event and a query event, run in defaultSchema) and applies it to the
// tracked definitions. It returns the position after it.
func (b *Binlog) DDL(defaultSchema, query string) (streamer.Position, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.tracker.Apply(defaultSchema, query); err != nil {
		return streamer.Position{}, fmt.Errorf("dmworkertest: %q: %w", query, err)
	}
	b.gtidEvent(true)
	b.queryEvent(defaultSchema, query)
	b.commitGTID()
	b.notify()
	return b.posLocked(), nil
}

// Rotate ends the current file with a rotate event and starts the next one
// (its number one higher) with its header events. It returns the position
// after them.
func (b *Binlog) Rotate() streamer.Position {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := nextFileName(b.file)
	body := binary.LittleEndian.AppendUint64(nil, 4)
	b.event(replication.ROTATE_EVENT, append(body, next...))
	b.file = next
	b.openFile()
	b.notify()
	return b.posLocked()
}

// nextFileName numbers the file after name: "mysql-bin.000009" ->
// "mysql-bin.000010".
func nextFileName(name string) string {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	digits := name[i:]
	n := 0
	for _, c := range digits {
		n = n*10 + int(c-'0')
	}
	return fmt.Sprintf("%s%0*d", name[:i], max(len(digits), 6), n+1)
}

// Tx is one transaction being built. Its changes are written when Commit
// is called; an error in one of them is returned by Commit.
type Tx struct {
	b       *Binlog
	changes []txChange
	err     error
}

type txChange struct {
	kind  replication.EventType
	table schema.TableName
	rows  [][]any
}

// Begin starts a transaction. Nothing is written until Commit.
func (b *Binlog) Begin() *Tx { return &Tx{b: b} }

// Insert adds a rows event inserting rows into schemaName.table. Values are
// in column order, of the Go types the dmworker.Change contract gives the
// columns (an int is taken for any integer type, a string for a binary
// one), nil for NULL.
func (tx *Tx) Insert(schemaName, table string, rows ...[]any) *Tx {
	return tx.add(replication.WRITE_ROWS_EVENTv1, schemaName, table, rows)
}

// Update adds a rows event changing rows of schemaName.table: pairs of
// before and after images.
func (tx *Tx) Update(schemaName, table string, beforeAfter ...[]any) *Tx {
	if len(beforeAfter)%2 != 0 {
		tx.err = errors.Join(tx.err, fmt.Errorf("dmworkertest: update of %s.%s: %d images, want before and after pairs", schemaName, table, len(beforeAfter)))
	}
	return tx.add(replication.UPDATE_ROWS_EVENTv1, schemaName, table, beforeAfter)
}

// Delete adds a rows event deleting rows of schemaName.table.
func (tx *Tx) Delete(schemaName, table string, rows ...[]any) *Tx {
	return tx.add(replication.DELETE_ROWS_EVENTv1, schemaName, table, rows)
}

func (tx *Tx) add(kind replication.EventType, schemaName, table string, rows [][]any) *Tx {
	tx.changes = append(tx.changes, txChange{kind: kind, table: schema.TableName{Schema: schemaName, Name: table}, rows: rows})
	return tx
}

// Commit writes the transaction (GTID event, BEGIN, a table map and a rows
// event per change, XID) and returns the position after it. Nothing is
// written when a change cannot be encoded.
func (tx *Tx) Commit() (streamer.Position, error) {
	if tx.err != nil {
		return streamer.Position{}, tx.err
	}
	b := tx.b
	b.mu.Lock()
	defer b.mu.Unlock()
	type encoded struct{ tableMap, rows []byte }
	var evs []encoded
	for _, c := range tx.changes {
		tm, rs, err := b.encodeChange(c)
		if err != nil {
			return streamer.Position{}, err
		}
		evs = append(evs, encoded{tm, rs})
	}
	b.gtidEvent(false)
	b.queryEvent("", "BEGIN")
	for i, e := range evs {
		b.event(replication.TABLE_MAP_EVENT, e.tableMap)
		b.event(tx.changes[i].kind, e.rows)
	}
	b.xid++
	b.event(replication.XID_EVENT, binary.LittleEndian.AppendUint64(nil, b.xid))
	b.commitGTID()
	b.notify()
	return b.posLocked(), nil
}

// encodeChange returns a change's table map and rows event bodies.
func (b *Binlog) encodeChange(c txChange) (tableMap, rowsEvent []byte, err error) {
	def, ok := b.tracker.Table(c.table.Schema, c.table.Name)
	if !ok {
		return nil, nil, fmt.Errorf("dmworkertest: no table %s: define it first (Define or DDL)", c.table)
	}
	cols := make([]*column, len(def.Columns))
	for i := range def.Columns {
		if cols[i], err = newColumn(&def.Columns[i], def.Charset); err != nil {
			return nil, nil, fmt.Errorf("dmworkertest: table %s: %w", c.table, err)
		}
	}
	id, ok := b.tableIDs[c.table]
	if !ok {
		id = b.nextID
		b.nextID++
		b.tableIDs[c.table] = id
	}
	n := len(cols)
	// Table map: table id, flags, schema, table, column count, types,
	// metadata, nullability.
	tm := appendUint48(nil, id)
	tm = append(tm, 1, 0) // flags: end of statement
	tm = append(tm, byte(len(c.table.Schema)))
	tm = append(append(tm, c.table.Schema...), 0)
	tm = append(tm, byte(len(c.table.Name)))
	tm = append(append(tm, c.table.Name...), 0)
	tm = mysql.AppendLengthEncodedInteger(tm, uint64(n))
	var meta []byte
	for _, col := range cols {
		tm = append(tm, col.tp)
		meta = append(meta, col.meta...)
	}
	tm = mysql.AppendLengthEncodedInteger(tm, uint64(len(meta)))
	tm = append(tm, meta...)
	nulls := make([]byte, (n+7)/8)
	for i, col := range cols {
		if col.def.Nullable {
			nulls[i/8] |= 1 << (i % 8)
		}
	}
	tm = append(tm, nulls...)

	// Rows event: table id, flags, column count, columns present (twice
	// for an update), then each row: its null bitmap and values.
	re := appendUint48(nil, id)
	re = append(re, 1, 0) // flags: end of statement
	re = mysql.AppendLengthEncodedInteger(re, uint64(n))
	all := make([]byte, (n+7)/8)
	for i := range n {
		all[i/8] |= 1 << (i % 8)
	}
	re = append(re, all...)
	if c.kind == replication.UPDATE_ROWS_EVENTv1 {
		re = append(re, all...)
	}
	for ri, row := range c.rows {
		if len(row) != n {
			return nil, nil, fmt.Errorf("dmworkertest: %s row %d has %d values, the table %d columns", c.table, ri, len(row), n)
		}
		rn := make([]byte, (n+7)/8)
		for i, v := range row {
			if v == nil {
				rn[i/8] |= 1 << (i % 8)
			}
		}
		re = append(re, rn...)
		for i, v := range row {
			if v == nil {
				continue
			}
			if re, err = cols[i].encode(re, v); err != nil {
				return nil, nil, fmt.Errorf("dmworkertest: %s row %d: %w", c.table, ri, err)
			}
		}
	}
	return tm, re, nil
}

func appendUint48(b []byte, n uint64) []byte {
	return append(b, byte(n), byte(n>>8), byte(n>>16), byte(n>>24), byte(n>>32), byte(n>>40))
}

// openFile starts file b.file: magic, format description, GTID list.
func (b *Binlog) openFile() {
	b.fileNo++
	b.files = append(b.files, &binlogFile{name: b.file, data: append([]byte(nil), replication.BinLogFileHeader...)})
	b.offset = 4
	b.event(replication.FORMAT_DESCRIPTION_EVENT, formatDescription(b.timestamp()))
	list := binary.LittleEndian.AppendUint32(nil, uint32(len(b.gset.Sets)))
	for _, g := range b.gset.Sets {
		list = binary.LittleEndian.AppendUint32(list, g.DomainID)
		list = binary.LittleEndian.AppendUint32(list, g.ServerID)
		list = binary.LittleEndian.AppendUint64(list, g.SequenceNumber)
	}
	b.event(replication.MARIADB_GTID_LIST_EVENT, list)
}

// formatDescription is a MariaDB 10.11 format description event's body,
// with CRC32 checksums.
func formatDescription(ts uint32) []byte {
	body := binary.LittleEndian.AppendUint16(nil, 4)
	version := make([]byte, 50)
	copy(version, "10.11.0-MariaDB-log")
	body = append(body, version...)
	body = binary.LittleEndian.AppendUint32(body, ts)
	body = append(body, replication.EventHeaderSize)
	// Post-header lengths, by event type - 1.
	lengths := make([]byte, 168)
	set := func(t replication.EventType, n byte) { lengths[t-1] = n }
	set(replication.QUERY_EVENT, 13)
	set(replication.ROTATE_EVENT, 8)
	set(replication.FORMAT_DESCRIPTION_EVENT, 84)
	set(replication.TABLE_MAP_EVENT, 8)
	for _, t := range []replication.EventType{replication.WRITE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv1} {
		set(t, 8)
	}
	for _, t := range []replication.EventType{replication.WRITE_ROWS_EVENTv2, replication.UPDATE_ROWS_EVENTv2, replication.DELETE_ROWS_EVENTv2} {
		set(t, 10)
	}
	set(replication.MARIADB_ANNOTATE_ROWS_EVENT, 0)
	set(replication.MARIADB_BINLOG_CHECKPOINT_EVENT, 4)
	set(replication.MARIADB_GTID_EVENT, 19)
	set(replication.MARIADB_GTID_LIST_EVENT, 4)
	body = append(body, lengths...)
	return append(body, byte(replication.BINLOG_CHECKSUM_ALG_CRC32))
}

// gtidEvent writes the GTID event of the next transaction.
func (b *Binlog) gtidEvent(standalone bool) {
	b.seq++
	body := binary.LittleEndian.AppendUint64(nil, b.seq)
	body = binary.LittleEndian.AppendUint32(body, b.domain)
	var flags byte
	if standalone {
		flags = replication.BINLOG_MARIADB_FL_STANDALONE | replication.BINLOG_MARIADB_FL_DDL
	} else {
		flags = replication.BINLOG_MARIADB_FL_TRANSACTIONAL | replication.BINLOG_MARIADB_FL_ALLOW_PARALLEL
	}
	body = append(body, flags)
	body = append(body, make([]byte, 19-len(body))...)
	b.event(replication.MARIADB_GTID_EVENT, body)
}

// commitGTID adds the transaction's GTID to the executed set.
func (b *Binlog) commitGTID() {
	next := b.gset.Clone().(*mysql.MariadbGTIDSet)
	g := &mysql.MariadbGTID{DomainID: b.domain, ServerID: b.serverID, SequenceNumber: b.seq}
	next.Sets[b.domain] = g
	b.gset = next
}

// queryEvent writes a query event, with sql_mode 0 in its status
// variables.
func (b *Binlog) queryEvent(schemaName, query string) {
	body := binary.LittleEndian.AppendUint32(nil, 1) // thread id
	body = binary.LittleEndian.AppendUint32(body, 0) // execution time
	body = append(body, byte(len(schemaName)))
	body = binary.LittleEndian.AppendUint16(body, 0) // error code
	status := append([]byte{1}, make([]byte, 8)...)  // Q_SQL_MODE_CODE, 0
	body = binary.LittleEndian.AppendUint16(body, uint16(len(status)))
	body = append(body, status...)
	body = append(append(body, schemaName...), 0)
	b.event(replication.QUERY_EVENT, append(body, query...))
}

func (b *Binlog) timestamp() uint32 {
	ts := uint32(b.now.Unix())
	b.now = b.now.Add(time.Second)
	return ts
}

// event appends an event with its header and CRC32 checksum to the current
// file.
func (b *Binlog) event(t replication.EventType, body []byte) {
	f := b.files[len(b.files)-1]
	size := uint32(replication.EventHeaderSize + len(body) + replication.BinlogChecksumLength)
	end := b.offset + uint64(size)
	h := binary.LittleEndian.AppendUint32(nil, b.timestamp())
	h = append(h, byte(t))
	h = binary.LittleEndian.AppendUint32(h, b.serverID)
	h = binary.LittleEndian.AppendUint32(h, size)
	h = binary.LittleEndian.AppendUint32(h, uint32(end))
	h = binary.LittleEndian.AppendUint16(h, 0)
	start := len(f.data)
	f.data = append(append(f.data, h...), body...)
	f.data = binary.LittleEndian.AppendUint32(f.data, crc32.ChecksumIEEE(f.data[start:]))
	f.ends = append(f.ends, end)
	b.offset = end
}

// notify wakes readers waiting for events.
func (b *Binlog) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// Files returns the binlog files written so far, by name, each a valid
// binlog file (mariadb-binlog reads it): for tests of code that reads
// binlog files or relay directories.
func (b *Binlog) Files() map[string][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]byte, len(b.files))
	for _, f := range b.files {
		out[f.name] = append([]byte(nil), f.data...)
	}
	return out
}
