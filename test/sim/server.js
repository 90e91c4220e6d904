#!/usr/bin/env node
'use strict';
/*
 * pg_dialer provider simulators (test only): a Twilio-compatible REST API, a customer's
 * AI-call backend and a generic voice API, all on 127.0.0.1, with switchable faults and a
 * control API under /__sim/. Plain node core; the only dependency is the `twilio` package,
 * used as the reference for X-Twilio-Signature on simulated status callbacks.
 *
 *   const { startSimulator } = require('./server');
 *   const sim = await startSimulator({ kind: 'twilio', port: 0 });
 *   ... sim.url, sim.port, sim.control.stats(), await sim.close()
 *
 *   node test/sim/server.js --kind twilio --port 0 --ready-file /tmp/sim.json
 *
 * See test/sim/README.md for the control API and the fault modes.
 *
 * Hot path rules (the W1 benchmark pushes >= 5,000 requests/s through one simulator): no
 * logging per request, no per-request allocation beyond parsing the body and building the
 * answer, bounded memory (request log is a capped ring; counts are one Map entry per call id).
 */

const http = require('node:http');
const https = require('node:https');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');

const KINDS = ['twilio', 'backend', 'voice_api'];
const FAULT_MODES = ['none', 'delay', 'status429', 'status500', 'status503', 'hang', 'reset',
  'oversized', 'invalid_json', 'reset_reused'];
const TWILIO_EVENTS = ['initiated', 'ringing', 'answered', 'completed'];
const E164 = /^\+[1-9][0-9]{1,14}$/;
const MAX_REQUEST_BODY = 1 << 20;     // 1 MB: anything larger gets 413

const DEFAULTS = {
  kind: 'twilio',
  host: '127.0.0.1',
  port: 0,
  latency: 0,              // ms added before every answer (0 = answer at once)
  logLimit: 1000,          // requests kept in the ring buffer; 0 = no request log at all
  logHeaders: true,        // keep headers in the log entries
  maxCalls: 100000,        // calls kept for GET/list/idempotency; oldest evicted beyond this
  // twilio
  accountSid: 'AC0123456789abcdef0123456789abcdef',
  authToken: '0123456789abcdef0123456789abcdef',
  apiKeys: [],             // [{sid: 'SK...', secret: '...'}]
  invalidNumbers: [],      // To numbers answered with 21211 although well formed
  callbacks: false,        // send status callbacks to StatusCallback
  callbackTarget: null,    // deliver callbacks here, signed over the original URL: an origin
                           // ('http://127.0.0.1:8080': StatusCallback's path kept) or a full URL
                           // ('http://127.0.0.1:8080/twilio/status-callback': that path); see callbackUrl
  callbackDelays: { initiated: 0, ringing: 20, answered: 20, completed: 40 }, // ms after the previous step
  callDuration: 7,         // seconds reported in CallDuration for answered calls
  outcomes: { 1: 'no-answer', 2: 'busy' }, // longest matching suffix of To wins
  defaultOutcome: 'completed',
  answeredBy: 'human',     // AnsweredBy on answered calls when MachineDetection was requested
  answeredByNumbers: {},   // AnsweredBy by the longest matching suffix of To (over answeredBy);
                           // 'absent': the call's callbacks carry none (no verdict)
  amdCallbackLate: false,  // AsyncAmd: the detection callback comes after the final status callback
  amdCallbackRepeat: 1,    // AsyncAmd: send the detection callback n times
  callbackRepeat: 1,       // send each callback n times (duplicate delivery)
  callbackReverse: false,  // deliver a call's callbacks in reverse order, after the last step
  callbackLogLimit: 1000,
  // backend
  token: null,             // required bearer token for backend (null = not checked)
  briefScript: 'Hello, this is an automated call for {to_number}. {purpose}',
  searchByKey: true,       // offer GET /call?idempotency_key= (false: 404, as a backend without it)
  // voice_api
  apiKey: 'vk_test_key',   // required bearer key for voice_api (null = not checked)
};

/* ------------------------------------------------------------------ helpers */

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

let rfcCacheSec = -1;
let rfcCacheStr = '';
function rfc2822(ms = Date.now()) {
  const s = Math.floor(ms / 1000);
  if (s === rfcCacheSec) return rfcCacheStr;
  const str = new Date(s * 1000).toUTCString().replace('GMT', '+0000');
  if (ms >= Date.now() - 1000) { rfcCacheSec = s; rfcCacheStr = str; }
  return str;
}

function parseForm(text) {
  const out = Object.create(null);
  if (!text) return out;
  for (const [k, v] of new URLSearchParams(text)) {
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = [prev, v];
  }
  return out;
}

function firstOf(v) { return Array.isArray(v) ? v[0] : v; }
function listOf(v) { return v === undefined ? [] : (Array.isArray(v) ? v : [v]); }

function queryParam(qs, name) {
  if (!qs || qs.indexOf(name + '=') < 0) return undefined;
  const v = new URLSearchParams(qs).get(name);
  return v === null ? undefined : v;
}

function sendJson(res, status, obj, extraHeaders) {
  if (res.destroyed || res.writableEnded) return;
  const body = JSON.stringify(obj);
  const headers = { 'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body) };
  if (extraHeaders) Object.assign(headers, extraHeaders);
  res.writeHead(status, headers);
  res.end(body);
}

function isHttpUrl(s) {
  if (typeof s !== 'string' || !/^https?:\/\//i.test(s)) return false;
  try { return Boolean(new URL(s).hostname); } catch { return false; }
}

/*
 * Checks a callbackTarget: null, or an http(s) URL that is either an origin or the full URL
 * of the endpoint, without a query string or fragment (the query comes from each call's
 * StatusCallback).  Returns the parsed URL (or null); throws a message naming what is wrong.
 */
function parseCallbackTarget(v) {
  if (v === null || v === undefined) return null;
  const example = 'an origin such as http://127.0.0.1:8080, or the full URL of the endpoint such as '
    + 'http://127.0.0.1:8080/twilio/status-callback';
  let u;
  try { u = new URL(String(v)); } catch { u = null; }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    throw new Error(`callback target ${JSON.stringify(v)} is not an http(s) URL: give ${example}`);
  }
  if (u.search || u.hash || /[?#]/.test(String(v))) {
    throw new Error(`callback target ${JSON.stringify(v)} has a query string or fragment: give ${example}; `
      + 'the query string (call_id=...) comes from each call\'s StatusCallback');
  }
  return u;
}

/*
 * Where a callback for the StatusCallback URL `url` is delivered when a target is set: the
 * target's origin, then the target's path when it has one (the user pasted the endpoint's full
 * URL), else the StatusCallback's path; then the StatusCallback's query string.
 */
function callbackUrl(target, url) {
  const u = new URL(url);
  const p = target.pathname === '/' ? u.pathname : target.pathname;
  return new URL(target.origin + p + u.search);
}

function twilioError(code, message, status) {
  return { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status };
}

/* ------------------------------------------------------------------ kinds */

/*
 * Each kind: route(method, path) -> {name, template, placing, handle}, callIdOf(ctx),
 * toOf(body), successStatus(route), errorBody(status, reason).
 * `placing` marks the route whose per-call-id count is "the number of times this call was
 * placed" (GET /__sim/counts, duplicate detection in /__sim/stats).
 */

function twilioKind(sim) {
  const cfg = sim.cfg;
  const sidPrefix = crypto.randomBytes(8).toString('hex');
  let sidCounter = 0;
  const newSid = () => 'CA' + sidPrefix + (++sidCounter).toString(16).padStart(16, '0');

  let goodAuth = new Set();
  function rebuildAuth() {
    goodAuth = new Set();
    goodAuth.add('Basic ' + Buffer.from(`${cfg.accountSid}:${cfg.authToken}`).toString('base64'));
    for (const k of cfg.apiKeys || []) {
      goodAuth.add('Basic ' + Buffer.from(`${k.sid}:${k.secret}`).toString('base64'));
    }
  }
  rebuildAuth();

  function authOk(header) {
    if (!header) return false;
    if (goodAuth.has(header)) return true;
    const m = /^Basic\s+(.+)$/i.exec(header);
    if (!m) return false;
    const dec = Buffer.from(m[1].trim(), 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i < 0) return false;
    const user = dec.slice(0, i); const pass = dec.slice(i + 1);
    if (user === cfg.accountSid && pass === cfg.authToken) return true;
    return (cfg.apiKeys || []).some((k) => k.sid === user && k.secret === pass);
  }

  const base = '/2010-04-01/Accounts/';
  const T_CREATE = '/2010-04-01/Accounts/{AccountSid}/Calls.json';
  const T_CALL = '/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json';

  function resource(c) {
    const acc = cfg.accountSid;
    const uriBase = `/2010-04-01/Accounts/${acc}/Calls/${c.sid}`;
    return {
      account_sid: acc, annotation: null, answered_by: c.answered_by || null,
      api_version: '2010-04-01', caller_name: null,
      date_created: rfc2822(c.created_ms), date_updated: rfc2822(c.updated_ms),
      direction: 'outbound-api', duration: c.duration == null ? null : String(c.duration),
      end_time: c.end_ms ? rfc2822(c.end_ms) : null, forwarded_from: null,
      from: c.from, from_formatted: c.from, group_sid: null, parent_call_sid: null,
      phone_number_sid: null, price: null, price_unit: 'USD', queue_time: '0', sid: c.sid,
      start_time: c.start_ms ? rfc2822(c.start_ms) : null, status: c.status,
      subresource_uris: {
        notifications: `${uriBase}/Notifications.json`, recordings: `${uriBase}/Recordings.json`,
        payments: `${uriBase}/Payments.json`, events: `${uriBase}/Events.json`,
        siprec: `${uriBase}/Siprec.json`, streams: `${uriBase}/Streams.json`,
        transcriptions: `${uriBase}/Transcriptions.json`,
        user_defined_message_subscriptions: `${uriBase}/UserDefinedMessageSubscriptions.json`,
        user_defined_messages: `${uriBase}/UserDefinedMessages.json`,
      },
      to: c.to, to_formatted: c.to, trunk_sid: null, uri: `${uriBase}.json`,
    };
  }

  function bad(res, code, message) { sendJson(res, 400, twilioError(code, message, 400)); }

  function unauthorized(res) {
    sendJson(res, 401, twilioError(20003, 'Authenticate', 401),
      { 'WWW-Authenticate': 'Basic realm="Twilio API"' });
  }

  function notFound(res, p) {
    sendJson(res, 404, twilioError(20404, `The requested resource ${p} was not found`, 404));
  }

  function create(ctx, res) {
    if (!authOk(ctx.headers.authorization) || ctx.params.account !== cfg.accountSid) return unauthorized(res);
    if (ctx.parseError) return bad(res, 21200, 'Unable to parse request body');
    const b = ctx.body;
    const to = firstOf(b.To); const from = firstOf(b.From);
    if (!to) return bad(res, 21201, "No 'To' number is specified");
    if (!from) return bad(res, 21213, "No 'From' number is specified");
    const toOk = E164.test(to) || /^(client|sip):\S+$/.test(to);
    if (!toOk || cfg.invalidNumbers.includes(to)) {
      return bad(res, 21211, `Invalid 'To' Phone Number: ${to}`);
    }
    if (!E164.test(from) && !/^client:\S+$/.test(from)) {
      return bad(res, 21212, `Invalid 'From' Phone Number: ${from}`);
    }
    const url = firstOf(b.Url); const twiml = firstOf(b.Twiml); const app = firstOf(b.ApplicationSid);
    if (url === undefined && twiml === undefined && app === undefined) {
      return bad(res, 21205, 'Url parameter is required.');
    }
    if (url !== undefined && !isHttpUrl(url)) return bad(res, 21205, `Url is not a valid URL: ${url}`);
    if (twiml !== undefined && twiml.length > 4000) {
      return bad(res, 21200, `Twiml is ${twiml.length} characters, the limit is 4000`);
    }
    const sc = firstOf(b.StatusCallback);
    if (sc !== undefined && !isHttpUrl(sc)) return bad(res, 21609, `Invalid StatusCallback url: ${sc}`);
    for (const m of ['Method', 'StatusCallbackMethod', 'FallbackMethod']) {
      const v = firstOf(b[m]);
      if (v !== undefined && v !== 'GET' && v !== 'POST') return bad(res, 21200, `Invalid ${m}: ${v}`);
    }
    const events = listOf(b.StatusCallbackEvent);
    for (const e of events) {
      if (!TWILIO_EVENTS.includes(e)) return bad(res, 21200, `Invalid StatusCallbackEvent: ${e}`);
    }
    const timeout = firstOf(b.Timeout);
    if (timeout !== undefined && !/^[0-9]+$/.test(timeout)) return bad(res, 21200, `Invalid Timeout: ${timeout}`);
    const md = firstOf(b.MachineDetection);
    if (md !== undefined && md !== 'Enable' && md !== 'DetectMessageEnd') {
      return bad(res, 21200, `Invalid MachineDetection: ${md}`);
    }
    const asyncAmd = firstOf(b.AsyncAmd);
    if (asyncAmd !== undefined && asyncAmd !== 'true' && asyncAmd !== 'false') return bad(res, 21200, `Invalid AsyncAmd: ${asyncAmd}`);
    const amdCb = firstOf(b.AsyncAmdStatusCallback);
    if (amdCb !== undefined && !isHttpUrl(amdCb)) return bad(res, 21200, `Invalid AsyncAmdStatusCallback: ${amdCb}`);
    for (const f of ['MachineDetectionTimeout', 'MachineDetectionSpeechThreshold', 'MachineDetectionSpeechEndThreshold',
      'MachineDetectionSilenceTimeout']) {
      const v = firstOf(b[f]);
      if (v !== undefined && !/^[0-9]+$/.test(v)) return bad(res, 21200, `Invalid ${f}: ${v}`);
    }
    const t = Date.now();
    const call = { sid: newSid(), to, from, status: 'queued', created_ms: t, updated_ms: t,
      call_id: ctx.callId, duration: null, machine_detection: md,
      async_amd: md !== undefined && firstOf(b.AsyncAmd) === 'true' ? firstOf(b.AsyncAmdStatusCallback) || null : null };
    sim.storeCall(call.sid, call);
    sendJson(res, 201, resource(call));
    if (cfg.callbacks) sim.callbacks.schedule(call, sc, firstOf(b.StatusCallbackMethod) || 'POST', events);
  }

  function fetchCall(ctx, res) {
    if (!authOk(ctx.headers.authorization) || ctx.params.account !== cfg.accountSid) return unauthorized(res);
    const call = sim.calls.get(ctx.params.sid);
    if (!call) return notFound(res, ctx.path);
    sendJson(res, 200, resource(call));
  }

  function updateCall(ctx, res) {
    if (!authOk(ctx.headers.authorization) || ctx.params.account !== cfg.accountSid) return unauthorized(res);
    const call = sim.calls.get(ctx.params.sid);
    if (!call) return notFound(res, ctx.path);
    const s = firstOf(ctx.body.Status);
    if (s !== undefined) {
      if (s !== 'canceled' && s !== 'completed') return bad(res, 21218, `Invalid Status: ${s}`);
      const live = ['queued', 'ringing', 'in-progress'].includes(call.status);
      if (!live) return bad(res, 21220, 'Call is not in-progress. Cannot redirect.');
      call.status = call.status === 'in-progress' || s === 'completed' ? 'completed' : 'canceled';
      call.updated_ms = call.end_ms = Date.now();
      call.canceled = true;
    }
    sendJson(res, 200, resource(call));
  }

  // A StartTime filter value: a UTC day (YYYY-MM-DD) or an instant; null when unreadable.
  function timeFilter(v) {
    if (/^\d{4}-\d{2}-\d{2}$/.test(v)) return { day: v };
    const ms = Date.parse(v);
    return Number.isNaN(ms) ? null : { ms };
  }
  const dayOf = (ms) => new Date(ms).toISOString().slice(0, 10);

  // GET Calls.json: To, From, Status and StartTime / StartTime> (on or after) / StartTime<
  // (before), each a day or an instant; newest first, paged by PageSize and Page. The call's
  // start is its start time, or its creation while it has not started (the simulator does
  // not model Twilio's queueing delay).
  function list(ctx, res) {
    if (!authOk(ctx.headers.authorization) || ctx.params.account !== cfg.accountSid) return unauthorized(res);
    const q = new URLSearchParams(ctx.query);
    const to = q.get('To'); const from = q.get('From'); const status = q.get('Status');
    const pageSize = Math.min(Math.max(parseInt(q.get('PageSize') || '50', 10) || 50, 1), 1000);
    const pageNo = Math.max(parseInt(q.get('Page') || '0', 10) || 0, 0);
    const filters = [];
    for (const [name, cmp] of [['StartTime', 'on'], ['StartTime>', 'after'], ['StartTime<', 'before']]) {
      const v = q.get(name);
      if (v === null) continue;
      const f = timeFilter(v);
      if (!f) return bad(res, 20001, `Invalid ${name}: ${v}`);
      filters.push({ ...f, cmp });
    }
    const out = [];
    for (const c of sim.calls.values()) {
      if (to && c.to !== to) continue;
      if (from && c.from !== from) continue;
      if (status && c.status !== status) continue;
      const start = c.start_ms || c.created_ms;
      if (!filters.every((f) => {
        const a = f.day !== undefined ? dayOf(start) : start;
        const b = f.day !== undefined ? f.day : f.ms;
        return f.cmp === 'on' ? a === b : f.cmp === 'after' ? a >= b : a < b;
      })) continue;
      out.push(c);
    }
    out.reverse(); // newest first, like Twilio
    const page = out.slice(pageNo * pageSize, (pageNo + 1) * pageSize).map(resource);
    const base = `/2010-04-01/Accounts/${cfg.accountSid}/Calls.json`;
    const keep = [...q.entries()].filter(([k]) => k !== 'Page' && k !== 'PageSize' && k !== 'PageToken');
    const uriOf = (n) => `${base}?${new URLSearchParams([...keep, ['PageSize', String(pageSize)], ['Page', String(n)]])}`;
    const more = out.length > (pageNo + 1) * pageSize;
    sendJson(res, 200, { calls: page, end: pageNo * pageSize + Math.max(page.length - 1, 0), first_page_uri: uriOf(0),
      next_page_uri: more ? uriOf(pageNo + 1) : null, page: pageNo, page_size: pageSize,
      previous_page_uri: pageNo > 0 ? uriOf(pageNo - 1) : null, start: pageNo * pageSize, uri: uriOf(pageNo) });
  }

  const R_CREATE = { name: 'create_call', template: T_CREATE, placing: true, handle: create };
  const R_LIST = { name: 'list_calls', template: T_CREATE, handle: list };
  const R_FETCH = { name: 'fetch_call', template: T_CALL, handle: fetchCall };
  const R_UPDATE = { name: 'update_call', template: T_CALL, handle: updateCall };

  return {
    placingTemplate: T_CREATE,
    formBodies: true,
    rebuildAuth,
    route(method, p) {
      if (!p.startsWith(base)) return null;
      const rest = p.slice(base.length);
      const slash = rest.indexOf('/');
      if (slash < 0) return null;
      const account = rest.slice(0, slash);
      const tail = rest.slice(slash + 1);
      if (tail === 'Calls.json') {
        if (method === 'POST') return { r: R_CREATE, params: { account } };
        if (method === 'GET') return { r: R_LIST, params: { account } };
        return null;
      }
      const m = /^Calls\/([A-Za-z0-9]+)\.json$/.exec(tail);
      if (m) {
        if (method === 'GET') return { r: R_FETCH, params: { account, sid: m[1] } };
        if (method === 'POST') return { r: R_UPDATE, params: { account, sid: m[1] } };
      }
      return null;
    },
    callIdOf(ctx) {
      const sc = ctx.body && firstOf(ctx.body.StatusCallback);
      if (typeof sc === 'string') {
        const q = sc.indexOf('?');
        if (q >= 0) {
          const id = queryParam(sc.slice(q + 1), 'call_id');
          if (id !== undefined) return id;
        }
      }
      return ctx.headers['x-dialer-call-id'];
    },
    toOf(body) { return body ? firstOf(body.To) : undefined; },
    successStatus(r) { return r === R_CREATE ? 201 : 200; },
    errorBody(status) {
      const map = { 429: [20429, 'Too Many Requests'], 500: [20500, 'Internal Server Error'],
        503: [20503, 'Service Unavailable'] };
      const [code, msg] = map[status] || [20500, 'Error'];
      return twilioError(code, msg, status);
    },
    notFound(ctx, res) { notFound(res, ctx.path); },
  };
}

function bearerOk(header, expected) {
  if (expected == null) return true;
  return header === `Bearer ${expected}`;
}

function backendKind(sim) {
  const cfg = sim.cfg;
  let n = 0;
  const prefix = crypto.randomBytes(4).toString('hex');
  const newId = () => `bk_${prefix}_${++n}`;

  function checkJson(ctx, res) {
    if (!bearerOk(ctx.headers.authorization, cfg.token)) {
      sendJson(res, 401, { error: 'unauthorized', detail: 'missing or invalid bearer token' });
      return false;
    }
    if (ctx.parseError || !ctx.body || typeof ctx.body !== 'object' || Array.isArray(ctx.body)) {
      sendJson(res, 400, { error: 'invalid_body', detail: 'expected a JSON object' });
      return false;
    }
    const to = ctx.body.to_number;
    if (typeof to !== 'string' || !E164.test(to)) {
      sendJson(res, 400, { error: 'invalid_to_number', detail: `to_number must be E.164, got ${JSON.stringify(to)}` });
      return false;
    }
    return true;
  }

  function start(ctx, res) {
    if (!checkJson(ctx, res)) return;
    const b = ctx.body;
    if (typeof b.script !== 'string' || b.script.length === 0) {
      return sendJson(res, 400, { error: 'missing_script', detail: 'script is required' });
    }
    const key = ctx.headers['idempotency-key'];
    if (key !== undefined) {
      const prev = sim.idem.get(key);
      if (prev) {
        prev.count++;
        sim.stats.idempotentReplays++;
        return sendJson(res, 200, { call_id: prev.call_id, status: 'started' });
      }
    }
    const id = newId();
    const t = Date.now();
    sim.storeCall(id, { call_id: id, to_number: b.to_number, dialer_call_id: ctx.callId,
      status: 'started', created_ms: t, idempotency_key: key });
    if (key !== undefined) sim.storeIdem(key, { call_id: id, count: 1 });
    sendJson(res, 200, { call_id: id, status: 'started' });
  }

  function brief(ctx, res) {
    if (!checkJson(ctx, res)) return;
    const b = ctx.body;
    const script = String(cfg.briefScript)
      .replace(/\{(\w+)\}/g, (_, k) => (b[k] == null ? '' : String(b[k]))).trim();
    sendJson(res, 200, { script });
  }

  function getCall(ctx, res) {
    const c = sim.calls.get(ctx.params.id);
    if (!c) return sendJson(res, 404, { error: 'not_found' });
    sendJson(res, 200, { call_id: c.call_id, status: c.status, to_number: c.to_number });
  }

  // GET /call?idempotency_key=K: the calls started with that Idempotency-Key (the optional
  // lookup pg_dialer uses for an unknown call without a call id); 404 when the simulator is
  // configured without it (searchByKey: false), like a backend that does not offer it.
  function findByKey(ctx, res) {
    if (!cfg.searchByKey) return sendJson(res, 404, { error: 'not_found', path: ctx.path });
    if (!bearerOk(ctx.headers.authorization, cfg.token)) {
      return sendJson(res, 401, { error: 'unauthorized', detail: 'missing or invalid bearer token' });
    }
    const key = new URLSearchParams(ctx.query).get('idempotency_key');
    if (!key) return sendJson(res, 400, { error: 'missing_idempotency_key' });
    const calls = [];
    for (const c of sim.calls.values()) {
      if (c.idempotency_key === key) {
        calls.push({ call_id: c.call_id, status: c.status, to_number: c.to_number, idempotency_key: key });
      }
    }
    sendJson(res, 200, { calls });
  }

  const R_FIND = { name: 'find_calls', template: '/call', handle: findByKey };
  const R_START = { name: 'start', template: '/call/start', placing: true, handle: start };
  const R_BRIEF = { name: 'brief', template: '/call/brief', handle: brief };
  const R_GET = { name: 'get_call', template: '/call/{id}', handle: getCall };
  return {
    placingTemplate: '/call/start',
    route(method, p) {
      if (method === 'POST' && p === '/call/start') return { r: R_START, params: {} };
      if (method === 'POST' && p === '/call/brief') return { r: R_BRIEF, params: {} };
      if (method === 'GET' && p.startsWith('/call/')) return { r: R_GET, params: { id: p.slice(6) } };
      if (method === 'GET' && p === '/call') return { r: R_FIND, params: {} };
      return null;
    },
    callIdOf: jsonCallId,
    toOf(body) { return body && typeof body === 'object' ? body.to_number : undefined; },
    successStatus() { return 200; },
    errorBody(status) { return { error: http.STATUS_CODES[status] || 'error', status }; },
    notFound(ctx, res) { sendJson(res, 404, { error: 'not_found', path: ctx.path }); },
  };
}

function voiceApiKind(sim) {
  const cfg = sim.cfg;
  let n = 0;
  const prefix = crypto.randomBytes(4).toString('hex');

  function create(ctx, res) {
    if (!bearerOk(ctx.headers.authorization, cfg.apiKey)) {
      return sendJson(res, 401, { error: 'unauthorized', message: 'invalid API key' });
    }
    const b = ctx.body;
    if (ctx.parseError || !b || typeof b !== 'object' || Array.isArray(b)) {
      return sendJson(res, 400, { error: 'invalid_body', message: 'expected a JSON object' });
    }
    if (typeof b.phone_number !== 'string' || !E164.test(b.phone_number)) {
      return sendJson(res, 400, { error: 'invalid_phone_number',
        message: `phone_number must be E.164, got ${JSON.stringify(b.phone_number)}` });
    }
    if (typeof b.message !== 'string' || b.message.length === 0) {
      return sendJson(res, 400, { error: 'missing_message', message: 'message is required' });
    }
    const id = `vc_${prefix}_${++n}`;
    sim.storeCall(id, { call_id: id, phone_number: b.phone_number, dialer_call_id: ctx.callId,
      status: 'queued', created_ms: Date.now() });
    sendJson(res, 201, { call_id: id, status: 'queued' });
  }

  function getCall(ctx, res) {
    if (!bearerOk(ctx.headers.authorization, cfg.apiKey)) {
      return sendJson(res, 401, { error: 'unauthorized', message: 'invalid API key' });
    }
    const c = sim.calls.get(ctx.params.id);
    if (!c) return sendJson(res, 404, { error: 'not_found' });
    sendJson(res, 200, { call_id: c.call_id, status: c.status, phone_number: c.phone_number });
  }

  const R_CREATE = { name: 'create_call', template: '/calls', placing: true, handle: create };
  const R_GET = { name: 'get_call', template: '/calls/{id}', handle: getCall };
  return {
    placingTemplate: '/calls',
    route(method, p) {
      if (p === '/calls' && method === 'POST') return { r: R_CREATE, params: {} };
      if (method === 'GET' && p.startsWith('/calls/')) return { r: R_GET, params: { id: p.slice(7) } };
      return null;
    },
    callIdOf: jsonCallId,
    toOf(body) { return body && typeof body === 'object' ? body.phone_number : undefined; },
    successStatus(r) { return r === R_CREATE ? 201 : 200; },
    errorBody(status) { return { error: http.STATUS_CODES[status] || 'error', status }; },
    notFound(ctx, res) { sendJson(res, 404, { error: 'not_found', path: ctx.path }); },
  };
}

function jsonCallId(ctx) {
  const b = ctx.body;
  if (b && typeof b === 'object') {
    const m = b.metadata;
    if (m && typeof m === 'object' && m.call_id != null) return String(m.call_id);
    if (b.call_id != null) return String(b.call_id);
  }
  const h = ctx.headers['x-dialer-call-id'];
  return h === undefined ? undefined : h;
}

/* ------------------------------------------------------------------ Twilio status callbacks */

function callbackEngine(sim) {
  const cfg = sim.cfg;
  const twilio = require('twilio'); // the reference implementation of X-Twilio-Signature
  const agents = {
    'http:': new http.Agent({ keepAlive: true, maxSockets: 256 }),
    'https:': new https.Agent({ keepAlive: true, maxSockets: 256 }),
  };
  const timers = new Set();
  const st = { scheduled: 0, sent: 0, ok: 0, non2xx: 0, errors: 0, log: [], pending: 0 };

  function outcomeFor(to) {
    const rules = cfg.outcomes || {};
    let best = null; let bestLen = -1;
    for (const suffix of Object.keys(rules)) {
      if (to.endsWith(suffix) && suffix.length > bestLen) { best = rules[suffix]; bestLen = suffix.length; }
    }
    return best || cfg.defaultOutcome || 'completed';
  }

  function steps(outcome) {
    switch (outcome) {
      case 'completed': return [['initiated', 'initiated'], ['ringing', 'ringing'],
        ['answered', 'in-progress'], ['completed', 'completed']];
      case 'no-answer': return [['initiated', 'initiated'], ['ringing', 'ringing'], ['completed', 'no-answer']];
      case 'canceled': return [['initiated', 'initiated'], ['ringing', 'ringing'], ['completed', 'canceled']];
      case 'busy': return [['initiated', 'initiated'], ['completed', 'busy']];
      case 'failed': return [['completed', 'failed']];
      default: throw new Error(`unknown outcome ${outcome}`);
    }
  }

  // AnsweredBy of a detected call: the longest suffix of To in answeredByNumbers, else answeredBy
  // ('absent': none)
  function answeredByFor(to) {
    const rules = cfg.answeredByNumbers || {};
    let best = cfg.answeredBy; let bestLen = -1;
    for (const suffix of Object.keys(rules)) {
      if (to.endsWith(suffix) && suffix.length > bestLen) { best = rules[suffix]; bestLen = suffix.length; }
    }
    return best === 'absent' ? null : best;
  }

  // The asynchronous detection's callback (AsyncAmdStatusCallback): who answered, on its own,
  // signed as a status callback is; sent amdCallbackRepeat times.  Nothing when there is no verdict.
  async function deliverVerdict(call) {
    if (!call.async_amd || !call.verdict) return;
    const p = { AccountSid: cfg.accountSid, CallSid: call.sid, AnsweredBy: call.verdict,
      MachineDetectionDuration: '2150' };
    for (let k = 0; k < (cfg.amdCallbackRepeat || 1); k++) await deliver(call, call.async_amd, 'POST', p, 'amd');
  }

  function later(ms, fn) {
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
  }

  function country(num) { return num.startsWith('+1') ? 'US' : ''; }

  function params(call, status, seq) {
    const p = {
      AccountSid: cfg.accountSid, ApiVersion: '2010-04-01', CallSid: call.sid, CallStatus: status,
      Called: call.to, CalledCity: '', CalledCountry: country(call.to), CalledState: '', CalledZip: '',
      Caller: call.from, CallerCity: '', CallerCountry: country(call.from), CallerState: '', CallerZip: '',
      CallbackSource: 'call-progress-events', Direction: 'outbound-api',
      From: call.from, FromCity: '', FromCountry: country(call.from), FromState: '', FromZip: '',
      SequenceNumber: String(seq), Timestamp: rfc2822(),
      To: call.to, ToCity: '', ToCountry: country(call.to), ToState: '', ToZip: '',
    };
    if (status === 'completed') {
      p.CallDuration = String(call.duration || 0);
      p.Duration = String(Math.ceil((call.duration || 0) / 60));
      p.SipResponseCode = '200';
    } else if (status === 'busy') p.SipResponseCode = '486';
    else if (status === 'no-answer' || status === 'canceled') p.SipResponseCode = '487';
    else if (status === 'failed') p.SipResponseCode = '500';
    if (call.answered_by && (status === 'in-progress' || status === 'completed')) p.AnsweredBy = call.answered_by;
    return p;
  }

  // Deliver one callback; resolves when answered or failed. Never throws.
  function deliver(call, signedUrl, method, p, event) {
    return new Promise((resolve) => {
      let url = signedUrl; let body = null; let sig;
      if (method === 'GET') {
        const qs = new URLSearchParams(p).toString();
        url = signedUrl + (signedUrl.includes('?') ? '&' : '?') + qs;
        sig = twilio.getExpectedTwilioSignature(cfg.authToken, url, {});
      } else {
        body = new URLSearchParams(p).toString();
        sig = twilio.getExpectedTwilioSignature(cfg.authToken, signedUrl, p);
      }
      let target;
      try { // to the target when set; the signature covers `url` either way
        target = cfg.callbackTarget ? callbackUrl(parseCallbackTarget(cfg.callbackTarget), url) : new URL(url);
      } catch (e) {
        record(call, event, p, url, null, `bad url: ${e.message}`); resolve(); return;
      }
      const headers = {
        'X-Twilio-Signature': sig, 'User-Agent': 'TwilioProxy/1.1', Accept: '*/*',
        'I-Twilio-Idempotency-Token': crypto.randomUUID(),
      };
      if (body !== null) {
        headers['Content-Type'] = 'application/x-www-form-urlencoded; charset=utf-8';
        headers['Content-Length'] = Buffer.byteLength(body);
      }
      const mod = target.protocol === 'https:' ? https : http;
      st.sent++; st.pending++;
      const req = mod.request(target, { method, headers, agent: agents[target.protocol], timeout: 15000 }, (res) => {
        res.resume();
        res.on('end', () => {
          st.pending--;
          if (res.statusCode >= 200 && res.statusCode < 300) st.ok++; else st.non2xx++;
          record(call, event, p, url, res.statusCode, null);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => {
        st.pending--; st.errors++;
        record(call, event, p, url, null, e.message);
        resolve();
      });
      req.end(body === null ? undefined : body);
    });
  }

  function record(call, event, p, url, status, error) {
    if (!cfg.callbackLogLimit) return;
    st.log.push({ call_sid: call.sid, call_id: call.call_id, event, call_status: p.CallStatus,
      sequence: Number(p.SequenceNumber), url, http_status: status, error, t_ms: Date.now() });
    if (st.log.length > cfg.callbackLogLimit) st.log.splice(0, st.log.length - cfg.callbackLogLimit);
  }

  function schedule(call, statusCallback, method, requested) {
    const outcome = outcomeFor(call.to);
    const plan = steps(outcome);
    const wanted = new Set(requested.length ? requested : ['completed']);
    const delays = cfg.callbackDelays || {};
    const outbox = [];
    let seq = 0;
    st.scheduled++;
    const run = async (i) => {
      if (call.canceled) return; // ended through the API (POST Calls/{sid}.json Status=...)
      const [event, status] = plan[i];
      const t = Date.now();
      call.updated_ms = t;
      if (status === 'in-progress') {
        call.status = 'in-progress'; call.start_ms = t;
        // synchronous detection: AnsweredBy rides on the status callbacks; asynchronous: on its own callback
        if (call.machine_detection) call.verdict = answeredByFor(call.to);
        if (call.machine_detection && !call.async_amd) call.answered_by = call.verdict;
      } else if (event === 'completed') {
        call.duration = status === 'completed' ? cfg.callDuration : 0;
        call.status = status; call.end_ms = t;
      } else if (status === 'ringing') call.status = 'ringing';
      if (statusCallback && wanted.has(event)) {
        const p = params(call, status, seq++);
        const m = method === 'GET' ? 'GET' : 'POST';
        if (cfg.callbackReverse) outbox.push([p, event]);
        else {
          for (let k = 0; k < (cfg.callbackRepeat || 1); k++) await deliver(call, statusCallback, m, p, event);
        }
      }
      if (status === 'in-progress' && !cfg.amdCallbackLate) await deliverVerdict(call);
      if (i + 1 === plan.length && cfg.amdCallbackLate) await deliverVerdict(call);
      if (i + 1 < plan.length) {
        later(delays[plan[i + 1][0]] || 0, () => run(i + 1));
      } else if (outbox.length) {
        const m = method === 'GET' ? 'GET' : 'POST';
        for (const [p, event] of outbox.reverse()) {
          for (let k = 0; k < (cfg.callbackRepeat || 1); k++) await deliver(call, statusCallback, m, p, event);
        }
      }
    };
    later(delays[plan[0][0]] || 0, () => run(0));
  }

  return {
    schedule,
    stats() {
      return { scheduled: st.scheduled, sent: st.sent, ok: st.ok, non2xx: st.non2xx,
        errors: st.errors, pending: st.pending, timers: timers.size };
    },
    log(limit) { return st.log.slice(-limit); },
    reset() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      Object.assign(st, { scheduled: 0, sent: 0, ok: 0, non2xx: 0, errors: 0, log: [] });
    },
    close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      agents['http:'].destroy(); agents['https:'].destroy();
    },
  };
}

/* ------------------------------------------------------------------ faults */

// A response that goes nowhere: with a fault's `create`, the route handles the request (the
// call is created, as a provider that received it would) and its answer is dropped.
function discardedAnswer() {
  return { destroyed: false, writableEnded: false, headersSent: false, statusCode: 0,
    writeHead(code) { this.statusCode = code; this.headersSent = true; return this; },
    setHeader() {}, write() { return true }, end() { this.writableEnded = true; }, on() { return this; } };
}

// The Retry-After header of a fault: retry_after seconds, or an HTTP date retry_after_date
// seconds from now (RFC 9110 allows both), or fallback seconds; none when neither is given.
function retryAfter(rule, fallback) {
  if (rule.retry_after_date !== undefined) {
    return { 'Retry-After': new Date(Date.now() + rule.retry_after_date * 1000).toUTCString() };
  }
  const ra = rule.retry_after === undefined ? fallback : rule.retry_after;
  return ra === undefined ? undefined : { 'Retry-After': String(ra) };
}

function normalizeRule(r) {
  if (!r || typeof r !== 'object') throw new Error('a fault rule must be an object');
  const mode = r.mode;
  if (!FAULT_MODES.includes(mode)) throw new Error(`unknown fault mode ${JSON.stringify(mode)}; one of ${FAULT_MODES.join(', ')}`);
  const rule = { mode };
  for (const k of ['ms', 'retry_after', 'retry_after_date', 'mb', 'count', 'status', 'served']) {
    if (r[k] !== undefined) {
      const v = Number(r[k]);
      if (!Number.isFinite(v) || v < 0) throw new Error(`fault ${k} must be a non-negative number`);
      rule[k] = v;
    }
  }
  if (mode === 'delay' && rule.ms === undefined) throw new Error('delay needs ms');
  if (mode === 'reset_reused' && rule.served === undefined) rule.served = 1;
  if (r.to !== undefined) rule.to = new Set(listOf(r.to).map(String));
  if (r.to_suffix !== undefined) rule.to_suffix = String(r.to_suffix);
  if (r.path !== undefined) rule.path = String(r.path);
  if (r.method !== undefined) rule.method = String(r.method).toUpperCase();
  if (r.content_length !== undefined) rule.content_length = Boolean(r.content_length);
  if (r.body !== undefined) rule.body = String(r.body);
  if (r.rst !== undefined) rule.rst = Boolean(r.rst);
  if (r.create !== undefined) rule.create = Boolean(r.create);
  rule.applied = 0;
  return rule;
}

function ruleView(r) {
  const o = { ...r };
  if (r.to) o.to = [...r.to];
  return o;
}

/* ------------------------------------------------------------------ the simulator */

async function startSimulator(options = {}) {
  const cfg = { ...DEFAULTS, ...options };
  cfg.callbackDelays = { ...DEFAULTS.callbackDelays, ...(options.callbackDelays || {}) };
  if (!KINDS.includes(cfg.kind)) throw new Error(`kind must be one of ${KINDS.join(', ')}`);
  parseCallbackTarget(cfg.callbackTarget);

  const sim = {
    cfg,
    calls: new Map(),
    idem: new Map(),
    stats: null,
    storeCall(id, c) {
      this.calls.set(id, c);
      if (this.calls.size > cfg.maxCalls) this.calls.delete(this.calls.keys().next().value);
    },
    storeIdem(key, v) {
      this.idem.set(key, v);
      if (this.idem.size > cfg.maxCalls) this.idem.delete(this.idem.keys().next().value);
    },
  };

  function freshStats() {
    return {
      started_ms: Date.now(), total: 0, byRoute: Object.create(null), byStatus: Object.create(null),
      noCallId: 0, idempotentReplays: 0, faultsApplied: Object.create(null), inFlight: 0,
      counts: new Map(),          // placing route: call id -> count
      firstArrival: new Map(),    // placing route: call id -> epoch microseconds of first arrival
      otherCounts: new Map(),     // other routes: template -> Map(call id -> count)
      log: [], logNext: 0, seq: 0,
    };
  }
  sim.stats = freshStats();
  let faults = [];
  const hung = new Set();
  const kind = cfg.kind === 'twilio' ? twilioKind(sim) : cfg.kind === 'backend' ? backendKind(sim) : voiceApiKind(sim);
  sim.callbacks = cfg.kind === 'twilio' ? callbackEngine(sim) : null;

  /* ---- keep-alive connections and per-number / per-attempt counts of the placing route ----
   * Every connection gets a number; ctx.conn is it, ctx.connRequest is this request's rank on
   * it (1 = the connection is fresh, 2+ = a reused keep-alive connection).  The `served`
   * matcher of a fault rule (and mode reset_reused, served=1 by default) applies only to a
   * request arriving on a connection that already served at least that many requests.
   * placings(by) counts the placing route per `to` number or per `call_id/attempt` (attempt:
   * backend `attempt`, voice_api `metadata.attempt`, else header X-Dialer-Attempt, else '-'),
   * counted when the request was read, before any fault, like counts(). */
  const CONN = Symbol('pg_dialer sim connection');
  let connSeq = 0;
  let placingCounts = { to: new Map(), attempt: new Map() };

  function noteConnection(ctx) {
    const sock = ctx.req.socket;
    if (!sock[CONN]) sock[CONN] = { id: ++connSeq, requests: 0 };
    ctx.conn = sock[CONN].id;
    ctx.connRequest = ++sock[CONN].requests;
  }

  function connectionServed(ctx, n) { return (ctx.connRequest || 1) - 1 >= n; }

  function attemptOf(ctx) {
    const b = ctx.body;
    if (b && typeof b === 'object' && !kind.formBodies) {
      if (b.attempt != null) return String(b.attempt);
      if (b.metadata && typeof b.metadata === 'object' && b.metadata.attempt != null) return String(b.metadata.attempt);
    }
    const h = ctx.headers['x-dialer-attempt'];
    return h === undefined ? '-' : String(h);
  }

  function countPlacing(ctx) {
    const bump = (m, k) => m.set(k, (m.get(k) || 0) + 1);
    bump(placingCounts.to, ctx.to === undefined ? '-' : String(ctx.to));
    bump(placingCounts.attempt, `${ctx.callId === undefined ? '-' : ctx.callId}/${attemptOf(ctx)}`);
  }

  function placings(by = 'to') {
    if (!placingCounts[by]) throw new Error(`placings by ${JSON.stringify(by)}: one of to, attempt`);
    return Object.fromEntries(placingCounts[by]);
  }

  function resetPlacings() { placingCounts = { to: new Map(), attempt: new Map() }; }
  /* ---- end of the keep-alive region ---- */

  function logEntry(ctx) {
    const st = sim.stats;
    if (!cfg.logLimit) return;
    const e = { seq: ctx.seq, method: ctx.method, path: ctx.url, route: ctx.template,
      headers: cfg.logHeaders ? ctx.headers : undefined, body: ctx.body, raw_body: ctx.parseError ? ctx.raw : undefined,
      call_id: ctx.callId, t_hr: ctx.tHr, t_ms: ctx.tMs, t_us: ctx.tUs, status: undefined, fault: undefined,
      conn: ctx.conn, conn_request: ctx.connRequest };
    ctx.entry = e;
    if (st.log.length < cfg.logLimit) st.log.push(e);
    else { st.log[st.logNext] = e; }
    st.logNext = (st.logNext + 1) % cfg.logLimit;
  }

  function recentLog(limit, filter) {
    const st = sim.stats;
    const arr = st.log.length < cfg.logLimit ? st.log.slice() : st.log.slice(st.logNext).concat(st.log.slice(0, st.logNext));
    const sel = filter ? arr.filter(filter) : arr;
    return sel.slice(Math.max(0, sel.length - limit)).map((e) => ({ ...e, t_hr: String(e.t_hr) }));
  }

  function pickFault(ctx) {
    if (faults.length === 0) return null;
    const to = ctx.to;
    for (let i = 0; i < faults.length; i++) {
      const r = faults[i];
      if (r.path && r.path !== ctx.path && r.path !== ctx.template) continue;
      if (r.method && r.method !== ctx.method) continue;
      if (r.to && !(to !== undefined && r.to.has(String(to)))) continue;
      if (r.to_suffix && !(typeof to === 'string' && to.endsWith(r.to_suffix))) continue;
      if (r.served !== undefined && !connectionServed(ctx, r.served)) continue;
      r.applied++;
      if (r.count !== undefined) {
        r.count--;
        if (r.count <= 0) faults.splice(i, 1);
      }
      return r;
    }
    return null;
  }

  function finish(ctx, res) {
    // called when the response is complete or the socket went away
    sim.stats.inFlight--;
    const code = res.headersSent ? res.statusCode : 0; // 0 = no answer (reset / hang / client gone)
    sim.stats.byStatus[code] = (sim.stats.byStatus[code] || 0) + 1;
    if (ctx.entry) ctx.entry.status = code;
  }

  function applyFault(rule, ctx, res) {
    const st = sim.stats;
    st.faultsApplied[rule.mode] = (st.faultsApplied[rule.mode] || 0) + 1;
    if (ctx.entry) ctx.entry.fault = rule.mode;
    const okStatus = rule.status || kind.successStatus(ctx.r);
    switch (rule.mode) {
      case 'none':
      case 'delay':
        return ctx.r.handle(ctx, res);
      case 'status429':
        return sendJson(res, 429, kind.errorBody(429), retryAfter(rule, 1));
      case 'status500':
        return sendJson(res, rule.status || 500, kind.errorBody(rule.status || 500));
      case 'status503':
        return sendJson(res, 503, kind.errorBody(503), retryAfter(rule));
      case 'hang':
        if (rule.create) ctx.r.handle(ctx, discardedAnswer());
        hung.add(res);
        res.on('close', () => hung.delete(res));
        return undefined;
      case 'reset':
      case 'reset_reused': {
        if (rule.create) ctx.r.handle(ctx, discardedAnswer());
        const s = ctx.req.socket;
        if (rule.rst !== false && typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
        else s.destroy();
        return undefined;
      }
      case 'invalid_json': {
        const body = rule.body !== undefined ? rule.body : '{"sid": "CA0000", "status": queued, <html>not json';
        res.writeHead(okStatus, { 'Content-Type': 'application/json; charset=utf-8',
          'Content-Length': Buffer.byteLength(body) });
        return res.end(body);
      }
      case 'oversized': {
        const total = Math.max(1, Math.round((rule.mb === undefined ? 2 : rule.mb) * 1048576));
        const head = '{"padding":"'; const tail = '"}';
        const chunk = Buffer.alloc(65536, 'x');
        const headers = { 'Content-Type': 'application/json; charset=utf-8' };
        if (rule.content_length) headers['Content-Length'] = total + head.length + tail.length;
        res.writeHead(okStatus, headers);
        res.write(head);
        let left = total;
        const pump = () => {
          while (left > 0) {
            if (res.destroyed) return;
            const n = Math.min(left, chunk.length);
            left -= n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', pump); return; }
          }
          res.end(tail);
        };
        return pump();
      }
      default:
        return ctx.r.handle(ctx, res);
    }
  }

  function dispatch(ctx, res) {
    const rule = pickFault(ctx);
    const wait = (cfg.latency || 0) + (rule && rule.ms ? rule.ms : 0);
    const go = () => {
      if (res.destroyed) return;
      try {
        if (rule) applyFault(rule, ctx, res); else ctx.r.handle(ctx, res);
      } catch (e) {
        sendJson(res, 500, { error: 'simulator_bug', message: String(e && e.stack || e) });
      }
    };
    if (wait > 0) setTimeout(go, wait); else go();
  }

  function onRequest(req, res) {
    const tHr = process.hrtime.bigint();
    const tMs = Date.now();
    const url = req.url;
    const qi = url.indexOf('?');
    const p = qi < 0 ? url : url.slice(0, qi);
    const ctx = { req, method: req.method, url, path: p, query: qi < 0 ? '' : url.slice(qi + 1),
      headers: req.headers, tHr, tMs, tUs: nowUs(), body: null, raw: null, parseError: false,
      callId: undefined, to: undefined, r: null, template: null, params: null, entry: null, seq: 0 };
    noteConnection(ctx);
    const chunks = [];
    let size = 0; let tooBig = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_REQUEST_BODY) { tooBig = true; return; }
      chunks.push(c);
    });
    req.on('end', () => {
      const st = sim.stats;
      st.total++;
      ctx.seq = ++st.seq;
      st.inFlight++;
      res.on('close', () => finish(ctx, res));
      const m = kind.route(ctx.method, p);
      if (m) { ctx.r = m.r; ctx.template = m.r.template; ctx.params = m.params; } else ctx.template = '(unmatched)';
      const key = m ? `${ctx.method} ${ctx.template}` : `${ctx.method} (unmatched)`;
      st.byRoute[key] = (st.byRoute[key] || 0) + 1;
      if (tooBig) { logEntry(ctx); return sendJson(res, 413, { error: 'request body too large' }); }
      const raw = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8');
      ctx.raw = raw;
      const ct = ctx.headers['content-type'] || '';
      if (raw.length === 0) ctx.body = kind.formBodies ? Object.create(null) : null;
      else if (ct.startsWith('application/x-www-form-urlencoded')) ctx.body = parseForm(raw);
      else if (ct.startsWith('application/json') || !kind.formBodies) {
        try { ctx.body = JSON.parse(raw); } catch { ctx.parseError = true; ctx.body = null; }
      } else { ctx.parseError = true; ctx.body = null; }
      ctx.callId = kind.callIdOf(ctx);
      if (ctx.callId !== undefined) {
        if (m && m.r.placing) {
          const n = st.counts.get(ctx.callId);
          if (n === undefined) { st.counts.set(ctx.callId, 1); st.firstArrival.set(ctx.callId, ctx.tUs); } else st.counts.set(ctx.callId, n + 1);
        } else {
          let mm = st.otherCounts.get(ctx.template);
          if (!mm) { mm = new Map(); st.otherCounts.set(ctx.template, mm); }
          mm.set(ctx.callId, (mm.get(ctx.callId) || 0) + 1);
        }
      } else if (m && m.r.placing) st.noCallId++;
      ctx.to = kind.toOf(ctx.body);
      if (m && m.r.placing) countPlacing(ctx);
      logEntry(ctx);
      if (!m) return kind.notFound(ctx, res);
      dispatch(ctx, res);
    });
  }

  /* -------------------------------------------------------------- control API */

  const control = {
    stats() {
      const st = sim.stats;
      const dups = [];
      for (const [id, n] of st.counts) if (n > 1) dups.push(id);
      const other = {};
      for (const [t, mm] of st.otherCounts) {
        let d = 0; for (const n of mm.values()) if (n > 1) d++;
        other[t] = { distinct_call_ids: mm.size, repeated_call_ids: d };
      }
      return {
        kind: cfg.kind, pid: process.pid, uptime_ms: Date.now() - st.started_ms,
        total: st.total, by_route: { ...st.byRoute }, by_status: { ...st.byStatus },
        placing_route: kind.placingTemplate,
        distinct_call_ids: st.counts.size, duplicate_call_ids: dups.slice(0, 10000),
        duplicate_count: dups.length, placing_without_call_id: st.noCallId,
        other_routes: other, idempotent_replays: st.idempotentReplays,
        in_flight: st.inFlight, hung: hung.size, faults_applied: { ...st.faultsApplied },
        faults_active: faults.length, latency: cfg.latency, calls_stored: sim.calls.size,
        log_size: st.log.length, log_limit: cfg.logLimit,
        callbacks: sim.callbacks ? sim.callbacks.stats() : undefined,
      };
    },
    requests(limit = 100, filter = {}) {
      const f = (filter.call_id !== undefined || filter.since !== undefined || filter.route !== undefined)
        ? (e) => (filter.call_id === undefined || e.call_id === filter.call_id)
          && (filter.since === undefined || e.seq > filter.since)
          && (filter.route === undefined || e.route === filter.route || e.path === filter.route)
        : null;
      return recentLog(limit, f);
    },
    counts(route) {
      const mm = route && route !== kind.placingTemplate ? sim.stats.otherCounts.get(route) : sim.stats.counts;
      return mm ? Object.fromEntries(mm) : {};
    },
    arrivals() { return Object.fromEntries(sim.stats.firstArrival); },
    placings(by) { return placings(by); },
    reset({ keep_faults = false } = {}) {
      sim.stats = freshStats();
      resetPlacings();
      sim.calls.clear(); sim.idem.clear();
      if (!keep_faults) faults = [];
      for (const res of hung) res.destroy();
      hung.clear();
      if (sim.callbacks) sim.callbacks.reset();
    },
    faults() { return faults.map(ruleView); },
    addFault(rule) { const r = normalizeRule(rule); faults.push(r); return ruleView(r); },
    setFaults(rules) { faults = listOf(rules).map(normalizeRule); return faults.map(ruleView); },
    clearFaults() { faults = []; },
    releaseHung() { const n = hung.size; for (const res of hung) res.destroy(); hung.clear(); return n; },
    config() {
      const { authToken, apiKeys, token, apiKey, ...pub } = cfg;
      return { ...pub, authToken: authToken ? '(set)' : null, apiKeys: (apiKeys || []).map((k) => k.sid),
        token: token ? '(set)' : null, apiKey: apiKey ? '(set)' : null };
    },
    configure(patch) {
      const allowed = ['latency', 'logLimit', 'logHeaders', 'callbacks', 'callbackTarget', 'callbackDelays',
        'callDuration', 'outcomes', 'defaultOutcome', 'answeredBy', 'answeredByNumbers', 'amdCallbackLate',
        'amdCallbackRepeat', 'callbackRepeat', 'callbackReverse',
        'invalidNumbers', 'briefScript', 'searchByKey', 'accountSid', 'authToken', 'apiKeys', 'token', 'apiKey', 'maxCalls',
        'callbackLogLimit'];
      for (const k of Object.keys(patch || {})) {
        if (!allowed.includes(k)) throw new Error(`unknown or read-only setting ${k}`);
      }
      if (patch && patch.callbackTarget !== undefined) parseCallbackTarget(patch.callbackTarget);
      if (patch.logLimit !== undefined && patch.logLimit !== cfg.logLimit) {
        sim.stats.log = []; sim.stats.logNext = 0;
      }
      Object.assign(cfg, patch);
      if (patch.callbackDelays) cfg.callbackDelays = { ...DEFAULTS.callbackDelays, ...patch.callbackDelays };
      if (kind.rebuildAuth) kind.rebuildAuth();
      return control.config();
    },
    callbacks(limit = 100) { return sim.callbacks ? sim.callbacks.log(limit) : []; },
    calls(limit = 100) { return [...sim.calls.values()].slice(-limit); },
  };

  function readJson(req, cb) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (!raw) return cb(null, {});
      try { cb(null, JSON.parse(raw)); } catch (e) { cb(e); }
    });
  }

  function controlHttp(req, res, p, qs) {
    const q = new URLSearchParams(qs);
    const limit = Math.max(0, parseInt(q.get('limit') || '100', 10) || 0);
    const m = req.method;
    const route = p.slice('/__sim/'.length);
    const reply = (status, obj) => sendJson(res, status, obj);
    const withBody = (fn) => readJson(req, (err, body) => {
      if (err) return reply(400, { error: `invalid JSON: ${err.message}` });
      try { reply(200, fn(body)); } catch (e) { reply(400, { error: e.message }); }
    });
    if (m === 'GET' && route === 'health') return reply(200, { ok: true, kind: cfg.kind, pid: process.pid });
    if (m === 'GET' && route === 'stats') return reply(200, control.stats());
    if (m === 'GET' && route === 'requests') {
      const filter = {};
      if (q.has('call_id')) filter.call_id = q.get('call_id');
      if (q.has('since')) filter.since = Number(q.get('since'));
      if (q.has('route')) filter.route = q.get('route');
      return reply(200, { requests: control.requests(limit, filter) });
    }
    if (m === 'GET' && route === 'counts') return reply(200, { counts: control.counts(q.get('route')) });
    if (m === 'GET' && route === 'arrivals') return reply(200, { arrivals: control.arrivals() });
    if (m === 'GET' && route === 'placings') {
      const by = q.get('by') || 'to';
      try { return reply(200, { by, counts: control.placings(by) }); } catch (e) { return reply(400, { error: e.message }); }
    }
    if (m === 'POST' && route === 'reset') return withBody((b) => { control.reset(b); return { ok: true }; });
    if (m === 'GET' && route === 'faults') return reply(200, { faults: control.faults() });
    if (m === 'DELETE' && route === 'faults') { control.clearFaults(); return reply(200, { faults: [] }); }
    if (m === 'POST' && route === 'faults') {
      return withBody((b) => {
        if (b.clear) control.clearFaults();
        if (b.latency !== undefined) control.configure({ latency: Number(b.latency) });
        if (Array.isArray(b.rules)) control.setFaults(b.rules);
        else if (b.mode !== undefined) control.addFault(b);
        if (b.release_hung) control.releaseHung();
        return { faults: control.faults(), latency: cfg.latency };
      });
    }
    if (m === 'GET' && route === 'config') return reply(200, control.config());
    if (m === 'POST' && route === 'config') return withBody((b) => control.configure(b));
    if (m === 'GET' && route === 'callbacks') {
      return reply(200, { stats: sim.callbacks ? sim.callbacks.stats() : null, callbacks: control.callbacks(limit) });
    }
    if (m === 'GET' && route === 'calls') return reply(200, { calls: control.calls(limit) });
    return reply(404, { error: `no control endpoint ${m} ${p}` });
  }

  function controlRoute(req, res, p, qs) {
    try { controlHttp(req, res, p, qs); } catch (e) { sendJson(res, 500, { error: e.message }); }
  }

  const server = http.createServer({ keepAlive: true, noDelay: true, requestTimeout: 0,
    headersTimeout: 60000, keepAliveTimeout: 65000 }, (req, res) => {
    const url = req.url;
    if (url.startsWith('/__sim/')) {
      const qi = url.indexOf('?');
      return controlRoute(req, res, qi < 0 ? url : url.slice(0, qi), qi < 0 ? '' : url.slice(qi + 1));
    }
    return onRequest(req, res);
  });
  server.keepAliveTimeout = 65000;
  server.maxRequestsPerSocket = 0;
  server.on('clientError', (err, socket) => {
    if (socket.writable && !socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: cfg.port, host: cfg.host, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = server.address().port;
  const hostForUrl = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;

  let closed = null;
  function close() {
    if (closed) return closed;
    closed = new Promise((resolve) => {
      for (const res of hung) res.destroy();
      hung.clear();
      if (sim.callbacks) sim.callbacks.close();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closed;
  }

  return { port, url: `http://${hostForUrl}:${port}`, kind: cfg.kind, close, control, server };
}

/* ------------------------------------------------------------------ CLI */

function parseArgs(argv) {
  const o = {};
  const val = (i) => {
    if (i + 1 >= argv.length) throw new Error(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--kind': o.kind = val(i); i++; break;
      case '--port': o.port = Number(val(i)); i++; break;
      case '--host': o.host = val(i); i++; break;
      case '--ready-file': o.readyFile = val(i); i++; break;
      case '--account-sid': o.accountSid = val(i); i++; break;
      case '--auth-token': o.authToken = val(i); i++; break;
      case '--api-key': { // SID:SECRET, repeatable
        const [sid, ...rest] = val(i).split(':'); i++;
        (o.apiKeys = o.apiKeys || []).push({ sid, secret: rest.join(':') }); break;
      }
      case '--token': o.token = val(i); i++; break;
      case '--voice-key': o.apiKey = val(i); i++; break;
      case '--callbacks': o.callbacks = true; break;
      case '--callback-target': // checked here, so that a wrong URL stops the start with its reason
        o.callbackTarget = val(i); i++;
        try { parseCallbackTarget(o.callbackTarget); } catch (e) { throw new Error(`--callback-target: ${e.message}`); }
        break;
      case '--latency': o.latency = Number(val(i)); i++; break;
      case '--log-limit': o.logLimit = Number(val(i)); i++; break;
      case '--config': { // JSON object or @file.json, merged into the options
        const v = val(i); i++;
        Object.assign(o, JSON.parse(v.startsWith('@') ? fs.readFileSync(v.slice(1), 'utf8') : v));
        break;
      }
      case '-h': case '--help':
        process.stdout.write(`usage: node ${path.relative(process.cwd(), __filename)} --kind twilio|backend|voice_api
  [--port 0] [--host 127.0.0.1] [--ready-file F] [--latency MS] [--log-limit N]
  [--account-sid AC..] [--auth-token T] [--api-key SK..:SECRET] [--callbacks] [--callback-target URL]
  [--token BEARER (backend)] [--voice-key KEY (voice_api)] [--config JSON|@file]
Prints {"port":N,"pid":P,...} on stdout (and into --ready-file) once listening; SIGTERM/SIGINT stop it.\n`);
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  return o;
}

async function main() {
  // a bare `node --test` treats every .js under test/ as a test file: do not start a server then
  if (process.argv.length <= 2 && process.env.NODE_TEST_CONTEXT) return;
  let opts;
  try { opts = parseArgs(process.argv.slice(2)); } catch (e) {
    process.stderr.write(`server.js: ${e.message}\n`); process.exit(2);
  }
  // test/run_all.sh kills every PID listed in $DIALER_PID_FILE when the suite ends
  if (process.env.DIALER_PID_FILE) fs.appendFileSync(process.env.DIALER_PID_FILE, `${process.pid}\n`);
  const { readyFile, ...simOpts } = opts;
  const sim = await startSimulator(simOpts);
  const info = JSON.stringify({ port: sim.port, pid: process.pid, url: sim.url, kind: sim.kind });
  if (readyFile) {
    const tmp = `${readyFile}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, info + '\n');
    fs.renameSync(tmp, readyFile);
  }
  process.stdout.write(info + '\n');
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const t = setTimeout(() => process.exit(0), 3000);
    t.unref();
    sim.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { startSimulator, DEFAULTS, FAULT_MODES, KINDS };

if (require.main === module) {
  main().catch((e) => { process.stderr.write(`server.js: ${e.stack || e}\n`); process.exit(1); });
}
