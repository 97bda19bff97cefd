package schema

import (
	"context"
	"errors"
	"testing"

	"github.com/dmworker/dmworker/internal/testserver"
)

// unsupportedForms are statements MariaDB 10.11 runs that the tracker
// refuses with ErrUnsupportedDDL: the parser cannot read them, or they change
// tables in ways the tracker cannot follow. Each runs after the ones before
// it, with default schema unsup, on a table u (id int primary key, a int).
var unsupportedForms = []string{
	// Hidden row_start/row_end columns that row images carry.
	"CREATE TABLE sv (a int) WITH SYSTEM VERSIONING",
	// Partition changes (see checkAlterSpec).
	"ALTER TABLE u PARTITION BY HASH(id) PARTITIONS 2",
	"ALTER TABLE u REMOVE PARTITIONING",
	// Statement-based CREATE ... SELECT and DML.
	"CREATE TABLE cs AS SELECT 1 AS x",
	"INSERT INTO u VALUES (1, 1)",
	// Syntax the parser does not know.
	"ALTER TABLE u ADD COLUMN g geometry REF_SYSTEM_ID=4326",
	"RENAME TABLE IF EXISTS u TO u2",
	"CREATE OR REPLACE INDEX ia ON u2 (a)",
	"ALTER TABLE u2 ALTER INDEX ia IGNORED",
	"CREATE TABLE cz (a varchar(10) COMPRESSED=zlib)",
	"CREATE TABLE pd (a int, s date, e date, PERIOD FOR p (s, e))",
	"ALTER TABLE u2 CONVERT TO CHARACTER SET binary",
}

// ignoredForms are statements MariaDB 10.11 runs that the tracker reports
// as Ignored although the parser cannot read them all.
var ignoredForms = []string{
	"CREATE TRIGGER tr BEFORE INSERT ON u2 FOR EACH ROW SET NEW.a = 1",
	"CREATE DEFINER=`root`@`localhost` TRIGGER tr2 AFTER INSERT ON u2 FOR EACH ROW SET @x = 1",
	"DROP TRIGGER tr",
	"DROP TRIGGER IF EXISTS tr2",
	"CREATE DEFINER=`root`@`localhost` PROCEDURE p() BEGIN SELECT 1; END",
	"ALTER PROCEDURE p COMMENT 'x'",
	"DROP PROCEDURE IF EXISTS p",
	"CREATE FUNCTION f() RETURNS INT DETERMINISTIC RETURN 1",
	"CREATE OR REPLACE FUNCTION f() RETURNS INT DETERMINISTIC RETURN 2",
	"DROP FUNCTION f",
	"CREATE EVENT ev ON SCHEDULE EVERY 1 DAY DO SELECT 1",
	"ALTER EVENT ev DISABLE",
	"DROP EVENT ev",
	"CREATE OR REPLACE DEFINER=`root`@`localhost` SQL SECURITY INVOKER VIEW v AS SELECT 1 AS one",
	"ALTER VIEW v AS SELECT 2 AS two",
	"DROP VIEW IF EXISTS v",
	"CREATE OR REPLACE SEQUENCE sq START WITH 10",
	"ALTER SEQUENCE sq RESTART 5",
	"DROP SEQUENCE sq",
	"CREATE ROLE r1",
	"GRANT r1 TO 'root'@'localhost'",
	"REVOKE r1 FROM 'root'@'localhost'",
	"DROP ROLE r1",
	"CREATE USER 'u3'@'%' IDENTIFIED BY 'pw'",
	"RENAME USER 'u3'@'%' TO 'u4'@'%'",
	"ALTER USER 'u4'@'%' PASSWORD EXPIRE",
	"SET PASSWORD FOR 'u4'@'%' = PASSWORD('x')",
	"DROP USER IF EXISTS 'u4'@'%'",
	"FLUSH PRIVILEGES",
	"FLUSH TABLES u2",
	"ANALYZE TABLE u2",
	"OPTIMIZE TABLE u2",
	"REPAIR TABLE u2",
	"CHECK TABLE u2",
	"CHECKSUM TABLE u2",
	"XA START 'x'",
	"XA END 'x'",
	"XA PREPARE 'x'",
	"XA COMMIT 'x'",
	"SET STATEMENT max_statement_time=60 FOR FLUSH TABLES",
	"/*!40101 SET NAMES utf8mb4 */",
	"# Dummy event replacing event type 160 that slave cannot handle.",
	"",
}

func TestMariaDBForms(t *testing.T) {
	check := func(t *testing.T, exec func(string) error) {
		tr := New()
		if _, err := tr.Apply("unsup", "CREATE TABLE u (id int primary key, a int)"); err != nil {
			t.Fatal(err)
		}
		if exec != nil {
			if err := exec("CREATE TABLE u (id int primary key, a int)"); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range unsupportedForms {
			if exec != nil {
				if err := exec(q); err != nil {
					t.Fatalf("MariaDB rejects %q: %v", q, err)
				}
			}
			if _, err := tr.Apply("unsup", q); !errors.Is(err, ErrUnsupportedDDL) {
				t.Errorf("Apply(%q) = %v, want ErrUnsupportedDDL", q, err)
			}
			if _, err := Split("unsup", q); !errors.Is(err, ErrUnsupportedDDL) {
				t.Errorf("Split(%q) = %v, want ErrUnsupportedDDL", q, err)
			}
		}
		for _, q := range ignoredForms {
			if exec != nil && q != "" && q[0] != '#' {
				if err := exec(q); err != nil {
					t.Fatalf("MariaDB rejects %q: %v", q, err)
				}
			}
			r, err := tr.Apply("unsup", q)
			if err != nil || !r.Ignored {
				t.Errorf("Apply(%q) = %+v, %v; want ignored", q, r, err)
			}
		}
	}
	t.Run("tracker", func(t *testing.T) { check(t, nil) })
	t.Run("server", func(t *testing.T) {
		m := testserver.StartMariaDB(t, testserver.MariaDBOptions{ServerID: 204})
		m.Exec(t, "CREATE DATABASE unsup")
		conn := useConn(t, m.DB(t), "unsup")
		check(t, func(q string) error {
			_, err := conn.ExecContext(context.Background(), q)
			return err
		})
	})
}
