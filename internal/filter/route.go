package filter

import (
	"errors"
	"fmt"
	"strings"
)

// RouteRule renames the schemas and tables it matches (DM's routes).
type RouteRule struct {
	// SchemaPattern and TablePattern select the upstream names (wildcards,
	// see the package doc). SchemaPattern is required. A rule with a
	// TablePattern is a table-level rule; without one, a schema-level rule.
	SchemaPattern string `json:"schema-pattern" toml:"schema-pattern" yaml:"schema-pattern"`
	TablePattern  string `json:"table-pattern,omitempty" toml:"table-pattern,omitempty" yaml:"table-pattern,omitempty"`
	// TargetSchema and TargetTable are the downstream names; an empty one
	// keeps the upstream name. A schema-level rule needs TargetSchema and
	// cannot have TargetTable.
	TargetSchema string `json:"target-schema,omitempty" toml:"target-schema,omitempty" yaml:"target-schema,omitempty"`
	TargetTable  string `json:"target-table,omitempty" toml:"target-table,omitempty" yaml:"target-table,omitempty"`
}

// Router maps upstream schema and table names to downstream ones. It is
// immutable and safe for concurrent use.
type Router struct {
	caseSensitive bool
	tableRules    []routeRule
	schemaRules   []routeRule
}

type routeRule struct {
	RouteRule
	index         int
	schema, table *pattern
	ss, ts        specificity
}

// dominates reports whether r is more specific than o: at least as specific
// in both schema and table pattern, and more in one.
func (r *routeRule) dominates(o *routeRule) bool {
	cs, ct := compareSpecificity(r.ss, o.ss), compareSpecificity(r.ts, o.ts)
	return cs >= 0 && ct >= 0 && (cs > 0 || ct > 0)
}

// NewRouter checks the rules and builds the router. Besides malformed rules
// (empty schema pattern, a rule that renames nothing, a schema-level rule
// with a target table) it rejects ambiguous ones: two rules of the same level
// that can match the same name where neither is more specific than the
// other (see Route), identical patterns included.
func NewRouter(rules []RouteRule, caseSensitive bool) (*Router, error) {
	r := &Router{caseSensitive: caseSensitive}
	var errs []error
	for i, rule := range rules {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("rule %d (%s): %s", i, describeRule(rule), fmt.Sprintf(format, args...)))
		}
		rr := routeRule{RouteRule: rule, index: i}
		var err error
		if rr.schema, err = compilePattern(rule.SchemaPattern, caseSensitive, false); err != nil {
			bad("schema-pattern: %v", err)
			continue
		}
		rr.ss = rr.schema.specificity()
		switch {
		case rule.TablePattern == "" && rule.TargetTable != "":
			bad("target-table %q needs a table-pattern: a schema-level rule only renames schemas", rule.TargetTable)
			continue
		case rule.TablePattern == "" && rule.TargetSchema == "":
			bad("schema-level rule without target-schema")
			continue
		case rule.TargetSchema == "" && rule.TargetTable == "":
			bad("neither target-schema nor target-table")
			continue
		}
		if rule.TablePattern == "" {
			r.schemaRules = append(r.schemaRules, rr)
			continue
		}
		if rr.table, err = compilePattern(rule.TablePattern, caseSensitive, false); err != nil {
			bad("table-pattern: %v", err)
			continue
		}
		rr.ts = rr.table.specificity()
		r.tableRules = append(r.tableRules, rr)
	}
	errs = append(errs, ambiguities(r.tableRules)...)
	errs = append(errs, ambiguities(r.schemaRules)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("filter: routes: %w", errors.Join(errs...))
	}
	return r, nil
}

func describeRule(r RouteRule) string {
	from, to := r.SchemaPattern, r.TargetSchema
	if r.TablePattern != "" {
		from += "." + r.TablePattern
	}
	if r.TargetTable != "" {
		to += "." + r.TargetTable
	}
	return from + " -> " + to
}

// ambiguities finds pairs of rules that can match one name with neither
// more specific.
func ambiguities(rules []routeRule) []error {
	var errs []error
	for i := range rules {
		for j := i + 1; j < len(rules); j++ {
			a, b := &rules[i], &rules[j]
			if a.dominates(b) || b.dominates(a) {
				continue
			}
			if !overlaps(a.schema, b.schema) || (a.table != nil && !overlaps(a.table, b.table)) {
				continue
			}
			errs = append(errs, fmt.Errorf("rules %d (%s) and %d (%s) can both match the same %s and neither is more specific",
				a.index, describeRule(a.RouteRule), b.index, describeRule(b.RouteRule), map[bool]string{true: "table", false: "schema"}[a.table != nil]))
		}
	}
	return errs
}

// Route returns the downstream names for upstream schema.table (table
// empty for schema-level statements, in which case targetTable is empty).
//
//   - For a table, the table-level rules whose schema and table patterns
//     both match apply; when none does (and always for a schema-level
//     statement) the schema-level rules whose schema pattern matches apply.
//   - Among the rules that apply, the most specific wins: a rule wins over
//     another when its schema and table patterns are each at least as
//     specific and one is more. A pattern without wildcards is more
//     specific than any with; then the one with more literal characters;
//     then more single-character wildcards (? and [...]); then fewer *.
//     NewRouter has made sure one rule always wins.
//   - The winner's TargetSchema and TargetTable replace the names; an empty
//     target keeps the name, and so does a name no rule matches.
//
// Merging shards is two rules: shard_*.t_* -> all.t for the tables, and the
// schema-level shard_* -> all for the rest of the schemas' tables and their
// CREATE/DROP DATABASE.
func (r *Router) Route(schema, table string) (targetSchema, targetTable string) {
	s, t := schema, table
	if !r.caseSensitive {
		s, t = strings.ToLower(s), strings.ToLower(t)
	}
	var best *routeRule
	if table != "" {
		best = winner(r.tableRules, s, t)
	}
	if best == nil {
		best = winner(r.schemaRules, s, t)
	}
	targetSchema, targetTable = schema, table
	if best == nil {
		return targetSchema, targetTable
	}
	if best.TargetSchema != "" {
		targetSchema = best.TargetSchema
	}
	if best.TargetTable != "" && table != "" {
		targetTable = best.TargetTable
	}
	return targetSchema, targetTable
}

func winner(rules []routeRule, schema, table string) *routeRule {
	var best *routeRule
	for i := range rules {
		rr := &rules[i]
		if !rr.schema.match(schema) || (rr.table != nil && !rr.table.match(table)) {
			continue
		}
		if best == nil || rr.dominates(best) {
			best = rr
		}
	}
	return best
}
