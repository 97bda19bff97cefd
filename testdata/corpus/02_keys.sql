-- Row identity without a primary key, composite and prefix keys, key
-- values that move within a transaction (what the parallel applier's
-- causality has to see), generated columns in and out of keys.
CREATE DATABASE c_keys;
USE c_keys;
-- Unique key only, nullable: rows with NULL in it are not identified by it.
CREATE TABLE uk_only (a INT NULL, b VARCHAR(20) NOT NULL, c INT, UNIQUE KEY uab (a, b));
INSERT INTO uk_only VALUES (1, 'x', 1), (NULL, 'x', 2), (NULL, 'x', 2), (2, 'y', NULL);
-- Unique key, NOT NULL: acts as the primary key (InnoDB clusters on it).
CREATE TABLE uk_notnull (code CHAR(4) NOT NULL, name VARCHAR(40), qty INT, UNIQUE KEY (code));
INSERT INTO uk_notnull VALUES ('A001', 'one', 1), ('A002', 'two', 2), ('A003', 'three', 3);
-- No key at all, with duplicate rows.
CREATE TABLE nokey (a INT, b VARCHAR(10), t TEXT, d DATETIME(6));
INSERT INTO nokey VALUES (1, 'dup', 'same', '2020-01-01 00:00:00.1'), (1, 'dup', 'same', '2020-01-01 00:00:00.1'), (1, 'dup', 'same', '2020-01-01 00:00:00.1'),
  (2, NULL, NULL, NULL), (2, NULL, NULL, NULL), (3, 'x', REPEAT('long ', 2000), NULL);
-- Composite primary key (gh-ost compound-pk) and a prefix index.
CREATE TABLE cpk (tenant INT NOT NULL, id BIGINT NOT NULL, ts TIMESTAMP(3) NOT NULL DEFAULT '2001-01-01 00:00:00.000', v VARCHAR(300), PRIMARY KEY (tenant, id), KEY v_prefix (v(10)));
INSERT INTO cpk (tenant, id, v) VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c'), (2, 2, REPEAT('d', 300));
-- A unique prefix key on a TEXT column, the only key.
CREATE TABLE prefix_uk (body TEXT NOT NULL, n INT, UNIQUE KEY body_p (body(16)));
INSERT INTO prefix_uk VALUES ('0123456789abcdef-one', 1), ('0123456789abcdeX-two', 2);
-- Generated columns, virtual and stored, in unique keys (gh-ost
-- generated-columns-unique has one in the primary key, which MariaDB
-- refuses).
CREATE TABLE gen (id INT AUTO_INCREMENT, idb VARCHAR(36) CHARACTER SET utf8mb4 GENERATED ALWAYS AS (JSON_UNQUOTE(JSON_EXTRACT(jsonobj, '$._id'))) STORED,
  jsonobj JSON NOT NULL, a INT, b INT AS (a * 2) VIRTUAL, c VARCHAR(20) AS (CONCAT('c', a)) PERSISTENT, d INT AS (a + 1) VIRTUAL,
  updated DATETIME DEFAULT NULL, PRIMARY KEY (id), UNIQUE KEY idb_uk (idb), UNIQUE KEY c_uk (c), KEY d_k (d));
INSERT INTO gen (id, jsonobj, a) VALUES (NULL, '{"_id":2}', 1), (NULL, '{"_id":3}', 2), (NULL, '{"_id":5}', NULL);
-- Invisible columns (MariaDB 10.3+): not in SELECT *, still replicated.
CREATE TABLE invis (id INT PRIMARY KEY, v INT, secret VARCHAR(10) INVISIBLE DEFAULT 'hidden', created TIMESTAMP(6) INVISIBLE NULL);
INSERT INTO invis (id, v, secret) VALUES (1, 1, 's1'), (2, 2, DEFAULT);
-- @snapshot
-- Updates and deletes through each kind of identity.
UPDATE uk_only SET c = 20 WHERE a IS NULL LIMIT 1;
DELETE FROM uk_only WHERE a IS NULL AND c = 2;
UPDATE uk_only SET a = 3, b = 'z' WHERE a = 1;
UPDATE uk_notnull SET code = 'B001' WHERE code = 'A001';
DELETE FROM uk_notnull WHERE code = 'A003';
DELETE FROM nokey WHERE a = 1 LIMIT 1;
UPDATE nokey SET b = 'one' WHERE a = 1 LIMIT 1;
UPDATE nokey SET t = CONCAT(t, 'x') WHERE a = 3;
DELETE FROM nokey WHERE a = 2 LIMIT 1;
-- Key swaps inside a transaction: a unique value moves from one row to
-- another and back, primary keys are shifted one up from the top.
BEGIN;
UPDATE uk_notnull SET code = 'TMP0' WHERE code = 'A002';
UPDATE uk_notnull SET code = 'A002' WHERE code = 'B001';
UPDATE uk_notnull SET code = 'B001' WHERE code = 'TMP0';
COMMIT;
UPDATE cpk SET id = id + 1 WHERE tenant = 1 ORDER BY id DESC;
UPDATE cpk SET tenant = 3 WHERE tenant = 2 AND id = 1;
UPDATE cpk SET v = CONCAT(LEFT(v, 299), 'e'), ts = '2038-01-19 03:14:07.999' WHERE tenant = 2;
BEGIN;
DELETE FROM cpk WHERE tenant = 3 AND id = 1;
INSERT INTO cpk (tenant, id, v) VALUES (3, 1, 'reborn');
UPDATE cpk SET v = 'reborn2' WHERE tenant = 3 AND id = 1;
COMMIT;
UPDATE prefix_uk SET body = '0123456789abcdefZZZ', n = 10 WHERE n = 1;
DELETE FROM prefix_uk WHERE n = 2;
INSERT INTO prefix_uk VALUES ('0123456789abcdeX-three', 3);
INSERT INTO gen (id, jsonobj, a) VALUES (NULL, '{"_id":7}', 7), (NULL, '{"_id":11}', 11);
UPDATE gen SET updated = '2020-02-02 02:02:02', a = a + 10 WHERE idb = 5 OR idb = 7;
UPDATE gen SET jsonobj = '{"_id":13}' WHERE idb = 11;
DELETE FROM gen WHERE idb = 2;
UPDATE invis SET secret = 'changed', v = 3 WHERE id = 2;
INSERT INTO invis (id, v, secret, created) VALUES (3, 3, NULL, '2001-01-01 00:00:00.000001');
DELETE FROM invis WHERE id = 1;
