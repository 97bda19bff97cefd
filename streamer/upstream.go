package streamer

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
)

// UpstreamConfig says how to reach an upstream MySQL or MariaDB server. It is
// a plain struct so that it can travel through files and etcd. Its String,
// GoString and LogValue never show the password.
type UpstreamConfig struct {
	// Name identifies the source in errors and logs; default "Host:Port".
	Name     string `json:"name,omitempty" toml:"name"`
	Host     string `json:"host" toml:"host"`
	Port     uint16 `json:"port" toml:"port"`
	User     string `json:"user" toml:"user"`
	Password string `json:"password,omitempty" toml:"password"`
	// Flavor is FlavorMySQL or FlavorMariaDB; "" means detect it from the
	// server's version at the first connection.
	Flavor string `json:"flavor,omitempty" toml:"flavor"`
	// ServerID is the replica server id to use; 0 means pick one with
	// PickServerID at the first connection.
	ServerID uint32 `json:"server-id,omitempty" toml:"server-id"`
}

// ParseUpstream parses "user:password@host:port" (the password may contain
// '@' and ':'; the last '@' separates it from the address). The port
// defaults to 3306.
func ParseUpstream(s string) (UpstreamConfig, error) {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return UpstreamConfig{}, fmt.Errorf("streamer: upstream %q: want user:password@host:port", redactDSN(s))
	}
	cred, addr := s[:at], s[at+1:]
	var c UpstreamConfig
	if i := strings.IndexByte(cred, ':'); i >= 0 {
		c.User, c.Password = cred[:i], cred[i+1:]
	} else {
		c.User = cred
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "3306"
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return UpstreamConfig{}, fmt.Errorf("streamer: upstream %q: bad port %q", redactDSN(s), port)
	}
	c.Host, c.Port = host, uint16(p)
	if c.User == "" || c.Host == "" {
		return UpstreamConfig{}, fmt.Errorf("streamer: upstream %q: user and host are required", redactDSN(s))
	}
	return c, nil
}

// ParseUpstreamFlags parses an upstream given on a command line, whose
// password should not stand there (ps shows every process's arguments to
// every user): s is "user[:password]@host:port" as ParseUpstream takes it,
// and the password comes from passwordFile when it is not "" (the file's
// content, one trailing newline removed), else from s, else from the
// environment variable passwordEnv when it is set (and passwordEnv is not
// ""). A password both in s and in passwordFile is refused.
func ParseUpstreamFlags(s, passwordFile, passwordEnv string) (UpstreamConfig, error) {
	c, err := ParseUpstream(s)
	if err != nil {
		return c, err
	}
	switch {
	case passwordFile != "" && c.Password != "":
		return UpstreamConfig{}, fmt.Errorf("streamer: upstream %s: a password both in the address and in the file %s: give it once", c.Addr(), passwordFile)
	case passwordFile != "":
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return UpstreamConfig{}, fmt.Errorf("streamer: upstream %s: password file: %w", c.Addr(), err)
		}
		pw := strings.TrimSuffix(string(b), "\n")
		c.Password = strings.TrimSuffix(pw, "\r")
	case c.Password == "" && passwordEnv != "":
		c.Password = os.Getenv(passwordEnv)
	}
	return c, nil
}

// redactDSN hides whatever sits between the first ':' and the last '@'.
func redactDSN(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	if i := strings.IndexByte(s[:at], ':'); i >= 0 {
		return s[:i] + ":***" + s[at:]
	}
	return s
}

// Validate checks the fields a connection needs.
func (c UpstreamConfig) Validate() error {
	switch {
	case c.Host == "":
		return fmt.Errorf("streamer: upstream %s: host is required", c.SourceName())
	case c.Port == 0:
		return fmt.Errorf("streamer: upstream %s: port is required", c.SourceName())
	case c.User == "":
		return fmt.Errorf("streamer: upstream %s: user is required", c.SourceName())
	case c.Flavor != "" && c.Flavor != FlavorMySQL && c.Flavor != FlavorMariaDB:
		return fmt.Errorf("streamer: upstream %s: flavor %q is neither %q nor %q", c.SourceName(), c.Flavor, FlavorMySQL, FlavorMariaDB)
	}
	return nil
}

// Addr is "host:port".
func (c UpstreamConfig) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}

// SourceName is Name, or Addr when Name is empty.
func (c UpstreamConfig) SourceName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Addr()
}

// String shows the config without the password.
func (c UpstreamConfig) String() string {
	pw := ""
	if c.Password != "" {
		pw = ":***"
	}
	return fmt.Sprintf("%s%s@%s (name=%s flavor=%s server-id=%d)", c.User, pw, c.Addr(), c.SourceName(), c.Flavor, c.ServerID)
}

// GoString keeps %#v from printing the password.
func (c UpstreamConfig) GoString() string { return "streamer.UpstreamConfig{" + c.String() + "}" }

// LogValue keeps slog from printing the password.
func (c UpstreamConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Format keeps every fmt verb from printing the password.
func (c UpstreamConfig) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(c.GoString()))
		return
	}
	_, _ = f.Write([]byte(c.String()))
}

// connect opens a plain client connection (not a binlog dump) to c.
func (c UpstreamConfig) connect(ctx context.Context, dialer client.Dialer) (*client.Conn, error) {
	if dialer == nil {
		d := &net.Dialer{}
		dialer = d.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return client.ConnectWithDialer(ctx, "", c.Addr(), c.User, c.Password, "", dialer)
}

// detectFlavor reads the server version: MariaDB says so in it.
func detectFlavor(conn *client.Conn) string {
	if strings.Contains(strings.ToLower(conn.GetServerVersion()), "mariadb") {
		return FlavorMariaDB
	}
	return FlavorMySQL
}

// PickServerID connects to the upstream and returns a replica server id that
// neither the upstream itself nor any replica it reports (SHOW SLAVE HOSTS /
// SHOW REPLICAS) uses. Ids are drawn at random from [1<<20, 1<<31) so that
// several pickers rarely collide even before they register.
func PickServerID(ctx context.Context, c UpstreamConfig) (uint32, error) {
	if err := c.Validate(); err != nil {
		return 0, err
	}
	conn, err := c.connect(ctx, nil)
	if err != nil {
		kind, _ := classify(err)
		return 0, &Error{Source: c.SourceName(), Op: "pick server id", Kind: kind, Err: err}
	}
	defer conn.Close()
	used, err := usedServerIDs(conn)
	if err != nil {
		return 0, &Error{Source: c.SourceName(), Op: "pick server id", Err: err}
	}
	return pickServerID(used, rand.Uint32N), nil
}

// usedServerIDs lists the server ids the upstream and its replicas use.
func usedServerIDs(conn *client.Conn) (map[uint32]bool, error) {
	used := map[uint32]bool{0: true}
	r, err := conn.Execute("SELECT @@server_id")
	if err != nil {
		return nil, err
	}
	if id, err := r.GetUint(0, 0); err == nil {
		used[uint32(id)] = true
	}
	r, err = conn.Execute("SHOW REPLICAS")
	if err != nil {
		// MariaDB before 10.5 and MySQL before 8.0.22 only know the old name.
		r, err = conn.Execute("SHOW SLAVE HOSTS")
		if err != nil {
			return nil, err
		}
	}
	for i := 0; i < r.RowNumber(); i++ {
		if id, err := r.GetUint(i, 0); err == nil {
			used[uint32(id)] = true
		}
	}
	return used, nil
}

const (
	serverIDMin = 1 << 20
	serverIDMax = 1 << 31
)

// pickServerID draws ids with rnd (which returns a value in [0, n)) until one
// is free.
func pickServerID(used map[uint32]bool, rnd func(n uint32) uint32) uint32 {
	for {
		id := serverIDMin + rnd(serverIDMax-serverIDMin)
		if !used[id] {
			return id
		}
	}
}
