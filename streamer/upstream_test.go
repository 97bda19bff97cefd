package streamer

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	perrors "github.com/pingcap/errors"
)

func TestParseUpstream(t *testing.T) {
	cases := []struct {
		in   string
		want UpstreamConfig
	}{
		{"root:pw@127.0.0.1:3307", UpstreamConfig{User: "root", Password: "pw", Host: "127.0.0.1", Port: 3307}},
		{"u:p@ss:w@rd@db.example:3306", UpstreamConfig{User: "u", Password: "p@ss:w@rd", Host: "db.example", Port: 3306}},
		{"u@localhost", UpstreamConfig{User: "u", Host: "localhost", Port: 3306}},
		{"u:@[::1]:3310", UpstreamConfig{User: "u", Host: "::1", Port: 3310}},
	}
	for _, tc := range cases {
		got, err := ParseUpstream(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got != tc.want {
			t.Fatalf("%q: got %#v, want %#v", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "nohost", "u:secret@h:0", "u:secret@h:99999", ":secret@h:1", "u:secret@:3306"} {
		_, err := ParseUpstream(bad)
		if err == nil {
			t.Fatalf("%q: no error", bad)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("%q: the error shows the password: %v", bad, err)
		}
	}
}

// TestParseUpstreamFlags: the password comes from the file, else the flag,
// else the environment; a password both in the flag and in a file is
// refused.
func TestParseUpstreamFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from:file@\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_DMWORKER_PW", "from-env")
	for _, c := range []struct {
		s, file, env, want string
	}{
		{"u@h:1", file, "TEST_DMWORKER_PW", "from:file@"},
		{"u@h:1", "", "TEST_DMWORKER_PW", "from-env"},
		{"u:inline@h:1", "", "TEST_DMWORKER_PW", "inline"},
		{"u@h:1", "", "TEST_DMWORKER_UNSET", ""},
		{"u@h:1", "", "", ""},
	} {
		got, err := ParseUpstreamFlags(c.s, c.file, c.env)
		if err != nil || got.Password != c.want || got.User != "u" || got.Addr() != "h:1" {
			t.Errorf("ParseUpstreamFlags(%q, %q, %q) = %#v (password %q), %v; want password %q", c.s, c.file, c.env, got, got.Password, err, c.want)
		}
	}
	if _, err := ParseUpstreamFlags("u:inline@h:1", file, ""); err == nil || strings.Contains(err.Error(), "inline") {
		t.Errorf("a password in the flag and in a file: %v, want a refusal that does not show it", err)
	}
	if _, err := ParseUpstreamFlags("u@h:1", filepath.Join(dir, "missing"), ""); err == nil {
		t.Error("a missing password file accepted")
	}
}

func TestUpstreamConfigNeverShowsPassword(t *testing.T) {
	c := UpstreamConfig{Host: "h", Port: 1, User: "u", Password: "hunter2-secret", Flavor: FlavorMariaDB}
	var logBuf strings.Builder
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("cfg", slog.Any("upstream", c), "plain", c)
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("cfg", slog.Any("upstream", c))
	outs := []string{
		fmt.Sprint(c), fmt.Sprintf("%v|%+v|%#v|%s|%q", c, c, c, c, c), fmt.Sprintf("%v", &c), c.String(), c.GoString(), logBuf.String(),
	}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") {
			t.Fatalf("password shown: %s", o)
		}
		if !strings.Contains(o, "u:***@h:1") {
			t.Fatalf("user and address missing: %s", o)
		}
	}
}

func TestUpstreamConfigValidate(t *testing.T) {
	ok := UpstreamConfig{Host: "h", Port: 1, User: "u"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []UpstreamConfig{
		{Port: 1, User: "u"}, {Host: "h", User: "u"}, {Host: "h", Port: 1},
		{Host: "h", Port: 1, User: "u", Flavor: "postgres"},
	} {
		if err := c.Validate(); err == nil {
			t.Fatalf("%v: no error", c)
		}
	}
}

func TestNewRemoteReaderRejectsBadConfig(t *testing.T) {
	up := UpstreamConfig{Host: "h", Port: 1, User: "u", Flavor: FlavorMySQL}
	mariaSet, _ := mysql.ParseMariadbGTIDSet("0-1-5")
	cases := map[string]struct {
		up    UpstreamConfig
		start Position
		opts  []RemoteOption
	}{
		"no host":                   {UpstreamConfig{Port: 1, User: "u"}, Position{}, nil},
		"timeout under heartbeat":   {up, Position{}, []RemoteOption{WithHeartbeat(10e9), WithReadTimeout(5e9)}},
		"timeout without heartbeat": {up, Position{}, []RemoteOption{WithHeartbeat(0), WithReadTimeout(5e9)}},
		"bad backoff":               {up, Position{}, []RemoteOption{WithBackoff(2e9, 1e9)}},
		"zero queue":                {up, Position{}, []RemoteOption{WithEventQueueSize(0)}},
		"flavour mismatch":          {up, Position{Flavor: FlavorMariaDB, GTIDSet: mariaSet}, nil},
		"offset over 32 bits":       {up, Position{Name: "mysql-bin.000001", Offset: 1 << 33}, nil},
		"bad file name":             {up, Position{Name: "a b", Offset: 4}, nil},
	}
	for name, tc := range cases {
		if _, err := NewRemoteReader(tc.up, tc.start, tc.opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	r, err := NewRemoteReader(up, Position{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetEvent(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetEvent after Close: %v", err)
	}
}

func TestPickServerIDSkipsUsed(t *testing.T) {
	used := map[uint32]bool{0: true, serverIDMin + 7: true, serverIDMin + 8: true}
	draws := []uint32{7, 8, 7, 9}
	i := 0
	got := pickServerID(used, func(n uint32) uint32 {
		if n != serverIDMax-serverIDMin {
			t.Fatalf("range %d", n)
		}
		d := draws[i]
		i++
		return d
	})
	if got != serverIDMin+9 || i != 4 {
		t.Fatalf("picked %d after %d draws", got, i)
	}
}

func TestClassify(t *testing.T) {
	dns := &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}
	cases := []struct {
		err       error
		kind      error
		retryable bool
	}{
		{&mysql.MyError{Code: mysql.ER_ACCESS_DENIED_ERROR, Message: "Access denied"}, ErrAccessDenied, false},
		{perrors.Trace(&mysql.MyError{Code: mysql.ER_ACCESS_DENIED_ERROR}), ErrAccessDenied, false},
		{&mysql.MyError{Code: 1236, Message: "Could not find first log file name in binary log index file"}, ErrBinlogPurged, false},
		{&mysql.MyError{Code: 1236, Message: "Error: connecting slave requested to start from GTID 0-1-9, which is not in the master's binlog"}, ErrGTIDNotServable, false},
		{&mysql.MyError{Code: 1236, Message: "Client requested master to start replication from impossible position"}, ErrBadPosition, false},
		{&mysql.MyError{Code: 1236, Message: "something else"}, ErrUpstream, false},
		{&mysql.MyError{Code: 1927, Message: "Connection was killed"}, nil, true},
		{fmt.Errorf("dial: %w", dns), ErrUnknownHost, false},
		{perrors.Trace(dns), ErrUnknownHost, false},
		{&net.DNSError{Err: "timeout", IsTimeout: true}, nil, true},
		{io.EOF, nil, true},
		{perrors.Trace(io.ErrUnexpectedEOF), nil, true},
	}
	for _, tc := range cases {
		kind, retry := classify(tc.err)
		if kind != tc.kind || retry != tc.retryable {
			t.Errorf("classify(%v) = %v, %v; want %v, %v", tc.err, kind, retry, tc.kind, tc.retryable)
		}
	}
}

func TestErrorMatchesKindAndCause(t *testing.T) {
	cause := &mysql.MyError{Code: mysql.ER_ACCESS_DENIED_ERROR, Message: "Access denied for user 'u'"}
	p, _ := ParsePosition("mysql-bin.000002:120")
	err := error(&Error{Source: "up1", Op: "connect", Pos: p, Kind: ErrAccessDenied, Err: cause})
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatal("not ErrAccessDenied")
	}
	var my *mysql.MyError
	if !errors.As(err, &my) || my.Code != mysql.ER_ACCESS_DENIED_ERROR {
		t.Fatal("cause not reachable with errors.As")
	}
	for _, want := range []string{"up1", "connect", "mysql-bin.000002:120", "access denied", "Access denied for user"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q lacks %q", err, want)
		}
	}
}
