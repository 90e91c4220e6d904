'use strict';
// The install sources (sql/install/parts/*.sql) read as a reader meets them:
//   - the parts are in dependency order: a part uses (names dialer.X, dialer_api.X or
//     dialer_admin.X of) only what it or a part before it creates, never what a later part
//     creates (a call forward), so that they read from the first to the last;
//   - no SQL function is longer than 120 lines, from its CREATE FUNCTION line to the line
//     that closes its body ($$;): a longer one is cut into steps with names.
//
// Reads the files only (no cluster). Run by test/run_all.sh; by hand:
//   node --test test/integration/sql_sources.test.js

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const partsDir = path.join(repo, 'sql', 'install', 'parts');
const MAX_LINES = 120;

/** The install parts, in the order the install script joins them: [{name, lines}]. */
function parts() {
  return fs.readdirSync(partsDir).filter((f) => f.endsWith('.sql')).sort()
    .map((name) => ({ name, lines: fs.readFileSync(path.join(partsDir, name), 'utf8').split('\n') }));
}

/**
 * The functions a part creates: {name, part, line (1-based), length}. A function's body ends
 * at the first line that starts with `$$;` (pg_dialer's SQL writes every body between $$ and
 * $$;), or at `AS 'MODULE_PATHNAME'` for one written in C.
 */
function functions(part) {
  const found = [];
  for (let i = 0; i < part.lines.length; i++) {
    const m = /^CREATE (?:OR REPLACE )?FUNCTION\s+([\w.]+)/.exec(part.lines[i]);
    if (!m) continue;
    let j = i;
    while (j < part.lines.length && !/^\$\$;/.test(part.lines[j]) && !/^AS 'MODULE_PATHNAME'/.test(part.lines[j])) j++;
    assert.ok(j < part.lines.length, `${part.name}:${i + 1}: the body of ${m[1]} is never closed`);
    found.push({ name: m[1], part: part.name, line: i + 1, length: j - i + 1 });
    i = j;
  }
  return found;
}

/** A part's SQL without its comments and the contents of its string literals (a COMMENT's text
 *  names other objects without using them). Dollar-quoted bodies are kept: they are code. */
function code(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/--[^\n]*/g, '').replace(/'(?:[^']|'')*'/g, "''");
}

const CREATES = /CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNLOGGED\s+|UNIQUE\s+|EVENT\s+)*(?:FUNCTION|TABLE|TYPE|VIEW|SEQUENCE|PROCEDURE|DOMAIN|TRIGGER|INDEX)\s+((?:dialer|dialer_api|dialer_admin)\.\w+)/gi;
const USES = /\b((?:dialer|dialer_api|dialer_admin)\.\w+)/g;

test('the install parts are in dependency order: none uses what a later part creates', () => {
  const all = parts();
  const createdIn = new Map();
  all.forEach((p, i) => {
    for (const m of code(p.lines.join('\n')).matchAll(CREATES)) {
      if (!createdIn.has(m[1].toLowerCase())) createdIn.set(m[1].toLowerCase(), i);
    }
  });
  assert.ok(createdIn.size > 150, `the parts create pg_dialer's objects (found ${createdIn.size})`);
  const forward = [];
  all.forEach((p, i) => {
    const seen = new Set();
    for (const m of code(p.lines.join('\n')).matchAll(USES)) {
      const name = m[1].toLowerCase();
      const at = createdIn.get(name);
      if (at !== undefined && at > i && !seen.has(name)) {
        seen.add(name);
        forward.push(`${p.name} uses ${name}, created later in ${all[at].name}`);
      }
    }
  });
  assert.deepEqual(forward, [], `calls forward:\n${forward.join('\n')}`);
});

test(`no SQL function of the install sources is longer than ${MAX_LINES} lines`, () => {
  const all = parts().flatMap(functions);
  assert.ok(all.length > 100, `the parts create pg_dialer's functions (found ${all.length})`);
  const long = all.filter((f) => f.length > MAX_LINES)
    .map((f) => `${f.part}:${f.line}: ${f.name} has ${f.length} lines`);
  assert.deepEqual(long, [], `cut these into steps with names:\n${long.join('\n')}`);
});
