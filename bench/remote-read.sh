#!/usr/bin/env bash
# Remote reader vs `mariadb-binlog --read-from-remote-server --raw`.
#
# Starts a throwaway MariaDB (max_binlog_size 256 MiB) with
# internal/cmd/throwaway, fills its binlog to at least 512 MB with the
# generator in bench/remoteread, then drains it 3 times each way, alternating,
# and prints a markdown table of MB/s, events/s, seconds, peak RSS, CPU and
# the ratio ours/native. Progress goes to stderr, the table to stdout.
# The server and every file are removed on exit, Ctrl-C included.
#
# Usage: bench/remote-read.sh [remoteread flags, e.g. -fill-mb 1000 -runs 5 -cpuprofile /tmp/drain.pprof]
# -mixed adds a third reader per run: ours with a table filter that keeps
# half the tables (half the rows), as a syncer replicating them reads.
# Needs: go, mariadbd, mariadb-binlog (Debian: apt-get install mariadb-server mariadb-client).
set -euo pipefail

cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/remote-read.XXXXXX")
throwaway_pid=
driver_pid=

cleanup() {
	if [[ -n $driver_pid ]]; then
		kill -TERM "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
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
# command lines. The driver runs in the background so that a signal to this
# script interrupts the wait at once (bash runs traps only between commands).
REMOTEREAD_UPSTREAM="$UPSTREAM_USER:$UPSTREAM_PASSWORD@$UPSTREAM_HOST:$UPSTREAM_PORT" \
	"$work/remoteread" -dir "$work/scratch" "$@" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=
exit "$status"
