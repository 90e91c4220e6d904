/*
 * Example 2: insurance policy renewals.
 *
 * Daily at 10:00 India time, call customers whose policy expires within 30 days: at most
 * 50 calls a day, nobody called in the last 7 days, nobody already scheduled today,
 * 3 retries (4 attempts) when the line is busy or nobody answers.
 *
 * Replaces: Celery beat + a Celery worker + Redis + a FastAPI service.  Every rule the
 * old service coded is a column of dialer.campaigns; pending_customers() is the old
 * "who is due" endpoint and campaign_candidates() answers "why was she not called?".
 *
 *   psql -v ON_ERROR_STOP=1 -d mydb -f examples/02_insurance_renewals.sql
 *
 * Needs pg_dialer; pg_cron (in this database) to schedule it, else it is only run once.
 * Idempotent: loading it again refreshes the sample expiry dates and, on the same day,
 * schedules nobody twice and nobody beyond the daily cap.
 *
 * psql variables (-v name=value):
 *   provider   provider to call through (default: example_twilio, created DISABLED with
 *              placeholder credentials: nothing is dialled until you enable it)
 */
\set ON_ERROR_STOP 1
\if :{?provider}
\else
\set provider example_twilio
\endif

BEGIN;

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number,
							  status_callback_url, calls_per_second, max_concurrency, enabled)
VALUES ('example_twilio', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
		'replace-with-your-auth-token', '+15005550006', 'https://example.com/twilio/status',
		0.5, 5, false)
ON CONFLICT (name) DO NOTHING;

-- The application's own tables (a sample schema) ------------------------------------------
CREATE SCHEMA IF NOT EXISTS example_insurance;

CREATE TABLE IF NOT EXISTS example_insurance.customers (
	id			int PRIMARY KEY,
	name		text NOT NULL,
	phone		text NOT NULL,
	language	text NOT NULL DEFAULT 'en-IN'
);

CREATE TABLE IF NOT EXISTS example_insurance.policies (
	id			int PRIMARY KEY,
	customer_id	int NOT NULL REFERENCES example_insurance.customers,
	product		text NOT NULL,
	expires_on	date NOT NULL,
	premium		numeric(10, 2) NOT NULL
);

-- 70 customers with one policy each, expiry relative to today in India:
--   1..60 expire within the next 30 days (more than the daily cap of 50),
--   61..68 in 31 to 45 days, 69 expired yesterday, 70 asked not to be called.
INSERT INTO example_insurance.customers (id, name, phone, language)
SELECT g, format('Customer %s', g), '+9198765' || lpad(g::text, 5, '0'),
	   CASE WHEN g % 3 = 0 THEN 'hi-IN' ELSE 'en-IN' END
  FROM generate_series(1, 70) g
ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone;

INSERT INTO example_insurance.policies (id, customer_id, product, expires_on, premium)
SELECT 1000 + g, g,
	   CASE g % 3 WHEN 0 THEN 'Motor' WHEN 1 THEN 'Health' ELSE 'Home' END,
	   (now() AT TIME ZONE 'Asia/Kolkata')::date
		 + CASE WHEN g <= 60 THEN g % 30 WHEN g <= 68 THEN 31 + (g - 61) * 2 WHEN g = 69 THEN -1 ELSE 5 END,
	   4999 + g * 100
  FROM generate_series(1, 70) g
ON CONFLICT (id) DO UPDATE SET expires_on = EXCLUDED.expires_on;

INSERT INTO dialer.do_not_call (number, reason)
VALUES ('+919876500070', 'example: customer asked not to be called')
ON CONFLICT (number) DO NOTHING;

-- The campaign source: every active policy; the 30-day window is the campaign's rule
-- (lookahead_days), so campaign_candidates() can say "outside_lookahead" for the others.
-- The message is spoken by Twilio (<Say>, its default voice and language) and asks for
-- nothing: this version of pg_dialer does not take keys pressed during the call, so the
-- customer is told how to renew instead.  The payload's other keys (policy_id) are kept
-- with the call for the application; Twilio does not read them.
CREATE OR REPLACE VIEW example_insurance.renewal_candidates AS
SELECT c.id::text AS customer_ref,
	   c.phone,
	   jsonb_build_object(
		   'message', format('Hello %s, your %s policy expires on %s. To renew it, call us back on 1800 209 0000, or renew at example.com slash renew.',
							 c.name, p.product, to_char(p.expires_on, 'DD Mon YYYY')),
		   'policy_id', p.id) AS payload,
	   p.expires_on AS due_at
  FROM example_insurance.policies p
  JOIN example_insurance.customers c ON c.id = p.customer_id;

-- The campaign: the old service's rules as data -------------------------------------------
INSERT INTO dialer.campaigns (name, description, source, provider, timezone,
							  lookahead_days, max_calls_per_day, skip_called_within_days, once_per_day,
							  max_attempts, retry_busy, retry_no_answer, retry_delay)
VALUES ('insurance_renewals', 'Call customers whose policy expires within 30 days',
		'example_insurance.renewal_candidates', :'provider', 'Asia/Kolkata',
		30, 50, 7, true,
		4, true, true, '2 hours')
ON CONFLICT (name) DO UPDATE
   SET source = EXCLUDED.source, provider = EXCLUDED.provider, timezone = EXCLUDED.timezone,
	   lookahead_days = EXCLUDED.lookahead_days, max_calls_per_day = EXCLUDED.max_calls_per_day,
	   skip_called_within_days = EXCLUDED.skip_called_within_days, max_attempts = EXCLUDED.max_attempts,
	   enabled = true;

-- Who is due (the first ten), and why the others are left out.
SELECT customer_ref, phone, due_at FROM dialer.pending_customers('insurance_renewals', max_rows => 10);
SELECT reason, count(*) FROM dialer.campaign_candidates('insurance_renewals') GROUP BY reason ORDER BY reason NULLS FIRST;

-- Daily at 10:00 IST (needs pg_cron in this database).
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') AS has_pg_cron \gset
\if :has_pg_cron
SELECT dialer.schedule_campaign('insurance_renewals', 'daily 10:00') AS next_run_at;
\else
\echo 'pg_cron is not installed here: insurance_renewals is not scheduled (run it with dialer.run_campaign).'
\endif

-- And once now: at most 50 today, however often it runs.
SELECT dialer.run_campaign('insurance_renewals') AS enqueued;

COMMIT;

/*
 * "Why was customer 55 not called today?"
 *   SELECT included, reason, detail FROM dialer.campaign_candidates('insurance_renewals')
 *    WHERE customer_ref = '55';
 */
