/*
 * pg_dialer dashboard: plain JavaScript, no build step, no dependency.  Talks only to the
 * admin API (PostgREST, at ../admin/ next to this page) with the pasted JWT; what a token
 * may do is decided by the API, which answers a refusal with an HTTP error shown here.
 * Data is always put in the page as text (textContent), never as HTML.
 */
'use strict';

const API = new URL('../admin/', document.baseURI).href;
const POLL_MS = 2000;
// the browser's time zone: every time is shown in it, with the zone's name
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
const TOKEN_TOOL = 'deploy/admin-token.sh';
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem('pg_dialer_token') || '';
let currentCall = null;
let timer = null;

/* ----------------------------------------------------------------- the API */

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = { message: text }; }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

function showError(e) {
  if (e instanceof ApiError) {
    const b = e.body;
    // 401: no token, a token signed with another secret, or an expired one
    const again = e.status === 401 ? `Sign out, and sign in with a new token (${TOKEN_TOOL} on the server).` : '';
    $('#error').textContent = [`Refused (HTTP ${e.status}): ${b.message || ''}`, b.details, b.hint, again].filter(Boolean).join('\n');
  } else {
    $('#error').textContent = `Error: ${e.message}`;
  }
}
function say(text) { $('#message').textContent = text; $('#error').textContent = ''; }

/* ----------------------------------------------------------------- helpers */

function el(tag, props = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') n.className = v;
    else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) n.setAttribute(k, v);
  }
  for (const c of children) n.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
  return n;
}
/* An instant as "2026-12-07 14:03:05 CST": in zone (default the browser's), with the zone's name */
function when(t, zone = ZONE) {
  if (!t) return '';
  const f = new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short' });
  const p = Object.fromEntries(f.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

// a number whose prefix spans more zones than this (e.g. +1 without a known area code) names none
const MAX_ZONES = 3;

/* The recipient's time zone of a call, in words: {zones, source} of GET /rpc/call */
function zoneText(tz) {
  const zones = (tz && tz.zones) || [];
  if (zones.length === 0) return 'unknown: the number is not in the number map, and neither the call nor its campaign names a zone';
  if (zones.length > MAX_ZONES) {
    return `one of ${zones.length} zones (${zones[0]} … ${zones[zones.length - 1]}): the number does not say which`;
  }
  const from = { call: 'the call\'s own', campaign: 'its campaign\'s', number: 'from the number',
    default: 'dialer.default_timezone: the number\'s zone is not known' }[tz.source] || tz.source;
  return `${zones.join(', ')} (${from})`;
}

/* A time in the browser's zone, followed by the same time in each of the recipient's zones */
function whenWithLocal(t, tz) {
  if (!t) return '—';
  const zones = (tz && tz.zones) || [];
  const local = zones.length > MAX_ZONES ? [] : zones.filter((z) => z !== ZONE).map((z) => `${when(t, z)} in ${z}`);
  return [when(t), ...local].join(' · ');
}
const statusCell = (s) => el('span', { class: `status status-${s}` }, s);

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function claims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch { return {}; }
}

/* ----------------------------------------------------------------- views */

async function loadToday() {
  const s = await api('rpc/stats');
  const figures = [['Calls today', s.calls], ['Completed', s.completed], ['Failed', s.failed],
    ['Not reached', s.not_reached], ['Pending', s.pending], ['Not called', s.not_called],
    ['Unknown', s.unknown], ['Queue (all days)', s.total_pending]];
  $('#figures').replaceChildren(...figures.map(([k, v]) => el('div', {}, el('dt', {}, k), el('dd', {}, v))));
  fill($('#per-campaign tbody'), Object.entries(s.by_campaign || {}).map(([name, c]) =>
    el('tr', {}, el('th', { scope: 'row' }, name), el('td', {}, c.calls), el('td', {}, c.completed),
      el('td', {}, c.failed), el('td', {}, c.not_reached), el('td', {}, c.pending))));
}

function callQuery() {
  const f = new FormData($('#filter'));
  const q = new URLSearchParams({ order: 'id.desc', limit: '50' });
  if (f.get('status')) q.set('status', `eq.${f.get('status')}`);
  if (f.get('campaign')) q.set('campaign', `eq.${f.get('campaign')}`);
  if (f.get('provider')) q.set('provider', `eq.${f.get('provider')}`);
  if (f.get('day')) q.set('day', `eq.${f.get('day')}`);
  if (f.get('number')) q.set('to_number', `eq.${f.get('number').replace(/[\s().-]/g, '')}`);
  return q.toString();
}

async function loadCalls() {
  const rows = await api(`calls?${callQuery()}`);
  fill($('#call-list tbody'), rows.map((c) => el('tr', { 'data-call': c.id },
    el('td', {}, el('a', { href: `#call/${c.id}`, 'aria-label': `Call ${c.id}` }, `#${c.id}`)),
    el('td', {}, statusCell(c.status)), el('td', {}, c.to_number), el('td', {}, c.campaign || ''),
    el('td', {}, c.provider), el('td', {}, when(c.next_attempt_at)), el('td', {}, `${c.attempts}/${c.max_attempts}`),
    el('td', {}, c.last_error || ''))));
}

function describeEvent(e) {
  const d = e.detail || {};
  const bits = [];
  // a move shows where the call went; an event that moved nothing (from = to) does not
  if ((e.from_status || e.to_status) && e.from_status !== e.to_status) {
    bits.push(`${e.from_status || 'new'} → ${e.to_status || e.from_status}`);
  }
  if (e.outcome) bits.push(`outcome: ${e.outcome}`);
  if (d.reason) bits.push(`reason: ${d.reason}${d.do_not_call_reason ? ` (${d.do_not_call_reason})` : ''}`);
  if (d.http_status !== undefined && d.http_status !== null) bits.push(`HTTP ${d.http_status}`);
  for (const k of ['provider_status', 'error', 'error_code', 'message', 'by', 'until', 'next_attempt_at']) {
    if (d[k] !== undefined && d[k] !== null) bits.push(`${k}: ${typeof d[k] === 'object' ? JSON.stringify(d[k]) : d[k]}`);
  }
  return bits.join(' · ');
}

async function loadCall(id) {
  const d = await api(`rpc/call?id=${encodeURIComponent(id)}`);
  const c = d.call;
  currentCall = c;
  $('#call-h').textContent = `Call #${c.id}`;
  const rows = [['Status', statusCell(c.status)], ['Number', c.to_number], ['Provider', c.provider],
    ['Campaign', c.campaign || '—'], ['Customer', c.customer_ref || '—'],
    ['Recipient\'s time zone', zoneText(d.timezone)], ['Due', whenWithLocal(c.next_attempt_at, d.timezone)],
    ['Attempts', `${c.attempts} of ${c.max_attempts}`], ['Provider status', c.provider_status || '—'],
    ['Last error', c.last_error || '—']];
  // the provider's word looked up by reconciliation: say when the latest lookup failed
  const lookups = d.events.filter((e) => e.event === 'reconcile' || e.event === 'reconcile_failed');
  const last = lookups[lookups.length - 1];
  if (last && last.event === 'reconcile_failed') {
    const ld = last.detail || {};
    rows.push(['Last lookup at the provider', `failed${ld.http_status != null ? `: HTTP ${ld.http_status}` : ''}${ld.error ? ` (${ld.error})` : ''}, ${when(last.at)}`]);
  }
  $('#call-summary').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  const items = [
    ...d.events.map((e) => ({ at: e.at, text: `${e.event}${describeEvent(e) ? ` — ${describeEvent(e)}` : ''}`, kind: 'event' })),
    ...d.attempts.map((a) => ({ at: a.requested_at,
      text: `attempt ${a.attempt}: HTTP ${a.http_status ?? 'no answer'}${a.provider_status ? `, ${a.provider_status}` : ''}${a.duration_seconds != null ? `, ${a.duration_seconds} s` : ''}${a.error_message ? `, ${a.error_code || ''} ${a.error_message}` : ''}`,
      kind: 'attempt' })),
  ].sort((x, y) => new Date(x.at) - new Date(y.at));
  $('#timeline').replaceChildren(...items.map((i) =>
    el('li', { class: i.kind }, el('time', { datetime: i.at }, when(i.at)), i.text)));
  $('#cancel').disabled = c.status !== 'scheduled';
  $('#retry').disabled = !['failed', 'unknown', 'expired'].includes(c.status);
}

async function loadCampaigns() {
  const rows = await api('campaigns?order=name');
  fill($('#campaign-list tbody'), rows.map((k) => el('tr', {},
    el('th', { scope: 'row' }, k.name, k.description ? el('div', { class: 'hint' }, k.description) : ''),
    // enabled: it runs on its schedule (or by hand); running: a run is under way now
    el('td', {}, !k.enabled ? 'paused' : (k.last_outcome === 'running' ? 'running now' : 'enabled')),
    el('td', {}, k.schedule || 'by hand'),
    el('td', {}, when(k.next_run_at) || '—'),
    el('td', {}, Object.entries(k.rules || {}).map(([r, v]) => `${r}: ${Array.isArray(v) ? v.join(', ') : v}`).join('; ')),
    el('td', { class: 'actions' },
      el('button', { type: 'button', onclick: () => showCandidates(k.name) , 'aria-label': `Candidates of ${k.name}` }, 'Candidates'),
      el('button', { type: 'button', onclick: () => act(() => api('rpc/run_campaign', { method: 'POST', body: { campaign: k.name } }),
        (r) => `Campaign ${r.campaign}: ${r.enqueued} call(s) enqueued`, () => showCandidates(k.name)),
      'aria-label': `Run ${k.name} now` }, 'Run now'),
      el('button', { type: 'button', onclick: () => act(() => api('rpc/set_campaign_enabled', { method: 'POST', body: { campaign: k.name, enabled: !k.enabled } }),
        (r) => `Campaign ${r.campaign} ${r.enabled ? 'resumed' : 'paused'}`),
      'aria-label': `${k.enabled ? 'Pause' : 'Resume'} ${k.name}` }, k.enabled ? 'Pause' : 'Resume')))));
}

async function showCandidates(name) {
  const rows = await api(`rpc/pending_customers?campaign=${encodeURIComponent(name)}`);
  $('#candidates-box').hidden = false;
  $('#candidates-h').textContent = `Candidates of ${name}`;
  fill($('#candidates tbody'), rows.map((c) => el('tr', {},
    el('th', { scope: 'row' }, c.customer_ref || '—'), el('td', {}, c.phone || ''),
    el('td', {}, c.included ? 'yes' : 'no'), el('td', {}, c.reason || ''), el('td', {}, c.detail || ''))));
}

/* A provider at its max_concurrency, in a sentence */
function limitText(p) {
  return `${p.name} is at its limit: ${p.counted_in_progress} call(s) in progress of max_concurrency ${p.max_concurrency}. `
    + 'Its due calls wait until a status callback ends a call, or until a call without news for dialer.reconcile_after '
    + `stops counting and is reconciled${p.slot_frees_by ? ` (by ${when(p.slot_frees_by)} at the latest)` : ''}.`;
}

async function loadProviders() {
  const rows = await api('provider_health?order=name');
  $('#provider-limits').replaceChildren(...rows.filter((p) => p.at_limit).map((p) => el('li', {}, limitText(p))));
  fill($('#provider-list tbody'), rows.map((p) => el('tr', { class: p.at_limit ? 'at-limit' : '' },
    el('th', { scope: 'row' }, p.name, el('div', { class: 'hint' }, p.kind)),
    el('td', {}, p.enabled ? 'enabled' : 'paused'),
    el('td', {}, `${p.in_progress}`, el('div', { class: 'hint' }, p.max_concurrency == null ? 'no limit'
      : `limit ${p.max_concurrency}${p.at_limit ? ': at its limit' : ''}`)),
    el('td', {}, p.due),
    el('td', {}, p.waiting), el('td', {}, p.unknown), el('td', {}, p.attempts_last_hour),
    el('td', {}, p.errors_last_hour), el('td', {}, p.last_error || ''),
    el('td', {}, el('button', { type: 'button', 'aria-label': `${p.enabled ? 'Pause' : 'Resume'} provider ${p.name}`,
      onclick: () => act(() => api('rpc/set_provider_enabled', { method: 'POST', body: { provider: p.name, enabled: !p.enabled } }),
        (r) => `Provider ${r.provider} ${r.enabled ? 'resumed' : 'paused'}`) }, p.enabled ? 'Pause' : 'Resume')))));
}

/* An action: run it, say what happened or show the refusal, then refresh the view. */
async function act(fn, describe, after) {
  try {
    const r = await fn();
    say(describe(r));
  } catch (e) {
    $('#message').textContent = '';
    showError(e);
  }
  await (after ? after() : refresh()).catch(showError);
}

/* ----------------------------------------------------------------- routing */

const loaders = { today: loadToday, calls: loadCalls, campaigns: loadCampaigns, providers: loadProviders };

function route() {
  const h = location.hash.replace(/^#/, '') || 'today';
  const [view, arg] = h.split('/');
  return { view: view === 'call' ? 'call' : (loaders[view] ? view : 'today'), arg };
}

async function refresh() {
  if (!token) return;
  const { view, arg } = route();
  if (view === 'call') await loadCall(arg);
  else await loaders[view]();
}

function show() {
  const { view } = route();
  for (const s of document.querySelectorAll('main > section')) s.hidden = !token || s.id !== view;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${view}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  $('#nav').hidden = !token;
  $('#login').hidden = !!token;
  $('#who').hidden = !token;
  $('#zone-note').hidden = !token;
  $('#zone-note').textContent = `Times are shown in ${ZONE} (this browser's time zone).`;
  if (token) {
    const c = claims(token);
    $('#role').textContent = `Signed in as ${c.role || '?'}${c.sub ? ` (${c.sub})` : ''}`
      + `${c.exp ? `, until ${when(c.exp * 1000)}` : ''}`;
  }
  clearInterval(timer);
  if (!token) return;
  refresh().catch(showError);
  timer = setInterval(() => refresh().catch(showError), POLL_MS);
}

$('#login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('#token').value.trim();
  $('#token').value = '';
  sessionStorage.setItem('pg_dialer_token', token);
  say('');
  show();
});
$('#logout').addEventListener('click', () => {
  token = '';
  sessionStorage.removeItem('pg_dialer_token');
  show();
  $('#token').focus();
});
$('#filter').addEventListener('submit', (ev) => { ev.preventDefault(); loadCalls().catch(showError); });
$('#cancel').addEventListener('click', () => act(() => api('rpc/cancel_call', { method: 'POST', body: { id: currentCall.id } }),
  (r) => `Call ${r.id} canceled`));
$('#retry').addEventListener('click', () => act(() => api('rpc/retry_call', { method: 'POST', body: { id: currentCall.id } }),
  (r) => `Call ${r.id} requeued`));
window.addEventListener('hashchange', () => { $('#error').textContent = ''; $('#message').textContent = ''; show(); });
show();
