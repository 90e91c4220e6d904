#!/usr/bin/env bash
# pg_dialer's demo, the whole loop in one command:
#
#   make demo            (or: bash test/demo.sh; as root on a fresh Debian 12 machine)
#
# 1. installs what is missing (test/install-deps.sh), builds and installs the extension;
# 2. starts a throwaway cluster (test/lib/cluster.sh: pg_cron and pg_dialer preloaded) in a
#    temporary directory on a free 127.0.0.1 port, database dialer_demo, with the calling
#    window open all day and dialer.reconcile_after at 20 s;
# 3. runs test/demo.js, which starts the Twilio and AI-backend simulators, PostgREST and nginx
#    as shipped in deploy/, loads examples/02_insurance_renewals.sql and
#    examples/04_ai_agent_one_off.sql, shows the calls moving live, then dialer.stats(), a
#    summary and its checks (exit status 1 when a check fails);
# 4. stops everything it started, by PID, when it ends, fails or is interrupted (Ctrl-C,
#    SIGTERM), and removes the temporary directory.
#
# Environment: DIALER_SKIP_DEPS=1 skips step 1's package check; DIALER_KEEP=1 keeps the
# temporary directory (server logs); DEMO_TIMEOUT=N gives the calls N seconds (60);
# DIALER_DEMO_KEEP=1 (make demo KEEP=1) also starts the admin API and the dashboard, prints
# the dashboard's address and tokens, and keeps everything up after the checks until Ctrl-C;
# DIALER_PGBIN chooses the PostgreSQL 15 binaries (default Debian's).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1

export PGBIN=${DIALER_PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
DB=dialer_demo

work=
cluster=
node_pid=
say() { echo "demo: $*"; }

# Ends the node driver (it stops its simulators, PostgREST and nginx itself), then whatever
# it started that is still running (PIDs it recorded in $work/pids), then the cluster.
# shellcheck disable=SC2317  # called by the traps
cleanup() {
	local rc=$? pid pids=()
	trap - EXIT INT TERM
	if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
		kill -TERM "$node_pid" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$node_pid" 2>/dev/null
		wait "$node_pid" 2>/dev/null
	fi
	if [ -n "$work" ] && [ -s "$work/pids" ]; then
		while read -r pid; do
			[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && pids+=("$pid")
		done <"$work/pids"
		if [ ${#pids[@]} -gt 0 ]; then
			say "stopping leftover processes ${pids[*]}"
			kill -TERM "${pids[@]}" 2>/dev/null
			sleep 1
			for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
		fi
	fi
	if [ -n "$cluster" ]; then
		bash "$repo/test/lib/cluster.sh" stop "$cluster"
		say "cluster stopped"
	fi
	if [ -n "$work" ]; then
		if [ "${DIALER_KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo; say "interrupted, stopping everything"; exit 130' INT
trap 'say "terminated, stopping everything"; exit 143' TERM

start=$(date +%s)

# 1. dependencies, build, install
if [ "${DIALER_SKIP_DEPS:-0}" != 1 ]; then
	bash test/install-deps.sh || { say "installing dependencies failed"; exit 1; }
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/pg_dialer_demo.XXXXXX") || exit 1
chmod 755 "$work"
: >"$work/pids"
say "building and installing pg_dialer"
if ! flock /tmp/pg_dialer_build.lock make install PG_CONFIG="$PG_CONFIG" >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log"
	say "build failed"
	exit 1
fi

# 2. the cluster, on the first free port from 57000 + (PID mod 500), retried on a lost race
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((57000 + $$ % 500))
conf="dialer.call_window_start = '00:00'
dialer.call_window_end = '24:00'
dialer.reconcile_after = '20s'"
for _ in 1 2 3 4 5; do
	while ! port_free "$port"; do port=$((port + 1)); done
	cluster="$work/cluster"
	if (cd / && DIALER_EXTRA_CONF="$conf" bash "$repo/test/lib/cluster.sh" start "$cluster" "$port" "$DB") \
		>"$work/cluster.log" 2>&1; then
		break
	fi
	bash "$repo/test/lib/cluster.sh" stop "$cluster"
	rm -rf "$cluster"
	cluster=
	port=$((port + 1))
done
if [ -z "$cluster" ]; then
	cat "$work/cluster.log"
	say "could not start a cluster"
	exit 1
fi
say "PostgreSQL 15 on 127.0.0.1:$port (cluster in $cluster), pg_cron and pg_dialer preloaded"
say "calling window opened for the demo: dialer.call_window_start = 00:00, dialer.call_window_end = 24:00"
say "dialer.reconcile_after = 20s: a call without news for 20 s is looked up at its provider"

# 3. the driver: in the background, so that an interrupt or a TERM reaches this shell's traps
#    at once (they end the driver first)
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
export DIALER_DB=$DB DIALER_PGBIN=$PGBIN DIALER_PID_FILE=$work/pids DIALER_CLUSTER_DIR=$cluster
node "$repo/test/demo.js" &
node_pid=$!
wait "$node_pid"
rc=$?
node_pid=
if [ "$rc" = 0 ]; then
	say "finished in $(($(date +%s) - start)) s; stopping everything"
elif [ "$rc" = 130 ] || [ "$rc" = 143 ]; then
	say "interrupted after $(($(date +%s) - start)) s; stopping everything"
else
	say "FAILED (exit $rc) after $(($(date +%s) - start)) s; the server log's errors ($cluster/postgres.log;" \
		"DIALER_KEEP=1 keeps it):"
	grep -E 'PANIC|FATAL|WARNING|TRAP|terminated by signal' "$cluster/postgres.log" \
		| grep -v "database \"$DB\" does not exist" | tail -n 20
fi
exit "$rc"
