-- Compliance, the ledger and the proof (issue 12): the do-not-call ledger (request time,
-- channel, effective time), dialer.compliance_audit() over a period (calls made, parked,
-- skipped and expired by the real claim, dialer.claim_calls, with their zone, local time,
-- policy, rule and the consent relied on), and the campaign candidates a calling policy
-- refuses or holds (reason calling_policy, detail naming policy and rule).
-- Runs in dialer_tap (no worker there); everything is rolled back.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = error;

BEGIN;
SELECT plan(36);

INSERT INTO dialer.providers (name, kind, base_url, enabled)
VALUES ('tap_audit', 'backend', 'http://127.0.0.1:9', false);

-- The do-not-call ledger -----------------------------------------------------------------
SELECT has_column('dialer', 'do_not_call', 'requested_at', 'do_not_call keeps when the request was made');
SELECT has_column('dialer', 'do_not_call', 'source', '... from where');
SELECT has_column('dialer', 'do_not_call', 'effective_at', '... and when it took effect');
INSERT INTO dialer.do_not_call (number, reason) VALUES ('+12125550190', 'plain insert');
SELECT results_eq($$SELECT requested_at = now(), effective_at = now(), added_at = now(), source IS NULL
					  FROM dialer.do_not_call WHERE number = '+12125550190'$$,
	$$VALUES (true, true, true, true)$$, 'an insert naming only number and reason still works: requested and effective now');
SELECT throws_ok($$INSERT INTO dialer.do_not_call (number, requested_at, effective_at)
				   VALUES ('+12125550191', now(), now() - interval '1 day')$$, '23514', NULL,
	'an entry cannot take effect before it was requested');
SELECT throws_ok($$INSERT INTO dialer.do_not_call (number, requested_at, effective_at)
				   VALUES ('+12125550191', now(), now() + interval '1 day')$$, '23514', NULL,
	'nor later than it is stored (it is honoured from the moment it is stored)');

-- Calls decided by the real claim --------------------------------------------------------
-- every call of campaign tap_audit needs a consent (policy audit_all, open all day);
-- campaign tap_audit_later's only window opens in 12 hours (policy audit_later)
INSERT INTO dialer.calling_policies (name, campaigns, require_consent, legal_source)
VALUES ('audit_all', '{tap_audit}', true, 'tap: consent required');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
VALUES ('audit_all', '{1,2,3,4,5,6,7}', '00:00', '24:00');
INSERT INTO dialer.calling_policies (name, campaigns) VALUES ('audit_later', '{tap_audit_later}');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
VALUES ('audit_later', '{1,2,3,4,5,6,7}', date_trunc('hour', (now() AT TIME ZONE 'Europe/Paris') + interval '12 hours')::time,
		date_trunc('hour', (now() AT TIME ZONE 'Europe/Paris') + interval '12 hours')::time + interval '30 minutes');

-- consents of +12125550101: an old one revoked, the one in force (relied on)
INSERT INTO dialer.consents (number, purpose, granted_at, source, revoked_at, revoked_via)
VALUES ('+12125550101', 'reminders', now() - interval '90 days', 'paper form 2025', now() - interval '60 days', 'call');
INSERT INTO dialer.consents (number, purpose, granted_at, source)
VALUES ('+12125550101', 'reminders', now() - interval '10 days', 'web form https://example.com/optin');

INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload, campaign, deadline)
VALUES
	(now() - interval '1 minute', now() - interval '1 minute', '+12125550101', 'tap_audit', 1, '{"purpose": "reminders"}', 'tap_audit', NULL),
	(now() - interval '1 minute', now() - interval '1 minute', '+12125550102', 'tap_audit', 1, '{"purpose": "reminders"}', 'tap_audit', NULL),
	(now() - interval '1 minute', now() - interval '1 minute', '+33142685301', 'tap_audit', 1, '{}', 'tap_audit_later', NULL),
	(now() - interval '1 minute', now() - interval '1 minute', '+12125550104', 'tap_audit', 1, '{"purpose": "reminders"}', 'tap_audit', NULL),
	(now() - interval '2 hours', now() - interval '2 hours', '+12125550105', 'tap_audit', 1, '{}', NULL, now() - interval '1 hour');
-- a do-not-call request taken by SMS yesterday, in effect now: the scheduled call is skipped at once
INSERT INTO dialer.do_not_call (number, reason, requested_at, source)
VALUES ('+12125550104', 'asked not to be called', now() - interval '1 day', 'SMS STOP');
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE to_number = '+12125550104'), 'skipped',
	'a do-not-call entry skips the scheduled call of its number at once');

SELECT is((SELECT array_agg(to_number ORDER BY to_number)::text
			 FROM dialer.claim_calls('tap_audit', 10, 'UTC', '00:00', '24:00', NULL)),
	'{+12125550101}', 'claim_calls dials only the call with a consent in force');
UPDATE dialer.call_attempts a SET provider_status = 'completed', provider_call_id = 'tap-audit-1'
  FROM dialer.scheduled_calls c WHERE c.id = a.call_id AND c.to_number = '+12125550101';

CREATE TEMP TABLE audit AS
	SELECT * FROM dialer.compliance_audit(now() - interval '1 hour', now() + interval '1 hour')
	 WHERE to_number IN ('+12125550101', '+12125550102', '+33142685301', '+12125550104', '+12125550105');

SELECT results_eq($$SELECT to_number, decision, status, policy, rule FROM audit ORDER BY to_number$$,
	$$VALUES ('+12125550101'::text, 'made'::text, 'dispatching'::text, NULL::text, 'allowed'::text),
			 ('+12125550102', 'skipped', 'skipped', 'audit_all', 'consent'),
			 ('+12125550104', 'skipped', 'skipped', 'dialer.do_not_call', 'do_not_call'),
			 ('+12125550105', 'expired', 'expired', 'deadline', 'deadline'),
			 ('+33142685301', 'parked', 'scheduled', 'audit_later', 'window')$$,
	'the audit lists every call made, skipped, parked and expired in the period, with the policy and rule that decided');
SELECT is((SELECT policies FROM audit WHERE to_number = '+12125550101'), '{audit_all}',
	'a call made: the policies it was made under (recorded by the claim)');
SELECT is((SELECT outcome FROM audit WHERE to_number = '+12125550101'), 'completed',
	'... the provider''s outcome of the attempt');
SELECT results_eq($$SELECT consent_purpose, consent_source, consent_granted_at = now() - interval '10 days',
						   consent_id = (SELECT max(id) FROM dialer.consents WHERE number = '+12125550101')
					  FROM audit WHERE to_number = '+12125550101'$$,
	$$VALUES ('reminders'::text, 'web form https://example.com/optin'::text, true, true)$$,
	'... and the consent it relied on: the one in force at that instant (purpose, when, source), not the revoked one');
SELECT results_eq($$SELECT timezone, timezones, local_time = at AT TIME ZONE 'America/New_York' FROM audit WHERE to_number = '+12125550101'$$,
	$$VALUES ('America/New_York'::text, '{America/New_York}'::text[], true)$$,
	'... in the recipient''s local time, with the zone used (from the number)');
SELECT results_eq($$SELECT timezone, local_time = at AT TIME ZONE 'Europe/Paris' FROM audit WHERE to_number = '+33142685301'$$,
	$$VALUES ('Europe/Paris'::text, true)$$, 'a parked Paris call: in Paris time');
SELECT ok((SELECT reason LIKE 'policy audit_later, rule window:%next opening%' FROM audit WHERE to_number = '+33142685301'),
	'... its reason names the policy, the rule and the next opening');
SELECT is((SELECT consent_id FROM audit WHERE to_number = '+12125550102'), NULL::bigint,
	'a call skipped for want of consent relies on none');
SELECT ok((SELECT reason LIKE '%requires consent%' FROM audit WHERE to_number = '+12125550102'),
	'... and its reason says consent is required');
SELECT ok((SELECT reason LIKE '+12125550104 is on the do-not-call list since % (requested % via SMS STOP): asked not to be called'
			 FROM audit WHERE to_number = '+12125550104'),
	'a do-not-call skip shows the ledger entry: in effect since, requested when and via what, why');
SELECT is((SELECT count(*)::int FROM dialer.compliance_audit(now() + interval '1 hour', now() + interval '2 hours')
			WHERE to_number LIKE '+1212555010_' OR to_number = '+33142685301'), 0,
	'a period without decisions has no rows');
SELECT is((SELECT count(*)::int FROM dialer.compliance_audit(now() - interval '3 hours', now() - interval '1 hour')
			WHERE to_number LIKE '+1212555010_' OR to_number = '+33142685301'), 0,
	'decisions are placed by the instant they were taken, not when the call was due');
SELECT throws_ok($$SELECT * FROM dialer.compliance_audit(now(), now() - interval '1 day')$$, '22023', NULL,
	'a period ending before it starts is refused');
SELECT throws_ok($$SELECT * FROM dialer.compliance_audit(NULL, now())$$, '22023', NULL, 'so is a period without a start');

SELECT results_eq($$SELECT policy, rule FROM dialer.contact_history('+12125550104') WHERE event = 'skipped'$$,
	$$VALUES ('dialer.do_not_call'::text, 'do_not_call'::text)$$, 'contact_history names the do-not-call ledger as the rule');
SELECT ok((SELECT reason LIKE '%requested % via SMS STOP%' FROM dialer.contact_history('+12125550104') WHERE event = 'skipped'),
	'... with the request''s time and channel');

-- Campaign candidates under calling policies -------------------------------------------
CREATE SCHEMA tap_audit;
CREATE TABLE tap_audit.people (customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz);
INSERT INTO tap_audit.people VALUES
	('ok',        '+12125550201', NULL, NULL, NULL),
	('capped',    '+12125550202', NULL, NULL, NULL),
	('refused',   '+12125550203', NULL, NULL, NULL),
	('noconsent', '+12125550204', NULL, NULL, NULL),
	('unknownzone', '+80012345672', NULL, NULL, NULL),
	('dnc',       '+12125550190', NULL, NULL, NULL),
	('badphone',  '2125550206', NULL, NULL, NULL),
	('badpayload', '+12125550207', '"text"', NULL, NULL);
INSERT INTO dialer.campaigns (name, source, provider, call_window_start, call_window_end)
VALUES ('tap_pol', 'tap_audit.people', 'tap_audit', '00:00', '24:00');
INSERT INTO dialer.campaigns (name, source, provider, timezone, call_window_start, call_window_end)
VALUES ('tap_pol_later', 'tap_audit.people', 'tap_audit', 'UTC', '00:00', '24:00');
INSERT INTO dialer.calling_policies (name, campaigns, require_consent, max_calls, cap_period, refusal_silence)
VALUES ('pol_main', '{tap_pol}', true, 1, '1 day', '30 days');
INSERT INTO dialer.consents (number, purpose, source)
SELECT n, 'tap_pol', 'tap' FROM unnest('{+12125550201,+12125550202,+12125550203,+80012345672}'::text[]) n;
INSERT INTO dialer.refusals (number, refused_at, source) VALUES ('+12125550203', now() - interval '2 days', 'agent');
WITH c AS (
	INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts, attempts, finished_at)
	VALUES ('completed', now() - interval '2 hours', now() - interval '2 hours', '+12125550202', 'tap_audit', 1, 1, now() - interval '1 hour')
	RETURNING id)
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id)
SELECT c.id, 1, now() - interval '2 hours', 'tap-audit-cap' FROM c;
-- tap_pol_later: its only window opens in 12 hours (UTC)
INSERT INTO dialer.calling_policies (name, campaigns) VALUES ('pol_later', '{tap_pol_later}');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
VALUES ('pol_later', '{1,2,3,4,5,6,7}', date_trunc('hour', (now() AT TIME ZONE 'UTC') + interval '12 hours')::time,
		date_trunc('hour', (now() AT TIME ZONE 'UTC') + interval '12 hours')::time + interval '30 minutes');

CREATE TEMP TABLE cand AS SELECT * FROM dialer.campaign_candidates('tap_pol');
SELECT results_eq($$SELECT customer_ref, coalesce(reason, 'included') FROM cand ORDER BY customer_ref$$,
	$$VALUES ('badpayload'::text, 'invalid_payload'::text), ('badphone', 'invalid_phone'), ('capped', 'calling_policy'),
			 ('dnc', 'do_not_call'), ('noconsent', 'calling_policy'), ('ok', 'included'), ('refused', 'calling_policy'),
			 ('unknownzone', 'calling_policy')$$,
	'candidates a calling policy refuses are left out with reason calling_policy; the campaign rules come first');
SELECT ok((SELECT detail LIKE 'policy pol_main, rule cap: +12125550202 already had 1 calls within 1 day%' FROM cand WHERE customer_ref = 'capped'),
	'contact cap reached: the detail names policy and rule');
SELECT ok((SELECT detail LIKE 'policy pol_main, rule refusal_silence: %' FROM cand WHERE customer_ref = 'refused'),
	'cool-down after a refusal: named');
SELECT is((SELECT detail FROM cand WHERE customer_ref = 'noconsent'),
	'policy pol_main, rule consent: policy pol_main requires consent and +12125550204 has none in force for purpose tap_pol',
	'consent missing: named');
SELECT ok((SELECT detail LIKE 'policy pol_main, rule unknown_timezone: %' FROM cand WHERE customer_ref = 'unknownzone'),
	'unknown zone: named');
SELECT ok((SELECT detail LIKE '+12125550190 is on the do-not-call list since %plain insert' FROM cand WHERE customer_ref = 'dnc'),
	'a do-not-call candidate: the ledger entry');
SELECT results_eq($$SELECT detail FROM cand WHERE customer_ref IN ('badphone', 'badpayload') ORDER BY customer_ref$$,
	$$VALUES ('payload must be a JSON object, not string'::text),
			 ('phone ''2125550206'' is not an E.164 number (+, then 8 to 15 digits, the first not 0)')$$,
	'number and payload checked by dialer.call_rule, with the campaigns'' detail texts');
SELECT is((SELECT detail FROM cand WHERE customer_ref = 'ok'), NULL, 'a candidate every rule lets through has no detail');
SELECT ok((SELECT bool_and(included AND reason IS NULL AND detail LIKE 'held until % policy pol_later, rule window: %')
			 FROM dialer.campaign_candidates('tap_pol_later') WHERE customer_ref IN ('ok', 'capped', 'refused', 'noconsent')),
	'a window closed in the recipient''s zone holds the candidates (included, enqueued to wait) and says until when, under which policy and rule');

-- The claim's batch verdicts answer exactly as one verdict per call -----------------------
DELETE FROM dialer.calling_policies WHERE NOT builtin;
SELECT dialer.use_preset('US-TCPA'); SELECT dialer.use_preset('US-FL'); SELECT dialer.use_preset('FR');
CREATE TEMP TABLE batch AS
WITH c AS (
	INSERT INTO dialer.scheduled_calls (run_at, next_attempt_at, to_number, provider, max_attempts, payload, timezone)
	SELECT now(), now(), n, 'tap_audit', 1, '{}', tz
	  FROM (VALUES ('+12125550301', NULL), ('+12125550302', NULL), ('+13105550303', NULL), ('+13055550304', NULL),
				   ('+33142685304', NULL), ('+80012345673', NULL), ('+442071234568', NULL), ('+12083012346', NULL),
				   ('+13105550305', 'America/New_York')) v(n, tz)
	RETURNING id)
SELECT array_agg(id ORDER BY id) AS ids FROM c;
CREATE FUNCTION pg_temp.one_by_one(at timestamptz) RETURNS TABLE (id bigint, decision text, policy text, rule text,
	reason text, next_opening timestamptz, timezones text[], policies text[])
LANGUAGE sql AS $$
	SELECT c.id, v.decision, v.policy, v.rule, v.reason, v.next_opening, v.timezones, v.policies
	  FROM dialer.scheduled_calls c, dialer.compliance_verdict(c.to_number, at, c.timezone, c.campaign, c.provider,
															   c.payload->>'purpose', '00:00', '24:00') v
	 WHERE c.id = ANY ((SELECT ids FROM batch)::bigint[]) AND cardinality(v.policies) > 0
	 ORDER BY c.id $$;
SELECT results_eq($$SELECT * FROM dialer.batch_verdicts((SELECT ids FROM batch), '2026-01-12 17:00Z', '00:00', '24:00') ORDER BY id$$,
	$$SELECT * FROM pg_temp.one_by_one('2026-01-12 17:00Z')$$,
	'batch verdicts on a Monday at 17:00 UTC (open in New York, Los Angeles, Miami and Paris) equal one verdict per call');
SELECT results_eq($$SELECT * FROM dialer.batch_verdicts((SELECT ids FROM batch), '2026-01-12 14:00Z', '00:00', '24:00') ORDER BY id$$,
	$$SELECT * FROM pg_temp.one_by_one('2026-01-12 14:00Z')$$,
	'... at 14:00 UTC (New York open, Los Angeles parked, Paris open, Boise/Los Angeles closed)');
SELECT results_eq($$SELECT * FROM dialer.batch_verdicts((SELECT ids FROM batch), '2026-07-14 12:00Z', '00:00', '24:00') ORDER BY id$$,
	$$SELECT * FROM pg_temp.one_by_one('2026-07-14 12:00Z')$$,
	'... on Bastille Day (a French blackout) while the US sleeps');

SELECT * FROM finish();
ROLLBACK;
