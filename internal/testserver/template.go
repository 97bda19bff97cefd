package testserver

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// templateRevision changes whenever the template's content (users, grants,
// InnoDB file sizes) changes, so old cached templates are not reused.
const templateRevision = "1"

// binaries are the MariaDB programs this package runs.
type binaries struct {
	mariadbd  string
	installDB string
	version   string // first line of `mariadbd --version`
}

// findBinaries looks the binaries up once per process.
var findBinaries = sync.OnceValues(lookupBinaries)

func lookupBinaries() (binaries, error) {
	var b binaries
	var err error
	if b.mariadbd, err = lookPath("mariadbd"); err != nil {
		return b, err
	}
	if b.installDB, err = lookPath("mariadb-install-db"); err != nil {
		return b, err
	}
	out, err := exec.Command(b.mariadbd, "--no-defaults", "--version").Output()
	if err != nil {
		return b, fmt.Errorf("%s --version: %w", b.mariadbd, err)
	}
	b.version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if !strings.Contains(b.version, "MariaDB") {
		return b, fmt.Errorf("%w: %s is not MariaDB (%q)", ErrNoBinaries, b.mariadbd, b.version)
	}
	return b, nil
}

// BinDirEnv names an environment variable that, when set, is the only
// directory searched for mariadbd and mariadb-install-db.
const BinDirEnv = "DMWORKER_MARIADB_BIN_DIR"

// lookPath finds an executable in $DMWORKER_MARIADB_BIN_DIR if that is set;
// otherwise on PATH, then in the usual system directories (sbin is often not
// on a user's PATH).
func lookPath(name string) (string, error) {
	if d := os.Getenv(BinDirEnv); d != "" {
		p, err := exec.LookPath(filepath.Join(d, name))
		if err != nil {
			return "", fmt.Errorf("%w: %s is not in %s=%s", ErrNoBinaries, name, BinDirEnv, d)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/local/mysql/bin"} {
		if p, err := exec.LookPath(filepath.Join(d, name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s is not on PATH nor in /usr/sbin, /usr/bin, /usr/local", ErrNoBinaries, name)
}

var versionRE = regexp.MustCompile(`Ver\s+([0-9][0-9A-Za-z.\-]*)`)

// templateDir is where the template for these binaries is cached.
func templateDir(b binaries) string {
	sum := sha256.Sum256([]byte(b.version + "\x00" + b.mariadbd + "\x00" + templateRevision))
	ver := "unknown"
	if m := versionRE.FindStringSubmatch(b.version); m != nil {
		ver = m[1]
	}
	return filepath.Join(os.TempDir(), "dmworker-mariadb-template-"+ver+"-"+hex.EncodeToString(sum[:4]))
}

const templateMarker = "complete"

// ensureTemplate returns the datadir of an initialised template, building and
// caching it first if needed.
func ensureTemplate(ctx context.Context, b binaries) (string, error) {
	final := templateDir(b)
	data := filepath.Join(final, "data")
	if _, err := os.Stat(filepath.Join(final, templateMarker)); err == nil {
		return data, nil
	}
	// The lock only saves duplicate work; correctness comes from the rename.
	unlock, err := lockFile(ctx, final+".lock")
	if err != nil {
		return "", fmt.Errorf("lock mariadb template: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(final, templateMarker)); err == nil {
		return data, nil
	}
	// A directory without the marker cannot come from our rename; clear it.
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	build, err := os.MkdirTemp(os.TempDir(), "dmworker-mariadb-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(build)
	if err := buildTemplate(ctx, b, build); err != nil {
		return "", fmt.Errorf("build mariadb template in %s: %w", build, err)
	}
	if err := os.Rename(build, final); err != nil {
		// Without the lock (non-Linux) another process may have won.
		if _, statErr := os.Stat(filepath.Join(final, templateMarker)); statErr == nil {
			return data, nil
		}
		return "", err
	}
	return data, nil
}

// buildTemplate runs mariadb-install-db into dir/data, starts the server once
// on a unix socket without networking, creates the TCP user and shuts it down
// cleanly. It leaves only dir/data and the marker file.
func buildTemplate(ctx context.Context, b binaries, dir string) error {
	data := filepath.Join(dir, "data")
	args := []string{
		"--no-defaults",
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--datadir=" + data,
	}
	args = append(args, userArgs()...)
	args = append(args, innodbArgs...)
	cmd := exec.CommandContext(ctx, b.installDB, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", b.installDB, err, tail(string(out), logTailBytes))
	}

	sock, cleanSock, err := socketPath(dir)
	if err != nil {
		return err
	}
	defer cleanSock()
	errLog := filepath.Join(dir, "error.log")
	srvArgs := commonArgs(data, sock, filepath.Join(dir, "mariadbd.pid"), errLog, dir)
	srvArgs = append(srvArgs, "--skip-networking", "--skip-log-bin")
	p, err := startProcess(b.mariadbd, srvArgs)
	if err != nil {
		return err
	}
	defer p.kill()

	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = sock
	if err := waitReady(ctx, p, cfg); err != nil {
		return fmt.Errorf("%w\n%s", err, logSince(errLog, 0))
	}
	if err := initUsers(ctx, cfg); err != nil {
		return fmt.Errorf("create users: %w", err)
	}
	p.stop(stopTimeout)
	if p.err != nil {
		return fmt.Errorf("template shutdown: %v\n%s", p.err, logSince(errLog, 0))
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != "data" {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, templateMarker), []byte(b.version+"\n"), 0o644)
}

// initUsers creates the TCP user and removes root's network accounts, so the
// only password-less account left is root over the unix socket.
func initUsers(ctx context.Context, cfg *mysql.Config) error {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stmts := []string{
		"DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost'",
		"DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost'",
		"FLUSH PRIVILEGES",
	}
	for _, host := range []string{"127.0.0.1", "%"} {
		user := fmt.Sprintf("'%s'@'%s'", DefaultUser, host)
		stmts = append(stmts,
			fmt.Sprintf("CREATE USER %s IDENTIFIED BY '%s'", user, DefaultPassword),
			fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO %s WITH GRANT OPTION", user),
		)
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// copyTree copies the regular files and directories under src to dst,
// keeping their permission bits.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return nil // sockets and the like are not part of a datadir
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tail(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimRight(s, "\n")
}
