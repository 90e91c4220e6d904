-- pgTAP: webhook signatures, the status state machine and the webhook role's privileges.
-- Runs in dialer_tap (pg_dialer installed); everything happens in one transaction that is
-- rolled back, the roles of deploy/roles.sql included.
\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

BEGIN;
SELECT plan(83);

/* ------------------------------------------------------------------ the schema */

SELECT has_schema('dialer_api');
SELECT functions_are('dialer_api', ARRAY['twilio_status_callback', 'provider_status_callback'],
	'dialer_api holds only the ingest functions');
SELECT is((SELECT count(*) FROM pg_class WHERE relnamespace = 'dialer_api'::regnamespace), 0::bigint,
	'dialer_api holds no table, view or sequence');
SELECT is((SELECT count(*) FROM pg_proc WHERE pronamespace = 'dialer_api'::regnamespace
			 AND prosecdef AND 'search_path=pg_catalog, pg_temp' = ANY (proconfig)), 3::bigint,
	'each ingest function is SECURITY DEFINER with search_path pinned to pg_catalog, pg_temp');
SELECT is((SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'dialer_api'::regnamespace
			 AND p.proowner <> (SELECT extowner FROM pg_extension WHERE extname = 'pg_dialer')), 0::bigint,
	'the ingest functions belong to the extension owner');
SELECT is((SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'dialer_api'::regnamespace
			 AND has_function_privilege('public', p.oid, 'EXECUTE')), 0::bigint,
	'PUBLIC may not execute the ingest functions');

/* ------------------------------------------------------------------ HMAC, base64, comparison */

-- RFC 2202 (HMAC-SHA1) and RFC 4231 (HMAC-SHA256) test vectors
SELECT is(encode(dialer.hmac('sha1', decode(repeat('0b', 20), 'hex'), 'Hi There'), 'hex'),
		  'b617318655057264e28bc0b6fb378c8ef146be00', 'HMAC-SHA1, RFC 2202 case 1');
SELECT is(encode(dialer.hmac('sha1', 'Jefe', 'what do ya want for nothing?'), 'hex'),
		  'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79', 'HMAC-SHA1, RFC 2202 case 2');
SELECT is(encode(dialer.hmac('sha1', decode(repeat('aa', 80), 'hex'),
							 'Test Using Larger Than Block-Size Key - Hash Key First'), 'hex'),
		  'aa4ae5e15272d00e95705637ce8a3b55ed402112', 'HMAC-SHA1, RFC 2202 case 6 (key longer than a block)');
SELECT is(encode(dialer.hmac('sha256', decode(repeat('0b', 20), 'hex'), 'Hi There'), 'hex'),
		  'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7', 'HMAC-SHA256, RFC 4231 case 1');
SELECT is(encode(dialer.hmac('SHA256', 'Jefe', 'what do ya want for nothing?'), 'hex'),
		  '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', 'HMAC-SHA256, RFC 4231 case 2');
SELECT is(encode(dialer.hmac('sha256', decode(repeat('aa', 131), 'hex'),
							 'Test Using Larger Than Block-Size Key - Hash Key First'), 'hex'),
		  '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54', 'HMAC-SHA256, RFC 4231 case 6');
SELECT is(encode(dialer.hmac('sha512', 'Jefe', 'what do ya want for nothing?'), 'hex'),
		  '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
		  'HMAC-SHA512, RFC 4231 case 2');
SELECT is(octet_length(dialer.hmac('sha1', '', '')), 20, 'HMAC with an empty key and message');
SELECT throws_ok($$SELECT dialer.hmac('md5', 'k', 'm')$$, '22023', NULL, 'an unsupported algorithm is refused');

SELECT is((SELECT count(*) FROM generate_series(0, 200) n
			WHERE dialer.base64_encode(decode(repeat('a5', n), 'hex'))
				  <> replace(encode(decode(repeat('a5', n), 'hex'), 'base64'), E'\n', '')), 0::bigint,
	'base64_encode agrees with encode(..., ''base64'') for 0..200 bytes');
SELECT is(strpos(dialer.base64_encode(decode(repeat('ff', 3000), 'hex')), E'\n'), 0, 'base64_encode writes one line');
SELECT is(dialer.base64_encode(''), '', 'base64 of nothing');

SELECT ok(dialer.constant_time_equal('abc', 'abc'), 'equal strings');
SELECT ok(NOT dialer.constant_time_equal('abc', 'abd'), 'different last byte');
SELECT ok(NOT dialer.constant_time_equal('abc', 'abcd'), 'different lengths');
SELECT ok(dialer.constant_time_equal('', ''), 'empty strings');
SELECT ok(dialer.constant_time_equal(NULL, 'a') IS NULL, 'NULL in, NULL out');

/* ------------------------------------------------------------------ Twilio's algorithm */

-- expected values computed outside pg_dialer, by Twilio's helper library
-- (require('twilio').getExpectedTwilioSignature(token, url, params)), not by the functions under test
SELECT is(dialer.twilio_signature('tok', 'https://h.example/cb?call_id=7',
								  '{"b": "2", "a": "1", "B": "x y", "_": ""}'),
		  's+iFWW9MLXYX8zXeVWyav7d30vY=',
		  'the signature covers the URL then every field, sorted by name in byte order, name then value');
SELECT is(dialer.twilio_signature('tok', 'https://h.example/cb', '{}'),
		  'eCWMk/l4Nsx1CcjEdB5egr7I1IM=', 'no field: the URL alone');
SELECT isnt(dialer.twilio_signature('tok', 'https://h.example/cb', '{"a": ""}'),
			dialer.twilio_signature('tok', 'https://h.example/cb', '{}'), 'a field sent empty is signed');
SELECT is(dialer.twilio_signature('tök', 'https://h.example/é', '{"Ä": "ü"}'),
		  'f+is9Lc/C8i31wWyFIosFLRUCrE=', 'UTF-8 throughout');
SELECT is(dialer.twilio_url_variants('https://h.example/cb?x=1'),
		  ARRAY['https://h.example/cb?x=1', 'https://h.example:443/cb?x=1'], 'default port added');
SELECT is(dialer.twilio_url_variants('http://h.example:80/cb'),
		  ARRAY['http://h.example:80/cb', 'http://h.example/cb'], 'default port removed');
SELECT is(dialer.twilio_url_variants('https://h.example:8443/cb'), ARRAY['https://h.example:8443/cb'], 'other port kept');
SELECT is(dialer.twilio_url_variants('https://u:p@h.example/cb'),
		  ARRAY['https://u:p@h.example/cb', 'https://u:p@h.example:443/cb'], 'credentials in the URL');
SELECT is(dialer.twilio_callback_url('https://h.example/cb', 42), 'https://h.example/cb?call_id=42', 'call id appended with ?');
SELECT is(dialer.twilio_callback_url('https://h.example/cb?t=a', 42), 'https://h.example/cb?t=a&call_id=42', 'call id appended with &');
SELECT is(dialer.twilio_callback_url('https://h.example/cb', NULL), 'https://h.example/cb', 'no call id: the URL as configured');

SELECT is(ARRAY[dialer.normalize_provider_status('No_Answer'), dialer.normalize_provider_status('cancelled'),
				dialer.normalize_provider_status('answered'), dialer.normalize_provider_status('IN_PROGRESS')],
		  ARRAY['no-answer', 'canceled', 'in-progress', 'in-progress'], 'provider statuses are normalized');
SELECT ok(dialer.provider_status_rank('queued') < dialer.provider_status_rank('initiated')
		  AND dialer.provider_status_rank('initiated') < dialer.provider_status_rank('ringing')
		  AND dialer.provider_status_rank('ringing') < dialer.provider_status_rank('in-progress')
		  AND dialer.provider_status_rank('in-progress') < dialer.provider_status_rank('completed')
		  AND dialer.provider_status_rank('accepted') < dialer.provider_status_rank('queued'),
		  'provider statuses are ordered');
SELECT is(ARRAY[dialer.provider_status_outcome('ringing'), dialer.provider_status_outcome('no-answer'),
				dialer.provider_status_outcome('busy'), dialer.provider_status_outcome('weird')],
		  ARRAY['dialing', 'no_answer', 'busy', NULL], 'outcomes');

/* ------------------------------------------------------------------ the state machine */

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, status_callback_url,
							  retry_no_answer, retry_delay)
VALUES ('tap_tw', 'twilio', 'https://api.twilio.com', 'ACtap', 'tap-token', 'https://hooks.example/twilio',
		true, '7 minutes');
INSERT INTO dialer.providers (name, kind, base_url, webhook_secret)
VALUES ('tap_be', 'backend', 'https://backend.example', 'tap-secret');

CREATE TEMP TABLE tap_calls (name text PRIMARY KEY, id bigint);
WITH c AS (
	INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, attempts, max_attempts, provider_call_id)
	VALUES ('dialing', now(), now(), '+14155550100', 'tap_tw', 1, 3, 'CAtap1'),
		   ('dialing', now(), now(), '+14155550101', 'tap_tw', 1, 3, 'CAtap2'),
		   ('dispatching', now(), now(), '+14155550102', 'tap_tw', 1, 3, NULL),
		   ('dialing', now(), now(), '+14155550103', 'tap_be', 1, 3, NULL)
	RETURNING id, to_number)
INSERT INTO tap_calls SELECT CASE to_number WHEN '+14155550100' THEN 'a' WHEN '+14155550101' THEN 'b'
											WHEN '+14155550102' THEN 'c' ELSE 'd' END, id FROM c;
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id)
SELECT id, 1, now(), CASE name WHEN 'a' THEN 'CAtap1' WHEN 'b' THEN 'CAtap2' END FROM tap_calls;

SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'a'), 'ringing', 'CAtap1', 1)->>'result',
		  'applied', 'ringing applied');
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'a'), 'ringing', 'CAtap1', 1)->>'result',
		  'duplicate', 'the same report again is a duplicate');
SELECT is((SELECT count(*) FROM dialer.call_events WHERE call_id = (SELECT id FROM tap_calls WHERE name = 'a')), 1::bigint,
		  'a duplicate writes no event');
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'a'), 'completed', 'CAtap1', 3,
									   '{"duration_seconds": 12, "sip_response_code": 200}')->>'status',
		  'completed', 'completed is final');
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'a'), 'in-progress', 'CAtap1', 2,
									   '{"answered_by": "human", "duration_seconds": 99}')->>'result',
		  'stale', 'an earlier report arriving late is stale');
SELECT row_eq($$SELECT status, provider_status, finished_at IS NOT NULL FROM dialer.scheduled_calls
				WHERE id = (SELECT id FROM tap_calls WHERE name = 'a')$$,
			  ROW('completed'::text, 'completed'::text, true), 'the call did not move back');
SELECT row_eq($$SELECT provider_status, duration_seconds, answered_by, sip_response_code FROM dialer.call_attempts
				WHERE call_id = (SELECT id FROM tap_calls WHERE name = 'a')$$,
			  ROW('completed'::text, 12, 'human'::text, 200),
			  'a stale report only fills what the attempt lacked');
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'a'), 'some-new-status', 'CAtap1', 9)->>'result',
		  'recorded', 'a status pg_dialer does not know is recorded');
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = (SELECT id FROM tap_calls WHERE name = 'a')),
		  'completed', 'and moves nothing');

-- retry policy: the provider retries no-answer after 7 minutes
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'b'), 'no-answer', 'CAtap2', 3)->>'status',
		  'scheduled', 'no-answer re-scheduled by the provider''s policy');
SELECT row_eq($$SELECT status, next_attempt_at, finished_at FROM dialer.scheduled_calls
				WHERE id = (SELECT id FROM tap_calls WHERE name = 'b')$$,
			  ROW('scheduled'::text, now() + interval '7 minutes', NULL::timestamptz), 'due again after retry_delay');
SELECT is((SELECT array_agg(event ORDER BY id) FROM dialer.call_events WHERE call_id = (SELECT id FROM tap_calls WHERE name = 'b')),
		  ARRAY['callback', 'retry_scheduled'], 'callback then retry_scheduled events');
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'b'), 'completed', 'CAtap2', 4)->>'status',
		  'scheduled', 'a report about the finished attempt does not touch the re-scheduled call');

-- reconciliation-style report without a provider call id: the current attempt, sid adopted later
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'c'), 'queued', NULL, NULL, '{}', '{}', 'reconcile')->>'status',
		  'dialing', 'dispatching -> dialing on a report of the provider');
SELECT is((SELECT event FROM dialer.call_events WHERE call_id = (SELECT id FROM tap_calls WHERE name = 'c') ORDER BY id DESC LIMIT 1),
		  'reconcile', 'the event is named after the source');
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'c'), 'ringing', 'CAtap3', 2)->>'attempt',
		  '1', 'a provider call id not stored yet is adopted by the current attempt');
SELECT is((SELECT provider_call_id FROM dialer.scheduled_calls WHERE id = (SELECT id FROM tap_calls WHERE name = 'c')),
		  'CAtap3', 'and stored on the call');
SELECT is(dialer.apply_provider_status((SELECT id FROM tap_calls WHERE name = 'c'), 'completed', 'CAother', 5)->>'result',
		  'unmatched', 'another provider call id matches no attempt');
SELECT is(dialer.apply_provider_status(-1, 'completed')->>'result', 'unknown_call', 'unknown call');
SELECT throws_ok($$SELECT dialer.apply_provider_status(1, NULL)$$, '22023', NULL, 'a status is required');

/* ------------------------------------------------------------------ ingest, with PostgREST's headers simulated */

CREATE FUNCTION pg_temp.twilio_headers(sig text, call_id bigint) RETURNS text LANGUAGE sql AS $$
	SELECT set_config('request.headers', jsonb_build_object('x-twilio-signature', sig, 'x-dialer-call-id', call_id::text,
			'content-type', 'application/x-www-form-urlencoded')::text, true);
$$;
UPDATE dialer.scheduled_calls SET status = 'dialing', attempts = 2, provider_call_id = NULL
 WHERE id = (SELECT id FROM tap_calls WHERE name = 'b');
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at) SELECT id, 2, now() FROM tap_calls WHERE name = 'b';

SELECT pg_temp.twilio_headers(NULL, NULL);
SELECT throws_ok($$SELECT dialer_api.twilio_status_callback('{"CallSid": "CAb2", "CallStatus": "ringing"}'::json)$$,
				 'PT401', 'X-Twilio-Signature is missing', 'unsigned: PT401');
SELECT pg_temp.twilio_headers('AAAAAAAAAAAAAAAAAAAAAAAAAAA=', (SELECT id FROM tap_calls WHERE name = 'b'));
SELECT throws_ok($$SELECT dialer_api.twilio_status_callback('{"CallSid": "CAb2", "CallStatus": "ringing"}'::json)$$,
				 'PT403', 'X-Twilio-Signature does not match', 'wrongly signed: PT403');
SELECT pg_temp.twilio_headers(dialer.twilio_signature('tap-token',
			'https://hooks.example/twilio?call_id=' || (SELECT id FROM tap_calls WHERE name = 'b'),
			'{"CallSid": "CAb2", "CallStatus": "ringing", "SequenceNumber": "1", "AccountSid": "ACtap"}'),
		(SELECT id FROM tap_calls WHERE name = 'b'));
SELECT is(dialer_api.twilio_status_callback('{"CallSid": "CAb2", "CallStatus": "ringing", "SequenceNumber": "1", "AccountSid": "ACtap"}'::json)->>'result',
		  'applied', 'signed over the configured URL with the call id: applied');
SELECT is(dialer_api.twilio_status_callback("CallSid" => 'CAb2', "CallStatus" => 'ringing', "SequenceNumber" => '1', "AccountSid" => 'ACtap')->>'result',
		  'duplicate', 'the named-parameter form is the same callback');
SELECT throws_ok($$SELECT dialer_api.twilio_status_callback('{"CallSid": "CAb2", "CallStatus": "completed", "SequenceNumber": "1", "AccountSid": "ACtap"}'::json)$$,
				 'PT403', NULL, 'a changed field breaks the signature');
SELECT pg_temp.twilio_headers(dialer.twilio_signature('tap-token', 'https://hooks.example:443/twilio?call_id=' || (SELECT id FROM tap_calls WHERE name = 'b'),
			'{"CallSid": "CAb2", "CallStatus": "in-progress", "SequenceNumber": "2"}'), (SELECT id FROM tap_calls WHERE name = 'b'));
SELECT is(dialer_api.twilio_status_callback('{"CallSid": "CAb2", "CallStatus": "in-progress", "SequenceNumber": "2"}'::json)->>'result',
		  'applied', 'a signature over the URL with its default port is accepted, as Twilio''s validators do');
SELECT throws_ok($$SELECT dialer_api.twilio_status_callback('[1, 2]'::json)$$, '22023', NULL, 'not an object: 400');
SELECT throws_ok($$SELECT dialer_api.twilio_status_callback('{"CallSid": 5}'::json)$$, '22023', NULL, 'a field that is not a string: 400');
SELECT set_config('request.headers', '{"x-twilio-signature": "x", "x-dialer-call-id": "1; DROP", "content-type": "application/x-www-form-urlencoded"}', true);
SELECT throws_ok($$SELECT dialer_api.twilio_status_callback('{}'::json)$$, '22023', NULL, 'a call id that is not one: 400');
SELECT set_config('request.headers', '{"x-twilio-signature": "x", "content-type": "application/json"}', true);
SELECT throws_ok($$SELECT dialer_api.twilio_status_callback('{}'::json)$$, 'PT415', NULL, 'not a form: 415');

-- JSON webhooks
CREATE FUNCTION pg_temp.json_headers(secret text, ts bigint, body text) RETURNS text LANGUAGE sql AS $$
	SELECT set_config('request.headers', jsonb_build_object('x-dialer-timestamp', ts::text,
			'x-dialer-signature', 'sha256=' || encode(dialer.hmac('sha256', convert_to(secret, 'UTF8'), convert_to(ts || '.' || body, 'UTF8')), 'hex'),
			'content-type', 'application/json')::text, true);
$$;
SELECT pg_temp.json_headers('tap-secret', extract(epoch FROM now())::bigint,
	format('{"call_id": %s,  "status": "completed", "duration": 30, "transcript": "hi"}', (SELECT id FROM tap_calls WHERE name = 'd')));
SELECT throws_ok(format($$SELECT dialer_api.provider_status_callback('{"call_id": %s, "status": "completed", "duration": 30, "transcript": "hi"}')$$,
						(SELECT id FROM tap_calls WHERE name = 'd')),
				 'PT403', NULL, 'the signature is over the raw body: other whitespace, other body');
SELECT is(dialer_api.provider_status_callback(format('{"call_id": %s,  "status": "completed", "duration": 30, "transcript": "hi"}',
													 (SELECT id FROM tap_calls WHERE name = 'd'))::json)->>'status',
		  'completed', 'a signed JSON webhook is applied');
SELECT row_eq($$SELECT duration_seconds, transcript FROM dialer.call_attempts WHERE call_id = (SELECT id FROM tap_calls WHERE name = 'd')$$,
			  ROW(30, 'hi'::text), 'duration and transcript stored on the attempt');
SELECT pg_temp.json_headers('tap-secret', extract(epoch FROM now())::bigint - 301, '{"call_id": 1, "status": "completed"}');
SELECT throws_ok($$SELECT dialer_api.provider_status_callback('{"call_id": 1, "status": "completed"}')$$,
				 'PT401', NULL, 'a timestamp more than 5 minutes old: 401');
SELECT pg_temp.json_headers('wrong', extract(epoch FROM now())::bigint, format('{"call_id": %s, "status": "failed"}', (SELECT id FROM tap_calls WHERE name = 'd')));
SELECT throws_ok(format($$SELECT dialer_api.provider_status_callback('{"call_id": %s, "status": "failed"}')$$, (SELECT id FROM tap_calls WHERE name = 'd')),
				 'PT403', NULL, 'the wrong secret: 403');

/* ------------------------------------------------------------------ the webhook role (deploy/roles.sql) */

SELECT set_config('request.headers', '{}', true);
\ir ../../deploy/roles.sql
SET client_min_messages = warning;

SELECT ok(has_schema_privilege('dialer_webhook', 'dialer_api', 'USAGE'), 'dialer_webhook may use dialer_api');
SELECT is((SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'dialer_api'::regnamespace
			AND has_function_privilege('dialer_webhook', p.oid, 'EXECUTE')), 3::bigint,
	'dialer_webhook may execute every ingest function');
SELECT ok(NOT has_schema_privilege('dialer_webhook', 'dialer', 'USAGE'), 'dialer_webhook may not use schema dialer');
SELECT is((SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'dialer'::regnamespace
			AND has_table_privilege('dialer_webhook', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')),
		  0::bigint, 'dialer_webhook has no privilege on any table of dialer');
SELECT is((SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'dialer'::regnamespace
			AND has_any_column_privilege('dialer_webhook', c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')),
		  0::bigint, 'nor on any column');
SELECT ok(NOT has_schema_privilege('dialer_webhook_authenticator', 'dialer_api', 'USAGE')
		  AND NOT has_schema_privilege('dialer_webhook_authenticator', 'dialer', 'USAGE'),
		  'the login role has nothing of its own');
SELECT ok((SELECT NOT rolinherit AND rolcanlogin FROM pg_roles WHERE rolname = 'dialer_webhook_authenticator'),
		  'the login role is NOINHERIT');
SELECT is((SELECT array_agg(b.rolname::text) FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
			WHERE m.member = 'dialer_webhook_authenticator'::regrole), ARRAY['dialer_webhook'],
		  'the login role may become dialer_webhook and no other role');

-- Runs a statement as dialer_webhook; returns its SQLSTATE ('00000' when it ran).
CREATE FUNCTION pg_temp.as_webhook(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	SET LOCAL ROLE dialer_webhook;
	BEGIN
		EXECUTE stmt;
		RESET ROLE;
		RETURN '00000';
	EXCEPTION WHEN OTHERS THEN
		RESET ROLE;
		RETURN SQLSTATE;
	END;
END;
$$;

SELECT is((SELECT array_agg(t || ': ' || s) FROM (
			SELECT c.relname || ' ' || op AS t,
				   pg_temp.as_webhook(format(op, c.oid::regclass, (SELECT attname FROM pg_attribute
					   WHERE attrelid = c.oid AND attnum = 1))) AS s
			  FROM pg_class c
			 CROSS JOIN unnest(ARRAY['SELECT * FROM %s LIMIT 1', 'INSERT INTO %s DEFAULT VALUES',
									 'UPDATE %s SET %2$I = %2$I', 'DELETE FROM %s', 'TRUNCATE %s']) op
			 WHERE c.relnamespace = 'dialer'::regnamespace AND c.relkind IN ('r', 'p', 'v')) x
		   WHERE s <> '42501'), NULL,
		  'as dialer_webhook every read and write of every dialer table is refused (42501)');
SELECT is((SELECT array_agg(p.oid::regprocedure::text || ': ' || s) FROM (
			SELECT p.oid, pg_temp.as_webhook(format('SELECT %s.%I(%s)', 'dialer', p.proname,
					(SELECT string_agg('NULL::' || format_type(t, NULL), ', ') FROM unnest(p.proargtypes) t))) AS s
			  FROM pg_proc p WHERE p.pronamespace = 'dialer'::regnamespace AND p.prokind = 'f') p
		   WHERE s <> '42501'), NULL,
		  'as dialer_webhook every function of dialer is refused (42501)');
SELECT is(pg_temp.as_webhook($$SELECT dialer_api.provider_status_callback('{}')$$), 'PT401',
		  'as dialer_webhook an ingest function runs (and refuses the unsigned call)');

SELECT * FROM finish();
ROLLBACK;
