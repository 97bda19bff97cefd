package dmworker

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/streamer"
)

// Option configures one of the package's types. Every option's doc states its
// default. An option that does not apply to the type it is given to is
// rejected by the constructor.
type Option struct {
	name  string
	apply func(*options)
}

// options holds every option's value; set records which were given.
type options struct {
	set map[string]bool

	logger *slog.Logger

	// Relay
	syncPolicy       SyncPolicy
	relayStart       streamer.Position
	remoteOpts       []streamer.RemoteOption
	purgeInterval    time.Duration
	purgeExpires     time.Duration
	purgeRemainSpace uint64
	relayFileMode    os.FileMode
	relayDirMode     os.FileMode

	// Syncer
	readerFactory   ReaderFactory
	checkpointStore CheckpointStore
	sinkRetry       time.Duration
	epoch           int64
	startSchema     []string

	// Syncer, SubTask, SourceWorker
	stopTimeout time.Duration

	// SubTask
	resumeInitial  time.Duration
	resumeMax      time.Duration
	resumeAttempts int

	// SourceWorker
	source         *SourceConfig
	relayBaseDir   string
	liveness       Liveness
	statusInterval time.Duration

	// SourceWorker, PutSourceConfig
	credentialKey      []byte
	credentialResolver CredentialResolver

	// etcd (SourceWorker, KeepAlive, Coordinator)
	etcd       *clientv3.Client
	etcdPrefix string

	// KeepAlive, Coordinator
	keepAliveTTL time.Duration
	workerAddr   string
	backoffMin   time.Duration
	backoffMax   time.Duration
}

func defaultOptions() options {
	return options{
		set:           map[string]bool{},
		logger:        slog.New(slog.DiscardHandler),
		syncPolicy:    SyncInterval(defaultSyncInterval),
		relayFileMode: streamer.DefaultRelayFileMode,
		relayDirMode:  streamer.DefaultRelayDirMode,
	}
}

// collect applies opts and rejects those not in allowed.
func collect(typ string, allowed []string, opts []Option) (options, error) {
	o := defaultOptions()
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	var bad []string
	for _, opt := range opts {
		if opt.apply == nil {
			continue
		}
		if !ok[opt.name] {
			bad = append(bad, opt.name)
			continue
		}
		o.set[opt.name] = true
		opt.apply(&o)
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return o, fmt.Errorf("dmworker: %s does not take %s", typ, strings.Join(bad, ", "))
	}
	return o, nil
}

// WithLogger sets the logger. Default: discard everything.
func WithLogger(l *slog.Logger) Option {
	return Option{"WithLogger", func(o *options) {
		if l != nil {
			o.logger = l
		}
	}}
}

// WithEtcd makes the type work through etcd with the host's client, which
// the library never closes. Default: no etcd.
func WithEtcd(cli *clientv3.Client) Option {
	return Option{"WithEtcd", func(o *options) { o.etcd = cli }}
}

// WithEtcdPrefix sets the prefix under which every etcd key lives (see the
// key layout in the package doc). Default DefaultEtcdPrefix, "/dmworker/".
func WithEtcdPrefix(prefix string) Option {
	return Option{"WithEtcdPrefix", func(o *options) { o.etcdPrefix = prefix }}
}
