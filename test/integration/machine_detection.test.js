'use strict';
// Answering machines end to end (issue 23, items 1, 2 and the simulator's part of 7): the
// dispatcher sends each call to the Twilio simulator with the detection it asked for (the
// provider's, synchronous; or the call's payload, asynchronous), the simulator answers as a
// person, a machine with a beep, without, a fax or unknown (by the number called) and posts
// Twilio's signed callbacks through the shipped webhook deployment (nginx in front of
// PostgREST 12, test/lib/webhook_stack.js) into the dispatcher's database:
//   - synchronous: AnsweredBy on the status callbacks decides the attempt's class;
//   - asynchronous: AnsweredBy comes on its own callback (AsyncAmdStatusCallback, the call's
//     status callback URL) during the call, is kept on the attempt, and the final status
//     callback (without it) takes its class from it;
//   - every AnsweredBy value (and none) in both modes: answered, voicemail_no_message,
//     voicemail_left, fax;
//   - a verdict sent after the final status (late) and twice changes nothing; one for another
//     CallSid is unmatched and changes nothing; one wrongly signed is refused (403) and writes
//     nothing;
//   - README's example (section "Answering machines") runs as written, in a database of its own
//     with a provider 'default': the first call is stored, the second refused as it says.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55482 PGUSER=postgres DIALER_DB=dialer_test \
//     node --test test/integration/machine_detection.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('pg');
const twilio = require('twilio');
const d = require('../lib/dialer');
const { startWebhookStack, makeClient } = require('../lib/webhook_stack');

const P = 'it_amd_';
const SYNC = `${P}sync`;
const ASYNC = `${P}async`;
const PUBLIC_CALLBACK_URL = 'https://dialer.example.com/twilio/status-callback';

// the simulator's verdict by the number's last three digits, and the class each must give
const VERDICTS = [
  ['301', 'human', 'answered'],
  ['302', 'machine_start', 'voicemail_no_message'],
  ['303', 'machine_end_beep', 'voicemail_left'],
  ['304', 'machine_end_silence', 'voicemail_left'],
  ['305', 'machine_end_other', 'voicemail_left'],
  ['306', 'fax', 'fax'],
  ['307', 'unknown', 'answered'],
  ['308', 'absent', 'answered'],
];

let db; let settings; let sim; let hooks; let http;

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  sim = await d.startSim('twilio', { callbacks: true, outcomes: {},
    callbackDelays: { initiated: 0, ringing: 10, answered: 10, completed: 30 },
    answeredByNumbers: Object.fromEntries(VERDICTS.map(([n, v]) => [n, v])) });
  hooks = await startWebhookStack({ database: process.env.DIALER_DB || 'dialer_test', existingDatabase: true });
  sim.control.configure({ callbackTarget: hooks.proxy });
  http = makeClient();
  await d.createProvider(db, d.twilioProvider(SYNC, sim,
    { status_callback_url: PUBLIC_CALLBACK_URL, machine_detection: 'DetectMessageEnd' }));
  await d.createProvider(db, d.twilioProvider(ASYNC, sim, { status_callback_url: PUBLIC_CALLBACK_URL }));
  await d.workerPid(db);
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [SYNC, ASYNC]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  if (hooks) await hooks.stop();
  if (sim) await sim.close();
});

/* The call's attempt, its detection events and its final event, once its callbacks are all in. */
async function settled(id) {
  const [a] = await d.attempts(db, id);
  const evs = await d.events(db, id);
  return { a, evs, amd: evs.filter((e) => e.event === 'machine_detection'),
    final: evs.find((e) => e.to_status === 'completed' && e.from_status !== 'completed') };
}

/* Waits until the simulator has delivered every callback it scheduled. */
async function callbacksDone() {
  await d.waitFor(async () => {
    const s = sim.control.stats().callbacks;
    return s.pending === 0 && s.timers === 0;
  }, { timeoutMs: 10000, message: 'the simulator\'s callbacks delivered' });
}

async function enqueueAll(provider, suffix, payload) {
  const ids = [];
  for (const [n] of VERDICTS) {
    ids.push(await d.enqueue(db, `+1555060${suffix}${n}`, { provider, payload: { message: 'Your appointment is tomorrow.', ...payload } }));
  }
  await d.waitForStatus(db, ids, ['completed', 'failed', 'unknown'], { timeoutMs: 20000 });
  await callbacksDone();
  return ids;
}

test('synchronous detection (the provider\'s): AnsweredBy on the status callbacks gives every value its class', { timeout: 60000 }, async () => {
  const ids = await enqueueAll(SYNC, '1', {});
  for (const [i, [n, verdict, cls]] of VERDICTS.entries()) {
    const [c] = await d.calls(db, [ids[i]]);
    assert.equal(c.status, 'completed', `${n} ${verdict}: ${c.last_error}`);
    const { a, amd, final } = await settled(ids[i]);
    assert.equal(a.answered_by, verdict === 'absent' ? null : verdict, `${verdict}: answered_by on the attempt`);
    assert.equal(a.outcome, cls, `${verdict}: the attempt's class`);
    assert.equal(final.outcome, cls, `${verdict}: the completing event's class`);
    assert.equal(amd.length, 0, 'no detection callback in synchronous mode');
    const [r] = sim.control.requests(5, { call_id: String(ids[i]) });
    assert.equal(r.body.MachineDetection, 'DetectMessageEnd');
    assert.equal(r.body.AsyncAmd, undefined);
  }
});

test('asynchronous detection (the call\'s payload): the verdict comes on its own callback, the final status takes its class from it', { timeout: 60000 }, async () => {
  const ids = await enqueueAll(ASYNC, '2', { machine_detection: 'DetectMessageEnd', async_amd: true });
  for (const [i, [n, verdict, cls]] of VERDICTS.entries()) {
    const [c] = await d.calls(db, [ids[i]]);
    assert.equal(c.status, 'completed', `${n} ${verdict}: ${c.last_error}`);
    const { a, amd, final, evs } = await settled(ids[i]);
    const [r] = sim.control.requests(5, { call_id: String(ids[i]) });
    assert.equal(r.body.AsyncAmd, 'true');
    assert.match(r.body.AsyncAmdStatusCallback, new RegExp(`^${PUBLIC_CALLBACK_URL}\\?call_id=${ids[i]}$`));
    // the status callbacks carry no AnsweredBy in this mode: the verdict is the detection callback's
    assert.ok(evs.filter((e) => e.event === 'callback').every((e) => !('AnsweredBy' in e.detail.fields)));
    assert.equal(a.answered_by, verdict === 'absent' ? null : verdict, `${verdict}: answered_by on the attempt`);
    assert.equal(a.outcome, cls, `${verdict}: the attempt's class`);
    assert.equal(final.outcome, cls, `${verdict}: the completing event's class`);
    if (verdict === 'absent') {
      assert.equal(amd.length, 0);
    } else {
      assert.deepEqual(amd.map((e) => [e.detail.result, e.detail.answered_by]), [['applied', verdict]], `${verdict}: one verdict applied`);
      assert.ok(Number(amd[0].id) < Number(final.id), 'the verdict came before the final status');
      assert.equal(amd[0].detail.fields.MachineDetectionDuration, '2150', 'the event keeps what Twilio said');
    }
  }
});

test('a verdict after the final status, sent twice, changes nothing: the call stays answered', { timeout: 60000 }, async () => {
  sim.control.configure({ amdCallbackLate: true, amdCallbackRepeat: 2 });
  try {
    const id = await d.enqueue(db, '+15550603302', { provider: ASYNC,
      payload: { message: 'Hello.', machine_detection: 'Enable', async_amd: true } });
    await d.waitForStatus(db, [id], ['completed'], { timeoutMs: 20000 });
    await callbacksDone();
    const { a, amd } = await settled(id);
    const sent = sim.control.callbacks(1000).filter((cb) => String(cb.call_id) === String(id) && cb.event === 'amd');
    assert.equal(sent.length, 2, 'the simulator sent the verdict twice');
    assert.ok(sent.every((cb) => cb.http_status === 200), `both accepted: ${JSON.stringify(sent)}`);
    assert.equal(a.outcome, 'answered', 'the class decided at the final status stays');
    assert.equal(a.answered_by, null, 'the attempt is not changed by the late verdict');
    assert.deepEqual(amd.map((e) => e.detail.result), ['late'], 'recorded once as late; the repeat wrote nothing');
  } finally {
    sim.control.configure({ amdCallbackLate: false, amdCallbackRepeat: 1 });
  }
});

test('a verdict for another CallSid is unmatched, and a forged one is refused; neither changes the call', { timeout: 60000 }, async () => {
  const id = await d.enqueue(db, '+15550604302', { provider: ASYNC,
    payload: { message: 'Hello.', machine_detection: 'Enable', async_amd: true } });
  await d.waitForStatus(db, [id], ['completed'], { timeoutMs: 20000 });
  await callbacksDone();
  const before = JSON.stringify([await d.calls(db, [id]), await d.attempts(db, id)]);
  const eventsBefore = (await d.events(db, id)).length;
  const url = `${PUBLIC_CALLBACK_URL}?call_id=${id}`;
  const cfg = sim.control.config();
  const post = (fields, signature) => http.request(`${hooks.proxy}/twilio/status-callback?call_id=${id}`, {
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Twilio-Signature': signature },
    body: new URLSearchParams(fields).toString() });
  const other = { AccountSid: cfg.accountSid, CallSid: 'CA' + 'f'.repeat(32), AnsweredBy: 'fax' };
  const r1 = await post(other, twilio.getExpectedTwilioSignature('0123456789abcdef0123456789abcdef', url, other));
  assert.equal(r1.status, 200, r1.text);
  assert.equal(JSON.parse(r1.text).result, 'unmatched');
  const [c] = await d.calls(db, [id]);
  const mine = { AccountSid: cfg.accountSid, CallSid: c.provider_call_id, AnsweredBy: 'fax' };
  const r2 = await post(mine, twilio.getExpectedTwilioSignature('not-the-auth-token', url, mine));
  assert.equal(r2.status, 403, r2.text);
  assert.equal(JSON.stringify([await d.calls(db, [id]), await d.attempts(db, id)]), before, 'call and attempt unchanged');
  const evs = await d.events(db, id);
  assert.deepEqual(evs.slice(eventsBefore).map((e) => [e.event, e.detail.result]), [['machine_detection', 'unmatched']],
    'the unmatched verdict is recorded, the forged one not at all');
});

test('README\'s example of machine detection runs as written', { timeout: 60000 }, async () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Answering machines'));
  const block = /```sql\n([\s\S]*?)```/.exec(section)[1];
  const statements = block.split(/;\s*\n/).map((x) => x.trim()).filter((x) => /SELECT/.test(x));
  assert.equal(statements.length, 2, block);
  const name = 'dialer_amd_readme';
  await db.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await db.query(`CREATE DATABASE ${name}`);
  const c = new Client({ host: process.env.PGHOST, port: process.env.PGPORT, user: process.env.PGUSER, database: name });
  await c.connect();
  try {
    await c.query('SET client_min_messages = error');
    await c.query('CREATE EXTENSION pg_dialer');
    await c.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, status_callback_url)
                   VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC' || repeat('0', 32), 'tok', '+15550100000', $1)`,
    [PUBLIC_CALLBACK_URL]);
    const { rows: [r] } = await c.query(statements[0]);
    const id = Object.values(r)[0];
    const { rows: [call] } = await c.query('SELECT status, payload FROM dialer.scheduled_calls WHERE id = $1', [id]);
    assert.equal(call.status, 'scheduled');
    assert.equal(call.payload.machine_detection, 'DetectMessageEnd');
    const err = await c.query(statements[1]).then(() => null, (e) => e);
    assert.ok(err, 'the second call is refused');
    assert.equal(err.message, "invalid payload.send_digits: '1234#'");
    assert.match(block, new RegExp(`ERROR:  ${err.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'README shows the error');
    assert.match(err.detail, /^payload\.send_digits and machine detection \(MachineDetection=DetectMessageEnd, from payload\.machine_detection\) cannot go together/);
    const { rows: [n] } = await c.query('SELECT count(*)::int AS n FROM dialer.scheduled_calls');
    assert.equal(n.n, 1, 'the refused call wrote nothing');
  } finally {
    await c.end();
    await db.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
});
