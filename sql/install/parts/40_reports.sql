/*
 * pg_dialer: what a provider says about a call, stored.
 *
 * A report comes from a webhook, from a lookup (reconciliation) or from a search: whatever its
 * way, it is stored by the functions here, in one order of statuses, so that an older report
 * never overwrites a newer one:
 *
 * dialer.store_provider_report()   the one store of a report: attempt row, call move, outcome
 * dialer.apply_provider_status()   a report applied to its call (by provider call id)
 * dialer.apply_machine_verdict()   the verdict of an asynchronous machine detection, kept
 *                                  on the attempt for the outcome
 * dialer.lock_provider_call_id()   serializes a report found by provider call id with the
 *                                  storing of that id
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/* ------------------------------------------------------------------------------------
 * Applying a status report
 *
 * dialer.apply_provider_status() reads as its steps, each a function of its own:
 *   provider_report_attempt()   which attempt a report is about; seen before?
 *   provider_status_advances()  does the attempt's provider status move forward?
 *   provider_status_outcome()   the call status a provider status leads to (above)
 *   outcome_of(), next_action() the outcome class, and what its rule says follows
 *                               (06_outcomes.sql)
 *   call_outcome_error()        the call's last_error after an outcome
 *   store_provider_report()     every write (report_value(): which of a stored and a
 *                               reported attempt field is kept)
 * The helpers without a SET of their own are inlined or cached under the caller's
 * pinned search_path (see the file's opening comment).
 * ------------------------------------------------------------------------------------ */

/*
 * The attempt a status report is about, and one look at the call's events: the attempt
 * with this provider call id, else the current attempt when it has no provider call id
 * yet (the report came before the worker stored it: it is adopted) or when no provider
 * call id is given; NULL when none matches.  report_key is dedupe_key within that
 * attempt (<attempt>:<dedupe_key>, '-' for no attempt); duplicate says whether an event
 * already recorded it; last_sequence is the highest sequence already applied to the
 * attempt (stale reports left out).  Exactly one row.  Run after the call's lock, so that
 * a report committed meanwhile is seen.
 */
CREATE FUNCTION dialer.provider_report_attempt(call_id bigint, current_attempt int,
											   provider_call_id text, dedupe_key text)
RETURNS TABLE (attempt dialer.call_attempts, duplicate boolean, last_sequence bigint, report_key text)
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT x.att, ev.dup, ev.last_seq, k.key
	  FROM (SELECT 1) one
	  LEFT JOIN LATERAL (
			SELECT a AS att FROM dialer.call_attempts a
			 WHERE a.call_id = provider_report_attempt.call_id
			   AND (a.provider_call_id = provider_report_attempt.provider_call_id
					OR (a.attempt = provider_report_attempt.current_attempt
						AND (provider_report_attempt.provider_call_id IS NULL OR a.provider_call_id IS NULL)))
			 ORDER BY a.provider_call_id = provider_report_attempt.provider_call_id DESC NULLS LAST, a.attempt DESC
			 LIMIT 1) x ON true
	  CROSS JOIN LATERAL (SELECT coalesce((x.att).attempt::text, '-') || ':' || provider_report_attempt.dedupe_key AS key) k
	  CROSS JOIN LATERAL (
			SELECT coalesce(pg_catalog.bool_or(e.detail->>'dedupe_key' = k.key), false) AS dup,
				   pg_catalog.max((e.detail->>'sequence')::bigint)
					 FILTER (WHERE e.detail ? 'sequence' AND (e.detail->>'attempt')::int = (x.att).attempt
								   AND NOT e.detail ? 'stale') AS last_seq
			  FROM dialer.call_events e
			 WHERE e.call_id = provider_report_attempt.call_id) ev;
$$;
COMMENT ON FUNCTION dialer.provider_report_attempt(bigint, int, text, text) IS
	'Internal: the attempt a provider''s status report is about (by provider call id, else the current one), the report''s key within it, whether it was recorded before, and the highest sequence applied to the attempt';

/*
 * The last_error of a call after an outcome: kept while dialing and when completed;
 * 'failed: <error_code> <error_message>' from the report's attempt_data; 'no answer';
 * else the outcome itself (busy, canceled).  STABLE, as concat_ws is: so that it is inlined.
 */
CREATE FUNCTION dialer.call_outcome_error(outcome text, last_error text, attempt_data jsonb)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN outcome IN ('dialing', 'completed') THEN last_error
		WHEN outcome = 'failed' THEN
			'failed' || coalesce(': ' || nullif(pg_catalog.concat_ws(' ', attempt_data->>'error_code',
																   attempt_data->>'error_message'), ''), '')
		WHEN outcome = 'no_answer' THEN 'no answer'
		ELSE outcome END;
$$;
COMMENT ON FUNCTION dialer.call_outcome_error(text, text, jsonb) IS
	'Internal: a call''s last_error after a provider outcome (kept, failed: code message, no answer, or the outcome)';

/*
 * A value of an attempt after a report: the reported one when given, else the stored
 * one; for a stale report the other way round (it only fills what is still empty).
 */
CREATE FUNCTION dialer.report_value(stored anyelement, reported anyelement, stale boolean)
RETURNS anyelement
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN stale THEN coalesce(stored, reported) ELSE coalesce(reported, stored) END;
$$;
COMMENT ON FUNCTION dialer.report_value(anyelement, anyelement, boolean) IS
	'Internal: an attempt field after a status report: the reported value over the stored one, or for a stale report the stored one over the reported one';

/*
 * Every write of a status report: the attempt (attempt_id; NULL: none), with the outcome
 * class; then, when the report moves the call (moves), its move to new_status, and what
 * the outcome's rule says follows (next: retry back to the queue at next_attempt_at, hold
 * for an operator, suppress the number); else the report's event as a note, and the call's
 * provider status when it follows the current attempt's and the call is not back in the
 * queue (news, not a move).  call_row is the row as locked before the report; lock order:
 * the call (by the caller), then the attempt, as the dispatcher does.
 */
CREATE FUNCTION dialer.store_provider_report(
	call_row dialer.scheduled_calls,
	attempt_id bigint,
	provider_call_id text,
	provider_status text,
	attempt_data jsonb,
	stale boolean,
	is_current boolean,
	moves boolean,
	new_status text,
	outcome text,
	last_error text,
	next jsonb,
	event text,
	event_detail jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
	v_call		dialer.scheduled_calls := store_provider_report.call_row;
	p_sid		text := store_provider_report.provider_call_id;
	p_pstatus	text := store_provider_report.provider_status;
	p_data		jsonb := store_provider_report.attempt_data;
	p_stale		boolean := store_provider_report.stale;
	p_next		jsonb := store_provider_report.next;
BEGIN
	UPDATE dialer.call_attempts a
	   SET provider_call_id = coalesce(a.provider_call_id, p_sid),
		   provider_status = p_pstatus,
		   duration_seconds = dialer.report_value(a.duration_seconds, (p_data->>'duration_seconds')::int, p_stale),
		   answered_by = dialer.report_value(a.answered_by, p_data->>'answered_by', p_stale),
		   sip_response_code = dialer.report_value(a.sip_response_code, (p_data->>'sip_response_code')::int, p_stale),
		   recording_url = dialer.report_value(a.recording_url, p_data->>'recording_url', p_stale),
		   transcript = dialer.report_value(a.transcript, p_data->>'transcript', p_stale),
		   error_code = dialer.report_value(a.error_code, p_data->>'error_code', p_stale),
		   error_message = dialer.report_value(a.error_message, p_data->>'error_message', p_stale),
		   outcome = coalesce(store_provider_report.outcome, a.outcome)
	 WHERE a.id = store_provider_report.attempt_id;

	IF NOT store_provider_report.moves THEN
		IF store_provider_report.is_current AND p_pstatus IS DISTINCT FROM v_call.provider_status
		   AND v_call.status <> 'scheduled' THEN
			UPDATE dialer.scheduled_calls c
			   SET provider_status = coalesce(p_pstatus, c.provider_status), updated_at = pg_catalog.now()
			 WHERE c.id = v_call.id;
		END IF;
		PERFORM dialer.note_calls(ARRAY[v_call.id], ARRAY[store_provider_report.event],
								  ARRAY[store_provider_report.event_detail]);
		RETURN;
	END IF;
	PERFORM pg_catalog.count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
		v_call.id, v_call.status, store_provider_report.event, store_provider_report.new_status,
		store_provider_report.event_detail, outcome => store_provider_report.outcome,
		last_error => store_provider_report.last_error, provider_call_id => p_sid, provider_status => p_pstatus)]);
	PERFORM dialer.follow_outcome(v_call, store_provider_report.new_status, p_next);
END;
$$;
COMMENT ON FUNCTION dialer.store_provider_report(dialer.scheduled_calls, bigint, text, text, jsonb, boolean, boolean, boolean, text, text, text, jsonb, text, jsonb) IS
	'Internal: writes what apply_provider_status decided: the attempt''s fields and outcome class, and the call''s move with what its outcome''s rule says follows (dialer.follow_outcome), or the report as a note (dialer.note_calls)';

/*
 * Applies one status report of a provider to a call: the one place where callbacks,
 * JSON webhooks and reconciliation change a call's outcome.
 *
 *   call_id           pg_dialer's call id
 *   status            the provider's status (Twilio vocabulary, any spelling, see
 *                     normalize_provider_status); a status pg_dialer does not know is
 *                     recorded and moves nothing
 *   provider_call_id  the provider's id of the call (Twilio CallSid); it selects the
 *                     attempt.  NULL: the call's current attempt
 *   sequence          the provider's ordering of its reports for one provider call
 *                     (Twilio SequenceNumber); NULL when it has none
 *   attempt_data      what to store on the attempt: duration_seconds, answered_by,
 *                     sip_response_code, recording_url, transcript, error_code,
 *                     error_message (absent or null: keep what is stored)
 *   event_detail      what the event records about the report (never secrets)
 *   source            the event's name: callback, webhook, reconcile, ...
 *   dedupe_key        identifies the report within its attempt; default
 *                     provider_call_id/sequence (or /status without a sequence); stored
 *                     as <attempt>:<dedupe_key> in the event
 *
 * Rules:
 *   - A report whose dedupe_key the attempt has already recorded is a duplicate: nothing
 *     is written at all, the result says 'duplicate'.
 *   - Otherwise one event (named source) is appended, with from_status and to_status.
 *   - The attempt is the one with this provider_call_id; else the current attempt when
 *     it has no provider call id yet (the report came before the worker stored it: it is
 *     adopted); else the report matches no attempt ('unmatched': recorded, nothing moves).
 *   - Monotonic: a report with a sequence at or below one already applied to the attempt
 *     is stale: it only fills attempt fields still empty.  A provider status never moves
 *     back (queued < initiated < ringing < in-progress < final), and the call status
 *     never moves back (scheduled < dispatching < dialing < final).
 *   - Only the current attempt moves the call, and only from dispatching, dialing or
 *     unknown: under way -> dialing; final -> completed / busy / no_answer / failed /
 *     canceled with finished_at, or, for busy and no_answer when the retry policy allows
 *     (campaign's retry_busy / retry_no_answer / retry_delay over the provider's, and
 *     attempts - attempts_base < max_attempts, and before the deadline), back to
 *     scheduled after retry_delay with a retry_scheduled event.  An unknown call is
 *     resolved by its provider's word.  The worker is woken when a call leaves the
 *     provider's concurrency (final or re-scheduled).
 *
 * Returns {result: applied | stale | recorded | unmatched | duplicate | unknown_call,
 * call_id, attempt, status, previous_status}.
 */
CREATE FUNCTION dialer.apply_provider_status(
	call_id bigint,
	status text,
	provider_call_id text DEFAULT NULL,
	sequence bigint DEFAULT NULL,
	attempt_data jsonb DEFAULT '{}',
	event_detail jsonb DEFAULT '{}',
	source text DEFAULT 'callback',
	dedupe_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	p_call_id	bigint := apply_provider_status.call_id;
	p_sid		text := nullif(apply_provider_status.provider_call_id, '');
	p_seq		bigint := apply_provider_status.sequence;
	p_data		jsonb := coalesce(apply_provider_status.attempt_data, '{}');
	v_status	text := dialer.normalize_provider_status(apply_provider_status.status);
	v_outcome	text;
	v_call		dialer.scheduled_calls;
	v_look		record;
	v_att		dialer.call_attempts;
	v_current	boolean;
	v_stale		boolean := false;
	v_forward	boolean := false;
	v_new_pstatus text;
	v_moves		boolean;
	v_new_status text;
	v_error		text;
	v_kind		text;
	v_class		text;
	v_action	text;
	v_next_at	timestamptz;
	v_delay		interval;
	v_skipped	text;
	v_rule_set	text;
	v_result	text;
BEGIN
	IF p_call_id IS NULL OR v_status IS NULL OR v_status = '' THEN
		RAISE EXCEPTION 'apply_provider_status: call_id and status are required'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF jsonb_typeof(p_data) <> 'object' THEN
		RAISE EXCEPTION 'apply_provider_status: attempt_data must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	/* 1. the call, locked: reports of one call are applied one at a time */
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = p_call_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN jsonb_build_object('result', 'unknown_call', 'call_id', p_call_id);
	END IF;
	SELECT p.kind INTO v_kind FROM dialer.providers p WHERE p.name = v_call.provider;
	v_outcome := dialer.provider_status_outcome(v_status, v_kind);

	/* 2. the attempt it is about; a report already recorded changes nothing at all */
	SELECT * INTO v_look
	  FROM dialer.provider_report_attempt(p_call_id, v_call.attempts, p_sid,
			coalesce(apply_provider_status.dedupe_key, coalesce(p_sid, '-') || '/' || coalesce(p_seq::text, v_status)));
	v_att := v_look.attempt;
	IF v_look.duplicate THEN
		RETURN jsonb_build_object('result', 'duplicate', 'call_id', p_call_id, 'attempt', v_att.attempt,
								  'status', v_call.status, 'previous_status', v_call.status);
	END IF;
	v_current := v_att.id IS NOT NULL AND v_att.attempt = v_call.attempts;
	IF v_att.id IS NOT NULL THEN
		/* a report at or below a sequence already applied comes late: it only fills gaps */
		v_stale := p_seq IS NOT NULL AND v_look.last_sequence IS NOT NULL AND p_seq <= v_look.last_sequence;
		v_forward := NOT v_stale AND dialer.provider_status_advances(v_status, v_att.provider_status, v_kind);
		v_new_pstatus := CASE WHEN v_forward THEN v_status ELSE v_att.provider_status END;
	END IF;

	/* 3. the call: only its current attempt moves it, and only forward */
	v_new_status := v_call.status;
	v_moves := v_current AND NOT v_stale AND v_outcome IS NOT NULL
			   AND v_call.status = ANY (dialer.unsettled_statuses());
	IF v_moves THEN
		/* its class (who answered: the report's word, else the attempt's verdict), and what follows */
		v_class := dialer.outcome_of(v_kind, v_status, coalesce(p_data->>'answered_by', v_att.answered_by), p_data->>'error_code', NULL);
		IF v_class IS NOT NULL THEN
			SELECT n.action, n.next_attempt_at, n.retry_delay, n.skipped, n.rule_set
			  INTO v_action, v_next_at, v_delay, v_skipped, v_rule_set
			  FROM dialer.next_action(v_call, v_class) n;
		END IF;
		v_new_status := CASE v_action WHEN 'retry' THEN 'scheduled' WHEN 'hold' THEN 'held' ELSE v_outcome END;
		v_error := dialer.call_outcome_error(v_outcome, v_call.last_error, p_data);
	END IF;
	v_result := CASE
		WHEN v_att.id IS NULL THEN 'unmatched'
		WHEN v_stale THEN 'stale'
		WHEN v_new_status <> v_call.status OR v_forward THEN 'applied'
		ELSE 'recorded' END;

	/* 4. the writes, and the worker woken when a call leaves the provider's concurrency */
	PERFORM dialer.store_provider_report(
		call_row => v_call, attempt_id => v_att.id, provider_call_id => p_sid,
		provider_status => v_new_pstatus, attempt_data => p_data, stale => v_stale,
		is_current => v_current, moves => v_moves, new_status => v_outcome, outcome => v_class,
		last_error => v_error,
		next => dialer.next_action_detail(v_action, v_rule_set, v_class, v_att.attempt, v_next_at, v_delay, v_call),
		event => coalesce(apply_provider_status.source, 'callback'),
		event_detail => coalesce(apply_provider_status.event_detail, '{}') || jsonb_strip_nulls(jsonb_build_object(
			'provider_status', v_status, 'provider_call_id', p_sid, 'attempt', v_att.attempt,
			'sequence', p_seq, 'dedupe_key', v_look.report_key, 'result', v_result,
			'stale', CASE WHEN v_stale THEN true END,
			'unmatched', CASE WHEN v_att.id IS NULL THEN true END,
			'next_action', CASE WHEN v_action <> 'done' OR v_skipped IS NOT NULL THEN v_action END,
			'retry_skipped', v_skipped)));
	IF v_new_status <> v_call.status AND v_new_status <> 'dialing' THEN
		/* a concurrency slot is free (and maybe a retry is due); no warning per callback */
		PERFORM dialer.wake_worker_quietly();
	END IF;

	RETURN jsonb_build_object('result', v_result, 'call_id', p_call_id,
							  'attempt', CASE WHEN v_att.id IS NOT NULL THEN v_att.attempt END,
							  'status', v_new_status, 'previous_status', v_call.status);
END;
$$;
COMMENT ON FUNCTION dialer.apply_provider_status(bigint, text, text, bigint, jsonb, jsonb, text, text) IS
	'Applies one status report of a provider to a call (callbacks, webhooks, reconciliation): idempotent by dedupe_key, monotonic by sequence and status order, retry policy for busy/no_answer; returns {result, call_id, attempt, status, previous_status}';

/* ------------------------------------------------------------------------------------
 * Applying the verdict of an answering-machine detection
 * ------------------------------------------------------------------------------------ */

INSERT INTO dialer.call_notes (event, made_by, description) VALUES
	('machine_detection', 'apply_machine_verdict',
	 'the verdict of an asynchronous answering-machine detection (who answered): kept on the attempt for its outcome, or recorded only (late, repeated, conflicting, of another attempt)');

/*
 * Applies the verdict of an asynchronous answering-machine detection (who answered: Twilio's
 * AnsweredBy, sent on its own while the call goes on) to a call's attempt.  It moves nothing:
 * the attempt keeps it in answered_by, and the final status report then decides the outcome
 * class with it (dialer.apply_provider_status: voicemail_left, voicemail_no_message, fax,
 * answered).  As every report, it is idempotent and never moves anything backwards:
 *
 *   applied      the attempt is the call's current one, has no verdict and no outcome yet:
 *                answered_by is stored
 *   recorded     the attempt has this verdict already (from a status callback)
 *   conflicting  the attempt has another verdict: the first is kept
 *   late         the attempt has its final status (its outcome is decided) or is not the
 *                call's current attempt: nothing changes
 *   unmatched    no attempt of the call has this provider call id
 *   duplicate    the same verdict for the same provider call was recorded before: nothing
 *                is written at all
 *   unknown_call no such call
 *
 * Every result but duplicate and unknown_call writes one machine_detection event (a note).
 * provider_call_id selects the attempt (NULL: the current one); event_detail is what the
 * event keeps of the report (never secrets).  Returns {result, call_id, attempt, status,
 * answered_by}.
 */
CREATE FUNCTION dialer.apply_machine_verdict(call_id bigint, answered_by text, provider_call_id text DEFAULT NULL,
											 event_detail jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p_call_id	bigint := apply_machine_verdict.call_id;
	p_sid		text := nullif(apply_machine_verdict.provider_call_id, '');
	v_verdict	text := nullif(pg_catalog.btrim(apply_machine_verdict.answered_by), '');
	v_call		dialer.scheduled_calls;
	v_kind		text;
	v_look		record;
	v_att		dialer.call_attempts;
	v_result	text;
BEGIN
	IF p_call_id IS NULL OR v_verdict IS NULL THEN
		RAISE EXCEPTION 'apply_machine_verdict: call_id and answered_by are required'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	/* the call, locked as for every report; the attempt; a verdict seen before changes nothing */
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = p_call_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN jsonb_build_object('result', 'unknown_call', 'call_id', p_call_id);
	END IF;
	SELECT p.kind INTO v_kind FROM dialer.providers p WHERE p.name = v_call.provider;
	SELECT * INTO v_look
	  FROM dialer.provider_report_attempt(p_call_id, v_call.attempts, p_sid,
										  'machine_detection/' || coalesce(p_sid, '-') || '/' || v_verdict);
	v_att := v_look.attempt;
	IF v_look.duplicate THEN
		RETURN jsonb_build_object('result', 'duplicate', 'call_id', p_call_id, 'attempt', v_att.attempt,
								  'status', v_call.status, 'answered_by', v_att.answered_by);
	END IF;

	v_result := CASE
		WHEN v_att.id IS NULL THEN 'unmatched'
		WHEN v_att.answered_by = v_verdict THEN 'recorded'
		WHEN v_att.answered_by IS NOT NULL THEN 'conflicting'
		WHEN v_att.attempt <> v_call.attempts OR v_att.outcome IS NOT NULL
			 OR dialer.provider_status_rank(v_att.provider_status, v_kind) = 5 THEN 'late'
		ELSE 'applied' END;
	IF v_result = 'applied' THEN
		UPDATE dialer.call_attempts a SET answered_by = v_verdict WHERE a.id = v_att.id;
	END IF;
	PERFORM dialer.note_calls(ARRAY[p_call_id], ARRAY['machine_detection'],
		ARRAY[coalesce(apply_machine_verdict.event_detail, '{}') || jsonb_strip_nulls(jsonb_build_object(
			'answered_by', v_verdict, 'provider_call_id', p_sid, 'attempt', v_att.attempt,
			'dedupe_key', v_look.report_key, 'result', v_result,
			'kept_answered_by', CASE WHEN v_result = 'conflicting' THEN v_att.answered_by END,
			'outcome_when_answered', dialer.signal_outcome(v_kind, 'answered_by', ARRAY[v_verdict])))]);
	RETURN jsonb_build_object('result', v_result, 'call_id', p_call_id, 'attempt', v_att.attempt,
							  'status', v_call.status,
							  'answered_by', CASE WHEN v_result = 'applied' THEN v_verdict ELSE v_att.answered_by END);
END;
$$;
COMMENT ON FUNCTION dialer.apply_machine_verdict(bigint, text, text, jsonb) IS
	'Applies the verdict of an asynchronous answering-machine detection (answered_by) to a call''s current attempt, for its outcome class when the final status comes; idempotent, never after the outcome (late), never over another verdict; returns {result, call_id, attempt, status, answered_by}';

/*
 * Serializes, per provider call id, the callback that looks a call up by its CallSid and
 * the worker storing that CallSid: a transaction-level advisory lock (in a key space of
 * pg_dialer's own).  Taken before the look-up, so that either the look-up sees the sid
 * stored, or the worker sees the callback kept in pending_callbacks.
 */
CREATE FUNCTION dialer.lock_provider_call_id(provider_call_id text)
RETURNS void
LANGUAGE sql
VOLATILE STRICT
AS $$
	SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_dialer provider_call_id'),
											pg_catalog.hashtext(provider_call_id));
$$;
COMMENT ON FUNCTION dialer.lock_provider_call_id(text) IS
	'Internal: transaction lock serializing a callback looked up by CallSid with the storing of that CallSid';
