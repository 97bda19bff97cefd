package mysqlsink

import (
	"context"
	"database/sql"

	"github.com/dmworker/dmworker"
)

// SetCommit replaces how Apply commits its transaction, to simulate a
// connection lost during the commit.
func SetCommit(s *Sink, commit func(ctx context.Context, tx *sql.Tx) error) { s.commit = commit }

// CommitTx is how Apply commits its transaction.
var CommitTx = commitTx

// UsePlaceholders makes s send values as placeholders, as it does for a
// client character set it cannot write literals in.
func UsePlaceholders(s *Sink) { s.inline = 2 }

// PlanSQL returns the statements Apply would run for changes.
func PlanSQL(changes []dmworker.Change, safe bool, maxRows int, jsonCast bool) ([]string, [][]any, error) {
	if err := validateChanges(changes); err != nil {
		return nil, nil, err
	}
	p := planner{maxRows: maxRows, jsonCast: jsonCast}
	stmts := p.plan(changes, safe)
	var sqls []string
	var args [][]any
	for _, st := range stmts {
		sqls = append(sqls, st.sql)
		args = append(args, st.args)
	}
	return sqls, args, nil
}
