/*
 * pg_dialer: answering-machine detection asked for by a call, and its rules.
 *
 * A call asks for detection through its payload (per call; a campaign's payload gives it to
 * every call the campaign makes), else gets its provider's (dialer.providers.machine_detection
 * and async_amd):
 *
 *   machine_detection   Enable (a verdict as soon as the answering party is known),
 *                       DetectMessageEnd (for a machine, at the end of its greeting) or none
 *                       (no detection, whatever the provider says)
 *   async_amd           true: the call goes on while detection runs, its verdict is posted
 *                       to the provider's status_callback_url; false: the call waits for it
 *   machine_detection_timeout, machine_detection_speech_threshold,
 *   machine_detection_speech_end_threshold, machine_detection_silence_timeout
 *                       the detection's tuning, in the ranges of dialer.machine_detection_ranges()
 *   send_digits         keys dialled once connected: never together with detection (Twilio
 *                       then ignores the detection without a word)
 *
 * dialer.machine_detection_rule() is the one home of these rules: dialer.call_rule (30_enqueue.sql)
 * asks it for every call whose payload holds one of the keys, and dialer.machine_detection_refusal()
 * words its error.  The request's form fields are built in the kind's C file
 * (src/provider_twilio.c); only a kind whose dialer.provider_kinds.machine_detection is true
 * takes the keys.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * The payload keys of machine detection (and send_digits, which excludes it).  A constant the
 * planner folds: dialer.call_rule asks payload ?| it before anything else.
 */
CREATE FUNCTION dialer.machine_detection_keys()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{machine_detection,async_amd,machine_detection_timeout,machine_detection_speech_threshold,machine_detection_speech_end_threshold,machine_detection_silence_timeout,send_digits}'::text[];
$$;
COMMENT ON FUNCTION dialer.machine_detection_keys() IS
	'Internal: the payload keys of answering-machine detection (machine_detection, async_amd, the four tuning settings) and send_digits';

/*
 * The detection's tuning settings, with the ranges and defaults the provider documents
 * (Twilio's Calls resource and its answering-machine detection guide): a payload key each,
 * a whole number.
 */
CREATE FUNCTION dialer.machine_detection_ranges()
RETURNS TABLE (setting text, min_value int, max_value int, default_value int, unit text, description text)
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	VALUES
		('machine_detection_timeout', 3, 59, 30, 'seconds',
		 'how long detection may take before its verdict is unknown'),
		('machine_detection_speech_threshold', 1000, 6000, 2400, 'milliseconds',
		 'speech shorter than this is a person, longer a machine'),
		('machine_detection_speech_end_threshold', 500, 5000, 1200, 'milliseconds',
		 'silence after speech that ends it (longer: fewer greetings cut in two)'),
		('machine_detection_silence_timeout', 2000, 10000, 5000, 'milliseconds',
		 'silence at the start after which the verdict is unknown');
$$;
COMMENT ON FUNCTION dialer.machine_detection_ranges() IS
	'The tuning settings of answering-machine detection a call''s payload may hold: name, range, default and unit (the provider''s documented values)';

/*
 * The first tuning setting of a payload that is not a whole number in its range; NULL when
 * every one given is.
 */
CREATE FUNCTION dialer.machine_detection_bad_setting(payload jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT r.setting
	  FROM dialer.machine_detection_ranges() WITH ORDINALITY AS r
	 WHERE payload ? r.setting
	   AND (jsonb_typeof(payload->r.setting) <> 'number'
			OR (payload->>r.setting)::numeric <> trunc((payload->>r.setting)::numeric)
			OR (payload->>r.setting)::numeric NOT BETWEEN r.min_value AND r.max_value)
	 ORDER BY r.ordinality LIMIT 1;
$$;
COMMENT ON FUNCTION dialer.machine_detection_bad_setting(jsonb) IS
	'Internal: the first tuning setting of machine detection in a payload that is not a whole number in its range (dialer.machine_detection_ranges()); NULL when none';

/*
 * A provider's detection, as the enqueue rules need it: its machine_detection and async_amd,
 * and whether it has a status_callback_url (where an asynchronous verdict goes).
 */
CREATE FUNCTION dialer.provider_detection(machine_detection text, async_amd boolean, status_callback_url text)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT jsonb_build_object('machine_detection', machine_detection, 'async_amd', coalesce(async_amd, false),
							  'status_callback', status_callback_url IS NOT NULL);
$$;
COMMENT ON FUNCTION dialer.provider_detection(text, boolean, text) IS
	'Internal: a provider''s machine detection for the enqueue rules (machine_detection, async_amd, status_callback: whether it has a status_callback_url)';

/*
 * The detection a call gets: its payload's machine_detection (none: no detection), else its
 * provider's; NULL for none.
 */
CREATE FUNCTION dialer.call_machine_detection(payload jsonb, provider_detection jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN payload ? 'machine_detection' THEN nullif(payload->>'machine_detection', 'none')
				ELSE provider_detection->>'machine_detection' END;
$$;
COMMENT ON FUNCTION dialer.call_machine_detection(jsonb, jsonb) IS
	'Internal: the machine detection of a call: payload.machine_detection (none: none), else its provider''s; NULL for none';

/*
 * The names of the rules below, in their order: what dialer.machine_detection_refusal words.
 */
CREATE FUNCTION dialer.machine_detection_rules()
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '{machine_detection_kind,machine_detection,async_amd,machine_detection_setting,send_digits,machine_detection_off,machine_detection_send_digits,machine_detection_callback}'::text[];
$$;
COMMENT ON FUNCTION dialer.machine_detection_rules() IS
	'Internal: the names of the rules of dialer.machine_detection_rule(), in their order';

/*
 * The rules of machine detection for a call whose payload holds one of its keys: NULL when
 * they are kept, else the first broken, in this order:
 *   machine_detection_kind        the provider's kind takes none of the keys
 *   machine_detection             not Enable, DetectMessageEnd or none
 *   async_amd                     not a JSON boolean
 *   machine_detection_setting     a tuning setting not a whole number in its range
 *   send_digits                   not 1 to 32 of 0-9 A-D # * w W
 *   machine_detection_off         async_amd true or a tuning setting, with no detection
 *   machine_detection_send_digits detection (the call's or its provider's) and send_digits
 *   machine_detection_callback    asynchronous, and the provider has no status_callback_url
 * kind_detects is the kind's dialer.provider_kinds.machine_detection, provider_detection the
 * provider's (dialer.provider_detection).
 */
CREATE FUNCTION dialer.machine_detection_rule(payload jsonb, kind_detects boolean, provider_detection jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN NOT coalesce(kind_detects, false) THEN 'machine_detection_kind'
		WHEN payload ? 'machine_detection'
			 AND (jsonb_typeof(payload->'machine_detection') <> 'string'
				  OR payload->>'machine_detection' NOT IN ('Enable', 'DetectMessageEnd', 'none')) THEN 'machine_detection'
		WHEN payload ? 'async_amd' AND jsonb_typeof(payload->'async_amd') <> 'boolean' THEN 'async_amd'
		WHEN dialer.machine_detection_bad_setting(payload) IS NOT NULL THEN 'machine_detection_setting'
		WHEN payload ? 'send_digits'
			 AND (jsonb_typeof(payload->'send_digits') <> 'string'
				  OR payload->>'send_digits' !~ '^[0-9A-DwW#*]{1,32}$') THEN 'send_digits'
		WHEN m.mode IS NULL
			 AND (coalesce((payload->'async_amd')::boolean, false)
				  OR payload ?| ARRAY(SELECT r.setting FROM dialer.machine_detection_ranges() r)) THEN 'machine_detection_off'
		WHEN m.mode IS NOT NULL AND payload ? 'send_digits' THEN 'machine_detection_send_digits'
		WHEN m.mode IS NOT NULL
			 AND coalesce((payload->'async_amd')::boolean, (provider_detection->'async_amd')::boolean, false)
			 AND NOT coalesce((provider_detection->'status_callback')::boolean, false) THEN 'machine_detection_callback'
	END
	  FROM (SELECT dialer.call_machine_detection(payload, provider_detection) AS mode) m;
$$;
COMMENT ON FUNCTION dialer.machine_detection_rule(jsonb, boolean, jsonb) IS
	'Internal: the one home of the rules of machine detection asked for in a payload: NULL when kept, else the rule broken (machine_detection_kind, machine_detection, async_amd, machine_detection_setting, send_digits, machine_detection_off, machine_detection_send_digits, machine_detection_callback)';

/*
 * The error of a broken rule of dialer.machine_detection_rule(), as dialer.call_refusal
 * words every rule: the argument (the payload key), its value, what is accepted and how to
 * fix it.  provider and kind name the call's provider and its kind.  No row for a rule that is
 * not one of dialer.machine_detection_rules(): call_refusal asks it for every broken rule.
 */
CREATE FUNCTION dialer.machine_detection_refusal(rule text, payload jsonb, provider text, kind text,
												 provider_detection jsonb,
												 OUT argument text, OUT value text, OUT detail text, OUT hint text)
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT 'payload.' || k.key, payload->>k.key,
		CASE rule
			WHEN 'machine_detection_kind' THEN
				format('A call of provider kind %s can neither ask for answering-machine detection nor send digits: the kind does not offer them (dialer.provider_kinds.machine_detection).', kind)
			WHEN 'machine_detection' THEN
				'payload.machine_detection is Enable (a verdict as soon as a person or machine is recognised), DetectMessageEnd (for a machine, at the end of its greeting, to leave a message) or none (no detection, whatever the provider says).'
			WHEN 'async_amd' THEN
				'payload.async_amd is a JSON boolean: true, the call goes on while detection runs in the background; false, the call waits for the verdict.'
			WHEN 'machine_detection_setting' THEN
				format('payload.%s is a whole number of %s from %s to %s (default %s): %s.', r.setting, r.unit, r.min_value,
					   r.max_value, r.default_value, r.description)
			WHEN 'send_digits' THEN
				'payload.send_digits is 1 to 32 of the keys 0-9, A-D, # and *, with w for a pause of half a second and W for one of a second.'
			WHEN 'machine_detection_off' THEN
				format('payload.%s tunes answering-machine detection, which is off for this call: payload.machine_detection is %s and provider %s has %s.',
					   k.key, coalesce(quote_literal(payload->>'machine_detection'), 'absent'), quote_literal(provider),
					   coalesce('machine_detection ' || quote_literal(provider_detection->>'machine_detection'), 'no machine_detection'))
			WHEN 'machine_detection_send_digits' THEN
				format('payload.send_digits and machine detection (MachineDetection=%s, from %s) cannot go together: Twilio ignores MachineDetection when SendDigits is sent, so the call would not be detected.',
					   dialer.call_machine_detection(payload, provider_detection),
					   CASE WHEN payload ? 'machine_detection' THEN 'payload.machine_detection'
							ELSE format('provider %s', quote_literal(provider)) END)
			WHEN 'machine_detection_callback' THEN
				format('Asynchronous detection posts its verdict to the provider''s status_callback_url, and provider %s has none.', quote_literal(provider))
		END,
		CASE rule
			WHEN 'machine_detection_kind' THEN 'Remove the key, or send the call through a provider whose kind offers it (SELECT kind FROM dialer.provider_kinds WHERE machine_detection).'
			WHEN 'machine_detection' THEN 'Spell it as shown, e.g. {"machine_detection": "DetectMessageEnd"}.'
			WHEN 'async_amd' THEN 'Write true or false without quotes.'
			WHEN 'machine_detection_setting' THEN 'Omit it for the default.'
			WHEN 'send_digits' THEN 'E.g. {"send_digits": "ww1234#"}.'
			WHEN 'machine_detection_off' THEN 'Set payload.machine_detection to Enable or DetectMessageEnd, or remove the setting.'
			WHEN 'machine_detection_send_digits' THEN 'Remove payload.send_digits, or turn detection off for this call with {"machine_detection": "none"}.'
			WHEN 'machine_detection_callback' THEN format('Set dialer.providers.status_callback_url of provider %s, or payload.async_amd to false.', quote_literal(provider))
		END
	  FROM (SELECT CASE rule
					   WHEN 'machine_detection_kind' THEN
						   (SELECT x.key FROM unnest(dialer.machine_detection_keys()) WITH ORDINALITY AS x(key, n)
							 WHERE payload ? x.key ORDER BY x.n LIMIT 1)
					   WHEN 'machine_detection_setting' THEN dialer.machine_detection_bad_setting(payload)
					   WHEN 'machine_detection_off' THEN
						   (SELECT x.key FROM unnest(dialer.machine_detection_keys()) WITH ORDINALITY AS x(key, n)
							 WHERE payload ? x.key AND x.key NOT IN ('machine_detection', 'send_digits')
							   AND (x.key <> 'async_amd' OR payload->>'async_amd' = 'true')
							 ORDER BY x.n LIMIT 1)
					   WHEN 'machine_detection_send_digits' THEN 'send_digits'
					   WHEN 'machine_detection_callback' THEN 'async_amd'
					   ELSE rule END AS key) k
	  LEFT JOIN dialer.machine_detection_ranges() r ON r.setting = k.key
	 WHERE rule = ANY (dialer.machine_detection_rules());
$$;
COMMENT ON FUNCTION dialer.machine_detection_refusal(text, jsonb, text, text, jsonb) IS
	'Internal: the argument, value, detail and hint of the error for a broken rule of dialer.machine_detection_rule(), for dialer.call_refusal';
