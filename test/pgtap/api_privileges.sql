-- pg_prove database: dialer_test
-- pgTAP: privileges and secrets.  A role given dialer.grant_usage() can use the API and read
-- the queue but not the providers' secret columns; a role without it can do nothing; no
-- secret ever shows in call_details, stats, events, worker_status or an error message.
-- Self-contained: roles and rows are created in a transaction that is rolled back.
-- Runs in the worker's database, so that worker_status() has a row to look at (in a
-- database without a worker it has none and its checks would pass on nothing).
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(55);

CREATE ROLE tap_dialer_app;
CREATE ROLE tap_dialer_nobody;
GRANT USAGE ON SCHEMA public TO tap_dialer_app, tap_dialer_nobody;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO tap_dialer_app, tap_dialer_nobody;

-- providers with every kind of secret; each secret contains SECRET so it can be looked for
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, api_key_sid, api_key_secret,
                              webhook_secret, from_number, status_callback_url, twiml_url)
VALUES ('tap-twilio', 'twilio', 'https://api.twilio.com', 'AC0000000000000000000000000000tap',
        'tw-auth-SECRET-1', 'SK0000000000000000000000000000tap', 'tw-key-SECRET-2', 'tw-hook-SECRET-3',
        '+15005550006', 'https://hooks.example.com/twilio', 'https://hooks.example.com/twiml.xml');
INSERT INTO dialer.providers (name, kind, base_url, bearer_token, webhook_secret)
VALUES ('tap-backend', 'backend', 'https://calls.example.com', 'be-bearer-SECRET-4', 'be-hook-SECRET-5'),
       ('tap-voice', 'voice_api', 'https://voice.example.com', 'va-bearer-SECRET-6', 'va-hook-SECRET-7');

-- Runs a statement and returns its error as "SQLSTATE message / detail / hint", or NULL.
CREATE FUNCTION pg_temp.error_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	v_state text; v_msg text; v_detail text; v_hint text; v_context text;
BEGIN
	EXECUTE sql;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
		v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT, v_context = PG_EXCEPTION_CONTEXT;
	RETURN concat_ws(' / ', v_state || ' ' || v_msg, v_detail, v_hint, v_context);
END;
$$;
GRANT EXECUTE ON FUNCTION pg_temp.error_of(text) TO tap_dialer_app, tap_dialer_nobody;

--
-- grant_usage
--
SELECT lives_ok($$SELECT dialer.grant_usage('tap_dialer_app')$$, 'the owner grants usage to a role');
SELECT lives_ok($$SELECT dialer.grant_usage('tap_dialer_app')$$, 'granting twice is harmless');
SELECT throws_ok($$SELECT dialer.grant_usage('no_such_role_xyz')$$, '42704', NULL, 'grant_usage of an unknown role is an error');

SET LOCAL ROLE tap_dialer_app;
SELECT ok(has_schema_privilege('dialer', 'USAGE'), 'app: USAGE on schema dialer');
CREATE TEMP TABLE app_calls AS
SELECT dialer.enqueue_call('+14155550100', run_at => '2030-01-01 10:00+00', provider => 'tap-twilio',
                           dedupe_key => 'tap-priv-1') AS id;
SELECT isnt((SELECT id FROM app_calls), NULL, 'app: enqueue_call works');
SELECT is(dialer.enqueue_call('+14155550100', provider => 'tap-twilio', dedupe_key => 'tap-priv-1'),
          (SELECT id FROM app_calls), 'app: dedupe returns the stored id');
SELECT lives_ok($$SELECT dialer.enqueue_call('+14155550101', run_at => '2030-01-01 10:00+00', provider => 'tap-backend',
                                            payload => '{"mode": "DIRECT", "script": "hi"}')$$, 'app: enqueue through a backend provider');
SELECT is(dialer.cancel_call((SELECT id FROM app_calls)), true, 'app: cancel_call works');
SELECT is(dialer.retry_call((SELECT id FROM app_calls)), false, 'app: retry_call works (false for a canceled call)');
SELECT is((dialer.call_details((SELECT id FROM app_calls)))->'call'->>'status', 'canceled', 'app: call_details works');
SELECT ok(dialer.stats('2030-01-01') ? 'total_pending', 'app: stats works');
SELECT lives_ok($$SELECT * FROM dialer.worker_status()$$, 'app: worker_status works');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE id = (SELECT id FROM app_calls)), 1, 'app: reads the queue');
SELECT is((SELECT string_agg(event, ',' ORDER BY id) FROM dialer.call_events WHERE call_id = (SELECT id FROM app_calls)),
          'enqueued,canceled', 'app: reads the events (exactly those of its call)');
SELECT lives_ok($$SELECT count(*) FROM dialer.call_attempts$$, 'app: reads the attempts');
SELECT lives_ok($$SELECT count(*) FROM dialer.campaigns$$, 'app: reads the campaigns');
SELECT lives_ok($$SELECT count(*) FROM dialer.do_not_call$$, 'app: reads the do-not-call list');
SELECT is((SELECT string_agg(name || ':' || kind, ',' ORDER BY name) FROM dialer.providers WHERE name LIKE 'tap-%'),
          'tap-backend:backend,tap-twilio:twilio,tap-voice:voice_api', 'app: reads the provider names and kinds');
SELECT lives_ok($$SELECT name, kind, base_url, account_sid, api_key_sid, from_number, status_callback_url,
                         max_concurrency, calls_per_second, enabled FROM dialer.providers$$,
                'app: reads the non-secret provider columns');
-- the secrets
SELECT throws_ok(format('SELECT %I FROM dialer.providers', c), '42501', 'permission denied for table providers',
                 format('app: permission denied reading providers.%s', c))
  FROM unnest(ARRAY['auth_token', 'api_key_secret', 'bearer_token', 'webhook_secret']) AS c;
SELECT throws_ok('SELECT * FROM dialer.providers', '42501', NULL, 'app: SELECT * FROM providers is refused');
SELECT throws_ok('SELECT p FROM dialer.providers p', '42501', NULL, 'app: the whole provider row is refused');
SELECT throws_ok($$SELECT name FROM dialer.providers WHERE bearer_token LIKE 'be%'$$, '42501', NULL,
                 'app: cannot probe a secret in WHERE');
-- writes go only through the API
SELECT throws_ok($$INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts)
                   VALUES (now(), now(), '+14155550102', 'tap-twilio', 1)$$, '42501', NULL, 'app: cannot insert calls directly');
SELECT throws_ok($$UPDATE dialer.scheduled_calls SET status = 'completed'$$, '42501', NULL, 'app: cannot update calls');
SELECT throws_ok($$DELETE FROM dialer.scheduled_calls$$, '42501', NULL, 'app: cannot delete calls');
SELECT throws_ok($$UPDATE dialer.providers SET base_url = 'https://evil.example.com'$$, '42501', NULL, 'app: cannot change providers');
SELECT throws_ok($$INSERT INTO dialer.do_not_call (number) VALUES ('+14155550103')$$, '42501', NULL,
                 'app: cannot change the do-not-call list');
SELECT throws_ok($$INSERT INTO dialer.call_events (call_id, event) SELECT id, 'forged' FROM app_calls$$, '42501', NULL,
                 'app: cannot write events');
-- administrative functions stay the owner's
SELECT throws_ok($$SELECT dialer.cleanup('0')$$, '42501', NULL, 'app: cannot run cleanup');
SELECT throws_ok($$SELECT dialer.grant_usage('tap_dialer_nobody')$$, '42501', NULL, 'app: cannot grant usage to others');
SELECT throws_ok($$SELECT dialer.wake_worker()$$, '42501', NULL, 'app: cannot call internal wake_worker');
SELECT throws_ok($$SELECT dialer.raise_bad_argument('a', 'b', 'c', 'd')$$, '42501', NULL, 'app: cannot call internal helpers');
RESET ROLE;

--
-- a role without the grant can do nothing
--
SET LOCAL ROLE tap_dialer_nobody;
SELECT throws_ok($$SELECT dialer.enqueue_call('+14155550100', provider => 'tap-twilio')$$, '42501', NULL,
                 'nobody: enqueue_call refused');
SELECT throws_ok($$SELECT dialer.cancel_call(1)$$, '42501', NULL, 'nobody: cancel_call refused');
SELECT throws_ok($$SELECT dialer.retry_call(1)$$, '42501', NULL, 'nobody: retry_call refused');
SELECT throws_ok($$SELECT dialer.call_details(1)$$, '42501', NULL, 'nobody: call_details refused');
SELECT throws_ok($$SELECT dialer.stats()$$, '42501', NULL, 'nobody: stats refused');
SELECT throws_ok($$SELECT * FROM dialer.worker_status()$$, '42501', NULL, 'nobody: worker_status refused');
SELECT throws_ok($$SELECT count(*) FROM dialer.scheduled_calls$$, '42501', NULL, 'nobody: cannot read the queue');
SELECT throws_ok($$SELECT name FROM dialer.providers$$, '42501', NULL, 'nobody: cannot read providers');
RESET ROLE;
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_proc p
	 WHERE p.pronamespace::regnamespace::text IN ('dialer', 'dialer_api')
	   AND has_function_privilege('tap_dialer_nobody', p.oid, 'EXECUTE')
	   AND p.oid NOT IN ('dialer.is_valid_timezone(text)'::regprocedure, 'dialer.is_e164(text)'::regprocedure,
						 'dialer.all_e164(text[])'::regprocedure, 'dialer.final_statuses()'::regprocedure,
						 'dialer.open_statuses()'::regprocedure, 'dialer.pending_statuses()'::regprocedure,
						 'dialer.in_progress_statuses()'::regprocedure, 'dialer.unsettled_statuses()'::regprocedure,
						 'dialer.not_reached_statuses()'::regprocedure)$$,
	'PUBLIC may execute no function of dialer or dialer_api (but the harmless is_valid_timezone, is_e164, all_e164 and the constant status groups)');
-- is_e164 must stay PUBLIC: it is the domain dialer.e164's check, run as whoever writes a number
SELECT ok(has_function_privilege('tap_dialer_nobody', 'dialer.is_e164(text)', 'EXECUTE')
		  AND has_function_privilege('tap_dialer_nobody', 'dialer.all_e164(text[])', 'EXECUTE'),
		  'nobody may execute is_e164 and all_e164 (the checks of dialer.e164 and of campaigns'' number lists, run as whoever writes a number)');
SELECT is_empty($$
	SELECT c.oid::regclass::text FROM pg_class c
	 WHERE c.relnamespace = 'dialer'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
	   AND has_table_privilege('tap_dialer_nobody', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')$$,
	'PUBLIC has no privilege on any dialer table');
SELECT ok(NOT has_schema_privilege('tap_dialer_nobody', 'dialer', 'USAGE'), 'PUBLIC has no USAGE on schema dialer');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'dialer_api'
                         AND has_schema_privilege('tap_dialer_nobody', oid, 'USAGE')),
          'PUBLIC has no USAGE on schema dialer_api');
SELECT is_empty($$
	SELECT c.attname FROM pg_attribute c
	 WHERE c.attrelid = 'dialer.providers'::regclass AND c.attnum > 0 AND NOT c.attisdropped
	   AND c.attname IN ('auth_token', 'api_key_secret', 'bearer_token', 'webhook_secret')
	   AND (has_column_privilege('tap_dialer_app', c.attrelid, c.attnum, 'SELECT')
	        OR has_column_privilege('tap_dialer_nobody', c.attrelid, c.attnum, 'SELECT'))$$,
	'no secret column is readable by either role');

--
-- secrets never appear in outputs, events or errors (as the app role)
--
-- the worker may still be starting (right after the cluster started): wait for it, up to 30 s
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		EXIT WHEN EXISTS (SELECT 1 FROM dialer.worker_status());
		PERFORM pg_sleep(0.1);
	END LOOP;
END;
$$;
SET LOCAL ROLE tap_dialer_app;
CREATE TEMP TABLE app_seen (what text, txt text);
INSERT INTO app_seen SELECT 'call_details', dialer.call_details(id)::text FROM app_calls;
INSERT INTO app_seen SELECT 'stats', dialer.stats('2030-01-01')::text;
INSERT INTO app_seen SELECT 'worker_status', coalesce(string_agg(w::text, ','), '') FROM dialer.worker_status() w;
INSERT INTO app_seen SELECT 'events', coalesce(string_agg(e::text, ','), '') FROM dialer.call_events e;
INSERT INTO app_seen SELECT 'calls', coalesce(string_agg(c::text, ','), '') FROM dialer.scheduled_calls c;
INSERT INTO app_seen SELECT 'unknown provider', pg_temp.error_of($$SELECT dialer.enqueue_call('+14155550100', provider => 'nope')$$);
INSERT INTO app_seen SELECT 'bad number', pg_temp.error_of($$SELECT dialer.enqueue_call('+0', provider => 'tap-twilio')$$);
INSERT INTO app_seen SELECT 'bad payload', pg_temp.error_of($$SELECT dialer.enqueue_call('+14155550100', provider => 'tap-backend', payload => '{"mode": "x"}')$$);
INSERT INTO app_seen SELECT 'unknown call', pg_temp.error_of($$SELECT dialer.call_details(-5)$$);
INSERT INTO app_seen SELECT 'secret column', pg_temp.error_of($$SELECT auth_token FROM dialer.providers$$);
RESET ROLE;
SELECT is((SELECT count(*)::int FROM app_seen WHERE txt IS NOT NULL), 10, 'ten outputs and errors were collected');
SELECT matches((SELECT txt FROM app_seen WHERE what = 'worker_status'), '^\(\d+,' || current_database() || ',',
               'worker_status showed the running worker of this database to the app role');
SELECT matches((SELECT txt FROM app_seen WHERE what = 'unknown provider'), 'tap-backend.*tap-twilio.*tap-voice',
               'the unknown-provider error lists the provider names');
SELECT is_empty($$SELECT what FROM app_seen WHERE txt ~ 'SECRET'$$,
                'no secret in call_details, stats, worker_status, events, calls or error messages');
SELECT is_empty($$SELECT e.id FROM dialer.call_events e WHERE e::text ~ 'SECRET'$$,
                'no secret in any event (as the owner sees them)');

SELECT * FROM finish();
ROLLBACK;
