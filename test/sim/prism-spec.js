#!/usr/bin/env node
'use strict';
/*
 * Writes a TEST COPY of Twilio's OpenAPI description (test/contracts/twilio_api_v2010.json)
 * for Stoplight Prism; the shared contract itself is never modified.
 *
 *   node test/sim/prism-spec.js OUT.json [IN.json]
 *
 * Why a copy is needed. The dialer creates calls with the field repeated, exactly as Twilio
 * documents it ("specify each one in a separate status_callback_event parameter"):
 *
 *   StatusCallbackEvent=initiated&StatusCallbackEvent=ringing&StatusCallbackEvent=answered&...
 *
 * and the spec types that field as {type: array, items: {type: string}}. Prism 5 decodes an
 * application/x-www-form-urlencoded body into a plain object, one value per key (the last one
 * wins: prism-http validator/validators/body.js splitUriParams), and turns a value into an array
 * only when the media type declares an `encoding` with a style for that property
 * (deserializeFormBody). The Twilio spec declares no `encoding`, so Prism validates the string
 * "completed" against `type: array` and answers 422 "Request body property StatusCallbackEvent
 * must be array" for EVERY create request that sets the field, once or four times.
 *
 * The change. For the Calls create operation only (POST /2010-04-01/Accounts/{AccountSid}/Calls.json),
 * add to its form media type an `encoding` entry {style: form, explode: true} for each array-typed
 * property (StatusCallbackEvent, RecordingStatusCallbackEvent) that does not have one. In OpenAPI
 * 3.0 that is the default serialization of a form body anyway (Encoding Object: style defaults to
 * "form", and explode to true for style form), so the copy describes the very same wire format; it
 * only makes the default explicit so Prism applies it. Nothing else is touched: no schema, no
 * `servers` (Prism's mock matches requests on the path alone and ignores `servers` unless a request
 * names one with the __server query parameter), no response, no security scheme.
 *
 * What remains a Prism limitation: it still keeps the last value only, so it validates
 * one StatusCallbackEvent value of the four. The items are plain strings in the spec (no enum),
 * so nothing checkable is lost; the project's Twilio simulator (server.js) checks every value
 * against initiated/ringing/answered/completed.
 */

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const DEFAULT_SPEC = process.env.TWILIO_OAI_SPEC
  || path.resolve(__dirname, '..', 'contracts', 'twilio_api_v2010.json');
const CALLS_PATH = '/2010-04-01/Accounts/{AccountSid}/Calls.json';
const FORM = 'application/x-www-form-urlencoded';
const PATCH_MARK = 'x-pg-dialer-test-copy';

/** Returns {spec, changes}: a patched deep copy of `orig` and the list of what was added. */
function patchSpec(orig) {
  const spec = structuredClone(orig);
  const op = spec.paths && spec.paths[CALLS_PATH] && spec.paths[CALLS_PATH].post;
  const media = op && op.requestBody && op.requestBody.content && op.requestBody.content[FORM];
  if (!media || !media.schema || !media.schema.properties) {
    throw new Error(`spec has no ${FORM} request body for POST ${CALLS_PATH}`);
  }
  const changes = [];
  for (const [name, prop] of Object.entries(media.schema.properties)) {
    if (!prop || prop.type !== 'array') continue;
    media.encoding = media.encoding || {};
    if (media.encoding[name] && media.encoding[name].style) continue;
    media.encoding[name] = { ...(media.encoding[name] || {}), style: 'form', explode: true };
    changes.push(`POST ${CALLS_PATH} ${FORM} encoding.${name} = {style: form, explode: true}`);
  }
  if (changes.length === 0) throw new Error('nothing to patch: did the Twilio spec change?');
  spec.info = { ...spec.info, [PATCH_MARK]: 'Test copy for Stoplight Prism written by test/sim/prism-spec.js: '
    + 'explicit OpenAPI-default form encoding for array fields of the Calls create body; see that script.' };
  return { spec, changes };
}

/** Reads `input`, writes the patched copy to `output`; returns {output, changes, sha256}. */
function writePatchedSpec(output, input = DEFAULT_SPEC) {
  const text = fs.readFileSync(input);
  const { spec, changes } = patchSpec(JSON.parse(text));
  fs.mkdirSync(path.dirname(path.resolve(output)), { recursive: true });
  const tmp = `${output}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(spec));
  fs.renameSync(tmp, output);
  return { input, output, changes, sha256: crypto.createHash('sha256').update(text).digest('hex') };
}

module.exports = { patchSpec, writePatchedSpec, DEFAULT_SPEC, CALLS_PATH, PATCH_MARK };

if (require.main === module) {
  const [out, input] = process.argv.slice(2);
  if (!out) {
    if (process.env.NODE_TEST_CONTEXT) process.exit(0); // picked up by a bare `node --test`
    process.stderr.write('usage: node test/sim/prism-spec.js OUT.json [IN.json]\n');
    process.exit(2);
  }
  const r = writePatchedSpec(out, input || DEFAULT_SPEC);
  process.stdout.write(`${JSON.stringify(r, null, 1)}\n`);
}
