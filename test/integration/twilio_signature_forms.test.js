'use strict';
// X-Twilio-Signature: the URL forms Twilio's helper library (npm twilio, validateRequest)
// accepts, and every altered signature refused with nothing changed.
//
// 1. Differential test against the reference: for many configured URLs (a quote, spaces,
//    non-ASCII, upper-case host, default ports, escapes, repeated fields) and each form the
//    library may have signed (as configured, percent-encoded by a URL parser, its query
//    re-encoded by Node's legacy querystring, ports added or removed, and forms it does not
//    accept), dialer.twilio_signature_matches says what twilio.validateRequest says.
// 2. Through the ingest function, on a real call: a callback signed over the percent-encoded
//    StatusCallback URL (status_callback_url with Body=It's+amazing) is applied; a signature
//    cut to 1, 10 or 27 characters, with a character appended, or the base64 of a cut HMAC
//    is refused (PT403) and the call, its attempts and its events are exactly as before.
// Runs in its own database (no worker there).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const twilio = require('twilio');
const d = require('../lib/dialer');

const DB = 'dialer_sig_forms';
const TOKEN = '12345';
const ACCOUNT = 'AC' + '0'.repeat(31) + '9';
const PARAMS = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675309', Digits: '1234',
  From: '+14158675309', To: '+18005551212' };
let admin;
let db;

function legacyQuery(url) {
  const qs = require('node:querystring');
  const i = url.indexOf('?');
  if (i === -1 || i === url.length - 1) return url;
  return url.slice(0, i) + '?' + qs.stringify(qs.parse(url.slice(i + 1)));
}
function withPort(url) {
  const u = new URL(url);
  return u.port ? url : url.replace(/^(https?:\/\/[^/?#]+)/i, `$1:${u.protocol === 'https:' ? 443 : 80}`);
}
function withoutPort(url) { return url.replace(/^(https?:\/\/[^/?#:]+):(443|80)(?=[/?#]|$)/i, '$1'); }

async function matches(url, params, sig) {
  const r = await db.query('SELECT dialer.twilio_signature_matches($1, $2, $3::jsonb, $4) AS ok',
    [TOKEN, url, JSON.stringify(params), sig]);
  return r.rows[0].ok;
}

before(async () => {
  admin = await d.connect({ database: 'postgres' });
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${DB}`);
  db = await d.connect({ database: DB });
  await db.query('CREATE EXTENSION pg_dialer');
});

after(async () => {
  if (db) await db.end().catch(() => {});
  if (admin) {
    await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => {});
    await admin.end().catch(() => {});
  }
});

test('Twilio\'s vector with a quote in the query: the percent-encoded form is accepted, as by the helper library', async () => {
  const configured = "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It's+amazing";
  const signedUrl = 'https://mycompany.com/myapp.php?foo=1&bar=2&Body=It%27s+amazing';
  const sig = twilio.getExpectedTwilioSignature(TOKEN, signedUrl, PARAMS);
  assert.equal(twilio.validateRequest(TOKEN, sig, configured, PARAMS), true, 'the reference accepts it');
  assert.equal(await matches(configured, PARAMS, sig), true, 'pg_dialer accepts it');
  // and the signature over the URL as configured, of course
  assert.equal(await matches(configured, PARAMS, twilio.getExpectedTwilioSignature(TOKEN, configured, PARAMS)), true);
  // altered: another value, another field, another token, another URL
  const refused = [
    [configured, { ...PARAMS, Digits: '1235' }, sig],
    [configured, { ...PARAMS, Extra: '' }, sig],
    [configured, PARAMS, twilio.getExpectedTwilioSignature('54321', signedUrl, PARAMS)],
    [configured, PARAMS, twilio.getExpectedTwilioSignature(TOKEN, signedUrl.replace('amazing', 'amazinG'), PARAMS)],
    ["https://mycompany.com/myapp.php?foo=1&bar=2&Body=It's+amazin", PARAMS, sig],
  ];
  for (const [u, p, s] of refused) {
    assert.equal(twilio.validateRequest(TOKEN, s, u, p), false, `the reference refuses ${u} ${JSON.stringify(p)}`);
    assert.equal(await matches(u, p, s), false, `pg_dialer refuses ${u} ${JSON.stringify(p)}`);
  }
});

test('every URL form: pg_dialer accepts exactly what twilio.validateRequest accepts', async () => {
  const urls = [
    "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It's+amazing",
    'https://MyCompany.COM/Path/To?x=1',
    'https://h.example:443/cb?call_id=12',
    'http://h.example:80/cb',
    'https://h.example:8443/cb?a=b c',
    'https://h.example',
    'https://h.example/p ath/caf\u00e9?q=caf\u00e9&q=na\u00efve&r=a|b&s=%27&t=%zz',
    'https://h.example/cb?b=2&a=1&b=3&empty&=x&&plus=a+b',
    'https://h.example/cb?quote="x"&lt=<y>&tick=`z`&brace={}',
    'https://h.example/cb?msg=It%27s%20ok&e=%E2%82%AC',
    'https://hooks.example.com/twilio/status-callback?tag=It\'s+amazing&call_id=42',
  ];
  let checked = 0;
  let accepted = 0;
  for (const url of urls) {
    let norm;
    try { norm = new URL(url).toString(); } catch { norm = url; }
    const forms = new Set([url, withPort(url), withoutPort(url), norm, withPort(norm), withoutPort(norm),
      legacyQuery(norm), withPort(legacyQuery(norm)), withoutPort(legacyQuery(norm)),
      // forms the library does not accept
      legacyQuery(url), url.toLowerCase(), url + '&', url.replace(/\?/, '/?'), encodeURI(url), norm + '#']);
    for (const form of forms) {
      const sig = twilio.getExpectedTwilioSignature(TOKEN, form, PARAMS);
      const want = twilio.validateRequest(TOKEN, sig, url, PARAMS);
      assert.equal(await matches(url, PARAMS, sig), want,
        `configured ${url}, signed over ${form}: the reference says ${want}`);
      checked++;
      if (want) accepted++;
    }
  }
  // both outcomes occur (the comparison is not one-sided)
  assert.ok(accepted >= urls.length * 2, `accepted ${accepted} of ${checked}`);
  assert.ok(checked - accepted >= urls.length, `refused ${checked - accepted} of ${checked}`);
});

/* ------------------------------------------------------------------ through the ingest function */

async function setupCall(statusCallbackUrl) {
  await db.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
                    twiml_url, status_callback_url, calls_per_second)
                  VALUES ('sf_tw', 'twilio', 'https://api.twilio.example', $1, $2, '+15550100000',
                          'https://app.example.com/t.xml', $3, 100)
                  ON CONFLICT (name) DO UPDATE SET status_callback_url = EXCLUDED.status_callback_url`,
  [ACCOUNT, TOKEN, statusCallbackUrl]);
  const id = Number((await db.query(`SELECT dialer.enqueue_call('+15550100123', provider => 'sf_tw') AS id`)).rows[0].id);
  const c = await db.query(`SELECT id FROM dialer.claim_calls('sf_tw', 10, 'UTC', '00:00', '24:00', '')`);
  assert.deepEqual(c.rows.map((r) => Number(r.id)), [id]);
  const sid = 'CA' + crypto.randomBytes(16).toString('hex');
  await db.query(`SELECT dialer.record_results(ARRAY[$1::bigint], '{1}', '{accepted}', '{201}', ARRAY[$2],
                    '{NULL}', '{NULL}', '{NULL}', '{0}', ARRAY[now()])`, [id, sid]);
  return { id, sid };
}

async function state(id) {
  const r = await db.query(`SELECT (SELECT row_to_json(c)::text FROM dialer.scheduled_calls c WHERE c.id = $1) AS call,
                                   (SELECT json_agg(a ORDER BY a.attempt)::text FROM dialer.call_attempts a WHERE a.call_id = $1) AS attempts,
                                   (SELECT json_agg(e ORDER BY e.id)::text FROM dialer.call_events e WHERE e.call_id = $1) AS events`, [id]);
  return r.rows[0];
}

async function ingest(fields, sig, callRef) {
  await db.query(`SELECT set_config('request.headers', $1, false)`,
    [JSON.stringify({ 'x-twilio-signature': sig, 'content-type': 'application/x-www-form-urlencoded' })]);
  try {
    const r = await db.query('SELECT dialer.twilio_ingest($1::jsonb, $2) AS r', [JSON.stringify(fields), callRef]);
    return r.rows[0].r;
  } finally {
    await db.query(`SELECT set_config('request.headers', '', false)`);
  }
}

test('a callback signed over the percent-encoded StatusCallback URL is applied; cut or extended signatures change nothing', async () => {
  const configured = "https://hooks.example.com/twilio/status-callback?tag=It's+amazing";
  const { id, sid } = await setupCall(configured);
  const callbackUrl = (await db.query('SELECT dialer.twilio_callback_url($1, $2) AS u', [configured, id])).rows[0].u;
  assert.equal(callbackUrl, `${configured}&call_id=${id}`);
  // what Twilio signs: the URL as its HTTP stack sends it, percent-encoded
  const signedUrl = new URL(callbackUrl).toString();
  assert.notEqual(signedUrl, callbackUrl);
  const fields = { AccountSid: ACCOUNT, CallSid: sid, CallStatus: 'ringing', SequenceNumber: '1' };
  const good = twilio.getExpectedTwilioSignature(TOKEN, signedUrl, fields);
  assert.equal(good.length, 28);
  const hmac = crypto.createHmac('sha1', TOKEN)
    .update(Object.keys(fields).sort().reduce((a, k) => a + k + fields[k], signedUrl)).digest();
  assert.equal(hmac.toString('base64'), good, 'the test computes the HMAC as Twilio does');

  // the signature over the URL exactly as configured (the first form compared) is good too
  const plain = twilio.getExpectedTwilioSignature(TOKEN, callbackUrl, fields);
  const plainHmac = Buffer.from(plain, 'base64');

  const before = await state(id);
  const bad = [];
  for (const [form, sig, mac] of [['encoded', good, hmac], ['as configured', plain, plainHmac]]) {
    bad.push(
      [`${form}: cut to 1 character`, sig.slice(0, 1)],
      [`${form}: cut to 10 characters`, sig.slice(0, 10)],
      [`${form}: cut to 27 characters`, sig.slice(0, 27)],
      [`${form}: one character appended`, sig + 'A'],
      [`${form}: padding appended`, sig + '='],
      [`${form}: base64 of the HMAC cut to 19 bytes`, mac.subarray(0, 19).toString('base64')],
      [`${form}: base64 of the HMAC cut to 10 bytes`, mac.subarray(0, 10).toString('base64')],
      [`${form}: base64 of the HMAC with a byte appended`, Buffer.concat([mac, Buffer.from([0])]).toString('base64')]);
  }
  for (const [what, sig] of bad) {
    await assert.rejects(ingest(fields, sig, String(id)), (e) => e.code === 'PT403', `${what}: refused with PT403`);
    assert.deepEqual(await state(id), before, `${what}: nothing changed`);
  }
  const r0 = await ingest({ ...fields, CallStatus: 'initiated', SequenceNumber: '0' },
    twilio.getExpectedTwilioSignature(TOKEN, callbackUrl, { ...fields, CallStatus: 'initiated', SequenceNumber: '0' }), String(id));
  assert.equal(r0.result, 'applied', `signed over the URL as configured: ${JSON.stringify(r0)}`);
  const r = await ingest(fields, good, String(id));
  assert.equal(r.result, 'applied', `signed over the percent-encoded URL: ${JSON.stringify(r)}`);
  const after = await db.query('SELECT provider_status FROM dialer.scheduled_calls WHERE id = $1', [id]);
  assert.equal(after.rows[0].provider_status, 'ringing');
});
