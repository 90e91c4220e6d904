/*
 * pg_dialer 0.1.0: tables.
 *
 * The queue and the record of every call live in ordinary logged tables, so a call
 * survives a crash exactly as the application's own data does.  This file is the first
 * part of sql/pg_dialer--0.1.0.sql (the Makefile concatenates sql/parts/ in order).
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_dialer" to load this file. \quit

/*
 * A phone number in E.164 form: "+", then 8 to 15 digits, the first not 0.  A
 * domain rather than a table CHECK, so the pattern is tested when a number is
 * written, not again on every update of the row.
 */
CREATE DOMAIN dialer.e164 AS text
	CONSTRAINT e164_format CHECK (VALUE ~ '^\+[1-9][0-9]{7,14}$');
COMMENT ON DOMAIN dialer.e164 IS 'A phone number in E.164 form: + then 8 to 15 digits, the first not 0';

/*
 * Providers: where calls are sent.  Secret columns (auth_token, api_key_secret,
 * bearer_token, webhook_secret) are readable only by the extension owner: see the
 * column-level grants at the end of the install script.
 */
CREATE TABLE dialer.providers (
	name				text PRIMARY KEY
						CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	kind				text NOT NULL
						CHECK (kind IN ('twilio', 'backend', 'voice_api')),
	base_url			text NOT NULL CHECK (base_url ~ '^https?://[^/?#]+'),
	account_sid			text,
	auth_token			text,
	api_key_sid			text,
	api_key_secret		text,
	bearer_token		text,
	webhook_secret		text,
	from_number			dialer.e164,
	twiml_url			text,
	status_callback_url	text,
	allowed_hosts		text[] NOT NULL DEFAULT '{}',
	ring_timeout		int CHECK (ring_timeout BETWEEN 5 AND 600),
	machine_detection	text CHECK (machine_detection IN ('Enable', 'DetectMessageEnd')),
	max_concurrency		int DEFAULT 10 CHECK (max_concurrency BETWEEN 1 AND 1000000),
	calls_per_second	numeric NOT NULL CHECK (calls_per_second > 0 AND calls_per_second <= 100000),
	retry_busy			boolean NOT NULL DEFAULT false,
	retry_no_answer		boolean NOT NULL DEFAULT false,
	retry_delay			interval NOT NULL DEFAULT '15 minutes' CHECK (retry_delay >= '0'),
	enabled				boolean NOT NULL DEFAULT true,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT twilio_needs_account CHECK (kind <> 'twilio' OR account_sid IS NOT NULL)
);

COMMENT ON TABLE dialer.providers IS
	'Named provider configurations (kind twilio | backend | voice_api). Secret columns are readable only by the extension owner.';
COMMENT ON COLUMN dialer.providers.kind IS 'twilio (Twilio REST API), backend (customer AI-call backend: /call/start, /call/brief) or voice_api (generic POST /calls)';
COMMENT ON COLUMN dialer.providers.base_url IS 'Scheme and host (and optional path prefix) requests are sent to, e.g. https://api.twilio.com';
COMMENT ON COLUMN dialer.providers.account_sid IS 'Twilio Account SID (the path of every request)';
COMMENT ON COLUMN dialer.providers.auth_token IS 'Secret. Twilio auth token: HTTP Basic password and the key of X-Twilio-Signature';
COMMENT ON COLUMN dialer.providers.api_key_sid IS 'Twilio API key SID; when set, HTTP Basic uses it and api_key_secret instead of the account credentials';
COMMENT ON COLUMN dialer.providers.api_key_secret IS 'Secret. Twilio API key secret';
COMMENT ON COLUMN dialer.providers.bearer_token IS 'Secret. Bearer token sent to backend and voice_api providers';
COMMENT ON COLUMN dialer.providers.webhook_secret IS 'Secret. HMAC-SHA256 key of JSON webhooks from backend and voice_api providers';
COMMENT ON COLUMN dialer.providers.from_number IS 'Caller id (E.164) used when a call names none';
COMMENT ON COLUMN dialer.providers.twiml_url IS 'Twilio: TwiML URL used when the call payload has neither url nor message';
COMMENT ON COLUMN dialer.providers.status_callback_url IS 'Public URL the provider posts call status to; the call id is added to its query string';
COMMENT ON COLUMN dialer.providers.allowed_hosts IS 'backend: hosts a per-call base_url (payload.base_url) may name';
COMMENT ON COLUMN dialer.providers.ring_timeout IS 'Twilio Timeout: seconds to let the phone ring';
COMMENT ON COLUMN dialer.providers.machine_detection IS 'Twilio MachineDetection (Enable or DetectMessageEnd), or NULL for none';
COMMENT ON COLUMN dialer.providers.max_concurrency IS 'Calls of this provider in progress at once, counted from dispatch until the final status (or dialer.reconcile_after without news); NULL: no limit beyond dialer.max_concurrency requests in flight';
COMMENT ON COLUMN dialer.providers.calls_per_second IS 'Requests per second sent to this provider; when omitted, 1 for twilio (a new Twilio account''s limit) and 10 for the other kinds';
COMMENT ON COLUMN dialer.providers.retry_busy IS 'Re-schedule busy calls after retry_delay, up to max_attempts';
COMMENT ON COLUMN dialer.providers.retry_no_answer IS 'Re-schedule unanswered calls after retry_delay, up to max_attempts';
COMMENT ON COLUMN dialer.providers.enabled IS 'A disabled provider''s calls stay scheduled until it is enabled again';

/*
 * A provider's calls-per-second default depends on its kind: Twilio accounts
 * start at 1 call per second.
 */
CREATE FUNCTION dialer.providers_defaults()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NEW.calls_per_second IS NULL THEN
		NEW.calls_per_second := CASE WHEN NEW.kind = 'twilio' THEN 1 ELSE 10 END;
	END IF;
	NEW.updated_at := now();
	RETURN NEW;
END;
$$;
COMMENT ON FUNCTION dialer.providers_defaults() IS
	'Trigger: fills calls_per_second by kind (twilio 1, others 10) and stamps updated_at';
CREATE TRIGGER providers_defaults BEFORE INSERT OR UPDATE ON dialer.providers
	FOR EACH ROW EXECUTE FUNCTION dialer.providers_defaults();

/*
 * Campaigns: named recurring sources of calls.  Rules are data; the functions that read
 * them (pending_customers, campaign_candidates, run_campaign, schedule_campaign) and the
 * source contract are in sql/parts/40_campaigns.sql.  A trigger there validates each row.
 */
CREATE TABLE dialer.campaigns (
	name				text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	description			text,
	source				text NOT NULL CHECK (length(source) BETWEEN 1 AND 500),
	provider			text NOT NULL DEFAULT 'default'
						REFERENCES dialer.providers (name) ON UPDATE CASCADE,
	payload				jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
	priority			int NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
	lookahead_days		int NOT NULL DEFAULT 1 CHECK (lookahead_days BETWEEN 0 AND 366),
	max_calls_per_day	int CHECK (max_calls_per_day > 0),
	skip_called_within_days int CHECK (skip_called_within_days BETWEEN 0 AND 3660),
	once_per_day		boolean NOT NULL DEFAULT true,
	allowed_numbers		text[] CHECK (allowed_numbers IS NULL OR
									  (cardinality(allowed_numbers) > 0
									   AND array_position(allowed_numbers, NULL) IS NULL
									   AND array_to_string(allowed_numbers, ',')
										   ~ '^\+[1-9][0-9]{7,14}(,\+[1-9][0-9]{7,14})*$')),
	max_attempts		int CHECK (max_attempts BETWEEN 1 AND 20),
	retry_busy			boolean,
	retry_no_answer		boolean,
	retry_delay			interval CHECK (retry_delay >= '0'),
	call_window_start	time,
	call_window_end		time,
	timezone			text,
	schedule			text CHECK (length(schedule) <= 200),
	schedule_since		timestamptz,
	scheduled_by		name,
	enabled				boolean NOT NULL DEFAULT true,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT window_order CHECK (call_window_start IS NULL OR call_window_end IS NULL
								   OR call_window_start < call_window_end),
	CONSTRAINT schedule_complete CHECK ((schedule IS NULL) = (schedule_since IS NULL)
										AND (schedule IS NULL) = (scheduled_by IS NULL))
);

COMMENT ON TABLE dialer.campaigns IS
	'Named recurring sources of calls: a source of candidates (view, table or set-returning function), a provider, and the rules pending_customers() and run_campaign() apply. Scheduled with schedule_campaign().';
COMMENT ON COLUMN dialer.campaigns.name IS 'Campaign name (letters, digits, _ . -; at most 63): the campaign of the calls it enqueues';
COMMENT ON COLUMN dialer.campaigns.description IS 'Free text for people';
COMMENT ON COLUMN dialer.campaigns.source IS
	'View, table or set-returning function (written ''schema.f()'', no arguments) of candidates: columns customer_ref and phone, optionally payload (jsonb object), timezone (IANA) and due_at (timestamptz, timestamp or date). Stored schema-qualified.';
COMMENT ON COLUMN dialer.campaigns.provider IS 'Provider (dialer.providers) of the calls it enqueues';
COMMENT ON COLUMN dialer.campaigns.payload IS 'Payload of every call; a candidate''s own payload keys override it';
COMMENT ON COLUMN dialer.campaigns.priority IS 'Priority of the calls it enqueues (-1000 to 1000)';
COMMENT ON COLUMN dialer.campaigns.lookahead_days IS 'A candidate with a due_at is pending when its local date is between today and today + lookahead_days (in the campaign''s time zone)';
COMMENT ON COLUMN dialer.campaigns.max_calls_per_day IS 'At most this many calls of the campaign due per local day (canceled and skipped calls do not count; NULL: no limit)';
COMMENT ON COLUMN dialer.campaigns.skip_called_within_days IS 'Skip a number that any call reached the provider for within this many days (24-hour periods before now; NULL or 0: no such rule)';
COMMENT ON COLUMN dialer.campaigns.once_per_day IS 'Never schedule the same customer twice on one local day';
COMMENT ON COLUMN dialer.campaigns.allowed_numbers IS 'Pilot allow-list: when set, only these numbers are called, every other candidate is left out (reason not_allowed). NULL: everyone';
COMMENT ON COLUMN dialer.campaigns.max_attempts IS 'max_attempts of the calls it enqueues (NULL: dialer.default_max_attempts)';
COMMENT ON COLUMN dialer.campaigns.retry_busy IS 'Re-schedule busy calls of this campaign after retry_delay, up to max_attempts (NULL: the provider''s setting)';
COMMENT ON COLUMN dialer.campaigns.retry_no_answer IS 'Re-schedule unanswered calls of this campaign after retry_delay, up to max_attempts (NULL: the provider''s setting)';
COMMENT ON COLUMN dialer.campaigns.retry_delay IS 'Delay before a busy or unanswered call is retried (NULL: the provider''s retry_delay)';
COMMENT ON COLUMN dialer.campaigns.call_window_start IS 'Local time calls may start (NULL: dialer.call_window_start)';
COMMENT ON COLUMN dialer.campaigns.call_window_end IS 'Local time calls must have started by (NULL: dialer.call_window_end)';
COMMENT ON COLUMN dialer.campaigns.timezone IS 'IANA time zone of the campaign: its schedule, its "today", and the calling window of candidates without their own (NULL: dialer.default_timezone)';
COMMENT ON COLUMN dialer.campaigns.schedule IS 'When it runs, in its own time zone: ''daily HH:MM'', @hourly/@daily/@weekly/@monthly/@yearly, or a 5-field cron expression. Set by schedule_campaign()';
COMMENT ON COLUMN dialer.campaigns.schedule_since IS 'When the schedule was set: only runs due after it happen';
COMMENT ON COLUMN dialer.campaigns.scheduled_by IS 'Role that scheduled it: scheduled runs read the source with this role''s privileges';
COMMENT ON COLUMN dialer.campaigns.enabled IS 'A disabled campaign enqueues nothing (reason campaign_disabled) and its scheduled runs are recorded as disabled';

/*
 * The queue, and the record of every call.  A row is never deleted except by
 * dialer.cleanup(), and only once finished.
 */
CREATE TABLE dialer.scheduled_calls (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	status				text NOT NULL DEFAULT 'scheduled'
						CHECK (status IN ('scheduled', 'dispatching', 'dialing', 'completed',
										  'no_answer', 'busy', 'failed', 'canceled',
										  'skipped', 'expired', 'unknown')),
	run_at				timestamptz NOT NULL,
	next_attempt_at		timestamptz NOT NULL,
	to_number			dialer.e164 NOT NULL,
	from_number			dialer.e164,
	provider			text NOT NULL REFERENCES dialer.providers (name) ON UPDATE CASCADE,
	mode				text,
	payload				jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
	campaign			text,
	customer_ref		text,
	dedupe_key			text UNIQUE CHECK (length(dedupe_key) <= 200),
	priority			int NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
	attempts			int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	attempts_base		int NOT NULL DEFAULT 0 CHECK (attempts_base >= 0 AND attempts_base <= attempts),
	max_attempts		int NOT NULL CHECK (max_attempts BETWEEN 1 AND 20),
	timezone			text,
	deadline			timestamptz,
	provider_call_id	text,
	provider_status		text,
	last_error			text,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now(),
	finished_at			timestamptz,
	reconciled_at		timestamptz,
	CONSTRAINT deadline_after_run_at CHECK (deadline IS NULL OR deadline > run_at)
);

COMMENT ON TABLE dialer.scheduled_calls IS
	'The call queue and the record of every call. Enqueue with dialer.enqueue_call(); the worker claims due rows.';
COMMENT ON COLUMN dialer.scheduled_calls.status IS
	'scheduled, dispatching (claimed, request may be in flight), dialing (provider accepted), completed, no_answer, busy, failed, canceled, skipped, expired, unknown (outcome not known: never re-sent automatically)';
COMMENT ON COLUMN dialer.scheduled_calls.run_at IS 'When the call was asked for';
COMMENT ON COLUMN dialer.scheduled_calls.next_attempt_at IS 'When the call is next due: run_at, then the retry or calling-window time';
COMMENT ON COLUMN dialer.scheduled_calls.mode IS 'backend providers: DIRECT or BRIEF_START';
COMMENT ON COLUMN dialer.scheduled_calls.campaign IS 'Campaign name (dialer.campaigns) or a free label for ad hoc calls';
COMMENT ON COLUMN dialer.scheduled_calls.customer_ref IS 'The application''s reference of the person called (campaign candidates)';
COMMENT ON COLUMN dialer.scheduled_calls.dedupe_key IS 'At most one call per key: enqueue_call returns the existing id for a key already stored';
COMMENT ON COLUMN dialer.scheduled_calls.priority IS 'Higher first among due calls (-1000 to 1000)';
COMMENT ON COLUMN dialer.scheduled_calls.attempts IS 'Requests made to the provider so far (all runs)';
COMMENT ON COLUMN dialer.scheduled_calls.attempts_base IS 'Value of attempts when the current run began (retry_call starts a new run)';
COMMENT ON COLUMN dialer.scheduled_calls.max_attempts IS 'Requests allowed in one run: a run ends failed once attempts - attempts_base reaches it';
COMMENT ON COLUMN dialer.scheduled_calls.timezone IS 'Recipient''s IANA time zone for the calling window (NULL: campaign''s, else dialer.default_timezone)';
COMMENT ON COLUMN dialer.scheduled_calls.deadline IS 'A call not started by then becomes expired';
COMMENT ON COLUMN dialer.scheduled_calls.provider_call_id IS 'The provider''s id of the call (Twilio CallSid)';
COMMENT ON COLUMN dialer.scheduled_calls.finished_at IS 'When the call reached a final status';
COMMENT ON COLUMN dialer.scheduled_calls.updated_at IS 'Last change or news of the call (a call in progress without news for dialer.reconcile_after no longer counts against max_concurrency)';
COMMENT ON COLUMN dialer.scheduled_calls.reconciled_at IS 'When the call was last looked up at its provider (reconciliation); a lookup is not news';

-- The claim: due calls of one provider, highest priority then earliest first.
CREATE INDEX scheduled_calls_claim_idx ON dialer.scheduled_calls
	(provider, priority DESC, next_attempt_at) WHERE status = 'scheduled';
-- The worker's next wake-up time: the earliest next_attempt_at per provider.
CREATE INDEX scheduled_calls_next_idx ON dialer.scheduled_calls
	(provider, next_attempt_at) WHERE status = 'scheduled';
-- Calls in progress or unresolved, by last news: concurrency accounting,
-- reconciliation with the provider, crash recovery.
CREATE INDEX scheduled_calls_active_idx ON dialer.scheduled_calls
	(provider, updated_at) WHERE status IN ('dispatching', 'dialing', 'unknown');
-- The stats of a day, per campaign.
CREATE INDEX scheduled_calls_run_at_idx ON dialer.scheduled_calls (run_at);
CREATE INDEX scheduled_calls_to_number_idx ON dialer.scheduled_calls (to_number, run_at);
CREATE INDEX scheduled_calls_provider_call_id_idx ON dialer.scheduled_calls (provider_call_id)
	WHERE provider_call_id IS NOT NULL;
CREATE INDEX scheduled_calls_finished_idx ON dialer.scheduled_calls (finished_at)
	WHERE finished_at IS NOT NULL;

/*
 * One row per request made to a provider: the call log.
 */
CREATE TABLE dialer.call_attempts (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id				bigint NOT NULL REFERENCES dialer.scheduled_calls (id) ON DELETE CASCADE,
	attempt				int NOT NULL CHECK (attempt >= 1),
	requested_at		timestamptz NOT NULL,
	responded_at		timestamptz,
	http_status			int,
	provider_call_id	text,
	provider_status		text,
	duration_seconds	int,
	answered_by			text,
	sip_response_code	int,
	recording_url		text,
	transcript			text,
	error_code			text,
	error_message		text,
	more_info			text,
	idempotency_key		text,
	UNIQUE (call_id, attempt)
) WITH (fillfactor = 85);		-- room for HOT updates: every attempt is updated by its outcome and callbacks

COMMENT ON TABLE dialer.call_attempts IS 'One row per request made to a provider (the call log)';
COMMENT ON COLUMN dialer.call_attempts.http_status IS 'HTTP status of the provider''s answer (NULL: no answer: timeout, reset, refused)';
COMMENT ON COLUMN dialer.call_attempts.provider_status IS 'Last status the provider reported for this attempt';
COMMENT ON COLUMN dialer.call_attempts.error_code IS 'Provider error code (Twilio code), or a transport error such as timeout';
COMMENT ON COLUMN dialer.call_attempts.more_info IS 'Twilio more_info URL of the error';
COMMENT ON COLUMN dialer.call_attempts.idempotency_key IS 'Idempotency-Key header sent to backend providers (same for every retry of this attempt)';
CREATE INDEX call_attempts_provider_call_id_idx ON dialer.call_attempts (provider_call_id)
	WHERE provider_call_id IS NOT NULL;

/*
 * Append-only history of every call: each state change and notable event.
 */
CREATE TABLE dialer.call_events (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id				bigint NOT NULL REFERENCES dialer.scheduled_calls (id) ON DELETE CASCADE,
	at					timestamptz NOT NULL DEFAULT clock_timestamp(),
	event				text NOT NULL,
	from_status			text,
	to_status			text,
	detail				jsonb NOT NULL DEFAULT '{}'
);

COMMENT ON TABLE dialer.call_events IS 'Append-only history of every call: state changes and notable events. Rows go only with their call (dialer.cleanup)';
COMMENT ON COLUMN dialer.call_events.event IS 'What happened: enqueued, skipped, claimed, accepted, retry_scheduled, failed, canceled, requeued, window_wait, expired, unknown, callback, ...';
COMMENT ON COLUMN dialer.call_events.detail IS 'Details of the event (never secrets)';
CREATE INDEX call_events_call_id_idx ON dialer.call_events (call_id, id);

/*
 * call_events is append-only: no UPDATE, no TRUNCATE, and DELETE only through the
 * ON DELETE CASCADE of its call (by then the call row is gone).
 */
CREATE FUNCTION dialer.call_events_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM dialer.scheduled_calls WHERE id = OLD.call_id) THEN
		RETURN OLD;
	END IF;
	RAISE EXCEPTION 'dialer.call_events is append-only'
		USING ERRCODE = 'insufficient_privilege',
			  DETAIL = CASE WHEN TG_LEVEL = 'STATEMENT' THEN format('%s of dialer.call_events refused.', TG_OP)
							ELSE format('%s of event %s of call %s refused.', TG_OP, OLD.id, OLD.call_id) END,
			  HINT = 'Events are removed only with their call, by dialer.cleanup().';
END;
$$;
COMMENT ON FUNCTION dialer.call_events_append_only() IS 'Trigger keeping dialer.call_events append-only';

CREATE TRIGGER call_events_append_only BEFORE UPDATE OR DELETE ON dialer.call_events
	FOR EACH ROW EXECUTE FUNCTION dialer.call_events_append_only();
CREATE TRIGGER call_events_no_truncate BEFORE TRUNCATE ON dialer.call_events
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.call_events_append_only();

/*
 * Numbers that must never be dialled.
 */
CREATE TABLE dialer.do_not_call (
	number				dialer.e164 PRIMARY KEY,
	reason				text,
	added_at			timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dialer.do_not_call IS 'Numbers that must never be dialled: checked at enqueue and again at dispatch';

-- pg_dump must keep the user's rows of the configuration tables.
SELECT pg_catalog.pg_extension_config_dump('dialer.providers', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.campaigns', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.do_not_call', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.scheduled_calls', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.call_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.call_events', '');
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
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.cleanup(interval) IS
	'Deletes finished calls (and their attempts and events) that finished more than older_than ago; returns how many calls it removed. Unfinished and unknown calls are kept.';
/*
 * pg_dialer 0.1.0: the dispatcher's side of the queue.
 *
 * The worker (src/worker.c, src/queue.c) calls these functions in short
 * transactions: it claims due calls (committed before any request leaves), sends
 * the requests with no transaction open, then stores the outcomes in batches.
 * They are plain SQL so that pgTAP can test the rules without a worker; no other
 * role may execute them.
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
		UPDATE dialer.scheduled_calls c
		   SET status = 'unknown', updated_at = now(),
			   last_error = 'dispatcher stopped before the outcome of the request was stored'
		 WHERE c.status = 'dispatching'
		RETURNING c.id, c.attempts
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT l.id, 'unknown', 'dispatching', 'unknown',
			   jsonb_build_object('reason', 'dispatcher restarted while the request may have been in flight',
								  'attempt', l.attempts)
		  FROM lost l
	), att AS (
		UPDATE dialer.call_attempts a
		   SET error_code = coalesce(a.error_code, 'dispatcher_restart'),
			   error_message = coalesce(a.error_message, 'outcome unknown: the dispatcher stopped')
		  FROM lost l
		 WHERE a.call_id = l.id AND a.attempt = l.attempts AND a.http_status IS NULL
	)
	SELECT count(*) INTO v_count FROM lost;
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.recover_dispatching() IS
	'Worker start-up: turns calls left in dispatching into unknown (with an event), never re-sending them; returns how many';

/*
 * How many more calls a provider may have in progress: its max_concurrency less
 * the calls dispatching or dialing that had news within dialer.reconcile_after.
 * NULL max_concurrency means no limit.  0 for a disabled or unknown provider.
 */
CREATE FUNCTION dialer.provider_capacity(provider text)
RETURNS int
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_max	int;
	v_on	boolean;
	v_busy	int;
BEGIN
	SELECT p.max_concurrency, p.enabled INTO v_max, v_on FROM dialer.providers p WHERE p.name = provider;
	IF NOT FOUND OR NOT v_on THEN
		RETURN 0;
	END IF;
	IF v_max IS NULL THEN
		RETURN 2147483647;
	END IF;
	SELECT count(*) INTO v_busy
	  FROM (SELECT 1 FROM dialer.scheduled_calls c
			 WHERE c.provider = provider_capacity.provider
			   AND c.status IN ('dispatching', 'dialing')
			   AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval
			 ORDER BY c.updated_at DESC
			 LIMIT v_max) s;
	RETURN greatest(v_max - v_busy, 0);
END;
$$;
COMMENT ON FUNCTION dialer.provider_capacity(text) IS
	'Calls a provider may still start: max_concurrency less its calls dispatching or dialing (with news within dialer.reconcile_after)';

/*
 * The start of the next calling window at or after instant at, in zone tz, for a
 * window [window_start, window_end) of local times.  NULL when at is inside the
 * window.
 */
CREATE FUNCTION dialer.next_window_opening(at timestamptz, tz text, window_start time, window_end time)
RETURNS timestamptz
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
-- no SET clause: it would stop the planner inlining this into claim_calls' query
AS $$
	SELECT CASE
		WHEN (at AT TIME ZONE tz)::time >= window_start
			 AND ((at AT TIME ZONE tz)::time < window_end OR window_end = '00:00' OR window_end = '24:00')
			THEN NULL
		WHEN (at AT TIME ZONE tz)::time < window_start
			THEN (date_trunc('day', at AT TIME ZONE tz) + window_start) AT TIME ZONE tz
		ELSE (date_trunc('day', at AT TIME ZONE tz) + interval '1 day' + window_start) AT TIME ZONE tz
	END;
$$;
COMMENT ON FUNCTION dialer.next_window_opening(timestamptz, text, time, time) IS
	'NULL when instant at is inside the local calling window [window_start, window_end) of zone tz, else when the window next opens';

/*
 * Claims up to max_calls due calls of one provider, highest priority then
 * earliest first, skipping rows other sessions hold locked.  In the same
 * statement, due calls that must not be dialled are settled instead:
 *   - past their deadline: expired;
 *   - number on the do-not-call list, or not in dialer.allowed_numbers: skipped;
 *   - outside the recipient's calling window: left scheduled, due again when the
 *     window opens (or at the deadline, to expire then), with a window_wait event.
 * The others become 'dispatching' with their attempt row; the caller commits
 * before it sends anything.
 */
CREATE FUNCTION dialer.claim_calls(provider text, max_calls int, default_timezone text,
								   window_start time, window_end time, allowed_numbers text)
RETURNS TABLE (id bigint, attempt int, to_number text, from_number text, mode text,
			   payload text, message text, url text, script text, base_url text,
			   idempotency_key text, campaign text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
-- Two statements planned once per session (re-planning the claim for every single
-- call would cost more than the claim), with sequential scans ruled out so that
-- the one plan stays right however large the queue grows.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
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
COMMENT ON FUNCTION dialer.claim_calls(text, int, text, time, time, text) IS
	'Worker: claims up to max_calls due calls of a provider (FOR UPDATE SKIP LOCKED) and returns those to dial; settles expired, do-not-call, not-allowed and out-of-window calls';

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
BEGIN
	WITH r AS (
		SELECT * FROM unnest(call_ids, attempts, outcomes, http_statuses, provider_call_ids,
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
			   more_info = coalesce(r.more_info, a.more_info)
		  FROM r
		 WHERE a.call_id = r.call_id AND a.attempt = r.attempt
	), cur AS (
		SELECT r.*, c.attempts - c.attempts_base < c.max_attempts AS may_retry
		  FROM r JOIN dialer.scheduled_calls c ON c.id = r.call_id
		 WHERE c.status = 'dispatching' AND c.attempts = r.attempt
		   FOR UPDATE OF c
	), upd AS (
		UPDATE dialer.scheduled_calls c
		   SET status = CASE
						  WHEN cur.outcome = 'accepted' THEN 'dialing'
						  WHEN cur.outcome = 'retry' AND cur.may_retry THEN 'scheduled'
						  WHEN cur.outcome = 'unknown' THEN 'unknown'
						  ELSE 'failed' END,
			   provider_call_id = coalesce(cur.provider_call_id, c.provider_call_id),
			   provider_status = CASE WHEN cur.outcome = 'accepted' THEN coalesce(c.provider_status, 'accepted')
									  ELSE c.provider_status END,
			   next_attempt_at = CASE WHEN cur.outcome = 'retry' AND cur.may_retry
									  THEN now() + cur.delay_ms * interval '1 millisecond'
									  ELSE c.next_attempt_at END,
			   last_error = CASE WHEN cur.outcome = 'accepted' THEN c.last_error
								 ELSE cur.error_message END,
			   finished_at = CASE WHEN cur.outcome = 'failed' OR (cur.outcome = 'retry' AND NOT cur.may_retry)
								  THEN now() END,
			   updated_at = now()
		  FROM cur
		 WHERE c.id = cur.call_id
		RETURNING c.id, c.status, cur.outcome, cur.http_status, cur.error_code, cur.error_message,
				  cur.provider_call_id, cur.attempt, cur.delay_ms, cur.may_retry
	)
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	SELECT u.id,
		   CASE WHEN u.outcome = 'accepted' THEN 'accepted'
				WHEN u.status = 'scheduled' THEN 'retry_scheduled'
				WHEN u.status = 'unknown' THEN 'unknown'
				ELSE 'failed' END,
		   'dispatching', u.status,
		   jsonb_strip_nulls(jsonb_build_object(
				'attempt', u.attempt, 'http_status', u.http_status,
				'provider_call_id', u.provider_call_id,
				'error_code', u.error_code, 'error', u.error_message,
				'retry_in_ms', CASE WHEN u.status = 'scheduled' THEN u.delay_ms END,
				'attempts_exhausted', CASE WHEN u.outcome = 'retry' AND NOT u.may_retry THEN true END))
	  FROM upd u;
END;
$$;
COMMENT ON FUNCTION dialer.record_results(bigint[], int[], text[], int[], text[], text[], text[], text[], int[], timestamptz[]) IS
	'Worker: stores a batch of request outcomes (accepted, retry, failed, unknown) with events; never moves a call a callback has already moved on';

/*
 * A provider added, enabled or changed may make waiting calls dispatchable: when
 * the change commits, the worker reloads the providers and looks at the queue.
 */
CREATE FUNCTION dialer.reload_providers_at_commit()
RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dialer_providers_changed';
COMMENT ON FUNCTION dialer.reload_providers_at_commit() IS
	'Makes the worker reload dialer.providers (and wake) when the current transaction commits';

CREATE FUNCTION dialer.providers_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.reload_providers_at_commit();
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.providers_changed() IS
	'Trigger: the worker reloads the providers when a change to dialer.providers commits';
CREATE TRIGGER providers_changed AFTER INSERT OR UPDATE OR DELETE ON dialer.providers
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.providers_changed();

/*
 * When the worker must next look at the queue: the earliest next_attempt_at of a
 * scheduled call of an enabled provider, leaving out providers the worker knows
 * are blocked (at capacity or out of calls-per-second budget; it times those
 * itself); and when the next call falls due for reconciliation.  NULL: nothing.
 */
CREATE FUNCTION dialer.next_due_at(blocked_providers text[] DEFAULT '{}',
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
		   (SELECT min(r.last_contact) + current_setting('dialer.reconcile_after')::interval
			  FROM dialer.providers p
			 CROSS JOIN LATERAL (SELECT greatest(c.updated_at, c.reconciled_at) AS last_contact
								   FROM dialer.scheduled_calls c
								  WHERE c.provider = p.name
									AND (c.status = 'dialing'
										 OR (c.status = 'unknown' AND c.provider_call_id IS NOT NULL))
								  ORDER BY c.updated_at LIMIT 100) r
			 WHERE p.enabled);
$$;
COMMENT ON FUNCTION dialer.next_due_at(text[]) IS
	'Worker: earliest next_attempt_at of a scheduled call of an enabled provider not in blocked_providers, and when the next call falls due for reconciliation (NULL: none)';

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
	WITH blind AS (
		UPDATE dialer.scheduled_calls c
		   SET status = 'unknown', updated_at = now(),
			   last_error = 'no final status from the provider, and no provider call id to look it up by'
		 WHERE c.status = 'dialing' AND c.provider_call_id IS NULL AND c.updated_at <= v_cutoff
		RETURNING c.id
	)
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	SELECT b.id, 'unknown', 'dialing', 'unknown',
		   jsonb_build_object('reason', 'no final status within dialer.reconcile_after and no provider call id')
	  FROM blind b;

	RETURN QUERY
	WITH due AS (
		SELECT c.id FROM dialer.scheduled_calls c
		  JOIN dialer.providers p ON p.name = c.provider AND p.enabled
		 WHERE c.status IN ('dialing', 'unknown') AND c.provider_call_id IS NOT NULL
		   AND c.updated_at <= v_cutoff
		   AND (c.reconciled_at IS NULL OR c.reconciled_at <= v_cutoff)
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
 * Applies what a provider said when a call was looked up: its own call resource
 * (Twilio's Calls/{sid}.json: status, duration, answered_by; backend and voice API:
 * status, duration, transcript, recording_url), through dialer.apply_provider_status
 * like a callback.  A failed lookup is recorded as an event and changes nothing.
 */
CREATE FUNCTION dialer.apply_reconciliation(call_id bigint, provider_call_id text,
											http_status int, body text, error text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_doc jsonb;
BEGIN
	IF http_status BETWEEN 200 AND 299 THEN
		BEGIN
			v_doc := body::jsonb;
		EXCEPTION WHEN others THEN
			v_doc := NULL;
		END;
	END IF;
	IF v_doc IS NULL OR jsonb_typeof(v_doc) <> 'object' OR coalesce(v_doc->>'status', '') = '' THEN
		INSERT INTO dialer.call_events (call_id, event, detail)
		VALUES (apply_reconciliation.call_id, 'reconcile_failed',
				jsonb_strip_nulls(jsonb_build_object('provider_call_id', provider_call_id,
					'http_status', http_status,
					'error', coalesce(error, CASE WHEN http_status BETWEEN 200 AND 299
												  THEN 'answer without a status' END))));
		RETURN;
	END IF;
	PERFORM dialer.apply_provider_status(
		apply_reconciliation.call_id, v_doc->>'status', provider_call_id, NULL,
		jsonb_strip_nulls(jsonb_build_object(
			'duration_seconds', CASE WHEN (v_doc->>'duration') ~ '^[0-9]+$' THEN (v_doc->>'duration')::int END,
			'answered_by', v_doc->>'answered_by',
			'recording_url', v_doc->>'recording_url',
			'transcript', v_doc->>'transcript')),
		jsonb_build_object('lookup', 'provider call resource', 'provider_status', v_doc->>'status'),
		'reconcile',
		format('reconcile/%s/%s', provider_call_id, v_doc->>'status'));
END;
$$;
COMMENT ON FUNCTION dialer.apply_reconciliation(bigint, text, int, text, text) IS
	'Worker: applies a provider''s answer to a call lookup (status, duration, answered_by, ...) like a callback; records a failed lookup as an event';

/*
 * The provider configurations the worker dispatches with (secrets included: only
 * the owner and the worker may run this).
 */
CREATE FUNCTION dialer.worker_providers()
RETURNS SETOF dialer.providers
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT * FROM dialer.providers p WHERE p.enabled ORDER BY p.name;
$$;
COMMENT ON FUNCTION dialer.worker_providers() IS
	'Worker: enabled provider configurations, secrets included (owner only)';
/*
 * pg_dialer 0.1.0: call outcomes coming back from the providers.
 *
 *   dialer_api.twilio_status_callback      Twilio status callbacks (form fields, X-Twilio-Signature)
 *   dialer_api.provider_status_callback    JSON webhooks of backend and voice_api providers
 *                                          (HMAC-SHA256 of timestamp.body with the provider's
 *                                          webhook_secret)
 *
 * The schema dialer_api holds only these ingest functions: it is the one schema PostgREST
 * exposes, to a role that may execute them and nothing else (deploy/roles.sql).  They are
 * SECURITY DEFINER with a pinned search_path; everything they do is done by the internal
 * functions below, in schema dialer, which no other role may run:
 *
 *   dialer.apply_provider_status()  applies one status report of a provider to a call:
 *                                   idempotent, monotonic, retry policy.  Webhooks and the
 *                                   worker's reconciliation both use it.
 *   dialer.twilio_ingest(), dialer.json_webhook_ingest()   authenticate, then apply.
 *
 * The small internal helpers carry no SET search_path of their own, so that PostgreSQL can
 * inline or cache them: they qualify what they use and run under the pinned search_path
 * of the function that calls them (no role but the owner may call them directly).
 *
 * A request that is not authentic raises before anything is written, so it changes no row.
 * PostgREST turns the SQLSTATEs into HTTP statuses: PT401 -> 401 (unsigned), PT403 -> 403
 * (signature does not match), PT415 -> 415, 22023 / 22P02 -> 400 (malformed).
 * See doc/webhooks.md.
 */

CREATE SCHEMA dialer_api;
COMMENT ON SCHEMA dialer_api IS
	'pg_dialer''s webhook ingest functions, and nothing else: the one schema PostgREST exposes';
REVOKE ALL ON SCHEMA dialer_api FROM PUBLIC;

/* ------------------------------------------------------------------------------------
 * Signature primitives (src/webhook_signature.c)
 * ------------------------------------------------------------------------------------ */

CREATE FUNCTION dialer.hmac(algorithm text, key bytea, message bytea)
RETURNS bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_hmac';
COMMENT ON FUNCTION dialer.hmac(text, bytea, bytea) IS
	'HMAC of message under key with algorithm sha1, sha224, sha256, sha384 or sha512 (PostgreSQL''s own implementation)';

CREATE FUNCTION dialer.base64_encode(data bytea)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_base64_encode';
COMMENT ON FUNCTION dialer.base64_encode(bytea) IS
	'Standard base64 with padding, on one line (encode(x, ''base64'') wraps lines at 76 characters)';

CREATE FUNCTION dialer.constant_time_equal(a text, b text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_constant_time_equal';
COMMENT ON FUNCTION dialer.constant_time_equal(text, text) IS
	'True when a and b are the same bytes; the time taken depends only on the lengths, never on where they differ';

/*
 * Twilio's request signature (src/webhook_signature.c): HMAC-SHA1, keyed with the auth
 * token, of the full URL Twilio requested (query string included) followed by every POST
 * field, sorted by name (byte order), as name then value, in UTF-8; base64.  params is the
 * JSON object of the fields (strings; anything else is an error).
 */
CREATE FUNCTION dialer.twilio_signature(auth_token text, url text, params jsonb)
RETURNS text
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_twilio_signature';
COMMENT ON FUNCTION dialer.twilio_signature(text, text, jsonb) IS
	'Twilio''s X-Twilio-Signature of a request: base64(HMAC-SHA1(auth_token, url || sorted name||value of every field))';

/*
 * The forms of a URL Twilio may have signed: as configured, and with the scheme's default
 * port added or removed (Twilio's own validators accept both).
 */
CREATE FUNCTION dialer.twilio_url_variants(url text)
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
	m text[] := pg_catalog.regexp_match(url,
		'^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*@)?(\[[^]/?#]*\]|[^/?#:]*)(:[0-9]*)?(.*)$');
	scheme text := pg_catalog.lower(m[1]);
BEGIN
	IF m IS NULL OR scheme NOT IN ('https://', 'http://') THEN
		RETURN ARRAY[url];
	ELSIF m[4] IS NULL THEN
		RETURN ARRAY[url, m[1] || coalesce(m[2], '') || m[3]
						  || CASE WHEN scheme = 'https://' THEN ':443' ELSE ':80' END || m[5]];
	ELSIF (scheme = 'https://' AND m[4] = ':443') OR (scheme = 'http://' AND m[4] = ':80') THEN
		RETURN ARRAY[url, m[1] || coalesce(m[2], '') || m[3] || m[5]];
	END IF;
	RETURN ARRAY[url];
END;
$$;
COMMENT ON FUNCTION dialer.twilio_url_variants(text) IS
	'Internal: a URL as given, and with its default port added or removed';

/*
 * The public URL Twilio calls for a call's status callbacks: the provider's
 * status_callback_url with call_id=<id> appended to its query string ('?' or '&'),
 * character for character what the worker sends as StatusCallback (the worker should
 * build it with this function).  Without a call id, the URL as configured.
 */
CREATE FUNCTION dialer.twilio_callback_url(status_callback_url text, call_id bigint)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN call_id IS NULL THEN status_callback_url
				ELSE status_callback_url || CASE WHEN pg_catalog.strpos(status_callback_url, '?') > 0 THEN '&' ELSE '?' END
					 || 'call_id=' || call_id::text END;
$$;
COMMENT ON FUNCTION dialer.twilio_callback_url(text, bigint) IS
	'The StatusCallback URL of a call: status_callback_url plus call_id=<id> in its query string (what Twilio signs)';

/*
 * Whether signature is Twilio's signature of a request to url with these fields, under
 * auth_token: for url as given, else with its default port added or removed.  Constant-
 * time comparisons.
 */
CREATE FUNCTION dialer.twilio_signature_matches(auth_token text, url text, params jsonb, signature text)
RETURNS boolean
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
	v_url text;
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
	RETURN false;
END;
$$;
COMMENT ON FUNCTION dialer.twilio_signature_matches(text, text, jsonb, text) IS
	'Internal: true when signature is Twilio''s for url (or url with its default port added or removed) and params under auth_token';

/* ------------------------------------------------------------------------------------
 * Provider statuses
 * ------------------------------------------------------------------------------------ */

/*
 * A provider's call status in Twilio's vocabulary (queued, initiated, ringing,
 * in-progress, completed, busy, no-answer, failed, canceled), whatever its spelling:
 * case, '_' for '-', cancelled, answered, in_progress.  Others are returned as given
 * (lower case): they are recorded but move nothing.
 */
CREATE FUNCTION dialer.normalize_provider_status(status text)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE pg_catalog.replace(pg_catalog.lower(pg_catalog.btrim(status)), '_', '-')
		WHEN 'cancelled' THEN 'canceled'
		WHEN 'answered' THEN 'in-progress'
		WHEN 'noanswer' THEN 'no-answer'
		ELSE pg_catalog.replace(pg_catalog.lower(pg_catalog.btrim(status)), '_', '-') END;
$$;
COMMENT ON FUNCTION dialer.normalize_provider_status(text) IS
	'Internal: a provider status in Twilio''s spelling (no_answer -> no-answer, cancelled -> canceled, answered -> in-progress)';

/*
 * The order of provider statuses: accepted (the worker's mark) 0, queued 1, initiated 2,
 * ringing 3, in-progress 4, any final status 5; NULL for a status pg_dialer does not know.
 */
CREATE FUNCTION dialer.provider_status_rank(status text)
RETURNS int
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE status
		WHEN 'accepted' THEN 0
		WHEN 'queued' THEN 1
		WHEN 'initiated' THEN 2
		WHEN 'ringing' THEN 3
		WHEN 'in-progress' THEN 4
		WHEN 'completed' THEN 5 WHEN 'busy' THEN 5 WHEN 'no-answer' THEN 5
		WHEN 'failed' THEN 5 WHEN 'canceled' THEN 5
		END;
$$;
COMMENT ON FUNCTION dialer.provider_status_rank(text) IS
	'Internal: order of a (normalized) provider status, 0 accepted .. 4 in-progress, 5 final; NULL when unknown';

/*
 * The call status a provider status leads to: dialing while the call is under way,
 * else the outcome.  NULL for a status pg_dialer does not know.
 */
CREATE FUNCTION dialer.provider_status_outcome(status text)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE status
		WHEN 'queued' THEN 'dialing' WHEN 'initiated' THEN 'dialing'
		WHEN 'ringing' THEN 'dialing' WHEN 'in-progress' THEN 'dialing'
		WHEN 'completed' THEN 'completed' WHEN 'busy' THEN 'busy'
		WHEN 'no-answer' THEN 'no_answer' WHEN 'failed' THEN 'failed'
		WHEN 'canceled' THEN 'canceled'
		END;
$$;
COMMENT ON FUNCTION dialer.provider_status_outcome(text) IS
	'Internal: the call status a (normalized) provider status leads to: dialing, completed, busy, no_answer, failed, canceled; NULL when unknown';

/* ------------------------------------------------------------------------------------
 * Applying a status report
 * ------------------------------------------------------------------------------------ */

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
	v_moves := v_current AND v_outcome IS NOT NULL AND v_call.status IN ('dispatching', 'dialing', 'unknown');
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
COMMENT ON FUNCTION dialer.apply_provider_status(bigint, text, text, bigint, jsonb, jsonb, text, text) IS
	'Applies one status report of a provider to a call (callbacks, webhooks, reconciliation): idempotent by dedupe_key, monotonic by sequence and status order, retry policy for busy/no_answer; returns {result, call_id, attempt, status, previous_status}';

/* ------------------------------------------------------------------------------------
 * Refusals
 * ------------------------------------------------------------------------------------ */

/*
 * Raises the error of a refused webhook.  PostgREST answers PTxyz with HTTP status xyz.
 * The message never says more than what kind of refusal it is: no secret, no hint of
 * which part of a signature was wrong.
 */
CREATE FUNCTION dialer.webhook_refuse(http_status int, message text, hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_code text := CASE http_status WHEN 401 THEN 'PT401' WHEN 403 THEN 'PT403' WHEN 415 THEN 'PT415'
									ELSE '22023' END;
BEGIN
	IF hint IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = v_code, MESSAGE = message;
	END IF;
	RAISE EXCEPTION USING ERRCODE = v_code, MESSAGE = message, HINT = hint;
END;
$$;
COMMENT ON FUNCTION dialer.webhook_refuse(int, text, text) IS
	'Internal: raises a webhook refusal (PT401, PT403, PT415 for PostgREST; 22023 -> 400 otherwise)';

/*
 * The HTTP request headers PostgREST passed (lower-case names), {} outside PostgREST.
 */
CREATE FUNCTION dialer.request_headers()
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
	SELECT coalesce(nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb, '{}'::jsonb);
$$;
COMMENT ON FUNCTION dialer.request_headers() IS
	'Internal: the request headers PostgREST set in request.headers, as jsonb ({} when none)';

/* ------------------------------------------------------------------------------------
 * Twilio status callbacks
 * ------------------------------------------------------------------------------------ */

/*
 * Authenticates and applies one Twilio status callback.
 *
 *   fields    every form field Twilio sent, as a JSON object of strings
 *   call_ref  pg_dialer's call id from the callback URL's query string (passed by the
 *             proxy in X-Dialer-Call-Id), or NULL: the call is then found by CallSid
 *
 * The signature is checked over the public URL from configuration: the call's provider's
 * status_callback_url, plus call_id=<call_ref> when the URL carried it (exactly what the
 * worker gave Twilio); with the default port added or removed, as Twilio's own validators
 * do.  Nothing is looked at beyond the call's and providers' rows until it matches, and
 * nothing is written unless it does.
 */
CREATE FUNCTION dialer.twilio_ingest(fields jsonb, call_ref text)
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

	/* the call: by the call id of the URL, else by CallSid */
	v_call_id := call_ref::bigint;
	IF v_call_id IS NULL AND fields->>'CallSid' IS NOT NULL THEN
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
	IF v_call_id IS NULL OR v_provider IS NULL THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'no call of pg_dialer has this call id or CallSid',
								  'call_id', v_call_id);
	END IF;

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

	v_res := dialer.apply_provider_status(v_call_id, v_status, v_sid, v_seq, v_data, v_detail, 'callback');
	RETURN v_res;
END;
$$;
COMMENT ON FUNCTION dialer.twilio_ingest(jsonb, text) IS
	'Internal: authenticates a Twilio status callback (X-Twilio-Signature over the configured public URL and the fields) and applies it';

/* ------------------------------------------------------------------------------------
 * JSON webhooks (backend, voice_api)
 * ------------------------------------------------------------------------------------ */

/*
 * Authenticates and applies one JSON webhook of a backend or voice_api provider.
 *
 *   body  the request body exactly as received (PostgREST passes the raw text to a
 *         function's single unnamed json parameter)
 *
 * Headers: X-Dialer-Timestamp (Unix seconds) and X-Dialer-Signature
 * ("sha256=" || hex HMAC-SHA256(webhook_secret, timestamp || '.' || body)).  Refused
 * when either is missing (401), the timestamp is more than 300 s away from now (401:
 * replay), or the signature does not match (403).
 *
 * The body: {call_id, status, metadata, transcript, recording_url, duration} (and
 * optionally provider_call_id, sequence, answered_by, error_code, error_message).  The
 * call is metadata.call_id when present (pg_dialer's id, as the worker sent it), else
 * call_id: first as the provider's id of a call (provider_call_id), then as pg_dialer's.
 */
CREATE FUNCTION dialer.json_webhook_ingest(body json)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_headers	jsonb := dialer.request_headers();
	v_ts		text := btrim(v_headers->>'x-dialer-timestamp');
	v_sig		text := lower(btrim(v_headers->>'x-dialer-signature'));
	v_raw		text := body::text;
	v_doc		jsonb;
	v_ref		text;
	v_meta_ref	text;
	v_call_id	bigint;
	v_provider	text;
	v_psid		text;
	v_prov		dialer.providers;
	v_expected	text;
	v_status	text;
	v_seq		bigint;
	v_data		jsonb;
	v_detail	jsonb;
BEGIN
	IF body IS NULL THEN
		PERFORM dialer.webhook_refuse(400, 'the webhook body is empty');
	END IF;
	IF v_ts IS NULL OR v_ts = '' OR v_sig IS NULL OR v_sig = '' THEN
		PERFORM dialer.webhook_refuse(401, 'X-Dialer-Timestamp and X-Dialer-Signature are required',
			'Sign timestamp || ''.'' || body with HMAC-SHA256 and the provider''s webhook_secret.');
	END IF;
	IF v_ts !~ '^[0-9]{1,12}$' THEN
		PERFORM dialer.webhook_refuse(401, 'X-Dialer-Timestamp is not a Unix time in seconds');
	END IF;
	IF abs(extract(epoch FROM now()) - v_ts::bigint) > 300 THEN
		PERFORM dialer.webhook_refuse(401, 'X-Dialer-Timestamp is more than 5 minutes away from the server''s clock',
			'A signed webhook is accepted for 5 minutes; check the sender''s clock.');
	END IF;

	v_doc := v_raw::jsonb;
	IF jsonb_typeof(v_doc) <> 'object' THEN
		PERFORM dialer.webhook_refuse(400, 'the webhook body must be a JSON object');
	END IF;

	/* the call (to find the secret; nothing is trusted before the signature matches) */
	IF jsonb_typeof(v_doc->'metadata') = 'object' AND v_doc->'metadata' ? 'call_id' THEN
		v_meta_ref := v_doc->'metadata'->>'call_id';
		IF v_meta_ref ~ '^[1-9][0-9]{0,17}$' THEN
			SELECT c.id, c.provider INTO v_call_id, v_provider
			  FROM dialer.scheduled_calls c WHERE c.id = v_meta_ref::bigint;
		END IF;
	ELSE
		v_ref := CASE jsonb_typeof(v_doc->'call_id') WHEN 'string' THEN v_doc->>'call_id'
													 WHEN 'number' THEN v_doc->>'call_id' END;
		IF v_ref IS NOT NULL AND v_ref <> '' THEN
			SELECT c.id, c.provider, c.provider_call_id INTO v_call_id, v_provider, v_psid
			  FROM dialer.scheduled_calls c JOIN dialer.providers p ON p.name = c.provider
			 WHERE c.provider_call_id = v_ref AND p.kind IN ('backend', 'voice_api')
			 ORDER BY c.id DESC LIMIT 1;
			IF v_call_id IS NULL AND v_ref ~ '^[1-9][0-9]{0,17}$' THEN
				SELECT c.id, c.provider INTO v_call_id, v_provider
				  FROM dialer.scheduled_calls c WHERE c.id = v_ref::bigint;
			END IF;
		END IF;
	END IF;
	IF v_provider IS NOT NULL THEN
		SELECT * INTO v_prov FROM dialer.providers p
		 WHERE p.name = v_provider AND p.kind IN ('backend', 'voice_api') AND p.webhook_secret IS NOT NULL;
	END IF;
	IF v_prov.name IS NULL THEN
		/* unknown call, or a provider without a webhook secret: nothing can vouch for it */
		PERFORM dialer.webhook_refuse(403, 'X-Dialer-Signature does not match');
	END IF;

	v_expected := 'sha256=' || encode(dialer.hmac('sha256', convert_to(v_prov.webhook_secret, 'UTF8'),
												  convert_to(v_ts || '.' || v_raw, 'UTF8')), 'hex');
	IF NOT dialer.constant_time_equal(v_sig, v_expected) THEN
		PERFORM dialer.webhook_refuse(403, 'X-Dialer-Signature does not match');
	END IF;

	/* authentic from here on: validate the fields */
	IF jsonb_typeof(v_doc->'status') IS DISTINCT FROM 'string' OR v_doc->>'status' = '' THEN
		PERFORM dialer.webhook_refuse(400, 'status is required and must be a string');
	END IF;
	v_status := v_doc->>'status';
	IF v_doc ? 'duration' AND jsonb_typeof(v_doc->'duration') <> 'null'
	   AND NOT (jsonb_typeof(v_doc->'duration') IN ('number', 'string')
				AND (v_doc->>'duration') ~ '^[0-9]{1,9}(\.[0-9]+)?$') THEN
		PERFORM dialer.webhook_refuse(400, 'duration must be a non-negative number of seconds');
	END IF;
	IF v_doc ? 'sequence' AND jsonb_typeof(v_doc->'sequence') <> 'null' THEN
		IF (v_doc->>'sequence') !~ '^[0-9]{1,18}$' THEN
			PERFORM dialer.webhook_refuse(400, 'sequence must be a non-negative integer');
		END IF;
		v_seq := (v_doc->>'sequence')::bigint;
	END IF;
	IF v_doc ? 'metadata' AND jsonb_typeof(v_doc->'metadata') NOT IN ('object', 'null') THEN
		PERFORM dialer.webhook_refuse(400, 'metadata must be a JSON object');
	END IF;
	IF v_doc ? 'recording_url' AND jsonb_typeof(v_doc->'recording_url') NOT IN ('string', 'null') THEN
		PERFORM dialer.webhook_refuse(400, 'recording_url must be a string');
	END IF;

	v_data := jsonb_strip_nulls(jsonb_build_object(
		'duration_seconds', round((v_doc->>'duration')::numeric)::int,
		'answered_by', v_doc->>'answered_by',
		'recording_url', nullif(v_doc->>'recording_url', ''),
		'transcript', CASE jsonb_typeof(v_doc->'transcript')
						WHEN 'string' THEN nullif(v_doc->>'transcript', '')
						WHEN 'null' THEN NULL
						ELSE (v_doc->'transcript')::text END,
		'error_code', v_doc->>'error_code',
		'error_message', v_doc->>'error_message'));
	v_detail := jsonb_build_object('via', v_prov.kind) || jsonb_strip_nulls(jsonb_build_object(
		'status', v_status,
		'duration', v_doc->'duration',
		'recording_url', v_doc->'recording_url',
		'metadata', CASE WHEN octet_length((v_doc->'metadata')::text) <= 8192 THEN v_doc->'metadata' END,
		'transcript_chars', CASE WHEN v_doc ? 'transcript' THEN length(v_data->>'transcript') END,
		'timestamp', v_ts::bigint));

	RETURN dialer.apply_provider_status(
		v_call_id, v_status,
		coalesce(CASE jsonb_typeof(v_doc->'provider_call_id') WHEN 'string' THEN v_doc->>'provider_call_id' END, v_psid),
		v_seq, v_data, v_detail, 'webhook',
		'sha256:' || encode(sha256(convert_to(v_raw, 'UTF8')), 'hex'));
END;
$$;
COMMENT ON FUNCTION dialer.json_webhook_ingest(json) IS
	'Internal: authenticates a JSON webhook (HMAC-SHA256 of X-Dialer-Timestamp.body with the provider''s webhook_secret, 5-minute window) and applies it';

/* ------------------------------------------------------------------------------------
 * The ingest functions PostgREST exposes
 * ------------------------------------------------------------------------------------ */

/*
 * Twilio status callback through the shipped proxy (deploy/nginx.conf), which adds
 * "Prefer: params=single-object" so that every field Twilio sends, including fields it
 * adds in the future, arrives in this one json argument, and passes the call id of the
 * URL's query string in X-Dialer-Call-Id.
 */
CREATE FUNCTION dialer_api.twilio_status_callback(json)
RETURNS json
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN dialer.twilio_ingest($1::jsonb, nullif(dialer.request_headers()->>'x-dialer-call-id', ''))::json;
END;
$$;
COMMENT ON FUNCTION dialer_api.twilio_status_callback(json) IS
	'Twilio status callback, all fields as one object (PostgREST Prefer: params=single-object, as the shipped proxy sends); call id in X-Dialer-Call-Id';

/*
 * Twilio status callback straight to PostgREST (no proxy): PostgREST maps each form field
 * to the parameter of that name, so this accepts the fields Twilio documents today
 * (https://www.twilio.com/docs/voice/api/call-resource#statuscallback and the standard
 * TwiML voice request parameters); a field it does not name makes PostgREST answer 404,
 * which is why the proxy deployment is the one to use.  A field not sent stays NULL and
 * is left out of the signature; a field sent empty is ''.
 */
CREATE FUNCTION dialer_api.twilio_status_callback(
	"AccountSid" text DEFAULT NULL,
	"ApiVersion" text DEFAULT NULL,
	"CallSid" text DEFAULT NULL,
	"CallStatus" text DEFAULT NULL,
	"CallToken" text DEFAULT NULL,
	"CallbackSource" text DEFAULT NULL,
	"Called" text DEFAULT NULL,
	"CalledCity" text DEFAULT NULL,
	"CalledCountry" text DEFAULT NULL,
	"CalledState" text DEFAULT NULL,
	"CalledZip" text DEFAULT NULL,
	"Caller" text DEFAULT NULL,
	"CallerCity" text DEFAULT NULL,
	"CallerCountry" text DEFAULT NULL,
	"CallerName" text DEFAULT NULL,
	"CallerState" text DEFAULT NULL,
	"CallerZip" text DEFAULT NULL,
	"CallDuration" text DEFAULT NULL,
	"Direction" text DEFAULT NULL,
	"Duration" text DEFAULT NULL,
	"ErrorCode" text DEFAULT NULL,
	"ErrorMessage" text DEFAULT NULL,
	"ForwardedFrom" text DEFAULT NULL,
	"From" text DEFAULT NULL,
	"FromCity" text DEFAULT NULL,
	"FromCountry" text DEFAULT NULL,
	"FromState" text DEFAULT NULL,
	"FromZip" text DEFAULT NULL,
	"AnsweredBy" text DEFAULT NULL,
	"MachineDetectionDuration" text DEFAULT NULL,
	"ParentCallSid" text DEFAULT NULL,
	"QueueTime" text DEFAULT NULL,
	"RecordingDuration" text DEFAULT NULL,
	"RecordingSid" text DEFAULT NULL,
	"RecordingUrl" text DEFAULT NULL,
	"SequenceNumber" text DEFAULT NULL,
	"SipResponseCode" text DEFAULT NULL,
	"StirPassportToken" text DEFAULT NULL,
	"StirStatus" text DEFAULT NULL,
	"StirVerstat" text DEFAULT NULL,
	"Timestamp" text DEFAULT NULL,
	"To" text DEFAULT NULL,
	"ToCity" text DEFAULT NULL,
	"ToCountry" text DEFAULT NULL,
	"ToState" text DEFAULT NULL,
	"ToZip" text DEFAULT NULL,
	"TrunkSid" text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN dialer.twilio_ingest(jsonb_strip_nulls(
		jsonb_build_object(
			'AccountSid', "AccountSid", 'ApiVersion', "ApiVersion", 'CallSid', "CallSid",
			'CallStatus', "CallStatus", 'CallToken', "CallToken", 'CallbackSource', "CallbackSource",
			'Called', "Called", 'CalledCity', "CalledCity", 'CalledCountry', "CalledCountry",
			'CalledState', "CalledState", 'CalledZip', "CalledZip", 'Caller', "Caller",
			'CallerCity', "CallerCity", 'CallerCountry', "CallerCountry", 'CallerName', "CallerName",
			'CallerState', "CallerState", 'CallerZip', "CallerZip", 'CallDuration', "CallDuration",
			'Direction', "Direction", 'Duration', "Duration", 'ErrorCode', "ErrorCode")
		|| jsonb_build_object(
			'ErrorMessage', "ErrorMessage", 'ForwardedFrom', "ForwardedFrom", 'From', "From",
			'FromCity', "FromCity", 'FromCountry', "FromCountry", 'FromState', "FromState",
			'FromZip', "FromZip", 'AnsweredBy', "AnsweredBy",
			'MachineDetectionDuration', "MachineDetectionDuration", 'ParentCallSid', "ParentCallSid",
			'QueueTime', "QueueTime", 'RecordingDuration', "RecordingDuration",
			'RecordingSid', "RecordingSid", 'RecordingUrl', "RecordingUrl",
			'SequenceNumber', "SequenceNumber", 'SipResponseCode', "SipResponseCode",
			'StirPassportToken', "StirPassportToken", 'StirStatus', "StirStatus",
			'StirVerstat', "StirVerstat", 'Timestamp', "Timestamp", 'To', "To")
		|| jsonb_build_object(
			'ToCity', "ToCity", 'ToCountry', "ToCountry", 'ToState', "ToState", 'ToZip', "ToZip",
			'TrunkSid', "TrunkSid")),
		nullif(dialer.request_headers()->>'x-dialer-call-id', ''))::json;
END;
$$;
COMMENT ON FUNCTION dialer_api.twilio_status_callback(text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text) IS
	'Twilio status callback straight to PostgREST: today''s documented fields as named parameters (unknown fields need the proxy deployment)';

/*
 * JSON webhook of a backend or voice_api provider: POST with Content-Type
 * application/json; PostgREST hands the raw body to this single unnamed json parameter,
 * so the signature is checked over the exact bytes sent.
 */
CREATE FUNCTION dialer_api.provider_status_callback(json)
RETURNS json
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN dialer.json_webhook_ingest($1)::json;
END;
$$;
COMMENT ON FUNCTION dialer_api.provider_status_callback(json) IS
	'JSON status webhook of backend and voice_api providers: {call_id, status, metadata, transcript, recording_url, duration}, signed with X-Dialer-Timestamp and X-Dialer-Signature (HMAC-SHA256 of timestamp.body)';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer_api FROM PUBLIC;
/*
 * pg_dialer 0.1.0: campaigns.
 *
 * A campaign (a row of dialer.campaigns) names a source of candidates the application
 * writes -- a view, a table or a set-returning function -- and the rules that decide
 * who is called.  pending_customers() shows who would be called now, campaign_candidates()
 * shows every candidate with the reason it is left out, run_campaign() enqueues the
 * pending ones, and schedule_campaign() has pg_cron run it at a local time of day.
 *
 * The source contract (checked when the campaign is written and at every run):
 *
 *   customer_ref  any type (read as text)   required: the application's reference
 *   phone         any type (read as text)   required: E.164; spaces ( ) . - are ignored
 *   payload       jsonb or json             optional: an object merged over campaigns.payload
 *   timezone      text                      optional: the recipient's IANA time zone
 *   due_at        timestamptz, timestamp    optional: what the call is about (appointment,
 *                 or date                   expiry): the lookahead window; a timestamp or
 *                                           date is read in the campaign's time zone
 *
 * Other columns are ignored.  A function is written 'schema.f()' and takes no arguments.
 *
 * Privileges: the reading functions run with the caller's rights (a campaign never lets a
 * role read a source it could not read itself); scheduled runs use the rights of the role
 * that scheduled the campaign.  dialer.grant_campaigns() grants a role their use.
 */

/* ---------------------------------------------------------------- helpers */

-- One candidate as read from a campaign's source.
CREATE TYPE dialer.campaign_source_row AS (
	customer_ref	text,
	phone			text,
	payload			jsonb,
	timezone		text,
	due_at			timestamptz
);
COMMENT ON TYPE dialer.campaign_source_row IS
	'Internal: one candidate read from a campaign source (customer_ref, phone, payload, timezone, due_at)';

-- For the rules "scheduled today" and "call pending" (per customer of a campaign).
CREATE INDEX scheduled_calls_campaign_customer_idx ON dialer.scheduled_calls (campaign, customer_ref, run_at)
	WHERE campaign IS NOT NULL AND customer_ref IS NOT NULL;

/*
 * The time zone a campaign lives in: its own, else dialer.default_timezone, else UTC.
 */
CREATE FUNCTION dialer.campaign_timezone(timezone text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT coalesce(timezone, nullif(current_setting('dialer.default_timezone', true), ''), 'UTC')
$$;
COMMENT ON FUNCTION dialer.campaign_timezone(text) IS
	'Internal: a campaign''s time zone (its own, else dialer.default_timezone, else UTC)';

/*
 * A campaign row by name, or the standard error naming the bad value.
 */
CREATE FUNCTION dialer.get_campaign(campaign text)
RETURNS dialer.campaigns
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_row dialer.campaigns;
BEGIN
	IF campaign IS NULL THEN
		PERFORM dialer.raise_bad_argument('campaign', NULL, 'A campaign name is required.',
			'Name a row of dialer.campaigns.', '22004');
	END IF;
	SELECT * INTO v_row FROM dialer.campaigns k WHERE k.name = get_campaign.campaign;
	IF NOT FOUND THEN
		PERFORM dialer.raise_bad_argument('campaign', campaign,
			format('No row of dialer.campaigns has this name. Known campaigns: %s.',
				   coalesce((SELECT string_agg(quote_literal(k.name), ', ' ORDER BY k.name)
							 FROM (SELECT k2.name FROM dialer.campaigns k2 ORDER BY k2.name LIMIT 20) k),
							'none')),
			'Insert the campaign into dialer.campaigns first (see README, "Campaigns").', '42704');
	END IF;
	RETURN v_row;
END;
$$;
COMMENT ON FUNCTION dialer.get_campaign(text) IS
	'Internal: the dialer.campaigns row of a name, or the error "invalid campaign: ''x''" (SQLSTATE 42704)';

/*
 * Resolves a source name with the caller's search_path and returns it schema-qualified:
 * 'schema.relation' for a table, view, materialized view or foreign table, 'schema.f()'
 * for a set-returning function without arguments.  No search_path is pinned on purpose
 * (every name inside is qualified).
 */
CREATE FUNCTION dialer.resolve_campaign_source(source text)
RETURNS text
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
	v_src	text := pg_catalog.btrim(source);
	v_rel	oid;
	v_proc	oid;
	v_out	text;
	v_kind	"char";
	v_set	boolean;
BEGIN
	IF v_src IS NULL OR v_src OPERATOR(pg_catalog.=) '' THEN
		PERFORM dialer.raise_bad_argument('source', source,
			'A campaign reads its candidates from a view, table or set-returning function.',
			'Set source to e.g. ''app.pending_reminders'' or ''app.renewal_candidates()''.', '22004');
	END IF;
	BEGIN
		IF v_src OPERATOR(pg_catalog.~) '\(\s*\)$' THEN
			v_proc := pg_catalog.to_regprocedure(
				pg_catalog.regexp_replace(v_src, '\(\s*\)$', '') OPERATOR(pg_catalog.||) '()');
		ELSE
			v_rel := pg_catalog.to_regclass(v_src);
			IF v_rel IS NULL THEN
				v_proc := pg_catalog.to_regprocedure(v_src OPERATOR(pg_catalog.||) '()');
			END IF;
		END IF;
	EXCEPTION WHEN invalid_name OR syntax_error OR invalid_parameter_value OR feature_not_supported THEN
		PERFORM dialer.raise_bad_argument('source', source, 'This is not a valid object name.',
			'Write schema.view_name, or schema.function_name() for a set-returning function.', '42602');
	END;

	IF v_rel IS NOT NULL THEN
		SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), c.relkind
		  INTO v_out, v_kind
		  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
		 WHERE c.oid OPERATOR(pg_catalog.=) v_rel;
		IF v_kind OPERATOR(pg_catalog.<>) ALL (ARRAY['r', 'v', 'm', 'f', 'p']::"char"[]) THEN
			PERFORM dialer.raise_bad_argument('source', source,
				'A source must be a table, view, materialized view or foreign table (or a set-returning function).',
				'Wrap the object in a view.', '42809');
		END IF;
		RETURN v_out;
	END IF;

	IF v_proc IS NOT NULL THEN
		SELECT pg_catalog.format('%I.%I()', n.nspname, p.proname), p.prokind, p.proretset
		  INTO v_out, v_kind, v_set
		  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
		 WHERE p.oid OPERATOR(pg_catalog.=) v_proc;
		IF v_kind OPERATOR(pg_catalog.<>) 'f' OR NOT v_set THEN
			PERFORM dialer.raise_bad_argument('source', source,
				'A function source must be a set-returning function (RETURNS TABLE (...) or RETURNS SETOF a row type).',
				'Declare it RETURNS TABLE (customer_ref text, phone text, ...), or use a view.', '42809');
		END IF;
		RETURN v_out;
	END IF;

	PERFORM dialer.raise_bad_argument('source', source,
		pg_catalog.format('No table, view or set-returning function without arguments has this name (search_path: %s).',
						  pg_catalog.current_setting('search_path')),
		'Create the view or function first, and name it schema-qualified (a function as schema.f()).', '42P01');
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.resolve_campaign_source(text) IS
	'Internal: resolves a campaign source name (caller''s search_path) to ''schema.relation'' or ''schema.f()'', or raises "invalid source"';

/*
 * The columns a source yields (from the catalog, without running it).
 */
CREATE FUNCTION dialer.campaign_source_columns(source text)
RETURNS TABLE (column_name text, column_type regtype)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_src	text := dialer.resolve_campaign_source(source);
	v_proc	pg_proc;
BEGIN
	IF v_src !~ '\(\)$' THEN
		RETURN QUERY
			SELECT a.attname::text, a.atttypid::regtype
			  FROM pg_attribute a
			 WHERE a.attrelid = v_src::regclass AND a.attnum > 0 AND NOT a.attisdropped
			 ORDER BY a.attnum;
		RETURN;
	END IF;
	SELECT * INTO v_proc FROM pg_proc p WHERE p.oid = to_regprocedure(v_src);
	IF v_proc.proallargtypes IS NOT NULL THEN
		RETURN QUERY
			SELECT x.n::text, x.t::regtype
			  FROM unnest(v_proc.proargnames, v_proc.proallargtypes::oid[], v_proc.proargmodes::text[])
				   WITH ORDINALITY AS x(n, t, m, i)
			 WHERE x.m IN ('o', 't', 'b')
			 ORDER BY x.i;
	ELSIF (SELECT t.typtype FROM pg_type t WHERE t.oid = v_proc.prorettype) = 'c' THEN
		RETURN QUERY
			SELECT a.attname::text, a.atttypid::regtype
			  FROM pg_attribute a
			 WHERE a.attrelid = (SELECT t.typrelid FROM pg_type t WHERE t.oid = v_proc.prorettype)
			   AND a.attnum > 0 AND NOT a.attisdropped
			 ORDER BY a.attnum;
	ELSE
		PERFORM dialer.raise_bad_argument('source', source,
			format('Function %s returns %s, not named columns.', v_src, v_proc.prorettype::regtype),
			'Declare it RETURNS TABLE (customer_ref text, phone text, ...) or RETURNS SETOF a row type.', '42804');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_source_columns(text) IS
	'The columns (name, type) a campaign source yields, read from the catalog; an error when it has none';

/*
 * Checks a source against the contract and returns the query that reads it as one array
 * of dialer.campaign_source_row ($1 = the campaign's time zone).  Every name in the
 * query comes from the catalog, quoted: nothing stored is spliced into SQL.
 */
CREATE FUNCTION dialer.campaign_source_query(source text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_src		text := dialer.resolve_campaign_source(source);
	v_cols		jsonb;
	v_missing	text[];
	v_type		regtype;
	v_payload	text := 'NULL::jsonb';
	v_tz		text := 'NULL::text';
	v_due		text := 'NULL::timestamptz';
BEGIN
	SELECT jsonb_object_agg(c.column_name, c.column_type::oid)
	  INTO v_cols FROM dialer.campaign_source_columns(v_src) c;
	v_cols := coalesce(v_cols, '{}');

	SELECT array_agg(r) INTO v_missing FROM unnest(ARRAY['customer_ref', 'phone']) r WHERE NOT v_cols ? r;
	IF v_missing IS NOT NULL THEN
		PERFORM dialer.raise_bad_argument('source', source,
			format('%s has no column %s; it has: %s.', v_src, array_to_string(v_missing, ' or '),
				   coalesce((SELECT string_agg(k, ', ') FROM jsonb_object_keys(v_cols) k), 'none')),
			'A campaign source yields customer_ref and phone, and optionally payload (jsonb), timezone (text) and due_at (timestamptz, timestamp or date): rename columns with AS in a view.',
			'42703');
	END IF;

	IF v_cols ? 'payload' THEN
		v_type := (v_cols->>'payload')::oid::regtype;
		IF v_type NOT IN ('jsonb'::regtype, 'json'::regtype) THEN
			PERFORM dialer.raise_bad_argument('source', source,
				format('Column payload of %s is %s; it must be jsonb or json.', v_src, v_type),
				'Build it with jsonb_build_object(...).', '42804');
		END IF;
		v_payload := '(s.payload)::jsonb';
	END IF;
	IF v_cols ? 'timezone' THEN
		v_type := (v_cols->>'timezone')::oid::regtype;
		IF v_type NOT IN ('text'::regtype, 'character varying'::regtype, 'name'::regtype, 'character'::regtype) THEN
			PERFORM dialer.raise_bad_argument('source', source,
				format('Column timezone of %s is %s; it must be text (an IANA time zone name).', v_src, v_type),
				'Cast it: timezone::text.', '42804');
		END IF;
		v_tz := '(s.timezone)::text';
	END IF;
	IF v_cols ? 'due_at' THEN
		v_type := (v_cols->>'due_at')::oid::regtype;
		v_due := CASE v_type
			WHEN 'timestamp with time zone'::regtype THEN 's.due_at'
			WHEN 'timestamp without time zone'::regtype THEN '(s.due_at AT TIME ZONE $1)'
			WHEN 'date'::regtype THEN '((s.due_at)::timestamp AT TIME ZONE $1)'
		END;
		IF v_due IS NULL THEN
			PERFORM dialer.raise_bad_argument('source', source,
				format('Column due_at of %s is %s; it must be timestamptz, timestamp or date.', v_src, v_type),
				'Cast it, or rename the column if it is not a due time.', '42804');
		END IF;
	END IF;

	RETURN format('SELECT array_agg(ROW((s.customer_ref)::text, (s.phone)::text, %s, %s, %s)::dialer.campaign_source_row) FROM %s AS s',
				  v_payload, v_tz, v_due, v_src);
END;
$$;
COMMENT ON FUNCTION dialer.campaign_source_query(text) IS
	'Internal: checks a campaign source against the contract (customer_ref, phone; optional payload, timezone, due_at) and returns the query reading it';

/* -------------------------------------------------------------- schedules */

/*
 * One field of a cron expression as the sorted values it allows: lists of *, N, N-M,
 * each optionally /step; month and weekday names (jan, mon) are accepted.
 */
CREATE FUNCTION dialer.cron_field(field text, what text, lo int, hi int, names text[], schedule text)
RETURNS int[]
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_part	text;
	v_m		text[];
	v_a		int;
	v_b		int;
	v_step	int;
	v_out	int[] := '{}';
	v_tok	text;
	v_vals	int[];
BEGIN
	FOREACH v_part IN ARRAY string_to_array(field, ',') LOOP
		v_m := regexp_match(v_part, '^(\*|([0-9]{1,2}|[a-z]{3})(-([0-9]{1,2}|[a-z]{3}))?)(/([0-9]{1,2}))?$');
		IF v_m IS NULL THEN
			PERFORM dialer.raise_bad_argument('schedule', schedule,
				format('The %s field "%s" is not understood: use *, N, N-M, a list of these, each optionally /step.', what, field),
				'Write ''daily HH:MM'' or a 5-field cron expression such as ''0 9 * * 1-5'' (minute hour day month weekday), read in the campaign''s time zone.');
		END IF;
		v_vals := '{}';
		FOREACH v_tok IN ARRAY ARRAY[v_m[2], v_m[4]] LOOP
			IF v_tok IS NULL THEN
				v_vals := v_vals || NULL::int;
			ELSIF v_tok ~ '^[0-9]+$' THEN
				v_vals := v_vals || v_tok::int;
			ELSIF array_position(names, v_tok) IS NOT NULL THEN
				v_vals := v_vals || (array_position(names, v_tok) - 1 + lo);
			ELSE
				PERFORM dialer.raise_bad_argument('schedule', schedule,
					format('The %s field has an unknown name "%s".', what, v_tok),
					CASE WHEN names IS NULL THEN format('Use numbers from %s to %s.', lo, hi)
						 ELSE format('Use numbers from %s to %s or the names %s.', lo, hi, array_to_string(names, ', ')) END);
			END IF;
		END LOOP;
		IF v_m[1] = '*' THEN
			v_a := lo;
			v_b := hi;
		ELSE
			v_a := v_vals[1];
			v_b := coalesce(v_vals[2], CASE WHEN v_m[6] IS NOT NULL THEN hi ELSE v_a END);
		END IF;
		v_step := coalesce(v_m[6]::int, 1);
		IF v_a < lo OR v_b > hi OR v_a > v_b OR v_step < 1 THEN
			PERFORM dialer.raise_bad_argument('schedule', schedule,
				format('The %s field "%s" is out of range: values go from %s to %s, ranges upwards, steps from 1.', what, field, lo, hi),
				'For example ''0 9 * * 1-5'' is 09:00 on weekdays.');
		END IF;
		v_out := v_out || ARRAY(SELECT generate_series(v_a, v_b, v_step));
	END LOOP;
	RETURN ARRAY(SELECT DISTINCT x FROM unnest(v_out) x ORDER BY x);
END;
$$;
COMMENT ON FUNCTION dialer.cron_field(text, text, int, int, text[], text) IS
	'Internal: the values one cron field allows, or an "invalid schedule" error';

/*
 * A campaign schedule, parsed: 'daily HH:MM', @hourly, @daily (@midnight), @weekly,
 * @monthly, @yearly (@annually), or 'minute hour day-of-month month day-of-week'.  As in
 * cron, when both day fields are restricted a day matching either one runs.
 */
CREATE FUNCTION dialer.parse_schedule(schedule text,
	OUT normalized text, OUT minutes int[], OUT hours int[], OUT days int[], OUT months int[],
	OUT weekdays int[], OUT days_and boolean)
RETURNS record
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_s		text := lower(regexp_replace(btrim(schedule), '\s+', ' ', 'g'));
	v_cron	text;
	v_m		text[];
	v_f		text[];
BEGIN
	IF schedule IS NULL OR v_s = '' THEN
		PERFORM dialer.raise_bad_argument('schedule', schedule, 'A schedule is required.',
			'Write ''daily HH:MM'' or a 5-field cron expression, read in the campaign''s time zone.', '22004');
	END IF;
	v_m := regexp_match(v_s, '^daily (?:at )?([0-9]{1,2}):([0-9]{2})$');
	IF v_m IS NOT NULL THEN
		IF v_m[1]::int > 23 OR v_m[2]::int > 59 THEN
			PERFORM dialer.raise_bad_argument('schedule', schedule,
				'The time of a daily schedule is HH:MM from 00:00 to 23:59.', 'For example ''daily 09:00''.');
		END IF;
		v_cron := format('%s %s * * *', v_m[2]::int, v_m[1]::int);
		v_s := format('daily %s:%s', lpad(v_m[1]::int::text, 2, '0'), v_m[2]);
	ELSE
		v_cron := CASE v_s
			WHEN '@hourly' THEN '0 * * * *'
			WHEN '@daily' THEN '0 0 * * *'
			WHEN '@midnight' THEN '0 0 * * *'
			WHEN '@weekly' THEN '0 0 * * 0'
			WHEN '@monthly' THEN '0 0 1 * *'
			WHEN '@yearly' THEN '0 0 1 1 *'
			WHEN '@annually' THEN '0 0 1 1 *'
			ELSE v_s END;
	END IF;
	v_f := string_to_array(v_cron, ' ');
	IF cardinality(v_f) <> 5 THEN
		PERFORM dialer.raise_bad_argument('schedule', schedule,
			format('A cron schedule has 5 fields (minute hour day-of-month month day-of-week); this has %s.', cardinality(v_f)),
			'Write ''daily HH:MM'' or e.g. ''30 9 * * 1-5'' (09:30 on weekdays), read in the campaign''s time zone.');
	END IF;
	normalized := v_s;
	minutes := dialer.cron_field(v_f[1], 'minute', 0, 59, NULL, schedule);
	hours := dialer.cron_field(v_f[2], 'hour', 0, 23, NULL, schedule);
	days := dialer.cron_field(v_f[3], 'day-of-month', 1, 31, NULL, schedule);
	months := dialer.cron_field(v_f[4], 'month', 1, 12,
		'{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}', schedule);
	weekdays := dialer.cron_field(v_f[5], 'day-of-week', 0, 7, '{sun,mon,tue,wed,thu,fri,sat}', schedule);
	weekdays := ARRAY(SELECT DISTINCT CASE WHEN d = 7 THEN 0 ELSE d END FROM unnest(weekdays) d ORDER BY 1);
	days_and := v_f[3] LIKE '*%' OR v_f[5] LIKE '*%';
END;
$$;
COMMENT ON FUNCTION dialer.parse_schedule(text) IS
	'A campaign schedule (''daily HH:MM'', @hourly/@daily/@weekly/@monthly/@yearly or a 5-field cron expression) as its normalized text and the minutes, hours, days, months and weekdays it allows; an "invalid schedule" error otherwise';

/*
 * The instants a schedule runs at in (after, until], its fields read as local time in
 * timezone.  Each local time maps to one instant: a local time skipped by a
 * spring-forward change runs at the same wall-clock offset later (02:30 becomes 03:30),
 * a local time that occurs twice on a fall-back day runs once (at its second, standard
 * time occurrence), as PostgreSQL's timestamp AT TIME ZONE reads them.
 */
CREATE FUNCTION dialer.schedule_runs(schedule text, timezone text, after timestamptz, until timestamptz)
RETURNS SETOF timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	p record := dialer.parse_schedule(schedule);
BEGIN
	IF timezone IS NULL OR NOT dialer.is_valid_timezone(timezone) THEN
		PERFORM dialer.raise_bad_argument('timezone', timezone,
			'A schedule is read in a time zone PostgreSQL knows.',
			'Use an IANA name such as Europe/Berlin (see pg_timezone_names).');
	END IF;
	IF after IS NULL OR until IS NULL THEN
		PERFORM dialer.raise_bad_argument(CASE WHEN after IS NULL THEN 'after' ELSE 'until' END, NULL,
			'Both ends of the time range are required.', 'Pass two timestamptz values.', '22004');
	END IF;
	IF until - after > interval '3700 days' THEN
		PERFORM dialer.raise_bad_argument('until', until::text,
			'The range is at most 3700 days long.', 'Ask for a shorter range.');
	END IF;
	RETURN QUERY
		SELECT DISTINCT x.at
		  FROM (SELECT (d.day + make_time(h, m, 0)) AT TIME ZONE timezone AS at
				  FROM (SELECT g::date AS day
						  FROM generate_series(((after AT TIME ZONE timezone)::date - 1)::timestamp,
											   ((until AT TIME ZONE timezone)::date + 1)::timestamp,
											   interval '1 day') g) d
					   CROSS JOIN unnest(p.hours) h
					   CROSS JOIN unnest(p.minutes) m
				 WHERE extract(month FROM d.day)::int = ANY (p.months)
				   AND CASE WHEN p.days_and
							THEN extract(day FROM d.day)::int = ANY (p.days)
								 AND extract(dow FROM d.day)::int = ANY (p.weekdays)
							ELSE extract(day FROM d.day)::int = ANY (p.days)
								 OR extract(dow FROM d.day)::int = ANY (p.weekdays) END) x
		 WHERE x.at > after AND x.at <= until
		 ORDER BY x.at;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_runs(text, text, timestamptz, timestamptz) IS
	'The instants a schedule runs at in (after, until], read in timezone; across daylight-saving changes each local time runs once (a skipped local time runs at its shifted time)';

/*
 * The first run of a schedule after a given instant (NULL if none within 8 years).
 * Takes the instant as an argument so the computation is testable across DST changes.
 */
CREATE FUNCTION dialer.schedule_next_run(schedule text, timezone text, after timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_h		int;
	v_at	timestamptz;
BEGIN
	FOREACH v_h IN ARRAY ARRAY[2, 35, 400, 3000] LOOP
		SELECT min(r) INTO v_at
		  FROM dialer.schedule_runs(schedule, timezone, after, after + make_interval(days => v_h)) r;
		IF v_at IS NOT NULL THEN
			RETURN v_at;
		END IF;
	END LOOP;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_next_run(text, text, timestamptz) IS
	'The first instant after `after` at which a schedule, read in timezone, runs (NULL if none within 8 years)';

/*
 * The latest run of a schedule in (after, at], or NULL: the slot the scheduler owes.
 */
CREATE FUNCTION dialer.schedule_last_run(schedule text, timezone text, at timestamptz, after timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_h		int;
	v_lo	timestamptz;
	v_at	timestamptz;
BEGIN
	IF after IS NULL OR after >= at THEN
		RETURN NULL;
	END IF;
	FOREACH v_h IN ARRAY ARRAY[2, 35, 400, 3000] LOOP
		v_lo := greatest(after, at - make_interval(days => v_h));
		SELECT max(r) INTO v_at FROM dialer.schedule_runs(schedule, timezone, v_lo, at) r;
		IF v_at IS NOT NULL OR v_lo = after THEN
			RETURN v_at;
		END IF;
	END LOOP;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_last_run(text, text, timestamptz, timestamptz) IS
	'The latest instant in (after, at] at which a schedule, read in timezone, runs; NULL if none';

/* ------------------------------------------------------ validation trigger */

/*
 * Validates a campaign when it is written: the source exists and meets the contract
 * (and is stored schema-qualified), the time zone and schedule are valid.  Runs with the
 * writer's search_path so an unqualified source name resolves as the writer means it.
 */
CREATE FUNCTION dialer.campaigns_validate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' OR NEW.source IS DISTINCT FROM OLD.source THEN
		NEW.source := dialer.resolve_campaign_source(NEW.source);
		PERFORM dialer.campaign_source_query(NEW.source);
	END IF;
	IF NEW.timezone IS NOT NULL AND (TG_OP OPERATOR(pg_catalog.=) 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone)
	   AND NOT dialer.is_valid_timezone(NEW.timezone) THEN
		PERFORM dialer.raise_bad_argument('timezone', NEW.timezone,
			'A campaign''s schedule, "today" and calling window are read in this time zone, and PostgreSQL does not know it.',
			'Use an IANA name such as Asia/Kolkata (see pg_timezone_names).');
	END IF;
	IF NEW.schedule IS NOT NULL AND (TG_OP OPERATOR(pg_catalog.=) 'INSERT' OR NEW.schedule IS DISTINCT FROM OLD.schedule) THEN
		NEW.schedule := (dialer.parse_schedule(NEW.schedule)).normalized;
	END IF;
	IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
		NEW.updated_at := pg_catalog.now();
	END IF;
	RETURN NEW;
END;
$$;
COMMENT ON FUNCTION dialer.campaigns_validate() IS
	'Trigger validating dialer.campaigns rows: source (stored schema-qualified), time zone, schedule';

CREATE TRIGGER campaigns_validate BEFORE INSERT OR UPDATE ON dialer.campaigns
	FOR EACH ROW EXECUTE FUNCTION dialer.campaigns_validate();

/* ------------------------------------------------------------- candidates */

/*
 * Every candidate of a campaign's source with the verdict of the rules: included, or the
 * reason it is left out (the first rule it fails, in this order):
 *
 *   campaign_disabled     the campaign is disabled
 *   invalid_customer_ref  customer_ref is NULL or empty
 *   invalid_phone         phone is not E.164 (after removing spaces ( ) . -)
 *   invalid_timezone      the candidate's timezone is unknown
 *   invalid_payload       payload not an object, over 64 kB, bad mode or from
 *   do_not_call           the number is on dialer.do_not_call
 *   not_allowed           the campaign has an allow-list (pilot) without this number
 *   outside_lookahead     due_at's local date is before today or after today + days
 *   scheduled_today       a call of the campaign for this customer is due today (or
 *                         this run's dedupe key exists)
 *   call_pending          a call of the campaign to this customer or number is still
 *                         scheduled, dispatching or dialing
 *   called_recently       a call to the number reached the provider within
 *                         skip_called_within_days
 *   duplicate_customer    the source yields the customer again (the earliest due is kept)
 *   duplicate_phone       another included customer has the same number
 *   over_daily_cap        max_calls_per_day is used up
 *
 * Included candidates come first, in the order run_campaign takes them: earliest due_at
 * first (no due_at last), then customer_ref.  days overrides lookahead_days.
 */
CREATE FUNCTION dialer.campaign_candidates(campaign text, days int DEFAULT NULL)
RETURNS TABLE (customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz,
			   included boolean, reason text, detail text, dedupe_key text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
SET jit = off
AS $$
DECLARE
	k			dialer.campaigns := dialer.get_campaign(campaign);
	v_days		int;
	v_tz		text;
	v_today		date;
	v_start		timestamptz;
	v_end		timestamptz;
	v_suffix	text;
	v_rows		dialer.campaign_source_row[];
	v_kind		text;
	v_used		int;
	v_left		int;
	v_skip		int;
BEGIN
	IF days IS NOT NULL AND days NOT BETWEEN 0 AND 366 THEN
		PERFORM dialer.raise_bad_argument('days', days::text,
			'days is the lookahead window in days, from 0 (today only) to 366.',
			'Omit it to use the campaign''s lookahead_days.');
	END IF;
	v_days := coalesce(days, k.lookahead_days);
	v_tz := dialer.campaign_timezone(k.timezone);
	v_today := (now() AT TIME ZONE v_tz)::date;
	v_start := v_today::timestamp AT TIME ZONE v_tz;
	v_end := (v_today + 1)::timestamp AT TIME ZONE v_tz;
	v_suffix := CASE WHEN k.once_per_day THEN to_char(v_today, 'YYYY-MM-DD')
					 ELSE to_char(now() AT TIME ZONE v_tz, 'YYYY-MM-DD"T"HH24:MI') END;
	v_skip := coalesce(k.skip_called_within_days, 0);

	EXECUTE dialer.campaign_source_query(k.source) INTO v_rows USING v_tz;

	SELECT p.kind INTO v_kind FROM dialer.providers p WHERE p.name = k.provider;
	SELECT count(*) INTO v_used
	  FROM dialer.scheduled_calls c
	 WHERE c.campaign = k.name AND c.run_at >= v_start AND c.run_at < v_end
	   AND c.status NOT IN ('canceled', 'skipped');
	v_left := CASE WHEN k.max_calls_per_day IS NOT NULL THEN greatest(k.max_calls_per_day - v_used, 0) END;

	RETURN QUERY
	WITH today_calls AS MATERIALIZED (
		-- the campaign's calls due today, one per customer (bounded by a day's volume)
		SELECT DISTINCT ON (c.customer_ref) c.customer_ref, c.id, c.status
		  FROM dialer.scheduled_calls c
		 WHERE k.once_per_day AND c.campaign = k.name AND c.run_at >= v_start AND c.run_at < v_end
		   AND c.customer_ref IS NOT NULL
		 ORDER BY c.customer_ref, c.id
	), src AS (
		SELECT s.customer_ref AS ref,
			   s.phone AS raw_phone,
			   regexp_replace(s.phone, '[[:space:]().-]', '', 'g') AS num,
			   s.payload AS raw_payload,
			   k.payload || CASE WHEN jsonb_typeof(s.payload) = 'object' THEN s.payload ELSE '{}' END AS pl,
			   s.timezone AS tz,
			   s.due_at AS due,
			   s.o AS ord,
			   format('campaign:%s:%s:%s', k.name,
					  CASE WHEN length(s.customer_ref) <= 100 THEN s.customer_ref
						   ELSE 'md5.' || md5(s.customer_ref) END,
					  v_suffix) AS key
		  FROM unnest(v_rows) WITH ORDINALITY AS s(customer_ref, phone, payload, timezone, due_at, o)
	), ruled AS (
		SELECT src.*,
			CASE
				WHEN NOT k.enabled THEN 'campaign_disabled'
				WHEN src.ref IS NULL OR btrim(src.ref) = '' THEN 'invalid_customer_ref'
				WHEN src.num IS NULL OR src.num !~ '^\+[1-9][0-9]{7,14}$' THEN 'invalid_phone'
				WHEN src.tz IS NOT NULL AND NOT dialer.is_valid_timezone(src.tz) THEN 'invalid_timezone'
				WHEN bad.why IS NOT NULL THEN 'invalid_payload'
				WHEN dnc.number IS NOT NULL THEN 'do_not_call'
				WHEN k.allowed_numbers IS NOT NULL AND src.num <> ALL (k.allowed_numbers) THEN 'not_allowed'
				WHEN src.due IS NOT NULL
					 AND (src.due AT TIME ZONE v_tz)::date NOT BETWEEN v_today AND v_today + v_days THEN 'outside_lookahead'
				WHEN today.id IS NOT NULL THEN 'scheduled_today'
				WHEN pend.id IS NOT NULL THEN 'call_pending'
				WHEN recent.id IS NOT NULL THEN 'called_recently'
			END AS why,
			CASE
				WHEN NOT k.enabled THEN format('campaign %s is disabled', quote_literal(k.name))
				WHEN src.ref IS NULL OR btrim(src.ref) = '' THEN 'customer_ref is NULL or empty'
				WHEN src.num IS NULL OR src.num !~ '^\+[1-9][0-9]{7,14}$' THEN
					format('phone %s is not an E.164 number (+, then 8 to 15 digits, the first not 0)',
						   coalesce(quote_literal(src.raw_phone), 'NULL'))
				WHEN src.tz IS NOT NULL AND NOT dialer.is_valid_timezone(src.tz) THEN
					format('time zone %s is not known to PostgreSQL', quote_literal(src.tz))
				WHEN bad.why IS NOT NULL THEN bad.why
				WHEN dnc.number IS NOT NULL THEN
					format('%s is on the do-not-call list since %s%s', src.num, dnc.added_at,
						   coalesce(' (' || dnc.reason || ')', ''))
				WHEN k.allowed_numbers IS NOT NULL AND src.num <> ALL (k.allowed_numbers) THEN
					format('%s is not in the campaign''s allowed_numbers (pilot allow-list)', src.num)
				WHEN src.due IS NOT NULL
					 AND (src.due AT TIME ZONE v_tz)::date NOT BETWEEN v_today AND v_today + v_days THEN
					format('due on %s, outside the lookahead window %s to %s (%s)',
						   (src.due AT TIME ZONE v_tz)::date, v_today, v_today + v_days, v_tz)
				WHEN today.id IS NOT NULL THEN
					format('call %s (%s) is already scheduled for this customer today', today.id, today.status)
				WHEN pend.id IS NOT NULL THEN
					format('call %s to %s is still %s', pend.id, pend.to_number, pend.status)
				WHEN recent.id IS NOT NULL THEN
					format('call %s reached the provider at %s (%s), within the last %s days',
						   recent.id, recent.at, recent.status, v_skip)
			END AS why_detail
		  FROM src
		  LEFT JOIN LATERAL (
				SELECT CASE
					WHEN src.raw_payload IS NOT NULL AND jsonb_typeof(src.raw_payload) <> 'object' THEN
						format('payload must be a JSON object, not %s', jsonb_typeof(src.raw_payload))
					WHEN octet_length(src.pl::text) > 65536 THEN
						format('payload is %s bytes, over 64 kB', octet_length(src.pl::text))
					WHEN v_kind = 'backend' AND upper(coalesce(src.pl->>'mode', 'DIRECT')) NOT IN ('DIRECT', 'BRIEF_START') THEN
						format('payload.mode %s is neither DIRECT nor BRIEF_START', quote_literal(src.pl->>'mode'))
					WHEN src.pl ? 'from' AND (jsonb_typeof(src.pl->'from') <> 'string'
											  OR (src.pl->>'from') !~ '^\+[1-9][0-9]{7,14}$') THEN
						format('payload.from %s is not an E.164 number', src.pl->'from')
				END AS why) bad ON true
		  LEFT JOIN dialer.do_not_call dnc ON dnc.number = src.num
		  LEFT JOIN today_calls tc ON tc.customer_ref = src.ref
		  LEFT JOIN LATERAL (
				SELECT tc.id, tc.status WHERE tc.id IS NOT NULL
				UNION ALL
				SELECT c.id, c.status FROM dialer.scheduled_calls c
				 WHERE c.dedupe_key = src.key
				LIMIT 1) today ON true
		  LEFT JOIN LATERAL (
				SELECT c.id, c.status, c.to_number FROM dialer.scheduled_calls c
				 WHERE c.campaign = k.name AND c.customer_ref = src.ref
				   AND c.status IN ('scheduled', 'dispatching', 'dialing')
				UNION ALL
				SELECT c.id, c.status, c.to_number FROM dialer.scheduled_calls c
				 WHERE c.to_number = src.num AND c.campaign = k.name
				   AND c.status IN ('scheduled', 'dispatching', 'dialing')
				LIMIT 1) pend ON true
		  LEFT JOIN LATERAL (
				SELECT c.id, c.status, greatest(c.run_at, c.next_attempt_at) AS at
				  FROM dialer.scheduled_calls c
				 WHERE v_skip > 0 AND c.to_number = src.num
				   AND c.status IN ('dispatching', 'dialing', 'completed', 'no_answer', 'busy', 'failed', 'unknown')
				   AND greatest(c.run_at, c.next_attempt_at) > now() - make_interval(days => v_skip)
				   AND greatest(c.run_at, c.next_attempt_at) <= now()
				 ORDER BY greatest(c.run_at, c.next_attempt_at) DESC
				 LIMIT 1) recent ON true
	), by_customer AS (
		SELECT ruled.*,
			   row_number() OVER (PARTITION BY ruled.why IS NULL, ruled.ref
								  ORDER BY ruled.due NULLS LAST, ruled.ord) AS n_ref
		  FROM ruled
	), by_number AS (
		SELECT b.*,
			   coalesce(b.why, CASE WHEN b.n_ref > 1 THEN 'duplicate_customer' END) AS why2,
			   row_number() OVER (PARTITION BY b.why IS NULL AND b.n_ref = 1, b.num
								  ORDER BY b.due NULLS LAST, b.ref, b.ord) AS n_num,
			   first_value(b.ref) OVER (PARTITION BY b.why IS NULL AND b.n_ref = 1, b.num
										ORDER BY b.due NULLS LAST, b.ref, b.ord) AS num_owner
		  FROM by_customer b
	), capped AS (
		SELECT n.*,
			   coalesce(n.why2, CASE WHEN n.n_num > 1 THEN 'duplicate_phone' END) AS why3,
			   row_number() OVER (PARTITION BY coalesce(n.why2, CASE WHEN n.n_num > 1 THEN 'duplicate_phone' END) IS NULL
								  ORDER BY n.due NULLS LAST, n.ref, n.ord) AS pick
		  FROM by_number n
	), final AS (
		SELECT c.*,
			   coalesce(c.why3, CASE WHEN v_left IS NOT NULL AND c.pick > v_left THEN 'over_daily_cap' END) AS verdict
		  FROM capped c
	)
	SELECT f.ref, coalesce(f.num, f.raw_phone), f.pl, coalesce(f.tz, k.timezone), f.due,
		   f.verdict IS NULL,
		   f.verdict,
		   CASE f.verdict
				WHEN 'duplicate_customer' THEN
					format('customer %s appears more than once in the source; its earliest due row is kept', quote_literal(f.ref))
				WHEN 'duplicate_phone' THEN
					format('%s is also the number of customer %s, who is called', f.num, quote_literal(f.num_owner))
				WHEN 'over_daily_cap' THEN
					format('the daily cap of %s calls is reached (%s due today before this run)', k.max_calls_per_day, v_used)
				ELSE f.why_detail END,
		   CASE WHEN f.verdict IS NULL THEN f.key END
	  FROM final f
	 ORDER BY f.verdict IS NOT NULL, f.due NULLS LAST, f.ref, f.ord;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_candidates(text, int) IS
	'Every candidate of a campaign''s source with included, the reason it is left out (campaign_disabled, invalid_customer_ref, invalid_phone, invalid_timezone, invalid_payload, do_not_call, not_allowed, outside_lookahead, scheduled_today, call_pending, called_recently, duplicate_customer, duplicate_phone, over_daily_cap) and a detail; days overrides lookahead_days. Reads the source with the caller''s rights.';

/*
 * The candidates a run would enqueue now, in the order it takes them.
 */
CREATE FUNCTION dialer.pending_customers(campaign text, days int DEFAULT NULL, max_rows int DEFAULT 50)
RETURNS TABLE (customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz, dedupe_key text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF max_rows < 0 THEN
		PERFORM dialer.raise_bad_argument('max_rows', max_rows::text,
			'max_rows is how many candidates to return: 0 or more (NULL: all).', 'Omit it for 50.');
	END IF;
	RETURN QUERY
		SELECT c.customer_ref, c.phone, c.payload, c.timezone, c.due_at, c.dedupe_key
		  FROM dialer.campaign_candidates(campaign, days) c
		 WHERE c.included
		 LIMIT max_rows;
END;
$$;
COMMENT ON FUNCTION dialer.pending_customers(text, int, int) IS
	'The candidates of a campaign left after every rule and the do-not-call list, in the order run_campaign takes them (at most max_rows; NULL: all). Why others are left out: dialer.campaign_candidates().';

/* -------------------------------------------------------------------- runs */

/*
 * Enqueues one candidate of a campaign (run_campaign's writer): the campaign's provider
 * and priority, the dedupe key, and the customer_ref stamped on the call.  Returns the
 * new call's id, or NULL when the dedupe key is already stored (nothing written).
 */
CREATE FUNCTION dialer.campaign_enqueue(campaign text, customer_ref text, to_number text, payload jsonb,
										timezone text, dedupe_key text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	k		dialer.campaigns := dialer.get_campaign(campaign_enqueue.campaign);
	v_id	bigint;
BEGIN
	IF campaign_enqueue.dedupe_key IS NULL THEN
		PERFORM dialer.raise_bad_argument('dedupe_key', NULL, 'Campaign calls always carry a dedupe key.',
			'Use dialer.run_campaign().', '22004');
	END IF;
	IF EXISTS (SELECT 1 FROM dialer.scheduled_calls c WHERE c.dedupe_key = campaign_enqueue.dedupe_key) THEN
		RETURN NULL;
	END IF;
	v_id := dialer.enqueue_call(
		to_number => campaign_enqueue.to_number,
		run_at => now(),
		provider => k.provider,
		payload => campaign_enqueue.payload,
		campaign => k.name,
		dedupe_key => campaign_enqueue.dedupe_key,
		priority => k.priority,
		max_attempts => k.max_attempts,
		timezone => campaign_enqueue.timezone);
	UPDATE dialer.scheduled_calls c
	   SET customer_ref = campaign_enqueue.customer_ref
	 WHERE c.id = v_id AND c.customer_ref IS NULL;
	RETURN v_id;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_enqueue(text, text, text, jsonb, text, text) IS
	'Internal: enqueues one candidate of a campaign (provider, priority, max_attempts of the campaign; customer_ref stamped); NULL when its dedupe key is already stored';

/*
 * Enqueues the pending customers of a campaign, at most max_calls, and returns how many
 * it enqueued.  Runs of one campaign are serialized by a transaction-level advisory lock
 * taken before the candidates are read, so two sessions running it at once (or pg_cron
 * and a person pressing "run now") never schedule a customer twice and never exceed the
 * daily cap; every call also carries a dedupe key campaign:<name>:<customer_ref>:<local
 * date> (…:<local date>T<HH:MM> when once_per_day is off).
 */
CREATE FUNCTION dialer.run_campaign(campaign text, max_calls int DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k		dialer.campaigns := dialer.get_campaign(campaign);
	r		record;
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

	FOR r IN
		SELECT c.customer_ref, c.phone, c.payload, c.timezone, c.dedupe_key
		  FROM dialer.campaign_candidates(k.name) c
		 WHERE c.included
		 LIMIT max_calls
	LOOP
		IF dialer.campaign_enqueue(k.name, r.customer_ref, r.phone, r.payload, r.timezone, r.dedupe_key) IS NOT NULL THEN
			v_n := v_n + 1;
		END IF;
	END LOOP;
	RETURN v_n;
END;
$$;
COMMENT ON FUNCTION dialer.run_campaign(text, int) IS
	'Enqueues the pending customers of a campaign (at most max_calls) with dedupe keys and returns how many it enqueued; concurrent runs of one campaign are serialized, so nobody is scheduled twice and the daily cap holds. Also "run now".';

/* -------------------------------------------------------------- scheduling */

/*
 * Scheduled runs, one row per (campaign, slot): the claim that makes a slot run once.
 */
CREATE TABLE dialer.campaign_runs (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	campaign		text NOT NULL REFERENCES dialer.campaigns (name) ON UPDATE CASCADE ON DELETE CASCADE,
	slot			timestamptz NOT NULL,
	local_slot		timestamp NOT NULL,
	timezone		text NOT NULL,
	run_as			name,
	started_at		timestamptz NOT NULL DEFAULT clock_timestamp(),
	finished_at		timestamptz,
	outcome			text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'error', 'disabled')),
	enqueued		int,
	error			text,
	UNIQUE (campaign, slot)
);
COMMENT ON TABLE dialer.campaign_runs IS
	'Scheduled runs of campaigns, one per (campaign, slot): what fired when, how many calls it enqueued, or its error. Kept 90 days (the latest run of a campaign always).';
COMMENT ON COLUMN dialer.campaign_runs.slot IS 'The instant the schedule asked for (the run itself started at started_at)';
COMMENT ON COLUMN dialer.campaign_runs.local_slot IS 'The slot as local time in the campaign''s time zone';
COMMENT ON COLUMN dialer.campaign_runs.run_as IS 'Role whose privileges the run used (the campaign''s scheduled_by)';
COMMENT ON COLUMN dialer.campaign_runs.outcome IS 'running, ok, error (see error) or disabled (the campaign was disabled at its slot: nothing enqueued)';
SELECT pg_catalog.pg_extension_config_dump('dialer.campaign_runs', '');

CREATE FUNCTION dialer.require_pg_cron()
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron') THEN
		RAISE EXCEPTION 'pg_cron is not installed in database %', quote_ident(current_database())
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Campaign schedules are run by a pg_cron job. cron.database_name is %s.',
								  coalesce(quote_literal(nullif(current_setting('cron.database_name', true), '')),
										   'not set (pg_cron is not in shared_preload_libraries)')),
				  HINT = 'CREATE EXTENSION pg_cron in the database named by cron.database_name (pg_cron must be in shared_preload_libraries), and use pg_dialer in that database; or run campaigns yourself with dialer.run_campaign().';
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.require_pg_cron() IS
	'Internal: raises SQLSTATE 55000 "pg_cron is not installed" unless pg_cron is in this database';

/*
 * The one pg_cron job, owned by the extension owner, that runs
 * dialer.run_scheduled_campaigns() every minute while any campaign is scheduled.
 * pg_cron is looked up at run time (dynamic SQL with parameters): pg_dialer does not
 * depend on it.
 */
CREATE FUNCTION dialer.campaign_ticker(enable boolean)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_job		bigint;
	v_sched		text;
	v_cmd		text;
BEGIN
	PERFORM dialer.require_pg_cron();
	EXECUTE 'SELECT j.jobid, j.schedule, j.command FROM cron.job j WHERE j.jobname = $1 AND j.username = current_user'
	   INTO v_job, v_sched, v_cmd
	  USING 'pg_dialer_campaigns'::text;
	IF enable THEN
		IF v_job IS NULL OR v_sched <> '* * * * *' OR v_cmd <> 'SELECT dialer.run_scheduled_campaigns()' THEN
			EXECUTE 'SELECT cron.schedule($1, $2, $3)'
			   INTO v_job
			  USING 'pg_dialer_campaigns'::text, '* * * * *'::text, 'SELECT dialer.run_scheduled_campaigns()'::text;
		END IF;
		RETURN v_job;
	END IF;
	IF v_job IS NOT NULL THEN
		EXECUTE 'SELECT cron.unschedule($1)' USING v_job;
	END IF;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_ticker(boolean) IS
	'Internal: creates (true) or removes (false) the pg_cron job pg_dialer_campaigns that runs dialer.run_scheduled_campaigns() every minute; returns its job id';

/*
 * Schedules a campaign: schedule is read in the campaign's time zone ('daily 10:00' in
 * Asia/Kolkata is 10:00 IST every day; in America/New_York it is 10:00 EST or EDT).
 * Returns the next run.  Needs pg_cron in this database.
 */
CREATE FUNCTION dialer.schedule_campaign(campaign text, schedule text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	k		dialer.campaigns := dialer.get_campaign(schedule_campaign.campaign);
	v_s		text := (dialer.parse_schedule(schedule_campaign.schedule)).normalized;
	v_tz	text := dialer.campaign_timezone(k.timezone);
	v_next	timestamptz := dialer.schedule_next_run(v_s, v_tz, now());
BEGIN
	IF v_next IS NULL THEN
		PERFORM dialer.raise_bad_argument('schedule', schedule_campaign.schedule,
			'This schedule never runs (no date in the next 8 years matches its day and month fields).',
			'Check the day-of-month and month fields, e.g. ''0 9 30 2 *'' asks for February 30.');
	END IF;
	PERFORM dialer.require_pg_cron();
	PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.campaign'), hashtext('pg_dialer_campaigns ticker'));
	UPDATE dialer.campaigns c
	   SET schedule = v_s, schedule_since = now(), scheduled_by = current_user
	 WHERE c.name = k.name;
	PERFORM dialer.campaign_ticker(true);
	RETURN v_next;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_campaign(text, text) IS
	'Schedules a campaign on pg_cron: schedule (''daily HH:MM'', @daily..., or a 5-field cron expression) is read in the campaign''s time zone, across daylight-saving changes; runs use the caller''s privileges. Returns the next run. Error 55000 when pg_cron is not installed here.';

/*
 * Undoes schedule_campaign: true when the campaign was scheduled.  Removes the pg_cron
 * job when no campaign is scheduled any more.
 */
CREATE FUNCTION dialer.unschedule_campaign(campaign text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k	dialer.campaigns := dialer.get_campaign(campaign);
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.campaign'), hashtext('pg_dialer_campaigns ticker'));
	k := dialer.get_campaign(k.name);
	IF k.schedule IS NULL THEN
		RETURN false;
	END IF;
	UPDATE dialer.campaigns c
	   SET schedule = NULL, schedule_since = NULL, scheduled_by = NULL
	 WHERE c.name = k.name;
	IF NOT EXISTS (SELECT 1 FROM dialer.campaigns c WHERE c.schedule IS NOT NULL)
	   AND EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron') THEN
		PERFORM dialer.campaign_ticker(false);
	END IF;
	RETURN true;
END;
$$;
COMMENT ON FUNCTION dialer.unschedule_campaign(text) IS
	'Unschedules a campaign (true when it was scheduled); the pg_cron job goes when no campaign is scheduled';

/*
 * What the pg_cron job runs every minute: for each scheduled campaign, the latest slot
 * of its schedule in (its last run's slot or when it was scheduled, at] is claimed in
 * dialer.campaign_runs (unique per campaign and slot, so a slot runs once even if two
 * callers race) and run with the privileges of the role that scheduled it.  Slots missed
 * while nothing ran (server down) collapse into one late run.  A failing campaign is
 * recorded as error and does not stop the others.  `at` is the instant to evaluate
 * (tests pass one; the enqueued calls always use the real time).  Returns how many
 * slots it claimed.
 */
CREATE FUNCTION dialer.run_scheduled_campaigns(at timestamptz DEFAULT now())
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k		record;
	v_me	name := current_user;
	v_tz	text;
	v_last	timestamptz;
	v_slot	timestamptz;
	v_run	bigint;
	v_n		int;
	v_count	int := 0;
	v_msg	text;
BEGIN
	IF at IS NULL THEN
		PERFORM dialer.raise_bad_argument('at', NULL, 'The instant to evaluate is required.', 'Omit it for now().', '22004');
	END IF;
	FOR k IN SELECT * FROM dialer.campaigns c WHERE c.schedule IS NOT NULL ORDER BY c.name LOOP
		v_tz := dialer.campaign_timezone(k.timezone);
		SELECT max(r.slot) INTO v_last FROM dialer.campaign_runs r WHERE r.campaign = k.name;
		v_slot := dialer.schedule_last_run(k.schedule, v_tz, at, greatest(v_last, k.schedule_since));
		CONTINUE WHEN v_slot IS NULL;

		INSERT INTO dialer.campaign_runs AS r (campaign, slot, local_slot, timezone, run_as)
		VALUES (k.name, v_slot, v_slot AT TIME ZONE v_tz, v_tz, k.scheduled_by)
		ON CONFLICT (campaign, slot) DO NOTHING
		RETURNING r.id INTO v_run;
		CONTINUE WHEN v_run IS NULL;
		v_count := v_count + 1;

		DELETE FROM dialer.campaign_runs r
		 WHERE r.campaign = k.name AND r.slot < at - interval '90 days' AND r.id <> v_run;

		IF NOT k.enabled THEN
			UPDATE dialer.campaign_runs r SET outcome = 'disabled', enqueued = 0, finished_at = clock_timestamp()
			 WHERE r.id = v_run;
			CONTINUE;
		END IF;
		BEGIN
			IF k.scheduled_by <> v_me THEN
				PERFORM set_config('role', k.scheduled_by, true);
			END IF;
			v_n := dialer.run_campaign(k.name);
			IF k.scheduled_by <> v_me THEN
				PERFORM set_config('role', v_me, true);
			END IF;
			UPDATE dialer.campaign_runs r SET outcome = 'ok', enqueued = v_n, finished_at = clock_timestamp()
			 WHERE r.id = v_run;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
			UPDATE dialer.campaign_runs r SET outcome = 'error', error = v_msg, finished_at = clock_timestamp()
			 WHERE r.id = v_run;
			RAISE WARNING 'pg_dialer: scheduled run of campaign % (slot %) failed: %', quote_literal(k.name), v_slot, v_msg;
		END;
	END LOOP;
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.run_scheduled_campaigns(timestamptz) IS
	'Run by the pg_cron job every minute: runs each scheduled campaign whose latest local-time slot up to `at` has not run yet (once per slot, recorded in dialer.campaign_runs); returns how many slots it ran';

CREATE VIEW dialer.campaign_schedules AS
SELECT c.name AS campaign,
	   c.schedule,
	   dialer.campaign_timezone(c.timezone) AS timezone,
	   c.enabled,
	   c.scheduled_by,
	   c.schedule_since,
	   r.slot AS last_slot,
	   r.started_at AS last_started_at,
	   r.outcome AS last_outcome,
	   r.enqueued AS last_enqueued,
	   r.error AS last_error,
	   coalesce(dialer.schedule_last_run(c.schedule, dialer.campaign_timezone(c.timezone), now(),
										 greatest(r.slot, c.schedule_since)),
				dialer.schedule_next_run(c.schedule, dialer.campaign_timezone(c.timezone), now())) AS next_run_at
  FROM dialer.campaigns c
  LEFT JOIN LATERAL (SELECT * FROM dialer.campaign_runs r WHERE r.campaign = c.name
					  ORDER BY r.slot DESC LIMIT 1) r ON true
 WHERE c.schedule IS NOT NULL;
COMMENT ON VIEW dialer.campaign_schedules IS
	'Scheduled campaigns: schedule, time zone, the last run (slot, outcome, calls enqueued, error) and the next run (a slot already due that the next pg_cron tick will run, else the next one)';

/* -------------------------------------------------------------- privileges */

/*
 * Grants a role the use of campaigns: read them and their runs, see pending customers
 * and reasons, run them (the role must be able to read each campaign's source itself).
 * With manage => true also create, change and delete campaigns and (un)schedule them.
 */
CREATE FUNCTION dialer.grant_campaigns(role_name name, manage boolean DEFAULT false)
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
				   'dialer.campaign_enqueue(text, text, text, jsonb, text, text), '
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
COMMENT ON FUNCTION dialer.grant_campaigns(name, boolean) IS
	'Grants a role the use of campaigns (pending_customers, campaign_candidates, run_campaign, schedules); manage => true also lets it write dialer.campaigns and (un)schedule them. Sources are read with the role''s own rights.';
/*
 * pg_dialer 0.1.0: privileges.
 *
 * Nothing is granted to PUBLIC: the owner (the role that created the extension)
 * grants each application role exactly what it needs; see README, "Privileges".
 * The secret columns of dialer.providers stay the owner's even when other roles
 * may read the rest of the provider configuration.
 */
REVOKE ALL ON ALL TABLES IN SCHEMA dialer FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer FROM PUBLIC;

-- Harmless helpers anyone may call.
GRANT EXECUTE ON FUNCTION dialer.is_valid_timezone(text) TO PUBLIC;

/*
 * Grants a role the everyday use of pg_dialer: enqueue, cancel, retry and inspect
 * calls, read the queue and the non-secret provider configuration.  Provider
 * secrets stay unreadable to it.
 */
CREATE FUNCTION dialer.grant_usage(role_name name)
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
				   'status_callback_url, allowed_hosts, ring_timeout, machine_detection, max_concurrency, '
				   'calls_per_second, retry_busy, retry_no_answer, retry_delay, enabled, created_at, updated_at) '
				   'ON dialer.providers TO %I', role_name);
	EXECUTE format('GRANT EXECUTE ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz), '
				   'dialer.cancel_call(bigint), dialer.retry_call(bigint), dialer.call_details(bigint), '
				   'dialer.stats(date), dialer.worker_status() TO %I', role_name);
END;
$$;
COMMENT ON FUNCTION dialer.grant_usage(name) IS
	'Grants a role the everyday use of pg_dialer (enqueue, cancel, retry, inspect; read the queue and the non-secret provider columns). Secrets stay the owner''s.';
REVOKE ALL ON FUNCTION dialer.grant_usage(name) FROM PUBLIC;
