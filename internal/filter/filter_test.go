package filter

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestPattern(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"doc*", []string{"doc", "document"}, []string{"dodo", "do"}},
		{"*", []string{"", "x", "anything"}, nil},
		{"t_?", []string{"t_1", "t_a"}, []string{"t_", "t_12"}},
		{"t_[0-9]", []string{"t_0", "t_9"}, []string{"t_a", "t_10"}},
		{"t_[!0-9]", []string{"t_a"}, []string{"t_1", "t_"}},
		{"t_[ab]*", []string{"t_a", "t_bcd"}, []string{"t_c"}},
		{"a*b*c", []string{"abc", "a_b_c", "abbbc", "acbc"}, []string{"ab", "acb"}},
		{"t[1", []string{"t[1"}, []string{"t1"}},
		{"exact", []string{"exact"}, []string{"exac", "exactly"}},
	}
	for _, tc := range tests {
		p, err := compilePattern(tc.pattern, true, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tc.match {
			if !p.match(n) {
				t.Errorf("%q should match %q", tc.pattern, n)
			}
		}
		for _, n := range tc.nomatch {
			if p.match(n) {
				t.Errorf("%q should not match %q", tc.pattern, n)
			}
		}
	}
	if _, err := compilePattern("", false, false); err == nil {
		t.Error("empty pattern accepted")
	}
	if _, err := compilePattern("~x", false, false); err == nil {
		t.Error("regex accepted where only wildcards are")
	}
	if _, err := compilePattern("~(", false, true); err == nil {
		t.Error("bad regex accepted")
	}
}

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"t_*", "t_1", true},
		{"t_*", "u_*", false},
		{"*_a", "b_*", true},
		{"a?", "?b", true},
		{"t_[0-4]", "t_[5-9]", false},
		{"t_[0-4]*", "t_[4-9]", true},
		{"abc", "abd", false},
		{"*", "", true},
		{"x*", "", false},
		{"a*c", "ab*", true},
		{"a*c", "b*", false},
	}
	for _, tc := range tests {
		a, _ := compilePattern(tc.a, true, false)
		b, _ := compilePattern(tc.b+"", true, false)
		if tc.b == "" {
			b = &pattern{}
		}
		if got := overlaps(a, b); got != tc.want {
			t.Errorf("overlaps(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := overlaps(b, a); got != tc.want {
			t.Errorf("overlaps(%q, %q) = %v", tc.b, tc.a, got)
		}
	}
}

func TestBlockAllowList(t *testing.T) {
	type check struct {
		schema, table string
		allowed       bool
	}
	tests := []struct {
		name   string
		rules  BlockAllowRules
		checks []check
	}{
		{
			name: "empty allows all but system schemas",
			checks: []check{
				{"db", "t", true}, {"db", "", true},
				{"mysql", "user", false}, {"information_schema", "", false}, {"PERFORMANCE_SCHEMA", "x", false}, {"sys", "x", false},
			},
		},
		{
			// DM's documented example (Block and allow table lists).
			name: "DM documentation example",
			rules: BlockAllowRules{
				DoDBs:     []string{"forum_backup_2018", "forum"},
				IgnoreDBs: []string{"~^forum_backup_"},
				DoTables: []Table{
					{Schema: "logs", Name: "~_2018$"},
					{Schema: "~^forum.*", Name: "messages"},
				},
				IgnoreTables: []Table{{Schema: "~.*", Name: "^messages.*"}},
			},
			checks: []check{
				{"logs", "messages_2016", false},
				{"logs", "messages_2017", false},
				{"logs", "messages_2018", false},
				{"forum_backup_2016", "messages", false},
				{"forum_backup_2017", "messages", false},
				{"forum", "users", false},
				{"forum", "messages", true},
				{"forum_backup_2018", "messages", true},
			},
		},
		{
			// DM's task file example: do-dbs with regex, ignore-dbs unused
			// once do-dbs is set.
			name: "DM task example",
			rules: BlockAllowRules{
				DoDBs:     []string{"~^test.*", "user"},
				IgnoreDBs: []string{"mysql", "account"},
				DoTables: []Table{
					{Schema: "~^test.*", Name: "~^t.*"},
					{Schema: "user", Name: "information"},
				},
				IgnoreTables: []Table{{Schema: "user", Name: "log"}},
			},
			checks: []check{
				{"test_1", "t_1", true}, {"test_1", "x", false}, {"test_1", "", true},
				{"user", "information", true}, {"user", "log", false}, {"user", "other", false},
				{"account", "x", false}, {"other", "t_1", false},
			},
		},
		{
			name: "ignore dbs and tables",
			rules: BlockAllowRules{
				IgnoreDBs:    []string{"tmp_*"},
				IgnoreTables: []Table{{Schema: "app", Name: "*_log"}},
			},
			checks: []check{
				{"tmp_1", "t", false}, {"tmp_1", "", false}, {"app", "access_log", false},
				{"app", "users", true}, {"app", "", true}, {"other", "x_log", true},
			},
		},
		{
			name: "do tables alone restricts tables and the schemas of none of them",
			rules: BlockAllowRules{
				DoTables: []Table{{Schema: "shard_*", Name: "t_?"}},
			},
			checks: []check{
				{"shard_1", "t_1", true}, {"shard_1", "t_10", false}, {"other", "t_1", false}, {"other", "", false}, {"shard_1", "", true},
			},
		},
		{
			name: "ignore tables with * ignore the schema",
			rules: BlockAllowRules{
				IgnoreTables: []Table{{Schema: "logs_*", Name: "*"}, {Schema: "app", Name: "tmp_*"}, {Schema: "rx", Name: "~.*"}},
			},
			checks: []check{
				{"logs_1", "t", false}, {"logs_1", "", false}, {"app", "tmp_1", false}, {"app", "", true}, {"rx", "", true}, {"other", "", true},
			},
		},
		{
			name: "do tables keep their schema over ignore tables",
			rules: BlockAllowRules{
				DoTables:     []Table{{Schema: "db", Name: "keep"}},
				IgnoreTables: []Table{{Schema: "db", Name: "*"}, {Schema: "gone", Name: "*"}},
			},
			checks: []check{{"db", "", true}, {"gone", "", false}, {"gone", "keep", false}},
		},
		{
			name: "do tables win over ignore tables",
			rules: BlockAllowRules{
				DoTables:     []Table{{Schema: "db", Name: "keep"}},
				IgnoreTables: []Table{{Schema: "db", Name: "*"}},
			},
			checks: []check{{"db", "keep", true}, {"db", "other", false}},
		},
		{
			name:   "case-insensitive by default",
			rules:  BlockAllowRules{DoDBs: []string{"Shop"}, DoTables: []Table{{Schema: "shop", Name: "Orders"}}},
			checks: []check{{"SHOP", "orders", true}, {"shop", "ORDERS", true}},
		},
		{
			name:   "case-sensitive",
			rules:  BlockAllowRules{DoDBs: []string{"Shop", "~^Re"}, CaseSensitive: true},
			checks: []check{{"Shop", "t", true}, {"shop", "t", false}, {"Reports", "t", true}, {"reports", "t", false}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBlockAllowList(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				if got := b.Allowed(c.schema, c.table); got != c.allowed {
					t.Errorf("Allowed(%q, %q) = %v, want %v", c.schema, c.table, got, c.allowed)
				}
			}
		})
	}

	_, err := NewBlockAllowList(BlockAllowRules{
		DoDBs:    []string{"", "~("},
		DoTables: []Table{{Schema: "a"}, {Name: "b"}},
	})
	for _, want := range []string{"do-dbs[0]", "do-dbs[1]", "do-tables[0] tbl-name", "do-tables[1] db-name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestEventFilter(t *testing.T) {
	type check struct {
		schema, table, event, sql string
		skip                      bool
	}
	tests := []struct {
		name          string
		rules         []EventRule
		caseSensitive bool
		checks        []check
	}{
		{
			// DM's filter tests (tidb-tools / tiflow binlog-filter).
			name: "DM unit cases",
			rules: []EventRule{
				{SchemaPattern: "Test_1_*", TablePattern: "abc*", Events: []string{"delete", "insert", "create index", "drop index", "drop view"}, SQLPattern: []string{"^DROP\\s+PROCEDURE", "^CREATE\\s+PROCEDURE"}, Action: "Ignore"},
				{SchemaPattern: "xxx_*", TablePattern: "abc_*", Events: []string{"all dml", "none ddl"}, Action: "Ignore"},
				{SchemaPattern: "yyy_*", TablePattern: "abc_*", Events: []string{"ALL DML"}, Action: "Do"},
			},
			checks: []check{
				{"test_1_a", "abc1", "delete", "", true},
				{"test_1_a", "abc1", "insert", "", true},
				{"test_1_a", "abc1", "update", "", false},
				{"test_1_a", "abc1", "create index", "", true},
				{"test_1_a", "abc1", "rename table", "", false},
				{"test_1_a", "abc1", "", "drop procedure abc", true},
				{"test_1_a", "abc1", "", "create procedure abc", true},
				{"test_1_a", "abc1", "", "create function abc", false},
				{"xxx_1", "abc_1", "", "create function abc", false},
				{"xxx_1", "abc_1", "insert", "", true},
				{"xxx_1", "abc_1", "create index", "", false},
				{"yyy_1", "abc_1", "insert", "", false},
				{"yyy_1", "abc_1", "create index", "", true},
				{"test_1_a", "abc1", "drop view", "", true},
				{"xxx_a", "", "insert", "", false},
			},
		},
		{
			name: "DM unit cases, case-sensitive",
			rules: []EventRule{
				{SchemaPattern: "Test_1_*", TablePattern: "abc*", Events: []string{"delete", "insert"}, Action: "Ignore"},
				{SchemaPattern: "xxx_*", TablePattern: "abc_*", Events: []string{"all dml", "none ddl"}, Action: "Ignore"},
			},
			caseSensitive: true,
			checks: []check{
				{"test_1_a", "abc1", "delete", "", false},
				{"Test_1_a", "abc1", "delete", "", true},
				{"xxx_1", "abc_1", "insert", "", true},
			},
		},
		{
			name:  "global schema rule applies to schema-level and table events",
			rules: []EventRule{{SchemaPattern: "*", SQLPattern: []string{"^FLUSH"}, Action: "Ignore"}},
			checks: []check{
				{"db", "tbl", "", "FLUSH ENGINE LOGS", true}, {"db", "", "", "FLUSH ENGINE LOGS", true},
				{"", "tbl", "", "FLUSH ENGINE LOGS", true}, {"", "", "", "FLUSH ENGINE LOGS", true},
				{"db", "tbl", "", "ALTER TABLE tbl ADD c int", false},
			},
		},
		{
			name:  "table pattern * also matches schema-level events",
			rules: []EventRule{{SchemaPattern: "*", TablePattern: "*", SQLPattern: []string{"^FLUSH"}, Action: "Ignore"}},
			checks: []check{
				{"db", "", "", "FLUSH TABLES", true}, {"", "", "", "FLUSH TABLES", true},
			},
		},
		{
			// DM documentation: filter all sharding deletion operations.
			name: "DM example: filter sharding deletions",
			rules: []EventRule{
				{SchemaPattern: "test_*", TablePattern: "t_*", Events: []string{"truncate table", "drop table", "delete"}, Action: "Ignore"},
				{SchemaPattern: "test_*", Events: []string{"drop database"}, Action: "Ignore"},
			},
			checks: []check{
				{"test_1", "t_1", "delete", "", true},
				{"test_1", "t_1", "truncate table", "TRUNCATE TABLE t_1", true},
				{"test_1", "t_1", "drop table", "DROP TABLE t_1", true},
				{"test_1", "", "drop database", "DROP DATABASE test_1", true},
				{"test_1", "t_1", "insert", "", false},
				{"test_1", "t_1", "update", "", false},
				{"test_1", "t_1", "alter table", "ALTER TABLE t_1 ADD c int", false},
				{"test_1", "", "create database", "CREATE DATABASE test_1", false},
				{"test_1", "other", "delete", "", false},
				{"prod", "t_1", "delete", "", false},
			},
		},
		{
			// DM documentation: filter the statements TiDB does not
			// support, and the parser's global rule.
			name: "DM example: filter procedures and partitions by SQL",
			rules: []EventRule{
				{SchemaPattern: "test_*", TablePattern: "t_*", SQLPattern: []string{"^DROP\\s+PROCEDURE", "^CREATE\\s+PROCEDURE"}, Action: "Ignore"},
				{SchemaPattern: "*", SQLPattern: []string{"ALTER\\s+TABLE[\\s\\S]*ADD\\s+PARTITION", "ALTER\\s+TABLE[\\s\\S]*DROP\\s+PARTITION"}, Action: "Ignore"},
			},
			checks: []check{
				{"test_1", "t_1", "", "CREATE PROCEDURE p() BEGIN END", true},
				{"test_1", "t_1", "", "drop procedure p", true},
				{"other", "x", "alter table", "ALTER TABLE x ADD PARTITION (PARTITION p1 VALUES LESS THAN (10))", true},
				{"other", "x", "alter table", "alter table x\n drop partition p0", true},
				{"other", "x", "alter table", "ALTER TABLE x ADD COLUMN c int", false},
				{"test_1", "t_1", "insert", "", false},
			},
		},
		{
			// DM documentation (simple scenario): a schema-level rule
			// filters events of all the schema's tables.
			name:  "DM example: store filter rule",
			rules: []EventRule{{SchemaPattern: "store", Events: []string{"drop database", "truncate table", "drop table", "delete"}, Action: "Ignore"}},
			checks: []check{
				{"store", "store_bj", "delete", "", true},
				{"store", "store_bj", "truncate table", "", true},
				{"store", "", "drop database", "", true},
				{"store", "store_bj", "insert", "", false},
				{"store", "store_bj", "update", "", false},
			},
		},
		{
			// DM documentation's "only migrate sharding DML" rules, with
			// the effect DM's code gives them: the schema-level Do rule
			// also applies to the tables and lets only CREATE DATABASE
			// through.
			name: "DM example: Do rules",
			rules: []EventRule{
				{SchemaPattern: "test_*", TablePattern: "t_*", Events: []string{"create table", "all dml"}, Action: "Do"},
				{SchemaPattern: "test_*", Events: []string{"create database"}, Action: "Do"},
			},
			checks: []check{
				{"test_1", "", "create database", "CREATE DATABASE test_1", false},
				{"test_1", "", "drop database", "DROP DATABASE test_1", true},
				{"test_1", "t_1", "insert", "", true},
				{"test_1", "t_1", "create table", "", true},
				{"other", "t_1", "insert", "", false},
			},
		},
		{
			name: "table-level Do rule keeps only its events",
			rules: []EventRule{
				{SchemaPattern: "test_*", TablePattern: "t_*", Events: []string{"create table", "all dml"}, Action: "Do"},
			},
			checks: []check{
				{"test_1", "t_1", "insert", "", false},
				{"test_1", "t_1", "update", "", false},
				{"test_1", "t_1", "create table", "CREATE TABLE t_1 (a int)", false},
				{"test_1", "t_1", "drop table", "DROP TABLE t_1", true},
				{"test_1", "t_1", "alter table", "ALTER TABLE t_1 ADD c int", true},
				{"test_1", "", "create database", "CREATE DATABASE test_1", false},
				{"test_1", "u", "drop table", "", false},
			},
		},
		{
			name: "Do rule with SQL patterns: events first, then text",
			rules: []EventRule{
				{SchemaPattern: "db", Events: []string{"all ddl"}, SQLPattern: []string{"ADD\\s+COLUMN"}, Action: "Do"},
			},
			checks: []check{
				{"db", "t", "alter table", "ALTER TABLE t ADD COLUMN c int", false},
				{"db", "t", "alter table", "ALTER TABLE t DROP COLUMN c", true},
				{"db", "t", "insert", "", true},
			},
		},
		{
			name: "rules sharing patterns all apply",
			rules: []EventRule{
				{SchemaPattern: "*", TablePattern: "*", SQLPattern: []string{"ADD COLUMN a_col"}, Action: "Ignore"},
				{SchemaPattern: "*", TablePattern: "*", SQLPattern: []string{"ADD COLUMN b_col"}, Action: "Ignore"},
			},
			checks: []check{
				{"db", "t", "alter table", "ALTER TABLE t ADD COLUMN a_col int", true},
				{"db", "t", "alter table", "ALTER TABLE t ADD COLUMN b_col int", true},
				{"db", "t", "alter table", "ALTER TABLE t ADD COLUMN c_col int", false},
			},
		},
		{
			name: "event order decides as in DM",
			rules: []EventRule{
				{SchemaPattern: "a", Events: []string{"none", "all"}, Action: "Ignore"},
				{SchemaPattern: "b", Events: []string{"all", "none"}, Action: "Ignore"},
				{SchemaPattern: "c", Events: []string{"none dml", "insert"}, Action: "Ignore"},
				{SchemaPattern: "d", Events: []string{"create schema"}, Action: "ignore"},
			},
			checks: []check{
				{"a", "t", "insert", "", false},
				{"b", "t", "insert", "", true},
				{"c", "t", "insert", "", false},
				{"c", "t", "create table", "", false},
				{"d", "", "create database", "", true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewEventFilter(tc.rules, tc.caseSensitive)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				got, err := f.Skip(c.schema, c.table, c.event, c.sql)
				if err != nil {
					t.Fatal(err)
				}
				if got != c.skip {
					t.Errorf("Skip(%q, %q, %q, %q) = %v, want %v", c.schema, c.table, c.event, c.sql, got, c.skip)
				}
			}
		})
	}

	f, _ := NewEventFilter(nil, false)
	if _, err := f.Skip("db", "t", "create", ""); err == nil {
		t.Error("unknown event accepted by Skip")
	}
	_, err := NewEventFilter([]EventRule{
		{TablePattern: "t", Events: []string{"insert"}, Action: "Ignore"},
		{SchemaPattern: "db", Events: []string{"wrong event"}, Action: "Ignore"},
		{SchemaPattern: "db", Events: []string{"insert"}, Action: "Error"},
		{SchemaPattern: "db", SQLPattern: []string{"("}, Action: "Do"},
		{SchemaPattern: "db", Action: "Do"},
	}, false)
	for _, want := range []string{"rule 0", "rule 1", "rule 2", "rule 3", "rule 4", "wrong event", `"Error"`, "skip every event"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestRouter(t *testing.T) {
	type check struct{ schema, table, wantSchema, wantTable string }
	tests := []struct {
		name   string
		rules  []RouteRule
		checks []check
	}{
		{
			// DM documentation: merge test_*.t_* into test.t, with the
			// schema rule for the schemas' other statements.
			name: "DM example: merge shards",
			rules: []RouteRule{
				{SchemaPattern: "test_*", TablePattern: "t_*", TargetSchema: "test", TargetTable: "t"},
				{SchemaPattern: "test_*", TargetSchema: "test"},
			},
			checks: []check{
				{"test_1", "t_1", "test", "t"},
				{"test_2", "t_99", "test", "t"},
				{"test_1", "other", "test", "other"},
				{"test_1", "", "test", ""},
				{"prod", "t_1", "prod", "t_1"},
				{"prod", "", "prod", ""},
			},
		},
		{
			name: "merge shard_* into all.t",
			rules: []RouteRule{
				{SchemaPattern: "shard_*", TablePattern: "t_*", TargetSchema: "all", TargetTable: "t"},
			},
			checks: []check{
				{"shard_1", "t_1", "all", "t"}, {"shard_2", "t_2", "all", "t"},
				{"shard_1", "u", "shard_1", "u"}, {"shard_1", "", "shard_1", ""},
			},
		},
		{
			name: "most specific wins",
			rules: []RouteRule{
				{SchemaPattern: "*", TablePattern: "*", TargetSchema: "catchall"},
				{SchemaPattern: "shard_*", TablePattern: "t_*", TargetSchema: "all", TargetTable: "t"},
				{SchemaPattern: "shard_*", TablePattern: "t_special", TargetSchema: "all", TargetTable: "special"},
				{SchemaPattern: "shard_1", TablePattern: "t_special", TargetSchema: "one", TargetTable: "special"},
				{SchemaPattern: "shard_*", TablePattern: "t_?", TargetSchema: "all", TargetTable: "short"},
				{SchemaPattern: "*", TargetSchema: "s_catchall"},
				{SchemaPattern: "shard_*", TargetSchema: "s_all"},
			},
			checks: []check{
				{"shard_2", "t_long", "all", "t"},
				{"shard_2", "t_special", "all", "special"},
				{"shard_1", "t_special", "one", "special"},
				{"shard_2", "t_9", "all", "short"},
				{"x", "y", "catchall", "y"},
				{"shard_2", "", "s_all", ""},
				{"x", "", "s_catchall", ""},
			},
		},
		{
			name:   "case-insensitive match keeps target case",
			rules:  []RouteRule{{SchemaPattern: "Shard_*", TablePattern: "T_*", TargetSchema: "All", TargetTable: "T"}},
			checks: []check{{"SHARD_1", "t_1", "All", "T"}, {"Other", "T_1", "Other", "T_1"}},
		},
		{
			name:   "table rule renaming only the table",
			rules:  []RouteRule{{SchemaPattern: "db", TablePattern: "old", TargetTable: "new"}},
			checks: []check{{"db", "old", "db", "new"}, {"db", "", "db", ""}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRouter(tc.rules, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				s, tb := r.Route(c.schema, c.table)
				if s != c.wantSchema || tb != c.wantTable {
					t.Errorf("Route(%q, %q) = %q, %q; want %q, %q", c.schema, c.table, s, tb, c.wantSchema, c.wantTable)
				}
			}
		})
	}

	r, err := NewRouter([]RouteRule{{SchemaPattern: "Db", TargetSchema: "x"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := r.Route("db", "t"); s != "db" {
		t.Errorf("case-sensitive router routed db to %s", s)
	}

	invalid := []struct {
		name  string
		rules []RouteRule
		want  string
	}{
		{"empty schema pattern", []RouteRule{{TablePattern: "t", TargetSchema: "x"}}, "schema-pattern: empty pattern"},
		{"renames nothing", []RouteRule{{SchemaPattern: "a", TablePattern: "t"}}, "neither target-schema nor target-table"},
		{"schema rule without target", []RouteRule{{SchemaPattern: "a"}}, "schema-level rule without target-schema"},
		{"schema rule with target table", []RouteRule{{SchemaPattern: "a", TargetSchema: "x", TargetTable: "t"}}, "needs a table-pattern"},
		{"regex", []RouteRule{{SchemaPattern: "~a", TargetSchema: "x"}}, "only supported in block/allow lists"},
		{"duplicate", []RouteRule{
			{SchemaPattern: "s_*", TablePattern: "t_*", TargetSchema: "x"},
			{SchemaPattern: "S_*", TablePattern: "T_*", TargetSchema: "y"},
		}, "rules 0 (s_*.t_* -> x) and 1 (S_*.T_* -> y) can both match the same table"},
		{"crossed", []RouteRule{
			{SchemaPattern: "s_1", TablePattern: "t_*", TargetSchema: "x"},
			{SchemaPattern: "s_*", TablePattern: "t_1", TargetSchema: "y"},
		}, "neither is more specific"},
		{"same specificity", []RouteRule{
			{SchemaPattern: "a?", TargetSchema: "x"},
			{SchemaPattern: "?b", TargetSchema: "y"},
		}, "can both match the same schema"},
	}
	for _, tc := range invalid {
		if _, err := NewRouter(tc.rules, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// Patterns that cannot match the same names are not ambiguous.
	if _, err := NewRouter([]RouteRule{
		{SchemaPattern: "a?", TargetSchema: "x"},
		{SchemaPattern: "b?", TargetSchema: "y"},
		{SchemaPattern: "s", TablePattern: "t_[0-4]", TargetSchema: "x"},
		{SchemaPattern: "s", TablePattern: "t_[5-9]", TargetSchema: "y"},
	}, false); err != nil {
		t.Errorf("disjoint rules rejected: %v", err)
	}
}

// TestConfigDecoding checks that the rules decode from task files in DM's
// key names.
func TestConfigDecoding(t *testing.T) {
	const doc = `
[block-allow-list]
do-dbs = ["~^shard_", "main"]
case-sensitive = true
[[block-allow-list.do-tables]]
db-name = "shard_*"
tbl-name = "t_*"

[[filters]]
schema-pattern = "shard_*"
table-pattern = "t_*"
events = ["truncate table", "drop table"]
sql-pattern = ["^DROP\\s+PROCEDURE"]
action = "Ignore"

[[routes]]
schema-pattern = "shard_*"
table-pattern = "t_*"
target-schema = "all"
target-table = "t"
`
	var cfg struct {
		BAList  BlockAllowRules `toml:"block-allow-list" json:"block-allow-list"`
		Filters []EventRule     `toml:"filters" json:"filters"`
		Routes  []RouteRule     `toml:"routes" json:"routes"`
	}
	if _, err := toml.Decode(doc, &cfg); err != nil {
		t.Fatal(err)
	}
	b, err := NewBlockAllowList(cfg.BAList)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewEventFilter(cfg.Filters, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRouter(cfg.Routes, false)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Allowed("shard_1", "t_1") || b.Allowed("shard_1", "u") || b.Allowed("Shard_1", "t_1") {
		t.Error("decoded block-allow-list misbehaves")
	}
	if skip, _ := f.Skip("shard_1", "t_1", "drop table", "DROP TABLE t_1"); !skip {
		t.Error("decoded filter does not skip DROP TABLE")
	}
	if s, tb := r.Route("shard_3", "t_3"); s != "all" || tb != "t" {
		t.Errorf("decoded route: %s.%s", s, tb)
	}

	// The same through JSON.
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"do-dbs"`, `"db-name"`, `"tbl-name"`, `"schema-pattern"`, `"sql-pattern"`, `"target-schema"`, `"case-sensitive"`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("JSON %s lacks %s", js, key)
		}
	}
	var back struct {
		BAList  BlockAllowRules `json:"block-allow-list"`
		Filters []EventRule     `json:"filters"`
		Routes  []RouteRule     `json:"routes"`
	}
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back.Routes[0] != cfg.Routes[0] || back.BAList.DoTables[0] != cfg.BAList.DoTables[0] {
		t.Errorf("JSON round trip: %+v", back)
	}
}
