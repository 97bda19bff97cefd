// Command migrate replicates an upstream MySQL or MariaDB server's row
// changes and DDL into a downstream MySQL-compatible server: it runs one
// dmworker.SourceWorker with one subtask writing through mysqlsink.
//
// Usage:
//
//	go run ./examples/migrate -from 'user@host:port' -to 'user@host:port'
//	    [-from-password-file F] [-to-password-file F]
//	    -mode incremental [-start FILE:POS | -start-gtid SET]
//	    [-tables 'db.*,other.t'] [-route 'src.t_*:dst.t'] [-task NAME]
//	    [-source NAME]
//	    [-data-dir DIR] [-etcd ENDPOINTS -worker NAME [-keepalive-ttl D]
//	    [-credential-key-file F]] [-workers N] [-exit-when-idle DURATION]
//	    [-stop-timeout DURATION] [-batch N] [-compact] [-server-id N]
//	    [-config task.yaml] [-source-config source.yaml] [-check]
//	    [-status-addr ADDR [-health-max-lag D]]
//
// Flags:
//   - -from, -to: the upstream and the downstream, user[:password]@host:port
//     (the port defaults to 3306; the password may contain '@' and ':').
//     A password on the command line is visible to every user (ps): give
//     it instead in a file, -from-password-file F and -to-password-file F
//     (the file's content, one trailing newline removed), or in the
//     environment, DMWORKER_FROM_PASSWORD and DMWORKER_TO_PASSWORD. The
//     file comes first, then the password in -from/-to, then the
//     environment; a password both in the flag and in a file is refused.
//   - -from NAME=user[:password]@host:port, repeated: several upstreams
//     (sources named NAME) merged into the one downstream by one process,
//     one dmworker.SourceWorker each, no etcd; the task is one subtask per
//     source, routes (-route) merge their shard tables, progress lines
//     start with source=NAME. A password not in the address comes from
//     $DMWORKER_FROM_PASSWORD. -shard-mode pessimistic coordinates the
//     shard tables' DDL across the sources (dmworker.ShardGroup): a shard
//     table's DDL reaches the downstream once, when every shard table of
//     every source has reached it; held locks are printed as "shard lock"
//     lines. -shard-mode optimistic applies a shard's DDL as it comes when
//     the downstream can take it (see dmworker.ShardOptimistic); drops held
//     back until every shard has run them print as "shard lock" lines. With
//     -config, each NAME is a source-id of the file's mysql-instances,
//     every instance needs its -from, and each source runs its instance
//     (flags given override it). Not with -etcd, -source, -source-config,
//     -status-addr or -from-password-file.
//   - -shard-mode pessimistic|optimistic with -etcd and -shard-sources
//     A,B,...: the task's sources run in several processes, each one
//     worker of the cluster with its own -from and -source (one of A,B,...);
//     each process makes the task's dmworker.NewEtcdShardGroup over the
//     cluster's etcd (keys under /dmworker/shardlock/, shardopt/,
//     shardowner/), so a shard DDL is coordinated across the processes as
//     -shard-mode says, whichever source the coordinator binds to which
//     worker.
//   - -mode: "incremental" (binlog replication from the start position or
//     the upstream's current end), "full" (copy the selected tables at one
//     consistent point, then exit 0) or "all" (copy, then replicate from
//     exactly that point).
//   - -data-dir DIR: keep a relay log of the upstream in DIR/relay and
//     replicate from it (the worker's local state); without it, the
//     subtask reads the upstream directly. The relay begins at the
//     upstream's current file and fetches older files when -start (or the
//     checkpoint) needs them, as long as the upstream still has them.
//   - -etcd ENDPOINTS (comma-separated): cluster mode. The process is one
//     worker of a cluster, named by -worker (default: the host name; names
//     must differ within a cluster). It writes the source's and the task's
//     configs under /dmworker/ (see the key layout in package dmworker; a
//     key is put only when its value differs, so every process may give
//     the same flags), the upstream's password sealed (AES-GCM) with the
//     key in -credential-key-file F or, without it, in
//     DMWORKER_CREDENTIAL_KEY: base64 of 16, 24 or 32 bytes (openssl rand
//     -base64 32), the same for every worker of the cluster, never in
//     etcd. A password with no key is refused (exit 2). It registers the
//     worker (dmworker.KeepAlive, key
//     /dmworker/worker/<worker> under a lease with the TTL of
//     -keepalive-ttl, default 60s, whole seconds), and runs a
//     dmworker.Coordinator: the processes elect one coordinator among
//     them, which binds the source to one live worker (key
//     /dmworker/bound/<worker>) and rebinds it to another when that
//     worker's registration disappears (the process died or lost etcd for
//     two thirds of the TTL). The bound worker replicates; the others stand
//     by. A new binding takes the task over from its checkpoint in the
//     downstream (fenced by the binding's epoch, so the old worker can no
//     longer write). Without -etcd, the worker is driven directly and needs
//     no etcd at all.
//   - -task: the task name (default "migrate"). With the source name it
//     keys the checkpoint, which is kept in the downstream, in
//     `dmworker_meta`.`checkpoint`, written in the same transaction as the
//     data it covers.
//   - -source NAME: the source's name (no '/'). It keys the checkpoint with
//     the task, names the relay directory (DIR/relay/NAME) and, in cluster
//     mode, the source's etcd keys: the upstream may be reached through
//     another address (a proxy, a virtual IP after a failover, a new DNS
//     name) and the task goes on from its checkpoint. Default: the name the
//     task's checkpoint in the downstream has (the one chosen at the first
//     run, found again through any address), or, at the first run, the
//     upstream's host:port as -from gives it; a task with checkpoints of
//     several sources needs -source (exit 2). A run with -source on a task
//     whose only checkpoint is stored under a default name (a host:port,
//     given by default or by an older version) takes that checkpoint over,
//     whatever address -from gives now. In
//     cluster mode give every process the same -source (or the same -from
//     at the first run). At every start the checkpoint is checked against
//     the server reached: another server that has not executed the
//     checkpoint's GTIDs, or a binlog that cannot hold its position, stops
//     the program with exit 1 (dmworker.ErrCheckpointLineage) instead of
//     starting anywhere else.
//   - -start FILE:POS (any text streamer.ParsePosition takes) or
//     -start-gtid SET: where a task with no checkpoint begins; without
//     either, at the upstream's current position. Once the task has a
//     checkpoint, a run continues from it and these flags are ignored. The
//     flavour of -start-gtid's set is read from its text: a set with a ':'
//     (uuid:interval) is MySQL, any other non-empty set MariaDB; an empty
//     set is refused.
//   - -tables: comma-separated db.table patterns (wildcards '*' and '?'),
//     the block-allow list's do-tables; default every table.
//   - -route: comma-separated rules, the flag may be repeated.
//     'src.t_*:dst.t' renames the upstream tables matching src.t_* to dst.t
//     (many shards may merge into one); 'src_*:dst' renames schemas.
//   - -online-ddl=true|false: whether online schema changes made upstream
//     by gh-ost or pt-online-schema-change are replicated as the ALTER they
//     make, run downstream at their cut-over, with the tools' shadow and
//     trash tables (_t_gho, _t_ghc, _t_del, _t_new, _t_old) never
//     replicated (default true; see dmworker.OnlineDDLConfig). With false
//     those tables are replicated like any other that -tables lets through.
//   - -workers N: how many goroutines apply changes (default the
//     library's, 2 x GOMAXPROCS between 4 and 16): changes to one row stay in order on one,
//     and the checkpoint is the low watermark of what they applied; with 1
//     the changes are applied in order, each batch with its checkpoint.
//   - -batch N: the most row changes one sink call carries (default the
//     library's, 256). -compact (default true, the library's default)
//     merges several changes to one row within a batch (tables with a
//     primary key and no other unique key); -compact=false turns it off.
//   - -server-id N: the replica server id the worker reads the upstream's
//     binlog as (the relay's, with -data-dir); default 0, a free one picked
//     at the first connection. It must differ from the upstream's own and
//     from its other replicas' (migrate -check tells).
//   - -config FILE: a DM task file (YAML, the format of DM's task.yaml;
//     see task.example.yaml beside this file and dmworker.ParseDMTask):
//     name (-task), task-mode (-mode), target-database (-to), the source's
//     meta (-start, -start-gtid), block-allow-list (-tables), routes
//     (-route), filters (binlog event filters, which have no flag) and the
//     syncer config: worker-count (-workers), batch (-batch), safe-mode,
//     compact (-compact). A task with several mysql-instances runs the one
//     -source (or the source file's source-id) names. -source-config FILE:
//     a DM source file (source.example.yaml, dmworker.ParseDMSource):
//     source-id (-source), from (-from), server-id (-server-id),
//     enable-relay (with -data-dir), relay-binlog-name and -gtid, purge. A
//     flag given on the command line overrides the file's value (-tables
//     replaces the whole block-allow list, -route every route). Decoding
//     is strict: an unknown key, or a DM feature dmworker does not have
//     (shard-mode, mydumpers, ...), is an error naming it (exit 2).
//     Passwords: a password written in a file is read in plain text (DM's
//     encrypted ones are not), and migrate warns when others may read the
//     file; better leave it out and use -from-password-file,
//     -to-password-file or the environment, as with the flags.
//   - -check: run the prechecks of the task (dmworker.Check) on the
//     upstream and the downstream instead of replicating: the binlog on,
//     ROW, FULL row image, server ids, the start position still there,
//     both users' privileges, filters matching tables, keys, collations,
//     max_allowed_packet and, with -data-dir, the relay directory. One
//     line per check ("pass", "warn" or "fail", what was found, what to
//     do), then a count; exit 1 when one fails, else 0.
//   - -stop-timeout D: on SIGINT or SIGTERM, the longest the worker's last
//     work may take (the last batch and its checkpoint, the last status
//     report to etcd) before it is abandoned, whatever is unreachable
//     (upstream, downstream, etcd); default 5s. Abandoned work is never
//     applied half: a batch cut short rolls back with its checkpoint.
//   - -exit-when-idle D: exit 0 once the checkpoint has reached the
//     upstream's binlog position and that position has not moved for D. In
//     cluster mode the same holds for the worker serving the task; a
//     standby process that has never run the task does not exit on its
//     own (it is the spare the cluster fails over to) and counts D only
//     from when it runs the task. Exiting ends the registration, so the
//     coordinator moves the source to a standby, if any.
//   - -status-addr ADDR (e.g. 127.0.0.1:8261; port 0 picks one, printed
//     on stderr): serve dmworker.StatusHandler over HTTP: GET /status (the
//     source, relay and subtask status as JSON), GET /healthz (200 "ok",
//     or 503 with the reasons: the subtask paused on an error, the relay
//     broken, the lease lost, or the lag past -health-max-lag D) and GET
//     /metrics (the worker's dmworker_* metrics, see the README, and the
//     Go runtime's and the process's, in Prometheus' text format).
//
// # Output
//
// Once a second, a progress line on stdout; while modes full and all copy
// the existing data:
//
//	snapshot copying at mysql-bin.000001:1234: rows=50000/81000 bytes=9500000/17300000 tables=3/8 rows/s=12000 eta=3s
//
// (rows and bytes done against the upstream's estimates, the rate over the
// last second and the time left at that rate); on a terminal (-progress
// auto, the default) or with -progress bar, the copy's progress is instead
// one bar rewritten in place:
//
//	snapshot [##################------------]  62% rows 50000/81000 9.1 MiB/16.5 MiB 12000 rows/s ETA 3s tables 3/8
//
// (-progress plain: the lines above, whatever stdout is). Then, while the
// binlog is replicated:
//
//	pos=mysql-bin.000001:1234 rows=120 rows/s=40.0 lag=0.0s
//
// In cluster mode the line starts with "worker=<name> " and is printed
// while this worker runs the task; a worker not running it prints instead,
// each time it changes, a line such as
//
//	worker=b standby: source 127.0.0.1:3306 served by worker a (epoch 12), coordinating
//
// ("coordinating": this process's coordinator leads the cluster).
//
// pos is the last checkpoint saved (the text form of streamer.Position,
// GTID set included when known), rows the rows applied since the start of
// this run, rows/s the rate over the last second, lag the syncer's
// LagSeconds: the seconds since everything the upstream had written was
// last known to be applied downstream (0 when caught up; it grows while
// applying is held up, or while the upstream is out of sight).
//
// The last line, when the program stops, sums the run up: the final
// checkpoint (the one stored downstream, from which the next run
// continues), the rows applied, the run's time and mean rate, and why it
// stops:
//
//	stopped at pos=mysql-bin.000001:5678 rows=450 time=12.3s rows/s=36.6: interrupted (SIGINT): run the same command again to continue from this checkpoint
//
// (in modes full and all, while copying: "snapshot at POS rows=N/EST
// time=... rows/s=...: ...").
//
// # Stopping and exit status
//
// SIGINT or SIGTERM stop replication cleanly: the last batch is applied
// with its checkpoint, and the program exits 0 within -stop-timeout (5s)
// whatever is unreachable; work not done by then is abandoned, never
// applied half, and the next run replays it. An upstream that cannot be
// reached (nothing answers at -from's address) or refuses the login before
// it has ever answered is a mistake in the flags, not a fault to wait out:
// the program says so and exits 1 within seconds. Once it has answered,
// connection faults are retried by the reader (a dead connection is noticed
// within 15s), and retryable faults (a connection lost for good, the
// downstream away) are resumed automatically with backoff (1s to 1m, 10
// attempts without progress), each attempt logged to stderr with its cause.
// Any other error stops replication (in the copy of existing data too) and
// exits 1, printed to stderr with the position and the whole statement; for
// a statement the syncer cannot take the message says how to get past it
// (there is no skip flag yet). With -data-dir, a relay that cannot start or
// goes on failing (its directory damaged or not writable, in use by another
// process) exits 1 with the relay's error, naming the file and offset; the
// relay files are created 0640 in 0750 directories. Exit status: 0 finished
// (mode full), idle (-exit-when-idle) or stopped by a signal; 1 stopped by
// an error; 2 bad flags. The passwords are never printed. Warnings (such
// as failed connection attempts and retries) are logged to stderr.
package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

func main() { cli.Main(run) }

// config is what the command line asks for.
type config struct {
	up, down streamer.UpstreamConfig
	source   dmworker.SourceConfig
	task     dmworker.SubTaskConfig
	worker   string
	dataDir  string
	etcd     []string
	ttl      time.Duration
	idle     time.Duration
	check    bool          // -check: run the prechecks and exit
	progress string        // -progress: auto, bar or plain
	stop     time.Duration // -stop-timeout
	key      []byte        // -credential-key-file or $DMWORKER_CREDENTIAL_KEY
	// statusAddr is where /status, /healthz and /metrics are served ("":
	// nowhere); maxLag the lag past which /healthz fails (0: none).
	statusAddr string
	maxLag     time.Duration
	multi      multiSource // -from NAME=... (sources.go)
	// shardSources are, with -etcd and -shard-mode, the task's sources
	// (-shard-sources): the process's ShardGroup is made through etcd.
	shardSources []string
}

// progressInterval is how often progress is printed.
const progressInterval = time.Second

// run is the whole program: it parses args, replicates until ctx ends, the
// upstream has been idle for -exit-when-idle, or an error, and returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return cli.UsageStatus(stderr, "migrate", err)
	}
	logger := cli.WarningsLogger(stderr)
	if cfg.check {
		return precheck(ctx, cfg, stdout, stderr)
	}

	db, err := cli.OpenDB(cfg.down) // the sink sets the session variables it needs on every connection it uses
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return cli.ExitFailure
	}
	defer db.Close()
	if len(cfg.multi.sources) > 0 {
		return runSources(ctx, cfg, db, logger, stdout, stderr)
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	err = db.PingContext(pctx)
	if err == nil {
		err = resolveSource(pctx, db, &cfg, stderr)
	}
	pcancel()
	if errors.Is(err, errSourceNeeded) {
		fmt.Fprintln(stderr, "migrate:", err)
		return cli.ExitUsage
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "migrate: downstream %s: %v\n", cfg.down, err)
		return cli.ExitFailure
	}
	if cfg.source.Name == "" {
		return 0 // stopped before the source could be named
	}
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		// The pool is the sinks' alone: their session is set up once per
		// connection.
		return mysqlsink.New(db, mysqlsink.WithExclusivePool())
	}
	opts := []dmworker.SourceWorkerOption{dmworker.WithLogger(logger), dmworker.WithStopTimeout(cfg.stop)}
	if cfg.dataDir != "" {
		opts = append(opts, dmworker.WithRelayDir(filepath.Join(cfg.dataDir, "relay")))
	}
	var reg *prometheus.Registry
	if cfg.statusAddr != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		opts = append(opts, dmworker.WithMetrics(reg))
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cl *cluster
	if len(cfg.etcd) > 0 {
		etcdClient, err := publish(ctx, cfg)
		if err != nil {
			fmt.Fprintln(stderr, "migrate:", err)
			return cli.ExitFailure
		}
		defer etcdClient.Close()
		if cl, err = joinCluster(runCtx, etcdClient, cfg, logger, reg); err != nil {
			fmt.Fprintln(stderr, "migrate:", err)
			return cli.ExitUsage
		}
		// After the worker has stopped (deferred later, so run first):
		// give up the registration and the leadership.
		defer cl.close()
		fmt.Fprintf(stderr, "migrate: worker %s joined the cluster at %s; it waits for source %s to be bound to it (key %s)\n",
			cfg.worker, strings.Join(cfg.etcd, ","), cfg.source.Name, dmworker.NewEtcdKeys(dmworker.DefaultEtcdPrefix).Bound(cfg.worker))
		opts = append(opts, dmworker.WithEtcd(etcdClient), dmworker.WithLiveness(cl.keepAlive))
		if cfg.task.ShardMode != dmworker.ShardModeOff {
			// The task's sources run in several processes: their shard
			// DDL is coordinated through etcd, whichever source the
			// coordinator binds to this worker.
			group, err := dmworker.NewEtcdShardGroup(ctx, etcdClient, dmworker.DefaultEtcdPrefix, cfg.task.Name, cfg.shardSources...)
			if err != nil {
				fmt.Fprintln(stderr, "migrate:", err)
				return cli.ExitFailure
			}
			// After the worker has stopped (deferred later, so run first).
			defer group.Close()
			opts = append(opts, dmworker.WithShardGroup(group))
		}
		if cfg.key != nil {
			opts = append(opts, dmworker.WithCredentialKey(cfg.key))
		}
	} else {
		opts = append(opts, dmworker.WithSource(cfg.source))
	}
	w, err := dmworker.NewSourceWorker(cfg.worker, sinks, opts...)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return cli.ExitUsage
	}
	if cfg.statusAddr != "" {
		stop, addr, err := serveStatus(cfg.statusAddr, dmworker.StatusHandler(w,
			dmworker.StatusHandlerConfig{Gatherer: reg, MaxLag: cfg.maxLag}))
		if err != nil {
			fmt.Fprintln(stderr, "migrate: -status-addr:", err)
			return cli.ExitFailure
		}
		defer stop()
		fmt.Fprintf(stderr, "migrate: serving http://%s/status, /healthz and /metrics\n", addr)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		// Every return path: stop the worker before the cluster parts.
		cancel()
		w.Close()
	}()
	if len(cfg.etcd) == 0 {
		if err := w.StartSubTask(cfg.task); err != nil {
			cancel()
			<-done
			fmt.Fprintln(stderr, "migrate:", err)
			return cli.ExitFailure
		}
	}

	var idleSince time.Time // when the upstream was last seen caught up and unchanged
	var lastMaster streamer.Position
	prev, prevAt := int64(0), time.Now()
	out := &progress{w: stdout, bar: cfg.progress == "bar" || (cfg.progress == "auto" && isTerminal(stdout)), start: prevAt}
	if cl != nil {
		out.prefix = "worker=" + cfg.worker + " "
	}
	standby := "" // the last standby line printed
	why := ""     // why the worker was stopped, when not by a signal
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			// The worker has stopped: its status is the subtask's final one.
			st := taskStatus(w, cfg.task.Name)
			if err != nil {
				fmt.Fprintln(stderr, "migrate:", err)
				out.final(st, "stopped by an error (see above)")
				return cli.ExitFailure
			}
			if why == "" {
				why = stopReason(ctx, cl != nil)
			}
			out.final(st, why)
			return cli.ExitOK
		case now := <-tick.C:
			st := taskStatus(w, cfg.task.Name)
			if cl != nil && st.Name == "" {
				// Not serving the task: say who does, when that changes.
				if line := cl.standbyLine(runCtx, cfg); line != standby {
					out.line(line)
					standby = line
				}
				prev, prevAt, idleSince = 0, now, time.Time{}
				continue
			}
			standby = ""
			if st.Stage == dmworker.SubTaskPaused && st.LastError != nil {
				// A command line has no resume: stop and say why (in
				// the copy of existing data as in the binlog's replay).
				cancel()
				<-done
				reportError(stderr, st.LastError)
				out.final(taskStatus(w, cfg.task.Name), "stopped by the error above")
				return cli.ExitFailure
			}
			if st.Unit == "snapshot" {
				out.snapshot(st.Snapshot, now)
				prevAt = now
				continue
			}
			if st.Stage == dmworker.SubTaskFinished {
				out.snapshot(st.Snapshot, now)
				cancel()
				<-done
				out.final(taskStatus(w, cfg.task.Name), "the copy is finished")
				return cli.ExitOK
			}
			if st.Syncer.Rows < prev {
				prev = 0 // the subtask started again (a new binding)
			}
			out.syncer(st.Syncer, st.Syncer.Rows-prev, now.Sub(prevAt))
			prev, prevAt = st.Syncer.Rows, now
			if cfg.idle <= 0 || st.Stage != dmworker.SubTaskRunning || cli.IdleHeld(ctx) {
				idleSince = time.Time{}
				continue
			}
			qctx, qcancel := context.WithTimeout(runCtx, 10*time.Second)
			up, err := streamer.QueryUpstream(qctx, cfg.up)
			qcancel()
			if err != nil {
				logger.Warn("query upstream position", slog.Any("error", err))
				idleSince = time.Time{}
				continue
			}
			master := up.Master
			cp := st.Syncer.Checkpoint
			caught := cp.Name != "" && cp.Compare(master) >= 0
			if c, ok := cp.CompareGTID(master); ok && c >= 0 {
				caught = true // the checkpoint moves at transaction ends only
			}
			switch {
			case !caught || !master.Equal(lastMaster):
				idleSince = time.Time{}
				if caught {
					idleSince = now
				}
			case idleSince.IsZero():
				idleSince = now
			case now.Sub(idleSince) >= cfg.idle:
				why = fmt.Sprintf("caught up, the upstream idle for %s", cfg.idle)
				cancel() // the subtask saves its checkpoint; Run returns nil
			}
			lastMaster = master
		}
	}
}

// precheck runs dmworker.Check on the task (-check), prints one line per
// check and returns ExitFailure when one fails.
func precheck(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	db, err := cli.OpenDB(cfg.down)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return cli.ExitFailure
	}
	defer db.Close()
	src := cfg.source
	if src.Name == "" {
		src.Name = cfg.up.Addr()
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	opts := []dmworker.CheckOption{dmworker.WithCheckDownstream(db)}
	if cfg.dataDir != "" {
		opts = append(opts, dmworker.WithCheckRelayDir(filepath.Join(cfg.dataDir, "relay")))
	}
	if err := db.PingContext(cctx); err != nil {
		fmt.Fprintf(stderr, "migrate: downstream %s: %v\n", cfg.down, err)
		return cli.ExitFailure
	}
	rs := dmworker.Check(cctx, src, cfg.task, opts...)
	counts := map[dmworker.CheckStatus]int{}
	for _, r := range rs {
		fmt.Fprintln(stdout, r)
		counts[r.Status]++
	}
	fmt.Fprintf(stdout, "check: %d passed, %d warnings, %d failed\n", counts[dmworker.CheckPass], counts[dmworker.CheckWarn], counts[dmworker.CheckFail])
	if dmworker.CheckFailed(rs) {
		return cli.ExitFailure
	}
	return cli.ExitOK
}

// taskStatus is the status of the worker's subtask (zero before it starts).
func taskStatus(w *dmworker.SourceWorker, name string) dmworker.SubTaskStatus {
	// The relay's distance to the upstream is not printed: do not ask.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, st := range w.Status(ctx).SubTasks {
		if st.Name == name {
			return st
		}
	}
	return dmworker.SubTaskStatus{}
}

// publish connects to etcd and writes the source's and the task's configs
// under the default prefix, as the host does; the coordinator binds the
// source to a worker. Each key is put only when its value differs, so that
// every process of a cluster may publish the same configs without making
// the serving worker read its state again.
func publish(ctx context.Context, cfg config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.etcd, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.etcd, ","), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fail := func(err error) (*clientv3.Client, error) {
		cli.Close()
		return nil, fmt.Errorf("etcd %s: publish source %s and task %s: %w", strings.Join(cfg.etcd, ","), cfg.source.Name, cfg.task.Name, err)
	}
	// The password is sealed with the credential key: etcd never holds it
	// in plain text.
	var sopts []dmworker.PutSourceConfigOption
	if cfg.key != nil {
		sopts = append(sopts, dmworker.WithCredentialKey(cfg.key))
	}
	if err := dmworker.PutSourceConfig(pctx, cli, cfg.source, sopts...); err != nil {
		return fail(err)
	}
	host, err := dmworker.NewEtcdHost(cli, dmworker.DefaultEtcdPrefix)
	if err != nil {
		return fail(err)
	}
	if err := host.PutSubTaskConfig(pctx, cfg.source.Name, cfg.task); err != nil {
		return fail(err)
	}
	return cli, nil
}

// cluster is what a process adds in cluster mode: the worker's
// registration and a coordinator, each run until close.
type cluster struct {
	keepAlive *dmworker.KeepAlive
	coord     *dmworker.Coordinator
	wg        sync.WaitGroup
}

// joinCluster starts a KeepAlive for the worker and a Coordinator (which
// campaigns; one process of the cluster leads), until ctx ends or close.
// With reg (-status-addr), both report their metrics into it.
func joinCluster(ctx context.Context, cli *clientv3.Client, cfg config, logger *slog.Logger, reg *prometheus.Registry) (*cluster, error) {
	kaOpts := []dmworker.KeepAliveOption{dmworker.WithKeepAliveTTL(cfg.ttl), dmworker.WithLogger(logger)}
	coOpts := []dmworker.CoordinatorOption{dmworker.WithKeepAliveTTL(cfg.ttl), dmworker.WithLogger(logger)}
	if reg != nil {
		kaOpts, coOpts = append(kaOpts, dmworker.WithMetrics(reg)), append(coOpts, dmworker.WithMetrics(reg))
	}
	ka, err := dmworker.NewKeepAlive(cli, cfg.worker, kaOpts...)
	if err != nil {
		return nil, err
	}
	coord, err := dmworker.NewCoordinator(cli, coOpts...)
	if err != nil {
		return nil, err
	}
	c := &cluster{keepAlive: ka, coord: coord}
	c.wg.Add(2)
	go func() { defer c.wg.Done(); _ = ka.Run(ctx) }()    // only fails on a second Run or after Close
	go func() { defer c.wg.Done(); _ = coord.Run(ctx) }() // likewise
	return c, nil
}

// close gives up the registration and the leadership (both revoked at once)
// and waits for them.
func (c *cluster) close() {
	c.keepAlive.Close()
	c.coord.Close()
	c.wg.Wait()
}

// standbyLine says what a worker not serving the task sees.
func (c *cluster) standbyLine(ctx context.Context, cfg config) string {
	lead := ""
	if l, _ := c.coord.Leading(); l {
		lead = ", coordinating"
	}
	if !c.keepAlive.Status().Alive {
		return "standby: not registered (yet)" + lead
	}
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	bs, err := c.coord.Bindings(bctx)
	if err != nil {
		return "standby: bindings unknown (etcd: " + err.Error() + ")" + lead
	}
	if b, ok := bs[cfg.source.Name]; ok {
		return fmt.Sprintf("standby: source %s served by worker %s (epoch %d)%s", b.Source, b.Worker, b.Epoch, lead)
	}
	return fmt.Sprintf("standby: source %s not bound yet%s", cfg.source.Name, lead)
}

// stopReason says, for the last line, why ctx ended and where to resume.
func stopReason(ctx context.Context, cluster bool) string {
	what := "stopped"
	var s cli.StopSignal
	if errors.As(context.Cause(ctx), &s) {
		switch s.Sig {
		case os.Interrupt:
			what = "interrupted (SIGINT)"
		case syscall.SIGTERM:
			what = "terminated (SIGTERM)"
		default:
			what = s.Error()
		}
	}
	if cluster {
		return what + ": another worker of the cluster takes the task over from this checkpoint, or run the same command again to continue from it"
	}
	return what + ": run the same command again to continue from this checkpoint"
}

// reportError prints the error that stopped replication, with the position
// and the whole statement it stopped on, and what to check or do about it:
// for an upstream that cannot be reached or refuses the login, the flag to
// fix; for a statement the syncer cannot take, how to get past it.
func reportError(w io.Writer, err error) {
	fmt.Fprintln(w, "migrate:", err)
	switch {
	case errors.Is(err, streamer.ErrUnreachable):
		fmt.Fprintln(w, "migrate: the upstream cannot be reached: check the host and port of -from, and that the server is up")
	case errors.Is(err, streamer.ErrAccessDenied):
		fmt.Fprintln(w, "migrate: the upstream refused the login: check the user and password of -from")
	case errors.Is(err, streamer.ErrUnknownHost):
		fmt.Fprintln(w, "migrate: the upstream's host name does not resolve: check the host of -from")
	}
	var se *dmworker.SyncError
	var sn *dmworker.SnapshotError
	switch {
	case errors.As(err, &se) && errors.Is(err, dmworker.ErrUnsupportedDDL):
		if se.Start.IsZero() {
			// Not an event: a definition read from the upstream.
			fmt.Fprintf(w, "migrate: replication stopped at %s on the statement:\n\t%s\n", se.Pos, indent(se.Statement))
			break
		}
		fmt.Fprintf(w, "migrate: replication stopped on the statement:\n\t%s\n", indent(se.Statement))
		fmt.Fprintf(w, "migrate: it starts at %s:%d and ends at %s:%d.\n", se.Start.Name, se.Start.Offset, se.Pos.Name, se.Pos.Offset)
		fmt.Fprintln(w, "migrate: this tool has no skip flag yet; to go past the statement, apply the change downstream")
		fmt.Fprintln(w, "migrate: by hand and call Syncer.Skip (or Syncer.Replace) with either position from a program of your own,")
		fmt.Fprintf(w, "migrate: or start a new task (-task) with -start %s:%d (after it); -start %s:%d runs it again.\n",
			se.Pos.Name, se.Pos.Offset, se.Start.Name, se.Start.Offset)
		return
	case errors.As(err, &sn) && sn.Statement != "":
		fmt.Fprintf(w, "migrate: the copy stopped at %s on the statement:\n\t%s\n", sn.Pos, indent(sn.Statement))
	default:
		return
	}
	if !errors.Is(err, dmworker.ErrUnsupportedDDL) {
		return
	}
	fmt.Fprintln(w, "migrate: to go past it: a table's definition read from the upstream (SHOW CREATE TABLE) can be left out (-tables) or changed")
	fmt.Fprintln(w, "migrate: upstream; a DDL from the binlog: this tool has no skip flag yet, so apply the change downstream by hand and")
	fmt.Fprintln(w, "migrate: call Syncer.Skip (or Syncer.Replace) with that position from a program of your own, or start a new task")
	fmt.Fprintln(w, "migrate: (-task) with -start after that position.")
}

// indent indents the lines of a statement after the first by a tab.
func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n\t") }

// serveStatus serves h on addr until stop is called; addr is where it
// listens (the port chosen when addr's is 0).
func serveStatus(addr string, h http.Handler) (stop func(), at string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed on Shutdown
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, ln.Addr().String(), nil
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func parseArgs(args []string, stderr io.Writer) (config, error) {
	fs := cli.NewFlagSet("migrate", stderr)
	var routes listFlag
	var (
		from      = cli.Server(fs, "from", "upstream", "required", envFromPassword)
		to        = cli.Server(fs, "to", "downstream", "required", envToPassword)
		keyFile   = fs.String("credential-key-file", "", "with -etcd: `FILE` holding the key (base64 of 16, 24 or 32 bytes, e.g. from: openssl rand -base64 32) that seals the upstream's password in etcd; default $"+envCredentialKey)
		stopAfter = fs.Duration("stop-timeout", dmworker.DefaultStopTimeout, "on SIGINT or SIGTERM, the longest the last batch, checkpoint and status report may take before they are abandoned")
		mode      = fs.String("mode", "incremental", "incremental, full or all (full and all need the snapshot unit)")
		dataDir   = fs.String("data-dir", "", "directory for the relay log and local state; relay is on when given")
		etcd      = fs.String("etcd", "", "comma-separated etcd endpoints: run as a worker of a cluster coordinated through etcd")
		ttl       = fs.Duration("keepalive-ttl", dmworker.DefaultKeepAliveTTL, "with -etcd: TTL of the worker's registration and of the coordinator's leadership (whole seconds)")
		worker    = fs.String("worker", "", "worker name (default: the host name)")
		task      = fs.String("task", "migrate", "task name; keys the checkpoint")
		source    = fs.String("source", "", "source name; keys the checkpoint with -task (default: the name the task's checkpoint has, else the upstream's host:port)")
		start     = fs.String("start", "", "where a task with no checkpoint starts, FILE:POS")
		startGTID = fs.String("start-gtid", "", "where a task with no checkpoint starts, after this GTID set")
		tables    = fs.String("tables", "", "comma-separated db.table patterns to replicate (default all)")
		workers   = fs.Int("workers", 0, "apply workers (1: serial, each batch with its checkpoint; 0: the library's default, 2 x GOMAXPROCS between 4 and 16)")
		batch     = fs.Int("batch", 0, "row changes per sink call at most (0: the library's default, 256)")
		compact   = fs.Bool("compact", true, "merge several changes to one row within a batch (tables with a primary key and no other unique key); -compact=false turns it off")
		serverID  = fs.Uint("server-id", 0, "replica server id this worker reads the upstream's binlog as (0: pick a free one)")
		check     = fs.Bool("check", false, "run the prechecks of the task on the upstream and the downstream, print them and exit (1 when one fails)")
		onlineDDL = fs.Bool("online-ddl", true, "replicate online schema changes (gh-ost, pt-online-schema-change) as the ALTER they make, at their cut-over, and never the tools' tables")
		idle      = fs.Duration("exit-when-idle", 0, "exit once caught up and the upstream idle for this long (0: never)")
		status    = fs.String("status-addr", "", "serve /status, /healthz and /metrics over HTTP on `ADDR`, e.g. 127.0.0.1:8261 (default: not served)")
		maxLag    = fs.Duration("health-max-lag", 0, "with -status-addr: /healthz answers 503 while the replication lag passes this (0: no limit)")
		progress  = fs.String("progress", "auto", "how the copy's progress shows: bar (rewritten in place), plain (a line a second) or auto (bar on a terminal)")
		taskFile  = fs.String("config", "", "DM task file (YAML) `FILE`: task name and mode, downstream, filters, routes, syncer settings; flags override it")
		srcFile   = fs.String("source-config", "", "DM source file (YAML) `FILE`: source-id, the upstream (from), relay settings; flags override it")
	)
	fromAll, shardMode := sourcesFlags(fs, from)
	fs.Var(&routes, "route", "route rules 'src.t_*:dst.t' or 'src_*:dst', comma-separated; repeatable")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, args); err != nil {
		return config{}, err
	}
	set := cli.Set(fs)

	var cfg config
	// The files first; what the command line sets overrides them.
	var fileTask *dmworker.SubTaskConfig
	var fileTasks []dmworker.SubTaskConfig // every mysql-instance's, for -from NAME=... (sources.go)
	var fileSource *dmworker.SourceConfig
	if *srcFile != "" {
		src, err := readDMFile(*srcFile, stderr, dmworker.ParseDMSource, func(s dmworker.SourceConfig) bool { return s.Upstream.Password != "" })
		if err != nil {
			return cfg, fmt.Errorf("-source-config: %w", err)
		}
		fileSource = &src
		if !from.Given() {
			*from.Addr = serverAddr(src.Upstream)
		}
	}
	if *taskFile != "" {
		dt, err := readDMFile(*taskFile, stderr, dmworker.ParseDMTask, func(t dmworker.DMTask) bool { return t.Target.Password != "" })
		if err != nil {
			return cfg, fmt.Errorf("-config: %w", err)
		}
		name := *source
		if name == "" && fileSource != nil {
			name = fileSource.Name
		}
		if name == "" {
			name = fromAll.firstName()
		}
		fileTasks = dt.SubTasks
		st, err := dt.SubTask(name)
		if err != nil {
			return cfg, fmt.Errorf("-config %s: %w (-source or the source file's source-id names it)", *taskFile, err)
		}
		fileTask = &st
		if !to.Given() {
			*to.Addr = serverAddr(dt.Target)
		}
	}
	switch {
	case !from.Given() || !to.Given():
		return cfg, errors.New("-from and -to user:password@host:port are required (or a -source-config and a -config naming them)")
	case set["mode"] && *mode != "incremental" && *mode != "full" && *mode != "all":
		return cfg, fmt.Errorf("-mode %q: want incremental, full or all", *mode)
	case fileTask == nil && *mode != "incremental" && *mode != "full" && *mode != "all":
		return cfg, fmt.Errorf("-mode %q: want incremental, full or all", *mode)
	case *workers < 0 || *workers > 1024:
		return cfg, fmt.Errorf("-workers %d: must be between 1 and 1024 (0: the library's default)", *workers)
	case *batch < 0:
		return cfg, fmt.Errorf("-batch %d: must not be negative", *batch)
	case *serverID > math.MaxUint32:
		return cfg, fmt.Errorf("-server-id %d: must fit 32 bits", *serverID)
	case set["start"] && set["start-gtid"]:
		return cfg, errors.New("give -start or -start-gtid, not both")
	case *progress != "auto" && *progress != "bar" && *progress != "plain":
		return cfg, fmt.Errorf("-progress %q: want auto, bar or plain", *progress)
	case *ttl < time.Second || *ttl%time.Second != 0:
		return cfg, fmt.Errorf("-keepalive-ttl %s: want a whole number of seconds, at least 1s", *ttl)
	case *idle < 0:
		return cfg, errors.New("-exit-when-idle must not be negative")
	case *stopAfter <= 0:
		return cfg, errors.New("-stop-timeout must be positive")
	case *task == "":
		return cfg, errors.New("-task must not be empty")
	case strings.Contains(*source, "/"):
		return cfg, fmt.Errorf("-source %q: no '/' allowed", *source)
	}
	var err error
	if cfg.up, err = from.Config(); err != nil {
		return cfg, fmt.Errorf("-from: %w", err)
	}
	if cfg.down, err = to.Config(); err != nil {
		return cfg, fmt.Errorf("-to: %w", err)
	}
	if fileSource != nil {
		cfg.up.Flavor, cfg.up.ServerID = fileSource.Upstream.Flavor, fileSource.Upstream.ServerID
	}
	if set["server-id"] || fileSource == nil {
		cfg.up.ServerID = uint32(*serverID)
	}
	cfg.idle = *idle
	if *maxLag < 0 {
		return cfg, errors.New("-health-max-lag must not be negative")
	}
	cfg.statusAddr, cfg.maxLag = *status, *maxLag
	cfg.check = *check
	cfg.progress = *progress
	cfg.stop = *stopAfter
	cfg.ttl = *ttl
	cfg.dataDir = *dataDir
	cfg.worker = *worker
	if cfg.worker == "" {
		if cfg.worker, err = os.Hostname(); err != nil || cfg.worker == "" {
			cfg.worker = "migrate"
		}
		cfg.worker = strings.ReplaceAll(cfg.worker, "/", "_")
	}
	if strings.Contains(cfg.worker, "/") {
		return cfg, fmt.Errorf("-worker %q: no '/' allowed", cfg.worker)
	}
	cfg.etcd = cli.List(*etcd)
	if len(cfg.etcd) > 0 {
		if cfg.key, err = credentialKey(*keyFile, cfg.up.Password != ""); err != nil {
			return cfg, err
		}
	}
	sc := dmworker.SubTaskConfig{Name: *task, Mode: dmworker.Mode(*mode), SyncerTuning: dmworker.SyncerTuning{
		Workers: *workers, BatchSize: *batch, Compact: *compact, NoCompact: !*compact}, OnlineDDLConfig: dmworker.OnlineDDLConfig{OnlineDDL: onlineDDL}}
	if fileTask != nil {
		// The file's task; each flag given overrides its part.
		sc = *fileTask
		over := func(flag string, apply func()) {
			if set[flag] {
				apply()
			}
		}
		over("task", func() { sc.Name = *task })
		over("mode", func() { sc.Mode = dmworker.Mode(*mode) })
		over("workers", func() { sc.Workers = *workers })
		over("batch", func() { sc.BatchSize = *batch })
		over("compact", func() { sc.Compact, sc.NoCompact = *compact, !*compact })
		over("online-ddl", func() { sc.OnlineDDL = onlineDDL })
		if set["start"] || set["start-gtid"] {
			sc.Start = streamer.Position{}
		}
		if set["tables"] {
			sc.Filter = dmworker.BlockAllowList{CaseSensitive: sc.Filter.CaseSensitive}
		}
		if len(routes) > 0 {
			sc.Routes = nil
		}
	}
	switch {
	case set["start"]:
		if sc.Start, err = streamer.ParsePosition(*start); err != nil {
			return cfg, fmt.Errorf("-start: %w", err)
		}
	case set["start-gtid"]:
		if sc.Start, err = parseGTIDStart(*startGTID); err != nil {
			return cfg, fmt.Errorf("-start-gtid: %w", err)
		}
	}
	if fileTask == nil || set["tables"] {
		if sc.Filter.DoTables, err = cli.TablePatterns(*tables); err != nil {
			return cfg, fmt.Errorf("-tables: %w", err)
		}
	}
	for _, r := range routes {
		rs, err := cli.Routes(r)
		if err != nil {
			return cfg, fmt.Errorf("-route: %w", err)
		}
		sc.Routes = append(sc.Routes, rs...)
	}
	// An empty name is resolved once the downstream is reached.
	cfg.source = dmworker.SourceConfig{Name: *source, Upstream: cfg.up, EnableRelay: cfg.dataDir != ""}
	if fileSource != nil {
		// The source file's relay settings; the upstream is cfg.up (the
		// file's, or -from's).
		src := *fileSource
		src.Upstream, src.EnableRelay = cfg.up, src.EnableRelay || cfg.dataDir != ""
		if *source != "" {
			src.Name = *source
		}
		if src.EnableRelay && cfg.dataDir == "" && !filepath.IsAbs(src.RelayDir) {
			return cfg, fmt.Errorf("-source-config %s: enable-relay needs -data-dir (or an absolute relay-dir)", *srcFile)
		}
		cfg.source = src
	}
	if cfg.source.Name == "" && sc.Source != "" {
		cfg.source.Name = sc.Source // the task file's source-id
	}
	sc.Source = "" // the worker's source, named above
	if strings.Contains(cfg.source.Name, "/") {
		return cfg, fmt.Errorf("source %q: no '/' allowed", cfg.source.Name)
	}
	cfg.task = sc
	if cfg.multi, err = fromAll.parse(*shardMode, set, fileTasks, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// serverAddr writes a server of a DM file as -from and -to take it,
// user[:password]@host:port, so that the password options and their
// checks apply as to the flags.
func serverAddr(c streamer.UpstreamConfig) string {
	user := c.User
	if c.Password != "" {
		user += ":" + c.Password
	}
	return user + "@" + net.JoinHostPort(c.Host, fmt.Sprint(c.Port))
}

// readDMFile reads and parses a DM task or source file, warning on stderr
// when it holds a password (hasPassword) and others than its owner may read
// it.
func readDMFile[T any](name string, stderr io.Writer, parse func([]byte) (T, error), hasPassword func(T) bool) (T, error) {
	var zero T
	data, err := os.ReadFile(name)
	if err != nil {
		return zero, err
	}
	v, err := parse(data)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	if hasPassword(v) {
		if fi, err := os.Stat(name); err == nil && fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(stderr, "migrate: warning: %s holds a password in plain text and is readable by others (mode %04o): chmod 600 it, or give the password with a password file or the environment\n",
				name, fi.Mode().Perm())
		}
	}
	return v, nil
}

// usageText is -h's text before the flags.
const usageText = `migrate replicates a MySQL or MariaDB server's row changes and DDL into
another MySQL-compatible server, as PingCAP DM's worker does: it copies
the existing data at one consistent point (-mode full or all), then
applies the binlog in parallel (-workers), keeping its checkpoint in the
downstream so that a new run continues where the last one stopped. With
-data-dir it keeps a relay log; with -etcd it is one worker of a cluster
that fails over. It reads DM's task and source files (-config,
-source-config).

Usage:
  migrate -from USER@HOST:PORT -to USER@HOST:PORT [flags]
  migrate -config task.yaml [-source-config source.yaml] [flags]
  migrate -from A=USER@HOST:PORT -from B=USER@HOST:PORT ... -to USER@HOST:PORT [-shard-mode pessimistic] [flags]

Examples:
  # check the upstream, the downstream and the task before starting
  migrate -from repl@db1:3306 -to root@tidb:4000 -tables 'shop.*' -check
  # copy shop.* and replicate from that point, 16 apply workers
  DMWORKER_FROM_PASSWORD=... DMWORKER_TO_PASSWORD=... \
    migrate -from repl@db1:3306 -to root@tidb:4000 -mode all -tables 'shop.*' -workers 16
  # a DM task file; the downstream given on the command line
  migrate -config task.yaml -source-config source.yaml -to root@127.0.0.1:4000
  # a worker of a cluster, with a relay log
  migrate -from repl@db1:3306 -to root@tidb:4000 -data-dir /var/lib/migrate \
    -etcd 10.0.0.1:2379 -worker a -credential-key-file key

Passwords: -from-password-file/-to-password-file or $DMWORKER_FROM_PASSWORD
and $DMWORKER_TO_PASSWORD rather than on the command line. Exit status: 0
done or stopped by a signal, 1 an error (or a failed -check), 2 bad flags.

Flags:
`

// The environment variables that may hold the secrets.
const (
	envFromPassword  = "DMWORKER_FROM_PASSWORD"
	envToPassword    = "DMWORKER_TO_PASSWORD"
	envCredentialKey = "DMWORKER_CREDENTIAL_KEY"
)

// credentialKey reads the key that seals the upstream's password in etcd:
// base64 text in file, else in $DMWORKER_CREDENTIAL_KEY. It is required
// when there is a password to seal.
func credentialKey(file string, needed bool) ([]byte, error) {
	text, from := os.Getenv(envCredentialKey), "$"+envCredentialKey
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-credential-key-file: %w", err)
		}
		text, from = string(b), file
	}
	text = strings.TrimSpace(text)
	if text == "" {
		if needed {
			return nil, fmt.Errorf("-etcd: the upstream's password is stored in etcd sealed with a key: give -credential-key-file FILE or $%s "+
				"(base64 of 32 random bytes, e.g. from `openssl rand -base64 32`; the same for every worker of the cluster)", envCredentialKey)
		}
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("credential key in %s: not base64: %w", from, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("credential key in %s: %d bytes, want 16, 24 or 32", from, n)
	}
	return key, nil
}

// errSourceNeeded means the task has checkpoints of several sources and no
// -source says which one to run.
var errSourceNeeded = errors.New("-source is needed")

// resolveSource names the source when -source is not given: the name the
// task's checkpoint in the downstream has (stored there by the first run),
// else the upstream's address. Several candidates are errSourceNeeded.
// When -source is given and the task's only checkpoint is stored under a
// default name (a host:port), it is taken over under the given name.
func resolveSource(ctx context.Context, db *sql.DB, cfg *config, stderr io.Writer) error {
	sink, err := mysqlsink.New(db)
	if err != nil {
		return err
	}
	sources, err := sink.CheckpointSources(ctx, cfg.task.Name)
	if err != nil {
		return err
	}
	if name := cfg.source.Name; name != "" {
		if len(sources) == 1 && sources[0] != name && isAddress(sources[0]) {
			if _, err := sink.MoveCheckpoint(ctx, cfg.task.Name, sources[0], name); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "migrate: task %s: the checkpoint stored under the default source name %s is source %s's now\n",
				cfg.task.Name, sources[0], name)
		}
		return nil
	}
	switch {
	case len(sources) > 1:
		return fmt.Errorf("%w: task %s has checkpoints of sources %s in the downstream", errSourceNeeded, cfg.task.Name, strings.Join(sources, ", "))
	case len(sources) == 1:
		cfg.source.Name = sources[0]
	default:
		cfg.source.Name = cfg.up.Addr()
	}
	return nil
}

// isAddress reports whether a source name is a default one, host:port.
func isAddress(name string) bool {
	_, port, err := net.SplitHostPort(name)
	return err == nil && port != ""
}

// parseGTIDStart reads a GTID set whose flavour is inferred from its text.
func parseGTIDStart(s string) (streamer.Position, error) {
	s = strings.TrimSpace(s)
	f := streamer.FlavorMariaDB
	switch {
	case s == "":
		return streamer.Position{}, errors.New("empty GTID set: cannot tell its flavour")
	case strings.Contains(s, ":"):
		f = streamer.FlavorMySQL
	}
	gs, err := streamer.NewGTIDSet(f, s)
	if err != nil {
		return streamer.Position{}, err
	}
	return streamer.Position{Flavor: f, GTIDSet: gs}, nil
}
