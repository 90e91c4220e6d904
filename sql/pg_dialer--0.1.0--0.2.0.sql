/*
 * pg_dialer: update from 0.1.0 to 0.2.0 (ALTER EXTENSION pg_dialer UPDATE TO '0.2.0').
 *
 * Everything 0.2.0 changed in sql/parts/ since 0.1.0, as statements that turn a 0.1.0
 * install into exactly what a fresh 0.2.0 install is: test/integration/upgrade.test.js
 * installs 0.1.0, fills it, runs this update with the worker running, and compares the
 * catalogs with a fresh install's.  When you change sql/parts/, add the same change here
 * (CREATE OR REPLACE FUNCTION for a changed body; ALTER TABLE ... ADD COLUMN for a new column,
 * which therefore goes at the end of its CREATE TABLE; the same COMMENTs and GRANTs; and
 * pg_extension_config_dump() for a new table holding user data).
 *
 * Runs in one transaction with the extension's schema as search_path; rows are kept.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_dialer UPDATE TO '0.2.0'" to load this file. \quit

ALTER TABLE dialer.providers ADD COLUMN status_callback_call_id boolean NOT NULL DEFAULT true;

COMMENT ON COLUMN dialer.providers.status_callback_url IS 'Public URL the provider posts call status to; the call id is added to its query string unless status_callback_call_id is false';

COMMENT ON COLUMN dialer.providers.status_callback_call_id IS 'Twilio: the worker appends call_id=<id> to the StatusCallback URL (true: the shipped nginx deployment); false: the URL is sent exactly as configured, with no query string added (PostgREST without the proxy refuses one), and callbacks are matched by CallSid';

COMMENT ON COLUMN dialer.providers.name IS 'Provider name (letters, digits, _ . -; at most 63): what enqueue_call(provider => ...) and campaigns name; enqueue_call uses ''default'' unless told otherwise';

COMMENT ON COLUMN dialer.providers.retry_delay IS 'Delay before a busy or unanswered call is re-scheduled (retry_busy, retry_no_answer)';

COMMENT ON COLUMN dialer.providers.created_at IS 'When the provider was added';

COMMENT ON COLUMN dialer.providers.updated_at IS 'Last change of the row (stamped by a trigger); the worker reloads providers when it changes';

CREATE OR REPLACE FUNCTION dialer.providers_defaults()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NEW.calls_per_second IS NULL THEN
		NEW.calls_per_second := CASE WHEN NEW.kind = 'twilio' THEN 1 ELSE 10 END;
	END IF;
	-- an insert keeps the updated_at it is given (its default is now()), so that a
	-- pg_restore brings the row back exactly as it was dumped
	IF TG_OP = 'UPDATE' THEN
		NEW.updated_at := now();
	END IF;
	RETURN NEW;
END;
$$;

COMMENT ON FUNCTION dialer.providers_defaults() IS
	'Trigger: fills calls_per_second by kind (twilio 1, others 10) and stamps updated_at on update';

COMMENT ON COLUMN dialer.campaigns.created_at IS 'When the campaign was created';

COMMENT ON COLUMN dialer.campaigns.updated_at IS 'Last change of the campaign''s row';

ALTER TABLE dialer.scheduled_calls ADD COLUMN reconcile_searches int NOT NULL DEFAULT 0 CHECK (reconcile_searches >= 0);

COMMENT ON COLUMN dialer.scheduled_calls.id IS 'Call id, returned by enqueue_call (identity)';

COMMENT ON COLUMN dialer.scheduled_calls.to_number IS 'Number to call (E.164)';

COMMENT ON COLUMN dialer.scheduled_calls.from_number IS 'Caller id (E.164): payload.from, else the provider''s from_number';

COMMENT ON COLUMN dialer.scheduled_calls.provider IS 'Provider (dialer.providers) the call is sent through';

COMMENT ON COLUMN dialer.scheduled_calls.payload IS 'JSON object (at most 64 kB) handed to the provider: e.g. url, twiml_url or message (twilio), mode and the script (backend), from';

COMMENT ON COLUMN dialer.scheduled_calls.provider_status IS 'Last status the provider reported (e.g. Twilio queued, ringing, in-progress, completed)';

COMMENT ON COLUMN dialer.scheduled_calls.last_error IS 'Last error of the call: the provider''s code and message, or a transport error (never secrets)';

COMMENT ON COLUMN dialer.scheduled_calls.created_at IS 'When the call was enqueued';

COMMENT ON SEQUENCE dialer.scheduled_calls_id_seq IS 'Identity of dialer.scheduled_calls.id (call ids)';

COMMENT ON COLUMN dialer.scheduled_calls.reconcile_searches IS 'How many times the call, unknown without a provider call id, was searched for at its provider by what was sent (at most 3; back to 0 when a search settles it or retry_call starts a new run)';

CREATE INDEX scheduled_calls_search_idx ON dialer.scheduled_calls (provider, updated_at)
	WHERE status = 'unknown' AND provider_call_id IS NULL AND reconcile_searches < 3;

COMMENT ON COLUMN dialer.call_attempts.id IS 'Attempt row id (identity)';

COMMENT ON COLUMN dialer.call_attempts.call_id IS 'The call (dialer.scheduled_calls) this request was made for';

COMMENT ON COLUMN dialer.call_attempts.attempt IS 'Number of this request among the call''s requests, from 1 (the call''s attempts after it was made)';

COMMENT ON COLUMN dialer.call_attempts.requested_at IS 'When the request was sent';

COMMENT ON COLUMN dialer.call_attempts.responded_at IS 'When the provider''s answer (or the transport error) came back';

COMMENT ON COLUMN dialer.call_attempts.provider_call_id IS 'The provider''s id of the call created by this request (Twilio CallSid)';

COMMENT ON COLUMN dialer.call_attempts.duration_seconds IS 'Call duration in seconds, from status callbacks';

COMMENT ON COLUMN dialer.call_attempts.answered_by IS 'Who answered, from status callbacks (Twilio AnsweredBy: human, machine_start, ...)';

COMMENT ON COLUMN dialer.call_attempts.sip_response_code IS 'Final SIP response code, from status callbacks';

COMMENT ON COLUMN dialer.call_attempts.recording_url IS 'URL of the call''s recording, from status callbacks';

COMMENT ON COLUMN dialer.call_attempts.transcript IS 'Transcript of the call, from JSON webhooks (backend, voice_api)';

COMMENT ON COLUMN dialer.call_attempts.error_message IS 'Provider error message, or the transport error''s description (never secrets)';

COMMENT ON SEQUENCE dialer.call_attempts_id_seq IS 'Identity of dialer.call_attempts.id';

COMMENT ON COLUMN dialer.call_events.id IS 'Event id (identity): the order of events';

COMMENT ON COLUMN dialer.call_events.call_id IS 'The call (dialer.scheduled_calls) the event belongs to';

COMMENT ON COLUMN dialer.call_events.at IS 'When it happened (clock time, not transaction start)';

COMMENT ON COLUMN dialer.call_events.from_status IS 'Status of the call before the event (NULL: no state change or a new call)';

COMMENT ON COLUMN dialer.call_events.to_status IS 'Status of the call after the event (NULL: no state change)';

COMMENT ON SEQUENCE dialer.call_events_id_seq IS 'Identity of dialer.call_events.id';

COMMENT ON COLUMN dialer.do_not_call.number IS 'The number (E.164): a call to it is stored as skipped and never dialled';

COMMENT ON COLUMN dialer.do_not_call.reason IS 'Why (free text, e.g. asked not to be called)';

COMMENT ON COLUMN dialer.do_not_call.added_at IS 'When the number was added';

SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.scheduled_calls', 'id'), '');

SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.call_attempts', 'id'), '');

SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.call_events', 'id'), '');

-- worker_status() gained columns: dropped and created again, keeping the roles it was granted
-- to (dialer.grant_usage() grants it)
SELECT pg_catalog.set_config('pg_dialer.worker_status_acl', coalesce(p.proacl::text, ''), true)
  FROM pg_catalog.pg_proc p
 WHERE p.oid = 'dialer.worker_status()'::pg_catalog.regprocedure;
DROP FUNCTION dialer.worker_status();

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
REVOKE ALL ON FUNCTION dialer.worker_status() FROM PUBLIC;
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT a.grantee::pg_catalog.regrole AS grantee
			   FROM pg_catalog.aclexplode(nullif(pg_catalog.current_setting('pg_dialer.worker_status_acl'), '')::pg_catalog.aclitem[]) a
			  WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> a.grantor
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dialer.worker_status() TO %s', r.grantee);
	END LOOP;
END;
$$;

CREATE FUNCTION dialer.call_rule(
	to_number text, run_at timestamptz, provider text, payload jsonb, campaign text,
	dedupe_key text, priority int, max_attempts int, timezone text, deadline timestamptz,
	provider_kind text, provider_hosts text[], provider_twiml_url text)
RETURNS text
LANGUAGE sql
STABLE
AS $$
	SELECT CASE
						WHEN $1 IS NULL THEN 'to_number_missing'
						WHEN $1 !~ '^\+[1-9][0-9]{7,14}$' THEN 'to_number_format'
						WHEN $2 IS NULL THEN 'run_at_missing'
						WHEN NOT isfinite($2) THEN 'run_at_infinite'
						WHEN $10 IS NOT NULL AND NOT isfinite($10) THEN 'deadline_infinite'
						WHEN $10 <= $2 THEN 'deadline_order'
						WHEN $9 IS NOT NULL AND NOT dialer.is_valid_timezone($9) THEN 'timezone'
						WHEN $3 IS NULL THEN 'provider_missing'
						WHEN $11 IS NULL THEN 'provider_unknown'
						WHEN $4 IS NULL OR jsonb_typeof($4) <> 'object' THEN 'payload_type'
						WHEN octet_length($4::text) > 65536 THEN 'payload_size'
						WHEN $11 = 'backend' AND upper(coalesce($4->>'mode', 'DIRECT')) NOT IN ('DIRECT', 'BRIEF_START') THEN 'payload_mode'
						WHEN $11 = 'backend' AND $4 ? 'base_url'
							 AND coalesce(NOT (lower(substring($4->>'base_url' FROM '^https?://([^/:?#@]+)(?::[0-9]+)?(?:[/?#]|$)'))
											   = ANY (lower($12::text)::text[])), true) THEN 'payload_base_url'
						WHEN $11 = 'twilio' AND $4 ? 'message'
							 AND length($4->>'message') > 4000 - length('<Response><Say></Say></Response>') THEN 'payload_message'
						WHEN $11 = 'twilio' AND coalesce($4->>'twiml_url', $4->>'url', $4->>'message', $13) IS NULL THEN 'nothing_to_say'
						WHEN $4 ? 'from' AND (jsonb_typeof($4->'from') <> 'string' OR ($4->>'from') !~ '^\+[1-9][0-9]{7,14}$') THEN 'payload_from'
						WHEN $7 IS NULL OR $7 NOT BETWEEN -1000 AND 1000 THEN 'priority'
						WHEN $8 IS NOT NULL AND $8 NOT BETWEEN 1 AND 20 THEN 'max_attempts'
						WHEN $6 IS NOT NULL AND length($6) > 200 THEN 'dedupe_key'
						WHEN $5 IS NOT NULL AND length($5) > 63 THEN 'campaign'
			END
$$;

COMMENT ON FUNCTION dialer.call_rule(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, text, text[], text) IS
	'Internal: the one home of the enqueue rules. NULL for an acceptable call, else the rule it breaks first (to_number_missing, to_number_format, run_at_missing, run_at_infinite, deadline_infinite, deadline_order, timezone, provider_missing, provider_unknown, payload_type, payload_size, payload_mode, payload_base_url, payload_message, nothing_to_say, payload_from, priority, max_attempts, dedupe_key, campaign)';

CREATE FUNCTION dialer.call_refusal(
	to_number text, run_at timestamptz, provider text, payload jsonb, campaign text,
	dedupe_key text, priority int, max_attempts int, timezone text, deadline timestamptz,
	provider_kind text, provider_hosts text[], provider_twiml_url text)
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
			WHEN 'deadline_infinite' THEN format('deadline must be a finite time after run_at: %s is not one (for no deadline, pass NULL).', $10)
			WHEN 'deadline_order' THEN format('deadline must be after run_at (%s).', $2)
			WHEN 'timezone' THEN 'The calling window is evaluated in this time zone, and PostgreSQL does not know it.'
			WHEN 'provider_missing' THEN 'A provider name is required.'
			WHEN 'provider_unknown' THEN format('Known providers: %s.',
				coalesce((SELECT string_agg(quote_literal(p.name), ', ' ORDER BY p.name) FROM dialer.providers p), 'none'))
			WHEN 'payload_type' THEN format('payload must be a JSON object, not %s.', coalesce(jsonb_typeof($4), 'NULL'))
			WHEN 'payload_size' THEN 'payload is at most 64 kB (65536 bytes) as JSON text.'
			WHEN 'payload_mode' THEN 'Backend calls run in mode DIRECT (payload has the script) or BRIEF_START (the backend writes it).'
			WHEN 'payload_base_url' THEN format('A per-call base_url must be an http(s) URL whose host is in allowed_hosts of provider %s (%s).',
				quote_literal($3), coalesce(nullif(array_to_string($12, ', '), ''), 'none'))
			WHEN 'payload_message' THEN format('Twilio accepts at most 4000 characters of TwiML; this message has %s characters.', length($4->>'message'))
			WHEN 'nothing_to_say' THEN format('A Twilio call needs something to say: payload.message, payload.url or payload.twiml_url, or a twiml_url on provider %s, which has none.', quote_literal($3))
			WHEN 'payload_from' THEN 'The caller id must be an E.164 number.'
			WHEN 'priority' THEN 'priority must be between -1000 and 1000 (higher is dialled first).'
			WHEN 'max_attempts' THEN 'max_attempts must be between 1 and 20.'
			WHEN 'dedupe_key' THEN format('dedupe_key is at most 200 characters; this one has %s.', length($6))
			WHEN 'campaign' THEN 'A campaign name is at most 63 characters.' END,
		CASE r.rule
			WHEN 'to_number_missing' THEN 'Pass the number in E.164 form, e.g. +14155550123.'
			WHEN 'to_number_format' THEN 'Write the number with its country code, e.g. +14155550123.'
			WHEN 'run_at_missing' THEN 'Omit run_at (it defaults to now()) or pass a timestamptz.'
			WHEN 'run_at_infinite' THEN 'Pass a real time, e.g. now() + interval ''1 hour''; to keep a call from being dialled, do not enqueue it (or cancel it).'
			WHEN 'deadline_infinite' THEN 'Pass a real time, or omit deadline for a call that never expires.'
			WHEN 'deadline_order' THEN 'Give a later deadline, or none.'
			WHEN 'timezone' THEN 'Use an IANA name such as America/New_York (see pg_timezone_names).'
			WHEN 'provider_missing' THEN 'Name a row of dialer.providers.'
			WHEN 'provider_unknown' THEN 'Insert the provider into dialer.providers first, or pass provider => with a known name.'
			WHEN 'payload_type' THEN 'Pass a JSON object, e.g. ''{"message": "Your appointment is tomorrow at 9"}''.'
			WHEN 'payload_size' THEN 'Store large data in your own table and pass a reference in the payload.'
			WHEN 'payload_mode' THEN 'Set payload.mode to DIRECT or BRIEF_START.'
			WHEN 'payload_base_url' THEN 'Add the host to dialer.providers.allowed_hosts, or omit base_url to use the provider''s.'
			WHEN 'payload_message' THEN 'Shorten the message, or host TwiML yourself and pass payload.url.'
			WHEN 'nothing_to_say' THEN format('Pass payload => ''{"message": "..."}'' (spoken) or ''{"url": "https://..."}'' (your TwiML), or set dialer.providers.twiml_url of provider %s.', quote_literal($3))
			WHEN 'payload_from' THEN 'Omit it to use the provider''s from_number.'
			WHEN 'priority' THEN 'Use 0 for normal calls.'
			WHEN 'max_attempts' THEN 'Omit it to use the campaign''s or dialer.default_max_attempts.'
			WHEN 'dedupe_key' THEN 'Use a shorter key, e.g. a hash of what makes the call unique.'
			WHEN 'campaign' THEN 'Use the name of a row of dialer.campaigns or a short label.' END
	  FROM (SELECT q.rule,
				   CASE q.rule
					   WHEN 'to_number_missing' THEN 'to_number' WHEN 'to_number_format' THEN 'to_number'
					   WHEN 'run_at_missing' THEN 'run_at' WHEN 'run_at_infinite' THEN 'run_at'
					   WHEN 'deadline_infinite' THEN 'deadline' WHEN 'deadline_order' THEN 'deadline'
					   WHEN 'provider_missing' THEN 'provider' WHEN 'payload_type' THEN 'payload'
					   WHEN 'payload_size' THEN 'payload' WHEN 'nothing_to_say' THEN 'payload'
					   WHEN 'payload_mode' THEN 'payload.mode' WHEN 'payload_base_url' THEN 'payload.base_url'
					   WHEN 'payload_message' THEN 'payload.message' WHEN 'payload_from' THEN 'payload.from'
					   ELSE q.rule END AS argument,
				   CASE q.rule
					   WHEN 'to_number_format' THEN $1 WHEN 'run_at_infinite' THEN $2::text
					   WHEN 'deadline_infinite' THEN $10::text WHEN 'deadline_order' THEN $10::text
					   WHEN 'timezone' THEN $9 WHEN 'payload_type' THEN $4::text
					   WHEN 'payload_size' THEN format('%s bytes', octet_length($4::text))
					   WHEN 'nothing_to_say' THEN $4::text
					   WHEN 'payload_mode' THEN $4->>'mode' WHEN 'payload_base_url' THEN $4->>'base_url'
					   WHEN 'payload_message' THEN $4->>'message' WHEN 'payload_from' THEN $4->>'from'
					   WHEN 'priority' THEN $7::text WHEN 'max_attempts' THEN $8::text
					   WHEN 'dedupe_key' THEN $6 WHEN 'campaign' THEN $5 END AS value
			  FROM (SELECT dialer.call_rule($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) AS rule OFFSET 0) q
			 WHERE q.rule IS NOT NULL) r
$$;

COMMENT ON FUNCTION dialer.call_refusal(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, text, text[], text) IS
	'Internal: the error (sqlstate, message, detail, hint) for the rule dialer.call_rule() says a call breaks; no row for an acceptable call. enqueue_call raises it, enqueue_calls reports it per element.';

CREATE OR REPLACE FUNCTION dialer.enqueue_call(
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
	v		record;
	e		record;
	v_rule	text;
	v_id	bigint;
	v_status text;
BEGIN
	SELECT p.kind, p.from_number, p.allowed_hosts, p.twiml_url,
		   CASE WHEN dedupe_key IS NOT NULL THEN
				(SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = dedupe_key) END AS dup_id,
		   CASE WHEN max_attempts IS NULL AND campaign IS NOT NULL THEN
				(SELECT k.max_attempts FROM dialer.campaigns k WHERE k.name = campaign) END AS camp_attempts,
		   d.number IS NOT NULL AS dnc, d.reason AS dnc_reason, d.added_at AS dnc_at
	  INTO v
	  FROM (SELECT 1) one
	  LEFT JOIN dialer.providers p ON p.name = provider
	  LEFT JOIN dialer.do_not_call d ON d.number = to_number;
	-- a PL/pgSQL simple expression: the rules' CASE is compiled once per transaction, not per call
	v_rule := dialer.call_rule(to_number, run_at, provider, payload, campaign, dedupe_key, priority,
							   max_attempts, timezone, deadline, v.kind, v.allowed_hosts, v.twiml_url);
	IF v_rule IS NOT NULL THEN
		SELECT * INTO e
		  FROM dialer.call_refusal(to_number, run_at, provider, payload, campaign, dedupe_key, priority,
								   max_attempts, timezone, deadline, v.kind, v.allowed_hosts, v.twiml_url);
		RAISE EXCEPTION USING ERRCODE = e.sqlstate, MESSAGE = e.message, DETAIL = e.detail, HINT = e.hint;
	END IF;

	/* a duplicate writes nothing */
	IF v.dup_id IS NOT NULL THEN
		RETURN v.dup_id;
	END IF;

	v_status := CASE WHEN v.dnc THEN 'skipped' ELSE 'scheduled' END;
	WITH c AS (
		INSERT INTO dialer.scheduled_calls AS c
			(status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
			 dedupe_key, priority, max_attempts, timezone, deadline, finished_at)
		VALUES
			(v_status, run_at, run_at, to_number, coalesce(payload->>'from', v.from_number), provider,
			 CASE WHEN v.kind = 'backend' THEN upper(coalesce(payload->>'mode', 'DIRECT')) END,
			 payload, campaign, dedupe_key, priority,
			 coalesce(max_attempts, v.camp_attempts, current_setting('dialer.default_max_attempts')::int),
			 timezone, deadline, CASE WHEN v.dnc THEN now() END)
		ON CONFLICT ON CONSTRAINT scheduled_calls_dedupe_key_key DO NOTHING
		RETURNING c.id
	), e AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT c.id, CASE WHEN v.dnc THEN 'skipped' ELSE 'enqueued' END, NULL, v_status,
			   CASE WHEN v.dnc THEN
					jsonb_build_object('reason', 'do_not_call', 'do_not_call_reason', v.dnc_reason,
									   'listed_at', v.dnc_at)
			   ELSE jsonb_strip_nulls(jsonb_build_object('run_at', run_at, 'campaign', campaign,
														 'by', session_user::text)) END
		  FROM c
	)
	SELECT c.id INTO v_id FROM c;

	IF v_id IS NULL THEN
		/* another session stored the same dedupe_key first and has committed */
		SELECT c.id INTO STRICT v_id FROM dialer.scheduled_calls c WHERE c.dedupe_key = dedupe_key;
		RETURN v_id;
	END IF;
	IF NOT v.dnc THEN
		PERFORM dialer.wake_worker();
	END IF;
	RETURN v_id;
END;
$$;

COMMENT ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz) IS
	'Schedules a call and returns its id (the stored id for a duplicate dedupe_key; a do-not-call number is stored as skipped). Wakes the worker at commit. Many calls at once: dialer.enqueue_calls().';

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
	customer_ref	text
);

COMMENT ON TYPE dialer.call_request IS
	'A call as enqueue_calls() reads it from each JSON object: enqueue_call''s arguments plus customer_ref';

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

CREATE TYPE dialer.call_error AS (
	sqlstate	text,
	message		text,
	detail		text,
	hint		text
);

COMMENT ON TYPE dialer.call_error IS 'Internal: the SQLSTATE, message, detail and hint of a refused call';

CREATE FUNCTION dialer.enqueue_calls(calls jsonb, atomic boolean DEFAULT true)
RETURNS SETOF dialer.enqueue_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
SET enable_nestloop = off	-- the batch is joined to itself by hash: never a rescan per element
SET jit = off			-- compiling its expressions costs more than running them
AS $$
#variable_conflict use_column
DECLARE
	v_res		dialer.enqueue_result[];
	v_bad		dialer.enqueue_result;
	v_woken		boolean;
	v_max		int := current_setting('dialer.default_max_attempts')::int;
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

	WITH input AS (
		SELECT e.o::int AS item, e.v,
			   CASE WHEN jsonb_typeof(e.v) <> 'object' THEN 'not_object'
					WHEN e.v - '{to_number,run_at,provider,payload,campaign,dedupe_key,priority,max_attempts,timezone,deadline,customer_ref}'::text[] <> '{}'
						THEN 'unknown_key' END AS shape
		  FROM jsonb_array_elements(calls) WITH ORDINALITY AS e(v, o)
	), parsed AS (
		SELECT i.item, i.shape, i.v, r.to_number, r.customer_ref, r.campaign, r.dedupe_key,
			   r.max_attempts, r.timezone, r.deadline,
			   CASE WHEN i.v ? 'run_at' THEN r.run_at ELSE now() END AS run_at,
			   CASE WHEN i.v ? 'provider' THEN r.provider ELSE 'default' END AS provider,
			   CASE WHEN i.v ? 'payload' THEN r.payload ELSE '{}' END AS payload,
			   CASE WHEN i.v ? 'priority' THEN r.priority ELSE 0 END AS priority
		  FROM input i
		 CROSS JOIN LATERAL jsonb_populate_record(NULL::dialer.call_request,
												  CASE WHEN i.shape IS NULL THEN i.v ELSE '{}' END) r
	), ruled AS MATERIALIZED (
		SELECT x.*, p.kind, p.from_number AS provider_from, p.allowed_hosts, p.twiml_url,
			   coalesce(x.shape, dialer.call_rule(x.to_number, x.run_at, x.provider, x.payload, x.campaign,
												  x.dedupe_key, x.priority, x.max_attempts, x.timezone,
												  x.deadline, p.kind, p.allowed_hosts, p.twiml_url)) AS reason
		  FROM parsed x
		  LEFT JOIN dialer.providers p ON p.name = x.provider
	), checked AS MATERIALIZED (
		-- the error of a refused element (only those: CASE evaluates a branch only when taken)
		SELECT x.*,
			   CASE WHEN x.reason IS NULL THEN NULL
					WHEN x.shape IS NULL THEN ROW(f.sqlstate, f.message, f.detail, f.hint)::dialer.call_error
					WHEN x.shape = 'not_object' THEN
						ROW('22023', format('invalid call: %s', left(x.v::text, 80)),
							format('Each element of calls must be a JSON object, not %s.', jsonb_typeof(x.v)),
							'Pass e.g. {"to_number": "+14155550123"}.')::dialer.call_error
					ELSE ROW('42703',
							 format('invalid call: unknown key %s',
									(SELECT string_agg(quote_literal(k), ', ')
									   FROM jsonb_object_keys(x.v - '{to_number,run_at,provider,payload,campaign,dedupe_key,priority,max_attempts,timezone,deadline,customer_ref}'::text[]) k)),
							 'A call''s keys are enqueue_call''s argument names: to_number, run_at, provider, payload, campaign, dedupe_key, priority, max_attempts, timezone, deadline; and customer_ref.',
							 'Check the spelling; what the call says goes inside payload.')::dialer.call_error
			   END AS err
		  FROM ruled x
		  LEFT JOIN LATERAL (
				SELECT r.* FROM dialer.call_refusal(x.to_number, x.run_at, x.provider, x.payload, x.campaign,
													 x.dedupe_key, x.priority, x.max_attempts, x.timezone,
													 x.deadline, x.kind, x.allowed_hosts, x.twiml_url) r
				 WHERE x.reason IS NOT NULL AND x.shape IS NULL
				OFFSET 0) f ON true
	), ready AS MATERIALIZED (
		SELECT x.item, x.to_number, x.run_at, x.provider, x.payload, x.campaign, x.dedupe_key,
			   x.priority, x.timezone, x.deadline, x.customer_ref, x.kind, x.provider_from, x.max_attempts,
			   (d).number IS NOT NULL AS dnc, (d).reason AS dnc_reason, (d).added_at AS dnc_at,
			   CASE WHEN x.dedupe_key IS NOT NULL THEN
					(SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = x.dedupe_key) END AS dup_id
		  FROM checked x,
			   LATERAL (SELECT (SELECT d FROM dialer.do_not_call d WHERE d.number = x.to_number) AS d) l
		 WHERE x.reason IS NULL
	), fresh AS MATERIALIZED (
		SELECT r.*, nextval('dialer.scheduled_calls_id_seq'::regclass) AS new_id
		  FROM ready r
		 WHERE r.dup_id IS NULL
		 ORDER BY r.item
	), ins AS (
		INSERT INTO dialer.scheduled_calls AS c
			(id, status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
			 customer_ref, dedupe_key, priority, max_attempts, timezone, deadline, finished_at)
		OVERRIDING SYSTEM VALUE
		SELECT r.new_id, CASE WHEN r.dnc THEN 'skipped' ELSE 'scheduled' END, r.run_at, r.run_at,
			   r.to_number, coalesce(r.payload->>'from', r.provider_from), r.provider,
			   CASE WHEN r.kind = 'backend' THEN upper(coalesce(r.payload->>'mode', 'DIRECT')) END,
			   r.payload, r.campaign, r.customer_ref, r.dedupe_key, r.priority,
			   coalesce(r.max_attempts,
						CASE WHEN r.campaign IS NOT NULL THEN
							 (SELECT k.max_attempts FROM dialer.campaigns k WHERE k.name = r.campaign) END,
						v_max),
			   r.timezone, r.deadline, CASE WHEN r.dnc THEN now() END
		  FROM fresh r
		 ORDER BY r.new_id
		ON CONFLICT ON CONSTRAINT scheduled_calls_dedupe_key_key DO NOTHING
		RETURNING c.id
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT r.new_id,
			   CASE WHEN r.dnc THEN 'skipped' ELSE 'enqueued' END, NULL,
			   CASE WHEN r.dnc THEN 'skipped' ELSE 'scheduled' END,
			   CASE WHEN r.dnc THEN
					jsonb_build_object('reason', 'do_not_call', 'do_not_call_reason', r.dnc_reason,
									   'listed_at', r.dnc_at)
			   ELSE jsonb_strip_nulls(jsonb_build_object('run_at', r.run_at, 'campaign', r.campaign,
														 'by', session_user::text)) END
		  FROM ins JOIN fresh r ON r.new_id = ins.id
		RETURNING call_id, to_status
	)
	SELECT array_agg(ROW(x.item,
						 coalesce(r.dup_id, CASE WHEN e.call_id IS NOT NULL THEN f.new_id END),
						 CASE WHEN x.reason IS NOT NULL THEN 'refused'
							  WHEN e.call_id IS NULL THEN 'duplicate'
							  ELSE e.to_status END,
						 x.reason, (x.err).sqlstate, (x.err).message, (x.err).detail,
						 (x.err).hint)::dialer.enqueue_result ORDER BY x.item),
		   coalesce(bool_or(e.to_status = 'scheduled'), false)
	  INTO v_res, v_woken
	  FROM checked x
	  LEFT JOIN ready r ON r.item = x.item
	  LEFT JOIN fresh f ON f.item = x.item
	  LEFT JOIN ev e ON e.call_id = f.new_id;

	IF atomic THEN
		SELECT * INTO v_bad FROM unnest(v_res) u WHERE u.outcome = 'refused' ORDER BY u.item LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION USING ERRCODE = v_bad.sqlstate,
				MESSAGE = format('call %s of %s refused: %s', v_bad.item, jsonb_array_length(calls), v_bad.message),
				DETAIL = v_bad.detail,
				HINT = v_bad.hint || ' enqueue_calls(..., atomic => false) writes the other calls and returns the refused ones.';
		END IF;
	END IF;
	IF v_woken THEN
		PERFORM dialer.wake_worker();
	END IF;

	/* a duplicate of a key stored by this array or by a session that won a race: its id */
	RETURN QUERY
		SELECT u.item,
			   CASE WHEN u.outcome = 'duplicate' AND u.id IS NULL THEN
					(SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = calls->(u.item - 1)->>'dedupe_key')
			   ELSE u.id END,
			   u.outcome, u.reason, u.sqlstate, u.message, u.detail, u.hint
		  FROM unnest(v_res) u
		 ORDER BY u.item;
END;
$$;

COMMENT ON FUNCTION dialer.enqueue_calls(jsonb, boolean) IS
	'Enqueues a JSON array of calls (keys: enqueue_call''s arguments plus customer_ref) with enqueue_call''s rules, dedupe, do-not-call and wake-up; one row per element: item, id, outcome (scheduled, skipped, duplicate, refused) and the error of a refused one. atomic => true (default): all or nothing; false: writes the acceptable calls.';

CREATE OR REPLACE FUNCTION dialer.retry_call(call_id bigint)
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
		   updated_at = now(), finished_at = NULL, reconcile_searches = 0
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

CREATE OR REPLACE FUNCTION dialer.cleanup(older_than interval DEFAULT '30 days')
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

CREATE OR REPLACE FUNCTION dialer.claim_calls(provider text, max_calls int, default_timezone text,
								   window_start time, window_end time, allowed_numbers text)
RETURNS TABLE (id bigint, attempt int, to_number text, from_number text, mode text,
			   payload text, message text, url text, script text, base_url text,
			   idempotency_key text, campaign text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
-- Two statements planned once per session (re-planning the claim for every single
-- call would cost more than the claim), with sequential scans ruled out so that
-- the one plan stays right however large the queue grows, and sorts ruled out so
-- that the claim always walks scheduled_calls_claim_idx in order and stops at
-- max_calls: with statistics saying most scheduled calls are due later (a warm
-- queue), the planner would otherwise read every due call and sort them, at each
-- claim.  (jit off: the disabled sort left in the second statement would make
-- its cost look worth compiling.)
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_sort = off
SET jit = off
AS $$
DECLARE
	v_allowed text[];
	v_ids bigint[];
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

	RETURN QUERY
	WITH cand AS (
		SELECT c.id, c.deadline, c.to_number, c.status, c.attempts, c.attempts_base,
			   coalesce(c.timezone, k.timezone, default_timezone) AS tz,
			   coalesce(k.call_window_start, window_start) AS ws,
			   coalesce(k.call_window_end, window_end) AS we
		  FROM dialer.scheduled_calls c
		  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
		 WHERE c.id = ANY (v_ids)
	), windowed AS (
		SELECT cand.*, dialer.next_window_opening(now(), cand.tz, cand.ws, cand.we) AS opens
		  FROM cand
	), verdict AS MATERIALIZED (
		SELECT w.*,
			   CASE
				 WHEN w.deadline IS NOT NULL AND w.deadline <= now() THEN 'expired'
				 WHEN EXISTS (SELECT 1 FROM dialer.do_not_call d WHERE d.number = w.to_number) THEN 'do_not_call'
				 WHEN v_allowed IS NOT NULL AND NOT (w.to_number = ANY (v_allowed)) THEN 'not_allowed'
				 WHEN w.opens IS NOT NULL THEN 'window'
				 ELSE 'go'
			   END AS v
		  FROM windowed w
	), upd AS (
		UPDATE dialer.scheduled_calls c
		   SET status = CASE x.v WHEN 'go' THEN 'dispatching' WHEN 'window' THEN 'scheduled'
								 WHEN 'expired' THEN 'expired' ELSE 'skipped' END,
			   attempts = c.attempts + CASE WHEN x.v = 'go' THEN 1 ELSE 0 END,
			   next_attempt_at = CASE WHEN x.v = 'window' THEN least(x.opens, coalesce(c.deadline, x.opens))
									  ELSE c.next_attempt_at END,
			   finished_at = CASE WHEN x.v IN ('expired', 'do_not_call', 'not_allowed') THEN now() END,
			   last_error = CASE x.v WHEN 'do_not_call' THEN 'number is on the do-not-call list'
									 WHEN 'not_allowed' THEN 'number is not in dialer.allowed_numbers'
									 WHEN 'expired' THEN 'deadline passed before the call could start'
									 ELSE c.last_error END,
			   updated_at = now()
		  FROM verdict x
		 WHERE c.id = x.id
		RETURNING c.*, x.v, x.tz, x.opens
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT u.id,
			   CASE u.v WHEN 'go' THEN 'claimed' WHEN 'window' THEN 'window_wait'
						WHEN 'expired' THEN 'expired' ELSE 'skipped' END,
			   'scheduled', u.status,
			   CASE u.v
				 WHEN 'go' THEN jsonb_build_object('attempt', u.attempts)
				 WHEN 'window' THEN jsonb_build_object('timezone', u.tz, 'opens_at', u.opens,
													   'next_attempt_at', u.next_attempt_at)
				 WHEN 'expired' THEN jsonb_build_object('deadline', u.deadline)
				 WHEN 'do_not_call' THEN jsonb_build_object('reason', 'do_not_call', 'checked', 'dispatch')
				 ELSE jsonb_build_object('reason', 'not_allowed', 'level', 'warning',
										 'message', 'dialer.allowed_numbers is set and does not list this number')
			   END
		  FROM upd u
	), go AS MATERIALIZED (
		-- the Idempotency-Key is the same for every attempt of one run of the call
		SELECT u.*, format('pgd-%s-%s-%s', u.id, u.attempts_base,
						   (extract(epoch FROM u.created_at) * 1000000)::bigint) AS idem
		  FROM upd u WHERE u.v = 'go'
	), att AS (
		INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, idempotency_key)
		SELECT g.id, g.attempts, now(), g.idem FROM go g
	)
	SELECT g.id, g.attempts, g.to_number::text, g.from_number::text, g.mode, g.payload::text,
		   g.payload->>'message', coalesce(g.payload->>'twiml_url', g.payload->>'url'),
		   g.payload->>'script', g.payload->>'base_url', g.idem, g.campaign
	  FROM go g
	 ORDER BY g.priority DESC, g.next_attempt_at;
END;
$$;

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
	), rel AS (
		UPDATE dialer.scheduled_calls c
		   SET status = 'scheduled', attempts = c.attempts - 1, updated_at = now()
		  FROM r
		 WHERE c.id = r.call_id AND c.status = 'dispatching' AND c.attempts = r.attempt
		RETURNING c.id, r.attempt
	), att AS (
		DELETE FROM dialer.call_attempts a
		 USING rel
		 WHERE a.call_id = rel.id AND a.attempt = rel.attempt AND a.http_status IS NULL
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT rel.id, 'claim_released', 'dispatching', 'scheduled',
			   jsonb_build_object('reason', 'dispatcher stopped while the claim waited for standbys; no request left',
								  'attempt', rel.attempt)
		  FROM rel
	)
	SELECT count(*) INTO v_count FROM rel;
	RETURN v_count;
END;
$$;

COMMENT ON FUNCTION dialer.release_claims(bigint[], int[]) IS
	'Worker: puts claimed calls whose requests never left back to scheduled (attempt not counted, with an event); returns how many';

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
		SELECT c.id, c.deadline, c.next_attempt_at,
			   coalesce(c.timezone, k.timezone, v_tz) AS tz,
			   coalesce(k.call_window_start, v_ws) AS ws,
			   coalesce(k.call_window_end, v_we) AS we
		  FROM dialer.scheduled_calls c
		  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
		 WHERE c.status = 'scheduled'
		   AND c.next_attempt_at > now()
		   AND (only_calls IS NULL OR c.id = ANY (only_calls))
		   AND (only_campaign IS NULL OR c.campaign = only_campaign)
		   AND (SELECT e.event FROM dialer.call_events e
				 WHERE e.call_id = c.id ORDER BY e.id DESC LIMIT 1) = 'window_wait'
		   FOR UPDATE OF c SKIP LOCKED
	), verdict AS (
		SELECT p.*, o.opens,
			   CASE WHEN o.opens IS NULL THEN now()
					ELSE least(o.opens, coalesce(p.deadline, o.opens)) END AS due
		  FROM parked p
		 CROSS JOIN LATERAL (SELECT dialer.next_window_opening(now(), p.tz, p.ws, p.we) AS opens) o
	), moved AS (
		UPDATE dialer.scheduled_calls c
		   SET next_attempt_at = v.due, updated_at = now()
		  FROM verdict v
		 WHERE c.id = v.id AND v.due <> v.next_attempt_at
		RETURNING c.id, v.tz, v.ws, v.we, v.opens, v.due, v.next_attempt_at AS was
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT m.id, 'window_wait', 'scheduled', 'scheduled',
			   jsonb_build_object('reason', 'calling window changed', 'timezone', m.tz,
								  'window_start', m.ws, 'window_end', m.we,
								  'opens_at', m.opens, 'next_attempt_at', m.due,
								  'previous_next_attempt_at', m.was)
		  FROM moved m
	)
	SELECT count(*) INTO v_n FROM moved;
	RETURN v_n;
END;
$$;

COMMENT ON FUNCTION dialer.reevaluate_parked_calls(bigint[], text) IS
	'Calls waiting for a calling window, looked at again with the windows that apply now (settings, campaign, call time zone): due now, or moved to the new opening, with a window_wait event; returns how many moved';

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

CREATE FUNCTION dialer.do_not_call_added()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	WITH skipped AS (
		UPDATE dialer.scheduled_calls c
		   SET status = 'skipped', finished_at = now(), updated_at = now(),
			   last_error = 'number is on the do-not-call list'
		  FROM (SELECT DISTINCT a.number FROM added a) a
		 WHERE c.to_number = a.number AND c.status = 'scheduled'
		RETURNING c.id
	)
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	SELECT s.id, 'skipped', 'scheduled', 'skipped',
		   jsonb_build_object('reason', 'do_not_call', 'checked', 'do_not_call_added')
	  FROM skipped s;
	RETURN NULL;
END;
$$;

COMMENT ON FUNCTION dialer.do_not_call_added() IS
	'Trigger: skips the scheduled calls of numbers added to dialer.do_not_call (reason do_not_call)';

REVOKE ALL ON FUNCTION dialer.do_not_call_added() FROM PUBLIC;

CREATE TRIGGER do_not_call_added AFTER INSERT ON dialer.do_not_call
	REFERENCING NEW TABLE AS added
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.do_not_call_added();

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

CREATE OR REPLACE FUNCTION dialer.next_due_at(blocked_providers text[] DEFAULT '{}',
								   OUT dispatch_at timestamptz, OUT reconcile_at timestamptz)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
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
										 OR (c.status = 'unknown' AND c.provider_call_id IS NOT NULL))
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
			 WHERE p.enabled AND p.kind IN ('twilio', 'backend')));
$$;

COMMENT ON FUNCTION dialer.next_due_at(text[]) IS
	'Worker: earliest next_attempt_at of a scheduled call of an enabled provider not in blocked_providers, and when the next call falls due for reconciliation: a lookup by provider call id or a search by what was sent (NULL: none)';

CREATE FUNCTION dialer.claim_searches(provider text, max_calls int)
RETURNS TABLE (id bigint, search text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_kind text;
	v_from text;
BEGIN
	SELECT p.kind, p.from_number INTO v_kind, v_from
	  FROM dialer.providers p WHERE p.name = claim_searches.provider AND p.enabled;
	IF NOT FOUND OR v_kind NOT IN ('twilio', 'backend') OR max_calls < 1 THEN
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
			'kind', v_kind,
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

CREATE FUNCTION dialer.apply_search(call_id bigint, search jsonb, http_status int, body text, error text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_kind text := search->>'kind';
	v_after timestamptz;
	v_doc jsonb;
	v_rec jsonb;
	v_id text;
	v_at timestamptz;
	v_older boolean := false;
	v_cands jsonb := '[]';
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
	IF http_status BETWEEN 200 AND 299 THEN
		BEGIN
			v_doc := body::jsonb;
		EXCEPTION WHEN others THEN
			v_doc := NULL;
		END;
	END IF;
	v_detail := jsonb_build_object('lookup', 'search',
								   'searched', search - 'kind',
								   'http_status', http_status,
								   'searches_left', greatest(coalesce((search->>'of')::int, 3)
															 - coalesce((search->>'search')::int, 0), 0));

	IF v_doc IS NULL OR jsonb_typeof(v_doc) <> 'object' OR jsonb_typeof(v_doc->'calls') IS DISTINCT FROM 'array'
	   OR (v_kind = 'twilio' AND v_after IS NULL) THEN
		v_result := CASE WHEN v_kind = 'backend' AND http_status IS NOT NULL AND http_status NOT BETWEEN 200 AND 299
						 THEN 'not_offered' ELSE 'failed' END;
		v_detail := v_detail || jsonb_strip_nulls(jsonb_build_object(
			'error', coalesce(error, CASE
				WHEN v_result = 'not_offered' THEN format('the backend answered HTTP %s to GET /call?idempotency_key=: it offers no lookup by Idempotency-Key', http_status)
				WHEN http_status BETWEEN 200 AND 299 THEN 'answer without a calls list'
				WHEN http_status IS NOT NULL THEN format('the provider answered HTTP %s', http_status) END)));
	ELSE
		FOR v_rec IN SELECT e.value FROM jsonb_array_elements(v_doc->'calls') e LOOP
			CONTINUE WHEN jsonb_typeof(v_rec) <> 'object';
			v_id := nullif(v_rec->>(CASE v_kind WHEN 'twilio' THEN 'sid' ELSE 'call_id' END), '');
			IF v_kind = 'twilio' THEN
				BEGIN
					v_at := (v_rec->>'date_created')::timestamptz;
				EXCEPTION WHEN others THEN
					v_at := NULL;
				END;
				IF v_at < date_trunc('second', v_after) THEN
					v_older := true;
				END IF;
				CONTINUE WHEN v_at IS NULL OR v_at < date_trunc('second', v_after)
						   OR v_rec->>'to' IS DISTINCT FROM search->>'to'
						   OR v_rec->>'from' IS DISTINCT FROM search->>'from';
			ELSE
				CONTINUE WHEN v_rec ? 'idempotency_key'
						   AND v_rec->>'idempotency_key' IS DISTINCT FROM search->>'idempotency_key';
			END IF;
			CONTINUE WHEN v_id IS NULL;
			-- a record already known as another call's (or another attempt's) is not this one
			CONTINUE WHEN EXISTS (SELECT 1 FROM dialer.call_attempts a
								   WHERE a.provider_call_id = v_id
									 AND (a.call_id <> apply_search.call_id OR a.attempt <> v_call.attempts))
					   OR EXISTS (SELECT 1 FROM dialer.scheduled_calls c
								   WHERE c.provider_call_id = v_id AND c.id <> apply_search.call_id);
			v_cands := v_cands || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
				'id', v_id, 'status', v_rec->>'status', 'date_created', v_rec->>'date_created',
				'duration', v_rec->>'duration', 'answered_by', v_rec->>'answered_by')));
		END LOOP;
		v_n := jsonb_array_length(v_cands);
		v_result := CASE
			WHEN v_n > 1 THEN 'ambiguous'
			-- Twilio lists newest first: a further page may hold more when none was older
			WHEN v_kind = 'twilio' AND v_doc->>'next_page_uri' IS NOT NULL AND NOT v_older THEN 'incomplete'
			WHEN v_n = 0 THEN 'not_found'
			ELSE 'found' END;
		v_detail := v_detail || jsonb_build_object('records', jsonb_array_length(v_doc->'calls'),
												   'candidates', v_cands);
	END IF;

	IF v_result = 'found' AND v_call.status = 'unknown' AND v_call.provider_call_id IS NULL THEN
		v_rec := v_cands->0;
		v_detail := v_detail || jsonb_build_object('search_result', 'found');
		IF dialer.provider_status_outcome(dialer.normalize_provider_status(coalesce(v_rec->>'status', ''))) IS NOT NULL THEN
			PERFORM dialer.apply_provider_status(
				apply_search.call_id, v_rec->>'status', v_rec->>'id', NULL,
				jsonb_strip_nulls(jsonb_build_object(
					'duration_seconds', CASE WHEN (v_rec->>'duration') ~ '^[0-9]+$' THEN (v_rec->>'duration')::int END,
					'answered_by', v_rec->>'answered_by')),
				v_detail, 'reconciled',
				format('search/%s/%s', v_rec->>'id', v_rec->>'status'));
		ELSE
			-- a status pg_dialer does not know (a backend's own word): the provider has
			-- the call, so it is under way; its id is stored for later lookups
			UPDATE dialer.call_attempts a SET provider_call_id = coalesce(a.provider_call_id, v_rec->>'id'),
											   provider_status = coalesce(v_rec->>'status', a.provider_status)
			 WHERE a.call_id = apply_search.call_id AND a.attempt = v_call.attempts;
			UPDATE dialer.scheduled_calls c
			   SET status = 'dialing', provider_call_id = v_rec->>'id',
				   provider_status = coalesce(v_rec->>'status', c.provider_status), updated_at = now()
			 WHERE c.id = apply_search.call_id;
			INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
			VALUES (apply_search.call_id, 'reconciled', 'unknown', 'dialing',
					v_detail || jsonb_strip_nulls(jsonb_build_object(
						'provider_call_id', v_rec->>'id', 'provider_status', v_rec->>'status',
						'attempt', v_call.attempts,
						'note', 'a provider status pg_dialer does not know: the call is taken as under way')));
		END IF;
		-- settled: a later attempt that ends unknown gets its own searches
		UPDATE dialer.scheduled_calls c SET reconcile_searches = 0 WHERE c.id = apply_search.call_id;
		RETURN;
	END IF;

	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	VALUES (apply_search.call_id, 'reconcile_search', v_call.status, v_call.status,
			v_detail || jsonb_build_object(
				'result', v_result,
				'message', CASE v_result
					WHEN 'not_found' THEN 'no record the provider holds matches what was sent'
					WHEN 'ambiguous' THEN 'several records match what was sent: none is taken'
					WHEN 'incomplete' THEN 'more records than one page match: none is taken'
					WHEN 'found' THEN 'the call was settled meanwhile: nothing changed'
					WHEN 'not_offered' THEN 'the backend offers no lookup by Idempotency-Key'
					ELSE 'the search failed' END
				|| CASE WHEN (v_detail->>'searches_left')::int = 0 AND v_result <> 'found'
						THEN '; no search is left: the call stays unknown (check it at the provider, then dialer.retry_call() or leave it)'
						ELSE '' END));
END;
$$;

COMMENT ON FUNCTION dialer.apply_search(bigint, jsonb, int, text, text) IS
	'Worker: applies the answer to a search for an unknown call without a provider call id: exactly one matching record settles it (event reconciled), else it stays unknown with a reconcile_search event (not_found, ambiguous, incomplete, failed, not_offered)';

CREATE FUNCTION dialer.url_percent_encode(s text, unsafe text)
RETURNS text
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT coalesce(pg_catalog.string_agg(
			CASE WHEN pg_catalog.ascii(t.ch) BETWEEN 33 AND 126 AND pg_catalog.strpos(unsafe, t.ch) = 0 THEN t.ch
				 ELSE pg_catalog.upper(pg_catalog.regexp_replace(
						pg_catalog.encode(pg_catalog.convert_to(t.ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g'))
			END, '' ORDER BY t.n), '')
	  FROM pg_catalog.regexp_split_to_table(s, '') WITH ORDINALITY AS t(ch, n);
$$;

COMMENT ON FUNCTION dialer.url_percent_encode(text, text) IS
	'Internal: s with controls, space, non-ASCII characters (UTF-8 bytes) and the characters of unsafe percent-encoded';

CREATE FUNCTION dialer.twilio_url_normalized(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
	m text[] := pg_catalog.regexp_match(url,
		'^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#@]*@)?(\[[^]/?#]*\]|[^/?#:]*)(:[0-9]*)?([^?#]*)(\?[^#]*)?(#.*)?$');
	v_scheme text := pg_catalog.lower(m[1]);
	v_port text := pg_catalog.substr(m[4], 2);
BEGIN
	IF m IS NULL OR v_scheme NOT IN ('https', 'http') OR m[3] = '' THEN
		RETURN NULL;
	END IF;
	IF v_port = '' THEN
		v_port := NULL;
	ELSIF v_port IS NOT NULL THEN
		IF pg_catalog.length(pg_catalog.ltrim(v_port, '0')) > 5 OR v_port::numeric > 65535 THEN
			RETURN NULL;
		END IF;
		v_port := (v_port::int)::text;
		IF (v_scheme = 'https' AND v_port = '443') OR (v_scheme = 'http' AND v_port = '80') THEN
			v_port := NULL;
		END IF;
	END IF;
	RETURN v_scheme || '://' || coalesce(m[2], '') || pg_catalog.lower(m[3])
		|| coalesce(':' || v_port, '')
		|| CASE WHEN m[5] = '' THEN '/' ELSE dialer.url_percent_encode(m[5], '"<>`{}') END
		|| coalesce('?' || dialer.url_percent_encode(pg_catalog.substr(m[6], 2), '"<>'''), '')
		|| coalesce('#' || dialer.url_percent_encode(pg_catalog.substr(m[7], 2), '"<>`'), '');
END;
$$;

COMMENT ON FUNCTION dialer.twilio_url_normalized(text) IS
	'Internal: a URL as a WHATWG URL parser serializes it (lower-case scheme and host, no default port, percent-encoded path, query and fragment); NULL when not a valid http(s) URL';

CREATE FUNCTION dialer.twilio_url_legacy_query(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
	v_q int := pg_catalog.strpos(url, '?');
	v_out text;
BEGIN
	IF v_q = 0 OR v_q = pg_catalog.length(url) THEN
		RETURN url;
	END IF;
	BEGIN
		WITH piece AS (
			SELECT p.n, pg_catalog.split_part(p.s, '=', 1) AS k,
				   CASE WHEN pg_catalog.strpos(p.s, '=') > 0
						THEN pg_catalog.substr(p.s, pg_catalog.strpos(p.s, '=') + 1) ELSE '' END AS v
			  FROM pg_catalog.regexp_split_to_table(pg_catalog.substr(url, v_q + 1), '&') WITH ORDINALITY AS p(s, n)
			 WHERE p.s <> ''
		), decoded AS (
			SELECT x.n, x.part,
				   pg_catalog.convert_from((
					   SELECT pg_catalog.string_agg(
								CASE WHEN pg_catalog.length(t.tok[1]) = 3
									 THEN pg_catalog.decode(pg_catalog.substr(t.tok[1], 2), 'hex')
									 ELSE pg_catalog.convert_to(t.tok[1], 'UTF8') END, ''::bytea ORDER BY t.i)
						 FROM pg_catalog.regexp_matches(pg_catalog.replace(x.raw, '+', ' '), '%[0-9A-Fa-f]{2}|.', 'g')
							  WITH ORDINALITY AS t(tok, i)), 'UTF8') AS txt
			  FROM (SELECT n, 1 AS part, k AS raw FROM piece UNION ALL SELECT n, 2, v FROM piece) x
		), pairs AS (
			SELECT d.n, coalesce(pg_catalog.max(d.txt) FILTER (WHERE d.part = 1), '') AS k,
				   coalesce(pg_catalog.max(d.txt) FILTER (WHERE d.part = 2), '') AS v
			  FROM decoded d GROUP BY d.n
		)
		SELECT pg_catalog.string_agg(dialer.url_percent_encode(p.k, '"#$%&+,/:;<=>?@[\]^`{|}')
									 || '=' || dialer.url_percent_encode(p.v, '"#$%&+,/:;<=>?@[\]^`{|}'),
									 '&' ORDER BY f.first_n, p.n)
		  INTO v_out
		  FROM pairs p
		  JOIN (SELECT k, pg_catalog.min(n) AS first_n FROM pairs GROUP BY k) f ON f.k = p.k;
	EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
		RETURN NULL;
	END;
	RETURN pg_catalog.substr(url, 1, v_q) || coalesce(v_out, '');
END;
$$;

COMMENT ON FUNCTION dialer.twilio_url_legacy_query(text) IS
	'Internal: a URL with its query string decoded and re-encoded as Node''s legacy querystring module does (the last form Twilio''s helper library tries)';

CREATE OR REPLACE FUNCTION dialer.twilio_signature_matches(auth_token text, url text, params jsonb, signature text)
RETURNS boolean
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
	v_url text;
	v_norm text;
BEGIN
	IF auth_token IS NULL OR url IS NULL OR params IS NULL OR signature IS NULL THEN
		RETURN false;
	END IF;
	IF dialer.constant_time_equal(dialer.twilio_signature(auth_token, url, params), signature) THEN
		RETURN true;
	END IF;
	FOREACH v_url IN ARRAY (dialer.twilio_url_variants(url))[2:] LOOP
		IF dialer.constant_time_equal(dialer.twilio_signature(auth_token, v_url, params), signature) THEN
			RETURN true;
		END IF;
	END LOOP;
	/*
	 * Then, as Twilio's helper library does, the URL as a URL parser serializes it
	 * (percent-encoded), and that with its query re-encoded by the legacy rules: each
	 * with and without the default port.
	 */
	v_norm := dialer.twilio_url_normalized(url);
	IF v_norm IS NULL THEN
		RETURN false;
	END IF;
	FOREACH v_url IN ARRAY dialer.twilio_url_variants(v_norm)
		|| dialer.twilio_url_variants(coalesce(dialer.twilio_url_legacy_query(v_norm), v_norm)) LOOP
		IF dialer.constant_time_equal(dialer.twilio_signature(auth_token, v_url, params), signature) THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END;
$$;

COMMENT ON FUNCTION dialer.twilio_signature_matches(text, text, jsonb, text) IS
	'Internal: true when signature is Twilio''s for url and params under auth_token, with url as configured or in the other forms Twilio''s helper library accepts (default port added or removed, percent-encoded as a URL parser serializes it, query re-encoded by Node''s legacy rules)';

CREATE OR REPLACE FUNCTION dialer.apply_provider_status(
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
	p_source	text := coalesce(apply_provider_status.source, 'callback');
	v_status	text := dialer.normalize_provider_status(apply_provider_status.status);
	v_rank		int;
	v_outcome	text;
	v_dedupe	text;
	v_call		dialer.scheduled_calls;
	v_att		dialer.call_attempts;
	v_have_att	boolean := false;
	v_current	boolean := false;
	v_unmatched	boolean := false;
	v_last_seq	bigint;
	v_dup		boolean;
	v_look		record;
	v_stale		boolean := false;
	v_forward	boolean := false;
	v_moves		boolean := false;
	v_new_status text;
	v_retry		boolean := false;
	v_delay		interval;
	v_next		timestamptz;
	v_retry_why	text;
	v_new_pstatus text;
	v_error		text;
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
	v_rank := dialer.provider_status_rank(v_status);
	v_outcome := dialer.provider_status_outcome(v_status);
	v_dedupe := coalesce(apply_provider_status.dedupe_key,
						 coalesce(p_sid, '-') || '/' || coalesce(p_seq::text, v_status));

	/* the call, locked: reports of one call are applied one at a time */
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = p_call_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN jsonb_build_object('result', 'unknown_call', 'call_id', p_call_id);
	END IF;

	/*
	 * The attempt it is about: the one with this provider call id, else the current
	 * attempt when it has none yet (the report came before the worker stored it: it is
	 * adopted) or when no provider call id is given.  And one look at the call's events,
	 * taken after the lock so that a report committed meanwhile is seen: a report already
	 * recorded is a duplicate and changes nothing (nothing at all is written); else the
	 * highest sequence already applied to the attempt tells whether this one comes late.
	 */
	SELECT x.att, ev.dup, ev.last_seq, k.key
	  INTO v_look
	  FROM (SELECT 1) one
	  LEFT JOIN LATERAL (
			SELECT a AS att FROM dialer.call_attempts a
			 WHERE a.call_id = p_call_id
			   AND (a.provider_call_id = p_sid
					OR (a.attempt = v_call.attempts AND (p_sid IS NULL OR a.provider_call_id IS NULL)))
			 ORDER BY a.provider_call_id = p_sid DESC NULLS LAST, a.attempt DESC
			 LIMIT 1) x ON true
	  CROSS JOIN LATERAL (SELECT coalesce((x.att).attempt::text, '-') || ':' || v_dedupe AS key) k
	  CROSS JOIN LATERAL (
			SELECT coalesce(bool_or(e.detail->>'dedupe_key' = k.key), false) AS dup,
				   max((e.detail->>'sequence')::bigint)
					 FILTER (WHERE e.detail ? 'sequence' AND (e.detail->>'attempt')::int = (x.att).attempt
								   AND NOT e.detail ? 'stale') AS last_seq
			  FROM dialer.call_events e
			 WHERE e.call_id = p_call_id) ev;
	v_att := v_look.att;
	v_dedupe := v_look.key;		/* a report is identified within its attempt */
	v_dup := v_look.dup;
	v_last_seq := v_look.last_seq;
	v_have_att := v_att.id IS NOT NULL;
	IF v_dup THEN
		RETURN jsonb_build_object('result', 'duplicate', 'call_id', p_call_id, 'attempt', v_att.attempt,
								  'status', v_call.status, 'previous_status', v_call.status);
	END IF;
	v_unmatched := NOT v_have_att;
	v_current := v_have_att AND v_att.attempt = v_call.attempts;

	IF v_have_att THEN
		v_stale := p_seq IS NOT NULL AND v_last_seq IS NOT NULL AND p_seq <= v_last_seq;
		/* the attempt's provider status moves forward only */
		v_forward := NOT v_stale AND v_rank IS NOT NULL
					 AND (v_att.provider_status IS NULL
						  OR dialer.provider_status_rank(v_att.provider_status) IS NULL
						  OR v_rank > dialer.provider_status_rank(v_att.provider_status)
						  OR (v_rank = dialer.provider_status_rank(v_att.provider_status) AND v_rank < 5));
		v_new_pstatus := CASE WHEN v_forward THEN v_status ELSE v_att.provider_status END;
	END IF;

	/* the call: only its current attempt moves it, and only forward */
	v_new_status := v_call.status;
	v_moves := v_current AND NOT coalesce(v_stale, false) AND v_outcome IS NOT NULL
			   AND v_call.status IN ('dispatching', 'dialing', 'unknown');
	IF v_moves THEN
		IF v_outcome = 'dialing' THEN
			v_new_status := 'dialing';
		ELSE
			v_new_status := v_outcome;
			IF v_outcome IN ('busy', 'no_answer') THEN
				SELECT CASE v_outcome WHEN 'busy' THEN coalesce(k.retry_busy, p.retry_busy)
									  ELSE coalesce(k.retry_no_answer, p.retry_no_answer) END,
					   coalesce(k.retry_delay, p.retry_delay)
				  INTO v_retry, v_delay
				  FROM dialer.providers p
				  LEFT JOIN dialer.campaigns k ON k.name = v_call.campaign
				 WHERE p.name = v_call.provider;
				v_retry := coalesce(v_retry, false);
				v_next := now() + coalesce(v_delay, interval '0');
				IF v_retry AND v_call.attempts - v_call.attempts_base >= v_call.max_attempts THEN
					v_retry := false;
					v_retry_why := 'attempts_exhausted';
				ELSIF v_retry AND v_call.deadline IS NOT NULL AND v_next >= v_call.deadline THEN
					v_retry := false;
					v_retry_why := 'deadline';
				END IF;
				IF v_retry THEN
					v_new_status := 'scheduled';
				END IF;
			END IF;
		END IF;
		v_error := CASE
			WHEN v_outcome IN ('dialing', 'completed') THEN v_call.last_error
			WHEN v_outcome = 'failed' THEN
				'failed' || coalesce(': ' || nullif(concat_ws(' ', p_data->>'error_code', p_data->>'error_message'), ''), '')
			WHEN v_outcome = 'no_answer' THEN 'no answer'
			ELSE v_outcome END;
	END IF;

	v_result := CASE
		WHEN v_unmatched THEN 'unmatched'
		WHEN v_stale THEN 'stale'
		WHEN v_new_status <> v_call.status OR v_forward THEN 'applied'
		ELSE 'recorded' END;

	/*
	 * Every write in one statement: the attempt, the call (when it moves, or its provider
	 * status follows the current attempt's), the event(s).  Lock order: the call (above),
	 * then the attempt, as the worker does.
	 */
	WITH att AS (
		UPDATE dialer.call_attempts a
		   SET provider_call_id = coalesce(a.provider_call_id, p_sid),
			   provider_status = v_new_pstatus,
			   duration_seconds = CASE WHEN v_stale THEN coalesce(a.duration_seconds, (p_data->>'duration_seconds')::int)
									   ELSE coalesce((p_data->>'duration_seconds')::int, a.duration_seconds) END,
			   answered_by = CASE WHEN v_stale THEN coalesce(a.answered_by, p_data->>'answered_by')
								  ELSE coalesce(p_data->>'answered_by', a.answered_by) END,
			   sip_response_code = CASE WHEN v_stale THEN coalesce(a.sip_response_code, (p_data->>'sip_response_code')::int)
										ELSE coalesce((p_data->>'sip_response_code')::int, a.sip_response_code) END,
			   recording_url = CASE WHEN v_stale THEN coalesce(a.recording_url, p_data->>'recording_url')
									ELSE coalesce(p_data->>'recording_url', a.recording_url) END,
			   transcript = CASE WHEN v_stale THEN coalesce(a.transcript, p_data->>'transcript')
								 ELSE coalesce(p_data->>'transcript', a.transcript) END,
			   error_code = CASE WHEN v_stale THEN coalesce(a.error_code, p_data->>'error_code')
								 ELSE coalesce(p_data->>'error_code', a.error_code) END,
			   error_message = CASE WHEN v_stale THEN coalesce(a.error_message, p_data->>'error_message')
									ELSE coalesce(p_data->>'error_message', a.error_message) END
		 WHERE a.id = v_att.id
		RETURNING a.id
	), cal AS (
		UPDATE dialer.scheduled_calls c
		   SET status = v_new_status,
			   provider_call_id = CASE WHEN v_moves THEN coalesce(p_sid, c.provider_call_id) ELSE c.provider_call_id END,
			   provider_status = coalesce(v_new_pstatus, c.provider_status),
			   last_error = CASE WHEN v_moves THEN v_error ELSE c.last_error END,
			   next_attempt_at = CASE WHEN v_moves AND v_new_status = 'scheduled' THEN v_next ELSE c.next_attempt_at END,
			   finished_at = CASE WHEN NOT v_moves THEN c.finished_at
								  WHEN v_new_status IN ('completed', 'busy', 'no_answer', 'failed', 'canceled')
									  THEN coalesce(c.finished_at, now())
								  END,
			   updated_at = now()
		 WHERE c.id = p_call_id
		   AND (v_moves OR (v_current AND v_new_pstatus IS DISTINCT FROM v_call.provider_status
							AND v_call.status <> 'scheduled'))
		RETURNING c.id
	)
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	SELECT p_call_id, p_source, v_call.status, v_new_status,
		   coalesce(apply_provider_status.event_detail, '{}') || jsonb_strip_nulls(jsonb_build_object(
				'provider_status', v_status,
				'provider_call_id', p_sid,
				'attempt', v_att.attempt,
				'sequence', p_seq,
				'dedupe_key', v_dedupe,
				'result', v_result,
				'stale', CASE WHEN v_stale THEN true END,
				'unmatched', CASE WHEN v_unmatched THEN true END,
				'retry_skipped', v_retry_why))
	UNION ALL
	SELECT p_call_id, 'retry_scheduled', v_call.status, 'scheduled',
		   jsonb_build_object('reason', v_outcome, 'attempt', v_att.attempt,
							  'next_attempt_at', v_next, 'retry_delay', v_delay::text,
							  'attempts_used', v_call.attempts - v_call.attempts_base,
							  'max_attempts', v_call.max_attempts)
	 WHERE v_new_status = 'scheduled' AND v_call.status <> 'scheduled';

	IF v_new_status <> v_call.status
	   AND v_new_status IN ('scheduled', 'completed', 'busy', 'no_answer', 'failed', 'canceled') THEN
		PERFORM dialer.wake_worker();		/* a concurrency slot is free (and maybe a retry is due) */
	END IF;

	RETURN jsonb_build_object('result', v_result, 'call_id', p_call_id,
							  'attempt', CASE WHEN v_have_att THEN v_att.attempt END,
							  'status', v_new_status, 'previous_status', v_call.status);
END;
$$;

CREATE OR REPLACE FUNCTION dialer.twilio_ingest(fields jsonb, call_ref text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_headers	jsonb := dialer.request_headers();
	v_sig		text := v_headers->>'x-twilio-signature';
	v_ctype		text := lower(split_part(v_headers->>'content-type', ';', 1));
	v_call_id	bigint;
	v_provider	text;
	v_prov		dialer.providers;
	v_ok		boolean := false;
	v_sid		text;
	v_seq		bigint;
	v_status	text;
	v_detail	jsonb;
	v_data		jsonb;
	v_res		jsonb;
BEGIN
	/* the shape of the request */
	IF fields IS NULL OR jsonb_typeof(fields) <> 'object' THEN
		PERFORM dialer.webhook_refuse(400, 'a Twilio status callback is a set of form fields');
	END IF;
	IF v_headers ? 'content-type' AND v_ctype <> 'application/x-www-form-urlencoded' THEN
		PERFORM dialer.webhook_refuse(415, 'Twilio status callbacks are application/x-www-form-urlencoded');
	END IF;
	IF v_sig IS NULL OR v_sig = '' THEN
		PERFORM dialer.webhook_refuse(401, 'X-Twilio-Signature is missing',
			'Status callbacks are accepted only when signed by Twilio.');
	END IF;
	IF call_ref IS NOT NULL AND call_ref !~ '^[1-9][0-9]{0,17}$' THEN
		PERFORM dialer.webhook_refuse(400, 'call_id in the callback URL is not a call id');
	END IF;

	/*
	 * The call: by the call id of the URL, else by CallSid.  Looked up by CallSid, it is
	 * looked up under the CallSid's lock (dialer.lock_provider_call_id): a callback that
	 * comes before the worker has stored the sid is kept in dialer.pending_callbacks, and
	 * the worker, storing the sid under the same lock, then finds it (or this one finds
	 * the sid stored).
	 */
	v_call_id := call_ref::bigint;
	IF v_call_id IS NULL AND fields->>'CallSid' IS NOT NULL THEN
		PERFORM dialer.lock_provider_call_id(fields->>'CallSid');
		SELECT c.id INTO v_call_id
		  FROM dialer.scheduled_calls c WHERE c.provider_call_id = fields->>'CallSid'
		 ORDER BY c.id DESC LIMIT 1;
		IF v_call_id IS NULL THEN
			SELECT a.call_id INTO v_call_id
			  FROM dialer.call_attempts a WHERE a.provider_call_id = fields->>'CallSid'
			 ORDER BY a.id DESC LIMIT 1;
		END IF;
	END IF;

	/*
	 * The signature, with the auth token of the call's provider; for a call pg_dialer
	 * does not know (removed by cleanup, or placed by someone else), with the tokens of
	 * the Twilio providers of the AccountSid the callback names (then nothing is applied).
	 */
	IF v_call_id IS NOT NULL THEN
		SELECT p.* INTO v_prov
		  FROM dialer.scheduled_calls c JOIN dialer.providers p ON p.name = c.provider
		 WHERE c.id = v_call_id AND p.kind = 'twilio'
		   AND p.auth_token IS NOT NULL AND p.status_callback_url IS NOT NULL;
		IF FOUND THEN
			v_provider := v_prov.name;
			v_ok := dialer.twilio_signature_matches(v_prov.auth_token,
				dialer.twilio_callback_url(v_prov.status_callback_url, call_ref::bigint), fields, v_sig);
		ELSIF NOT EXISTS (SELECT 1 FROM dialer.scheduled_calls c WHERE c.id = v_call_id) THEN
			v_call_id := NULL;
		END IF;
	END IF;
	IF v_provider IS NULL AND v_call_id IS NULL THEN
		FOR v_prov IN
			SELECT p.* FROM dialer.providers p
			 WHERE p.kind = 'twilio' AND p.account_sid = fields->>'AccountSid'
			   AND p.auth_token IS NOT NULL AND p.status_callback_url IS NOT NULL
			 ORDER BY p.name
		LOOP
			v_ok := dialer.twilio_signature_matches(v_prov.auth_token,
				dialer.twilio_callback_url(v_prov.status_callback_url, call_ref::bigint), fields, v_sig);
			EXIT WHEN v_ok;
		END LOOP;
	END IF;
	IF NOT coalesce(v_ok, false) THEN
		PERFORM dialer.webhook_refuse(403, 'X-Twilio-Signature does not match',
			'The signature is checked over providers.status_callback_url (plus call_id=<id>) and the fields sent, with the provider''s auth_token.');
	END IF;
	IF fields ? 'AccountSid' AND v_prov.account_sid IS DISTINCT FROM fields->>'AccountSid' THEN
		PERFORM dialer.webhook_refuse(403, 'the callback is for another Twilio account');
	END IF;

	/* authentic from here on */
	v_sid := fields->>'CallSid';
	v_status := fields->>'CallStatus';
	IF v_sid IS NULL OR v_sid = '' OR v_status IS NULL OR v_status = '' THEN
		PERFORM dialer.webhook_refuse(400, 'a status callback names CallSid and CallStatus');
	END IF;
	IF fields ? 'SequenceNumber' THEN
		IF fields->>'SequenceNumber' !~ '^[0-9]{1,18}$' THEN
			PERFORM dialer.webhook_refuse(400, 'SequenceNumber is not a number');
		END IF;
		v_seq := (fields->>'SequenceNumber')::bigint;
	END IF;
	IF v_call_id IS NULL AND call_ref IS NULL AND v_prov.name IS NOT NULL THEN
		/* not known by its sid yet (the worker has not stored it): kept, applied when it is */
		INSERT INTO dialer.pending_callbacks (provider, provider_call_id, sequence, fields)
		VALUES (v_prov.name, v_sid, v_seq, fields);
		RETURN jsonb_build_object('result', 'pending', 'reason', 'no call has this CallSid yet: kept until one has',
								  'provider_call_id', v_sid);
	END IF;
	IF v_call_id IS NULL OR v_provider IS NULL THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'no call of pg_dialer has this call id or CallSid',
								  'call_id', v_call_id);
	END IF;

	RETURN dialer.twilio_apply_fields(v_call_id, fields, v_seq, 'callback');
END;
$$;

COMMENT ON FUNCTION dialer.twilio_ingest(jsonb, text) IS
	'Internal: authenticates a Twilio status callback (X-Twilio-Signature over the configured public URL and the fields) and applies it (or keeps it in pending_callbacks until its CallSid is stored)';

CREATE FUNCTION dialer.twilio_apply_fields(call_id bigint, fields jsonb, sequence bigint, source text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_data		jsonb;
	v_detail	jsonb;
BEGIN
	v_data := jsonb_strip_nulls(jsonb_build_object(
		'duration_seconds', CASE WHEN fields->>'CallDuration' ~ '^[0-9]{1,9}$' THEN (fields->>'CallDuration')::int END,
		'answered_by', nullif(fields->>'AnsweredBy', ''),
		'sip_response_code', CASE WHEN fields->>'SipResponseCode' ~ '^[0-9]{1,9}$' THEN (fields->>'SipResponseCode')::int END,
		'recording_url', nullif(fields->>'RecordingUrl', ''),
		'transcript', nullif(fields->>'TranscriptionText', ''),
		'error_code', nullif(fields->>'ErrorCode', ''),
		'error_message', nullif(fields->>'ErrorMessage', '')));

	/* the event keeps what Twilio said, minus any field that is a credential */
	v_detail := fields;
	IF fields::text ~* '(token|secret|password|signature|passport)' THEN
		SELECT coalesce(jsonb_object_agg(f.key, f.value), '{}') INTO v_detail
		  FROM jsonb_each(fields) f
		 WHERE f.key !~* '(token|secret|password|signature|passport)';
	END IF;
	v_detail := jsonb_build_object('fields', v_detail, 'via', 'twilio');

	RETURN dialer.apply_provider_status(twilio_apply_fields.call_id, fields->>'CallStatus', fields->>'CallSid',
										twilio_apply_fields.sequence, v_data, v_detail, source);
END;
$$;

COMMENT ON FUNCTION dialer.twilio_apply_fields(bigint, jsonb, bigint, text) IS
	'Internal: applies the fields of an authentic Twilio status callback to a call (attempt data, event without credentials)';

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

CREATE TABLE dialer.pending_callbacks (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	provider			text NOT NULL REFERENCES dialer.providers (name) ON UPDATE CASCADE ON DELETE CASCADE,
	provider_call_id	text NOT NULL,
	sequence			bigint,
	fields				jsonb NOT NULL CHECK (jsonb_typeof(fields) = 'object'),
	received_at			timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE dialer.pending_callbacks IS
	'Authentic Twilio status callbacks whose call was not yet known by its CallSid: applied when the sid is stored, removed by cleanup() when never matched';

COMMENT ON COLUMN dialer.pending_callbacks.provider IS 'The provider whose auth token signed it';

COMMENT ON COLUMN dialer.pending_callbacks.provider_call_id IS 'The CallSid it is about';

COMMENT ON COLUMN dialer.pending_callbacks.sequence IS 'Its SequenceNumber (the order they are applied in)';

COMMENT ON COLUMN dialer.pending_callbacks.fields IS 'Every form field as received (the signature was checked over them)';

COMMENT ON COLUMN dialer.pending_callbacks.received_at IS 'When it was received';

CREATE INDEX pending_callbacks_provider_call_id_idx ON dialer.pending_callbacks (provider_call_id);

SELECT pg_catalog.pg_extension_config_dump('dialer.pending_callbacks', '');

SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.pending_callbacks', 'id'), '');

CREATE FUNCTION dialer.apply_pending_callbacks()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_kept	jsonb;
	r		record;
BEGIN
	PERFORM dialer.lock_provider_call_id(NEW.provider_call_id);
	-- a statement of its own, after the lock: it sees what a callback committed meanwhile
	WITH gone AS (
		-- kept under the provider whose token verified it: any Twilio provider of the
		-- call's account (a CallSid names one call of one account)
		DELETE FROM dialer.pending_callbacks p
		 USING dialer.providers kp, dialer.providers cp
		 WHERE p.provider_call_id = NEW.provider_call_id
		   AND kp.name = p.provider AND cp.name = NEW.provider
		   AND kp.account_sid = cp.account_sid
		RETURNING p.id, p.sequence, p.fields
	)
	SELECT jsonb_agg(jsonb_build_object('sequence', g.sequence, 'fields', g.fields)
					 ORDER BY g.sequence NULLS LAST, g.id)
	  INTO v_kept
	  FROM gone g;
	FOR r IN SELECT (e.value->>'sequence')::bigint AS sequence, e.value->'fields' AS fields
			   FROM jsonb_array_elements(coalesce(v_kept, '[]')) WITH ORDINALITY AS e(value, n)
			  ORDER BY e.n
	LOOP
		PERFORM dialer.twilio_apply_fields(NEW.id, r.fields, r.sequence, 'callback');
	END LOOP;
	RETURN NULL;
END;
$$;

COMMENT ON FUNCTION dialer.apply_pending_callbacks() IS
	'Trigger: when a call''s provider call id is stored, applies (in order) and removes the callbacks kept for it in pending_callbacks';

CREATE TRIGGER apply_pending_callbacks
	AFTER UPDATE OF provider_call_id ON dialer.scheduled_calls
	FOR EACH ROW
	WHEN (NEW.provider_call_id IS NOT NULL AND OLD.provider_call_id IS DISTINCT FROM NEW.provider_call_id)
	EXECUTE FUNCTION dialer.apply_pending_callbacks();

COMMENT ON COLUMN dialer.campaign_source_row.customer_ref IS 'The application''s reference of the candidate';

COMMENT ON COLUMN dialer.campaign_source_row.phone IS 'The number to call (E.164; spaces ( ) . - are ignored)';

COMMENT ON COLUMN dialer.campaign_source_row.payload IS 'The candidate''s own payload keys (over the campaign''s payload)';

COMMENT ON COLUMN dialer.campaign_source_row.timezone IS 'The candidate''s IANA time zone (NULL: the campaign''s)';

COMMENT ON COLUMN dialer.campaign_source_row.due_at IS 'What the call is about (appointment, expiry): the lookahead window';

CREATE OR REPLACE FUNCTION dialer.run_campaign(campaign text, max_calls int DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k		dialer.campaigns := dialer.get_campaign(campaign);
	v_n		int := 0;
BEGIN
	IF max_calls < 0 THEN
		PERFORM dialer.raise_bad_argument('max_calls', max_calls::text,
			'max_calls is the most calls this run enqueues: 0 or more (NULL: no limit beyond the campaign''s rules).',
			'Omit it to enqueue every pending customer.');
	END IF;
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'dialer.run_campaign must run at READ COMMITTED isolation, not %',
			upper(current_setting('transaction_isolation'))
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Runs of a campaign wait for each other; a snapshot taken before the wait would not see the calls the other run enqueued, and the daily cap could be exceeded.',
				  HINT = 'Call it in a READ COMMITTED transaction (the default).';
	END IF;

	PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.campaign'), hashtext(k.name));
	k := dialer.get_campaign(k.name);	-- as committed by whoever held the lock before us
	IF NOT k.enabled THEN
		RAISE NOTICE 'campaign % is disabled: nothing enqueued', quote_literal(k.name);
		RETURN 0;
	END IF;

	-- one set-based enqueue of every included candidate, all or nothing: a candidate
	-- enqueue_calls refuses (e.g. a Twilio provider with nothing to say) fails the run
	SELECT count(*) FILTER (WHERE e.outcome IN ('scheduled', 'skipped'))
	  INTO v_n
	  FROM dialer.enqueue_calls(
			(SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
						'to_number', c.phone, 'provider', k.provider, 'payload', c.payload,
						'campaign', k.name, 'dedupe_key', c.dedupe_key, 'priority', k.priority,
						'max_attempts', k.max_attempts, 'timezone', c.timezone,
						'customer_ref', c.customer_ref)) || jsonb_build_object('payload', c.payload)
						ORDER BY c.n), '[]')
			   FROM (SELECT cc.*, row_number() OVER () AS n
					   FROM dialer.campaign_candidates(k.name) cc
					  WHERE cc.included
					  LIMIT max_calls) c)) e;
	RETURN v_n;
END;
$$;

COMMENT ON COLUMN dialer.campaign_runs.id IS 'Run id (identity)';

COMMENT ON COLUMN dialer.campaign_runs.campaign IS 'The campaign (dialer.campaigns) that ran';

COMMENT ON COLUMN dialer.campaign_runs.timezone IS 'The campaign''s time zone at the run (of local_slot)';

COMMENT ON COLUMN dialer.campaign_runs.started_at IS 'When the run started';

COMMENT ON COLUMN dialer.campaign_runs.finished_at IS 'When the run ended (NULL: running)';

COMMENT ON COLUMN dialer.campaign_runs.enqueued IS 'How many calls the run enqueued';

COMMENT ON COLUMN dialer.campaign_runs.error IS 'Error message of a run with outcome error';

COMMENT ON SEQUENCE dialer.campaign_runs_id_seq IS 'Identity of dialer.campaign_runs.id';

SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.campaign_runs', 'id'), '');

COMMENT ON COLUMN dialer.campaign_schedules.campaign IS 'Campaign name';

COMMENT ON COLUMN dialer.campaign_schedules.schedule IS 'Its schedule in its own time zone (dialer.campaigns.schedule)';

COMMENT ON COLUMN dialer.campaign_schedules.timezone IS 'The time zone it is scheduled in: its own, else dialer.default_timezone, else UTC';

COMMENT ON COLUMN dialer.campaign_schedules.enabled IS 'false: its scheduled runs enqueue nothing';

COMMENT ON COLUMN dialer.campaign_schedules.scheduled_by IS 'Role whose privileges scheduled runs use';

COMMENT ON COLUMN dialer.campaign_schedules.schedule_since IS 'When the schedule was set';

COMMENT ON COLUMN dialer.campaign_schedules.last_slot IS 'Slot of the latest run (NULL: never ran)';

COMMENT ON COLUMN dialer.campaign_schedules.last_started_at IS 'When the latest run started';

COMMENT ON COLUMN dialer.campaign_schedules.last_outcome IS 'Outcome of the latest run: running, ok, error or disabled';

COMMENT ON COLUMN dialer.campaign_schedules.last_enqueued IS 'Calls the latest run enqueued';

COMMENT ON COLUMN dialer.campaign_schedules.last_error IS 'Error of the latest run, if it failed';

COMMENT ON COLUMN dialer.campaign_schedules.next_run_at IS 'Next run: a slot already due that the next pg_cron tick runs, else the next slot';

CREATE OR REPLACE FUNCTION dialer.grant_campaigns(role_name name, manage boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.require_role(role_name);
	EXECUTE format('GRANT USAGE ON SCHEMA dialer TO %I', role_name);
	EXECUTE format('GRANT SELECT ON dialer.campaigns, dialer.campaign_runs, dialer.campaign_schedules, '
				   'dialer.scheduled_calls, dialer.do_not_call TO %I', role_name);
	EXECUTE format('GRANT SELECT (name, kind, enabled) ON dialer.providers TO %I', role_name);
	EXECUTE format('GRANT EXECUTE ON FUNCTION dialer.pending_customers(text, int, int), '
				   'dialer.campaign_candidates(text, int), dialer.run_campaign(text, int), '
				   'dialer.campaign_enqueue(text, text, text, jsonb, text, text), dialer.enqueue_calls(jsonb, boolean), '
				   'dialer.get_campaign(text), dialer.campaign_timezone(text), '
				   'dialer.resolve_campaign_source(text), dialer.campaign_source_columns(text), '
				   'dialer.campaign_source_query(text), dialer.raise_bad_argument(text, text, text, text, text), '
				   'dialer.parse_schedule(text), dialer.cron_field(text, text, int, int, text[], text), '
				   'dialer.schedule_runs(text, text, timestamptz, timestamptz), '
				   'dialer.schedule_next_run(text, text, timestamptz), '
				   'dialer.schedule_last_run(text, text, timestamptz, timestamptz) TO %I', role_name);
	IF manage THEN
		EXECUTE format('GRANT INSERT, UPDATE, DELETE ON dialer.campaigns TO %I', role_name);
		EXECUTE format('GRANT EXECUTE ON FUNCTION dialer.schedule_campaign(text, text), '
					   'dialer.unschedule_campaign(text), dialer.require_pg_cron(), '
					   'dialer.campaign_ticker(boolean) TO %I', role_name);
	END IF;
END;
$$;

CREATE FUNCTION dialer.provider_status(
	OUT provider text,
	OUT in_flight int,
	OUT calls_per_second float8,
	OUT budget_used float8,
	OUT consecutive_failures int,
	OUT paused_until timestamptz)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dialer_provider_status';

COMMENT ON FUNCTION dialer.provider_status() IS
	'The pacing state this database''s dispatcher last published per provider: requests in flight, calls-per-second, calls of the current second''s budget used, consecutive failures, paused until (no rows when no dispatcher runs)';

CREATE FUNCTION dialer.dispatchers(
	OUT database_oid oid,
	OUT database text,
	OUT pid int,
	OUT state text,
	OUT started_at timestamptz)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dialer_dispatchers';

COMMENT ON FUNCTION dialer.dispatchers() IS
	'Every database of the server the launcher serves: its dispatcher''s pid (NULL when none runs), state and start time';

CREATE FUNCTION dialer.is_served()
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dialer_is_served';

COMMENT ON FUNCTION dialer.is_served() IS
	'True when a dispatcher serves the current database: pg_dialer is preloaded, its launcher runs and dialer.databases names this database';

CREATE FUNCTION dialer.check_served()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF dialer.is_served() THEN
		RETURN true;
	END IF;
	RAISE WARNING 'no pg_dialer dispatcher serves database "%": calls enqueued here are not dispatched', current_database()
		USING DETAIL = format('shared_preload_libraries = %s, dialer.databases = %s',
							  current_setting('shared_preload_libraries'),
							  coalesce(current_setting('dialer.databases', true), '(not loaded)')),
			  HINT = 'Add pg_dialer to shared_preload_libraries (restart) and this database to dialer.databases (or set it to *), then reload.';
	RETURN false;
END;
$$;

COMMENT ON FUNCTION dialer.check_served() IS
	'Raises a WARNING, and returns false, when no dispatcher serves the current database (dialer.is_served()); true otherwise';

CREATE INDEX call_attempts_requested_at_brin ON dialer.call_attempts USING brin (requested_at);

CREATE VIEW dialer.call_counts AS
	SELECT c.status, c.provider, c.campaign, count(*) AS calls,
		   min(c.next_attempt_at) FILTER (WHERE c.status = 'scheduled') AS next_attempt_at
	  FROM dialer.scheduled_calls c
	 GROUP BY c.status, c.provider, c.campaign;

COMMENT ON VIEW dialer.call_counts IS
	'Calls by status, provider and campaign (every row of dialer.scheduled_calls: filter on status to look at the active ones only)';

COMMENT ON COLUMN dialer.call_counts.status IS 'Call status (see dialer.scheduled_calls.status)';

COMMENT ON COLUMN dialer.call_counts.provider IS 'Provider name';

COMMENT ON COLUMN dialer.call_counts.campaign IS 'Campaign name, NULL for calls outside campaigns';

COMMENT ON COLUMN dialer.call_counts.calls IS 'Number of calls';

COMMENT ON COLUMN dialer.call_counts.next_attempt_at IS 'Scheduled calls: the earliest next attempt time; NULL for other statuses';

CREATE VIEW dialer.provider_health AS
	SELECT p.name AS provider,
		   p.kind,
		   p.enabled,
		   p.calls_per_second,
		   p.max_concurrency,
		   coalesce(a.calls_in_progress, 0) AS calls_in_progress,
		   coalesce(s.in_flight, 0) AS requests_in_flight,
		   coalesce(s.budget_used, 0) AS budget_used,
		   CASE WHEN p.calls_per_second > 0
				THEN coalesce(s.budget_used, 0) / greatest(1, p.calls_per_second) END AS budget_used_ratio,
		   coalesce(s.consecutive_failures, 0) AS consecutive_failures,
		   s.paused_until,
		   coalesce(s.paused_until > now(), false) AS paused,
		   e.error AS last_error,
		   e.at AS last_error_at,
		   coalesce(h.accepted, 0) AS accepted_last_hour,
		   coalesce(h.failed, 0) AS failed_last_hour
	  FROM dialer.providers p
	  LEFT JOIN dialer.provider_status() s ON s.provider = p.name
	  LEFT JOIN LATERAL (
			SELECT count(*) AS calls_in_progress
			  FROM dialer.scheduled_calls c
			 WHERE c.provider = p.name AND c.status IN ('dispatching', 'dialing')) a ON true
	  LEFT JOIN LATERAL (
			SELECT count(*) FILTER (WHERE t.http_status BETWEEN 200 AND 299) AS accepted,
				   count(*) FILTER (WHERE t.responded_at IS NOT NULL
									  AND (t.http_status IS NULL OR t.http_status NOT BETWEEN 200 AND 299)) AS failed
			  FROM dialer.call_attempts t
			  JOIN dialer.scheduled_calls c ON c.id = t.call_id
			 WHERE t.requested_at > now() - interval '1 hour' AND c.provider = p.name) h ON true
	  LEFT JOIN LATERAL (
			SELECT coalesce(t.error_code || ': ', '') || coalesce(t.error_message, 'HTTP ' || t.http_status) AS error,
				   coalesce(t.responded_at, t.requested_at) AS at
			  FROM dialer.call_attempts t
			  JOIN dialer.scheduled_calls c ON c.id = t.call_id
			 WHERE t.requested_at > now() - interval '1 hour' AND c.provider = p.name
			   AND t.responded_at IS NOT NULL
			   AND (t.error_message IS NOT NULL OR t.http_status IS NULL OR t.http_status NOT BETWEEN 200 AND 299)
			 ORDER BY t.requested_at DESC
			 LIMIT 1) e ON true;

COMMENT ON VIEW dialer.provider_health IS
	'Each provider''s health: calls in progress, requests in flight, calls-per-second budget used, consecutive failures, failure pause, last error and accepted/failed requests of the last hour (no secrets)';

COMMENT ON COLUMN dialer.provider_health.provider IS 'Provider name';

COMMENT ON COLUMN dialer.provider_health.kind IS 'twilio, backend or voice_api';

COMMENT ON COLUMN dialer.provider_health.enabled IS 'Whether the dispatcher claims calls for it';

COMMENT ON COLUMN dialer.provider_health.calls_per_second IS 'Configured calls-per-second limit';

COMMENT ON COLUMN dialer.provider_health.max_concurrency IS 'Configured limit of calls in progress (NULL: none)';

COMMENT ON COLUMN dialer.provider_health.calls_in_progress IS 'Calls dispatching or dialing (what max_concurrency counts, before dialer.reconcile_after)';

COMMENT ON COLUMN dialer.provider_health.requests_in_flight IS 'HTTP requests the dispatcher has open to the provider now';

COMMENT ON COLUMN dialer.provider_health.budget_used IS 'Calls of the current second''s budget already used (the budget refills at calls_per_second)';

COMMENT ON COLUMN dialer.provider_health.budget_used_ratio IS 'budget_used as a fraction of the budget (1: calls wait for the rate limit)';

COMMENT ON COLUMN dialer.provider_health.consecutive_failures IS 'Failed requests in a row (transport errors, 5xx, 429); the provider is paused from 5';

COMMENT ON COLUMN dialer.provider_health.paused_until IS 'End of the current or last failure pause (NULL: never paused since the dispatcher started or since its last success)';

COMMENT ON COLUMN dialer.provider_health.paused IS 'True while the provider is paused after repeated failures';

COMMENT ON COLUMN dialer.provider_health.last_error IS 'Code and message of its latest failed request of the last hour (NULL: none)';

COMMENT ON COLUMN dialer.provider_health.last_error_at IS 'When that request ended';

COMMENT ON COLUMN dialer.provider_health.accepted_last_hour IS 'Requests of the last hour the provider accepted (2xx)';

COMMENT ON COLUMN dialer.provider_health.failed_last_hour IS 'Requests of the last hour that ended without a 2xx (errors, timeouts, refusals)';

CREATE VIEW dialer.worker_health AS
	SELECT current_database()::text AS database,
		   w.pid,
		   coalesce(w.state, CASE WHEN dialer.is_served() THEN 'not running' ELSE 'not served' END) AS state,
		   w.started_at,
		   coalesce(w.in_flight, 0) AS in_flight,
		   w.dispatched,
		   w.accepted,
		   w.retried,
		   w.failed,
		   w.last_error,
		   w.last_error_at,
		   d.due_calls,
		   d.oldest_due_at,
		   coalesce(extract(epoch FROM now() - d.oldest_due_at), 0)::float8 AS lag_seconds
	  FROM (SELECT count(*) AS due_calls, min(c.next_attempt_at) AS oldest_due_at
			  FROM dialer.scheduled_calls c
			  JOIN dialer.providers p ON p.name = c.provider AND p.enabled
			 WHERE c.status = 'scheduled' AND c.next_attempt_at <= now()) d
	  LEFT JOIN dialer.worker_status() w ON true;

COMMENT ON VIEW dialer.worker_health IS
	'The current database''s dispatcher (always one row, state ''not running'' or ''not served'' when none runs) and its lag: due calls of enabled providers not yet claimed';

COMMENT ON COLUMN dialer.worker_health.database IS 'The current database';

COMMENT ON COLUMN dialer.worker_health.pid IS 'The dispatcher''s process id (NULL: none runs)';

COMMENT ON COLUMN dialer.worker_health.state IS 'idle, dispatching, paused (dialer.enabled = off), stopping, ...; not running; not served (dialer.databases)';

COMMENT ON COLUMN dialer.worker_health.started_at IS 'When the dispatcher started';

COMMENT ON COLUMN dialer.worker_health.in_flight IS 'Requests in flight';

COMMENT ON COLUMN dialer.worker_health.dispatched IS 'Requests started since the dispatcher started';

COMMENT ON COLUMN dialer.worker_health.accepted IS 'Requests the providers accepted since the dispatcher started';

COMMENT ON COLUMN dialer.worker_health.retried IS 'Requests that ended in a retry since the dispatcher started';

COMMENT ON COLUMN dialer.worker_health.failed IS 'Requests that failed for good since the dispatcher started';

COMMENT ON COLUMN dialer.worker_health.last_error IS 'The dispatcher''s last error (no secrets)';

COMMENT ON COLUMN dialer.worker_health.last_error_at IS 'When it happened';

COMMENT ON COLUMN dialer.worker_health.due_calls IS 'Scheduled calls of enabled providers due now and not yet claimed';

COMMENT ON COLUMN dialer.worker_health.oldest_due_at IS 'The earliest next_attempt_at among them';

COMMENT ON COLUMN dialer.worker_health.lag_seconds IS 'How long the oldest due call has waited (0: none waits); grows when the dispatcher is down, paused or saturated';

CREATE FUNCTION dialer.grant_monitoring(role_name name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.require_role(role_name);
	EXECUTE format('GRANT USAGE ON SCHEMA dialer TO %I', role_name);
	EXECUTE format('GRANT SELECT ON dialer.call_counts, dialer.provider_health, dialer.worker_health TO %I', role_name);
	EXECUTE format('GRANT EXECUTE ON FUNCTION dialer.worker_status(), dialer.provider_status(), '
				   'dialer.is_served(), dialer.dispatchers() TO %I', role_name);
END;
$$;

COMMENT ON FUNCTION dialer.grant_monitoring(name) IS
	'Grants a role read access to the monitoring views (dialer.call_counts, provider_health, worker_health) and dialer.dispatchers(); no table, secret or phone number';

REVOKE ALL ON dialer.call_counts, dialer.provider_health, dialer.worker_health FROM PUBLIC;

REVOKE ALL ON FUNCTION dialer.provider_status(), dialer.dispatchers(), dialer.is_served(),
	dialer.check_served(), dialer.grant_monitoring(name) FROM PUBLIC;

CREATE SCHEMA dialer_admin;

COMMENT ON SCHEMA dialer_admin IS
	'pg_dialer admin API for people and applications: calls, their timeline, stats, campaigns, providers; exposed by its own PostgREST with JWT roles dialer_viewer, dialer_operator, dialer_frontend';

REVOKE ALL ON SCHEMA dialer_admin FROM PUBLIC;

CREATE TABLE dialer.frontend_purposes (
	name				text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	provider			text NOT NULL REFERENCES dialer.providers (name) ON UPDATE CASCADE,
	payload				jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
	min_interval		interval NOT NULL DEFAULT '1 hour' CHECK (min_interval >= '0'),
	enabled				boolean NOT NULL DEFAULT true
);

COMMENT ON TABLE dialer.frontend_purposes IS
	'What application frontends may enqueue through dialer_admin.frontend_enqueue: per purpose (the token''s "purpose" claim), the provider, the payload and how often one caller (the token''s "sub" claim) may ask';

COMMENT ON COLUMN dialer.frontend_purposes.name IS 'Purpose name: the "purpose" claim of the frontend''s token, and the campaign label of its calls';

COMMENT ON COLUMN dialer.frontend_purposes.provider IS 'Provider (dialer.providers) of its calls';

COMMENT ON COLUMN dialer.frontend_purposes.payload IS 'Payload of every call of the purpose (the frontend cannot change it; the caller is added as payload.caller)';

COMMENT ON COLUMN dialer.frontend_purposes.min_interval IS 'One call per caller (sub claim) per this interval, whatever the frontend sends';

COMMENT ON COLUMN dialer.frontend_purposes.enabled IS 'A disabled purpose refuses every request (HTTP 403)';

SELECT pg_catalog.pg_extension_config_dump('dialer.frontend_purposes', '');

CREATE FUNCTION dialer.admin_refuse(http_status int, message text, detail text, hint text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF http_status NOT IN (403, 404, 409, 429) THEN
		RAISE EXCEPTION 'dialer.admin_refuse: unexpected status %', http_status;
	END IF;
	RAISE EXCEPTION USING ERRCODE = 'PT' || http_status, MESSAGE = message,
		DETAIL = coalesce(detail, ''), HINT = coalesce(hint, '');
END;
$$;

COMMENT ON FUNCTION dialer.admin_refuse(int, text, text, text) IS
	'Internal: raises an admin API refusal with SQLSTATE PT403, PT404, PT409 or PT429 (PostgREST answers that HTTP status)';

CREATE FUNCTION dialer.admin_call(call_id bigint)
RETURNS dialer.scheduled_calls
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls;
BEGIN
	IF call_id IS NULL THEN
		PERFORM dialer.raise_bad_argument('id', NULL, 'A call id is required.', 'Pass the id of a call, e.g. ?id=42.', '22004');
	END IF;
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = admin_call.call_id;
	IF NOT FOUND THEN
		PERFORM dialer.admin_refuse(404, format('call %s does not exist', call_id),
			'No call has this id (dialer.cleanup() removes finished calls after a while).',
			'List calls with GET /calls.');
	END IF;
	RETURN v_call;
END;
$$;

COMMENT ON FUNCTION dialer.admin_call(bigint) IS 'Internal: the dialer.scheduled_calls row of an id, or the admin API''s 404 refusal';

CREATE VIEW dialer_admin.calls AS
SELECT c.id, c.status, (c.run_at)::date AS day, c.run_at, c.next_attempt_at, c.to_number,
	   c.provider, c.campaign, c.customer_ref, c.priority, c.attempts, c.max_attempts,
	   c.provider_status, c.last_error, c.created_at, c.updated_at, c.finished_at
  FROM dialer.scheduled_calls c;

COMMENT ON VIEW dialer_admin.calls IS
	'Calls, newest first with order=id.desc; filter with PostgREST operators, e.g. ?status=eq.failed&campaign=eq.reminders&day=eq.2026-05-01&to_number=eq.%2B14155550123&limit=50';

DO $$
DECLARE
	col text;
BEGIN
	FOREACH col IN ARRAY ARRAY['id', 'status', 'run_at', 'next_attempt_at', 'to_number', 'provider',
							   'campaign', 'customer_ref', 'priority', 'attempts', 'max_attempts',
							   'provider_status', 'last_error', 'created_at', 'updated_at', 'finished_at'] LOOP
		EXECUTE format('COMMENT ON COLUMN dialer_admin.calls.%I IS %L', col,
					   col_description('dialer.scheduled_calls'::regclass,
									   (SELECT attnum FROM pg_attribute
										 WHERE attrelid = 'dialer.scheduled_calls'::regclass AND attname = col)));
	END LOOP;
END;
$$;

COMMENT ON COLUMN dialer_admin.calls.day IS 'The day of run_at in the session''s time zone (filter ?day=eq.YYYY-MM-DD)';

CREATE FUNCTION dialer.admin_campaigns()
RETURNS TABLE (name text, description text, provider text, enabled boolean, priority int, schedule text,
			   timezone text, next_run_at timestamptz, last_started_at timestamptz, last_outcome text,
			   last_enqueued int, last_error text, rules jsonb)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
SELECT k.name, k.description, k.provider, k.enabled, k.priority, k.schedule,
	   dialer.campaign_timezone(k.timezone), s.next_run_at,
	   s.last_started_at, s.last_outcome, s.last_enqueued, s.last_error,
	   jsonb_strip_nulls(jsonb_build_object(
			'lookahead_days', k.lookahead_days, 'max_calls_per_day', k.max_calls_per_day,
			'skip_called_within_days', k.skip_called_within_days, 'once_per_day', k.once_per_day,
			'allowed_numbers', k.allowed_numbers, 'max_attempts', k.max_attempts,
			'retry_busy', k.retry_busy, 'retry_no_answer', k.retry_no_answer, 'retry_delay', k.retry_delay,
			'call_window_start', k.call_window_start, 'call_window_end', k.call_window_end))
  FROM dialer.campaigns k
  LEFT JOIN dialer.campaign_schedules s ON s.campaign = k.name
$$;

COMMENT ON FUNCTION dialer.admin_campaigns() IS
	'Internal: the rows of the view dialer_admin.campaigns (campaigns with rules, schedule, next and latest run)';

CREATE VIEW dialer_admin.campaigns AS
SELECT * FROM dialer.admin_campaigns();

COMMENT ON VIEW dialer_admin.campaigns IS 'Campaigns with their rules, schedule, next run and latest scheduled run';

COMMENT ON COLUMN dialer_admin.campaigns.name IS 'Campaign name';

COMMENT ON COLUMN dialer_admin.campaigns.description IS 'Free text for people';

COMMENT ON COLUMN dialer_admin.campaigns.provider IS 'Provider of its calls';

COMMENT ON COLUMN dialer_admin.campaigns.enabled IS 'false: paused, enqueues nothing (set_campaign_enabled)';

COMMENT ON COLUMN dialer_admin.campaigns.priority IS 'Priority of its calls';

COMMENT ON COLUMN dialer_admin.campaigns.schedule IS 'When it runs (NULL: only when run by hand)';

COMMENT ON COLUMN dialer_admin.campaigns.timezone IS 'Its time zone (its own, else dialer.default_timezone)';

COMMENT ON COLUMN dialer_admin.campaigns.next_run_at IS 'Next scheduled run (NULL: not scheduled)';

COMMENT ON COLUMN dialer_admin.campaigns.last_started_at IS 'When its latest scheduled run started';

COMMENT ON COLUMN dialer_admin.campaigns.last_outcome IS 'Outcome of its latest scheduled run: running, ok, error or disabled';

COMMENT ON COLUMN dialer_admin.campaigns.last_enqueued IS 'Calls its latest scheduled run enqueued';

COMMENT ON COLUMN dialer_admin.campaigns.last_error IS 'Error of its latest scheduled run, if it failed';

COMMENT ON COLUMN dialer_admin.campaigns.rules IS 'Its rules (lookahead_days, max_calls_per_day, skip_called_within_days, once_per_day, allowed_numbers, max_attempts, retries, calling window); unset ones are left out';

CREATE VIEW dialer_admin.provider_health AS
SELECT p.name, p.kind, p.enabled, p.max_concurrency, p.calls_per_second,
	   q.in_progress, q.due, q.waiting, q.unknown,
	   h.attempts_last_hour, h.errors_last_hour, h.last_attempt_at, h.last_error
  FROM dialer.providers p
  CROSS JOIN LATERAL (
		SELECT count(*) FILTER (WHERE c.status IN ('dispatching', 'dialing')) AS in_progress,
			   count(*) FILTER (WHERE c.status = 'scheduled' AND c.next_attempt_at <= now()) AS due,
			   count(*) FILTER (WHERE c.status = 'scheduled' AND c.next_attempt_at > now()) AS waiting,
			   count(*) FILTER (WHERE c.status = 'unknown') AS unknown
		  FROM dialer.scheduled_calls c
		 WHERE c.provider = p.name AND c.status IN ('scheduled', 'dispatching', 'dialing', 'unknown')) q
  CROSS JOIN LATERAL (
		SELECT count(*) AS attempts_last_hour,
			   count(*) FILTER (WHERE a.error_code IS NOT NULL OR a.http_status IS NULL
								OR a.http_status >= 400) AS errors_last_hour,
			   max(a.requested_at) AS last_attempt_at,
			   (array_agg(coalesce(a.error_code || ': ', '') || a.error_message ORDER BY a.requested_at DESC)
					FILTER (WHERE a.error_message IS NOT NULL))[1] AS last_error
		  FROM dialer.scheduled_calls c
		  JOIN dialer.call_attempts a ON a.call_id = c.id
		 WHERE c.provider = p.name AND c.updated_at > now() - interval '1 hour'
		   AND a.requested_at > now() - interval '1 hour') h;

COMMENT ON VIEW dialer_admin.provider_health IS 'Per provider: paused or not, its limits, its calls in progress and waiting, and its requests and errors of the last hour';

COMMENT ON COLUMN dialer_admin.provider_health.name IS 'Provider name';

COMMENT ON COLUMN dialer_admin.provider_health.kind IS 'twilio, backend or voice_api';

COMMENT ON COLUMN dialer_admin.provider_health.enabled IS 'false: paused, its calls wait (set_provider_enabled)';

COMMENT ON COLUMN dialer_admin.provider_health.max_concurrency IS 'Calls in progress at once it allows';

COMMENT ON COLUMN dialer_admin.provider_health.calls_per_second IS 'Requests per second sent to it';

COMMENT ON COLUMN dialer_admin.provider_health.in_progress IS 'Its calls dispatching or dialing now';

COMMENT ON COLUMN dialer_admin.provider_health.due IS 'Its scheduled calls already due';

COMMENT ON COLUMN dialer_admin.provider_health.waiting IS 'Its scheduled calls due later';

COMMENT ON COLUMN dialer_admin.provider_health.unknown IS 'Its calls whose outcome is unknown (never re-sent by themselves)';

COMMENT ON COLUMN dialer_admin.provider_health.attempts_last_hour IS 'Requests made to it in the last hour';

COMMENT ON COLUMN dialer_admin.provider_health.errors_last_hour IS 'Of those, the ones answered with an error or not answered';

COMMENT ON COLUMN dialer_admin.provider_health.last_attempt_at IS 'When it was last sent a request (within the last hour)';

COMMENT ON COLUMN dialer_admin.provider_health.last_error IS 'Its latest error of the last hour (code: message)';

CREATE FUNCTION dialer_admin.call(id bigint)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.admin_call(call.id);
	RETURN dialer.call_details(call.id);
END;
$$;

COMMENT ON FUNCTION dialer_admin.call(bigint) IS
	'One call with its attempts and events: {call, attempts, events}. GET /rpc/call?id=42. 404 for an unknown id.';

CREATE FUNCTION dialer_admin.stats(day date DEFAULT current_date)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	RETURN dialer.stats(coalesce(day, current_date));
END;
$$;

COMMENT ON FUNCTION dialer_admin.stats(date) IS
	'Counts of a day''s calls (scheduled, completed, failed, not_reached, pending, not_called, unknown), per campaign (by_campaign), the backlog and the worker. GET /rpc/stats?day=2026-05-01 (default today).';

CREATE FUNCTION dialer_admin.pending_customers(campaign text, days int DEFAULT NULL)
RETURNS TABLE (customer_ref text, phone text, due_at timestamptz, included boolean, reason text, detail text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM dialer.campaigns k WHERE k.name = pending_customers.campaign) THEN
		PERFORM dialer.admin_refuse(404, format('campaign %s does not exist', quote_literal(coalesce(campaign, 'NULL'))),
			'No row of dialer.campaigns has this name.', 'List campaigns with GET /campaigns.');
	END IF;
	RETURN QUERY
		SELECT c.customer_ref, c.phone, c.due_at, c.included, c.reason, c.detail
		  FROM dialer.campaign_candidates(pending_customers.campaign, days) c;
END;
$$;

COMMENT ON FUNCTION dialer_admin.pending_customers(text, int) IS
	'The candidates of a campaign: the ones a run would call now (included) first, then every one left out with its reason (do_not_call, call_pending, over_daily_cap, ...) and a detail. GET /rpc/pending_customers?campaign=reminders. The source is read with the extension owner''s rights.';

CREATE FUNCTION dialer_admin.enqueue_call(
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
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_id bigint;
BEGIN
	v_id := dialer.enqueue_call(to_number, coalesce(run_at, now()), provider, payload, campaign,
								dedupe_key, priority, max_attempts, timezone, deadline);
	RETURN jsonb_build_object('id', v_id,
		'status', (SELECT c.status FROM dialer.scheduled_calls c WHERE c.id = v_id));
END;
$$;

COMMENT ON FUNCTION dialer_admin.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz) IS
	'Schedules a call: POST /rpc/enqueue_call {"to_number": "+14155550123", "provider": "default", "payload": {"message": "..."}}; answers {id, status} (status skipped for a do-not-call number; the stored call for a repeated dedupe_key). 400 with the reason for bad input.';

CREATE FUNCTION dialer_admin.cancel_call(id bigint)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls := dialer.admin_call(cancel_call.id);
BEGIN
	IF NOT dialer.cancel_call(v_call.id) THEN
		v_call := dialer.admin_call(v_call.id);
		PERFORM dialer.admin_refuse(409, format('call %s is %s: only a scheduled call can be canceled', v_call.id, v_call.status),
			'A call already claimed by the dispatcher or finished cannot be taken back.',
			'See its timeline: GET /rpc/call?id=' || v_call.id);
	END IF;
	RETURN jsonb_build_object('id', v_call.id, 'status', 'canceled');
END;
$$;

COMMENT ON FUNCTION dialer_admin.cancel_call(bigint) IS
	'Cancels a scheduled call: POST /rpc/cancel_call {"id": 42} answers {id, status: canceled}; 409 when the call is no longer scheduled, 404 for an unknown id.';

CREATE FUNCTION dialer_admin.retry_call(id bigint)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls := dialer.admin_call(retry_call.id);
BEGIN
	IF NOT dialer.retry_call(v_call.id) THEN
		v_call := dialer.admin_call(v_call.id);
		PERFORM dialer.admin_refuse(409, format('call %s is %s: only a failed, unknown or expired call can be retried', v_call.id, v_call.status),
			'Retrying starts a new run of the call; a call still in the queue or finished otherwise keeps its state.',
			'Enqueue a new call instead: POST /rpc/enqueue_call.');
	END IF;
	RETURN jsonb_build_object('id', v_call.id, 'status', 'scheduled');
END;
$$;

COMMENT ON FUNCTION dialer_admin.retry_call(bigint) IS
	'Requeues a failed, unknown or expired call (due now, a fresh run of attempts): POST /rpc/retry_call {"id": 42}; 409 for any other status, 404 for an unknown id.';

CREATE FUNCTION dialer_admin.run_campaign(campaign text, max_calls int DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM dialer.campaigns k WHERE k.name = run_campaign.campaign) THEN
		PERFORM dialer.admin_refuse(404, format('campaign %s does not exist', quote_literal(coalesce(campaign, 'NULL'))),
			'No row of dialer.campaigns has this name.', 'List campaigns with GET /campaigns.');
	END IF;
	RETURN jsonb_build_object('campaign', campaign,
							  'enqueued', dialer.run_campaign(run_campaign.campaign, max_calls));
END;
$$;

COMMENT ON FUNCTION dialer_admin.run_campaign(text, int) IS
	'Runs a campaign now ("trigger now"): enqueues its pending customers (at most max_calls) and answers {campaign, enqueued}. POST /rpc/run_campaign {"campaign": "reminders"}.';

CREATE FUNCTION dialer_admin.set_campaign_enabled(campaign text, enabled boolean)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF enabled IS NULL THEN
		PERFORM dialer.raise_bad_argument('enabled', NULL, 'enabled is true (resume) or false (pause).', 'Pass "enabled": false to pause.', '22004');
	END IF;
	UPDATE dialer.campaigns k SET enabled = set_campaign_enabled.enabled, updated_at = now()
	 WHERE k.name = set_campaign_enabled.campaign;
	IF NOT FOUND THEN
		PERFORM dialer.admin_refuse(404, format('campaign %s does not exist', quote_literal(coalesce(campaign, 'NULL'))),
			'No row of dialer.campaigns has this name.', 'List campaigns with GET /campaigns.');
	END IF;
	RETURN jsonb_build_object('campaign', campaign, 'enabled', enabled);
END;
$$;

COMMENT ON FUNCTION dialer_admin.set_campaign_enabled(text, boolean) IS
	'Pauses (enabled false) or resumes (true) a campaign: POST /rpc/set_campaign_enabled {"campaign": "reminders", "enabled": false}; 404 for an unknown campaign.';

CREATE FUNCTION dialer_admin.set_provider_enabled(provider text, enabled boolean)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF enabled IS NULL THEN
		PERFORM dialer.raise_bad_argument('enabled', NULL, 'enabled is true (resume) or false (pause).', 'Pass "enabled": false to pause.', '22004');
	END IF;
	UPDATE dialer.providers p SET enabled = set_provider_enabled.enabled
	 WHERE p.name = set_provider_enabled.provider;
	IF NOT FOUND THEN
		PERFORM dialer.admin_refuse(404, format('provider %s does not exist', quote_literal(coalesce(provider, 'NULL'))),
			'No row of dialer.providers has this name.', 'List providers with GET /provider_health.');
	END IF;
	RETURN jsonb_build_object('provider', provider, 'enabled', enabled);
END;
$$;

COMMENT ON FUNCTION dialer_admin.set_provider_enabled(text, boolean) IS
	'Pauses (enabled false: its calls wait in the queue) or resumes (true) a provider: POST /rpc/set_provider_enabled {"provider": "default", "enabled": false}; 404 for an unknown provider.';

CREATE FUNCTION dialer_admin.cleanup(older_than interval DEFAULT '30 days')
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	RETURN jsonb_build_object('removed', dialer.cleanup(coalesce(older_than, '30 days')));
END;
$$;

COMMENT ON FUNCTION dialer_admin.cleanup(interval) IS
	'Deletes calls that finished more than older_than ago (default 30 days), with their attempts and events: POST /rpc/cleanup {"older_than": "90 days"} answers {removed}.';

CREATE FUNCTION dialer_admin.frontend_enqueue(to_number text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	v_claims	jsonb := coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
	v_sub		text := v_claims->>'sub';
	v_purpose	dialer.frontend_purposes;
	v_prev		dialer.scheduled_calls;
	v_id		bigint;
BEGIN
	IF v_sub IS NULL OR btrim(v_sub) = '' OR length(v_sub) > 200 THEN
		PERFORM dialer.admin_refuse(403, 'the token names no caller',
			'A frontend token must carry the signed-in user in its "sub" claim (at most 200 characters).',
			'Issue the token with sub set to the user''s id.');
	END IF;
	SELECT * INTO v_purpose FROM dialer.frontend_purposes f WHERE f.name = v_claims->>'purpose';
	IF NOT FOUND OR NOT v_purpose.enabled THEN
		PERFORM dialer.admin_refuse(403, format('purpose %s is not open to frontends',
												coalesce(quote_literal(v_claims->>'purpose'), 'NULL')),
			'The token''s "purpose" claim must name an enabled row of dialer.frontend_purposes.',
			'Ask an operator to add the purpose, or use a token issued for it.');
	END IF;

	PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.frontend'), hashtext(v_purpose.name || ':' || v_sub));
	SELECT * INTO v_prev FROM dialer.scheduled_calls c
	 WHERE c.campaign = v_purpose.name AND c.customer_ref = v_sub
	   AND c.created_at > statement_timestamp() - v_purpose.min_interval
	 ORDER BY c.created_at DESC LIMIT 1;
	IF FOUND THEN
		PERFORM dialer.admin_refuse(429, format('caller %s already asked for a %s call', quote_literal(v_sub), v_purpose.name),
			format('Call %s was requested at %s; one call per caller every %s.', v_prev.id, v_prev.created_at, v_purpose.min_interval),
			format('Try again after %s.', v_prev.created_at + v_purpose.min_interval));
	END IF;

	v_id := dialer.enqueue_call(to_number => to_number, run_at => statement_timestamp(),
								provider => v_purpose.provider,
								payload => v_purpose.payload || jsonb_build_object('caller', v_sub),
								campaign => v_purpose.name);
	UPDATE dialer.scheduled_calls c SET customer_ref = v_sub
	 WHERE c.id = v_id;
	RETURN jsonb_build_object('id', v_id,
		'status', (SELECT c.status FROM dialer.scheduled_calls c WHERE c.id = v_id));
END;
$$;

COMMENT ON FUNCTION dialer_admin.frontend_enqueue(text) IS
	'For application frontends: asks for the call of the token''s purpose for the signed-in user (the token''s sub). POST /rpc/frontend_enqueue {"to_number": "+14155550123"}; 429 when that user already asked within the purpose''s min_interval, 403 for a token without sub or purpose.';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer_admin FROM PUBLIC;

REVOKE ALL ON ALL TABLES IN SCHEMA dialer_admin FROM PUBLIC;

REVOKE ALL ON TABLE dialer.frontend_purposes FROM PUBLIC;

REVOKE ALL ON FUNCTION dialer.admin_refuse(int, text, text, text), dialer.admin_call(bigint), dialer.admin_campaigns() FROM PUBLIC;

CREATE OR REPLACE FUNCTION dialer.grant_usage(role_name name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.require_role(role_name);
	EXECUTE format('GRANT USAGE ON SCHEMA dialer TO %I', role_name);
	EXECUTE format('GRANT SELECT ON dialer.scheduled_calls, dialer.call_attempts, dialer.call_events, '
				   'dialer.campaigns, dialer.do_not_call TO %I', role_name);
	EXECUTE format('GRANT SELECT (name, kind, base_url, account_sid, api_key_sid, from_number, twiml_url, '
				   'status_callback_url, status_callback_call_id, allowed_hosts, ring_timeout, machine_detection, max_concurrency, '
				   'calls_per_second, retry_busy, retry_no_answer, retry_delay, enabled, created_at, updated_at) '
				   'ON dialer.providers TO %I', role_name);
	EXECUTE format('GRANT EXECUTE ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz), '
				   'dialer.enqueue_calls(jsonb, boolean), dialer.cancel_call(bigint), dialer.retry_call(bigint), dialer.call_details(bigint), '
				   'dialer.stats(date), dialer.worker_status() TO %I', role_name);
END;
$$;

-- the schema's comment (0.1.0 had none), and nothing granted to PUBLIC on what 0.2.0 added
COMMENT ON SCHEMA dialer IS
	'pg_dialer: the outbound call queue (scheduled_calls), its log (call_attempts, call_events), providers, campaigns, do_not_call, and the SQL API (enqueue_call, cancel_call, stats, ...)';
REVOKE ALL ON TABLE dialer.pending_callbacks FROM PUBLIC;
REVOKE ALL ON FUNCTION dialer.apply_pending_callbacks(), dialer.apply_search(bigint, jsonb, integer, text, text),
	dialer.call_refusal(text, timestamptz, text, jsonb, text, text, integer, integer, text, timestamptz, text, text[], text),
	dialer.call_rule(text, timestamptz, text, jsonb, text, text, integer, integer, text, timestamptz, text, text[], text),
	dialer.claim_searches(text, integer), dialer.enqueue_calls(jsonb, boolean), dialer.lock_provider_call_id(text),
	dialer.reevaluate_parked_calls(bigint[], text), dialer.release_claims(bigint[], integer[]),
	dialer.search_due_at(timestamptz, timestamptz, integer), dialer.twilio_apply_fields(bigint, jsonb, bigint, text),
	dialer.twilio_url_legacy_query(text), dialer.twilio_url_normalized(text), dialer.url_percent_encode(text, text)
	FROM PUBLIC;
