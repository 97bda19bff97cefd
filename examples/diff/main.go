// Command diff compares tables of an upstream MySQL or MariaDB server with
// their copies in a downstream server (dmworker.Diff) and prints every row
// that differs, by key.
//
// Usage:
//
//	go run ./examples/diff -from 'user@host:port' -to 'user@host:port'
//	    [-from-password-file F] [-to-password-file F]
//	    [-tables 'db.*,other.t'] [-route 'src.t_*:dst.t']
//	    [-workers N] [-chunk-rows N] [-max-rows N]
//	    [-progress FILE] [-fix-sql FILE] [-recheck N] [-hash64]
//
// Flags:
//   - -from, -to: the upstream and the downstream, user[:password]@host:port,
//     with the password better in -from-password-file / -to-password-file
//     or in DMWORKER_FROM_PASSWORD / DMWORKER_TO_PASSWORD (as for
//     examples/migrate).
//   - -tables: comma-separated db.table patterns (wildcards allowed; default
//     every table outside the system schemas).
//   - -route: route rules as migrate takes them, 'src.t_*:dst.t' or
//     'src_*:dst', comma-separated, repeatable: each upstream table is
//     compared with its target, and shards routed to one target as their
//     union.
//   - -progress FILE: keep the progress in FILE; run again with the same
//     FILE after an interruption (kill -9 included) to go on from the
//     chunks done.
//   - -fix-sql FILE: write the SQL that makes the downstream equal (REPLACE
//     and DELETE statements) to FILE.
//   - -recheck N: compare the rows found different again, up to N times, a
//     second apart, each at a new upstream snapshot, and report only those
//     different every time (for a downstream a task is still writing).
//   - -hash64: chunk checksums sum a 64-bit hash of each row instead of
//     CRC32 (dmworker.WithDiffHash64): twice the servers' work.
//
// The upstream is read in a consistent snapshot; the downstream is read
// as it is. The command assumes the downstream is quiescent and caught up
// with the upstream (a stopped or idle replication task), or, with
// -recheck, that rows in flight converge within the rechecks: a library
// host gives dmworker.WithDiffWait a function that waits for its syncer's
// checkpoint to pass the snapshot's position instead.
//
// Exit status: 0 the tables are equal, 1 they differ, 2 an error (bad flags,
// a server unreachable, a table unreadable).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() { cli.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("diff", stderr)
	var routes listFlag
	var (
		from      = cli.Server(fs, "from", "upstream", "required", "DMWORKER_FROM_PASSWORD")
		to        = cli.Server(fs, "to", "downstream", "required", "DMWORKER_TO_PASSWORD")
		tables    = fs.String("tables", "", "comma-separated db.table patterns to compare (default all)")
		workers   = fs.Int("workers", dmworker.DefaultDiffWorkers, "chunks compared at once")
		chunkRows = fs.Int("chunk-rows", dmworker.DefaultDiffChunkRows, "rows per chunk")
		maxRows   = fs.Int("max-rows", dmworker.DefaultDiffMaxRows, "differing rows reported per table")
		progress  = fs.String("progress", "", "keep the progress in `FILE` and resume from it")
		fixSQL    = fs.String("fix-sql", "", "write the repair SQL to `FILE`")
		hash64    = fs.Bool("hash64", false, "sum a 64-bit hash of each row in the chunk checksums instead of CRC32 (twice the servers' work)")
		recheck   = fs.Int("recheck", 0, "compare differing rows again up to `N` times, a second apart, at new snapshots (for a downstream still being written)")
	)
	fs.Var(&routes, "route", "route rules 'src.t_*:dst.t' or 'src_*:dst', comma-separated; repeatable")
	if err := cli.Parse(fs, args); err != nil {
		return cli.UsageStatus(stderr, "diff", err)
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "diff: "+format+"\n", a...)
		return 2
	}
	if !from.Given() || !to.Given() {
		return fail("-from and -to user:password@host:port are required")
	}
	up, err := from.Config()
	if err != nil {
		return fail("-from: %v", err)
	}
	down, err := to.Config()
	if err != nil {
		return fail("-to: %v", err)
	}
	pats, err := cli.TablePatterns(*tables)
	if err != nil {
		return fail("-tables: %v", err)
	}
	var rr []dmworker.RouteRule
	for _, r := range routes {
		rs, err := cli.Routes(r)
		if err != nil {
			return fail("-route: %v", err)
		}
		rr = append(rr, rs...)
	}
	updb, err := cli.OpenDB(up)
	if err != nil {
		return fail("%v", err)
	}
	defer updb.Close()
	downdb, err := cli.OpenDB(down)
	if err != nil {
		return fail("%v", err)
	}
	defer downdb.Close()
	opts := []dmworker.DiffOption{
		dmworker.WithDiffWorkers(*workers), dmworker.WithDiffChunkRows(*chunkRows), dmworker.WithDiffMaxRows(*maxRows),
		dmworker.WithDiffRules(dmworker.BlockAllowList{}, rr), dmworker.WithDiffRecheck(*recheck, time.Second),
	}
	if *hash64 {
		opts = append(opts, dmworker.WithDiffHash64())
	}
	if *progress != "" {
		opts = append(opts, dmworker.WithDiffProgressFile(*progress))
	}
	res, err := dmworker.Diff(ctx, updb, downdb, pats, opts...)
	if err != nil {
		return fail("%v", err)
	}
	print(stdout, res)
	if *fixSQL != "" {
		f, err := os.Create(*fixSQL)
		if err != nil {
			return fail("-fix-sql: %v", err)
		}
		err = res.WriteFixSQL(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail("-fix-sql: %v", err)
		}
	}
	if res.Equal() {
		return 0
	}
	return 1
}

// print writes one line per table and one per differing row.
func print(w io.Writer, res *dmworker.DiffResult) {
	fmt.Fprintf(w, "upstream snapshot at %s", res.Position)
	if res.Resumed > 0 {
		fmt.Fprintf(w, ", %d chunks resumed from the progress file", res.Resumed)
	}
	fmt.Fprintln(w)
	for i := range res.Tables {
		t := &res.Tables[i]
		src := strings.Join(t.Sources, " + ")
		switch {
		case t.NoTarget:
			fmt.Fprintf(w, "%s: missing downstream (from %s)\n", t, src)
			continue
		case t.Equal():
			fmt.Fprintf(w, "%s: equal (%d rows, %d chunks, from %s)\n", t, t.UpstreamRows, t.Chunks, src)
			continue
		}
		fmt.Fprintf(w, "%s: %d rows differ (upstream %d rows, downstream %d; %d of %d chunks differ; from %s)\n",
			t, len(t.Rows)+t.Omitted, t.UpstreamRows, t.DownstreamRows, t.DifferingChunks, t.Chunks, src)
		for _, r := range t.Rows {
			fmt.Fprintf(w, "  %s %s", r.Kind, key(t, r))
			if r.Kind == dmworker.DiffChanged {
				fmt.Fprintf(w, " columns %s", strings.Join(r.Columns, ","))
			}
			fmt.Fprintln(w)
		}
		if t.Omitted > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", t.Omitted)
		}
	}
}

// key is "k1=v1,k2=v2", or the whole row for a table without a key.
func key(t *dmworker.DiffTable, r dmworker.DiffRow) string {
	names, vals := t.Key, r.Key
	if len(names) == 0 {
		names, vals = t.Columns, r.Upstream
		if vals == nil {
			vals = r.Downstream
		}
	}
	parts := make([]string, len(names))
	for i := range names {
		parts[i] = names[i] + "=" + vals[i]
	}
	return strings.Join(parts, ",")
}
