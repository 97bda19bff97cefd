package dmworker

import (
	"strings"

	"github.com/dmworker/dmworker/internal/filter"
	"github.com/dmworker/dmworker/internal/schema"
)

// BlockAllowList selects the schemas and tables a task replicates, as DM's
// block-allow-list does: do-dbs, do-tables, ignore-dbs, ignore-tables, with
// wildcards '*' and '?' (and '~' for a regular expression). System schemas
// are never replicated. The zero value allows every table.
type BlockAllowList = filter.BlockAllowRules

// TablePattern names tables in a BlockAllowList: db-name and tbl-name
// patterns.
type TablePattern = filter.Table

// EventFilterRule drops (Action "Ignore") or keeps only (Action "Do") the
// events of the given kinds ("insert", "update", "delete", "all dml",
// "create table", "drop table", "truncate table", "all ddl", ...) or whose
// DDL text matches SQLPattern, on the tables its patterns match.
type EventFilterRule = filter.EventRule

// RouteRule renames the tables its patterns match to TargetSchema and
// TargetTable; many shard tables may route to one.
type RouteRule = filter.RouteRule

// rules is a task's compiled filters and routes.
type rules struct {
	ba     *filter.BlockAllowList
	events *filter.EventFilter
	router *filter.Router
}

func newRules(cfg SyncerConfig) (*rules, error) {
	ba, err := filter.NewBlockAllowList(cfg.Filter)
	if err != nil {
		return nil, err
	}
	ev, err := filter.NewEventFilter(cfg.EventFilters, cfg.Filter.CaseSensitive)
	if err != nil {
		return nil, err
	}
	rt, err := filter.NewRouter(cfg.Routes, cfg.Filter.CaseSensitive)
	if err != nil {
		return nil, err
	}
	return &rules{ba: ba, events: ev, router: rt}, nil
}

// allowed reports whether a table (or, with table "", a schema) is
// replicated.
func (r *rules) allowed(schema, table string) bool { return r.ba.Allowed(schema, table) }

func (r *rules) skipDML(schema, table string, kind ChangeKind) (bool, error) {
	return r.events.Skip(schema, table, kind.String(), "")
}

func (r *rules) skipDDL(schema, table, kind, query string) (bool, error) {
	return r.events.Skip(schema, table, kind, query)
}

func (r *rules) route(schema, table string) (string, string) { return r.router.Route(schema, table) }

// targetSchema returns the downstream schema a routed table goes to, and
// true when it is not where the table's own schema is routed: that schema's
// CREATE DATABASE does not make it, so the syncer and the snapshot create it
// (createSchemaSQL) before the table.
func (r *rules) targetSchema(n schema.TableName) (string, bool) {
	ts, _ := r.route(n.Schema, n.Name)
	own, _ := r.route(n.Schema, "")
	return ts, ts != own
}

// createSchemaSQL creates a downstream schema unless it exists, with a
// character set and collation when known.
func createSchemaSQL(name, charset, collation string) string {
	var b strings.Builder
	b.WriteString("CREATE DATABASE IF NOT EXISTS ")
	b.WriteString(quoteIdent(name))
	if charset != "" {
		b.WriteString(" CHARACTER SET ")
		b.WriteString(quoteIdent(charset))
	}
	if collation != "" {
		b.WriteString(" COLLATE ")
		b.WriteString(quoteIdent(collation))
	}
	return b.String()
}
