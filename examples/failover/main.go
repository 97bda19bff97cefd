// Command failover shows a source failing over from one worker to another,
// in one process, against a real etcd: two dmworker.SourceWorkers, a and b,
// each registered by its dmworker.KeepAlive, and a dmworker.Coordinator.
//
// The coordinator binds the source (the -from server) to worker a, which
// replicates a task into the -to server while a workload runs on the
// upstream. Halfway through the workload, worker a is killed: its
// registration is revoked and the worker closed, as when its process dies.
// The coordinator sees a's key disappear and rebinds the source to b, which
// takes the task over from the checkpoint a left in the downstream (fenced
// by the new binding's epoch) and replicates on. Once the workload is done
// and b has caught up with the upstream, the program compares the tables
// (CHECKSUM TABLE and row counts) and exits 0 only when they are equal.
//
// Usage:
//
//	go run ./examples/failover -from 'user@host:port' -to 'user@host:port'
//	    [-from-password-file F] [-to-password-file F]
//	    [-etcd ENDPOINTS] [-txns 600] [-rate 200] [-keepalive-ttl 2s] [-timeout 2m]
//
// Flags:
//   - -from, -to: the upstream (binlog on, ROW format) and the downstream,
//     user[:password]@host:port. A password on the command line is visible
//     to every user (ps): give it instead in a file, -from-password-file F
//     and -to-password-file F, or in the environment,
//     DMWORKER_FROM_PASSWORD and DMWORKER_TO_PASSWORD (the file first, then
//     the flag, then the environment). The upstream's password goes into
//     etcd sealed with a key the program draws at random for the run (its
//     workers share the process).
//   - -etcd: comma-separated endpoints of the etcd to use; default: an
//     embedded etcd started in a temporary directory (removed at exit).
//   - -txns: workload transactions (each inserts rows, updates and deletes
//     some) in database failover_demo, which is dropped and created again
//     on both servers at the start; default 600.
//   - -rate: workload transactions a second (0: as fast as possible);
//     default 200.
//   - -keepalive-ttl: TTL of the workers' registrations and of the
//     coordinator's leadership, whole seconds; default 2s.
//   - -timeout: how long the whole run may take; default 2m.
//
// Output: one line a second with the binding and the serving worker's
// progress, a line when a is killed and when the source is rebound, and at
// the end
//
//	tables match: failover_demo.t checksum 123456789, 1234 rows
//
// or "tables differ: ..." (exit 1). Bad flags exit 2.
package main

import (
	"context"
	crand "crypto/rand"
	"database/sql"
	"errors"

	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/examples/internal/embedetcd"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

func main() { cli.Main(run) }

const (
	demoDB   = "failover_demo"
	taskName = "failover"
)

type config struct {
	up, down streamer.UpstreamConfig
	etcd     []string
	txns     int
	rate     int
	ttl      time.Duration
	timeout  time.Duration
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	fs := cli.NewFlagSet("failover", stderr)
	var (
		from    = cli.Server(fs, "from", "upstream", "required", "DMWORKER_FROM_PASSWORD")
		to      = cli.Server(fs, "to", "downstream", "required", "DMWORKER_TO_PASSWORD")
		etcd    = fs.String("etcd", "", "comma-separated etcd endpoints (default: an embedded etcd)")
		txns    = fs.Int("txns", 600, "workload transactions")
		rate    = fs.Int("rate", 200, "workload transactions a second (0: unlimited)")
		ttl     = fs.Duration("keepalive-ttl", 2*time.Second, "TTL of the registrations and the leadership (whole seconds)")
		timeout = fs.Duration("timeout", 2*time.Minute, "how long the whole run may take")
	)
	if err := cli.Parse(fs, args); err != nil {
		return config{}, err
	}
	var cfg config
	switch {
	case !from.Given() || !to.Given():
		return cfg, errors.New("-from and -to user:password@host:port are required")
	case *txns < 2:
		return cfg, fmt.Errorf("-txns %d: at least 2 (a is killed halfway)", *txns)
	case *rate < 0:
		return cfg, fmt.Errorf("-rate %d: must not be negative", *rate)
	case *ttl < time.Second || *ttl%time.Second != 0:
		return cfg, fmt.Errorf("-keepalive-ttl %s: want a whole number of seconds, at least 1s", *ttl)
	case *timeout <= 0:
		return cfg, fmt.Errorf("-timeout %s: must be positive", *timeout)
	}
	var err error
	if cfg.up, err = from.Config(); err != nil {
		return cfg, fmt.Errorf("-from: %w", err)
	}
	if cfg.down, err = to.Config(); err != nil {
		return cfg, fmt.Errorf("-to: %w", err)
	}
	cfg.etcd = cli.List(*etcd)
	cfg.txns, cfg.rate, cfg.ttl, cfg.timeout = *txns, *rate, *ttl, *timeout
	return cfg, nil
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return cli.UsageStatus(stderr, "failover", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := failover(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "failover:", err)
		return cli.ExitFailure
	}
	return cli.ExitOK
}

// errDiffer means the downstream does not equal the upstream.
var errDiffer = errors.New("tables differ")

func failover(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	updb, err := cli.OpenDB(cfg.up)
	if err != nil {
		return err
	}
	defer updb.Close()
	downdb, err := cli.OpenDB(cfg.down)
	if err != nil {
		return err
	}
	defer downdb.Close()
	for _, db := range []*sql.DB{updb, downdb} {
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+demoDB); err != nil {
			return fmt.Errorf("drop %s: %w", demoDB, err)
		}
	}
	// The downstream's copy of the database is created by replication.
	if _, err := downdb.ExecContext(ctx, "DELETE FROM dmworker_meta.checkpoint WHERE task = ?", taskName); err != nil {
		var me *mysql.MySQLError
		if !errors.As(err, &me) || (me.Number != 1146 && me.Number != 1049) { // no such table or database: a first run
			return fmt.Errorf("downstream: forget task %s's checkpoint: %w", taskName, err)
		}
	}

	endpoints := cfg.etcd
	if len(endpoints) == 0 {
		e, err := embedetcd.Start("dmworker-failover-etcd-")
		if err != nil {
			return err
		}
		defer e.Close()
		endpoints = []string{e.Endpoint}
		fmt.Fprintf(stdout, "embedded etcd at %s\n", e.Endpoint)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	defer cli.Close()
	// A prefix of its own, cleared first: the run does not mix with a
	// cluster that may share the etcd.
	prefix := "/dmworker-failover/"
	if _, err := cli.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd: clear %s: %w", prefix, err)
	}
	// Options several types take (a coordinator, keepalives, workers).
	common := sharedOptions{dmworker.WithEtcdPrefix(prefix), dmworker.WithLogger(logger)}

	// The source and the task, as a host writes them.
	up, err := streamer.QueryUpstream(ctx, cfg.up) // start at the upstream's current position
	if err != nil {
		return fmt.Errorf("upstream %s: %w", cfg.up, err)
	}
	if up.Master.Name == "" {
		return fmt.Errorf("upstream %s: no binlog position (is the binlog on?)", cfg.up)
	}
	source := dmworker.SourceConfig{Name: cfg.up.SourceName(), Upstream: cfg.up}
	task := dmworker.SubTaskConfig{Name: taskName, Mode: dmworker.ModeIncremental, Start: up.Master,
		Filter: dmworker.BlockAllowList{DoTables: []dmworker.TablePattern{{Schema: demoDB, Name: "*"}}}}
	// The password goes into etcd sealed, with a key the workers (in this
	// process) share: etcd never holds it in plain text.
	key := make([]byte, 32)
	if _, err := crand.Read(key); err != nil {
		return err
	}
	if err := dmworker.PutSourceConfig(ctx, cli, source, dmworker.WithCredentialKey(key), dmworker.WithEtcdPrefix(prefix)); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	host, err := dmworker.NewEtcdHost(cli, prefix)
	if err != nil {
		return err
	}
	if err := host.PutSubTaskConfig(ctx, source.Name, task); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}

	coord, err := dmworker.NewCoordinator(cli, dmworker.WithKeepAliveTTL(cfg.ttl), common.prefix, common.logger)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer coord.Close()
	wg.Add(1)
	go func() { defer wg.Done(); _ = coord.Run(ctx) }() // fails only on a second Run or after Close
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return mysqlsink.New(downdb)
	}
	a, err := startWorker(ctx, &wg, cli, "a", sinks, common, key, cfg.ttl)
	if err != nil {
		return err
	}
	defer a.close()
	// b joins once the source is bound to a (the coordinator binds to the
	// first idle worker in name order among those registered when it looks).
	for a.task().Stage != dmworker.SubTaskRunning {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the source was not bound to worker a: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Fprintf(stdout, "source %s bound to worker a (epoch %d); worker b joins and stands by\n", source.Name, a.task().Epoch)
	b, err := startWorker(ctx, &wg, cli, "b", sinks, common, key, cfg.ttl)
	if err != nil {
		return err
	}
	defer b.close()

	// The workload, in the background.
	var written sync.WaitGroup
	var progress struct {
		sync.Mutex
		done int
		err  error
	}
	if _, err := updb.ExecContext(ctx, "CREATE DATABASE "+demoDB); err != nil {
		return err
	}
	if _, err := updb.ExecContext(ctx, "CREATE TABLE "+demoDB+".t (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(64), amount DECIMAL(12,2))"); err != nil {
		return err
	}
	wctx, wcancel := context.WithCancel(ctx)
	written.Add(1)
	go func() {
		defer written.Done()
		err := workload(wctx, updb, cfg, func(n int) {
			progress.Lock()
			progress.done = n
			progress.Unlock()
		})
		progress.Lock()
		progress.err = err
		progress.Unlock()
	}()
	defer written.Wait()
	defer wcancel() // first: the workload stops on an early return
	workloadDone := func() (int, bool, error) {
		progress.Lock()
		defer progress.Unlock()
		return progress.done, progress.done == cfg.txns, progress.err
	}

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// Phase 1: a serves; kill it once it has applied rows and the
	// workload is halfway.
	killed := false
	var killedEpoch int64
	var killedAt time.Time
	for !killed {
		n, _, werr := workloadDone()
		if werr != nil {
			return werr
		}
		st := a.task()
		if bt := b.task(); bt.Stage == dmworker.SubTaskRunning && (st.Name == "" || bt.Epoch > st.Epoch) {
			// a's lease lapsed on its own (a machine too busy to renew
			// it in time): the coordinator moved the source already.
			killedEpoch = st.Epoch
			fmt.Fprintf(stdout, "worker a lost its lease before the kill (the source moved to worker b, epoch %d); killing worker a (epoch %d) at workload transaction %d, checkpoint %s\n",
				bt.Epoch, st.Epoch, n, st.Syncer.Checkpoint)
			a.close()
			killedAt = time.Now()
			killed = true
			break
		}
		if st.Syncer.Rows > 0 && n >= cfg.txns/2 {
			killedEpoch = st.Epoch
			fmt.Fprintf(stdout, "killing worker a (epoch %d) at workload transaction %d, checkpoint %s\n", st.Epoch, n, st.Syncer.Checkpoint)
			a.close()
			killedAt = time.Now()
			killed = true
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("worker a never applied rows: %w", ctx.Err())
		case <-tick.C:
			printStatus(ctx, stdout, coord, source.Name, a, b, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Phase 2: the coordinator rebinds to b; b replicates until caught up
	// with the upstream once the workload is over.
	rebound := false
	for {
		n, over, werr := workloadDone()
		if werr != nil {
			return werr
		}
		st := b.task()
		if !rebound && st.Epoch > killedEpoch && st.Stage == dmworker.SubTaskRunning {
			rebound = true
			fmt.Fprintf(stdout, "source %s rebound to worker b (epoch %d) %.1fs after a was killed; b resumes from checkpoint %s\n",
				source.Name, st.Epoch, time.Since(killedAt).Seconds(), st.Syncer.Checkpoint)
		}
		if st.LastError != nil && st.Stage == dmworker.SubTaskPaused {
			return fmt.Errorf("worker b: %w", st.LastError)
		}
		if rebound && over {
			caught, err := caughtUp(ctx, cfg.up, st.Syncer.Checkpoint)
			if err != nil {
				return err
			}
			if caught {
				fmt.Fprintf(stdout, "worker b caught up at %s (%d rows applied)\n", st.Syncer.Checkpoint, st.Syncer.Rows)
				break
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for worker b (rebound %v, workload over %v): %w", rebound, over, ctx.Err())
		case <-tick.C:
			printStatus(ctx, stdout, coord, source.Name, a, b, n)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Done: the coordinator goes first, so that it does not see b leave
	// and report the source without a worker.
	coord.Close()
	return compare(ctx, stdout, updb, downdb, demoDB+".t")
}

// worker is a SourceWorker with its KeepAlive, both running.
type worker struct {
	name string
	ka   *dmworker.KeepAlive
	w    *dmworker.SourceWorker
	once sync.Once
}

// sharedOptions are the options every etcd type of the example is given.
type sharedOptions struct {
	prefix dmworker.EtcdPrefixOption
	logger dmworker.LoggerOption
}

func startWorker(ctx context.Context, wg *sync.WaitGroup, cli *clientv3.Client, name string, sinks dmworker.SinkFactory,
	common sharedOptions, key []byte, ttl time.Duration) (*worker, error) {
	ka, err := dmworker.NewKeepAlive(cli, name, dmworker.WithKeepAliveTTL(ttl), common.prefix, common.logger)
	if err != nil {
		return nil, err
	}
	w, err := dmworker.NewSourceWorker(name, sinks, dmworker.WithEtcd(cli), dmworker.WithLiveness(ka), dmworker.WithCredentialKey(key),
		common.prefix, common.logger)
	if err != nil {
		return nil, err
	}
	wg.Add(2)
	go func() { defer wg.Done(); _ = ka.Run(ctx) }() // fails only on a second Run or after Close
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	return &worker{name: name, ka: ka, w: w}, nil
}

// close kills the worker: its registration is revoked (the coordinator
// sees its key go) and the worker stops.
func (w *worker) close() {
	w.once.Do(func() {
		w.ka.Close()
		w.w.Close()
	})
}

// task is the worker's status of the task (zero when it does not run it).
func (w *worker) task() dmworker.SubTaskStatus {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no round trip to the upstream for the relay's status
	for _, st := range w.w.Status(ctx).SubTasks {
		if st.Name == taskName {
			return st
		}
	}
	return dmworker.SubTaskStatus{}
}

// printStatus prints the binding, the workload's progress and each
// worker's task.
func printStatus(ctx context.Context, out io.Writer, coord *dmworker.Coordinator, source string, a, b *worker, txns int) {
	bound := "nobody"
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if bs, err := coord.Bindings(bctx); err == nil {
		if b, ok := bs[source]; ok {
			bound = fmt.Sprintf("worker %s (epoch %d)", b.Worker, b.Epoch)
		}
	}
	cancel()
	line := fmt.Sprintf("workload txns=%d; source bound to %s", txns, bound)
	for _, w := range []*worker{a, b} {
		if st := w.task(); st.Name != "" {
			line += fmt.Sprintf("; %s: %s pos=%s rows=%d lag=%.1fs", w.name, st.Stage, st.Syncer.Checkpoint, st.Syncer.Rows, st.Syncer.LagSeconds)
		}
	}
	fmt.Fprintf(out, "%s\n", line)
}

// workload runs cfg.txns transactions on the upstream, reporting each one
// done through done.
func workload(ctx context.Context, db *sql.DB, cfg config, done func(int)) error {
	rnd := rand.New(rand.NewPCG(7, 1))
	var tick *time.Ticker
	if cfg.rate > 0 {
		tick = time.NewTicker(time.Second / time.Duration(cfg.rate))
		defer tick.Stop()
	}
	next := 0
	for i := 1; i <= cfg.txns; i++ {
		if tick != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("workload transaction %d: %w", i, err)
		}
		stmts := []string{}
		for j := 0; j < 3; j++ {
			next++
			stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.t VALUES (%d, %d, 'row %d', %d.%02d)", demoDB, next, rnd.IntN(100), next, rnd.IntN(10000), rnd.IntN(100)))
		}
		stmts = append(stmts, fmt.Sprintf("UPDATE %s.t SET v = CONCAT(v, '+'), amount = amount + 1 WHERE k = %d", demoDB, rnd.IntN(100)))
		if i%5 == 0 {
			stmts = append(stmts, fmt.Sprintf("DELETE FROM %s.t WHERE id = %d", demoDB, 1+rnd.IntN(next)))
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				tx.Rollback()
				return fmt.Errorf("workload transaction %d: %s: %w", i, s, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("workload transaction %d: commit: %w", i, err)
		}
		done(i)
	}
	return nil
}

// caughtUp reports whether cp has reached the upstream's binlog position.
func caughtUp(ctx context.Context, up streamer.UpstreamConfig, cp streamer.Position) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := streamer.QueryUpstream(qctx, up)
	if err != nil {
		return false, fmt.Errorf("upstream %s: %w", up, err)
	}
	if c, ok := cp.CompareGTID(st.Master); ok && c >= 0 {
		return true, nil
	}
	return cp.Name != "" && cp.Compare(st.Master) >= 0, nil
}

// compare prints whether table has the same checksum and row count on both
// sides, and returns errDiffer when not.
func compare(ctx context.Context, out io.Writer, updb, downdb *sql.DB, table string) error {
	sum := func(db *sql.DB) (string, int64, error) {
		var name string
		var cs sql.NullString
		if err := db.QueryRowContext(ctx, "CHECKSUM TABLE "+table).Scan(&name, &cs); err != nil {
			return "", 0, fmt.Errorf("CHECKSUM TABLE %s: %w", table, err)
		}
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			return "", 0, fmt.Errorf("count %s: %w", table, err)
		}
		if !cs.Valid {
			return "", 0, fmt.Errorf("CHECKSUM TABLE %s: no such table", table)
		}
		return cs.String, n, nil
	}
	us, un, err := sum(updb)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	ds, dn, err := sum(downdb)
	if err != nil {
		return fmt.Errorf("downstream: %w", err)
	}
	if us != ds || un != dn {
		fmt.Fprintf(out, "tables differ: %s upstream checksum %s, %d rows; downstream checksum %s, %d rows\n", table, us, un, ds, dn)
		return fmt.Errorf("%w: %s", errDiffer, table)
	}
	fmt.Fprintf(out, "tables match: %s checksum %s, %d rows\n", table, us, un)
	return nil
}
