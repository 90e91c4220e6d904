/*
 * pg_dialer: what is promised.
 *
 * dialer.public_api lists every object a user may rely on from one version to the next:
 * what README.md documents and the grant helpers give.  Everything else in the schemas
 * dialer, dialer_api and dialer_admin is internal, and its COMMENT says so first
 * ("Internal:", "Worker:" for what the dispatcher calls, "Trigger:" for a trigger's
 * function); test/integration/public_api.test.js holds the three to each other.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

CREATE VIEW dialer.public_api (object, kind, area) AS
	SELECT v.object, v.kind, v.area
	  FROM (VALUES
		-- the queue: enqueue, inspect, change, count
		('dialer.enqueue_call', 'function', 'queue'),
		('dialer.enqueue_calls', 'function', 'queue'),
		('dialer.enqueue_result', 'type', 'queue'),
		('dialer.cancel_call', 'function', 'queue'),
		('dialer.retry_call', 'function', 'queue'),
		('dialer.call_details', 'function', 'queue'),
		('dialer.stats', 'function', 'queue'),
		('dialer.cleanup', 'function', 'queue'),
		('dialer.worker_status', 'function', 'queue'),
		('dialer.wake_worker', 'function', 'queue'),
		('dialer.is_valid_timezone', 'function', 'queue'),
		('dialer.is_e164', 'function', 'queue'),
		('dialer.scheduled_calls', 'table', 'queue'),
		('dialer.call_attempts', 'table', 'queue'),
		('dialer.call_events', 'table', 'queue'),
		('dialer.providers', 'table', 'queue'),
		('dialer.provider_kinds', 'table', 'queue'),
		('dialer.machine_detection_ranges', 'function', 'queue'),
		('dialer.do_not_call', 'table', 'queue'),
		-- the call's life and its outcomes
		('dialer.call_statuses', 'table', 'call life'),
		('dialer.call_transitions', 'table', 'call life'),
		('dialer.call_notes', 'table', 'call life'),
		('dialer.call_life_diagram', 'function', 'call life'),
		('dialer.outcome_classes', 'table', 'outcomes'),
		('dialer.provider_statuses', 'table', 'outcomes'),
		('dialer.outcome_signals', 'table', 'outcomes'),
		('dialer.outcome_rule_sets', 'table', 'outcomes'),
		('dialer.outcome_rules', 'table', 'outcomes'),
		('dialer.copy_outcome_rules', 'function', 'outcomes'),
		-- the recipient's time and the calling policies
		('dialer.number_timezones', 'table', 'recipient time'),
		('dialer.number_timezones', 'function', 'recipient time'),
		('dialer.call_timezones', 'function', 'recipient time'),
		('dialer.next_local_time', 'function', 'recipient time'),
		('dialer.calling_policies', 'table', 'calling policies'),
		('dialer.policy_windows', 'table', 'calling policies'),
		('dialer.blackout_dates', 'table', 'calling policies'),
		('dialer.refusals', 'table', 'calling policies'),
		('dialer.consents', 'table', 'calling policies'),
		('dialer.use_preset', 'function', 'calling policies'),
		('dialer.compliance_verdict', 'function', 'calling policies'),
		('dialer.next_opening', 'function', 'calling policies'),
		('dialer.reevaluate_parked_calls', 'function', 'calling policies'),
		('dialer.contact_history', 'function', 'calling policies'),
		('dialer.compliance_audit', 'function', 'calling policies'),
		-- campaigns
		('dialer.campaigns', 'table', 'campaigns'),
		('dialer.campaign_runs', 'table', 'campaigns'),
		('dialer.campaign_schedules', 'view', 'campaigns'),
		('dialer.campaign_candidates', 'function', 'campaigns'),
		('dialer.campaign_source_columns', 'function', 'campaigns'),
		('dialer.pending_customers', 'function', 'campaigns'),
		('dialer.run_campaign', 'function', 'campaigns'),
		('dialer.schedule_campaign', 'function', 'campaigns'),
		('dialer.unschedule_campaign', 'function', 'campaigns'),
		('dialer.run_scheduled_campaigns', 'function', 'campaigns'),
		('dialer.schedule_runs', 'function', 'campaigns'),
		('dialer.schedule_next_run', 'function', 'campaigns'),
		-- webhooks: what PostgREST exposes, and what a test of a provider's signature uses
		('dialer_api.twilio_status_callback', 'function', 'webhooks'),
		('dialer_api.provider_status_callback', 'function', 'webhooks'),
		('dialer.apply_provider_status', 'function', 'webhooks'),
		('dialer.apply_machine_verdict', 'function', 'webhooks'),
		('dialer.pending_callbacks', 'table', 'webhooks'),
		('dialer.twilio_callback_url', 'function', 'webhooks'),
		('dialer.twilio_signature', 'function', 'webhooks'),
		('dialer.constant_time_equal', 'function', 'webhooks'),
		-- monitoring
		('dialer.call_counts', 'view', 'monitoring'),
		('dialer.provider_health', 'view', 'monitoring'),
		('dialer.worker_health', 'view', 'monitoring'),
		('dialer.provider_status', 'function', 'monitoring'),
		('dialer.dispatchers', 'function', 'monitoring'),
		('dialer.is_served', 'function', 'monitoring'),
		('dialer.check_served', 'function', 'monitoring'),
		-- the admin API (served by its own PostgREST)
		('dialer_admin.calls', 'view', 'admin API'),
		('dialer_admin.campaigns', 'view', 'admin API'),
		('dialer_admin.provider_health', 'view', 'admin API'),
		('dialer_admin.call', 'function', 'admin API'),
		('dialer_admin.stats', 'function', 'admin API'),
		('dialer_admin.pending_customers', 'function', 'admin API'),
		('dialer_admin.enqueue_call', 'function', 'admin API'),
		('dialer_admin.enqueue_calls', 'function', 'admin API'),
		('dialer_admin.cancel_call', 'function', 'admin API'),
		('dialer_admin.retry_call', 'function', 'admin API'),
		('dialer_admin.run_campaign', 'function', 'admin API'),
		('dialer_admin.set_campaign_enabled', 'function', 'admin API'),
		('dialer_admin.set_provider_enabled', 'function', 'admin API'),
		('dialer_admin.cleanup', 'function', 'admin API'),
		('dialer_admin.frontend_enqueue', 'function', 'admin API'),
		('dialer.frontend_purposes', 'table', 'admin API'),
		-- privileges
		('dialer.grant_usage', 'function', 'privileges'),
		('dialer.grant_campaigns', 'function', 'privileges'),
		('dialer.grant_monitoring', 'function', 'privileges'),
		('dialer.public_api', 'view', 'privileges')
		) v(object, kind, area);
COMMENT ON VIEW dialer.public_api IS
	'What pg_dialer promises (README documents it, the grant helpers give it): object (schema-qualified name; a function: every overload), kind (table, view, function, type) and area. Everything else is internal.';
COMMENT ON COLUMN dialer.public_api.object IS 'Schema-qualified name';
COMMENT ON COLUMN dialer.public_api.kind IS 'table, view, function or type';
COMMENT ON COLUMN dialer.public_api.area IS 'The part of README that documents it';
