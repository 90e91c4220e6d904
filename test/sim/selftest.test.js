'use strict';
// Self-test of the provider simulators: every endpoint and every fault mode, over real
// HTTP on 127.0.0.1. Run: node --test test/sim/

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { spawn } = require('node:child_process');
const twilio = require('twilio');
const { startSimulator, DEFAULTS } = require('./server');
const { request, basic, formEncode } = require('./http-util');

const ACC = DEFAULTS.accountSid;
const TOKEN = DEFAULTS.authToken;
const AUTH = basic(ACC, TOKEN);
const CALLS = `/2010-04-01/Accounts/${ACC}/Calls.json`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function callForm(over = {}) {
  return {
    To: '+15551230000', From: '+15557654321', Url: 'https://app.example.com/twiml/42',
    StatusCallback: 'https://hooks.example.com/rpc/twilio_status?call_id=42',
    StatusCallbackMethod: 'POST',
    StatusCallbackEvent: ['initiated', 'ringing', 'answered', 'completed'],
    Timeout: 30, MachineDetection: 'Enable', ...over,
  };
}

async function ctl(sim, method, p, body) {
  const r = await request(sim.url + '/__sim/' + p, { method, json: body });
  assert.equal(r.status, 200, `control ${method} ${p}: ${r.text}`);
  return r.json;
}

async function waitFor(pred, ms = 3000, what = 'condition') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/* ------------------------------------------------------------------ twilio */

test('twilio simulator', async (t) => {
  const sim = await startSimulator({ kind: 'twilio', port: 0,
    apiKeys: [{ sid: 'SK0123456789abcdef0123456789abcdef', secret: 'key-secret' }] });
  t.after(() => sim.close());
  const post = (form, auth = AUTH, acc = ACC, headers = {}) => request(
    `${sim.url}/2010-04-01/Accounts/${acc}/Calls.json`,
    { method: 'POST', form, headers: auth ? { Authorization: auth, ...headers } : headers });

  await t.test('create a call: 201 with a Twilio call resource', async () => {
    const r = await post(callForm());
    assert.equal(r.status, 201, r.text);
    assert.match(r.json.sid, /^CA[0-9a-f]{32}$/);
    assert.equal(r.json.status, 'queued');
    assert.equal(r.json.to, '+15551230000');
    assert.equal(r.json.from, '+15557654321');
    assert.equal(r.json.account_sid, ACC);
    assert.equal(r.json.direction, 'outbound-api');
    assert.equal(r.json.uri, `/2010-04-01/Accounts/${ACC}/Calls/${r.json.sid}.json`);
    assert.match(r.json.date_created, /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);
    // the request was recorded with its repeated StatusCallbackEvent and the dialer call id
    const [last] = (await ctl(sim, 'GET', 'requests?limit=1')).requests;
    assert.equal(last.call_id, '42');
    assert.deepEqual(last.body.StatusCallbackEvent, ['initiated', 'ringing', 'answered', 'completed']);
    assert.equal(last.headers.authorization, AUTH);
    assert.match(last.t_hr, /^\d+$/);
    assert.ok(Math.abs(last.t_ms - Date.now()) < 5000);
    assert.equal(last.status, 201);
    assert.deepEqual((await ctl(sim, 'GET', 'counts')).counts, { 42: 1 });
  });

  await t.test('two sids differ and GET returns the stored call', async () => {
    const a = await post(callForm({ StatusCallback: 'https://h.example.com/cb?x=1&call_id=a1' }));
    const b = await post(callForm({ StatusCallback: 'https://h.example.com/cb?call_id=b1' }));
    assert.notEqual(a.json.sid, b.json.sid);
    const g = await request(`${sim.url}/2010-04-01/Accounts/${ACC}/Calls/${a.json.sid}.json`,
      { headers: { Authorization: AUTH } });
    assert.equal(g.status, 200);
    assert.equal(g.json.sid, a.json.sid);
    assert.equal(g.json.status, 'queued');
    const missing = await request(`${sim.url}/2010-04-01/Accounts/${ACC}/Calls/CA${'0'.repeat(32)}.json`,
      { headers: { Authorization: AUTH } });
    assert.equal(missing.status, 404);
    assert.equal(missing.json.code, 20404);
    const counts = (await ctl(sim, 'GET', 'counts')).counts;
    assert.equal(counts.a1, 1);
    assert.equal(counts.b1, 1);
  });

  await t.test('list calls filtered by To', async () => {
    await post(callForm({ To: '+15559990000' }));
    const l = await request(`${sim.url}${CALLS}?To=${encodeURIComponent('+15559990000')}`, { headers: { Authorization: AUTH } });
    assert.equal(l.status, 200);
    assert.equal(l.json.calls.length, 1);
    assert.equal(l.json.calls[0].to, '+15559990000');
  });

  await t.test('cancel a queued call through POST Calls/{sid}.json', async () => {
    const a = await post(callForm({ To: '+15559990001' }));
    const u = await request(`${sim.url}/2010-04-01/Accounts/${ACC}/Calls/${a.json.sid}.json`,
      { method: 'POST', form: { Status: 'canceled' }, headers: { Authorization: AUTH } });
    assert.equal(u.status, 200);
    assert.equal(u.json.status, 'canceled');
  });

  await t.test('API key auth (SK sid + secret) is accepted', async () => {
    const r = await post(callForm(), basic('SK0123456789abcdef0123456789abcdef', 'key-secret'));
    assert.equal(r.status, 201, r.text);
  });

  await t.test('Basic auth failures: 401 with Twilio error 20003', async () => {
    for (const auth of [basic(ACC, 'wrong-token'), null, 'Bearer xyz',
      basic('SK0123456789abcdef0123456789abcdef', 'nope')]) {
      const r = await post(callForm(), auth);
      assert.equal(r.status, 401, `auth ${auth}`);
      assert.equal(r.json.code, 20003);
      assert.equal(r.json.status, 401);
      assert.equal(r.json.more_info, 'https://www.twilio.com/docs/errors/20003');
      assert.match(r.headers['www-authenticate'], /^Basic/);
    }
    // right credentials, another account's URL
    const other = await post(callForm(), AUTH, 'AC' + 'f'.repeat(32));
    assert.equal(other.status, 401);
  });

  await t.test('validation errors carry Twilio codes', async () => {
    const cases = [
      [{ To: '555-1234' }, 21211, /Invalid 'To' Phone Number/],
      [{ To: '+0123' }, 21211, /Invalid 'To'/],
      [{ To: undefined }, 21201, /'To'/],
      [{ From: undefined }, 21213, /'From'/],
      [{ From: 'nobody' }, 21212, /'From'/],
      [{ Url: undefined }, 21205, /Url/],
      [{ Url: 'not a url' }, 21205, /Url/],
      [{ StatusCallbackEvent: ['initiated', 'bogus'] }, 21200, /StatusCallbackEvent/],
      [{ Timeout: 'soon' }, 21200, /Timeout/],
      [{ StatusCallbackMethod: 'PUT' }, 21200, /StatusCallbackMethod/],
      [{ Url: undefined, Twiml: `<Response><Say>${'a'.repeat(4000)}</Say></Response>` }, 21200, /4000/],
    ];
    for (const [over, code, msg] of cases) {
      const r = await post(callForm(over));
      assert.equal(r.status, 400, `${JSON.stringify(over).slice(0, 60)} -> ${r.status} ${r.text}`);
      assert.equal(r.json.code, code, JSON.stringify(over).slice(0, 60));
      assert.match(r.json.message, msg);
      assert.equal(r.json.status, 400);
      assert.equal(r.json.more_info, `https://www.twilio.com/docs/errors/${code}`);
    }
    const tw = await post(callForm({ Url: undefined, Twiml: '<Response><Say>Hi &amp; bye</Say></Response>' }));
    assert.equal(tw.status, 201, tw.text);
  });

  await t.test('call id from X-Dialer-Call-Id when the callback URL has none; repeats are listed', async () => {
    await ctl(sim, 'POST', 'reset');
    const f = callForm({ StatusCallback: 'https://hooks.example.com/cb' });
    assert.equal((await post(f, AUTH, ACC, { 'X-Dialer-Call-Id': 'h-7' })).status, 201);
    assert.equal((await post(f, AUTH, ACC, { 'X-Dialer-Call-Id': 'h-7' })).status, 201);
    assert.equal((await post(f, AUTH, ACC, { 'X-Dialer-Call-Id': 'h-8' })).status, 201);
    assert.equal((await post(callForm({ StatusCallback: undefined }))).status, 201);
    const s = await ctl(sim, 'GET', 'stats');
    assert.equal(s.total, 4);
    assert.equal(s.distinct_call_ids, 2);
    assert.deepEqual(s.duplicate_call_ids, ['h-7']);
    assert.equal(s.placing_without_call_id, 1);
    assert.equal(s.by_route[`POST /2010-04-01/Accounts/{AccountSid}/Calls.json`], 4);
    assert.equal(s.by_status['201'], 4);
    assert.deepEqual((await ctl(sim, 'GET', 'counts')).counts, { 'h-7': 2, 'h-8': 1 });
    const arr = (await ctl(sim, 'GET', 'arrivals')).arrivals;
    assert.ok(Math.abs(arr['h-7'] / 1000 - Date.now()) < 5000);
  });

  await t.test('unknown path: 404 Twilio JSON, counted as unmatched', async () => {
    const r = await request(`${sim.url}/2010-04-01/Accounts/${ACC}/Messages.json`, { method: 'POST', form: { To: '+15551234567' } });
    assert.equal(r.status, 404);
    assert.equal(r.json.code, 20404);
  });

  await t.test('keep-alive: many requests over one connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let reused = 0;
      for (let i = 0; i < 20; i++) {
        const r = await request(sim.url + CALLS, { method: 'POST', form: callForm(), headers: { Authorization: AUTH }, agent });
        assert.equal(r.status, 201);
        if (r.reusedSocket) reused++;
      }
      assert.equal(reused, 19);
    } finally { agent.destroy(); }
  });
});

/* ------------------------------------------------------------------ twilio callbacks */

async function startReceiver(authToken, publicBase) {
  // A stand-in for PostgREST: checks every callback with twilio.validateRequest.
  const got = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const params = {};
      for (const [k, v] of new URLSearchParams(raw)) params[k] = v;
      const localUrl = `http://127.0.0.1:${server.address().port}${req.url}`;
      const signedUrl = publicBase ? publicBase + req.url : localUrl;
      const sig = req.headers['x-twilio-signature'];
      got.push({
        url: req.url, params, sig, headers: req.headers,
        valid: twilio.validateRequest(authToken, sig, signedUrl, params),
        validLocal: twilio.validateRequest(authToken, sig, localUrl, params),
        validWrongToken: twilio.validateRequest('f'.repeat(32), sig, signedUrl, params),
      });
      res.writeHead(204); res.end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { got, port: server.address().port, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

test('twilio status callbacks, signed with the twilio library', async (t) => {
  const rcv = await startReceiver(TOKEN);
  const sim = await startSimulator({ kind: 'twilio', port: 0, callbacks: true,
    callbackDelays: { initiated: 5, ringing: 10, answered: 10, completed: 20 }, callDuration: 12 });
  t.after(async () => { await sim.close(); await rcv.close(); });
  const cbUrl = (id) => `http://127.0.0.1:${rcv.port}/rpc/twilio_status?call_id=${id}`;
  const place = async (to, id, events = ['initiated', 'ringing', 'answered', 'completed'], extra = {}) => {
    const r = await request(sim.url + CALLS, { method: 'POST', headers: { Authorization: AUTH },
      form: callForm({ To: to, StatusCallback: cbUrl(id), StatusCallbackEvent: events, ...extra }) });
    assert.equal(r.status, 201, r.text);
    return r.json.sid;
  };
  const forCall = (id) => rcv.got.filter((g) => g.url.endsWith(`call_id=${id}`));

  await t.test('answered call: initiated, ringing, in-progress, completed, all validly signed', async () => {
    const sid = await place('+15551230000', 'c1');
    await waitFor(() => forCall('c1').length === 4, 3000, '4 callbacks');
    const cbs = forCall('c1');
    assert.deepEqual(cbs.map((c) => c.params.CallStatus), ['initiated', 'ringing', 'in-progress', 'completed']);
    assert.deepEqual(cbs.map((c) => c.params.SequenceNumber), ['0', '1', '2', '3']);
    for (const c of cbs) {
      assert.equal(c.valid, true, 'signature must validate with twilio.validateRequest');
      assert.equal(c.validWrongToken, false, 'a wrong token must not validate');
      assert.equal(c.params.CallSid, sid);
      assert.equal(c.params.AccountSid, ACC);
      assert.equal(c.params.To, '+15551230000');
      assert.equal(c.params.From, '+15557654321');
      assert.equal(c.params.Direction, 'outbound-api');
      assert.equal(c.params.ApiVersion, '2010-04-01');
      assert.equal(c.params.CallbackSource, 'call-progress-events');
      assert.match(c.params.Timestamp, /\+0000$/);
      assert.match(c.headers['content-type'], /^application\/x-www-form-urlencoded/);
    }
    assert.equal(cbs[3].params.CallDuration, '12');
    assert.equal(cbs[2].params.AnsweredBy, 'human'); // MachineDetection=Enable was requested
    assert.equal(cbs[0].params.CallDuration, undefined);
    // the resource reflects the final state (reconciliation)
    const g = await request(`${sim.url}/2010-04-01/Accounts/${ACC}/Calls/${sid}.json`, { headers: { Authorization: AUTH } });
    assert.equal(g.json.status, 'completed');
    assert.equal(g.json.duration, '12');
  });

  await t.test('outcome by last digit: 1 -> no-answer, 2 -> busy; only requested events are sent', async () => {
    await place('+15551230001', 'c2');
    await place('+15551230002', 'c3');
    await place('+15551230003', 'c4', ['completed']);
    await waitFor(() => forCall('c2').length === 3 && forCall('c3').length === 2 && forCall('c4').length === 1,
      3000, 'callbacks for c2..c4');
    assert.deepEqual(forCall('c2').map((c) => c.params.CallStatus), ['initiated', 'ringing', 'no-answer']);
    assert.deepEqual(forCall('c3').map((c) => c.params.CallStatus), ['initiated', 'busy']);
    assert.deepEqual(forCall('c4').map((c) => [c.params.CallStatus, c.params.SequenceNumber]), [['completed', '0']]);
    for (const c of [...forCall('c2'), ...forCall('c3'), ...forCall('c4')]) assert.equal(c.valid, true);
  });

  await t.test('outcomes are configurable through the control API', async () => {
    await ctl(sim, 'POST', 'config', { outcomes: { 77: 'failed' } });
    await place('+15551230077', 'c5');
    await place('+15551230001', 'c6'); // no longer no-answer
    await waitFor(() => forCall('c5').length === 1 && forCall('c6').length === 4, 3000, 'c5, c6');
    assert.equal(forCall('c5')[0].params.CallStatus, 'failed');
    assert.equal(forCall('c6')[3].params.CallStatus, 'completed');
  });

  await t.test('callbackTarget: signed over the public URL, delivered locally', async () => {
    const rcv2 = await startReceiver(TOKEN, 'https://hooks.example.com');
    try {
      await ctl(sim, 'POST', 'config', { callbackTarget: `http://127.0.0.1:${rcv2.port}` });
      const r = await request(sim.url + CALLS, { method: 'POST', headers: { Authorization: AUTH },
        form: callForm({ StatusCallback: 'https://hooks.example.com/rpc/twilio_status?call_id=p1', StatusCallbackEvent: 'completed' }) });
      assert.equal(r.status, 201);
      await waitFor(() => rcv2.got.length === 1, 3000, 'callback at target');
      assert.equal(rcv2.got[0].url, '/rpc/twilio_status?call_id=p1');
      assert.equal(rcv2.got[0].valid, true);
      assert.equal(rcv2.got[0].validLocal, false);
    } finally {
      await ctl(sim, 'POST', 'config', { callbackTarget: null });
      await rcv2.close();
    }
  });

  await t.test('callbackTarget given as the full URL a user pastes: delivered to that path, query from the call', async () => {
    const rcv2 = await startReceiver(TOKEN);
    const publicUrl = 'https://hooks.example.com/twilio/status-callback?call_id=p2';
    try {
      await ctl(sim, 'POST', 'config', { callbackTarget: `http://127.0.0.1:${rcv2.port}/twilio/status-callback` });
      const r = await request(sim.url + CALLS, { method: 'POST', headers: { Authorization: AUTH },
        form: callForm({ StatusCallback: publicUrl, StatusCallbackEvent: 'completed' }) });
      assert.equal(r.status, 201);
      await waitFor(() => rcv2.got.length === 1, 3000, 'callback at the pasted URL');
      // once, not /twilio/status-callback/twilio/status-callback as a path prefix gave
      assert.equal(rcv2.got[0].url, '/twilio/status-callback?call_id=p2');
      assert.equal(twilio.validateRequest(TOKEN, rcv2.got[0].sig, publicUrl, rcv2.got[0].params), true);

      // another path than the public one: the pasted path wins, the signature is still the public URL's
      await ctl(sim, 'POST', 'config', { callbackTarget: `http://127.0.0.1:${rcv2.port}/local/hook` });
      const publicRpc = 'https://hooks.example.com/rpc/twilio_status?call_id=p3';
      await request(sim.url + CALLS, { method: 'POST', headers: { Authorization: AUTH },
        form: callForm({ StatusCallback: publicRpc, StatusCallbackEvent: 'completed' }) });
      await waitFor(() => rcv2.got.length === 2, 3000, 'callback at the other path');
      assert.equal(rcv2.got[1].url, '/local/hook?call_id=p3');
      assert.equal(twilio.validateRequest(TOKEN, rcv2.got[1].sig, publicRpc, rcv2.got[1].params), true);
    } finally {
      await ctl(sim, 'POST', 'config', { callbackTarget: null });
      await rcv2.close();
    }
  });

  await t.test('callbackTarget that cannot be meant is refused with the reason, the old one kept', async () => {
    await ctl(sim, 'POST', 'config', { callbackTarget: 'http://127.0.0.1:1' });
    for (const [bad, why] of [['http://127.0.0.1:8080/twilio/status-callback?call_id=1', /query string/],
      ['127.0.0.1:8080', /not an http\(s\) URL/], ['ftp://127.0.0.1/x', /not an http\(s\) URL/]]) {
      const r = await request(`${sim.url}/__sim/config`, { method: 'POST', json: { callbackTarget: bad } });
      assert.equal(r.status, 400, `${bad}: ${r.text}`);
      assert.match(r.json.error, why);
      assert.match(r.json.error, /http:\/\/127\.0\.0\.1:8080\/twilio\/status-callback/); // says what to give
    }
    assert.equal((await ctl(sim, 'GET', 'config')).callbackTarget, 'http://127.0.0.1:1');
    await ctl(sim, 'POST', 'config', { callbackTarget: null });
    await assert.rejects(startSimulator({ kind: 'twilio', port: 0, callbackTarget: 'http://h/p#x' }), /query string or fragment/);
    // the command line stops at once, exit status 2, with the reason on stderr
    const child = spawn(process.execPath, [path.join(__dirname, 'server.js'), '--kind', 'twilio', '--port', '0',
      '--callback-target', 'http://127.0.0.1:8080/twilio/status-callback?call_id=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => { err += c; });
    const code = await new Promise((r) => child.on('exit', r));
    assert.equal(code, 2);
    assert.match(err, /^server\.js: --callback-target: .*has a query string/);
  });

  await t.test('duplicate and out-of-order delivery can be switched on', async () => {
    await ctl(sim, 'POST', 'config', { callbackRepeat: 2, callbackReverse: true });
    await place('+15551230000', 'c7', ['initiated', 'completed']);
    await waitFor(() => forCall('c7').length === 4, 3000, 'c7');
    assert.deepEqual(forCall('c7').map((c) => c.params.CallStatus), ['completed', 'completed', 'initiated', 'initiated']);
    await ctl(sim, 'POST', 'config', { callbackRepeat: 1, callbackReverse: false });
    const cb = await ctl(sim, 'GET', 'callbacks?limit=1000');
    assert.ok(cb.stats.ok >= 18, JSON.stringify(cb.stats));
    assert.equal(cb.stats.errors, 0);
  });
});

/* ------------------------------------------------------------------ backend */

test('backend simulator', async (t) => {
  const sim = await startSimulator({ kind: 'backend', port: 0, token: 'backend-token' });
  t.after(() => sim.close());
  const H = { Authorization: 'Bearer backend-token' };
  const start = (json, headers = {}) => request(sim.url + '/call/start', { method: 'POST', json, headers: { ...H, ...headers } });

  await t.test('start: 200 {call_id, status:"started"}; headers recorded', async () => {
    const r = await start({ to_number: '+15551112222', script: 'Hello', metadata: { call_id: 'b1' } },
      { 'Idempotency-Key': 'k-1' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'started');
    assert.match(r.json.call_id, /^bk_/);
    const [last] = (await ctl(sim, 'GET', 'requests?limit=1')).requests;
    assert.equal(last.headers['idempotency-key'], 'k-1');
    assert.equal(last.headers.authorization, 'Bearer backend-token');
    assert.equal(last.call_id, 'b1');
    assert.equal(last.body.script, 'Hello');
  });

  await t.test('a repeated Idempotency-Key returns the same call_id and is still counted', async () => {
    await ctl(sim, 'POST', 'reset');
    const body = { to_number: '+15551112222', script: 'Hello', metadata: { call_id: 'b2' } };
    const a = await start(body, { 'Idempotency-Key': 'same' });
    const b = await start(body, { 'Idempotency-Key': 'same' });
    const c = await start(body, { 'Idempotency-Key': 'other' });
    assert.equal(a.json.call_id, b.json.call_id);
    assert.notEqual(a.json.call_id, c.json.call_id);
    const s = await ctl(sim, 'GET', 'stats');
    assert.equal(s.idempotent_replays, 1);
    assert.deepEqual((await ctl(sim, 'GET', 'counts')).counts, { b2: 3 });
    assert.deepEqual(s.duplicate_call_ids, ['b2']);
  });

  await t.test('call id from call_id in the body or X-Dialer-Call-Id', async () => {
    await ctl(sim, 'POST', 'reset');
    await start({ to_number: '+15551112222', script: 's', call_id: 77 });
    await start({ to_number: '+15551112222', script: 's' }, { 'X-Dialer-Call-Id': 'hdr-1' });
    assert.deepEqual((await ctl(sim, 'GET', 'counts')).counts, { 77: 1, 'hdr-1': 1 });
  });

  await t.test('brief returns a script; counted separately from start', async () => {
    const r = await request(sim.url + '/call/brief', { method: 'POST', headers: H,
      json: { to_number: '+15553334444', purpose: 'Your appointment is tomorrow.', metadata: { call_id: 'br1' } } });
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.json.script, 'string');
    assert.match(r.json.script, /\+15553334444/);
    assert.match(r.json.script, /appointment is tomorrow/);
    assert.deepEqual((await ctl(sim, 'GET', 'counts?route=/call/brief')).counts, { br1: 1 });
    assert.equal((await ctl(sim, 'GET', 'counts')).counts.br1, undefined);
  });

  await t.test('errors: bad token 401, bad number 400, no script 400, bad JSON 400', async () => {
    const noAuth = await request(sim.url + '/call/start', { method: 'POST', json: { to_number: '+15551112222', script: 'x' } });
    assert.equal(noAuth.status, 401);
    const badNum = await start({ to_number: '12345', script: 'x' });
    assert.equal(badNum.status, 400);
    assert.equal(badNum.json.error, 'invalid_to_number');
    const noScript = await start({ to_number: '+15551112222' });
    assert.equal(noScript.status, 400);
    const badJson = await request(sim.url + '/call/start', { method: 'POST', headers: { ...H, 'Content-Type': 'application/json' }, body: '{oops' });
    assert.equal(badJson.status, 400);
  });
});

/* ------------------------------------------------------------------ voice_api */

test('voice_api simulator', async (t) => {
  const sim = await startSimulator({ kind: 'voice_api', port: 0, apiKey: 'vk-1' });
  t.after(() => sim.close());
  const post = (json, key = 'vk-1') => request(sim.url + '/calls', { method: 'POST', json,
    headers: key ? { Authorization: `Bearer ${key}` } : {} });

  await t.test('POST /calls: 201 {call_id}; counted by metadata.call_id', async () => {
    const r = await post({ phone_number: '+442071234567', message: 'Hi', metadata: { call_id: 'v1', campaign: 'x' } });
    assert.equal(r.status, 201, r.text);
    assert.match(r.json.call_id, /^vc_/);
    const g = await request(`${sim.url}/calls/${r.json.call_id}`, { headers: { Authorization: 'Bearer vk-1' } });
    assert.equal(g.status, 200);
    assert.equal(g.json.phone_number, '+442071234567');
    assert.deepEqual((await ctl(sim, 'GET', 'counts')).counts, { v1: 1 });
  });

  await t.test('errors: missing/wrong key 401, bad number 400, missing message 400', async () => {
    assert.equal((await post({ phone_number: '+15551112222', message: 'x' }, null)).status, 401);
    assert.equal((await post({ phone_number: '+15551112222', message: 'x' }, 'nope')).status, 401);
    const bad = await post({ phone_number: 'abc', message: 'x' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, 'invalid_phone_number');
    assert.equal((await post({ phone_number: '+15551112222' })).status, 400);
  });

  await t.test('3,000 requests over 20 keep-alive connections are all counted', async () => {
    await ctl(sim, 'POST', 'reset');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    try {
      const t0 = Date.now();
      const all = [];
      for (let i = 0; i < 3000; i++) {
        all.push(request(sim.url + '/calls', { method: 'POST', agent, headers: { Authorization: 'Bearer vk-1' },
          json: { phone_number: '+15551112222', message: 'x', metadata: { call_id: `n${i}` } } }));
      }
      const res = await Promise.all(all);
      assert.ok(res.every((r) => r.status === 201));
      const s = await ctl(sim, 'GET', 'stats');
      assert.equal(s.total, 3000);
      assert.equal(s.distinct_call_ids, 3000);
      assert.equal(s.duplicate_count, 0);
      assert.equal(s.log_size, 1000); // capped ring
      t.diagnostic(`3000 requests in ${Date.now() - t0} ms (node client)`);
    } finally { agent.destroy(); }
  });
});

/* ------------------------------------------------------------------ faults */

test('fault modes', async (t) => {
  const sim = await startSimulator({ kind: 'voice_api', port: 0, apiKey: null });
  const tw = await startSimulator({ kind: 'twilio', port: 0 });
  t.after(async () => { await sim.close(); await tw.close(); });
  const post = (i = 0, phone = '+15551112222') => request(sim.url + '/calls', { method: 'POST',
    json: { phone_number: phone, message: 'x', metadata: { call_id: `f${i}` } } });
  const twPost = (form = callForm()) => request(tw.url + CALLS, { method: 'POST', form, headers: { Authorization: AUTH } });
  t.beforeEach(async () => { await ctl(sim, 'POST', 'reset'); await ctl(tw, 'POST', 'reset'); });

  await t.test('delay 100 ms across 100 concurrent requests does not serialize', async () => {
    await ctl(sim, 'POST', 'faults', { mode: 'delay', ms: 100 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
    try {
      const t0 = process.hrtime.bigint();
      const res = await Promise.all(Array.from({ length: 100 }, (_, i) => request(sim.url + '/calls',
        { method: 'POST', agent, json: { phone_number: '+15551112222', message: 'x', metadata: { call_id: `d${i}` } } })));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.ok(res.every((r) => r.status === 201));
      assert.ok(res.every((r) => r.ms >= 95), `every answer waited ~100 ms (min ${Math.min(...res.map((r) => r.ms))})`);
      assert.ok(ms >= 100 && ms < 1000, `100 concurrent delayed requests took ${ms} ms`);
      t.diagnostic(`100 x delay(100ms) concurrently: ${ms.toFixed(1)} ms`);
    } finally { agent.destroy(); }
    const s = await ctl(sim, 'GET', 'stats');
    assert.equal(s.faults_applied.delay, 100);
  });

  await t.test('default latency applies to every request', async () => {
    await ctl(sim, 'POST', 'faults', { latency: 60 });
    const r = await post();
    assert.equal(r.status, 201);
    assert.ok(r.ms >= 55, `took ${r.ms}`);
    await ctl(sim, 'POST', 'faults', { latency: 0 });
    assert.ok((await post()).ms < 55);
  });

  await t.test('status429 with Retry-After (Twilio error body)', async () => {
    await ctl(tw, 'POST', 'faults', { mode: 'status429', retry_after: 7 });
    const r = await twPost();
    assert.equal(r.status, 429);
    assert.equal(r.headers['retry-after'], '7');
    assert.equal(r.json.code, 20429);
    assert.equal(r.json.status, 429);
  });

  await t.test('status500 and status503 (503 with optional Retry-After)', async () => {
    await ctl(sim, 'POST', 'faults', { rules: [{ mode: 'status500', count: 1 }, { mode: 'status503', retry_after: 2, count: 1 }] });
    const a = await post(1); const b = await post(2); const c = await post(3);
    assert.equal(a.status, 500);
    assert.equal(b.status, 503);
    assert.equal(b.headers['retry-after'], '2');
    assert.equal(c.status, 201, 'faults limited by count are used up');
    assert.deepEqual((await ctl(sim, 'GET', 'faults')).faults, []);
  });

  await t.test('for the next N requests only', async () => {
    await ctl(sim, 'POST', 'faults', { mode: 'status500', count: 3 });
    const got = [];
    for (let i = 0; i < 5; i++) got.push((await post(i)).status);
    assert.deepEqual(got, [500, 500, 500, 201, 201]);
    // every one of them was counted, faulted or not
    assert.equal((await ctl(sim, 'GET', 'stats')).total, 5);
  });

  await t.test('per number (exact and suffix)', async () => {
    await ctl(sim, 'POST', 'faults', { mode: 'status503', to: '+15550000003' });
    await ctl(tw, 'POST', 'faults', { mode: 'status500', to_suffix: '99' });
    assert.equal((await post(1, '+15550000003')).status, 503);
    assert.equal((await post(2, '+15550000004')).status, 201);
    assert.equal((await twPost(callForm({ To: '+15550000099' }))).status, 500);
    assert.equal((await twPost(callForm({ To: '+15550000098' }))).status, 201);
    await ctl(sim, 'DELETE', 'faults');
    assert.equal((await post(3, '+15550000003')).status, 201);
  });

  await t.test('hang: accepted, never answered, counted; released on demand', async () => {
    await ctl(sim, 'POST', 'faults', { mode: 'hang', count: 1 });
    const p = post(1).then((r) => ({ r }), (e) => ({ e }));
    const raced = await Promise.race([p, sleep(300).then(() => 'pending')]);
    assert.equal(raced, 'pending');
    const s = await ctl(sim, 'GET', 'stats');
    assert.equal(s.hung, 1);
    assert.equal(s.in_flight, 1);
    assert.deepEqual((await ctl(sim, 'GET', 'counts')).counts, { f1: 1 });
    await ctl(sim, 'POST', 'faults', { release_hung: true });
    const out = await p;
    assert.ok(out.e, 'the hung request ends with a socket error once released');
    assert.equal((await post(2)).status, 201);
  });

  await t.test('reset: connection reset after the request was read (and counted)', async () => {
    await ctl(tw, 'POST', 'faults', { mode: 'reset', count: 1 });
    await assert.rejects(twPost(), (e) => ['ECONNRESET', 'EPIPE'].includes(e.code) || /socket hang up/.test(e.message));
    const s = await ctl(tw, 'GET', 'stats');
    assert.equal(s.total, 1);
    assert.equal(s.faults_applied.reset, 1);
    assert.deepEqual((await ctl(tw, 'GET', 'counts')).counts, { 42: 1 });
    assert.equal((await twPost()).status, 201);
  });

  await t.test('reset sends a TCP RST (rst:false closes with FIN instead)', async () => {
    const raw = () => new Promise((resolve) => {
      const body = formEncode(callForm());
      const s = net.connect(tw.port, '127.0.0.1', () => s.write(`POST ${CALLS} HTTP/1.1\r\nHost: x\r\n`
        + `Authorization: ${AUTH}\r\nContent-Type: application/x-www-form-urlencoded\r\n`
        + `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
      let data = '';
      s.on('data', (c) => { data += c; });
      s.on('error', (e) => resolve({ error: e.code, data }));
      s.on('end', () => { resolve({ end: true, data }); s.destroy(); });
    });
    await ctl(tw, 'POST', 'faults', { mode: 'reset', count: 1 });
    assert.deepEqual(await raw(), { error: 'ECONNRESET', data: '' });
    await ctl(tw, 'POST', 'faults', { mode: 'reset', rst: false, count: 1 });
    assert.deepEqual(await raw(), { end: true, data: '' });
  });

  await t.test('oversized: a streamed body bigger than N MB', async () => {
    await ctl(sim, 'POST', 'faults', { mode: 'oversized', mb: 3, count: 1 });
    const r = await post();
    assert.equal(r.status, 201);
    assert.ok(r.text.length > 3 * 1048576, `length ${r.text.length}`);
    assert.equal(r.headers['content-length'], undefined);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    await ctl(sim, 'POST', 'faults', { mode: 'oversized', mb: 2, content_length: true, count: 1 });
    const r2 = await post();
    assert.equal(Number(r2.headers['content-length']), r2.text.length);
    assert.ok(r2.text.length > 2 * 1048576);
  });

  await t.test('invalid_json: success status with a body that is not JSON', async () => {
    await ctl(tw, 'POST', 'faults', { mode: 'invalid_json', count: 1 });
    const r = await twPost();
    assert.equal(r.status, 201);
    assert.match(r.headers['content-type'], /json/);
    assert.throws(() => JSON.parse(r.text));
    assert.equal(r.json, undefined);
  });

  await t.test('delay combines with an error mode; bad rules are refused', async () => {
    await ctl(sim, 'POST', 'faults', { mode: 'status500', ms: 80, count: 1 });
    const r = await post();
    assert.equal(r.status, 500);
    assert.ok(r.ms >= 75);
    const bad = await request(sim.url + '/__sim/faults', { method: 'POST', json: { mode: 'explode' } });
    assert.equal(bad.status, 400);
  });
});

/* ------------------------------------------------------------------ control API */

test('control API: requests log, reset, capped log', async (t) => {
  const sim = await startSimulator({ kind: 'backend', port: 0 });
  t.after(() => sim.close());
  const send = (i) => request(sim.url + '/call/start', { method: 'POST', json: { to_number: '+15551112222', script: 's', call_id: `r${i}` } });
  for (let i = 1; i <= 3; i++) assert.equal((await send(i)).status, 200);
  let reqs = (await ctl(sim, 'GET', 'requests?limit=2')).requests;
  assert.deepEqual(reqs.map((r) => r.call_id), ['r2', 'r3']);
  assert.ok(BigInt(reqs[1].t_hr) > BigInt(reqs[0].t_hr));
  assert.equal(reqs[0].method, 'POST');
  assert.equal(reqs[0].path, '/call/start');
  reqs = (await ctl(sim, 'GET', 'requests?call_id=r1')).requests;
  assert.equal(reqs.length, 1);
  await ctl(sim, 'POST', 'config', { logLimit: 5 });
  for (let i = 1; i <= 8; i++) await send(i);
  reqs = (await ctl(sim, 'GET', 'requests?limit=100')).requests;
  assert.deepEqual(reqs.map((r) => r.call_id), ['r4', 'r5', 'r6', 'r7', 'r8']);
  await ctl(sim, 'POST', 'reset');
  const s = await ctl(sim, 'GET', 'stats');
  assert.equal(s.total, 0);
  assert.equal(s.distinct_call_ids, 0);
  assert.deepEqual((await ctl(sim, 'GET', 'requests')).requests, []);
  // in-process control object sees the same state
  await send(9);
  assert.deepEqual(sim.control.counts(), { r9: 1 });
  assert.equal((await request(sim.url + '/__sim/nope')).status, 404);
});

/* ------------------------------------------------------------------ CLI */

test('CLI: ready file, JSON on stdout, clean exit on SIGTERM', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simcli-'));
  const ready = path.join(dir, 'ready.json');
  const child = spawn(process.execPath, [path.join(__dirname, 'server.js'), '--kind', 'voice_api', '--port', '0',
    '--ready-file', ready, '--voice-key', 'cli-key'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const line = await new Promise((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (c) => { buf += c; const i = buf.indexOf('\n'); if (i >= 0) resolve(buf.slice(0, i)); });
      child.on('exit', (code) => reject(new Error(`exited ${code}`)));
      setTimeout(() => reject(new Error('no ready line')), 5000);
    });
    const info = JSON.parse(line);
    assert.equal(info.pid, child.pid);
    assert.ok(info.port > 0);
    assert.deepEqual(JSON.parse(fs.readFileSync(ready, 'utf8')), info);
    const r = await request(`http://127.0.0.1:${info.port}/calls`, { method: 'POST', headers: { Authorization: 'Bearer cli-key' },
      json: { phone_number: '+15551112222', message: 'x', metadata: { call_id: 'cli' } } });
    assert.equal(r.status, 201);
    const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
    process.kill(child.pid, 'SIGTERM');
    assert.deepEqual(await exited, { code: 0, sig: null });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

