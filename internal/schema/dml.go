package schema

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
)

// DML kinds, as StatementDML reports them (the filter package's event
// names).
const (
	KindInsert = "insert"
	KindUpdate = "update"
	KindDelete = "delete"
)

// StatementDML reports whether query, a query event's statement written
// under mode, changes rows as a statement: INSERT, REPLACE, UPDATE, DELETE
// or LOAD DATA, as a binlog in STATEMENT or MIXED format logs them (also
// behind MariaDB's SET STATEMENT ... FOR). kind is KindInsert (REPLACE and
// LOAD DATA too), KindUpdate or KindDelete; tables are the tables it may
// write, qualified with defaultSchema, over-approximated (every table an
// UPDATE or DELETE names), and nil when the parser cannot read the statement:
// the caller must then assume any table.
func StatementDML(mode SQLMode, defaultSchema, query string) (kind string, tables []TableName, dml bool) {
	mode &= relevantModes
	sig := significantTokens(lexMode(query, mode))
	// SET STATEMENT var = value [, ...] FOR <statement>
	if len(sig) > 1 && sig[0].isWord("SET") && sig[1].isWord("STATEMENT") {
		body, ok := setStatementBody(query, mode)
		if !ok {
			return "", nil, false
		}
		return StatementDML(mode, defaultSchema, body)
	}
	if len(sig) == 0 || sig[0].kind != tkWord {
		return "", nil, false
	}
	switch sig[0].upper() {
	case "INSERT", "REPLACE", "LOAD":
		kind = KindInsert
	case "UPDATE":
		kind = KindUpdate
	case "DELETE":
		kind = KindDelete
	default:
		return "", nil, false
	}
	nodes, err := parse(query, mode)
	if err != nil || len(nodes) != 1 {
		return kind, nil, true
	}
	var names []*ast.TableName
	collect := func(n ast.Node) {
		if n != nil {
			v := &tableCollector{}
			n.Accept(v)
			names = append(names, v.names...)
		}
	}
	switch n := nodes[0].(type) {
	case *ast.InsertStmt:
		if n.Table != nil && n.Table.TableRefs != nil {
			if ts, ok := n.Table.TableRefs.Left.(*ast.TableSource); ok {
				if tn, ok := ts.Source.(*ast.TableName); ok {
					names = append(names, tn)
				}
			}
		}
	case *ast.UpdateStmt:
		if n.TableRefs != nil {
			collect(n.TableRefs.TableRefs)
		}
	case *ast.DeleteStmt:
		if n.Tables != nil {
			names = append(names, n.Tables.Tables...)
		}
		if n.TableRefs != nil {
			collect(n.TableRefs.TableRefs)
		}
	case *ast.LoadDataStmt:
		names = append(names, n.Table)
	default:
		return kind, nil, true
	}
	for _, tn := range names {
		q, err := qualify(defaultSchema, tn)
		if err != nil {
			return kind, nil, true
		}
		tables = append(tables, q)
	}
	if len(tables) == 0 {
		return kind, nil, true
	}
	return kind, tables, true
}

// tableCollector gathers the table names under a node.
type tableCollector struct{ names []*ast.TableName }

func (c *tableCollector) Enter(n ast.Node) (ast.Node, bool) {
	if tn, ok := n.(*ast.TableName); ok {
		c.names = append(c.names, tn)
		return n, true
	}
	return n, false
}

func (c *tableCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// setStatementBody returns the statement of MariaDB's SET STATEMENT var =
// value [, ...] FOR <statement>, and false when query is not of that form.
// The values are literals (a string is one token), so the first FOR word
// ends them.
func setStatementBody(query string, mode SQLMode) (string, bool) {
	sig := significantTokens(lexMode(query, mode))
	if len(sig) < 2 || !sig[0].isWord("SET") || !sig[1].isWord("STATEMENT") {
		return "", false
	}
	toks := lexMode(query, mode)
	for i, t := range toks {
		if t.isWord("FOR") {
			return strings.TrimSpace(joinTokens(toks[i+1:])), true
		}
	}
	return "", false
}
