package streamer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/internal/typefixtures"
	"github.com/dmworker/dmworker/streamer"
)

// rowTypeTables, rowTypeRows and rowTypeChanges are the type fixtures
// (internal/typefixtures), which TestRowDecoderAgrees writes to a
// server's binlog for the row decoder to decode.
var (
	rowTypeTables  = typefixtures.Tables
	rowTypeRows    = typefixtures.Rows
	rowTypeChanges = typefixtures.Changes
)

// rowTypeRandom is a table of the types the row decoder handles itself,
// filled with random values by randomTypeRows.
const rowTypeRandom = `CREATE TABLE tf.rnd (id BIGINT PRIMARY KEY, i INT, iu INT UNSIGNED, bu BIGINT UNSIGNED,
	mi MEDIUMINT, si SMALLINT UNSIGNED, ti TINYINT,
	d1 DECIMAL(18,9), d2 DECIMAL(30,10), d3 DECIMAL(12,2), d4 DECIMAL(9,0) UNSIGNED, d5 DECIMAL(4,4),
	f FLOAT, db DOUBLE, dt1 DATETIME(1), dt2 DATETIME(2), dt4 DATETIME(4), dt5 DATETIME(5), dt0 DATETIME,
	ts3 TIMESTAMP(3) NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL, dd DATE, y YEAR,
	c255 CHAR(255) CHARACTER SET utf8mb4, v300 VARCHAR(300), e ENUM('a','b','c'), tx TEXT, bl BLOB)
	DEFAULT CHARSET=utf8mb4`

// randomTypeRows writes txns transactions of random rows into tf.rnd:
// inserts of 10 rows, updates and deletes.
func randomTypeRows(t *testing.T, m *testserver.MariaDB, txns int) {
	t.Helper()
	db := m.DB(t)
	mustExec(t, db, rowTypeRandom)
	rng := rand.New(rand.NewPCG(7, 19))
	pick := func(vals ...any) any { return vals[rng.IntN(len(vals))] }
	dec := func(intDigits, frac int) string {
		s := ""
		if rng.IntN(2) == 0 {
			s = "-"
		}
		for range 1 + rng.IntN(intDigits) {
			s += string(rune('0' + rng.IntN(10)))
		}
		if frac > 0 {
			s += "."
			for range frac {
				s += string(rune('0' + rng.IntN(10)))
			}
		}
		return s
	}
	when := func() string {
		return fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d.%06d", 1000+rng.IntN(9000), 1+rng.IntN(12), 1+rng.IntN(28),
			rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1_000_000))
	}
	stamp := func() any {
		// Well inside TIMESTAMP's range in any time zone.
		return pick(nil, time.Unix(1e8+rng.Int64N(2e9), rng.Int64N(1e9)).UTC().Format("2006-01-02 15:04:05.000000"))
	}
	text := func(n int) string {
		var b strings.Builder
		for range rng.IntN(n + 1) {
			b.WriteRune(rune(pick('a', 'Z', ' ', 'é', '🥝', '数', '\'', '0').(int32)))
		}
		return b.String()
	}
	id := 0
	for range txns {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		q := "INSERT INTO tf.rnd VALUES " + strings.TrimSuffix(strings.Repeat("(?"+strings.Repeat(",?", 27)+"),", 10), ",")
		var args []any
		for range 10 {
			id++
			args = append(args, id, int32(rng.Uint32()), rng.Uint32(), rng.Uint64()>>rng.IntN(64),
				rng.IntN(1<<24)-1<<23, rng.IntN(1<<16), rng.IntN(256)-128,
				dec(9, 9), pick(nil, dec(20, 10)), dec(10, 2), strings.TrimPrefix(dec(9, 0), "-"), pick("0.1234", "-0.0001", "0", nil),
				rng.Float32()*1e6, pick(rng.NormFloat64()*1e300, 0.0, -1.5, nil), when(), when(), when(), when(), when(),
				stamp(), stamp(), pick("0000-00-00", "2024-02-29", "1000-01-01", "9999-12-31", nil), pick(0, 1901, 2155, 2024),
				text(255), text(300), pick("a", "b", "c", nil), text(2000), pick(nil, []byte{}, []byte{0, 255, 1}))
		}
		if _, err := tx.Exec(q, args...); err != nil {
			t.Fatalf("insert: %v", err)
		}
		if _, err := tx.Exec("UPDATE tf.rnd SET d1 = -d1, dt1 = NOW(1), v300 = ?, ts6 = NULL WHERE id BETWEEN ? AND ?", text(300), id-15, id-10); err != nil {
			t.Fatalf("update: %v", err)
		}
		if _, err := tx.Exec("DELETE FROM tf.rnd WHERE id BETWEEN ? AND ?", id-25, id-23); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRowDecoderAgrees: the row decoder (rowdecode.go) gives what
// go-mysql's parser gives, value for value and type for type, on a real
// server's binlog of every column type the syncer's type tests use and of
// random values of the types it decodes itself; with the signedness of
// columns in the table maps (binlog_row_metadata FULL) and without.
func TestRowDecoderAgrees(t *testing.T) {
	for _, tc := range []struct {
		meta string
		id   uint32
	}{{"FULL", 71}, {"MINIMAL", 72}} {
		t.Run(tc.meta, func(t *testing.T) {
			m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: tc.id, RowMetadata: tc.meta})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// As the syncer's test writes them (fillTypeFamilies).
			conn, err := m.DB(t).Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			qs := []string{"SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'",
				"SET SESSION time_zone = '+05:30'", "CREATE DATABASE tf"}
			for _, tb := range rowTypeTables {
				qs = append(qs, tb.Create)
			}
			for _, q := range append(append(qs, rowTypeRows...), rowTypeChanges...) {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db := m.DB(t)
			const randomTxns = 40
			randomTypeRows(t, m, randomTxns)
			mustExec(t, db, "FLUSH BINARY LOGS")
			files, err := m.BinlogFiles(ctx)
			if err != nil {
				t.Fatal(err)
			}
			total, fast := 0, 0
			for _, f := range files[:len(files)-1] { // the last is still open
				data, err := os.ReadFile(f) // full paths
				if err != nil {
					t.Fatal(err)
				}
				n, nf, err := streamer.DeferredRowsAgreeFast(data)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				total, fast = total+n, fast+nf
			}
			t.Logf("%d rows events agree, %d of them decoded by the row decoder itself", total, fast)
			// Every random transaction's 3 rows events, and the
			// fixtures of tables of handled types, take the fast path.
			if fast < 3*randomTxns+10 || total < fast {
				t.Fatalf("%d of %d rows events decoded by the row decoder, want at least %d", fast, total, 3*randomTxns+10)
			}
		})
	}
}
