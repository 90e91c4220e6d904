-- Calling policies (issue 12): time zones from the number (libphonenumber's data), presets
-- US-TCPA, US-FL and FR, intersection of policies, blackout days, per-recipient caps, silence
-- after refusal, unknown zones, all decided by dialer.compliance_verdict() at FIXED instants;
-- then the dispatch path dialer.claim_calls() (which uses now()) with rules that do not
-- depend on the clock (caps, unknown zone) or are built around now().  Runs in dialer_tap;
-- everything is rolled back.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = error;

BEGIN;
SELECT plan(86);

-- a call to number that reached the provider (attempt with a provider call id) at instant at
CREATE FUNCTION pg_temp.reached(number text, at timestamptz, campaign text DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
	WITH c AS (
		INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts,
											attempts, campaign, finished_at)
		VALUES ('completed', at - interval '1 minute', at, number, 'tap_comp', 1, 1, campaign, at + interval '2 minutes')
		RETURNING id)
	INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id)
	SELECT c.id, 1, at, 'CA' || md5(c.id::text) FROM c;
$$;
-- a verdict as "decision policy rule next_opening"
CREATE FUNCTION pg_temp.v(number text, at timestamptz, tz text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
	SELECT concat_ws(' ', v.decision, v.policy, v.rule, v.next_opening AT TIME ZONE 'UTC')
	  FROM dialer.compliance_verdict(number, at, tz, window_start => '00:00', window_end => '24:00') v;
$$;
INSERT INTO dialer.providers (name, kind, base_url, account_sid, enabled)
VALUES ('tap_comp', 'twilio', 'http://127.0.0.1:9', 'AC0123456789abcdef0123456789abcdef', false);

-- Time zones from the number: libphonenumber's data, longest prefix ---------------------------
SELECT ok((SELECT count(*) FROM dialer.number_timezones) > 3000, 'libphonenumber''s prefix map is loaded (over 3000 prefixes)');
SELECT is(dialer.number_timezones('+12125551234'), '{America/New_York}', 'New York +1 212');
SELECT is(dialer.number_timezones('+12135551234'), '{America/Los_Angeles}', 'Los Angeles +1 213');
SELECT is(dialer.number_timezones('+13105551234'), '{America/Los_Angeles}', 'Los Angeles +1 310');
SELECT is(dialer.number_timezones('+18085551234'), '{Pacific/Honolulu}', 'Honolulu +1 808');
SELECT ok('Europe/London' = ANY (dialer.number_timezones('+442071234567')), 'London +44 20 (UK prefix: London and the Crown dependencies)');
SELECT is(dialer.number_timezones('+61731234567'), '{Australia/Brisbane}', 'Brisbane +61 7 31 (longer prefix than +61 7, which is Sydney)');
SELECT is(dialer.number_timezones('+33142685300'), '{Europe/Paris}', 'Paris +33 1');
SELECT is(dialer.number_timezones('+12083012345'), '{America/Boise,America/Los_Angeles}', 'a multi-zone prefix: +1 208 30 (Idaho)');
SELECT is(dialer.number_timezones('+80012345678'), NULL, 'an unknown prefix (+800 international freephone) has no zone');
-- the lookup keeps the map in memory: a change is seen at the next command, and a rolled-back one is undone
SAVEPOINT map_change;
INSERT INTO dialer.number_timezones (prefix, zones) VALUES ('80012', '{Asia/Tokyo}');
UPDATE dialer.number_timezones SET zones = '{Europe/Paris,Europe/Brussels}' WHERE prefix = '1212';
SELECT is(dialer.number_timezones('+80012345678'), '{Asia/Tokyo}', 'a prefix added to the map is looked up at the next command');
SELECT is(dialer.number_timezones('+12125551234'), '{Europe/Paris,Europe/Brussels}', 'a prefix changed in the map too');
SELECT is((SELECT changed_in FROM dialer.cached_table_versions WHERE table_name = 'number_timezones'),
	pg_current_xact_id()::text::bigint, 'a change to the map writes its version: this transaction');
ROLLBACK TO SAVEPOINT map_change;
SELECT is(dialer.number_timezones('+80012345678'), NULL, 'a rolled-back addition is gone from the lookup');
-- the copy's version is read once per snapshot, not once per lookup
CREATE TEMP TABLE version_reads AS
SELECT pg_stat_get_xact_numscans('dialer.cached_table_versions'::regclass)
	   + pg_stat_get_xact_numscans('dialer.cached_table_versions_pkey'::regclass) AS before;
SELECT is((SELECT count(dialer.number_timezones('+1212555' || lpad(g::text, 4, '0'))) FROM generate_series(1, 1000) g),
	1000::bigint, '1,000 lookups in one statement');
SELECT cmp_ok((SELECT pg_stat_get_xact_numscans('dialer.cached_table_versions'::regclass)
					  + pg_stat_get_xact_numscans('dialer.cached_table_versions_pkey'::regclass) - before FROM version_reads),
	'<=', 1::bigint, 'read the map''s version at most once');
SELECT is(dialer.number_timezones('+12125551234'), '{America/New_York}', 'a rolled-back change too');

-- Presets are templates ---------------------------------------------------------------------
SELECT is((SELECT string_agg(name, ',' ORDER BY name) FROM dialer.calling_policies WHERE builtin AND NOT enabled),
		  'preset:FR,preset:US-FL,preset:US-TCPA', 'presets FR, US-FL and US-TCPA are shipped, disabled');
SELECT is((SELECT count(*)::int FROM dialer.blackout_dates WHERE calendar = 'FR' AND day BETWEEN '2026-01-01' AND '2028-12-31'),
		  33, 'French public holidays 2026-2028: 11 a year');
SELECT is(pg_temp.v('+12135550100', '2026-01-12 13:00Z'), 'allow', 'no policy enabled: allowed (only the general window applies)');
SELECT throws_ok($$SELECT dialer.use_preset('XX')$$, '22023', 'invalid preset: ''XX''', 'an unknown preset is refused');
SELECT throws_ok($$UPDATE dialer.calling_policies SET enabled = true WHERE name = 'preset:FR'$$, '23514', NULL,
				 'a preset itself cannot be enabled');
SELECT is(dialer.use_preset('US-TCPA'), 'US-TCPA', 'use_preset(US-TCPA) makes an enabled policy');

-- US-TCPA: 08:00-21:00 at the called party's location ----------------------------------------
SELECT is(pg_temp.v('+12135550100', '2026-01-12 13:00Z'), 'park US-TCPA window 2026-01-12 16:00:00',
		  'Los Angeles at 13:00 UTC (05:00 PST, 08:00 in New York): parked until 16:00 UTC = 08:00 Pacific');
SELECT is(pg_temp.v('+13105550100', '2026-07-13 13:00Z'), 'park US-TCPA window 2026-07-13 15:00:00',
		  'Los Angeles in summer: until 15:00 UTC = 08:00 PDT');
SELECT is(dialer.next_opening('+12135550100', '2026-01-12 13:00Z'), '2026-01-12 16:00Z'::timestamptz,
		  'dialer.next_opening gives the same instant');
SELECT is(pg_temp.v('+12125550100', '2026-01-12 13:00Z'), 'allow', 'New York at 13:00 UTC (08:00 EST): allowed');
SELECT is(pg_temp.v('+12125550100', '2026-01-13 02:00Z'), 'park US-TCPA window 2026-01-13 13:00:00',
		  'New York at 21:00 EST: parked until 08:00 EST');
SELECT is(pg_temp.v('+18085550100', '2026-01-12 17:00Z'), 'park US-TCPA window 2026-01-12 18:00:00',
		  'Honolulu at 07:00 HST: parked until 08:00 HST');
SELECT is(pg_temp.v('+12135550100', '2026-01-12 13:00Z', 'America/New_York'), 'allow',
		  'an explicit time zone wins over the number''s');
SELECT is(pg_temp.v('+12083012345', '2026-01-12 15:30Z'), 'park US-TCPA window 2026-01-12 16:00:00',
		  'multi-zone: 08:30 in Boise but 07:30 in Los Angeles: waits for 08:00 Los Angeles');
SELECT is(pg_temp.v('+12083012345', '2026-01-13 04:30Z'), 'park US-TCPA window 2026-01-13 16:00:00',
		  'multi-zone: 20:30 in Los Angeles but 21:30 in Boise: closed until both are open');
SELECT is((dialer.compliance_verdict('+12083012345', '2026-01-13 04:30Z')).reason,
		  'policy US-TCPA, rule window: no window of the policy is open on Monday 21:30 local time in America/Boise; next opening 2026-01-13 16:00:00+00',
		  'the reason names the policy, the rule and the zone that closed it');
SELECT is(pg_temp.v('+12135550100', '2026-01-12 17:00Z'), 'allow', 'Los Angeles at 09:00 PST: allowed');
SELECT is(pg_temp.v('+442071234567', '2026-01-12 03:00Z'), 'allow', 'US-TCPA does not apply to a London number');

-- US-FL on top of US-TCPA: the intersection ---------------------------------------------------
SELECT is(dialer.use_preset('US-FL'), 'US-FL', 'use_preset(US-FL)');
SELECT is((dialer.compliance_verdict('+13055550100', '2026-01-12 15:00Z')).policies, '{US-FL,US-TCPA}',
		  'a Miami number (+1 305) is under both US-FL and US-TCPA');
SELECT is(pg_temp.v('+13055550100', '2026-01-13 01:30Z'), 'park US-FL window 2026-01-13 13:00:00',
		  'Miami at 20:30 EST: open under US-TCPA, closed under US-FL: parked (intersection, not union)');
SELECT is(pg_temp.v('+12125550100', '2026-01-13 01:30Z'), 'allow', 'New York at 20:30 EST: US-FL does not apply');
SELECT pg_temp.reached('+13055550100', '2026-01-12 14:00Z');
SELECT pg_temp.reached('+13055550100', '2026-01-12 15:00Z', 'other campaign');
SELECT is(pg_temp.v('+13055550100', '2026-01-12 16:00Z'), 'allow', 'Florida: 2 calls in 24 hours, a 3rd is allowed');
SELECT pg_temp.reached('+13055550100', '2026-01-12 16:00Z');
SELECT is(pg_temp.v('+13055550100', '2026-01-12 18:00Z'), 'refuse US-FL cap 2026-01-13 14:00:00',
		  'Florida: a 4th call within 24 hours is refused (calls of every campaign count); the cap frees 24 h after the oldest');
SELECT is((dialer.compliance_verdict('+13055550100', '2026-01-12 18:00Z')).reason,
		  '+13055550100 already had 3 calls within 24:00:00 (placed or in progress): policy US-FL allows at most 3', 'its reason');
SELECT is(pg_temp.v('+13055550100', '2026-01-13 14:00Z'), 'allow', 'Florida: 24 hours after the first call, a call is allowed again');
INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts, finished_at)
VALUES ('failed', '2026-01-12 16:59Z', '2026-01-12 17:00Z', '+13055550100', 'tap_comp', 1, '2026-01-12 17:01Z');
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, http_status)
SELECT max(id), 1, '2026-01-12 17:00Z', 500 FROM dialer.scheduled_calls WHERE status = 'failed' AND to_number = '+13055550100';
SELECT is(pg_temp.v('+13055550100', '2026-01-13 14:00Z'), 'allow', 'an attempt the provider refused (no call id) does not count');

-- FR: Mon-Fri 10-13 and 14-20 Paris time, no public holidays, 4 calls per 30 days -----------
SELECT is(dialer.use_preset('FR'), 'FR', 'use_preset(FR)');
SELECT is(pg_temp.v('+33142685300', '2026-03-10 10:00Z'), 'allow', 'Paris, Tuesday 11:00: allowed');
SELECT is(pg_temp.v('+33142685300', '2026-03-10 12:30Z'), 'park FR window 2026-03-10 13:00:00',
		  'Paris, Tuesday 13:30: parked until 14:00 Paris');
SELECT is(pg_temp.v('+33142685300', '2026-03-10 19:30Z'), 'park FR window 2026-03-11 09:00:00',
		  'Paris, Tuesday 20:30: parked until Wednesday 10:00');
SELECT is(pg_temp.v('+33142685300', '2026-03-07 10:00Z'), 'park FR window 2026-03-09 09:00:00',
		  'Paris, Saturday 11:00: parked until Monday 10:00');
SELECT is(pg_temp.v('+33142685300', '2026-03-08 15:00Z'), 'park FR window 2026-03-09 09:00:00',
		  'Paris, Sunday 16:00: parked until Monday 10:00');
SELECT is(pg_temp.v('+33142685300', '2026-05-01 09:00Z'), 'park FR blackout 2026-05-04 08:00:00',
		  'Paris, Friday 1 May 2026 (Fête du Travail) 11:00 CEST: parked until Monday 4 May 10:00 CEST');
SELECT is((dialer.compliance_verdict('+33142685300', '2026-05-01 09:00Z')).reason,
		  'policy FR, rule blackout: Fête du Travail 2026-05-01 (calendar FR) in Europe/Paris; next opening 2026-05-04 08:00:00+00',
		  'the reason names the holiday');
SELECT is(pg_temp.v('+33142685300', '2026-05-13 18:30Z'), 'park FR window 2026-05-15 08:00:00',
		  'Paris, Wednesday 20:30 before Ascension: next opening Friday 10:00, not Thursday (holiday)');
SELECT is(pg_temp.v('+33142685300', '2027-12-24 18:30Z'), 'allow', 'Paris, Friday 24 Dec 2027 19:30 CET: allowed');
SELECT is(pg_temp.v('+33142685300', '2027-12-24 19:00Z'), 'park FR window 2027-12-27 09:00:00',
		  'Paris, Friday 24 Dec 2027 20:00 CET (the end), then Saturday 25 (Noël) and Sunday: Monday 27 10:00 CET');
SELECT is(pg_temp.v('+33142685300', '2026-12-25 10:00Z'), 'park FR blackout 2026-12-28 09:00:00',
		  'Paris, Friday 25 Dec 2026 (Noël) 11:00: Monday 28 10:00');
SELECT is(pg_temp.v('+33142685300', '2026-03-07 10:00Z', 'America/Martinique'), 'park FR window 2026-03-09 14:00:00',
		  'FR with an explicit zone: the windows are read in that zone');
-- the window and blackout rules keep the policies' windows and blackout days in memory (C): a
-- change to either is seen at the next command, and a rolled-back one is undone
SAVEPOINT times_change;
UPDATE dialer.policy_windows SET ends = '12:00' WHERE policy = 'FR' AND starts = '10:00';
SELECT is(pg_temp.v('+33142685300', '2026-03-10 11:30Z'), 'park FR window 2026-03-10 13:00:00',
		  'a window shortened (10-12) is applied at the next command: Paris, Tuesday 12:30 waits for 14:00');
INSERT INTO dialer.blackout_dates (calendar, day, name) VALUES ('FR', '2026-03-10', 'Jour de test');
SELECT is((dialer.compliance_verdict('+33142685300', '2026-03-10 13:30Z')).reason,
		  'policy FR, rule blackout: Jour de test 2026-03-10 (calendar FR) in Europe/Paris; next opening 2026-03-11 09:00:00+00',
		  'a blackout day added is applied at the next command, and named');
UPDATE dialer.calling_policies SET blackout_calendars = '{}' WHERE name = 'FR';
SELECT is(pg_temp.v('+33142685300', '2026-03-10 13:30Z'), 'allow', 'a calendar removed from the policy no longer closes its days');
ROLLBACK TO SAVEPOINT times_change;
SELECT is(pg_temp.v('+33142685300', '2026-03-10 11:30Z'), 'allow', 'rolled back: the window is 10-13 again');
SELECT is(pg_temp.v('+33142685300', '2026-05-01 09:00Z'), 'park FR blackout 2026-05-04 08:00:00',
		  'rolled back: the calendar is the policy''s again');
SELECT is(pg_temp.v('+33142685300', '2026-03-10 13:30Z'), 'allow', 'rolled back: the added day is gone');
SELECT pg_temp.reached('+33142685300', d) FROM unnest(ARRAY['2026-02-10 10:00Z', '2026-02-17 10:00Z', '2026-02-24 10:00Z']::timestamptz[]) d;
SELECT is(pg_temp.v('+33142685300', '2026-03-10 10:00Z'), 'allow', 'France: a 4th call within 30 days is allowed');
SELECT pg_temp.reached('+33142685300', '2026-03-10 10:00Z');
SELECT is(pg_temp.v('+33142685300', '2026-03-11 10:00Z'), 'refuse FR cap 2026-03-12 10:00:00',
		  'France: the 5th call within 30 days is refused; allowed again 30 days after the oldest');
SELECT is((dialer.compliance_verdict('+33142685300', '2026-03-11 10:00Z')).reason,
		  '+33142685300 already had 4 calls within 30 days (placed or in progress): policy FR allows at most 4', '... with its reason');
INSERT INTO dialer.refusals (number, refused_at, source) VALUES ('+33142685301', '2026-03-02 10:00Z', 'call outcome');
SELECT is(pg_temp.v('+33142685301', '2026-04-10 10:00Z'), 'refuse FR refusal_silence 2026-05-01 10:00:00',
		  'France: 39 days after a refusal, refused (60 days of silence)');
SELECT is(pg_temp.v('+33142685301', '2026-05-04 10:00Z'), 'allow', 'France: 63 days after the refusal, allowed');

-- Unknown zone: never dialled when a policy applies ------------------------------------------
INSERT INTO dialer.calling_policies (name, description) VALUES ('house', 'every call, any time (server default)');
SELECT is(pg_temp.v('+80012345678', '2026-01-12 12:00Z'), 'refuse house unknown_timezone',
		  'a number of unknown zone under a policy: refused (fail closed)');
SELECT ok((dialer.compliance_verdict('+80012345678', '2026-01-12 12:00Z')).reason LIKE '%time zone cannot be known%',
		  '... and the reason says so');
SELECT is(pg_temp.v('+80012345678', '2026-01-12 12:00Z', 'Europe/Berlin'), 'allow', '... unless the call names a zone');

-- Consent ledger --------------------------------------------------------------------------
INSERT INTO dialer.calling_policies (name, campaigns, require_consent) VALUES ('consented', '{tap_consent}', true);
CREATE FUNCTION pg_temp.c(number text, at timestamptz, purpose text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
	SELECT concat_ws(' ', v.decision, v.policy, v.rule)
	  FROM dialer.compliance_verdict(number, at, 'Europe/Berlin', 'tap_consent', 'tap_comp', purpose, '00:00', '24:00') v;
$$;
SELECT is(pg_temp.c('+4930123456', '2026-01-12 12:00Z'), 'refuse consented consent', 'a policy requiring consent: no consent, refused');
INSERT INTO dialer.consents (number, purpose, granted_at, source)
VALUES ('+4930123456', 'tap_consent', '2026-01-01Z', 'web form https://example.com/optin');
SELECT is(pg_temp.c('+4930123456', '2026-01-12 12:00Z'), 'allow', 'consent for the campaign given: allowed');
SELECT is(pg_temp.c('+4930123456', '2026-01-12 12:00Z', 'billing'), 'refuse consented consent', 'consent is per purpose: another purpose is refused');
UPDATE dialer.consents SET revoked_at = '2026-01-10Z', revoked_via = 'SMS STOP' WHERE number = '+4930123456';
SELECT is(pg_temp.c('+4930123456', '2026-01-09 12:00Z'), 'allow', 'before the revocation: allowed');
SELECT is((dialer.compliance_verdict('+4930123456', '2026-01-12 12:00Z', 'Europe/Berlin', 'tap_consent', 'tap_comp')).reason,
		  'policy consented requires consent and +4930123456 has none in force for purpose tap_consent (revoked 2026-01-10 00:00:00+00 via SMS STOP)',
		  'after the revocation: refused, the reason says when and how it was revoked');

-- Dispatch: dialer.claim_calls (now()) --------------------------------------------------------
-- a call scheduled while consent was in force, then consent revoked: skipped at dispatch
INSERT INTO dialer.consents (number, purpose, granted_at, source) VALUES ('+4930123457', 'tap_consent', now() - interval '1 day', 'contract');
INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload, campaign, timezone)
VALUES (now() - interval '1 minute', now() - interval '1 minute', '+4930123457', 'tap_comp', 1, '{"message": "c"}', 'tap_consent', 'UTC');
UPDATE dialer.consents SET revoked_at = now(), revoked_via = 'call' WHERE number = '+4930123457';
INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload)
VALUES (now() - interval '1 minute', now() - interval '1 minute', '+80012345670', 'tap_comp', 1, '{"message": "u"}');
-- four French calls reached the provider in the last 30 days: the fifth is refused whatever the time
SELECT pg_temp.reached('+33142685399', now() - d * interval '1 day') FROM generate_series(1, 4) d;
INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload)
VALUES (now() - interval '1 minute', now() - interval '1 minute', '+33142685399', 'tap_comp', 1, '{"message": "5th"}');
-- a policy whose only window opens in 12 hours, for one campaign, with an explicit zone on the call
INSERT INTO dialer.calling_policies (name, campaigns) VALUES ('later', '{tap_later}');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
VALUES ('later', '{1,2,3,4,5,6,7}', date_trunc('hour', (now() AT TIME ZONE 'UTC') + interval '12 hours')::time,
		date_trunc('hour', (now() AT TIME ZONE 'UTC') + interval '12 hours')::time + interval '30 minutes');
INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload, campaign, timezone)
VALUES (now() - interval '1 minute', now() - interval '1 minute', '+442071234567', 'tap_comp', 1, '{"message": "l"}', 'tap_later', 'UTC');
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('tap_comp', 10, 'UTC', '00:00', '24:00', NULL)), 0,
		  'claim_calls: none of the four is dialled');
SELECT results_eq($$SELECT c.status, e.detail->>'policy', e.detail->>'rule' FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
					 WHERE c.to_number = '+4930123457' AND e.event = 'skipped'$$,
	$$VALUES ('skipped'::text, 'consented'::text, 'consent'::text)$$, 'a revocation skips a call already scheduled (at dispatch)');
SELECT results_eq($$SELECT status, last_error FROM dialer.scheduled_calls WHERE to_number = '+80012345670'$$,
	$$VALUES ('skipped'::text, 'the recipient''s time zone cannot be known from +80012345670 (not in libphonenumber''s data) and neither the call nor its campaign names one: not dialled under policy house'::text)$$,
	'unknown zone: skipped at dispatch, the reason in last_error');
SELECT results_eq($$SELECT e.detail->>'policy', e.detail->>'rule', e.to_status FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
					 WHERE c.to_number = '+80012345670' AND e.event = 'skipped'$$,
	$$VALUES ('house'::text, 'unknown_timezone'::text, 'skipped'::text)$$, '... its skipped event names policy and rule');
SELECT results_eq($$SELECT c.status, e.detail->>'policy', e.detail->>'rule' FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
					 WHERE c.to_number = '+33142685399' AND c.status <> 'completed' AND e.event = 'skipped'$$,
	$$VALUES ('skipped'::text, 'FR'::text, 'cap'::text)$$, 'the 5th French call in 30 days is skipped at dispatch: policy FR, rule cap');
SELECT results_eq($$SELECT c.status, c.next_attempt_at = date_trunc('hour', now() + interval '12 hours'), e.detail->>'policy', e.detail->>'rule'
					  FROM dialer.call_events e JOIN dialer.scheduled_calls c ON c.id = e.call_id
					 WHERE c.campaign = 'tap_later' AND e.event = 'window_wait'$$,
	$$VALUES ('scheduled'::text, true, 'later'::text, 'window'::text)$$,
	'a call outside its campaign policy''s window is parked until the window opens (window_wait names policy and rule)');
SELECT is((SELECT count(*)::int FROM dialer.contact_history('+80012345670') WHERE rule = 'unknown_timezone'), 1,
		  'dialer.contact_history shows the decision with its rule');
-- a policy change re-evaluates the calls it parked: removing the window lets the call go
INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload, attempts)
VALUES (now() - interval '1 hour', now() + interval '1 hour', '+442071234500', 'tap_comp', 3, '{"message": "retry"}', 1);
DELETE FROM dialer.policy_windows WHERE policy = 'later';
SELECT is((SELECT next_attempt_at = now() FROM dialer.scheduled_calls WHERE campaign = 'tap_later'), true,
		  'after a policy change, the call it parked is due again at once');
SELECT is((SELECT next_attempt_at - now() FROM dialer.scheduled_calls WHERE to_number = '+442071234500'), interval '1 hour',
		  '... and a call waiting for its retry was not moved');
SELECT is((SELECT string_agg(to_number, ',') FROM dialer.claim_calls('tap_comp', 10, 'UTC', '00:00', '24:00', NULL)), '+442071234567',
		  '... the claim re-evaluates it under the new rules and dials it');

SELECT * FROM finish();
ROLLBACK;
