'use strict';
// A provider kind in one room (issue 22, item 4), the C half:
//   - the kinds agree: a file src/provider_<kind>.c (and .h) each, one line each in the
//     registry of src/provider.c, the kinds' enumeration in SQL (dialer.provider_kinds), whose
//     offers_search is whether the kind's ProviderOps has a search;
//   - a kind's name appears in src/ only in its own files and the registry lines of
//     provider.c: not in code, not in strings, and (for twilio and voice_api) not in comments
//     either.  `backend` is also PostgreSQL's word for a server process: in that sense it is
//     left alone (PostgreSQL's own identifiers, found in its server headers, and the module
//     backend_hooks, what runs in PostgreSQL's backends), and comments are not read for it;
//   - the check catches a kind's name planted in a copy of src/;
//   - the Twilio StatusCallback URL has one implementation: dialer.twilio_callback_url() is
//     the C function the dispatcher builds the request with, what the dispatcher sent is what
//     it gives, and a callback signed over what was sent is accepted;
//   - the SQL half: in the install sources (sql/install/parts/), a kind's name as a value
//     ('twilio', 'backend', 'voice_api') appears only in the kinds' enumeration (the rows of
//     dialer.provider_kinds in 00_schema.sql) and in the kind's own part (6x_kind_<kind>.sql);
//     a function named for a kind (dialer.twilio_*) is created and called only there (and
//     named in 02_public_api.sql's list of what is promised); the check catches a planted one;
//   - no SQL function reads a provider's answer: lookups and searches reach SQL as pg_dialer's
//     report (src/lookup_report.c), and no function of the extension casts a body to jsonb or
//     reads Twilio's or a backend's answer fields.
//
// Run by test/run_all.sh; by hand against a cluster started with test/lib/cluster.sh:
//   PGHOST=127.0.0.1 PGPORT=55482 PGUSER=postgres DIALER_DB=dialer_test \
//     node --test test/integration/provider_kinds.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const twilio = require('twilio');
const d = require('../lib/dialer');

const repo = path.resolve(__dirname, '..', '..');
const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';

// kinds whose name is also one of PostgreSQL's words, and the modules of src/ that use it in
// PostgreSQL's sense
const POSTGRES_SENSE = { backend: { modules: ['backend_hooks'] } };

/** The kinds: one src/provider_<kind>.c each. */
function kindsOf(src) {
  return fs.readdirSync(src).map((f) => /^provider_(\w+)\.c$/.exec(f)).filter(Boolean).map((m) => m[1]).sort();
}

/**
 * A C file in pieces: comments, string and character literals, and code, each with the line
 * it starts on.
 */
function cPieces(text) {
  const pieces = [];
  let i = 0;
  let line = 1;
  let code = { text: '', line: 1 };
  const flushCode = () => {
    if (code.text) pieces.push({ type: 'code', ...code });
    code = { text: '', line };
  };
  const take = (type, end) => {
    flushCode();
    const piece = text.slice(i, end);
    pieces.push({ type, text: piece, line });
    line += (piece.match(/\n/g) || []).length;
    code.line = line;
    i = end;
  };
  while (i < text.length) {
    const c = text[i];
    if (c === '/' && text[i + 1] === '*') {
      const j = text.indexOf('*/', i + 2);
      take('comment', j < 0 ? text.length : j + 2);
    } else if (c === '/' && text[i + 1] === '/') {
      const j = text.indexOf('\n', i);
      take('comment', j < 0 ? text.length : j);
    } else if (c === '"' || c === '\'') {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
      take(c === '"' ? 'string' : 'char', j + 1);
    } else {
      if (!code.text) code.line = line;
      code.text += c;
      if (c === '\n') line++;
      i++;
    }
  }
  flushCode();
  return pieces;
}

/** The lower-case parts of an identifier: split at underscores and at camelCase humps. */
function parts(word) {
  return word.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase().split('_').filter(Boolean);
}

/** Whether the parts of kind appear, in a row, among the parts of word. */
function hasKind(word, kind) {
  const w = parts(word);
  const k = kind.split('_');
  for (let i = 0; i + k.length <= w.length; i++) {
    if (k.every((p, j) => w[i + j] === p)) return true;
  }
  return false;
}

/** Identifiers (code only) of PostgreSQL's server headers that hold one of the words. */
function postgresIdentifiers(words) {
  const dir = execFileSync(path.join(PGBIN, 'pg_config'), ['--includedir-server'], { encoding: 'utf8' }).trim();
  const found = new Set();
  const walk = (d_) => {
    for (const e of fs.readdirSync(d_, { withFileTypes: true })) {
      const p = path.join(d_, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.h')) {
        const text = fs.readFileSync(p, 'latin1');
        if (!words.some((w) => text.toLowerCase().includes(w))) continue;
        for (const piece of cPieces(text)) {
          if (piece.type !== 'code') continue;
          for (const id of piece.text.match(/[A-Za-z_][A-Za-z0-9_]*/g) || []) {
            if (words.some((w) => hasKind(id, w))) found.add(id);
          }
        }
      }
    }
  };
  walk(dir);
  return found;
}

/**
 * Every place in the C files of src (a directory) where a kind's name appears outside the
 * kind's own files and the registry lines of provider.c, as "file:line: kind in what: text".
 */
function kindNamesOutside(src) {
  const kinds = kindsOf(src);
  const pgWords = postgresIdentifiers(kinds.filter((k) => POSTGRES_SENSE[k]));
  const found = [];
  for (const file of fs.readdirSync(src).filter((f) => /\.[ch]$/.test(f)).sort()) {
    const own = kinds.find((k) => file === `provider_${k}.c` || file === `provider_${k}.h`);
    let text = fs.readFileSync(path.join(src, file), 'utf8');
    if (file === 'provider.c') {
      // the registry lines: each kind's header, and its operations in provider_kinds[]
      text = text.split('\n').map((l) => (
        kinds.some((k) => l.trim() === `#include "provider_${k}.h"` || l.trim() === `&${k}_provider_ops,`) ? '' : l))
        .join('\n');
    }
    for (const piece of cPieces(text)) {
      for (const kind of kinds) {
        if (kind === own) continue;
        const sense = POSTGRES_SENSE[kind];
        const where = `${file}:${piece.line}`;
        if (piece.type === 'comment') {
          if (sense) continue;
          const re = new RegExp(`(^|[^A-Za-z0-9])${kind.replace('_', '[ _-]?')}(?![A-Za-z0-9])`, 'i');
          if (re.test(piece.text)) found.push(`${where}: ${kind} in a comment: ${piece.text.trim().slice(0, 100)}`);
          continue;
        }
        for (const word of piece.text.match(/[A-Za-z0-9_]+/g) || []) {
          if (!hasKind(word, kind)) continue;
          if (sense && sense.modules.some((m) => word.toLowerCase().includes(m))) continue;
          if (sense && piece.type === 'code' && pgWords.has(word)) continue;
          found.push(`${where}: ${kind} in ${piece.type === 'code' ? 'code' : 'a string'}: ${word}`);
        }
      }
    }
  }
  return found;
}

test('the kinds agree: their files and the registry of provider.c', () => {
  const src = path.join(repo, 'src');
  const kinds = kindsOf(src);
  assert.deepEqual(kinds, ['backend', 'twilio', 'voice_api']);
  for (const k of kinds) {
    assert.ok(fs.existsSync(path.join(src, `provider_${k}.h`)), `src/provider_${k}.h exists`);
    assert.match(fs.readFileSync(path.join(src, `provider_${k}.c`), 'utf8'),
      new RegExp(`const ProviderOps ${k}_provider_ops = \\{\\n\\t\\.kind = "${k}",`), `${k}: its ProviderOps names it`);
  }
  const providerC = fs.readFileSync(path.join(src, 'provider.c'), 'utf8');
  const table = /provider_kinds\[\] = \{([^}]*)\}/.exec(providerC);
  assert.ok(table, 'provider.c has the table provider_kinds');
  assert.deepEqual([...table[1].matchAll(/&(\w+)_provider_ops/g)].map((m) => m[1]).sort(), kinds,
    'one registry line per kind');
});

test('a kind\'s name appears in src/ only in its own files and the registry lines', () => {
  assert.deepEqual(kindNamesOutside(path.join(repo, 'src')), []);
});

test('the check finds a kind\'s name planted in a copy of src/ (code, string, comment)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_kinds_'));
  try {
    const src = path.join(dir, 'src');
    fs.cpSync(path.join(repo, 'src'), src, { recursive: true });
    const plant = (file, what) => fs.appendFileSync(path.join(src, file), what);
    // "which kind is this" asked outside the kind's file, in three ways
    plant('pacing.c', '\nstatic bool planted(DialerProvider *p) { return strcmp(p->ops->kind, "twilio") == 0; }\n');
    plant('results.c', '\nstatic const char *planted_kind = "backend";\n');
    plant('dispatch_round.c', '\n/* a voice API has no search */\n');
    plant('queue.c', '\nextern const ProviderOps voice_api_provider_ops;\n');
    const found = kindNamesOutside(src);
    const has = (re) => found.some((f) => re.test(f));
    assert.ok(has(/^pacing\.c:\d+: twilio in a string: twilio$/), found.join('\n'));
    assert.ok(has(/^results\.c:\d+: backend in a string: backend$/), found.join('\n'));
    assert.ok(has(/^dispatch_round\.c:\d+: voice_api in a comment/), found.join('\n'));
    assert.ok(has(/^queue\.c:\d+: voice_api in code: voice_api_provider_ops$/), found.join('\n'));
    assert.equal(found.length, 4, found.join('\n'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/* ---------------------------------------------------------------- the callback URL */

const P = `it_kinds_${process.pid % 100000}_`;
const TOKEN = '0123456789abcdef0123456789abcdef';
const providers = new Set();
let db;
let settings;
let sim;

before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  await d.workerPid(db);
  sim = await d.startSim('twilio');
});

after(async () => {
  if (db) {
    await d.dropProviders(db, [...providers]).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end().catch(() => {});
  }
  if (sim) await sim.close();
});

/** Applies a Twilio status callback as PostgREST would hand it to SQL, signed with sig. */
async function ingest(fields, sig, callRef) {
  await db.query(`SELECT set_config('request.headers', $1, false)`,
    [JSON.stringify({ 'x-twilio-signature': sig, 'content-type': 'application/x-www-form-urlencoded' })]);
  try {
    return (await db.query('SELECT dialer.twilio_ingest($1::jsonb, $2) AS r', [JSON.stringify(fields), callRef])).rows[0].r;
  } finally {
    await db.query(`SELECT set_config('request.headers', '', false)`);
  }
}

test('the StatusCallback URL: one C function builds what the dispatcher sends and what the signature check uses', async () => {
  const fn = (await db.query(`SELECT l.lanname, p.prosrc FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                               WHERE p.oid = 'dialer.twilio_callback_url(text, bigint)'::regprocedure`)).rows[0];
  assert.deepEqual(fn, { lanname: 'c', prosrc: 'dialer_twilio_callback_url' });
  const twilioC = fs.readFileSync(path.join(repo, 'src', 'provider_twilio.c'), 'utf8');
  assert.match(twilioC, /append_form\(&body, "StatusCallback",\s*callback_url\(/, 'the request\'s StatusCallback is callback_url()');
  assert.match(twilioC, /dialer_twilio_callback_url\(PG_FUNCTION_ARGS\)\n\{[^}]*callback_url\(/, 'the SQL function is callback_url()');

  const cases = [
    { name: 'query', url: 'https://hooks.example.com/twilio/status-callback?tag=a+b', callId: true },
    { name: 'plain', url: 'https://hooks.example.com/twilio/status-callback', callId: true },
    { name: 'direct', url: 'https://hooks.example.com/rpc/twilio_status_callback', callId: false },
  ];
  for (const c of cases) {
    const name = `${P}${c.name}`;
    providers.add(name);
    await d.createProvider(db, d.twilioProvider(name, sim, { twiml_url: 'https://app.example.com/t.xml',
      status_callback_url: c.url }));
    await db.query('UPDATE dialer.providers SET status_callback_call_id = $2 WHERE name = $1', [name, c.callId]);
    c.to = `+1555030${String(cases.indexOf(c)).padStart(4, '0')}`;
    c.id = await d.enqueue(db, c.to, { provider: name });
  }
  const dialed = await d.waitForStatus(db, cases.map((c) => c.id), ['dialing'], { timeoutMs: 8000 });
  for (const c of cases) {
    const create = sim.control.requests(1000).find((r) => r.method === 'POST' && r.body && r.body.To === c.to);
    assert.ok(create, `${c.name}: the create reached the simulator`);
    const sent = create.body.StatusCallback;
    const built = (await db.query('SELECT dialer.twilio_callback_url($1, $2) AS u',
      [c.url, c.callId ? c.id : null])).rows[0].u;
    assert.equal(sent, built, `${c.name}: the dispatcher sent what dialer.twilio_callback_url() gives`);
    assert.equal(sent, c.callId ? `${c.url}${c.url.includes('?') ? '&' : '?'}call_id=${c.id}` : c.url);

    // a callback signed over what the dispatcher sent is accepted
    const sid = dialed.find((x) => x.id === c.id).provider_call_id;
    const fields = { AccountSid: sim.control.config().accountSid, CallSid: sid, CallStatus: 'ringing', SequenceNumber: '1' };
    const r = await ingest(fields, twilio.getExpectedTwilioSignature(TOKEN, sent, fields), c.callId ? String(c.id) : null);
    assert.equal(r.result, 'applied', `${c.name}: ${JSON.stringify(r)}`);
  }
});

/* ------------------------------------------------- no SQL function reads an answer */

// What reading a provider's answer in SQL looks like: a body cast to jsonb, or the field names
// of the answers to lookups and searches (Twilio's sid, date_created, next_page_uri, a calls
// list).  pg_dialer's own report says id, created_at, more, records.
const READS_AN_ANSWER = /\b(body|answer|response)\s*::\s*jsonb|next_page_uri|->>?\s*'(sid|date_created)'|->\s*'calls'/i;

test('no SQL function reads a provider\'s answer: lookups and searches reach SQL as pg_dialer\'s report', async () => {
  const sigs = (await db.query(`SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args
                                  FROM pg_proc p WHERE p.pronamespace = 'dialer'::regnamespace
                                   AND p.proname IN ('apply_reconciliation', 'apply_search')
                                 ORDER BY p.proname`)).rows;
  assert.deepEqual(sigs, [
    { proname: 'apply_reconciliation', args: 'call_id bigint, provider_call_id text, http_status integer, report jsonb' },
    { proname: 'apply_search', args: 'call_id bigint, search jsonb, http_status integer, report jsonb' },
  ]);
  // every function of the extension written in SQL or PL/pgSQL
  const fns = (await db.query(`SELECT p.oid::regprocedure::text AS fn, p.prosrc
                                 FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                 JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_dialer'
                                 JOIN pg_language l ON l.oid = p.prolang
                                WHERE d.deptype = 'e' AND l.lanname IN ('sql', 'plpgsql')`)).rows;
  assert.ok(fns.length > 100, `the extension's functions were found (${fns.length})`);
  const readers = fns.filter((f) => READS_AN_ANSWER.test(f.prosrc)).map((f) => `${f.fn}: ${READS_AN_ANSWER.exec(f.prosrc)[0]}`);
  assert.deepEqual(readers, []);
  // the check can fail: the 0.2.0 apply_search read Twilio's page in PL/pgSQL
  const released = fs.readFileSync(path.join(repo, 'sql', 'install', 'released', 'pg_dialer--0.2.0.sql'), 'utf8');
  const old = /CREATE FUNCTION dialer\.apply_search\([\s\S]*?\n\$\$;/.exec(released);
  assert.ok(old && READS_AN_ANSWER.test(old[0]), '0.2.0\'s apply_search is caught');
});

test('the kinds\' enumeration in SQL (dialer.provider_kinds) names the C kinds, and offers a search where the C does', async () => {
  const src = path.join(repo, 'src');
  const rows = (await db.query('SELECT kind, offers_search FROM dialer.provider_kinds ORDER BY kind')).rows;
  assert.deepEqual(rows.map((r) => r.kind), kindsOf(src));
  for (const r of rows) {
    const ops = /const ProviderOps \w+_provider_ops = \{([^}]*)\}/.exec(fs.readFileSync(path.join(src, `provider_${r.kind}.c`), 'utf8'));
    assert.ok(ops, `${r.kind}: its ProviderOps`);
    const search = /\.search = (\w+)/.exec(ops[1]);
    assert.equal(Boolean(search && search[1] !== 'NULL'), r.offers_search,
      `${r.kind}: offers_search is whether its ProviderOps has a search`);
  }
});

/** A part's SQL without comments and COMMENT statements (their prose may name a kind). */
function sqlCode(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/--[^\n]*/g, '')
    .replace(/COMMENT ON[^;]*?IS\s*'(?:[^']|'')*';/g, '');
}

/**
 * Where the install parts in dir name a kind outside its room: ["part:line: what"]. A kind's
 * name as a whole string literal is allowed in the enumeration's rows (00_schema.sql, the
 * INSERT INTO dialer.provider_kinds) and in the kind's own part; an identifier that begins
 * with a kind's name and _ (dialer.twilio_signature) in its own part and in 02_public_api.sql.
 */
function sqlKindNames(dir, kinds) {
  const found = [];
  for (const part of fs.readdirSync(dir).filter((f) => f.endsWith('.sql') && !/_data\.sql$/.test(f)).sort()) {
    const code = sqlCode(fs.readFileSync(path.join(dir, part), 'utf8'));
    const own = /^\d+_kind_(\w+)\.sql$/.exec(part);
    const enumeration = part === '00_schema.sql'
      ? (/INSERT INTO dialer\.provider_kinds[\s\S]*?;/.exec(code) || [''])[0] : '';
    const outside = code.replace(enumeration, (m) => m.replace(/[^\n]/g, ' '));
    outside.split('\n').forEach((line, i) => {
      for (const kind of kinds) {
        if (own && own[1] === kind) continue;
        if (new RegExp(`'${kind}'`).test(line)) found.push(`${part}:${i + 1}: '${kind}'`);
        if (part !== '02_public_api.sql' && new RegExp(`\\b${kind}_\\w+`).test(line)
            && !(kind === 'backend' && /backend_hooks/.test(line))) {
          found.push(`${part}:${i + 1}: ${new RegExp(`\\b${kind}_\\w+`).exec(line)[0]}`);
        }
      }
    });
  }
  return found;
}

test('a kind\'s name appears in the install sources only in the enumeration and its own part', () => {
  const kinds = kindsOf(path.join(repo, 'src'));
  const parts = path.join(repo, 'sql', 'install', 'parts');
  assert.deepEqual(sqlKindNames(parts, kinds), [], 'a kind named outside its room');
  // planted: a kind's literal in a generic part, and a call of a kind's function outside its part
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_sql_kinds.'));
  try {
    for (const f of fs.readdirSync(parts)) fs.copyFileSync(path.join(parts, f), path.join(copy, f));
    fs.appendFileSync(path.join(copy, '50_dispatch.sql'), "\nSELECT 1 WHERE 'x' = 'voice_api';\n");
    fs.appendFileSync(path.join(copy, '30_enqueue.sql'), '\nSELECT dialer.twilio_callback_url(NULL, 1);\n');
    const planted = sqlKindNames(copy, kinds);
    assert.ok(planted.some((w) => /^50_dispatch\.sql:\d+: 'voice_api'$/.test(w)), planted.join('; '));
    assert.ok(planted.some((w) => /^30_enqueue\.sql:\d+: twilio_callback_url$/.test(w)), planted.join('; '));
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
});
