#!/usr/bin/env bash
# Local reader vs go-mysql's BinlogParser.ParseFile, over the same relay files.
#
# Starts a throwaway MariaDB (max_binlog_size 64 MiB) with
# internal/cmd/throwaway, fills its binlog to at least FILL_MB MB (default
# 520) with the workload in bench/localread, lays the files out as a relay
# directory, stops the server, then runs BenchmarkLocalReader and
# BenchmarkParseFile (streamer/local_bench_test.go) ROUNDS times each
# (default 7), alternating, one pass over all files per run. Prints each run
# and a markdown table of the medians: MB/s, events/s, allocations, and the
# ratio local/ParseFile. BenchmarkParseReaderBuffered (ParseReader over a
# 256 KiB bufio.Reader: ParseFile without its two read calls per event) runs
# too, as a stricter floor. Progress goes to stderr, the table to stdout. The
# server and every file are removed on exit, Ctrl-C included.
#
# Usage: FILL_MB=520 ROUNDS=5 bench/local-read.sh
#        KEEP_RELAY=DIR bench/local-read.sh   (reuse or keep the relay in DIR)
# Needs: go, mariadbd (Debian: apt-get install mariadb-server).
set -euo pipefail

cd "$(dirname "$0")/.."
fill_mb=${FILL_MB:-520}
rounds=${ROUNDS:-7}
work=$(mktemp -d "${TMPDIR:-/tmp}/local-read.XXXXXX")
relay=${KEEP_RELAY:-$work/relay}
throwaway_pid=

stop_server() {
	if [[ -n $throwaway_pid ]]; then
		# throwaway stops and removes its servers on SIGTERM.
		kill -TERM "$throwaway_pid" 2>/dev/null || true
		wait "$throwaway_pid" 2>/dev/null || true
		throwaway_pid=
	fi
}
cleanup() {
	stop_server
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "$(date +%H:%M:%S) $*" >&2; }

go test -c -o "$work/streamer.test" ./streamer

if [[ ! -f $relay/server-uuid.index ]]; then
	go build -o "$work/throwaway" ./internal/cmd/throwaway
	go build -o "$work/localread" ./bench/localread
	"$work/throwaway" -n 1 -max-binlog-size $((64 << 20)) -dir "$work/servers" -env "$work/env" \
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
	UPSTREAM_DSN=$UPSTREAM_DSN "$work/localread" -relay "$relay" -datadir "$UPSTREAM_DATADIR" -fill-mb "$fill_mb"
	stop_server
else
	log "reusing the relay in $relay"
fi
mariadbd_bin=$(command -v mariadbd || echo /usr/sbin/mariadbd)
version=$("$mariadbd_bin" --version 2>/dev/null | awk '{print $3}' || true)

files=$(find "$relay" -type f -name '*.[0-9]*' ! -name '.*' | wc -l)
bytes=$(find "$relay" -type f -name '*.[0-9]*' ! -name '.*' -printf '%s\n' | awk '{s += $1} END {print s}')

# One benchmark run: prints "MB/s events/s B/op allocs/op MB/cpu-s events/cpu-s".
run() {
	DMWORKER_BENCH_BINLOG_DIR=$relay "$work/streamer.test" -test.run '^$' -test.bench "^$1\$" \
		-test.benchtime 1x -test.benchmem 2>&1 |
		awk -v name="$1" '
			$1 ~ "^"name {
				for (i = 2; i <= NF; i++) {
					if ($i == "MB/s") mb = $(i-1)
					if ($i == "events/s") ev = $(i-1)
					if ($i == "B/op") bop = $(i-1)
					if ($i == "allocs/op") aop = $(i-1)
					if ($i == "MB/cpu-s") cmb = $(i-1)
					if ($i == "events/cpu-s") cev = $(i-1)
				}
				found = 1
			}
			{ out = out $0 "\n" }
			END {
				if (!found) { printf "%s", out > "/dev/stderr"; exit 1 }
				print mb, ev, bop, aop, cmb, cev
			}'
}

: >"$work/local"
: >"$work/parse"
: >"$work/buffered"
for i in $(seq "$rounds"); do
	l=$(run BenchmarkLocalReader)
	log "run $i LocalReader:    $l (MB/s events/s B/op allocs/op MB/cpu-s events/cpu-s)"
	echo "$l" >>"$work/local"
	p=$(run BenchmarkParseFile)
	log "run $i ParseFile:      $p"
	echo "$p" >>"$work/parse"
	b=$(run BenchmarkParseReaderBuffered)
	log "run $i ParseReader+buf: $b"
	echo "$b" >>"$work/buffered"
done

median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -v c="$2" '{print $c}' "$1" | median; }

for r in local parse buffered; do
	for c in 1 2 3 4 5 6; do
		declare "${r}_$c=$(col "$work/$r" "$c")"
	done
done

cpu=$(awk -F: '/model name/ {gsub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo)
echo "Machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
echo "Relay: $files files, $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1e6}') MB of MariaDB ${version:-?} binlog (bench/localread workload), page cache warm"
echo "Go: $(go env GOVERSION); go-mysql $(go list -m -f '{{.Version}}' github.com/go-mysql-org/go-mysql)"
echo
load=$(cut -d' ' -f1-3 /proc/loadavg)
echo "Load average at the end: $load (wall-clock figures suffer from other processes; per-CPU-second ones much less)"
echo
echo "| run | reader | MB/s | events/s | MB/cpu-s |"
echo "|---|---|---:|---:|---:|"
paste "$work/local" "$work/parse" "$work/buffered" | awk '{
	printf "| %d | LocalReader | %s | %s | %s |\n", NR, $1, $2, $5
	printf "| %d | ParseFile | %s | %s | %s |\n", NR, $7, $8, $11
	printf "| %d | ParseReader + bufio | %s | %s | %s |\n", NR, $13, $14, $17
}'
echo
echo "Medians of $rounds runs each (MB = 10^6 bytes; events = real binlog events):"
echo
echo "| reader | MB/s | events/s | MB/cpu-s | events/cpu-s | B/op | allocs/op |"
echo "|---|---:|---:|---:|---:|---:|---:|"
echo "| streamer.LocalReader (CRC32, decode, positions, GTIDs) | $local_1 | $local_2 | $local_5 | $local_6 | $local_3 | $local_4 |"
echo "| go-mysql BinlogParser.ParseFile (CRC32, decode) | $parse_1 | $parse_2 | $parse_5 | $parse_6 | $parse_3 | $parse_4 |"
echo "| go-mysql ParseReader over bufio, 256 KiB (CRC32, decode) | $buffered_1 | $buffered_2 | $buffered_5 | $buffered_6 | $buffered_3 | $buffered_4 |"
echo
awk -v l="$local_1" -v p="$parse_1" -v lc="$local_5" -v pc="$parse_5" -v bc="$buffered_5" -v b="$buffered_1" 'BEGIN {
	printf "Ratio LocalReader/ParseFile: %.2f by median MB/s, %.2f by median MB/cpu-s\n", l / p, lc / pc
	printf "Ratio LocalReader/(ParseReader + bufio): %.2f by median MB/s, %.2f by median MB/cpu-s\n", l / b, lc / bc
}'
