/*
 * pg_dialer: the SQL API of the queue: the rules a call must satisfy (dialer.call_rule,
 * their one home, and dialer.call_refusal, their errors), enqueue_call and enqueue_calls,
 * cancel_call, retry_call, call_details, stats and cleanup.
 *
 * Every function that changes the queue is SECURITY DEFINER with a pinned search_path:
 * the tables stay the owner's, and a role is given exactly the capabilities it is
 * granted EXECUTE on (see README, "Privileges").
 *
 * Copyright (c) 2026, pg_dialer developers
 */

CREATE FUNCTION dialer.worker_status(
	OUT pid int,
	OUT database text,
	OUT state text,
	OUT started_at timestamptz,
	OUT in_flight int,
	OUT dispatched bigint,
	OUT accepted bigint,
	OUT retried bigint,
	OUT failed bigint,
	OUT last_error text,
	OUT last_error_at timestamptz,
	OUT standby_wait_since timestamptz,
	OUT standby_wait_lsn pg_lsn)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dialer_worker_status';
COMMENT ON FUNCTION dialer.worker_status() IS
	'The running dispatcher: pid, database, state, start time, requests in flight, counters, last error, and since when and for which commit LSN claimed calls wait for standbys (no row when none runs)';

/*
 * dialer.late_tolerance as an interval: how far in the past a run_at may be without
 * late_ok (5 minutes unless set; the library may not be loaded yet in this backend).
 */
CREATE FUNCTION dialer.late_tolerance()
RETURNS interval
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT coalesce(nullif(current_setting('dialer.late_tolerance', true), ''), '5min')::interval;
$$;
COMMENT ON FUNCTION dialer.late_tolerance() IS
	'Internal: dialer.late_tolerance as an interval (how far in the past a run_at may be without late_ok)';

/*
 * The mode a call of a provider of kind kind runs in (scheduled_calls.mode): the one its
 * payload names, in capitals, else the kind's first; NULL for a kind without modes.
 */
CREATE FUNCTION dialer.call_mode(kind dialer.provider_kinds, payload jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
	SELECT CASE WHEN (kind).call_modes IS NOT NULL THEN upper(coalesce(payload->>'mode', (kind).call_modes[1])) END;
$$;
COMMENT ON FUNCTION dialer.call_mode(dialer.provider_kinds, jsonb) IS
	'Internal: the mode a call runs in: payload.mode in capitals, else its provider kind''s first mode; NULL for a kind without modes';

/*
 * The rules a call must satisfy to be enqueued: their one home, used by enqueue_call
 * and enqueue_calls alike (the errors they raise or report for each rule are in
 * dialer.call_refusal).  Returns NULL for an acceptable call, else the name of the rule
 * it breaks first, in this order.  provider_kind is the provider's kind (a row of
 * dialer.provider_kinds, whose columns say what a payload of that kind may hold), NULL
 * when the provider is unknown; provider_hosts and provider_twiml_url are that provider's
 * allowed_hosts and twiml_url, provider_detection its machine detection
 * (dialer.provider_detection: the rules of a payload's detection keys are
 * dialer.machine_detection_rule's).  One CASE expression, with no subquery, in a plain SQL function, so that
 * the planner inlines it into the caller's statement: enqueue_call pays no function call
 * for it, and enqueue_calls checks a whole batch in one pass.
 */
CREATE FUNCTION dialer.call_rule(
	to_number text, run_at timestamptz, provider text, payload jsonb, campaign text,
	dedupe_key text, priority int, max_attempts int, timezone text, deadline timestamptz,
	provider_kind dialer.provider_kinds, provider_hosts text[], provider_twiml_url text, late_ok boolean,
	provider_detection jsonb DEFAULT NULL)
RETURNS text
LANGUAGE sql
STABLE
AS $$
	SELECT CASE
						WHEN $1 IS NULL THEN 'to_number_missing'
						WHEN NOT dialer.is_e164($1) THEN 'to_number_format'
						WHEN $2 IS NULL THEN 'run_at_missing'
						WHEN NOT isfinite($2) THEN 'run_at_infinite'
						WHEN $2 < now() - dialer.late_tolerance() AND NOT coalesce($14, false) THEN 'run_at_past'
						WHEN $10 IS NOT NULL AND NOT isfinite($10) THEN 'deadline_infinite'
						WHEN $10 <= $2 THEN 'deadline_order'
						WHEN $9 IS NOT NULL AND NOT dialer.is_valid_timezone($9) THEN 'timezone'
						WHEN $3 IS NULL THEN 'provider_missing'
						WHEN $11 IS NULL THEN 'provider_unknown'
						WHEN $4 IS NULL OR jsonb_typeof($4) <> 'object' THEN 'payload_type'
						-- (written out only when it may be too long: JSON text takes at most 6 bytes per
						-- byte of uncompressed jsonb, "\u0001" for a control character)
						WHEN (pg_column_size($4) > 65536 / 6 OR pg_column_compression($4) IS NOT NULL)
							 AND octet_length($4::text) > 65536 THEN 'payload_size'
						WHEN ($11).call_modes IS NOT NULL
							 AND upper(coalesce($4->>'mode', ($11).call_modes[1])) <> ALL (($11).call_modes) THEN 'payload_mode'
						WHEN ($11).per_call_base_url AND $4 ? 'base_url'
							 AND coalesce(NOT (lower(substring($4->>'base_url' FROM '^https?://([^/:?#@]+)(?::[0-9]+)?(?:[/?#]|$)'))
											   = ANY (lower($12::text)::text[])), true) THEN 'payload_base_url'
						WHEN $4 ? 'message' AND length($4->>'message') > ($11).message_max_length THEN 'payload_message'
						WHEN ($11).needs_something_to_say
							 AND coalesce($4->>'twiml_url', $4->>'url', $4->>'message', $13) IS NULL THEN 'nothing_to_say'
						WHEN $4 ? 'from' AND (jsonb_typeof($4->'from') <> 'string' OR NOT dialer.is_e164($4->>'from')) THEN 'payload_from'
						WHEN $4 ?| dialer.machine_detection_keys()
							 AND dialer.machine_detection_rule($4, ($11).machine_detection, $15) IS NOT NULL
							 THEN dialer.machine_detection_rule($4, ($11).machine_detection, $15)
						WHEN $7 IS NULL OR $7 NOT BETWEEN -1000 AND 1000 THEN 'priority'
						WHEN $8 IS NOT NULL AND $8 NOT BETWEEN 1 AND 20 THEN 'max_attempts'
						WHEN $6 IS NOT NULL AND length($6) > 200 THEN 'dedupe_key'
						WHEN $5 IS NOT NULL AND length($5) > 63 THEN 'campaign'
			END
$$;
COMMENT ON FUNCTION dialer.call_rule(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, dialer.provider_kinds, text[], text, boolean, jsonb) IS
	'Internal: the one home of the enqueue rules. NULL for an acceptable call, else the rule it breaks first (to_number_missing, to_number_format, run_at_missing, run_at_infinite, run_at_past, deadline_infinite, deadline_order, timezone, provider_missing, provider_unknown, payload_type, payload_size, payload_mode, payload_base_url, payload_message, nothing_to_say, payload_from, a rule of dialer.machine_detection_rule, priority, max_attempts, dedupe_key, campaign)';

/*
 * The error for a call that breaks a rule of dialer.call_rule (same arguments): no row
 * for an acceptable call, else one row: the rule and the error enqueue_call raises for
 * it (SQLSTATE, message naming the argument and its value, detail, hint).  Evaluated
 * only for refused calls.
 */
CREATE FUNCTION dialer.call_refusal(
	to_number text, run_at timestamptz, provider text, payload jsonb, campaign text,
	dedupe_key text, priority int, max_attempts int, timezone text, deadline timestamptz,
	provider_kind dialer.provider_kinds, provider_hosts text[], provider_twiml_url text, late_ok boolean,
	provider_detection jsonb DEFAULT NULL)
RETURNS TABLE (rule text, sqlstate text, message text, detail text, hint text)
LANGUAGE sql
STABLE
AS $$
	SELECT r.rule,
		CASE r.rule
			WHEN 'to_number_missing' THEN '22004' WHEN 'run_at_missing' THEN '22004'
			WHEN 'provider_missing' THEN '22004' WHEN 'provider_unknown' THEN '42704'
			WHEN 'payload_size' THEN '54000' ELSE '22023' END,
		CASE WHEN r.rule = 'provider_unknown' THEN 'unknown provider: ' || quote_literal(left($3, 80))
			 ELSE 'invalid ' || r.argument || ': ' ||
				CASE WHEN r.value IS NULL THEN 'NULL'
					 WHEN length(r.value) > 80 THEN quote_literal(left(r.value, 77) || '...')
					 ELSE quote_literal(r.value) END END,
		CASE r.rule
			WHEN 'to_number_missing' THEN 'A phone number is required.'
			WHEN 'to_number_format' THEN 'A phone number must be in E.164 form: "+" then 8 to 15 digits, the first not 0, with no spaces or punctuation.'
			WHEN 'run_at_missing' THEN 'run_at is when the call is due and must be given.'
			WHEN 'run_at_infinite' THEN format('run_at must be a finite time: %s is not a moment a call can fall due.', $2)
			WHEN 'run_at_past' THEN format('run_at is %s in the past, more than dialer.late_tolerance (%s): a call meant for then would be dialled now.',
				justify_interval(date_trunc('second', now() - $2)), dialer.late_tolerance())
			WHEN 'deadline_infinite' THEN format('deadline must be a finite time after run_at: %s is not one (for no deadline, pass NULL).', $10)
			WHEN 'deadline_order' THEN format('deadline must be after run_at (%s).', $2)
			WHEN 'timezone' THEN 'The calling window is evaluated in this time zone, and PostgreSQL does not know it.'
			WHEN 'provider_missing' THEN 'A provider name is required.'
			WHEN 'provider_unknown' THEN format('Known providers: %s.',
				coalesce((SELECT string_agg(quote_literal(p.name), ', ' ORDER BY p.name) FROM dialer.providers p), 'none'))
			WHEN 'payload_type' THEN format('payload must be a JSON object, not %s.', coalesce(jsonb_typeof($4), 'NULL'))
			WHEN 'payload_size' THEN 'payload is at most 64 kB (65536 bytes) as JSON text.'
			WHEN 'payload_mode' THEN format('A call of provider kind %s runs in mode %s.', ($11).kind, array_to_string(($11).call_modes, ' or '))
			WHEN 'payload_base_url' THEN format('A per-call base_url must be an http(s) URL whose host is in allowed_hosts of provider %s (%s).',
				quote_literal($3), coalesce(nullif(array_to_string($12, ', '), ''), 'none'))
			WHEN 'payload_message' THEN format('A call of provider kind %s speaks a message of at most %s characters; this message has %s.',
				($11).kind, ($11).message_max_length, length($4->>'message'))
			WHEN 'nothing_to_say' THEN format('A call of provider kind %s needs something to say: payload.message, payload.url or payload.twiml_url, or a twiml_url on provider %s, which has none.', ($11).kind, quote_literal($3))
			WHEN 'payload_from' THEN 'The caller id must be an E.164 number.'
			WHEN 'priority' THEN 'priority must be between -1000 and 1000 (higher is dialled first).'
			WHEN 'max_attempts' THEN 'max_attempts must be between 1 and 20.'
			WHEN 'dedupe_key' THEN format('dedupe_key is at most 200 characters; this one has %s.', length($6))
			WHEN 'campaign' THEN 'A campaign name is at most 63 characters.'
			ELSE r.md_detail END,
		CASE r.rule
			WHEN 'to_number_missing' THEN 'Pass the number in E.164 form, e.g. +14155550123.'
			WHEN 'to_number_format' THEN 'Write the number with its country code, e.g. +14155550123.'
			WHEN 'run_at_missing' THEN 'Omit run_at (it defaults to now()) or pass a timestamptz.'
			WHEN 'run_at_infinite' THEN 'Pass a real time, e.g. now() + interval ''1 hour''; to keep a call from being dialled, do not enqueue it (or cancel it).'
			WHEN 'run_at_past' THEN 'Pass late_ok => true to dial it now anyway, or a run_at in the future (dialer.next_local_time() gives the recipient''s next 10:00, say).'
			WHEN 'deadline_infinite' THEN 'Pass a real time, or omit deadline for a call that never expires.'
			WHEN 'deadline_order' THEN 'Give a later deadline, or none.'
			WHEN 'timezone' THEN 'Use an IANA name such as America/New_York (see pg_timezone_names).'
			WHEN 'provider_missing' THEN 'Name a row of dialer.providers.'
			WHEN 'provider_unknown' THEN 'Insert the provider into dialer.providers first, or pass provider => with a known name.'
			WHEN 'payload_type' THEN 'Pass a JSON object, e.g. ''{"message": "Your appointment is tomorrow at 9"}''.'
			WHEN 'payload_size' THEN 'Store large data in your own table and pass a reference in the payload.'
			WHEN 'payload_mode' THEN format('Set payload.mode to %s.', array_to_string(($11).call_modes, ' or '))
			WHEN 'payload_base_url' THEN 'Add the host to dialer.providers.allowed_hosts, or omit base_url to use the provider''s.'
			WHEN 'payload_message' THEN 'Shorten the message, or host TwiML yourself and pass payload.url.'
			WHEN 'nothing_to_say' THEN format('Pass payload => ''{"message": "..."}'' (spoken) or ''{"url": "https://..."}'' (your TwiML), or set dialer.providers.twiml_url of provider %s.', quote_literal($3))
			WHEN 'payload_from' THEN 'Omit it to use the provider''s from_number.'
			WHEN 'priority' THEN 'Use 0 for normal calls.'
			WHEN 'max_attempts' THEN 'Omit it to use the campaign''s or dialer.default_max_attempts.'
			WHEN 'dedupe_key' THEN 'Use a shorter key, e.g. a hash of what makes the call unique.'
			WHEN 'campaign' THEN 'Use the name of a row of dialer.campaigns or a short label.'
			ELSE r.md_hint END
	  FROM (SELECT q.rule,
				   CASE q.rule
					   WHEN 'to_number_missing' THEN 'to_number' WHEN 'to_number_format' THEN 'to_number'
					   WHEN 'run_at_missing' THEN 'run_at' WHEN 'run_at_infinite' THEN 'run_at' WHEN 'run_at_past' THEN 'run_at'
					   WHEN 'deadline_infinite' THEN 'deadline' WHEN 'deadline_order' THEN 'deadline'
					   WHEN 'provider_missing' THEN 'provider' WHEN 'payload_type' THEN 'payload'
					   WHEN 'payload_size' THEN 'payload' WHEN 'nothing_to_say' THEN 'payload'
					   WHEN 'payload_mode' THEN 'payload.mode' WHEN 'payload_base_url' THEN 'payload.base_url'
					   WHEN 'payload_message' THEN 'payload.message' WHEN 'payload_from' THEN 'payload.from'
					   ELSE coalesce(md.argument, q.rule) END AS argument,
				   CASE q.rule
					   WHEN 'to_number_format' THEN $1 WHEN 'run_at_infinite' THEN $2::text WHEN 'run_at_past' THEN $2::text
					   WHEN 'deadline_infinite' THEN $10::text WHEN 'deadline_order' THEN $10::text
					   WHEN 'timezone' THEN $9 WHEN 'payload_type' THEN $4::text
					   WHEN 'payload_size' THEN format('%s bytes', octet_length($4::text))
					   WHEN 'nothing_to_say' THEN $4::text
					   WHEN 'payload_mode' THEN $4->>'mode' WHEN 'payload_base_url' THEN $4->>'base_url'
					   WHEN 'payload_message' THEN $4->>'message' WHEN 'payload_from' THEN $4->>'from'
					   WHEN 'priority' THEN $7::text WHEN 'max_attempts' THEN $8::text
					   WHEN 'dedupe_key' THEN $6 WHEN 'campaign' THEN $5 ELSE md.value END AS value,
				   md.detail AS md_detail, md.hint AS md_hint
			  FROM (SELECT dialer.call_rule($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) AS rule OFFSET 0) q
			  -- the rules of machine detection are worded by their own home
			  LEFT JOIN LATERAL dialer.machine_detection_refusal(q.rule, $4, $3, ($11).kind, $15) md ON true
			 WHERE q.rule IS NOT NULL) r
$$;
COMMENT ON FUNCTION dialer.call_refusal(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, dialer.provider_kinds, text[], text, boolean, jsonb) IS
	'Internal: the error (sqlstate, message, detail, hint) for the rule dialer.call_rule() says a call breaks; no row for an acceptable call. enqueue_call raises it, enqueue_calls reports it per element.';

/*
 * The detail of a call's enqueued event: its run_at, campaign and who enqueued it, and
 * how late it was when a run_at past dialer.late_tolerance was accepted (late_ok).
 */
CREATE FUNCTION dialer.enqueued_detail(run_at timestamptz, campaign text)
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object('run_at', run_at, 'campaign', campaign, 'by', session_user::text,
		'late_by', CASE WHEN run_at < now() - dialer.late_tolerance() THEN justify_interval(now() - run_at)::text END));
$$;
COMMENT ON FUNCTION dialer.enqueued_detail(timestamptz, text) IS
	'Internal: the detail of an enqueued event (run_at, campaign, by, and late_by for a call accepted with a run_at past dialer.late_tolerance)';

/*
 * The detail of the event that creates a call at enqueue: a number on the do-not-call list
 * (dnc: its entry, NULL when none) skips it, naming the entry; a calling policy's refusal
 * (rule) skips it, naming the policy; else it is enqueued (dialer.enqueued_detail).
 */
CREATE FUNCTION dialer.creation_detail(dnc dialer.do_not_call, policy text, rule text, timezones text[],
									   reason text, run_at timestamptz, campaign text)
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
	SELECT CASE WHEN (dnc).number IS NOT NULL THEN
				jsonb_build_object('reason', 'do_not_call', 'do_not_call_reason', (dnc).reason, 'listed_at', (dnc).added_at)
				WHEN rule IS NOT NULL THEN dialer.policy_skip_detail('enqueue', policy, rule, timezones, reason)
				ELSE dialer.enqueued_detail(run_at, campaign) END;
$$;
COMMENT ON FUNCTION dialer.creation_detail(dialer.do_not_call, text, text, text[], text, timestamptz, text) IS
	'Internal: the detail of a call''s creation event at enqueue: skipped for the do-not-call list (the entry) or a calling policy (policy, rule), else enqueued';

/*
 * Puts a call in the queue.  Everything is validated before anything is written
 * (dialer.call_refusal: the same rules as enqueue_calls); a duplicate dedupe_key returns
 * the stored call's id and writes nothing (also when two sessions race: the unique index
 * decides and the loser reads the winner's row); a number on the do-not-call list is
 * stored as skipped with an event.  The worker is woken when the transaction commits.
 * One statement on the usual path reads, checks, and writes the call and its event.
 */
CREATE FUNCTION dialer.enqueue_call(
	to_number text,
	run_at timestamptz DEFAULT now(),
	provider text DEFAULT 'default',
	payload jsonb DEFAULT '{}',
	campaign text DEFAULT NULL,
	dedupe_key text DEFAULT NULL,
	priority int DEFAULT 0,
	max_attempts int DEFAULT NULL,
	timezone text DEFAULT NULL,
	deadline timestamptz DEFAULT NULL,
	late_ok boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	v		record;
	e		record;
	pol		record;		/* a calling policy's refusal at enqueue: dialer.enqueue_refusal */
BEGIN
	/*
	 * With a policy holding a ledger enabled (consent, silence after a refusal), its
	 * refusals are looked for first, for a number and instant the rules accept: the call
	 * is then stored as skipped, naming the policy and rule.  Otherwise this is one lookup.
	 */
	IF dialer.ledger_policies_enabled()
	   AND dialer.is_e164(to_number) AND isfinite(run_at)
	   AND (timezone IS NULL OR dialer.is_valid_timezone(timezone)) THEN
		SELECT * INTO pol FROM dialer.enqueue_refusal(to_number, run_at, timezone, campaign, provider, payload->>'purpose');
	ELSE
		SELECT NULL::text AS policy, NULL::text AS rule, NULL::text AS reason, NULL::text[] AS timezones INTO pol;
	END IF;

	/*
	 * One statement: look up the provider, the do-not-call list, a stored dedupe key and
	 * the campaign's max_attempts, apply the rules, and, when they pass and the key is new,
	 * write the call and its event and wake the worker at commit.
	 */
	WITH p AS (
		-- held until commit, as a foreign key's check would: the provider cannot be deleted
		-- or renamed under the new call (dialer.providers_keep_calls)
		SELECT k AS kind, p.from_number, p.allowed_hosts, p.twiml_url,
			   -- read by the rules only for a payload with a detection key
			   CASE WHEN payload ?| dialer.machine_detection_keys()
					THEN dialer.provider_detection(p.machine_detection, p.async_amd, p.status_callback_url) END AS detection
		  FROM dialer.providers p JOIN dialer.provider_kinds k ON k.kind = p.kind
		 WHERE p.name = provider
		   FOR KEY SHARE OF p
	), look AS MATERIALIZED (
		SELECT p.kind, p.from_number, p.allowed_hosts, p.twiml_url, p.detection,
			   CASE WHEN dedupe_key IS NOT NULL THEN
					(SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = dedupe_key) END AS dup_id,
			   CASE WHEN max_attempts IS NULL AND campaign IS NOT NULL THEN
					(SELECT k.max_attempts FROM dialer.campaigns k WHERE k.name = campaign) END AS camp_attempts,
			   d.number IS NOT NULL AS dnc, d AS dnc_entry,
			   dialer.call_rule(to_number, run_at, provider, payload, campaign, dedupe_key, priority,
								max_attempts, timezone, deadline, p.kind, p.allowed_hosts, p.twiml_url, late_ok,
								p.detection) AS rule
		  FROM (SELECT 1) one
		  LEFT JOIN p ON true
		  LEFT JOIN LATERAL dialer.do_not_call_entry(to_number) d ON true
	), c AS (
		INSERT INTO dialer.scheduled_calls AS c
			(status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
			 dedupe_key, priority, max_attempts, timezone, deadline, finished_at, last_error)
		SELECT CASE WHEN look.dnc OR pol.rule IS NOT NULL THEN 'skipped' ELSE 'scheduled' END,
			   run_at, run_at, to_number,
			   coalesce(payload->>'from', look.from_number), provider,
			   dialer.call_mode(look.kind, payload),
			   payload, campaign, dedupe_key, priority,
			   coalesce(max_attempts, look.camp_attempts, current_setting('dialer.default_max_attempts')::int),
			   timezone, deadline, CASE WHEN look.dnc OR pol.rule IS NOT NULL THEN now() END,
			   CASE WHEN NOT look.dnc THEN pol.reason END
		  FROM look
		 WHERE look.rule IS NULL AND look.dup_id IS NULL		-- a refused call or a duplicate writes nothing
		ON CONFLICT ((c.dedupe_key)) WHERE c.dedupe_key IS NOT NULL DO NOTHING	-- (qualified: never the argument)
		RETURNING c.id, c.status
	), e AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT c.id, CASE WHEN c.status = 'skipped' THEN 'skipped' ELSE 'enqueued' END, NULL, c.status,
			   dialer.creation_detail(look.dnc_entry, pol.policy, pol.rule, pol.timezones, pol.reason, run_at, campaign)
		  FROM c, look
	)
	SELECT look.rule, look.kind, look.allowed_hosts, look.twiml_url, look.detection, look.dup_id, c.id,
		   CASE WHEN c.status = 'scheduled' THEN dialer.wake_worker() IS NULL END AS woken
	  INTO v
	  FROM look LEFT JOIN c ON true;

	IF v.rule IS NOT NULL THEN
		SELECT * INTO e
		  FROM dialer.call_refusal(to_number, run_at, provider, payload, campaign, dedupe_key, priority,
								   max_attempts, timezone, deadline, v.kind, v.allowed_hosts, v.twiml_url, late_ok,
								   v.detection);
		RAISE EXCEPTION USING ERRCODE = e.sqlstate, MESSAGE = e.message, DETAIL = e.detail, HINT = e.hint;
	END IF;
	IF v.id IS NOT NULL THEN
		RETURN v.id;
	END IF;
	IF v.dup_id IS NOT NULL THEN
		RETURN v.dup_id;		/* a duplicate writes nothing */
	END IF;
	/* another session stored the same dedupe_key first and has committed */
	RETURN (SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = dedupe_key);
END;
$$;
COMMENT ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, boolean) IS
	'Schedules a call and returns its id (the stored id for a duplicate dedupe_key; a do-not-call number is stored as skipped). A run_at more than dialer.late_tolerance in the past is refused unless late_ok. Wakes the worker at commit. Many calls at once: dialer.enqueue_calls().';

/*
 * One call of dialer.enqueue_calls(): the keys its JSON objects may have.
 */
CREATE TYPE dialer.call_request AS (
	to_number		text,
	run_at			timestamptz,
	provider		text,
	payload			jsonb,
	campaign		text,
	dedupe_key		text,
	priority		int,
	max_attempts	int,
	timezone		text,
	deadline		timestamptz,
	customer_ref	text,
	late_ok			boolean
);
COMMENT ON TYPE dialer.call_request IS
	'Internal: a call as enqueue_calls() reads it from each JSON object: enqueue_call''s arguments plus customer_ref';

/*
 * What enqueue_calls() says about each element of its input.
 */
CREATE TYPE dialer.enqueue_result AS (
	item		int,
	id			bigint,
	outcome		text,
	reason		text,
	sqlstate	text,
	message		text,
	detail		text,
	hint		text
);
COMMENT ON TYPE dialer.enqueue_result IS
	'One element of enqueue_calls()''s input: its position (item, from 1), the call id, the outcome (scheduled, skipped, duplicate, refused) and, when refused, the rule broken (reason: a rule of dialer.call_rule(), not_object or unknown_key) with the error enqueue_call would raise';

/*
 * An error as enqueue_calls() reports it for a refused element.
 */
CREATE TYPE dialer.call_error AS (
	sqlstate	text,
	message		text,
	detail		text,
	hint		text
);
COMMENT ON TYPE dialer.call_error IS 'Internal: the SQLSTATE, message, detail and hint of a refused call';
COMMENT ON COLUMN dialer.call_error.sqlstate IS 'SQLSTATE enqueue_call raises for the call';
COMMENT ON COLUMN dialer.call_error.message IS 'Error message (names the argument and its value)';
COMMENT ON COLUMN dialer.call_error.detail IS 'What is accepted';
COMMENT ON COLUMN dialer.call_error.hint IS 'How to fix it';
COMMENT ON COLUMN dialer.call_request.to_number IS 'Number to call (E.164), as enqueue_call(to_number)';
COMMENT ON COLUMN dialer.call_request.run_at IS 'When the call is due; absent: now()';
COMMENT ON COLUMN dialer.call_request.provider IS 'Provider name; absent: ''default''';
COMMENT ON COLUMN dialer.call_request.payload IS 'JSON object handed to the provider; absent: {}';
COMMENT ON COLUMN dialer.call_request.campaign IS 'Campaign name or label, as enqueue_call(campaign)';
COMMENT ON COLUMN dialer.call_request.dedupe_key IS 'At most one call per key, as enqueue_call(dedupe_key)';
COMMENT ON COLUMN dialer.call_request.priority IS 'Priority (-1000 to 1000); absent: 0';
COMMENT ON COLUMN dialer.call_request.max_attempts IS 'Requests allowed (1 to 20); absent: the campaign''s or dialer.default_max_attempts';
COMMENT ON COLUMN dialer.call_request.timezone IS 'Recipient''s IANA time zone for the calling window';
COMMENT ON COLUMN dialer.call_request.deadline IS 'A call not started by then expires';
COMMENT ON COLUMN dialer.call_request.late_ok IS 'true: a run_at more than dialer.late_tolerance in the past is accepted (dialled now); absent: false';
COMMENT ON COLUMN dialer.call_request.customer_ref IS 'The application''s reference of the person called (stored in scheduled_calls.customer_ref)';
COMMENT ON COLUMN dialer.enqueue_result.item IS 'Position of the element in the input array, from 1';
COMMENT ON COLUMN dialer.enqueue_result.id IS 'The call id (the stored call''s for a duplicate; NULL when refused)';
COMMENT ON COLUMN dialer.enqueue_result.outcome IS 'scheduled, skipped (do-not-call), duplicate or refused';
COMMENT ON COLUMN dialer.enqueue_result.reason IS 'Refused: the rule broken (a rule of dialer.call_rule(), not_object or unknown_key); skipped by a calling policy: its rule (consent, refusal_silence, unknown_timezone)';
COMMENT ON COLUMN dialer.enqueue_result.sqlstate IS 'Refused: the SQLSTATE enqueue_call would raise';
COMMENT ON COLUMN dialer.enqueue_result.message IS 'Refused: the error message; skipped by a calling policy: why (policy, rule and reason)';
COMMENT ON COLUMN dialer.enqueue_result.detail IS 'Refused: the error detail';
COMMENT ON COLUMN dialer.enqueue_result.hint IS 'Refused: the error hint';

/*
 * The keys a call of enqueue_calls() may have: enqueue_call's argument names and
 * customer_ref (the attributes of dialer.call_request).  A constant the planner folds.
 */
CREATE FUNCTION dialer.call_request_keys()
RETURNS text[]
LANGUAGE sql
IMMUTABLE
AS $$
	SELECT '{to_number,run_at,provider,payload,campaign,dedupe_key,priority,max_attempts,timezone,deadline,customer_ref,late_ok}'::text[];
$$;
COMMENT ON FUNCTION dialer.call_request_keys() IS
	'Internal: the keys an element of enqueue_calls() may have (the attributes of dialer.call_request)';

/*
 * The error of an element of enqueue_calls() that is not a call at all: shape
 * not_object (not a JSON object) or unknown_key (a key enqueue_calls does not know).
 */
CREATE FUNCTION dialer.call_shape_error(element jsonb, shape text)
RETURNS dialer.call_error
LANGUAGE sql
STABLE	-- as the functions it calls are (IMMUTABLE kept it from being inlined)
AS $$
	SELECT CASE shape
		WHEN 'not_object' THEN
			ROW('22023', format('invalid call: %s', left(element::text, 80)),
				format('Each element of calls must be a JSON object, not %s.', jsonb_typeof(element)),
				'Pass e.g. {"to_number": "+14155550123"}.')::dialer.call_error
		WHEN 'unknown_key' THEN
			ROW('42703',
				format('invalid call: unknown key %s',
					   (SELECT string_agg(quote_literal(k), ', ')
						  FROM jsonb_object_keys(element - dialer.call_request_keys()) k)),
				'A call''s keys are enqueue_call''s argument names: to_number, run_at, provider, payload, campaign, dedupe_key, priority, max_attempts, timezone, deadline, late_ok; and customer_ref.',
				'Check the spelling; what the call says goes inside payload.')::dialer.call_error
		END;
$$;
COMMENT ON FUNCTION dialer.call_shape_error(jsonb, text) IS
	'Internal: the error (sqlstate, message, detail, hint) of an enqueue_calls() element that is not an object (not_object) or has a key it does not know (unknown_key)';

/*
 * enqueue_calls' checks of its own arguments (the calls themselves are checked element by
 * element): calls is a JSON array, atomic is true or false.
 */
CREATE FUNCTION dialer.check_enqueue_calls_arguments(calls jsonb, atomic boolean)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF calls IS NULL THEN
		PERFORM dialer.raise_bad_argument('calls', NULL, 'calls is a JSON array of calls.',
			'Pass e.g. ''[{"to_number": "+14155550123", "payload": {"message": "Hello"}}]''.', '22004');
	END IF;
	IF jsonb_typeof(calls) <> 'array' THEN
		PERFORM dialer.raise_bad_argument('calls', calls::text,
			format('calls must be a JSON array of objects, not %s.', jsonb_typeof(calls)),
			'Wrap a single call in [ ], or aggregate rows with jsonb_agg(jsonb_build_object(...)).');
	END IF;
	IF atomic IS NULL THEN
		PERFORM dialer.raise_bad_argument('atomic', NULL,
			'atomic => true writes all or nothing; atomic => false writes the acceptable calls and returns the refused ones.',
			'Omit it for all or nothing.', '22004');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.check_enqueue_calls_arguments(jsonb, boolean) IS
	'Internal: raises the error of an enqueue_calls() argument that is not what it takes (calls not a JSON array, atomic NULL)';

/*
 * What enqueue_calls looks up once per batch, as objects each element reads by key
 * (whatever the size of the batch; a join would hash the whole batch when the tables look
 * larger than it): the providers (name -> [kind's row, from_number, allowed_hosts, twiml_url,
 * machine detection (dialer.provider_detection)]),
 * held until commit so that they cannot be deleted or renamed under the new calls (see
 * providers_keep_calls), and the campaigns' max_attempts.
 */
CREATE FUNCTION dialer.enqueue_lookups(OUT providers jsonb, OUT campaigns jsonb)
LANGUAGE sql
VOLATILE	-- FOR KEY SHARE
AS $$
	SELECT (SELECT jsonb_object_agg(p.name, jsonb_build_array(to_jsonb(k), p.from_number, p.allowed_hosts::text, p.twiml_url,
																 dialer.provider_detection(p.machine_detection, p.async_amd,
																						   p.status_callback_url)))
			  FROM (SELECT * FROM dialer.providers FOR KEY SHARE) p JOIN dialer.provider_kinds k ON k.kind = p.kind),
		   (SELECT jsonb_object_agg(k.name, k.max_attempts) FROM dialer.campaigns k WHERE k.max_attempts IS NOT NULL);
$$;
COMMENT ON FUNCTION dialer.enqueue_lookups() IS
	'Internal: the providers (locked FOR KEY SHARE) and campaigns'' max_attempts as JSON objects by name, read once by enqueue_calls()';

/*
 * The elements of enqueue_calls' array, each parsed over the defaults (a missing key takes
 * enqueue_call's default), with its provider's lookup entry and the rule it breaks (NULL: none;
 * not_object or unknown_key when it is not a call at all).  A plain SQL function, inlined into
 * enqueue_calls' statement.
 */
CREATE FUNCTION dialer.parse_call_requests(calls jsonb, defaults dialer.call_request, providers jsonb)
RETURNS TABLE (item int, element jsonb, shape text, to_number text, run_at timestamptz, provider text,
			   payload jsonb, campaign text, dedupe_key text, priority int, max_attempts int, timezone text,
			   deadline timestamptz, customer_ref text, late_ok boolean, request dialer.call_request,
			   prov jsonb, kind dialer.provider_kinds, reason text)
LANGUAGE sql
STABLE
AS $$
	SELECT e.o::int, e.v, s.shape, r.*, r, p.prov, k,
		   coalesce(s.shape,
					dialer.call_rule(r.to_number, r.run_at, r.provider, r.payload, r.campaign, r.dedupe_key,
									 r.priority, r.max_attempts, r.timezone, r.deadline, k,
									 (p.prov->>2)::text[], p.prov->>3, r.late_ok, p.prov->4))
	  FROM jsonb_array_elements(calls) WITH ORDINALITY AS e(v, o)
	 CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(e.v) <> 'object' THEN 'not_object'
									 WHEN e.v - dialer.call_request_keys() <> '{}' THEN 'unknown_key' END AS shape) s
	 CROSS JOIN LATERAL jsonb_populate_record(defaults, CASE WHEN s.shape IS NULL THEN e.v ELSE '{}' END) r
	 CROSS JOIN LATERAL (SELECT providers->r.provider AS prov) p
	 -- the kind's row, joined (built from the lookup's JSON it cost a record parse per element)
	  LEFT JOIN dialer.provider_kinds k ON k.kind = p.prov->0->>'kind';
$$;
COMMENT ON FUNCTION dialer.parse_call_requests(jsonb, dialer.call_request, jsonb) IS
	'Internal: each element of an enqueue_calls() array as a call (over the defaults), with its provider''s lookup entry and the rule it breaks (NULL: none)';

/*
 * The error (sqlstate, message, detail, hint) of a refused element of enqueue_calls(),
 * computed for it alone: that of enqueue_call for a call that breaks a rule, that of its
 * shape for an element that is not a call.
 */
CREATE FUNCTION dialer.enqueue_element_error(element jsonb, shape text, request dialer.call_request, prov jsonb,
											  kind dialer.provider_kinds)
RETURNS dialer.call_error
LANGUAGE sql
STABLE
AS $$
	SELECT CASE WHEN shape IS NULL THEN
				(SELECT ROW(f.sqlstate, f.message, f.detail, f.hint)::dialer.call_error
				   FROM dialer.call_refusal((request).to_number, (request).run_at, (request).provider,
											(request).payload, (request).campaign, (request).dedupe_key,
											(request).priority, (request).max_attempts, (request).timezone,
											(request).deadline, kind, (prov->>2)::text[], prov->>3,
											(request).late_ok, prov->4) f)
			ELSE dialer.call_shape_error(element, shape) END;
$$;
COMMENT ON FUNCTION dialer.enqueue_element_error(jsonb, text, dialer.call_request, jsonb, dialer.provider_kinds) IS
	'Internal: the error of a refused enqueue_calls() element (enqueue_call''s for a call breaking a rule; its shape''s for a non-call)';

/*
 * Raises the error of enqueue_calls(atomic => true)'s first refused element, its message
 * prefixed with its position: nothing of the batch is written.
 */
CREATE FUNCTION dialer.raise_refused_element(bad dialer.enqueue_result, total int)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	RAISE EXCEPTION USING ERRCODE = bad.sqlstate,
		MESSAGE = format('call %s of %s refused: %s', bad.item, total, bad.message),
		DETAIL = bad.detail,
		HINT = bad.hint || ' enqueue_calls(..., atomic => false) writes the other calls and returns the refused ones.';
END;
$$;
COMMENT ON FUNCTION dialer.raise_refused_element(dialer.enqueue_result, int) IS
	'Internal: raises the error of enqueue_calls(atomic => true)''s first refused element, prefixed with its position';

/*
 * Enqueues many calls in one set-based statement: calls is a JSON array of objects with
 * enqueue_call's argument names plus customer_ref (dialer.call_request).  Each element gets
 * enqueue_call's treatment: its rules, dedupe (a key stored, or used earlier in the array:
 * outcome duplicate), do-not-call and policies (stored as skipped), one wake-up at commit.
 * atomic => true: all or nothing, the first refused element raises its error; false: the
 * refused ones come back with their error.  A value of the wrong JSON type for its key fails
 * the whole call with PostgreSQL's own error.  One row per element, in order.
 */
CREATE FUNCTION dialer.enqueue_calls(calls jsonb, atomic boolean DEFAULT true)
RETURNS SETOF dialer.enqueue_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
SET enable_nestloop = off	-- the batch is joined to what it wrote by hash: never a rescan per element
SET jit = off			-- compiling its expressions costs more than running them
SET work_mem = '64MB'	-- the batch's hashes stay in memory
AS $$
#variable_conflict use_column
DECLARE
	v_res		dialer.enqueue_result[];
	v_woken		boolean;
	v_first_bad	int;
	v_max		int := current_setting('dialer.default_max_attempts')::int;
	v_defaults	dialer.call_request :=	-- an element's defaults, kept for the keys it lacks
					ROW(NULL, now(), 'default', '{}', NULL, NULL, 0, NULL, NULL, NULL, NULL, false);
	v_providers	jsonb;
	v_campaigns	jsonb;
	v_policies	boolean := dialer.ledger_policies_enabled();
BEGIN
	PERFORM dialer.check_enqueue_calls_arguments(calls, atomic);
	SELECT l.providers, l.campaigns INTO v_providers, v_campaigns FROM dialer.enqueue_lookups() l;

	/*
	 * One statement: parse and check each element, give the acceptable ones ids in their
	 * order, apply do-not-call and the policies, write the calls (a dedupe key stored or
	 * used earlier writes nothing) and their events, report every element.
	 */
	WITH req AS MATERIALIZED (
		SELECT q.*,
			   CASE WHEN q.reason IS NULL THEN nextval('dialer.scheduled_calls_id_seq'::regclass) END AS new_id,
			   d.dnc, r.policy, r.rule AS policy_rule, r.reason AS policy_reason, r.timezones
		  -- ids are drawn in the order of the elements, after the rules
		  FROM (SELECT * FROM dialer.parse_call_requests(calls, v_defaults, v_providers) OFFSET 0) q
		 CROSS JOIN LATERAL (SELECT q.reason IS NULL
									AND EXISTS (SELECT FROM dialer.do_not_call_entry(q.to_number)) AS dnc) d
		  -- a ledger policy's refusal (consent, silence after a refusal), when one is enabled
		  LEFT JOIN LATERAL (SELECT r.* FROM dialer.enqueue_refusal(q.to_number, q.run_at, q.timezone, q.campaign,
																	  q.provider, q.payload->>'purpose') r
							  WHERE v_policies AND q.reason IS NULL AND NOT d.dnc) r ON true
	), call_rows AS (
		SELECT q.item, q.new_id,
			   CASE WHEN q.dnc OR q.policy_rule IS NOT NULL THEN 'skipped' ELSE 'scheduled' END AS status, q.run_at,
			   q.to_number, coalesce(q.payload->>'from', q.prov->>1) AS from_number, q.provider,
			   dialer.call_mode(q.kind, q.payload) AS mode,
			   q.payload, q.campaign, q.customer_ref, q.dedupe_key, q.priority,
			   coalesce(q.max_attempts, (v_campaigns->>q.campaign)::int, v_max) AS max_attempts,
			   q.timezone, q.deadline, CASE WHEN q.dnc OR q.policy_rule IS NOT NULL THEN now() END AS finished_at,
			   q.policy, q.policy_rule, q.policy_reason, q.timezones, q.dnc
		  FROM req q
		 WHERE q.new_id IS NOT NULL
	), ins_keyed AS (
		-- the calls with a dedupe key, in the array's order: of two with one key the first is stored
		INSERT INTO dialer.scheduled_calls AS c
			(id, status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
			 customer_ref, dedupe_key, priority, max_attempts, timezone, deadline, finished_at, last_error)
		OVERRIDING SYSTEM VALUE
		SELECT r.new_id, r.status, r.run_at, r.run_at, r.to_number, r.from_number, r.provider, r.mode, r.payload,
			   r.campaign, r.customer_ref, r.dedupe_key, r.priority, r.max_attempts, r.timezone, r.deadline,
			   r.finished_at, r.policy_reason
		  FROM call_rows r
		 WHERE r.dedupe_key IS NOT NULL
		ON CONFLICT ((c.dedupe_key)) WHERE c.dedupe_key IS NOT NULL DO NOTHING
		RETURNING c.id
	), ins_plain AS (
		-- the others, by a plain INSERT (ON CONFLICT costs a lock and a WAL record more per row)
		INSERT INTO dialer.scheduled_calls AS c
			(id, status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
			 customer_ref, dedupe_key, priority, max_attempts, timezone, deadline, finished_at, last_error)
		OVERRIDING SYSTEM VALUE
		SELECT r.new_id, r.status, r.run_at, r.run_at, r.to_number, r.from_number, r.provider, r.mode, r.payload,
			   r.campaign, r.customer_ref, r.dedupe_key, r.priority, r.max_attempts, r.timezone, r.deadline,
			   r.finished_at, r.policy_reason
		  FROM call_rows r
		 WHERE r.dedupe_key IS NULL
	), written AS (	-- a call with a dedupe key is written when ins_keyed wrote it
		SELECT r.* FROM call_rows r WHERE r.dedupe_key IS NULL OR r.new_id IN (SELECT k.id FROM ins_keyed k)
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT w.new_id, CASE WHEN w.status = 'skipped' THEN 'skipped' ELSE 'enqueued' END, NULL, w.status,
			   dialer.creation_detail(d.entry, w.policy, w.policy_rule, w.timezones, w.policy_reason, w.run_at, w.campaign)
		  FROM written w	-- the entry joined: as a subquery argument, creation_detail was not inlined
		  LEFT JOIN LATERAL (SELECT e AS entry FROM dialer.do_not_call_entry(w.to_number) e WHERE w.dnc) d ON true
	)
	SELECT array_agg(ROW(x.item,
						 CASE WHEN x.stored THEN x.new_id
							  WHEN x.reason IS NULL AND x.dedupe_key IS NOT NULL THEN
								(SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = x.dedupe_key) END,
						 CASE WHEN x.reason IS NOT NULL THEN 'refused'
							  WHEN NOT x.stored THEN 'duplicate'
							  WHEN x.dnc OR x.policy_rule IS NOT NULL THEN 'skipped' ELSE 'scheduled' END,
						 coalesce(x.reason, CASE WHEN x.stored THEN x.policy_rule END),
						 (x.err).sqlstate, coalesce((x.err).message, CASE WHEN x.stored THEN x.policy_reason END),
						 (x.err).detail, (x.err).hint)::dialer.enqueue_result ORDER BY x.item),
		   coalesce(bool_or(x.stored AND NOT x.dnc AND x.policy_rule IS NULL), false),
		   min(x.item) FILTER (WHERE x.reason IS NOT NULL)
	  INTO v_res, v_woken, v_first_bad
	  FROM (SELECT s.item, s.dedupe_key, s.reason, s.new_id, s.dnc, s.policy_rule, s.policy_reason,
				   s.new_id IS NOT NULL AND (s.dedupe_key IS NULL OR s.new_id IN (SELECT k.id FROM ins_keyed k)) AS stored,
				   CASE WHEN s.reason IS NOT NULL
						THEN dialer.enqueue_element_error(s.element, s.shape, s.request, s.prov, s.kind) END AS err
			  FROM req s) x;

	IF atomic AND v_first_bad IS NOT NULL THEN
		PERFORM dialer.raise_refused_element(v_res[v_first_bad], jsonb_array_length(calls));
	END IF;
	IF v_woken THEN
		PERFORM dialer.wake_worker();
	END IF;

	RETURN QUERY	-- a duplicate of a key stored by this array or by a session that won a race: its id
		SELECT u.item,
			   CASE WHEN u.outcome = 'duplicate' AND u.id IS NULL THEN
					(SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = calls->(u.item - 1)->>'dedupe_key')
			   ELSE u.id END,
			   u.outcome, u.reason, u.sqlstate, u.message, u.detail, u.hint
		  FROM unnest(v_res) u;	-- in the order of the array: by item
END;
$$;
COMMENT ON FUNCTION dialer.enqueue_calls(jsonb, boolean) IS
	'Enqueues a JSON array of calls (keys: enqueue_call''s arguments plus customer_ref) with enqueue_call''s rules, dedupe, do-not-call and wake-up; one row per element: item, id, outcome (scheduled, skipped, duplicate, refused) and the error of a refused one. atomic => true (default): all or nothing; false: writes the acceptable calls.';

/*
 * Cancels a call that has not been claimed yet.  A call already being dispatched or
 * finished cannot be taken back: the answer is false and nothing changes.
 */
CREATE FUNCTION dialer.cancel_call(call_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls := dialer.lock_call(call_id);
BEGIN
	IF NOT dialer.may_move(v_call.status, 'canceled') THEN
		RETURN false;
	END IF;
	PERFORM count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
		v_call.id, 'scheduled', 'canceled', 'canceled', jsonb_build_object('by', session_user::text))]);
	RETURN true;
END;
$$;
COMMENT ON FUNCTION dialer.cancel_call(bigint) IS
	'Cancels a scheduled call: true when this call canceled it, false when it was already claimed or finished; an error for an unknown id';

/*
 * Puts a failed, unknown or expired call back in the queue, due now, with a fresh run
 * of max_attempts attempts (and, should it end unknown again, 3 fresh searches).  An expired call loses its deadline (else it would expire
 * again at once).  Any other status: false, nothing changes.
 */
CREATE FUNCTION dialer.retry_call(call_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls := dialer.lock_call(call_id);
BEGIN
	IF NOT dialer.may_move(v_call.status, 'requeued') THEN
		RETURN false;
	END IF;
	-- a new run, due now (an expired call without its deadline: dialer.call_transitions)
	PERFORM count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
		v_call.id, v_call.status, 'requeued', 'scheduled',
		jsonb_strip_nulls(jsonb_build_object('by', session_user::text,
			'previous_error', v_call.last_error,
			'cleared_deadline', CASE WHEN v_call.status = 'expired' THEN v_call.deadline END)),
		next_attempt_at => now())]);
	PERFORM dialer.wake_worker();
	RETURN true;
END;
$$;
COMMENT ON FUNCTION dialer.retry_call(bigint) IS
	'Requeues a failed, unknown or expired call (due now, a fresh run of max_attempts): true when requeued, false for any other status';

/*
 * A call with its attempts and events, as one JSON document.
 */
CREATE FUNCTION dialer.call_details(call_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls;
BEGIN
	IF call_id IS NULL THEN
		PERFORM dialer.raise_bad_argument('call_id', NULL, 'A call id is required.', 'Pass the id enqueue_call returned.', '22004');
	END IF;
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = call_details.call_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'call % does not exist', call_id
			USING ERRCODE = 'no_data_found',
				  DETAIL = 'No row of dialer.scheduled_calls has this id (dialer.cleanup() may have removed it).',
				  HINT = 'Pass an id returned by dialer.enqueue_call().';
	END IF;
	RETURN jsonb_build_object(
		'call', to_jsonb(v_call),
		'attempts', coalesce((SELECT jsonb_agg(to_jsonb(a) - 'call_id' ORDER BY a.attempt)
							  FROM dialer.call_attempts a WHERE a.call_id = v_call.id), '[]'),
		'events', coalesce((SELECT jsonb_agg(to_jsonb(e) - 'call_id' ORDER BY e.id)
							FROM dialer.call_events e WHERE e.call_id = v_call.id), '[]'));
END;
$$;
COMMENT ON FUNCTION dialer.call_details(bigint) IS
	'A call with its attempts and events as jsonb: {call, attempts, events}; an error for an unknown id';

/*
 * Counts of one day (the day's calls by run_at, in the session's TimeZone), the
 * whole queue's backlog and next due time, and the worker's state.
 */
CREATE FUNCTION dialer.stats(day date DEFAULT current_date)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_from	timestamptz;
	v_to	timestamptz;
	v_day	jsonb;
	v_camp	jsonb;
BEGIN
	IF day IS NULL THEN
		PERFORM dialer.raise_bad_argument('day', NULL, 'A day is required.', 'Omit it for today.', '22004');
	END IF;
	v_from := day::timestamptz;
	v_to := (day + 1)::timestamptz;

	-- "calls": every call of the day (0.1.0 and 0.2.0 also named it "scheduled")
	SELECT jsonb_build_object(
			'calls', count(*),
			'completed', count(*) FILTER (WHERE c.status = 'completed'),
			'failed', count(*) FILTER (WHERE c.status = 'failed'),
			'not_reached', count(*) FILTER (WHERE c.status = ANY (dialer.not_reached_statuses())),
			'pending', count(*) FILTER (WHERE c.status = ANY (dialer.pending_statuses())),
			'not_called', count(*) FILTER (WHERE c.status IN ('canceled', 'skipped', 'expired')),
			'unknown', count(*) FILTER (WHERE c.status = 'unknown'),
			'held', count(*) FILTER (WHERE c.status = 'held'))
	  INTO v_day
	  FROM dialer.scheduled_calls c
	 WHERE c.run_at >= v_from AND c.run_at < v_to;

	SELECT coalesce(jsonb_object_agg(k.campaign, k.counts), '{}')
	  INTO v_camp
	  FROM (SELECT c.campaign,
				   jsonb_build_object(
					'calls', count(*),
					'completed', count(*) FILTER (WHERE c.status = 'completed'),
					'failed', count(*) FILTER (WHERE c.status = 'failed'),
					'not_reached', count(*) FILTER (WHERE c.status = ANY (dialer.not_reached_statuses())),
					'pending', count(*) FILTER (WHERE c.status = ANY (dialer.pending_statuses()))) AS counts
			  FROM dialer.scheduled_calls c
			 WHERE c.run_at >= v_from AND c.run_at < v_to AND c.campaign IS NOT NULL
			 GROUP BY c.campaign) k;

	RETURN jsonb_build_object('day', day) || v_day || jsonb_build_object(
			'total_pending', (SELECT count(*) FROM dialer.scheduled_calls c
							   WHERE c.status = ANY (dialer.pending_statuses())),
			'next_run_at', (SELECT min(c.next_attempt_at) FROM dialer.scheduled_calls c
							 WHERE c.status = 'scheduled'),
			'by_campaign', v_camp,
			'worker', (SELECT to_jsonb(w) FROM dialer.worker_status() w
						WHERE w.database = current_database() LIMIT 1));
END;
$$;
COMMENT ON FUNCTION dialer.stats(date) IS
	'Counts of a day''s calls (calls: all of them; completed, failed, not_reached, pending, not_called, unknown, held), total_pending, next_run_at, by_campaign and the worker''s state';

/*
 * Removes finished calls (completed, no_answer, busy, failed, canceled, skipped,
 * expired) that finished longer ago than older_than, with their attempts and events.
 * Calls still in progress and unknown calls are never touched.
 */
CREATE FUNCTION dialer.cleanup(older_than interval DEFAULT '30 days')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_count bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '0' THEN
		PERFORM dialer.raise_bad_argument('older_than', older_than::text,
			'older_than must be a non-negative interval.', 'For example dialer.cleanup(''90 days'').');
	END IF;
	DELETE FROM dialer.scheduled_calls c
	 WHERE c.status = ANY (dialer.final_statuses())
	   AND c.finished_at < now() - older_than;
	GET DIAGNOSTICS v_count = ROW_COUNT;
	-- callbacks kept for a CallSid no call ever got (a call placed by someone else)
	DELETE FROM dialer.pending_callbacks p WHERE p.received_at < now() - older_than;
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.cleanup(interval) IS
	'Deletes finished calls (and their attempts and events) that finished more than older_than ago, and pending callbacks received more than older_than ago; returns how many calls it removed. Unfinished and unknown calls are kept.';
