/*
 * pg_dialer: the dispatcher's side of the queue.
 *
 * The dispatcher (src/dispatcher.c and its modules, through src/queue.c) calls
 * these functions in short transactions: it claims due calls (committed before any
 * request leaves), sends the requests with no transaction open, then stores the
 * outcomes in batches.  They are plain SQL so that pgTAP can test the rules without
 * a dispatcher; no other role may execute them.
 *
 *   claiming       recover_dispatching, claim_calls, release_claims, next_due_at
 *                  (the providers' side: 10_providers.sql; windows: 15_recipient_time.sql)
 *   storing        record_results (a report's store: 40_reports.sql)
 *   re-evaluating  triggers when a calling window, a time zone or the do-not-call list
 *                  changes (reevaluate_parked_calls, ...)
 *   reconciling    calls whose outcome is unknown: claim_reconciliations and
 *                  apply_reconciliation (by provider call id), claim_searches and
 *                  apply_search (by what was sent)
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * Calls the worker left in 'dispatching' when it stopped: their request may have
 * reached the provider, so they are never re-sent automatically.  They become
 * 'unknown' (an operator, or reconciliation with the provider's records, decides).
 * Run by a worker when it starts, before it claims anything.
 */
CREATE FUNCTION dialer.recover_dispatching()
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_count int;
BEGIN
	WITH lost AS (
		-- every call dispatching, locked; the attempt of each, noted before it moves
		SELECT c.id, c.attempts FROM dialer.scheduled_calls c WHERE c.status = 'dispatching' FOR UPDATE
	), att AS (
		UPDATE dialer.call_attempts a
		   SET error_code = coalesce(a.error_code, 'dispatcher_restart'),
			   error_message = coalesce(a.error_message, 'outcome unknown: the dispatcher stopped')
		  FROM lost l
		 WHERE a.call_id = l.id AND a.attempt = l.attempts AND a.http_status IS NULL
	)
	SELECT count(*) INTO v_count
	  FROM dialer.move_calls(ARRAY(
			SELECT dialer.make_move(l.id, 'dispatching', 'unknown', 'unknown',
					jsonb_build_object('reason', 'dispatcher restarted while the request may have been in flight',
									   'attempt', l.attempts),
					last_error => 'dispatcher stopped before the outcome of the request was stored')
			  FROM lost l));
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.recover_dispatching() IS
	'Worker: at start-up, turns calls left in dispatching into unknown (with an event), never re-sending them; returns how many';

/*
 * The detail of the event a claim writes for a call, by its verdict v: claimed (go: the
 * attempt, and the policies that allowed it or the zones the window was read in), parked
 * for a window (window), skipped (do_not_call, not_allowed, refused, no_window) or expired.
 */
CREATE FUNCTION dialer.claim_event_detail(v text, attempt int, to_number text, deadline timestamptz,
										  zones text[], zone_source text, ws time, we time,
										  opens timestamptz, next_attempt_at timestamptz, decision text,
										  policy text, rule text, reason text, timezones text[],
										  policies text[], error text)
RETURNS jsonb
LANGUAGE sql
STABLE		-- as jsonb_build_object is: so the planner inlines it into the claim
AS $$
	SELECT CASE v
		-- under calling policies, the claim records which ones allowed it (the audit reads it);
		-- under the general window alone, the zones it was read in (none: the whole day)
		WHEN 'go' THEN CASE WHEN decision IS NOT NULL
			THEN jsonb_build_object('attempt', attempt, 'policies', policies, 'timezones', timezones,
									'message', reason)
			WHEN zones IS NULL THEN jsonb_build_object('attempt', attempt)
			ELSE jsonb_build_object('attempt', attempt) || dialer.window_zones_detail(to_number, zones, zone_source) END
		WHEN 'window' THEN CASE WHEN decision IS NULL
			THEN jsonb_build_object('opens_at', opens, 'next_attempt_at', next_attempt_at,
									'window_start', ws, 'window_end', we)
				 || dialer.window_zones_detail(to_number, zones, zone_source)
			ELSE jsonb_build_object('timezones', timezones, 'opens_at', opens, 'next_attempt_at', next_attempt_at,
									'policy', policy, 'rule', rule, 'message', reason) END
		WHEN 'no_window' THEN jsonb_build_object('reason', 'no_window', 'timezones', zones,
												 'timezone_source', zone_source, 'window_start', ws,
												 'window_end', we, 'message', error)
		WHEN 'refused' THEN dialer.policy_skip_detail('dispatch', policy, rule, timezones, reason)
		WHEN 'expired' THEN jsonb_build_object('deadline', deadline)
		WHEN 'do_not_call' THEN jsonb_build_object('reason', 'do_not_call', 'checked', 'dispatch')
		ELSE jsonb_build_object('reason', 'not_allowed', 'level', 'warning',
								'message', 'dialer.allowed_numbers is set and does not list this number')
	END;
$$;
COMMENT ON FUNCTION dialer.claim_event_detail(text, int, text, timestamptz, text[], text, time, time, timestamptz, timestamptz, text, text, text, text, text[], text[], text) IS
	'Internal: the detail of the event a claim writes for a call, by its verdict (claimed, parked for a window, skipped, expired)';

/*
 * Claims up to max_calls due calls of one provider, highest priority then
 * earliest first, skipping rows other sessions hold locked.  In the same
 * statement, due calls that must not be dialled are settled instead:
 *   - past their deadline: expired;
 *   - number on the do-not-call list, or not in dialer.allowed_numbers: skipped;
 *   - outside the recipient's calling window, read in the recipient's zones
 *     (dialer.recipient_zones: the call's, the campaign's, the number's, else
 *     default_timezone; several zones: open only when open in all): left scheduled,
 *     due again when the window opens (or at the deadline, to expire then), with a
 *     window_wait event naming the zones and their source; a window that never opens
 *     in all of a number's zones at once: skipped (no_window);
 *   - when enabled calling policies apply to the call (dialer.batch_verdicts, once
 *     for the batch; dialer.compliance_verdict for the calls it cannot settle by rule set):
 *     their windows and blackouts, intersected with the general window, in the
 *     recipient's zones (explicit, else from the number) park it the same way; a
 *     reached cap, a silence after refusal or an unknown zone skip it.  Events and
 *     last_error name the policy and rule.  With no enabled policy at all the
 *     verdict is not even computed.
 * The others become 'dispatching' with their attempt row; the caller commits
 * before it sends anything.
 *
 * Two statements planned once per session (re-planning the claim for every single call
 * would cost more than the claim), with sequential scans ruled out so that the one plan
 * stays right however large the queue grows, and sorts ruled out so that the claim always
 * walks scheduled_calls_claim_idx in order and stops at max_calls: with statistics saying
 * most scheduled calls are due later (a warm queue), the planner would otherwise read
 * every due call and sort them, at each claim.  (jit off: the disabled sort left in the
 * second statement would make its cost look worth compiling.)
 */
CREATE FUNCTION dialer.claim_calls(provider text, max_calls int, default_timezone text,
								   window_start time, window_end time, allowed_numbers text)
RETURNS TABLE (id bigint, attempt int, to_number text, from_number text, mode text,
			   payload text, message text, url text, script text, base_url text,
			   idempotency_key text, campaign text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_sort = off
SET jit = off
AS $$
DECLARE
	v_allowed text[];
	v_ids bigint[];
	v_policies boolean;
	v_moves dialer.call_move[];
	v_go bigint[];
BEGIN
	IF coalesce(btrim(allowed_numbers), '') <> '' THEN
		v_allowed := string_to_array(regexp_replace(allowed_numbers, '\s', '', 'g'), ',');
	END IF;

	v_ids := ARRAY(SELECT c.id FROM dialer.scheduled_calls c
					WHERE c.provider = claim_calls.provider
					  AND c.status = 'scheduled'
					  AND c.next_attempt_at <= now()
					ORDER BY c.priority DESC, c.next_attempt_at
					LIMIT max_calls
					  FOR UPDATE SKIP LOCKED);
	IF cardinality(v_ids) = 0 THEN
		RETURN;
	END IF;
	v_policies := EXISTS (SELECT 1 FROM dialer.calling_policies p WHERE p.enabled);
	-- under a per-recipient cap, claims are serialized (until commit), so that each counts
	-- the attempts of the claims before it: a cap is never decided twice on the same count
	IF v_policies AND EXISTS (SELECT 1 FROM dialer.calling_policies p WHERE p.enabled AND p.max_calls IS NOT NULL) THEN
		PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.per_recipient_caps'));
	END IF;

	WITH cand AS (	-- the recipient's zones, not looked up when the window is the whole day
		SELECT c.id, c.deadline, c.to_number, c.status, c.attempts, c.attempts_base,
			   c.timezone AS call_tz, c.campaign, c.provider, c.payload->>'purpose' AS purpose,
			   CASE WHEN NOT dialer.window_is_whole_day(w.ws, w.we) THEN z.zones END AS zones,
			   z.source AS zone_source, w.ws, w.we
		  FROM dialer.scheduled_calls c
		  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
		 CROSS JOIN LATERAL (SELECT coalesce(k.call_window_start, window_start) AS ws,
									coalesce(k.call_window_end, window_end) AS we) w
		 CROSS JOIN LATERAL dialer.recipient_zones(c.timezone, k.timezone, c.to_number, default_timezone) z
		 WHERE c.id = ANY (v_ids)
	), policy_verdicts AS (
		-- one call for the batch; the One-Time Filter on v_policies skips it when none is enabled
		SELECT bv.* FROM dialer.batch_verdicts(v_ids, now(), window_start, window_end) bv WHERE v_policies
	), windowed AS (
		-- the policies' verdict, where they apply, replaces the general window (it includes it)
		SELECT cand.*, pv.decision, pv.policy, pv.rule, pv.reason, pv.timezones, pv.policies,
			   CASE WHEN pv.decision = 'park' THEN pv.next_opening
					WHEN pv.decision IS NOT NULL OR cand.zones IS NULL THEN NULL
					WHEN cardinality(cand.zones) = 1 THEN dialer.next_window_opening(now(), cand.zones[1], cand.ws, cand.we)
					ELSE dialer.zones_window_opening(now(), cand.zones, cand.ws, cand.we) END AS opens
		  FROM cand
		  LEFT JOIN policy_verdicts pv ON pv.id = cand.id
	), verdict AS MATERIALIZED (
		SELECT w.*,
			   CASE
				 WHEN w.deadline IS NOT NULL AND w.deadline <= now() THEN 'expired'
				 WHEN EXISTS (SELECT FROM dialer.do_not_call_entry(w.to_number)) THEN 'do_not_call'
				 WHEN v_allowed IS NOT NULL AND NOT (w.to_number = ANY (v_allowed)) THEN 'not_allowed'
				 WHEN w.decision = 'refuse' THEN 'refused'
				 WHEN w.opens = 'infinity' THEN 'no_window'
				 WHEN w.opens IS NOT NULL THEN 'window'
				 ELSE 'go'
			   END AS v
		  FROM windowed w
	), moves AS (
		SELECT x.id, x.v,
			   dialer.make_move(x.id, 'scheduled',
					CASE x.v WHEN 'go' THEN 'claimed' WHEN 'window' THEN 'window_wait'
							 WHEN 'expired' THEN 'expired' ELSE 'skipped' END,
					CASE x.v WHEN 'go' THEN 'dispatching' WHEN 'window' THEN 'scheduled'
							 WHEN 'expired' THEN 'expired' ELSE 'skipped' END,
					dialer.claim_event_detail(x.v, x.attempts + 1, x.to_number, x.deadline, x.zones, x.zone_source,
											  x.ws, x.we, x.opens, x.next_at, x.decision, x.policy, x.rule,
											  x.reason, x.timezones, x.policies, x.error),
					next_attempt_at => x.next_at, last_error => x.error) AS mv
		  FROM (SELECT x.*,
					   CASE WHEN x.v = 'window' THEN least(x.opens, coalesce(x.deadline, x.opens)) END AS next_at,
					   CASE x.v WHEN 'do_not_call' THEN 'number is on the do-not-call list'
								WHEN 'refused' THEN x.reason
								WHEN 'not_allowed' THEN 'number is not in dialer.allowed_numbers'
								WHEN 'expired' THEN 'deadline passed before the call could start'
								WHEN 'no_window' THEN dialer.no_window_message(x.to_number, x.zones, x.ws, x.we)
								END AS error
				  FROM verdict x) x
	)
	SELECT array_agg(m.mv), array_agg(m.id) FILTER (WHERE m.v = 'go')
	  INTO v_moves, v_go
	  FROM moves m;
	PERFORM count(*) FROM dialer.move_calls(v_moves);

	-- the calls to dial (move_calls wrote their attempt rows), and what the dispatcher sends
	RETURN QUERY
	SELECT c.id, c.attempts, c.to_number::text, c.from_number::text, c.mode, c.payload::text,
		   c.payload->>'message', coalesce(c.payload->>'twiml_url', c.payload->>'url'),
		   c.payload->>'script', c.payload->>'base_url',
		   dialer.request_idempotency_key(c.id, c.attempts_base, c.created_at), c.campaign
	  FROM dialer.scheduled_calls c
	 WHERE c.id = ANY (v_go)
	 ORDER BY c.priority DESC, c.next_attempt_at;
END;
$$;
COMMENT ON FUNCTION dialer.claim_calls(text, int, text, time, time, text) IS
	'Worker: claims up to max_calls due calls of a provider (FOR UPDATE SKIP LOCKED) and returns those to dial; settles expired, do-not-call, not-allowed and out-of-window calls, and applies the calling policies (park until their opening, or skip naming policy and rule)';

/*
 * Gives back claims whose requests never left: the worker was stopped while the
 * claim waited for standbys to flush it (dialer.standby_wait).  The call is
 * scheduled again as it was, its attempt not counted and its attempt row removed
 * (no request was made).  A call no longer in the claimed state is left alone.
 */
CREATE FUNCTION dialer.release_claims(call_ids bigint[], attempts int[])
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_count int;
BEGIN
	WITH r AS (
		SELECT * FROM unnest(call_ids, attempts) AS r(call_id, attempt)
	), cur AS (
		-- each call by its key and locked, as in record_results: as a join with the status
		-- test, the plan read every call in progress (scheduled_calls_active_idx)
		SELECT r.call_id, r.attempt
		  FROM r
		 CROSS JOIN LATERAL (SELECT k.* FROM dialer.scheduled_calls k WHERE k.id = r.call_id OFFSET 0) c
		 WHERE c.status = 'dispatching' AND c.attempts = r.attempt
		   FOR UPDATE OF c
	)
	-- no request was made: move_calls removes the attempt row with the attempt
	SELECT count(*) INTO v_count
	  FROM dialer.move_calls(ARRAY(
			SELECT dialer.make_move(cur.call_id, 'dispatching', 'claim_released', 'scheduled',
					jsonb_build_object('reason', 'dispatcher stopped while the claim waited for standbys; no request left',
									   'attempt', cur.attempt),
					attempt => cur.attempt)
			  FROM cur));
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.release_claims(bigint[], int[]) IS
	'Worker: puts claimed calls whose requests never left back to scheduled (attempt not counted, with an event); returns how many';

/*
 * Calls parked for a calling window (scheduled, not yet due, their latest event a
 * window_wait) are looked at again with the windows that apply now: the server's
 * settings as this session sees them (dialer.default_timezone, call_window_start,
 * call_window_end), the campaign's window and time zone, the call's time zone.  A call
 * whose window is open now becomes due now; one whose window opens at another time is
 * moved to that opening (or its deadline, if sooner).  Each moved call gets a window_wait
 * event saying why; a call left as it was gets nothing.  Only the calls of only_calls
 * and of campaign only_campaign when given.  Rows another session holds locked (the
 * worker claiming them) are left to that session.  Returns how many calls moved.
 *
 * Run by the worker after it reloads its settings (SIGHUP), and by the triggers below
 * when a campaign's window or a call's time zone changes.
 */
CREATE FUNCTION dialer.reevaluate_parked_calls(only_calls bigint[] DEFAULT NULL, only_campaign text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_tz	text := current_setting('dialer.default_timezone');
	v_ws	time := current_setting('dialer.call_window_start')::time;
	v_we	time := current_setting('dialer.call_window_end')::time;
	v_n		int;
BEGIN
	WITH parked AS (
		SELECT c.id, c.deadline, c.next_attempt_at, c.to_number, z.zones, z.source,
			   coalesce(k.call_window_start, v_ws) AS ws,
			   coalesce(k.call_window_end, v_we) AS we
		  FROM dialer.scheduled_calls c
		  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
		 CROSS JOIN LATERAL dialer.recipient_zones(c.timezone, k.timezone, c.to_number, v_tz) z
		 WHERE c.status = 'scheduled'
		   AND c.next_attempt_at > now()
		   AND (only_calls IS NULL OR c.id = ANY (only_calls))
		   AND (only_campaign IS NULL OR c.campaign = only_campaign)
		   AND (SELECT e.event FROM dialer.call_events e
				 WHERE e.call_id = c.id ORDER BY e.id DESC LIMIT 1) = 'window_wait'
		   FOR UPDATE OF c SKIP LOCKED
	), verdict AS (
		-- a window that never opens in all the zones at once: due now, for the claim to skip it
		SELECT p.*, o.opens,
			   CASE WHEN o.opens IS NULL OR o.opens = 'infinity' THEN now()
					ELSE least(o.opens, coalesce(p.deadline, o.opens)) END AS due
		  FROM parked p
		 CROSS JOIN LATERAL (SELECT CASE WHEN dialer.window_is_whole_day(p.ws, p.we) THEN NULL
										 WHEN cardinality(p.zones) = 1
										 THEN dialer.next_window_opening(now(), p.zones[1], p.ws, p.we)
										 ELSE dialer.zones_window_opening(now(), p.zones, p.ws, p.we) END AS opens) o
	)
	SELECT count(*) INTO v_n
	  FROM dialer.move_calls(ARRAY(
			SELECT dialer.make_move(v.id, 'scheduled', 'window_wait', 'scheduled',
					jsonb_build_object('reason', 'calling window changed',
									   'window_start', v.ws, 'window_end', v.we,
									   'opens_at', nullif(v.opens, 'infinity'), 'next_attempt_at', v.due,
									   'previous_next_attempt_at', v.next_attempt_at)
					|| dialer.window_zones_detail(v.to_number, v.zones, v.source),
					next_attempt_at => v.due)
			  FROM verdict v
			 WHERE v.due <> v.next_attempt_at));
	RETURN v_n;
END;
$$;
COMMENT ON FUNCTION dialer.reevaluate_parked_calls(bigint[], text) IS
	'Calls waiting for a calling window, looked at again with the windows that apply now (settings, campaign, call time zone): due now, or moved to the new opening, with a window_wait event; returns how many moved';

/*
 * Triggers: a change of a campaign's window or time zone, or of a call's time zone,
 * re-evaluates the calls parked under the old one, and wakes the worker at commit.
 * SECURITY DEFINER: whoever may change the campaign may move its waiting calls.
 */
CREATE FUNCTION dialer.window_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF TG_TABLE_NAME = 'campaigns' THEN
		IF dialer.reevaluate_parked_calls(NULL, NEW.name) > 0 THEN
			PERFORM dialer.wake_worker();
		END IF;
	ELSIF dialer.reevaluate_parked_calls(ARRAY[NEW.id], NULL) > 0 THEN
		PERFORM dialer.wake_worker();
	END IF;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.window_changed() IS
	'Trigger: re-evaluates the calls parked for a calling window when a campaign''s window or time zone, or a call''s time zone, changes';
REVOKE ALL ON FUNCTION dialer.window_changed() FROM PUBLIC;

CREATE TRIGGER campaign_window_changed
	AFTER UPDATE OF call_window_start, call_window_end, timezone ON dialer.campaigns
	FOR EACH ROW
	WHEN (OLD.call_window_start IS DISTINCT FROM NEW.call_window_start
		  OR OLD.call_window_end IS DISTINCT FROM NEW.call_window_end
		  OR OLD.timezone IS DISTINCT FROM NEW.timezone)
	EXECUTE FUNCTION dialer.window_changed();
CREATE TRIGGER call_timezone_changed
	AFTER UPDATE OF timezone ON dialer.scheduled_calls
	FOR EACH ROW
	WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone AND NEW.status = 'scheduled')
	EXECUTE FUNCTION dialer.window_changed();

/*
 * A number added to the do-not-call list: its scheduled calls (waiting for a window,
 * a retry or their run_at) are skipped at once, with the reason, instead of waiting
 * for the check at dispatch.
 */
CREATE FUNCTION dialer.do_not_call_added()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.skip_scheduled_calls(array_agg(c.id), array_agg('number is on the do-not-call list'::text),
										array_agg(jsonb_build_object('reason', 'do_not_call',
																	 'checked', 'do_not_call_added')))
	   FROM dialer.scheduled_calls c
	  WHERE c.to_number IN (SELECT a.number FROM added a) AND c.status = 'scheduled'
	 HAVING count(*) > 0;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.do_not_call_added() IS
	'Trigger: skips the scheduled calls of numbers added to dialer.do_not_call (reason do_not_call)';
REVOKE ALL ON FUNCTION dialer.do_not_call_added() FROM PUBLIC;

CREATE TRIGGER do_not_call_added AFTER INSERT ON dialer.do_not_call
	REFERENCING NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.do_not_call_added();

/*
 * Stores a batch of request outcomes, one array element per request:
 *   accepted  the provider took the call: dispatching -> dialing, with its call id;
 *   retry     a transient failure: scheduled again after delay_ms, or failed when
 *             the run's attempts are used up;
 *   failed    a permanent failure: failed at once, with the provider's code and message;
 *   unknown   the request may have reached the provider but its answer was lost
 *             (shutdown while in flight): unknown, never re-sent automatically.
 * A call a callback has already moved on is left where it is; its attempt row is
 * still completed.
 */
CREATE FUNCTION dialer.record_results(call_ids bigint[], attempts int[], outcomes text[],
									  http_statuses int[], provider_call_ids text[],
									  error_codes text[], error_messages text[], more_infos text[],
									  delays_ms int[], responded_at timestamptz[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
-- planned once per session, through the indexes whatever the tables' size (see claim_calls)
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
	v_moves dialer.call_move[];
	v_failed bigint[];
	v_call dialer.scheduled_calls;
BEGIN
	WITH r AS (
		-- each outcome with its class: lost for an answer lost, else what the provider's
		-- words (HTTP status, error code) say (looked up only for a request not accepted)
		SELECT r.*,
			   CASE WHEN r.outcome = 'accepted' THEN NULL
					WHEN r.outcome = 'unknown' THEN 'lost'
					ELSE dialer.outcome_of((SELECT p.kind FROM dialer.scheduled_calls k
											  JOIN dialer.providers p ON p.name = k.provider
											 WHERE k.id = r.call_id),
										   NULL, NULL, r.error_code, r.http_status) END AS class
		  FROM unnest(call_ids, attempts, outcomes, http_statuses, provider_call_ids,
					  error_codes, error_messages, more_infos, delays_ms, responded_at)
			AS r(call_id, attempt, outcome, http_status, provider_call_id, error_code,
				 error_message, more_info, delay_ms, responded_at)
	), att AS (
		UPDATE dialer.call_attempts a
		   SET responded_at = r.responded_at, http_status = r.http_status,
			   provider_call_id = coalesce(a.provider_call_id, r.provider_call_id),
			   provider_status = coalesce(a.provider_status, CASE WHEN r.outcome = 'accepted' THEN 'accepted' END),
			   -- a callback may have been first: keep what it stored
			   error_code = coalesce(r.error_code, a.error_code),
			   error_message = coalesce(r.error_message, a.error_message),
			   more_info = coalesce(r.more_info, a.more_info),
			   outcome = coalesce(a.outcome, r.class)
		  FROM r
		 WHERE a.call_id = r.call_id AND a.attempt = r.attempt
	), cur AS (
		-- a retry needs the call's run (are attempts left?), the other outcomes nothing of it:
		-- move_calls moves a call only while it is still dispatching at this attempt, when its
		-- UPDATE holds the row (a callback that came first wins).  The call is read by its key
		-- alone (OFFSET 0: as a join, the plan read every call in progress at each batch)
		SELECT r.*, c.may_retry
		  FROM r
		  LEFT JOIN LATERAL (SELECT k.attempts - k.attempts_base < k.max_attempts AS may_retry
							   FROM dialer.scheduled_calls k
							  WHERE r.outcome = 'retry' AND k.id = r.call_id OFFSET 0) c ON true
	), moves AS (
		SELECT cur.*,
			   CASE WHEN cur.outcome = 'accepted' THEN 'dialing'
					WHEN cur.outcome = 'retry' AND cur.may_retry THEN 'scheduled'
					WHEN cur.outcome = 'unknown' THEN 'unknown'
					ELSE 'failed' END AS to_status
		  FROM cur
	)
	SELECT array_agg(dialer.make_move(m.call_id, 'dispatching',
				CASE m.to_status WHEN 'dialing' THEN 'accepted' WHEN 'scheduled' THEN 'retry_scheduled'
								 ELSE m.to_status END,
				m.to_status,
				jsonb_strip_nulls(jsonb_build_object(
					'attempt', m.attempt, 'http_status', m.http_status,
					'provider_call_id', m.provider_call_id,
					'error_code', m.error_code, 'error', m.error_message,
					'retry_in_ms', CASE WHEN m.to_status = 'scheduled' THEN m.delay_ms END,
					'attempts_exhausted', CASE WHEN m.outcome = 'retry' AND NOT m.may_retry THEN true END)),
				attempt => m.attempt,
				next_attempt_at => CASE WHEN m.to_status = 'scheduled'
										THEN now() + m.delay_ms * interval '1 millisecond' END,
				last_error => CASE WHEN m.outcome <> 'accepted' THEN m.error_message END,
				provider_call_id => m.provider_call_id,
				provider_status => CASE WHEN m.outcome = 'accepted' THEN 'accepted' END,
				outcome => m.class)),
		   array_agg(m.call_id) FILTER (WHERE m.to_status = 'failed' AND m.class IS NOT NULL)
	  INTO v_moves, v_failed
	  FROM moves m;
	IF v_failed IS NULL THEN
		PERFORM count(*) FROM dialer.move_calls(v_moves);
		RETURN;		-- the usual batch: every request accepted
	END IF;

	-- a failed request's class may have a rule saying what follows (the default set: done):
	-- for the calls this batch moved to failed
	v_failed := ARRAY(SELECT m.id FROM dialer.move_calls(v_moves) m(id) WHERE m.id = ANY (v_failed));
	FOR v_call IN SELECT c.* FROM dialer.scheduled_calls c WHERE c.id = ANY (v_failed) AND c.status = 'failed' LOOP
		PERFORM dialer.follow_outcome(v_call, 'failed',
				dialer.next_action_detail(n.action, n.rule_set, a.outcome, a.attempt, n.next_attempt_at,
										  n.retry_delay, v_call))
		   FROM dialer.call_attempts a
		  CROSS JOIN LATERAL dialer.next_action(v_call, a.outcome) n
		  WHERE a.call_id = v_call.id AND a.attempt = v_call.attempts;
	END LOOP;
END;
$$;
COMMENT ON FUNCTION dialer.record_results(bigint[], int[], text[], int[], text[], text[], text[], text[], int[], timestamptz[]) IS
	'Worker: stores a batch of request outcomes (accepted, retry, failed, unknown) with events; never moves a call a callback has already moved on';

/*
 * When an unknown call without a provider call id is next due for a search at its
 * provider by what was sent (see dialer.claim_searches): reconcile_after after its
 * last news, then 2 and 4 times reconcile_after after the previous search.
 */
CREATE FUNCTION dialer.search_due_at(updated_at timestamptz, reconciled_at timestamptz, searches int)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT greatest(updated_at, coalesce(reconciled_at, updated_at))
		   + current_setting('dialer.reconcile_after')::interval * power(2, searches);
$$;
COMMENT ON FUNCTION dialer.search_due_at(timestamptz, timestamptz, int) IS
	'Worker: when an unknown call without a provider call id is next searched for at its provider (reconcile_after after its last news or search, doubling with each search)';

/*
 * When the worker must next look at the queue: the earliest next_attempt_at of a
 * scheduled call of an enabled provider, leaving out providers the worker knows
 * are blocked (at capacity or out of calls-per-second budget; it times those
 * itself); and when the next call falls due for reconciliation.  NULL: nothing.
 * PL/pgSQL, so that its plan is kept for the session: as a SQL function with a
 * SET clause (which cannot be inlined) it was planned again at every call, about
 * 0.8 ms of each dispatch round.
 */
CREATE FUNCTION dialer.next_due_at(blocked_providers text[] DEFAULT '{}',
								   OUT dispatch_at timestamptz, OUT reconcile_at timestamptz)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	SELECT (SELECT min(n.due)
			  FROM dialer.providers p
			 CROSS JOIN LATERAL (SELECT c.next_attempt_at AS due
								   FROM dialer.scheduled_calls c
								  WHERE c.provider = p.name AND c.status = 'scheduled'
								  ORDER BY c.next_attempt_at LIMIT 1) n
			 WHERE p.enabled AND NOT (p.name = ANY (coalesce(blocked_providers, '{}')))),
		   -- looked up when neither news nor a lookup came for reconcile_after; the
		   -- oldest 100 by news per provider bound the search (a later one is found
		   -- by the claim at the latest when those fall due)
		   least(
		   (SELECT min(r.last_contact) + current_setting('dialer.reconcile_after')::interval
			  FROM dialer.providers p
			 CROSS JOIN LATERAL (SELECT greatest(c.updated_at, c.reconciled_at) AS last_contact
								   FROM dialer.scheduled_calls c
								  WHERE c.provider = p.name
									AND (c.status = 'dialing'
										 OR (c.status = 'unknown' AND c.provider_call_id IS NOT NULL
											 AND c.reconcile_failures < dialer.reconcile_max_failures()))
								  ORDER BY c.updated_at LIMIT 100) r
			 WHERE p.enabled),
		   -- unknown calls without a provider call id, due for a search by what was sent
		   (SELECT min(dialer.search_due_at(s.updated_at, s.reconciled_at, s.reconcile_searches))
			  FROM dialer.providers p
			 CROSS JOIN LATERAL (SELECT c.updated_at, c.reconciled_at, c.reconcile_searches
								   FROM dialer.scheduled_calls c
								  WHERE c.provider = p.name AND c.status = 'unknown'
									AND c.provider_call_id IS NULL AND c.reconcile_searches < 3
								  ORDER BY c.updated_at LIMIT 100) s
			 -- the kinds that offer a search, read once per call (an InitPlan): a correlated
			 -- EXISTS here cost the dispatcher's every round 20 us more
			 WHERE p.enabled AND p.kind = ANY (ARRAY(SELECT k.kind FROM dialer.provider_kinds k WHERE k.offers_search))))
	  INTO dispatch_at, reconcile_at;
END;
$$;
COMMENT ON FUNCTION dialer.next_due_at(text[]) IS
	'Worker: earliest next_attempt_at of a scheduled call of an enabled provider not in blocked_providers, and when the next call falls due for reconciliation: a lookup by provider call id or a search by what was sent (NULL: none)';

/*
 * Calls to look up at their provider because its word is overdue: dialing with no
 * news for dialer.reconcile_after (a lost callback), or unknown with a provider
 * call id.  Each is stamped (reconciled_at = now(), not updated_at: a lookup is not
 * news, and a call without news must stop counting against max_concurrency), so
 * it is looked up again only after another dialer.reconcile_after.  A dialing call
 * without a provider call id cannot be looked up: it becomes unknown, with an event.
 */
CREATE FUNCTION dialer.claim_reconciliations(max_calls int)
RETURNS TABLE (id bigint, provider text, provider_call_id text, status text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_cutoff timestamptz := now() - current_setting('dialer.reconcile_after')::interval;
BEGIN
	-- a dialing call without a provider call id cannot be looked up: unknown
	PERFORM count(*)
	   FROM dialer.move_calls(ARRAY(
			SELECT dialer.make_move(c.id, 'dialing', 'unknown', 'unknown',
					jsonb_build_object('reason', 'no final status within dialer.reconcile_after and no provider call id'),
					last_error => 'no final status from the provider, and no provider call id to look it up by')
			  FROM dialer.scheduled_calls c
			 WHERE c.status = 'dialing' AND c.provider_call_id IS NULL AND c.updated_at <= v_cutoff
			   FOR UPDATE OF c));

	RETURN QUERY
	WITH due AS (
		SELECT c.id FROM dialer.scheduled_calls c
		  JOIN dialer.providers p ON p.name = c.provider AND p.enabled
		 WHERE c.status IN ('dialing', 'unknown') AND c.provider_call_id IS NOT NULL
		   AND c.updated_at <= v_cutoff
		   AND (c.reconciled_at IS NULL OR c.reconciled_at <= v_cutoff)
		   AND c.reconcile_failures < dialer.reconcile_max_failures()
		 ORDER BY c.updated_at
		 LIMIT max_calls
		   FOR UPDATE OF c SKIP LOCKED
	)
	UPDATE dialer.scheduled_calls c SET reconciled_at = now()
	  FROM due WHERE c.id = due.id
	RETURNING c.id, c.provider, c.provider_call_id, c.status;
END;
$$;
COMMENT ON FUNCTION dialer.claim_reconciliations(int) IS
	'Worker: up to max_calls calls whose provider''s word is overdue (dialing without news for dialer.reconcile_after, unknown with a provider call id), stamped so they are not looked up again before another reconcile_after';

/*
 * How many lookups of a call at its provider may fail in a row before reconciliation
 * gives up on it (dialer.apply_reconciliation): its one home.
 */
CREATE FUNCTION dialer.reconcile_max_failures()
RETURNS int
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
	SELECT 3;
$$;
COMMENT ON FUNCTION dialer.reconcile_max_failures() IS
	'Internal: lookups of a call at its provider that may fail in a row (3) before a dialing call becomes unknown and is no longer looked up';

/*
 * Applies what a provider said when a call was looked up, as the dispatcher reports
 * it: the provider's kind reads its own answer (src/provider_<kind>.c) and gives
 * pg_dialer's report, {"status", "duration_seconds", "answered_by", "recording_url",
 * "transcript"} (what the provider did not report left out), applied through
 * dialer.apply_provider_status like a callback; or {"error": why} for a failed lookup
 * (an error, a 404, an answer without a status), which is recorded as an event, with
 * its HTTP status, and counted: after dialer.reconcile_max_failures() in a row a
 * dialing call becomes unknown, saying why, and no call is looked up again after that
 * many failures (an operator decides, as for every unknown call), so that no call is
 * left dialing for good.  Returns NULL, or the reason when it gave a call up (the
 * dispatcher logs it).
 */
CREATE FUNCTION dialer.apply_reconciliation(call_id bigint, provider_call_id text,
											http_status int, report jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_error		text;
	v_failures	int;
	v_status	text;
	v_reason	text;
BEGIN
	IF coalesce(report->>'status', '') = '' THEN
		v_error := coalesce(report->>'error', 'answer without a status');
		UPDATE dialer.scheduled_calls c SET reconcile_failures = c.reconcile_failures + 1
		 WHERE c.id = apply_reconciliation.call_id
		RETURNING c.reconcile_failures, c.status INTO v_failures, v_status;
		PERFORM dialer.note_calls(ARRAY[apply_reconciliation.call_id], ARRAY['reconcile_failed'],
				ARRAY[jsonb_strip_nulls(jsonb_build_object('provider_call_id', provider_call_id,
					'http_status', http_status, 'error', v_error, 'failures_in_a_row', v_failures))]);
		IF v_status = 'dialing' AND v_failures >= dialer.reconcile_max_failures() THEN
			v_reason := format('no final status from the provider, and %s lookups of %s at the provider failed in a row (last: %s): it is not looked up again',
							   v_failures, provider_call_id,
							   coalesce(CASE WHEN http_status IS NOT NULL THEN format('HTTP %s', http_status) END, v_error));
			PERFORM count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
				apply_reconciliation.call_id, 'dialing', 'unknown', 'unknown',
				jsonb_strip_nulls(jsonb_build_object('reason', v_reason, 'http_status', http_status,
													 'lookups_failed', v_failures)),
				last_error => v_reason)]);
			RETURN v_reason;
		END IF;
		RETURN NULL;
	END IF;
	UPDATE dialer.scheduled_calls c SET reconcile_failures = 0
	 WHERE c.id = apply_reconciliation.call_id AND c.reconcile_failures > 0;
	PERFORM dialer.apply_provider_status(
		apply_reconciliation.call_id, report->>'status', provider_call_id, NULL,
		jsonb_strip_nulls(jsonb_build_object(
			'duration_seconds', (report->>'duration_seconds')::int,
			'answered_by', report->>'answered_by',
			'recording_url', report->>'recording_url',
			'transcript', report->>'transcript')),
		jsonb_build_object('lookup', 'provider call resource', 'provider_status', report->>'status'),
		'reconcile',
		format('reconcile/%s/%s', provider_call_id, report->>'status'));
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.apply_reconciliation(bigint, text, int, jsonb) IS
	'Worker: applies the report of a call lookup (status, duration_seconds, answered_by, ..., as the provider''s kind read its answer) like a callback; records a failed lookup (report {"error": ...}) as an event, and after 3 failures in a row makes a dialing call unknown (returns why; NULL otherwise)';

/*
 * Unknown calls of one provider that have no provider call id (the worker died,
 * failed over, or lost the answer before a call id was stored), due for a search
 * at the provider by what was sent: Twilio's Calls list by To, From and a start
 * at or after the claim of the call's last attempt; a backend's
 * GET /call?idempotency_key= with the attempt's Idempotency-Key.  A call is searched
 * at most 3 times (dialer.search_due_at: reconcile_after after its last news, then
 * 2 and 4 times reconcile_after after the previous search); each claim is counted
 * and stamped before the search leaves.  Returns what to search for, as JSON:
 * to, from, after (the claim, UTC, to the second), idempotency_key, attempt,
 * search (1..3) and of (3).  voice_api providers offer no such search.
 */
CREATE FUNCTION dialer.claim_searches(provider text, max_calls int)
RETURNS TABLE (id bigint, search text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_searches boolean;
	v_from text;
BEGIN
	SELECT k.offers_search, p.from_number INTO v_searches, v_from
	  FROM dialer.providers p JOIN dialer.provider_kinds k ON k.kind = p.kind
	 WHERE p.name = claim_searches.provider AND p.enabled;
	IF NOT FOUND OR NOT v_searches OR max_calls < 1 THEN
		RETURN;
	END IF;

	RETURN QUERY
	WITH due AS (
		SELECT c.id FROM dialer.scheduled_calls c
		 WHERE c.provider = claim_searches.provider AND c.status = 'unknown'
		   AND c.provider_call_id IS NULL AND c.reconcile_searches < 3 AND c.attempts > 0
		   AND dialer.search_due_at(c.updated_at, c.reconciled_at, c.reconcile_searches) <= now()
		 ORDER BY c.updated_at
		 LIMIT max_calls
		   FOR UPDATE OF c SKIP LOCKED
	), upd AS (
		UPDATE dialer.scheduled_calls c
		   SET reconciled_at = now(), reconcile_searches = c.reconcile_searches + 1
		  FROM due WHERE c.id = due.id
		RETURNING c.id, c.to_number, c.from_number, c.attempts, c.reconcile_searches
	)
	SELECT u.id, jsonb_strip_nulls(jsonb_build_object(
			'to', u.to_number::text,
			'from', coalesce(u.from_number::text, v_from),
			'after', to_char(date_trunc('second', a.requested_at) AT TIME ZONE 'UTC',
							 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
			'idempotency_key', a.idempotency_key,
			'attempt', u.attempts,
			'search', u.reconcile_searches,
			'of', 3))::text
	  FROM upd u
	  LEFT JOIN dialer.call_attempts a ON a.call_id = u.id AND a.attempt = u.attempts;
END;
$$;
COMMENT ON FUNCTION dialer.claim_searches(text, int) IS
	'Worker: up to max_calls unknown calls of a provider without a provider call id, due for a search by what was sent (at most 3 searches each), counted and stamped; returns what to search for as JSON';

/*
 * The records a search found (records: the report's records, see dialer.apply_search)
 * that may be the call searched for (search: dialer.claim_searches' JSON): what
 * identifies the call, where the provider's records carry it, is what was sent (to,
 * from, idempotency_key; a record that lacks one its kind carries is not the call),
 * and it was created at or after the claim (not_before, to the second: a provider
 * creates a call only after the claim committed); and it is not already the call of
 * another attempt or call.  candidates: a JSON array of {id, status, date_created,
 * duration, answered_by}; older: a record created before the claim was seen (a list
 * in pages, newest first, went back far enough).
 */
CREATE FUNCTION dialer.search_candidates(call_id bigint, attempt int, search jsonb, records jsonb,
										 not_before timestamptz, OUT candidates jsonb, OUT older boolean)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_rec jsonb;
	v_id text;
	v_at timestamptz;
BEGIN
	candidates := '[]';
	older := false;
	FOR v_rec IN SELECT e.value FROM jsonb_array_elements(records) e LOOP
		v_id := nullif(v_rec->>'id', '');
		IF v_rec ? 'created_at' THEN
			v_at := (v_rec->>'created_at')::timestamptz;
			IF v_at < date_trunc('second', not_before) THEN
				older := true;
			END IF;
			CONTINUE WHEN v_at IS NULL OR v_at < date_trunc('second', not_before);
		END IF;
		CONTINUE WHEN (v_rec ? 'to' AND v_rec->>'to' IS DISTINCT FROM search->>'to')
				   OR (v_rec ? 'from' AND v_rec->>'from' IS DISTINCT FROM search->>'from')
				   OR (v_rec ? 'idempotency_key'
					   AND v_rec->>'idempotency_key' IS DISTINCT FROM search->>'idempotency_key');
		CONTINUE WHEN v_id IS NULL;
		-- a record already known as another call's (or another attempt's) is not this one
		CONTINUE WHEN EXISTS (SELECT 1 FROM dialer.call_attempts a
							   WHERE a.provider_call_id = v_id
								 AND (a.call_id <> search_candidates.call_id OR a.attempt <> search_candidates.attempt))
				   OR EXISTS (SELECT 1 FROM dialer.scheduled_calls c
							   WHERE c.provider_call_id = v_id AND c.id <> search_candidates.call_id);
		candidates := candidates || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
			'id', v_id, 'status', v_rec->>'status', 'date_created', v_rec->>'created_at',
			'duration', v_rec->>'duration_seconds', 'answered_by', v_rec->>'answered_by')));
	END LOOP;
END;
$$;
COMMENT ON FUNCTION dialer.search_candidates(bigint, int, jsonb, jsonb, timestamptz) IS
	'Worker: the records a search found that may be an unknown call''s (what was sent, created at or after the claim, not another call''s), and whether a record older than the claim was seen';

/*
 * Settles an unknown call by the one record a search found (match: a candidate of
 * dialer.search_candidates) on its attempt: like a callback (dialer.apply_provider_status,
 * event 'reconciled' with detail) when pg_dialer knows the record's status, else as
 * under way (dialing) with the record's id stored for later lookups.  The call's
 * searches start again at 0 for a later attempt.
 */
CREATE FUNCTION dialer.settle_searched_call(call_id bigint, attempt int, match jsonb, detail jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF dialer.provider_status_outcome(dialer.normalize_provider_status(coalesce(match->>'status', ''))) IS NOT NULL THEN
		PERFORM dialer.apply_provider_status(
			settle_searched_call.call_id, match->>'status', match->>'id', NULL,
			jsonb_strip_nulls(jsonb_build_object(
				'duration_seconds', CASE WHEN (match->>'duration') ~ '^[0-9]+$' THEN (match->>'duration')::int END,
				'answered_by', match->>'answered_by')),
			detail, 'reconciled',
			format('search/%s/%s', match->>'id', match->>'status'));
	ELSE
		-- a status pg_dialer does not know (a backend's own word): the provider has
		-- the call, so it is under way; its id is stored for later lookups
		UPDATE dialer.call_attempts a SET provider_call_id = coalesce(a.provider_call_id, match->>'id'),
										   provider_status = coalesce(match->>'status', a.provider_status)
		 WHERE a.call_id = settle_searched_call.call_id AND a.attempt = settle_searched_call.attempt;
		PERFORM count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
			settle_searched_call.call_id, 'unknown', 'reconciled', 'dialing',
			detail || jsonb_strip_nulls(jsonb_build_object(
				'provider_call_id', match->>'id', 'provider_status', match->>'status',
				'attempt', settle_searched_call.attempt,
				'note', 'a provider status pg_dialer does not know: the call is taken as under way')),
			provider_call_id => match->>'id', provider_status => match->>'status')]);
	END IF;
	-- settled: a later attempt that ends unknown gets its own searches (the move from
	-- unknown by a search counts them afresh: dialer.call_transitions.resets_searches)
END;
$$;
COMMENT ON FUNCTION dialer.settle_searched_call(bigint, int, jsonb, jsonb) IS
	'Worker: settles an unknown call by the one record a search found (as a callback would, or as under way for a status pg_dialer does not know)';

/*
 * What the reconcile_search event of a search that settled nothing says, for its result
 * (not_found, ambiguous, incomplete, found, not_offered, failed) and the searches left.
 */
CREATE FUNCTION dialer.search_message(result text, searches_left int)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE result
			WHEN 'not_found' THEN 'no record the provider holds matches what was sent'
			WHEN 'ambiguous' THEN 'several records match what was sent: none is taken'
			WHEN 'incomplete' THEN 'more records than one page match: none is taken'
			WHEN 'found' THEN 'the call was settled or requeued meanwhile: nothing changed'
			WHEN 'not_offered' THEN 'the provider offers no lookup by Idempotency-Key'
			ELSE 'the search failed' END
		   || CASE WHEN searches_left = 0 AND result <> 'found'
				   THEN '; no search is left: the call stays unknown (check it at the provider, then dialer.retry_call() or leave it)'
				   ELSE '' END;
$$;
COMMENT ON FUNCTION dialer.search_message(text, int) IS
	'Worker: the message of a reconcile_search event for a search result and the searches left';

/*
 * Applies what a search for an unknown call without a provider call id found
 * (dialer.claim_searches), as the dispatcher reports it: the provider's kind reads its
 * own answer (src/provider_<kind>.c) and gives pg_dialer's report, {"records": [{"id",
 * "status", "duration_seconds", "answered_by", and where the kind's records carry them
 * "to", "from", "created_at", "idempotency_key"}, ...], "listed": how many the answer
 * listed, "more": a further page may hold more}, or {"result": "failed" or
 * "not_offered", "error": why}.  Its candidates (dialer.search_candidates): exactly one
 * settles the call (dialer.settle_searched_call).  No candidate, more than one (never
 * guessed), a page that may not hold them all, or a failed search leaves the call
 * unknown, with a 'reconcile_search' event saying what was searched and what was found
 * (dialer.search_message).  An answer for an attempt the call has left (settled
 * meanwhile, or requeued by dialer.retry_call, perhaps claimed and unknown again since)
 * changes nothing but that event: its record may be another attempt's call.
 */
CREATE FUNCTION dialer.apply_search(call_id bigint, search jsonb, http_status int, report jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_after timestamptz;
	v_found record;
	v_n int;
	v_result text;
	v_detail jsonb;
	v_call dialer.scheduled_calls;
BEGIN
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = apply_search.call_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	BEGIN
		v_after := (search->>'after')::timestamptz;
	EXCEPTION WHEN others THEN
		v_after := NULL;
	END;
	v_detail := jsonb_build_object('lookup', 'search',
								   'searched', search,
								   'http_status', http_status,
								   'searches_left', greatest(coalesce((search->>'of')::int, 3)
															 - coalesce((search->>'search')::int, 0), 0));

	IF report ? 'error' OR jsonb_typeof(report->'records') IS DISTINCT FROM 'array' THEN
		v_result := coalesce(report->>'result', 'failed');
		v_detail := v_detail || jsonb_build_object('error', coalesce(report->>'error', 'no list of records'));
	ELSIF v_after IS NULL AND jsonb_path_exists(report, '$.records[*].created_at') THEN
		-- records that say when they were created, and no claim to compare them with
		v_result := 'failed';
		v_detail := v_detail || jsonb_build_object('error', 'the search has no claim time to compare the records with');
	ELSE
		v_found := dialer.search_candidates(apply_search.call_id, v_call.attempts, search, report->'records', v_after);
		v_n := jsonb_array_length(v_found.candidates);
		v_result := CASE
			WHEN v_n > 1 THEN 'ambiguous'
			-- a list in pages is newest first: a further page may hold more when none was older
			WHEN (report->>'more')::boolean AND NOT v_found.older THEN 'incomplete'
			WHEN v_n = 0 THEN 'not_found'
			ELSE 'found' END;
		v_detail := v_detail || jsonb_build_object('records', coalesce((report->>'listed')::int, jsonb_array_length(report->'records')),
												   'candidates', v_found.candidates);
	END IF;

	IF v_result = 'found' AND v_call.status = 'unknown' AND v_call.provider_call_id IS NULL
	   AND (search->>'attempt')::int = v_call.attempts THEN
		PERFORM dialer.settle_searched_call(apply_search.call_id, v_call.attempts, v_found.candidates->0,
											v_detail || jsonb_build_object('search_result', 'found'));
		RETURN;
	END IF;

	PERFORM dialer.note_calls(ARRAY[apply_search.call_id], ARRAY['reconcile_search'],
			ARRAY[v_detail || jsonb_build_object(
				'result', v_result,
				'message', dialer.search_message(v_result, (v_detail->>'searches_left')::int))]);
END;
$$;
COMMENT ON FUNCTION dialer.apply_search(bigint, jsonb, int, jsonb) IS
	'Worker: applies the report of a search for an unknown call without a provider call id (the records found, as the provider''s kind read its answer): exactly one matching record settles it (event reconciled), else it stays unknown with a reconcile_search event (not_found, ambiguous, incomplete, failed, not_offered); an answer for an attempt the call has left (settled, or requeued by retry_call) changes nothing';
