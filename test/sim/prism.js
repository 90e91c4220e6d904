'use strict';
/*
 * Stoplight Prism (mock mode) against the TEST COPY of Twilio's OpenAPI description, so the
 * requests the dialer builds can be checked against Twilio's own contract:
 *
 *   const { startPrism } = require('./prism');
 *   const prism = await startPrism({ port: 0 });   // {port, url, pid, close(), logs(), startupMs, spec}
 *   // point a twilio provider's base_url at prism.url: a conforming create answers 201
 *   // (the spec's example call), a non-conforming one 422 application/problem+json with the
 *   // violations in `validation`, missing Basic credentials 401.
 *   await prism.close();
 *
 * Runs node_modules/.bin/prism (`prism mock --errors -h 127.0.0.1 -p PORT SPEC`), waits until it
 * answers HTTP, and on close kills exactly that PID (SIGTERM, then SIGKILL after 5 s).
 * The patched spec is written by prism-spec.js into a fresh temp directory unless `spec` is given.
 */

const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const { writePatchedSpec } = require('./prism-spec');

const ROOT = path.resolve(__dirname, '..', '..');
const PRISM_BIN = path.join(ROOT, 'node_modules', '.bin', 'prism');

function freePort(host) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function probe(url) {
  return new Promise((resolve) => {
    const req = http.get(url + '/__prism_probe', { agent: false, timeout: 1000 }, (res) => {
      res.resume(); res.on('end', () => resolve(true));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/**
 * startPrism({port = 0, host = '127.0.0.1', spec, errors = true, dynamic = false,
 *             timeoutMs = 120000, verbose = 'info'})
 */
async function startPrism(opts = {}) {
  const host = opts.host || '127.0.0.1';
  const port = opts.port ? Number(opts.port) : await freePort(host);
  if (!fs.existsSync(PRISM_BIN)) throw new Error(`${PRISM_BIN} not found: run npm ci in ${ROOT}`);
  let tmpDir = null;
  let spec = opts.spec;
  if (!spec) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer-prism-'));
    spec = path.join(tmpDir, 'twilio_api_v2010.prism.json');
    writePatchedSpec(spec);
  }
  const args = ['mock', '-h', host, '-p', String(port), '-v', opts.verbose || 'info'];
  if (opts.errors !== false) args.push('--errors');
  if (opts.dynamic) args.push('--dynamic');
  args.push(spec);

  const t0 = process.hrtime.bigint();
  const child = spawn(PRISM_BIN, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
  // keep the tail of its log (it logs every request and its validation errors)
  // test/run_all.sh kills every PID listed in $DIALER_PID_FILE when the suite ends
  if (process.env.DIALER_PID_FILE && child.pid) fs.appendFileSync(process.env.DIALER_PID_FILE, `${child.pid}\n`);
  let log = '';
  const keep = (c) => { log += c; if (log.length > 1 << 20) log = log.slice(-(1 << 19)); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exitP = new Promise((resolve) => child.on('exit', (code, sig) => { exited = { code, sig }; resolve(exited); }));
  child.on('error', (e) => { exited = { error: e.message }; });

  const url = `http://${host}:${port}`;
  const deadline = Date.now() + (opts.timeoutMs || 120000);
  for (;;) {
    if (exited) {
      cleanup();
      throw new Error(`prism exited before answering (${JSON.stringify(exited)}):\n${log.slice(-4000)}`);
    }
    if (await probe(url)) break;
    if (Date.now() > deadline) {
      await kill();
      throw new Error(`prism did not answer within ${opts.timeoutMs || 120000} ms:\n${log.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const startupMs = Number(process.hrtime.bigint() - t0) / 1e6;

  function cleanup() {
    if (tmpDir) { fs.rmSync(tmpDir, { recursive: true, force: true }); tmpDir = null; }
  }
  async function kill() {
    if (!exited) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* already gone */ }
      const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, 5000);
      await exitP;
      clearTimeout(timer);
    }
    cleanup();
  }
  let closing = null;
  return {
    port, url, pid: child.pid, spec, startupMs,
    logs: () => log,
    close: () => { closing = closing || kill(); return closing; },
  };
}

module.exports = { startPrism, PRISM_BIN };
