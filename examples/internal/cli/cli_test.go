package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseAndUsageStatus(t *testing.T) {
	var stderr bytes.Buffer
	fs := NewFlagSet("demo", &stderr)
	n := fs.Int("n", 1, "a number")
	if err := Parse(fs, []string{"-n", "3"}); err != nil || *n != 3 || !Set(fs)["n"] {
		t.Fatalf("Parse: %v, n %d, set %v", err, *n, Set(fs))
	}
	for _, c := range []struct {
		args   []string
		err    error
		status int
		print  string // what UsageStatus prints
	}{
		{[]string{"-h"}, flag.ErrHelp, ExitOK, ""},
		{[]string{"-bogus"}, ErrReported, ExitUsage, ""},
		{[]string{"extra"}, nil, ExitUsage, "demo: unexpected arguments [\"extra\"]\n"},
	} {
		fs := NewFlagSet("demo", &bytes.Buffer{})
		fs.Int("n", 1, "a number")
		err := Parse(fs, c.args)
		if err == nil || (c.err != nil && !errors.Is(err, c.err)) {
			t.Errorf("%q: error %v, want %v", c.args, err, c.err)
		}
		var out bytes.Buffer
		if st := UsageStatus(&out, "demo", err); st != c.status || out.String() != c.print {
			t.Errorf("%q: status %d printing %q, want %d printing %q", c.args, st, out.String(), c.status, c.print)
		}
	}
}

func TestServer(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := NewFlagSet("demo", &bytes.Buffer{})
	from := Server(fs, "from", "upstream", "required", "DMWORKER_TEST_NO_SUCH_ENV")
	if from.Given() {
		t.Fatal("given before parsing")
	}
	if err := Parse(fs, []string{"-from", "u@127.0.0.1:3307", "-from-password-file", pw}); err != nil {
		t.Fatal(err)
	}
	up, err := from.Config()
	if err != nil || !from.Given() || up.User != "u" || up.Password != "s3cret" || up.Port != 3307 {
		t.Fatalf("config %v (password %q), %v", up, up.Password, err)
	}
	if u := fs.Lookup("from").Usage; !strings.Contains(u, "(required)") || !strings.Contains(u, "-from-password-file") {
		t.Errorf("usage %q", u)
	}
}

func TestList(t *testing.T) {
	if got := List(" a, ,b ,"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("List: %q", got)
	}
	if got := List(""); got != nil {
		t.Errorf("List of nothing: %q", got)
	}
}

func TestHoldIdle(t *testing.T) {
	if IdleHeld(context.Background()) {
		t.Fatal("a context without a hold is held")
	}
	ctx, release := HoldIdle(context.Background())
	if !IdleHeld(ctx) {
		t.Fatal("HoldIdle's context is not held")
	}
	release()
	release() // a second release is harmless
	if IdleHeld(ctx) {
		t.Fatal("still held after release")
	}
}
