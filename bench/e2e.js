#!/usr/bin/env node
'use strict';
/*
 * pg_dialer beside a real peer, Graphile Worker, on the same cluster and the same Twilio
 * simulator (issue 9). Every clock starts before the enqueue (one transaction, as an
 * application does it) and stops when the last outcome is stored.
 *
 *   W1  N1 calls (default 20,000), 0 ms provider, concurrency 100;
 *   W2  N2 calls (default 10,000), 100 ms provider, concurrency 100 (ideal: N2 / 100 x 0.1 s);
 *   each on a freshly created, vacuumed queue and on a warm queue holding WARM_CALLS (default
 *   100,000) earlier calls (due in a year, so they stay in the tables and their indexes);
 *   enqueue: ENQ_CALLS (default 100,000) calls through dialer.enqueue_calls, enqueue_call in
 *   one statement, enqueue_call one per transaction (autocommit), graphile_worker.add_jobs in
 *   one statement, and a plain INSERT of the same rows into a table with a primary key only
 *   (the floor), each on a fresh and on a warm queue;
 *   CPU per call of PostgreSQL (every process of the cluster) plus Graphile Worker's process
 *   (pg_dialer's worker is a PostgreSQL process), from /proc, per workload;
 *   the floor of W1 and W2, once per repetition: the same requests to the same simulator with
 *   no database, sent by curl --parallel (libcurl, as the worker) with the same concurrency.
 *
 * With DIALER_BENCH_POLICY=US-TCPA (or US-FL), W1 and W2 of pg_dialer also run with that calling
 * policy preset enabled on every call (dialer.use_preset), beside the runs without it, and the
 * ratios are printed (issue 12: at most 10% lower). The calls then go to numbers of a NANP area
 * code whose window is open now and for the next hour in the preset (time zone inferred from the
 * number, as for any call); when no candidate area code is open (e.g. about 11:00 UTC, when no
 * NANP zone is between 08:00 and 21:00), the policy's windows are replaced by one all-day window
 * (same rule machinery: scope, zone from the number, windows, caps) and the output says so.
 * Both pg_dialer runs (with and without) use the same numbers. W1 is then also run with and
 * without the policy at the same time, in two databases of the cluster (policyAtOnce below):
 * runs one after the other swing by more than the policy costs, runs at the same time swing
 * together.
 *
 * This machine's speed varies from one second to the next (a CPU-bound loop alone takes 0.52 to
 * 0.71 s from run to run), so W1 and W2 run BENCH_REPEAT times (default 5), every system once per
 * repetition, in turn; every run is printed, and the figures compared are medians (a with /
 * without policy ratio: the median of the ratios of the runs side by side in one repetition).
 *
 * pg_dialer's workloads enqueue with dialer.enqueue_calls (one jsonb parameter); Graphile
 * Worker's with its add_jobs SQL (one array parameter), the same rows. Prints one line per
 * figure and the pg_dialer / Graphile Worker ratios. Needs a cluster with pg_dialer preloaded
 * (bench/run.sh starts one) and PGHOST, PGPORT, PGUSER, DIALER_DB, DIALER_CLUSTER_DIR.
 */
const { Client } = require('pg');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');

const DB = process.env.DIALER_DB || 'dialer_test';
const N1 = Number(process.env.W1_CALLS || 20000);
const N2 = Number(process.env.W2_CALLS || 10000);
const NE = Number(process.env.ENQ_CALLS || 100000);
const NE1 = Number(process.env.ENQ_SINGLE_CALLS || NE);
const NWARM = Number(process.env.WARM_CALLS || 100000);
const ONLY = new Set((process.env.BENCH_ONLY || 'w1,w2,enqueue').split(','));
const POLICY = process.env.DIALER_BENCH_POLICY || '';
if (POLICY && !/^US-[A-Z]+$/.test(POLICY)) {
  console.error(`DIALER_BENCH_POLICY=${POLICY}: only the NANP presets (US-TCPA, US-FL) are supported by the bench`);
  process.exit(2);
}
// NANP area codes tried for a window open now (US-TCPA: 08:00-21:00 local), west to east and
// beyond: between them some zone is open at almost any hour (Guam covers the US night)
const AREA_CODES = [['212', 'New York'], ['305', 'Miami'], ['312', 'Chicago'], ['303', 'Denver'],
  ['415', 'San Francisco'], ['907', 'Anchorage'], ['808', 'Honolulu'], ['671', 'Guam'],
  ['787', 'Puerto Rico'], ['709', "St. John's"]];
let benchFirst = 4150000000;   // numbers +1 415 000 0001... unless a policy chooses others
const CONC = 100;
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT || 5));
const HZ = 100;   // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now() / 1000;
const fmt = (x, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const range = (xs, f) => (xs.length > 1 ? ` (runs ${f(Math.min(...xs))} to ${f(Math.max(...xs))})` : '');

/* ------------------------------------------------------------------ helpers */

function startSim() {
  const ready = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-sim-')), 'ready.json');
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'test', 'sim', 'server.js'),
    '--kind', 'twilio', '--port', '0', '--ready-file', ready, '--log-limit', '0'],
  { stdio: ['ignore', 'ignore', 'inherit'] });
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      if (fs.existsSync(ready)) {
        clearInterval(t);
        resolve({ child, ...JSON.parse(fs.readFileSync(ready, 'utf8')) });
      }
    }, 50);
    child.on('exit', (code) => { clearInterval(t); reject(new Error(`simulator exited ${code}`)); });
  });
}

function simCall(sim, method, route, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : '';
    const req = http.request({ host: '127.0.0.1', port: sim.port, method, path: `/__sim/${route}`,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let s = '';
      res.on('data', (c) => { s += c; });
      res.on('end', () => resolve(s ? JSON.parse(s) : {}));
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function waitFor(fn, timeoutMs, everyMs = 20) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await sleep(everyMs);
  }
}

/* CPU ticks (user + system) of the cluster's processes and of the extra pids */
function ticksOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}
function postmasterPid(clusterDir = process.env.DIALER_CLUSTER_DIR) {
  return Number(fs.readFileSync(path.join(clusterDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
}
function cpuSnapshot(extra = [], clusterDir = undefined) {
  const pm = postmasterPid(clusterDir);
  const per = new Map();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const t = ticksOf(e);
    if (t && (t.ppid === pm || Number(e) === pm)) per.set(Number(e), t.ticks);
  }
  const other = new Map();
  for (const p of extra) { const t = ticksOf(p); if (t) other.set(p, t.ticks); }
  return { per, other };
}
/* CPU seconds between two snapshots (processes present in both, or born in between) */
function cpuBetween(a, b) {
  let pg = 0;
  for (const [pid, t] of b.per) pg += t - (a.per.get(pid) || 0);
  let other = 0;
  for (const [pid, t] of b.other) other += t - (a.other.get(pid) || 0);
  return { pg: pg / HZ, other: other / HZ };
}

/*
 * The floor: the same n requests to the same simulator with no database at all, sent by
 * curl --parallel (libcurl, the worker's HTTP library) with CONC in flight; seconds, and
 * the simulator's CPU per request. What the machine and the simulator allow any system.
 */
async function floorRun(sim, n, latency) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-floor-'));
  try {
    const cfg = path.join(dir, 'curl.cfg');
    const url = `${sim.url}/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json`;
    const one = (i) => `url = "${url}"\ndata = "To=%2B1${benchFirst + i + 1}&From=%2B15005550006&Twiml=%3CResponse%3E%3CSay%3EHi%3C%2FSay%3E%3C%2FResponse%3E"\n`
      + 'user = "AC0123456789abcdef0123456789abcdef:0123456789abcdef0123456789abcdef"\noutput = "/dev/null"\n'
      + 'write-out = "%{http_code}\\n"\n';
    fs.writeFileSync(cfg, Array.from({ length: n }, (_, i) => one(i)).join('next\n'));
    await simCall(sim, 'POST', 'reset');
    await simCall(sim, 'POST', 'config', { latency });
    const s0 = ticksOf(sim.child.pid).ticks;
    const t0 = now();
    const codes = await new Promise((resolve, reject) => {
      const c = spawn('curl', ['--silent', '--no-progress-meter', '--parallel', '--parallel-immediate', '--parallel-max', String(CONC), '-K', cfg],
        { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (d) => { out += d; });
      c.on('error', reject);
      c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`curl exited ${code}`))));
    });
    const total = now() - t0;
    const simCpu = (ticksOf(sim.child.pid).ticks - s0) / HZ;
    await simCall(sim, 'POST', 'config', { latency: 0 });
    const ok = codes.split('\n').filter((x) => x === '201').length;
    if (ok !== n) throw new Error(`floor: ${ok} of ${n} requests answered 201`);
    return { total, simCpu };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/* ------------------------------------------------------------------ the two systems */

/* the jsonb array of n calls enqueue_calls takes (numbers from first + 1, campaign tag) */
const CALL_JSON = (first, n, tag, extra = '') => `(SELECT jsonb_agg(jsonb_build_object('to_number', '+1' || (${Number(first)} + g)::text,
    'provider', 'bench', 'payload', jsonb_build_object('message', 'Your appointment is tomorrow at 9.'),
    'campaign', '${tag.replace(/[^a-z0-9_]/g, '')}'${extra})) FROM generate_series(1, ${Number(n)}) g)`;

const dialer = {
  name: 'pg_dialer',
  async fresh(db, sim) {
    await db.query('DROP EXTENSION IF EXISTS pg_dialer CASCADE');
    await db.query('CREATE EXTENSION pg_dialer');
    await db.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
                      calls_per_second, max_concurrency)
                    VALUES ('bench', 'twilio', $1, 'AC0123456789abcdef0123456789abcdef',
                            '0123456789abcdef0123456789abcdef', '+15005550006', 100000, NULL)`, [sim.url]);
    // a probe call proves the worker serves the new extension; then the queue is emptied
    await db.query(`SELECT dialer.enqueue_call('+14150000000', provider => 'bench', payload => '{"message": "probe"}')`);
    await waitFor(async () => (await db.query(`SELECT count(*)::int AS n FROM dialer.scheduled_calls
                                                WHERE status IN ('scheduled', 'dispatching')`)).rows[0].n === 0, 60000, 100);
    await db.query('DELETE FROM dialer.scheduled_calls');
    await db.query('VACUUM ANALYZE dialer.scheduled_calls, dialer.call_attempts, dialer.call_events');
    await db.query('CHECKPOINT');
  },
  async warm(db) {
    await db.query(`SELECT count(*) FROM dialer.enqueue_calls(${CALL_JSON(5000000000, NWARM, 'earlier', ", 'run_at', now() + interval '1 year'")})`);
    await db.query('VACUUM ANALYZE dialer.scheduled_calls, dialer.call_attempts, dialer.call_events');
    await db.query('CHECKPOINT');
  },
  /*
   * Whether a call of the workload (ids lo..hi) has no outcome yet: the first such call by
   * id, looked for from the lowest that may still have none (calls are claimed in id order
   * here, so each poll reads only the calls finished since the last one; a last pass from the
   * first id confirms the end). Polling with a count over the campaign read every scheduled
   * call of the warm queue (100,000, due in a year) every 20 ms: the harness, not pg_dialer,
   * then took much of a core.
   */
  async open(db, range) {
    const r = await db.query(`SELECT c.id FROM dialer.scheduled_calls c
                               WHERE c.id BETWEEN $1 AND $2 AND c.status IN ('scheduled', 'dispatching')
                               ORDER BY c.id LIMIT 1`, [range.lo, range.hi]);
    if (r.rows.length > 0) {
      range.lo = r.rows[0].id;
      return 1;
    }
    if (range.lo !== range.first) {
      range.lo = range.first;
      return this.open(db, range);
    }
    return 0;
  },
  extraPids() { return []; },
};

let gwChild = null;
const graphile = {
  name: 'Graphile Worker',
  async fresh(db, sim) {
    await stopGraphile();
    await db.query('DROP SCHEMA IF EXISTS graphile_worker CASCADE');
    await db.query('DROP TABLE IF EXISTS bench_gw_outcomes');
    await db.query('CREATE TABLE bench_gw_outcomes (id bigserial PRIMARY KEY, ref text, to_number text, sid text, at timestamptz DEFAULT clock_timestamp())');
    await startGraphile(sim);
    await db.query('VACUUM ANALYZE bench_gw_outcomes');
    await db.query(`VACUUM ANALYZE graphile_worker._private_jobs`);
    await db.query('CHECKPOINT');
  },
  async warm(db) {
    await db.query(`SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
      SELECT ROW('dial', json_build_object('to', '+1' || (5000000000 + g)::text, 'ref', 'earlier'), NULL,
                 now() + interval '1 year', NULL, NULL, NULL, NULL)::graphile_worker.job_spec
        FROM generate_series(1, $1::int) g))`, [NWARM]);
    await db.query(`VACUUM ANALYZE graphile_worker._private_jobs`);
    await db.query('CHECKPOINT');
  },
  extraPids() { return gwChild ? [gwChild.pid] : []; },
};

async function startGraphile(sim) {
  gwChild = spawn(process.execPath, [path.join(__dirname, 'graphile_runner.js')],
    { env: { ...process.env, SIM_URL: sim.url }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let out = '';
    gwChild.stdout.on('data', (c) => { out += c; if (out.includes('ready')) resolve(); });
    gwChild.on('exit', (code) => reject(new Error(`graphile runner exited ${code}`)));
  });
}
async function stopGraphile() {
  if (!gwChild) return;
  const c = gwChild;
  gwChild = null;
  c.removeAllListeners('exit');
  const done = new Promise((r) => c.on('exit', r));
  c.kill('SIGTERM');
  await Promise.race([done, sleep(10000)]);
  if (c.exitCode === null) c.kill('SIGKILL');
}

/* ------------------------------------------------------------------ workloads */

/*
 * Enables the calling policy preset POLICY (as policy 'bench') and chooses the numbers of the
 * pg_dialer runs: the first area code of AREA_CODES whose calls the policy allows now and in an
 * hour; else the policy gets one all-day window instead of its own.  Returns a label that says
 * which.  Runs after every fresh() (which drops the extension, and the policy with it).
 */
async function applyPolicy(db) {
  await db.query('SELECT dialer.use_preset($1, $2)', [POLICY, 'bench']);
  const open = (await db.query(`
      SELECT a.ac, a.place
        FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS a(ac, place, o)
       WHERE (SELECT bool_and(v.decision = 'allow' AND v.policies = '{bench}')
                FROM unnest(ARRAY[now(), now() + interval '1 hour']) t,
                     dialer.compliance_verdict('+1' || a.ac || '5000001', t) v)
       ORDER BY a.o LIMIT 1`, [AREA_CODES.map((a) => a[0]), AREA_CODES.map((a) => a[1])])).rows[0];
  if (open) {
    benchFirst = Number(`${open.ac}5000000`);
    return `${POLICY} as shipped, numbers +1 ${open.ac} (${open.place}: window open now)`;
  }
  const ac = POLICY === 'US-FL' ? '305' : '212';
  await db.query("DELETE FROM dialer.policy_windows WHERE policy = 'bench'");
  await db.query("INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('bench', '{1,2,3,4,5,6,7}', '00:00', '24:00')");
  benchFirst = Number(`${ac}5000000`);
  return `${POLICY} with an ALL-DAY window instead of its own (no candidate area code was open now), numbers +1 ${ac}`;
}

/* clusterDir: the cluster whose processes' CPU is counted (default DIALER_CLUSTER_DIR's) */
async function pgDialerWorkload(db, sim, n, tag, first = benchFirst, clusterDir = undefined) {
  const cpu0 = cpuSnapshot([], clusterDir);
  const t0 = now();
  await db.query('BEGIN');
  const ids = (await db.query(`SELECT min(r.id) AS lo, max(r.id) AS hi, count(r.id)::int AS n
                                 FROM dialer.enqueue_calls(${CALL_JSON(first, n, tag)}) r`)).rows[0];
  await db.query('COMMIT');
  const t1 = now();
  if (ids.n !== n || Number(ids.hi) - Number(ids.lo) + 1 !== n) throw new Error(`enqueue_calls stored ${ids.n} of ${n} calls, ids ${ids.lo}..${ids.hi}`);
  const range = { first: ids.lo, lo: ids.lo, hi: ids.hi };
  await waitFor(async () => (await dialer.open(db, range)) === 0, 600000, 20);
  const t2 = now();
  const cpu = cpuBetween(cpu0, cpuSnapshot([], clusterDir));
  const dup = (await simCall(sim, 'GET', 'stats')).duplicate_count;
  return { enqueue: t1 - t0, dispatch: t2 - t1, total: t2 - t0, cpu, dup };
}

async function graphileWorkload(db, sim, n, tag) {
  const pids = graphile.extraPids();
  const cpu0 = cpuSnapshot(pids);
  const t0 = now();
  await db.query('BEGIN');
  await db.query(`SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
      SELECT ROW('dial', json_build_object('to', '+1' || (4150000000 + g)::text, 'ref', $2::text), NULL,
                 NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
        FROM generate_series(1, $1::int) g))`, [n, tag]);
  await db.query('COMMIT');
  const t1 = now();
  // (bench_gw_outcomes holds the outcomes of this system and queue state only, at most 30,000 rows; ids are
  // not a cursor here, since Graphile's tasks commit out of id order)
  await waitFor(async () => (await db.query('SELECT count(*)::int AS n FROM bench_gw_outcomes WHERE ref = $1', [tag])).rows[0].n >= n, 600000, 20);
  const t2 = now();
  const cpu = cpuBetween(cpu0, cpuSnapshot(pids));
  const dup = (await simCall(sim, 'GET', 'stats')).duplicate_count;
  return { enqueue: t1 - t0, dispatch: t2 - t1, total: t2 - t0, cpu, dup };
}

function line(label, sys, r, n, extra = '') {
  const cpuMs = ((r.cpu.pg + r.cpu.other) / n) * 1000;
  console.log(`${label} ${sys.padEnd(15)}: ${fmt(n / r.total)} calls/s end to end (${r.total.toFixed(2)} s: enqueue ${r.enqueue.toFixed(2)} s, dispatch ${r.dispatch.toFixed(2)} s); CPU/call ${cpuMs.toFixed(3)} ms (PostgreSQL ${((r.cpu.pg / n) * 1000).toFixed(3)}${r.cpu.other ? `, worker process ${((r.cpu.other / n) * 1000).toFixed(3)}` : ''}); duplicates ${r.dup}${extra}`);
  return cpuMs;
}

/*
 * The policy's cost with both pg_dialer runs at the same time: one run in the bench database,
 * one in a second database of the same cluster, each served by a dispatcher of its own, both
 * started together, the policy enabled in one of them (in turns: the second database in odd
 * repetitions, the bench database in even ones).  Whatever slows this machine during a run
 * slows both, so the ratio of their throughputs shows what the policy adds to a call, where
 * runs one after the other swing by more than that (they share the two cores, so each figure is
 * about half a run alone).  A first pair with the policy in neither database shows what the
 * method itself gives for two equal runs.  W1 only: the CPU-bound workload, where a cost per
 * call shows.
 */
async function policyAtOnce(db, sim) {
  const otherName = `${DB}_policy`;
  if ((await db.query('SELECT 1 FROM pg_database WHERE datname = $1', [otherName])).rows.length === 0) {
    await db.query(`CREATE DATABASE ${otherName}`);
  }
  const served = (await db.query("SELECT current_setting('dialer.databases') AS s")).rows[0].s;
  await db.query(`ALTER SYSTEM SET dialer.databases = '${DB},${otherName}'`);
  await db.query('SELECT pg_reload_conf()');
  const other = new Client({ database: otherName });
  await other.connect();
  const ratios = { fresh: [], warm: [], equal: [] };
  try {
    for (let rep = 0; rep <= REPEAT; rep++) for (const state of rep === 0 ? ['fresh'] : ['fresh', 'warm']) {
      await dialer.fresh(db, sim);
      await dialer.fresh(other, sim);
      // rep 0: no policy anywhere; then the policy in the second database, then in the first
      const withPolicy = rep === 0 ? null : rep % 2 ? other : db;
      const label = withPolicy ? await applyPolicy(withPolicy) : 'no policy in either database';
      if (state === 'warm') {
        await dialer.warm(db);
        await dialer.warm(other);
      }
      await simCall(sim, 'POST', 'config', { latency: 0 });
      await simCall(sim, 'POST', 'reset');
      // the two runs call different numbers of the same area code
      const [a, b] = await Promise.all([pgDialerWorkload(db, sim, N1, `w1${state}`),
        pgDialerWorkload(other, sim, N1, `w1${state}`, benchFirst + 1000000)]);
      const [w, wo] = withPolicy === db ? [a, b] : [b, a];
      const ratio = wo.total / w.total;
      ratios[rep === 0 ? 'equal' : state].push(ratio);
      console.log(rep === 0
        ? `W1 ${state} at once, no policy in either: ${fmt(N1 / a.total)} and ${fmt(N1 / b.total)} calls/s; second / first ${ratio.toFixed(3)}`
        : `W1 ${state} #${rep} at once: pg_dialer ${fmt(N1 / wo.total)} calls/s (${wo.total.toFixed(2)} s), `
          + `pg_dialer+${POLICY} ${fmt(N1 / w.total)} calls/s (${w.total.toFixed(2)} s; ${label}, `
          + `in the ${withPolicy === db ? 'first' : 'second'} database); with / without ${ratio.toFixed(3)}`);
    }
  } finally {
    await other.end();
    await db.query(`ALTER SYSTEM SET dialer.databases = '${served}'`);
    await db.query('SELECT pg_reload_conf()');
  }
  return ratios;
}

async function workloads(db, sim, results) {
  const dialerPolicy = { ...dialer, name: `pg_dialer+${POLICY}` };
  if (POLICY) {
    // the numbers both pg_dialer runs use: chosen once, on a fresh install, before any run
    await dialer.fresh(db, sim);
    console.log(`calling policy for the pg_dialer+${POLICY} runs: ${await applyPolicy(db)}`);
  }
  for (let rep = 1; rep <= REPEAT; rep++) for (const state of ['fresh', 'warm']) {
    const tag = REPEAT > 1 ? ` #${rep}` : '';
    if (state === 'fresh') {
      // the floors of this repetition: no database, the same simulator, the same moment of the VM
      for (const [w, n, latency] of [['W1', N1, 0], ['W2', N2, 100]]) {
        if (!ONLY.has(w.toLowerCase())) continue;
        const f = await floorRun(sim, n, latency);
        const ideal = (n / CONC) * 0.1;
        console.log(`${w} floor${tag}: ${fmt(n / f.total)} requests/s (${f.total.toFixed(2)} s; simulator CPU ${(f.simCpu / n * 1e6).toFixed(0)} us/request)`
          + (w === 'W2' ? `; ${(f.total / ideal).toFixed(3)} x the ideal ${ideal.toFixed(1)} s` : '')
          + '; curl --parallel, no database');
        results.push({ rep, w, state: 'floor', sys: 'floor', rate: n / f.total, total: f.total, cpu: 0, ideal: latency ? f.total / ideal : null });
      }
    }
    // the two pg_dialer runs take turns going first, so that whatever the first run leaves
    // behind (WAL to flush, pages to write back) does not always fall on the same one
    const pair = rep % 2 ? [dialer, dialerPolicy] : [dialerPolicy, dialer];
    for (const sys of POLICY ? [...pair, graphile] : [dialer, graphile]) {
      await sys.fresh(db, sim);
      // the policy is in force before the queue fills, as it would be in production: the
      // earlier calls of a warm queue are enqueued under it
      if (sys === dialerPolicy) {
        const label = await applyPolicy(db);
        console.log(`(${state}) ${label}; enabled policies: ${(await db.query(
          "SELECT string_agg(name, ', ') AS p FROM dialer.calling_policies WHERE enabled")).rows[0].p}`);
      }
      if (state === 'warm') await sys.warm(db);
      if (sys === graphile) await sleep(500);
      if (ONLY.has('w1')) {
        await simCall(sim, 'POST', 'config', { latency: 0 });
        await simCall(sim, 'POST', 'reset');
        const r = sys !== graphile ? await pgDialerWorkload(db, sim, N1, `w1${state}`) : await graphileWorkload(db, sim, N1, `w1${state}`);
        const cpu = line(`W1 ${state}${tag}`, sys.name, r, N1);
        results.push({ rep, w: 'W1', state, sys: sys.name, rate: N1 / r.total, total: r.total, cpu });
      }
      if (ONLY.has('w2')) {
        await simCall(sim, 'POST', 'reset');
        await simCall(sim, 'POST', 'config', { latency: 100 });
        const r = sys !== graphile ? await pgDialerWorkload(db, sim, N2, `w2${state}`) : await graphileWorkload(db, sim, N2, `w2${state}`);
        await simCall(sim, 'POST', 'config', { latency: 0 });
        const ideal = (N2 / CONC) * 0.1;
        const cpu = line(`W2 ${state}${tag}`, sys.name, r, N2, `; ${(r.total / ideal).toFixed(3)} x the ideal ${ideal.toFixed(1)} s`);
        results.push({ rep, w: 'W2', state, sys: sys.name, rate: N2 / r.total, total: r.total, cpu, ideal: r.total / ideal });
      }
      if (sys === graphile) await stopGraphile();
    }
  }
}

/* ------------------------------------------------------------------ enqueue */

async function timed(db, sql, params) {
  const t0 = now();
  await db.query(sql, params);
  return now() - t0;
}

async function enqueueBench(db, sim, results) {
  for (const state of ['fresh', 'warm']) {
    const row = {};
    await dialer.fresh(db, sim);
    await db.query("UPDATE dialer.providers SET enabled = false WHERE name = 'bench'");  // enqueue only
    if (state === 'warm') await dialer.warm(db);
    let t = await timed(db, `SELECT count(*) FROM dialer.enqueue_calls(${CALL_JSON(4150000000, NE, 'enq1')})`);
    row.enqueue_calls = NE / t;
    await db.query("DELETE FROM dialer.scheduled_calls WHERE campaign = 'enq1'");
    await db.query('VACUUM ANALYZE dialer.scheduled_calls, dialer.call_events');
    t = await timed(db, `SELECT count(dialer.enqueue_call('+1' || (4160000000 + g)::text, provider => 'bench',
                           payload => '{"message": "Your appointment is tomorrow at 9."}', campaign => 'enq2'))
                           FROM generate_series(1, $1::int) g`, [NE]);
    row.enqueue_call_stmt = NE / t;
    await db.query("DELETE FROM dialer.scheduled_calls WHERE campaign = 'enq2'");
    await db.query('VACUUM ANALYZE dialer.scheduled_calls, dialer.call_events');
    const t0 = now();
    for (let i = 0; i < NE1; i++) {
      await db.query(`SELECT dialer.enqueue_call($1, provider => 'bench',
                        payload => '{"message": "Your appointment is tomorrow at 9."}', campaign => 'enq3')`, [`+1${4170000000 + i}`]);
    }
    row.enqueue_call_tx = NE1 / (now() - t0);
    await graphile.fresh(db, sim);
    await stopGraphile();   // enqueue only
    if (state === 'warm') await graphile.warm(db);
    t = await timed(db, `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
      SELECT ROW('dial', json_build_object('to', '+1' || (4150000000 + g)::text, 'ref', 'enq'), NULL,
                 NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
        FROM generate_series(1, $1::int) g))`, [NE]);
    row.add_jobs = NE / t;
    await db.query('DROP TABLE IF EXISTS bench_plain_calls');
    await db.query(`CREATE TABLE bench_plain_calls (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                      status text, run_at timestamptz, next_attempt_at timestamptz, to_number text,
                      provider text, payload jsonb, campaign text, max_attempts int)`);
    t = await timed(db, `INSERT INTO bench_plain_calls (status, run_at, next_attempt_at, to_number, provider, payload, campaign, max_attempts)
                         SELECT 'scheduled', now(), now(), '+1' || (4150000000 + g)::text, 'bench',
                                '{"message": "Your appointment is tomorrow at 9."}', 'plain', 3
                           FROM generate_series(1, $1::int) g`, [NE]);
    row.plain = NE / t;
    await db.query('DROP TABLE bench_plain_calls');
    results[state] = row;
    console.log(`enqueue ${state} (${fmt(NE)} rows${state === 'warm' ? `, ${fmt(NWARM)} already queued` : ', empty vacuumed queue'}): `
      + `enqueue_calls ${fmt(row.enqueue_calls)}/s, enqueue_call one statement ${fmt(row.enqueue_call_stmt)}/s, `
      + `enqueue_call one per transaction (${fmt(NE1)}) ${fmt(row.enqueue_call_tx)}/s, `
      + `graphile_worker.add_jobs ${fmt(row.add_jobs)}/s, plain INSERT ${fmt(row.plain)}/s`);
  }
}

/* ------------------------------------------------------------------ main */

/* the dispatcher's settings of every run: calls due at any hour, concurrency CONC */
const SETTINGS = { 'dialer.call_window_start': '00:00', 'dialer.call_window_end': '24:00',
  'dialer.max_concurrency': String(CONC), 'dialer.batch_size': '500', 'dialer.reconcile_after': '1h' };

async function main() {
  const sim = await startSim();
  // stopped from outside (SIGTERM, Ctrl-C): the simulator and Graphile Worker's process go too
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      sim.child.kill('SIGTERM');
      if (gwChild) gwChild.kill('SIGTERM');
      process.exit(1);
    });
  }
  const db = new Client({ database: DB });
  // a cluster that cannot be reached: say so, and leave no simulator behind
  await db.connect().catch((e) => {
    sim.child.kill('SIGTERM');
    throw e;
  });
  try {
    for (const [k, v] of Object.entries(SETTINGS)) await db.query(`ALTER SYSTEM SET ${k} = '${v}'`);
    await db.query('SELECT pg_reload_conf()');
    const version = (await db.query('SHOW server_version')).rows[0].server_version;
    console.log(`pg_dialer beside Graphile Worker ${require('graphile-worker/package.json').version}: ${os.cpus().length} cores, PostgreSQL ${version}, `
      + `concurrency ${CONC} both (dialer.max_concurrency; Graphile concurrency + localQueue.size 500), the same Twilio simulator; `
      + `clocks start before the enqueue transaction and stop when the last outcome is stored`);
    const results = [];
    if (ONLY.has('w1') || ONLY.has('w2')) await workloads(db, sim, results);
    const atOnce = POLICY && ONLY.has('w1') ? await policyAtOnce(db, sim) : null;
    // the medians of every (workload, queue, system), then the ratios between them
    const runs = (w, state, sys) => results.filter((r) => r.w === w && r.state === state && r.sys === sys);
    const summary = (w, state, sys) => {
      const rs = runs(w, state, sys);
      if (rs.length === 0) return null;
      const m = { rate: median(rs.map((r) => r.rate)), cpu: median(rs.map((r) => r.cpu)),
        ideal: rs[0].ideal ? median(rs.map((r) => r.ideal)) : null, rs };
      if (REPEAT > 1) {
        console.log(`median ${w} ${state} ${sys}: ${fmt(m.rate)} calls/s${range(rs.map((r) => r.rate), (x) => fmt(x))}; `
          + `CPU/call ${m.cpu.toFixed(3)} ms${range(rs.map((r) => r.cpu), (x) => x.toFixed(3))}`
          + (m.ideal ? `; ${m.ideal.toFixed(3)} x ideal${range(rs.map((r) => r.ideal), (x) => x.toFixed(3))}` : ''));
      }
      return m;
    };
    const systems = ['pg_dialer', ...(POLICY ? [`pg_dialer+${POLICY}`] : []), 'Graphile Worker'];
    const med = {};
    for (const w of ['W1', 'W2']) for (const state of ['fresh', 'warm']) for (const sys of systems) med[`${w} ${state} ${sys}`] = summary(w, state, sys);
    const of = REPEAT > 1 ? `medians of ${REPEAT} runs` : 'one run';
    for (const w of ['W1', 'W2']) {
      for (const state of ['fresh', 'warm']) {
        const a = med[`${w} ${state} pg_dialer`];
        const b = med[`${w} ${state} Graphile Worker`];
        if (a && b) {
          console.log(`ratio ${w} ${state} (${of}): pg_dialer / Graphile Worker = ${(a.rate / b.rate).toFixed(2)} x calls/s end to end`
            + (w === 'W1' ? ' (target >= 4)' : '')
            + `; CPU/call ${a.cpu.toFixed(3)} vs ${b.cpu.toFixed(3)} ms (${(b.cpu / a.cpu).toFixed(2)} x less${w === 'W1' ? '; target <= 0.2 ms' : ''})`
            + (a.ideal ? `; pg_dialer ${a.ideal.toFixed(3)} x ideal (target <= 1.05), Graphile Worker ${b.ideal.toFixed(3)} x` : ''));
        }
      }
    }
    if (POLICY) {
      for (const w of ['W1', 'W2']) {
        for (const state of ['fresh', 'warm']) {
          const a = med[`${w} ${state} pg_dialer`];
          const p = med[`${w} ${state} pg_dialer+${POLICY}`];
          if (a && p) {
            // each repetition's runs with and without side by side, then the median of those ratios
            const paired = p.rs.map((r) => r.rate / a.rs.find((x) => x.rep === r.rep).rate);
            console.log(`policy ${w} ${state} (${of}): without ${fmt(a.rate)} calls/s, with ${POLICY} ${fmt(p.rate)} calls/s; `
              + `with / without = ${median(paired).toFixed(3)} x${paired.length > 1 ? ` (runs ${paired.map((x) => x.toFixed(2)).join(', ')})` : ''} `
              + `(target >= 0.90); CPU/call ${a.cpu.toFixed(3)} vs ${p.cpu.toFixed(3)} ms`);
          }
        }
      }
      for (const state of ['fresh', 'warm']) {
        const rs = atOnce ? atOnce[state] : [];
        if (rs.length > 0) {
          console.log(`policy W1 ${state} at once (${rs.length > 1 ? `medians of ${rs.length} runs` : 'one run'}): `
            + `with / without = ${median(rs).toFixed(3)} x${rs.length > 1 ? ` (runs ${rs.map((x) => x.toFixed(2)).join(', ')})` : ''} (target >= 0.90); `
            + `two runs without the policy at once: ${atOnce.equal.map((x) => x.toFixed(3)).join(', ')}`);
        }
      }
    }
    for (const w of ['W1', 'W2']) {
      const f = runs(w, 'floor', 'floor');
      const g = ['fresh', 'warm'].map((st) => med[`${w} ${st} Graphile Worker`]).filter(Boolean);
      if (f.length === 0) continue;
      const rate = median(f.map((r) => r.rate));
      console.log(`floor ${w} (${of}, no database: curl --parallel, ${CONC} in flight, the same simulator): ${fmt(rate)} requests/s`
        + range(f.map((r) => r.rate), (x) => fmt(x))
        + (w === 'W2' ? `; ${median(f.map((r) => r.ideal)).toFixed(3)} x ideal (target for pg_dialer, enqueue included: <= 1.05)` : '')
        + (w === 'W1' && g.length ? `; 4 x Graphile Worker's W1 (target) is ${g.map((m) => fmt(4 * m.rate)).join(' / ')} calls/s fresh / warm, enqueue included` : ''));
    }
    const wf = med['W1 fresh pg_dialer'];
    const ww = med['W1 warm pg_dialer'];
    if (wf && ww) console.log(`ratio W1 pg_dialer fresh / warm (${of}) = ${(wf.rate / ww.rate).toFixed(2)}`);
    if (ONLY.has('enqueue')) {
      const e = {};
      await enqueueBench(db, sim, e);
      for (const state of ['fresh', 'warm']) {
        const r = e[state];
        console.log(`ratio enqueue ${state}: enqueue_calls / add_jobs = ${(r.enqueue_calls / r.add_jobs).toFixed(2)} (target >= 1); `
          + `enqueue_call one statement / add_jobs = ${(r.enqueue_call_stmt / r.add_jobs).toFixed(2)} (target >= 50,000/s: ${fmt(r.enqueue_call_stmt)}/s); `
          + `one per transaction / add_jobs = ${(r.enqueue_call_tx / r.add_jobs).toFixed(2)}; `
          + `floor (plain INSERT) / enqueue_calls = ${(r.plain / r.enqueue_calls).toFixed(2)}, / add_jobs = ${(r.plain / r.add_jobs).toFixed(2)}`);
      }
      for (const k of ['enqueue_calls', 'enqueue_call_stmt', 'enqueue_call_tx', 'add_jobs', 'plain']) {
        console.log(`ratio enqueue ${k} fresh / warm = ${(e.fresh[k] / e.warm[k]).toFixed(2)} (target within 0.8-1.2)`);
      }
    }
  } finally {
    await stopGraphile();
    await db.query('DROP SCHEMA IF EXISTS graphile_worker CASCADE').catch(() => {});
    await db.query('DROP TABLE IF EXISTS bench_gw_outcomes, bench_plain_calls').catch(() => {});
    await db.end();
    sim.child.kill('SIGTERM');
  }
}

// bench/compare.js runs these workloads for two builds side by side
module.exports = { N1, N2, CONC, REPEAT, ONLY, SETTINGS, fmt, median, range, startSim, simCall, floorRun,
  dialer, pgDialerWorkload, line };

if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
