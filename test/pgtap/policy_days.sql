-- Calling policies on the recipient's calendar (issue 21): a window that starts in the hour the
-- clocks repeat or skip at a DST change opens at the first instant the clocks show its start
-- (or at the change); a call of a campaign with a window of its own is judged under that window
-- by dialer.compliance_verdict and dialer.next_opening, as the claim judges it
-- (dialer.batch_verdicts).  All at FIXED instants.  Runs in dialer_tap; everything is rolled
-- back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = error;

BEGIN;
SELECT plan(16);
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
