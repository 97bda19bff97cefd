package dmworker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dmworker/dmworker/streamer"
)

// RelayConfig is how a Relay keeps its copy of the binlog: where an empty
// directory starts, when it fsyncs, what it purges, the modes of what it
// creates and how its readers reach the upstream. NewRelay takes it, and
// SourceConfig embeds it, so that a SourceWorker's relay can be given all
// of it, through etcd too (the JSON keys are SourceConfig's). Zero values
// take the defaults; NewRelay (and a SourceWorker, for its sources) checks
// it.
type RelayConfig struct {
	// RelayStart is where a relay with an empty directory starts: a file
	// and offset, or a GTID set. The relay copies whole files, so it starts
	// at the beginning of the file that holds the position (found through
	// the GTID set when no file is given). Default: the beginning of the
	// upstream's current binlog file.
	RelayStart streamer.Position `json:"relay-start,omitzero" toml:"-"`
	// SyncPolicy is when the relay fsyncs what it has written (in files,
	// "each-transaction", "on-rotate" or "interval(50ms)").
	// Default SyncInterval(50ms).
	SyncPolicy SyncPolicy `json:"relay-sync,omitzero" toml:"relay-sync"`
	// PurgeInterval turns on the relay's purge loop: every interval it
	// removes files older than PurgeExpires (0: no age limit) and, while
	// the file system has less than PurgeRemainSpace bytes free (0: no
	// space limit), the oldest files, never one a registered reader needs
	// nor the file being written. One of the limits is required with an
	// interval, and neither is taken without one. Default 0: off.
	PurgeInterval    Duration `json:"purge-interval,omitzero" toml:"purge-interval"`
	PurgeExpires     Duration `json:"purge-expires,omitzero" toml:"purge-expires"`
	PurgeRemainSpace uint64   `json:"purge-remain-space,omitempty" toml:"purge-remain-space"`
	// FileMode and DirMode are the permissions of what the relay creates:
	// its binlog files, relay.meta, server-uuid.index and the lock file
	// (FileMode), and the relay directory and its subdirectories (DirMode),
	// each before the process's umask. Directories and files that exist
	// keep their mode. The relay files hold every statement the upstream
	// logged, passwords in CREATE USER ... IDENTIFIED BY included: widen
	// them only for a group that may read them. The owner must keep read
	// and write (and, on directories, execute) permission. Default 0640
	// and 0750 (streamer.DefaultRelayFileMode and DefaultRelayDirMode).
	// In JSON they are numbers (0o640 is 416); in TOML write 0o640.
	FileMode os.FileMode `json:"relay-file-mode,omitempty" toml:"relay-file-mode"`
	DirMode  os.FileMode `json:"relay-dir-mode,omitempty" toml:"relay-dir-mode"`
	// BufferedIO makes the relay write its binlog files through the page
	// cache. By default it writes their whole blocks with direct I/O
	// (O_DIRECT, on Linux; streamer.RelayFileWriter.DirectIO), which saves
	// copying every byte into the page cache, most of what writing costs
	// the CPU; readers of the relay (subtasks) then read what it wrote
	// from the disk rather than from the page cache. Where the file system
	// refuses direct I/O the relay writes through the page cache anyway.
	// Durability is the same either way. Default false: direct I/O.
	BufferedIO bool `json:"relay-buffered-io,omitempty" toml:"relay-buffered-io"`
	// Reader tunes the readers the relay pulls the upstream's binlog with
	// (a streamer.RawReader) and asks where a GTID set starts (a
	// streamer.RemoteReader); WithRemoteOptions adds what only code can
	// give them (a dialer). Default: the readers' defaults.
	Reader ReaderConfig `json:"relay-reader,omitzero" toml:"relay-reader"`
}

// ReaderConfig tunes a reader that pulls an upstream's binlog: the
// settings of streamer.RemoteReader and streamer.RawReader that can travel
// through files and etcd. Zero values take the reader's defaults (see the
// streamer options of the same names).
type ReaderConfig struct {
	// Heartbeat is how often the upstream sends a heartbeat when it has
	// nothing else to send (streamer.WithHeartbeat). Default 5s.
	Heartbeat Duration `json:"heartbeat,omitzero" toml:"heartbeat"`
	// ReadTimeout is how long the reader waits for any packet before it
	// takes the connection for dead and reconnects; it must exceed the
	// heartbeat (streamer.WithReadTimeout). Default three heartbeats.
	ReadTimeout Duration `json:"read-timeout,omitzero" toml:"read-timeout"`
	// BackoffMin and BackoffMax bound the reconnect delay, given together
	// (streamer.WithBackoff). Default 100ms to 10s.
	BackoffMin Duration `json:"backoff-min,omitzero" toml:"backoff-min"`
	BackoffMax Duration `json:"backoff-max,omitzero" toml:"backoff-max"`
	// MaxRetryTime bounds how long the reader keeps reconnecting before
	// it gives up with streamer.ErrRetryExhausted
	// (streamer.WithMaxRetryTime). Default 0: until it is closed.
	MaxRetryTime Duration `json:"max-retry-time,omitzero" toml:"max-retry-time"`
	// EventQueueSize is how many decoded events may wait between the
	// network and the consumer (streamer.WithEventQueueSize). Default 1024.
	EventQueueSize int `json:"event-queue-size,omitempty" toml:"event-queue-size"`
}

// validate checks what the reader's own check would refuse.
func (c ReaderConfig) validate() error {
	switch {
	case c.Heartbeat < 0 || c.ReadTimeout < 0 || c.BackoffMin < 0 || c.BackoffMax < 0 || c.MaxRetryTime < 0 || c.EventQueueSize < 0:
		return errors.New("reader settings must not be negative")
	case c.ReadTimeout > 0 && c.Heartbeat > 0 && c.ReadTimeout <= c.Heartbeat:
		return fmt.Errorf("reader read timeout %s must be longer than the heartbeat %s", time.Duration(c.ReadTimeout), time.Duration(c.Heartbeat))
	case (c.BackoffMin == 0) != (c.BackoffMax == 0) || c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("reader backoff %s..%s: give both, the minimum at most the maximum", time.Duration(c.BackoffMin), time.Duration(c.BackoffMax))
	}
	return nil
}

// Options returns the streamer options that c sets.
func (c ReaderConfig) Options() []streamer.RemoteOption {
	var o []streamer.RemoteOption
	if c.Heartbeat > 0 {
		o = append(o, streamer.WithHeartbeat(time.Duration(c.Heartbeat)))
	}
	if c.ReadTimeout > 0 {
		o = append(o, streamer.WithReadTimeout(time.Duration(c.ReadTimeout)))
	}
	if c.BackoffMin > 0 {
		o = append(o, streamer.WithBackoff(time.Duration(c.BackoffMin), time.Duration(c.BackoffMax)))
	}
	if c.MaxRetryTime > 0 {
		o = append(o, streamer.WithMaxRetryTime(time.Duration(c.MaxRetryTime)))
	}
	if c.EventQueueSize > 0 {
		o = append(o, streamer.WithEventQueueSize(c.EventQueueSize))
	}
	return o
}

// withDefaults returns c with its zero values replaced by the defaults.
func (c RelayConfig) withDefaults() RelayConfig {
	if c.SyncPolicy.kind == syncDefault {
		c.SyncPolicy = SyncInterval(defaultSyncInterval)
	}
	if c.FileMode == 0 {
		c.FileMode = streamer.DefaultRelayFileMode
	}
	if c.DirMode == 0 {
		c.DirMode = streamer.DefaultRelayDirMode
	}
	c.RelayStart = c.RelayStart.Clone()
	return c
}

// validate checks the config (defaults filled in or not).
func (c RelayConfig) validate() error {
	switch {
	case c.SyncPolicy.kind == syncInterval && c.SyncPolicy.interval <= 0:
		return fmt.Errorf("sync interval %s must be positive", c.SyncPolicy.interval)
	case c.PurgeInterval < 0 || c.PurgeExpires < 0:
		return fmt.Errorf("purge interval %s and age %s must not be negative", time.Duration(c.PurgeInterval), time.Duration(c.PurgeExpires))
	case c.PurgeInterval > 0 && c.PurgeExpires == 0 && c.PurgeRemainSpace == 0:
		return errors.New("auto purge needs an age or a free-space limit (purge-expires or purge-remain-space)")
	case c.PurgeInterval == 0 && (c.PurgeExpires > 0 || c.PurgeRemainSpace > 0):
		return errors.New("purge limits need a positive purge interval")
	}
	if f, d := c.FileMode, c.DirMode; f != 0 || d != 0 {
		if f == 0 {
			f = streamer.DefaultRelayFileMode
		}
		if d == 0 {
			d = streamer.DefaultRelayDirMode
		}
		switch {
		case f&^os.ModePerm != 0 || d&^os.ModePerm != 0:
			return fmt.Errorf("relay file mode %s and directory mode %s: only permission bits are allowed", f, d)
		case f&0o600 != 0o600:
			return fmt.Errorf("relay file mode %s: the owner needs read and write permission", f)
		case d&0o700 != 0o700:
			return fmt.Errorf("relay directory mode %s: the owner needs read, write and execute permission", d)
		}
	}
	if !c.RelayStart.IsZero() {
		if err := c.RelayStart.Validate(); err != nil {
			return fmt.Errorf("start: %w", err)
		}
		if c.RelayStart.Name == "" && c.RelayStart.GTIDSet == nil {
			return errors.New("start needs a file or a GTID set")
		}
	}
	if err := c.Reader.validate(); err != nil {
		return err
	}
	return nil
}

// relayOptions are a Relay's options, defaults filled in.
type relayOptions struct {
	logger     *slog.Logger
	remoteOpts []streamer.RemoteOption // WithRemoteOptions'
	metrics    metricsOptions
}

func defaultRelayOptions() relayOptions { return relayOptions{logger: discardLogger()} }

// WithRemoteOptions passes options to the readers that pull the upstream's
// binlog, after the reader settings of a config (RelayConfig.Reader): for
// what only code can give them (streamer.WithDialer). A Relay gives them to
// the streamer.RawReader it pulls with and the streamer.RemoteReader it
// asks where a GTID set starts; a Syncer (and a SubTask's) to the
// streamer.RemoteReader it reads with unless WithReaderFactory replaces
// it; a SourceWorker to its relays and to its subtasks that read the
// upstream. Default: none; the readers log with their owner's logger.
func WithRemoteOptions(opts ...streamer.RemoteOption) RemoteOptionsOption {
	return RemoteOptionsOption{opts}
}

// RemoteOptionsOption is WithRemoteOptions' option, taken by NewRelay,
// NewSyncer, NewSubTask and NewSourceWorker.
type RemoteOptionsOption struct{ opts []streamer.RemoteOption }

func (o RemoteOptionsOption) applyRelay(r *relayOptions) {
	r.remoteOpts = append(r.remoteOpts, o.opts...)
}
func (o RemoteOptionsOption) applySyncer(s *syncerOptions) {
	s.remoteOpts = append(s.remoteOpts, o.opts...)
}
func (o RemoteOptionsOption) applySubTask(t *subTaskOptions) { o.applySyncer(&t.syncerOptions) }
func (o RemoteOptionsOption) applySourceWorker(w *sourceWorkerOptions) {
	o.applySubTask(&w.subTaskOptions)
}

// remoteOptions are the options of the relay's upstream readers.
func (r *Relay) remoteOptions() []streamer.RemoteOption {
	return append(r.cfg.Reader.Options(), r.opts.remoteOpts...)
}

// MarshalText writes the policy as String does; the zero SyncPolicy (the
// default) writes as "".
func (p SyncPolicy) MarshalText() ([]byte, error) {
	if p.kind == syncDefault {
		return nil, nil
	}
	return []byte(p.String()), nil
}

// UnmarshalText reads "each-transaction", "on-rotate", "interval(50ms)" or
// a bare duration ("50ms", the interval), and "" as the default.
func (p *SyncPolicy) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	switch s {
	case "":
		*p = SyncPolicy{}
		return nil
	case "each-transaction":
		*p = SyncEachTransaction()
		return nil
	case "on-rotate":
		*p = SyncOnRotate()
		return nil
	}
	if in, ok := strings.CutPrefix(s, "interval("); ok {
		s, ok = strings.CutSuffix(in, ")")
		if !ok {
			return fmt.Errorf("sync policy %q: missing )", b)
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("sync policy %q: want each-transaction, on-rotate or interval(duration)", b)
	}
	*p = SyncInterval(d)
	return nil
}
