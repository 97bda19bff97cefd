package schema

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	perrors "github.com/pingcap/errors"
)

// Tracker holds the definitions of tables as DDL shapes them. Names are
// case-sensitive (as MariaDB on Linux with lower_case_table_names=0). It is
// safe for concurrent use; definitions it returns are immutable.
type Tracker struct {
	mu     sync.RWMutex
	tables map[TableName]*TableDef
	dbs    map[string]dbDef
}

// dbDef is what the tracker knows of a database.
type dbDef struct {
	Charset   string `json:"charset,omitempty"`
	Collation string `json:"collation,omitempty"`
}

// Result says what Apply did.
type Result struct {
	// Kind is the kind of the query's first statement (see Stmt.Kind).
	Kind string
	// Ignored is true when no statement of the query shapes tables.
	Ignored bool
	// Changed lists the tables whose definition changed (created, altered,
	// dropped; both names of a rename), and for database statements the
	// database (Name empty), in statement order.
	Changed []TableName
}

// New returns an empty tracker.
func New() *Tracker {
	return &Tracker{tables: map[TableName]*TableDef{}, dbs: map[string]dbDef{}}
}

// Table returns the definition of schema.name, and false when the tracker
// does not know the table.
func (t *Tracker) Table(schema, name string) (*TableDef, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	d, ok := t.tables[TableName{schema, name}]
	return d, ok
}

// Database returns the default character set and collation of a database
// ("" when unknown: the database was never seen created, or its DDL did not
// say), and false when the tracker does not know the database.
func (t *Tracker) Database(name string) (charset, collation string, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	d, ok := t.dbs[name]
	return d.Charset, d.Collation, ok
}

// Tables returns the names of all tracked tables, sorted.
func (t *Tracker) Tables() []TableName {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]TableName, 0, len(t.tables))
	for n := range t.tables {
		out = append(out, n)
	}
	slices.SortFunc(out, compareNames)
	return out
}

func compareNames(a, b TableName) int {
	return cmp.Or(cmp.Compare(a.Schema, b.Schema), cmp.Compare(a.Name, b.Name))
}

// CreateFromSQL seeds the tracker from the output of SHOW CREATE TABLE
// (usually without a schema, hence defaultSchema) or SHOW CREATE DATABASE.
// It replaces whatever definition the tracker had for that table or
// database.
func (t *Tracker) CreateFromSQL(defaultSchema, createSQL string) error {
	stmts, err := Split(defaultSchema, createSQL)
	if err != nil {
		return err
	}
	if len(stmts) != 1 || (stmts[0].Kind != KindCreateTable && stmts[0].Kind != KindCreateDatabase) || !stmts[0].Like.IsZero() {
		return unsupported(createSQL, "not a single CREATE TABLE with columns or CREATE DATABASE")
	}
	s := stmts[0]
	t.mu.Lock()
	defer t.mu.Unlock()
	tx := t.begin()
	if s.Kind == KindCreateTable {
		tx.put(s.Table, nil)
	} else {
		tx.dbs[s.Table.Schema] = nil
	}
	if _, err := tx.apply(&s); err != nil {
		return err
	}
	tx.commit()
	return nil
}

// Apply parses query and applies it, atomically: when one of its statements
// fails, none is applied. Statements that do not shape tables are ignored
// (Result.Ignored). The error wraps ErrUnsupportedDDL for statements the
// tracker cannot parse or apply and ErrUnknownTable for changes to tables it
// does not know; see Split.
func (t *Tracker) Apply(defaultSchema, query string) (Result, error) {
	stmts, err := Split(defaultSchema, query)
	if err != nil {
		return Result{}, err
	}
	return t.ApplyStmts(stmts...)
}

// ApplyStmts applies statements from Split (for example those a filter
// kept), atomically, as Apply does.
func (t *Tracker) ApplyStmts(stmts ...Stmt) (Result, error) {
	var r Result
	r.Ignored = true
	if len(stmts) > 0 {
		r.Kind = stmts[0].Kind
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tx := t.begin()
	for i := range stmts {
		if stmts[i].Ignored {
			continue
		}
		r.Ignored = false
		changed, err := tx.apply(&stmts[i])
		if err != nil {
			return Result{}, err
		}
		r.Changed = append(r.Changed, changed...)
	}
	tx.commit()
	return r, nil
}

// txn stages a query's changes so that a failure leaves the tracker as it
// was.
type txn struct {
	t      *Tracker
	tables map[TableName]*TableDef // nil value: dropped
	dbs    map[string]*dbDef       // nil value: dropped
	// dropped schemas: tables under them are gone unless staged again.
	droppedDBs map[string]bool
}

func (t *Tracker) begin() *txn {
	return &txn{t: t, tables: map[TableName]*TableDef{}, dbs: map[string]*dbDef{}, droppedDBs: map[string]bool{}}
}

func (x *txn) get(n TableName) *TableDef {
	if d, ok := x.tables[n]; ok {
		return d
	}
	if x.droppedDBs[n.Schema] {
		return nil
	}
	return x.t.tables[n]
}

func (x *txn) put(n TableName, d *TableDef) { x.tables[n] = d }

// each calls f for every table as the transaction sees it, in no
// particular order. f may put.
func (x *txn) each(f func(TableName, *TableDef)) {
	var names []TableName
	for n, d := range x.tables {
		if d != nil {
			names = append(names, n)
		}
	}
	for n := range x.t.tables {
		if _, staged := x.tables[n]; !staged && !x.droppedDBs[n.Schema] {
			names = append(names, n)
		}
	}
	for _, n := range names {
		f(n, x.get(n))
	}
}

func (x *txn) db(name string) (dbDef, bool) {
	if d, ok := x.dbs[name]; ok {
		if d == nil {
			return dbDef{}, false
		}
		return *d, true
	}
	d, ok := x.t.dbs[name]
	return d, ok
}

func (x *txn) dropDB(name string) {
	x.dbs[name] = nil
	x.droppedDBs[name] = true
	for n := range x.tables {
		if n.Schema == name {
			delete(x.tables, n)
		}
	}
}

func (x *txn) commit() {
	t := x.t
	for name := range x.droppedDBs {
		for n := range t.tables {
			if n.Schema == name {
				delete(t.tables, n)
			}
		}
	}
	for name, d := range x.dbs {
		if d == nil {
			delete(t.dbs, name)
		} else {
			t.dbs[name] = *d
		}
	}
	for n, d := range x.tables {
		if d == nil {
			delete(t.tables, n)
		} else {
			t.tables[n] = d
		}
	}
}

// snapshotVersion is the version of the Marshal format. Change it, and keep
// reading the old one, when the format changes.
const snapshotVersion = 1

type snapshot struct {
	Version   int              `json:"version"`
	Databases map[string]dbDef `json:"databases,omitempty"`
	Tables    []*TableDef      `json:"tables"`
}

// Marshal encodes every database and table the tracker knows, to store with
// a checkpoint. The encoding is JSON, deterministic for a given state.
func (t *Tracker) Marshal() ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := snapshot{Version: snapshotVersion, Databases: t.dbs, Tables: make([]*TableDef, 0, len(t.tables))}
	for _, d := range t.tables {
		s.Tables = append(s.Tables, d)
	}
	slices.SortFunc(s.Tables, func(a, b *TableDef) int { return compareNames(a.QualifiedName(), b.QualifiedName()) })
	b, err := json.Marshal(s)
	return b, perrors.WithStack(err)
}

// Unmarshal decodes what Marshal encoded into a new Tracker. It checks the
// definitions for consistency (known columns in indexes, no duplicates).
func Unmarshal(data []byte) (*Tracker, error) {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, perrors.Annotate(err, "schema: decode tracker state")
	}
	if s.Version != snapshotVersion {
		return nil, perrors.Errorf("schema: tracker state version %d, want %d", s.Version, snapshotVersion)
	}
	t := New()
	for name, d := range s.Databases {
		t.dbs[name] = d
	}
	for _, d := range s.Tables {
		if d == nil {
			return nil, perrors.New("schema: tracker state holds a null table")
		}
		if err := d.validate(); err != nil {
			return nil, perrors.Annotate(err, "schema: tracker state")
		}
		n := d.QualifiedName()
		if _, dup := t.tables[n]; dup {
			return nil, perrors.Errorf("schema: tracker state holds table %s twice", n)
		}
		d.finish()
		t.tables[n] = d
	}
	return t, nil
}

// validate checks a decoded definition.
func (d *TableDef) validate() error {
	if d.Schema == "" || d.Name == "" {
		return fmt.Errorf("table %s: empty name", d.QualifiedName())
	}
	if len(d.Columns) == 0 {
		return fmt.Errorf("table %s: no columns", d.QualifiedName())
	}
	for i, c := range d.Columns {
		if c.Name == "" || c.Type == "" {
			return fmt.Errorf("table %s: column %d without a name or type", d.QualifiedName(), i)
		}
		if d.Column(c.Name) != i {
			return fmt.Errorf("table %s: column %s twice", d.QualifiedName(), quoteName(c.Name))
		}
	}
	for i, fk := range d.ForeignKeys {
		if fk.Name == "" || fk.RefSchema == "" || fk.RefTable == "" || len(fk.Columns) == 0 || len(fk.Columns) != len(fk.RefColumns) {
			return fmt.Errorf("table %s: foreign key %d incomplete", d.QualifiedName(), i)
		}
		for _, c := range fk.Columns {
			if d.Column(c) < 0 {
				return fmt.Errorf("table %s: foreign key %s on unknown column %s", d.QualifiedName(), quoteName(fk.Name), quoteName(c))
			}
		}
	}
	primaries := 0
	for i, ix := range d.Indexes {
		if ix.Name == "" || len(ix.Columns) == 0 {
			return fmt.Errorf("table %s: index %d without a name or columns", d.QualifiedName(), i)
		}
		if d.index(ix.Name) != i {
			return fmt.Errorf("table %s: index %s twice", d.QualifiedName(), quoteName(ix.Name))
		}
		if ix.Primary {
			primaries++
		}
		for _, c := range ix.Columns {
			if c != "" && d.Column(c) < 0 {
				return fmt.Errorf("table %s: index %s on unknown column %s", d.QualifiedName(), quoteName(ix.Name), quoteName(c))
			}
		}
	}
	if primaries > 1 {
		return fmt.Errorf("table %s: several primary keys", d.QualifiedName())
	}
	return nil
}

// UnmarshalTableDef decodes one definition encoded as JSON (as Marshal
// encodes each table), checks it as Unmarshal does and derives its keys.
func UnmarshalTableDef(data []byte) (*TableDef, error) {
	var d TableDef
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, perrors.Annotate(err, "schema: decode table definition")
	}
	if err := d.validate(); err != nil {
		return nil, perrors.Annotate(err, "schema: table definition")
	}
	d.finish()
	return &d, nil
}
