'use strict';
// README.md's sections from "## Dispatching" on are copies of doc/*.md made by
// doc/assemble-readme.py: this test fails when README.md is not what the sources make (an edit
// of README.md that a rerun would lose, or a doc/ edit without the rerun), and shows that the
// check notices a difference.
//
// By hand: node --test test/integration/readme_sources.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(__dirname, '..', '..');

function check(root) {
	return spawnSync('python3', [path.join(root, 'doc', 'assemble-readme.py'), '--check'], { encoding: 'utf8' });
}

test('README.md is what doc/assemble-readme.py makes of doc/*.md', () => {
	const r = check(repo);
	assert.equal(r.status, 0, r.stderr);
});

test('an edit of a copied section in README.md alone is noticed', () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_readme_'));
	try {
		fs.mkdirSync(path.join(dir, 'doc'));
		for (const f of fs.readdirSync(path.join(repo, 'doc'))) {
			if (f.endsWith('.md') || f.endsWith('.py')) fs.copyFileSync(path.join(repo, 'doc', f), path.join(dir, 'doc', f));
		}
		const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
		assert.match(readme, /\n## Compliance\n/);
		fs.writeFileSync(path.join(dir, 'README.md'), readme.replace('\n## Compliance\n', '\n## Compliance\n\nAn edit made here only.\n'));
		const r = check(dir);
		assert.notEqual(r.status, 0);
		assert.match(r.stderr, /differs from what doc\/\*\.md make/);
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
});
