--
-- lifecycle: cancel_call() and retry_call() on a call of every status, unknown ids,
-- and call_details().  Statuses the worker would set are set here by the owner.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE EXTENSION pg_dialer;
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url)
VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
        'twilio-auth-token-SECRET', '+15005550006', 'https://app.example.com/twiml/reminder.xml');
-- Makes call_details() output independent of the clock: every timestamp within a day of
-- now() (created_at, updated_at, the time of an event, next_attempt_at after a retry, ...)
-- reads "<now>"; the fixed times of this test are in 2030.
CREATE FUNCTION clockless(j jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	RETURN CASE jsonb_typeof(j)
		WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(k, clockless(v)), '{}')
			FROM jsonb_each(j) AS e(k, v))
		WHEN 'array' THEN (SELECT coalesce(jsonb_agg(clockless(v) ORDER BY n), '[]')
			FROM jsonb_array_elements(j) WITH ORDINALITY AS a(v, n))
		WHEN 'string' THEN CASE
			WHEN j #>> '{}' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d'
			 AND (j #>> '{}')::timestamptz BETWEEN now() - interval '1 day' AND now() + interval '1 day'
			THEN '"<now>"' ELSE j END
		ELSE j END;
END;
$$;
-- Two calls of every status: ids 1-11 for cancel_call, 12-22 for retry_call, in this order.
CREATE TABLE statuses (n int PRIMARY KEY, status text NOT NULL);
INSERT INTO statuses VALUES (1, 'scheduled'), (2, 'dispatching'), (3, 'dialing'), (4, 'completed'),
	(5, 'no_answer'), (6, 'busy'), (7, 'failed'), (8, 'canceled'), (9, 'skipped'), (10, 'expired'),
	(11, 'unknown');
SELECT count(dialer.enqueue_call('+1415555' || lpad(g::text, 4, '0'),
                                 run_at => '2030-03-15 10:00:00+00',
                                 deadline => '2030-03-15 20:00:00+00')) AS enqueued
  FROM generate_series(1, 22) AS g;
UPDATE dialer.scheduled_calls c
   SET status = s.status,
       attempts = CASE WHEN s.status IN ('scheduled', 'canceled', 'skipped', 'expired') THEN 0 ELSE 2 END,
       last_error = CASE WHEN s.status = 'failed' THEN 'HTTP 500 from provider' END,
       finished_at = CASE WHEN s.status IN ('completed', 'no_answer', 'busy', 'failed', 'canceled',
                                            'skipped', 'expired')
                          THEN '2030-03-15 10:05:00+00'::timestamptz END
  FROM statuses s
 WHERE c.id IN (s.n, s.n + 11);
SELECT id, status, attempts, finished_at FROM dialer.scheduled_calls ORDER BY id;
--
-- cancel_call: only a scheduled call can be canceled
--
SELECT c.id, c.status AS before, dialer.cancel_call(c.id) AS canceled
  FROM dialer.scheduled_calls c WHERE c.id <= 11 ORDER BY c.id;
SELECT c.id, c.status AS after, c.finished_at IS NOT NULL AS finished,
       c.finished_at = '2030-03-15 10:05:00+00' AS finished_unchanged
  FROM dialer.scheduled_calls c WHERE c.id <= 11 ORDER BY c.id;
-- a second cancel of the same call changes nothing
SELECT dialer.cancel_call(1) AS canceled_again;
SELECT call_id, event, from_status, to_status, detail
  FROM dialer.call_events WHERE event <> 'enqueued' ORDER BY id;
--
-- retry_call: failed, unknown and expired calls go back in the queue, due now
--
SELECT c.id, c.status AS before, dialer.retry_call(c.id) AS requeued
  FROM dialer.scheduled_calls c WHERE c.id > 11 ORDER BY c.id;
SELECT c.id, c.status AS after, c.next_attempt_at <= now() AS due_now, c.attempts,
       c.attempts_base, c.deadline, c.finished_at IS NOT NULL AS finished
  FROM dialer.scheduled_calls c WHERE c.id > 11 ORDER BY c.id;
-- a requeued call is scheduled again: no second retry, but it can be canceled now
SELECT dialer.retry_call(18) AS requeued_again;
SELECT dialer.cancel_call(18) AS canceled;
SELECT call_id, event, from_status, to_status, detail
  FROM dialer.call_events WHERE event <> 'enqueued' AND call_id > 11 ORDER BY id;
--
-- unknown and missing ids
--
SELECT dialer.cancel_call(999999);
SELECT dialer.retry_call(999999);
SELECT dialer.call_details(999999);
SELECT dialer.cancel_call(-1);
SELECT dialer.cancel_call(NULL);
SELECT dialer.retry_call(NULL);
SELECT dialer.call_details(NULL);
--
-- call_details: the call, its attempts (by attempt number) and its events (in order)
--
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, responded_at, http_status,
                                  provider_call_id, provider_status, error_code, error_message)
VALUES (18, 2, '2030-03-15 10:01:00+00', '2030-03-15 10:01:01+00', 201,
        'CA00000000000000000000000000000002', 'busy', NULL, NULL),
       (18, 1, '2030-03-15 10:00:00+00', '2030-03-15 10:00:30+00', 500,
        NULL, NULL, '500', 'Internal Server Error');
SELECT jsonb_object_keys(dialer.call_details(18)) AS key ORDER BY 1;
-- the call's row, as in dialer.scheduled_calls
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(dialer.call_details(18)->'call') AS k)
     = (SELECT array_agg(attname::text ORDER BY attname::text) FROM pg_attribute
         WHERE attrelid = 'dialer.scheduled_calls'::regclass AND attnum > 0 AND NOT attisdropped)
       AS call_has_every_column;
SELECT jsonb_pretty(clockless(jsonb_build_object(
	'call', (SELECT jsonb_object_agg(k, v) FROM jsonb_each(d->'call') AS e(k, v)
	          WHERE k IN ('id', 'status', 'to_number', 'from_number', 'provider', 'run_at',
	                      'next_attempt_at', 'attempts', 'attempts_base', 'max_attempts', 'deadline',
	                      'last_error', 'finished_at')),
	'attempts', (SELECT jsonb_agg((SELECT jsonb_object_agg(k, v) FROM jsonb_each(a) AS e(k, v)
	                               WHERE k IN ('attempt', 'requested_at', 'responded_at', 'http_status',
	                                           'provider_call_id', 'provider_status', 'error_code',
	                                           'error_message')) ORDER BY n)
	             FROM jsonb_array_elements(d->'attempts') WITH ORDINALITY AS x(a, n)),
	'events', d->'events')))
  FROM dialer.call_details(18) AS d;
-- a call without attempts
SELECT d->'attempts' AS attempts, jsonb_array_length(d->'events') AS events,
       d->'call'->>'status' AS status
  FROM dialer.call_details(1) AS d;
-- a status report that ends a call in progress wakes the dispatcher, quietly: in a database no
-- dispatcher serves (as here), the enqueue warned; webhooks, at the providers' rate, do not
UPDATE dialer.scheduled_calls SET attempts = 1, provider_call_id = 'CA00000000000000000000000000000003'
 WHERE id = 3 AND status = 'dialing';
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id, http_status)
VALUES (3, 1, now(), 'CA00000000000000000000000000000003', 201);
SELECT r->>'result' AS result, r->>'previous_status' AS previous_status, r->>'status' AS status
  FROM dialer.apply_provider_status(3, 'completed', 'CA00000000000000000000000000000003') AS r;
DROP TABLE statuses;
DROP FUNCTION clockless(jsonb);
DROP EXTENSION pg_dialer;
DROP SCHEMA dialer;
