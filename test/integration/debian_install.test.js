'use strict';
// README's Install section, followed step by step on Debian's own cluster layout, with the
// extension installed from its Debian package, and README's Monitoring blocks after it.
//
// The test reads the commands from README.md itself: every fenced block preceded by a line
// `<!-- install-test: KIND [ARG] -->` is a step, run in README order:
//   packages       the packages named after `apt-get install` must be installed (checked with
//                  dpkg-query: a test does not install packages)
//   npm            `npm ci`: the modules package-lock.json pins must be installed (checked with
//                  `npm ls`: a test does not install packages)
//   root           a shell script, run by bash as root in the repository
//   sql DATABASE   SQL, run by psql as the postgres user through the cluster's Unix socket
//                  (ON_ERROR_STOP; an UPDATE or DELETE that changes no row fails the step)
//   background PORT  a server the reader leaves running (in a second terminal): started by
//                  bash as root in the repository in a process group of its own, its PID
//                  recorded; the step is done when it accepts connections on PORT (see below),
//                  and it is stopped (the whole group, by PID) at the end
//   source         the from-source way of Install: its `apt-get install` lines are checked as
//                  `packages`, the rest run as `root`, after all other steps, once the package
//                  has been removed again; it also puts back the system tree's pg_dialer that
//                  the rest of the suite uses
// What differs from a user's machine: the cluster is a new one, made with
// `pg_createcluster 15 dialer_it_<pid> -p <free port> --start` (its own port and
// directories, Debian's own postgresql.conf and pg_hba.conf), so `15 main` and `/15/main/` in
// the steps name it instead, `localhost:5432` and `127.0.0.1:5432` its port, and PGPORT is its
// port; each `background PORT` step's example port (in `127.0.0.1:PORT`, `localhost:PORT` and
// `--port PORT` of every step) is a free port the test picks, so a README block may name a
// fixed port that something else on the machine uses.
//
// Then it checks: the package (its files, from `dpkg-deb -c`; installed by apt, dpkg -V
// clean); that README's first call reached the simulator README started, with the provider's
// twiml_url; that the webhook step changed the providers Install created; that the Campaigns
// example enqueued its call; that a campaign scheduled on pg_cron really fires through
// Debian's pg_hba.conf (pg_cron connecting as README says, while a TCP login without a
// password is refused); that the exporter Monitoring starts (logging in with a password, as
// Debian's pg_hba.conf asks) publishes pg_dialer's metrics; that `apt remove` takes every file
// of the package away again, and the from-source block puts the same files back.  The Admin
// section's blocks run too (the admin API's PostgREST logging in with a password through
// Debian's pg_hba.conf, a standalone nginx, tokens from deploy/admin-token.sh, curl through it),
// and its last block stops what it started.  The cluster is dropped at the end
// (pg_dropcluster --stop), pass or fail; a cluster left by a killed run is dropped by the next,
// and a package left installed is removed first.  What README's blocks write to the machine
// (SYSTEM_PATHS: /etc/prometheus, /etc/pg_dialer, ...) is moved aside first and put back as it
// was at the end, servers they left running are stopped by their pid files, and the system user
// pg_dialer_admin is removed again when the test created it.
//
// Needs root, Debian's postgresql-common (pg_createcluster), dpkg-buildpackage and
// pg_buildext (test/install-deps.sh installs them) and the system tree /usr/lib/postgresql/15,
// where the package installs pg_dialer.  Where other runs may use that tree at the same time,
// run it under a lock they all take, e.g.:
//   flock /tmp/pg_dialer_system_tree.lock env DIALER_SKIP_DEPS=1 DIALER_ONLY=debian_install bash test/run_all.sh

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { request } = require('../sim/http-util');

const repo = path.resolve(__dirname, '..', '..');
const SYSBIN = '/usr/lib/postgresql/15/bin';
const NAME = `dialer_it_${process.pid}`;
const PACKAGE = 'postgresql-15-pg-dialer';
const EXTVERSION = /^EXTVERSION\s*=\s*(\S+)/m.exec(fs.readFileSync(path.join(repo, 'Makefile'), 'utf8'))[1];
// what README's blocks write to the machine: moved aside before the test, put back after it
const SYSTEM_PATHS = ['/etc/prometheus', '/etc/pg_dialer', '/var/lib/pg_dialer_admin', '/usr/local/share/pg_dialer',
  '/usr/local/bin/postgrest'];
const ADMIN_USER = 'pg_dialer_admin';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let port;
let created = false;
const ports = new Map();      // a background step's example port -> the free port used instead
const servers = [];           // background steps started: {where, child, port, log}
const logDirs = [];           // their output's directories, removed at the end
let asideDir = null;          // where SYSTEM_PATHS that existed before the test wait meanwhile
let adminUserBefore = null;   // whether the system user pg_dialer_admin existed before
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

/** A step's text for this test: its cluster instead of 15/main and 5432, its servers' ports. */
function adapt(code) {
  let out = code.replace(/\b15 main\b/g, `15 ${NAME}`).replace(/\/15\/main\//g, `/15/${NAME}/`)
    .replace(/\b(localhost|127\.0\.0\.1):5432\b/g, `$1:${port}`);
  for (const [example, actual] of ports) {
    out = out.replace(new RegExp(`(?<![\\w.])(localhost:|127\\.0\\.0\\.1:|--port )${example}\\b`, 'g'), `$1${actual}`);
  }
  return out;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300000, ...opts });
  const how = r.status === null ? `\n(ended by ${r.signal}${r.error ? `: ${r.error.message}` : ''})` : '';
  return { status: r.status, out: `${r.stdout || ''}${r.stderr || ''}${how}`, error: r.error };
}

/**
 * The environment of a shell step: a root shell's, with PGPORT the cluster's port.  The
 * suite's own PGHOST, PGUSER, ... (its throwaway cluster) are left out, as a user's shell
 * does not have them.
 */
function stepEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^PG/.test(k)));
  return { ...env, PGPORT: String(port) };
}

/**
 * Runs a shell step as root in the repository, under the build lock (it may build); the
 * lock is not passed on (-o), or a server the step starts (pg_ctlcluster restart) would hold
 * it for as long as it runs.
 */
function runRoot(code) {
  return run('flock', ['-o', '/tmp/pg_dialer_build.lock', 'bash', '-euo', 'pipefail', '-c', code],
    { cwd: repo, env: stepEnv(), input: '' });
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

function recordPid(pid) {
  if (process.env.DIALER_PID_FILE && pid) fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`);
}

function recordPostmaster() {
  try {
    const pid = fs.readFileSync(`/var/lib/postgresql/15/${NAME}/postmaster.pid`, 'utf8').split('\n')[0];
    if (/^\d+$/.test(pid)) recordPid(pid);
  } catch { /* not running */ }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function accepts(p) {
  return new Promise((resolve) => {
    const s = net.connect({ port: p, host: '127.0.0.1' }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** The values of a metric's samples whose labels include the given ones (any order). */
function samples(metrics, name, labels) {
  const out = [];
  for (const m of metrics.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    const have = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) out.push(Number(m[2]));
  }
  return out;
}

/** The packages an `apt-get install` line names, each checked to be installed. */
function checkPackages(line, where) {
  const pkgs = line.replace(/^\s*apt-get install\s+/, '').trim().split(/\s+/).filter((w) => !w.startsWith('-'));
  assert.ok(pkgs.length > 0, `${where}: packages named`);
  for (const p of pkgs) {
    const q = run('dpkg-query', ['-W', '-f=${Status}', p]);
    assert.match(q.out, /install ok installed/, `${where}: package ${p} is installed`);
  }
}

function packageInstalled() {
  return /install ok installed/.test(run('dpkg-query', ['-W', '-f=${Status}', PACKAGE]).out);
}

/** The files (not directories) a .deb holds, as absolute paths. */
function debFiles(deb) {
  const r = run('dpkg-deb', ['-c', deb]);
  assert.equal(r.status, 0, `dpkg-deb -c ${deb}: ${r.out}`);
  return r.out.split('\n').filter((l) => /^-/.test(l)).map((l) => l.replace(/^.*\s\.\//, '/')).sort();
}

/** Removes the package left by a killed run (apt would not install the same version again). */
function removeLeftPackage() {
  if (!packageInstalled()) return;
  const r = run('apt-get', ['purge', '-y', PACKAGE], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) throw new Error(`apt-get purge ${PACKAGE}: ${r.out}`);
}

/**
 * Removes what an installation from source left in the system tree (pg_dialer's library, its
 * bitcode, its control file and scripts), so that README's package way starts from a machine
 * without pg_dialer: a file an older version built from source left behind (a source file
 * renamed since, say) is no file of the package's, and dpkg warns when it cannot remove the
 * directory that holds it.  The after-hook installs from source again for the tests that follow.
 */
function removeSourceInstall() {
  const lib = '/usr/lib/postgresql/15/lib';
  const ext = '/usr/share/postgresql/15/extension';
  fs.rmSync(path.join(lib, 'pg_dialer.so'), { force: true });
  fs.rmSync(path.join(lib, 'bitcode', 'pg_dialer'), { recursive: true, force: true });
  fs.rmSync(path.join(lib, 'bitcode', 'pg_dialer.index.bc'), { force: true });
  if (fs.existsSync(ext)) {
    for (const f of fs.readdirSync(ext)) if (/^pg_dialer[-.]/.test(f)) fs.rmSync(path.join(ext, f));
  }
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

/** Moves the SYSTEM_PATHS that exist aside (into a directory of its own), so that README's blocks
 *  start from a machine without them; notes whether the admin user exists. */
function moveSystemPathsAside() {
  adminUserBefore = run('id', ['-u', ADMIN_USER]).status === 0;
  asideDir = fs.mkdtempSync('/var/tmp/pg_dialer_debian_aside.');
  for (const p of SYSTEM_PATHS) {
    if (fs.existsSync(p)) fs.renameSync(p, path.join(asideDir, p.replace(/\//g, '%')));
  }
}

/** Stops what the Admin section started, if its last block did not (a failed run), by pid file. */
function stopAdminServers() {
  const pidFile = '/var/lib/pg_dialer_admin/postgrest.pid';
  if (fs.existsSync(pidFile)) {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (pid > 0) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
  }
  const nginxPid = '/var/lib/pg_dialer_admin/nginx/nginx.pid';
  if (fs.existsSync(nginxPid)) {
    const pid = Number(fs.readFileSync(nginxPid, 'utf8').trim());
    if (pid > 0) { try { process.kill(pid, 'SIGQUIT'); } catch { /* gone */ } }
  }
}

/** Removes what the blocks wrote and puts back what was there before; removes the admin user
 *  when the test created it. */
function restoreSystemPaths() {
  if (asideDir === null) return;
  for (const p of SYSTEM_PATHS) fs.rmSync(p, { recursive: true, force: true });
  for (const p of SYSTEM_PATHS) {
    const saved = path.join(asideDir, p.replace(/\//g, '%'));
    if (fs.existsSync(saved)) fs.renameSync(saved, p);
  }
  fs.rmSync(asideDir, { recursive: true, force: true });
  asideDir = null;
  if (adminUserBefore === false && run('id', ['-u', ADMIN_USER]).status === 0) run('userdel', [ADMIN_USER]);
}

/** Stops the servers background steps started: their whole process group, by PID. */
async function stopServers() {
  for (const s of servers.splice(0)) {
    if (s.child.exitCode !== null || s.child.signalCode !== null) continue;
    const gone = new Promise((r) => s.child.once('exit', r));
    try { process.kill(-s.child.pid, 'SIGTERM'); } catch { /* gone */ }
    await Promise.race([gone, sleep(5000)]);
    try { process.kill(-s.child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

async function waitFor(fn, what, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let v;
  while (Date.now() < end) {
    v = await fn();
    if (v) return v;
    await sleep(500);
  }
  assert.fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

test.before(async () => {
  if (!canRun) return;
  dropStaleClusters();
  removeLeftPackage();
  removeSourceInstall();
  moveSystemPathsAside();
  for (const step of readmeSteps()) {
    if (step.kind === 'background') ports.set(step.arg, await freePort());
  }
  port = await freePort();
  const r = run('pg_createcluster', ['15', NAME, '-p', String(port), '--start']);
  created = true;
  assert.equal(r.status, 0, `pg_createcluster failed:\n${r.out}`);
  recordPostmaster();
});

test.after(async () => {
  await stopServers();
  for (const d of logDirs) fs.rmSync(d, { recursive: true, force: true });
  if (created) {
    const r = run('pg_dropcluster', ['--stop', '15', NAME]);
    if (r.status !== 0) console.error(`pg_dropcluster --stop 15 ${NAME}: ${r.out}`);
  }
  if (canRun) {
    // a failed run may have left the package: the suite goes on with pg_dialer built from source
    try { removeLeftPackage(); } catch (e) { console.error(e.message); }
    if (!fs.existsSync('/usr/share/postgresql/15/extension/pg_dialer.control')) {
      const r = runRoot('make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config');
      if (r.status !== 0) console.error(`make install: ${r.out.slice(-2000)}`);
    }
    stopAdminServers();
    restoreSystemPaths();
  }
});

test('README Install (from the Debian package), Monitoring and the admin API, step by step, on a cluster made with pg_createcluster', {
  skip: !canRun && 'needs root, pg_createcluster and /usr/lib/postgresql/15',
}, async (t) => {
  const steps = readmeSteps();
  const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8').split('\n');
  const upgrading = readme.findIndex((l) => l === '## Upgrading') + 1;
  const installSteps = steps.filter((s) => s.line < upgrading);
  assert.ok(installSteps.length >= 10, `README's Install section has its marked steps (${installSteps.length})`);
  assert.ok(steps.some((s) => s.kind === 'source' && s.line < upgrading), 'Install shows the from-source way');
  const deb = path.join(repo, 'build', `${PACKAGE}_${EXTVERSION}-1_amd64.deb`);
  let installedDeb = false;
  let firstCall = null;
  let simPort = null;
  let exporterPort = null;

  for (const step of steps) {
    const where = `README.md:${step.line} (${step.kind}${step.arg ? ' ' + step.arg : ''})`;
    if (step.kind === 'source') continue; // after the package's removal, below
    t.diagnostic(`step ${where}`);
    const code = adapt(step.code);
    if (step.kind === 'packages') {
      const m = /^\s*apt-get install\s+.*$/m.exec(step.code);
      assert.ok(m, `${where}: an apt-get install line`);
      checkPackages(m[0], where);
    } else if (step.kind === 'npm') {
      assert.deepEqual(step.code.split('\n').filter((l) => l.trim()), ['npm ci'], `${where}: the step is npm ci`);
      const r = run('npm', ['ls', '--depth=0'], { cwd: repo });
      assert.equal(r.status, 0, `${where}: the modules of package-lock.json are installed (npm ls):\n${r.out}`);
    } else if (step.kind === 'root') {
      const r = runRoot(code);
      assert.equal(r.status, 0, `${where} failed:\n${code}\n${r.out}`);
      recordPostmaster();
      if (/^apt install \.\//m.test(code)) {
        assert.ok(code.includes(path.relative(repo, deb)), `${where} installs ${path.relative(repo, deb)}`);
        installedDeb = true;
        checkPackage(deb, where);
      }
    } else if (step.kind === 'sql') {
      const r = psql(step.arg, code);
      assert.equal(r.status, 0, `${where} failed:\n${code}\n${r.out}`);
      assert.doesNotMatch(r.out, /^(UPDATE|DELETE) 0$/m, `${where}: a statement changed no row:\n${r.out}`);
      if (/enqueue_call/.test(step.code) && !firstCall) {
        firstCall = query(`SELECT max(id) FROM dialer.scheduled_calls WHERE campaign IS NULL`);
      }
    } else if (step.kind === 'background') {
      const p = ports.get(step.arg);
      assert.ok(new RegExp(`(127\\.0\\.0\\.1:|--port )${p}\\b`).test(code),
        `${where}: the block names its port ${step.arg} as 127.0.0.1:${step.arg} or --port ${step.arg}`);
      logDirs.push(fs.mkdtempSync('/tmp/dialer_it_bg_'));
      const logPath = path.join(logDirs[logDirs.length - 1], 'out.log');
      const fd = fs.openSync(logPath, 'w');
      const child = spawn('bash', ['-euo', 'pipefail', '-c', code],
        { cwd: repo, detached: true, stdio: ['ignore', fd, fd], env: stepEnv() });
      fs.closeSync(fd);
      recordPid(child.pid);
      servers.push({ where, child, port: p, log: logPath });
      await waitFor(async () => {
        if (child.exitCode !== null) assert.fail(`${where} exited (${child.exitCode}):\n${code}\n${fs.readFileSync(logPath, 'utf8')}`);
        return accepts(p);
      }, `${where} to accept connections on port ${p}`, 30000);
      if (/test\/sim\/server\.js/.test(code)) simPort = p;
      if (/prometheus-postgres-exporter/.test(code)) exporterPort = p;
    } else {
      assert.fail(`${where}: unknown step kind ${step.kind}`);
    }
  }
  assert.ok(installedDeb, `README installed the package ${PACKAGE} with apt`);
  assert.ok(firstCall, 'README enqueued a first call');
  assert.ok(simPort, 'README started the Twilio simulator');
  assert.ok(exporterPort, 'README started prometheus-postgres-exporter');

  // README's first call reached the simulator README started, saying what the provider's twiml_url says
  assert.equal(query(`SELECT base_url FROM dialer.providers WHERE name = 'default'`), `http://127.0.0.1:${simPort}`);
  await waitFor(() => query(`SELECT status FROM dialer.scheduled_calls WHERE id = ${firstCall}`) === 'dialing',
    `call ${firstCall} dialing`, 30000);
  const { requests } = (await request(`http://127.0.0.1:${simPort}/__sim/requests?limit=1000`)).json;
  const creates = requests.filter((e) => e.method === 'POST' && /\/Calls\.json$/.test(e.path));
  const first = creates.find((e) => e.body && e.body.To === '+14155550123');
  assert.ok(first, `the simulator got README's call: ${JSON.stringify(creates.map((e) => e.body))}`);
  assert.equal(first.body.Url, 'https://hooks.example.com/twiml/reminder.xml');
  assert.equal(first.status, 201);
  assert.equal(query(`SELECT current_setting('dialer.default_timezone')`), 'America/New_York');
  assert.equal(query(`SELECT current_setting('dialer.databases')`), 'app');

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

  // Monitoring: the exporter README started logs in as dialer_monitor with the password of its
  // file (scram-sha-256 over TCP) and publishes pg_dialer's metrics, as the database counts them
  assert.equal(query(`SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'dialer_monitor'`), 't');
  const dialing = query(`SELECT count(*) FROM dialer.scheduled_calls WHERE provider = 'default' AND campaign IS NULL AND status = 'dialing'`);
  const exporterLog = () => fs.readFileSync(servers.find((s) => s.port === exporterPort).log, 'utf8').slice(-3000);
  const metrics = await waitFor(async () => {
    const r = await request(`http://127.0.0.1:${exporterPort}/metrics`);
    return r.status === 200 && /^pg_dialer_worker_up\{/m.test(r.text) ? r.text : null;
  }, 'pg_dialer metrics from the exporter', 30000).catch((e) => { e.message += `\n${exporterLog()}`; throw e; });
  const ours = metrics.split('\n').filter((l) => l.startsWith('pg_dialer')).join('\n');
  assert.match(metrics, /^pg_up 1$/m, exporterLog());
  assert.deepEqual(samples(metrics, 'pg_dialer_worker_up', { database: 'app' }), [1], ours);
  assert.deepEqual(samples(metrics, 'pg_dialer_calls_count',
    { database: 'app', provider: 'default', campaign: '', status: 'dialing' }), [Number(dialing)], ours);
  assert.deepEqual(samples(metrics, 'pg_dialer_provider_enabled', { database: 'app', provider: 'default' }), [1], ours);

  // the server log: the worker never missed its database, pg_cron never failed to connect
  const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
  assert.doesNotMatch(log, /database "app" does not exist/);
  assert.doesNotMatch(log, /connection failed|PANIC|terminated by signal/);

  // README: `apt remove postgresql-15-pg-dialer` takes its files away again (servers and
  // cluster first, as a user would stop using it before removing it)
  await stopServers();
  const drop = run('pg_dropcluster', ['--stop', '15', NAME]);
  assert.equal(drop.status, 0, drop.out);
  created = false;
  const files = debFiles(deb);
  const remove = run('apt-get', ['remove', '-y', PACKAGE], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  assert.equal(remove.status, 0, remove.out);
  assert.doesNotMatch(remove.out, /warning|error/i, remove.out);
  assert.equal(packageInstalled(), false, `${PACKAGE} is no longer installed`);
  assert.deepEqual(files.filter((f) => fs.existsSync(f)), [], 'no file of the package is left');
  for (const d of ['/usr/lib/postgresql/15/lib/bitcode/pg_dialer', '/usr/share/doc/postgresql-15-pg-dialer']) {
    assert.equal(fs.existsSync(d), false, `${d} is removed with the package`);
  }

  // README's from-source way puts the same files in the same places
  const source = steps.filter((s) => s.kind === 'source');
  for (const step of source) {
    const where = `README.md:${step.line} (source)`;
    t.diagnostic(`step ${where}`);
    const lines = adapt(step.code).split('\n');
    for (const l of lines.filter((x) => /^\s*apt-get install\s/.test(x))) checkPackages(l, where);
    const rest = lines.filter((x) => !/^\s*apt-get install\s/.test(x)).join('\n');
    const r = runRoot(rest);
    assert.equal(r.status, 0, `${where} failed:\n${rest}\n${r.out}`);
  }
  const pgFiles = files.filter((f) => /^\/usr\/(lib|share)\/postgresql\//.test(f));
  assert.deepEqual(pgFiles.filter((f) => !fs.existsSync(f)), [], 'make install installs every PostgreSQL file of the package');
});

/**
 * The package as built: its name and version, the files it holds (the library and its
 * bitcode, the control file and every SQL script, the documents; nothing else), apt's record
 * of it, and dpkg's check that the installed files are the package's.
 */
function checkPackage(deb, where) {
  assert.ok(fs.existsSync(deb), `${where}: make deb wrote ${deb}`);
  const info = run('dpkg-deb', ['-f', deb, 'Package', 'Version', 'Depends']);
  assert.match(info.out, new RegExp(`^Package: ${PACKAGE}$`, 'm'));
  assert.match(info.out, new RegExp(`^Version: ${EXTVERSION.replace(/\./g, '\\.')}-1$`, 'm'));
  assert.match(info.out, /^Depends: .*postgresql-15\b.*libcurl/m);
  // documents larger than 4 kB are compressed (dh_compress): compared without .gz
  const files = debFiles(deb).map((f) => (f.startsWith('/usr/share/doc/') ? f.replace(/\.gz$/, '') : f)).sort();
  // the scripts make builds (the current install script, every update script) and the install
  // scripts of released versions, kept as released
  const scripts = ['', 'released'].flatMap((d) => fs.readdirSync(path.join(repo, 'sql', 'install', d))
    .filter((f) => /^pg_dialer--.*\.sql$/.test(f)));
  const expected = [
    '/usr/lib/postgresql/15/lib/pg_dialer.so',
    '/usr/lib/postgresql/15/lib/bitcode/pg_dialer.index.bc',
    ...fs.readdirSync(path.join(repo, 'src')).filter((f) => f.endsWith('.c'))
      .map((f) => `/usr/lib/postgresql/15/lib/bitcode/pg_dialer/src/${f.replace(/\.c$/, '.bc')}`),
    '/usr/share/postgresql/15/extension/pg_dialer.control',
    `/usr/share/postgresql/15/extension/pg_dialer--${EXTVERSION}.sql`,
    ...scripts.map((f) => `/usr/share/postgresql/15/extension/${f}`),
    ...['README.md', 'changelog', 'changelog.Debian', 'copyright']
      .map((f) => `/usr/share/doc/${PACKAGE}/${f}`),
    ...fs.readdirSync(path.join(repo, 'doc')).filter((f) => /^release-notes-.*\.md$/.test(f))
      .map((f) => `/usr/share/doc/${PACKAGE}/${f}`),
  ];
  assert.deepEqual(files, [...new Set(expected)].sort(), `${where}: the files of ${path.basename(deb)}`);
  assert.equal(packageInstalled(), true, `${where}: ${PACKAGE} is installed`);
  const verify = run('dpkg', ['--verify', PACKAGE]);
  assert.equal(verify.status, 0, `${where}: dpkg --verify ${PACKAGE}: ${verify.out}`);
  assert.equal(verify.out.trim(), '', `${where}: the installed files are the package's: ${verify.out}`);
}
