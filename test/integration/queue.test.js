'use strict';
// Dedupe under real concurrency: two sessions racing on one dedupe_key (the loser blocks on
// the unique index until the winner commits or rolls back), and many clients hammering the
// same keys.  Runs in its own database, dialer_queue_test, so the dispatcher (which serves
// dialer_test) never sees these calls.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55432 PGUSER=postgres node --test test/integration/queue.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('pg');

const DB = 'dialer_queue_test';
const conn = (database) => ({
  host: process.env.PGHOST || '127.0.0.1',
  port: Number(process.env.PGPORT || 5432),
  user: process.env.PGUSER || 'postgres',
  database,
  application_name: 'pg_dialer queue.test.js',
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connect(database = DB) {
  const c = new Client(conn(database));
  await c.connect();
  return c;
}

const ENQUEUE = `SELECT dialer.enqueue_call($1, run_at => '2030-01-01 10:00+00', dedupe_key => $2) AS id`;

async function enqueue(client, number, key) {
  const r = await client.query(ENQUEUE, [number, key]);
  return Number(r.rows[0].id);
}

// Waits until the backend `pid` is blocked on a lock (proof that it really raced).
async function waitUntilBlocked(observer, pid, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const r = await observer.query(
      `SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1 AND state = 'active'`, [pid]);
    if (r.rows.length && r.rows[0].wait_event_type === 'Lock') return;
    await sleep(10);
  }
  assert.fail(`backend ${pid} never blocked on the first session's row`);
}

async function rowsFor(client, key) {
  const r = await client.query(
    `SELECT c.id, (SELECT count(*) FROM dialer.call_events e WHERE e.call_id = c.id)::int AS events
       FROM dialer.scheduled_calls c WHERE c.dedupe_key = $1`, [key]);
  return r.rows.map((x) => ({ id: Number(x.id), events: x.events }));
}

let admin;   // in DB: checks and pg_stat_activity
const open = [];

test.before(async () => {
  const root = await connect('postgres');
  try {
    await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    await root.query(`CREATE DATABASE ${DB}`);
  } finally {
    await root.end();
  }
  admin = await connect();
  await admin.query('CREATE EXTENSION pg_dialer');
  await admin.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, twiml_url)
                     VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC1', 'https://app.example.com/twiml.xml')`);
});

test.after(async () => {
  for (const c of open) await c.end().catch(() => {});
  if (admin) await admin.end().catch(() => {});
  const root = await connect('postgres');
  try {
    await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  } finally {
    await root.end();
  }
});

async function session() {
  const c = await connect();
  open.push(c);
  const r = await c.query('SELECT pg_backend_pid() AS pid');
  c.pid = r.rows[0].pid;
  return c;
}

test('two sessions race on one dedupe_key: the loser waits and returns the winner\'s id', { timeout: 30000 }, async () => {
  const a = await session();
  const b = await session();
  await a.query('BEGIN');
  const idA = await enqueue(a, '+14155550100', 'race-commit');

  // B sees no committed row, so it goes on to insert and blocks on A's uncommitted key
  const pendingB = enqueue(b, '+14155550101', 'race-commit');
  await waitUntilBlocked(admin, b.pid);
  assert.deepEqual(await rowsFor(admin, 'race-commit'), [], 'nothing visible before A commits');

  await a.query('COMMIT');
  const idB = await pendingB;
  assert.equal(idB, idA, 'B returns the id A stored');
  assert.deepEqual(await rowsFor(admin, 'race-commit'), [{ id: idA, events: 1 }],
    'exactly one call, with one enqueued event');
  const n = await admin.query(`SELECT to_number FROM dialer.scheduled_calls WHERE id = $1`, [idA]);
  assert.equal(n.rows[0].to_number, '+14155550100', 'the stored call is A\'s');
});

test('the winner rolls back: the waiting session inserts its own call', { timeout: 30000 }, async () => {
  const a = await session();
  const b = await session();
  await a.query('BEGIN');
  const idA = await enqueue(a, '+14155550100', 'race-rollback');
  const pendingB = enqueue(b, '+14155550102', 'race-rollback');
  await waitUntilBlocked(admin, b.pid);

  await a.query('ROLLBACK');
  const idB = await pendingB;
  assert.notEqual(idB, idA, 'B stored a call of its own');
  assert.deepEqual(await rowsFor(admin, 'race-rollback'), [{ id: idB, events: 1 }], 'exactly B\'s call exists');
  const n = await admin.query(`SELECT to_number FROM dialer.scheduled_calls WHERE id = $1`, [idB]);
  assert.equal(n.rows[0].to_number, '+14155550102');
});

test('a waiting session in a transaction of its own also gets the winner\'s id, and can commit', { timeout: 30000 }, async () => {
  const a = await session();
  const b = await session();
  await a.query('BEGIN');
  await b.query('BEGIN');
  const idA = await enqueue(a, '+14155550100', 'race-both-in-tx');
  const pendingB = enqueue(b, '+14155550103', 'race-both-in-tx');
  await waitUntilBlocked(admin, b.pid);
  await a.query('COMMIT');
  assert.equal(await pendingB, idA);
  await b.query('COMMIT');
  assert.deepEqual(await rowsFor(admin, 'race-both-in-tx'), [{ id: idA, events: 1 }]);
});

test('under REPEATABLE READ the loser gets a serialization failure, never a duplicate', { timeout: 30000 }, async () => {
  const a = await session();
  const b = await session();
  await a.query('BEGIN');
  await b.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await b.query('SELECT 1');  // take B's snapshot before A commits
  const idA = await enqueue(a, '+14155550100', 'race-rr');
  const pendingB = enqueue(b, '+14155550104', 'race-rr').then((id) => ({ id }), (err) => ({ err }));
  await waitUntilBlocked(admin, b.pid);
  await a.query('COMMIT');
  const res = await pendingB;
  await b.query('ROLLBACK');
  assert.ok(res.err, `B must not return an id it cannot see (got ${res.id})`);
  assert.equal(res.err.code, '40001', `serialization failure, got ${res.err.code} ${res.err.message}`);
  // retried in a new transaction, B gets A's call
  assert.equal(await enqueue(b, '+14155550104', 'race-rr'), idA);
  assert.deepEqual(await rowsFor(admin, 'race-rr'), [{ id: idA, events: 1 }]);
});

test('many clients hammering the same keys: one call per key, every caller gets its id', { timeout: 120000 }, async () => {
  const CLIENTS = 12;
  const ROUNDS = 40;
  const KEYS_PER_ROUND = 3;
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) clients.push(await session());

  // deterministic pseudo-random choices, so a failure can be replayed
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

  const results = [];   // {key, id, committed}
  const errors = [];
  // Each round, every client goes for one of a few fresh keys at the same moment: some
  // autocommit, some hold the key in a transaction for a few ms and commit or roll back.
  for (let r = 0; r < ROUNDS; r++) {
    await Promise.all(clients.map(async (c, ci) => {
      const key = `hammer-${r}-${Math.floor(rand() * KEYS_PER_ROUND)}`;
      const mode = rand();
      const hold = rand() * 0.005;
      const number = `+1415555${String(1000 + r * CLIENTS + ci).padStart(4, '0')}`;
      try {
        if (mode < 0.4) {
          results.push({ key, id: await enqueue(c, number, key), committed: true });
        } else {
          await c.query('BEGIN');
          const id = await enqueue(c, number, key);
          await c.query('SELECT pg_sleep($1)', [hold]);
          const commit = mode < 0.85;
          await c.query(commit ? 'COMMIT' : 'ROLLBACK');
          results.push({ key, id, committed: commit });
        }
      } catch (err) {
        errors.push(`${key}: ${err.code} ${err.message}`);
        await c.query('ROLLBACK').catch(() => {});
      }
    }));
  }

  assert.deepEqual(errors, [], 'no enqueue failed (no unique violation ever reaches the caller)');
  assert.equal(results.length, CLIENTS * ROUNDS);
  const stored = await admin.query(
    `SELECT dedupe_key, count(*)::int AS n, min(id) AS id FROM dialer.scheduled_calls
      WHERE dedupe_key LIKE 'hammer-%' GROUP BY dedupe_key`);
  const byKey = new Map(stored.rows.map((x) => [x.dedupe_key, { n: x.n, id: Number(x.id) }]));
  const keys = new Set(results.map((x) => x.key));
  for (const k of keys) {
    const committed = results.filter((x) => x.key === k && x.committed);
    if (committed.length === 0) {
      assert.ok(!byKey.has(k), `key ${k}: only rolled back, so no call`);
      continue;
    }
    assert.ok(byKey.has(k), `key ${k} has a stored call`);
    assert.equal(byKey.get(k).n, 1, `key ${k}: exactly one call`);
    for (const x of committed) assert.equal(x.id, byKey.get(k).id, `key ${k}: every committed caller got the stored id`);
  }
  assert.ok(byKey.size > ROUNDS, `calls were stored for many keys (${byKey.size})`);
  const ev = await admin.query(
    `SELECT count(*)::int AS n FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
      WHERE c.dedupe_key LIKE 'hammer-%'`);
  assert.equal(ev.rows[0].n, byKey.size, 'one enqueued event per stored call');
});
