package schema

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	perrors "github.com/pingcap/errors"
	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver" // value expressions for the parser, as TiDB's parser docs require
)

// Statement kinds, as Stmt.Kind and Result.Kind report them. They match the
// event names of the filter package.
const (
	KindCreateTable    = "create table"
	KindAlterTable     = "alter table"
	KindDropTable      = "drop table"
	KindRenameTable    = "rename table"
	KindTruncateTable  = "truncate table"
	KindCreateDatabase = "create database"
	KindDropDatabase   = "drop database"
	KindAlterDatabase  = "alter database"
	KindCreateIndex    = "create index"
	KindDropIndex      = "drop index"
)

// Stmt is one single-table statement of a query, as Split returns it.
type Stmt struct {
	// Kind is one of the Kind constants, or for an ignorable statement a
	// description such as "grant", "create trigger", "flush".
	Kind string
	// Ignored is true for statements that do not shape tables: the tracker
	// does nothing with them and the syncer need not forward them.
	Ignored bool
	// Table is the table the statement changes, schema-qualified with the
	// default schema; for database statements only Schema is set. Zero for
	// ignored statements.
	Table TableName
	// NewTable is the new name for RENAME TABLE and ALTER TABLE ... RENAME.
	NewTable TableName
	// Like is the source table of CREATE TABLE ... LIKE.
	Like TableName
	// Query is the text of the statement this one comes from, as logged
	// (for DROP TABLE a, b both parts carry the whole statement).
	Query string

	src   string // the text parsed: Query, or its compat rewrite
	mode  SQLMode
	flags compatFlags
	index int // statement index in src
	part  int // table index in DROP TABLE / RENAME TABLE
	node  ast.StmtNode
	def   string // default schema
}

// Tables returns the statement's table names: Table, then NewTable and Like
// when set.
func (s *Stmt) Tables() []TableName {
	var out []TableName
	for _, n := range []TableName{s.Table, s.NewTable, s.Like} {
		if !n.IsZero() {
			out = append(out, n)
		}
	}
	return out
}

// ErrUnsupportedDDL is returned (wrapped in a *DDLError) for a statement that
// may shape tables but that the tracker cannot parse or apply.
var ErrUnsupportedDDL = errors.New("schema: unsupported DDL")

// ErrUnknownTable is returned (wrapped in a *DDLError) when a statement
// changes a table the tracker does not know.
var ErrUnknownTable = errors.New("schema: unknown table")

// DDLError is the error Split, Apply, ApplyStmts and CreateFromSQL return
// for a statement.
type DDLError struct {
	Query string // the statement's first 200 bytes
	Kind  error  // ErrUnsupportedDDL, ErrUnknownTable, or nil
	Err   error  // the cause: a parse error or what cannot be applied
}

func (e *DDLError) Error() string {
	var b strings.Builder
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	} else {
		b.WriteString("schema: DDL failed")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	b.WriteString(": ")
	fmt.Fprintf(&b, "%q", e.Query)
	return b.String()
}

// Unwrap returns the kind and the cause, for errors.Is and errors.As.
func (e *DDLError) Unwrap() []error {
	var out []error
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

func ddlError(kind error, query string, cause error) error {
	if len(query) > 200 {
		query = query[:200]
	}
	return perrors.WithStack(&DDLError{Query: query, Kind: kind, Err: cause})
}

func unsupported(query string, format string, args ...any) error {
	return ddlError(ErrUnsupportedDDL, query, fmt.Errorf(format, args...))
}

var parsers = sync.Pool{New: func() any { return parser.New() }}

// parse parses src under mode with a pooled parser. The parser reuses the
// slice it returns at its next parse: the caller gets a copy, since the
// parser goes back to the pool (the nodes themselves are the caller's).
func parse(src string, mode SQLMode) ([]ast.StmtNode, error) {
	p := parsers.Get().(*parser.Parser)
	defer parsers.Put(p)
	p.SetSQLMode(mode.parserMode())
	nodes, _, err := p.Parse(src, "", "")
	return slices.Clone(nodes), err
}

// parseQuery parses query, written under mode, through the MariaDB compat
// rewrite when the parser rejects it as is or would misread it.
func parseQuery(query string, mode SQLMode) (src string, nodes []ast.StmtNode, flags compatFlags, err error) {
	if !needsRewrite(lexMode(query, mode), mode) {
		nodes, err = parse(query, mode)
		if err == nil {
			return query, nodes, flags, nil
		}
	}
	src, flags, changed, rerr := rewriteMariaDB(query, mode)
	if rerr != nil {
		return "", nil, flags, rerr
	}
	if !changed {
		if err == nil {
			nodes, err = parse(query, mode)
		}
		return query, nodes, compatFlags{}, err
	}
	nodes, err2 := parse(src, mode)
	if err2 != nil {
		if err == nil {
			err = err2
		}
		return "", nil, flags, err
	}
	if len(nodes) != 1 {
		return "", nil, flags, fmt.Errorf("MariaDB syntax in a multi-statement query")
	}
	return src, nodes, flags, nil
}

// Split parses query (one or more statements as a query event logs them)
// and returns its statements, each about one table: DROP TABLE a, b and
// RENAME TABLE a TO b, c TO d give two each. Table names are qualified with
// defaultSchema. Statements that do not shape tables come back with Ignored
// set. A statement that may shape tables but cannot be parsed or tracked
// (CREATE TABLE ... SELECT, partition changes, system versioning,
// statement-based DML, ...) is an ErrUnsupportedDDL. The query is read in
// the default sql_mode; see SplitMode.
func Split(defaultSchema, query string) ([]Stmt, error) { return SplitMode(0, defaultSchema, query) }

// SplitMode is Split for a query written under sql_mode mode (as a query
// event records it): names in "double quotes" under ANSI_QUOTES, || as
// CONCAT under PIPES_AS_CONCAT, the types of ORACLE mode, and so on (see
// SQLMode). Render writes the statements back in the default mode, so that
// they mean the same on a server whatever its sql_mode, provided the session
// running them has none of the modes SQLMode lists.
func SplitMode(mode SQLMode, defaultSchema, query string) ([]Stmt, error) {
	mode &= relevantModes
	// MariaDB's SET STATEMENT var = value [, ...] FOR <statement>: the
	// variables last for the statement, which is read as itself. A query
	// event records the sql_mode the statement ran in (the one SET
	// STATEMENT gives), which is the mode it is read in here, as
	// MariaDB's own replicas read it.
	if body, ok := setStatementBody(query, mode); ok {
		return SplitMode(mode, defaultSchema, body)
	}
	src, nodes, flags, err := parseQuery(query, mode)
	if err != nil {
		kind, ignorable, _ := classifyText(query, mode)
		if ignorable {
			return []Stmt{{Kind: kind, Ignored: true, Query: query}}, nil
		}
		return nil, ddlError(ErrUnsupportedDDL, query, err)
	}
	if len(nodes) == 0 {
		return []Stmt{{Kind: "empty", Ignored: true, Query: query}}, nil
	}
	var out []Stmt
	for i, n := range nodes {
		text := strings.TrimSpace(n.Text())
		if len(nodes) == 1 {
			text = query
		}
		base := Stmt{Query: text, src: src, mode: mode, flags: flags, index: i, node: n, def: defaultSchema}
		stmts, err := splitNode(base, n)
		if err != nil {
			return nil, err
		}
		out = append(out, stmts...)
	}
	return out, nil
}

// qualify returns tn's name with the default schema filled in.
func qualify(def string, tn *ast.TableName) (TableName, error) {
	if tn == nil {
		return TableName{}, fmt.Errorf("missing table name")
	}
	s := tn.Schema.O
	if s == "" {
		s = def
	}
	if s == "" {
		return TableName{}, fmt.Errorf("table %s without a schema and no default schema", quoteName(tn.Name.O))
	}
	return TableName{Schema: s, Name: tn.Name.O}, nil
}

func splitNode(base Stmt, n ast.StmtNode) ([]Stmt, error) {
	q := base.Query
	fail := func(err error) ([]Stmt, error) { return nil, ddlError(ErrUnsupportedDDL, q, err) }
	one := func(kind string, table *ast.TableName) ([]Stmt, error) {
		s := base
		s.Kind = kind
		var err error
		if s.Table, err = qualify(base.def, table); err != nil {
			return fail(err)
		}
		return []Stmt{s}, nil
	}
	database := func(kind, name string) ([]Stmt, error) {
		if name == "" {
			name = base.def
		}
		if name == "" {
			return fail(fmt.Errorf("no database named and no default schema"))
		}
		s := base
		s.Kind = kind
		s.Table = TableName{Schema: name}
		return []Stmt{s}, nil
	}
	switch n := n.(type) {
	case *ast.CreateTableStmt:
		if n.TemporaryKeyword != ast.TemporaryNone {
			return ignored(base, "create temporary table"), nil
		}
		if n.Select != nil {
			return fail(fmt.Errorf("CREATE TABLE ... SELECT is logged with its columns in ROW format; this one is statement-based"))
		}
		out, err := one(KindCreateTable, n.Table)
		if err != nil || n.ReferTable == nil {
			return out, err
		}
		if out[0].Like, err = qualify(base.def, n.ReferTable); err != nil {
			return fail(err)
		}
		return out, nil
	case *ast.AlterTableStmt:
		out, err := one(KindAlterTable, n.Table)
		if err != nil {
			return nil, err
		}
		for _, spec := range n.Specs {
			if err := checkAlterSpec(spec); err != nil {
				return fail(err)
			}
			if spec.Tp == ast.AlterTableRenameTable {
				if out[0].NewTable, err = qualify(base.def, spec.NewTable); err != nil {
					return fail(err)
				}
			}
		}
		return out, nil
	case *ast.DropTableStmt:
		if n.IsView {
			return ignored(base, "drop view"), nil
		}
		if n.TemporaryKeyword != ast.TemporaryNone {
			return ignored(base, "drop temporary table"), nil
		}
		var out []Stmt
		for i, t := range n.Tables {
			s := base
			s.Kind, s.part = KindDropTable, i
			part := *n
			part.Tables = []*ast.TableName{t}
			s.node = &part
			var err error
			if s.Table, err = qualify(base.def, t); err != nil {
				return fail(err)
			}
			out = append(out, s)
		}
		return out, nil
	case *ast.RenameTableStmt:
		var out []Stmt
		for i, tt := range n.TableToTables {
			s := base
			s.Kind, s.part = KindRenameTable, i
			part := *n
			part.TableToTables = []*ast.TableToTable{tt}
			s.node = &part
			var err error
			if s.Table, err = qualify(base.def, tt.OldTable); err != nil {
				return fail(err)
			}
			if s.NewTable, err = qualify(base.def, tt.NewTable); err != nil {
				return fail(err)
			}
			out = append(out, s)
		}
		return out, nil
	case *ast.TruncateTableStmt:
		return one(KindTruncateTable, n.Table)
	case *ast.CreateIndexStmt:
		return one(KindCreateIndex, n.Table)
	case *ast.DropIndexStmt:
		return one(KindDropIndex, n.Table)
	case *ast.CreateDatabaseStmt:
		return database(KindCreateDatabase, n.Name.O)
	case *ast.DropDatabaseStmt:
		return database(KindDropDatabase, n.Name.O)
	case *ast.AlterDatabaseStmt:
		return database(KindAlterDatabase, n.Name.O)
	}
	kind, ignorable, _ := classifyText(base.Query, base.mode)
	if !ignorable {
		return fail(fmt.Errorf("%s is not a statement the tracker can apply", kind))
	}
	return ignored(base, kind), nil
}

func ignored(base Stmt, kind string) []Stmt {
	base.Kind, base.Ignored, base.node = kind, true, nil
	return []Stmt{base}
}

// checkAlterSpec rejects the ALTER TABLE clauses the tracker cannot apply.
// Partition maintenance changes no columns, but some of it moves or deletes
// rows without row events (EXCHANGE, DROP, TRUNCATE PARTITION), which routed
// or merged downstream tables cannot reproduce: all of it is refused so the
// operator decides.
func checkAlterSpec(spec *ast.AlterTableSpec) error {
	switch spec.Tp {
	case ast.AlterTableOption:
		for _, o := range spec.Options {
			if o.Tp == ast.TableOptionCharset && o.UintValue == ast.TableOptionCharsetWithConvertTo && (o.Default || strings.EqualFold(o.StrValue, "binary")) {
				return fmt.Errorf("CONVERT TO CHARACTER SET %s is not supported", map[bool]string{true: "DEFAULT", false: o.StrValue}[o.Default])
			}
		}
		return nil
	case ast.AlterTableAddColumns, ast.AlterTableAddConstraint, ast.AlterTableDropColumn,
		ast.AlterTableDropPrimaryKey, ast.AlterTableDropIndex, ast.AlterTableDropForeignKey,
		ast.AlterTableModifyColumn, ast.AlterTableChangeColumn, ast.AlterTableRenameColumn,
		ast.AlterTableRenameTable, ast.AlterTableAlterColumn, ast.AlterTableLock,
		ast.AlterTableAlgorithm, ast.AlterTableRenameIndex, ast.AlterTableForce,
		ast.AlterTableEnableKeys, ast.AlterTableDisableKeys, ast.AlterTableOrderByColumns,
		ast.AlterTableAlterCheck, ast.AlterTableDropCheck, ast.AlterTableIndexInvisible:
		if spec.Tp == ast.AlterTableAddColumns && len(spec.NewConstraints) > 0 {
			return fmt.Errorf("constraints inside ADD (...) are not supported")
		}
		return nil
	case ast.AlterTableAddPartitions, ast.AlterTableCoalescePartitions, ast.AlterTableDropPartition,
		ast.AlterTableTruncatePartition, ast.AlterTablePartition, ast.AlterTableRemovePartitioning,
		ast.AlterTableRebuildPartition, ast.AlterTableReorganizePartition, ast.AlterTableExchangePartition,
		ast.AlterTableCheckPartitions, ast.AlterTableOptimizePartition, ast.AlterTableRepairPartition,
		ast.AlterTablePartitionOptions, ast.AlterTablePartitionAttributes:
		return fmt.Errorf("partition changes are not supported")
	}
	return fmt.Errorf("ALTER TABLE clause type %d is not supported", spec.Tp)
}

// Render returns the statement's SQL with every table name passed through
// rename and written schema-qualified (database statements pass their name
// as schema with an empty table). A nil rename keeps the names. Ignored
// statements render as their Query. The SQL is the parser's restoration of
// the statement (upper-case keywords, back-quoted names), adjusted to run on
// MariaDB and MySQL.
func (s *Stmt) Render(rename func(schema, table string) (string, string)) (string, error) {
	if s.Ignored {
		return s.Query, nil
	}
	if rename == nil {
		rename = func(s, t string) (string, string) { return s, t }
	}
	nodes, err := parse(s.src, s.mode)
	if err != nil || s.index >= len(nodes) {
		return "", ddlError(ErrUnsupportedDDL, s.Query, fmt.Errorf("parse for render: %v", err))
	}
	node := nodes[s.index]
	switch n := node.(type) {
	case *ast.DropTableStmt:
		n.Tables = n.Tables[s.part : s.part+1]
	case *ast.RenameTableStmt:
		n.TableToTables = n.TableToTables[s.part : s.part+1]
	case *ast.CreateDatabaseStmt:
		n.Name = ast.NewCIStr(renameSchema(rename, s.Table.Schema))
	case *ast.DropDatabaseStmt:
		n.Name = ast.NewCIStr(renameSchema(rename, s.Table.Schema))
	case *ast.AlterDatabaseStmt:
		n.Name = ast.NewCIStr(renameSchema(rename, s.Table.Schema))
	case *ast.CreateTableStmt:
		keepEnumCharsets(n.Cols)
	case *ast.AlterTableStmt:
		for _, spec := range n.Specs {
			keepEnumCharsets(spec.NewColumns)
		}
	}
	v := &renamer{def: s.def, rename: rename}
	node.Accept(v)
	if v.err != nil {
		return "", ddlError(ErrUnsupportedDDL, s.Query, v.err)
	}
	var b strings.Builder
	flags := format.DefaultRestoreFlags | format.RestoreStringEscapeBackslash
	if err := node.Restore(format.NewRestoreCtx(flags, &b)); err != nil {
		return "", ddlError(ErrUnsupportedDDL, s.Query, fmt.Errorf("restore: %v", err))
	}
	return renderFix(b.String(), s.flags), nil
}

func renameSchema(rename func(string, string) (string, string), schema string) string {
	s, _ := rename(schema, "")
	return s
}

// renamer qualifies and renames every table name of a statement.
type renamer struct {
	def    string
	rename func(schema, table string) (string, string)
	err    error
}

func (r *renamer) Enter(n ast.Node) (ast.Node, bool) {
	tn, ok := n.(*ast.TableName)
	if !ok {
		return n, false
	}
	q, err := qualify(r.def, tn)
	if err != nil {
		r.err = err
		return n, true
	}
	s, t := r.rename(q.Schema, q.Name)
	tn.Schema, tn.Name = ast.NewCIStr(s), ast.NewCIStr(t)
	return n, true
}

func (r *renamer) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// keepEnumCharsets works around the parser's restore dropping ENUM and SET
// columns' CHARACTER SET: it adds the equivalent COLLATE option.
func keepEnumCharsets(cols []*ast.ColumnDef) {
	for _, c := range cols {
		if c.Tp == nil || (c.Tp.GetType() != mysql.TypeEnum && c.Tp.GetType() != mysql.TypeSet) || c.Tp.GetCharset() == "" {
			continue
		}
		has := false
		for _, o := range c.Options {
			if o.Tp == ast.ColumnOptionCollate {
				has = true
			}
		}
		if has {
			continue
		}
		coll := c.Tp.GetCollate()
		if coll == "" {
			coll = defaultCollation(c.Tp.GetCharset())
		}
		if coll == "" {
			continue
		}
		c.Options = append(c.Options, &ast.ColumnOption{Tp: ast.ColumnOptionCollate, StrValue: coll})
	}
}

// defaultCollation is MariaDB's default collation for the common character
// sets; "" for others.
func defaultCollation(cs string) string {
	switch normCharset(cs) {
	case "latin1":
		return "latin1_swedish_ci"
	case "utf8mb4", "utf8mb3", "ascii", "ucs2", "utf16", "utf32", "latin2", "cp1250", "cp1251", "cp1256", "cp1257":
		return normCharset(cs) + "_general_ci"
	}
	return ""
}

// OnlyAutoIncrement reports whether the statement is an ALTER TABLE that
// sets nothing but the table's AUTO_INCREMENT counter (as gh-ost runs on its
// ghost table).
func (s *Stmt) OnlyAutoIncrement() bool {
	n, ok := s.node.(*ast.AlterTableStmt)
	if !ok || len(n.Specs) == 0 {
		return false
	}
	for _, spec := range n.Specs {
		if spec.Tp != ast.AlterTableOption || len(spec.Options) == 0 {
			return false
		}
		for _, o := range spec.Options {
			if o.Tp != ast.TableOptionAutoIncrement {
				return false
			}
		}
	}
	return true
}
