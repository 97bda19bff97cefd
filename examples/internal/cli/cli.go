// Package cli is what the example commands share and none of them
// demonstrates: the signal handling of main, the exit statuses, parsing
// flags, the -from/-to server flags with their password files and
// environment variables, the warnings-only logger and the database pool.
// With it each example's main.go shows only the dmworker API it is about.
package cli

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/streamer"
)

// Exit statuses of the examples.
const (
	ExitOK      = 0 // done, or -h
	ExitFailure = 1 // the run failed
	ExitUsage   = 2 // bad flags
)

// Main runs run with the command line's arguments, stdout and stderr under
// a context that SIGINT and SIGTERM cancel (with a StopSignal as its
// cause), and exits with the status run returns.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	ctx, stop := NotifySignals(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// StopSignal is the cause (context.Cause) of a context that a signal
// ended.
type StopSignal struct{ Sig os.Signal }

func (s StopSignal) Error() string { return "stopped by " + s.Sig.String() }

// NotifySignals returns a context that SIGINT and SIGTERM end, with the
// signal as its cause, and the function that releases it.
func NotifySignals(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			cancel(StopSignal{sig})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// ErrReported is a bad flag that the flag set has printed already, with
// the usage.
var ErrReported = errors.New("bad flags")

// NewFlagSet returns a flag set named after the command that reports its
// errors (and -h's usage) to stderr and lets the caller handle them.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// Parse parses args with fs: flag.ErrHelp for -h or -help, ErrReported for
// a bad flag, an error for arguments left over.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrReported
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

// Set returns the names of the flags the command line set.
func Set(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// UsageStatus is the exit status for a parse error: ExitOK for -h,
// ExitUsage for the rest, printed as "<command>: <error>" unless the flag
// set did.
func UsageStatus(stderr io.Writer, command string, err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case !errors.Is(err, ErrReported):
		fmt.Fprintf(stderr, "%s: %v\n", command, err)
	}
	return ExitUsage
}

// ServerFlags are the flags naming a server, -NAME user[:password]@host:port
// and -NAME-password-file FILE, with an environment variable as the last
// source of the password.
type ServerFlags struct {
	Addr, PasswordFile *string
	env                string
}

// Server defines -name and -name-password-file on fs for a server (what:
// "upstream", "downstream"; required: how -name's usage says when it is
// required, e.g. "required") whose password may also come from $env.
func Server(fs *flag.FlagSet, name, what, required, env string) *ServerFlags {
	return &ServerFlags{
		Addr: fs.String(name, "", fmt.Sprintf("%s as user[:password]@host:port (%s); the password is better given by -%s-password-file or $%s", what, required, name, env)),
		PasswordFile: fs.String(name+"-password-file", "",
			fmt.Sprintf("read the %s's password from `FILE` (default: from -%s, else $%s)", what, name, env)),
		env: env,
	}
}

// Given reports whether the server's address was given.
func (s *ServerFlags) Given() bool { return *s.Addr != "" }

// Config is the server the flags name, its password from the file, else
// the address, else the environment (streamer.ParseUpstreamFlags).
func (s *ServerFlags) Config() (streamer.UpstreamConfig, error) {
	return streamer.ParseUpstreamFlags(*s.Addr, *s.PasswordFile, s.env)
}

// List splits a comma-separated flag value, dropping blanks.
func List(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// WarningsLogger logs warnings only (such as connection retries), as text
// to w: a terminal error is printed once by the command, not logged as
// well. Errors are logged by their message: slog's text handler would print
// them with %+v, which for errors from go-mysql includes a stack trace.
func WarningsLogger(w io.Writer) *slog.Logger {
	return slog.New(warningsOnly{slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: plainErrors})})
}

type warningsOnly struct{ slog.Handler }

func (h warningsOnly) Enabled(_ context.Context, l slog.Level) bool { return l == slog.LevelWarn }

func (h warningsOnly) WithAttrs(as []slog.Attr) slog.Handler {
	return warningsOnly{h.Handler.WithAttrs(as)}
}

func (h warningsOnly) WithGroup(name string) slog.Handler {
	return warningsOnly{h.Handler.WithGroup(name)}
}

// plainErrors logs an error attribute as its text, and leaves out the
// stack dmworker writes beside an error (dmworker.ErrorStack): a command's
// user wants the message.
func plainErrors(_ []string, a slog.Attr) slog.Attr {
	if a.Key == "stack" {
		return slog.Attr{}
	}
	if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny {
		return slog.String(a.Key, err.Error())
	}
	return a
}

// OpenDB opens a pool on a MySQL-compatible server.
func OpenDB(c streamer.UpstreamConfig) (*sql.DB, error) {
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = c.User, c.Password, "tcp", c.Addr()
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return sql.OpenDB(conn), nil
}

// TablePatterns reads 'db.*,other.t': comma-separated db.table patterns
// (wildcards allowed).
func TablePatterns(s string) ([]dmworker.TablePattern, error) {
	var out []dmworker.TablePattern
	for _, f := range List(s) {
		db, tbl, ok := strings.Cut(f, ".")
		if !ok || db == "" || tbl == "" {
			return nil, fmt.Errorf("%q: want db.table (wildcards allowed, e.g. db.*)", f)
		}
		out = append(out, dmworker.TablePattern{Schema: db, Name: tbl})
	}
	return out, nil
}

// Routes reads 'src.t_*:dst.t,src_*:dst': comma-separated route rules,
// a table pattern to a table or a schema pattern to a schema.
func Routes(s string) ([]dmworker.RouteRule, error) {
	var out []dmworker.RouteRule
	for _, f := range List(s) {
		from, to, ok := strings.Cut(f, ":")
		if !ok || from == "" || to == "" {
			return nil, fmt.Errorf("%q: want src.table:dst.table or src:dst", f)
		}
		fs, ft, fTable := strings.Cut(from, ".")
		ts, tt, tTable := strings.Cut(to, ".")
		switch {
		case fTable != tTable:
			return nil, fmt.Errorf("%q: route a schema to a schema (src:dst) or a table to a table (src.t:dst.t)", f)
		case fs == "" || ts == "" || (fTable && (ft == "" || tt == "")):
			return nil, fmt.Errorf("%q: empty name", f)
		}
		out = append(out, dmworker.RouteRule{SchemaPattern: fs, TablePattern: ft, TargetSchema: ts, TargetTable: tt})
	}
	return out, nil
}

// idleHoldKey is the context key of HoldIdle's channel.
type idleHoldKey struct{}

// HoldIdle returns ctx holding back a command's -exit-when-idle, and the
// func that releases it (safe to call more than once). A test calls it
// after its last upstream write, so that the command waits for that rather
// than taking a pause between two of the test's statements (which a loaded
// machine makes as long as it likes) for the end of the workload.
func HoldIdle(ctx context.Context) (context.Context, func()) {
	ch := make(chan struct{})
	var once sync.Once
	return context.WithValue(ctx, idleHoldKey{}, ch), func() { once.Do(func() { close(ch) }) }
}

// IdleHeld reports whether ctx carries a HoldIdle hold not yet released:
// while it does, -exit-when-idle does not end the command.
func IdleHeld(ctx context.Context) bool {
	ch, _ := ctx.Value(idleHoldKey{}).(chan struct{})
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}
