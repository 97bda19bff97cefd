package dmworker

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmworker/dmworker/streamer"
)

// Credentials in etcd. A source's config (SourceConfig, key
// <prefix>source/<source>) never holds the upstream's password in plain
// text: either the password is sealed with a key the host supplies
// (SealedPassword, AES-GCM from the standard library; the hosts that write
// configs and the workers that read them share the key, etcd never sees it),
// or the config holds only a reference (PasswordRef) that the host's
// CredentialResolver turns into the password on the worker (a secret
// manager's path, a file name, an environment variable: the host's choice).
// SealSourceConfig and PutSourceConfig write the sealed form; json.Marshal
// of a SourceConfig refuses a plaintext password; a worker refuses a config
// read from etcd with a plaintext password (written by an older host: write
// it again with PutSourceConfig) and says why in its status.

// Credential errors.
var (
	// ErrPlaintextPassword means a source config would carry, or carries,
	// the upstream's password in plain text through etcd: json.Marshal of
	// a SourceConfig with Upstream.Password set, PutSourceConfig with a
	// password and no key, or a config read from etcd with a password in
	// it (the worker then does not serve the source).
	ErrPlaintextPassword = errors.New("dmworker: plaintext password in a source config")
	// ErrCredentials means a source's password could not be had: sealed
	// with no key or another key (or damaged), or referenced with no
	// resolver or one that failed.
	ErrCredentials = errors.New("dmworker: source credentials unavailable")
)

// CredentialResolver returns the password that ref (a SourceConfig's
// PasswordRef) names for source. A SourceWorker calls it each time it reads
// the source's config from etcd, within ctx; an error leaves the source
// unserved, with the error (wrapping ErrCredentials) in the worker's status.
type CredentialResolver func(ctx context.Context, source, ref string) (string, error)

// WithCredentialKey sets the key that seals and opens the passwords of
// source configs in etcd, with AES-GCM: 16, 24 or 32 bytes (AES-128, -192,
// -256), from a secret the host keeps outside etcd. A SourceWorker in etcd
// mode opens SealedPassword with it; PutSourceConfig seals with it. Default:
// none (a sealed password is then ErrCredentials).
func WithCredentialKey(key []byte) CredentialKeyOption {
	return CredentialKeyOption{credentialKey{bytes.Clone(key), true}}
}

// CredentialKeyOption is WithCredentialKey's option, taken by
// NewSourceWorker and PutSourceConfig.
type CredentialKeyOption struct{ k credentialKey }

func (o CredentialKeyOption) applySourceWorker(w *sourceWorkerOptions)       { w.credentialKey = o.k }
func (o CredentialKeyOption) applyPutSourceConfig(p *putSourceConfigOptions) { p.credentialKey = o.k }

// WithCredentialResolver makes a SourceWorker in etcd mode resolve the
// PasswordRef of a source config with r. Default: none (a config with a
// PasswordRef is then ErrCredentials).
func WithCredentialResolver(r CredentialResolver) SourceWorkerOption {
	return credentialResolverOption{r}
}

type credentialResolverOption struct{ r CredentialResolver }

func (o credentialResolverOption) applySourceWorker(w *sourceWorkerOptions) {
	w.credentialResolver, w.credentialResolverSet = o.r, true
}

// credentialKey is WithCredentialKey's key.
type credentialKey struct {
	key   []byte
	given bool
}

// validate checks the key's size.
func (k credentialKey) validate() error {
	if !k.given {
		return nil
	}
	if n := len(k.key); n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("credential key of %d bytes: want 16, 24 or 32 (AES-128, -192, -256)", n)
	}
	return nil
}

// sealPrefix starts a sealed password: the scheme and its version.
const sealPrefix = "aes-gcm:v1:"

// sealAAD binds a sealed password to its source: pasted into another
// source's config, it does not open.
func sealAAD(source string) []byte { return []byte("dmworker source password\x00" + source) }

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// sealPassword encrypts password for source with key.
func sealPassword(key []byte, source, password string) (string, error) {
	g, err := newGCM(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(password)+g.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return sealPrefix + base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, []byte(password), sealAAD(source))), nil
}

// openPassword decrypts what sealPassword made for source.
func openPassword(key []byte, source, sealed string) (string, error) {
	raw, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return "", fmt.Errorf("%w: source %s: sealed password of an unknown scheme (want %q)", ErrCredentials, source, sealPrefix)
	}
	if key == nil {
		return "", fmt.Errorf("%w: source %s: the password is sealed and no credential key was given (WithCredentialKey)", ErrCredentials, source)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return "", fmt.Errorf("%w: source %s: sealed password: %v", ErrCredentials, source, err)
	}
	g, err := newGCM(key)
	if err != nil {
		return "", fmt.Errorf("%w: source %s: %v", ErrCredentials, source, err)
	}
	if len(b) < g.NonceSize() {
		return "", fmt.Errorf("%w: source %s: sealed password too short", ErrCredentials, source)
	}
	pw, err := g.Open(nil, b[:g.NonceSize()], b[g.NonceSize():], sealAAD(source))
	if err != nil {
		return "", fmt.Errorf("%w: source %s: the sealed password does not open with this key (another key, or damaged)", ErrCredentials, source)
	}
	return string(pw), nil
}

// SealSourceConfig returns cfg as it may travel through etcd: its
// Upstream.Password sealed with key (see WithCredentialKey) into
// SealedPassword. A config without a password (none needed, or a
// PasswordRef) comes back unchanged. It fails when cfg has both a password
// and a PasswordRef, or a key of the wrong size.
func SealSourceConfig(cfg SourceConfig, key []byte) (SourceConfig, error) {
	if !validName(cfg.Name) {
		return cfg, fmt.Errorf("dmworker: seal source config: source name %q must be non-empty and hold no '/'", cfg.Name)
	}
	pw := cfg.Upstream.Password
	switch {
	case pw == "":
		return cfg, nil
	case cfg.PasswordRef != "":
		return cfg, fmt.Errorf("dmworker: source %s: give Upstream.Password or PasswordRef, not both", cfg.Name)
	case cfg.SealedPassword != "":
		return cfg, fmt.Errorf("dmworker: source %s: give Upstream.Password or SealedPassword, not both", cfg.Name)
	}
	sealed, err := sealPassword(key, cfg.Name, pw)
	if err != nil {
		return cfg, fmt.Errorf("dmworker: source %s: seal the password: %w", cfg.Name, err)
	}
	cfg.Upstream.Password, cfg.SealedPassword = "", sealed
	return cfg, nil
}

// putSourceConfigOptions are PutSourceConfig's options.
type putSourceConfigOptions struct {
	credentialKey credentialKey
	etcdPrefix    string
}

// PutSourceConfig writes cfg under <prefix>source/<cfg.Name> (see the key
// layout), as a SourceWorker in etcd mode reads it: a password in
// Upstream.Password is sealed with WithCredentialKey's key (required then;
// without it, ErrPlaintextPassword), a PasswordRef is written as is. Nothing
// is put when the stored config already opens to cfg, so every process of
// a cluster may publish the same config without making the serving worker
// read its state again. Options: WithCredentialKey, WithEtcdPrefix.
func PutSourceConfig(ctx context.Context, cli *clientv3.Client, cfg SourceConfig, opts ...PutSourceConfigOption) error {
	var o putSourceConfigOptions
	for _, opt := range opts {
		if opt != nil {
			opt.applyPutSourceConfig(&o)
		}
	}
	if cli == nil {
		return fmt.Errorf("dmworker: put source config %s: an etcd client is required", cfg.Name)
	}
	if err := o.credentialKey.validate(); err != nil {
		return fmt.Errorf("dmworker: put source config %s: %w", cfg.Name, err)
	}
	if cfg.Upstream.Password != "" && o.credentialKey.key == nil {
		return fmt.Errorf("%w: source %s: give WithCredentialKey to seal the password, or a PasswordRef instead of it", ErrPlaintextPassword, cfg.Name)
	}
	sealed, err := SealSourceConfig(cfg, o.credentialKey.key)
	if err != nil {
		return err
	}
	val, err := json.Marshal(sealed)
	if err != nil {
		return err
	}
	key := newEtcdKeys(o.etcdPrefix).source(cfg.Name)
	for range 3 {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("dmworker: put source config %s: get %s: %w", cfg.Name, key, err)
		}
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(resp.Kvs) > 0 {
			if storedIs(resp.Kvs[0].Value, cfg, o.credentialKey.key) {
				return nil
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		}
		t, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return fmt.Errorf("dmworker: put source config %s: put %s: %w", cfg.Name, key, err)
		}
		if t.Succeeded {
			return nil
		}
		// Written by another host meanwhile: read it again.
	}
	return fmt.Errorf("dmworker: put source config %s: %s keeps changing under concurrent writers", cfg.Name, key)
}

// storedIs reports whether the stored value opens (with key) to cfg.
func storedIs(stored []byte, cfg SourceConfig, key []byte) bool {
	var s SourceConfig
	if json.Unmarshal(stored, &s) != nil || s.Upstream.Password != "" {
		return false // unreadable, or plaintext to be replaced
	}
	pw := ""
	if s.SealedPassword != "" {
		var err error
		if pw, err = openPassword(key, cfg.Name, s.SealedPassword); err != nil {
			return false
		}
	}
	if pw != cfg.Upstream.Password || (s.SealedPassword != "") != (cfg.Upstream.Password != "") {
		return false
	}
	s.SealedPassword = ""
	cfg.Upstream.Password, cfg.SealedPassword = "", ""
	a, errA := json.Marshal(s)
	b, errB := json.Marshal(cfg)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// openCredentials fills in src.Upstream.Password, for a config read from
// etcd, from its sealed form or its reference; it refuses a plaintext one.
// SealedPassword is cleared once opened, so that the same config sealed
// again (another nonce) compares equal.
func (o *sourceWorkerOptions) openCredentials(ctx context.Context, src *SourceConfig) error {
	switch {
	case src.Upstream.Password != "":
		return fmt.Errorf("%w: source %s: the config holds the password unsealed; write it again with dmworker.PutSourceConfig (sealed with the credential key) or with a PasswordRef",
			ErrPlaintextPassword, src.Name)
	case src.SealedPassword != "" && src.PasswordRef != "":
		return fmt.Errorf("%w: source %s: the config has both a sealed password and a password reference", ErrCredentials, src.Name)
	case src.SealedPassword != "":
		pw, err := openPassword(o.credentialKey.key, src.Name, src.SealedPassword)
		if err != nil {
			return err
		}
		src.Upstream.Password, src.SealedPassword = pw, ""
	case src.PasswordRef != "":
		if o.credentialResolver == nil {
			return fmt.Errorf("%w: source %s: the config has a password reference and the worker no resolver (WithCredentialResolver)", ErrCredentials, src.Name)
		}
		pw, err := o.credentialResolver(ctx, src.Name, src.PasswordRef)
		if err != nil {
			return fmt.Errorf("%w: source %s: resolve the password reference %q: %w", ErrCredentials, src.Name, src.PasswordRef, err)
		}
		src.Upstream.Password = pw
	}
	return nil
}

// MarshalJSON writes the config as a SourceWorker reads it from etcd. It
// refuses (ErrPlaintextPassword) a config whose Upstream.Password is set, so
// that the password never reaches etcd or a file in plain text: seal it
// first (SealSourceConfig, PutSourceConfig) or give PasswordRef instead.
func (c SourceConfig) MarshalJSON() ([]byte, error) {
	if c.Upstream.Password != "" {
		return nil, fmt.Errorf("%w: source %s: seal it (dmworker.SealSourceConfig) or give a PasswordRef", ErrPlaintextPassword, c.Name)
	}
	return json.Marshal(sourceConfigJSON(c))
}

// sourceConfigJSON is SourceConfig without its methods, for its JSON form.
type sourceConfigJSON SourceConfig

// redactedSourceConfig is what SourceConfig's LogValue and Format show:
// the config with the password hidden.
type redactedSourceConfig SourceConfig

// redactedSyncerConfig is what SyncerConfig's LogValue and Format show.
type redactedSyncerConfig SyncerConfig

// redactUpstream hides the password (a placeholder says there is one).
func redactUpstream(u streamer.UpstreamConfig) streamer.UpstreamConfig {
	if u.Password != "" {
		u.Password = "***"
	}
	return u
}

// LogValue keeps slog (text and JSON handlers alike) from printing the
// password.
func (c SourceConfig) LogValue() slog.Value {
	c.Upstream = redactUpstream(c.Upstream)
	return slog.AnyValue(redactedSourceConfig(c))
}

// Format keeps every fmt verb (%v, %+v, %#v, %s, ...) from printing the
// password.
func (c SourceConfig) Format(f fmt.State, verb rune) {
	c.Upstream = redactUpstream(c.Upstream)
	fmt.Fprintf(f, fmt.FormatString(f, verb), redactedSourceConfig(c))
}

// LogValue keeps slog (text and JSON handlers alike) from printing the
// password.
func (c SyncerConfig) LogValue() slog.Value {
	c.Upstream = redactUpstream(c.Upstream)
	return slog.AnyValue(redactedSyncerConfig(c))
}

// Format keeps every fmt verb (%v, %+v, %#v, %s, ...) from printing the
// password.
func (c SyncerConfig) Format(f fmt.State, verb rune) {
	c.Upstream = redactUpstream(c.Upstream)
	fmt.Fprintf(f, fmt.FormatString(f, verb), redactedSyncerConfig(c))
}
