'use strict';
/*
 * Webhooks end to end: Twilio status callbacks signed by Twilio's own helper library
 * (npm twilio) and JSON webhooks, sent through the shipped deployment (nginx with
 * deploy/nginx/pg_dialer_webhooks.conf.template in front of PostgREST 12 with
 * deploy/postgrest.conf, roles from deploy/roles.sql) and straight to PostgREST.
 *
 * The calls are set up in SQL as the worker would have left them (status dialing, the
 * attempt row stored), in a database of its own, so no dispatcher is involved.  Every
 * refused request is checked to change no row of any pg_dialer table.
 */

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const twilio = require('twilio');
const { Client } = require('pg');
const { startWebhookStack, makeClient, pgEnv } = require('../lib/webhook_stack.js');

const DB = 'dialer_webhook_test';
const ACCOUNT = 'AC' + crypto.randomBytes(16).toString('hex');
const TOKEN = crypto.randomBytes(16).toString('hex');
const BACKEND_SECRET = crypto.randomBytes(24).toString('base64');
const VOICE_SECRET = crypto.randomBytes(24).toString('base64');
const FORM = 'application/x-www-form-urlencoded';

let stack;
let http;
let seq = 0;

function sid(prefix = 'CA') {
  return prefix + crypto.randomBytes(16).toString('hex');
}

async function q(sql, params) {
  return (await stack.admin.query(sql, params)).rows;
}

/* Every row of every pg_dialer table, in a stable order: the "nothing changed" witness. */
async function snapshot() {
  const out = {};
  for (const t of ['providers', 'campaigns', 'do_not_call', 'scheduled_calls', 'call_attempts', 'call_events']) {
    const key = t === 'providers' ? 'name' : t === 'campaigns' ? 'name' : t === 'do_not_call' ? 'number' : 'id';
    out[t] = await q(`SELECT to_jsonb(x)::text AS r FROM dialer.${t} x ORDER BY ${key}`);
  }
  return JSON.stringify(out);
}

async function expectNoChange(fn) {
  const before = await snapshot();
  const result = await fn();
  assert.equal(await snapshot(), before, 'a refused request changed a row');
  return result;
}

/* A call as the worker leaves it once the provider accepted (or before, with dispatching). */
async function newCall(provider, opts = {}) {
  const {
    status = 'dialing', attempts = 1, attemptsBase = 0, maxAttempts = 3, callSid = sid(),
    storeSid = true, campaign = null, deadline = null,
  } = opts;
  const [{ id }] = await q(
    `INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, from_number, provider,
            attempts, attempts_base, max_attempts, campaign, deadline, provider_call_id)
     VALUES ($1, now() - interval '1 minute', now() - interval '1 minute', '+14155550100', '+14155550199', $2,
             $3, $4, $5, $6, $7, $8) RETURNING id`,
    [status, provider, attempts, attemptsBase, maxAttempts, campaign, deadline, storeSid ? callSid : null]);
  for (let a = 1; a <= attempts; a++) {
    await q(`INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id, http_status)
             VALUES ($1, $2, now(), $3, $4)`,
    [id, a, a === attempts && storeSid ? callSid : null, storeSid ? 201 : null]);
  }
  return { id: Number(id), callSid, provider };
}

async function call(id) {
  const [c] = await q('SELECT * FROM dialer.scheduled_calls WHERE id = $1', [id]);
  return c;
}
async function attempt(id, n) {
  const [a] = await q('SELECT * FROM dialer.call_attempts WHERE call_id = $1 AND attempt = $2', [id, n]);
  return a;
}
async function events(id, event) {
  return q(`SELECT * FROM dialer.call_events WHERE call_id = $1 ${event ? 'AND event = $2' : ''} ORDER BY id`,
    event ? [id, event] : [id]);
}

const PROVIDER_URL = {
  proxy: () => `${stack.proxy}/twilio/status-callback`,
  direct: () => `${stack.postgrest}/rpc/twilio_status_callback`,
};

/* The form fields of a Twilio status callback for a call, as Twilio documents them. */
function twilioFields(c, callStatus, sequenceNumber, extra = {}) {
  const f = {
    AccountSid: ACCOUNT,
    ApiVersion: '2010-04-01',
    CallSid: c.callSid,
    CallStatus: callStatus,
    Called: '+14155550100',
    Caller: '+14155550199',
    Direction: 'outbound-api',
    From: '+14155550199',
    To: '+14155550100',
    ToCountry: 'US',
    CallbackSource: 'call-progress-events',
    Timestamp: new Date().toUTCString().replace('GMT', '+0000'),
  };
  if (sequenceNumber !== null) f.SequenceNumber = String(sequenceNumber);
  if (['completed', 'busy', 'no-answer', 'failed', 'canceled'].includes(callStatus)) {
    f.CallDuration = callStatus === 'completed' ? '42' : '0';
    f.Duration = callStatus === 'completed' ? '1' : '0';
    f.SipResponseCode = { completed: '200', busy: '486', 'no-answer': '487', failed: '404', canceled: '487' }[callStatus];
  }
  return { ...f, ...extra };
}

/*
 * Sends a Twilio status callback.  target proxy: to the public URL (nginx) with
 * ?call_id=<id>; direct: to PostgREST's /rpc/twilio_status_callback.  The signature is
 * Twilio's helper library's, over signUrl (default: the URL Twilio would call) and
 * signFields (default: the fields sent).
 */
async function sendTwilio(c, fields, opts = {}) {
  const target = opts.target || 'proxy';
  const callId = opts.callIdInUrl !== undefined ? opts.callIdInUrl : c.id;
  const url = target === 'proxy'
    ? `${PROVIDER_URL.proxy()}${callId === null ? '' : `?call_id=${callId}`}`
    : PROVIDER_URL.direct();
  const signUrl = opts.signUrl || url;
  const headers = { 'Content-Type': opts.contentType || FORM, ...(opts.headers || {}) };
  if (!opts.unsigned) {
    headers['X-Twilio-Signature'] = opts.signature
      || twilio.getExpectedTwilioSignature(opts.token || TOKEN, signUrl, opts.signFields || fields);
  }
  const body = opts.body !== undefined ? opts.body : new URLSearchParams(fields).toString();
  return http.request(url, { headers, body });
}

/* A JSON webhook, signed as documented: X-Dialer-Signature = sha256=hex(HMAC(secret, ts.body)). */
function signJson(secret, ts, raw) {
  return 'sha256=' + crypto.createHmac('sha256', secret).update(`${ts}.${raw}`, 'utf8').digest('hex');
}
async function sendJson(raw, opts = {}) {
  const ts = String(opts.ts !== undefined ? opts.ts : Math.floor(Date.now() / 1000));
  const url = opts.target === 'direct' ? `${stack.postgrest}/rpc/provider_status_callback`
    : `${stack.proxy}/dialer/provider-status`;
  const headers = { 'Content-Type': opts.contentType || 'application/json', ...(opts.headers || {}) };
  if (!opts.noTimestamp) headers['X-Dialer-Timestamp'] = ts;
  if (!opts.unsigned) {
    headers['X-Dialer-Signature'] = opts.signature || signJson(opts.secret || BACKEND_SECRET, ts, opts.signBody || raw);
  }
  return http.request(url, { headers, body: raw });
}

before(async () => {
  stack = await startWebhookStack({ database: DB });
  http = makeClient(32);
  await q(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, status_callback_url)
           VALUES ('tw', 'twilio', 'https://api.twilio.com', $1, $2, $3)`, [ACCOUNT, TOKEN, PROVIDER_URL.proxy()]);
  await q(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, status_callback_url)
           VALUES ('tw_direct', 'twilio', 'https://api.twilio.com', $1, $2, $3)`, [ACCOUNT, TOKEN, PROVIDER_URL.direct()]);
  await q(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, status_callback_url,
                                         retry_busy, retry_no_answer, retry_delay)
           VALUES ('tw_retry', 'twilio', 'https://api.twilio.com', $1, $2, $3, false, true, '10 minutes')`,
  [ACCOUNT, TOKEN, PROVIDER_URL.proxy()]);
  await q(`INSERT INTO dialer.providers (name, kind, base_url, webhook_secret, status_callback_url)
           VALUES ('be', 'backend', 'http://127.0.0.1:9', $1, $2)`, [BACKEND_SECRET, `${stack.proxy}/dialer/provider-status`]);
  await q(`INSERT INTO dialer.providers (name, kind, base_url, webhook_secret)
           VALUES ('va', 'voice_api', 'http://127.0.0.1:9', $1)`, [VOICE_SECRET]);
  await q(`INSERT INTO dialer.providers (name, kind, base_url) VALUES ('be_nosecret', 'backend', 'http://127.0.0.1:9')`);
});

after(async () => {
  if (http) http.close();
  if (stack) await stack.stop();
});

describe('Twilio status callbacks through the shipped proxy', () => {
  it('applies callbacks in order and stores the outcome on the attempt', async () => {
    const c = await newCall('tw');
    const steps = ['initiated', 'ringing', 'in-progress', 'completed'];
    for (let i = 0; i < steps.length; i++) {
      const r = await sendTwilio(c, twilioFields(c, steps[i], i, steps[i] === 'in-progress' ? { AnsweredBy: 'human' } : {}));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.result, 'applied');
      assert.equal(r.json.status, i < 3 ? 'dialing' : 'completed');
      const row = await call(c.id);
      assert.equal(row.status, i < 3 ? 'dialing' : 'completed');
      assert.equal(row.provider_status, steps[i]);
    }
    const row = await call(c.id);
    assert.ok(row.finished_at, 'finished_at set');
    const a = await attempt(c.id, 1);
    assert.equal(a.provider_status, 'completed');
    assert.equal(a.duration_seconds, 42);
    assert.equal(a.answered_by, 'human');
    assert.equal(a.sip_response_code, 200);
    const ev = await events(c.id, 'callback');
    assert.equal(ev.length, 4);
    assert.deepEqual(ev.map((e) => Number(e.detail.sequence)), [0, 1, 2, 3]);
    assert.equal(ev[3].from_status, 'dialing');
    assert.equal(ev[3].to_status, 'completed');
    assert.equal(ev[3].detail.fields.CallStatus, 'completed');
    assert.equal(ev[3].detail.fields.SipResponseCode, '200');
  });

  it('never moves backwards when callbacks arrive in reverse order', async () => {
    const c = await newCall('tw');
    const steps = ['initiated', 'ringing', 'in-progress', 'completed'];
    for (let i = steps.length - 1; i >= 0; i--) {
      const r = await sendTwilio(c, twilioFields(c, steps[i], i));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.result, i === 3 ? 'applied' : 'stale');
      const row = await call(c.id);
      assert.equal(row.status, 'completed');
      assert.equal(row.provider_status, 'completed');
    }
    const a = await attempt(c.id, 1);
    assert.equal(a.provider_status, 'completed');
    assert.equal(a.duration_seconds, 42);
    const ev = await events(c.id, 'callback');
    assert.equal(ev.length, 4, 'every distinct callback is recorded');
    assert.deepEqual(ev.map((e) => e.to_status), ['completed', 'completed', 'completed', 'completed']);
  });

  it('out of order within the call: ringing after in-progress keeps in-progress', async () => {
    const c = await newCall('tw');
    assert.equal((await sendTwilio(c, twilioFields(c, 'initiated', 0))).status, 200);
    assert.equal((await sendTwilio(c, twilioFields(c, 'in-progress', 2))).status, 200);
    const r = await sendTwilio(c, twilioFields(c, 'ringing', 1));
    assert.equal(r.json.result, 'stale');
    assert.equal((await call(c.id)).provider_status, 'in-progress');
    assert.equal((await attempt(c.id, 1)).provider_status, 'in-progress');
    assert.equal((await call(c.id)).status, 'dialing');
  });

  it('a duplicated callback changes nothing, also when the copies race', async () => {
    const c = await newCall('tw');
    const fields = twilioFields(c, 'ringing', 1);
    const first = await sendTwilio(c, fields);
    assert.equal(first.json.result, 'applied');
    const r = await expectNoChange(() => sendTwilio(c, fields));
    assert.equal(r.status, 200);
    assert.equal(r.json.result, 'duplicate');

    const c2 = await newCall('tw');
    const f2 = twilioFields(c2, 'completed', 3);
    const results = await Promise.all(Array.from({ length: 8 }, () => sendTwilio(c2, f2)));
    assert.deepEqual(results.map((x) => x.status), Array(8).fill(200));
    assert.equal(results.filter((x) => x.json.result === 'applied').length, 1);
    assert.equal(results.filter((x) => x.json.result === 'duplicate').length, 7);
    assert.equal((await events(c2.id, 'callback')).length, 1);
    assert.equal((await call(c2.id)).status, 'completed');
  });

  it('a replayed request (same signature, later) changes nothing', async () => {
    const c = await newCall('tw');
    const ringing = twilioFields(c, 'ringing', 1);
    const sig = twilio.getExpectedTwilioSignature(TOKEN, `${PROVIDER_URL.proxy()}?call_id=${c.id}`, ringing);
    await sendTwilio(c, ringing);
    await sendTwilio(c, twilioFields(c, 'completed', 2));
    const r = await expectNoChange(() => sendTwilio(c, ringing, { signature: sig }));
    assert.equal(r.status, 200);
    assert.equal(r.json.result, 'duplicate');
    assert.equal((await call(c.id)).status, 'completed');
  });

  it('accepts a field Twilio adds in the future (signed over it) and records it', async () => {
    const c = await newCall('tw');
    const fields = twilioFields(c, 'ringing', 1, { FutureField: 'new value & more', StirVerstat: 'TN-Validation-Passed-A' });
    const r = await sendTwilio(c, fields);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, 'applied');
    const [ev] = await events(c.id, 'callback');
    assert.equal(ev.detail.fields.FutureField, 'new value & more');
  });

  it('keeps credentials out of the event', async () => {
    const c = await newCall('tw');
    const r = await sendTwilio(c, twilioFields(c, 'ringing', 1, { CallToken: 'secret-call-token', StirPassportToken: 'eyJ...' }));
    assert.equal(r.status, 200, r.text);
    const [ev] = await events(c.id, 'callback');
    assert.equal(ev.detail.fields.CallToken, undefined);
    assert.equal(ev.detail.fields.StirPassportToken, undefined);
    assert.equal(ev.detail.fields.CallSid, c.callSid);
    const all = JSON.stringify(await q('SELECT detail FROM dialer.call_events'));
    assert.ok(!all.includes(TOKEN), 'the auth token never appears in an event');
  });

  it('a callback before the worker stored the provider call id is not lost', async () => {
    const c = await newCall('tw', { status: 'dispatching', storeSid: false });
    const r = await sendTwilio(c, twilioFields(c, 'initiated', 0));
    assert.equal(r.status, 200, r.text);
    const row = await call(c.id);
    assert.equal(row.status, 'dialing');
    assert.equal(row.provider_call_id, c.callSid);
    assert.equal((await attempt(c.id, 1)).provider_call_id, c.callSid);
    // a final callback can even come first
    const c2 = await newCall('tw', { status: 'dispatching', storeSid: false });
    assert.equal((await sendTwilio(c2, twilioFields(c2, 'failed', 1, { ErrorCode: '13224', ErrorMessage: 'invalid number' }))).status, 200);
    const row2 = await call(c2.id);
    assert.equal(row2.status, 'failed');
    assert.match(row2.last_error, /13224/);
    assert.equal((await attempt(c2.id, 1)).error_code, '13224');
  });

  it('resolves an unknown call to the outcome Twilio reports', async () => {
    const c = await newCall('tw', { status: 'unknown', storeSid: false });
    const r = await sendTwilio(c, twilioFields(c, 'completed', 4));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.previous_status, 'unknown');
    assert.equal((await call(c.id)).status, 'completed');
  });

  it('a CallSid of no attempt of the call is recorded and moves nothing', async () => {
    const c = await newCall('tw');
    const other = { ...c, callSid: sid() };
    const r = await sendTwilio(other, twilioFields(other, 'completed', 3));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, 'unmatched');
    assert.equal((await call(c.id)).status, 'dialing');
    assert.equal((await attempt(c.id, 1)).provider_status, null);
  });

  it('README\'s signed callback by hand: its SQL signs, its curl posts, the call completes', async () => {
    const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
    const block = (kind) => {
      const m = new RegExp(`<!-- webhook-signing-test: ${kind} -->\\s*\\n\`\`\`\\w+\\n([\\s\\S]*?)\`\`\``).exec(readme);
      assert.ok(m, `README has the ${kind} block of the signed callback`);
      return m[1];
    };
    const c = await newCall('tw');
    const pg = pgEnv();
    const psql = path.join(process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin', 'psql');
    const out = execFileSync(psql, ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-F', '\t',
      '-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', DB, '-v', `call_id=${c.id}`],
    { input: block('sql'), encoding: 'utf8' }).trim();
    const [url, callSid, accountSid, signature] = out.split('\t');
    assert.equal(callSid, c.callSid);
    assert.equal(url, `${PROVIDER_URL.proxy()}?call_id=${c.id}`);
    const env = { PATH: process.env.PATH, WEBHOOKS: stack.proxy, URL: url, SIGNATURE: signature,
      CALL_SID: callSid, ACCOUNT_SID: accountSid };
    const answer = execFileSync('bash', ['--norc', '--noprofile', '-eo', 'pipefail', '-c', block('sh')],
      { env, encoding: 'utf8' });
    assert.equal(JSON.parse(answer).result, 'applied', answer);
    const row = await call(c.id);
    assert.equal(row.status, 'completed');
    // the same signature over other fields is refused and changes nothing
    const other = await newCall('tw');
    await expectNoChange(async () => {
      const r = await http.request(`${stack.proxy}/twilio/status-callback?call_id=${other.id}`, {
        method: 'POST', headers: { 'Content-Type': FORM, 'X-Twilio-Signature': signature },
        body: new URLSearchParams({ AccountSid: accountSid, CallSid: other.callSid, CallStatus: 'completed', CallDuration: '42' }).toString(),
      });
      assert.equal(r.status, 403);
    });
  });

  it('a signed callback for a call pg_dialer does not have is answered and writes nothing', async () => {
    const c = { id: 987654321, callSid: sid() };
    const r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 3)));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, 'ignored');
  });
});

describe('Twilio callbacks that are refused change nothing', () => {
  let c;
  before(async () => { c = await newCall('tw'); });

  it('missing signature: 401', async () => {
    const r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 3), { unsigned: true }));
    assert.equal(r.status, 401);
    assert.equal(r.json.code, 'PT401');
  });

  it('empty signature: 401', async () => {
    const r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 3), { headers: { 'X-Twilio-Signature': '' }, unsigned: true }));
    assert.equal(r.status, 401);
  });

  it('tampered field: 403', async () => {
    const signed = twilioFields(c, 'ringing', 1);
    const sent = { ...signed, CallStatus: 'completed' };
    const r = await expectNoChange(() => sendTwilio(c, sent, { signFields: signed }));
    assert.equal(r.status, 403);
    assert.equal(r.json.code, 'PT403');
    assert.ok(!r.text.includes(TOKEN));
  });

  it('field changed or added after signing: 403', async () => {
    const signed = twilioFields(c, 'completed', 3);
    const r = await expectNoChange(() => sendTwilio(c, { ...signed, CallDuration: '9999' }, { signFields: signed }));
    assert.equal(r.status, 403);
    const r2 = await expectNoChange(() => sendTwilio(c, { ...signed, Extra: 'x' }, { signFields: signed }));
    assert.equal(r2.status, 403);
  });

  it('field removed after signing: 403', async () => {
    const signed = twilioFields(c, 'completed', 3);
    const sent = { ...signed };
    delete sent.CallDuration;
    const r = await expectNoChange(() => sendTwilio(c, sent, { signFields: signed }));
    assert.equal(r.status, 403);
  });

  it('wrong URL: other host, other path, no call id, another call id: 403', async () => {
    const f = twilioFields(c, 'completed', 3);
    for (const signUrl of [
      `https://evil.example.com/twilio/status-callback?call_id=${c.id}`,
      `${stack.proxy}/twilio/other?call_id=${c.id}`,
      `${PROVIDER_URL.proxy()}`,
      `${PROVIDER_URL.proxy()}?call_id=${c.id + 1}`,
      `${PROVIDER_URL.proxy()}?call_id=${c.id}&x=1`,
    ]) {
      const r = await expectNoChange(() => sendTwilio(c, f, { signUrl }));
      assert.equal(r.status, 403, signUrl);
    }
  });

  it('a valid signature of one call replayed against another call: 403', async () => {
    const other = await newCall('tw', { callSid: c.callSid, storeSid: false });
    const f = twilioFields(c, 'completed', 3);
    const sigForC = twilio.getExpectedTwilioSignature(TOKEN, `${PROVIDER_URL.proxy()}?call_id=${c.id}`, f);
    const r = await expectNoChange(() => sendTwilio(other, f, { signature: sigForC }));
    assert.equal(r.status, 403);
  });

  it('wrong auth token: 403', async () => {
    const r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 3), { token: 'not-the-token' }));
    assert.equal(r.status, 403);
  });

  it('another account, signed with our token: 403', async () => {
    const r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 3, { AccountSid: 'AC' + '0'.repeat(32) })));
    assert.equal(r.status, 403);
  });

  it('malformed: call_id not a number (400), JSON body (415), garbage form (403), GET (403), huge body (413)', async () => {
    const f = twilioFields(c, 'completed', 3);
    const url = `${PROVIDER_URL.proxy()}?call_id=abc`;
    let r = await expectNoChange(() => http.request(url, {
      headers: { 'Content-Type': FORM, 'X-Twilio-Signature': twilio.getExpectedTwilioSignature(TOKEN, url, f) },
      body: new URLSearchParams(f).toString(),
    }));
    assert.equal(r.status, 400);

    r = await expectNoChange(() => sendTwilio(c, f, { contentType: 'application/json', body: JSON.stringify(f) }));
    assert.equal(r.status, 415);

    r = await expectNoChange(() => sendTwilio(c, f, { body: '%zz=%%&&=&CallStatus' }));
    assert.equal(r.status, 403);

    r = await expectNoChange(() => http.request(`${PROVIDER_URL.proxy()}?call_id=${c.id}`, { method: 'GET' }));
    assert.equal(r.status, 403);

    r = await expectNoChange(() => sendTwilio(c, f, { body: 'CallStatus=completed&x=' + 'a'.repeat(100 * 1024) }));
    assert.equal(r.status, 413);

    // an empty body, correctly signed (over the URL alone), is authentic but says nothing
    r = await expectNoChange(() => sendTwilio(c, {}, { body: '' }));
    assert.equal(r.status, 400, r.text);
  });

  it('signed but missing CallStatus, or a bad SequenceNumber: 400', async () => {
    const f = twilioFields(c, 'completed', 3);
    delete f.CallStatus;
    let r = await expectNoChange(() => sendTwilio(c, f));
    assert.equal(r.status, 400, r.text);
    r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 'x1')));
    assert.equal(r.status, 400, r.text);
  });

  it('the proxy does not let a client choose the call id header or PostgREST preferences', async () => {
    const f = twilioFields(c, 'completed', 3);
    const r = await expectNoChange(() => sendTwilio(c, f, {
      callIdInUrl: null,
      signUrl: `${PROVIDER_URL.proxy()}?call_id=${c.id}`,
      headers: { 'X-Dialer-Call-Id': String(c.id), Prefer: 'tx=rollback' },
    }));
    assert.equal(r.status, 403);
  });

  it('the proxy exposes nothing but the two webhooks', async () => {
    for (const p of ['/', '/rpc/twilio_status_callback', '/scheduled_calls', '/rpc/enqueue_call', '/providers']) {
      const r = await expectNoChange(() => http.request(`${stack.proxy}${p}`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}',
      }));
      assert.equal(r.status, 404, p);
    }
  });
});

describe('Twilio status callbacks straight to PostgREST (no proxy)', () => {
  it('accepts today\'s documented fields and finds the call by CallSid', async () => {
    const c = await newCall('tw_direct');
    const f = twilioFields(c, 'completed', 3, { AnsweredBy: 'machine_start', RecordingUrl: 'https://api.twilio.com/rec/RE1', ForwardedFrom: '' });
    const r = await sendTwilio(c, f, { target: 'direct' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, 'applied');
    const a = await attempt(c.id, 1);
    assert.equal(a.answered_by, 'machine_start');
    assert.equal(a.recording_url, 'https://api.twilio.com/rec/RE1');
    assert.equal((await call(c.id)).status, 'completed');
    const [ev] = await events(c.id, 'callback');
    assert.equal(ev.detail.fields.ForwardedFrom, '', 'a field sent empty is kept, and signed');
  });

  it('a field sent empty is part of the signature (not the same as not sent)', async () => {
    const c = await newCall('tw_direct');
    const sent = twilioFields(c, 'ringing', 1, { CallerName: '' });
    const signed = { ...sent };
    delete signed.CallerName;
    const r = await expectNoChange(() => sendTwilio(c, sent, { target: 'direct', signFields: signed }));
    assert.equal(r.status, 403);
    const r2 = await expectNoChange(() => sendTwilio(c, sent, { target: 'proxy', callIdInUrl: c.id, signFields: signed, signUrl: `${PROVIDER_URL.proxy()}?call_id=${c.id}` }));
    assert.equal(r2.status, 403);
  });

  it('an undocumented field is refused by PostgREST itself (404): the reason for the proxy', async () => {
    const c = await newCall('tw_direct');
    const r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'ringing', 1, { FutureField: 'x' }), { target: 'direct' }));
    assert.equal(r.status, 404);
    assert.equal(r.json.code, 'PGRST202');
  });

  it('refuses unsigned and wrongly signed requests', async () => {
    const c = await newCall('tw_direct');
    let r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 3), { target: 'direct', unsigned: true }));
    assert.equal(r.status, 401);
    r = await expectNoChange(() => sendTwilio(c, twilioFields(c, 'completed', 3), { target: 'direct', token: 'x' }));
    assert.equal(r.status, 403);
  });
});

describe('retry policy for busy and no-answer', () => {
  it('re-schedules a no-answer call after the provider\'s retry_delay', async () => {
    const c = await newCall('tw_retry', { attempts: 1, maxAttempts: 3 });
    const r = await sendTwilio(c, twilioFields(c, 'no-answer', 2));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'scheduled');
    const row = await call(c.id);
    assert.equal(row.status, 'scheduled');
    assert.equal(row.finished_at, null);
    const [{ secs }] = await q('SELECT extract(epoch FROM next_attempt_at - now())::int AS secs FROM dialer.scheduled_calls WHERE id = $1', [c.id]);
    assert.ok(secs > 590 && secs <= 600, `next attempt in ${secs} s`);
    const [ev] = await events(c.id, 'retry_scheduled');
    assert.equal(ev.detail.reason, 'no_answer');
    assert.equal((await attempt(c.id, 1)).provider_status, 'no-answer');
  });

  it('busy is final when the provider does not retry busy', async () => {
    const c = await newCall('tw_retry');
    await sendTwilio(c, twilioFields(c, 'busy', 2));
    const row = await call(c.id);
    assert.equal(row.status, 'busy');
    assert.ok(row.finished_at);
    assert.equal((await events(c.id, 'retry_scheduled')).length, 0);
  });

  it('no-answer is final once the run\'s attempts are used up', async () => {
    const c = await newCall('tw_retry', { attempts: 3, maxAttempts: 3 });
    const r = await sendTwilio(c, twilioFields(c, 'no-answer', 2));
    assert.equal(r.json.status, 'no_answer');
    const [ev] = await events(c.id, 'callback');
    assert.equal(ev.detail.retry_skipped, 'attempts_exhausted');
    // a new run (retry_call) counts from attempts_base
    const c2 = await newCall('tw_retry', { attempts: 4, attemptsBase: 3, maxAttempts: 3 });
    assert.equal((await sendTwilio(c2, twilioFields(c2, 'no-answer', 2))).json.status, 'scheduled');
  });

  it('no retry past the call\'s deadline', async () => {
    const c = await newCall('tw_retry', { deadline: new Date(Date.now() + 5 * 60 * 1000) });
    const r = await sendTwilio(c, twilioFields(c, 'no-answer', 2));
    assert.equal(r.json.status, 'no_answer');
  });

  it('the campaign\'s settings override the provider\'s', async () => {
    await q("CREATE OR REPLACE VIEW public.webhook_test_candidates AS SELECT 'c1'::text AS customer_ref, '+14155550100'::text AS phone");
    await q(`INSERT INTO dialer.campaigns (name, source, provider, retry_busy, retry_no_answer, retry_delay)
             VALUES ('wh_camp', 'public.webhook_test_candidates', 'tw_retry', true, false, '1 hour')`);
    const busy = await newCall('tw_retry', { campaign: 'wh_camp' });
    assert.equal((await sendTwilio(busy, twilioFields(busy, 'busy', 2))).json.status, 'scheduled');
    const [{ secs }] = await q('SELECT extract(epoch FROM next_attempt_at - now())::int AS secs FROM dialer.scheduled_calls WHERE id = $1', [busy.id]);
    assert.ok(secs > 3590 && secs <= 3600, `next attempt in ${secs} s`);
    const na = await newCall('tw_retry', { campaign: 'wh_camp' });
    assert.equal((await sendTwilio(na, twilioFields(na, 'no-answer', 2))).json.status, 'no_answer');
  });

  it('a late callback of the previous attempt does not touch the retry', async () => {
    const c = await newCall('tw_retry');
    await sendTwilio(c, twilioFields(c, 'no-answer', 2));
    // the worker claims attempt 2
    await q("UPDATE dialer.scheduled_calls SET status = 'dispatching', attempts = 2 WHERE id = $1", [c.id]);
    await q('INSERT INTO dialer.call_attempts (call_id, attempt, requested_at) VALUES ($1, 2, now())', [c.id]);
    const late = await sendTwilio(c, twilioFields(c, 'completed', 3));
    assert.equal(late.status, 200);
    assert.equal((await call(c.id)).status, 'dispatching');
    assert.equal((await attempt(c.id, 1)).provider_status, 'no-answer');
    // attempt 2's own callback, before the worker stored its sid
    const c2 = { ...c, callSid: sid() };
    const r = await sendTwilio(c2, twilioFields(c2, 'ringing', 1));
    assert.equal(r.json.attempt, 2);
    assert.equal((await call(c.id)).status, 'dialing');
    assert.equal((await attempt(c.id, 2)).provider_call_id, c2.callSid);
  });
});

describe('JSON webhooks of backend and voice_api providers', () => {
  it('applies a signed webhook and stores transcript, recording and duration', async () => {
    const c = await newCall('be', { callSid: 'be-' + sid('') });
    const raw = JSON.stringify({ call_id: c.id, status: 'completed', metadata: { call_id: c.id, campaign: 'x' },
      transcript: 'Hello, this is a reminder.', recording_url: 'https://rec.example/1.mp3', duration: 37 });
    const r = await sendJson(raw);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, 'applied');
    const a = await attempt(c.id, 1);
    assert.equal(a.transcript, 'Hello, this is a reminder.');
    assert.equal(a.recording_url, 'https://rec.example/1.mp3');
    assert.equal(a.duration_seconds, 37);
    assert.equal((await call(c.id)).status, 'completed');
  });

  it('the signature covers the raw body: same JSON, other bytes, is refused', async () => {
    const c = await newCall('be');
    const raw = `{"call_id": ${c.id},   "status":"ringing"}`;
    const r = await sendJson(raw);
    assert.equal(r.status, 200, r.text);
    const c2 = await newCall('be');
    const signed = `{"call_id": ${c2.id}, "status": "completed"}`;
    const sent = `{"call_id": ${c2.id},"status": "completed"}`;
    const r2 = await expectNoChange(() => sendJson(sent, { signBody: signed }));
    assert.equal(r2.status, 403);
  });

  it('refuses stale and future timestamps, missing headers, wrong secrets', async () => {
    const c = await newCall('be');
    const raw = JSON.stringify({ call_id: c.id, status: 'completed' });
    const now = Math.floor(Date.now() / 1000);
    for (const [opts, status] of [
      [{ ts: now - 301 }, 401], [{ ts: now + 400 }, 401], [{ ts: 'yesterday' }, 401],
      [{ noTimestamp: true }, 401], [{ unsigned: true }, 401],
      [{ secret: VOICE_SECRET }, 403], [{ signature: 'sha256=' + '0'.repeat(64) }, 403],
      [{ signature: signJson(BACKEND_SECRET, now, raw).slice(7) }, 403],
    ]) {
      const r = await expectNoChange(() => sendJson(raw, opts));
      assert.equal(r.status, status, JSON.stringify(opts) + r.text);
    }
    const direct = await expectNoChange(() => sendJson(raw, { target: 'direct', ts: now - 1000 }));
    assert.equal(direct.status, 401);
  });

  it('a replay within the window is a duplicate and changes nothing', async () => {
    const c = await newCall('be');
    const raw = JSON.stringify({ call_id: c.id, status: 'no-answer' });
    assert.equal((await sendJson(raw)).json.result, 'applied');
    const r = await expectNoChange(() => sendJson(raw, { ts: Math.floor(Date.now() / 1000) - 10 }));
    assert.equal(r.status, 200);
    assert.equal(r.json.result, 'duplicate');
  });

  it('the same report about a later attempt is not a duplicate', async () => {
    const c = await newCall('be');
    const raw = JSON.stringify({ call_id: c.id, status: 'busy' });
    assert.equal((await sendJson(raw)).json.result, 'applied');
    // the call was retried: attempt 2 under way
    await q("UPDATE dialer.scheduled_calls SET status = 'dialing', attempts = 2, finished_at = NULL WHERE id = $1", [c.id]);
    await q('INSERT INTO dialer.call_attempts (call_id, attempt, requested_at) VALUES ($1, 2, now())', [c.id]);
    const r = await sendJson(raw);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.result, 'applied');
    assert.equal(r.json.attempt, 2);
    assert.equal((await call(c.id)).status, 'busy');
    assert.equal((await attempt(c.id, 2)).provider_status, 'busy');
  });

  it('voice_api: the provider\'s own call id identifies the call', async () => {
    const c = await newCall('va', { callSid: 'va-' + sid('') });
    const raw = JSON.stringify({ call_id: c.callSid, status: 'in_progress', duration: null });
    const r = await sendJson(raw, { secret: VOICE_SECRET, target: 'direct' });
    assert.equal(r.status, 200, r.text);
    assert.equal((await attempt(c.id, 1)).provider_status, 'in-progress');
    const raw2 = JSON.stringify({ call_id: c.callSid, status: 'busy', transcript: [{ role: 'bot', text: 'hi' }] });
    assert.equal((await sendJson(raw2, { secret: VOICE_SECRET })).status, 200);
    assert.equal((await call(c.id)).status, 'busy');
    assert.deepEqual(JSON.parse((await attempt(c.id, 1)).transcript), [{ role: 'bot', text: 'hi' }]);
  });

  it('refuses malformed bodies, unknown calls and providers without a secret, changing nothing', async () => {
    const c = await newCall('be');
    const noSecret = await newCall('be_nosecret');
    const tw = await newCall('tw');
    for (const [raw, status] of [
      ['{"call_id": 1, "status": ', 400],
      ['[1,2,3]', 400],
      [JSON.stringify({ call_id: c.id }), 400],
      [JSON.stringify({ call_id: c.id, status: 'completed', duration: -5 }), 400],
      [JSON.stringify({ call_id: c.id, status: 'completed', metadata: 'x' }), 400],
      [JSON.stringify({ call_id: 99999999, status: 'completed' }), 403],
      [JSON.stringify({ call_id: noSecret.id, status: 'completed' }), 403],
      [JSON.stringify({ call_id: tw.id, status: 'completed' }), 403],
    ]) {
      const r = await expectNoChange(() => sendJson(raw));
      assert.equal(r.status, status, raw + ' ' + r.text);
    }
    const form = await expectNoChange(() => sendJson('call_id=1&status=completed', { contentType: FORM }));
    assert.ok(form.status === 404 || form.status === 400, form.text);
  });
});

describe('the webhook role can execute the ingest functions and nothing else', () => {
  let tables;
  let functions;
  before(async () => {
    tables = (await q("SELECT tablename FROM pg_tables WHERE schemaname = 'dialer' ORDER BY 1")).map((r) => r.tablename);
    functions = await q(`SELECT p.oid::regprocedure::text AS sig, p.proname,
                                array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) AS types,
                                p.prokind
                           FROM pg_proc p WHERE p.pronamespace = 'dialer'::regnamespace ORDER BY 1`);
    assert.ok(tables.length >= 6);
    assert.ok(functions.length >= 10);
  });

  it('dialer_api holds only the SECURITY DEFINER ingest functions, owned by the extension owner, search_path pinned', async () => {
    const rows = await q(`SELECT p.proname, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner) AS owner,
                                 (SELECT pg_get_userbyid(e.extowner) FROM pg_extension e WHERE e.extname = 'pg_dialer') AS extowner
                            FROM pg_proc p WHERE p.pronamespace = 'dialer_api'::regnamespace`);
    assert.deepEqual([...new Set(rows.map((r) => r.proname))].sort(), ['provider_status_callback', 'twilio_status_callback']);
    for (const r of rows) {
      assert.equal(r.prosecdef, true);
      assert.ok((r.proconfig || []).some((s) => /^search_path=pg_catalog, pg_temp$/.test(s)), String(r.proconfig));
      assert.equal(r.owner, r.extowner);
    }
    const [{ n }] = await q("SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'dialer_api'::regnamespace");
    assert.equal(n, 0, 'no relation in dialer_api');
  });

  it('through PostgREST: no table and no other function is reachable', async () => {
    for (const t of tables) {
      for (const [method, headers, body] of [
        ['GET', {}, undefined],
        ['GET', { 'Accept-Profile': 'dialer' }, undefined],
        ['POST', { 'Content-Type': 'application/json' }, '{}'],
        ['POST', { 'Content-Type': 'application/json', 'Content-Profile': 'dialer' }, '{}'],
        ['PATCH', { 'Content-Type': 'application/json', 'Content-Profile': 'dialer' }, '{"status":"completed"}'],
        ['DELETE', { 'Accept-Profile': 'dialer' }, undefined],
      ]) {
        const r = await expectNoChange(() => http.request(`${stack.postgrest}/${t}`, { method, headers, body }));
        assert.ok([404, 406].includes(r.status), `${method} ${t} ${JSON.stringify(headers)}: ${r.status} ${r.text}`);
      }
    }
    for (const f of functions) {
      for (const headers of [{}, { 'Content-Profile': 'dialer' }]) {
        const r = await expectNoChange(() => http.request(`${stack.postgrest}/rpc/${f.proname}`, {
          method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: '{}',
        }));
        assert.ok([404, 406].includes(r.status), `rpc ${f.proname} ${JSON.stringify(headers)}: ${r.status} ${r.text}`);
      }
    }
  });

  async function asWebhookRole(fn) {
    const { host, port } = pgEnv();
    const client = new Client({ host, port, user: 'dialer_webhook_authenticator', database: DB });
    await client.connect();
    try {
      await client.query('SET ROLE dialer_webhook');
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  async function denied(client, sql, what) {
    await client.query('SAVEPOINT s');
    try {
      await client.query(sql);
      assert.fail(`${what} succeeded as dialer_webhook: ${sql}`);
    } catch (e) {
      if (e.code === 'ERR_ASSERTION') throw e;
      assert.equal(e.code, '42501', `${what}: expected permission denied, got ${e.code} ${e.message}`);
    } finally {
      await client.query('ROLLBACK TO SAVEPOINT s');
    }
  }

  it('through SQL (SET ROLE dialer_webhook): every table refuses reads and writes', async () => {
    await expectNoChange(() => asWebhookRole(async (client) => {
      await client.query('BEGIN');
      for (const t of tables) {
        const [{ col }] = await q(`SELECT attname AS col FROM pg_attribute WHERE attrelid = $1::regclass
                                     AND attnum > 0 AND NOT attisdropped ORDER BY attnum LIMIT 1`, [`dialer.${t}`]);
        await denied(client, `SELECT * FROM dialer.${t} LIMIT 1`, `read ${t}`);
        await denied(client, `INSERT INTO dialer.${t} DEFAULT VALUES`, `insert ${t}`);
        await denied(client, `UPDATE dialer.${t} SET ${col} = ${col}`, `update ${t}`);
        await denied(client, `DELETE FROM dialer.${t}`, `delete ${t}`);
        await denied(client, `TRUNCATE dialer.${t}`, `truncate ${t}`);
      }
      await denied(client, 'SELECT auth_token FROM dialer.providers', 'read secrets');
      await client.query('ROLLBACK');
    }));
  });

  it('through SQL: every other function refuses to run', async () => {
    await expectNoChange(() => asWebhookRole(async (client) => {
      await client.query('BEGIN');
      for (const f of functions) {
        const args = f.types.map((t) => `NULL::${t}`).join(', ');
        const sql = f.prokind === 'p' ? `CALL ${f.sig.split('(')[0]}(${args})` : `SELECT ${f.sig.split('(')[0]}(${args})`;
        await denied(client, sql, `function ${f.sig}`);
      }
      await client.query('ROLLBACK');
      const [{ privs }] = (await client.query(`
        SELECT array_agg(x) FILTER (WHERE x IS NOT NULL) AS privs FROM (
          SELECT 'schema dialer' AS x WHERE has_schema_privilege('dialer', 'USAGE')
          UNION ALL SELECT 'table ' || c.oid::regclass FROM pg_class c
           WHERE c.relnamespace = 'dialer'::regnamespace
             AND has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
          UNION ALL SELECT 'function ' || p.oid::regprocedure FROM pg_proc p
           WHERE p.pronamespace = 'dialer'::regnamespace AND has_function_privilege(p.oid, 'EXECUTE')
        ) s`)).rows;
      // EXECUTE granted to PUBLIC on a harmless helper is still unreachable without USAGE on dialer
      assert.ok(!(privs || []).includes('schema dialer'), `USAGE on dialer: ${privs}`);
      assert.ok(!(privs || []).some((p) => p.startsWith('table ')), `table privileges: ${privs}`);
    }));
  });

  it('through SQL: the ingest functions run, and still refuse an unsigned call', async () => {
    await expectNoChange(() => asWebhookRole(async (client) => {
      for (const sql of [
        "SELECT dialer_api.provider_status_callback('{\"call_id\": 1, \"status\": \"completed\"}')",
        'SELECT dialer_api.twilio_status_callback(\'{"CallSid": "CA1", "CallStatus": "completed"}\'::json)',
        `SELECT dialer_api.twilio_status_callback("CallSid" => 'CA1', "CallStatus" => 'completed')`,
      ]) {
        await assert.rejects(client.query(sql), (e) => e.code === 'PT401', sql);
      }
    }));
  });

  it('through SQL: a temp table cannot stand in for pg_dialer\'s tables (search_path is pinned)', async () => {
    const c = await newCall('tw');
    // the webhook role cannot create one itself (deploy/roles.sql revokes TEMPORARY from PUBLIC)
    await asWebhookRole(async (client) => {
      await client.query('BEGIN');
      await denied(client, 'CREATE TEMP TABLE providers (name text)', 'CREATE TEMP TABLE');
      await client.query('ROLLBACK');
    });
    // nor would one in its session help: created by a role that may, then used as dialer_webhook
    const { host, port } = pgEnv();
    const owner = new Client({ host, port, user: 'postgres', database: DB });
    await owner.connect();
    await expectNoChange(() => (async (client) => {
      await client.query('BEGIN');
      const forged = 'forged-token';
      const url = `${PROVIDER_URL.proxy()}?call_id=${c.id}`;
      // a provider row of the attacker's, with a token he knows, where an unqualified name would look first
      await client.query(`CREATE TEMP TABLE providers AS
                          SELECT 'tw'::text AS name, 'twilio'::text AS kind, $1::text AS account_sid,
                                 $2::text AS auth_token, $3::text AS status_callback_url`,
      [ACCOUNT, forged, PROVIDER_URL.proxy()]);
      await client.query(`CREATE TEMP TABLE scheduled_calls AS SELECT $1::bigint AS id, 'tw'::text AS provider`, [c.id]);
      await client.query('GRANT SELECT ON providers, scheduled_calls TO dialer_webhook');
      await client.query('SET LOCAL ROLE dialer_webhook');
      const fields = twilioFields(c, 'completed', 3);
      const sig = twilio.getExpectedTwilioSignature(forged, url, fields);
      await client.query("SELECT set_config('request.headers', $1, true)",
        [JSON.stringify({ 'x-twilio-signature': sig, 'x-dialer-call-id': String(c.id), 'content-type': FORM })]);
      await assert.rejects(client.query('SELECT dialer_api.twilio_status_callback($1::json)', [JSON.stringify(fields)]),
        (e) => e.code === 'PT403');
      await client.query('ROLLBACK');
    })(owner)).finally(() => owner.end());
  });

  it('the login role itself (without SET ROLE) can do nothing', async () => {
    const { host, port } = pgEnv();
    const client = new Client({ host, port, user: 'dialer_webhook_authenticator', database: DB });
    await client.connect();
    try {
      await client.query('BEGIN');
      await denied(client, 'SELECT dialer_api.provider_status_callback(\'{}\')', 'authenticator runs ingest');
      await denied(client, 'SELECT * FROM dialer.scheduled_calls', 'authenticator reads calls');
      await client.query('ROLLBACK');
    } finally {
      await client.end();
    }
  });
});
