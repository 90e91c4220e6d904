'use strict';
// One POST leaves at most once at the TCP level, keep-alive or not (issue 8, item 1).
//
// libcurl re-sends a request by itself when a *reused* keep-alive connection dies before any
// answer byte arrives.  For a Twilio create that places the call twice.  The dispatcher stops that
// re-send (src/http.c, before_send: libcurl's pre-request callback) and treats the request as one
// whose answer was lost: twilio -> unknown, never re-sent; backend / voice_api -> a recorded retry
// with the same Idempotency-Key.  So the simulator sees exactly one request per attempt.
//
// Each test warms a keep-alive connection with good calls, one after another (so the same
// connection serves them, which the test checks), then makes the simulator reset every reused
// connection after reading the request (fault mode reset_reused), and counts what arrived.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test \
//     DIALER_CLUSTER_DIR=/tmp/dispatch-dev node --test test/integration/keepalive_reset.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const P = 'it_ka_';
const RUN = `${process.pid % 100000}`;   // fresh provider names: fresh pacing state in the worker
const providers = new Set();
const sims = [];
let db;
let settings;

const reqs = (s, id) => s.control.requests(1000, { call_id: String(id) });
const count = (s, id) => s.control.counts()[String(id)] || 0;
const payloadFor = (kind) => (kind === 'backend' ? { script: 'Hello from a keep-alive test' } : { message: 'Hello from a keep-alive test' });

// A provider of this kind on its own simulator.
async function setup(kind, name) {
  const s = await d.startSim(kind);
  sims.push(s);
  const pname = `${P}${name}_${RUN}`;
  const p = kind === 'twilio' ? d.twilioProvider(pname, s) : d.jsonProvider(pname, kind, s);
  providers.add(pname);
  await d.createProvider(db, p);
  return { s, name: pname };
}

// Good calls one after another: the first opens a connection, the next ones reuse it.
async function warm(s, name, kind, prefix, n = 3) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const id = await d.enqueue(db, `${prefix}${i}`, { provider: name, payload: payloadFor(kind) });
    const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed', 'unknown'], { timeoutMs: 8000 });
    assert.equal(c.status, 'dialing', `warm-up call ${i} accepted`);
    ids.push(id);
  }
  const seen = ids.map((id) => reqs(s, id));
  assert.ok(seen.every((r) => r.length === 1), 'each warm-up call sent once');
  // keep-alive stays on: the later warm-up calls came over a connection that had served before
  assert.ok(seen.slice(1).every((r) => r[0].conn_request > 1),
    `warm-up calls on reused connections: ${JSON.stringify(seen.map((r) => [r[0].conn, r[0].conn_request]))}`);
  return ids;
}

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '',
    'dialer.retry_base_delay': '200ms', 'dialer.retry_max_delay': '1s', 'dialer.request_timeout': '3s' });
  await d.workerPid(db);
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  for (const s of sims) await s.close();
});

test('twilio: a reused connection reset after the request was read -> one POST, the call is unknown, never re-sent', async () => {
  const { s, name } = await setup('twilio', 'tw');
  await warm(s, name, 'twilio', '+1555030100');
  const to = '+15550301099';
  s.control.addFault({ mode: 'reset_reused', to });
  const id = await d.enqueue(db, to, { provider: name, payload: { message: 'x' } });
  await d.waitForStatus(db, [id], ['unknown', 'dialing', 'failed'], { timeoutMs: 8000 });
  await d.sleep(1000);   // room for a late second POST, which must not come

  const sent = reqs(s, id);
  assert.equal(count(s, id), 1, `one POST on the wire, got ${sent.length}: ${JSON.stringify(sent.map((r) => [r.conn, r.conn_request, r.fault, r.status]))}`);
  assert.equal(s.control.placings('to')[to], 1, 'one request for the number');
  assert.equal(sent[0].fault, 'reset_reused');
  assert.ok(sent[0].conn_request > 1, 'the reset came on a reused keep-alive connection');
  assert.equal(sent[0].status, 0, 'no answer byte');

  const [c] = await d.calls(db, [id]);
  assert.equal(c.status, 'unknown');
  assert.equal(c.attempts, 1);
  assert.match(c.last_error, /closed before any answer \(.+\): the answer was lost/);
  assert.match(c.last_error, /the provider may have placed the call, so it is not re-sent/);
  const att = await d.attempts(db, id);
  assert.equal(att.length, 1);
  assert.equal(att[0].http_status, null);
  assert.equal(att[0].error_code, 'transport_error');
  assert.match(att[0].error_message, new RegExp(`request to provider ${name} was sent on a reused connection that closed before any answer`));
  const ev = (await d.events(db, id)).map((e) => e.event);
  assert.deepEqual(ev, ['enqueued', 'claimed', 'unknown']);
});

for (const kind of ['backend', 'voice_api']) {
  test(`${kind}: a reused connection reset after the request was read -> one request per attempt, retried with the same Idempotency-Key`, async () => {
    const { s, name } = await setup(kind, kind === 'backend' ? 'bk' : 'va');
    const prefix = kind === 'backend' ? '+1555030200' : '+1555030300';
    await warm(s, name, kind, prefix);
    const to = `${prefix}99`;
    // every request for `to` on a reused connection is reset, twice at most
    s.control.addFault({ mode: 'reset_reused', to, count: 2 });
    const id = await d.enqueue(db, to, { provider: name, payload: payloadFor(kind), max_attempts: 5 });
    const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed', 'unknown'], { timeoutMs: 10000 });
    await d.sleep(500);

    const att = await d.attempts(db, id);
    const sent = reqs(s, id);
    const wire = JSON.stringify(sent.map((r) => [r.conn, r.conn_request, r.fault, r.status]));
    assert.equal(count(s, id), att.length, `requests on the wire ${wire} == attempts ${att.length}`);
    assert.equal(s.control.placings('to')[to], att.length);
    const perAttempt = s.control.placings('attempt');
    const mine = Object.keys(perAttempt).filter((k) => k.startsWith(`${id}/`)).sort();
    assert.deepEqual(mine, att.map((a) => `${id}/${a.attempt}`).sort(), 'one key per recorded attempt');
    for (const k of mine) assert.equal(perAttempt[k], 1, `exactly one request for attempt ${k}`);

    assert.ok(att.length >= 2, `the lost answer was retried (attempts: ${att.length})`);
    assert.equal(sent[0].fault, 'reset_reused');
    assert.ok(sent[0].conn_request > 1, 'the first attempt was reset on a reused keep-alive connection');
    assert.equal(att[0].http_status, null);
    assert.equal(att[0].error_code, 'transport_error');
    assert.match(att[0].error_message, /the answer was lost/);

    const keys = new Set(sent.map((r) => r.headers['idempotency-key']));
    assert.equal(keys.size, 1, 'one Idempotency-Key for every attempt');
    assert.equal([...keys][0], att[0].idempotency_key);
    assert.equal(c.status, 'dialing', 'accepted once the resets stopped');
    assert.equal(c.attempts, att.length);
    assert.ok(att.at(-1).http_status >= 200 && att.at(-1).http_status < 300);
  });
}

test('backend BRIEF_START: a reset of /call/start on a reused connection is not re-sent by libcurl', async () => {
  const { s, name } = await setup('backend', 'bk_brief');
  await warm(s, name, 'backend', '+1555030400');
  const to = '+15550304099';
  s.control.addFault({ mode: 'reset_reused', to, path: '/call/start', count: 1 });
  const id = await d.enqueue(db, to, { provider: name, payload: { mode: 'BRIEF_START', purpose: 'brief test' }, max_attempts: 4 });
  const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed', 'unknown'], { timeoutMs: 10000 });
  await d.sleep(500);
  const att = await d.attempts(db, id);
  const starts = reqs(s, id).filter((r) => r.route === '/call/start');
  assert.equal(c.status, 'dialing');
  assert.equal(att.length, 2);
  assert.equal(starts.length, att.length, `one /call/start per attempt: ${JSON.stringify(starts.map((r) => [r.conn, r.conn_request, r.fault]))}`);
  assert.equal(starts[0].fault, 'reset_reused');
  assert.equal(new Set(starts.map((r) => r.headers['idempotency-key'])).size, 1);
});
