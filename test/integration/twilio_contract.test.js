'use strict';
// Every kind of Twilio request the dispatcher sends must conform to Twilio's own API description
// (test/contracts/twilio_api_v2010.json): Stoplight Prism in mock mode (test/sim/prism.js,
// the spec's test copy) is the provider's base_url, and each variant must get a 2xx.  A 4xx
// (422: the request violates the spec) ends the call failed with http_4xx on the attempt; the
// test then prints Prism's validation errors, by replaying the same request (captured by a twin
// provider pointing at the Twilio simulator) to Prism.
//
// Each variant also runs through the twin on the simulator, to show that the variant really
// carries what it claims (Twiml or Url, API key, StatusCallback and its four events, Timeout,
// MachineDetection and its asynchronous callback and tuning, SendDigits).
//
// Run by test/run_all.sh; by hand:
//   PGHOST=127.0.0.1 PGPORT=55472 PGUSER=postgres DIALER_DB=dialer_test \
//     node --test test/integration/twilio_contract.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');
const { startPrism } = require('../sim/prism');
const { request, formEncode } = require('../sim/http-util');

const P = 'it_prism_';
const KEY = { sid: 'SK' + '0123456789abcdef'.repeat(2), secret: 'api-key-secret-for-prism' };
const providers = new Set();
let db;
let settings;
let prism;
let sim;

// What the dispatcher can vary in a Twilio request: how it authenticates, what the call says
// (Twiml from payload.message, Url from payload.url, the provider's twiml_url), the status
// callback with its events, Timeout, MachineDetection (the provider's or the call's, synchronous
// or asynchronous with its callback, with the tuning settings), SendDigits and the caller id.
const AMD_TUNING = { machine_detection_timeout: 59, machine_detection_speech_threshold: 6000,
  machine_detection_speech_end_threshold: 500, machine_detection_silence_timeout: 2000 };
const VARIANTS = [
  { name: 'twiml_token_full', desc: 'Twiml, auth token, StatusCallback + 4 events, Timeout, MachineDetection=Enable',
    provider: { status_callback_url: 'https://hooks.example.com/rpc/twilio_status', ring_timeout: 30, machine_detection: 'Enable' },
    payload: { message: 'Your appointment is tomorrow at 9:00 <b>&</b> "bring" your card' },
    expect: { Twiml: true, StatusCallback: true, Timeout: '30', MachineDetection: 'Enable' } },
  { name: 'url_apikey_full', desc: 'Url (payload.url), API key, StatusCallback with a query, Timeout, MachineDetection=DetectMessageEnd',
    provider: { auth_token: null, api_key_sid: KEY.sid, api_key_secret: KEY.secret,
      status_callback_url: 'https://hooks.example.com/rpc/twilio_status?tenant=7', ring_timeout: 600, machine_detection: 'DetectMessageEnd' },
    payload: { url: 'https://app.example.com/twiml/reminder?id=7&lang=en' },
    expect: { Url: 'https://app.example.com/twiml/reminder?id=7&lang=en', StatusCallback: true, Timeout: '600', MachineDetection: 'DetectMessageEnd', apiKey: true } },
  { name: 'default_url_bare', desc: 'the provider\'s twiml_url, auth token, no StatusCallback, no Timeout, no MachineDetection',
    provider: { twiml_url: 'https://app.example.com/twiml/default' },
    payload: {},
    expect: { Url: 'https://app.example.com/twiml/default' } },
  { name: 'twiml_apikey_bare', desc: 'Twiml near the 4,000-character limit, API key, no StatusCallback, caller id from the payload',
    provider: { auth_token: null, api_key_sid: KEY.sid, api_key_secret: KEY.secret },
    payload: { message: 'Hello. '.repeat(560), from: '+15550409999' },
    expect: { Twiml: true, apiKey: true, From: '+15550409999' } },
  { name: 'twiml_token_callback_only', desc: 'Twiml, auth token, StatusCallback + 4 events, minimum Timeout',
    provider: { status_callback_url: 'https://hooks.example.com/cb', ring_timeout: 5 },
    payload: { message: 'Short.' },
    expect: { Twiml: true, StatusCallback: true, Timeout: '5' } },
  { name: 'amd_async_payload', desc: 'the call\'s DetectMessageEnd, asynchronous (AsyncAmd, AsyncAmdStatusCallback), every tuning setting',
    provider: { status_callback_url: 'https://hooks.example.com/twilio/status-callback' },
    payload: { message: 'Hello.', machine_detection: 'DetectMessageEnd', async_amd: true, ...AMD_TUNING },
    expect: { Twiml: true, StatusCallback: true, MachineDetection: 'DetectMessageEnd', AsyncAmd: 'true',
      MachineDetectionTimeout: '59', MachineDetectionSpeechThreshold: '6000', MachineDetectionSpeechEndThreshold: '500',
      MachineDetectionSilenceTimeout: '2000' } },
  { name: 'amd_async_provider', desc: 'the provider\'s Enable, asynchronous by the provider, the call\'s timeout',
    provider: { status_callback_url: 'https://hooks.example.com/cb?tenant=3', machine_detection: 'Enable', async_amd: true },
    payload: { message: 'Hello.', machine_detection_timeout: 3 },
    expect: { Twiml: true, StatusCallback: true, MachineDetection: 'Enable', AsyncAmd: 'true', MachineDetectionTimeout: '3' } },
  { name: 'amd_off_digits', desc: 'the provider\'s detection turned off by the call, which sends SendDigits',
    provider: { status_callback_url: 'https://hooks.example.com/cb', machine_detection: 'Enable' },
    payload: { message: 'Hello.', machine_detection: 'none', send_digits: 'wW1234#*' },
    expect: { Twiml: true, StatusCallback: true, SendDigits: 'wW1234#*' } },
];

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  [prism, sim] = await Promise.all([startPrism({ port: 0 }), d.startSim('twilio', { apiKeys: [KEY] })]);
  await d.workerPid(db);
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  if (prism) await prism.close();
  if (sim) await sim.close();
});

// Sends the request the dispatcher made to the twin (as the simulator recorded it) to Prism, and
// returns Prism's answer: the validation errors of a request Twilio's spec refuses.
async function replayToPrism(id) {
  const [r] = sim.control.requests(10, { call_id: String(id) });
  if (!r) return '(the twin request was not captured)';
  const acc = sim.control.config().accountSid;
  const res = await request(`${prism.url}/2010-04-01/Accounts/${acc}/Calls.json`, { method: 'POST',
    headers: { Authorization: r.headers.authorization, 'Content-Type': r.headers['content-type'] },
    body: formEncode(r.body) });
  return `HTTP ${res.status} ${res.text.slice(0, 3000)}`;
}

test('Prism (Twilio\'s OpenAPI description) accepts every variant of the Calls create request the dispatcher sends', { timeout: 60000 }, async () => {
  const acc = sim.control.config().accountSid;
  const ids = [];
  for (const [i, v] of VARIANTS.entries()) {
    const common = { from_number: '+15550400000', account_sid: acc, auth_token: '0123456789abcdef0123456789abcdef',
      max_concurrency: null, calls_per_second: 1000, ...v.provider };
    for (const [suffix, base] of [['', prism.url], ['_twin', sim.url]]) {
      const name = `${P}${v.name}${suffix}`;
      providers.add(name);
      await d.createProvider(db, { name, kind: 'twilio', base_url: base, ...common });
    }
    const to = `+1555040100${i}`;
    v.id = await d.enqueue(db, to, { provider: `${P}${v.name}`, payload: v.payload });
    v.twin = await d.enqueue(db, to, { provider: `${P}${v.name}_twin`, payload: v.payload });
    ids.push(v.id, v.twin);
  }
  await d.waitForStatus(db, ids, ['dialing', 'failed', 'unknown'], { timeoutMs: 15000 });

  const problems = [];
  for (const v of VARIANTS) {
    const [c] = await d.calls(db, [v.id]);
    const [a] = await d.attempts(db, v.id);
    if (c.status !== 'dialing' || !(a.http_status >= 200 && a.http_status < 300)) {
      problems.push(`${v.name} (${v.desc}): ${c.status}, attempt HTTP ${a && a.http_status} ${a && a.error_code} ${c.last_error}\n`
        + `  Prism says: ${await replayToPrism(v.twin)}`);
      continue;
    }
    assert.match(c.provider_call_id, /^CA[0-9a-f]{32}$/i, 'the sid of Prism\'s example call is stored');

    // what the variant carried, as the twin's simulator saw it
    const [t] = await d.calls(db, [v.twin]);
    assert.equal(t.status, 'dialing', `${v.name}: twin ${t.last_error}`);
    const [r] = sim.control.requests(10, { call_id: String(v.twin) });
    const b = r.body;
    const e = v.expect;
    assert.equal(b.To, c.to_number);
    assert.equal(b.From, e.From || '+15550400000');
    assert.equal(Boolean(b.Twiml), Boolean(e.Twiml), `${v.name}: Twiml`);
    assert.equal(b.Url, e.Url, `${v.name}: Url`);
    assert.equal(Boolean(b.StatusCallback), Boolean(e.StatusCallback), `${v.name}: StatusCallback`);
    if (e.StatusCallback) {
      assert.deepEqual(b.StatusCallbackEvent, ['initiated', 'ringing', 'answered', 'completed']);
      assert.match(b.StatusCallback, new RegExp(`[?&]call_id=${v.twin}$`));
    }
    assert.equal(b.Timeout, e.Timeout, `${v.name}: Timeout`);
    assert.equal(b.MachineDetection, e.MachineDetection, `${v.name}: MachineDetection`);
    for (const f of ['MachineDetectionTimeout', 'MachineDetectionSpeechThreshold', 'MachineDetectionSpeechEndThreshold',
      'MachineDetectionSilenceTimeout', 'AsyncAmd', 'SendDigits']) {
      assert.equal(b[f], e[f], `${v.name}: ${f}`);
    }
    if (e.AsyncAmd) {
      // the verdict comes back to the call's status callback URL, signed and checked as the status callbacks are
      assert.equal(b.AsyncAmdStatusCallback, b.StatusCallback, `${v.name}: AsyncAmdStatusCallback`);
      assert.equal(b.AsyncAmdStatusCallbackMethod, 'POST');
    } else {
      assert.equal(b.AsyncAmdStatusCallback, undefined, `${v.name}: no AsyncAmdStatusCallback`);
    }
    const user = Buffer.from(r.headers.authorization.replace(/^Basic /, ''), 'base64').toString().split(':')[0];
    assert.equal(user, e.apiKey ? KEY.sid : acc, `${v.name}: Basic user`);
  }
  assert.deepEqual(problems, [], `requests Twilio's API description refuses:\n${problems.join('\n')}\n--- prism log tail ---\n${prism.logs().slice(-3000)}`);
});

test('the contract check can fail: a request Twilio\'s spec refuses (an AccountSid not matching its pattern) ends failed with Prism\'s 4xx', { timeout: 30000 }, async () => {
  // the provider table keeps the body fields valid (E.164, MachineDetection enum, Timeout range),
  // so the negative control breaks the path parameter instead
  const name = `${P}negative`;
  providers.add(name);
  await d.createProvider(db, { name, kind: 'twilio', base_url: prism.url, account_sid: 'AC-not-a-valid-sid',
    auth_token: 'x', from_number: '+15550400000', max_concurrency: null, calls_per_second: 1000 });
  const id = await d.enqueue(db, '+15550401099', { provider: name, payload: { message: 'x' } });
  const [c] = await d.waitForStatus(db, [id], ['dialing', 'failed', 'unknown'], { timeoutMs: 10000 });
  const [a] = await d.attempts(db, id);
  assert.equal(c.status, 'failed', `Prism accepted a request with an invalid AccountSid (HTTP ${a.http_status})`);
  assert.ok(a.http_status >= 400 && a.http_status < 500, `HTTP ${a.http_status}`);
  assert.equal(a.error_code, `http_${a.http_status}`);
});

// Prism's verdict on a request: the validation errors it locates in the request (its answer is a
// 500 when only its own example response breaks the spec: the list example's relative
// first_page_uri/uri are not format "uri", which Twilio's real answers are not either).
async function prismRequestErrors(url, headers) {
  const r = await request(url, { headers });
  let v = [];
  try { v = JSON.parse(r.text).validation || []; } catch { v = []; }
  return { status: r.status, errors: v.filter((e) => e.location && e.location[0] !== 'response'), text: r.text };
}

test('Prism accepts the Calls list search the dispatcher sends for an unknown call without a sid (To, From, StartTime>, PageSize)', { timeout: 30000 }, async () => {
  const acc = sim.control.config().accountSid;
  const ids = {};
  for (const [suffix, base] of [['', prism.url], ['_twin', sim.url]]) {
    const name = `${P}search${suffix}`;
    providers.add(name);
    await d.createProvider(db, { name, kind: 'twilio', base_url: base, account_sid: acc,
      auth_token: '0123456789abcdef0123456789abcdef', from_number: '+15550400000', max_concurrency: null, calls_per_second: 1000 });
    ids[suffix || 'prism'] = await d.enqueue(db, '+15550401200', { provider: name, payload: { message: 'x' } });
  }
  const all = Object.values(ids);
  await d.waitForStatus(db, all, ['dialing'], { timeoutMs: 10000 });
  // the answers were lost (set up as the owner): unknown, no sid, long ago, so a search is due
  await db.query(`UPDATE dialer.scheduled_calls SET status = 'unknown', provider_call_id = NULL, provider_status = NULL,
                         updated_at = now() - interval '1 hour' WHERE id = ANY($1)`, [all]);
  await db.query(`UPDATE dialer.call_attempts SET provider_call_id = NULL, provider_status = NULL, http_status = NULL
                   WHERE call_id = ANY($1)`, [all]);
  await db.query('SELECT dialer.wake_worker()');
  const searched = async (id) => (await d.events(db, id)).find((e) => e.event === 'reconcile_search' || e.event === 'reconciled');
  await d.waitFor(async () => (await searched(ids.prism)) && (await searched(ids._twin)),
    { timeoutMs: 10000, intervalMs: 100, message: 'both calls searched for' });

  // the search as the dispatcher sent it (captured by the twin's simulator), replayed to Prism
  const [g] = sim.control.requests(1000).filter((r) => r.method === 'GET' && r.path.startsWith(`/2010-04-01/Accounts/${acc}/Calls.json?`));
  assert.ok(g, 'the twin received the search');
  const q = new URL(g.path, 'http://x').searchParams;
  assert.deepEqual([...q.keys()], ['To', 'From', 'StartTime>', 'PageSize']);
  assert.equal(q.get('To'), '+15550401200');
  const verdict = await prismRequestErrors(prism.url + g.path, { Authorization: g.headers.authorization });
  assert.notEqual(verdict.status, 422, `Prism refused the search: ${verdict.text.slice(0, 2000)}`);
  assert.deepEqual(verdict.errors, [], 'no validation error in the request');
  // and sent by the dispatcher itself, Prism did not refuse the request (422) either
  const ev = await searched(ids.prism);
  assert.notEqual(ev.detail.http_status, 422, `Prism refused the dispatcher's search: ${JSON.stringify(ev.detail)}`);
  assert.ok(ev.detail.http_status, `Prism answered: ${JSON.stringify(ev.detail)}`);

  // the check can fail: a PageSize over Twilio's 1000 is located in the request and refused
  const bad = await prismRequestErrors(prism.url + g.path.replace('PageSize=50', 'PageSize=5000'), { Authorization: g.headers.authorization });
  assert.equal(bad.status, 422, bad.text.slice(0, 500));
  assert.deepEqual(bad.errors.map((e) => e.location.join('.')), ['query.pagesize']);
});
