package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/dmworker/dmworker/internal/benchutil"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The generated workload, chosen to look like an OLTP binlog rather than a
// best case for either reader: rows of about 1 KB with integers, a decimal,
// a double, a datetime, a timestamp, short and long text (some of it
// multi-byte UTF-8), written by transactions that each insert 20 rows in one
// statement, update 10 recent rows and delete the 20 oldest (full row image,
// so updates log before and after images), over several tables.
const (
	fillTables       = 4
	insertsPerTxn    = 20
	updatesPerTxn    = 10
	deletesPerTxn    = 20
	rowsKeptPerTable = 20000 // delete only once a table holds this many rows
	fillSchema       = "bench_remoteread"
)

const tableDDL = `CREATE TABLE IF NOT EXISTS %s.t%d (
	id BIGINT NOT NULL PRIMARY KEY,
	k INT NOT NULL,
	c VARCHAR(160) NOT NULL,
	pad CHAR(60) NOT NULL,
	amount DECIMAL(12,2) NOT NULL,
	score DOUBLE NOT NULL,
	created DATETIME(6) NOT NULL,
	ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	flags TINYINT UNSIGNED NOT NULL,
	body TEXT NOT NULL,
	KEY k (k)
) ENGINE=InnoDB`

// words feed the text columns; a few are multi-byte in UTF-8.
var words = strings.Fields(`alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo
	lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray
	yankee zulu binlog replica upstream relay checkpoint transaction rotate offset
	Grüße naïve façade smörgåsbord déjà東京 данные δεδομένα 数据 0 17 4096 3.14159`)

// fill writes transactions with workers connections until the upstream's
// binlog files add up to at least target bytes, and returns that total.
func fill(ctx context.Context, db *sql.DB, target int64, workers int, progress func(format string, args ...any)) (int64, error) {
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+fillSchema); err != nil {
		return 0, err
	}
	for i := range fillTables {
		if _, err := db.ExecContext(ctx, fmt.Sprintf(tableDDL, fillSchema, i)); err != nil {
			return 0, err
		}
	}
	size, err := benchutil.BinlogBytes(ctx, db)
	if err != nil || size >= target {
		return size, err
	}
	db.SetMaxOpenConns(workers + 1)

	start := time.Now()
	var txns atomic.Int64
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make([]error, workers+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			if errs[w] = fillWorker(fctx, db, w, workers, &txns); errs[w] != nil {
				stop()
			}
		})
	}
	wg.Go(func() {
		defer stop()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
			}
			n, err := benchutil.BinlogBytes(fctx, db)
			if err != nil {
				errs[workers] = ignoreCancel(fctx, err)
				return
			}
			progress("fill: %d MB of binlog, %d transactions, %.0f s", n/1e6, txns.Load(), time.Since(start).Seconds())
			if n >= target {
				return
			}
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return benchutil.BinlogBytes(ctx, db)
}

// fillWorker owns tables w, w+workers, ...; owning them alone it can keep
// track of their ids without asking the server.
func fillWorker(ctx context.Context, db *sql.DB, w, workers int, txns *atomic.Int64) error {
	type table struct {
		name         string
		oldest, next int64 // ids [oldest, next) exist
	}
	var tables []*table
	for i := w; i < fillTables; i += workers {
		t := &table{name: fmt.Sprintf("%s.t%d", fillSchema, i)}
		err := db.QueryRowContext(ctx, "SELECT COALESCE(MIN(id), 1), COALESCE(MAX(id), 0) + 1 FROM "+t.name).Scan(&t.oldest, &t.next)
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}
	if len(tables) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	placeholders := strings.TrimSuffix(strings.Repeat("(?,?,?,?,?,?,?,?,?),", insertsPerTxn), ",")
	insertArgs := make([]any, 0, insertsPerTxn*9)
	for n := 0; ; n++ {
		if ctx.Err() != nil {
			return nil
		}
		t := tables[n%len(tables)]
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return ignoreCancel(ctx, err)
		}
		insertArgs = insertArgs[:0]
		for i := range insertsPerTxn {
			insertArgs = append(insertArgs, t.next+int64(i), rng.IntN(1_000_000),
				text(rng, 60, 150), alnum(rng, 60),
				fmt.Sprintf("%d.%02d", rng.IntN(10_000_000), rng.IntN(100)), rng.Float64()*1e6,
				time.Unix(1.7e9+rng.Int64N(1e8), rng.Int64N(1e9)).UTC().Format("2006-01-02 15:04:05.000000"),
				rng.IntN(256), text(rng, 500, 1000))
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO "+t.name+
			" (id, k, c, pad, amount, score, created, flags, body) VALUES "+placeholders, insertArgs...)
		if err == nil {
			t.next += insertsPerTxn
			lo := t.next - 1 - int64(rng.IntN(insertsPerTxn*10))
			lo = max(lo-updatesPerTxn+1, t.oldest)
			_, err = tx.ExecContext(ctx, "UPDATE "+t.name+
				" SET k = k + 1, amount = amount + 1.25, score = score / 3, c = ?, ts = NOW() WHERE id BETWEEN ? AND ?",
				text(rng, 60, 150), lo, lo+updatesPerTxn-1)
		}
		if err == nil && t.next-t.oldest > rowsKeptPerTable {
			_, err = tx.ExecContext(ctx, "DELETE FROM "+t.name+" WHERE id < ?", t.oldest+deletesPerTxn)
			t.oldest += deletesPerTxn
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
}

func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// text returns words, space-separated, between min and max bytes long.
func text(rng *rand.Rand, min, max int) string {
	n := min + rng.IntN(max-min+1)
	var b strings.Builder
	b.Grow(n + 32)
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	s := b.String()
	for len(s) > max { // cut at a word boundary, so never inside a rune
		i := strings.LastIndexByte(s, ' ')
		if i <= 0 {
			return s[:0]
		}
		s = s[:i]
	}
	return s
}

func alnum(rng *rand.Rand, n int) string {
	const set = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = set[rng.IntN(len(set))]
	}
	return string(b)
}
