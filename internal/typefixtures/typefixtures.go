// Package typefixtures holds the tables, rows and row changes of every
// column type family the tests replicate (the syncer's type tests, the
// snapshot's, the diff's and the row decoder's differential test): one
// copy, so that a type added here is tested everywhere.
package typefixtures

// Table is one table of the fixtures: its name in schema tf and its
// CREATE TABLE statement.
type Table struct{ Name, Create string }

// Tables are the type families' tables, in schema tf: one per family of
// column types (integers, decimals, floats, bits, enums and sets, times,
// strings, binaries, JSON, geometry, a table without a key).
var Tables = []Table{
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

// Rows fill Tables (with zero dates: run them in a session whose sql_mode
// allows them), edge values of each type included.
var Rows = []string{
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

// Changes update and delete rows of Rows, and insert a few more.
var Changes = []string{
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
