-- pgTAP: the rules the claim and the outcome store apply, at fixed instants or with zones
-- chosen so that the outcome does not depend on the hour the suite runs:
--   - next_window_opening: before, at, inside, at the end and after a window, across a
--     DST change, on both sides of UTC;
--   - a campaign's own calling window decides, narrower and wider than the server's;
--   - every number of the allow-list is allowed, with or without blanks around commas;
--   - the worker's late "accepted" never overwrites a final status a callback stored first;
--   - a report with an equal sequence number but other content is stale;
--   - a call's or campaign's window change, a number added to do_not_call: parked calls
--     re-evaluated at once.
-- The claim and store functions are called as the worker calls them (in dialer_tap no
-- worker dispatches).  Everything is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(43);

/* ------------------------------------------------------------------ next_window_opening, fixed instants */

SELECT is(dialer.next_window_opening('2030-01-15 06:30+01', 'Europe/Paris', '08:00', '21:00'),
          '2030-01-15 08:00+01'::timestamptz, 'before the opening: today''s opening');
SELECT is(dialer.next_window_opening('2030-01-15 08:00+01', 'Europe/Paris', '08:00', '21:00'),
          NULL, 'at the opening: inside');
SELECT is(dialer.next_window_opening('2030-01-15 20:59:59+01', 'Europe/Paris', '08:00', '21:00'),
          NULL, 'one second before the end: inside');
SELECT is(dialer.next_window_opening('2030-01-15 21:00+01', 'Europe/Paris', '08:00', '21:00'),
          '2030-01-16 08:00+01'::timestamptz, 'at the end: the next day''s opening');
SELECT is(dialer.next_window_opening('2030-01-15 23:30+01', 'Europe/Paris', '08:00', '21:00'),
          '2030-01-16 08:00+01'::timestamptz, 'after the end: the next day''s opening');
SELECT is(dialer.next_window_opening('2030-01-15 23:30:00+00', 'Europe/Paris', '08:00', '21:00'),
          '2030-01-16 08:00+01'::timestamptz, 'after the end (00:30 local, on the next local day): that day''s opening');
SELECT is(dialer.next_window_opening('2030-03-30 22:00+01', 'Europe/Paris', '08:00', '21:00'),
          '2030-03-31 08:00+02'::timestamptz, 'after the end on the eve of the DST change: the opening in summer time');
SELECT is(dialer.next_window_opening('2030-01-15 05:00+00', 'America/Los_Angeles', '08:00', '21:00'),
          '2030-01-15 08:00-08'::timestamptz, 'west of UTC, after the local end (21:00 the day before): the next local day''s opening');
SELECT is(dialer.next_window_opening('2030-01-15 14:00+00', 'Asia/Tokyo', '08:00', '21:00'),
          '2030-01-16 08:00+09'::timestamptz, 'east of UTC, at 23:00 local: the next local day''s opening');
SELECT is(dialer.next_window_opening('2030-01-15 23:59+01', 'Europe/Paris', '08:00', '24:00'),
          NULL, 'a window to 24:00 includes 23:59');

/* ------------------------------------------------------------------ set-up */

-- a zone where it is now between 11:00 and 13:00 (Etc/GMT-14 .. Etc/GMT+12 cover every hour)
CREATE TEMP TABLE tz AS
SELECT z FROM (SELECT CASE WHEN h = 0 THEN 'Etc/GMT' ELSE format('Etc/GMT%s%s', CASE WHEN h > 0 THEN '+' END, h) END AS z
                 FROM generate_series(-14, 12) h) s
 WHERE extract(hour FROM now() AT TIME ZONE z) IN (11, 12)
 LIMIT 1;
SELECT isnt((SELECT z FROM tz), NULL, 'a zone where it is about noon');

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url, calls_per_second)
SELECT n, 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000', 'https://a.example/t.xml', 100
  FROM unnest(ARRAY['tap-rules-narrow', 'tap-rules-wide', 'tap-rules-allow', 'tap-rules-late', 'tap-rules-seq',
                    'tap-rules-move']) n;
CREATE VIEW public.tap_rules_src AS SELECT 'c1'::text AS customer_ref, '+14155550100'::text AS phone;
INSERT INTO dialer.campaigns (name, source, provider, call_window_start, call_window_end, timezone)
VALUES ('tap_rules_narrow', 'public.tap_rules_src', 'tap-rules-narrow', '14:00', '15:00', (SELECT z FROM tz)),
       ('tap_rules_wide', 'public.tap_rules_src', 'tap-rules-wide', '00:00', '24:00', (SELECT z FROM tz));

CREATE TEMP TABLE ids (k text PRIMARY KEY, id bigint);
INSERT INTO ids
VALUES ('narrow', dialer.enqueue_call('+14155550110', provider => 'tap-rules-narrow', campaign => 'tap_rules_narrow')),
       ('wide', dialer.enqueue_call('+14155550111', provider => 'tap-rules-wide', campaign => 'tap_rules_wide'));
CREATE FUNCTION pg_temp.id(k text) RETURNS bigint LANGUAGE sql AS $$ SELECT id FROM ids WHERE ids.k = $1 $$;

/* ------------------------------------------------------------------ the campaign's window decides */

-- narrower: the server's window is open all day, the campaign's (14:00-15:00 local) is not open now
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('tap-rules-narrow', 10, 'UTC', '00:00', '24:00', '')), 0,
          'narrower campaign window: not claimed');
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = pg_temp.id('narrow')), 'scheduled', 'narrower: still scheduled');
SELECT is((SELECT to_char(next_attempt_at AT TIME ZONE (SELECT z FROM tz), 'HH24:MI') FROM dialer.scheduled_calls
            WHERE id = pg_temp.id('narrow')), '14:00', 'narrower: due at the campaign''s opening, local time');
SELECT is((SELECT detail->'timezones' || jsonb_build_array(detail->>'timezone_source') FROM dialer.call_events
            WHERE call_id = pg_temp.id('narrow') AND event = 'window_wait'),
          jsonb_build_array((SELECT z FROM tz), 'campaign'), 'narrower: window_wait in the campaign''s zone, and says so');
-- wider: the server's window (03:00-04:00 local) is closed now, the campaign's is open all day
SELECT is((SELECT array_agg(id) FROM dialer.claim_calls('tap-rules-wide', 10, 'UTC', '03:00', '04:00', '')),
          ARRAY[pg_temp.id('wide')], 'wider campaign window: claimed although the server''s window is closed');
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = pg_temp.id('wide')), 'dispatching', 'wider: dispatching');

/* ------------------------------------------------------------------ changes re-evaluate parked calls */

-- the narrow campaign's window widened: its parked call is due now, with a window_wait event saying why
UPDATE dialer.campaigns SET call_window_start = '00:00', call_window_end = '24:00' WHERE name = 'tap_rules_narrow';
SELECT ok((SELECT next_attempt_at <= now() FROM dialer.scheduled_calls WHERE id = pg_temp.id('narrow')),
          'campaign window widened: the parked call is due now');
SELECT is((SELECT detail->>'reason' FROM dialer.call_events WHERE call_id = pg_temp.id('narrow') ORDER BY id DESC LIMIT 1),
          'calling window changed', 'with a window_wait event naming the change');
SELECT is((SELECT array_agg(id) FROM dialer.claim_calls('tap-rules-narrow', 10, 'UTC', '00:00', '24:00', '')),
          ARRAY[pg_temp.id('narrow')], 'and the claim takes it');

-- a call's own time zone changed to one where the window is open
INSERT INTO ids VALUES ('move', dialer.enqueue_call('+14155550120', provider => 'tap-rules-move', timezone => (SELECT z FROM tz)));
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('tap-rules-move', 10, 'UTC', '14:00', '15:00', '')), 0,
          'a call outside the server window is parked');
SELECT ok((SELECT status = 'scheduled' AND next_attempt_at > now() FROM dialer.scheduled_calls WHERE id = pg_temp.id('move')),
          'parked: scheduled for later');
SELECT is(dialer.reevaluate_parked_calls(ARRAY[-1::bigint]), 0, 're-evaluating no parked call moves nothing');
-- to the zone where it is now 14:xx: the server's window (08:00-21:00 in the test cluster) is open there
UPDATE dialer.scheduled_calls
   SET timezone = (SELECT z FROM (SELECT CASE WHEN h = 0 THEN 'Etc/GMT' ELSE format('Etc/GMT%s%s', CASE WHEN h > 0 THEN '+' END, h) END AS z
                                    FROM generate_series(-14, 12) h) s
                    WHERE extract(hour FROM now() AT TIME ZONE z) = 14 LIMIT 1)
 WHERE id = pg_temp.id('move');
SELECT ok((SELECT next_attempt_at <= now() FROM dialer.scheduled_calls WHERE id = pg_temp.id('move')),
          'the call''s time zone changed to one where its window is open: due now');

-- a number added to the do-not-call list: its scheduled calls are skipped at once
INSERT INTO ids VALUES ('dnc_later', dialer.enqueue_call('+14155550130', provider => 'tap-rules-move', run_at => now() + interval '3 days')),
                       ('dnc_now', dialer.enqueue_call('+14155550130', provider => 'tap-rules-move')),
                       ('dnc_other', dialer.enqueue_call('+14155550131', provider => 'tap-rules-move', run_at => now() + interval '3 days'));
INSERT INTO dialer.do_not_call (number, reason) VALUES ('+14155550130', 'tap: asked');
SELECT is((SELECT array_agg(status || ':' || last_error ORDER BY id) FROM dialer.scheduled_calls
            WHERE id IN (pg_temp.id('dnc_later'), pg_temp.id('dnc_now'))),
          ARRAY['skipped:number is on the do-not-call list', 'skipped:number is on the do-not-call list'],
          'both calls of the number are skipped when it is added to do_not_call');
SELECT is((SELECT detail FROM dialer.call_events WHERE call_id = pg_temp.id('dnc_later') AND event = 'skipped'),
          '{"reason": "do_not_call", "checked": "do_not_call_added"}'::jsonb, 'with the reason in the event');
SELECT ok((SELECT finished_at IS NOT NULL FROM dialer.scheduled_calls WHERE id = pg_temp.id('dnc_later')), 'and finished');
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = pg_temp.id('dnc_other')), 'scheduled', 'another number''s call is untouched');

/* ------------------------------------------------------------------ allow-list */

INSERT INTO ids VALUES ('a1', dialer.enqueue_call('+14155550201', provider => 'tap-rules-allow')),
                       ('a2', dialer.enqueue_call('+14155550202', provider => 'tap-rules-allow')),
                       ('a3', dialer.enqueue_call('+14155550203', provider => 'tap-rules-allow')),
                       ('a4', dialer.enqueue_call('+14155550204', provider => 'tap-rules-allow'));
SELECT is((SELECT array_agg(id ORDER BY id) FROM dialer.claim_calls('tap-rules-allow', 10, 'UTC', '00:00', '24:00',
                                                                    ' +14155550201 ,+14155550202,  +14155550203 ')),
          ARRAY[pg_temp.id('a1'), pg_temp.id('a2'), pg_temp.id('a3')],
          'blanks around commas: every listed number is claimed, first, middle and last');
SELECT is((SELECT status || ':' || last_error FROM dialer.scheduled_calls WHERE id = pg_temp.id('a4')),
          'skipped:number is not in dialer.allowed_numbers', 'the number not listed is skipped');
INSERT INTO ids VALUES ('b1', dialer.enqueue_call('+14155550211', provider => 'tap-rules-allow')),
                       ('b2', dialer.enqueue_call('+14155550212', provider => 'tap-rules-allow')),
                       ('b3', dialer.enqueue_call('+14155550213', provider => 'tap-rules-allow'));
SELECT is((SELECT array_agg(id ORDER BY id) FROM dialer.claim_calls('tap-rules-allow', 10, 'UTC', '00:00', '24:00',
                                                                    '+14155550213,+14155550211,+14155550212')),
          ARRAY[pg_temp.id('b1'), pg_temp.id('b2'), pg_temp.id('b3')],
          'no blanks: every listed number is claimed, in any order of the list');
INSERT INTO ids VALUES ('c1', dialer.enqueue_call('+14155550221', provider => 'tap-rules-allow'));
SELECT is((SELECT array_agg(id) FROM dialer.claim_calls('tap-rules-allow', 10, 'UTC', '00:00', '24:00', '+14155550221')),
          ARRAY[pg_temp.id('c1')], 'a list of one number');

/* ------------------------------------------------------------------ a late "accepted" never overwrites a final status */

INSERT INTO ids VALUES ('late_done', dialer.enqueue_call('+14155550301', provider => 'tap-rules-late')),
                       ('late_fail', dialer.enqueue_call('+14155550302', provider => 'tap-rules-late'));
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('tap-rules-late', 10, 'UTC', '00:00', '24:00', '')), 2, 'two calls claimed');
-- the callbacks come first (the worker has not stored its answer yet): the attempt adopts the sid
SELECT is(dialer.apply_provider_status(pg_temp.id('late_done'), 'completed', 'CA' || repeat('a', 32), 3)->>'result', 'applied',
          'a completed callback before the worker''s answer is applied');
SELECT is(dialer.apply_provider_status(pg_temp.id('late_fail'), 'failed', 'CA' || repeat('b', 32), 1)->>'result', 'applied',
          'a failed callback before the worker''s answer is applied');
CREATE TEMP TABLE late_before AS
SELECT id, status, finished_at, provider_status FROM dialer.scheduled_calls WHERE id IN (pg_temp.id('late_done'), pg_temp.id('late_fail'));
SELECT is((SELECT array_agg(status ORDER BY id) FROM late_before), ARRAY['completed', 'failed'], 'final before the answer is stored');
SELECT dialer.record_results(ARRAY[pg_temp.id('late_done'), pg_temp.id('late_fail')], '{1,1}', '{accepted,accepted}', '{201,201}',
                             ARRAY['CA' || repeat('a', 32), 'CA' || repeat('b', 32)], '{NULL,NULL}', '{NULL,NULL}', '{NULL,NULL}',
                             '{0,0}', ARRAY[now(), now()]);
SELECT results_eq($$SELECT id, status, finished_at, provider_status FROM dialer.scheduled_calls
                     WHERE id IN (pg_temp.id('late_done'), pg_temp.id('late_fail')) ORDER BY id$$,
                  $$SELECT id, status, finished_at, provider_status FROM late_before ORDER BY id$$,
                  'the late accepted changes neither status, finished_at nor provider_status');
SELECT is((SELECT count(*)::int FROM dialer.call_events WHERE call_id IN (pg_temp.id('late_done'), pg_temp.id('late_fail'))
            AND event = 'accepted'), 0, 'and writes no accepted event');
SELECT is((SELECT array_agg(http_status ORDER BY call_id) FROM dialer.call_attempts
            WHERE call_id IN (pg_temp.id('late_done'), pg_temp.id('late_fail'))), ARRAY[201, 201],
          'the attempts still record the answer');

/* ------------------------------------------------------------------ equal sequence, other content: stale */

INSERT INTO ids VALUES ('seq', dialer.enqueue_call('+14155550401', provider => 'tap-rules-seq'));
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('tap-rules-seq', 10, 'UTC', '00:00', '24:00', '')), 1, 'claimed');
SELECT dialer.record_results(ARRAY[pg_temp.id('seq')], '{1}', '{accepted}', '{201}', ARRAY['CA' || repeat('c', 32)],
                             '{NULL}', '{NULL}', '{NULL}', '{0}', ARRAY[now()]);
-- two webhooks (their dedupe key is the hash of the body: different bodies, different keys)
SELECT is(dialer.apply_provider_status(pg_temp.id('seq'), 'in-progress', 'CA' || repeat('c', 32), 5, '{}', '{}',
                                       'webhook', 'sha256:first')->>'result', 'applied', 'sequence 5, in-progress: applied');
SELECT is(dialer.apply_provider_status(pg_temp.id('seq'), 'completed', 'CA' || repeat('c', 32), 5, '{}', '{}',
                                       'webhook', 'sha256:second')->>'result', 'stale',
          'sequence 5 again with other content (completed): stale');
SELECT is((SELECT status || '/' || provider_status FROM dialer.scheduled_calls WHERE id = pg_temp.id('seq')),
          'dialing/in-progress', 'the call did not move');

SELECT * FROM finish();
ROLLBACK;
