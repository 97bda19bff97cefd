package dmworker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shopspring/decimal"
	"golang.org/x/sync/errgroup"

	"github.com/dmworker/dmworker/streamer"
)

// ValidationMode is what the continuous validator checks of each row the
// binlog changed: nothing, that it exists (or, deleted, does not), or that
// its values are equal.
type ValidationMode string

// Validation modes.
const (
	// ValidationOff runs no validator (the default).
	ValidationOff ValidationMode = "off"
	// ValidationFast checks that each changed row exists downstream, and
	// that each deleted row does not.
	ValidationFast ValidationMode = "fast"
	// ValidationFull checks as fast does, and that the row's values are
	// equal under type-aware rules (see ValidationConfig).
	ValidationFull ValidationMode = "full"
)

// Validation defaults.
const (
	// DefaultRowErrorDelay is how long a row may differ before it is an
	// error row: DM's validator default (row-error-delay: 30m).
	DefaultRowErrorDelay = 30 * time.Minute
	// DefaultValidationMemory bounds the rows the validator holds.
	DefaultValidationMemory = 64 << 20
	// DefaultCheckInterval is how often the validator checks the rows it
	// holds: DM's validator default (check-interval: 5s).
	DefaultCheckInterval = 5 * time.Second
	// DefaultValidationSchema is the downstream schema of the validator's
	// tables (mysqlsink's default checkpoint schema).
	DefaultValidationSchema = "dmworker_meta"
)

// ValidationConfig configures a subtask's continuous validator
// (SubTaskConfig.Validation).
//
// The validator runs beside the syncer while the syncer unit runs (it
// pauses, resumes and stops with the subtask). It checks the changes the
// syncer reads, never ahead of the syncer: a change is checked only once
// the syncer has applied it. The syncer hands them over as it decodes them
// (the binlog is read once), through a queue that the validator empties as
// it fills, packing each change's row (see MemoryBytes); it holds a row to
// be checked once the syncer has stored a checkpoint past it or, with
// parallel workers, told the queue (every 50ms) that its workers have
// applied past it. The validator reads the binlog itself, with its own reader
// from the same reader factory (the relay, or the upstream) through the
// same filters and routes, when it must: from its own checkpoint up to
// where the syncer's run starts when it is behind (after a kill, say), for
// the rest of the syncer's run when the queue overflowed (the validator fell
// behind), and in a shard mode (ValidatorStatus.Reading says which). It keeps the latest image of each changed row by its primary key (or
// a unique key of NOT NULL columns; tables with neither are not validated)
// and checks the rows it holds against the downstream in batches, by key
// (SELECT ... WHERE (key) IN (...), four batches at once), every
// CheckInterval, at once when they take three quarters of MemoryBytes, and
// when the next row would take them past it: it takes no more until it has
// checked them and spilled those that differ (see below). The timed checks
// give way to a syncer that is catching up (its lag over 10s): they wait,
// for 12 intervals at most, while the rows held take less than three
// quarters of MemoryBytes (a row changed again meanwhile is checked once).
//
// A row that differs is checked again at every pass; once it has differed
// for longer than RowErrorDelay it is recorded as an error row in
// <MetaSchema>.validator_errors (task, source, table, key, upstream and
// downstream images as JSON, first and last seen) and leaves memory; an
// error row is checked again too, and deleted when the row has converged.
// Differing rows stay in memory while the rows held take less than half
// of MemoryBytes; past it they are spilled to
// <MetaSchema>.validator_pending (with the time they first differed) and
// leave memory, and are checked again from there, a page at a time (the
// page counted in the bound), up to 4000 spilled and 4000 error rows a
// pass (at most one such re-check a CheckInterval), continuing where the last
// one stopped; a newer image of a
// spilled row read from the binlog takes its place. Memory is thus
// bounded by MemoryBytes whatever the number of differing rows (but for a
// single row larger than it), plus a fixed 128 KiB filter of the key
// hashes in the two tables. When a DDL changes a table, the rows held are
// checked first; those of its table that still differ are then dropped,
// spilled ones too (the table is validated again from its next change).
//
// Values compare as the servers store them: FLOAT within 1e-6 and DOUBLE
// within 1e-14 of the larger magnitude, DECIMAL exactly (as numbers),
// temporal types with their fractional digits (trailing zeros aside),
// TIMESTAMP in UTC, JSON by value (objects by key, numbers by value),
// BINARY(n) with its zero padding, CHAR without its trailing spaces, other
// strings and binary types byte for byte; generated columns are skipped.
//
// The validator's checkpoint (<MetaSchema>.validator_checkpoint: the
// position before which every change was checked, the tracked schema at it,
// and the rows still differing) is stored in the downstream after each
// pass that left no row unchecked, so that a killed process resumes from
// it. Before it has one, the validator starts at the syncer's stored
// checkpoint, with the schema the syncer tracked there. It needs the downstream as a *sql.DB: the sink's when it is a
// ValidatorSink (mysqlsink is), else the one given with WithValidationDB.
type ValidationConfig struct {
	// Mode is off, fast or full. Default off ("" is off; the other
	// fields are then neither read nor filled in).
	Mode ValidationMode `json:"mode,omitempty" toml:"mode"`
	// RowErrorDelay is how long a row may differ before it is recorded as
	// an error row. Default 30m (DefaultRowErrorDelay, DM's default).
	RowErrorDelay Duration `json:"row-error-delay,omitzero" toml:"row-error-delay"`
	// MemoryBytes bounds what the validator holds in memory: the rows it
	// has yet to check, differing ones included (each counted as
	// allocated: its packed values, its id, its struct and map entry;
	// about 430 bytes for a sysbench row), and the changes the syncer
	// has handed over that wait to be taken (their decoded images). Past
	// three quarters of it, the rows held are checked (those equal
	// dropped, those differing, past half of it, spilled to the meta
	// schema); when the next change would take it past the whole, they
	// are checked before anything more is taken; when the changes the
	// syncer has not applied yet leave no room, the validator reads the
	// binlog itself from its checkpoint. What a check reads transiently (the downstream images
	// of 4 x 4096 rows at a time) and the garbage collector's headroom
	// (GOGC) come on top. Default 64 MiB.
	MemoryBytes int64 `json:"memory-bytes,omitempty" toml:"memory-bytes"`
	// CheckInterval is how often the rows held are checked (and, when
	// differing, checked again), at most a quarter of RowErrorDelay and
	// at least 50ms. A longer one checks a row changed several times in
	// it once, at the cost of finding a difference later. Default 5s
	// (DefaultCheckInterval, DM's default).
	CheckInterval Duration `json:"check-interval,omitzero" toml:"check-interval"`
	// MetaSchema is the downstream schema of the validator's tables,
	// created on first use. Default "dmworker_meta".
	MetaSchema string `json:"meta-schema,omitempty" toml:"meta-schema"`
}

// adjust fills defaults and checks the config.
func (c *ValidationConfig) adjust() error {
	switch c.Mode {
	case "", ValidationOff:
		return nil // nothing else is read
	case ValidationFast, ValidationFull:
	default:
		return fmt.Errorf("validation mode %q is none of off, fast, full", c.Mode)
	}
	if c.RowErrorDelay == 0 {
		c.RowErrorDelay = Duration(DefaultRowErrorDelay)
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultValidationMemory
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = Duration(DefaultCheckInterval)
	}
	if c.MetaSchema == "" {
		c.MetaSchema = DefaultValidationSchema
	}
	switch {
	case c.RowErrorDelay < 0:
		return fmt.Errorf("validation row error delay %s must not be negative", time.Duration(c.RowErrorDelay))
	case c.CheckInterval < 0:
		return fmt.Errorf("validation check interval %s must not be negative", time.Duration(c.CheckInterval))
	case c.MemoryBytes < 0:
		return fmt.Errorf("validation memory %d must not be negative", c.MemoryBytes)
	case strings.ContainsAny(c.MetaSchema, "`\x00") || len(c.MetaSchema) > 64:
		return fmt.Errorf("validation meta schema %q is not a valid schema name", c.MetaSchema)
	}
	return nil
}

// ValidatorSink is a Sink that gives the continuous validator the
// downstream to read (mysqlsink.Sink is one).
type ValidatorSink interface {
	Sink
	// DB returns the downstream's pool; the validator never closes it.
	DB() *sql.DB
}

// ValidationDBOption is WithValidationDB's option, taken by NewSubTask and
// NewSourceWorker.
type ValidationDBOption struct{ db *sql.DB }

// WithValidationDB gives the continuous validator the downstream to read
// when the sink is not a ValidatorSink. Default: the sink's DB.
func WithValidationDB(db *sql.DB) ValidationDBOption { return ValidationDBOption{db} }

func (o ValidationDBOption) applySubTask(t *subTaskOptions) { t.validationDB = o.db }
func (o ValidationDBOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySubTask(&w.subTaskOptions)
}

// ValidatorStatus is the continuous validator's progress
// (SubTaskStatus.Validator); zero when validation is off.
type ValidatorStatus struct {
	Mode ValidationMode
	// Running is true while the validator runs (with the syncer unit).
	Running bool
	// Reading is where the changes it checks come from:
	// ValidatorReadsSyncer or ValidatorReadsBinlog ("" before it starts).
	Reading string
	// Pending is how many rows are pending: not checked yet, or
	// differing for less than the row error delay, in memory or spilled
	// to the meta schema (Spilled of them, at the last pass).
	// PendingBytes is what the rows held in memory take (as MemoryBytes
	// counts them), PeakBytes the most they took at once: at most
	// MemoryBytes, but for a single row larger than it.
	Pending      int
	PendingBytes int64
	PeakBytes    int64
	Spilled      int
	// Checked counts the row checks done (a row checked again counts
	// again).
	Checked int64
	// Differing is how many pending rows differed at their last check
	// (the spilled ones included).
	Differing int
	// ErrorRows is how many error rows are recorded for the task and
	// source (at the last pass).
	ErrorRows int
	// Validated is the position before which every change read has been
	// checked: the validator's stored checkpoint.
	Validated streamer.Position
	// LastError is the last error of a check or of the validator's reader
	// (it retries); nil once a pass succeeds.
	LastError error
}

// Where the validator takes the changes it checks from
// (ValidatorStatus.Reading).
const (
	// ValidatorReadsSyncer: the changes the syncer reads, handed over
	// once the syncer has stored a checkpoint past them (the binlog is
	// read and decoded once).
	ValidatorReadsSyncer = "syncer"
	// ValidatorReadsBinlog: its own reader of the binlog, from its own
	// checkpoint: while it catches up with where the syncer's run
	// started, and for the rest of the run once the hand-off overflowed.
	ValidatorReadsBinlog = "binlog"
)

// vrow is a row the validator holds: the latest image of a changed row.
type vrow struct {
	id    string // table and key
	table *Table
	key   []int // column indexes of the key
	// The key's values, then (unless deleted) the row's image: packed
	// (see packValues), or, for a row with a value packValues does not
	// take, as they are in vals.
	packed  []byte
	odd     *vrowOdd // nil but for a row with a value that does not pack, or one to record
	deleted bool     // deleted upstream: no image
	bytes   int64
	version uint64
	checked bool
	// firstDiff and lastDiff are when it first and last differed; zero
	// while it has not.
	firstDiff, lastDiff diffTime
}

// vrowOdd is what few rows held need: kept apart, so that the others are
// smaller.
type vrowOdd struct {
	vals []any // the values, when they do not pack
	down []any // the downstream image at the last check (nil: missing), of a row to record
}

// setDown keeps down, the downstream image a check read, for r's error row.
func (r *vrow) setDown(down []any) {
	if r.odd == nil {
		r.odd = &vrowOdd{}
	}
	r.odd.down = down
}

// down is the downstream image kept for r's error row (nil: none, or the
// row is missing).
func (r *vrow) down() []any {
	if r.odd == nil {
		return nil
	}
	return r.odd.down
}

// diffTime is a time a row differed, in Unix nanoseconds (0: never): a
// time.Time would put a pointer (its location) in every row held.
type diffTime int64

func at(t time.Time) diffTime {
	if t.IsZero() {
		return 0
	}
	return diffTime(t.UnixNano())
}

func (d diffTime) IsZero() bool { return d == 0 }

// Time is d as a time.Time (the zero Time for 0).
func (d diffTime) Time() time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(d))
}

// validator is a subtask's continuous validator.
type validator struct {
	cfg          ValidationConfig
	task, source string
	db           *sql.DB
	log          *slog.Logger
	interval     time.Duration

	checkMu sync.Mutex // one pass at a time

	mu        sync.Mutex
	rows      map[string]*vrow
	heldBytes int64 // rows in memory, and the spilled rows a pass reads
	// stagedBytes: rows taken from the syncer's feed that wait for the
	// syncer to store a checkpoint past them (runFeed).
	stagedBytes int64
	stagedRows  int
	// used is heldBytes + stagedBytes, for the feed to read without v.mu.
	used atomic.Int64
	// kick asks the pass loop for a pass now (the rows take three
	// quarters of the memory budget).
	kick     chan struct{}
	version  uint64
	lastRead Checkpoint // what the inner syncer stored last (schema merged)
	readSet  bool
	// filter has a bit set for each key hash that may have a row in
	// validator_pending or validator_errors (no false negatives): a row
	// that converges in memory has its rows there deleted when it may.
	filter []uint64
	marked bool // a bit is set in filter
	st     ValidatorStatus
	// differing is how many rows held differed at their last check, as
	// counted at the end of the last pass (status reads it).
	differing int
	// Where the re-check of the spilled and the error rows goes on
	// (key hashes), and when it last ran.
	pendCursor, errCursor string
	lastScan              time.Time
	tablesOK              atomic.Bool
}

func newValidator(cfg ValidationConfig, task, source string, db *sql.DB, log *slog.Logger) *validator {
	iv := time.Duration(cfg.CheckInterval)
	if iv == 0 {
		iv = DefaultCheckInterval
	}
	iv = max(min(iv, time.Duration(cfg.RowErrorDelay)/4), 50*time.Millisecond)
	return &validator{cfg: cfg, task: task, source: source, db: db, interval: iv,
		log:  log.With(slog.String("component", "validator")),
		rows: map[string]*vrow{}, kick: make(chan struct{}, 1), filter: make([]uint64, filterBits/64), st: ValidatorStatus{Mode: cfg.Mode}}
}

func (v *validator) status() ValidatorStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.st
	st.Pending, st.PendingBytes = len(v.rows)+v.stagedRows+st.Spilled, v.heldBytes+v.stagedBytes
	st.Differing = st.Spilled + v.differing
	st.Validated = st.Validated.Clone()
	return st
}

func (v *validator) setErr(err error) {
	v.mu.Lock()
	v.st.LastError = err
	v.mu.Unlock()
}

func (v *validator) meta(table string) string {
	return quoteIdent(v.cfg.MetaSchema) + "." + quoteIdent(table)
}

// ensureTables creates the validator's tables.
func (v *validator) ensureTables(ctx context.Context) error {
	if v.tablesOK.Load() {
		return nil
	}
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + quoteIdent(v.cfg.MetaSchema),
		"CREATE TABLE IF NOT EXISTS " + v.meta("validator_checkpoint") + ` (
			task VARCHAR(128) NOT NULL, source VARCHAR(128) NOT NULL,
			checkpoint LONGBLOB NOT NULL, pending LONGBLOB NOT NULL,
			updated_at DATETIME(6) NOT NULL,
			PRIMARY KEY (task, source)) DEFAULT CHARSET=utf8mb4`,
		"CREATE TABLE IF NOT EXISTS " + v.meta("validator_errors") + ` (
			task VARCHAR(128) NOT NULL, source VARCHAR(128) NOT NULL,
			table_schema VARCHAR(64) NOT NULL, table_name VARCHAR(64) NOT NULL,
			key_hash CHAR(64) NOT NULL, row_key TEXT NOT NULL,
			upstream_row LONGTEXT NULL, downstream_row LONGTEXT NULL,
			first_seen DATETIME(6) NOT NULL, last_seen DATETIME(6) NOT NULL,
			state LONGBLOB NOT NULL,
			PRIMARY KEY (task, source, table_schema, table_name, key_hash)) DEFAULT CHARSET=utf8mb4`,
		"CREATE TABLE IF NOT EXISTS " + v.meta("validator_pending") + ` (
			task VARCHAR(128) NOT NULL, source VARCHAR(128) NOT NULL,
			key_hash CHAR(64) NOT NULL,
			table_schema VARCHAR(64) NOT NULL, table_name VARCHAR(64) NOT NULL,
			first_seen DATETIME(6) NOT NULL, state LONGBLOB NOT NULL,
			PRIMARY KEY (task, source, key_hash)) DEFAULT CHARSET=utf8mb4`,
	} {
		if _, err := v.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("validator: %s: %w", truncate(q, 80), err)
		}
	}
	v.tablesOK.Store(true)
	return nil
}

// savedRow is a held row as the checkpoint and the error table keep it.
type savedRow struct {
	Table     *Table    `json:"table"`
	Key       []int     `json:"key"`
	KeyVals   []tvalue  `json:"key-values"`
	Image     []tvalue  `json:"image,omitempty"`
	Deleted   bool      `json:"deleted,omitempty"`
	FirstDiff time.Time `json:"first-diff,omitzero"`
	LastDiff  time.Time `json:"last-diff,omitzero"`
}

func (r *vrow) saved() (savedRow, error) {
	img, kv, err := r.unpack()
	if err != nil {
		return savedRow{}, err
	}
	s := savedRow{Table: r.table, Key: r.key, KeyVals: encodeValues(kv), Deleted: r.deleted, FirstDiff: r.firstDiff.Time(), LastDiff: r.lastDiff.Time()}
	if !r.deleted {
		s.Image = encodeValues(img)
	}
	return s, nil
}

// newRow returns the row to hold for a changed row of t found by the
// columns key: its image (nil: deleted upstream, found by keyVals), its
// id and its size. The values are copied: the row shares nothing with
// image or keyVals.
func newRow(t *Table, key []int, image, keyVals []any) *vrow {
	r := &vrow{table: t, key: key, deleted: image == nil}
	// One allocation for the id and the packed values: the id first.
	n := len(t.Schema) + len(t.Name) + 3 + 24*len(key)
	if keyVals == nil {
		for _, k := range key {
			n += 1 + packedSize(image[k])
		}
	} else {
		for _, x := range keyVals {
			n += 1 + packedSize(x)
		}
	}
	for _, x := range image {
		n += 1 + packedSize(x)
	}
	b := make([]byte, 0, n)
	if keyVals == nil {
		b = appendRowID(b, t, image, key)
	} else {
		b = appendRowID(b, t, keyVals, nil)
	}
	idLen := len(b)
	ok := true
	if keyVals == nil {
		for _, k := range key {
			if b, ok = packValue(b, image[k]); !ok {
				break
			}
		}
	} else {
		b, ok = packValues(b, keyVals)
	}
	if ok {
		b, ok = packValues(b, image)
	}
	if ok {
		// b is not written again: the id can share it.
		r.id = unsafe.String(unsafe.SliceData(b), idLen)
		r.packed = b[idLen:len(b):len(b)]
	} else {
		r.id = string(b[:idLen])
		if keyVals == nil {
			keyVals = pick(image, key)
		}
		r.odd = &vrowOdd{vals: append(detach(keyVals), detach(image)...)}
	}
	r.bytes = rowBytes(r)
	return r
}

// unpack returns r's image (nil: deleted upstream) and its key's values.
func (r *vrow) unpack() (image, keyVals []any, err error) {
	var vals []any
	if r.odd != nil {
		vals = r.odd.vals
	}
	if vals == nil {
		n := len(r.key)
		if !r.deleted {
			n += len(r.table.Columns)
		}
		if vals, err = unpackValues(r.packed, n); err != nil {
			return nil, nil, fmt.Errorf("validator: row %s of %s: %w", r.id, r.table.QualifiedName(), err)
		}
	}
	if len(vals) < len(r.key) {
		return nil, nil, fmt.Errorf("validator: row %s of %s: %w", r.id, r.table.QualifiedName(), errPacked)
	}
	keyVals = vals[:len(r.key):len(r.key)]
	if !r.deleted {
		image = vals[len(r.key):]
	}
	return image, keyVals, nil
}

func (s savedRow) row() (*vrow, error) {
	if s.Table == nil || len(s.Key) == 0 {
		return nil, errors.New("saved row without table or key")
	}
	var img []any
	if !s.Deleted {
		img = decodeValues(s.Image)
		if len(img) != len(s.Table.Columns) {
			return nil, errors.New("saved row's image does not fit its table")
		}
	}
	if len(s.KeyVals) != len(s.Key) {
		return nil, errors.New("saved row's key does not fit its table")
	}
	var kv []any
	if s.Deleted {
		kv = decodeValues(s.KeyVals)
	}
	r := newRow(s.Table, s.Key, img, kv)
	r.checked, r.firstDiff, r.lastDiff = true, at(s.FirstDiff), at(s.LastDiff)
	return r, nil
}

// loadState reads the stored checkpoint and puts its pending rows back.
func (v *validator) load(ctx context.Context, task, source string) (Checkpoint, bool, error) {
	if err := v.ensureTables(ctx); err != nil {
		return Checkpoint{}, false, err
	}
	if err := v.loadFilter(ctx); err != nil {
		return Checkpoint{}, false, err
	}
	var cpb, pb []byte
	err := v.db.QueryRowContext(ctx, "SELECT checkpoint, pending FROM "+v.meta("validator_checkpoint")+" WHERE task = ? AND source = ?", task, source).Scan(&cpb, &pb)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("validator: load checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(cpb, &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("validator: checkpoint: %w", err)
	}
	var pending []savedRow
	if err := json.Unmarshal(pb, &pending); err != nil {
		return Checkpoint{}, false, fmt.Errorf("validator: pending rows: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lastRead, v.readSet = cp, true
	v.st.Validated = cp.Pos
	for _, s := range pending {
		r, err := s.row()
		if err != nil {
			v.log.Warn("a pending row of the checkpoint is dropped", errAttr(err))
			continue
		}
		v.hold(r)
	}
	return cp, true, nil
}

// hold puts r in memory (v.mu held), replacing an older image of its row.
func (v *validator) hold(r *vrow) {
	v.version++
	r.version = v.version
	if old, ok := v.rows[r.id]; ok {
		v.addBytes(-old.bytes)
		if r.firstDiff.IsZero() {
			r.firstDiff, r.lastDiff = old.firstDiff, old.lastDiff
		}
	}
	v.rows[r.id] = r
	v.grow(r.bytes)
}

// rowOverhead is what a held row takes beside its id and its values: its
// struct (128 bytes as allocated), its entry in the validator's map (about
// 48 bytes with the map's spare room) and its pointer in a staged item.
const rowOverhead = 184

// rowBytes is what r takes in memory as allocated: its struct and map
// entry, its id, and its values (packed, or as they are).
func rowBytes(r *vrow) int64 {
	if r.packed != nil {
		return rowOverhead + allocSize(len(r.id)+cap(r.packed)) + r.oddSize() // one allocation
	}
	return rowOverhead + allocSize(len(r.id)) + r.oddSize()
}

// oddSize is what r.odd takes.
func (r *vrow) oddSize() int64 {
	if r.odd == nil {
		return 0
	}
	return 48 + valuesSize(r.odd.vals) + valuesSize(r.odd.down)
}

// allocSize is about what the Go allocator takes for n bytes: small
// sizes rounded up to 16 bytes, larger ones to an eighth of their size.
func allocSize(n int) int64 {
	switch {
	case n == 0:
		return 0
	case n <= 256:
		return int64((n + 15) &^ 15)
	}
	step := 1 << (bits.Len(uint(n)) - 3)
	return int64((n + step - 1) &^ (step - 1))
}

// packedSize is about how many bytes packValues takes for x, tag aside.
func packedSize(x any) int {
	switch x := x.(type) {
	case string:
		return 2 + len(x)
	case []byte:
		return 2 + len(x)
	case decimal.Decimal:
		return 4 + len(x.Coefficient().Bits())*8
	}
	return 9
}

// grow adds n to the bytes held and notes the peak (v.mu held).
func (v *validator) grow(n int64) {
	v.addBytes(n)
	v.st.PeakBytes = max(v.st.PeakBytes, v.heldBytes+v.stagedBytes)
}

// addBytes adds n to the bytes held (v.mu held).
func (v *validator) addBytes(n int64) {
	v.heldBytes += n
	v.used.Store(v.heldBytes + v.stagedBytes)
}

// valuesSize is about what vals take as allocated: the slice, each boxed
// value (16 bytes), and the bytes of strings and byte slices.
func valuesSize(vals []any) int64 {
	if vals == nil {
		return 0
	}
	n := allocSize(16 * len(vals))
	for _, x := range vals {
		switch x := x.(type) {
		case string:
			n += allocSize(len(x))
		case []byte:
			n += allocSize(len(x))
		default:
			n += 16
		}
	}
	return n
}

// rowID names a row: its table and key values (as JSON of their
// encodeValues form: written directly for integer keys).
func rowID(t *Table, key []any) string { return rowIDAt(t, key, nil) }

// rowIDAt is rowID of the key made of vals[idx[0]], vals[idx[1]], ...
// (with idx nil, of vals).
func rowIDAt(t *Table, vals []any, idx []int) string {
	n := len(vals)
	if idx != nil {
		n = len(idx)
	}
	return string(appendRowID(make([]byte, 0, len(t.Schema)+len(t.Name)+2+24*n), t, vals, idx))
}

// appendRowID appends rowIDAt(t, vals, idx) to b.
func appendRowID(b []byte, t *Table, vals []any, idx []int) []byte {
	n := len(vals)
	if idx != nil {
		n = len(idx)
	}
	start := len(b)
	b = append(append(append(append(b, t.Schema...), 0), t.Name...), 0)
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		x := vals[i]
		if idx != nil {
			x = vals[idx[i]]
		}
		switch x := x.(type) {
		case int64:
			b = strconv.AppendInt(append(b, `{"t":105,"v":"`...), x, 10)
		case uint64:
			b = strconv.AppendUint(append(b, `{"t":117,"v":"`...), x, 10)
		default:
			key := vals
			if idx != nil {
				key = pick(vals, idx)
			}
			j, _ := json.Marshal(encodeValues(key))
			b = append(append(append(append(b[:start], t.Schema...), 0), t.Name...), 0)
			return append(b, j...)
		}
		b = append(b, `"}`...)
	}
	return append(b, ']')
}

// keyOf returns the column indexes the validator finds t's rows by: the
// primary key, else the first unique key of NOT NULL columns.
func keyOf(t *Table) []int {
	if len(t.PrimaryKey) > 0 {
		return t.PrimaryKey
	}
	for _, uk := range t.UniqueKeys {
		ok := len(uk) > 0
		for _, i := range uk {
			ok = ok && !t.Columns[i].Nullable
		}
		if ok {
			return uk
		}
	}
	return nil
}

// add takes a batch's changes.
func (v *validator) add(changes []Change) {
	for _, c := range changes {
		v.holdRows(heldRowsOf(&c))
	}
}

// heldRowsOf returns the rows a change makes the validator hold (none for a
// table without a key to find them by), with their ids and sizes.
func heldRowsOf(c *Change) []*vrow { return appendHeldRows(nil, c) }

// appendHeldRows appends heldRowsOf(c) to rows.
func appendHeldRows(rows []*vrow, c *Change) []*vrow {
	key := keyOf(c.Table)
	if key == nil {
		return rows
	}
	switch c.Kind {
	case Insert:
		return append(rows, newRow(c.Table, key, c.After, nil))
	case Delete:
		return append(rows, newRow(c.Table, key, nil, pick(c.Before, key)))
	case Update:
		if !sameKeyAt(c.Before, c.After, key) {
			rows = append(rows, newRow(c.Table, key, nil, pick(c.Before, key)))
		}
		return append(rows, newRow(c.Table, key, c.After, nil))
	}
	return rows
}

// holdRows puts rows in memory.
func (v *validator) holdRows(rows []*vrow) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range rows {
		v.hold(r)
	}
}

// over reports whether holding need more bytes would take the rows held
// past the memory budget (never when none are held: a row larger than the
// budget is held alone).
func (v *validator) over(need int64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.heldBytes > 0 && v.heldBytes+need > v.cfg.MemoryBytes
}

// detach returns a copy of vals whose strings and byte slices are copies
// too: decoded values share their event's bytes, which a row held for
// minutes would keep whole (a row of a 1000-row event held the event).
func detach(vals []any) []any {
	if vals == nil {
		return nil
	}
	out := make([]any, len(vals))
	for i, x := range vals {
		switch x := x.(type) {
		case string:
			out[i] = strings.Clone(x)
		case []byte:
			out[i] = bytes.Clone(x)
		default:
			out[i] = x
		}
	}
	return out
}

func pick(vals []any, idx []int) []any {
	out := make([]any, len(idx))
	for i, k := range idx {
		out[i] = vals[k]
	}
	return out
}

// sameKeyAt is sameKey of the keys at idx of a and b.
func sameKeyAt(a, b []any, idx []int) bool {
	for _, k := range idx {
		switch x := a[k].(type) {
		case int64:
			if y, ok := b[k].(int64); !ok || x != y {
				return sameKey(pick(a, idx), pick(b, idx))
			}
		case uint64:
			if y, ok := b[k].(uint64); !ok || x != y {
				return sameKey(pick(a, idx), pick(b, idx))
			}
		case string:
			if y, ok := b[k].(string); !ok || x != y {
				return sameKey(pick(a, idx), pick(b, idx))
			}
		default:
			return sameKey(pick(a, idx), pick(b, idx))
		}
	}
	return true
}

func sameKey(a, b []any) bool {
	if len(a) == len(b) {
		same := true
		for i := range a {
			switch x := a[i].(type) {
			case int64:
				y, ok := b[i].(int64)
				same = ok && x == y
			case uint64:
				y, ok := b[i].(uint64)
				same = ok && x == y
			case string:
				y, ok := b[i].(string)
				same = ok && x == y
			default:
				same = false
			}
			if !same {
				break
			}
		}
		if same {
			return true
		}
	}
	x, _ := json.Marshal(encodeValues(a))
	y, _ := json.Marshal(encodeValues(b))
	return string(x) == string(y)
}

// full reports whether the rows held take the memory budget.
func (v *validator) full() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.heldBytes >= v.cfg.MemoryBytes
}

// dropTable forgets the rows held of a table a DDL changes.
func (v *validator) dropTable(schema, table string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, r := range v.rows {
		if r.table.Schema == schema && (table == "" || r.table.Name == table) {
			v.addBytes(-r.bytes)
			delete(v.rows, id)
		}
	}
	v.countDiffering()
}

// countDiffering counts the rows held that differed at their last check
// (v.mu held).
func (v *validator) countDiffering() {
	n := 0
	for _, r := range v.rows {
		if !r.firstDiff.IsZero() {
			n++
		}
	}
	v.differing = n
}

// errorID is the hash keying an error row.
func errorHash(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// pass checks every row held, records those that differed too long,
// clears those that converged, spills the differing ones to
// validator_pending when they take half the memory budget (all of them
// with spillAll), re-checks some of the spilled and the error rows (at
// most once an interval), and stores the checkpoint when no row is left
// unchecked.
func (v *validator) pass(ctx context.Context, spillAll bool) error {
	v.checkMu.Lock()
	defer v.checkMu.Unlock()
	if err := v.ensureTables(ctx); err != nil {
		return err
	}
	v.mu.Lock()
	todo := make([]*vrow, 0, len(v.rows))
	for _, r := range v.rows {
		todo = append(todo, r)
	}
	v.mu.Unlock()
	delay := time.Duration(v.cfg.RowErrorDelay)
	var toRecord, toSpill []*vrow
	var toClear []string // key hashes whose spilled or error rows go
	// A part at a time, so that what a check reads (the downstream's
	// rows) is dropped part by part, and the rows equal are released as
	// the pass goes; passWorkers parts at once, each on its own
	// connection, so that a pass keeps up with a syncer that writes with
	// many.
	var errMu sync.Mutex
	var checkErr error
	var g errgroup.Group
	g.SetLimit(passWorkers)
	for len(todo) > 0 && ctx.Err() == nil {
		part := todo[:min(passPart, len(todo))]
		todo = todo[len(part):]
		g.Go(func() error {
			results, err := v.check(ctx, part)
			if err != nil {
				errMu.Lock()
				if checkErr == nil {
					checkErr = err
				}
				errMu.Unlock()
			}
			now := time.Now()
			v.mu.Lock()
			defer v.mu.Unlock()
			for i, r := range part {
				part[i] = nil // not kept by todo's array
				res, ok := results[r]
				if !ok {
					continue
				}
				v.st.Checked++
				cur := v.rows[r.id]
				current := cur == r // not replaced by a newer image meanwhile
				if res.equal {
					if current {
						v.release(r)
						if !v.filterEmpty() {
							if h := errorHash(r.id); v.maybe(h) {
								toClear = append(toClear, h)
							}
						}
					}
					continue
				}
				if r.firstDiff.IsZero() {
					r.firstDiff = at(now)
				}
				r.lastDiff = at(now)
				if !current {
					if cur != nil && cur.firstDiff.IsZero() {
						cur.firstDiff = r.firstDiff
					}
					continue
				}
				r.checked = true
				if now.Sub(r.firstDiff.Time()) >= delay {
					r.setDown(res.down) // for the error row; not kept otherwise
					toRecord = append(toRecord, r)
					v.release(r)
				}
			}
			return nil
		})
	}
	_ = g.Wait() // the parts' errors are in checkErr
	if checkErr == nil {
		checkErr = ctx.Err()
	}
	v.mu.Lock()
	if spillAll || v.heldBytes >= v.cfg.MemoryBytes/2 {
		for _, r := range v.rows {
			if r.checked && !r.firstDiff.IsZero() {
				toSpill = append(toSpill, r)
				v.mark(errorHash(r.id))
			}
		}
	}
	v.mu.Unlock()
	for _, r := range toRecord {
		if err := v.recordError(ctx, r, true); err != nil {
			return err
		}
	}
	if err := v.spill(ctx, toSpill); err != nil {
		return err
	}
	if err := v.clearRows(ctx, toClear); err != nil {
		return err
	}
	if time.Since(v.lastScan) >= v.interval {
		v.lastScan = time.Now()
		if err := v.recheck(ctx, "validator_pending", &v.pendCursor, false); err != nil {
			return err
		}
		if err := v.recheck(ctx, "validator_errors", &v.errCursor, true); err != nil {
			return err
		}
	}
	var nerr, npend int
	if err := v.db.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM "+v.meta("validator_errors")+" WHERE task = ? AND source = ?), (SELECT COUNT(*) FROM "+
		v.meta("validator_pending")+" WHERE task = ? AND source = ?)", v.task, v.source, v.task, v.source).Scan(&nerr, &npend); err != nil {
		return fmt.Errorf("validator: count error rows: %w", err)
	}
	v.mu.Lock()
	v.countDiffering()
	v.st.ErrorRows, v.st.Spilled = nerr, npend
	if nerr == 0 && npend == 0 {
		clear(v.filter) // nothing in the tables: no row may be there
		v.marked = false
	}
	v.mu.Unlock()
	if checkErr != nil {
		return checkErr
	}
	return v.persist(ctx)
}

// passPart is how many rows a pass checks before it takes their results,
// and passWorkers how many parts it checks at once.
const (
	passPart    = 4096
	passWorkers = 4
)

// filterBits is the size of the validator's filter of key hashes in its
// tables (128 KiB).
const filterBits = 1 << 20

func filterPos(hash string) (uint32, uint32) {
	b, err := hex.DecodeString(hash[:16])
	if err != nil || len(b) < 8 {
		return 0, 0
	}
	return binary.BigEndian.Uint32(b[:4]) % filterBits, binary.BigEndian.Uint32(b[4:8]) % filterBits
}

// mark notes that hash may have a row in the validator's tables (v.mu held).
func (v *validator) mark(hash string) {
	i, j := filterPos(hash)
	v.filter[i/64] |= 1 << (i % 64)
	v.filter[j/64] |= 1 << (j % 64)
	v.marked = true
}

// filterEmpty reports whether no key hash is marked: no row held has a row
// in the validator's tables, and none needs hashing to find out (v.mu
// held).
func (v *validator) filterEmpty() bool { return !v.marked }

// maybe reports whether hash may have a row in the validator's tables
// (v.mu held).
func (v *validator) maybe(hash string) bool {
	i, j := filterPos(hash)
	return v.filter[i/64]&(1<<(i%64)) != 0 && v.filter[j/64]&(1<<(j%64)) != 0
}

// loadFilter marks the key hashes of the rows in the validator's tables
// (written by an earlier process: this one marks what it writes).
func (v *validator) loadFilter(ctx context.Context) error {
	for _, table := range []string{"validator_pending", "validator_errors"} {
		rs, err := v.db.QueryContext(ctx, "SELECT key_hash FROM "+v.meta(table)+" WHERE task = ? AND source = ?", v.task, v.source)
		if err != nil {
			return fmt.Errorf("validator: read %s: %w", table, err)
		}
		for rs.Next() {
			var h string
			if err := rs.Scan(&h); err != nil {
				rs.Close()
				return fmt.Errorf("validator: read %s: %w", table, err)
			}
			v.mu.Lock()
			v.mark(h)
			v.mu.Unlock()
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return fmt.Errorf("validator: read %s: %w", table, err)
		}
	}
	return nil
}

// spillBatch is how many rows one statement spills or deletes.
const spillBatch = 100

// spill writes differing rows to validator_pending and forgets them (those
// not replaced by a newer image meanwhile). A row spilled again keeps the
// time it first differed (first_seen), the newer image its state.
func (v *validator) spill(ctx context.Context, rows []*vrow) error {
	for i := 0; i < len(rows); i += spillBatch {
		chunk := rows[i:min(i+spillBatch, len(rows))]
		var q strings.Builder
		q.WriteString("INSERT INTO " + v.meta("validator_pending") + " (task, source, key_hash, table_schema, table_name, first_seen, state) VALUES ")
		args := make([]any, 0, 7*len(chunk))
		for j, r := range chunk {
			saved, err := r.saved()
			if err != nil {
				return err
			}
			state, err := json.Marshal(saved)
			if err != nil {
				return err
			}
			if j > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?)")
			args = append(args, v.task, v.source, errorHash(r.id), r.table.Schema, r.table.Name, r.firstDiff.Time().UTC().Format("2006-01-02 15:04:05.999999"), state)
		}
		q.WriteString(" ON DUPLICATE KEY UPDATE table_schema = VALUES(table_schema), table_name = VALUES(table_name)," +
			" first_seen = LEAST(first_seen, VALUES(first_seen)), state = VALUES(state)")
		if _, err := v.db.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("validator: spill differing rows: %w", err)
		}
		v.mu.Lock()
		for _, r := range chunk {
			if v.rows[r.id] == r {
				v.release(r)
			}
		}
		v.mu.Unlock()
	}
	return nil
}

// clearRows deletes the spilled and error rows of the key hashes.
func (v *validator) clearRows(ctx context.Context, hashes []string) error {
	for i := 0; i < len(hashes); i += spillBatch {
		chunk := hashes[i:min(i+spillBatch, len(hashes))]
		in := strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")
		args := []any{v.task, v.source}
		for _, h := range chunk {
			args = append(args, h)
		}
		for _, table := range []string{"validator_pending", "validator_errors"} {
			res, err := v.db.ExecContext(ctx, "DELETE FROM "+v.meta(table)+" WHERE task = ? AND source = ? AND key_hash IN ("+in+")", args...)
			if err != nil {
				return fmt.Errorf("validator: clear converged rows: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 && table == "validator_errors" {
				v.log.Info("differing rows converged", slog.Int64("error-rows", n))
			}
		}
	}
	return nil
}

// recheck checks again up to recheckRows rows of the validator's table
// (validator_pending, or validator_errors with errorRows), from *cursor on
// in key hash order, a page at a time, the page's rows counted as held
// while it is checked: the rows that converged are deleted, those pending
// that have differed longer than the delay become error rows, the error
// rows are refreshed. A row held in memory is not checked here (its newer
// image is); a spilled one gives it the time it first differed.
func (v *validator) recheck(ctx context.Context, table string, cursor *string, errorRows bool) error {
	delay := time.Duration(v.cfg.RowErrorDelay)
	for done := 0; done < recheckRows; {
		v.mu.Lock()
		room := max(v.cfg.MemoryBytes-v.heldBytes, 0)
		v.mu.Unlock()
		page, bytes, err := v.loadPage(ctx, table, *cursor, room)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			*cursor = ""
			return nil
		}
		*cursor = errorHash(page[len(page)-1].id)
		v.mu.Lock()
		v.grow(bytes)
		var todo []*vrow
		for _, r := range page {
			v.mark(errorHash(r.id))
			if m := v.rows[r.id]; m != nil {
				if !errorRows && (m.firstDiff.IsZero() || r.firstDiff < m.firstDiff) {
					m.firstDiff = r.firstDiff
				}
				continue
			}
			todo = append(todo, r)
		}
		v.mu.Unlock()
		err = v.recheckPage(ctx, todo, errorRows, delay)
		v.mu.Lock()
		for _, r := range page {
			v.addBytes(-r.bytes)
		}
		v.mu.Unlock()
		if err != nil {
			return err
		}
		if len(page) < checkBatch {
			*cursor = ""
			return nil
		}
		done += len(page)
	}
	return nil
}

// recheckRows is how many spilled (and error) rows a pass checks again at
// most.
const recheckRows = 20 * checkBatch

func (v *validator) recheckPage(ctx context.Context, todo []*vrow, errorRows bool, delay time.Duration) error {
	results, checkErr := v.check(ctx, todo)
	now := time.Now()
	var converged []string
	for _, r := range todo {
		res, ok := results[r]
		if !ok {
			continue
		}
		v.mu.Lock()
		v.st.Checked++
		v.mu.Unlock()
		switch {
		case res.equal:
			converged = append(converged, errorHash(r.id))
		case errorRows && now.Sub(r.lastDiff.Time()) < 10*v.interval:
			// An error row still differing: refreshed (its downstream
			// image, last seen) every 10 intervals only.
		case errorRows || now.Sub(r.firstDiff.Time()) >= delay:
			r.lastDiff = at(now)
			r.setDown(res.down)
			if err := v.recordError(ctx, r, !errorRows); err != nil {
				return err
			}
		}
	}
	if err := v.clearRows(ctx, converged); err != nil {
		return err
	}
	return checkErr
}

// loadPage reads the rows of the validator's table after the key hash
// from, at most checkBatch of them and no more bytes than room (but one).
func (v *validator) loadPage(ctx context.Context, table, from string, room int64) ([]*vrow, int64, error) {
	rs, err := v.db.QueryContext(ctx, "SELECT key_hash, state, first_seen FROM "+v.meta(table)+" WHERE task = ? AND source = ? AND key_hash > ? ORDER BY task, source, key_hash LIMIT ?",
		v.task, v.source, from, checkBatch)
	if err != nil {
		return nil, 0, fmt.Errorf("validator: read %s: %w", table, err)
	}
	defer rs.Close()
	var out []*vrow
	var bytes int64
	for rs.Next() {
		var h, first string
		var b []byte
		if err := rs.Scan(&h, &b, &first); err != nil {
			return nil, 0, fmt.Errorf("validator: read %s: %w", table, err)
		}
		var s savedRow
		var r *vrow
		err := json.Unmarshal(b, &s)
		if err == nil {
			r, err = s.row()
		}
		if err != nil {
			v.log.Warn("a stored row of the validator is not readable: skipped", slog.String("table", table), slog.String("key-hash", h), errAttr(err))
			continue
		}
		if t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", first, time.UTC); err == nil && (r.firstDiff.IsZero() || t.Before(r.firstDiff.Time())) {
			r.firstDiff = at(t) // an older image differed first
		}
		if len(out) > 0 && bytes+r.bytes > room {
			break
		}
		out = append(out, r)
		bytes += r.bytes
	}
	if err := rs.Err(); err != nil {
		return nil, 0, fmt.Errorf("validator: read %s: %w", table, err)
	}
	return out, bytes, nil
}

// release forgets r (v.mu held).
func (v *validator) release(r *vrow) {
	v.addBytes(-r.bytes)
	delete(v.rows, r.id)
}

// persist stores the checkpoint when no row is left unchecked.
func (v *validator) persist(ctx context.Context) error {
	v.mu.Lock()
	unchecked := false
	var pending []savedRow
	for _, r := range v.rows {
		if !r.checked {
			unchecked = true
			break
		}
		s, err := r.saved()
		if err != nil {
			v.mu.Unlock()
			return err
		}
		pending = append(pending, s)
	}
	cp, ok := v.lastRead, v.readSet
	v.mu.Unlock()
	if unchecked || !ok || cp.Pos.IsZero() {
		return nil
	}
	if pending == nil {
		pending = []savedRow{}
	}
	cpb, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	pb, err := json.Marshal(pending)
	if err != nil {
		return err
	}
	if _, err := v.db.ExecContext(ctx, "REPLACE INTO "+v.meta("validator_checkpoint")+" (task, source, checkpoint, pending, updated_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))",
		v.task, v.source, cpb, pb); err != nil {
		return fmt.Errorf("validator: store checkpoint: %w", err)
	}
	v.mu.Lock()
	v.st.Validated = cp.Pos
	v.mu.Unlock()
	return nil
}

// recordError writes (or refreshes) r's error row, and with unpend deletes
// its spilled row.
func (v *validator) recordError(ctx context.Context, r *vrow, unpend bool) error {
	saved, err := r.saved()
	if err != nil {
		return err
	}
	state, err := json.Marshal(saved)
	if err != nil {
		return err
	}
	image, keyVals, err := r.unpack()
	if err != nil {
		return err
	}
	key, _ := json.Marshal(displayValues(keyVals))
	var up, down any
	if !r.deleted {
		up = imageJSON(r.table, image, nil)
	}
	if d := r.down(); d != nil {
		if v.cfg.Mode == ValidationFast {
			// Only the key is read in mode fast.
			down = imageJSON(r.table, d, r.key)
		} else {
			down = imageJSON(r.table, d, nil)
		}
	}
	v.mu.Lock()
	v.mark(errorHash(r.id))
	v.mu.Unlock()
	res, err := v.db.ExecContext(ctx, "INSERT INTO "+v.meta("validator_errors")+
		" (task, source, table_schema, table_name, key_hash, row_key, upstream_row, downstream_row, first_seen, last_seen, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"+
		" ON DUPLICATE KEY UPDATE row_key = VALUES(row_key), upstream_row = VALUES(upstream_row), downstream_row = VALUES(downstream_row), last_seen = VALUES(last_seen), state = VALUES(state)",
		v.task, v.source, r.table.Schema, r.table.Name, errorHash(r.id), string(key), up, down,
		r.firstDiff.Time().UTC().Format("2006-01-02 15:04:05.999999"), r.lastDiff.Time().UTC().Format("2006-01-02 15:04:05.999999"), state)
	if err != nil {
		return fmt.Errorf("validator: record error row: %w", err)
	}
	if unpend {
		if _, err := v.db.ExecContext(ctx, "DELETE FROM "+v.meta("validator_pending")+" WHERE task = ? AND source = ? AND key_hash = ?",
			v.task, v.source, errorHash(r.id)); err != nil {
			return fmt.Errorf("validator: record error row: %w", err)
		}
	}
	if n, _ := res.RowsAffected(); n == 1 { // inserted, not updated
		v.log.Warn("a row differs from the upstream: recorded as an error row", slog.String("table", r.table.QualifiedName()), slog.String("key", string(key)))
	}
	return nil
}

// imageJSON is a row image as a JSON object: the columns cols (nil: all).
func imageJSON(t *Table, vals []any, cols []int) string {
	m := make(map[string]any, len(vals))
	for i, c := range t.Columns {
		if i < len(vals) && (cols == nil || contains(cols, i)) {
			m[c.Name] = displayValue(vals[i])
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// run runs the validator beside the syncer s until ctx ends; its own errors
// are logged and retried, never the subtask's. With f (nil: none) it takes
// what the syncer reads from f, until f stops; then it reads the binlog.
func (v *validator) run(ctx context.Context, t *SubTask, cfg SubTaskConfig, s *Syncer, f *validatorFeed) {
	v.mu.Lock()
	v.st.Running = true
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.st.Running = false
		v.mu.Unlock()
	}()
	defer f.stopIf()
	for ctx.Err() == nil {
		err := v.runOnce(ctx, t, cfg, s, f)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			v.setErr(err)
			v.log.Warn("validator stopped: retrying", errAttr(err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

func (v *validator) runOnce(ctx context.Context, t *SubTask, cfg SubTaskConfig, s *Syncer, f *validatorFeed) error {
	if err := v.ensureTables(ctx); err != nil {
		return err
	}
	pctx, pcancel := context.WithCancel(ctx)
	passes := make(chan struct{})
	go func() {
		defer close(passes)
		tick := time.NewTicker(v.interval)
		defer tick.Stop()
		var yielding time.Time
		for {
			select {
			case <-pctx.Done():
				return
			case <-v.kick:
			case <-tick.C:
				if v.yield(s, &yielding) {
					continue
				}
			}
			if err := v.boundedPass(pctx, t.opts.sinkTimeout); err != nil {
				if pctx.Err() == nil {
					v.setErr(err)
					v.log.Warn("validation pass failed", errAttr(err))
				}
				continue
			}
			v.setErr(nil)
		}
	}()
	var err error
	if f.usable() {
		err = v.runFeed(ctx, t, cfg, s, f)
		// Whatever ended it, the feed is not taken again: what it holds
		// follows what was taken, and a retry starts from the stored
		// checkpoint.
		over := f.stopIf()
		if errors.Is(err, errFeedOff) && ctx.Err() == nil {
			v.log.Info("the validator reads the binlog itself from its checkpoint", slog.Bool("feed-overflowed", over))
			v.mu.Lock()
			v.st.Reading = ValidatorReadsBinlog
			v.mu.Unlock()
			// Check and store what was taken, so that the reader starts
			// from there.
			if perr := v.pass(ctx, false); perr != nil && ctx.Err() == nil {
				v.log.Warn("validation pass failed", errAttr(perr))
			}
			err = v.readBinlog(ctx, t, cfg, s, streamer.Position{})
		}
	} else {
		v.mu.Lock()
		v.st.Reading = ValidatorReadsBinlog
		v.mu.Unlock()
		err = v.readBinlog(ctx, t, cfg, s, streamer.Position{})
	}
	pcancel()
	<-passes
	// A last pass, so that a stop stores what was checked, within the
	// stop timeout.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), t.opts.stopTimeout)
	if perr := v.pass(fctx, false); perr != nil && err == nil && ctx.Err() == nil {
		err = perr
	}
	fcancel()
	return err
}

// boundedPass runs a pass that gives up after d (WithSinkTimeout; 0:
// unbounded) with an error wrapping ErrSinkTimeout, so that a downstream
// that stopped answering (a half-open connection) shows in the status's
// LastError instead of stalling the validator silently; the next tick
// tries again on a fresh connection. What the pass had checked stays
// checked; what it had not is checked by a later pass.
func (v *validator) boundedPass(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return v.pass(ctx, false)
	}
	pctx, cancel := context.WithTimeoutCause(ctx, d, ErrSinkTimeout)
	defer cancel()
	err := v.pass(pctx, false)
	if err != nil && ctx.Err() == nil && pctx.Err() != nil {
		return fmt.Errorf("validator: task %s source %s: a check gave no answer in %v: %w", v.task, v.source, d, ErrSinkTimeout)
	}
	return err
}

// passAt is what the validator may hold before it checks the rows held
// without waiting for the next interval: three quarters of the memory
// budget, the rest being room for the changes taken meanwhile (those the
// syncer has not applied yet, about feedAppliedEvery's worth, and those
// waiting in the feed).
func (v *validator) passAt() int64 { return v.cfg.MemoryBytes / 4 * 3 }

// Checks give way to a syncer that is catching up.
const (
	// yieldLag is the syncer's lag over which the timed checks wait.
	yieldLag = 10 * time.Second
	// yieldPasses is how many check intervals in a row they wait at most.
	yieldPasses = 12
)

// yield reports whether the timed pass may wait: the syncer is catching up
// (its lag is over yieldLag), the rows held take less than passAt of the
// memory budget (past it, runFeed asks for a pass anyway), and the checks
// have not waited yieldPasses intervals in a row yet (since: when they
// started waiting). The rows held still get checked at a DDL.
func (v *validator) yield(s *Syncer, since *time.Time) bool {
	v.mu.Lock()
	held := v.heldBytes
	v.mu.Unlock()
	if held >= v.passAt() || s.Status().LagSeconds < yieldLag.Seconds() {
		*since = time.Time{}
		return false
	}
	now := time.Now()
	if since.IsZero() {
		*since = now
	}
	if now.Sub(*since) >= yieldPasses*v.interval {
		*since = time.Time{}
		return false
	}
	return true
}

// runFeed validates what the syncer hands over through f, from where the
// syncer's run starts. When the validator's checkpoint is before that, it
// reads the binlog itself up to there first. It returns errFeedOff when
// the feed stops (it overflowed), or when the validator's checkpoint is
// past the syncer's start.
func (v *validator) runFeed(ctx context.Context, t *SubTask, cfg SubTaskConfig, s *Syncer, f *validatorFeed) error {
	start, err := f.waitBegin(ctx)
	if err != nil {
		return err
	}
	cp, found, err := v.load(ctx, v.task, v.source)
	if err != nil {
		return err
	}
	switch {
	case !found:
		v.mu.Lock()
		v.lastRead, v.readSet = start, true
		v.mu.Unlock()
		v.log.Info("validation starts at the syncer's checkpoint", slog.String("pos", start.Pos.String()))
	case cp.Pos.Compare(start.Pos) > 0:
		return errFeedOff
	case cp.Pos.Compare(start.Pos) < 0:
		// Changes the syncer applied before this run that the validator
		// has not checked (it stopped, or was killed, before storing a
		// later checkpoint): read them, up to the syncer's start.
		v.log.Info("the validator reads the binlog up to the syncer's start", slog.String("from", cp.Pos.String()), slog.String("to", start.Pos.String()))
		v.mu.Lock()
		v.st.Reading = ValidatorReadsBinlog
		v.mu.Unlock()
		if err := v.readBinlog(ctx, t, cfg, s, start.Pos); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		v.mu.Lock()
		if v.lastRead.Pos.Compare(start.Pos) < 0 {
			// The reader passed every event up to start to the inner
			// syncer, which applied them all: the syncer's checkpoint
			// there (and its schema) is the validator's too.
			v.lastRead = start
		}
		v.mu.Unlock()
	}
	v.mu.Lock()
	v.st.Reading = ValidatorReadsSyncer
	v.mu.Unlock()
	store := &validatorStore{v: v}
	var staged []stagedItem
	defer v.unstage()
	var saved streamer.Position
	for {
		items, cp, done, err := f.take(ctx)
		if err != nil {
			return err
		}
		if staged, err = v.feedStep(ctx, f, staged, items, done); err != nil {
			return err
		}
		if cp.Pos.Compare(saved) > 0 {
			if err := store.Save(ctx, cp); err != nil {
				return err
			}
			saved = cp.Pos
		}
	}
}

// stagedItem is a rows event's rows, packed, or a DDL, taken from the feed
// before the syncer stored a checkpoint past it.
type stagedItem struct {
	pos   streamer.Position
	rows  []*vrow
	ddl   *DDL
	bytes int64
}

// stage packs the items' changes into rows and appends them to staged,
// counting their bytes as the validator's. An item that would take what the
// validator holds past its memory budget first has the rows held checked
// (room); should the rows staged still leave no room for it, the feed f is
// stopped (errFeedOff): the validator then reads the binlog itself, from
// its checkpoint, and holds the rows of an event one by one.
func (v *validator) stage(ctx context.Context, f *validatorFeed, staged []stagedItem, items []feedItem) ([]stagedItem, error) {
	for _, it := range items {
		s := stagedItem{pos: it.pos, ddl: it.ddl}
		for i := range it.changes {
			s.rows = appendHeldRows(s.rows, &it.changes[i])
		}
		for _, r := range s.rows {
			s.bytes += r.bytes
		}
		if err := v.room(ctx, f, s.bytes, len(s.rows) <= 1); err != nil {
			return staged, err
		}
		v.mu.Lock()
		v.stagedBytes += s.bytes
		v.stagedRows += len(s.rows)
		v.grow(0)
		v.mu.Unlock()
		staged = append(staged, s)
	}
	return staged, nil
}

// feedStep stages the items taken from the feed, then holds the rows (and
// runs the DDLs) staged up to done: those the syncer has applied. It
// returns what stays staged.
func (v *validator) feedStep(ctx context.Context, f *validatorFeed, staged []stagedItem, items []feedItem, done streamer.Position) ([]stagedItem, error) {
	staged, err := v.stage(ctx, f, staged, items)
	if err != nil {
		return staged, err
	}
	sink := &validatorSink{v}
	n := 0
	for ; n < len(staged) && staged[n].pos.Compare(done) <= 0; n++ {
		it := staged[n]
		if it.ddl != nil {
			if err := sink.ExecDDL(ctx, it.ddl); err != nil {
				staged = staged[n:]
				return staged, err
			}
			continue
		}
		v.mu.Lock()
		v.stagedBytes -= it.bytes
		v.stagedRows -= len(it.rows)
		for _, r := range it.rows {
			v.hold(r)
		}
		v.mu.Unlock()
	}
	rest := copy(staged, staged[n:])
	clear(staged[rest:])
	return staged[:rest], nil
}

// unstage forgets the staged items (the feed stopped).
func (v *validator) unstage() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.stagedBytes, v.stagedRows = 0, 0
	v.addBytes(0)
}

// room makes room for need more bytes in the validator's memory budget:
// past the whole of it, it runs a pass that drops the rows that are equal
// and spills those that differ, and waits for it; should the rows staged
// still leave no room, it stops the feed f (errFeedOff). With alone, need
// is a single row's: it is taken whatever its size when nothing else is
// held. Past passAt, it asks the pass loop for a pass, without
// waiting.
func (v *validator) room(ctx context.Context, f *validatorFeed, need int64, alone bool) error {
	budget := v.cfg.MemoryBytes
	for {
		used := v.used.Load()
		if used+need <= budget || alone && used == 0 {
			break
		}
		v.mu.Lock()
		held := v.heldBytes
		v.mu.Unlock()
		if held == 0 || !f.usable() {
			f.stopOver()
			return errFeedOff
		}
		// A pass under way (asked for at passAt) releases rows
		// as it goes: its end first.
		v.checkMu.Lock()
		v.checkMu.Unlock()
		if v.used.Load()+need <= budget {
			continue
		}
		if err := v.pass(ctx, true); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			v.setErr(err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(v.interval):
			}
		}
	}
	if v.used.Load()+need >= v.passAt() {
		select {
		case v.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// readBinlog validates the binlog the validator reads itself, with an inner
// syncer, from its checkpoint (or, before it has one, the syncer's), until
// ctx ends or, with until set, it has read every event up to until.
func (v *validator) readBinlog(ctx context.Context, t *SubTask, cfg SubTaskConfig, s *Syncer, until streamer.Position) error {
	// The first time, the validator starts where the syncer's stored
	// checkpoint is, with the schema the syncer tracked there (see
	// validatorStore.Load): not at a position with the upstream's schema
	// of now, which may be a later one (a CREATE INDEX replayed on a
	// table that has the index already stops the reader).
	t.mu.Lock()
	mainStore := t.store
	t.mu.Unlock()
	scfg := cfg.syncerConfig(t.up)
	scfg.Workers, scfg.SafeMode, scfg.Compact = 1, false, false
	scfg.BatchSize, scfg.MaxBatchRows = 1000, 10000
	o := t.opts.syncerOptions
	o.logger = v.log
	o.checkpointStore = &validatorStore{v: v, syncer: mainStore}
	o.fenced, o.epoch = false, 0
	// Its reading is not the syncer's: no metrics.
	o.inst, o.metrics = nil, metricsOptions{}
	base := t.opts.readerFactory
	up := t.up
	up.ServerID = 0 // a replica id of its own, picked at connection
	gate := func() streamer.Position { return s.Status().Checkpoint }
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var reached atomic.Bool // the reader is past until
	o.readerFactory = func(ctx context.Context, pos streamer.Position) (streamer.Reader, error) {
		var r streamer.Reader
		var err error
		if base != nil {
			r, err = base(ctx, pos)
		} else {
			r, err = streamer.NewRemoteReader(up, pos, append([]streamer.RemoteOption{streamer.WithLogger(v.log), streamer.WithRetryFirstConnect()}, o.remoteOpts...)...)
		}
		if err != nil {
			return nil, err
		}
		return &gatedReader{Reader: r, applied: gate, until: until, reached: &reached}, nil
	}
	inner, err := newSyncer(scfg, &validatorSink{v}, o)
	if err != nil {
		return err
	}
	if !until.IsZero() {
		// Stop the inner syncer once it has read (and so, stopping,
		// applies) every event up to until, or has stored a checkpoint
		// there.
		go func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-rctx.Done():
					return
				case <-tick.C:
				}
				v.mu.Lock()
				at := v.lastRead.Pos.Compare(until) >= 0
				v.mu.Unlock()
				if at || reached.Load() {
					rcancel()
					return
				}
			}
		}()
	}
	err = inner.Run(rctx)
	if ctx.Err() == nil && rctx.Err() != nil && err == nil {
		return nil // until reached
	}
	return err
}

// validatorStore is the inner syncer's checkpoint store: Load reads the
// validator's checkpoint, Save records how far the validator has read (the
// validator stores it itself once every row before it is checked).
type validatorStore struct {
	v      *validator
	syncer CheckpointStore // the syncer's, where the validator starts
}

// Load returns the validator's checkpoint or, before it has one, the
// syncer's: a position and the schema the syncer tracked at it, which
// belong together. (The upstream's schema of now does not belong to a
// position in the past: replaying a DDL it already holds fails.) It waits
// until the syncer has stored one.
func (s *validatorStore) Load(ctx context.Context, task, source string) (Checkpoint, bool, error) {
	cp, found, err := s.v.load(ctx, task, source)
	if err != nil || found || s.syncer == nil {
		return cp, found, err
	}
	v := s.v
	v.mu.Lock()
	cp, found = v.lastRead, v.readSet && len(v.lastRead.Schema) > 0 && !v.lastRead.Pos.IsZero()
	v.mu.Unlock()
	if found {
		// Nothing stored yet, but the validator has taken changes (from
		// the syncer's feed, or an earlier reader) up to there: the
		// rows before it are held.
		return cp, true, nil
	}
	for {
		cp, found, err := s.syncer.Load(ctx, task, source)
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("validator: the syncer's checkpoint: %w", err)
		}
		if found && len(cp.Schema) > 0 && len(cp.Snapshot) == 0 {
			cp.Epoch, cp.SafeUntil = 0, streamer.Position{}
			cp.Pos, cp.Snapshot = cp.Pos.Clone(), nil
			v.mu.Lock()
			v.lastRead, v.readSet = cp, true
			v.mu.Unlock()
			v.log.Info("validation starts at the syncer's checkpoint", slog.String("pos", cp.Pos.String()))
			return cp, true, nil
		}
		select {
		case <-ctx.Done():
			return Checkpoint{}, false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *validatorStore) Save(_ context.Context, cp Checkpoint) error {
	v := s.v
	v.mu.Lock()
	defer v.mu.Unlock()
	if cp.Schema == nil {
		cp.Schema = v.lastRead.Schema
	}
	cp.Pos = cp.Pos.Clone()
	v.lastRead, v.readSet = cp, true
	return nil
}

// validatorSink takes the inner syncer's changes.
type validatorSink struct{ v *validator }

func (s *validatorSink) Apply(ctx context.Context, b *Batch) error {
	v := s.v
	for _, c := range b.Changes {
		rows := heldRowsOf(&c)
		var need int64
		for _, r := range rows {
			need += r.bytes
		}
		for v.over(need) {
			// The memory budget is taken: check what is held, spilling
			// what differs, before holding more.
			if err := v.pass(ctx, true); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				v.setErr(err)
				return Retryable(err)
			}
			if v.over(need) {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(v.interval):
				}
			}
		}
		v.holdRows(rows)
	}
	return nil
}

func (s *validatorSink) ExecDDL(ctx context.Context, d *DDL) error {
	if d.Schema == "" || addsIndex(d.Query) {
		// A new index changes neither the columns nor the key the rows
		// held are found by: they stay, to be checked with the others.
		return nil
	}
	if createsTable(d.Query) && !s.v.holdsTable(d.Schema, d.Table) {
		// A new table: no row held is of it, none changes.
		return nil
	}
	// Every row held was read before the DDL (and the syncer has applied
	// it): check them now, then forget those of the DDL's table that are
	// left (differing, or not checkable with the new definition).
	if err := s.v.pass(ctx, false); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.v.log.Warn("validation pass before a DDL failed", slog.String("table", d.Schema+"."+d.Table), errAttr(err))
	}
	s.v.dropTable(d.Schema, d.Table)
	// And the spilled rows of the table.
	q, args := "DELETE FROM "+s.v.meta("validator_pending")+" WHERE task = ? AND source = ? AND table_schema = ?", []any{s.v.task, s.v.source, d.Schema}
	if d.Table != "" {
		q += " AND table_name = ?"
		args = append(args, d.Table)
	}
	if _, err := s.v.db.ExecContext(ctx, q, args...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.v.log.Warn("dropping the spilled rows of a table a DDL changes failed", slog.String("table", d.Schema+"."+d.Table), errAttr(err))
	}
	return nil
}

// addsIndex reports whether query is CREATE [UNIQUE] INDEX (a leading
// comment aside).
func addsIndex(query string) bool {
	f := leadingWords(query)
	if len(f) < 2 || f[0] != "CREATE" {
		return false
	}
	if f[1] == "UNIQUE" {
		f = f[1:]
	}
	return len(f) >= 2 && f[1] == "INDEX"
}

// createsTable reports whether query is CREATE [OR REPLACE] TABLE (a
// leading comment aside).
func createsTable(query string) bool {
	f := leadingWords(query)
	if len(f) >= 3 && f[0] == "CREATE" && f[1] == "OR" && f[2] == "REPLACE" {
		f = append(f[:1], f[3:]...)
	}
	return len(f) >= 2 && f[0] == "CREATE" && f[1] == "TABLE"
}

// leadingWords returns the first words of query in upper case, leading
// comments skipped (none when a comment is not closed).
func leadingWords(query string) []string {
	q := strings.TrimSpace(query)
	for strings.HasPrefix(q, "/*") {
		i := strings.Index(q, "*/")
		if i < 0 {
			return nil
		}
		q = strings.TrimSpace(q[i+2:])
	}
	return strings.Fields(strings.ToUpper(q[:min(len(q), 40)]))
}

// holdsTable reports whether a row of the table (any of the schema's with
// table "") is held.
func (v *validator) holdsTable(schema, table string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range v.rows {
		if r.table.Schema == schema && (table == "" || r.table.Name == table) {
			return true
		}
	}
	return false
}

// gatedReader holds back each rows event until the syncer's checkpoint has
// passed it: the validator never checks a change the syncer has not applied.
// With until set, it holds back every event past until, and sets reached.
type gatedReader struct {
	streamer.Reader
	applied func() streamer.Position
	held    *streamer.Event // read, not yet released (ctx ended while waiting)
	until   streamer.Position
	reached *atomic.Bool
}

func (g *gatedReader) GetEvent(ctx context.Context) (*streamer.Event, error) {
	ev := g.held
	if ev == nil {
		var err error
		if ev, err = g.Reader.GetEvent(ctx); err != nil {
			return ev, err
		}
	}
	g.held = nil
	if !g.until.IsZero() && ev.Pos.Compare(g.until) > 0 {
		g.held = ev
		g.reached.Store(true)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if !isRowsEvent(ev) {
		return ev, nil
	}
	for g.applied().Compare(ev.Pos) < 0 {
		select {
		case <-ctx.Done():
			g.held = ev
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return ev, nil
}

// MarshalJSON writes the status with LastError as text.
func (s ValidatorStatus) MarshalJSON() ([]byte, error) {
	type plain ValidatorStatus
	return json.Marshal(struct {
		plain
		LastError string `json:",omitempty"`
	}{plain(s), errorText(s.LastError)})
}
