-- Foreign keys as applications declare them: cascaded deletes and updates
-- and SET NULL (cascaded changes are not in the binlog; the downstream's
-- own constraints repeat them), parents and children written in one
-- transaction, a self-referencing tree.
CREATE DATABASE c_fk;
USE c_fk;
CREATE TABLE customer (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(191) NOT NULL, UNIQUE KEY (email)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2) NOT NULL DEFAULT 0,
  CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customer (id) ON DELETE CASCADE ON UPDATE CASCADE) ENGINE=InnoDB;
CREATE TABLE order_line (order_id INT NOT NULL, line SMALLINT NOT NULL, sku VARCHAR(20), qty INT,
  PRIMARY KEY (order_id, line), CONSTRAINT fk_line_order FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE) ENGINE=InnoDB;
CREATE TABLE coupon (id INT PRIMARY KEY, order_id INT NULL, code VARCHAR(10), KEY (order_id),
  FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE SET NULL) ENGINE=InnoDB;
CREATE TABLE category (id INT PRIMARY KEY, parent_id INT NULL, name VARCHAR(40),
  CONSTRAINT fk_cat_parent FOREIGN KEY (parent_id) REFERENCES category (id) ON DELETE CASCADE) ENGINE=InnoDB;
INSERT INTO customer (email) VALUES ('a@example.com'), ('b@example.com'), ('c@example.com');
INSERT INTO orders (customer_id, total) VALUES (1, 10.50), (1, 20), (2, 5.25), (3, 0);
INSERT INTO order_line VALUES (1, 1, 'S1', 1), (1, 2, 'S2', 2), (2, 1, 'S1', 5), (3, 1, 'S3', 1), (4, 1, 'S4', 4);
INSERT INTO coupon VALUES (1, 1, 'TEN'), (2, 3, 'FIVE'), (3, NULL, 'FREE');
INSERT INTO category VALUES (1, NULL, 'root'), (2, 1, 'a'), (3, 2, 'a.a'), (4, 1, 'b'), (5, 4, 'b.a');
-- @snapshot
BEGIN;
INSERT INTO customer (email) VALUES ('d@example.com');
INSERT INTO orders (customer_id, total) VALUES (LAST_INSERT_ID(), 99.99);
INSERT INTO order_line VALUES (LAST_INSERT_ID(), 1, 'S9', 9), (LAST_INSERT_ID(), 2, 'S8', 8);
COMMIT;
-- Cascades: a customer takes its orders, their lines; a coupon loses its order.
DELETE FROM customer WHERE email = 'a@example.com';
UPDATE customer SET id = 20 WHERE id = 2;
DELETE FROM orders WHERE customer_id = 20;
DELETE FROM category WHERE id = 2;
UPDATE order_line SET qty = qty + 1 WHERE order_id = 4;
-- A multi-table delete of parent and child in one statement.
DELETE o, l FROM orders o JOIN order_line l ON l.order_id = o.id WHERE o.total = 0;
-- Constraints off for a bulk load out of order, as dump files do.
SET SESSION foreign_key_checks = 0;
INSERT INTO order_line VALUES (100, 1, 'LATE', 1);
INSERT INTO orders VALUES (100, 3, 1.00);
SET SESSION foreign_key_checks = 1;
DELETE FROM customer WHERE id = 3;
