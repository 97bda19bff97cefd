-- DDL in the middle of the stream, as migrations write it: columns added,
-- dropped, modified, renamed and reordered with rows written between
-- each; enum values inserted in the middle; a charset conversion; tables
-- renamed and swapped; indexes; TRUNCATE; CREATE TABLE ... LIKE and ...
-- SELECT; partitioned tables; views, triggers, procedures, functions and
-- events, which the syncer skips (their effects arrive as rows).
CREATE DATABASE c_ddl DEFAULT CHARACTER SET latin1;
USE c_ddl;
CREATE TABLE users (id INT UNSIGNED NOT NULL AUTO_INCREMENT, login VARCHAR(32) NOT NULL, email VARCHAR(100), state ENUM('new','active','gone') NOT NULL DEFAULT 'new', PRIMARY KEY (id)) ENGINE=InnoDB;
INSERT INTO users (login, email, state) VALUES ('ann', 'ann@x', 'active'), ('bob', NULL, 'new'), ('cid', 'c@x', 'gone');
CREATE TABLE posts (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, author INT UNSIGNED, title VARCHAR(200), body MEDIUMTEXT, status VARCHAR(20) DEFAULT 'draft', created DATETIME NOT NULL DEFAULT '2000-01-01 00:00:00');
INSERT INTO posts (author, title, body) VALUES (1, 'Hello', 'first'), (2, 'Ünïcödé', 'zweite'), (1, NULL, NULL);
CREATE TABLE parts (id INT NOT NULL, region TINYINT NOT NULL, v VARCHAR(10), PRIMARY KEY (id, region)) PARTITION BY LIST (region) (PARTITION p1 VALUES IN (1, 2), PARTITION p2 VALUES IN (3, 4));
INSERT INTO parts VALUES (1, 1, 'a'), (2, 3, 'b');
CREATE TABLE hashed (id INT PRIMARY KEY, v INT) PARTITION BY HASH (id) PARTITIONS 4;
INSERT INTO hashed SELECT seq, seq FROM seq_1_to_50;
CREATE TABLE ranged (d DATE NOT NULL, n INT, KEY (d)) PARTITION BY RANGE COLUMNS (d) (PARTITION p2020 VALUES LESS THAN ('2021-01-01'), PARTITION pmax VALUES LESS THAN (MAXVALUE));
INSERT INTO ranged VALUES ('2020-05-05', 1), ('2030-01-01', 2), ('2020-05-05', 1);
-- @snapshot
ALTER TABLE users ADD COLUMN created_at DATETIME(3) NOT NULL DEFAULT '2001-01-01 00:00:00.000' AFTER login, ADD COLUMN score DOUBLE NULL;
INSERT INTO users (login, created_at, score) VALUES ('dan', '2020-02-02 02:02:02.020', 1.5);
UPDATE users SET score = 2.25 WHERE login = 'ann';
ALTER TABLE users MODIFY COLUMN login VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL, ADD UNIQUE KEY login_uk (login);
INSERT INTO users (login) VALUES ('émile🥝');
ALTER TABLE users CHANGE COLUMN email mail VARCHAR(120) NULL AFTER id;
UPDATE users SET mail = 'bob@x' WHERE login = 'bob';
ALTER TABLE users RENAME COLUMN score TO rating;
ALTER TABLE users MODIFY COLUMN state ENUM('new','invited','active','suspended','gone') NOT NULL DEFAULT 'new';
INSERT INTO users (login, state) VALUES ('eve', 'invited'), ('fay', 'suspended');
UPDATE users SET state = 'active' WHERE login = 'bob';
ALTER TABLE users DROP COLUMN rating, ALGORITHM=INPLACE;
INSERT INTO users (login, mail) VALUES ('gus', 'g@x');
ALTER TABLE users ADD COLUMN flags BIT(3) NOT NULL DEFAULT b'101' FIRST;
UPDATE users SET flags = b'010' WHERE id = 1;
ALTER TABLE users MODIFY COLUMN flags BIT(3) NOT NULL DEFAULT b'101' AFTER id;
DELETE FROM users WHERE login = 'cid';
-- Index changes and a primary key moved to another column set.
CREATE INDEX title_idx ON posts (title(20));
ALTER TABLE posts ADD INDEX author_status (author, status), DROP INDEX title_idx;
ALTER TABLE posts DROP PRIMARY KEY, ADD PRIMARY KEY (id, created);
UPDATE posts SET status = 'published', created = '2010-10-10 10:10:10' WHERE id = 1;
-- A charset conversion with rows on both sides of it.
ALTER TABLE posts CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
INSERT INTO posts (author, title, body) VALUES (3, 'Emoji 🥝', REPEAT('ß', 1000));
ALTER TABLE posts DEFAULT CHARACTER SET latin1;
ALTER TABLE posts ADD COLUMN slug VARCHAR(50);
INSERT INTO posts (author, title, slug) VALUES (4, 'after', 'àpres');
-- Renames: a table, a swap of two tables in one statement, ALTER ... RENAME.
RENAME TABLE posts TO articles;
INSERT INTO articles (author, title) VALUES (5, 'renamed');
CREATE TABLE articles_new LIKE articles;
INSERT INTO articles_new (author, title) VALUES (6, 'new one');
RENAME TABLE articles TO articles_old, articles_new TO articles;
INSERT INTO articles (author, title) VALUES (7, 'after swap');
UPDATE articles_old SET title = 'old' WHERE author = 5;
ALTER TABLE articles_old RENAME TO archive;
DELETE FROM archive WHERE author = 1;
-- CREATE TABLE ... SELECT (logged in row format as a CREATE TABLE and rows).
CREATE TABLE user_stats AS SELECT state, COUNT(*) AS n, MAX(login) AS last_login FROM users GROUP BY state;
CREATE TABLE IF NOT EXISTS user_stats (x INT);
UPDATE user_stats SET n = n + 100 WHERE state = 'new';
-- TRUNCATE, then rows again.
TRUNCATE TABLE ranged;
INSERT INTO ranged VALUES ('2019-01-01', 9);
TRUNCATE hashed;
INSERT INTO hashed VALUES (1, 100), (2, 200);
UPDATE parts SET region = 4 WHERE id = 1;
-- Views, triggers, procedures, functions, events: skipped, their effects
-- are rows.
CREATE VIEW active_users AS SELECT id, login FROM users WHERE state = 'active';
CREATE OR REPLACE VIEW active_users AS SELECT id, login, mail FROM users WHERE state = 'active';
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, user_id INT UNSIGNED, what VARCHAR(20), at DATETIME(6) NOT NULL DEFAULT '2000-01-01 00:00:00');
DELIMITER ;;
CREATE TRIGGER users_au AFTER UPDATE ON users FOR EACH ROW
BEGIN
  INSERT INTO audit (user_id, what) VALUES (NEW.id, CONCAT('state:', NEW.state));
END;;
CREATE PROCEDURE bump(IN p_login VARCHAR(64))
BEGIN
  UPDATE users SET state = 'active' WHERE login = p_login;
  INSERT INTO audit (user_id, what) VALUES (NULL, CONCAT('bump:', p_login));
END;;
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;;
DELIMITER ;
CREATE EVENT IF NOT EXISTS nightly ON SCHEDULE EVERY 1 DAY STARTS '2037-01-01 00:00:00' DISABLE DO DELETE FROM audit WHERE at < '2000-01-01';
UPDATE users SET state = 'gone' WHERE login = 'eve';
CALL bump('fay');
INSERT INTO audit (user_id, what) VALUES (twice(21), 'fn');
DROP TRIGGER users_au;
DROP PROCEDURE bump;
DROP FUNCTION twice;
DROP EVENT nightly;
DROP VIEW active_users;
-- Temporary tables are never replicated, and a TEMPORARY table feeding a
-- real one arrives as rows.
CREATE TEMPORARY TABLE tmp_ids (id INT PRIMARY KEY);
INSERT INTO tmp_ids VALUES (1), (2);
UPDATE users u JOIN tmp_ids t ON t.id = u.id SET u.mail = 'tmp@x';
DROP TEMPORARY TABLE tmp_ids;
-- Dropped tables, one of them missing, and a database dropped and recreated.
CREATE TABLE scratch (id INT);
INSERT INTO scratch VALUES (1);
DROP TABLE IF EXISTS scratch, never_existed;
CREATE DATABASE c_ddl2;
CREATE TABLE c_ddl2.t (id INT PRIMARY KEY);
INSERT INTO c_ddl2.t VALUES (1);
DROP DATABASE c_ddl2;
CREATE DATABASE c_ddl2 CHARACTER SET utf8mb4;
CREATE TABLE c_ddl2.t (id INT PRIMARY KEY, v VARCHAR(10));
INSERT INTO c_ddl2.t VALUES (2, '🥝');
ALTER DATABASE c_ddl2 CHARACTER SET latin1;
CREATE TABLE c_ddl2.t2 (id INT PRIMARY KEY, v VARCHAR(10));
INSERT INTO c_ddl2.t2 VALUES (1, 'é');
