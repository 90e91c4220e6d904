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
		SELECT count(*) FILTER (WHERE c.status = ANY (dialer.in_progress_statuses())) AS in_progress,
			   count(*) FILTER (WHERE c.status = 'scheduled' AND c.next_attempt_at <= now()) AS due,
			   count(*) FILTER (WHERE c.status = 'scheduled' AND c.next_attempt_at > now()) AS waiting,
			   count(*) FILTER (WHERE c.status = 'unknown') AS unknown,
			   count(*) FILTER (WHERE c.status = ANY (dialer.in_progress_statuses())
								  AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval) AS counted_in_progress,
			   min(c.updated_at) FILTER (WHERE c.status = ANY (dialer.in_progress_statuses())
										   AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval) AS oldest_counted_news
		  FROM dialer.scheduled_calls c
		 WHERE c.provider = p.name AND c.status = ANY (dialer.open_statuses())) q
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
