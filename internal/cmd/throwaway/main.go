// Command throwaway starts throwaway MariaDB servers for demos and benchmark
// scripts, prints how to reach them, and removes them again on SIGINT or
// SIGTERM.
//
// Usage:
//
//	throwaway [-n 2] [-server-id-base 1] [-max-binlog-size 0] [-row-metadata FULL] [-dir DIR] [-env FILE]
//
// The instances are named upstream, downstream, upstream2, upstream3, ... in
// that order; instance i gets server id base+i. Once all are ready, one line
// per instance goes to stdout:
//
//	upstream dmworker:dmworker-secret-pw@127.0.0.1:41234
//
// With -env FILE, the file is written (atomically, so a script may wait for it
// to appear) with, for each instance, variables quoted for sh (source it with
// `. FILE`), such as
//
//	UPSTREAM_DSN='dmworker:dmworker-secret-pw@tcp(127.0.0.1:41234)/?interpolateParams=true&multiStatements=true'
//	UPSTREAM_HOST=127.0.0.1  UPSTREAM_PORT=41234  UPSTREAM_USER=dmworker  UPSTREAM_PASSWORD=...
//	UPSTREAM_DATADIR=...     UPSTREAM_SOCKET=...   (root over the socket needs no password)
//
// and removed again on exit. The DSN is in go-sql-driver/mysql form.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dmworker/dmworker/internal/testserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "throwaway:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		n            = flag.Int("n", 2, "number of MariaDB instances")
		serverIDBase = flag.Uint("server-id-base", 1, "server_id of the first instance; the others count up")
		maxBinlog    = flag.Int64("max-binlog-size", 0, "max_binlog_size in bytes (0: server default; minimum 4096)")
		rowMetadata  = flag.String("row-metadata", "FULL", "binlog_row_metadata: MINIMAL or FULL")
		dir          = flag.String("dir", "", "parent directory for the instances (default: new temporary directories)")
		envFile      = flag.String("env", "", "write NAME_DSN=... variables to this file")
		timeout      = flag.Duration("timeout", 3*time.Minute, "how long starting may take")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *n < 1 {
		return fmt.Errorf("-n %d: need at least one instance", *n)
	}
	if *serverIDBase == 0 || uint64(*serverIDBase)+uint64(*n)-1 > 1<<32-1 {
		return fmt.Errorf("-server-id-base %d: server ids must be in 1..4294967295", *serverIDBase)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	servers, err := startAll(ctx, *n, *timeout, *dir, func(i int) testserver.MariaDBOptions {
		return testserver.MariaDBOptions{
			ServerID:      uint32(*serverIDBase) + uint32(i),
			RowMetadata:   *rowMetadata,
			MaxBinlogSize: *maxBinlog,
		}
	})
	defer closeAll(servers)
	if ctx.Err() != nil {
		return errors.New("interrupted while starting")
	}
	if err != nil {
		return err
	}

	if *envFile != "" {
		if err := writeEnv(*envFile, servers); err != nil {
			return err
		}
		defer os.Remove(*envFile)
	}
	for i, m := range servers {
		fmt.Printf("%s %s:%s@%s\n", name(i), m.User, m.Password, m.Addr())
	}
	<-ctx.Done()
	return nil
}

// name is the conventional name of the i-th instance.
func name(i int) string {
	switch i {
	case 0:
		return "upstream"
	case 1:
		return "downstream"
	default:
		return fmt.Sprintf("upstream%d", i)
	}
}

// startAll starts n instances in parallel. On error it returns the ones that
// did start, for the caller to close.
func startAll(ctx context.Context, n int, timeout time.Duration, parent string,
	opts func(i int) testserver.MariaDBOptions) ([]*testserver.MariaDB, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	servers := make([]*testserver.MariaDB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		dir := ""
		if parent != "" {
			dir = filepath.Join(parent, name(i))
		}
		wg.Go(func() {
			servers[i], errs[i] = testserver.Start(ctx, dir, opts(i))
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", name(i), errs[i])
			}
		})
	}
	wg.Wait()
	started := servers[:0]
	for _, m := range servers {
		if m != nil {
			started = append(started, m)
		}
	}
	return started, errors.Join(errs...)
}

func closeAll(servers []*testserver.MariaDB) {
	var wg sync.WaitGroup
	for _, m := range servers {
		wg.Go(func() {
			if err := m.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "throwaway: close %s: %v\n", m.Addr(), err)
			}
		})
	}
	wg.Wait()
}

// writeEnv writes the variables for every instance to path, atomically.
func writeEnv(path string, servers []*testserver.MariaDB) error {
	var b strings.Builder
	for i, m := range servers {
		p := strings.ToUpper(name(i))
		for _, kv := range [][2]string{
			{"DSN", m.DSN("")},
			{"HOST", m.Host},
			{"PORT", fmt.Sprint(m.Port)},
			{"USER", m.User},
			{"PASSWORD", m.Password},
			{"DATADIR", m.DataDir},
			{"SOCKET", m.Socket()},
		} {
			fmt.Fprintf(&b, "%s_%s=%s\n", p, kv[0], shellQuote(kv[1]))
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// shellQuote quotes s for sh when it needs quoting, so the file can be
// sourced.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
