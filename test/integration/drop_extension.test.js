'use strict';
// DROP EXTENSION pg_dialer, as a user does it in the database pg_cron serves ($DIALER_DB):
//  - the pg_cron job pg_dialer scheduled for its campaigns goes with the extension (it would
//    otherwise fail every minute: "function dialer.run_scheduled_campaigns() does not exist");
//  - a pg_cron job of the user's that calls pg_dialer is named in a WARNING (it is the user's to
//    remove), and so are the calls still scheduled or in progress that the DROP takes with it;
//  - all of it inside a transaction that is rolled back afterwards, so the extension (and
//    everything the other tests of the run rely on) is back as it was; a DROP that fails
//    afterwards rolls the job's removal back too.

const test = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const P = 'it_drop_';
let db;

test.before(async () => {
  db = await d.connect();
});

test.after(async () => {
  if (db) await db.end();
});

/** The pg_cron jobs of this database: "name: command". */
async function jobs(client) {
  return (await client.query(`SELECT coalesce(jobname, '') || ': ' || command AS j FROM cron.job
                               WHERE database = current_database() ORDER BY jobid`)).rows.map((r) => r.j);
}

test('DROP EXTENSION pg_dialer removes its pg_cron job, and warns about the user\'s jobs and the calls it drops', async () => {
  const notices = [];
  const onNotice = (n) => notices.push(n);
  db.on('notice', onNotice);
  await db.query('BEGIN');
  try {
    await db.query(`INSERT INTO dialer.providers (name, kind, base_url, enabled) VALUES ('${P}p', 'voice_api', 'http://127.0.0.1:9', false)`);
    await db.query(`CREATE VIEW public.${P}src AS SELECT 'c1'::text AS customer_ref, '+14155550100'::text AS phone`);
    await db.query(`INSERT INTO dialer.campaigns (name, source, provider) VALUES ('${P}k', 'public.${P}src', '${P}p')`);
    await db.query(`SELECT dialer.schedule_campaign('${P}k', 'daily 10:00')`);
    await db.query(`SELECT cron.schedule('${P}cleanup', '30 3 * * *', 'SELECT dialer.cleanup()')`);
    await db.query(`SELECT dialer.enqueue_call('+14155550101', provider => '${P}p', payload => '{"message": "m"}'),
                           dialer.enqueue_call('+14155550102', provider => '${P}p', payload => '{"message": "m"}')`);
    const before = await jobs(db);
    assert.ok(before.includes('pg_dialer_campaigns: SELECT dialer.run_scheduled_campaigns()'), before.join('\n'));

    await db.query('SAVEPOINT before_drop');
    await db.query('DROP EXTENSION pg_dialer');
    const after = await jobs(db);
    assert.ok(!after.some((j) => j.startsWith('pg_dialer_campaigns:')), `pg_dialer's job is gone:\n${after.join('\n')}`);
    assert.ok(after.includes(`${P}cleanup: SELECT dialer.cleanup()`), 'the user\'s job is left to the user');
    const warnings = notices.filter((n) => n.severity === 'WARNING');
    const jobWarning = warnings.find((n) => /^pg_cron jobs that call pg_dialer will fail once it is dropped/.test(n.message));
    assert.ok(jobWarning, `a warning names the user's job: ${JSON.stringify(warnings)}`);
    assert.match(jobWarning.message, new RegExp(`'${P}cleanup' \\(SELECT dialer\\.cleanup\\(\\)\\)`));
    const callWarning = warnings.find((n) => /^DROP EXTENSION pg_dialer drops \d+ scheduled call\(s\)/.test(n.message));
    assert.ok(callWarning, `a warning counts the calls dropped: ${JSON.stringify(warnings)}`);
    const scheduled = Number(/drops (\d+) scheduled/.exec(callWarning.message)[1]);
    assert.ok(scheduled >= 2, `at least this test's two calls: ${callWarning.message}`);
    assert.match(callWarning.detail, /a call in progress may already be ringing/);

    // a DROP that fails after the job was removed puts the job back with everything else
    await db.query('ROLLBACK TO SAVEPOINT before_drop');
    assert.ok((await jobs(db)).includes('pg_dialer_campaigns: SELECT dialer.run_scheduled_campaigns()'),
      'rolled back: the job is back');
  } finally {
    db.off('notice', onNotice);
    await db.query('ROLLBACK');
  }
  assert.ok(!(await jobs(db)).some((j) => j.startsWith(P)), 'nothing of this test is left');
  assert.equal((await db.query(`SELECT extversion FROM pg_extension WHERE extname = 'pg_dialer'`)).rows.length, 1);
});

test('DROP EXTENSION pg_dialer with nothing to lose says nothing', async () => {
  // a database of its own, with no pg_cron: only the calls matter there
  const root = await d.connect({ database: 'postgres' });
  await root.query(`DROP DATABASE IF EXISTS ${P}db WITH (FORCE)`);
  await root.query(`CREATE DATABASE ${P}db`);
  const other = await d.connect({ database: `${P}db` });
  const seen = [];
  other.on('notice', (n) => seen.push(n));
  try {
    await other.query('SET client_min_messages = warning');
    await other.query('CREATE EXTENSION pg_dialer');
    await other.query('DROP EXTENSION pg_dialer');
    assert.deepEqual(seen.filter((n) => n.severity === 'WARNING' && /pg_dialer|pg_cron/.test(n.message)).map((n) => n.message), []);
  } finally {
    await other.end();
    await root.query(`DROP DATABASE IF EXISTS ${P}db WITH (FORCE)`);
    await root.end();
  }
});
