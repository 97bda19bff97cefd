package dmworker

import (
	"strings"

	"github.com/dmworker/dmworker/internal/filter"
	"github.com/dmworker/dmworker/internal/onlineddl"
	"github.com/dmworker/dmworker/internal/schema"
)

// BlockAllowList selects the schemas and tables a task replicates, as DM's
// block-allow-list does. The zero value allows every table; system schemas
// (mysql, sys, information_schema, performance_schema) are never
// replicated. A table is replicated when it passes two stages:
//
//  1. Its schema: when DoDBs is set, one of them must match it; otherwise
//     none of IgnoreDBs may.
//  2. The table: when one of DoTables matches it, it is replicated; else
//     when one of IgnoreTables matches it, it is not; else it is only when
//     DoTables is empty.
//
// A schema-level statement (CREATE DATABASE and the like) passes when its
// schema passes stage 1 and some table of the schema could pass stage 2: one
// of DoTables names the schema, or DoTables is empty and no IgnoreTables
// entry names the schema with table pattern "*".
//
// The rules of a task: which tables it replicates (BlockAllowList), which
// of their events it skips (EventFilterRule) and where they go downstream
// (RouteRule), with DM's configuration shapes and semantics. They are plain
// structs with json, toml and yaml tags, as they appear in DM task files and
// in the SubTaskConfig a host stores in etcd; the syncer checks them when it
// is built and reports every problem at once.
//
// Patterns name schemas and tables with wildcards: '*' (any run of bytes),
// '?' (one byte) and [...] (one byte of a set, with ranges such as a-z;
// [!...] one not in it); in a BlockAllowList a pattern may instead be a
// regular expression after '~' ("~^shop_[0-9]+$"). Names match case-insensitively
// unless BlockAllowList.CaseSensitive, which applies to all the rules of a
// task.
type BlockAllowList struct {
	// DoDBs are schema patterns: only the schemas they match are
	// replicated (when empty: every schema IgnoreDBs does not match).
	DoDBs []string `json:"do-dbs,omitempty" toml:"do-dbs,omitempty" yaml:"do-dbs,omitempty"`
	// DoTables are the tables replicated (when empty: every table of the
	// selected schemas that IgnoreTables does not match).
	DoTables []TablePattern `json:"do-tables,omitempty" toml:"do-tables,omitempty" yaml:"do-tables,omitempty"`
	// IgnoreDBs are schema patterns never replicated; used only when DoDBs
	// is empty.
	IgnoreDBs []string `json:"ignore-dbs,omitempty" toml:"ignore-dbs,omitempty" yaml:"ignore-dbs,omitempty"`
	// IgnoreTables are tables not replicated, unless DoTables matches them.
	IgnoreTables []TablePattern `json:"ignore-tables,omitempty" toml:"ignore-tables,omitempty" yaml:"ignore-tables,omitempty"`
	// CaseSensitive makes every pattern of the task (block-allow list,
	// event filters, routes) match names case-sensitively. Default false,
	// as in DM.
	CaseSensitive bool `json:"case-sensitive,omitempty" toml:"case-sensitive,omitempty" yaml:"case-sensitive,omitempty"`
}

// TablePattern names tables in a BlockAllowList: a schema pattern and a
// table pattern, both required.
type TablePattern struct {
	// Schema is the schema pattern (DM's db-name).
	Schema string `json:"db-name" toml:"db-name" yaml:"db-name"`
	// Name is the table pattern (DM's tbl-name).
	Name string `json:"tbl-name" toml:"tbl-name" yaml:"tbl-name"`
}

// Actions of an EventFilterRule.
const (
	// EventActionDo keeps only the events a rule matches, on the tables it
	// applies to.
	EventActionDo = "Do"
	// EventActionIgnore skips the events a rule matches.
	EventActionIgnore = "Ignore"
)

// EventFilterRule is one of DM's binlog event filter rules: it drops
// (Action "Ignore") or keeps only (Action "Do") the events of the given
// kinds, or the DDL statements whose text matches SQLPattern, on the tables
// its patterns match (patterns as in BlockAllowList, without regular
// expressions). Any rule that skips an event wins; the order of rules
// does not matter. A Do rule skips every event it does not list, row events
// included, on every table it applies to.
type EventFilterRule struct {
	// SchemaPattern (required) and TablePattern select the tables the rule
	// applies to. An empty TablePattern applies the rule to every table of
	// the matching schemas and to their schema-level statements.
	SchemaPattern string `json:"schema-pattern" toml:"schema-pattern" yaml:"schema-pattern"`
	TablePattern  string `json:"table-pattern,omitempty" toml:"table-pattern,omitempty" yaml:"table-pattern,omitempty"`
	// Events are event names, case and spacing aside: "insert", "update",
	// "delete"; "create database", "drop database", "alter database",
	// "create table", "drop table", "alter table", "rename table",
	// "truncate table", "create index", "drop index", "create view",
	// "drop view" (and "create schema" and the like for the database
	// ones); "all", "all dml", "all ddl" match every event, every row
	// event, every DDL; "none", "none dml", "none ddl" match nothing of
	// their class.
	Events []string `json:"events,omitempty" toml:"events,omitempty" yaml:"events,omitempty"`
	// SQLPattern are regular expressions (RE2, case-insensitive) matched
	// against a DDL statement's text.
	SQLPattern []string `json:"sql-pattern,omitempty" toml:"sql-pattern,omitempty" yaml:"sql-pattern,omitempty"`
	// Action is EventActionDo or EventActionIgnore (case-insensitive).
	Action string `json:"action" toml:"action" yaml:"action"`
}

// RouteRule renames the schemas and tables it matches downstream (DM's
// routes); many shard tables may route to one. Patterns are those of
// BlockAllowList, without regular expressions. A rule with a TablePattern
// is table-level, one without schema-level. For a table the table-level
// rules that match apply, or when none does the schema-level ones (and
// always those for a schema-level statement); among those the most specific
// wins (a pattern without wildcards beats any with, then more literal
// characters, then more '?' and [...], then fewer '*'). Two rules that could
// match one name with neither more specific are refused. Merging shards is
// two rules: shard_*.t_* -> all.t for the tables, and shard_* -> all for the
// schemas' other tables and their CREATE/DROP DATABASE.
type RouteRule struct {
	// SchemaPattern (required) and TablePattern select the upstream names.
	SchemaPattern string `json:"schema-pattern" toml:"schema-pattern" yaml:"schema-pattern"`
	TablePattern  string `json:"table-pattern,omitempty" toml:"table-pattern,omitempty" yaml:"table-pattern,omitempty"`
	// TargetSchema and TargetTable are the downstream names; an empty one
	// keeps the upstream name. A schema-level rule needs TargetSchema and
	// cannot have TargetTable.
	TargetSchema string `json:"target-schema,omitempty" toml:"target-schema,omitempty" yaml:"target-schema,omitempty"`
	TargetTable  string `json:"target-table,omitempty" toml:"target-table,omitempty" yaml:"target-table,omitempty"`
}

// filterRules converts the block-allow list to internal/filter's shape.
func (b BlockAllowList) filterRules() filter.BlockAllowRules {
	tables := func(ts []TablePattern) []filter.Table {
		if ts == nil {
			return nil
		}
		out := make([]filter.Table, len(ts))
		for i, t := range ts {
			out[i] = filter.Table(t)
		}
		return out
	}
	return filter.BlockAllowRules{DoDBs: b.DoDBs, DoTables: tables(b.DoTables), IgnoreDBs: b.IgnoreDBs,
		IgnoreTables: tables(b.IgnoreTables), CaseSensitive: b.CaseSensitive}
}

// filterEventRules converts event filter rules to internal/filter's shape.
func filterEventRules(rs []EventFilterRule) []filter.EventRule {
	if rs == nil {
		return nil
	}
	out := make([]filter.EventRule, len(rs))
	for i, r := range rs {
		out[i] = filter.EventRule(r)
	}
	return out
}

// filterRouteRules converts route rules to internal/filter's shape.
func filterRouteRules(rs []RouteRule) []filter.RouteRule {
	if rs == nil {
		return nil
	}
	out := make([]filter.RouteRule, len(rs))
	for i, r := range rs {
		out[i] = filter.RouteRule(r)
	}
	return out
}

// rules is a task's compiled filters and routes.
type rules struct {
	ba     *filter.BlockAllowList
	events *filter.EventFilter
	router *filter.Router
	// online tells the tables of online schema change tools; nil when
	// their handling is off (see OnlineDDLConfig).
	online *onlineddl.Rules
}

func newRules(cfg SyncerConfig) (*rules, error) {
	ba, err := filter.NewBlockAllowList(cfg.Filter.filterRules())
	if err != nil {
		return nil, err
	}
	ev, err := filter.NewEventFilter(filterEventRules(cfg.EventFilters), cfg.Filter.CaseSensitive)
	if err != nil {
		return nil, err
	}
	rt, err := filter.NewRouter(filterRouteRules(cfg.Routes), cfg.Filter.CaseSensitive)
	if err != nil {
		return nil, err
	}
	online, err := cfg.onlineRules()
	if err != nil {
		return nil, err
	}
	return &rules{ba: ba, events: ev, router: rt, online: online}, nil
}

// allowed reports whether a table (or, with table "", a schema) is
// replicated. The tables of online schema change tools never are (see
// OnlineDDLConfig).
func (r *rules) allowed(schema, table string) bool {
	return r.ba.Allowed(schema, table) && !r.onlineTable(table)
}

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
