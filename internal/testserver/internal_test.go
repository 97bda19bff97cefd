package testserver

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartRetriesTakenPort checks that a port taken between picking and
// binding costs a retry, not a failed start, and that the retry starts from a
// pristine datadir.
func TestStartRetriesTakenPort(t *testing.T) {
	t.Parallel()
	bins, err := findBinaries()
	if errors.Is(err, ErrNoBinaries) && !Required() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ensureTemplate(t.Context(), bins)
	if err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	opts, _ := MariaDBOptions{}.withDefaults()
	m := &MariaDB{
		Host: "127.0.0.1", User: DefaultUser, Password: DefaultPassword,
		DataDir: filepath.Join(dir, "data"), opts: opts, bin: bins.mariadbd, dir: dir,
		socket: filepath.Join(dir, "s"), cleanSocket: func() {},
		errLog: filepath.Join(dir, "error.log"), pidFile: filepath.Join(dir, "pid"),
	}
	defer m.Close()
	picks := 0
	err = m.firstStart(t.Context(), tmpl, func() (int, error) {
		picks++
		if picks == 1 {
			return takenPort, nil
		}
		return freePort()
	})
	if err != nil {
		t.Fatal(err)
	}
	if picks != 2 || m.Port == takenPort {
		t.Errorf("picks = %d, port %d (taken %d)", picks, m.Port, takenPort)
	}
	files, err := m.BinlogFiles(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || filepath.Base(files[0]) != "mysql-bin.000001" {
		t.Errorf("binlog files after a retried start: %v", files)
	}
	log, err := os.ReadFile(m.errLog)
	if err != nil {
		t.Fatal(err)
	}
	if !addrInUse(string(log)) {
		t.Errorf("error log does not show the failed bind:\n%s", log)
	}
}

// TestStartFailureShowsErrorLog checks that a server that cannot start
// reports why, from its error log.
func TestStartFailureShowsErrorLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := Start(t.Context(), dir, MariaDBOptions{ExtraArgs: []string{"--no-such-option-dmworker"}})
	if errors.Is(err, ErrNoBinaries) && !Required() {
		t.Skip(err)
	}
	if err == nil {
		t.Fatal("start with an unknown option succeeded")
	}
	t.Logf("start error: %v", err)
	if !strings.Contains(err.Error(), "no-such-option-dmworker") || !strings.Contains(err.Error(), "error.log") {
		t.Errorf("error does not carry the error log: %v", err)
	}
	if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
		t.Errorf("failed start left %s behind", dir)
	}
}
