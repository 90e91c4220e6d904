/*
 * pg_dialer: campaigns.
 *
 * A campaign (a row of dialer.campaigns) names a source of candidates the application
 * writes -- a view, a table or a set-returning function -- and the rules that decide
 * who is called.  pending_customers() shows who would be called now, campaign_candidates()
 * shows every candidate with the reason it is left out, run_campaign() enqueues the
 * pending ones, and schedule_campaign() has pg_cron run it at a local time of day.
 *
 * The source contract (checked when the campaign is written and at every run):
 *
 *   customer_ref  any type (read as text)   required: the application's reference
 *   phone         any type (read as text)   required: E.164; spaces ( ) . - are ignored
 *   payload       jsonb or json             optional: an object merged over campaigns.payload
 *   timezone      text                      optional: the recipient's IANA time zone
 *   due_at        timestamptz, timestamp    optional: what the call is about (appointment,
 *                 or date                   expiry): the lookahead window; a timestamp or
 *                                           date is read in the campaign's time zone
 *
 * Other columns are ignored.  A function is written 'schema.f()' and takes no arguments.
 *
 * Privileges: the reading functions run with the caller's rights (a campaign never lets a
 * role read a source it could not read itself); scheduled runs use the rights of the role
 * that scheduled the campaign.  dialer.grant_campaigns() grants a role their use.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/* ---------------------------------------------------------------- helpers */

-- One candidate as read from a campaign's source.
CREATE TYPE dialer.campaign_source_row AS (
	customer_ref	text,
	phone			text,
	payload			jsonb,
	timezone		text,
	due_at			timestamptz
);
COMMENT ON TYPE dialer.campaign_source_row IS
	'Internal: one candidate read from a campaign source (customer_ref, phone, payload, timezone, due_at)';
COMMENT ON COLUMN dialer.campaign_source_row.customer_ref IS 'The application''s reference of the candidate';
COMMENT ON COLUMN dialer.campaign_source_row.phone IS 'The number to call (E.164; spaces ( ) . - are ignored)';
COMMENT ON COLUMN dialer.campaign_source_row.payload IS 'The candidate''s own payload keys (over the campaign''s payload)';
COMMENT ON COLUMN dialer.campaign_source_row.timezone IS 'The candidate''s IANA time zone (NULL: the campaign''s)';
COMMENT ON COLUMN dialer.campaign_source_row.due_at IS 'What the call is about (appointment, expiry): the lookahead window';

-- For the rules "scheduled today" and "call pending" (per customer of a campaign).
CREATE INDEX scheduled_calls_campaign_customer_idx ON dialer.scheduled_calls (campaign, customer_ref, run_at)
	WHERE campaign IS NOT NULL AND customer_ref IS NOT NULL;

/*
 * The time zone a campaign lives in: its own, else dialer.default_timezone, else UTC.
 */
CREATE FUNCTION dialer.campaign_timezone(timezone text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT coalesce(timezone, nullif(current_setting('dialer.default_timezone', true), ''), 'UTC')
$$;
COMMENT ON FUNCTION dialer.campaign_timezone(text) IS
	'Internal: a campaign''s time zone (its own, else dialer.default_timezone, else UTC)';

/*
 * A campaign row by name, or the standard error naming the bad value.
 */
CREATE FUNCTION dialer.get_campaign(campaign text)
RETURNS dialer.campaigns
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_row dialer.campaigns;
BEGIN
	IF campaign IS NULL THEN
		PERFORM dialer.raise_bad_argument('campaign', NULL, 'A campaign name is required.',
			'Name a row of dialer.campaigns.', '22004');
	END IF;
	SELECT * INTO v_row FROM dialer.campaigns k WHERE k.name = get_campaign.campaign;
	IF NOT FOUND THEN
		PERFORM dialer.raise_bad_argument('campaign', campaign,
			format('No row of dialer.campaigns has this name. Known campaigns: %s.',
				   coalesce((SELECT string_agg(quote_literal(k.name), ', ' ORDER BY k.name)
							 FROM (SELECT k2.name FROM dialer.campaigns k2 ORDER BY k2.name LIMIT 20) k),
							'none')),
			'Insert the campaign into dialer.campaigns first (see README, "Campaigns").', '42704');
	END IF;
	RETURN v_row;
END;
$$;
COMMENT ON FUNCTION dialer.get_campaign(text) IS
	'Internal: the dialer.campaigns row of a name, or the error "invalid campaign: ''x''" (SQLSTATE 42704)';

/*
 * Resolves a source name with the caller's search_path and returns it schema-qualified:
 * 'schema.relation' for a table, view, materialized view or foreign table, 'schema.f()'
 * for a set-returning function without arguments.  No search_path is pinned on purpose
 * (every name inside is qualified).
 */
CREATE FUNCTION dialer.resolve_campaign_source(source text)
RETURNS text
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
	v_src	text := pg_catalog.btrim(source);
	v_rel	oid;
	v_proc	oid;
	v_out	text;
	v_kind	"char";
	v_set	boolean;
BEGIN
	IF v_src IS NULL OR v_src OPERATOR(pg_catalog.=) '' THEN
		PERFORM dialer.raise_bad_argument('source', source,
			'A campaign reads its candidates from a view, table or set-returning function.',
			'Set source to e.g. ''app.pending_reminders'' or ''app.renewal_candidates()''.', '22004');
	END IF;
	BEGIN
		IF v_src OPERATOR(pg_catalog.~) '\(\s*\)$' THEN
			v_proc := pg_catalog.to_regprocedure(
				pg_catalog.regexp_replace(v_src, '\(\s*\)$', '') OPERATOR(pg_catalog.||) '()');
		ELSE
			v_rel := pg_catalog.to_regclass(v_src);
			IF v_rel IS NULL THEN
				v_proc := pg_catalog.to_regprocedure(v_src OPERATOR(pg_catalog.||) '()');
			END IF;
		END IF;
	EXCEPTION WHEN invalid_name OR syntax_error OR invalid_parameter_value OR feature_not_supported THEN
		PERFORM dialer.raise_bad_argument('source', source, 'This is not a valid object name.',
			'Write schema.view_name, or schema.function_name() for a set-returning function.', '42602');
	END;

	IF v_rel IS NOT NULL THEN
		SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), c.relkind
		  INTO v_out, v_kind
		  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
		 WHERE c.oid OPERATOR(pg_catalog.=) v_rel;
		IF v_kind OPERATOR(pg_catalog.<>) ALL (ARRAY['r', 'v', 'm', 'f', 'p']::"char"[]) THEN
			PERFORM dialer.raise_bad_argument('source', source,
				'A source must be a table, view, materialized view or foreign table (or a set-returning function).',
				'Wrap the object in a view.', '42809');
		END IF;
		RETURN v_out;
	END IF;

	IF v_proc IS NOT NULL THEN
		SELECT pg_catalog.format('%I.%I()', n.nspname, p.proname), p.prokind, p.proretset
		  INTO v_out, v_kind, v_set
		  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
		 WHERE p.oid OPERATOR(pg_catalog.=) v_proc;
		IF v_kind OPERATOR(pg_catalog.<>) 'f' OR NOT v_set THEN
			PERFORM dialer.raise_bad_argument('source', source,
				'A function source must be a set-returning function (RETURNS TABLE (...) or RETURNS SETOF a row type).',
				'Declare it RETURNS TABLE (customer_ref text, phone text, ...), or use a view.', '42809');
		END IF;
		RETURN v_out;
	END IF;

	PERFORM dialer.raise_bad_argument('source', source,
		pg_catalog.format('No table, view or set-returning function without arguments has this name (search_path: %s).',
						  pg_catalog.current_setting('search_path')),
		'Create the view or function first, and name it schema-qualified (a function as schema.f()).', '42P01');
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.resolve_campaign_source(text) IS
	'Internal: resolves a campaign source name (caller''s search_path) to ''schema.relation'' or ''schema.f()'', or raises "invalid source"';

/*
 * The columns a source yields (from the catalog, without running it).
 */
CREATE FUNCTION dialer.campaign_source_columns(source text)
RETURNS TABLE (column_name text, column_type regtype)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_src	text := dialer.resolve_campaign_source(source);
	v_proc	pg_proc;
BEGIN
	IF v_src !~ '\(\)$' THEN
		RETURN QUERY
			SELECT a.attname::text, a.atttypid::regtype
			  FROM pg_attribute a
			 WHERE a.attrelid = v_src::regclass AND a.attnum > 0 AND NOT a.attisdropped
			 ORDER BY a.attnum;
		RETURN;
	END IF;
	SELECT * INTO v_proc FROM pg_proc p WHERE p.oid = to_regprocedure(v_src);
	IF v_proc.proallargtypes IS NOT NULL THEN
		RETURN QUERY
			SELECT x.n::text, x.t::regtype
			  FROM unnest(v_proc.proargnames, v_proc.proallargtypes::oid[], v_proc.proargmodes::text[])
				   WITH ORDINALITY AS x(n, t, m, i)
			 WHERE x.m IN ('o', 't', 'b')
			 ORDER BY x.i;
	ELSIF (SELECT t.typtype FROM pg_type t WHERE t.oid = v_proc.prorettype) = 'c' THEN
		RETURN QUERY
			SELECT a.attname::text, a.atttypid::regtype
			  FROM pg_attribute a
			 WHERE a.attrelid = (SELECT t.typrelid FROM pg_type t WHERE t.oid = v_proc.prorettype)
			   AND a.attnum > 0 AND NOT a.attisdropped
			 ORDER BY a.attnum;
	ELSE
		PERFORM dialer.raise_bad_argument('source', source,
			format('Function %s returns %s, not named columns.', v_src, v_proc.prorettype::regtype),
			'Declare it RETURNS TABLE (customer_ref text, phone text, ...) or RETURNS SETOF a row type.', '42804');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_source_columns(text) IS
	'The columns (name, type) a campaign source yields, read from the catalog; an error when it has none';

/*
 * Checks a source against the contract and returns the query that reads it as one array
 * of dialer.campaign_source_row ($1 = the campaign's time zone).  Every name in the
 * query comes from the catalog, quoted: nothing stored is spliced into SQL.
 */
CREATE FUNCTION dialer.campaign_source_query(source text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_src		text := dialer.resolve_campaign_source(source);
	v_cols		jsonb;
	v_missing	text[];
	v_type		regtype;
	v_payload	text := 'NULL::jsonb';
	v_tz		text := 'NULL::text';
	v_due		text := 'NULL::timestamptz';
BEGIN
	SELECT jsonb_object_agg(c.column_name, c.column_type::oid)
	  INTO v_cols FROM dialer.campaign_source_columns(v_src) c;
	v_cols := coalesce(v_cols, '{}');

	SELECT array_agg(r) INTO v_missing FROM unnest(ARRAY['customer_ref', 'phone']) r WHERE NOT v_cols ? r;
	IF v_missing IS NOT NULL THEN
		PERFORM dialer.raise_bad_argument('source', source,
			format('%s has no column %s; it has: %s.', v_src, array_to_string(v_missing, ' or '),
				   coalesce((SELECT string_agg(k, ', ') FROM jsonb_object_keys(v_cols) k), 'none')),
			'A campaign source yields customer_ref and phone, and optionally payload (jsonb), timezone (text) and due_at (timestamptz, timestamp or date): rename columns with AS in a view.',
			'42703');
	END IF;

	IF v_cols ? 'payload' THEN
		v_type := (v_cols->>'payload')::oid::regtype;
		IF v_type NOT IN ('jsonb'::regtype, 'json'::regtype) THEN
			PERFORM dialer.raise_bad_argument('source', source,
				format('Column payload of %s is %s; it must be jsonb or json.', v_src, v_type),
				'Build it with jsonb_build_object(...).', '42804');
		END IF;
		v_payload := '(s.payload)::jsonb';
	END IF;
	IF v_cols ? 'timezone' THEN
		v_type := (v_cols->>'timezone')::oid::regtype;
		IF v_type NOT IN ('text'::regtype, 'character varying'::regtype, 'name'::regtype, 'character'::regtype) THEN
			PERFORM dialer.raise_bad_argument('source', source,
				format('Column timezone of %s is %s; it must be text (an IANA time zone name).', v_src, v_type),
				'Cast it: timezone::text.', '42804');
		END IF;
		v_tz := '(s.timezone)::text';
	END IF;
	IF v_cols ? 'due_at' THEN
		v_type := (v_cols->>'due_at')::oid::regtype;
		v_due := CASE v_type
			WHEN 'timestamp with time zone'::regtype THEN 's.due_at'
			WHEN 'timestamp without time zone'::regtype THEN '(s.due_at AT TIME ZONE $1)'
			WHEN 'date'::regtype THEN '((s.due_at)::timestamp AT TIME ZONE $1)'
		END;
		IF v_due IS NULL THEN
			PERFORM dialer.raise_bad_argument('source', source,
				format('Column due_at of %s is %s; it must be timestamptz, timestamp or date.', v_src, v_type),
				'Cast it, or rename the column if it is not a due time.', '42804');
		END IF;
	END IF;

	RETURN format('SELECT array_agg(ROW((s.customer_ref)::text, (s.phone)::text, %s, %s, %s)::dialer.campaign_source_row) FROM %s AS s',
				  v_payload, v_tz, v_due, v_src);
END;
$$;
COMMENT ON FUNCTION dialer.campaign_source_query(text) IS
	'Internal: checks a campaign source against the contract (customer_ref, phone; optional payload, timezone, due_at) and returns the query reading it';

/* -------------------------------------------------------------- schedules */

/*
 * One field of a cron expression as the sorted values it allows: lists of *, N, N-M,
 * each optionally /step; month and weekday names (jan, mon) are accepted.
 */
CREATE FUNCTION dialer.cron_field(field text, what text, lo int, hi int, names text[], schedule text)
RETURNS int[]
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_part	text;
	v_m		text[];
	v_a		int;
	v_b		int;
	v_step	int;
	v_out	int[] := '{}';
	v_tok	text;
	v_vals	int[];
BEGIN
	FOREACH v_part IN ARRAY string_to_array(field, ',') LOOP
		v_m := regexp_match(v_part, '^(\*|([0-9]{1,2}|[a-z]{3})(-([0-9]{1,2}|[a-z]{3}))?)(/([0-9]{1,2}))?$');
		IF v_m IS NULL THEN
			PERFORM dialer.raise_bad_argument('schedule', schedule,
				format('The %s field "%s" is not understood: use *, N, N-M, a list of these, each optionally /step.', what, field),
				'Write ''daily HH:MM'' or a 5-field cron expression such as ''0 9 * * 1-5'' (minute hour day month weekday), read in the campaign''s time zone.');
		END IF;
		v_vals := '{}';
		FOREACH v_tok IN ARRAY ARRAY[v_m[2], v_m[4]] LOOP
			IF v_tok IS NULL THEN
				v_vals := v_vals || NULL::int;
			ELSIF v_tok ~ '^[0-9]+$' THEN
				v_vals := v_vals || v_tok::int;
			ELSIF array_position(names, v_tok) IS NOT NULL THEN
				v_vals := v_vals || (array_position(names, v_tok) - 1 + lo);
			ELSE
				PERFORM dialer.raise_bad_argument('schedule', schedule,
					format('The %s field has an unknown name "%s".', what, v_tok),
					CASE WHEN names IS NULL THEN format('Use numbers from %s to %s.', lo, hi)
						 ELSE format('Use numbers from %s to %s or the names %s.', lo, hi, array_to_string(names, ', ')) END);
			END IF;
		END LOOP;
		IF v_m[1] = '*' THEN
			v_a := lo;
			v_b := hi;
		ELSE
			v_a := v_vals[1];
			v_b := coalesce(v_vals[2], CASE WHEN v_m[6] IS NOT NULL THEN hi ELSE v_a END);
		END IF;
		v_step := coalesce(v_m[6]::int, 1);
		IF v_a < lo OR v_b > hi OR v_a > v_b OR v_step < 1 THEN
			PERFORM dialer.raise_bad_argument('schedule', schedule,
				format('The %s field "%s" is out of range: values go from %s to %s, ranges upwards, steps from 1.', what, field, lo, hi),
				'For example ''0 9 * * 1-5'' is 09:00 on weekdays.');
		END IF;
		v_out := v_out || ARRAY(SELECT generate_series(v_a, v_b, v_step));
	END LOOP;
	RETURN ARRAY(SELECT DISTINCT x FROM unnest(v_out) x ORDER BY x);
END;
$$;
COMMENT ON FUNCTION dialer.cron_field(text, text, int, int, text[], text) IS
	'Internal: the values one cron field allows, or an "invalid schedule" error';

/*
 * A campaign schedule, parsed: 'daily HH:MM', @hourly, @daily (@midnight), @weekly,
 * @monthly, @yearly (@annually), or 'minute hour day-of-month month day-of-week'.  As in
 * cron, when both day fields are restricted a day matching either one runs.
 */
CREATE FUNCTION dialer.parse_schedule(schedule text,
	OUT normalized text, OUT minutes int[], OUT hours int[], OUT days int[], OUT months int[],
	OUT weekdays int[], OUT days_and boolean)
RETURNS record
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_s		text := lower(regexp_replace(btrim(schedule), '\s+', ' ', 'g'));
	v_cron	text;
	v_m		text[];
	v_f		text[];
BEGIN
	IF schedule IS NULL OR v_s = '' THEN
		PERFORM dialer.raise_bad_argument('schedule', schedule, 'A schedule is required.',
			'Write ''daily HH:MM'' or a 5-field cron expression, read in the campaign''s time zone.', '22004');
	END IF;
	v_m := regexp_match(v_s, '^daily (?:at )?([0-9]{1,2}):([0-9]{2})$');
	IF v_m IS NOT NULL THEN
		IF v_m[1]::int > 23 OR v_m[2]::int > 59 THEN
			PERFORM dialer.raise_bad_argument('schedule', schedule,
				'The time of a daily schedule is HH:MM from 00:00 to 23:59.', 'For example ''daily 09:00''.');
		END IF;
		v_cron := format('%s %s * * *', v_m[2]::int, v_m[1]::int);
		v_s := format('daily %s:%s', lpad(v_m[1]::int::text, 2, '0'), v_m[2]);
	ELSE
		v_cron := CASE v_s
			WHEN '@hourly' THEN '0 * * * *'
			WHEN '@daily' THEN '0 0 * * *'
			WHEN '@midnight' THEN '0 0 * * *'
			WHEN '@weekly' THEN '0 0 * * 0'
			WHEN '@monthly' THEN '0 0 1 * *'
			WHEN '@yearly' THEN '0 0 1 1 *'
			WHEN '@annually' THEN '0 0 1 1 *'
			ELSE v_s END;
	END IF;
	v_f := string_to_array(v_cron, ' ');
	IF cardinality(v_f) <> 5 THEN
		PERFORM dialer.raise_bad_argument('schedule', schedule,
			format('A cron schedule has 5 fields (minute hour day-of-month month day-of-week); this has %s.', cardinality(v_f)),
			'Write ''daily HH:MM'' or e.g. ''30 9 * * 1-5'' (09:30 on weekdays), read in the campaign''s time zone.');
	END IF;
	normalized := v_s;
	minutes := dialer.cron_field(v_f[1], 'minute', 0, 59, NULL, schedule);
	hours := dialer.cron_field(v_f[2], 'hour', 0, 23, NULL, schedule);
	days := dialer.cron_field(v_f[3], 'day-of-month', 1, 31, NULL, schedule);
	months := dialer.cron_field(v_f[4], 'month', 1, 12,
		'{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}', schedule);
	weekdays := dialer.cron_field(v_f[5], 'day-of-week', 0, 7, '{sun,mon,tue,wed,thu,fri,sat}', schedule);
	weekdays := ARRAY(SELECT DISTINCT CASE WHEN d = 7 THEN 0 ELSE d END FROM unnest(weekdays) d ORDER BY 1);
	days_and := v_f[3] LIKE '*%' OR v_f[5] LIKE '*%';
END;
$$;
COMMENT ON FUNCTION dialer.parse_schedule(text) IS
	'Internal: A campaign schedule (''daily HH:MM'', @hourly/@daily/@weekly/@monthly/@yearly or a 5-field cron expression) as its normalized text and the minutes, hours, days, months and weekdays it allows; an "invalid schedule" error otherwise';

/*
 * The instants a schedule runs at in (after, until], its fields read as local time in
 * timezone.  Each local time maps to one instant: a local time skipped by a
 * spring-forward change runs at the same wall-clock offset later (02:30 becomes 03:30),
 * a local time that occurs twice on a fall-back day runs once (at its second, standard
 * time occurrence), as PostgreSQL's timestamp AT TIME ZONE reads them.
 */
CREATE FUNCTION dialer.schedule_runs(schedule text, timezone text, after timestamptz, until timestamptz)
RETURNS SETOF timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	p record := dialer.parse_schedule(schedule);
BEGIN
	IF timezone IS NULL OR NOT dialer.is_valid_timezone(timezone) THEN
		PERFORM dialer.raise_bad_argument('timezone', timezone,
			'A schedule is read in a time zone PostgreSQL knows.',
			'Use an IANA name such as Europe/Berlin (see pg_timezone_names).');
	END IF;
	IF after IS NULL OR until IS NULL THEN
		PERFORM dialer.raise_bad_argument(CASE WHEN after IS NULL THEN 'after' ELSE 'until' END, NULL,
			'Both ends of the time range are required.', 'Pass two timestamptz values.', '22004');
	END IF;
	IF until - after > interval '3700 days' THEN
		PERFORM dialer.raise_bad_argument('until', until::text,
			'The range is at most 3700 days long.', 'Ask for a shorter range.');
	END IF;
	RETURN QUERY
		SELECT DISTINCT x.at
		  FROM (SELECT (d.day + make_time(h, m, 0)) AT TIME ZONE timezone AS at
				  FROM (SELECT g::date AS day
						  FROM generate_series(((after AT TIME ZONE timezone)::date - 1)::timestamp,
											   ((until AT TIME ZONE timezone)::date + 1)::timestamp,
											   interval '1 day') g) d
					   CROSS JOIN unnest(p.hours) h
					   CROSS JOIN unnest(p.minutes) m
				 WHERE extract(month FROM d.day)::int = ANY (p.months)
				   AND CASE WHEN p.days_and
							THEN extract(day FROM d.day)::int = ANY (p.days)
								 AND extract(dow FROM d.day)::int = ANY (p.weekdays)
							ELSE extract(day FROM d.day)::int = ANY (p.days)
								 OR extract(dow FROM d.day)::int = ANY (p.weekdays) END) x
		 WHERE x.at > after AND x.at <= until
		 ORDER BY x.at;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_runs(text, text, timestamptz, timestamptz) IS
	'The instants a schedule runs at in (after, until], read in timezone; across daylight-saving changes each local time runs once (a skipped local time runs at its shifted time)';

/*
 * The first run of a schedule after a given instant (NULL if none within 8 years).
 * Takes the instant as an argument so the computation is testable across DST changes.
 */
CREATE FUNCTION dialer.schedule_next_run(schedule text, timezone text, after timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_h		int;
	v_at	timestamptz;
BEGIN
	FOREACH v_h IN ARRAY ARRAY[2, 35, 400, 3000] LOOP
		SELECT min(r) INTO v_at
		  FROM dialer.schedule_runs(schedule, timezone, after, after + make_interval(days => v_h)) r;
		IF v_at IS NOT NULL THEN
			RETURN v_at;
		END IF;
	END LOOP;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_next_run(text, text, timestamptz) IS
	'The first instant after `after` at which a schedule, read in timezone, runs (NULL if none within 8 years)';

/*
 * The latest run of a schedule in (after, at], or NULL: the slot the scheduler owes.
 */
CREATE FUNCTION dialer.schedule_last_run(schedule text, timezone text, at timestamptz, after timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_h		int;
	v_lo	timestamptz;
	v_at	timestamptz;
BEGIN
	IF after IS NULL OR after >= at THEN
		RETURN NULL;
	END IF;
	FOREACH v_h IN ARRAY ARRAY[2, 35, 400, 3000] LOOP
		v_lo := greatest(after, at - make_interval(days => v_h));
		SELECT max(r) INTO v_at FROM dialer.schedule_runs(schedule, timezone, v_lo, at) r;
		IF v_at IS NOT NULL OR v_lo = after THEN
			RETURN v_at;
		END IF;
	END LOOP;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_last_run(text, text, timestamptz, timestamptz) IS
	'Internal: The latest instant in (after, at] at which a schedule, read in timezone, runs; NULL if none';

/* ------------------------------------------------------ validation trigger */

/*
 * Validates a campaign when it is written: the source exists and meets the contract
 * (and is stored schema-qualified), the time zone and schedule are valid.  Runs with the
 * writer's search_path so an unqualified source name resolves as the writer means it.
 */
CREATE FUNCTION dialer.campaigns_validate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' OR NEW.source IS DISTINCT FROM OLD.source THEN
		NEW.source := dialer.resolve_campaign_source(NEW.source);
		PERFORM dialer.campaign_source_query(NEW.source);
	END IF;
	IF NEW.timezone IS NOT NULL AND (TG_OP OPERATOR(pg_catalog.=) 'INSERT' OR NEW.timezone IS DISTINCT FROM OLD.timezone)
	   AND NOT dialer.is_valid_timezone(NEW.timezone) THEN
		PERFORM dialer.raise_bad_argument('timezone', NEW.timezone,
			'A campaign''s schedule, "today" and calling window are read in this time zone, and PostgreSQL does not know it.',
			'Use an IANA name such as Asia/Kolkata (see pg_timezone_names).');
	END IF;
	IF NEW.schedule IS NOT NULL AND (TG_OP OPERATOR(pg_catalog.=) 'INSERT' OR NEW.schedule IS DISTINCT FROM OLD.schedule) THEN
		NEW.schedule := (dialer.parse_schedule(NEW.schedule)).normalized;
	END IF;
	IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
		NEW.updated_at := pg_catalog.now();
	END IF;
	RETURN NEW;
END;
$$;
COMMENT ON FUNCTION dialer.campaigns_validate() IS
	'Trigger: validates dialer.campaigns rows: source (stored schema-qualified), time zone, schedule';

CREATE TRIGGER campaigns_validate BEFORE INSERT OR UPDATE ON dialer.campaigns
	FOR EACH ROW EXECUTE FUNCTION dialer.campaigns_validate();

/* ------------------------------------------------------------- candidates */

/*
 * Step 1 of campaign_candidates: the rows read from a campaign's source as candidates:
 * the number without spaces ( ) . -, the candidate's payload merged over the
 * campaign's, the dedupe key a run would give the call (campaign:<name>:<customer_ref
 * or md5 of a long one>:<suffix>), and the row's position in the source.
 */
CREATE FUNCTION dialer.campaign_source_candidates(k dialer.campaigns, source_rows dialer.campaign_source_row[],
												  key_suffix text)
RETURNS TABLE (ref text, raw_phone text, num text, raw_payload jsonb, pl jsonb, tz text, due timestamptz,
			   ord bigint, key text)
LANGUAGE sql
STABLE
AS $$
	SELECT s.customer_ref,
		   s.phone,
		   regexp_replace(s.phone, '[[:space:]().-]', '', 'g'),
		   s.payload,
		   k.payload || CASE WHEN jsonb_typeof(s.payload) = 'object' THEN s.payload ELSE '{}' END,
		   s.timezone,
		   s.due_at,
		   s.o,
		   format('campaign:%s:%s:%s', k.name,
				  CASE WHEN length(s.customer_ref) <= 100 THEN s.customer_ref
					   ELSE 'md5.' || md5(s.customer_ref) END,
				  key_suffix)
	  FROM unnest(source_rows) WITH ORDINALITY AS s(customer_ref, phone, payload, timezone, due_at, o);
$$;
COMMENT ON FUNCTION dialer.campaign_source_candidates(dialer.campaigns, dialer.campaign_source_row[], text) IS
	'Internal: step 1 of campaign_candidates: source rows as candidates (number cleaned, payload merged over the campaign''s, dedupe key, position)';

/*
 * The candidate reason for a rule of dialer.call_rule (the one home of the enqueue
 * rules) that a candidate breaks: its number (invalid_phone), its time zone
 * (invalid_timezone) or its payload (invalid_payload).  The rules about the
 * campaign's own settings (provider, priority, max_attempts) are not the
 * candidate's fault: NULL, and the run's enqueue reports them.
 */
CREATE FUNCTION dialer.campaign_reason_of_call_rule(call_rule text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
	SELECT CASE
			 WHEN call_rule IN ('to_number_missing', 'to_number_format') THEN 'invalid_phone'
			 WHEN call_rule = 'timezone' THEN 'invalid_timezone'
			 WHEN call_rule IN ('payload_type', 'payload_size', 'payload_mode', 'payload_base_url', 'payload_message',
								'nothing_to_say', 'payload_from', 'machine_detection_kind', 'machine_detection', 'async_amd',
								'machine_detection_setting', 'send_digits', 'machine_detection_off',
								'machine_detection_send_digits', 'machine_detection_callback') THEN 'invalid_payload'
		   END;
$$;
COMMENT ON FUNCTION dialer.campaign_reason_of_call_rule(text) IS
	'Internal: the campaign candidate reason (invalid_phone, invalid_timezone, invalid_payload) for a rule of dialer.call_rule broken by a candidate; NULL for rules about the campaign''s own settings';

/*
 * The detail of a candidate's invalid_payload for the payload rule of dialer.call_rule
 * it breaks, in the campaigns' words (raw_payload: the source's own, payload: merged
 * over the campaign's); NULL for the rules whose detail is the enqueue's error.
 */
CREATE FUNCTION dialer.campaign_payload_detail(call_rule text, raw_payload jsonb, payload jsonb)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT CASE call_rule
			 WHEN 'payload_type' THEN format('payload must be a JSON object, not %s', jsonb_typeof(raw_payload))
			 WHEN 'payload_size' THEN format('payload is %s bytes, over 64 kB', octet_length(payload::text))
			 WHEN 'payload_mode' THEN format('payload.mode %s is neither DIRECT nor BRIEF_START', quote_literal(payload->>'mode'))
			 WHEN 'payload_from' THEN format('payload.from %s is not an E.164 number', payload->'from')
		   END;
$$;
COMMENT ON FUNCTION dialer.campaign_payload_detail(text, jsonb, jsonb) IS
	'Internal: the detail of a campaign candidate''s invalid_payload for the dialer.call_rule payload rule it breaks (NULL: use the enqueue''s error)';

/*
 * Every candidate of a campaign's source with the verdict of the rules: included, or the
 * reason it is left out (the first rule it fails, in this order):
 *
 *   campaign_disabled     the campaign is disabled
 *   invalid_customer_ref  customer_ref is NULL or empty
 *   invalid_phone         phone is not E.164 (after removing spaces ( ) . -)
 *   invalid_timezone      the candidate's timezone is unknown
 *   invalid_payload       payload not an object, over 64 kB, bad mode or from, or any
 *                         other payload rule of dialer.call_rule (the enqueue's rules)
 *   do_not_call           the number is on dialer.do_not_call (the ledger entry in detail)
 *   not_allowed           the campaign has an allow-list (pilot) without this number
 *   outside_lookahead     due_at's local date is before today or after today + days
 *   scheduled_today       a call of the campaign for this customer is due today (or
 *                         this run's dedupe key exists)
 *   call_pending          a call of the campaign to this customer or number is still
 *                         scheduled, dispatching or dialing
 *   called_recently       a call to the number reached the provider within
 *                         skip_called_within_days
 *   calling_policy        a calling policy refuses a call now (contact cap reached,
 *                         silence after a refusal, consent missing, unknown time zone,
 *                         no opening within 60 days): detail names policy and rule
 *   duplicate_customer    the source yields the customer again (the earliest due is kept)
 *   duplicate_phone       another included customer has the same number
 *   over_daily_cap        max_calls_per_day is used up
 *
 * A candidate a policy only holds (its window is closed now in the recipient's zone, or
 * it is a blackout day there) is included: its call is enqueued and waits for the
 * opening; detail says "held by policy P, rule R until T".
 *
 * The pipeline: candidates (step 1, dialer.campaign_source_candidates), facts looked
 * up for each (do-not-call entry, today's call, a pending call, a recent call, the
 * enqueue rule broken), the campaign rules (each rule's condition and detail written
 * once, in one list), the calling policies (dialer.compliance_verdict, only for
 * candidates every other rule lets through, and only when a policy is enabled), then
 * duplicates and the daily cap over the whole set.  Included candidates come first,
 * in the order run_campaign takes them: earliest due_at first (no due_at last), then
 * customer_ref.  days overrides lookahead_days.
 */
CREATE FUNCTION dialer.campaign_candidates(campaign text, days int DEFAULT NULL)
RETURNS TABLE (customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz,
			   included boolean, reason text, detail text, dedupe_key text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
SET jit = off
AS $$
DECLARE
	k			dialer.campaigns := dialer.get_campaign(campaign);
	v_rows		dialer.campaign_source_row[];
BEGIN
	IF days IS NOT NULL AND days NOT BETWEEN 0 AND 366 THEN
		PERFORM dialer.raise_bad_argument('days', days::text,
			'days is the lookahead window in days, from 0 (today only) to 366.',
			'Omit it to use the campaign''s lookahead_days.');
	END IF;
	-- the source is read with the caller's rights; the rules are applied by the owner
	EXECUTE dialer.campaign_source_query(k.source) INTO v_rows USING dialer.campaign_timezone(k.timezone);
	RETURN QUERY SELECT * FROM dialer.campaign_candidate_verdicts(k.name, v_rows, days);
END;
$$;
COMMENT ON FUNCTION dialer.campaign_candidates(text, int) IS
	'Every candidate of a campaign''s source with included, the reason it is left out (campaign_disabled, invalid_customer_ref, invalid_phone, invalid_timezone, invalid_payload, do_not_call, not_allowed, outside_lookahead, scheduled_today, call_pending, called_recently, calling_policy, duplicate_customer, duplicate_phone, over_daily_cap) and a detail (for calling_policy, and for an included candidate a policy holds until its opening, the policy and rule); days overrides lookahead_days. Reads the source with the caller''s rights.';

/*
 * A campaign candidate with the facts its rules look at (dialer.campaign_candidate_facts):
 * what the source gave, cleaned, then the facts looked up for it.
 */
CREATE TYPE dialer.campaign_candidate_fact AS (
	ref text, raw_phone text, num text, raw_payload jsonb, pl jsonb, tz text, due timestamptz, ord bigint,
	key text, dnc dialer.do_not_call, dnc_number text, bad_rule text, today_id bigint, today_status text,
	pend_id bigint, pend_status text, pend_number text, recent_id bigint, recent_status text,
	recent_at timestamptz);
COMMENT ON TYPE dialer.campaign_candidate_fact IS
	'Internal: a campaign candidate with the facts its rules look at (dialer.campaign_candidate_facts)';
COMMENT ON COLUMN dialer.campaign_candidate_fact.ref IS 'The customer_ref the source gave';
COMMENT ON COLUMN dialer.campaign_candidate_fact.raw_phone IS 'The phone as the source gave it';
COMMENT ON COLUMN dialer.campaign_candidate_fact.num IS 'The phone with spaces, dots, dashes and parentheses removed';
COMMENT ON COLUMN dialer.campaign_candidate_fact.raw_payload IS 'The payload as the source gave it';
COMMENT ON COLUMN dialer.campaign_candidate_fact.pl IS 'The campaign''s payload with the source''s merged over it';
COMMENT ON COLUMN dialer.campaign_candidate_fact.tz IS 'The time zone the source gave';
COMMENT ON COLUMN dialer.campaign_candidate_fact.due IS 'When the source says the call is due';
COMMENT ON COLUMN dialer.campaign_candidate_fact.ord IS 'Position in the source';
COMMENT ON COLUMN dialer.campaign_candidate_fact.key IS 'The dedupe key a run would give the call';
COMMENT ON COLUMN dialer.campaign_candidate_fact.dnc IS 'The number''s do-not-call entry (NULL: none)';
COMMENT ON COLUMN dialer.campaign_candidate_fact.dnc_number IS 'The number of the do-not-call entry (NULL: none)';
COMMENT ON COLUMN dialer.campaign_candidate_fact.bad_rule IS 'The enqueue rule (dialer.call_rule) the call would break';
COMMENT ON COLUMN dialer.campaign_candidate_fact.today_id IS 'The campaign''s call for the customer today, or the call with the dedupe key';
COMMENT ON COLUMN dialer.campaign_candidate_fact.today_status IS 'Its status';
COMMENT ON COLUMN dialer.campaign_candidate_fact.pend_id IS 'A pending call of the campaign for the customer or the number';
COMMENT ON COLUMN dialer.campaign_candidate_fact.pend_status IS 'Its status';
COMMENT ON COLUMN dialer.campaign_candidate_fact.pend_number IS 'Its number';
COMMENT ON COLUMN dialer.campaign_candidate_fact.recent_id IS 'A call to the number that reached the provider within skip_called_within_days';
COMMENT ON COLUMN dialer.campaign_candidate_fact.recent_status IS 'Its status';
COMMENT ON COLUMN dialer.campaign_candidate_fact.recent_at IS 'When it was due';

/*
 * Step 2 of campaign_candidates: each candidate of the source with what the campaign rules
 * look at: the enqueue rule it breaks, its do-not-call entry, the campaign's call of today
 * (once_per_day) or a call with its dedupe key, a pending call of the campaign for it or its
 * number, and a call that reached the provider within skip_days.
 */
CREATE FUNCTION dialer.campaign_candidate_facts(k dialer.campaigns, source_rows dialer.campaign_source_row[],
												key_suffix text, skip_days int, prov dialer.providers,
												kind dialer.provider_kinds, day_start timestamptz,
												day_end timestamptz)
RETURNS SETOF dialer.campaign_candidate_fact
LANGUAGE sql
STABLE
AS $$
	WITH today_calls AS MATERIALIZED (
		-- the campaign's calls due today, one per customer (bounded by a day's volume)
		SELECT DISTINCT ON (c.customer_ref) c.customer_ref, c.id, c.status
		  FROM dialer.scheduled_calls c
		 WHERE k.once_per_day AND c.campaign = k.name AND c.run_at >= day_start AND c.run_at < day_end
		   AND c.customer_ref IS NOT NULL
		 ORDER BY c.customer_ref, c.id
	)
	SELECT src.*, dnc AS dnc, dnc.number AS dnc_number,
		   dialer.call_rule(
				to_number => src.num, run_at => now(), provider => k.provider,
				payload => CASE WHEN jsonb_typeof(src.raw_payload) <> 'object' THEN src.raw_payload ELSE src.pl END,
				campaign => k.name, dedupe_key => NULL, priority => k.priority, max_attempts => k.max_attempts,
				timezone => src.tz, deadline => NULL, provider_kind => kind,
				provider_hosts => prov.allowed_hosts, provider_twiml_url => prov.twiml_url,
				late_ok => false,
				provider_detection => dialer.provider_detection(prov.machine_detection, prov.async_amd,
																prov.status_callback_url)) AS bad_rule,
		   today.id AS today_id, today.status AS today_status,
		   pend.id AS pend_id, pend.status AS pend_status, pend.to_number AS pend_number,
		   recent.id AS recent_id, recent.status AS recent_status, recent.at AS recent_at
	  FROM dialer.campaign_source_candidates(k, source_rows, key_suffix) src
	  LEFT JOIN LATERAL dialer.do_not_call_entry(src.num) dnc ON true
	  LEFT JOIN today_calls tc ON tc.customer_ref = src.ref
	  LEFT JOIN LATERAL (
			SELECT tc.id, tc.status WHERE tc.id IS NOT NULL
			UNION ALL
			SELECT c.id, c.status FROM dialer.scheduled_calls c
			 WHERE c.dedupe_key = src.key
			LIMIT 1) today ON true
	  LEFT JOIN LATERAL (
			SELECT c.id, c.status, c.to_number FROM dialer.scheduled_calls c
			 WHERE c.campaign = k.name AND c.customer_ref = src.ref
			   AND c.status = ANY (dialer.pending_statuses())
			UNION ALL
			SELECT c.id, c.status, c.to_number FROM dialer.scheduled_calls c
			 WHERE c.to_number = src.num AND c.campaign = k.name
			   AND c.status = ANY (dialer.pending_statuses())
			LIMIT 1) pend ON true
	  LEFT JOIN LATERAL (
			SELECT c.id, c.status, greatest(c.run_at, c.next_attempt_at) AS at
			  FROM dialer.scheduled_calls c
			 WHERE skip_days > 0 AND c.to_number = src.num
			   AND c.status IN ('dispatching', 'dialing', 'completed', 'no_answer', 'busy', 'failed', 'unknown')
			   AND greatest(c.run_at, c.next_attempt_at) > now() - make_interval(days => skip_days)
			   AND greatest(c.run_at, c.next_attempt_at) <= now()
			 ORDER BY greatest(c.run_at, c.next_attempt_at) DESC
			 LIMIT 1) recent ON true;
$$;
COMMENT ON FUNCTION dialer.campaign_candidate_facts(dialer.campaigns, dialer.campaign_source_row[], text, int, dialer.providers, dialer.provider_kinds, timestamptz, timestamptz) IS
	'Internal: step 2 of campaign_candidates: each candidate with its do-not-call entry, the enqueue rule it breaks, today''s, a pending and a recent call';

/*
 * The detail of the campaign rule why that candidate f breaks (step 3 of
 * campaign_candidates): each rule's sentence written once, formatted for the first rule a
 * candidate breaks only.
 */
CREATE FUNCTION dialer.campaign_rule_detail(why text, f dialer.campaign_candidate_fact, k dialer.campaigns,
											prov dialer.providers, kind dialer.provider_kinds, tz text, today date,
											days int, skip_days int)
RETURNS text
LANGUAGE sql
STABLE
AS $$
	SELECT CASE why
			 WHEN 'campaign_disabled' THEN format('campaign %s is disabled', quote_literal(k.name))
			 WHEN 'invalid_customer_ref' THEN 'customer_ref is NULL or empty'
			 WHEN 'invalid_phone' THEN
				format('phone %s is not an E.164 number (+, then 8 to 15 digits, the first not 0)',
					   coalesce(quote_literal(f.raw_phone), 'NULL'))
			 WHEN 'invalid_timezone' THEN format('time zone %s is not known to PostgreSQL', quote_literal((f).tz))
			 WHEN 'invalid_payload' THEN coalesce(dialer.campaign_payload_detail(f.bad_rule, f.raw_payload, f.pl),
				(SELECT x.message || ' (' || x.detail || ')'
				   FROM dialer.call_refusal(
						to_number => f.num, run_at => now(), provider => k.provider, payload => f.pl,
						campaign => k.name, dedupe_key => NULL, priority => k.priority,
						max_attempts => k.max_attempts, timezone => (f).tz, deadline => NULL,
						provider_kind => kind, provider_hosts => prov.allowed_hosts,
						provider_twiml_url => prov.twiml_url, late_ok => false,
						provider_detection => dialer.provider_detection(prov.machine_detection, prov.async_amd,
																		prov.status_callback_url)) x))
			 WHEN 'do_not_call' THEN dialer.do_not_call_detail(f.dnc)
			 WHEN 'not_allowed' THEN
				format('%s is not in the campaign''s allowed_numbers (pilot allow-list)', f.num)
			 WHEN 'outside_lookahead' THEN
				format('due on %s, outside the lookahead window %s to %s (%s)',
					   (f.due AT TIME ZONE tz)::date, today, today + days, tz)
			 WHEN 'scheduled_today' THEN
				format('call %s (%s) is already scheduled for this customer today', f.today_id, f.today_status)
			 WHEN 'call_pending' THEN format('call %s to %s is still %s', f.pend_id, f.pend_number, f.pend_status)
			 WHEN 'called_recently' THEN
				format('call %s reached the provider at %s (%s), within the last %s days',
					   f.recent_id, f.recent_at, f.recent_status, skip_days)
		   END;
$$;
COMMENT ON FUNCTION dialer.campaign_rule_detail(text, dialer.campaign_candidate_fact, dialer.campaigns, dialer.providers, dialer.provider_kinds, text, date, int, int) IS
	'Internal: step 3 of campaign_candidates: the sentence of the campaign rule a candidate breaks first';

/*
 * The rules of campaign_candidates applied to the rows read from the campaign's
 * source (see there), as the extension owner: the calling policies, consents and
 * providers' settings they read are not the caller's to read.  Granted with
 * dialer.grant_campaigns; a role that may run it may read the queue and the
 * do-not-call list already.
 */
CREATE FUNCTION dialer.campaign_candidate_verdicts(campaign text, source_rows dialer.campaign_source_row[], days int)
RETURNS TABLE (customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz,
			   included boolean, reason text, detail text, dedupe_key text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
SET jit = off
AS $$
DECLARE
	k			dialer.campaigns := dialer.get_campaign(campaign);
	v_days		int := coalesce(days, k.lookahead_days);
	v_tz		text := dialer.campaign_timezone(k.timezone);
	v_today		date := (now() AT TIME ZONE v_tz)::date;
	v_start		timestamptz := v_today::timestamp AT TIME ZONE v_tz;
	v_end		timestamptz := (v_today + 1)::timestamp AT TIME ZONE v_tz;
	v_suffix	text := CASE WHEN k.once_per_day THEN to_char(v_today, 'YYYY-MM-DD')
							 ELSE to_char(now() AT TIME ZONE v_tz, 'YYYY-MM-DD"T"HH24:MI') END;
	v_skip		int := coalesce(k.skip_called_within_days, 0);
	v_policies	boolean := EXISTS (SELECT 1 FROM dialer.calling_policies p WHERE p.enabled);
	v_rows		dialer.campaign_source_row[] := source_rows;
	v_prov		dialer.providers;
	v_kind		dialer.provider_kinds;
	v_used		int;
	v_left		int;
BEGIN
	SELECT * INTO v_prov FROM dialer.providers p WHERE p.name = k.provider;
	SELECT * INTO v_kind FROM dialer.provider_kinds pk WHERE pk.kind = v_prov.kind;
	SELECT count(*) INTO v_used
	  FROM dialer.scheduled_calls c
	 WHERE c.campaign = k.name AND c.run_at >= v_start AND c.run_at < v_end
	   AND c.status NOT IN ('canceled', 'skipped');
	v_left := CASE WHEN k.max_calls_per_day IS NOT NULL THEN greatest(k.max_calls_per_day - v_used, 0) END;

	RETURN QUERY
	WITH facts AS (
		SELECT x.*, x AS fact
		  FROM dialer.campaign_candidate_facts(k, v_rows, v_suffix, v_skip, v_prov, v_kind, v_start, v_end) x
	), ruled AS (
		-- the campaign rules, in order, each with its condition and its detail once; the
		-- first broken one is the candidate's reason (the details are formatted for it only)
		SELECT f.*, r.why, r.why_detail
		  FROM (SELECT x.*, dialer.campaign_reason_of_call_rule(x.bad_rule) AS bad FROM facts x) f
		  LEFT JOIN LATERAL (
				SELECT l.why, dialer.campaign_rule_detail(l.why, f.fact, k, v_prov, v_kind, v_tz, v_today, v_days, v_skip) AS why_detail
				  FROM (VALUES
						(1, 'campaign_disabled', NOT k.enabled),
						(2, 'invalid_customer_ref', f.ref IS NULL OR btrim(f.ref) = ''),
						(3, 'invalid_phone', f.bad = 'invalid_phone'),
						(4, 'invalid_timezone', f.bad = 'invalid_timezone'),
						(5, 'invalid_payload', f.bad = 'invalid_payload'),
						(6, 'do_not_call', f.dnc_number IS NOT NULL),
						(7, 'not_allowed', k.allowed_numbers IS NOT NULL AND f.num <> ALL (k.allowed_numbers)),
						(8, 'outside_lookahead', f.due IS NOT NULL
							 AND (f.due AT TIME ZONE v_tz)::date NOT BETWEEN v_today AND v_today + v_days),
						(9, 'scheduled_today', f.today_id IS NOT NULL),
						(10, 'call_pending', f.pend_id IS NOT NULL),
						(11, 'called_recently', f.recent_id IS NOT NULL)) l(o, why, broken)
				 WHERE l.broken
				 ORDER BY l.o
				 LIMIT 1) r ON true
	), policed AS (
		-- the calling policies, for the candidates the campaign rules let through, as a
		-- call enqueued now would meet them (no verdict at all when no policy is enabled)
		SELECT r.*, pv.decision, pv.next_opening,
			   format('policy %s, rule %s: %s', pv.policy, pv.rule,
					  regexp_replace(pv.reason, '^policy [^,]+, rule [a-z_]+: ', '')) AS policy_detail
		  FROM ruled r
		  LEFT JOIN LATERAL (
				SELECT v.* FROM dialer.compliance_verdict(r.num, now(), coalesce(r.tz, k.timezone), k.name, k.provider,
														  r.pl->>'purpose', k.call_window_start, k.call_window_end) v
				 WHERE v_policies AND r.why IS NULL AND cardinality(v.policies) > 0) pv ON true
	), ruled_all AS (
		SELECT p.*,
			   coalesce(p.why, CASE WHEN p.decision = 'refuse' THEN 'calling_policy' END) AS why1,
			   CASE WHEN p.why IS NOT NULL THEN p.why_detail
					WHEN p.decision = 'refuse' THEN p.policy_detail
					WHEN p.decision = 'park' THEN format('held until %s: %s', p.next_opening, p.policy_detail) END AS detail1
		  FROM policed p
	), by_customer AS (
		SELECT ra.*,
			   row_number() OVER (PARTITION BY ra.why1 IS NULL, ra.ref
								  ORDER BY ra.due NULLS LAST, ra.ord) AS n_ref
		  FROM ruled_all ra
	), by_number AS (
		SELECT b.*,
			   coalesce(b.why1, CASE WHEN b.n_ref > 1 THEN 'duplicate_customer' END) AS why2,
			   row_number() OVER (PARTITION BY b.why1 IS NULL AND b.n_ref = 1, b.num
								  ORDER BY b.due NULLS LAST, b.ref, b.ord) AS n_num,
			   first_value(b.ref) OVER (PARTITION BY b.why1 IS NULL AND b.n_ref = 1, b.num
										ORDER BY b.due NULLS LAST, b.ref, b.ord) AS num_owner
		  FROM by_customer b
	), capped AS (
		SELECT n.*,
			   coalesce(n.why2, CASE WHEN n.n_num > 1 THEN 'duplicate_phone' END) AS why3,
			   row_number() OVER (PARTITION BY coalesce(n.why2, CASE WHEN n.n_num > 1 THEN 'duplicate_phone' END) IS NULL
								  ORDER BY n.due NULLS LAST, n.ref, n.ord) AS pick
		  FROM by_number n
	), final AS (
		SELECT c.*,
			   coalesce(c.why3, CASE WHEN v_left IS NOT NULL AND c.pick > v_left THEN 'over_daily_cap' END) AS verdict
		  FROM capped c
	)
	SELECT f.ref, coalesce(f.num, f.raw_phone), f.pl, coalesce(f.tz, k.timezone), f.due,
		   f.verdict IS NULL,
		   f.verdict,
		   CASE f.verdict
				WHEN 'duplicate_customer' THEN
					format('customer %s appears more than once in the source; its earliest due row is kept', quote_literal(f.ref))
				WHEN 'duplicate_phone' THEN
					format('%s is also the number of customer %s, who is called', f.num, quote_literal(f.num_owner))
				WHEN 'over_daily_cap' THEN
					format('the daily cap of %s calls is reached (%s due today before this run)', k.max_calls_per_day, v_used)
				ELSE f.detail1 END,
		   CASE WHEN f.verdict IS NULL THEN f.key END
	  FROM final f
	 ORDER BY f.verdict IS NOT NULL, f.due NULLS LAST, f.ref, f.ord;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_candidate_verdicts(text, dialer.campaign_source_row[], int) IS
	'Internal: the rules of dialer.campaign_candidates applied, as the extension owner, to the rows read from a campaign''s source';

/*
 * The candidates a run would enqueue now, in the order it takes them.
 */
CREATE FUNCTION dialer.pending_customers(campaign text, days int DEFAULT NULL, max_rows int DEFAULT 50)
RETURNS TABLE (customer_ref text, phone text, payload jsonb, timezone text, due_at timestamptz, dedupe_key text)
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF max_rows < 0 THEN
		PERFORM dialer.raise_bad_argument('max_rows', max_rows::text,
			'max_rows is how many candidates to return: 0 or more (NULL: all).', 'Omit it for 50.');
	END IF;
	RETURN QUERY
		SELECT c.customer_ref, c.phone, c.payload, c.timezone, c.due_at, c.dedupe_key
		  FROM dialer.campaign_candidates(campaign, days) c
		 WHERE c.included
		 LIMIT max_rows;
END;
$$;
COMMENT ON FUNCTION dialer.pending_customers(text, int, int) IS
	'The candidates of a campaign left after every rule and the do-not-call list, in the order run_campaign takes them (at most max_rows; NULL: all). Why others are left out: dialer.campaign_candidates().';

/* -------------------------------------------------------------------- runs */

/*
 * Enqueues one candidate of a campaign (run_campaign's writer): the campaign's provider
 * and priority, the dedupe key, and the customer_ref stamped on the call.  Returns the
 * new call's id, or NULL when the dedupe key is already stored (nothing written).
 */
CREATE FUNCTION dialer.campaign_enqueue(campaign text, customer_ref text, to_number text, payload jsonb,
										timezone text, dedupe_key text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	k		dialer.campaigns := dialer.get_campaign(campaign_enqueue.campaign);
	v_id	bigint;
BEGIN
	IF campaign_enqueue.dedupe_key IS NULL THEN
		PERFORM dialer.raise_bad_argument('dedupe_key', NULL, 'Campaign calls always carry a dedupe key.',
			'Use dialer.run_campaign().', '22004');
	END IF;
	IF EXISTS (SELECT 1 FROM dialer.scheduled_calls c WHERE c.dedupe_key = campaign_enqueue.dedupe_key) THEN
		RETURN NULL;
	END IF;
	v_id := dialer.enqueue_call(
		to_number => campaign_enqueue.to_number,
		run_at => now(),
		provider => k.provider,
		payload => campaign_enqueue.payload,
		campaign => k.name,
		dedupe_key => campaign_enqueue.dedupe_key,
		priority => k.priority,
		max_attempts => k.max_attempts,
		timezone => campaign_enqueue.timezone);
	UPDATE dialer.scheduled_calls c
	   SET customer_ref = campaign_enqueue.customer_ref
	 WHERE c.id = v_id AND c.customer_ref IS NULL;
	RETURN v_id;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_enqueue(text, text, text, jsonb, text, text) IS
	'Internal: enqueues one candidate of a campaign (provider, priority, max_attempts of the campaign; customer_ref stamped); NULL when its dedupe key is already stored';

/*
 * Enqueues the pending customers of a campaign, at most max_calls, and returns how many
 * it enqueued.  Runs of one campaign are serialized by a transaction-level advisory lock
 * taken before the candidates are read, so two sessions running it at once (or pg_cron
 * and a person pressing "run now") never schedule a customer twice and never exceed the
 * daily cap; every call also carries a dedupe key campaign:<name>:<customer_ref>:<local
 * date> (…:<local date>T<HH:MM> when once_per_day is off).  The candidates go to
 * dialer.enqueue_calls() in one set-based, all-or-nothing call.
 */
CREATE FUNCTION dialer.run_campaign(campaign text, max_calls int DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k		dialer.campaigns := dialer.get_campaign(campaign);
	v_n		int := 0;
BEGIN
	IF max_calls < 0 THEN
		PERFORM dialer.raise_bad_argument('max_calls', max_calls::text,
			'max_calls is the most calls this run enqueues: 0 or more (NULL: no limit beyond the campaign''s rules).',
			'Omit it to enqueue every pending customer.');
	END IF;
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION 'dialer.run_campaign must run at READ COMMITTED isolation, not %',
			upper(current_setting('transaction_isolation'))
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Runs of a campaign wait for each other; a snapshot taken before the wait would not see the calls the other run enqueued, and the daily cap could be exceeded.',
				  HINT = 'Call it in a READ COMMITTED transaction (the default).';
	END IF;

	PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.campaign'), hashtext(k.name));
	k := dialer.get_campaign(k.name);	-- as committed by whoever held the lock before us
	IF NOT k.enabled THEN
		RAISE NOTICE 'campaign % is disabled: nothing enqueued', quote_literal(k.name);
		RETURN 0;
	END IF;

	-- one set-based enqueue of every included candidate, all or nothing: a candidate
	-- enqueue_calls refuses (e.g. a Twilio provider with nothing to say) fails the run
	SELECT count(*) FILTER (WHERE e.outcome IN ('scheduled', 'skipped'))
	  INTO v_n
	  FROM dialer.enqueue_calls(
			(SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
						'to_number', c.phone, 'provider', k.provider, 'payload', c.payload,
						'campaign', k.name, 'dedupe_key', c.dedupe_key, 'priority', k.priority,
						'max_attempts', k.max_attempts, 'timezone', c.timezone,
						'customer_ref', c.customer_ref)) || jsonb_build_object('payload', c.payload)
						ORDER BY c.n), '[]')
			   FROM (SELECT cc.*, row_number() OVER () AS n
					   FROM dialer.campaign_candidates(k.name) cc
					  WHERE cc.included
					  LIMIT max_calls) c)) e;
	RETURN v_n;
END;
$$;
COMMENT ON FUNCTION dialer.run_campaign(text, int) IS
	'Enqueues the pending customers of a campaign (at most max_calls) with dedupe keys and returns how many it enqueued; concurrent runs of one campaign are serialized, so nobody is scheduled twice and the daily cap holds. Also "run now".';

/* -------------------------------------------------------------- scheduling */

/*
 * Scheduled runs, one row per (campaign, slot): the claim that makes a slot run once.
 */
CREATE TABLE dialer.campaign_runs (
	id				bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	campaign		text NOT NULL REFERENCES dialer.campaigns (name) ON UPDATE CASCADE ON DELETE CASCADE,
	slot			timestamptz NOT NULL,
	local_slot		timestamp NOT NULL,
	timezone		text NOT NULL,
	run_as			name,
	started_at		timestamptz NOT NULL DEFAULT clock_timestamp(),
	finished_at		timestamptz,
	outcome			text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'error', 'disabled')),
	enqueued		int,
	error			text,
	UNIQUE (campaign, slot)
);
COMMENT ON TABLE dialer.campaign_runs IS
	'Scheduled runs of campaigns, one per (campaign, slot): what fired when, how many calls it enqueued, or its error. Kept 90 days (the latest run of a campaign always).';
COMMENT ON COLUMN dialer.campaign_runs.slot IS 'The instant the schedule asked for (the run itself started at started_at)';
COMMENT ON COLUMN dialer.campaign_runs.local_slot IS 'The slot as local time in the campaign''s time zone';
COMMENT ON COLUMN dialer.campaign_runs.run_as IS 'Role whose privileges the run used (the campaign''s scheduled_by)';
COMMENT ON COLUMN dialer.campaign_runs.outcome IS 'running, ok, error (see error) or disabled (the campaign was disabled at its slot: nothing enqueued)';
COMMENT ON COLUMN dialer.campaign_runs.id IS 'Run id (identity)';
COMMENT ON COLUMN dialer.campaign_runs.campaign IS 'The campaign (dialer.campaigns) that ran';
COMMENT ON COLUMN dialer.campaign_runs.timezone IS 'The campaign''s time zone at the run (of local_slot)';
COMMENT ON COLUMN dialer.campaign_runs.started_at IS 'When the run started';
COMMENT ON COLUMN dialer.campaign_runs.finished_at IS 'When the run ended (NULL: running)';
COMMENT ON COLUMN dialer.campaign_runs.enqueued IS 'How many calls the run enqueued';
COMMENT ON COLUMN dialer.campaign_runs.error IS 'Error message of a run with outcome error';
COMMENT ON SEQUENCE dialer.campaign_runs_id_seq IS 'Identity of dialer.campaign_runs.id';
SELECT pg_catalog.pg_extension_config_dump('dialer.campaign_runs', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.campaign_runs', 'id'), '');

CREATE FUNCTION dialer.require_pg_cron()
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron') THEN
		RAISE EXCEPTION 'pg_cron is not installed in database %', quote_ident(current_database())
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Campaign schedules are run by a pg_cron job. cron.database_name is %s.',
								  coalesce(quote_literal(nullif(current_setting('cron.database_name', true), '')),
										   'not set (pg_cron is not in shared_preload_libraries)')),
				  HINT = 'CREATE EXTENSION pg_cron in the database named by cron.database_name (pg_cron must be in shared_preload_libraries), and use pg_dialer in that database; or run campaigns yourself with dialer.run_campaign().';
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.require_pg_cron() IS
	'Internal: raises SQLSTATE 55000 "pg_cron is not installed" unless pg_cron is in this database';

/*
 * The one pg_cron job, owned by the extension owner, that runs
 * dialer.run_scheduled_campaigns() every minute while any campaign is scheduled.
 * pg_cron is looked up at run time (dynamic SQL with parameters): pg_dialer does not
 * depend on it.
 */
CREATE FUNCTION dialer.campaign_ticker(enable boolean)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_job		bigint;
	v_sched		text;
	v_cmd		text;
BEGIN
	PERFORM dialer.require_pg_cron();
	EXECUTE 'SELECT j.jobid, j.schedule, j.command FROM cron.job j WHERE j.jobname = $1 AND j.username = current_user'
	   INTO v_job, v_sched, v_cmd
	  USING 'pg_dialer_campaigns'::text;
	IF enable THEN
		IF v_job IS NULL OR v_sched <> '* * * * *' OR v_cmd <> 'SELECT dialer.run_scheduled_campaigns()' THEN
			EXECUTE 'SELECT cron.schedule($1, $2, $3)'
			   INTO v_job
			  USING 'pg_dialer_campaigns'::text, '* * * * *'::text, 'SELECT dialer.run_scheduled_campaigns()'::text;
		END IF;
		RETURN v_job;
	END IF;
	IF v_job IS NOT NULL THEN
		EXECUTE 'SELECT cron.unschedule($1)' USING v_job;
	END IF;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.campaign_ticker(boolean) IS
	'Internal: creates (true) or removes (false) the pg_cron job pg_dialer_campaigns that runs dialer.run_scheduled_campaigns() every minute; returns its job id';

/*
 * Schedules a campaign: schedule is read in the campaign's time zone ('daily 10:00' in
 * Asia/Kolkata is 10:00 IST every day; in America/New_York it is 10:00 EST or EDT).
 * Returns the next run.  Needs pg_cron in this database.
 */
CREATE FUNCTION dialer.schedule_campaign(campaign text, schedule text)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	k		dialer.campaigns := dialer.get_campaign(schedule_campaign.campaign);
	v_s		text := (dialer.parse_schedule(schedule_campaign.schedule)).normalized;
	v_tz	text := dialer.campaign_timezone(k.timezone);
	v_next	timestamptz := dialer.schedule_next_run(v_s, v_tz, now());
BEGIN
	IF v_next IS NULL THEN
		PERFORM dialer.raise_bad_argument('schedule', schedule_campaign.schedule,
			'This schedule never runs (no date in the next 8 years matches its day and month fields).',
			'Check the day-of-month and month fields, e.g. ''0 9 30 2 *'' asks for February 30.');
	END IF;
	PERFORM dialer.require_pg_cron();
	PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.campaign'), hashtext('pg_dialer_campaigns ticker'));
	UPDATE dialer.campaigns c
	   SET schedule = v_s, schedule_since = now(), scheduled_by = current_user
	 WHERE c.name = k.name;
	PERFORM dialer.campaign_ticker(true);
	RETURN v_next;
END;
$$;
COMMENT ON FUNCTION dialer.schedule_campaign(text, text) IS
	'Schedules a campaign on pg_cron: schedule (''daily HH:MM'', @daily..., or a 5-field cron expression) is read in the campaign''s time zone, across daylight-saving changes; runs use the caller''s privileges. Returns the next run. Error 55000 when pg_cron is not installed here.';

/*
 * Undoes schedule_campaign: true when the campaign was scheduled.  Removes the pg_cron
 * job when no campaign is scheduled any more.
 */
CREATE FUNCTION dialer.unschedule_campaign(campaign text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k	dialer.campaigns := dialer.get_campaign(campaign);
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('pg_dialer.campaign'), hashtext('pg_dialer_campaigns ticker'));
	k := dialer.get_campaign(k.name);
	IF k.schedule IS NULL THEN
		RETURN false;
	END IF;
	UPDATE dialer.campaigns c
	   SET schedule = NULL, schedule_since = NULL, scheduled_by = NULL
	 WHERE c.name = k.name;
	IF NOT EXISTS (SELECT 1 FROM dialer.campaigns c WHERE c.schedule IS NOT NULL)
	   AND EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron') THEN
		PERFORM dialer.campaign_ticker(false);
	END IF;
	RETURN true;
END;
$$;
COMMENT ON FUNCTION dialer.unschedule_campaign(text) IS
	'Unschedules a campaign (true when it was scheduled); the pg_cron job goes when no campaign is scheduled';

/*
 * Run by DROP EXTENSION pg_dialer just before the extension goes (src/backend_hooks.c, in the
 * dropping backend and transaction): removes the pg_cron job pg_dialer scheduled (it
 * would fail every minute once dialer.run_scheduled_campaigns is gone), warns about other
 * pg_cron jobs whose command names a dialer function (they would fail too: they are the
 * user's to remove), and warns when calls are still to be placed or in progress (their
 * outcomes can no longer be recorded; a request already sent may still ring).  A DROP
 * that fails afterwards rolls all of it back.
 */
CREATE FUNCTION dialer.before_drop()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_scheduled	bigint;
	v_active	bigint;
	v_unknown	bigint;
	v_jobs		text;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'pg_cron') THEN
		EXECUTE 'SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = $1 AND j.command = $2'
		  USING 'pg_dialer_campaigns'::text, 'SELECT dialer.run_scheduled_campaigns()'::text;
		EXECUTE 'SELECT string_agg(format(''%s (%s)'', coalesce(quote_literal(j.jobname), ''job '' || j.jobid), j.command), ''; '')
				   FROM cron.job j WHERE j.command ~ $1 AND j.database = current_database()'
		   INTO v_jobs
		  USING '\mdialer(_admin|_api)?\.'::text;
		IF v_jobs IS NOT NULL THEN
			RAISE WARNING 'pg_cron jobs that call pg_dialer will fail once it is dropped: %', v_jobs
				USING HINT = 'Remove them with SELECT cron.unschedule(jobid), or re-create the extension.';
		END IF;
	END IF;

	SELECT count(*) FILTER (WHERE c.status = 'scheduled'),
		   count(*) FILTER (WHERE c.status = ANY (dialer.in_progress_statuses())),
		   count(*) FILTER (WHERE c.status = 'unknown')
	  INTO v_scheduled, v_active, v_unknown
	  FROM dialer.scheduled_calls c
	 WHERE c.status = ANY (dialer.open_statuses());
	IF v_scheduled + v_active + v_unknown > 0 THEN
		RAISE WARNING 'DROP EXTENSION pg_dialer drops % scheduled call(s), % call(s) in progress and % unknown call(s)',
			v_scheduled, v_active, v_unknown
			USING DETAIL = 'Scheduled calls will not be placed; a call in progress may already be ringing, and its outcome can no longer be recorded.',
				  HINT = 'To keep them, let them finish first, or save them with pg_dump -n dialer (a DROP EXTENSION inside a transaction can still be rolled back).';
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.before_drop() IS
	'Internal: run by DROP EXTENSION pg_dialer before the drop: removes pg_dialer''s pg_cron job, warns about other pg_cron jobs calling pg_dialer and about calls still scheduled, in progress or unknown';

/*
 * What the pg_cron job runs every minute: for each scheduled campaign, the latest slot
 * of its schedule in (its last run's slot or when it was scheduled, at] is claimed in
 * dialer.campaign_runs (unique per campaign and slot, so a slot runs once even if two
 * callers race) and run with the privileges of the role that scheduled it.  Slots missed
 * while nothing ran (server down) collapse into one late run.  A failing campaign is
 * recorded as error and does not stop the others.  `at` is the instant to evaluate
 * (tests pass one; the enqueued calls always use the real time).  Returns how many
 * slots it claimed.
 */
CREATE FUNCTION dialer.run_scheduled_campaigns(at timestamptz DEFAULT now())
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	k		record;
	v_me	name := current_user;
	v_tz	text;
	v_last	timestamptz;
	v_slot	timestamptz;
	v_run	bigint;
	v_n		int;
	v_count	int := 0;
	v_msg	text;
BEGIN
	IF at IS NULL THEN
		PERFORM dialer.raise_bad_argument('at', NULL, 'The instant to evaluate is required.', 'Omit it for now().', '22004');
	END IF;
	FOR k IN SELECT * FROM dialer.campaigns c WHERE c.schedule IS NOT NULL ORDER BY c.name LOOP
		v_tz := dialer.campaign_timezone(k.timezone);
		SELECT max(r.slot) INTO v_last FROM dialer.campaign_runs r WHERE r.campaign = k.name;
		v_slot := dialer.schedule_last_run(k.schedule, v_tz, at, greatest(v_last, k.schedule_since));
		CONTINUE WHEN v_slot IS NULL;

		INSERT INTO dialer.campaign_runs AS r (campaign, slot, local_slot, timezone, run_as)
		VALUES (k.name, v_slot, v_slot AT TIME ZONE v_tz, v_tz, k.scheduled_by)
		ON CONFLICT (campaign, slot) DO NOTHING
		RETURNING r.id INTO v_run;
		CONTINUE WHEN v_run IS NULL;
		v_count := v_count + 1;

		DELETE FROM dialer.campaign_runs r
		 WHERE r.campaign = k.name AND r.slot < at - interval '90 days' AND r.id <> v_run;

		IF NOT k.enabled THEN
			UPDATE dialer.campaign_runs r SET outcome = 'disabled', enqueued = 0, finished_at = clock_timestamp()
			 WHERE r.id = v_run;
			CONTINUE;
		END IF;
		BEGIN
			IF k.scheduled_by <> v_me THEN
				PERFORM set_config('role', k.scheduled_by, true);
			END IF;
			v_n := dialer.run_campaign(k.name);
			IF k.scheduled_by <> v_me THEN
				PERFORM set_config('role', v_me, true);
			END IF;
			UPDATE dialer.campaign_runs r SET outcome = 'ok', enqueued = v_n, finished_at = clock_timestamp()
			 WHERE r.id = v_run;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
			UPDATE dialer.campaign_runs r SET outcome = 'error', error = v_msg, finished_at = clock_timestamp()
			 WHERE r.id = v_run;
			RAISE WARNING 'pg_dialer: scheduled run of campaign % (slot %) failed: %', quote_literal(k.name), v_slot, v_msg;
		END;
	END LOOP;
	RETURN v_count;
END;
$$;
COMMENT ON FUNCTION dialer.run_scheduled_campaigns(timestamptz) IS
	'Run by the pg_cron job every minute: runs each scheduled campaign whose latest local-time slot up to `at` has not run yet (once per slot, recorded in dialer.campaign_runs); returns how many slots it ran';

CREATE VIEW dialer.campaign_schedules AS
SELECT c.name AS campaign,
	   c.schedule,
	   dialer.campaign_timezone(c.timezone) AS timezone,
	   c.enabled,
	   c.scheduled_by,
	   c.schedule_since,
	   r.slot AS last_slot,
	   r.started_at AS last_started_at,
	   r.outcome AS last_outcome,
	   r.enqueued AS last_enqueued,
	   r.error AS last_error,
	   coalesce(dialer.schedule_last_run(c.schedule, dialer.campaign_timezone(c.timezone), now(),
										 greatest(r.slot, c.schedule_since)),
				dialer.schedule_next_run(c.schedule, dialer.campaign_timezone(c.timezone), now())) AS next_run_at
  FROM dialer.campaigns c
  LEFT JOIN LATERAL (SELECT * FROM dialer.campaign_runs r WHERE r.campaign = c.name
					  ORDER BY r.slot DESC LIMIT 1) r ON true
 WHERE c.schedule IS NOT NULL;
COMMENT ON VIEW dialer.campaign_schedules IS
	'Scheduled campaigns: schedule, time zone, the last run (slot, outcome, calls enqueued, error) and the next run (a slot already due that the next pg_cron tick will run, else the next one)';
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

/* -------------------------------------------------------------- privileges */

/*
 * Grants a role the use of campaigns: read them and their runs, see pending customers
 * and reasons, run them (the role must be able to read each campaign's source itself).
 * With manage => true also create, change and delete campaigns and outcome rule sets, and
 * (un)schedule campaigns.
 */
CREATE FUNCTION dialer.grant_campaigns(role_name name, manage boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.grant_to(role_name,		/* in 90_privileges.sql */
		'SELECT ON dialer.campaigns, dialer.campaign_runs, dialer.campaign_schedules, '
		'dialer.scheduled_calls, dialer.do_not_call, dialer.outcome_classes, dialer.outcome_rule_sets, '
		'dialer.outcome_rules',
		'SELECT (name, kind, enabled) ON dialer.providers',
		'EXECUTE ON FUNCTION dialer.pending_customers(text, int, int), '
		'dialer.campaign_candidates(text, int), dialer.run_campaign(text, int), '
		'dialer.campaign_candidate_verdicts(text, dialer.campaign_source_row[], int), '
		'dialer.campaign_enqueue(text, text, text, jsonb, text, text), dialer.enqueue_calls(jsonb, boolean), '
		'dialer.get_campaign(text), dialer.campaign_timezone(text), '
		'dialer.resolve_campaign_source(text), dialer.campaign_source_columns(text), '
		'dialer.campaign_source_query(text), dialer.raise_bad_argument(text, text, text, text, text), '
		'dialer.parse_schedule(text), dialer.cron_field(text, text, int, int, text[], text), '
		'dialer.schedule_runs(text, text, timestamptz, timestamptz), '
		'dialer.schedule_next_run(text, text, timestamptz), '
		'dialer.schedule_last_run(text, text, timestamptz, timestamptz)');
	IF manage THEN
		PERFORM dialer.grant_to(role_name,
			'INSERT, UPDATE, DELETE ON dialer.campaigns, dialer.outcome_rule_sets, dialer.outcome_rules',
			'EXECUTE ON FUNCTION dialer.copy_outcome_rules(text, text, text), '
			'dialer.schedule_campaign(text, text), dialer.unschedule_campaign(text), '
			'dialer.require_pg_cron(), dialer.campaign_ticker(boolean)');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.grant_campaigns(name, boolean) IS
	'Grants a role the use of campaigns (pending_customers, campaign_candidates, run_campaign, schedules); manage => true also lets it write dialer.campaigns and the outcome rule sets, and (un)schedule them. Sources are read with the role''s own rights.';
