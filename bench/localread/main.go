// Command localread prepares the relay directory that bench/local-read.sh
// benchmarks streamer.LocalReader on: it fills an upstream's binlog with a
// mixed OLTP workload until it holds -fill-mb MB, rotates it, and copies its
// binlog files into a relay directory laid out as dmworker's relay writes it
// (one subdirectory, the index, each file byte for byte as the upstream
// sends it: the in-use mark of the active file's format description
// cleared).
//
// Usage:
//
//	localread -relay DIR -datadir DATADIR [-fill-mb 520] [-workers 2]
//
// The upstream is $UPSTREAM_DSN (go-sql-driver form), as written by
// internal/cmd/throwaway -env; DATADIR is where its binlog files are
// ($UPSTREAM_DATADIR). Progress goes to stderr.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"github.com/dmworker/dmworker/internal/benchutil"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/dmworker/dmworker/streamer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "localread:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		relay   = flag.String("relay", "", "relay directory to create (must not exist)")
		datadir = flag.String("datadir", os.Getenv("UPSTREAM_DATADIR"), "the upstream's datadir, where its binlog files are")
		fillMB  = flag.Int64("fill-mb", 520, "fill the binlog up to this many MB (10^6 bytes)")
		workers = flag.Int("workers", 2, "connections writing the workload")
	)
	flag.Parse()
	dsn := os.Getenv("UPSTREAM_DSN")
	switch {
	case *relay == "" || *datadir == "":
		return errors.New("-relay and -datadir are required")
	case dsn == "":
		return errors.New("$UPSTREAM_DSN is not set")
	case *workers < 1:
		return errors.New("-workers must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(*workers + 1)

	if err := fill(ctx, db, *fillMB*1e6, *workers); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	// The last file is the one being written: rotate, so that every file
	// with data is finished, as most of a relay's files are.
	if _, err := db.ExecContext(ctx, "FLUSH BINARY LOGS"); err != nil {
		return err
	}
	var serverID uint32
	if err := db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&serverID); err != nil {
		return err
	}
	files, err := binlogFiles(ctx, db)
	if err != nil {
		return err
	}
	sub := streamer.SubDirName(fmt.Sprint(serverID), 1)
	if err := os.MkdirAll(filepath.Join(*relay, sub), 0o755); err != nil {
		return err
	}
	var total int64
	for i, f := range files {
		n, err := copyBinlog(filepath.Join(*datadir, f), filepath.Join(*relay, sub, f), i == len(files)-1)
		if err != nil {
			return err
		}
		total += n
	}
	if err := streamer.WriteRelayIndex(*relay, []string{sub}); err != nil {
		return err
	}
	logf("relay %s: %d files, %.1f MB", filepath.Join(*relay, sub), len(files), float64(total)/1e6)
	return nil
}

// copyBinlog copies a binlog file; for the active one, it clears the in-use
// mark (byte 17 of the format description's header, at file offset 21) as
// the server does when it sends the file.
func copyBinlog(src, dst string, active bool) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil && active && n > 21 {
		var b [1]byte
		if _, err = out.ReadAt(b[:], 21); err == nil {
			b[0] &^= 0x01
			_, err = out.WriteAt(b[:], 21)
		}
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// The workload: a table of mixed column types (integers, decimal, double,
// datetime, timestamp, JSON, short and long text), written by transactions
// of three kinds in turn: a batch (insert 20 rows in one statement, update
// 10, delete 20 old ones), a single-row update, and a single-row insert.
// The small ones keep the event count realistic next to the big row events.
const (
	schema   = "bench_localread"
	keepRows = 20000
	tableDDL = `CREATE TABLE IF NOT EXISTS %s.t%d (
	id BIGINT NOT NULL PRIMARY KEY,
	k INT NOT NULL,
	c VARCHAR(120) NOT NULL,
	amount DECIMAL(12,2) NOT NULL,
	score DOUBLE NOT NULL,
	created DATETIME(6) NOT NULL,
	ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	doc JSON NOT NULL,
	body TEXT NOT NULL,
	KEY k (k)
) ENGINE=InnoDB`
)

var words = strings.Fields(`alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima
	mike november oscar papa quebec romeo sierra tango relay binlog rotate offset Grüße naïve 東京 数据`)

func fill(ctx context.Context, db *sql.DB, target int64, workers int) error {
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+schema); err != nil {
		return err
	}
	for w := range workers {
		if _, err := db.ExecContext(ctx, fmt.Sprintf(tableDDL, schema, w)); err != nil {
			return err
		}
	}
	start := time.Now()
	var txns atomic.Int64
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, workers+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			if errs[w] = worker(fctx, db, w, &txns); errs[w] != nil {
				cancel()
			}
		})
	}
	wg.Go(func() {
		defer cancel()
		for {
			size, err := benchutil.BinlogBytes(fctx, db)
			if err != nil {
				if fctx.Err() == nil {
					errs[workers] = err
				}
				return
			}
			logf("fill: %.0f MB of binlog, %d transactions, %.0f s", float64(size)/1e6, txns.Load(), time.Since(start).Seconds())
			if size >= target {
				return
			}
			select {
			case <-fctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

func worker(ctx context.Context, db *sql.DB, w int, txns *atomic.Int64) error {
	table := fmt.Sprintf("%s.t%d", schema, w)
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	var oldest, next int64 = 1, 1
	const batch = 20
	placeholders := strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,?,?),", batch), ",")
	row := func(id int64) []any {
		return []any{id, rng.IntN(1_000_000), text(rng, 40, 120),
			fmt.Sprintf("%d.%02d", rng.IntN(10_000_000), rng.IntN(100)), rng.Float64() * 1e6,
			time.Unix(1.7e9+rng.Int64N(1e8), rng.Int64N(1e9)).UTC().Format("2006-01-02 15:04:05.000000"),
			fmt.Sprintf(`{"n": %d, "tags": ["%s", "%s"], "ok": %v}`, rng.IntN(1000), words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(2) == 0),
			text(rng, 300, 900)}
	}
	for n := 0; ctx.Err() == nil; n++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return ignoreCancel(ctx, err)
		}
		switch n % 3 {
		case 0:
			args := make([]any, 0, batch*8)
			for i := range int64(batch) {
				args = append(args, row(next+i)...)
			}
			_, err = tx.ExecContext(ctx, "INSERT INTO "+table+" (id, k, c, amount, score, created, doc, body) VALUES "+placeholders, args...)
			if err == nil {
				next += batch
				lo := max(next-1-int64(rng.IntN(batch*10)), oldest)
				_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET k = k + 1, amount = amount + 1.25, score = score / 3, c = ?, ts = NOW() WHERE id BETWEEN ? AND ?",
					text(rng, 40, 120), lo, lo+9)
			}
			if err == nil && next-oldest > keepRows {
				_, err = tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE id < ?", oldest+batch)
				oldest += batch
			}
		case 1:
			_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET k = k + 1, doc = JSON_SET(doc, '$.n', ?) WHERE id = ?",
				rng.IntN(1000), oldest+rng.Int64N(max(next-oldest, 1)))
		default:
			_, err = tx.ExecContext(ctx, "INSERT INTO "+table+" (id, k, c, amount, score, created, doc, body) VALUES (?,?,?,?,?,?,?,?)", row(next)...)
			if err == nil {
				next++
			}
		}
		if err == nil {
			err = tx.Commit()
		} else {
			_ = tx.Rollback()
		}
		if err != nil {
			return ignoreCancel(ctx, err)
		}
		txns.Add(1)
	}
	return nil
}

func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func text(rng *rand.Rand, lo, hi int) string {
	n := lo + rng.IntN(hi-lo+1)
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	s := b.String()
	for len(s) > hi { // cut at a word boundary, never inside a rune
		s = s[:strings.LastIndexByte(s, ' ')]
	}
	return s
}

func binlogFiles(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var name string
		dest := []any{&name}
		for range cols[1:] {
			dest = append(dest, new(sql.RawBytes))
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, rows.Err()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
