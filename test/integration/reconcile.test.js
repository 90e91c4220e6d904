'use strict';
// Calls in progress at the provider, end to end with the real dispatcher and the provider
// simulators (test/sim/server.js, status callbacks OFF, so nothing reaches the database unless
// a test delivers it):
//   - a call counts against its provider's max_concurrency from dispatch until its final status
//     (dialer.apply_provider_status, what every callback and webhook ends in), not only while
//     its HTTP request runs; a final status wakes the worker; a call with no news for
//     dialer.reconcile_after stops counting (issue 4, item 6);
//   - reconciliation: a call dialing without a final status for dialer.reconcile_after, or
//     unknown with a provider call id, is looked up at its provider (Twilio GET Calls/{sid}.json,
//     voice_api GET /calls/{id}) and brought up to date; a call that cannot be looked up becomes
//     unknown; a failed lookup changes nothing but an event (issue 4, item 7).
//
// dialer.reconcile_after is set to its minimum, 10 s, for the whole file.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55482 PGUSER=postgres DIALER_DB=dialer_test \
//     DIALER_CLUSTER_DIR=/tmp/recon-dev DIALER_PGBIN=/usr/lib/postgresql/15/bin \
//     node --test test/integration/reconcile.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const P = `it_recon_${process.pid % 100000}_`;  // every provider of this file starts with it
const RECONCILE_S = 10;                          // dialer.reconcile_after, its minimum
const providers = new Set();
const sims = [];
let db;
let settings;

async function sim(kind, opts) {
  const s = await d.startSim(kind, opts);
  sims.push(s);
  return s;
}
async function provider(p) {
  providers.add(p.name);
  return d.createProvider(db, p);
}
const basic = (u, p) => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');
const TOKEN = '0123456789abcdef0123456789abcdef';   // d.twilioProvider's auth token (the simulator's default)
const callPath = (s, sid) => `/2010-04-01/Accounts/${s.control.config().accountSid}/Calls/${sid}.json`;
// requests the simulator received for a path (oldest first)
const gets = (s, path) => s.control.requests(1000).filter((r) => r.method === 'GET' && r.path === path);
// calls placed at a simulator among ids (the placing route, counted by our call id)
const placed = (s, ids) => {
  const c = s.control.counts();
  return ids.filter((id) => c[String(id)] > 0);
};
const eventsOf = async (id, name) => (await d.events(db, id)).filter((e) => !name || e.event === name);
const row = async (id) => (await d.calls(db, [id]))[0];

// The Twilio REST call the simulator documents for ending a call: POST Calls/{sid}.json Status=...
async function twilioSetStatus(s, sid, status) {
  const r = await fetch(s.url + callPath(s, sid), {
    method: 'POST',
    headers: { authorization: basic(s.control.config().accountSid, TOKEN),
      'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ Status: status }).toString(),
  });
  const body = await r.json();
  assert.equal(r.status, 200, `simulator update of ${sid}: ${JSON.stringify(body)}`);
  return body;
}

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '',
    'dialer.reconcile_after': `${RECONCILE_S}s` });
  await d.workerPid(db);
  const r = await db.query(`SELECT current_setting('dialer.reconcile_after') AS v`);
  assert.equal(r.rows[0].v, `${RECONCILE_S}s`, 'dialer.reconcile_after took effect');
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  for (const s of sims) await s.close();
});

/* ------------------------------------------------------------------ item 6: concurrency */

test('max_concurrency counts dialing calls until their final status, with no request in flight; a final status wakes the worker', async () => {
  const s = await sim('twilio');                 // callbacks off: only the test says how calls end
  const name = `${P}maxc`;
  await provider(d.twilioProvider(name, s, { max_concurrency: 2 }));
  const ids = [];
  for (let i = 0; i < 4; i++) ids.push(await d.enqueue(db, `+155502010${i}0`, { provider: name, payload: { message: 'c' } }));

  // exactly 2 go out and stay dialing; the others stay scheduled although no request is in flight
  await d.waitFor(async () => (await d.calls(db, ids)).filter((c) => c.status === 'dialing').length === 2,
    { timeoutMs: 5000, message: '2 calls dialing', describe: () => d.describeCalls(db, ids) });
  await d.sleep(1500);
  let rows = await d.calls(db, ids);
  assert.deepEqual(rows.map((c) => c.status).sort(), ['dialing', 'dialing', 'scheduled', 'scheduled'],
    'max_concurrency 2: two calls dialing, two waiting');
  assert.equal(placed(s, ids).length, 2, 'exactly 2 calls requested at the provider');
  assert.equal(s.control.stats().in_flight, 0, 'no HTTP request in flight at the simulator');
  assert.equal((await d.workerStatus(db)).in_flight, 0, 'no HTTP request in flight in the worker');

  // a final status for one dialing call, as a callback delivers it: exactly one more call goes
  // out, at once (the worker is woken at commit).  A worker that only re-checked a provider at
  // capacity every second would also get there within 2 s, so the delay is measured too, with the
  // status delivered half-way between two such re-checks (1.5 s, 2.5 s, ... after the last call
  // of this provider became dialing): a woken worker answers in milliseconds whatever the moment.
  async function finish(id) {
    const c = await row(id);
    const anchor = Math.max(...(await d.calls(db, ids)).filter((x) => x.status === 'dialing').map((x) => x.updated_at.getTime()));
    let at = anchor + 1500;
    while (at < Date.now() + 50) at += 1000;
    await d.sleep(at - Date.now());
    const before = placed(s, ids);
    const t0 = Date.now();
    const r = await db.query(`SELECT dialer.apply_provider_status($1, 'completed', $2, NULL,
                                     '{"duration_seconds": 12}', '{}', 'callback') AS r`, [id, c.provider_call_id]);
    assert.equal(r.rows[0].r.result, 'applied');
    assert.equal(r.rows[0].r.status, 'completed');
    await d.waitFor(() => placed(s, ids).length > before.length,
      { timeoutMs: 2000, message: `another call requested within 2 s of call ${id}'s final status` });
    const next = placed(s, ids).filter((x) => !before.includes(x));
    assert.equal(next.length, 1, `exactly one more call requested: ${next}`);
    const latency = s.control.arrivals()[String(next[0])] / 1000 - t0;
    return { next: next[0], latency };
  }
  const dialing = rows.filter((c) => c.status === 'dialing').map((c) => c.id);
  const w1 = await finish(dialing[0]);
  await d.sleep(700);
  assert.equal(placed(s, ids).length, 3, 'still exactly 3 requested after one final status');
  rows = await d.calls(db, ids);
  assert.equal(rows.filter((c) => c.status === 'dialing').length, 2, 'two dialing again');
  await d.waitForStatus(db, [w1.next], ['dialing'], { timeoutMs: 3000 });
  const w2 = await finish(w1.next);
  assert.equal(placed(s, ids).length, 4);
  for (const w of [w1, w2]) {
    assert.ok(w.latency < 250, `the next call left ${w.latency.toFixed(0)} ms after a final status committed `
      + `(${w1.latency.toFixed(0)} / ${w2.latency.toFixed(0)} ms): the worker was not woken by it, it found the free `
      + 'slot on its once-a-second re-check of a provider at max_concurrency');
  }
  assert.deepEqual(s.control.stats().duplicate_call_ids, [], 'no call placed twice');
});

test('a provider stalled at max_concurrency says so: worker_status() waiting (not idle), one WARNING, a LOG line when it takes calls again', async () => {
  const mark = d.logMark();
  const s = await sim('twilio');                 // callbacks off: as with webhooks not set up
  const name = `${P}stall`;
  await provider(d.twilioProvider(name, s, { max_concurrency: 2 }));
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await d.enqueue(db, `+155502017${i}0`, { provider: name, payload: { message: 'c' } }));
  await d.waitFor(async () => (await d.calls(db, ids)).filter((c) => c.status === 'dialing').length === 2,
    { timeoutMs: 5000, message: '2 calls dialing' });
  // nothing in flight: 0.2.0 said "idle" here
  const state = await d.waitFor(async () => {
    const w = await d.workerStatus(db);
    return /^waiting: /.test(w.state) ? w.state : null;
  }, { timeoutMs: 3000, message: 'worker_status() says why it waits' });
  // (the calls due are counted when the worker last looked: 3, or fewer while a claim was under way)
  assert.match(state, new RegExp(`^waiting: provider ${name} at max_concurrency 2 \\([1-3] calls due\\) until a status callback `
    + 'or reconciliation \\(\\d\\d:\\d\\d:\\d\\d UTC\\) frees a slot$'), state);
  // after a third of dialer.reconcile_after without a slot freed: one WARNING
  const warning = new RegExp(`WARNING:  pg_dialer: provider "${name}" has been at its max_concurrency \\(2\\) for \\d+ s while [1-3] call\\(s\\) are due`);
  await d.waitFor(() => warning.test(d.logSince(mark)), { timeoutMs: RECONCILE_S * 1000 / 3 + 3000, message: 'the WARNING' });
  const log = d.logSince(mark);
  assert.match(log, /DETAIL:  Its calls in progress hold every slot until a status callback ends one/);
  assert.match(log, /HINT:  Check that the provider's status callbacks reach the webhook endpoint/);
  await d.sleep(1200);
  assert.equal(d.logSince(mark).split('\n').filter((l) => warning.test(l)).length, 1, 'warned once, not at every look');
  // a final status (what a callback does) frees a slot: the next call goes, and the log says it
  const [first] = (await d.calls(db, ids)).filter((c) => c.status === 'dialing');
  await db.query(`SELECT dialer.apply_provider_status($1, 'completed', $2)`, [first.id, first.provider_call_id]);
  await d.waitFor(() => /pg_dialer: provider "[^"]+" takes calls again after \d+ s at its max_concurrency/.test(d.logSince(mark)),
    { timeoutMs: 3000, message: 'the LOG line when it takes calls again' });
  // (the LOG line is written when the slot is claimed, just before the request leaves)
  await d.waitFor(() => placed(s, ids).length === 3, { timeoutMs: 3000, message: 'the third call placed' });
  await d.sleep(300);
  assert.equal(placed(s, ids).length, 3, 'one slot freed, one more call placed');
});

test('a call whose lookups keep failing (404) becomes unknown after 3 in a row, says why, and is not looked up again', async () => {
  const mark = d.logMark();
  const s = await sim('twilio');
  const name = `${P}gone`;
  await provider(d.twilioProvider(name, s));
  const id = await d.enqueue(db, '+15550202170', { provider: name, payload: { message: 'g' } });
  const [c] = await d.waitForStatus(db, [id], ['dialing'], { timeoutMs: 5000 });
  const path = callPath(s, c.provider_call_id);
  s.control.addFault({ mode: 'status500', status: 404, method: 'GET', path });
  // each lookup made due at once (no news for an hour), instead of waiting reconcile_after
  for (let n = 1; n <= 3; n++) {
    await db.query(`UPDATE dialer.scheduled_calls SET updated_at = now() - interval '1 hour', reconciled_at = now() - interval '1 hour'
                     WHERE id = $1`, [id]);
    await db.query('SELECT dialer.wake_worker()');
    await d.waitFor(async () => (await eventsOf(id, 'reconcile_failed')).length === n,
      { timeoutMs: 5000, message: `failed lookup ${n}` });
  }
  const failed = await eventsOf(id, 'reconcile_failed');
  assert.deepEqual(failed.map((e) => [e.detail.http_status, e.detail.failures_in_a_row]), [[404, 1], [404, 2], [404, 3]]);
  const after3 = await d.waitForStatus(db, [id], ['unknown'], { timeoutMs: 3000 });
  assert.match(after3[0].last_error, new RegExp(`^no final status from the provider, and 3 lookups of ${c.provider_call_id} at the provider failed in a row \\(last: HTTP 404`));
  const [ev] = await eventsOf(id, 'unknown');
  assert.deepEqual([ev.from_status, ev.to_status, ev.detail.http_status, ev.detail.lookups_failed], ['dialing', 'unknown', 404, 3]);
  assert.match(d.logSince(mark), new RegExp(`LOG:  pg_dialer: call ${id} is unknown: no final status from the provider, and 3 lookups`));
  // never looked up again, however long it waits
  await db.query(`UPDATE dialer.scheduled_calls SET updated_at = now() - interval '1 hour', reconciled_at = now() - interval '1 hour'
                   WHERE id = $1`, [id]);
  await db.query('SELECT dialer.wake_worker()');
  await d.sleep(1500);
  assert.equal(gets(s, path).length, 3, 'three lookups, no fourth');
  assert.equal((await row(id)).status, 'unknown');
  // retry_call starts over: a new request, and its lookups are counted afresh
  assert.equal((await db.query('SELECT dialer.retry_call($1) AS r', [id])).rows[0].r, true);
  await d.waitForStatus(db, [id], ['dialing'], { timeoutMs: 5000 });
  assert.equal((await row(id)).reconcile_failures, 0);
});

test('max_concurrency: a call dialing with no news for reconcile_after no longer counts (a failed lookup is no news)', async () => {
  const s = await sim('twilio');
  const name = `${P}timeout`;
  await provider(d.twilioProvider(name, s, { max_concurrency: 1 }));
  const old = await d.enqueue(db, '+15550201110', { provider: name, payload: { message: 't' } });
  const [c0] = await d.waitForStatus(db, [old], ['dialing'], { timeoutMs: 5000 });
  // the provider has nothing to say about it either: its lookup answers 404 (a call the provider
  // confirms as still in progress would rightly count again; one nobody has news of must not)
  s.control.addFault({ mode: 'status500', status: 404, method: 'GET', path: callPath(s, c0.provider_call_id) });
  const next = await d.enqueue(db, '+15550201120', { provider: name, payload: { message: 't' } });
  await d.sleep(1200);
  assert.equal((await row(next)).status, 'scheduled', 'a second call waits while the first is dialing (max_concurrency 1)');
  assert.equal(placed(s, [next]).length, 0);

  // the rule in SQL: back-dating the dialing call's last news past reconcile_after frees its slot
  // (in a transaction rolled back, so the worker never sees it)
  const cap = async () => (await db.query('SELECT dialer.provider_capacity($1) AS n', [name])).rows[0].n;
  assert.equal(await cap(), 0, 'provider_capacity: 0 while the dialing call has recent news');
  await db.query('BEGIN');
  try {
    await db.query(`UPDATE dialer.scheduled_calls SET updated_at = now() - current_setting('dialer.reconcile_after')::interval
                                                                  - interval '1 second' WHERE id = $1`, [old]);
    assert.equal(await cap(), 1, 'provider_capacity: a call dialing with no news for reconcile_after no longer counts');
  } finally {
    await db.query('ROLLBACK');
  }

  // end to end: the second call goes out once the first has had no news for reconcile_after
  const lastNews = c0.updated_at.getTime();
  const diag = async () => {
    const c = await row(old);
    const ev = (await eventsOf(old)).map((e) => `${e.event}@${((e.at.getTime() - lastNews) / 1000).toFixed(2)}s`);
    const g = gets(s, callPath(s, c0.provider_call_id)).map((r) => `GET ${r.status}@${((r.t_ms - lastNews) / 1000).toFixed(2)}s`);
    return `call ${old}: ${c.status}, updated_at ${((c.updated_at.getTime() - lastNews) / 1000).toFixed(2)} s after its last news; `
      + `events ${ev.join(' ')}; lookups ${g.join(' ')}; `
      + `provider_capacity now ${await cap()}; second call ${(await row(next)).status}`;
  };
  await d.waitFor(() => placed(s, [next]).length === 1,
    { timeoutMs: Math.max(0, lastNews + RECONCILE_S * 1000 - Date.now()) + 3500, intervalMs: 100,
      message: `the second call requested once call ${old} had no news for ${RECONCILE_S} s`, describe: diag });
  const at = s.control.arrivals()[String(next)] / 1000;
  assert.ok(at >= lastNews + RECONCILE_S * 1000 - 50,
    `the second call left ${((at - lastNews) / 1000).toFixed(2)} s after the first call's last news, before reconcile_after`);
  assert.ok(at <= lastNews + RECONCILE_S * 1000 + 2500,
    `the second call left ${((at - lastNews) / 1000).toFixed(2)} s after the first call's last news (expected ~${RECONCILE_S} s)`);
  assert.equal((await row(old)).status, 'dialing', 'the first call is still dialing (it was not resolved, only no longer counted)');
});

/* ------------------------------------------------------------------ item 7: reconciliation */

test('reconciliation (twilio): lost final callback, call still in progress, unknown call with a sid, dialing without a sid, failed lookups (404, provider down)', async () => {
  const mark = d.logMark();
  const s = await sim('twilio');
  const down = await sim('twilio');
  const acc = s.control.config().accountSid;
  const name = `${P}tw`;
  const downName = `${P}down`;
  await provider(d.twilioProvider(name, s));
  await provider(d.twilioProvider(downName, down));
  const NO_SID = '+15550202040';
  // Twilio answered 201 but the body could not be read: accepted, dialing, no sid to look up
  s.control.addFault({ mode: 'invalid_json', to: NO_SID, body: '<html>gateway says hi</html>' });

  const ids = {
    lost: await d.enqueue(db, '+15550202010', { provider: name, payload: { message: 'r' } }),
    live: await d.enqueue(db, '+15550202020', { provider: name, payload: { message: 'r' } }),
    unknown: await d.enqueue(db, '+15550202030', { provider: name, payload: { message: 'r' } }),
    nosid: await d.enqueue(db, NO_SID, { provider: name, payload: { message: 'r' } }),
    notfound: await d.enqueue(db, '+15550202050', { provider: name, payload: { message: 'r' } }),
    down: await d.enqueue(db, '+15550202060', { provider: downName, payload: { message: 'r' } }),
  };
  const all = Object.values(ids);
  await d.waitForStatus(db, all, ['dialing'], { timeoutMs: 5000 });
  const first = Object.fromEntries((await d.calls(db, all)).map((c) => [c.id, c]));
  const sid = (k) => first[ids[k]].provider_call_id;
  for (const k of ['lost', 'live', 'unknown', 'notfound', 'down']) assert.match(sid(k) || '', /^CA[0-9a-f]{32}$/, `${k} has its sid`);
  assert.equal(sid('nosid'), null, 'the call whose answer was unreadable is dialing without a provider call id');

  // what happens at the provider, with no callback to tell us
  await twilioSetStatus(s, sid('lost'), 'completed');                       // the final callback is lost
  const liveAtSim = s.control.calls(1000).find((c) => c.sid === sid('live'));
  liveAtSim.status = 'in-progress';                                         // answered, still talking
  liveAtSim.start_ms = Date.now();
  await twilioSetStatus(s, sid('unknown'), 'canceled');
  // an unknown call whose sid was stored (set up as the owner), last news long ago
  await db.query(`UPDATE dialer.scheduled_calls SET status = 'unknown', updated_at = now() - interval '1 hour',
                         last_error = 'set up by the test: outcome unknown' WHERE id = $1`, [ids.unknown]);
  s.control.addFault({ mode: 'status500', status: 404, method: 'GET', path: callPath(s, sid('notfound')) });
  await down.close();                                                       // the provider is unreachable
  const attemptsBefore = {
    notfound: await d.attempts(db, ids.notfound), down: await d.attempts(db, ids.down),
    live: await d.attempts(db, ids.live),
  };

  // nothing is looked up before reconcile_after
  await d.sleep(RECONCILE_S * 1000 - 2500);
  for (const k of ['lost', 'live', 'notfound']) assert.equal(gets(s, callPath(s, sid(k))).length, 0, `${k}: no lookup before reconcile_after`);
  assert.equal((await row(ids.lost)).status, 'dialing', 'the call whose callback was lost is still dialing before reconcile_after');

  // within ~15 s of dispatch, everything is settled
  const dialedAt = Math.max(...Object.values(first).map((c) => c.updated_at.getTime()));
  await d.waitFor(async () => {
    const r = Object.fromEntries((await d.calls(db, all)).map((c) => [c.id, c]));
    return r[ids.lost].status === 'completed' && r[ids.unknown].status === 'canceled' && r[ids.nosid].status === 'unknown'
      && (await eventsOf(ids.live, 'reconcile')).length > 0
      && (await eventsOf(ids.notfound, 'reconcile_failed')).length > 0
      && (await eventsOf(ids.down, 'reconcile_failed')).length > 0;
  }, { timeoutMs: Math.max(0, dialedAt + 15000 - Date.now()), intervalMs: 100,
    message: 'every case reconciled within 15 s of dispatch',
    describe: async () => `${await d.describeCalls(db, all, 6)}; events ${JSON.stringify(await Promise.all(all.map(async (id) => [id, (await eventsOf(id)).map((e) => e.event)])))}` });
  // the server log says that calls were settled by reconciliation (lost, unknown: at least 2)
  {
    const settled = [...d.logSince(mark).matchAll(/pg_dialer: reconciliation settled (\d+) of (\d+) call\(s\) looked up at their provider/g)];
    assert.ok(settled.length > 0, 'a LOG line for the settled calls');
    assert.ok(settled.reduce((n, m) => n + Number(m[1]), 0) >= 2, `settled: ${settled.map((m) => m[0])}`);
  }

  // the lost callback: looked up with Basic auth, completed, with a reconcile event
  {
    const g = gets(s, callPath(s, sid('lost')));
    assert.equal(g.length, 1, 'one GET of the call resource');
    assert.equal(g[0].headers.authorization, basic(acc, TOKEN), 'with HTTP Basic auth');
    assert.equal(g[0].status, 200);
    assert.ok(g[0].t_ms >= first[ids.lost].updated_at.getTime() + RECONCILE_S * 1000 - 50,
      `looked up ${(g[0].t_ms - first[ids.lost].updated_at.getTime()) / 1000} s after its last news, not before reconcile_after`);
    const c = await row(ids.lost);
    assert.equal(c.status, 'completed');
    assert.ok(c.finished_at, 'finished_at set');
    assert.equal(c.provider_call_id, sid('lost'));
    const ev = await eventsOf(ids.lost, 'reconcile');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].from_status, 'dialing');
    assert.equal(ev[0].to_status, 'completed');
    assert.equal(ev[0].detail.provider_status, 'completed');
    assert.equal(ev[0].detail.provider_call_id, sid('lost'));
    const [a] = await d.attempts(db, ids.lost);
    assert.equal(a.provider_status, 'completed', 'the attempt has the provider\'s final status');
  }

  // the unknown call with a stored sid: resolved to the provider's status
  {
    const g = gets(s, callPath(s, sid('unknown')));
    assert.equal(g.length, 1, 'the unknown call was looked up once');
    const c = await row(ids.unknown);
    assert.equal(c.status, 'canceled');
    const ev = await eventsOf(ids.unknown, 'reconcile');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].from_status, 'unknown');
    assert.equal(ev[0].to_status, 'canceled');
  }

  // dialing without a provider call id: cannot be looked up, becomes unknown, and says why
  {
    const c = await row(ids.nosid);
    assert.equal(c.status, 'unknown');
    assert.match(c.last_error || '', /no provider call id/);
    const ev = await eventsOf(ids.nosid, 'unknown');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].from_status, 'dialing');
    assert.match(ev[0].detail.reason, /no final status within dialer\.reconcile_after and no provider call id/);
    assert.equal((await eventsOf(ids.nosid, 'reconcile_failed')).length, 0);
  }

  // failed lookups: an event, nothing else changes
  {
    const g = gets(s, callPath(s, sid('notfound')));
    assert.equal(g.length, 1);
    assert.equal(g[0].status, 404);
    for (const k of ['notfound', 'down']) {
      const c = await row(ids[k]);
      const was = first[ids[k]];
      assert.equal(c.status, 'dialing', `${k}: still dialing`);
      assert.equal(c.provider_call_id, was.provider_call_id, `${k}: sid kept`);
      assert.equal(c.provider_status, was.provider_status, `${k}: provider status kept`);
      assert.equal(c.last_error, was.last_error, `${k}: last_error kept`);
      assert.equal(c.finished_at, null);
      assert.deepEqual(await d.attempts(db, ids[k]), attemptsBefore[k], `${k}: attempt row unchanged`);
      const names = (await eventsOf(ids[k])).map((e) => e.event);
      assert.deepEqual(names.filter((n) => !['enqueued', 'claimed', 'accepted'].includes(n)), ['reconcile_failed'],
        `${k}: only a reconcile_failed event: ${names}`);
    }
    const [nf] = await eventsOf(ids.notfound, 'reconcile_failed');
    assert.equal(nf.detail.http_status, 404);
    assert.equal(nf.detail.provider_call_id, sid('notfound'));
    const [dn] = await eventsOf(ids.down, 'reconcile_failed');
    assert.equal(dn.detail.http_status, undefined, 'no HTTP answer from a provider that is down');
    assert.ok(dn.detail.error, `the error is recorded: ${JSON.stringify(dn.detail)}`);
    assert.doesNotMatch(JSON.stringify(dn.detail), new RegExp(TOKEN), 'no secret in the event');
  }

  // the call still in progress: looked up, stays dialing with the provider's status recorded,
  // and is looked up again only after another reconcile_after
  const livePath = callPath(s, sid('live'));
  const g1 = gets(s, livePath);
  assert.equal(g1.length, 1, 'the call in progress was looked up once');
  assert.equal(g1[0].headers.authorization, basic(acc, TOKEN));
  {
    const c = await row(ids.live);
    assert.equal(c.status, 'dialing');
    assert.equal(c.provider_status, 'in-progress');
    const ev = await eventsOf(ids.live, 'reconcile');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].from_status, 'dialing');
    assert.equal(ev[0].to_status, 'dialing');
    assert.equal(ev[0].detail.provider_status, 'in-progress');
    const [a] = await d.attempts(db, ids.live);
    assert.equal(a.provider_status, 'in-progress');
    assert.equal(a.provider_call_id, attemptsBefore.live[0].provider_call_id);
  }
  const firstLookup = g1[0].t_ms;
  await d.sleep(Math.max(0, firstLookup + (RECONCILE_S - 1.5) * 1000 - Date.now()));
  assert.equal(gets(s, livePath).length, 1, 'not looked up again before another reconcile_after');
  await d.waitFor(() => gets(s, livePath).length >= 2,
    { timeoutMs: 4000, intervalMs: 100, message: 'a second lookup of the call in progress after another reconcile_after' });
  const g2 = gets(s, livePath);
  assert.equal(g2.length, 2);
  const gap = (g2[1].t_ms - g2[0].t_ms) / 1000;
  assert.ok(gap >= RECONCILE_S - 0.1 && gap <= RECONCILE_S + 2.5, `second lookup ${gap} s after the first`);
  assert.equal((await row(ids.live)).status, 'dialing');
  // the settled calls are not looked up again
  for (const k of ['lost', 'unknown']) assert.equal(gets(s, callPath(s, sid(k))).length, 1, `${k}: looked up once only`);
});

/* ------------------------------------------------------------------ voice_api */

test('reconciliation (voice_api): GET /calls/{id} with the bearer key brings a dialing call to its final status', async () => {
  const va = await sim('voice_api');
  const name = `${P}va`;
  await provider(d.jsonProvider(name, 'voice_api', va));
  const id = await d.enqueue(db, '+15550203010', { provider: name, payload: { message: 'v' } });
  const [c0] = await d.waitForStatus(db, [id], ['dialing'], { timeoutMs: 5000 });
  assert.match(c0.provider_call_id || '', /^vc_/);
  // the call ends at the provider; its webhook never comes
  const atSim = va.control.calls(1000).find((c) => c.call_id === c0.provider_call_id);
  assert.ok(atSim, 'the simulator stored the call');
  atSim.status = 'no_answer';
  const [c] = await d.waitForStatus(db, [id], ['no_answer', 'scheduled'],
    { timeoutMs: c0.updated_at.getTime() + 15000 - Date.now(), intervalMs: 100 });
  assert.equal(c.status, 'no_answer', 'no retry policy: the provider\'s outcome');
  const g = va.control.requests(1000).filter((r) => r.method === 'GET' && r.path === `/calls/${c0.provider_call_id}`);
  assert.equal(g.length, 1);
  assert.equal(g[0].headers.authorization, 'Bearer vk_test_key');
  assert.equal(g[0].status, 200);
  assert.ok(g[0].t_ms >= c0.updated_at.getTime() + RECONCILE_S * 1000 - 50, 'not looked up before reconcile_after');
  const ev = await eventsOf(id, 'reconcile');
  assert.equal(ev.length, 1);
  assert.equal(ev[0].from_status, 'dialing');
  assert.equal(ev[0].to_status, 'no_answer');
  assert.equal(ev[0].detail.provider_status, 'no-answer');
  const [a] = await d.attempts(db, id);
  assert.equal(a.provider_status, 'no-answer');
});
