'use strict';
// Upgrades, as a user does them: a database that ran the released 0.1.0 (its library built from
// git, release commit RELEASE_0_1_0, into a relocated copy of DIALER_PGBIN's PostgreSQL tree) is
// stopped, started again with the current library installed (DIALER_PGBIN's tree), and only then
// updated with ALTER EXTENSION pg_dialer UPDATE.  The test checks that
//   - between the restart and the update, the current library's dispatcher touches nothing (no
//     recovery, no claim): it waits, says so in worker_status().state and once in the server log
//     with a hint to run ALTER EXTENSION pg_dialer UPDATE;
//   - after the update, run while that dispatcher waits, the same dispatcher goes on (its usual
//     recovery first) and the catalog is identical to a fresh install of the current version
//     (every member object, column, constraint, index, trigger, function definition, ACL and
//     comment: test/lib/extension_catalog.sql), with a readable diff printed when it is not;
//   - the calls it held keep flowing: calls queued while the dispatcher waited reach the provider,
//     dialing calls take their final status from a callback, a failed call can be retried,
//     campaigns keep their schedule and rules.
// When the release commit is not in the clone's history (a shallow clone, a tarball), the test
// says so (a skipped subtest and a diagnostic) and starts from a 0.1.0 schema created with the
// current library instead: the calls 0.1.0's dispatcher would have sent are marked sent by SQL.
// Runs on its own throwaway cluster (test/lib/cluster.sh) in a temporary directory that also
// holds the 0.1.0 source and tree; a second database, dialer_fresh, holds the fresh install.
// Needs the current version installed in DIALER_PGBIN's tree (run_all.sh's make install).
//
// By hand: DIALER_PGBIN=/usr/lib/postgresql/15/bin node --test test/integration/upgrade.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { execFileSync } = require('node:child_process');
const { Client } = require('pg');
const { startSimulator } = require('../sim/server');

const repo = path.resolve(__dirname, '..', '..');
const PGBIN = path.resolve(process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin');
const OLD = '0.1.0';
const RELEASE_0_1_0 = '3f1d18b423a8d5a3f2333c8ac62dd57a8b17d099';
const DB = 'dialer_upgrade';
const FRESH = 'dialer_fresh';
const CATALOG_SQL = fs.readFileSync(path.join(repo, 'test', 'lib', 'extension_catalog.sql'), 'utf8');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The version a fresh CREATE EXTENSION installs (the control file's default_version).
const CURRENT = /default_version\s*=\s*'([^']+)'/.exec(
  fs.readFileSync(path.join(repo, 'pg_dialer.control'), 'utf8'))[1];

let dir;        // the cluster's directory (and the 0.1.0 source and tree)
let oldBin;     // the 0.1.0 tree's bin directory, or null when the release is not in the history
let noRelease;  // why the released 0.1.0 could not be built, or null
let port;
let db;         // client on DB
let sim;        // Twilio simulator
const clients = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function connect(database) {
  const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database,
    application_name: 'pg_dialer upgrade.test.js' });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

async function waitFor(fn, what, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let v;
  while (Date.now() < end) {
    v = await fn();
    if (v) return v;
    await sleep(100);
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

async function statuses(ids) {
  const r = await db.query(`SELECT id, status, last_error FROM dialer.scheduled_calls
                             WHERE id = ANY($1::bigint[]) ORDER BY id`, [ids]);
  return r.rows.map((x) => ({ id: Number(x.id), status: x.status, last_error: x.last_error }));
}

async function waitForStatus(ids, wanted, what) {
  return waitFor(async () => {
    const rows = await statuses(ids);
    return rows.length === ids.length && rows.every((x) => wanted.includes(x.status)) ? rows : null;
  }, `${what}: ${wanted.join('/')} (now ${JSON.stringify(await statuses(ids))})`);
}

async function enqueue(to, opts = {}) {
  const r = await db.query(
    `SELECT dialer.enqueue_call($1, provider => $2, payload => $3::jsonb,
                                run_at => coalesce($4::timestamptz, now()), campaign => $5) AS id`,
    [to, opts.provider || 'upg_tw', JSON.stringify(opts.payload || { message: 'Hello from the upgrade test' }),
      opts.run_at || null, opts.campaign || null]);
  return Number(r.rows[0].id);
}

// a provider's status report, as a status callback delivers it (apply_provider_status is the
// one function callbacks, webhooks and reconciliation go through, in 0.1.0 as now)
async function callback(id, status, seq) {
  const r = await db.query(
    `SELECT dialer.apply_provider_status($1, $2, (SELECT provider_call_id FROM dialer.scheduled_calls WHERE id = $1),
                                         $3, '{"duration_seconds": 7}'::jsonb, '{"via": "upgrade test"}'::jsonb) AS r`,
    [id, status, seq]);
  return r.rows[0].r;
}

async function catalog(client) {
  const r = await client.query(CATALOG_SQL, ['pg_dialer']);
  return r.rows.map((x) => `${x.section} ${x.object}: ${x.detail}`);
}

// lines of a not in b, and of b not in a (multisets), for a readable failure
function catalogDiff(a, b) {
  const count = (xs) => xs.reduce((m, x) => m.set(x, (m.get(x) || 0) + 1), new Map());
  const ca = count(a);
  const cb = count(b);
  const only = (x, y) => [...x].flatMap(([k, n]) => Array(Math.max(0, n - (y.get(k) || 0))).fill(k));
  return { onlyA: only(ca, cb), onlyB: only(cb, ca) };
}

function formatDiff({ onlyA, onlyB }, nameA, nameB) {
  const show = (xs) => xs.slice(0, 60).map((x) => '    ' + x.replace(/\n/g, '\n      ')).join('\n')
    + (xs.length > 60 ? `\n    ... and ${xs.length - 60} more` : '');
  return `only in ${nameA} (${onlyA.length}):\n${show(onlyA)}\nonly in ${nameB} (${onlyB.length}):\n${show(onlyB)}`;
}

function asPostgres(cmd, args, opts = {}) {
  const [c, a] = process.getuid && process.getuid() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  return execFileSync(c, a, { cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

// Whether the release commit is in this clone's history (not in a shallow clone or a tarball).
function releaseInHistory() {
  try {
    execFileSync('git', ['-C', repo, 'cat-file', '-e', `${RELEASE_0_1_0}^{commit}`], { stdio: 'ignore' });
    return null;
  } catch (e) {
    return `commit ${RELEASE_0_1_0} (release ${OLD}) is not in the history of ${repo} (a shallow clone or a tarball?)`;
  }
}

// Builds the released 0.1.0 from git into a relocated copy of DIALER_PGBIN's PostgreSQL tree
// (relocated binaries and pg_config find their lib and share directories beside them); returns
// that tree's bin directory.
function buildRelease(top) {
  const src = path.join(top, 'src');
  const lib = path.join(top, 'usr', 'lib', 'postgresql', '15');
  const share = path.join(top, 'usr', 'share', 'postgresql', '15');
  fs.mkdirSync(src, { recursive: true });
  fs.mkdirSync(path.dirname(lib), { recursive: true });
  fs.mkdirSync(path.dirname(share), { recursive: true });
  fs.mkdirSync(path.join(top, 'usr', 'include'), { recursive: true });
  execFileSync('bash', ['-c', 'set -o pipefail; git -C "$1" archive "$2" | tar -x -C "$3"', 'x', repo, RELEASE_0_1_0, src]);
  execFileSync('cp', ['-a', path.resolve(PGBIN, '..'), lib]);
  execFileSync('cp', ['-a', path.resolve(PGBIN, '..', '..', '..', '..', 'share', 'postgresql', '15'), share]);
  fs.symlinkSync('/usr/include/postgresql', path.join(top, 'usr', 'include', 'postgresql'));
  // what the current version installed is not part of a 0.1.0 installation
  const extdir = path.join(share, 'extension');
  for (const f of fs.readdirSync(extdir)) if (/^pg_dialer[-.]/.test(f)) fs.rmSync(path.join(extdir, f));
  fs.rmSync(path.join(lib, 'lib', 'pg_dialer.so'), { force: true });
  const pgConfig = path.join(lib, 'bin', 'pg_config');
  assert.equal(execFileSync(pgConfig, ['--pkglibdir']).toString().trim(), path.join(lib, 'lib'),
    'the relocated pg_config names its own lib directory');
  try {
    execFileSync('make', ['-C', src, '-j2', 'install', `PG_CONFIG=${pgConfig}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    assert.fail(`building the released ${OLD} failed:\n${e.stdout}\n${e.stderr}`);
  }
  assert.match(fs.readFileSync(path.join(extdir, 'pg_dialer.control'), 'utf8'), new RegExp(`default_version\\s*=\\s*'${OLD}'`));
  return path.join(lib, 'bin');
}

test.before(async () => {
  port = await freePort();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_upgrade.'));
  fs.chmodSync(dir, 0o755);
  noRelease = releaseInHistory();
  oldBin = noRelease ? null : buildRelease(dir);
  execFileSync('bash', [path.join(repo, 'test', 'lib', 'cluster.sh'), 'start', dir, String(port), DB], {
    cwd: '/',
    env: { ...process.env, PGBIN: oldBin || PGBIN,
      // 0.1.0 serves the one database dialer.database names
      DIALER_EXTRA_CONF: `dialer.database = '${DB}'\ndialer.call_window_start = '00:00'\ndialer.call_window_end = '24:00'` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  recordPid();
  db = await connect(DB);
  sim = await startSimulator({ kind: 'twilio', port: 0 });
});

// The statements of the SQL block of README's "Upgrading" section, comments removed.
function readmeUpgradeSQL() {
  const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Upgrading\n'));
  const block = /```sql\n([\s\S]*?)```/.exec(section.slice(0, section.indexOf('\n## ', 1)))[1];
  return block.split('\n').map((l) => l.replace(/--.*$/, '').trim()).join(' ')
    .split(';').map((x) => x.trim().replace(/\s+/g, ' ')).filter(Boolean);
}

function recordPid() {
  const pid = fs.readFileSync(path.join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0];
  if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`);
}

// Stops the cluster (running the 0.1.0 tree) and starts the same data directory with the
// current tree, DIALER_PGBIN: the new package installed, then PostgreSQL restarted.
async function restartWithCurrentLibrary() {
  for (const c of clients.splice(0)) await c.end().catch(() => {});
  asPostgres(path.join(oldBin || PGBIN, 'pg_ctl'), ['-D', path.join(dir, 'data'), '-m', 'fast', '-w', '-t', '60', 'stop']);
  asPostgres(path.join(PGBIN, 'pg_ctl'), ['-D', path.join(dir, 'data'), '-l', path.join(dir, 'postgres.log'), '-w', '-t', '60', 'start']);
  recordPid();
  db = await connect(DB);
}

test.after(async () => {
  for (const c of clients) await c.end().catch(() => {});
  if (sim) await sim.close().catch(() => {});
  if (dir) {
    try {
      execFileSync('bash', [path.join(repo, 'test', 'lib', 'cluster.sh'), 'stop', dir],
        { cwd: '/', env: { ...process.env, PGBIN }, stdio: 'ignore' });
    } finally {
      if (process.env.DIALER_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

// Says, as a skipped subtest, when the released library could not be built: the upgrade test
// then starts from a 0.1.0 schema created with the current library.
test(`the released ${OLD} library, built from commit ${RELEASE_0_1_0.slice(0, 12)}`, (t) => {
  if (noRelease) {
    t.skip(`${noRelease}: the upgrade test starts from a ${OLD} schema created with the current library`);
    return;
  }
  assert.ok(fs.existsSync(path.join(oldBin, '..', 'lib', 'pg_dialer.so')));
});

test(`install ${OLD}, restart with ${CURRENT}'s library, ALTER EXTENSION pg_dialer UPDATE with the worker running`, async (t) => {
  assert.notEqual(CURRENT, OLD, 'the control file names a version after 0.1.0');
  if (noRelease) t.diagnostic(`NOT the released library: ${noRelease}`);

  // the released 0.1.0, as a user installed it
  await db.query('CREATE EXTENSION pg_cron');
  await db.query(`CREATE EXTENSION pg_dialer VERSION '${OLD}'`);
  assert.equal((await db.query(`SELECT extversion FROM pg_extension WHERE extname = 'pg_dialer'`)).rows[0].extversion, OLD);
  const oldCatalog = await catalog(db);

  const accountSid = sim.control.config().accountSid;
  // upg_tw dispatches at 25 calls per second, so a stream of calls is in flight during the update;
  // upg_hold is disabled: its calls wait in the queue across the update
  for (const [name, enabled, cps] of [['upg_tw', true, 25], ['upg_hold', false, 1000]]) {
    await db.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
                                                  max_concurrency, calls_per_second, enabled)
                    VALUES ($1, 'twilio', $2, $3, '0123456789abcdef0123456789abcdef', '+15550100000', NULL, $4, $5)`,
    [name, sim.url, accountSid, cps, enabled]);
  }
  if (oldBin) {
    await waitFor(async () => {
      const r = await db.query(`SELECT pid, state FROM dialer.worker_status()`);
      return r.rows[0] && r.rows[0].pid && !/^(starting|waiting)/.test(r.rows[0].state) ? r.rows[0] : null;
    }, 'the 0.1.0 worker running');
  }
  // calls sent to the provider by 0.1.0's dispatcher (without the release: marked sent by SQL)
  const sentByOld = async (ids, what) => {
    if (oldBin) return waitForStatus(ids, ['dialing'], what);
    await db.query(`UPDATE dialer.scheduled_calls SET status = 'dialing', attempts = 1,
                           provider_call_id = 'CA' || md5(id::text) WHERE id = ANY($1::bigint[])`, [ids]);
    await db.query(`INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, responded_at, http_status,
                                                      provider_call_id, provider_status)
                    SELECT id, 1, now(), now(), 201, provider_call_id, 'queued'
                      FROM dialer.scheduled_calls WHERE id = ANY($1::bigint[])`, [ids]);
    return statuses(ids);
  };

  // --- fill 0.1.0: calls in every status, callbacks, a campaign with a schedule and runs
  const done = [];
  for (let i = 0; i < 3; i++) done.push(await enqueue(`+1555020000${i}`));
  await sentByOld(done, 'calls dispatched by 0.1.0');
  assert.equal((await callback(done[0], 'completed', 3)).result, 'applied');
  assert.equal((await callback(done[1], 'busy', 3)).result, 'applied');
  assert.equal((await callback(done[2], 'no-answer', 3)).result, 'applied');
  const dialingOld = await enqueue('+15550200010');
  await sentByOld([dialingOld], 'a call dialing under 0.1.0');
  assert.equal((await callback(dialingOld, 'ringing', 1)).result, 'applied');

  const waiting = [];     // scheduled calls that wait in the queue across the update
  for (let i = 0; i < 5; i++) waiting.push(await enqueue(`+1555021000${i}`, { provider: 'upg_hold' }));
  const later = await enqueue('+15550211000', { run_at: '2030-01-01 12:00+00' });
  const canceled = await enqueue('+15550212000', { run_at: '2030-01-01 12:00+00' });
  assert.equal((await db.query('SELECT dialer.cancel_call($1) AS ok', [canceled])).rows[0].ok, true);
  await db.query(`INSERT INTO dialer.do_not_call (number, reason) VALUES ('+15550213000', 'upgrade test')`);
  const skipped = await enqueue('+15550213000');
  // statuses only the worker reaches by failures and crashes, set by the owner (as sql/lifecycle.sql does)
  const forced = {};
  for (const [status, extra] of [['failed', `last_error = 'HTTP 400: 21211 invalid To'`], ['expired', ''],
    ['unknown', `last_error = 'no answer from the provider'`], ['dispatching', ''], ['dialing', '']]) {
    const id = await enqueue('+15550214' + String(Object.keys(forced).length).padStart(3, '0'), { provider: 'upg_hold' });
    await db.query(`UPDATE dialer.scheduled_calls SET status = $2, attempts = 1, ${extra ? extra + ',' : ''}
                           finished_at = CASE WHEN $2 IN ('failed', 'expired') THEN now() END
                     WHERE id = $1`, [id, status]);
    forced[status] = id;
  }

  await db.query(`CREATE TABLE public.upg_customers (customer_ref text, phone text)`);
  await db.query(`INSERT INTO public.upg_customers VALUES ('c1', '+15550215001'), ('c2', '+15550215002')`);
  await db.query(`INSERT INTO dialer.campaigns (name, source, provider, payload)
                  VALUES ('upg_campaign', 'public.upg_customers', 'upg_hold', '{"message": "Campaign call"}')`);
  await db.query(`SELECT dialer.schedule_campaign('upg_campaign', 'daily 09:00')`);
  assert.equal((await db.query(`SELECT dialer.run_campaign('upg_campaign', 10) AS n`)).rows[0].n, 2);
  const campaignCalls = (await db.query(`SELECT id FROM dialer.scheduled_calls WHERE campaign = 'upg_campaign' ORDER BY id`))
    .rows.map((x) => Number(x.id));

  const everyStatus = (await db.query(`SELECT array_agg(DISTINCT status ORDER BY status) AS s FROM dialer.scheduled_calls`)).rows[0].s;
  assert.deepEqual(everyStatus, ['busy', 'canceled', 'completed', 'dialing', 'dispatching', 'expired', 'failed',
    'no_answer', 'scheduled', 'skipped', 'unknown'], 'the 0.1.0 database holds calls in every status');
  const before = (await db.query(`SELECT (SELECT count(*) FROM dialer.scheduled_calls) AS calls,
                                         (SELECT count(*) FROM dialer.call_attempts) AS attempts,
                                         (SELECT count(*) FROM dialer.call_events) AS events`)).rows[0];

  // --- the new package installed, PostgreSQL restarted: the current library with the 0.1.0 schema
  const queueSQL = `SELECT id, status, attempts, run_at, provider_call_id, last_error, finished_at
                      FROM dialer.scheduled_calls ORDER BY id`;
  const queueBefore = (await db.query(queueSQL)).rows;
  const logFile = path.join(dir, 'postgres.log');
  const logMark = fs.statSync(logFile).size;
  await restartWithCurrentLibrary();
  const newLog = () => fs.readFileSync(logFile).subarray(logMark).toString('utf8');
  assert.equal((await db.query(`SELECT extversion FROM pg_extension WHERE extname = 'pg_dialer'`)).rows[0].extversion, OLD);

  // every installed version has an update path to the current one (one script per release)
  const paths = (await db.query(`SELECT source, path FROM pg_extension_update_paths('pg_dialer')
                                  WHERE target = $1 AND source <> $1 ORDER BY source`, [CURRENT])).rows;
  assert.ok(paths.some((x) => x.source === OLD), `${OLD} is an installed version: ${JSON.stringify(paths)}`);
  for (const x of paths) assert.ok(x.path, `no update path from ${x.source} to ${CURRENT}`);

  // the dispatcher waits for the update, says why, and touches nothing
  const waitingState = `waiting for ALTER EXTENSION pg_dialer UPDATE (schema ${OLD}, library ${CURRENT})`;
  const worker0 = await waitFor(async () => {
    const r = await db.query(`SELECT pid, state FROM dialer.worker_status()`);
    return r.rows[0] && r.rows[0].state === waitingState ? r.rows[0] : null;
  }, `the dispatcher's state "${waitingState}"`);
  const stream = [];     // calls enqueued while the dispatcher waits
  for (let i = 0; i < 40; i++) stream.push(await enqueue(`+155502200${String(i).padStart(2, '0')}`));
  await db.query('SELECT dialer.wake_worker()');
  const warning = new RegExp(`WARNING:  pg_dialer dispatcher for database "${DB}" is waiting: the extension's schema is version ${OLD.replace(/\./g, '\\.')}, the library is version ${CURRENT.replace(/\./g, '\\.')}`, 'g');
  await waitFor(async () => newLog().match(warning), 'the warning in the server log');
  await sleep(4500);     // at least two more checks of the version
  const waitLog = newLog();
  assert.equal((waitLog.match(warning) || []).length, 1, `one warning while waiting:\n${waitLog}`);
  assert.match(waitLog, new RegExp(`HINT:  Run ALTER EXTENSION pg_dialer UPDATE in database "${DB}"\\.`));
  assert.doesNotMatch(waitLog, /does not exist|pg_dialer[^\n]*ERROR|ERROR:[^\n]*dialer/, 'no SQL of the current library ran on the old schema');
  assert.deepEqual((await db.query(queueSQL)).rows.filter((x) => !stream.includes(Number(x.id))), queueBefore,
    'the queue is untouched while the dispatcher waits (no recovery, no claim)');
  assert.deepEqual([...new Set((await statuses(stream)).map((x) => x.status))], ['scheduled'], 'nothing is claimed while waiting');
  assert.equal((await db.query(`SELECT count(*) AS n FROM dialer.call_attempts WHERE call_id = ANY($1::bigint[])`, [stream])).rows[0].n, '0');
  assert.equal((await db.query(`SELECT state FROM dialer.worker_status()`)).rows[0].state, waitingState);

  // --- the update, with that dispatcher running: README's Upgrading SQL, statement by statement
  const readmeSteps = readmeUpgradeSQL();
  assert.ok(readmeSteps.includes('ALTER EXTENSION pg_dialer UPDATE'), JSON.stringify(readmeSteps));
  for (const sql of readmeSteps) {
    const r = await db.query(sql);
    if (/worker_status/.test(sql)) assert.equal(r.rows[0].state, waitingState, `README's ${sql}`);
  }
  assert.equal((await db.query(`SELECT extversion FROM pg_extension WHERE extname = 'pg_dialer'`)).rows[0].extversion, CURRENT);

  // --- the catalog equals a fresh install's
  const root = await connect('postgres');
  await root.query(`CREATE DATABASE ${FRESH}`);
  const fresh = await connect(FRESH);
  await fresh.query('CREATE EXTENSION pg_dialer');
  const freshCatalog = await catalog(fresh);
  const upgradedCatalog = await catalog(db);
  assert.ok(freshCatalog.length > 300, `the catalog comparison covers the extension (${freshCatalog.length} facts)`);
  const staleDiff = catalogDiff(oldCatalog, freshCatalog);
  assert.ok(staleDiff.onlyA.length + staleDiff.onlyB.length > 0,
    `the comparison sees the difference between ${OLD} and ${CURRENT} (else it proves nothing)`);
  const diff = catalogDiff(upgradedCatalog, freshCatalog);
  assert.ok(diff.onlyA.length === 0 && diff.onlyB.length === 0,
    `the updated catalog differs from a fresh ${CURRENT} install:\n`
    + formatDiff(diff, `updated ${OLD} -> ${CURRENT}`, `fresh ${CURRENT}`)
    + `\n(add what is missing to sql/install/pg_dialer--${OLD}--${CURRENT}.sql)`);

  // --- nothing was lost, and the calls keep flowing
  const after = (await db.query(`SELECT (SELECT count(*) FROM dialer.scheduled_calls) AS calls,
                                        (SELECT count(*) FROM dialer.call_attempts) AS attempts,
                                        (SELECT count(*) FROM dialer.call_events) AS events`)).rows[0];
  assert.ok(Number(after.calls) >= Number(before.calls) + stream.length, 'no call lost');
  assert.ok(Number(after.events) >= Number(before.events), 'no event lost');

  const streamRows = await waitForStatus(stream, ['dialing'], 'the calls queued while the dispatcher waited');
  assert.equal(streamRows.length, stream.length);
  const worker1 = (await db.query(`SELECT pid, state FROM dialer.worker_status()`)).rows[0];
  assert.equal(worker1.pid, worker0.pid, 'the same worker went on after the update');
  assert.notEqual(worker1.state, waitingState);
  assert.match(newLog(), new RegExp(`pg_dialer dispatcher for database "${DB}": the extension was updated from ${OLD.replace(/\./g, '\\.')} to ${CURRENT.replace(/\./g, '\\.')}, dispatching resumes`));
  // its usual recovery ran once the versions matched: a call left dispatching is now unknown
  assert.equal((await statuses([forced.dispatching]))[0].status, 'unknown');

  // a call dialing before the update takes its final status from a callback after it
  assert.equal((await callback(dialingOld, 'completed', 5)).result, 'applied');
  assert.equal((await statuses([dialingOld]))[0].status, 'completed');
  // a stale callback of 0.1.0's time is still recognised as a duplicate
  assert.equal((await callback(done[0], 'completed', 3)).result, 'duplicate');

  // the queue that waited across the update is dispatched by the updated extension
  await db.query(`UPDATE dialer.providers SET enabled = true WHERE name = 'upg_hold'`);
  await db.query('SELECT dialer.wake_worker()');
  await waitForStatus([...waiting, ...campaignCalls], ['dialing'], 'calls queued under 0.1.0');
  // an old failed call retried after the update is dispatched again
  assert.equal((await db.query('SELECT dialer.retry_call($1) AS ok', [forced.failed])).rows[0].ok, true);
  await waitForStatus([forced.failed], ['dialing'], 'a 0.1.0 failed call retried');
  // a new call too
  const fresh1 = await enqueue('+15550230000');
  await waitForStatus([fresh1], ['dialing'], 'a call enqueued after the update');
  // the provider saw every one of those calls
  const sids = (await db.query(`SELECT count(DISTINCT provider_call_id) AS n FROM dialer.call_attempts
                                 WHERE call_id = ANY($1::bigint[]) AND http_status = 201`,
  [[...stream, ...waiting, ...campaignCalls, forced.failed, fresh1]])).rows[0].n;
  assert.equal(Number(sids), stream.length + waiting.length + campaignCalls.length + 2);
  // untouched statuses stayed as they were
  const kept = await statuses([later, canceled, skipped, forced.expired, forced.unknown]);
  assert.deepEqual(kept.map((x) => x.status), ['scheduled', 'canceled', 'skipped', 'expired', 'unknown']);

  // the campaign kept its schedule and its rules (nobody is called twice the same day)
  const sched = (await db.query(`SELECT schedule, last_outcome FROM dialer.campaign_schedules WHERE campaign = 'upg_campaign'`)).rows;
  assert.deepEqual(sched.map((x) => x.schedule), ['daily 09:00']);
  assert.equal((await db.query(`SELECT dialer.run_campaign('upg_campaign', 10) AS n`)).rows[0].n, 0);
  const job = (await db.query(`SELECT count(*) AS n FROM cron.job WHERE command LIKE '%run_scheduled_campaigns%'`)).rows[0].n;
  assert.equal(Number(job), 1, 'the pg_cron job of campaign schedules is still there');

  // from the restart on (the current library), the server log has no crash and no exit of the worker
  const log = newLog().split(/^.*LOG:  starting PostgreSQL/m).pop();
  assert.match(log, /dispatching resumes/);
  assert.doesNotMatch(log, /PANIC|TRAP|terminated by signal|background worker "pg_dialer[^"]*" .*exited with exit code/);
});

// Every released version's update to the current one: the last release (0.2.0) installed from
// its released install script (make installs sql/install/released/), with rows in it, updated
// with ALTER EXTENSION pg_dialer UPDATE, has the catalog of a fresh install and keeps its rows.
// (0.1.0's update, above, runs its own script and then this one.)
test('install the last release from its released script, ALTER EXTENSION pg_dialer UPDATE: the catalog of a fresh install, rows kept', async () => {
  const LAST = /^RELEASES\s*=\s*(.+)$/m.exec(fs.readFileSync(path.join(repo, 'Makefile'), 'utf8'))[1].trim().split(/\s+/).pop();
  assert.notEqual(LAST, CURRENT, 'the Makefile names the last release apart from this version');
  const DB2 = 'dialer_from_last';
  const root = await connect('postgres');
  await root.query(`DROP DATABASE IF EXISTS ${DB2}`);
  await root.query(`CREATE DATABASE ${DB2}`);
  const db2 = await connect(DB2);
  try {
    await db2.query(`CREATE EXTENSION pg_dialer VERSION '${LAST}'`);
    const lastCatalog = await catalog(db2);
    await db2.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url, enabled)
                     VALUES ('upg_last', 'twilio', 'http://127.0.0.1:9', 'AC${'0'.repeat(32)}', 't', '+15550100000',
                             'https://a.example/t.xml', false)`);
    const ids = (await db2.query(`SELECT dialer.enqueue_call('+1555023' || lpad(g::text, 4, '0'), provider => 'upg_last',
                                                             run_at => now() + interval '1 day') AS id
                                    FROM generate_series(1, 5) g`)).rows.map((r) => Number(r.id));
    await db2.query('ALTER EXTENSION pg_dialer UPDATE');
    assert.equal((await db2.query(`SELECT extversion FROM pg_extension WHERE extname = 'pg_dialer'`)).rows[0].extversion, CURRENT);
    // a fresh install (the test above made one; made here when it did not get that far)
    if ((await root.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [FRESH])).rows.length === 0) {
      await root.query(`CREATE DATABASE ${FRESH}`);
      const f = await connect(FRESH);
      await f.query('CREATE EXTENSION pg_dialer');
      await f.end();
    }
    const fresh = await connect(FRESH);
    const freshCatalog = await catalog(fresh);
    await fresh.end();
    const stale = catalogDiff(lastCatalog, freshCatalog);
    assert.ok(stale.onlyA.length + stale.onlyB.length > 0, `the comparison sees the difference between ${LAST} and ${CURRENT}`);
    const diff = catalogDiff(await catalog(db2), freshCatalog);
    assert.ok(diff.onlyA.length === 0 && diff.onlyB.length === 0,
      `the updated catalog differs from a fresh ${CURRENT} install:\n`
      + formatDiff(diff, `updated ${LAST} -> ${CURRENT}`, `fresh ${CURRENT}`)
      + `\n(add what is missing to sql/install/changes/pg_dialer--${LAST}--${CURRENT}.sql)`);
    const kept = (await db2.query(`SELECT id, status FROM dialer.scheduled_calls ORDER BY id`)).rows;
    assert.deepEqual(kept.map((r) => [Number(r.id), r.status]), ids.map((id) => [id, 'scheduled']), 'the calls are kept');
  } finally {
    await db2.end();
    await root.query(`DROP DATABASE IF EXISTS ${DB2}`);
    await root.end();
  }
});
