'use strict';
// Provider faults, with the outcomes the dispatcher implements (src/call_outcome.c outcome_from_http
// and each provider's finish function):
//   - no answer after the request was sent (timeout, hang, reset): twilio -> unknown, never
//     re-sent; backend / voice_api -> retried with the same Idempotency-Key;
//   - nothing sent (connection refused): retried, whatever the provider;
//   - 408/425/429/5xx: retried after full-jitter backoff, never sooner than Retry-After;
//   - any other HTTP status: failed at once, with the provider's code, message and more_info;
//   - a 2xx whose body is unreadable (invalid JSON, over dialer.max_response_size): accepted
//     without a provider call id (the provider took the call: never re-sent);
//   - attempts used up: failed with the last error; dialer.retry_call() starts a new run;
//   - a failing provider does not starve a healthy one.
//
// Run by test/run_all.sh; by hand:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test \
//     DIALER_CLUSTER_DIR=/tmp/dispatch-dev node --test test/integration/faults.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const https = require('node:https');
const { spawn, execFileSync } = require('node:child_process');
const d = require('../lib/dialer');

const P = 'it_flt_';
const BASE_DELAY = 200;         // dialer.retry_base_delay while these tests run
const TIMEOUT = 1000;           // dialer.request_timeout while these tests run
const providers = new Set();
const sims = [];
const children = [];       // processes this file started (killed by PID in after())
const servers = [];        // other servers (https)
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
const reqs = (s, id, route) => s.control.requests(1000, { call_id: String(id), ...(route ? { route } : {}) });
const count = (s, id) => s.control.counts()[String(id)] || 0;
const eventNames = async (id) => (await d.events(db, id)).map((e) => e.event);

// A twilio / backend / voice_api provider on its own simulator, for one test.
async function setup(kind, name, simOpts = {}, extra = {}) {
  const s = await sim(kind, simOpts);
  const p = kind === 'twilio' ? d.twilioProvider(`${P}${name}`, s, extra) : d.jsonProvider(`${P}${name}`, kind, s, extra);
  await provider(p);
  return { s, name: p.name };
}
const payloadFor = (kind) => (kind === 'backend' ? { script: 'Hello from a fault test' } : { message: 'Hello from a fault test' });

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '',
    'dialer.retry_base_delay': `${BASE_DELAY}ms`, 'dialer.retry_max_delay': '2s',
    'dialer.request_timeout': `${TIMEOUT}ms`, 'dialer.max_response_size': '64kB' });
  await d.workerPid(db);
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  for (const s of sims) await s.close();
  for (const srv of servers) await new Promise((r) => { srv.closeAllConnections && srv.closeAllConnections(); srv.close(() => r()); });
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/* ------------------------------------------------------------------ no answer */

for (const mode of ['delay', 'hang', 'reset']) {
  test(`twilio, ${mode === 'delay' ? `answer later than dialer.request_timeout` : mode === 'hang' ? 'no answer at all (hang)' : 'connection reset after the request'}: unknown, never re-sent`, async () => {
    const { s, name } = await setup('twilio', `tw_${mode}`);
    s.control.addFault(mode === 'delay' ? { mode, ms: TIMEOUT + 1500 } : { mode });
    const id = await d.enqueue(db, '+15550201001', { provider: name, payload: { message: 'x' } });
    const [c] = await d.waitForStatus(db, [id], ['unknown', 'dialing', 'failed'], { timeoutMs: 5000 });
    assert.equal(c.status, 'unknown');
    assert.match(c.last_error, /the provider may have placed the call, so it is not re-sent/);
    const [a] = await d.attempts(db, id);
    assert.equal(a.http_status, null);
    assert.equal(a.error_code, mode === 'reset' ? 'transport_error' : 'timeout');
    if (mode !== 'reset') assert.match(a.error_message, new RegExp(`no answer from provider ${name} within ${TIMEOUT} ms`));
    const ev = (await d.events(db, id)).find((e) => e.event === 'unknown');
    assert.equal(ev.from_status, 'dispatching');
    await d.sleep(1500);
    assert.equal(count(s, id), 1, 'sent once, never again');
    assert.equal((await d.calls(db, [id]))[0].status, 'unknown');
    assert.equal((await d.attempts(db, id)).length, 1);
  });
}

for (const kind of ['backend', 'voice_api']) {
  for (const mode of ['delay', 'reset']) {
    test(`${kind}, ${mode === 'delay' ? 'answer later than dialer.request_timeout' : 'connection reset'} once: retried with the same Idempotency-Key, then accepted`, async () => {
      const { s, name } = await setup(kind, `${kind}_${mode}`);
      s.control.addFault(mode === 'delay' ? { mode, ms: TIMEOUT + 1000, count: 1 } : { mode, count: 1 });
      const id = await d.enqueue(db, '+15550202001', { provider: name, payload: payloadFor(kind) });
      const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed', 'unknown'], { timeoutMs: 6000 });
      assert.equal(c.status, 'dialing');
      const att = await d.attempts(db, id);
      assert.equal(att.length, 2);
      assert.equal(att[0].error_code, mode === 'delay' ? 'timeout' : 'transport_error');
      assert.equal(att[0].http_status, null);
      assert.ok(att[1].http_status >= 200 && att[1].http_status < 300);
      assert.equal(att[1].idempotency_key, att[0].idempotency_key, 'one key for every attempt of the run');
      const sent = reqs(s, id);
      assert.equal(sent.length, 2, 'sent twice');
      assert.deepEqual(sent.map((r) => r.headers['idempotency-key']), [att[0].idempotency_key, att[0].idempotency_key]);
      assert.deepEqual(sent.map((r) => (kind === 'backend' ? r.body.attempt : r.body.metadata.attempt)), [1, 2]);
      assert.deepEqual(await eventNames(id), ['enqueued', 'claimed', 'retry_scheduled', 'claimed', 'accepted']);
      assert.equal(c.provider_call_id, att[1].provider_call_id);
    });
  }
}

test('backend, no answer at all (hang) every time: retried with the same key until max_attempts, then failed with the timeout', async () => {
  const { s, name } = await setup('backend', 'bk_hang');
  s.control.addFault({ mode: 'hang' });
  const id = await d.enqueue(db, '+15550202101', { provider: name, payload: payloadFor('backend'), max_attempts: 2 });
  const [c] = await d.waitForStatus(db, [id], ['failed', 'dialing', 'unknown'], { timeoutMs: 8000 });
  assert.equal(c.status, 'failed');
  assert.match(c.last_error, new RegExp(`no answer from provider ${name} within ${TIMEOUT} ms`));
  const att = await d.attempts(db, id);
  assert.deepEqual(att.map((a) => a.error_code), ['timeout', 'timeout']);
  assert.equal(count(s, id), 2);
  assert.equal(new Set(reqs(s, id).map((r) => r.headers['idempotency-key'])).size, 1, 'same Idempotency-Key');
  const ev = (await d.events(db, id)).at(-1);
  assert.equal(ev.event, 'failed');
  assert.equal(ev.detail.attempts_exhausted, true);
});

/* ------------------------------------------------------------------ HTTP errors */

test('429 with Retry-After: the retry waits at least Retry-After, then the call is accepted', async () => {
  const { s, name } = await setup('twilio', 'tw_429');
  s.control.addFault({ mode: 'status429', retry_after: 2, count: 1 });
  const id = await d.enqueue(db, '+15550203001', { provider: name, payload: { message: 'x' } });
  await d.waitFor(async () => (await eventNames(id)).includes('retry_scheduled'), { timeoutMs: 3000, message: 'the retry' });
  const [mid] = await d.calls(db, [id]);
  const [a1] = await d.attempts(db, id);
  assert.equal(mid.status, 'scheduled');
  assert.equal(a1.http_status, 429);
  assert.equal(a1.error_code, '20429');
  assert.ok(mid.next_attempt_at.getTime() - a1.responded_at.getTime() >= 1990,
    `next attempt ${mid.next_attempt_at.getTime() - a1.responded_at.getTime()} ms after the 429`);
  const ev = (await d.events(db, id)).find((e) => e.event === 'retry_scheduled');
  assert.ok(ev.detail.retry_in_ms >= 2000, `retry_in_ms ${ev.detail.retry_in_ms}`);
  const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed'], { timeoutMs: 5000 });
  assert.equal(c.status, 'dialing');
  const sent = reqs(s, id);
  assert.equal(sent.length, 2);
  assert.ok(sent[1].t_ms - sent[0].t_ms >= 1990, `second request ${sent[1].t_ms - sent[0].t_ms} ms after the first`);
});

test('429 with Retry-After as an HTTP date: the retry waits until that date, not a fixed guess', async () => {
  const { s, name } = await setup('twilio', 'tw_429d');
  s.control.addFault({ mode: 'status429', retry_after_date: 4, count: 1 });
  const id = await d.enqueue(db, '+15550203011', { provider: name, payload: { message: 'x' } });
  await d.waitFor(async () => (await eventNames(id)).includes('retry_scheduled'), { timeoutMs: 3000, message: 'the retry' });
  const ev = (await d.events(db, id)).find((e) => e.event === 'retry_scheduled');
  // the date has whole seconds, and so has libcurl's reading of it: 2 to 4 s from the answer
  // (0.2.0 read any date as 60 s)
  assert.ok(ev.detail.retry_in_ms >= 1900 && ev.detail.retry_in_ms <= 4100, `retry_in_ms ${ev.detail.retry_in_ms}`);
  const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed'], { timeoutMs: 8000 });
  assert.equal(c.status, 'dialing');
  assert.equal(count(s, id), 2);
});

for (const [kind, fault] of [['twilio', { mode: 'status500' }], ['backend', { mode: 'status503' }], ['voice_api', { mode: 'status500', status: 502 }]]) {
  test(`${kind}, ${fault.status || (fault.mode === 'status500' ? 500 : 503)} twice: retried with exponential backoff (full jitter), then accepted`, async () => {
    const { s, name } = await setup(kind, `${kind}_5xx`);
    s.control.addFault({ ...fault, count: 2 });
    const id = await d.enqueue(db, '+15550204001', { provider: name, payload: payloadFor(kind), max_attempts: 3 });
    const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed'], { timeoutMs: 5000 });
    assert.equal(c.status, 'dialing');
    const att = await d.attempts(db, id);
    const st = fault.status || (fault.mode === 'status500' ? 500 : 503);
    assert.deepEqual(att.map((a) => a.http_status), [st, st, kind === 'backend' ? 200 : 201]);
    const ev = (await d.events(db, id)).filter((e) => e.event === 'retry_scheduled');
    assert.equal(ev.length, 2);
    // full jitter: a random delay below base * 2^(attempt - 1)
    assert.ok(ev[0].detail.retry_in_ms < BASE_DELAY, `first delay ${ev[0].detail.retry_in_ms}`);
    assert.ok(ev[1].detail.retry_in_ms < 2 * BASE_DELAY, `second delay ${ev[1].detail.retry_in_ms}`);
    assert.equal(count(s, id), 3);
  });
}

test('after max_attempts the call is failed with its last error; dialer.retry_call requeues it for a new run', async () => {
  const { s, name } = await setup('twilio', 'tw_exhaust');
  s.control.addFault({ mode: 'status500' });
  const id = await d.enqueue(db, '+15550205001', { provider: name, payload: { message: 'x' }, max_attempts: 2 });
  const [c] = await d.waitForStatus(db, [id], ['failed', 'dialing'], { timeoutMs: 5000 });
  assert.equal(c.status, 'failed');
  assert.equal(c.attempts, 2);
  assert.equal(c.last_error, 'Twilio error 20500: Internal Server Error');
  assert.ok(c.finished_at);
  const ev = (await d.events(db, id)).at(-1);
  assert.equal(ev.event, 'failed');
  assert.equal(ev.detail.attempts_exhausted, true);
  assert.equal(ev.detail.http_status, 500);
  await d.sleep(500);
  assert.equal(count(s, id), 2, 'no third request');

  s.control.clearFaults();
  assert.equal((await db.query('SELECT dialer.retry_call($1) AS ok', [id])).rows[0].ok, true);
  const [r] = await d.waitForStatus(db, [id], ['dialing', 'failed'], { timeoutMs: 5000 });
  assert.equal(r.status, 'dialing');
  assert.equal(r.attempts, 3);
  assert.equal(r.attempts_base, 2);
  assert.ok((await eventNames(id)).includes('requeued'));
  assert.equal(count(s, id), 3);
});

test('permanent errors fail at once: Twilio 21211 (code, message and more_info on the attempt), 401 auth, backend 401', async () => {
  const { s, name } = await setup('twilio', 'tw_4xx', { invalidNumbers: ['+15550206001'] });
  const badAuth = `${P}tw_401`;
  await provider(d.twilioProvider(badAuth, s, { auth_token: 'wrong-token' }));
  const { s: b, name: bkName } = await setup('backend', 'bk_401', { token: 'right' }, { bearer_token: 'wrong' });
  const inv = await d.enqueue(db, '+15550206001', { provider: name, payload: { message: 'x' } });
  const auth = await d.enqueue(db, '+15550206002', { provider: badAuth, payload: { message: 'x' } });
  const bka = await d.enqueue(db, '+15550206003', { provider: bkName, payload: payloadFor('backend') });
  await d.waitForStatus(db, [inv, auth, bka], ['failed', 'dialing'], { timeoutMs: 5000 });
  const [ci, ca, cb] = await d.calls(db, [inv, auth, bka]);
  for (const c of [ci, ca, cb]) {
    assert.equal(c.status, 'failed');
    assert.equal(c.attempts, 1, 'one attempt only');
  }
  const [ai] = await d.attempts(db, inv);
  assert.equal(ai.http_status, 400);
  assert.equal(ai.error_code, '21211');
  assert.equal(ai.error_message, "Twilio error 21211: Invalid 'To' Phone Number: +15550206001");
  assert.equal(ai.more_info, 'https://www.twilio.com/docs/errors/21211');
  assert.equal(ci.last_error, ai.error_message);
  const [aa] = await d.attempts(db, auth);
  assert.equal(aa.http_status, 401);
  assert.equal(aa.error_code, '20003');
  assert.equal(aa.error_message, 'Twilio error 20003: Authenticate');
  const [ab] = await d.attempts(db, bka);
  assert.equal(ab.http_status, 401);
  assert.equal(ab.error_code, 'http_401');
  assert.equal(ab.error_message, `provider ${bkName} answered HTTP 401: unauthorized`);
  assert.ok(!ca.last_error.includes('wrong-token'), 'no secret in the error');
  await d.sleep(500);
  assert.equal(count(s, inv) + count(s, auth) + count(b, bka), 3, 'each sent once');
});

/* ------------------------------------------------------------------ unreadable answers */

test('a 2xx with a body over dialer.max_response_size: accepted without a call id (never re-sent); a 500 with one: retried', async () => {
  const { s, name } = await setup('twilio', 'tw_big');
  s.control.addFault({ mode: 'oversized', mb: 1, count: 1 });
  const { s: b, name: bkName } = await setup('backend', 'bk_big');
  b.control.addFault({ mode: 'oversized', mb: 1, status: 500, count: 1 });
  const tid = await d.enqueue(db, '+15550207001', { provider: name, payload: { message: 'x' } });
  const bid = await d.enqueue(db, '+15550207002', { provider: bkName, payload: payloadFor('backend') });
  await d.waitForStatus(db, [tid, bid], ['dialing', 'failed', 'unknown'], { timeoutMs: 5000 });
  const [t, bc] = await d.calls(db, [tid, bid]);
  assert.equal(t.status, 'dialing');
  assert.equal(t.provider_call_id, null);
  const [ta] = await d.attempts(db, tid);
  assert.equal(ta.http_status, 201);
  assert.equal(ta.error_code, 'unreadable_response');
  assert.equal(count(s, tid), 1);
  assert.equal(bc.status, 'dialing');
  const ba = await d.attempts(db, bid);
  assert.equal(ba[0].http_status, 500);
  assert.equal(ba[0].error_message, `provider ${bkName} answered HTTP 500 with a body over dialer.max_response_size`);
  assert.equal(ba[1].http_status, 200);
  assert.match(bc.provider_call_id, /^bk_/);
});

test('invalid JSON on a 2xx: twilio and voice_api accepted without a call id; a backend brief without a script fails', async () => {
  const { s, name } = await setup('twilio', 'tw_badjson');
  s.control.addFault({ mode: 'invalid_json' });
  const { s: v, name: vaName } = await setup('voice_api', 'va_badjson');
  v.control.addFault({ mode: 'invalid_json' });
  const { s: b, name: bkName } = await setup('backend', 'bk_badjson');
  b.control.addFault({ mode: 'invalid_json', path: '/call/brief' });
  const tid = await d.enqueue(db, '+15550208001', { provider: name, payload: { message: 'x' } });
  const vid = await d.enqueue(db, '+15550208002', { provider: vaName, payload: { message: 'x' } });
  const bid = await d.enqueue(db, '+15550208003', { provider: bkName, payload: { mode: 'BRIEF_START' } });
  await d.waitForStatus(db, [tid, vid, bid], ['dialing', 'failed', 'unknown'], { timeoutMs: 5000 });
  const [t, vc, bc] = await d.calls(db, [tid, vid, bid]);
  for (const [c, sm] of [[t, s], [vc, v]]) {
    assert.equal(c.status, 'dialing');
    assert.equal(c.provider_call_id, null);
    const [a] = await d.attempts(db, c.id);
    assert.ok(a.http_status >= 200 && a.http_status < 300);
    assert.equal(a.error_code, 'unreadable_response');
    assert.equal(count(sm, c.id), 1);
  }
  assert.equal(bc.status, 'failed');
  assert.equal(bc.last_error, `provider ${bkName} answered /call/brief without a script`);
  assert.equal(count(b, bid), 0, '/call/start never sent');
});

/* ------------------------------------------------------------------ nothing listening */

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

test('connection refused (nothing listening): retried, even for twilio, and sent once the provider listens', async () => {
  const port = await freePort();
  const name = `${P}tw_refused`;
  await provider({ name, kind: 'twilio', base_url: `http://127.0.0.1:${port}`, account_sid: 'AC0123456789abcdef0123456789abcdef',
    auth_token: '0123456789abcdef0123456789abcdef', from_number: '+15550100000', max_concurrency: null, calls_per_second: 1000 });
  const id = await d.enqueue(db, '+15550209001', { provider: name, payload: { message: 'x' }, max_attempts: 10 });
  await d.waitFor(async () => (await d.attempts(db, id)).filter((a) => a.error_code === 'connect_failed').length >= 2,
    { timeoutMs: 5000, message: 'two refused attempts', describe: () => d.describeCalls(db, [id]) });
  const s = await sim('twilio', { port });
  const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed', 'unknown'], { timeoutMs: 8000 });
  assert.equal(c.status, 'dialing');
  const att = await d.attempts(db, id);
  assert.ok(att.length >= 3);
  for (const a of att.slice(0, -1)) {
    assert.equal(a.error_code, 'connect_failed');
    assert.equal(a.http_status, null);
  }
  assert.equal(att.at(-1).http_status, 201);
  assert.equal(count(s, id), 1);
});

// A TCP listener that never accepts (a child node process whose event loop is blocked): once its
// backlog is full, the kernel drops new SYNs, so a connect times out with nothing sent.
async function blackholePort() {
  const child = spawn(process.execPath, ['-e', `
    const srv = require('node:net').createServer();
    srv.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(String(srv.address().port) + '\\n');
      setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000), 50);
    });`], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${child.pid}\n`);
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (b) => resolve(Number(String(b).trim())));
    child.once('exit', () => reject(new Error('blackhole listener exited')));
  });
  await d.sleep(200);
  // fill the accept queue
  for (let i = 0; i < 4; i++) net.connect(port, '127.0.0.1').on('error', () => {}).unref();
  await d.sleep(300);
  return { port, child };
}

test('twilio, connect timeout (the TCP connection never opens, nothing is sent): retried, not unknown', async () => {
  const { port } = await blackholePort();
  await settings.set({ 'dialer.connect_timeout': '300ms' });
  try {
    const name = `${P}tw_connect_timeout`;
    await provider({ name, kind: 'twilio', base_url: `http://127.0.0.1:${port}`, account_sid: 'AC0123456789abcdef0123456789abcdef',
      auth_token: 'x', from_number: '+15550100000', max_concurrency: null, calls_per_second: 1000 });
    const id = await d.enqueue(db, '+15550209101', { provider: name, payload: { message: 'x' }, max_attempts: 2 });
    const [c] = await d.waitForStatus(db, [id], ['failed', 'unknown', 'dialing'], { timeoutMs: 6000 });
    const att = await d.attempts(db, id);
    assert.ok(att.every((a) => a.http_status === null));
    assert.notEqual(c.status, 'unknown',
      `a Twilio call whose connection never opened became unknown (never retried): attempt ${att[0].error_code} "${att[0].error_message}"`);
    assert.equal(c.status, 'failed');
    assert.equal(att.length, 2, 'retried until max_attempts');
  } finally {
    await settings.set({ 'dialer.connect_timeout': null });
  }
});

function selfSignedServer() {
  let openssl;
  try { openssl = execFileSync('sh', ['-c', 'command -v openssl'], { encoding: 'utf8' }).trim(); } catch { return null; }
  if (!openssl) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer-tls-'));
  try {
    execFileSync(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    return { key: fs.readFileSync(path.join(dir, 'key.pem')), cert: fs.readFileSync(path.join(dir, 'cert.pem')) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('TLS verification is always on: a provider with a self-signed certificate is never sent the call', async (t) => {
  const creds = selfSignedServer();
  if (!creds) { t.skip('openssl is not installed'); return; }
  let requests = 0;
  const srv = https.createServer(creds, (req, res) => { requests++; res.writeHead(201, { 'Content-Type': 'application/json' }); res.end('{"sid":"CA00000000000000000000000000000000"}'); });
  servers.push(srv);
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const name = `${P}tw_tls`;
  await provider({ name, kind: 'twilio', base_url: `https://127.0.0.1:${srv.address().port}`, account_sid: 'AC0123456789abcdef0123456789abcdef',
    auth_token: 'x', from_number: '+15550100000', max_concurrency: null, calls_per_second: 1000 });
  const id = await d.enqueue(db, '+15550209201', { provider: name, payload: { message: 'x' }, max_attempts: 2 });
  const [c] = await d.waitForStatus(db, [id], ['failed', 'unknown', 'dialing'], { timeoutMs: 6000 });
  assert.equal(c.status, 'failed');
  const att = await d.attempts(db, id);
  assert.deepEqual(att.map((a) => a.error_code), ['connect_failed', 'connect_failed'], 'the handshake failed: nothing was sent, so it was retried');
  assert.match(att[0].error_message, /certificate/i);
  assert.equal(requests, 0, 'no HTTP request reached the server');
});

/* ------------------------------------------------------------------ no starvation */

for (const mode of ['hang', 'status500']) {
  test(`a provider that keeps failing (${mode}) does not starve a healthy one`, async () => {
    await settings.set({ 'dialer.max_concurrency': 8 });
    try {
      // names sort the failing provider first: it is offered the slots first in every round
      const { s: bad, name: badName } = await setup(mode === 'hang' ? 'backend' : 'twilio', `a_sick_${mode}`);
      bad.control.addFault({ mode });
      const { s: good, name: goodName } = await setup('twilio', `b_healthy_${mode}`);
      const sick = [];
      const healthy = [];
      await db.query('BEGIN');
      for (let i = 0; i < 40; i++) {
        sick.push(await d.enqueue(db, `+1555021${String(i).padStart(4, '0')}`, { provider: badName,
          payload: payloadFor(mode === 'hang' ? 'backend' : 'twilio'), max_attempts: 20 }));
      }
      for (let i = 0; i < 20; i++) healthy.push(await d.enqueue(db, `+1555022${String(i).padStart(4, '0')}`, { provider: goodName, payload: { message: 'ok' } }));
      const t0 = Date.now();
      await db.query('COMMIT');
      await d.waitForStatus(db, healthy, ['dialing'], { timeoutMs: 3000 });
      const took = Date.now() - t0;
      assert.ok(took < 2000, `the healthy provider's 20 calls took ${took} ms`);
      assert.equal(good.control.stats().distinct_call_ids, 20);
      const st = bad.control.stats();
      assert.ok(st.total > 0, 'the failing provider was tried meanwhile');
      if (mode === 'hang') assert.ok(st.hung > 0, 'and its requests were still hanging');
    } finally {
      await settings.set({ 'dialer.max_concurrency': null });
    }
  });
}
