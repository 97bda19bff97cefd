package testserver

import (
	"errors"
	"net"
	"os"
)

// RequireServersEnv is the environment variable that, set to "1", turns a
// missing server binary from a skipped test into a failed one.
const RequireServersEnv = "DMWORKER_REQUIRE_SERVERS"

// ErrNoBinaries is returned (wrapped) by [Start] when the MariaDB server
// binaries cannot be found on this machine.
var ErrNoBinaries = errors.New("testserver: mariadb server binaries not found")

// Required reports whether DMWORKER_REQUIRE_SERVERS=1: then a missing server
// binary fails the test instead of skipping it.
func Required() bool {
	return os.Getenv(RequireServersEnv) == "1"
}

// freePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the caller binds it; callers retry on "address
// in use".
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
