/*
 * pg_dialer: monitoring.  Views a DBA reads and a scraper (prometheus-postgres-exporter
 * with deploy/prometheus/pg_dialer_queries.yaml) polls: calls by status, provider and
 * campaign; each provider's health; the dispatcher's state and lag.  The launcher and
 * dispatchers also write LOG/WARNING lines to the server log (README, "Monitoring").
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/* C functions (src/shmem.c, src/backend_hooks.c) */

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
			 WHERE c.provider = p.name AND c.status = ANY (dialer.in_progress_statuses())) a ON true
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
