// Package embedetcd runs an etcd server inside an example's process, for
// the examples that need an etcd and are given none.
package embedetcd

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is an etcd server run in this process, in a temporary
// directory.
type Server struct {
	srv *embed.Etcd
	dir string
	// Endpoint is the client URL's host:port.
	Endpoint string
}

// Start starts an embedded etcd on free loopback ports, its data in a new
// temporary directory named after dirPattern (see os.MkdirTemp).
func Start(dirPattern string) (*Server, error) {
	var last error
	for attempt := 0; attempt < 3; attempt++ { // a picked port may be taken meanwhile
		dir, err := os.MkdirTemp("", dirPattern)
		if err != nil {
			return nil, err
		}
		ports, err := freePorts(2)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		curl := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[0])}
		purl := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[1])}
		cfg := embed.NewConfig()
		cfg.Name = "example"
		cfg.Dir = dir
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		srv, err := embed.StartEtcd(cfg)
		if err != nil {
			os.RemoveAll(dir)
			last = err
			continue
		}
		select {
		case <-srv.Server.ReadyNotify():
			return &Server{srv: srv, dir: dir, Endpoint: curl.Host}, nil
		case err := <-srv.Err():
			last = err
		case <-time.After(time.Minute):
			last = errors.New("not ready after a minute")
		}
		srv.Close()
		os.RemoveAll(dir)
	}
	return nil, fmt.Errorf("embedded etcd: %w", last)
}

// Close stops the server and removes its directory.
func (e *Server) Close() {
	e.srv.Close()
	os.RemoveAll(e.dir)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
