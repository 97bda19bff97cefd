#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages dmworker's tests and demo need
# when they are missing: mariadb-server, mariadb-client, sysbench,
# percona-toolkit (pt-online-schema-change), mydumper (bench/snapshot.sh),
# mariadb-test (MariaDB's own test suite, TestSyncerMTR's workload). Needs root
# (or sudo).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mariadbd || need+=(mariadb-server)
have mariadb-install-db || need+=(mariadb-server)
have mariadb-binlog || need+=(mariadb-client)
have mariadb || need+=(mariadb-client)
have sysbench || need+=(sysbench) # the syncer's workload tests
have pt-online-schema-change || need+=(percona-toolkit) # the online schema change tests
have mydumper || need+=(mydumper) # bench/snapshot.sh compares with mydumper + myloader
have mariadb-test || need+=(mariadb-test) # TestSyncerMTR runs MariaDB's own test files
for p in "$@"; do # extra packages asked for by the caller, e.g. sysbench
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package starts a system-wide server on port 3306; the tests start
# their own throwaway servers and do not need it.
if pgrep -x mariadbd >/dev/null 2>&1 && [ -f /run/mysqld/mysqld.pid ]; then
	$sudo service mariadb stop >/dev/null 2>&1 || true
fi
