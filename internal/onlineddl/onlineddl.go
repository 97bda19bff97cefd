// Package onlineddl recognises the tables of online schema change tools
// (gh-ost, pt-online-schema-change) by name and keeps what the syncer
// records while such a tool runs.
//
// An online schema change on table t runs like this in the binlog:
//
//	gh-ost:  CREATE TABLE _t_ghc ...            changelog (trash)
//	         CREATE TABLE _t_gho LIKE t         ghost (shadow)
//	         ALTER TABLE _t_gho ...             the change
//	         rows into _t_gho and _t_ghc        copy and binlog replay
//	         CREATE TABLE _t_del ...; DROP TABLE _t_del   cut-over sentry
//	         RENAME TABLE t TO _t_del, _t_gho TO t        cut-over
//	         DROP TABLE _t_ghc (and, when asked, _t_del)
//	pt-osc:  CREATE TABLE _t_new ...            shadow
//	         ALTER TABLE _t_new ...             the change
//	         CREATE TRIGGER ...; rows into _t_new          copy
//	         RENAME TABLE t TO _t_old, _t_new TO t         cut-over
//	         DROP TABLE _t_old; DROP TRIGGER ...
//
// Names are told apart by regular expressions, as DM's shadow-table-rules
// and trash-table-rules: a table matching a shadow rule is a shadow (ghost)
// table, one matching a trash rule a trash table (gh-ost's changelog and
// sentry/old table, pt-osc's old table); the rule's first submatch is the
// real table's name. Nothing of a shadow or trash table is applied
// downstream: the syncer records the shadow table's ALTERs (Record) and
// applies them to the real table at the cut-over, the RENAME of the shadow
// table onto a real one (Take).
//
// State is what is recorded: it is stored with the checkpoint (inside the
// checkpoint's schema blob, see Attach and Detach), so a syncer killed
// between the ALTER and the cut-over finds it again.
package onlineddl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
)

// Default rules, DM's: gh-ost's _t_gho and pt-osc's _t_new are shadow
// tables; gh-ost's _t_ghc and _t_del and pt-osc's _t_old are trash.
const (
	DefaultShadowRule = `^_(.+)_(?:new|gho)$`
	DefaultTrashRule  = `^_(.+)_(?:ghc|del|old)$`
)

// Kind is what a table is to online schema changes.
type Kind int

// Kinds.
const (
	Real   Kind = iota // any other table
	Shadow             // a ghost table being altered
	Trash              // a changelog, sentry or old table
)

func (k Kind) String() string { return [...]string{"real", "shadow", "trash"}[k] }

// Rules tells shadow and trash tables by name.
type Rules struct {
	shadow, trash []*regexp.Regexp
}

// NewRules compiles the rules; empty lists take the defaults. A rule must
// have a submatch: the real table's name.
func NewRules(shadow, trash []string) (*Rules, error) {
	if len(shadow) == 0 {
		shadow = []string{DefaultShadowRule}
	}
	if len(trash) == 0 {
		trash = []string{DefaultTrashRule}
	}
	r := &Rules{}
	for _, set := range []struct {
		name string
		src  []string
		dst  *[]*regexp.Regexp
	}{{"shadow-table-rules", shadow, &r.shadow}, {"trash-table-rules", trash, &r.trash}} {
		for _, s := range set.src {
			re, err := regexp.Compile(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", set.name, s, err)
			}
			if re.NumSubexp() < 1 {
				return nil, fmt.Errorf("%s: %q has no submatch for the real table's name", set.name, s)
			}
			*set.dst = append(*set.dst, re)
		}
	}
	return r, nil
}

// Kind returns what table is, and for a shadow or trash table the real
// table's name.
func (r *Rules) Kind(table string) (Kind, string) {
	if r == nil {
		return Real, table
	}
	for _, re := range r.shadow {
		if m := re.FindStringSubmatch(table); len(m) > 1 && m[1] != "" {
			return Shadow, m[1]
		}
	}
	for _, re := range r.trash {
		if m := re.FindStringSubmatch(table); len(m) > 1 && m[1] != "" {
			return Trash, m[1]
		}
	}
	return Real, table
}

// Stmt is a recorded statement, as the upstream ran it on a shadow table.
type Stmt struct {
	// Schema is the statement's default schema, Query its text, Mode its
	// sql_mode (the tracker's schema.SQLMode bits).
	Schema string `json:"schema"`
	Query  string `json:"query"`
	Mode   uint64 `json:"mode,omitempty"`
}

// Record is what is recorded for one shadow table.
type Record struct {
	Schema string `json:"schema"` // the shadow table's
	Table  string `json:"table"`
	Stmts  []Stmt `json:"stmts,omitempty"`
}

// State is the recorded statements of every shadow table, by schema and
// table. The zero value is empty and ready. It is not safe for concurrent
// use.
type State struct {
	recs map[[2]string]*Record
}

// Len is how many shadow tables have a record.
func (s *State) Len() int { return len(s.recs) }

// Begin starts an empty record for a shadow table (its CREATE), dropping
// any older one.
func (s *State) Begin(schema, table string) {
	if s.recs == nil {
		s.recs = map[[2]string]*Record{}
	}
	s.recs[[2]string{schema, table}] = &Record{Schema: schema, Table: table}
}

// Record appends a statement run on a shadow table to its record, which it
// starts when there is none.
func (s *State) Record(schema, table string, st Stmt) {
	rec, ok := s.recs[[2]string{schema, table}]
	if !ok {
		s.Begin(schema, table)
		rec = s.recs[[2]string{schema, table}]
	}
	rec.Stmts = append(rec.Stmts, st)
}

// Get returns a shadow table's record.
func (s *State) Get(schema, table string) (*Record, bool) {
	rec, ok := s.recs[[2]string{schema, table}]
	return rec, ok
}

// Drop forgets a shadow table's record and reports whether it had one.
func (s *State) Drop(schema, table string) bool {
	_, ok := s.recs[[2]string{schema, table}]
	delete(s.recs, [2]string{schema, table})
	return ok
}

// Records returns every record, ordered by schema and table.
func (s *State) Records() []*Record {
	out := make([]*Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Record) int {
		if c := compare(a.Schema, b.Schema); c != 0 {
			return c
		}
		return compare(a.Table, b.Table)
	})
	return out
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// key is the key the state takes in a checkpoint's schema blob. The
// tracker's decoder ignores it; it must never change.
const key = "online-ddl"

// Attach returns the schema blob (a JSON object) with the state added under
// its own key; the blob as it is when the state is empty.
func Attach(blob []byte, s *State) ([]byte, error) {
	if s == nil || s.Len() == 0 {
		return blob, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(blob, &obj); err != nil {
		return nil, fmt.Errorf("onlineddl: the schema blob is not a JSON object: %w", err)
	}
	b, err := json.Marshal(s.Records())
	if err != nil {
		return nil, err
	}
	obj[key] = b
	return json.Marshal(obj)
}

// Detach returns the state a schema blob carries (empty when none).
func Detach(blob []byte) (*State, error) {
	s := &State{}
	if !bytes.Contains(blob, []byte(`"`+key+`"`)) {
		return s, nil
	}
	var obj struct {
		Records []*Record `json:"online-ddl"`
	}
	if err := json.Unmarshal(blob, &obj); err != nil {
		return nil, fmt.Errorf("onlineddl: decode the recorded online schema changes: %w", err)
	}
	for _, r := range obj.Records {
		if r == nil || r.Table == "" {
			return nil, fmt.Errorf("onlineddl: a recorded online schema change names no table")
		}
		s.Begin(r.Schema, r.Table)
		s.recs[[2]string{r.Schema, r.Table}].Stmts = r.Stmts
	}
	return s, nil
}
