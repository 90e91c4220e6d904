'use strict';
// Worker-placed Twilio calls with PostgREST alone (no nginx): the provider's
// status_callback_call_id = false makes the worker give Twilio the StatusCallback URL exactly
// as configured (PostgREST refuses a query string, PGRST100), and callbacks find their call
// by CallSid.  A callback that comes before the worker has stored the CallSid is kept in
// dialer.pending_callbacks and applied when the sid is stored: never dropped.
//
// Real parts: the worker, PostgREST 12 started with deploy/postgrest.conf and deploy/roles.sql
// on the worker's database (test/lib/webhook_stack.js), the Twilio simulator signing its
// callbacks with Twilio's helper library.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');
const { startWebhookStack } = require('../lib/webhook_stack.js');

const P = `it_direct_${process.pid % 100000}_`;
const providers = new Set();
let db;
let settings;
let tw;
let stack;
let tempWasPublic;

const simCallsTo = (to) => tw.control.calls(100000).filter((c) => c.to === to);
const createsTo = (to) => tw.control.requests(1000)
  .filter((r) => r.method === 'POST' && /\/Calls\.json$/.test(r.path) && r.body && r.body.To === to);

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  await d.workerPid(db);
  tempWasPublic = (await db.query(`SELECT has_database_privilege('public', current_database(), 'TEMPORARY') AS t`)).rows[0].t;
  // PostgREST on the worker's own database (roles.sql applied there)
  stack = await startWebhookStack({ database: d.DB, existingDatabase: true });
  tw = await d.startSim('twilio', { callbacks: true });
});

after(async () => {
  if (stack) await stack.stop().catch(() => {});
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    // roles.sql took TEMPORARY from PUBLIC in the suite's database: give it back for the other tests
    if (tempWasPublic) await db.query(`GRANT TEMPORARY ON DATABASE ${d.DB} TO PUBLIC`).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  if (tw) await tw.close();
});

async function provider(name) {
  providers.add(name);
  return d.createProvider(db, d.twilioProvider(name, tw, {
    twiml_url: 'https://app.example.com/t.xml',
    status_callback_url: `${stack.postgrest}/rpc/twilio_status_callback`,
  }));
}

test('the route check: PostgREST refuses a query string on the RPC (why the call id cannot ride in the URL)', async () => {
  const r = await fetch(`${stack.postgrest}/rpc/twilio_status_callback?call_id=1`, {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'CallSid=CA1&CallStatus=ringing',
  });
  const body = await r.text();
  assert.equal(r.status, 400, body);
  assert.match(body, /PGRST100/);
});

test('direct PostgREST: worker-placed calls get StatusCallback without a query string, and every callback is applied', async () => {
  const name = `${P}tw`;
  await provider(name);
  await db.query('UPDATE dialer.providers SET status_callback_call_id = false WHERE name = $1', [name]);
  const nums = ['+15550141003', '+15550141005', '+15550141007'];
  const ids = [];
  for (const n of nums) ids.push(await d.enqueue(db, n, { provider: name }));
  const rows = await d.waitForStatus(db, ids, ['completed'], { timeoutMs: 15000 });
  for (const [i, c] of rows.entries()) {
    const creates = createsTo(nums[i]);
    assert.equal(creates.length, 1, `one request for ${nums[i]}`);
    assert.equal(creates[0].body.StatusCallback, `${stack.postgrest}/rpc/twilio_status_callback`,
      'the StatusCallback URL exactly as configured, no query string');
    const [sc] = simCallsTo(nums[i]);
    assert.equal(c.provider_call_id, sc.sid);
    const ev = (await d.events(db, c.id)).filter((e) => e.event === 'callback')
      .map((e) => e.detail.provider_status || e.detail.fields.CallStatus);
    assert.deepEqual(ev, ['initiated', 'ringing', 'in-progress', 'completed'], `call ${c.id}: every callback applied, in order`);
  }
  const cbs = tw.control.callbacks(1000).filter((x) => rows.some((c) => c.provider_call_id === x.call_sid));
  assert.equal(cbs.length, 12);
  assert.deepEqual([...new Set(cbs.map((x) => x.http_status))], [200], 'PostgREST answered 200 to every callback');
  const left = await db.query('SELECT count(*)::int AS n FROM dialer.pending_callbacks WHERE provider_call_id = ANY($1)',
    [rows.map((c) => c.provider_call_id)]);
  assert.equal(left.rows[0].n, 0, 'nothing left pending');
});

test('direct PostgREST: callbacks that come before the worker stores the CallSid are kept, then applied in order', async () => {
  const name = `${P}tw_early`;
  await provider(name);
  await db.query('UPDATE dialer.providers SET status_callback_call_id = false WHERE name = $1', [name]);
  // the provider answers after 1.5 s: time to hold the call's row, so the worker cannot store the sid
  tw.control.configure({ latency: 1500 });
  const holder = await d.connect();
  try {
    const to = '+15550142007';
    const id = await d.enqueue(db, to, { provider: name });
    await d.waitForStatus(db, [id], ['dispatching'], { timeoutMs: 5000, intervalMs: 10 });
    await holder.query('BEGIN');
    await holder.query('SELECT id FROM dialer.scheduled_calls WHERE id = $1 FOR UPDATE', [id]);
    // the answer came, the worker waits for the row; Twilio's callbacks arrive meanwhile
    const sc = await d.waitFor(() => simCallsTo(to)[0], { timeoutMs: 5000, message: 'the simulator placed the call' });
    await d.waitFor(async () => {
      const r = await db.query('SELECT count(*)::int AS n FROM dialer.pending_callbacks WHERE provider_call_id = $1', [sc.sid]);
      return r.rows[0].n === 4;
    }, { timeoutMs: 5000, message: 'four callbacks kept pending' });
    const kept = await db.query(`SELECT sequence, fields->>'CallStatus' AS s FROM dialer.pending_callbacks
                                  WHERE provider_call_id = $1 ORDER BY sequence`, [sc.sid]);
    assert.deepEqual(kept.rows.map((r) => [Number(r.sequence), r.s]),
      [[0, 'initiated'], [1, 'ringing'], [2, 'in-progress'], [3, 'completed']]);
    const answers = tw.control.callbacks(1000).filter((x) => x.call_sid === sc.sid).map((x) => x.http_status);
    assert.deepEqual(answers, [200, 200, 200, 200], 'each was accepted (200), not refused or dropped');
    assert.equal((await d.calls(db, [id]))[0].status, 'dispatching');
    await holder.query('COMMIT');
    // the worker stores the sid: the kept callbacks are applied, in order, and removed
    const [c] = await d.waitForStatus(db, [id], ['completed'], { timeoutMs: 5000 });
    assert.equal(c.provider_call_id, sc.sid);
    const ev = (await d.events(db, id)).map((e) => e.event + (e.event === 'callback' ? `:${e.detail.fields.CallStatus}` : ''));
    assert.deepEqual(ev, ['enqueued', 'claimed', 'accepted', 'callback:initiated', 'callback:ringing',
      'callback:in-progress', 'callback:completed']);
    const [a] = await d.attempts(db, id);
    assert.equal(a.duration_seconds, 7, 'the attempt has the completed callback\'s CallDuration');
    const left = await db.query('SELECT count(*)::int AS n FROM dialer.pending_callbacks WHERE provider_call_id = $1', [sc.sid]);
    assert.equal(left.rows[0].n, 0);
  } finally {
    await holder.query('ROLLBACK').catch(() => {});
    await holder.end();
    tw.control.configure({ latency: 0 });
  }
});

test('a callback signed with the wrong token is refused and never kept', async () => {
  const name = `${P}tw_bad`;
  await provider(name);
  const twilio = require('twilio');
  const url = `${stack.postgrest}/rpc/twilio_status_callback`;
  const fields = { AccountSid: tw.control.config().accountSid, CallSid: 'CA' + 'e'.repeat(32), CallStatus: 'completed',
    SequenceNumber: '3' };
  const sig = twilio.getExpectedTwilioSignature('not-the-token', url, fields);
  const r = await fetch(url, { method: 'POST', body: new URLSearchParams(fields).toString(),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Twilio-Signature': sig } });
  assert.equal(r.status, 403, await r.text());
  const left = await db.query('SELECT count(*)::int AS n FROM dialer.pending_callbacks WHERE provider_call_id = $1', [fields.CallSid]);
  assert.equal(left.rows[0].n, 0);
});
