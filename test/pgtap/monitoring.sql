-- pgTAP: the monitoring views (dialer.call_counts, dialer.provider_health, dialer.worker_health)
-- computed from real rows, their comments, dialer.grant_monitoring()'s privileges, and what a
-- database no dispatcher serves looks like (dialer_tap is not in the harness's dialer.databases).
-- Self-contained: runs in a transaction that is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = error;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(32);

-- the objects, each with a comment, every column too
SELECT has_view('dialer', v, format('view dialer.%s exists', v))
  FROM unnest(ARRAY['call_counts', 'provider_health', 'worker_health']) AS v;
SELECT is_empty($$
	SELECT c.relname || '.' || a.attname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE n.nspname = 'dialer' AND c.relname IN ('call_counts', 'provider_health', 'worker_health')
	   AND (col_description(c.oid, a.attnum) IS NULL OR obj_description(c.oid, 'pg_class') IS NULL)$$,
	'every monitoring view and each of its columns has a comment');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_proc p
	 WHERE p.oid IN ('dialer.provider_status()'::regprocedure, 'dialer.dispatchers()'::regprocedure,
					 'dialer.is_served()'::regprocedure, 'dialer.check_served()'::regprocedure,
					 'dialer.grant_monitoring(name)'::regprocedure)
	   AND obj_description(p.oid, 'pg_proc') IS NULL$$,
	'every monitoring function has a comment');

-- a database no dispatcher serves
SELECT is(dialer.is_served(), false, 'dialer_tap is not served (not in dialer.databases)');
SELECT is(dialer.check_served(), false, 'check_served() says so (with a WARNING)');
SELECT is((SELECT row(pid, state)::text FROM dialer.worker_health), row(NULL::int, 'not served')::text,
          'worker_health has its one row: no pid, not served');
SELECT is_empty($$SELECT * FROM dialer.worker_status()$$, 'worker_status() has no row here');
SELECT is_empty($$SELECT * FROM dialer.provider_status()$$, 'nor provider_status()');
SELECT is((SELECT count(*)::int FROM dialer.dispatchers() WHERE database = current_database()), 0,
          'dispatchers() does not list this database');

-- calls by status, provider and campaign
INSERT INTO dialer.providers (name, kind, base_url, account_sid, from_number, calls_per_second, enabled)
VALUES ('mon_tw', 'twilio', 'https://api.twilio.com', 'AC1', '+15550100000', 10, false),
	   ('mon_other', 'twilio', 'https://api.twilio.com', 'AC1', '+15550100000', 10, true);
INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, campaign, max_attempts)
SELECT s, now() - interval '90 seconds', now() - interval '90 seconds', '+15550100001', 'mon_tw', c, 3
  FROM (VALUES ('scheduled', 'spring'), ('scheduled', 'spring'), ('scheduled', NULL),
			   ('dialing', 'spring'), ('failed', 'spring')) v(s, c);
INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts)
VALUES ('scheduled', now() + interval '1 hour', now() + interval '1 hour', '+15550100002', 'mon_other', 3);
SELECT set_eq($$SELECT status, provider, campaign, calls::int FROM dialer.call_counts WHERE provider LIKE 'mon\_%'$$,
			  $$VALUES ('scheduled', 'mon_tw', 'spring', 2), ('scheduled', 'mon_tw', NULL, 1),
					   ('dialing', 'mon_tw', 'spring', 1), ('failed', 'mon_tw', 'spring', 1),
					   ('scheduled', 'mon_other', NULL, 1)$$,
			  'call_counts: calls by status, provider and campaign');
SELECT ok((SELECT next_attempt_at FROM dialer.call_counts WHERE provider = 'mon_tw' AND status = 'scheduled' AND campaign = 'spring')
		  < now() - interval '80 seconds', 'with the earliest next attempt of the scheduled ones');

-- the lag counts only due calls of enabled providers
SELECT is((SELECT due_calls::int FROM dialer.worker_health), 0, 'due calls of a disabled provider are not lag');
UPDATE dialer.providers SET enabled = true WHERE name = 'mon_tw';
SELECT is((SELECT due_calls::int FROM dialer.worker_health), 3, 'three due calls once it is enabled (the future one is not due)');
SELECT ok((SELECT lag_seconds BETWEEN 89 AND 600 FROM dialer.worker_health), 'lag_seconds: the oldest has waited 90 s');
UPDATE dialer.scheduled_calls SET status = 'canceled' WHERE provider = 'mon_tw' AND status = 'scheduled';
SELECT is((SELECT row(due_calls::int, lag_seconds)::text FROM dialer.worker_health), row(0, 0::float8)::text,
          'no lag when nothing is due');
-- the lag counts from when a call became due to be attempted (a retry, a window opening), not
-- from its first run_at: a call due two hours ago, claimed and stored as a retry due at once,
-- as the worker does (dialer.claim_calls, dialer.record_results)
CREATE TEMP TABLE mon_retry AS
SELECT dialer.enqueue_call('+15550100003', now() - interval '2 hours', 'mon_tw', '{"message": "m"}', late_ok => true) AS id;
SELECT is((SELECT row(due_calls::int, lag_seconds >= 7200)::text FROM dialer.worker_health), row(1, true)::text,
          'a call due two hours ago and not claimed: a lag of two hours');
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('mon_tw', 10, 'UTC', '00:00', '24:00', NULL) c
            WHERE c.id = (SELECT id FROM mon_retry)), 1, 'the worker claims it');
SELECT dialer.record_results(ARRAY[(SELECT id FROM mon_retry)], ARRAY[1], ARRAY['retry'], ARRAY[503], ARRAY[NULL::text],
                             ARRAY['503'], ARRAY['Service Unavailable'], ARRAY[NULL::text], ARRAY[0], ARRAY[now()]);
SELECT is((SELECT row(h.due_calls::int, h.oldest_due_at = c.next_attempt_at, h.lag_seconds)::text
             FROM dialer.worker_health h, dialer.scheduled_calls c WHERE c.id = (SELECT id FROM mon_retry)),
          row(1, true, 0::float8)::text,
          'its retry, due now: oldest_due_at is the retry''s next attempt and the lag counts from it, not from run_at');
DELETE FROM dialer.scheduled_calls WHERE id = (SELECT id FROM mon_retry);   -- with its attempt: not in provider_health below

-- provider health from the call log
SELECT is((SELECT row(calls_in_progress, requests_in_flight, consecutive_failures, paused, accepted_last_hour,
					  failed_last_hour, last_error)::text FROM dialer.provider_health WHERE provider = 'mon_tw'),
		  row(1::bigint, 0, 0, false, 0::bigint, 0::bigint, NULL::text)::text,
		  'provider_health of a quiet provider: one call dialing, nothing else');
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, responded_at, http_status, error_code, error_message)
SELECT id, 1, now() - interval '10 minutes', now() - interval '10 minutes', 201, NULL, NULL
  FROM dialer.scheduled_calls WHERE provider = 'mon_tw' AND status = 'dialing';
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, responded_at, http_status, error_code, error_message)
SELECT id, 1, now() - interval '5 minutes', now() - interval '5 minutes', 400, '21211', 'Invalid To number'
  FROM dialer.scheduled_calls WHERE provider = 'mon_tw' AND status = 'failed';
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, responded_at, http_status, error_code, error_message)
SELECT id, 1, now() - interval '2 hours', now() - interval '2 hours', NULL, 'timeout', 'old failure'
  FROM dialer.scheduled_calls WHERE provider = 'mon_tw' AND status = 'canceled' LIMIT 1;
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at)
SELECT id, 2, now() FROM dialer.scheduled_calls WHERE provider = 'mon_tw' AND status = 'dialing';
SELECT is((SELECT row(accepted_last_hour, failed_last_hour)::text FROM dialer.provider_health WHERE provider = 'mon_tw'),
		  row(1::bigint, 1::bigint)::text,
		  'accepted and failed requests of the last hour (not older ones, not the one still in flight)');
SELECT is((SELECT last_error FROM dialer.provider_health WHERE provider = 'mon_tw'), '21211: Invalid To number',
		  'last_error: code and message of the latest failed request');
SELECT ok((SELECT last_error_at BETWEEN now() - interval '6 minutes' AND now() - interval '4 minutes'
			 FROM dialer.provider_health WHERE provider = 'mon_tw'), 'last_error_at: when it ended');
SELECT is((SELECT row(accepted_last_hour, failed_last_hour, last_error)::text FROM dialer.provider_health WHERE provider = 'mon_other'),
		  row(0::bigint, 0::bigint, NULL::text)::text, 'another provider''s attempts are not counted');
SELECT is((SELECT count(*)::int FROM dialer.provider_health WHERE provider LIKE 'mon\_%'), 2, 'one row per provider');
SELECT ok(NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'dialer' AND table_name = 'provider_health'
						 AND column_name IN ('auth_token', 'api_key_secret', 'bearer_token', 'webhook_secret')),
		  'provider_health has no secret column');

-- grant_monitoring
SELECT ok(NOT has_function_privilege('public', 'dialer.grant_monitoring(name)', 'EXECUTE'), 'grant_monitoring is not for PUBLIC');
SELECT ok(NOT has_table_privilege('public', 'dialer.provider_health', 'SELECT'), 'the views are not for PUBLIC');
CREATE ROLE mon_tap_role;
SELECT lives_ok($$SELECT dialer.grant_monitoring('mon_tap_role')$$, 'grant_monitoring(role)');
SET LOCAL ROLE mon_tap_role;
SELECT is((SELECT count(*)::int FROM dialer.provider_health WHERE provider LIKE 'mon\_%'), 2, 'the role reads provider_health');
SELECT throws_ok($$SELECT count(*) FROM dialer.scheduled_calls$$, '42501', NULL, 'but not the queue');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
