'use strict';
// Monitoring: the views dialer.call_counts, dialer.provider_health and dialer.worker_health, read
// through the REAL prometheus-postgres-exporter (Debian's package) started by this test against
// the test cluster with deploy/prometheus/pg_dialer_queries.yaml, and the LOG/WARNING lines a
// provider's failure pause and its recovery write to the server log.
//
// Run by test/run_all.sh; by hand:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test \
//     DIALER_CLUSTER_DIR=/tmp/dispatch-dev node --test test/integration/monitoring.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const d = require('../lib/dialer');

const EXPORTER = process.env.DIALER_EXPORTER || '/usr/bin/prometheus-postgres-exporter';
const QUERIES = path.join(__dirname, '..', '..', 'deploy', 'prometheus', 'pg_dialer_queries.yaml');
const P = 'it_mon_';
const ROLE = 'it_mon_exporter';		// the exporter connects as a role given only dialer.grant_monitoring()
const providers = new Set();
const sims = [];
let db;
let settings;
let exporter;
let exporterUrl;
let exporterLog = '';

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}
function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }).on('error', reject);
  });
}
/** Samples of a metric from the exposition text: [{labels: {...}, value}] */
function samples(text, name) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}
function one(text, name, match) {
  const s = samples(text, name).filter((x) => Object.entries(match).every(([k, v]) => x.labels[k] === v));
  assert.equal(s.length, 1, `one ${name} sample for ${JSON.stringify(match)}; found ${JSON.stringify(s)}\n${exporterLog.slice(-2000)}`);
  return s[0].value;
}
async function scrape() {
  const r = await get(`${exporterUrl}/metrics`);
  assert.equal(r.status, 200);
  return r.body;
}
async function provider(p) {
  providers.add(p.name);
  return d.createProvider(db, p);
}

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '',
    'dialer.retry_base_delay': '60s', 'dialer.retry_max_delay': '60s' });
  await d.workerPid(db);

  await db.query(`DROP OWNED BY ${ROLE}`).catch(() => {});
  await db.query(`DROP ROLE IF EXISTS ${ROLE}`);
  await db.query(`CREATE ROLE ${ROLE} LOGIN`);
  await db.query('SELECT dialer.grant_monitoring($1)', [ROLE]);

  assert.ok(fs.existsSync(EXPORTER), `${EXPORTER} is installed (Debian package prometheus-postgres-exporter)`);
  const port = await freePort();
  exporterUrl = `http://127.0.0.1:${port}`;
  const dsn = `postgresql://${ROLE}@${process.env.PGHOST || '127.0.0.1'}:${process.env.PGPORT || 5432}/${d.DB}?sslmode=disable`;
  exporter = spawn(EXPORTER, [`--web.listen-address=127.0.0.1:${port}`, `--extend.query-path=${QUERIES}`,
    '--disable-default-metrics', '--disable-settings-metrics'],
  { env: { ...process.env, DATA_SOURCE_NAME: dsn }, stdio: ['ignore', 'pipe', 'pipe'] });
  if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${exporter.pid}\n`);
  exporter.stdout.on('data', (c) => { exporterLog += c; });
  exporter.stderr.on('data', (c) => { exporterLog += c; });
  await d.waitFor(async () => (await get(`${exporterUrl}/metrics`).catch(() => null))?.status === 200,
    { timeoutMs: 15000, intervalMs: 100, message: 'the exporter to answer', describe: () => exporterLog.slice(-1000) });
});

after(async () => {
  if (exporter && exporter.exitCode === null) {
    exporter.kill('SIGTERM');
    await new Promise((r) => { exporter.once('exit', r); setTimeout(r, 3000); });
  }
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    if (settings) await settings.restore().catch(() => {});
    await db.query(`DROP OWNED BY ${ROLE}`).catch(() => {});
    await db.query(`DROP ROLE IF EXISTS ${ROLE}`).catch(() => {});
    await db.end().catch(() => {});
  }
  for (const s of sims) await s.close();
});

test('the exporter publishes calls by status, provider and campaign: the scheduled count is what was enqueued', async () => {
  const s = await d.startSim('twilio');
  sims.push(s);
  const name = `${P}idle`;
  await provider(d.twilioProvider(name, s, { enabled: false }));
  for (let i = 0; i < 7; i++) {
    await d.enqueue(db, `+1555088${String(i).padStart(4, '0')}`, { provider: name, campaign: `${P}campaign`, payload: { message: 'm' } });
  }
  for (let i = 0; i < 2; i++) await d.enqueue(db, `+1555089${String(i).padStart(4, '0')}`, { provider: name, payload: { message: 'm' } });
  const text = await scrape();
  assert.equal(one(text, 'pg_dialer_calls_count', { provider: name, status: 'scheduled', campaign: `${P}campaign` }), 7);
  assert.equal(one(text, 'pg_dialer_calls_count', { provider: name, status: 'scheduled', campaign: '' }), 2);
  assert.equal(one(text, 'pg_dialer_provider_enabled', { provider: name }), 0);
  // the worker: up, in this database; the metric values match the view
  const w = (await db.query('SELECT pid, state, dispatched FROM dialer.worker_health')).rows[0];
  assert.ok(w.pid, 'a dispatcher runs');
  assert.equal(one(text, 'pg_dialer_worker_up', { database: d.DB }), 1);
  assert.ok(one(text, 'pg_dialer_worker_dispatched', { database: d.DB }) >= Number(w.dispatched));
  assert.ok(one(text, 'pg_dialer_worker_lag_seconds', { database: d.DB }) >= 0);
});

test('a failing provider: consecutive failures, failure pause and failed requests in the metrics; WARNING when paused, LOG when resumed', { timeout: 60000 }, async () => {
  const s = await d.startSim('twilio');
  sims.push(s);
  const name = `${P}fail`;
  await provider(d.twilioProvider(name, s));
  const mark = d.logMark();
  s.control.addFault({ mode: 'status500' });
  const ids = [];
  for (let i = 0; i < 6; i++) {
    ids.push(await d.enqueue(db, `+1555087${String(i).padStart(4, '0')}`, { provider: name, max_attempts: 5, payload: { message: 'm' } }));
  }
  await d.waitFor(async () => (await db.query(
    `SELECT count(*)::int AS n FROM dialer.call_attempts WHERE call_id = ANY($1) AND http_status = 500`, [ids])).rows[0].n >= 6,
  { timeoutMs: 15000, message: 'six 500s' });
  await d.waitFor(async () => (await db.query(`SELECT consecutive_failures FROM dialer.provider_health WHERE provider = $1`, [name])).rows[0].consecutive_failures >= 5,
    { timeoutMs: 5000, message: 'the dispatcher to publish the failure streak' });

  const text = await scrape();
  assert.ok(one(text, 'pg_dialer_provider_consecutive_failures', { provider: name }) >= 5);
  const until = one(text, 'pg_dialer_provider_paused_until_seconds', { provider: name });
  assert.ok(until * 1000 > Date.now() - 60000 && until * 1000 < Date.now() + 61000, `paused_until ${until} is a pause of this test`);
  assert.ok(one(text, 'pg_dialer_provider_failed_last_hour', { provider: name }) >= 6);
  assert.equal(one(text, 'pg_dialer_provider_accepted_last_hour', { provider: name }), 0);
  assert.ok(one(text, 'pg_dialer_provider_last_error_seconds', { provider: name }) > 0);
  const h = (await db.query('SELECT last_error, paused_until FROM dialer.provider_health WHERE provider = $1', [name])).rows[0];
  assert.match(h.last_error, /500/, 'last_error names the HTTP status');
  assert.ok(h.paused_until);
  assert.match(d.logSince(mark), new RegExp(`WARNING:  pg_dialer: provider "${name}" paused for \\d+ ms after 5 consecutive failures`));

  // the provider recovers: a success resumes it, and the log says so
  s.control.clearFaults();
  const ok = await d.enqueue(db, '+15550870100', { provider: name, payload: { message: 'ok' } });
  await d.waitForStatus(db, [ok], ['dialing'], { timeoutMs: 70000 });
  await d.waitFor(() => /pg_dialer: provider "it_mon_fail" resumed: a request succeeded after \d+ consecutive failures/.test(d.logSince(mark)),
    { timeoutMs: 5000, message: 'the resumed LOG line' });
  await d.waitFor(async () => (await db.query(`SELECT consecutive_failures FROM dialer.provider_health WHERE provider = $1`, [name])).rows[0].consecutive_failures === 0,
    { timeoutMs: 5000, message: 'the streak to be published as over' });
  const text2 = await scrape();
  assert.equal(one(text2, 'pg_dialer_provider_consecutive_failures', { provider: name }), 0);
  assert.ok(one(text2, 'pg_dialer_provider_accepted_last_hour', { provider: name }) >= 1);
  assert.doesNotMatch(d.logSince(mark), /auth_token|0123456789abcdef0123456789abcdef/, 'no secret in the log');
});

test('a provider paused after failures resumes at once when its URL is corrected', { timeout: 60000 }, async () => {
  const s = await d.startSim('twilio');
  sims.push(s);
  const name = `${P}fixed`;
  // nothing listens on the port the provider is first given: every request is refused
  const closed = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
  await provider(d.twilioProvider(name, s, { base_url: `http://127.0.0.1:${closed}` }));
  const mark = d.logMark();
  // the worker knows the provider and its calls-per-second budget has filled (a provider starts
  // with one token), so that the twelve calls below, in one transaction, are claimed together and
  // fail together (claimed a few at a time, the first five would pause the provider before the
  // others were sent)
  await d.waitFor(async () => (await db.query('SELECT 1 FROM dialer.provider_status() WHERE provider = $1', [name])).rows.length === 1,
    { timeoutMs: 10000, message: 'the worker to load the provider' });
  await d.sleep(300);
  const failing = (await db.query(`SELECT id FROM dialer.enqueue_calls($1::jsonb)`, [JSON.stringify(
    Array.from({ length: 12 }, (_, i) => ({ to_number: `+1555088${String(i).padStart(4, '0')}`, provider: name,
      max_attempts: 1, payload: { message: 'm' } })))])).rows.map((r) => r.id);
  assert.equal(failing.length, 12);
  // twelve refusals in a row: paused for 60 s
  const h = await d.waitFor(async () => {
    const r = (await db.query(`SELECT consecutive_failures, paused_until, paused_until > now() + interval '30 seconds' AS long
                                 FROM dialer.provider_health WHERE provider = $1`, [name])).rows[0];
    return r.consecutive_failures >= 12 && r.long ? r : null;
  }, { timeoutMs: 15000, message: 'a failure pause of over 30 s' });
  const id = await d.enqueue(db, '+15550880100', { provider: name, payload: { message: 'after the fix' } });
  await db.query('UPDATE dialer.providers SET base_url = $1 WHERE name = $2', [s.url, name]);
  const [c] = await d.waitForStatus(db, [id], ['dialing'], { timeoutMs: 15000 });
  assert.equal(c.status, 'dialing');
  assert.ok(Date.now() < new Date(h.paused_until).getTime(), 'dialled before the pause would have ended');
  assert.match(d.logSince(mark), new RegExp(`LOG:  pg_dialer: provider "${name}" resumed: its URL or credentials changed after \\d+ consecutive failures`));
  assert.equal((await db.query('SELECT consecutive_failures FROM dialer.provider_health WHERE provider = $1', [name])).rows[0].consecutive_failures, 0);
  // the calls that failed stay failed
  const f = (await db.query('SELECT count(*)::int AS n FROM dialer.scheduled_calls WHERE id = ANY($1) AND status = \'failed\'', [failing])).rows[0].n;
  assert.equal(f, 12);
});

test('worker_health: lag grows while dispatching is off, and the exporter reports it', async () => {
  const s = await d.startSim('twilio');
  sims.push(s);
  const name = `${P}lag`;
  await provider(d.twilioProvider(name, s));
  await settings.set({ 'dialer.enabled': 'off' });
  try {
    const id = await d.enqueue(db, '+15550860001', { provider: name, run_at: { sql: "now() - interval '30 seconds'" }, payload: { message: 'late' } });
    const text = await scrape();
    const lag = one(text, 'pg_dialer_worker_lag_seconds', { database: d.DB });
    assert.ok(lag >= 29, `lag ${lag} s: the call has been due for 30 s`);
    assert.ok(one(text, 'pg_dialer_worker_due_calls', { database: d.DB }) >= 1);
    assert.equal(one(text, 'pg_dialer_worker_up', { database: d.DB, state: 'paused (dialer.enabled = off)' }), 1);
    assert.equal((await d.calls(db, [id]))[0].status, 'scheduled');
  } finally {
    await settings.set({ 'dialer.enabled': 'on' });
  }
});

test('grant_monitoring: the role reads the monitoring views, and neither the tables nor a secret', async () => {
  await db.query('BEGIN');
  try {
    await db.query(`SET LOCAL ROLE ${ROLE}`);
    assert.equal((await db.query('SELECT count(*)::int AS n FROM dialer.worker_health')).rows[0].n, 1);
    await db.query('SELECT * FROM dialer.provider_health');
    await db.query('SELECT * FROM dialer.call_counts');
    await db.query('SELECT * FROM dialer.dispatchers()');
    for (const q of ['SELECT to_number FROM dialer.scheduled_calls LIMIT 1', 'SELECT auth_token FROM dialer.providers LIMIT 1',
      "SELECT dialer.enqueue_call('+15550860002')"]) {
      await db.query('SAVEPOINT s');
      await assert.rejects(db.query(q), (e) => e.code === '42501', `${q} is refused`);
      await db.query('ROLLBACK TO SAVEPOINT s');
    }
  } finally {
    await db.query('ROLLBACK');
  }
});
