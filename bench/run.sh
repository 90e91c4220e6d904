#!/usr/bin/env bash
# pg_dialer benchmarks: `make bench`.
#
# Starts throwaway clusters (pg_dialer and pg_cron preloaded, fsync and
# synchronous_commit on, as in production) and runs, each on a fresh cluster of its own:
#   1. bench/e2e.js: pg_dialer beside Graphile Worker (the whole trip, enqueue included, on a
#      fresh and on a warm queue; the enqueue benchmark; CPU per call; the ratios);
#   2. bench/dispatch.js: W3 (commit-to-request latency) and, with BENCH_ALL=1, its other
#      parts (worker memory over 100,000 calls, the seed-system poller baseline);
#   3. bench/webhooks.js, when present.
# Prints their figures and stops everything it started, whatever happens. Benchmarks are not
# tests: they print figures and exit 0 unless something breaks.
#
# Environment: DIALER_PGBIN=DIR uses another PostgreSQL 15 tree (as test/run_all.sh does);
# DIALER_SKIP_DEPS=1 skips the package check; W1_CALLS, W2_CALLS, ENQ_CALLS, ENQ_SINGLE_CALLS,
# WARM_CALLS, BENCH_ONLY and BENCH_REPEAT (default 5 runs of W1 and W2, medians compared)
# (bench/e2e.js) change the sizes and parts; DIALER_BENCH_POLICY=US-TCPA
# (or US-FL) also runs pg_dialer's W1 and W2 with that calling policy preset on every call and
# prints with / without side by side (bench/e2e.js says which numbers and window it used).
set -euo pipefail
cd "$(dirname "$0")/.."

PGBIN=${DIALER_PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
[ "${DIALER_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
make -s PG_CONFIG="$PGBIN/pg_config" >/dev/null
make -s install PG_CONFIG="$PGBIN/pg_config" >/dev/null

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
	DIALER_EXTRA_CONF=$'fsync = on\nsynchronous_commit = on\nfull_page_writes = on\nshared_buffers = 256MB\nmax_wal_size = 4GB' \
		test/lib/cluster.sh start "$dir" "$port" dialer_bench
	export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres DIALER_DB=dialer_bench DIALER_CLUSTER_DIR=$dir
}

echo "== pg_dialer beside Graphile Worker (bench/e2e.js)"
start_cluster
node bench/e2e.js
cleanup

echo "== dispatch latency (bench/dispatch.js)"
start_cluster
if [ "${BENCH_ALL:-0}" = 1 ]; then
	node bench/dispatch.js
else
	BENCH_ONLY=w3 node bench/dispatch.js
fi
cleanup

if [ -f bench/webhooks.js ]; then
	echo "== webhooks (bench/webhooks.js)"
	start_cluster
	node bench/webhooks.js
	cleanup
fi
