-- pgTAP: the life of a call as data, with one writer.
--   - no function of pg_dialer but dialer.move_calls writes scheduled_calls.status (read from the
--     catalog's function bodies); calls are inserted only by enqueue, and call events written only
--     by move_calls, note_calls and enqueue;
--   - every legal move (each row of dialer.call_transitions but the creations) is walked once:
--     the status, the event, and what the row says the move does besides (attempts, a new run,
--     the deadline, the counters, finished_at);
--   - illegal moves raise a clear error and change nothing; a call no longer where a move starts
--     is left alone; an unknown note raises;
--   - the creations enqueue makes are the creation rows; the diagram is drawn from the rows.
-- Everything is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = error;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(25);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url)
VALUES ('tap-life', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000',
		'https://a.example/t.xml');

/* ------------------------------------------------------------------ one writer */

-- the functions of pg_dialer, with their bodies
CREATE TEMP VIEW ext_functions AS
SELECT p.oid::regprocedure::text AS fn, p.prosrc AS body
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'pg_dialer';

-- the SET list of every UPDATE of scheduled_calls in a body (up to its FROM, WHERE or RETURNING)
CREATE FUNCTION pg_temp.update_set_lists(body text) RETURNS SETOF text LANGUAGE sql AS $$
	SELECT regexp_replace(f, '\m(FROM|WHERE|RETURNING)\M.*$', '', 'i')
	  FROM regexp_split_to_table(body, 'UPDATE\s+dialer\.scheduled_calls\M', 'i') WITH ORDINALITY AS s(f, n)
	 WHERE n > 1
$$;

SELECT is(ARRAY(SELECT DISTINCT f.fn FROM ext_functions f CROSS JOIN LATERAL pg_temp.update_set_lists(f.body) s
				 WHERE s ~* '\mstatus\s*=' ORDER BY 1),
		  ARRAY['dialer.move_calls(dialer.call_move[])'],
		  'only dialer.move_calls writes scheduled_calls.status');
SELECT ok((SELECT count(*) FROM ext_functions f CROSS JOIN LATERAL pg_temp.update_set_lists(f.body) s) >= 5,
		  'the scan sees the other UPDATEs of scheduled_calls (it can find a writer)');
SELECT is(ARRAY(SELECT f.fn FROM ext_functions f WHERE f.body ~* 'INSERT\s+INTO\s+dialer\.scheduled_calls\M' ORDER BY 1),
		  ARRAY['dialer.enqueue_call(text,timestamp with time zone,text,jsonb,text,text,integer,integer,text,timestamp with time zone,boolean)',
				'dialer.enqueue_calls(jsonb,boolean)'],
		  'calls are created only by enqueue');
SELECT is(ARRAY(SELECT f.fn FROM ext_functions f WHERE f.body ~* 'INSERT\s+INTO\s+dialer\.call_events\M' ORDER BY 1),
		  ARRAY['dialer.enqueue_call(text,timestamp with time zone,text,jsonb,text,text,integer,integer,text,timestamp with time zone,boolean)',
				'dialer.enqueue_calls(jsonb,boolean)',
				'dialer.move_calls(dialer.call_move[])',
				'dialer.note_calls(bigint[],text[],jsonb[])'],
		  'events are written only by move_calls, note_calls and enqueue (a creation)');

/* ------------------------------------------------------------------ every legal move, once */

-- a call put in a status by hand (the test is the one other writer), with one attempt made
CREATE FUNCTION pg_temp.call_in(status text) RETURNS bigint LANGUAGE sql AS $$
	WITH c AS (
		INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, provider, max_attempts,
											attempts, attempts_base, deadline, finished_at, reconcile_failures,
											reconcile_searches, last_error)
		VALUES (status, now() - interval '1 hour', now() - interval '1 minute', '+15550170001', 'tap-life', 3,
				1, 0, now() + interval '1 day',
				CASE WHEN (SELECT s.final FROM dialer.call_statuses s WHERE s.status = call_in.status)
					 THEN now() - interval '10 minutes' END, 2, 1, 'before')
		RETURNING id
	)
	SELECT id FROM c
$$;

CREATE TEMP TABLE walked AS
SELECT t.*, pg_temp.call_in(t.from_status) AS call_id
  FROM dialer.call_transitions t WHERE t.from_status IS NOT NULL;
CREATE TEMP TABLE before AS SELECT c.* FROM dialer.scheduled_calls c WHERE c.id IN (SELECT call_id FROM walked);

CREATE TEMP TABLE moved AS
SELECT m AS id FROM dialer.move_calls(ARRAY(
	SELECT dialer.make_move(w.call_id, w.from_status, w.event, w.to_status, jsonb_build_object('walk', w.event),
							attempt => 1, next_attempt_at => now() + interval '5 minutes', last_error => 'after')
	  FROM walked w)) m;

SELECT is((SELECT count(*) FROM moved), (SELECT count(*) FROM walked),
		  'every legal move moves its call (' || (SELECT count(*) FROM walked) || ' moves)');
SELECT is(ARRAY(SELECT w.from_status || ' -' || w.event || '-> ' || w.to_status || ': ' || c.status
				  FROM walked w JOIN dialer.scheduled_calls c ON c.id = w.call_id
				 WHERE c.status IS DISTINCT FROM w.to_status),
		  '{}'::text[], 'each call is in the move''s to_status');
SELECT is(ARRAY(SELECT w.from_status || ' -' || w.event || '-> ' || w.to_status
				  FROM walked w
				 WHERE (SELECT count(*) FROM dialer.call_events e
						 WHERE e.call_id = w.call_id AND e.event = w.event AND e.from_status = w.from_status
						   AND e.to_status = w.to_status AND e.detail = jsonb_build_object('walk', w.event)) <> 1
					OR (SELECT count(*) FROM dialer.call_events e WHERE e.call_id = w.call_id) <> 1),
		  '{}'::text[], 'each move wrote exactly its one event (from, event, to, detail)');
SELECT is(ARRAY(SELECT w.from_status || ' -' || w.event || '-> ' || w.to_status
				  FROM walked w
				  JOIN dialer.scheduled_calls c ON c.id = w.call_id
				  JOIN before b ON b.id = w.call_id
				  JOIN dialer.call_statuses s ON s.status = w.to_status
				 WHERE c.attempts <> b.attempts + w.attempts_change
					OR c.attempts_base <> CASE WHEN w.starts_run THEN b.attempts ELSE b.attempts_base END
					OR (c.deadline IS NULL) <> w.clears_deadline
					OR c.reconcile_failures <> CASE WHEN w.resets_lookups THEN 0 ELSE 2 END
					OR c.reconcile_searches <> CASE WHEN w.resets_searches THEN 0 ELSE 1 END
					OR c.next_attempt_at <> now() + interval '5 minutes'
					OR c.last_error <> 'after'
					OR c.updated_at <> now()
					OR (s.final AND c.finished_at IS DISTINCT FROM coalesce(b.finished_at, now()))
					OR (NOT s.final AND c.finished_at IS NOT NULL)),
		  '{}'::text[], 'each move did what its row says besides: attempts, run, deadline, counters, finished_at, and what the move gave');
SELECT ok((SELECT count(*) FROM walked WHERE attempts_change <> 0) = 2
		  AND (SELECT count(*) FROM walked WHERE starts_run) >= 3
		  AND (SELECT count(*) FROM walked WHERE clears_deadline) = 1
		  AND (SELECT count(*) FROM walked WHERE resets_searches) > 3,
		  'the walk covers moves that count attempts, start runs, clear deadlines and reset counters');

/* ------------------------------------------------------------------ illegal moves */

SELECT pg_temp.call_in('scheduled') AS sid \gset
SELECT pg_temp.call_in('dialing') AS did \gset
CREATE TEMP TABLE snap AS
SELECT (SELECT jsonb_agg(to_jsonb(c) ORDER BY c.id) FROM dialer.scheduled_calls c) AS calls,
	   (SELECT count(*) FROM dialer.call_events) AS events;

SELECT throws_ok(format($$SELECT * FROM dialer.move_calls(ARRAY[
					dialer.make_move(%s, 'dialing', 'callback', 'completed'),
					dialer.make_move(%s, 'scheduled', 'accepted', 'dialing')])$$, :did, :sid),
				 '22023', format('illegal move of call %s: accepted from scheduled to dialing', :sid),
				 'a move no row allows raises, naming the call, the event and both statuses');
SELECT throws_ok(format($$SELECT * FROM dialer.move_calls(ARRAY[dialer.make_move(%s, 'scheduled', 'claimed', 'completed')])$$, :sid),
				 '22023', NULL, 'a known event to a status it does not lead to raises');
SELECT throws_ok(format($$SELECT * FROM dialer.move_calls(ARRAY[dialer.make_move(%s, 'completed', 'requeued', 'scheduled')])$$, :sid),
				 '22023', NULL, 'a move from a status it does not start from raises');
SELECT throws_ok(format($$SELECT * FROM dialer.move_calls(ARRAY[dialer.make_move(%s, NULL, 'enqueued', 'scheduled')])$$, :sid),
				 '22023', NULL, 'a creation is not a move');
SELECT throws_ok(format($$SELECT * FROM dialer.move_calls(ARRAY[dialer.make_move(%s, 'scheduled', 'canceled', 'canceled'),
																 dialer.make_move(%s, 'scheduled', 'canceled', 'canceled')])$$, :sid, :sid),
				 '22023', 'a call is moved twice in one dialer.move_calls()', 'a call named twice raises');
SELECT throws_ok(format($$SELECT dialer.note_calls(ARRAY[%s::bigint], ARRAY['claimed'], ARRAY['{}'::jsonb])$$, :sid),
				 '22023', 'unknown note event claimed', 'an event that is not a note raises');
SELECT is((SELECT jsonb_agg(to_jsonb(c) ORDER BY c.id) FROM dialer.scheduled_calls c), (SELECT calls FROM snap),
		  'after the refused moves every call is as it was (the legal move in the same array included)');
SELECT is((SELECT count(*) FROM dialer.call_events), (SELECT events FROM snap), '... and no event was written');

-- a call no longer where the move starts is left alone: another path moved it first
SELECT is(ARRAY(SELECT * FROM dialer.move_calls(ARRAY[dialer.make_move(:did, 'dispatching', 'accepted', 'dialing'),
													  dialer.make_move(:sid, 'scheduled', 'claimed', 'dispatching', attempt => 7)])),
		  '{}'::bigint[], 'a move from where the call no longer is (status or attempt) moves nothing');
SELECT is((SELECT count(*) FROM dialer.call_events), (SELECT events FROM snap), '... and writes no event');

/* ------------------------------------------------------------------ notes, creations, the paths */

SELECT dialer.note_calls(ARRAY[:did::bigint], ARRAY['reconcile_failed'], ARRAY['{"n": 1}'::jsonb]);
SELECT is((SELECT row(e.from_status, e.to_status, e.detail)::text FROM dialer.call_events e
			WHERE e.call_id = :did AND e.event = 'reconcile_failed'),
		  row('dialing', 'dialing', '{"n": 1}'::jsonb)::text, 'a note records the call''s status as it is');

SELECT dialer.enqueue_call('+15550170002', now(), 'tap-life') AS eid \gset
INSERT INTO dialer.do_not_call (number) VALUES ('+15550170003');
SELECT dialer.enqueue_call('+15550170003', now(), 'tap-life') AS kid \gset
SELECT is(ARRAY(SELECT e.event || ': ' || coalesce(e.from_status, 'NULL') || ' -> ' || e.to_status
				  FROM dialer.call_events e WHERE e.call_id IN (:eid, :kid) ORDER BY e.id),
		  ARRAY['enqueued: NULL -> scheduled', 'skipped: NULL -> skipped'], 'enqueue writes a creation');
SELECT is((SELECT count(*) FROM dialer.call_events e
			WHERE e.call_id IN (:eid, :kid)
			  AND NOT EXISTS (SELECT 1 FROM dialer.call_transitions t
							   WHERE t.from_status IS NULL AND t.event = e.event AND t.to_status = e.to_status)),
		  0::bigint, '... each a creation row of dialer.call_transitions');

-- cancel_call and retry_call ask the table
SELECT is(dialer.cancel_call(:eid), true, 'cancel_call moves a scheduled call (a row scheduled -canceled->)');
SELECT is(dialer.retry_call(:eid), false, 'retry_call refuses a canceled call: no row canceled -requeued->');

/* ------------------------------------------------------------------ the diagram */

SELECT ok(dialer.call_life_diagram() LIKE E'stateDiagram-v2\n    [*] --> scheduled: enqueued\n%'
		  AND strpos(dialer.call_life_diagram(), E'\n    dispatching --> dialing: accepted, callback, reconcile, reconciled, webhook\n') > 0
		  AND strpos(dialer.call_life_diagram(), E'\n    expired --> [*]') > 0,
		  'the diagram draws the rows: creations from [*], the moves with their events, final statuses to [*]');

SELECT * FROM finish();
ROLLBACK;
