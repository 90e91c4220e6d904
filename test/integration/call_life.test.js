'use strict';
// The life of a call has one home: dialer.call_transitions, moved by dialer.move_calls alone.
//   - README.md's diagram of the call's life is the output of dialer.call_life_diagram() on a
//     fresh install (the diagram is drawn from the table, never by hand), and a changed row
//     changes the diagram;
//   - no C file writes a call's status or its events: the dispatcher goes through the SQL
//     functions (test/pgtap/call_life.sql checks the SQL functions from the catalog).
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55452 PGUSER=postgres node --test test/integration/call_life.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const d = require('../lib/dialer');

const repo = path.resolve(__dirname, '..', '..');
const DB = 'dialer_call_life';
let root;
let db;

before(async () => {
  root = await d.connect({ database: 'postgres' });
  await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await root.query(`CREATE DATABASE ${DB}`);
  db = await d.connect({ database: DB });
  await db.query('SET client_min_messages = error');
  await db.query('CREATE EXTENSION pg_dialer');
});

after(async () => {
  if (db) await db.end().catch(() => {});
  if (root) {
    await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`).catch(() => {});
    await root.end().catch(() => {});
  }
});

/** The diagram README.md prints between its two markers. */
function readmeDiagram(text) {
  const m = text.match(/<!-- call-life diagram: SELECT dialer\.call_life_diagram\(\) -->\n```mermaid\n([\s\S]*?)\n```\n<!-- end of call-life diagram -->/);
  assert.ok(m, 'README.md holds the call-life diagram between its markers');
  return m[1];
}

test("README.md's diagram of the call's life is dialer.call_life_diagram()'s output", async () => {
  const drawn = (await db.query('SELECT dialer.call_life_diagram() AS d')).rows[0].d;
  const printed = readmeDiagram(fs.readFileSync(path.join(repo, 'README.md'), 'utf8'));
  assert.equal(printed, drawn, 'README.md differs from the table: paste the output of SELECT dialer.call_life_diagram()');
  // every row of the table is on the diagram
  const rows = (await db.query(`SELECT coalesce(from_status, '[*]') AS f, event, to_status AS t FROM dialer.call_transitions`)).rows;
  for (const r of rows) {
    const line = printed.split('\n').find((l) => l.startsWith(`    ${r.f} --> ${r.t}: `));
    assert.ok(line && line.split(': ')[1].split(', ').includes(r.event), `${r.f} -${r.event}-> ${r.t} is drawn`);
  }
});

test('a changed row changes the diagram (so the comparison above can fail)', async () => {
  await db.query('BEGIN');
  try {
    const before = (await db.query('SELECT dialer.call_life_diagram() AS d')).rows[0].d;
    await db.query(`DELETE FROM dialer.call_transitions WHERE from_status = 'scheduled' AND event = 'canceled'`);
    const after = (await db.query('SELECT dialer.call_life_diagram() AS d')).rows[0].d;
    assert.notEqual(after, before);
    assert.ok(before.includes('    scheduled --> canceled: canceled\n'));
    assert.ok(!after.includes('scheduled --> canceled'));
  } finally {
    await db.query('ROLLBACK');
  }
});

test('no C file writes a call, its status or its events: the dispatcher calls the SQL functions', () => {
  const src = path.join(repo, 'src');
  const files = fs.readdirSync(src).filter((f) => f.endsWith('.c'));
  assert.ok(files.length > 10, 'the C sources are found');
  const writes = /\b(UPDATE\s+dialer\.scheduled_calls|INSERT\s+INTO\s+dialer\.(scheduled_calls|call_events))\b/i;
  const offenders = files.filter((f) => writes.test(fs.readFileSync(path.join(src, f), 'utf8')));
  assert.deepEqual(offenders, []);
  // (the pattern does find such a statement)
  assert.ok(writes.test('SPI_execute("UPDATE dialer.scheduled_calls SET status = \'x\'", false, 0)'));
});
