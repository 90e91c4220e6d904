'use strict';
// Small HTTP client helpers for the simulator and Prism tests (node core only).

const http = require('node:http');

/**
 * request(url, {method, headers, body, form, json, agent, timeout}) ->
 *   Promise<{status, headers, text, json (parsed or undefined), ms, reusedSocket}>
 * `form`: object (arrays repeat the key) sent as application/x-www-form-urlencoded.
 * `json`: value sent as application/json. Rejects on socket errors (ECONNRESET, timeout...).
 */
function request(url, opts = {}) {
  const { method = 'GET', headers = {}, agent, timeout } = opts;
  let body = opts.body;
  const h = { ...headers };
  if (opts.form) {
    body = formEncode(opts.form);
    h['Content-Type'] = 'application/x-www-form-urlencoded';
  } else if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    h['Content-Type'] = 'application/json';
  }
  if (body !== undefined) h['Content-Length'] = Buffer.byteLength(body);
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: h, agent: agent === undefined ? false : agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try { parsed = JSON.parse(text); } catch { parsed = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json: parsed,
          ms: Number(process.hrtime.bigint() - t0) / 1e6, reusedSocket: req.reusedSocket });
      });
    });
    if (timeout) req.setTimeout(timeout, () => req.destroy(Object.assign(new Error('client timeout'), { code: 'CLIENT_TIMEOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

function formEncode(obj) {
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) {
    if (Array.isArray(v)) for (const x of v) sp.append(k, String(x));
    else if (v !== undefined) sp.append(k, String(v));
  }
  return sp.toString();
}

function basic(user, pass) {
  return 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64');
}

module.exports = { request, formEncode, basic };
