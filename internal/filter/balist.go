package filter

import (
	"errors"
	"fmt"
	"strings"
)

// Table is a pair of schema and table patterns in a block/allow list.
type Table struct {
	Schema string `json:"db-name" toml:"db-name" yaml:"db-name"`
	Name   string `json:"tbl-name" toml:"tbl-name" yaml:"tbl-name"`
}

// BlockAllowRules is DM's block-allow-list: which schemas and tables to
// replicate. Patterns are described in the package doc (wildcards, or
// ~regex).
type BlockAllowRules struct {
	DoDBs        []string `json:"do-dbs,omitempty" toml:"do-dbs,omitempty" yaml:"do-dbs,omitempty"`
	DoTables     []Table  `json:"do-tables,omitempty" toml:"do-tables,omitempty" yaml:"do-tables,omitempty"`
	IgnoreDBs    []string `json:"ignore-dbs,omitempty" toml:"ignore-dbs,omitempty" yaml:"ignore-dbs,omitempty"`
	IgnoreTables []Table  `json:"ignore-tables,omitempty" toml:"ignore-tables,omitempty" yaml:"ignore-tables,omitempty"`
	// CaseSensitive makes patterns match names case-sensitively. Default
	// false, as DM's.
	CaseSensitive bool `json:"case-sensitive,omitempty" toml:"case-sensitive,omitempty" yaml:"case-sensitive,omitempty"`
}

// BlockAllowList decides which schemas and tables are replicated. It is
// immutable and safe for concurrent use.
type BlockAllowList struct {
	caseSensitive bool
	doDBs         []*pattern
	ignoreDBs     []*pattern
	doTables      []tablePattern
	ignoreTables  []tablePattern
}

type tablePattern struct{ schema, table *pattern }

func (t tablePattern) match(schema, table string) bool {
	return t.schema.match(schema) && t.table.match(table)
}

// NewBlockAllowList checks the rules and builds the list. A zero
// BlockAllowRules allows every table outside the system schemas.
func NewBlockAllowList(r BlockAllowRules) (*BlockAllowList, error) {
	b := &BlockAllowList{caseSensitive: r.CaseSensitive}
	var errs []error
	dbs := func(field string, in []string) []*pattern {
		var out []*pattern
		for i, s := range in {
			p, err := compilePattern(s, r.CaseSensitive, true)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
				continue
			}
			out = append(out, p)
		}
		return out
	}
	tables := func(field string, in []Table) []tablePattern {
		var out []tablePattern
		for i, t := range in {
			sp, err := compilePattern(t.Schema, r.CaseSensitive, true)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d] db-name: %w", field, i, err))
				continue
			}
			tp, err := compilePattern(t.Name, r.CaseSensitive, true)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d] tbl-name: %w", field, i, err))
				continue
			}
			out = append(out, tablePattern{sp, tp})
		}
		return out
	}
	b.doDBs = dbs("do-dbs", r.DoDBs)
	b.ignoreDBs = dbs("ignore-dbs", r.IgnoreDBs)
	b.doTables = tables("do-tables", r.DoTables)
	b.ignoreTables = tables("ignore-tables", r.IgnoreTables)
	if len(errs) > 0 {
		return nil, fmt.Errorf("filter: block-allow-list: %w", errors.Join(errs...))
	}
	return b, nil
}

// Allowed reports whether changes to schema.table are replicated; with
// table empty, whether schema-level statements (CREATE/DROP DATABASE) on
// schema are. The precedence is DM's, after MySQL's replication filters:
//
//  1. The system schemas (mysql, information_schema, performance_schema,
//     sys) are never replicated.
//  2. Schema stage: when DoDBs is not empty, a schema matching none of them
//     is refused (IgnoreDBs is then not consulted); otherwise a schema
//     matching one of IgnoreDBs is refused.
//  3. Table stage: a table matching one of DoTables is allowed; otherwise a
//     table matching one of IgnoreTables is refused; otherwise the table is
//     allowed only when DoTables is empty.
//  4. A schema-level statement (table empty) that passed stage 2 is allowed
//     when some table of the schema could pass stage 3: when one of
//     DoTables names the schema, or when DoTables is empty and no
//     IgnoreTables entry names the schema with the table pattern "*" (a
//     regular expression is never taken to match every name).
//
// So a table must pass both stages, and a schema none of whose tables could
// be replicated (DoTables 'app.*' and the schema 'other', say) is not
// created, altered or dropped downstream either.
func (b *BlockAllowList) Allowed(schema, table string) bool {
	if IsSystemSchema(schema) {
		return false
	}
	if !b.caseSensitive {
		schema, table = strings.ToLower(schema), strings.ToLower(table)
	}
	if len(b.doDBs) > 0 {
		if !anyMatch(b.doDBs, schema) {
			return false
		}
	} else if anyMatch(b.ignoreDBs, schema) {
		return false
	}
	if table == "" {
		for _, t := range b.doTables {
			if t.schema.match(schema) {
				return true
			}
		}
		for _, t := range b.ignoreTables {
			if t.schema.match(schema) && t.table.matchesAll() {
				return false
			}
		}
		return len(b.doTables) == 0
	}
	for _, t := range b.doTables {
		if t.match(schema, table) {
			return true
		}
	}
	for _, t := range b.ignoreTables {
		if t.match(schema, table) {
			return false
		}
	}
	return len(b.doTables) == 0
}

func anyMatch(ps []*pattern, name string) bool {
	for _, p := range ps {
		if p.match(name) {
			return true
		}
	}
	return false
}
