package schema

import "testing"

// TestMariaDBCharsetsAndCollations: tables in any of MariaDB's character
// sets and collations are tracked, with the names MariaDB reports (the
// parser knew only TiDB's: utf8, utf8mb4, ascii, latin1, binary, gbk,
// gb18030).
func TestMariaDBCharsetsAndCollations(t *testing.T) {
	for _, tc := range []struct{ create, charset string }{
		{"CREATE TABLE d.t (a VARCHAR(10) CHARACTER SET ucs2)", "ucs2"},
		{"CREATE TABLE d.t (a VARCHAR(10) CHARACTER SET utf16 COLLATE utf16_bin)", "utf16"},
		{"CREATE TABLE d.t (a TEXT CHARACTER SET utf32)", "utf32"},
		{"CREATE TABLE d.t (a VARCHAR(10) CHARACTER SET cp1251 COLLATE cp1251_ukrainian_ci)", "cp1251"},
		{"CREATE TABLE d.t (a VARCHAR(10)) DEFAULT CHARSET=koi8r", "koi8r"},
		{"CREATE TABLE d.t (a VARCHAR(10) CHARACTER SET latin2)", "latin2"},
		{"CREATE TABLE d.t (a VARCHAR(10) COLLATE utf8mb4_uca1400_ai_ci)", "utf8mb4"},
		{"CREATE TABLE d.t (a VARCHAR(10) COLLATE utf8mb4_unicode_520_nopad_ci)", "utf8mb4"},
		{"CREATE TABLE d.t (a VARCHAR(10) CHARACTER SET utf8mb3 COLLATE utf8mb3_uca1400_swedish_as_cs)", "utf8mb3"},
		{"CREATE TABLE d.t (a VARCHAR(10) CHARACTER SET sjis)", "sjis"},
	} {
		tr := New()
		if _, err := tr.Apply("d", "CREATE DATABASE d"); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Apply("d", tc.create); err != nil {
			t.Errorf("%s: %v", tc.create, err)
			continue
		}
		def, ok := tr.Table("d", "t")
		if !ok {
			t.Fatalf("%s: not tracked", tc.create)
		}
		cs := def.Columns[0].Charset
		if cs == "" {
			cs = def.Charset
		}
		if cs != tc.charset {
			t.Errorf("%s: charset %q, want %q", tc.create, cs, tc.charset)
		}
	}
	if _, err := Split("d", "CREATE TABLE d.t (a VARCHAR(10) CHARACTER SET nosuch)"); err == nil {
		t.Error("an unknown character set is accepted")
	}
}

// TestPrefixKeys: a key part that is a prefix keeps its length, through
// DROP COLUMN of another part too.
func TestPrefixKeys(t *testing.T) {
	tr := New()
	for _, q := range []string{"CREATE DATABASE d",
		"CREATE TABLE d.t (id INT NOT NULL, body TEXT NOT NULL, v VARCHAR(20), UNIQUE KEY (body(16)), UNIQUE KEY (v(4), id), PRIMARY KEY (id))"} {
		if _, err := tr.Apply("d", q); err != nil {
			t.Fatal(err)
		}
	}
	def, _ := tr.Table("d", "t")
	if def.PrimaryKeyPrefix != nil || len(def.UniqueKeyPrefixes) != 2 || def.UniqueKeyPrefixes[0][0] != 16 || def.UniqueKeyPrefixes[1][0] != 4 || def.UniqueKeyPrefixes[1][1] != 0 {
		t.Fatalf("prefixes: pk %v, unique %v", def.PrimaryKeyPrefix, def.UniqueKeyPrefixes)
	}
	if _, err := tr.Apply("d", "ALTER TABLE d.t DROP COLUMN id"); err != nil {
		t.Fatal(err)
	}
	def, _ = tr.Table("d", "t")
	if len(def.UniqueKeyPrefixes) != 2 || len(def.UniqueKeyPrefixes[1]) != 1 || def.UniqueKeyPrefixes[1][0] != 4 {
		t.Fatalf("after DROP COLUMN: unique %v prefixes %v", def.UniqueKeys, def.UniqueKeyPrefixes)
	}
}
