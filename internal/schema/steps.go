package schema

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	"github.com/pingcap/tidb/pkg/parser/mysql"
)

// StepKind is what one clause of a table statement does to the table, as
// optimistic shard mode tells them apart.
type StepKind string

// Step kinds.
const (
	StepAddColumn    StepKind = "add column"
	StepDropColumn   StepKind = "drop column"
	StepModifyColumn StepKind = "modify column" // MODIFY, CHANGE keeping the name, ALTER COLUMN SET/DROP DEFAULT
	StepRenameColumn StepKind = "rename column"
	StepAddIndex     StepKind = "add index" // primary key included
	StepDropIndex    StepKind = "drop index"
	StepRenameIndex  StepKind = "rename index"
	StepRenameTable  StepKind = "rename table"
	// StepOther changes no column nor index (table options, ALGORITHM,
	// foreign keys, checks, ...), or does what no other kind says.
	StepOther StepKind = "other"
)

// Step is one clause of an ALTER TABLE, or a CREATE INDEX or DROP INDEX,
// on its own: what it does and the table before and after it.
type Step struct {
	Kind StepKind
	// Column is the column a column step concerns (the old name of a
	// renamed one); Index the index of an index step ("PRIMARY" for the
	// primary key).
	Column, Index string
	// Before and After are the table before and after the clause.
	Before, After *TableDef

	stmt Stmt // the statement with this clause alone
	spec int  // the clause's place in the statement, -1 for CREATE/DROP INDEX
	col  int  // ADD (a, b): the column's place in the clause; -1 otherwise
	// apply applies the clause to a definition (a clone, then finished).
	apply func(d *TableDef) error
}

// ApplyTo returns d with the clause applied (d is not modified).
func (st *Step) ApplyTo(d *TableDef) (*TableDef, error) {
	c := d.clone()
	if err := st.apply(c); err != nil {
		return nil, ddlError(ErrUnsupportedDDL, st.stmt.Query, err)
	}
	c.finish()
	return c, nil
}

// Steps splits an ALTER TABLE, CREATE INDEX or DROP INDEX statement into
// its clauses, each applied in turn from before (the table's definition
// before the statement). A clause that adds several columns gives a step
// per column.
func (s *Stmt) Steps(before *TableDef) ([]Step, error) {
	if before == nil {
		return nil, ddlError(ErrUnknownTable, s.Query, fmt.Errorf("table %s", s.Table))
	}
	fail := func(err error) ([]Step, error) { return nil, ddlError(ErrUnsupportedDDL, s.Query, err) }
	cur := before
	switch n := s.node.(type) {
	case *ast.CreateIndexStmt:
		c := &ast.Constraint{IfNotExists: n.IfNotExists, Tp: ast.ConstraintIndex, Name: n.IndexName, Keys: n.IndexPartSpecifications}
		if n.KeyType == ast.IndexKeyTypeUnique {
			c.Tp = ast.ConstraintUniq
		}
		st := Step{Kind: StepAddIndex, Before: cur, stmt: *s, spec: -1, col: -1, apply: func(d *TableDef) error { return addConstraint(d, c) }}
		d, err := st.ApplyTo(cur)
		if err != nil {
			return nil, err
		}
		st.After, st.Index = d, newIndex(cur, d, n.IndexName)
		return []Step{st}, nil
	case *ast.DropIndexStmt:
		st := Step{Kind: StepDropIndex, Index: n.IndexName, Before: cur, stmt: *s, spec: -1, col: -1,
			apply: func(d *TableDef) error { dropIndex(d, n.IndexName); return nil }}
		d, err := st.ApplyTo(cur)
		if err != nil {
			return nil, err
		}
		st.After = d
		return []Step{st}, nil
	case *ast.AlterTableStmt:
		var out []Step
		for k, spec := range n.Specs {
			parts := []*ast.AlterTableSpec{spec}
			if spec.Tp == ast.AlterTableAddColumns && len(spec.NewColumns) > 1 {
				parts = nil
				for _, cd := range spec.NewColumns {
					one := *spec
					one.NewColumns, one.Position = []*ast.ColumnDef{cd}, nil
					parts = append(parts, &one)
				}
			}
			for c, part := range parts {
				st := Step{Kind: StepOther, Before: cur, stmt: *s, spec: k, col: -1,
					apply: func(d *TableDef) error { return alterTable(d, []*ast.AlterTableSpec{part}) }}
				d, err := st.ApplyTo(cur)
				if err != nil {
					return nil, err
				}
				st.After = d
				if len(parts) > 1 {
					st.col = c
				}
				classifyStep(&st, part)
				out = append(out, st)
				cur = d
			}
		}
		return out, nil
	}
	return fail(fmt.Errorf("%s has no clauses", s.Kind))
}

// classifyStep sets the step's kind and names from its clause.
func classifyStep(st *Step, spec *ast.AlterTableSpec) {
	switch spec.Tp {
	case ast.AlterTableAddColumns:
		if len(spec.NewColumns) == 1 && st.Before.Column(spec.NewColumns[0].Name.Name.O) < 0 {
			st.Kind, st.Column = StepAddColumn, spec.NewColumns[0].Name.Name.O
		}
	case ast.AlterTableDropColumn:
		if st.Before.Column(spec.OldColumnName.Name.O) >= 0 {
			st.Kind, st.Column = StepDropColumn, spec.OldColumnName.Name.O
		}
	case ast.AlterTableModifyColumn, ast.AlterTableAlterColumn:
		if len(spec.NewColumns) == 1 {
			st.Kind, st.Column = StepModifyColumn, spec.NewColumns[0].Name.Name.O
		}
	case ast.AlterTableChangeColumn:
		st.Kind, st.Column = StepModifyColumn, spec.OldColumnName.Name.O
		if len(spec.NewColumns) == 1 && !strings.EqualFold(spec.NewColumns[0].Name.Name.O, spec.OldColumnName.Name.O) {
			st.Kind = StepRenameColumn
		}
	case ast.AlterTableRenameColumn:
		st.Kind, st.Column = StepRenameColumn, spec.OldColumnName.Name.O
	case ast.AlterTableAddConstraint:
		switch spec.Constraint.Tp {
		case ast.ConstraintPrimaryKey, ast.ConstraintKey, ast.ConstraintIndex, ast.ConstraintUniq,
			ast.ConstraintUniqKey, ast.ConstraintUniqIndex, ast.ConstraintFulltext:
			st.Kind, st.Index = StepAddIndex, newIndex(st.Before, st.After, spec.Constraint.Name)
			if spec.Constraint.Tp == ast.ConstraintPrimaryKey {
				st.Index = "PRIMARY"
			}
		}
	case ast.AlterTableDropIndex:
		st.Kind, st.Index = StepDropIndex, spec.Name
	case ast.AlterTableDropPrimaryKey:
		st.Kind, st.Index = StepDropIndex, "PRIMARY"
	case ast.AlterTableRenameIndex:
		st.Kind, st.Index = StepRenameIndex, spec.FromKey.O
	case ast.AlterTableRenameTable:
		st.Kind = StepRenameTable
	}
}

// newIndex is the name of the index after has and before lacks: name, or
// the one the server made up.
func newIndex(before, after *TableDef, name string) string {
	for _, ix := range after.Indexes {
		if before.index(ix.Name) < 0 {
			return ix.Name
		}
	}
	return name
}

// Render returns the step's clause as a statement of its own, written as
// Stmt.Render writes statements.
func (st *Step) Render(rename func(schema, table string) (string, string)) (string, error) {
	s := &st.stmt
	if rename == nil {
		rename = func(s, t string) (string, string) { return s, t }
	}
	nodes, err := parse(s.src, s.mode)
	if err != nil || s.index >= len(nodes) {
		return "", ddlError(ErrUnsupportedDDL, s.Query, fmt.Errorf("parse for render: %v", err))
	}
	node := nodes[s.index]
	if n, ok := node.(*ast.AlterTableStmt); ok && st.spec >= 0 {
		if st.spec >= len(n.Specs) {
			return "", ddlError(ErrUnsupportedDDL, s.Query, fmt.Errorf("clause %d of %d", st.spec, len(n.Specs)))
		}
		spec := n.Specs[st.spec]
		if st.col >= 0 {
			one := *spec
			one.NewColumns, one.Position = []*ast.ColumnDef{spec.NewColumns[st.col]}, nil
			spec = &one
		}
		n.Specs = []*ast.AlterTableSpec{spec}
		keepEnumCharsets(spec.NewColumns)
	}
	v := &renamer{def: s.def, rename: rename}
	node.Accept(v)
	if v.err != nil {
		return "", ddlError(ErrUnsupportedDDL, s.Query, v.err)
	}
	var b strings.Builder
	if err := node.Restore(format.NewRestoreCtx(format.DefaultRestoreFlags|format.RestoreStringEscapeBackslash, &b)); err != nil {
		return "", ddlError(ErrUnsupportedDDL, s.Query, fmt.Errorf("restore: %v", err))
	}
	return renderFix(b.String(), s.flags), nil
}

// exprText is a DEFAULT expression as the parser restores it, without a
// string's character set introducer; "" for NULL (which is what a column
// without a DEFAULT clause has).
func exprText(e ast.ExprNode) string {
	if e == nil {
		return ""
	}
	var b strings.Builder
	if err := e.Restore(format.NewRestoreCtx(format.DefaultRestoreFlags|format.RestoreStringEscapeBackslash, &b)); err != nil {
		return "?"
	}
	s := b.String()
	if strings.EqualFold(s, "NULL") {
		return ""
	}
	if strings.HasPrefix(s, "_") {
		if i := strings.IndexByte(s, '\''); i > 0 && !strings.ContainsAny(s[:i], " (") {
			s = s[i:]
		}
	}
	return s
}

// Omittable reports whether an INSERT that names no value for the column
// still succeeds in strict mode: it is nullable, has a default, or is
// generated.
func (c *ColumnDef) Omittable() bool {
	return c.Nullable || c.Generated || c.Default != ""
}

// Fits reports whether every value column a holds is one column b holds
// as it is: b accepts NULL when a does, and b's type is a's or a wider one
// of its family (a longer VARCHAR, a larger integer, a DECIMAL with as
// many digits on each side of the point, DOUBLE for FLOAT, an ENUM or SET
// whose members begin with a's). Defaults are not compared.
func Fits(a, b *ColumnDef) bool {
	if a.Nullable && !b.Nullable || a.Generated != b.Generated || a.Charset != b.Charset || a.Binary != b.Binary {
		return false
	}
	if a.Type == b.Type {
		return true
	}
	an, aa, au := splitType(a.Type)
	bn, ba, bu := splitType(b.Type)
	if ai, ok := intRank[an]; ok {
		bi, ok := intRank[bn]
		switch {
		case !ok:
			return false
		case au == bu:
			return ai <= bi
		default:
			return au && !bu && ai < bi // unsigned into a larger signed
		}
	}
	if au != bu {
		return false
	}
	switch {
	case an == "decimal" && bn == "decimal":
		return len(aa) == 2 && len(ba) == 2 && aa[1] <= ba[1] && aa[0]-aa[1] <= ba[0]-ba[1]
	case an == "float" && bn == "double":
		return len(aa) == 0 && len(ba) == 0
	case (an == "varchar" || an == "char") && bn == "varchar", an == "varbinary" && bn == "varbinary", an == "char" && bn == "char":
		return len(aa) == 1 && len(ba) == 1 && aa[0] <= ba[0]
	case a.TypeCode == mysql.TypeEnum && b.TypeCode == mysql.TypeEnum:
		return len(a.EnumValues) <= len(b.EnumValues) && slices.Equal(a.EnumValues, b.EnumValues[:len(a.EnumValues)])
	case a.TypeCode == mysql.TypeSet && b.TypeCode == mysql.TypeSet:
		return len(a.SetValues) <= len(b.SetValues) && slices.Equal(a.SetValues, b.SetValues[:len(a.SetValues)])
	}
	if ar, ok := lobRank[an]; ok {
		br, ok := lobRank[bn]
		return ok && strings.HasSuffix(an, "text") == strings.HasSuffix(bn, "text") && ar <= br
	}
	if strings.HasSuffix(bn, "text") || strings.HasSuffix(bn, "blob") {
		// A string of known length into a large object of its kind.
		if r, ok := lobRank[bn]; ok && len(aa) == 1 && (an == "varchar" || an == "char") == strings.HasSuffix(bn, "text") &&
			(an == "varchar" || an == "char" || an == "varbinary" || an == "binary") {
			limit := []int{255, 65535, 16777215, 1 << 31}[r]
			return aa[0]*mbMaxLen(a.Charset) <= limit
		}
	}
	return false
}

var intRank = map[string]int{"tinyint": 0, "smallint": 1, "mediumint": 2, "int": 3, "bigint": 4}

var lobRank = map[string]int{"tinytext": 0, "text": 1, "mediumtext": 2, "longtext": 3, "tinyblob": 0, "blob": 1, "mediumblob": 2, "longblob": 3}

// splitType splits "decimal(12,2) unsigned" into its name, arguments (when
// numbers) and whether it is unsigned.
func splitType(t string) (name string, args []int, unsigned bool) {
	unsigned = strings.Contains(t, " unsigned")
	if i := strings.IndexByte(t, ' '); i >= 0 {
		t = t[:i]
	}
	name = t
	if i := strings.IndexByte(t, '('); i >= 0 && strings.HasSuffix(t, ")") {
		name = t[:i]
		for _, a := range strings.Split(t[i+1:len(t)-1], ",") {
			n, err := strconv.Atoi(a)
			if err != nil {
				return name, nil, unsigned
			}
			args = append(args, n)
		}
	}
	return name, args, unsigned
}
