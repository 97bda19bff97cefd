// Command etcd runs a throwaway single-member etcd server (embedded, the
// same code as the etcd binary) for demos: make demo's workers form a
// cluster through it. It listens on free loopback ports, prints
//
//	etcd 127.0.0.1:41234
//
// once ready, and with -env FILE writes ETCD_ENDPOINTS=127.0.0.1:41234 to
// FILE (atomically, so a script may wait for it to appear; removed again on
// exit). Its data lives in -dir (default: a new temporary directory,
// removed on exit). SIGINT or SIGTERM stop it.
//
// Usage:
//
//	etcd [-dir DIR] [-env FILE]
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "data directory (default: a new temporary directory, removed on exit)")
	envFile := flag.String("env", "", "write ETCD_ENDPOINTS=... to this file once ready")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "dmworker-etcd-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)

	var srv *embed.Etcd
	var endpoint string
	var last error
	for attempt := 0; attempt < 3 && srv == nil; attempt++ { // a picked port may be taken meanwhile
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		curl := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[0])}
		purl := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(ports[1])}
		cfg := embed.NewConfig()
		cfg.Name = "demo"
		cfg.Dir = filepath.Join(*dir, "member-"+strconv.Itoa(attempt))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		s, err := embed.StartEtcd(cfg)
		if err != nil {
			last = err
			continue
		}
		select {
		case <-s.Server.ReadyNotify():
			srv, endpoint = s, curl.Host
		case err := <-s.Err():
			last = err
			s.Close()
		case <-time.After(time.Minute):
			last = errors.New("not ready after a minute")
			s.Close()
		case <-sigs:
			s.Close()
			return nil
		}
	}
	if srv == nil {
		return last
	}
	defer srv.Close()
	if *envFile != "" {
		tmp := *envFile + ".tmp"
		if err := os.WriteFile(tmp, []byte("ETCD_ENDPOINTS="+endpoint+"\n"), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, *envFile); err != nil {
			return err
		}
		defer os.Remove(*envFile)
	}
	fmt.Println("etcd", endpoint)
	select {
	case <-sigs:
		return nil
	case err := <-srv.Err():
		return err
	}
}

func freePorts(n int) ([]int, error) {
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
