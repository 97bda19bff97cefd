#!/usr/bin/env bash
# make demo: the whole story of a replication cluster, on throwaway servers.
#
#  1. a throwaway upstream and downstream MariaDB (internal/cmd/throwaway)
#     and a throwaway etcd (internal/cmd/etcd, embedded etcd);
#  2. two examples/migrate processes, workers a and b, in cluster mode
#     (-etcd) with a relay log each (-data-dir): their coordinators elect a
#     leader, which binds the upstream to worker a; b stands by;
#     (migrate -check first runs the prechecks: binlog settings,
#     privileges, the tables the filter selects, the relay directory);
#  3. a sysbench write workload on the upstream, while a replicates and
#     prints live progress (rows/s, lag, checkpoint), applying with 16
#     parallel workers (-workers 16, the library's default on 8 or more cores); its status
#     endpoint (-status-addr) is read once: /healthz, /status, /metrics;
#  4. worker a is killed (kill -9) in the middle of the workload: once its
#     registration expires the source is rebound to b, which takes the task
#     over from a's checkpoint and replicates on;
#  5. once the workload is over, b exits when caught up and idle, printing
#     the run's summary (final checkpoint, rows, time, mean rate), and the
#     tables are compared with CHECKSUM TABLE on both sides; then a copy of
#     the tables (-mode full -progress bar) shows the snapshot's progress
#     bar and its summary;
#  6. the same failover in one process: examples/failover (two workers and a
#     coordinator on an embedded etcd), with its own workload and checksum.
#
# Everything it starts is stopped and removed on exit, failure included.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/dmworker-demo.XXXXXX)
pids=()
cleanup() {
	local code=$?
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		if kill -0 "${pids[i]}" 2>/dev/null; then
			kill -TERM "${pids[i]}" 2>/dev/null || true
			wait "${pids[i]}" 2>/dev/null || true
		fi
	done
	rm -rf "$work"
	if [ "$code" -ne 0 ]; then echo "demo FAILED (exit $code)" >&2; fi
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# waitfor FILE PATTERN SECONDS PID: wait until FILE has a line matching
# PATTERN, failing if PID dies or the time runs out.
waitfor() {
	local file=$1 pattern=$2 secs=$3 pid=$4
	for _ in $(seq 1 $((secs * 10))); do
		grep -q -- "$pattern" "$file" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || { echo "process $pid ended before \"$pattern\" in $file" >&2; cat "$file" >&2; return 1; }
		sleep 0.1
	done
	echo "no \"$pattern\" in $file after ${secs}s" >&2
	cat "$file" >&2
	return 1
}

echo "== building"
go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/etcd" ./internal/cmd/etcd
go build -o "$work/migrate" ./examples/migrate
go build -o "$work/failover" ./examples/failover

echo "== starting a throwaway upstream and downstream MariaDB (binlog on, ROW, GTID) and an etcd"
"$work/throwaway" -n 2 -server-id-base 740 -dir "$work/servers" -env "$work/env" >"$work/throwaway.log" 2>&1 &
pids+=($!)
"$work/etcd" -dir "$work/etcd-data" -env "$work/etcd.env" >"$work/etcd.log" 2>&1 &
pids+=($!)
waitfor "$work/throwaway.log" '^downstream ' 120 "${pids[0]}"
waitfor "$work/etcd.log" '^etcd ' 60 "${pids[1]}"
# shellcheck disable=SC1091
. "$work/env"
# shellcheck disable=SC1091
. "$work/etcd.env"
echo "upstream ${UPSTREAM_HOST}:${UPSTREAM_PORT}, downstream ${DOWNSTREAM_HOST}:${DOWNSTREAM_PORT}, etcd ${ETCD_ENDPOINTS}"
q() { local h=$1 p=$2; shift 2; mariadb --protocol=tcp -h "$h" -P "$p" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD" "$@"; }
up() { q "$UPSTREAM_HOST" "$UPSTREAM_PORT" "$@"; }
down() { q "$DOWNSTREAM_HOST" "$DOWNSTREAM_PORT" "$@"; }

# The two workers' output is shown live, one line each, as they print it.
: >"$work/a.log"
: >"$work/b.log"
tail -q -n +1 -f "$work/a.log" "$work/b.log" &
pids+=($!)

# The passwords go through the environment, not the command line (ps shows
# it); the key that seals the upstream's password in etcd, through a file.
export DMWORKER_FROM_PASSWORD="$UPSTREAM_PASSWORD" DMWORKER_TO_PASSWORD="$DOWNSTREAM_PASSWORD"
head -c 32 /dev/urandom | base64 >"$work/credential.key"
chmod 600 "$work/credential.key"
common=(-from "${UPSTREAM_USER}@${UPSTREAM_HOST}:${UPSTREAM_PORT}" -to "${DOWNSTREAM_USER}@${DOWNSTREAM_HOST}:${DOWNSTREAM_PORT}"
	-credential-key-file "$work/credential.key" -mode incremental -tables 'sbtest.*' -workers 16 -etcd "$ETCD_ENDPOINTS" -keepalive-ttl 3s)
echo
echo "== migrate -check: the prechecks (sbtest does not exist yet: its filter warns)"
"$work/migrate" "${common[@]}" -data-dir "$work/a" -check
echo
echo "== migrate -worker a -data-dir DIR/a -workers 16 -etcd $ETCD_ENDPOINTS -keepalive-ttl 3s -status-addr 127.0.0.1:0 (cluster mode, relay on)"
"$work/migrate" "${common[@]}" -worker a -data-dir "$work/a" -status-addr 127.0.0.1:0 >>"$work/a.log" 2>&1 &
apid=$!
pids+=($apid)
waitfor "$work/a.log" 'worker=a pos=' 60 "$apid"
echo "== migrate -worker b -data-dir DIR/b ... -exit-when-idle 3s (stands by)"
"$work/migrate" "${common[@]}" -worker b -data-dir "$work/b" -exit-when-idle 3s >>"$work/b.log" 2>&1 &
bpid=$!
pids+=($bpid)
waitfor "$work/b.log" 'worker=b standby: source .* served by worker a' 60 "$bpid"

echo
echo "== sysbench oltp_write_only on the upstream: prepare (2 tables x 2000 rows), then 20s at 100 transactions/s"
up -e "CREATE DATABASE sbtest"
sb=(--db-driver=mysql --mysql-host="$UPSTREAM_HOST" --mysql-port="$UPSTREAM_PORT" --mysql-user="$UPSTREAM_USER"
	--mysql-password="$UPSTREAM_PASSWORD" --mysql-db=sbtest --tables=2 --table-size=2000)
sysbench oltp_write_only "${sb[@]}" prepare >"$work/sysbench.log" 2>&1
sysbench oltp_write_only "${sb[@]}" --threads=2 --time=20 --rate=100 --events=0 run >>"$work/sysbench.log" 2>&1 &
sbpid=$!
pids+=($sbpid)
sleep 8 # let the workload and worker a run for a while (the show, not a test)

# httpget HOSTPORT PATH prints the body of an HTTP GET (bash's /dev/tcp: no
# curl needed).
httpget() {
	local hp=$1 path=$2
	exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}"
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hp" >&3
	sed '1,/^\r$/d' <&3
	exec 3<&-
}
status=$(grep -o 'serving http://[^/]*/status' "$work/a.log" | head -1 | sed 's|serving http://||; s|/status||')
echo
echo "== worker a's status endpoint, http://$status (/healthz, /status, /metrics)"
echo "GET /healthz: $(httpget "$status" /healthz)"
echo "GET /status (its first 300 bytes): $(httpget "$status" /status | tr -d '\n' | head -c 300)..."
echo "GET /metrics (some of them):"
httpget "$status" /metrics | grep -E '^dmworker_(syncer_row_changes_total|syncer_lag_seconds|relay_events_written_total|keepalive_lease_held)' | sed -n 1,8p

echo
echo "== kill -9 worker a (pid $apid) in the middle of the workload"
kill -KILL "$apid"
wait "$apid" 2>/dev/null || true
echo "== the coordinator rebinds the source to b once a's registration expires (TTL 3s)"
waitfor "$work/b.log" 'worker=b pos=' 60 "$bpid"

wait "$sbpid" || { echo "sysbench failed:" >&2; cat "$work/sysbench.log" >&2; exit 1; }
echo "== workload over: $(grep -E 'transactions:' "$work/sysbench.log" | tr -s ' ')"
echo "== waiting for worker b to catch up and exit (-exit-when-idle 3s)"
for _ in $(seq 1 900); do
	kill -0 "$bpid" 2>/dev/null || break
	sleep 0.2
done
if kill -0 "$bpid" 2>/dev/null; then
	echo "worker b did not exit within 3 minutes" >&2
	exit 1
fi
if ! wait "$bpid"; then
	echo "worker b failed" >&2
	exit 1
fi
sleep 0.5 # let tail print b's last line

echo
echo "== CHECKSUM TABLE on both sides"
tables="sbtest.sbtest1, sbtest.sbtest2"
upsum=$(up -N -e "CHECKSUM TABLE $tables")
downsum=$(down -N -e "CHECKSUM TABLE $tables")
echo "upstream:   $(echo "$upsum" | tr '\n\t' '; ')"
echo "downstream: $(echo "$downsum" | tr '\n\t' '; ')"
if [ "$upsum" != "$downsum" ] || echo "$upsum" | grep -q NULL; then
	echo "TABLES DIFFER" >&2
	exit 1
fi
rows=$(up -N -e "SELECT (SELECT COUNT(*) FROM sbtest.sbtest1) + (SELECT COUNT(*) FROM sbtest.sbtest2)")
echo "tables match (CHECKSUM TABLE): $tables, $rows rows, replicated by worker a then, after a was killed, by worker b"

echo
echo "== migrate -mode full -progress bar: a copy of sbtest into sbcopy (-route 'sbtest:sbcopy'), with its progress bar and summary"
down -e "CREATE DATABASE sbcopy"
"$work/migrate" "${common[@]:0:4}" -task copy -mode full -tables 'sbtest.*' -route 'sbtest:sbcopy' -workers 16 -progress bar
copysum=$(down -N -e "CHECKSUM TABLE sbcopy.sbtest1, sbcopy.sbtest2" | cut -f2)
if [ "$copysum" != "$(echo "$upsum" | cut -f2)" ]; then
	echo "THE COPY DIFFERS" >&2
	exit 1
fi
echo "the copy matches (CHECKSUM TABLE)"

echo
echo "== the same failover in one process: go run ./examples/failover (workers a and b, a coordinator, an embedded etcd)"
"$work/failover" "${common[@]:0:4}" -txns 600 -rate 150 -keepalive-ttl 2s
echo
echo "demo done"
