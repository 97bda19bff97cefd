-- DML as applications write it: multi-statement transactions with
-- savepoints, multi-table UPDATE and DELETE, INSERT ... ON DUPLICATE KEY
-- UPDATE, REPLACE (which deletes the rows it collides with on any unique
-- key), INSERT IGNORE, bulk INSERT ... SELECT, non-transactional engines,
-- statements that change nothing.
CREATE DATABASE c_dml;
USE c_dml;
CREATE TABLE stock (sku VARCHAR(20) PRIMARY KEY, ean CHAR(13) NULL, qty INT NOT NULL DEFAULT 0, updated_at DATETIME(6) NULL, UNIQUE KEY (ean)) ENGINE=InnoDB;
CREATE TABLE moves (id BIGINT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(20), delta INT, at DATETIME(6), KEY (sku));
CREATE TABLE counters (name VARCHAR(64) PRIMARY KEY, n BIGINT UNSIGNED NOT NULL DEFAULT 0, last JSON);
CREATE TABLE log_myisam (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(100)) ENGINE=MyISAM;
CREATE TABLE log_aria (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(100), KEY (msg)) ENGINE=Aria;
CREATE TABLE bulk (id INT PRIMARY KEY, grp TINYINT, pad CHAR(100), v DOUBLE);
INSERT INTO stock VALUES ('sku-1', '4006381333931', 10, NULL), ('sku-2', '4006381333932', 0, NULL), ('sku-3', NULL, 5, NULL);
INSERT INTO bulk SELECT seq, seq % 7, REPEAT(CHAR(65 + seq % 26), 100), seq / 3 FROM seq_1_to_2000;
-- @snapshot
BEGIN;
UPDATE stock SET qty = qty - 3, updated_at = '2021-01-01 00:00:00.000001' WHERE sku = 'sku-1';
INSERT INTO moves (sku, delta, at) VALUES ('sku-1', -3, '2021-01-01 00:00:00.000001');
SAVEPOINT s1;
UPDATE stock SET qty = 1000 WHERE sku = 'sku-2';
INSERT INTO moves (sku, delta, at) VALUES ('sku-2', 1000, NULL);
ROLLBACK TO SAVEPOINT s1;
INSERT INTO moves (sku, delta, at) VALUES ('sku-3', 1, NULL);
COMMIT;
BEGIN;
INSERT INTO moves (sku, delta) VALUES ('sku-9', 1);
ROLLBACK;
-- Upserts: counters bumped, the same key twice in one statement.
INSERT INTO counters (name, n, last) VALUES ('visits', 1, '{"by": "a"}') ON DUPLICATE KEY UPDATE n = n + 1, last = VALUES(last);
INSERT INTO counters (name, n, last) VALUES ('visits', 1, '{"by": "b"}'), ('visits', 1, '{"by": "c"}'), ('errors', 1, NULL) ON DUPLICATE KEY UPDATE n = n + VALUES(n), last = VALUES(last);
INSERT INTO counters (name) VALUES ('errors') ON DUPLICATE KEY UPDATE n = n;
INSERT INTO stock (sku, ean, qty) VALUES ('sku-4', '4006381333931', 1) ON DUPLICATE KEY UPDATE qty = qty + 100;
-- REPLACE colliding with two rows at once (primary key one, unique key the other).
REPLACE INTO stock (sku, ean, qty) VALUES ('sku-2', '4006381333931', 7);
REPLACE INTO stock VALUES ('sku-5', NULL, 5, NULL), ('sku-5', NULL, 6, NULL);
INSERT IGNORE INTO stock (sku, ean, qty) VALUES ('sku-2', NULL, 0), ('sku-6', NULL, 6);
-- Multi-table UPDATE and DELETE.
UPDATE stock s JOIN (SELECT sku, SUM(delta) AS d FROM moves GROUP BY sku) m ON m.sku = s.sku SET s.qty = s.qty + m.d, s.updated_at = '2022-02-02 02:02:02';
UPDATE stock s, moves m SET s.qty = s.qty + 1, m.delta = m.delta * 10 WHERE s.sku = m.sku AND s.sku = 'sku-3';
DELETE m FROM moves m LEFT JOIN stock s ON s.sku = m.sku WHERE s.sku IS NULL;
DELETE s, m FROM stock s JOIN moves m ON m.sku = s.sku WHERE s.sku = 'sku-3';
-- Bulk writes in big statements, a LOAD-style batch and a mass update.
INSERT INTO bulk SELECT seq, seq % 7, REPEAT('z', seq % 100), -seq FROM seq_2001_to_6000;
UPDATE bulk SET v = v * 2, pad = 'upd' WHERE grp = 3;
DELETE FROM bulk WHERE grp = 5 OR id > 5900;
INSERT INTO bulk VALUES (7001, 1, 'a', 1), (7002, 2, 'b', 2), (7003, 3, 'c', 3), (7004, 4, 'd', 4), (7005, 5, 'e', 5), (7006, 6, 'f', 6), (7007, 0, 'g', 7), (7008, 1, 'h', 8);
-- Non-transactional tables, alone and inside a transaction.
INSERT INTO log_myisam (msg) VALUES ('m1'), ('m2');
INSERT INTO log_aria (msg) VALUES ('a1');
BEGIN;
INSERT INTO log_myisam (msg) VALUES ('in-tx');
UPDATE stock SET qty = qty + 1 WHERE sku = 'sku-1';
INSERT INTO log_aria (msg) VALUES ('in-tx');
COMMIT;
DELETE FROM log_myisam WHERE msg = 'm1';
UPDATE log_aria SET msg = 'a1b' WHERE msg = 'a1';
-- Statements that match nothing or change nothing.
UPDATE stock SET qty = qty WHERE sku = 'sku-1';
DELETE FROM stock WHERE sku = 'nope';
UPDATE stock SET qty = qty + 0;
