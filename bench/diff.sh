#!/usr/bin/env bash
# dmworker.Diff vs CHECKSUM TABLE on both sides vs a row-by-row stream of
# both sides, over the same sysbench tables, in one run.
#
# Starts two throwaway MariaDB servers, prepares sysbench's tables upstream
# (TABLES tables of SIZE rows), copies them downstream (mariadb-dump
# --single-transaction | mariadb), then runs bench/diff, which times each
# way ROUNDS times, alternated, WORKERS at a time, and prints a Markdown
# table. Servers and files are removed on exit.
#
# Usage: TABLES=8 SIZE=200000 WORKERS=4 ROUNDS=3 bench/diff.sh
# Needs: go, mariadb-server, mariadb-client, sysbench (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
tables=${TABLES:-8} size=${SIZE:-200000} workers=${WORKERS:-4} rounds=${ROUNDS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/diff-bench.XXXXXX")
pid=
cleanup() {
	[[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

for bin in sysbench mariadb-dump mariadb; do
	command -v "$bin" >/dev/null || { echo "$bin not found (apt-get install sysbench mariadb-client)" >&2; exit 1; }
done
go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/diff" ./bench/diff
"$work/throwaway" -n 2 -server-id-base 370 -dir "$work/servers" -env "$work/env" >"$work/throwaway.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [[ -f $work/env ]] && break; sleep 0.2; done
[[ -f $work/env ]] || { cat "$work/throwaway.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
up=(--protocol=tcp -h "$UPSTREAM_HOST" -P "$UPSTREAM_PORT" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD")
down=(--protocol=tcp -h "$DOWNSTREAM_HOST" -P "$DOWNSTREAM_PORT" -u "$DOWNSTREAM_USER" -p"$DOWNSTREAM_PASSWORD")
mariadb "${up[@]}" -e "CREATE DATABASE sbtest"
echo "preparing: sysbench oltp_write_only prepare, $tables tables x $size rows, copied downstream" >&2
t0=$(date +%s)
sysbench oltp_write_only --db-driver=mysql --mysql-host="$UPSTREAM_HOST" --mysql-port="$UPSTREAM_PORT" \
	--mysql-user="$UPSTREAM_USER" --mysql-password="$UPSTREAM_PASSWORD" --mysql-db=sbtest \
	--tables="$tables" --table-size="$size" --threads=2 prepare >/dev/null
mariadb-dump "${up[@]}" --single-transaction --databases sbtest | mariadb "${down[@]}"
echo "prepared in $(($(date +%s) - t0))s" >&2

d() { local n=$1; eval "echo \"\${${n}_USER}:\${${n}_PASSWORD}@\${${n}_HOST}:\${${n}_PORT}\""; }
"$work/diff" -upstream "$(d UPSTREAM)" -downstream "$(d DOWNSTREAM)" -schema sbtest -workers "$workers" -rounds "$rounds"
