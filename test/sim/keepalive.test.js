'use strict';
// Self-test of the simulator's keep-alive misbehaviour (fault mode reset_reused, the `served`
// matcher) and of its per-number / per-attempt counts of the placing route, over real HTTP
// keep-alive connections on 127.0.0.1.  Run: node --test test/sim/keepalive.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startSimulator, DEFAULTS } = require('./server');
const { request } = require('./http-util');

const start = (sim, agent, callId, attempt, to = '+15550900001') => request(`${sim.url}/call/start`, {
  method: 'POST', agent, json: { call_id: callId, attempt, to_number: to, script: 'hi' } });

test('reset_reused: a fresh connection is answered, a reused one is reset after the request was read', async (t) => {
  const sim = await startSimulator({ kind: 'backend', port: 0 });
  t.after(() => sim.close());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  sim.control.addFault({ mode: 'reset_reused' });

  const first = await start(sim, agent, 1, 1);
  assert.equal(first.status, 200, 'the first request of a connection is answered');
  assert.equal(first.reusedSocket, false);
  await assert.rejects(start(sim, agent, 2, 1), (e) => e.code === 'ECONNRESET' || /socket hang up/.test(e.message));
  const third = await start(sim, agent, 2, 2);   // the agent had to open a new connection
  assert.equal(third.status, 200);

  const log = sim.control.requests(10);
  assert.deepEqual(log.map((e) => [e.call_id, e.conn_request, e.fault || null, e.status]),
    [['1', 1, null, 200], ['2', 2, 'reset_reused', 0], ['2', 1, null, 200]]);
  assert.equal(log[0].conn, log[1].conn, 'the reset came on the first connection, reused');
  assert.notEqual(log[2].conn, log[1].conn);
  // every request was counted, the reset one included
  assert.deepEqual(sim.control.counts(), { 1: 1, 2: 2 });
  assert.deepEqual(sim.control.placings('attempt'), { '1/1': 1, '2/1': 1, '2/2': 1 });
  assert.deepEqual(sim.control.placings('to'), { '+15550900001': 3 });
  assert.equal(sim.control.stats().faults_applied.reset_reused, 1);
  assert.throws(() => sim.control.placings('nope'), /one of to, attempt/);

  // the same over the control API
  const r = await request(`${sim.url}/__sim/placings?by=attempt`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { by: 'attempt', counts: { '1/1': 1, '2/1': 1, '2/2': 1 } });
  assert.equal((await request(`${sim.url}/__sim/placings?by=x`)).status, 400);
  await request(`${sim.url}/__sim/reset`, { method: 'POST', json: {} });
  assert.deepEqual(sim.control.placings('to'), {});
});

test('served: N lets a connection serve N requests before the rule applies; count is used only when applied', async (t) => {
  const sim = await startSimulator({ kind: 'voice_api', port: 0, apiKey: null });
  t.after(() => sim.close());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  sim.control.addFault({ mode: 'reset_reused', served: 2, count: 1 });
  const post = (id) => request(`${sim.url}/calls`, { method: 'POST', agent,
    json: { phone_number: '+15550900002', message: 'hi', metadata: { call_id: id, attempt: 1 } } });

  assert.equal((await post('a')).status, 201);
  assert.equal((await post('b')).status, 201);
  assert.equal(sim.control.faults().length, 1, 'not applied on requests 1 and 2 of the connection');
  await assert.rejects(post('c'));
  assert.equal(sim.control.faults().length, 0, 'count 1: removed once applied');
  assert.equal((await post('d')).status, 201);
  assert.deepEqual(sim.control.requests(10).map((e) => [e.call_id, e.conn_request, e.status]),
    [['a', 1, 201], ['b', 2, 201], ['c', 3, 0], ['d', 1, 201]]);
  assert.deepEqual(sim.control.placings('attempt'), { 'a/1': 1, 'b/1': 1, 'c/1': 1, 'd/1': 1 });
});

test('twilio: the per-number count covers form-encoded creates', async (t) => {
  const sim = await startSimulator({ kind: 'twilio', port: 0 });
  t.after(() => sim.close());
  const acc = DEFAULTS.accountSid;
  const auth = 'Basic ' + Buffer.from(`${acc}:${DEFAULTS.authToken}`).toString('base64');
  const r = await request(`${sim.url}/2010-04-01/Accounts/${acc}/Calls.json`, { method: 'POST',
    headers: { Authorization: auth, 'X-Dialer-Call-Id': '7', 'X-Dialer-Attempt': '1' },
    form: { To: '+15550900003', From: '+15550900000', Url: 'https://example.com/t' } });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(sim.control.placings('to'), { '+15550900003': 1 });
  assert.deepEqual(sim.control.placings('attempt'), { '7/1': 1 });
});
