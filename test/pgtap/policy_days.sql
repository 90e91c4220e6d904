-- Calling policies on the recipient's calendar (issue 21): a window on Sunday (ISO weekday 7)
-- opens on Sunday; a blackout day is the recipient's local date, not the UTC date; a window
-- that starts in the hour the clocks repeat or skip at a DST change opens at the first
-- instant the clocks show its start (or at the change); a call of a campaign with a window of
-- its own is judged under that window by dialer.compliance_verdict and dialer.next_opening,
-- as the claim judges it.  Each is asked of dialer.compliance_verdict, dialer.next_opening and
-- the claim's own verdict of its batch (dialer.batch_verdicts), at FIXED instants.  Runs in
-- dialer_tap; everything is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = error;

BEGIN;
SELECT plan(32);
SET LOCAL TimeZone = 'UTC';

INSERT INTO dialer.providers (name, kind, base_url, account_sid, enabled)
VALUES ('tap_days', 'twilio', 'http://127.0.0.1:9', 'AC0123456789abcdef0123456789abcdef', false);
-- every policy of this file is scoped to that provider
CREATE FUNCTION pg_temp.v(number text, at timestamptz, campaign text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
	SELECT concat_ws(' ', v.decision, v.policy, v.rule, to_char(v.next_opening, 'YYYY-MM-DD HH24:MI'))
	  FROM dialer.compliance_verdict(number, at, NULL, campaign, 'tap_days', NULL,
									 CASE WHEN campaign IS NULL THEN time '00:00' END,
									 CASE WHEN campaign IS NULL THEN time '24:00' END) v;
$$;
-- a scheduled call of that provider, for the claim's verdict of a batch
CREATE FUNCTION pg_temp.call(number text, campaign text DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
	INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload, campaign)
	VALUES ('2026-01-01Z', '2026-01-01Z', number, 'tap_days', 1, '{"message": "days"}', campaign)
	RETURNING id;
$$;
CREATE FUNCTION pg_temp.batch(id bigint, at timestamptz) RETURNS text
LANGUAGE sql AS $$
	SELECT concat_ws(' ', b.decision, b.policy, b.rule, to_char(b.next_opening, 'YYYY-MM-DD HH24:MI'))
	  FROM dialer.batch_verdicts(ARRAY[id], at, '00:00', '24:00') b;
$$;

-- A window on Sunday -------------------------------------------------------------------------
INSERT INTO dialer.calling_policies (name, providers) VALUES ('tap_sunday', '{tap_days}');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('tap_sunday', '{7}', '10:00', '12:00');
SELECT is(pg_temp.v('+33142685300', '2026-03-08 10:30Z'), 'allow',
		  'Paris, Sunday 8 March 11:30, a window {7} 10:00-12:00: open');
SELECT is(pg_temp.v('+33142685300', '2026-03-07 10:30Z'), 'park tap_sunday window 2026-03-08 09:00',
		  'Saturday 11:30: parked until Sunday 10:00 (09:00 UTC)');
SELECT is(pg_temp.v('+33142685300', '2026-03-08 11:30Z'), 'park tap_sunday window 2026-03-15 09:00',
		  'Sunday 12:30, after the window: parked until next Sunday 10:00');
SELECT is(pg_temp.v('+33142685300', '2026-03-09 10:30Z'), 'park tap_sunday window 2026-03-15 09:00',
		  'Monday 11:30 (ISO weekday 1): parked until Sunday');
SELECT is(dialer.next_opening('+33142685300', '2026-03-07 10:30Z', provider => 'tap_days', timezone => 'Europe/Paris'),
		  '2026-03-08 09:00Z'::timestamptz, 'dialer.next_opening says Sunday 10:00 too');
-- Sunday in the recipient's zone, Monday in UTC: Auckland, Sunday 8 March 10:30 NZDT = Saturday 21:30 UTC
SELECT is(pg_temp.v('+6493001234', '2026-03-07 21:30Z'), 'allow',
		  'Auckland, Sunday 10:30 local (Saturday 21:30 UTC): open');
SELECT is(pg_temp.v('+6493001234', '2026-03-08 21:30Z'), 'park tap_sunday window 2026-03-14 21:00',
		  'Auckland, Monday 10:30 local (Sunday 21:30 UTC): parked until the local Sunday 10:00');
SELECT is(pg_temp.batch(pg_temp.call('+33142685301'), '2026-03-08 10:30Z'), 'allow',
		  'the claim''s verdict of its batch: a call on Sunday 11:30 Paris is allowed');
SELECT is(pg_temp.batch(pg_temp.call('+33142685302'), '2026-03-07 10:30Z'), 'park tap_sunday window 2026-03-08 09:00',
		  '... and on Saturday it is parked until Sunday 10:00');
DELETE FROM dialer.calling_policies WHERE name = 'tap_sunday';

-- A holiday on the recipient's local date ------------------------------------------------------
INSERT INTO dialer.calling_policies (name, providers, blackout_calendars) VALUES ('tap_holidays', '{tap_days}', '{tap_days}');
INSERT INTO dialer.blackout_dates (calendar, day, name)
VALUES ('tap_days', '2026-01-01', 'New Year''s Day'), ('tap_days', '2026-07-04', 'Independence Day');
-- east of UTC: the local date is ahead
SELECT is(pg_temp.v('+6493001234', '2025-12-31 12:00Z'), 'park tap_holidays blackout 2026-01-01 11:00',
		  'Auckland, 1 January 01:00 local (31 December in UTC): the holiday, until its local midnight');
SELECT is(pg_temp.v('+6493001234', '2026-01-01 12:00Z'), 'allow',
		  'Auckland, 2 January 01:00 local (1 January in UTC): no holiday there');
SELECT is((dialer.compliance_verdict('+6493001234', '2025-12-31 12:00Z', provider => 'tap_days',
									 window_start => '00:00', window_end => '24:00')).reason,
		  'policy tap_holidays, rule blackout: New Year''s Day 2026-01-01 (calendar tap_days) in Pacific/Auckland; next opening 2026-01-01 11:00:00+00',
		  'the reason names the holiday and the zone');
-- west of UTC: the local date is behind
SELECT is(pg_temp.v('+12135550100', '2026-07-05 03:00Z'), 'park tap_holidays blackout 2026-07-05 07:00',
		  'Los Angeles, 4 July 20:00 local (5 July in UTC): the holiday, until 5 July 00:00 PDT');
SELECT is(pg_temp.v('+12135550100', '2026-07-04 05:00Z'), 'allow',
		  'Los Angeles, 3 July 22:00 local (4 July in UTC): no holiday there');
SELECT is(pg_temp.batch(pg_temp.call('+6493001235'), '2025-12-31 12:00Z'), 'park tap_holidays blackout 2026-01-01 11:00',
		  'the claim''s verdict of its batch: parked on the local holiday');
SELECT is(pg_temp.batch(pg_temp.call('+6493001236'), '2026-01-01 12:00Z'), 'allow',
		  '... and allowed on the next local day, the UTC holiday');
DELETE FROM dialer.calling_policies WHERE name = 'tap_holidays';

-- A window starting in the hour a DST change repeats or skips ---------------------------------
-- New York: clocks back from 02:00 EDT to 01:00 EST on 1 November 2026 (06:00 UTC), forward
-- from 02:00 EST to 03:00 EDT on 8 March 2026 (07:00 UTC)
INSERT INTO dialer.calling_policies (name, providers) VALUES ('tap_night', '{tap_days}');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('tap_night', '{1,2,3,4,5,6,7}', '01:30', '03:00');
SELECT is(pg_temp.v('+12125550100', '2026-11-01 04:45Z'), 'park tap_night window 2026-11-01 05:30',
		  'the window 01:30-03:00 opens at the first 01:30 of the night the clocks go back (05:30 UTC, EDT), not the second');
SELECT is(pg_temp.v('+12125550100', '2026-11-01 05:45Z'), 'allow', '... and is open at 01:45 EDT');
SELECT is(pg_temp.v('+12125550100', '2026-11-01 06:10Z'), 'park tap_night window 2026-11-01 06:30',
		  '... closed again at 01:10 EST (the clocks went back), open again at the second 01:30');
UPDATE dialer.policy_windows SET starts = '02:30', ends = '04:00' WHERE policy = 'tap_night';
SELECT is(pg_temp.v('+12125550100', '2026-03-08 06:45Z'), 'park tap_night window 2026-03-08 07:00',
		  'the window 02:30-04:00 on the night the clocks skip 02:00-03:00 opens at the change (03:00 EDT, 07:00 UTC)');
SELECT is(pg_temp.v('+12125550100', '2026-03-08 07:00Z'), 'allow', '... where the local time is 03:00, inside the window');
SELECT is(dialer.local_instants('2026-11-01 01:30', 'America/New_York'), '{2026-11-01 05:30Z,2026-11-01 06:30Z}'::timestamptz[],
		  'dialer.local_instants: a repeated local time has two instants');
SELECT is(dialer.local_instants('2026-03-08 02:30', 'America/New_York'), '{2026-03-08 07:00Z}'::timestamptz[],
		  'dialer.local_instants: a skipped local time stands for the change');
SELECT is(dialer.local_instants('2026-09-06 00:30', 'America/Santiago'), '{2026-09-06 04:00Z}'::timestamptz[],
		  'dialer.local_instants: Santiago skips 00:00-01:00 (at its local midnight)');
SELECT is(dialer.local_instants('2026-04-05 01:45', 'Australia/Lord_Howe'), '{2026-04-04 14:45Z,2026-04-04 15:15Z}'::timestamptz[],
		  'dialer.local_instants: Lord Howe puts its clocks back half an hour');
SELECT is(dialer.local_instants('2026-03-09 02:30', 'America/New_York'), '{2026-03-09 06:30Z}'::timestamptz[],
		  'dialer.local_instants: any other local time has one instant');
DELETE FROM dialer.calling_policies WHERE name = 'tap_night';

-- The campaign's own window --------------------------------------------------------------------
CREATE TABLE pg_temp.tap_days_candidates (customer_ref text, phone text);
INSERT INTO dialer.campaigns (name, source, provider, timezone, call_window_start, call_window_end)
VALUES ('tap_days_c', 'pg_temp.tap_days_candidates', 'tap_days', 'Europe/Paris', '10:00', '19:30');
INSERT INTO dialer.calling_policies (name, providers) VALUES ('tap_any', '{tap_days}');
SELECT is(pg_temp.v('+33142685300', '2026-03-10 08:00Z', 'tap_days_c'), 'park dialer.call_window window 2026-03-10 09:00',
		  'a call of a campaign with a window of 10:00-19:30, at 09:00 Paris: parked until 10:00 (not the settings'' 08:00-21:00)');
SELECT is(pg_temp.v('+33142685300', '2026-03-10 18:45Z', 'tap_days_c'), 'park dialer.call_window window 2026-03-11 09:00',
		  '... at 19:45: parked until the next day''s 10:00');
SELECT is(dialer.next_opening('+33142685300', '2026-03-10 08:00Z', campaign => 'tap_days_c', provider => 'tap_days'),
		  '2026-03-10 09:00Z'::timestamptz, 'dialer.next_opening(number, ...) of that campaign: 10:00');
SELECT pg_temp.call('+33142685303', 'tap_days_c') \gset days_call_
SELECT is(dialer.next_opening(:days_call_call, '2026-03-10 08:00Z'),
		  '2026-03-10 09:00Z'::timestamptz, 'dialer.next_opening(call id) of a call of that campaign: 10:00');
SELECT is(pg_temp.batch(pg_temp.call('+33142685304', 'tap_days_c'), '2026-03-10 08:00Z'), 'park dialer.call_window window 2026-03-10 09:00',
		  'the claim''s verdict of its batch says the same');
SELECT is((dialer.compliance_verdict('+33142685300', '2026-03-10 08:00Z', NULL, 'tap_days_c', 'tap_days', NULL, '08:00', '21:00')).decision,
		  'allow', 'a window given to dialer.compliance_verdict wins over the campaign''s');

SELECT * FROM finish();
ROLLBACK;
