/*
 * pg_dialer: the provider kind twilio, its SQL (its C is src/provider_twilio.c).
 *
 * Its words that decide an outcome class (error codes: dialer.outcome_signals), and its
 * status callbacks and answering-machine detection callbacks.
 *
 * Twilio signs each status callback with the account's auth token over the URL it posted to
 * and the form fields (X-Twilio-Signature).  dialer.twilio_callback_url is the C function the
 * dispatcher builds that URL with (one implementation); the functions here check the
 * signature in every form Twilio computes it and apply the callback, or keep it in
 * dialer.pending_callbacks until the call's CallSid is stored (dialer.apply_pending_callbacks);
 * dialer_api.twilio_status_callback is what PostgREST exposes.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

-- Twilio's words of its own: error codes of refused or failed calls (its AnsweredBy words are
-- the vocabulary every kind speaks: 06_outcomes.sql)
INSERT INTO dialer.outcome_signals (kind, signal, value, outcome) VALUES
	('twilio',	'error_code',	'13223',				'bad_number'),
	('twilio',	'error_code',	'13224',				'bad_number'),
	('twilio',	'error_code',	'21211',				'bad_number'),
	('twilio',	'error_code',	'21214',				'bad_number'),
	('twilio',	'error_code',	'21217',				'bad_number'),
	('twilio',	'error_code',	'13225',				'blocked'),
	('twilio',	'error_code',	'13227',				'blocked'),
	('twilio',	'error_code',	'21215',				'blocked'),
	('twilio',	'error_code',	'21216',				'blocked');

/*
 * Twilio's request signature (src/webhook_signature.c): HMAC-SHA1, keyed with the auth
 * token, of the full URL Twilio requested (query string included) followed by every POST
 * field, sorted by name (byte order), as name then value, in UTF-8; base64.  params is the
 * JSON object of the fields (strings; anything else is an error).
 */
CREATE FUNCTION dialer.twilio_signature(auth_token text, url text, params jsonb)
RETURNS text
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_twilio_signature';
COMMENT ON FUNCTION dialer.twilio_signature(text, text, jsonb) IS
	'Twilio''s X-Twilio-Signature of a request: base64(HMAC-SHA1(auth_token, url || sorted name||value of every field))';

/*
 * The forms of a URL Twilio may have signed: as configured, and with the scheme's default
 * port added or removed (Twilio's own validators accept both).
 */
CREATE FUNCTION dialer.twilio_url_variants(url text)
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
	m text[] := pg_catalog.regexp_match(url,
		'^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*@)?(\[[^]/?#]*\]|[^/?#:]*)(:[0-9]*)?(.*)$');
	scheme text := pg_catalog.lower(m[1]);
BEGIN
	IF m IS NULL OR scheme NOT IN ('https://', 'http://') THEN
		RETURN ARRAY[url];
	ELSIF m[4] IS NULL THEN
		RETURN ARRAY[url, m[1] || coalesce(m[2], '') || m[3]
						  || CASE WHEN scheme = 'https://' THEN ':443' ELSE ':80' END || m[5]];
	ELSIF (scheme = 'https://' AND m[4] = ':443') OR (scheme = 'http://' AND m[4] = ':80') THEN
		RETURN ARRAY[url, m[1] || coalesce(m[2], '') || m[3] || m[5]];
	END IF;
	RETURN ARRAY[url];
END;
$$;
COMMENT ON FUNCTION dialer.twilio_url_variants(text) IS
	'Internal: a URL as given, and with its default port added or removed';

/*
 * Percent-encodes the characters of s that a URL serializer escapes: controls, space,
 * everything beyond ASCII (as its UTF-8 bytes) and each character of unsafe; upper-case
 * hex.  An escape already in s (%27) is left as it is.
 */
CREATE FUNCTION dialer.url_percent_encode(s text, unsafe text)
RETURNS text
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
	SELECT coalesce(pg_catalog.string_agg(
			CASE WHEN pg_catalog.ascii(t.ch) BETWEEN 33 AND 126 AND pg_catalog.strpos(unsafe, t.ch) = 0 THEN t.ch
				 ELSE pg_catalog.upper(pg_catalog.regexp_replace(
						pg_catalog.encode(pg_catalog.convert_to(t.ch, 'UTF8'), 'hex'), '(..)', '%\1', 'g'))
			END, '' ORDER BY t.n), '')
	  FROM pg_catalog.regexp_split_to_table(s, '') WITH ORDINALITY AS t(ch, n);
$$;
COMMENT ON FUNCTION dialer.url_percent_encode(text, text) IS
	'Internal: s with controls, space, non-ASCII characters (UTF-8 bytes) and the characters of unsafe percent-encoded';

/*
 * A URL in the form a WHATWG URL parser serializes it (what Twilio's helper library
 * compares against when the URL as configured does not match, e.g. for a callback URL
 * whose query holds a quote: Body=It's+amazing is signed as Body=It%27s+amazing): scheme
 * and host in lower case, the default port and an empty port dropped, an empty path
 * made '/', and the path, query and fragment percent-encoded with the URL standard's
 * path, special-query and fragment sets.  NULL for a URL that is not http(s) or whose port
 * is not a port number (Twilio's library rejects it too).
 */
CREATE FUNCTION dialer.twilio_url_normalized(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
	m text[] := pg_catalog.regexp_match(url,
		'^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#@]*@)?(\[[^]/?#]*\]|[^/?#:]*)(:[0-9]*)?([^?#]*)(\?[^#]*)?(#.*)?$');
	v_scheme text := pg_catalog.lower(m[1]);
	v_port text := pg_catalog.substr(m[4], 2);
BEGIN
	IF m IS NULL OR v_scheme NOT IN ('https', 'http') OR m[3] = '' THEN
		RETURN NULL;
	END IF;
	IF v_port = '' THEN
		v_port := NULL;
	ELSIF v_port IS NOT NULL THEN
		IF pg_catalog.length(pg_catalog.ltrim(v_port, '0')) > 5 OR v_port::numeric > 65535 THEN
			RETURN NULL;
		END IF;
		v_port := (v_port::int)::text;
		IF (v_scheme = 'https' AND v_port = '443') OR (v_scheme = 'http' AND v_port = '80') THEN
			v_port := NULL;
		END IF;
	END IF;
	RETURN v_scheme || '://' || coalesce(m[2], '') || pg_catalog.lower(m[3])
		|| coalesce(':' || v_port, '')
		|| CASE WHEN m[5] = '' THEN '/' ELSE dialer.url_percent_encode(m[5], '"<>`{}') END
		|| coalesce('?' || dialer.url_percent_encode(pg_catalog.substr(m[6], 2), '"<>'''), '')
		|| coalesce('#' || dialer.url_percent_encode(pg_catalog.substr(m[7], 2), '"<>`'), '');
END;
$$;
COMMENT ON FUNCTION dialer.twilio_url_normalized(text) IS
	'Internal: a URL as a WHATWG URL parser serializes it (lower-case scheme and host, no default port, percent-encoded path, query and fragment); NULL when not a valid http(s) URL';

/*
 * A URL whose query string is re-encoded the way Node's legacy querystring module parses
 * and writes it back (Twilio's helper library tries this form last): each field decoded
 * ('+' is a space), fields of one name gathered at the place of the first, every character
 * but A-Z a-z 0-9 - _ . ! ~ * ' ( ) percent-encoded.  The URL unchanged without a query;
 * NULL when a field does not decode to UTF-8.
 */
CREATE FUNCTION dialer.twilio_url_legacy_query(url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
	v_q int := pg_catalog.strpos(url, '?');
	v_out text;
BEGIN
	IF v_q = 0 OR v_q = pg_catalog.length(url) THEN
		RETURN url;
	END IF;
	BEGIN
		WITH piece AS (
			SELECT p.n, pg_catalog.split_part(p.s, '=', 1) AS k,
				   CASE WHEN pg_catalog.strpos(p.s, '=') > 0
						THEN pg_catalog.substr(p.s, pg_catalog.strpos(p.s, '=') + 1) ELSE '' END AS v
			  FROM pg_catalog.regexp_split_to_table(pg_catalog.substr(url, v_q + 1), '&') WITH ORDINALITY AS p(s, n)
			 WHERE p.s <> ''
		), decoded AS (
			SELECT x.n, x.part,
				   pg_catalog.convert_from((
					   SELECT pg_catalog.string_agg(
								CASE WHEN pg_catalog.length(t.tok[1]) = 3
									 THEN pg_catalog.decode(pg_catalog.substr(t.tok[1], 2), 'hex')
									 ELSE pg_catalog.convert_to(t.tok[1], 'UTF8') END, ''::bytea ORDER BY t.i)
						 FROM pg_catalog.regexp_matches(pg_catalog.replace(x.raw, '+', ' '), '%[0-9A-Fa-f]{2}|.', 'g')
							  WITH ORDINALITY AS t(tok, i)), 'UTF8') AS txt
			  FROM (SELECT n, 1 AS part, k AS raw FROM piece UNION ALL SELECT n, 2, v FROM piece) x
		), pairs AS (
			SELECT d.n, coalesce(pg_catalog.max(d.txt) FILTER (WHERE d.part = 1), '') AS k,
				   coalesce(pg_catalog.max(d.txt) FILTER (WHERE d.part = 2), '') AS v
			  FROM decoded d GROUP BY d.n
		)
		SELECT pg_catalog.string_agg(dialer.url_percent_encode(p.k, '"#$%&+,/:;<=>?@[\]^`{|}')
									 || '=' || dialer.url_percent_encode(p.v, '"#$%&+,/:;<=>?@[\]^`{|}'),
									 '&' ORDER BY f.first_n, p.n)
		  INTO v_out
		  FROM pairs p
		  JOIN (SELECT k, pg_catalog.min(n) AS first_n FROM pairs GROUP BY k) f ON f.k = p.k;
	EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
		RETURN NULL;
	END;
	RETURN pg_catalog.substr(url, 1, v_q) || coalesce(v_out, '');
END;
$$;
COMMENT ON FUNCTION dialer.twilio_url_legacy_query(text) IS
	'Internal: a URL with its query string decoded and re-encoded as Node''s legacy querystring module does (the last form Twilio''s helper library tries)';

/*
 * The public URL Twilio calls for a call's status callbacks: the provider's
 * status_callback_url with call_id=<id> appended to its query string ('?' or '&').
 * Without a call id, the URL as configured.  In C (src/provider_twilio.c), the very
 * function the dispatcher builds the request's StatusCallback with: the URL signed
 * and the URL checked cannot differ.
 */
CREATE FUNCTION dialer.twilio_callback_url(status_callback_url text, call_id bigint)
RETURNS text
LANGUAGE C
IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_twilio_callback_url';
COMMENT ON FUNCTION dialer.twilio_callback_url(text, bigint) IS
	'The StatusCallback URL of a call: status_callback_url plus call_id=<id> in its query string (what Twilio signs)';

/*
 * Whether signature is Twilio's signature of a request to url with these fields, under
 * auth_token: for url as given, else with its default port added or removed, else in the
 * percent-encoded forms Twilio's helper library (npm twilio, validateRequest) also
 * accepts.  Constant-time comparisons.
 */
CREATE FUNCTION dialer.twilio_signature_matches(auth_token text, url text, params jsonb, signature text)
RETURNS boolean
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
	v_url text;
	v_norm text;
BEGIN
	IF auth_token IS NULL OR url IS NULL OR params IS NULL OR signature IS NULL THEN
		RETURN false;
	END IF;
	IF dialer.constant_time_equal(dialer.twilio_signature(auth_token, url, params), signature) THEN
		RETURN true;
	END IF;
	FOREACH v_url IN ARRAY (dialer.twilio_url_variants(url))[2:] LOOP
		IF dialer.constant_time_equal(dialer.twilio_signature(auth_token, v_url, params), signature) THEN
			RETURN true;
		END IF;
	END LOOP;
	/*
	 * Then, as Twilio's helper library does, the URL as a URL parser serializes it
	 * (percent-encoded), and that with its query re-encoded by the legacy rules: each
	 * with and without the default port.
	 */
	v_norm := dialer.twilio_url_normalized(url);
	IF v_norm IS NULL THEN
		RETURN false;
	END IF;
	FOREACH v_url IN ARRAY dialer.twilio_url_variants(v_norm)
		|| dialer.twilio_url_variants(coalesce(dialer.twilio_url_legacy_query(v_norm), v_norm)) LOOP
		IF dialer.constant_time_equal(dialer.twilio_signature(auth_token, v_url, params), signature) THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END;
$$;
COMMENT ON FUNCTION dialer.twilio_signature_matches(text, text, jsonb, text) IS
	'Internal: true when signature is Twilio''s for url and params under auth_token, with url as configured or in the other forms Twilio''s helper library accepts (default port added or removed, percent-encoded as a URL parser serializes it, query re-encoded by Node''s legacy rules)';

/* ------------------------------------------------------------------------------------
 * Twilio status callbacks
 * ------------------------------------------------------------------------------------ */

/*
 * The call a Twilio status callback is about: the call id of the callback URL (call_ref,
 * already checked to be a number), else the call, or the attempt, whose provider call
 * id is the CallSid, looked up under the CallSid's lock (dialer.lock_provider_call_id):
 * a callback that comes before the worker has stored the sid is kept in
 * dialer.pending_callbacks, and the worker, storing the sid under the same lock, then
 * finds it (or this one finds the sid stored).  NULL when none.
 */
CREATE FUNCTION dialer.twilio_callback_call(fields jsonb, call_ref text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	v_call_id	bigint := call_ref::bigint;
BEGIN
	IF v_call_id IS NULL AND fields->>'CallSid' IS NOT NULL THEN
		PERFORM dialer.lock_provider_call_id(fields->>'CallSid');
		SELECT c.id INTO v_call_id
		  FROM dialer.scheduled_calls c WHERE c.provider_call_id = fields->>'CallSid'
		 ORDER BY c.id DESC LIMIT 1;
		IF v_call_id IS NULL THEN
			SELECT a.call_id INTO v_call_id
			  FROM dialer.call_attempts a WHERE a.provider_call_id = fields->>'CallSid'
			 ORDER BY a.id DESC LIMIT 1;
		END IF;
	END IF;
	RETURN v_call_id;
END;
$$;
COMMENT ON FUNCTION dialer.twilio_callback_call(jsonb, text) IS
	'Internal: the call a Twilio status callback is about, by the callback URL''s call id or (under the CallSid''s lock) by CallSid; NULL when none';

/*
 * The Twilio provider whose auth token signed a status callback, or the 403 refusal.
 * For a call pg_dialer knows (call_id), only its own provider's token is tried; for a
 * call it does not know (none found, or removed by cleanup, or placed by someone else:
 * call_id comes back NULL), the tokens of the Twilio providers of the AccountSid the
 * callback names.  The URL signed is the provider's status_callback_url plus
 * call_id=<call_ref> (exactly what the worker gave Twilio), in every form
 * dialer.twilio_signature_matches accepts.  Constant-time comparisons; nothing written.
 */
CREATE FUNCTION dialer.twilio_callback_signer(INOUT call_id bigint, call_ref text, fields jsonb, signature text,
											  OUT provider dialer.providers)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
	v_prov		dialer.providers;
	v_ok		boolean := false;
BEGIN
	IF twilio_callback_signer.call_id IS NOT NULL THEN
		SELECT p.* INTO v_prov
		  FROM dialer.scheduled_calls c JOIN dialer.providers p ON p.name = c.provider
		 WHERE c.id = twilio_callback_signer.call_id AND p.kind = 'twilio'
		   AND p.auth_token IS NOT NULL AND p.status_callback_url IS NOT NULL;
		IF FOUND THEN
			v_ok := dialer.twilio_signature_matches(v_prov.auth_token,
				dialer.twilio_callback_url(v_prov.status_callback_url, call_ref::bigint), fields, signature);
		ELSIF NOT EXISTS (SELECT 1 FROM dialer.scheduled_calls c WHERE c.id = twilio_callback_signer.call_id) THEN
			twilio_callback_signer.call_id := NULL;
		END IF;
	END IF;
	IF twilio_callback_signer.call_id IS NULL THEN
		FOR v_prov IN
			SELECT p.* FROM dialer.providers p
			 WHERE p.kind = 'twilio' AND p.account_sid = fields->>'AccountSid'
			   AND p.auth_token IS NOT NULL AND p.status_callback_url IS NOT NULL
			 ORDER BY p.name
		LOOP
			v_ok := dialer.twilio_signature_matches(v_prov.auth_token,
				dialer.twilio_callback_url(v_prov.status_callback_url, call_ref::bigint), fields, signature);
			EXIT WHEN v_ok;
		END LOOP;
	END IF;
	IF NOT coalesce(v_ok, false) THEN
		PERFORM dialer.webhook_refuse(403, 'X-Twilio-Signature does not match',
			'The signature is checked over providers.status_callback_url (plus call_id=<id>) and the fields sent, with the provider''s auth_token.');
	END IF;
	IF fields ? 'AccountSid' AND v_prov.account_sid IS DISTINCT FROM fields->>'AccountSid' THEN
		PERFORM dialer.webhook_refuse(403, 'the callback is for another Twilio account');
	END IF;
	provider := v_prov;
END;
$$;
COMMENT ON FUNCTION dialer.twilio_callback_signer(bigint, text, jsonb, text) IS
	'Internal: the Twilio provider whose auth token signed a status callback (the call''s own, else one of the AccountSid''s), and the call id when pg_dialer knows the call; else the 403 refusal';

/*
 * Authenticates and applies one Twilio status callback.
 *
 *   fields    every form field Twilio sent, as a JSON object of strings
 *   call_ref  pg_dialer's call id from the callback URL's query string (passed by the
 *             proxy in X-Dialer-Call-Id), or NULL: the call is then found by CallSid
 *
 * Steps: the shape of the request; the call (dialer.twilio_callback_call); the provider
 * whose token signed it (dialer.twilio_callback_signer); then, authentic, the report is
 * applied (dialer.twilio_apply_fields), or kept until its CallSid is known.  Nothing is
 * looked at beyond the call's and providers' rows until the signature matches, and
 * nothing is written unless it does.
 */
CREATE FUNCTION dialer.twilio_ingest(fields jsonb, call_ref text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_headers	jsonb := dialer.request_headers();
	v_sig		text := v_headers->>'x-twilio-signature';
	v_ctype		text := lower(split_part(v_headers->>'content-type', ';', 1));
	v_signer	record;
	v_call_id	bigint;
	v_prov		dialer.providers;
	v_sid		text;
	v_seq		bigint;
	v_status	text;
BEGIN
	/* the shape of the request */
	IF fields IS NULL OR jsonb_typeof(fields) <> 'object' THEN
		PERFORM dialer.webhook_refuse(400, 'a Twilio status callback is a set of form fields');
	END IF;
	IF v_headers ? 'content-type' AND v_ctype <> 'application/x-www-form-urlencoded' THEN
		PERFORM dialer.webhook_refuse(415, 'Twilio status callbacks are application/x-www-form-urlencoded');
	END IF;
	IF v_sig IS NULL OR v_sig = '' THEN
		PERFORM dialer.webhook_refuse(401, 'X-Twilio-Signature is missing',
			'Status callbacks are accepted only when signed by Twilio.');
	END IF;
	IF call_ref IS NOT NULL AND call_ref !~ '^[1-9][0-9]{0,17}$' THEN
		PERFORM dialer.webhook_refuse(400, 'call_id in the callback URL is not a call id');
	END IF;

	/* the call, and the provider whose token signed the callback (else 403) */
	v_signer := dialer.twilio_callback_signer(dialer.twilio_callback_call(fields, call_ref), call_ref, fields, v_sig);
	v_call_id := v_signer.call_id;
	v_prov := v_signer.provider;

	/* authentic from here on */
	v_sid := fields->>'CallSid';
	v_status := fields->>'CallStatus';
	IF v_sid IS NULL OR v_sid = '' OR ((v_status IS NULL OR v_status = '') AND nullif(fields->>'AnsweredBy', '') IS NULL) THEN
		PERFORM dialer.webhook_refuse(400, 'a status callback names CallSid and CallStatus (a machine detection callback CallSid and AnsweredBy)');
	END IF;
	IF fields ? 'SequenceNumber' THEN
		IF fields->>'SequenceNumber' !~ '^[0-9]{1,18}$' THEN
			PERFORM dialer.webhook_refuse(400, 'SequenceNumber is not a number');
		END IF;
		v_seq := (fields->>'SequenceNumber')::bigint;
	END IF;
	IF v_call_id IS NULL AND call_ref IS NULL THEN
		/* not known by its sid yet (the worker has not stored it): kept, applied when it is */
		INSERT INTO dialer.pending_callbacks (provider, provider_call_id, sequence, fields)
		VALUES (v_prov.name, v_sid, v_seq, fields);
		RETURN jsonb_build_object('result', 'pending', 'reason', 'no call has this CallSid yet: kept until one has',
								  'provider_call_id', v_sid);
	END IF;
	IF v_call_id IS NULL THEN
		RETURN jsonb_build_object('result', 'ignored', 'reason', 'no call of pg_dialer has this call id or CallSid',
								  'call_id', v_call_id);
	END IF;

	RETURN dialer.twilio_apply_fields(v_call_id, fields, v_seq, 'callback');
END;
$$;
COMMENT ON FUNCTION dialer.twilio_ingest(jsonb, text) IS
	'Internal: authenticates a Twilio status callback (X-Twilio-Signature over the configured public URL and the fields) and applies it (or keeps it in pending_callbacks until its CallSid is stored)';

/*
 * Applies the fields of an authentic Twilio status callback to a call (through
 * dialer.apply_provider_status): the outcome fields go on the attempt, the event keeps
 * every field but credentials.  source names the event.  The callback of an asynchronous
 * machine detection (AsyncAmdStatusCallback: AnsweredBy and no CallStatus) is a verdict
 * (dialer.apply_machine_verdict).
 */
CREATE FUNCTION dialer.twilio_apply_fields(call_id bigint, fields jsonb, sequence bigint, source text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_data		jsonb;
	v_detail	jsonb;
BEGIN
	v_data := jsonb_strip_nulls(jsonb_build_object(
		'duration_seconds', CASE WHEN fields->>'CallDuration' ~ '^[0-9]{1,9}$' THEN (fields->>'CallDuration')::int END,
		'answered_by', nullif(fields->>'AnsweredBy', ''),
		'sip_response_code', CASE WHEN fields->>'SipResponseCode' ~ '^[0-9]{1,9}$' THEN (fields->>'SipResponseCode')::int END,
		'recording_url', nullif(fields->>'RecordingUrl', ''),
		'transcript', nullif(fields->>'TranscriptionText', ''),
		'error_code', nullif(fields->>'ErrorCode', ''),
		'error_message', nullif(fields->>'ErrorMessage', '')));

	/* the event keeps what Twilio said, minus any field that is a credential */
	v_detail := fields;
	IF fields::text ~* '(token|secret|password|signature|passport)' THEN
		SELECT coalesce(jsonb_object_agg(f.key, f.value), '{}') INTO v_detail
		  FROM jsonb_each(fields) f
		 WHERE f.key !~* '(token|secret|password|signature|passport)';
	END IF;
	v_detail := jsonb_build_object('fields', v_detail, 'via', 'twilio');

	IF nullif(fields->>'CallStatus', '') IS NULL THEN
		RETURN dialer.apply_machine_verdict(twilio_apply_fields.call_id, fields->>'AnsweredBy', fields->>'CallSid', v_detail);
	END IF;
	RETURN dialer.apply_provider_status(twilio_apply_fields.call_id, fields->>'CallStatus', fields->>'CallSid',
										twilio_apply_fields.sequence, v_data, v_detail, source);
END;
$$;
COMMENT ON FUNCTION dialer.twilio_apply_fields(bigint, jsonb, bigint, text) IS
	'Internal: applies the fields of an authentic Twilio status callback to a call (attempt data, event without credentials), or of a machine detection callback (the verdict)';

/*
 * Trigger: a call's provider call id was stored (by the worker, from the provider's
 * answer): the callbacks kept for that sid are applied in their order, as they would
 * have been had they come later, and removed.
 */
CREATE FUNCTION dialer.apply_pending_callbacks()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_kept	jsonb;
	r		record;
BEGIN
	PERFORM dialer.lock_provider_call_id(NEW.provider_call_id);
	-- statements of their own, after the lock: they see what a callback committed meanwhile;
	-- the usual case, nothing kept for the sid, costs one index probe
	IF NOT EXISTS (SELECT 1 FROM dialer.pending_callbacks p WHERE p.provider_call_id = NEW.provider_call_id) THEN
		RETURN NULL;
	END IF;
	WITH gone AS (
		-- kept under the provider whose token verified it: any Twilio provider of the
		-- call's account (a CallSid names one call of one account)
		DELETE FROM dialer.pending_callbacks p
		 USING dialer.providers kp, dialer.providers cp
		 WHERE p.provider_call_id = NEW.provider_call_id
		   AND kp.name = p.provider AND cp.name = NEW.provider
		   AND kp.account_sid = cp.account_sid
		RETURNING p.id, p.sequence, p.fields
	)
	SELECT jsonb_agg(jsonb_build_object('sequence', g.sequence, 'fields', g.fields)
					 ORDER BY g.sequence NULLS LAST, g.id)
	  INTO v_kept
	  FROM gone g;
	FOR r IN SELECT (e.value->>'sequence')::bigint AS sequence, e.value->'fields' AS fields
			   FROM jsonb_array_elements(coalesce(v_kept, '[]')) WITH ORDINALITY AS e(value, n)
			  ORDER BY e.n
	LOOP
		PERFORM dialer.twilio_apply_fields(NEW.id, r.fields, r.sequence, 'callback');
	END LOOP;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.apply_pending_callbacks() IS
	'Trigger: when a call''s provider call id is stored, applies (in order) and removes the callbacks kept for it in pending_callbacks';
CREATE TRIGGER apply_pending_callbacks
	AFTER UPDATE OF provider_call_id ON dialer.scheduled_calls
	FOR EACH ROW
	WHEN (NEW.provider_call_id IS NOT NULL AND OLD.provider_call_id IS DISTINCT FROM NEW.provider_call_id)
	EXECUTE FUNCTION dialer.apply_pending_callbacks();

/* ------------------------------------------------------------------------------------
 * The ingest functions PostgREST exposes
 * ------------------------------------------------------------------------------------ */

/*
 * Twilio status callback through the shipped proxy (deploy/nginx.conf), which adds
 * "Prefer: params=single-object" so that every field Twilio sends, including fields it
 * adds in the future, arrives in this one json argument, and passes the call id of the
 * URL's query string in X-Dialer-Call-Id.
 */
CREATE FUNCTION dialer_api.twilio_status_callback(json)
RETURNS json
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN dialer.twilio_ingest($1::jsonb, nullif(dialer.request_headers()->>'x-dialer-call-id', ''))::json;
END;
$$;
COMMENT ON FUNCTION dialer_api.twilio_status_callback(json) IS
	'Twilio status callback, all fields as one object (PostgREST Prefer: params=single-object, as the shipped proxy sends); call id in X-Dialer-Call-Id';

/*
 * Twilio status callback straight to PostgREST (no proxy): PostgREST maps each form field
 * to the parameter of that name, so this accepts the fields Twilio documents today
 * (https://www.twilio.com/docs/voice/api/call-resource#statuscallback and the standard
 * TwiML voice request parameters); a field it does not name makes PostgREST answer 404,
 * which is why the proxy deployment is the one to use.  A field not sent stays NULL and
 * is left out of the signature; a field sent empty is ''.
 */
CREATE FUNCTION dialer_api.twilio_status_callback(
	"AccountSid" text DEFAULT NULL,
	"ApiVersion" text DEFAULT NULL,
	"CallSid" text DEFAULT NULL,
	"CallStatus" text DEFAULT NULL,
	"CallToken" text DEFAULT NULL,
	"CallbackSource" text DEFAULT NULL,
	"Called" text DEFAULT NULL,
	"CalledCity" text DEFAULT NULL,
	"CalledCountry" text DEFAULT NULL,
	"CalledState" text DEFAULT NULL,
	"CalledZip" text DEFAULT NULL,
	"Caller" text DEFAULT NULL,
	"CallerCity" text DEFAULT NULL,
	"CallerCountry" text DEFAULT NULL,
	"CallerName" text DEFAULT NULL,
	"CallerState" text DEFAULT NULL,
	"CallerZip" text DEFAULT NULL,
	"CallDuration" text DEFAULT NULL,
	"Direction" text DEFAULT NULL,
	"Duration" text DEFAULT NULL,
	"ErrorCode" text DEFAULT NULL,
	"ErrorMessage" text DEFAULT NULL,
	"ForwardedFrom" text DEFAULT NULL,
	"From" text DEFAULT NULL,
	"FromCity" text DEFAULT NULL,
	"FromCountry" text DEFAULT NULL,
	"FromState" text DEFAULT NULL,
	"FromZip" text DEFAULT NULL,
	"AnsweredBy" text DEFAULT NULL,
	"MachineDetectionDuration" text DEFAULT NULL,
	"ParentCallSid" text DEFAULT NULL,
	"QueueTime" text DEFAULT NULL,
	"RecordingDuration" text DEFAULT NULL,
	"RecordingSid" text DEFAULT NULL,
	"RecordingUrl" text DEFAULT NULL,
	"SequenceNumber" text DEFAULT NULL,
	"SipResponseCode" text DEFAULT NULL,
	"StirPassportToken" text DEFAULT NULL,
	"StirStatus" text DEFAULT NULL,
	"StirVerstat" text DEFAULT NULL,
	"Timestamp" text DEFAULT NULL,
	"To" text DEFAULT NULL,
	"ToCity" text DEFAULT NULL,
	"ToCountry" text DEFAULT NULL,
	"ToState" text DEFAULT NULL,
	"ToZip" text DEFAULT NULL,
	"TrunkSid" text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN dialer.twilio_ingest(jsonb_strip_nulls(
		jsonb_build_object(
			'AccountSid', "AccountSid", 'ApiVersion', "ApiVersion", 'CallSid', "CallSid",
			'CallStatus', "CallStatus", 'CallToken', "CallToken", 'CallbackSource', "CallbackSource",
			'Called', "Called", 'CalledCity', "CalledCity", 'CalledCountry', "CalledCountry",
			'CalledState', "CalledState", 'CalledZip', "CalledZip", 'Caller', "Caller",
			'CallerCity', "CallerCity", 'CallerCountry', "CallerCountry", 'CallerName', "CallerName",
			'CallerState', "CallerState", 'CallerZip', "CallerZip", 'CallDuration', "CallDuration",
			'Direction', "Direction", 'Duration', "Duration", 'ErrorCode', "ErrorCode")
		|| jsonb_build_object(
			'ErrorMessage', "ErrorMessage", 'ForwardedFrom', "ForwardedFrom", 'From', "From",
			'FromCity', "FromCity", 'FromCountry', "FromCountry", 'FromState', "FromState",
			'FromZip', "FromZip", 'AnsweredBy', "AnsweredBy",
			'MachineDetectionDuration', "MachineDetectionDuration", 'ParentCallSid', "ParentCallSid",
			'QueueTime', "QueueTime", 'RecordingDuration', "RecordingDuration",
			'RecordingSid', "RecordingSid", 'RecordingUrl', "RecordingUrl",
			'SequenceNumber', "SequenceNumber", 'SipResponseCode', "SipResponseCode",
			'StirPassportToken', "StirPassportToken", 'StirStatus', "StirStatus",
			'StirVerstat', "StirVerstat", 'Timestamp', "Timestamp", 'To', "To")
		|| jsonb_build_object(
			'ToCity', "ToCity", 'ToCountry', "ToCountry", 'ToState', "ToState", 'ToZip', "ToZip",
			'TrunkSid', "TrunkSid")),
		nullif(dialer.request_headers()->>'x-dialer-call-id', ''))::json;
END;
$$;
COMMENT ON FUNCTION dialer_api.twilio_status_callback(text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text, text) IS
	'Twilio status callback straight to PostgREST: today''s documented fields as named parameters (unknown fields need the proxy deployment)';
