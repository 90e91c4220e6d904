'use strict';
// The dashboard (deploy/dashboard/) in a real browser: Debian's chromium driven by
// playwright-core, against the real stack: the dispatcher's database, the Twilio simulator
// sending signed status callbacks through the webhook deployment (nginx + PostgREST), and the
// admin deployment (nginx serving /dashboard/ and proxying /admin/ to the admin PostgREST).
//
//   - a viewer signs in with a pasted token and watches a call go from scheduled to completed,
//     then reads its timeline;
//   - a viewer's cancel is refused (403 shown, the call stays scheduled); a do-not-call call's
//     timeline says why it was skipped;
//   - an operator cancels a scheduled call and retries a failed one;
//   - the campaign view says why a do-not-call customer is not called, and "Run now" runs it;
//   - on a phone-sized screen nothing overflows the page sideways;
//   - the sign-in names the tool that makes tokens (deploy/admin-token.sh), a token it made
//     signs in, and an expired one is refused with what to do;
//   - times carry their zone (the browser's, here America/Chicago), a call's page names the
//     recipient's zone and the due time there; a campaign that is not running says "enabled";
//   - a provider at its max_concurrency says so on the Providers page, and a call whose
//     lookup at the provider failed shows the HTTP status of that lookup.
// Screenshots of the main views: README shows the ones in doc/, refreshed by running this file
// with DIALER_SCREENSHOTS=doc.
//
// Run by test/run_all.sh (DIALER_ONLY=dashboard).  Needs /usr/bin/chromium (test/install-deps.sh).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const d = require('../lib/dialer');
const { startAdminStack } = require('../lib/admin_stack');
const { startWebhookStack } = require('../lib/webhook_stack');

const CHROMIUM = process.env.DIALER_CHROMIUM || '/usr/bin/chromium';
// Screenshots go to a temporary folder; DIALER_SCREENSHOTS=doc refreshes the ones in doc/.
const DOC = process.env.DIALER_SCREENSHOTS === 'doc'
  ? path.join(__dirname, '..', '..', 'doc')
  : fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_shots_'));
const P = 'dsh_';
const TW = `${P}tw`;
const HOLD = `${P}hold`;
const DEAD = `${P}dead`;
const LIMITED = `${P}limited`;   // max_concurrency 1, at a simulator that sends no callbacks
const BROWSER_ZONE = 'America/Chicago';
const CAMPAIGN = `${P}renewals`;
const DNC = '+15550188009';
const PUBLIC_CALLBACK_URL = 'https://dialer.example.com/twilio/status-callback';

let db; let settings; let sim; let quiet; let hooks; let stack; let browser; let userDir;

test.before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is installed (apt-get install chromium)`);
  db = await d.connect();
  await d.ensureExtension(db);
  settings = d.settings(db);
  await settings.set({ ...d.OPEN_WINDOW, 'dialer.enabled': 'on', 'dialer.allowed_numbers': '' });
  sim = await d.startSim('twilio', { callbacks: true,
    callbackDelays: { initiated: 300, ringing: 700, answered: 700, completed: 900 } });
  hooks = await startWebhookStack({ database: process.env.DIALER_DB || 'dialer_test', existingDatabase: true });
  sim.control.configure({ callbackTarget: hooks.proxy });
  await db.query(`DELETE FROM dialer.campaigns WHERE name LIKE 'dsh\\_%'`);
  await d.createProvider(db, d.twilioProvider(TW, sim, { status_callback_url: PUBLIC_CALLBACK_URL, twiml_url: 'https://example.com/twiml', enabled: false }));
  await d.createProvider(db, d.twilioProvider(HOLD, sim, { twiml_url: 'https://example.com/twiml', enabled: false }));
  await d.createProvider(db, d.twilioProvider(DEAD, sim, { base_url: 'http://127.0.0.1:1', twiml_url: 'https://example.com/twiml' }));
  quiet = await d.startSim('twilio');
  await d.createProvider(db, d.twilioProvider(LIMITED, quiet, { twiml_url: 'https://example.com/twiml', max_concurrency: 1, enabled: false }));
  await db.query(`INSERT INTO dialer.do_not_call (number, reason) VALUES ($1, 'asked not to be called')
                  ON CONFLICT (number) DO UPDATE SET reason = excluded.reason`, [DNC]);
  await db.query(`CREATE TABLE IF NOT EXISTS public.dsh_customers (customer_ref text, phone text)`);
  await db.query(`TRUNCATE public.dsh_customers`);
  await db.query(`INSERT INTO public.dsh_customers VALUES ('ann', '+15550188001'), ('bob', $1)`, [DNC]);
  await db.query(`INSERT INTO dialer.campaigns (name, description, source, provider, max_calls_per_day)
                  VALUES ($1, 'Policy renewal reminders', 'public.dsh_customers', $2, 50)`, [CAMPAIGN, HOLD]);
  stack = await startAdminStack();
  userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg_dialer_chromium.'));
  browser = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 900 },
    timezoneId: BROWSER_ZONE,
  });
});

test.after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  if (stack) await stack.stop();
  if (hooks) await hooks.stop();
  if (db) {
    await db.query(`DELETE FROM dialer.campaigns WHERE name LIKE 'dsh\\_%'`).catch(() => {});
    await d.dropProviders(db, [TW, HOLD, DEAD, LIMITED]).catch(() => {});
    await db.query(`DELETE FROM dialer.do_not_call WHERE number = $1`, [DNC]).catch(() => {});
    await db.query(`DROP TABLE IF EXISTS public.dsh_customers`).catch(() => {});
    await settings.restore().catch(() => {});
    await db.end();
  }
  if (sim) await sim.close();
  if (quiet) await quiet.close();
});

/* a new page signed in with a token pasted into the form (keyboard only) */
async function signIn(token) {
  const page = await browser.newPage();
  await page.goto(stack.dashboard);
  const field = page.getByLabel('Access token (JWT)');
  await field.focus();
  await field.fill(token);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Today' }).waitFor();
  return page;
}

async function callStatus(id) {
  return (await d.calls(db, [id]))[0].status;
}

test('viewer: signs in, sees today\'s figures, watches a call go from scheduled to completed, reads its timeline', async () => {
  const page = await signIn(stack.token('dialer_viewer', { sub: 'viewer@example.com' }));
  await assert.doesNotReject(page.getByText('Signed in as dialer_viewer').waitFor());
  const id = await d.enqueue(db, '+15550188100', { provider: TW, campaign: CAMPAIGN, payload: { message: 'Your policy renews on Friday' } });
  await page.goto(`${stack.dashboard}#calls`);
  await page.getByLabel('Provider', { exact: true }).fill(TW);
  await page.getByRole('button', { name: 'Filter' }).click();
  const row = page.locator(`tr[data-call="${id}"] .status`);
  await row.waitFor();
  const seen = [await row.textContent()];
  assert.equal(seen[0], 'scheduled');
  await d.setProvidersEnabled(db, [TW], true);
  const end = Date.now() + 30000;
  while (seen[seen.length - 1] !== 'completed' && Date.now() < end) {
    const s = await row.textContent();
    if (s !== seen[seen.length - 1]) seen.push(s);
    await page.waitForTimeout(100);
  }
  assert.equal(seen[seen.length - 1], 'completed', `statuses seen in the page: ${seen.join(' -> ')} (db: ${await callStatus(id)})`);
  assert.ok(seen.length >= 2, 'the page changed by itself (polling)');

  await page.getByRole('link', { name: `Call ${id}` }).click();
  await page.getByRole('heading', { name: `Call #${id}` }).waitFor();
  const timeline = page.locator('#timeline');
  await timeline.getByText(/^.*completed.*$/).first().waitFor();
  const text = await timeline.textContent();
  for (const e of ['enqueued', 'claimed', 'accepted', 'attempt 1: HTTP 201']) assert.match(text, new RegExp(e), `timeline has ${e}: ${text}`);
  assert.match(text, /callback/, 'the status callbacks are in the timeline');
  await page.screenshot({ path: path.join(DOC, 'dashboard-call.png'), fullPage: true });

  await page.getByRole('link', { name: 'Today' }).click();
  await page.locator('#figures dd').first().waitFor();
  const perCampaign = page.locator('#per-campaign tbody tr', { hasText: CAMPAIGN });
  await perCampaign.waitFor();
  assert.match(await perCampaign.textContent(), /1/);
  await page.screenshot({ path: path.join(DOC, 'dashboard-today.png'), fullPage: true });
  await page.close();
});

test('viewer: cancel is refused with the API\'s 403, and the call stays scheduled', async () => {
  const id = await d.enqueue(db, '+15550188101', { provider: HOLD, payload: { message: 'Hi' } });
  const page = await signIn(stack.token('dialer_viewer', { sub: 'viewer@example.com' }));
  await page.goto(`${stack.dashboard}#call/${id}`);
  await page.getByRole('heading', { name: `Call #${id}` }).waitFor();
  await page.getByRole('button', { name: 'Cancel call' }).click();
  const alert = page.getByRole('alert');
  await alert.getByText(/Refused \(HTTP 403\)/).waitFor();
  assert.match(await alert.textContent(), /permission denied for function cancel_call/);
  assert.equal(await callStatus(id), 'scheduled');

  // a call to a do-not-call number: its timeline says why it was not dialled
  const dnc = await d.enqueue(db, DNC, { provider: HOLD, payload: { message: 'Hi' } });
  await page.goto(`${stack.dashboard}#call/${dnc}`);
  await page.getByRole('heading', { name: `Call #${dnc}` }).waitFor();
  const skipped = page.locator('#timeline li', { hasText: 'skipped' });
  await skipped.waitFor();
  assert.match(await skipped.textContent(), /reason: do_not_call \(asked not to be called\)/);
  await page.close();
});

test('operator: cancels a scheduled call and retries a failed one', async () => {
  const held = await d.enqueue(db, '+15550188102', { provider: HOLD, payload: { message: 'Hi' } });
  const failed = await d.enqueue(db, '+15550188103', { provider: DEAD, max_attempts: 1 });
  await d.waitForStatus(db, [failed], ['failed'], { timeoutMs: 20000 });
  const page = await signIn(stack.token('dialer_operator', { sub: 'ops@example.com' }));

  await page.goto(`${stack.dashboard}#call/${held}`);
  await page.getByRole('heading', { name: `Call #${held}` }).waitFor();
  await page.getByRole('button', { name: 'Cancel call' }).click();
  await page.getByRole('status').getByText(`Call ${held} canceled`).waitFor();
  assert.equal(await callStatus(held), 'canceled');
  await page.locator('#call-summary .status', { hasText: 'canceled' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Cancel call' }).isDisabled(), true);

  await page.goto(`${stack.dashboard}#call/${failed}`);
  await page.getByRole('heading', { name: `Call #${failed}` }).waitFor();
  await page.locator('#call-summary .status', { hasText: 'failed' }).waitFor();
  await page.getByRole('button', { name: 'Retry call' }).click();
  await page.getByRole('status').getByText(`Call ${failed} requeued`).waitFor();
  const ev = await d.events(db, failed);
  assert.ok(ev.some((e) => e.event === 'requeued'), 'the call was requeued');
  await page.locator('#timeline', { hasText: 'requeued' }).waitFor();
  await page.close();
});

test('campaigns: why a do-not-call customer is not called, and "Run now"', async () => {
  const page = await signIn(stack.token('dialer_operator', { sub: 'ops@example.com' }));
  await page.getByRole('link', { name: 'Campaigns' }).click();
  await page.getByRole('button', { name: `Candidates of ${CAMPAIGN}` }).click();
  const bob = page.locator('#candidates tbody tr', { hasText: 'bob' });
  await bob.waitFor();
  const t = await bob.textContent();
  assert.match(t, /do_not_call/);
  assert.match(t, /asked not to be called/);
  assert.match(await page.locator('#candidates tbody tr', { hasText: 'ann' }).textContent(), /yes/);
  await page.screenshot({ path: path.join(DOC, 'dashboard-campaign.png'), fullPage: true });
  await page.getByRole('button', { name: `Run ${CAMPAIGN} now` }).click();
  await page.getByRole('status').getByText(`Campaign ${CAMPAIGN}: 1 call(s) enqueued`).waitFor();
  const r = await db.query(`SELECT customer_ref FROM dialer.scheduled_calls WHERE campaign = $1 AND customer_ref IS NOT NULL`, [CAMPAIGN]);
  assert.deepEqual(r.rows.map((x) => x.customer_ref), ['ann']);
  // ann is now scheduled today: the candidates say so
  await page.locator('#candidates tbody tr', { hasText: 'ann' }).filter({ hasText: 'scheduled_today' }).waitFor();
  await page.close();
});

test('providers view, and a phone-sized screen: nothing overflows sideways', async () => {
  const page = await signIn(stack.token('dialer_viewer', { sub: 'viewer@example.com' }));
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('link', { name: 'Providers' }).click();
  await page.locator('#provider-list tbody tr', { hasText: DEAD }).waitFor();
  assert.match(await page.locator('#provider-list tbody tr', { hasText: HOLD }).textContent(), /paused/);
  for (const v of ['today', 'calls', 'campaigns', 'providers']) {
    await page.goto(`${stack.dashboard}#${v}`);
    await page.waitForTimeout(300);
    const o = await page.evaluate(() => ({ w: document.documentElement.scrollWidth, vw: window.innerWidth }));
    assert.ok(o.w <= o.vw, `#${v}: page is ${o.w}px wide on a ${o.vw}px screen`);
  }
  await page.close();
});

/* "2026-12-07 14:03:05 CST": a time with its zone's name */
const TIME_IN_CHICAGO = /\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d C[SD]T/;

test('sign-in names deploy/admin-token.sh; a token it made signs in; an expired one is refused with what to do', async () => {
  const page = await browser.newPage();
  await page.goto(stack.dashboard);
  const help = page.locator('#token-help');
  assert.match(await help.textContent(), /deploy\/admin-token\.sh dialer_viewer --sub .* --expires 8h/);
  assert.equal(await page.getByLabel('Access token (JWT)').getAttribute('aria-describedby'), 'token-help');
  await page.close();

  const minted = await signIn(stack.mint(['dialer_viewer', '--sub', 'ann@example.com', '--expires', '8h']));
  const who = await minted.locator('#role').textContent();
  assert.match(who, /Signed in as dialer_viewer \(ann@example\.com\), until /);
  assert.match(who, TIME_IN_CHICAGO, `the token's expiry with its zone: ${who}`);
  await minted.close();

  // a token whose time is over (signed by hand: the tool cannot make one already expired)
  const late = await signIn(stack.token('dialer_viewer', { sub: 'ann@example.com' }, -120));
  const alert = late.getByRole('alert');
  await alert.getByText(/Refused \(HTTP 401\)/).waitFor();
  const text = await alert.textContent();
  assert.match(text, /expired/i);
  assert.match(text, /sign in with a new token \(deploy\/admin-token\.sh/);
  await late.close();
});

test('times carry their zone; a call\'s page names the recipient\'s zone and the due time there; a campaign not running is "enabled"', async () => {
  const brisbane = await d.enqueue(db, '+61733330001', { provider: HOLD, payload: { message: 'Hi' }, run_at: '2030-01-02T03:04:05Z' });
  const paris = await d.enqueue(db, '+15550188120', { provider: HOLD, payload: { message: 'Hi' }, timezone: 'Europe/Paris' });
  const page = await signIn(stack.token('dialer_viewer', { sub: 'viewer@example.com' }));
  assert.equal(await page.locator('#zone-note').textContent(), `Times are shown in ${BROWSER_ZONE} (this browser's time zone).`);

  await page.goto(`${stack.dashboard}#calls`);
  const row = page.locator(`tr[data-call="${brisbane}"]`);
  await row.waitFor();
  // 2030-01-02 03:04:05 UTC is 2030-01-01 21:04:05 in Chicago (CST, UTC-6)
  assert.match(await row.textContent(), /2030-01-01 21:04:05 CST/);

  await page.goto(`${stack.dashboard}#call/${brisbane}`);
  await page.getByRole('heading', { name: `Call #${brisbane}` }).waitFor();
  const summary = page.locator('#call-summary');
  await summary.getByText('Australia/Brisbane (from the number)').waitFor();
  // and the due time in Brisbane (UTC+10): 13:04:05 on 2 January
  assert.match(await summary.textContent(), /2030-01-01 21:04:05 CST · 2030-01-02 13:04:05 GMT\+10 in Australia\/Brisbane/);
  assert.match(await page.locator('#timeline').textContent(), TIME_IN_CHICAGO, 'timeline times carry their zone');

  await page.goto(`${stack.dashboard}#call/${paris}`);
  await page.getByRole('heading', { name: `Call #${paris}` }).waitFor();
  await page.locator('#call-summary').getByText('Europe/Paris (the call\'s own)').waitFor();
  // +1 555 is no area code: the number map gives every zone of +1, and the page names none
  const nanp = await d.enqueue(db, '+15550188121', { provider: HOLD, payload: { message: 'Hi' } });
  await page.goto(`${stack.dashboard}#call/${nanp}`);
  await page.getByRole('heading', { name: `Call #${nanp}` }).waitFor();
  await page.locator('#call-summary').getByText(/^one of \d+ zones \(America\/.* … .*\): the number does not say which$/).waitFor();

  await page.getByRole('link', { name: 'Campaigns' }).click();
  const campaignRow = page.locator('#campaign-list tbody tr', { hasText: CAMPAIGN });
  await campaignRow.waitFor();
  assert.equal(await campaignRow.locator('td').first().textContent(), 'enabled', 'enabled, and no run under way');
  assert.doesNotMatch(await campaignRow.textContent(), /running/);
  await page.close();
});

test('providers: one at its max_concurrency says so plainly; a call whose lookup failed shows the lookup\'s HTTP status', async () => {
  // the simulator sends no callbacks: the first call stays dialing and holds the provider's one slot
  const first = await d.enqueue(db, '+15550188130', { provider: LIMITED });
  const second = await d.enqueue(db, '+15550188131', { provider: LIMITED });
  await d.setProvidersEnabled(db, [LIMITED], true);
  const [held] = await d.waitForStatus(db, [first], ['dialing'], { timeoutMs: 20000 });
  const page = await signIn(stack.token('dialer_viewer', { sub: 'viewer@example.com' }));
  await page.getByRole('link', { name: 'Providers' }).click();
  const note = page.locator('#provider-limits li', { hasText: LIMITED });
  await note.waitFor();
  const said = await note.textContent();
  assert.match(said, new RegExp(`${LIMITED} is at its limit: 1 call\\(s\\) in progress of max_concurrency 1\\.`));
  assert.match(said, /wait until a status callback ends a call, or until a call without news for dialer\.reconcile_after stops counting/);
  assert.match(said, TIME_IN_CHICAGO, 'by when, at the latest, with its zone');
  const cell = page.locator('#provider-list tbody tr', { hasText: LIMITED }).locator('td').nth(1);
  assert.equal(await cell.textContent(), '1limit 1: at its limit');
  assert.match(await page.locator('#provider-list tbody tr', { hasText: TW }).locator('td').nth(1).textContent(), /no limit/);
  assert.equal((await d.calls(db, [second]))[0].status, 'scheduled', 'the second call waits');
  await page.screenshot({ path: path.join(DOC, 'dashboard-providers.png'), fullPage: true });

  // reconciliation looks the first call up after reconcile_after (10 s, its minimum) without news;
  // the provider answers 404
  quiet.control.addFault({ mode: 'status500', status: 404, method: 'GET',
    path: `/2010-04-01/Accounts/${quiet.control.config().accountSid}/Calls/${held.provider_call_id}.json` });
  await settings.set({ 'dialer.reconcile_after': '10s' });
  await d.waitFor(async () => (await d.events(db, first)).some((e) => e.event === 'reconcile_failed'),
    { timeoutMs: 30000, message: 'a failed lookup of the call' });
  await page.goto(`${stack.dashboard}#call/${first}`);
  await page.getByRole('heading', { name: `Call #${first}` }).waitFor();
  const failed = page.locator('#timeline li', { hasText: 'reconcile_failed' }).first();
  await failed.waitFor();
  assert.match(await failed.textContent(), /reconcile_failed — HTTP 404/);
  const lookup = page.locator('#call-summary dd').filter({ hasText: /^failed: HTTP 404/ });
  await lookup.waitFor();
  assert.match(await lookup.textContent(), TIME_IN_CHICAGO);
  await page.close();
  await d.setProvidersEnabled(db, [LIMITED], false);
});
