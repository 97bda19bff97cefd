package onlineddl

import (
	"encoding/json"
	"testing"
)

func TestKind(t *testing.T) {
	r, err := NewRules(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		table string
		kind  Kind
		real  string
	}{
		{"t", Real, "t"}, {"_t_gho", Shadow, "t"}, {"_t_new", Shadow, "t"}, {"_my_t_new", Shadow, "my_t"},
		{"_t_ghc", Trash, "t"}, {"_t_del", Trash, "t"}, {"_t_old", Trash, "t"}, {"t_gho", Real, "t_gho"}, {"__gho", Real, "__gho"},
	} {
		if k, real := r.Kind(c.table); k != c.kind || real != c.real {
			t.Errorf("Kind(%q) = %s %q, want %s %q", c.table, k, real, c.kind, c.real)
		}
	}
	r, err = NewRules([]string{`^(.+)_shadow$`}, []string{`^(.+)_trash$`})
	if err != nil {
		t.Fatal(err)
	}
	if k, real := r.Kind("orders_shadow"); k != Shadow || real != "orders" {
		t.Errorf("custom shadow rule: %s %q", k, real)
	}
	if k, _ := r.Kind("_t_gho"); k != Real {
		t.Errorf("custom rules replace the defaults: _t_gho is %s", k)
	}
	for _, bad := range [][2][]string{{{"("}, nil}, {nil, {"^x$"}}} {
		if _, err := NewRules(bad[0], bad[1]); err == nil {
			t.Errorf("NewRules(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestAttachDetach(t *testing.T) {
	blob := []byte(`{"version":1,"tables":[]}`)
	var s State
	if b, err := Attach(blob, &s); err != nil || string(b) != string(blob) {
		t.Fatalf("empty state: %s %v", b, err)
	}
	s.Begin("db", "_t_gho")
	s.Record("db", "_t_gho", Stmt{Schema: "db", Query: "ALTER TABLE _t_gho ADD c INT", Mode: 3})
	s.Record("db", "_u_new", Stmt{Schema: "db", Query: "ALTER TABLE _u_new ADD KEY (x)"})
	b, err := Attach(blob, &s)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || string(obj["version"]) != "1" {
		t.Fatalf("blob %s: %v", b, err)
	}
	got, err := Detach(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Len() != 2 {
		t.Fatalf("%d records", got.Len())
	}
	rec, ok := got.Get("db", "_t_gho")
	if !ok || len(rec.Stmts) != 1 || rec.Stmts[0].Mode != 3 || rec.Stmts[0].Query != "ALTER TABLE _t_gho ADD c INT" {
		t.Fatalf("record %+v", rec)
	}
	if !got.Drop("db", "_u_new") || got.Drop("db", "_u_new") || got.Len() != 1 {
		t.Fatal("Drop")
	}
	if empty, err := Detach(blob); err != nil || empty.Len() != 0 {
		t.Fatalf("a blob without state: %v %v", empty, err)
	}
}
