/*
 * pg_dialer: the tables, and the rules every row obeys.
 *
 *   dialer.is_e164(), domain dialer.e164   the E.164 rule (its one home)
 *   dialer.provider_kinds                  the kinds of provider, and what each asks
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
	'Internal: True when every element of numbers is an E.164 number (dialer.is_e164), and for an empty array';

/*
 * A phone number in E.164 form (dialer.is_e164).  A domain rather than a table CHECK,
 * so the rule is tested when a number is written, not again on every update of the row.
 */
CREATE DOMAIN dialer.e164 AS text
	CONSTRAINT e164_format CHECK (dialer.is_e164(VALUE));
COMMENT ON DOMAIN dialer.e164 IS 'A phone number in E.164 form: + then 8 to 15 digits, the first not 0';

/*
 * Provider kinds: the ways pg_dialer can place a call, each implemented by a file of its
 * own in C (src/provider_<kind>.c, registered in src/provider.c) and, for what it needs in
 * SQL, in sql/install/parts/6x_kind_<kind>.sql.  What the rest of pg_dialer must know about
 * a kind is a column here, never its name: a new kind is a row, its C file and its SQL file.
 */
CREATE TABLE dialer.provider_kinds (
	kind					text PRIMARY KEY CHECK (kind ~ '^[a-z][a-z0-9_]{0,30}$'),
	description				text NOT NULL,
	default_calls_per_second numeric NOT NULL CHECK (default_calls_per_second > 0),
	needs_account			boolean NOT NULL DEFAULT false,
	call_modes				text[],
	per_call_base_url		boolean NOT NULL DEFAULT false,
	message_max_length		int CHECK (message_max_length > 0),
	needs_something_to_say	boolean NOT NULL DEFAULT false,
	offers_search			boolean NOT NULL DEFAULT false,
	json_webhooks			boolean NOT NULL DEFAULT false,
	machine_detection		boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE dialer.provider_kinds IS
	'The kinds of provider pg_dialer can call through (its C has a file for each), and what the rest of pg_dialer must know about each: the enumeration of kinds, the one place outside a kind''s own files that names it';
COMMENT ON COLUMN dialer.provider_kinds.kind IS 'The kind''s name (dialer.providers.kind)';
COMMENT ON COLUMN dialer.provider_kinds.description IS 'What the kind calls through';
COMMENT ON COLUMN dialer.provider_kinds.default_calls_per_second IS 'dialer.providers.calls_per_second when a provider of this kind is added without one';
COMMENT ON COLUMN dialer.provider_kinds.needs_account IS 'true: a provider of this kind needs account_sid (the path of every request)';
COMMENT ON COLUMN dialer.provider_kinds.call_modes IS 'The modes payload.mode may name (the first is the default, stored in scheduled_calls.mode); NULL: the kind has none';
COMMENT ON COLUMN dialer.provider_kinds.per_call_base_url IS 'true: payload.base_url may name another host of the provider''s allowed_hosts';
COMMENT ON COLUMN dialer.provider_kinds.message_max_length IS 'The longest payload.message the kind can speak (NULL: no limit of its own)';
COMMENT ON COLUMN dialer.provider_kinds.needs_something_to_say IS 'true: a call needs payload.message, url or twiml_url, or the provider''s twiml_url';
COMMENT ON COLUMN dialer.provider_kinds.offers_search IS 'true: the provider can list its calls, so that a lost answer is looked for (reconciliation by search)';
COMMENT ON COLUMN dialer.provider_kinds.json_webhooks IS 'true: its status webhooks are JSON signed with the provider''s webhook_secret (dialer_api.provider_status_callback)';
COMMENT ON COLUMN dialer.provider_kinds.machine_detection IS 'true: a call may ask for answering-machine detection and for digits sent after connecting (payload.machine_detection, async_amd, its timeouts, send_digits: dialer.machine_detection_rule)';

INSERT INTO dialer.provider_kinds (kind, description, default_calls_per_second, needs_account, call_modes,
								   per_call_base_url, message_max_length, needs_something_to_say, offers_search,
								   json_webhooks, machine_detection) VALUES
	-- a new Twilio account may start one call per second; TwiML is at most 4000 characters,
	-- of which <Response><Say></Say></Response> takes 32
	('twilio', 'Twilio''s Programmable Voice REST API (POST .../Calls.json)', 1, true, NULL, false, 3968, true, true, false, true),
	('backend', 'the customer''s AI-call backend (/call/start, /call/brief)', 10, false, '{DIRECT,BRIEF_START}', true, NULL, false, true, true, false),
	('voice_api', 'a generic voice API (POST /calls)', 10, false, NULL, false, NULL, false, false, true, false);

/*
 * Providers: where calls are sent.  Secret columns (auth_token, api_key_secret,
 * bearer_token, webhook_secret) are readable only by the extension owner: see the
 * column-level grants at the end of the install script.
 */
CREATE TABLE dialer.providers (
	name				text PRIMARY KEY
						CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	kind				text NOT NULL REFERENCES dialer.provider_kinds (kind),
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
	async_amd			boolean NOT NULL DEFAULT false,
	CONSTRAINT async_amd_needs_callback CHECK (NOT async_amd OR status_callback_url IS NOT NULL)
);

COMMENT ON TABLE dialer.providers IS
	'Named provider configurations, each of a kind of dialer.provider_kinds. Secret columns are readable only by the extension owner.';
COMMENT ON COLUMN dialer.providers.kind IS 'What the provider is (a row of dialer.provider_kinds): twilio (Twilio REST API), backend (customer AI-call backend: /call/start, /call/brief) or voice_api (generic POST /calls)';
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
COMMENT ON COLUMN dialer.providers.machine_detection IS 'Twilio MachineDetection (Enable or DetectMessageEnd) of its calls, or NULL for none; a call''s payload.machine_detection wins';
COMMENT ON COLUMN dialer.providers.async_amd IS 'Twilio AsyncAmd: machine detection runs in the background, its verdict posted to status_callback_url (needs one); a call''s payload.async_amd wins';
COMMENT ON COLUMN dialer.providers.max_concurrency IS 'Calls of this provider in progress at once, counted from dispatch until the final status (or dialer.reconcile_after without news); NULL: no limit beyond dialer.max_concurrency requests in flight';
COMMENT ON COLUMN dialer.providers.calls_per_second IS 'Requests per second sent to this provider; when omitted, its kind''s default_calls_per_second (twilio 1, a new Twilio account''s limit; the others 10)';
COMMENT ON COLUMN dialer.providers.retry_busy IS 'Re-schedule busy calls after retry_delay, up to max_attempts';
COMMENT ON COLUMN dialer.providers.retry_no_answer IS 'Re-schedule unanswered calls after retry_delay, up to max_attempts';
COMMENT ON COLUMN dialer.providers.enabled IS 'A disabled provider''s calls stay scheduled until it is enabled again';
COMMENT ON COLUMN dialer.providers.name IS 'Provider name (letters, digits, _ . -; at most 63): what enqueue_call(provider => ...) and campaigns name; enqueue_call uses ''default'' unless told otherwise';
COMMENT ON COLUMN dialer.providers.retry_delay IS 'Delay before a busy or unanswered call is re-scheduled (retry_busy, retry_no_answer)';
COMMENT ON COLUMN dialer.providers.created_at IS 'When the provider was added';
COMMENT ON COLUMN dialer.providers.updated_at IS 'Last change of the row (stamped by a trigger); the worker reloads providers when it changes';

/*
 * What a provider's kind asks of its row (dialer.provider_kinds): its calls-per-second
 * default (a new Twilio account may start one call per second), and an account_sid where
 * the kind needs one.
 */
CREATE FUNCTION dialer.providers_defaults()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k	dialer.provider_kinds;
BEGIN
	SELECT * INTO k FROM dialer.provider_kinds pk WHERE pk.kind = NEW.kind;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown provider kind %', quote_literal(NEW.kind)
			USING ERRCODE = 'check_violation', TABLE = 'providers', SCHEMA = 'dialer',
				  DETAIL = format('The kinds are %s (dialer.provider_kinds).',
								  (SELECT string_agg(pk.kind, ', ' ORDER BY pk.kind) FROM dialer.provider_kinds pk)),
				  HINT = 'Set kind to one of them.';
	END IF;
	IF NEW.calls_per_second IS NULL THEN
		NEW.calls_per_second := k.default_calls_per_second;
	END IF;
	IF k.needs_account AND NEW.account_sid IS NULL THEN
		RAISE EXCEPTION 'provider % of kind % needs an account_sid', quote_literal(NEW.name), NEW.kind
			USING ERRCODE = 'check_violation', TABLE = 'providers', SCHEMA = 'dialer',
				  DETAIL = format('Every request of a %s provider names its account.', NEW.kind),
				  HINT = 'Set account_sid (and auth_token, or api_key_sid and api_key_secret).';
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
	'Trigger: fills calls_per_second with its kind''s default, refuses a row without the account_sid its kind needs, and stamps updated_at on update';
CREATE TRIGGER providers_defaults BEFORE INSERT OR UPDATE ON dialer.providers
	FOR EACH ROW EXECUTE FUNCTION dialer.providers_defaults();

/*
 * Campaigns: named recurring sources of calls.  Rules are data; the functions that read
 * them (pending_customers, campaign_candidates, run_campaign, schedule_campaign) and the
 * source contract are in sql/install/parts/70_campaigns.sql.  A trigger there validates each row.
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
	outcome_rules		text,	-- a row of dialer.outcome_rule_sets (its key: 06_outcomes.sql)
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
COMMENT ON COLUMN dialer.campaigns.outcome_rules IS 'The outcome rule set (dialer.outcome_rule_sets) saying what follows each outcome of its calls: retries, suppressions, holds (NULL: ''default'', which also stands in for a class the set does not name)';

/*
 * The statuses of a call (dialer.call_statuses), and the groups of them the rules use,
 * each written once, here: IMMUTABLE SQL functions, so that the planner inlines them into
 * constants, in index predicates and in the CHECK of scheduled_calls.status too.
 */
CREATE FUNCTION dialer.final_statuses()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{completed, no_answer, busy, failed, canceled, skipped, expired}'::text[];
$$;
COMMENT ON FUNCTION dialer.final_statuses() IS
	'Internal: The final statuses of a call: finished (finished_at set), unless a rule or dialer.retry_call() puts it back in the queue';

CREATE FUNCTION dialer.open_statuses()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{scheduled, dispatching, dialing, unknown, held}'::text[];
$$;
COMMENT ON FUNCTION dialer.open_statuses() IS
	'Internal: The statuses of a call that is not finished: in the queue, under way, unknown, or held for an operator';

CREATE FUNCTION dialer.pending_statuses()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{scheduled, dispatching, dialing}'::text[];
$$;
COMMENT ON FUNCTION dialer.pending_statuses() IS
	'Internal: The statuses of a call still to be made or under way (stats() counts them as pending)';

CREATE FUNCTION dialer.in_progress_statuses()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{dispatching, dialing}'::text[];
$$;
COMMENT ON FUNCTION dialer.in_progress_statuses() IS
	'Internal: The statuses of a call in progress at its provider: what counts against max_concurrency (while it has news)';

CREATE FUNCTION dialer.unsettled_statuses()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{dispatching, dialing, unknown}'::text[];
$$;
COMMENT ON FUNCTION dialer.unsettled_statuses() IS
	'Internal: The statuses of a call that may be at its provider with its outcome not stored: a provider''s report moves it';

CREATE FUNCTION dialer.not_reached_statuses()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{no_answer, busy}'::text[];
$$;
COMMENT ON FUNCTION dialer.not_reached_statuses() IS
	'Internal: The final statuses of a call placed that did not reach the person (stats() counts them as not_reached)';

/*
 * What each status means.  Its rows are the statuses of the groups above, whose final
 * column it derives from final_statuses().
 */
CREATE TABLE dialer.call_statuses (
	status				text PRIMARY KEY CHECK (status = ANY (dialer.open_statuses() || dialer.final_statuses())),
	final				boolean NOT NULL GENERATED ALWAYS AS (status = ANY (dialer.final_statuses())) STORED,
	position			int NOT NULL UNIQUE,
	description			text NOT NULL
);
COMMENT ON TABLE dialer.call_statuses IS
	'The statuses of a call (dialer.scheduled_calls.status): whether each is final, and what it means';
COMMENT ON COLUMN dialer.call_statuses.status IS 'The status, as scheduled_calls.status holds it';
COMMENT ON COLUMN dialer.call_statuses.final IS
	'A final status (dialer.final_statuses()): the call is finished (finished_at is set when it gets there), unless a rule or dialer.retry_call() puts it back in the queue';
COMMENT ON COLUMN dialer.call_statuses.position IS 'Order of the statuses in the docs and the diagram';
COMMENT ON COLUMN dialer.call_statuses.description IS 'What the status means';

INSERT INTO dialer.call_statuses (status, position, description) VALUES
	('scheduled',	1,	'waiting in the queue until next_attempt_at (run_at, then a retry or a calling window)'),
	('dispatching',	2,	'claimed by the dispatcher: the request may be in flight'),
	('dialing',		3,	'the provider accepted the call: it is under way'),
	('unknown',		4,	'the outcome is not known (the request may have reached the provider): never re-sent automatically; reconciliation or an operator settles it'),
	('completed',	5,	'the call was answered and has ended'),
	('no_answer',	6,	'it rang out unanswered'),
	('busy',		7,	'the line was busy'),
	('failed',		8,	'the provider refused or failed the call, or the run''s attempts were used up'),
	('canceled',	9,	'canceled before it was claimed, or by the provider'),
	('skipped',		10,	'never dialled: do-not-call, a calling policy, not allowed, no calling window'),
	('expired',		11,	'its deadline passed before it could start'),
	('held',		12,	'held for an operator by an outcome rule (hold): dialer.retry_call() puts it back in the queue, dialer.cancel_call() ends it');

/*
 * The queue, and the record of every call.  A row is never deleted except by
 * dialer.cleanup(), and only once finished.
 */
CREATE TABLE dialer.scheduled_calls (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	status				text NOT NULL DEFAULT 'scheduled',	-- checked below
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

/*
 * The statuses a call may have (the groups above), written into the catalog as a literal
 * list: a CHECK is prepared again at every statement that writes the table, and function
 * calls in it would be inlined again each time (20 us more per enqueue_call, measured).
 */
DO $$
BEGIN
	EXECUTE format('ALTER TABLE dialer.scheduled_calls ADD CONSTRAINT scheduled_calls_status_check '
				   'CHECK (status = ANY (%L::text[]))', dialer.open_statuses() || dialer.final_statuses());
END;
$$;

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
	(provider, updated_at) WHERE status = ANY (dialer.unsettled_statuses());
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
	outcome				text,	-- a row of dialer.outcome_classes (no key: see call_events_follow_calls)
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
COMMENT ON COLUMN dialer.call_attempts.outcome IS 'The outcome class of the attempt (dialer.outcome_classes: answered, voicemail_left, no_answer, busy, bad_number, ...), decided from the provider''s words beside it by dialer.outcome_of(); NULL while under way';
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
	detail				jsonb NOT NULL DEFAULT '{}',
	outcome				text
);

COMMENT ON TABLE dialer.call_events IS 'Append-only history of every call: state changes and notable events. Rows go only with their call (dialer.cleanup)';
COMMENT ON COLUMN dialer.call_events.event IS 'What happened: enqueued, skipped, claimed, accepted, retry_scheduled, failed, canceled, requeued, window_wait, expired, unknown, callback, ...';
COMMENT ON COLUMN dialer.call_events.outcome IS 'The outcome class the event decided (dialer.outcome_classes), for a move that ends an attempt; NULL otherwise';
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
COMMENT ON FUNCTION dialer.call_events_append_only() IS 'Trigger: keeps dialer.call_events append-only';

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
	'Trigger: refuses TRUNCATE of dialer.scheduled_calls (the events of its calls would stay behind)';
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
 * The do-not-call rule, its one home: a number with an entry here is never dialled (a call
 * for it is stored as skipped at enqueue, skipped at dispatch, left out of campaigns).  The
 * entry, or no row; a plain SQL function, inlined where it is used.
 */
CREATE FUNCTION dialer.do_not_call_entry(number text)
RETURNS SETOF dialer.do_not_call
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT * FROM dialer.do_not_call d WHERE d.number = do_not_call_entry.number;
$$;
COMMENT ON FUNCTION dialer.do_not_call_entry(text) IS
	'Internal: The do-not-call rule: the number''s entry in dialer.do_not_call (no row: it may be called); used by enqueue, the claim, campaigns and the audit';

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
