package filter

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Event names, as EventRule.Events lists them and Skip takes them. The DDL
// names are the statement kinds of internal/schema.
const (
	EventAll     = "all"
	EventAllDML  = "all dml"
	EventAllDDL  = "all ddl"
	EventNone    = "none"
	EventNoneDML = "none dml"
	EventNoneDDL = "none ddl"

	EventInsert = "insert"
	EventUpdate = "update"
	EventDelete = "delete"

	EventCreateDatabase = "create database"
	EventDropDatabase   = "drop database"
	EventAlterDatabase  = "alter database"
	EventCreateTable    = "create table"
	EventDropTable      = "drop table"
	EventAlterTable     = "alter table"
	EventRenameTable    = "rename table"
	EventTruncateTable  = "truncate table"
	EventCreateIndex    = "create index"
	EventDropIndex      = "drop index"
	EventCreateView     = "create view"
	EventDropView       = "drop view"
)

// eventClass tells DML from DDL for "all dml" / "all ddl".
var eventClass = map[string]string{
	EventInsert: "dml", EventUpdate: "dml", EventDelete: "dml",
	EventCreateDatabase: "ddl", EventDropDatabase: "ddl", EventAlterDatabase: "ddl",
	EventCreateTable: "ddl", EventDropTable: "ddl", EventAlterTable: "ddl",
	EventRenameTable: "ddl", EventTruncateTable: "ddl", EventCreateIndex: "ddl",
	EventDropIndex: "ddl", EventCreateView: "ddl", EventDropView: "ddl",
}

// eventAliases are DM's other spellings.
var eventAliases = map[string]string{
	"create schema": EventCreateDatabase,
	"drop schema":   EventDropDatabase,
	"alter schema":  EventAlterDatabase,
}

func normEvent(e string) string {
	e = strings.Join(strings.Fields(strings.ToLower(e)), " ")
	if a, ok := eventAliases[e]; ok {
		return a
	}
	return e
}

// Actions of an EventRule.
const (
	ActionDo     = "Do"
	ActionIgnore = "Ignore"
)

// EventRule is one of DM's binlog event filter rules.
type EventRule struct {
	// SchemaPattern and TablePattern select the tables the rule applies to
	// (wildcards, see the package doc). SchemaPattern is required; an empty
	// TablePattern applies the rule to every table of the matching schemas
	// and to their schema-level statements.
	SchemaPattern string `json:"schema-pattern" toml:"schema-pattern" yaml:"schema-pattern"`
	TablePattern  string `json:"table-pattern,omitempty" toml:"table-pattern,omitempty" yaml:"table-pattern,omitempty"`
	// Events are event names (the Event constants; case and spacing do
	// not matter).
	Events []string `json:"events,omitempty" toml:"events,omitempty" yaml:"events,omitempty"`
	// SQLPattern are regular expressions (RE2, case-insensitive) matched
	// against a DDL statement's text.
	SQLPattern []string `json:"sql-pattern,omitempty" toml:"sql-pattern,omitempty" yaml:"sql-pattern,omitempty"`
	// Action is "Do" (replicate only what the rule matches) or "Ignore"
	// (skip what it matches); case-insensitive.
	Action string `json:"action" toml:"action" yaml:"action"`
}

// EventFilter skips events by table, event type and DDL text. It is
// immutable and safe for concurrent use.
type EventFilter struct {
	caseSensitive bool
	rules         []eventRule
}

type eventRule struct {
	schema, table *pattern // table nil: schema-level rule
	events        []string // normalised, in the rule's order
	sql           *regexp.Regexp
	ignore        bool
}

// NewEventFilter checks the rules and builds the filter. It rejects empty
// schema patterns, unknown events and actions, invalid regular expressions,
// and rules with neither events nor SQL patterns (an Ignore rule would do
// nothing, a Do rule skip everything). Several rules may share their
// patterns: each applies (DM keeps only one of them).
func NewEventFilter(rules []EventRule, caseSensitive bool) (*EventFilter, error) {
	f := &EventFilter{caseSensitive: caseSensitive}
	var errs []error
	for i, r := range rules {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("rule %d (%s.%s): %s", i, r.SchemaPattern, r.TablePattern, fmt.Sprintf(format, args...)))
		}
		var er eventRule
		var err error
		if er.schema, err = compilePattern(r.SchemaPattern, caseSensitive, false); err != nil {
			bad("schema-pattern: %v", err)
			continue
		}
		if r.TablePattern != "" {
			if er.table, err = compilePattern(r.TablePattern, caseSensitive, false); err != nil {
				bad("table-pattern: %v", err)
				continue
			}
		}
		switch {
		case strings.EqualFold(r.Action, ActionDo):
		case strings.EqualFold(r.Action, ActionIgnore):
			er.ignore = true
		default:
			bad("action %q: want %q or %q", r.Action, ActionDo, ActionIgnore)
			continue
		}
		for _, e := range r.Events {
			n := normEvent(e)
			switch n {
			case EventAll, EventAllDML, EventAllDDL, EventNone, EventNoneDML, EventNoneDDL:
			default:
				if eventClass[n] == "" {
					bad("unknown event %q", e)
					continue
				}
			}
			er.events = append(er.events, n)
		}
		if len(r.SQLPattern) > 0 {
			if er.sql, err = regexp.Compile("(?i)(?:" + strings.Join(r.SQLPattern, ")|(?:") + ")"); err != nil {
				bad("sql-pattern: %v", err)
				continue
			}
		}
		if len(r.Events) == 0 && len(r.SQLPattern) == 0 {
			bad("neither events nor sql-pattern: the rule would %s", map[bool]string{true: "do nothing", false: "skip every event"}[er.ignore])
			continue
		}
		f.rules = append(f.rules, er)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("filter: event filter: %w", errors.Join(errs...))
	}
	return f, nil
}

// Skip reports whether an event on schema.table (table empty for
// schema-level statements) is to be skipped. event is an event name, or ""
// when only sql is to be judged; sql is the DDL text ("" for row events).
// The semantics are DM's binlog event filter's:
//
//  1. The rules that apply are those whose schema pattern matches schema
//     and whose table pattern is empty or matches table (a table pattern
//     matching the empty name, such as "*", also applies to schema-level
//     statements).
//  2. For each such rule, when event is not empty: if the rule's events
//     match it and the action is Ignore, the event is skipped; if they do
//     not match it and the action is Do, it is skipped too. "all" matches
//     every event, "all dml" insert/update/delete, "all ddl" every DDL;
//     "none", "none dml", "none ddl" match nothing of their class.
//  3. Then, when sql is not empty and the rule has SQL patterns: if one
//     matches and the action is Ignore, skipped; if none matches and the
//     action is Do, skipped.
//  4. An event no rule skips is replicated.
//
// The order of rules does not matter: any rule that says skip wins. Note
// that a Do rule skips every event it does not list, row events included,
// for every table it applies to, and that a rule without a table pattern
// applies to all the tables of its schemas: {schema-pattern: "store",
// events: ["drop table", "delete"], action: Ignore} keeps DELETEs and DROP
// TABLEs of every store table from the downstream, while {schema-pattern:
// "test_*", events: ["create database"], action: Do} lets nothing but CREATE
// DATABASE through for test_* (DM's "only migrate sharding DML" example
// pairs such a rule with a table-level one, which then has no effect on
// DML: both rules apply and the schema-level one skips it).
//
// The error is for an unknown event name.
func (f *EventFilter) Skip(schema, table, event, sql string) (bool, error) {
	ev := ""
	if event != "" {
		ev = normEvent(event)
		if eventClass[ev] == "" {
			return false, fmt.Errorf("filter: unknown event %q", event)
		}
	}
	if !f.caseSensitive {
		schema, table = strings.ToLower(schema), strings.ToLower(table)
	}
	for i := range f.rules {
		r := &f.rules[i]
		if !r.schema.match(schema) || (r.table != nil && !r.table.match(table)) {
			continue
		}
		if ev != "" {
			matched := r.matchEvent(ev)
			if matched == r.ignore {
				return true, nil
			}
		}
		if sql != "" && r.sql != nil {
			matched := r.sql.MatchString(sql)
			if matched == r.ignore {
				return true, nil
			}
		}
	}
	return false, nil
}

// matchEvent follows DM: the rule's events are tried in order, and the
// first that decides (all, none, all/none of the event's class, or the event
// itself) answers.
func (r *eventRule) matchEvent(ev string) bool {
	class := eventClass[ev]
	for _, e := range r.events {
		switch e {
		case EventAll, "all " + class, ev:
			return true
		case EventNone, "none " + class:
			return false
		}
	}
	return false
}
