#!/usr/bin/env bash
# Snapshot (mode full's copy) vs `mariadb-dump | mariadb` vs mydumper +
# myloader, copying the same sysbench tables into three fresh downstreams,
# in one run.
#
# Starts six throwaway MariaDB servers (upstream, downstream, upstream2..5),
# prepares sysbench's tables upstream (TABLES tables of SIZE rows), then
# copies schema sbtest with
#   ours:     the snapshot unit + mysqlsink (THREADS connections) into "downstream"
#   ours WithoutBinlog: the same with mysqlsink.WithoutBinlog (the
#             downstream's binlog skipped, as myloader does) into "upstream5"
#   dump:     mariadb-dump --single-transaction | mariadb into "upstream2"
#   mydumper: mydumper -t THREADS then myloader -t THREADS into "upstream3"
#             (myloader's session skips the downstream's binlog by default)
#   mydumper -e: the same with myloader -e (binlog written, as by ours
#             and mariadb) into "upstream4"
# checks every table against the upstream (CHECKSUM TABLE) and prints rows/s,
# MB/s, CPU time, peak RSS and the ratios. Servers and files are removed on
# exit.
#
# Usage: TABLES=8 SIZE=1000000 THREADS=4 bench/snapshot.sh
# Needs: go, mariadb-server, mariadb-client, sysbench, mydumper (Debian
# packages).
set -euo pipefail
cd "$(dirname "$0")/.."
tables=${TABLES:-8} size=${SIZE:-1000000} threads=${THREADS:-4}
work=$(mktemp -d "${TMPDIR:-/tmp}/snapshot-bench.XXXXXX")
pid=
cleanup() {
	[[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

for bin in sysbench mariadb-dump mariadb mydumper myloader; do
	command -v "$bin" >/dev/null || { echo "$bin not found (apt-get install sysbench mariadb-client mydumper)" >&2; exit 1; }
done
go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/snapshot" ./bench/snapshot
go test -c -o "$work/dmworker.test" .
"$work/throwaway" -n 6 -server-id-base 360 -dir "$work/servers" -env "$work/env" >"$work/throwaway.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [[ -f $work/env ]] && break; sleep 0.2; done
[[ -f $work/env ]] || { cat "$work/throwaway.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
mariadb --protocol=tcp -h "$UPSTREAM_HOST" -P "$UPSTREAM_PORT" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD" -e "CREATE DATABASE sbtest"
echo "preparing: sysbench oltp_write_only prepare, $tables tables x $size rows" >&2
t0=$(date +%s)
sysbench oltp_write_only --db-driver=mysql --mysql-host="$UPSTREAM_HOST" --mysql-port="$UPSTREAM_PORT" \
	--mysql-user="$UPSTREAM_USER" --mysql-password="$UPSTREAM_PASSWORD" --mysql-db=sbtest \
	--tables="$tables" --table-size="$size" --threads=2 prepare >/dev/null
echo "prepared in $(($(date +%s) - t0))s" >&2

d() { local n=$1; eval "echo \"\${${n}_USER}:\${${n}_PASSWORD}@\${${n}_HOST}:\${${n}_PORT}\""; }
"$work/snapshot" -upstream "$(d UPSTREAM)" -ours "$(d DOWNSTREAM)" -dump "$(d UPSTREAM2)" -mydumper "$(d UPSTREAM3)" -mydumper-binlog "$(d UPSTREAM4)" -ours-nobinlog "$(d UPSTREAM5)" \
	-test-bin "$work/dmworker.test" -schema sbtest -threads "$threads" -dir "$work"
