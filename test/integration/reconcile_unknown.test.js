'use strict';
// Reconciliation of unknown calls that have no provider call id (issue 8, item 3): the worker
// died, failed over, or lost the provider's answer before a call id was stored.  End to end with
// the real dispatcher and the provider simulators (test/sim/server.js, status callbacks off):
//   - Twilio: a create whose answer is lost after the simulator created the call (reset or
//     timeout) ends unknown without a sid; reconcile_after later the worker searches Twilio's
//     Calls list by To, From and StartTime> (the attempt's claim) and settles the call from the
//     one matching record (sid on the call and the attempt, status, event 'reconciled' naming
//     the search);
//   - a call the provider never created stays unknown with a 'reconcile_search' event saying what
//     was searched and that nothing was found; at most 3 searches per call;
//   - two matching records are never guessed between;
//   - searches take the provider's calls-per-second tokens (paced, not a burst);
//   - backend: GET /call?idempotency_key= when the backend offers it; else unknown, with an event.
//
// dialer.reconcile_after is set to its minimum, 10 s, and dialer.request_timeout to 1.5 s.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55482 PGUSER=postgres DIALER_DB=dialer_test \
//     node --test test/integration/reconcile_unknown.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const P = `it_recu_${process.pid % 100000}_`;   // every provider of this file starts with it
const RECONCILE_S = 10;
const FROM = '+15550100000';                       // d.twilioProvider's from_number
const TOKEN = '0123456789abcdef0123456789abcdef';
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
const listPath = (s) => `/2010-04-01/Accounts/${s.control.config().accountSid}/Calls.json`;
// GETs of the Calls list the simulator received (oldest first), with their query parsed
const listGets = (s) => s.control.requests(1000)
  .filter((r) => r.method === 'GET' && r.path.split('?')[0] === listPath(s))
  .map((r) => ({ ...r, query: new URL(r.path, 'http://x').searchParams }));
const eventsOf = async (id, name) => (await d.events(db, id)).filter((e) => !name || e.event === name);
const row = async (id) => (await d.calls(db, [id]))[0];
const utcSecond = (t) => new Date(Math.floor(t.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '',
    'dialer.reconcile_after': `${RECONCILE_S}s`, 'dialer.request_timeout': '1500' });
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

// One Twilio simulator and provider per case, so each create is the first request on its own
// connection (what libcurl does with a reset on a reused connection is issue 8, item 1).
async function twilioCase(name, fault) {
  const s = await sim('twilio');
  await provider(d.twilioProvider(`${P}${name}`, s));
  if (fault) s.control.addFault({ count: 1, ...fault });
  return s;
}

test('Twilio: calls whose answer was lost are found in the Calls list and settled; a call never created stays unknown; two matches are not guessed; at most 3 searches', async () => {
  const cases = {
    reset: { to: '+15550301010', fault: { mode: 'reset', create: true } },     // created, answer reset
    timeout: { to: '+15550301020', fault: { mode: 'hang', create: true } },    // created, no answer in time
    never: { to: '+15550301030', fault: { mode: 'reset' } },                    // read, never created
    twice: { to: '+15550301040', fault: { mode: 'reset', create: true } },     // created, plus another match
  };
  for (const [k, c] of Object.entries(cases)) {
    c.sim = await twilioCase(k, c.fault);
    c.id = await d.enqueue(db, c.to, { provider: `${P}${k}`, payload: { message: 'lost' } });
  }
  const ids = Object.values(cases).map((c) => c.id);
  await d.waitForStatus(db, ids, ['unknown'], { timeoutMs: 8000 });
  for (const [k, c] of Object.entries(cases)) {
    c.first = await row(c.id);
    assert.equal(c.first.provider_call_id, null, `${k}: unknown without a sid`);
    [c.attempt] = await d.attempts(db, c.id);
    assert.equal(c.attempt.http_status, null, `${k}: no answer stored`);
    assert.equal(c.sim.control.counts()[String(c.id)], 1, `${k}: exactly one create at the provider`);
  }
  // what the provider holds: the created calls (one ended meanwhile), nothing for 'never'
  const atSim = (c) => c.sim.control.calls(100).filter((x) => x.to === c.to);
  assert.equal(atSim(cases.reset).length, 1);
  assert.equal(atSim(cases.timeout).length, 1);
  assert.equal(atSim(cases.never).length, 0);
  const resetRec = atSim(cases.reset)[0];
  resetRec.status = 'completed';
  resetRec.start_ms = resetRec.created_ms;
  resetRec.end_ms = Date.now();
  resetRec.duration = 4;
  // someone else called the same number from the same caller id after the claim (the console)
  {
    const s = cases.twice.sim;
    const r = await fetch(s.url + listPath(s), { method: 'POST',
      headers: { authorization: basic(s.control.config().accountSid, TOKEN), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ To: cases.twice.to, From: FROM, Url: 'https://example.com/t' }).toString() });
    assert.equal(r.status, 201);
    assert.equal(atSim(cases.twice).length, 2);
  }

  // nothing is searched before reconcile_after after the call became unknown
  const unknownAt = Math.max(...Object.values(cases).map((c) => c.first.updated_at.getTime()));
  await d.sleep(Math.max(0, Math.min(...Object.values(cases).map((c) => c.first.updated_at.getTime()))
    + (RECONCILE_S - 2) * 1000 - Date.now()));
  for (const [k, c] of Object.entries(cases)) assert.equal(listGets(c.sim).length, 0, `${k}: no search before reconcile_after`);

  const describe = async () => `${await d.describeCalls(db, ids, 4)}; events ${JSON.stringify(
    await Promise.all(ids.map(async (id) => [id, (await eventsOf(id)).map((e) => `${e.event}:${e.detail.result || ''}`)])))}`;
  await d.waitFor(async () => {
    const done = await Promise.all(Object.values(cases).map(async (c) =>
      (await eventsOf(c.id)).some((e) => e.event === 'reconciled' || e.event === 'reconcile_search')));
    return done.every(Boolean);
  }, { timeoutMs: Math.max(0, unknownAt + (RECONCILE_S + 5) * 1000 - Date.now()), intervalMs: 100,
    message: 'every unknown call searched for within reconcile_after + 5 s', describe });

  // each was searched exactly once, by what was sent, with HTTP Basic auth
  for (const [k, c] of Object.entries(cases)) {
    const g = listGets(c.sim);
    assert.equal(g.length, 1, `${k}: one search`);
    assert.equal(g[0].headers.authorization, basic(c.sim.control.config().accountSid, TOKEN));
    assert.equal(g[0].query.get('To'), c.to);
    assert.equal(g[0].query.get('From'), FROM);
    assert.equal(g[0].query.get('StartTime>'), utcSecond(c.attempt.requested_at), `${k}: StartTime> is the claim`);
    assert.ok(g[0].t_ms >= c.first.updated_at.getTime() + RECONCILE_S * 1000 - 50,
      `${k}: searched ${(g[0].t_ms - c.first.updated_at.getTime()) / 1000} s after it became unknown`);
    assert.equal(g[0].status, 200);
  }

  // reset after the create: settled from the record (completed, sid, duration), event names the search
  {
    const c = cases.reset;
    const r = await row(c.id);
    assert.equal(r.status, 'completed');
    assert.equal(r.provider_call_id, resetRec.sid);
    assert.ok(r.finished_at);
    const [a] = await d.attempts(db, c.id);
    assert.equal(a.provider_call_id, resetRec.sid, 'the sid is on the attempt');
    assert.equal(a.provider_status, 'completed');
    assert.equal(a.duration_seconds, 4);
    const ev = await eventsOf(c.id, 'reconciled');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].from_status, 'unknown');
    assert.equal(ev[0].to_status, 'completed');
    assert.equal(ev[0].detail.lookup, 'search');
    assert.equal(ev[0].detail.search_result, 'found');
    assert.equal(ev[0].detail.provider_call_id, resetRec.sid);
    assert.deepEqual({ to: ev[0].detail.searched.to, from: ev[0].detail.searched.from, after: ev[0].detail.searched.after },
      { to: c.to, from: FROM, after: utcSecond(c.attempt.requested_at) });
    assert.equal(c.sim.control.counts()[String(c.id)], 1, 'never re-sent');
  }
  // timeout after the create: the record is still queued: the call is dialing with its sid
  {
    const c = cases.timeout;
    const rec = atSim(c)[0];
    const r = await row(c.id);
    assert.equal(r.status, 'dialing');
    assert.equal(r.provider_call_id, rec.sid);
    assert.equal(r.provider_status, 'queued');
    const ev = await eventsOf(c.id, 'reconciled');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].to_status, 'dialing');
    assert.equal(c.sim.control.counts()[String(c.id)], 1, 'never re-sent');
  }
  // never created: unknown, with what was searched and that nothing was found
  {
    const c = cases.never;
    const r = await row(c.id);
    assert.equal(r.status, 'unknown');
    assert.equal(r.provider_call_id, null);
    assert.equal(r.reconcile_searches, 1);
    const ev = await eventsOf(c.id, 'reconcile_search');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].detail.result, 'not_found');
    assert.equal(ev[0].detail.searched.to, c.to);
    assert.equal(ev[0].detail.searched.from, FROM);
    assert.equal(ev[0].detail.searched.after, utcSecond(c.attempt.requested_at));
    assert.equal(ev[0].detail.records, 0);
    assert.equal(ev[0].detail.searches_left, 2);
    assert.match(ev[0].detail.message, /no record/);
    assert.equal((await eventsOf(c.id, 'reconciled')).length, 0);
  }
  // two records match: none is taken
  {
    const c = cases.twice;
    const r = await row(c.id);
    assert.equal(r.status, 'unknown');
    assert.equal(r.provider_call_id, null);
    const [a] = await d.attempts(db, c.id);
    assert.equal(a.provider_call_id, null);
    const ev = await eventsOf(c.id, 'reconcile_search');
    assert.equal(ev.length, 1);
    assert.equal(ev[0].detail.result, 'ambiguous');
    assert.deepEqual(ev[0].detail.candidates.map((x) => x.id).sort(), atSim(c).map((x) => x.sid).sort());
    assert.equal((await eventsOf(c.id, 'reconciled')).length, 0);
  }

  // bounded: the call never created is searched twice more (due 2x and 4x reconcile_after after
  // the previous search; brought forward here by back-dating its last news and search), then
  // never again
  const never = cases.never;
  for (let n = 2; n <= 4; n++) {
    await db.query(`UPDATE dialer.scheduled_calls SET reconciled_at = reconciled_at - interval '1 day',
                           updated_at = updated_at - interval '1 day' WHERE id = $1`, [never.id]);
    await db.query('SELECT dialer.wake_worker()');
    if (n <= 3) {
      await d.waitFor(() => listGets(never.sim).length === n, { timeoutMs: 5000, intervalMs: 100,
        message: `search ${n} of the call never created`, describe });
      await d.waitFor(async () => (await eventsOf(never.id, 'reconcile_search')).length === n,
        { timeoutMs: 3000, message: `its event ${n}` });
    } else {
      await d.sleep(2500);
      assert.equal(listGets(never.sim).length, 3, 'no fourth search');
    }
  }
  const evs = await eventsOf(never.id, 'reconcile_search');
  assert.deepEqual(evs.map((e) => e.detail.searches_left), [2, 1, 0]);
  assert.match(evs[2].detail.message, /no search is left/);
  const r = await row(never.id);
  assert.equal(r.status, 'unknown');
  assert.equal(r.reconcile_searches, 3);
});

test('Twilio: searches take the provider\'s calls-per-second tokens', async () => {
  const s = await sim('twilio');
  const name = `${P}paced`;
  await provider(d.twilioProvider(name, s));
  const N = 6;
  const ids = [];
  for (let i = 0; i < N; i++) ids.push(await d.enqueue(db, `+1555030200${i}`, { provider: name, payload: { message: 'p' } }));
  const dialed = await d.waitForStatus(db, ids, ['dialing'], { timeoutMs: 5000 });
  const sids = Object.fromEntries(dialed.map((c) => [c.id, c.provider_call_id]));
  // their sids were never stored (as if the answers had been lost), long ago; budget 2 per second
  await db.query('BEGIN');
  await db.query(`UPDATE dialer.scheduled_calls SET status = 'unknown', provider_call_id = NULL, provider_status = NULL,
                         updated_at = now() - interval '1 hour' WHERE id = ANY($1)`, [ids]);
  await db.query(`UPDATE dialer.call_attempts SET provider_call_id = NULL, provider_status = NULL, http_status = NULL
                   WHERE call_id = ANY($1)`, [ids]);
  await db.query(`UPDATE dialer.providers SET calls_per_second = 2 WHERE name = $1`, [name]);
  await db.query('COMMIT');
  await d.sleep(1200);                 // the bucket refills to its burst (2) while nothing is due
  await db.query('SELECT dialer.wake_worker()');
  await d.waitFor(async () => (await d.calls(db, ids)).every((c) => c.status === 'dialing'),
    { timeoutMs: 10000, intervalMs: 100, message: 'every call found and settled',
      describe: () => d.describeCalls(db, ids, N) });
  const t = listGets(s).map((g) => g.t_ms).sort((a, b) => a - b);
  assert.equal(t.length, N, 'one search per call');
  // a bucket of 2 tokens, refilled at 2 per second: search i leaves no sooner than (i-1) * 500 ms
  // after the first (all 6 at once without pacing)
  const gaps = t.map((x) => x - t[0]);
  for (let i = 2; i < N; i++) {
    assert.ok(gaps[i] >= (i - 1) * 500 - 60, `search ${i} left ${gaps[i]} ms after the first (gaps ${gaps.join(', ')} ms), before its token`);
  }
  assert.ok(gaps[N - 1] <= 6000, `the searches took ${gaps[N - 1]} ms (timing on a loaded machine is noisy)`);
  for (const c of await d.calls(db, ids)) assert.equal(c.provider_call_id, sids[c.id], `call ${c.id} got its own record`);
});

test('backend: an unknown call is found by its Idempotency-Key when the backend offers GET /call?idempotency_key=, else stays unknown with an event', async () => {
  const withKey = await sim('backend');
  const without = await sim('backend', { searchByKey: false });
  const a = `${P}bk_on`;
  const b = `${P}bk_off`;
  await provider(d.jsonProvider(a, 'backend', withKey));
  await provider(d.jsonProvider(b, 'backend', without));
  const ida = await d.enqueue(db, '+15550303010', { provider: a, payload: { mode: 'DIRECT', script: 'hello' } });
  const idb = await d.enqueue(db, '+15550303020', { provider: b, payload: { mode: 'DIRECT', script: 'hello' } });
  const done = await d.waitForStatus(db, [ida, idb], ['dialing'], { timeoutMs: 5000 });
  const backendId = Object.fromEntries(done.map((c) => [c.id, c.provider_call_id]));
  // the worker died before it stored the answers: unknown without a call id (set up as the owner)
  await db.query(`UPDATE dialer.scheduled_calls SET status = 'unknown', provider_call_id = NULL, provider_status = NULL,
                         updated_at = now() - interval '1 hour' WHERE id = ANY($1)`, [[ida, idb]]);
  await db.query(`UPDATE dialer.call_attempts SET provider_call_id = NULL, provider_status = NULL, http_status = NULL
                   WHERE call_id = ANY($1)`, [[ida, idb]]);
  await db.query('SELECT dialer.wake_worker()');
  await d.waitFor(async () => (await eventsOf(ida, 'reconciled')).length === 1 && (await eventsOf(idb, 'reconcile_search')).length === 1,
    { timeoutMs: 5000, intervalMs: 100, message: 'both searched',
      describe: async () => JSON.stringify(await Promise.all([ida, idb].map((id) => eventsOf(id)))) });
  const [att] = await d.attempts(db, ida);
  const g = withKey.control.requests(100).filter((r) => r.method === 'GET');
  assert.equal(g.length, 1);
  assert.equal(g[0].path, `/call?idempotency_key=${encodeURIComponent(att.idempotency_key)}`);
  const ra = await row(ida);
  assert.equal(ra.status, 'dialing');
  assert.equal(ra.provider_call_id, backendId[ida]);
  const [ea] = await eventsOf(ida, 'reconciled');
  assert.equal(ea.from_status, 'unknown');
  assert.equal(ea.to_status, 'dialing');
  assert.equal(ea.detail.searched.idempotency_key, att.idempotency_key);
  assert.equal(ea.detail.search_result, 'found');
  assert.equal(ea.detail.provider_call_id, backendId[ida]);
  const [aa] = await d.attempts(db, ida);
  assert.equal(aa.provider_call_id, backendId[ida], 'the call id is on the attempt');
  const rb = await row(idb);
  assert.equal(rb.status, 'unknown');
  assert.equal(rb.provider_call_id, null);
  const [eb] = await eventsOf(idb, 'reconcile_search');
  assert.equal(eb.detail.result, 'not_offered');
  assert.equal(eb.detail.http_status, 404);
  assert.match(eb.detail.error, /offers no lookup by Idempotency-Key/);
  assert.equal(withKey.control.counts()[String(ida)], 1, 'never re-sent');
  assert.equal(without.control.counts()[String(idb)], 1, 'never re-sent');
});
