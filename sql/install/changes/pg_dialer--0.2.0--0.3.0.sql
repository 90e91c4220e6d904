-- The change file of the update from 0.2.0 to 0.3.0: what sql/install/tools/draft_update.py
-- cannot know (see its opening comment).  make writes sql/install/pg_dialer--0.2.0--0.3.0.sql
-- from this file, the released 0.2.0 install script (sql/install/released/) and the current
-- one built from sql/install/parts/; the update script itself is never edited or committed.
-- @header
/*
 * pg_dialer: update from 0.2.0 to 0.3.0 (ALTER EXTENSION pg_dialer UPDATE TO '0.3.0').
 *
 * Everything 0.3.0 changed in sql/install/parts/ since 0.2.0, as statements that turn a 0.2.0
 * install into exactly what a fresh 0.3.0 install is: test/integration/upgrade.test.js
 * updates an installed 0.2.0 (and a 0.1.0, through 0.2.0) and compares the catalogs with a
 * fresh install's.
 *
 * Written by make (sql/install/tools/draft_update.py) from the change file
 * sql/install/changes/pg_dialer--0.2.0--0.3.0.sql: edit that file and sql/install/parts/.
 *
 * Runs in one transaction with the extension's schema as search_path; rows are kept.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_dialer UPDATE TO '0.3.0'" to load this file. \quit
-- @replace table dialer.providers
-- a provider's kind is a row of dialer.provider_kinds (created above), which also says which
-- kinds need an account_sid (checked by the trigger providers_defaults now)
ALTER TABLE dialer.providers DROP CONSTRAINT providers_kind_check;
ALTER TABLE dialer.providers DROP CONSTRAINT twilio_needs_account;
ALTER TABLE dialer.providers ADD CONSTRAINT providers_kind_fkey
	FOREIGN KEY (kind) REFERENCES dialer.provider_kinds (kind);
-- a provider's answering-machine detection may run in the background (its verdict to the
-- status callback URL)
ALTER TABLE dialer.providers ADD COLUMN async_amd boolean NOT NULL DEFAULT false;
ALTER TABLE dialer.providers ADD CONSTRAINT async_amd_needs_callback
	CHECK (NOT async_amd OR status_callback_url IS NOT NULL);
-- @replace function dialer.call_rule
-- the payload rules of a kind are read from its row of dialer.provider_kinds
DROP FUNCTION dialer.call_rule(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, text, text[], text, boolean);
-- @replace function dialer.call_refusal
DROP FUNCTION dialer.call_refusal(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, text, text[], text, boolean);
-- @replace table dialer.campaigns
-- a campaign names its outcome rule set (its key is added below, once the sets exist)
ALTER TABLE dialer.campaigns ADD COLUMN outcome_rules text;
-- @replace table dialer.scheduled_calls
-- a call may be held for an operator by an outcome rule; the statuses are the groups'
-- (dialer.open_statuses(), dialer.final_statuses(), created above; the DO that follows in
-- the install script adds the constraint again, with their statuses as a literal list)
ALTER TABLE dialer.scheduled_calls DROP CONSTRAINT scheduled_calls_status_check;
-- made again below with its predicate written by its group, dialer.unsettled_statuses()
DROP INDEX dialer.scheduled_calls_active_idx;
-- @replace table dialer.call_attempts
-- the outcome class of an attempt (the attempts of 0.2.0 have none)
ALTER TABLE dialer.call_attempts ADD COLUMN outcome text;
-- @replace table dialer.call_events
-- the outcome class an event decided
ALTER TABLE dialer.call_events ADD COLUMN outcome text;
-- @replace function dialer.provider_status_rank
-- the provider statuses are data now (dialer.provider_statuses), read per kind
-- @covers function dialer.provider_status_rank
DROP FUNCTION dialer.provider_status_rank(text);
-- @replace function dialer.provider_status_outcome
-- @covers function dialer.provider_status_outcome
DROP FUNCTION dialer.provider_status_outcome(text);
-- @replace function dialer.provider_status_advances
-- @covers function dialer.provider_status_advances
DROP FUNCTION dialer.provider_status_advances(text, text);
-- @replace function dialer.store_provider_report
-- it writes through dialer.move_calls() now, with the outcome class and the next action
-- @covers function dialer.store_provider_report
DROP FUNCTION dialer.store_provider_report(dialer.scheduled_calls, bigint, text, text, jsonb, boolean, boolean, boolean, text, text, timestamptz, text, jsonb, jsonb);
-- @replace function dialer.apply_reconciliation
-- a lookup's answer is read in C by its provider's kind: the function takes pg_dialer's
-- report (jsonb) instead of the answer's HTTP body and error
DROP FUNCTION dialer.apply_reconciliation(bigint, text, int, text, text);
-- @replace function dialer.apply_search
-- a search's answer is read in C by its provider's kind: the function takes pg_dialer's
-- report (jsonb) instead of the answer's HTTP body and error
DROP FUNCTION dialer.apply_search(bigint, jsonb, int, text, text);
-- @end
-- the retry decision of busy and no_answer is the default outcome rule set's now (dialer.next_action)
-- @covers function dialer.call_retry_decision
DROP FUNCTION dialer.call_retry_decision(dialer.scheduled_calls, text);
