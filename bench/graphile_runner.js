#!/usr/bin/env node
'use strict';
/*
 * The peer of `make bench`: Graphile Worker (npm graphile-worker, pinned in package-lock.json)
 * running one task, "dial", the way an application would write it: POST the call to the
 * Twilio simulator (keep-alive agent), store the answer (the CallSid) in a table. Concurrency
 * 100 with Graphile Worker's documented local queue (jobs fetched and locked in batches of
 * localQueue.size, completions batched). Its own process, so that its CPU time can be read
 * from /proc apart from the benchmark's.
 *
 * Environment: PGHOST, PGPORT, PGUSER, DIALER_DB; SIM_URL (the simulator), GW_CONCURRENCY
 * (default 100), GW_LOCAL_QUEUE (default 500). Prints "ready" when it is running; stops on
 * SIGTERM.
 */
const http = require('node:http');
const { run, Logger } = require('graphile-worker');

const SIM = new URL(process.env.SIM_URL);
const ACCOUNT = 'AC0123456789abcdef0123456789abcdef';
const AUTH = 'Basic ' + Buffer.from(`${ACCOUNT}:0123456789abcdef0123456789abcdef`).toString('base64');
const concurrency = Number(process.env.GW_CONCURRENCY || 100);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

function post(to, callId) {
  return new Promise((resolve, reject) => {
    const body = new URLSearchParams({ To: to, From: '+15005550006',
      Twiml: '<Response><Say>Your appointment is tomorrow at 9.</Say></Response>',
      StatusCallback: `http://127.0.0.1:9/cb?call_id=${callId}` }).toString();
    const req = http.request({ host: SIM.hostname, port: SIM.port, method: 'POST', agent,
      path: `/2010-04-01/Accounts/${ACCOUNT}/Calls.json`,
      headers: { authorization: AUTH, 'content-type': 'application/x-www-form-urlencoded',
        'content-length': Buffer.byteLength(body) } }, (res) => {
      let s = '';
      res.on('data', (c) => { s += c; });
      res.on('end', () => (res.statusCode < 300 ? resolve(JSON.parse(s).sid)
        : reject(new Error(`HTTP ${res.statusCode}: ${s}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const connectionString = `postgres://${process.env.PGUSER || 'postgres'}@${process.env.PGHOST || '127.0.0.1'}:${process.env.PGPORT}/${process.env.DIALER_DB}`;
  const runner = await run({
    connectionString,
    concurrency,
    maxPoolSize: concurrency + 10,
    noHandleSignals: true,
    pollInterval: 1000,
    taskList: {
      dial: async (payload, helpers) => {
        const sid = await post(payload.to, helpers.job.id);
        await helpers.query('INSERT INTO bench_gw_outcomes (ref, to_number, sid) VALUES ($1, $2, $3)',
          [payload.ref, payload.to, sid]);
      },
    },
    preset: {
      worker: {
        localQueue: { size: Number(process.env.GW_LOCAL_QUEUE || 500) },
        completeJobBatchDelay: 0,
        failJobBatchDelay: 0,
      },
    },
    logger: new Logger(() => (level, message) => { if (level === 'error') console.error(message); }),
  });
  process.on('SIGTERM', () => { runner.stop().finally(() => process.exit(0)); });
  console.log('ready');
  await runner.promise;
}

main().catch((e) => { console.error(e); process.exit(1); });
