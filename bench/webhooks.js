#!/usr/bin/env node
'use strict';
/*
 * Benchmark: signed Twilio status callbacks through PostgREST 12, per second, with their
 * p50/p99 latency.  Not a test.
 *
 *   node bench/webhooks.js [--callbacks 10000] [--rate 1000] [--concurrency 16]
 *                          [--target proxy|direct|both] [--mode open|closed|both] [--db-pool N]
 *
 * Needs a running cluster with pg_dialer installable (PGHOST, PGPORT, PGUSER; bench/run.sh
 * or test/lib/cluster.sh start one).  Starts the shipped webhook deployment on free ports
 * (test/lib/webhook_stack.js: database dialer_webhook_bench, deploy/roles.sql, PostgREST with
 * deploy/postgrest.conf, nginx with deploy/nginx/pg_dialer_webhooks.conf.template), sets up
 * callbacks/4 calls in status dialing as the worker leaves them, and sends each call the
 * four callbacks Twilio sends (initiated, ringing, in-progress, completed: SequenceNumber
 * 0..3, in that order).  Every request is signed beforehand with the twilio helper library
 * (signing is not timed).
 *
 *   open   Twilio's traffic is open-loop: callbacks are sent at --rate per second whatever
 *          the answers, a call's four callbacks spread over the run; latency counts from
 *          the moment a request was due (no coordinated omission).  This is the target:
 *          1,000 callbacks/s with p99 under 25 ms on a 2-core machine.
 *   closed the highest rate: --concurrency requests in flight, each lane sending whole
 *          calls in order.
 *
 * target proxy: through nginx (the shipped deployment, Prefer params=single-object);
 * direct: straight to PostgREST (named parameters).  Every answer must be 200 "applied",
 * and every call must end completed, or the run fails (exit status 1).
 */

const fs = require('node:fs');
const os = require('node:os');
const { execFileSync } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const crypto = require('node:crypto');
const twilio = require('twilio');
const { startWebhookStack, makeClient } = require('../test/lib/webhook_stack.js');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

const CALLBACKS = Math.max(4, Number(arg('callbacks', 10000)));
const CONCURRENCY = Math.max(1, Number(arg('concurrency', 16)));
const RATE = Math.max(1, Number(arg('rate', 1000)));
const TARGET = arg('target', 'both');
const MODE = arg('mode', 'both');
const MAX_IN_FLIGHT = 512;
const DB_POOL = Number(arg('db-pool', 0)) || undefined;
const WARMUP_CALLS = 100;
const STEPS = ['initiated', 'ringing', 'in-progress', 'completed'];

const ACCOUNT = 'AC' + crypto.randomBytes(16).toString('hex');
const TOKEN = crypto.randomBytes(16).toString('hex');


/*
 * CPU time used by the servers of the deployment, from /proc: what a callback costs
 * whatever else the machine runs (the wall-clock figures depend on that).
 */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
function cpuMs(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}
function childrenOf(ppid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}
async function cpuSnapshot(stack) {
  const [pgrst, nginx] = stack.procs.map((p) => p.proc.pid);
  const { rows } = await stack.admin.query(
    "SELECT pid FROM pg_stat_activity WHERE usename = 'dialer_webhook_authenticator'");
  const sum = (pids) => pids.reduce((a, pid) => a + cpuMs(pid), 0);
  return {
    postgres: sum(rows.map((r) => r.pid)),
    postgrest: cpuMs(pgrst),
    nginx: sum([nginx, ...childrenOf(nginx)]),
    client: process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000,
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

async function makeCalls(stack, provider, n) {
  const { rows } = await stack.admin.query(
    `WITH c AS (
       INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, from_number, provider,
                                           attempts, max_attempts, provider_call_id)
       SELECT 'dialing', now(), now(), '+1415555' || lpad((g % 10000)::text, 4, '0'), '+14155550199', $1,
              1, 3, 'CA' || md5($1 || g::text || random()::text)
         FROM generate_series(1, $2) g
       RETURNING id, provider_call_id, to_number)
     , a AS (
       INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id, http_status)
       SELECT id, 1, now(), provider_call_id, 201 FROM c)
     SELECT id::text, provider_call_id, to_number FROM c ORDER BY id`, [provider, n]);
  return rows;
}

/* The four signed requests of one call, in the order Twilio sends them. */
function prepare(stack, target, c) {
  return STEPS.map((status, i) => {
    const fields = {
      AccountSid: ACCOUNT, ApiVersion: '2010-04-01', CallSid: c.provider_call_id, CallStatus: status,
      Called: c.to_number, Caller: '+14155550199', Direction: 'outbound-api', From: '+14155550199',
      To: c.to_number, CallbackSource: 'call-progress-events', SequenceNumber: String(i),
      Timestamp: new Date().toUTCString().replace('GMT', '+0000'),
    };
    if (status === 'completed') {
      fields.CallDuration = '31';
      fields.Duration = '1';
      fields.SipResponseCode = '200';
    }
    const url = target === 'proxy'
      ? `${stack.proxy}/twilio/status-callback?call_id=${c.id}`
      : `${stack.postgrest}/rpc/twilio_status_callback`;
    const signUrl = target === 'proxy' ? url : `${stack.postgrest}/rpc/twilio_status_callback`;
    return {
      url,
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        'X-Twilio-Signature': twilio.getExpectedTwilioSignature(TOKEN, signUrl, fields),
      },
      body: new URLSearchParams(fields).toString(),
    };
  });
}

async function drive(client, calls, concurrency, latencies) {
  let next = 0;
  let errors = 0;
  let firstError = null;
  let inFlight = 0;
  // `concurrency` requests in flight: each lane takes whole calls and sends their callbacks in order
  async function lane() {
    for (;;) {
      const i = next++;
      if (i >= calls.length) return;
      for (const req of calls[i]) {
        inFlight++;
        let r;
        try {
          r = await client.request(req.url, { headers: req.headers, body: req.body });
        } catch (e) {
          r = { status: 0, text: String(e), ms: 0 };
        }
        inFlight--;
        if (latencies) latencies.push(r.ms);
        if (r.status !== 200 || !r.json || r.json.result !== 'applied') {
          errors++;
          if (!firstError) firstError = `${r.status} ${r.text}`;
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, calls.length) }, lane));
  return { errors, firstError, inFlight };
}

/*
 * Open loop: request k is due at t0 + k / rate; the calls' callbacks are interleaved
 * (all initiated, then all ringing, ...), so a call's callbacks are seconds apart and in
 * order, as Twilio sends them.
 */
async function driveOpen(client, calls, rate, latencies) {
  const reqs = [];
  for (let s = 0; s < STEPS.length; s++) for (const c of calls) reqs.push(c[s]);
  let errors = 0;
  let firstError = null;
  let inFlight = 0;
  let sent = 0;
  let maxInFlight = 0;
  const pending = [];
  const t0 = performance.now();
  while (sent < reqs.length) {
    const due = Math.min(reqs.length, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
    while (sent < due && inFlight < MAX_IN_FLIGHT) {
      const req = reqs[sent];
      const dueAt = t0 + (sent * 1000) / rate;
      sent++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      pending.push(client.request(req.url, { headers: req.headers, body: req.body })
        .catch((e) => ({ status: 0, text: String(e) }))
        .then((r) => {
          inFlight--;
          latencies.push(performance.now() - dueAt);
          if (r.status !== 200 || !r.json || r.json.result !== 'applied') {
            errors++;
            if (!firstError) firstError = `${r.status} ${r.text}`;
          }
        }));
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
  return { errors, firstError, maxInFlight };
}

async function run(stack, target, mode) {
  const provider = `bench_${target}_${mode}`;
  const callbackUrl = target === 'proxy' ? `${stack.proxy}/twilio/status-callback`
    : `${stack.postgrest}/rpc/twilio_status_callback`;
  await stack.admin.query(
    `INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, status_callback_url, max_concurrency)
     VALUES ($1, 'twilio', 'https://api.twilio.com', $2, $3, $4, NULL)`, [provider, ACCOUNT, TOKEN, callbackUrl]);
  const nCalls = Math.ceil(CALLBACKS / STEPS.length);
  const warm = (await makeCalls(stack, provider, WARMUP_CALLS)).map((c) => prepare(stack, target, c));
  const calls = (await makeCalls(stack, provider, nCalls)).map((c) => prepare(stack, target, c));
  const client = makeClient(CONCURRENCY * 2);
  try {
    const w = await drive(client, warm, CONCURRENCY, null);
    if (w.errors) throw new Error(`warm-up failed: ${w.firstError}`);
    // statistics as autovacuum keeps them in a running system (call_events is not empty)
    await stack.admin.query('VACUUM ANALYZE dialer.scheduled_calls, dialer.call_attempts, dialer.call_events');
    const latencies = [];
    const cpu0 = await cpuSnapshot(stack);
    const t0 = process.hrtime.bigint();
    const res = mode === 'open' ? await driveOpen(client, calls, RATE, latencies)
      : await drive(client, calls, CONCURRENCY, latencies);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu1 = await cpuSnapshot(stack);
    const n = latencies.length;
    const cpu = Object.fromEntries(Object.keys(cpu0).map((k) => [k, (cpu1[k] - cpu0[k]) / n]));
    const [{ done }] = (await stack.admin.query(
      "SELECT count(*)::int AS done FROM dialer.scheduled_calls WHERE provider = $1 AND status = 'completed'", [provider])).rows;
    latencies.sort((a, b) => a - b);
    return {
      target, mode, cpu, maxInFlight: res.maxInFlight, callbacks: latencies.length, calls: nCalls, secs, rate: latencies.length / secs,
      p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99),
      max: latencies[latencies.length - 1], errors: res.errors, firstError: res.firstError,
      completed: done - WARMUP_CALLS,
    };
  } finally {
    client.close();
  }
}

(async () => {
  const targets = TARGET === 'both' ? ['proxy', 'direct'] : [TARGET];
  const modes = MODE === 'both' ? ['open', 'closed'] : [MODE];
  for (const t of targets) if (!['proxy', 'direct'].includes(t)) throw new Error(`unknown --target ${t}`);
  for (const m of modes) if (!['open', 'closed'].includes(m)) throw new Error(`unknown --mode ${m}`);
  console.log(`webhooks: ${CALLBACKS} signed Twilio status callbacks per run; ${os.cpus().length} CPUs `
    + `(${os.cpus()[0].model.trim()}), load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const stack = await startWebhookStack({ database: 'dialer_webhook_bench', dbPool: DB_POOL });
  let failed = false;
  try {
    for (const t of targets) {
      for (const m of modes) {
        const r = await run(stack, t, m);
        const ok = r.errors === 0 && r.completed === r.calls;
        failed = failed || !ok;
        const how = m === 'open' ? `open loop at ${RATE}/s` : `closed loop, ${CONCURRENCY} in flight`;
        console.log(`webhooks ${t} (${how}): ${r.callbacks} callbacks in ${r.secs.toFixed(2)} s = `
          + `${r.rate.toFixed(0)} callbacks/s; latency p50 ${r.p50.toFixed(2)} ms, p90 ${r.p90.toFixed(2)} ms, `
          + `p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(2)} ms`
          + `${m === 'open' ? `; at most ${r.maxInFlight} in flight` : ''}; `
          + `${r.errors} errors, ${r.completed}/${r.calls} calls completed`
          + `${ok ? '' : ` FAILED${r.firstError ? `: ${r.firstError.slice(0, 300)}` : ''}`}`
          + `${m === 'open' ? ` (target 1000/s with p99 < 25 ms: ${r.rate >= 990 && r.p99 < 25 ? 'met' : 'missed'})` : ''}`);
        const server = r.cpu.postgres + r.cpu.postgrest + r.cpu.nginx;
        console.log(`webhooks ${t} (${how}): CPU per callback ${server.toFixed(3)} ms `
          + `(postgres ${r.cpu.postgres.toFixed(3)}, PostgREST ${r.cpu.postgrest.toFixed(3)}, nginx ${r.cpu.nginx.toFixed(3)}; `
          + `load generator ${r.cpu.client.toFixed(3)}): ${(os.cpus().length * 1000 / server).toFixed(0)} callbacks/s `
          + `would saturate ${os.cpus().length} idle CPUs`);
      }
    }
  } finally {
    await stack.stop();
  }
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
