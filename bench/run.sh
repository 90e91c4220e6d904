#!/usr/bin/env bash
# pg_dialer benchmarks: `make bench`.
#
# Starts throwaway clusters (pg_dialer and pg_cron preloaded, fsync and
# synchronous_commit on, as in production), runs the dispatch benchmark (W1, W1 baseline,
# W2, W3, worker memory) and, when present, the webhook benchmark, prints their figures,
# and stops everything it started, whatever happens.  Benchmarks are not tests: they print
# figures and exit 0 unless something breaks.
set -euo pipefail
cd "$(dirname "$0")/.."

bash test/install-deps.sh
make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null

# Each benchmark gets a fresh cluster of its own, so that one's checkpoints and autovacuum
# (the dispatch benchmark writes hundreds of thousands of rows) do not slow the other.
dir=""
cleanup() {
	if [ -n "$dir" ]; then
		test/lib/cluster.sh stop "$dir" || true
		rm -rf "$dir"
	fi
	dir=""
}
trap cleanup EXIT INT TERM

start_cluster() {
	dir=$(mktemp -d /tmp/pg_dialer_bench.XXXXXX)
	port=${BENCH_PORT:-56900}
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
	DIALER_EXTRA_CONF=$'fsync = on\nsynchronous_commit = on\nfull_page_writes = on\nshared_buffers = 256MB' \
		test/lib/cluster.sh start "$dir" "$port" dialer_bench
	export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres DIALER_DB=dialer_bench DIALER_CLUSTER_DIR=$dir
}

echo "== dispatch (bench/dispatch.js)"
start_cluster
node bench/dispatch.js
cleanup

echo "== webhooks (bench/webhooks.js)"
start_cluster
node bench/webhooks.js
cleanup
