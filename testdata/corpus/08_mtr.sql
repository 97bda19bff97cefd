-- Found by running MariaDB's own test suite through the syncer
-- (TestSyncerMTR, syncer_mtr_test.go); the SQL is ours.
CREATE DATABASE c_mtr;

-- A session may turn CHECK constraints off: the rows it writes that break
-- them are in the binlog, and so is a DDL that adds a constraint its rows
-- break. MariaDB's replicas take both; the sink refused them (error 4025)
-- and the task stopped.
CREATE TABLE c_mtr.price (id INT PRIMARY KEY, lo INT, hi INT, CONSTRAINT lo_hi CHECK (lo <= hi), v INT CHECK (v > 0));
INSERT INTO c_mtr.price VALUES (1, 1, 2, 1);
SET SESSION check_constraint_checks = 0;
INSERT INTO c_mtr.price VALUES (2, 5, 1, 1), (3, 1, 1, -1);
UPDATE c_mtr.price SET hi = 0 WHERE id = 1;
ALTER TABLE c_mtr.price ADD CONSTRAINT small CHECK (hi < 2);
INSERT INTO c_mtr.price VALUES (4, 9, 9, 9);
SET SESSION check_constraint_checks = DEFAULT;

-- An ALTER TABLE that makes a column AUTO_INCREMENT gives the rows holding
-- 0 there new values, unless the session's sql_mode has
-- NO_AUTO_VALUE_ON_ZERO. The sink ran every DDL with that mode: the
-- downstream kept 0 where the upstream had numbered the row (or stopped on
-- a duplicate key where two rows held 0).
CREATE TABLE c_mtr.renum (a INT NOT NULL, b VARCHAR(10), KEY (b)) ENGINE=InnoDB;
INSERT INTO c_mtr.renum VALUES (5, 'five'), (0, 'zero'), (7, 'seven');
ALTER TABLE c_mtr.renum MODIFY a INT NOT NULL AUTO_INCREMENT PRIMARY KEY;
CREATE TABLE c_mtr.renum2 (a INT NOT NULL, b VARCHAR(10)) ENGINE=MyISAM;
INSERT INTO c_mtr.renum2 VALUES (0, 'a'), (0, 'b'), (3, 'c');
ALTER TABLE c_mtr.renum2 ADD PRIMARY KEY (a, b), MODIFY a INT NOT NULL AUTO_INCREMENT, ADD KEY (a);
SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';
CREATE TABLE c_mtr.keep0 (a INT NOT NULL, b VARCHAR(10));
INSERT INTO c_mtr.keep0 VALUES (0, 'zero'), (2, 'two');
ALTER TABLE c_mtr.keep0 MODIFY a INT NOT NULL AUTO_INCREMENT PRIMARY KEY;
SET SESSION sql_mode = DEFAULT;
-- @snapshot
INSERT INTO c_mtr.price VALUES (5, 0, 1, 1);
SET SESSION check_constraint_checks = 0;
UPDATE c_mtr.price SET v = 0, lo = 7 WHERE id = 5;
INSERT INTO c_mtr.price VALUES (6, 3, 2, -5);
ALTER TABLE c_mtr.price ADD CONSTRAINT pos CHECK (v > 10);
SET SESSION check_constraint_checks = DEFAULT;
DELETE FROM c_mtr.price WHERE id = 2;
CREATE TABLE c_mtr.renum3 (a INT NOT NULL, b VARCHAR(10)) ENGINE=InnoDB;
INSERT INTO c_mtr.renum3 VALUES (0, 'x'), (4, 'y');
ALTER TABLE c_mtr.renum3 ADD PRIMARY KEY (a), MODIFY a INT NOT NULL AUTO_INCREMENT;
INSERT INTO c_mtr.renum3 (b) VALUES ('z');
-- MariaDB's SET STATEMENT var = value FOR <DDL> stopped the task with
-- ErrUnsupportedDDL. The server reads the statement in the session's
-- sql_mode, runs it in the one SET STATEMENT gives, and the query event
-- records that one.
SET STATEMENT sql_mode = 'NO_AUTO_VALUE_ON_ZERO', max_statement_time = 60 FOR CREATE TABLE c_mtr.st (id INT PRIMARY KEY, v VARCHAR(5) DEFAULT 'd');
CREATE TABLE c_mtr.st0 (a INT NOT NULL, b VARCHAR(10));
INSERT INTO c_mtr.st0 VALUES (0, 'zero'), (2, 'two');
SET STATEMENT sql_mode = 'NO_AUTO_VALUE_ON_ZERO' FOR ALTER TABLE c_mtr.st0 MODIFY a INT NOT NULL AUTO_INCREMENT PRIMARY KEY;
SET STATEMENT foreign_key_checks = 0 FOR ALTER TABLE c_mtr.st ADD COLUMN w INT DEFAULT 3, MODIFY v VARCHAR(8) DEFAULT 'dd';
INSERT INTO c_mtr.st (id) VALUES (1);
INSERT INTO c_mtr.st VALUES (2, 'x', 4);
