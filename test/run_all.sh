#!/usr/bin/env bash
# pg_dialer's whole test suite, on a fresh Debian 12 machine or a developer's:
#
#   bash test/run_all.sh        (what `make test` and .ci/run run)
#
# 1. installs what is missing (test/install-deps.sh), builds and installs the extension;
# 2. starts ONE throwaway cluster (test/lib/cluster.sh, pg_cron and pg_dialer preloaded) in a
#    temporary directory on a free port, and stops it on exit whatever happens;
# 3. runs, continuing after a failing suite:
#      a. pg_regress: sql/*.sql against expected/*.out, in database dialer_regress (no worker);
#      b. pg_prove: test/pgtap/*.sql, in database dialer_tap (pgtap and pg_dialer created);
#         a file whose first lines contain "-- pg_prove database: NAME" runs in NAME instead
#         (e.g. dialer_test, the only database where pg_cron can be created);
#      c. node --test: test/sim/**/*.test.js and test/integration/**/*.test.js, one file at a
#         time, with PGHOST, PGPORT, PGUSER, DIALER_DB (the worker's database, dialer_test,
#         where pg_cron and pg_dialer are created), DIALER_CLUSTER_DIR (the cluster's
#         directory: data/ and postgres.log; restart with
#         `runuser -u postgres -- $DIALER_PGBIN/pg_ctl -D $DIALER_CLUSTER_DIR/data
#         -l $DIALER_CLUSTER_DIR/postgres.log -w restart`),
#         DIALER_PGBIN and DIALER_PID_FILE (a test appends the PID of every server it starts,
#         one per line; they are killed on exit if still running);
# 4. prints "pg_dialer: N passed, M failed" and exits non-zero if anything failed or nothing ran.
#
# Environment: DIALER_KEEP=1 keeps the temporary directory (logs, regress results);
# DIALER_SKIP_DEPS=1 skips step 1's package check (for quick reruns);
# DIALER_SUITES="regress pgtap node" chooses the suites;
# DIALER_ONLY=REGEX runs only the test files whose path matches REGEX (extended grep);
# DIALER_PGBIN=DIR uses another PostgreSQL 15 tree (e.g. a relocated copy of Debian's, so that
# several developers on one machine each build and install into their own).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

PGBIN=${DIALER_PGBIN:-/usr/lib/postgresql/15/bin}
export PGBIN
PG_CONFIG=$PGBIN/pg_config
suites=${DIALER_SUITES:-regress pgtap node}

passed=0
failed=0
work=
cluster=
port=
child=

log() { echo "== $*"; }

# true when FILE is to run (DIALER_ONLY unset, or FILE matches it)
selected() { [ -z "${DIALER_ONLY:-}" ] || grep -qE -- "$DIALER_ONLY" <<<"$1"; }

finish() {
	local rc=$?
	trap - EXIT INT TERM
	# a suite still running (interrupted): its whole process group
	if [ -n "$child" ]; then
		kill -TERM -- "-$child" 2>/dev/null && sleep 2
		kill -KILL -- "-$child" 2>/dev/null
	fi
	# servers the tests started and recorded
	if [ -n "$work" ] && [ -s "$work/pids" ]; then
		local pid pids=()
		while read -r pid; do
			[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && pids+=("$pid")
		done <"$work/pids"
		if [ ${#pids[@]} -gt 0 ]; then
			kill "${pids[@]}" 2>/dev/null
			sleep 1
			for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
		fi
	fi
	[ -n "$cluster" ] && bash "$repo/test/lib/cluster.sh" stop "$cluster"
	if [ -n "$work" ]; then
		if [ "${DIALER_KEEP:-0}" = 1 ]; then
			echo "kept $work"
		else
			rm -rf "$work"
		fi
	fi
	exit "$rc"
}
trap finish EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

# Runs a command with a time limit in its own session (so an interrupt, a TERM from CI or the
# limit ends all its processes, and our traps run at once instead of after it), its output
# going to LOG ("-": our own stdout); returns its status, 124 when the limit was hit.
run_bounded() {
	local secs=$1 out=$2 rc
	shift 2
	if [ "$out" = - ]; then
		setsid timeout -k 10 "$secs" "$@" &
	else
		setsid timeout -k 10 "$secs" "$@" >"$out" 2>&1 &
	fi
	child=$!
	wait "$child"
	rc=$?
	child=
	[ "$rc" = 124 ] && echo "run_all: timed out after $secs s: $*" >&2
	return "$rc"
}

summary() {
	echo "pg_dialer: $passed passed, $failed failed"
	if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then exit 1; fi
	exit 0
}

# An infrastructure failure (dependencies, build, cluster) ends the run as a failure.
fatal() {
	echo "run_all: $*" >&2
	failed=$((failed + 1))
	summary
}

start=$(date +%s)

# 1. dependencies, build, install
if [ "${DIALER_SKIP_DEPS:-0}" != 1 ]; then
	log "dependencies"
	bash test/install-deps.sh || fatal "installing dependencies failed"
fi
log "build and install"
work=$(mktemp -d "${TMPDIR:-/tmp}/pg_dialer_test.XXXXXX") || fatal "mktemp failed"
chmod 755 "$work"
if ! flock /tmp/pg_dialer_build.lock make install PG_CONFIG="$PG_CONFIG" >"$work/build.log" 2>&1; then
	tail -n 60 "$work/build.log"
	fatal "build failed"
fi
grep -E 'warning:|error:' "$work/build.log" || true

# 2. the cluster: the first free port from 56000 + (PID mod 500), retried on a lost race
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((56000 + $$ % 500))
for try in 1 2 3 4 5; do
	while ! port_free "$port"; do port=$((port + 1)); done
	cluster="$work/cluster$try"
	log "cluster in $cluster on port $port"
	# cluster.sh runs initdb/pg_ctl as postgres, which must not need to read the repo
	# pgtap_settings.conf: where test/pgtap/api_settings.sql writes candidate setting lines
	# for pg_file_settings to validate (the running server never applies them)
	if (cd / && DIALER_EXTRA_CONF="${DIALER_EXTRA_CONF:-}
include_if_exists = 'pgtap_settings.conf'" bash "$repo/test/lib/cluster.sh" start "$cluster" "$port") \
		>"$work/cluster$try.log" 2>&1; then
		break
	fi
	cat "$work/cluster$try.log"
	bash "$repo/test/lib/cluster.sh" stop "$cluster"
	cluster=
	port=$((port + 1))
done
[ -n "$cluster" ] || fatal "could not start a cluster"

psql_admin() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }

# the worker's database (also pg_cron's) and the pgTAP database
psql_admin -d dialer_test -c 'CREATE EXTENSION pg_cron' -c 'CREATE EXTENSION pg_dialer' \
	|| fatal "could not create the extensions in dialer_test"
psql_admin -d postgres -c 'CREATE DATABASE dialer_tap' \
	&& psql_admin -d dialer_tap -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION pg_dialer' \
	|| fatal "could not create database dialer_tap"

export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
export DIALER_DB=dialer_test DIALER_CLUSTER_DIR=$cluster DIALER_PGBIN=$PGBIN
export DIALER_PID_FILE=$work/pids
: >"$DIALER_PID_FILE"

# 3a. pg_regress
run_regress() {
	local tests=() f out="$work/regress" rc n_ok n_fail
	for f in sql/*.sql; do
		[ -e "$f" ] || continue
		case "$(basename "$f")" in pg_dialer--*) continue ;; esac
		selected "$f" || continue
		tests+=("$(basename "$f" .sql)")
	done
	if [ ${#tests[@]} -eq 0 ]; then
		log "pg_regress: no tests"
		return
	fi
	log "pg_regress: ${tests[*]}"
	mkdir -p "$out"
	run_bounded 300 "$out/run.log" "$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
		--host 127.0.0.1 --port "$port" --user postgres --dbname dialer_regress \
		--inputdir . --outputdir "$out" --bindir "$PGBIN" "${tests[@]}"
	rc=$?
	cat "$out/run.log"
	n_ok=$(grep -cE '^(test| )? *[^ ]+ +\.\.\. ok' "$out/run.log")
	n_fail=$(grep -cE '\.\.\. FAILED' "$out/run.log")
	if [ "$rc" != 0 ] && [ "$n_fail" -eq 0 ]; then n_fail=1; fi
	if [ -s "$out/regression.diffs" ]; then
		log "regression.diffs"
		cat "$out/regression.diffs"
	fi
	passed=$((passed + n_ok))
	failed=$((failed + n_fail))
	log "pg_regress: $n_ok passed, $n_fail failed"
}

# 3b. pg_prove, grouped by the database each file asks for
run_pgtap() {
	local f db dbs=() files rc n_total n_bad n_missing n_noplan n_pass n_fail
	declare -A groups=()
	for f in test/pgtap/*.sql; do
		[ -e "$f" ] || continue
		selected "$f" || continue
		db=$(head -n 5 "$f" | sed -n 's/^-- *pg_prove database: *\([A-Za-z0-9_]*\).*/\1/p' | head -n 1)
		db=${db:-dialer_tap}
		[ -n "${groups[$db]+x}" ] || dbs+=("$db")
		groups[$db]+="$f "
	done
	if [ ${#dbs[@]} -eq 0 ]; then
		log "pg_prove: no tests"
		return
	fi
	for db in "${dbs[@]}"; do
		# shellcheck disable=SC2206
		files=(${groups[$db]})
		if [ "$db" != dialer_tap ]; then
			psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
				|| psql_admin -d postgres -c "CREATE DATABASE \"$db\""
			psql_admin -d "$db" -c 'CREATE EXTENSION IF NOT EXISTS pgtap' \
				-c 'CREATE EXTENSION IF NOT EXISTS pg_dialer'
		fi
		log "pg_prove ($db): ${files[*]}"
		run_bounded 300 "$work/pgtap-$db.log" pg_prove --psql-bin "$PGBIN/psql" -h 127.0.0.1 -p "$port" \
			-U postgres -d "$db" --failures "${files[@]}"
		rc=$?
		cat "$work/pgtap-$db.log"
		n_total=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$work/pgtap-$db.log" | tail -n 1)
		n_total=${n_total:-0}
		# TAP::Harness's summary has "FILE (Wstat: W Tests: T Failed: F)" for each file with
		# failures (F counts tests run beyond the plan too); tests planned but never run (a
		# file that died half-way) and files without any plan count as failed as well
		n_bad=$(sed -n 's/.*(Wstat: .*Tests: [0-9]* Failed: \([0-9]*\)).*/\1/p' "$work/pgtap-$db.log" \
			| awk '{s+=$1} END {print s+0}')
		n_missing=$(sed -n 's/.*Bad plan.  *You planned \([0-9]*\) tests but ran \([0-9]*\).*/\1 \2/p' "$work/pgtap-$db.log" \
			| awk '$1>$2 {s+=$1-$2} END {print s+0}')
		n_noplan=$(grep -c 'No plan found in TAP output' "$work/pgtap-$db.log")
		n_pass=$((n_total - n_bad))
		n_fail=$((n_bad + n_missing + n_noplan))
		if [ "$rc" != 0 ] && [ "$n_fail" -eq 0 ]; then n_fail=1; fi
		passed=$((passed + n_pass))
		failed=$((failed + n_fail))
		log "pg_prove ($db): $n_pass passed, $n_fail failed"
	done
}

# 3c. node's test runner, one file at a time (also on node 18, which has no --test-concurrency)
run_node() {
	local files=() d f tap="$work/node.tap" rc n_pass n_fail
	for d in test/sim test/integration; do
		[ -d "$d" ] || continue
		while IFS= read -r f; do selected "$f" && files+=("$f"); done < <(find "$d" -name '*.test.js' -type f | sort)
	done
	if [ ${#files[@]} -eq 0 ]; then
		log "node: no tests"
		return
	fi
	if ! command -v node >/dev/null 2>&1; then
		failed=$((failed + 1))
		log "node: node is not installed"
		return
	fi
	local cmd=(node --test --test-reporter=spec --test-reporter-destination=stdout
		--test-reporter=tap --test-reporter-destination="$tap")
	if [ "${DIALER_NODE_PER_FILE:-0}" != 1 ] && node --help 2>/dev/null | grep -q -- '--test-concurrency'; then
		log "node: ${files[*]}"
		run_bounded 720 - "${cmd[@]}" --test-concurrency=1 "${files[@]}"
		rc=$?
		n_pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -n 1)
		n_fail=$(sed -n 's/^# \(fail\|cancelled\) \([0-9]*\)$/\2/p' "$tap" 2>/dev/null | awk '{s+=$1} END {print s+0}')
		n_pass=${n_pass:-0}
		if [ "$rc" != 0 ] && [ "$n_fail" -eq 0 ]; then n_fail=1; fi
	else
		n_pass=0
		n_fail=0
		for f in "${files[@]}"; do
			log "node: $f"
			rm -f "$tap"
			run_bounded 600 - "${cmd[@]}" "$f"
			rc=$?
			local p q
			p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -n 1)
			q=$(sed -n 's/^# \(fail\|cancelled\) \([0-9]*\)$/\2/p' "$tap" 2>/dev/null | awk '{s+=$1} END {print s+0}')
			if [ "$rc" != 0 ] && [ "$q" -eq 0 ]; then q=1; fi
			n_pass=$((n_pass + ${p:-0}))
			n_fail=$((n_fail + q))
		done
	fi
	passed=$((passed + n_pass))
	failed=$((failed + n_fail))
	log "node: $n_pass passed, $n_fail failed"
}

for s in $suites; do
	case "$s" in
	regress) run_regress ;;
	pgtap) run_pgtap ;;
	node) run_node ;;
	*) fatal "unknown suite $s" ;;
	esac
done

if [ "$failed" -gt 0 ] && [ -f "$cluster/postgres.log" ]; then
	log "server log: crashes, fatal errors and warnings ($cluster/postgres.log)"
	grep -E 'PANIC|FATAL|WARNING|TRAP|terminated by signal|exited with exit code' "$cluster/postgres.log" | tail -n 40
fi
log "finished in $(($(date +%s) - start)) s"
summary
