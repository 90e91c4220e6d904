'use strict';
// Prism (mock mode, --errors) against Twilio's OpenAPI description: the harness can trust it to
// accept a conforming Calls create request and to refuse a broken one. Run: node --test test/sim/

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startPrism } = require('./prism');
const { patchSpec, writePatchedSpec, DEFAULT_SPEC, CALLS_PATH, PATCH_MARK } = require('./prism-spec');
const { request, basic, formEncode } = require('./http-util');

const ACC = 'AC' + '0123456789abcdef'.repeat(2);
const AUTH = basic(ACC, 'any-token'); // Prism checks that Basic credentials are present, not their value
const FORM = 'application/x-www-form-urlencoded';

function validCreate(over = {}) {
  return {
    To: '+15551234567', From: '+15557654321', Url: 'https://app.example.com/twiml?call_id=17',
    StatusCallback: 'https://hooks.example.com/rpc/twilio_status?call_id=17',
    StatusCallbackMethod: 'POST',
    StatusCallbackEvent: ['initiated', 'ringing', 'answered', 'completed'],
    Timeout: 30, MachineDetection: 'Enable', ...over,
  };
}

test('the test copy of the spec differs from Twilio\'s only by explicit form encodings', () => {
  const orig = JSON.parse(fs.readFileSync(DEFAULT_SPEC, 'utf8'));
  const { spec, changes } = patchSpec(orig);
  assert.deepEqual(changes.map((c) => c.replace(/.* encoding\.(\w+) .*/, '$1')),
    ['StatusCallbackEvent', 'RecordingStatusCallbackEvent']);
  const media = spec.paths[CALLS_PATH].post.requestBody.content[FORM];
  assert.deepEqual(media.encoding.StatusCallbackEvent, { style: 'form', explode: true });
  assert.equal(orig.paths[CALLS_PATH].post.requestBody.content[FORM].encoding, undefined, 'shared spec untouched');
  // undo the two additions: the rest must be identical
  delete media.encoding;
  delete spec.info[PATCH_MARK];
  assert.deepEqual(spec, orig);
});

test('Prism mock validates Twilio Calls create requests', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-test-'));
  const patchedSpec = path.join(dir, 'patched.json');
  writePatchedSpec(patchedSpec);
  // the unpatched shared spec, for contrast (Prism reads it, nothing writes to it)
  const [prism, raw] = await Promise.all([startPrism({ port: 0, spec: patchedSpec }), startPrism({ port: 0, spec: DEFAULT_SPEC })]);
  t.diagnostic(`prism startup: ${prism.startupMs.toFixed(0)} ms (patched), ${raw.startupMs.toFixed(0)} ms (raw), started concurrently`);
  t.after(async () => {
    await prism.close(); await raw.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const create = (p, form, headers = { Authorization: AUTH }, acc = ACC) => request(
    `${p.url}/2010-04-01/Accounts/${acc}/Calls.json`, { method: 'POST', form, headers });

  await t.test('valid create (form, Basic, StatusCallbackEvent x4, Timeout, MachineDetection): 2xx', async () => {
    const r = await create(prism, validCreate());
    assert.ok(r.status >= 200 && r.status < 300, `${r.status} ${r.text.slice(0, 500)}`);
    assert.equal(r.status, 201);
    assert.match(r.json.sid, /^CA[0-9a-f]{32}$/);
    // the body really carried the field four times
    assert.match(new URLSearchParams(formEncode(validCreate())).getAll('StatusCallbackEvent').join(','),
      /^initiated,ringing,answered,completed$/);
  });

  await t.test('valid create with Twiml instead of Url, and a charset in Content-Type: 201', async () => {
    const r = await create(prism, validCreate({ Url: undefined, Twiml: '<Response><Say>Hello &amp; bye</Say></Response>' }));
    assert.equal(r.status, 201, r.text.slice(0, 500));
    const body = formEncode(validCreate());
    const r2 = await request(`${prism.url}/2010-04-01/Accounts/${ACC}/Calls.json`, { method: 'POST', body,
      headers: { Authorization: AUTH, 'Content-Type': `${FORM}; charset=utf-8` } });
    assert.equal(r2.status, 201, r2.text.slice(0, 500));
  });

  await t.test('missing To: 422 naming the field', async () => {
    const r = await create(prism, validCreate({ To: undefined }));
    assert.equal(r.status, 422, r.text.slice(0, 500));
    assert.match(r.headers['content-type'], /application\/problem\+json/);
    assert.ok(r.json.validation.some((v) => /required property 'To'/.test(v.message)), r.text);
  });

  await t.test('other violations: bad StatusCallbackMethod, non-integer Timeout, bad AccountSid: 422; JSON body: 415; no auth: 401', async () => {
    assert.equal((await create(prism, validCreate({ StatusCallbackMethod: 'PUT' }))).status, 422);
    assert.equal((await create(prism, validCreate({ Timeout: 'soon' }))).status, 422);
    assert.equal((await create(prism, validCreate(), { Authorization: AUTH }, 'ACshort')).status, 422);
    const js = await request(`${prism.url}/2010-04-01/Accounts/${ACC}/Calls.json`, { method: 'POST',
      json: validCreate(), headers: { Authorization: AUTH } });
    assert.equal(js.status, 415);
    assert.equal((await create(prism, validCreate(), {})).status, 401);
  });

  await t.test('why the test copy exists: the unpatched spec refuses StatusCallbackEvent', async () => {
    const r = await create(raw, validCreate());
    assert.equal(r.status, 422);
    assert.ok(r.json.validation.some((v) => /StatusCallbackEvent must be array/.test(v.message)), r.text);
    const without = await create(raw, validCreate({ StatusCallbackEvent: undefined }));
    assert.equal(without.status, 201, without.text.slice(0, 300));
  });

  await t.test('close() kills the Prism process by its PID', async () => {
    const pid = raw.pid;
    await raw.close();
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' });
  });
});
