package testserver

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

const (
	// readyTimeout bounds how long a starting server may take to accept
	// connections when the caller's context has no earlier deadline.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long a graceful shutdown may take before SIGKILL.
	stopTimeout = 30 * time.Second
	// pollInterval is the pause between readiness probes.
	pollInterval = 50 * time.Millisecond
	// logTailBytes is how much of the error log goes into error messages.
	logTailBytes = 4096
)

// process is one running mariadbd. done is closed once the process has
// exited and been reaped.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid after done is closed
}

func startProcess(bin string, args []string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	// mariadbd logs to --log-error; stdout and stderr carry nothing useful
	// and a nil writer keeps Wait from waiting on pipe copiers.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to shut down with SIGTERM and waits; after timeout it
// sends SIGKILL and waits for the process to go.
func (p *process) stop(timeout time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.kill()
	}
}

// kill sends SIGKILL and waits for the process to go.
func (p *process) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitReady polls cfg with a ping until the server answers, the process
// exits, or ctx (bounded by readyTimeout) ends.
func waitReady(ctx context.Context, p *process, cfg *mysql.Config) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()

	cfg = cfg.Clone()
	cfg.Timeout = time.Second
	cfg.Logger = &mysql.NopLogger{} // refused connections while starting are expected
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxIdleConns(0)

	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		pingCtx, pingCancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = db.PingContext(pingCtx)
		pingCancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("mariadbd exited before accepting connections (%v)", p.err)
		case <-ctx.Done():
			return fmt.Errorf("mariadbd not ready: %w (last ping error: %v)", ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// fileSize returns the size of path, 0 if it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns what was appended to the log at path after offset, at most
// its last logTailBytes, starting at a line boundary.
func logSince(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no error log: %v)", err)
	}
	defer f.Close()
	size := fileSize(path)
	start := offset
	if size-start > logTailBytes {
		start = size - logTailBytes
	}
	if start < 0 || start > size {
		start = 0
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return fmt.Sprintf("(reading error log: %v)", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(reading error log: %v)", err)
	}
	if start > offset {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimRight(string(b), "\n")
}

// addrInUse reports whether a log excerpt says the server could not bind its
// port because another process holds it.
func addrInUse(log string) bool {
	return strings.Contains(log, "Address already in use") ||
		strings.Contains(log, "Do you already have another server running")
}
