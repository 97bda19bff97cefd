#!/usr/bin/env bash
# Parallel syncer vs MariaDB's native parallel replica vs single-threaded
# replay, applying the same recorded sysbench binlog to three fresh
# downstreams, in one run (issue: Syncer at speed).
#
# Starts four throwaway MariaDB servers with identical settings (binlog on,
# log_slave_updates, sync_binlog=0, innodb_flush_log_at_trx_commit=2):
# "upstream" records sysbench WORKLOAD (prepare included) on TABLES tables of
# SIZE rows, run for SECONDS_RUN seconds with THREADS client threads; then the
# whole binlog, from mysql-bin.000001:4, is applied by
#   ours:    dmworker.Syncer (defaults, or WORKERS, BATCH) + mysqlsink   -> "downstream"
#   replica: CHANGE MASTER TO upstream, slave_parallel_threads=16,
#            slave_parallel_mode=optimistic, START SLAVE                 -> "upstream2"
#   replay:  mariadb-binlog <binlog files> | mariadb                     -> "upstream3"
# one after the other (two cores: running them together would measure the
# scheduler). Each must end with every table equal to the upstream's
# (CHECKSUM TABLE). Prints rows/s, events/s, seconds, our peak RSS, the
# ratios, and the CPU seconds each applier cost: its own process, the
# server it writes, the upstream serving its binlog dump (on a busy shared
# machine wall time follows the CPU an applier needs more than anything).
#
# WORKLOAD is a sysbench script (oltp_write_only, oltp_insert, ...) or
# "hotkey", a workload built to conflict (bench/hotkey.lua): every
# transaction updates one of the first HOT_ROWS (16) rows of each of the
# first HOT_TABLES (2) tables, from all THREADS threads.
#
# Usage: WORKLOAD=oltp_write_only TABLES=8 SIZE=20000 SECONDS_RUN=30 THREADS=8 bench/parallel.sh
#        WORKERS, BATCH: SyncerConfig.Workers, BatchSize (unset or 0: the
#        library's defaults); COMPACT=false runs ours with NoCompact,
#        COMPACT=true with Compact (the default),
#        add CPUPROFILE=/tmp/syncer.pprof for a profile of our run,
#        METRICS=true to run ours with WithMetrics (a registry gathered every second).
# Needs: go, mariadb-server, mariadb-client, sysbench (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${WORKLOAD:-oltp_write_only} tables=${TABLES:-8} size=${SIZE:-20000} secs=${SECONDS_RUN:-30}
threads=${THREADS:-8} workers=${WORKERS:-0} batch=${BATCH:-0} compact=${COMPACT:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/parallel-bench.XXXXXX")
pid=
cleanup() {
	[[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/syncer" ./bench/syncer
"$work/throwaway" -n 4 -server-id-base 601 -max-binlog-size $((256 << 20)) -dir "$work/servers" -env "$work/env" >"$work/throwaway.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [[ -f $work/env ]] && break; sleep 0.2; done
[[ -f $work/env ]] || { cat "$work/throwaway.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
q() { local h=$1 p=$2; shift 2; mariadb --protocol=tcp -h "$h" -P "$p" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD" "$@"; }
up() { q "$UPSTREAM_HOST" "$UPSTREAM_PORT" "$@"; }

# CPU seconds (user + system) a server has used so far, by its datadir.
srvcpu() {
	local pid
	pid=$(pgrep -f -- "--datadir=$1( |$)" | head -1)
	awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$pid/stat"
}
sub() { python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$1" "$2"; }

echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
up -e "CREATE DATABASE sbtest"
sbscript=$workload hot=()
if [[ $workload == hotkey ]]; then
	sbscript=bench/hotkey.lua
	hot=(--hot-tables="${HOT_TABLES:-2}" --hot-rows="${HOT_ROWS:-16}")
fi
sbargs=(${hot[@]+"${hot[@]}"} --db-driver=mysql --mysql-host="$UPSTREAM_HOST" --mysql-port="$UPSTREAM_PORT" --mysql-user="$UPSTREAM_USER"
	--mysql-password="$UPSTREAM_PASSWORD" --mysql-db=sbtest --tables="$tables" --table-size="$size")
echo "recording: sysbench $workload prepare + run, $tables tables x $size rows, ${secs}s, $threads threads" >&2
sysbench "$sbscript" "${sbargs[@]}" prepare >/dev/null
sysbench "$sbscript" "${sbargs[@]}" --threads="$threads" --time="$secs" --events=0 run >/dev/null
read -r mfile mpos < <(up -N -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
binlogs=$(up -N -e "SHOW BINARY LOGS" | awk -v d="$UPSTREAM_DATADIR" '{print d "/" $1}')
bytes=$(up -N -e "SHOW BINARY LOGS" | awk '{s+=$2} END {print s}')
first=$(up -N -e "SHOW BINARY LOGS" | head -1 | awk '{print $1}')
echo "binlog: $bytes bytes in $(echo "$binlogs" | wc -l) files, ends at $mfile:$mpos" >&2

echo "ours: dmworker.Syncer + mysqlsink (workers $workers, batch $batch; 0: the default; compact ${compact:-default})" >&2
cflag=()
[[ $compact == true ]] && cflag=(-compact)
[[ $compact == false ]] && cflag=(-no-compact)
[[ ${METRICS:-false} == true ]] && cflag+=(-metrics)
u0=$(srvcpu "$UPSTREAM_DATADIR") d0=$(srvcpu "$DOWNSTREAM_DATADIR")
ours=$("$work/syncer" -workers "$workers" -batch "$batch" "${cflag[@]}" ${CPUPROFILE:+-cpuprofile "$CPUPROFILE"} \
	-upstream "$UPSTREAM_USER:$UPSTREAM_PASSWORD@$UPSTREAM_HOST:$UPSTREAM_PORT" \
	-downstream "$DOWNSTREAM_USER:$DOWNSTREAM_PASSWORD@$DOWNSTREAM_HOST:$DOWNSTREAM_PORT")
echo "$ours" >&2
ours_up=$(sub "$(srvcpu "$UPSTREAM_DATADIR")" "$u0") ours_down=$(sub "$(srvcpu "$DOWNSTREAM_DATADIR")" "$d0")
questions=$(q "$DOWNSTREAM_HOST" "$DOWNSTREAM_PORT" -N -e "SHOW GLOBAL STATUS LIKE 'Questions'" | awk '{print $2}')
echo "ours: the downstream answered $questions statements:" \
	"$(q "$DOWNSTREAM_HOST" "$DOWNSTREAM_PORT" -N -e "SHOW GLOBAL STATUS WHERE Variable_name IN
	('Com_insert','Com_update','Com_delete','Com_replace','Com_select','Com_set_option','Com_begin','Com_commit')" | tr '\t\n' '= ')" >&2

echo "replica: native parallel replication (slave_parallel_threads=16, optimistic)" >&2
rep() { q "$UPSTREAM2_HOST" "$UPSTREAM2_PORT" "$@"; }
rep -e "SET GLOBAL slave_parallel_threads = 16; SET GLOBAL slave_parallel_mode = 'optimistic';
	CHANGE MASTER TO MASTER_HOST='$UPSTREAM_HOST', MASTER_PORT=$UPSTREAM_PORT, MASTER_USER='$UPSTREAM_USER',
	MASTER_PASSWORD='$UPSTREAM_PASSWORD', MASTER_LOG_FILE='$first', MASTER_LOG_POS=4, MASTER_USE_GTID=no"
u0=$(srvcpu "$UPSTREAM_DATADIR") d0=$(srvcpu "$UPSTREAM2_DATADIR")
r0=$(date +%s.%N)
rep -e "START SLAVE"
while :; do
	st=$(rep -e "SHOW SLAVE STATUS\G")
	rfile=$(awk '/ Relay_Master_Log_File:/ {print $2}' <<<"$st")
	rpos=$(awk '/ Exec_Master_Log_Pos:/ {print $2}' <<<"$st")
	[[ $rfile == "$mfile" && $rpos -ge $mpos ]] && break
	if grep -q "Last_SQL_Errno: [1-9]" <<<"$st"; then echo "$st" >&2; exit 1; fi
	sleep 0.02
done
r1=$(date +%s.%N)
rep_up=$(sub "$(srvcpu "$UPSTREAM_DATADIR")" "$u0") rep_down=$(sub "$(srvcpu "$UPSTREAM2_DATADIR")" "$d0")
rep -e "STOP SLAVE"

echo "replay: mariadb-binlog | mariadb" >&2
d0=$(srvcpu "$UPSTREAM3_DATADIR")
t0=$(date +%s.%N)
# shellcheck disable=SC2086
/usr/bin/time -f "%U %S" -o "$work/replay.time" mariadb-binlog $binlogs | /usr/bin/time -f "%U %S" -o "$work/client.time" \
	mariadb --protocol=tcp -h "$UPSTREAM3_HOST" -P "$UPSTREAM3_PORT" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD"
t1=$(date +%s.%N)
replay_down=$(sub "$(srvcpu "$UPSTREAM3_DATADIR")" "$d0")
replay_tools=$(cat "$work/replay.time" "$work/client.time" | awk '{s += $1 + $2} END {printf "%.2f", s}')

for i in $(seq 1 "$tables"); do
	u=$(up -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
	a=$(q "$DOWNSTREAM_HOST" "$DOWNSTREAM_PORT" -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
	b=$(rep -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
	c=$(q "$UPSTREAM3_HOST" "$UPSTREAM3_PORT" -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
	[[ $u == "$a" && $u == "$b" && $u == "$c" ]] || { echo "sbtest$i differs: upstream $u ours $a replica $b replay $c" >&2; exit 1; }
done
echo "all $tables tables equal the upstream on all three downstreams (CHECKSUM TABLE)" >&2

python3 - "$ours" "$r0" "$r1" "$t0" "$t1" "$bytes" "$workload" "$ours_up" "$ours_down" "$rep_up" "$rep_down" "$replay_tools" "$replay_down" <<'PY'
import json, sys
o = json.loads(sys.argv[1]); rt = float(sys.argv[3]) - float(sys.argv[2]); t = float(sys.argv[5]) - float(sys.argv[4])
ou, od, ru, rd, tt, td = (float(x) for x in sys.argv[8:14])
b = int(sys.argv[6]); rows, ev = o["rows"], o["events"]
print(f"workload {sys.argv[7]}: {b/1e6:.1f} MB of binlog, {rows} row changes, {ev} events")
print("| applier | seconds | rows/s | events/s | peak RSS MB |")
print("|---|---:|---:|---:|---:|")
print(f"| dmworker.Syncer ({o['workers']} workers) + mysqlsink | {o['seconds']:.2f} | {o['rows_per_s']:.0f} | {o['events_per_s']:.0f} | {o['peak_rss_kb']/1024:.1f} |")
print(f"| MariaDB replica, 16 parallel threads, optimistic | {rt:.2f} | {rows/rt:.0f} | {ev/rt:.0f} | |")
print(f"| mariadb-binlog \\| mariadb | {t:.2f} | {rows/t:.0f} | {ev/t:.0f} | |")
print(f"\nours/replica: {rt/o['seconds']:.2f}   ours/replay: {t/o['seconds']:.2f}   (conflict waits: {o['conflicts']})")
print("\nCPU seconds each applier cost (user + system; upstream: its binlog dump):")
print("| applier | applier process | downstream server | upstream server | total |")
print("|---|---:|---:|---:|---:|")
print(f"| ours | {o['cpu_s']:.2f} | {od:.2f} | {ou:.2f} | {o['cpu_s'] + od + ou:.2f} |")
print(f"| replica | | {rd:.2f} | {ru:.2f} | {rd + ru:.2f} |")
print(f"| replay | {tt:.2f} (mariadb-binlog + mariadb) | {td:.2f} | | {tt + td:.2f} |")
PY
