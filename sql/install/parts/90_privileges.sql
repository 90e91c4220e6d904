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
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer_api FROM PUBLIC;

-- Harmless helpers anyone may call.
GRANT EXECUTE ON FUNCTION dialer.is_valid_timezone(text), dialer.is_e164(text), dialer.all_e164(text[]) TO PUBLIC;
-- The status groups: constants, read by views and by the index and CHECK of scheduled_calls
-- (a function a view calls is checked against the role that reads the view).
GRANT EXECUTE ON FUNCTION dialer.final_statuses(), dialer.open_statuses(), dialer.pending_statuses(),
	dialer.in_progress_statuses(), dialer.unsettled_statuses(), dialer.not_reached_statuses() TO PUBLIC;

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
		'SELECT ON dialer.scheduled_calls, dialer.call_attempts, dialer.call_events, dialer.campaigns, dialer.do_not_call, '
		'dialer.call_statuses, dialer.call_transitions, dialer.call_notes, dialer.outcome_classes, '
		'dialer.provider_statuses, dialer.outcome_signals, dialer.outcome_rule_sets, dialer.outcome_rules, '
		'dialer.public_api, dialer.provider_kinds',
		'SELECT (name, kind, base_url, account_sid, api_key_sid, from_number, twiml_url, '
		'status_callback_url, status_callback_call_id, allowed_hosts, ring_timeout, machine_detection, async_amd, max_concurrency, '
		'calls_per_second, retry_busy, retry_no_answer, retry_delay, enabled, created_at, updated_at) ON dialer.providers',
		'EXECUTE ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, boolean), '
		'dialer.enqueue_calls(jsonb, boolean), dialer.cancel_call(bigint), dialer.retry_call(bigint), dialer.call_details(bigint), '
		'dialer.stats(date), dialer.worker_status(), dialer.next_local_time(text, time, int, text), '
		'dialer.call_timezones(bigint), dialer.call_life_diagram()');
END;
$$;
COMMENT ON FUNCTION dialer.grant_usage(name) IS
	'Grants a role the everyday use of pg_dialer (enqueue, cancel, retry, inspect; read the queue and the non-secret provider columns). Secrets stay the owner''s.';
REVOKE ALL ON FUNCTION dialer.grant_to(name, text[]), dialer.grant_usage(name) FROM PUBLIC;
