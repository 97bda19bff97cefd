package snapshot

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestSplitKeys(t *testing.T) {
	sysbench := "CREATE TABLE `sbtest1` (\n" +
		"  `id` int(11) NOT NULL AUTO_INCREMENT,\n" +
		"  `k` int(11) NOT NULL DEFAULT 0,\n" +
		"  `c` char(120) NOT NULL DEFAULT '',\n" +
		"  PRIMARY KEY (`id`),\n" +
		"  KEY `k_1` (`k`)\n" +
		") ENGINE=InnoDB AUTO_INCREMENT=250001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"
	for _, tc := range []struct {
		name, in, out string
		keys          []string
	}{
		{"sysbench", sysbench,
			"CREATE TABLE `sbtest1` (\n" +
				"  `id` int(11) NOT NULL AUTO_INCREMENT,\n" +
				"  `k` int(11) NOT NULL DEFAULT 0,\n" +
				"  `c` char(120) NOT NULL DEFAULT '',\n" +
				"  PRIMARY KEY (`id`)\n" +
				") ENGINE=InnoDB AUTO_INCREMENT=250001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
			[]string{"KEY `k_1` (`k`)"}},
		{"keys in the middle, unique and full-text kept",
			"CREATE TABLE `t` (\n" +
				"  `a` int(11) DEFAULT NULL,\n" +
				"  `b` varchar(10) DEFAULT 'x,\\n',\n" +
				"  KEY `ab` (`a`,`b`(3)) COMMENT 'why, not',\n" +
				"  UNIQUE KEY `u` (`b`),\n" +
				"  FULLTEXT KEY `f` (`b`),\n" +
				"  KEY `b` (`b`) USING BTREE,\n" +
				"  CONSTRAINT `chk` CHECK (`a` > 0)\n" +
				") ENGINE=InnoDB",
			"CREATE TABLE `t` (\n" +
				"  `a` int(11) DEFAULT NULL,\n" +
				"  `b` varchar(10) DEFAULT 'x,\\n',\n" +
				"  UNIQUE KEY `u` (`b`),\n" +
				"  FULLTEXT KEY `f` (`b`),\n" +
				"  CONSTRAINT `chk` CHECK (`a` > 0)\n" +
				") ENGINE=InnoDB",
			[]string{"KEY `ab` (`a`,`b`(3)) COMMENT 'why, not'", "KEY `b` (`b`) USING BTREE"}},
		{"foreign key: kept whole",
			"CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `p` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `p` (`p`),\n" +
				"  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `par` (`id`)\n) ENGINE=InnoDB",
			"", nil},
		{"no secondary key", "CREATE TABLE `n` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB", "", nil},
		{"not SHOW CREATE's layout", "CREATE TABLE t (id int, k int, KEY (k))", "", nil},
		{"view", "CREATE ALGORITHM=UNDEFINED VIEW `v` AS select 1", "", nil},
		{"partitioned", sysbench + "\n PARTITION BY HASH (`id`)\nPARTITIONS 4",
			"CREATE TABLE `sbtest1` (\n" +
				"  `id` int(11) NOT NULL AUTO_INCREMENT,\n" +
				"  `k` int(11) NOT NULL DEFAULT 0,\n" +
				"  `c` char(120) NOT NULL DEFAULT '',\n" +
				"  PRIMARY KEY (`id`)\n" +
				") ENGINE=InnoDB AUTO_INCREMENT=250001 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci\n PARTITION BY HASH (`id`)\nPARTITIONS 4",
			[]string{"KEY `k_1` (`k`)"}},
	} {
		out, keys := SplitKeys(tc.in)
		want := tc.out
		if want == "" {
			want = tc.in
		}
		if out != want || !reflect.DeepEqual(keys, tc.keys) {
			t.Errorf("%s:\ngot  %q %q\nwant %q %q", tc.name, out, keys, want, tc.keys)
		}
	}
}

func FuzzSplitKeys(f *testing.F) {
	f.Add("CREATE TABLE `t` (\n  `a` int,\n  KEY `a` (`a`)\n) ENGINE=InnoDB")
	f.Add("CREATE TABLE `t` (\n  `a` int\n)")
	f.Fuzz(func(t *testing.T, s string) {
		out, keys := SplitKeys(s)
		if len(keys) == 0 {
			if out != s {
				t.Fatalf("changed without keys: %q -> %q", s, out)
			}
			return
		}
		// Every key was a line of s, out has one line fewer per key, and
		// splitting out again finds nothing more.
		lines := strings.Split(s, "\n")
		for _, k := range keys {
			if !slices.Contains(lines, "  "+k) && !slices.Contains(lines, "  "+k+",") {
				t.Fatalf("key %q is not a line of the input", k)
			}
		}
		if n, m := len(lines)-len(keys), strings.Count(out, "\n")+1; n != m {
			t.Fatalf("%d lines out, want %d: %q", m, n, out)
		}
		if again, more := SplitKeys(out); again != out || more != nil {
			t.Fatalf("split again: %q %q", again, more)
		}
	})
}
