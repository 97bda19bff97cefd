package dmworker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/dmworker/dmworker/streamer"
)

// Checkpoints are keyed by task and source name, the name the host gives
// (SourceConfig.Name, SubTaskConfig.Source, SyncerConfig.Source), never by
// the address the upstream is reached through: a proxy, a virtual IP after
// a failover or a new DNS name reaches the same checkpoint. Before names
// were given, the name defaulted to the upstream's "host:port"; such
// checkpoints are taken over (loadCheckpoint) the first time a task runs
// under a name through that address. Whether a stored checkpoint is a place
// in the binlog of the server now reached is checked when the syncer starts
// (checkLineage).

// ErrCheckpointLineage means that the stored checkpoint cannot be a place in
// the binlog of the upstream server the task reaches now, so that resuming
// there would skip or repeat changes: the checkpoint was taken on another
// server (Checkpoint.Server) and has no GTID set this server has executed
// to find its place by; or its binlog file is not one this server has or
// had (a newer file, another base name, an offset past the file's end)
// while its GTIDs are not all executed here either; or this server has not
// executed the checkpoint's GTIDs (a binlog reset, a restore from an older
// backup, a lagging replica). The syncer refuses to start rather than
// start anywhere else; the error (a *SyncError) names the checkpoint, the
// two servers and the reason. A switch to another server that has executed
// every GTID of the checkpoint (a replica of the same primary, promoted) is
// not an error: the syncer continues from the checkpoint's GTID set.
var ErrCheckpointLineage = errors.New("dmworker: the checkpoint is not a position of this upstream server")

// CheckpointMover is a CheckpointStore, or a CheckpointSink, that can give a
// stored checkpoint another source name in one atomic step; the in-memory
// and etcd stores and mysqlsink implement it. MoveCheckpoint stores the
// checkpoint of task and from under task and to (its Source then to) and
// removes it under from; it reports false, changing nothing, when from holds
// no checkpoint or to holds one already.
//
// The syncer and SubTask use it to take over a checkpoint stored under the
// upstream's address ("host:port", the default source name before names
// were given) when the task's source, named otherwise, has none. Without
// it they save a copy under the new name and leave the old one.
type CheckpointMover interface {
	MoveCheckpoint(ctx context.Context, task, from, to string) (bool, error)
}

// moverOf returns the CheckpointMover behind store, nil when none.
func moverOf(store CheckpointStore) CheckpointMover {
	if ss, ok := store.(sinkStore); ok {
		m, _ := ss.s.(CheckpointMover)
		return m
	}
	m, _ := store.(CheckpointMover)
	return m
}

// loadCheckpoint loads the checkpoint of task and source. When there is
// none and the source is not named by up's address, a checkpoint stored
// under up.Addr() (the key of every checkpoint written before sources were
// named) is taken over: moved to source, or copied where the store cannot
// move.
func loadCheckpoint(ctx context.Context, store CheckpointStore, task, source string, up streamer.UpstreamConfig,
	log *slog.Logger) (Checkpoint, bool, error) {
	legacy := up.Addr()
	for attempt := 0; ; attempt++ {
		cp, found, err := store.Load(ctx, task, source)
		if err != nil || found || legacy == source {
			return cp, found, err
		}
		old, ok, err := store.Load(ctx, task, legacy)
		if err != nil || !ok {
			return Checkpoint{}, false, err
		}
		if attempt == 3 {
			// A move refused each time: someone keeps writing it.
			return Checkpoint{}, false, Retryable(fmt.Errorf("take over the checkpoint of task %s stored under the upstream's address %s: it keeps changing",
				task, legacy))
		}
		moved := false
		if m := moverOf(store); m != nil {
			moved, err = m.MoveCheckpoint(ctx, task, legacy, source)
		} else {
			old.Source = source
			moved, err = true, store.Save(ctx, old)
		}
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("take over the checkpoint of task %s stored under the upstream's address %s: %w", task, legacy, err)
		}
		if moved {
			log.Info("took over the checkpoint stored under the upstream's address", slog.String("address", legacy),
				slog.String("pos", old.Pos.String()))
		}
	}
}

// upstreamAtStart asks the upstream, when Run starts, which server it is and
// where its binlog is. Once the upstream has been reached, an outage is
// waited out here with backoff (100ms doubling to 10s), as the reader waits
// it out, instead of failing the run; before, an upstream that cannot be
// reached is an error at once (see queryUpstream).
func (s *Syncer) upstreamAtStart(ctx context.Context) (streamer.UpstreamState, error) {
	if s.offline() {
		return streamer.UpstreamState{}, nil
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 10*time.Second, 0
	for {
		st, err := s.queryUpstream(ctx)
		var se *streamer.Error
		outage := IsRetryable(err) || errors.As(err, &se) && se.Kind == nil
		if err == nil || !outage || !s.reached.Load() || ctx.Err() != nil {
			return st, err
		}
		wait := b.NextBackOff()
		s.log.Warn("upstream connection failed, retrying", slog.String("op", "query upstream"), slog.Duration("wait", wait),
			errAttr(err))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return st, ctx.Err()
		}
	}
}

// lineage is checkLineage for the upstream st describes; a syncer without
// an upstream (see WithStartSchema) resumes at the checkpoint unchecked.
func (s *Syncer) lineage(cp Checkpoint, st streamer.UpstreamState) (resume, error) {
	if s.offline() {
		return resume{start: cp.Pos}, nil
	}
	return checkLineage(cp, st)
}

// resume is where a syncer with a stored checkpoint goes on reading.
type resume struct {
	start streamer.Position
	// switched is true when the checkpoint is another server's and start
	// is its GTID set alone: file positions of the two servers are not
	// comparable.
	switched bool
}

// checkLineage checks that cp can be a position of the server st describes
// and says where to resume. See ErrCheckpointLineage.
//
// Like DM, it trusts GTIDs across servers and file positions only within
// one server's binlog: a checkpoint from another server (by identity) is
// resumed from its GTID set, when the server has executed all of it; one
// from this server (or of unknown server, written before identities were
// recorded) from its file position, when the file is one this server has
// (offset within it) or had (older than its oldest: the reader then says
// it is purged) and its GTIDs, if any, are executed here.
func checkLineage(cp Checkpoint, st streamer.UpstreamState) (resume, error) {
	pos := cp.Pos
	refuse := func(format string, args ...any) (resume, error) {
		server := cp.Server
		if server == "" {
			server = "unknown"
		}
		return resume{}, fmt.Errorf("%w: checkpoint %s taken on server %s, the upstream is server %s (%s, binlog %s): %s",
			ErrCheckpointLineage, pos, server, st.Identity, st.Flavor, st.Master, fmt.Sprintf(format, args...))
	}
	if pos.GTIDSet != nil && pos.Flavor != st.Flavor {
		return refuse("a %s position on a %s server", pos.Flavor, st.Flavor)
	}
	// A GTID set finds the place on any server that has executed it; an
	// empty one says nothing about where that is.
	byGTID := pos.GTIDSet != nil && !pos.GTIDSet.IsEmpty()
	executed := byGTID && st.Master.GTIDSet != nil && st.Master.GTIDSet.Contain(pos.GTIDSet)
	switched := resume{start: streamer.Position{Flavor: pos.Flavor, GTIDSet: pos.GTIDSet}, switched: true}

	if cp.Server != "" && cp.Server != st.Identity {
		switch {
		case !byGTID:
			return refuse("another server, and the checkpoint has no GTID set to find its place by")
		case !executed:
			return refuse("another server, which has not executed every GTID of the checkpoint")
		}
		return switched, nil
	}
	if byGTID && !executed {
		return refuse("the server has not executed every GTID of the checkpoint (a binlog reset, a restore, a lagging replica?)")
	}
	if pos.Name == "" {
		return resume{start: pos}, nil
	}
	if why := fileLineage(pos, st.Binlogs); why != "" {
		if executed {
			// Another server (identity unknown) or a renamed binlog:
			// the GTIDs still say where.
			return switched, nil
		}
		return refuse("%s", why)
	}
	return resume{start: pos}, nil
}

// fileLineage says why the file position pos cannot be one of a binlog
// holding files, "" when it can: the file is there with the offset in it,
// or it is older than the oldest (purged).
func fileLineage(pos streamer.Position, files []streamer.BinlogFile) string {
	if len(files) == 0 {
		return "the server lists no binlog files"
	}
	base := binlogBase(pos.Name)
	if b := binlogBase(files[0].Name); b != base {
		return fmt.Sprintf("the server's binlog files are %s.*, the checkpoint's file %s", b, pos.Name)
	}
	for _, f := range files {
		if f.Name == pos.Name {
			if pos.Offset > f.Size {
				return fmt.Sprintf("offset %d is past the end of %s (%d bytes)", pos.Offset, f.Name, f.Size)
			}
			return ""
		}
	}
	oldest, newest := streamer.Position{Name: files[0].Name}, streamer.Position{Name: files[len(files)-1].Name}
	if c := (streamer.Position{Name: pos.Name}); c.Compare(oldest) < 0 {
		return "" // purged: the reader reports it
	} else if c.Compare(newest) > 0 {
		return fmt.Sprintf("the server's newest binlog file is %s", newest.Name)
	}
	return fmt.Sprintf("the server has no file %s between %s and %s", pos.Name, oldest.Name, newest.Name)
}

// binlogBase is a binlog file name without its numeric suffix.
func binlogBase(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i < 0 || i == len(name)-1 || strings.Trim(name[i+1:], "0123456789") != "" {
		return name
	}
	return name[:i]
}
