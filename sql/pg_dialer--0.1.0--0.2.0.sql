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

/* ------------------------------------------------ psql explains everything */

-- the schema, and every column and sequence that 0.1.0 left without a comment
COMMENT ON SCHEMA dialer IS
	'pg_dialer: the outbound call queue (scheduled_calls), its log (call_attempts, call_events), providers, campaigns, do_not_call, and the SQL API (enqueue_call, cancel_call, stats, ...)';
COMMENT ON COLUMN dialer.providers.name IS 'Provider name (letters, digits, _ . -; at most 63): what enqueue_call(provider => ...) and campaigns name; enqueue_call uses ''default'' unless told otherwise';
COMMENT ON COLUMN dialer.providers.retry_delay IS 'Delay before a busy or unanswered call is re-scheduled (retry_busy, retry_no_answer)';
COMMENT ON COLUMN dialer.providers.created_at IS 'When the provider was added';
COMMENT ON COLUMN dialer.providers.updated_at IS 'Last change of the row (stamped by a trigger); the worker reloads providers when it changes';
COMMENT ON COLUMN dialer.campaigns.created_at IS 'When the campaign was created';
COMMENT ON COLUMN dialer.campaigns.updated_at IS 'Last change of the campaign''s row';
COMMENT ON COLUMN dialer.scheduled_calls.id IS 'Call id, returned by enqueue_call (identity)';
COMMENT ON COLUMN dialer.scheduled_calls.to_number IS 'Number to call (E.164)';
COMMENT ON COLUMN dialer.scheduled_calls.from_number IS 'Caller id (E.164): payload.from, else the provider''s from_number';
COMMENT ON COLUMN dialer.scheduled_calls.provider IS 'Provider (dialer.providers) the call is sent through';
COMMENT ON COLUMN dialer.scheduled_calls.payload IS 'JSON object (at most 64 kB) handed to the provider: e.g. url, twiml_url or message (twilio), mode and the script (backend), from';
COMMENT ON COLUMN dialer.scheduled_calls.provider_status IS 'Last status the provider reported (e.g. Twilio queued, ringing, in-progress, completed)';
COMMENT ON COLUMN dialer.scheduled_calls.last_error IS 'Last error of the call: the provider''s code and message, or a transport error (never secrets)';
COMMENT ON COLUMN dialer.scheduled_calls.created_at IS 'When the call was enqueued';
COMMENT ON SEQUENCE dialer.scheduled_calls_id_seq IS 'Identity of dialer.scheduled_calls.id (call ids)';
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
COMMENT ON COLUMN dialer.campaign_source_row.customer_ref IS 'The application''s reference of the candidate';
COMMENT ON COLUMN dialer.campaign_source_row.phone IS 'The number to call (E.164; spaces ( ) . - are ignored)';
COMMENT ON COLUMN dialer.campaign_source_row.payload IS 'The candidate''s own payload keys (over the campaign''s payload)';
COMMENT ON COLUMN dialer.campaign_source_row.timezone IS 'The candidate''s IANA time zone (NULL: the campaign''s)';
COMMENT ON COLUMN dialer.campaign_source_row.due_at IS 'What the call is about (appointment, expiry): the lookahead window';
COMMENT ON COLUMN dialer.campaign_runs.id IS 'Run id (identity)';
COMMENT ON COLUMN dialer.campaign_runs.campaign IS 'The campaign (dialer.campaigns) that ran';
COMMENT ON COLUMN dialer.campaign_runs.timezone IS 'The campaign''s time zone at the run (of local_slot)';
COMMENT ON COLUMN dialer.campaign_runs.started_at IS 'When the run started';
COMMENT ON COLUMN dialer.campaign_runs.finished_at IS 'When the run ended (NULL: running)';
COMMENT ON COLUMN dialer.campaign_runs.enqueued IS 'How many calls the run enqueued';
COMMENT ON COLUMN dialer.campaign_runs.error IS 'Error message of a run with outcome error';
COMMENT ON SEQUENCE dialer.campaign_runs_id_seq IS 'Identity of dialer.campaign_runs.id';
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
