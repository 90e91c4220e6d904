'use strict';
// The update scripts are built, never committed: make writes pg_dialer--OLD--NEW.sql for each
// release and the next (the last release and this version included) with
// sql/install/tools/draft_update.py, from the released install script of OLD
// (sql/install/released/), the install script of NEW (released, or this version's, built from
// sql/install/parts/) and the hand-written change file sql/install/changes/pg_dialer--OLD--NEW.sql.
// This test checks that nothing built is committed, that make builds every update script of
// the RELEASES line of the Makefile, and that the tool refuses to write a script when a changed
// table has no hand-written ALTER in the change file, or an object of the release is gone
// without a hand-written DROP.  upgrade.test.js then runs the updates against real databases.
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
const RELEASES = makefile.match(/^RELEASES\s*=\s*(.+)$/m)[1].trim().split(/\s+/);
const PG_CONFIG = path.join(process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin', 'pg_config');
const install = (v) => path.join(repo, 'sql', 'install', 'released', `pg_dialer--${v}.sql`);
const changes = (a, b) => path.join(repo, 'sql', 'install', 'changes', `pg_dialer--${a}--${b}.sql`);
// each release and the next, then the last release and this version
const PAIRS = RELEASES.map((v, i) => [v, RELEASES[i + 1] || VERSION]);

let dir;
test.before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_update_script_')); });
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

// runs the tool from release `from` to release `to` with `hand` as the change file
function draft(from, to, hand, toScript = install(to)) {
	const out = path.join(dir, 'update.sql');
	fs.rmSync(out, { force: true });
	const r = spawnSync('python3', [path.join(repo, 'sql/install/tools/draft_update.py'), install(from), toScript, out, hand],
		{ encoding: 'utf8' });
	return { status: r.status, stderr: r.stderr, out: fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : null };
}

test('nothing make builds is committed: the install and update scripts, the map\'s part', () => {
	const r = spawnSync('git', ['-C', repo, 'ls-files', 'sql/install'], { encoding: 'utf8' });
	if (r.status !== 0) return;		// not a git checkout (an unpacked tarball): nothing to check
	const files = r.stdout.split('\n').filter(Boolean);
	assert.deepEqual(files.filter((f) => /^sql\/install\/pg_dialer--.*\.sql$/.test(f)), [], 'no built script is committed');
	assert.ok(!files.includes('sql/install/parts/16_number_timezones_data.sql'), 'the map is committed once, as data');
	for (const [a, b] of PAIRS) assert.ok(files.includes(path.relative(repo, changes(a, b))), `the change file of ${a}--${b}`);
	for (const v of RELEASES) assert.ok(files.includes(path.relative(repo, install(v))), `the released ${v} install script`);
});

test('make builds the update script from each release to the next, and this version\'s install script', () => {
	const r = spawnSync('make', ['-s', '-C', repo, 'update-scripts', `PG_CONFIG=${PG_CONFIG}`], { encoding: 'utf8' });
	assert.equal(r.status, 0, r.stderr + r.stdout);
	for (const [a, b] of PAIRS) {
		const f = path.join(repo, 'sql', 'install', `pg_dialer--${a}--${b}.sql`);
		assert.ok(fs.existsSync(f), `${path.relative(repo, f)} built`);
		const text = fs.readFileSync(f, 'utf8');
		assert.match(text, new RegExp(`update from ${a.replace(/\./g, '\\.')} to ${b.replace(/\./g, '\\.')}`));
		assert.match(text, new RegExp(`ALTER EXTENSION pg_dialer UPDATE TO '${b.replace(/\./g, '\\.')}'`));
	}
	assert.ok(fs.existsSync(path.join(repo, 'sql', 'install', `pg_dialer--${VERSION}.sql`)));
});

test('a changed table without its hand-written ALTER is refused, and no script is written', () => {
	const [a, b] = PAIRS[0];
	const hand = fs.readFileSync(changes(a, b), 'utf8').replace(/^-- @replace table dialer\.providers$/m, '-- @end');
	const f = path.join(dir, 'hand_missing.sql');
	fs.writeFileSync(f, hand);
	const r = draft(a, b, f);
	assert.notEqual(r.status, 0);
	assert.match(r.stderr, /MANUAL: table dialer\.providers changed/);
	assert.equal(r.out, null);
});

test('an object of the release that is gone needs a hand-written block that covers it', () => {
	// pretend the new version dropped dialer.stats(date): take it out of its install script
	const [a, b] = PAIRS[0];
	const text = fs.readFileSync(install(b), 'utf8');
	const start = text.indexOf('CREATE FUNCTION dialer.stats(');
	assert.ok(start > 0, 'dialer.stats is in the install script');
	const end = text.indexOf('\n$$;', start) + 4;
	const without = path.join(dir, `pg_dialer--${b}.sql`);
	fs.writeFileSync(without, text.slice(0, start) + text.slice(end));
	const r = draft(a, b, changes(a, b), without);
	assert.notEqual(r.status, 0);
	assert.match(r.stderr, /function dialer\.stats is gone .*@covers function dialer\.stats/);
});
