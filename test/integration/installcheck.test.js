'use strict';
// README's Testing section shows `make installcheck`, the PGXS way of running the pg_regress
// tests against a running server that preloads pg_dialer.  This test runs that block of
// README.md as written, with its cluster directory and port replaced by a temporary directory
// and a free port (and the PostgreSQL tree by DIALER_PGBIN's), and checks that pg_regress
// passed every test and that the cluster is stopped again.
//
// By hand: DIALER_PGBIN=/usr/lib/postgresql/15/bin node --test test/integration/installcheck.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(__dirname, '..', '..');
const PGBIN = path.resolve(process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin');

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
		s.on('error', reject);
	});
}

// the sh block after the paragraph that introduces make installcheck
function readmeBlock() {
	const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
	const at = readme.indexOf('The pg_regress tests also run the PGXS way');
	assert.ok(at > 0, 'README introduces make installcheck');
	const m = readme.slice(at).match(/```sh\n([\s\S]*?)```/);
	assert.ok(m && /make installcheck/.test(m[1]), 'README shows the make installcheck commands');
	return m[1];
}

test('README\'s make installcheck block passes against a preloaded server', { timeout: 600000 }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_installcheck_'));
	fs.chmodSync(dir, 0o755);
	const port = await freePort();
	const script = readmeBlock()
		.replaceAll('/tmp/mycluster', path.join(dir, 'cluster'))
		.replaceAll('55432', String(port))
		.replaceAll('/usr/lib/postgresql/15/bin', PGBIN);
	const lines = script.split('\n').filter((l) => l.trim());
	const stop = lines.find((l) => /cluster\.sh stop/.test(l));
	try {
		let out = '';
		for (const line of lines) {
			const r = spawnSync('bash', ['-c', line], { cwd: repo, encoding: 'utf8', env: { ...process.env, PGBIN } });
			out += `$ ${line}\n${r.stdout}${r.stderr}`;
			assert.equal(r.status, 0, `"${line}" failed:\n${out.slice(-3000)}`);
		}
		assert.match(out, /All \d+ tests passed\./, out.slice(-2000));
		assert.ok(!fs.existsSync(path.join(dir, 'cluster', 'data', 'postmaster.pid')), 'the cluster is stopped again');
	} finally {
		if (stop) spawnSync('bash', ['-c', stop], { cwd: repo, env: { ...process.env, PGBIN } });
		fs.rmSync(dir, { recursive: true, force: true });
	}
});
