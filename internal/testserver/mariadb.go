package testserver

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/go-sql-driver/mysql"
)

const (
	// DefaultUser is the TCP account every instance has, with ALL PRIVILEGES
	// ON *.* WITH GRANT OPTION (replication included), from 127.0.0.1 and %.
	DefaultUser = "dmworker"
	// DefaultPassword is DefaultUser's password.
	DefaultPassword = "dmworker-secret-pw"

	// startAttempts bounds retries when the chosen port is taken between
	// picking it and the server binding it.
	startAttempts = 5
	// maxSocketPath keeps the unix socket path under the 107-byte limit of
	// sockaddr_un, with room to spare.
	maxSocketPath = 100
)

// innodbArgs size InnoDB for many small instances on a small machine; they
// are shared by mariadb-install-db and the servers so the template's log file
// needs no resizing.
var innodbArgs = []string{
	"--innodb-buffer-pool-size=128M",
	"--innodb-log-file-size=32M",
	// Durability against OS crashes is not needed for throwaway servers;
	// a killed process still loses nothing committed.
	"--innodb-flush-log-at-trx-commit=2",
	"--innodb-doublewrite=0",
	// The default writes 12 MiB of temporary tablespace at every start.
	"--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
}

// MariaDBOptions configure one MariaDB instance. The zero value is valid.
type MariaDBOptions struct {
	// ServerID is server_id; default 1.
	ServerID uint32
	// RowMetadata is binlog_row_metadata: "NO_LOG", "MINIMAL" or "FULL";
	// default "FULL".
	RowMetadata string
	// MaxBinlogSize is max_binlog_size in bytes; 0 keeps the server default
	// (1 GiB). MariaDB accepts 4096 to 1 GiB; other values are rejected.
	MaxBinlogSize int64
	// GTIDDomainID is gtid_domain_id; default 0.
	GTIDDomainID uint32
	// ExtraArgs are appended to the mariadbd command line, after (and so
	// overriding) the flags this package sets.
	ExtraArgs []string
}

func (o MariaDBOptions) withDefaults() (MariaDBOptions, error) {
	if o.ServerID == 0 {
		o.ServerID = 1
	}
	o.RowMetadata = strings.ToUpper(strings.TrimSpace(o.RowMetadata))
	switch o.RowMetadata {
	case "":
		o.RowMetadata = "FULL"
	case "NO_LOG", "MINIMAL", "FULL":
	default:
		return o, fmt.Errorf("testserver: RowMetadata %q: want NO_LOG, MINIMAL or FULL", o.RowMetadata)
	}
	if o.MaxBinlogSize != 0 && (o.MaxBinlogSize < 4096 || o.MaxBinlogSize > 1<<30) {
		return o, fmt.Errorf("testserver: MaxBinlogSize %d: MariaDB accepts 4096 to 1073741824 bytes", o.MaxBinlogSize)
	}
	o.ExtraArgs = append([]string(nil), o.ExtraArgs...)
	return o, nil
}

// MariaDB is a running throwaway MariaDB server with the binlog on (ROW
// format, full row image, CRC32 checksums), listening on 127.0.0.1. Its
// methods are safe for concurrent use.
type MariaDB struct {
	Host     string // always "127.0.0.1"
	Port     int
	User     string // DefaultUser
	Password string // DefaultPassword
	DataDir  string

	opts        MariaDBOptions
	bin         string
	dir         string
	socket      string
	cleanSocket func()
	errLog      string
	pidFile     string

	mu     sync.Mutex
	proc   *process // nil before the first start
	closed bool
	db     *sql.DB // opened on first Exec, closed by Close
}

// errAddrInUse marks a start that failed only because the port was taken.
var errAddrInUse = errors.New("port already in use")

// Start creates a MariaDB instance in dir and starts it: it copies the cached
// template datadir (building the template first if this mariadbd version has
// none yet), starts mariadbd on a free loopback port and waits until it
// accepts connections. dir must be empty or not exist; it then belongs to the
// instance and Close removes it. An empty dir means a new temporary
// directory. ctx bounds the start only, not the server's life.
//
// The error wraps ErrNoBinaries when MariaDB is not installed, and carries the
// tail of the server's error log when the server failed to start.
func Start(ctx context.Context, dir string, opts MariaDBOptions) (*MariaDB, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	tmpl, err := ensureTemplate(ctx, bins)
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	m := &MariaDB{
		Host:     "127.0.0.1",
		User:     DefaultUser,
		Password: DefaultPassword,
		DataDir:  filepath.Join(dir, "data"),
		opts:     opts,
		bin:      bins.mariadbd,
		dir:      dir,
		errLog:   filepath.Join(dir, "error.log"),
		pidFile:  filepath.Join(dir, "mariadbd.pid"),
	}
	if m.socket, m.cleanSocket, err = socketPath(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := m.firstStart(ctx, tmpl, freePort); err != nil {
		m.cleanSocket()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return m, nil
}

// firstStart copies the template into the datadir and starts the server on a
// port from pickPort, retrying with another port when the chosen one turns out
// to be taken.
func (m *MariaDB) firstStart(ctx context.Context, tmpl string, pickPort func() (int, error)) error {
	for attempt := 1; ; attempt++ {
		var err error
		if m.Port, err = pickPort(); err != nil {
			return err
		}
		// A failed start may already have written binlog files; start each
		// attempt from a pristine copy so the first binlog is always .000001.
		if err := os.RemoveAll(m.DataDir); err != nil {
			return err
		}
		if err := copyTree(tmpl, m.DataDir); err != nil {
			return err
		}
		err = m.startProcess(ctx)
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			return err
		}
	}
}

// prepareDir makes dir absolute and checks it is free for a new instance.
func prepareDir(dir string) (string, error) {
	if dir == "" {
		return os.MkdirTemp("", "dmworker-mariadb-")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("testserver: directory %s is not empty", dir)
	}
	return dir, nil
}

// socketPath returns where the unix socket of an instance in dir goes: in dir
// when the path is short enough, otherwise in a new short temporary directory
// that the returned cleanup removes.
func socketPath(dir string) (string, func(), error) {
	p := filepath.Join(dir, "mysql.sock")
	if len(p) <= maxSocketPath {
		return p, func() {}, nil
	}
	for _, base := range []string{os.TempDir(), "/tmp"} {
		if len(filepath.Join(base, "dmwXXXXXXXXXXXX", "mysql.sock")) > maxSocketPath {
			continue
		}
		d, err := os.MkdirTemp(base, "dmw")
		if err != nil {
			return "", nil, err
		}
		return filepath.Join(d, "mysql.sock"), func() { _ = os.RemoveAll(d) }, nil
	}
	return "", nil, fmt.Errorf("testserver: no directory short enough for a unix socket (dir %s)", dir)
}

func userArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// commonArgs are the mariadbd flags shared by the template bootstrap and the
// instances.
func commonArgs(datadir, socket, pidFile, errLog, tmpdir string) []string {
	args := []string{"--no-defaults"} // must come first
	args = append(args, userArgs()...)
	args = append(args,
		"--datadir="+datadir,
		"--socket="+socket,
		"--pid-file="+pidFile,
		"--log-error="+errLog,
		"--tmpdir="+tmpdir,
		"--skip-name-resolve",
		"--performance-schema=OFF",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--max-allowed-packet=64M",
	)
	return append(args, innodbArgs...)
}

func (m *MariaDB) serverArgs() []string {
	args := commonArgs(m.DataDir, m.socket, m.pidFile, m.errLog, m.dir)
	args = append(args,
		"--port="+strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1",
		"--log-bin="+filepath.Join(m.DataDir, "mysql-bin"),
		"--binlog-format=ROW",
		"--binlog-row-image=FULL",
		"--binlog-row-metadata="+m.opts.RowMetadata,
		"--server-id="+strconv.FormatUint(uint64(m.opts.ServerID), 10),
		"--gtid-domain-id="+strconv.FormatUint(uint64(m.opts.GTIDDomainID), 10),
		"--log-slave-updates",
		"--sync-binlog=0",
	)
	if m.opts.MaxBinlogSize > 0 {
		args = append(args, "--max-binlog-size="+strconv.FormatInt(m.opts.MaxBinlogSize, 10))
	}
	return append(args, m.opts.ExtraArgs...)
}

// startProcess starts mariadbd and waits until it is ready. The caller holds
// m.mu or owns m exclusively.
func (m *MariaDB) startProcess(ctx context.Context) error {
	offset := fileSize(m.errLog)
	p, err := startProcess(m.bin, m.serverArgs())
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, m.Config("")); err != nil {
		p.kill()
		log := logSince(m.errLog, offset)
		if addrInUse(log) {
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		return fmt.Errorf("testserver: start mariadb on %s (datadir %s): %w\n--- tail of %s ---\n%s",
			m.Addr(), m.DataDir, err, m.errLog, log)
	}
	m.proc = p
	return nil
}

// Addr returns "127.0.0.1:PORT".
func (m *MariaDB) Addr() string {
	return net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
}

// Config returns a go-sql-driver configuration for User over TCP to database
// db (empty for none), with interpolateParams and multiStatements on.
func (m *MariaDB) Config(db string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = m.User
	cfg.Passwd = m.Password
	cfg.Net = "tcp"
	cfg.Addr = m.Addr()
	cfg.DBName = db
	cfg.InterpolateParams = true
	cfg.MultiStatements = true
	return cfg
}

// quietConfig is Config("") without the driver's log lines about idle
// connections that a Stop or Kill broke; the helper pools hit those by design.
func (m *MariaDB) quietConfig() *mysql.Config {
	cfg := m.Config("")
	cfg.Logger = &mysql.NopLogger{}
	return cfg
}

// DSN returns the go-sql-driver DSN of Config(db), e.g.
// "dmworker:dmworker-secret-pw@tcp(127.0.0.1:PORT)/db?interpolateParams=true&multiStatements=true".
func (m *MariaDB) DSN(db string) string {
	return m.Config(db).FormatDSN()
}

// ErrorLog returns the path of the server's error log.
func (m *MariaDB) ErrorLog() string { return m.errLog }

// Socket returns the path of the server's unix socket, where root can log in
// without a password.
func (m *MariaDB) Socket() string { return m.socket }

// Options returns the options the instance runs with, defaults filled in.
func (m *MariaDB) Options() MariaDBOptions {
	o := m.opts
	o.ExtraArgs = append([]string(nil), o.ExtraArgs...)
	return o
}

// Stop shuts the server down gracefully: SIGTERM, then SIGKILL if it has not
// exited after 30 s. It returns once the process is gone; stopping a stopped
// server does nothing.
func (m *MariaDB) Stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		m.proc.stop(stopTimeout)
	}
	return nil
}

// Kill kills the server with SIGKILL, as a crash would, and returns once the
// process is gone.
func (m *MariaDB) Kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		m.proc.kill()
	}
	return nil
}

// Restart starts the server again, after Stop or Kill, on the same datadir
// and port, and waits until it accepts connections (InnoDB and binlog crash
// recovery included).
func (m *MariaDB) Restart(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("testserver: restart of a closed mariadb")
	}
	if m.proc != nil && !m.proc.exited() {
		return fmt.Errorf("testserver: mariadb on %s is still running", m.Addr())
	}
	return m.startProcess(ctx)
}

// Close stops the server and removes its directory. It is idempotent.
func (m *MariaDB) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.proc != nil {
		m.proc.stop(stopTimeout)
	}
	if m.db != nil {
		_ = m.db.Close()
	}
	m.cleanSocket()
	return os.RemoveAll(m.dir)
}

// BinlogFiles returns the full paths of the server's binlog files, oldest
// first, as listed in its binlog index. It works while the server is stopped.
func (m *MariaDB) BinlogFiles(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(m.DataDir, "mysql-bin.index"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var files []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !filepath.IsAbs(line) {
			line = filepath.Join(m.DataDir, line)
		}
		files = append(files, filepath.Clean(line))
	}
	return files, sc.Err()
}

// sqlDB returns the pool shared by Exec.
func (m *MariaDB) sqlDB() (*sql.DB, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("testserver: mariadb is closed")
	}
	if m.db == nil {
		conn, err := mysql.NewConnector(m.quietConfig())
		if err != nil {
			return nil, err
		}
		m.db = sql.OpenDB(conn)
	}
	return m.db, nil
}
