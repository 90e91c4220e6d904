'use strict';
// `BENCH_BASELINE=REF make bench` (bench/run.sh, bench/compare.js): W1 and W2 of two builds side
// by side in one run, as a developer runs it to show that a change keeps every figure, with
// small sizes. The baseline is a commit of 0.2.0's development (BASELINE below) whose SQL
// differs from the current one (it predates the per-recipient cap's rewrite); the test checks
//   - REF is built into a temporary relocated tree, and each cluster runs its own build: the
//     before cluster loads its library from that tree and has REF's SQL functions, the after
//     cluster loads DIALER_PGBIN's library and has exactly what a fresh CREATE EXTENSION of the
//     working tree's build has (the digest of every function's definition, taken in a database
//     of the suite's cluster), and the two digests differ;
//   - every run is printed for both builds (W1 and W2, fresh and warm, each repetition), the
//     build going first takes turns, no call reached the provider twice, and the ratio after /
//     before of each figure is printed with the floor and the yardstick line;
//   - both clusters are stopped and the temporary directory is gone at the end;
//   - a BENCH_BASELINE that names no commit is refused at once, saying so.
// When BASELINE is not in the clone's history (a shallow clone, a tarball), the comparison is
// skipped and says why.
//
// By hand: DIALER_PGBIN=... PGHOST=127.0.0.1 PGPORT=... PGUSER=postgres \
//            node --test test/integration/bench_compare.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const { Client } = require('pg');

const repo = path.resolve(__dirname, '..', '..');
const PGBIN = path.resolve(process.env.DIALER_PGBIN || '/usr/lib/postgresql/15/bin');
const BASELINE = '1619babdca16709b7ff239424a81b42ae3313602';
const REPEAT = 2;
const SIZES = { W1_CALLS: '300', W2_CALLS: '200', WARM_CALLS: '2000', BENCH_REPEAT: String(REPEAT) };

// the digest bench/compare.js prints: every function of the extension, by signature
const FUNCTIONS_MD5 = `
  SELECT md5(string_agg(pg_get_functiondef(p.oid), E'\\n' ORDER BY p.oid::regprocedure::text)) AS md5
    FROM pg_extension e
    JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'
    JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
   WHERE e.extname = 'pg_dialer' AND p.prokind <> 'a'`;

function benchEnv(extra) {
  const env = { ...process.env, DIALER_SKIP_DEPS: '1', DIALER_PGBIN: PGBIN, ...extra };
  delete env.MAKEFLAGS;
  return env;
}

// Runs `make bench` with env; resolves with its status and output. The postmaster of each
// cluster is recorded in DIALER_PID_FILE as soon as compare.js names it, so that run_all.sh
// stops it should this test be cut short.
function makeBench(env) {
  return new Promise((resolve, reject) => {
    const child = spawn('make', ['-C', repo, 'bench'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const seen = new Set();
    const take = (chunk) => {
      out += chunk;
      for (const m of out.matchAll(/postmaster (\d+)/g)) {
        if (!seen.has(m[1]) && process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${m[1]}\n`);
        seen.add(m[1]);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, out }));
  });
}

// whether a process runs (one that exited but is not reaped yet, a zombie, does not)
function running(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

// What a fresh CREATE EXTENSION of the installed (working tree's) build has, in a database of
// the suite's cluster made for it.
async function installedFunctionsMd5() {
  const admin = new Client({ database: 'postgres' });
  await admin.connect();
  const name = 'dialer_bench_compare_probe';
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.query(`CREATE DATABASE ${name}`);
    const c = new Client({ database: name });
    await c.connect();
    try {
      await c.query('CREATE EXTENSION pg_dialer');
      return (await c.query(FUNCTIONS_MD5)).rows[0].md5;
    } finally {
      await c.end();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name}`).catch(() => {});
    await admin.end();
  }
}

test('BENCH_BASELINE naming no commit is refused before anything is built or started', { timeout: 120000 }, () => {
  const r = spawnSync('make', ['-C', repo, 'bench'], { env: benchEnv({ BENCH_BASELINE: 'no-such-ref-of-pg-dialer' }), encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /bench: BENCH_BASELINE=no-such-ref-of-pg-dialer names no commit of this repository/);
  assert.doesNotMatch(r.stdout + r.stderr, /==|postmaster/, 'nothing ran');
});

test('BENCH_BASELINE=REF make bench: both builds side by side, each cluster on its own build', { timeout: 900000 }, async (t) => {
  try {
    execFileSync('git', ['-C', repo, 'cat-file', '-e', `${BASELINE}^{commit}`], { stdio: 'ignore' });
  } catch {
    t.skip(`commit ${BASELINE} is not in the history of ${repo} (a shallow clone or a tarball?)`);
    return;
  }
  const { status, out } = await makeBench(benchEnv({ BENCH_BASELINE: BASELINE, ...SIZES }));
  assert.equal(status, 0, `make bench failed:\n${out.slice(-6000)}`);

  // each cluster on its own build
  const ident = (name) => {
    const m = new RegExp(`^${name}: (.*)\\n  extension pg_dialer (\\S+) \\((\\d+) objects, functions md5 ([0-9a-f]{12})\\); `
      + 'library (\\S+) \\(md5 [0-9a-f]{12}; shared_preload_libraries = \'[^\']*pg_dialer[^\']*\'\\); '
      + 'cluster (\\S+) on port (\\d+), postmaster (\\d+)$', 'm').exec(out);
    assert.ok(m, `the ${name} build is described:\n${out.slice(0, 3000)}`);
    return { label: m[1], version: m[2], md5: m[4], lib: m[5], dir: m[6], pid: Number(m[8]) };
  };
  const before = ident('before');
  const after = ident('after');
  const top = /^bench: built \S+ into (\/\S+)\/tree in \d+ s$/m.exec(out);
  assert.ok(top, 'the baseline was built into a temporary tree');
  assert.match(before.label, new RegExp(`^BENCH_BASELINE=${BASELINE}: ${BASELINE.slice(0, 7)}`));
  assert.equal(before.lib, path.join(top[1], 'tree', 'usr', 'lib', 'postgresql', '15', 'lib', 'pg_dialer.so'));
  const pkglibdir = execFileSync(path.join(PGBIN, 'pg_config'), ['--pkglibdir']).toString().trim();
  assert.equal(after.lib, path.join(pkglibdir, 'pg_dialer.so'));
  assert.equal(after.md5, (await installedFunctionsMd5()).slice(0, 12), 'the after cluster has the working tree\'s SQL');
  assert.notEqual(before.md5, after.md5, 'the before cluster has the baseline\'s SQL, not the working tree\'s');
  assert.notEqual(before.dir, after.dir);

  // every run of both builds, the first build taking turns
  for (let rep = 1; rep <= REPEAT; rep++) {
    for (const w of ['W1', 'W2']) {
      for (const state of ['fresh', 'warm']) {
        const at = (b) => out.search(new RegExp(`^${w} ${state} #${rep} ${b} +: [\\d,]+ calls/s end to end .*; duplicates 0(;|$)`, 'm'));
        const [b, a] = [at('before'), at('after')];
        assert.ok(b >= 0 && a >= 0, `${w} ${state} #${rep} of both builds, no duplicates`);
        assert.equal(b < a, rep % 2 === 1, `${w} ${state} #${rep}: ${rep % 2 ? 'before' : 'after'} goes first`);
      }
      assert.match(out, new RegExp(`^${w} floor #${rep}: [\\d,]+ requests/s`, 'm'));
    }
  }
  for (const w of ['W1', 'W2']) {
    assert.match(out, new RegExp(`^floor ${w} \\(medians of ${REPEAT} runs`, 'm'));
    for (const state of ['fresh', 'warm']) {
      assert.match(out, new RegExp(`^after / before ${w} ${state} \\(medians of ${REPEAT} runs\\): \\d+\\.\\d{3} x calls/s end to end `
        + '\\(before [\\d,]+, after [\\d,]+ calls/s\\) (kept|LOWER by more than 5%) \\(>= 0.95\\); '
        + 'the two runs of each repetition: median \\d+\\.\\d{3} \\([\\d.]+, [\\d.]+\\); '
        + '/ floor [\\d.]+ before, [\\d.]+ after; CPU/call [\\d.]+ before, [\\d.]+ after ms', 'm'));
    }
  }
  assert.match(out, new RegExp(`^yardstick \\(W1 and W2, fresh and warm, medians of ${REPEAT} runs: after / before >= 0.95 in calls/s\\): `
    + '(met|NOT met by (W[12] (fresh|warm) \\d\\.\\d{3}(, |$))+)$', 'm'));

  // nothing left behind
  assert.match(out, new RegExp(`^bench: stopped both clusters and removed ${top[1]}$`, 'm'));
  assert.equal(fs.existsSync(top[1]), false, `${top[1]} is removed`);
  assert.equal(running(before.pid), false, 'the before cluster is stopped');
  assert.equal(running(after.pid), false, 'the after cluster is stopped');
});
