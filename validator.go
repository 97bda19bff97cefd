package dmworker

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// DefaultValidationSchema is the downstream schema of the validator's
	// tables (mysqlsink's default checkpoint schema).
	DefaultValidationSchema = "dmworker_meta"
)

// ValidationConfig configures a subtask's continuous validator
// (SubTaskConfig.Validation).
//
// The validator runs beside the syncer while the syncer unit runs (it
// pauses, resumes and stops with the subtask). It reads the same binlog
// with its own reader, from the same reader factory (the relay, or the
// upstream), through the same filters and routes, never ahead of the
// syncer's checkpoint: a change is checked only once the syncer has applied
// it. It keeps the latest image of each changed row by its primary key (or
// a unique key of NOT NULL columns; tables with neither are not validated)
// and checks the rows it holds against the downstream in batches, by key
// (SELECT ... WHERE (key) IN (...)), about every second, and at once when
// they take MemoryBytes: it reads no further until it has checked them.
//
// A row that differs is checked again at every pass; once it has differed
// for longer than RowErrorDelay it is recorded as an error row in
// <MetaSchema>.validator_errors (task, source, table, key, upstream and
// downstream images as JSON, first and last seen) and leaves memory; an
// error row is checked again at every pass too, and deleted when the row
// has converged. When a DDL changes a table, the rows held are checked
// first; those of its table that still differ are then dropped (the table
// is validated again from its next change).
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
	// MemoryBytes bounds the rows held (estimated from their values):
	// when they take it, they are checked before anything more is read.
	// Rows that still differ stay until they converge or become error
	// rows. Default 64 MiB.
	MemoryBytes int64 `json:"memory-bytes,omitempty" toml:"memory-bytes"`
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
	if c.MetaSchema == "" {
		c.MetaSchema = DefaultValidationSchema
	}
	switch {
	case c.RowErrorDelay < 0:
		return fmt.Errorf("validation row error delay %s must not be negative", time.Duration(c.RowErrorDelay))
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
	// Pending is how many rows are held: not checked yet, or differing
	// for less than the row error delay. PendingBytes is their estimate.
	Pending      int
	PendingBytes int64
	// Checked counts the row checks done (a row checked again counts
	// again).
	Checked int64
	// Differing is how many held rows differed at their last check.
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

// vrow is a row the validator holds: the latest image of a changed row.
type vrow struct {
	id      string // table and key
	table   *Table
	key     []int // column indexes of the key
	image   []any // nil: deleted upstream
	keyVals []any
	bytes   int64
	version uint64
	checked bool
	// firstDiff and lastDiff are when it first and last differed; zero
	// while it has not.
	firstDiff, lastDiff time.Time
	down                []any // downstream image at the last check (nil: missing)
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
	bytes     int64 // of rows not yet checked
	heldBytes int64
	version   uint64
	lastRead  Checkpoint // what the inner syncer stored last (schema merged)
	readSet   bool
	errIDs    map[string]bool // ids with an error row
	st        ValidatorStatus
	tablesOK  atomic.Bool
}

func newValidator(cfg ValidationConfig, task, source string, db *sql.DB, log *slog.Logger) *validator {
	iv := time.Second
	if d := time.Duration(cfg.RowErrorDelay) / 4; d < iv {
		iv = max(d, 50*time.Millisecond)
	}
	return &validator{cfg: cfg, task: task, source: source, db: db, interval: iv,
		log:  log.With(slog.String("component", "validator")),
		rows: map[string]*vrow{}, errIDs: map[string]bool{}, st: ValidatorStatus{Mode: cfg.Mode}}
}

func (v *validator) status() ValidatorStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.st
	st.Pending, st.PendingBytes = len(v.rows), v.heldBytes
	st.Differing = 0
	for _, r := range v.rows {
		if !r.firstDiff.IsZero() {
			st.Differing++
		}
	}
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

func (r *vrow) saved() savedRow {
	s := savedRow{Table: r.table, Key: r.key, KeyVals: encodeValues(r.keyVals), Deleted: r.image == nil, FirstDiff: r.firstDiff, LastDiff: r.lastDiff}
	if r.image != nil {
		s.Image = encodeValues(r.image)
	}
	return s
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
	r := &vrow{table: s.Table, key: s.Key, keyVals: decodeValues(s.KeyVals), image: img, checked: true, firstDiff: s.FirstDiff, lastDiff: s.LastDiff}
	return r, nil
}

// loadState reads the stored checkpoint and puts its pending rows back.
func (v *validator) load(ctx context.Context, task, source string) (Checkpoint, bool, error) {
	if err := v.ensureTables(ctx); err != nil {
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
	if r.keyVals == nil {
		r.keyVals = pick(r.image, r.key)
	}
	if r.id == "" {
		r.id = rowID(r.table, r.keyVals)
	}
	r.bytes = int64(64+len(r.id)) + valuesSize(r.image)
	v.version++
	r.version = v.version
	if old, ok := v.rows[r.id]; ok {
		if !old.checked {
			v.bytes -= old.bytes
		}
		v.heldBytes -= old.bytes
		if r.firstDiff.IsZero() {
			r.firstDiff, r.lastDiff = old.firstDiff, old.lastDiff
		}
	}
	v.rows[r.id] = r
	if !r.checked {
		v.bytes += r.bytes
	}
	v.heldBytes += r.bytes
}

func valuesSize(vals []any) int64 {
	n := int64(16 * len(vals))
	for _, x := range vals {
		switch x := x.(type) {
		case string:
			n += int64(len(x))
		case []byte:
			n += int64(len(x))
		}
	}
	return n
}

// rowID names a row: its table and key values.
func rowID(t *Table, key []any) string {
	b, _ := json.Marshal(encodeValues(key))
	return t.Schema + "\x00" + t.Name + "\x00" + string(b)
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
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, c := range changes {
		key := keyOf(c.Table)
		if key == nil {
			continue
		}
		switch c.Kind {
		case Insert:
			v.hold(&vrow{table: c.Table, key: key, image: c.After})
		case Delete:
			v.hold(&vrow{table: c.Table, key: key, keyVals: pick(c.Before, key)})
		case Update:
			if before := pick(c.Before, key); !sameKey(before, pick(c.After, key)) {
				v.hold(&vrow{table: c.Table, key: key, keyVals: before})
			}
			v.hold(&vrow{table: c.Table, key: key, image: c.After})
		}
	}
}

func pick(vals []any, idx []int) []any {
	out := make([]any, len(idx))
	for i, k := range idx {
		out[i] = vals[k]
	}
	return out
}

func sameKey(a, b []any) bool {
	x, _ := json.Marshal(encodeValues(a))
	y, _ := json.Marshal(encodeValues(b))
	return string(x) == string(y)
}

// full reports whether the unchecked rows take the memory budget.
func (v *validator) full() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bytes >= v.cfg.MemoryBytes
}

// dropTable forgets the rows held of a table a DDL changes.
func (v *validator) dropTable(schema, table string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for id, r := range v.rows {
		if r.table.Schema == schema && (table == "" || r.table.Name == table) {
			if !r.checked {
				v.bytes -= r.bytes
			}
			v.heldBytes -= r.bytes
			delete(v.rows, id)
		}
	}
}

// errorID is the hash keying an error row.
func errorHash(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// pass checks every row held and the recorded error rows, records the rows
// that differed too long, clears those that converged, and stores the
// checkpoint when no row is left unchecked.
func (v *validator) pass(ctx context.Context) error {
	v.checkMu.Lock()
	defer v.checkMu.Unlock()
	if err := v.ensureTables(ctx); err != nil {
		return err
	}
	v.mu.Lock()
	var todo []*vrow
	held := map[string]bool{}
	for _, r := range v.rows {
		todo = append(todo, r)
		held[r.id] = true
	}
	v.mu.Unlock()
	// The error rows recorded, unless a newer image is held.
	errRows, err := v.loadErrorRows(ctx)
	if err != nil {
		return err
	}
	for _, r := range errRows {
		if !held[r.id] {
			todo = append(todo, r)
		}
	}
	results, checkErr := v.check(ctx, todo)
	now := time.Now()
	var toRecord []*vrow
	var toClear []string
	v.mu.Lock()
	for _, r := range todo {
		res, ok := results[r]
		if !ok {
			continue
		}
		v.st.Checked++
		fromErrors := !held[r.id]
		cur := v.rows[r.id]
		current := cur == r // not replaced by a newer image meanwhile
		if res.equal {
			if v.errIDs[r.id] {
				toClear = append(toClear, r.id)
			}
			if current {
				v.release(r)
			}
			continue
		}
		if r.firstDiff.IsZero() {
			r.firstDiff = now
		}
		r.lastDiff, r.down = now, res.down
		if !current && !fromErrors {
			if cur != nil && cur.firstDiff.IsZero() {
				cur.firstDiff = r.firstDiff
			}
			continue
		}
		if current && !r.checked {
			r.checked = true
			v.bytes -= r.bytes
		}
		if fromErrors || now.Sub(r.firstDiff) >= time.Duration(v.cfg.RowErrorDelay) {
			toRecord = append(toRecord, r)
			if current {
				v.release(r)
			}
		}
	}
	v.mu.Unlock()
	for _, r := range toRecord {
		if err := v.recordError(ctx, r); err != nil {
			return err
		}
	}
	for _, id := range toClear {
		if _, err := v.db.ExecContext(ctx, "DELETE FROM "+v.meta("validator_errors")+" WHERE task = ? AND source = ? AND key_hash = ?",
			v.task, v.source, errorHash(id)); err != nil {
			return fmt.Errorf("validator: clear error row: %w", err)
		}
		v.mu.Lock()
		delete(v.errIDs, id)
		v.mu.Unlock()
		v.log.Info("a differing row converged", slog.String("row", strings.ReplaceAll(id, "\x00", ".")))
	}
	var n int
	if err := v.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+v.meta("validator_errors")+" WHERE task = ? AND source = ?", v.task, v.source).Scan(&n); err != nil {
		return fmt.Errorf("validator: count error rows: %w", err)
	}
	v.mu.Lock()
	v.st.ErrorRows = n
	v.mu.Unlock()
	if checkErr != nil {
		return checkErr
	}
	return v.persist(ctx)
}

// release forgets r (v.mu held).
func (v *validator) release(r *vrow) {
	if !r.checked {
		v.bytes -= r.bytes
	}
	v.heldBytes -= r.bytes
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
		pending = append(pending, r.saved())
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

// recordError writes (or refreshes) r's error row.
func (v *validator) recordError(ctx context.Context, r *vrow) error {
	state, err := json.Marshal(r.saved())
	if err != nil {
		return err
	}
	key, _ := json.Marshal(displayValues(r.keyVals))
	var up, down any
	if r.image != nil {
		up = imageJSON(r.table, r.image, nil)
	}
	if r.down != nil {
		if v.cfg.Mode == ValidationFast {
			// Only the key is read in mode fast.
			down = imageJSON(r.table, r.down, r.key)
		} else {
			down = imageJSON(r.table, r.down, nil)
		}
	}
	_, err = v.db.ExecContext(ctx, "INSERT INTO "+v.meta("validator_errors")+
		" (task, source, table_schema, table_name, key_hash, row_key, upstream_row, downstream_row, first_seen, last_seen, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"+
		" ON DUPLICATE KEY UPDATE row_key = VALUES(row_key), upstream_row = VALUES(upstream_row), downstream_row = VALUES(downstream_row), last_seen = VALUES(last_seen), state = VALUES(state)",
		v.task, v.source, r.table.Schema, r.table.Name, errorHash(r.id), string(key), up, down,
		r.firstDiff.UTC().Format("2006-01-02 15:04:05.999999"), r.lastDiff.UTC().Format("2006-01-02 15:04:05.999999"), state)
	if err != nil {
		return fmt.Errorf("validator: record error row: %w", err)
	}
	v.mu.Lock()
	isNew := !v.errIDs[r.id]
	v.errIDs[r.id] = true
	v.mu.Unlock()
	if isNew {
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

// loadErrorRows reads the error rows recorded for the task and source.
func (v *validator) loadErrorRows(ctx context.Context) ([]*vrow, error) {
	rs, err := v.db.QueryContext(ctx, "SELECT state FROM "+v.meta("validator_errors")+" WHERE task = ? AND source = ? LIMIT 100000", v.task, v.source)
	if err != nil {
		return nil, fmt.Errorf("validator: read error rows: %w", err)
	}
	defer rs.Close()
	var out []*vrow
	ids := map[string]bool{}
	for rs.Next() {
		var b []byte
		if err := rs.Scan(&b); err != nil {
			return nil, err
		}
		var s savedRow
		if err := json.Unmarshal(b, &s); err != nil {
			continue
		}
		r, err := s.row()
		if err != nil {
			continue
		}
		r.id = rowID(r.table, r.keyVals)
		ids[r.id] = true
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.errIDs = ids
	v.mu.Unlock()
	return out, nil
}

func keyValsOf(r *vrow) []any { return r.keyVals }

// run runs the validator beside the syncer s until ctx ends; its own errors
// are logged and retried, never the subtask's.
func (v *validator) run(ctx context.Context, t *SubTask, cfg SubTaskConfig, s *Syncer) {
	v.mu.Lock()
	v.st.Running = true
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.st.Running = false
		v.mu.Unlock()
	}()
	for ctx.Err() == nil {
		err := v.runOnce(ctx, t, cfg, s)
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

func (v *validator) runOnce(ctx context.Context, t *SubTask, cfg SubTaskConfig, s *Syncer) error {
	if err := v.ensureTables(ctx); err != nil {
		return err
	}
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
		return &gatedReader{Reader: r, applied: gate}, nil
	}
	inner, err := newSyncer(scfg, &validatorSink{v}, o)
	if err != nil {
		return err
	}
	pctx, pcancel := context.WithCancel(ctx)
	passes := make(chan struct{})
	go func() {
		defer close(passes)
		tick := time.NewTicker(v.interval)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			if err := v.pass(pctx); err != nil {
				if pctx.Err() == nil {
					v.setErr(err)
					v.log.Warn("validation pass failed", errAttr(err))
				}
				continue
			}
			v.setErr(nil)
		}
	}()
	err = inner.Run(ctx)
	pcancel()
	<-passes
	// A last pass, so that a stop stores what was checked, within the
	// stop timeout.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), t.opts.stopTimeout)
	if perr := v.pass(fctx); perr != nil && err == nil && ctx.Err() == nil {
		err = perr
	}
	fcancel()
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
	for {
		cp, found, err := s.syncer.Load(ctx, task, source)
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("validator: the syncer's checkpoint: %w", err)
		}
		if found && len(cp.Schema) > 0 && len(cp.Snapshot) == 0 {
			cp.Epoch, cp.SafeUntil = 0, streamer.Position{}
			cp.Pos, cp.Snapshot = cp.Pos.Clone(), nil
			v := s.v
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
	s.v.add(b.Changes)
	for s.v.full() {
		// Check what is held before reading further.
		if err := s.v.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.v.setErr(err)
			return Retryable(err)
		}
		if s.v.full() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(s.v.interval):
			}
		}
	}
	return nil
}

func (s *validatorSink) ExecDDL(ctx context.Context, d *DDL) error {
	if d.Schema == "" {
		return nil
	}
	// Every row held was read before the DDL (and the syncer has applied
	// it): check them now, then forget those of the DDL's table that are
	// left (differing, or not checkable with the new definition).
	if err := s.v.pass(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.v.log.Warn("validation pass before a DDL failed", slog.String("table", d.Schema+"."+d.Table), errAttr(err))
	}
	s.v.dropTable(d.Schema, d.Table)
	return nil
}

// gatedReader holds back each rows event until the syncer's checkpoint has
// passed it: the validator never checks a change the syncer has not applied.
type gatedReader struct {
	streamer.Reader
	applied func() streamer.Position
	held    *streamer.Event // read, not yet released (ctx ended while waiting)
}

func (g *gatedReader) GetEvent(ctx context.Context) (*streamer.Event, error) {
	ev := g.held
	if ev == nil {
		var err error
		if ev, err = g.Reader.GetEvent(ctx); err != nil || !isRowsEvent(ev) {
			return ev, err
		}
	}
	g.held = nil
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
