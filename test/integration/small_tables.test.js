'use strict';
// The queue's tables small but not empty - 1 to 99 pages, statistics up to date - are still
// read through their indexes by the hot statements: enqueue (one call, a bulk), cancel, retry,
// the call's details, the worker's claim and store, its reconciliation claim, a status
// callback's lookup by the provider's call id.  src/planner.c makes the planner see such a
// table as DIALER_MIN_PAGES (100) pages: otherwise a key lookup is planned as a sequential
// scan (cheaper for a table of a few pages), and that plan, kept for the session (PL/pgSQL,
// the worker's statements), goes on scanning the whole queue when it has grown.
//
// The plans are the ones PostgreSQL really executes, nested statements included, as
// auto_explain reports them (to the client, as NOTICEs).  In a database of its own
// (dialer_small_tables, not served: no dispatcher claims its calls), with the tables at 1 or
// 2 pages, then at some 20 to 50.  (At a few pages the statistics alone make a key lookup a
// sequential scan: the first size is the one that fails without the planner hook.)
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55452 PGUSER=postgres node --test test/integration/small_tables.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const d = require('../lib/dialer');

const DB = 'dialer_small_tables';
const PROVIDER = 'small';
const QUEUE_TABLES = ['scheduled_calls', 'call_attempts', 'call_events'];
let root;
let db;

before(async () => {
  root = await d.connect({ database: 'postgres' });
  await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await root.query(`CREATE DATABASE ${DB}`);
  db = await d.connect({ database: DB });
  await db.query('SET client_min_messages = error');
  await db.query('CREATE EXTENSION pg_dialer');
  await db.query(`INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url)
                  VALUES ($1, 'twilio', 'http://127.0.0.1:9', 'AC0123456789abcdef0123456789abcdef', 'x',
                          '+15550100000', 'https://app.example/t.xml')`, [PROVIDER]);
});

after(async () => {
  if (db) await db.end().catch(() => {});
  if (root) {
    await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => {});
    await root.end().catch(() => {});
  }
});

/**
 * Grows the queue by n calls as the dispatcher leaves them (half of them dialing, with their
 * attempt, a provider call id and events), then VACUUM ANALYZE: the statistics say exactly
 * how small the tables are.  Returns the tables' sizes in pages.
 */
async function grow(n, tag) {
  await db.query(`SELECT count(*) FROM dialer.enqueue_calls(
                    (SELECT jsonb_agg(jsonb_build_object('to_number', '+1555' || $2::text || lpad(g::text, 5, '0'),
                                                         'provider', $3::text, 'dedupe_key', 'small-' || $2 || '-' || g))
                       FROM generate_series(1, $1::int) g))`, [n, tag, PROVIDER]);
  const claimed = (await db.query(`SELECT id, attempt FROM dialer.claim_calls($1, $2, 'UTC', '00:00', '24:00', NULL)`,
    [PROVIDER, Math.floor(n / 2)])).rows;
  await db.query(`SELECT dialer.record_results($1::bigint[], $2::int[], array_fill('accepted'::text, ARRAY[$3::int]),
                         array_fill(201, ARRAY[$3::int]), $4::text[], array_fill(NULL::text, ARRAY[$3::int]),
                         array_fill(NULL::text, ARRAY[$3::int]), array_fill(NULL::text, ARRAY[$3::int]),
                         array_fill(0, ARRAY[$3::int]), array_fill(now(), ARRAY[$3::int]))`,
  [claimed.map((c) => c.id), claimed.map((c) => c.attempt), claimed.length, claimed.map((c) => `CA${tag}${c.id}`)]);
  await db.query(`VACUUM ANALYZE dialer.scheduled_calls, dialer.call_attempts, dialer.call_events`);
  const r = await db.query(`SELECT c.relname, c.relpages FROM pg_class c
                             WHERE c.relnamespace = 'dialer'::regnamespace AND c.relname = ANY ($1)`, [QUEUE_TABLES]);
  return Object.fromEntries(r.rows.map((x) => [x.relname, x.relpages]));
}

/**
 * Runs each statement in a new session whose executed plans auto_explain sends back as
 * NOTICEs (nested statements too: PL/pgSQL's, the foreign-key checks'); returns, per
 * statement, the plans' text.
 */
async function plansOf(statements) {
  const s = await d.connect({ database: DB });
  const notices = [];
  s.on('notice', (n) => notices.push(n.message));
  try {
    await s.query(`LOAD 'auto_explain'`);
    await s.query(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
                   SET auto_explain.log_level = notice; SET client_min_messages = notice`);
    const out = {};
    for (const [name, sql, params] of statements) {
      notices.length = 0;
      await s.query(sql, params || []);
      out[name] = notices.filter((m) => /plan:/.test(m)).join('\n');
    }
    return out;
  } finally {
    await s.end();
  }
}

/** The hot statements, on calls of the current queue. */
async function hotStatements(tag) {
  const pick = async (status) => Number((await db.query(
    `SELECT id FROM dialer.scheduled_calls WHERE status = $1 ORDER BY id DESC LIMIT 1`, [status])).rows[0].id);
  const scheduled = await pick('scheduled');
  const dialing = await pick('dialing');
  const sid = (await db.query('SELECT provider_call_id FROM dialer.scheduled_calls WHERE id = $1', [dialing])).rows[0].provider_call_id;
  await db.query(`UPDATE dialer.scheduled_calls SET status = 'failed', finished_at = now()
                   WHERE id = (SELECT id FROM dialer.scheduled_calls WHERE status = 'scheduled' ORDER BY id LIMIT 1)`);
  const failed = await pick('failed');
  return [
    ['enqueue_call', `SELECT dialer.enqueue_call($1, provider => $2, dedupe_key => $3)`, [`+1555${tag}99999`, PROVIDER, `small-${tag}-new`]],
    ['enqueue_call, an existing dedupe key', `SELECT dialer.enqueue_call($1, provider => $2, dedupe_key => $3)`, [`+1555${tag}00001`, PROVIDER, `small-${tag}-1`]],
    ['enqueue_calls', `SELECT count(*) FROM dialer.enqueue_calls($1::jsonb)`,
      [JSON.stringify([1, 2, 3].map((i) => ({ to_number: `+1555${tag}9990${i}`, provider: PROVIDER, dedupe_key: `small-${tag}-bulk-${i}` })))]],
    ['cancel_call', 'SELECT dialer.cancel_call($1)', [scheduled]],
    ['retry_call', 'SELECT dialer.retry_call($1)', [failed]],
    ['call_details', 'SELECT dialer.call_details($1)', [dialing]],
    ['claim_calls and record_results', `WITH c AS (SELECT * FROM dialer.claim_calls($1, 2, 'UTC', '00:00', '24:00', NULL))
       SELECT dialer.record_results(array_agg(c.id), array_agg(c.attempt), array_fill('retry'::text, ARRAY[count(*)::int]),
                                    array_fill(503, ARRAY[count(*)::int]), array_fill(NULL::text, ARRAY[count(*)::int]),
                                    array_fill(NULL::text, ARRAY[count(*)::int]), array_fill('busy'::text, ARRAY[count(*)::int]),
                                    array_fill(NULL::text, ARRAY[count(*)::int]), array_fill(60000, ARRAY[count(*)::int]),
                                    array_fill(now(), ARRAY[count(*)::int])) FROM c`, [PROVIDER]],
    ['claim_reconciliations', 'SELECT count(*) FROM dialer.claim_reconciliations(10)'],
    ['status callback', `SELECT dialer.apply_provider_status(dialer.twilio_callback_call(jsonb_build_object('CallSid', $1::text), NULL),
                                                             'completed', $1)`, [sid]],
  ];
}

/** Asserts that no plan of the statements reads a queue table sequentially, and that they do read them. */
function assertIndexed(plans, pages) {
  const scans = new RegExp(`(Seq Scan|Index Scan using \\S+|Index Only Scan using \\S+|Bitmap Heap Scan) on (${QUEUE_TABLES.join('|')})\\b`, 'g');
  const seen = new Set();
  for (const [name, text] of Object.entries(plans)) {
    assert.ok(text.length > 0, `${name}: auto_explain reported its plans`);
    for (const m of text.matchAll(scans)) {
      assert.doesNotMatch(m[0], /^Seq Scan/, `${name} reads ${m[2]} (${JSON.stringify(pages)} pages) sequentially:\n${text}`);
      seen.add(m[2]);
    }
  }
  assert.deepEqual([...seen].sort(), [...QUEUE_TABLES].sort(), 'the statements read every queue table, through an index');
}

for (const [n, tag, lo, hi] of [[40, '01', 1, 9], [1200, '02', 10, 99]]) {
  test(`queue tables of ${lo} to ${hi} pages: the hot statements are planned through their indexes`, async () => {
    const pages = await grow(n, tag);
    for (const t of QUEUE_TABLES) {
      assert.ok(pages[t] >= lo && pages[t] <= hi, `${t} has ${pages[t]} pages (wanted ${lo}-${hi}): ${JSON.stringify(pages)}`);
    }
    process.stderr.write(`# pages: ${JSON.stringify(pages)}\n`);
    assertIndexed(await plansOf(await hotStatements(tag)), pages);
  });
}
