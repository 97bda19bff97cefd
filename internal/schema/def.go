package schema

import (
	"slices"
	"strings"
)

// TableName names a table (or, with Name empty, a schema).
type TableName struct {
	Schema string `json:"schema"`
	Name   string `json:"name,omitempty"`
}

// String is "`schema`.`name`" (or "`schema`"), quoted as MySQL does.
func (n TableName) String() string {
	if n.Name == "" {
		return quoteName(n.Schema)
	}
	return quoteName(n.Schema) + "." + quoteName(n.Name)
}

// IsZero reports whether n is the zero TableName.
func (n TableName) IsZero() bool { return n.Schema == "" && n.Name == "" }

func quoteName(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// TableDef is a table's definition as the tracker knows it. A TableDef handed
// out by a Tracker is never modified afterwards (a DDL replaces it), so it may
// be shared freely; callers must not modify it either.
type TableDef struct {
	Schema  string      `json:"schema"`
	Name    string      `json:"name"`
	Columns []ColumnDef `json:"columns"`
	// Indexes are the table's indexes in definition order, primary key
	// included. PrimaryKey and UniqueKeys are derived from them.
	Indexes []IndexDef `json:"indexes,omitempty"`
	// Charset is the table's default character set when known ("" when it
	// is inherited from a server default the tracker never saw).
	Charset string `json:"charset,omitempty"`
	// ForeignKeys are the table's foreign keys (this table referencing
	// another, or itself), in the order SHOW CREATE TABLE prints them (by
	// name).
	ForeignKeys []ForeignKeyDef `json:"foreign-keys,omitempty"`

	// PrimaryKey holds the positions in Columns of the primary key's
	// columns, in key order; empty when the table has none.
	PrimaryKey []int `json:"-"`
	// UniqueKeys holds, for each unique key other than the primary key, in
	// definition order, the positions of its columns. Keys with an
	// expression part are left out. A unique key with a nullable column
	// does not identify a row (it allows many NULLs): see RowKey.
	UniqueKeys [][]int `json:"-"`
	// PrimaryKeyPrefix and UniqueKeyPrefixes are the Prefixes of the keys
	// of PrimaryKey and UniqueKeys (in the same order): nil for a key whose
	// parts are whole values. Two rows whose values agree on a key's
	// prefixes collide in it.
	PrimaryKeyPrefix  []int   `json:"-"`
	UniqueKeyPrefixes [][]int `json:"-"`
}

// ColumnDef is one column of a TableDef.
type ColumnDef struct {
	Name string `json:"name"`
	// Type is the column type in lower case as SHOW CREATE TABLE prints it
	// on MariaDB: "int(11) unsigned", "decimal(10,2)", "enum('a','b')",
	// "varchar(64)", "datetime(6)", "point".
	Type string `json:"type"`
	// TypeCode is the server's field type (mysql.TypeLong, ...; the parser's
	// mysql.Type* constants, which are the protocol's). ENUM and SET keep
	// their own codes here; see BinlogType for the table-map code.
	TypeCode byte `json:"code"`
	Unsigned bool `json:"unsigned,omitempty"`
	Nullable bool `json:"nullable,omitempty"`
	// Binary is true for BINARY, VARBINARY and BLOB types and for character
	// types with the binary character set: their values are bytes.
	Binary bool `json:"binary,omitempty"`
	// Generated is true for generated (VIRTUAL or STORED/PERSISTENT)
	// columns. MariaDB's row images carry their values like any other
	// column's (checked by TestBinlogColumnsMatchTracker), so they keep
	// their place in Columns; a sink must not write them.
	Generated bool `json:"generated,omitempty"`
	// Invisible is true for MariaDB INVISIBLE columns, which row images
	// also carry.
	Invisible bool `json:"invisible,omitempty"`
	// Charset is the column's character set for character, text, ENUM and
	// SET columns when known ("" otherwise).
	Charset string `json:"charset,omitempty"`
	// Default is the column's DEFAULT clause as the parser restores it,
	// without a character set introducer ("'eu'", "0",
	// "CURRENT_TIMESTAMP()"); "" when it has none, DEFAULT NULL, or the
	// tracker never saw it (definitions stored before it was kept).
	Default    string   `json:"default,omitempty"`
	EnumValues []string `json:"enum,omitempty"`
	SetValues  []string `json:"set,omitempty"`
}

// IndexDef is one index of a table.
type IndexDef struct {
	// Name is the index name; "PRIMARY" for the primary key.
	Name    string `json:"name"`
	Primary bool   `json:"primary,omitempty"`
	Unique  bool   `json:"unique,omitempty"`
	// Columns are the indexed columns' names in key order; "" stands for an
	// expression part.
	Columns []string `json:"columns"`
	// Prefixes holds, in the order of Columns, the length of each column's
	// key part when the index keeps only a prefix of its values
	// (KEY (body(16))): characters for text, bytes for binary strings; 0
	// for a whole value. Nil when no part is a prefix.
	Prefixes []int `json:"prefixes,omitempty"`
}

// ForeignKeyDef is one foreign key: Columns of its table reference
// RefColumns (in the same order) of RefSchema.RefTable. As on the server,
// the reference follows the referenced table and columns through renames,
// and stays when the referenced table is dropped.
type ForeignKeyDef struct {
	// Name is the constraint's name: as given, else the server's
	// <table>_ibfk_<n>.
	Name       string   `json:"name"`
	Columns    []string `json:"columns"`
	RefSchema  string   `json:"ref-schema"`
	RefTable   string   `json:"ref-table"`
	RefColumns []string `json:"ref-columns"`
	// OnDelete and OnUpdate are the referential actions as written:
	// "CASCADE", "SET NULL", "SET DEFAULT", "NO ACTION", "RESTRICT"; ""
	// when none is given, which is RESTRICT.
	OnDelete string `json:"on-delete,omitempty"`
	OnUpdate string `json:"on-update,omitempty"`
}

// Ref returns the referenced table's name.
func (f *ForeignKeyDef) Ref() TableName { return TableName{f.RefSchema, f.RefTable} }

// Acts reports whether deleting a referenced row, or changing its
// referenced columns, changes referencing rows (CASCADE, SET NULL, SET
// DEFAULT) rather than being refused: effects the server carries out
// without writing them to the binlog.
func (f *ForeignKeyDef) Acts() bool { return actionActs(f.OnDelete) || actionActs(f.OnUpdate) }

func actionActs(a string) bool { return a == "CASCADE" || a == "SET NULL" || a == "SET DEFAULT" }

// Column returns the position of the column named name (case-insensitive,
// as MySQL compares column names), or -1.
func (t *TableDef) Column(name string) int {
	for i := range t.Columns {
		if strings.EqualFold(t.Columns[i].Name, name) {
			return i
		}
	}
	return -1
}

// QualifiedName is the table's name as a TableName.
func (t *TableDef) QualifiedName() TableName { return TableName{t.Schema, t.Name} }

// RowKey returns the positions of the columns that identify a row: the
// primary key, else the first unique key whose columns are all NOT NULL, else
// nil.
func (t *TableDef) RowKey() []int {
	if len(t.PrimaryKey) > 0 {
		return t.PrimaryKey
	}
	for _, k := range t.UniqueKeys {
		ok := true
		for _, i := range k {
			if t.Columns[i].Nullable {
				ok = false
				break
			}
		}
		if ok {
			return k
		}
	}
	return nil
}

// foreignKey returns the position of the foreign key named name
// (case-insensitive, as the server compares constraint names), or -1.
func (t *TableDef) foreignKey(name string) int {
	for i := range t.ForeignKeys {
		if strings.EqualFold(t.ForeignKeys[i].Name, name) {
			return i
		}
	}
	return -1
}

// index returns the position of the index named name (case-insensitive), or
// -1.
func (t *TableDef) index(name string) int {
	for i := range t.Indexes {
		if strings.EqualFold(t.Indexes[i].Name, name) {
			return i
		}
	}
	return -1
}

// clone returns a deep copy of t, for a DDL to change.
func (t *TableDef) clone() *TableDef {
	c := *t
	c.Columns = make([]ColumnDef, len(t.Columns))
	for i, col := range t.Columns {
		col.EnumValues = slices.Clone(col.EnumValues)
		col.SetValues = slices.Clone(col.SetValues)
		c.Columns[i] = col
	}
	c.Indexes = make([]IndexDef, len(t.Indexes))
	for i, idx := range t.Indexes {
		idx.Columns = slices.Clone(idx.Columns)
		idx.Prefixes = slices.Clone(idx.Prefixes)
		c.Indexes[i] = idx
	}
	c.ForeignKeys = slices.Clone(t.ForeignKeys)
	for i := range c.ForeignKeys {
		fk := &c.ForeignKeys[i]
		fk.Columns, fk.RefColumns = slices.Clone(fk.Columns), slices.Clone(fk.RefColumns)
	}
	c.PrimaryKey, c.UniqueKeys, c.PrimaryKeyPrefix, c.UniqueKeyPrefixes = nil, nil, nil, nil
	return &c
}

// finish derives PrimaryKey and UniqueKeys from Indexes, and puts the
// primary key first among the indexes as the server does. It is called on
// every definition before the tracker publishes it.
func (t *TableDef) finish() {
	t.PrimaryKey, t.UniqueKeys, t.PrimaryKeyPrefix, t.UniqueKeyPrefixes = nil, nil, nil, nil
	slices.SortStableFunc(t.ForeignKeys, func(a, b ForeignKeyDef) int { return strings.Compare(a.Name, b.Name) })
	if p := slices.IndexFunc(t.Indexes, func(ix IndexDef) bool { return ix.Primary }); p > 0 {
		pk := t.Indexes[p]
		t.Indexes = slices.Delete(t.Indexes, p, p+1)
		t.Indexes = slices.Insert(t.Indexes, 0, pk)
	}
	for _, ix := range t.Indexes {
		if !ix.Primary && !ix.Unique {
			continue
		}
		pos := make([]int, 0, len(ix.Columns))
		for _, c := range ix.Columns {
			i := -1
			if c != "" {
				i = t.Column(c)
			}
			if i < 0 {
				pos = nil
				break
			}
			pos = append(pos, i)
		}
		if pos == nil {
			continue
		}
		var prefix []int
		if slices.ContainsFunc(ix.Prefixes, func(n int) bool { return n > 0 }) {
			prefix = slices.Clone(ix.Prefixes)
		}
		if ix.Primary {
			t.PrimaryKey, t.PrimaryKeyPrefix = pos, prefix
		} else {
			t.UniqueKeys = append(t.UniqueKeys, pos)
			if prefix != nil && t.UniqueKeyPrefixes == nil {
				t.UniqueKeyPrefixes = make([][]int, len(t.UniqueKeys)-1, len(t.UniqueKeys))
			}
			if t.UniqueKeyPrefixes != nil {
				t.UniqueKeyPrefixes = append(t.UniqueKeyPrefixes, prefix)
			}
		}
	}
}
