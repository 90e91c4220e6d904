-- Campaign schedules: parsing, local-time next runs across the 2026 daylight-saving
-- changes (America/New_York, Europe/Berlin; Asia/Kolkata has none), and the scheduler
-- dialer.run_scheduled_campaigns(at) driven with simulated instants: once per local
-- slot, no double run on fall-back, no missed run on spring-forward.  Runs in
-- dialer_tap, where pg_cron is not installed; everything is rolled back.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = error;

BEGIN;
SELECT plan(76);

-- Parsing ------------------------------------------------------------------------------
SELECT is((dialer.parse_schedule('  Daily   9:05 ')).normalized, 'daily 09:05', '''daily H:MM'' is accepted and normalized');
SELECT is((dialer.parse_schedule('daily 09:05')).minutes, '{5}'::int[], '... minute 5');
SELECT is((dialer.parse_schedule('daily 09:05')).hours, '{9}'::int[], '... hour 9');
SELECT is((dialer.parse_schedule('*/20 8-10 * * *')).minutes, '{0,20,40}'::int[], 'steps: */20 is 0, 20, 40');
SELECT is((dialer.parse_schedule('0 9 * * mon-fri')).weekdays, '{1,2,3,4,5}'::int[], 'weekday names');
SELECT is((dialer.parse_schedule('0 9 * * 0,7')).weekdays, '{0}'::int[], 'weekday 7 is Sunday (0)');
SELECT is((dialer.parse_schedule('0 9 1 jan,jul *')).months, '{1,7}'::int[], 'month names');
SELECT is((dialer.parse_schedule('0 9 10-20/5 * *')).days, '{10,15,20}'::int[], 'a stepped range');
SELECT is((dialer.parse_schedule('@weekly')).weekdays, '{0}'::int[], '@weekly is Sunday midnight');
SELECT throws_ok($$SELECT dialer.parse_schedule('daily 24:00')$$, '22023', 'invalid schedule: ''daily 24:00''', 'daily 24:00 is refused');
SELECT throws_ok($$SELECT dialer.parse_schedule('60 * * * *')$$, '22023', 'invalid schedule: ''60 * * * *''', 'minute 60 is refused');
SELECT throws_ok($$SELECT dialer.parse_schedule('0 9 * *')$$, '22023', 'invalid schedule: ''0 9 * *''', 'four fields are refused');
SELECT throws_ok($$SELECT dialer.parse_schedule('0 9 * * funday')$$, '22023', 'invalid schedule: ''0 9 * * funday''', 'an unknown name is refused');
SELECT throws_ok($$SELECT dialer.parse_schedule('0 9 5-1 * *')$$, '22023', 'invalid schedule: ''0 9 5-1 * *''', 'a downward range is refused');
SELECT throws_ok($$SELECT dialer.parse_schedule(NULL)$$, '22004', 'invalid schedule: NULL', 'NULL is refused');
SELECT is(dialer.schedule_next_run('0 9 30 2 *', 'UTC', '2026-01-01Z'), NULL, 'a schedule that never runs has no next run');
SELECT is(dialer.schedule_next_run('0 0 29 2 *', 'UTC', '2026-01-01Z'), '2028-02-29 00:00Z'::timestamptz, 'February 29 is found two years ahead');
SELECT throws_ok($$SELECT dialer.schedule_next_run('daily 09:00', 'Mars/Base', now())$$, '22023', 'invalid timezone: ''Mars/Base''',
	'an unknown time zone is refused');

-- Next runs across DST (expected values written with the local UTC offset in force) ------
-- America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST
SELECT is(dialer.schedule_next_run('daily 09:00', 'America/New_York', '2026-03-06 15:00Z'), '2026-03-07 09:00-05'::timestamptz,
	'New York 09:00 the day before spring-forward is 09:00 EST');
SELECT is(dialer.schedule_next_run('daily 09:00', 'America/New_York', '2026-03-07 15:00Z'), '2026-03-08 09:00-04'::timestamptz,
	'New York 09:00 on spring-forward day is 09:00 EDT (13:00 UTC, not 14:00)');
SELECT is(dialer.schedule_next_run('daily 02:30', 'America/New_York', '2026-03-07 15:00Z'), '2026-03-08 03:30-04'::timestamptz,
	'New York 02:30 does not exist on spring-forward day: it runs at 03:30 EDT, not skipped');
SELECT is(dialer.schedule_next_run('daily 09:00', 'America/New_York', '2026-10-31 14:00Z'), '2026-11-01 09:00-05'::timestamptz,
	'New York 09:00 on fall-back day is 09:00 EST (14:00 UTC)');
SELECT is((SELECT count(*)::int FROM dialer.schedule_runs('daily 01:30', 'America/New_York', '2026-11-01 00:00-04', '2026-11-02 00:00-05')), 1,
	'New York 01:30 happens twice on fall-back day and runs once');
SELECT is(dialer.schedule_next_run('daily 01:30', 'America/New_York', '2026-11-01 00:00-04'), '2026-11-01 01:30-05'::timestamptz,
	'... at its second (standard time) occurrence');
SELECT is((SELECT count(*)::int FROM dialer.schedule_runs('0 * * * *', 'America/New_York', '2026-11-01 00:00-04', '2026-11-01 04:00-05')), 4,
	'hourly on fall-back night: local 01:00, 02:00, 03:00, 04:00 each once (25 real hours, one run per local hour)');
SELECT is((SELECT count(*)::int FROM dialer.schedule_runs('0 * * * *', 'America/New_York', '2026-03-08 00:00-05', '2026-03-08 04:00-04')), 3,
	'hourly on spring-forward night: the missing 02:00 shares 03:00''s instant, so 01:00, 03:00, 04:00');
SELECT ok((SELECT bool_and((r AT TIME ZONE 'America/New_York')::time = '09:00'
						  AND count = ('2026-04-15'::date - '2026-02-15'::date) + 1)
			 FROM (SELECT r, count(*) OVER () AS count
					 FROM dialer.schedule_runs('daily 09:00', 'America/New_York', '2026-02-15Z', '2026-04-16Z') r) x),
	'New York daily 09:00 over two months across spring-forward: one run a day, all at 09:00 local');
-- Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET
SELECT is(dialer.schedule_next_run('daily 09:00', 'Europe/Berlin', '2026-03-28 12:00Z'), '2026-03-29 09:00+02'::timestamptz,
	'Berlin 09:00 on spring-forward day is 09:00 CEST (07:00 UTC)');
SELECT is(dialer.schedule_next_run('daily 09:00', 'Europe/Berlin', '2026-03-27 12:00Z'), '2026-03-28 09:00+01'::timestamptz,
	'Berlin 09:00 the day before is 09:00 CET (08:00 UTC)');
SELECT is(dialer.schedule_next_run('daily 02:30', 'Europe/Berlin', '2026-03-28 12:00Z'), '2026-03-29 03:30+02'::timestamptz,
	'Berlin 02:30 does not exist on spring-forward day: it runs at 03:30 CEST');
SELECT is(dialer.schedule_next_run('daily 09:00', 'Europe/Berlin', '2026-10-24 12:00Z'), '2026-10-25 09:00+01'::timestamptz,
	'Berlin 09:00 on fall-back day is 09:00 CET (08:00 UTC)');
SELECT is((SELECT array_agg(r)::text FROM dialer.schedule_runs('daily 02:30', 'Europe/Berlin', '2026-10-25 00:00+02', '2026-10-26 00:00+01') r),
	(ARRAY['2026-10-25 02:30+01'::timestamptz])::text,
	'Berlin 02:30 happens twice on fall-back day and runs once');
-- Asia/Kolkata: no DST, 10:00 IST is 04:30 UTC all year
SELECT is(dialer.schedule_next_run('daily 10:00', 'Asia/Kolkata', '2026-03-08 00:00Z'), '2026-03-08 04:30Z'::timestamptz,
	'Kolkata 10:00 in March is 04:30 UTC');
SELECT is(dialer.schedule_next_run('daily 10:00', 'Asia/Kolkata', '2026-11-01 00:00Z'), '2026-11-01 04:30Z'::timestamptz,
	'Kolkata 10:00 in November is 04:30 UTC');
SELECT is(dialer.schedule_next_run('daily 10:00', 'Asia/Kolkata', '2026-11-01 04:30Z'), '2026-11-02 04:30Z'::timestamptz,
	'the next run is strictly after the given instant');
-- day-of-month OR day-of-week, as cron
SELECT is((SELECT array_agg(extract(day FROM r AT TIME ZONE 'UTC')::int ORDER BY r)
			 FROM dialer.schedule_runs('0 9 13 * fri', 'UTC', '2026-11-01Z', '2026-11-30Z') r),
	'{6,13,20,27}'::int[], 'day 13 or Friday: both restricted fields match either (November 2026)');
SELECT is((SELECT array_agg(extract(day FROM r AT TIME ZONE 'UTC')::int ORDER BY r)
			 FROM dialer.schedule_runs('0 9 * * sat,sun', 'UTC', '2026-11-01Z', '2026-11-15 12:00Z') r),
	'{1,7,8,14,15}'::int[], 'weekends only');

-- The scheduler, with simulated instants -------------------------------------------------
INSERT INTO dialer.providers (name, kind, base_url, enabled)
VALUES ('tap_sched', 'voice_api', 'http://127.0.0.1:9', false);
CREATE SCHEMA tap_sched;
CREATE TABLE tap_sched.people (customer_ref text, phone text);
CREATE VIEW tap_sched.nobody AS SELECT customer_ref, phone FROM tap_sched.people WHERE false;
CREATE VIEW tap_sched.everyone AS SELECT customer_ref, phone FROM tap_sched.people;
INSERT INTO tap_sched.people VALUES ('a', '+4915100000001'), ('b', '+4915100000002');

-- ticks every 5 minutes over a range; returns how many slots ran
CREATE FUNCTION tap_sched.tick(from_at timestamptz, to_at timestamptz, step interval DEFAULT '5 minutes')
RETURNS int LANGUAGE sql AS $$
	SELECT coalesce(sum(dialer.run_scheduled_campaigns(t)), 0)::int FROM generate_series(from_at, to_at, step) t
$$;

INSERT INTO dialer.campaigns (name, source, provider, timezone, schedule, schedule_since, scheduled_by)
VALUES ('ny_0130', 'tap_sched.nobody', 'tap_sched', 'America/New_York', 'daily 01:30', '2026-10-30 00:00Z', current_user),
	   ('ny_0230', 'tap_sched.nobody', 'tap_sched', 'America/New_York', 'daily 02:30', '2026-03-06 00:00Z', current_user),
	   ('be_0230', 'tap_sched.nobody', 'tap_sched', 'Europe/Berlin', 'daily 02:30', '2026-03-27 00:00Z', current_user),
	   ('in_1000', 'tap_sched.nobody', 'tap_sched', 'Asia/Kolkata', 'daily 10:00', '2026-03-06 00:00Z', current_user);

-- Spring forward (March)
SELECT tap_sched.tick('2026-03-06 00:00Z', '2026-03-11 00:00Z') \g /dev/null
SELECT tap_sched.tick('2026-03-27 00:00Z', '2026-03-31 00:00Z') \g /dev/null
SELECT is((SELECT array_agg(local_slot::date ORDER BY slot)::text FROM dialer.campaign_runs WHERE campaign = 'ny_0230' AND slot < '2026-03-11Z'),
	'{2026-03-06,2026-03-07,2026-03-08,2026-03-09,2026-03-10}',
	'New York daily 02:30 across spring-forward: one run every local day, 2026-03-08 not missed');
SELECT is((SELECT slot FROM dialer.campaign_runs WHERE campaign = 'ny_0230' AND local_slot::date = '2026-03-08'),
	'2026-03-08 03:30-04'::timestamptz, '... that day it ran at 03:30 EDT');
SELECT is((SELECT array_agg(slot ORDER BY slot)::text FROM dialer.campaign_runs WHERE campaign = 'be_0230'),
	(ARRAY['2026-03-27 02:30+01', '2026-03-28 02:30+01', '2026-03-29 03:30+02', '2026-03-30 02:30+02']::timestamptz[])::text,
	'Berlin daily 02:30 across spring-forward: every day, at 03:30 CEST on the day 02:30 does not exist');
SELECT is((SELECT count(*)::int FROM dialer.campaign_runs WHERE campaign = 'in_1000' AND slot < '2026-03-11Z'), 5,
	'Kolkata daily 10:00: five runs in five days');
SELECT is((SELECT array_agg(slot ORDER BY slot)::text FROM dialer.campaign_runs WHERE campaign = 'in_1000' AND slot > '2026-03-11Z'),
	(ARRAY['2026-03-26 10:00+05:30', '2026-03-27 10:00+05:30', '2026-03-28 10:00+05:30', '2026-03-29 10:00+05:30', '2026-03-30 10:00+05:30']::timestamptz[])::text,
	'after 16 days without ticks, one late run for the latest missed slot, then one a day again');
SELECT ok((SELECT bool_and(slot AT TIME ZONE 'UTC' = local_slot::date + time '04:30') FROM dialer.campaign_runs WHERE campaign = 'in_1000'),
	'... each at 04:30 UTC');
SELECT ok((SELECT bool_and(outcome = 'ok' AND enqueued = 0 AND started_at IS NOT NULL AND finished_at IS NOT NULL)
			 FROM dialer.campaign_runs),
	'every run is recorded as ok with its count and times');

-- Fall back (October/November): ticking every minute through the repeated hours
SELECT tap_sched.tick('2026-10-24 00:00Z', '2026-10-26 12:00Z', '1 minute') \g /dev/null
SELECT is((SELECT array_agg(slot ORDER BY slot)::text FROM dialer.campaign_runs WHERE campaign = 'be_0230' AND slot >= '2026-10-24Z'),
	(ARRAY['2026-10-24 02:30+02', '2026-10-25 02:30+01', '2026-10-26 02:30+01']::timestamptz[])::text,
	'Berlin daily 02:30 across fall-back: once a day, once on the day 02:30 happens twice');
SELECT tap_sched.tick('2026-10-30 00:00Z', '2026-11-03 00:00Z', '1 minute') \g /dev/null
SELECT is((SELECT array_agg(local_slot ORDER BY slot)::text FROM dialer.campaign_runs WHERE campaign = 'ny_0130'),
	(ARRAY['2026-10-30 01:30', '2026-10-31 01:30', '2026-11-01 01:30', '2026-11-02 01:30']::timestamp[])::text,
	'New York daily 01:30 across fall-back: one run per local day, no double run on 2026-11-01');
SELECT is(dialer.run_scheduled_campaigns('2026-11-02 12:00Z'), 0, 'a tick with nothing due runs nothing');

-- A slot is claimed once: the same instant twice runs once (the other campaigns unscheduled)
UPDATE dialer.campaigns SET schedule = NULL, schedule_since = NULL, scheduled_by = NULL WHERE name <> 'in_1000';
UPDATE dialer.campaigns SET schedule = '*/10 * * * *', schedule_since = '2026-12-01 00:00Z' WHERE name = 'in_1000';
SELECT is(dialer.run_scheduled_campaigns('2026-12-01 00:10Z'), 1, 'a due slot runs');
SELECT is(dialer.run_scheduled_campaigns('2026-12-01 00:10Z'), 0, '... and not again at the same instant');
SELECT is(dialer.run_scheduled_campaigns('2026-12-01 00:15Z'), 0, '... nor before the next slot');
-- missed slots (server down) collapse into one late run of the latest slot
SELECT is(dialer.run_scheduled_campaigns('2026-12-01 01:05Z'), 1, 'after an hour without ticks one run catches up');
SELECT is((SELECT max(slot) FROM dialer.campaign_runs WHERE campaign = 'in_1000'), '2026-12-01 01:00Z'::timestamptz,
	'... for the latest missed slot');
-- schedule_since: nothing before the schedule was set
UPDATE dialer.campaigns SET schedule = 'daily 10:00', schedule_since = '2026-12-05 05:00Z' WHERE name = 'in_1000';
SELECT is(dialer.run_scheduled_campaigns('2026-12-05 06:00Z'), 0, 'a slot before the schedule was set does not run');

-- Disabled at its slot: recorded, nothing enqueued, not run late when re-enabled
UPDATE dialer.campaigns SET source = 'tap_sched.everyone', enabled = false, schedule_since = '2026-12-05 06:00Z' WHERE name = 'in_1000';
SELECT is(dialer.run_scheduled_campaigns('2026-12-06 04:31Z'), 1, 'a disabled campaign''s slot is claimed');
SELECT is((SELECT outcome FROM dialer.campaign_runs WHERE campaign = 'in_1000' ORDER BY slot DESC LIMIT 1), 'disabled',
	'... recorded as disabled');
UPDATE dialer.campaigns SET enabled = true WHERE name = 'in_1000';
SELECT is(dialer.run_scheduled_campaigns('2026-12-06 09:00Z'), 0, '... and not run late once enabled again');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'in_1000'), 0, '... nothing was enqueued');

-- A real run enqueues (with the real clock); a failing campaign does not stop the others
DROP VIEW tap_sched.nobody CASCADE;
UPDATE dialer.campaigns SET schedule = 'daily 10:00', schedule_since = '2026-12-07 00:00Z', scheduled_by = current_user
 WHERE name <> 'in_1000';
SELECT is(dialer.run_scheduled_campaigns('2026-12-07 04:31Z'), 1, 'daily 10:00 in four time zones: Kolkata''s runs at 04:30 UTC');
SELECT is(dialer.run_scheduled_campaigns('2026-12-07 09:01Z'), 1, '... Berlin''s at 09:00 UTC');
SELECT is(dialer.run_scheduled_campaigns('2026-12-07 15:01Z'), 2, '... both New York ones at 15:00 UTC');
SELECT is((SELECT enqueued FROM dialer.campaign_runs WHERE campaign = 'in_1000' ORDER BY slot DESC LIMIT 1), 2,
	'the campaign with two candidates enqueued two');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'in_1000'), 2, '... which are in the queue');
SELECT is((SELECT count(*)::int FROM dialer.campaign_runs WHERE slot > '2026-12-06Z' AND outcome = 'error' AND error LIKE '%tap_sched.nobody%'), 3,
	'the three campaigns whose source is gone are recorded as error, naming it');

-- Runs use the privileges of the role that scheduled the campaign
CREATE ROLE tap_sched_user;
SELECT dialer.grant_campaigns('tap_sched_user', true);
UPDATE dialer.campaigns SET schedule = NULL, schedule_since = NULL, scheduled_by = NULL WHERE name <> 'in_1000';
UPDATE dialer.campaigns SET scheduled_by = 'tap_sched_user', schedule = '*/5 * * * *', schedule_since = '2026-12-08 00:00Z' WHERE name = 'in_1000';
DELETE FROM dialer.scheduled_calls WHERE campaign = 'in_1000';
SELECT dialer.run_scheduled_campaigns('2026-12-08 00:05Z') \g /dev/null
SELECT ok((SELECT outcome = 'error' AND error LIKE 'permission denied%' AND run_as = 'tap_sched_user'
			 FROM dialer.campaign_runs WHERE campaign = 'in_1000' ORDER BY slot DESC LIMIT 1),
	'a scheduled run cannot read a source the scheduling role cannot read');
GRANT USAGE ON SCHEMA tap_sched TO tap_sched_user;
GRANT SELECT ON tap_sched.everyone TO tap_sched_user;
SELECT dialer.run_scheduled_campaigns('2026-12-08 00:10Z') \g /dev/null
SELECT is((SELECT outcome || ':' || enqueued FROM dialer.campaign_runs WHERE campaign = 'in_1000' ORDER BY slot DESC LIMIT 1), 'ok:2',
	'... and runs once it may');
SELECT is(current_user::text, session_user::text, 'the scheduler is back to its own role afterwards');

-- schedule_campaign where pg_cron is not installed (dialer_tap has none)
CREATE FUNCTION tap_sched.hint_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
	EXECUTE sql;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
	RETURN h;
END $$;
UPDATE dialer.campaigns SET schedule = NULL, schedule_since = NULL, scheduled_by = NULL;
SELECT throws_ok($$SELECT dialer.schedule_campaign('in_1000', 'daily 10:00')$$, '55000',
	'pg_cron is not installed in database ' || quote_ident(current_database()),
	'schedule_campaign without pg_cron: SQLSTATE 55000 naming the database');
SELECT ok(tap_sched.hint_of($$SELECT dialer.schedule_campaign('in_1000', 'daily 10:00')$$)
		  LIKE 'CREATE EXTENSION pg_cron in the database named by cron.database_name%',
	'... with the hint to create pg_cron in cron.database_name');
SELECT is((SELECT count(*)::int FROM dialer.campaigns WHERE schedule IS NOT NULL), 0, '... and nothing is scheduled');
SELECT throws_ok($$SELECT dialer.schedule_campaign('in_1000', 'daily 9')$$, '22023', 'invalid schedule: ''daily 9''',
	'a bad schedule is reported before pg_cron is looked for');
SELECT throws_ok($$SELECT dialer.schedule_campaign('in_1000', '0 9 31 2 *')$$, '22023', 'invalid schedule: ''0 9 31 2 *''',
	'a schedule that never runs is refused');
SELECT throws_ok($$SELECT dialer.schedule_campaign('nope', 'daily 10:00')$$, '42704', 'invalid campaign: ''nope''',
	'an unknown campaign is refused');
SELECT is(dialer.unschedule_campaign('in_1000'), false, 'unschedule_campaign of an unscheduled campaign: false');
UPDATE dialer.campaigns SET schedule = 'daily 10:00', schedule_since = now(), scheduled_by = current_user WHERE name = 'in_1000';
SELECT is((SELECT next_run_at FROM dialer.campaign_schedules WHERE campaign = 'in_1000'),
	dialer.schedule_next_run('daily 10:00', 'Asia/Kolkata', now()), 'campaign_schedules shows the next run');
SELECT is(dialer.unschedule_campaign('in_1000'), true, 'unschedule_campaign of a scheduled campaign: true (also without pg_cron)');
SELECT is((SELECT schedule FROM dialer.campaigns WHERE name = 'in_1000'), NULL, '... and the schedule is gone');

SELECT * FROM finish();
ROLLBACK;
