-- A consent revoked or removed, or a refusal recorded, skips at once the calls that are
-- already due - scheduled, next_attempt_at in the past (due a few minutes ago and not yet
-- claimed) or now (a retry due at once) - and not only the calls of the future
-- (dialer.ledger_changed, sql/install/parts/20_compliance.sql).  Runs in dialer_tap,
-- where no dispatcher claims the calls; everything is rolled back.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = error;

BEGIN;
SELECT plan(7);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, enabled)
VALUES ('tap_ledger_due', 'twilio', 'http://127.0.0.1:9', 'AC0123456789abcdef0123456789abcdef', false);
INSERT INTO dialer.calling_policies (name, country_codes, require_consent) VALUES ('tap-due-consent', '{1}', true);
INSERT INTO dialer.calling_policies (name, country_codes, refusal_silence) VALUES ('tap-due-silence', '{33}', '60 days');
INSERT INTO dialer.consents (number, purpose, granted_at, source)
VALUES ('+12125550201', 'renewal', now() - interval '1 day', 'web form'),
	   ('+12125550202', 'renewal', now() - interval '1 day', 'web form');

-- a call to number for purpose renewal, due at run_at, named for the tests
CREATE TEMP TABLE due_calls (name text PRIMARY KEY, id bigint);
CREATE FUNCTION pg_temp.add_call(name text, number text, run_at timestamptz) RETURNS bigint
LANGUAGE sql AS $$
	INSERT INTO due_calls
	SELECT name, dialer.enqueue_call(number, run_at, 'tap_ledger_due', '{"message": "Hello", "purpose": "renewal"}')
	RETURNING id
$$;
-- "name status [checked]" of the named calls, in name order
CREATE FUNCTION pg_temp.states(names text[]) RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(concat_ws(' ', d.name, c.status,
								(SELECT e.detail->>'checked' FROM dialer.call_events e
								  WHERE e.call_id = c.id AND e.event = 'skipped')), ', ' ORDER BY d.name)
	  FROM due_calls d JOIN dialer.scheduled_calls c ON c.id = d.id
	 WHERE d.name = ANY (names)
$$;

-- +12125550201: a retry due now (claimed and stored as the worker does), a call due four
-- minutes ago that nobody claimed yet (within dialer.late_tolerance), and one for tomorrow
SELECT pg_temp.add_call('a_retry', '+12125550201', now() - interval '4 minutes');
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('tap_ledger_due', 10, 'UTC', '00:00', '24:00', NULL)), 1,
		  'the first call is claimed');
SELECT dialer.record_results(ARRAY[(SELECT id FROM due_calls WHERE name = 'a_retry')], ARRAY[1], ARRAY['retry'],
							 ARRAY[503], ARRAY[NULL::text], ARRAY['503'], ARRAY['Service Unavailable'],
							 ARRAY[NULL::text], ARRAY[0], ARRAY[now()]);
SELECT pg_temp.add_call('b_late', '+12125550201', now() - interval '4 minutes');
SELECT pg_temp.add_call('c_tomorrow', '+12125550201', now() + interval '1 day');
SELECT is((SELECT string_agg(d.name || ' ' || c.status || ' ' || CASE WHEN c.next_attempt_at <= now() THEN 'due' ELSE 'later' END,
							 ', ' ORDER BY d.name)
			 FROM due_calls d JOIN dialer.scheduled_calls c ON c.id = d.id),
		  'a_retry scheduled due, b_late scheduled due, c_tomorrow scheduled later',
		  'consent in force: two calls due (a retry, a late one) and one for tomorrow are scheduled');

UPDATE dialer.consents SET revoked_at = now(), revoked_via = 'sms STOP' WHERE number = '+12125550201';
SELECT is(pg_temp.states(ARRAY['a_retry', 'b_late', 'c_tomorrow']),
		  'a_retry skipped consent_changed, b_late skipped consent_changed, c_tomorrow skipped consent_changed',
		  'the revocation skips at once the calls already due, as well as the future one');
SELECT alike((SELECT c.last_error FROM dialer.scheduled_calls c JOIN due_calls d ON d.id = c.id WHERE d.name = 'b_late'),
			 '%tap-due-consent requires consent%revoked%sms STOP%', 'the late call''s last_error says why');

-- a removed consent: the same for a call due four minutes ago
SELECT pg_temp.add_call('d_removed', '+12125550202', now() - interval '4 minutes');
DELETE FROM dialer.consents WHERE number = '+12125550202';
SELECT is(pg_temp.states(ARRAY['d_removed']), 'd_removed skipped consent_changed',
		  'a removed consent skips at once the call already due');

-- a refusal recorded now: the call due four minutes ago is within the silence that starts now
SELECT pg_temp.add_call('e_late', '+33142685310', now() - interval '4 minutes');
SELECT pg_temp.add_call('f_after_silence', '+33142685310', now() + interval '90 days');
INSERT INTO dialer.refusals (number, source) VALUES ('+33142685310', 'call outcome');
SELECT is(pg_temp.states(ARRAY['e_late', 'f_after_silence']), 'e_late skipped refusal_recorded, f_after_silence scheduled',
		  'a refusal skips at once the call already due; the call after the silence stays');
SELECT is((SELECT count(*)::int FROM dialer.scheduled_calls c JOIN due_calls d ON d.id = c.id
			WHERE c.status = 'skipped' AND c.finished_at IS NULL), 0, 'every skipped call is finished');

SELECT * FROM finish();
ROLLBACK;
