package schema

import "testing"

func TestQueryText(t *testing.T) {
	// Q_FLAGS2, Q_SQL_MODE, then Q_CHARSET: client, connection and server
	// collation ids.
	vars := func(client uint16) []byte {
		return []byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 4, byte(client), byte(client >> 8), 8, 0, 45, 0}
	}
	for _, tc := range []struct {
		vars  []byte
		query string
		want  string
	}{
		{vars(8), "CREATE TABLE `abc\xffdef` (a CHAR(3) DEFAULT '\x80')", "CREATE TABLE `abcÿdef` (a CHAR(3) DEFAULT '€')"}, // latin1_swedish_ci
		{vars(1032), "DROP TABLE `\xe5`", "DROP TABLE `å`"},                                                                 // latin1_swedish_nopad_ci
		{vars(45), "DROP TABLE `å`", "DROP TABLE `å`"},                                                                      // utf8mb4: as it is
		{vars(28), "DROP TABLE `\xb0\xa1`", "DROP TABLE `\xb0\xa1`"},                                                        // gbk: as it is
		{vars(8), "DROP TABLE t", "DROP TABLE t"},                                                                           // ASCII
		{nil, "DROP TABLE `\xe5`", "DROP TABLE `\xe5`"},                                                                     // no charset recorded
	} {
		if got := QueryText(tc.vars, []byte(tc.query)); got != tc.want {
			t.Errorf("QueryText(%q) = %q, want %q", tc.query, got, tc.want)
		}
	}
}
