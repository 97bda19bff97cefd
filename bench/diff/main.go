// Command diff is the driver of bench/diff.sh: it compares one schema of an
// upstream with its copy downstream three ways, alternated ROUNDS times:
//
//   - ours: dmworker.Diff with -workers chunks at a time (checksums per
//     chunk computed by both servers, no rows read: the tables are equal);
//     once with the default CRC32 sums, once WithDiffHash64;
//   - checksum: CHECKSUM TABLE of every table on both sides, the two
//     servers at once, -workers tables at a time on each;
//   - stream: every table read in key order from both sides at once and
//     compared row by row in the client (text protocol, bytes equal), as
//     tools that stream both sides compare; -workers tables at a time.
//
// It prints a Markdown table of each way's wall time (median and all runs)
// and the ratios to CHECKSUM TABLE, with the load average when each run
// began.
//
// Usage: diff -upstream u:p@h:port -downstream u:p@h:port -schema sbtest
// -workers 4 -rounds 3
package main

import (
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/benchutil"
	"github.com/dmworker/dmworker/streamer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "diff bench:", err)
		os.Exit(1)
	}
}

func open(s string) (*sql.DB, error) {
	c, err := streamer.ParseUpstream(s)
	if err != nil {
		return nil, err
	}
	mc := gomysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = c.User, c.Password, "tcp", c.Addr()
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

func run() error {
	upFlag := flag.String("upstream", "", "upstream user:password@host:port")
	downFlag := flag.String("downstream", "", "downstream user:password@host:port")
	schema := flag.String("schema", "sbtest", "schema to compare")
	workers := flag.Int("workers", 4, "chunks or tables at a time")
	chunkRows := flag.Int("chunk-rows", dmworker.DefaultDiffChunkRows, "Diff's rows per chunk")
	rounds := flag.Int("rounds", 3, "runs of each way, alternated")
	flag.Parse()
	up, err := open(*upFlag)
	if err != nil {
		return err
	}
	down, err := open(*downFlag)
	if err != nil {
		return err
	}
	ctx := context.Background()
	tables, rows, err := listTables(ctx, up, *schema)
	if err != nil {
		return err
	}
	ways := []struct {
		name string
		fn   func() error
	}{
		{"ours (dmworker.Diff)", func() error { return diff(ctx, up, down, *schema, *workers, *chunkRows) }},
		{"ours, WithDiffHash64", func() error {
			return diff(ctx, up, down, *schema, *workers, *chunkRows, dmworker.WithDiffHash64())
		}},
		{"CHECKSUM TABLE, both sides", func() error { return checksum(ctx, up, down, *schema, tables, *workers) }},
		{"row-by-row stream of both sides", func() error { return stream(ctx, up, down, *schema, tables, *workers) }},
	}
	times := make([][]time.Duration, len(ways))
	loads := make([][]string, len(ways))
	for r := 0; r < *rounds; r++ {
		for i, w := range ways {
			load := benchutil.LoadAvg()
			t0 := time.Now()
			if err := w.fn(); err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			d := time.Since(t0)
			times[i] = append(times[i], d)
			loads[i] = append(loads[i], load)
			fmt.Fprintf(os.Stderr, "round %d %s: %s (load %s)\n", r+1, w.name, d.Round(time.Millisecond), load)
		}
	}
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	base := med(times[2])
	fmt.Printf("Machine: %s\n\n", benchutil.Machine())
	fmt.Printf("%d tables, %d rows in all; workers %d; Diff chunk rows %d; %d rounds alternated\n\n", len(tables), rows, *workers, *chunkRows, *rounds)
	fmt.Println("| way | median | runs (load at start) | rows/s | vs CHECKSUM TABLE |")
	fmt.Println("|---|---|---|---|---|")
	for i, w := range ways {
		m := med(times[i])
		var runs []string
		for j, d := range times[i] {
			runs = append(runs, fmt.Sprintf("%s (%s)", d.Round(10*time.Millisecond), loads[i][j]))
		}
		fmt.Printf("| %s | %s | %s | %.0f | %.2fx |\n", w.name, m.Round(10*time.Millisecond), strings.Join(runs, ", "),
			float64(rows)/m.Seconds(), m.Seconds()/base.Seconds())
	}
	return nil
}

// diff runs dmworker.Diff over the schema; the tables must be equal.
func diff(ctx context.Context, up, down *sql.DB, schema string, workers, chunkRows int, opts ...dmworker.DiffOption) error {
	opts = append(opts, dmworker.WithDiffWorkers(workers), dmworker.WithDiffChunkRows(chunkRows))
	res, err := dmworker.Diff(ctx, up, down, []dmworker.TablePattern{{Schema: schema, Name: "*"}}, opts...)
	if err == nil && !res.Equal() {
		err = fmt.Errorf("Diff reports differences")
	}
	return err
}

func listTables(ctx context.Context, db *sql.DB, schema string) ([]string, int64, error) {
	rs, err := db.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1", schema)
	if err != nil {
		return nil, 0, err
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var n string
		if err := rs.Scan(&n); err != nil {
			return nil, 0, err
		}
		out = append(out, n)
	}
	var total int64
	for _, t := range out {
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+schema+"`.`"+t+"`").Scan(&n); err != nil {
			return nil, 0, err
		}
		total += n
	}
	return out, total, rs.Err()
}

// checksum runs CHECKSUM TABLE on both servers at once, workers tables at a
// time on each, and compares.
func checksum(ctx context.Context, up, down *sql.DB, schema string, tables []string, workers int) error {
	sums := func(db *sql.DB, out []string) func() error {
		return func() error {
			var g errgroup.Group
			g.SetLimit(workers)
			for i, t := range tables {
				g.Go(func() error {
					var name string
					var sum sql.NullString
					if err := db.QueryRowContext(ctx, "CHECKSUM TABLE `"+schema+"`.`"+t+"`").Scan(&name, &sum); err != nil {
						return err
					}
					out[i] = sum.String
					return nil
				})
			}
			return g.Wait()
		}
	}
	a, b := make([]string, len(tables)), make([]string, len(tables))
	var g errgroup.Group
	g.Go(sums(up, a))
	g.Go(sums(down, b))
	if err := g.Wait(); err != nil {
		return err
	}
	if !slices.Equal(a, b) {
		return fmt.Errorf("checksums differ: %q vs %q", a, b)
	}
	return nil
}

// stream reads each table in key order from both sides at once and
// compares the rows.
func stream(ctx context.Context, up, down *sql.DB, schema string, tables []string, workers int) error {
	var g errgroup.Group
	g.SetLimit(workers)
	for _, t := range tables {
		g.Go(func() error {
			q := "SELECT * FROM `" + schema + "`.`" + t + "` ORDER BY id"
			a, err := up.QueryContext(ctx, q)
			if err != nil {
				return err
			}
			defer a.Close()
			b, err := down.QueryContext(ctx, q)
			if err != nil {
				return err
			}
			defer b.Close()
			cols, _ := a.Columns()
			ra, rb := make([]sql.RawBytes, len(cols)), make([]sql.RawBytes, len(cols))
			pa, pb := make([]any, len(cols)), make([]any, len(cols))
			for i := range cols {
				pa[i], pb[i] = &ra[i], &rb[i]
			}
			for {
				na, nb := a.Next(), b.Next()
				if na != nb {
					return fmt.Errorf("%s: row counts differ", t)
				}
				if !na {
					break
				}
				if err := a.Scan(pa...); err != nil {
					return err
				}
				if err := b.Scan(pb...); err != nil {
					return err
				}
				for i := range ra {
					if !bytes.Equal(ra[i], rb[i]) {
						return fmt.Errorf("%s: rows differ", t)
					}
				}
			}
			if err := a.Err(); err != nil {
				return err
			}
			return b.Err()
		})
	}
	return g.Wait()
}
