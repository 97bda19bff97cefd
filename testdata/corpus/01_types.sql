-- Type families with edge values, in shapes taken from replication test
-- suites (rpl row type tests, gh-ost localtests): types inside keys, zero
-- dates under a permissive sql_mode, fractional and negative times,
-- DECIMAL extremes, BIT(1..64), ENUM/SET, YEAR, JSON, GEOMETRY, big
-- BLOB/TEXT values, latin1/binary/utf8mb4 collations, NULLs.
SET SESSION sql_mode = '';
SET SESSION time_zone = '-07:00';
CREATE DATABASE c_types;
USE c_types;
CREATE TABLE bit_pk (id BIGINT NOT NULL, b BIT NOT NULL, b7 BIT(7), b33 BIT(33), b64 BIT(64), PRIMARY KEY (id, b)) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO bit_pk VALUES (1, b'1', b'1111111', b'100000000000000000000000000000001', 0xFFFFFFFFFFFFFFFF), (1, b'0', 0, 0, 0), (2, b'1', NULL, NULL, 1);
CREATE TABLE enum_pk (e ENUM('red','green','blue','') NOT NULL, s SET('a','b','c','d') NOT NULL DEFAULT '', n INT, PRIMARY KEY (e, s));
INSERT INTO enum_pk VALUES ('red', 'a,c', 1), ('green', '', 2), ('', 'd', 3), ('blue', 'a,b,c,d', NULL);
CREATE TABLE dec_pk (d DECIMAL(20,4) UNSIGNED NOT NULL PRIMARY KEY, m DECIMAL(65,30), z DECIMAL(1,0), f DECIMAL(30,30)) ENGINE=InnoDB;
INSERT INTO dec_pk VALUES (0, 0, 0, 0), (9999999999999999.9999, 99999999999999999999999999999999999.999999999999999999999999999999, 9, 0.999999999999999999999999999999),
  (0.0001, -99999999999999999999999999999999999.999999999999999999999999999999, -9, -0.000000000000000000000000000001), (12.5, -0.5, NULL, NULL);
-- Zero and partial dates, legal under sql_mode ''.
CREATE TABLE dt_zero (id INT AUTO_INCREMENT PRIMARY KEY, d DATE NOT NULL DEFAULT '0000-00-00', dt DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00', ts TIMESTAMP NOT NULL DEFAULT '0000-00-00 00:00:00', dt6 DATETIME(6), t TIME(3), y YEAR);
INSERT INTO dt_zero (d, dt, ts, dt6, t, y) VALUES ('0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', '-838:59:59.000', 0),
  ('2019-00-15', '2019-02-00 10:11:12', '1970-01-01 00:00:01', '2019-00-00 00:00:00.000001', '-00:00:00.001', 1901),
  ('1000-01-01', '1000-01-01 00:00:00', '2038-01-19 03:14:07', '9999-12-31 23:59:59.999999', '838:59:59.999', 2155);
INSERT INTO dt_zero (id) VALUES (NULL);
-- Sub-millisecond values with leading zeros in the fraction (gh-ost datetime-submillis-zeroleading).
CREATE TABLE dt_frac (id INT AUTO_INCREMENT PRIMARY KEY, i INT NOT NULL, dt0 DATETIME(6), dt1 DATETIME(6), ts2 TIMESTAMP(6) NULL, t4 TIME(4), dt2 DATETIME(2), KEY i_idx (i));
INSERT INTO dt_frac VALUES (NULL, 11, '2016-10-31 11:22:33.0123', NOW(6), '2016-10-31 11:22:33.0369', '-01:02:03.0004', '2016-10-31 11:22:33.01');
INSERT INTO dt_frac VALUES (NULL, 13, '2016-10-31 11:22:33.000001', '2016-10-31 11:22:33.789', '2016-10-31 11:22:33.000009', '00:00:00.0001', '2016-10-31 11:22:33.09');
UPDATE dt_frac SET dt1 = '2016-10-31 11:22:33.0246', t4 = '-838:59:59.0000' WHERE i = 11 ORDER BY id DESC LIMIT 1;
-- Temporal columns inside the primary key.
CREATE TABLE dt_pk (d DATETIME(3) NOT NULL, t TIME(6) NOT NULL, v VARCHAR(10), PRIMARY KEY (d, t));
INSERT INTO dt_pk VALUES ('2020-01-01 00:00:00.001', '-00:00:00.000001', 'a'), ('2020-01-01 00:00:00.000', '00:00:00', 'b'), ('0000-00-00 00:00:00.000', '-12:00:00.5', 'c');
UPDATE dt_pk SET t = '12:00:00.5', v = 'c2' WHERE d = '0000-00-00 00:00:00.000';
-- Float and double: compared by value, never equal to their decimal text.
CREATE TABLE floats_nokey (f FLOAT, d DOUBLE, f52 FLOAT(5,2), r REAL);
INSERT INTO floats_nokey VALUES (1.1, 2.2, 3.33, 4.4), (0.1, 0.3, -999.99, 1e-300), (-3.4e38, 1.7976931348623157e308, 0, NULL), (NULL, NULL, NULL, NULL);
UPDATE floats_nokey SET d = d * 2 WHERE f52 = 3.33;
DELETE FROM floats_nokey WHERE f52 = 0;
CREATE TABLE floats_uk (id INT AUTO_INCREMENT PRIMARY KEY, f FLOAT NOT NULL, d DOUBLE, UNIQUE KEY f_uk (f));
INSERT INTO floats_uk (f, d) VALUES (1.1, 1), (2.2, 2), (3.3, 3);
UPDATE floats_uk SET d = 10 WHERE id = 2;
DELETE FROM floats_uk WHERE id = 3;
-- Strings in several charsets and collations, case-only changes of a
-- case-insensitive key, trailing spaces (PAD SPACE), binary strings.
CREATE TABLE str_ci (k VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL PRIMARY KEY, v VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci, b VARBINARY(16), c CHAR(5) CHARACTER SET binary);
INSERT INTO str_ci VALUES ('abc', 'Grüße 🥝', 0x00FF00, 'x'), ('Zürich', 'zurich', '', ''), ('tail  ', 'spaces  ', 'sp ', 'a  '), ('', '', NULL, NULL);
UPDATE str_ci SET k = 'ABC' WHERE k = 'abc';
UPDATE str_ci SET k = 'ZÜRICH', v = CONCAT(v, ' ½') WHERE k = 'zürich';
UPDATE str_ci SET v = 'moved' WHERE k = 'tail';
CREATE TABLE str_bin (id INT PRIMARY KEY, u VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, l TEXT CHARACTER SET latin1 COLLATE latin1_bin, a CHAR(3) CHARACTER SET ascii, u3 VARCHAR(10) CHARACTER SET utf8mb3, ucs VARCHAR(10) CHARACTER SET ucs2, u16 VARCHAR(10) CHARACTER SET utf16, u32 CHAR(2) CHARACTER SET utf32, UNIQUE KEY (u));
INSERT INTO str_bin VALUES (1, 'a', 'ÿþ', 'abc', 'ä€', 'ab€', '𝄞', '🥝'), (2, 'A', 'x\0y', '', '', '', '', ''), (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE str_bin SET u = 'b', u16 = CONCAT(u16, 'é') WHERE id = 1;
-- Big values: a 1 MiB text and a 2 MiB blob in one row.
CREATE TABLE big (id INT PRIMARY KEY, lt LONGTEXT, lb LONGBLOB, mt MEDIUMTEXT CHARACTER SET latin1, tb TINYBLOB);
INSERT INTO big VALUES (1, REPEAT('🥝x', 262144), REPEAT(0xDEADBEEF00, 419430), REPEAT('é', 70000), REPEAT(0xFF, 255));
INSERT INTO big VALUES (2, '', '', '', ''), (3, NULL, NULL, NULL, NULL);
UPDATE big SET lt = CONCAT(lt, 'tail'), tb = 0x00 WHERE id = 1;
UPDATE big SET lb = REPEAT(0x01, 65536) WHERE id = 2;
-- JSON documents of every shape.
CREATE TABLE js (id INT PRIMARY KEY, j JSON, jn JSON NOT NULL DEFAULT '{}');
INSERT INTO js VALUES (1, '{"a": [1, 2.5, -3e10, true, false, null], "s": "é\\u0000🥝", "o": {"": ""}}', '[]'),
  (2, '"scalar"', '1.0'), (3, '[]', '{"k": 18446744073709551615}'), (4, NULL, 'null'), (5, CONCAT('[', REPEAT('1,', 5000), '1]'), '{}');
UPDATE js SET j = JSON_SET(j, '$.a[0]', 'changed', '$.new', JSON_OBJECT('x', 1)) WHERE id = 1;
UPDATE js SET j = JSON_ARRAY_APPEND(j, '$', 2) WHERE id = 3;
-- Spatial values.
CREATE TABLE geo (id INT PRIMARY KEY, g GEOMETRY, p POINT NOT NULL, l LINESTRING, mp MULTIPOLYGON, gc GEOMETRYCOLLECTION, SPATIAL KEY (p));
INSERT INTO geo VALUES (1, ST_GeomFromText('POINT(1 1)'), ST_GeomFromText('POINT(-122.41 37.77)'), ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)'),
  ST_GeomFromText('MULTIPOLYGON(((0 0,10 0,10 10,0 10,0 0),(5 5,7 5,7 7,5 7,5 5)))'), ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 2), LINESTRING(1 2, 3 4))'));
INSERT INTO geo VALUES (2, NULL, ST_GeomFromText('POINT(0 0)'), NULL, NULL, NULL);
UPDATE geo SET g = ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'), p = ST_GeomFromText('POINT(3 4)') WHERE id = 2;
-- Integer extremes in a key, AUTO_INCREMENT 0 under NO_AUTO_VALUE_ON_ZERO.
SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';
CREATE TABLE ai_zero (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, v TINYINT SIGNED, m MEDIUMINT UNSIGNED ZEROFILL);
INSERT INTO ai_zero VALUES (0, -128, 0), (NULL, NULL, 42), (18446744073709551614, 127, 16777215);
SET SESSION sql_mode = '';
-- @snapshot
INSERT INTO dt_zero (d, dt, ts, dt6, t, y) VALUES ('0000-00-00', '2000-00-00 00:00:00', 0, '0000-00-00 00:00:00.5', '-00:00:01.5', 70);
UPDATE dt_zero SET ts = '0000-00-00 00:00:00', dt6 = '2001-01-01 00:00:00.000001' WHERE id = 2;
DELETE FROM dt_zero WHERE d = '1000-01-01';
UPDATE bit_pk SET b = b'1', b33 = b33 + 1 WHERE id = 1 AND b = b'0' AND 0;
UPDATE bit_pk SET b7 = b'0101010', b64 = 0x8000000000000000 WHERE id = 2;
DELETE FROM bit_pk WHERE id = 1 AND b = b'0';
UPDATE enum_pk SET e = 'blue', s = 'b' WHERE e = 'red';
DELETE FROM enum_pk WHERE e = '';
UPDATE dec_pk SET d = d + 1, m = m / 3 WHERE d = 12.5;
DELETE FROM dec_pk WHERE d = 0;
INSERT INTO dt_frac VALUES (NULL, 17, '2016-10-31 11:22:33.100000', '1970-01-01 00:00:00.000001', '1970-01-01 00:00:01.000001', '-00:00:00.0001', '2016-10-31 11:22:33.99');
UPDATE dt_frac SET ts2 = NULL, dt0 = dt0 + INTERVAL 1 MICROSECOND WHERE i = 13;
UPDATE floats_nokey SET f = f + 1 WHERE d = 0.3;
DELETE FROM floats_nokey WHERE f52 = -999.99;
UPDATE floats_uk SET d = d + 0.5;
UPDATE str_ci SET k = 'abc ' WHERE k = 'ABC';
DELETE FROM str_ci WHERE k = '';
UPDATE big SET lb = CONCAT(lb, lb) WHERE id = 1;
DELETE FROM big WHERE id = 3;
UPDATE js SET j = JSON_REMOVE(j, '$.o'), jn = JSON_OBJECT('e', '') WHERE id = 1;
DELETE FROM geo WHERE id = 1;
UPDATE ai_zero SET v = v - 1 WHERE id = 0;
