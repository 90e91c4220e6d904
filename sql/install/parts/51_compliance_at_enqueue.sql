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
