'use strict';
// README's Install section, followed step by step on Debian's own cluster layout.
//
// The test reads the commands from README.md itself: every fenced block preceded by a line
// `<!-- install-test: KIND [DATABASE] -->` is a step, run in README order:
//   packages       the packages named after `apt-get install` must be installed (checked with
//                  dpkg-query: a test does not install packages)
//   root           a shell script, run by bash as root in the repository
//   sql DATABASE   SQL, run by psql as the postgres user through the cluster's Unix socket
//                  (ON_ERROR_STOP; an UPDATE or DELETE that changes no row fails the step)
// What differs from a user's machine: the cluster is a new one, made with
// `pg_createcluster 15 dialer_it_<pid> -p <free port> --start` (its own port and
// directories, Debian's own postgresql.conf and pg_hba.conf), so `15 main` and `/15/main/` in
// the steps name it instead, and PGPORT is its port; once the providers exist, the `default`
// provider is pointed at the project's Twilio simulator on 127.0.0.1 (base_url only: the
// simulator takes README's account SID and auth token).  Then it checks that README's first
// call reached the simulator with the provider's twiml_url, that the webhook step changed the
// providers Install created, that the Campaigns example enqueued its call, and that a campaign
// scheduled on pg_cron really fires through Debian's pg_hba.conf (pg_cron connecting as README
// says, while a TCP login without a password is refused).  The cluster is dropped at the end
// (pg_dropcluster --stop), pass or fail; a cluster left by a killed run is dropped by the next.
//
// Needs root, Debian's postgresql-common (pg_createcluster) and the system tree
// /usr/lib/postgresql/15 (README's `make install` step installs pg_dialer there).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const { startSimulator } = require('../sim/server');

const repo = path.resolve(__dirname, '..', '..');
const SYSBIN = '/usr/lib/postgresql/15/bin';
const NAME = `dialer_it_${process.pid}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let port;
let sim;
let created = false;
const logFile = `/var/log/postgresql/postgresql-15-${NAME}.log`;

const canRun = process.getuid && process.getuid() === 0 && fs.existsSync('/usr/bin/pg_createcluster')
  && fs.existsSync(`${SYSBIN}/postgres`);

/** The marked steps of README.md, in order: {kind, arg, lang, code, line}. */
function readmeSteps() {
  const lines = fs.readFileSync(path.join(repo, 'README.md'), 'utf8').split('\n');
  const steps = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^<!--\s*install-test:\s*(\w+)(?:\s+(\S+))?\s*-->\s*$/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() === '') j++;
    const open = /^(\s*)```(\w*)/.exec(lines[j] || '');
    if (!open) throw new Error(`README.md:${i + 1}: install-test marker not followed by a fenced block`);
    const body = [];
    for (j++; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) body.push(lines[j]);
    steps.push({ kind: m[1], arg: m[2], lang: open[2], code: body.join('\n') + '\n', line: i + 1 });
  }
  return steps;
}

/** A step's text for this cluster instead of 15/main. */
function forCluster(code) {
  return code.replace(/\b15 main\b/g, `15 ${NAME}`).replace(/\/15\/main\//g, `/15/${NAME}/`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300000, ...opts });
  return { status: r.status, out: `${r.stdout || ''}${r.stderr || ''}`, error: r.error };
}

function psql(db, sql, extra = []) {
  return run('runuser', ['-u', 'postgres', '--', `${SYSBIN}/psql`, '-X', '-v', 'ON_ERROR_STOP=1',
    '-h', '/var/run/postgresql', '-p', String(port), '-d', db, ...extra, '-f', '-'],
  { input: sql, cwd: '/' });
}

/** One value of a query in database app. */
function query(sql) {
  const r = psql('app', sql, ['-qAt']);
  if (r.status !== 0) throw new Error(`psql failed: ${sql}\n${r.out}`);
  return r.out.trim();
}

function recordPostmaster() {
  try {
    const pid = fs.readFileSync(`/var/lib/postgresql/15/${NAME}/postmaster.pid`, 'utf8').split('\n')[0];
    if (process.env.DIALER_PID_FILE && /^\d+$/.test(pid)) fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`);
  } catch { /* not running */ }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

/** Drops clusters dialer_it_<pid> whose test process is gone (a run that was killed). */
function dropStaleClusters() {
  const r = run('pg_lsclusters', ['-h']);
  for (const line of r.out.split('\n')) {
    const [ver, name] = line.trim().split(/\s+/);
    const m = /^dialer_it_(\d+)$/.exec(name || '');
    if (ver !== '15' || !m || Number(m[1]) === process.pid) continue;
    let alive = true;
    try { process.kill(Number(m[1]), 0); } catch { alive = false; }
    if (!alive) run('pg_dropcluster', ['--stop', '15', name]);
  }
}

async function waitFor(fn, what, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let v;
  while (Date.now() < end) {
    v = fn();
    if (v) return v;
    await sleep(500);
  }
  assert.fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

test.before(async () => {
  if (!canRun) return;
  dropStaleClusters();
  sim = await startSimulator({ kind: 'twilio', port: 0, authToken: 'your-auth-token' });
  port = await freePort();
  const r = run('pg_createcluster', ['15', NAME, '-p', String(port), '--start']);
  created = true;
  assert.equal(r.status, 0, `pg_createcluster failed:\n${r.out}`);
  recordPostmaster();
});

test.after(async () => {
  if (created) {
    const r = run('pg_dropcluster', ['--stop', '15', NAME]);
    if (r.status !== 0) console.error(`pg_dropcluster --stop 15 ${NAME}: ${r.out}`);
  }
  if (sim) await sim.close().catch(() => {});
});

test('README Install, step by step, on a cluster made with pg_createcluster', { skip: !canRun && 'needs root, pg_createcluster and /usr/lib/postgresql/15' }, async (t) => {
  const steps = readmeSteps();
  const installSteps = steps.filter((s) => s.line < fs.readFileSync(path.join(repo, 'README.md'), 'utf8')
    .split('\n').findIndex((l) => l === '## Upgrading') + 1);
  assert.ok(installSteps.length >= 7, `README's Install section has its marked steps (${installSteps.length})`);
  let redirected = false;
  let firstCall = null;

  for (const step of steps) {
    const where = `README.md:${step.line} (${step.kind}${step.arg ? ' ' + step.arg : ''})`;
    t.diagnostic(`step ${where}`);
    if (step.kind === 'packages') {
      const m = /apt-get install\s+(.*)/.exec(step.code);
      assert.ok(m, `${where}: an apt-get install line`);
      const pkgs = m[1].trim().split(/\s+/).filter((w) => !w.startsWith('-'));
      for (const p of pkgs) {
        const q = run('dpkg-query', ['-W', '-f=${Status}', p]);
        assert.match(q.out, /install ok installed/, `${where}: package ${p} is installed`);
      }
    } else if (step.kind === 'root') {
      const r = run('flock', ['/tmp/pg_dialer_build.lock', 'bash', '-euo', 'pipefail', '-c', forCluster(step.code)],
        { cwd: repo, env: { ...process.env, PGPORT: String(port) } });
      assert.equal(r.status, 0, `${where} failed:\n${step.code}\n${r.out}`);
      recordPostmaster();
    } else if (step.kind === 'sql') {
      const r = psql(step.arg, forCluster(step.code));
      assert.equal(r.status, 0, `${where} failed:\n${step.code}\n${r.out}`);
      assert.doesNotMatch(r.out, /^(UPDATE|DELETE) 0$/m, `${where}: a statement changed no row:\n${r.out}`);
      if (/enqueue_call/.test(step.code) && !firstCall) {
        firstCall = query(`SELECT max(id) FROM dialer.scheduled_calls WHERE campaign IS NULL`);
      }
    } else {
      assert.fail(`${where}: unknown step kind ${step.kind}`);
    }
    // test only: once Install created the providers, Twilio is the simulator on 127.0.0.1
    if (!redirected && step.kind === 'sql' && /INSERT INTO dialer\.providers/.test(step.code)) {
      assert.equal(query(`UPDATE dialer.providers SET base_url = '${sim.url}' WHERE name = 'default' RETURNING name`), 'default');
      redirected = true;
    }
  }
  assert.ok(redirected, 'README created the provider default');
  assert.ok(firstCall, 'README enqueued a first call');

  // README's first call reached the provider, saying what the provider's twiml_url says
  await waitFor(() => query(`SELECT status FROM dialer.scheduled_calls WHERE id = ${firstCall}`) === 'dialing',
    `call ${firstCall} dialing`, 30000);
  const creates = sim.control.requests(1000).filter((e) => e.method === 'POST' && /\/Calls\.json$/.test(e.path));
  const first = creates.find((e) => e.body && e.body.To === '+14155550123');
  assert.ok(first, `the simulator got README's call: ${JSON.stringify(creates.map((e) => e.body))}`);
  assert.equal(first.body.Url, 'https://hooks.example.com/twiml/reminder.xml');
  assert.equal(query(`SELECT current_setting('dialer.default_timezone')`), 'America/New_York');

  // the Webhooks step changed the providers Install created (the psql step checked UPDATE 1)
  assert.equal(query(`SELECT status_callback_url FROM dialer.providers WHERE name = 'default'`),
    'https://hooks.example.com/twilio/status-callback');
  // the Campaigns example enqueued its one pending customer, through provider default
  assert.equal(query(`SELECT count(*) FROM dialer.scheduled_calls WHERE campaign = 'renewals' AND provider = 'default'`), '1');

  // Debian's pg_hba.conf: a TCP login without a password is refused, the socket lets postgres in
  const tcp = run('runuser', ['-u', 'postgres', '--', `${SYSBIN}/psql`, '-X', '-w', '-h', '127.0.0.1', '-p', String(port),
    '-d', 'app', '-c', 'SELECT 1'], { cwd: '/' });
  assert.notEqual(tcp.status, 0, 'a TCP login without a password is refused by Debian\'s pg_hba.conf');
  assert.match(tcp.out, /password/);

  // a campaign scheduled on pg_cron fires (test only: every minute, and a new customer due)
  query(`INSERT INTO app.customers VALUES (3, '+14155550103');
         INSERT INTO app.policies VALUES (3, 'boat', current_date + 3);
         SELECT dialer.schedule_campaign('renewals', '* * * * *')`);
  const run1 = await waitFor(() => {
    const v = query(`SELECT outcome || ' ' || coalesce(enqueued, 0) FROM dialer.campaign_runs
                      WHERE campaign = 'renewals' AND outcome <> 'running' ORDER BY id LIMIT 1`);
    return v || null;
  }, 'a scheduled run of campaign renewals by pg_cron', 150000).catch((e) => {
    e.message += `\npg_cron's runs: ${query(`SELECT string_agg(DISTINCT status || ': ' || coalesce(return_message, ''), '; ')
                                              FROM cron.job_run_details`)}`;
    throw e;
  });
  assert.equal(run1, 'ok 1', 'the pg_cron run enqueued customer 3');
  const jobs = query(`SELECT string_agg(DISTINCT d.status || ': ' || coalesce(d.return_message, ''), '; ')
                        FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                       WHERE j.jobname = 'pg_dialer_campaigns'`);
  assert.match(jobs, /succeeded/);
  assert.doesNotMatch(jobs, /failed|connection/, `pg_cron runs: ${jobs}`);
  await waitFor(() => query(`SELECT status FROM dialer.scheduled_calls WHERE campaign = 'renewals' AND customer_ref = '3'`) === 'dialing',
    'the scheduled campaign\'s call dialing', 30000);

  // the server log: the worker never missed its database, pg_cron never failed to connect
  const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
  assert.doesNotMatch(log, /database "app" does not exist/);
  assert.doesNotMatch(log, /connection failed|PANIC|terminated by signal/);
});
