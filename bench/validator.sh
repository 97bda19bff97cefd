#!/usr/bin/env bash
# The continuous validator's cost on the parallel syncer's apply throughput
# (issue #16): the same recorded sysbench binlog applied by a SubTask
# (mysqlsink, WORKERS workers) to three fresh downstreams, with validation
# off, fast and full, in one run, one after the other.
#
# Starts four throwaway MariaDB servers; "upstream" records sysbench
# WORKLOAD (prepare included) on TABLES tables of SIZE rows for SECONDS_RUN
# seconds with THREADS threads; then bench/validator applies the whole
# binlog from mysql-bin.000001:4 in each mode. Apply seconds run until the
# syncer's checkpoint reaches the binlog's end; "validated" until the
# validator has checked every row too. Each downstream must end equal to the
# upstream (CHECKSUM TABLE) and the validator must record no error row.
#
# With PROFILE=DIR, each mode's run writes a CPU profile to DIR/MODE.pprof
# (go tool pprof -top DIR/full.pprof) and a heap profile to DIR/MODE.heap
# when the syncer has applied the binlog. MODES (default "off fast full")
# picks the modes; ROUNDS (default 1) runs them that many times, alternated,
# each on a downstream emptied first.
#
# Usage: WORKLOAD=oltp_write_only TABLES=8 SIZE=10000 SECONDS_RUN=15 THREADS=8 WORKERS=16 bench/validator.sh
# Needs: go, mariadb-server, mariadb-client, sysbench (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${WORKLOAD:-oltp_write_only} tables=${TABLES:-8} size=${SIZE:-10000} secs=${SECONDS_RUN:-15}
threads=${THREADS:-8} workers=${WORKERS:-16}
work=$(mktemp -d "${TMPDIR:-/tmp}/validator-bench.XXXXXX")
pid=
cleanup() {
	[[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/validator" ./bench/validator
"$work/throwaway" -n 4 -server-id-base 701 -max-binlog-size $((256 << 20)) -dir "$work/servers" -env "$work/env" >"$work/throwaway.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [[ -f $work/env ]] && break; sleep 0.2; done
[[ -f $work/env ]] || { cat "$work/throwaway.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
q() { local h=$1 p=$2; shift 2; mariadb --protocol=tcp -h "$h" -P "$p" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD" "$@"; }
up() { q "$UPSTREAM_HOST" "$UPSTREAM_PORT" "$@"; }

echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
up -e "CREATE DATABASE sbtest"
sbargs=(--db-driver=mysql --mysql-host="$UPSTREAM_HOST" --mysql-port="$UPSTREAM_PORT" --mysql-user="$UPSTREAM_USER"
	--mysql-password="$UPSTREAM_PASSWORD" --mysql-db=sbtest --tables="$tables" --table-size="$size")
echo "recording: sysbench $workload prepare + run, $tables tables x $size rows, ${secs}s, $threads threads" >&2
sysbench "$workload" "${sbargs[@]}" prepare >/dev/null
sysbench "$workload" "${sbargs[@]}" --threads="$threads" --time="$secs" --events=0 run >/dev/null

results=()
runs=()
for _ in $(seq 1 "${ROUNDS:-1}"); do
	for m in off:DOWNSTREAM fast:UPSTREAM2 full:UPSTREAM3; do
		[[ " ${MODES:-off fast full} " == *" ${m%%:*} "* ]] && runs+=("$m")
	done
done
for m in "${runs[@]}"; do
	mode=${m%%:*} v=${m#*:}
	h=${v}_HOST p=${v}_PORT
	# A fresh downstream each time (ROUNDS > 1 applies to the same server again).
	q "${!h}" "${!p}" -e "DROP DATABASE IF EXISTS sbtest; DROP DATABASE IF EXISTS dmworker_meta"
	prof=()
	[[ -n ${PROFILE:-} ]] && { mkdir -p "$PROFILE"; prof=(-cpuprofile "$PROFILE/$mode-${#results[@]}.pprof" -memprofile "$PROFILE/$mode-${#results[@]}.heap"); }
	out=$("$work/validator" -mode "$mode" -workers "$workers" "${prof[@]}" \
		-upstream "$UPSTREAM_USER:$UPSTREAM_PASSWORD@$UPSTREAM_HOST:$UPSTREAM_PORT" \
		-downstream "$UPSTREAM_USER:$UPSTREAM_PASSWORD@${!h}:${!p}")
	echo "$out (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
	for i in $(seq 1 "$tables"); do
		u=$(up -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
		d=$(q "${!h}" "${!p}" -N -e "CHECKSUM TABLE sbtest.sbtest$i" | awk '{print $2}')
		[[ $u == "$d" ]] || { echo "mode $mode: sbtest$i differs: upstream $u downstream $d" >&2; exit 1; }
	done
	results+=("$out")
done
echo "machine after: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "${results[@]}" <<'PY'
import json, statistics, sys
rs = [json.loads(a) for a in sys.argv[1:]]
print("| validation | load at start | apply s | rows/s | vs off | validated s | rows checked | error rows | peak RSS MB | peak live heap MB | validator peak MB | CPU s ours / up / down | downstream SELECTs | downstream Handler_read_key |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
base = None
for r in rs:
    if r["mode"] == "off":
        base = r["rows_per_s"]
    v = f"{r['validated_s']:.2f}" if r["mode"] != "off" else ""
    vs = f"{r['rows_per_s']/base*100:.0f}%" if base else ""
    d = r["downstream"]
    print(f"| {r['mode']} | {r['load']} | {r['seconds']:.2f} | {r['rows_per_s']:.0f} | {vs} | {v} | {r['checked']} | {r['error_rows']} | {r['peak_rss_kb']/1024:.1f} | {r.get('peak_live_heap_mb', 0):.1f} | {r['validator_peak_bytes']/(1<<20):.1f} | {r['cpu_s']:.2f} / {r['upstream_cpu_s']:.2f} / {r['downstream_cpu_s']:.2f} | {d.get('Com_select', 0)} | {d.get('Handler_read_key', 0)} |")
    if r["error_rows"]:
        sys.exit(f"mode {r['mode']}: {r['error_rows']} error rows")
if len(rs) > 3:
    print()
    print("| validation | runs | median rows/s | vs off (medians) | median CPU s ours + up + down |")
    print("|---|---:|---:|---:|---:|")
    modes = [m for m in ("off", "fast", "full") if any(r["mode"] == m for r in rs)]
    med = {m: statistics.median(r["rows_per_s"] for r in rs if r["mode"] == m) for m in modes}
    for m in modes:
        cpu = statistics.median(r["cpu_s"] + r["upstream_cpu_s"] + r["downstream_cpu_s"] for r in rs if r["mode"] == m)
        rel = f"{med[m]/med['off']*100:.0f}%" if "off" in med else ""
        print(f"| {m} | {sum(r['mode'] == m for r in rs)} | {med[m]:.0f} | {rel} | {cpu:.2f} |")
PY
