'use strict';
// What pg_dialer promises is one declared list, dialer.public_api, held to the rest:
//   - every object it lists exists, with the kind it says;
//   - every other function, table, view and composite type of the schemas dialer, dialer_api
//     and dialer_admin says first in its COMMENT that it is internal ("Internal:", "Worker:"
//     for what the dispatcher calls, "Trigger:" for a trigger's function);
//   - README.md documents every listed object (dialer.X by name; the admin API by its HTTP
//     path: /rpc/X or `X` for a function, /X for a view);
//   - grant_usage and grant_monitoring give a role nothing that is not listed; grant_campaigns
//     gives besides only internal steps that campaign_candidates runs with the caller's rights
//     (it reads the campaign's source as the caller).
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55452 PGUSER=postgres node --test test/integration/public_api.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const d = require('../lib/dialer');

const repo = path.resolve(__dirname, '..', '..');
const DB = 'dialer_public_api';
const ROLE = 'dialer_public_api_probe';
const SCHEMAS = ['dialer', 'dialer_api', 'dialer_admin'];
let root;
let db;

before(async () => {
  root = await d.connect({ database: 'postgres' });
  await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await root.query(`CREATE DATABASE ${DB}`);
  db = await d.connect({ database: DB });
  await db.query('SET client_min_messages = error');
  await db.query('CREATE EXTENSION pg_dialer');
  await db.query(`DROP ROLE IF EXISTS ${ROLE}`);
  await db.query(`CREATE ROLE ${ROLE}`);
});

after(async () => {
  if (db) {
    await db.query(`DROP OWNED BY ${ROLE}`).catch(() => {});
    await db.end();
  }
  if (root) {
    await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    await root.query(`DROP ROLE IF EXISTS ${ROLE}`);
    await root.end();
  }
});

/** pg_dialer's functions, relations and composite types: {object, kind, comment}. */
async function objects() {
  const r = await db.query(`
    SELECT n.nspname || '.' || p.proname AS object, 'function' AS kind, obj_description(p.oid, 'pg_proc') AS comment
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY ($1)
    UNION ALL
    SELECT n.nspname || '.' || c.relname,
           CASE c.relkind WHEN 'v' THEN 'view' WHEN 'c' THEN 'type' ELSE 'table' END,
           CASE c.relkind WHEN 'c' THEN obj_description(c.reltype, 'pg_type') ELSE obj_description(c.oid, 'pg_class') END
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p', 'v', 'c')`, [SCHEMAS]);
  return r.rows;
}

async function promised() {
  return (await db.query('SELECT object, kind, area FROM dialer.public_api ORDER BY object, kind')).rows;
}

test('every object dialer.public_api lists exists, with its kind', async () => {
  const have = new Set((await objects()).map((o) => `${o.kind} ${o.object}`));
  const list = await promised();
  assert.ok(list.length > 50, `the list names pg_dialer's API (${list.length} entries)`);
  const missing = list.filter((p) => !have.has(`${p.kind} ${p.object}`)).map((p) => `${p.kind} ${p.object}`);
  assert.deepEqual(missing, [], 'listed but not installed');
});

test('every object not listed says first in its COMMENT that it is internal', async () => {
  const listed = new Set((await promised()).map((p) => `${p.kind} ${p.object}`));
  const unmarked = (await objects())
    .filter((o) => !listed.has(`${o.kind} ${o.object}`))
    .filter((o) => !/^(Internal|Worker|Trigger): /.test(o.comment || ''))
    .map((o) => `${o.kind} ${o.object}: ${(o.comment || '(no comment)').slice(0, 60)}`);
  assert.deepEqual([...new Set(unmarked)].sort(), [],
    'list it in dialer.public_api (sql/install/parts/02_public_api.sql) or begin its COMMENT with Internal:, Worker: or Trigger:');
});

test('README.md documents every listed object', async () => {
  const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
  const undocumented = (await promised()).filter((p) => {
    const [schema, name] = p.object.split('.');
    if (schema === 'dialer_admin') {
      return !new RegExp(p.kind === 'function' ? `(/rpc/${name}\\b|\`${name}\`)` : `/${name}\\b`).test(readme);
    }
    const re = schema === 'dialer'
      ? new RegExp(`(dialer\\.${name}\\b|\`${name}\\b)`)
      : new RegExp(`(${schema}\\.${name}\\b|/rpc/${name}\\b)`);
    return !re.test(readme);
  }).map((p) => `${p.kind} ${p.object}`);
  assert.deepEqual(undocumented, [], 'listed as promised, but README.md does not name them');
});

/** What a helper gave ROLE in pg_dialer's schemas: ['function dialer.x', 'table dialer.y', ...]. */
async function grantedTo(role) {
  const r = await db.query(`
    SELECT n.nspname || '.' || p.proname AS object, 'function' AS kind
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
     WHERE n.nspname = ANY ($1) AND a.grantee = $2::regrole
    UNION
    SELECT n.nspname || '.' || c.relname, CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
     WHERE n.nspname = ANY ($1) AND a.grantee = $2::regrole
    UNION
    SELECT n.nspname || '.' || c.relname, CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END
      FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
           aclexplode(t.attacl) a
     WHERE n.nspname = ANY ($1) AND a.grantee = $2::regrole`, [SCHEMAS, role]);
  return r.rows.map((o) => `${o.kind} ${o.object}`);
}

test('the grant helpers give a role only listed objects (and campaign_candidates\' internal steps)', async () => {
  const listed = new Set((await promised()).map((p) => `${p.kind} ${p.object}`));
  const internal = new Set((await objects()).filter((o) => /^Internal: /.test(o.comment || ''))
    .map((o) => `${o.kind} ${o.object}`));
  for (const helper of ['grant_usage', 'grant_monitoring', 'grant_campaigns']) {
    await db.query(`DROP OWNED BY ${ROLE}`);
    await db.query(`SELECT dialer.${helper}('${ROLE}')`);
    const given = await grantedTo(ROLE);
    assert.ok(given.length >= 3, `${helper} grants the role something (${given.join(', ')})`);
    const extra = given.filter((o) => !listed.has(o) && !(helper === 'grant_campaigns' && internal.has(o))).sort();
    assert.deepEqual(extra, [], `granted by dialer.${helper} but not listed in dialer.public_api`);
  }
});
