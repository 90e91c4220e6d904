'use strict';
// The dispatcher end to end, against the provider simulators (test/sim/server.js) on 127.0.0.1:
// each provider's request on the wire, wake-up at commit (never on rollback, never early),
// no work while idle, claim order, per-provider and global concurrency, calls-per-second pacing,
// and the safety rules applied at dispatch (allow-list, do-not-call, calling window, deadline).
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test \
//     DIALER_CLUSTER_DIR=/tmp/dispatch-dev node --test test/integration/dispatch.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const d = require('../lib/dialer');

const P = 'it_disp_';                          // every provider of this file starts with it
const RUN = `${process.pid % 100000}`;          // fresh provider names: fresh pacing state in the worker
const providers = new Set();
const sims = [];
const DNC = [];
let db;
let settings;
let tw;       // twilio simulator shared by several tests (requests filtered by call id)
let bk;       // backend simulator (bearer checked)
let bk2;      // a second backend, for per-call base URLs
let va;       // voice_api simulator

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
const reqs = (s, id, route) => s.control.requests(1000, { call_id: String(id), ...(route ? { route } : {}) });
const count = (s, id) => s.control.counts()[String(id)] || 0;
// the simulator's record of a call: twilio keeps our id in call_id (its own in sid), backend and
// voice_api keep theirs in call_id and ours in dialer_call_id
const simCall = (s, id) => s.control.calls(100000).find((c) => (c.sid ? c.call_id : c.dialer_call_id) === String(id));
const eventNames = async (id) => (await d.events(db, id)).map((e) => e.event);

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  await d.workerPid(db);
  tw = await sim('twilio', { apiKeys: [{ sid: 'SK' + 'a1'.repeat(16), secret: 'api-key-secret' }] });
  bk = await sim('backend', { token: 'bk-bearer', briefScript: 'Brief for {to_number}, call {call_id}.' });
  bk2 = await sim('backend', { token: 'bk-bearer' });
  va = await sim('voice_api');
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    if (DNC.length) await db.query('DELETE FROM dialer.do_not_call WHERE number = ANY($1)', [DNC]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  for (const s of sims) await s.close();
});

/* ------------------------------------------------------------------ providers end to end */

async function checkAccepted(id, s, { sidPattern }) {
  const [call] = await d.calls(db, [id]);
  assert.equal(call.status, 'dialing');
  const sc = simCall(s, id);
  assert.ok(sc, `the simulator stored call ${id}`);
  const sid = sc.sid || sc.call_id;
  assert.match(sid, sidPattern);
  assert.equal(call.provider_call_id, sid, 'the provider\'s call id is stored on the call');
  const att = await d.attempts(db, id);
  assert.equal(att.length, 1);
  assert.equal(att[0].attempt, 1);
  assert.equal(att[0].provider_call_id, sid, 'and on the attempt');
  assert.ok(att[0].http_status >= 200 && att[0].http_status < 300);
  assert.equal(att[0].error_code, null);
  assert.ok(att[0].responded_at >= att[0].requested_at);
  assert.deepEqual(await eventNames(id), ['enqueued', 'claimed', 'accepted']);
  assert.equal(count(s, id), 1, 'placed exactly once');
  return { call, att: att[0] };
}

test('twilio: form body (Twiml, Url, provider TwiML URL, caller id), StatusCallback with call_id, events, Timeout, MachineDetection, Basic auth; sid stored', async () => {
  const acc = tw.control.config().accountSid;
  await provider(d.twilioProvider(`${P}tw`, tw, {
    status_callback_url: 'https://hooks.example.com/rpc/twilio_status?src=it',
    twiml_url: 'https://app.example.com/twiml/default', ring_timeout: 25, machine_detection: 'Enable' }));
  const msg = `Hello <Ann> & "Bob" it's 9 o'clock`;
  const ids = {
    twiml: await d.enqueue(db, '+15550101001', { provider: `${P}tw`, payload: { message: msg } }),
    url: await d.enqueue(db, '+15550101002', { provider: `${P}tw`, payload: { url: 'https://app.example.com/twiml/7?a=1&b=2' } }),
    deflt: await d.enqueue(db, '+15550101003', { provider: `${P}tw` }),
    from: await d.enqueue(db, '+15550101004', { provider: `${P}tw`, payload: { message: 'x', from: '+15550109999' } }),
  };
  await d.waitForStatus(db, Object.values(ids), ['dialing', 'failed']);
  for (const id of Object.values(ids)) {
    await checkAccepted(id, tw, { sidPattern: /^CA[0-9a-f]{32}$/ });
    const [r] = reqs(tw, id);
    assert.equal(r.method, 'POST');
    assert.equal(r.path, `/2010-04-01/Accounts/${acc}/Calls.json`);
    assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(r.headers.authorization, basic(acc, '0123456789abcdef0123456789abcdef'));
    assert.equal(r.body.StatusCallback, `https://hooks.example.com/rpc/twilio_status?src=it&call_id=${id}`);
    assert.equal(r.body.StatusCallbackMethod, 'POST');
    assert.deepEqual(r.body.StatusCallbackEvent, ['initiated', 'ringing', 'answered', 'completed']);
    assert.equal(r.body.Timeout, '25');
    assert.equal(r.body.MachineDetection, 'Enable');
    assert.equal(r.status, 201);
  }
  const body = (id) => reqs(tw, id)[0].body;
  assert.equal(body(ids.twiml).To, '+15550101001');
  assert.equal(body(ids.twiml).From, '+15550100000');
  assert.equal(body(ids.twiml).Twiml,
    '<Response><Say>Hello &lt;Ann&gt; &amp; &quot;Bob&quot; it&apos;s 9 o&apos;clock</Say></Response>');
  assert.equal(body(ids.twiml).Url, undefined);
  assert.equal(body(ids.url).Url, 'https://app.example.com/twiml/7?a=1&b=2');
  assert.equal(body(ids.url).Twiml, undefined);
  assert.equal(body(ids.deflt).Url, 'https://app.example.com/twiml/default');
  assert.equal(body(ids.from).From, '+15550109999', 'payload.from is the caller id');
});

test('twilio: API key SID and secret as Basic credentials, account SID in the path; no StatusCallback when none is configured', async () => {
  const acc = tw.control.config().accountSid;
  await provider(d.twilioProvider(`${P}tw_key`, tw, { auth_token: null,
    api_key_sid: 'SK' + 'a1'.repeat(16), api_key_secret: 'api-key-secret' }));
  const id = await d.enqueue(db, '+15550101011', { provider: `${P}tw_key`, payload: { message: 'key' } });
  await d.waitForStatus(db, [id], ['dialing', 'failed']);
  await checkAccepted(id, tw, { sidPattern: /^CA[0-9a-f]{32}$/ });
  const [r] = reqs(tw, id);
  assert.equal(r.path, `/2010-04-01/Accounts/${acc}/Calls.json`);
  assert.equal(r.headers.authorization, basic('SK' + 'a1'.repeat(16), 'api-key-secret'));
  assert.equal(r.headers['x-dialer-call-id'], String(id), 'counted by the X-Dialer-Call-Id header');
  for (const k of ['StatusCallback', 'StatusCallbackEvent', 'Timeout', 'MachineDetection']) assert.equal(r.body[k], undefined, k);
});

test('twilio: a call that cannot be sent (TwiML over 4,000 characters once XML-escaped, no caller id) fails at once and nothing is sent', async () => {
  await provider(d.twilioProvider(`${P}tw_nofrom`, tw, { from_number: null }));
  // 2,000 characters pass enqueue_call's length check, but escaping makes 6,000 of TwiML
  const long = await d.enqueue(db, '+15550101021', { provider: `${P}tw`, payload: { message: 'a&'.repeat(1000) } });
  const nofrom = await d.enqueue(db, '+15550101022', { provider: `${P}tw_nofrom`, payload: { message: 'hi' } });
  await d.waitForStatus(db, [long, nofrom], ['failed', 'dialing']);
  const [a, b] = await d.calls(db, [long, nofrom]);
  assert.equal(a.status, 'failed');
  assert.equal(a.last_error, `payload.message makes ${6000 + 32} characters of TwiML; Twilio accepts at most 4000`);
  assert.equal(b.status, 'failed');
  assert.match(b.last_error, /no caller id/);
  for (const id of [long, nofrom]) {
    assert.equal((await d.attempts(db, id))[0].error_code, 'not_sendable');
    assert.equal(count(tw, id), 0, 'nothing reached the provider');
  }
});

test('backend DIRECT: POST /call/start with the script, bearer token and an Idempotency-Key; call_id stored', async () => {
  await provider(d.jsonProvider(`${P}bk`, 'backend', bk, { bearer_token: 'bk-bearer', allowed_hosts: ['127.0.0.1'] }));
  const payload = { script: 'Hello, your appointment is tomorrow.', customer: 'c-17' };
  const id = await d.enqueue(db, '+15550102001', { provider: `${P}bk`, payload });
  await d.waitForStatus(db, [id], ['dialing', 'failed']);
  const { call, att } = await checkAccepted(id, bk, { sidPattern: /^bk_/ });
  assert.equal(call.mode, 'DIRECT');
  const [r] = reqs(bk, id);
  assert.equal(r.path, '/call/start');
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers.authorization, 'Bearer bk-bearer');
  assert.match(att.idempotency_key, new RegExp(`^pgd-${id}-0-\\d+$`));
  assert.equal(r.headers['idempotency-key'], att.idempotency_key, 'the Idempotency-Key stored on the attempt was sent');
  assert.deepEqual(r.body, { call_id: id, attempt: 1, to_number: '+15550102001', from_number: '+15550100000',
    script: payload.script, mode: 'DIRECT', metadata: payload });
  assert.equal(bk.control.counts('/call/brief')[String(id)], undefined, 'no brief in DIRECT mode');
});

test('backend BRIEF_START: POST /call/brief, then /call/start with the script the brief returned', async () => {
  await provider(d.jsonProvider(`${P}bk`, 'backend', bk, { bearer_token: 'bk-bearer', allowed_hosts: ['127.0.0.1'] }));
  const payload = { mode: 'BRIEF_START', purpose: 'Your policy renews next week.' };
  const id = await d.enqueue(db, '+15550102011', { provider: `${P}bk`, payload });
  await d.waitForStatus(db, [id], ['dialing', 'failed']);
  const { call, att } = await checkAccepted(id, bk, { sidPattern: /^bk_/ });
  assert.equal(call.mode, 'BRIEF_START');
  const [brief] = reqs(bk, id, '/call/brief');
  const [start] = reqs(bk, id, '/call/start');
  assert.ok(brief && start, 'both requests arrived');
  assert.ok(brief.seq < start.seq, 'the brief came first');
  assert.equal(brief.body.script, undefined);
  assert.equal(brief.body.mode, 'BRIEF_START');
  assert.deepEqual(brief.body.metadata, payload, 'the brief carries the payload');
  assert.equal(brief.headers.authorization, 'Bearer bk-bearer');
  assert.equal(brief.headers['idempotency-key'], `${att.idempotency_key}-brief`);
  assert.equal(start.body.script, `Brief for +15550102011, call ${id}.`, 'the script is the one the brief returned');
  assert.equal(start.headers['idempotency-key'], att.idempotency_key);
  assert.equal(bk.control.counts('/call/brief')[String(id)], 1);
});

test('backend: a per-call base_url is used only when its host is in allowed_hosts (checked at enqueue and again at dispatch)', async () => {
  const name = `${P}bk_hosts`;
  await provider(d.jsonProvider(name, 'backend', bk, { bearer_token: 'bk-bearer', allowed_hosts: ['127.0.0.1'], enabled: false }));
  const port2 = new URL(bk2.url).port;
  for (const bad of [`http://localhost:${port2}`, `http://u:p@127.0.0.1:${port2}`, `ftp://127.0.0.1:${port2}`]) {
    await assert.rejects(d.enqueue(db, '+15550102022', { provider: name, payload: { script: 's', base_url: bad } }),
      (e) => e.code === '22023' && /invalid payload.base_url/.test(e.message), bad);
  }
  // allowed when enqueued, no longer when due: the worker checks again and sends nothing
  const revoked = await d.enqueue(db, '+15550102023', { provider: name, payload: { script: 's', base_url: bk2.url } });
  await db.query(`UPDATE dialer.providers SET allowed_hosts = '{localhost}' WHERE name = $1`, [name]);
  await d.setProvidersEnabled(db, [name], true);
  const [c] = await d.waitForStatus(db, [revoked], ['dialing', 'failed']);
  assert.equal(c.status, 'failed');
  assert.equal(c.last_error, `payload.base_url host "127.0.0.1" is not in allowed_hosts of provider ${name}`);
  assert.equal(count(bk, revoked) + count(bk2, revoked), 0, 'nothing was sent');
  assert.equal((await d.attempts(db, revoked))[0].error_code, 'not_sendable');
  // and with the host allowed, the call goes to its own base URL, not the provider's
  await db.query(`UPDATE dialer.providers SET allowed_hosts = '{127.0.0.1}' WHERE name = $1`, [name]);
  const sent = await d.enqueue(db, '+15550102024', { provider: name, payload: { script: 's', base_url: `${bk2.url}/` } });
  await d.waitForStatus(db, [sent], ['dialing', 'failed']);
  assert.equal((await d.calls(db, [sent]))[0].status, 'dialing');
  assert.equal(count(bk2, sent), 1, 'sent to the per-call base URL');
  assert.equal(count(bk, sent), 0, 'not to the provider\'s');
  assert.equal(reqs(bk2, sent)[0].path, '/call/start');
});

test('voice_api: POST /calls {phone_number, message, metadata:{call_id}} with a bearer key; its call_id stored', async () => {
  await provider(d.jsonProvider(`${P}va`, 'voice_api', va));
  const payload = { message: 'Your order has shipped.', order: 42 };
  const id = await d.enqueue(db, '+15550103001', { provider: `${P}va`, payload, campaign: 'it_disp_label' });
  await d.waitForStatus(db, [id], ['dialing', 'failed']);
  const { att } = await checkAccepted(id, va, { sidPattern: /^vc_/ });
  const [r] = reqs(va, id);
  assert.equal(r.path, '/calls');
  assert.equal(r.headers.authorization, 'Bearer vk_test_key');
  assert.equal(r.headers['idempotency-key'], att.idempotency_key);
  assert.deepEqual(r.body, { phone_number: '+15550103001', message: payload.message, from_number: '+15550100000',
    metadata: { call_id: id, attempt: 1, campaign: 'it_disp_label', payload } });
});

/* ------------------------------------------------------------------ wake-up */

test('wake-up: a call enqueued in a transaction is sent only after COMMIT, within milliseconds; never after ROLLBACK', async () => {
  await provider(d.twilioProvider(`${P}tw_wake`, tw));
  const tx = await d.connect();
  try {
    await tx.query('BEGIN');
    const id = await d.enqueue(tx, '+15550104001', { provider: `${P}tw_wake`, payload: { message: 'wake' } });
    await d.sleep(800);
    assert.equal(count(tw, id), 0, 'nothing is sent while the transaction is open');
    const beforeCommit = Date.now() * 1000;
    await tx.query('COMMIT');
    const committed = Date.now() * 1000;
    await d.waitFor(() => tw.control.arrivals()[String(id)], { timeoutMs: 3000, intervalMs: 2, message: 'the request' });
    const arrival = tw.control.arrivals()[String(id)];
    assert.ok(arrival >= beforeCommit, 'the request left after the commit');
    assert.ok(arrival - committed < 250000, `commit to arrival ${(arrival - committed) / 1000} ms`);

    await tx.query('BEGIN');
    const rolled = await d.enqueue(tx, '+15550104002', { provider: `${P}tw_wake`, payload: { message: 'never' } });
    await tx.query('ROLLBACK');
    await d.sleep(1500);
    assert.equal(count(tw, rolled), 0, 'a rolled-back call is never sent');
    assert.equal((await d.calls(db, [rolled])).length, 0);
  } finally {
    await tx.end();
  }
});

test('wake-up: a call with run_at 2 s ahead is sent at run_at, not before', async () => {
  await provider(d.twilioProvider(`${P}tw_wake`, tw));
  const id = await d.enqueue(db, '+15550104011', { provider: `${P}tw_wake`, payload: { message: 'later' },
    run_at: { sql: `now() + interval '2 seconds'` } });
  const [call] = await d.calls(db, [id]);
  const runAtUs = call.run_at.getTime() * 1000;
  await d.sleep(1500);
  assert.equal(count(tw, id), 0, 'not sent 1.5 s early');
  await d.waitFor(() => tw.control.arrivals()[String(id)], { timeoutMs: 4000, intervalMs: 5, message: 'the request' });
  const late = tw.control.arrivals()[String(id)] - runAtUs;
  assert.ok(late >= 0, `sent ${-late / 1000} ms before run_at`);
  assert.ok(late < 300000, `sent ${late / 1000} ms after run_at`);
});

async function workerActivity() {
  const r = await db.query(`
    SELECT a.query_start, a.xact_start,
           (SELECT coalesce(sum(calls), 0)::int FROM pg_stat_user_functions
             WHERE schemaname = 'dialer' AND funcname IN ('claim_calls', 'next_due_at', 'provider_capacity')) AS fcalls
      FROM pg_stat_activity a WHERE a.pid = (SELECT pid FROM dialer.worker_status())`);
  return r.rows[0];
}

test('idle: no query runs while nothing is due (pg_stat_activity and pg_stat_user_functions stand still)', async () => {
  await settings.set({ track_functions: 'all' });
  await provider(d.twilioProvider(`${P}tw_idle`, tw));
  const id = await d.enqueue(db, '+15550104021', { provider: `${P}tw_idle`, payload: { message: 'x' } });
  await d.waitForStatus(db, [id], ['dialing']);
  await d.waitFor(async () => (await d.workerStatus(db)).state === 'idle', { message: 'the worker to be idle' });
  const due = (await db.query(`SELECT dispatch_at, dispatch_at < now() + interval '5 seconds' AS soon FROM dialer.next_due_at()`)).rows[0];
  assert.ok(!due.soon, `precondition: nothing may be due in the next seconds (a call of another test is due at ${due.dispatch_at})`);
  await d.sleep(300);
  const a = await workerActivity();
  assert.ok(a, 'the worker is in pg_stat_activity');
  await d.sleep(3000);
  const b = await workerActivity();
  assert.equal(b.query_start.getTime(), a.query_start.getTime(),
    `the worker ran a query while idle (query_start ${a.query_start.toISOString()} -> ${b.query_start.toISOString()})`);
  assert.equal(b.xact_start, null, 'no transaction open while idle');
  assert.equal(b.fcalls, a.fcalls, 'claim_calls/next_due_at/provider_capacity were not called while idle');
});

test('statistics: the worker reports its work to the cumulative statistics (function calls, the queue\'s updated rows)', async () => {
  // Without this, pg_stat_user_functions cannot show the worker's queries and autovacuum never
  // learns about the dead rows the worker's claims and results leave in dialer.scheduled_calls.
  await settings.set({ track_functions: 'all' });
  await provider(d.twilioProvider(`${P}tw_idle`, tw));
  const snap = async () => (await db.query(`
    SELECT (SELECT coalesce(sum(calls), 0)::int FROM pg_stat_user_functions
             WHERE schemaname = 'dialer' AND funcname = 'claim_calls') AS claims,
           (SELECT n_tup_upd::int FROM pg_stat_user_tables WHERE relid = 'dialer.scheduled_calls'::regclass) AS upd`)).rows[0];
  const before = await snap();
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await d.enqueue(db, `+1555010403${i}`, { provider: `${P}tw_idle`, payload: { message: 'x' } }));
  await d.waitForStatus(db, ids, ['dialing']);
  let now = before;
  try {
    await d.waitFor(async () => {
      now = await snap();
      return now.claims > before.claims && now.upd >= before.upd + 2 * ids.length;
    }, { timeoutMs: 3000, intervalMs: 200, message: 'the worker\'s statistics' });
  } catch (e) {
    assert.fail(`after 5 calls claimed and accepted, pg_stat_user_functions.calls of dialer.claim_calls went ${before.claims} -> ${now.claims} and `
      + `pg_stat_user_tables.n_tup_upd of dialer.scheduled_calls ${before.upd} -> ${now.upd} (expected >= +${2 * ids.length}): `
      + 'the worker never calls pgstat_report_stat(), so its statistics are flushed only when it exits');
  }
});

test('enabling a provider (UPDATE dialer.providers SET enabled = true) lets its waiting calls go out within seconds', async () => {
  // "A disabled provider's calls stay scheduled until it is enabled again" (dialer.providers.enabled)
  const name = `${P}tw_reenable`;
  await provider(d.twilioProvider(name, tw, { enabled: false }));
  const id = await d.enqueue(db, '+15550104041', { provider: name, payload: { message: 'r' } });
  await d.sleep(500);
  assert.equal(count(tw, id), 0, 'not sent while its provider is disabled');
  await db.query('UPDATE dialer.providers SET enabled = true WHERE name = $1', [name]);
  const t0 = Date.now();
  try {
    await d.waitForStatus(db, [id], ['dialing'], { timeoutMs: 5000 });
  } catch (e) {
    const due = (await db.query('SELECT dispatch_at, reconcile_at FROM dialer.next_due_at()')).rows[0];
    assert.fail(`the call of the re-enabled provider was still ${(await d.calls(db, [id]))[0].status} ${Date.now() - t0} ms later: `
      + `nothing wakes the sleeping worker when a provider changes (its next timed wake: ${JSON.stringify(due)})`);
  }
});

/* ------------------------------------------------------------------ claim order, concurrency, pacing */

test('claim order: highest priority first, then earliest run_at', async () => {
  const name = `${P}order_${RUN}`;
  await provider(d.twilioProvider(name, tw, { calls_per_second: 2, enabled: false }));
  const spec = [[0, 60], [5, 10], [5, 50], [-1, 100], [0, 30], [10, 1]];   // [priority, seconds ago]
  const ids = [];
  for (const [prio, ago] of spec) {
    ids.push(await d.enqueue(db, `+155501050${ids.length}0`, { provider: name, payload: { message: 'o' }, priority: prio,
      run_at: { sql: `now() - interval '${ago} seconds'` } }));
  }
  const expected = spec.map((s, i) => ({ id: ids[i], prio: s[0], ago: s[1] }))
    .sort((a, b) => b.prio - a.prio || b.ago - a.ago).map((x) => x.id);
  await d.setProvidersEnabled(db, [name], true);
  await d.waitForStatus(db, ids, ['dialing'], { timeoutMs: 10000 });
  const r = await db.query(`SELECT call_id, requested_at FROM dialer.call_attempts WHERE call_id = ANY($1)`, [ids]);
  const at = new Map(r.rows.map((x) => [Number(x.call_id), x.requested_at.getTime()]));
  const claimed = [...ids].sort((a, b) => at.get(a) - at.get(b));
  assert.ok(new Set(at.values()).size >= 4, 'calls were claimed in several rounds (2 per second)');
  for (let i = 1; i < expected.length; i++) {
    assert.ok(at.get(expected[i - 1]) <= at.get(expected[i]),
      `claimed in order ${claimed.join(',')}, expected ${expected.join(',')}`);
  }
});

// Samples a simulator's requests in flight every few ms; stop() returns the maximum seen.
function sampleInFlight(...sims_) {
  let max = 0;
  const per = sims_.map(() => 0);
  const t = setInterval(() => {
    let sum = 0;
    sims_.forEach((s, i) => { const n = s.control.stats().in_flight; per[i] = Math.max(per[i], n); sum += n; });
    max = Math.max(max, sum);
  }, 3);
  return { stop() { clearInterval(t); return { max, per }; } };
}

test('per-provider max_concurrency: calls dispatching or dialing count against it; more start as calls finish', async () => {
  const s = await sim('twilio');
  s.control.addFault({ mode: 'delay', ms: 400 });
  const name = `${P}maxc`;
  await provider(d.twilioProvider(name, s, { max_concurrency: 3 }));
  const ids = [];
  for (let i = 0; i < 6; i++) ids.push(await d.enqueue(db, `+155501060${i}0`, { provider: name, payload: { message: 'c' } }));
  const sampler = sampleInFlight(s);
  await d.waitFor(async () => (await d.calls(db, ids)).filter((c) => c.status === 'dialing').length === 3,
    { timeoutMs: 5000, message: '3 calls dialing' });
  await d.sleep(1500);
  let rows = await d.calls(db, ids);
  assert.equal(rows.filter((c) => c.status === 'dialing').length, 3, 'no 4th call while 3 are dialing');
  assert.equal(rows.filter((c) => c.status === 'scheduled').length, 3);
  assert.equal(s.control.stats().distinct_call_ids, 3);
  // the calls end (as a status callback would record it): the next ones start
  const first = rows.filter((c) => c.status === 'dialing').map((c) => c.id);
  await db.query(`UPDATE dialer.scheduled_calls SET status = 'completed', finished_at = now(), updated_at = now() WHERE id = ANY($1)`, [first]);
  rows = await d.waitForStatus(db, ids.filter((id) => !first.includes(id)), ['dialing'], { timeoutMs: 5000 });
  const { max } = sampler.stop();
  assert.equal(max, 3, `requests in flight at the provider at most 3 (and 3 reached): ${max}`);
  assert.equal(s.control.stats().distinct_call_ids, 6);
  assert.deepEqual(s.control.stats().duplicate_call_ids, []);
});

test('calls_per_second: 20 calls at 5 per second take about 4 s', async () => {
  const name = `${P}cps_${RUN}`;
  await provider(d.twilioProvider(name, tw, { calls_per_second: 5 }));
  const ids = [];
  await db.query('BEGIN');
  for (let i = 0; i < 20; i++) ids.push(await d.enqueue(db, `+15550107${String(i).padStart(3, '0')}`, { provider: name, payload: { message: 'p' } }));
  await db.query('COMMIT');
  await d.waitForStatus(db, ids, ['dialing'], { timeoutMs: 10000 });
  const arr = tw.control.arrivals();
  const t = ids.map((id) => arr[String(id)] / 1000).sort((a, b) => a - b);
  const span = (t[t.length - 1] - t[0]) / 1000;
  // a bucket of 5 tokens (burst) at 5 per second: at least (20 - 5) / 5 = 3 s, at most ~3.8 s plus scheduling
  assert.ok(span >= 2.9 && span <= 4.6, `20 calls took ${span.toFixed(2)} s`);
  for (let i = 0; i < t.length; i++) {
    const inSecond = t.filter((x) => x >= t[i] && x < t[i] + 1000).length;
    assert.ok(inSecond <= 10, `${inSecond} calls within one second from call ${i}`);
  }
});

test('a twilio provider without calls_per_second paces at 1 call per second (Twilio accounts start at 1 CPS)', async () => {
  const name = `${P}tw_cps_default_${RUN}`;
  const p = d.twilioProvider(name, tw);
  delete p.calls_per_second;
  await provider(p);
  const ids = [];
  await db.query('BEGIN');
  for (let i = 0; i < 3; i++) ids.push(await d.enqueue(db, `+15550107${String(900 + i)}`, { provider: name, payload: { message: 'p' } }));
  await db.query('COMMIT');
  await d.waitForStatus(db, ids, ['dialing'], { timeoutMs: 6000 });
  const arr = tw.control.arrivals();
  const t = ids.map((id) => arr[String(id)] / 1e6).sort((a, b) => a - b);
  const cps = (await db.query('SELECT calls_per_second::float8 AS v FROM dialer.providers WHERE name = $1', [name])).rows[0].v;
  assert.ok(t[2] - t[0] >= 1.8,
    `3 calls of a twilio provider with the default pace went out within ${(t[2] - t[0]).toFixed(2)} s (calls_per_second default is ${cps})`);
});

test('global dialer.max_concurrency bounds the requests in flight over all providers', async () => {
  const a = await sim('twilio');
  const b = await sim('twilio');
  a.control.addFault({ mode: 'delay', ms: 300 });
  b.control.addFault({ mode: 'delay', ms: 300 });
  await settings.set({ 'dialer.max_concurrency': 4 });
  try {
    await provider(d.twilioProvider(`${P}glob_a`, a));
    await provider(d.twilioProvider(`${P}glob_b`, b));
    const ids = [];
    await db.query('BEGIN');
    for (let i = 0; i < 12; i++) {
      ids.push(await d.enqueue(db, `+15550108${String(i).padStart(3, '0')}`, { provider: `${P}glob_a`, payload: { message: 'g' } }));
      ids.push(await d.enqueue(db, `+15550109${String(i).padStart(3, '0')}`, { provider: `${P}glob_b`, payload: { message: 'g' } }));
    }
    const sampler = sampleInFlight(a, b);
    await db.query('COMMIT');
    await d.waitForStatus(db, ids, ['dialing'], { timeoutMs: 15000 });
    const { max, per } = sampler.stop();
    assert.equal(max, 4, `at most 4 requests in flight over both providers, and 4 reached (max ${max})`);
    assert.ok(per[0] <= 3 && per[1] <= 3, `each provider gets at most 3 of the 4 slots: ${per}`);
  } finally {
    await settings.set({ 'dialer.max_concurrency': null });
  }
});

/* ------------------------------------------------------------------ safety */

test('dialer.allowed_numbers: a listed number is dialled, any other is skipped with a warning event', async () => {
  await provider(d.twilioProvider(`${P}tw_safe`, tw));
  await settings.set({ 'dialer.allowed_numbers': '+15550110001, +15550110002' });
  try {
    const ok = await d.enqueue(db, '+15550110001', { provider: `${P}tw_safe`, payload: { message: 's' } });
    const no = await d.enqueue(db, '+15550110003', { provider: `${P}tw_safe`, payload: { message: 's' } });
    await d.waitForStatus(db, [ok, no], ['dialing', 'skipped']);
    const [a, b] = await d.calls(db, [ok, no]);
    assert.equal(a.status, 'dialing');
    assert.equal(count(tw, ok), 1);
    assert.equal(b.status, 'skipped');
    assert.equal(b.last_error, 'number is not in dialer.allowed_numbers');
    assert.equal(count(tw, no), 0, 'never sent');
    const ev = (await d.events(db, no)).find((e) => e.event === 'skipped');
    assert.equal(ev.detail.reason, 'not_allowed');
    assert.equal(ev.detail.level, 'warning');
    assert.match(ev.detail.message, /allowed_numbers/);
  } finally {
    await settings.set({ 'dialer.allowed_numbers': '' });
  }
});

test('do-not-call: a number listed after enqueue has its scheduled call skipped at once', async () => {
  const name = `${P}tw_dnc0`;
  await provider(d.twilioProvider(name, tw, { enabled: false }));
  const num = '+15550111002';
  const id = await d.enqueue(db, num, { provider: name, payload: { message: 'd' } });
  assert.equal((await d.calls(db, [id]))[0].status, 'scheduled');
  DNC.push(num);
  await db.query(`INSERT INTO dialer.do_not_call (number, reason) VALUES ($1, 'integration test') ON CONFLICT DO NOTHING`, [num]);
  const [c] = await d.calls(db, [id]);
  assert.equal(c.status, 'skipped', 'skipped by the insert itself, the provider still disabled');
  assert.equal(c.last_error, 'number is on the do-not-call list');
  const ev = (await d.events(db, id)).find((e) => e.event === 'skipped');
  assert.deepEqual(ev.detail, { reason: 'do_not_call', checked: 'do_not_call_added' });
  await d.setProvidersEnabled(db, [name], true);
  await d.sleep(300);
  assert.equal(count(tw, id), 0, 'never sent');
});

test('do-not-call is checked again at dispatch: a number listed without the trigger (e.g. by logical replication) is skipped', async () => {
  const name = `${P}tw_dnc`;
  await provider(d.twilioProvider(name, tw, { enabled: false }));
  const num = '+15550111001';
  const id = await d.enqueue(db, num, { provider: name, payload: { message: 'd' } });
  assert.equal((await d.calls(db, [id]))[0].status, 'scheduled');
  DNC.push(num);
  // rows applied by a logical replication worker fire no ordinary trigger: the same here
  await db.query('BEGIN');
  await db.query(`SET LOCAL session_replication_role = replica`);
  await db.query(`INSERT INTO dialer.do_not_call (number, reason) VALUES ($1, 'integration test') ON CONFLICT DO NOTHING`, [num]);
  await db.query('COMMIT');
  assert.equal((await d.calls(db, [id]))[0].status, 'scheduled', 'the list changed behind the trigger\'s back');
  await d.setProvidersEnabled(db, [name], true);
  const [c] = await d.waitForStatus(db, [id], ['skipped', 'dialing']);
  assert.equal(c.status, 'skipped');
  assert.equal(c.last_error, 'number is on the do-not-call list');
  const ev = (await d.events(db, id)).find((e) => e.event === 'skipped');
  assert.deepEqual(ev.detail, { reason: 'do_not_call', checked: 'dispatch' });
  await d.sleep(300);
  assert.equal(count(tw, id), 0, 'never sent');
});

test('calling window: a due call outside its local window waits for the next opening (window_wait event); past its deadline it expires', async () => {
  await provider(d.twilioProvider(`${P}tw_win`, tw));
  // Etc/GMT-14 .. Etc/GMT+12 cover every offset: one where it is now 22:00-23:30 (after the end:
  // the next day's opening), one inside; windows_and_locks.test.js has the zone before the opening
  const zones = [];
  for (let h = -14; h <= 12; h++) zones.push(h === 0 ? 'Etc/GMT' : `Etc/GMT${h > 0 ? '+' : ''}${h}`);
  const z = (await db.query(`
    SELECT (SELECT z FROM unnest($1::text[]) z WHERE (now() AT TIME ZONE z)::time BETWEEN '22:00' AND '23:30' LIMIT 1) AS outside,
           (SELECT z FROM unnest($1::text[]) z WHERE (now() AT TIME ZONE z)::time BETWEEN '09:00' AND '20:00' LIMIT 1) AS inside`, [zones])).rows[0];
  assert.ok(z.outside && z.inside, `zones found: ${JSON.stringify(z)}`);
  await settings.set({ 'dialer.call_window_start': '08:00', 'dialer.call_window_end': '21:00' });
  try {
    const out = await d.enqueue(db, '+15550112001', { provider: `${P}tw_win`, payload: { message: 'w' }, timezone: z.outside });
    const inn = await d.enqueue(db, '+15550112002', { provider: `${P}tw_win`, payload: { message: 'w' }, timezone: z.inside });
    const dl = await d.enqueue(db, '+15550112003', { provider: `${P}tw_win`, payload: { message: 'w' }, timezone: z.outside,
      deadline: { sql: `now() + interval '2 seconds'` } });
    await d.waitForStatus(db, [inn], ['dialing']);
    await d.waitFor(async () => (await eventNames(out)).includes('window_wait') && (await eventNames(dl)).includes('window_wait'),
      { timeoutMs: 3000, message: 'window_wait events' });
    const r = (await db.query(`
      SELECT c.status, c.next_attempt_at, c.deadline, c.next_attempt_at > now() AS future,
             c.next_attempt_at <= now() + interval '24 hours' AS within_a_day,
             to_char(c.next_attempt_at AT TIME ZONE $2, 'HH24:MI:SS') AS local_time
        FROM dialer.scheduled_calls c WHERE c.id = $1`, [out, z.outside])).rows[0];
    assert.equal(r.status, 'scheduled');
    assert.equal(r.local_time, '08:00:00', `next attempt at the window's opening in ${z.outside}`);
    const days = (await db.query(`SELECT ($1::timestamptz AT TIME ZONE $2)::date - (now() AT TIME ZONE $2)::date AS n`,
      [r.next_attempt_at, z.outside])).rows[0].n;
    assert.equal(days, 1, 'after the end of the window: the next local day');
    assert.ok(r.future && r.within_a_day, `next_attempt_at ${r.next_attempt_at.toISOString()}`);
    const ev = (await d.events(db, out)).find((e) => e.event === 'window_wait');
    assert.deepEqual(ev.detail.timezones, [z.outside]);
    assert.equal(ev.detail.timezone_source, 'call');
    assert.equal(new Date(ev.detail.next_attempt_at).getTime(), r.next_attempt_at.getTime());
    assert.equal(count(tw, out), 0, 'not sent outside the window');
    // the one with a deadline before the opening is due again at its deadline, and then expires
    const [dc] = await d.calls(db, [dl]);
    assert.equal(dc.next_attempt_at.getTime(), dc.deadline.getTime(), 'due again at its deadline');
    const [ex] = await d.waitForStatus(db, [dl], ['expired'], { timeoutMs: 5000 });
    assert.ok(ex.finished_at >= ex.deadline, 'expired at the deadline, not before');
    assert.equal(count(tw, dl), 0);
  } finally {
    await settings.set(d.OPEN_WINDOW);
  }
});

// Numbers whose libphonenumber zone is one zone, spread over the day's offsets (-10 .. +13):
// whatever the hour, some are inside 09:00-20:00 local and some between 22:00 and 06:00.
const ZONED_NUMBERS = ['+18085550100', '+14155550100', '+12125550100', '+551155550100', '+442071838750',
  '+33142685300', '+74951234567', '+97145550100', '+912225550100', '+6565550100', '+81355550100',
  '+61731234567', '+6495550100'];

test('the recipient\'s time by default: with no policy, the general window is read in the zone of the number, not dialer.default_timezone', async () => {
  await provider(d.twilioProvider(`${P}tw_zone`, tw));
  const zones = [];
  for (let h = -14; h <= 12; h++) zones.push(h === 0 ? 'Etc/GMT' : `Etc/GMT${h > 0 ? '+' : ''}${h}`);
  const r = (await db.query(`
    WITH nz AS (SELECT num AS n, (dialer.number_timezones(num))[1] AS z FROM unnest($1::text[]) num
                 WHERE cardinality(dialer.number_timezones(num)) = 1)
    SELECT (SELECT row_to_json(nz) FROM nz WHERE (now() AT TIME ZONE z)::time NOT BETWEEN '06:00' AND '22:00' LIMIT 1) AS asleep,
           (SELECT row_to_json(nz) FROM nz WHERE (now() AT TIME ZONE z)::time BETWEEN '09:00' AND '20:00' LIMIT 1) AS awake,
           (SELECT z FROM unnest($2::text[]) z WHERE (now() AT TIME ZONE z)::time BETWEEN '09:00' AND '20:00' LIMIT 1) AS day_zone,
           (SELECT z FROM unnest($2::text[]) z WHERE (now() AT TIME ZONE z)::time NOT BETWEEN '06:00' AND '22:00' LIMIT 1) AS night_zone`,
  [ZONED_NUMBERS, zones])).rows[0];
  assert.ok(r.asleep && r.awake && r.day_zone && r.night_zone, `numbers and zones found: ${JSON.stringify(r)}`);
  // dialer.default_timezone where it is daytime: 0.2.0 dialled the sleeping recipient at once
  await settings.set({ 'dialer.call_window_start': '08:00', 'dialer.call_window_end': '21:00',
    'dialer.default_timezone': r.day_zone });
  try {
    const asleep = await d.enqueue(db, r.asleep.n, { provider: `${P}tw_zone`, payload: { message: 'z' } });
    await d.waitFor(async () => (await eventNames(asleep)).includes('window_wait'), { timeoutMs: 5000, message: 'window_wait' });
    const ev = (await d.events(db, asleep)).find((e) => e.event === 'window_wait');
    assert.deepEqual(ev.detail.timezones, [r.asleep.z], 'read in the number\'s zone');
    assert.equal(ev.detail.timezone_source, 'number');
    const c = (await db.query(`SELECT status, to_char(next_attempt_at AT TIME ZONE $2, 'HH24:MI') AS local
                                 FROM dialer.scheduled_calls WHERE id = $1`, [asleep, r.asleep.z])).rows[0];
    assert.deepEqual(c, { status: 'scheduled', local: '08:00' }, 'parked until 08:00 the recipient\'s time');
    assert.deepEqual((await db.query('SELECT * FROM dialer.call_timezones($1)', [asleep])).rows[0],
      { timezones: [r.asleep.z], source: 'number' });
    // README's block that says where a call's window was read, run as written
    const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
    const block = /<!-- call-timezones-test -->\s*\n```sql\n([\s\S]*?)```/.exec(readme);
    assert.ok(block, 'README has the call_timezones block');
    const ci = d.connInfo();
    const shown = execFileSync(path.join(process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin', 'psql'),
      ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-h', ci.host, '-p', String(ci.port), '-U', ci.user, '-d', ci.database,
        '-v', `call_id=${asleep}`], { input: block[1], encoding: 'utf8' });
    assert.ok(shown.includes(`{${r.asleep.z}}|number`), shown);
    assert.ok(shown.includes(`window_wait|["${r.asleep.z}"]|number|`), shown);
    // and the other way round: default zone at night, the recipient awake: dialled now
    await settings.set({ 'dialer.default_timezone': r.night_zone });
    const awake = await d.enqueue(db, r.awake.n, { provider: `${P}tw_zone`, payload: { message: 'z' } });
    await d.waitForStatus(db, [awake], ['dialing']);
    const claimed = (await d.events(db, awake)).find((e) => e.event === 'claimed');
    assert.deepEqual([claimed.detail.timezones, claimed.detail.timezone_source], [[r.awake.z], 'number']);
    // a number whose zone is unknown: the window is read in dialer.default_timezone, and the event says so
    const unknown = await d.enqueue(db, '+99955501234', { provider: `${P}tw_zone`, payload: { message: 'z' } });
    await d.waitFor(async () => (await eventNames(unknown)).includes('window_wait'), { timeoutMs: 5000, message: 'window_wait' });
    const ue = (await d.events(db, unknown)).find((e) => e.event === 'window_wait');
    assert.deepEqual([ue.detail.timezones, ue.detail.timezone_source], [[r.night_zone], 'default']);
    assert.match(ue.detail.warning, /time zone of \+99955501234 is not known from the number: the calling window was read in dialer\.default_timezone/);
    assert.equal(count(tw, asleep) + count(tw, unknown), 0, 'neither sent');
    assert.equal(count(tw, awake), 1);
  } finally {
    await settings.set({ ...d.OPEN_WINDOW, 'dialer.default_timezone': 'UTC' });
  }
});

test('deadline: a call whose deadline has passed when it is due expires without being sent', async () => {
  await provider(d.twilioProvider(`${P}tw_win`, tw));
  const id = await d.enqueue(db, '+15550112011', { provider: `${P}tw_win`, payload: { message: 'late' },
    run_at: { sql: `now() - interval '10 seconds'` }, deadline: { sql: `now() - interval '5 seconds'` } });
  const [c] = await d.waitForStatus(db, [id], ['expired', 'dialing']);
  assert.equal(c.status, 'expired');
  assert.equal(c.last_error, 'deadline passed before the call could start');
  assert.deepEqual(await eventNames(id), ['enqueued', 'expired']);
  assert.equal(count(tw, id), 0);
  assert.equal((await d.attempts(db, id)).length, 0, 'no attempt');
});
