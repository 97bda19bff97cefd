#!/usr/bin/env bash
# make demo: start a throwaway upstream MariaDB, write a small workload, and
# tail its binlog with examples/binlogtail (from the start, then by GTID).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/dmworker-demo.XXXXXX)
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== building"
go build -o "$work/throwaway" ./internal/cmd/throwaway
go build -o "$work/binlogtail" ./examples/binlogtail

echo "== starting a throwaway upstream MariaDB (binlog on, ROW, GTID)"
"$work/throwaway" -n 1 -dir "$work/servers" -env "$work/env" &
pid=$!
for _ in $(seq 1 600); do
	[ -s "$work/env" ] && break
	kill -0 "$pid" 2>/dev/null || { echo "throwaway server failed to start" >&2; exit 1; }
	sleep 0.1
done
[ -s "$work/env" ] || { echo "throwaway server did not come up in 60s" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
from="${UPSTREAM_USER}:${UPSTREAM_PASSWORD}@${UPSTREAM_HOST}:${UPSTREAM_PORT}"
echo "upstream at ${UPSTREAM_HOST}:${UPSTREAM_PORT}"

sql() { mariadb --default-character-set=utf8mb4 --protocol=tcp -h "$UPSTREAM_HOST" -P "$UPSTREAM_PORT" -u "$UPSTREAM_USER" -p"$UPSTREAM_PASSWORD" "$@"; }

echo "== writing a small workload"
sql <<'SQL'
CREATE DATABASE shop;
CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2));
INSERT INTO shop.items VALUES (1, 'apple', 0.50), (2, 'pear', 0.75), (3, 'fig', 1.20);
BEGIN;
UPDATE shop.items SET price = price * 1.1 WHERE id IN (1, 2);
DELETE FROM shop.items WHERE id = 3;
INSERT INTO shop.items VALUES (4, 'kiwi 🥝', 0.99);
COMMIT;
ALTER TABLE shop.items ADD COLUMN stock INT NOT NULL DEFAULT 0;
UPDATE shop.items SET stock = 10;
SQL
gtid=$(sql -N -e 'SELECT @@gtid_binlog_pos')

echo
echo "== go run ./examples/binlogtail -from '${UPSTREAM_USER}:***@${UPSTREAM_HOST}:${UPSTREAM_PORT}' -pos mysql-bin.000001:4 -exit-when-idle 2s"
"$work/binlogtail" -from "$from" -pos mysql-bin.000001:4 -exit-when-idle 2s

first=$(sql -N -e "SELECT CONCAT(@@gtid_domain_id, '-', @@server_id, '-', 3)")
echo
echo "== the same upstream from GTID ${first} (skips the first three transactions; the server is at ${gtid})"
"$work/binlogtail" -from "$from" -gtid "$first" -flavor mariadb -exit-when-idle 2s
echo
echo "demo done: every event above came from the live upstream through streamer.RemoteReader"
