-- pgTAP: searching for unknown calls without a provider call id (issue 8, item 3), the SQL
-- rules without a worker: which calls are claimed and when (at most 3 searches), and how
-- dialer.apply_search chooses a record of a Twilio Calls list page, as the dispatcher reports
-- it (src/provider_twilio.c reads the page; the records here are in pg_dialer's form):
-- to/from, created at or after the claim to the second, never a record known as another
-- call's, never a guess between two, not from an incomplete page; and that an answer coming
-- back after dialer.retry_call settles nothing, not even once the next attempt has ended
-- unknown too.  Also: no SQL function reads a provider's answer itself (issue 22, item 4).
-- Runs in dialer_tap (no worker); one transaction, rolled back.  dialer.reconcile_after is
-- its default, 15 min.
\set ON_ERROR_STOP on
\set QUIET on
SET client_min_messages = warning;

BEGIN;
SELECT plan(38);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number)
VALUES ('tap_tw', 'twilio', 'http://127.0.0.1:9', 'AC0123456789abcdef0123456789abcdef',
		'0123456789abcdef0123456789abcdef', '+15550100000');
INSERT INTO dialer.providers (name, kind, base_url, from_number)
VALUES ('tap_va', 'voice_api', 'http://127.0.0.1:9', '+15550100000');

-- unknown calls without a provider call id, claimed an hour ago (ids by to_number)
CREATE TEMP TABLE t_calls AS
WITH ins AS (
	INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts,
										attempts, updated_at)
	SELECT 'unknown', now() - interval '1 hour', now() - interval '1 hour', n, p, 3, 1, now() - interval '1 hour'
	  FROM (VALUES ('+15550600001', 'tap_tw'), ('+15550600002', 'tap_tw'), ('+15550600003', 'tap_tw'),
				   ('+15550600004', 'tap_tw'), ('+15550600005', 'tap_tw'), ('+15550600009', 'tap_va')) v(n, p)
	RETURNING id, to_number::text AS to_number
)
SELECT * FROM ins;
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, idempotency_key)
SELECT id, 1, date_trunc('second', now()) - interval '1 hour' + interval '0.7 second', 'pgd-' || id FROM t_calls;
-- a call of the same number whose sid is known
INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts,
									attempts, provider_call_id)
VALUES ('dialing', now(), now(), '+15550600002', 'tap_tw', 3, 1, 'CAknown000000000000000000000000000');

CREATE FUNCTION pg_temp.cid(n text) RETURNS bigint LANGUAGE sql AS $$ SELECT id FROM t_calls WHERE to_number = n $$;
-- a Calls list record as the dispatcher reports it (Twilio's date_created is to the second)
CREATE FUNCTION pg_temp.rec(sid text, to_n text, created timestamptz, status text DEFAULT 'completed',
							from_n text DEFAULT '+15550100000')
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', sid, 'to', to_n, 'from', from_n, 'status', status, 'duration_seconds', 9,
							  'created_at', to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00')
$$;
-- a page of the list as the dispatcher reports it: a next page makes more true
CREATE FUNCTION pg_temp.page(recs jsonb, next_page text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('records', recs, 'listed', jsonb_array_length(recs), 'more', next_page IS NOT NULL)
$$;
CREATE FUNCTION pg_temp.last_event(p_id bigint) RETURNS dialer.call_events LANGUAGE sql AS $$
	SELECT * FROM dialer.call_events e WHERE e.call_id = p_id ORDER BY e.id DESC LIMIT 1
$$;

/* ------------------------------------------------------------------ claiming */

CREATE TEMP TABLE t_claim AS SELECT id, search::jsonb AS search FROM dialer.claim_searches('tap_tw', 100);
SELECT is((SELECT count(*) FROM t_claim), 5::bigint, 'the 5 unknown Twilio calls without a sid are claimed');
SELECT is((SELECT search FROM t_claim WHERE id = pg_temp.cid('+15550600001')),
		  jsonb_build_object('to', '+15550600001', 'from', '+15550100000',
							 'after', to_char((date_trunc('second', now()) - interval '1 hour') AT TIME ZONE 'UTC',
											  'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
							 'idempotency_key', 'pgd-' || pg_temp.cid('+15550600001'), 'attempt', 1, 'search', 1, 'of', 3),
		  'what to search for: to, from, the claim to the second (UTC), the attempt');
SELECT is((SELECT array_agg(DISTINCT reconcile_searches) FROM dialer.scheduled_calls WHERE id IN (SELECT id FROM t_claim)),
		  ARRAY[1], 'each claim counts a search');
SELECT is((SELECT count(*) FROM dialer.claim_searches('tap_tw', 100)), 0::bigint,
		  'not claimed again before 2 x reconcile_after after the search');
SELECT is((SELECT count(*) FROM dialer.claim_searches('tap_va', 100)), 0::bigint, 'a voice_api provider offers no search');
UPDATE dialer.scheduled_calls SET reconciled_at = now() - interval '31 minutes' WHERE id = pg_temp.cid('+15550600005');
SELECT is((SELECT array_agg(id) FROM dialer.claim_searches('tap_tw', 100)), ARRAY[pg_temp.cid('+15550600005')],
		  'claimed again 2 x reconcile_after after the first search');
UPDATE dialer.scheduled_calls SET reconciled_at = now() - interval '1 day', updated_at = now() - interval '1 day'
 WHERE id = pg_temp.cid('+15550600005');
SELECT is((SELECT count(*) FROM dialer.claim_searches('tap_tw', 100)), 1::bigint, 'a third search');
UPDATE dialer.scheduled_calls SET reconciled_at = now() - interval '1 day', updated_at = now() - interval '1 day'
 WHERE id = pg_temp.cid('+15550600005');
SELECT is((SELECT count(*) FROM dialer.claim_searches('tap_tw', 100)), 0::bigint, 'never a fourth');
SELECT ok(dialer.retry_call(pg_temp.cid('+15550600005')), 'retry_call');
SELECT is((SELECT reconcile_searches FROM dialer.scheduled_calls WHERE id = pg_temp.cid('+15550600005')), 0,
		  'retry_call gives the new run fresh searches');

/* ------------------------------------------------------------------ choosing the record */

-- 1: a record created a second before the claim's second is not it; one at the claim's second is
SELECT dialer.apply_search(pg_temp.cid('+15550600001'), (SELECT search FROM t_claim WHERE id = pg_temp.cid('+15550600001')), 200,
	pg_temp.page(jsonb_build_array(
		pg_temp.rec('CAlater00000000000000000000000001', '+15550600001', date_trunc('second', now()) - interval '1 hour', 'busy'),
		pg_temp.rec('CAbefore0000000000000000000000001', '+15550600001', date_trunc('second', now()) - interval '1 hour 1 second'),
		pg_temp.rec('CAother00000000000000000000000001', '+15550600001', now(), 'completed', '+15559999999'))));
SELECT is((SELECT (status, provider_call_id) FROM dialer.scheduled_calls WHERE id = pg_temp.cid('+15550600001')),
		  ROW('busy'::text, 'CAlater00000000000000000000000001'::text),
		  'the one record created at or after the claim, from the caller id sent, settles the call');
SELECT is((SELECT (provider_call_id, provider_status, duration_seconds) FROM dialer.call_attempts
			WHERE call_id = pg_temp.cid('+15550600001')),
		  ROW('CAlater00000000000000000000000001'::text, 'busy'::text, 9), 'the sid, status and duration are on the attempt');
SELECT is((pg_temp.last_event(pg_temp.cid('+15550600001'))).event, 'reconciled', 'event reconciled');
SELECT is((pg_temp.last_event(pg_temp.cid('+15550600001'))).detail->'searched'->>'to', '+15550600001', 'naming what was searched');
SELECT is((SELECT reconcile_searches FROM dialer.scheduled_calls WHERE id = pg_temp.cid('+15550600001')), 0,
		  'a settled call has its searches counted afresh');

-- 2: a record that is another call's is not this one (so no ambiguity)
SELECT dialer.apply_search(pg_temp.cid('+15550600002'), (SELECT search FROM t_claim WHERE id = pg_temp.cid('+15550600002')), 200,
	pg_temp.page(jsonb_build_array(
		pg_temp.rec('CAknown000000000000000000000000000', '+15550600002', now(), 'in-progress'),
		pg_temp.rec('CAmine0000000000000000000000000002', '+15550600002', now(), 'ringing'))));
SELECT is((SELECT (status, provider_call_id) FROM dialer.scheduled_calls WHERE id = pg_temp.cid('+15550600002')),
		  ROW('dialing'::text, 'CAmine0000000000000000000000000002'::text),
		  'a record known as another call''s is left out; the other settles the call (ringing: dialing)');

-- 3: two candidates: never guessed
SELECT dialer.apply_search(pg_temp.cid('+15550600003'), (SELECT search FROM t_claim WHERE id = pg_temp.cid('+15550600003')), 200,
	pg_temp.page(jsonb_build_array(
		pg_temp.rec('CAa000000000000000000000000000003', '+15550600003', now()),
		pg_temp.rec('CAb000000000000000000000000000003', '+15550600003', now()))));
SELECT is((SELECT (status, provider_call_id) FROM dialer.scheduled_calls WHERE id = pg_temp.cid('+15550600003')),
		  ROW('unknown'::text, NULL::text), 'two matching records: the call stays unknown');
SELECT is((SELECT call_attempts.provider_call_id FROM dialer.call_attempts WHERE call_id = pg_temp.cid('+15550600003')), NULL,
		  'and its attempt has no sid');
SELECT is((pg_temp.last_event(pg_temp.cid('+15550600003'))).detail->>'result', 'ambiguous', 'event result ambiguous');
SELECT is(jsonb_array_length((pg_temp.last_event(pg_temp.cid('+15550600003'))).detail->'candidates'), 2, 'listing both');

-- 4: a full first page with a next page and no record older than the claim: incomplete
SELECT dialer.apply_search(pg_temp.cid('+15550600004'), (SELECT search FROM t_claim WHERE id = pg_temp.cid('+15550600004')), 200,
	pg_temp.page(jsonb_build_array(pg_temp.rec('CAc000000000000000000000000000004', '+15550600004', now())),
				 '/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json?Page=1'));
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = pg_temp.cid('+15550600004')), 'unknown',
		  'a page that may not hold every match settles nothing');
SELECT is((pg_temp.last_event(pg_temp.cid('+15550600004'))).detail->>'result', 'incomplete', 'event result incomplete');

-- 5: nothing found, a failed search, the last search
SELECT dialer.apply_search(pg_temp.cid('+15550600004'), (SELECT search FROM t_claim WHERE id = pg_temp.cid('+15550600004')), 200,
	pg_temp.page('[]'));
SELECT is((pg_temp.last_event(pg_temp.cid('+15550600004'))).detail->>'result', 'not_found', 'an empty list: not_found');
SELECT dialer.apply_search(pg_temp.cid('+15550600004'), (SELECT search FROM t_claim WHERE id = pg_temp.cid('+15550600004')), NULL,
	'{"result": "failed", "error": "Connection refused"}');
SELECT is(((pg_temp.last_event(pg_temp.cid('+15550600004'))).detail->>'result',
		   (pg_temp.last_event(pg_temp.cid('+15550600004'))).detail->>'error'),
		  ROW('failed'::text, 'Connection refused'::text), 'no answer: failed, with the error');
SELECT dialer.apply_search(pg_temp.cid('+15550600004'),
	(SELECT search || '{"search": 3}' FROM t_claim WHERE id = pg_temp.cid('+15550600004')), 200, pg_temp.page('[]'));
SELECT matches((pg_temp.last_event(pg_temp.cid('+15550600004'))).detail->>'message', 'no search is left',
			   'the third search says no search is left');
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = pg_temp.cid('+15550600004')), 'unknown', 'still unknown');
SELECT is((SELECT count(*) FROM dialer.call_events WHERE call_id = pg_temp.cid('+15550600004') AND event = 'reconcile_search'),
		  4::bigint, 'one event per search answer');

/* ------------------------------------------------------------------ an answer after retry_call */

-- +15550600006: unknown without a sid, searched (attempt 1); an operator requeues it with
-- dialer.retry_call before the search's answer comes back.  The record the answer names may be
-- the first attempt's call or the next one's: it settles nothing, now or once the next attempt
-- has ended unknown too; only a search of the current attempt does.
WITH ins AS (
	INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts,
										attempts, updated_at)
	VALUES ('unknown', now() - interval '1 hour', now() - interval '1 hour', '+15550600006', 'tap_tw', 3, 1,
			now() - interval '1 hour')
	RETURNING id, to_number::text AS to_number
)
INSERT INTO t_calls SELECT * FROM ins;
INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, idempotency_key)
VALUES (pg_temp.cid('+15550600006'), 1, date_trunc('second', now()) - interval '1 hour', 'pgd-r1');
CREATE TEMP TABLE t_search1 AS
SELECT search::jsonb AS search FROM dialer.claim_searches('tap_tw', 100) WHERE id = pg_temp.cid('+15550600006');
SELECT is((SELECT search->>'attempt' FROM t_search1), '1', 'the first attempt is searched for');
SELECT ok(dialer.retry_call(pg_temp.cid('+15550600006')), 'retry_call requeues it while the search is out');
CREATE FUNCTION pg_temp.answer(search jsonb, sid text) RETURNS void LANGUAGE sql AS $$
	SELECT dialer.apply_search(pg_temp.cid('+15550600006'), search, 200,
							   pg_temp.page(jsonb_build_array(pg_temp.rec(sid, '+15550600006', now(), 'completed'))))
$$;
CREATE FUNCTION pg_temp.state6() RETURNS text LANGUAGE sql AS $$
	SELECT concat_ws(' ', c.status, c.attempts, coalesce(c.provider_call_id, '-'),
					 (SELECT string_agg(a.attempt || ':' || coalesce(a.provider_call_id, '-'), ',' ORDER BY a.attempt)
						FROM dialer.call_attempts a WHERE a.call_id = c.id))
	  FROM dialer.scheduled_calls c WHERE c.id = pg_temp.cid('+15550600006')
$$;
SELECT pg_temp.answer((SELECT search FROM t_search1), 'CAlate0000000000000000000000000006');
SELECT is(pg_temp.state6(), 'scheduled 1 - 1:-',
		  'an answer arriving after retry_call changes nothing: still scheduled, no sid on the call or its attempt');
SELECT is((SELECT count(*)::int FROM dialer.call_events WHERE call_id = pg_temp.cid('+15550600006') AND event = 'reconciled'), 0,
		  '... and no reconciled event');
SELECT matches((pg_temp.last_event(pg_temp.cid('+15550600006'))).detail->>'message', 'nothing changed',
			   'its reconcile_search event says nothing changed');

-- the new run: claimed (attempt 2), its answer lost: unknown again
SELECT is((SELECT count(*)::int FROM dialer.claim_calls('tap_tw', 100, 'UTC', '00:00', '24:00', NULL)
			WHERE id = pg_temp.cid('+15550600006')), 1, 'the requeued call is claimed again');
SELECT dialer.record_results(ARRAY[pg_temp.cid('+15550600006')], ARRAY[2], ARRAY['unknown'], ARRAY[NULL::int],
							 ARRAY[NULL::text], ARRAY[NULL::text], ARRAY['answer lost'], ARRAY[NULL::text],
							 ARRAY[0], ARRAY[now()]);
SELECT is(pg_temp.state6(), 'unknown 2 - 1:-,2:-', 'attempt 2 ended unknown, without a sid');
SELECT pg_temp.answer((SELECT search FROM t_search1), 'CAlate0000000000000000000000000006');
SELECT is(pg_temp.state6(), 'unknown 2 - 1:-,2:-',
		  'the first attempt''s late answer does not settle the second attempt');

-- a search of the current attempt does
UPDATE dialer.scheduled_calls SET updated_at = now() - interval '1 hour', reconciled_at = now() - interval '1 hour'
 WHERE id = pg_temp.cid('+15550600006');
CREATE TEMP TABLE t_search2 AS
SELECT search::jsonb AS search FROM dialer.claim_searches('tap_tw', 100) WHERE id = pg_temp.cid('+15550600006');
SELECT is((SELECT search->>'attempt' FROM t_search2), '2', 'the second attempt is searched for');
SELECT pg_temp.answer((SELECT search FROM t_search2), 'CAnow00000000000000000000000000006');
SELECT is(pg_temp.state6(), 'completed 2 CAnow00000000000000000000000000006 1:-,2:CAnow00000000000000000000000000006',
		  'its answer settles the call, on attempt 2');

/* ------------------------------------------------------------------ no answer read in SQL */

-- every provider answer is read in C by its kind (src/provider_<kind>.c), which reports it in
-- pg_dialer's form: no function of the extension parses an answer's body or reads the fields
-- of a provider's list (the functions that did: apply_reconciliation, apply_search and
-- search_candidates of 0.2.0)
SELECT is((SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
			 FROM pg_catalog.pg_proc p
			 JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
										AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
			 JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'pg_dialer'
			WHERE p.prosrc ~* '\mbody\s*::\s*jsonb?\M|next_page_uri|->>?\s*''(sid|calls|date_created)'''),
		  NULL, 'no SQL function reads a provider''s answer (an answer''s body cast to JSON, the fields of a calls list)');

SELECT * FROM finish();
ROLLBACK;
