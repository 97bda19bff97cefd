package dmworker

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
	"time"

	"github.com/dmworker/dmworker/internal/progress"
	"github.com/dmworker/dmworker/streamer"
)

// watchUpstream polls the upstream's binlog end every progress.PollInterval
// while Run runs, for the lag: a stalled stream, or a relay between the
// syncer and the upstream, shows nothing of what the upstream has written
// meanwhile. It returns the function that stops it and waits for it.
func (s *Syncer) watchUpstream(ctx context.Context) (stop func()) {
	if s.offline() {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		db, err := openUpstreamDB(s.cfg.Upstream)
		if err != nil {
			return
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		t := time.NewTicker(progress.PollInterval)
		defer t.Stop()
		for {
			at := time.Now()
			qctx, qcancel := context.WithTimeout(ctx, 2*progress.PollInterval)
			end, err := binlogEnd(qctx, db)
			qcancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				// The reader reports connection faults; the lag grows.
				s.log.Debug("polling the upstream's binlog position", errAttr(err))
			case end.Name != "":
				s.reached.Store(true)
				s.mu.Lock()
				s.prog.Look(end, at)
				s.mu.Unlock()
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// binlogEnd reads the file and offset the upstream's binlog ends at (zero
// when binary logging is off).
func binlogEnd(ctx context.Context, db *sql.DB) (streamer.Position, error) {
	rows, err := db.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		// MySQL 8.4 knows only the new name.
		var err2 error
		if rows, err2 = db.QueryContext(ctx, "SHOW BINARY LOG STATUS"); err2 != nil {
			return streamer.Position{}, err
		}
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil || len(cols) < 2 {
		return streamer.Position{}, err
	}
	var p streamer.Position
	if rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return p, err
		}
		off, err := strconv.ParseUint(string(vals[1]), 10, 64)
		if err != nil {
			return p, err
		}
		p.Name, p.Offset = string(vals[0]), off
	}
	return p, rows.Err()
}
