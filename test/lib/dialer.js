'use strict';
/*
 * Helpers for pg_dialer's integration tests (node --test, against the running cluster whose
 * dispatcher serves $DIALER_DB).  Everything here talks to the real worker: nothing is mocked.
 *
 *   const d = require('../lib/dialer');
 *   const db = await d.connect();                 // pg Client on $DIALER_DB (synchronous_commit on)
 *   await d.ensureExtension(db);                  // CREATE EXTENSION IF NOT EXISTS pg_dialer
 *   const settings = d.settings(db);
 *   await settings.set({ 'dialer.call_window_start': '00:00', 'dialer.call_window_end': '24:00' });
 *   const sim = await d.startSim('twilio');       // test/sim/server.js in this process
 *   await d.createProvider(db, d.twilioProvider('it_tw', sim, { from_number: '+15550100000' }));
 *   const id = await d.enqueue(db, '+15550100001', { provider: 'it_tw', payload: { message: 'Hi' } });
 *   const [call] = await d.waitForStatus(db, [id], ['dialing']);
 *   ...
 *   // in after(): always, pass or fail
 *   await d.dropProviders(db, ['it_tw']);         // their calls (attempts, events) too
 *   await settings.restore();                     // postgresql.auto.conf as it was
 *   await sim.close(); await db.end();
 *
 * Environment (set by test/run_all.sh): PGHOST, PGPORT, PGUSER, DIALER_DB (default dialer_test),
 * DIALER_CLUSTER_DIR (postgres.log lives there), DIALER_PGBIN.
 *
 * Rules for tests sharing the database: use your own provider names, filter every query by your
 * own call ids, clean up providers, calls and settings in after(), never assume an empty queue.
 */

const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('pg');
const { startSimulator } = require('../sim/server');

const DB = process.env.DIALER_DB || 'dialer_test';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function connInfo(database = DB) {
  return {
    host: process.env.PGHOST || '127.0.0.1',
    port: Number(process.env.PGPORT || 5432),
    user: process.env.PGUSER || 'postgres',
    database,
    application_name: 'pg_dialer integration test',
  };
}

/**
 * A connected pg Client on the worker's database.  Connection errors after connect (a crash
 * restart of the cluster) are swallowed by an 'error' listener so they cannot kill the test
 * process; the next query on that client then fails, and connect() gives a new one.
 * The session uses synchronous_commit = on (the test cluster defaults to off), so what a test
 * commits survives a crash restart.
 */
async function connect({ database = DB } = {}) {
  const c = new Client(connInfo(database));
  c.on('error', () => {});
  await c.connect();
  await c.query('SET synchronous_commit = on');
  return c;
}

/** connect(), retried until the server accepts connections again (after a crash restart). */
async function reconnect({ timeoutMs = 60000, database = DB } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const c = await connect({ database });
      await c.query('SELECT 1');
      return c;
    } catch (e) {
      last = e;
      await sleep(200);
    }
  }
  throw new Error(`the server did not accept connections within ${timeoutMs} ms: ${last && last.message}`);
}

async function ensureExtension(db) {
  await db.query('CREATE EXTENSION IF NOT EXISTS pg_dialer');
}

/**
 * Polls fn() until it returns a truthy value (returned) or timeoutMs passes (throws, with
 * describe() of the last value in the message when given).
 */
async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50, message = 'condition', describe } = {}) {
  const end = Date.now() + timeoutMs;
  let v;
  for (;;) {
    v = await fn();
    if (v) return v;
    if (Date.now() > end) break;
    await sleep(intervalMs);
  }
  const what = describe ? await describe(v) : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${what ? `: ${what}` : ''}`);
}

/* ------------------------------------------------------------------ settings */

const SETTING_NAME = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

/**
 * settings(db): changes server settings with ALTER SYSTEM + pg_reload_conf() and puts back
 * exactly what postgresql.auto.conf had before (a value, or nothing) on restore().
 * set() waits `settleMs` (default 300) after the reload, for the worker to process SIGHUP.
 */
function settings(db) {
  const saved = new Map();   // name -> previous auto.conf value (string) or null
  async function previous(name) {
    const r = await db.query(
      `SELECT setting FROM pg_file_settings
        WHERE name = $1 AND sourcefile LIKE '%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1`, [name]);
    return r.rows.length ? r.rows[0].setting : null;
  }
  async function reload(settleMs) {
    await db.query('SELECT pg_reload_conf()');
    await sleep(settleMs);
  }
  return {
    async set(values, { settleMs = 300 } = {}) {
      for (const [name, value] of Object.entries(values)) {
        if (!SETTING_NAME.test(name)) throw new Error(`bad setting name ${name}`);
        if (!saved.has(name)) saved.set(name, await previous(name));
        if (value === null || value === undefined) await db.query(`ALTER SYSTEM RESET ${name}`);
        else await db.query(`ALTER SYSTEM SET ${name} = ${db.escapeLiteral(String(value))}`);
      }
      await reload(settleMs);
    },
    async restore({ settleMs = 300 } = {}) {
      if (saved.size === 0) return;
      for (const [name, prev] of saved) {
        if (prev === null) await db.query(`ALTER SYSTEM RESET ${name}`);
        else await db.query(`ALTER SYSTEM SET ${name} = ${db.escapeLiteral(prev)}`);
      }
      saved.clear();
      await reload(settleMs);
    },
    /** rebinds to a new client (after a crash restart) */
    use(client) { db = client; },
  };
}

/** The settings every test that dials "now" needs: a calling window open all day. */
const OPEN_WINDOW = { 'dialer.call_window_start': '00:00', 'dialer.call_window_end': '24:00' };

/* ------------------------------------------------------------------ simulators and providers */

/**
 * Starts a provider simulator (test/sim/server.js) in this process on a free port of 127.0.0.1.
 * Its `control` has stats(), counts(), arrivals(), requests(), addFault(), ... (see the README).
 */
async function startSim(kind, opts = {}) {
  return startSimulator({ kind, port: 0, ...opts });
}

const PROVIDER_COLUMNS = ['name', 'kind', 'base_url', 'account_sid', 'auth_token', 'api_key_sid',
  'api_key_secret', 'bearer_token', 'webhook_secret', 'from_number', 'twiml_url', 'status_callback_url',
  'allowed_hosts', 'ring_timeout', 'machine_detection', 'async_amd', 'max_concurrency', 'calls_per_second',
  'retry_busy', 'retry_no_answer', 'retry_delay', 'enabled'];

/**
 * Inserts (or replaces) a provider row.  Only the given columns are set, so omitted ones take
 * the table's defaults.  Returns the name.
 */
async function createProvider(db, p) {
  const cols = Object.keys(p).filter((k) => p[k] !== undefined);
  for (const k of cols) if (!PROVIDER_COLUMNS.includes(k)) throw new Error(`unknown provider column ${k}`);
  await db.query(`DELETE FROM dialer.scheduled_calls WHERE provider = $1`, [p.name]);
  await db.query(`DELETE FROM dialer.providers WHERE name = $1`, [p.name]);
  await db.query(`INSERT INTO dialer.providers (${cols.join(', ')})
                  VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`, cols.map((k) => p[k]));
  return p.name;
}

/** A twilio provider row for a simulator (its account SID and auth token), fast by default. */
function twilioProvider(name, sim, extra = {}) {
  return { name, kind: 'twilio', base_url: sim.url, account_sid: sim.control.config().accountSid,
    auth_token: '0123456789abcdef0123456789abcdef', from_number: '+15550100000',
    max_concurrency: null, calls_per_second: 1000, ...extra };
}

/** A backend or voice_api provider row for a simulator, fast by default. */
function jsonProvider(name, kind, sim, extra = {}) {
  return { name, kind, base_url: sim.url, from_number: '+15550100000',
    bearer_token: kind === 'voice_api' ? 'vk_test_key' : null,
    max_concurrency: null, calls_per_second: 1000, ...extra };
}

/**
 * Removes providers and every call of theirs (attempts and events go with the calls).
 * Disables them first, in its own transaction, so the worker stops claiming their calls.
 */
async function dropProviders(db, names) {
  if (!names.length) return;
  await db.query(`UPDATE dialer.providers SET enabled = false WHERE name = ANY($1)`, [names]);
  await db.query(`DELETE FROM dialer.scheduled_calls WHERE provider = ANY($1)`, [names]);
  await db.query(`DELETE FROM dialer.providers WHERE name = ANY($1)`, [names]);
}

/** Enables or disables providers and wakes the worker at commit (a provider change alone does not). */
async function setProvidersEnabled(db, names, enabled) {
  await db.query('BEGIN');
  try {
    await db.query(`UPDATE dialer.providers SET enabled = $2 WHERE name = ANY($1)`, [names, enabled]);
    await db.query('SELECT dialer.wake_worker()');
    await db.query('COMMIT');
  } catch (e) {
    await db.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/* ------------------------------------------------------------------ calls */

/**
 * dialer.enqueue_call(to, ...) with named arguments; returns the id (a Number).
 * opts: provider, payload (object), run_at, priority, max_attempts, timezone, deadline,
 * campaign, dedupe_key.  run_at/deadline may be SQL expressions when given as {sql: '...'}.
 */
async function enqueue(db, to, opts = {}) {
  const args = ['$1'];
  const vals = [to];
  for (const [k, v] of Object.entries(opts)) {
    if (v === undefined) continue;
    if (v && typeof v === 'object' && v.sql) { args.push(`${k} => ${v.sql}`); continue; }
    vals.push(k === 'payload' ? JSON.stringify(v) : v);
    const cast = k === 'payload' ? '::jsonb' : (k === 'run_at' || k === 'deadline') ? '::timestamptz'
      : (k === 'priority' || k === 'max_attempts') ? '::int' : '::text';
    args.push(`${k} => $${vals.length}${cast}`);
  }
  const r = await db.query(`SELECT dialer.enqueue_call(${args.join(', ')}) AS id`, vals);
  return Number(r.rows[0].id);
}

/** Rows of dialer.scheduled_calls for these ids, ordered by id (ids as Numbers). */
async function calls(db, ids) {
  const r = await db.query(`SELECT * FROM dialer.scheduled_calls WHERE id = ANY($1::bigint[]) ORDER BY id`, [ids]);
  return r.rows.map((x) => ({ ...x, id: Number(x.id) }));
}

async function attempts(db, id) {
  const r = await db.query(`SELECT * FROM dialer.call_attempts WHERE call_id = $1 ORDER BY attempt`, [id]);
  return r.rows;
}

async function events(db, id) {
  const r = await db.query(`SELECT * FROM dialer.call_events WHERE call_id = $1 ORDER BY id`, [id]);
  return r.rows;
}

/** What a call looks like, for failure messages. */
async function describeCalls(db, ids, limit = 5) {
  const rows = await calls(db, ids);
  const by = {};
  for (const r of rows) by[r.status] = (by[r.status] || 0) + 1;
  const sample = rows.slice(0, limit).map((r) =>
    `#${r.id} ${r.status} attempts=${r.attempts} next=${r.next_attempt_at && r.next_attempt_at.toISOString()} err=${r.last_error}`);
  const w = await workerStatus(db).catch(() => null);
  return `statuses ${JSON.stringify(by)}; ${sample.join(' | ')}; worker ${JSON.stringify(w)}`;
}

/**
 * Waits until every call in ids has one of the statuses; returns their rows.  On timeout the
 * error says where the calls are and what the worker reports.
 */
async function waitForStatus(db, ids, statuses, { timeoutMs = 10000, intervalMs = 50 } = {}) {
  let rows;
  await waitFor(async () => {
    rows = await calls(db, ids);
    return rows.length === ids.length && rows.every((r) => statuses.includes(r.status));
  }, { timeoutMs, intervalMs, message: `calls ${ids.length > 6 ? `(${ids.length})` : ids.join(',')} to reach ${statuses.join('|')}`,
    describe: () => describeCalls(db, ids.filter((id) => {
      const r = rows && rows.find((x) => x.id === id);
      return !r || !statuses.includes(r.status);
    })) });
  return rows;
}

/* ------------------------------------------------------------------ the worker */

async function workerStatus(db) {
  const r = await db.query('SELECT * FROM dialer.worker_status()');
  return r.rows[0] || null;
}

/**
 * The dispatcher's pid, waiting until one runs (and, with notPid, until it is another one than
 * that, i.e. the worker was restarted) and has left its start-up states.
 */
async function workerPid(db, { timeoutMs = 15000, notPid = null } = {}) {
  const w = await waitFor(async () => {
    const s = await workerStatus(db);
    return s && s.pid && s.pid !== notPid && !/^(starting|waiting)/.test(s.state) ? s : null;
  }, { timeoutMs, intervalMs: 100, message: `a running dispatcher${notPid ? ` other than pid ${notPid}` : ''}`,
    describe: async () => JSON.stringify(await workerStatus(db)) });
  return w.pid;
}

/* ------------------------------------------------------------------ the server log */

function logPath() {
  const dir = process.env.DIALER_CLUSTER_DIR;
  return dir ? path.join(dir, 'postgres.log') : null;
}

/** The current end of postgres.log (a mark for logSince), or null when unknown. */
function logMark() {
  const p = logPath();
  if (!p || !fs.existsSync(p)) return null;
  return fs.statSync(p).size;
}

/** What postgres.log gained since mark. */
function logSince(mark) {
  const p = logPath();
  if (!p || mark === null || !fs.existsSync(p)) return '';
  const fd = fs.openSync(p, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - mark));
    fs.readSync(fd, buf, 0, buf.length, mark);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

module.exports = {
  DB, sleep, connInfo, connect, reconnect, ensureExtension, waitFor,
  settings, OPEN_WINDOW,
  startSim, createProvider, twilioProvider, jsonProvider, dropProviders, setProvidersEnabled,
  enqueue, calls, attempts, events, describeCalls, waitForStatus,
  workerStatus, workerPid, logPath, logMark, logSince,
};
