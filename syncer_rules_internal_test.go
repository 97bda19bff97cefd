package dmworker

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/dmworker/dmworker/internal/filter"
)

// TestFilterRootTypesMatchInternal: the root rule types have the fields and
// tags (json, toml, yaml) of internal/filter's, which they replaced as
// aliases: what either encodes, the other decodes the same.
func TestFilterRootTypesMatchInternal(t *testing.T) {
	same := map[reflect.Type]reflect.Type{
		reflect.TypeFor[BlockAllowList]():  reflect.TypeFor[filter.BlockAllowRules](),
		reflect.TypeFor[TablePattern]():    reflect.TypeFor[filter.Table](),
		reflect.TypeFor[EventFilterRule](): reflect.TypeFor[filter.EventRule](),
		reflect.TypeFor[RouteRule]():       reflect.TypeFor[filter.RouteRule](),
	}
	var sameType func(r, i reflect.Type) bool
	sameType = func(r, i reflect.Type) bool {
		if m, ok := same[r]; ok {
			return m == i
		}
		if r.Kind() == reflect.Slice && i.Kind() == reflect.Slice {
			return sameType(r.Elem(), i.Elem())
		}
		return r == i
	}
	for root, in := range same {
		if root.NumField() != in.NumField() {
			t.Errorf("%s has %d fields, %s %d", root, root.NumField(), in, in.NumField())
			continue
		}
		for i := range root.NumField() {
			rf, inf := root.Field(i), in.Field(i)
			if rf.Name != inf.Name || rf.Tag != inf.Tag || !sameType(rf.Type, inf.Type) {
				t.Errorf("%s.%s %s `%s` differs from %s.%s %s `%s`", root, rf.Name, rf.Type, rf.Tag, in, inf.Name, inf.Type, inf.Tag)
			}
		}
	}
}

// TestFilterRulesStoredConfigs: a subtask config stored (in etcd, in a
// file) when the rules were internal/filter's types decodes into the root
// types, encodes back to the same bytes, and converts to the rules it
// stored.
func TestFilterRulesStoredConfigs(t *testing.T) {
	type storedRules struct {
		Filter       filter.BlockAllowRules `json:"block-allow-list,omitzero" toml:"block-allow-list"`
		EventFilters []filter.EventRule     `json:"event-filters,omitempty" toml:"event-filters"`
		Routes       []filter.RouteRule     `json:"routes,omitempty" toml:"routes"`
	}
	old := storedRules{
		Filter: filter.BlockAllowRules{DoDBs: []string{"shop", "~^shard_[0-9]+$"}, DoTables: []filter.Table{{Schema: "shard_*", Name: "t_*"}},
			IgnoreDBs: []string{"tmp"}, IgnoreTables: []filter.Table{{Schema: "shop", Name: "log_?"}}, CaseSensitive: true},
		EventFilters: []filter.EventRule{{SchemaPattern: "shard_*", TablePattern: "t_*", Events: []string{"truncate table", "drop table"},
			SQLPattern: []string{`^DROP\s+PROCEDURE`}, Action: "Ignore"}},
		Routes: []filter.RouteRule{{SchemaPattern: "shard_*", TablePattern: "t_*", TargetSchema: "all", TargetTable: "t"},
			{SchemaPattern: "shard_*", TargetSchema: "all"}},
	}
	stored, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var cfg SubTaskConfig
	if err := json.Unmarshal(stored, &cfg); err != nil {
		t.Fatal(err)
	}
	check := func(how string, cfg SubTaskConfig) {
		t.Helper()
		if got := cfg.Filter.filterRules(); !reflect.DeepEqual(got, old.Filter) {
			t.Errorf("%s: block-allow list %+v, stored %+v", how, got, old.Filter)
		}
		if got := filterEventRules(cfg.EventFilters); !reflect.DeepEqual(got, old.EventFilters) {
			t.Errorf("%s: event filters %+v, stored %+v", how, got, old.EventFilters)
		}
		if got := filterRouteRules(cfg.Routes); !reflect.DeepEqual(got, old.Routes) {
			t.Errorf("%s: routes %+v, stored %+v", how, got, old.Routes)
		}
	}
	check("JSON", cfg)
	back, err := json.Marshal(struct {
		Filter       BlockAllowList    `json:"block-allow-list,omitzero"`
		EventFilters []EventFilterRule `json:"event-filters,omitempty"`
		Routes       []RouteRule       `json:"routes,omitempty"`
	}{cfg.Filter, cfg.EventFilters, cfg.Routes})
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != string(stored) {
		t.Errorf("encoded again:\n%s\nstored:\n%s", back, stored)
	}

	var file struct {
		Filter       BlockAllowList    `toml:"block-allow-list"`
		EventFilters []EventFilterRule `toml:"event-filters"`
		Routes       []RouteRule       `toml:"routes"`
	}
	doc := `
[block-allow-list]
do-dbs = ["shop", "~^shard_[0-9]+$"]
do-tables = [{db-name = "shard_*", tbl-name = "t_*"}]
ignore-dbs = ["tmp"]
ignore-tables = [{db-name = "shop", tbl-name = "log_?"}]
case-sensitive = true

[[event-filters]]
schema-pattern = "shard_*"
table-pattern = "t_*"
events = ["truncate table", "drop table"]
sql-pattern = ['^DROP\s+PROCEDURE']
action = "Ignore"

[[routes]]
schema-pattern = "shard_*"
table-pattern = "t_*"
target-schema = "all"
target-table = "t"

[[routes]]
schema-pattern = "shard_*"
target-schema = "all"
`
	if _, err := toml.Decode(doc, &file); err != nil {
		t.Fatal(err)
	}
	check("TOML", SubTaskConfig{Filter: file.Filter, EventFilters: file.EventFilters, Routes: file.Routes})

	// The converted rules work: newRules compiles them.
	r, err := newRules(SyncerConfig{Filter: cfg.Filter, EventFilters: cfg.EventFilters, Routes: cfg.Routes})
	if err != nil {
		t.Fatal(err)
	}
	if !r.allowed("shard_1", "t_1") || r.allowed("shard_1", "u") {
		t.Error("the block-allow list misbehaves")
	}
	if s, tb := r.route("shard_3", "t_3"); s != "all" || tb != "t" {
		t.Errorf("route: %s.%s", s, tb)
	}
}
