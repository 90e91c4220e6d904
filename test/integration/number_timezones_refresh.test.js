'use strict';
// README's command that regenerates libphonenumber's prefix -> time-zone data,
// `bash sql/install/data/refresh-number-timezones.sh`, run on a copy of the repository's
// tracked files: it downloads Debian's libphonenumber8-java (apt-get download, nothing
// installed), decodes the map and rewrites the data file, the map's one copy. From the package
// version the committed file names, it must write it again byte for byte; from another
// version, a file of the same shape. Then make builds the install script's part from it
// (sql/install/tools/number_timezones_part.sh), which must hold the same rows.
//
// By hand: node --test test/integration/number_timezones_refresh.test.js

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(__dirname, '..', '..');
const FILES = ['sql/install/data/number_timezones.txt'];

function copyTracked(dir) {
  const ls = spawnSync('git', ['-C', repo, 'ls-files', '-z'], { encoding: 'utf8' });
  assert.equal(ls.status, 0, ls.stderr);
  for (const f of ls.stdout.split('\0').filter(Boolean)) {
    const from = path.join(repo, f);
    if (!fs.existsSync(from)) continue;
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.copyFileSync(from, path.join(dir, f));
  }
}

test('refresh-number-timezones.sh regenerates the map, and make builds the install part from it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dialer_refresh_'));
  try {
    copyTracked(dir);
    const committed = Object.fromEntries(FILES.map((f) => [f, fs.readFileSync(path.join(repo, f), 'utf8')]));
    // the copy's file is made afresh, not kept
    fs.writeFileSync(path.join(dir, FILES[0]), '');
    const r = spawnSync('bash', ['sql/install/data/refresh-number-timezones.sh'], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const m = r.stdout.match(/number_timezones: (\d+) prefixes from libphonenumber8-java (\S+)/);
    assert.ok(m, r.stdout);
    assert.ok(Number(m[1]) > 3000, `${m[1]} prefixes`);
    const made = Object.fromEntries(FILES.map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));
    const map = made[FILES[0]];
    assert.match(map, new RegExp(`^# libphonenumber prefix -> time-zone map, from Debian libphonenumber8-java ${m[2].replace(/[.+]/g, '\\$&')}\n`));
    assert.match(map, /^1212\|America\/New_York$/m);
    assert.match(map, /^1808\|Pacific\/Honolulu$/m);
    const rows = map.split('\n').filter((l) => l && !l.startsWith('#'));
    assert.equal(rows.length, Number(m[1]));
    for (const l of rows) assert.match(l, /^[0-9]{1,15}\|[A-Za-z_\/+-]+(&[A-Za-z_\/+-]+)*$/, l);
    // the install script's part, as make builds it, carries the same rows
    const part = spawnSync('sh', ['sql/install/tools/number_timezones_part.sh', FILES[0]], { cwd: dir, encoding: 'utf8' });
    assert.equal(part.status, 0, part.stderr);
    const block = part.stdout.match(/-- BEGIN number_timezones data[^\n]*\n([\s\S]*?)-- END number_timezones data/);
    assert.ok(block, 'the install part has the data block');
    assert.ok(block[1].includes(rows.join('\n')), 'the install part holds the map\'s rows');
    assert.match(block[1], new RegExp(`libphonenumber8-java ${m[2].replace(/[.+]/g, '\\$&')}\\.`), 'and names its version');
    if (committed[FILES[0]].includes(`libphonenumber8-java ${m[2]}\n`)) {
      for (const f of FILES) assert.equal(made[f], committed[f], `${f} is written again as committed`);
    } else {
      console.log(`# Debian now has libphonenumber8-java ${m[2]}: the committed data is older (rerun the command)`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
