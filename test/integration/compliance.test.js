'use strict';
// Calling policies through the real worker (issue 12): the dispatcher's claim applies them.
// Every policy of this file is scoped to this file's provider, so no other call is affected,
// and rules are chosen not to depend on the wall clock (caps, unknown zones), or are built
// around now() (a window opening in 12 hours).  The simulator proves what was never sent.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test \
//     DIALER_CLUSTER_DIR=/tmp/comp-dev node --test test/integration/compliance.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const PROV = `it_comp_${process.pid % 100000}`;
const POLICIES = [`${PROV}_fr`, `${PROV}_all`, `${PROV}_later`];
let db;
let settings;
let tw;

const count = (id) => tw.control.counts()[String(id)] || 0;

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  await d.workerPid(db);
  tw = await d.startSim('twilio');
  await d.createProvider(db, d.twilioProvider(PROV, tw));
  // FR preset, for this provider only; a server-default-like policy (no windows) for it too
  await db.query(`SELECT dialer.use_preset('FR', $1)`, [POLICIES[0]]);
  await db.query(`UPDATE dialer.calling_policies SET providers = ARRAY[$2] WHERE name = $1`, [POLICIES[0], PROV]);
  await db.query(`INSERT INTO dialer.calling_policies (name, providers) VALUES ($1, ARRAY[$2])`, [POLICIES[1], PROV]);
});

after(async () => {
  if (db) {
    await db.query(`DELETE FROM dialer.calling_policies WHERE name = ANY($1)`, [POLICIES]).catch(() => {});
    await d.dropProviders(db, [PROV]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  if (tw) await tw.close();
});

test('the 5th French call within 30 days is skipped with its reason (at enqueue: the cap is reached at its run_at), and never sent', async () => {
  const number = '+33142685311';
  // four calls that reached the provider in the last 30 days (one of another campaign)
  for (let i = 1; i <= 4; i++) {
    await db.query(`
      WITH c AS (INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts,
                                                     attempts, campaign, finished_at)
                 VALUES ('completed', now() - $2 * interval '1 day', now() - $2 * interval '1 day', $1, $3, 1, 1, $4,
                         now() - $2 * interval '1 day') RETURNING id)
      INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id)
      SELECT id, 1, now() - $2 * interval '1 day', 'CA' || md5(id::text) FROM c`, [number, i * 5, PROV, i === 2 ? 'other' : null]);
  }
  const id = await d.enqueue(db, number, { provider: PROV, payload: { message: 'fifth' } });
  const [c] = await d.waitForStatus(db, [id], ['skipped', 'dialing', 'completed']);
  assert.equal(c.status, 'skipped');
  assert.equal(c.last_error, `${number} already had 4 calls within 30 days (placed or in progress, or scheduled before this one): policy ${POLICIES[0]} allows at most 4`);
  const ev = (await d.events(db, id)).find((e) => e.event === 'skipped');
  assert.equal(ev.detail.policy, POLICIES[0]);
  assert.equal(ev.detail.rule, 'cap');
  assert.equal(ev.detail.checked, 'enqueue');
  await d.sleep(300);
  assert.equal(count(id), 0, 'never sent');
  const h = (await db.query(`SELECT rule FROM dialer.contact_history($1) WHERE call_id = $2 AND event = 'skipped'`, [number, id])).rows;
  assert.deepEqual(h, [{ rule: 'cap' }], 'contact_history shows the decision');
});

test('a prefix added to libphonenumber\'s map reaches every session and the running worker at commit', async () => {
  const number = '+80099123456';
  const other = await d.connect();
  try {
    // this session has read the map (the lookup keeps it in memory): the prefix is unknown
    assert.equal((await db.query('SELECT dialer.number_timezones($1) AS z', [number])).rows[0].z, null);
    // and so has the worker: a call to it is skipped
    const before = await d.enqueue(db, number, { provider: PROV, payload: { message: 'unknown yet' } });
    const [b] = await d.waitForStatus(db, [before], ['skipped', 'dialing', 'completed']);
    assert.equal(b.status, 'skipped');
    assert.match(b.last_error, /time zone cannot be known/);
    await other.query("INSERT INTO dialer.number_timezones (prefix, zones) VALUES ('80099', '{Europe/Berlin}')");
    assert.deepEqual((await db.query('SELECT dialer.number_timezones($1) AS z', [number])).rows[0].z, ['Europe/Berlin'],
      'another session\'s committed change is seen by this one');
    // the worker dials the number now
    const id = await d.enqueue(db, number, { provider: PROV, payload: { message: 'known now' } });
    const [c] = await d.waitForStatus(db, [id], ['skipped', 'dialing', 'completed']);
    assert.notEqual(c.status, 'skipped', c.last_error);
    const ev = (await d.events(db, id)).find((e) => e.event === 'claimed');
    assert.deepEqual(ev.detail.timezones, ['Europe/Berlin']);
  } finally {
    await other.query("DELETE FROM dialer.number_timezones WHERE prefix = '80099'").catch(() => {});
    await other.end();
  }
  assert.equal((await db.query('SELECT dialer.number_timezones($1) AS z', [number])).rows[0].z, null,
    'and the removal too');
});

test('the map a lookup uses is the one its snapshot sees, also after reading it under an older snapshot', async () => {
  // The copy of the map is checked against the version its snapshot sees. Under relcache
  // invalidation alone this sequence left a stale copy: the invalidation was taken in (by a
  // lock on another table), the copy read again under the older snapshot, and nothing told
  // the next transaction that it was out of date.
  const number = '+80098123456';
  const z = async () => (await db.query('SELECT dialer.number_timezones($1) AS z', [number])).rows[0].z;
  const other = await d.connect();
  try {
    assert.equal(await z(), null);
    await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await db.query('SELECT count(*) FROM dialer.number_timezones');
    await other.query("INSERT INTO dialer.number_timezones (prefix, zones) VALUES ('80098', '{Asia/Tokyo}')");
    await db.query('SELECT count(*) FROM dialer.providers');
    assert.equal(await z(), null, 'a repeatable-read transaction that began before the change keeps the map it sees');
    await db.query('COMMIT');
    assert.deepEqual(await z(), ['Asia/Tokyo'], 'the next transaction uses the changed map');
    // a change in this session, undone in part by a savepoint and then whole
    await db.query('BEGIN');
    await db.query("UPDATE dialer.number_timezones SET zones = '{Europe/Paris}' WHERE prefix = '80098'");
    await db.query('SAVEPOINT s');
    await db.query("UPDATE dialer.number_timezones SET zones = '{Europe/Rome}' WHERE prefix = '80098'");
    assert.deepEqual(await z(), ['Europe/Rome']);
    await db.query('ROLLBACK TO SAVEPOINT s');
    assert.deepEqual(await z(), ['Europe/Paris'], 'a change rolled back to a savepoint is undone');
    assert.deepEqual((await other.query('SELECT dialer.number_timezones($1) AS z', [number])).rows[0].z, ['Asia/Tokyo'],
      'another session does not see an uncommitted change');
    await db.query('ROLLBACK');
    assert.deepEqual(await z(), ['Asia/Tokyo'], 'a rolled-back change is undone');
  } finally {
    await db.query('ROLLBACK').catch(() => {});
    await other.query("DELETE FROM dialer.number_timezones WHERE prefix = '80098'").catch(() => {});
    await other.end();
  }
  assert.equal(await z(), null, 'and the removal is seen');
});

test('a number of unknown zone is never dialled under a policy; with an explicit zone it is', async () => {
  const unknown = await d.enqueue(db, '+80012345678', { provider: PROV, payload: { message: 'u' } });
  const named = await d.enqueue(db, '+80012345679', { provider: PROV, payload: { message: 'n' }, timezone: 'Europe/Berlin' });
  const [u] = await d.waitForStatus(db, [unknown], ['skipped', 'dialing', 'completed']);
  assert.equal(u.status, 'skipped');
  assert.match(u.last_error, /time zone cannot be known from \+80012345678/);
  const ev = (await d.events(db, unknown)).find((e) => e.event === 'skipped');
  assert.equal(ev.detail.rule, 'unknown_timezone');
  const [n] = await d.waitForStatus(db, [named], ['dialing', 'completed', 'skipped']);
  assert.notEqual(n.status, 'skipped');
  await d.waitFor(async () => count(named) === 1, { message: 'the call with a zone reached the simulator' });
  assert.equal(count(unknown), 0, 'the unknown one never did');
});

test('a call outside its policy\'s window waits, parked by the worker until the window opens, and goes when another session opens it', async () => {
  // a window opening in 12 hours (UTC), for this provider
  await db.query(`INSERT INTO dialer.calling_policies (name, providers) VALUES ($1, ARRAY[$2])`, [POLICIES[2], PROV]);
  await db.query(`INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
                  SELECT $1, '{1,2,3,4,5,6,7}', t, t + interval '30 minutes'
                    FROM (SELECT date_trunc('hour', (now() AT TIME ZONE 'UTC') + interval '12 hours')::time AS t) s`, [POLICIES[2]]);
  try {
    const id = await d.enqueue(db, '+442071234567', { provider: PROV, payload: { message: 'later' }, timezone: 'UTC' });
    await d.waitFor(async () => (await d.events(db, id)).some((e) => e.event === 'window_wait'), { message: 'window_wait' });
    const r = (await db.query(`SELECT status, next_attempt_at = date_trunc('hour', now() + interval '12 hours') AS at_opening,
                                      next_attempt_at = dialer.next_opening(id) AS same_as_next_opening
                                 FROM dialer.scheduled_calls WHERE id = $1`, [id])).rows[0];
    assert.deepEqual(r, { status: 'scheduled', at_opening: true, same_as_next_opening: true });
    const ev = (await d.events(db, id)).find((e) => e.event === 'window_wait');
    assert.equal(ev.detail.policy, POLICIES[2]);
    assert.equal(ev.detail.rule, 'window');
    assert.deepEqual(ev.detail.timezones, ['UTC']);
    await d.sleep(300);
    assert.equal(count(id), 0, 'not sent');
    // the worker keeps the policies' windows in memory: a window opened all day by another
    // session reaches it at commit, and the call, due again (policies_changed), is dialled
    const other = await d.connect();
    try {
      await other.query(`UPDATE dialer.policy_windows SET starts = '00:00', ends = '24:00' WHERE policy = $1`, [POLICIES[2]]);
    } finally {
      await other.end();
    }
    const [c] = await d.waitForStatus(db, [id], ['dialing', 'completed', 'skipped']);
    assert.notEqual(c.status, 'skipped', c.last_error);
    await d.waitFor(async () => count(id) === 1, { message: 'the call reached the simulator once its window opened' });
  } finally {
    await db.query(`DELETE FROM dialer.calling_policies WHERE name = $1`, [POLICIES[2]]);
  }
});

/* ------------------------------------------------------------------ the cap, under concurrency */

// A provider of its own, on the same simulator, under a cap of 2 calls a day and nothing else.
async function cappedProvider(name, policy, maxCalls = 2) {
  await d.createProvider(db, d.twilioProvider(name, tw));
  await db.query(`INSERT INTO dialer.calling_policies (name, providers, max_calls, cap_period) VALUES ($1, ARRAY[$2], $3, '1 day')`,
    [policy, name, maxCalls]);
}
async function dropCapped(name, policy) {
  await db.query('DELETE FROM dialer.calling_policies WHERE name = $1', [policy]);
  await d.dropProviders(db, [name]);
}
const placedTo = (number) => tw.control.placings('to')[number] || 0;

test('a cap of 2 holds through the worker: 3 calls to one number in one statement, and 4 from two sessions racing, reach the provider twice', async () => {
  const name = `${PROV}_capq`;
  const policy = `${PROV}_cap2`;
  await cappedProvider(name, policy);
  const other = await d.connect();
  try {
    // one statement: enqueue cannot tell the three apart; the claim can
    const one = '+12125550501';
    const ids = (await db.query(`SELECT r.id FROM dialer.enqueue_calls($1::jsonb) r ORDER BY r.item`, [JSON.stringify(
      [1, 2, 3].map((i) => ({ to_number: one, provider: name, payload: { message: `one ${i}` } })))])).rows.map((r) => Number(r.id));
    // two sessions racing: each enqueues two calls to the same number and commits at once
    const two = '+12125550502';
    await db.query('BEGIN');
    await other.query('BEGIN');
    const racing = [
      await d.enqueue(db, two, { provider: name, payload: { message: 'a1' } }),
      await d.enqueue(other, two, { provider: name, payload: { message: 'b1' } }),
      await d.enqueue(db, two, { provider: name, payload: { message: 'a2' } }),
      await d.enqueue(other, two, { provider: name, payload: { message: 'b2' } }),
    ];
    await Promise.all([db.query('COMMIT'), other.query('COMMIT')]);
    const rows = await d.waitForStatus(db, [...ids, ...racing], ['dialing', 'skipped'], { timeoutMs: 15000 });
    const byNumber = (n) => rows.filter((r) => r.to_number === n).map((r) => r.status).sort();
    assert.deepEqual(byNumber(one), ['dialing', 'dialing', 'skipped'], 'one statement: two calls go, the third is skipped');
    assert.deepEqual(byNumber(two), ['dialing', 'dialing', 'skipped', 'skipped'], 'two sessions racing: two go, two are skipped');
    for (const r of rows.filter((x) => x.status === 'skipped')) {
      assert.match(r.last_error, /already had 2 calls within 1 day/, `call ${r.id}: ${r.last_error}`);
    }
    await d.sleep(300);
    assert.deepEqual([placedTo(one), placedTo(two)], [2, 2], 'the provider got two calls to each number, no more');
  } finally {
    await other.end();
    await dropCapped(name, policy);
  }
});

test('a cap counts the calls still in flight: a third call while two requests wait at the provider is skipped', async () => {
  const name = `${PROV}_capf`;
  const policy = `${PROV}_capf2`;
  await cappedProvider(name, policy);
  const number = '+12125550511';
  tw.control.addFault({ mode: 'delay', ms: 2500, to: number, count: 2 });
  try {
    const first = [
      await d.enqueue(db, number, { provider: name, payload: { message: 'f1' } }),
      await d.enqueue(db, number, { provider: name, payload: { message: 'f2' } }),
    ];
    // both claimed (the second a second after the first), their requests held by the provider
    await d.waitFor(async () => (await d.calls(db, first)).every((c) => c.status === 'dispatching'),
      { timeoutMs: 5000, message: 'both calls in flight' });
    const third = await d.enqueue(db, number, { provider: name, payload: { message: 'f3' } });
    const [t] = await d.calls(db, [third]);
    assert.equal(t.status, 'skipped', 'skipped at enqueue: two attempts in flight count');
    assert.match(t.last_error, /already had 2 calls within 1 day/);
    await d.waitForStatus(db, first, ['dialing'], { timeoutMs: 8000 });
    assert.equal(placedTo(number), 2);
  } finally {
    await dropCapped(name, policy);
  }
});

test('two claims at once never count the same attempts: the second waits for the first to commit, then refuses', async () => {
  // a database of its own, which no dispatcher serves: the test is the only claimer
  const DB = `it_caps_${process.pid % 100000}`;
  const root = await d.connect({ database: 'postgres' });
  await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await root.query(`CREATE DATABASE ${DB}`);
  const a = await d.connect({ database: DB });
  const b = await d.connect({ database: DB });
  try {
    await a.query('SET client_min_messages = error');
    await a.query('CREATE EXTENSION pg_dialer');
    await a.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url)
                   VALUES ('p', 'twilio', 'http://127.0.0.1:9', 'AC${'0'.repeat(32)}', 't', '+15550100000', 'https://a.example/t.xml')`);
    await a.query(`INSERT INTO dialer.calling_policies (name, max_calls, cap_period) VALUES ('one_a_day', 1, '1 day')`);
    // two calls to one number, both scheduled (the second is due before the first, so enqueue's
    // own cap check, which counts the calls scheduled before a call, lets it through)
    await a.query(`SELECT dialer.enqueue_call('+12125550521', provider => 'p'),
                          dialer.enqueue_call('+12125550521', provider => 'p', run_at => now() - interval '1 second')`);
    assert.deepEqual((await a.query(`SELECT status FROM dialer.scheduled_calls`)).rows.map((x) => x.status), ['scheduled', 'scheduled']);
    const claim = (c) => c.query(`SELECT id FROM dialer.claim_calls('p', 1, 'UTC', '00:00', '24:00', '')`);
    await a.query('BEGIN');
    const first = await claim(a);
    assert.equal(first.rows.length, 1, 'the first claim takes one call');
    let secondDone = false;
    const second = claim(b).then((r) => { secondDone = true; return r; });
    await d.sleep(500);
    assert.equal(secondDone, false, 'the second claim waits while the first is not committed');
    await a.query('COMMIT');
    const r = await second;
    assert.equal(r.rows.length, 0, 'then it takes nothing');
    const st = (await a.query(`SELECT status, last_error FROM dialer.scheduled_calls ORDER BY id`)).rows;
    assert.deepEqual(st.map((x) => x.status).sort(), ['dispatching', 'skipped']);
    assert.match(st.find((x) => x.status === 'skipped').last_error, /already had 1 calls within 1 day/);
  } finally {
    await a.end();
    await b.end();
    await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    await root.end();
  }
});

