package schema

import (
	"testing"
)

// FuzzApply feeds arbitrary statements to Split, Render and Apply: they may
// fail, never panic, and a failed Apply leaves the tracker as it was.
func FuzzApply(f *testing.F) {
	for _, q := range serverDDL {
		f.Add(q)
	}
	for _, q := range unsupportedForms {
		f.Add(q)
	}
	for _, q := range ignoredForms {
		f.Add(q)
	}
	f.Add("CREATE TABLE t (a nchar(")
	f.Add("CREATE TABLE t (a int) `X`=")
	f.Add("ALTER TABLE t ADD SPATIAL")
	f.Add("/*M!100301 CREATE TABLE x (a int) */")
	f.Fuzz(func(t *testing.T, q string) {
		tr := New()
		for _, setup := range []string{
			"CREATE TABLE t (id int primary key, a varchar(10), b int, unique key ua (a))",
			"CREATE TABLE t1 (id int primary key, a int)",
		} {
			if _, err := tr.Apply("trk", setup); err != nil {
				t.Fatal(err)
			}
		}
		stmts, err := Split("trk", q)
		if err == nil {
			for _, s := range stmts {
				if _, err := s.Render(func(s, t string) (string, string) { return s + "_r", t }); err != nil {
					continue
				}
			}
		}
		before, _ := tr.Marshal()
		if _, err := tr.Apply("trk", q); err != nil {
			if after, _ := tr.Marshal(); string(after) != string(before) {
				t.Fatalf("failed Apply(%q) changed the tracker", q)
			}
			return
		}
		b, err := tr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Unmarshal(b); err != nil {
			t.Fatalf("after Apply(%q), the state does not decode: %v\n%s", q, err, b)
		}
	})
}

// FuzzUnmarshal decodes arbitrary bytes as tracker state: errors only, and
// whatever decodes encodes back to something that decodes the same.
func FuzzUnmarshal(f *testing.F) {
	tr := New()
	for _, q := range []string{
		"CREATE DATABASE db CHARACTER SET latin1",
		"CREATE TABLE t (id int primary key, a varchar(10), e enum('x'), UNIQUE KEY u (a))",
	} {
		if _, err := tr.Apply("db", q); err != nil {
			f.Fatal(err)
		}
	}
	b, _ := tr.Marshal()
	f.Add(b)
	f.Add([]byte(`{"version":1,"tables":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Unmarshal(data)
		if err != nil {
			return
		}
		b, err := tr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		tr2, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		b2, _ := tr2.Marshal()
		if string(b) != string(b2) {
			t.Fatalf("state changed through a round trip:\n%s\n%s", b, b2)
		}
		for _, n := range tr.Tables() {
			d, _ := tr.Table(n.Schema, n.Name)
			_ = d.RowKey()
			if _, err := tr.Apply(n.Schema, "ALTER TABLE "+n.String()+" ADD COLUMN zz_fuzz int FIRST"); err != nil {
				continue
			}
		}
	})
}
