package streamer

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	perrors "github.com/pingcap/errors"
)

// Exported errors. Every error a Reader returns is an *Error that wraps one of
// these where one applies; match them with errors.Is.
var (
	// ErrClosed is returned by GetEvent after Close.
	ErrClosed = errors.New("streamer: reader closed")
	// ErrEndOfStream is returned by a reader that stops at the end of what
	// exists, once it has delivered everything.
	ErrEndOfStream = errors.New("streamer: end of stream")
	// ErrAccessDenied means the upstream refused the user or password.
	ErrAccessDenied = errors.New("streamer: access denied by upstream")
	// ErrUnknownHost means the upstream's host name does not resolve.
	ErrUnknownHost = errors.New("streamer: unknown upstream host")
	// ErrUnreachable means no connection to the upstream could be opened:
	// it was refused, the host or network is unreachable, or nothing
	// answered within the connect timeout (10s). A reader ends with it
	// only before its first successful connection (later, and with
	// WithRetryFirstConnect, it retries); QueryUpstream and PickServerID,
	// which connect once, return it whenever it happens.
	ErrUnreachable = errors.New("streamer: upstream unreachable")
	// ErrBinlogPurged means the binlog file to start from is no longer
	// there, upstream or in the relay (purged, or never existed).
	ErrBinlogPurged = errors.New("streamer: binlog file not found (purged?)")
	// ErrGTIDNotServable means the requested GTID set cannot be served: the
	// transactions after it were purged, or the set holds GTIDs the source
	// never had.
	ErrGTIDNotServable = errors.New("streamer: the requested GTID set cannot be served")
	// ErrBadPosition means the start position itself is wrong (an offset
	// past the end of the file or not at an event boundary).
	ErrBadPosition = errors.New("streamer: bad start position")
	// ErrUpstream is any other fatal error the upstream reported while
	// sending the binlog.
	ErrUpstream = errors.New("streamer: upstream error")
	// ErrRetryExhausted means reconnecting did not succeed within the
	// configured retry time.
	ErrRetryExhausted = errors.New("streamer: reconnect attempts exhausted")
	// ErrChecksum means an event failed its CRC32 check.
	ErrChecksum = errors.New("streamer: event checksum mismatch")
)

// Error is the error type returned by readers. It names the source, the
// operation and the position of the stream when the error happened.
type Error struct {
	Source string   // upstream name (host:port unless configured) or relay dir
	Op     string   // "connect", "read", "reconnect", ...
	Pos    Position // position after the last event delivered
	Kind   error    // one of the exported sentinels, or nil
	Err    error    // the underlying cause
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("streamer: source ")
	b.WriteString(e.Source)
	b.WriteString(": ")
	b.WriteString(e.Op)
	if !e.Pos.IsZero() {
		b.WriteString(" at ")
		b.WriteString(e.Pos.String())
	}
	if e.Kind != nil && (e.Err == nil || !errors.Is(e.Err, e.Kind)) {
		// (A cause that wraps the kind says it already.)
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Kind.Error(), "streamer: "))
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel and the cause, so errors.Is and errors.As see
// both.
func (e *Error) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// MariaDB and MySQL error codes we classify that go-mysql does not name.
const (
	erConnectionKilled = 1927 // MariaDB ER_CONNECTION_KILLED
	erServerShutdown   = 1053 // ER_SERVER_SHUTDOWN
	erQueryInterrupted = 1317 // ER_QUERY_INTERRUPTED
)

// classify maps an error from go-mysql to one of the sentinels and says
// whether reconnecting may help. ErrUnreachable is the one kind that comes
// with retryable true: whether to retry it depends on whether the upstream
// was ever reached (see retryOrFail).
func classify(err error) (kind error, retryable bool) {
	if err == nil {
		return nil, false
	}
	var own *Error
	if errors.As(err, &own) && own.Kind != nil {
		return own.Kind, false
	}
	var myErr *mysql.MyError
	if errors.As(err, &myErr) || asCause(err, &myErr) {
		switch myErr.Code {
		case mysql.ER_ACCESS_DENIED_ERROR, mysql.ER_DBACCESS_DENIED_ERROR, mysql.ER_SPECIFIC_ACCESS_DENIED_ERROR:
			return ErrAccessDenied, false
		case mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG:
			msg := strings.ToLower(myErr.Message)
			switch {
			case strings.Contains(msg, "gtid"):
				return ErrGTIDNotServable, false
			case strings.Contains(msg, "could not find first log file"),
				strings.Contains(msg, "could not open log file"),
				strings.Contains(msg, "binary log is not open"):
				return ErrBinlogPurged, false
			case strings.Contains(msg, "impossible position"),
				strings.Contains(msg, "bogus data"),
				strings.Contains(msg, "truncated in the middle of event"),
				// A start inside an event makes the server take
				// payload bytes for an event length.
				strings.Contains(msg, "exceeded max_allowed_packet"),
				strings.Contains(msg, "does not exist in"):
				return ErrBadPosition, false
			}
			return ErrUpstream, false
		case erConnectionKilled, erServerShutdown, erQueryInterrupted,
			mysql.ER_CON_COUNT_ERROR, mysql.ER_TOO_MANY_USER_CONNECTIONS:
			return nil, true
		}
		// Other server errors during a dump are not cured by reconnecting.
		return ErrUpstream, false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) || asCause(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return ErrUnknownHost, false
		}
		return nil, true
	}
	var opErr *net.OpError
	if (errors.As(err, &opErr) || asCause(err, &opErr)) && opErr.Op == "dial" {
		// Refused, unreachable, or no answer: worth retrying once the
		// upstream has been reached, a configuration error before.
		return ErrUnreachable, true
	}
	if errors.Is(err, replication.ErrChecksumMismatch) || perrors.Cause(err) == replication.ErrChecksumMismatch {
		return ErrChecksum, false
	}
	// Connection resets, EOFs, timeouts, refused connections, a closed
	// stream after the server went away: all worth another connection.
	return nil, true
}

// asCause finds target in the pingcap/errors cause chain, for errors that
// were wrapped without Unwrap support.
func asCause[T error](err error, target *T) bool {
	for err != nil {
		if t, ok := err.(T); ok {
			*target = t
			return true
		}
		c, ok := err.(interface{ Cause() error })
		if !ok {
			return false
		}
		next := c.Cause()
		if next == err {
			return false
		}
		err = next
	}
	return false
}

// errorf is a small helper for causes that carry a message only.
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
