'use strict';
// Campaigns against the real cluster:
//  1. run_campaign's guarantee under real concurrency: many sessions running one campaign at
//     once never schedule a customer twice and never exceed the daily cap (own database,
//     dialer_campaigns_test, so the dispatcher never sees these calls);
//  2. a campaign scheduled with dialer.schedule_campaign() really fired by pg_cron, at a local
//     minute of its own time zone (in $DIALER_DB, the database named by cron.database_name);
//  3. each example of examples/ loaded with psql, producing the calls it promises (providers
//     disabled, so the live dispatcher leaves them alone), loaded again changing nothing;
//  4. examples end to end against the provider simulators, through the live dispatcher.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh (pg_cron
// and pg_dialer created in dialer_test):
//   PGHOST=127.0.0.1 PGPORT=55452 PGUSER=postgres DIALER_DB=dialer_test \
//     node --test test/integration/campaigns.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const d = require('../lib/dialer');

const REPO = path.resolve(__dirname, '..', '..');
const CONC_DB = 'dialer_campaigns_test';
const PSQL = process.env.DIALER_PGBIN ? path.join(process.env.DIALER_PGBIN, 'psql') : 'psql';

/** Loads an SQL file with psql into db (ON_ERROR_STOP); vars are psql -v settings. */
function psqlFile(file, { db = d.DB, vars = {} } = {}) {
  const c = d.connInfo(db);
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', c.host, '-p', String(c.port), '-U', c.user, '-d', db];
  for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
  args.push('-f', path.join(REPO, file));
  const r = spawnSync(PSQL, args, { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`psql -f ${file} failed (${r.status}): ${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/* ====================================================================== 1. concurrency */

let root;   // on postgres: creates and drops the concurrency database
let admin;  // on the concurrency database

test.before(async () => {
  root = await d.connect({ database: 'postgres' });
  await root.query(`DROP DATABASE IF EXISTS ${CONC_DB} WITH (FORCE)`);
  await root.query(`CREATE DATABASE ${CONC_DB}`);
  admin = await d.connect({ database: CONC_DB });
  await admin.query('CREATE EXTENSION pg_dialer');
  await admin.query(`INSERT INTO dialer.providers (name, kind, base_url, enabled)
                     VALUES ('conc', 'voice_api', 'http://127.0.0.1:9', false)`);
  // 40 customers.  Every insert into the queue is slowed down (10 ms), so a run's enqueueing
  // overlaps the other runs' reading of the candidates; the shuffled source gives each run
  // its own order (random due_at), so without the campaign lock runs would pick different
  // customers and exceed the cap (and deadlock on each other's dedupe keys).
  await admin.query(`CREATE SCHEMA app;
    CREATE TABLE app.customers AS
      SELECT g AS id, '+1415555' || lpad(g::text, 4, '0') AS phone FROM generate_series(1, 40) g;
    CREATE FUNCTION app.candidates() RETURNS TABLE (customer_ref text, phone text)
      LANGUAGE sql AS $$ SELECT c.id::text, c.phone FROM app.customers c $$;
    CREATE FUNCTION app.shuffled() RETURNS TABLE (customer_ref text, phone text, due_at timestamptz)
      LANGUAGE sql AS $$ SELECT c.id::text, c.phone, now() + random() * interval '12 hours' FROM app.customers c $$;
    CREATE FUNCTION app.slow_insert() RETURNS trigger
      LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$;
    CREATE TRIGGER slow_insert BEFORE INSERT ON dialer.scheduled_calls
      FOR EACH ROW EXECUTE FUNCTION app.slow_insert();`);
});

test.after(async () => {
  if (admin) await admin.end().catch(() => {});
  if (root) {
    await root.query(`DROP DATABASE IF EXISTS ${CONC_DB} WITH (FORCE)`).catch(() => {});
    await root.end().catch(() => {});
  }
});

test('run_campaign from many sessions at once schedules nobody twice and keeps the daily cap', async (t) => {
  const sessions = [];
  t.after(async () => { for (const c of sessions) await c.end().catch(() => {}); });
  await admin.query(`INSERT INTO dialer.campaigns (name, source, provider) VALUES
    ('conc_all', 'app.candidates()', 'conc'),
    ('conc_cap', 'app.shuffled()', 'conc')`);
  await admin.query(`UPDATE dialer.campaigns SET max_calls_per_day = 15 WHERE name = 'conc_cap'`);

  const N = 8;
  for (let i = 0; i < N; i++) sessions.push(await d.connect({ database: CONC_DB }));

  // Round after round, all sessions start the same campaign at the same moment.
  for (const [campaign, expected] of [['conc_all', 40], ['conc_cap', 15]]) {
    const results = await Promise.all(sessions.map((s) =>
      s.query('SELECT dialer.run_campaign($1) AS n', [campaign]).then((r) => r.rows[0].n)));
    const sum = results.reduce((a, b) => a + b, 0);
    const r = await admin.query(`SELECT count(*)::int AS calls, count(DISTINCT customer_ref)::int AS customers,
                                        count(DISTINCT to_number)::int AS numbers, count(DISTINCT dedupe_key)::int AS keys
                                   FROM dialer.scheduled_calls WHERE campaign = $1`, [campaign]);
    assert.equal(sum, expected, `${campaign}: the runs together report ${expected} enqueued (got ${results})`);
    assert.deepEqual(r.rows[0], { calls: expected, customers: expected, numbers: expected, keys: expected },
      `${campaign}: ${expected} calls, each to a different customer`);
    assert.equal(results.filter((n) => n > 0).length, 1, `${campaign}: one run enqueued everything, the others found nothing left`);

    // again, all at once: nothing more
    const again = await Promise.all(sessions.map((s) =>
      s.query('SELECT dialer.run_campaign($1) AS n', [campaign]).then((x) => x.rows[0].n)));
    assert.deepEqual(again, Array(N).fill(0), `${campaign}: a second round enqueues nobody`);
  }
});

test('a run waits for a concurrent run of the same campaign and then sees its calls', async (t) => {
  const a = await d.connect({ database: CONC_DB });
  const b = await d.connect({ database: CONC_DB });
  const obs = await d.connect({ database: CONC_DB });
  t.after(async () => { for (const c of [a, b, obs]) await c.end().catch(() => {}); });

  await a.query(`INSERT INTO dialer.campaigns (name, source, provider, max_calls_per_day)
                 VALUES ('conc_race', 'app.candidates()', 'conc', 25)`);
  await a.query('BEGIN');
  const first = (await a.query(`SELECT dialer.run_campaign('conc_race') AS n`)).rows[0].n;
  assert.equal(first, 25, 'the first session fills the cap of 25 (uncommitted)');

  const bPid = (await b.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  const second = b.query(`SELECT dialer.run_campaign('conc_race') AS n`);
  await d.waitFor(async () => {
    const r = await obs.query(`SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1`, [bPid]);
    return r.rows.length && r.rows[0].wait_event_type === 'Lock' && r.rows[0].wait_event === 'advisory';
  }, { timeoutMs: 10000, message: 'the second run to wait on the campaign lock' });
  await a.query('COMMIT');
  assert.equal((await second).rows[0].n, 0, 'the second run, once the first committed, finds the cap used up');

  // A rolled-back run leaves everything to the next one.
  await a.query(`UPDATE dialer.campaigns SET max_calls_per_day = 30 WHERE name = 'conc_race'`);
  await a.query('BEGIN');
  assert.equal((await a.query(`SELECT dialer.run_campaign('conc_race') AS n`)).rows[0].n, 5);
  const third = b.query(`SELECT dialer.run_campaign('conc_race') AS n`);
  await d.sleep(200);
  await a.query('ROLLBACK');
  assert.equal((await third).rows[0].n, 5, 'after a rollback the waiting run enqueues the same five');

  const r = await obs.query(`SELECT count(*)::int AS n, count(DISTINCT customer_ref)::int AS c
                               FROM dialer.scheduled_calls WHERE campaign = 'conc_race'`);
  assert.deepEqual(r.rows[0], { n: 30, c: 30 });

  await b.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await assert.rejects(b.query(`SELECT dialer.run_campaign('conc_race')`),
    (e) => e.code === '0A000' && /READ COMMITTED/.test(e.message), 'REPEATABLE READ is refused with 0A000');
  await b.query('ROLLBACK');
});

/* ====================================================================== 2. pg_cron */

test('a campaign scheduled with schedule_campaign is fired by pg_cron at its local minute', { timeout: 150000 }, async (t) => {
  const db = await d.connect();
  t.after(async () => {
    await db.query(`SELECT dialer.unschedule_campaign('it_cron_kolkata')`).catch(() => {});
    await db.query(`DELETE FROM dialer.campaigns WHERE name = 'it_cron_kolkata'`).catch(() => {});
    await d.dropProviders(db, ['it_cron_off']).catch(() => {});
    await db.query('DROP SCHEMA IF EXISTS it_cron CASCADE').catch(() => {});
    await db.end();
  });
  await d.ensureExtension(db);
  const cron = await db.query(`SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'`);
  assert.equal(cron.rows.length, 1, `pg_cron must be installed in ${d.DB} (cron.database_name)`);

  await d.createProvider(db, { name: 'it_cron_off', kind: 'voice_api', base_url: 'http://127.0.0.1:9', enabled: false });
  await db.query(`DROP SCHEMA IF EXISTS it_cron CASCADE; CREATE SCHEMA it_cron;
    CREATE VIEW it_cron.people AS SELECT 'k1'::text AS customer_ref, '+919812345601'::text AS phone,
                                         jsonb_build_object('message', 'scheduled hello') AS payload`);
  await db.query(`DELETE FROM dialer.campaigns WHERE name = 'it_cron_kolkata'`);
  await db.query(`INSERT INTO dialer.campaigns (name, source, provider, timezone)
                  VALUES ('it_cron_kolkata', 'it_cron.people', 'it_cron_off', 'Asia/Kolkata')`);

  // 'daily HH:MM' at the next whole minute of Kolkata time (the one after if it is too close).
  const r = await db.query(`SELECT to_char(m AT TIME ZONE 'Asia/Kolkata', 'HH24:MI') AS hhmi, m AS slot
                              FROM (SELECT date_trunc('minute', clock_timestamp())
                                         + CASE WHEN extract(second FROM clock_timestamp()) > 50
                                                THEN interval '2 minutes' ELSE interval '1 minute' END AS m) x`);
  const { hhmi, slot } = r.rows[0];
  const next = (await db.query(`SELECT dialer.schedule_campaign('it_cron_kolkata', $1) AS next`, [`daily ${hhmi}`])).rows[0].next;
  assert.equal(next.getTime(), slot.getTime(), `schedule_campaign('daily ${hhmi}') in Asia/Kolkata runs next at ${slot.toISOString()}`);
  const job = await db.query(`SELECT schedule, command FROM cron.job WHERE jobname = 'pg_dialer_campaigns'`);
  assert.equal(job.rows.length, 1, 'the pg_cron job exists');

  const run = await d.waitFor(async () => {
    const x = await db.query(`SELECT slot, outcome, enqueued, error, started_at FROM dialer.campaign_runs
                               WHERE campaign = 'it_cron_kolkata' AND outcome <> 'running'`);
    return x.rows[0];
  }, { timeoutMs: 140000, intervalMs: 500, message: `pg_cron to run the campaign at ${slot.toISOString()}`,
    describe: async () => JSON.stringify((await db.query(
      `SELECT status, return_message, start_time FROM cron.job_run_details ORDER BY runid DESC LIMIT 3`)).rows) });
  assert.equal(run.outcome, 'ok', `the scheduled run succeeded (${run.error})`);
  assert.equal(run.slot.getTime(), slot.getTime(), 'the run is recorded for its local slot');
  assert.ok(run.started_at.getTime() >= slot.getTime(), 'it started at or after the slot, not before');
  assert.equal(run.enqueued, 1);
  const calls = await db.query(`SELECT customer_ref, to_number, status, payload->>'message' AS message
                                  FROM dialer.scheduled_calls WHERE campaign = 'it_cron_kolkata'`);
  assert.deepEqual(calls.rows, [{ customer_ref: 'k1', to_number: '+919812345601', status: 'scheduled', message: 'scheduled hello' }]);

  assert.equal((await db.query(`SELECT dialer.unschedule_campaign('it_cron_kolkata') AS u`)).rows[0].u, true);
  const left = await db.query(`SELECT count(*)::int AS n FROM dialer.campaigns WHERE schedule IS NOT NULL`);
  const jobs = await db.query(`SELECT count(*)::int AS n FROM cron.job WHERE jobname = 'pg_dialer_campaigns'`);
  assert.equal(jobs.rows[0].n, left.rows[0].n > 0 ? 1 : 0, 'the job goes with the last scheduled campaign');
});

/* ====================================================================== 3. the examples */

const EXAMPLE_CAMPAIGNS = ['auto_reminders', 'insurance_renewals', 'signup_qualification', 'ai_agent_example'];

async function dropExamples(db) {
  await db.query(`SELECT dialer.unschedule_campaign(name) FROM dialer.campaigns
                   WHERE name = ANY($1) AND schedule IS NOT NULL`, [EXAMPLE_CAMPAIGNS]);
  await db.query(`DELETE FROM dialer.scheduled_calls WHERE campaign = ANY($1)`, [EXAMPLE_CAMPAIGNS]);
  await db.query(`DELETE FROM dialer.campaigns WHERE name = ANY($1)`, [EXAMPLE_CAMPAIGNS]);
  await db.query('DROP SCHEMA IF EXISTS example_auto, example_insurance, example_signup CASCADE');
  await db.query(`DELETE FROM dialer.do_not_call WHERE number = '+919876500070'`);
  await d.dropProviders(db, ['example_twilio', 'example_ai_backend']);
}

test('the examples load and produce the calls they promise', async (t) => {
  const db = await d.connect();
  t.after(async () => {
    await dropExamples(db).catch(() => {});
    await db.end();
  });
  await d.ensureExtension(db);
  await dropExamples(db);
  const hasCron = (await db.query(`SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'`)).rows.length === 1;
  const count = async (campaign) => (await db.query(
    `SELECT count(*)::int AS n FROM dialer.scheduled_calls WHERE campaign = $1`, [campaign])).rows[0].n;

  await t.test('01 appointment reminders: only the pilot number, daily at 09:00 New York', async () => {
    psqlFile('examples/01_appointment_reminders.sql');
    const calls = await db.query(`SELECT to_number, customer_ref, status, provider, payload->>'message' AS message, dedupe_key
                                    FROM dialer.scheduled_calls WHERE campaign = 'auto_reminders'`);
    assert.equal(calls.rows.length, 1, 'one call: the pilot tester');
    const c = calls.rows[0];
    assert.equal(c.to_number, '+15005550006');
    assert.equal(c.customer_ref, '1');
    assert.equal(c.status, 'scheduled');
    assert.equal(c.provider, 'example_twilio');
    assert.match(c.message, /^Hello Pilot\. .*oil change.*2019 Honda Civic tomorrow at 08:30 AM/);
    const why = await db.query(`SELECT customer_ref, reason FROM dialer.campaign_candidates('auto_reminders')
                                 WHERE NOT included ORDER BY customer_ref`);
    assert.deepEqual(why.rows, [{ customer_ref: '1', reason: 'scheduled_today' },
      { customer_ref: '2', reason: 'not_allowed' }, { customer_ref: '3', reason: 'not_allowed' },
      { customer_ref: '4', reason: 'not_allowed' }],
    'the others are left out by the pilot allow-list (5 is cancelled or next week: not in the source)');
    const camp = (await db.query(`SELECT schedule, timezone, enabled FROM dialer.campaigns WHERE name = 'auto_reminders'`)).rows[0];
    assert.deepEqual(camp, { schedule: hasCron ? 'daily 09:00' : null, timezone: 'America/New_York', enabled: true });

    psqlFile('examples/01_appointment_reminders.sql');
    assert.equal(await count('auto_reminders'), 1, 'loading it again adds nothing');

    psqlFile('examples/01_appointment_reminders.sql', { vars: { pilot_numbers: '' } });
    const live = await db.query(`SELECT customer_ref FROM dialer.scheduled_calls WHERE campaign = 'auto_reminders' ORDER BY customer_ref`);
    assert.deepEqual(live.rows.map((x) => x.customer_ref), ['1', '2', '3', '4'], 'going live calls every confirmed appointment of tomorrow, once');
  });

  await t.test('02 insurance renewals: 50 of 60 due within 30 days, the rest with reasons', async () => {
    psqlFile('examples/02_insurance_renewals.sql');
    const calls = await db.query(`SELECT count(*)::int AS n, count(DISTINCT to_number)::int AS numbers,
                                         min(customer_ref::int) AS lo, max(customer_ref::int) AS hi,
                                         bool_and(max_attempts = 4) AS attempts4, bool_and(status = 'scheduled') AS sched
                                    FROM dialer.scheduled_calls WHERE campaign = 'insurance_renewals'`);
    assert.deepEqual(calls.rows[0], { n: 50, numbers: 50, lo: 1, hi: 60, attempts4: true, sched: true },
      '50 calls (the daily cap), to customers due within 30 days, 4 attempts each');
    // the 50 taken are the earliest to expire
    const latestTaken = await db.query(`SELECT max(p.expires_on) AS d FROM dialer.scheduled_calls c
                                          JOIN example_insurance.policies p ON p.customer_id = c.customer_ref::int
                                         WHERE c.campaign = 'insurance_renewals'`);
    const earliestLeft = await db.query(`SELECT min(p.expires_on) AS d FROM example_insurance.policies p
                                          WHERE p.customer_id <= 60 AND p.customer_id::text NOT IN
                                            (SELECT customer_ref FROM dialer.scheduled_calls WHERE campaign = 'insurance_renewals')`);
    assert.ok(latestTaken.rows[0].d <= earliestLeft.rows[0].d, 'the earliest expiring were called first');
    const reasons = await db.query(`SELECT coalesce(reason, 'included') AS reason, count(*)::int AS n
                                      FROM dialer.campaign_candidates('insurance_renewals') GROUP BY 1 ORDER BY 1`);
    assert.deepEqual(reasons.rows, [
      { reason: 'do_not_call', n: 1 }, { reason: 'outside_lookahead', n: 9 },
      { reason: 'over_daily_cap', n: 10 }, { reason: 'scheduled_today', n: 50 }]);
    const camp = (await db.query(`SELECT schedule, timezone, max_calls_per_day, skip_called_within_days, lookahead_days,
                                         retry_busy, retry_no_answer FROM dialer.campaigns WHERE name = 'insurance_renewals'`)).rows[0];
    assert.deepEqual(camp, { schedule: hasCron ? 'daily 10:00' : null, timezone: 'Asia/Kolkata', max_calls_per_day: 50,
      skip_called_within_days: 7, lookahead_days: 30, retry_busy: true, retry_no_answer: true });
    if (hasCron) {
      const next = (await db.query(`SELECT next_run_at AT TIME ZONE 'Asia/Kolkata' AS local FROM dialer.campaign_schedules
                                     WHERE campaign = 'insurance_renewals'`)).rows[0].local;
      assert.equal(`${String(next.getHours()).padStart(2, '0')}:${String(next.getMinutes()).padStart(2, '0')}`, '10:00',
        'its next run is at 10:00 India time');
    }
    psqlFile('examples/02_insurance_renewals.sql');
    assert.equal(await count('insurance_renewals'), 50, 'loading it again the same day adds nothing (cap, once a day)');
  });

  await t.test('03 signup qualification: one call per user per hour from a trigger', async () => {
    psqlFile('examples/03_signup_qualification.sql');
    // the key's hour is the one the call was enqueued in (its created_at), not the test's clock
    // now: the hour may have turned since
    const calls = await db.query(`SELECT u.email, c.to_number, c.dedupe_key,
                                         format('signup-qualification:%s:%s', u.id,
                                                to_char(date_trunc('hour', c.created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24')) AS key
                                    FROM example_signup.users u
                                    JOIN dialer.scheduled_calls c ON c.payload->>'user_id' = u.id::text
                                   WHERE c.campaign = 'signup_qualification' ORDER BY u.email`);
    assert.deepEqual(calls.rows.map((x) => x.email), ['ana@example.com', 'ben@example.com', 'chloe@example.com'],
      "one call per new user, Ben's change of number within the hour did not add one");
    for (const c of calls.rows) assert.equal(c.dedupe_key, c.key, 'the key is the user and the UTC hour of the signup');

    psqlFile('examples/03_signup_qualification.sql');
    assert.equal(await count('signup_qualification'), 3, 'loading it again adds nothing');

    // the application signs a user up: the call comes with the insert, and only once this hour
    // (signup and new number in one transaction: one instant, so the hour cannot turn between them)
    await db.query('BEGIN');
    await db.query(`INSERT INTO example_signup.users (email, name, phone) VALUES ('dev@example.com', 'Dev Patel', '+919812300001')`);
    assert.equal(await count('signup_qualification'), 4, 'a new signup gets its call');
    await db.query(`UPDATE example_signup.users SET phone = '+919812300002' WHERE email = 'dev@example.com'`);
    assert.equal(await count('signup_qualification'), 4, 'a new number within the hour does not get a second call');
    await db.query('COMMIT');
    await db.query('BEGIN');
    await db.query(`INSERT INTO example_signup.users (email, name, phone) VALUES ('eve@example.com', 'Eve Adams', '+919812300003')`);
    await db.query('ROLLBACK');
    assert.equal(await count('signup_qualification'), 4, 'a signup that rolls back leaves no call');
  });

  await t.test('04 AI agent: one DIRECT and one BRIEF_START call at a UTC time', async () => {
    psqlFile('examples/04_ai_agent_one_off.sql');
    // tomorrow as of when the example ran (the calls' created_at), not as of the test's clock now
    const calls = await db.query(`SELECT mode, to_number, run_at, deadline, provider, status, payload,
                                         ((created_at AT TIME ZONE 'UTC')::date + 1 + time '18:00') AT TIME ZONE 'UTC' AS want
                                    FROM dialer.scheduled_calls WHERE campaign = 'ai_agent_example' ORDER BY id`);
    assert.deepEqual(calls.rows.map((x) => x.mode), ['DIRECT', 'BRIEF_START']);
    for (const c of calls.rows) {
      assert.equal(c.run_at.getTime(), c.want.getTime(), 'due tomorrow at 18:00 UTC');
      assert.equal(c.deadline.getTime() - c.run_at.getTime(), 2 * 3600 * 1000, 'expires two hours later');
      assert.equal(c.provider, 'example_ai_backend');
      assert.equal(c.status, 'scheduled');
    }
    assert.ok(calls.rows[0].payload.script.length > 20, 'DIRECT carries the script');
    assert.ok(!('script' in calls.rows[1].payload) && calls.rows[1].payload.purpose, 'BRIEF_START carries a brief, no script');
    const kind = (await db.query(`SELECT kind, enabled FROM dialer.providers WHERE name = 'example_ai_backend'`)).rows[0];
    assert.deepEqual(kind, { kind: 'backend', enabled: false });

    psqlFile('examples/04_ai_agent_one_off.sql', { vars: { call_at: calls.rows[0].run_at.toISOString() } });
    assert.equal(await count('ai_agent_example'), 2, 'loading it again with the same time adds nothing');
    psqlFile('examples/04_ai_agent_one_off.sql', { vars: { call_at: '2030-01-15 16:30:00+00' } });
    const at = await db.query(`SELECT count(*)::int AS n FROM dialer.scheduled_calls
                                WHERE campaign = 'ai_agent_example' AND run_at = '2030-01-15 16:30:00+00'`);
    assert.equal(at.rows[0].n, 2, 'another call_at schedules two more calls at that UTC time');
  });
});

/* ====================================================================== 4. end to end */

// The examples through the live dispatcher to the provider simulators: each call leaves
// the queue, reaches the simulator exactly once with what the example put in it, and is
// dialing (the simulators' status callbacks, through PostgREST, are the webhook suite's).
test('the examples end to end: their calls reach the simulators once each', { timeout: 120000 }, async (t) => {
  const db = await d.connect();
  const settings = d.settings(db);
  const twilio = await d.startSim('twilio');
  const backend = await d.startSim('backend');
  t.after(async () => {
    await dropExamples(db).catch(() => {});
    await d.dropProviders(db, ['it_ex_twilio', 'it_ex_backend']).catch(() => {});
    await settings.restore().catch(() => {});
    await twilio.close();
    await backend.close();
    await db.end();
  });
  await d.ensureExtension(db);
  await dropExamples(db);
  await settings.set(d.OPEN_WINDOW);
  await d.createProvider(db, d.twilioProvider('it_ex_twilio', twilio));
  await d.createProvider(db, d.jsonProvider('it_ex_backend', 'backend', backend));
  const callsOf = async (campaign) => (await db.query(
    `SELECT id FROM dialer.scheduled_calls WHERE campaign = $1 ORDER BY id`, [campaign])).rows.map((x) => Number(x.id));

  psqlFile('examples/01_appointment_reminders.sql', { vars: { provider: 'it_ex_twilio', pilot_numbers: '' } });
  psqlFile('examples/02_insurance_renewals.sql', { vars: { provider: 'it_ex_twilio' } });
  psqlFile('examples/03_signup_qualification.sql', { vars: { provider: 'it_ex_twilio' } });
  psqlFile('examples/04_ai_agent_one_off.sql', { vars: { provider: 'it_ex_backend', call_at: 'now' } });

  const byCampaign = {};
  for (const c of EXAMPLE_CAMPAIGNS) byCampaign[c] = await callsOf(c);
  assert.deepEqual(Object.fromEntries(Object.entries(byCampaign).map(([k, v]) => [k, v.length])),
    { auto_reminders: 4, insurance_renewals: 50, signup_qualification: 3, ai_agent_example: 2 });
  const all = Object.values(byCampaign).flat();
  await d.waitForStatus(db, all, ['dialing'], { timeoutMs: 60000 });

  // Twilio: one request per call, To and the spoken message as enqueued
  const counts = twilio.control.counts();
  const twilioIds = [...byCampaign.auto_reminders, ...byCampaign.insurance_renewals, ...byCampaign.signup_qualification];
  assert.deepEqual(twilioIds.map((id) => counts[String(id)]), twilioIds.map(() => 1), 'each Twilio call was requested once');
  const reqs = twilio.control.requests(1000).filter((r) => r.method === 'POST' && /Calls\.json$/.test(r.path));
  const pilot = reqs.find((r) => r.body.To === '+15005550006');
  assert.ok(pilot, 'the reminder of the pilot tester reached Twilio');
  assert.match(pilot.body.Twiml, /oil change/, 'with the reminder as its TwiML');
  assert.equal(reqs.filter((r) => /^\+9198765/.test(r.body.To)).length, 50, 'fifty renewal calls reached Twilio');
  // what the examples say is what a call can do: Twilio speaks the message and takes no key,
  // so no message asks for one, and no payload key promises what Twilio does not read
  for (const r of reqs) {
    assert.doesNotMatch(r.body.Twiml || '', /\bpress\s+\d/i, `a Twilio call asks for no key: ${r.body.Twiml}`);
  }
  const twilioPayloadKeys = (await db.query(`SELECT DISTINCT k FROM dialer.scheduled_calls c, jsonb_object_keys(c.payload) k
                                              WHERE c.id = ANY ($1::bigint[])`, [twilioIds])).rows.map((x) => x.k);
  assert.ok(!twilioPayloadKeys.includes('language') && !twilioPayloadKeys.includes('voice'),
    `no Twilio example sets a language or voice the provider ignores: ${twilioPayloadKeys}`);

  // Backend: DIRECT posts /call/start with the script; BRIEF_START posts /call/brief, then /call/start
  const [direct, brief] = byCampaign.ai_agent_example;
  const breq = (id) => backend.control.requests(100, { call_id: String(id) }).map((r) => r.path);
  assert.deepEqual(breq(direct), ['/call/start']);
  assert.deepEqual(breq(brief), ['/call/brief', '/call/start']);
  const start = backend.control.requests(100, { call_id: String(direct) })[0];
  assert.match(start.body.script, /^Hi Sam, this is Ava/);
});
