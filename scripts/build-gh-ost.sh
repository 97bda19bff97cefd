#!/usr/bin/env bash
# Builds gh-ost v1.1.6 from its Go module for the online-DDL tests and
# prints the binary's path. Usage: build-gh-ost.sh [build-dir]
# (default ${DMWORKER_TOOLS_DIR:-$HOME/.cache/dmworker}/gh-ost-v1.1.6).
# The module is downloaded with `go mod download`, copied, its vendor/
# removed (dependencies come from the module proxy), and its connection
# setup patched for MariaDB: MariaDB 10.11 has no transaction_isolation
# session variable, only tx_isolation. The binary is cached: a second run
# only prints its path.
set -euo pipefail
version=v1.1.6
dir=${1:-${DMWORKER_TOOLS_DIR:-$HOME/.cache/dmworker}/gh-ost-$version}
bin=$dir/gh-ost
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp"
src=$(GOFLAGS=-mod=mod go mod download -json "github.com/github/gh-ost@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] || { echo "go mod download github.com/github/gh-ost@$version gave no directory" >&2; exit 1; }
cp -r "$src" "$tmp/gh-ost"
chmod -R u+w "$tmp/gh-ost"
cd "$tmp/gh-ost"
rm -rf vendor
sed -i 's/transaction_isolation=%q/tx_isolation=%q/' go/mysql/connection.go
grep -q 'tx_isolation=%q' go/mysql/connection.go || { echo "gh-ost: connection setup not patched" >&2; exit 1; }
GOFLAGS=-mod=mod go build -o "$bin.tmp" ./go/cmd/gh-ost >&2
mv "$bin.tmp" "$bin"
echo "$bin"
