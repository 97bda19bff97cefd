package streamer

// Decoding rows only for the tables a consumer keeps (WithTableFilter), and
// decoding them on the consumer's goroutine rather than the network's.

import (
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/replication"
)

// ReaderOption configures either reader: it is both a RemoteOption and a
// LocalOption.
type ReaderOption interface {
	RemoteOption
	LocalOption
}

// tableFilterOption is WithTableFilter's option.
type tableFilterOption struct {
	keep func(schema, table string) bool
}

func (o tableFilterOption) apply(c *remoteConfig)     { c.keep = o.keep }
func (o tableFilterOption) applyLocal(c *localConfig) { c.keep = o.keep }

// WithTableFilter makes a reader decode the row images of rows events only
// for the tables keep reports true for. A rows event of a table keep drops is
// still delivered, in its place and with its position, its transaction's
// GTID and TxnEnd as always, and with its header decoded (TableID, Table,
// Flags, ColumnCount, the column bitmaps), but with Rows nil; RawData is
// complete as always. Every other event (table maps, GTIDs, queries, XIDs)
// is decoded in full. So a consumer that skips the rows of the tables it
// does not replicate, as the syncer does, sees the same stream and moves its
// checkpoints the same way, and the reader spends no CPU on rows it would
// throw away.
//
// keep is called from the goroutine that calls GetEvent, with the schema and
// table as the table map names them; the reader remembers its answer per
// table, so it must give the same answer for the same table every time.
// nil keeps every table (the default).
//
// It applies to RemoteReader and LocalReader (whose SetTableFilter sets it
// after construction). WithoutRowValues takes precedence: no rows are
// decoded at all.
func WithTableFilter(keep func(schema, table string) bool) ReaderOption {
	return tableFilterOption{keep: keep}
}

// tableKeeper remembers the filter's answer per table, so that the
// predicate (which may match patterns and fold case) runs once per table
// rather than once per rows event. Touched by the consumer's goroutine only.
// A nil keeper, or one without a predicate, keeps every table.
type tableKeeper struct {
	keep  func(schema, table string) bool
	cache map[string]map[string]bool
}

func newTableKeeper(keep func(schema, table string) bool) *tableKeeper {
	k := &tableKeeper{}
	k.set(keep)
	return k
}

// set replaces the predicate and forgets the answers of the old one.
func (k *tableKeeper) set(keep func(schema, table string) bool) {
	k.keep, k.cache = keep, nil
	if keep != nil {
		k.cache = make(map[string]map[string]bool)
	}
}

// maxKeeperTables bounds the cache: past it, it starts over (a source with
// more tables than that only pays the predicate more often).
const maxKeeperTables = 1 << 16

// keeps reports whether the rows of tm's table are to be decoded. A nil
// keeper keeps every table.
func (k *tableKeeper) keeps(tm *replication.TableMapEvent) bool {
	if k == nil || k.keep == nil || tm == nil {
		return true
	}
	tables, ok := k.cache[string(tm.Schema)] // (no allocation for the lookup)
	if ok {
		if v, ok := tables[string(tm.Table)]; ok {
			return v
		}
	}
	v := k.keep(string(tm.Schema), string(tm.Table))
	if !ok {
		if len(k.cache) >= maxKeeperTables {
			clear(k.cache)
		}
		tables = make(map[string]bool)
		k.cache[string(tm.Schema)] = tables
	}
	if len(tables) >= maxKeeperTables {
		clear(tables)
	}
	tables[string(tm.Table)] = v
	return v
}

// decodeRowsHeaderChecked decodes a rows event's header only, with the checks
// guardRowsDecode makes before row images are trusted; the images are
// decoded later, by decodeDeferredRows, when the consumer keeps the table.
func decodeRowsHeaderChecked(e *replication.RowsEvent, data []byte) error {
	pos, err := e.DecodeHeader(data)
	if err != nil {
		return err
	}
	return checkRowsHeader(e, pos, len(data))
}

// checkRowsHeader refuses a rows event go-mysql would mis-decode (see
// guardRowsDecode): a header that runs past the event (go-mysql slices its
// bitmaps up to the buffer's capacity, not its length), too many columns,
// or images that select no column.
func checkRowsHeader(e *replication.RowsEvent, pos, size int) error {
	if pos > size {
		return fmt.Errorf("rows event header of %d bytes in an event body of %d", pos, size)
	}
	if e.ColumnCount > maxColumns {
		// decodeImage allocates a slot per column for every row.
		return fmt.Errorf("rows event with %d columns", e.ColumnCount)
	}
	if pos < size && (!anyBit(e.ColumnBitmap1, e.ColumnCount) || e.ColumnBitmap2 != nil && !anyBit(e.ColumnBitmap2, e.ColumnCount)) {
		return errors.New("rows event image selects no column")
	}
	return nil
}

// errRowsData means a rows event's row images could not be found in its
// RawData: go-mysql no longer decodes headers the way decodeDeferredRows
// expects.
var errRowsData = errors.New("cannot locate the row images in the rows event")

// decodeDeferredRows decodes the row images of e, whose header alone was
// decoded (decodeRowsHeaderChecked), from raw, the whole event (its
// RawData), with d (nil: go-mysql's RowsEvent.DecodeData); crc says
// whether raw ends with a checksum.
//
// The images start right after the last column bitmap, which go-mysql's
// DecodeHeader leaves as a slice of the event's body, itself a slice of
// RawData: the offset is read off the slices (and checked to be one), so
// that the header is not decoded twice and the parser's table map, which
// the network goroutine owns, is not touched.
func decodeDeferredRows(d *rowDecoder, e *replication.RowsEvent, raw []byte, crc bool) (err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("rows event does not decode: %v", x)
		}
	}()
	end := len(raw)
	if crc {
		end -= checksumSize
	}
	if end < eventHeaderSize {
		return errRowsData
	}
	body := raw[eventHeaderSize:end]
	last := e.ColumnBitmap1
	if e.ColumnBitmap2 != nil {
		last = e.ColumnBitmap2
	}
	if len(last) == 0 {
		// No column: checkRowsHeader refused images after the header,
		// so there are none.
		return d.decode(e, replication.EventType(raw[4]), len(body), body)
	}
	start := cap(raw) - cap(last) // where last begins in raw, if it is in raw
	if start < eventHeaderSize || start+len(last) > end || &raw[start] != &last[0] {
		return errRowsData
	}
	// The values decoded share the bytes they come from (strings and
	// []byte alias them, as go-mysql's do). Decoded from a copy of the
	// body, a row a consumer keeps (in a batch, the validator, a held
	// shard step) holds this event's bytes, with those of the few events
	// copied into the same chunk (rowCopies), not the 256 KiB block a
	// RemoteReader read the event into with others.
	//
	// The copy takes the checksum too, as the body's capacity, and no
	// more: go-mysql reads some damaged values past the body, into what
	// follows it in RawData (whose capacity ends with the event), and
	// decoding from the copy must give what decoding the event gives
	// (FuzzRowDecoder found it).
	cp := d.copyBody(raw[eventHeaderSize:])
	return d.decode(e, replication.EventType(raw[4]), start+len(last)-eventHeaderSize, cp[:len(body)])
}

// TableFilterer is implemented by the readers that can leave the row images
// of some tables undecoded (RemoteReader, LocalReader, and types that embed
// them): a consumer handed a Reader it did not build, as the syncer is by a
// ReaderFactory, sets its table filter through it.
type TableFilterer interface {
	// SetTableFilter replaces the reader's table filter (see
	// WithTableFilter; nil keeps every table) for the rows events it
	// delivers from now on. Like GetEvent, it must not be called
	// concurrently with GetEvent.
	SetTableFilter(keep func(schema, table string) bool)
}

// SetTableFilter replaces the reader's table filter: see TableFilterer.
func (r *RemoteReader) SetTableFilter(keep func(schema, table string) bool) { r.keeper.set(keep) }

// SetTableFilter replaces the reader's table filter: see TableFilterer.
func (r *LocalReader) SetTableFilter(keep func(schema, table string) bool) { r.keeper.set(keep) }

var (
	_ TableFilterer = (*RemoteReader)(nil)
	_ TableFilterer = (*LocalReader)(nil)
)
