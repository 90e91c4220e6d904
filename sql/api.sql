--
-- api: the outputs of the SQL API: enqueue_call (defaults, every argument, dedupe,
-- do-not-call), stats, cleanup, the append-only event log, and DROP/CREATE EXTENSION
-- in a database that has used the extension.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE EXTENSION pg_dialer;
-- the version installed (pg_available_extensions would be empty where the control file lives
-- outside the share directory, as in the Debian package's build-time test)
SELECT e.extname, e.extversion, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pg_dialer';
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url)
VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
        'twilio-auth-token-SECRET', '+15005550006', 'https://app.example.com/twiml/reminder.xml');
INSERT INTO dialer.providers (name, kind, base_url, bearer_token)
VALUES ('backend', 'backend', 'https://calls.example.com', 'backend-bearer-SECRET');
--
-- enqueue_call with every default: due now, provider 'default', its from_number
--
SELECT dialer.enqueue_call('+14155550100') AS id;
SELECT id, status, run_at <= now() AS due, next_attempt_at = run_at AS next_is_run_at,
       to_number, from_number, provider, mode, payload, campaign, customer_ref, dedupe_key,
       priority, attempts, attempts_base, max_attempts, timezone, deadline, provider_call_id,
       last_error, finished_at
  FROM dialer.scheduled_calls WHERE id = 1;
SELECT call_id, event, from_status, to_status, detail->>'by' AS by,
       (detail->>'run_at')::timestamptz = c.run_at AS detail_run_at
  FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
 WHERE call_id = 1;
--
-- every argument, by name
--
SELECT dialer.enqueue_call(
	to_number => '+442071838750',
	run_at => '2030-03-15 09:30:00+00',
	provider => 'backend',
	payload => '{"mode": "DIRECT", "script": "Hello, this is a reminder.", "customer": {"id": 42}}',
	campaign => 'reminders',
	dedupe_key => 'appointment-42-2030-03-15',
	priority => 10,
	max_attempts => 5,
	timezone => 'Europe/London',
	deadline => '2030-03-15 18:00:00+00') AS id;
SELECT id, status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload,
       campaign, dedupe_key, priority, max_attempts, timezone, deadline
  FROM dialer.scheduled_calls WHERE id = 2;
SELECT call_id, event, from_status, to_status, detail
  FROM dialer.call_events WHERE call_id = 2;
-- max_attempts comes from the call, else its campaign, else dialer.default_max_attempts
CREATE VIEW renewal_candidates AS SELECT 'customer-1'::text AS customer_ref, '+14155550101'::text AS phone;
INSERT INTO dialer.campaigns (name, source, provider, max_attempts)
VALUES ('renewals', 'renewal_candidates', 'default', 4);
SELECT dialer.enqueue_call('+14155550101', run_at => '2030-03-15 10:00:00+00', campaign => 'renewals') AS id;
SET dialer.default_max_attempts = 7;
SELECT dialer.enqueue_call('+14155550102', run_at => '2030-03-15 10:00:00+00') AS id;
SELECT dialer.enqueue_call('+14155550103', run_at => '2030-03-15 10:00:00+00', campaign => 'renewals',
                           max_attempts => 1) AS id;
RESET dialer.default_max_attempts;
SELECT dialer.enqueue_call('+14155550104', run_at => '2030-03-15 10:00:00+00', campaign => 'ad-hoc') AS id;
SELECT id, campaign, max_attempts FROM dialer.scheduled_calls WHERE id BETWEEN 3 AND 6 ORDER BY id;
--
-- dedupe: a key already stored returns the stored call's id and writes nothing
--
SELECT count(*) AS calls, (SELECT count(*) FROM dialer.call_events) AS events FROM dialer.scheduled_calls;
SELECT dialer.enqueue_call('+442071838750', dedupe_key => 'appointment-42-2030-03-15') AS same_id;
SELECT dialer.enqueue_call('+14155550199', run_at => '2031-01-01 00:00:00+00', provider => 'default',
                           dedupe_key => 'appointment-42-2030-03-15') AS same_id_other_arguments;
SELECT count(*) AS calls, (SELECT count(*) FROM dialer.call_events) AS events FROM dialer.scheduled_calls;
-- the arguments are validated even for a duplicate key
SELECT dialer.enqueue_call('+0', dedupe_key => 'appointment-42-2030-03-15');
-- keys are exact (case, spaces)
SELECT dialer.enqueue_call('+14155550105', run_at => '2030-03-15 10:00:00+00',
                           dedupe_key => 'Appointment-42-2030-03-15') AS other_key;
-- a finished call keeps its key: the same key still returns it
SELECT dialer.cancel_call(2) AS canceled;
SELECT dialer.enqueue_call('+442071838750', dedupe_key => 'appointment-42-2030-03-15') AS same_id_after_cancel;
SELECT id, status, dedupe_key FROM dialer.scheduled_calls WHERE dedupe_key IS NOT NULL ORDER BY id;
--
-- do-not-call: the call is stored as skipped, with an event saying why, and its id returned
--
INSERT INTO dialer.do_not_call (number, reason) VALUES ('+14155550166', 'asked not to be called');
SELECT dialer.enqueue_call('+14155550166', run_at => '2030-03-15 10:00:00+00', dedupe_key => 'dnc-1') AS skipped_id;
SELECT id, status, finished_at IS NOT NULL AS finished, attempts
  FROM dialer.scheduled_calls WHERE to_number = '+14155550166';
SELECT event, from_status, to_status, detail->>'reason' AS reason,
       detail->>'do_not_call_reason' AS do_not_call_reason, detail ? 'listed_at' AS has_listed_at
  FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
 WHERE c.to_number = '+14155550166' ORDER BY e.id;
SELECT dialer.enqueue_call('+14155550166', dedupe_key => 'dnc-1') AS same_skipped_id;
-- a skipped call cannot be canceled or retried
SELECT dialer.cancel_call(8) AS canceled, dialer.retry_call(8) AS requeued;
--
-- stats of a day: the calls whose run_at falls on that day in the session's TimeZone
--
DELETE FROM dialer.scheduled_calls;
SELECT count(*) AS events_left FROM dialer.call_events;
SELECT count(dialer.enqueue_call('+1415555' || lpad(g::text, 4, '0'), run_at => t, campaign => k)) AS enqueued
  FROM (VALUES (1, '2030-04-01 00:00:00+00'::timestamptz, 'renewals'),
               (2, '2030-04-01 08:00:00+00', 'renewals'),
               (3, '2030-04-01 09:00:00+00', 'renewals'),
               (4, '2030-04-01 10:00:00+00', 'renewals'),
               (5, '2030-04-01 11:00:00+00', 'reminders'),
               (6, '2030-04-01 12:00:00+00', 'reminders'),
               (7, '2030-04-01 13:00:00+00', NULL),
               (8, '2030-04-01 14:00:00+00', NULL),
               (9, '2030-04-01 15:00:00+00', NULL),
               (10, '2030-04-01 16:00:00+00', NULL),
               (11, '2030-04-01 23:59:59.999999+00', 'reminders'),
               (12, '2030-03-31 23:59:59.999999+00', 'renewals'),
               (13, '2030-04-02 00:00:00+00', 'renewals'),
               (14, '2030-04-02 03:00:00+00', 'renewals')) AS v(g, t, k);
UPDATE dialer.scheduled_calls c SET status = v.status
  FROM (VALUES ('+14155550001', 'completed'), ('+14155550002', 'completed'), ('+14155550003', 'failed'),
               ('+14155550004', 'no_answer'), ('+14155550005', 'busy'), ('+14155550006', 'dialing'),
               ('+14155550007', 'dispatching'), ('+14155550008', 'canceled'), ('+14155550009', 'expired'),
               ('+14155550010', 'unknown'), ('+14155550012', 'dialing'),
               ('+14155550014', 'skipped')) AS v(number, status)
 WHERE c.to_number = v.number;
SELECT to_number, run_at, status, campaign FROM dialer.scheduled_calls ORDER BY run_at;
SELECT jsonb_pretty(dialer.stats('2030-04-01') - 'worker');
-- the same day in New York (UTC-4 in April) starts and ends four hours later
SET TimeZone = 'America/New_York';
SELECT jsonb_pretty(dialer.stats('2030-04-01') - 'worker' - 'by_campaign');
SET TimeZone = 'UTC';
SELECT dialer.stats('2029-01-01') - 'worker' AS empty_day;
SELECT (dialer.stats())->>'day' = current_date::text AS today_by_default,
       dialer.stats() ? 'worker' AS reports_worker;
SELECT dialer.stats(NULL);
--
-- cleanup: finished calls older than the limit go, with their attempts and events;
-- scheduled, dispatching, dialing and unknown calls stay however old they are
--
DELETE FROM dialer.scheduled_calls;
SELECT count(dialer.enqueue_call('+1415555' || lpad(g::text, 4, '0'), run_at => '2030-05-01 10:00:00+00'))
  FROM generate_series(1, 22) AS g;
-- +14155550001 and 02 are scheduled, 03 and 04 dispatching, ...; the odd ones finished 40 days
-- ago, the even ones yesterday (a finished_at on an unfinished call only proves it is ignored)
UPDATE dialer.scheduled_calls c
   SET status = v.status,
       finished_at = now() - CASE WHEN right(c.to_number, 2)::int % 2 = 1 THEN interval '40 days'
                                  ELSE interval '1 day' END
  FROM (VALUES (0, 'scheduled'), (1, 'dispatching'), (2, 'dialing'), (3, 'completed'), (4, 'no_answer'),
               (5, 'busy'), (6, 'failed'), (7, 'canceled'), (8, 'skipped'), (9, 'expired'),
               (10, 'unknown')) AS v(n, status)
 WHERE (right(c.to_number, 2)::int - 1) / 2 = v.n;
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at)
SELECT id, 1, now() - interval '40 days' FROM dialer.scheduled_calls;
SELECT to_number, status, finished_at < now() - interval '30 days' AS finished_over_30_days_ago
  FROM dialer.scheduled_calls ORDER BY to_number;
SELECT dialer.cleanup() AS removed;
SELECT to_number, status FROM dialer.scheduled_calls ORDER BY to_number;
SELECT (SELECT count(*) FROM dialer.scheduled_calls) AS calls,
       (SELECT count(*) FROM dialer.call_attempts) AS attempts,
       (SELECT count(*) FROM dialer.call_events) AS events,
       (SELECT count(DISTINCT call_id) FROM dialer.call_attempts) AS calls_with_attempts,
       (SELECT count(DISTINCT call_id) FROM dialer.call_events) AS calls_with_events;
SELECT dialer.cleanup('30 days') AS removed_again;
SELECT dialer.cleanup('0') AS removed_all_finished;
SELECT to_number, status FROM dialer.scheduled_calls ORDER BY to_number;
SELECT (SELECT count(*) FROM dialer.call_attempts) AS attempts,
       (SELECT count(*) FROM dialer.call_events) AS events;
SELECT dialer.cleanup(NULL);
SELECT dialer.cleanup('-1 day');
--
-- call_events is append-only, even for the owner
--
SELECT count(*) AS events FROM dialer.call_events;
UPDATE dialer.call_events SET event = 'rewritten' WHERE id = (SELECT min(id) FROM dialer.call_events);
DELETE FROM dialer.call_events WHERE id = (SELECT min(id) FROM dialer.call_events);
-- (which row a whole-table statement trips on first depends on the heap: terse errors)
\set VERBOSITY terse
UPDATE dialer.call_events SET detail = '{}';
DELETE FROM dialer.call_events;
\set VERBOSITY default
TRUNCATE dialer.call_events;
TRUNCATE dialer.scheduled_calls CASCADE;
INSERT INTO dialer.call_events (call_id, event, detail)
SELECT min(id), 'note', '{"text": "appending is allowed"}' FROM dialer.scheduled_calls;
SELECT c.to_number, e.event, e.detail
  FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id ORDER BY e.id;
--
-- DROP and CREATE again in the database that used it: a clean, working install
--
DROP EXTENSION pg_dialer;
-- PostgreSQL keeps the schema it created for the extension, empty
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'dialer'::regnamespace) AS relations,
       (SELECT count(*) FROM pg_proc WHERE pronamespace = 'dialer'::regnamespace) AS functions,
       (SELECT count(*) FROM pg_type WHERE typnamespace = 'dialer'::regnamespace) AS types;
CREATE EXTENSION pg_dialer;
SELECT count(*) AS calls FROM dialer.scheduled_calls;
INSERT INTO dialer.providers (name, kind, base_url, account_sid, twiml_url) VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC1', 'https://app.example.com/t.xml');
SELECT dialer.enqueue_call('+14155550100', run_at => '2030-03-15 10:00:00+00') AS first_id;
SELECT id, status, run_at FROM dialer.scheduled_calls;
DROP EXTENSION pg_dialer;
DROP SCHEMA dialer;
DROP VIEW renewal_candidates;
