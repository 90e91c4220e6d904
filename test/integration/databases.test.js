'use strict';
// Several databases on one server: the launcher starts one dispatcher per served database where
// the extension is created.  Two databases dispatch at once (each to its own simulator, each
// with its own worker_status()); DROP DATABASE of one succeeds promptly, its dispatcher exits,
// the launcher forgets the database as soon as the DROP commits, and the other keeps
// dispatching; CREATE EXTENSION in a new database starts a dispatcher within
// seconds and DROP EXTENSION stops it; CREATE DATABASE ... TEMPLATE, ALTER DATABASE SET
// TABLESPACE and ALTER DATABASE RENAME on a served database complete promptly too (its
// dispatcher lets go, then comes back); a database not named by dialer.databases gets none, and
// dialer.check_served() warns there; with max_worker_processes exhausted (a cluster of its own)
// the launcher warns and starts the dispatcher once a slot frees up.  Everything is real: the cluster's launcher, its
// dispatchers, the simulators on 127.0.0.1; the server log is read for the launcher's lines.
//
// Run by test/run_all.sh; by hand:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test \
//     DIALER_CLUSTER_DIR=/tmp/dispatch-dev node --test test/integration/databases.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { Client } = require('pg');
const d = require('../lib/dialer');

const A = 'dialer_mdb_a';
const B = 'dialer_mdb_b';
const C = 'dialer_mdb_c';
const D = 'dialer_mdb_d';
const D_RENAMED = 'dialer_mdb_d_renamed';
const D_COPY = 'dialer_mdb_d_copy';
const U = 'dialer_mdb_unserved';
const ALL = [A, B, C, D, D_RENAMED, D_COPY, U];
const TABLESPACE = 'dialer_mdb_space';
let tablespaceDir = null;
// PostgreSQL waits this long for other sessions to leave a database before such a command fails
const PG_WAIT_FOR_SESSIONS_MS = 5000;
const PROVIDER = 'it_mdb';
const sims = [];
let admin;			// on postgres: CREATE / DROP DATABASE
let main;			// on the harness database: settings
let settings;
const clients = new Map();

async function dbClient(name) {
  if (!clients.has(name)) clients.set(name, await d.connect({ database: name }));
  return clients.get(name);
}
async function closeClient(name) {
  const c = clients.get(name);
  clients.delete(name);
  if (c) await c.end().catch(() => {});
}
async function dropDatabase(name) {
  await closeClient(name);
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
/** The dispatchers the launcher knows, by database name. */
async function dispatchers() {
  const r = await main.query('SELECT database, pid, state FROM dialer.dispatchers()');
  return Object.fromEntries(r.rows.map((x) => [x.database, x]));
}
async function backendAlive(pid) {
  const r = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
  return r.rows[0].n === 1;
}
/** A database with the extension and a provider pointing at its own simulator. */
async function prepare(name) {
  await admin.query(`CREATE DATABASE ${name}`);
  const c = await dbClient(name);
  await c.query('CREATE EXTENSION pg_dialer');
  const s = await d.startSim('twilio');
  sims.push(s);
  await d.createProvider(c, d.twilioProvider(PROVIDER, s));
  return { c, s };
}
async function enqueueSome(c, n, tag) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    ids.push(await d.enqueue(c, `+1555077${tag}${String(i).padStart(3, '0')}`, { provider: PROVIDER, payload: { message: `mdb ${tag}` } }));
  }
  return ids;
}

before(async () => {
  admin = await d.connect({ database: 'postgres' });
  main = await d.connect();
  for (const n of ALL) await dropDatabase(n);
  settings = d.settings(main);
  const served = (await main.query(`SELECT current_setting('dialer.databases') AS v`)).rows[0].v;
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '',
    'dialer.databases': `${served}, ${A}, ${B}, ${C}, ${D}, ${D_RENAMED}` });
});

after(async () => {
  for (const n of ALL) await dropDatabase(n).catch(() => {});
  if (admin) await admin.query(`DROP TABLESPACE IF EXISTS ${TABLESPACE}`).catch(() => {});
  if (tablespaceDir) fs.rmSync(tablespaceDir, { recursive: true, force: true });
  if (settings) await settings.restore().catch(() => {});
  for (const c of clients.values()) await c.end().catch(() => {});
  if (main) await main.end().catch(() => {});
  if (admin) await admin.end().catch(() => {});
  for (const s of sims) await s.close();
});

test('two databases dispatch at once, each through its own dispatcher; DROP DATABASE of one is prompt and the other keeps going; CREATE/DROP EXTENSION start and stop a dispatcher', { timeout: 120000 }, async () => {
  const mark = d.logMark();
  const a = await prepare(A);
  const b = await prepare(B);

  // both dispatchers run, each reporting its own database
  const wa = await d.waitFor(async () => (await d.workerStatus(a.c)), { timeoutMs: 15000, message: `a dispatcher in ${A}` });
  const wb = await d.waitFor(async () => (await d.workerStatus(b.c)), { timeoutMs: 15000, message: `a dispatcher in ${B}` });
  assert.equal(wa.database, A);
  assert.equal(wb.database, B);
  assert.notEqual(wa.pid, wb.pid, 'one dispatcher per database');
  const act = (await admin.query(`SELECT pid, datname, backend_type FROM pg_stat_activity WHERE pid = ANY($1) ORDER BY datname`,
    [[wa.pid, wb.pid]])).rows;
  assert.deepEqual(act.map((r) => [r.datname, r.backend_type]), [[A, 'pg_dialer dispatcher'], [B, 'pg_dialer dispatcher']]);

  // calls in both reach their simulators, at the same time
  const [idsA, idsB] = await Promise.all([enqueueSome(a.c, 10, '1'), enqueueSome(b.c, 10, '2')]);
  await Promise.all([d.waitForStatus(a.c, idsA, ['dialing'], { timeoutMs: 15000 }),
    d.waitForStatus(b.c, idsB, ['dialing'], { timeoutMs: 15000 })]);
  for (const id of idsA) assert.equal(a.s.control.counts()[String(id)], 1, `${A} call ${id} requested once from its simulator`);
  for (const id of idsB) assert.equal(b.s.control.counts()[String(id)], 1, `${B} call ${id} requested once from its simulator`);
  assert.equal(a.s.control.stats().total, 10, `${A}'s simulator saw only ${A}'s calls`);
  assert.equal(b.s.control.stats().total, 10, `${B}'s simulator saw only ${B}'s calls`);
  const sa = await d.workerStatus(a.c);
  const sb = await d.workerStatus(b.c);
  assert.equal(Number(sa.accepted), 10, `${A}'s worker_status counts its own calls`);
  assert.equal(Number(sb.accepted), 10, `${B}'s worker_status counts its own calls`);
  const all = await dispatchers();
  assert.equal(all[A] && all[A].pid, wa.pid);
  assert.equal(all[B] && all[B].pid, wb.pid);

  // DROP DATABASE A: prompt (its dispatcher is stopped first), the dispatcher is gone
  await closeClient(A);
  const t0 = Date.now();
  await admin.query(`DROP DATABASE ${A}`);
  const dropped = Date.now();
  const dropMs = dropped - t0;
  assert.ok(dropMs < PG_WAIT_FOR_SESSIONS_MS, `DROP DATABASE took ${dropMs} ms (PostgreSQL waits 5 s for sessions before failing)`);
  await d.waitFor(async () => !(await backendAlive(wa.pid)), { timeoutMs: 5000, message: `${A}'s dispatcher to exit` });
  // the launcher is woken when the DROP commits and forgets A at once; the 15 s allow a loaded
  // machine, the bound below is what matters: a launcher that looked before the commit took the
  // dispatcher for one that had stopped and looked again only 5 s later (its restart delay)
  await d.waitFor(async () => !(await dispatchers())[A], { timeoutMs: 15000, intervalMs: 20, message: `the launcher to forget ${A}` });
  const forgetMs = Date.now() - dropped;
  assert.ok(forgetMs < 3000, `the launcher forgot ${A} ${forgetMs} ms after the DROP returned, not at once`);

  // B keeps dispatching with the same dispatcher
  const more = await enqueueSome(b.c, 5, '3');
  await d.waitForStatus(b.c, more, ['dialing'], { timeoutMs: 15000 });
  assert.equal((await d.workerStatus(b.c)).pid, wb.pid, `${B}'s dispatcher was not disturbed`);

  // CREATE EXTENSION in a new database: a dispatcher within seconds; DROP EXTENSION stops it
  await admin.query(`CREATE DATABASE ${C}`);
  const c = await dbClient(C);
  const t1 = Date.now();
  await c.query('CREATE EXTENSION pg_dialer');
  const wc = await d.waitFor(async () => (await d.workerStatus(c)), { timeoutMs: 5000, intervalMs: 50, message: `a dispatcher in ${C}` });
  const startMs = Date.now() - t1;
  assert.equal(wc.database, C);
  await c.query('DROP EXTENSION pg_dialer');
  await d.waitFor(async () => !(await backendAlive(wc.pid)), { timeoutMs: 5000, message: `${C}'s dispatcher to exit after DROP EXTENSION` });
  await d.sleep(500);
  const afterDrop = (await dispatchers())[C];
  assert.ok(!afterDrop || afterDrop.pid === null, `no dispatcher runs in ${C} again: ${JSON.stringify(afterDrop)}`);
  process.stderr.write(`# DROP DATABASE ${dropMs} ms, ${A} forgotten ${forgetMs} ms later; dispatcher after CREATE EXTENSION in ${startMs} ms\n`);

  // the launcher's log lines
  const log = d.logSince(mark);
  assert.match(log, new RegExp(`pg_dialer dispatcher started for database "${A}"`));
  assert.match(log, new RegExp(`pg_dialer dispatcher started for database "${B}"`));
  assert.match(log, new RegExp(`pg_dialer: stopping the dispatcher of database "${A}" for DROP DATABASE`));
  assert.match(log, new RegExp(`pg_dialer dispatcher for database "${A}" stopped`));
  assert.match(log, new RegExp(`pg_dialer dispatcher for database "${C}" exiting: the extension pg_dialer is not created there`));
  assert.doesNotMatch(log, /terminated by signal|server process .* was terminated/, 'nothing crashed');
});

/**
 * Runs a command that needs database `name` without sessions (ours closed first) and returns
 * how long it took; it must not wait for the dispatcher as for a session that stays.
 */
async function promptly(name, sql) {
  await closeClient(name);
  const t0 = Date.now();
  await admin.query(sql);
  const ms = Date.now() - t0;
  assert.ok(ms < PG_WAIT_FOR_SESSIONS_MS, `${sql} took ${ms} ms: it waited for the dispatcher to leave`);
  return ms;
}

/** The dispatcher of database `name` once it runs, other than pid `notPid`; waits for it. */
async function dispatcherBack(name, notPid) {
  const c = await dbClient(name);
  return d.waitFor(async () => {
    const w = await d.workerStatus(c);
    return w && w.pid !== notPid ? w : null;
  }, { timeoutMs: 20000, intervalMs: 100, message: `the dispatcher of ${name} to come back`,
    describe: async () => JSON.stringify(await dispatchers()) });
}

test('CREATE DATABASE ... TEMPLATE, ALTER DATABASE SET TABLESPACE and ALTER DATABASE RENAME on a served database complete promptly: the dispatcher lets go and comes back', { timeout: 120000 }, async () => {
  const mark = d.logMark();
  const { c, s } = await prepare(D);
  let w = await d.waitFor(async () => (await d.workerStatus(c)), { timeoutMs: 15000, message: `a dispatcher in ${D}` });
  const times = {};

  // a copy of the database: the template must have no session while it is copied
  times.template = await promptly(D, `CREATE DATABASE ${D_COPY} TEMPLATE ${D}`);
  const copy = await dbClient(D_COPY);
  assert.equal((await copy.query(`SELECT count(*)::int AS n FROM dialer.providers WHERE name = $1`, [PROVIDER])).rows[0].n, 1,
    'the copy has the template\'s providers');
  assert.equal((await copy.query('SELECT dialer.is_served() AS v')).rows[0].v, false, 'the copy is not served');
  w = await dispatcherBack(D, w.pid);

  // the database moved to another tablespace
  tablespaceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_space.'));
  if (typeof process.getuid === 'function' && process.getuid() === 0) execFileSync('chown', ['postgres:postgres', tablespaceDir]);
  await admin.query(`CREATE TABLESPACE ${TABLESPACE} LOCATION '${tablespaceDir}'`);
  times.tablespace = await promptly(D, `ALTER DATABASE ${D} SET TABLESPACE ${TABLESPACE}`);
  w = await dispatcherBack(D, w.pid);
  const where = (await admin.query(`SELECT t.spcname FROM pg_database b JOIN pg_tablespace t ON t.oid = b.dattablespace
                                     WHERE b.datname = $1`, [D])).rows[0];
  assert.equal(where.spcname, TABLESPACE);

  // renamed to another served name: its dispatcher comes back under the new name and dispatches
  times.rename = await promptly(D, `ALTER DATABASE ${D} RENAME TO ${D_RENAMED}`);
  w = await dispatcherBack(D_RENAMED, w.pid);
  assert.equal(w.database, D_RENAMED);
  const r = await dbClient(D_RENAMED);
  const ids = await enqueueSome(r, 3, '5');
  await d.waitForStatus(r, ids, ['dialing'], { timeoutMs: 15000 });
  for (const id of ids) assert.equal(s.control.counts()[String(id)], 1, `call ${id} requested once after the rename`);
  process.stderr.write(`# TEMPLATE ${times.template} ms, SET TABLESPACE ${times.tablespace} ms, RENAME ${times.rename} ms\n`);

  const log = d.logSince(mark);
  for (const cmd of ['CREATE DATABASE \\.\\.\\. TEMPLATE', 'ALTER DATABASE SET TABLESPACE', 'ALTER DATABASE RENAME']) {
    assert.match(log, new RegExp(`pg_dialer: stopping the dispatcher of database "${D}" for ${cmd}`));
  }
  assert.match(log, new RegExp(`pg_dialer dispatcher started for database "${D_RENAMED}"`));
  assert.doesNotMatch(log, /terminated by signal|server process .* was terminated/, 'nothing crashed');

  await dropDatabase(D_RENAMED);
  await admin.query(`DROP TABLESPACE ${TABLESPACE}`);
});

test('a database not named by dialer.databases gets no dispatcher: check_served() warns, and its calls stay scheduled', async () => {
  await admin.query(`CREATE DATABASE ${U}`);
  const u = await dbClient(U);
  await u.query('CREATE EXTENSION pg_dialer');
  const s = await d.startSim('twilio');
  sims.push(s);
  await d.createProvider(u, d.twilioProvider(PROVIDER, s));
  const notices = [];
  u.on('notice', (n) => notices.push(n));
  assert.equal((await u.query('SELECT dialer.is_served() AS v')).rows[0].v, false);
  assert.equal((await u.query('SELECT dialer.check_served() AS v')).rows[0].v, false);
  assert.equal(notices.length, 1, 'one warning');
  assert.equal(notices[0].severity, 'WARNING');
  assert.match(notices[0].message, new RegExp(`no pg_dialer dispatcher serves database "${U}"`));
  assert.match(notices[0].hint, /dialer\.databases/);
  // the harness database is served
  assert.equal((await main.query('SELECT dialer.check_served() AS v')).rows[0].v, true);

  const [id] = await enqueueSome(u, 1, '9');
  await d.sleep(1500);
  assert.equal((await d.calls(u, [id]))[0].status, 'scheduled', 'nothing dispatches it');
  assert.equal(s.control.stats().total, 0);
  assert.equal(await d.workerStatus(u), null, 'no worker_status row');
  const w = (await u.query('SELECT state, pid, due_calls FROM dialer.worker_health')).rows[0];
  assert.deepEqual([w.state, w.pid, Number(w.due_calls)], ['not served', null, 1], 'worker_health shows it');
  assert.ok(!(await dispatchers())[U]);
});

/* ------------------------------------------------------------------ max_worker_processes */

const CLUSTER_SH = path.join(__dirname, '..', 'lib', 'cluster.sh');

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

test('max_worker_processes exhausted: a clear WARNING, the calls wait, and the dispatcher starts once a worker slot frees up; the 0.1.0 setting dialer.database still works', { timeout: 120000 }, async () => {
  // a cluster of its own with room for the launchers (logical replication, pg_cron, pg_dialer)
  // and one dispatcher
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_slots.'));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const env = { ...process.env, PGBIN: process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin',
    DIALER_EXTRA_CONF: 'max_worker_processes = 4' };
  const conns = [];
  const conn = async (database) => {
    const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database });
    c.on('error', () => {});
    await c.connect();
    conns.push(c);
    return c;
  };
  try {
    execFileSync('bash', [CLUSTER_SH, 'start', dir, String(port), 'slots_one'], { env, cwd: '/', stdio: 'pipe' });
    const pid = fs.readFileSync(path.join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0];
    if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`);
    const logFile = path.join(dir, 'postgres.log');
    const log = () => fs.readFileSync(logFile, 'utf8');
    const admin = await conn('postgres');
    await admin.query(`ALTER SYSTEM SET dialer.databases = '*'`);
    await admin.query('SELECT pg_reload_conf()');
    await admin.query('CREATE DATABASE slots_two');
    const one = await conn('slots_one');
    await one.query('CREATE EXTENSION pg_dialer');
    await d.waitFor(async () => (await one.query('SELECT pid FROM dialer.worker_status()')).rows.length === 1,
      { timeoutMs: 10000, message: 'the dispatcher of slots_one' });

    // no worker slot left for the second database
    const two = await conn('slots_two');
    await two.query('CREATE EXTENSION pg_dialer');
    await d.waitFor(() => /WARNING: {2}pg_dialer: could not start a dispatcher for database "slots_two": no background worker slot is free/.test(log()),
      { timeoutMs: 10000, message: 'the WARNING', describe: () => log().slice(-1500) });
    assert.match(log(), /DETAIL: {2}max_worker_processes is 4; pg_dialer needs 1 for its launcher and 1 per database it serves/);
    const w = (await two.query('SELECT pid, state FROM dialer.worker_health')).rows[0];
    assert.deepEqual([w.pid, w.state], [null, 'not running']);
    const listed = (await one.query(`SELECT state FROM dialer.dispatchers() WHERE database = 'slots_two'`)).rows;
    assert.deepEqual(listed.map((r) => r.state), ['not started: no worker slot']);
    await d.sleep(6000);
    assert.equal((log().match(/could not start a dispatcher for database "slots_two"/g) || []).length, 1,
      'warned once, not at every retry');

    // the first database lets its worker go: the second gets it within seconds
    await one.query('DROP EXTENSION pg_dialer');
    await d.waitFor(async () => (await two.query('SELECT pid FROM dialer.worker_status()')).rows.length === 1,
      { timeoutMs: 10000, intervalMs: 100, message: 'the dispatcher of slots_two', describe: () => log().slice(-1500) });
    assert.match(log(), /pg_dialer dispatcher started for database "slots_two"/);

    // 0.1.0's dialer.database still works: with dialer.databases = '*' it names the one database served
    await one.query('CREATE EXTENSION pg_dialer');
    await admin.query(`ALTER SYSTEM SET dialer.database = 'slots_one'`);
    await admin.query('SELECT pg_reload_conf()');
    await d.waitFor(async () => (await two.query('SELECT dialer.is_served() AS v')).rows[0].v === false,
      { timeoutMs: 5000, message: 'slots_two no longer served' });
    assert.equal((await one.query('SELECT dialer.is_served() AS v')).rows[0].v, true, 'slots_one is');
    await d.waitFor(async () => (await one.query('SELECT pid FROM dialer.worker_status()')).rows.length === 1,
      { timeoutMs: 10000, message: 'the dispatcher of slots_one, in the worker slot slots_two left' });
    await d.waitFor(async () => (await two.query('SELECT pid FROM dialer.worker_status()')).rows.length === 0,
      { timeoutMs: 10000, message: 'the dispatcher of slots_two to stop' });
    assert.match(log(), /pg_dialer: stopping the dispatcher of database "slots_two": it is no longer served/);
    await admin.query(`ALTER SYSTEM SET dialer.databases = 'slots_two'`);
    await admin.query('SELECT pg_reload_conf()');
    await d.waitFor(async () => (await two.query('SELECT dialer.is_served() AS v')).rows[0].v === true,
      { timeoutMs: 5000, message: 'an explicit dialer.databases wins over dialer.database' });
  } finally {
    for (const c of conns) await c.end().catch(() => {});
    try { execFileSync('bash', [CLUSTER_SH, 'stop', dir], { env, cwd: '/', stdio: 'pipe' }); } catch { /* stopped by the harness */ }
    if (process.env.DIALER_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
  }
});
