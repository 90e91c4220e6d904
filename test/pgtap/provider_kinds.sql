-- pgTAP: a provider kind is a row of dialer.provider_kinds, and what the rest of pg_dialer knows
-- about a kind is read from that row, never from its name:
--   - a provider's kind must be a row (a clear error names the kinds); a kind that needs an
--     account refuses a provider without account_sid; calls_per_second defaults to the kind's;
--   - the payload rules of enqueue (modes, a per-call base_url, the longest message, something
--     to say) follow the kind's columns: changing a column changes what enqueue accepts;
--   - scheduled_calls.mode is the payload's mode, else the kind's first.
-- Everything is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = error;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(14);

SELECT set_eq($$SELECT kind FROM dialer.provider_kinds$$, ARRAY['twilio', 'backend', 'voice_api'],
	'the kinds are twilio, backend and voice_api');

SELECT throws_ok($$INSERT INTO dialer.providers (name, kind, base_url) VALUES ('tap-k-x', 'sip', 'https://x.example')$$,
	'23514', 'unknown provider kind ''sip''', 'a kind that is not a row of dialer.provider_kinds is refused, by name');
SELECT throws_ok($$INSERT INTO dialer.providers (name, kind, base_url) VALUES ('tap-k-t0', 'twilio', 'https://t.example')$$,
	'23514', 'provider ''tap-k-t0'' of kind twilio needs an account_sid', 'a kind that needs an account refuses a provider without one');

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number)
VALUES ('tap-k-t', 'twilio', 'https://t.example', 'AC' || repeat('0', 32), 'tok', '+15550100000');
INSERT INTO dialer.providers (name, kind, base_url, bearer_token, from_number, allowed_hosts)
VALUES ('tap-k-b', 'backend', 'https://b.example', 'tok', '+15550100000', '{other.example}');
INSERT INTO dialer.providers (name, kind, base_url, bearer_token, from_number)
VALUES ('tap-k-v', 'voice_api', 'https://v.example', 'tok', '+15550100000');
SELECT results_eq($$SELECT name, calls_per_second FROM dialer.providers WHERE name LIKE 'tap-k-%' ORDER BY name$$,
	$$VALUES ('tap-k-b', 10::numeric), ('tap-k-t', 1::numeric), ('tap-k-v', 10::numeric)$$,
	'calls_per_second defaults to the kind''s default_calls_per_second');

-- the mode stored for a call enqueued now (its own statement: the row is seen)
CREATE FUNCTION pg_temp.mode_of(number text, provider text, payload jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint := dialer.enqueue_call(number, provider => provider, payload => payload);
BEGIN
	RETURN (SELECT c.mode FROM dialer.scheduled_calls c WHERE c.id = v_id);
END;
$$;

-- modes: the backend's, DIRECT by default; a kind without modes stores none
SELECT is(pg_temp.mode_of('+15550100001', 'tap-k-b'),
	'DIRECT', 'a backend call without payload.mode runs in the kind''s first mode');
SELECT is(pg_temp.mode_of('+15550100002', 'tap-k-b', '{"mode": "brief_start"}'),
	'BRIEF_START', 'payload.mode, in capitals');
SELECT is(pg_temp.mode_of('+15550100003', 'tap-k-v', '{"mode": "brief_start"}'),
	NULL, 'a kind without modes stores none, whatever the payload says');
SELECT throws_ok($$SELECT dialer.enqueue_call('+15550100004', provider => 'tap-k-b', payload => '{"mode": "LATER"}')$$,
	'22023', 'invalid payload.mode: ''LATER''', 'a mode the kind does not have is refused');

-- the kind's columns are the rules: change one, and enqueue follows
UPDATE dialer.provider_kinds SET call_modes = '{LATER,DIRECT}' WHERE kind = 'backend';
SELECT is(pg_temp.mode_of('+15550100005', 'tap-k-b', '{"mode": "later"}'),
	'LATER', 'a mode added to the kind''s call_modes is accepted');
SELECT is(pg_temp.mode_of('+15550100006', 'tap-k-b'),
	'LATER', 'and the kind''s first mode is the default');

SELECT throws_ok($$SELECT dialer.enqueue_call('+15550100007', provider => 'tap-k-t', payload => jsonb_build_object('message', repeat('x', 3969)))$$,
	'22023', NULL, 'twilio: a message longer than the kind''s message_max_length (3968) is refused');
UPDATE dialer.provider_kinds SET message_max_length = 10 WHERE kind = 'twilio';
SELECT throws_ok($$SELECT dialer.enqueue_call('+15550100008', provider => 'tap-k-t', payload => '{"message": "eleven char"}')$$,
	'22023', 'invalid payload.message: ''eleven char''', 'a shorter message_max_length refuses a shorter message');

SELECT throws_ok($$SELECT dialer.enqueue_call('+15550100009', provider => 'tap-k-t')$$,
	'22023', 'invalid payload: ''{}''', 'twilio needs something to say');
UPDATE dialer.provider_kinds SET needs_something_to_say = false WHERE kind = 'twilio';
SELECT ok(dialer.enqueue_call('+15550100010', provider => 'tap-k-t') > 0,
	'a kind that does not need something to say takes an empty payload');

SELECT * FROM finish();
ROLLBACK;
