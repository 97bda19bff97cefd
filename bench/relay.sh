#!/usr/bin/env bash
# dmworker.Relay vs `mariadb-binlog --read-from-remote-server --raw --to-last-log`.
#
# Starts a throwaway MariaDB (max_binlog_size 256 MiB) with
# internal/cmd/throwaway, fills its binlog to at least 1.1 GB with the
# generator in bench/remoteread, then copies it 3 times each way,
# alternating, plus one relay copy of half of it, and prints a markdown table
# of MB/s, seconds, peak RSS, CPU, the ratio relay/native and the relay's peak
# RSS at half and full size. Progress goes to stderr, the table to stdout.
# The server and every file are removed on exit, Ctrl-C included.
#
# Usage: bench/relay.sh [bench/relay flags, e.g. -fill-mb 2000 -runs 5 -cpuprofile /tmp/relay.pprof]
# Needs: go, mariadbd, mariadb-binlog (Debian: apt-get install mariadb-server mariadb-client).
set -euo pipefail

cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/relay-bench.XXXXXX")
throwaway_pid=

cleanup() {
	if [[ -n $throwaway_pid ]]; then
		# throwaway stops and removes its servers on SIGTERM.
		kill -TERM "$throwaway_pid" 2>/dev/null || true
		wait "$throwaway_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/remoteread" ./bench/remoteread
go build -o "$work/relaybench" ./bench/relay

"$work/throwaway" -n 1 -max-binlog-size $((256 << 20)) -dir "$work/servers" -env "$work/env" \
	>"$work/throwaway.log" 2>&1 &
throwaway_pid=$!
for _ in $(seq 300); do
	[[ -f $work/env ]] && break
	if ! kill -0 "$throwaway_pid" 2>/dev/null; then
		cat "$work/throwaway.log" >&2
		exit 1
	fi
	sleep 1
done
[[ -f $work/env ]] || { echo "throwaway did not start in 300 s" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"

# The upstream goes through the environment so that the password stays off
# command lines.
RELAYBENCH_UPSTREAM="$UPSTREAM_USER:$UPSTREAM_PASSWORD@$UPSTREAM_HOST:$UPSTREAM_PORT" \
	"$work/relaybench" -remoteread "$work/remoteread" -dir "$work/scratch" "$@"
