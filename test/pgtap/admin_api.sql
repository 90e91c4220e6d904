-- pgTAP: the admin API's SQL (schema dialer_admin, sql/install/parts/80_admin.sql) without PostgREST:
-- every function runs as the owner with a pinned search_path ending in pg_temp, nothing of it
-- is granted to PUBLIC, refusals carry the SQLSTATEs PostgREST turns into 404 / 409 / 403 / 429
-- and write nothing, and the frontend's limit is keyed on the JWT claims, not on arguments.
-- (HTTP, JWTs and concurrency: test/integration/admin_api.test.js.)  Rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(16);

SELECT is((SELECT count(*)::int FROM pg_proc p WHERE p.pronamespace = 'dialer_admin'::regnamespace), 12,
		  'dialer_admin has its 12 functions');
SELECT is((SELECT string_agg(p.proname, ', ' ORDER BY p.proname) FROM pg_proc p
			WHERE p.pronamespace = 'dialer_admin'::regnamespace
			  AND NOT (p.prosecdef AND 'search_path=pg_catalog, dialer, pg_temp' = ANY (p.proconfig))),
		  NULL, 'every dialer_admin function is SECURITY DEFINER with search_path pg_catalog, dialer, pg_temp');
SELECT is((SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p, aclexplode(p.proacl) a
			WHERE p.pronamespace = 'dialer_admin'::regnamespace AND a.grantee = 0),
		  NULL, 'no dialer_admin function is executable by PUBLIC');
SELECT ok((SELECT bool_and(p.proacl IS NOT NULL) FROM pg_proc p WHERE p.pronamespace = 'dialer_admin'::regnamespace),
		  'every dialer_admin function has an explicit ACL (the default would grant PUBLIC)');
SELECT is((SELECT string_agg(c.relname, ', ') FROM pg_class c, aclexplode(c.relacl) a
			WHERE c.relnamespace = 'dialer_admin'::regnamespace AND a.grantee = 0),
		  NULL, 'no dialer_admin view is readable by PUBLIC');
SELECT ok(NOT has_schema_privilege('public', 'dialer_admin', 'USAGE'), 'PUBLIC may not use schema dialer_admin');

-- refusals
INSERT INTO dialer.providers (name, kind, base_url, account_sid, twiml_url, enabled)
VALUES ('tap_admin', 'twilio', 'http://127.0.0.1:9', 'AC0123456789abcdef0123456789abcdef',
		'https://example.com/twiml', false);
SELECT throws_ok($$SELECT dialer_admin.call(-1)$$, 'PT404', 'call -1 does not exist', 'an unknown call is PT404 (HTTP 404)');
SELECT throws_ok($$SELECT dialer_admin.set_provider_enabled('tap_nope', true)$$, 'PT404', NULL, 'an unknown provider is PT404');
CREATE TEMP TABLE tap_ids AS SELECT (dialer_admin.enqueue_call('+15550199001', provider => 'tap_admin'))->>'id' AS id;
SELECT is((SELECT jsonb_agg(e->>'outcome') FROM jsonb_array_elements(dialer_admin.enqueue_calls(
			'[{"to_number": "+15550199011", "provider": "tap_admin"}, {"to_number": "12345", "provider": "tap_admin"}]', false)) e),
		  '["scheduled", "refused"]', 'enqueue_calls (not atomic): the good call is written, the bad one refused with its reason');
SELECT throws_ok($$SELECT dialer_admin.enqueue_calls('[{"to_number": "+15550199012", "provider": "tap_admin"}, {"to_number": "12345", "provider": "tap_admin"}]')$$,
		  '22023', NULL, 'enqueue_calls (atomic): one bad call refuses the batch (HTTP 400)');
SELECT is((dialer_admin.cancel_call((SELECT id::bigint FROM tap_ids)))->>'status', 'canceled', 'cancel_call cancels a scheduled call');
SELECT throws_ok(format('SELECT dialer_admin.cancel_call(%s)', (SELECT id FROM tap_ids)), 'PT409', NULL,
				 'canceling it again is PT409 (HTTP 409)');

-- the frontend: who and what come from request.jwt.claims
INSERT INTO dialer.frontend_purposes (name, provider) VALUES ('tap_qualify', 'tap_admin');
SELECT throws_ok($$SELECT dialer_admin.frontend_enqueue('+15550199002')$$, 'PT403', 'the token names no caller',
				 'no claims: PT403');
SELECT set_config('request.jwt.claims', '{"role": "dialer_frontend", "sub": "user-1", "purpose": "tap_qualify"}', true);
SELECT is((dialer_admin.frontend_enqueue('+15550199002'))->>'status', 'scheduled', 'the first call of user-1 is enqueued');
SELECT throws_ok($$SELECT dialer_admin.frontend_enqueue('+15550199003')$$, 'PT429', NULL,
				 'a second call of user-1 within the interval is PT429 (HTTP 429), whatever the number');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap_qualify' AND customer_ref = 'user-1'), 1,
		  'one call stored for user-1');

SELECT * FROM finish();
ROLLBACK;
