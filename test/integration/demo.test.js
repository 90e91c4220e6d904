'use strict';
// README's demo command (`make demo`, that is `bash test/demo.sh`) as a user runs it:
//   - the whole loop on its own throwaway cluster, simulators, PostgREST and nginx: it exits 0
//     with every check passed and stops everything it started;
//   - `make demo KEEP=1` (DIALER_DEMO_KEEP=1): after its checks the stack stays up and the
//     dashboard it prints answers; Ctrl-C (SIGINT to the foreground process group, as a
//     terminal sends it) stops everything: the cluster's port and the dashboard go quiet.
// Run by test/run_all.sh (DIALER_ONLY=demo); uses DIALER_PGBIN's tree, installed by run_all.sh.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');

const repo = path.resolve(__dirname, '..', '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const plain = (s) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
/** Rejects after ms with the demo's output (a timer that does not keep the test process alive). */
const deadline = (ms, what, run) => new Promise((_, reject) => {
  setTimeout(() => reject(new Error(`${what}:\n${run.out.slice(-3000)}`)), ms).unref();
});

/** Starts test/demo.sh in a process group of its own; collects its output. */
function startDemo(extraEnv) {
  const env = { ...process.env, DIALER_SKIP_DEPS: '1', ...extraEnv };
  // the demo chooses its own cluster, database and PID file
  for (const k of ['PGHOST', 'PGPORT', 'DIALER_DB', 'DIALER_PID_FILE', 'DIALER_CLUSTER_DIR', 'DIALER_KEEP']) delete env[k];
  const child = spawn('bash', [path.join(repo, 'test', 'demo.sh')], {
    cwd: repo, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { child, out: '', exited: null };
  child.stdout.on('data', (b) => { run.out += plain(b.toString()); });
  child.stderr.on('data', (b) => { run.out += plain(b.toString()); });
  run.done = new Promise((resolve) => child.on('exit', (code, signal) => {
    run.exited = { code, signal };
    resolve(run.exited);
  }));
  return run;
}

async function waitForOutput(run, re, ms) {
  const until = Date.now() + ms;
  for (;;) {
    const m = re.exec(run.out);
    if (m) return m;
    if (run.exited) throw new Error(`the demo exited (${JSON.stringify(run.exited)}) before ${re}:\n${run.out.slice(-3000)}`);
    if (Date.now() > until) throw new Error(`no ${re} within ${ms} ms:\n${run.out.slice(-3000)}`);
    await sleep(200);
  }
}

function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

function stopGroup(run) {
  if (run.exited) return;
  try { process.kill(-run.child.pid, 'SIGTERM'); } catch (e) { /* gone */ }
}

test('make demo: the whole loop passes its checks and stops everything it started', { timeout: 300000 }, async () => {
  const run = startDemo({ DIALER_DEMO_KEEP: '0' });
  try {
    const port = Number((await waitForOutput(run, /PostgreSQL 15 on 127\.0\.0\.1:(\d+)/, 120000))[1]);
    const { code } = await Promise.race([run.done, deadline(240000, 'the demo did not finish', run)]);
    assert.equal(code, 0, `the demo failed:\n${run.out.slice(-3000)}`);
    assert.match(run.out, /demo: all checks passed/);
    assert.doesNotMatch(run.out, /^\s*FAIL/m);
    assert.match(run.out, /demo: cluster stopped/);
    assert.equal(await accepts(port), false, 'the demo cluster is stopped');
  } finally {
    stopGroup(run);
  }
});

test('make demo KEEP=1: the dashboard stays up after the checks, and Ctrl-C stops everything', { timeout: 300000 }, async () => {
  const run = startDemo({ DIALER_DEMO_KEEP: '1' });
  try {
    const port = Number((await waitForOutput(run, /PostgreSQL 15 on 127\.0\.0\.1:(\d+)/, 120000))[1]);
    const url = (await waitForOutput(run, /KEEP=1: the stack stays up\. Dashboard: (\S+)/, 240000))[1];
    assert.match(run.out, /demo: all checks passed/);
    await sleep(1500);
    assert.equal(run.exited, null, 'the demo keeps running after its checks');
    const page = await fetch(url);
    assert.equal(page.status, 200, `the dashboard ${url} answers`);
    assert.match(await page.text(), /<html/i);
    // the tokens it printed (made by deploy/admin-token.sh, which it names) are accepted
    assert.match(run.out, /more: deploy\/admin-token\.sh dialer_viewer --sub you --expires 8h --secret-file \S+/);
    const operatorToken = /operator: (\S+)/.exec(run.out)[1];
    const stats = await fetch(new URL('../admin/rpc/stats', url), { headers: { Authorization: `Bearer ${operatorToken}` } });
    assert.equal(stats.status, 200, `the printed operator token reads the stats: ${await stats.text()}`);
    assert.equal(await accepts(port), true, 'the cluster is still up');

    // Ctrl-C: the terminal sends SIGINT to the foreground process group
    process.kill(-run.child.pid, 'SIGINT');
    const exited = await Promise.race([run.done, deadline(60000, 'Ctrl-C did not stop the demo', run)]);
    assert.ok(exited.code !== null || exited.signal !== null);
    assert.match(run.out, /demo: cluster stopped/);
    assert.equal(await accepts(port), false, 'the cluster is stopped');
    const { port: dashPort } = new URL(url);
    assert.equal(await accepts(Number(dashPort)), false, 'the dashboard is stopped');
  } finally {
    stopGroup(run);
  }
});
