'use strict';
// dialer.enqueue_calls() beside dialer.enqueue_call(), with the real worker and the Twilio
// simulator: the worker is woken when the enqueuing transaction commits (never before, never
// after a rollback), an all-or-nothing batch with one bad call sends nothing, and the dispatch
// rules (dialer.allowed_numbers, do-not-call) treat bulk calls exactly as single ones.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test node --test test/integration/bulk.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const P = 'it_bulk_';
const providers = new Set();
let db;
let settings;
let tw;

async function provider(p) {
  providers.add(p.name);
  return d.createProvider(db, p);
}
const count = (id) => tw.control.counts()[String(id)] || 0;

/* enqueue_calls with an array of calls; returns its rows (ids as Numbers) */
async function enqueueCalls(conn, calls, atomic = true) {
  const r = await conn.query('SELECT * FROM dialer.enqueue_calls($1::jsonb, $2)', [JSON.stringify(calls), atomic]);
  return r.rows.map((x) => ({ ...x, id: x.id === null ? null : Number(x.id) }));
}

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  await d.workerPid(db);
  tw = await d.startSim('twilio');
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    await db.query(`DELETE FROM dialer.do_not_call WHERE number = '+15550120999'`).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end();
  }
  if (tw) await tw.close();
});

test('wake-up: calls of enqueue_calls are sent only after COMMIT, within milliseconds; never after ROLLBACK', async () => {
  await provider(d.twilioProvider(`${P}wake`, tw));
  const tx = await d.connect();
  try {
    await tx.query('BEGIN');
    const rows = await enqueueCalls(tx, [1, 2, 3].map((i) => ({ to_number: `+1555012000${i}`, provider: `${P}wake`,
      payload: { message: `bulk ${i}` } })));
    assert.deepEqual(rows.map((r) => r.outcome), ['scheduled', 'scheduled', 'scheduled']);
    const ids = rows.map((r) => r.id);
    await d.sleep(800);
    assert.equal(ids.map(count).reduce((a, b) => a + b), 0, 'nothing is sent while the transaction is open');
    const beforeCommit = Date.now() * 1000;
    await tx.query('COMMIT');
    const committed = Date.now() * 1000;
    await d.waitFor(() => ids.every((id) => tw.control.arrivals()[String(id)]), { timeoutMs: 3000, intervalMs: 2, message: 'the requests' });
    for (const id of ids) {
      const arrival = tw.control.arrivals()[String(id)];
      assert.ok(arrival >= beforeCommit, 'the request left after the commit');
      assert.ok(arrival - committed < 250000, `commit to arrival ${(arrival - committed) / 1000} ms`);
      assert.equal(count(id), 1, 'sent once');
    }

    await tx.query('BEGIN');
    const rolled = await enqueueCalls(tx, [{ to_number: '+15550120011', provider: `${P}wake`, payload: { message: 'never' } }]);
    await tx.query('ROLLBACK');
    await d.sleep(1500);
    assert.equal(count(rolled[0].id), 0, 'a rolled-back call is never sent');
    assert.equal((await d.calls(db, [rolled[0].id])).length, 0);
  } finally {
    await tx.end();
  }
});

test('all or nothing: a batch with one refused call raises enqueue_call\'s error and sends nothing; atomic => false sends the good ones', async () => {
  await provider(d.twilioProvider(`${P}atomic`, tw));
  const calls = [
    { to_number: '+15550120021', provider: `${P}atomic`, payload: { message: 'a' } },
    { to_number: '+15550120022', provider: `${P}atomic`, run_at: 'infinity', payload: { message: 'b' } },
    { to_number: '+15550120023', provider: `${P}atomic`, payload: { message: 'c' } },
  ];
  const single = await d.enqueue(db, '+15550120022', { provider: `${P}atomic`, run_at: 'infinity', payload: { message: 'b' } })
    .then(() => null, (e) => e);
  assert.equal(single.code, '22023');
  await assert.rejects(enqueueCalls(db, calls), (e) => e.code === single.code
    && e.message === `call 2 of 3 refused: ${single.message}` && e.detail === single.detail);
  const stored = await db.query(`SELECT count(*)::int AS n FROM dialer.scheduled_calls WHERE provider = $1`, [`${P}atomic`]);
  assert.equal(stored.rows[0].n, 0, 'nothing stored');

  const rows = await enqueueCalls(db, calls, false);
  assert.deepEqual(rows.map((r) => r.outcome), ['scheduled', 'refused', 'scheduled']);
  assert.equal(rows[1].message, single.message);
  const sent = [rows[0].id, rows[2].id];
  await d.waitForStatus(db, sent, ['dialing']);
  assert.deepEqual(sent.map(count), [1, 1]);
});

test('dispatch rules: dialer.allowed_numbers and do-not-call treat a bulk call exactly as a single one', async () => {
  await provider(d.twilioProvider(`${P}rules`, tw));
  await db.query(`INSERT INTO dialer.do_not_call (number, reason) VALUES ('+15550120999', 'test') ON CONFLICT DO NOTHING`);
  await settings.set({ 'dialer.allowed_numbers': '+15550120031, +15550120999' });
  try {
    const single = await d.enqueue(db, '+15550120032', { provider: `${P}rules`, payload: { message: 's' } });
    const singleDnc = await d.enqueue(db, '+15550120999', { provider: `${P}rules`, payload: { message: 's' } });
    const rows = await enqueueCalls(db, ['+15550120031', '+15550120033', '+15550120999'].map((to) => ({
      to_number: to, provider: `${P}rules`, payload: { message: 's' } })));
    assert.deepEqual(rows.map((r) => r.outcome), ['scheduled', 'scheduled', 'skipped']);
    const [ok, no, dnc] = rows.map((r) => r.id);
    await d.waitForStatus(db, [ok, no, single], ['dialing', 'skipped']);
    const byId = new Map((await d.calls(db, [ok, no, single])).map((c) => [c.id, c]));
    const [a, b, s] = [byId.get(ok), byId.get(no), byId.get(single)];
    assert.equal(a.status, 'dialing', `allowed call: ${a.status} ${a.last_error}`);
    assert.equal(count(ok), 1);
    for (const c of [b, s]) {
      assert.equal(c.status, 'skipped');
      assert.equal(c.last_error, 'number is not in dialer.allowed_numbers');
      assert.equal(count(c.id), 0, 'never sent');
    }
    const skippedEvent = async (id) => {
      const e = (await d.events(db, id)).find((x) => x.event === 'skipped');
      return { ...e.detail, listed_at: undefined };
    };
    assert.deepEqual(await skippedEvent(no), await skippedEvent(single), 'the same skip event');
    assert.deepEqual(await skippedEvent(dnc), await skippedEvent(singleDnc), 'the same do-not-call event');
    assert.equal((await d.calls(db, [dnc]))[0].status, 'skipped');
    assert.equal(count(dnc) + count(singleDnc), 0);
  } finally {
    await settings.set({ 'dialer.allowed_numbers': '' });
  }
});
