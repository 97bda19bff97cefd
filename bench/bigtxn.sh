#!/usr/bin/env bash
# Memory of the parallel syncer through one huge upstream transaction
# (issue: Syncer at speed): the upstream commits ROWS rows (default 1,000,000)
# into one table in ONE transaction; the syncer (16 workers) applies it to a
# fresh downstream once per queue budget in BUDGETS_MB, each in a fresh
# process, and reports its peak RSS next to the budget. The downstream must
# end equal to the upstream (CHECKSUM TABLE) every time.
#
# Usage: ROWS=1000000 BUDGETS_MB="8 64" bench/bigtxn.sh
# Needs: go, mariadb-server, mariadb-client (Debian packages).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-1000000} budgets=${BUDGETS_MB:-"8 64"}
work=$(mktemp -d "${TMPDIR:-/tmp}/bigtxn-bench.XXXXXX")
pid=
cleanup() {
	[[ -n $pid ]] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/syncer" ./bench/syncer
"$work/throwaway" -n 2 -server-id-base 611 -dir "$work/servers" -env "$work/env" >"$work/throwaway.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [[ -f $work/env ]] && break; sleep 0.2; done
[[ -f $work/env ]] || { cat "$work/throwaway.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
q() { local h=$1 p=$2; shift 2; mariadb --protocol=tcp -h "$h" -P "$p" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD" "$@"; }
up() { q "$UPSTREAM_HOST" "$UPSTREAM_PORT" "$@"; }
down() { q "$DOWNSTREAM_HOST" "$DOWNSTREAM_PORT" "$@"; }

echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
up -e "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)"
echo "recording: one transaction of $rows rows" >&2
up -e "BEGIN; INSERT INTO big.t SELECT seq, seq % 1000, REPEAT(CHAR(97 + seq % 26), 120), REPEAT('p', 60) FROM big.seq_1_to_$rows; COMMIT"
bytes=$(up -N -e "SHOW BINARY LOGS" | awk '{s+=$2} END {print s}')
want=$(up -N -e "CHECKSUM TABLE big.t" | awk '{print $2}')
echo "binlog: $bytes bytes" >&2

echo "| queue budget MB | seconds | rows/s | peak RSS MB | RSS - budget MB |"
echo "|---:|---:|---:|---:|---:|"
for mb in $budgets; do
	down -e "DROP DATABASE IF EXISTS big; DROP DATABASE IF EXISTS dmworker_meta"
	out=$("$work/syncer" -workers 16 -queue-bytes $((mb << 20)) \
		-upstream "$UPSTREAM_USER:$UPSTREAM_PASSWORD@$UPSTREAM_HOST:$UPSTREAM_PORT" \
		-downstream "$DOWNSTREAM_USER:$DOWNSTREAM_PASSWORD@$DOWNSTREAM_HOST:$DOWNSTREAM_PORT")
	got=$(down -N -e "CHECKSUM TABLE big.t" | awk '{print $2}')
	[[ $got == "$want" ]] || { echo "budget $mb MB: downstream checksum $got, upstream $want" >&2; echo "$out" >&2; down -e "SHOW DATABASES; SELECT * FROM dmworker_meta.checkpoint\\G" >&2; exit 1; }
	python3 - "$out" "$mb" <<'PY'
import json, sys
o = json.loads(sys.argv[1]); mb = int(sys.argv[2]); rss = o["peak_rss_kb"] / 1024
print(f"| {mb} | {o['seconds']:.2f} | {o['rows_per_s']:.0f} | {rss:.1f} | {rss - mb:.1f} |")
PY
done
echo "downstream equal to the upstream after every run (CHECKSUM TABLE)" >&2
