-- pg_prove database: dialer_test
-- schedule_campaign / unschedule_campaign on a real pg_cron (dialer_test is the database
-- named by cron.database_name).  Everything is rolled back: pg_cron never sees the jobs.
-- (That a scheduled campaign really fires is test/integration/campaigns.test.js.)
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;

BEGIN;
SELECT plan(17);

-- start from no scheduled campaign (whatever an earlier test left), inside this transaction
SELECT count(dialer.unschedule_campaign(name)) FROM dialer.campaigns WHERE schedule IS NOT NULL \g /dev/null
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'pg_dialer_campaigns'), 0,
	'no pg_dialer job while no campaign is scheduled');

INSERT INTO dialer.providers (name, kind, base_url, enabled)
VALUES ('tap_cron', 'voice_api', 'http://127.0.0.1:9', false);
CREATE SCHEMA tap_cron;
CREATE VIEW tap_cron.nobody AS SELECT 'x'::text AS customer_ref, '+14155550100'::text AS phone WHERE false;
INSERT INTO dialer.campaigns (name, source, provider, timezone) VALUES
	('tap_cron_in', 'tap_cron.nobody', 'tap_cron', 'Asia/Kolkata'),
	('tap_cron_ny', 'tap_cron.nobody', 'tap_cron', 'America/New_York');

SELECT is(dialer.schedule_campaign('tap_cron_in', 'Daily 10:00'),
	dialer.schedule_next_run('daily 10:00', 'Asia/Kolkata', now()),
	'schedule_campaign returns the next run, 10:00 in the campaign''s time zone');
SELECT is(
	(SELECT format('%s|%s|%s|%s|%s', schedule, command, database, username, active) FROM cron.job WHERE jobname = 'pg_dialer_campaigns'),
	format('%s|%s|%s|%s|%s', '* * * * *', 'SELECT dialer.run_scheduled_campaigns()', current_database(), current_user, true),
	'it creates the pg_cron job that runs the scheduler every minute (GMT-independent)');
SELECT results_eq(
	$$SELECT schedule, scheduled_by::text, schedule_since = now() FROM dialer.campaigns WHERE name = 'tap_cron_in'$$,
	$$VALUES ('daily 10:00'::text, current_user::text, true)$$,
	'the campaign records its normalized schedule, who scheduled it and since when');
SELECT is(dialer.schedule_next_run('daily 10:00', 'Asia/Kolkata', now()) AT TIME ZONE 'Asia/Kolkata' - (now() AT TIME ZONE 'Asia/Kolkata')::date,
	CASE WHEN (now() AT TIME ZONE 'Asia/Kolkata')::time < '10:00' THEN interval '10 hours' ELSE interval '34 hours' END,
	'the next run is today or tomorrow at 10:00 Kolkata time');

SELECT lives_ok($$SELECT dialer.schedule_campaign('tap_cron_ny', '30 9 * * 1-5')$$, 'a second campaign, with a cron expression');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'pg_dialer_campaigns'), 1, '... still one pg_cron job');
SELECT lives_ok($$SELECT dialer.schedule_campaign('tap_cron_ny', 'daily 08:00')$$, 'rescheduling a campaign');
SELECT is((SELECT schedule FROM dialer.campaigns WHERE name = 'tap_cron_ny'), 'daily 08:00', '... replaces its schedule');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'pg_dialer_campaigns'), 1, '... still one pg_cron job');

SELECT throws_ok($$SELECT dialer.schedule_campaign('tap_cron_ny', 'every day')$$, '22023', 'invalid schedule: ''every day''',
	'a bad schedule is refused');
SELECT is((SELECT schedule FROM dialer.campaigns WHERE name = 'tap_cron_ny'), 'daily 08:00', '... and changes nothing');

SELECT is(dialer.unschedule_campaign('tap_cron_in'), true, 'unschedule_campaign: true');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'pg_dialer_campaigns'), 1,
	'... the job stays while another campaign is scheduled');
SELECT is(dialer.unschedule_campaign('tap_cron_ny'), true, 'unscheduling the last campaign');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'pg_dialer_campaigns'), 0, '... removes the job');
SELECT is(dialer.unschedule_campaign('tap_cron_ny'), false, 'unscheduling it again: false');

SELECT * FROM finish();
ROLLBACK;
