package sinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/dmworker/dmworker"
)

// ErrDuplicateKey is returned (wrapped) by MemSink for a normal-mode insert
// or update that would give two rows the same primary or unique key, as MySQL
// would refuse it. It is not retryable: outside safe mode it means the
// changes were applied twice or out of order.
var ErrDuplicateKey = errors.New("sinktest: duplicate key")

// ErrBadChange is returned (wrapped) by MemSink for a change that breaks the
// contract: no table, a row of the wrong length, a value of the wrong Go type,
// a missing image.
var ErrBadChange = errors.New("sinktest: change breaks the Sink contract")

// MemSink is an in-memory dmworker.Sink and dmworker.CheckpointSink for
// tests. The zero value is ready to use (NewMemSink returns one too), and it
// is safe for concurrent use.
//
// Tables are created on first use from Change.Table and named by its Schema
// and Name. A row is identified, for updates and deletes, by the primary key
// when the table has one, else by the first unique key none of whose columns
// is NULL in the row, else by all its columns but generated ones, rows then
// being a multiset (a delete removes one of several equal rows). Values are
// compared exactly, by Go type and value: unlike MySQL, no collation makes
// 'a' equal 'A'.
//
// Batches follow the contract: all or nothing; in normal mode an insert, or
// an update, that collides with another row on the primary key or on a unique
// key without NULLs fails with ErrDuplicateKey; in safe mode an insert
// replaces the rows it collides with (for a table without keys: one equal
// row), and an update deletes the old row and replaces with the new one. An
// update or delete that finds no row does nothing (as in MySQL); in normal
// mode it is recorded, see Unmatched. Every value must have the Go type the
// contract gives its column (see CheckRow), or the batch fails with
// ErrBadChange.
//
// When a table's columns change (a Change.Table with other column names),
// the stored rows are carried over by column name: new columns are NULL,
// dropped ones are gone, as after an ALTER TABLE.
//
// ExecDDL records the DDL (see DDLs) and, for DROP TABLE, TRUNCATE TABLE and
// DROP DATABASE, drops or empties the tables the statement names; other
// statements do not touch rows. The statement is read with simple string
// matching, not a SQL parser: one statement, names bare or in backquotes,
// unqualified names in DDL.Schema.
//
// DDL.SafeMode changes nothing: MemSink does not check DDLs, so running one
// twice never fails.
//
// Foreign keys are not kept: MemSink neither checks them nor runs their
// ON DELETE / ON UPDATE actions, and writes tables with
// dmworker.Table.CheckForeignKeys like any other. A syncer test whose
// upstream tables have foreign keys that cascade or set NULL needs a sink
// that keeps them (mysqlsink).
//
// Checkpoints are fenced by epoch: a batch, DDL or checkpoint carrying a
// checkpoint whose Epoch is lower than the one stored for its task and source
// fails with dmworker.ErrStaleEpoch and changes nothing. A checkpoint with a
// nil Schema keeps the schema stored before, as the contract says; its
// Snapshot is stored as given (nil clears it).
type MemSink struct {
	mu          sync.Mutex
	tables      map[tableKey]*memTable
	ddls        []dmworker.DDL
	checkpoints map[cpKey]dmworker.Checkpoint
	failures    []error
	unmatched   []string
}

var _ dmworker.CheckpointSink = (*MemSink)(nil)

// NewMemSink returns an empty MemSink.
func NewMemSink() *MemSink { return &MemSink{} }

type tableKey struct{ schema, name string }

func (k tableKey) String() string { return k.schema + "." + k.name }

type cpKey struct{ task, source string }

// memTable is one table: the latest layout seen and its rows, each aligned
// with cols. Stored rows are never modified in place, so copying the rows
// slice is enough to stage changes.
type memTable struct {
	name tableKey
	cols []dmworker.Column
	pk   []int
	uks  [][]int
	rows [][]any
}

func (t *memTable) clone() *memTable {
	c := *t
	c.rows = slices.Clone(t.rows)
	return &c
}

// adapt takes tbl's layout, carrying the rows over by column name when the
// columns changed.
func (t *memTable) adapt(tbl *dmworker.Table) {
	defer func() {
		t.cols, t.pk, t.uks = tbl.Columns, tbl.PrimaryKey, tbl.UniqueKeys
	}()
	if len(t.cols) == len(tbl.Columns) {
		same := true
		for i := range t.cols {
			if t.cols[i].Name != tbl.Columns[i].Name {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	old := make(map[string]int, len(t.cols))
	for i, c := range t.cols {
		old[c.Name] = i
	}
	for r, row := range t.rows {
		nrow := make([]any, len(tbl.Columns))
		for i, c := range tbl.Columns {
			if j, ok := old[c.Name]; ok {
				nrow[i] = row[j]
			}
		}
		t.rows[r] = nrow
	}
}

// FailNext makes the next call to Apply, ExecDDL, LoadCheckpoint or
// SaveCheckpoint return err without doing anything. Several calls queue
// their errors, one per later call. Wrap err with dmworker.Retryable to
// simulate a transient fault.
func (s *MemSink) FailNext(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, err)
}

// takeFailure pops the next injected error. The caller holds s.mu.
func (s *MemSink) takeFailure() error {
	if len(s.failures) == 0 {
		return nil
	}
	err := s.failures[0]
	s.failures = s.failures[1:]
	return err
}

// Concurrent reports that Apply may be called from several goroutines at
// once (MemSink serialises them itself).
func (s *MemSink) Concurrent() bool { return true }

// Apply applies the batch atomically; see MemSink for the rules.
func (s *MemSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sinktest: apply: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeFailure(); err != nil {
		return err
	}
	if b == nil {
		return nil
	}
	if b.Checkpoint != nil {
		if err := s.checkEpoch(b.Checkpoint); err != nil {
			return err
		}
	} else if b.Fence.Task != "" {
		if err := s.checkEpoch(&dmworker.Checkpoint{Task: b.Fence.Task, Source: b.Fence.Source, Epoch: b.Fence.Epoch}); err != nil {
			return err
		}
	}
	staged := make(map[tableKey]*memTable)
	var unmatched []string
	for i, c := range b.Changes {
		if err := checkChange(c); err != nil {
			return fmt.Errorf("sinktest: change %d (%s): %w: %v", i, c, ErrBadChange, err)
		}
		k := tableKey{c.Table.Schema, c.Table.Name}
		t, ok := staged[k]
		if !ok {
			if cur, ok := s.tables[k]; ok {
				t = cur.clone()
			} else {
				t = &memTable{name: k}
			}
			staged[k] = t
		}
		t.adapt(c.Table)
		var found bool
		var err error
		switch c.Kind {
		case dmworker.Insert:
			found, err = true, t.insert(c.After, b.SafeMode)
		case dmworker.Update:
			found, err = t.update(c.Before, c.After, b.SafeMode)
		case dmworker.Delete:
			found = t.delete(c.Before)
		}
		if err != nil {
			return fmt.Errorf("sinktest: change %d (%s): %w", i, c, err)
		}
		if !found && !b.SafeMode {
			unmatched = append(unmatched, fmt.Sprintf("change %d (%s): no matching row", i, c))
		}
	}
	if s.tables == nil {
		s.tables = make(map[tableKey]*memTable)
	}
	for k, t := range staged {
		s.tables[k] = t
	}
	s.unmatched = append(s.unmatched, unmatched...)
	if b.Checkpoint != nil {
		s.storeCheckpoint(b.Checkpoint)
	}
	return nil
}

// checkChange checks a change against the contract.
func checkChange(c dmworker.Change) error {
	if err := checkTable(c.Table); err != nil {
		return err
	}
	needBefore := c.Kind == dmworker.Update || c.Kind == dmworker.Delete
	needAfter := c.Kind == dmworker.Insert || c.Kind == dmworker.Update
	if c.Kind < dmworker.Insert || c.Kind > dmworker.Delete {
		return fmt.Errorf("unknown kind")
	}
	if needBefore != (c.Before != nil) || needAfter != (c.After != nil) {
		return fmt.Errorf("before image present: %v, after image present: %v", c.Before != nil, c.After != nil)
	}
	for _, row := range [][]any{c.Before, c.After} {
		if row != nil {
			if err := CheckRow(c.Table, row); err != nil {
				return err
			}
		}
	}
	return nil
}

// keyMatch reports whether rows a and b agree on cols.
func keyMatch(a, b []any, cols []int) bool {
	for _, i := range cols {
		if !valueEqual(a[i], b[i]) {
			return false
		}
	}
	return true
}

// hasNull reports whether row is NULL in one of cols: a unique key then does
// not constrain the row.
func hasNull(row []any, cols []int) bool {
	for _, i := range cols {
		if row[i] == nil {
			return true
		}
	}
	return false
}

// allColumns matches rows by every column but generated ones.
func (t *memTable) allColumns() []int {
	cols := make([]int, 0, len(t.cols))
	for i, c := range t.cols {
		if !c.Generated {
			cols = append(cols, i)
		}
	}
	return cols
}

// identity returns the columns that identify row: the primary key, else the
// first unique key without NULLs in row, else all (non-generated) columns.
func (t *memTable) identity(row []any) []int {
	if len(t.pk) > 0 {
		return t.pk
	}
	for _, uk := range t.uks {
		if len(uk) > 0 && !hasNull(row, uk) {
			return uk
		}
	}
	return t.allColumns()
}

// find returns the index of the row identified by row, or -1.
func (t *memTable) find(row []any) int {
	cols := t.identity(row)
	for i, r := range t.rows {
		if keyMatch(r, row, cols) {
			return i
		}
	}
	return -1
}

// keys returns the primary key and the unique keys.
func (t *memTable) keys() [][]int {
	var keys [][]int
	if len(t.pk) > 0 {
		keys = append(keys, t.pk)
	}
	for _, uk := range t.uks {
		if len(uk) > 0 {
			keys = append(keys, uk)
		}
	}
	return keys
}

// conflicts returns the indexes of the rows, other than skip, that row
// collides with on a key, in increasing order.
func (t *memTable) conflicts(row []any, skip int) []int {
	var out []int
	keys := t.keys()
	for i, r := range t.rows {
		if i == skip {
			continue
		}
		for _, k := range keys {
			if !hasNull(row, k) && keyMatch(r, row, k) {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

func (t *memTable) removeAt(idx ...int) {
	for j := len(idx) - 1; j >= 0; j-- {
		t.rows = slices.Delete(t.rows, idx[j], idx[j]+1)
	}
}

func (t *memTable) insert(row []any, safe bool) error {
	if len(t.keys()) == 0 {
		if safe {
			if i := t.find(row); i >= 0 {
				t.removeAt(i)
			}
		}
		t.rows = append(t.rows, cloneRow(row))
		return nil
	}
	if c := t.conflicts(row, -1); len(c) > 0 {
		if !safe {
			return fmt.Errorf("insert into %s: %w", t.name, ErrDuplicateKey)
		}
		t.removeAt(c...)
	}
	t.rows = append(t.rows, cloneRow(row))
	return nil
}

// update reports whether it found the old row.
func (t *memTable) update(before, after []any, safe bool) (bool, error) {
	i := t.find(before)
	if safe {
		if i >= 0 {
			t.removeAt(i)
		}
		return i >= 0, t.insert(after, true)
	}
	if i < 0 {
		return false, nil
	}
	if len(t.conflicts(after, i)) > 0 {
		return true, fmt.Errorf("update of %s: %w", t.name, ErrDuplicateKey)
	}
	t.rows[i] = cloneRow(after)
	return true, nil
}

// delete reports whether it found the row.
func (t *memTable) delete(before []any) bool {
	i := t.find(before)
	if i >= 0 {
		t.removeAt(i)
	}
	return i >= 0
}

// ExecDDL records the DDL, applies its effect on rows (see MemSink) and
// stores ddl.Checkpoint when set.
func (s *MemSink) ExecDDL(ctx context.Context, ddl *dmworker.DDL) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sinktest: exec ddl: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeFailure(); err != nil {
		return err
	}
	if ddl == nil {
		return fmt.Errorf("sinktest: exec ddl: %w: nil DDL", ErrBadChange)
	}
	if ddl.Checkpoint != nil {
		if err := s.checkEpoch(ddl.Checkpoint); err != nil {
			return err
		}
	}
	rec := *ddl
	if ddl.Checkpoint != nil {
		cp := cloneCheckpoint(*ddl.Checkpoint)
		rec.Checkpoint = &cp
	}
	rec.Pos = ddl.Pos.Clone()
	s.ddls = append(s.ddls, rec)

	eff := parseDDLEffect(ddl.Query, ddl.Schema)
	switch eff.kind {
	case ddlDropTables:
		for _, k := range eff.tables {
			delete(s.tables, k)
		}
	case ddlTruncateTable:
		if t, ok := s.tables[eff.tables[0]]; ok {
			t = t.clone()
			t.rows = nil
			s.tables[eff.tables[0]] = t
		}
	case ddlDropSchema:
		for k := range s.tables {
			if k.schema == eff.schema {
				delete(s.tables, k)
			}
		}
	}
	if ddl.Checkpoint != nil {
		s.storeCheckpoint(ddl.Checkpoint)
	}
	return nil
}

// LoadCheckpoint returns the checkpoint stored for task and source.
func (s *MemSink) LoadCheckpoint(ctx context.Context, task, source string) (dmworker.Checkpoint, bool, error) {
	if err := ctx.Err(); err != nil {
		return dmworker.Checkpoint{}, false, fmt.Errorf("sinktest: load checkpoint: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeFailure(); err != nil {
		return dmworker.Checkpoint{}, false, err
	}
	cp, ok := s.checkpoints[cpKey{task, source}]
	if !ok {
		return dmworker.Checkpoint{}, false, nil
	}
	return cloneCheckpoint(cp), true, nil
}

// SaveCheckpoint stores cp, unless a checkpoint from a newer epoch is
// stored for its task and source (dmworker.ErrStaleEpoch).
func (s *MemSink) SaveCheckpoint(ctx context.Context, cp dmworker.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sinktest: save checkpoint: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.takeFailure(); err != nil {
		return err
	}
	if err := s.checkEpoch(&cp); err != nil {
		return err
	}
	s.storeCheckpoint(&cp)
	return nil
}

// checkEpoch refuses cp when a newer epoch is stored. The caller holds s.mu.
func (s *MemSink) checkEpoch(cp *dmworker.Checkpoint) error {
	if old, ok := s.checkpoints[cpKey{cp.Task, cp.Source}]; ok && old.Epoch > cp.Epoch {
		return fmt.Errorf("sinktest: checkpoint of task %q source %q from epoch %d, stored epoch %d: %w",
			cp.Task, cp.Source, cp.Epoch, old.Epoch, dmworker.ErrStaleEpoch)
	}
	return nil
}

// storeCheckpoint stores a copy of cp; a nil Schema keeps the stored one.
// The caller holds s.mu.
func (s *MemSink) storeCheckpoint(cp *dmworker.Checkpoint) {
	if s.checkpoints == nil {
		s.checkpoints = make(map[cpKey]dmworker.Checkpoint)
	}
	k := cpKey{cp.Task, cp.Source}
	c := cloneCheckpoint(*cp)
	if c.Schema == nil {
		c.Schema = s.checkpoints[k].Schema
	}
	s.checkpoints[k] = c
}

func cloneCheckpoint(cp dmworker.Checkpoint) dmworker.Checkpoint {
	cp.Pos = cp.Pos.Clone()
	cp.SafeUntil = cp.SafeUntil.Clone()
	cp.Schema = bytes.Clone(cp.Schema)
	cp.Snapshot = bytes.Clone(cp.Snapshot)
	return cp
}

// Rows returns a copy of the rows of schema.table in the canonical order of
// SortRows, each value as the contract types it; nil when there is no such
// table.
func (s *MemSink) Rows(schema, table string) [][]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[tableKey{schema, table}]
	if !ok {
		return nil
	}
	rows := make([][]any, len(t.rows))
	for i, r := range t.rows {
		rows[i] = cloneRow(r)
	}
	SortRows(rows)
	return rows
}

// Tables returns the names ("schema.table") of the tables that exist, in
// sorted order: created by a batch and not dropped since.
func (s *MemSink) Tables() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.tables))
	for k := range s.tables {
		names = append(names, k.String())
	}
	slices.Sort(names)
	return names
}

// DDLs returns the DDLs executed so far, in order.
func (s *MemSink) DDLs() []dmworker.DDL {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]dmworker.DDL, len(s.ddls))
	for i, d := range s.ddls {
		if d.Checkpoint != nil {
			cp := cloneCheckpoint(*d.Checkpoint)
			d.Checkpoint = &cp
		}
		d.Pos = d.Pos.Clone()
		out[i] = d
	}
	return out
}

// Unmatched describes, in order, the normal-mode updates and deletes that
// found no row to change. MySQL ignores those silently; outside safe mode
// they usually mean a change was lost or applied out of order, so tests of
// a syncer may want this to stay empty.
func (s *MemSink) Unmatched() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unmatched)
}
