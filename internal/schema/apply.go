package schema

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/mysql"
)

// apply applies one statement from Split to the transaction and returns the
// names it changed.
//
// The tracker trusts the statement: the upstream ran it successfully, so
// where the tracker's state disagrees (CREATE TABLE over a table it has,
// DROP TABLE of one it lacks, RENAME onto an existing name) the statement
// wins. It refuses only what it cannot do: changing a table it does not know
// (ErrUnknownTable) or a change it cannot make sense of (ErrUnsupportedDDL).
func (x *txn) apply(s *Stmt) ([]TableName, error) {
	fail := func(err error) ([]TableName, error) { return nil, ddlError(ErrUnsupportedDDL, s.Query, err) }
	unknown := func(n TableName) ([]TableName, error) {
		return nil, ddlError(ErrUnknownTable, s.Query, fmt.Errorf("table %s", n))
	}
	switch n := s.node.(type) {
	case *ast.CreateTableStmt:
		if x.get(s.Table) != nil && n.IfNotExists {
			return nil, nil
		}
		var d *TableDef
		if !s.Like.IsZero() {
			src := x.get(s.Like)
			if src == nil {
				return unknown(s.Like)
			}
			d = src.clone()
			d.Schema, d.Name = s.Table.Schema, s.Table.Name
			d.ForeignKeys = nil // LIKE copies no foreign keys
		} else {
			var err error
			if d, err = x.buildTable(s.Table, n); err != nil {
				return fail(err)
			}
		}
		d.finish()
		x.put(s.Table, d)
		return []TableName{s.Table}, nil

	case *ast.AlterTableStmt:
		old := x.get(s.Table)
		if old == nil {
			return unknown(s.Table)
		}
		d := old.clone()
		if err := alterTable(d, n.Specs); err != nil {
			return fail(err)
		}
		changed := []TableName{s.Table}
		if !s.NewTable.IsZero() && s.NewTable != s.Table {
			x.put(s.Table, nil)
			renameForeignKeys(d, s.NewTable.Name)
			d.Schema, d.Name = s.NewTable.Schema, s.NewTable.Name
			changed = append(changed, s.NewTable)
		}
		d.finish()
		x.put(d.QualifiedName(), d)
		return append(changed, x.followReferences(s.Table, d.QualifiedName(), columnRenames(old, n.Specs))...), nil

	case *ast.DropTableStmt:
		if x.get(s.Table) == nil {
			return nil, nil
		}
		x.put(s.Table, nil)
		return []TableName{s.Table}, nil

	case *ast.RenameTableStmt:
		old := x.get(s.Table)
		if old == nil {
			return unknown(s.Table)
		}
		d := old.clone()
		renameForeignKeys(d, s.NewTable.Name)
		d.Schema, d.Name = s.NewTable.Schema, s.NewTable.Name
		d.finish()
		x.put(s.Table, nil)
		x.put(s.NewTable, d)
		return append([]TableName{s.Table, s.NewTable}, x.followReferences(s.Table, s.NewTable, nil)...), nil

	case *ast.TruncateTableStmt:
		return nil, nil

	case *ast.CreateIndexStmt:
		old := x.get(s.Table)
		if old == nil {
			return unknown(s.Table)
		}
		d := old.clone()
		c := &ast.Constraint{
			IfNotExists: n.IfNotExists,
			Tp:          ast.ConstraintIndex,
			Name:        n.IndexName,
			Keys:        n.IndexPartSpecifications,
		}
		if n.KeyType == ast.IndexKeyTypeUnique {
			c.Tp = ast.ConstraintUniq
		}
		if err := addConstraint(d, c); err != nil {
			return fail(err)
		}
		d.finish()
		x.put(s.Table, d)
		return []TableName{s.Table}, nil

	case *ast.DropIndexStmt:
		old := x.get(s.Table)
		if old == nil {
			return unknown(s.Table)
		}
		d := old.clone()
		dropIndex(d, n.IndexName)
		d.finish()
		x.put(s.Table, d)
		return []TableName{s.Table}, nil

	case *ast.CreateDatabaseStmt:
		if _, ok := x.db(s.Table.Schema); ok && n.IfNotExists {
			return nil, nil
		}
		db := dbDef{}
		setDatabaseOptions(&db, n.Options)
		x.dbs[s.Table.Schema] = &db
		return []TableName{s.Table}, nil

	case *ast.DropDatabaseStmt:
		x.dropDB(s.Table.Schema)
		return []TableName{s.Table}, nil

	case *ast.AlterDatabaseStmt:
		db, _ := x.db(s.Table.Schema)
		setDatabaseOptions(&db, n.Options)
		x.dbs[s.Table.Schema] = &db
		return []TableName{s.Table}, nil
	}
	return fail(fmt.Errorf("%s cannot be applied", s.Kind))
}

// setDatabaseOptions applies CREATE/ALTER DATABASE's CHARACTER SET and
// COLLATE to db: a character set alone brings its default collation, a
// collation its character set.
func setDatabaseOptions(db *dbDef, opts []*ast.DatabaseOption) {
	for _, o := range opts {
		switch o.Tp {
		case ast.DatabaseOptionCharset:
			if cs := normCharset(o.Value); cs != db.Charset || db.Collation == "" {
				db.Charset, db.Collation = cs, defaultCollation(cs)
			}
		}
	}
	for _, o := range opts {
		if o.Tp == ast.DatabaseOptionCollate {
			db.Collation = strings.ToLower(o.Value)
			if cs := charsetOfCollation(o.Value); cs != "" {
				db.Charset = cs
			}
		}
	}
}

// buildTable makes a table definition from CREATE TABLE.
func (x *txn) buildTable(name TableName, n *ast.CreateTableStmt) (*TableDef, error) {
	d := &TableDef{Schema: name.Schema, Name: name.Name}
	if db, ok := x.db(name.Schema); ok {
		d.Charset = db.Charset
	}
	for _, o := range n.Options {
		switch o.Tp {
		case ast.TableOptionCharset:
			if !o.Default {
				d.Charset = normCharset(o.StrValue)
			}
		case ast.TableOptionCollate:
			if cs := charsetOfCollation(o.StrValue); cs != "" {
				d.Charset = cs
			}
		}
	}
	if len(n.Cols) == 0 {
		return nil, fmt.Errorf("table %s has no columns", name)
	}
	var colKeys []*ast.Constraint
	for _, cd := range n.Cols {
		col, primary, unique, err := columnFromAST(cd, tableContext{charset: d.Charset})
		if err != nil {
			return nil, err
		}
		if d.Column(col.Name) >= 0 {
			return nil, fmt.Errorf("column %s twice", quoteName(col.Name))
		}
		d.Columns = append(d.Columns, col)
		colKeys = append(colKeys, columnKeys(cd, primary, unique)...)
	}
	for _, c := range colKeys {
		if err := addConstraint(d, c); err != nil {
			return nil, err
		}
	}
	for _, c := range n.Constraints {
		if err := addConstraint(d, c); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// columnKeys turns a column's PRIMARY KEY / UNIQUE options and its
// REFERENCES clause (a foreign key on MariaDB 10.5 and later) into
// constraints.
func columnKeys(cd *ast.ColumnDef, primary, unique bool) []*ast.Constraint {
	key := []*ast.IndexPartSpecification{{Column: cd.Name}}
	var out []*ast.Constraint
	if primary {
		out = append(out, &ast.Constraint{Tp: ast.ConstraintPrimaryKey, Keys: key})
	}
	if unique {
		out = append(out, &ast.Constraint{Tp: ast.ConstraintUniq, Keys: key})
	}
	for _, o := range cd.Options {
		if o.Tp == ast.ColumnOptionReference && o.Refer != nil {
			out = append(out, &ast.Constraint{Tp: ast.ConstraintForeignKey, Keys: key, Refer: o.Refer})
		}
	}
	return out
}

// addConstraint adds an index (PRIMARY KEY, UNIQUE, KEY, FULLTEXT, SPATIAL,
// or the index a FOREIGN KEY needs) to d. CHECK constraints change nothing
// the tracker keeps.
func addConstraint(d *TableDef, c *ast.Constraint) error {
	ix := IndexDef{Name: c.Name}
	switch c.Tp {
	case ast.ConstraintPrimaryKey:
		ix.Name, ix.Primary, ix.Unique = "PRIMARY", true, true
	case ast.ConstraintUniq, ast.ConstraintUniqKey, ast.ConstraintUniqIndex:
		ix.Unique = true
	case ast.ConstraintKey, ast.ConstraintIndex, ast.ConstraintFulltext:
	case ast.ConstraintForeignKey:
	case ast.ConstraintCheck:
		return nil
	default:
		return fmt.Errorf("constraint type %d is not supported", c.Tp)
	}
	prefixes := make([]int, 0, len(c.Keys))
	for _, k := range c.Keys {
		if k.Column == nil || k.Expr != nil {
			ix.Columns = append(ix.Columns, "")
			prefixes = append(prefixes, 0)
			continue
		}
		i := d.Column(k.Column.Name.O)
		if i < 0 {
			return fmt.Errorf("key column %s does not exist", quoteName(k.Column.Name.O))
		}
		ix.Columns = append(ix.Columns, d.Columns[i].Name)
		prefixes = append(prefixes, max(k.Length, 0))
	}
	if slices.ContainsFunc(prefixes, func(n int) bool { return n > 0 }) {
		ix.Prefixes = prefixes
	}
	if len(ix.Columns) == 0 {
		return fmt.Errorf("index without columns")
	}
	if c.Tp == ast.ConstraintForeignKey {
		if added, err := addForeignKey(d, c, ix.Columns); err != nil || !added {
			return err
		}
		// InnoDB needs an index whose leading columns are the foreign
		// key's and creates one, named after the constraint, when none
		// exists.
		for _, other := range d.Indexes {
			if len(other.Columns) >= len(ix.Columns) && slices.EqualFunc(other.Columns[:len(ix.Columns)], ix.Columns, strings.EqualFold) {
				return nil
			}
		}
	}
	if name, spatial := spatialName(ix.Name); spatial {
		ix.Name = name
	}
	if ix.Primary {
		if d.index("PRIMARY") >= 0 {
			return fmt.Errorf("multiple primary keys")
		}
		for _, c := range ix.Columns {
			if i := d.Column(c); i >= 0 {
				d.Columns[i].Nullable = false
			}
		}
	} else if ix.Name == "" {
		ix.Name = autoIndexName(d, ix.Columns[0])
	} else if d.index(ix.Name) >= 0 {
		if c.IfNotExists {
			return nil
		}
		return fmt.Errorf("duplicate index name %s", quoteName(ix.Name))
	}
	d.Indexes = append(d.Indexes, ix)
	return nil
}

// addForeignKey adds the foreign key c on cols (its columns, resolved) to
// d. It reports false when the key exists and c says IF NOT EXISTS.
func addForeignKey(d *TableDef, c *ast.Constraint, cols []string) (bool, error) {
	if c.Refer == nil || c.Refer.Table == nil {
		return false, fmt.Errorf("foreign key without a referenced table")
	}
	fk := ForeignKeyDef{Name: c.Name, Columns: cols, RefSchema: c.Refer.Table.Schema.O, RefTable: c.Refer.Table.Name.O}
	if fk.RefSchema == "" {
		// InnoDB resolves an unqualified referenced table in the
		// referencing table's database.
		fk.RefSchema = d.Schema
	}
	for _, k := range c.Refer.IndexPartSpecifications {
		if k.Column == nil || k.Expr != nil {
			return false, fmt.Errorf("foreign key referencing an expression")
		}
		fk.RefColumns = append(fk.RefColumns, k.Column.Name.O)
	}
	if len(fk.RefColumns) != len(fk.Columns) || slices.Contains(fk.Columns, "") {
		return false, fmt.Errorf("foreign key with %d columns referencing %d", len(fk.Columns), len(fk.RefColumns))
	}
	if c.Refer.OnDelete != nil {
		fk.OnDelete = c.Refer.OnDelete.ReferOpt.String()
	}
	if c.Refer.OnUpdate != nil {
		fk.OnUpdate = c.Refer.OnUpdate.ReferOpt.String()
	}
	if fk.Name == "" {
		// InnoDB's name: <table>_ibfk_<n>, n one more than the highest
		// taken.
		prefix, n := strings.ToLower(d.Name)+"_ibfk_", 0
		for _, other := range d.ForeignKeys {
			if rest, ok := strings.CutPrefix(strings.ToLower(other.Name), prefix); ok {
				if k, err := strconv.Atoi(rest); err == nil && k > n {
					n = k
				}
			}
		}
		fk.Name = d.Name + "_ibfk_" + strconv.Itoa(n+1)
	} else if d.foreignKey(fk.Name) >= 0 {
		if c.IfNotExists {
			return false, nil
		}
		return false, fmt.Errorf("duplicate foreign key name %s", quoteName(fk.Name))
	}
	d.ForeignKeys = append(d.ForeignKeys, fk)
	return true, nil
}

// renameForeignKeys renames d's foreign keys named after it by InnoDB
// (<table>_ibfk_<n>) for the table's new name, as the server does when a
// table is renamed, and points its references to itself at the new name.
func renameForeignKeys(d *TableDef, newName string) {
	prefix := strings.ToLower(d.Name) + "_ibfk_"
	for i := range d.ForeignKeys {
		fk := &d.ForeignKeys[i]
		if rest, ok := strings.CutPrefix(strings.ToLower(fk.Name), prefix); ok {
			if _, err := strconv.Atoi(rest); err == nil {
				fk.Name = newName + "_ibfk_" + rest
			}
		}
	}
}

// columnRenames lists the column renames (old, new) of an ALTER TABLE on
// old, in statement order.
func columnRenames(old *TableDef, specs []*ast.AlterTableSpec) [][2]string {
	var out [][2]string
	for _, spec := range specs {
		var from, to string
		switch spec.Tp {
		case ast.AlterTableChangeColumn:
			if len(spec.NewColumns) == 1 {
				from, to = spec.OldColumnName.Name.O, spec.NewColumns[0].Name.Name.O
			}
		case ast.AlterTableRenameColumn:
			from, to = spec.OldColumnName.Name.O, spec.NewColumnName.Name.O
		}
		if from != "" && from != to && old.Column(from) >= 0 {
			out = append(out, [2]string{from, to})
		}
	}
	return out
}

// followReferences makes the foreign keys that reference from (a table
// renamed to to, or to itself, altered, when equal) follow it: the table's
// new name and its columns' new names (renames, in order), as InnoDB
// keeps them. It returns the tables it changed.
func (x *txn) followReferences(from, to TableName, renames [][2]string) []TableName {
	if from == to && len(renames) == 0 {
		return nil
	}
	var changed []TableName
	x.each(func(n TableName, d *TableDef) {
		var c *TableDef
		for i := range d.ForeignKeys {
			if d.ForeignKeys[i].Ref() != from {
				continue
			}
			if c == nil {
				c = d.clone()
			}
			fk := &c.ForeignKeys[i]
			fk.RefSchema, fk.RefTable = to.Schema, to.Name
			for j, col := range fk.RefColumns {
				for _, r := range renames {
					if strings.EqualFold(col, r[0]) {
						col = r[1]
					}
				}
				fk.RefColumns[j] = col
			}
		}
		if c != nil {
			c.finish()
			x.put(n, c)
			if n != to {
				changed = append(changed, n)
			}
		}
	})
	slices.SortFunc(changed, compareNames)
	return changed
}

// autoIndexName names an unnamed index as MariaDB does: after its first
// column, with _2, _3, ... when taken.
func autoIndexName(d *TableDef, first string) string {
	if first == "" {
		first = "expr"
	}
	name := first
	for n := 2; d.index(name) >= 0 || strings.EqualFold(name, "PRIMARY"); n++ {
		name = first + "_" + strconv.Itoa(n)
	}
	return name
}

// dropIndex removes the index named name ("PRIMARY" for the primary key).
// An index the tracker does not know is ignored: it can only be one the
// tracker does not keep (a foreign key's own index on an older server, say),
// which never identifies rows.
func dropIndex(d *TableDef, name string) {
	if i := d.index(name); i >= 0 {
		d.Indexes = slices.Delete(d.Indexes, i, i+1)
	}
}

// alterTable applies an ALTER TABLE's clauses to d in the server's order:
// first the column clauses in statement order, then the index drops, the
// index renames, and last the index additions (including the keys declared
// inline in added or changed columns), so that an index may name a column
// the same statement adds or renames.
func alterTable(d *TableDef, specs []*ast.AlterTableSpec) error {
	var keys []*ast.Constraint
	for _, spec := range specs {
		switch spec.Tp {
		case ast.AlterTableDropPrimaryKey, ast.AlterTableDropIndex, ast.AlterTableRenameIndex, ast.AlterTableAddConstraint:
			continue
		}
		k, err := alterSpec(d, spec)
		if err != nil {
			return err
		}
		keys = append(keys, k...)
	}
	// The server takes the clauses as one: a statement may drop the only
	// column if it adds another (DROP a, ADD a ...).
	if len(d.Columns) == 0 {
		return fmt.Errorf("cannot drop every column")
	}
	for _, phase := range []ast.AlterTableType{ast.AlterTableDropPrimaryKey, ast.AlterTableRenameIndex, ast.AlterTableAddConstraint} {
		for _, spec := range specs {
			if spec.Tp == phase || phase == ast.AlterTableDropPrimaryKey && spec.Tp == ast.AlterTableDropIndex {
				if _, err := alterSpec(d, spec); err != nil {
					return err
				}
			}
		}
		if phase == ast.AlterTableAddConstraint {
			for _, c := range keys {
				if err := addConstraint(d, c); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// alterSpec applies one ALTER TABLE clause to d. Keys declared inline in
// added or changed columns are returned for the caller to add.
func alterSpec(d *TableDef, spec *ast.AlterTableSpec) (keys []*ast.Constraint, err error) {
	tc := tableContext{charset: d.Charset}
	switch spec.Tp {
	case ast.AlterTableOption:
		for _, o := range spec.Options {
			switch o.Tp {
			case ast.TableOptionCharset:
				if o.Default {
					continue
				}
				cs := normCharset(o.StrValue)
				if o.UintValue == ast.TableOptionCharsetWithConvertTo {
					if err := convertCharset(d, cs); err != nil {
						return nil, err
					}
				}
				d.Charset = cs
			case ast.TableOptionCollate:
				if cs := charsetOfCollation(o.StrValue); cs != "" {
					d.Charset = cs
				}
			}
		}
	case ast.AlterTableAddColumns:
		for _, cd := range spec.NewColumns {
			col, primary, unique, err := columnFromAST(cd, tc)
			if err != nil {
				return nil, err
			}
			if d.Column(col.Name) >= 0 {
				if spec.IfNotExists {
					continue
				}
				return nil, fmt.Errorf("column %s exists", quoteName(col.Name))
			}
			pos := len(d.Columns)
			if len(spec.NewColumns) == 1 {
				if pos, err = position(d, spec.Position, pos); err != nil {
					return nil, err
				}
			}
			d.Columns = slices.Insert(d.Columns, pos, col)
			keys = append(keys, columnKeys(cd, primary, unique)...)
		}
	case ast.AlterTableAddConstraint:
		return nil, addConstraint(d, spec.Constraint)
	case ast.AlterTableDropColumn:
		name := spec.OldColumnName.Name.O
		i := d.Column(name)
		if i < 0 {
			if spec.IfExists {
				return nil, nil
			}
			return nil, fmt.Errorf("column %s does not exist", quoteName(name))
		}
		dropped := d.Columns[i].Name
		d.Columns = slices.Delete(d.Columns, i, i+1)
		// The server refuses to drop a foreign key's column; were it
		// done, the key could not stay.
		d.ForeignKeys = slices.DeleteFunc(d.ForeignKeys, func(fk ForeignKeyDef) bool {
			return slices.ContainsFunc(fk.Columns, func(c string) bool { return strings.EqualFold(c, dropped) })
		})
		// The column leaves every index; an index left without columns
		// goes.
		for j := 0; j < len(d.Indexes); j++ {
			ix := &d.Indexes[j]
			for k := 0; k < len(ix.Columns); k++ {
				if strings.EqualFold(ix.Columns[k], dropped) {
					ix.Columns = slices.Delete(ix.Columns, k, k+1)
					if ix.Prefixes != nil {
						ix.Prefixes = slices.Delete(ix.Prefixes, k, k+1)
					}
					k--
				}
			}
			if len(ix.Columns) == 0 {
				d.Indexes = slices.Delete(d.Indexes, j, j+1)
				j--
			}
		}
	case ast.AlterTableModifyColumn, ast.AlterTableChangeColumn:
		if len(spec.NewColumns) != 1 {
			return nil, fmt.Errorf("MODIFY/CHANGE of %d columns", len(spec.NewColumns))
		}
		cd := spec.NewColumns[0]
		oldName := cd.Name.Name.O
		if spec.Tp == ast.AlterTableChangeColumn {
			oldName = spec.OldColumnName.Name.O
		}
		i := d.Column(oldName)
		if i < 0 {
			if spec.IfExists {
				return nil, nil
			}
			return nil, fmt.Errorf("column %s does not exist", quoteName(oldName))
		}
		col, primary, unique, err := columnFromAST(cd, tc)
		if err != nil {
			return nil, err
		}
		if j := d.Column(col.Name); j >= 0 && j != i {
			return nil, fmt.Errorf("column %s exists", quoteName(col.Name))
		}
		if p := d.index("PRIMARY"); p >= 0 && slices.ContainsFunc(d.Indexes[p].Columns, func(c string) bool { return strings.EqualFold(c, oldName) }) {
			col.Nullable = false // primary key columns stay NOT NULL
		}
		oldCol := d.Columns[i].Name
		d.Columns = slices.Delete(d.Columns, i, i+1)
		pos, err := position(d, spec.Position, i)
		if err != nil {
			return nil, err
		}
		d.Columns = slices.Insert(d.Columns, pos, col)
		renameInIndexes(d, oldCol, col.Name)
		keys = append(keys, columnKeys(cd, primary, unique)...)
	case ast.AlterTableRenameColumn:
		oldName, newName := spec.OldColumnName.Name.O, spec.NewColumnName.Name.O
		i := d.Column(oldName)
		if i < 0 {
			return nil, fmt.Errorf("column %s does not exist", quoteName(oldName))
		}
		if j := d.Column(newName); j >= 0 && j != i {
			return nil, fmt.Errorf("column %s exists", quoteName(newName))
		}
		renameInIndexes(d, d.Columns[i].Name, newName)
		d.Columns[i].Name = newName
	case ast.AlterTableDropPrimaryKey:
		dropIndex(d, "PRIMARY")
	case ast.AlterTableDropIndex:
		dropIndex(d, spec.Name)
	case ast.AlterTableRenameIndex:
		i := d.index(spec.FromKey.O)
		if i < 0 {
			return nil, fmt.Errorf("index %s does not exist", quoteName(spec.FromKey.O))
		}
		d.Indexes[i].Name = spec.ToKey.O
	case ast.AlterTableDropForeignKey:
		// An unknown name (IF EXISTS) changes nothing.
		if i := d.foreignKey(spec.Name); i >= 0 {
			d.ForeignKeys = slices.Delete(d.ForeignKeys, i, i+1)
		}
	case ast.AlterTableAlterColumn:
		// SET DEFAULT carries the value as an option's expression; DROP
		// DEFAULT none.
		if len(spec.NewColumns) == 1 {
			cd := spec.NewColumns[0]
			if i := d.Column(cd.Name.Name.O); i >= 0 {
				d.Columns[i].Default = ""
				if len(cd.Options) > 0 && cd.Options[0].Expr != nil {
					d.Columns[i].Default = exprText(cd.Options[0].Expr)
				}
			}
		}
	case ast.AlterTableRenameTable,
		ast.AlterTableLock, ast.AlterTableAlgorithm, ast.AlterTableForce, ast.AlterTableEnableKeys,
		ast.AlterTableDisableKeys, ast.AlterTableOrderByColumns, ast.AlterTableAlterCheck,
		ast.AlterTableDropCheck, ast.AlterTableIndexInvisible:
		// The rename is done by the caller; the rest changes nothing the
		// tracker keeps.
	default:
		return nil, fmt.Errorf("ALTER TABLE clause type %d is not supported", spec.Tp)
	}
	return keys, nil
}

// position resolves FIRST / AFTER col to an insert position in d.Columns;
// def is used when there is no position clause.
func position(d *TableDef, p *ast.ColumnPosition, def int) (int, error) {
	if p == nil {
		return def, nil
	}
	switch p.Tp {
	case ast.ColumnPositionFirst:
		return 0, nil
	case ast.ColumnPositionAfter:
		i := d.Column(p.RelativeColumn.Name.O)
		if i < 0 {
			return 0, fmt.Errorf("AFTER unknown column %s", quoteName(p.RelativeColumn.Name.O))
		}
		return i + 1, nil
	}
	return def, nil
}

// renameInIndexes renames a column in d's indexes and foreign keys (the
// referencing columns; the referenced ones follow in followReferences).
func renameInIndexes(d *TableDef, oldName, newName string) {
	for i := range d.Indexes {
		for j, c := range d.Indexes[i].Columns {
			if strings.EqualFold(c, oldName) {
				d.Indexes[i].Columns[j] = newName
			}
		}
	}
	for i := range d.ForeignKeys {
		for j, c := range d.ForeignKeys[i].Columns {
			if strings.EqualFold(c, oldName) {
				d.ForeignKeys[i].Columns[j] = newName
			}
		}
	}
}

// convertCharset applies CONVERT TO CHARACTER SET cs: character columns take
// cs, and TEXT columns grow to the smallest type that still holds as many
// characters as before, as the server does.
func convertCharset(d *TableDef, cs string) error {
	for i := range d.Columns {
		c := &d.Columns[i]
		if c.Binary || !isTextual(c) {
			continue
		}
		if r := textRank(c.Type); r >= 0 {
			if c.Charset == "" {
				return fmt.Errorf("CONVERT TO CHARACTER SET: the character set of column %s is not known", quoteName(c.Name))
			}
			need := textTypes[r].max / mbMaxLen(c.Charset) * mbMaxLen(cs)
			for r < len(textTypes)-1 && need > textTypes[r].max {
				r++
			}
			c.Type, c.TypeCode = textTypes[r].name, textTypes[r].code
		}
		c.Charset = cs
	}
	return nil
}

// textType is one size of TEXT: its name, its capacity in bytes, its code.
type textType struct {
	name string
	max  int
	code byte
}

var textTypes = []textType{
	{"tinytext", 1<<8 - 1, mysql.TypeTinyBlob},
	{"text", 1<<16 - 1, mysql.TypeBlob},
	{"mediumtext", 1<<24 - 1, mysql.TypeMediumBlob},
	{"longtext", 1<<32 - 1, mysql.TypeLongBlob},
}

func isTextual(c *ColumnDef) bool {
	return textRank(c.Type) >= 0 || strings.HasPrefix(c.Type, "char(") || strings.HasPrefix(c.Type, "varchar(") ||
		c.EnumValues != nil || c.SetValues != nil
}

func textRank(t string) int {
	return slices.IndexFunc(textTypes, func(x textType) bool { return x.name == t })
}
