'use strict';
// The update script from the last release is written by `make update-script`
// (sql/install/tools/draft_update.py), never edited by hand: this test writes it again from
// sql/install/pg_dialer--0.1.0.sql, the install script assembled from sql/install/parts/ and the hand-written
// statements in sql/install/tools/pg_dialer--0.1.0--0.2.0.hand.sql, and fails when the committed
// script differs (a change to sql/install/parts/ without `make update-script`).  It also checks that
// the tool refuses to write a script when a changed table has no hand-written ALTER, or an
// object of the release is gone without a hand-written DROP.
// upgrade.test.js then runs the script against a real 0.1.0 database.
//
// By hand: node --test test/integration/update_script.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(__dirname, '..', '..');
const makefile = fs.readFileSync(path.join(repo, 'Makefile'), 'utf8');
const VERSION = makefile.match(/^EXTVERSION\s*=\s*(\S+)/m)[1];
const LAST = makefile.match(/^LAST_RELEASE\s*=\s*(\S+)/m)[1];
const UPDATE = path.join(repo, 'sql', 'install', `pg_dialer--${LAST}--${VERSION}.sql`);
const HAND = path.join(repo, 'sql', 'install', 'tools', `pg_dialer--${LAST}--${VERSION}.hand.sql`);

let dir;
let install;

test.before(() => {
	dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_update_script_'));
	const parts = fs.readdirSync(path.join(repo, 'sql', 'install', 'parts')).filter((f) => f.endsWith('.sql')).sort();
	install = path.join(dir, `pg_dialer--${VERSION}.sql`);
	fs.writeFileSync(install, parts.map((f) => fs.readFileSync(path.join(repo, 'sql', 'install', 'parts', f), 'utf8')).join(''));
});
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

// runs the tool with HAND as the hand file; returns { status, stderr, out }
function draft(hand) {
	const out = path.join(dir, 'update.sql');
	fs.rmSync(out, { force: true });
	const r = spawnSync('python3', [path.join(repo, 'sql/install/tools/draft_update.py'),
		path.join(repo, 'sql', 'install', `pg_dialer--${LAST}.sql`), install, out, hand], { encoding: 'utf8' });
	return { status: r.status, stderr: r.stderr, out: fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : null };
}

test('the committed update script is what make update-script writes', () => {
	const r = draft(HAND);
	assert.equal(r.status, 0, r.stderr);
	const committed = fs.readFileSync(UPDATE, 'utf8');
	assert.ok(r.out === committed,
		`${path.relative(repo, UPDATE)} is stale: run \`make update-script\` (first differing line ` +
		`${r.out.split('\n').findIndex((l, i) => l !== committed.split('\n')[i]) + 1})`);
});

test('a changed table without its hand-written ALTER is refused, and no script is written', () => {
	const hand = fs.readFileSync(HAND, 'utf8').replace(/^-- @replace table dialer\.providers$/m, '-- @end');
	const f = path.join(dir, 'hand_missing.sql');
	fs.writeFileSync(f, hand);
	const r = draft(f);
	assert.notEqual(r.status, 0);
	assert.match(r.stderr, /MANUAL: table dialer\.providers changed/);
	assert.equal(r.out, null);
});

test('an object of the release that is gone needs a hand-written block that covers it', () => {
	// pretend the current version dropped dialer.stats(date): take it out of the install script
	const text = fs.readFileSync(install, 'utf8');
	const start = text.indexOf('CREATE FUNCTION dialer.stats(');
	assert.ok(start > 0, 'dialer.stats is in the install script');
	const end = text.indexOf('\n$$;', start) + 4;
	const saved = text;
	fs.writeFileSync(install, text.slice(0, start) + text.slice(end));
	try {
		const r = draft(HAND);
		assert.notEqual(r.status, 0);
		assert.match(r.stderr, /function dialer\.stats is gone .*@covers function dialer\.stats/);
	} finally {
		fs.writeFileSync(install, saved);
	}
});
