-- Application schemas in the shapes real projects ship: a blog's posts and
-- meta (BIGINT UNSIGNED keys, LONGTEXT, zero-date defaults, utf8mb4
-- prefix indexes of 191 characters), a film rental store (SET, YEAR,
-- ENUM, a trigger-maintained copy, ON UPDATE CASCADE, a generated
-- column), and a framework's session table keyed by a binary id.
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';
CREATE DATABASE c_apps DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci;
USE c_apps;
CREATE TABLE wp_posts (
  ID bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  post_author bigint(20) unsigned NOT NULL DEFAULT '0',
  post_date datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_content longtext NOT NULL,
  post_title text NOT NULL,
  post_status varchar(20) NOT NULL DEFAULT 'publish',
  post_name varchar(200) NOT NULL DEFAULT '',
  post_modified datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  post_parent bigint(20) unsigned NOT NULL DEFAULT '0',
  menu_order int(11) NOT NULL DEFAULT '0',
  PRIMARY KEY (ID),
  KEY post_name (post_name(191)),
  KEY type_status_date (post_status, post_date, ID),
  KEY post_parent (post_parent)
) ENGINE=InnoDB;
CREATE TABLE wp_postmeta (
  meta_id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  post_id bigint(20) unsigned NOT NULL DEFAULT '0',
  meta_key varchar(255) DEFAULT NULL,
  meta_value longtext,
  PRIMARY KEY (meta_id),
  KEY post_id (post_id),
  KEY meta_key (meta_key(191))
) ENGINE=InnoDB;
CREATE TABLE wp_options (
  option_id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  option_name varchar(191) NOT NULL DEFAULT '',
  option_value longtext NOT NULL,
  autoload varchar(20) NOT NULL DEFAULT 'yes',
  PRIMARY KEY (option_id),
  UNIQUE KEY option_name (option_name)
) ENGINE=InnoDB;
INSERT INTO wp_posts (post_author, post_content, post_title, post_name) VALUES (1, 'Welcome. This is your first post.', 'Hello world!', 'hello-world');
INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES (1, '_edit_lock', '1600000000:1'), (1, '_thumbnail', 'a:1:{s:4:"file";s:9:"img/1.jpg";}');
INSERT INTO wp_options (option_name, option_value) VALUES ('siteurl', 'http://example.com'), ('active_plugins', 'a:0:{}'), ('cron', REPEAT('x', 5000));
CREATE TABLE language (language_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT, name CHAR(20) NOT NULL, last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, PRIMARY KEY (language_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE film (
  film_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT,
  title VARCHAR(128) NOT NULL,
  description TEXT DEFAULT NULL,
  release_year YEAR DEFAULT NULL,
  language_id TINYINT UNSIGNED NOT NULL,
  rental_rate DECIMAL(4,2) NOT NULL DEFAULT 4.99,
  length SMALLINT UNSIGNED DEFAULT NULL,
  rating ENUM('G','PG','PG-13','R','NC-17') DEFAULT 'G',
  special_features SET('Trailers','Commentaries','Deleted Scenes','Behind the Scenes') DEFAULT NULL,
  minutes_total INT AS (length * 60) VIRTUAL,
  last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (film_id),
  KEY idx_title (title),
  CONSTRAINT fk_film_language FOREIGN KEY (language_id) REFERENCES language (language_id) ON DELETE RESTRICT ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE film_text (film_id SMALLINT NOT NULL, title VARCHAR(255) NOT NULL, description TEXT, PRIMARY KEY (film_id), FULLTEXT KEY idx_title_description (title, description)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
DELIMITER ;;
CREATE TRIGGER ins_film AFTER INSERT ON film FOR EACH ROW BEGIN
  INSERT INTO film_text (film_id, title, description) VALUES (new.film_id, new.title, new.description);
END;;
CREATE TRIGGER upd_film AFTER UPDATE ON film FOR EACH ROW BEGIN
  IF (old.title != new.title) OR (old.description != new.description) OR (old.film_id != new.film_id) THEN
    UPDATE film_text SET title = new.title, description = new.description, film_id = new.film_id WHERE film_id = old.film_id;
  END IF;
END;;
CREATE TRIGGER del_film AFTER DELETE ON film FOR EACH ROW BEGIN
  DELETE FROM film_text WHERE film_id = old.film_id;
END;;
DELIMITER ;
INSERT INTO language (name, last_update) VALUES ('English', '2006-02-15 05:02:19'), ('Italian', '2006-02-15 05:02:19'), ('Japanese', '2006-02-15 05:02:19');
INSERT INTO film (title, description, release_year, language_id, length, rating, special_features, last_update) VALUES
  ('ACADEMY DINOSAUR', 'A Epic Drama of a Feminist And a Mad Scientist', 2006, 1, 86, 'PG', 'Deleted Scenes,Behind the Scenes', '2006-02-15 05:03:42'),
  ('ACE GOLDFINGER', 'A Astounding Epistle of a Database Administrator', 2006, 1, 48, 'G', 'Trailers,Deleted Scenes', '2006-02-15 05:03:42'),
  ('ADAPTATION HOLES', NULL, NULL, 2, NULL, NULL, NULL, '2006-02-15 05:03:42');
CREATE TABLE django_session (session_key VARCHAR(40) NOT NULL PRIMARY KEY, session_data LONGTEXT NOT NULL, expire_date DATETIME(6) NOT NULL, KEY (expire_date));
CREATE TABLE rails_blobs (id BINARY(16) NOT NULL PRIMARY KEY, `key` VARCHAR(255) NOT NULL, metadata TEXT, byte_size BIGINT NOT NULL, checksum VARCHAR(255), created_at DATETIME(6) NOT NULL, UNIQUE KEY index_blobs_on_key (`key`));
INSERT INTO rails_blobs VALUES (UNHEX(REPLACE('6ccd780c-baba-1026-9564-5b8c656024db', '-', '')), 'k1', '{"identified":true}', 1024, 'abc==', '2023-01-01 00:00:00.123456');
-- @snapshot
INSERT INTO wp_posts (post_author, post_date, post_content, post_title, post_status, post_name, post_modified) VALUES (1, '2024-01-01 10:00:00', REPEAT('Lorem ipsum 🥝 ', 500), 'Second', 'draft', 'second', '2024-01-01 10:00:00');
UPDATE wp_posts SET post_status = 'publish', post_modified = '2024-01-02 00:00:00' WHERE post_name = 'second';
INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES (2, '_edit_last', '1');
UPDATE wp_postmeta SET meta_value = '1700000000:1' WHERE post_id = 1 AND meta_key = '_edit_lock';
DELETE FROM wp_postmeta WHERE meta_key = '_thumbnail';
INSERT INTO wp_options (option_name, option_value, autoload) VALUES ('cron', 'a:1:{}', 'yes') ON DUPLICATE KEY UPDATE option_name = VALUES(option_name), option_value = VALUES(option_value), autoload = VALUES(autoload);
DELETE FROM wp_options WHERE option_name LIKE '\_transient%' OR option_name = 'active_plugins';
ALTER TABLE wp_posts ADD COLUMN comment_count bigint(20) NOT NULL DEFAULT '0';
UPDATE wp_posts SET comment_count = comment_count + 1 WHERE ID = 1;
INSERT INTO film (title, description, release_year, language_id, length, rating, special_features) VALUES ('AFRICAN EGG', 'A Fast-Paced Documentary', 2006, 3, 130, 'G', 'Deleted Scenes');
UPDATE film SET title = 'ACE GOLDFINGER II', rental_rate = 0.99, last_update = '2007-01-01 00:00:00' WHERE film_id = 2;
UPDATE language SET language_id = 10, last_update = '2007-01-01 00:00:00' WHERE name = 'Italian';
DELETE FROM film WHERE film_id = 1;
INSERT INTO django_session VALUES ('abc123', 'e30:1pXyz', '2030-01-01 00:00:00.000000'), ('def456', '', '2000-01-01 00:00:00.5');
DELETE FROM django_session WHERE expire_date < '2001-01-01';
UPDATE django_session SET session_data = CONCAT(session_data, ':more'), expire_date = expire_date + INTERVAL 1 DAY WHERE session_key = 'abc123';
INSERT INTO rails_blobs VALUES (UNHEX('00000000000000000000000000000000'), 'k0', NULL, 0, NULL, '2023-01-01 00:00:00'), (UNHEX('FFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00'), 'k2', '', 1, '', '2023-06-01 00:00:00.000001');
UPDATE rails_blobs SET byte_size = byte_size * 2 WHERE `key` = 'k1';
DELETE FROM rails_blobs WHERE id = UNHEX('00000000000000000000000000000000');
