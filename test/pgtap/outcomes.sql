-- pgTAP: outcome classes and next-action rules, as data.
--   - every signal maps to a class by the rows of dialer.provider_statuses and
--     dialer.outcome_signals (Twilio's error codes, every kind's statuses and AnsweredBy words, HTTP);
--   - the class is recorded on the attempt and the event, beside the provider's own words, by a
--     status report and by a stored request outcome;
--   - the default rule set is 0.2.0 (busy / no_answer retried only with retry_busy /
--     retry_no_answer) and cannot be changed; a copy can, and changing its rows changes what
--     happens: retry delays and attempts, suppress (do-not-call ledger), hold (an operator
--     decides), the per-recipient cap;
--   - bad rules are refused with a clear error.
-- Calls are claimed and stored as the dispatcher does (dialer_tap has no dispatcher).  Everything
-- is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = error;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(36);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url, calls_per_second)
VALUES ('tap-out', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000',
		'https://a.example/t.xml', 100);
INSERT INTO dialer.providers (name, kind, base_url, bearer_token, from_number, calls_per_second)
VALUES ('tap-out-b', 'backend', 'https://backend.example', 'tok', '+15550100000', 100);
CREATE SCHEMA tap_out;
CREATE TABLE tap_out.people (customer_ref text, phone text);
INSERT INTO dialer.campaigns (name, source, provider) VALUES ('tap-out-c', 'tap_out.people', 'tap-out');

-- a call of the campaign enqueued, claimed and accepted as the dispatcher does it; returns its id
CREATE FUNCTION pg_temp.dialing(number text, provider text DEFAULT 'tap-out') RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint := dialer.enqueue_call(number, now(), provider, campaign => 'tap-out-c');
BEGIN
	PERFORM dialer.claim_calls(provider, 100, 'UTC', '00:00', '24:00', NULL);
	PERFORM dialer.record_results(ARRAY[v_id], ARRAY[1], ARRAY['accepted'], ARRAY[201], ARRAY['CA' || md5(v_id::text)],
								  ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[0], ARRAY[now()]);
	RETURN v_id;
END;
$$;
CREATE FUNCTION pg_temp.report(id bigint, status text, data jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
	SELECT dialer.apply_provider_status(id, status, 'CA' || md5(id::text), NULL, data)
$$;
CREATE FUNCTION pg_temp.call(id bigint) RETURNS dialer.scheduled_calls LANGUAGE sql AS $$
	SELECT c FROM dialer.scheduled_calls c WHERE c.id = call.id
$$;

/* ------------------------------------------------------------------ signals -> classes */

SELECT is(ARRAY[dialer.outcome_of('twilio', 'completed', 'human', NULL, NULL),
				dialer.outcome_of('twilio', 'completed', 'machine_end_beep', NULL, NULL),
				dialer.outcome_of('twilio', 'completed', 'machine_start', NULL, NULL),
				dialer.outcome_of('twilio', 'completed', 'fax', NULL, NULL),
				dialer.outcome_of('twilio', 'completed', NULL, NULL, NULL)],
		  ARRAY['answered', 'voicemail_left', 'voicemail_no_message', 'fax', 'answered'],
		  'Twilio: completed is answered, refined by AnsweredBy (machine detection)');
SELECT is(ARRAY[dialer.outcome_of('twilio', 'failed', NULL, '13224', NULL),
				dialer.outcome_of('twilio', 'failed', NULL, '21215', NULL),
				dialer.outcome_of('twilio', 'failed', NULL, '99999', NULL),
				dialer.outcome_of('twilio', NULL, NULL, '21211', 400)],
		  ARRAY['bad_number', 'blocked', 'provider_error', 'bad_number'],
		  'Twilio: an error code decides over the status (an unknown code leaves the status''s class), also for a refused request');
SELECT is(ARRAY[dialer.outcome_of('twilio', 'busy', NULL, NULL, NULL), dialer.outcome_of('twilio', 'no-answer', NULL, NULL, NULL),
				dialer.outcome_of('twilio', 'canceled', NULL, NULL, NULL),
				dialer.outcome_of('backend', 'completed', 'machine_end_beep', NULL, NULL),
				dialer.outcome_of('backend', 'failed', NULL, '21211', NULL)],
		  ARRAY['busy', 'no_answer', 'canceled', 'voicemail_left', 'provider_error'],
		  'every kind''s statuses and AnsweredBy words (the JSON webhooks'' answered_by); Twilio''s codes are Twilio''s only');
SELECT is(ARRAY[dialer.outcome_of('backend', NULL, NULL, 'http_400', 400), dialer.outcome_of('backend', NULL, NULL, 'http_503', 503),
				dialer.outcome_of('backend', NULL, NULL, 'http_429', 429), dialer.outcome_of('backend', NULL, NULL, 'connect_failed', NULL),
				dialer.outcome_of('backend', NULL, NULL, 'not_sendable', NULL)],
		  ARRAY['rejected', 'provider_error', 'provider_error', 'provider_error', 'rejected'],
		  'a refused request by its HTTP status (exact, then family) or the dispatcher''s own error code');
SELECT is(ARRAY[dialer.outcome_of('twilio', 'ringing', NULL, NULL, NULL), dialer.outcome_of('twilio', 'weird', NULL, NULL, NULL),
				dialer.outcome_of('twilio', 'accepted', NULL, NULL, 201)],
		  ARRAY[NULL, NULL, NULL]::text[], 'no class while under way, for a word pg_dialer does not know, or for an accepted request');

/* ------------------------------------------------------------------ recorded beside the words */

SELECT pg_temp.dialing('+15550180001') AS vm \gset
SELECT pg_temp.report(:vm, 'completed', '{"answered_by": "machine_end_beep", "duration_seconds": 31}');
SELECT is((SELECT row(a.provider_status, a.answered_by, a.outcome)::text FROM dialer.call_attempts a WHERE a.call_id = :vm),
		  row('completed', 'machine_end_beep', 'voicemail_left')::text, 'the attempt records the class beside Twilio''s words');
SELECT is((SELECT row(e.event, e.to_status, e.outcome)::text FROM dialer.call_events e WHERE e.call_id = :vm ORDER BY e.id DESC LIMIT 1),
		  row('callback', 'completed', 'voicemail_left')::text, '... and so does the event of the move');
SELECT is((pg_temp.call(:vm)).status, 'completed', 'the call is completed, as in 0.2.0');

SELECT dialer.enqueue_call('+15550180002', now(), 'tap-out') AS bad \gset
SELECT dialer.claim_calls('tap-out', 100, 'UTC', '00:00', '24:00', NULL);
SELECT dialer.record_results(ARRAY[:bad::bigint], ARRAY[1], ARRAY['failed'], ARRAY[400], ARRAY[NULL::text],
							 ARRAY['21211'], ARRAY['The ''To'' number is not a valid phone number.'], ARRAY[NULL::text],
							 ARRAY[0], ARRAY[now()]);
SELECT is((SELECT row(a.http_status, a.error_code, a.outcome)::text FROM dialer.call_attempts a WHERE a.call_id = :bad),
		  row(400, '21211', 'bad_number')::text, 'a refused request''s class comes from the provider''s error code');
SELECT is((SELECT row(e.event, e.outcome)::text FROM dialer.call_events e WHERE e.call_id = :bad ORDER BY e.id DESC LIMIT 1),
		  row('failed', 'bad_number')::text, '... on its event too; the default rule: done');
SELECT is((pg_temp.call(:bad)).status, 'failed', '... and the call is failed');

/* ------------------------------------------------------------------ the default set is 0.2.0 */

SELECT pg_temp.dialing('+15550180003') AS busy0 \gset
SELECT pg_temp.report(:busy0, 'busy');
SELECT is((pg_temp.call(:busy0)).status, 'busy', 'default: busy is not retried while retry_busy is off');
UPDATE dialer.providers SET retry_busy = true, retry_delay = '7 minutes' WHERE name = 'tap-out';
SELECT pg_temp.dialing('+15550180004') AS busy1 \gset
SELECT pg_temp.report(:busy1, 'busy');
SELECT is(row((pg_temp.call(:busy1)).status, (pg_temp.call(:busy1)).next_attempt_at - now())::text,
		  row('scheduled', interval '7 minutes')::text, 'default: retried after the provider''s retry_delay when retry_busy is on');
SELECT is(ARRAY(SELECT e.event || ':' || e.from_status || '>' || e.to_status FROM dialer.call_events e
				 WHERE e.call_id = :busy1 ORDER BY e.id DESC LIMIT 2),
		  ARRAY['retry_scheduled:busy>scheduled', 'callback:dialing>busy'], '... through its outcome, each move with its event');
SELECT throws_ok($$UPDATE dialer.outcome_rules SET action = 'suppress' WHERE rule_set = 'default' AND outcome = 'busy'$$,
				 '42501', 'the outcome rule set "default" cannot be changed', 'the default set cannot be changed');
SELECT throws_ok($$DELETE FROM dialer.outcome_rule_sets WHERE name = 'default'$$, '42501', NULL, '... nor removed');

/* ------------------------------------------------------------------ a set of one's own */

SELECT is(dialer.copy_outcome_rules('default', 'mine'), 'mine', 'copy_outcome_rules makes a set of one''s own');
SELECT is((SELECT count(*) FROM dialer.outcome_rules WHERE rule_set = 'mine'),
		  (SELECT count(*) FROM dialer.outcome_rules WHERE rule_set = 'default'), '... with every rule of the source');
SELECT throws_ok($$SELECT dialer.copy_outcome_rules('nope', 'x')$$, 'P0002', 'outcome rule set ''nope'' does not exist',
				 'copying a set that does not exist says so');
UPDATE dialer.campaigns SET outcome_rules = 'mine' WHERE name = 'tap-out-c';
UPDATE dialer.providers SET retry_busy = false WHERE name = 'tap-out';

-- retry: its own delays and attempts, whatever retry_busy says
UPDATE dialer.outcome_rules SET retry_delays = '{1 minute, 10 minutes}', max_attempts = 2, enabled_by = NULL
 WHERE rule_set = 'mine' AND outcome = 'busy';
SELECT pg_temp.dialing('+15550180005') AS b \gset
SELECT pg_temp.report(:b, 'busy');
SELECT is(row((pg_temp.call(:b)).status, (pg_temp.call(:b)).next_attempt_at - now())::text,
		  row('scheduled', interval '1 minute')::text, 'a changed rule: busy retried after its first delay, retry_busy off');
UPDATE dialer.scheduled_calls SET next_attempt_at = now() WHERE id = :b;
SELECT dialer.claim_calls('tap-out', 100, 'UTC', '00:00', '24:00', NULL);
SELECT dialer.record_results(ARRAY[:b::bigint], ARRAY[2], ARRAY['accepted'], ARRAY[201], ARRAY['CA2' || md5(:b::text)],
							 ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[0], ARRAY[now()]);
SELECT dialer.apply_provider_status(:b, 'busy', 'CA2' || md5(:b::text));
SELECT is(row((pg_temp.call(:b)).status, (SELECT e.detail->>'retry_skipped' FROM dialer.call_events e
												 WHERE e.call_id = :b ORDER BY e.id DESC LIMIT 1))::text,
		  row('busy', 'attempts_exhausted')::text, '... and after its max_attempts (2) it is done, saying why');

-- suppress: the number goes to the do-not-call ledger, its other scheduled calls are skipped
UPDATE dialer.outcome_rules SET action = 'suppress' WHERE rule_set = 'mine' AND outcome = 'bad_number';
SELECT pg_temp.dialing('+15550180006') AS s \gset
SELECT dialer.enqueue_call('+15550180006', now() + interval '1 day', 'tap-out', campaign => 'tap-out-c') AS later \gset
SELECT pg_temp.report(:s, 'failed', '{"error_code": "13224", "error_message": "invalid number"}');
SELECT is((SELECT row(d.source, d.reason)::text FROM dialer.do_not_call d WHERE d.number = '+15550180006'),
		  row('pg_dialer outcome rule', format('outcome bad_number of call %s (outcome rule set mine: suppress)', :s))::text,
		  'suppress: the number is on the do-not-call ledger, with the outcome, call and rule set');
SELECT is(ARRAY[(pg_temp.call(:s)).status, (pg_temp.call(:later)).status], ARRAY['failed', 'skipped'],
		  '... the call ends failed, and its number''s scheduled call is skipped at once');
SELECT is((SELECT row(e.from_status, e.to_status, e.detail->>'rule_set', (e.detail->>'added_to_do_not_call')::boolean)::text
			 FROM dialer.call_events e WHERE e.call_id = :s AND e.event = 'suppressed'),
		  row('failed', 'failed', 'mine', true)::text, '... noted on the call');

-- hold: the call waits for an operator
UPDATE dialer.outcome_rules SET action = 'hold', enabled_by = NULL WHERE rule_set = 'mine' AND outcome = 'no_answer';
SELECT pg_temp.dialing('+15550180007') AS h \gset
SELECT is(pg_temp.report(:h, 'no-answer')->>'status', 'held', 'hold: an unanswered call is held');
SELECT is(ARRAY(SELECT e.event || ':' || e.from_status || '>' || e.to_status FROM dialer.call_events e
				 WHERE e.call_id = :h ORDER BY e.id DESC LIMIT 2),
		  ARRAY['held:no_answer>held', 'callback:dialing>no_answer'], '... through its outcome');
SELECT is((SELECT count(*) FROM dialer.claim_calls('tap-out', 100, 'UTC', '00:00', '24:00', NULL) c WHERE c.id = :h),
		  0::bigint, '... and is not dispatched');

-- the per-recipient cap counts what the rules say
SELECT is((dialer.contact_count('+15550180007', now(), '1 day', 1)).calls, 1, 'an unanswered attempt counts toward the cap');
UPDATE dialer.outcome_rules SET counts_toward_cap = false WHERE rule_set = 'mine' AND outcome = 'no_answer';
SELECT is((dialer.contact_count('+15550180007', now(), '1 day', 1)).calls, 0, '... not once its rule says it does not');

SELECT is(dialer.retry_call(:h), true, 'an operator retries a held call');
SELECT is((pg_temp.call(:h)).status, 'scheduled', '... back in the queue');

-- a refused request follows its rule too
UPDATE dialer.outcome_rules SET action = 'retry', retry_delays = '{2 minutes}' WHERE rule_set = 'mine' AND outcome = 'rejected';
SELECT dialer.enqueue_call('+15550180008', now(), 'tap-out', campaign => 'tap-out-c') AS rj \gset
SELECT dialer.claim_calls('tap-out', 100, 'UTC', '00:00', '24:00', NULL);
SELECT dialer.record_results(ARRAY[:rj::bigint], ARRAY[1], ARRAY['failed'], ARRAY[400], ARRAY[NULL::text],
							 ARRAY['20001'], ARRAY['bad request'], ARRAY[NULL::text], ARRAY[0], ARRAY[now()]);
SELECT is(row((pg_temp.call(:rj)).status, (pg_temp.call(:rj)).next_attempt_at - now())::text,
		  row('scheduled', interval '2 minutes')::text, 'a refused request (rejected) is retried when its rule says so');

/* ------------------------------------------------------------------ bad rules */

SELECT throws_ok($$INSERT INTO dialer.outcome_rules (rule_set, outcome, action) VALUES ('mine2', 'busy', 'done')$$,
				 '23503', NULL, 'a rule of a set that does not exist is refused');
SELECT throws_ok($$UPDATE dialer.outcome_rules SET action = 'call_twice' WHERE rule_set = 'mine' AND outcome = 'busy'$$,
				 '23514', NULL, 'an action that does not exist is refused');
SELECT throws_ok($$UPDATE dialer.outcome_rules SET retry_delays = '{-1 minute}' WHERE rule_set = 'mine' AND outcome = 'busy'$$,
				 '23514', NULL, 'a negative delay is refused');
SELECT throws_ok($$UPDATE dialer.outcome_rules SET action = 'done' WHERE rule_set = 'mine' AND outcome = 'busy'$$,
				 '23514', NULL, 'retry settings on a rule that does not retry are refused');

SELECT * FROM finish();
ROLLBACK;
