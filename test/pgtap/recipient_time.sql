-- pgTAP: the recipient's time with no calling policy, at fixed instants or with windows chosen
-- from the current hour so that the outcome does not depend on when the suite runs:
--   - dialer.recipient_zones: the call's zone, else the campaign's, else the number's, else the
--     fallback (dialer.default_timezone), and which it was;
--   - dialer.zones_window_opening: a window read in several zones at once (open only when open
--     in all; infinity when their windows never overlap), across a DST change;
--   - the claim reads the general window in the number's zone, not dialer.default_timezone (a
--     Brisbane number is not dialled at night when it is day in New York), says which zones
--     and why in its events, falls back to the default zone with a warning for a number whose
--     zone is unknown, and skips a call whose zones' windows never overlap;
--   - dialer.next_local_time: "tomorrow at 10:00 the recipient's time", and its errors.
-- The claim is called as the worker calls it (in dialer_tap no worker dispatches).  Everything
-- is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(38);

/* ------------------------------------------------------------------ recipient_zones */

SELECT is((SELECT row(zones, source)::text FROM dialer.recipient_zones('Europe/Paris', 'Asia/Tokyo', '+61731234567', 'UTC')),
          row(ARRAY['Europe/Paris'], 'call')::text, 'the call''s zone first');
SELECT is((SELECT row(zones, source)::text FROM dialer.recipient_zones(NULL, 'Asia/Tokyo', '+61731234567', 'UTC')),
          row(ARRAY['Asia/Tokyo'], 'campaign')::text, 'then the campaign''s');
SELECT is((SELECT row(zones, source)::text FROM dialer.recipient_zones(NULL, NULL, '+61731234567', 'UTC')),
          row(ARRAY['Australia/Brisbane'], 'number')::text, 'then the number''s (libphonenumber)');
SELECT is((SELECT row(zones, source)::text FROM dialer.recipient_zones(NULL, NULL, '+99955501234', 'America/New_York')),
          row(ARRAY['America/New_York'], 'default')::text, 'an unknown number: the fallback, saying so');
SELECT is((SELECT row(zones, source)::text FROM dialer.recipient_zones(NULL, NULL, '+99955501234')),
          row(NULL::text[], 'unknown')::text, 'no fallback (under a policy): unknown');
SELECT cmp_ok((SELECT cardinality(zones) FROM dialer.recipient_zones(NULL, NULL, '+15550100042', 'UTC')), '>', 20,
              'a NANP number of no area: every zone of the plan');

/* ------------------------------------------------------------------ zones_window_opening, fixed instants */

-- London (UTC+0) and Paris (UTC+1) in January, window 08:00-21:00
SELECT is(dialer.zones_window_opening('2030-01-15 10:00Z', '{Europe/London,Europe/Paris}', '08:00', '21:00'),
          NULL, 'open in both: NULL');
SELECT is(dialer.zones_window_opening('2030-01-15 07:30Z', '{Europe/London,Europe/Paris}', '08:00', '21:00'),
          '2030-01-15 08:00Z'::timestamptz, 'open in Paris (08:30), not London (07:30): London''s opening');
SELECT is(dialer.zones_window_opening('2030-01-15 20:30Z', '{Europe/London,Europe/Paris}', '08:00', '21:00'),
          '2030-01-16 08:00Z'::timestamptz, 'closed in Paris (21:30): the next day''s opening in both');
-- New York and Los Angeles in summer (EDT -4, PDT -7): both open from 15:00Z (08:00 PDT) to 01:00Z (21:00 EDT)
SELECT is(dialer.zones_window_opening('2030-07-01 13:00Z', '{America/New_York,America/Los_Angeles}', '08:00', '21:00'),
          '2030-07-01 15:00Z'::timestamptz, 'two US zones: the later opening (Los Angeles)');
SELECT is(dialer.zones_window_opening('2030-07-02 00:59Z', '{America/New_York,America/Los_Angeles}', '08:00', '21:00'),
          NULL, 'two US zones: 20:59 in New York, still open in both');
SELECT is(dialer.zones_window_opening('2030-07-02 01:00Z', '{America/New_York,America/Los_Angeles}', '08:00', '21:00'),
          '2030-07-02 15:00Z'::timestamptz, 'two US zones: 21:00 in New York, the next opening in Los Angeles');
-- across the spring change in Europe (2030-03-31): the opening moves an hour in UTC
SELECT is(dialer.zones_window_opening('2030-03-30 21:00Z', '{Europe/London,Europe/Paris}', '08:00', '21:00'),
          '2030-03-31 07:00Z'::timestamptz, 'after the DST change: 08:00 BST is 07:00Z');
-- Tokyo (+9) and London (+0) have no common hour in a 09:00-17:00 window
SELECT is(dialer.zones_window_opening('2030-01-15 10:00Z', '{Asia/Tokyo,Europe/London}', '09:00', '17:00'),
          'infinity'::timestamptz, 'windows that never overlap: infinity');

/* ------------------------------------------------------------------ the claim, with no policy */

SELECT is((SELECT count(*)::int FROM dialer.calling_policies WHERE enabled), 0, 'no calling policy is enabled');

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url, calls_per_second)
VALUES ('tap-rt', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000',
        'https://a.example/t.xml', 100);

-- a window of one hour that is open now in New York; Brisbane is 14 or 15 hours ahead, so it
-- is closed there
CREATE TEMP TABLE win AS
SELECT date_trunc('hour', now() AT TIME ZONE 'America/New_York')::time AS ws,
       CASE WHEN extract(hour FROM now() AT TIME ZONE 'America/New_York') = 23 THEN '24:00'::time
            ELSE (date_trunc('hour', now() AT TIME ZONE 'America/New_York') + interval '1 hour')::time END AS we;
CREATE FUNCTION pg_temp.claim() RETURNS SETOF bigint LANGUAGE sql AS $$
	SELECT id FROM dialer.claim_calls('tap-rt', 10, 'America/New_York', (SELECT ws FROM win), (SELECT we FROM win), '')
$$;

CREATE TEMP TABLE ids (k text PRIMARY KEY, id bigint);
INSERT INTO ids
VALUES ('brisbane', dialer.enqueue_call('+61731234567', provider => 'tap-rt')),
       ('new_york', dialer.enqueue_call('+12125550100', provider => 'tap-rt')),
       ('brisbane_as_ny', dialer.enqueue_call('+61731234568', provider => 'tap-rt', timezone => 'America/New_York')),
       ('unknown', dialer.enqueue_call('+99955501234', provider => 'tap-rt')),
       ('nanp_any', dialer.enqueue_call('+15550100042', provider => 'tap-rt'));
CREATE FUNCTION pg_temp.id(k text) RETURNS bigint LANGUAGE sql AS $$ SELECT id FROM ids WHERE ids.k = $1 $$;
CREATE FUNCTION pg_temp.ev(k text, e text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT detail FROM dialer.call_events WHERE call_id = pg_temp.id(k) AND event = e ORDER BY id DESC LIMIT 1
$$;

CREATE TEMP TABLE claimed AS SELECT * FROM pg_temp.claim() AS c(id);
SELECT set_eq('SELECT id FROM claimed',
              ARRAY[pg_temp.id('new_york'), pg_temp.id('brisbane_as_ny'), pg_temp.id('unknown')],
              'claimed: New York, a call whose own zone is New York, and the unknown number (read in the default zone)');

SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = pg_temp.id('brisbane')), 'scheduled',
          'the Brisbane number is not dialled at night in Brisbane although it is day in dialer.default_timezone');
SELECT is(pg_temp.ev('brisbane', 'window_wait')->'timezones', '["Australia/Brisbane"]', 'its window_wait names its zone');
SELECT is(pg_temp.ev('brisbane', 'window_wait')->>'timezone_source', 'number', '... and that it came from the number');
SELECT is((SELECT to_char(next_attempt_at AT TIME ZONE 'Australia/Brisbane', 'HH24:MI') FROM dialer.scheduled_calls
            WHERE id = pg_temp.id('brisbane')), to_char((SELECT ws FROM win), 'HH24:MI'),
          'due when the window opens in Brisbane');
SELECT is(pg_temp.ev('new_york', 'claimed') - 'attempt',
          '{"timezones": ["America/New_York"], "timezone_source": "number"}', 'a claim names the zones the window was read in');
SELECT is(pg_temp.ev('brisbane_as_ny', 'claimed')->>'timezone_source', 'call', 'the call''s own zone wins over the number''s');
SELECT is(pg_temp.ev('unknown', 'claimed')->>'timezone_source', 'default', 'an unknown zone: dialer.default_timezone');
SELECT matches(pg_temp.ev('unknown', 'claimed')->>'warning',
               '^the time zone of \+99955501234 is not known from the number: the calling window was read in dialer\.default_timezone \(America/New_York\)',
               '... with a warning in the event');
SELECT is((SELECT row(status, last_error ~ '^the calling window .* is never open at the same time in all [0-9]+ time zones \+15550100042 may be in')::text
             FROM dialer.scheduled_calls WHERE id = pg_temp.id('nanp_any')),
          row('skipped', true)::text, 'a one-hour window never open in all the zones of a number: skipped, saying why');
SELECT is(pg_temp.ev('nanp_any', 'skipped')->>'reason', 'no_window', '... with reason no_window');
SELECT is((SELECT row(timezones, source)::text FROM dialer.call_timezones(pg_temp.id('brisbane'))),
          row(ARRAY['Australia/Brisbane'], 'number')::text, 'dialer.call_timezones: where a call''s window is read');

-- a whole-day window needs no zone: the claim looks none up and records none
UPDATE dialer.scheduled_calls SET next_attempt_at = now() WHERE id = pg_temp.id('brisbane');
SELECT is((SELECT array_agg(id) FROM dialer.claim_calls('tap-rt', 10, 'America/New_York', '00:00', '24:00', '')),
          ARRAY[pg_temp.id('brisbane')], 'a whole-day window: claimed');
SELECT is(pg_temp.ev('brisbane', 'claimed'), '{"attempt": 1}', '... with no zone in its event');

/* ------------------------------------------------------------------ next_local_time */

SELECT is(to_char(dialer.next_local_time('+61731234567', '10:00', days => 1) AT TIME ZONE 'Australia/Brisbane', 'YYYY-MM-DD HH24:MI'),
          to_char((now() AT TIME ZONE 'Australia/Brisbane')::date + 1, 'YYYY-MM-DD') || ' 10:00',
          'tomorrow at 10:00 in Brisbane, for a Brisbane number');
SELECT ok((SELECT t > now() AND t <= now() + interval '1 day'
                  AND to_char(t AT TIME ZONE 'Australia/Brisbane', 'HH24:MI') = '10:00'
             FROM dialer.next_local_time('+61731234567', '10:00') t), 'days NULL: the next 10:00 in Brisbane');
SELECT is(to_char(dialer.next_local_time('+15550100042', '09:30', days => 2, timezone => 'America/Chicago')
                  AT TIME ZONE 'America/Chicago', 'YYYY-MM-DD HH24:MI'),
          to_char((now() AT TIME ZONE 'America/Chicago')::date + 2, 'YYYY-MM-DD') || ' 09:30',
          'a number of several zones, with the zone given');
SELECT throws_ok($$SELECT dialer.next_local_time('+15550100042', '10:00')$$, '22004', 'invalid timezone: NULL',
                 'a number of several zones without a zone: refused');
SELECT throws_ok($$SELECT dialer.next_local_time('+99955501234', '10:00')$$, '22004', 'invalid timezone: NULL',
                 'a number whose zone is unknown: refused');
SELECT throws_ok($$SELECT dialer.next_local_time('+61731234567', '10:00', timezone => 'Mars/Base')$$, '22023',
                 'invalid timezone: ''Mars/Base''', 'an unknown zone: refused');
SELECT throws_ok($$SELECT dialer.next_local_time('0612345678', '10:00')$$, '22023', 'invalid to_number: ''0612345678''',
                 'a number not in E.164: refused');
SELECT throws_ok($$SELECT dialer.next_local_time('+61731234567', NULL)$$, '22004', 'invalid local_time: NULL',
                 'no time: refused');
SELECT throws_ok($$SELECT dialer.next_local_time('+61731234567', '10:00', days => -1)$$, '22023', 'invalid days: ''-1''',
                 'days before today: refused');

SELECT * FROM finish();
ROLLBACK;
