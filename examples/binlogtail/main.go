// Command binlogtail follows an upstream MySQL or MariaDB server's binlog
// with streamer.RemoteReader, or a relay directory with
// streamer.LocalReader, and prints one line per event. It shows the public
// streamer API at work: an UpstreamConfig, a start Position, and a Reader
// pulled with GetEvent.
//
// Usage:
//
//	go run ./examples/binlogtail -from 'user@127.0.0.1:3306' [-from-password-file F]
//	    [-pos mysql-bin.000001:4 | -gtid SET] [-flavor mariadb|mysql]
//	    [-server-id N] [-exit-when-idle DURATION] [-max-retry DURATION]
//	go run ./examples/binlogtail -relay-dir DIR [-follow]
//	    [-pos mysql-bin.000001:4 | -gtid SET] [-flavor mariadb|mysql]
//	    [-exit-when-idle DURATION]
//
// A password on the command line is visible to every user (ps): give it
// instead in a file, -from-password-file F (its content, one trailing
// newline removed), or in the environment variable DMWORKER_FROM_PASSWORD
// (the file first, then the password in -from, then the environment).
//
// With -relay-dir the events come from a relay directory (written by
// dmworker.Relay or examples/relay) instead of an upstream, with the same
// output. Without -follow the program exits 0 at the end of what the relay
// holds; with -follow it waits for new events. -pos then names a file of the
// relay (searched from the newest subdirectory back).
//
// Where to start:
//   - neither -pos nor -gtid: at the oldest binlog the upstream still holds;
//   - -pos: at a position in the text form of streamer.ParsePosition
//     ("mysql-bin.000001:4", optionally followed by " mariadb-gtid=SET" or
//     " mysql-gtid=SET", the set executed at that position);
//   - -gtid: at the first transaction not in SET. The set's flavour is
//     -flavor when given; otherwise it is read from the text: a set with a
//     ':' (uuid:interval) is MySQL, any other non-empty set is MariaDB. An
//     empty set needs -flavor.
//
// -pos and -gtid cannot be combined. -flavor is otherwise optional: without
// it the flavour is detected from the server's version. -server-id 0 (the
// default) picks a replica server id that no replica of the upstream uses.
//
// # Output
//
// One line per event on stdout, fields separated by two spaces:
//
//	TYPE  FILE:OFFSET  GTID  TABLE[  rows=N][  txn-end][  artificial]
//
// TYPE is the event type's name as in MySQL's and go-mysql's constants
// (WRITE_ROWS_EVENTv1, TABLE_MAP_EVENT, XID_EVENT, MARIADB_GTID_EVENT, ...;
// EVENT_TYPE_<n> for a type without a name). FILE:OFFSET is the position
// after the event, where the next one starts; for an artificial event, which
// occupies no space in the file, it is the position before it, and "-" before
// the file is known. GTID is the GTID of the transaction the event belongs to
// ("0-1-5" or "uuid:5"), "-" outside a transaction. TABLE is schema.table for
// table-map and rows events, "-" otherwise. rows=N follows rows events: the
// number of rows, or of (before, after) row pairs for update events.
// txn-end marks the event that ends a transaction, after which FILE:OFFSET is
// a safe point to resume from; artificial marks events the server made up
// for this connection (fake rotate, re-sent format description, heartbeat).
// For example:
//
//	MARIADB_GTID_EVENT  mysql-bin.000001:1180  0-1-5  -
//	TABLE_MAP_EVENT  mysql-bin.000001:1234  0-1-5  wl.t
//	WRITE_ROWS_EVENTv1  mysql-bin.000001:1700  0-1-5  wl.t  rows=5
//	XID_EVENT  mysql-bin.000001:1731  0-1-5  -  txn-end
//
// This format is stable: fields are only ever appended.
//
// # Stopping
//
// SIGINT or SIGTERM close the reader and exit 0. With -exit-when-idle D the
// program also exits 0 once no event other than a heartbeat has arrived for
// D. Errors go to stderr, never with the password, and exit 1; so does
// failing to reach the upstream for longer than -max-retry (default 1m).
// Bad flags exit 2. Warnings, such as each failed connection attempt, are
// logged to stderr.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/dmworker/dmworker/examples/internal/cli"
	"github.com/dmworker/dmworker/streamer"
)

func main() { cli.Main(run) }

// flushDelay bounds how long a printed line may wait in the output buffer
// while the stream is quiet.
const flushDelay = 100 * time.Millisecond

// config is what the command line asks for.
type config struct {
	relayDir string // read this relay directory instead of an upstream
	follow   bool
	up       streamer.UpstreamConfig
	start    streamer.Position
	idle     time.Duration // 0: never exit for idleness
	maxRetry time.Duration
}

// run is the whole program: it parses args, tails the binlog to stdout until
// ctx ends, the stream has been idle for -exit-when-idle, or an error, and
// returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return cli.UsageStatus(stderr, "binlogtail", err)
	}
	logger := cli.WarningsLogger(stderr)
	var r streamer.Reader
	if cfg.relayDir != "" {
		start := streamer.StartAtPosition(cfg.start)
		if cfg.start.Name == "" && cfg.start.GTIDSet != nil {
			start = streamer.StartAtGTID(cfg.start.GTIDSet)
		}
		r, err = streamer.NewLocalReader(cfg.relayDir, start,
			streamer.WithLocalLogger(logger), streamer.WithFollow(cfg.follow))
	} else {
		r, err = streamer.NewRemoteReader(cfg.up, cfg.start,
			streamer.WithLogger(logger), streamer.WithMaxRetryTime(cfg.maxRetry))
	}
	if err != nil {
		fmt.Fprintln(stderr, "binlogtail:", err)
		return cli.ExitFailure
	}
	defer r.Close()

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	if err := tail(ctx, r, out, cfg.idle); err != nil && !errors.Is(err, streamer.ErrEndOfStream) {
		out.Flush()
		fmt.Fprintln(stderr, "binlogtail:", err)
		return cli.ExitFailure
	}
	return cli.ExitOK
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	fs := cli.NewFlagSet("binlogtail", stderr)
	var (
		from     = cli.Server(fs, "from", "upstream", "required without -relay-dir", "DMWORKER_FROM_PASSWORD")
		relayDir = fs.String("relay-dir", "", "read this relay directory instead of an upstream")
		follow   = fs.Bool("follow", false, "with -relay-dir: wait for new events at the end of the relay")
		pos      = fs.String("pos", "", "start position, e.g. mysql-bin.000001:4")
		gtid     = fs.String("gtid", "", "start after this GTID set")
		flavor   = fs.String("flavor", "", "mariadb or mysql (default: detect)")
		serverID = fs.Uint("server-id", 0, "replica server id (0: pick a free one)")
		idle     = fs.Duration("exit-when-idle", 0, "exit once no event but heartbeats came for this long (0: never)")
		maxRetry = fs.Duration("max-retry", time.Minute, "give up after failing to reach the upstream for this long (0: never)")
	)
	if err := cli.Parse(fs, args); err != nil {
		return config{}, err
	}
	set := cli.Set(fs)

	var cfg config
	switch {
	case !from.Given() && *relayDir == "":
		return cfg, errors.New("-from user:password@host:port or -relay-dir DIR is required")
	case from.Given() && *relayDir != "":
		return cfg, errors.New("give -from or -relay-dir, not both")
	case set["follow"] && *relayDir == "":
		return cfg, errors.New("-follow applies to -relay-dir (an upstream is always followed)")
	case set["pos"] && set["gtid"]:
		return cfg, errors.New("give -pos or -gtid, not both")
	case *idle < 0 || *maxRetry < 0:
		return cfg, errors.New("durations must not be negative")
	case *serverID > 1<<32-1:
		return cfg, fmt.Errorf("-server-id %d: must fit in 32 bits", *serverID)
	}
	var up streamer.UpstreamConfig
	var err error
	if *relayDir != "" {
		cfg.relayDir, cfg.follow = *relayDir, *follow
	} else if up, err = from.Config(); err != nil {
		return cfg, err
	}
	switch *flavor {
	case "", streamer.FlavorMariaDB, streamer.FlavorMySQL:
	default:
		return cfg, fmt.Errorf("-flavor %q: want %s or %s", *flavor, streamer.FlavorMariaDB, streamer.FlavorMySQL)
	}
	up.Flavor = *flavor
	up.ServerID = uint32(*serverID)
	cfg.up, cfg.idle, cfg.maxRetry = up, *idle, *maxRetry

	switch {
	case set["pos"]:
		if cfg.start, err = streamer.ParsePosition(*pos); err != nil {
			return cfg, fmt.Errorf("-pos: %w", err)
		}
	case set["gtid"]:
		f := *flavor
		if f == "" {
			switch {
			case *gtid == "":
				return cfg, errors.New("-gtid with an empty set needs -flavor")
			case strings.Contains(*gtid, ":"):
				f = streamer.FlavorMySQL
			default:
				f = streamer.FlavorMariaDB
			}
		}
		gs, err := streamer.NewGTIDSet(f, *gtid)
		if err != nil {
			return cfg, fmt.Errorf("-gtid: %w", err)
		}
		cfg.start = streamer.Position{Flavor: f, GTIDSet: gs}
	}
	if cfg.start.GTIDSet != nil && up.Flavor != "" && cfg.start.Flavor != up.Flavor {
		return cfg, fmt.Errorf("the start GTID set is %s but -flavor is %s", cfg.start.Flavor, up.Flavor)
	}
	return cfg, nil
}

// tail prints r's events to out until ctx ends (nil), nothing but heartbeats
// arrived for idle (nil), or r fails.
func tail(ctx context.Context, r streamer.Reader, out *bufio.Writer, idle time.Duration) error {
	lastEvent := time.Now()
	var line []byte
	for {
		// Wait with a deadline when one matters: the idle limit, or
		// lines waiting in the buffer. A context that expires leaves the
		// reader usable.
		var deadline time.Time
		if idle > 0 {
			deadline = lastEvent.Add(idle)
		}
		if out.Buffered() > 0 {
			if d := time.Now().Add(flushDelay); deadline.IsZero() || d.Before(deadline) {
				deadline = d
			}
		}
		ev, err := getEvent(ctx, r, deadline)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			if err := out.Flush(); err != nil {
				return err
			}
			if idle > 0 && !time.Now().Before(lastEvent.Add(idle)) {
				return nil
			}
			continue
		default:
			return err
		}
		if !isHeartbeat(ev.Header.EventType) {
			lastEvent = time.Now()
		}
		line = appendLine(line[:0], ev)
		if _, err := out.Write(line); err != nil {
			return err
		}
	}
}

func getEvent(ctx context.Context, r streamer.Reader, deadline time.Time) (*streamer.Event, error) {
	if deadline.IsZero() {
		return r.GetEvent(ctx)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return r.GetEvent(ctx)
}

func isHeartbeat(t replication.EventType) bool {
	return t == replication.HEARTBEAT_EVENT || t == replication.HEARTBEAT_LOG_EVENT_V2
}

// appendLine appends ev's output line (see the package doc), newline
// included.
func appendLine(b []byte, ev *streamer.Event) []byte {
	const sep = "  "
	b = append(b, typeName(ev.Header.EventType)...)
	b = append(b, sep...)
	if ev.Pos.Name == "" {
		b = append(b, '-')
	} else {
		b = append(b, ev.Pos.Name...)
		b = append(b, ':')
		b = strconv.AppendUint(b, ev.Pos.Offset, 10)
	}
	b = append(b, sep...)
	if ev.GTID == "" {
		b = append(b, '-')
	} else {
		b = append(b, ev.GTID...)
	}
	b = append(b, sep...)
	switch e := ev.Event.(type) {
	case *replication.TableMapEvent:
		b = appendTable(b, e)
	case *replication.RowsEvent:
		b = appendTable(b, e.Table)
		n := len(e.Rows)
		if isUpdate(ev.Header.EventType) {
			n /= 2
		}
		b = append(b, sep+"rows="...)
		b = strconv.AppendInt(b, int64(n), 10)
	default:
		b = append(b, '-')
	}
	if ev.TxnEnd {
		b = append(b, sep+"txn-end"...)
	}
	if ev.Artificial() {
		b = append(b, sep+"artificial"...)
	}
	return append(b, '\n')
}

func appendTable(b []byte, t *replication.TableMapEvent) []byte {
	if t == nil {
		return append(b, '-')
	}
	b = append(b, t.Schema...)
	b = append(b, '.')
	return append(b, t.Table...)
}

// isUpdate reports whether rows events of type t hold (before, after) pairs.
func isUpdate(t replication.EventType) bool {
	switch t {
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2,
		replication.PARTIAL_UPDATE_ROWS_EVENT, replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1:
		return true
	}
	return false
}

// typeName is the event type's constant name. The output format depends on
// these names, so they are spelt out here rather than taken from go-mysql's
// EventType.String, which may change.
func typeName(t replication.EventType) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "EVENT_TYPE_" + strconv.Itoa(int(t))
}

var typeNames = map[replication.EventType]string{
	replication.UNKNOWN_EVENT:                           "UNKNOWN_EVENT",
	replication.START_EVENT_V3:                          "START_EVENT_V3",
	replication.QUERY_EVENT:                             "QUERY_EVENT",
	replication.STOP_EVENT:                              "STOP_EVENT",
	replication.ROTATE_EVENT:                            "ROTATE_EVENT",
	replication.INTVAR_EVENT:                            "INTVAR_EVENT",
	replication.LOAD_EVENT:                              "LOAD_EVENT",
	replication.SLAVE_EVENT:                             "SLAVE_EVENT",
	replication.CREATE_FILE_EVENT:                       "CREATE_FILE_EVENT",
	replication.APPEND_BLOCK_EVENT:                      "APPEND_BLOCK_EVENT",
	replication.EXEC_LOAD_EVENT:                         "EXEC_LOAD_EVENT",
	replication.DELETE_FILE_EVENT:                       "DELETE_FILE_EVENT",
	replication.NEW_LOAD_EVENT:                          "NEW_LOAD_EVENT",
	replication.RAND_EVENT:                              "RAND_EVENT",
	replication.USER_VAR_EVENT:                          "USER_VAR_EVENT",
	replication.FORMAT_DESCRIPTION_EVENT:                "FORMAT_DESCRIPTION_EVENT",
	replication.XID_EVENT:                               "XID_EVENT",
	replication.BEGIN_LOAD_QUERY_EVENT:                  "BEGIN_LOAD_QUERY_EVENT",
	replication.EXECUTE_LOAD_QUERY_EVENT:                "EXECUTE_LOAD_QUERY_EVENT",
	replication.TABLE_MAP_EVENT:                         "TABLE_MAP_EVENT",
	replication.WRITE_ROWS_EVENTv0:                      "WRITE_ROWS_EVENTv0",
	replication.UPDATE_ROWS_EVENTv0:                     "UPDATE_ROWS_EVENTv0",
	replication.DELETE_ROWS_EVENTv0:                     "DELETE_ROWS_EVENTv0",
	replication.WRITE_ROWS_EVENTv1:                      "WRITE_ROWS_EVENTv1",
	replication.UPDATE_ROWS_EVENTv1:                     "UPDATE_ROWS_EVENTv1",
	replication.DELETE_ROWS_EVENTv1:                     "DELETE_ROWS_EVENTv1",
	replication.INCIDENT_EVENT:                          "INCIDENT_EVENT",
	replication.HEARTBEAT_EVENT:                         "HEARTBEAT_EVENT",
	replication.IGNORABLE_EVENT:                         "IGNORABLE_EVENT",
	replication.ROWS_QUERY_EVENT:                        "ROWS_QUERY_EVENT",
	replication.WRITE_ROWS_EVENTv2:                      "WRITE_ROWS_EVENTv2",
	replication.UPDATE_ROWS_EVENTv2:                     "UPDATE_ROWS_EVENTv2",
	replication.DELETE_ROWS_EVENTv2:                     "DELETE_ROWS_EVENTv2",
	replication.GTID_EVENT:                              "GTID_EVENT",
	replication.ANONYMOUS_GTID_EVENT:                    "ANONYMOUS_GTID_EVENT",
	replication.PREVIOUS_GTIDS_EVENT:                    "PREVIOUS_GTIDS_EVENT",
	replication.TRANSACTION_CONTEXT_EVENT:               "TRANSACTION_CONTEXT_EVENT",
	replication.VIEW_CHANGE_EVENT:                       "VIEW_CHANGE_EVENT",
	replication.XA_PREPARE_LOG_EVENT:                    "XA_PREPARE_LOG_EVENT",
	replication.PARTIAL_UPDATE_ROWS_EVENT:               "PARTIAL_UPDATE_ROWS_EVENT",
	replication.TRANSACTION_PAYLOAD_EVENT:               "TRANSACTION_PAYLOAD_EVENT",
	replication.HEARTBEAT_LOG_EVENT_V2:                  "HEARTBEAT_LOG_EVENT_V2",
	replication.GTID_TAGGED_LOG_EVENT:                   "GTID_TAGGED_LOG_EVENT",
	replication.MARIADB_ANNOTATE_ROWS_EVENT:             "MARIADB_ANNOTATE_ROWS_EVENT",
	replication.MARIADB_BINLOG_CHECKPOINT_EVENT:         "MARIADB_BINLOG_CHECKPOINT_EVENT",
	replication.MARIADB_GTID_EVENT:                      "MARIADB_GTID_EVENT",
	replication.MARIADB_GTID_LIST_EVENT:                 "MARIADB_GTID_LIST_EVENT",
	replication.MARIADB_START_ENCRYPTION_EVENT:          "MARIADB_START_ENCRYPTION_EVENT",
	replication.MARIADB_QUERY_COMPRESSED_EVENT:          "MARIADB_QUERY_COMPRESSED_EVENT",
	replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:  "MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1",
	replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1: "MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1",
	replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1: "MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1",
}
