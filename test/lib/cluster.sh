#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for tests, benchmarks and the demo.
#
#   test/lib/cluster.sh start DIR PORT [DB]   initdb (as postgres) in DIR, preload pg_cron and
#                                             pg_dialer, start on 127.0.0.1:PORT, create DB
#                                             (default dialer_test: the one database served
#                                             by dispatchers, dialer.databases, and pg_cron's)
#   test/lib/cluster.sh stop DIR              stop it (by the postmaster's PID file)
#
# Extra postgresql.conf lines can be given in $DIALER_EXTRA_CONF (newline-separated).
# Connect with: psql -h 127.0.0.1 -p PORT -U postgres DB
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: cluster.sh start DIR PORT [DB] | stop DIR}
dir=${2:?cluster directory required}

as_postgres() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
	port=${3:?port required}
	db=${4:-dialer_test}
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
	as_postgres "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
		|| { cat "$dir/initdb.log"; exit 1; }
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron,pg_dialer'
cron.database_name = '$db'
cron.use_background_workers = on
dialer.databases = '$db'
max_worker_processes = 32
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %b '
${DIALER_EXTRA_CONF:-}
CONF
	as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
		|| { cat "$dir/postgres.log"; exit 1; }
	as_postgres "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
	;;
stop)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || {
			pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
			[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
		}
	fi
	;;
*)
	echo "usage: cluster.sh start DIR PORT [DB] | stop DIR" >&2
	exit 2
	;;
esac
