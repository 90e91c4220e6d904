/*
 * Example 1: automotive service appointment reminders.
 *
 * Every day at 09:00 New York time, call each customer with a CONFIRMED appointment
 * tomorrow.  While piloting, only the shop's own test phone may be called: the campaign's
 * allow-list (allowed_numbers) leaves everybody else out with the reason not_allowed.
 * Twilio accounts start at one call per second; the seed system slept 2 s between calls,
 * here the provider's calls_per_second says 0.5.
 *
 * Replaces: a Python + APScheduler worker calling Twilio.
 *
 *   psql -v ON_ERROR_STOP=1 -d mydb -f examples/01_appointment_reminders.sql
 *
 * Needs pg_dialer; pg_cron (in this database) to schedule it, else it is only run once.
 * Idempotent: loading it again refreshes the sample appointments (always "tomorrow") and
 * schedules nobody twice on one day.
 *
 * psql variables (-v name=value):
 *   provider       provider to call through (default: example_twilio, created DISABLED
 *                  with placeholder credentials: nothing is dialled until you fill them in
 *                  and enable it)
 *   pilot_numbers  the pilot allow-list, a text[] literal (default '{+15005550006}');
 *                  pass an empty value to go live: -v pilot_numbers=
 */
\set ON_ERROR_STOP 1
\if :{?provider}
\else
\set provider example_twilio
\endif
\if :{?pilot_numbers}
\else
\set pilot_numbers '{+15005550006}'
\endif

BEGIN;

-- The provider: Twilio, disabled until real credentials are filled in.
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
							  status_callback_url, calls_per_second, max_concurrency, enabled)
VALUES ('example_twilio', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
		'replace-with-your-auth-token', '+15005550006', 'https://example.com/twilio/status',
		0.5, 5, false)
ON CONFLICT (name) DO NOTHING;

-- The application's own tables (a sample schema) ------------------------------------------
CREATE SCHEMA IF NOT EXISTS example_auto;

CREATE TABLE IF NOT EXISTS example_auto.customers (
	id			int PRIMARY KEY,
	name		text NOT NULL,
	phone		text NOT NULL,
	timezone	text NOT NULL
);

CREATE TABLE IF NOT EXISTS example_auto.appointments (
	id			int PRIMARY KEY,
	customer_id	int NOT NULL REFERENCES example_auto.customers,
	starts_at	timestamptz NOT NULL,
	status		text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
	vehicle		text NOT NULL,
	service		text NOT NULL
);

INSERT INTO example_auto.customers VALUES
	(1, 'Pilot Tester',  '+15005550006', 'America/New_York'),
	(2, 'Dana Whitaker', '+12125550101', 'America/New_York'),
	(3, 'Luis Ortega',   '+13125550102', 'America/Chicago'),
	(4, 'Mei Chen',      '+14155550103', 'America/Los_Angeles'),
	(5, 'Omar Haddad',   '+16175550104', 'America/New_York')
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone, timezone = EXCLUDED.timezone;

-- Appointments relative to today, in each customer's own time zone (refreshed on reload).
INSERT INTO example_auto.appointments (id, customer_id, starts_at, status, vehicle, service)
SELECT a.id, a.customer_id,
	   (((now() AT TIME ZONE c.timezone)::date + a.in_days) + a.at) AT TIME ZONE c.timezone,
	   a.status, a.vehicle, a.service
  FROM (VALUES
		(101, 1, 1, time '08:30', 'CONFIRMED', '2019 Honda Civic',    'oil change'),
		(102, 2, 1, time '10:00', 'CONFIRMED', '2021 Toyota RAV4',    'brake inspection'),
		(103, 3, 1, time '13:15', 'CONFIRMED', '2017 Ford F-150',     'tire rotation'),
		(104, 4, 1, time '16:45', 'CONFIRMED', '2022 Tesla Model 3',  'annual service'),
		(105, 5, 1, time '11:00', 'CANCELLED', '2015 Subaru Outback', 'timing belt'),
		(106, 5, 6, time '09:00', 'CONFIRMED', '2015 Subaru Outback', 'timing belt'))
		AS a(id, customer_id, in_days, at, status, vehicle, service)
  JOIN example_auto.customers c ON c.id = a.customer_id
ON CONFLICT (id) DO UPDATE SET starts_at = EXCLUDED.starts_at, status = EXCLUDED.status;

-- The campaign source: tomorrow's confirmed appointments (tomorrow in the customer's zone).
-- Columns follow pg_dialer's contract: customer_ref, phone, payload, timezone, due_at.
CREATE OR REPLACE VIEW example_auto.tomorrow_confirmed AS
SELECT c.id::text AS customer_ref,
	   c.phone,
	   jsonb_build_object(
		   'message', format('Hello %s. This is Example Motors reminding you of your %s appointment for your %s tomorrow at %s. See you then!',
							 split_part(c.name, ' ', 1), a.service, a.vehicle,
							 to_char(a.starts_at AT TIME ZONE c.timezone, 'HH12:MI AM')),
		   'appointment_id', a.id) AS payload,
	   c.timezone,
	   a.starts_at AS due_at
  FROM example_auto.appointments a
  JOIN example_auto.customers c ON c.id = a.customer_id
 WHERE a.status = 'CONFIRMED'
   AND (a.starts_at AT TIME ZONE c.timezone)::date = (now() AT TIME ZONE c.timezone)::date + 1;

-- The campaign: rules as data ----------------------------------------------------------------
INSERT INTO dialer.campaigns (name, description, source, provider, timezone, lookahead_days,
							  once_per_day, max_attempts, retry_no_answer, retry_delay, allowed_numbers)
VALUES ('auto_reminders', 'Example Motors: remind customers of tomorrow''s confirmed appointments',
		'example_auto.tomorrow_confirmed', :'provider', 'America/New_York', 1,
		true, 2, true, '30 minutes', nullif(:'pilot_numbers', '')::text[])
ON CONFLICT (name) DO UPDATE
   SET source = EXCLUDED.source, provider = EXCLUDED.provider, timezone = EXCLUDED.timezone,
	   allowed_numbers = EXCLUDED.allowed_numbers, enabled = true;

-- Who would be called, and why not the others (reason: not_allowed while piloting).
SELECT customer_ref, phone, included, reason, detail
  FROM dialer.campaign_candidates('auto_reminders');

-- Daily at 09:00 New York time, EST or EDT alike (needs pg_cron in this database).
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') AS has_pg_cron \gset
\if :has_pg_cron
SELECT dialer.schedule_campaign('auto_reminders', 'daily 09:00') AS next_run_at;
\else
\echo 'pg_cron is not installed here: auto_reminders is not scheduled (run it with dialer.run_campaign).'
\endif

-- And once now ("trigger now"): enqueues tomorrow's reminders not yet scheduled today.
SELECT dialer.run_campaign('auto_reminders') AS enqueued;

COMMIT;

/*
 * Going live:
 *   UPDATE dialer.campaigns SET allowed_numbers = NULL WHERE name = 'auto_reminders';
 * A cluster-wide guard exists too: dialer.allowed_numbers (postgresql.conf) makes the
 * dispatcher skip every number it does not list, whatever enqueued it.
 */
