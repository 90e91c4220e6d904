'use strict';
// The admin API (schema dialer_admin) through the shipped deployment: deploy/admin_roles.sql,
// PostgREST 12 with deploy/postgrest-admin.conf and nginx with
// deploy/nginx/pg_dialer_admin.conf.template, on the dispatcher's database, with HS256 JWTs
// signed here (node's crypto).  For each role (viewer, operator, frontend) what it may do works
// and what it may not is refused with an HTTP error and writes nothing; the frontend's rate
// limit (one call per caller per purpose interval) holds under concurrent hostile requests;
// the OpenAPI description reads from the comments; tokens made by deploy/admin-token.sh (the
// tool README and the dashboard name) are accepted for what their role may do, refused once
// expired, and the tool refuses with a reason what would make a useless token; and the curl
// examples of README (section "Admin API") are run as written.
//
// Run by test/run_all.sh (DIALER_ONLY=admin_api).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');
const d = require('../lib/dialer');
const { startAdminStack, signJwt } = require('../lib/admin_stack');

const P = 'adm_';
const TW = `${P}tw`;          // twilio simulator, enabled
const HOLD = `${P}hold`;      // disabled: its calls stay scheduled
const DEAD = `${P}dead`;      // a port nobody listens on: its calls fail
const LIMITED = `${P}limited`; // max_concurrency 1
const CAMPAIGN = `${P}renewals`;
const PURPOSE = `${P}qualification`;
const DNC = '+15550177009';

let db; let settings; let sim; let stack;
let operator; let viewer; let frontend;

async function call(method, url, tok, body, headers = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (tok) h.Authorization = `Bearer ${tok}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const r = await fetch(stack.api + url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json; try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text };
}

/* a snapshot of everything a refused request could have written */
async function snapshot() {
  const r = await db.query(`
    SELECT (SELECT count(*) FROM dialer.scheduled_calls) AS calls,
           (SELECT count(*) FROM dialer.call_events) AS events,
           (SELECT coalesce(string_agg(name || ':' || enabled, ',' ORDER BY name), '') FROM dialer.providers WHERE name LIKE 'adm\\_%') AS providers,
           (SELECT coalesce(string_agg(name || ':' || enabled, ',' ORDER BY name), '') FROM dialer.campaigns WHERE name LIKE 'adm\\_%') AS campaigns,
           (SELECT coalesce(string_agg(id || ':' || status, ',' ORDER BY id), '') FROM dialer.scheduled_calls WHERE provider LIKE 'adm\\_%') AS mine`);
  return r.rows[0];
}

test.before(async () => {
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  sim = await d.startSim('twilio');
  await db.query(`DELETE FROM dialer.frontend_purposes WHERE name LIKE 'adm\\_%'`);
  await db.query(`DELETE FROM dialer.campaigns WHERE name LIKE 'adm\\_%'`);
  await d.createProvider(db, d.twilioProvider(TW, sim, { twiml_url: 'https://example.com/twiml' }));
  await d.createProvider(db, d.twilioProvider(HOLD, sim, { twiml_url: 'https://example.com/twiml', enabled: false }));
  await d.createProvider(db, d.twilioProvider(DEAD, sim, { base_url: 'http://127.0.0.1:1', twiml_url: 'https://example.com/twiml' }));
  await db.query(`INSERT INTO dialer.do_not_call (number, reason) VALUES ($1, 'asked not to be called')
                  ON CONFLICT (number) DO UPDATE SET reason = excluded.reason`, [DNC]);
  await db.query(`CREATE TABLE IF NOT EXISTS public.adm_customers (customer_ref text, phone text)`);
  await db.query(`TRUNCATE public.adm_customers`);
  await db.query(`INSERT INTO public.adm_customers VALUES ('ann', '+15550177001'), ('bob', $1), ('cid', '12345')`, [DNC]);
  await db.query(`INSERT INTO dialer.campaigns (name, description, source, provider, max_calls_per_day)
                  VALUES ($1, 'Renewal reminders', 'public.adm_customers', $2, 10)`, [CAMPAIGN, HOLD]);
  await db.query(`INSERT INTO dialer.frontend_purposes (name, provider, payload, min_interval)
                  VALUES ($1, $2, '{"message": "Hello, this is your qualification call"}', '1 hour')`, [PURPOSE, HOLD]);
  stack = await startAdminStack();
  operator = stack.token('dialer_operator', { sub: 'ops@example.com' });
  viewer = stack.token('dialer_viewer', { sub: 'viewer@example.com' });
  frontend = (sub, extra = {}) => stack.token('dialer_frontend', { sub, purpose: PURPOSE, ...extra });
});

test.after(async () => {
  if (stack) await stack.stop();
  if (db) {
    await db.query(`DELETE FROM dialer.frontend_purposes WHERE name LIKE 'adm\\_%'`).catch(() => {});
    await db.query(`DELETE FROM dialer.campaigns WHERE name LIKE 'adm\\_%'`).catch(() => {});
    await d.dropProviders(db, [TW, HOLD, DEAD, LIMITED]).catch(() => {});
    await db.query(`DELETE FROM dialer.do_not_call WHERE number = $1`, [DNC]).catch(() => {});
    await db.query(`DROP TABLE IF EXISTS public.adm_customers`).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end();
  }
  if (sim) await sim.close();
});

test('no token, a forged token, an expired token or an unknown role: 401, nothing served', async () => {
  const before = await snapshot();
  let r = await call('GET', '/calls', null);
  assert.equal(r.status, 401, r.text);
  const forged = signJwt({ role: 'dialer_operator', exp: Math.floor(Date.now() / 1000) + 60 }, 'not-the-secret-not-the-secret-xx');
  r = await call('POST', '/rpc/enqueue_call', forged, { to_number: '+15550177100', provider: HOLD });
  assert.equal(r.status, 401, r.text);
  r = await call('POST', '/rpc/enqueue_call', stack.token('dialer_operator', {}, -60), { to_number: '+15550177100', provider: HOLD });
  assert.equal(r.status, 401, r.text);
  assert.match(r.json.message, /expired/i);
  r = await call('POST', '/rpc/enqueue_call', stack.token('postgres'), { to_number: '+15550177100', provider: HOLD });
  assert.ok([401, 403].includes(r.status), `role postgres: ${r.status} ${r.text}`);
  assert.deepEqual(await snapshot(), before, 'nothing written');
});

test('operator: enqueue, list and filter, one call with its timeline, cancel (409 the second time)', async () => {
  const r = await call('POST', '/rpc/enqueue_call', operator,
    { to_number: '+15550177101', provider: HOLD, campaign: `${P}adhoc`, payload: { message: 'Hi' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'scheduled');
  const id = r.json.id;
  const today = (await db.query(`SELECT current_date::text AS d`)).rows[0].d;
  const list = await call('GET', `/calls?status=eq.scheduled&campaign=eq.${P}adhoc&provider=eq.${HOLD}&day=eq.${today}&to_number=eq.${encodeURIComponent('+15550177101')}`, viewer);
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(list.json.map((c) => c.id), [id]);
  const one = await call('GET', `/rpc/call?id=${id}`, viewer);
  assert.equal(one.status, 200, one.text);
  assert.equal(one.json.call.id, id);
  assert.deepEqual(one.json.events.map((e) => e.event), ['enqueued']);
  const c1 = await call('POST', '/rpc/cancel_call', operator, { id });
  assert.equal(c1.status, 200, c1.text);
  assert.deepEqual(c1.json, { id, status: 'canceled' });
  const before = await snapshot();
  const c2 = await call('POST', '/rpc/cancel_call', operator, { id });
  assert.equal(c2.status, 409, c2.text);
  assert.match(c2.json.message, /is canceled: only a scheduled call can be canceled/);
  assert.ok(c2.json.hint);
  const missing = await call('POST', '/rpc/cancel_call', operator, { id: 9007199254 });
  assert.equal(missing.status, 404, missing.text);
  assert.match(missing.json.message, /does not exist/);
  const bad = await call('POST', '/rpc/enqueue_call', operator, { to_number: '555-0123', provider: HOLD });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.json.message, /invalid to_number/);
  assert.ok(bad.json.details && bad.json.hint);
  assert.deepEqual(await snapshot(), before, 'refusals wrote nothing');
});

test('operator: a failed call is retried; retrying a scheduled one is 409', async () => {
  const id = await d.enqueue(db, '+15550177102', { provider: DEAD, max_attempts: 1 });
  await d.waitForStatus(db, [id], ['failed'], { timeoutMs: 20000 });
  const r = await call('POST', '/rpc/retry_call', operator, { id });
  assert.equal(r.status, 200, r.text);
  const ev = await d.events(db, id);
  assert.ok(ev.some((e) => e.event === 'requeued'), 'requeued event');
  await d.waitForStatus(db, [id], ['failed'], { timeoutMs: 20000 });
  const held = await d.enqueue(db, '+15550177103', { provider: HOLD });
  const before = await snapshot();
  const r2 = await call('POST', '/rpc/retry_call', operator, { id: held });
  assert.equal(r2.status, 409, r2.text);
  assert.match(r2.json.message, /is scheduled: only a failed, unknown or expired call can be retried/);
  assert.deepEqual(await snapshot(), before);
});

test('campaigns: rules and next run, candidates with reasons, run now, pause and resume', async () => {
  const k = await call('GET', `/campaigns?name=eq.${CAMPAIGN}`, viewer);
  assert.equal(k.status, 200, k.text);
  assert.equal(k.json[0].rules.max_calls_per_day, 10);
  assert.equal(k.json[0].enabled, true);
  const cand = await call('GET', `/rpc/pending_customers?campaign=${CAMPAIGN}`, viewer);
  assert.equal(cand.status, 200, cand.text);
  const by = Object.fromEntries(cand.json.map((c) => [c.customer_ref, c]));
  assert.equal(by.ann.included, true);
  assert.equal(by.bob.included, false);
  assert.equal(by.bob.reason, 'do_not_call');
  assert.match(by.bob.detail, /do-not-call list.*asked not to be called/);
  assert.equal(by.cid.reason, 'invalid_phone');
  const nope = await call('GET', '/rpc/pending_customers?campaign=adm_nope', viewer);
  assert.equal(nope.status, 404, nope.text);

  const pause = await call('POST', '/rpc/set_campaign_enabled', operator, { campaign: CAMPAIGN, enabled: false });
  assert.equal(pause.status, 200, pause.text);
  assert.equal((await call('GET', `/campaigns?name=eq.${CAMPAIGN}`, viewer)).json[0].enabled, false);
  const run0 = await call('POST', '/rpc/run_campaign', operator, { campaign: CAMPAIGN });
  assert.deepEqual(run0.json, { campaign: CAMPAIGN, enqueued: 0 }, 'a paused campaign enqueues nothing');
  await call('POST', '/rpc/set_campaign_enabled', operator, { campaign: CAMPAIGN, enabled: true });
  const run = await call('POST', '/rpc/run_campaign', operator, { campaign: CAMPAIGN });
  assert.equal(run.status, 200, run.text);
  assert.deepEqual(run.json, { campaign: CAMPAIGN, enqueued: 1 });
  const mine = await db.query(`SELECT customer_ref FROM dialer.scheduled_calls WHERE campaign = $1`, [CAMPAIGN]);
  assert.deepEqual(mine.rows.map((x) => x.customer_ref), ['ann']);
});

test('providers: health, pause and resume', async () => {
  const h = await call('GET', `/provider_health?name=in.(${TW},${HOLD},${DEAD})&order=name`, viewer);
  assert.equal(h.status, 200, h.text);
  assert.deepEqual(h.json.map((p) => [p.name, p.enabled]), [[DEAD, true], [HOLD, false], [TW, true]]);
  assert.ok(h.json[0].errors_last_hour >= 1, 'the dead provider has errors');
  assert.ok(h.json[1].due >= 1, 'the held provider has calls due');
  const r = await call('POST', '/rpc/set_provider_enabled', operator, { provider: TW, enabled: false });
  assert.equal(r.status, 200, r.text);
  assert.equal((await db.query('SELECT enabled FROM dialer.providers WHERE name = $1', [TW])).rows[0].enabled, false);
  await call('POST', '/rpc/set_provider_enabled', operator, { provider: TW, enabled: true });
  assert.equal((await db.query('SELECT enabled FROM dialer.providers WHERE name = $1', [TW])).rows[0].enabled, true);
  const nope = await call('POST', '/rpc/set_provider_enabled', operator, { provider: 'adm_nope', enabled: false });
  assert.equal(nope.status, 404, nope.text);
});

test('providers: a provider at its max_concurrency says so, and until when at the latest its calls wait', async () => {
  // the Twilio simulator sends no callbacks here: the first call stays dialing and holds the one slot
  await d.createProvider(db, d.twilioProvider(LIMITED, sim, { twiml_url: 'https://example.com/twiml', max_concurrency: 1 }));
  const first = await d.enqueue(db, '+15550177120', { provider: LIMITED });
  const [dialing] = await d.waitForStatus(db, [first], ['dialing'], { timeoutMs: 20000 });
  const second = await d.enqueue(db, '+15550177121', { provider: LIMITED });
  await d.sleep(1500);
  assert.equal((await d.calls(db, [second]))[0].status, 'scheduled', 'the second call waits for the slot');
  const r = await call('GET', `/provider_health?name=eq.${LIMITED}`, viewer);
  assert.equal(r.status, 200, r.text);
  const [p] = r.json;
  assert.deepEqual([p.max_concurrency, p.in_progress, p.counted_in_progress, p.at_limit, p.due], [1, 1, 1, true, 1]);
  const reconcileAfter = (await db.query(`SELECT extract(epoch FROM current_setting('dialer.reconcile_after')::interval) AS s`)).rows[0].s;
  assert.equal(new Date(p.slot_frees_by).getTime(), dialing.updated_at.getTime() + Number(reconcileAfter) * 1000,
    'the slot frees by itself reconcile_after after the call\'s last news');
  const others = await call('GET', `/provider_health?name=eq.${TW}`, viewer);
  assert.equal(others.json[0].at_limit, false, 'a provider without a limit is never at it');
  await d.dropProviders(db, [LIMITED]);
});

test('one call: its recipient\'s time zone, the call\'s own, else its campaign\'s, else what the number implies, else dialer.default_timezone', async () => {
  await db.query(`UPDATE dialer.campaigns SET timezone = 'America/Denver' WHERE name = $1`, [CAMPAIGN]);
  const cases = [
    [{ timezone: 'Europe/Paris', campaign: CAMPAIGN }, { zones: ['Europe/Paris'], source: 'call' }],
    [{ campaign: CAMPAIGN }, { zones: ['America/Denver'], source: 'campaign' }],
    [{}, { zones: ['Australia/Brisbane'], source: 'number' }],
    [{ to: '+99955501234' }, { zones: [(await db.query(`SELECT current_setting('dialer.default_timezone') AS z`)).rows[0].z],
      source: 'default' }],
  ];
  for (const [{ to = '+61733330000', ...opts }, want] of cases) {
    const id = await d.enqueue(db, to, { provider: HOLD, ...opts });
    const r = await call('GET', `/rpc/call?id=${id}`, viewer);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.timezone, want, JSON.stringify(opts));
    assert.equal(r.json.call.id, id);
  }
  await db.query(`UPDATE dialer.campaigns SET timezone = NULL WHERE name = $1`, [CAMPAIGN]);
});

test('viewer: reads, and every write is refused (403) with nothing written', async () => {
  for (const u of ['/calls?limit=1', '/campaigns', '/provider_health', '/rpc/stats', `/rpc/stats?day=2026-01-01`]) {
    const r = await call('GET', u, viewer);
    assert.equal(r.status, 200, `${u}: ${r.text}`);
  }
  const held = await d.enqueue(db, '+15550177104', { provider: HOLD });
  const before = await snapshot();
  const writes = [
    ['/rpc/enqueue_call', { to_number: '+15550177105', provider: HOLD }],
    ['/rpc/cancel_call', { id: held }],
    ['/rpc/retry_call', { id: held }],
    ['/rpc/run_campaign', { campaign: CAMPAIGN }],
    ['/rpc/set_campaign_enabled', { campaign: CAMPAIGN, enabled: false }],
    ['/rpc/set_provider_enabled', { provider: HOLD, enabled: true }],
    ['/rpc/cleanup', { older_than: '0 seconds' }],
    ['/rpc/frontend_enqueue', { to_number: '+15550177105' }],
  ];
  for (const [u, body] of writes) {
    const r = await call('POST', u, viewer, body);
    assert.equal(r.status, 403, `${u}: ${r.text}`);
    assert.match(r.json.message, /permission denied/);
  }
  // the tables themselves are not reachable through this API
  const t = await call('GET', '/scheduled_calls', operator);
  assert.equal(t.status, 404, t.text);
  assert.deepEqual(await snapshot(), before, 'nothing written');
});

test('frontend: enqueue only, its purpose only, one call per caller per hour under concurrent hostile requests', async () => {
  const before = await snapshot();
  // what it may not do
  for (const [m, u, body] of [['GET', '/calls', undefined], ['GET', '/rpc/stats', undefined],
    ['POST', '/rpc/enqueue_call', { to_number: '+15550177106', provider: TW }],
    ['POST', '/rpc/cancel_call', { id: 1 }]]) {
    const r = await call(m, u, frontend('u-0'), body);
    assert.equal(r.status, 403, `${u}: ${r.text}`);
  }
  let r = await call('POST', '/rpc/frontend_enqueue', stack.token('dialer_frontend', { purpose: PURPOSE }), { to_number: '+15550177106' });
  assert.equal(r.status, 403, r.text);
  assert.match(r.json.message, /names no caller/);
  r = await call('POST', '/rpc/frontend_enqueue', frontend('u-0', { purpose: 'adm_other' }), { to_number: '+15550177106' });
  assert.equal(r.status, 403, r.text);
  assert.match(r.json.message, /not open to frontends/);
  // a body naming someone else or choosing a provider is not a call of this function
  r = await call('POST', '/rpc/frontend_enqueue', frontend('u-0'), { to_number: '+15550177106', user_id: 'u-9', provider: TW });
  assert.ok(r.status >= 400 && r.status < 500, r.text);
  assert.deepEqual(await snapshot(), before, 'nothing written by refusals');

  // 30 requests at once for one user, with different numbers and query strings
  const many = await Promise.all(Array.from({ length: 30 }, (_, i) =>
    call('POST', `/rpc/frontend_enqueue${i % 3 ? '' : '?sub=u-other'}`, frontend('u-1'), { to_number: `+155501772${String(i).padStart(2, '0')}` },
      i % 2 ? { Prefer: 'tx=commit' } : {})));
  const ok = many.filter((x) => x.status === 200);
  const limited = many.filter((x) => x.status === 429);
  assert.equal(ok.length, 1, `exactly one accepted: ${many.map((x) => x.status).join(',')}`);
  assert.equal(ok.length + limited.length + many.filter((x) => x.status === 400).length, 30,
    many.filter((x) => ![200, 429, 400].includes(x.status)).map((x) => x.text).join('\n'));
  assert.ok(ok.length + limited.length >= 20, 'the others are rate limited (or refused for their query string)');
  assert.match(limited[0].json.message, /already asked/);
  assert.match(limited[0].json.hint, /Try again after/);
  const stored = await db.query(`SELECT id, customer_ref, provider, payload FROM dialer.scheduled_calls WHERE campaign = $1 AND customer_ref = 'u-1'`, [PURPOSE]);
  assert.equal(stored.rows.length, 1, 'one call stored for the user');
  assert.equal(Number(stored.rows[0].id), ok[0].json.id);
  assert.equal(stored.rows[0].provider, HOLD, 'the purpose decides the provider');
  assert.equal(stored.rows[0].payload.caller, 'u-1');
  // another user is not limited by the first
  r = await call('POST', '/rpc/frontend_enqueue', frontend('u-2'), { to_number: '+15550177300' });
  assert.equal(r.status, 200, r.text);
  // an hour later the first user may ask again
  await db.query(`UPDATE dialer.scheduled_calls SET created_at = created_at - interval '61 minutes' WHERE campaign = $1 AND customer_ref = 'u-1'`, [PURPOSE]);
  r = await call('POST', '/rpc/frontend_enqueue', frontend('u-1'), { to_number: '+15550177301' });
  assert.equal(r.status, 200, r.text);
});

test('cleanup: removes what finished longer ago than older_than', async () => {
  const id = await d.enqueue(db, '+15550177107', { provider: HOLD });
  await db.query(`SELECT dialer.cancel_call($1)`, [id]);
  await db.query(`UPDATE dialer.scheduled_calls SET finished_at = now() - interval '3 years' WHERE id = $1`, [id]);
  const r = await call('POST', '/rpc/cleanup', operator, { older_than: '2 years' });
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.removed >= 1);
  assert.equal((await d.calls(db, [id])).length, 0);
});

test('OpenAPI at /: what the role may use, described by the comments', async () => {
  const op = await call('GET', '/', operator);
  assert.equal(op.status, 200, op.text);
  assert.match(op.json.info.title, /pg_dialer admin API/);
  assert.match(op.json.paths['/rpc/cancel_call'].post.summary + (op.json.paths['/rpc/cancel_call'].post.description || ''), /Cancels a scheduled call/);
  assert.ok(op.json.definitions.calls.properties.status.description.length > 10);
  const vw = await call('GET', '/', viewer);
  assert.equal(vw.status, 200, vw.text);
  assert.ok(vw.json.paths['/rpc/stats'], 'viewer sees stats');
  assert.equal(vw.json.paths['/rpc/cancel_call'], undefined, 'viewer does not see cancel_call');
});

/* the claims of a JWT (not verified: PostgREST does that) */
function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

test('deploy/admin-token.sh: a viewer token reads, an operator token cancels, a frontend token enqueues, an expired token is refused', async () => {
  const viewerTok = stack.mint(['dialer_viewer', '--sub', 'ann@example.com', '--expires', '8h']);
  const c = claimsOf(viewerTok);
  assert.equal(c.role, 'dialer_viewer');
  assert.equal(c.sub, 'ann@example.com');
  assert.equal(c.exp - c.iat, 8 * 3600, 'valid for 8 hours');
  assert.ok(Math.abs(c.iat - Date.now() / 1000) < 60, 'issued now');
  const held = await d.enqueue(db, '+15550177110', { provider: HOLD });
  let r = await call('GET', `/calls?id=eq.${held}`, viewerTok);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.map((x) => x.status), ['scheduled']);
  r = await call('POST', '/rpc/cancel_call', viewerTok, { id: held });
  assert.equal(r.status, 403, r.text);

  const operatorTok = stack.mint(['dialer_operator', '--sub', 'ops@example.com', '--expires', '30m']);
  assert.equal(claimsOf(operatorTok).exp - claimsOf(operatorTok).iat, 1800);
  r = await call('POST', '/rpc/cancel_call', operatorTok, { id: held });
  assert.equal(r.status, 200, r.text);
  assert.equal((await d.calls(db, [held]))[0].status, 'canceled');

  const frontendTok = stack.mint(['dialer_frontend', '--sub', 'user-77', '--purpose', PURPOSE, '--expires', '15m']);
  assert.deepEqual([claimsOf(frontendTok).sub, claimsOf(frontendTok).purpose], ['user-77', PURPOSE]);
  r = await call('POST', '/rpc/frontend_enqueue', frontendTok, { to_number: '+15550177111' });
  assert.equal(r.status, 200, r.text);
  const stored = await db.query(`SELECT customer_ref, to_number FROM dialer.scheduled_calls WHERE id = $1`, [r.json.id]);
  assert.deepEqual(stored.rows[0], { customer_ref: 'user-77', to_number: '+15550177111' });

  // a token minted two hours ago for one hour (the tool's clock set back: a `date` first in
  // PATH that answers `date +%s` two hours early) is refused, and writes nothing
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_clock.'));
  try {
    fs.writeFileSync(path.join(bin, 'date'),
      '#!/bin/sh\nif [ "$1" = +%s ]; then echo $(( $(/usr/bin/date +%s) - 7200 )); else exec /usr/bin/date "$@"; fi\n', { mode: 0o755 });
    const old = stack.mint(['dialer_operator', '--expires', '1h'], { PATH: `${bin}:${process.env.PATH}` });
    assert.ok(claimsOf(old).exp < Date.now() / 1000 - 3000, 'expired an hour ago');
    const before = await snapshot();
    r = await call('POST', '/rpc/enqueue_call', old, { to_number: '+15550177112', provider: HOLD });
    assert.equal(r.status, 401, r.text);
    assert.match(r.json.message, /expired/i);
    assert.deepEqual(await snapshot(), before, 'nothing written');
  } finally {
    fs.rmSync(bin, { recursive: true, force: true });
  }
});

test('deploy/admin-token.sh refuses, with the reason and what to do, what would make a useless token', () => {
  const tool = path.join(__dirname, '..', '..', 'deploy', 'admin-token.sh');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_tok.'));
  try {
    const short = path.join(dir, 'short');
    fs.writeFileSync(short, 'only-twenty-characters\n');
    const cases = [
      [['dialer_admin', '--secret-file', stack.secretFile], /unknown role 'dialer_admin'[\s\S]*hint: name one of dialer_viewer, dialer_operator, dialer_frontend/],
      [['--secret-file', stack.secretFile], /no role given/],
      [['dialer_frontend', '--sub', 'u-1', '--secret-file', stack.secretFile], /needs --purpose[\s\S]*dialer\.frontend_purposes/],
      [['dialer_frontend', '--purpose', PURPOSE, '--secret-file', stack.secretFile], /needs --sub/],
      [['dialer_frontend', '--sub', 'u-1', '--purpose', 'no spaces allowed', '--secret-file', stack.secretFile], /invalid --purpose/],
      [['dialer_viewer', '--purpose', PURPOSE, '--secret-file', stack.secretFile], /--purpose is for dialer_frontend tokens only/],
      [['dialer_viewer', '--expires', '2y', '--secret-file', stack.secretFile], /invalid --expires '2y'[\s\S]*s, m, h or d/],
      [['dialer_viewer', '--expires', '0h', '--secret-file', stack.secretFile], /must be valid for some time/],
      [['dialer_viewer', '--expires', '400d', '--secret-file', stack.secretFile], /longer than 366 days/],
      [['dialer_viewer', '--sub', 'a\tb', '--secret-file', stack.secretFile], /control character/],
      [['dialer_viewer', '--secret-file', path.join(dir, 'missing')], /secret file .*missing does not exist/],
      [['dialer_viewer', '--secret-file', short], /is 22 characters long: PostgREST 12 needs at least 32[\s\S]*openssl rand/],
    ];
    for (const [args, re] of cases) {
      const r = spawnSync(tool, args, { encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: exit status ${r.status}\n${r.stderr}`);
      assert.equal(r.stdout, '', `${args.join(' ')}: no token printed`);
      assert.match(r.stderr, re, args.join(' '));
    }
    // HMAC-SHA256 as RFC 2104 has it for any secret length (a key longer than 64 bytes is hashed
    // first): the signature is node's for secrets of 32, 64 and 100 characters
    for (const n of [32, 64, 100]) {
      const secret = require('node:crypto').randomBytes(n).toString('base64').slice(0, n);
      const f = path.join(dir, `secret${n}`);
      fs.writeFileSync(f, `${secret}\n`);
      const tok = execFileSync(tool, ['dialer_viewer', '--secret-file', f], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
      const [h, b, sig] = tok.split('.');
      assert.equal(sig, require('node:crypto').createHmac('sha256', secret).update(`${h}.${b}`).digest('base64url'), `secret of ${n} characters`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/* README: every curl line of the marked blocks of the "Admin API" section runs as written */
test('README: the admin API curl examples run against the deployment', async () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const blocks = [];
  const re = /<!-- admin-api-test -->\s*\n```sh\n([\s\S]*?)```/g;
  let m;
  while ((m = re.exec(readme))) blocks.push(m[1]);
  assert.ok(blocks.length >= 1, 'README has marked admin API examples');
  const curls = blocks.join('\n').split('\n').filter((l) => /^\s*curl /.test(l));
  assert.ok(curls.length >= 10, `README has the seed systems' endpoints as curl lines (${curls.length})`);
  const held = await d.enqueue(db, '+15550177108', { provider: HOLD });
  const failed = await d.enqueue(db, '+15550177109', { provider: DEAD, max_attempts: 1 });
  await d.waitForStatus(db, [failed], ['failed'], { timeoutMs: 20000 });
  await db.query(`DELETE FROM dialer.scheduled_calls WHERE campaign = $1 AND customer_ref = 'user-42'`, [PURPOSE]);
  const env = {
    PATH: process.env.PATH,
    API: stack.api,
    OPERATOR_TOKEN: operator,
    VIEWER_TOKEN: viewer,
    FRONTEND_TOKEN: frontend('user-42'),
    CALL_ID: String(held),
    FAILED_CALL_ID: String(failed),
    CAMPAIGN,
    PROVIDER: HOLD,
  };
  for (const block of blocks) {
    const out = execFileSync('bash', ['--norc', '--noprofile', '-eo', 'pipefail', '-c', block], { env, encoding: 'utf8' });
    assert.ok(out.length > 0);
  }
  const c = await d.calls(db, [held, failed]);
  assert.equal(c[0].status, 'canceled', 'the README cancel example canceled the call');
  assert.notEqual(c[1].attempts_base, 0, 'the README retry example requeued the failed call');
  const fe = await db.query(`SELECT count(*)::int AS n FROM dialer.scheduled_calls WHERE campaign = $1 AND customer_ref = 'user-42'`, [PURPOSE]);
  assert.equal(fe.rows[0].n, 1, 'the README frontend example asked for one call');
  const bulk = await db.query(`SELECT count(*)::int AS n FROM dialer.scheduled_calls
                                WHERE to_number IN ('+15550100044', '+15550100045') AND provider = $1`, [HOLD]);
  assert.equal(bulk.rows[0].n, 2, 'the README bulk example scheduled its two calls');
});
