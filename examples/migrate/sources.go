package main

// Several upstreams in one process: -from NAME=user:pass@host:port, given
// once per source, runs one SourceWorker per source (direct mode, no etcd),
// each with the task's subtask, all writing into the one downstream; routes
// merge their shard tables. -shard-mode pessimistic or optimistic
// coordinates the shards' DDL with one dmworker.ShardGroup.

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/mysqlsink"
	"github.com/dmworker/dmworker/streamer"
)

// multiSource is the sources of -from NAME=... and -shard-mode.
type multiSource struct {
	sources   []dmworker.SourceConfig
	tasks     map[string]dmworker.SubTaskConfig // by source
	shardMode dmworker.ShardMode
}

// fromFlag is -from, repeatable: each value is user:pass@host:port (the
// single-source form, given once) or NAME=user:pass@host:port.
type fromFlag struct {
	addr   *string // cli.Server's: the last value's address
	pwFile *string // -from-password-file, single source only
	values []string
	// shardSources is -shard-sources: with -etcd, the task's sources.
	shardSources *string
}

func (f *fromFlag) String() string {
	if f == nil || f.addr == nil {
		return ""
	}
	return *f.addr
}

func (f *fromFlag) Set(s string) error {
	f.values = append(f.values, s)
	if name, addr, ok := cutSourceName(s); ok && name != "" {
		s = addr
	}
	*f.addr = s
	return nil
}

// cutSourceName splits NAME=ADDR; ok is false when s has no NAME= (an '='
// after the '@' or none at all).
func cutSourceName(s string) (name, addr string, ok bool) {
	i := strings.IndexByte(s, '=')
	if i < 0 || strings.Contains(s[:i], "@") || strings.Contains(s[:i], ":") {
		return "", s, false
	}
	return s[:i], s[i+1:], true
}

// firstName is the first -from's NAME, "" when it has none.
func (f *fromFlag) firstName() string {
	if len(f.values) == 0 {
		return ""
	}
	name, _, _ := cutSourceName(f.values[0])
	return name
}

// sourcesFlags makes -from repeatable and adds -shard-mode and
// -shard-sources.
func sourcesFlags(fs *flag.FlagSet, from *cli.ServerFlags) (*fromFlag, *string) {
	f := &fromFlag{addr: from.Addr, pwFile: from.PasswordFile}
	fl := fs.Lookup("from")
	fl.Value = f
	fl.Usage = "upstream as user[:password]@host:port (required), or NAME=user[:password]@host:port once per source to merge several upstreams"
	mode := fs.String("shard-mode", "", "with several -from NAME=..., or with -etcd and -shard-sources: pessimistic or optimistic coordinates the shard tables' DDL across the sources (default off)")
	f.shardSources = fs.String("shard-sources", "", "with -etcd and -shard-mode: the task's sources (comma-separated -source names of every process of the task, this one's among them), coordinated through etcd")
	return f, mode
}

// parse reads the sources of -from NAME=...; none when -from was given once
// without a name. Each source's subtask is cfg.task, or, with a task file
// (-config), the file's mysql-instance of that source-id with the flags
// given (in set) overriding it as they override cfg.task.
func (f *fromFlag) parse(mode string, set map[string]bool, fileTasks []dmworker.SubTaskConfig, cfg *config) (multiSource, error) {
	var m multiSource
	named := 0
	for _, v := range f.values {
		if _, _, ok := cutSourceName(v); ok {
			named++
		}
	}
	if named == 0 {
		if len(f.values) > 1 {
			return m, errors.New("-from: several upstreams need a name each: -from NAME=user:password@host:port")
		}
		if len(cfg.etcd) > 0 && (mode != "" || *f.shardSources != "") {
			return m, f.parseEtcdShards(mode, cfg)
		}
		if *f.shardSources != "" {
			return m, errors.New("-shard-sources is for -etcd (each process one source): with one process, give each source as -from NAME=...")
		}
		if mode != "" {
			return m, errors.New("-shard-mode needs several -from NAME=user:password@host:port, or -etcd with -shard-sources")
		}
		return m, nil
	}
	switch {
	case named != len(f.values):
		return m, errors.New("-from: give every upstream as NAME=user:password@host:port, or one upstream without a name")
	case *f.pwFile != "":
		return m, errors.New("-from NAME=...: -from-password-file is for one upstream: give each password in its -from or $" + envFromPassword)
	case len(cfg.etcd) > 0:
		return m, errors.New("-from NAME=...: several upstreams run in one process without etcd: leave out -etcd")
	case cfg.statusAddr != "":
		return m, errors.New("-from NAME=...: -status-addr serves one source's worker: not with several upstreams yet")
	case set["source"] || set["source-config"]:
		return m, errors.New("-from NAME=...: the sources are the NAMEs: leave out -source and -source-config")
	}
	if mode != "" {
		cfg.task.ShardMode = dmworker.ShardMode(mode)
	}
	m.shardMode = cfg.task.ShardMode
	m.tasks = map[string]dmworker.SubTaskConfig{}
	for _, v := range f.values {
		name, addr, _ := cutSourceName(v)
		if name == "" || strings.Contains(name, "/") {
			return m, fmt.Errorf("-from %q: the source name must be non-empty and hold no '/'", name)
		}
		for _, s := range m.sources {
			if s.Name == name {
				return m, fmt.Errorf("-from: source %s given twice", name)
			}
		}
		up, err := streamer.ParseUpstreamFlags(addr, "", envFromPassword)
		if err != nil {
			return m, fmt.Errorf("-from %s: %w", name, err)
		}
		up.ServerID = cfg.up.ServerID
		m.sources = append(m.sources, dmworker.SourceConfig{Name: name, Upstream: up, EnableRelay: cfg.dataDir != ""})
		task := cfg.task
		if fileTasks != nil {
			i := slices.IndexFunc(fileTasks, func(t dmworker.SubTaskConfig) bool { return t.Source == name })
			if i < 0 {
				return m, fmt.Errorf("-from %s: the task file has no mysql-instance with source-id %s", name, name)
			}
			task = fileTasks[i]
			task.Name, task.Mode, task.ShardMode = cfg.task.Name, cfg.task.Mode, cfg.task.ShardMode
			over := func(flag string, apply func()) {
				if set[flag] {
					apply()
				}
			}
			over("workers", func() { task.Workers = cfg.task.Workers })
			over("batch", func() { task.BatchSize = cfg.task.BatchSize })
			over("compact", func() { task.Compact, task.NoCompact = cfg.task.Compact, cfg.task.NoCompact })
			over("start", func() { task.Start = cfg.task.Start })
			over("start-gtid", func() { task.Start = cfg.task.Start })
			over("tables", func() { task.Filter = cfg.task.Filter })
			over("route", func() { task.Routes = cfg.task.Routes })
		}
		task.Source = name
		m.tasks[name] = task
	}
	for _, t := range fileTasks {
		if _, ok := m.tasks[t.Source]; !ok {
			return m, fmt.Errorf("the task file's mysql-instance %s has no -from %s=user:password@host:port", t.Source, t.Source)
		}
	}
	return m, nil
}

// parseEtcdShards reads -shard-mode and -shard-sources in cluster mode
// (-etcd): the task's sources run in several processes, each one source,
// and their shard DDL is coordinated through etcd (cfg.shardSources).
func (f *fromFlag) parseEtcdShards(mode string, cfg *config) error {
	if mode == "" || *f.shardSources == "" {
		return errors.New("-etcd: -shard-mode and -shard-sources go together: the mode, and every source of the task (comma-separated -source names)")
	}
	cfg.task.ShardMode = dmworker.ShardMode(mode)
	cfg.shardSources = cli.List(*f.shardSources)
	if !slices.Contains(cfg.shardSources, cfg.source.Name) {
		return fmt.Errorf("-shard-sources %s: this process's source %s is not among them", strings.Join(cfg.shardSources, ","), cfg.source.Name)
	}
	return nil
}

// runSources runs the task over several sources, one SourceWorker each,
// until ctx ends, every upstream has been idle for -exit-when-idle, the
// copy is finished (mode full), or an error stops a subtask (then all).
func runSources(ctx context.Context, cfg config, db *sql.DB, logger *slog.Logger, stdout, stderr io.Writer) int {
	m := cfg.multi
	sinks := func(context.Context, dmworker.SourceConfig, dmworker.SubTaskConfig) (dmworker.Sink, error) {
		return mysqlsink.New(db, mysqlsink.WithExclusivePool())
	}
	var group *dmworker.ShardGroup
	if m.shardMode != dmworker.ShardModeOff {
		names := make([]string, len(m.sources))
		for i, s := range m.sources {
			names[i] = s.Name
		}
		var err error
		if group, err = dmworker.NewShardGroup(cfg.task.Name, names...); err != nil {
			fmt.Fprintln(stderr, "migrate:", err)
			return cli.ExitUsage
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type running struct {
		src  dmworker.SourceConfig
		w    *dmworker.SourceWorker
		done chan error
		prev int64
		out  *progress
		// master is the upstream's position at the last tick: a source
		// whose position moved is not idle, even if its checkpoint caught
		// up within the tick.
		master streamer.Position
	}
	var ws []*running
	defer func() {
		cancel()
		for _, r := range ws {
			r.w.Close()
		}
	}()
	for _, src := range m.sources {
		opts := []dmworker.SourceWorkerOption{dmworker.WithLogger(logger), dmworker.WithStopTimeout(cfg.stop), dmworker.WithSource(src)}
		if cfg.dataDir != "" {
			opts = append(opts, dmworker.WithRelayDir(filepath.Join(cfg.dataDir, "relay")))
		}
		if group != nil {
			opts = append(opts, dmworker.WithShardGroup(group))
		}
		w, err := dmworker.NewSourceWorker(cfg.worker+"-"+src.Name, sinks, opts...)
		if err == nil {
			err = w.StartSubTask(m.tasks[src.Name])
		}
		if err != nil {
			fmt.Fprintf(stderr, "migrate: source %s: %v\n", src.Name, err)
			return cli.ExitUsage
		}
		r := &running{src: src, w: w, done: make(chan error, 1), out: &progress{w: stdout, prefix: "source=" + src.Name + " ", start: time.Now()}}
		go func() { r.done <- w.Run(runCtx) }()
		ws = append(ws, r)
	}
	// stopAll stops every worker and prints each one's last line.
	stopAll := func(why string, code int) int {
		cancel()
		for _, r := range ws {
			if err := <-r.done; err != nil {
				fmt.Fprintf(stderr, "migrate: source %s: %v\n", r.src.Name, err)
				code = cli.ExitFailure
			}
			r.out.final(taskStatus(r.w, cfg.task.Name), why)
		}
		return code
	}
	idleSince := time.Time{}
	prevAt := time.Now()
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return stopAll(stopReason(ctx, false), cli.ExitOK)
		case now := <-tick.C:
			finished, caught := 0, 0
			for _, r := range ws {
				st := taskStatus(r.w, cfg.task.Name)
				switch {
				case st.Stage == dmworker.SubTaskPaused && st.LastError != nil:
					reportError(stderr, st.LastError)
					return stopAll("stopped by the error above", cli.ExitFailure)
				case st.Stage == dmworker.SubTaskFinished:
					finished++
					continue
				case st.Unit == "snapshot":
					r.out.snapshot(st.Snapshot, now)
					continue
				}
				r.out.syncer(st.Syncer, st.Syncer.Rows-r.prev, now.Sub(prevAt))
				r.prev = st.Syncer.Rows
				if cfg.idle > 0 && st.Stage == dmworker.SubTaskRunning {
					ok, master := caughtUp(runCtx, r.src.Upstream, st.Syncer.Checkpoint)
					if ok && master.Equal(r.master) {
						caught++
					}
					r.master = master
				}
			}
			if group != nil {
				for _, l := range group.Status() {
					fmt.Fprintf(stdout, "shard lock %s: %q since %s, waiting for %s\n", l.Target, l.Statement, l.Since.Format(time.TimeOnly), strings.Join(l.Waiting, ","))
				}
			}
			prevAt = now
			switch {
			case finished == len(ws):
				return stopAll("the copy is finished", cli.ExitOK)
			case cfg.idle <= 0 || caught < len(ws) || cli.IdleHeld(ctx):
				idleSince = time.Time{}
			case idleSince.IsZero():
				idleSince = now
			case now.Sub(idleSince) >= cfg.idle:
				return stopAll(fmt.Sprintf("caught up, the upstreams idle for %s", cfg.idle), cli.ExitOK)
			}
		}
	}
}

// caughtUp reports whether cp has reached up's current position, which it
// returns (zero when it cannot be read).
func caughtUp(ctx context.Context, up streamer.UpstreamConfig, cp streamer.Position) (bool, streamer.Position) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := streamer.QueryUpstream(qctx, up)
	if err != nil {
		return false, streamer.Position{}
	}
	if c, ok := cp.CompareGTID(st.Master); ok {
		return c >= 0, st.Master
	}
	return cp.Name != "" && cp.Compare(st.Master) >= 0, st.Master
}
