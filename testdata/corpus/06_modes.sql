-- Statements written under sql_modes other than the default: ANSI_QUOTES
-- names, PIPES_AS_CONCAT, NO_BACKSLASH_ESCAPES, ORACLE mode types, zero
-- dates allowed, and a session time zone far from UTC for TIMESTAMPs.
CREATE DATABASE c_modes;
SET SESSION sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT,ONLY_FULL_GROUP_BY';
-- DEFAULT ('a' || 'b') and other operator expressions in DEFAULT are
-- beyond the tracker's parser: TestSyncerUnsupportedDefaultExpression
-- asserts the stop; here a function call.
CREATE TABLE c_modes."quoted table" ("id" INT PRIMARY KEY, "select" VARCHAR(20) DEFAULT (CONCAT('a', 'b')), "from" INT);
INSERT INTO c_modes."quoted table" VALUES (1, 'x' || 'y', 1), (2, DEFAULT, NULL);
ALTER TABLE c_modes."quoted table" ADD COLUMN "order" VARCHAR(10) DEFAULT 'q"uote';
INSERT INTO c_modes."quoted table" ("id", "select") VALUES (3, 'z');
SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';
CREATE TABLE c_modes.esc (id INT PRIMARY KEY, v VARCHAR(40) DEFAULT 'back\slash');
INSERT INTO c_modes.esc VALUES (1, 'a\nb'), (2, DEFAULT);
SET SESSION sql_mode = 'ORACLE';
CREATE TABLE c_modes.ora (id NUMBER(10) PRIMARY KEY, name VARCHAR2(30), d DATE, r RAW(8), c CLOB);
INSERT INTO c_modes.ora VALUES (1, 'one', '2020-01-02 03:04:05', 'AB', 'clob');
ALTER TABLE c_modes.ora ADD (extra VARCHAR2(5));
INSERT INTO c_modes.ora (id, name, extra) VALUES (2, 'two', 'e');
SET SESSION sql_mode = 'ALLOW_INVALID_DATES';
CREATE TABLE c_modes.dates (id INT PRIMARY KEY, d DATE, dt DATETIME);
INSERT INTO c_modes.dates VALUES (1, '2004-02-31', '2004-04-31 01:00:00'), (2, '0000-00-00', '0000-00-00 00:00:00');
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION';
SET SESSION time_zone = '+12:45';
CREATE TABLE c_modes.tz (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, dt DATETIME(6));
INSERT INTO c_modes.tz VALUES (1, '2020-03-29 02:30:00.5', '2020-01-01 00:00:00', '2020-03-29 02:30:00.5'), (2, '1970-01-01 12:45:01', '2038-01-19 15:59:07', NULL);
SET SESSION time_zone = 'SYSTEM';
UPDATE c_modes.tz SET ts = '2001-01-01 00:00:00.000001', ts0 = '2001-01-01 00:00:01' WHERE id = 2;
SET SESSION sql_mode = DEFAULT;
SET SESSION time_zone = DEFAULT;
-- @snapshot
SET SESSION sql_mode = 'ANSI';
UPDATE c_modes."quoted table" SET "select" = "select" || '!' WHERE "id" = 1;
DELETE FROM c_modes."quoted table" WHERE "from" IS NULL;
ALTER TABLE c_modes."quoted table" CHANGE "from" "to" BIGINT;
INSERT INTO c_modes."quoted table" VALUES (4, 'w', 4, 'o');
SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES';
UPDATE c_modes.esc SET v = CONCAT(v, '\t') WHERE id = 1;
ALTER TABLE c_modes.esc ADD COLUMN w VARCHAR(10) DEFAULT '\';
INSERT INTO c_modes.esc (id) VALUES (3);
SET SESSION sql_mode = 'ORACLE';
ALTER TABLE c_modes.ora MODIFY name VARCHAR2(60);
INSERT INTO c_modes.ora (id, name, r) VALUES (3, 'three', UNHEX('00FF'));
SET SESSION sql_mode = 'ALLOW_INVALID_DATES';
UPDATE c_modes.dates SET d = '2005-06-31' WHERE id = 1;
SET SESSION sql_mode = '';
INSERT INTO c_modes.dates VALUES (3, '2010-00-00', '2010-01-00 00:00:00');
SET SESSION time_zone = '-11:00';
INSERT INTO c_modes.tz VALUES (3, '1999-12-31 13:00:00.999999', '1999-12-31 13:00:00', '1999-12-31 13:00:00.999999');
UPDATE c_modes.tz SET ts = ts + INTERVAL 1 SECOND WHERE id = 1;
SET SESSION time_zone = DEFAULT;
SET SESSION sql_mode = DEFAULT;
