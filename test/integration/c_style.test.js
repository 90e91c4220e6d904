'use strict';
// The C style of src/, checked by test/lib/c_style.sh (see its opening comment for exactly
// what each check enforces): pgindent's formatting (pg_bsd_indent with pgindent's options
// and a typedef list from the objects' debug information), the file layout (tabs, no
// trailing whitespace, a banner naming the file with the copyright line), one header per
// module with libcurl private to http.c, and a build with -Wall -Wextra that warns about
// nothing in src/.  The last test proves the checks catch a bad file, on a copy of src/.
//
// By hand: node --test test/integration/c_style.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(__dirname, '..', '..');
const script = path.join(repo, 'test', 'lib', 'c_style.sh');

function check(names, env = {}) {
	const r = spawnSync('bash', [script, ...names], {
		encoding: 'utf8',
		env: { ...process.env, ...env },
		timeout: 300000,
	});
	return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

for (const name of ['indent', 'layout', 'headers', 'warnings']) {
	test(`src/ passes the ${name} check`, () => {
		const r = check([name]);
		assert.equal(r.status, 0, r.out);
		assert.match(r.out, new RegExp(`c_style: ${name}: clean`));
	});
}

test('the checks catch a mis-indented line, a missing copyright, a header of no file and curl outside http.c', () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_c_style_'));
	try {
		fs.cpSync(path.join(repo, 'src'), path.join(dir, 'src'), { recursive: true });
		const planner = path.join(dir, 'src', 'planner.c');
		fs.writeFileSync(planner, fs.readFileSync(planner, 'utf8')
			.replace('Copyright (c) 2026, pg_dialer developers', 'no copyright')
			.replace(/^\treturn /m, '        return '));
		fs.writeFileSync(path.join(dir, 'src', 'dispatch.h'),
			'/*\n * dispatch.h\n */\n#include <curl/curl.h>\n');
		const r = check(['indent', 'layout', 'headers'], { DIALER_C_STYLE_DIR: dir });
		assert.notEqual(r.status, 0, r.out);
		assert.match(r.out, /src\/planner\.c is not as pgindent would leave it/);
		assert.match(r.out, /src\/planner\.c has lines indented with spaces/);
		assert.match(r.out, /src\/planner\.c: the banner has no line 'Copyright/);
		assert.match(r.out, /src\/dispatch\.h is the header of no file/);
		assert.match(r.out, /libcurl is used outside src\/http\.c/);
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
});
