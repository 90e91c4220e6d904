'use strict';
// pg_dump / pg_restore of a database where pg_dialer is in use.
//
// A source database gets providers, a campaign (over a view of the application), the
// do-not-call list and calls in several statuses (scheduled, canceled, dialing, completed,
// failed, with their attempts and events).  It is dumped with the real pg_dump -Fc and
// restored with pg_restore into a fresh database (CREATE EXTENSION comes from the dump, the
// rows and the sequences' positions from pg_extension_config_dump).  Then the worker is
// pointed at the restored database (dialer.databases, server restart) and there:
//   - every row and every sequence position is what the source had;
//   - enqueue_call works, with ids after the restored ones (no collision);
//   - the worker dispatches the new call and the restored due call to the Twilio simulator;
//   - Twilio's signed status callbacks, through the shipped nginx + PostgREST, complete them.
// Afterwards dialer.databases is put back and the server restarted again.
//
// Run by test/run_all.sh (it restarts the cluster, like crash.test.js).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const d = require('../lib/dialer');
const { startWebhookStack } = require('../lib/webhook_stack.js');

const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';
const SRC = 'dialer_dump_src';
const DST = 'dialer_dump_dst';
const TW = 'dr_tw';
const CONFIG_TABLES = ['providers', 'campaigns', 'do_not_call', 'scheduled_calls', 'call_attempts',
  'call_events', 'campaign_runs', 'pending_callbacks', 'outcome_rule_sets', 'outcome_rules'];

let admin;            // on database postgres: ALTER SYSTEM, CREATE/DROP DATABASE
let src;
let dst;
let sim;
let stack;
let settings;
let tmp;
let retargeted = false;

const pgArgs = () => ['-h', process.env.PGHOST || '127.0.0.1', '-p', String(process.env.PGPORT || 5432),
  '-U', process.env.PGUSER || 'postgres'];

/** Restarts the cluster (as a server move would) and returns when it accepts connections. */
function restartCluster() {
  const dir = process.env.DIALER_CLUSTER_DIR;
  if (!dir) throw new Error('DIALER_CLUSTER_DIR is not set (run through test/run_all.sh)');
  const args = ['-D', path.join(dir, 'data'), '-l', path.join(dir, 'postgres.log'), '-w', '-t', '120', '-m', 'fast', 'restart'];
  const asRoot = process.getuid && process.getuid() === 0;
  execFileSync(asRoot ? 'runuser' : path.join(PGBIN, 'pg_ctl'),
    asRoot ? ['-u', 'postgres', '--', path.join(PGBIN, 'pg_ctl'), ...args] : args, { stdio: 'ignore', cwd: '/' });
}

/** A digest of every row of each of the extension's configuration tables, and the sequences' positions. */
async function snapshot(db) {
  const out = {};
  for (const t of CONFIG_TABLES) {
    const r = await db.query(`SELECT count(*)::int AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h
                                FROM dialer.${t} t`);
    out[t] = r.rows[0];
  }
  const s = await db.query(`SELECT sequencename AS name, last_value FROM pg_sequences
                             WHERE schemaname = 'dialer' ORDER BY sequencename`);
  out.sequences = Object.fromEntries(s.rows.map((r) => [r.name, r.last_value === null ? null : Number(r.last_value)]));
  return out;
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_dump.'));
  fs.chmodSync(tmp, 0o755);
  admin = await d.connect({ database: 'postgres' });
  settings = d.settings(admin);
  for (const db of [SRC, DST]) await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${SRC}`);
  sim = await d.startSim('twilio', { callbacks: true });
});

after(async () => {
  if (stack) await stack.stop().catch(() => {});
  if (src) await src.end().catch(() => {});
  if (dst) await dst.end().catch(() => {});
  if (admin) {
    await settings.restore().catch(() => {});
    if (retargeted) {
      await admin.query('ALTER SYSTEM RESET dialer.databases').catch(() => {});
      await admin.end().catch(() => {});
      try { restartCluster(); } catch (e) { process.stderr.write(`# restart failed: ${e.message}\n`); }
      admin = await d.reconnect({ database: 'postgres' });
      // the worker serves the suite's database again before the next test file starts
      const w = await d.reconnect();
      await d.workerPid(w, { timeoutMs: 30000 }).catch(() => {});
      await w.end().catch(() => {});
    }
    for (const db of [SRC, DST]) await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
    await admin.end().catch(() => {});
  }
  if (sim) await sim.close();
  if (tmp && !process.env.DIALER_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
});

test('every table and sequence of pg_dialer holding user data is registered for pg_dump', async () => {
  src = await d.connect({ database: SRC });
  await src.query('CREATE EXTENSION pg_dialer');
  const r = await src.query(`
    SELECT c.oid::regclass::text AS rel, c.relkind,
           c.oid = ANY (e.extconfig) AS registered,
           e.extcondition[array_position(e.extconfig, c.oid)] AS condition
      FROM pg_extension e
      JOIN pg_depend dep ON dep.refclassid = 'pg_extension'::regclass AND dep.refobjid = e.oid AND dep.deptype = 'e'
      JOIN pg_class c ON dep.classid = 'pg_class'::regclass AND c.oid = dep.objid
     WHERE e.extname = 'pg_dialer' AND c.relkind IN ('r', 'p', 'S')
     ORDER BY 1`);
  const rels = r.rows.map((x) => x.rel);
  // the tables named by DESIGN.md, and an identity sequence for each that has one
  for (const t of CONFIG_TABLES) assert.ok(rels.includes(`dialer.${t}`), `dialer.${t} belongs to the extension`);
  assert.deepEqual(r.rows.filter((x) => x.relkind === 'S').map((x) => x.rel),
    ['dialer.call_attempts_id_seq', 'dialer.call_events_id_seq', 'dialer.campaign_runs_id_seq',
      'dialer.consents_id_seq', 'dialer.pending_callbacks_id_seq', 'dialer.refusals_id_seq',
      'dialer.scheduled_calls_id_seq']);
  // the calling-policy tables hold the extension's own presets too, made again by CREATE
  // EXTENSION: only the user's rows of those are dumped; every other table is the user's alone
  // (and the outcome rule sets: the set 'default' is the extension's)
  const withPresets = ['dialer.blackout_dates', 'dialer.calling_policies', 'dialer.policy_windows',
    'dialer.outcome_rule_sets', 'dialer.outcome_rules'];
  // libphonenumber's prefix -> time zone table is the extension's own data, not the user's,
  // and so is its version for the backends' copies, and the tables of a call's life and of
  // the outcome classes (statuses, moves, notes, classes, the providers' words)
  const extensionData = ['dialer.cached_table_versions', 'dialer.number_timezones', 'dialer.call_statuses',
    'dialer.provider_kinds', 'dialer.call_transitions', 'dialer.call_notes', 'dialer.outcome_classes', 'dialer.provider_statuses',
    'dialer.outcome_signals'];
  for (const x of r.rows) {
    if (extensionData.includes(x.rel)) {
      assert.equal(x.registered, false, `${x.rel} is the extension's data, not dumped`);
      continue;
    }
    assert.equal(x.registered, true, `${x.rel} is registered with pg_extension_config_dump`);
    if (withPresets.includes(x.rel)) assert.match(x.condition, /^WHERE .*(builtin|preset:|'default')/, `${x.rel}: the user's rows are dumped`);
    else assert.equal(x.condition, '', `${x.rel} is dumped whole`);
  }
});

test('a database in use survives pg_dump -Fc and pg_restore into a fresh database', async () => {
  /* the source database in use */
  await src.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
                     twiml_url, status_callback_url, calls_per_second, max_concurrency)
                   VALUES ($1, 'twilio', $2, $3, '0123456789abcdef0123456789abcdef', '+15550100000',
                           'https://app.example.com/twiml/reminder.xml',
                           'http://127.0.0.1:1/twilio/status-callback', 1000, NULL)`,
  [TW, sim.url, sim.control.config().accountSid]);
  await src.query(`INSERT INTO dialer.providers (name, kind, base_url, webhook_secret, calls_per_second, enabled)
                   VALUES ('dr_bk', 'backend', 'http://127.0.0.1:1', 'whsec', 5, false)`);
  await src.query(`CREATE VIEW public.dr_candidates AS
                     SELECT 'cust-1'::text AS customer_ref, '+15550123001'::text AS phone`);
  await src.query(`INSERT INTO dialer.campaigns (name, source, provider, call_window_start, call_window_end, timezone)
                   VALUES ('dr_camp', 'public.dr_candidates', $1, '09:00', '18:00', 'Europe/Paris')`, [TW]);
  await src.query(`INSERT INTO dialer.do_not_call (number, reason) VALUES ('+15550123999', 'asked not to be called')`);
  // an outcome rule set of the user's, named by the campaign
  await src.query(`SELECT dialer.copy_outcome_rules('default', 'dr_rules')`);
  await src.query(`UPDATE dialer.outcome_rules SET action = 'suppress' WHERE rule_set = 'dr_rules' AND outcome = 'bad_number'`);
  await src.query(`UPDATE dialer.campaigns SET outcome_rules = 'dr_rules' WHERE name = 'dr_camp'`);
  const enq = async (to, extra = '') => Number((await src.query(
    `SELECT dialer.enqueue_call($1, provider => '${TW}'${extra}) AS id`, [to])).rows[0].id);
  const ids = {};
  ids.completed = await enq('+15550123010');
  ids.dialing = await enq('+15550123020');
  ids.failed = await enq('+15550123030');
  ids.canceled = await enq('+15550123040');
  ids.later = await enq('+15550123050', `, run_at => now() + interval '2 days', campaign => 'dr_camp'`);
  await src.query('SELECT dialer.cancel_call($1)', [ids.canceled]);
  // what the worker does, through its own SQL functions: claim, store outcomes, then a callback
  const claimed = await src.query(`SELECT id, attempt FROM dialer.claim_calls($1, 10, 'UTC', '00:00', '24:00', '')`, [TW]);
  assert.equal(claimed.rows.length, 3);
  await src.query(`SELECT dialer.record_results($1::bigint[], '{1,1,1}', '{accepted,accepted,failed}',
                     '{201,201,400}', $2::text[], '{NULL,NULL,21211}', '{NULL,NULL,"invalid number"}',
                     '{NULL,NULL,NULL}', '{0,0,0}', ARRAY[now(), now(), now()])`,
  [[ids.completed, ids.dialing, ids.failed], ['CA' + 'c1'.repeat(16), 'CA' + 'd2'.repeat(16), null]]);
  await src.query(`SELECT dialer.apply_provider_status($1, 'completed', $2, 3, '{"duration_seconds": 12}')`,
    [ids.completed, 'CA' + 'c1'.repeat(16)]);
  // a due call still waiting when the dump is taken (the restored worker is to place it)
  ids.due = await enq('+15550123060');
  const st = (await src.query(`SELECT id, status FROM dialer.scheduled_calls ORDER BY id`)).rows
    .map((x) => `${x.id}:${x.status}`);
  assert.deepEqual(st, [`${ids.completed}:completed`, `${ids.dialing}:dialing`, `${ids.failed}:failed`,
    `${ids.canceled}:canceled`, `${ids.later}:scheduled`, `${ids.due}:scheduled`]);
  const before = await snapshot(src);
  assert.equal(before.scheduled_calls.n, 6);
  assert.equal(before.call_attempts.n, 3);
  assert.equal(before.sequences.scheduled_calls_id_seq, ids.due);
  await src.end();
  src = null;

  /* pg_dump -Fc, pg_restore into a fresh database */
  const file = path.join(tmp, 'src.dump');
  execFileSync(path.join(PGBIN, 'pg_dump'), [...pgArgs(), '-Fc', '-f', file, SRC], { stdio: 'pipe' });
  const toc = execFileSync(path.join(PGBIN, 'pg_restore'), ['-l', file], { encoding: 'utf8' });
  for (const s of ['scheduled_calls_id_seq', 'call_attempts_id_seq', 'call_events_id_seq', 'campaign_runs_id_seq',
    'pending_callbacks_id_seq']) {
    assert.match(toc, new RegExp(`SEQUENCE SET dialer ${s}`), `the dump sets ${s}`);
  }
  await admin.query(`CREATE DATABASE ${DST}`);
  execFileSync(path.join(PGBIN, 'pg_restore'), [...pgArgs(), '--exit-on-error', '-d', DST, file], { stdio: 'pipe' });

  dst = await d.connect({ database: DST });
  const ext = await dst.query(`SELECT extversion FROM pg_extension WHERE extname = 'pg_dialer'`);
  assert.equal(ext.rows.length, 1, 'CREATE EXTENSION came from the dump');
  assert.deepEqual(await snapshot(dst), before, 'every row and sequence position as in the source');

  /* the restored database keeps working: enqueue without id collision */
  const newId = Number((await dst.query(`SELECT dialer.enqueue_call('+15550123070', provider => $1,
                                          run_at => now() + interval '1 hour') AS id`, [TW])).rows[0].id);
  assert.equal(newId, ids.due + 1, 'the next id follows the restored ones');
  const ev = await dst.query(`SELECT max(id)::int AS m, count(*)::int AS n FROM dialer.call_events`);
  assert.equal(ev.rows[0].m, before.sequences.call_events_id_seq + 1, 'events go on numbering too');
  await dst.query('SELECT dialer.cancel_call($1)', [newId]);

  /*
   * The worker serves the restored database.  Its provider is held (disabled) until the
   * webhooks are up: PostgREST would answer 503 to callbacks while it reconnects after the
   * restart, and Twilio does not retry them.
   */
  await dst.query(`UPDATE dialer.providers SET enabled = false WHERE name = $1`, [TW]);
  await settings.set(d.OPEN_WINDOW, { settleMs: 0 });
  await admin.query(`ALTER SYSTEM SET dialer.databases = ${admin.escapeLiteral(DST)}`);
  retargeted = true;
  await dst.end();
  await admin.end();
  restartCluster();
  admin = await d.reconnect({ database: 'postgres' });
  settings.use(admin);
  dst = await d.reconnect({ database: DST });
  const w = await d.workerPid(dst, { timeoutMs: 30000 });
  assert.ok(w > 0);
  assert.equal((await dst.query(`SELECT database FROM dialer.worker_status()`)).rows[0].database, DST);

  /* webhooks into the restored database: the shipped nginx + PostgREST; then the provider goes */
  stack = await startWebhookStack({ database: DST, existingDatabase: true });
  await dst.query(`UPDATE dialer.providers SET status_callback_url = $2 WHERE name = $1`,
    [TW, `${stack.proxy}/twilio/status-callback`]);
  await d.setProvidersEnabled(dst, [TW], true);

  const fresh = Number((await dst.query(`SELECT dialer.enqueue_call('+15550123080', provider => $1) AS id`, [TW])).rows[0].id);
  assert.equal(fresh, newId + 1);
  const done = await d.waitForStatus(dst, [ids.due, fresh], ['completed'], { timeoutMs: 20000 }).catch((e) => {
    throw new Error(`${e.message}; callbacks ${JSON.stringify(sim.control.callbacks(20))}`);
  });
  for (const c of done) {
    assert.equal(sim.control.counts()[String(c.id)], 1, `call ${c.id} requested once at the simulator`);
    assert.match(c.provider_call_id, /^CA[0-9a-f]{32}$/);
  }
  // completed by Twilio's signed callbacks, received through the proxy
  const cb = await dst.query(`SELECT call_id, count(*)::int AS n FROM dialer.call_events
                               WHERE event = 'callback' AND call_id = ANY($1) GROUP BY call_id ORDER BY call_id`,
  [[ids.due, fresh]]);
  assert.deepEqual(cb.rows.map((x) => [Number(x.call_id), x.n]), [[ids.due, 4], [fresh, 4]]);
  const refused = sim.control.callbacks(1000).filter((x) => x.http_status !== 200);
  assert.deepEqual(refused, [], 'every callback accepted');
  // the restored calls that were not due are untouched
  const rest = await d.calls(dst, [ids.completed, ids.dialing, ids.failed, ids.canceled, ids.later]);
  assert.deepEqual(rest.map((c) => c.status), ['completed', 'dialing', 'failed', 'canceled', 'scheduled']);
});
