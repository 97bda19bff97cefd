#!/usr/bin/env bash
# Syncer vs `mariadb-binlog <files> | mariadb`, applying the same recorded
# sysbench binlog to two fresh downstreams, in one run.
#
# Starts three throwaway MariaDB servers (upstream, downstream, upstream2 used
# as the second downstream), records sysbench oltp_write_only on TABLES
# tables of SIZE rows (prepare included) for SECONDS_RUN seconds into the
# upstream's binlog, then applies the whole binlog:
#   ours:   dmworker.Syncer (1 worker) + mysqlsink into "downstream"
#   native: mariadb-binlog <upstream's binlog files> | mariadb into "upstream2"
# and prints rows/s of both (rows = row changes in the binlog, counted by the
# syncer) and the ratio. Checks that both downstreams end equal to the
# upstream (CHECKSUM TABLE). Servers and files are removed on exit.
#
# Usage: TABLES=8 SIZE=20000 SECONDS_RUN=20 bench/syncer.sh   (SECONDS is bash's own)
# Needs: go, mariadb-server, mariadb-client, sysbench (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
tables=${TABLES:-8} size=${SIZE:-20000} secs=${SECONDS_RUN:-20}
work=$(mktemp -d "${TMPDIR:-/tmp}/syncer-bench.XXXXXX")
pid=
cleanup() {
	[[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/syncer" ./bench/syncer
"$work/throwaway" -n 3 -max-binlog-size $((256 << 20)) -dir "$work/servers" -env "$work/env" >"$work/throwaway.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [[ -f $work/env ]] && break; sleep 0.2; done
[[ -f $work/env ]] || { cat "$work/throwaway.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
q() { local h=$1 p=$2; shift 2; mariadb --protocol=tcp -h "$h" -P "$p" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD" "$@"; }

q "$UPSTREAM_HOST" "$UPSTREAM_PORT" -e "CREATE DATABASE sbtest"
sbargs=(--db-driver=mysql --mysql-host="$UPSTREAM_HOST" --mysql-port="$UPSTREAM_PORT" --mysql-user="$UPSTREAM_USER"
	--mysql-password="$UPSTREAM_PASSWORD" --mysql-db=sbtest --tables="$tables" --table-size="$size")
echo "recording: sysbench oltp_write_only prepare + run, $tables tables x $size rows, ${secs}s" >&2
sysbench oltp_write_only "${sbargs[@]}" prepare >/dev/null
sysbench oltp_write_only "${sbargs[@]}" --threads=2 --time="$secs" --events=0 run >/dev/null
binlogs=$(q "$UPSTREAM_HOST" "$UPSTREAM_PORT" -N -e "SHOW BINARY LOGS" | awk -v d="$UPSTREAM_DATADIR" '{print d "/" $1}')
bytes=$(q "$UPSTREAM_HOST" "$UPSTREAM_PORT" -N -e "SHOW BINARY LOGS" | awk '{s+=$2} END {print s}')
echo "binlog: $bytes bytes in $(echo "$binlogs" | wc -l) files" >&2

echo "ours: dmworker.Syncer + mysqlsink" >&2
ours=$("$work/syncer" -workers 1 -upstream "$UPSTREAM_USER:$UPSTREAM_PASSWORD@$UPSTREAM_HOST:$UPSTREAM_PORT" \
	-downstream "$DOWNSTREAM_USER:$DOWNSTREAM_PASSWORD@$DOWNSTREAM_HOST:$DOWNSTREAM_PORT")
echo "$ours" >&2

echo "native: mariadb-binlog | mariadb" >&2
t0=$(date +%s.%N)
# shellcheck disable=SC2086
mariadb-binlog $binlogs | q "$UPSTREAM2_HOST" "$UPSTREAM2_PORT"
t1=$(date +%s.%N)

for i in $(seq 1 "$tables"); do
	u=$(q "$UPSTREAM_HOST" "$UPSTREAM_PORT" -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
	a=$(q "$DOWNSTREAM_HOST" "$DOWNSTREAM_PORT" -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
	b=$(q "$UPSTREAM2_HOST" "$UPSTREAM2_PORT" -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
	[[ $u == "$a" && $u == "$b" ]] || { echo "sbtest$i differs: upstream $u ours $a native $b" >&2; exit 1; }
done
echo "all $tables tables equal the upstream on both downstreams (CHECKSUM TABLE)" >&2

python3 - "$ours" "$t0" "$t1" "$bytes" <<'PY'
import json, sys
o = json.loads(sys.argv[1]); t = float(sys.argv[3]) - float(sys.argv[2]); b = int(sys.argv[4])
rows = o["rows"]
print("| applier | rows | seconds | rows/s | binlog MB/s |")
print("|---|---:|---:|---:|---:|")
print(f"| dmworker.Syncer (1 worker, batch 100) + mysqlsink | {rows} | {o['seconds']:.2f} | {o['rows_per_s']:.0f} | {o['mb_per_s']:.1f} |")
print(f"| mariadb-binlog \\| mariadb | {rows} | {t:.2f} | {rows/t:.0f} | {b/1e6/t:.1f} |")
print(f"\nRatio ours/native (rows/s): {o['rows_per_s']/(rows/t):.2f}")
PY
