'use strict';
// The worker with calling windows and locked rows, end to end against the Twilio simulator:
//   - a due call another session holds locked does not stall the other due calls (the claim
//     skips locked rows), and is dispatched once the lock goes;
//   - a call parked for its calling window is dispatched at once when the window settings
//     are widened and reloaded (SIGHUP), and moved to the new opening when they are moved;
//   - a parked call whose campaign window is widened is dispatched at once.
// Zones are chosen from the clock so that each case holds whatever the hour of the run.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const P = `it_wl_${process.pid % 100000}_`;
const providers = new Set();
const campaigns = [];
let db;
let settings;
let tw;

// Etc/GMT-14 .. Etc/GMT+12: every offset, so every local hour exists somewhere now
const ZONES = [];
for (let h = -14; h <= 12; h++) ZONES.push(h === 0 ? 'Etc/GMT' : `Etc/GMT${h > 0 ? '+' : ''}${h}`);
/** A zone where the local time now is within [from, to) (hh:mm strings), chosen by the server's clock. */
async function zoneAt(from, to) {
  const r = await db.query(`SELECT z FROM unnest($1::text[]) z
                             WHERE (now() AT TIME ZONE z)::time >= $2::time AND (now() AT TIME ZONE z)::time < $3::time
                             ORDER BY z LIMIT 1`, [ZONES, from, to]);
  assert.equal(r.rows.length, 1, `a zone where it is between ${from} and ${to}`);
  return r.rows[0].z;
}
const count = (id) => tw.control.counts()[String(id)] || 0;
const eventNames = async (id) => (await d.events(db, id)).map((e) => e.event);

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  await d.workerPid(db);
  tw = await d.startSim('twilio');
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    if (campaigns.length) await db.query('DELETE FROM dialer.campaigns WHERE name = ANY($1)', [campaigns]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  if (tw) await tw.close();
});

async function provider(name, extra = {}) {
  providers.add(name);
  return d.createProvider(db, d.twilioProvider(name, tw, { twiml_url: 'https://app.example.com/t.xml', ...extra }));
}

test('a due call another session holds locked does not stall the other due calls', async () => {
  const name = `${P}lock`;
  await provider(name, { enabled: false });
  // the locked call is first in claim order (highest priority)
  const locked = await d.enqueue(db, '+15550131001', { provider: name, priority: 100 });
  const others = [];
  for (let i = 2; i <= 6; i++) others.push(await d.enqueue(db, `+1555013100${i}`, { provider: name }));
  const holder = await d.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT id FROM dialer.scheduled_calls WHERE id = $1 FOR UPDATE', [locked]);
    await d.setProvidersEnabled(db, [name], true);
    const rows = await d.waitForStatus(db, others, ['dialing'], { timeoutMs: 8000 });
    assert.equal(rows.length, 5);
    for (const id of others) assert.equal(count(id), 1, `call ${id} sent once`);
    const [l] = await d.calls(db, [locked]);
    assert.equal(l.status, 'scheduled', 'the locked call is left to its holder');
    assert.equal(count(locked), 0);
  } finally {
    await holder.query('ROLLBACK').catch(() => {});
    await holder.end();
  }
  // once the lock is gone it is dispatched too (the worker looks again: wake it)
  await db.query('SELECT dialer.wake_worker()');
  await d.waitForStatus(db, [locked], ['dialing'], { timeoutMs: 8000 });
  assert.equal(count(locked), 1);
});

test('a parked call is dispatched at once when the window settings are widened and reloaded', async () => {
  const name = `${P}reload`;
  await provider(name);
  // the call's zone is at 13:00-15:00 local now; the server window 08:00-09:00 is closed there
  const z = await zoneAt('13:00', '15:00');
  await settings.set({ 'dialer.call_window_start': '08:00', 'dialer.call_window_end': '09:00' });
  const id = await d.enqueue(db, '+15550132001', { provider: name, timezone: z });
  await d.waitFor(async () => (await eventNames(id)).includes('window_wait'), { timeoutMs: 5000, message: 'window_wait' });
  const parked = (await db.query(`SELECT status, to_char(next_attempt_at AT TIME ZONE $2, 'HH24:MI') AS local,
                                         next_attempt_at > now() + interval '12 hours' AS tomorrow
                                    FROM dialer.scheduled_calls WHERE id = $1`, [id, z])).rows[0];
  assert.deepEqual(parked, { status: 'scheduled', local: '08:00', tomorrow: true }, 'parked until tomorrow 08:00 local');

  // the window moved to one opening later today (local 16:00-17:00): the wake-up moves with it
  await settings.set({ 'dialer.call_window_start': '16:00', 'dialer.call_window_end': '17:00' }, { settleMs: 0 });
  await d.waitFor(async () => {
    const r = await db.query(`SELECT to_char(next_attempt_at AT TIME ZONE $2, 'HH24:MI') AS local,
                                     next_attempt_at < now() + interval '4 hours' AS today
                                FROM dialer.scheduled_calls WHERE id = $1`, [id, z]);
    return r.rows[0].local === '16:00' && r.rows[0].today;
  }, { timeoutMs: 5000, message: 'the wake-up moved to today 16:00 local', describe: () => d.describeCalls(db, [id]) });
  const ev = (await d.events(db, id)).filter((e) => e.event === 'window_wait');
  assert.equal(ev.length, 2);
  assert.equal(ev[1].detail.reason, 'calling window changed');
  assert.equal(ev[1].detail.window_start, '16:00:00');
  assert.equal(count(id), 0, 'still not sent');

  // widened to include now: dispatched at once, not at the old opening
  await settings.set(d.OPEN_WINDOW, { settleMs: 0 });
  await d.waitForStatus(db, [id], ['dialing'], { timeoutMs: 5000 });
  assert.equal(count(id), 1);
});

test('a call falls due on both sides of its window: before the opening today, after the end the next day', async () => {
  const name = `${P}sides`;
  await provider(name);
  await settings.set({ 'dialer.call_window_start': '08:00', 'dialer.call_window_end': '21:00' });
  const early = await zoneAt('04:00', '06:00');
  const late = await zoneAt('22:00', '23:30');
  const ids = [await d.enqueue(db, '+15550133001', { provider: name, timezone: early }),
    await d.enqueue(db, '+15550133002', { provider: name, timezone: late })];
  await d.waitFor(async () => {
    const r = await db.query(`SELECT count(*)::int AS n FROM dialer.call_events WHERE call_id = ANY($1) AND event = 'window_wait'`, [ids]);
    return r.rows[0].n === 2;
  }, { timeoutMs: 5000, message: 'both parked' });
  const r = await db.query(`
    SELECT c.id, to_char(c.next_attempt_at AT TIME ZONE c.timezone, 'HH24:MI') AS local,
           (c.next_attempt_at AT TIME ZONE c.timezone)::date - (now() AT TIME ZONE c.timezone)::date AS days
      FROM dialer.scheduled_calls c WHERE c.id = ANY($1) ORDER BY c.id`, [ids]);
  assert.deepEqual(r.rows.map((x) => [Number(x.id), x.local, x.days]),
    [[ids[0], '08:00', 0], [ids[1], '08:00', 1]],
    `before the opening (${early}): today 08:00; after the end (${late}): tomorrow 08:00`);
  for (const id of ids) assert.equal(count(id), 0);
  await settings.set(d.OPEN_WINDOW);
});

test('a parked call is dispatched at once when its campaign\'s window is widened', async () => {
  const name = `${P}camp`;
  await provider(name);
  const z = await zoneAt('13:00', '15:00');
  const camp = `${P}camp`;
  campaigns.push(camp);
  await db.query(`CREATE OR REPLACE VIEW public.it_wl_src AS SELECT 'x'::text AS customer_ref, '+15550134000'::text AS phone`);
  await db.query(`INSERT INTO dialer.campaigns (name, source, provider, call_window_start, call_window_end, timezone)
                  VALUES ($1, 'public.it_wl_src', $2, '08:00', '09:00', $3)`, [camp, name, z]);
  try {
    const id = await d.enqueue(db, '+15550134001', { provider: name, campaign: camp });
    await d.waitFor(async () => (await eventNames(id)).includes('window_wait'), { timeoutMs: 5000, message: 'parked by the campaign window' });
    assert.equal(count(id), 0);
    await db.query(`UPDATE dialer.campaigns SET call_window_end = '23:59' WHERE name = $1`, [camp]);
    await d.waitForStatus(db, [id], ['dialing'], { timeoutMs: 5000 });
    assert.equal(count(id), 1);
  } finally {
    await db.query('DELETE FROM dialer.campaigns WHERE name = $1', [camp]).catch(() => {});
    await db.query('DROP VIEW IF EXISTS public.it_wl_src').catch(() => {});
  }
});
