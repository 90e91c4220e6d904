'use strict';
// pg_upgrade of a cluster where pg_dialer is preloaded and a call is due: the servers
// pg_upgrade starts (in binary-upgrade mode, with the clusters' shared_preload_libraries) run
// no launcher and no dispatcher (_PG_init's IsBinaryUpgrade guard, src/pg_dialer.c), so
// nothing is dialled and no worker holds a database while pg_upgrade dumps and restores;
// the upgraded cluster's first normal start dispatches the call, once.
//
// Servers: DIALER_PGBIN's binaries (as the postgres user when run as root), free ports of
// 127.0.0.1, postmaster PIDs appended to DIALER_PID_FILE, stopped at the end.
//
// By hand: DIALER_PGBIN=/usr/lib/postgresql/15/bin node --test test/integration/pg_upgrade.test.js

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const net = require('node:net');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Client } = require('pg');
const d = require('../lib/dialer');

const PGBIN = process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin';
const AS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
const DB = 'dialer_upg';

/** Runs a PostgreSQL program (as postgres when root) in cwd; returns { status, out }. */
function run(program, args, cwd) {
	const bin = path.join(PGBIN, program);
	const r = AS_ROOT
		? spawnSync('runuser', ['-u', 'postgres', '--', bin, ...args], { encoding: 'utf8', timeout: 300000, cwd })
		: spawnSync(bin, args, { encoding: 'utf8', timeout: 300000, cwd });
	return { status: r.status, out: `${r.stdout || ''}${r.stderr || ''}` };
}

function pg(program, args, cwd) {
	const r = run(program, args, cwd);
	if (r.status !== 0) throw new Error(`${program} ${args.join(' ')}: exit ${r.status} ${r.out}`);
	return r.out;
}

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

function ownDir(dir) {
	fs.mkdirSync(dir, { recursive: true });
	if (AS_ROOT && spawnSync('chown', ['postgres:postgres', dir]).status !== 0) throw new Error(`chown ${dir}`);
}

/** Every file under dir (recursively) whose name ends in .log, concatenated. */
function logsUnder(dir) {
	let text = '';
	for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, e.name);
		if (e.isDirectory()) text += logsUnder(p);
		else if (e.name.endsWith('.log')) text += fs.readFileSync(p, 'utf8');
	}
	return text;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer-pg_upgrade-'));
const started = [];
let sim;

function conf(data, port, sockdir, enabled) {
	fs.appendFileSync(path.join(data, 'postgresql.conf'), `
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${sockdir}'
shared_preload_libraries = 'pg_dialer'
dialer.database = '${DB}'
dialer.enabled = ${enabled ? 'on' : 'off'}
dialer.call_window_start = '00:00'
dialer.call_window_end = '24:00'
fsync = off
logging_collector = off
log_line_prefix = '%m [%p] %b '
`);
}

function start(data, logFile) {
	pg('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', 'start']);
	const pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
	started.push(data);
	if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${pid}\n`);
}

function stop(data) {
	if (fs.existsSync(path.join(data, 'postmaster.pid'))) run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
}

async function connect(port) {
	const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database: DB });
	c.on('error', () => {});
	await c.connect();
	return c;
}

after(async () => {
	for (const data of started) stop(data);
	if (sim) await sim.close();
	if (!process.env.DIALER_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('pg_upgrade runs no pg_dialer worker: a due call is not dialled during the upgrade, and is dialled once after it', { timeout: 300000 }, async () => {
	ownDir(dir);
	const oldData = path.join(dir, 'old');
	const newData = path.join(dir, 'new');
	const work = path.join(dir, 'work');
	ownDir(work);
	const oldPort = await freePort();
	let newPort = await freePort();
	while (newPort === oldPort) newPort = await freePort();
	sim = await d.startSim('twilio');

	// the old cluster, with the extension and a due call, dispatching off while it is set up
	pg('initdb', ['-D', oldData, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8']);
	conf(oldData, oldPort, work, false);
	start(oldData, path.join(dir, 'old.log'));
	pg('createdb', ['-h', '127.0.0.1', '-p', String(oldPort), '-U', 'postgres', DB]);
	const db = await connect(oldPort);
	await db.query('CREATE EXTENSION pg_dialer');
	await d.createProvider(db, d.twilioProvider('upg', sim));
	const id = await d.enqueue(db, '+15550101234', { provider: 'upg', payload: { message: 'hello' } });
	await db.end();
	stop(oldData);
	// from now on a dispatcher of either cluster would send the call at once
	fs.appendFileSync(path.join(oldData, 'postgresql.conf'), '\ndialer.enabled = on\n');

	pg('initdb', ['-D', newData, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8']);
	conf(newData, newPort, work, true);

	const up = run('pg_upgrade', ['-b', PGBIN, '-B', PGBIN, '-d', oldData, '-D', newData,
		'-p', String(oldPort), '-P', String(newPort), '-s', work, '-U', 'postgres', '--retain'], work);
	const logs = fs.existsSync(path.join(newData, 'pg_upgrade_output.d')) ? logsUnder(path.join(newData, 'pg_upgrade_output.d')) : '';
	assert.equal(up.status, 0, `pg_upgrade failed:\n${up.out}\n${logs.slice(-4000)}`);
	assert.match(logs, /database system is ready to accept connections/, 'the servers pg_upgrade started logged to its logs');
	assert.doesNotMatch(logs, /pg_dialer (launcher|dispatcher)/, 'a pg_dialer worker ran under pg_upgrade');
	assert.equal(sim.control.requests(1000).length, 0, 'a call was dialled during pg_upgrade');

	// the upgraded cluster's first normal start: the launcher and a dispatcher, the call sent once
	start(newData, path.join(dir, 'new.log'));
	const ndb = await connect(newPort);
	try {
		await d.waitForStatus(ndb, [id], ['dialing'], { timeoutMs: 30000 });
		assert.equal(sim.control.requests(1000).length, 1, 'the call was dialled once after the upgrade');
	} finally {
		await ndb.end();
	}
});
