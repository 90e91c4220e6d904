-- pgTAP: the per-recipient cap of a calling policy, as the claim applies it.
--   - what counts: every attempt that may have reached the recipient (in flight, lost,
--     accepted whatever became of it), not an attempt the provider refused outright;
--   - several calls to one number in one claim: only the first is judged, the others are
--     parked for a second, so that the cap counts the first's attempt;
--   - calls enqueued in one statement reach the provider at most max_calls times;
--   - a number at its cap is refused by the claim while the window is open.
-- The claim is called as the worker calls it (in dialer_tap no worker dispatches), several times
-- in this one transaction: each claim sees the attempts of the claims before it.  Everything is
-- rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(15);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url, calls_per_second)
VALUES ('tap-cap', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000',
        'https://a.example/t.xml', 100);
-- at most 2 calls a day to a number, whatever the hour (no window)
INSERT INTO dialer.calling_policies (name, providers, max_calls, cap_period) VALUES ('tap-cap', '{tap-cap}', 2, '1 day');

CREATE FUNCTION pg_temp.claim() RETURNS SETOF bigint LANGUAGE sql AS $$
	SELECT id FROM dialer.claim_calls('tap-cap', 50, 'UTC', '00:00', '24:00', '')
$$;
-- "a second later": the calls parked for a peer are due again
CREATE FUNCTION pg_temp.later() RETURNS void LANGUAGE sql AS $$
	UPDATE dialer.scheduled_calls SET next_attempt_at = now()
	 WHERE provider = 'tap-cap' AND status = 'scheduled' AND next_attempt_at > now()
$$;
-- a call to a number with one attempt made at now() - ago, answered with http (NULL: no answer yet)
CREATE FUNCTION pg_temp.made(number text, status text, http int, ago interval DEFAULT '1 hour') RETURNS bigint
LANGUAGE sql AS $$
	WITH c AS (
		INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts, attempts,
											finished_at)
		VALUES (status, now() - ago, now() - ago, number, 'tap-cap', 1, 1,
				CASE WHEN status IN ('completed', 'no_answer', 'busy', 'failed') THEN now() END)
		RETURNING id
	)
	INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, http_status, provider_call_id)
	SELECT c.id, 1, now() - ago, http, CASE WHEN http BETWEEN 200 AND 299 THEN 'CA' || md5(c.id::text) END FROM c
	RETURNING call_id
$$;

/* ------------------------------------------------------------------ what counts */

SELECT pg_temp.made('+12125550301', 'dispatching', NULL);		-- claimed, request in flight
SELECT pg_temp.made('+12125550301', 'unknown', NULL);			-- its answer was lost
SELECT pg_temp.made('+12125550301', 'no_answer', 201);			-- accepted, nobody answered
SELECT pg_temp.made('+12125550301', 'failed', 201);				-- accepted, failed later
SELECT pg_temp.made('+12125550301', 'busy', 201, '2 days');		-- outside the period
SELECT pg_temp.made('+12125550301', 'failed', 400);				-- refused by the provider: no call placed
SELECT pg_temp.made('+12125550301', 'failed', 503);				-- the same
SELECT is((SELECT calls FROM dialer.contact_count('+12125550301', now(), '1 day', 2)), 4,
          'every attempt that may have reached the recipient counts (in flight, lost, accepted); not those refused');

-- a number with 2 attempts in flight is at its cap: the claim refuses its call while the
-- window is open, naming the policy and rule
SELECT pg_temp.made('+12125550302', 'dispatching', NULL);
SELECT pg_temp.made('+12125550302', 'dialing', 201);
CREATE TEMP TABLE ids (k text PRIMARY KEY, id bigint);
INSERT INTO ids VALUES ('at_cap', dialer.enqueue_call('+12125550302', provider => 'tap-cap', payload => '{"message": "m"}'));
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = (SELECT id FROM ids WHERE k = 'at_cap')), 'skipped',
          'at enqueue already: 2 calls in progress, a cap of 2');
-- a provider that refused both attempts (400) leaves the number under its cap
SELECT pg_temp.made('+12125550303', 'failed', 400);
SELECT pg_temp.made('+12125550303', 'failed', 422);
INSERT INTO ids VALUES ('refused_before', dialer.enqueue_call('+12125550303', provider => 'tap-cap', payload => '{"message": "m"}'));
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = (SELECT id FROM ids WHERE k = 'refused_before')), 'scheduled',
          'attempts the provider refused do not count at enqueue');

-- the claim decides again: a call scheduled before the attempts were made (by another path)
UPDATE dialer.scheduled_calls SET status = 'scheduled', finished_at = NULL, last_error = NULL
 WHERE id = (SELECT id FROM ids WHERE k = 'at_cap');
CREATE TEMP TABLE round1 AS SELECT * FROM pg_temp.claim() AS c(id);
SELECT is((SELECT array_agg(id) FROM round1), ARRAY[(SELECT id FROM ids WHERE k = 'refused_before')],
          'the claim takes the call whose earlier attempts were refused, and not the one at its cap');
SELECT is((SELECT row(status, e.detail->>'policy', e.detail->>'rule')::text
             FROM dialer.scheduled_calls c JOIN dialer.call_events e ON e.call_id = c.id AND e.event = 'skipped'
            WHERE c.id = (SELECT id FROM ids WHERE k = 'at_cap') ORDER BY e.id DESC LIMIT 1),
          row('skipped', 'tap-cap', 'cap')::text, 'the number at its cap: skipped at dispatch, naming the policy and rule');

/* ------------------------------------------------------------------ one statement, one batch */

CREATE TEMP TABLE bulk AS
SELECT * FROM dialer.enqueue_calls(jsonb_build_array(
	jsonb_build_object('to_number', '+12125550310', 'provider', 'tap-cap', 'payload', '{"message": "1"}'::jsonb, 'priority', 3),
	jsonb_build_object('to_number', '+12125550310', 'provider', 'tap-cap', 'payload', '{"message": "2"}'::jsonb, 'priority', 2),
	jsonb_build_object('to_number', '+12125550310', 'provider', 'tap-cap', 'payload', '{"message": "3"}'::jsonb, 'priority', 1)));
SELECT is((SELECT array_agg(outcome ORDER BY item) FROM bulk), ARRAY['scheduled', 'scheduled', 'scheduled'],
          'three calls to one number in one statement: enqueue cannot tell them apart (none is made yet)');
CREATE TEMP TABLE round2 AS SELECT * FROM pg_temp.claim() AS c(id);
SELECT is((SELECT array_agg(id) FROM round2), ARRAY[(SELECT id FROM bulk WHERE item = 1)],
          'one claim takes only the first of them (highest priority)');
SELECT is((SELECT array_agg(c.status || ' ' || (e.detail->>'rule') ORDER BY c.id)
             FROM dialer.scheduled_calls c
             JOIN LATERAL (SELECT * FROM dialer.call_events x WHERE x.call_id = c.id ORDER BY x.id DESC LIMIT 1) e ON true
            WHERE c.id IN (SELECT id FROM bulk WHERE item > 1)),
          ARRAY['scheduled cap', 'scheduled cap'], 'the others are parked by the cap (window_wait, rule cap)');
SELECT ok((SELECT bool_and(next_attempt_at > now() AND next_attempt_at <= now() + interval '1 second')
             FROM dialer.scheduled_calls WHERE id IN (SELECT id FROM bulk WHERE item > 1)),
          '... for a second, to be judged once the first counts');
SELECT pg_temp.later();
CREATE TEMP TABLE round3 AS SELECT * FROM pg_temp.claim() AS c(id);
SELECT is((SELECT array_agg(id) FROM round3), ARRAY[(SELECT id FROM bulk WHERE item = 2)],
          'a second later, the second call goes (1 attempt counted, cap 2)');
SELECT pg_temp.later();
CREATE TEMP TABLE round4 AS SELECT * FROM pg_temp.claim() AS c(id);
SELECT is((SELECT count(*)::int FROM round4), 0, 'the third does not');
SELECT is((SELECT row(status, last_error ~ 'already had 2 calls within 1 day')::text FROM dialer.scheduled_calls
            WHERE id = (SELECT id FROM bulk WHERE item = 3)), row('skipped', true)::text,
          '... it is skipped: 2 calls made within the day');
SELECT is((SELECT count(*)::int FROM dialer.call_attempts a JOIN dialer.scheduled_calls c ON c.id = a.call_id
            WHERE c.to_number = '+12125550310'), 2, 'two attempts to the number, no more');

/* ------------------------------------------------------------------ other numbers are not held back */

SELECT is((SELECT count(*)::int FROM dialer.enqueue_calls(
	(SELECT jsonb_agg(jsonb_build_object('to_number', '+1212555' || (400 + g), 'provider', 'tap-cap',
										 'payload', '{"message": "x"}'::jsonb)) FROM generate_series(1, 5) g))), 5,
          'five calls to five numbers');
SELECT is((SELECT count(*)::int FROM pg_temp.claim()), 5, 'one claim takes all five: a cap holds back only a number''s own calls');

SELECT * FROM finish();
ROLLBACK;
