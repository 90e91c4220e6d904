#!/usr/bin/env node
'use strict';
/*
 * pg_dialer's demo driver (run by test/demo.sh, which starts the cluster first).
 *
 *   simulators   test/sim/server.js in this process: a Twilio API that rings and sends
 *                status callbacks signed with the twilio library (outcome by the number's
 *                last digit: 1 no-answer, 2 busy, else completed), and an AI-call backend
 *   webhooks     test/lib/webhook_stack.js: the database dialer_demo with deploy/roles.sql,
 *                PostgREST 12 with deploy/postgrest.conf, nginx with
 *                deploy/nginx/pg_dialer_webhooks.conf.template
 *   examples     02_insurance_renewals.sql (a campaign: run_campaign enqueues up to 50 calls)
 *                and 04_ai_agent_one_off.sql (enqueue_call, DIRECT and BRIEF_START, now)
 *
 * It shows the calls live (a table redrawn in place on a terminal, change lines otherwise),
 * then dialer.stats(), a summary from the database and its checks; exit status 1 when a
 * check fails, 130 / 143 when interrupted.  Everything it starts is stopped before it exits.
 *
 * Environment (set by test/demo.sh): PGHOST, PGPORT, PGUSER, DIALER_DB, DIALER_PGBIN,
 * DIALER_PID_FILE; DEMO_TIMEOUT (seconds the calls get, 60).
 */

const { execFile } = require('node:child_process');
const crypto = require('node:crypto');
const path = require('node:path');
const { Client } = require('pg');
const { startSimulator, DEFAULTS: SIM_DEFAULTS } = require('./sim/server');
const { startWebhookStack, makeClient } = require('./lib/webhook_stack');
const { startAdminStack } = require('./lib/admin_stack');

const REPO = path.resolve(__dirname, '..');
// test/lib/webhook_stack.js keeps its directory whenever DIALER_KEEP is set at all (even "0");
// test/demo.sh keeps things only for DIALER_KEEP=1
if (process.env.DIALER_KEEP !== '1') delete process.env.DIALER_KEEP;
const DB = process.env.DIALER_DB || 'dialer_demo';
const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';
const TIMEOUT_S = Number(process.env.DEMO_TIMEOUT || 60);
const REFRESH_MS = 500;

const TWILIO = 'demo_twilio';
const BACKEND = 'demo_ai_backend';
const CAMPAIGN = 'insurance_renewals';
const ONE_OFF = 'ai_agent_example';
/* the URL Twilio is given: public, behind a TLS terminator that forwards to nginx */
const PUBLIC_CALLBACK_URL = 'https://dialer.example.com/twilio/status-callback';
const BACKEND_TOKEN = 'demo-backend-token';
const BACKEND_WEBHOOK_SECRET = 'demo-webhook-secret';
const FINAL = ['completed', 'no_answer', 'busy', 'failed', 'canceled', 'skipped', 'expired', 'unknown'];

const tty = Boolean(process.stdout.isTTY);
const C = (code) => (s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : String(s));
const bold = C('1');
const dim = C('2');
const green = C('32');
const yellow = C('33');
const red = C('31');
const cyan = C('36');
const STATUS_COLOR = {
  scheduled: dim, dispatching: cyan, dialing: cyan, completed: green, no_answer: yellow,
  busy: yellow, failed: red, unknown: red, canceled: dim, skipped: dim, expired: dim,
};

const out = (s = '') => process.stdout.write(`${s}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const section = (s) => out(`\n${bold(`== ${s}`)}`);

/* ------------------------------------------------------------------ what it started */

const started = { sims: [], stack: null, admin: null, db: null, http: null, timers: new Set() };
// KEEP=1 (make demo KEEP=1): the admin API and dashboard are started too, and everything stays
// up after the checks until Ctrl-C
const KEEP = process.env.DIALER_DEMO_KEEP === '1';
let signalled = null;   // the signal that is stopping the demo
let stopPromise = null;
const stopOnce = () => stopPromise || (stopPromise = stopAll());
const hang = () => new Promise(() => {}); // main() gives way: the signal handler exits
let cursorHidden = false;

function showCursor() {
  if (cursorHidden) { process.stdout.write('\x1b[?25h'); cursorHidden = false; }
}

async function stopAll() {
  for (const t of started.timers) clearTimeout(t);
  started.timers.clear();
  showCursor();
  if (started.db) await started.db.end().catch(() => {});
  if (started.http) started.http.close();
  // a stack still starting is stopped once it is up (if it fails, it stops itself)
  const stack = started.stack && await started.stack.catch(() => null);
  if (stack) await stack.stop().catch((e) => out(`demo: stopping the webhook stack: ${e.message}`));
  const admin = started.admin && await started.admin.catch(() => null);
  if (admin) await admin.stop().catch((e) => out(`demo: stopping the admin stack: ${e.message}`));
  for (const s of started.sims) await s.close().catch(() => {});
}

function onSignal(sig, code) {
  process.on(sig, () => {
    if (signalled) return;
    signalled = sig;
    showCursor();
    out(`\ndemo: ${sig}: stopping the simulators, PostgREST and nginx`);
    stopOnce().finally(() => process.exit(code));
    setTimeout(() => process.exit(code), 10000).unref();
  });
}
onSignal('SIGINT', 130);
onSignal('SIGTERM', 143);
process.on('exit', showCursor);

function later(ms, fn) {
  const t = setTimeout(() => { started.timers.delete(t); fn(); }, ms);
  started.timers.add(t);
}

/* ------------------------------------------------------------------ helpers */

function psql(file, vars) {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-P', 'pager=off', '-h', process.env.PGHOST || '127.0.0.1',
    '-p', String(process.env.PGPORT || 5432), '-U', process.env.PGUSER || 'postgres', '-d', DB];
  for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
  args.push('-f', file);
  return new Promise((resolve, reject) => {
    execFile(path.join(PGBIN, 'psql'), args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`psql -f ${path.relative(REPO, file)} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

function indent(text, pad = '   ') {
  return text.replace(/\s+$/, '').split('\n').map((l) => pad + l).join('\n');
}

function hhmmss(d) { return d.toISOString().slice(11, 19); }

/* the last event of a call, in a few words */
function eventLabel(r) {
  if (!r.event) return '';
  const d = r.detail || {};
  switch (r.event) {
    case 'callback': {
      const f = d.fields || {};
      return `callback ${f.CallStatus || ''}${f.SequenceNumber !== undefined ? ` #${f.SequenceNumber}` : ''}`;
    }
    case 'webhook': return `webhook ${d.status || ''}`;
    case 'accepted': {
      const id = r.provider_call_id || '';
      return `accepted ${id.length > 14 ? `${id.slice(0, 2)}…${id.slice(-6)}` : id}`;
    }
    case 'retry_scheduled': {
      const min = Math.round((new Date(r.next_attempt_at) - new Date(r.now)) / 60000);
      return `retry_scheduled, in ${min >= 90 ? `${Math.round(min / 60)} h` : `${min} min`}`;
    }
    default: return r.event;
  }
}

function settled(r, now) {
  if (FINAL.includes(r.status)) return true;
  // waiting for a retry later than the demo lasts (the campaign's retry_delay: 2 hours)
  return r.status === 'scheduled' && r.attempts > 0 && new Date(r.next_attempt_at) - now > 120000;
}

function statusLabel(r, now) {
  if (r.status === 'scheduled' && r.attempts > 0 && settled(r, now)) return 'retry later';
  return r.status;
}

/* ------------------------------------------------------------------ the live view */

const ROWS_SQL = `
SELECT c.id, c.to_number, c.status, c.provider_status, c.attempts, c.provider, c.campaign, c.mode,
       c.provider_call_id, c.next_attempt_at, c.updated_at,
       e.id AS event_id, e.event, e.detail, clock_timestamp() AS now
  FROM dialer.scheduled_calls c
  LEFT JOIN LATERAL (SELECT ev.id, ev.event, ev.detail FROM dialer.call_events ev
                      WHERE ev.call_id = c.id ORDER BY ev.id DESC LIMIT 1) e ON true
 WHERE c.provider IN ($1, $2)
 ORDER BY c.id`;

function pad(s, n) { s = String(s ?? ''); return s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length); }
function rpad(s, n) { s = String(s ?? ''); return s.length >= n ? s.slice(0, n) : ' '.repeat(n - s.length) + s; }

function shortCampaign(r) {
  if (r.campaign === CAMPAIGN) return 'renewal';
  if (r.campaign === ONE_OFF) return `AI ${(r.mode || '').replace('_START', '')}`.trim();
  return r.campaign || '';
}

function rowText(r, now, color) {
  const st = statusLabel(r, now);
  const stCol = color ? (STATUS_COLOR[r.status] || ((x) => x))(pad(st, 11)) : pad(st, 11);
  return `${rpad(r.id, 4)}  ${pad(r.to_number, 13)}  ${pad(shortCampaign(r), 9)}  ${stCol}  `
    + `${pad(r.provider_status || '', 11)}  ${rpad(r.attempts, 3)}  ${eventLabel(r)}`;
}
const HEADER = `${rpad('id', 4)}  ${pad('number', 13)}  ${pad('call', 9)}  ${pad('status', 11)}  `
  + `${pad('provider', 11)}  ${rpad('att', 3)}  last event`;

function countsText(rows, now, color) {
  const counts = {};
  for (const r of rows) { const s = statusLabel(r, now); counts[s] = (counts[s] || 0) + 1; }
  const order = ['scheduled', 'dispatching', 'dialing', 'completed', 'no_answer', 'busy', 'retry later',
    'failed', 'unknown', 'canceled', 'skipped', 'expired'];
  return order.filter((s) => counts[s]).map((s) => {
    const t = `${s} ${counts[s]}`;
    return color && STATUS_COLOR[s] ? STATUS_COLOR[s](t) : t;
  }).join('  ');
}

function makeView(t0) {
  let prevLines = 0;
  const start = (t) => { t0 = t; };
  const seen = new Map(); // id -> signature of the last printed state
  const changedAt = new Map();

  function frame(rows, now, note) {
    const cols = Math.max(60, (process.stdout.columns || 120) - 1);
    const height = Math.max(8, (process.stdout.rows || 40) - 2);
    const el = ((Date.now() - t0) / 1000).toFixed(1);
    const lines = [];
    const cut = (s) => {
      // cut to the terminal width, counting visible characters only
      let vis = 0; let o = ''; let i = 0;
      while (i < s.length) {
        if (s[i] === '\x1b') { const j = s.indexOf('m', i); o += s.slice(i, j + 1); i = j + 1; continue; }
        if (vis >= cols) { i++; continue; }
        o += s[i]; vis++; i++;
      }
      return o + (tty ? '\x1b[0m' : '');
    };
    lines.push(cut(`${bold('calls')}  +${el} s  ${countsText(rows, now, true)}${note ? `  ${dim(note)}` : ''}`));
    lines.push(cut(dim(HEADER)));
    const room = height - lines.length;
    let shown = rows;
    let hidden = [];
    if (rows.length > room) {
      // the calls under way first, then the ones that changed in the last 3 s, then those
      // waiting in the queue, then the others; shown in id order
      const t = Date.now();
      const rank = (r) => (['dispatching', 'dialing'].includes(r.status) ? 0
        : t - (changedAt.get(r.id) || 0) < 3000 ? 1 : r.status === 'scheduled' && r.attempts === 0 ? 2 : 3);
      const ranked = [...rows].sort((a, b) => (rank(a) - rank(b)) || (a.id - b.id));
      const keep = new Set(ranked.slice(0, room - 1).map((r) => r.id));
      shown = rows.filter((r) => keep.has(r.id));
      hidden = rows.filter((r) => !keep.has(r.id));
    }
    for (const r of shown) lines.push(cut(rowText(r, now, true)));
    if (hidden.length) lines.push(cut(dim(`  … ${hidden.length} more: ${countsText(hidden, now, false)}`)));
    return lines;
  }

  return {
    start,
    update(rows, note) {
      const now = rows.length ? new Date(rows[0].now) : new Date();
      const stamp = () => `+${rpad(((Date.now() - t0) / 1000).toFixed(1), 5)}s`;
      // without a terminal: one line per change; calls first seen waiting in the queue on one line
      const queued = [];
      for (const r of rows) {
        const sig = `${r.status}|${r.provider_status}|${r.attempts}|${r.event_id}`;
        if (seen.get(r.id) !== sig) { changedAt.set(r.id, Date.now()); }
        if (!tty && seen.get(r.id) !== sig) {
          if (!seen.has(r.id) && r.status === 'scheduled' && r.event === 'enqueued') queued.push(r.id);
          else out(`${stamp()} ${rowText(r, now, false)}`);
        }
        seen.set(r.id, sig);
      }
      if (queued.length) {
        out(`${stamp()} ${queued.length} call(s) enqueued, waiting in the queue: #${queued[0]}..#${queued[queued.length - 1]}${note ? ` (${note})` : ''}`);
      }
      if (tty) {
        const lines = frame(rows, now, note);
        let s = prevLines ? `\x1b[${prevLines}A\r\x1b[J` : '';
        s += lines.join('\n') + '\n';
        process.stdout.write(s);
        prevLines = lines.length;
      }
    },
    /* the whole table once, at the end (after the live frame on a terminal) */
    final(rows) {
      const now = rows.length ? new Date(rows[0].now) : new Date();
      if (!tty) out(`+${rpad(((Date.now() - t0) / 1000).toFixed(1), 5)}s ${countsText(rows, now, false)}`);
      return now;
    },
  };
}

/* ------------------------------------------------------------------ the AI backend's webhooks */

/*
 * The customer's AI-call backend reports its calls' progress with signed JSON webhooks
 * (the simulator only places calls): the demo plays that part, through nginx.
 */
function backendWebhooks(stack, results) {
  const handled = new Set();
  async function send(r, doc) {
    const body = JSON.stringify(doc);
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = 'sha256=' + crypto.createHmac('sha256', BACKEND_WEBHOOK_SECRET).update(`${ts}.${body}`).digest('hex');
    try {
      const res = await started.http.request(`${stack.proxy}/dialer/provider-status`, {
        method: 'POST', body,
        headers: { 'Content-Type': 'application/json', 'X-Dialer-Timestamp': ts, 'X-Dialer-Signature': sig },
      });
      results.push({ id: r.id, status: doc.status, http: res.status, answer: res.json || res.text });
    } catch (e) {
      results.push({ id: r.id, status: doc.status, http: null, answer: e.message });
    }
  }
  return (rows) => {
    for (const r of rows) {
      if (r.provider !== BACKEND || r.status !== 'dialing' || !r.provider_call_id || handled.has(r.id)) continue;
      handled.add(r.id);
      const base = { call_id: r.provider_call_id, provider_call_id: r.provider_call_id, metadata: { call_id: r.id } };
      later(1200, () => send(r, { ...base, status: 'in-progress', sequence: 1 }));
      later(3500, () => send(r, {
        ...base, status: 'completed', sequence: 2, duration: 41,
        transcript: r.mode === 'BRIEF_START'
          ? 'Agent: Hi Jordan, this is Ava from Example Motors about quote Q-2291... Customer: Book it for Friday morning.'
          : 'Agent: Hi Sam, this is Ava from Example Motors. Your Corolla is ready... Customer: I will pick it up at five.',
      }));
    }
    return handled.size;
  };
}

/* ------------------------------------------------------------------ main */

async function main() {

  /* the simulators */
  const twilio = await startSimulator({
    kind: 'twilio', port: 0, callbacks: true, logLimit: 2000, logHeaders: false,
    callbackDelays: { initiated: 300, ringing: 1000, answered: 1500, completed: 2000 },
    callDuration: 42,
  });
  started.sims.push(twilio);
  const backend = await startSimulator({ kind: 'backend', port: 0, token: BACKEND_TOKEN, logHeaders: false });
  started.sims.push(backend);

  /* the webhook deployment: a fresh database dialer_demo with pg_dialer, PostgREST, nginx */
  started.stack = startWebhookStack({ database: DB, keepDatabase: true });
  const stack = await started.stack;
  if (signalled) return hang();
  // Twilio calls the public URL; the TLS terminator in front of nginx is played by
  // delivering to nginx directly, while the signature covers the public URL
  twilio.control.configure({ callbackTarget: stack.proxy });
  started.http = makeClient(8);
  if (KEEP) {
    started.admin = startAdminStack({ database: DB });
    const admin = await started.admin;
    if (signalled) return hang();
    section('the dashboard (KEEP=1: everything stays up after the checks, until Ctrl-C)');
    // the tokens are made as README says (deploy/admin-token.sh), with the demo's secret file
    out(`   open ${bold(admin.dashboard)} and paste a token:`);
    out(`   operator: ${admin.mint(['dialer_operator', '--sub', 'demo-operator', '--expires', '8h'])}`);
    out(`   viewer:   ${admin.mint(['dialer_viewer', '--sub', 'demo-viewer', '--expires', '8h'])}`);
    out(`   (more: deploy/admin-token.sh dialer_viewer --sub you --expires 8h --secret-file ${admin.secretFile})`);
    out(`   admin API: ${admin.api}/ (OpenAPI with a token), e.g. curl -H "Authorization: Bearer <token>" ${admin.api}/rpc/stats`);
  }

  const db = new Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user: process.env.PGUSER,
    database: DB, application_name: 'pg_dialer demo' });
  db.on('error', () => {});
  await db.connect();
  started.db = db;
  await db.query('CREATE EXTENSION IF NOT EXISTS pg_cron');

  section('pg_dialer demo: the whole loop on 127.0.0.1');
  out(`   Twilio simulator      ${twilio.url}   rings, answers or not (number ending 1: no-answer, 2: busy,`);
  out('                                                  else completed), sends status callbacks signed with the twilio library');
  out(`   AI-backend simulator  ${backend.url}   POST /call/brief, /call/start`);
  out(`   webhooks              nginx ${stack.proxy} -> PostgREST ${stack.postgrest} -> dialer_api.*`);
  out(`   provider ${TWILIO}: status_callback_url ${PUBLIC_CALLBACK_URL}`);
  out('       (the public URL Twilio signs; the simulator delivers to nginx, standing in for your TLS terminator)');

  /* the providers, disabled until the live view starts: their calls wait in the queue */
  await db.query(`
    INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
                                  status_callback_url, calls_per_second, max_concurrency, enabled)
    VALUES ($1, 'twilio', $2, $3, $4, '+15005550006', $5, 4, 20, false)`,
  [TWILIO, twilio.url, SIM_DEFAULTS.accountSid, SIM_DEFAULTS.authToken, PUBLIC_CALLBACK_URL]);
  await db.query(`
    INSERT INTO dialer.providers (name, kind, base_url, bearer_token, webhook_secret, calls_per_second,
                                  max_concurrency, enabled)
    VALUES ($1, 'backend', $2, $3, $4, 5, 20, false)`, [BACKEND, backend.url, BACKEND_TOKEN, BACKEND_WEBHOOK_SECRET]);

  /* the examples */
  section(`psql -v provider=${TWILIO} -f examples/02_insurance_renewals.sql`);
  out(dim('   (sample schema, campaign rules as data, who is due and why the others are not, pg_cron schedule, run_campaign)'));
  out(indent(await psql(path.join(REPO, 'examples', '02_insurance_renewals.sql'), { provider: TWILIO })));
  // call_at: now, as a literal (the script's last query finds its calls by run_at = call_at)
  const callAt = (await db.query(`SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"+00"') AS t`)).rows[0].t;
  section(`psql -v provider=${BACKEND} -v call_at='${callAt}' -f examples/04_ai_agent_one_off.sql`);
  out(dim('   (two one-off enqueue_call()s through the AI backend, due now: DIRECT with a script, BRIEF_START with a brief)'));
  out(indent(await psql(path.join(REPO, 'examples', '04_ai_agent_one_off.sql'), { provider: BACKEND, call_at: callAt })));

  section(`SELECT dialer.run_campaign('${CAMPAIGN}')   -- again: nobody is scheduled twice`);
  const again = await db.query('SELECT dialer.run_campaign($1) AS n', [CAMPAIGN]);
  out(`   enqueued: ${again.rows[0].n}`);

  /* the dispatcher (restarted after the database was created afresh) */
  let worker = null;
  for (let i = 0; i < 150 && !worker; i++) {
    const w = await db.query('SELECT pid, state FROM dialer.worker_status() WHERE database = current_database()');
    if (w.rows.length) worker = w.rows[0]; else await sleep(100);
  }
  if (!worker) throw new Error('the pg_dialer dispatcher did not start within 15 s (see postgres.log)');

  section(`live: the calls, from dialer.scheduled_calls and dialer.call_events every ${REFRESH_MS} ms`);
  out(dim([
    '   The providers were created disabled: the calls wait in the queue until UPDATE dialer.providers',
    `   SET enabled = true.  Then the dispatcher (pid ${worker.pid}) dials them, through Twilio at most 4 calls`,
    '   per second and 20 at once (the provider\'s calls_per_second and max_concurrency).',
    '   callback   a Twilio status callback, signed, via nginx and PostgREST into dialer_api.twilio_status_callback',
    '   webhook    the AI backend\'s HMAC-signed JSON report, into dialer_api.provider_status_callback',
    '   retry later  busy or no-answer: scheduled again by the campaign\'s rules (retry_delay 2 hours)',
    `   The calls get ${TIMEOUT_S} s; Ctrl-C stops everything.`,
  ].join('\n')));
  out('');
  const tQueue = Date.now();
  const view = makeView(tQueue);
  const webhookResults = [];
  const webhooks = backendWebhooks(stack, webhookResults);
  if (tty) { process.stdout.write('\x1b[?25l'); cursorHidden = true; }
  view.update((await db.query(ROWS_SQL, [TWILIO, BACKEND])).rows, 'providers disabled: nothing is dialled');
  await sleep(tty ? 1500 : 0);
  if (signalled) return hang();
  await db.query('UPDATE dialer.providers SET enabled = true WHERE name IN ($1, $2)', [TWILIO, BACKEND]);
  await db.query('SELECT dialer.wake_worker()');
  const t0 = Date.now();
  view.start(t0);

  let rows = [];
  let done = false;
  let timedOut = false;
  while (!signalled) {
    const tick = Date.now();
    rows = (await db.query(ROWS_SQL, [TWILIO, BACKEND])).rows;
    const now = rows.length ? new Date(rows[0].now) : new Date();
    const backendCalls = webhooks(rows);
    const cb = twilio.control.stats().callbacks;
    const allSettled = rows.length > 0 && rows.every((r) => settled(r, now));
    const webhooksDone = webhookResults.length >= 2 * backendCalls
      && rows.filter((r) => r.provider === BACKEND).every((r) => FINAL.includes(r.status));
    done = allSettled && webhooksDone && cb.pending === 0;
    view.update(rows, done ? 'all calls settled' : '');
    if (done) break;
    if (Date.now() - t0 > TIMEOUT_S * 1000) { timedOut = true; break; }
    await sleep(Math.max(50, REFRESH_MS - (Date.now() - tick)));
  }
  if (signalled) return hang();
  showCursor();
  const now = view.final(rows);
  const callsSeconds = ((Date.now() - t0) / 1000).toFixed(1);

  /* one call's history, and what the AI backend reported */
  const sample = rows.find((r) => r.provider === TWILIO && r.status === 'completed');
  if (sample) {
    section(`SELECT at, event, from_status, to_status, ... FROM dialer.call_events WHERE call_id = ${sample.id}`);
    const ev = (await db.query(`
      SELECT to_char(e.at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') AS at, e.event, e.from_status, e.to_status,
             coalesce(e.detail->'fields'->>'CallStatus', e.detail->>'provider_call_id', '') AS detail
        FROM dialer.call_events e WHERE e.call_id = $1 ORDER BY e.id`, [sample.id])).rows;
    for (const e of ev) {
      out(`   ${e.at}  ${pad(e.event, 10)}  ${pad(e.from_status || '', 11)} -> ${pad(e.to_status || '', 11)}  ${e.detail}`);
    }
  }
  const ai = (await db.query(`
    SELECT c.id, c.mode, c.status, a.duration_seconds, a.transcript
      FROM dialer.scheduled_calls c JOIN dialer.call_attempts a ON a.call_id = c.id AND a.attempt = c.attempts
     WHERE c.provider = $1 ORDER BY c.id`, [BACKEND])).rows;
  if (ai.length) {
    section('the AI calls, as the backend reported them (dialer.call_attempts)');
    for (const a of ai) {
      out(`   #${a.id} ${pad(a.mode, 11)}  ${pad(a.status, 9)}  ${a.duration_seconds ?? '-'} s  ${dim(JSON.stringify(a.transcript || ''))}`);
    }
  }

  /* dialer.stats() */
  // the day the calls were made (run_at), even when the demo runs across midnight
  const day = (await db.query(`SELECT coalesce(min(run_at)::date, current_date)::text AS d
                                  FROM dialer.scheduled_calls WHERE provider IN ($1, $2)`, [TWILIO, BACKEND])).rows[0].d;
  section(`SELECT jsonb_pretty(dialer.stats('${day}'))`);
  const stats = (await db.query('SELECT dialer.stats($1::date) AS s', [day])).rows[0].s;
  out(indent((await db.query('SELECT jsonb_pretty($1::jsonb) AS p', [JSON.stringify(stats)])).rows[0].p));

  /* the summary, from the database */
  section('summary (from dialer.scheduled_calls)');
  const summary = (await db.query(`
    SELECT c.campaign, c.status,
           CASE WHEN c.status = 'scheduled' AND c.attempts > 0 THEN c.provider_status END AS after,
           count(*)::int AS n, min(c.next_attempt_at) AS next_at
      FROM dialer.scheduled_calls c
     WHERE c.provider IN ($1, $2)
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, [TWILIO, BACKEND])).rows;
  out(`   ${pad('campaign', 20)}${pad('status', 12)}${rpad('calls', 6)}  note`);
  for (const s of summary) {
    const note = s.after ? `${s.after}: retry_scheduled for ${hhmmss(new Date(s.next_at))} UTC (retry_delay 2 hours)` : '';
    out(`   ${pad(s.campaign, 20)}${(STATUS_COLOR[s.status] || ((x) => x))(pad(s.status, 12))}${rpad(s.n, 6)}  ${dim(note)}`);
  }
  const total = summary.reduce((a, s) => a + s.n, 0);
  out(`   ${pad('total', 32)}${rpad(total, 6)}  ${dim(`calls took ${callsSeconds} s from enabling the providers`)}`);

  /* the checks */
  section('checks');
  const failures = [];
  const check = (ok, text, detail) => {
    out(`   ${ok ? green('ok  ') : red('FAIL')} ${text}${!ok && detail ? `\n          ${detail}` : ''}`);
    if (!ok) failures.push(text);
  };

  const dbRows = (await db.query(ROWS_SQL, [TWILIO, BACKEND])).rows;
  check(!timedOut && dbRows.every((r) => settled(r, now)),
    `every call settled (final, or waiting for its retry) within ${TIMEOUT_S} s`,
    (() => {
      const left = dbRows.filter((r) => !settled(r, now));
      return left.slice(0, 8).map((r) => `#${r.id} ${r.status}`).join(', ') + (left.length > 8 ? `, ... (${left.length} in all)` : '');
    })());
  const shown = rows.map((r) => `${r.id}:${r.status}:${r.attempts}`).join(',');
  const stored = dbRows.map((r) => `${r.id}:${r.status}:${r.attempts}`).join(',');
  check(shown === stored, `nothing moved after the live view's last frame: it shows what the database holds (${dbRows.length} calls)`);

  const todays = (await db.query(`
    SELECT count(*)::int AS calls,
           count(*) FILTER (WHERE status = 'completed')::int AS completed,
           count(*) FILTER (WHERE status = 'failed')::int AS failed,
           count(*) FILTER (WHERE status IN ('no_answer', 'busy'))::int AS not_reached,
           count(*) FILTER (WHERE status IN ('scheduled', 'dispatching', 'dialing'))::int AS pending,
           count(*) FILTER (WHERE status = 'unknown')::int AS unknown
      FROM dialer.scheduled_calls WHERE run_at >= $1::date::timestamptz AND run_at < ($1::date + 1)::timestamptz`,
  [day])).rows[0];
  const statsOk = ['calls', 'completed', 'failed', 'not_reached', 'pending', 'unknown']
    .every((k) => Number(stats[k]) === todays[k]);
  check(statsOk && todays.calls === total,
    `dialer.stats() agrees with the summary (calls ${stats.calls}, completed ${stats.completed}, `
    + `not_reached ${stats.not_reached}, pending ${stats.pending}, failed ${stats.failed}, unknown ${stats.unknown})`,
    `stats ${JSON.stringify(stats)} vs rows ${JSON.stringify(todays)}, summary total ${total}`);

  const campaignCalls = dbRows.filter((r) => r.campaign === CAMPAIGN).length;
  check(campaignCalls === 50 && Number(again.rows[0].n) === 0,
    `run_campaign enqueued the daily cap of 50 renewals once (${campaignCalls}), the second run 0 (${again.rows[0].n})`);

  // the simulators: every call placed exactly once
  const tStats = twilio.control.stats();
  const tCounts = twilio.control.counts();
  const twilioRows = dbRows.filter((r) => r.provider === TWILIO);
  const tBad = twilioRows.filter((r) => tCounts[String(r.id)] !== 1 || r.attempts !== 1);
  check(tBad.length === 0 && tStats.duplicate_count === 0 && tStats.distinct_call_ids === twilioRows.length
    && tStats.placing_without_call_id === 0,
  `the Twilio simulator was asked for each of the ${twilioRows.length} calls exactly once (no duplicates)`,
  `distinct ${tStats.distinct_call_ids}, duplicates ${tStats.duplicate_count}; ${tBad.slice(0, 5).map((r) => `#${r.id}: ${tCounts[String(r.id)] || 0}x`).join(', ')}`);
  const bStats = backend.control.stats();
  const bCounts = backend.control.counts();
  const bBrief = backend.control.counts('/call/brief');
  const backendRows = dbRows.filter((r) => r.provider === BACKEND);
  const bBad = backendRows.filter((r) => bCounts[String(r.id)] !== 1
    || (r.mode === 'BRIEF_START' ? bBrief[String(r.id)] !== 1 : bBrief[String(r.id)] !== undefined));
  check(bBad.length === 0 && bStats.duplicate_count === 0 && bStats.distinct_call_ids === backendRows.length
    && backendRows.length === 2,
  `the AI-backend simulator started each of the ${backendRows.length} one-off calls once (/call/brief once for BRIEF_START)`,
  `${JSON.stringify({ start: bCounts, brief: bBrief })}`);

  // every outcome in the database is the simulator's
  const simCalls = twilio.control.calls(10000);
  const simBySid = new Map(simCalls.map((c) => [c.sid, c]));
  const expect = { completed: ['completed'], busy: ['busy', 'scheduled'], 'no-answer': ['no_answer', 'scheduled'] };
  const mismatched = twilioRows.filter((r) => {
    const c = simBySid.get(r.provider_call_id);
    return !c || c.call_id !== String(r.id) || !(expect[c.status] || []).includes(r.status)
      || r.provider_status !== c.status;
  });
  check(mismatched.length === 0, 'every Twilio call\'s outcome in the database is the simulator\'s (CallSid, status)',
    mismatched.slice(0, 5).map((r) => `#${r.id} ${r.status}/${r.provider_status} vs ${JSON.stringify(simBySid.get(r.provider_call_id)?.status)}`).join(', '));
  const cb = tStats.callbacks;
  check(cb.sent > 0 && cb.ok === cb.sent && cb.non2xx === 0 && cb.errors === 0 && cb.pending === 0,
    `all ${cb.sent} signed status callbacks were accepted through nginx -> PostgREST (signature verified)`,
    JSON.stringify(cb));
  const applied = (await db.query(`
    SELECT count(*)::int AS n FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
     WHERE c.provider = $1 AND e.event = 'callback'`, [TWILIO])).rows[0].n;
  check(applied === cb.sent, `each callback is one event in dialer.call_events (${applied})`);
  const whOk = webhookResults.filter((w) => w.http === 200).length;
  const transcripts = (await db.query(`
    SELECT count(*)::int AS n FROM dialer.call_attempts a JOIN dialer.scheduled_calls c ON c.id = a.call_id
     WHERE c.provider = $1 AND a.transcript IS NOT NULL AND c.status = 'completed'`, [BACKEND])).rows[0].n;
  check(webhookResults.length > 0 && whOk === webhookResults.length && transcripts === backendRows.length,
    `the AI backend's ${webhookResults.length} HMAC-signed JSON webhooks were accepted; both calls completed with a transcript`,
    JSON.stringify(webhookResults));
  const unknownOrReconciled = (await db.query(`
    SELECT count(*) FILTER (WHERE c.status = 'unknown')::int AS unknown,
           (SELECT count(*)::int FROM dialer.call_events e WHERE e.event LIKE 'reconcil%'
               AND e.call_id IN (SELECT id FROM dialer.scheduled_calls WHERE provider IN ($1, $2))) AS reconciled
      FROM dialer.scheduled_calls c WHERE c.provider IN ($1, $2)`, [TWILIO, BACKEND])).rows[0];
  check(unknownOrReconciled.unknown === 0,
    `no call is unknown; reconciliation lookups needed: ${unknownOrReconciled.reconciled} (every callback arrived)`);

  out('');
  if (failures.length) out(red(bold(`demo: ${failures.length} check(s) failed`)));
  else out(green(bold('demo: all checks passed')));
  if (KEEP && started.admin) {
    const admin = await started.admin;
    out(`\ndemo: KEEP=1: the stack stays up. Dashboard: ${bold(admin.dashboard)} (tokens above). Ctrl-C stops everything.`);
    return hang();
  }
  await stopOnce();
  return failures.length ? 1 : 0;
}

// When a signal arrived, its handler stops everything and exits; main() may fail meanwhile
// (its connection is closed under it): that is not an error to report.
main().then((code) => {
  if (!signalled) process.exit(code);
}, (e) => {
  if (signalled) return;
  showCursor();
  process.stderr.write(`demo: ${e && e.stack ? e.stack : e}\n`);
  stopOnce().finally(() => process.exit(1));
});
