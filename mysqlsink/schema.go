package mysqlsink

import (
	"context"
	"database/sql"
	"errors"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
)

var _ dmworker.TableDefiner = (*Sink)(nil)

// ShowCreateTable returns SHOW CREATE TABLE of schema.table downstream, ""
// when the table does not exist (see dmworker.TableDefiner). Errors are
// *Error with Op "schema".
func (s *Sink) ShowCreateTable(ctx context.Context, schema, table string) (string, error) {
	q := "SHOW CREATE TABLE " + quoteTable(schema, table)
	var name, create string
	err := s.db.QueryRowContext(ctx, q).Scan(&name, &create)
	var me *mysql.MySQLError
	switch {
	case err == nil:
		return create, nil
	case errors.As(err, &me) && (me.Number == 1146 || me.Number == 1049): // ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR
		return "", nil
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	}
	return "", fail(ctx, &Error{Op: "schema", Table: schema + "." + table, Statement: q, Err: err})
}
