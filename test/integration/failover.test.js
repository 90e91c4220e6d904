'use strict';
// Replicas and failover, with a real streaming standby on this machine: a primary of its own
// (wal_level replica, pg_dialer preloaded) and a `pg_basebackup -R` standby (asynchronous
// streaming replication).  What is proved:
//   - synchronous replication (synchronous_standby_names): calls flow, the worker never waits;
//   - a connected standby that stops flushing (its walreceiver stopped with SIGSTOP): claimed
//     calls are not sent, worker_status() says 'waiting for standbys' (since when, which LSN),
//     the log warns after dialer.standby_wait_timeout; a worker stopped meanwhile gives the
//     claims back (scheduled, attempt not counted); once the standby flushes, they are sent once;
//   - a running pg_basebackup (its WAL stream reports a lagging flush position) is no standby:
//     dispatching goes on while it runs;
//   - failover mid-drain: the standby lags (walreceiver stopped), the primary dies
//     (`pg_ctl -m immediate`), the WAL in transit is lost (the walreceiver is killed), the
//     standby is promoted and its worker takes over: no call requested twice at the provider,
//     none lost, and every call the old primary sent is, on the new primary, either stored as
//     accepted (with the provider's sid) or 'unknown' - never re-sent;
//   - the same failover with dialer.standby_wait = off re-dials calls: the hazard is real;
//   - with dialer.standby_wait = all and two streaming standbys, a claim waits until both have
//     flushed it (with any, one is enough), and a standby still catching up (its stream held
//     back by a relay between it and the primary, its walsender in state catchup) is waited for.
//
// Servers: DIALER_PGBIN's binaries (as the postgres user when run as root), free ports of
// 127.0.0.1, their postmaster PIDs appended to DIALER_PID_FILE, stopped by PID at the end.
// DIALER_FAILOVER_WAIT=off|any|all sets dialer.standby_wait for the first pair (default all);
// with off its failover test fails, which shows what the setting is for.
//
// By hand: DIALER_PGBIN=/usr/lib/postgresql/15/bin node --test test/integration/failover.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { Client } = require('pg');
const d = require('../lib/dialer');

const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';
const AS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
const DB = 'dialer_fo';
const WAIT_MODE = process.env.DIALER_FAILOVER_WAIT || 'all';
const sleep = d.sleep;

/* ------------------------------------------------------------------ servers */

/** Runs a PostgreSQL program as the postgres user (when root); throws with its output on failure. */
function pg(program, args) {
  const bin = path.join(PGBIN, program);
  const r = AS_ROOT
    ? spawnSync('runuser', ['-u', 'postgres', '--', bin, ...args], { encoding: 'utf8', timeout: 120000 })
    : spawnSync(bin, args, { encoding: 'utf8', timeout: 120000 });
  if (r.status !== 0) throw new Error(`${program} ${args.join(' ')}: exit ${r.status} ${r.stderr || ''}${r.stdout || ''}`);
  return r.stdout;
}

/** A TCP port of 127.0.0.1 nobody listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function ownDir(dir) {
  fs.mkdirSync(dir, { recursive: true });
  if (AS_ROOT) {
    const r = spawnSync('chown', ['postgres:postgres', dir]);
    if (r.status !== 0) throw new Error(`chown ${dir} failed`);
  }
}

/** One PostgreSQL server of a pair (primary or standby). */
class Node {
  constructor(dir, port) {
    this.dir = dir;
    this.port = port;
    this.data = path.join(dir, 'data');
    this.logFile = path.join(dir, 'postgres.log');
    this.pids = [];
  }

  start() {
    pg('pg_ctl', ['-D', this.data, '-l', this.logFile, '-w', '-t', '60', 'start']);
    const pid = this.pid();
    this.pids.push(pid);
    if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`);
  }

  /** The postmaster's PID, or null when it does not run. */
  pid() {
    try {
      return Number(fs.readFileSync(path.join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return null;
    }
  }

  stopImmediate() {
    pg('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', '-t', '60', 'stop']);
  }

  /** Stops it (fast, else kill -9 of the postmaster by its PID); never throws. */
  stop() {
    const pid = this.pid();
    if (pid === null) return;
    try {
      pg('pg_ctl', ['-D', this.data, '-m', 'fast', '-w', '-t', '30', 'stop']);
    } catch {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }

  log() {
    try { return fs.readFileSync(this.logFile, 'utf8'); } catch { return ''; }
  }

  async connect(database = DB) {
    const c = new Client({ host: '127.0.0.1', port: this.port, user: 'postgres', database,
      application_name: 'pg_dialer failover test' });
    c.on('error', () => {});
    await c.connect();
    return c;
  }

  /** connect(), retried until the server accepts connections. */
  async reconnect(database = DB, timeoutMs = 60000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        const c = await this.connect(database);
        await c.query('SELECT 1');
        return c;
      } catch (e) {
        if (Date.now() > end) throw e;
        await sleep(200);
      }
    }
  }
}

/**
 * A primary (dialer.standby_wait = waitMode, extraConf appended to its configuration) with the
 * extension created in DB, in a new directory; { dir, primary, db, standbys: [] }.
 */
async function startPrimary(name, waitMode, extraConf = '') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `pg_dialer-failover-${name}-`));
  ownDir(dir);
  const primary = new Node(path.join(dir, 'primary'), await freePort());
  ownDir(primary.dir);
  pg('initdb', ['-D', primary.data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8']);
  fs.appendFileSync(path.join(primary.data, 'postgresql.conf'), `
listen_addresses = '127.0.0.1'
port = ${primary.port}
unix_socket_directories = '${primary.dir}'
shared_preload_libraries = 'pg_dialer'
dialer.database = '${DB}'
dialer.call_window_start = '00:00'
dialer.call_window_end = '24:00'
dialer.max_concurrency = 20
dialer.standby_wait = '${waitMode}'
wal_level = replica
max_wal_senders = 5
hot_standby = on
wal_sender_timeout = 120s
max_worker_processes = 16
fsync = off
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %b '
${extraConf}
`);
  fs.appendFileSync(path.join(primary.data, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 trust\n');
  primary.start();
  pg('createdb', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', DB]);
  const db = await primary.connect();
  await db.query('CREATE EXTENSION pg_dialer');
  return { dir, primary, db, standbys: [] };
}

/**
 * A streaming standby of set.primary made by pg_basebackup -R, named `name` (its directory and
 * application_name); it streams from port `via` (a relay in front of the primary) when given.
 * Resolves once it streams.
 */
async function addStandby(set, name, { via = null } = {}) {
  const standby = new Node(path.join(set.dir, name), await freePort());
  while (standby.port === set.primary.port) standby.port = await freePort();
  ownDir(standby.dir);
  pg('pg_basebackup', ['-h', '127.0.0.1', '-p', String(set.primary.port), '-U', 'postgres', '-D', standby.data,
    '-R', '-X', 'stream', '--checkpoint=fast']);
  fs.appendFileSync(path.join(standby.data, 'postgresql.conf'),
    `\nport = ${standby.port}\nunix_socket_directories = '${standby.dir}'\n`);
  // after pg_basebackup's line: the last one counts
  fs.appendFileSync(path.join(standby.data, 'postgresql.auto.conf'),
    `primary_conninfo = 'host=127.0.0.1 port=${via || set.primary.port} user=postgres application_name=${name}'\n`);
  standby.start();
  await d.waitFor(async () => (await set.db.query(
    `SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming' AND application_name = $1`, [name])).rows[0].n === 1,
  { timeoutMs: 30000, message: `${name} to stream` });
  set.standbys.push(standby);
  return standby;
}

/** A primary and one streaming standby: { dir, primary, standby, db }. */
async function startPair(name, waitMode) {
  const set = await startPrimary(name, waitMode);
  set.standby = await addStandby(set, 'standby');
  return set;
}

async function stopPair(pair) {
  if (!pair) return;
  if (pair.db) await pair.db.end().catch(() => {});
  for (const s of pair.standbys) s.stop();
  pair.primary.stop();
  if (!process.env.DIALER_KEEP) fs.rmSync(pair.dir, { recursive: true, force: true });
}

/**
 * A TCP relay on 127.0.0.1 in front of a server, as a network between a standby and its
 * primary: what the standby sends always passes; what the primary sends can be held back
 * after a number of bytes (hold), as on a link that stalls, until release().
 */
class Relay {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.budget = Infinity;   // bytes the primary -> standby direction may still carry
    this.links = new Set();
  }

  async listen() {
    this.server = net.createServer((down) => this.link(down));
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
  }

  link(down) {
    const up = net.connect(this.targetPort, '127.0.0.1');
    const l = { up, down, held: null };
    this.links.add(l);
    const close = () => { up.destroy(); down.destroy(); this.links.delete(l); };
    up.on('error', close).on('close', close);
    down.on('error', close).on('close', close);
    down.pipe(up);
    // primary -> standby: within the budget, with the standby's back-pressure; past it, the
    // rest of the chunk is kept and the primary's socket is no longer read (its kernel buffers
    // fill up, then the walsender's writes wait)
    down.on('drain', () => { if (!l.held) up.resume(); });
    up.on('data', (chunk) => {
      if (l.held) {   // read before the pause took effect
        l.held = Buffer.concat([l.held, chunk]);
        return;
      }
      if (chunk.length > this.budget) {
        const n = Math.max(this.budget, 0);
        if (n > 0) down.write(chunk.subarray(0, n));
        this.budget = 0;
        l.held = chunk.subarray(n);
        up.pause();
        return;
      }
      this.budget -= chunk.length;
      if (!down.write(chunk)) up.pause();
    });
  }

  /** From now on, lets `bytes` more through from the primary, then holds the rest back. */
  hold(bytes) {
    this.budget = bytes;
  }

  /** Lets everything through again, what was held back first. */
  release() {
    this.budget = Infinity;
    for (const l of this.links) {
      const chunk = l.held;
      l.held = null;
      if (chunk && !l.down.write(chunk)) continue;   // resumed on drain
      l.up.resume();
    }
  }

  close() {
    for (const l of this.links) { l.up.destroy(); l.down.destroy(); }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** The standby's walreceiver PID (a child of the standby we started). */
async function walreceiverPid(standby) {
  const c = await standby.reconnect();
  try {
    const r = await d.waitFor(async () => (await c.query('SELECT pid FROM pg_stat_wal_receiver')).rows[0],
      { timeoutMs: 20000, message: 'the standby\'s walreceiver' });
    return r.pid;
  } finally {
    await c.end().catch(() => {});
  }
}

async function worker(db) {
  return (await db.query('SELECT * FROM dialer.worker_status()')).rows[0] || null;
}

async function enqueueMany(db, provider, prefix, n) {
  const r = await db.query(`SELECT dialer.enqueue_call($1 || lpad(g::text, 4, '0'), provider => $2,
                                   payload => '{"message": "failover test"}') AS id
                              FROM generate_series(1, $3) g`, [prefix, provider, n]);
  return r.rows.map((x) => Number(x.id));
}

async function statuses(db, ids) {
  const r = await db.query(`SELECT id, status, attempts, provider_call_id FROM dialer.scheduled_calls
                             WHERE id = ANY($1::bigint[]) ORDER BY id`, [ids]);
  return r.rows.map((x) => ({ ...x, id: Number(x.id) }));
}

function byStatus(rows) {
  const by = {};
  for (const r of rows) by[r.status] = (by[r.status] || 0) + 1;
  return by;
}

/* ------------------------------------------------------------------ the failover scenario */

/**
 * Drains N calls through a slow simulator; once `sentBeforeLag` were requested, the standby
 * stops flushing (walreceiver SIGSTOP) for lagMs while the primary goes on; then the primary
 * dies (immediate), the walreceiver is killed (the WAL in its socket is lost, as with a network
 * failure), the standby restarts, is promoted, and its worker drains the rest.  Returns what
 * each side saw.
 */
async function failover(pair, sim, { n = 600, sentBeforeLag = 100, lagMs = 1500 } = {}) {
  const { primary, standby, db } = pair;
  const prov = 'fo_tw';
  await d.createProvider(db, d.twilioProvider(prov, sim, { enabled: false }));
  const ids = await enqueueMany(db, prov, '+1555071', n);
  assert.equal(new Set(ids).size, n);
  await d.setProvidersEnabled(db, [prov], true);

  await d.waitFor(() => sim.control.stats().distinct_call_ids >= sentBeforeLag,
    { timeoutMs: 30000, intervalMs: 5, message: `${sentBeforeLag} calls requested`,
      describe: async () => JSON.stringify({ sim: sim.control.stats().distinct_call_ids, worker: await worker(db) }) });
  const wr = await walreceiverPid(standby);
  process.kill(wr, 'SIGSTOP');
  const atLag = sim.control.stats().distinct_call_ids;
  await sleep(lagMs);
  const beforeKill = (await db.query(`SELECT count(*)::int AS n FROM dialer.scheduled_calls
                                       WHERE id = ANY($1) AND status = 'scheduled'`, [ids])).rows[0].n;
  const w = await worker(db);
  await db.end().catch(() => {});
  pair.db = null;
  primary.stopImmediate();
  const sentByOld = new Map(Object.entries(sim.control.counts()));
  process.kill(wr, 'SIGKILL');   // stopped: dies at once, with what it had not read
  // the standby's postmaster restarts its processes and goes on with recovery
  const sb = await standby.reconnect(DB, 60000);
  assert.equal((await sb.query('SELECT pg_is_in_recovery() AS r')).rows[0].r, true);
  const onStandby = await statuses(sb, ids);
  await sb.end();
  pg('pg_ctl', ['-D', standby.data, '-w', '-t', '60', 'promote']);
  const db2 = await standby.reconnect();
  pair.db = db2;
  await d.waitFor(async () => (await db2.query(
    `SELECT count(*)::int AS n FROM dialer.scheduled_calls WHERE id = ANY($1) AND status IN ('scheduled', 'dispatching')`,
    [ids])).rows[0].n === 0,
  { timeoutMs: 60000, intervalMs: 200, message: 'the new primary to drain the queue',
    describe: async () => JSON.stringify({ by: byStatus(await statuses(db2, ids)), worker: await worker(db2) }) });
  await sleep(1000);   // anything sent late shows up now
  const rows = await statuses(db2, ids);
  return { ids, rows, sentByOld, atLag, beforeKill, worker: w, onStandby, db2 };
}

/**
 * A twilio provider `name` on a new simulator, in a primary whose dispatcher warns after
 * 500 ms of waiting for standbys (dialer.standby_wait_timeout); returns the simulator.
 */
async function providerWarningAfter500ms(db, name) {
  const s = await sim();
  await d.createProvider(db, d.twilioProvider(name, s));
  await db.query(`ALTER SYSTEM SET dialer.standby_wait_timeout = '500ms'`);
  await db.query('SELECT pg_reload_conf()');
  await sleep(300);
  return s;
}

/**
 * Enqueues three calls of provider (simulator s) and shows that the dispatcher claims them and
 * waits for the standbys: worker_status() says so, and 1.5 s later they are still dispatching
 * and nothing reached the simulator.  Returns the ids and worker_status() during the wait.
 */
async function claimsWaitUnsent(db, s, provider, prefix) {
  const ids = await enqueueMany(db, provider, prefix, 3);
  const w = await d.waitFor(async () => {
    const x = await worker(db);
    return x && x.state === 'waiting for standbys' ? x : null;
  }, { timeoutMs: 10000, intervalMs: 20, message: 'worker_status() to show the wait',
    describe: async () => JSON.stringify(await worker(db)) });
  await sleep(1500);
  assert.deepEqual((await statuses(db, ids)).map((r) => r.status), ['dispatching', 'dispatching', 'dispatching']);
  assert.equal(s.control.stats().total, 0, 'nothing was sent while the standbys did not flush');
  return { ids, w };
}

/* ------------------------------------------------------------------ pair A: standby_wait = all */

let pair;
let pairOff;
let two;
let relay;
const sims = [];

async function sim(opts = {}) {
  const s = await d.startSim('twilio', { logLimit: 5000, ...opts });
  sims.push(s);
  return s;
}

before(async () => {
  pair = await startPair('a', WAIT_MODE);
});

after(async () => {
  await stopPair(pair);
  await stopPair(pairOff);
  await stopPair(two);
  if (relay) await relay.close();
  for (const s of sims) await s.close();
});

test('synchronous replication: calls flow and the worker never waits for the standby', { timeout: 60000 }, async () => {
  const { db } = pair;
  await db.query(`ALTER SYSTEM SET synchronous_standby_names = '*'`);
  await db.query('SELECT pg_reload_conf()');
  try {
    await d.waitFor(async () => (await db.query(
      `SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'`)).rows.map((r) => r.sync_state).join() === 'sync',
    { timeoutMs: 10000, message: 'the standby to be synchronous' });
    const s = await sim();
    await d.createProvider(db, d.twilioProvider('fo_sync', s));
    const mark = pair.primary.log().length;
    const ids = await enqueueMany(db, 'fo_sync', '+1555072', 40);
    const seen = new Set();
    let waitSeen = null;
    await d.waitFor(async () => {
      const w = await worker(db);
      if (w) seen.add(w.state);
      if (w && w.standby_wait_since !== null) waitSeen = w;
      const r = await statuses(db, ids);
      return r.every((x) => x.status === 'dialing');
    }, { timeoutMs: 20000, intervalMs: 2, message: '40 calls dialing' });
    assert.equal(waitSeen, null, `worker_status() showed a wait: ${JSON.stringify(waitSeen)}`);
    assert.ok(!seen.has('waiting for standbys'), `states seen: ${[...seen]}`);
    for (const id of ids) assert.equal(s.control.counts()[String(id)], 1);
    assert.doesNotMatch(pair.primary.log().slice(mark), /waited \d+ ms for standbys/);
  } finally {
    await db.query('ALTER SYSTEM RESET synchronous_standby_names');
    await db.query('SELECT pg_reload_conf()');
  }
  await d.waitFor(async () => (await db.query(
    `SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'`)).rows.map((r) => r.sync_state).join() === 'async',
  { timeoutMs: 10000, message: 'the standby to be asynchronous again' });
});

test('a connected standby that stops flushing: claimed calls wait unsent, worker_status() and the log say so; a stopped worker gives them back; they leave once it flushes', { timeout: 90000, skip: WAIT_MODE === 'off' }, async () => {
  const { db, primary, standby } = pair;
  const s = await providerWarningAfter500ms(db, 'fo_wait');
  const mark = primary.log().length;
  const wr = await walreceiverPid(standby);
  process.kill(wr, 'SIGSTOP');
  let ids;
  try {
    let w;
    ({ ids, w } = await claimsWaitUnsent(db, s, 'fo_wait', '+1555073'));
    assert.ok(w.standby_wait_since instanceof Date && w.standby_wait_since <= new Date());
    const lsn = (await db.query(`SELECT $1::pg_lsn > flush_lsn AS ahead, $1::pg_lsn <= pg_current_wal_lsn() AS written
                                   FROM pg_stat_replication`, [w.standby_wait_lsn])).rows[0];
    assert.deepEqual(lsn, { ahead: true, written: true }, `claim LSN ${w.standby_wait_lsn}: written, not flushed by the standby`);
    assert.match(primary.log().slice(mark),
      /WARNING: {2}pg_dialer: 3 claimed call\(s\) have waited \d+ ms for standbys to flush their claim; they are not sent meanwhile\n.*DETAIL: {2}The claim's commit LSN is [0-9A-F]+\/[0-9A-F]+; 0 of the 1 connected standby\(s\) have flushed it \(dialer\.standby_wait = (all|any)\)/);
    assert.match((await worker(db)).last_error, /^waiting \d+ ms for standbys to flush claim LSN/);

    // a worker stopped now gives the claims back: scheduled, the attempt not counted
    const pid = w.pid;
    await db.query('SELECT pg_terminate_backend($1)', [pid]);
    const back = await d.waitFor(async () => {
      const r = await statuses(db, ids);
      return r.every((x) => x.status === 'scheduled' && x.attempts === 0) ? r : null;
    }, { timeoutMs: 10000, message: 'the claims given back' });
    assert.equal(back.length, 3);
    const ev = (await db.query(`SELECT count(*)::int AS n FROM dialer.call_events
                                 WHERE call_id = ANY($1) AND event = 'claim_released'`, [ids])).rows[0].n;
    assert.equal(ev, 3);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM dialer.call_attempts WHERE call_id = ANY($1)`, [ids])).rows[0].n, 0);
    // the next worker claims them again and waits again
    await d.waitFor(async () => {
      const x = await worker(db);
      return x && x.pid !== pid && x.state === 'waiting for standbys';
    }, { timeoutMs: 15000, intervalMs: 50, message: 'the next worker to wait', describe: async () => JSON.stringify(await worker(db)) });
    await sleep(1000);   // past dialer.standby_wait_timeout: it warns, and says when the wait ends
    assert.equal(s.control.stats().total, 0);
  } finally {
    process.kill(wr, 'SIGCONT');
  }
  await d.waitFor(async () => (await statuses(db, ids)).every((x) => x.status === 'dialing'),
    { timeoutMs: 10000, message: 'the calls sent once the standby flushed' });
  for (const id of ids) assert.equal(s.control.counts()[String(id)], 1, `call ${id} requested once`);
  const w2 = await worker(db);
  assert.equal(w2.standby_wait_since, null);
  assert.equal(w2.standby_wait_lsn, null);
  assert.match(primary.log().slice(mark), /LOG: {2}pg_dialer: the standbys flushed claim LSN [0-9A-F]+\/[0-9A-F]+ after \d+ ms; sending its \d+ call\(s\)/);
  await db.query(`DELETE FROM dialer.scheduled_calls WHERE provider IN ('fo_wait', 'fo_sync')`);
  await db.query(`ALTER SYSTEM RESET dialer.standby_wait_timeout`);
  await db.query('SELECT pg_reload_conf()');
});

test('a running pg_basebackup, whose WAL stream reports a flush position that lags, does not hold dispatching up', { timeout: 60000, skip: WAIT_MODE === 'off' }, async () => {
  const { db, primary } = pair;
  const s = await sim();
  await d.createProvider(db, d.twilioProvider('fo_bb', s));
  const bin = path.join(PGBIN, 'pg_basebackup');
  const args = ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', path.join(pair.dir, 'backup'),
    '-X', 'stream', '--max-rate=32k', '--checkpoint=fast'];
  // its own process group, so that it and its WAL-streaming child are stopped together
  const child = AS_ROOT
    ? spawn('runuser', ['-u', 'postgres', '--', bin, ...args], { detached: true, stdio: 'ignore' })
    : spawn(bin, args, { detached: true, stdio: 'ignore' });
  if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${child.pid}\n`);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const backupStream = `SELECT r.flush_lsn, r.flush_lsn < pg_current_wal_flush_lsn() AS behind
                          FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
                         WHERE s.temporary AND s.slot_name LIKE 'pg\\_basebackup\\_%' AND r.state = 'streaming'`;
  try {
    await d.waitFor(async () => (await db.query(backupStream)).rows.length === 1,
      { timeoutMs: 20000, message: 'pg_basebackup streaming WAL through its temporary slot' });
    const t0 = Date.now();
    const ids = await enqueueMany(db, 'fo_bb', '+1555074', 10);
    await d.waitFor(async () => (await statuses(db, ids)).every((x) => x.status === 'dialing'),
      { timeoutMs: 8000, message: 'the calls sent while the backup runs', describe: async () => JSON.stringify(await worker(db)) });
    const took = Date.now() - t0;
    // what makes this test meaningful: the backup's reported flush position is behind the claims
    const bs = (await db.query(backupStream)).rows;
    assert.equal(bs.length, 1, 'the backup still runs');
    assert.equal(bs[0].behind, true, `the backup's flush position ${bs[0].flush_lsn} is behind the claims`);
    assert.ok(took < 5000, `sent ${took} ms after enqueue`);
    for (const id of ids) assert.equal(s.control.counts()[String(id)], 1);
  } finally {
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([exited, sleep(10000)]);
  }
  await db.query(`DELETE FROM dialer.scheduled_calls WHERE provider = 'fo_bb'`);
});

test(`failover mid-drain (dialer.standby_wait = ${WAIT_MODE}): the promoted standby's worker never re-sends a call the old primary sent, and no call is lost`, { timeout: 180000 }, async () => {
  const s = await sim();
  s.control.addFault({ mode: 'delay', ms: 100 });
  const r = await failover(pair, s);
  const { ids, rows, sentByOld, db2 } = r;
  const by = byStatus(rows);
  const stats = s.control.stats();
  const counts = s.control.counts();
  const diag = JSON.stringify({ statuses: by, sentByOld: sentByOld.size, atLag: r.atLag, total: stats.total,
    dups: stats.duplicate_count, scheduledAtKill: r.beforeKill, workerAtKill: r.worker, onStandby: byStatus(r.onStandby) });
  process.stderr.write(`# failover (${WAIT_MODE}): ${diag}\n`);

  // the scenario really happened mid-drain: the old primary sent calls, the new one sent others
  assert.ok(sentByOld.size > 0 && stats.distinct_call_ids > sentByOld.size, `both primaries sent calls: ${diag}`);
  // 1. never twice: by dialer call id and by number
  assert.deepEqual(stats.duplicate_call_ids, [], `calls requested twice: ${diag}`);
  const tos = s.control.requests(5000).filter((q) => q.method === 'POST').map((q) => [].concat(q.body.To)[0]);
  assert.equal(tos.length, stats.total);
  assert.equal(new Set(tos).size, tos.length, `a number was requested twice: ${diag}`);
  // 2. none lost: every call is on the new primary, settled (dialing) or unknown
  assert.equal(rows.length, ids.length);
  for (const st of Object.keys(by)) assert.ok(['dialing', 'unknown'].includes(st), `status ${st}: ${diag}`);
  // 3. what the old primary sent is, on the new one, accepted with the provider's sid, or unknown
  const sids = new Map(s.control.calls(ids.length + 10).map((c) => [String(c.call_id), c.sid]));
  let unknownSentByOld = 0;
  for (const row of rows) {
    const id = String(row.id);
    assert.ok((counts[id] || 0) <= 1, `call ${id} requested ${counts[id]} times`);
    if (sentByOld.has(id)) {
      if (row.status === 'unknown') unknownSentByOld++;
      else assert.equal(row.provider_call_id, sids.get(id), `call ${id} sent by the old primary: ${row.status} ${row.provider_call_id}`);
    } else if (row.status === 'dialing') {
      assert.equal(counts[id], 1, `call ${id} dialing: sent once by the new primary`);
    }
  }
  assert.ok(unknownSentByOld > 0, `calls in flight at the failover are unknown on the new primary: ${diag}`);
  const ev = (await db2.query(`SELECT count(*)::int AS n FROM dialer.call_events
                                WHERE call_id = ANY($1) AND event = 'unknown' AND from_status = 'dispatching'`, [ids])).rows[0].n;
  assert.equal(ev, by.unknown, 'every unknown call has its recovery event');
  assert.match(pair.standby.log(), /pg_dialer: \d+ call\(s\) left dispatching by a previous dispatcher are now unknown/);
});

/* ------------------------------------------------------------------ pair B: standby_wait = off */

test('the same failover with dialer.standby_wait = off re-dials calls the old primary had sent (what the setting prevents)', { timeout: 180000, skip: WAIT_MODE === 'off' }, async () => {
  pairOff = await startPair('off', 'off');
  const s = await sim();
  s.control.addFault({ mode: 'delay', ms: 100 });
  const r = await failover(pairOff, s);
  const stats = s.control.stats();
  const diag = JSON.stringify({ statuses: byStatus(r.rows), sentByOld: r.sentByOld.size, atLag: r.atLag,
    dups: stats.duplicate_count, onStandby: byStatus(r.onStandby) });
  process.stderr.write(`# failover (off): ${diag}\n`);
  // the primary kept sending while the standby lagged: those claims were lost with the primary
  assert.ok(r.sentByOld.size > r.atLag, `the old primary sent while the standby lagged: ${diag}`);
  assert.ok(stats.duplicate_count > 0, `calls requested twice: ${diag}`);
  const resent = stats.duplicate_call_ids.filter((id) => r.onStandby.find((x) => String(x.id) === String(id)).status === 'scheduled');
  assert.equal(resent.length, stats.duplicate_call_ids.length, 'every re-dialed call was still scheduled on the standby');
});

/* ------------------------------------------------------------------ two standbys: standby_wait = all */

/** The walsender of a standby (by application_name), as pg_stat_replication shows it, or null. */
async function walsender(db, name) {
  return (await db.query(`SELECT state, flush_lsn, sent_lsn, pg_current_wal_lsn() AS now_lsn
                            FROM pg_stat_replication WHERE application_name = $1`, [name])).rows[0] || null;
}

test('dialer.standby_wait = all with two streaming standbys: a claim waits until both have flushed it; with any, one is enough', { timeout: 120000 }, async () => {
  two = await startPrimary('two', 'all', 'wal_keep_size = 512MB');
  await addStandby(two, 'standby1');
  relay = new Relay(two.primary.port);
  await relay.listen();
  const lagging = await addStandby(two, 'standby2', { via: relay.port });
  const { db, primary } = two;
  const s = await providerWarningAfter500ms(db, 'fo_two');
  const mark = primary.log().length;
  const wr = await walreceiverPid(lagging);
  process.kill(wr, 'SIGSTOP');
  let ids;
  try {
    let w;
    ({ ids, w } = await claimsWaitUnsent(db, s, 'fo_two', '+1555075'));
    const lsn = w.standby_wait_lsn;
    assert.deepEqual((await db.query(`SELECT application_name AS name, flush_lsn >= $1::pg_lsn AS flushed FROM pg_stat_replication
                                        ORDER BY application_name`, [lsn])).rows,
    [{ name: 'standby1', flushed: true }, { name: 'standby2', flushed: false }], `the claim's LSN ${lsn}: standby1 has it, standby2 not`);
    assert.match(primary.log().slice(mark),
      /DETAIL: {2}The claim's commit LSN is [0-9A-F]+\/[0-9A-F]+; 1 of the 2 connected standby\(s\) have flushed it \(dialer\.standby_wait = all\)/);

    // the same claim leaves once one standby is enough
    await db.query(`ALTER SYSTEM SET dialer.standby_wait = 'any'`);
    await db.query('SELECT pg_reload_conf()');
    await d.waitFor(async () => (await statuses(db, ids)).every((x) => x.status === 'dialing'),
      { timeoutMs: 10000, message: 'the calls sent with standby_wait = any while standby2 still lags' });
    assert.equal((await walsender(db, 'standby2')).state, 'streaming', 'standby2 is still connected');
  } finally {
    process.kill(wr, 'SIGCONT');
    await db.query('ALTER SYSTEM RESET dialer.standby_wait');
    await db.query('SELECT pg_reload_conf()');
  }
  for (const id of ids) assert.equal(s.control.counts()[String(id)], 1, `call ${id} requested once`);
});

test('dialer.standby_wait = all: a connected standby still catching up (walsender state catchup) is waited for', { timeout: 180000 }, async () => {
  assert.ok(two, 'the primary with two standbys of the test before');
  const { db, primary } = two;
  const lagging = two.standbys[1];
  const s = await sim();
  await d.createProvider(db, d.twilioProvider('fo_catchup', s));
  // standby2 stops; meanwhile the primary writes some 80 MB of WAL, more than the sockets
  // between them buffer
  lagging.stop();
  await d.waitFor(async () => (await walsender(db, 'standby2')) === null, { timeoutMs: 20000, message: 'standby2 to disconnect' });
  await db.query(`CREATE TABLE fo_backlog AS SELECT g, repeat('x', 400) AS pad FROM generate_series(1, 180000) g`);
  // it comes back through a link that stalls after 1 MB: it has reported a flush position,
  // and its walsender cannot send it the rest
  relay.hold(1 << 20);
  const mark = primary.log().length;
  lagging.start();
  let ids;
  try {
    const ws = await d.waitFor(async () => {
      const w = await walsender(db, 'standby2');
      return w && w.state === 'catchup' && w.flush_lsn !== null ? w : null;
    }, { timeoutMs: 30000, intervalMs: 50, message: 'standby2 connected and catching up',
      describe: async () => JSON.stringify(await walsender(db, 'standby2')) });
    process.stderr.write(`# standby2 catching up: ${JSON.stringify(ws)}\n`);
    ({ ids } = await claimsWaitUnsent(db, s, 'fo_catchup', '+1555076'));
    assert.equal((await walsender(db, 'standby2')).state, 'catchup', 'standby2 was still catching up all along');
    assert.match(primary.log().slice(mark), /1 of the 2 connected standby\(s\) have flushed it \(dialer\.standby_wait = all\)/);
  } finally {
    relay.release();
  }
  await d.waitFor(async () => (await statuses(db, ids)).every((x) => x.status === 'dialing'),
    { timeoutMs: 60000, intervalMs: 100, message: 'the calls sent once standby2 has caught up',
      describe: async () => JSON.stringify({ standby2: await walsender(db, 'standby2'), worker: await worker(db) }) });
  assert.equal((await walsender(db, 'standby2')).state, 'streaming');
  for (const id of ids) assert.equal(s.control.counts()[String(id)], 1, `call ${id} requested once`);
  await db.query('DROP TABLE fo_backlog');
});
