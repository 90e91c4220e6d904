/*
 * pg_dialer: the recipient's time: zones and calling windows.
 *
 * dialer.number_timezones          libphonenumber's prefix -> time-zone map (loaded by the part
 *                                  16_number_timezones_data.sql, built from sql/install/data/)
 * dialer.recipient_zones()         a call's zones: the call's, the campaign's, the number's
 * dialer.next_window_opening(), zones_window_opening()  when a window opens in one or all zones
 * dialer.call_timezones(), next_local_time()  what the API says about a number's local time
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * The start of the next calling window at or after instant at, in zone tz, for a
 * window [window_start, window_end) of local times.  NULL when at is inside the
 * window.
 */
CREATE FUNCTION dialer.next_window_opening(at timestamptz, tz text, window_start time, window_end time)
RETURNS timestamptz
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
-- no SET clause: it would stop the planner inlining this into claim_calls' query
AS $$
	SELECT CASE
		WHEN (at AT TIME ZONE tz)::time >= window_start
			 AND ((at AT TIME ZONE tz)::time < window_end OR window_end = '00:00' OR window_end = '24:00')
			THEN NULL
		WHEN (at AT TIME ZONE tz)::time < window_start
			THEN (date_trunc('day', at AT TIME ZONE tz) + window_start) AT TIME ZONE tz
		ELSE (date_trunc('day', at AT TIME ZONE tz) + interval '1 day' + window_start) AT TIME ZONE tz
	END;
$$;
COMMENT ON FUNCTION dialer.next_window_opening(timestamptz, text, time, time) IS
	'Internal: NULL when instant at is inside the local calling window [window_start, window_end) of zone tz, else when the window next opens';

/*
 * What a claim's event says about the zones the general calling window was read in:
 * the zones and their source (dialer.recipient_zones); when the number's zone is
 * unknown and dialer.default_timezone stood in for it, a warning saying so.
 */
CREATE FUNCTION dialer.window_zones_detail(to_number text, zones text[], source text)
RETURNS jsonb
LANGUAGE sql
STABLE	-- as the functions it calls are (IMMUTABLE kept it from being inlined)
AS $$
	SELECT jsonb_build_object('timezones', zones, 'timezone_source', source)
		   || CASE WHEN source = 'default' THEN jsonb_build_object('warning',
				  format('the time zone of %s is not known from the number: the calling window was read in dialer.default_timezone (%s); give the call or its campaign a timezone',
						 to_number, zones[1])) ELSE '{}' END;
$$;
COMMENT ON FUNCTION dialer.window_zones_detail(text, text[], text) IS
	'Internal: the zones (and their source) a claim read the general calling window in, as event detail; a warning when dialer.default_timezone stood in for an unknown zone';

/*
 * Why a call was skipped because the general window is never open in all of its
 * number's zones at once.
 */
CREATE FUNCTION dialer.no_window_message(to_number text, zones text[], window_start time, window_end time)
RETURNS text
LANGUAGE sql
STABLE	-- as the functions it calls are (IMMUTABLE kept it from being inlined)
AS $$
	SELECT format('the calling window %s-%s is never open at the same time in all %s time zones %s may be in (%s): not dialled; give the call or its campaign a timezone',
				  to_char(window_start, 'HH24:MI'), to_char(window_end, 'HH24:MI'), cardinality(zones), to_number,
				  array_to_string(zones[1:5], ', ') || CASE WHEN cardinality(zones) > 5 THEN ', ...' ELSE '' END);
$$;
COMMENT ON FUNCTION dialer.no_window_message(text, text[], time, time) IS
	'Internal: last_error of a call skipped because the calling window never opens in all of its number''s zones at once';

/*
 * libphonenumber's prefix -> time-zone map (loaded by 16_number_timezones_data.sql).
 */
CREATE TABLE dialer.number_timezones (
	prefix				text PRIMARY KEY CHECK (prefix ~ '^[0-9]{1,15}$'),
	zones				text[] NOT NULL CHECK (cardinality(zones) >= 1)
);
COMMENT ON TABLE dialer.number_timezones IS
	'libphonenumber''s prefix to time-zone map (Apache-2.0; version and refresh command in sql/install/data/README.md): longest matching prefix of an E.164 number (without +) gives its IANA zones';
COMMENT ON COLUMN dialer.number_timezones.prefix IS 'Leading digits of E.164 numbers, country calling code first, without +';
COMMENT ON COLUMN dialer.number_timezones.zones IS 'IANA time zones numbers with this prefix may be in (several: called only when open in all)';

/*
 * The version of each table that backends keep a copy of (src/table_cache.c): the
 * transaction and command of its last change, written by the table's trigger
 * (dialer.cached_table_changed).  A copy is used only under a snapshot that sees the
 * version it was read at; under any other it is read again.
 */
CREATE TABLE dialer.cached_table_versions (
	table_name			text PRIMARY KEY,
	changed_in			bigint NOT NULL DEFAULT 0,
	changed_at			bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE dialer.cached_table_versions IS
	'Internal: the version of each dialer table that backends copy (dialer.number_timezones): the last change''s transaction and command, written by its trigger';
COMMENT ON COLUMN dialer.cached_table_versions.table_name IS 'The copied table, in schema dialer';
COMMENT ON COLUMN dialer.cached_table_versions.changed_in IS 'Full transaction id of its last change (0: as installed)';
COMMENT ON COLUMN dialer.cached_table_versions.changed_at IS 'Command id of its last change within that transaction';
INSERT INTO dialer.cached_table_versions (table_name) VALUES ('number_timezones');

/*
 * The IANA zones of a number by the longest prefix of dialer.number_timezones; NULL
 * when unknown (libphonenumber marks unknown with Etc/Unknown: that is NULL here
 * too).  The one home of the lookup, in C (src/number_zones.c): each backend keeps
 * the map in a hash table, read again under a snapshot that sees another version of
 * the table (dialer.cached_table_versions, the trigger below), because the claim
 * looks up every call's number under a calling policy.
 */
CREATE FUNCTION dialer.number_timezones(number text)
RETURNS text[]
LANGUAGE c
STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_number_timezones';
COMMENT ON FUNCTION dialer.number_timezones(text) IS
	'IANA time zones of an E.164 number by the longest matching prefix of libphonenumber''s data (dialer.number_timezones); NULL when unknown';

/*
 * Backends keep a copy of this map.  Every change to it moves its version in
 * dialer.cached_table_versions, and a reader whose snapshot sees the new version
 * reads the map again.
 */
CREATE FUNCTION dialer.cached_table_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'dialer_cached_table_changed';
COMMENT ON FUNCTION dialer.cached_table_changed() IS
	'Trigger: after a change to a table backends keep a copy of (dialer.number_timezones), writes its new version into dialer.cached_table_versions so that readers seeing the change read the table again';
CREATE TRIGGER number_timezones_cached AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dialer.number_timezones
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.cached_table_changed();

/*
 * The recipient's time zones: the one home of the rule that says in which zones a
 * call's calling window is read, used by the claim (the general window), by the
 * calling policies and by dialer.call_timezones().  The call's zone, else its
 * campaign's, else the zones libphonenumber's data gives for the number (several:
 * a window must be open in all of them).  When none of these is known, fallback
 * (dialer.default_timezone for the general window; NULL under a calling policy,
 * which then refuses the call).  source says which: call, campaign, number,
 * default, or unknown (zones NULL).  A set-returning SQL function of one row, so
 * that a statement over many calls inlines it.
 */
CREATE FUNCTION dialer.recipient_zones(call_timezone text, campaign_timezone text, to_number text,
									   fallback text DEFAULT NULL)
RETURNS TABLE (zones text[], source text)
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT CASE WHEN call_timezone IS NOT NULL THEN ARRAY[call_timezone]
				WHEN campaign_timezone IS NOT NULL THEN ARRAY[campaign_timezone]
				WHEN n.zones IS NOT NULL THEN n.zones
				WHEN fallback IS NOT NULL THEN ARRAY[fallback] END,
		   CASE WHEN call_timezone IS NOT NULL THEN 'call'
				WHEN campaign_timezone IS NOT NULL THEN 'campaign'
				WHEN n.zones IS NOT NULL THEN 'number'
				WHEN fallback IS NOT NULL THEN 'default'
				ELSE 'unknown' END
	  -- OFFSET 0: the number is looked up once per call, not once per use of n.zones in
	  -- the statement this function is inlined into (the claim made 27 lookups a call)
	  FROM (SELECT CASE WHEN call_timezone IS NULL AND campaign_timezone IS NULL
						THEN dialer.number_timezones(to_number) END AS zones OFFSET 0) n;
$$;
COMMENT ON FUNCTION dialer.recipient_zones(text, text, text, text) IS
	'Internal: the zones a call''s calling window is read in (the call''s, else the campaign''s, else the number''s from libphonenumber, else fallback) and which of these it was (source: call, campaign, number, default, unknown)';

/*
 * Whether the general window [window_start, window_end) is the whole day, so that no
 * zone needs to be known to read it (dialer.call_window_start = '00:00' with
 * call_window_end = '24:00').
 */
CREATE FUNCTION dialer.window_is_whole_day(window_start time, window_end time)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
	SELECT window_start = '00:00' AND window_end IN ('00:00', '24:00');
$$;
COMMENT ON FUNCTION dialer.window_is_whole_day(time, time) IS
	'Internal: true when the calling window window_start-window_end is open at every time of day';

/*
 * The general window of a number with several zones: NULL when instant at is inside
 * [window_start, window_end) in every zone, else the first instant when it is open in
 * all of them at once (the latest of their openings: always the start of one zone's
 * window, so the starts of the next three local days are tried in order), or
 * 'infinity' when the zones' windows never overlap (the claim then skips the call,
 * saying so).  One zone is dialer.next_window_opening's case.
 */
CREATE FUNCTION dialer.zones_window_opening(at timestamptz, zones text[], window_start time, window_end time)
RETURNS timestamptz
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN NOT EXISTS (SELECT 1 FROM unnest(zones) z
						  WHERE dialer.next_window_opening(at, z, window_start, window_end) IS NOT NULL)
			THEN NULL
		ELSE coalesce(
			(SELECT min(t.t)
			   FROM (SELECT ((at AT TIME ZONE z)::date + d + window_start) AT TIME ZONE z AS t
					   FROM unnest(zones) z, generate_series(0, 2) d) t
			  WHERE t.t > at
				AND NOT EXISTS (SELECT 1 FROM unnest(zones) z
								 WHERE dialer.next_window_opening(t.t, z, window_start, window_end) IS NOT NULL)),
			'infinity')
	END;
$$;
COMMENT ON FUNCTION dialer.zones_window_opening(timestamptz, text[], time, time) IS
	'Internal: NULL when instant at is inside the local window window_start-window_end in every one of zones, else the first instant when it is open in all of them (infinity: never)';

/*
 * The zones a call's calling window is read in, and where they come from, as the
 * dispatcher reads them: the call's zone, else its campaign's, else the number's
 * (libphonenumber), else dialer.default_timezone (source 'default': the number's zone
 * is unknown).  Under a calling policy an unknown zone is not replaced: the call is
 * refused (see dialer.compliance_verdict).  For a person asking "in which time zone
 * is this call's window read?".
 */
CREATE FUNCTION dialer.call_timezones(call_id bigint, OUT timezones text[], OUT source text)
RETURNS record
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT z.zones, z.source
	  FROM dialer.scheduled_calls c
	  LEFT JOIN dialer.campaigns k ON k.name = c.campaign
	 CROSS JOIN LATERAL dialer.recipient_zones(c.timezone, k.timezone, c.to_number,
											   nullif(current_setting('dialer.default_timezone', true), '')) z
	 WHERE c.id = call_timezones.call_id;
$$;
COMMENT ON FUNCTION dialer.call_timezones(bigint) IS
	'The time zones a call''s calling window is read in, and their source: call (its timezone), campaign, number (libphonenumber) or default (dialer.default_timezone, the number''s zone being unknown)';

/*
 * The next instant at which the recipient's clock shows local_time: "tomorrow at
 * 10:00 the recipient's time" is next_local_time(number, '10:00', days => 1).  The
 * zone is timezone when given, else the number's (libphonenumber).  days NULL: the
 * first such instant after now(); days n: on the recipient's local date today + n
 * (which may be in the past for n = 0).  A number with several zones, or none known,
 * needs timezone: the error says which.
 */
CREATE FUNCTION dialer.next_local_time(to_number text, local_time time, days int DEFAULT NULL,
									   timezone text DEFAULT NULL)
RETURNS timestamptz
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_zones	text[];
	v_day	date;
	v_t		timestamptz;
BEGIN
	IF to_number IS NULL OR NOT dialer.is_e164(to_number) THEN
		PERFORM dialer.raise_bad_argument('to_number', to_number,
			'A phone number must be in E.164 form: "+" then 8 to 15 digits, the first not 0, with no spaces or punctuation.',
			'Write the number with its country code, e.g. +14155550123.',
			CASE WHEN to_number IS NULL THEN '22004' ELSE '22023' END);
	END IF;
	IF local_time IS NULL THEN
		PERFORM dialer.raise_bad_argument('local_time', NULL, 'local_time is the time of day on the recipient''s clock.',
			'Pass a time, e.g. ''10:00''.', '22004');
	END IF;
	IF days IS NOT NULL AND days NOT BETWEEN 0 AND 3660 THEN
		PERFORM dialer.raise_bad_argument('days', days::text,
			'days is how many of the recipient''s local days after today: 0 to 3660 (NULL: the next time the clock shows local_time).',
			'Pass 1 for tomorrow.');
	END IF;
	IF timezone IS NOT NULL THEN
		IF NOT dialer.is_valid_timezone(timezone) THEN
			PERFORM dialer.raise_bad_argument('timezone', timezone,
				'The time is read in this time zone, and PostgreSQL does not know it.',
				'Use an IANA name such as America/New_York (see pg_timezone_names).');
		END IF;
		v_zones := ARRAY[timezone];
	ELSE
		v_zones := dialer.number_timezones(to_number);
		IF v_zones IS NULL THEN
			PERFORM dialer.raise_bad_argument('timezone', NULL,
				format('The time zone of %s is not known from libphonenumber''s data.', to_number),
				'Pass timezone => the recipient''s IANA time zone.', '22004');
		ELSIF cardinality(v_zones) > 1 THEN
			PERFORM dialer.raise_bad_argument('timezone', NULL,
				format('%s may be in any of %s time zones (%s): its local time is not one time.', to_number,
					   cardinality(v_zones), array_to_string(v_zones[1:5], ', ') ||
					   CASE WHEN cardinality(v_zones) > 5 THEN ', ...' ELSE '' END),
				'Pass timezone => the recipient''s IANA time zone.', '22004');
		END IF;
	END IF;

	v_day := (now() AT TIME ZONE v_zones[1])::date + coalesce(days, 0);
	v_t := (v_day + local_time) AT TIME ZONE v_zones[1];
	IF days IS NULL AND v_t <= now() THEN
		v_t := (v_day + 1 + local_time) AT TIME ZONE v_zones[1];
	END IF;
	RETURN v_t;
END;
$$;
COMMENT ON FUNCTION dialer.next_local_time(text, time, int, text) IS
	'The instant the recipient''s clock shows local_time (zone: timezone, else the number''s): the next one (days NULL), or on the local date today + days; e.g. run_at => dialer.next_local_time(number, ''10:00'', days => 1) for tomorrow at 10:00 their time';

/*
 * The offset from UTC of zone's clocks at an instant.
 */
CREATE FUNCTION dialer.utc_offset(at timestamptz, zone text)
RETURNS interval
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
	SELECT (at AT TIME ZONE zone) - (at AT TIME ZONE 'UTC');
$$;
COMMENT ON FUNCTION dialer.utc_offset(timestamptz, text) IS
	'Internal: the offset from UTC of zone''s clocks at instant at (e.g. -05:00 in New York in winter)';

/*
 * The instants at which zone's clocks show local_time: one, except next to a change
 * of the zone's offset from UTC.  When the clocks are put back, a local time of the
 * repeated hour comes twice: both instants.  When they are put forward, a local time
 * they skip never comes: the instant of the change stands for it (the clocks show a
 * later time from then on).  PostgreSQL's own reading, local_time AT TIME ZONE zone,
 * gives only the second instant of a repeated time, and for a skipped one an instant
 * after the change (it reads it with the offset before the change).  The offsets are
 * read a day before and a day after: changes are taken to be more than a day apart,
 * and made on a whole minute.
 */
CREATE FUNCTION dialer.local_instants(local_time timestamp, zone text)
RETURNS timestamptz[]
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	-- local_time read with the zone's offset of a day before, and of a day after, PostgreSQL's
	-- own reading: the instants whose clocks may show it
	v_pg timestamptz := local_time AT TIME ZONE zone;
	v_before timestamptz := (local_time - dialer.utc_offset(v_pg - interval '1 day', zone)) AT TIME ZONE 'UTC';
	v_after timestamptz := (local_time - dialer.utc_offset(v_pg + interval '1 day', zone)) AT TIME ZONE 'UTC';
	v_t timestamptz;
	v_out timestamptz[] := '{}';
BEGIN
	FOREACH v_t IN ARRAY ARRAY[least(v_before, v_after), greatest(v_before, v_after)] LOOP
		IF (v_t AT TIME ZONE zone) = local_time AND NOT v_t = ANY (v_out) THEN
			v_out := v_out || v_t;
		END IF;
	END LOOP;
	IF cardinality(v_out) > 0 THEN
		RETURN v_out;
	END IF;
	-- neither shows it: a time the clocks skipped.  The change is the first whole minute
	-- between the two readings at which they show a later time.
	v_t := date_trunc('minute', least(v_before, v_after));
	WHILE (v_t AT TIME ZONE zone) <= local_time LOOP
		v_t := v_t + interval '1 minute';
	END LOOP;
	RETURN ARRAY[v_t];
END;
$$;
COMMENT ON FUNCTION dialer.local_instants(timestamp, text) IS
	'Internal: the instants at which the clocks of zone show local_time (two for a time repeated when the clocks are put back; for one skipped when they are put forward, the instant of the change)';
