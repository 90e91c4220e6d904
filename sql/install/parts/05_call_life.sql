/*
 * pg_dialer: the life of a call, as data, and the one function that moves a call.
 *
 *   dialer.call_transitions   every legal move: (from status, event, to status), with what
 *                             the move does besides (an attempt counted or given back, a
 *                             new run, lookups counted afresh)
 *   dialer.call_notes         the events recorded about a call without moving it
 *   dialer.move_calls()       the one writer of scheduled_calls.status: it checks each move
 *                             against call_transitions (an illegal one raises, and nothing
 *                             changes), moves the calls and writes each move's event
 *   dialer.note_calls()       the writer of the events that move nothing
 *   dialer.call_life_diagram() the diagram README.md prints, drawn from call_transitions
 *
 * The statuses themselves (dialer.call_statuses) and their groups are in 00_schema.sql,
 * beside the table whose CHECK they are.
 *
 * Every path that changes a call's status (claim, stored answer, webhook, reconciliation
 * and search, cancel, retry, expiry, policy skip, do-not-call, recovery after a crash)
 * builds its moves with dialer.make_move() and hands them to dialer.move_calls().  A call
 * is created by enqueue (dialer.enqueue_call, dialer.enqueue_calls) with the status and
 * event of a creation row (from_status NULL); test/pgtap/call_life.sql reads the catalog's
 * function bodies and fails when any other function writes scheduled_calls.status.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * The legal moves of a call.  A row (from_status, event, to_status) allows a call in
 * from_status to move to to_status, writing an event named event; from_status NULL is a
 * creation (enqueue).  The other columns say what the move does besides the status.
 */
CREATE TABLE dialer.call_transitions (
	from_status			text REFERENCES dialer.call_statuses (status),
	event				text NOT NULL CHECK (event ~ '^[a-z_]{1,40}$'),
	to_status			text NOT NULL REFERENCES dialer.call_statuses (status),
	attempts_change		int NOT NULL DEFAULT 0 CHECK (attempts_change BETWEEN -1 AND 1),
	starts_run			boolean NOT NULL DEFAULT false,
	clears_deadline		boolean NOT NULL DEFAULT false,
	resets_lookups		boolean NOT NULL DEFAULT false,
	resets_searches		boolean NOT NULL DEFAULT false,
	made_by				text NOT NULL,
	description			text NOT NULL,
	UNIQUE NULLS NOT DISTINCT (from_status, event, to_status)
);
COMMENT ON TABLE dialer.call_transitions IS
	'The legal moves of a call: (from_status, event, to_status), and what each does besides. dialer.move_calls() refuses any other move; dialer.call_life_diagram() draws them';
COMMENT ON COLUMN dialer.call_transitions.from_status IS 'Status the call is in (NULL: the call is created, by enqueue)';
COMMENT ON COLUMN dialer.call_transitions.event IS 'The event the move writes to dialer.call_events';
COMMENT ON COLUMN dialer.call_transitions.to_status IS 'Status the call moves to (the same as from_status: it stays, e.g. parked to a new time)';
COMMENT ON COLUMN dialer.call_transitions.attempts_change IS 'Added to scheduled_calls.attempts: +1 when a request is claimed, -1 when a claim is given back unsent';
COMMENT ON COLUMN dialer.call_transitions.starts_run IS 'A new run begins (attempts_base := attempts, finished_at cleared): dialer.retry_call()';
COMMENT ON COLUMN dialer.call_transitions.clears_deadline IS 'The deadline is removed (an expired call put back in the queue would expire again at once)';
COMMENT ON COLUMN dialer.call_transitions.resets_lookups IS 'Failed lookups at the provider are counted afresh (reconcile_failures := 0)';
COMMENT ON COLUMN dialer.call_transitions.resets_searches IS 'Searches at the provider are counted afresh (reconcile_searches := 0)';
COMMENT ON COLUMN dialer.call_transitions.made_by IS 'The function(s) that make this move';
COMMENT ON COLUMN dialer.call_transitions.description IS 'When the move happens';

INSERT INTO dialer.call_transitions
	(from_status, event, to_status, attempts_change, starts_run, clears_deadline, resets_lookups, resets_searches,
	 made_by, description) VALUES
	(NULL, 'enqueued', 'scheduled', 0, false, false, false, false,
	 'enqueue_call, enqueue_calls', 'a call is enqueued'),
	(NULL, 'skipped', 'skipped', 0, false, false, false, false,
	 'enqueue_call, enqueue_calls', 'a call enqueued for a number on the do-not-call list, or refused by a calling policy, is stored as skipped'),
	('scheduled', 'claimed', 'dispatching', 1, false, false, false, false,
	 'claim_calls', 'the dispatcher claims a due call: its request is about to leave'),
	('scheduled', 'window_wait', 'scheduled', 0, false, false, false, false,
	 'claim_calls, reevaluate_parked_calls', 'a due call outside its calling window is parked until the window opens (or the window changed)'),
	('scheduled', 'expired', 'expired', 0, false, false, false, false,
	 'claim_calls', 'a due call past its deadline'),
	('scheduled', 'skipped', 'skipped', 0, false, false, false, false,
	 'claim_calls, skip_scheduled_calls', 'a call that may no longer be made: do-not-call, a calling policy''s refusal, not in dialer.allowed_numbers, no calling window'),
	('scheduled', 'canceled', 'canceled', 0, false, false, false, false,
	 'cancel_call', 'canceled before it was claimed'),
	('dispatching', 'claim_released', 'scheduled', -1, false, false, false, false,
	 'release_claims', 'the dispatcher stopped while the claim waited for standbys: no request left'),
	('dispatching', 'accepted', 'dialing', 0, false, false, true, false,
	 'record_results', 'the provider accepted the request'),
	('dispatching', 'retry_scheduled', 'scheduled', 0, false, false, true, false,
	 'record_results', 'a transient failure (no connection, HTTP 429 or 5xx, ...): retried after a delay'),
	('dispatching', 'failed', 'failed', 0, false, false, true, false,
	 'record_results', 'a permanent failure, or the run''s attempts are used up'),
	('dispatching', 'unknown', 'unknown', 0, false, false, true, false,
	 'record_results, recover_dispatching', 'the request may have reached the provider but its answer was lost (or the dispatcher stopped)'),
	('dialing', 'unknown', 'unknown', 0, false, false, false, false,
	 'claim_reconciliations, apply_reconciliation', 'no final status within dialer.reconcile_after, and the call cannot be looked up (no provider call id, or 3 failed lookups)'),
	('failed', 'requeued', 'scheduled', 0, true, false, true, true,
	 'retry_call', 'an operator retries the call: a new run'),
	('unknown', 'requeued', 'scheduled', 0, true, false, true, true,
	 'retry_call', 'an operator retries the call: a new run'),
	('expired', 'requeued', 'scheduled', 0, true, true, true, true,
	 'retry_call', 'an operator retries the call: a new run, without the deadline'),
	('held', 'requeued', 'scheduled', 0, true, false, true, true,
	 'retry_call', 'an operator retries a held call: a new run'),
	('held', 'canceled', 'canceled', 0, false, false, false, false,
	 'cancel_call', 'an operator cancels a held call');

/*
 * What an outcome rule (dialer.outcome_rules) does to a call its provider's word (or a
 * refused request) just ended: retry puts it back in the queue, hold keeps it for an
 * operator.
 */
INSERT INTO dialer.call_transitions (from_status, event, to_status, made_by, description)
SELECT f.status, a.event, a.status, 'apply_provider_status, record_results',
	   format('the outcome rule of a call ended %s says %s', replace(f.status, '_', ' '), a.rule)
  FROM unnest(ARRAY['completed', 'no_answer', 'busy', 'failed', 'canceled']) WITH ORDINALITY AS f(status, fo)
 CROSS JOIN unnest(ARRAY['retry_scheduled', 'held'], ARRAY['scheduled', 'held'], ARRAY['retry', 'hold'])
			WITH ORDINALITY AS a(event, status, rule, ao)
 ORDER BY f.fo, a.ao;

/*
 * What a provider reports moves a call in progress (dispatching: the report came before
 * the dispatcher stored the answer; dialing; unknown: the provider's word settles it):
 * under way (dialing), or its outcome.  The event is the report's source: a Twilio status
 * callback, a JSON webhook, a lookup of the call (reconcile) or a search that found it
 * (reconciled, which also counts the call's searches afresh).
 */
INSERT INTO dialer.call_transitions (from_status, event, to_status, resets_searches, made_by, description)
SELECT f.status, e.event, t.status, f.status = 'unknown' AND e.event = 'reconciled',
	   CASE WHEN e.event = 'reconciled' THEN 'apply_provider_status, settle_searched_call' ELSE 'apply_provider_status' END,
	   format('the provider reports the call %s (%s)',
			  CASE t.status WHEN 'dialing' THEN 'under way' ELSE replace(t.status, '_', ' ') END, e.what)
  FROM unnest(ARRAY['dispatching', 'dialing', 'unknown']) WITH ORDINALITY AS f(status, fo)
 CROSS JOIN unnest(ARRAY['callback', 'webhook', 'reconcile', 'reconciled'],
				   ARRAY['a status callback of form fields', 'a JSON webhook', 'a lookup at the provider',
						 'a search at the provider found it']) WITH ORDINALITY AS e(event, what, eo)
 CROSS JOIN unnest(ARRAY['dialing', 'completed', 'no_answer', 'busy', 'failed', 'canceled']) WITH ORDINALITY AS t(status, tor)
 ORDER BY f.fo, e.eo, t.tor;

/*
 * Events recorded about a call that move nothing: they carry the call's status as it is
 * (from_status = to_status).
 */
CREATE TABLE dialer.call_notes (
	event				text PRIMARY KEY CHECK (event ~ '^[a-z_]{1,40}$'),
	made_by				text NOT NULL,
	description			text NOT NULL
);
COMMENT ON TABLE dialer.call_notes IS
	'The events recorded about a call without moving it (written by dialer.note_calls())';
COMMENT ON COLUMN dialer.call_notes.event IS 'The event''s name in dialer.call_events';
COMMENT ON COLUMN dialer.call_notes.made_by IS 'The function(s) that record it';
COMMENT ON COLUMN dialer.call_notes.description IS 'When it is recorded';

INSERT INTO dialer.call_notes (event, made_by, description) VALUES
	('callback', 'apply_provider_status', 'a status callback of form fields that moves nothing: stale, of another attempt, after the call ended, or a status pg_dialer does not know'),
	('webhook', 'apply_provider_status', 'a JSON webhook that moves nothing (as for callback)'),
	('reconcile', 'apply_provider_status', 'a lookup''s answer that moves nothing (as for callback)'),
	('reconciled', 'apply_provider_status', 'a search''s answer that moves nothing (as for callback)'),
	('reconcile_failed', 'apply_reconciliation', 'a lookup of the call at its provider failed (an error, a 404, an answer without a status)'),
	('reconcile_search', 'apply_search', 'a search for an unknown call settled nothing (not found, ambiguous, incomplete, failed), or came after the call was settled'),
	('suppressed', 'follow_outcome', 'an outcome rule said suppress: the call''s number was added to the do-not-call ledger');

/*
 * One move of one call, as dialer.move_calls() takes it.  NULL in next_attempt_at,
 * last_error, provider_call_id, provider_status: keep the call's; attempt NULL: whatever
 * the call's current attempt.
 */
CREATE TYPE dialer.call_move AS (
	call_id				bigint,
	attempt				int,
	from_status			text,
	event				text,
	to_status			text,
	detail				jsonb,
	next_attempt_at		timestamptz,
	last_error			text,
	provider_call_id	text,
	provider_status		text,
	outcome				text
);
COMMENT ON TYPE dialer.call_move IS
	'Internal: one move of one call for dialer.move_calls(): the call (and its attempt, NULL: any), from, event, to, the event''s detail, and the call''s new next_attempt_at, last_error, provider_call_id, provider_status (NULL: kept). Built with dialer.make_move()';

COMMENT ON COLUMN dialer.call_move.call_id IS 'The call to move';
COMMENT ON COLUMN dialer.call_move.attempt IS 'Move it only while it is at this attempt (NULL: at any)';
COMMENT ON COLUMN dialer.call_move.from_status IS 'Move it only while it is in this status';
COMMENT ON COLUMN dialer.call_move.event IS 'The event of the move (dialer.call_transitions.event)';
COMMENT ON COLUMN dialer.call_move.to_status IS 'The status it moves to';
COMMENT ON COLUMN dialer.call_move.detail IS 'The detail of the event';
COMMENT ON COLUMN dialer.call_move.next_attempt_at IS 'Its new next_attempt_at (NULL: kept)';
COMMENT ON COLUMN dialer.call_move.last_error IS 'Its new last_error (NULL: kept)';
COMMENT ON COLUMN dialer.call_move.provider_call_id IS 'Its provider call id (NULL: kept)';
COMMENT ON COLUMN dialer.call_move.provider_status IS 'Its provider status (NULL: kept)';
COMMENT ON COLUMN dialer.call_move.outcome IS 'The outcome class the move decides (dialer.outcome_classes), written to its event (NULL: none)';

/*
 * A move, by name: dialer.make_move(c.id, 'scheduled', 'canceled', 'canceled',
 * detail => ...).  Inlined where it is used.
 */
CREATE FUNCTION dialer.make_move(call_id bigint, from_status text, event text, to_status text,
								 detail jsonb DEFAULT '{}', attempt int DEFAULT NULL,
								 next_attempt_at timestamptz DEFAULT NULL, last_error text DEFAULT NULL,
								 provider_call_id text DEFAULT NULL, provider_status text DEFAULT NULL,
								 outcome text DEFAULT NULL)
RETURNS dialer.call_move
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT ROW(call_id, attempt, from_status, event, to_status, coalesce(detail, '{}'),
			   next_attempt_at, last_error, provider_call_id, provider_status, outcome)::dialer.call_move;
$$;
COMMENT ON FUNCTION dialer.make_move(bigint, text, text, text, jsonb, int, timestamptz, text, text, text, text) IS
	'Internal: one move of a call (dialer.call_move) by named arguments, for dialer.move_calls()';

/*
 * The Idempotency-Key of a call's requests: the same for every attempt of one run (a retry
 * after a lost answer must not become a second call at a provider that honours the key),
 * new for a new run (dialer.retry_call), never the same for two calls.
 */
CREATE FUNCTION dialer.request_idempotency_key(call_id bigint, attempts_base int, created_at timestamptz)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE	-- as extract() is: so that it is inlined where it is used
AS $$
	SELECT 'pgd-' || call_id || '-' || attempts_base || '-' || (extract(epoch FROM created_at) * 1000000)::bigint;
$$;
COMMENT ON FUNCTION dialer.request_idempotency_key(bigint, int, timestamptz) IS
	'Internal: the Idempotency-Key of a call''s requests (pgd-<id>-<run>-<created_at in us>): one per run of the call';

/*
 * Whether a call in status may make a move named event (a row of
 * dialer.call_transitions): what cancel_call and retry_call ask before they move a call.
 */
CREATE FUNCTION dialer.may_move(status text, event text)
RETURNS boolean
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT EXISTS (SELECT 1 FROM dialer.call_transitions t
					WHERE t.from_status = may_move.status AND t.event = may_move.event);
$$;
COMMENT ON FUNCTION dialer.may_move(text, text) IS
	'Internal: true when dialer.call_transitions has a move named event from status';

/*
 * Raises the error of a move dialer.call_transitions does not allow.
 */
CREATE FUNCTION dialer.raise_illegal_move(bad dialer.call_move)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	RAISE EXCEPTION 'illegal move of call %: % from % to %', bad.call_id, coalesce(bad.event, 'NULL'),
		coalesce(bad.from_status, 'NULL'), coalesce(bad.to_status, 'NULL')
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = format('dialer.call_transitions has no row (from_status, event, to_status) = (%s, %s, %s); nothing was changed.',
							  coalesce(bad.from_status, 'NULL'), coalesce(bad.event, 'NULL'), coalesce(bad.to_status, 'NULL')),
			  HINT = 'The legal moves are the rows of dialer.call_transitions (SELECT dialer.call_life_diagram() draws them); a call is created only by enqueue.';
END;
$$;
COMMENT ON FUNCTION dialer.raise_illegal_move(dialer.call_move) IS
	'Internal: raises "illegal move of call N" for a move dialer.call_transitions does not allow';

/*
 * Moves calls: the one writer of dialer.scheduled_calls.status.  Every move must be a row
 * of dialer.call_transitions, else the first that is not raises and nothing changes; a
 * call may be named once.  A call no longer in the move's from_status (or no longer at its
 * attempt) is left where it is: another path moved it first.  Each moved call gets its
 * status, next_attempt_at, last_error, provider_call_id and provider_status (NULL: kept),
 * finished_at when the status is final (kept if set; cleared otherwise), updated_at, and
 * what its transition does besides (attempts, a new run, counters afresh); and its event.
 * An attempt counted (a claim) gets its row in dialer.call_attempts, with the request's
 * Idempotency-Key; an attempt given back (a claim released unsent) loses it.
 * Returns the ids of the calls moved.  The caller holds or takes the calls' row locks
 * (the UPDATE takes them), and wakes the dispatcher when it should.
 */
CREATE FUNCTION dialer.move_calls(moves dialer.call_move[])
RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
-- planned once per session, each call found by its key whatever the queue's size (the
-- claim and the stored answers of the dispatcher run through here: see claim_calls)
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
	v_bad		dialer.call_move;
	v_legal		int;
	v_calls		int;
	v_ids		bigint[];
	v_id		bigint;
BEGIN
	-- one statement (the dispatcher moves a few calls at a time, many times a second):
	-- the legal moves are made, and counted with the calls they name; an illegal move or a
	-- call named twice raises below, which undoes the statement's writes with it
	WITH m AS MATERIALIZED (
		SELECT m.*, t.event AS legal_event, t.attempts_change, t.starts_run, t.clears_deadline,
			   t.resets_lookups, t.resets_searches, s.final
		  FROM unnest(moves) m
		  LEFT JOIN dialer.call_transitions t
			ON t.from_status = m.from_status AND t.event = m.event AND t.to_status = m.to_status
		  LEFT JOIN dialer.call_statuses s ON s.status = t.to_status
	), moved AS (
		UPDATE dialer.scheduled_calls c
		   SET status = m.to_status,
			   attempts = c.attempts + m.attempts_change,
			   attempts_base = CASE WHEN m.starts_run THEN c.attempts ELSE c.attempts_base END,
			   deadline = CASE WHEN m.clears_deadline THEN NULL ELSE c.deadline END,
			   next_attempt_at = coalesce(m.next_attempt_at, c.next_attempt_at),
			   last_error = coalesce(m.last_error, c.last_error),
			   provider_call_id = coalesce(m.provider_call_id, c.provider_call_id),
			   provider_status = coalesce(m.provider_status, c.provider_status),
			   finished_at = CASE WHEN m.final THEN coalesce(c.finished_at, now()) END,
			   reconcile_failures = CASE WHEN m.resets_lookups THEN 0 ELSE c.reconcile_failures END,
			   reconcile_searches = CASE WHEN m.resets_searches THEN 0 ELSE c.reconcile_searches END,
			   updated_at = now()
		  FROM m
		 WHERE m.legal_event IS NOT NULL
		   AND c.id = m.call_id AND c.status = m.from_status
		   AND (m.attempt IS NULL OR c.attempts = m.attempt)
		RETURNING c.id, m.event, m.from_status, m.to_status, m.detail, m.outcome, m.attempts_change,
				  c.attempts, c.attempts_base, c.created_at
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail, outcome)
		SELECT v.id, v.event, v.from_status, v.to_status, v.detail, v.outcome FROM moved v
	), attempt_begun AS (
		-- an attempt counted (a claim): its row, the request about to leave
		INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, idempotency_key)
		SELECT v.id, v.attempts, now(), dialer.request_idempotency_key(v.id, v.attempts_base, v.created_at)
		  FROM moved v
		 WHERE v.attempts_change > 0
	), attempt_undone AS (
		-- an attempt given back (a claim released before its request left): its row goes
		DELETE FROM dialer.call_attempts a
		 USING moved v
		 WHERE v.attempts_change < 0
		   AND a.call_id = v.id AND a.attempt = v.attempts + 1 AND a.http_status IS NULL
	)
	SELECT (SELECT count(m.legal_event) FROM m), (SELECT count(DISTINCT m.call_id) FROM m),
		   (SELECT array_agg(v.id) FROM moved v)
	  INTO v_legal, v_calls, v_ids;

	IF v_legal < cardinality(moves) THEN
		SELECT m.* INTO v_bad
		  FROM unnest(moves) m
		 WHERE m.from_status IS NULL
			OR NOT EXISTS (SELECT 1 FROM dialer.call_transitions t
							WHERE t.from_status = m.from_status AND t.event = m.event AND t.to_status = m.to_status)
		 LIMIT 1;
		PERFORM dialer.raise_illegal_move(v_bad);
	END IF;
	IF v_calls < cardinality(moves) THEN
		RAISE EXCEPTION 'a call is moved twice in one dialer.move_calls()'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Each call may be named once per call of move_calls; nothing was changed.',
				  HINT = 'Move it in two calls, one after the other.';
	END IF;
	FOREACH v_id IN ARRAY coalesce(v_ids, '{}') LOOP
		RETURN NEXT v_id;
	END LOOP;
END;
$$;
COMMENT ON FUNCTION dialer.move_calls(dialer.call_move[]) IS
	'Internal: the one writer of scheduled_calls.status: moves calls by rows of dialer.call_transitions (an illegal move raises and changes nothing), writes each move''s event; a call no longer where the move starts is left alone; returns the ids moved';

/*
 * Records events that move nothing (a row of dialer.call_notes each), with the call's
 * status as it is.  Calls that no longer exist are left out.  An unknown event raises
 * and nothing is written.
 */
CREATE FUNCTION dialer.note_calls(call_ids bigint[], events text[], details jsonb[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_bad text;
BEGIN
	SELECT n.event INTO v_bad
	  FROM unnest(events) n(event)
	 WHERE n.event IS NULL OR NOT EXISTS (SELECT 1 FROM dialer.call_notes k WHERE k.event = n.event)
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'unknown note event %', coalesce(v_bad, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'dialer.call_notes has no such event; nothing was written.',
				  HINT = 'Events that move a call are written by dialer.move_calls().';
	END IF;
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	SELECT n.call_id, n.event, c.status, c.status, coalesce(n.detail, '{}')
	  FROM unnest(call_ids, events, details) n(call_id, event, detail)
	  JOIN dialer.scheduled_calls c ON c.id = n.call_id;
END;
$$;
COMMENT ON FUNCTION dialer.note_calls(bigint[], text[], jsonb[]) IS
	'Internal: records events that move nothing (rows of dialer.call_notes), with the call''s status as it is';

/*
 * The call's life as a Mermaid state diagram (GitHub draws it), from
 * dialer.call_transitions: one arrow per (from, to), labelled with its events; a creation
 * starts at [*], a final status may end at [*].  README.md prints its output; the suite
 * checks that the two agree.
 */
CREATE FUNCTION dialer.call_life_diagram()
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	WITH arrows AS (
		SELECT t.from_status, t.to_status, string_agg(t.event, ', ' ORDER BY t.event) AS events,
			   min(coalesce(f.position, 0)) AS fp, min(s.position) AS tp
		  FROM dialer.call_transitions t
		  LEFT JOIN dialer.call_statuses f ON f.status = t.from_status
		  JOIN dialer.call_statuses s ON s.status = t.to_status
		 GROUP BY t.from_status, t.to_status
	)
	SELECT 'stateDiagram-v2' || E'\n'
		   || (SELECT string_agg(format('    %s --> %s: %s', coalesce(a.from_status, '[*]'), a.to_status, a.events),
								 E'\n' ORDER BY a.fp, a.tp)
				 FROM arrows a)
		   || E'\n'
		   || (SELECT string_agg(format('    %s --> [*]', s.status), E'\n' ORDER BY s.position)
				 FROM dialer.call_statuses s WHERE s.final);
$$;
COMMENT ON FUNCTION dialer.call_life_diagram() IS
	'The legal moves of a call (dialer.call_transitions) as a Mermaid state diagram: the one README.md prints';

/*
 * Skips scheduled calls at once, each with its last_error and the detail of its skipped
 * event: the one home of "a call that may no longer be made is settled now, not when it
 * falls due" (a number added to the do-not-call list, a consent revoked, a refusal
 * recorded).  A call no longer scheduled (claimed meanwhile, canceled) is left alone: its
 * row is re-checked under the UPDATE's lock.  Returns how many were skipped.
 */
CREATE FUNCTION dialer.skip_scheduled_calls(call_ids bigint[], errors text[], details jsonb[])
RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT count(*)::int
	  FROM dialer.move_calls(ARRAY(
			SELECT dialer.make_move(s.id, 'scheduled', 'skipped', 'skipped', s.detail, last_error => s.error)
			  FROM unnest(call_ids, errors, details) AS s(id, error, detail)));
$$;
COMMENT ON FUNCTION dialer.skip_scheduled_calls(bigint[], text[], jsonb[]) IS
	'Internal: skips the calls still scheduled among call_ids now, each with its last_error and skipped-event detail (do-not-call entries, revoked consents, refusals); returns how many';
REVOKE ALL ON FUNCTION dialer.skip_scheduled_calls(bigint[], text[], jsonb[]) FROM PUBLIC;
