#!/usr/bin/env node
'use strict';
/*
 * pg_dialer dispatch benchmark (issue 3): W1 throughput, W2 drain with a slow provider,
 * W3 commit-to-arrival latency (idle, and while 100 requests of another provider are in
 * flight), and the worker's memory over 100,000 calls, against the
 * project's Twilio simulator on 127.0.0.1. Beside W1 it runs a baseline: the loop the seed
 * systems use (a poller that claims one call with FOR UPDATE SKIP LOCKED, posts it, stores the
 * answer), 16 of them at once in Node, on the same workload.
 *
 * Needs a cluster with pg_dialer preloaded (bench/run.sh starts one) and PGHOST/PGPORT/
 * PGUSER/DIALER_DB in the environment. Prints one line per figure; exits 0.
 */
const { Client } = require('pg');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');

const DB = process.env.DIALER_DB || 'dialer_test';
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const N1 = Number(process.env.W1_CALLS || 20000);
const N2 = Number(process.env.W2_CALLS || 10000);
const N3 = Number(process.env.W3_CALLS || 200);
const NRSS = Number(process.env.RSS_CALLS || 100000);
const NBASE = Number(process.env.BASELINE_CALLS || 5000);
// BENCH_ONLY=w1,baseline,w2,w3,rss runs only those parts (default: all)
const ONLY = new Set((process.env.BENCH_ONLY || 'w1,baseline,w2,w3,rss').split(','));

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

async function setting(db, name, value) {
  await db.query(`ALTER SYSTEM SET ${name} = '${value}'`);
  await db.query('SELECT pg_reload_conf()');
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

/* Enqueues n calls for provider 'bench' while it is disabled; returns once committed. */
async function enqueue(db, n, tag) {
  await db.query("UPDATE dialer.providers SET enabled = false WHERE name = 'bench'");
  await db.query(`SELECT count(dialer.enqueue_call('+1' || (4150000000 + g)::text, provider => 'bench',
                  payload => '{"message": "Your appointment is tomorrow at 9."}', campaign => $1))
                  FROM generate_series(1, $2) g`, [tag, n]);
}

async function release(db) {
  await db.query("UPDATE dialer.providers SET enabled = true WHERE name = 'bench'");
  await db.query('SELECT dialer.wake_worker()');
}

async function pending(db, tag) {
  const r = await db.query(`SELECT count(*) FILTER (WHERE status IN ('scheduled', 'dispatching'))::int AS open,
                                   count(*) FILTER (WHERE status = 'dialing')::int AS dialing
                              FROM dialer.scheduled_calls WHERE campaign = $1`, [tag]);
  return r.rows[0];
}

async function workerMemory(db) {
  const r = await db.query('SELECT pid FROM dialer.worker_status()');
  const pid = r.rows[0].pid;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [0, 0])[1]);
  return { pid, rss: kb('VmRSS'), anon: kb('RssAnon') };
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/* The seed systems' loop: claim one, post it, store the answer; `workers` at once. */
async function baseline(sim, n, workers) {
  const admin = new Client({ database: DB });
  await admin.connect();
  await admin.query('CREATE TABLE IF NOT EXISTS bench_baseline_jobs (id bigserial PRIMARY KEY, to_number text, status text, sid text, run_at timestamptz DEFAULT now())');
  await admin.query('TRUNCATE bench_baseline_jobs');
  await admin.query(`INSERT INTO bench_baseline_jobs (to_number, status) SELECT '+1' || (4150000000 + g)::text, 'scheduled' FROM generate_series(1, $1) g`, [n]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const auth = 'Basic ' + Buffer.from('AC0123456789abcdef0123456789abcdef:0123456789abcdef0123456789abcdef').toString('base64');
  const post = (to) => new Promise((resolve, reject) => {
    const body = new URLSearchParams({ To: to, From: '+15005550006', Twiml: '<Response><Say>Hi</Say></Response>' }).toString();
    const req = http.request({ host: '127.0.0.1', port: sim.port, method: 'POST', agent,
      path: '/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json',
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let s = '';
      res.on('data', (c) => { s += c; });
      res.on('end', () => resolve(JSON.parse(s).sid));
    });
    req.on('error', reject);
    req.end(body);
  });
  const t0 = Date.now();
  await Promise.all(Array.from({ length: workers }, async () => {
    const c = new Client({ database: DB });
    await c.connect();
    for (;;) {
      await c.query('BEGIN');
      const r = await c.query(`UPDATE bench_baseline_jobs SET status = 'dispatching' WHERE id =
        (SELECT id FROM bench_baseline_jobs WHERE status = 'scheduled' AND run_at <= now()
          ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, to_number`);
      await c.query('COMMIT');
      if (r.rowCount === 0) break;
      const sid = await post(r.rows[0].to_number);
      await c.query("UPDATE bench_baseline_jobs SET status = 'dialing', sid = $2 WHERE id = $1", [r.rows[0].id, sid]);
    }
    await c.end();
  }));
  const secs = (Date.now() - t0) / 1000;
  await admin.query('DROP TABLE bench_baseline_jobs');
  await admin.end();
  agent.destroy();
  return n / secs;
}

/*
 * W3: N3 calls, one every 50 ms, each in its own transaction; prints the latency from COMMIT
 * sent to the request at the simulator, and the same path as PostgreSQL sees it.
 */
async function w3(db, sim, tag, label) {
  await simCall(sim, 'POST', 'reset');
  const commits = new Map();
  for (let i = 0; i < N3; i++) {
    const started = Date.now();
    await db.query('BEGIN');
    const r = await db.query(`SELECT dialer.enqueue_call('+1' || (4160000000 + $1::int)::text, provider => 'bench',
                               payload => '{"message": "hi"}', campaign => $2) AS id`, [i, tag]);
    const t = nowUs();
    await db.query('COMMIT');
    commits.set(String(r.rows[0].id), t);
    await sleep(Math.max(0, 50 - (Date.now() - started)));
  }
  await waitFor(async () => (await simCall(sim, 'GET', 'stats')).total >= N3, 30000);
  const arrivals = (await simCall(sim, 'GET', 'arrivals')).arrivals;
  const lat = [...commits].map(([id, t]) => (arrivals[id] - t) / 1000).sort((a, b) => a - b);
  console.log(`W3 ${N3} calls, one every 50 ms${label}, COMMIT sent -> request at provider: p50 ${pct(lat, 50).toFixed(2)} ms, p99 ${pct(lat, 99).toFixed(2)} ms, max ${lat[lat.length - 1].toFixed(2)} ms`);
  if (process.env.BENCH_VERBOSE) console.log('W3 slowest:', lat.slice(-8).map((x) => x.toFixed(2)).join(' '));
  // the same path seen by PostgreSQL alone: enqueue transaction start -> claim transaction start
  const dbl = (await db.query(`SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY
                                 extract(epoch FROM a.requested_at - c.created_at) * 1000) AS p
                                 FROM dialer.scheduled_calls c JOIN dialer.call_attempts a ON a.call_id = c.id
                                WHERE c.campaign = $1`, [tag])).rows[0].p;
  console.log(`W3${label} inside the database (enqueue transaction start -> claim transaction start): p50 ${dbl[0].toFixed(2)} ms, p99 ${dbl[1].toFixed(2)} ms`);
  if (process.env.BENCH_VERBOSE) {
    const rq = (await db.query(`SELECT c.id::text AS id, extract(epoch FROM a.requested_at) * 1e6 AS req
                                  FROM dialer.scheduled_calls c JOIN dialer.call_attempts a ON a.call_id = c.id
                                 WHERE c.campaign = $1`, [tag])).rows;
    const d = rq.map((r) => (arrivals[r.id] - Number(r.req)) / 1000).sort((a, b) => a - b);
    const c2 = [...commits].map(([id, t]) => (Number(rq.find((r) => r.id === id).req) - t) / 1000).sort((a, b) => a - b);
    console.log(`W3 COMMIT sent -> claim start: p50 ${pct(c2, 50).toFixed(2)} p99 ${pct(c2, 99).toFixed(2)}; claim start -> arrival: p50 ${pct(d, 50).toFixed(2)} p99 ${pct(d, 99).toFixed(2)} ms`);
  }
}

async function main() {
  const sim = await startSim();
  const db = new Client({ database: DB });
  // a cluster that cannot be reached: say so, and leave no simulator behind
  await db.connect().catch((e) => {
    sim.child.kill('SIGTERM');
    throw e;
  });
  try {
    await db.query('CREATE EXTENSION IF NOT EXISTS pg_dialer');
    await db.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
                      calls_per_second, max_concurrency, enabled)
                    VALUES ('bench', 'twilio', $1, 'AC0123456789abcdef0123456789abcdef',
                            '0123456789abcdef0123456789abcdef', '+15005550006', 100000, NULL, false)
                    ON CONFLICT (name) DO UPDATE SET base_url = EXCLUDED.base_url, calls_per_second = 100000,
                      max_concurrency = NULL`, [sim.url]);
    await setting(db, 'dialer.call_window_start', '00:00');
    await setting(db, 'dialer.call_window_end', '24:00');
    await setting(db, 'dialer.batch_size', '500');
    // the simulator sends no callbacks here: keep reconciliation of the bench's dialing calls out of the run
    await setting(db, 'dialer.reconcile_after', '1h');
    const cores = os.cpus().length;
    console.log(`pg_dialer dispatch benchmark: ${cores} cores, PostgreSQL ${(await db.query('SHOW server_version')).rows[0].server_version}, fsync=${(await db.query('SHOW fsync')).rows[0].fsync}, synchronous_commit (worker) = on`);

    /*
     * Warm-up, not measured: a production queue is warm (WAL segments recycled, tables and
     * indexes already extended, caches filled); a brand-new cluster is not.
     */
    if (!process.env.BENCH_NO_WARMUP) {
      await setting(db, 'dialer.max_concurrency', '200');
      await simCall(sim, 'POST', 'reset');
      await enqueue(db, 20000, 'warmup');
      await release(db);
      await waitFor(async () => (await pending(db, 'warmup')).open === 0, 120000, 100);
      await db.query("DELETE FROM dialer.scheduled_calls WHERE campaign = 'warmup'");
      await db.query('VACUUM ANALYZE dialer.scheduled_calls');
      await db.query('VACUUM ANALYZE dialer.call_attempts');
      await db.query('VACUUM ANALYZE dialer.call_events');
      await db.query('CHECKPOINT');
    }

    /* W1 */
    if (ONLY.has('w1')) {
    await setting(db, 'dialer.max_concurrency', '200');
    await simCall(sim, 'POST', 'reset');
    await enqueue(db, N1, 'w1');
    const t1 = nowUs();
    await release(db);
    await waitFor(async () => (await simCall(sim, 'GET', 'stats')).total >= N1, 120000);
    const arrivedUs = nowUs();
    await waitFor(async () => (await pending(db, 'w1')).open === 0, 120000);
    const storedUs = nowUs();
    const st1 = await simCall(sim, 'GET', 'stats');
    console.log(`W1 ${N1} due calls, 0 ms provider, dialer.max_concurrency 200: ${(N1 / ((arrivedUs - t1) / 1e6)).toFixed(0)} calls/s sent (${((arrivedUs - t1) / 1e6).toFixed(2)} s), ${(N1 / ((storedUs - t1) / 1e6)).toFixed(0)} calls/s with outcomes stored; duplicates at simulator: ${st1.duplicate_count}`);
    }

    if (ONLY.has('baseline')) {
    const b = await db.query("SELECT current_setting('dialer.enabled') AS e");
    await setting(db, 'dialer.enabled', 'off');
    await simCall(sim, 'POST', 'reset');
    const base = await baseline(sim, NBASE, 16);
    await setting(db, 'dialer.enabled', b.rows[0].e);
    console.log(`W1 baseline (seed-system loop: 16 Node pollers, claim 1 with SKIP LOCKED, post, store), ${NBASE} calls: ${base.toFixed(0)} calls/s`);
    }

    /* W2 */
    if (ONLY.has('w2')) {
    await setting(db, 'dialer.max_concurrency', '100');
    await simCall(sim, 'POST', 'reset');
    await simCall(sim, 'POST', 'config', { latency: 100 });
    await enqueue(db, N2, 'w2');
    const t2 = nowUs();
    await release(db);
    // watch slowly (every 250 ms) so that watching does not slow the worker or the
    // simulator; the drain time comes from the simulator's own arrival times
    await waitFor(async () => {
      const st = await simCall(sim, 'GET', 'stats');
      return st.total >= N2 && st.in_flight === 0;
    }, 300000, 250);
    const arr = Object.values((await simCall(sim, 'GET', 'arrivals')).arrivals);
    if (process.env.BENCH_DUMP) fs.writeFileSync(process.env.BENCH_DUMP, JSON.stringify(arr.map((a) => a - t2)));
    const drain = (Math.max(...arr) + 100000 - t2) / 1e6;
    await waitFor(async () => (await pending(db, 'w2')).open === 0, 300000);
    const ideal = (N2 / 100) * 0.1;
    console.log(`W2 ${N2} calls, 100 ms provider, concurrency 100: last answer ${drain.toFixed(2)} s after release (ideal ${ideal.toFixed(1)} s): ratio ${(drain / ideal).toFixed(3)}; first request after ${((Math.min(...arr) - t2) / 1000).toFixed(1)} ms; mean requests in flight ${(N2 * 0.1 / drain).toFixed(1)}`);
    await simCall(sim, 'POST', 'config', { latency: 0 });
    }

    /* W3 */
    if (ONLY.has('w3')) {
    await setting(db, 'dialer.max_concurrency', '200');
    await db.query("UPDATE dialer.providers SET enabled = true WHERE name = 'bench'");
    await w3(db, sim, 'w3', '');
    // the same while 100 requests of another provider wait at its simulator (60 s answers): the
    // worker then waits on their sockets, and a new call must still wake it at once
    const hold = await startSim();
    try {
      await simCall(hold, 'POST', 'config', { latency: 60000 });
      await db.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
                        calls_per_second, max_concurrency)
                      VALUES ('bench_hold', 'twilio', $1, 'AC0123456789abcdef0123456789abcdef',
                              '0123456789abcdef0123456789abcdef', '+15005550006', 100000, NULL)`, [hold.url]);
      await db.query(`SELECT count(*) FROM dialer.enqueue_calls((SELECT jsonb_agg(jsonb_build_object(
                        'to_number', '+1' || (4180000000 + g)::text, 'provider', 'bench_hold',
                        'payload', jsonb_build_object('message', 'hold'))) FROM generate_series(1, 100) g))`);
      await waitFor(async () => (await simCall(hold, 'GET', 'stats')).total >= 100, 30000);
      await w3(db, sim, 'w3busy', ' while 100 requests are in flight');
    } finally {
      await db.query("UPDATE dialer.providers SET enabled = false WHERE name = 'bench_hold'").catch(() => {});
      hold.child.kill('SIGTERM');
    }
    }

    /* memory */
    if (ONLY.has('rss')) {
    await db.query('CHECKPOINT');
    const m0 = await workerMemory(db);
    let left = NRSS;
    while (left > 0) {
      const n = Math.min(left, 20000);
      await simCall(sim, 'POST', 'reset');
      await enqueue(db, n, 'rss');
      await release(db);
      await waitFor(async () => (await pending(db, 'rss')).open === 0, 300000);
      left -= n;
    }
    const m1 = await workerMemory(db);
    console.log(`RSS worker pid ${m0.pid} over ${NRSS} calls: VmRSS ${(m0.rss / 1024).toFixed(1)} -> ${(m1.rss / 1024).toFixed(1)} MB (includes shared buffers it touched), private RssAnon ${(m0.anon / 1024).toFixed(1)} -> ${(m1.anon / 1024).toFixed(1)} MB, growth ${((m1.anon - m0.anon) / 1024).toFixed(2)} MB`);
    }
  } finally {
    await db.query("DELETE FROM dialer.scheduled_calls WHERE provider IN ('bench', 'bench_hold')").catch(() => {});
    await db.query("DELETE FROM dialer.providers WHERE name = 'bench_hold'").catch(() => {});
    await db.end();
    sim.child.kill('SIGTERM');
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
