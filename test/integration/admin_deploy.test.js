'use strict';
// README's "Admin API and dashboard" deployment (doc/admin.md, "Deploying"), run as written: the
// blocks marked `<!-- install-test: KIND [DATABASE] -->` in that section, in order, as
// test/integration/debian_install.test.js runs the Install section's (root: bash as root in
// the repository; sql DATABASE: psql as the postgres user).  They make the system user
// pg_dialer_admin, the JWT secret and the database password, the roles, start PostgREST and a
// standalone nginx as that user, make tokens with deploy/admin-token.sh, and stop the servers.
//
// On the suite's cluster rather than Debian's (debian_install.test.js runs these blocks there):
//   - database app is made here, with pg_dialer and a provider named default (what README's
//     Install does before), and dropped at the end;
//   - pg_hba.conf asks dialer_admin_authenticator for a password over TCP, as Debian's does
//     (`host app dialer_admin_authenticator 127.0.0.1/32 scram-sha-256` first), until the end;
//   - what the blocks would write to the machine goes to a temporary directory: /etc/pg_dialer,
//     /var/lib/pg_dialer_admin and /usr/local in the blocks name folders of it (and
//     DIALER_ADMIN_JWT_SECRET_FILE tells deploy/admin-token.sh where its default secret file is);
//     ports 5432, 3001 and 8081 are the cluster's and two free ones.  The system user
//     pg_dialer_admin is made for real, as README says, and removed at the end when the test
//     made it.
// Then it checks what the blocks promise: the secret's length and who may read it, PostgREST
// and nginx running as pg_dialer_admin, PostgREST logged in with the password (a login without
// one is refused), the dashboard served, the viewer's and the frontend's requests answered, and
// both servers stopped by the last block.
//
// Needs root (useradd, setpriv, runuser) and nginx.  Run by test/run_all.sh (DIALER_ONLY=admin_deploy).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Client } = require('pg');
const d = require('../lib/dialer');
const { freePort } = require('../lib/webhook_stack');

const REPO = path.resolve(__dirname, '..', '..');
const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';
const HBA_LINE = 'host app dialer_admin_authenticator 127.0.0.1/32 scram-sha-256   # admin_deploy.test.js';
const canRun = process.getuid && process.getuid() === 0 && fs.existsSync('/usr/sbin/nginx');

let db;       // the suite's database: to make and drop app, and reload
let app;      // database app
let tmp;
let hba;
let apiPort;
let webPort;
let adminUserBefore = null;   // whether the system user pg_dialer_admin existed before the test

/** The marked blocks of README's "Admin API and dashboard" section, in order: {kind, arg, code, line}. */
function adminSteps() {
  const lines = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8').split('\n');
  const from = lines.indexOf('## Admin API and dashboard');
  let to = lines.findIndex((l, i) => i > from && /^## /.test(l));
  if (to < 0) to = lines.length;
  const steps = [];
  for (let i = from; i < to; i++) {
    const m = /^<!--\s*install-test:\s*(\w+)(?:\s+(\S+))?\s*-->\s*$/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (j < to && lines[j].trim() === '') j++;
    if (!/^\s*```/.test(lines[j] || '')) throw new Error(`README.md:${i + 1}: marker not followed by a fenced block`);
    const body = [];
    for (j++; j < to && !/^\s*```\s*$/.test(lines[j]); j++) body.push(lines[j]);
    steps.push({ kind: m[1], arg: m[2], code: `${body.join('\n')}\n`, line: i + 1 });
  }
  return steps;
}

/** A block's text for this machine: the temporary directory for system paths, this cluster's and free ports. */
function forTest(code) {
  return code
    .replace(/\/etc\/pg_dialer\b/g, `${tmp}/etc/pg_dialer`)
    .replace(/\/var\/lib\/pg_dialer_admin\b/g, `${tmp}/var/lib/pg_dialer_admin`)
    .replace(/\/usr\/local\//g, `${tmp}/usr/local/`)
    .replace(/127\.0\.0\.1:5432\b/g, `127.0.0.1:${process.env.PGPORT}`)
    .replace(/\b3001\b/g, String(apiPort))
    .replace(/\b8081\b/g, String(webPort));
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120000, ...opts });
  return { status: r.status, out: `${r.stdout || ''}${r.stderr || ''}`, stdout: r.stdout || '', error: r.error };
}

function env() {
  return {
    PATH: `${PGBIN}:${process.env.PATH}`,
    PGHOST: process.env.PGHOST || '127.0.0.1',
    PGPORT: String(process.env.PGPORT),
    DIALER_ADMIN_JWT_SECRET_FILE: `${tmp}/etc/pg_dialer/admin_jwt_secret`,
  };
}

/** The user a process runs as (its real uid's name), or null when it is gone. */
function userOf(pid) {
  try {
    const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1];
    return run('id', ['-nu', uid]).stdout.trim();
  } catch {
    return null;
  }
}

function recordPid(pid) {
  if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`);
}

function pidIn(file) {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

test.before(async () => {
  if (!canRun) return;
  db = await d.connect();
  await db.query('DROP DATABASE IF EXISTS app WITH (FORCE)');
  await db.query('CREATE DATABASE app');
  app = new Client({ host: process.env.PGHOST, port: Number(process.env.PGPORT), user: process.env.PGUSER || 'postgres', database: 'app' });
  await app.connect();
  // what README's Install does before: the extension, and the provider default
  await app.query('CREATE EXTENSION pg_dialer');
  await app.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, enabled)
                   VALUES ('default', 'twilio', 'http://127.0.0.1:1', 'AC0123456789abcdef0123456789abcdef', 'your-auth-token',
                           '+15005550006', false)`);
  // Debian's pg_hba.conf: a password over TCP
  hba = path.join(process.env.DIALER_CLUSTER_DIR, 'data', 'pg_hba.conf');
  fs.writeFileSync(hba, `${HBA_LINE}\n${fs.readFileSync(hba, 'utf8')}`);
  await db.query('SELECT pg_reload_conf()');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_deploy.'));
  fs.chmodSync(tmp, 0o755);
  // what every Debian machine has
  for (const dir of ['etc', 'var/lib', 'usr/local/bin', 'usr/local/share']) fs.mkdirSync(path.join(tmp, dir), { recursive: true, mode: 0o755 });
  apiPort = await freePort();
  webPort = await freePort();
  adminUserBefore = spawnSync('id', ['-u', 'pg_dialer_admin']).status === 0;
});

test.after(async () => {
  if (!canRun) return;
  // servers a failed run left behind, by their pid files
  for (const f of ['var/lib/pg_dialer_admin/postgrest.pid', 'var/lib/pg_dialer_admin/nginx/nginx.pid']) {
    const pid = tmp && pidIn(path.join(tmp, f));
    if (pid && alive(pid)) process.kill(pid, 'SIGTERM');
  }
  if (app) await app.end().catch(() => {});
  if (hba && fs.existsSync(hba)) {
    fs.writeFileSync(hba, fs.readFileSync(hba, 'utf8').split('\n').filter((l) => l !== HBA_LINE).join('\n'));
  }
  if (db) {
    await db.query('SELECT pg_reload_conf()').catch(() => {});
    await d.sleep(500);
    await db.query('DROP DATABASE IF EXISTS app WITH (FORCE)').catch((e) => console.error(`drop database app: ${e.message}`));
    await db.end();
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  // the system user README makes: removed again when this test made it
  if (adminUserBefore === false && spawnSync('id', ['-u', 'pg_dialer_admin']).status === 0) {
    spawnSync('userdel', ['pg_dialer_admin']);
  }
});

test('README: the admin API and dashboard deployment, as written', { skip: !canRun && 'needs root and nginx' }, async (t) => {
  const steps = adminSteps();
  assert.ok(steps.length >= 7, `the section has its marked blocks (${steps.length})`);
  const outputs = [];
  for (const step of steps) {
    const where = `README.md:${step.line} (${step.kind}${step.arg ? ` ${step.arg}` : ''})`;
    t.diagnostic(`step ${where}`);
    let r;
    if (step.kind === 'root') {
      r = run('bash', ['--norc', '--noprofile', '-euo', 'pipefail', '-c', forTest(step.code)], { cwd: REPO, env: env() });
    } else if (step.kind === 'sql') {
      r = run('runuser', ['-u', 'postgres', '--', path.join(PGBIN, 'psql'), '-X', '-v', 'ON_ERROR_STOP=1',
        '-h', env().PGHOST, '-p', env().PGPORT, '-d', step.arg, '-f', '-'], { input: forTest(step.code), cwd: '/' });
    } else {
      assert.fail(`${where}: unknown kind ${step.kind}`);
    }
    assert.equal(r.status, 0, `${where} failed:\n${step.code}\n${r.out}`);
    outputs.push(r.stdout);
    // servers started by a block: recorded for test/run_all.sh, which kills what is left
    for (const f of ['var/lib/pg_dialer_admin/postgrest.pid', 'var/lib/pg_dialer_admin/nginx/nginx.pid']) {
      const pid = pidIn(path.join(tmp, f));
      if (pid && alive(pid)) recordPid(pid);
    }
    // before the last block (which stops them): what the running deployment promises
    if (step === steps[steps.length - 2]) await checkRunning();
  }

  // the viewer's request answered the stats, the frontend's enqueued its call
  assert.ok(outputs.some((o) => /"by_campaign"/.test(o)), `the viewer's request answered: ${outputs.join('\n')}`);
  const fe = await app.query(`SELECT customer_ref, to_number, campaign, status FROM dialer.scheduled_calls WHERE campaign = 'qualification'`);
  assert.deepEqual(fe.rows, [{ customer_ref: 'user-42', to_number: '+14155550142', campaign: 'qualification', status: 'scheduled' }]);

  // the last block stopped both servers
  const stopped = await d.waitFor(async () => [postgrestPid, nginxPid].every((p) => !alive(p)), { timeoutMs: 10000, message: 'both servers stopped' });
  assert.ok(stopped);
});

let postgrestPid;
let nginxPid;

/* What the deployment promises while it runs. */
async function checkRunning() {
  const etc = path.join(tmp, 'etc', 'pg_dialer');
  // the secret: 64 random characters, mode 0640, group pg_dialer_admin; the password file 0600, pg_dialer_admin's
  const secret = fs.readFileSync(path.join(etc, 'admin_jwt_secret'), 'utf8');
  assert.match(secret, /^[A-Za-z0-9+/=]{64}$/, 'a secret of 64 characters, no newline');
  const st = fs.statSync(path.join(etc, 'admin_jwt_secret'));
  assert.equal(st.mode & 0o777, 0o640);
  assert.equal(run('stat', ['-c', '%U:%G', path.join(etc, 'admin_jwt_secret')]).stdout.trim(), 'root:pg_dialer_admin');
  assert.equal(fs.statSync(etc).mode & 0o777, 0o750);
  assert.equal(fs.statSync(path.join(etc, 'admin.pgpass')).mode & 0o777, 0o600);
  assert.equal(run('stat', ['-c', '%U', path.join(etc, 'admin.pgpass')]).stdout.trim(), 'pg_dialer_admin');

  // PostgREST and nginx (master and worker) run as pg_dialer_admin
  postgrestPid = pidIn(path.join(tmp, 'var/lib/pg_dialer_admin/postgrest.pid'));
  nginxPid = pidIn(path.join(tmp, 'var/lib/pg_dialer_admin/nginx/nginx.pid'));
  assert.ok(postgrestPid && alive(postgrestPid), 'PostgREST runs');
  assert.ok(nginxPid && alive(nginxPid), 'nginx runs');
  assert.equal(userOf(postgrestPid), 'pg_dialer_admin');
  assert.equal(userOf(nginxPid), 'pg_dialer_admin');
  const workers = run('ps', ['-o', 'user=', '--ppid', String(nginxPid)]).stdout.trim().split('\n');
  assert.ok(workers.length >= 1 && workers.every((u) => u.trim() === 'pg_dialer_admin'), `nginx workers: ${workers}`);

  // PostgREST logged in with the password: without one, the login is refused
  const nopw = run(path.join(PGBIN, 'psql'), ['-X', '-w', '-h', '127.0.0.1', '-p', String(process.env.PGPORT),
    '-U', 'dialer_admin_authenticator', '-d', 'app', '-c', 'SELECT 1'], { env: { PATH: process.env.PATH } });
  assert.notEqual(nopw.status, 0, 'a login without the password is refused');
  assert.match(nopw.out, /password/);
  const sessions = await app.query(`SELECT count(*)::int AS n FROM pg_stat_activity
                                     WHERE usename = 'dialer_admin_authenticator' AND datname = 'app'`);
  assert.ok(sessions.rows[0].n >= 1, 'PostgREST is connected to app');

  // the dashboard is served, and its sign-in names the token tool
  const page = await fetch(`http://127.0.0.1:${webPort}/dashboard/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /deploy\/admin-token\.sh dialer_viewer/);
  // a request without a token is refused
  assert.equal((await fetch(`http://127.0.0.1:${webPort}/admin/calls`)).status, 401);
  // nginx's own files are in its directory
  for (const f of ['nginx.pid', 'error.log', 'access.log']) {
    assert.ok(fs.existsSync(path.join(tmp, 'var/lib/pg_dialer_admin/nginx', f)), `nginx wrote ${f} in its directory`);
  }
}
