// Command customsink shows how to plug a Sink of one's own into
// dmworker.Syncer: its sink prints every row change and DDL as one JSON line
// on stdout, and the syncer is wired with functional options
// (dmworker.WithCheckpointStore with an in-memory store, dmworker.WithLogger).
//
// Usage:
//
//	go run ./examples/customsink -from 'user@host:port' [-from-password-file F]
//	    [-tables 'db.*,other.t'] [-start FILE:POS] [-exit-when-idle DURATION]
//
// A password on the command line is visible to every user (ps): give it
// instead in a file, -from-password-file F (its content, one trailing
// newline removed), or in the environment variable DMWORKER_FROM_PASSWORD
// (the file first, then the password in -from, then the environment).
//
// -tables lists db.table patterns (wildcards '*' and '?') to replicate, the
// block-allow list's do-tables; default every table. -start is where to
// begin (any text streamer.ParsePosition takes); default the upstream's
// current position. The checkpoint is kept in memory only, so every run
// starts afresh.
//
// # Output
//
// One JSON object per line on stdout. A row change:
//
//	{"kind":"insert","table":"db.t","before":null,"after":{"id":1,"v":"a"}}
//
// kind is insert, update or delete; before is null for an insert, after null
// for a delete. Values are JSON numbers for integer, FLOAT, DOUBLE and BIT
// columns (uint64 values above 2^53 may lose precision in JSON readers that
// use doubles), strings for DECIMAL, temporal, ENUM, SET, text and JSON
// columns (see dmworker.Change), null for NULL, and base64 strings (standard
// encoding, with padding) for binary values: BINARY, VARBINARY, BLOB and
// GEOMETRY. A DDL:
//
//	{"kind":"ddl","table":"db.t","query":"ALTER TABLE ...","pos":"mysql-bin.000001:1234"}
//
// table is "db" for schema-level statements, pos the upstream position after
// the statement.
//
// # Stopping
//
// SIGINT or SIGTERM stop cleanly and exit 0. With -exit-when-idle D the
// program also exits 0 once the syncer's checkpoint has reached the
// upstream's binlog position and that position has not moved for D. Errors
// go to stderr, never with the password, and exit 1; bad flags exit 2.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/streamer"
)

func main() { cli.Main(run) }

// jsonSink is the example's Sink: one JSON line per change or DDL.
type jsonSink struct {
	mu  sync.Mutex
	out *bufio.Writer
}

type changeLine struct {
	Kind   string         `json:"kind"`
	Table  string         `json:"table"`
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
}

type ddlLine struct {
	Kind  string `json:"kind"`
	Table string `json:"table"`
	Query string `json:"query"`
	Pos   string `json:"pos"`
}

func row(t *dmworker.Table, vals []any) map[string]any {
	if vals == nil {
		return nil
	}
	m := make(map[string]any, len(vals))
	for i, v := range vals {
		if i < len(t.Columns) {
			m[t.Columns[i].Name] = v // []byte marshals as base64
		}
	}
	return m
}

// Apply implements dmworker.Sink. Printing is idempotent enough for this
// example: in safe mode a replayed change is printed again.
func (s *jsonSink) Apply(ctx context.Context, b *dmworker.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range b.Changes {
		if err := ctx.Err(); err != nil {
			return dmworker.Retryable(err)
		}
		if err := s.write(changeLine{Kind: c.Kind.String(), Table: c.Table.QualifiedName(),
			Before: row(c.Table, c.Before), After: row(c.Table, c.After)}); err != nil {
			return err
		}
	}
	return s.out.Flush()
}

// ExecDDL implements dmworker.Sink.
func (s *jsonSink) ExecDDL(_ context.Context, d *dmworker.DDL) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	table := d.Schema
	if d.Table != "" {
		table += "." + d.Table
	}
	if err := s.write(ddlLine{Kind: "ddl", Table: table, Query: d.Query, Pos: d.Pos.String()}); err != nil {
		return err
	}
	return s.out.Flush()
}

func (s *jsonSink) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.out.Write(append(b, '\n'))
	return err
}

type config struct {
	up     streamer.UpstreamConfig
	syncer dmworker.SyncerConfig
	idle   time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return cli.UsageStatus(stderr, "customsink", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sink := &jsonSink{out: bufio.NewWriter(stdout)}
	s, err := dmworker.NewSyncer(cfg.syncer, sink,
		dmworker.WithCheckpointStore(&dmworker.MemoryCheckpointStore{}),
		dmworker.WithLogger(logger))
	if err != nil {
		fmt.Fprintln(stderr, "customsink:", err)
		return cli.ExitFailure
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()

	var idleSince time.Time
	var lastMaster streamer.Position
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintln(stderr, "customsink:", err)
				return cli.ExitFailure
			}
			return cli.ExitOK
		case now := <-tick.C:
			st := s.Status()
			if cfg.idle <= 0 || st.Stage != dmworker.SyncerRunning {
				continue
			}
			qctx, qcancel := context.WithTimeout(runCtx, 10*time.Second)
			up, err := streamer.QueryUpstream(qctx, cfg.up)
			qcancel()
			if err != nil {
				idleSince = time.Time{}
				continue
			}
			master := streamer.Position{Name: up.Master.Name, Offset: up.Master.Offset}
			caught := st.Checkpoint.Name != "" && st.Checkpoint.Compare(master) >= 0
			switch {
			case !caught || !master.Equal(lastMaster):
				idleSince = time.Time{}
				if caught {
					idleSince = now
				}
			case now.Sub(idleSince) >= cfg.idle:
				cancel()
			}
			lastMaster = master
		}
	}
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	fs := cli.NewFlagSet("customsink", stderr)
	var (
		from   = cli.Server(fs, "from", "upstream", "required", "DMWORKER_FROM_PASSWORD")
		tables = fs.String("tables", "", "comma-separated db.table patterns to replicate (default all)")
		start  = fs.String("start", "", "start position FILE:POS (default: the upstream's current one)")
		idle   = fs.Duration("exit-when-idle", 0, "exit once caught up and the upstream idle for this long (0: never)")
	)
	if err := cli.Parse(fs, args); err != nil {
		return config{}, err
	}
	var cfg config
	switch {
	case !from.Given():
		return cfg, errors.New("-from user:password@host:port is required")
	case *idle < 0:
		return cfg, errors.New("-exit-when-idle must not be negative")
	}
	var err error
	if cfg.up, err = from.Config(); err != nil {
		return cfg, err
	}
	cfg.idle = *idle
	cfg.syncer = dmworker.SyncerConfig{Task: "customsink", Upstream: cfg.up}
	if *start != "" {
		if cfg.syncer.Start, err = streamer.ParsePosition(*start); err != nil {
			return cfg, fmt.Errorf("-start: %w", err)
		}
	}
	for _, f := range strings.Split(*tables, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		db, tbl, ok := strings.Cut(f, ".")
		if !ok || db == "" || tbl == "" {
			return cfg, fmt.Errorf("-tables %q: want db.table (wildcards allowed, e.g. db.*)", f)
		}
		cfg.syncer.Filter.DoTables = append(cfg.syncer.Filter.DoTables, dmworker.TablePattern{Schema: db, Name: tbl})
	}
	return cfg, nil
}
