-- Calling policies applied at enqueue (issue 12, "enforced at enqueue and at dispatch"):
-- enqueue_call and enqueue_calls store a call as skipped, naming policy and rule, when a
-- policy refuses it for a reason waiting cannot lift (consent missing or revoked, a silence
-- after a refusal still running at run_at, a zone that cannot be known); windows, blackouts
-- and caps are left to the claim.  Both functions decide alike.  Runs in dialer_tap;
-- everything is rolled back.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = error;

BEGIN;
SELECT plan(37);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, enabled)
VALUES ('tap_encomp', 'twilio', 'http://127.0.0.1:9', 'AC0123456789abcdef0123456789abcdef', false);

-- enqueue_call's verdict on a call as "status rule checked" (from the call and its event)
-- (plpgsql: the call is read by a statement after the one that wrote it)
CREATE FUNCTION pg_temp.one(number text, run_at timestamptz DEFAULT now(), purpose text DEFAULT 'renewal',
							tz text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint := dialer.enqueue_call(number, run_at, 'tap_encomp',
									   jsonb_build_object('message', 'Hello', 'purpose', purpose), timezone => tz);
BEGIN
	RETURN (SELECT concat_ws(' ', s.status, e.detail->>'rule', e.detail->>'checked')
			  FROM dialer.scheduled_calls s JOIN dialer.call_events e ON e.call_id = s.id
			 WHERE s.id = v_id);
END;
$$;
-- enqueue_calls' verdict on the same call, in the same form
CREATE FUNCTION pg_temp.bulk(number text, run_at timestamptz DEFAULT now(), purpose text DEFAULT 'renewal',
							 tz text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint := (SELECT r.id FROM dialer.enqueue_calls(jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
						'to_number', number, 'run_at', run_at, 'provider', 'tap_encomp', 'timezone', tz,
						'payload', jsonb_build_object('message', 'Hello', 'purpose', purpose))))) r);
BEGIN
	RETURN (SELECT concat_ws(' ', s.status, e.detail->>'rule', e.detail->>'checked')
			  FROM dialer.scheduled_calls s JOIN dialer.call_events e ON e.call_id = s.id
			 WHERE s.id = v_id);
END;
$$;

-- no policy enabled: nothing is decided at enqueue
SELECT is(pg_temp.one('+12125550100'), 'scheduled', 'no policy enabled: the call is scheduled');

-- consent required for US numbers
INSERT INTO dialer.calling_policies (name, country_codes, require_consent) VALUES ('tap-consent', '{1}', true);
INSERT INTO dialer.consents (number, purpose, granted_at, source)
VALUES ('+12125550101', 'renewal', now() - interval '1 day', 'web form'),
	   ('+12125550102', 'renewal', now() - interval '10 days', 'web form');
UPDATE dialer.consents SET revoked_at = now() - interval '1 hour', revoked_via = 'sms STOP'
 WHERE number = '+12125550102';

SELECT is(pg_temp.one('+12125550100'), 'skipped consent enqueue', 'no consent: skipped at enqueue, rule consent');
SELECT is(pg_temp.bulk('+12125550100'), 'skipped consent enqueue', '... the same through enqueue_calls');
SELECT is(pg_temp.one('+12125550101'), 'scheduled', 'consent in force for the purpose: scheduled');
SELECT is(pg_temp.bulk('+12125550101'), 'scheduled', '... the same through enqueue_calls');
SELECT is(pg_temp.one('+12125550101', purpose => 'marketing'), 'skipped consent enqueue',
		  'consent for another purpose does not count');
SELECT is(pg_temp.one('+12125550102'), 'skipped consent enqueue', 'revoked consent: skipped at enqueue');
SELECT is(pg_temp.bulk('+12125550102'), 'skipped consent enqueue', '... the same through enqueue_calls');
SELECT alike((SELECT last_error FROM dialer.scheduled_calls WHERE to_number = '+12125550102' ORDER BY id DESC LIMIT 1),
			'%tap-consent requires consent%revoked%sms STOP%', 'last_error names the policy and the revocation');
SELECT is((SELECT finished_at IS NOT NULL FROM dialer.scheduled_calls WHERE to_number = '+12125550102' ORDER BY id DESC LIMIT 1),
		  true, 'a skipped call is finished');
SELECT is((SELECT r.outcome || ' ' || r.reason || ': ' || r.message
			 FROM dialer.enqueue_calls('[{"to_number": "+12125550100", "provider": "tap_encomp",
										  "payload": {"message": "Hi", "purpose": "renewal"}}]') r),
		  'skipped consent: policy tap-consent requires consent and +12125550100 has none in force for purpose renewal',
		  'enqueue_calls reports the skip: outcome skipped, reason = the rule, message = why');
-- do-not-call comes first: the event names the list, not the policy
INSERT INTO dialer.do_not_call (number, reason) VALUES ('+12125550103', 'asked');
SELECT dialer.enqueue_call('+12125550103', provider => 'tap_encomp', payload => '{"message": "x"}');
SELECT is((SELECT s.status || ' ' || (e.detail->>'reason')
			 FROM dialer.scheduled_calls s JOIN dialer.call_events e ON e.call_id = s.id
			WHERE s.to_number = '+12125550103'),
		  'skipped do_not_call', 'a do-not-call number is skipped for the list, before any policy');
-- a refused call is refused for its rule, the policy is not consulted
SELECT throws_ok($$SELECT dialer.enqueue_call('+12125550100', provider => 'tap_encomp', timezone => 'Mars/Olympus',
											   payload => '{"message": "x"}')$$,
				 '22023', NULL, 'an invalid call raises its own error, with policies enabled too');
-- the worker is woken only for a scheduled call: a policy skip writes nothing to dial
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE provider = 'tap_encomp' AND status = 'scheduled'),
		  3, 'only the calls with consent (and the first, before the policy) are scheduled');
UPDATE dialer.calling_policies SET enabled = false WHERE name = 'tap-consent';

-- silence after a refusal: 60 days from the refusal, decided at run_at
INSERT INTO dialer.calling_policies (name, country_codes, refusal_silence) VALUES ('tap-silence', '{33}', '60 days');
INSERT INTO dialer.refusals (number, refused_at, source) VALUES ('+33142685300', now() - interval '10 days', 'call outcome');
SELECT is(pg_temp.one('+33142685300', now() + interval '1 day'), 'skipped refusal_silence enqueue',
		  'a call due within the silence is skipped at enqueue');
SELECT is(pg_temp.bulk('+33142685300', now() + interval '1 day'), 'skipped refusal_silence enqueue',
		  '... the same through enqueue_calls');
SELECT is(pg_temp.one('+33142685300', now() + interval '55 days'), 'scheduled',
		  'a call due after the silence ends is scheduled (the claim decides again then)');
SELECT is(pg_temp.one('+33142685301', now() + interval '1 day'), 'scheduled', 'another number is not concerned');
UPDATE dialer.calling_policies SET enabled = false WHERE name = 'tap-silence';

-- a zone that cannot be known from the number (libphonenumber: +881 satellite numbers):
-- under a calling-hours policy alone the claim decides it; under a ledger policy it is met
-- at enqueue already
INSERT INTO dialer.calling_policies (name) VALUES ('tap-anywhere');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('tap-anywhere', '{1,2,3,4,5,6,7}', '00:00', '23:59');
SELECT is(pg_temp.one('+88123456789'), 'scheduled', 'a calling-hours policy alone: nothing decided at enqueue (the claim refuses the unknown zone)');
SELECT is(pg_temp.bulk('+88123456789'), 'scheduled', '... the same through enqueue_calls');
UPDATE dialer.calling_policies SET require_consent = true WHERE name = 'tap-anywhere';
SELECT is(pg_temp.one('+88123456789'), 'skipped unknown_timezone enqueue', 'under a ledger policy, an unknown zone is skipped at enqueue');
SELECT is(pg_temp.bulk('+88123456789'), 'skipped unknown_timezone enqueue', '... the same through enqueue_calls');
INSERT INTO dialer.consents (number, purpose, granted_at, source) VALUES ('+88123456789', 'renewal', now() - interval '1 day', 'web form');
SELECT is(pg_temp.one('+88123456789', tz => 'Europe/Paris'), 'scheduled', 'an explicit zone wins: scheduled');
SELECT is(pg_temp.bulk('+88123456789', tz => 'Europe/Paris'), 'scheduled', '... the same through enqueue_calls');
UPDATE dialer.calling_policies SET require_consent = false WHERE name = 'tap-anywhere';
SELECT is(pg_temp.one('+12125550104'), 'scheduled', 'a number with a known zone is scheduled (the window is the claim''s)');

-- a cap already reached at run_at skips the call at enqueue too, counting the calls made and
-- those scheduled before it (the claim decides again, and is what guarantees the cap)
UPDATE dialer.calling_policies SET max_calls = 0, cap_period = '1 day' WHERE name = 'tap-anywhere';
SELECT is(pg_temp.one('+12125550105'), 'skipped cap enqueue', 'a cap of 0: skipped at enqueue');
UPDATE dialer.calling_policies SET max_calls = 2 WHERE name = 'tap-anywhere';
SELECT is(pg_temp.one('+12125550107', now() + interval '1 hour') || ', ' || pg_temp.one('+12125550107', now() + interval '2 hours')
		  || ', ' || pg_temp.one('+12125550107', now() + interval '3 hours') || ', ' || pg_temp.bulk('+12125550107', now() + interval '4 hours'),
		  'scheduled, scheduled, skipped cap enqueue, skipped cap enqueue',
		  'a cap of 2 a day: the third and fourth calls scheduled within the day are skipped at enqueue');
SELECT is(pg_temp.one('+12125550107', now() + interval '1 day 1 hour 30 minutes'), 'scheduled',
		  'a call a day after the first two is within the cap');

-- a consent revoked or removed, or a refusal recorded, takes effect at once on the calls
-- already scheduled: those the ledger now refuses are skipped, the others stay
UPDATE dialer.calling_policies SET enabled = false WHERE name = 'tap-anywhere';
UPDATE dialer.calling_policies SET enabled = true WHERE name IN ('tap-consent', 'tap-silence');
INSERT INTO dialer.consents (number, purpose, granted_at, source)
VALUES ('+12125550106', 'renewal', now() - interval '1 day', 'web form'),
	   ('+12125550106', 'survey', now() - interval '1 day', 'web form');
SELECT is(pg_temp.one('+12125550106', now() + interval '1 day') || ', ' ||
		  pg_temp.one('+12125550106', now() + interval '1 day', purpose => 'survey'),
		  'scheduled, scheduled', 'two calls for tomorrow, each with consent for its purpose');
UPDATE dialer.consents SET revoked_at = now(), revoked_via = 'sms STOP'
 WHERE number = '+12125550106' AND purpose = 'renewal';
SELECT is((SELECT string_agg((s.payload->>'purpose') || ' ' || s.status, ', ' ORDER BY s.id)
			 FROM dialer.scheduled_calls s WHERE s.to_number = '+12125550106'),
		  'renewal skipped, survey scheduled',
		  'a revoked consent skips at once the scheduled call for its purpose, and only that one');
SELECT is((SELECT concat_ws(' ', e.detail->>'policy', e.detail->>'rule', e.detail->>'checked')
			 FROM dialer.call_events e JOIN dialer.scheduled_calls s ON s.id = e.call_id
			WHERE s.to_number = '+12125550106' AND e.event = 'skipped'),
		  'tap-consent consent consent_changed', 'its event names the policy, the rule and what changed');
SELECT alike((SELECT last_error FROM dialer.scheduled_calls WHERE to_number = '+12125550106' AND status = 'skipped'),
			 '%tap-consent requires consent%revoked%sms STOP%', 'and last_error says why');
DELETE FROM dialer.consents WHERE number = '+12125550106' AND purpose = 'survey';
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls WHERE to_number = '+12125550106' AND status = 'scheduled'),
		  0, 'a removed consent skips its calls too');
SELECT is(pg_temp.one('+33142685302', now() + interval '1 day') || ', ' ||
		  pg_temp.one('+33142685302', now() + interval '90 days'), 'scheduled, scheduled',
		  'two calls to a French number, tomorrow and in 90 days');
INSERT INTO dialer.refusals (number, source) VALUES ('+33142685302', 'call outcome');
SELECT is((SELECT string_agg(s.status || coalesce(' ' || (e.detail->>'checked'), ''), ', ' ORDER BY s.run_at)
			 FROM dialer.scheduled_calls s
			 LEFT JOIN dialer.call_events e ON e.call_id = s.id AND e.event = 'skipped'
			WHERE s.to_number = '+33142685302'),
		  'skipped refusal_recorded, scheduled',
		  'a refusal skips at once the call within its silence; the call after it stays scheduled');

-- a cap of one policy does not hide the consent another requires: the ledger rules of every
-- policy are decided before any cap (tap-anywhere sorts before tap-consent)
UPDATE dialer.calling_policies SET enabled = true, max_calls = 0, cap_period = '1 day' WHERE name = 'tap-anywhere';
SELECT is(pg_temp.one('+12125550107'), 'skipped consent enqueue',
		  'consent missing under one policy and a cap under another: skipped at enqueue for the consent');
SELECT is((SELECT v.rule FROM dialer.compliance_verdict('+12125550107', now(), purpose => 'renewal',
													  window_start => '00:00', window_end => '24:00') v),
		  'consent', 'the verdict names the consent rule, not the cap');

SELECT * FROM finish();
ROLLBACK;
