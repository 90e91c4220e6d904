#!/usr/bin/env node
'use strict';
/*
 * Two builds of pg_dialer side by side in one run: `BENCH_BASELINE=REF make bench` (issue 22's
 * yardstick: a restructuring keeps every figure, W1 and W2 within 5% or better).
 *
 * bench/run.sh builds REF into a relocated PostgreSQL tree of its own and starts two clusters,
 * "before" (REF's library preloaded, REF's extension files) and "after" (the working tree's, as
 * `make bench` installs it). Each cluster creates its own build's extension, so the two builds
 * may have different SQL, even different schema versions. This script then runs, BENCH_REPEAT
 * times (default 5):
 *   - the floors of W1 and W2: the same requests to the same simulator with no database
 *     (curl --parallel, CONC in flight), as bench/e2e.js;
 *   - for the fresh and then the warm queue: both builds' queues set up the way bench/e2e.js
 *     does (DROP / CREATE EXTENSION, a probe call, VACUUM, CHECKPOINT; for the warm queue
 *     WARM_CALLS earlier calls due in a year), then W1 of one build, W1 of the other, W2 of the
 *     one, W2 of the other. The build going first takes turns by repetition (before first in
 *     odd ones), and both clusters are checkpointed before every timed run, so that what one
 *     run leaves to write does not fall in the next one's time.
 * The workloads are bench/e2e.js's own (pgDialerWorkload: the clock starts before the
 * enqueue_calls transaction and stops when the last outcome is stored; CPU of every process of
 * the build's cluster), so each figure is the one `make bench` prints. Graphile Worker does not
 * run here. Prints every run, the median of each figure per build with the range of the runs,
 * and per workload and queue the ratio after / before of the medians (the yardstick: W1 and W2
 * are kept when it is >= 0.95 in calls/s), beside the median of the ratios of each
 * repetition's two runs (runs close in time: less of the machine's drift), each build's median
 * divided by the floor of the same run, CPU per call and W2's time over its ideal. Like every benchmark it exits 0 unless
 * something breaks: a figure outside the yardstick is printed, not failed.
 *
 * Environment (bench/run.sh sets it): BENCH_BEFORE_PORT, BENCH_BEFORE_DIR (cluster directory),
 * BENCH_BEFORE_LABEL (what the build is), likewise BENCH_AFTER_*; PGHOST, PGUSER, DIALER_DB;
 * the sizes of bench/e2e.js: W1_CALLS, W2_CALLS, WARM_CALLS, BENCH_REPEAT, BENCH_ONLY (w1, w2).
 */
const { Client } = require('pg');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {
  N1, N2, CONC, REPEAT, ONLY, SETTINGS, fmt, median, range, startSim, simCall, floorRun, dialer,
  pgDialerWorkload, line,
} = require('./e2e');

const DB = process.env.DIALER_DB || 'dialer_bench';
const YARDSTICK = 0.95;   // issue 22: W1 and W2 within 5% or better
const WORKLOADS = [['W1', N1, 0], ['W2', N2, 100]].filter(([w]) => ONLY.has(w.toLowerCase()));
const of = REPEAT > 1 ? `medians of ${REPEAT} runs` : 'one run';

/* the two builds, as bench/run.sh describes them */
function buildsFromEnv() {
  return ['before', 'after'].map((name) => {
    const env = (k) => {
      const v = process.env[`BENCH_${name.toUpperCase()}_${k}`];
      if (!v) throw new Error(`BENCH_${name.toUpperCase()}_${k} is not set: run this through bench/run.sh with BENCH_BASELINE`);
      return v;
    };
    return { name, label: env('LABEL'), port: Number(env('PORT')), dir: env('DIR'), db: null };
  });
}

/*
 * Applies bench/e2e.js's dispatcher settings on a build's cluster. A setting the build does not
 * know (an older build; pg_dialer reserves the prefix dialer., so ALTER SYSTEM would refuse it)
 * is left out and named in the output.
 */
async function applySettings(b) {
  const unknown = [];
  for (const [k, v] of Object.entries(SETTINGS)) {
    if ((await b.db.query('SELECT 1 FROM pg_settings WHERE name = $1', [k])).rows.length === 0) {
      unknown.push(k);
      continue;
    }
    await b.db.query(`ALTER SYSTEM SET ${k} = '${v}'`);
  }
  await b.db.query('SELECT pg_reload_conf()');
  if (unknown.length) console.log(`${b.name}: not a setting of this build, left out: ${unknown.join(', ')}`);
}

/*
 * What a cluster runs, read from the server itself: the library directory it loads pg_dialer
 * from (and a digest of that file), the extension's version, how many objects it has and a
 * digest of its functions' definitions (equal digests: the same SQL functions).
 */
async function identify(b) {
  const r = (await b.db.query(`
      SELECT e.extversion,
             (SELECT count(*) FROM pg_depend d
               WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e')::int AS members,
             (SELECT md5(string_agg(pg_get_functiondef(p.oid), E'\\n' ORDER BY p.oid::regprocedure::text))
                FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
               WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
                 AND d.refobjid = e.oid AND d.deptype = 'e' AND p.prokind <> 'a') AS functions_md5,
             (SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR') AS pkglibdir,
             current_setting('shared_preload_libraries') AS preload
        FROM pg_extension e WHERE e.extname = 'pg_dialer'`)).rows[0];
  const lib = path.join(r.pkglibdir, 'pg_dialer.so');
  const libMd5 = crypto.createHash('md5').update(fs.readFileSync(lib)).digest('hex');
  const pid = fs.readFileSync(path.join(b.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0];
  console.log(`${b.name}: ${b.label}\n  extension pg_dialer ${r.extversion} (${r.members} objects, functions md5 ${r.functions_md5.slice(0, 12)}); `
    + `library ${lib} (md5 ${libMd5.slice(0, 12)}; shared_preload_libraries = '${r.preload}'); `
    + `cluster ${b.dir} on port ${b.port}, postmaster ${pid}`);
}

async function checkpointAll(builds) {
  for (const b of builds) await b.db.query('CHECKPOINT');
}

/* the runs of one repetition: floors, then fresh and warm queue, the builds in turn */
async function repetition(rep, builds, sim, results) {
  const tag = REPEAT > 1 ? ` #${rep}` : '';
  for (const [w, n, latency] of WORKLOADS) {
    const f = await floorRun(sim, n, latency);
    const ideal = (n / CONC) * 0.1;
    console.log(`${w} floor${tag}: ${fmt(n / f.total)} requests/s (${f.total.toFixed(2)} s; simulator CPU ${(f.simCpu / n * 1e6).toFixed(0)} us/request)`
      + (latency ? `; ${(f.total / ideal).toFixed(3)} x the ideal ${ideal.toFixed(1)} s` : '') + '; curl --parallel, no database');
    results.push({ rep, w, state: 'floor', build: 'floor', rate: n / f.total, cpu: 0, ideal: latency ? f.total / ideal : null });
  }
  const order = rep % 2 ? builds : [...builds].reverse();
  for (const state of ['fresh', 'warm']) {
    for (const b of order) {
      await dialer.fresh(b.db, sim);
      if (state === 'warm') await dialer.warm(b.db);
    }
    for (const [w, n, latency] of WORKLOADS) {
      for (const b of order) {
        await checkpointAll(builds);
        await simCall(sim, 'POST', 'reset');
        await simCall(sim, 'POST', 'config', { latency });
        const r = await pgDialerWorkload(b.db, sim, n, `${w.toLowerCase()}${state}`, undefined, b.dir);
        await simCall(sim, 'POST', 'config', { latency: 0 });
        const ideal = (n / CONC) * 0.1;
        const cpu = line(`${w} ${state}${tag}`, b.name, r, n, latency ? `; ${(r.total / ideal).toFixed(3)} x the ideal ${ideal.toFixed(1)} s` : '');
        results.push({ rep, w, state, build: b.name, rate: n / r.total, cpu, ideal: latency ? r.total / ideal : null });
      }
    }
  }
}

/* the medians of one figure series, printed with the range of its runs */
function summary(results, w, state, build) {
  const rs = results.filter((r) => r.w === w && r.state === state && r.build === build);
  const m = { rate: median(rs.map((r) => r.rate)), cpu: median(rs.map((r) => r.cpu)),
    ideal: rs[0].ideal ? median(rs.map((r) => r.ideal)) : null, rs };
  if (state !== 'floor') {
    console.log(`median ${w} ${state} ${build}: ${fmt(m.rate)} calls/s${range(rs.map((r) => r.rate), (x) => fmt(x))}; `
      + `CPU/call ${m.cpu.toFixed(3)} ms${range(rs.map((r) => r.cpu), (x) => x.toFixed(3))}`
      + (m.ideal ? `; ${m.ideal.toFixed(3)} x ideal${range(rs.map((r) => r.ideal), (x) => x.toFixed(3))}` : ''));
  }
  return m;
}

/* the figures of both builds side by side, the ratios after / before, and the yardstick */
function report(results) {
  const missed = [];
  for (const [w] of WORKLOADS) {
    const floor = summary(results, w, 'floor', 'floor');
    console.log(`floor ${w} (${of}, no database: curl --parallel, ${CONC} in flight, the same simulator): ${fmt(floor.rate)} requests/s`
      + range(floor.rs.map((r) => r.rate), (x) => fmt(x)) + (floor.ideal ? `; ${floor.ideal.toFixed(3)} x ideal` : ''));
    for (const state of ['fresh', 'warm']) {
      const a = summary(results, w, state, 'before');
      const b = summary(results, w, state, 'after');
      const ratio = b.rate / a.rate;
      const paired = b.rs.map((r) => r.rate / a.rs.find((x) => x.rep === r.rep).rate);
      const kept = ratio >= YARDSTICK;
      if (!kept) missed.push(`${w} ${state} ${ratio.toFixed(3)}`);
      console.log(`after / before ${w} ${state} (${of}): ${ratio.toFixed(3)} x calls/s end to end `
        + `(before ${fmt(a.rate)}, after ${fmt(b.rate)} calls/s) ${kept ? 'kept' : 'LOWER by more than 5%'} (>= ${YARDSTICK}); `
        + (paired.length > 1 ? `the two runs of each repetition: median ${median(paired).toFixed(3)} (${paired.map((x) => x.toFixed(2)).join(', ')}); ` : '')
        + `/ floor ${(a.rate / floor.rate).toFixed(3)} before, ${(b.rate / floor.rate).toFixed(3)} after; `
        + `CPU/call ${a.cpu.toFixed(3)} before, ${b.cpu.toFixed(3)} after ms (after / before ${(b.cpu / a.cpu).toFixed(3)})`
        + (a.ideal ? `; x ideal ${a.ideal.toFixed(3)} before, ${b.ideal.toFixed(3)} after (floor ${floor.ideal.toFixed(3)})` : ''));
    }
  }
  console.log(`yardstick (${WORKLOADS.map(([w]) => w).join(' and ')}, fresh and warm, ${of}: after / before >= ${YARDSTICK} in calls/s): `
    + (missed.length === 0 ? 'met' : `NOT met by ${missed.join(', ')}`));
}

async function main() {
  if (WORKLOADS.length === 0) throw new Error('BENCH_ONLY names neither w1 nor w2: nothing to compare');
  const builds = buildsFromEnv();
  const sim = await startSim();
  // stopped from outside (SIGTERM, Ctrl-C): the simulator goes too
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      sim.child.kill('SIGTERM');
      process.exit(1);
    });
  }
  try {
    for (const b of builds) {
      b.db = new Client({ host: process.env.PGHOST || '127.0.0.1', port: b.port, user: process.env.PGUSER || 'postgres', database: DB });
      await b.db.connect();
    }
    const version = (await builds[0].db.query('SHOW server_version')).rows[0].server_version;
    console.log(`pg_dialer before / after: ${os.cpus().length} cores, PostgreSQL ${version}, concurrency ${CONC}, the same Twilio simulator, `
      + `W1 ${fmt(N1)} calls, W2 ${fmt(N2)} calls (100 ms provider), ${of}; clocks start before the enqueue transaction `
      + 'and stop when the last outcome is stored');
    for (const b of builds) {
      await applySettings(b);
      await dialer.fresh(b.db, sim);
      await identify(b);
    }
    const results = [];
    for (let rep = 1; rep <= REPEAT; rep++) await repetition(rep, builds, sim, results);
    report(results);
  } finally {
    for (const b of builds) if (b.db) await b.db.end().catch(() => {});
    sim.child.kill('SIGTERM');
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
