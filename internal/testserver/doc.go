// Package testserver starts throwaway real servers for tests and demos: a
// MariaDB with the binlog on (ROW format, CRC32 checksums, GTIDs) and an
// embedded etcd server. Nothing here is a mock.
//
// # MariaDB
//
// [Start] works without the testing package (the throwaway command uses it);
// [StartMariaDB] wraps it for tests: it skips when the server binaries are
// missing, or fails instead when [Required] reports true
// (DMWORKER_REQUIRE_SERVERS=1, as set by `make test` and CI), and registers a
// cleanup that stops the server and removes its files.
//
// mariadb-install-db runs once per mariadbd version: the initialised data
// directory, with the TCP user [DefaultUser] already created, is cached as a
// template under [os.TempDir] and copied for every instance. The template is
// built in a temporary directory and renamed into place, under a file lock,
// so concurrent test processes share one build safely.
//
// Each instance lives in its own directory:
//
//	<dir>/data/          datadir; binlogs are data/mysql-bin.NNNNNN, index data/mysql-bin.index
//	<dir>/error.log      the server's error log
//	<dir>/mariadbd.pid   pid file
//	<dir>/mysql.sock     unix socket (elsewhere, under a short path, if <dir> is too long)
//
// The binaries are looked up on PATH and then in /usr/sbin, /usr/bin,
// /usr/local/sbin and /usr/local/bin, or only in DMWORKER_MARIADB_BIN_DIR
// when that is set.
//
// # etcd
//
// [StartEtcd] runs a single-member etcd server inside the test process on
// free loopback ports, with a connected client; [Etcd.Stop] and
// [Etcd.Restart] simulate losing etcd and getting it back.
package testserver
