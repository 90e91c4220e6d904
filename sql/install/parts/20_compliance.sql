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
 * The detail of the event of a call a calling policy skips, at enqueue or at
 * dispatch (checked): the policy and rule that decided, the recipient's zones and
 * the reason in words.
 */
CREATE FUNCTION dialer.policy_skip_detail(checked text, policy text, rule text, timezones text[], message text)
RETURNS jsonb
LANGUAGE sql
STABLE	-- as the functions it calls are (IMMUTABLE kept it from being inlined)
AS $$
	SELECT jsonb_build_object('reason', 'policy', 'checked', checked, 'policy', policy, 'rule', rule,
							  'timezones', timezones, 'message', message);
$$;
COMMENT ON FUNCTION dialer.policy_skip_detail(text, text, text, text[], text) IS
	'Internal: the event detail of a call skipped by a calling policy (checked: enqueue, dispatch, consent_changed or refusal_recorded; policy, rule, zones, message)';

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
	'Trigger: validates dialer.policy_windows rows (weekdays 1 to 7, starts before ends) with the API''s error messages';

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
	'Internal: The enabled calling policies whose scope (countries, area codes, campaigns, providers) covers a call';

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
		   -- an outcome whose rule says it does not count (dialer.outcome_rules)
		   AND (a.outcome IS NULL OR (dialer.outcome_rule(c.campaign, a.outcome)).counts_toward_cap IS NOT FALSE)
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
	'Internal: the calls to a number that count toward a cap at instant at: attempts in (at - period, at] that may have reached the recipient (all but those the provider answered with a non-2xx status, and those whose outcome''s rule says they do not count), across campaigns, and with with_scheduled its scheduled calls due in that period; and when a cap of max_calls frees again';

/*
 * The reason of a refusal for missing consent: policy policy requires consent and the number
 * has none in force for purpose (the campaign's name when the call gives none), naming the
 * latest revocation when there was one.
 */
CREATE FUNCTION dialer.no_consent_reason(policy text, number text, purpose text, at timestamptz)
RETURNS text
LANGUAGE sql
STABLE
AS $$
	SELECT format('policy %s requires consent and %s has none in force for purpose %s%s',
				  policy, number, coalesce(purpose, '(none given)'),
				  (SELECT format(' (revoked %s via %s)', k.revoked_at, k.revoked_via)
					 FROM dialer.consents k
					WHERE k.number = no_consent_reason.number AND k.purpose = no_consent_reason.purpose
					  AND k.revoked_at <= at
					ORDER BY k.revoked_at DESC LIMIT 1));
$$;
COMMENT ON FUNCTION dialer.no_consent_reason(text, text, text, timestamptz) IS
	'Internal: the reason of a refusal for missing consent (policy, number, purpose, the latest revocation)';

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
SET enable_seqscan = on					-- claim_calls' settings suit the queue, not these small tables
SET plan_cache_mode = force_generic_plan	-- custom plans re-planned the window rule at every call
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

	-- each bound of the window: the one given, else the campaign's, else the setting's
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
			reason := dialer.no_consent_reason(v_p.name, to_number, coalesce(purpose, campaign), at);
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
	'Internal: The sentence explaining a do-not-call entry: in effect since effective_at, requested at requested_at via source, and its reason (NULL for no entry)';

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
	  LEFT JOIN LATERAL dialer.do_not_call_entry(c.to_number) d ON true
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
		  LEFT JOIN LATERAL dialer.do_not_call_entry(c.to_number) d ON true
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
 * the calling policies at enqueue.
 *
 * dialer.compliance_verdict() (above) decides every call again when it is
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
