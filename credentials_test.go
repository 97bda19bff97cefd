package dmworker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker"
	"github.com/dmworker/dmworker/internal/testserver"
	"github.com/dmworker/dmworker/streamer"
)

// TestConfigRedaction: every config type that holds the upstream's
// credentials keeps the password out of slog (JSON and text handlers, as a
// value and a pointer, at the top and inside a group) and out of every fmt
// verb; json.Marshal of a SourceConfig refuses it.
func TestConfigRedaction(t *testing.T) {
	const pw = "hunter2-S3cret"
	up := streamer.UpstreamConfig{Host: "db1", Port: 3306, User: "repl", Password: pw}
	src := dmworker.SourceConfig{Name: "shop", Upstream: up, EnableRelay: true}
	sync := dmworker.SyncerConfig{Task: "orders", Upstream: up}
	for _, c := range []struct {
		name string
		v    any
	}{
		{"SourceConfig", src}, {"*SourceConfig", &src},
		{"SyncerConfig", sync}, {"*SyncerConfig", &sync},
	} {
		var outs []string
		for _, h := range []func(*bytes.Buffer) slog.Handler{
			func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
			func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		} {
			var b bytes.Buffer
			log := slog.New(h(&b))
			log.Info("config", slog.Any("cfg", c.v))
			log.Info("config", "cfg", c.v)
			log.Info("config", slog.Group("g", slog.Any("cfg", c.v)))
			log.With(slog.Any("cfg", c.v)).Info("config")
			outs = append(outs, b.String())
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			outs = append(outs, fmt.Sprintf(verb, c.v))
		}
		outs = append(outs, fmt.Sprint(c.v), fmt.Sprintln(c.v))
		for _, out := range outs {
			if strings.Contains(out, pw) {
				t.Errorf("%s: the password shows in:\n%s", c.name, out)
			}
			if !strings.Contains(out, "db1") && !strings.Contains(out, fmt.Sprintf("%x", "db1")) {
				t.Errorf("%s: the config does not show in:\n%s", c.name, out)
			}
		}
	}
	if _, err := json.Marshal(src); !errors.Is(err, dmworker.ErrPlaintextPassword) {
		t.Errorf("json.Marshal(SourceConfig with a password): %v, want ErrPlaintextPassword", err)
	}
	key := bytes.Repeat([]byte{1}, 32)
	sealed, err := dmworker.SealSourceConfig(src, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(sealed)
	if err != nil || strings.Contains(string(b), pw) || !strings.Contains(string(b), `"password-sealed":"aes-gcm:v1:`) {
		t.Errorf("sealed config JSON %s (%v): want the password sealed, not in plain text", b, err)
	}
	for _, bad := range []dmworker.SourceConfig{
		{Name: "x", Upstream: up, PasswordRef: "vault:x"},
		{Name: "x/y", Upstream: up},
	} {
		if _, err := dmworker.SealSourceConfig(bad, key); err == nil {
			t.Errorf("SealSourceConfig(%+v) accepted", bad)
		}
	}
	if _, err := dmworker.SealSourceConfig(src, key[:7]); err == nil {
		t.Error("SealSourceConfig with a 7-byte key accepted")
	}
}

// TestSourceWorkerCredentials: the upstream's password reaches a worker in
// etcd mode sealed or as a reference, never in plain text. A plaintext
// config (from an older host) is refused with ErrPlaintextPassword and not
// served; PutSourceConfig replaces it with the sealed form, which the worker
// opens with its key and serves (rows replicate); writing the same config
// again puts nothing; a PasswordRef is resolved by the host's resolver; a
// worker without the key, or with another, says ErrCredentials.
func TestSourceWorkerCredentials(t *testing.T) {
	noLeaks(t)
	p := newPair(t, 416, 417, testserver.MariaDBOptions{})
	e := testserver.StartEtcd(t)
	cli := e.Client
	up := upstreamOf(p.up)
	if up.Password == "" {
		t.Fatal("the test upstream has no password")
	}
	var resolved atomic.Int32
	resolver := func(_ context.Context, source, ref string) (string, error) {
		if source != "src" || ref != "secrets/src" {
			return "", fmt.Errorf("unknown reference %q of source %q", ref, source)
		}
		resolved.Add(1)
		return up.Password, nil
	}
	w, err := dmworker.NewSourceWorker("w1", mysqlSinks(p.downdb), dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(testPrefix),
		dmworker.WithCredentialKey(testCredentialKey), dmworker.WithCredentialResolver(resolver))
	if err != nil {
		t.Fatal(err)
	}
	srcKey := testKeys.Source("src")
	// An older host's config, password in plain text.
	legacy := fmt.Sprintf(`{"name":"src","upstream":{"host":%q,"port":%d,"user":%q,"password":%q}}`, up.Host, up.Port, up.User, up.Password)
	etcdPut(t, cli, srcKey, legacy)
	putSubTask(t, cli, "src", dmworker.SubTaskConfig{Name: "t"})
	bindSource(t, cli, "w1", "src")
	runWorker(t, w)
	waitUntil(t, "the plaintext config refused", func() bool {
		return errors.Is(w.Status(t.Context()).Error, dmworker.ErrPlaintextPassword)
	})
	if st := w.Status(t.Context()); st.Source != "" || len(st.SubTasks) != 0 {
		t.Fatalf("a plaintext config is served: %+v", st)
	}

	// Without a key, the password cannot be written.
	cfg := dmworker.SourceConfig{Name: "src", Upstream: up}
	if err := dmworker.PutSourceConfig(t.Context(), cli, cfg, dmworker.WithEtcdPrefix(testPrefix)); !errors.Is(err, dmworker.ErrPlaintextPassword) {
		t.Fatalf("PutSourceConfig without a key: %v, want ErrPlaintextPassword", err)
	}
	putSourceConfig(t, cli, cfg)
	stored := getValue(t, cli, srcKey)
	if strings.Contains(string(stored.Value), up.Password) || !strings.Contains(string(stored.Value), "password-sealed") {
		t.Fatalf("stored source config %s: want the password sealed", stored.Value)
	}
	st := taskStatus(w, "t")
	waitUntil(t, "t running", func() bool { return st().Syncer.Read.Name != "" })
	rnd := rand.New(rand.NewPCG(416, 1))
	syncWorkload(t, p.updb, rnd, 20)
	waitSubTaskSynced(t, st, p)
	checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
	// The same config again: nothing is put.
	putSourceConfig(t, cli, cfg)
	if again := getValue(t, cli, srcKey); again.ModRevision != stored.ModRevision {
		t.Fatalf("the same config was put again (revision %d, was %d)", again.ModRevision, stored.ModRevision)
	}

	// A reference instead: etcd holds no password at all.
	putSourceConfig(t, cli, dmworker.SourceConfig{Name: "src", Upstream: streamer.UpstreamConfig{Host: up.Host, Port: up.Port, User: up.User},
		PasswordRef: "secrets/src"})
	if v := getValue(t, cli, srcKey).Value; strings.Contains(string(v), up.Password) || strings.Contains(string(v), "sealed") {
		t.Fatalf("stored source config %s: want only the reference", v)
	}
	waitUntil(t, "the reference resolved", func() bool { return resolved.Load() > 0 })
	syncWorkload(t, p.updb, rnd, 20)
	waitUntil(t, "t running again", func() bool { return st().Stage == dmworker.SubTaskRunning })
	waitSubTaskSynced(t, st, p)
	checkEqual(t, p.updb, p.downdb, "app.accounts", "app.accounts")
	if err := w.Status(t.Context()).Error; err != nil {
		t.Fatalf("worker error: %v", err)
	}

	// Workers without the key, or with another, cannot open the sealed
	// password (another prefix: they serve nothing of the above).
	const other = "/dmtest-creds/"
	if err := dmworker.PutSourceConfig(t.Context(), cli, cfg, dmworker.WithCredentialKey(testCredentialKey), dmworker.WithEtcdPrefix(other)); err != nil {
		t.Fatal(err)
	}
	for i, opts := range [][]dmworker.SourceWorkerOption{nil, {dmworker.WithCredentialKey(bytes.Repeat([]byte{9}, 32))}} {
		name := fmt.Sprintf("k%d", i)
		otherHost, err := dmworker.NewEtcdHost(cli, other)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := otherHost.BindSource(t.Context(), name, "src"); err != nil {
			t.Fatal(err)
		}
		wk, err := dmworker.NewSourceWorker(name, mysqlSinks(p.downdb), append(opts, dmworker.WithEtcd(cli), dmworker.WithEtcdPrefix(other))...)
		if err != nil {
			t.Fatal(err)
		}
		runWorker(t, wk)
		waitUntil(t, name+" cannot open the password", func() bool {
			return errors.Is(wk.Status(t.Context()).Error, dmworker.ErrCredentials)
		})
	}
}

// getValue reads one key, which must exist.
func getValue(t *testing.T, cli *clientv3.Client, key string) *mvccpb.KeyValue {
	t.Helper()
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v %v", key, resp, err)
	}
	return resp.Kvs[0]
}
