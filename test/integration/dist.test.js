'use strict';
// `make dist` and the release archives, as a maintainer makes them for a release: in a clone of
// the repository (the committed tree of HEAD), `make dist` writes pg_dialer-VERSION.zip (PGXN)
// and pg_dialer-VERSION.tar.gz, both holding exactly the files git tracks at HEAD under the
// prefix pg_dialer-VERSION/; the tarball, unpacked where there is no git, builds the Debian
// package with `make deb` (the pg_regress run at build time skipped: DEB_BUILD_OPTIONS=nocheck;
// debian_install.test.js builds it with them).
//
// By hand: node --test test/integration/dist.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(__dirname, '..', '..');
const EXTVERSION = /^EXTVERSION\s*=\s*(\S+)/m.exec(fs.readFileSync(path.join(repo, 'Makefile'), 'utf8'))[1];
const PREFIX = `pg_dialer-${EXTVERSION}/`;
const canBuildDeb = fs.existsSync('/usr/bin/dpkg-buildpackage') && fs.existsSync('/usr/bin/pg_buildext')
  && fs.existsSync('/usr/bin/dh');

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300000, ...opts });
  const out = `${r.stdout || ''}${r.stderr || ''}`;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed:\n${out.slice(-4000)}`);
  return out;
}

const lines = (s) => s.split('\n').filter((l) => l !== '').sort();

test('make dist writes the zip and the tarball of HEAD, and the tarball builds the Debian package', { timeout: 600000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_dist_'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const clone = path.join(dir, 'clone');
  run('git', ['clone', '-q', repo, clone]);
  const head = run('git', ['-C', clone, 'rev-parse', 'HEAD']).trim();
  assert.equal(head, run('git', ['-C', repo, 'rev-parse', 'HEAD']).trim());

  run('make', ['-C', clone, 'dist']);
  const tracked = lines(run('git', ['-C', clone, 'ls-tree', '-r', '--name-only', 'HEAD'])).map((f) => PREFIX + f).sort();
  const zip = path.join(clone, `pg_dialer-${EXTVERSION}.zip`);
  const tgz = path.join(clone, `pg_dialer-${EXTVERSION}.tar.gz`);
  const inTar = lines(run('tar', ['-tzf', tgz])).filter((f) => !f.endsWith('/'));
  assert.deepEqual(inTar, tracked, 'the tarball holds the files of HEAD');
  const inZip = lines(run('python3', ['-c', 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))', zip]))
    .filter((f) => !f.endsWith('/'));
  assert.deepEqual(inZip, tracked, 'the zip holds the files of HEAD');
  assert.ok(tracked.includes(`${PREFIX}debian/control`) && tracked.includes(`${PREFIX}debian/rules`), 'with debian/');

  if (!canBuildDeb) {
    t.skip('dpkg-buildpackage, pg_buildext or debhelper is missing (test/install-deps.sh installs them)');
    return;
  }
  // the tarball, where there is no git: make deb copies every file of it
  const unpacked = path.join(dir, 'unpacked');
  fs.mkdirSync(unpacked);
  run('tar', ['-xzf', tgz, '-C', unpacked]);
  const src = path.join(unpacked, PREFIX);
  assert.equal(fs.statSync(path.join(src, 'debian', 'rules')).mode & 0o111, 0o111, 'debian/rules is executable');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(PG|GIT_)/.test(k)));
  run('make', ['-C', src, 'deb'], { env: { ...env, DEB_BUILD_OPTIONS: 'nocheck', GIT_CEILING_DIRECTORIES: unpacked } });
  const deb = path.join(src, 'build', `postgresql-15-pg-dialer_${EXTVERSION}-1_amd64.deb`);
  assert.ok(fs.existsSync(deb), `make deb wrote ${deb}`);
  assert.match(run('dpkg-deb', ['-f', deb, 'Package', 'Version']),
    new RegExp(`^Package: postgresql-15-pg-dialer\\nVersion: ${EXTVERSION.replace(/\./g, '\\.')}-1$`, 'm'));
  const files = run('dpkg-deb', ['-c', deb]);
  assert.match(files, /\.\/usr\/lib\/postgresql\/15\/lib\/pg_dialer\.so$/m);
  assert.match(files, new RegExp(`\\./usr/share/postgresql/15/extension/pg_dialer--${EXTVERSION.replace(/\./g, '\\.')}\\.sql$`, 'm'));
});
