-- pgTAP: dialer.enqueue_calls() behaves exactly like dialer.enqueue_call(): the same rules
-- with the same errors (SQLSTATE, message, detail, hint) for every rule, the same stored rows
-- and events, the same dedupe (a stored key, a key repeated in the array) and do-not-call
-- treatment; all or nothing by default, or the good rows written and the bad returned.
-- Runs in dialer_tap; everything happens in one transaction that is rolled back.
\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;
SELECT plan(74);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, enabled)
VALUES ('tap_bulk_tw', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
        'tok', '+15005550006', false);
INSERT INTO dialer.providers (name, kind, base_url, allowed_hosts, enabled)
VALUES ('tap_bulk_be', 'backend', 'https://calls.example.com', '{ok.example.com}', false);
INSERT INTO dialer.do_not_call (number, reason) VALUES ('+14155550999', 'asked by phone');

-- enqueue_call with the arguments of a JSON object (as named arguments), or its error
CREATE FUNCTION pg_temp.single(v jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	args text;
	id bigint;
	st text; msg text; det text; hin text;
BEGIN
	SELECT string_agg(format('%I => %s::%s', k,
							 CASE WHEN k = 'payload' THEN quote_nullable(v->k) ELSE quote_nullable(v->>k) END,
							 CASE k WHEN 'run_at' THEN 'timestamptz' WHEN 'deadline' THEN 'timestamptz'
									WHEN 'payload' THEN 'jsonb' WHEN 'priority' THEN 'int'
									WHEN 'max_attempts' THEN 'int' ELSE 'text' END), ', ')
	  INTO args FROM jsonb_object_keys(v) k;
	EXECUTE format('SELECT dialer.enqueue_call(%s)', args) INTO id;
	RETURN 'ok ' || id;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', st, msg, det, hin);
END;
$$;
-- enqueue_calls(..., atomic => false) on a one-element array: its report, as above
CREATE FUNCTION pg_temp.bulk(v jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN r.outcome = 'refused' THEN concat_ws(' | ', r.sqlstate, r.message, r.detail, r.hint)
				ELSE 'ok ' || r.id END
	  FROM dialer.enqueue_calls(jsonb_build_array(v), atomic => false) r
$$;
-- the error enqueue_calls (atomic) raises, or 'ok'
CREATE FUNCTION pg_temp.atomic_error(calls jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hin text;
BEGIN
	PERFORM count(*) FROM dialer.enqueue_calls(calls);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', st, msg, det, hin);
END;
$$;
CREATE FUNCTION pg_temp.written() RETURNS text LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM dialer.scheduled_calls) || ' calls, ' || (SELECT count(*) FROM dialer.call_events) || ' events'
$$;

/* ------------------------------------------------ every rule, the same error */

CREATE TEMP TABLE bad_case (rule text, v jsonb);
INSERT INTO bad_case VALUES
	('to_number_missing', '{"to_number": null}'),
	('to_number_format', '{"to_number": "+1 415 555 0123"}'),
	('run_at_missing', '{"to_number": "+14155550100", "run_at": null, "payload": {"message": "m"}}'),
	('run_at_infinite', '{"to_number": "+14155550100", "run_at": "infinity", "payload": {"message": "m"}}'),
	('run_at_infinite', '{"to_number": "+14155550100", "run_at": "-infinity", "payload": {"message": "m"}}'),
	('deadline_infinite', '{"to_number": "+14155550100", "deadline": "infinity", "payload": {"message": "m"}}'),
	('deadline_order', '{"to_number": "+14155550100", "run_at": "2030-01-01 10:00+00", "deadline": "2030-01-01 09:00+00", "payload": {"message": "m"}}'),
	('timezone', '{"to_number": "+14155550100", "timezone": "Mars/Base", "payload": {"message": "m"}}'),
	('provider_missing', '{"to_number": "+14155550100", "provider": null}'),
	('provider_unknown', '{"to_number": "+14155550100", "provider": "nobody_here"}'),
	('payload_type', '{"to_number": "+14155550100", "provider": "tap_bulk_tw", "payload": [1]}'),
	('payload_size', jsonb_build_object('to_number', '+14155550100', 'provider', 'tap_bulk_tw',
										'payload', jsonb_build_object('message', repeat('x', 70000)))),
	('payload_mode', '{"to_number": "+14155550100", "provider": "tap_bulk_be", "payload": {"mode": "LATER"}}'),
	('payload_base_url', '{"to_number": "+14155550100", "provider": "tap_bulk_be", "payload": {"base_url": "https://evil.example.com/x"}}'),
	('payload_message', jsonb_build_object('to_number', '+14155550100', 'provider', 'tap_bulk_tw',
										   'payload', jsonb_build_object('message', repeat('x', 3980)))),
	('nothing_to_say', '{"to_number": "+14155550100", "provider": "tap_bulk_tw"}'),
	('nothing_to_say', '{"to_number": "+14155550100", "provider": "tap_bulk_tw", "payload": {"message": null}}'),
	('payload_from', '{"to_number": "+14155550100", "provider": "tap_bulk_tw", "payload": {"message": "m", "from": "+0"}}'),
	('priority', '{"to_number": "+14155550100", "provider": "tap_bulk_tw", "payload": {"message": "m"}, "priority": 1001}'),
	('priority', '{"to_number": "+14155550100", "provider": "tap_bulk_tw", "payload": {"message": "m"}, "priority": null}'),
	('max_attempts', '{"to_number": "+14155550100", "provider": "tap_bulk_tw", "payload": {"message": "m"}, "max_attempts": 0}'),
	('dedupe_key', jsonb_build_object('to_number', '+14155550100', 'provider', 'tap_bulk_tw',
									  'payload', '{"message": "m"}'::jsonb, 'dedupe_key', repeat('k', 201))),
	('campaign', jsonb_build_object('to_number', '+14155550100', 'provider', 'tap_bulk_tw',
									'payload', '{"message": "m"}'::jsonb, 'campaign', repeat('c', 64)));

SELECT is(pg_temp.bulk(v), pg_temp.single(v), format('%s: enqueue_calls reports enqueue_call''s error', rule))
  FROM bad_case ORDER BY rule, v::text;
SELECT is((SELECT r.reason FROM dialer.enqueue_calls(jsonb_build_array(b.v), false) r), b.rule,
          format('%s: reported as its rule', b.rule))
  FROM bad_case b WHERE b.rule IN ('run_at_infinite', 'deadline_infinite', 'nothing_to_say', 'provider_unknown');
SELECT ok(pg_temp.single(v) !~ '^ok', format('%s: enqueue_call refuses it', rule))
  FROM bad_case WHERE rule IN ('run_at_infinite', 'deadline_infinite', 'nothing_to_say');
SELECT is(pg_temp.written(), '0 calls, 0 events', 'no refused call wrote anything');

/* ------------------------------------------------ all or nothing */

SELECT is(pg_temp.atomic_error(jsonb_build_array(
			'{"to_number": "+14155550101", "provider": "tap_bulk_tw", "payload": {"message": "a"}}'::jsonb,
			'{"to_number": "+14155550102", "provider": "tap_bulk_tw", "run_at": "infinity", "payload": {"message": "b"}}'::jsonb,
			'{"to_number": "+14155550103", "provider": "tap_bulk_tw", "payload": {"message": "c"}}'::jsonb)),
          (SELECT regexp_replace(pg_temp.single('{"to_number": "+14155550102", "provider": "tap_bulk_tw", "run_at": "infinity", "payload": {"message": "b"}}'),
                                 '^(\w+) \| ', '\1 | call 2 of 3 refused: ')
                  || ' enqueue_calls(..., atomic => false) writes the other calls and returns the refused ones.'),
          'atomic (the default): the first refused call raises enqueue_call''s error, prefixed with its position');
SELECT is(pg_temp.written(), '0 calls, 0 events', 'atomic: nothing is written when one call is refused');
SELECT throws_ok($$SELECT * FROM dialer.enqueue_calls('{"to_number": "+14155550101"}')$$, '22023',
                 NULL, 'calls must be an array');
SELECT throws_ok($$SELECT * FROM dialer.enqueue_calls(NULL)$$, '22004', NULL, 'calls must be given');
SELECT throws_ok($$SELECT * FROM dialer.enqueue_calls('[]', atomic => NULL)$$, '22004', NULL, 'atomic must be given');
SELECT is((SELECT count(*)::int FROM dialer.enqueue_calls('[]')), 0, 'an empty array enqueues nothing');

/* ------------------------------------------------ partial mode */

CREATE TEMP TABLE partial AS
SELECT * FROM dialer.enqueue_calls(jsonb_build_array(
	'{"to_number": "+14155550111", "provider": "tap_bulk_tw", "payload": {"message": "a"}}'::jsonb,
	'{"to_number": "0800", "provider": "tap_bulk_tw", "payload": {"message": "b"}}'::jsonb,
	'"just a string"'::jsonb,
	'{"to_number": "+14155550112", "provider": "tap_bulk_tw", "payload": {"message": "c"}, "priorty": 5}'::jsonb,
	'{"to_number": "+14155550113", "provider": "tap_bulk_tw", "payload": {"message": "d"}}'::jsonb), atomic => false);
SELECT results_eq('SELECT item, outcome, reason FROM partial ORDER BY item',
	$$VALUES (1, 'scheduled', NULL), (2, 'refused', 'to_number_format'), (3, 'refused', 'not_object'),
	         (4, 'refused', 'unknown_key'), (5, 'scheduled', NULL)$$,
	'atomic => false: one row per element, in order, good ones scheduled, bad ones refused with their rule');
SELECT is((SELECT message FROM partial WHERE item = 4), 'invalid call: unknown key ''priorty''', 'a misspelt key is named');
SELECT is((SELECT sqlstate FROM partial WHERE item = 4), '42703', 'an unknown key is SQLSTATE 42703');
SELECT set_eq('SELECT id FROM dialer.scheduled_calls', 'SELECT id FROM partial WHERE outcome = ''scheduled''',
              'atomic => false: exactly the good calls are stored, with the ids reported');
SELECT is(pg_temp.written(), '2 calls, 2 events', 'atomic => false: one event per stored call');

/* ------------------------------------------------ the same rows and events */

CREATE TEMP TABLE good_case (label text, v jsonb);
INSERT INTO good_case VALUES
	('defaults', '{"to_number": "+14155550201", "provider": "tap_bulk_tw", "payload": {"message": "hi"}}'),
	('every argument', '{"to_number": "+14155550202", "provider": "tap_bulk_be", "payload": {"mode": "brief_start", "from": "+14155550100", "base_url": "https://OK.example.com/v1"},
	                     "run_at": "2030-03-15 09:30+00", "campaign": "tap_bulk", "priority": 7, "max_attempts": 5,
	                     "timezone": "Europe/Paris", "deadline": "2030-03-15 18:00+00"}'),
	('do-not-call', '{"to_number": "+14155550999", "provider": "tap_bulk_tw", "payload": {"url": "https://x.example.com/t.xml"}}');
CREATE TEMP TABLE good_ids AS
SELECT g.label, ltrim(pg_temp.single(g.v), 'ok ')::bigint AS single_id,
       (SELECT r.id FROM dialer.enqueue_calls(jsonb_build_array(g.v)) r) AS bulk_id
  FROM good_case g;
CREATE FUNCTION pg_temp.call_row(call_id bigint) RETURNS jsonb LANGUAGE sql AS $$
	SELECT to_jsonb(c) - '{id,created_at,updated_at,finished_at}'::text[]
	       || jsonb_build_object('finished', c.finished_at IS NOT NULL, 'due_now', c.run_at <= now(),
	                             'events', (SELECT jsonb_agg(jsonb_build_array(e.event, e.from_status, e.to_status,
	                                                                           e.detail - 'listed_at') ORDER BY e.id)
	                                          FROM dialer.call_events e WHERE e.call_id = c.id))
	       - 'run_at' - 'next_attempt_at'
	       || CASE WHEN c.run_at > now() + interval '1 day' THEN jsonb_build_object('run_at', c.run_at, 'next', c.next_attempt_at) ELSE '{}' END
	  FROM dialer.scheduled_calls c WHERE c.id = call_id
$$;
SELECT is(pg_temp.call_row(bulk_id) - 'events', pg_temp.call_row(single_id) - 'events',
          format('%s: enqueue_calls stores the row enqueue_call stores', label))
  FROM good_ids ORDER BY label;
SELECT is(pg_temp.call_row(bulk_id)->'events', pg_temp.call_row(single_id)->'events',
          format('%s: and the same events', label))
  FROM good_ids ORDER BY label;
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = bulk_id), 'skipped',
          'a do-not-call number is stored as skipped')
  FROM good_ids WHERE label = 'do-not-call';
SELECT is((SELECT outcome FROM dialer.enqueue_calls('[{"to_number": "+14155550999", "provider": "tap_bulk_tw", "payload": {"message": "x"}}]')),
          'skipped', 'its outcome is skipped');
SELECT is((SELECT mode FROM dialer.scheduled_calls WHERE id = bulk_id), 'BRIEF_START', 'backend mode is normalized')
  FROM good_ids WHERE label = 'every argument';

/* ------------------------------------------------ dedupe */

SELECT is(pg_temp.single('{"to_number": "+14155550301", "provider": "tap_bulk_tw", "payload": {"message": "x"}, "dedupe_key": "tap-bulk-k1"}'),
          pg_temp.single('{"to_number": "+14155550302", "provider": "tap_bulk_tw", "payload": {"message": "y"}, "dedupe_key": "tap-bulk-k1"}'),
          'enqueue_call: a stored key returns the stored id');
SELECT is((SELECT 'ok ' || id FROM dialer.enqueue_calls('[{"to_number": "+14155550303", "provider": "tap_bulk_tw", "payload": {"message": "z"}, "dedupe_key": "tap-bulk-k1"}]')),
          pg_temp.single('{"to_number": "+14155550301", "provider": "tap_bulk_tw", "payload": {"message": "x"}, "dedupe_key": "tap-bulk-k1"}'),
          'enqueue_calls: a stored key returns the same stored id');
SELECT is((SELECT outcome FROM dialer.enqueue_calls('[{"to_number": "+14155550303", "provider": "tap_bulk_tw", "payload": {"message": "z"}, "dedupe_key": "tap-bulk-k1"}]')),
          'duplicate', 'its outcome is duplicate');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE dedupe_key = 'tap-bulk-k1'), 1, 'one call for the key');
CREATE TEMP TABLE in_array AS
SELECT * FROM dialer.enqueue_calls(jsonb_build_array(
	'{"to_number": "+14155550311", "provider": "tap_bulk_tw", "payload": {"message": "1"}, "dedupe_key": "tap-bulk-k2"}'::jsonb,
	'{"to_number": "+14155550312", "provider": "tap_bulk_tw", "payload": {"message": "2"}, "dedupe_key": "tap-bulk-k2"}'::jsonb,
	'{"to_number": "+14155550313", "provider": "tap_bulk_tw", "payload": {"message": "3"}}'::jsonb));
SELECT results_eq('SELECT item, outcome FROM in_array ORDER BY item',
	$$VALUES (1, 'scheduled'), (2, 'duplicate'), (3, 'scheduled')$$,
	'a key repeated in the array: the first element is stored, the next is a duplicate');
SELECT is((SELECT id FROM in_array WHERE item = 2), (SELECT id FROM in_array WHERE item = 1), 'with the first one''s id');
SELECT is((SELECT to_number::text FROM dialer.scheduled_calls WHERE dedupe_key = 'tap-bulk-k2'), '+14155550311',
          'the stored call is the first element''s');
SELECT is((SELECT count(*)::int FROM dialer.call_events e JOIN (SELECT DISTINCT id FROM in_array) a ON a.id = e.call_id), 2,
          'one enqueued event per stored call, none for the duplicate');
CREATE TEMP TABLE refused_first AS
SELECT * FROM dialer.enqueue_calls(jsonb_build_array(
	'{"to_number": "bad", "provider": "tap_bulk_tw", "payload": {"message": "1"}, "dedupe_key": "tap-bulk-k3"}'::jsonb,
	'{"to_number": "+14155550322", "provider": "tap_bulk_tw", "payload": {"message": "2"}, "dedupe_key": "tap-bulk-k3"}'::jsonb), false);
SELECT results_eq('SELECT item, outcome FROM refused_first ORDER BY item', $$VALUES (1, 'refused'), (2, 'scheduled')$$,
	'a refused element does not take its key: the next one with the key is stored');

/* ------------------------------------------------ customer_ref, campaign attempts */

CREATE TABLE public.tap_bulk_people (customer_ref text, phone text);
INSERT INTO dialer.campaigns (name, source, provider, max_attempts)
VALUES ('tap_bulk_camp', 'public.tap_bulk_people', 'tap_bulk_tw', 6);
CREATE TEMP TABLE camp_call AS
SELECT * FROM dialer.enqueue_calls('[{"to_number": "+14155550401", "provider": "tap_bulk_tw", "payload": {"message": "x"}, "campaign": "tap_bulk_camp", "customer_ref": "cust-9"}]');
SELECT is((SELECT c.max_attempts || ' ' || c.customer_ref
             FROM camp_call r JOIN dialer.scheduled_calls c ON c.id = r.id),
          '6 cust-9', 'max_attempts comes from the campaign, customer_ref is stored');
SELECT is(pg_temp.single('{"to_number": "+14155550402", "provider": "tap_bulk_tw", "payload": {"message": "x"}, "campaign": "tap_bulk_camp"}'),
          'ok ' || (SELECT max(id) + 1 FROM dialer.scheduled_calls), 'enqueue_call: likewise (setup)');
SELECT is((SELECT max_attempts FROM dialer.scheduled_calls WHERE to_number = '+14155550402'), 6,
          'enqueue_call takes max_attempts from the campaign too');

/* ------------------------------------------------ the events go with their calls */

-- call_events has no foreign key to scheduled_calls (its per-row check was the main cost of
-- an enqueue): a DELETE of calls, by any statement, still takes their events with them
CREATE TEMP TABLE gone_calls AS
SELECT id FROM dialer.scheduled_calls WHERE provider = 'tap_bulk_tw' ORDER BY id LIMIT 2;
SELECT cmp_ok((SELECT count(*) FROM dialer.call_events WHERE call_id IN (SELECT id FROM gone_calls)), '>=', 2::bigint,
              'the calls to delete have events (setup)');
CREATE TEMP TABLE kept_events AS
SELECT count(*) AS n FROM dialer.call_events WHERE call_id NOT IN (SELECT id FROM gone_calls);
DELETE FROM dialer.scheduled_calls WHERE id IN (SELECT id FROM gone_calls);
SELECT is((SELECT count(*) FROM dialer.call_events WHERE call_id IN (SELECT id FROM gone_calls)), 0::bigint,
          'deleting calls deletes their events');
SELECT is((SELECT count(*) FROM dialer.call_events), (SELECT n FROM kept_events),
          'and no other event');

/* ------------------------------------------------ the calls keep their provider */

-- scheduled_calls.provider has no foreign key either (its per-row check was a third of the
-- cost of writing a call): a provider with calls still cannot be deleted, and a renamed
-- provider's calls still follow it
SELECT throws_ok($$DELETE FROM dialer.providers WHERE name = 'tap_bulk_tw'$$, '23503',
                 'provider ''tap_bulk_tw'' still has calls', 'a provider with calls cannot be deleted');
CREATE TEMP TABLE tw_calls AS SELECT count(*) AS n FROM dialer.scheduled_calls WHERE provider = 'tap_bulk_tw';
UPDATE dialer.providers SET name = 'tap_bulk_tw2' WHERE name = 'tap_bulk_tw';
SELECT is((SELECT count(*) FROM dialer.scheduled_calls WHERE provider = 'tap_bulk_tw2'), (SELECT n FROM tw_calls),
          'the calls of a renamed provider follow it');
UPDATE dialer.providers SET name = 'tap_bulk_tw' WHERE name = 'tap_bulk_tw2';

/* ------------------------------------------------ privileges */

SELECT ok(NOT has_function_privilege('public', 'dialer.enqueue_calls(jsonb, boolean)', 'EXECUTE'),
          'PUBLIC cannot run enqueue_calls');
CREATE ROLE tap_bulk_app;
SELECT dialer.grant_usage('tap_bulk_app');
SELECT ok(has_function_privilege('tap_bulk_app', 'dialer.enqueue_calls(jsonb, boolean)', 'EXECUTE'),
          'grant_usage grants enqueue_calls');

SELECT * FROM finish();
ROLLBACK;
