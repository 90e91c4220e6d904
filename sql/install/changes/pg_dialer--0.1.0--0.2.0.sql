-- The change file of the update from 0.1.0 to 0.2.0: what sql/install/tools/draft_update.py
-- cannot know (see its opening comment).  make writes sql/install/pg_dialer--0.1.0--0.2.0.sql
-- from this file and the two released install scripts (sql/install/released/); the update
-- script itself is never edited or committed.
-- @header
/*
 * pg_dialer: update from 0.1.0 to 0.2.0 (ALTER EXTENSION pg_dialer UPDATE TO '0.2.0').
 *
 * Everything 0.2.0 changed since 0.1.0, as statements that turn a 0.1.0 install into exactly
 * what a fresh 0.2.0 install is: test/integration/upgrade.test.js installs 0.1.0, fills it,
 * runs the updates with the worker running, and compares the catalogs with a fresh install's.
 *
 * Written by make (sql/install/tools/draft_update.py): the statements 0.2.0 added or changed,
 * in install order, with the hand-written ones of the change file
 * sql/install/changes/pg_dialer--0.1.0--0.2.0.sql.
 *
 * Runs in one transaction with the extension's schema as search_path; rows are kept.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_dialer UPDATE TO '0.2.0'" to load this file. \quit
-- @replace domain dialer.e164
-- the E.164 rule is dialer.is_e164() now (created above), no longer a regular expression
ALTER DOMAIN dialer.e164 DROP CONSTRAINT e164_format;
ALTER DOMAIN dialer.e164 ADD CONSTRAINT e164_format CHECK (dialer.is_e164(VALUE));
-- @replace table dialer.providers
ALTER TABLE dialer.providers ADD COLUMN status_callback_call_id boolean NOT NULL DEFAULT true;
-- @replace table dialer.campaigns
-- the allow-list is checked number by number with dialer.all_e164() (created above)
ALTER TABLE dialer.campaigns DROP CONSTRAINT campaigns_allowed_numbers_check;
ALTER TABLE dialer.campaigns ADD CONSTRAINT campaigns_allowed_numbers_check
	CHECK (allowed_numbers IS NULL OR
		   (cardinality(allowed_numbers) > 0
			AND array_position(allowed_numbers, NULL) IS NULL
			AND dialer.all_e164(allowed_numbers)));
-- @replace table dialer.scheduled_calls
ALTER TABLE dialer.scheduled_calls ADD COLUMN reconcile_searches int NOT NULL DEFAULT 0 CHECK (reconcile_searches >= 0);
ALTER TABLE dialer.scheduled_calls ADD COLUMN reconcile_failures int NOT NULL DEFAULT 0 CHECK (reconcile_failures >= 0);
-- the provider is kept by triggers now (providers_keep_calls), not by a key checked on every insert
ALTER TABLE dialer.scheduled_calls DROP CONSTRAINT scheduled_calls_provider_fkey;
-- dedupe keys are unique through a partial index (scheduled_calls_dedupe_key_idx, created
-- below): a call without a key no longer costs an index entry
ALTER TABLE dialer.scheduled_calls DROP CONSTRAINT scheduled_calls_dedupe_key_key;
-- @replace table dialer.call_events
-- events follow their calls by a statement trigger (call_events_follow_calls), not a key checked on every insert
ALTER TABLE dialer.call_events DROP CONSTRAINT call_events_call_id_fkey;
-- @replace table dialer.do_not_call
-- the do-not-call ledger: when the request was made, from where, when it took effect; the
-- rows of 0.1.0 took effect when they were added, and their request time is not known
-- better than that
ALTER TABLE dialer.do_not_call ADD COLUMN requested_at timestamptz;
ALTER TABLE dialer.do_not_call ADD COLUMN source text;
ALTER TABLE dialer.do_not_call ADD COLUMN effective_at timestamptz;
UPDATE dialer.do_not_call SET requested_at = added_at, effective_at = added_at;
ALTER TABLE dialer.do_not_call ALTER COLUMN requested_at SET DEFAULT now(), ALTER COLUMN requested_at SET NOT NULL,
	ALTER COLUMN effective_at SET DEFAULT now(), ALTER COLUMN effective_at SET NOT NULL;
ALTER TABLE dialer.do_not_call ADD CONSTRAINT do_not_call_effective_after_request CHECK (effective_at >= requested_at),
	ADD CONSTRAINT do_not_call_effective_when_stored CHECK (effective_at <= added_at);
-- @replace function dialer.worker_status
-- worker_status() gained columns: dropped and created again, keeping the roles it was granted
-- to (dialer.grant_usage() grants it)
SELECT pg_catalog.set_config('pg_dialer.worker_status_acl', coalesce(p.proacl::text, ''), true)
  FROM pg_catalog.pg_proc p
 WHERE p.oid = 'dialer.worker_status()'::pg_catalog.regprocedure;
DROP FUNCTION dialer.worker_status();
-- @replace function dialer.enqueue_call
-- enqueue_call gained late_ok (a run_at past dialer.late_tolerance is refused without it):
-- the 0.1.0 function is dropped, and its grants given to the new one below
SELECT pg_catalog.set_config('pg_dialer.enqueue_call_acl', coalesce(p.proacl::text, ''), true)
  FROM pg_catalog.pg_proc p
 WHERE p.oid = 'dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz)'::pg_catalog.regprocedure;
DROP FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz);
-- @end
-- worker_status(): given back to the roles that had it before it was dropped above
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
-- @end
-- campaign_candidates() applies its rules through dialer.campaign_candidate_verdicts() (new in
-- 0.2.0, run as the owner): the roles dialer.grant_campaigns() let run campaign_candidates
-- may run it too
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT a.grantee::pg_catalog.regrole AS grantee
			   FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
			  WHERE p.oid = 'dialer.campaign_candidates(text, int)'::pg_catalog.regprocedure
				AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> a.grantor
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dialer.campaign_candidate_verdicts(text, dialer.campaign_source_row[], int) TO %s',
								  r.grantee);
	END LOOP;
END;
$$;
-- @end
-- enqueue_call(..., late_ok): given to the roles that could run the 0.1.0 enqueue_call
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT a.grantee::pg_catalog.regrole AS grantee
			   FROM pg_catalog.aclexplode(nullif(pg_catalog.current_setting('pg_dialer.enqueue_call_acl'), '')::pg_catalog.aclitem[]) a
			  WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> a.grantor
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dialer.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, boolean) TO %s',
								  r.grantee);
	END LOOP;
END;
$$;
