package dmworker_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/sinktest"
	"github.com/dmworker/dmworker/streamer"
)

// typeFamilyTables are created upstream after the syncer started, so that
// their CREATE TABLE replicates too.
var typeFamilyTables = []struct{ name, create string }{
	{"ints", `CREATE TABLE tf.ints (id INT PRIMARY KEY,
		ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
		mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
		bi BIGINT, biu BIGINT UNSIGNED)`},
	{"decs", `CREATE TABLE tf.decs (id INT PRIMARY KEY, d DECIMAL(65,30), d0 DECIMAL(10,0), df DECIMAL(5,5), du DECIMAL(20,4) UNSIGNED)`},
	{"floats", `CREATE TABLE tf.floats (id INT PRIMARY KEY, f FLOAT, d DOUBLE, fu FLOAT UNSIGNED)`},
	{"bits", `CREATE TABLE tf.bits (id INT PRIMARY KEY, b1 BIT(1), b5 BIT(5), b64 BIT(64))`},
	{"enums", `CREATE TABLE tf.enums (id INT PRIMARY KEY, e ENUM('a','b','c d','🥝'), s SET('x','y','z','w'), s64 SET('a0','a1','a2','a3','a4','a5','a6','a7','a8','a9','b0','b1','b2','b3','b4','b5','b6','b7','b8','b9','c0','c1','c2','c3','c4','c5','c6','c7','c8','c9','d0','d1','d2','d3','d4','d5','d6','d7','d8','d9','e0','e1','e2','e3','e4','e5','e6','e7','e8','e9','f0','f1','f2','f3','f4','f5','f6','f7','f8','f9','g0','g1','g2','g3'))`},
	{"times", `CREATE TABLE tf.times (id INT PRIMARY KEY, d DATE, t TIME(6), t0 TIME, dt DATETIME(6), dt0 DATETIME, dt3 DATETIME(3),
		ts TIMESTAMP(6) NULL DEFAULT NULL, ts0 TIMESTAMP NULL DEFAULT NULL, y YEAR)`},
	{"strs", `CREATE TABLE tf.strs (id INT PRIMARY KEY, c CHAR(10), v VARCHAR(100), tx TEXT, mt MEDIUMTEXT, c4 CHAR(4) CHARACTER SET utf8mb4) DEFAULT CHARSET=utf8mb4`},
	{"bins", `CREATE TABLE tf.bins (id INT PRIMARY KEY, bn BINARY(8), vb VARBINARY(64), bl BLOB, lb LONGBLOB, tb TINYBLOB)`},
	{"jsons", `CREATE TABLE tf.jsons (id INT PRIMARY KEY, j JSON)`},
	{"geos", `CREATE TABLE tf.geos (id INT PRIMARY KEY, g GEOMETRY, p POINT, pg POLYGON)`},
	{"nopk", `CREATE TABLE tf.nopk (a INT, b VARCHAR(20), c DOUBLE)`},
}

var typeFamilyRows = []string{
	// Integers at their limits, zero and NULL.
	`INSERT INTO tf.ints VALUES
		(1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0),
		(2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615),
		(3, 0, 1, -1, 1, -1, 1, -1, 1, -1, 1),
		(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
	`INSERT INTO tf.decs VALUES
		(1, 99999999999999999999999999999999999.999999999999999999999999999999, 9999999999, 0.99999, 9999999999999999.9999),
		(2, -99999999999999999999999999999999999.999999999999999999999999999999, -9999999999, -0.99999, 0),
		(3, -0.000000000000000000000000000001, 0, 0.00001, 0.0001),
		(4, 0, -1, -0.00001, 1),
		(5, -1.5, NULL, NULL, NULL),
		(6, NULL, NULL, NULL, NULL)`,
	`INSERT INTO tf.floats VALUES
		(1, 3.40282e38, 1.7976931348623157e308, 3.4e38),
		(2, -3.40282e38, -1.7976931348623157e308, 0),
		(3, 1.17549e-38, 2.2250738585072014e-308, 1.5),
		(4, -1.5, -0.1, 0.1),
		(5, 0, -0, NULL),
		(6, NULL, NULL, NULL)`,
	`INSERT INTO tf.bits VALUES
		(1, b'1', b'11111', 0xFFFFFFFFFFFFFFFF),
		(2, b'0', b'0', 0),
		(3, b'1', b'10101', 0x8000000000000001),
		(4, NULL, NULL, NULL)`,
	`INSERT INTO tf.enums VALUES
		(1, 'a', '', ''),
		(2, '🥝', 'x,y,z,w', 'a0,g3'),
		(3, 'c d', 'w', 'a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,b0,b1,b2,b3,b4,b5,b6,b7,b8,b9,c0,c1,c2,c3,c4,c5,c6,c7,c8,c9,d0,d1,d2,d3,d4,d5,d6,d7,d8,d9,e0,e1,e2,e3,e4,e5,e6,e7,e8,e9,f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,g0,g1,g2,g3'),
		(4, NULL, NULL, NULL)`,
	`INSERT INTO tf.times VALUES
		(1, '1000-01-01', '-838:59:59.000000', '838:59:59', '1000-01-01 00:00:00.000000', '9999-12-31 23:59:59', '2001-02-03 04:05:06.789',
			'1970-01-01 05:30:01.000001', '2038-01-19 08:44:07', 1901),
		(2, '9999-12-31', '838:59:59.000000', '-838:59:59', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00', '2001-02-03 04:05:06.001',
			'2038-01-19 08:44:07.999999', '1970-01-01 05:30:01', 2155),
		(3, '2024-02-29', '-00:00:01.500000', '-00:00:01', '2024-02-29 12:34:56.000001', '2024-02-29 12:34:56', '2024-02-29 12:34:56.100',
			'2024-02-29 12:34:56.123456', '2024-02-29 12:34:56', 2024),
		(4, '2000-01-01', '100:00:00.000001', '25:00:00', '2000-01-01 00:00:00.5', '2000-01-01 00:00:00', '2000-01-01 00:00:00.000',
			'2000-01-01 00:00:00.000000', '2000-01-01 00:00:00', 0),
		(5, '0000-00-00', '-00:00:00.000001', '00:00:00', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000',
			'0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', 2000),
		(6, '2010-00-00', '-12:34:56.789012', '-100:00:00', '2010-01-00 10:00:00.010000', '2010-00-01 00:00:00', NULL, NULL, NULL, NULL),
		(7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
	`INSERT INTO tf.strs VALUES
		(1, '', '', '', '', ''),
		(2, '🥝😀', '𝄞 music 🎵 z̤͔ͧ', CONCAT('tab	nl\n cr\r nul', CHAR(0 USING utf8mb4), ' quote'' bs\\ end'), REPEAT('🥝', 300), '😀😀😀😀'),
		(3, 'a  ', ' b ', '  ', '"double"', 'ab'),
		(4, NULL, NULL, NULL, NULL, NULL)`,
	`INSERT INTO tf.bins VALUES
		(1, x'00', x'00', x'00', x'0000000000', x'00'),
		(2, x'00FFFE00C328', x'C328FF80', x'FFFEFDFC00010203', x'E29C', x''),
		(3, '', '', '', '', ''),
		(4, x'0102030405060708', REPEAT(x'ff', 64), REPEAT(x'00ff', 1000), REPEAT(x'80', 70000), x'5c27'),
		(5, NULL, NULL, NULL, NULL, NULL)`,
	`INSERT INTO tf.jsons VALUES
		(1, '{"a": {"b": [1, 2, {"c": null, "d": true}], "e": false}, "u": "é🥝\\u0000x", "n": 1.0}'),
		(2, '1.0'),
		(3, '[]'),
		(4, '{}'),
		(5, '"str \\"q\\""'),
		(6, 'null'),
		(7, '[1e300, -0.5, 12345678901234567890, 3, -9223372036854775808]'),
		(8, NULL)`,
	`INSERT INTO tf.geos VALUES
		(1, ST_GeomFromText('POINT(1 2)'), ST_GeomFromText('POINT(-1.5 1e10)'),
			ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 3 2, 3 3, 2 2))')),
		(2, ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)'), ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POLYGON((0 0, 1 0, 0 1, 0 0))')),
		(3, ST_GeomFromText('POLYGON((0 0, 5 0, 5 5, 0 0))', 4326), NULL, NULL),
		(4, NULL, NULL, NULL)`,
	`INSERT INTO tf.nopk VALUES (1, 'a', 1.5), (1, 'a', 1.5), (2, NULL, NULL), (NULL, NULL, NULL), (3, '🥝', -0.25)`,
}

var typeFamilyChanges = []string{
	`UPDATE tf.ints SET ti = 127, biu = 18446744073709551615, bi = NULL WHERE id = 1`,
	`UPDATE tf.ints SET ti = NULL, iu = 0 WHERE id = 2`,
	`UPDATE tf.ints SET ti = -128, tiu = 255, si = -32768, siu = 65535, mi = -8388608, miu = 16777215, i = -2147483648, iu = 4294967295, bi = -9223372036854775808, biu = 18446744073709551615 WHERE id = 4`,
	`DELETE FROM tf.ints WHERE id = 3`,
	`UPDATE tf.decs SET d = -d WHERE id IN (1, 2)`,
	`UPDATE tf.decs SET d = 12.5, d0 = 7 WHERE id = 6`,
	`DELETE FROM tf.decs WHERE id = 4`,
	`UPDATE tf.floats SET f = -f, d = d / 3 WHERE id = 4`,
	`DELETE FROM tf.floats WHERE id = 3`,
	`UPDATE tf.bits SET b1 = b'0', b64 = 0x7FFFFFFFFFFFFFFF WHERE id = 1`,
	`UPDATE tf.bits SET b5 = b'1' WHERE id = 4`,
	`DELETE FROM tf.bits WHERE id = 2`,
	`UPDATE tf.enums SET e = 'b', s = 'y,w' WHERE id = 1`,
	`UPDATE tf.enums SET s64 = NULL WHERE id = 3`,
	`DELETE FROM tf.enums WHERE id = 2`,
	`UPDATE tf.times SET t = '-838:59:59.999999', ts = '2001-01-01 01:01:01.5' WHERE id = 1`,
	`UPDATE tf.times SET d = '0000-00-00', dt = '0000-00-00 00:00:00' WHERE id = 3`,
	`UPDATE tf.times SET t = '-00:00:00.5', y = 1999 WHERE id = 7`,
	`DELETE FROM tf.times WHERE id IN (2, 5)`,
	`UPDATE tf.strs SET v = '🥝', tx = NULL WHERE id = 2`,
	`UPDATE tf.strs SET c = '😀', v = '' WHERE id = 4`,
	`DELETE FROM tf.strs WHERE id = 1`,
	`UPDATE tf.bins SET vb = x'00C3', bl = NULL WHERE id = 2`,
	`UPDATE tf.bins SET bn = x'FF' WHERE id = 5`,
	`DELETE FROM tf.bins WHERE id = 1`,
	`UPDATE tf.jsons SET j = JSON_SET(j, '$.a.e', 'ünï', '$.z', 1.0) WHERE id = 1`,
	`UPDATE tf.jsons SET j = '{"k": [null]}' WHERE id = 8`,
	`DELETE FROM tf.jsons WHERE id = 3`,
	`UPDATE tf.geos SET p = ST_GeomFromText('POINT(3 4)') WHERE id = 3`,
	`DELETE FROM tf.geos WHERE id = 2`,
	`UPDATE tf.nopk SET c = 2.5 WHERE a = 1 LIMIT 1`,
	`UPDATE tf.nopk SET b = 'x' WHERE a IS NULL`,
	`DELETE FROM tf.nopk WHERE a = 3`,
	`INSERT INTO tf.nopk VALUES (4, '', 0)`,
}

func TestSyncerTypeFamilies(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		for _, tc := range []struct {
			meta string
			id   uint32
		}{{"FULL", 61}, {"MINIMAL", 62}} {
			t.Run(tc.meta, func(t *testing.T) {
				p := newSyncPair(t, testserver.MariaDBOptions{ServerID: tc.id, RowMetadata: tc.meta})
				p.workers = workers
				s, err := dmworker.NewSyncer(p.config("types"), p.sink)
				if err != nil {
					t.Fatal(err)
				}
				run := runSyncer(t, s)
				exec := fillTypeFamilies(t, p.updb)
				waitSynced(t, run, p.updb)
				for _, tb := range typeFamilyTables {
					checkEqual(t, p.updb, p.downdb, "tf."+tb.name, "tf."+tb.name)
				}
				// Updates and deletes, some in one transaction.
				exec("BEGIN")
				for _, q := range typeFamilyChanges[:len(typeFamilyChanges)/2] {
					exec(q)
				}
				exec("COMMIT")
				for _, q := range typeFamilyChanges[len(typeFamilyChanges)/2:] {
					exec(q)
				}
				waitSynced(t, run, p.updb)
				for _, tb := range typeFamilyTables {
					checkEqual(t, p.updb, p.downdb, "tf."+tb.name, "tf."+tb.name)
				}
				if err := run.Stop(); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

// checkpointBefore returns the latest checkpoint recorded at or before pos,
// with its Schema filled from the last one that carried a schema.
func checkpointBefore(t *testing.T, store *recordingStore, pos streamer.Position) dmworker.Checkpoint {
	t.Helper()
	store.mu.Lock()
	defer store.mu.Unlock()
	var cp dmworker.Checkpoint
	var schema []byte
	found := false
	for _, c := range store.saved {
		if c.Pos.Compare(pos) > 0 {
			break
		}
		if c.Schema != nil {
			schema = c.Schema
		}
		if !c.Pos.IsZero() {
			cp, found = c, true
		}
	}
	if !found || schema == nil {
		t.Fatalf("no checkpoint with a schema at or before %s among %d", pos, len(store.saved))
	}
	cp.Schema = schema
	cp.SafeUntil = streamer.Position{}
	return cp
}

// schemaAfter returns the first schema recorded in a checkpoint after pos.
func schemaAfter(t *testing.T, store *recordingStore, pos streamer.Position) []byte {
	t.Helper()
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, c := range store.saved {
		if c.Pos.Compare(pos) > 0 && c.Schema != nil {
			return c.Schema
		}
	}
	t.Fatalf("no checkpoint with a schema after %s", pos)
	return nil
}

func upstreamPos(t *testing.T, db *sql.DB) streamer.Position {
	t.Helper()
	f, o := masterPos(t, db)
	return streamer.Position{Name: f, Offset: o}
}

// copyTable copies a table's rows from one server to another, through text.
func copyTable(t *testing.T, from, to *sql.DB, table string) {
	t.Helper()
	rows, err := from.Query("SELECT * FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	marks := strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",")
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		args := make([]any, len(vals))
		for i, v := range vals {
			if v.Valid {
				args[i] = v.String
			}
		}
		mustExec(t, to, "INSERT INTO "+table+" VALUES ("+marks+")", args...)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncerMinimalMetadataAlter(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 63, RowMetadata: "MINIMAL"})
		p.workers = workers
		store := &recordingStore{}
		s, err := dmworker.NewSyncer(p.config("alter"), p.sink, dmworker.WithCheckpointStore(store))
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		db := p.updb
		mustExec(t, db, "CREATE DATABASE m")
		const create = "CREATE TABLE m.t (id INT PRIMARY KEY, a INT, b VARCHAR(20), c DATETIME(6))"
		mustExec(t, db, create)
		mustExec(t, db, "INSERT INTO m.t VALUES (1, 10, 'one', '2001-01-01 00:00:00.1'), (2, 20, 'two', NULL)")
		waitSynced(t, run, db)
		early := upstreamPos(t, db) // rows of m.t follow this position
		mustExec(t, db, "INSERT INTO m.t VALUES (3, 30, 'three', '2003-03-03 03:03:03.333333'), (4, NULL, '🥝', '2004-04-04')")
		mustExec(t, db, "UPDATE m.t SET b = 'uno' WHERE id = 1")
		mustExec(t, db, "DELETE FROM m.t WHERE id = 2")
		waitSynced(t, run, db)
		beforeAlter := upstreamPos(t, db)
		// The downstream as it was at beforeAlter, for the fresh start below.
		snapshot := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 69})
		snapdb := snapshot.DB(t)
		mustExec(t, snapdb, "CREATE DATABASE m")
		mustExec(t, snapdb, create)
		copyTable(t, db, snapdb, "m.t")

		mustExec(t, db, "ALTER TABLE m.t ADD COLUMN x BIGINT DEFAULT 7 AFTER a")
		mustExec(t, db, "INSERT INTO m.t VALUES (5, 50, -5, 'five', '2005-05-05 05:05:05.5')")
		mustExec(t, db, "UPDATE m.t SET x = 9223372036854775807, b = 'tres' WHERE id = 3")
		mustExec(t, db, "ALTER TABLE m.t DROP COLUMN b")
		mustExec(t, db, "INSERT INTO m.t VALUES (6, 60, 6, '2006-06-06 06:06:06')")
		mustExec(t, db, "DELETE FROM m.t WHERE id = 4")
		mustExec(t, db, "UPDATE m.t SET a = a + 1 WHERE id IN (1, 5)")
		mustExec(t, db, "ALTER TABLE m.t MODIFY COLUMN c DATETIME(6) FIRST")
		mustExec(t, db, "INSERT INTO m.t VALUES ('2007-07-07 07:07:07.000007', 7, 70, 700)")
		mustExec(t, db, "UPDATE m.t SET c = NULL, x = -1 WHERE id = 6")
		mustExec(t, db, "DELETE FROM m.t WHERE id = 1")
		waitSynced(t, run, db)
		checkEqual(t, db, p.downdb, "m.t", "m.t")
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}

		t.Run("restart before the ALTER", func(t *testing.T) {
			cp := checkpointBefore(t, store, beforeAlter)
			mem := &dmworker.MemoryCheckpointStore{}
			if err := mem.Save(context.Background(), cp); err != nil {
				t.Fatal(err)
			}
			sink, err := mysqlsink.New(snapdb)
			if err != nil {
				t.Fatal(err)
			}
			s2, err := dmworker.NewSyncer(p.config("alter"), sink, dmworker.WithCheckpointStore(mem))
			if err != nil {
				t.Fatal(err)
			}
			run2 := runSyncer(t, s2)
			waitSynced(t, run2, db)
			checkEqual(t, db, snapdb, "m.t", "m.t")
			if err := run2.Stop(); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("wrong schema is an error", func(t *testing.T) {
			cp := checkpointBefore(t, store, early)
			cp.Schema = schemaAfter(t, store, beforeAlter) // has column x
			mem := &dmworker.MemoryCheckpointStore{}
			if err := mem.Save(context.Background(), cp); err != nil {
				t.Fatal(err)
			}
			s3, err := dmworker.NewSyncer(p.config("alter"), sinktest.NewMemSink(), dmworker.WithCheckpointStore(mem))
			if err != nil {
				t.Fatal(err)
			}
			runErr := s3.Run(context.Background())
			var se *dmworker.SyncError
			if !errors.Is(runErr, dmworker.ErrSchemaMismatch) || !errors.As(runErr, &se) {
				t.Fatalf("Run: %v, want ErrSchemaMismatch in a *SyncError", runErr)
			}
			if se.Table != "m.t" || se.Pos.Name == "" || !strings.Contains(runErr.Error(), "m.t") {
				t.Fatalf("the error does not name the table and position: %+v", se)
			}
		})
	})
}

func TestSyncerRoutingAndFilters(t *testing.T) {
	forWorkers(t, func(t *testing.T, workers int) {
		p := newSyncPair(t, testserver.MariaDBOptions{ServerID: 64})
		p.workers = workers
		cfg := p.config("route")
		cfg.Routes = []dmworker.RouteRule{
			{SchemaPattern: "shard_*", TablePattern: "orders_*", TargetSchema: "all", TargetTable: "orders"},
			{SchemaPattern: "shard_*", TargetSchema: "all"},
		}
		cfg.Filter = dmworker.BlockAllowList{
			IgnoreDBs:    []string{"scratch"},
			IgnoreTables: []dmworker.TablePattern{{Schema: "shard_2", Name: "secret"}},
		}
		cfg.EventFilters = []dmworker.EventFilterRule{
			// Both shards' CREATE DATABASE and CREATE TABLE route to the same
			// target, which is created by hand downstream: the second one
			// would collide.
			{SchemaPattern: "shard_*", Events: []string{"create database", "create table"}, Action: "Ignore"},
			{SchemaPattern: "shard_1", TablePattern: "*", Events: []string{"delete"}, Action: "Ignore"},
		}
		const ordersDef = "(id BIGINT PRIMARY KEY, customer VARCHAR(40) NOT NULL, amount DECIMAL(12,2), note TEXT)"
		mustExec(t, p.downdb, "CREATE DATABASE `all`")
		mustExec(t, p.downdb, "CREATE TABLE `all`.orders "+ordersDef)

		s, err := dmworker.NewSyncer(cfg, p.sink)
		if err != nil {
			t.Fatal(err)
		}
		run := runSyncer(t, s)
		db := p.updb
		for _, sh := range []string{"1", "2"} {
			mustExec(t, db, "CREATE DATABASE shard_"+sh)
			mustExec(t, db, "CREATE TABLE shard_"+sh+".orders_"+sh+" "+ordersDef)
		}
		mustExec(t, db, "CREATE TABLE shard_2.secret (id INT PRIMARY KEY, pw VARCHAR(20))")
		for i := 1; i <= 40; i++ {
			mustExec(t, db, "INSERT INTO shard_1.orders_1 VALUES (?, ?, ?, ?)", i, "c1", float64(i)*1.25, "🥝")
			mustExec(t, db, "INSERT INTO shard_2.orders_2 VALUES (?, ?, ?, NULL)", 1000+i, "c2", float64(i)*2.5)
			mustExec(t, db, "INSERT INTO shard_2.secret VALUES (?, 'hunter2')", i)
		}
		mustExec(t, db, "UPDATE shard_1.orders_1 SET amount = amount + 1 WHERE id % 3 = 0")
		mustExec(t, db, "UPDATE shard_2.orders_2 SET note = 'upd' WHERE id % 4 = 0")
		mustExec(t, db, "UPDATE shard_2.secret SET pw = 'x'")
		// Deletes on shard_1 are filtered out, those on shard_2 are not.
		// The rows whose delete is dropped are kept aside, in a schema the
		// task ignores.
		mustExec(t, db, "CREATE DATABASE scratch")
		mustExec(t, db, "CREATE TABLE scratch.deleted_1 LIKE shard_1.orders_1")
		mustExec(t, db, "INSERT INTO scratch.deleted_1 SELECT * FROM shard_1.orders_1 WHERE id % 5 = 0")
		mustExec(t, db, "DELETE FROM shard_1.orders_1 WHERE id % 5 = 0")
		mustExec(t, db, "DELETE FROM shard_2.orders_2 WHERE id % 5 = 0")
		mustExec(t, db, "DELETE FROM shard_2.secret WHERE id < 10")
		waitSynced(t, run, db)
		if err := run.Stop(); err != nil {
			t.Fatal(err)
		}

		// The expected rows: both shards, plus shard_1's deleted rows.
		mustExec(t, db, "CREATE DATABASE expect")
		mustExec(t, db, "CREATE TABLE expect.orders "+ordersDef)
		mustExec(t, db, "INSERT INTO expect.orders SELECT * FROM shard_1.orders_1 UNION ALL SELECT * FROM shard_2.orders_2 UNION ALL SELECT * FROM scratch.deleted_1")
		checkEqual(t, db, p.downdb, "expect.orders", "`all`.orders")

		var schemas []string
		rows, err := p.downdb.Query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'test', ?) ORDER BY 1", mysqlsink.DefaultCheckpointSchema)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			schemas = append(schemas, n)
		}
		rows.Close()
		if strings.Join(schemas, ",") != "all" {
			t.Fatalf("downstream schemas %v, want only all", schemas)
		}
		var tables []string
		rows, err = p.downdb.Query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'all' ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			tables = append(tables, n)
		}
		rows.Close()
		if strings.Join(tables, ",") != "orders" {
			t.Fatalf("downstream tables in all: %v, want only orders (no secret)", tables)
		}
	})
}

// fillTypeFamilies creates the type-family tables in db and fills them
// with typeFamilyRows, on one session with zero dates allowed and a time
// zone that is not UTC for the TIMESTAMP columns; it returns a function
// that runs more statements on that session (closed at the test's end).
func fillTypeFamilies(t *testing.T, db *sql.DB) func(q string) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'")
	exec("SET SESSION time_zone = '+05:30'")
	exec("CREATE DATABASE tf")
	for _, tb := range typeFamilyTables {
		exec(tb.create)
	}
	for _, q := range typeFamilyRows {
		exec(q)
	}
	return exec
}
