-- pgTAP: a run_at in the past.  A call whose run_at is more than dialer.late_tolerance (5
-- minutes by default) in the past is refused unless the caller says late_ok: yesterday's
-- appointment reminder is not dialled today by mistake.  enqueue_call, enqueue_calls and the
-- admin API's enqueue_call behave alike; a call accepted late says by how much in its event.
-- Everything is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(22);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url)
VALUES ('tap-late', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000',
        'https://a.example/t.xml');
CREATE TEMP TABLE before AS SELECT (SELECT count(*) FROM dialer.scheduled_calls) AS calls,
                                   (SELECT count(*) FROM dialer.call_events) AS events;
CREATE FUNCTION pg_temp.unchanged() RETURNS boolean LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM dialer.scheduled_calls) = b.calls AND (SELECT count(*) FROM dialer.call_events) = b.events
	  FROM before b
$$;
CREATE FUNCTION pg_temp.enqueued(call_id bigint) RETURNS jsonb LANGUAGE sql AS $$
	SELECT detail FROM dialer.call_events WHERE call_events.call_id = $1 AND event = 'enqueued'
$$;

SELECT is(current_setting('dialer.late_tolerance'), '5min', 'dialer.late_tolerance is 5 minutes by default');

/* ------------------------------------------------------------------ enqueue_call */

SELECT throws_ok($$SELECT dialer.enqueue_call('+14155550123', provider => 'tap-late',
                                              run_at => '2026-01-01 09:00:00+00')$$,
                 '22023', 'invalid run_at: ''2026-01-01 09:00:00+00''', 'a run_at long past is refused');
CREATE FUNCTION pg_temp.error_of(sql text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE d text; h text;
BEGIN
	EXECUTE sql;
	RETURN NULL;
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RETURN ARRAY[d, h];
END;
$$;
SELECT is(pg_temp.error_of($$SELECT dialer.enqueue_call('+14155550123', provider => 'tap-late',
                                                        run_at => now() - interval '1 day 2 hours')$$),
          ARRAY['run_at is 1 day 02:00:00 in the past, more than dialer.late_tolerance (00:05:00): a call meant for then would be dialled now.',
                'Pass late_ok => true to dial it now anyway, or a run_at in the future (dialer.next_local_time() gives the recipient''s next 10:00, say).'],
          'the error says how late, the tolerance, and what to do');
SELECT ok(pg_temp.unchanged(), 'nothing was written');

CREATE TEMP TABLE ok_ids AS
SELECT dialer.enqueue_call('+14155550124', provider => 'tap-late', run_at => now() - interval '4 minutes') AS within,
       dialer.enqueue_call('+14155550125', provider => 'tap-late', run_at => now() - interval '1 day 2 hours',
                           late_ok => true) AS late;
SELECT ok((SELECT c.status = 'scheduled' AND NOT pg_temp.enqueued(c.id) ? 'late_by'
             FROM dialer.scheduled_calls c WHERE c.id = (SELECT within FROM ok_ids)),
          'within the tolerance: scheduled, not marked late');
SELECT ok((SELECT c.status = 'scheduled' AND c.next_attempt_at < now() AND pg_temp.enqueued(c.id)->>'late_by' = '1 day 02:00:00'
             FROM dialer.scheduled_calls c WHERE c.id = (SELECT late FROM ok_ids)),
          'late_ok => true: scheduled and due at once, its event says how late');

SET LOCAL dialer.late_tolerance = '2h';
SELECT lives_ok($$SELECT dialer.enqueue_call('+14155550126', provider => 'tap-late', run_at => now() - interval '1 hour')$$,
                'a larger tolerance accepts an hour late');
SET LOCAL dialer.late_tolerance = 0;
SELECT throws_ok($$SELECT dialer.enqueue_call('+14155550127', provider => 'tap-late', run_at => now() - interval '1 second')$$,
                 '22023', NULL, 'tolerance 0: a second late is refused');
SELECT lives_ok($$SELECT dialer.enqueue_call('+14155550127', provider => 'tap-late', run_at => now())$$,
                'tolerance 0: now() itself is not late');
RESET dialer.late_tolerance;
SELECT throws_ok($$SET dialer.late_tolerance = '8 days'$$, '22023', NULL, 'the tolerance is at most 7 days');

/* ------------------------------------------------------------------ enqueue_calls */

CREATE TEMP TABLE bulk AS
SELECT * FROM dialer.enqueue_calls(jsonb_build_array(
	jsonb_build_object('to_number', '+14155550130', 'provider', 'tap-late', 'run_at', now() - interval '3 days'),
	jsonb_build_object('to_number', '+14155550131', 'provider', 'tap-late', 'run_at', now() - interval '3 days', 'late_ok', true),
	jsonb_build_object('to_number', '+14155550132', 'provider', 'tap-late', 'run_at', now() + interval '1 day'),
	jsonb_build_object('to_number', '+14155550133', 'provider', 'tap-late', 'run_at', now() - interval '3 days', 'late_ok', false)),
	atomic => false);
SELECT is((SELECT array_agg(outcome || coalesce(':' || reason, '') ORDER BY item) FROM bulk),
          ARRAY['refused:run_at_past', 'scheduled', 'scheduled', 'refused:run_at_past'],
          'enqueue_calls: the same rule per element, late_ok per element');
SELECT is((SELECT row(sqlstate, message ~ '^invalid run_at: ', detail ~ '^run_at is 3 days in the past')::text FROM bulk WHERE item = 1),
          row('22023', true, true)::text, '... with enqueue_call''s error');
SELECT is((SELECT pg_temp.enqueued(id)->>'late_by' FROM bulk WHERE item = 2), '3 days', '... and its late_by');
SELECT throws_ok($$SELECT * FROM dialer.enqueue_calls(jsonb_build_array(
	jsonb_build_object('to_number', '+14155550134', 'provider', 'tap-late', 'run_at', now() - interval '3 days')))$$,
	'22023', NULL, 'atomic: the whole batch is refused');
SELECT is((SELECT (r).reason FROM (SELECT dialer.enqueue_calls(jsonb_build_array(
	jsonb_build_object('to_number', '+14155550135', 'provider', 'tap-late', 'late_okay', true)), false) r) s),
	'unknown_key', 'a misspelt late_ok is refused, never silently false');
SELECT throws_ok($$SELECT * FROM dialer.enqueue_calls('[{"to_number": "+14155550136", "provider": "tap-late", "late_ok": "maybe"}]')$$,
                 '22P02', NULL, 'late_ok must be a boolean');

/* ------------------------------------------------------------------ the admin API, campaigns */

SELECT throws_ok($$SELECT dialer_admin.enqueue_call('+14155550140', run_at => now() - interval '1 day', provider => 'tap-late')$$,
                 '22023', NULL, 'dialer_admin.enqueue_call: the same rule');
SELECT is((SELECT (dialer_admin.enqueue_call('+14155550141', run_at => now() - interval '1 day', provider => 'tap-late',
                                               late_ok => true))->>'status'), 'scheduled', 'dialer_admin.enqueue_call: late_ok');

CREATE VIEW public.tap_late_src AS SELECT 'c1'::text AS customer_ref, '+14155550150'::text AS phone;
INSERT INTO dialer.campaigns (name, source, provider, payload) VALUES ('tap_late', 'public.tap_late_src', 'tap-late', '{}');
SELECT is(dialer.run_campaign('tap_late'), 1, 'a campaign run enqueues at once (its run_at is now)');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap_late' AND run_at = now()), 1,
          '... due now');

/* ------------------------------------------------------------------ the rule's one home */

SELECT is(dialer.call_rule('+14155550123', now() - interval '1 day', 'tap-late', '{}', NULL, NULL, 0, NULL, NULL, NULL,
                           (SELECT k FROM dialer.provider_kinds k WHERE k.kind = 'twilio'), '{}', 'https://a.example/t.xml', false), 'run_at_past', 'dialer.call_rule names the rule');
SELECT is(dialer.call_rule('+14155550123', now() - interval '1 day', 'tap-late', '{}', NULL, NULL, 0, NULL, NULL, NULL,
                           (SELECT k FROM dialer.provider_kinds k WHERE k.kind = 'twilio'), '{}', 'https://a.example/t.xml', true), NULL, '... and late_ok lifts it');

SELECT * FROM finish();
ROLLBACK;
