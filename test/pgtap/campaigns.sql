-- Campaigns: the source contract, every rule of pending_customers / campaign_candidates
-- with its reason, run_campaign's counts and dedupe, errors and privileges.
-- Runs in dialer_tap (no worker there); everything is rolled back.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;

BEGIN;
SELECT plan(99);

-- Fixture ------------------------------------------------------------------------------
CREATE SCHEMA tap_camp;
CREATE TABLE tap_camp.people (
	customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz
);
CREATE VIEW tap_camp.people_v AS SELECT * FROM tap_camp.people;

-- "today" of the campaign (Asia/Kolkata) and a local-noon helper
CREATE FUNCTION tap_camp.today() RETURNS date LANGUAGE sql STABLE
	AS $$ SELECT (now() AT TIME ZONE 'Asia/Kolkata')::date $$;
CREATE FUNCTION tap_camp.noon(d int) RETURNS timestamptz LANGUAGE sql STABLE
	AS $$ SELECT ((tap_camp.today() + d) + time '12:00') AT TIME ZONE 'Asia/Kolkata' $$;
CREATE FUNCTION tap_camp.reason(ref text, days int DEFAULT NULL) RETURNS text LANGUAGE sql
	AS $$ SELECT coalesce(string_agg(coalesce(c.reason, 'included'), ','), 'absent')
			FROM dialer.campaign_candidates('tap', days) c WHERE c.customer_ref = ref $$;

INSERT INTO dialer.providers (name, kind, base_url, enabled)
VALUES ('tap_camp_backend', 'backend', 'http://127.0.0.1:9', false);

INSERT INTO tap_camp.people VALUES
	('ok_today',     '+919800000001', '{"n": 1}', NULL, tap_camp.noon(0)),
	('ok_nodue',     '+919800000002', NULL, NULL, NULL),
	('fmt',          '+91 (98000) 000-03', NULL, NULL, tap_camp.noon(1)),
	('badphone',     '09800000004', NULL, NULL, tap_camp.noon(0)),
	('',             '+919800000005', NULL, NULL, tap_camp.noon(0)),
	('badtz',        '+919800000006', NULL, 'Nowhere/City', tap_camp.noon(0)),
	('goodtz',       '+919800000007', NULL, 'Europe/Berlin', tap_camp.noon(1)),
	('badpayload',   '+919800000008', '[1, 2]', NULL, tap_camp.noon(0)),
	('badmode',      '+919800000009', '{"mode": "SHOUT"}', NULL, tap_camp.noon(0)),
	('dnc',          '+919800000010', NULL, NULL, tap_camp.noon(0)),
	('past',         '+919800000011', NULL, NULL, tap_camp.noon(-1)),
	('far',          '+919800000012', NULL, NULL, tap_camp.noon(5)),
	('edge',         '+919800000016', NULL, NULL, tap_camp.noon(2)),
	('recent',       '+919800000013', NULL, NULL, tap_camp.noon(0)),
	('old',          '+919800000014', NULL, NULL, tap_camp.noon(0)),
	('canceledcall', '+919800000015', NULL, NULL, tap_camp.noon(0)),
	('pending',      '+919800000017', NULL, NULL, tap_camp.noon(0)),
	('dup',          '+919800000018', '{"which": "later"}', NULL, tap_camp.noon(1)),
	('dup',          '+919800000018', '{"which": "earlier"}', NULL, tap_camp.noon(0)),
	('shareA',       '+919800000020', NULL, NULL, tap_camp.noon(0)),
	('shareB',       '+919800000020', NULL, NULL, tap_camp.noon(1)),
	('manual_today', '+919800000021', NULL, NULL, tap_camp.noon(0));

INSERT INTO dialer.do_not_call (number, reason) VALUES ('+919800000010', 'asked not to be called');

-- Calls already in the queue: history of the numbers, and the campaign's own calls.
INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts, campaign, customer_ref)
VALUES
	('completed', now() - interval '3 days', now() - interval '3 days', '+919800000013', 'tap_camp_backend', 1, 'other', 'x'),
	('completed', now() - interval '8 days', now() - interval '8 days', '+919800000014', 'tap_camp_backend', 1, 'other', 'y'),
	('canceled',  now() - interval '1 day',  now() - interval '1 day',  '+919800000015', 'tap_camp_backend', 1, 'other', 'z');

-- The model: the source is checked when the campaign is written -----------------------
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'tap_camp.nope', 'tap_camp_backend')$$,
	'42P01', NULL, 'a source that does not exist is refused (42P01)');
SELECT throws_like(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'tap_camp.nope', 'tap_camp_backend')$$,
	'%invalid source: ''tap_camp.nope''%', '... and the error names the bad value');

CREATE VIEW tap_camp.no_phone AS SELECT customer_ref FROM tap_camp.people;
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'tap_camp.no_phone', 'tap_camp_backend')$$,
	'42703', NULL, 'a source without a phone column is refused (42703)');
CREATE VIEW tap_camp.text_payload AS SELECT customer_ref, phone, 'x'::text AS payload FROM tap_camp.people;
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'tap_camp.text_payload', 'tap_camp_backend')$$,
	'42804', NULL, 'a text payload column is refused (42804)');
CREATE VIEW tap_camp.int_due AS SELECT customer_ref, phone, 1 AS due_at FROM tap_camp.people;
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'tap_camp.int_due', 'tap_camp_backend')$$,
	'42804', NULL, 'an integer due_at column is refused (42804)');
CREATE FUNCTION tap_camp.scalar_fn() RETURNS SETOF text LANGUAGE sql AS $$ SELECT 'x' $$;
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'tap_camp.scalar_fn()', 'tap_camp_backend')$$,
	'42804', NULL, 'a function returning no named columns is refused (42804)');
CREATE FUNCTION tap_camp.not_srf() RETURNS TABLE (customer_ref text, phone text) LANGUAGE sql
	AS $$ SELECT 'a', '+14155550100' $$;
CREATE FUNCTION tap_camp.plain_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'tap_camp.plain_fn()', 'tap_camp_backend')$$,
	'42809', NULL, 'a function that is not set-returning is refused (42809)');
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider) VALUES ('bad', 'not a name!', 'tap_camp_backend')$$,
	'42602', NULL, 'a source that is not a name is refused (42602)');
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider, timezone) VALUES ('bad', 'tap_camp.people_v', 'tap_camp_backend', 'Mars/Base')$$,
	'22023', 'invalid timezone: ''Mars/Base''', 'an unknown campaign time zone is refused');
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider, allowed_numbers) VALUES ('bad', 'tap_camp.people_v', 'tap_camp_backend', '{0800}')$$,
	'23514', NULL, 'an allow-list entry that is not E.164 is refused');
SELECT throws_ok(
	$$INSERT INTO dialer.campaigns (name, source, provider, schedule, schedule_since, scheduled_by) VALUES ('bad', 'tap_camp.people_v', 'tap_camp_backend', 'daily 25:00', now(), current_user)$$,
	'22023', 'invalid schedule: ''daily 25:00''', 'a schedule written directly is validated too');

SET LOCAL search_path = tap_camp, public;
INSERT INTO dialer.campaigns (name, source, provider, timezone, lookahead_days, skip_called_within_days, payload)
VALUES ('tap', 'people_v', 'tap_camp_backend', 'Asia/Kolkata', 2, 7, '{"purpose": "renewal", "n": 0}');
RESET search_path;
SELECT is((SELECT source FROM dialer.campaigns WHERE name = 'tap'), 'tap_camp.people_v',
	'an unqualified source is resolved with the writer''s search_path and stored schema-qualified');

INSERT INTO dialer.campaigns (name, source, provider) VALUES ('tap_fn', 'tap_camp.not_srf', 'tap_camp_backend');
SELECT is((SELECT source FROM dialer.campaigns WHERE name = 'tap_fn'), 'tap_camp.not_srf()',
	'a set-returning function is accepted and stored as schema.f()');
SELECT results_eq(
	$$SELECT customer_ref, phone, included FROM dialer.campaign_candidates('tap_fn')$$,
	$$VALUES ('a'::text, '+14155550100'::text, true)$$,
	'candidates are read from a function source');
SELECT bag_eq(
	$$SELECT column_name FROM dialer.campaign_source_columns('tap_camp.people_v')$$,
	$$VALUES ('customer_ref'), ('phone'), ('payload'), ('timezone'), ('due_at')$$,
	'campaign_source_columns lists the source''s columns');

CREATE TABLE tap_camp.dated (customer_ref int, phone text, due_at date, timezone varchar);
INSERT INTO tap_camp.dated VALUES (7, '+14155550107', tap_camp.today() + 1, NULL);
INSERT INTO dialer.campaigns (name, source, provider, timezone) VALUES ('tap_dated', 'tap_camp.dated', 'tap_camp_backend', 'Asia/Kolkata');
SELECT results_eq(
	$$SELECT customer_ref, due_at, included FROM dialer.campaign_candidates('tap_dated')$$,
	format($$VALUES ('7'::text, '%s 00:00+05:30'::timestamptz, true)$$, tap_camp.today() + 1),
	'an int customer_ref is read as text and a date due_at as local midnight of the campaign');

-- Every rule, with its reason ----------------------------------------------------------
-- the campaign's own calls: one of today for manual_today, one pending from yesterday
INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts, campaign, customer_ref)
VALUES
	('scheduled', now(), now(), '+919800000021', 'tap_camp_backend', 1, 'tap', 'manual_today'),
	('scheduled', (tap_camp.today() - 1)::timestamp AT TIME ZONE 'Asia/Kolkata',
				  (tap_camp.today() - 1)::timestamp AT TIME ZONE 'Asia/Kolkata',
				  '+919800000017', 'tap_camp_backend', 1, 'tap', 'pending');

SELECT is(tap_camp.reason('ok_today'), 'included', 'a valid candidate due today is included');
SELECT is(tap_camp.reason('ok_nodue'), 'included', 'a candidate without due_at is included');
SELECT is(tap_camp.reason('fmt'), 'included', 'spaces, parentheses and dashes in a phone are ignored');
SELECT is((SELECT phone FROM dialer.campaign_candidates('tap') WHERE customer_ref = 'fmt'), '+919800000003',
	'... and the number is returned in E.164');
SELECT is(tap_camp.reason('badphone'), 'invalid_phone', 'a number without +country code: invalid_phone');
SELECT is(tap_camp.reason(''), 'invalid_customer_ref', 'an empty customer_ref: invalid_customer_ref');
SELECT is(tap_camp.reason('badtz'), 'invalid_timezone', 'an unknown candidate time zone: invalid_timezone');
SELECT is(tap_camp.reason('goodtz'), 'included', 'a candidate with its own valid time zone is included');
SELECT is(tap_camp.reason('badpayload'), 'invalid_payload', 'a payload that is not an object: invalid_payload');
SELECT is(tap_camp.reason('badmode'), 'invalid_payload', 'a backend payload.mode other than DIRECT/BRIEF_START: invalid_payload');
SELECT is(tap_camp.reason('dnc'), 'do_not_call', 'a number on dialer.do_not_call: do_not_call');
SELECT ok((SELECT detail LIKE '%do-not-call%asked not to be called%' FROM dialer.campaign_candidates('tap') WHERE customer_ref = 'dnc'),
	'... and the detail says why it is listed');
SELECT is(tap_camp.reason('past'), 'outside_lookahead', 'due yesterday: outside_lookahead');
SELECT is(tap_camp.reason('far'), 'outside_lookahead', 'due after today + lookahead_days: outside_lookahead');
SELECT is(tap_camp.reason('edge'), 'included', 'due exactly on the last day of the window: included');
SELECT is(tap_camp.reason('far', 5), 'included', 'days overrides lookahead_days');
SELECT is(tap_camp.reason('edge', 0), 'outside_lookahead', 'days => 0 keeps only today');
SELECT is(tap_camp.reason('recent'), 'called_recently', 'a number completed 3 days ago (skip 7 days): called_recently');
SELECT ok((SELECT detail ~ '^call [0-9]+ reached the provider at .* \(completed\), within the last 7 days$'
			 FROM dialer.campaign_candidates('tap') WHERE customer_ref = 'recent'),
	'... and the detail names the call and its status');
SELECT is(tap_camp.reason('old'), 'included', 'a number called 8 days ago (skip 7 days) is included');
SELECT is(tap_camp.reason('canceledcall'), 'included', 'a canceled call does not count as called');
SELECT is(tap_camp.reason('pending'), 'call_pending', 'a call of the campaign still scheduled from yesterday: call_pending');
SELECT is(tap_camp.reason('manual_today'), 'scheduled_today', 'a call of the campaign for the customer today: scheduled_today');
SELECT is(tap_camp.reason('dup'), 'included,duplicate_customer', 'a customer listed twice: the earliest due is kept, the other is duplicate_customer');
SELECT is((SELECT payload->>'which' FROM dialer.campaign_candidates('tap') WHERE customer_ref = 'dup' AND included), 'earlier',
	'... the kept row is the earliest due');
SELECT is(tap_camp.reason('shareA'), 'included', 'of two customers sharing a number the earlier due is included');
SELECT is(tap_camp.reason('shareB'), 'duplicate_phone', '... the other is duplicate_phone');
SELECT is((SELECT count(*)::int FROM dialer.campaign_candidates('tap') WHERE NOT included AND (reason IS NULL OR detail IS NULL)), 0,
	'every excluded candidate has a reason and a detail');
SELECT is((SELECT count(*)::int FROM dialer.campaign_candidates('tap') WHERE included AND (reason IS NOT NULL OR dedupe_key IS NULL)), 0,
	'included candidates have no reason and a dedupe key');
SELECT is((SELECT count(*)::int FROM dialer.campaign_candidates('tap')), (SELECT count(*)::int FROM tap_camp.people),
	'campaign_candidates returns every row of the source');

-- pending_customers: the included ones, in order, limited
SELECT results_eq(
	$$SELECT customer_ref, phone, dedupe_key FROM dialer.pending_customers('tap', NULL, NULL)$$,
	$$SELECT customer_ref, phone, dedupe_key FROM dialer.campaign_candidates('tap') WHERE included$$,
	'pending_customers returns the included candidates in order');
SELECT is((SELECT count(*)::int FROM dialer.pending_customers('tap')), 9,
	'nine of the fixture''s candidates are pending');
SELECT results_eq(
	$$SELECT customer_ref FROM dialer.pending_customers('tap', max_rows => 3)$$,
	$$SELECT customer_ref FROM dialer.campaign_candidates('tap') WHERE included LIMIT 3$$,
	'max_rows limits pending_customers to the first ones');
SELECT results_eq(
	$$SELECT customer_ref FROM dialer.pending_customers('tap') LIMIT 3$$,
	$$SELECT customer_ref FROM tap_camp.people WHERE customer_ref IN ('ok_today', 'shareA', 'old', 'dup', 'canceledcall')
	   ORDER BY due_at, customer_ref LIMIT 3$$,
	'pending customers come earliest due first, then by customer_ref');
SELECT is((SELECT payload FROM dialer.pending_customers('tap') WHERE customer_ref = 'ok_today'),
	'{"purpose": "renewal", "n": 1}'::jsonb, 'the candidate''s payload is merged over the campaign''s');
SELECT is((SELECT dedupe_key FROM dialer.pending_customers('tap') WHERE customer_ref = 'ok_today'),
	'campaign:tap:ok_today:' || to_char(tap_camp.today(), 'YYYY-MM-DD'),
	'the dedupe key is campaign:<name>:<customer_ref>:<local date>');
SELECT is((SELECT timezone FROM dialer.pending_customers('tap') WHERE customer_ref = 'goodtz'), 'Europe/Berlin',
	'a candidate keeps its own time zone');
SELECT is((SELECT timezone FROM dialer.pending_customers('tap') WHERE customer_ref = 'ok_today'), 'Asia/Kolkata',
	'a candidate without one gets the campaign''s');

-- Argument errors
SELECT throws_ok($$SELECT * FROM dialer.pending_customers('nope')$$, '42704', 'invalid campaign: ''nope''',
	'an unknown campaign is an error naming it');
SELECT throws_ok($$SELECT * FROM dialer.pending_customers(NULL)$$, '22004', 'invalid campaign: NULL',
	'a NULL campaign is an error');
SELECT throws_ok($$SELECT * FROM dialer.pending_customers('tap', 400)$$, '22023', 'invalid days: ''400''',
	'days out of range is an error');
SELECT throws_ok($$SELECT * FROM dialer.pending_customers('tap', NULL, -1)$$, '22023', 'invalid max_rows: ''-1''',
	'a negative max_rows is an error');
SELECT throws_ok($$SELECT dialer.run_campaign('tap', -1)$$, '22023', 'invalid max_calls: ''-1''',
	'a negative max_calls is an error');
SELECT throws_ok($$SELECT dialer.run_campaign('nope')$$, '42704', 'invalid campaign: ''nope''',
	'run_campaign of an unknown campaign is an error');

-- Switchable rules ---------------------------------------------------------------------
CREATE TEMP TABLE tap_pending AS SELECT * FROM dialer.pending_customers('tap', NULL, NULL);
CREATE FUNCTION tap_camp.used_today() RETURNS int LANGUAGE sql AS $$
	SELECT count(*)::int FROM dialer.scheduled_calls
	 WHERE campaign = 'tap' AND status NOT IN ('canceled', 'skipped')
	   AND run_at >= tap_camp.today()::timestamp AT TIME ZONE 'Asia/Kolkata'
	   AND run_at < (tap_camp.today() + 1)::timestamp AT TIME ZONE 'Asia/Kolkata' $$;
-- (no savepoints: pgTAP keeps its count in tables a ROLLBACK TO would undo)
CREATE FUNCTION tap_camp.reset() RETURNS void LANGUAGE sql AS $$
	DELETE FROM dialer.scheduled_calls WHERE campaign = 'tap' AND dedupe_key IS NOT NULL;
	UPDATE dialer.scheduled_calls SET status = 'scheduled' WHERE campaign = 'tap';
	UPDATE dialer.campaigns
	   SET max_calls_per_day = NULL, allowed_numbers = NULL, enabled = true, skip_called_within_days = 7,
		   once_per_day = true, max_attempts = NULL, priority = 0
	 WHERE name = 'tap';
$$;
UPDATE dialer.campaigns SET max_calls_per_day = 4 WHERE name = 'tap';
SELECT is((SELECT count(*)::int FROM dialer.campaign_candidates('tap') WHERE included), 4 - tap_camp.used_today(),
	'max_calls_per_day 4: four minus the calls of the campaign due today are included');
SELECT results_eq(
	$$SELECT customer_ref FROM dialer.campaign_candidates('tap') WHERE included$$,
	$$SELECT customer_ref FROM tap_pending LIMIT 4 - tap_camp.used_today()$$,
	'... the first ones in order');
SELECT is((SELECT count(*)::int FROM dialer.campaign_candidates('tap') WHERE reason = 'over_daily_cap'),
	(SELECT count(*)::int FROM tap_pending) - (4 - tap_camp.used_today()),
	'... the others are over_daily_cap');
-- a call of the campaign due today uses the cap (manual_today's); a canceled one does not
UPDATE dialer.scheduled_calls SET status = 'canceled' WHERE customer_ref = 'manual_today';
SELECT is((SELECT count(*)::int FROM dialer.campaign_candidates('tap') WHERE included), 4,
	'a canceled call of today does not use the cap');
UPDATE dialer.scheduled_calls SET status = 'scheduled' WHERE customer_ref = 'manual_today';
UPDATE dialer.campaigns SET max_calls_per_day = 1 WHERE name = 'tap';
SELECT is((SELECT count(*)::int FROM dialer.campaign_candidates('tap') WHERE included), 0,
	'a cap of 1 already used by today''s call leaves nobody');
SELECT tap_camp.reset() \g /dev/null

UPDATE dialer.campaigns SET allowed_numbers = '{+919800000001,+919800000013}' WHERE name = 'tap';
SELECT is(tap_camp.reason('ok_today'), 'included', 'pilot allow-list: a listed number is included');
SELECT is(tap_camp.reason('old'), 'not_allowed', '... an unlisted one is not_allowed');
SELECT is(tap_camp.reason('recent'), 'called_recently', '... a listed number still obeys the other rules');
SELECT tap_camp.reset() \g /dev/null

UPDATE dialer.campaigns SET enabled = false WHERE name = 'tap';
SELECT is((SELECT string_agg(DISTINCT reason, ',') FROM dialer.campaign_candidates('tap')), 'campaign_disabled',
	'a disabled campaign leaves everyone out: campaign_disabled');
SELECT is(dialer.run_campaign('tap'), 0, 'run_campaign of a disabled campaign enqueues nothing');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap'), 2, '... and writes nothing');
SELECT tap_camp.reset() \g /dev/null

UPDATE dialer.campaigns SET skip_called_within_days = NULL WHERE name = 'tap';
SELECT is(tap_camp.reason('recent'), 'included', 'without skip_called_within_days a recent call does not matter');
SELECT tap_camp.reset() \g /dev/null

-- statuses that count as "called": any that reached (or may have reached) the provider
CREATE TEMP TABLE tap_statuses AS
SELECT s AS status
  FROM unnest(ARRAY['dispatching', 'dialing', 'completed', 'no_answer', 'busy', 'failed', 'unknown',
					'scheduled', 'canceled', 'skipped', 'expired']) s;
CREATE FUNCTION tap_camp.reason_with_status(st text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
	UPDATE dialer.scheduled_calls SET status = st, campaign = 'other'
	 WHERE to_number = '+919800000013';
	r := tap_camp.reason('recent');
	UPDATE dialer.scheduled_calls SET status = 'completed' WHERE to_number = '+919800000013';
	RETURN r;
END $$;
SELECT is(
	(SELECT string_agg(status, ',' ORDER BY status) FROM tap_statuses WHERE tap_camp.reason_with_status(status) = 'called_recently'),
	'busy,completed,dialing,dispatching,failed,no_answer,unknown',
	'called_recently counts dispatching, dialing, completed, no_answer, busy, failed and unknown calls, not the others');

-- run_campaign -------------------------------------------------------------------------
SELECT is(dialer.run_campaign('tap'), (SELECT count(*)::int FROM tap_pending),
	'run_campaign enqueues every pending customer and says how many');
SELECT bag_eq(
	$$SELECT customer_ref, to_number, dedupe_key, payload, timezone FROM dialer.scheduled_calls
	   WHERE campaign = 'tap' AND dedupe_key IS NOT NULL$$,
	$$SELECT customer_ref, phone, dedupe_key, payload, timezone FROM tap_pending$$,
	'the calls carry the campaign, customer_ref, number, dedupe key, merged payload and time zone');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap' AND dedupe_key IS NOT NULL
			 AND (provider <> 'tap_camp_backend' OR status <> 'scheduled' OR mode <> 'DIRECT' OR run_at <> now())), 0,
	'... through the campaign''s provider, scheduled now');
SELECT is(dialer.run_campaign('tap'), 0, 'running it again enqueues nobody');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap'), (SELECT count(*)::int FROM tap_pending) + 2,
	'... and writes nothing');
SELECT is((SELECT count(DISTINCT c.customer_ref)::int FROM dialer.campaign_candidates('tap') c JOIN tap_pending p USING (customer_ref)
			WHERE c.reason = 'scheduled_today'), (SELECT count(DISTINCT customer_ref)::int FROM tap_pending),
	'after a run every enqueued customer is scheduled_today');
SELECT is((SELECT count(*)::int FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
			WHERE c.campaign = 'tap' AND e.event = 'enqueued'), (SELECT count(*)::int FROM tap_pending),
	'each enqueued call has its enqueued event');
SELECT tap_camp.reset() \g /dev/null

UPDATE dialer.campaigns SET max_calls_per_day = 5, max_attempts = 4, priority = 7 WHERE name = 'tap';
SELECT is(dialer.run_campaign('tap', 2), 2, 'max_calls 2 enqueues two');
SELECT is(dialer.run_campaign('tap', 0), 0, 'max_calls 0 enqueues none');
SELECT 5 - tap_camp.used_today() AS cap_left \gset
SELECT is(dialer.run_campaign('tap'), :cap_left, 'the next run fills the daily cap');
SELECT is(dialer.run_campaign('tap'), 0, 'then nothing more today');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap'
			 AND status NOT IN ('canceled', 'skipped') AND run_at >= tap_camp.today()::timestamp AT TIME ZONE 'Asia/Kolkata'), 5,
	'the campaign has exactly max_calls_per_day calls due today');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap' AND dedupe_key IS NOT NULL
			AND (max_attempts <> 4 OR priority <> 7)), 0,
	'calls get the campaign''s max_attempts and priority');
SELECT tap_camp.reset() \g /dev/null

-- once_per_day off: the key carries the minute, a pending call still blocks
UPDATE dialer.campaigns SET once_per_day = false WHERE name = 'tap';
SELECT ok((SELECT bool_and(dedupe_key ~ ('^campaign:tap:.*:' || to_char(now() AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD"T"HH24:MI') || '$'))
			 FROM dialer.pending_customers('tap')),
	'once_per_day off: the dedupe key carries the local date and minute');
SELECT is(tap_camp.reason('manual_today'), 'call_pending', '... a call of today still pending is call_pending');
SELECT cmp_ok(dialer.run_campaign('tap'), '>', 0, 'once_per_day off: a run enqueues');
SELECT is(dialer.run_campaign('tap'), 0, '... and a second run in the same minute enqueues nobody');
SELECT tap_camp.reset() \g /dev/null

-- a broken source is a clear error at run time
DROP VIEW tap_camp.people_v;
SELECT throws_ok($$SELECT dialer.run_campaign('tap')$$, '42P01', NULL,
	'run_campaign of a campaign whose source was dropped: 42P01');
SELECT lives_ok($$UPDATE dialer.campaigns SET enabled = false WHERE name = 'tap'$$,
	'... the campaign can still be changed (the source is checked only when it changes)');
CREATE VIEW tap_camp.people_v AS SELECT * FROM tap_camp.people;
SELECT tap_camp.reset() \g /dev/null

-- Privileges ---------------------------------------------------------------------------
CREATE ROLE tap_camp_user;
SELECT count(*) AS n_pending FROM tap_pending \gset
SELECT lives_ok($$SELECT dialer.grant_campaigns('tap_camp_user')$$, 'grant_campaigns grants a role');
SELECT throws_ok($$SELECT dialer.grant_campaigns('tap_no_such_role')$$, '42704', NULL,
	'grant_campaigns of an unknown role is an error');
SET LOCAL ROLE tap_camp_user;
SELECT throws_ok($$SELECT * FROM dialer.campaign_candidates('tap')$$, '42501', NULL,
	'a role that cannot read the source cannot read it through a campaign');
SELECT throws_ok($$UPDATE dialer.campaigns SET enabled = false WHERE name = 'tap'$$, '42501', NULL,
	'without manage a role cannot change campaigns');
RESET ROLE;
GRANT USAGE ON SCHEMA tap_camp TO tap_camp_user;
GRANT SELECT ON tap_camp.people_v TO tap_camp_user;
SET LOCAL ROLE tap_camp_user;
SELECT is((SELECT count(*)::int FROM dialer.pending_customers('tap')), :n_pending,
	'with SELECT on the source the role sees the pending customers');
SELECT is(dialer.run_campaign('tap'), :n_pending, '... and can run the campaign');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE campaign = 'tap' AND dedupe_key IS NOT NULL AND customer_ref IS NOT NULL),
	(SELECT count(*)::int FROM tap_pending), '... whose calls carry their customer_ref');
SELECT tap_camp.reset() \g /dev/null

SELECT * FROM finish();
ROLLBACK;
