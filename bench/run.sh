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
#
# BENCH_BASELINE=REF (a commit of this repository: a hash, branch, tag or HEAD~5) runs, instead
# of all the above, W1 and W2 of two builds side by side in one run (bench/compare.js): REF,
# built from `git archive` into a relocated copy of PGBIN's PostgreSQL tree in a temporary
# directory, and the working tree, installed into PGBIN as always; one cluster for each, each
# preloading its own library and creating its own build's extension. The temporary directory
# (the copy, REF's source, both clusters) is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

PGBIN=${DIALER_PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
if [ -n "${BENCH_BASELINE:-}" ]; then
	base_commit=$(git rev-parse --verify --quiet "${BENCH_BASELINE}^{commit}") || {
		echo "bench: BENCH_BASELINE=$BENCH_BASELINE names no commit of this repository" >&2
		exit 2
	}
fi
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

# the first port from $1 on where nothing listens (without BENCH_PORT, $1 is drawn at random,
# so that runs on one machine at once, a benchmark's and a test suite's, rarely meet)
BENCH_PORT=${BENCH_PORT:-$((20000 + RANDOM % 30000))}
free_port() {
	local p=$1
	while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
	echo "$p"
}

# a cluster in DIR on PORT with production durability, served by $PGBIN's build
launch_cluster() {
	DIALER_EXTRA_CONF=$'fsync = on\nsynchronous_commit = on\nfull_page_writes = on\nshared_buffers = 256MB\nmax_wal_size = 4GB' \
		test/lib/cluster.sh start "$1" "$2" dialer_bench
}

start_cluster() {
	dir=$(mktemp -d /tmp/pg_dialer_bench.XXXXXX)
	port=$(free_port "$BENCH_PORT")
	launch_cluster "$dir" "$port"
	export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres DIALER_DB=dialer_bench DIALER_CLUSTER_DIR=$dir
}

# ---- BENCH_BASELINE: two builds side by side
top=""
base_bin=""

# Stops both clusters (each with its own tree's pg_ctl, while the tree is still there) and
# removes the temporary directory.
compare_cleanup() {
	[ -n "$top" ] || return 0
	[ ! -d "$top/before" ] || PGBIN=${base_bin:-$PGBIN} test/lib/cluster.sh stop "$top/before" || true
	[ ! -d "$top/after" ] || test/lib/cluster.sh stop "$top/after" || true
	rm -rf "$top"
	echo "bench: stopped both clusters and removed $top"
	top=""
}

# Builds commit $1 into $top/tree, a relocated copy of PGBIN's PostgreSQL tree (relocated
# binaries and pg_config find their lib and share directories beside them, as
# test/integration/upgrade.test.js builds 0.1.0), without the pg_dialer installed there;
# sets base_bin to the copy's bin directory.
build_baseline() {
	local lib=$top/tree/usr/lib/postgresql/15 share=$top/tree/usr/share/postgresql/15 t0=$SECONDS
	mkdir -p "$top/src" "$(dirname "$lib")" "$(dirname "$share")" "$top/tree/usr/include"
	git archive "$1" | tar -x -C "$top/src"
	cp -a "$(cd "$PGBIN/.." && pwd -P)" "$lib"
	cp -a "$("$PGBIN/pg_config" --sharedir)" "$share"
	ln -s /usr/include/postgresql "$top/tree/usr/include/postgresql"
	rm -f "$share"/extension/pg_dialer[-.]* "$lib/lib/pg_dialer.so"
	if [ "$("$lib/bin/pg_config" --pkglibdir)" != "$lib/lib" ]; then
		echo "bench: the copy of $PGBIN's tree does not find its own lib directory" >&2
		return 1
	fi
	make -C "$top/src" -j2 install PG_CONFIG="$lib/bin/pg_config" >"$top/build.log" 2>&1 || {
		tail -n 40 "$top/build.log"
		echo "bench: building BENCH_BASELINE=$BENCH_BASELINE failed" >&2
		return 1
	}
	base_bin=$lib/bin
	echo "bench: built $BENCH_BASELINE into $top/tree in $((SECONDS - t0)) s"
}

if [ -n "${BENCH_BASELINE:-}" ]; then
	top=$(mktemp -d /tmp/pg_dialer_bench_compare.XXXXXX)
	chmod 755 "$top"
	trap compare_cleanup EXIT INT TERM
	echo "== W1 and W2 of two builds side by side (bench/compare.js)"
	build_baseline "$base_commit"
	before_port=$(free_port "$BENCH_PORT")
	PGBIN=$base_bin launch_cluster "$top/before" "$before_port"
	after_port=$(free_port $((before_port + 1)))
	launch_cluster "$top/after" "$after_port"
	after_label="the working tree at $(git log -1 --format=%h HEAD)"
	git diff --quiet HEAD -- || after_label+=" with uncommitted changes"
	subject=$(git log -1 --format=%s "$base_commit")
	[ ${#subject} -le 100 ] || subject="${subject:0:97}..."
	PGHOST=127.0.0.1 PGUSER=postgres DIALER_DB=dialer_bench \
		BENCH_BEFORE_LABEL="BENCH_BASELINE=$BENCH_BASELINE: $(git log -1 --format=%h "$base_commit") $subject" \
		BENCH_BEFORE_PORT=$before_port BENCH_BEFORE_DIR=$top/before \
		BENCH_AFTER_LABEL="$after_label" BENCH_AFTER_PORT=$after_port BENCH_AFTER_DIR=$top/after \
		node bench/compare.js
	exit 0
fi

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
