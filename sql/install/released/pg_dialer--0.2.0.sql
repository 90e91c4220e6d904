/*
 * pg_dialer: the tables, and the rules every row obeys.
 *
 *   dialer.is_e164(), domain dialer.e164   the E.164 rule (its one home)
 *   dialer.providers, dialer.campaigns     where calls go, and recurring sources of calls
 *   dialer.scheduled_calls                 the queue and the record of every call
 *   dialer.call_attempts, call_events      the call log: requests made, every state change
 *   dialer.do_not_call                     numbers never dialled
 * with the triggers that keep them consistent (provider defaults and renames, events
 * append-only and following their calls, no TRUNCATE of the record).
 *
 * The queue and the record of every call live in ordinary logged tables, so a call
 * survives a crash exactly as the application's own data does.  This file is the first
 * part of the install script sql/install/pg_dialer--VERSION.sql (the Makefile concatenates sql/install/parts/ in order).
 *
 * Copyright (c) 2026, pg_dialer developers
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_dialer" to load this file. \quit

COMMENT ON SCHEMA dialer IS
	'pg_dialer: the outbound call queue (scheduled_calls), its log (call_attempts, call_events), providers, campaigns, do_not_call, and the SQL API (enqueue_call, cancel_call, stats, ...)';

/*
 * The rule of a phone number in E.164 form: "+", then 8 to 15 digits, the first not 0
 * (NULL for NULL).  Its one home (src/e164.c): the domain dialer.e164 below checks it,
 * and so do enqueue's validation (dialer.call_rule) and the campaigns.  In C because it
 * runs for every number enqueued, often twice: a regular expression costs far more.
 */
CREATE FUNCTION dialer.is_e164(number text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_is_e164';
COMMENT ON FUNCTION dialer.is_e164(text) IS
	'True when number is a phone number in E.164 form: + then 8 to 15 digits, the first not 0 (the rule of the domain dialer.e164)';

/*
 * Whether every element of numbers is an E.164 number (dialer.is_e164); true for an
 * empty array.  For a list of numbers in a CHECK, where no subquery may stand.
 */
CREATE FUNCTION dialer.all_e164(numbers text[])
RETURNS boolean
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT coalesce(pg_catalog.bool_and(dialer.is_e164(n)), true) FROM pg_catalog.unnest(numbers) AS n;
$$;
COMMENT ON FUNCTION dialer.all_e164(text[]) IS
	'True when every element of numbers is an E.164 number (dialer.is_e164), and for an empty array';

/*
 * A phone number in E.164 form (dialer.is_e164).  A domain rather than a table CHECK,
 * so the rule is tested when a number is written, not again on every update of the row.
 */
CREATE DOMAIN dialer.e164 AS text
	CONSTRAINT e164_format CHECK (dialer.is_e164(VALUE));
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
	status_callback_call_id	boolean NOT NULL DEFAULT true,
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
COMMENT ON COLUMN dialer.providers.status_callback_url IS 'Public URL the provider posts call status to; the call id is added to its query string unless status_callback_call_id is false';
COMMENT ON COLUMN dialer.providers.status_callback_call_id IS 'Twilio: the worker appends call_id=<id> to the StatusCallback URL (true: the shipped nginx deployment); false: the URL is sent exactly as configured, with no query string added (PostgREST without the proxy refuses one), and callbacks are matched by CallSid';
COMMENT ON COLUMN dialer.providers.allowed_hosts IS 'backend: hosts a per-call base_url (payload.base_url) may name';
COMMENT ON COLUMN dialer.providers.ring_timeout IS 'Twilio Timeout: seconds to let the phone ring';
COMMENT ON COLUMN dialer.providers.machine_detection IS 'Twilio MachineDetection (Enable or DetectMessageEnd), or NULL for none';
COMMENT ON COLUMN dialer.providers.max_concurrency IS 'Calls of this provider in progress at once, counted from dispatch until the final status (or dialer.reconcile_after without news); NULL: no limit beyond dialer.max_concurrency requests in flight';
COMMENT ON COLUMN dialer.providers.calls_per_second IS 'Requests per second sent to this provider; when omitted, 1 for twilio (a new Twilio account''s limit) and 10 for the other kinds';
COMMENT ON COLUMN dialer.providers.retry_busy IS 'Re-schedule busy calls after retry_delay, up to max_attempts';
COMMENT ON COLUMN dialer.providers.retry_no_answer IS 'Re-schedule unanswered calls after retry_delay, up to max_attempts';
COMMENT ON COLUMN dialer.providers.enabled IS 'A disabled provider''s calls stay scheduled until it is enabled again';
COMMENT ON COLUMN dialer.providers.name IS 'Provider name (letters, digits, _ . -; at most 63): what enqueue_call(provider => ...) and campaigns name; enqueue_call uses ''default'' unless told otherwise';
COMMENT ON COLUMN dialer.providers.retry_delay IS 'Delay before a busy or unanswered call is re-scheduled (retry_busy, retry_no_answer)';
COMMENT ON COLUMN dialer.providers.created_at IS 'When the provider was added';
COMMENT ON COLUMN dialer.providers.updated_at IS 'Last change of the row (stamped by a trigger); the worker reloads providers when it changes';

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
CREATE TRIGGER providers_defaults BEFORE INSERT OR UPDATE ON dialer.providers
	FOR EACH ROW EXECUTE FUNCTION dialer.providers_defaults();

/*
 * Campaigns: named recurring sources of calls.  Rules are data; the functions that read
 * them (pending_customers, campaign_candidates, run_campaign, schedule_campaign) and the
 * source contract are in sql/install/parts/40_campaigns.sql.  A trigger there validates each row.
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
									   AND dialer.all_e164(allowed_numbers))),
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
COMMENT ON COLUMN dialer.campaigns.created_at IS 'When the campaign was created';
COMMENT ON COLUMN dialer.campaigns.updated_at IS 'Last change of the campaign''s row';

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
	provider			text NOT NULL,	-- a row of dialer.providers: see providers_keep_calls below
	mode				text,
	payload				jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
	campaign			text,
	customer_ref		text,
	dedupe_key			text CHECK (length(dedupe_key) <= 200),	-- unique: scheduled_calls_dedupe_key_idx
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
	reconcile_searches	int NOT NULL DEFAULT 0 CHECK (reconcile_searches >= 0),
	reconcile_failures	int NOT NULL DEFAULT 0 CHECK (reconcile_failures >= 0),
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
COMMENT ON COLUMN dialer.scheduled_calls.timezone IS 'Recipient''s IANA time zone for the calling window (NULL: the campaign''s, else the number''s from libphonenumber, else dialer.default_timezone)';
COMMENT ON COLUMN dialer.scheduled_calls.deadline IS 'A call not started by then becomes expired';
COMMENT ON COLUMN dialer.scheduled_calls.provider_call_id IS 'The provider''s id of the call (Twilio CallSid)';
COMMENT ON COLUMN dialer.scheduled_calls.finished_at IS 'When the call reached a final status';
COMMENT ON COLUMN dialer.scheduled_calls.updated_at IS 'Last change or news of the call (a call in progress without news for dialer.reconcile_after no longer counts against max_concurrency)';
COMMENT ON COLUMN dialer.scheduled_calls.reconciled_at IS 'When the call was last looked up at its provider (reconciliation); a lookup is not news';
COMMENT ON COLUMN dialer.scheduled_calls.id IS 'Call id, returned by enqueue_call (identity)';
COMMENT ON COLUMN dialer.scheduled_calls.to_number IS 'Number to call (E.164)';
COMMENT ON COLUMN dialer.scheduled_calls.from_number IS 'Caller id (E.164): payload.from, else the provider''s from_number';
COMMENT ON COLUMN dialer.scheduled_calls.provider IS 'Provider (dialer.providers.name) the call is sent through: checked by enqueue_call/enqueue_calls, which hold the provider row FOR KEY SHARE; a provider with calls cannot be deleted, and a renamed provider''s calls follow it (trigger providers_keep_calls)';
COMMENT ON COLUMN dialer.scheduled_calls.payload IS 'JSON object (at most 64 kB) handed to the provider: e.g. url, twiml_url or message (twilio), mode and the script (backend), from';
COMMENT ON COLUMN dialer.scheduled_calls.provider_status IS 'Last status the provider reported (e.g. Twilio queued, ringing, in-progress, completed)';
COMMENT ON COLUMN dialer.scheduled_calls.last_error IS 'Last error of the call: the provider''s code and message, or a transport error (never secrets)';
COMMENT ON COLUMN dialer.scheduled_calls.created_at IS 'When the call was enqueued';
COMMENT ON SEQUENCE dialer.scheduled_calls_id_seq IS 'Identity of dialer.scheduled_calls.id (call ids)';
COMMENT ON COLUMN dialer.scheduled_calls.reconcile_failures IS 'Lookups of the call at its provider (reconciliation) that failed in a row (an error, a 404, an answer without a status); after 3 a dialing call becomes unknown and is no longer looked up; back to 0 when a lookup answers, a request is accepted or retry_call starts a new run';
COMMENT ON COLUMN dialer.scheduled_calls.reconcile_searches IS 'How many times the call, unknown without a provider call id, was searched for at its provider by what was sent (at most 3; back to 0 when a search settles it or retry_call starts a new run)';

/*
 * scheduled_calls.provider names a provider without a foreign key: the key's check ran
 * a query of its own for every call written (a third of the cost of a bulk insert into
 * the queue), while every call is written by enqueue_call or enqueue_calls, which check
 * that the provider exists and hold its row FOR KEY SHARE until they commit, as the
 * key's check did.  What the key did on the providers' side, these triggers do: a
 * provider that still has calls cannot be deleted (SQLSTATE 23503, as before), and the
 * calls of a renamed provider follow it (ON UPDATE CASCADE, as before).
 */
CREATE FUNCTION dialer.providers_keep_calls()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		IF EXISTS (SELECT 1 FROM dialer.scheduled_calls c WHERE c.provider = OLD.name) THEN
			RAISE EXCEPTION 'provider % still has calls', quote_literal(OLD.name)
				USING ERRCODE = 'foreign_key_violation',
					  DETAIL = format('Key (name)=(%s) is still referenced from table "scheduled_calls".', OLD.name),
					  HINT = 'Disable it (enabled = false) instead, or delete its calls first (dialer.cleanup() removes finished ones).';
		END IF;
		RETURN OLD;
	END IF;
	UPDATE dialer.scheduled_calls c SET provider = NEW.name WHERE c.provider = OLD.name;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.providers_keep_calls() IS
	'Trigger: refuses to delete a provider that has calls (23503) and makes the calls of a renamed provider follow it';
CREATE TRIGGER providers_keep_calls BEFORE DELETE ON dialer.providers
	FOR EACH ROW EXECUTE FUNCTION dialer.providers_keep_calls();
CREATE TRIGGER providers_rename_calls AFTER UPDATE OF name ON dialer.providers
	FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
	EXECUTE FUNCTION dialer.providers_keep_calls();

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
-- Unknown calls without a provider call id still to be searched for at their
-- provider (dialer.claim_searches), by last news.
CREATE INDEX scheduled_calls_search_idx ON dialer.scheduled_calls (provider, updated_at)
	WHERE status = 'unknown' AND provider_call_id IS NULL AND reconcile_searches < 3;
-- At most one call per dedupe key; calls without one cost this index nothing.
CREATE UNIQUE INDEX scheduled_calls_dedupe_key_idx ON dialer.scheduled_calls (dedupe_key)
	WHERE dedupe_key IS NOT NULL;
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
CREATE INDEX call_attempts_provider_call_id_idx ON dialer.call_attempts (provider_call_id)
	WHERE provider_call_id IS NOT NULL;

/*
 * Append-only history of every call: each state change and notable event.
 */
CREATE TABLE dialer.call_events (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id				bigint NOT NULL,	-- no foreign key: see call_events_follow_calls below
	at					timestamptz NOT NULL DEFAULT clock_timestamp(),
	event				text NOT NULL,
	from_status			text,
	to_status			text,
	detail				jsonb NOT NULL DEFAULT '{}'
);

COMMENT ON TABLE dialer.call_events IS 'Append-only history of every call: state changes and notable events. Rows go only with their call (dialer.cleanup)';
COMMENT ON COLUMN dialer.call_events.event IS 'What happened: enqueued, skipped, claimed, accepted, retry_scheduled, failed, canceled, requeued, window_wait, expired, unknown, callback, ...';
COMMENT ON COLUMN dialer.call_events.detail IS 'Details of the event (never secrets)';
COMMENT ON COLUMN dialer.call_events.id IS 'Event id (identity): the order of events';
COMMENT ON COLUMN dialer.call_events.call_id IS 'The call (dialer.scheduled_calls.id) the event belongs to. Written only by the extension''s functions for a call they just wrote or locked; the events of a deleted call are deleted with it (trigger call_events_follow_calls)';
COMMENT ON COLUMN dialer.call_events.at IS 'When it happened (clock time, not transaction start)';
COMMENT ON COLUMN dialer.call_events.from_status IS 'Status of the call before the event (NULL: no state change or a new call)';
COMMENT ON COLUMN dialer.call_events.to_status IS 'Status of the call after the event (NULL: no state change)';
COMMENT ON SEQUENCE dialer.call_events_id_seq IS 'Identity of dialer.call_events.id';
CREATE INDEX call_events_call_id_idx ON dialer.call_events (call_id, id);

/*
 * call_events is append-only: no UPDATE, no TRUNCATE, and DELETE only of the events of a
 * call that is gone (dialer.call_events_follow_calls, below).
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
 * The events of deleted calls go with them: once per DELETE statement, over the
 * statement's deleted rows.  This replaces a foreign key from call_events to
 * scheduled_calls (ON DELETE CASCADE): such a key checked every event row written, by a
 * query of its own (a bulk enqueue writes one event per call, and every worker step
 * writes one), while every event is written by the extension's own functions for a call
 * they have just inserted or locked, in the same transaction, so the check could never
 * fail.  What the key also did, deleting a call's events with it, this trigger does.
 */
CREATE FUNCTION dialer.call_events_follow_calls()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	DELETE FROM dialer.call_events e USING gone g WHERE e.call_id = g.id;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.call_events_follow_calls() IS
	'Trigger: deletes the events of the calls a DELETE on dialer.scheduled_calls removed (once per statement)';
CREATE TRIGGER call_events_follow_calls AFTER DELETE ON dialer.scheduled_calls
	REFERENCING OLD TABLE AS gone
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.call_events_follow_calls();

/*
 * TRUNCATE fires no DELETE trigger, and would leave the calls' events behind: it is
 * refused, as it was when the foreign key made it cascade to call_events (whose TRUNCATE
 * is refused).  Calls are removed with dialer.cleanup() (or DELETE).
 */
CREATE FUNCTION dialer.scheduled_calls_no_truncate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'dialer.call_events is append-only'
		USING ERRCODE = 'insufficient_privilege',
			  DETAIL = 'TRUNCATE of dialer.scheduled_calls refused: the events of its calls would stay behind.',
			  HINT = 'Events are removed only with their call, by dialer.cleanup().';
END;
$$;
COMMENT ON FUNCTION dialer.scheduled_calls_no_truncate() IS
	'Trigger refusing TRUNCATE of dialer.scheduled_calls (the events of its calls would stay behind)';
CREATE TRIGGER scheduled_calls_no_truncate BEFORE TRUNCATE ON dialer.scheduled_calls
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.scheduled_calls_no_truncate();

/*
 * Numbers that must never be dialled.
 */
CREATE TABLE dialer.do_not_call (
	number				dialer.e164 PRIMARY KEY,
	reason				text,
	added_at			timestamptz NOT NULL DEFAULT now(),
	requested_at		timestamptz NOT NULL DEFAULT now(),
	source				text,
	effective_at		timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT do_not_call_effective_after_request CHECK (effective_at >= requested_at),
	CONSTRAINT do_not_call_effective_when_stored CHECK (effective_at <= added_at)
);
COMMENT ON TABLE dialer.do_not_call IS
	'Do-not-call ledger: numbers that must never be dialled, with when and through which channel the request was made and when it took effect; checked at enqueue and again at dispatch, and the scheduled calls of a number are skipped as soon as it is added';
COMMENT ON COLUMN dialer.do_not_call.number IS 'The number (E.164): a call to it is stored as skipped and never dialled';
COMMENT ON COLUMN dialer.do_not_call.reason IS 'Why (free text, e.g. asked not to be called)';
COMMENT ON COLUMN dialer.do_not_call.added_at IS 'When the number was added';
COMMENT ON COLUMN dialer.do_not_call.requested_at IS
	'When the person asked not to be called (default: when the row was added); may be earlier than added_at, e.g. a request taken by an agent and entered later';
COMMENT ON COLUMN dialer.do_not_call.source IS
	'From where the request came: channel or list (call, SMS STOP, e-mail, web form, agent, a national registry import ...); NULL: not recorded';
COMMENT ON COLUMN dialer.do_not_call.effective_at IS
	'When the entry took effect (default: when the row was added, the instant pg_dialer starts skipping the number); never later than added_at, never before requested_at. requested_at to effective_at is the delay a regulator asks about (US: at most 10 business days)';

/*
 * pg_dump must keep the user's data: every row of these tables (the extension inserts
 * none of its own, so no filter), and the positions of their identity sequences, so that
 * a restored database goes on numbering calls, attempts and events after the last
 * restored id instead of colliding with it.  Every new table or sequence holding user
 * data must be registered here too (test/integration/dump_restore.test.js checks it).
 */
SELECT pg_catalog.pg_extension_config_dump('dialer.providers', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.campaigns', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.do_not_call', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.scheduled_calls', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.call_attempts', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.call_events', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.scheduled_calls', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.call_attempts', 'id'), '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.call_events', 'id'), '');
/*
 * pg_dialer: the SQL API of the queue: the rules a call must satisfy (dialer.call_rule,
 * their one home, and dialer.call_refusal, their errors), enqueue_call and enqueue_calls,
 * cancel_call, retry_call, call_details, stats, cleanup, and the C helpers they use.
 *
 * Every function that changes the queue is SECURITY DEFINER with a pinned search_path:
 * the tables stay the owner's, and a role is given exactly the capabilities it is
 * granted EXECUTE on (see README, "Privileges").
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/* C helpers (src/pg_dialer.c, src/shmem.c) */

CREATE FUNCTION dialer.wake_worker()
RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dialer_wake_worker';
COMMENT ON FUNCTION dialer.wake_worker() IS
	'Wakes the dispatcher when the current transaction commits (nothing happens on rollback); warns, once per transaction, when no dispatcher serves this database';

CREATE FUNCTION dialer.wake_worker_quietly()
RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dialer_wake_worker_quietly';
COMMENT ON FUNCTION dialer.wake_worker_quietly() IS
	'Internal: dialer.wake_worker() without the warning when no dispatcher serves this database (webhooks)';

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
	OUT last_error_at timestamptz,
	OUT standby_wait_since timestamptz,
	OUT standby_wait_lsn pg_lsn)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'dialer_worker_status';
COMMENT ON FUNCTION dialer.worker_status() IS
	'The running dispatcher: pid, database, state, start time, requests in flight, counters, last error, and since when and for which commit LSN claimed calls wait for standbys (no row when none runs)';

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
 * The rules a call must satisfy to be enqueued: their one home, used by enqueue_call
 * and enqueue_calls alike (the errors they raise or report for each rule are in
 * dialer.call_refusal).  Returns NULL for an acceptable call, else the name of the rule
 * it breaks first, in this order.  provider_kind is NULL when the provider is unknown;
 * provider_hosts and provider_twiml_url are that provider's allowed_hosts and
 * twiml_url.  One CASE expression, with no subquery, in a plain SQL function, so that
 * the planner inlines it into the caller's statement: enqueue_call pays no function call
 * for it, and enqueue_calls checks a whole batch in one pass.
 */
CREATE FUNCTION dialer.call_rule(
	to_number text, run_at timestamptz, provider text, payload jsonb, campaign text,
	dedupe_key text, priority int, max_attempts int, timezone text, deadline timestamptz,
	provider_kind text, provider_hosts text[], provider_twiml_url text, late_ok boolean)
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
						WHEN $11 = 'backend' AND upper(coalesce($4->>'mode', 'DIRECT')) NOT IN ('DIRECT', 'BRIEF_START') THEN 'payload_mode'
						WHEN $11 = 'backend' AND $4 ? 'base_url'
							 AND coalesce(NOT (lower(substring($4->>'base_url' FROM '^https?://([^/:?#@]+)(?::[0-9]+)?(?:[/?#]|$)'))
											   = ANY (lower($12::text)::text[])), true) THEN 'payload_base_url'
						WHEN $11 = 'twilio' AND $4 ? 'message'
							 AND length($4->>'message') > 4000 - length('<Response><Say></Say></Response>') THEN 'payload_message'
						WHEN $11 = 'twilio' AND coalesce($4->>'twiml_url', $4->>'url', $4->>'message', $13) IS NULL THEN 'nothing_to_say'
						WHEN $4 ? 'from' AND (jsonb_typeof($4->'from') <> 'string' OR NOT dialer.is_e164($4->>'from')) THEN 'payload_from'
						WHEN $7 IS NULL OR $7 NOT BETWEEN -1000 AND 1000 THEN 'priority'
						WHEN $8 IS NOT NULL AND $8 NOT BETWEEN 1 AND 20 THEN 'max_attempts'
						WHEN $6 IS NOT NULL AND length($6) > 200 THEN 'dedupe_key'
						WHEN $5 IS NOT NULL AND length($5) > 63 THEN 'campaign'
			END
$$;
COMMENT ON FUNCTION dialer.call_rule(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, text, text[], text, boolean) IS
	'Internal: the one home of the enqueue rules. NULL for an acceptable call, else the rule it breaks first (to_number_missing, to_number_format, run_at_missing, run_at_infinite, run_at_past, deadline_infinite, deadline_order, timezone, provider_missing, provider_unknown, payload_type, payload_size, payload_mode, payload_base_url, payload_message, nothing_to_say, payload_from, priority, max_attempts, dedupe_key, campaign)';

/*
 * The error for a call that breaks a rule of dialer.call_rule (same arguments): no row
 * for an acceptable call, else one row: the rule and the error enqueue_call raises for
 * it (SQLSTATE, message naming the argument and its value, detail, hint).  Evaluated
 * only for refused calls.
 */
CREATE FUNCTION dialer.call_refusal(
	to_number text, run_at timestamptz, provider text, payload jsonb, campaign text,
	dedupe_key text, priority int, max_attempts int, timezone text, deadline timestamptz,
	provider_kind text, provider_hosts text[], provider_twiml_url text, late_ok boolean)
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
			WHEN 'run_at_past' THEN 'Pass late_ok => true to dial it now anyway, or a run_at in the future (dialer.next_local_time() gives the recipient''s next 10:00, say).'
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
					   WHEN 'run_at_missing' THEN 'run_at' WHEN 'run_at_infinite' THEN 'run_at' WHEN 'run_at_past' THEN 'run_at'
					   WHEN 'deadline_infinite' THEN 'deadline' WHEN 'deadline_order' THEN 'deadline'
					   WHEN 'provider_missing' THEN 'provider' WHEN 'payload_type' THEN 'payload'
					   WHEN 'payload_size' THEN 'payload' WHEN 'nothing_to_say' THEN 'payload'
					   WHEN 'payload_mode' THEN 'payload.mode' WHEN 'payload_base_url' THEN 'payload.base_url'
					   WHEN 'payload_message' THEN 'payload.message' WHEN 'payload_from' THEN 'payload.from'
					   ELSE q.rule END AS argument,
				   CASE q.rule
					   WHEN 'to_number_format' THEN $1 WHEN 'run_at_infinite' THEN $2::text WHEN 'run_at_past' THEN $2::text
					   WHEN 'deadline_infinite' THEN $10::text WHEN 'deadline_order' THEN $10::text
					   WHEN 'timezone' THEN $9 WHEN 'payload_type' THEN $4::text
					   WHEN 'payload_size' THEN format('%s bytes', octet_length($4::text))
					   WHEN 'nothing_to_say' THEN $4::text
					   WHEN 'payload_mode' THEN $4->>'mode' WHEN 'payload_base_url' THEN $4->>'base_url'
					   WHEN 'payload_message' THEN $4->>'message' WHEN 'payload_from' THEN $4->>'from'
					   WHEN 'priority' THEN $7::text WHEN 'max_attempts' THEN $8::text
					   WHEN 'dedupe_key' THEN $6 WHEN 'campaign' THEN $5 END AS value
			  FROM (SELECT dialer.call_rule($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) AS rule OFFSET 0) q
			 WHERE q.rule IS NOT NULL) r
$$;
COMMENT ON FUNCTION dialer.call_refusal(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, text, text[], text, boolean) IS
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
		SELECT p.kind, p.from_number, p.allowed_hosts, p.twiml_url
		  FROM dialer.providers p WHERE p.name = provider
		   FOR KEY SHARE
	), look AS MATERIALIZED (
		SELECT p.kind, p.from_number, p.allowed_hosts, p.twiml_url,
			   CASE WHEN dedupe_key IS NOT NULL THEN
					(SELECT c.id FROM dialer.scheduled_calls c WHERE c.dedupe_key = dedupe_key) END AS dup_id,
			   CASE WHEN max_attempts IS NULL AND campaign IS NOT NULL THEN
					(SELECT k.max_attempts FROM dialer.campaigns k WHERE k.name = campaign) END AS camp_attempts,
			   d.number IS NOT NULL AS dnc, d.reason AS dnc_reason, d.added_at AS dnc_at,
			   dialer.call_rule(to_number, run_at, provider, payload, campaign, dedupe_key, priority,
								max_attempts, timezone, deadline, p.kind, p.allowed_hosts, p.twiml_url, late_ok) AS rule
		  FROM (SELECT 1) one
		  LEFT JOIN p ON true
		  LEFT JOIN dialer.do_not_call d ON d.number = to_number
	), c AS (
		INSERT INTO dialer.scheduled_calls AS c
			(status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
			 dedupe_key, priority, max_attempts, timezone, deadline, finished_at, last_error)
		SELECT CASE WHEN look.dnc OR pol.rule IS NOT NULL THEN 'skipped' ELSE 'scheduled' END,
			   run_at, run_at, to_number,
			   coalesce(payload->>'from', look.from_number), provider,
			   CASE WHEN look.kind = 'backend' THEN upper(coalesce(payload->>'mode', 'DIRECT')) END,
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
			   CASE WHEN look.dnc THEN
					jsonb_build_object('reason', 'do_not_call', 'do_not_call_reason', look.dnc_reason,
									   'listed_at', look.dnc_at)
					WHEN pol.rule IS NOT NULL THEN
					dialer.policy_skip_detail('enqueue', pol.policy, pol.rule, pol.timezones, pol.reason)
			   ELSE dialer.enqueued_detail(run_at, campaign) END
		  FROM c, look
	)
	SELECT look.rule, look.kind, look.allowed_hosts, look.twiml_url, look.dup_id, c.id,
		   CASE WHEN c.status = 'scheduled' THEN dialer.wake_worker() IS NULL END AS woken
	  INTO v
	  FROM look LEFT JOIN c ON true;

	IF v.rule IS NOT NULL THEN
		SELECT * INTO e
		  FROM dialer.call_refusal(to_number, run_at, provider, payload, campaign, dedupe_key, priority,
								   max_attempts, timezone, deadline, v.kind, v.allowed_hosts, v.twiml_url, late_ok);
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
	'A call as enqueue_calls() reads it from each JSON object: enqueue_call''s arguments plus customer_ref';

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
IMMUTABLE
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
 * Enqueues many calls in one set-based statement: calls is a JSON array of objects
 * whose keys are enqueue_call's argument names (to_number, run_at, provider, payload,
 * campaign, dedupe_key, priority, max_attempts, timezone, deadline) plus customer_ref;
 * a missing key takes enqueue_call's default.  Each element gets exactly enqueue_call's
 * treatment: the same rules (dialer.call_refusal), the stored id for a dedupe key already
 * stored or used earlier in the array (outcome duplicate), a do-not-call number stored as
 * skipped with an event, one wake-up of the worker at commit.  Returns one row per
 * element, in order.
 *
 * atomic => true (the default): all or nothing; the first refused element raises its
 * error (message prefixed with its position) and nothing is written.  atomic => false:
 * the acceptable elements are written, the refused ones come back with outcome refused
 * and the error's SQLSTATE, message, detail and hint.  An element that is not an object,
 * or has a key enqueue_calls does not know, is refused; a value of the wrong JSON type
 * for its key (a run_at that is not a timestamp, a fractional priority) fails the whole
 * call with PostgreSQL's own error, in both modes.
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
	v_bad		dialer.enqueue_result;
	v_woken		boolean;
	v_first_bad	int;
	v_max		int := current_setting('dialer.default_max_attempts')::int;
	/* an element's defaults: jsonb_populate_record keeps them for the keys it lacks */
	v_defaults	dialer.call_request := ROW(NULL, now(), 'default', '{}', NULL, NULL, 0, NULL, NULL, NULL, NULL, false);
	v_providers	jsonb;
	v_campaigns	jsonb;
	v_policies	boolean := dialer.ledger_policies_enabled();
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

	/*
	 * The providers (held until commit: they cannot be deleted or renamed under the new
	 * calls, see providers_keep_calls) and the campaigns' max_attempts, read once into
	 * lookup objects: each element then finds its own by key, whatever the size of the
	 * batch (a join would hash the whole batch when the tables look larger than it).
	 */
	SELECT jsonb_object_agg(p.name, jsonb_build_array(p.kind, p.from_number, p.allowed_hosts::text, p.twiml_url))
	  INTO v_providers
	  FROM (SELECT * FROM dialer.providers FOR KEY SHARE) p;
	SELECT jsonb_object_agg(k.name, k.max_attempts) INTO v_campaigns
	  FROM dialer.campaigns k WHERE k.max_attempts IS NOT NULL;

	/*
	 * One statement: parse each element over its defaults and check it (the rules' CASE
	 * is inlined), give the acceptable ones ids in their order, look each number up in
	 * the do-not-call list, write the calls (a dedupe key already stored, or used by an
	 * earlier element, writes nothing) and their events, and report
	 * every element.  The error of a refused element is computed for it alone.
	 */
	WITH req AS MATERIALIZED (
		SELECT q.*,
			   CASE WHEN q.reason IS NULL THEN nextval('dialer.scheduled_calls_id_seq'::regclass) END AS new_id,
			   d.dnc, r.policy, r.rule AS policy_rule, r.reason AS policy_reason, r.timezones
		  FROM (SELECT e.o::int AS item, e.v, s.shape, r.*, p.prov,
					   coalesce(s.shape,
								dialer.call_rule(r.to_number, r.run_at, r.provider, r.payload, r.campaign,
												 r.dedupe_key, r.priority, r.max_attempts, r.timezone,
												 r.deadline, p.prov->>0, (p.prov->>2)::text[], p.prov->>3,
												 r.late_ok)) AS reason
				  FROM jsonb_array_elements(calls) WITH ORDINALITY AS e(v, o)
				 CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(e.v) <> 'object' THEN 'not_object'
												 WHEN e.v - dialer.call_request_keys() <> '{}'
													 THEN 'unknown_key' END AS shape) s
				 CROSS JOIN LATERAL jsonb_populate_record(v_defaults, CASE WHEN s.shape IS NULL THEN e.v ELSE '{}' END) r
				 CROSS JOIN LATERAL (SELECT v_providers->r.provider AS prov) p
				OFFSET 0) q		-- ids are drawn in the order of the elements, after the rules
		 CROSS JOIN LATERAL (SELECT q.reason IS NULL
									AND EXISTS (SELECT FROM dialer.do_not_call d WHERE d.number = q.to_number) AS dnc) d
		  -- the refusal of a policy holding a ledger (consent, silence after a refusal), looked
		  -- for only when such a policy is enabled: the call is stored as skipped
		  LEFT JOIN LATERAL (SELECT r.* FROM dialer.enqueue_refusal(q.to_number, q.run_at, q.timezone, q.campaign,
																	  q.provider, q.payload->>'purpose') r
							  WHERE v_policies AND q.reason IS NULL AND NOT d.dnc) r ON true
	), call_rows AS (
		SELECT q.item, q.new_id,
			   CASE WHEN q.dnc OR q.policy_rule IS NOT NULL THEN 'skipped' ELSE 'scheduled' END AS status, q.run_at,
			   q.to_number, coalesce(q.payload->>'from', q.prov->>1) AS from_number, q.provider,
			   CASE WHEN q.prov->>0 = 'backend' THEN upper(coalesce(q.payload->>'mode', 'DIRECT')) END AS mode,
			   q.payload, q.campaign, q.customer_ref, q.dedupe_key, q.priority,
			   coalesce(q.max_attempts, (v_campaigns->>q.campaign)::int, v_max) AS max_attempts,
			   q.timezone, q.deadline, CASE WHEN q.dnc OR q.policy_rule IS NOT NULL THEN now() END AS finished_at,
			   q.policy, q.policy_rule, q.policy_reason, q.timezones, q.dnc
		  FROM req q
		 WHERE q.new_id IS NOT NULL
	), ins_keyed AS (
		-- the calls with a dedupe key, in the order of the elements (call_rows is read in the
		-- order req wrote it, that of the array): the first of two with one key is the one stored
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
		-- the others, always written: a plain INSERT (ON CONFLICT inserts each row speculatively,
		-- with a lock and a WAL record more per row, even when the row has no key)
		INSERT INTO dialer.scheduled_calls AS c
			(id, status, run_at, next_attempt_at, to_number, from_number, provider, mode, payload, campaign,
			 customer_ref, dedupe_key, priority, max_attempts, timezone, deadline, finished_at, last_error)
		OVERRIDING SYSTEM VALUE
		SELECT r.new_id, r.status, r.run_at, r.run_at, r.to_number, r.from_number, r.provider, r.mode, r.payload,
			   r.campaign, r.customer_ref, r.dedupe_key, r.priority, r.max_attempts, r.timezone, r.deadline,
			   r.finished_at, r.policy_reason
		  FROM call_rows r
		 WHERE r.dedupe_key IS NULL
	), keyed AS (
		-- the calls with a dedupe key that were written (the others always are)
		SELECT i.id FROM ins_keyed i
	), written AS (
		SELECT r.* FROM call_rows r WHERE r.dedupe_key IS NULL OR r.new_id IN (SELECT k.id FROM keyed k)
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT w.new_id, CASE WHEN w.status = 'skipped' THEN 'skipped' ELSE 'enqueued' END, NULL, w.status,
			   CASE WHEN w.dnc THEN
					(SELECT jsonb_build_object('reason', 'do_not_call', 'do_not_call_reason', d.reason,
											   'listed_at', d.added_at)
					   FROM dialer.do_not_call d WHERE d.number = w.to_number)
					WHEN w.policy_rule IS NOT NULL THEN
					dialer.policy_skip_detail('enqueue', w.policy, w.policy_rule, w.timezones, w.policy_reason)
			   ELSE dialer.enqueued_detail(w.run_at, w.campaign) END
		  FROM written w
		RETURNING call_id, to_status
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
				   s.new_id IS NOT NULL AND (s.dedupe_key IS NULL OR s.new_id IN (SELECT k.id FROM keyed k)) AS stored,
				   CASE WHEN s.reason IS NULL THEN NULL
						WHEN s.shape IS NULL THEN
							(SELECT ROW(f.sqlstate, f.message, f.detail, f.hint)::dialer.call_error
							   FROM dialer.call_refusal(s.to_number, s.run_at, s.provider, s.payload, s.campaign,
														s.dedupe_key, s.priority, s.max_attempts, s.timezone,
														s.deadline, s.prov->>0, (s.prov->>2)::text[], s.prov->>3,
														s.late_ok) f)
						ELSE dialer.call_shape_error(s.v, s.shape)
				   END AS err
			  FROM req s) x;

	IF atomic AND v_first_bad IS NOT NULL THEN
		v_bad := v_res[v_first_bad];
		RAISE EXCEPTION USING ERRCODE = v_bad.sqlstate,
			MESSAGE = format('call %s of %s refused: %s', v_bad.item, jsonb_array_length(calls), v_bad.message),
			DETAIL = v_bad.detail,
			HINT = v_bad.hint || ' enqueue_calls(..., atomic => false) writes the other calls and returns the refused ones.';
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
		  FROM unnest(v_res) u;	-- in the order of the array: by item
END;
$$;
COMMENT ON FUNCTION dialer.enqueue_calls(jsonb, boolean) IS
	'Enqueues a JSON array of calls (keys: enqueue_call''s arguments plus customer_ref) with enqueue_call''s rules, dedupe, do-not-call and wake-up; one row per element: item, id, outcome (scheduled, skipped, duplicate, refused) and the error of a refused one. atomic => true (default): all or nothing; false: writes the acceptable calls.';

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
	IF v_call.status NOT IN ('failed', 'unknown', 'expired') THEN
		RETURN false;
	END IF;
	UPDATE dialer.scheduled_calls c
	   SET status = 'scheduled', next_attempt_at = now(), attempts_base = c.attempts,
		   deadline = CASE WHEN v_call.status = 'expired' THEN NULL ELSE c.deadline END,
		   updated_at = now(), finished_at = NULL, reconcile_searches = 0, reconcile_failures = 0
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

	-- "calls": every call of the day; "scheduled" is the same count under its 0.1.0 name,
	-- which read as "still in status scheduled": kept for 0.2.x, removed in 0.3.0
	SELECT jsonb_build_object(
			'calls', count(*),
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
					'calls', count(*),
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
	'Counts of a day''s calls (calls: all of them; completed, failed, not_reached, pending, not_called, unknown; scheduled: the same as calls, deprecated), total_pending, next_run_at, by_campaign and the worker''s state';

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
/*
 * pg_dialer: the dispatcher's side of the queue.
 *
 * The worker (src/worker.c, src/queue.c) calls these functions in short
 * transactions: it claims due calls (committed before any request leaves), sends
 * the requests with no transaction open, then stores the outcomes in batches.
 * They are plain SQL so that pgTAP can test the rules without a worker; no other
 * role may execute them.
 *
 *   claiming       recover_dispatching, provider_capacity, next_window_opening,
 *                  claim_calls, release_claims, next_due_at, worker_providers
 *   storing        record_results
 *   re-evaluating  triggers when a calling window, a time zone, the do-not-call list or
 *                  a provider changes (reevaluate_parked_calls, providers_changed, ...)
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
 * For a provider at its max_concurrency (the dispatcher asks, to say why it waits):
 * how many of its calls are due and waiting (counted up to 10,000), and when its first
 * slot frees by itself: its oldest call in progress stops counting against
 * max_concurrency after dialer.reconcile_after without news, and is looked up then.
 */
CREATE FUNCTION dialer.provider_stall(provider text, OUT due_calls int, OUT frees_at timestamptz)
RETURNS record
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT (SELECT count(*)::int
			  FROM (SELECT 1 FROM dialer.scheduled_calls c
					 WHERE c.provider = provider_stall.provider AND c.status = 'scheduled'
					   AND c.next_attempt_at <= now()
					 LIMIT 10000) d),
		   (SELECT min(c.updated_at) + current_setting('dialer.reconcile_after')::interval
			  FROM dialer.scheduled_calls c
			 WHERE c.provider = provider_stall.provider AND c.status IN ('dispatching', 'dialing')
			   AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval);
$$;
COMMENT ON FUNCTION dialer.provider_stall(text) IS
	'Worker: for a provider at its max_concurrency, its due calls waiting (up to 10,000) and when reconciliation frees its first slot';

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
 * What a claim's event says about the zones the general calling window was read in:
 * the zones and their source (dialer.recipient_zones); when the number's zone is
 * unknown and dialer.default_timezone stood in for it, a warning saying so.
 */
CREATE FUNCTION dialer.window_zones_detail(to_number text, zones text[], source text)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
AS $$
	SELECT jsonb_build_object('timezones', zones, 'timezone_source', source)
		   || CASE WHEN source = 'default' THEN jsonb_build_object('warning',
				  format('the time zone of %s is not known from the number: the calling window was read in dialer.default_timezone (%s); give the call or its campaign a timezone',
						 to_number, zones[1])) ELSE '{}' END;
$$;
COMMENT ON FUNCTION dialer.window_zones_detail(text, text[], text) IS
	'Internal: the zones (and their source) a claim read the general calling window in, as event detail; a warning when dialer.default_timezone stood in for an unknown zone';

/*
 * Why a call was skipped because the general window is never open in all of its
 * number's zones at once.
 */
CREATE FUNCTION dialer.no_window_message(to_number text, zones text[], window_start time, window_end time)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$
	SELECT format('the calling window %s-%s is never open at the same time in all %s time zones %s may be in (%s): not dialled; give the call or its campaign a timezone',
				  to_char(window_start, 'HH24:MI'), to_char(window_end, 'HH24:MI'), cardinality(zones), to_number,
				  array_to_string(zones[1:5], ', ') || CASE WHEN cardinality(zones) > 5 THEN ', ...' ELSE '' END);
$$;
COMMENT ON FUNCTION dialer.no_window_message(text, text[], time, time) IS
	'Internal: last_error of a call skipped because the calling window never opens in all of its number''s zones at once';

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
	v_policies boolean;
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

	RETURN QUERY
	WITH cand AS (
		-- the general window is read in the recipient's zones (dialer.recipient_zones: the
		-- call's, the campaign's, the number's, else dialer.default_timezone); not looked up
		-- when the window is the whole day
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
		-- the One-Time Filter on v_policies skips the verdicts altogether when no
		-- policy is enabled; else one set-based call for the whole batch
		SELECT bv.* FROM dialer.batch_verdicts(v_ids, now(), window_start, window_end) bv WHERE v_policies
	), windowed AS (
		-- with calling policies applying (a verdict row), their verdict replaces the
		-- general window alone (which it includes)
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
				 WHEN EXISTS (SELECT 1 FROM dialer.do_not_call d WHERE d.number = w.to_number) THEN 'do_not_call'
				 WHEN v_allowed IS NOT NULL AND NOT (w.to_number = ANY (v_allowed)) THEN 'not_allowed'
				 WHEN w.decision = 'refuse' THEN 'refused'
				 WHEN w.opens = 'infinity' THEN 'no_window'
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
			   finished_at = CASE WHEN x.v IN ('expired', 'do_not_call', 'not_allowed', 'refused', 'no_window') THEN now() END,
			   last_error = CASE x.v WHEN 'do_not_call' THEN 'number is on the do-not-call list'
									 WHEN 'refused' THEN x.reason
									 WHEN 'not_allowed' THEN 'number is not in dialer.allowed_numbers'
									 WHEN 'expired' THEN 'deadline passed before the call could start'
									 WHEN 'no_window' THEN dialer.no_window_message(x.to_number, x.zones, x.ws, x.we)
									 ELSE c.last_error END,
			   updated_at = now()
		  FROM verdict x
		 WHERE c.id = x.id
		RETURNING c.*, x.v, x.zones, x.zone_source, x.ws, x.we, x.opens, x.decision, x.policy, x.rule, x.reason,
				  x.timezones, x.policies
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT u.id,
			   CASE u.v WHEN 'go' THEN 'claimed' WHEN 'window' THEN 'window_wait'
						WHEN 'expired' THEN 'expired' ELSE 'skipped' END,
			   'scheduled', u.status,
			   CASE u.v
				 -- under calling policies, the claim records which ones allowed it (the audit reads it);
				 -- under the general window alone, the zones it was read in (none: the whole day)
				 WHEN 'go' THEN CASE WHEN u.decision IS NOT NULL
					 THEN jsonb_build_object('attempt', u.attempts, 'policies', u.policies, 'timezones', u.timezones,
											 'message', u.reason)
					 WHEN u.zones IS NULL THEN jsonb_build_object('attempt', u.attempts)
					 ELSE jsonb_build_object('attempt', u.attempts)
						  || dialer.window_zones_detail(u.to_number, u.zones, u.zone_source) END
				 WHEN 'window' THEN CASE WHEN u.decision IS NULL
					 THEN jsonb_build_object('opens_at', u.opens, 'next_attempt_at', u.next_attempt_at,
											 'window_start', u.ws, 'window_end', u.we)
						  || dialer.window_zones_detail(u.to_number, u.zones, u.zone_source)
					 ELSE jsonb_build_object('timezones', u.timezones, 'opens_at', u.opens, 'next_attempt_at', u.next_attempt_at,
											 'policy', u.policy, 'rule', u.rule, 'message', u.reason) END
				 WHEN 'no_window' THEN jsonb_build_object('reason', 'no_window', 'timezones', u.zones,
														  'timezone_source', u.zone_source, 'window_start', u.ws,
														  'window_end', u.we, 'message', u.last_error)
				 WHEN 'refused' THEN dialer.policy_skip_detail('dispatch', u.policy, u.rule, u.timezones, u.reason)
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
	), rel AS (
		UPDATE dialer.scheduled_calls c
		   SET status = 'scheduled', attempts = c.attempts - 1, updated_at = now()
		  FROM cur
		 WHERE c.id = cur.call_id
		RETURNING c.id, cur.attempt
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
	), moved AS (
		UPDATE dialer.scheduled_calls c
		   SET next_attempt_at = v.due, updated_at = now()
		  FROM verdict v
		 WHERE c.id = v.id AND v.due <> v.next_attempt_at
		RETURNING c.id, v.to_number, v.zones, v.source, v.ws, v.we, v.opens, v.due, v.next_attempt_at AS was
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT m.id, 'window_wait', 'scheduled', 'scheduled',
			   jsonb_build_object('reason', 'calling window changed',
								  'window_start', m.ws, 'window_end', m.we,
								  'opens_at', nullif(m.opens, 'infinity'), 'next_attempt_at', m.due,
								  'previous_next_attempt_at', m.was)
			   || dialer.window_zones_detail(m.to_number, m.zones, m.source)
		  FROM moved m
	)
	SELECT count(*) INTO v_n FROM moved;
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
	WITH s AS (
		SELECT * FROM unnest(call_ids, errors, details) AS s(id, error, detail)
	), skipped AS (
		UPDATE dialer.scheduled_calls c
		   SET status = 'skipped', finished_at = now(), updated_at = now(), last_error = s.error
		  FROM s
		 WHERE c.id = s.id AND c.status = 'scheduled'
		RETURNING c.id, s.detail
	), ev AS (
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		SELECT k.id, 'skipped', 'scheduled', 'skipped', k.detail FROM skipped k
	)
	SELECT count(*)::int FROM skipped;
$$;
COMMENT ON FUNCTION dialer.skip_scheduled_calls(bigint[], text[], jsonb[]) IS
	'Internal: skips the calls still scheduled among call_ids now, each with its last_error and skipped-event detail (do-not-call entries, revoked consents, refusals); returns how many';
REVOKE ALL ON FUNCTION dialer.skip_scheduled_calls(bigint[], text[], jsonb[]) FROM PUBLIC;

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
		-- each call of the batch by its key, and only so (the subquery is not flattened): as
		-- a join, the plan read every call in progress through scheduled_calls_active_idx at
		-- each batch, since the statistics say few calls are in progress, while they pile up
		-- (W1: 20,000 calls dialing, no callbacks): each batch cost more than the one before
		SELECT r.*, c.attempts - c.attempts_base < c.max_attempts AS may_retry
		  FROM r
		 CROSS JOIN LATERAL (SELECT k.* FROM dialer.scheduled_calls k WHERE k.id = r.call_id OFFSET 0) c
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
			   reconcile_failures = 0,
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
			 WHERE p.enabled AND p.kind IN ('twilio', 'backend')))
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
 * Applies what a provider said when a call was looked up: its own call resource
 * (Twilio's Calls/{sid}.json: status, duration, answered_by; backend and voice API:
 * status, duration, transcript, recording_url), through dialer.apply_provider_status
 * like a callback.  A failed lookup (an error, a 404, an answer without a status) is
 * recorded as an event, with its HTTP status, and counted: after
 * dialer.reconcile_max_failures() in a row a dialing call becomes unknown, saying why,
 * and no call is looked up again after that many failures (an operator decides, as for
 * every unknown call), so that no call is left dialing for good.  Returns NULL, or the
 * reason when it gave a call up (the dispatcher logs it).
 */
CREATE FUNCTION dialer.apply_reconciliation(call_id bigint, provider_call_id text,
											http_status int, body text, error text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_doc		jsonb;
	v_error		text;
	v_failures	int;
	v_status	text;
	v_reason	text;
BEGIN
	IF http_status BETWEEN 200 AND 299 THEN
		BEGIN
			v_doc := body::jsonb;
		EXCEPTION WHEN others THEN
			v_doc := NULL;
		END;
	END IF;
	IF v_doc IS NULL OR jsonb_typeof(v_doc) <> 'object' OR coalesce(v_doc->>'status', '') = '' THEN
		v_error := coalesce(error, CASE WHEN http_status BETWEEN 200 AND 299 THEN 'answer without a status'
										WHEN http_status IS NOT NULL THEN format('HTTP %s', http_status) END);
		UPDATE dialer.scheduled_calls c SET reconcile_failures = c.reconcile_failures + 1
		 WHERE c.id = apply_reconciliation.call_id
		RETURNING c.reconcile_failures, c.status INTO v_failures, v_status;
		INSERT INTO dialer.call_events (call_id, event, detail)
		VALUES (apply_reconciliation.call_id, 'reconcile_failed',
				jsonb_strip_nulls(jsonb_build_object('provider_call_id', provider_call_id,
					'http_status', http_status, 'error', v_error, 'failures_in_a_row', v_failures)));
		IF v_status = 'dialing' AND v_failures >= dialer.reconcile_max_failures() THEN
			v_reason := format('no final status from the provider, and %s lookups of %s at the provider failed in a row (last: %s): it is not looked up again',
							   v_failures, provider_call_id,
							   coalesce(CASE WHEN http_status IS NOT NULL THEN format('HTTP %s', http_status) END
										|| coalesce(', ' || error, ''), v_error));
			UPDATE dialer.scheduled_calls c
			   SET status = 'unknown', last_error = v_reason, updated_at = now()
			 WHERE c.id = apply_reconciliation.call_id;
			INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
			VALUES (apply_reconciliation.call_id, 'unknown', 'dialing', 'unknown',
					jsonb_strip_nulls(jsonb_build_object('reason', v_reason, 'http_status', http_status,
														 'lookups_failed', v_failures)));
			RETURN v_reason;
		END IF;
		RETURN NULL;
	END IF;
	UPDATE dialer.scheduled_calls c SET reconcile_failures = 0
	 WHERE c.id = apply_reconciliation.call_id AND c.reconcile_failures > 0;
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
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.apply_reconciliation(bigint, text, int, text, text) IS
	'Worker: applies a provider''s answer to a call lookup (status, duration, answered_by, ...) like a callback; records a failed lookup as an event, and after 3 failures in a row makes a dialing call unknown (returns why; NULL otherwise)';

/*
 * Unknown calls of one provider that have no provider call id (the worker died,
 * failed over, or lost the answer before a call id was stored), due for a search
 * at the provider by what was sent: Twilio's Calls list by To, From and a start
 * at or after the claim of the call's last attempt; a backend's
 * GET /call?idempotency_key= with the attempt's Idempotency-Key.  A call is searched
 * at most 3 times (dialer.search_due_at: reconcile_after after its last news, then
 * 2 and 4 times reconcile_after after the previous search); each claim is counted
 * and stamped before the search leaves.  Returns what to search for, as JSON:
 * kind, to, from, after (the claim, UTC, to the second), idempotency_key,
 * attempt, search (1..3) and of (3).  voice_api providers offer no such search.
 */
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

/*
 * The records of a search's answer (dialer.claim_searches' search, records the answer's
 * calls array) that may be the call's: not already the call of another attempt or
 * call, and (Twilio) its to and from are what was sent and it was created at or after
 * the claim (not_before, to the second: a provider creates a call only after the
 * claim committed); (backend) it does not name another Idempotency-Key.  candidates: a JSON
 * array of {id, status, date_created, duration, answered_by}; older: a Twilio record
 * created before the claim was seen (the list, newest first, went back far enough).
 */
CREATE FUNCTION dialer.search_candidates(call_id bigint, attempt int, search jsonb, records jsonb,
										 not_before timestamptz, OUT candidates jsonb, OUT older boolean)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_kind text := search->>'kind';
	v_rec jsonb;
	v_id text;
	v_at timestamptz;
BEGIN
	candidates := '[]';
	older := false;
	FOR v_rec IN SELECT e.value FROM jsonb_array_elements(records) e LOOP
		CONTINUE WHEN jsonb_typeof(v_rec) <> 'object';
		v_id := nullif(v_rec->>(CASE v_kind WHEN 'twilio' THEN 'sid' ELSE 'call_id' END), '');
		IF v_kind = 'twilio' THEN
			BEGIN
				v_at := (v_rec->>'date_created')::timestamptz;
			EXCEPTION WHEN others THEN
				v_at := NULL;
			END;
			IF v_at < date_trunc('second', not_before) THEN
				older := true;
			END IF;
			CONTINUE WHEN v_at IS NULL OR v_at < date_trunc('second', not_before)
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
								 AND (a.call_id <> search_candidates.call_id OR a.attempt <> search_candidates.attempt))
				   OR EXISTS (SELECT 1 FROM dialer.scheduled_calls c
							   WHERE c.provider_call_id = v_id AND c.id <> search_candidates.call_id);
		candidates := candidates || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
			'id', v_id, 'status', v_rec->>'status', 'date_created', v_rec->>'date_created',
			'duration', v_rec->>'duration', 'answered_by', v_rec->>'answered_by')));
	END LOOP;
END;
$$;
COMMENT ON FUNCTION dialer.search_candidates(bigint, int, jsonb, jsonb, timestamptz) IS
	'Worker: the records of a search''s answer that may be an unknown call''s (what was sent, not another call''s), and whether a Twilio record older than the claim was seen';

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
		UPDATE dialer.scheduled_calls c
		   SET status = 'dialing', provider_call_id = match->>'id',
			   provider_status = coalesce(match->>'status', c.provider_status), updated_at = now()
		 WHERE c.id = settle_searched_call.call_id;
		INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
		VALUES (settle_searched_call.call_id, 'reconciled', 'unknown', 'dialing',
				detail || jsonb_strip_nulls(jsonb_build_object(
					'provider_call_id', match->>'id', 'provider_status', match->>'status',
					'attempt', settle_searched_call.attempt,
					'note', 'a provider status pg_dialer does not know: the call is taken as under way')));
	END IF;
	-- settled: a later attempt that ends unknown gets its own searches
	UPDATE dialer.scheduled_calls c SET reconcile_searches = 0 WHERE c.id = settle_searched_call.call_id;
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
			WHEN 'not_offered' THEN 'the backend offers no lookup by Idempotency-Key'
			ELSE 'the search failed' END
		   || CASE WHEN searches_left = 0 AND result <> 'found'
				   THEN '; no search is left: the call stays unknown (check it at the provider, then dialer.retry_call() or leave it)'
				   ELSE '' END;
$$;
COMMENT ON FUNCTION dialer.search_message(text, int) IS
	'Worker: the message of a reconcile_search event for a search result and the searches left';

/*
 * Applies the answer to a search for an unknown call without a provider call id
 * (dialer.claim_searches): Twilio's Calls list page, or a backend's
 * {"calls": [...]}.  Its candidates (dialer.search_candidates): exactly one settles
 * the call (dialer.settle_searched_call).  No candidate, more than one (never
 * guessed), a Twilio page that may not hold them all, or a failed search leaves the
 * call unknown, with a 'reconcile_search' event saying what was searched and what was
 * found (dialer.search_message).  An answer for an attempt the call has left (settled
 * meanwhile, or requeued by dialer.retry_call, perhaps claimed and unknown again since)
 * changes nothing but that event: its record may be another attempt's call.
 */
CREATE FUNCTION dialer.apply_search(call_id bigint, search jsonb, http_status int, body text, error text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_kind text := search->>'kind';
	v_after timestamptz;
	v_doc jsonb;
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
		v_found := dialer.search_candidates(apply_search.call_id, v_call.attempts, search, v_doc->'calls', v_after);
		v_n := jsonb_array_length(v_found.candidates);
		v_result := CASE
			WHEN v_n > 1 THEN 'ambiguous'
			-- Twilio lists newest first: a further page may hold more when none was older
			WHEN v_kind = 'twilio' AND v_doc->>'next_page_uri' IS NOT NULL AND NOT v_found.older THEN 'incomplete'
			WHEN v_n = 0 THEN 'not_found'
			ELSE 'found' END;
		v_detail := v_detail || jsonb_build_object('records', jsonb_array_length(v_doc->'calls'),
												   'candidates', v_found.candidates);
	END IF;

	IF v_result = 'found' AND v_call.status = 'unknown' AND v_call.provider_call_id IS NULL
	   AND (search->>'attempt')::int = v_call.attempts THEN
		PERFORM dialer.settle_searched_call(apply_search.call_id, v_call.attempts, v_found.candidates->0,
											v_detail || jsonb_build_object('search_result', 'found'));
		RETURN;
	END IF;

	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	VALUES (apply_search.call_id, 'reconcile_search', v_call.status, v_call.status,
			v_detail || jsonb_build_object(
				'result', v_result,
				'message', dialer.search_message(v_result, (v_detail->>'searches_left')::int)));
END;
$$;
COMMENT ON FUNCTION dialer.apply_search(bigint, jsonb, int, text, text) IS
	'Worker: applies the answer to a search for an unknown call without a provider call id: exactly one matching record settles it (event reconciled), else it stays unknown with a reconcile_search event (not_found, ambiguous, incomplete, failed, not_offered); an answer for an attempt the call has left (settled, or requeued by retry_call) changes nothing';

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
 * pg_dialer: call outcomes coming back from the providers.
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
 *
 * Copyright (c) 2026, pg_dialer developers
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
 * Percent-encodes the characters of s that a URL serializer escapes: controls, space,
 * everything beyond ASCII (as its UTF-8 bytes) and each character of unsafe; upper-case
 * hex.  An escape already in s (%27) is left as it is.
 */
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

/*
 * A URL in the form a WHATWG URL parser serializes it (what Twilio's helper library
 * compares against when the URL as configured does not match, e.g. for a callback URL
 * whose query holds a quote: Body=It's+amazing is signed as Body=It%27s+amazing): scheme
 * and host in lower case, the default port and an empty port dropped, an empty path
 * made '/', and the path, query and fragment percent-encoded with the URL standard's
 * path, special-query and fragment sets.  NULL for a URL that is not http(s) or whose port
 * is not a port number (Twilio's library rejects it too).
 */
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

/*
 * A URL whose query string is re-encoded the way Node's legacy querystring module parses
 * and writes it back (Twilio's helper library tries this form last): each field decoded
 * ('+' is a space), fields of one name gathered at the place of the first, every character
 * but A-Z a-z 0-9 - _ . ! ~ * ' ( ) percent-encoded.  The URL unchanged without a query;
 * NULL when a field does not decode to UTF-8.
 */
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
 * auth_token: for url as given, else with its default port added or removed, else in the
 * percent-encoded forms Twilio's helper library (npm twilio, validateRequest) also
 * accepts.  Constant-time comparisons.
 */
CREATE FUNCTION dialer.twilio_signature_matches(auth_token text, url text, params jsonb, signature text)
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
 *
 * dialer.apply_provider_status() reads as its steps, each a function of its own:
 *   provider_report_attempt()   which attempt a report is about; seen before?
 *   provider_status_advances()  does the attempt's provider status move forward?
 *   provider_status_outcome()   the call status a provider status leads to (above)
 *   call_retry_decision()       is a busy / no_answer outcome retried, and when
 *   call_outcome_error()        the call's last_error after an outcome
 *   store_provider_report()     every write, in one statement (report_value(): which of
 *                               a stored and a reported attempt field is kept)
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
 * Whether an attempt's provider status moves from old_status to new_status (both
 * normalized): only forward in provider_status_rank's order, a repeated status under way
 * included, a final one not; from a status pg_dialer does not know, to any it knows.
 */
CREATE FUNCTION dialer.provider_status_advances(new_status text, old_status text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT dialer.provider_status_rank(new_status) IS NOT NULL
		   AND (old_status IS NULL
				OR dialer.provider_status_rank(old_status) IS NULL
				OR dialer.provider_status_rank(new_status) > dialer.provider_status_rank(old_status)
				OR (dialer.provider_status_rank(new_status) = dialer.provider_status_rank(old_status)
					AND dialer.provider_status_rank(new_status) < 5));
$$;
COMMENT ON FUNCTION dialer.provider_status_advances(text, text) IS
	'Internal: true when an attempt''s provider status may move from old_status to new_status (forward only; an unknown old status may be left)';

/*
 * The retry decision for a call whose current attempt ended busy or no_answer: retried
 * when its campaign's retry_busy / retry_no_answer (else its provider's) says so, the
 * run's attempts (attempts - attempts_base) are below max_attempts, and the retry,
 * retry_delay from now (the campaign's, else the provider's), comes before the deadline.
 * skipped names what refused an allowed retry (attempts_exhausted, deadline).  Exactly
 * one row (retry false when the provider is gone).
 */
CREATE FUNCTION dialer.call_retry_decision(call_row dialer.scheduled_calls, outcome text)
RETURNS TABLE (retry boolean, next_attempt_at timestamptz, retry_delay interval, skipped text)
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT d.allowed AND NOT d.exhausted AND NOT d.late, d.next_at, d.delay,
		   CASE WHEN d.allowed AND d.exhausted THEN 'attempts_exhausted'
				WHEN d.allowed AND d.late THEN 'deadline' END
	  FROM (SELECT coalesce(pol.allowed, false) AS allowed, pol.delay,
				   pg_catalog.now() + coalesce(pol.delay, interval '0') AS next_at,
				   coalesce((call_row).attempts - (call_row).attempts_base >= (call_row).max_attempts, false) AS exhausted,
				   coalesce(pg_catalog.now() + coalesce(pol.delay, interval '0') >= (call_row).deadline, false) AS late
			  FROM (SELECT 1) one
			  LEFT JOIN (
					SELECT CASE outcome WHEN 'busy' THEN coalesce(k.retry_busy, p.retry_busy)
										ELSE coalesce(k.retry_no_answer, p.retry_no_answer) END AS allowed,
						   coalesce(k.retry_delay, p.retry_delay) AS delay
					  FROM dialer.providers p
					  LEFT JOIN dialer.campaigns k ON k.name = (call_row).campaign
					 WHERE p.name = (call_row).provider) pol ON true) d;
$$;
COMMENT ON FUNCTION dialer.call_retry_decision(dialer.scheduled_calls, text) IS
	'Internal: whether a busy or no_answer call is retried (campaign''s over provider''s retry settings, attempts left, before the deadline), when, and what refused an allowed retry';

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
 * Every write of a status report in one statement: the attempt (attempt_id; NULL:
 * none), the call (when moves, or when its provider status follows the current attempt's
 * and it is not back in the queue), the event and, when the call goes back to the queue,
 * its retry_scheduled event.  call_row is the row as locked before the report; lock order:
 * the call (by the caller), then the attempt, as the worker does.
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
	last_error text,
	next_attempt_at timestamptz,
	event text,
	event_detail jsonb,
	retry_detail jsonb)
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
	p_moves		boolean := store_provider_report.moves;
	p_status	text := store_provider_report.new_status;
BEGIN
	WITH att AS (
		UPDATE dialer.call_attempts a
		   SET provider_call_id = coalesce(a.provider_call_id, p_sid),
			   provider_status = p_pstatus,
			   duration_seconds = dialer.report_value(a.duration_seconds, (p_data->>'duration_seconds')::int, p_stale),
			   answered_by = dialer.report_value(a.answered_by, p_data->>'answered_by', p_stale),
			   sip_response_code = dialer.report_value(a.sip_response_code, (p_data->>'sip_response_code')::int, p_stale),
			   recording_url = dialer.report_value(a.recording_url, p_data->>'recording_url', p_stale),
			   transcript = dialer.report_value(a.transcript, p_data->>'transcript', p_stale),
			   error_code = dialer.report_value(a.error_code, p_data->>'error_code', p_stale),
			   error_message = dialer.report_value(a.error_message, p_data->>'error_message', p_stale)
		 WHERE a.id = store_provider_report.attempt_id
		RETURNING a.id
	), cal AS (
		UPDATE dialer.scheduled_calls c
		   SET status = p_status,
			   provider_call_id = CASE WHEN p_moves THEN coalesce(p_sid, c.provider_call_id) ELSE c.provider_call_id END,
			   provider_status = coalesce(p_pstatus, c.provider_status),
			   last_error = CASE WHEN p_moves THEN store_provider_report.last_error ELSE c.last_error END,
			   next_attempt_at = CASE WHEN p_moves AND p_status = 'scheduled'
									  THEN store_provider_report.next_attempt_at ELSE c.next_attempt_at END,
			   finished_at = CASE WHEN NOT p_moves THEN c.finished_at
								  WHEN p_status IN ('completed', 'busy', 'no_answer', 'failed', 'canceled')
									  THEN coalesce(c.finished_at, pg_catalog.now())
								  END,
			   updated_at = pg_catalog.now()
		 WHERE c.id = v_call.id
		   AND (p_moves OR (store_provider_report.is_current AND p_pstatus IS DISTINCT FROM v_call.provider_status
							AND v_call.status <> 'scheduled'))
		RETURNING c.id
	)
	INSERT INTO dialer.call_events (call_id, event, from_status, to_status, detail)
	SELECT v_call.id, store_provider_report.event, v_call.status, p_status, store_provider_report.event_detail
	UNION ALL
	SELECT v_call.id, 'retry_scheduled', v_call.status, 'scheduled', store_provider_report.retry_detail
	 WHERE store_provider_report.retry_detail IS NOT NULL;
END;
$$;
COMMENT ON FUNCTION dialer.store_provider_report(dialer.scheduled_calls, bigint, text, text, jsonb, boolean, boolean, boolean, text, text, timestamptz, text, jsonb, jsonb) IS
	'Internal: writes what apply_provider_status decided, in one statement: the attempt''s fields, the call''s move, the event(s)';

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
	v_retry		boolean := false;
	v_next		timestamptz;
	v_delay		interval;
	v_retry_why	text;
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
	v_outcome := dialer.provider_status_outcome(v_status);

	/* 1. the call, locked: reports of one call are applied one at a time */
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = p_call_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN jsonb_build_object('result', 'unknown_call', 'call_id', p_call_id);
	END IF;

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
		v_forward := NOT v_stale AND dialer.provider_status_advances(v_status, v_att.provider_status);
		v_new_pstatus := CASE WHEN v_forward THEN v_status ELSE v_att.provider_status END;
	END IF;

	/* 3. the call: only its current attempt moves it, and only forward */
	v_new_status := v_call.status;
	v_moves := v_current AND NOT v_stale AND v_outcome IS NOT NULL
			   AND v_call.status IN ('dispatching', 'dialing', 'unknown');
	IF v_moves THEN
		IF v_outcome IN ('busy', 'no_answer') THEN
			SELECT d.retry, d.next_attempt_at, d.retry_delay, d.skipped
			  INTO v_retry, v_next, v_delay, v_retry_why
			  FROM dialer.call_retry_decision(v_call, v_outcome) d;
		END IF;
		v_new_status := CASE WHEN v_retry THEN 'scheduled' ELSE v_outcome END;
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
		is_current => v_current, moves => v_moves, new_status => v_new_status,
		last_error => v_error, next_attempt_at => v_next,
		event => coalesce(apply_provider_status.source, 'callback'),
		event_detail => coalesce(apply_provider_status.event_detail, '{}') || jsonb_strip_nulls(jsonb_build_object(
			'provider_status', v_status, 'provider_call_id', p_sid, 'attempt', v_att.attempt,
			'sequence', p_seq, 'dedupe_key', v_look.report_key, 'result', v_result,
			'stale', CASE WHEN v_stale THEN true END,
			'unmatched', CASE WHEN v_att.id IS NULL THEN true END,
			'retry_skipped', v_retry_why)),
		retry_detail => CASE WHEN v_new_status = 'scheduled' AND v_call.status <> 'scheduled' THEN
			jsonb_build_object('reason', v_outcome, 'attempt', v_att.attempt,
							   'next_attempt_at', v_next, 'retry_delay', v_delay::text,
							   'attempts_used', v_call.attempts - v_call.attempts_base,
							   'max_attempts', v_call.max_attempts) END);
	IF v_new_status <> v_call.status
	   AND v_new_status IN ('scheduled', 'completed', 'busy', 'no_answer', 'failed', 'canceled') THEN
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
 * The call a Twilio status callback is about: the call id of the callback URL (call_ref,
 * already checked to be a number), else the call, or the attempt, whose provider call
 * id is the CallSid, looked up under the CallSid's lock (dialer.lock_provider_call_id):
 * a callback that comes before the worker has stored the sid is kept in
 * dialer.pending_callbacks, and the worker, storing the sid under the same lock, then
 * finds it (or this one finds the sid stored).  NULL when none.
 */
CREATE FUNCTION dialer.twilio_callback_call(fields jsonb, call_ref text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	v_call_id	bigint := call_ref::bigint;
BEGIN
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
	RETURN v_call_id;
END;
$$;
COMMENT ON FUNCTION dialer.twilio_callback_call(jsonb, text) IS
	'Internal: the call a Twilio status callback is about, by the callback URL''s call id or (under the CallSid''s lock) by CallSid; NULL when none';

/*
 * The Twilio provider whose auth token signed a status callback, or the 403 refusal.
 * For a call pg_dialer knows (call_id), only its own provider's token is tried; for a
 * call it does not know (none found, or removed by cleanup, or placed by someone else:
 * call_id comes back NULL), the tokens of the Twilio providers of the AccountSid the
 * callback names.  The URL signed is the provider's status_callback_url plus
 * call_id=<call_ref> (exactly what the worker gave Twilio), in every form
 * dialer.twilio_signature_matches accepts.  Constant-time comparisons; nothing written.
 */
CREATE FUNCTION dialer.twilio_callback_signer(INOUT call_id bigint, call_ref text, fields jsonb, signature text,
											  OUT provider dialer.providers)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
	v_prov		dialer.providers;
	v_ok		boolean := false;
BEGIN
	IF twilio_callback_signer.call_id IS NOT NULL THEN
		SELECT p.* INTO v_prov
		  FROM dialer.scheduled_calls c JOIN dialer.providers p ON p.name = c.provider
		 WHERE c.id = twilio_callback_signer.call_id AND p.kind = 'twilio'
		   AND p.auth_token IS NOT NULL AND p.status_callback_url IS NOT NULL;
		IF FOUND THEN
			v_ok := dialer.twilio_signature_matches(v_prov.auth_token,
				dialer.twilio_callback_url(v_prov.status_callback_url, call_ref::bigint), fields, signature);
		ELSIF NOT EXISTS (SELECT 1 FROM dialer.scheduled_calls c WHERE c.id = twilio_callback_signer.call_id) THEN
			twilio_callback_signer.call_id := NULL;
		END IF;
	END IF;
	IF twilio_callback_signer.call_id IS NULL THEN
		FOR v_prov IN
			SELECT p.* FROM dialer.providers p
			 WHERE p.kind = 'twilio' AND p.account_sid = fields->>'AccountSid'
			   AND p.auth_token IS NOT NULL AND p.status_callback_url IS NOT NULL
			 ORDER BY p.name
		LOOP
			v_ok := dialer.twilio_signature_matches(v_prov.auth_token,
				dialer.twilio_callback_url(v_prov.status_callback_url, call_ref::bigint), fields, signature);
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
	provider := v_prov;
END;
$$;
COMMENT ON FUNCTION dialer.twilio_callback_signer(bigint, text, jsonb, text) IS
	'Internal: the Twilio provider whose auth token signed a status callback (the call''s own, else one of the AccountSid''s), and the call id when pg_dialer knows the call; else the 403 refusal';

/*
 * Authenticates and applies one Twilio status callback.
 *
 *   fields    every form field Twilio sent, as a JSON object of strings
 *   call_ref  pg_dialer's call id from the callback URL's query string (passed by the
 *             proxy in X-Dialer-Call-Id), or NULL: the call is then found by CallSid
 *
 * Steps: the shape of the request; the call (dialer.twilio_callback_call); the provider
 * whose token signed it (dialer.twilio_callback_signer); then, authentic, the report is
 * applied (dialer.twilio_apply_fields), or kept until its CallSid is known.  Nothing is
 * looked at beyond the call's and providers' rows until the signature matches, and
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
	v_signer	record;
	v_call_id	bigint;
	v_prov		dialer.providers;
	v_sid		text;
	v_seq		bigint;
	v_status	text;
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

	/* the call, and the provider whose token signed the callback (else 403) */
	v_signer := dialer.twilio_callback_signer(dialer.twilio_callback_call(fields, call_ref), call_ref, fields, v_sig);
	v_call_id := v_signer.call_id;
	v_prov := v_signer.provider;

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
	IF v_call_id IS NULL AND call_ref IS NULL THEN
		/* not known by its sid yet (the worker has not stored it): kept, applied when it is */
		INSERT INTO dialer.pending_callbacks (provider, provider_call_id, sequence, fields)
		VALUES (v_prov.name, v_sid, v_seq, fields);
		RETURN jsonb_build_object('result', 'pending', 'reason', 'no call has this CallSid yet: kept until one has',
								  'provider_call_id', v_sid);
	END IF;
	IF v_call_id IS NULL THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'no call of pg_dialer has this call id or CallSid',
								  'call_id', v_call_id);
	END IF;

	RETURN dialer.twilio_apply_fields(v_call_id, fields, v_seq, 'callback');
END;
$$;
COMMENT ON FUNCTION dialer.twilio_ingest(jsonb, text) IS
	'Internal: authenticates a Twilio status callback (X-Twilio-Signature over the configured public URL and the fields) and applies it (or keeps it in pending_callbacks until its CallSid is stored)';

/*
 * Applies the fields of an authentic Twilio status callback to a call (through
 * dialer.apply_provider_status): the outcome fields go on the attempt, the event keeps
 * every field but credentials.  source names the event.
 */
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

/*
 * Authentic callbacks that came before their call was known by its provider call id:
 * Twilio may post the first status callback before the worker has stored the CallSid of
 * its answer, and a callback posted straight to PostgREST carries no call id.  Such a
 * callback is kept here, and applied (then removed) when the sid is stored
 * (dialer.apply_pending_callbacks).  One that never finds its call (a call placed by
 * someone else on the same account) stays until dialer.cleanup() removes it.
 */
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
COMMENT ON COLUMN dialer.pending_callbacks.id IS 'Identity of the kept callback';
COMMENT ON SEQUENCE dialer.pending_callbacks_id_seq IS 'Identity of dialer.pending_callbacks.id';
CREATE INDEX pending_callbacks_provider_call_id_idx ON dialer.pending_callbacks (provider_call_id);
SELECT pg_catalog.pg_extension_config_dump('dialer.pending_callbacks', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.pending_callbacks', 'id'), '');

/*
 * Trigger: a call's provider call id was stored (by the worker, from the provider's
 * answer): the callbacks kept for that sid are applied in their order, as they would
 * have been had they come later, and removed.
 */
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
	-- statements of their own, after the lock: they see what a callback committed meanwhile;
	-- the usual case, nothing kept for the sid, costs one index probe
	IF NOT EXISTS (SELECT 1 FROM dialer.pending_callbacks p WHERE p.provider_call_id = NEW.provider_call_id) THEN
		RETURN NULL;
	END IF;
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

/* ------------------------------------------------------------------------------------
 * JSON webhooks (backend, voice_api)
 * ------------------------------------------------------------------------------------ */

/*
 * The call a JSON webhook names, and its provider: metadata.call_id when the body has it
 * (pg_dialer's id, as the worker sent it), else call_id, first as the provider's id of a
 * call of a backend or voice_api provider (then provider_call_id is that id), then as
 * pg_dialer's.  NULLs when no call matches.  Nothing here is trusted yet: it only finds
 * the secret the signature is checked with.
 */
CREATE FUNCTION dialer.json_webhook_call(doc jsonb, OUT call_id bigint, OUT provider text,
										 OUT provider_call_id text)
LANGUAGE plpgsql
STABLE
AS $$
#variable_conflict use_column
DECLARE
	v_ref		text;
BEGIN
	IF jsonb_typeof(doc->'metadata') = 'object' AND doc->'metadata' ? 'call_id' THEN
		v_ref := doc->'metadata'->>'call_id';
		IF v_ref ~ '^[1-9][0-9]{0,17}$' THEN
			SELECT c.id, c.provider INTO json_webhook_call.call_id, json_webhook_call.provider
			  FROM dialer.scheduled_calls c WHERE c.id = v_ref::bigint;
		END IF;
		RETURN;
	END IF;
	v_ref := CASE jsonb_typeof(doc->'call_id') WHEN 'string' THEN doc->>'call_id'
											   WHEN 'number' THEN doc->>'call_id' END;
	IF v_ref IS NOT NULL AND v_ref <> '' THEN
		SELECT c.id, c.provider, c.provider_call_id
		  INTO json_webhook_call.call_id, json_webhook_call.provider, json_webhook_call.provider_call_id
		  FROM dialer.scheduled_calls c JOIN dialer.providers p ON p.name = c.provider
		 WHERE c.provider_call_id = v_ref AND p.kind IN ('backend', 'voice_api')
		 ORDER BY c.id DESC LIMIT 1;
		IF json_webhook_call.call_id IS NULL AND v_ref ~ '^[1-9][0-9]{0,17}$' THEN
			SELECT c.id, c.provider INTO json_webhook_call.call_id, json_webhook_call.provider
			  FROM dialer.scheduled_calls c WHERE c.id = v_ref::bigint;
		END IF;
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.json_webhook_call(jsonb) IS
	'Internal: the call (id, provider, provider call id) a JSON webhook body names by metadata.call_id or call_id; NULLs when none';

/*
 * Refuses (400) an authentic JSON webhook whose fields are malformed: status missing or
 * not a string, duration not a non-negative number of seconds, sequence not a
 * non-negative integer, metadata not an object, recording_url not a string.
 */
CREATE FUNCTION dialer.json_webhook_check_fields(doc jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF jsonb_typeof(doc->'status') IS DISTINCT FROM 'string' OR doc->>'status' = '' THEN
		PERFORM dialer.webhook_refuse(400, 'status is required and must be a string');
	END IF;
	IF doc ? 'duration' AND jsonb_typeof(doc->'duration') <> 'null'
	   AND NOT (jsonb_typeof(doc->'duration') IN ('number', 'string')
				AND (doc->>'duration') ~ '^[0-9]{1,9}(\.[0-9]+)?$') THEN
		PERFORM dialer.webhook_refuse(400, 'duration must be a non-negative number of seconds');
	END IF;
	IF doc ? 'sequence' AND jsonb_typeof(doc->'sequence') <> 'null'
	   AND (doc->>'sequence') !~ '^[0-9]{1,18}$' THEN
		PERFORM dialer.webhook_refuse(400, 'sequence must be a non-negative integer');
	END IF;
	IF doc ? 'metadata' AND jsonb_typeof(doc->'metadata') NOT IN ('object', 'null') THEN
		PERFORM dialer.webhook_refuse(400, 'metadata must be a JSON object');
	END IF;
	IF doc ? 'recording_url' AND jsonb_typeof(doc->'recording_url') NOT IN ('string', 'null') THEN
		PERFORM dialer.webhook_refuse(400, 'recording_url must be a string');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.json_webhook_check_fields(jsonb) IS
	'Internal: raises the 400 refusal of a JSON webhook body with a malformed status, duration, sequence, metadata or recording_url';

/*
 * What an (authentic, checked) JSON webhook body tells about the attempt, in
 * apply_provider_status's attempt_data keys: the duration rounded to whole seconds, a
 * transcript that is not a string kept as its JSON text.
 */
CREATE FUNCTION dialer.json_webhook_attempt_data(doc jsonb)
RETURNS jsonb
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'duration_seconds', pg_catalog.round((doc->>'duration')::numeric)::int,
		'answered_by', doc->>'answered_by',
		'recording_url', nullif(doc->>'recording_url', ''),
		'transcript', CASE pg_catalog.jsonb_typeof(doc->'transcript')
						WHEN 'string' THEN nullif(doc->>'transcript', '')
						WHEN 'null' THEN NULL
						ELSE (doc->'transcript')::text END,
		'error_code', doc->>'error_code',
		'error_message', doc->>'error_message'));
$$;
COMMENT ON FUNCTION dialer.json_webhook_attempt_data(jsonb) IS
	'Internal: the attempt data (duration_seconds, answered_by, recording_url, transcript, error_code, error_message) of a JSON webhook body';

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
	v_call		record;
	v_prov		dialer.providers;
	v_expected	text;
	v_data		jsonb;
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
	v_call := dialer.json_webhook_call(v_doc);
	IF v_call.provider IS NOT NULL THEN
		SELECT * INTO v_prov FROM dialer.providers p
		 WHERE p.name = v_call.provider AND p.kind IN ('backend', 'voice_api') AND p.webhook_secret IS NOT NULL;
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

	/* authentic from here on: the fields, then the report */
	PERFORM dialer.json_webhook_check_fields(v_doc);
	v_data := dialer.json_webhook_attempt_data(v_doc);
	RETURN dialer.apply_provider_status(
		v_call.call_id, v_doc->>'status',
		coalesce(CASE jsonb_typeof(v_doc->'provider_call_id') WHEN 'string' THEN v_doc->>'provider_call_id' END,
				 v_call.provider_call_id),
		CASE WHEN jsonb_typeof(v_doc->'sequence') <> 'null' THEN (v_doc->>'sequence')::bigint END,
		v_data,
		jsonb_build_object('via', v_prov.kind) || jsonb_strip_nulls(jsonb_build_object(
			'status', v_doc->>'status',
			'duration', v_doc->'duration',
			'recording_url', v_doc->'recording_url',
			'metadata', CASE WHEN octet_length((v_doc->'metadata')::text) <= 8192 THEN v_doc->'metadata' END,
			'transcript_chars', CASE WHEN v_doc ? 'transcript' THEN length(v_data->>'transcript') END,
			'timestamp', v_ts::bigint)),
		'webhook',
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
 * pg_dialer: campaigns.
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
 *
 * Copyright (c) 2026, pg_dialer developers
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
COMMENT ON COLUMN dialer.campaign_source_row.customer_ref IS 'The application''s reference of the candidate';
COMMENT ON COLUMN dialer.campaign_source_row.phone IS 'The number to call (E.164; spaces ( ) . - are ignored)';
COMMENT ON COLUMN dialer.campaign_source_row.payload IS 'The candidate''s own payload keys (over the campaign''s payload)';
COMMENT ON COLUMN dialer.campaign_source_row.timezone IS 'The candidate''s IANA time zone (NULL: the campaign''s)';
COMMENT ON COLUMN dialer.campaign_source_row.due_at IS 'What the call is about (appointment, expiry): the lookahead window';

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
 * Step 1 of campaign_candidates: the rows read from a campaign's source as candidates:
 * the number without spaces ( ) . -, the candidate's payload merged over the
 * campaign's, the dedupe key a run would give the call (campaign:<name>:<customer_ref
 * or md5 of a long one>:<suffix>), and the row's position in the source.
 */
CREATE FUNCTION dialer.campaign_source_candidates(k dialer.campaigns, source_rows dialer.campaign_source_row[],
												  key_suffix text)
RETURNS TABLE (ref text, raw_phone text, num text, raw_payload jsonb, pl jsonb, tz text, due timestamptz,
			   ord bigint, key text)
LANGUAGE sql
STABLE
AS $$
	SELECT s.customer_ref,
		   s.phone,
		   regexp_replace(s.phone, '[[:space:]().-]', '', 'g'),
		   s.payload,
		   k.payload || CASE WHEN jsonb_typeof(s.payload) = 'object' THEN s.payload ELSE '{}' END,
		   s.timezone,
		   s.due_at,
		   s.o,
		   format('campaign:%s:%s:%s', k.name,
				  CASE WHEN length(s.customer_ref) <= 100 THEN s.customer_ref
					   ELSE 'md5.' || md5(s.customer_ref) END,
				  key_suffix)
	  FROM unnest(source_rows) WITH ORDINALITY AS s(customer_ref, phone, payload, timezone, due_at, o);
$$;
COMMENT ON FUNCTION dialer.campaign_source_candidates(dialer.campaigns, dialer.campaign_source_row[], text) IS
	'Internal: step 1 of campaign_candidates: source rows as candidates (number cleaned, payload merged over the campaign''s, dedupe key, position)';

/*
 * The candidate reason for a rule of dialer.call_rule (the one home of the enqueue
 * rules) that a candidate breaks: its number (invalid_phone), its time zone
 * (invalid_timezone) or its payload (invalid_payload).  The rules about the
 * campaign's own settings (provider, priority, max_attempts) are not the
 * candidate's fault: NULL, and the run's enqueue reports them.
 */
CREATE FUNCTION dialer.campaign_reason_of_call_rule(call_rule text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
	SELECT CASE
			 WHEN call_rule IN ('to_number_missing', 'to_number_format') THEN 'invalid_phone'
			 WHEN call_rule = 'timezone' THEN 'invalid_timezone'
			 WHEN call_rule IN ('payload_type', 'payload_size', 'payload_mode', 'payload_base_url', 'payload_message',
								'nothing_to_say', 'payload_from') THEN 'invalid_payload'
		   END;
$$;
COMMENT ON FUNCTION dialer.campaign_reason_of_call_rule(text) IS
	'Internal: the campaign candidate reason (invalid_phone, invalid_timezone, invalid_payload) for a rule of dialer.call_rule broken by a candidate; NULL for rules about the campaign''s own settings';

/*
 * The detail of a candidate's invalid_payload for the payload rule of dialer.call_rule
 * it breaks, in the campaigns' words (raw_payload: the source's own, payload: merged
 * over the campaign's); NULL for the rules whose detail is the enqueue's error.
 */
CREATE FUNCTION dialer.campaign_payload_detail(call_rule text, raw_payload jsonb, payload jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
	SELECT CASE call_rule
			 WHEN 'payload_type' THEN format('payload must be a JSON object, not %s', jsonb_typeof(raw_payload))
			 WHEN 'payload_size' THEN format('payload is %s bytes, over 64 kB', octet_length(payload::text))
			 WHEN 'payload_mode' THEN format('payload.mode %s is neither DIRECT nor BRIEF_START', quote_literal(payload->>'mode'))
			 WHEN 'payload_from' THEN format('payload.from %s is not an E.164 number', payload->'from')
		   END;
$$;
COMMENT ON FUNCTION dialer.campaign_payload_detail(text, jsonb, jsonb) IS
	'Internal: the detail of a campaign candidate''s invalid_payload for the dialer.call_rule payload rule it breaks (NULL: use the enqueue''s error)';

/*
 * Every candidate of a campaign's source with the verdict of the rules: included, or the
 * reason it is left out (the first rule it fails, in this order):
 *
 *   campaign_disabled     the campaign is disabled
 *   invalid_customer_ref  customer_ref is NULL or empty
 *   invalid_phone         phone is not E.164 (after removing spaces ( ) . -)
 *   invalid_timezone      the candidate's timezone is unknown
 *   invalid_payload       payload not an object, over 64 kB, bad mode or from, or any
 *                         other payload rule of dialer.call_rule (the enqueue's rules)
 *   do_not_call           the number is on dialer.do_not_call (the ledger entry in detail)
 *   not_allowed           the campaign has an allow-list (pilot) without this number
 *   outside_lookahead     due_at's local date is before today or after today + days
 *   scheduled_today       a call of the campaign for this customer is due today (or
 *                         this run's dedupe key exists)
 *   call_pending          a call of the campaign to this customer or number is still
 *                         scheduled, dispatching or dialing
 *   called_recently       a call to the number reached the provider within
 *                         skip_called_within_days
 *   calling_policy        a calling policy refuses a call now (contact cap reached,
 *                         silence after a refusal, consent missing, unknown time zone,
 *                         no opening within 60 days): detail names policy and rule
 *   duplicate_customer    the source yields the customer again (the earliest due is kept)
 *   duplicate_phone       another included customer has the same number
 *   over_daily_cap        max_calls_per_day is used up
 *
 * A candidate a policy only holds (its window is closed now in the recipient's zone, or
 * it is a blackout day there) is included: its call is enqueued and waits for the
 * opening; detail says "held by policy P, rule R until T".
 *
 * The pipeline: candidates (step 1, dialer.campaign_source_candidates), facts looked
 * up for each (do-not-call entry, today's call, a pending call, a recent call, the
 * enqueue rule broken), the campaign rules (each rule's condition and detail written
 * once, in one list), the calling policies (dialer.compliance_verdict, only for
 * candidates every other rule lets through, and only when a policy is enabled), then
 * duplicates and the daily cap over the whole set.  Included candidates come first,
 * in the order run_campaign takes them: earliest due_at first (no due_at last), then
 * customer_ref.  days overrides lookahead_days.
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
	v_rows		dialer.campaign_source_row[];
BEGIN
	IF days IS NOT NULL AND days NOT BETWEEN 0 AND 366 THEN
		PERFORM dialer.raise_bad_argument('days', days::text,
			'days is the lookahead window in days, from 0 (today only) to 366.',
			'Omit it to use the campaign''s lookahead_days.');
	END IF;
	-- the source is read with the caller's rights; the rules are applied by the owner
	EXECUTE dialer.campaign_source_query(k.source) INTO v_rows USING dialer.campaign_timezone(k.timezone);
	RETURN QUERY SELECT * FROM dialer.campaign_candidate_verdicts(k.name, v_rows, days);
END;
$$;
COMMENT ON FUNCTION dialer.campaign_candidates(text, int) IS
	'Every candidate of a campaign''s source with included, the reason it is left out (campaign_disabled, invalid_customer_ref, invalid_phone, invalid_timezone, invalid_payload, do_not_call, not_allowed, outside_lookahead, scheduled_today, call_pending, called_recently, calling_policy, duplicate_customer, duplicate_phone, over_daily_cap) and a detail (for calling_policy, and for an included candidate a policy holds until its opening, the policy and rule); days overrides lookahead_days. Reads the source with the caller''s rights.';

/*
 * The rules of campaign_candidates applied to the rows read from the campaign's
 * source (see there), as the extension owner: the calling policies, consents and
 * providers' settings they read are not the caller's to read.  Granted with
 * dialer.grant_campaigns; a role that may run it may read the queue and the
 * do-not-call list already.
 */
CREATE FUNCTION dialer.campaign_candidate_verdicts(campaign text, source_rows dialer.campaign_source_row[], days int)
RETURNS TABLE (customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz,
			   included boolean, reason text, detail text, dedupe_key text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
SET jit = off
AS $$
DECLARE
	k			dialer.campaigns := dialer.get_campaign(campaign);
	v_days		int := coalesce(days, k.lookahead_days);
	v_tz		text := dialer.campaign_timezone(k.timezone);
	v_today		date := (now() AT TIME ZONE v_tz)::date;
	v_start		timestamptz := v_today::timestamp AT TIME ZONE v_tz;
	v_end		timestamptz := (v_today + 1)::timestamp AT TIME ZONE v_tz;
	v_suffix	text := CASE WHEN k.once_per_day THEN to_char(v_today, 'YYYY-MM-DD')
							 ELSE to_char(now() AT TIME ZONE v_tz, 'YYYY-MM-DD"T"HH24:MI') END;
	v_skip		int := coalesce(k.skip_called_within_days, 0);
	v_policies	boolean := EXISTS (SELECT 1 FROM dialer.calling_policies p WHERE p.enabled);
	v_rows		dialer.campaign_source_row[] := source_rows;
	v_prov		dialer.providers;
	v_used		int;
	v_left		int;
BEGIN
	SELECT * INTO v_prov FROM dialer.providers p WHERE p.name = k.provider;
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
	), facts AS (
		-- each candidate with what the rules look at: the enqueue rule it breaks, its
		-- do-not-call entry, a call of today, a pending call, a recent call
		SELECT src.*, dnc AS dnc, dnc.number AS dnc_number,
			   dialer.call_rule(
					to_number => src.num, run_at => now(), provider => k.provider,
					payload => CASE WHEN jsonb_typeof(src.raw_payload) <> 'object' THEN src.raw_payload ELSE src.pl END,
					campaign => k.name, dedupe_key => NULL, priority => k.priority, max_attempts => k.max_attempts,
					timezone => src.tz, deadline => NULL, provider_kind => v_prov.kind,
					provider_hosts => v_prov.allowed_hosts, provider_twiml_url => v_prov.twiml_url,
					late_ok => false) AS bad_rule,
			   today.id AS today_id, today.status AS today_status,
			   pend.id AS pend_id, pend.status AS pend_status, pend.to_number AS pend_number,
			   recent.id AS recent_id, recent.status AS recent_status, recent.at AS recent_at
		  FROM dialer.campaign_source_candidates(k, v_rows, v_suffix) src
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
	), ruled AS (
		-- the campaign rules, in order, each with its condition and its detail once; the
		-- first broken one is the candidate's reason (the details are formatted for it only)
		SELECT f.*, r.why, r.why_detail
		  FROM (SELECT x.*, dialer.campaign_reason_of_call_rule(x.bad_rule) AS bad FROM facts x) f
		  LEFT JOIN LATERAL (
				SELECT l.why,
					   CASE l.why
						 WHEN 'campaign_disabled' THEN format('campaign %s is disabled', quote_literal(k.name))
						 WHEN 'invalid_customer_ref' THEN 'customer_ref is NULL or empty'
						 WHEN 'invalid_phone' THEN
							format('phone %s is not an E.164 number (+, then 8 to 15 digits, the first not 0)',
								   coalesce(quote_literal(f.raw_phone), 'NULL'))
						 WHEN 'invalid_timezone' THEN format('time zone %s is not known to PostgreSQL', quote_literal(f.tz))
						 WHEN 'invalid_payload' THEN coalesce(dialer.campaign_payload_detail(f.bad_rule, f.raw_payload, f.pl),
							(SELECT x.message || ' (' || x.detail || ')'
							   FROM dialer.call_refusal(
									to_number => f.num, run_at => now(), provider => k.provider, payload => f.pl,
									campaign => k.name, dedupe_key => NULL, priority => k.priority,
									max_attempts => k.max_attempts, timezone => f.tz, deadline => NULL,
									provider_kind => v_prov.kind, provider_hosts => v_prov.allowed_hosts,
									provider_twiml_url => v_prov.twiml_url, late_ok => false) x))
						 WHEN 'do_not_call' THEN dialer.do_not_call_detail(f.dnc)
						 WHEN 'not_allowed' THEN
							format('%s is not in the campaign''s allowed_numbers (pilot allow-list)', f.num)
						 WHEN 'outside_lookahead' THEN
							format('due on %s, outside the lookahead window %s to %s (%s)',
								   (f.due AT TIME ZONE v_tz)::date, v_today, v_today + v_days, v_tz)
						 WHEN 'scheduled_today' THEN
							format('call %s (%s) is already scheduled for this customer today', f.today_id, f.today_status)
						 WHEN 'call_pending' THEN format('call %s to %s is still %s', f.pend_id, f.pend_number, f.pend_status)
						 WHEN 'called_recently' THEN
							format('call %s reached the provider at %s (%s), within the last %s days',
								   f.recent_id, f.recent_at, f.recent_status, v_skip)
					   END AS why_detail
				  FROM (VALUES
						(1, 'campaign_disabled', NOT k.enabled),
						(2, 'invalid_customer_ref', f.ref IS NULL OR btrim(f.ref) = ''),
						(3, 'invalid_phone', f.bad = 'invalid_phone'),
						(4, 'invalid_timezone', f.bad = 'invalid_timezone'),
						(5, 'invalid_payload', f.bad = 'invalid_payload'),
						(6, 'do_not_call', f.dnc_number IS NOT NULL),
						(7, 'not_allowed', k.allowed_numbers IS NOT NULL AND f.num <> ALL (k.allowed_numbers)),
						(8, 'outside_lookahead', f.due IS NOT NULL
							 AND (f.due AT TIME ZONE v_tz)::date NOT BETWEEN v_today AND v_today + v_days),
						(9, 'scheduled_today', f.today_id IS NOT NULL),
						(10, 'call_pending', f.pend_id IS NOT NULL),
						(11, 'called_recently', f.recent_id IS NOT NULL)) l(o, why, broken)
				 WHERE l.broken
				 ORDER BY l.o
				 LIMIT 1) r ON true
	), policed AS (
		-- the calling policies, for the candidates the campaign rules let through, as a
		-- call enqueued now would meet them (no verdict at all when no policy is enabled)
		SELECT r.*, pv.decision, pv.next_opening,
			   format('policy %s, rule %s: %s', pv.policy, pv.rule,
					  regexp_replace(pv.reason, '^policy [^,]+, rule [a-z_]+: ', '')) AS policy_detail
		  FROM ruled r
		  LEFT JOIN LATERAL (
				SELECT v.* FROM dialer.compliance_verdict(r.num, now(), coalesce(r.tz, k.timezone), k.name, k.provider,
														  r.pl->>'purpose', k.call_window_start, k.call_window_end) v
				 WHERE v_policies AND r.why IS NULL AND cardinality(v.policies) > 0) pv ON true
	), ruled_all AS (
		SELECT p.*,
			   coalesce(p.why, CASE WHEN p.decision = 'refuse' THEN 'calling_policy' END) AS why1,
			   CASE WHEN p.why IS NOT NULL THEN p.why_detail
					WHEN p.decision = 'refuse' THEN p.policy_detail
					WHEN p.decision = 'park' THEN format('held until %s: %s', p.next_opening, p.policy_detail) END AS detail1
		  FROM policed p
	), by_customer AS (
		SELECT ra.*,
			   row_number() OVER (PARTITION BY ra.why1 IS NULL, ra.ref
								  ORDER BY ra.due NULLS LAST, ra.ord) AS n_ref
		  FROM ruled_all ra
	), by_number AS (
		SELECT b.*,
			   coalesce(b.why1, CASE WHEN b.n_ref > 1 THEN 'duplicate_customer' END) AS why2,
			   row_number() OVER (PARTITION BY b.why1 IS NULL AND b.n_ref = 1, b.num
								  ORDER BY b.due NULLS LAST, b.ref, b.ord) AS n_num,
			   first_value(b.ref) OVER (PARTITION BY b.why1 IS NULL AND b.n_ref = 1, b.num
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
				ELSE f.detail1 END,
		   CASE WHEN f.verdict IS NULL THEN f.key END
	  FROM final f
	 ORDER BY f.verdict IS NOT NULL, f.due NULLS LAST, f.ref, f.ord;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_candidate_verdicts(text, dialer.campaign_source_row[], int) IS
	'Internal: the rules of dialer.campaign_candidates applied, as the extension owner, to the rows read from a campaign''s source';

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
 * date> (…:<local date>T<HH:MM> when once_per_day is off).  The candidates go to
 * dialer.enqueue_calls() in one set-based, all-or-nothing call.
 */
CREATE FUNCTION dialer.run_campaign(campaign text, max_calls int DEFAULT NULL)
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
COMMENT ON COLUMN dialer.campaign_runs.id IS 'Run id (identity)';
COMMENT ON COLUMN dialer.campaign_runs.campaign IS 'The campaign (dialer.campaigns) that ran';
COMMENT ON COLUMN dialer.campaign_runs.timezone IS 'The campaign''s time zone at the run (of local_slot)';
COMMENT ON COLUMN dialer.campaign_runs.started_at IS 'When the run started';
COMMENT ON COLUMN dialer.campaign_runs.finished_at IS 'When the run ended (NULL: running)';
COMMENT ON COLUMN dialer.campaign_runs.enqueued IS 'How many calls the run enqueued';
COMMENT ON COLUMN dialer.campaign_runs.error IS 'Error message of a run with outcome error';
COMMENT ON SEQUENCE dialer.campaign_runs_id_seq IS 'Identity of dialer.campaign_runs.id';
SELECT pg_catalog.pg_extension_config_dump('dialer.campaign_runs', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.campaign_runs', 'id'), '');

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
 * Run by DROP EXTENSION pg_dialer just before the extension goes (src/launcher.c, in the
 * dropping backend and transaction): removes the pg_cron job pg_dialer scheduled (it
 * would fail every minute once dialer.run_scheduled_campaigns is gone), warns about other
 * pg_cron jobs whose command names a dialer function (they would fail too: they are the
 * user's to remove), and warns when calls are still to be placed or in progress (their
 * outcomes can no longer be recorded; a request already sent may still ring).  A DROP
 * that fails afterwards rolls all of it back.
 */
CREATE FUNCTION dialer.before_drop()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_scheduled	bigint;
	v_active	bigint;
	v_unknown	bigint;
	v_jobs		text;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron') THEN
		EXECUTE 'SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = $1 AND j.command = $2'
		  USING 'pg_dialer_campaigns'::text, 'SELECT dialer.run_scheduled_campaigns()'::text;
		EXECUTE 'SELECT string_agg(format(''%s (%s)'', coalesce(quote_literal(j.jobname), ''job '' || j.jobid), j.command), ''; '')
				   FROM cron.job j WHERE j.command ~ $1 AND j.database = current_database()'
		   INTO v_jobs
		  USING '\mdialer(_admin|_api)?\.'::text;
		IF v_jobs IS NOT NULL THEN
			RAISE WARNING 'pg_cron jobs that call pg_dialer will fail once it is dropped: %', v_jobs
				USING HINT = 'Remove them with SELECT cron.unschedule(jobid), or re-create the extension.';
		END IF;
	END IF;

	SELECT count(*) FILTER (WHERE c.status = 'scheduled'),
		   count(*) FILTER (WHERE c.status IN ('dispatching', 'dialing')),
		   count(*) FILTER (WHERE c.status = 'unknown')
	  INTO v_scheduled, v_active, v_unknown
	  FROM dialer.scheduled_calls c
	 WHERE c.status IN ('scheduled', 'dispatching', 'dialing', 'unknown');
	IF v_scheduled + v_active + v_unknown > 0 THEN
		RAISE WARNING 'DROP EXTENSION pg_dialer drops % scheduled call(s), % call(s) in progress and % unknown call(s)',
			v_scheduled, v_active, v_unknown
			USING DETAIL = 'Scheduled calls will not be placed; a call in progress may already be ringing, and its outcome can no longer be recorded.',
				  HINT = 'To keep them, let them finish first, or save them with pg_dump -n dialer (a DROP EXTENSION inside a transaction can still be rolled back).';
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.before_drop() IS
	'Internal: run by DROP EXTENSION pg_dialer before the drop: removes pg_dialer''s pg_cron job, warns about other pg_cron jobs calling pg_dialer and about calls still scheduled, in progress or unknown';

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
	PERFORM dialer.grant_to(role_name,		/* in 90_privileges.sql */
		'SELECT ON dialer.campaigns, dialer.campaign_runs, dialer.campaign_schedules, '
		'dialer.scheduled_calls, dialer.do_not_call',
		'SELECT (name, kind, enabled) ON dialer.providers',
		'EXECUTE ON FUNCTION dialer.pending_customers(text, int, int), '
		'dialer.campaign_candidates(text, int), dialer.run_campaign(text, int), '
		'dialer.campaign_candidate_verdicts(text, dialer.campaign_source_row[], int), '
		'dialer.campaign_enqueue(text, text, text, jsonb, text, text), dialer.enqueue_calls(jsonb, boolean), '
		'dialer.get_campaign(text), dialer.campaign_timezone(text), '
		'dialer.resolve_campaign_source(text), dialer.campaign_source_columns(text), '
		'dialer.campaign_source_query(text), dialer.raise_bad_argument(text, text, text, text, text), '
		'dialer.parse_schedule(text), dialer.cron_field(text, text, int, int, text[], text), '
		'dialer.schedule_runs(text, text, timestamptz, timestamptz), '
		'dialer.schedule_next_run(text, text, timestamptz), '
		'dialer.schedule_last_run(text, text, timestamptz, timestamptz)');
	IF manage THEN
		PERFORM dialer.grant_to(role_name,
			'INSERT, UPDATE, DELETE ON dialer.campaigns',
			'EXECUTE ON FUNCTION dialer.schedule_campaign(text, text), dialer.unschedule_campaign(text), '
			'dialer.require_pg_cron(), dialer.campaign_ticker(boolean)');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.grant_campaigns(name, boolean) IS
	'Grants a role the use of campaigns (pending_customers, campaign_candidates, run_campaign, schedules); manage => true also lets it write dialer.campaigns and (un)schedule them. Sources are read with the role''s own rights.';
/*
 * pg_dialer: who may be called, and when (calling policies).
 *
 * Rules are data.  A calling policy holds weekday windows (several per day),
 * blackout calendars (public holidays, one-off dates), a per-recipient cap (at most
 * N calls per number per rolling period, counted on attempts the provider accepted,
 * across every campaign and one-off call) and a silence after a refusal.  Its scope
 * is the conjunction of its non-empty selectors: country calling codes, US area
 * codes, campaigns, providers; a policy with no selector applies to every call (a
 * server default).  The effective rule of a call is the intersection of every
 * enabled policy that applies to it, and of dialer.call_window_start/_end (or the
 * campaign's window): never the union.
 *
 * The recipient's time zones: the call's, else the campaign's, else those
 * libphonenumber's prefix data gives for the number (dialer.number_timezones); a
 * number with several zones is called only when every rule is open in all of them;
 * a number whose zone cannot be known is not dialled when a policy applies to it.
 *
 * dialer.compliance_verdict() decides (allow, park until an opening, refuse) and
 * names the policy and rule; dialer.claim_calls() applies it at dispatch.  The
 * presets (US-TCPA, US-FL, FR) are templates: dialer.use_preset() makes an enabled
 * policy of one.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * libphonenumber's prefix -> time-zone map (loaded by 55_number_timezones_data.sql).
 */
CREATE TABLE dialer.number_timezones (
	prefix				text PRIMARY KEY CHECK (prefix ~ '^[0-9]{1,15}$'),
	zones				text[] NOT NULL CHECK (cardinality(zones) >= 1)
);
COMMENT ON TABLE dialer.number_timezones IS
	'libphonenumber''s prefix to time-zone map (Apache-2.0; version and refresh command in sql/install/data/README.md): longest matching prefix of an E.164 number (without +) gives its IANA zones';
COMMENT ON COLUMN dialer.number_timezones.prefix IS 'Leading digits of E.164 numbers, country calling code first, without +';
COMMENT ON COLUMN dialer.number_timezones.zones IS 'IANA time zones numbers with this prefix may be in (several: called only when open in all)';

/*
 * The version of each table that backends keep a copy of (src/table_cache.c): the
 * transaction and command of its last change, written by the table's trigger
 * (dialer.cached_table_changed).  A copy is used only under a snapshot that sees the
 * version it was read at; under any other it is read again.
 */
CREATE TABLE dialer.cached_table_versions (
	table_name			text PRIMARY KEY,
	changed_in			bigint NOT NULL DEFAULT 0,
	changed_at			bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE dialer.cached_table_versions IS
	'Internal: the version of each dialer table that backends copy (dialer.number_timezones): the last change''s transaction and command, written by its trigger';
COMMENT ON COLUMN dialer.cached_table_versions.table_name IS 'The copied table, in schema dialer';
COMMENT ON COLUMN dialer.cached_table_versions.changed_in IS 'Full transaction id of its last change (0: as installed)';
COMMENT ON COLUMN dialer.cached_table_versions.changed_at IS 'Command id of its last change within that transaction';
INSERT INTO dialer.cached_table_versions (table_name) VALUES ('number_timezones');

/*
 * The IANA zones of a number by the longest prefix of dialer.number_timezones; NULL
 * when unknown (libphonenumber marks unknown with Etc/Unknown: that is NULL here
 * too).  The one home of the lookup, in C (src/number_zones.c): each backend keeps
 * the map in a hash table, read again under a snapshot that sees another version of
 * the table (dialer.cached_table_versions, the trigger below), because the claim
 * looks up every call's number under a calling policy.
 */
CREATE FUNCTION dialer.number_timezones(number text)
RETURNS text[]
LANGUAGE c
STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_number_timezones';
COMMENT ON FUNCTION dialer.number_timezones(text) IS
	'IANA time zones of an E.164 number by the longest matching prefix of libphonenumber''s data (dialer.number_timezones); NULL when unknown';

/*
 * Backends keep a copy of this map.  Every change to it moves its version in
 * dialer.cached_table_versions, and a reader whose snapshot sees the new version
 * reads the map again.
 */
CREATE FUNCTION dialer.cached_table_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'dialer_cached_table_changed';
COMMENT ON FUNCTION dialer.cached_table_changed() IS
	'Trigger: after a change to a table backends keep a copy of (dialer.number_timezones), writes its new version into dialer.cached_table_versions so that readers seeing the change read the table again';
CREATE TRIGGER number_timezones_cached AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dialer.number_timezones
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.cached_table_changed();

/*
 * The recipient's time zones: the one home of the rule that says in which zones a
 * call's calling window is read, used by the claim (the general window), by the
 * calling policies and by dialer.call_timezones().  The call's zone, else its
 * campaign's, else the zones libphonenumber's data gives for the number (several:
 * a window must be open in all of them).  When none of these is known, fallback
 * (dialer.default_timezone for the general window; NULL under a calling policy,
 * which then refuses the call).  source says which: call, campaign, number,
 * default, or unknown (zones NULL).  A set-returning SQL function of one row, so
 * that a statement over many calls inlines it.
 */
CREATE FUNCTION dialer.recipient_zones(call_timezone text, campaign_timezone text, to_number text,
									   fallback text DEFAULT NULL)
RETURNS TABLE (zones text[], source text)
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT CASE WHEN call_timezone IS NOT NULL THEN ARRAY[call_timezone]
				WHEN campaign_timezone IS NOT NULL THEN ARRAY[campaign_timezone]
				WHEN n.zones IS NOT NULL THEN n.zones
				WHEN fallback IS NOT NULL THEN ARRAY[fallback] END,
		   CASE WHEN call_timezone IS NOT NULL THEN 'call'
				WHEN campaign_timezone IS NOT NULL THEN 'campaign'
				WHEN n.zones IS NOT NULL THEN 'number'
				WHEN fallback IS NOT NULL THEN 'default'
				ELSE 'unknown' END
	  FROM (SELECT CASE WHEN call_timezone IS NULL AND campaign_timezone IS NULL
						THEN dialer.number_timezones(to_number) END AS zones) n;
$$;
COMMENT ON FUNCTION dialer.recipient_zones(text, text, text, text) IS
	'Internal: the zones a call''s calling window is read in (the call''s, else the campaign''s, else the number''s from libphonenumber, else fallback) and which of these it was (source: call, campaign, number, default, unknown)';

/*
 * Whether the general window [window_start, window_end) is the whole day, so that no
 * zone needs to be known to read it (dialer.call_window_start = '00:00' with
 * call_window_end = '24:00').
 */
CREATE FUNCTION dialer.window_is_whole_day(window_start time, window_end time)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
	SELECT window_start = '00:00' AND window_end IN ('00:00', '24:00');
$$;
COMMENT ON FUNCTION dialer.window_is_whole_day(time, time) IS
	'Internal: true when the calling window window_start-window_end is open at every time of day';

/*
 * The general window of a number with several zones: NULL when instant at is inside
 * [window_start, window_end) in every zone, else the first instant when it is open in
 * all of them at once (the latest of their openings: always the start of one zone's
 * window, so the starts of the next three local days are tried in order), or
 * 'infinity' when the zones' windows never overlap (the claim then skips the call,
 * saying so).  One zone is dialer.next_window_opening's case.
 */
CREATE FUNCTION dialer.zones_window_opening(at timestamptz, zones text[], window_start time, window_end time)
RETURNS timestamptz
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN NOT EXISTS (SELECT 1 FROM unnest(zones) z
						  WHERE dialer.next_window_opening(at, z, window_start, window_end) IS NOT NULL)
			THEN NULL
		ELSE coalesce(
			(SELECT min(t.t)
			   FROM (SELECT ((at AT TIME ZONE z)::date + d + window_start) AT TIME ZONE z AS t
					   FROM unnest(zones) z, generate_series(0, 2) d) t
			  WHERE t.t > at
				AND NOT EXISTS (SELECT 1 FROM unnest(zones) z
								 WHERE dialer.next_window_opening(t.t, z, window_start, window_end) IS NOT NULL)),
			'infinity')
	END;
$$;
COMMENT ON FUNCTION dialer.zones_window_opening(timestamptz, text[], time, time) IS
	'Internal: NULL when instant at is inside the local window window_start-window_end in every one of zones, else the first instant when it is open in all of them (infinity: never)';

/*
 * The zones a call's calling window is read in, and where they come from, as the
 * dispatcher reads them: the call's zone, else its campaign's, else the number's
 * (libphonenumber), else dialer.default_timezone (source 'default': the number's zone
 * is unknown).  Under a calling policy an unknown zone is not replaced: the call is
 * refused (see dialer.compliance_verdict).  For a person asking "in which time zone
 * is this call's window read?".
 */
CREATE FUNCTION dialer.call_timezones(call_id bigint, OUT timezones text[], OUT source text)
RETURNS record
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT z.zones, z.source
	  FROM dialer.scheduled_calls c
	  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
	 CROSS JOIN LATERAL dialer.recipient_zones(c.timezone, k.timezone, c.to_number,
											   nullif(current_setting('dialer.default_timezone', true), '')) z
	 WHERE c.id = call_timezones.call_id;
$$;
COMMENT ON FUNCTION dialer.call_timezones(bigint) IS
	'The time zones a call''s calling window is read in, and their source: call (its timezone), campaign, number (libphonenumber) or default (dialer.default_timezone, the number''s zone being unknown)';

/*
 * The next instant at which the recipient's clock shows local_time: "tomorrow at
 * 10:00 the recipient's time" is next_local_time(number, '10:00', days => 1).  The
 * zone is timezone when given, else the number's (libphonenumber).  days NULL: the
 * first such instant after now(); days n: on the recipient's local date today + n
 * (which may be in the past for n = 0).  A number with several zones, or none known,
 * needs timezone: the error says which.
 */
CREATE FUNCTION dialer.next_local_time(to_number text, local_time time, days int DEFAULT NULL,
									   timezone text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_zones	text[];
	v_day	date;
	v_t		timestamptz;
BEGIN
	IF to_number IS NULL OR NOT dialer.is_e164(to_number) THEN
		PERFORM dialer.raise_bad_argument('to_number', to_number,
			'A phone number must be in E.164 form: "+" then 8 to 15 digits, the first not 0, with no spaces or punctuation.',
			'Write the number with its country code, e.g. +14155550123.',
			CASE WHEN to_number IS NULL THEN '22004' ELSE '22023' END);
	END IF;
	IF local_time IS NULL THEN
		PERFORM dialer.raise_bad_argument('local_time', NULL, 'local_time is the time of day on the recipient''s clock.',
			'Pass a time, e.g. ''10:00''.', '22004');
	END IF;
	IF days IS NOT NULL AND days NOT BETWEEN 0 AND 3660 THEN
		PERFORM dialer.raise_bad_argument('days', days::text,
			'days is how many of the recipient''s local days after today: 0 to 3660 (NULL: the next time the clock shows local_time).',
			'Pass 1 for tomorrow.');
	END IF;
	IF timezone IS NOT NULL THEN
		IF NOT dialer.is_valid_timezone(timezone) THEN
			PERFORM dialer.raise_bad_argument('timezone', timezone,
				'The time is read in this time zone, and PostgreSQL does not know it.',
				'Use an IANA name such as America/New_York (see pg_timezone_names).');
		END IF;
		v_zones := ARRAY[timezone];
	ELSE
		v_zones := dialer.number_timezones(to_number);
		IF v_zones IS NULL THEN
			PERFORM dialer.raise_bad_argument('timezone', NULL,
				format('The time zone of %s is not known from libphonenumber''s data.', to_number),
				'Pass timezone => the recipient''s IANA time zone.', '22004');
		ELSIF cardinality(v_zones) > 1 THEN
			PERFORM dialer.raise_bad_argument('timezone', NULL,
				format('%s may be in any of %s time zones (%s): its local time is not one time.', to_number,
					   cardinality(v_zones), array_to_string(v_zones[1:5], ', ') ||
					   CASE WHEN cardinality(v_zones) > 5 THEN ', ...' ELSE '' END),
				'Pass timezone => the recipient''s IANA time zone.', '22004');
		END IF;
	END IF;

	v_day := (now() AT TIME ZONE v_zones[1])::date + coalesce(days, 0);
	v_t := (v_day + local_time) AT TIME ZONE v_zones[1];
	IF days IS NULL AND v_t <= now() THEN
		v_t := (v_day + 1 + local_time) AT TIME ZONE v_zones[1];
	END IF;
	RETURN v_t;
END;
$$;
COMMENT ON FUNCTION dialer.next_local_time(text, time, int, text) IS
	'The instant the recipient''s clock shows local_time (zone: timezone, else the number''s): the next one (days NULL), or on the local date today + days; e.g. run_at => dialer.next_local_time(number, ''10:00'', days => 1) for tomorrow at 10:00 their time';

/*
 * Named calling policies.
 */
CREATE TABLE dialer.calling_policies (
	name				text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_:. -]{1,80}$'),
	enabled				boolean NOT NULL DEFAULT true,
	builtin				boolean NOT NULL DEFAULT false,
	description			text,
	legal_source		text,
	country_codes		text[] NOT NULL DEFAULT '{}' CHECK (array_to_string(country_codes, ',') ~ '^([1-9][0-9]{0,2}(,|$))*$'),
	area_codes			text[] NOT NULL DEFAULT '{}',
	campaigns			text[] NOT NULL DEFAULT '{}',
	providers			text[] NOT NULL DEFAULT '{}',
	blackout_calendars	text[] NOT NULL DEFAULT '{}',
	max_calls			int CHECK (max_calls >= 0),
	cap_period			interval CHECK (cap_period > interval '0'),
	refusal_silence		interval CHECK (refusal_silence > interval '0'),
	require_consent		boolean NOT NULL DEFAULT false,
	CONSTRAINT presets_are_templates CHECK (NOT (builtin AND enabled)),
	CONSTRAINT cap_complete CHECK ((max_calls IS NULL) = (cap_period IS NULL)),
	CONSTRAINT area_codes_are_nanp CHECK (cardinality(area_codes) = 0 OR country_codes = '{1}')
);
COMMENT ON TABLE dialer.calling_policies IS
	'Named calling policies: windows (dialer.policy_windows), blackout calendars, a per-recipient cap, a silence after refusal, and a scope. The effective rule of a call is the intersection of every enabled policy that applies to it';
COMMENT ON COLUMN dialer.calling_policies.name IS 'Policy name, named in every decision it makes';
COMMENT ON COLUMN dialer.calling_policies.enabled IS 'Only enabled policies apply (presets are disabled templates: see dialer.use_preset)';
COMMENT ON COLUMN dialer.calling_policies.builtin IS 'A preset shipped with pg_dialer (a template, never enabled itself)';
COMMENT ON COLUMN dialer.calling_policies.description IS 'What the policy is for';
COMMENT ON COLUMN dialer.calling_policies.legal_source IS 'The law or contract the policy implements';
COMMENT ON COLUMN dialer.calling_policies.country_codes IS 'Scope: country calling codes the number must start with (empty: any)';
COMMENT ON COLUMN dialer.calling_policies.area_codes IS 'Scope: NANP area codes (3 digits after +1) the number must have (empty: any); needs country_codes {1}';
COMMENT ON COLUMN dialer.calling_policies.campaigns IS 'Scope: campaigns whose calls it governs (empty: any call, with or without campaign)';
COMMENT ON COLUMN dialer.calling_policies.providers IS 'Scope: providers whose calls it governs (empty: any)';
COMMENT ON COLUMN dialer.calling_policies.blackout_calendars IS 'Calendars of dialer.blackout_dates on whose days (recipient''s local date) no call is made';
COMMENT ON COLUMN dialer.calling_policies.max_calls IS 'At most this many calls that reached a provider per number within cap_period (NULL: no cap)';
COMMENT ON COLUMN dialer.calling_policies.cap_period IS 'Rolling period of the cap';
COMMENT ON COLUMN dialer.calling_policies.refusal_silence IS 'No call to a number for this long after it refused (dialer.refusals)';
COMMENT ON COLUMN dialer.calling_policies.require_consent IS 'Calls need a consent of dialer.consents for their purpose (the call''s payload purpose, else its campaign), given and not revoked at the instant of the call';

/*
 * Weekday windows of the policies: local times of the recipient.
 */
CREATE TABLE dialer.policy_windows (
	policy				text NOT NULL REFERENCES dialer.calling_policies (name) ON UPDATE CASCADE ON DELETE CASCADE,
	weekdays			int[] NOT NULL CHECK (cardinality(weekdays) >= 1 AND weekdays <@ '{1,2,3,4,5,6,7}'),
	starts				time NOT NULL,
	ends				time NOT NULL,
	CONSTRAINT window_order CHECK (starts < ends),
	PRIMARY KEY (policy, weekdays, starts)
);
COMMENT ON TABLE dialer.policy_windows IS
	'When a policy allows calls: windows [starts, ends) of the recipient''s local time on ISO weekdays (1 Monday .. 7 Sunday). A policy without windows restricts no time of day; a weekday without a window is closed';
COMMENT ON COLUMN dialer.policy_windows.policy IS 'The policy';
COMMENT ON COLUMN dialer.policy_windows.weekdays IS 'ISO weekdays the window is open on (1 Monday .. 7 Sunday)';
COMMENT ON COLUMN dialer.policy_windows.starts IS 'Local time calls may start';
COMMENT ON COLUMN dialer.policy_windows.ends IS 'Local time calls must have started by (24:00: end of day)';

/*
 * A policy window is checked when it is written, with the API's error (argument, value,
 * what is accepted, how to fix it) rather than a bare CHECK violation; the table's CHECK
 * constraints stay as the backstop.
 */
CREATE FUNCTION dialer.policy_windows_validate()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NEW.weekdays IS NULL OR cardinality(NEW.weekdays) = 0 OR array_position(NEW.weekdays, NULL) IS NOT NULL
	   OR NOT NEW.weekdays <@ '{1,2,3,4,5,6,7}' THEN
		PERFORM dialer.raise_bad_argument('weekdays', NEW.weekdays::text,
			'weekdays are ISO weekday numbers, 1 (Monday) to 7 (Sunday), at least one.',
			'E.g. ''{1,2,3,4,5}'' for Monday to Friday, ''{6}'' for Saturday, ''{7}'' for Sunday.',
			CASE WHEN NEW.weekdays IS NULL THEN '22004' ELSE '22023' END);
	END IF;
	IF NEW.starts IS NULL OR NEW.ends IS NULL THEN
		PERFORM dialer.raise_bad_argument(CASE WHEN NEW.starts IS NULL THEN 'starts' ELSE 'ends' END, NULL,
			'A window is the local times [starts, ends) of the recipient.', 'Give both, e.g. starts ''08:00'', ends ''21:00''.',
			'22004');
	END IF;
	IF NEW.starts >= NEW.ends THEN
		PERFORM dialer.raise_bad_argument('ends', NEW.ends::text,
			format('A window ends after it starts (starts %s): it is a span of one local day, [starts, ends).', NEW.starts),
			'For calls until midnight write ends ''24:00''; a window past midnight is two windows, one on each day.');
	END IF;
	RETURN NEW;
END;
$$;
COMMENT ON FUNCTION dialer.policy_windows_validate() IS
	'Trigger validating dialer.policy_windows rows (weekdays 1 to 7, starts before ends) with the API''s error messages';

CREATE TRIGGER policy_windows_validate BEFORE INSERT OR UPDATE ON dialer.policy_windows
	FOR EACH ROW EXECUTE FUNCTION dialer.policy_windows_validate();

/*
 * Blackout calendars: public holidays by country, one-off dates.
 */
CREATE TABLE dialer.blackout_dates (
	calendar			text NOT NULL CHECK (calendar ~ '^[A-Za-z0-9_:. -]{1,80}$'),
	day					date NOT NULL,
	name				text NOT NULL,
	builtin				boolean NOT NULL DEFAULT false,
	PRIMARY KEY (calendar, day)
);
COMMENT ON TABLE dialer.blackout_dates IS
	'Days on which no call is made under the policies naming the calendar (the recipient''s local date). Calendar FR: French public holidays (Code du travail L3133-1)';
COMMENT ON COLUMN dialer.blackout_dates.calendar IS 'Calendar name, listed in dialer.calling_policies.blackout_calendars';
COMMENT ON COLUMN dialer.blackout_dates.day IS 'The local date';
COMMENT ON COLUMN dialer.blackout_dates.name IS 'Why (holiday name), named in the decision';
COMMENT ON COLUMN dialer.blackout_dates.builtin IS 'Shipped with pg_dialer (not dumped by pg_dump)';

/*
 * Refusals: the recipient said no (offer declined, opt-out of a purpose).
 */
CREATE TABLE dialer.refusals (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	number				dialer.e164 NOT NULL,
	refused_at			timestamptz NOT NULL DEFAULT now(),
	purpose				text,
	source				text
);
COMMENT ON TABLE dialer.refusals IS 'Refusals by recipients: policies with refusal_silence make no call to the number for that long afterwards';
COMMENT ON COLUMN dialer.refusals.id IS 'Identity';
COMMENT ON COLUMN dialer.refusals.number IS 'The number that refused';
COMMENT ON COLUMN dialer.refusals.refused_at IS 'When';
COMMENT ON COLUMN dialer.refusals.purpose IS 'What was refused (campaign or purpose name; NULL: everything)';
COMMENT ON COLUMN dialer.refusals.source IS 'Where the refusal came from (call outcome, web form, agent ...)';
COMMENT ON SEQUENCE dialer.refusals_id_seq IS 'Identity of dialer.refusals.id';
CREATE INDEX refusals_number_idx ON dialer.refusals (number, refused_at);

/*
 * Consent ledger: who agreed to be called for what, when and how; and when that
 * ended.  Rows are never deleted by pg_dialer: a revocation is a time on the row.
 */
CREATE TABLE dialer.consents (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	number				dialer.e164 NOT NULL,
	purpose				text NOT NULL,
	granted_at			timestamptz NOT NULL DEFAULT now(),
	source				text NOT NULL,
	revoked_at			timestamptz,
	revoked_via			text,
	CONSTRAINT revoked_after_granted CHECK (revoked_at IS NULL OR revoked_at >= granted_at),
	CONSTRAINT revocation_complete CHECK ((revoked_at IS NULL) = (revoked_via IS NULL))
);
COMMENT ON TABLE dialer.consents IS
	'Consent ledger: a number''s consent to calls for a purpose (campaign or purpose name), when and from where it was given, and its revocation (time and channel). Policies with require_consent need one in force';
COMMENT ON COLUMN dialer.consents.id IS 'Identity';
COMMENT ON COLUMN dialer.consents.number IS 'The consenting number';
COMMENT ON COLUMN dialer.consents.purpose IS 'What the consent covers: a campaign or purpose name';
COMMENT ON COLUMN dialer.consents.granted_at IS 'When consent was given';
COMMENT ON COLUMN dialer.consents.source IS 'How and where consent was captured (web form URL, recording, contract ...): pg_dialer cannot check it';
COMMENT ON COLUMN dialer.consents.revoked_at IS 'When consent was revoked (effective at once: calls after it are refused)';
COMMENT ON COLUMN dialer.consents.revoked_via IS 'Channel of the revocation (call, SMS STOP, e-mail, agent ...)';
COMMENT ON SEQUENCE dialer.consents_id_seq IS 'Identity of dialer.consents.id';
CREATE INDEX consents_number_idx ON dialer.consents (number, purpose);

SELECT pg_catalog.pg_extension_config_dump('dialer.consents', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.calling_policies', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('dialer.policy_windows',
	'WHERE policy NOT IN (''preset:US-TCPA'', ''preset:US-FL'', ''preset:FR'')');
SELECT pg_catalog.pg_extension_config_dump('dialer.blackout_dates', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('dialer.refusals', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.refusals_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('dialer.consents_id_seq', '');

/*
 * The enabled policies that apply to a call, by name.  The scope reads only the
 * country code (1 to 3 digits) and the NANP area code: the number's first four
 * digits, so "+1212" gives the same answer as "+12125550100" (dialer.batch_verdicts
 * looks policies up once per such prefix).
 */
CREATE FUNCTION dialer.policies_covering(to_number text, campaign text, provider text)
RETURNS TABLE (names text[])
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT coalesce(array_agg(p.name ORDER BY p.name), '{}')
	  FROM dialer.calling_policies p
	 WHERE p.enabled
	   AND (cardinality(p.country_codes) = 0
			OR EXISTS (SELECT 1 FROM unnest(p.country_codes) cc WHERE starts_with(to_number, '+' || cc)))
	   AND (cardinality(p.area_codes) = 0 OR substr(to_number, 3, 3) = ANY (p.area_codes))
	   AND (cardinality(p.campaigns) = 0 OR campaign = ANY (p.campaigns))
	   AND (cardinality(p.providers) = 0 OR provider = ANY (p.providers));
$$;
COMMENT ON FUNCTION dialer.policies_covering(text, text, text) IS
	'Internal: the one home of the scope rule of calling policies (country, area code, campaign, provider), as a set-returning SQL function that a statement inlines: one row, the enabled policies covering a call';

/*
 * The same, as a function of one call (plpgsql, so that its plan is made once per
 * session; statements over many calls join policies_covering() instead).
 */
CREATE FUNCTION dialer.applicable_policies(to_number text, campaign text, provider text)
RETURNS text[]
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
AS $$
BEGIN
	RETURN (SELECT c.names FROM dialer.policies_covering(applicable_policies.to_number,
									applicable_policies.campaign, applicable_policies.provider) c);
END;
$$;
COMMENT ON FUNCTION dialer.applicable_policies(text, text, text) IS
	'The enabled calling policies whose scope (countries, area codes, campaigns, providers) covers a call';

/*
 * The first time-of-day rule (window or blackout) of the policies, or of the
 * general window [ws, we), that is closed at instant at in one of the zones; no
 * row when every rule is open in every zone.
 */
CREATE FUNCTION dialer.closed_rule(policies text[], zones text[], at timestamptz, ws time, we time)
RETURNS TABLE (policy text, rule text, timezone text, detail text)
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	WITH l AS (
		SELECT z, (at AT TIME ZONE z) AS lt FROM unnest(zones) z
	)
	SELECT r.policy, r.rule, r.timezone, r.detail FROM (
		SELECT 3 AS o, 'dialer.call_window'::text AS policy, 'window'::text AS rule, l.z AS timezone,
			   format('outside %s-%s local time', ws, we) AS detail
		  FROM l
		 WHERE ws IS NOT NULL AND we IS NOT NULL
		   AND NOT (l.lt::time >= ws AND (l.lt::time < we OR we = '00:00' OR we = '24:00'))
		UNION ALL
		SELECT 1, p.name, 'blackout', l.z, format('%s %s (calendar %s)', b.name, b.day, b.calendar)
		  FROM dialer.calling_policies p CROSS JOIN l
		  JOIN dialer.blackout_dates b ON b.calendar = ANY (p.blackout_calendars) AND b.day = l.lt::date
		 WHERE p.name = ANY (policies)
		UNION ALL
		SELECT 2, p.name, 'window', l.z,
			   format('no window of the policy is open on %s %s local time', to_char(l.lt, 'FMDay'), to_char(l.lt, 'HH24:MI'))
		  FROM dialer.calling_policies p CROSS JOIN l
		 WHERE p.name = ANY (policies)
		   AND EXISTS (SELECT 1 FROM dialer.policy_windows w WHERE w.policy = p.name)
		   AND NOT EXISTS (SELECT 1 FROM dialer.policy_windows w
							WHERE w.policy = p.name
							  AND extract(isodow FROM l.lt)::int = ANY (w.weekdays)
							  AND l.lt::time >= w.starts AND l.lt::time < w.ends)
	) r
	ORDER BY r.o, r.policy
	LIMIT 1;
$$;
COMMENT ON FUNCTION dialer.closed_rule(text[], text[], timestamptz, time, time) IS
	'Internal: the first window or blackout rule (of the policies, or the general window ws-we) closed at instant at in one of the zones; no row when all are open';

/*
 * The offset from UTC of zone's clocks at an instant.
 */
CREATE FUNCTION dialer.utc_offset(at timestamptz, zone text)
RETURNS interval
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT (at AT TIME ZONE zone) - (at AT TIME ZONE 'UTC');
$$;
COMMENT ON FUNCTION dialer.utc_offset(timestamptz, text) IS
	'Internal: the offset from UTC of zone''s clocks at instant at (e.g. -05:00 in New York in winter)';

/*
 * The instants at which zone's clocks show local_time: one, except next to a change
 * of the zone's offset from UTC.  When the clocks are put back, a local time of the
 * repeated hour comes twice: both instants.  When they are put forward, a local time
 * they skip never comes: the instant of the change stands for it (the clocks show a
 * later time from then on).  PostgreSQL's own reading, local_time AT TIME ZONE zone,
 * gives only the second instant of a repeated time, and for a skipped one an instant
 * after the change (it reads it with the offset before the change).  The offsets are
 * read a day before and a day after: changes are taken to be more than a day apart,
 * and made on a whole minute.
 */
CREATE FUNCTION dialer.local_instants(local_time timestamp, zone text)
RETURNS timestamptz[]
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	-- local_time read with the zone's offset of a day before, and of a day after, PostgreSQL's
	-- own reading: the instants whose clocks may show it
	v_pg timestamptz := local_time AT TIME ZONE zone;
	v_before timestamptz := (local_time - dialer.utc_offset(v_pg - interval '1 day', zone)) AT TIME ZONE 'UTC';
	v_after timestamptz := (local_time - dialer.utc_offset(v_pg + interval '1 day', zone)) AT TIME ZONE 'UTC';
	v_t timestamptz;
	v_out timestamptz[] := '{}';
BEGIN
	FOREACH v_t IN ARRAY ARRAY[least(v_before, v_after), greatest(v_before, v_after)] LOOP
		IF (v_t AT TIME ZONE zone) = local_time AND NOT v_t = ANY (v_out) THEN
			v_out := v_out || v_t;
		END IF;
	END LOOP;
	IF cardinality(v_out) > 0 THEN
		RETURN v_out;
	END IF;
	-- neither shows it: a time the clocks skipped.  The change is the first whole minute
	-- between the two readings at which they show a later time.
	v_t := date_trunc('minute', least(v_before, v_after));
	WHILE (v_t AT TIME ZONE zone) <= local_time LOOP
		v_t := v_t + interval '1 minute';
	END LOOP;
	RETURN ARRAY[v_t];
END;
$$;
COMMENT ON FUNCTION dialer.local_instants(timestamp, text) IS
	'Internal: the instants at which the clocks of zone show local_time (two for a time repeated when the clocks are put back; for one skipped when they are put forward, the instant of the change)';

/*
 * The first instant at or after at when every time-of-day rule is open in every
 * zone, searched up to 60 days ahead; NULL if none.  An opening of an intersection
 * of windows is always the start of one of them (or a local midnight, the end of
 * a blackout day), so only those instants are tried, in order, stopping at the
 * first open one (usually the first or second).  Near a change of a zone's offset
 * a start may come twice, or be skipped (dialer.local_instants).
 */
CREATE FUNCTION dialer.next_time_opening(policies text[], zones text[], at timestamptz, ws time, we time)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_starts time[];
	v_t timestamptz;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM dialer.closed_rule(policies, zones, at, ws, we)) THEN
		RETURN at;
	END IF;
	v_starts := ARRAY(SELECT w.starts FROM dialer.policy_windows w WHERE w.policy = ANY (policies)
					  UNION SELECT ws WHERE ws IS NOT NULL
					  UNION SELECT time '00:00');
	FOR v_t IN
		SELECT c.t FROM (
			-- each start of each local day, as PostgreSQL reads it
			SELECT ((at AT TIME ZONE z)::date + d + s) AT TIME ZONE z AS t
			  FROM unnest(zones) z, generate_series(0, 61) d, unnest(v_starts) s
			UNION
			-- on a day next to a change of the zone's offset, a start may come twice, or be
			-- skipped: all its instants.  The offset is compared from week to week (changes
			-- are months apart), then in such a week from a day's eve to the next morning.
			SELECT unnest(dialer.local_instants(n.day + s, n.z))
			  FROM (SELECT z, w FROM unnest(zones) z, generate_series(0, 8) w
					 WHERE dialer.utc_offset(at + w * interval '168 hours', z)
						   <> dialer.utc_offset(at + (w + 1) * interval '168 hours', z)
					OFFSET 0) cw,
				   generate_series(-1, 8) e,
				   LATERAL (SELECT cw.z, (at AT TIME ZONE cw.z)::date + 7 * cw.w + e AS day OFFSET 0) n,
				   unnest(v_starts) s
			 WHERE 7 * cw.w + e BETWEEN 0 AND 61
			   AND dialer.utc_offset((n.day::timestamp AT TIME ZONE n.z) - interval '3 hours', n.z)
				   <> dialer.utc_offset(((n.day + 1)::timestamp AT TIME ZONE n.z) + interval '3 hours', n.z)) c
		 WHERE c.t > at
		 ORDER BY 1
	LOOP
		IF NOT EXISTS (SELECT 1 FROM dialer.closed_rule(policies, zones, v_t, ws, we)) THEN
			RETURN v_t;
		END IF;
	END LOOP;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.next_time_opening(text[], text[], timestamptz, time, time) IS
	'Internal: first instant at or after at when every window and blackout rule of the policies (and the general window ws-we) is open in every zone; NULL if none within 60 days';

/*
 * The calls to a number that count toward a per-recipient cap at instant at: every
 * attempt that may have reached the recipient in (at - period, at], across every
 * campaign and one-off call, whatever became of it: claimed and still in flight, lost,
 * accepted (dialing, answered, not answered, busy, failed later).  Only an attempt the
 * provider refused outright (an HTTP answer other than 2xx: no call was placed) does
 * not count.  With with_scheduled (at enqueue), the number's calls still scheduled for
 * that period count too, as if placed: a call is judged after those due before it.
 * Returns their count and the instant the cap of max_calls frees again.
 */
CREATE FUNCTION dialer.contact_count(number text, at timestamptz, period interval, max_calls int,
									 with_scheduled boolean DEFAULT false,
									 OUT calls int, OUT frees_at timestamptz)
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	WITH r AS (
		SELECT a.requested_at AS t
		  FROM dialer.scheduled_calls c
		  JOIN dialer.call_attempts a ON a.call_id = c.id
		 WHERE c.to_number = number
		   AND (a.http_status IS NULL OR a.http_status BETWEEN 200 AND 299)
		   AND a.requested_at > at - period AND a.requested_at <= at
		UNION ALL
		SELECT c.next_attempt_at
		  FROM dialer.scheduled_calls c
		 WHERE with_scheduled AND c.to_number = number AND c.status = 'scheduled'
		   AND c.next_attempt_at > at - period AND c.next_attempt_at <= at
	)
	SELECT (SELECT count(*)::int FROM r),
		   (SELECT r.t + period FROM r ORDER BY r.t DESC
			 OFFSET greatest(max_calls - 1, 0) LIMIT 1);
$$;
COMMENT ON FUNCTION dialer.contact_count(text, timestamptz, interval, int, boolean) IS
	'Internal: the calls to a number that count toward a cap at instant at: attempts in (at - period, at] that may have reached the recipient (all but those the provider answered with a non-2xx status), across campaigns, and with with_scheduled its scheduled calls due in that period; and when a cap of max_calls frees again';

/*
 * The decision for a call to to_number at instant at: 'allow', 'park' (not now:
 * next_opening says when) or 'refuse' (not to be made: cap reached, silence after a
 * refusal, unknown time zone, no opening), with the policy and rule that decided
 * and a sentence saying why.  timezone is the call's explicit zone (else campaign's,
 * else from the number); window_start/_end the general calling window (NULL: the
 * campaign's, else the dialer.call_window_* settings, as the claim reads it for a
 * call of that campaign).  With no policy applying, 'allow' with rule NULL:
 * only the general window applies then, read by dialer.claim_calls in the same zones
 * (dialer.recipient_zones), with dialer.default_timezone for a number whose zone is
 * unknown.
 */
CREATE FUNCTION dialer.compliance_verdict(to_number text, at timestamptz DEFAULT now(), timezone text DEFAULT NULL,
										  campaign text DEFAULT NULL, provider text DEFAULT NULL, purpose text DEFAULT NULL,
										  window_start time DEFAULT NULL, window_end time DEFAULT NULL,
										  count_scheduled boolean DEFAULT false,
										  OUT decision text, OUT policy text, OUT rule text, OUT reason text,
										  OUT next_opening timestamptz, OUT timezones text[], OUT policies text[])
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
-- called from dialer.claim_calls, whose planner settings suit the queue, not these small tables;
-- one plan per statement and session (custom plans re-planned the window rule at every
-- call: most of the verdict's cost)
SET enable_seqscan = on
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	v_ws time;
	v_we time;
	v_k record;
	v_p record;
	v_cnt record;
	v_closed record;
	v_until timestamptz;
BEGIN
	policies := dialer.applicable_policies(to_number, campaign, provider);
	IF cardinality(policies) = 0 THEN
		decision := 'allow';
		reason := 'no calling policy applies';
		RETURN;
	END IF;

	-- the campaign's zone and general window: each bound of the window is the one given, else
	-- the campaign's, else the setting's (as dialer.batch_verdicts reads it for the claim)
	SELECT k.timezone, k.call_window_start, k.call_window_end INTO v_k
	  FROM dialer.campaigns k WHERE k.name = compliance_verdict.campaign;
	v_ws := coalesce(window_start, v_k.call_window_start,
					 nullif(current_setting('dialer.call_window_start', true), '')::time);
	v_we := coalesce(window_end, v_k.call_window_end,
					 nullif(current_setting('dialer.call_window_end', true), '')::time);

	-- no fallback zone under a policy: an unknown zone refuses the call
	SELECT z.zones INTO timezones
	  FROM dialer.recipient_zones(timezone, v_k.timezone, to_number) z;
	IF timezones IS NULL THEN
		decision := 'refuse';
		policy := policies[1];
		rule := 'unknown_timezone';
		reason := format('the recipient''s time zone cannot be known from %s (not in libphonenumber''s data) and neither the call nor its campaign names one: not dialled under policy %s',
						 to_number, policies[1]);
		RETURN;
	END IF;

	-- consent and silence after a refusal (the ledger) of every policy, then the per-recipient
	-- caps: the call is refused.  The ledger first, so that a cap never hides a missing consent
	-- (dialer.enqueue_refusal decides the ledger rules at enqueue from this verdict)
	FOR v_p IN SELECT p.* FROM dialer.calling_policies p
				WHERE p.name = ANY (policies) AND (p.require_consent OR p.refusal_silence IS NOT NULL)
				ORDER BY p.name LOOP
		IF v_p.require_consent AND NOT EXISTS (
				SELECT 1 FROM dialer.consents k
				 WHERE k.number = compliance_verdict.to_number
				   AND k.purpose = coalesce(compliance_verdict.purpose, compliance_verdict.campaign)
				   AND k.granted_at <= at AND (k.revoked_at IS NULL OR k.revoked_at > at)) THEN
			decision := 'refuse';
			policy := v_p.name;
			rule := 'consent';
			reason := format('policy %s requires consent and %s has none in force for purpose %s%s',
							 v_p.name, to_number, coalesce(purpose, campaign, '(none given)'),
							 (SELECT format(' (revoked %s via %s)', k.revoked_at, k.revoked_via)
								FROM dialer.consents k
							   WHERE k.number = compliance_verdict.to_number
								 AND k.purpose = coalesce(compliance_verdict.purpose, compliance_verdict.campaign)
								 AND k.revoked_at <= at
							   ORDER BY k.revoked_at DESC LIMIT 1));
			RETURN;
		END IF;
		IF v_p.refusal_silence IS NOT NULL THEN
			SELECT max(r.refused_at) + v_p.refusal_silence INTO v_until
			  FROM dialer.refusals r
			 WHERE r.number = compliance_verdict.to_number
			   AND r.refused_at <= at AND r.refused_at > at - v_p.refusal_silence
			   AND (r.purpose IS NULL OR compliance_verdict.purpose IS NULL OR r.purpose = compliance_verdict.purpose
					 OR r.purpose = compliance_verdict.campaign);
			IF v_until IS NOT NULL THEN
				decision := 'refuse';
				policy := v_p.name;
				rule := 'refusal_silence';
				next_opening := v_until;
				reason := format('%s refused a call less than %s ago: policy %s keeps silence until %s',
								 to_number, v_p.refusal_silence, v_p.name, v_until);
				RETURN;
			END IF;
		END IF;
	END LOOP;

	FOR v_p IN SELECT p.* FROM dialer.calling_policies p
				WHERE p.name = ANY (policies) AND p.max_calls IS NOT NULL ORDER BY p.name LOOP
		SELECT * INTO v_cnt FROM dialer.contact_count(to_number, at, v_p.cap_period, v_p.max_calls, count_scheduled);
		IF v_cnt.calls >= v_p.max_calls THEN
			decision := 'refuse';
			policy := v_p.name;
			rule := 'cap';
			next_opening := v_cnt.frees_at;
			reason := format('%s already had %s calls within %s (placed or in progress%s): policy %s allows at most %s',
							 to_number, v_cnt.calls, v_p.cap_period,
							 CASE WHEN count_scheduled THEN ', or scheduled before this one' ELSE '' END,
							 v_p.name, v_p.max_calls);
			RETURN;
		END IF;
	END LOOP;

	SELECT * INTO v_closed FROM dialer.closed_rule(policies, timezones, at, v_ws, v_we);
	IF NOT FOUND THEN
		decision := 'allow';
		reason := format('open under %s in %s', array_to_string(policies, ', '), array_to_string(timezones, ', '));
		RETURN;
	END IF;
	policy := v_closed.policy;
	rule := v_closed.rule;
	next_opening := dialer.next_time_opening(policies, timezones, at, v_ws, v_we);
	IF next_opening IS NULL THEN
		decision := 'refuse';
		reason := format('policy %s, rule %s: %s in %s, and no opening within 60 days in all of %s',
						 v_closed.policy, v_closed.rule, v_closed.detail, v_closed.timezone, array_to_string(timezones, ', '));
	ELSE
		decision := 'park';
		reason := format('policy %s, rule %s: %s in %s; next opening %s',
						 v_closed.policy, v_closed.rule, v_closed.detail, v_closed.timezone, next_opening);
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.compliance_verdict(text, timestamptz, text, text, text, text, time, time, boolean) IS
	'Decision for a call to a number at an instant under every applicable calling policy: allow, park (until next_opening) or refuse; names the policy and rule that decided, and why';

/*
 * The verdicts of a batch of scheduled calls at instant at (dialer.claim_calls: one
 * call per claim), set-based for the common case: the calls' applicable policies
 * and zones are looked up per call, then each distinct (policies, zones, window) is
 * judged once: when none of its policies counts calls, keeps a silence or needs a
 * consent, and every window and blackout rule is open in every zone, its calls are
 * allowed without a verdict of their own (exactly what dialer.compliance_verdict
 * would answer).  The other calls get dialer.compliance_verdict.  Calls to which no
 * policy applies get no row.  window_start/_end are the general window when the
 * campaign has none (NULL: the dialer.call_window_* settings, as in the verdict).
 *
 * A per-recipient cap counts the attempts already made, and the calls of one batch make
 * theirs only when the claim commits: so of several calls to one number under a capped
 * policy in the batch, only the first in the claim's order (priority, then due time)
 * gets a verdict; the others are parked for a second, to be judged once it counts
 * (dialer.claim_calls serializes the claims of capped calls, so that two claims never
 * count the same attempts).
 */
CREATE FUNCTION dialer.batch_verdicts(call_ids bigint[], at timestamptz, window_start time, window_end time)
RETURNS TABLE (id bigint, decision text, policy text, rule text, reason text, next_opening timestamptz,
			   timezones text[], policies text[])
LANGUAGE sql
STABLE
-- a plain SQL function with no SET clause, so that dialer.claim_calls's statement inlines it and
-- plans it with the claim, once per session (as a PL/pgSQL function returning a set it was a call,
-- a result set and an executor start of its own at every claim: most of what it cost)
AS $$
	WITH c AS MATERIALIZED (
		SELECT s.id, s.to_number::text AS num, s.timezone AS call_tz, s.campaign AS camp, s.provider AS prov,
			   s.payload->>'purpose' AS purpose, s.priority, s.next_attempt_at,
			   coalesce(k.call_window_start, window_start,
						nullif(current_setting('dialer.call_window_start', true), '')::time) AS ws,
			   coalesce(k.call_window_end, window_end,
						nullif(current_setting('dialer.call_window_end', true), '')::time) AS we,
			   z.zones
		  FROM dialer.scheduled_calls s
		  LEFT JOIN dialer.campaigns k ON k.name = s.campaign
		 CROSS JOIN LATERAL dialer.recipient_zones(s.timezone, k.timezone, s.to_number) z
		 WHERE s.id = ANY (call_ids)
	), scopes AS MATERIALIZED (
		-- a policy's scope reads a number's country code (1 to 3 digits) and, in the NANP, its
		-- area code: its first four digits.  So the policies are looked up once per distinct
		-- (first four digits, campaign, provider) of the batch, not once per call.
		SELECT k.head, k.camp, k.prov, pc.names AS pols,
			   (SELECT p.name FROM dialer.calling_policies p
				 WHERE p.name = ANY (pc.names) AND p.max_calls IS NOT NULL ORDER BY p.name LIMIT 1) AS cap_policy
		  FROM (SELECT DISTINCT left(c.num, 5) AS head, c.camp, c.prov FROM c) k
		 CROSS JOIN LATERAL dialer.policies_covering(k.head, k.camp, k.prov) pc
	), cs AS MATERIALIZED (
		-- peer: the call's place among the batch's calls to its number under a cap
		SELECT c.*, sc.pols, sc.cap_policy,
			   CASE WHEN sc.cap_policy IS NOT NULL
					THEN row_number() OVER (PARTITION BY c.num, sc.cap_policy IS NOT NULL
											ORDER BY c.priority DESC, c.next_attempt_at, c.id) END AS peer
		  FROM c JOIN scopes sc ON sc.head = left(c.num, 5) AND sc.prov = c.prov AND sc.camp IS NOT DISTINCT FROM c.camp
	), open_groups AS MATERIALIZED (
		-- each distinct rule set judged once: open now, with nothing to count or look up
		SELECT g.pols, g.zones, g.ws, g.we,
			   format('open under %s in %s', array_to_string(g.pols, ', '), array_to_string(g.zones, ', ')) AS reason
		  FROM (SELECT DISTINCT cs.pols, cs.zones, cs.ws, cs.we FROM cs
				 WHERE cardinality(cs.pols) > 0 AND cs.zones IS NOT NULL) g
		 WHERE NOT EXISTS (SELECT 1 FROM dialer.calling_policies p
							WHERE p.name = ANY (g.pols)
							  AND (p.require_consent OR p.refusal_silence IS NOT NULL OR p.max_calls IS NOT NULL))
		   AND NOT EXISTS (SELECT 1 FROM dialer.closed_rule(g.pols, g.zones, at, g.ws, g.we))
	), judged AS MATERIALIZED (
		-- each call under policies with its open group, if any
		SELECT cs.*, o.reason AS open_reason
		  FROM cs
		  LEFT JOIN open_groups o
				 ON o.pols = cs.pols AND o.zones = cs.zones
				AND o.ws IS NOT DISTINCT FROM cs.ws AND o.we IS NOT DISTINCT FROM cs.we
		 WHERE cardinality(cs.pols) > 0
	)
	SELECT j.id, 'allow'::text, NULL::text, NULL::text, j.open_reason, NULL::timestamptz, j.zones, j.pols
	  FROM judged j
	 WHERE j.open_reason IS NOT NULL
	UNION ALL
	-- a second call to a capped number in this batch: judged again once the first counts
	SELECT j.id, 'park'::text, j.cap_policy, 'cap'::text,
		   format('another call to %s goes in this claim: policy %s caps the calls to a number, so this one is judged once that one counts',
				  j.num, j.cap_policy),
		   at + interval '1 second', j.zones, j.pols
	  FROM judged j
	 WHERE j.peer > 1
	UNION ALL
	-- the others, each with a verdict of its own (materialized above, so that only they get one)
	SELECT j.id, f.decision, f.policy, f.rule, f.reason, f.next_opening, f.timezones, f.policies
	  FROM (SELECT * FROM judged WHERE judged.open_reason IS NULL AND coalesce(judged.peer, 1) = 1) j
	 CROSS JOIN LATERAL dialer.compliance_verdict(j.num, at, j.call_tz, j.camp, j.prov, j.purpose, j.ws, j.we) f;
$$;
COMMENT ON FUNCTION dialer.batch_verdicts(bigint[], timestamptz, time, time) IS
	'Internal: the calling-policy verdicts of a batch of scheduled calls (dialer.claim_calls), each distinct rule set judged once when it needs no per-number look-up; no row for calls no policy applies to';

/*
 * The next instant at or after at when a call may be made under every policy
 * that applies (NULL: refused, or no opening within 60 days).
 */
CREATE FUNCTION dialer.next_opening(to_number text, at timestamptz DEFAULT now(), timezone text DEFAULT NULL,
									campaign text DEFAULT NULL, provider text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE sql
STABLE
AS $$
	SELECT CASE v.decision WHEN 'allow' THEN at WHEN 'park' THEN v.next_opening END
	  FROM dialer.compliance_verdict(to_number, at, timezone, campaign, provider) v;
$$;
COMMENT ON FUNCTION dialer.next_opening(text, timestamptz, text, text, text) IS
	'Next instant at or after at when a call to the number may be made under its calling policies (at itself when open now; NULL when refused)';

/*
 * The same for a scheduled call (its zone, campaign and provider).
 */
CREATE FUNCTION dialer.next_opening(call_id bigint, at timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE sql
STABLE
AS $$
	SELECT dialer.next_opening(c.to_number, at, c.timezone, c.campaign, c.provider)
	  FROM dialer.scheduled_calls c WHERE c.id = call_id;
$$;
COMMENT ON FUNCTION dialer.next_opening(bigint, timestamptz) IS
	'Next instant at or after at when a scheduled call may be made under its calling policies (NULL when refused)';

/*
 * Makes an enabled policy of a preset: a copy (scope, windows, calendars, cap,
 * silence) under the given name, which may then be changed freely.
 */
CREATE FUNCTION dialer.use_preset(preset text, name text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_name text := coalesce(name, preset);
BEGIN
	IF NOT EXISTS (SELECT 1 FROM dialer.calling_policies p WHERE p.name = 'preset:' || preset AND p.builtin) THEN
		PERFORM dialer.raise_bad_argument('preset', preset, 'pg_dialer has no such calling policy preset.',
			'The presets: ' || (SELECT string_agg(substr(p.name, 8), ', ' ORDER BY p.name)
								  FROM dialer.calling_policies p WHERE p.builtin) || '.');
	END IF;
	INSERT INTO dialer.calling_policies (name, enabled, builtin, description, legal_source, country_codes,
										 area_codes, campaigns, providers, blackout_calendars, max_calls,
										 cap_period, refusal_silence, require_consent)
	SELECT v_name, true, false, p.description, p.legal_source, p.country_codes, p.area_codes, p.campaigns,
		   p.providers, p.blackout_calendars, p.max_calls, p.cap_period, p.refusal_silence, p.require_consent
	  FROM dialer.calling_policies p WHERE p.name = 'preset:' || preset;
	INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
	SELECT v_name, w.weekdays, w.starts, w.ends FROM dialer.policy_windows w WHERE w.policy = 'preset:' || preset;
	RETURN v_name;
END;
$$;
COMMENT ON FUNCTION dialer.use_preset(text, text) IS
	'Creates an enabled calling policy (named name, default the preset''s) as a copy of a preset: US-TCPA, US-FL, FR';

/*
 * The sentence that explains a do-not-call entry: since when it is in effect, when
 * and through which channel it was requested, and why.  One home for it: the
 * campaigns' do_not_call detail, contact_history and the audit export use it.
 */
CREATE FUNCTION dialer.do_not_call_detail(entry dialer.do_not_call)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT format('%s is on the do-not-call list since %s (requested %s%s)%s',
				  entry.number, entry.effective_at, entry.requested_at,
				  coalesce(' via ' || entry.source, ''), coalesce(': ' || entry.reason, ''))
	 WHERE entry.number IS NOT NULL;
$$;
COMMENT ON FUNCTION dialer.do_not_call_detail(dialer.do_not_call) IS
	'The sentence explaining a do-not-call entry: in effect since effective_at, requested at requested_at via source, and its reason (NULL for no entry)';

/*
 * The policy, rule and sentence behind a decision event of a call (its detail as
 * written by enqueue, claim or the do-not-call trigger): policy decisions name
 * their policy and rule; the general window, the do-not-call ledger, the allow-list
 * and deadlines are named as pseudo-policies so that every decision has both.
 * dnc is the number's do-not-call entry (NULL row when none, e.g. removed since).
 */
CREATE FUNCTION dialer.decision_rule(event text, detail jsonb, dnc dialer.do_not_call,
									 OUT policy text, OUT rule text, OUT reason text)
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT CASE WHEN detail ? 'policy' THEN detail->>'policy'
				WHEN event = 'window_wait' OR detail->>'reason' = 'no_window' THEN 'dialer.call_window'
				WHEN detail->>'reason' = 'do_not_call' THEN 'dialer.do_not_call'
				WHEN detail->>'reason' = 'not_allowed' THEN 'dialer.allowed_numbers'
				WHEN event = 'expired' THEN 'deadline' END,
		   CASE WHEN detail ? 'rule' THEN detail->>'rule'
				WHEN event = 'window_wait' THEN 'window'
				WHEN detail->>'reason' IN ('do_not_call', 'not_allowed', 'no_window') THEN detail->>'reason'
				WHEN event = 'expired' THEN 'deadline'
				WHEN event = 'claimed' AND detail ? 'policies' THEN 'allowed'
				WHEN event = 'claimed' THEN 'no_policy' END,
		   CASE WHEN detail->>'reason' = 'do_not_call'
				THEN coalesce(dialer.do_not_call_detail(dnc),
							  'the number was on the do-not-call list' || coalesce(' (' || (detail->>'do_not_call_reason') || ')', ''))
				WHEN event = 'window_wait' AND NOT detail ? 'message'
				THEN format('outside the calling window in %s; opens %s',
							coalesce(detail->>'timezone',
									 (SELECT string_agg(z, ', ') FROM jsonb_array_elements_text(detail->'timezones') z)),
							detail->>'opens_at')
				WHEN event = 'expired' THEN format('deadline %s passed before the call could start', detail->>'deadline')
				ELSE coalesce(detail->>'message', detail->>'reason') END;
$$;
COMMENT ON FUNCTION dialer.decision_rule(text, jsonb, dialer.do_not_call) IS
	'Internal: the policy, rule and sentence behind a decision event (claimed, window_wait, skipped, expired) of a call; the general window, the do-not-call ledger, the allow-list and deadlines appear as dialer.call_window, dialer.do_not_call, dialer.allowed_numbers and deadline';

/*
 * Every call made, parked, skipped or expired to a number, with each decision in
 * the recipient's local time.
 */
CREATE FUNCTION dialer.contact_history(number text)
RETURNS TABLE (call_id bigint, campaign text, status text, event text, at timestamptz, local_time timestamp,
			   timezone text, policy text, rule text, reason text)
LANGUAGE sql
STABLE
AS $$
	SELECT c.id, c.campaign, c.status, e.event, e.at,
		   e.at AT TIME ZONE coalesce(z.zones[1], 'UTC'),
		   z.zones[1],
		   coalesce(r.policy, e.detail->>'policy'), coalesce(r.rule, e.detail->>'rule'),
		   coalesce(r.reason, e.detail->>'message', e.detail->>'reason')
	  FROM dialer.scheduled_calls c
	  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
	 CROSS JOIN LATERAL dialer.recipient_zones(c.timezone, k.timezone, c.to_number,
											   nullif(current_setting('dialer.default_timezone', true), '')) z
	  JOIN dialer.call_events e ON e.call_id = c.id
	  LEFT JOIN dialer.do_not_call d ON d.number = c.to_number
	  LEFT JOIN LATERAL dialer.decision_rule(e.event, e.detail, d) r
			 ON e.event IN ('claimed', 'window_wait', 'skipped', 'expired')
	 WHERE c.to_number = contact_history.number
	 ORDER BY e.at, e.id;
$$;
COMMENT ON FUNCTION dialer.contact_history(text) IS
	'Every event of every call to a number (made, parked, skipped, expired), in the recipient''s local time, with the policy and rule that decided (a do-not-call skip: the ledger entry, when requested, via what, in effect since when)';

/*
 * The audit export of a period [period_start, period_end): one row per decision
 * taken on a call in it (made: claimed for dispatch; parked: held for a window or
 * a blackout day; skipped; expired), with the number, the instant in UTC and in
 * the recipient's local time with the zone(s) used, the call's status and the
 * provider's outcome of the attempt, the policy and rule that decided, the
 * policies that applied, and for calls made the consent in force for the call's
 * purpose at that instant (purpose, when given, source).  One statement over the
 * period's events (call_events has no index on time: it reads them all once).
 */
CREATE FUNCTION dialer.compliance_audit(period_start timestamptz, period_end timestamptz)
RETURNS TABLE (call_id bigint, to_number text, campaign text, provider text, decision text,
			   at timestamptz, local_time timestamp, timezone text, timezones text[],
			   status text, outcome text, policy text, rule text, policies text[], reason text,
			   consent_id bigint, consent_purpose text, consent_granted_at timestamptz, consent_source text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF period_start IS NULL OR period_end IS NULL OR NOT isfinite(period_start) OR NOT isfinite(period_end)
	   OR period_end <= period_start THEN
		PERFORM dialer.raise_bad_argument('period', format('[%s, %s)', period_start, period_end),
			'The audit covers [period_start, period_end): two finite instants, the end after the start.',
			'E.g. dialer.compliance_audit(''2026-03-01 00:00Z'', ''2026-04-01 00:00Z'').');
	END IF;
	RETURN QUERY
	WITH ev AS (
		SELECT e.call_id, e.at, e.event, e.detail
		  FROM dialer.call_events e
		 WHERE e.at >= period_start AND e.at < period_end
		   AND e.event IN ('claimed', 'window_wait', 'skipped', 'expired')
	), dec AS (
		SELECT ev.*, c.to_number::text AS num, c.campaign AS camp, c.provider AS prov, c.status AS st,
			   coalesce(c.payload->>'purpose', c.campaign) AS purpose,
			   coalesce(CASE WHEN ev.detail ? 'timezones'
							 THEN ARRAY(SELECT jsonb_array_elements_text(ev.detail->'timezones')) END,
						CASE WHEN ev.detail ? 'timezone' THEN ARRAY[ev.detail->>'timezone'] END,
						CASE WHEN c.timezone IS NOT NULL THEN ARRAY[c.timezone] END,
						CASE WHEN k.timezone IS NOT NULL THEN ARRAY[k.timezone] END,
						dialer.number_timezones(c.to_number)) AS zones,
			   CASE WHEN ev.detail ? 'policies'
					THEN ARRAY(SELECT jsonb_array_elements_text(ev.detail->'policies')) END AS applied,
			   r.policy AS pol, r.rule AS rul, r.reason AS why,
			   a.provider_status, a.http_status, a.error_code
		  FROM ev
		  JOIN dialer.scheduled_calls c ON c.id = ev.call_id
		  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
		  LEFT JOIN dialer.do_not_call d ON d.number = c.to_number
		  LEFT JOIN LATERAL dialer.decision_rule(ev.event, ev.detail, d) r ON true
		  LEFT JOIN dialer.call_attempts a
				 ON ev.event = 'claimed' AND a.call_id = ev.call_id AND a.attempt = (ev.detail->>'attempt')::int
	)
	SELECT dec.call_id, dec.num, dec.camp, dec.prov,
		   CASE dec.event WHEN 'claimed' THEN 'made' WHEN 'window_wait' THEN 'parked' ELSE dec.event END,
		   dec.at,
		   CASE WHEN dec.zones IS NOT NULL THEN dec.at AT TIME ZONE dec.zones[1] END,
		   dec.zones[1], dec.zones, dec.st,
		   CASE WHEN dec.event = 'claimed'
				THEN coalesce(dec.provider_status, 'HTTP ' || dec.http_status, dec.error_code, 'no answer from the provider recorded') END,
		   dec.pol, dec.rul, dec.applied, dec.why,
		   ks.id, ks.purpose, ks.granted_at, ks.source
	  FROM dec
	  LEFT JOIN LATERAL (
			SELECT k.id, k.purpose, k.granted_at, k.source
			  FROM dialer.consents k
			 WHERE dec.event = 'claimed' AND k.number = dec.num AND k.purpose = dec.purpose
			   AND k.granted_at <= dec.at AND (k.revoked_at IS NULL OR k.revoked_at > dec.at)
			 ORDER BY k.granted_at DESC
			 LIMIT 1) ks ON true
	 ORDER BY dec.at, dec.call_id;
END;
$$;
COMMENT ON FUNCTION dialer.compliance_audit(timestamptz, timestamptz) IS
	'Audit export of [period_start, period_end): every call made, parked, skipped or expired in it, with the number, the instant in UTC and in the recipient''s local time (zone used), status and provider outcome, the policy and rule that decided, the policies applied, and the consent in force for the call''s purpose (id, purpose, when, source)';

/*
 * When a policy, window, blackout day, refusal or consent changes, the calls parked
 * by a policy (scheduled, not yet due, their last event a window_wait naming a
 * policy) are due again at once: the claim re-evaluates them under the new rules,
 * parks them at their new opening or skips them.  Calls waiting for a retry are
 * not touched.  Scans the calls not yet due: policy changes are rare.
 */
CREATE FUNCTION dialer.policies_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_n int;
BEGIN
	UPDATE dialer.scheduled_calls c
	   SET next_attempt_at = greatest(c.run_at, now()), updated_at = now()
	 WHERE c.status = 'scheduled' AND c.next_attempt_at > now()
	   AND (SELECT e.detail ? 'policy' AND e.event = 'window_wait'
			  FROM dialer.call_events e WHERE e.call_id = c.id ORDER BY e.id DESC LIMIT 1);
	GET DIAGNOSTICS v_n = ROW_COUNT;
	IF v_n > 0 THEN
		PERFORM dialer.wake_worker();
	END IF;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.policies_changed() IS
	'Trigger: after a change of calling policies, windows, blackout days, refusals or consents, the calls a policy parked are due again at once, to be re-evaluated by the claim';

CREATE TRIGGER calling_policies_changed AFTER INSERT OR UPDATE OR DELETE ON dialer.calling_policies
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.policies_changed();
CREATE TRIGGER policy_windows_changed AFTER INSERT OR UPDATE OR DELETE ON dialer.policy_windows
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.policies_changed();
CREATE TRIGGER blackout_dates_changed AFTER INSERT OR UPDATE OR DELETE ON dialer.blackout_dates
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.policies_changed();
CREATE TRIGGER refusals_changed AFTER INSERT OR UPDATE OR DELETE ON dialer.refusals
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.policies_changed();
CREATE TRIGGER consents_changed AFTER INSERT OR UPDATE OR DELETE ON dialer.consents
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.policies_changed();

-- Presets (templates; dialer.use_preset('FR') makes an enabled policy of one) --------------

-- US TCPA, 47 CFR 64.1200(c)(1): no telephone solicitation before 8 a.m. or after 9 p.m.
-- local time at the called party's location.  Scoped to country code 1 (all of the NANP:
-- stricter than needed for Canada and the Caribbean).
INSERT INTO dialer.calling_policies (name, enabled, builtin, description, legal_source, country_codes)
VALUES ('preset:US-TCPA', false, true, 'US TCPA calling hours: 08:00-21:00 at the called party''s location',
		'47 CFR 64.1200(c)(1) (Telephone Consumer Protection Act)', '{1}');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
VALUES ('preset:US-TCPA', '{1,2,3,4,5,6,7}', '08:00', '21:00');

-- Florida Telephone Solicitation Act, Fla. Stat. 501.059(8): 8 a.m.-8 p.m. local time, at
-- most 3 commercial solicitation calls per 24 hours (the Act counts per subject matter;
-- pg_dialer counts every call that reached the provider: stricter).  Florida area codes.
INSERT INTO dialer.calling_policies (name, enabled, builtin, description, legal_source, country_codes,
									 area_codes, max_calls, cap_period)
VALUES ('preset:US-FL', false, true, 'Florida FTSA: 08:00-20:00 local time, at most 3 calls per 24 hours',
		'Florida Statutes 501.059(8)(a) and (b) (Florida Telephone Solicitation Act)', '{1}',
		'{239,305,321,324,352,386,407,448,561,645,656,727,728,754,772,786,813,850,863,904,941,954}',
		3, interval '24 hours');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
VALUES ('preset:US-FL', '{1,2,3,4,5,6,7}', '08:00', '20:00');

-- France, Décret n° 2022-1313 du 13 octobre 2022 (Code de la consommation, art. D. 223-8 and
-- D. 223-9): Monday-Friday 10:00-13:00 and 14:00-20:00, never on Saturdays, Sundays or public
-- holidays, at most 4 calls per 30 days, 60 days of silence after a refusal.
INSERT INTO dialer.calling_policies (name, enabled, builtin, description, legal_source, country_codes,
									 blackout_calendars, max_calls, cap_period, refusal_silence)
VALUES ('preset:FR', false, true,
		'France: Mon-Fri 10:00-13:00 and 14:00-20:00, no public holidays, at most 4 calls per 30 days, 60 days of silence after a refusal',
		'Décret n° 2022-1313 du 13 octobre 2022 (Code de la consommation, art. D. 223-8, D. 223-9); holidays: Code du travail, art. L3133-1',
		'{33}', '{FR}', 4, interval '30 days', interval '60 days');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends)
VALUES ('preset:FR', '{1,2,3,4,5}', '10:00', '13:00'),
	   ('preset:FR', '{1,2,3,4,5}', '14:00', '20:00');

-- French public holidays 2026-2028, Code du travail article L3133-1 (jours fériés légaux):
-- 1 January, Easter Monday, 1 May, 8 May, Ascension, Whit Monday, 14 July, 15 August,
-- 1 November, 11 November, 25 December.  Easter: 2026-04-05, 2027-03-28, 2028-04-16.
-- Alsace-Moselle's extra days (Good Friday, 26 December; Code du travail L3134-13) are not
-- included: add them to a calendar of your own.
INSERT INTO dialer.blackout_dates (calendar, day, name, builtin)
SELECT 'FR', d::date, n, true
  FROM (VALUES
	('2026-01-01', 'Jour de l''an'), ('2026-04-06', 'Lundi de Pâques'), ('2026-05-01', 'Fête du Travail'),
	('2026-05-08', 'Victoire 1945'), ('2026-05-14', 'Ascension'), ('2026-05-25', 'Lundi de Pentecôte'),
	('2026-07-14', 'Fête nationale'), ('2026-08-15', 'Assomption'), ('2026-11-01', 'Toussaint'),
	('2026-11-11', 'Armistice 1918'), ('2026-12-25', 'Noël'),
	('2027-01-01', 'Jour de l''an'), ('2027-03-29', 'Lundi de Pâques'), ('2027-05-01', 'Fête du Travail'),
	('2027-05-06', 'Ascension'), ('2027-05-08', 'Victoire 1945'), ('2027-05-17', 'Lundi de Pentecôte'),
	('2027-07-14', 'Fête nationale'), ('2027-08-15', 'Assomption'), ('2027-11-01', 'Toussaint'),
	('2027-11-11', 'Armistice 1918'), ('2027-12-25', 'Noël'),
	('2028-01-01', 'Jour de l''an'), ('2028-04-17', 'Lundi de Pâques'), ('2028-05-01', 'Fête du Travail'),
	('2028-05-08', 'Victoire 1945'), ('2028-05-25', 'Ascension'), ('2028-06-05', 'Lundi de Pentecôte'),
	('2028-07-14', 'Fête nationale'), ('2028-08-15', 'Assomption'), ('2028-11-01', 'Toussaint'),
	('2028-11-11', 'Armistice 1918'), ('2028-12-25', 'Noël')) h(d, n);
/*
 * pg_dialer: monitoring.  Views a DBA reads and a scraper (prometheus-postgres-exporter
 * with deploy/prometheus/pg_dialer_queries.yaml) polls: calls by status, provider and
 * campaign; each provider's health; the dispatcher's state and lag.  The launcher and
 * dispatchers also write LOG/WARNING lines to the server log (README, "Monitoring").
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/* C functions (src/shmem.c, src/launcher.c) */

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

/*
 * Warns when no dispatcher serves the current database: calls enqueued here would
 * wait for ever.  Meant to be called by whatever accepts calls (once per statement).
 */
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

-- Finished attempts of the last hour, per provider, without a scan of the whole log.
CREATE INDEX call_attempts_requested_at_brin ON dialer.call_attempts USING brin (requested_at);

/* Views */

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

/*
 * Grants a role (for example the one prometheus-postgres-exporter connects as) what
 * the monitoring views need, and nothing that shows a secret or a phone number.
 */
CREATE FUNCTION dialer.grant_monitoring(role_name name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.grant_to(role_name,		/* in 90_privileges.sql */
		'SELECT ON dialer.call_counts, dialer.provider_health, dialer.worker_health',
		'EXECUTE ON FUNCTION dialer.worker_status(), dialer.provider_status(), dialer.is_served(), dialer.dispatchers()');
END;
$$;
COMMENT ON FUNCTION dialer.grant_monitoring(name) IS
	'Grants a role read access to the monitoring views (dialer.call_counts, provider_health, worker_health) and dialer.dispatchers(); no table, secret or phone number';

/*
 * Nothing here is for PUBLIC (90_privileges.sql revokes it too; repeated so that this part
 * is complete by itself, e.g. as part of an update script).
 */
REVOKE ALL ON dialer.call_counts, dialer.provider_health, dialer.worker_health FROM PUBLIC;
REVOKE ALL ON FUNCTION dialer.provider_status(), dialer.dispatchers(), dialer.is_served(),
	dialer.check_served(), dialer.grant_monitoring(name) FROM PUBLIC;
/*
 * pg_dialer: the calling policies at enqueue.
 *
 * dialer.compliance_verdict() (50_compliance.sql) decides every call again when it is
 * claimed; this part lets enqueue_call and enqueue_calls apply, already when a call is
 * written, the refusals of the policies that hold a ledger or count calls: consent
 * missing or revoked, a silence after a refusal that still runs at run_at, a
 * per-recipient cap already reached at run_at by the calls placed or in progress and
 * those scheduled before it.  Such a call is stored as skipped, with the policy, rule and
 * reason in its event and last_error.  Windows, blackouts and unknown zones are left to
 * the claim (an unknown zone found here, while such a policy is consulted, is reported as
 * well): they depend on when the call is really made, and deciding them per call at
 * enqueue would cost every call of a campaign under a mere calling-hours policy (US-TCPA)
 * a verdict.  The claim decides a cap again, and is what guarantees it: calls enqueued
 * in one statement, or by sessions racing, cannot see each other here.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * The refusal a call meets at enqueue, if any: NULL fields when none.  The verdict is
 * computed (at run_at, the instant the call is for, counting the number's scheduled calls
 * due before it toward a cap) only when a policy covering the number requires consent,
 * keeps a silence after refusals or caps calls.
 */
CREATE FUNCTION dialer.enqueue_refusal(to_number text, run_at timestamptz, timezone text, campaign text,
									   provider text, purpose text,
									   OUT policy text, OUT rule text, OUT reason text, OUT timezones text[])
LANGUAGE sql
STABLE
AS $$
	SELECT v.policy, v.rule, v.reason, v.timezones
	  FROM dialer.policies_covering(to_number, campaign, provider) a
	 CROSS JOIN LATERAL dialer.compliance_verdict(to_number, run_at, timezone, campaign, provider, purpose,
												  NULL, NULL, true) v
	 WHERE EXISTS (SELECT 1 FROM dialer.calling_policies p
				   WHERE p.name = ANY (a.names)
					 AND (p.require_consent OR p.refusal_silence IS NOT NULL OR p.max_calls IS NOT NULL))
	   AND v.decision = 'refuse' AND v.rule IN ('consent', 'refusal_silence', 'cap', 'unknown_timezone');
$$;
COMMENT ON FUNCTION dialer.enqueue_refusal(text, timestamptz, text, text, text, text) IS
	'Internal: the calling-policy refusal a call meets at enqueue when a policy requiring consent, keeping a silence after refusals or capping calls covers it (consent, refusal_silence, cap counting the scheduled calls due before it, or unknown_timezone found on the way, at its run_at), as policy, rule, reason and zones; NULL fields when none';

/*
 * The detail of the event of a call a calling policy skips, at enqueue or at
 * dispatch (checked): the policy and rule that decided, the recipient's zones and
 * the reason in words.
 */
CREATE FUNCTION dialer.policy_skip_detail(checked text, policy text, rule text, timezones text[], message text)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
AS $$
	SELECT jsonb_build_object('reason', 'policy', 'checked', checked, 'policy', policy, 'rule', rule,
							  'timezones', timezones, 'message', message);
$$;
COMMENT ON FUNCTION dialer.policy_skip_detail(text, text, text, text[], text) IS
	'Internal: the event detail of a call skipped by a calling policy (checked: enqueue, dispatch, consent_changed or refusal_recorded; policy, rule, zones, message)';

/*
 * True when an enabled calling policy holds a ledger (requires consent, or keeps a
 * silence after refusals) or caps calls per recipient: only then do enqueue_call and
 * enqueue_calls look for a refusal at enqueue.  Read once per statement.
 */
CREATE FUNCTION dialer.ledger_policies_enabled()
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
	SELECT EXISTS (SELECT 1 FROM dialer.calling_policies p
					WHERE p.enabled AND (p.require_consent OR p.refusal_silence IS NOT NULL OR p.max_calls IS NOT NULL));
$$;
COMMENT ON FUNCTION dialer.ledger_policies_enabled() IS
	'Internal: true when an enabled calling policy requires consent, keeps a silence after refusals or caps calls (the policies enqueue consults)';

/*
 * A consent revoked (or changed, or removed) or a refusal recorded takes effect at
 * once: the scheduled calls to those numbers that the ledger now refuses at the
 * instant they are due (dialer.enqueue_refusal: consent, silence after a refusal)
 * are skipped with the policy, rule and reason, as enqueue would have stored them
 * (dialer.skip_scheduled_calls).
 * The claim checks them again anyway; this is so that a revocation does not leave
 * calls that will never be made looking scheduled.  A call the worker holds is
 * waited for, and left alone once it is no longer scheduled.  One trigger per
 * event, as transition tables require, all with the changed rows as "changed".
 */
CREATE FUNCTION dialer.ledger_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.skip_scheduled_calls(
				array_agg(c.id), array_agg(r.reason),
				array_agg(dialer.policy_skip_detail(CASE TG_TABLE_NAME WHEN 'consents' THEN 'consent_changed'
																ELSE 'refusal_recorded' END,
													r.policy, r.rule, r.timezones, r.reason)))
	   FROM dialer.scheduled_calls c
	  CROSS JOIN LATERAL dialer.enqueue_refusal(c.to_number, greatest(c.next_attempt_at, now()), c.timezone,
												c.campaign, c.provider, c.payload->>'purpose') r
	  WHERE c.to_number IN (SELECT ch.number FROM changed ch)
		AND c.status = 'scheduled'
		AND r.rule IN ('consent', 'refusal_silence')
	 HAVING count(*) > 0;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.ledger_changed() IS
	'Trigger: after a consent is revoked, changed or removed, or a refusal recorded, skips the scheduled calls to those numbers that the ledger now refuses (checked: consent_changed or refusal_recorded)';
REVOKE ALL ON FUNCTION dialer.ledger_changed() FROM PUBLIC;

CREATE TRIGGER consents_revoked AFTER UPDATE ON dialer.consents
	REFERENCING NEW TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.ledger_changed();
CREATE TRIGGER consents_removed AFTER DELETE ON dialer.consents
	REFERENCING OLD TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.ledger_changed();
CREATE TRIGGER refusals_recorded AFTER INSERT ON dialer.refusals
	REFERENCING NEW TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.ledger_changed();
/*
 * pg_dialer: libphonenumber's prefix -> time-zone data (dialer.number_timezones).
 * Generated by sql/install/data/refresh-number-timezones.sh; do not edit.
 *
 * Copyright (c) 2026, pg_dialer developers (the data: see its own notice below)
 */
-- BEGIN number_timezones data (generated by sql/install/data/refresh-number-timezones.sh: do not edit)
-- libphonenumber's prefix -> time-zone map, Debian libphonenumber8-java 8.12.57+ds-3.
-- Copyright (C) 2012 The Libphonenumber Authors; Apache License 2.0, see sql/install/data/LICENSE.libphonenumber.
TRUNCATE dialer.number_timezones;
INSERT INTO dialer.number_timezones (prefix, zones)
SELECT split_part(l, '|', 1), string_to_array(split_part(l, '|', 2), '&')
  FROM regexp_split_to_table($map$
1|America/Adak&America/Anchorage&America/Anguilla&America/Antigua&America/Barbados&America/Boise&America/Cayman&America/Chicago&America/Denver&America/Dominica&America/Edmonton&America/Fort_Nelson&America/Grand_Turk&America/Grenada&America/Halifax&America/Jamaica&America/Juneau&America/Los_Angeles&America/Lower_Princes&America/Montserrat&America/Nassau&America/New_York&America/North_Dakota/Center&America/Phoenix&America/Port_of_Spain&America/Puerto_Rico&America/Regina&America/Santo_Domingo&America/St_Johns&America/St_Kitts&America/St_Lucia&America/St_Thomas&America/St_Vincent&America/Toronto&America/Tortola&America/Vancouver&America/Winnipeg&Atlantic/Bermuda&Pacific/Guam&Pacific/Honolulu&Pacific/Pago_Pago&Pacific/Saipan
7|Asia/Almaty&Asia/Anadyr&Asia/Aqtobe&Asia/Irkutsk&Asia/Kamchatka&Asia/Krasnoyarsk&Asia/Magadan&Asia/Novosibirsk&Asia/Omsk&Asia/Sakhalin&Asia/Vladivostok&Asia/Yakutsk&Asia/Yekaterinburg&Europe/Bucharest&Europe/Moscow&Europe/Samara
20|Africa/Cairo
27|Africa/Johannesburg
30|Europe/Athens
31|Europe/Amsterdam
32|Europe/Brussels
33|Europe/Paris
34|Atlantic/Canary&Europe/Madrid
36|Europe/Budapest
39|Europe/Rome&Europe/Vatican
40|Europe/Bucharest
41|Europe/Zurich
43|Europe/Vienna
44|Europe/Guernsey&Europe/Isle_of_Man&Europe/Jersey&Europe/London
45|Europe/Copenhagen
46|Europe/Stockholm
47|Arctic/Longyearbyen&Europe/Oslo
48|Europe/Warsaw
49|Europe/Berlin
51|America/Lima
52|America/Hermosillo&America/Mazatlan&America/Mexico_City&America/New_York&America/Tijuana
53|America/Havana
54|America/Buenos_Aires
55|America/Manaus&America/Noronha&America/Rio_Branco&America/Sao_Paulo
56|America/Santiago&Pacific/Easter
57|America/Bogota
58|America/Caracas
60|Asia/Kuching
61|Australia/Adelaide&Australia/Brisbane&Australia/Eucla&Australia/Lord_Howe&Australia/Perth&Australia/Sydney&Indian/Christmas&Indian/Cocos
62|Asia/Jakarta&Asia/Jayapura&Asia/Makassar
63|Asia/Manila
64|Pacific/Auckland&Pacific/Chatham
65|Asia/Singapore
66|Asia/Bangkok
77|Asia/Almaty&Asia/Aqtobe
79|Europe/Moscow
81|Asia/Tokyo
82|Asia/Seoul
84|Asia/Bangkok
86|Asia/Shanghai
90|Europe/Istanbul
91|Asia/Calcutta
92|Asia/Karachi
93|Asia/Kabul
94|Asia/Colombo
95|Asia/Rangoon
98|Asia/Tehran
211|Africa/Nairobi
212|Atlantic/Canary
213|Europe/Paris
216|Africa/Tunis
218|Europe/Bucharest
220|Africa/Banjul
221|Africa/Dakar
222|Africa/Nouakchott
223|Africa/Bamako
224|Africa/Conakry
225|Africa/Abidjan
226|Africa/Ouagadougou
227|Africa/Niamey
228|Africa/Lome
229|Africa/Porto-Novo
230|Indian/Mauritius
231|Atlantic/Reykjavik
232|Africa/Freetown
233|Africa/Accra
234|Africa/Lagos
235|Africa/Ndjamena
236|Africa/Bangui
237|Africa/Douala
238|Atlantic/Cape_Verde
239|Africa/Sao_Tome
240|Africa/Malabo
241|Africa/Libreville
242|Africa/Brazzaville
243|Africa/Kinshasa&Africa/Lubumbashi
244|Africa/Luanda
245|Atlantic/Reykjavik
246|Indian/Chagos
247|Atlantic/St_Helena
248|Indian/Mahe
249|Africa/Khartoum
250|Africa/Kigali
251|Africa/Addis_Ababa
252|Africa/Mogadishu
253|Africa/Djibouti
254|Africa/Nairobi
255|Africa/Dar_es_Salaam
256|Africa/Kampala
257|Africa/Bujumbura
258|Africa/Maputo
260|Africa/Lusaka
261|Indian/Antananarivo
262|Indian/Mayotte&Indian/Reunion
263|Africa/Harare
264|Africa/Windhoek
265|Africa/Blantyre
266|Africa/Maseru
267|Africa/Gaborone
268|Africa/Mbabane
269|Indian/Comoro
290|Atlantic/St_Helena
291|Africa/Asmera
297|America/Aruba
298|Atlantic/Faeroe
299|America/Godthab&America/Scoresbysund&America/Thule
345|Europe/Madrid
346|Europe/Madrid
347|Europe/Madrid
348|Europe/Madrid
349|Europe/Madrid
350|Europe/Gibraltar
351|Atlantic/Azores&Europe/Lisbon
352|Europe/Luxembourg
353|Europe/Dublin
354|Atlantic/Reykjavik
355|Europe/Tirane
356|Europe/Malta
357|Asia/Nicosia
358|Europe/Helsinki&Europe/Mariehamn
359|Europe/Sofia
370|Europe/Bucharest
371|Europe/Bucharest
372|Europe/Bucharest
373|Europe/Bucharest
374|Asia/Yerevan
375|Europe/Moscow
376|Europe/Andorra
377|Europe/Monaco
378|Europe/San_Marino
380|Europe/Kyiv
381|Europe/Belgrade
382|Europe/Podgorica
383|Europe/Belgrade
385|Europe/Zagreb
386|Europe/Ljubljana
387|Europe/Sarajevo
389|Europe/Skopje
390|Europe/Rome
391|Europe/Rome&Europe/Vatican
393|Europe/Rome&Europe/Vatican
395|Europe/Rome&Europe/Vatican
397|Europe/Rome
398|Europe/Rome&Europe/Vatican
420|Europe/Prague
421|Europe/Bratislava
423|Europe/Vaduz
441|Europe/London
442|Europe/London
443|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
445|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
448|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
449|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
470|Europe/Oslo
472|Europe/Oslo
473|Europe/Oslo
474|Europe/Oslo
475|Europe/Oslo
476|Europe/Oslo
477|Europe/Oslo
478|Europe/Oslo
479|Europe/Oslo
500|Atlantic/Stanley
501|America/Belize
502|America/Guatemala
503|America/El_Salvador
504|America/Tegucigalpa
505|America/Chicago
506|America/Costa_Rica
507|America/Panama
508|America/Miquelon
509|America/Port-au-Prince
521|America/Mexico_City
522|America/Mexico_City
523|America/Mexico_City
524|America/Mexico_City
525|America/Mexico_City
527|America/Mexico_City
528|America/Mexico_City
529|America/Mexico_City
551|America/Sao_Paulo
552|America/Sao_Paulo
553|America/Sao_Paulo
554|America/Sao_Paulo
557|America/Sao_Paulo
558|America/Sao_Paulo
559|America/Manaus
561|America/Santiago
562|America/Santiago
564|America/Santiago
565|America/Santiago
566|America/Santiago
567|America/Santiago
568|America/Santiago
569|America/Santiago
590|America/Guadeloupe
591|America/La_Paz
592|America/Guyana
593|America/Guayaquil&Pacific/Galapagos
594|America/Cayenne
595|America/Asuncion
596|America/Martinique
597|America/Paramaribo
598|America/Montevideo
599|America/Curacao&America/Kralendijk
611|Australia/Sydney
612|Australia/Sydney
613|Australia/Sydney
614|Australia/Sydney
617|Australia/Sydney
621|Asia/Jakarta&Asia/Makassar
622|Asia/Jakarta
624|Asia/Makassar
626|Asia/Jakarta
627|Asia/Jakarta
628|Asia/Jakarta
641|Pacific/Auckland
642|Pacific/Auckland
643|Pacific/Auckland
644|Pacific/Auckland
645|Pacific/Auckland
646|Pacific/Auckland
647|Pacific/Auckland
649|Pacific/Auckland
670|Asia/Dili
672|Pacific/Norfolk
673|Asia/Brunei
674|Pacific/Nauru
675|Pacific/Port_Moresby
676|Pacific/Tongatapu
677|Pacific/Guadalcanal
678|Pacific/Efate
679|Pacific/Fiji
680|Pacific/Palau
681|Pacific/Wallis
682|Pacific/Rarotonga
683|Pacific/Niue
685|Pacific/Apia
686|Pacific/Enderbury&Pacific/Kiritimati&Pacific/Tarawa
687|Pacific/Noumea
688|Pacific/Funafuti
689|Pacific/Gambier&Pacific/Marquesas&Pacific/Tahiti
690|Pacific/Fakaofo
691|Pacific/Kosrae&Pacific/Ponape&Pacific/Truk
692|Pacific/Majuro
733|Asia/Almaty
734|Asia/Yekaterinburg
735|Asia/Yekaterinburg
736|Europe/Moscow
740|Europe/Bucharest
747|Europe/Moscow
748|Europe/Moscow
749|Europe/Moscow
771|Asia/Almaty
772|Asia/Almaty
781|Europe/Moscow
782|Europe/Moscow
783|Europe/Moscow
786|Europe/Moscow
787|Europe/Moscow
850|Asia/Seoul
852|Asia/Hong_Kong
853|Asia/Shanghai
855|Asia/Phnom_Penh
856|Asia/Vientiane
861|Asia/Shanghai
862|Asia/Shanghai
863|Asia/Shanghai
864|Asia/Shanghai
865|Asia/Shanghai
866|Asia/Shanghai
867|Asia/Shanghai
868|Asia/Shanghai
869|Asia/Shanghai
880|Asia/Dhaka
886|Asia/Taipei
960|Indian/Maldives
961|Asia/Beirut
962|Asia/Amman
963|Asia/Damascus
964|Asia/Baghdad
965|Asia/Kuwait
966|Asia/Riyadh
967|Asia/Aden
968|Asia/Muscat
970|Europe/Bucharest
971|Asia/Dubai
972|Asia/Jerusalem
973|Asia/Bahrain
974|Asia/Qatar
975|Asia/Thimphu
976|Asia/Choibalsan&Asia/Hovd&Asia/Ulaanbaatar
977|Asia/Katmandu
992|Asia/Dushanbe
993|Asia/Ashgabat
994|Asia/Baku
995|Asia/Tbilisi
996|Asia/Bishkek
998|Asia/Tashkent
1201|America/New_York
1202|America/New_York
1203|America/New_York
1204|America/Winnipeg
1205|America/Chicago
1206|America/Los_Angeles
1207|America/New_York
1209|America/Los_Angeles
1210|America/Chicago
1212|America/New_York
1213|America/Los_Angeles
1214|America/Chicago
1215|America/New_York
1216|America/New_York
1217|America/Chicago
1218|America/Chicago
1219|America/New_York
1220|America/New_York
1223|America/New_York
1224|America/Chicago
1225|America/Chicago
1226|America/Toronto
1228|America/Chicago
1229|America/New_York
1231|America/New_York
1234|America/New_York
1236|America/Vancouver
1239|America/New_York
1240|America/New_York
1242|America/Nassau
1246|America/Barbados
1248|America/New_York
1249|America/Toronto
1250|America/Vancouver
1251|America/Chicago
1252|America/New_York
1253|America/Los_Angeles
1254|America/Chicago
1256|America/Chicago
1260|America/New_York
1262|America/Chicago
1263|America/Toronto
1264|America/Anguilla
1267|America/New_York
1268|America/Antigua
1269|America/New_York
1270|America/New_York
1272|America/New_York
1276|America/New_York
1279|America/Los_Angeles
1281|America/Chicago
1283|America/New_York
1284|America/Tortola
1289|America/Toronto
1301|America/New_York
1302|America/New_York
1303|America/Denver
1304|America/New_York
1305|America/New_York
1306|America/Regina
1307|America/Denver
1308|America/Chicago
1309|America/Chicago
1312|America/Chicago
1313|America/New_York
1314|America/Chicago
1315|America/New_York
1316|America/Chicago
1317|America/New_York
1318|America/Chicago
1319|America/Chicago
1320|America/Chicago
1321|America/New_York
1323|America/Los_Angeles
1325|America/Chicago
1326|America/New_York
1330|America/New_York
1331|America/Chicago
1332|America/New_York
1334|America/Chicago
1336|America/New_York
1337|America/Chicago
1339|America/New_York
1340|America/St_Thomas
1341|America/Los_Angeles
1343|America/Toronto
1345|America/Cayman
1346|America/Chicago
1347|America/New_York
1351|America/New_York
1352|America/New_York
1360|America/Los_Angeles
1361|America/Chicago
1364|America/New_York
1365|America/Toronto
1367|America/Toronto
1368|America/Edmonton
1380|America/New_York
1385|America/Denver
1386|America/New_York
1401|America/New_York
1402|America/Chicago
1403|America/Edmonton
1404|America/New_York
1405|America/Chicago
1406|America/Denver
1407|America/New_York
1408|America/Los_Angeles
1409|America/Chicago
1410|America/New_York
1412|America/New_York
1413|America/New_York
1414|America/Chicago
1415|America/Los_Angeles
1416|America/Toronto
1417|America/Chicago
1418|America/Toronto
1419|America/New_York
1423|America/Chicago
1424|America/Los_Angeles
1425|America/Los_Angeles
1430|America/Chicago
1431|America/Winnipeg
1432|America/Chicago
1434|America/New_York
1435|America/Denver
1437|America/Winnipeg
1438|America/Toronto
1440|America/New_York
1441|Atlantic/Bermuda
1442|America/Los_Angeles
1443|America/New_York
1445|America/New_York
1447|America/Chicago
1448|America/New_York
1450|America/Toronto
1458|America/Los_Angeles
1463|America/New_York
1464|America/Chicago
1468|America/Toronto
1469|America/Chicago
1470|America/New_York
1473|America/Grenada
1474|America/Winnipeg
1475|America/New_York
1478|America/New_York
1479|America/Chicago
1480|America/Denver&America/Phoenix
1484|America/New_York
1501|America/Chicago
1502|America/New_York
1503|America/Los_Angeles
1504|America/Chicago
1505|America/Denver
1506|America/Halifax
1507|America/Chicago
1508|America/New_York
1509|America/Los_Angeles
1510|America/Los_Angeles
1512|America/Chicago
1513|America/New_York
1514|America/Toronto
1515|America/Chicago
1516|America/New_York
1517|America/New_York
1518|America/New_York
1519|America/Toronto
1520|America/Denver&America/Phoenix
1530|America/Los_Angeles
1531|America/Chicago
1534|America/Chicago
1539|America/Chicago
1540|America/New_York
1541|America/Los_Angeles
1548|America/Toronto
1551|America/New_York
1559|America/Los_Angeles
1561|America/New_York
1562|America/Los_Angeles
1563|America/Chicago
1564|America/Los_Angeles
1567|America/New_York
1570|America/New_York
1571|America/New_York
1572|America/Chicago
1573|America/Chicago
1574|America/New_York
1575|America/Denver
1579|America/Toronto
1580|America/Chicago
1581|America/Toronto
1582|America/New_York
1584|America/Winnipeg
1585|America/New_York
1586|America/New_York
1587|America/Edmonton
1601|America/Chicago
1602|America/Denver&America/Phoenix
1603|America/New_York
1604|America/Vancouver
1605|America/Denver&America/North_Dakota/Center
1606|America/New_York
1607|America/New_York
1608|America/Chicago
1609|America/New_York
1610|America/New_York
1612|America/Chicago
1613|America/Toronto
1614|America/New_York
1615|America/Chicago
1616|America/New_York
1617|America/New_York
1618|America/Chicago
1619|America/Los_Angeles
1620|America/Chicago
1623|America/Phoenix
1626|America/Los_Angeles
1628|America/Los_Angeles
1629|America/Chicago
1630|America/Chicago
1631|America/New_York
1636|America/Chicago
1639|America/Regina
1640|America/New_York
1641|America/Chicago
1646|America/New_York
1647|America/Toronto
1649|America/Grand_Turk
1650|America/Los_Angeles
1651|America/Chicago
1656|America/New_York
1657|America/Los_Angeles
1658|America/Jamaica
1659|America/Chicago
1660|America/Chicago
1661|America/Los_Angeles
1662|America/Chicago
1664|America/Montserrat
1667|America/New_York
1669|America/Los_Angeles
1670|Pacific/Saipan
1671|Pacific/Guam
1672|America/Vancouver
1678|America/New_York
1680|America/New_York
1681|America/New_York
1682|America/Chicago
1684|Pacific/Pago_Pago
1689|America/Chicago
1701|America/Denver&America/North_Dakota/Center
1702|America/Los_Angeles
1703|America/New_York
1704|America/New_York
1705|America/Toronto
1706|America/New_York
1707|America/Los_Angeles
1708|America/Chicago
1709|America/Puerto_Rico&America/St_Johns
1712|America/Chicago
1713|America/Chicago
1714|America/Los_Angeles
1715|America/Chicago
1716|America/New_York
1717|America/New_York
1718|America/New_York
1719|America/Denver
1720|America/Denver
1721|America/Lower_Princes
1724|America/New_York
1725|America/Los_Angeles
1726|America/Chicago
1727|America/New_York
1731|America/Chicago
1732|America/New_York
1734|America/New_York
1737|America/Chicago
1740|America/New_York
1742|America/Toronto
1743|America/New_York
1747|America/Los_Angeles
1753|America/Toronto
1754|America/New_York
1757|America/New_York
1758|America/St_Lucia
1760|America/Los_Angeles
1762|America/New_York
1763|America/Chicago
1765|America/New_York
1767|America/Dominica
1769|America/Chicago
1770|America/New_York
1771|America/New_York
1772|America/New_York
1773|America/Chicago
1774|America/New_York
1775|America/Boise&America/Los_Angeles
1778|America/Vancouver
1779|America/Chicago
1780|America/Edmonton
1781|America/New_York
1782|America/Halifax
1784|America/St_Vincent
1785|America/Chicago
1786|America/New_York
1787|America/Puerto_Rico
1801|America/Denver
1802|America/New_York
1803|America/New_York
1804|America/New_York
1805|America/Los_Angeles
1806|America/Chicago
1807|America/Toronto
1808|Pacific/Honolulu
1809|America/Santo_Domingo
1810|America/New_York
1812|America/New_York
1813|America/New_York
1814|America/New_York
1815|America/Chicago
1816|America/Chicago
1817|America/Chicago
1818|America/Los_Angeles
1819|America/Toronto
1820|America/Los_Angeles
1825|America/Edmonton
1826|America/New_York
1828|America/New_York
1829|America/Santo_Domingo
1830|America/Chicago
1831|America/Los_Angeles
1832|America/Chicago
1838|America/New_York
1839|America/New_York
1840|America/Los_Angeles
1843|America/New_York
1845|America/New_York
1847|America/Chicago
1848|America/New_York
1849|America/Santo_Domingo
1850|America/New_York
1854|America/New_York
1856|America/New_York
1857|America/New_York
1858|America/Los_Angeles
1859|America/New_York
1860|America/New_York
1862|America/New_York
1863|America/New_York
1864|America/New_York
1865|America/New_York
1867|America/Fort_Nelson
1868|America/Port_of_Spain
1869|America/St_Kitts
1870|America/Chicago
1872|America/Chicago
1873|America/Toronto
1876|America/Jamaica
1878|America/New_York
1901|America/Chicago
1902|America/Halifax
1903|America/Chicago
1904|America/New_York
1905|America/Toronto
1906|America/New_York
1907|America/Adak&America/Anchorage
1908|America/New_York
1909|America/Los_Angeles
1910|America/New_York
1912|America/New_York
1913|America/Chicago
1914|America/New_York
1915|America/Denver
1916|America/Los_Angeles
1917|America/New_York
1918|America/Chicago
1919|America/New_York
1920|America/Chicago
1925|America/Los_Angeles
1928|America/Denver&America/Phoenix
1929|America/New_York
1930|America/New_York
1931|America/Chicago
1934|America/New_York
1936|America/Chicago
1937|America/New_York
1938|America/Chicago
1939|America/Puerto_Rico
1940|America/Chicago
1941|America/New_York
1943|America/New_York
1945|America/Chicago
1947|America/New_York
1948|America/New_York
1949|America/Los_Angeles
1951|America/Los_Angeles
1952|America/Chicago
1954|America/New_York
1956|America/Chicago
1959|America/New_York
1970|America/Denver
1971|America/Los_Angeles
1972|America/Chicago
1973|America/New_York
1978|America/New_York
1979|America/Chicago
1980|America/New_York
1984|America/New_York
1985|America/Chicago
1986|America/Boise&America/Los_Angeles
1989|America/New_York
2431|Africa/Kinshasa
2432|Africa/Lubumbashi
2433|Africa/Kinshasa
2434|Africa/Kinshasa
2435|Africa/Kinshasa
2436|Africa/Kinshasa
2438|Africa/Kinshasa&Africa/Lubumbashi
2439|Africa/Kinshasa&Africa/Lubumbashi
2629|Indian/Reunion
2991|America/Godthab
2992|America/Godthab
2993|America/Godthab
2994|America/Godthab
2995|America/Godthab
2996|America/Godthab
2998|America/Godthab
2999|America/Godthab
3511|Atlantic/Azores&Europe/Lisbon
3512|Europe/Lisbon
3513|Atlantic/Azores&Europe/Lisbon
3516|Atlantic/Azores&Europe/Lisbon
3517|Atlantic/Azores&Europe/Lisbon
3518|Atlantic/Azores&Europe/Lisbon
3519|Atlantic/Azores&Europe/Lisbon
3582|Europe/Helsinki
3583|Europe/Helsinki
3585|Europe/Helsinki
3586|Europe/Helsinki
3588|Europe/Helsinki
3589|Europe/Helsinki
4470|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4471|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4472|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4473|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4474|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4475|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4477|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4478|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4479|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
4779|Arctic/Longyearbyen
5262|America/Mazatlan
5263|America/Mazatlan
5264|America/Mazatlan
5269|America/Mazatlan
5550|America/Sao_Paulo
5551|America/Sao_Paulo
5553|America/Sao_Paulo
5554|America/Sao_Paulo
5555|America/Sao_Paulo
5561|America/Sao_Paulo
5562|America/Sao_Paulo
5563|America/Sao_Paulo
5564|America/Sao_Paulo
5565|America/Manaus
5566|America/Manaus
5567|America/Manaus
5568|America/Rio_Branco
5569|America/Manaus
5590|America/Sao_Paulo
5596|America/Sao_Paulo
5598|America/Sao_Paulo
5599|America/Sao_Paulo
5632|Pacific/Easter
5633|America/Santiago
5634|America/Santiago
5635|America/Santiago
5931|America/Guayaquil&Pacific/Galapagos
5932|America/Guayaquil
5933|America/Guayaquil
5934|America/Guayaquil
5935|America/Guayaquil
5936|America/Guayaquil
5937|America/Guayaquil
5939|America/Guayaquil
5993|America/Kralendijk
5994|America/Kralendijk
5996|America/Curacao
5997|America/Kralendijk
5999|America/Curacao
6186|Australia/Adelaide&Australia/Perth
6187|Australia/Adelaide&Australia/Perth
6188|Australia/Adelaide&Australia/Perth
6189|Australia/Adelaide&Australia/Perth
6231|Asia/Jakarta
6232|Asia/Jakarta
6233|Asia/Jakarta
6234|Asia/Jakarta
6235|Asia/Jakarta
6236|Asia/Makassar
6237|Asia/Makassar
6238|Asia/Makassar
6253|Asia/Jakarta
6254|Asia/Makassar
6255|Asia/Makassar
6256|Asia/Jakarta
6280|Asia/Jakarta&Asia/Makassar
6290|Asia/Jayapura
6291|Asia/Jayapura
6292|Asia/Jayapura
6298|Asia/Jayapura
6480|Pacific/Auckland
6486|Pacific/Auckland
6894|Pacific/Tahiti
6913|Pacific/Truk
6918|Pacific/Kosrae&Pacific/Ponape&Pacific/Truk
6919|Pacific/Kosrae&Pacific/Ponape&Pacific/Truk
7301|Asia/Irkutsk
7302|Asia/Yakutsk
7341|Europe/Samara
7381|Asia/Omsk
7382|Asia/Novosibirsk
7383|Asia/Novosibirsk
7384|Asia/Krasnoyarsk
7385|Asia/Krasnoyarsk
7388|Asia/Krasnoyarsk
7390|Asia/Krasnoyarsk
7391|Asia/Krasnoyarsk
7394|Asia/Krasnoyarsk
7395|Asia/Irkutsk
7411|Asia/Yakutsk
7413|Asia/Magadan
7415|Asia/Kamchatka
7416|Asia/Yakutsk
7421|Asia/Vladivostok
7423|Asia/Vladivostok
7424|Asia/Sakhalin
7426|Asia/Vladivostok
7427|Asia/Anadyr
7711|Asia/Aqtobe
7712|Asia/Aqtobe
7713|Asia/Aqtobe
7729|Asia/Aqtobe
7800|Asia/Almaty&Asia/Aqtobe&Europe/Moscow
7803|Europe/Moscow
7804|Europe/Moscow
7808|Asia/Almaty&Asia/Aqtobe&Europe/Moscow
7809|Asia/Almaty&Asia/Aqtobe&Europe/Moscow
7810|Asia/Almaty&Asia/Aqtobe&Europe/Moscow
7840|Europe/Bucharest&Europe/Moscow
7841|Europe/Moscow
7842|Europe/Samara
7843|Europe/Moscow
7844|Europe/Moscow
7845|Europe/Moscow
7846|Europe/Samara
7847|Europe/Moscow
7848|Europe/Samara
7851|Europe/Samara
7855|Europe/Moscow
9765|Asia/Ulaanbaatar
9766|Asia/Ulaanbaatar
9767|Asia/Ulaanbaatar
9768|Asia/Ulaanbaatar
9769|Asia/Ulaanbaatar
12082|America/Boise&America/Los_Angeles
12083|America/Denver
12085|America/Boise&America/Los_Angeles
12086|America/Boise&America/Los_Angeles
12089|America/Boise&America/Los_Angeles
13102|America/Los_Angeles
13103|America/Los_Angeles
13104|America/Los_Angeles
13105|America/Los_Angeles
13106|America/Los_Angeles
13107|America/Los_Angeles
13108|America/Los_Angeles
13109|America/Los_Angeles
26263|Indian/Mayotte
26269|Indian/Reunion
26280|Indian/Mayotte&Indian/Reunion
26281|Indian/Reunion
26282|Indian/Reunion
26288|Indian/Reunion
26289|Indian/Reunion
29997|America/Thule
29999|America/Scoresbysund
34822|Atlantic/Canary
34827|Atlantic/Canary
34828|Atlantic/Canary
34922|Atlantic/Canary
34928|Atlantic/Canary
35813|Europe/Helsinki
35814|Europe/Helsinki
35815|Europe/Helsinki
35816|Europe/Helsinki
35817|Europe/Helsinki
35818|Europe/Mariehamn
35819|Europe/Helsinki
44760|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
44762|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
44763|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
44765|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
44766|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
44767|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
44768|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
52162|America/Mazatlan
52163|America/Mazatlan
52164|America/Mazatlan
52169|America/Mazatlan
52200|America/Mexico_City&America/Tijuana
52201|America/Mexico_City&America/New_York
52311|America/Mazatlan
52319|America/Mazatlan
52323|America/Mazatlan
52324|America/Mazatlan
52325|America/Mazatlan
52327|America/Mazatlan
52389|America/Mazatlan
52612|America/Mazatlan
52613|America/Mazatlan
52614|America/Mazatlan
52615|America/Mazatlan
52616|America/Tijuana
52618|America/Mexico_City
52626|America/Hermosillo
52646|America/Tijuana
52649|America/Mazatlan&America/Mexico_City
52651|America/Mazatlan
52652|America/Mazatlan
52653|America/Mazatlan
52656|America/Hermosillo
52657|America/Mazatlan
52658|America/Tijuana
52659|America/Mazatlan
52661|America/Tijuana
52662|America/Mazatlan
52663|America/Mexico_City
52664|America/Tijuana
52665|America/Tijuana
52667|America/Mazatlan
52668|America/Mazatlan
52669|America/Mazatlan
52671|America/Mexico_City
52672|America/Mazatlan
52673|America/Mazatlan
52674|America/Mexico_City
52675|America/Mexico_City
52676|America/Mexico_City
52677|America/Mexico_City
52686|America/Tijuana
52687|America/Mazatlan
52983|America/New_York
52984|America/New_York
52987|America/New_York
52998|America/New_York
55812|America/Noronha
55814|America/Noronha
55815|America/Noronha
55817|America/Noronha
55819|America/Noronha
56322|America/Santiago
56323|America/Santiago
59352|America/Guayaquil&Pacific/Galapagos
61731|Australia/Brisbane
62007|Asia/Jakarta&Asia/Makassar
62379|Asia/Jakarta&Asia/Makassar
62403|Asia/Jayapura&Asia/Makassar
62458|Asia/Jakarta&Asia/Makassar
62511|Asia/Makassar
62512|Asia/Makassar
62513|Asia/Jakarta
62515|Asia/Jakarta
62516|Asia/Jakarta&Asia/Makassar
62517|Asia/Makassar
62518|Asia/Makassar
62519|Asia/Jakarta
62522|Asia/Jakarta
62525|Asia/Jakarta
62526|Asia/Makassar
62527|Asia/Makassar
62528|Asia/Jakarta
62539|Asia/Jakarta&Asia/Makassar
62811|Asia/Jakarta&Asia/Makassar
62818|Asia/Jakarta&Asia/Makassar
62819|Asia/Jakarta&Asia/Makassar
62824|Asia/Jakarta&Asia/Makassar
62829|Asia/Jakarta&Asia/Makassar
62831|Asia/Jakarta&Asia/Makassar
62833|Asia/Jakarta&Asia/Makassar
62834|Asia/Jakarta&Asia/Makassar
62839|Asia/Jakarta&Asia/Makassar
62853|Asia/Jakarta&Asia/Makassar
62868|Asia/Jakarta&Asia/Makassar
62876|Asia/Jakarta&Asia/Makassar
62887|Asia/Jakarta&Asia/Makassar
62915|Asia/Jakarta&Asia/Jayapura
62920|Asia/Jakarta
62951|Asia/Jayapura
62952|Asia/Jakarta&Asia/Jayapura
62955|Asia/Jayapura
62956|Asia/Jayapura
62957|Asia/Jayapura
62958|Asia/Jakarta
62962|Asia/Jayapura
62963|Asia/Jakarta
62966|Asia/Jayapura
62967|Asia/Jayapura
62969|Asia/Jayapura
62971|Asia/Jayapura
62975|Asia/Jayapura
62979|Asia/Jakarta
64330|Pacific/Chatham
68980|Pacific/Gambier&Pacific/Marquesas&Pacific/Tahiti
68987|Pacific/Gambier&Pacific/Marquesas&Pacific/Tahiti
68988|Pacific/Tahiti
68989|Pacific/Tahiti
69132|Pacific/Ponape
69137|Pacific/Kosrae
97611|Asia/Ulaanbaatar
97612|Asia/Ulaanbaatar
97613|Asia/Ulaanbaatar
97614|Asia/Hovd
97615|Asia/Ulaanbaatar
97621|Asia/Ulaanbaatar
97622|Asia/Ulaanbaatar
97623|Asia/Ulaanbaatar
97624|Asia/Hovd
97625|Asia/Ulaanbaatar
120823|America/Denver
120828|America/Denver
120830|America/Boise&America/Los_Angeles
120831|America/Boise&America/Los_Angeles
120841|America/Boise&America/Los_Angeles
120842|America/Denver
120846|America/Denver
120848|America/Boise&America/Los_Angeles
120849|America/Boise&America/Los_Angeles
120852|America/Denver
120866|America/Los_Angeles
120871|America/Boise&America/Los_Angeles
120872|America/Denver
120873|America/Denver
120874|America/Boise&America/Los_Angeles
120875|America/Boise&America/Los_Angeles
120877|America/Boise&America/Los_Angeles
120879|America/Boise&America/Los_Angeles
120880|America/Boise&America/Los_Angeles
120881|America/Boise&America/Los_Angeles
120882|America/Boise&America/Los_Angeles
120883|America/Boise&America/Los_Angeles
120884|America/Boise&America/Los_Angeles
120885|America/Denver
120886|America/Denver
120888|America/Denver
120889|America/Denver
121988|America/Chicago
121992|America/Chicago
121993|America/Chicago
121994|America/Chicago
127068|America/Chicago
130824|America/Denver
142323|America/New_York
142333|America/New_York
142347|America/New_York
142349|America/New_York
142362|America/New_York
160533|America/Chicago
160535|America/Chicago
160536|America/Chicago
160569|America/Chicago
170122|America/Chicago
170123|America/Chicago
170125|America/Chicago
177532|America/Los_Angeles
177533|America/Los_Angeles
177535|America/Los_Angeles
177582|America/Los_Angeles
177585|America/Los_Angeles
177588|America/Los_Angeles
181242|America/Chicago
181247|America/Chicago
185023|America/Chicago
185043|America/Chicago
185045|America/Chicago
185047|America/Chicago
185068|America/Chicago
185086|America/Chicago
190722|America/Juneau
190724|America/Juneau
190727|America/Juneau
190733|America/Juneau
190745|America/Juneau
262262|Indian/Reunion
262263|Indian/Reunion
262269|Indian/Mayotte
351292|Atlantic/Azores
351295|Atlantic/Azores
351296|Atlantic/Azores
358701|Europe/Helsinki&Europe/Mariehamn
358702|Europe/Helsinki&Europe/Mariehamn
358703|Europe/Helsinki&Europe/Mariehamn
358704|Europe/Helsinki&Europe/Mariehamn
358705|Europe/Helsinki&Europe/Mariehamn
358707|Europe/Helsinki&Europe/Mariehamn
358708|Europe/Helsinki&Europe/Mariehamn
358709|Europe/Helsinki&Europe/Mariehamn
390878|Europe/Rome&Europe/Vatican
441481|Europe/Guernsey
441534|Europe/Jersey
441624|Europe/Isle_of_Man
447640|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
447641|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
447643|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
447644|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
447646|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
447693|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
447699|Europe/Guernsey&Europe/Isle_of_Man&Europe/London
521311|America/Mazatlan
521319|America/Mazatlan
521323|America/Mazatlan
521324|America/Mazatlan
521325|America/Mazatlan
521327|America/Mazatlan
521389|America/Mazatlan
521612|America/Mazatlan
521613|America/Mazatlan
521614|America/Mazatlan
521615|America/Mazatlan
521616|America/Tijuana
521626|America/Hermosillo&America/Tijuana
521636|America/Hermosillo&America/Mazatlan
521646|America/Tijuana
521647|America/Mazatlan&America/Tijuana
521651|America/Mazatlan
521652|America/Mazatlan
521653|America/Mazatlan
521656|America/Hermosillo
521658|America/Tijuana
521659|America/Mazatlan
521661|America/Tijuana
521662|America/Mazatlan
521663|America/Mazatlan
521664|America/Tijuana
521665|America/Tijuana
521667|America/Mazatlan
521668|America/Mazatlan
521669|America/Mazatlan
521672|America/Mazatlan
521673|America/Mazatlan
521686|America/Tijuana
521687|America/Mazatlan
521877|America/Mexico_City&America/Tijuana
521983|America/New_York
521984|America/New_York
521987|America/New_York
521998|America/New_York
558131|America/Noronha
558135|America/Noronha
558137|America/Noronha
558138|America/Noronha
558139|America/Noronha
559132|America/Sao_Paulo
559198|America/Sao_Paulo
617303|Australia/Brisbane
617305|Australia/Brisbane
617307|Australia/Brisbane
617308|Australia/Brisbane
617322|Australia/Brisbane
617323|Australia/Brisbane
617326|Australia/Brisbane
617335|Australia/Brisbane
617336|Australia/Brisbane
617342|Australia/Brisbane
617350|Australia/Brisbane
617353|Australia/Brisbane
617355|Australia/Brisbane
617360|Australia/Brisbane
617362|Australia/Brisbane
617363|Australia/Brisbane
617370|Australia/Brisbane
617371|Australia/Brisbane
617372|Australia/Brisbane
617373|Australia/Brisbane
617389|Australia/Brisbane
618510|Australia/Adelaide&Australia/Perth
618511|Australia/Perth
691920|Pacific/Ponape
691921|Pacific/Ponape
691924|Pacific/Ponape
691926|Pacific/Ponape
691933|Pacific/Truk
976158|Asia/Choibalsan
976258|Asia/Choibalsan
1208201|America/Denver
1208215|America/Los_Angeles
1208221|America/Denver
1208226|America/Denver
1208227|America/Denver
1208228|America/Denver
1208241|America/Denver
1208242|America/Denver
1208245|America/Los_Angeles
1208249|America/Denver
1208250|America/Denver
1208251|America/Denver
1208253|America/Denver
1208254|America/Denver
1208255|America/Los_Angeles
1208258|America/Denver
1208262|America/Los_Angeles
1208263|America/Los_Angeles
1208265|America/Los_Angeles
1208267|America/Los_Angeles
1208278|America/Denver
1208290|America/Los_Angeles
1208292|America/Los_Angeles
1208297|America/Denver
1208304|America/Los_Angeles
1208305|America/Los_Angeles
1208320|America/Boise&America/Los_Angeles
1208325|America/Boise&America/Los_Angeles
1208328|America/Boise&America/Los_Angeles
1208329|America/Boise&America/Los_Angeles
1208330|America/Boise&America/Los_Angeles
1208332|America/Boise&America/Los_Angeles
1208335|America/Boise&America/Los_Angeles
1208341|America/Boise&America/Los_Angeles
1208347|America/Boise&America/Los_Angeles
1208348|America/Boise&America/Los_Angeles
1208349|America/Boise&America/Los_Angeles
1208355|America/Boise&America/Los_Angeles
1208358|America/Boise&America/Los_Angeles
1208361|America/Boise&America/Los_Angeles
1208363|America/Boise&America/Los_Angeles
1208364|America/Boise&America/Los_Angeles
1208368|America/Boise&America/Los_Angeles
1208369|America/Boise&America/Los_Angeles
1208370|America/Boise&America/Los_Angeles
1208372|America/Boise&America/Los_Angeles
1208374|America/Boise&America/Los_Angeles
1208379|America/Boise&America/Los_Angeles
1208380|America/Boise&America/Los_Angeles
1208386|America/Boise&America/Los_Angeles
1208387|America/Boise&America/Los_Angeles
1208393|America/Boise&America/Los_Angeles
1208394|America/Boise&America/Los_Angeles
1208395|America/Boise&America/Los_Angeles
1208396|America/Boise&America/Los_Angeles
1208399|America/Boise&America/Los_Angeles
1208400|America/Boise&America/Los_Angeles
1208401|America/Denver
1208402|America/Denver
1208403|America/Denver
1208404|America/Boise&America/Los_Angeles
1208405|America/Boise&America/Los_Angeles
1208406|America/Boise&America/Los_Angeles
1208407|America/Denver
1208408|America/Boise&America/Los_Angeles
1208409|America/Denver
1208412|America/Denver
1208414|America/Denver
1208419|America/Denver
1208421|America/Boise&America/Los_Angeles
1208427|America/Boise&America/Los_Angeles
1208428|America/Boise&America/Los_Angeles
1208430|America/Boise&America/Los_Angeles
1208431|America/Denver
1208432|America/Boise&America/Los_Angeles
1208433|America/Denver
1208434|America/Boise&America/Los_Angeles
1208435|America/Boise&America/Los_Angeles
1208436|America/Denver
1208437|America/Los_Angeles
1208438|America/Denver
1208439|America/Boise&America/Los_Angeles
1208440|America/Denver
1208441|America/Boise&America/Los_Angeles
1208442|America/Denver
1208443|America/Los_Angeles
1208444|America/Boise&America/Los_Angeles
1208445|America/Boise&America/Los_Angeles
1208446|America/Los_Angeles
1208447|America/Boise&America/Los_Angeles
1208448|America/Los_Angeles
1208449|America/Boise&America/Los_Angeles
1208450|America/Boise&America/Los_Angeles
1208451|America/Boise&America/Los_Angeles
1208452|America/Denver
1208453|America/Denver
1208454|America/Denver
1208455|America/Denver
1208456|America/Boise&America/Los_Angeles
1208457|America/Los_Angeles
1208458|America/Boise&America/Los_Angeles
1208459|America/Denver
1208460|America/Boise&America/Los_Angeles
1208464|America/Boise&America/Los_Angeles
1208469|America/Boise&America/Los_Angeles
1208470|America/Boise&America/Los_Angeles
1208471|America/Boise&America/Los_Angeles
1208472|America/Denver
1208473|America/Denver
1208474|America/Boise&America/Los_Angeles
1208475|America/Denver
1208476|America/Los_Angeles
1208477|America/Boise&America/Los_Angeles
1208478|America/Denver
1208479|America/Boise&America/Los_Angeles
1208484|America/Denver
1208489|America/Denver
1208495|America/Denver
1208505|America/Denver
1208514|America/Denver
1208515|America/Denver
1208535|America/Denver
1208536|America/Denver
1208538|America/Denver
1208539|America/Denver
1208542|America/Denver
1208543|America/Denver
1208546|America/Denver
1208547|America/Denver
1208549|America/Denver
1208552|America/Denver
1208556|America/Los_Angeles
1208557|America/Denver
1208558|America/Denver
1208559|America/Denver
1208562|America/Denver
1208569|America/Denver
1208570|America/Denver
1208571|America/Denver
1208573|America/Denver
1208577|America/Denver
1208578|America/Denver
1208585|America/Denver
1208587|America/Denver
1208588|America/Denver
1208589|America/Denver
1208595|America/Denver
1208596|America/Los_Angeles
1208602|America/Denver
1208608|America/Denver
1208610|America/Los_Angeles
1208622|America/Denver
1208623|America/Los_Angeles
1208624|America/Denver
1208625|America/Los_Angeles
1208628|America/Denver
1208629|America/Denver
1208631|America/Denver
1208634|America/Denver
1208637|America/Denver
1208639|America/Denver
1208640|America/Los_Angeles
1208642|America/Denver
1208651|America/Los_Angeles
1208652|America/Denver
1208656|America/Denver
1208658|America/Denver
1208659|America/Los_Angeles
1208672|America/Denver
1208676|America/Los_Angeles
1208677|America/Denver
1208678|America/Denver
1208681|America/Denver
1208682|America/Los_Angeles
1208683|America/Los_Angeles
1208684|America/Denver
1208686|America/Los_Angeles
1208687|America/Los_Angeles
1208691|America/Los_Angeles
1208695|America/Denver
1208697|America/Denver
1208699|America/Los_Angeles
1208700|America/Boise&America/Los_Angeles
1208701|America/Boise&America/Los_Angeles
1208702|America/Boise&America/Los_Angeles
1208703|America/Denver
1208704|America/Los_Angeles
1208705|America/Denver
1208706|America/Denver
1208707|America/Boise&America/Los_Angeles
1208708|America/Boise&America/Los_Angeles
1208709|America/Denver
1208713|America/Denver
1208716|America/Denver
1208721|America/Boise&America/Los_Angeles
1208723|America/Boise&America/Los_Angeles
1208728|America/Boise&America/Los_Angeles
1208729|America/Boise&America/Los_Angeles
1208730|America/Boise&America/Los_Angeles
1208738|America/Boise&America/Los_Angeles
1208739|America/Boise&America/Los_Angeles
1208743|America/Los_Angeles
1208745|America/Denver
1208746|America/Los_Angeles
1208755|America/Los_Angeles
1208756|America/Denver
1208760|America/Boise&America/Los_Angeles
1208761|America/Denver
1208762|America/Los_Angeles
1208763|America/Boise&America/Los_Angeles
1208764|America/Boise&America/Los_Angeles
1208765|America/Los_Angeles
1208766|America/Denver
1208767|America/Boise&America/Los_Angeles
1208768|America/Boise&America/Los_Angeles
1208769|America/Los_Angeles
1208772|America/Los_Angeles
1208773|America/Los_Angeles
1208777|America/Los_Angeles
1208780|America/Boise&America/Los_Angeles
1208781|America/Boise&America/Los_Angeles
1208782|America/Denver
1208783|America/Los_Angeles
1208784|America/Los_Angeles
1208785|America/Denver
1208786|America/Boise&America/Los_Angeles
1208787|America/Denver
1208788|America/Denver
1208789|America/Denver
1208791|America/Los_Angeles
1208794|America/Denver
1208798|America/Los_Angeles
1208799|America/Los_Angeles
1208814|America/Denver
1208818|America/Los_Angeles
1208819|America/Los_Angeles
1208830|America/Denver
1208835|America/Los_Angeles
1208837|America/Denver
1208841|America/Denver
1208843|America/Los_Angeles
1208846|America/Denver
1208847|America/Denver
1208851|America/Boise&America/Los_Angeles
1208856|America/Boise&America/Los_Angeles
1208857|America/Boise&America/Los_Angeles
1208858|America/Boise&America/Los_Angeles
1208862|America/Boise&America/Los_Angeles
1208864|America/Boise&America/Los_Angeles
1208865|America/Boise&America/Los_Angeles
1208868|America/Boise&America/Los_Angeles
1208870|America/Denver
1208871|America/Denver
1208872|America/Boise&America/Los_Angeles
1208873|America/Boise&America/Los_Angeles
1208874|America/Boise&America/Los_Angeles
1208875|America/Los_Angeles
1208876|America/Boise&America/Los_Angeles
1208877|America/Boise&America/Los_Angeles
1208878|America/Denver
1208879|America/Denver
1208882|America/Los_Angeles
1208883|America/Los_Angeles
1208885|America/Los_Angeles
1208889|America/Boise&America/Los_Angeles
1208892|America/Boise&America/Los_Angeles
1208893|America/Boise&America/Los_Angeles
1208894|America/Boise&America/Los_Angeles
1208897|America/Boise&America/Los_Angeles
1208901|America/Denver
1208904|America/Denver
1208906|America/Denver
1208908|America/Denver
1208917|America/Denver
1208918|America/Denver
1208921|America/Denver
1208922|America/Denver
1208926|America/Los_Angeles
1208928|America/Denver
1208934|America/Denver
1208935|America/Los_Angeles
1208936|America/Denver
1208938|America/Denver
1208939|America/Denver
1208941|America/Denver
1208944|America/Denver
1208946|America/Los_Angeles
1208947|America/Denver
1208949|America/Denver
1208954|America/Denver
1208955|America/Denver
1208962|America/Los_Angeles
1208964|America/Los_Angeles
1208983|America/Los_Angeles
1208989|America/Denver
1208991|America/Denver
1208994|America/Denver
1208995|America/Denver
1208996|America/Denver
1219226|America/Chicago
1219227|America/Chicago
1219242|America/Chicago
1219261|America/Chicago
1219263|America/Chicago
1219285|America/Chicago
1219286|America/Chicago
1219299|America/Chicago
1219322|America/Chicago
1219324|America/Chicago
1219325|America/Chicago
1219326|America/Chicago
1219345|America/Chicago
1219362|America/Chicago
1219365|America/Chicago
1219369|America/Chicago
1219374|America/Chicago
1219392|America/Chicago
1219393|America/Chicago
1219395|America/Chicago
1219397|America/Chicago
1219398|America/Chicago
1219427|America/Chicago
1219440|America/Chicago
1219462|America/Chicago
1219464|America/Chicago
1219465|America/Chicago
1219472|America/Chicago
1219473|America/Chicago
1219474|America/Chicago
1219476|America/Chicago
1219477|America/Chicago
1219513|America/Chicago
1219531|America/Chicago
1219548|America/Chicago
1219558|America/Chicago
1219595|America/Chicago
1219659|America/Chicago
1219661|America/Chicago
1219662|America/Chicago
1219663|America/Chicago
1219690|America/Chicago
1219696|America/Chicago
1219707|America/Chicago
1219728|America/Chicago
1219733|America/Chicago
1219736|America/Chicago
1219738|America/Chicago
1219755|America/Chicago
1219756|America/Chicago
1219757|America/Chicago
1219759|America/Chicago
1219762|America/Chicago
1219763|America/Chicago
1219764|America/Chicago
1219766|America/Chicago
1219769|America/Chicago
1219778|America/Chicago
1219779|America/Chicago
1219785|America/Chicago
1219787|America/Chicago
1219791|America/Chicago
1219803|America/Chicago
1219836|America/Chicago
1219838|America/Chicago
1219844|America/Chicago
1219845|America/Chicago
1219852|America/Chicago
1219853|America/Chicago
1219864|America/Chicago
1219865|America/Chicago
1219866|America/Chicago
1219872|America/Chicago
1219873|America/Chicago
1219874|America/Chicago
1219878|America/Chicago
1219879|America/Chicago
1219956|America/Chicago
1219962|America/Chicago
1219963|America/Chicago
1219972|America/Chicago
1219977|America/Chicago
1219980|America/Chicago
1219983|America/Chicago
1219987|America/Chicago
1219989|America/Chicago
1219996|America/Chicago
1250242|America/Edmonton
1250261|America/Edmonton
1250262|America/Edmonton
1250263|America/Edmonton
1250341|America/Edmonton
1250342|America/Edmonton
1250344|America/Edmonton
1250347|America/Edmonton
1250417|America/Edmonton
1250423|America/Edmonton
1250425|America/Edmonton
1250426|America/Edmonton
1250427|America/Edmonton
1250428|America/Edmonton
1250489|America/Edmonton
1250719|America/Edmonton
1250774|America/Edmonton
1250782|America/Edmonton
1250784|America/Edmonton
1250785|America/Edmonton
1250787|America/Edmonton
1250788|America/Edmonton
1270202|America/Chicago
1270230|America/Chicago
1270236|America/Chicago
1270237|America/Chicago
1270240|America/Chicago
1270242|America/Chicago
1270247|America/Chicago
1270251|America/Chicago
1270259|America/Chicago
1270265|America/Chicago
1270273|America/Chicago
1270274|America/Chicago
1270282|America/Chicago
1270298|America/Chicago
1270333|America/Chicago
1270335|America/Chicago
1270338|America/Chicago
1270343|America/Chicago
1270354|America/Chicago
1270362|America/Chicago
1270365|America/Chicago
1270384|America/Chicago
1270388|America/Chicago
1270389|America/Chicago
1270393|America/Chicago
1270395|America/Chicago
1270415|America/Chicago
1270432|America/Chicago
1270439|America/Chicago
1270441|America/Chicago
1270442|America/Chicago
1270443|America/Chicago
1270444|America/Chicago
1270462|America/Chicago
1270472|America/Chicago
1270483|America/Chicago
1270487|America/Chicago
1270495|America/Chicago
1270522|America/Chicago
1270524|America/Chicago
1270526|America/Chicago
1270527|America/Chicago
1270528|America/Chicago
1270534|America/Chicago
1270535|America/Chicago
1270538|America/Chicago
1270542|America/Chicago
1270547|America/Chicago
1270554|America/Chicago
1270563|America/Chicago
1270575|America/Chicago
1270586|America/Chicago
1270597|America/Chicago
1270598|America/Chicago
1270618|America/Chicago
1270622|America/Chicago
1270628|America/Chicago
1270629|America/Chicago
1270639|America/Chicago
1270640|America/Chicago
1270646|America/Chicago
1270651|America/Chicago
1270653|America/Chicago
1270659|America/Chicago
1270665|America/Chicago
1270667|America/Chicago
1270678|America/Chicago
1270691|America/Chicago
1270707|America/Chicago
1270725|America/Chicago
1270726|America/Chicago
1270745|America/Chicago
1270746|America/Chicago
1270753|America/Chicago
1270754|America/Chicago
1270755|America/Chicago
1270756|America/Chicago
1270759|America/Chicago
1270761|America/Chicago
1270762|America/Chicago
1270767|America/Chicago
1270773|America/Chicago
1270780|America/Chicago
1270781|America/Chicago
1270782|America/Chicago
1270783|America/Chicago
1270786|America/Chicago
1270792|America/Chicago
1270793|America/Chicago
1270796|America/Chicago
1270797|America/Chicago
1270798|America/Chicago
1270821|America/Chicago
1270824|America/Chicago
1270825|America/Chicago
1270826|America/Chicago
1270827|America/Chicago
1270830|America/Chicago
1270831|America/Chicago
1270842|America/Chicago
1270843|America/Chicago
1270846|America/Chicago
1270852|America/Chicago
1270864|America/Chicago
1270866|America/Chicago
1270879|America/Chicago
1270881|America/Chicago
1270885|America/Chicago
1270886|America/Chicago
1270887|America/Chicago
1270889|America/Chicago
1270898|America/Chicago
1270901|America/Chicago
1270904|America/Chicago
1270924|America/Chicago
1270926|America/Chicago
1270927|America/Chicago
1270928|America/Chicago
1270929|America/Chicago
1270932|America/Chicago
1270965|America/Chicago
1270988|America/Chicago
1308235|America/Denver
1308254|America/Denver
1308262|America/Denver
1308282|America/Denver
1308284|America/Denver
1308327|America/Denver
1308352|America/Denver
1308394|America/Denver
1308423|America/Denver
1308432|America/Denver
1308436|America/Denver
1308546|America/Denver
1308623|America/Denver
1308630|America/Denver
1308632|America/Denver
1308633|America/Denver
1308635|America/Denver
1308665|America/Denver
1308762|America/Denver
1308772|America/Denver
1308874|America/Denver
1308882|America/Denver
1418937|America/Halifax
1418986|America/Halifax
1423202|America/New_York
1423209|America/New_York
1423217|America/New_York
1423218|America/New_York
1423224|America/New_York
1423245|America/New_York
1423246|America/New_York
1423247|America/New_York
1423253|America/New_York
1423254|America/New_York
1423257|America/New_York
1423262|America/New_York
1423263|America/New_York
1423265|America/New_York
1423266|America/New_York
1423267|America/New_York
1423272|America/New_York
1423278|America/New_York
1423279|America/New_York
1423282|America/New_York
1423283|America/New_York
1423286|America/New_York
1423288|America/New_York
1423296|America/New_York
1423305|America/New_York
1423307|America/New_York
1423317|America/New_York
1423318|America/New_York
1423323|America/New_York
1423328|America/New_York
1423343|America/New_York
1423344|America/New_York
1423345|America/New_York
1423346|America/New_York
1423349|America/New_York
1423357|America/New_York
1423365|America/New_York
1423378|America/New_York
1423391|America/New_York
1423392|America/New_York
1423396|America/New_York
1423402|America/New_York
1423421|America/New_York
1423422|America/New_York
1423424|America/New_York
1423425|America/New_York
1423431|America/New_York
1423434|America/New_York
1423439|America/New_York
1423442|America/New_York
1423443|America/New_York
1423451|America/New_York
1423453|America/New_York
1423467|America/New_York
1423468|America/New_York
1423485|America/New_York
1423487|America/New_York
1423503|America/New_York
1423507|America/New_York
1423508|America/New_York
1423510|America/New_York
1423521|America/New_York
1423525|America/New_York
1423531|America/New_York
1423538|America/New_York
1423542|America/New_York
1423543|America/New_York
1423547|America/New_York
1423553|America/New_York
1423559|America/New_York
1423562|America/New_York
1423566|America/New_York
1423569|America/New_York
1423570|America/New_York
1423573|America/New_York
1423578|America/New_York
1423581|America/New_York
1423585|America/New_York
1423586|America/New_York
1423587|America/New_York
1423595|America/New_York
1423602|America/New_York
1423610|America/New_York
1423613|America/New_York
1423614|America/New_York
1423631|America/New_York
1423634|America/New_York
1423636|America/New_York
1423638|America/New_York
1423639|America/New_York
1423643|America/New_York
1423648|America/New_York
1423652|America/New_York
1423663|America/New_York
1423664|America/New_York
1423667|America/New_York
1423697|America/New_York
1423698|America/New_York
1423702|America/New_York
1423708|America/New_York
1423710|America/New_York
1423722|America/New_York
1423725|America/New_York
1423727|America/New_York
1423728|America/New_York
1423733|America/New_York
1423735|America/New_York
1423743|America/New_York
1423744|America/New_York
1423745|America/New_York
1423746|America/New_York
1423752|America/New_York
1423753|America/New_York
1423756|America/New_York
1423757|America/New_York
1423760|America/New_York
1423764|America/New_York
1423765|America/New_York
1423768|America/New_York
1423772|America/New_York
1423775|America/New_York
1423778|America/New_York
1423784|America/New_York
1423787|America/New_York
1423788|America/New_York
1423790|America/New_York
1423794|America/New_York
1423798|America/New_York
1423800|America/New_York
1423802|America/New_York
1423803|America/New_York
1423805|America/New_York
1423821|America/New_York
1423822|America/New_York
1423825|America/New_York
1423826|America/New_York
1423839|America/New_York
1423842|America/New_York
1423843|America/New_York
1423844|America/New_York
1423847|America/New_York
1423854|America/New_York
1423855|America/New_York
1423857|America/New_York
1423867|America/New_York
1423869|America/New_York
1423870|America/New_York
1423875|America/New_York
1423876|America/New_York
1423877|America/New_York
1423878|America/New_York
1423884|America/New_York
1423886|America/New_York
1423892|America/New_York
1423893|America/New_York
1423894|America/New_York
1423899|America/New_York
1423907|America/New_York
1423913|America/New_York
1423915|America/New_York
1423921|America/New_York
1423926|America/New_York
1423928|America/New_York
1423929|America/New_York
1423933|America/New_York
1423952|America/New_York
1423954|America/New_York
1423968|America/New_York
1423975|America/New_York
1423979|America/New_York
1423989|America/New_York
1541372|America/Denver
1541473|America/Denver
1541881|America/Denver
1541889|America/Denver
1574772|America/Chicago
1574896|America/Chicago
1605201|America/Chicago
1605209|America/Denver
1605217|America/Chicago
1605221|America/Chicago
1605223|America/Denver
1605224|America/Chicago
1605225|America/Chicago
1605226|America/Chicago
1605229|America/Chicago
1605232|America/Chicago
1605234|America/Chicago
1605255|America/Denver
1605256|America/Chicago
1605260|America/Chicago
1605261|America/Chicago
1605262|America/Chicago
1605271|America/Chicago
1605274|America/Chicago
1605275|America/Chicago
1605279|America/Denver
1605284|America/Chicago
1605297|America/Chicago
1605310|America/Chicago
1605312|America/Chicago
1605321|America/Chicago
1605322|America/Chicago
1605323|America/Chicago
1605328|America/Chicago
1605341|America/Denver
1605342|America/Denver
1605343|America/Denver
1605345|America/Chicago
1605347|America/Denver
1605348|America/Denver
1605355|America/Denver
1605370|America/Chicago
1605371|America/Chicago
1605373|America/Chicago
1605374|America/Denver
1605376|America/Chicago
1605381|America/Denver
1605384|America/Chicago
1605387|America/Chicago
1605388|America/Denver
1605390|America/Denver
1605391|America/Denver
1605393|America/Denver
1605394|America/Denver
1605397|America/Chicago
1605399|America/Denver
1605415|America/Denver
1605425|America/Chicago
1605426|America/Chicago
1605428|America/Chicago
1605430|America/Denver
1605431|America/Denver
1605432|America/Chicago
1605448|America/Chicago
1605455|America/Denver
1605472|America/Chicago
1605484|America/Denver
1605487|America/Chicago
1605498|America/Chicago
1605528|America/Chicago
1605532|America/Chicago
1605539|America/Chicago
1605543|America/Chicago
1605553|America/Chicago
1605574|America/Denver
1605578|America/Denver
1605582|America/Chicago
1605584|America/Denver
1605589|America/Chicago
1605593|America/Denver
1605594|America/Chicago
1605598|America/Chicago
1605610|America/Chicago
1605622|America/Chicago
1605624|America/Chicago
1605626|America/Chicago
1605627|America/Chicago
1605641|America/Denver
1605642|America/Denver
1605644|America/Denver
1605647|America/Chicago
1605649|America/Chicago
1605665|America/Chicago
1605666|America/Denver
1605668|America/Chicago
1605669|America/Chicago
1605673|America/Denver
1605677|America/Chicago
1605685|America/Denver
1605716|America/Denver
1605717|America/Denver
1605718|America/Denver
1605719|America/Denver
1605720|America/Denver
1605721|America/Denver
1605722|America/Denver
1605723|America/Denver
1605724|America/Chicago
1605725|America/Chicago
1605728|America/Chicago
1605734|America/Chicago
1605743|America/Chicago
1605745|America/Denver
1605747|America/Chicago
1605753|America/Chicago
1605755|America/Denver
1605759|America/Chicago
1605763|America/Chicago
1605765|America/Chicago
1605772|America/Chicago
1605773|America/Chicago
1605775|America/Chicago
1605778|America/Chicago
1605787|America/Denver
1605791|America/Denver
1605796|America/Chicago
1605823|America/Denver
1605835|America/Chicago
1605837|America/Denver
1605842|America/Chicago
1605845|America/Chicago
1605852|America/Chicago
1605853|America/Chicago
1605854|America/Chicago
1605856|America/Chicago
1605859|America/Denver
1605867|America/Denver
1605874|America/Chicago
1605878|America/Chicago
1605881|America/Chicago
1605882|America/Chicago
1605886|America/Chicago
1605892|America/Denver
1605923|America/Denver
1605925|America/Chicago
1605928|America/Chicago
1605929|America/Chicago
1605940|America/Chicago
1605941|America/Chicago
1605945|America/Chicago
1605946|America/Chicago
1605951|America/Chicago
1605964|America/Denver
1605977|America/Chicago
1605983|America/Chicago
1605987|America/Chicago
1605988|America/Chicago
1605990|America/Chicago
1605995|America/Chicago
1605996|America/Chicago
1605997|America/Chicago
1606387|America/Chicago
1620376|America/Denver
1620384|America/Denver
1701200|America/Chicago
1701205|America/Chicago
1701212|America/Chicago
1701214|America/Chicago
1701225|America/Denver
1701227|America/Denver
1701241|America/Chicago
1701242|America/Chicago
1701261|America/Chicago
1701265|America/Chicago
1701271|America/Chicago
1701277|America/Chicago
1701280|America/Chicago
1701281|America/Chicago
1701282|America/Chicago
1701284|America/Chicago
1701288|America/Chicago
1701290|America/Denver
1701293|America/Chicago
1701297|America/Chicago
1701298|America/Chicago
1701306|America/Chicago
1701323|America/Chicago
1701324|America/Chicago
1701328|America/Chicago
1701343|America/Chicago
1701347|America/Chicago
1701349|America/Chicago
1701352|America/Chicago
1701355|America/Chicago
1701356|America/Chicago
1701361|America/Chicago
1701364|America/Chicago
1701365|America/Chicago
1701367|America/Chicago
1701371|America/Chicago
1701373|America/Chicago
1701385|America/Chicago
1701388|America/Chicago
1701390|America/Chicago
1701391|America/Chicago
1701400|America/Chicago
1701425|America/Chicago
1701426|America/Chicago
1701428|America/Chicago
1701437|America/Chicago
1701444|America/Chicago
1701446|America/Chicago
1701448|America/Chicago
1701452|America/Chicago
1701454|America/Chicago
1701456|America/Denver
1701462|America/Chicago
1701463|America/Chicago
1701471|America/Chicago
1701476|America/Chicago
1701477|America/Chicago
1701478|America/Chicago
1701483|America/Denver
1701492|America/Chicago
1701499|America/Chicago
1701523|America/Denver
1701527|America/Chicago
1701530|America/Chicago
1701532|America/Chicago
1701540|America/Chicago
1701549|America/Chicago
1701566|America/Chicago
1701567|America/Denver
1701572|America/Chicago
1701575|America/Denver
1701577|America/Chicago
1701584|America/Denver
1701595|America/Chicago
1701609|America/Chicago
1701623|America/Denver
1701627|America/Chicago
1701628|America/Chicago
1701636|America/Chicago
1701642|America/Chicago
1701652|America/Chicago
1701662|America/Chicago
1701663|America/Chicago
1701664|America/Chicago
1701667|America/Chicago
1701683|America/Chicago
1701724|America/Chicago
1701730|America/Chicago
1701738|America/Chicago
1701739|America/Chicago
1701742|America/Chicago
1701746|America/Chicago
1701748|America/Chicago
1701751|America/Chicago
1701754|America/Chicago
1701756|America/Chicago
1701757|America/Chicago
1701764|America/Denver
1701766|America/Chicago
1701772|America/Chicago
1701774|America/Chicago
1701775|America/Chicago
1701776|America/Chicago
1701777|America/Chicago
1701780|America/Chicago
1701786|America/Chicago
1701787|America/Chicago
1701788|America/Chicago
1701793|America/Chicago
1701795|America/Chicago
1701797|America/Chicago
1701799|America/Chicago
1701824|America/Denver
1701833|America/Chicago
1701837|America/Chicago
1701838|America/Chicago
1701839|America/Chicago
1701842|America/Chicago
1701843|America/Chicago
1701845|America/Chicago
1701852|America/Chicago
1701854|America/Chicago
1701857|America/Chicago
1701858|America/Chicago
1701866|America/Chicago
1701872|America/Denver
1701873|America/Chicago
1701883|America/Chicago
1701893|America/Chicago
1701947|America/Chicago
1701952|America/Chicago
1701965|America/Chicago
1701968|America/Chicago
1709227|America/St_Johns
1709229|America/St_Johns
1709237|America/St_Johns
1709256|America/St_Johns
1709257|America/St_Johns
1709279|America/St_Johns
1709282|America/Halifax
1709364|America/St_Johns
1709368|America/St_Johns
1709437|America/St_Johns
1709454|America/St_Johns
1709458|America/St_Johns
1709466|America/St_Johns
1709468|America/St_Johns
1709489|America/St_Johns
1709533|America/St_Johns
1709535|America/St_Johns
1709576|America/St_Johns
1709579|America/St_Johns
1709596|America/St_Johns
1709634|America/St_Johns
1709635|America/St_Johns
1709637|America/St_Johns
1709639|America/St_Johns
1709643|America/St_Johns
1709651|America/St_Johns
1709673|America/St_Johns
1709682|America/St_Johns
1709685|America/St_Johns
1709687|America/St_Johns
1709695|America/St_Johns
1709722|America/St_Johns
1709726|America/St_Johns
1709729|America/St_Johns
1709738|America/St_Johns
1709739|America/St_Johns
1709745|America/St_Johns
1709747|America/St_Johns
1709753|America/St_Johns
1709754|America/St_Johns
1709757|America/St_Johns
1709758|America/St_Johns
1709759|America/St_Johns
1709782|America/St_Johns
1709786|America/St_Johns
1709832|America/St_Johns
1709834|America/St_Johns
1709884|America/St_Johns
1709895|America/St_Johns
1709896|America/Halifax
1709944|America/Halifax
1775200|America/Los_Angeles
1775230|America/Los_Angeles
1775232|America/Los_Angeles
1775233|America/Los_Angeles
1775237|America/Los_Angeles
1775240|America/Los_Angeles
1775246|America/Los_Angeles
1775250|America/Los_Angeles
1775265|America/Los_Angeles
1775267|America/Los_Angeles
1775273|America/Los_Angeles
1775284|America/Los_Angeles
1775287|America/Los_Angeles
1775289|America/Los_Angeles
1775298|America/Los_Angeles
1775313|America/Los_Angeles
1775345|America/Los_Angeles
1775348|America/Los_Angeles
1775360|America/Los_Angeles
1775376|America/Los_Angeles
1775384|America/Los_Angeles
1775391|America/Los_Angeles
1775392|America/Los_Angeles
1775423|America/Los_Angeles
1775424|America/Los_Angeles
1775425|America/Los_Angeles
1775428|America/Los_Angeles
1775432|America/Los_Angeles
1775445|America/Los_Angeles
1775450|America/Los_Angeles
1775453|America/Los_Angeles
1775461|America/Los_Angeles
1775463|America/Los_Angeles
1775470|America/Los_Angeles
1775473|America/Los_Angeles
1775482|America/Los_Angeles
1775525|America/Los_Angeles
1775537|America/Los_Angeles
1775544|America/Los_Angeles
1775575|America/Los_Angeles
1775577|America/Los_Angeles
1775586|America/Los_Angeles
1775588|America/Los_Angeles
1775622|America/Los_Angeles
1775623|America/Los_Angeles
1775624|America/Los_Angeles
1775625|America/Los_Angeles
1775626|America/Los_Angeles
1775635|America/Los_Angeles
1775636|America/Los_Angeles
1775657|America/Los_Angeles
1775664|America/Denver
1775673|America/Los_Angeles
1775674|America/Los_Angeles
1775677|America/Los_Angeles
1775684|America/Los_Angeles
1775686|America/Los_Angeles
1775687|America/Los_Angeles
1775688|America/Los_Angeles
1775689|America/Los_Angeles
1775720|America/Los_Angeles
1775721|America/Los_Angeles
1775722|America/Los_Angeles
1775726|America/Los_Angeles
1775727|America/Los_Angeles
1775737|America/Los_Angeles
1775738|America/Los_Angeles
1775742|America/Los_Angeles
1775746|America/Los_Angeles
1775747|America/Los_Angeles
1775750|America/Los_Angeles
1775751|America/Los_Angeles
1775752|America/Los_Angeles
1775753|America/Los_Angeles
1775762|America/Los_Angeles
1775770|America/Los_Angeles
1775771|America/Los_Angeles
1775772|America/Los_Angeles
1775777|America/Los_Angeles
1775778|America/Los_Angeles
1775782|America/Los_Angeles
1775783|America/Los_Angeles
1775784|America/Los_Angeles
1775786|America/Los_Angeles
1775787|America/Los_Angeles
1775800|America/Los_Angeles
1775830|America/Los_Angeles
1775831|America/Los_Angeles
1775832|America/Los_Angeles
1775833|America/Los_Angeles
1775835|America/Los_Angeles
1775841|America/Los_Angeles
1775843|America/Los_Angeles
1775847|America/Los_Angeles
1775849|America/Los_Angeles
1775867|America/Los_Angeles
1775870|America/Los_Angeles
1775945|America/Los_Angeles
1775971|America/Los_Angeles
1775972|America/Los_Angeles
1775982|America/Los_Angeles
1785852|America/Denver
1785890|America/Denver
1785899|America/Denver
1807223|America/Winnipeg
1807274|America/Winnipeg
1807467|America/Winnipeg
1807468|America/Winnipeg
1807482|America/Winnipeg
1807548|America/Winnipeg
1807727|America/Winnipeg
1807737|America/Winnipeg
1807934|America/Winnipeg
1812385|America/Chicago
1812386|America/Chicago
1812401|America/Chicago
1812402|America/Chicago
1812435|America/Chicago
1812437|America/Chicago
1812450|America/Chicago
1812464|America/Chicago
1812485|America/Chicago
1812490|America/Chicago
1812491|America/Chicago
1812547|America/Chicago
1812618|America/Chicago
1812649|America/Chicago
1812682|America/Chicago
1812749|America/Chicago
1812753|America/Chicago
1812768|America/Chicago
1812838|America/Chicago
1812842|America/Chicago
1812853|America/Chicago
1812858|America/Chicago
1812867|America/Chicago
1812874|America/Chicago
1812897|America/Chicago
1812925|America/Chicago
1812937|America/Chicago
1812962|America/Chicago
1812963|America/Chicago
1812985|America/Chicago
1850200|America/Chicago
1850206|America/Chicago
1850208|America/Chicago
1850213|America/Chicago
1850215|America/Chicago
1850217|America/Chicago
1850218|America/Chicago
1850221|America/Chicago
1850225|America/Chicago
1850226|America/Chicago
1850227|America/Chicago
1850229|America/Chicago
1850240|America/Chicago
1850243|America/Chicago
1850244|America/Chicago
1850248|America/Chicago
1850249|America/Chicago
1850250|America/Chicago
1850256|America/Chicago
1850258|America/Chicago
1850259|America/Chicago
1850261|America/Chicago
1850263|America/Chicago
1850265|America/Chicago
1850267|America/Chicago
1850269|America/Chicago
1850271|America/Chicago
1850276|America/Chicago
1850279|America/Chicago
1850291|America/Chicago
1850292|America/Chicago
1850301|America/Chicago
1850306|America/Chicago
1850314|America/Chicago
1850315|America/Chicago
1850319|America/Chicago
1850324|America/Chicago
1850327|America/Chicago
1850332|America/Chicago
1850341|America/Chicago
1850361|America/Chicago
1850362|America/Chicago
1850368|America/Chicago
1850376|America/Chicago
1850377|America/Chicago
1850380|America/Chicago
1850384|America/Chicago
1850387|America/Chicago
1850393|America/Chicago
1850396|America/Chicago
1850398|America/Chicago
1850416|America/Chicago
1850417|America/Chicago
1850420|America/Chicago
1850423|America/Chicago
1850424|America/Chicago
1850429|America/Chicago
1850444|America/Chicago
1850460|America/Chicago
1850462|America/Chicago
1850466|America/Chicago
1850469|America/Chicago
1850481|America/Chicago
1850482|America/Chicago
1850484|America/Chicago
1850492|America/Chicago
1850494|America/Chicago
1850496|America/Chicago
1850497|America/Chicago
1850499|America/Chicago
1850501|America/Chicago
1850502|America/Chicago
1850505|America/Chicago
1850516|America/Chicago
1850522|America/Chicago
1850525|America/Chicago
1850526|America/Chicago
1850527|America/Chicago
1850529|America/Chicago
1850535|America/Chicago
1850537|America/Chicago
1850543|America/Chicago
1850547|America/Chicago
1850572|America/Chicago
1850581|America/Chicago
1850585|America/Chicago
1850586|America/Chicago
1850587|America/Chicago
1850588|America/Chicago
1850592|America/Chicago
1850593|America/Chicago
1850595|America/Chicago
1850596|America/Chicago
1850607|America/Chicago
1850622|America/Chicago
1850623|America/Chicago
1850624|America/Chicago
1850626|America/Chicago
1850637|America/Chicago
1850638|America/Chicago
1850639|America/Chicago
1850640|America/Chicago
1850650|America/Chicago
1850651|America/Chicago
1850654|America/Chicago
1850659|America/Chicago
1850664|America/Chicago
1850674|America/Chicago
1850675|America/Chicago
1850677|America/Chicago
1850678|America/Chicago
1850696|America/Chicago
1850699|America/Chicago
1850708|America/Chicago
1850712|America/Chicago
1850722|America/Chicago
1850723|America/Chicago
1850729|America/Chicago
1850733|America/Chicago
1850747|America/Chicago
1850748|America/Chicago
1850763|America/Chicago
1850769|America/Chicago
1850784|America/Chicago
1850785|America/Chicago
1850791|America/Chicago
1850796|America/Chicago
1850797|America/Chicago
1850814|America/Chicago
1850819|America/Chicago
1850830|America/Chicago
1850832|America/Chicago
1850833|America/Chicago
1850835|America/Chicago
1850837|America/Chicago
1850855|America/Chicago
1850857|America/Chicago
1850871|America/Chicago
1850872|America/Chicago
1850874|America/Chicago
1850883|America/Chicago
1850890|America/Chicago
1850892|America/Chicago
1850897|America/Chicago
1850898|America/Chicago
1850912|America/Chicago
1850913|America/Chicago
1850914|America/Chicago
1850916|America/Chicago
1850932|America/Chicago
1850934|America/Chicago
1850936|America/Chicago
1850937|America/Chicago
1850939|America/Chicago
1850941|America/Chicago
1850944|America/Chicago
1850951|America/Chicago
1850968|America/Chicago
1850969|America/Chicago
1850972|America/Chicago
1850974|America/Chicago
1850981|America/Chicago
1850982|America/Chicago
1850983|America/Chicago
1850994|America/Chicago
1850995|America/Chicago
1867334|America/Vancouver
1867393|America/Vancouver
1867456|America/Vancouver
1867536|America/Vancouver
1867587|America/Edmonton
1867633|America/Vancouver
1867645|America/Winnipeg
1867667|America/Vancouver
1867668|America/Vancouver
1867669|America/Edmonton
1867695|America/Edmonton
1867777|America/Edmonton
1867872|America/Edmonton
1867873|America/Edmonton
1867874|America/Edmonton
1867920|America/Edmonton
1867979|America/Toronto
1867983|America/Edmonton
1867993|America/Vancouver
1906265|America/Chicago
1906563|America/Chicago
1906663|America/Chicago
1906753|America/Chicago
1906774|America/Chicago
1906776|America/Chicago
1906779|America/Chicago
1906828|America/Chicago
1906863|America/Chicago
1906864|America/Chicago
1906875|America/Chicago
1906932|America/Chicago
1907209|America/Juneau
1907212|America/Juneau
1907230|America/Juneau
1907232|America/Juneau
1907235|America/Juneau
1907250|America/Juneau
1907252|America/Juneau
1907257|America/Juneau
1907258|America/Juneau
1907260|America/Juneau
1907262|America/Juneau
1907264|America/Juneau
1907269|America/Juneau
1907283|America/Juneau
1907299|America/Juneau
1907301|America/Juneau
1907306|America/Juneau
1907317|America/Juneau
1907343|America/Juneau
1907344|America/Juneau
1907345|America/Juneau
1907346|America/Juneau
1907349|America/Juneau
1907350|America/Juneau
1907351|America/Juneau
1907352|America/Juneau
1907357|America/Juneau
1907360|America/Juneau
1907373|America/Juneau
1907374|America/Juneau
1907375|America/Juneau
1907376|America/Juneau
1907378|America/Juneau
1907388|America/Juneau
1907424|America/Juneau
1907442|America/Juneau
1907443|America/Juneau
1907463|America/Juneau
1907465|America/Juneau
1907474|America/Juneau
1907479|America/Juneau
1907486|America/Juneau
1907487|America/Juneau
1907488|America/Juneau
1907490|America/Juneau
1907495|America/Juneau
1907522|America/Juneau
1907523|America/Juneau
1907543|America/Juneau
1907561|America/Juneau
1907562|America/Juneau
1907563|America/Juneau
1907567|America/Juneau
1907569|America/Juneau
1907580|America/Juneau
1907581|Pacific/Honolulu
1907586|America/Juneau
1907622|America/Juneau
1907631|America/Juneau
1907644|America/Juneau
1907646|America/Juneau
1907677|America/Juneau
1907683|America/Juneau
1907688|America/Juneau
1907694|America/Juneau
1907696|America/Juneau
1907714|America/Juneau
1907723|America/Juneau
1907727|America/Juneau
1907729|America/Juneau
1907733|America/Juneau
1907742|America/Juneau
1907743|America/Juneau
1907745|America/Juneau
1907746|America/Juneau
1907747|America/Juneau
1907766|America/Juneau
1907770|America/Juneau
1907772|America/Juneau
1907776|America/Juneau
1907780|America/Juneau
1907783|America/Juneau
1907786|America/Juneau
1907789|America/Juneau
1907790|America/Juneau
1907822|America/Juneau
1907826|America/Juneau
1907830|America/Juneau
1907835|America/Juneau
1907841|America/Juneau
1907842|America/Juneau
1907852|America/Juneau
1907868|America/Juneau
1907874|America/Juneau
1907883|America/Juneau
1907892|America/Juneau
1907895|America/Juneau
1907929|America/Juneau
1907966|America/Juneau
1907983|America/Juneau
3906698|Europe/Vatican
5581300|America/Noronha
5581306|America/Noronha
5581323|America/Noronha
5581327|America/Noronha
5581328|America/Noronha
5581329|America/Noronha
5581333|America/Noronha
5581335|America/Noronha
5581336|America/Noronha
5581338|America/Noronha
5581339|America/Noronha
5581340|America/Noronha
5581360|America/Noronha
5581361|America/Noronha
5581366|America/Noronha
5591301|America/Sao_Paulo
5591308|America/Sao_Paulo
5591311|America/Sao_Paulo
5591334|America/Sao_Paulo
5591344|America/Sao_Paulo
5591346|America/Sao_Paulo
5591372|America/Sao_Paulo
5591373|America/Sao_Paulo
5591375|America/Sao_Paulo
5591377|America/Sao_Paulo
5591400|America/Sao_Paulo
5591991|America/Sao_Paulo
5591992|America/Sao_Paulo
5591993|America/Sao_Paulo
5591998|America/Sao_Paulo
5591999|America/Sao_Paulo
5593352|America/Sao_Paulo
5593353|America/Sao_Paulo
5593354|America/Sao_Paulo
5593991|America/Sao_Paulo
5594332|America/Sao_Paulo
5594334|America/Sao_Paulo
5594335|America/Sao_Paulo
5594342|America/Sao_Paulo
5594981|America/Sao_Paulo
5594991|America/Sao_Paulo
5594992|America/Sao_Paulo
6172101|Australia/Brisbane
6172102|Australia/Brisbane
6172103|Australia/Brisbane
6172104|Australia/Brisbane
6173018|Australia/Brisbane
6173019|Australia/Brisbane
6173040|Australia/Brisbane
6173041|Australia/Brisbane
6173046|Australia/Brisbane
6173061|Australia/Brisbane
6173066|Australia/Brisbane
6173067|Australia/Brisbane
6173068|Australia/Brisbane
6173069|Australia/Brisbane
6173096|Australia/Brisbane
6173097|Australia/Brisbane
6173291|Australia/Brisbane
6173292|Australia/Brisbane
6173295|Australia/Brisbane
6173296|Australia/Brisbane
6173300|Australia/Brisbane
6173316|Australia/Brisbane
6173319|Australia/Brisbane
6173322|Australia/Brisbane
6173330|Australia/Brisbane
6173333|Australia/Brisbane
6173342|Australia/Brisbane
6173403|Australia/Brisbane
6173404|Australia/Brisbane
6173405|Australia/Brisbane
6173406|Australia/Brisbane
6173407|Australia/Brisbane
6173411|Australia/Brisbane
6173414|Australia/Brisbane
6173434|Australia/Brisbane
6173435|Australia/Brisbane
6173443|Australia/Brisbane
6173452|Australia/Brisbane
6173455|Australia/Brisbane
6173456|Australia/Brisbane
6173457|Australia/Brisbane
6173460|Australia/Brisbane
6173493|Australia/Brisbane
6173540|Australia/Brisbane
6173546|Australia/Brisbane
6173547|Australia/Brisbane
6173548|Australia/Brisbane
6173613|Australia/Brisbane
6173646|Australia/Brisbane
6173647|Australia/Brisbane
6173648|Australia/Brisbane
6173666|Australia/Brisbane
6173748|Australia/Brisbane
6173777|Australia/Brisbane
6173811|Australia/Brisbane
6173815|Australia/Brisbane
6173823|Australia/Brisbane
6173828|Australia/Brisbane
6173887|Australia/Brisbane
6173900|Australia/Brisbane
6173901|Australia/Brisbane
6173904|Australia/Brisbane
6173905|Australia/Brisbane
6173910|Australia/Brisbane
6173914|Australia/Brisbane
6173915|Australia/Brisbane
6173917|Australia/Brisbane
6173918|Australia/Brisbane
6173922|Australia/Brisbane
6173924|Australia/Brisbane
6173999|Australia/Brisbane
6185109|Australia/Perth
6185112|Australia/Adelaide&Australia/Perth
6185113|Australia/Adelaide&Australia/Perth
6185120|Australia/Perth
6185121|Australia/Adelaide&Australia/Perth
6185124|Australia/Sydney
6185125|Australia/Sydney
6185126|Australia/Sydney
6185127|Australia/Adelaide&Australia/Perth
6185128|Australia/Adelaide&Australia/Perth
6185129|Australia/Adelaide&Australia/Perth
6189162|Indian/Cocos
6189164|Indian/Christmas
9761362|Asia/Choibalsan&Asia/Ulaanbaatar
9762362|Asia/Choibalsan&Asia/Ulaanbaatar
55553682|America/Manaus
55673480|America/Sao_Paulo
55693527|America/Sao_Paulo
55813013|America/Noronha
55813016|America/Noronha
55813017|America/Noronha
55813018|America/Noronha
55813022|America/Noronha
55813024|America/Noronha
55813027|America/Noronha
55813029|America/Noronha
55813042|America/Noronha
55813043|America/Noronha
55813044|America/Noronha
55813047|America/Noronha
55813054|America/Noronha
55813056|America/Noronha
55813057|America/Noronha
55813058|America/Noronha
55813070|America/Noronha
55813085|America/Noronha
55813098|America/Noronha
55813200|America/Noronha
55813206|America/Noronha
55813208|America/Noronha
55813209|America/Noronha
55813210|America/Noronha
55813211|America/Noronha
55813215|America/Noronha
55813218|America/Noronha
55813219|America/Noronha
55813220|America/Noronha
55813240|America/Noronha
55813245|America/Noronha
55813246|America/Noronha
55813247|America/Noronha
55813248|America/Noronha
55813250|America/Noronha
55813258|America/Noronha
55813259|America/Noronha
55813260|America/Noronha
55813261|America/Noronha
55813262|America/Noronha
55813263|America/Noronha
55813300|America/Noronha
55813306|America/Noronha
55813307|America/Noronha
55813308|America/Noronha
55813309|America/Noronha
55813310|America/Noronha
55813313|America/Noronha
55813315|America/Noronha
55813321|America/Noronha
55813324|America/Noronha
55813329|America/Noronha
55813340|America/Noronha
55813346|America/Noronha
55813347|America/Noronha
55813348|America/Noronha
55813349|America/Noronha
55813370|America/Noronha
55813373|America/Noronha
55813374|America/Noronha
55813410|America/Noronha
55813415|America/Noronha
55813417|America/Noronha
55813418|America/Noronha
55813420|America/Noronha
55813430|America/Noronha
55813440|America/Noronha
55813450|America/Noronha
55813460|America/Noronha
55813470|America/Noronha
55813480|America/Noronha
55813485|America/Noronha
55813488|America/Noronha
55813489|America/Noronha
55813490|America/Noronha
55813496|America/Noronha
55813620|America/Noronha
55813623|America/Noronha
55813630|America/Noronha
55813632|America/Noronha
55813640|America/Noronha
55813650|America/Noronha
55813659|America/Noronha
55813670|America/Noronha
55813672|America/Noronha
55813674|America/Noronha
55813677|America/Noronha
55813680|America/Noronha
55813690|America/Noronha
55813696|America/Noronha
55813697|America/Noronha
55813698|America/Noronha
55912121|America/Sao_Paulo
55912122|America/Sao_Paulo
55912123|America/Sao_Paulo
55912992|America/Sao_Paulo
55913004|America/Sao_Paulo
55913028|America/Sao_Paulo
55913031|America/Sao_Paulo
55913032|America/Sao_Paulo
55913033|America/Sao_Paulo
55913038|America/Sao_Paulo
55913039|America/Sao_Paulo
55913072|America/Sao_Paulo
55913073|America/Sao_Paulo
55913075|America/Sao_Paulo
55913120|America/Sao_Paulo
55913121|America/Sao_Paulo
55913131|America/Sao_Paulo
55913181|America/Sao_Paulo
55913182|America/Sao_Paulo
55913184|America/Sao_Paulo
55913194|America/Sao_Paulo
55913199|America/Sao_Paulo
55913311|America/Sao_Paulo
55913321|America/Sao_Paulo
55913322|America/Sao_Paulo
55913323|America/Sao_Paulo
55913351|America/Sao_Paulo
55913352|America/Sao_Paulo
55913353|America/Sao_Paulo
55913355|America/Sao_Paulo
55913366|America/Sao_Paulo
55913397|America/Sao_Paulo
55913411|America/Sao_Paulo
55913412|America/Sao_Paulo
55913423|America/Sao_Paulo
55913425|America/Sao_Paulo
55913429|America/Sao_Paulo
55913434|America/Sao_Paulo
55913456|America/Sao_Paulo
55913481|America/Sao_Paulo
55913482|America/Sao_Paulo
55913483|America/Sao_Paulo
55913484|America/Sao_Paulo
55913485|America/Sao_Paulo
55913494|America/Sao_Paulo
55913521|America/Sao_Paulo
55913556|America/Sao_Paulo
55913605|America/Sao_Paulo
55913606|America/Sao_Paulo
55913617|America/Sao_Paulo
55913621|America/Sao_Paulo
55913633|America/Sao_Paulo
55913636|America/Sao_Paulo
55913637|America/Sao_Paulo
55913658|America/Sao_Paulo
55913661|America/Sao_Paulo
55913662|America/Sao_Paulo
55913665|America/Sao_Paulo
55913692|America/Sao_Paulo
55913694|America/Sao_Paulo
55913711|America/Sao_Paulo
55913712|America/Sao_Paulo
55913741|America/Sao_Paulo
55913744|America/Sao_Paulo
55913746|America/Sao_Paulo
55913764|America/Sao_Paulo
55913765|America/Sao_Paulo
55913767|America/Sao_Paulo
55913781|America/Sao_Paulo
55913783|America/Sao_Paulo
55913784|America/Sao_Paulo
55913795|America/Sao_Paulo
55913796|America/Sao_Paulo
55913798|America/Sao_Paulo
55913802|America/Sao_Paulo
55913803|America/Sao_Paulo
55913809|America/Sao_Paulo
55913811|America/Sao_Paulo
55913812|America/Sao_Paulo
55913817|America/Sao_Paulo
55913821|America/Sao_Paulo
55913822|America/Sao_Paulo
55913823|America/Sao_Paulo
55913829|America/Sao_Paulo
55914040|America/Sao_Paulo
55914042|America/Sao_Paulo
55914103|America/Sao_Paulo
55914104|America/Sao_Paulo
55914107|America/Sao_Paulo
55914141|America/Sao_Paulo
55919960|America/Sao_Paulo
55919961|America/Sao_Paulo
55919962|America/Sao_Paulo
55919963|America/Sao_Paulo
55919964|America/Sao_Paulo
55925009|America/Sao_Paulo
55932101|America/Sao_Paulo
55932122|America/Sao_Paulo
55933016|America/Sao_Paulo
55933017|America/Sao_Paulo
55933062|America/Sao_Paulo
55933063|America/Sao_Paulo
55933064|America/Sao_Paulo
55933067|America/Sao_Paulo
55933222|America/Sao_Paulo
55933502|America/Sao_Paulo
55933505|America/Sao_Paulo
55933512|America/Sao_Paulo
55933514|America/Sao_Paulo
55933515|America/Sao_Paulo
55933517|America/Sao_Paulo
55933518|America/Sao_Paulo
55933552|America/Sao_Paulo
55933557|America/Sao_Paulo
55933558|America/Sao_Paulo
55933559|America/Sao_Paulo
55933563|America/Sao_Paulo
55933574|America/Sao_Paulo
55933582|America/Sao_Paulo
55933589|America/Sao_Paulo
55933593|America/Sao_Paulo
55933596|America/Sao_Paulo
55933597|America/Sao_Paulo
55933598|America/Sao_Paulo
55933735|America/Sao_Paulo
55933736|America/Sao_Paulo
55933737|America/Sao_Paulo
55933793|America/Sao_Paulo
55939810|America/Sao_Paulo
55939811|America/Sao_Paulo
55939812|America/Sao_Paulo
55939813|America/Sao_Paulo
55939840|America/Sao_Paulo
55939841|America/Sao_Paulo
55939880|America/Sao_Paulo
55939881|America/Sao_Paulo
55939920|America/Sao_Paulo
55939921|America/Sao_Paulo
55939922|America/Sao_Paulo
55939923|America/Sao_Paulo
55939924|America/Sao_Paulo
55939965|America/Sao_Paulo
55939990|America/Sao_Paulo
55939991|America/Sao_Paulo
55939995|America/Sao_Paulo
55939997|America/Sao_Paulo
55942101|America/Sao_Paulo
55942103|America/Sao_Paulo
55943012|America/Sao_Paulo
55943013|America/Sao_Paulo
55943016|America/Sao_Paulo
55943018|America/Sao_Paulo
55943222|America/Sao_Paulo
55943301|America/Sao_Paulo
55943309|America/Sao_Paulo
55943311|America/Sao_Paulo
55943312|America/Sao_Paulo
55943315|America/Sao_Paulo
55943319|America/Sao_Paulo
55943331|America/Sao_Paulo
55943332|America/Sao_Paulo
55943333|America/Sao_Paulo
55943335|America/Sao_Paulo
55943337|America/Sao_Paulo
55943364|America/Sao_Paulo
55943365|America/Sao_Paulo
55943366|America/Sao_Paulo
55943379|America/Sao_Paulo
55943382|America/Sao_Paulo
55943385|America/Sao_Paulo
55943386|America/Sao_Paulo
55943392|America/Sao_Paulo
55943431|America/Sao_Paulo
55943432|America/Sao_Paulo
55943433|America/Sao_Paulo
55943434|America/Sao_Paulo
55943435|America/Sao_Paulo
55943491|America/Sao_Paulo
55943778|America/Sao_Paulo
55943779|America/Sao_Paulo
55943785|America/Sao_Paulo
55943786|America/Sao_Paulo
55943787|America/Sao_Paulo
55949840|America/Sao_Paulo
55949841|America/Sao_Paulo
55949842|America/Sao_Paulo
55949880|America/Sao_Paulo
55949881|America/Sao_Paulo
55949930|America/Sao_Paulo
55949966|America/Sao_Paulo
55949990|America/Sao_Paulo
55949991|America/Sao_Paulo
55949992|America/Sao_Paulo
55949995|America/Sao_Paulo
55949997|America/Sao_Paulo
61255007|Australia/Lord_Howe
61255053|Australia/Lord_Howe
61255143|Australia/Lord_Howe
61255213|Australia/Lord_Howe
61255280|Australia/Lord_Howe
61255307|Australia/Lord_Howe
61255369|Australia/Lord_Howe
61255413|Australia/Lord_Howe
61255568|Australia/Lord_Howe
61255936|Australia/Lord_Howe
61255937|Australia/Lord_Howe
61265080|Australia/Lord_Howe
61265081|Australia/Lord_Howe
61265082|Australia/Lord_Howe
61265099|Australia/Lord_Howe
61265164|Australia/Lord_Howe
61265251|Australia/Lord_Howe
61265296|Australia/Lord_Howe
61265341|Australia/Lord_Howe
61265606|Australia/Lord_Howe
61265632|Australia/Lord_Howe
61265998|Australia/Lord_Howe
61721000|Australia/Brisbane
61721001|Australia/Brisbane
61721002|Australia/Brisbane
61721003|Australia/Brisbane
61730600|Australia/Brisbane
61730640|Australia/Brisbane
61730641|Australia/Brisbane
61730643|Australia/Brisbane
61730651|Australia/Brisbane
61730659|Australia/Brisbane
61730923|Australia/Brisbane
61730938|Australia/Brisbane
61730992|Australia/Brisbane
61733095|Australia/Brisbane
61733099|Australia/Brisbane
61734973|Australia/Brisbane
61734974|Australia/Brisbane
61734975|Australia/Brisbane
61734976|Australia/Brisbane
61735678|Australia/Brisbane
61736404|Australia/Brisbane
61736405|Australia/Brisbane
61736406|Australia/Brisbane
61736409|Australia/Brisbane
61736677|Australia/Brisbane
61736678|Australia/Brisbane
61736679|Australia/Brisbane
61736680|Australia/Brisbane
61737788|Australia/Brisbane
61738348|Australia/Brisbane
61738359|Australia/Brisbane
61739110|Australia/Brisbane
61739111|Australia/Brisbane
61739112|Australia/Brisbane
61739160|Australia/Brisbane
61739161|Australia/Brisbane
61739475|Australia/Brisbane
61851001|Indian/Christmas
61851002|Indian/Cocos
61851030|Indian/Christmas
61851031|Indian/Cocos
61851059|Indian/Christmas
61851060|Indian/Cocos
61851087|Australia/Perth
61851088|Indian/Christmas
61851089|Indian/Cocos
61851100|Australia/Adelaide&Australia/Perth
61851116|Australia/Adelaide&Australia/Perth
61851117|Indian/Christmas
61851118|Indian/Cocos
61851119|Australia/Adelaide&Australia/Perth
61851140|Australia/Adelaide&Australia/Perth
61851141|Australia/Adelaide&Australia/Perth
61851142|Australia/Adelaide&Australia/Perth
61851143|Australia/Adelaide&Australia/Perth
61851144|Australia/Adelaide&Australia/Perth
61851146|Indian/Christmas
61851156|Australia/Adelaide&Australia/Perth
61851158|Australia/Adelaide&Australia/Perth
61851175|Indian/Christmas
61851176|Indian/Cocos
61851185|Australia/Adelaide&Australia/Perth
61851187|Australia/Adelaide&Australia/Perth
61851204|Indian/Christmas
61851205|Australia/Sydney
61851209|Australia/Adelaide&Australia/Perth
61851221|Australia/Adelaide&Australia/Perth
61851222|Indian/Christmas
61851223|Indian/Cocos
61851224|Australia/Perth
61851225|Australia/Perth
61851226|Australia/Perth
61851227|Australia/Adelaide&Australia/Perth
61851228|Australia/Adelaide&Australia/Perth
61851229|Australia/Adelaide&Australia/Perth
61851230|Australia/Sydney
61851231|Australia/Adelaide&Australia/Perth
61851232|Australia/Sydney
61851233|Australia/Sydney
61851234|Australia/Sydney
61851235|Indian/Christmas
61851236|Australia/Adelaide&Australia/Perth
61851237|Australia/Adelaide&Australia/Perth
61851238|Australia/Adelaide&Australia/Perth
61851239|Australia/Adelaide&Australia/Perth
61890393|Australia/Adelaide&Australia/Eucla&Australia/Perth
61890395|Australia/Adelaide&Australia/Eucla&Australia/Perth
61891006|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891007|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891008|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891009|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891010|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891011|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891012|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891029|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891122|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891149|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891150|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891178|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891179|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891181|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891182|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891209|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891210|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891263|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891264|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891308|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891312|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891322|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891326|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891368|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891375|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891428|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891456|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891497|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891498|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891700|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891701|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891702|Australia/Adelaide&Australia/Perth&Indian/Cocos
61891703|Indian/Cocos
61891710|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891711|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891712|Australia/Adelaide&Australia/Perth&Indian/Christmas
61891958|Indian/Christmas
61891959|Australia/Adelaide&Australia/Perth&Indian/Cocos
$map$, '\n') l
 WHERE l <> '';
-- END number_timezones data
/*
 * pg_dialer: the admin API (schema dialer_admin), served over HTTP by a PostgREST of its own
 * (deploy/postgrest-admin.conf) with JWT roles (deploy/admin_roles.sql):
 *
 *   dialer_viewer     reads: the views calls, campaigns, provider_health, and the functions
 *                     call, stats, pending_customers
 *   dialer_operator   all of the viewer's, and enqueue_call, cancel_call, retry_call,
 *                     run_campaign, set_campaign_enabled, set_provider_enabled, cleanup
 *   dialer_frontend   frontend_enqueue only: one purpose (its token's "purpose" claim), rate
 *                     limited per caller (its token's "sub" claim)
 *
 * The functions are thin SECURITY DEFINER wrappers over the dialer.* API: they run as the
 * extension owner with a pinned search_path, so the roles need no privilege on schema
 * dialer.  A refusal raises before anything is written, with a SQLSTATE PostgREST turns into
 * the HTTP status: PT404 (no such call / campaign / provider), PT409 (the call's status
 * does not allow it), PT403 (the token does not allow it), PT429 (rate limit); the
 * API's own argument errors (22023, 22004, 42704, ...) become 400.  The message, detail and
 * hint are the JSON body of the answer.  See doc/admin.md.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

CREATE SCHEMA dialer_admin;
COMMENT ON SCHEMA dialer_admin IS
	'pg_dialer admin API for people and applications: calls, their timeline, stats, campaigns, providers; exposed by its own PostgREST with JWT roles dialer_viewer, dialer_operator, dialer_frontend';
REVOKE ALL ON SCHEMA dialer_admin FROM PUBLIC;

/*
 * What an application frontend may enqueue: one row per purpose.  A frontend's token
 * names its purpose (claim "purpose") and its caller (claim "sub"); the purpose fixes the
 * provider and payload, and how often one caller may ask for a call.
 */
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

/*
 * Raises an admin API refusal: SQLSTATE PT<status>, which PostgREST answers with that
 * HTTP status and {message, details, hint} as the body.
 */
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

/*
 * The call row of an id, or the 404 refusal.
 */
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

/*
 * The 404 refusal for a campaign or provider (what) that has no row of that name.
 */
CREATE FUNCTION dialer.admin_refuse_unknown(what text, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM dialer.admin_refuse(404, format('%s %s does not exist', what, quote_literal(coalesce(name, 'NULL'))),
		format('No row of dialer.%ss has this name.', what),
		CASE what WHEN 'campaign' THEN 'List campaigns with GET /campaigns.'
				  ELSE 'List providers with GET /provider_health.' END);
END;
$$;
COMMENT ON FUNCTION dialer.admin_refuse_unknown(text, text) IS
	'Internal: raises the admin API''s 404 refusal for a campaign or provider (what) of that name that does not exist';

/*
 * Nothing, or the 404 refusal when no campaign has this name.
 */
CREATE FUNCTION dialer.admin_require_campaign(campaign text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM dialer.campaigns k WHERE k.name = admin_require_campaign.campaign) THEN
		PERFORM dialer.admin_refuse_unknown('campaign', campaign);
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.admin_require_campaign(text) IS
	'Internal: raises the admin API''s 404 refusal when no campaign has this name';

/* ------------------------------------------------------------------------ reading */

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

/*
 * The campaigns with their rules and schedule: the rows of dialer_admin.campaigns.  A
 * function run as the extension owner, because the schedule's next run is computed by
 * functions that the API's roles may not execute (a view calls functions with the rights
 * of its reader).
 */
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
	   h.attempts_last_hour, h.errors_last_hour, h.last_attempt_at, h.last_error,
	   q.counted_in_progress,
	   coalesce(q.counted_in_progress >= p.max_concurrency, false) AS at_limit,
	   CASE WHEN q.counted_in_progress >= p.max_concurrency
			THEN q.oldest_counted_news + current_setting('dialer.reconcile_after')::interval END AS slot_frees_by
  FROM dialer.providers p
  CROSS JOIN LATERAL (
		SELECT count(*) FILTER (WHERE c.status IN ('dispatching', 'dialing')) AS in_progress,
			   count(*) FILTER (WHERE c.status = 'scheduled' AND c.next_attempt_at <= now()) AS due,
			   count(*) FILTER (WHERE c.status = 'scheduled' AND c.next_attempt_at > now()) AS waiting,
			   count(*) FILTER (WHERE c.status = 'unknown') AS unknown,
			   count(*) FILTER (WHERE c.status IN ('dispatching', 'dialing')
								  AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval) AS counted_in_progress,
			   min(c.updated_at) FILTER (WHERE c.status IN ('dispatching', 'dialing')
										   AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval) AS oldest_counted_news
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
COMMENT ON VIEW dialer_admin.provider_health IS 'Per provider: paused or not, its limits and whether it is at its max_concurrency, its calls in progress and waiting, and its requests and errors of the last hour';
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
COMMENT ON COLUMN dialer_admin.provider_health.counted_in_progress IS 'Its calls in progress that count against max_concurrency now: dispatching or dialing, with news within dialer.reconcile_after';
COMMENT ON COLUMN dialer_admin.provider_health.at_limit IS 'true: counted_in_progress has reached max_concurrency, so its due calls wait until a callback ends a call, or until a call without news for dialer.reconcile_after stops counting (and is reconciled)';
COMMENT ON COLUMN dialer_admin.provider_health.slot_frees_by IS 'When at_limit: when the oldest counted call stops counting by itself (its last news plus dialer.reconcile_after); a callback frees a slot sooner';

/*
 * The recipient's time zone of a call as the dashboard names it: the zones its calling
 * window is read in and where they come from, as the dispatcher reads them
 * (dialer.call_timezones, itself dialer.recipient_zones); zones [] when none is known.
 */
CREATE FUNCTION dialer.admin_call_timezone(c dialer.scheduled_calls)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
SELECT jsonb_build_object('zones', coalesce(to_jsonb(z.timezones), '[]'::jsonb), 'source', z.source)
  FROM dialer.call_timezones(c.id) z
$$;
COMMENT ON FUNCTION dialer.admin_call_timezone(dialer.scheduled_calls) IS
	'Internal: a call''s recipient time zone for the admin API, {zones, source}, from dialer.call_timezones: source call (its timezone), campaign (its campaign''s), number (libphonenumber) or default (dialer.default_timezone: the number''s zone is not known)';

/*
 * One call with its attempts and events (the timeline), and its recipient's time zone.
 */
CREATE FUNCTION dialer_admin.call(id bigint)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls := dialer.admin_call(call.id);
BEGIN
	RETURN dialer.call_details(v_call.id)
		|| jsonb_build_object('timezone', dialer.admin_call_timezone(v_call));
END;
$$;
COMMENT ON FUNCTION dialer_admin.call(bigint) IS
	'One call with its attempts and events, and its recipient''s time zone: {call, attempts, events, timezone: {zones, source}} (source call, campaign, number or default: the call''s timezone, else its campaign''s, else what the number implies, else dialer.default_timezone). GET /rpc/call?id=42. 404 for an unknown id.';

/*
 * The counts of a day.
 */
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

/*
 * Every candidate of a campaign, with the reason each left-out one is left out.
 */
CREATE FUNCTION dialer_admin.pending_customers(campaign text, days int DEFAULT NULL)
RETURNS TABLE (customer_ref text, phone text, due_at timestamptz, included boolean, reason text, detail text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.admin_require_campaign(pending_customers.campaign);
	RETURN QUERY
		SELECT c.customer_ref, c.phone, c.due_at, c.included, c.reason, c.detail
		  FROM dialer.campaign_candidates(pending_customers.campaign, days) c;
END;
$$;
COMMENT ON FUNCTION dialer_admin.pending_customers(text, int) IS
	'The candidates of a campaign: the ones a run would call now (included) first, then every one left out with its reason (do_not_call, call_pending, over_daily_cap, ...) and a detail. GET /rpc/pending_customers?campaign=reminders. The source is read with the extension owner''s rights.';

/* ------------------------------------------------------------------------ writing */

/*
 * Enqueues one call (the operator's): dialer.enqueue_call's arguments and checks.
 */
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
	deadline timestamptz DEFAULT NULL,
	late_ok boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_id bigint;
BEGIN
	v_id := dialer.enqueue_call(to_number, coalesce(run_at, now()), provider, payload, campaign,
								dedupe_key, priority, max_attempts, timezone, deadline, coalesce(late_ok, false));
	RETURN jsonb_build_object('id', v_id,
		'status', (SELECT c.status FROM dialer.scheduled_calls c WHERE c.id = v_id));
END;
$$;
COMMENT ON FUNCTION dialer_admin.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, boolean) IS
	'Schedules a call: POST /rpc/enqueue_call {"to_number": "+14155550123", "provider": "default", "payload": {"message": "..."}}; answers {id, status} (status skipped for a do-not-call number; the stored call for a repeated dedupe_key). 400 with the reason for bad input.';

/*
 * Schedules many calls at once (dialer.enqueue_calls): a JSON array of calls keyed like
 * enqueue_call's arguments.  atomic (default): all or nothing, a refused element answers 400
 * with its reason; atomic = false: the acceptable calls are written and each element's
 * outcome is returned.
 */
CREATE FUNCTION dialer_admin.enqueue_calls(calls jsonb, atomic boolean DEFAULT true)
RETURNS jsonb
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.item), '[]'::jsonb)
	  FROM dialer.enqueue_calls(calls, atomic) r
$$;
COMMENT ON FUNCTION dialer_admin.enqueue_calls(jsonb, boolean) IS
	'Schedules many calls: POST /rpc/enqueue_calls {"calls": [{"to_number": "+14155550123", "payload": {"message": "..."}}, ...], "atomic": true}; answers one object per element (item, id, outcome scheduled/skipped/duplicate/refused, reason and error fields). atomic (default): all or nothing, 400 with the first refusal; false: the acceptable calls are written.';

/*
 * Cancels (change 'cancel') or requeues (change 'retry') a call through the dialer API
 * (dialer.cancel_call, dialer.retry_call): {id, status} when it changed, else the 409
 * refusal naming the call's status (404 for an unknown id).
 */
CREATE FUNCTION dialer.admin_change_call(call_id bigint, change text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call		dialer.scheduled_calls := dialer.admin_call(call_id);
	v_changed	boolean := CASE change WHEN 'cancel' THEN dialer.cancel_call(v_call.id)
									   WHEN 'retry' THEN dialer.retry_call(v_call.id) END;
BEGIN
	IF v_changed IS NULL THEN
		RAISE EXCEPTION 'dialer.admin_change_call: unexpected change %', change;
	END IF;
	IF NOT v_changed THEN
		v_call := dialer.admin_call(v_call.id);
		IF change = 'cancel' THEN
			PERFORM dialer.admin_refuse(409, format('call %s is %s: only a scheduled call can be canceled', v_call.id, v_call.status),
				'A call already claimed by the dispatcher or finished cannot be taken back.',
				'See its timeline: GET /rpc/call?id=' || v_call.id);
		END IF;
		PERFORM dialer.admin_refuse(409, format('call %s is %s: only a failed, unknown or expired call can be retried', v_call.id, v_call.status),
			'Retrying starts a new run of the call; a call still in the queue or finished otherwise keeps its state.',
			'Enqueue a new call instead: POST /rpc/enqueue_call.');
	END IF;
	RETURN jsonb_build_object('id', v_call.id, 'status', CASE change WHEN 'cancel' THEN 'canceled' ELSE 'scheduled' END);
END;
$$;
COMMENT ON FUNCTION dialer.admin_change_call(bigint, text) IS
	'Internal: cancels (cancel) or requeues (retry) a call with the dialer API, answering {id, status} or the admin API''s 409 / 404 refusal';

/*
 * Cancels a scheduled call.
 */
CREATE FUNCTION dialer_admin.cancel_call(id bigint)
RETURNS jsonb
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT dialer.admin_change_call(cancel_call.id, 'cancel');
$$;
COMMENT ON FUNCTION dialer_admin.cancel_call(bigint) IS
	'Cancels a scheduled call: POST /rpc/cancel_call {"id": 42} answers {id, status: canceled}; 409 when the call is no longer scheduled, 404 for an unknown id.';

/*
 * Requeues a failed, unknown or expired call.
 */
CREATE FUNCTION dialer_admin.retry_call(id bigint)
RETURNS jsonb
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT dialer.admin_change_call(retry_call.id, 'retry');
$$;
COMMENT ON FUNCTION dialer_admin.retry_call(bigint) IS
	'Requeues a failed, unknown or expired call (due now, a fresh run of attempts): POST /rpc/retry_call {"id": 42}; 409 for any other status, 404 for an unknown id.';

/*
 * Runs a campaign now.
 */
CREATE FUNCTION dialer_admin.run_campaign(campaign text, max_calls int DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.admin_require_campaign(run_campaign.campaign);
	RETURN jsonb_build_object('campaign', campaign,
							  'enqueued', dialer.run_campaign(run_campaign.campaign, max_calls));
END;
$$;
COMMENT ON FUNCTION dialer_admin.run_campaign(text, int) IS
	'Runs a campaign now ("trigger now"): enqueues its pending customers (at most max_calls) and answers {campaign, enqueued}. POST /rpc/run_campaign {"campaign": "reminders"}.';

/*
 * Pauses (enabled false) or resumes (true) a campaign or provider (what): {<what>: name,
 * enabled}, the 404 refusal for an unknown name.
 */
CREATE FUNCTION dialer.admin_set_enabled(what text, name text, enabled boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF enabled IS NULL THEN
		PERFORM dialer.raise_bad_argument('enabled', NULL, 'enabled is true (resume) or false (pause).', 'Pass "enabled": false to pause.', '22004');
	END IF;
	IF what = 'campaign' THEN
		UPDATE dialer.campaigns k SET enabled = admin_set_enabled.enabled, updated_at = now()
		 WHERE k.name = admin_set_enabled.name;
	ELSIF what = 'provider' THEN
		UPDATE dialer.providers p SET enabled = admin_set_enabled.enabled
		 WHERE p.name = admin_set_enabled.name;
	ELSE
		RAISE EXCEPTION 'dialer.admin_set_enabled: unexpected kind %', what;
	END IF;
	IF NOT FOUND THEN
		PERFORM dialer.admin_refuse_unknown(what, name);
	END IF;
	RETURN jsonb_build_object(what, name, 'enabled', enabled);
END;
$$;
COMMENT ON FUNCTION dialer.admin_set_enabled(text, text, boolean) IS
	'Internal: pauses or resumes a campaign or provider (what) for the admin API, answering {campaign|provider, enabled} or the 404 refusal';

/*
 * Pauses or resumes a campaign.
 */
CREATE FUNCTION dialer_admin.set_campaign_enabled(campaign text, enabled boolean)
RETURNS jsonb
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT dialer.admin_set_enabled('campaign', campaign, enabled);
$$;
COMMENT ON FUNCTION dialer_admin.set_campaign_enabled(text, boolean) IS
	'Pauses (enabled false) or resumes (true) a campaign: POST /rpc/set_campaign_enabled {"campaign": "reminders", "enabled": false}; 404 for an unknown campaign.';

/*
 * Pauses or resumes a provider.
 */
CREATE FUNCTION dialer_admin.set_provider_enabled(provider text, enabled boolean)
RETURNS jsonb
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT dialer.admin_set_enabled('provider', provider, enabled);
$$;
COMMENT ON FUNCTION dialer_admin.set_provider_enabled(text, boolean) IS
	'Pauses (enabled false: its calls wait in the queue) or resumes (true) a provider: POST /rpc/set_provider_enabled {"provider": "default", "enabled": false}; 404 for an unknown provider.';

/*
 * Removes old finished calls.
 */
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

/*
 * An application frontend asks for a call for its signed-in user.  Who asks (claim "sub")
 * and for what (claim "purpose") come from the verified JWT, never from the body: the body
 * gives only the number.  Requests of one caller are serialized by a transaction-level
 * advisory lock, so at most one call per caller per min_interval is stored however many
 * requests arrive at once.
 */
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
REVOKE ALL ON FUNCTION dialer.admin_refuse(int, text, text, text), dialer.admin_call(bigint), dialer.admin_campaigns(),
	dialer.admin_refuse_unknown(text, text), dialer.admin_require_campaign(text), dialer.admin_change_call(bigint, text),
	dialer.admin_set_enabled(text, text, boolean) FROM PUBLIC;
/*
 * pg_dialer: privileges (the last part): nothing for PUBLIC; dialer.grant_usage(), and
 * dialer.grant_to(), what every grant helper does.
 *
 * Nothing is granted to PUBLIC: the owner (the role that created the extension)
 * grants each application role exactly what it needs; see README, "Privileges".
 * The secret columns of dialer.providers stay the owner's even when other roles
 * may read the rest of the provider configuration.
 *
 * Copyright (c) 2026, pg_dialer developers
 */
REVOKE ALL ON ALL TABLES IN SCHEMA dialer FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer FROM PUBLIC;

-- Harmless helpers anyone may call.
GRANT EXECUTE ON FUNCTION dialer.is_valid_timezone(text), dialer.is_e164(text), dialer.all_e164(text[]) TO PUBLIC;

/*
 * What every grant helper does (dialer.grant_usage, dialer.grant_monitoring, ...): checks
 * that role_name names a role, grants it USAGE on schema dialer, then each of grants,
 * written 'PRIVILEGES ON OBJECTS' (the helpers' own constant text, never input).
 */
CREATE FUNCTION dialer.grant_to(role_name name, VARIADIC grants text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	g text;
BEGIN
	PERFORM dialer.require_role(role_name);
	EXECUTE format('GRANT USAGE ON SCHEMA dialer TO %I', role_name);
	FOREACH g IN ARRAY grants LOOP
		EXECUTE format('GRANT %s TO %I', g, role_name);
	END LOOP;
END;
$$;
COMMENT ON FUNCTION dialer.grant_to(name, text[]) IS
	'Internal: checks a role, grants it USAGE on schema dialer and each of the given privileges (the grant helpers'' common part)';

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
	PERFORM dialer.grant_to(role_name,
		'SELECT ON dialer.scheduled_calls, dialer.call_attempts, dialer.call_events, dialer.campaigns, dialer.do_not_call',
		'SELECT (name, kind, base_url, account_sid, api_key_sid, from_number, twiml_url, '
		'status_callback_url, status_callback_call_id, allowed_hosts, ring_timeout, machine_detection, max_concurrency, '
		'calls_per_second, retry_busy, retry_no_answer, retry_delay, enabled, created_at, updated_at) ON dialer.providers',
		'EXECUTE ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, boolean), '
		'dialer.enqueue_calls(jsonb, boolean), dialer.cancel_call(bigint), dialer.retry_call(bigint), dialer.call_details(bigint), '
		'dialer.stats(date), dialer.worker_status(), dialer.next_local_time(text, time, int, text), '
		'dialer.call_timezones(bigint)');
END;
$$;
COMMENT ON FUNCTION dialer.grant_usage(name) IS
	'Grants a role the everyday use of pg_dialer (enqueue, cancel, retry, inspect; read the queue and the non-secret provider columns). Secrets stay the owner''s.';
REVOKE ALL ON FUNCTION dialer.grant_to(name, text[]), dialer.grant_usage(name) FROM PUBLIC;
