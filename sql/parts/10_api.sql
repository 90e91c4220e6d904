/*
 * pg_dialer 0.1.0: the SQL API of the queue.
 *
 * Every function that changes the queue is SECURITY DEFINER with a pinned search_path:
 * the tables stay the owner's, and a role is given exactly the capabilities it is
 * granted EXECUTE on (see README, "Privileges").
 */

/* C helpers (src/pg_dialer.c, src/shmem.c) */

CREATE FUNCTION dialer.wake_worker()
RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dialer_wake_worker';
COMMENT ON FUNCTION dialer.wake_worker() IS
	'Wakes the dispatcher when the current transaction commits (nothing happens on rollback)';

CREATE FUNCTION dialer.is_valid_timezone(name text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_is_valid_timezone';
COMMENT ON FUNCTION dialer.is_valid_timezone(text) IS
	'True when name is a time zone PostgreSQL knows (IANA names such as Europe/Paris)';

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
	OUT last_error_at timestamptz)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dialer_worker_status';
COMMENT ON FUNCTION dialer.worker_status() IS
	'The running dispatcher: pid, database, state, start time, requests in flight, counters and last error (no row when none runs)';

/*
 * Raises the error for a bad argument of an API function: SQLSTATE 22023 unless given,
 * a message naming the argument and its value, a detail saying what is accepted, and a
 * hint.  One place, so every validation error has the same shape.
 */
CREATE FUNCTION dialer.raise_bad_argument(argument text, value text, detail text, hint text,
										  errcode text DEFAULT '22023')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'invalid %: %', argument,
		CASE WHEN value IS NULL THEN 'NULL'
			 WHEN length(value) > 80 THEN quote_literal(left(value, 77) || '...')
			 ELSE quote_literal(value) END
		USING ERRCODE = errcode, DETAIL = detail, HINT = hint;
END;
$$;
COMMENT ON FUNCTION dialer.raise_bad_argument(text, text, text, text, text) IS
	'Internal: raises the standard "invalid <argument>: <value>" error of the API';

/*
 * Puts a call in the queue.  Everything is validated before anything is written; a
 * duplicate dedupe_key returns the stored call's id and writes nothing (also when two
 * sessions race: the unique index decides and the loser reads the winner's row); a
 * number on the do-not-call list is stored as skipped with an event.  The worker is woken
 * when the transaction commits.
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
	deadline timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	v_kind		text;
	v_mode		text;
	v_from		text;
	v_attempts	int;
	v_camp		dialer.campaigns;
	v_id		bigint;
	v_status	text := 'scheduled';
	v_dnc		dialer.do_not_call;
	v_hosts		text[];
	v_host		text;
BEGIN
	/* the number */
	IF to_number IS NULL THEN
		PERFORM dialer.raise_bad_argument('to_number', NULL, 'A phone number is required.',
			'Pass the number in E.164 form, e.g. +14155550123.', '22004');
	END IF;
	IF to_number !~ '^\+[1-9][0-9]{7,14}$' THEN
		PERFORM dialer.raise_bad_argument('to_number', to_number,
			'A phone number must be in E.164 form: "+" then 8 to 15 digits, the first not 0, with no spaces or punctuation.',
			'Write the number with its country code, e.g. +14155550123.');
	END IF;

	/* the time */
	IF run_at IS NULL THEN
		PERFORM dialer.raise_bad_argument('run_at', NULL, 'run_at is when the call is due and must be given.',
			'Omit run_at (it defaults to now()) or pass a timestamptz.', '22004');
	END IF;
	IF deadline IS NOT NULL AND deadline <= run_at THEN
		PERFORM dialer.raise_bad_argument('deadline', deadline::text,
			format('deadline must be after run_at (%s).', run_at),
			'Give a later deadline, or none.');
	END IF;
	IF timezone IS NOT NULL AND NOT dialer.is_valid_timezone(timezone) THEN
		PERFORM dialer.raise_bad_argument('timezone', timezone,
			'The calling window is evaluated in this time zone, and PostgreSQL does not know it.',
			'Use an IANA name such as America/New_York (see pg_timezone_names).');
	END IF;

	/* the provider */
	IF provider IS NULL THEN
		PERFORM dialer.raise_bad_argument('provider', NULL, 'A provider name is required.',
			'Name a row of dialer.providers.', '22004');
	END IF;
	SELECT p.kind, p.from_number, p.allowed_hosts INTO v_kind, v_from, v_hosts
	  FROM dialer.providers p WHERE p.name = provider;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown provider: %', quote_literal(left(provider, 80))
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('Known providers: %s.',
								  coalesce((SELECT string_agg(quote_literal(p.name), ', ' ORDER BY p.name)
											FROM dialer.providers p), 'none')),
				  HINT = 'Insert the provider into dialer.providers first, or pass provider => with a known name.';
	END IF;

	/* the payload */
	IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
		PERFORM dialer.raise_bad_argument('payload', coalesce(payload::text, NULL),
			format('payload must be a JSON object, not %s.', coalesce(jsonb_typeof(payload), 'NULL')),
			'Pass a JSON object, e.g. ''{"message": "Your appointment is tomorrow at 9"}''.');
	END IF;
	IF octet_length(payload::text) > 65536 THEN
		PERFORM dialer.raise_bad_argument('payload', format('%s bytes', octet_length(payload::text)),
			'payload is at most 64 kB (65536 bytes) as JSON text.',
			'Store large data in your own table and pass a reference in the payload.', '54000');
	END IF;
	IF v_kind = 'backend' THEN
		v_mode := upper(coalesce(payload->>'mode', 'DIRECT'));
		IF v_mode NOT IN ('DIRECT', 'BRIEF_START') THEN
			PERFORM dialer.raise_bad_argument('payload.mode', payload->>'mode',
				'Backend calls run in mode DIRECT (payload has the script) or BRIEF_START (the backend writes it).',
				'Set payload.mode to DIRECT or BRIEF_START.');
		END IF;
	END IF;
	IF v_kind = 'backend' AND payload ? 'base_url' THEN
		v_host := lower(substring(payload->>'base_url' FROM '^https?://([^/:?#@]+)(?::[0-9]+)?(?:[/?#]|$)'));
		IF v_host IS NULL OR NOT (v_host = ANY (SELECT lower(h) FROM unnest(v_hosts) h)) THEN
			PERFORM dialer.raise_bad_argument('payload.base_url', payload->>'base_url',
				format('A per-call base_url must be an http(s) URL whose host is in allowed_hosts of provider %s (%s).',
					   quote_literal(provider), coalesce(nullif(array_to_string(v_hosts, ', '), ''), 'none')),
				'Add the host to dialer.providers.allowed_hosts, or omit base_url to use the provider''s.');
		END IF;
	END IF;
	IF v_kind = 'twilio' AND payload ? 'message'
	   AND length(payload->>'message') > 4000 - length('<Response><Say></Say></Response>') THEN
		PERFORM dialer.raise_bad_argument('payload.message', payload->>'message',
			format('Twilio accepts at most 4000 characters of TwiML; this message has %s characters.',
				   length(payload->>'message')),
			'Shorten the message, or host TwiML yourself and pass payload.url.');
	END IF;
	IF payload ? 'from' THEN
		IF jsonb_typeof(payload->'from') <> 'string' OR (payload->>'from') !~ '^\+[1-9][0-9]{7,14}$' THEN
			PERFORM dialer.raise_bad_argument('payload.from', payload->>'from',
				'The caller id must be an E.164 number.', 'Omit it to use the provider''s from_number.');
		END IF;
		v_from := payload->>'from';
	END IF;

	/* the rest */
	IF priority IS NULL OR priority NOT BETWEEN -1000 AND 1000 THEN
		PERFORM dialer.raise_bad_argument('priority', priority::text,
			'priority must be between -1000 and 1000 (higher is dialled first).', 'Use 0 for normal calls.');
	END IF;
	IF max_attempts IS NOT NULL AND max_attempts NOT BETWEEN 1 AND 20 THEN
		PERFORM dialer.raise_bad_argument('max_attempts', max_attempts::text,
			'max_attempts must be between 1 and 20.', 'Omit it to use the campaign''s or dialer.default_max_attempts.');
	END IF;
	IF dedupe_key IS NOT NULL AND length(dedupe_key) > 200 THEN
		PERFORM dialer.raise_bad_argument('dedupe_key', dedupe_key,
			format('dedupe_key is at most 200 characters; this one has %s.', length(dedupe_key)),
			'Use a shorter key, e.g. a hash of what makes the call unique.');
	END IF;
	IF campaign IS NOT NULL AND length(campaign) > 63 THEN
		PERFORM dialer.raise_bad_argument('campaign', campaign,
			'A campaign name is at most 63 characters.', 'Use the name of a row of dialer.campaigns or a short label.');
	END IF;

	/* a duplicate writes nothing */
	IF dedupe_key IS NOT NULL THEN
		SELECT c.id INTO v_id FROM dialer.scheduled_calls c WHERE c.dedupe_key = dedupe_key;
		IF FOUND THEN
			RETURN v_id;
		END IF;
	END IF;

	IF campaign IS NOT NULL THEN
		SELECT * INTO v_camp FROM dialer.campaigns k WHERE k.name = campaign;
	END IF;
	v_attempts := coalesce(max_attempts, v_camp.max_attempts,
						   current_setting('dialer.default_max_attempts')::int);

	SELECT * INTO v_dnc FROM dialer.do_not_call d WHERE d.number = to_number;
	IF FOUND THEN
		v_status := 'skipped';
	END IF;

	INSERT INTO dialer.scheduled_calls AS c
		(status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
		 dedupe_key, priority, max_attempts, timezone, deadline, finished_at)
	VALUES
		(v_status, run_at, run_at, to_number, v_from, provider, v_mode, payload, campaign,
		 dedupe_key, priority, v_attempts, timezone, deadline,
		 CASE WHEN v_status = 'skipped' THEN now() END)
	ON CONFLICT ON CONSTRAINT scheduled_calls_dedupe_key_key DO NOTHING
	RETURNING c.id INTO v_id;

	IF v_id IS NULL THEN
		/* another session stored the same dedupe_key first and has committed */
		SELECT c.id INTO STRICT v_id FROM dialer.scheduled_calls c WHERE c.dedupe_key = dedupe_key;
		RETURN v_id;
	END IF;

	IF v_status = 'skipped' THEN
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		VALUES (v_id, 'skipped', NULL, 'skipped',
				jsonb_build_object('reason', 'do_not_call', 'do_not_call_reason', v_dnc.reason,
								   'listed_at', v_dnc.added_at));
	ELSE
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		VALUES (v_id, 'enqueued', NULL, 'scheduled',
				jsonb_strip_nulls(jsonb_build_object('run_at', run_at, 'campaign', campaign,
													 'by', session_user::text)));
		PERFORM dialer.wake_worker();
	END IF;
	RETURN v_id;
END;
$$;
COMMENT ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz) IS
	'Schedules a call and returns its id (the stored id for a duplicate dedupe_key; a do-not-call number is stored as skipped). Wakes the worker at commit.';

/*
 * Raises the standard error unless role_name names an existing role: the grant
 * helpers' one check.
 */
CREATE FUNCTION dialer.require_role(role_name name)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF role_name IS NULL OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
		PERFORM dialer.raise_bad_argument('role_name', role_name::text, 'No role has this name.',
			'Create the role first (CREATE ROLE ...).', '42704');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.require_role(name) IS 'Internal: raises "invalid role_name" unless the role exists';

/*
 * Locks and returns one call, or raises the standard error for an unknown id.
 */
CREATE FUNCTION dialer.lock_call(call_id bigint)
RETURNS dialer.scheduled_calls
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls;
BEGIN
	IF call_id IS NULL THEN
		PERFORM dialer.raise_bad_argument('call_id', NULL, 'A call id is required.', 'Pass the id enqueue_call returned.', '22004');
	END IF;
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = lock_call.call_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'call % does not exist', call_id
			USING ERRCODE = 'no_data_found',
				  DETAIL = 'No row of dialer.scheduled_calls has this id (dialer.cleanup() may have removed it).',
				  HINT = 'Pass an id returned by dialer.enqueue_call().';
	END IF;
	RETURN v_call;
END;
$$;
COMMENT ON FUNCTION dialer.lock_call(bigint) IS 'Internal: locks a call FOR UPDATE, or raises "call N does not exist"';

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
	IF v_call.status <> 'scheduled' THEN
		RETURN false;
	END IF;
	UPDATE dialer.scheduled_calls c
	   SET status = 'canceled', updated_at = now(), finished_at = now()
	 WHERE c.id = v_call.id;
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	VALUES (v_call.id, 'canceled', 'scheduled', 'canceled', jsonb_build_object('by', session_user::text));
	RETURN true;
END;
$$;
COMMENT ON FUNCTION dialer.cancel_call(bigint) IS
	'Cancels a scheduled call: true when this call canceled it, false when it was already claimed or finished; an error for an unknown id';

/*
 * Puts a failed, unknown or expired call back in the queue, due now, with a fresh run
 * of max_attempts attempts.  An expired call loses its deadline (else it would expire
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
	IF v_call.status NOT IN ('failed', 'unknown', 'expired') THEN
		RETURN false;
	END IF;
	UPDATE dialer.scheduled_calls c
	   SET status = 'scheduled', next_attempt_at = now(), attempts_base = c.attempts,
		   deadline = CASE WHEN v_call.status = 'expired' THEN NULL ELSE c.deadline END,
		   updated_at = now(), finished_at = NULL
	 WHERE c.id = v_call.id;
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	VALUES (v_call.id, 'requeued', v_call.status, 'scheduled',
			jsonb_strip_nulls(jsonb_build_object('by', session_user::text,
				'previous_error', v_call.last_error,
				'cleared_deadline', CASE WHEN v_call.status = 'expired' THEN v_call.deadline END)));
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

	SELECT jsonb_build_object(
			'scheduled', count(*),
			'completed', count(*) FILTER (WHERE c.status = 'completed'),
			'failed', count(*) FILTER (WHERE c.status = 'failed'),
			'not_reached', count(*) FILTER (WHERE c.status IN ('no_answer', 'busy')),
			'pending', count(*) FILTER (WHERE c.status IN ('scheduled', 'dispatching', 'dialing')),
			'not_called', count(*) FILTER (WHERE c.status IN ('canceled', 'skipped', 'expired')),
			'unknown', count(*) FILTER (WHERE c.status = 'unknown'))
	  INTO v_day
	  FROM dialer.scheduled_calls c
	 WHERE c.run_at >= v_from AND c.run_at < v_to;

	SELECT coalesce(jsonb_object_agg(k.campaign, k.counts), '{}')
	  INTO v_camp
	  FROM (SELECT c.campaign,
				   jsonb_build_object(
					'scheduled', count(*),
					'completed', count(*) FILTER (WHERE c.status = 'completed'),
					'failed', count(*) FILTER (WHERE c.status = 'failed'),
					'not_reached', count(*) FILTER (WHERE c.status IN ('no_answer', 'busy')),
					'pending', count(*) FILTER (WHERE c.status IN ('scheduled', 'dispatching', 'dialing'))) AS counts
			  FROM dialer.scheduled_calls c
			 WHERE c.run_at >= v_from AND c.run_at < v_to AND c.campaign IS NOT NULL
			 GROUP BY c.campaign) k;

	RETURN jsonb_build_object('day', day) || v_day || jsonb_build_object(
			'total_pending', (SELECT count(*) FROM dialer.scheduled_calls c
							   WHERE c.status IN ('scheduled', 'dispatching', 'dialing')),
			'next_run_at', (SELECT min(c.next_attempt_at) FROM dialer.scheduled_calls c
							 WHERE c.status = 'scheduled'),
			'by_campaign', v_camp,
			'worker', (SELECT to_jsonb(w) FROM dialer.worker_status() w
						WHERE w.database = current_database() LIMIT 1));
END;
$$;
COMMENT ON FUNCTION dialer.stats(date) IS
	'Counts of a day''s calls (scheduled, completed, failed, not_reached, pending, not_called, unknown), total_pending, next_run_at, by_campaign and the worker''s state';

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
	 WHERE c.status IN ('completed', 'no_answer', 'busy', 'failed', 'canceled', 'skipped', 'expired')
	   AND c.finished_at < now() - older_than;
	GET DIAGNOSTICS v_count = ROW_COUNT;
	-- callbacks kept for a CallSid no call ever got (a call placed by someone else)
	DELETE FROM dialer.pending_callbacks p WHERE p.received_at < now() - older_than;
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.cleanup(interval) IS
	'Deletes finished calls (and their attempts and events) that finished more than older_than ago, and pending callbacks received more than older_than ago; returns how many calls it removed. Unfinished and unknown calls are kept.';
