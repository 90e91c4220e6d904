/*
 * pg_dialer: call outcomes coming back from the providers.
 *
 *   dialer_api.twilio_status_callback      Twilio status callbacks (form fields, X-Twilio-Signature)
 *   dialer_api.provider_status_callback    JSON webhooks of backend and voice_api providers
 *                                          (HMAC-SHA256 of timestamp.body with the provider's
 *                                          webhook_secret)
 *
 * The schema dialer_api holds only these ingest functions: it is the one schema PostgREST
 * exposes, to a role that may execute them and nothing else (deploy/roles.sql).  They are
 * SECURITY DEFINER with a pinned search_path; everything they do is done by the internal
 * functions below, in schema dialer, which no other role may run:
 *
 *   dialer.apply_provider_status()  applies one status report of a provider to a call:
 *                                   idempotent, monotonic, retry policy.  Webhooks and the
 *                                   worker's reconciliation both use it.
 *   dialer.twilio_ingest(), dialer.json_webhook_ingest()   authenticate, then apply.
 *
 * The small internal helpers carry no SET search_path of their own, so that PostgreSQL can
 * inline or cache them: they qualify what they use and run under the pinned search_path
 * of the function that calls them (no role but the owner may call them directly).
 *
 * A request that is not authentic raises before anything is written, so it changes no row.
 * PostgREST turns the SQLSTATEs into HTTP statuses: PT401 -> 401 (unsigned), PT403 -> 403
 * (signature does not match), PT415 -> 415, 22023 / 22P02 -> 400 (malformed).
 * See doc/webhooks.md.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

CREATE SCHEMA dialer_api;
COMMENT ON SCHEMA dialer_api IS
	'pg_dialer''s webhook ingest functions, and nothing else: the one schema PostgREST exposes';
REVOKE ALL ON SCHEMA dialer_api FROM PUBLIC;

/* ------------------------------------------------------------------------------------
 * Signature primitives (src/webhook_signature.c)
 * ------------------------------------------------------------------------------------ */

CREATE FUNCTION dialer.hmac(algorithm text, key bytea, message bytea)
RETURNS bytea
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_hmac';
COMMENT ON FUNCTION dialer.hmac(text, bytea, bytea) IS
	'Internal: HMAC of message under key with algorithm sha1, sha224, sha256, sha384 or sha512 (PostgreSQL''s own implementation)';

CREATE FUNCTION dialer.base64_encode(data bytea)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_base64_encode';
COMMENT ON FUNCTION dialer.base64_encode(bytea) IS
	'Internal: Standard base64 with padding, on one line (encode(x, ''base64'') wraps lines at 76 characters)';

CREATE FUNCTION dialer.constant_time_equal(a text, b text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_constant_time_equal';
COMMENT ON FUNCTION dialer.constant_time_equal(text, text) IS
	'True when a and b are the same bytes; the time taken depends only on the lengths, never on where they differ';

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
 * Provider statuses
 * ------------------------------------------------------------------------------------ */

/*
 * A provider's call status in Twilio's vocabulary (queued, initiated, ringing,
 * in-progress, completed, busy, no-answer, failed, canceled), whatever its spelling:
 * case, '_' for '-', cancelled, answered, in_progress.  Others are returned as given
 * (lower case): they are recorded but move nothing.
 */
CREATE FUNCTION dialer.normalize_provider_status(status text)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE pg_catalog.replace(pg_catalog.lower(pg_catalog.btrim(status)), '_', '-')
		WHEN 'cancelled' THEN 'canceled'
		WHEN 'answered' THEN 'in-progress'
		WHEN 'noanswer' THEN 'no-answer'
		ELSE pg_catalog.replace(pg_catalog.lower(pg_catalog.btrim(status)), '_', '-') END;
$$;
COMMENT ON FUNCTION dialer.normalize_provider_status(text) IS
	'Internal: a provider status in Twilio''s spelling (no_answer -> no-answer, cancelled -> canceled, answered -> in-progress)';

/*
 * The order of a (normalized) provider status of a kind (dialer.provider_statuses):
 * accepted (the dispatcher's mark) 0, queued 1, initiated 2, ringing 3, in-progress 4, any
 * final status 5; NULL for a status pg_dialer does not know.
 */
CREATE FUNCTION dialer.provider_status_rank(status text, kind text DEFAULT NULL)
RETURNS int
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT (dialer.provider_status_row(kind, status)).rank;
$$;
COMMENT ON FUNCTION dialer.provider_status_rank(text, text) IS
	'Internal: order of a (normalized) provider status of a kind (dialer.provider_statuses): 0 accepted .. 4 in-progress, 5 final; NULL when unknown';

/*
 * The call status a (normalized) provider status of a kind leads to
 * (dialer.provider_statuses): dialing while the call is under way, else the outcome.
 * NULL for a status that moves nothing or that pg_dialer does not know.
 */
CREATE FUNCTION dialer.provider_status_outcome(status text, kind text DEFAULT NULL)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT (dialer.provider_status_row(kind, status)).call_status;
$$;
COMMENT ON FUNCTION dialer.provider_status_outcome(text, text) IS
	'Internal: the call status a (normalized) provider status of a kind leads to (dialer.provider_statuses): dialing, completed, busy, no_answer, failed, canceled; NULL when it moves nothing or is unknown';

/* ------------------------------------------------------------------------------------
 * Applying a status report
 *
 * dialer.apply_provider_status() reads as its steps, each a function of its own:
 *   provider_report_attempt()   which attempt a report is about; seen before?
 *   provider_status_advances()  does the attempt's provider status move forward?
 *   provider_status_outcome()   the call status a provider status leads to (above)
 *   outcome_of(), next_action() the outcome class, and what its rule says follows
 *                               (06_outcomes.sql)
 *   call_outcome_error()        the call's last_error after an outcome
 *   store_provider_report()     every write (report_value(): which of a stored and a
 *                               reported attempt field is kept)
 * The helpers without a SET of their own are inlined or cached under the caller's
 * pinned search_path (see the file's opening comment).
 * ------------------------------------------------------------------------------------ */

/*
 * The attempt a status report is about, and one look at the call's events: the attempt
 * with this provider call id, else the current attempt when it has no provider call id
 * yet (the report came before the worker stored it: it is adopted) or when no provider
 * call id is given; NULL when none matches.  report_key is dedupe_key within that
 * attempt (<attempt>:<dedupe_key>, '-' for no attempt); duplicate says whether an event
 * already recorded it; last_sequence is the highest sequence already applied to the
 * attempt (stale reports left out).  Exactly one row.  Run after the call's lock, so that
 * a report committed meanwhile is seen.
 */
CREATE FUNCTION dialer.provider_report_attempt(call_id bigint, current_attempt int,
											   provider_call_id text, dedupe_key text)
RETURNS TABLE (attempt dialer.call_attempts, duplicate boolean, last_sequence bigint, report_key text)
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT x.att, ev.dup, ev.last_seq, k.key
	  FROM (SELECT 1) one
	  LEFT JOIN LATERAL (
			SELECT a AS att FROM dialer.call_attempts a
			 WHERE a.call_id = provider_report_attempt.call_id
			   AND (a.provider_call_id = provider_report_attempt.provider_call_id
					OR (a.attempt = provider_report_attempt.current_attempt
						AND (provider_report_attempt.provider_call_id IS NULL OR a.provider_call_id IS NULL)))
			 ORDER BY a.provider_call_id = provider_report_attempt.provider_call_id DESC NULLS LAST, a.attempt DESC
			 LIMIT 1) x ON true
	  CROSS JOIN LATERAL (SELECT coalesce((x.att).attempt::text, '-') || ':' || provider_report_attempt.dedupe_key AS key) k
	  CROSS JOIN LATERAL (
			SELECT coalesce(pg_catalog.bool_or(e.detail->>'dedupe_key' = k.key), false) AS dup,
				   pg_catalog.max((e.detail->>'sequence')::bigint)
					 FILTER (WHERE e.detail ? 'sequence' AND (e.detail->>'attempt')::int = (x.att).attempt
								   AND NOT e.detail ? 'stale') AS last_seq
			  FROM dialer.call_events e
			 WHERE e.call_id = provider_report_attempt.call_id) ev;
$$;
COMMENT ON FUNCTION dialer.provider_report_attempt(bigint, int, text, text) IS
	'Internal: the attempt a provider''s status report is about (by provider call id, else the current one), the report''s key within it, whether it was recorded before, and the highest sequence applied to the attempt';

/*
 * Whether an attempt's provider status moves from old_status to new_status (both
 * normalized): only forward in provider_status_rank's order, a repeated status under way
 * included, a final one not; from a status pg_dialer does not know, to any it knows.
 */
CREATE FUNCTION dialer.provider_status_advances(new_status text, old_status text, kind text DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT n.rank IS NOT NULL
		   AND (old_status IS NULL OR o.rank IS NULL OR n.rank > o.rank OR (n.rank = o.rank AND n.rank < 5))
	  FROM (SELECT dialer.provider_status_rank(new_status, kind) AS rank) n,
		   (SELECT dialer.provider_status_rank(old_status, kind) AS rank) o;
$$;
COMMENT ON FUNCTION dialer.provider_status_advances(text, text, text) IS
	'Internal: true when an attempt''s provider status may move from old_status to new_status (forward only; an unknown old status may be left)';

/*
 * The last_error of a call after an outcome: kept while dialing and when completed;
 * 'failed: <error_code> <error_message>' from the report's attempt_data; 'no answer';
 * else the outcome itself (busy, canceled).  STABLE, as concat_ws is: so that it is inlined.
 */
CREATE FUNCTION dialer.call_outcome_error(outcome text, last_error text, attempt_data jsonb)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT CASE
		WHEN outcome IN ('dialing', 'completed') THEN last_error
		WHEN outcome = 'failed' THEN
			'failed' || coalesce(': ' || nullif(pg_catalog.concat_ws(' ', attempt_data->>'error_code',
																   attempt_data->>'error_message'), ''), '')
		WHEN outcome = 'no_answer' THEN 'no answer'
		ELSE outcome END;
$$;
COMMENT ON FUNCTION dialer.call_outcome_error(text, text, jsonb) IS
	'Internal: a call''s last_error after a provider outcome (kept, failed: code message, no answer, or the outcome)';

/*
 * A value of an attempt after a report: the reported one when given, else the stored
 * one; for a stale report the other way round (it only fills what is still empty).
 */
CREATE FUNCTION dialer.report_value(stored anyelement, reported anyelement, stale boolean)
RETURNS anyelement
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN stale THEN coalesce(stored, reported) ELSE coalesce(reported, stored) END;
$$;
COMMENT ON FUNCTION dialer.report_value(anyelement, anyelement, boolean) IS
	'Internal: an attempt field after a status report: the reported value over the stored one, or for a stale report the stored one over the reported one';

/*
 * Every write of a status report: the attempt (attempt_id; NULL: none), with the outcome
 * class; then, when the report moves the call (moves), its move to new_status, and what
 * the outcome's rule says follows (next: retry back to the queue at next_attempt_at, hold
 * for an operator, suppress the number); else the report's event as a note, and the call's
 * provider status when it follows the current attempt's and the call is not back in the
 * queue (news, not a move).  call_row is the row as locked before the report; lock order:
 * the call (by the caller), then the attempt, as the dispatcher does.
 */
CREATE FUNCTION dialer.store_provider_report(
	call_row dialer.scheduled_calls,
	attempt_id bigint,
	provider_call_id text,
	provider_status text,
	attempt_data jsonb,
	stale boolean,
	is_current boolean,
	moves boolean,
	new_status text,
	outcome text,
	last_error text,
	next jsonb,
	event text,
	event_detail jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
	v_call		dialer.scheduled_calls := store_provider_report.call_row;
	p_sid		text := store_provider_report.provider_call_id;
	p_pstatus	text := store_provider_report.provider_status;
	p_data		jsonb := store_provider_report.attempt_data;
	p_stale		boolean := store_provider_report.stale;
	p_next		jsonb := store_provider_report.next;
BEGIN
	UPDATE dialer.call_attempts a
	   SET provider_call_id = coalesce(a.provider_call_id, p_sid),
		   provider_status = p_pstatus,
		   duration_seconds = dialer.report_value(a.duration_seconds, (p_data->>'duration_seconds')::int, p_stale),
		   answered_by = dialer.report_value(a.answered_by, p_data->>'answered_by', p_stale),
		   sip_response_code = dialer.report_value(a.sip_response_code, (p_data->>'sip_response_code')::int, p_stale),
		   recording_url = dialer.report_value(a.recording_url, p_data->>'recording_url', p_stale),
		   transcript = dialer.report_value(a.transcript, p_data->>'transcript', p_stale),
		   error_code = dialer.report_value(a.error_code, p_data->>'error_code', p_stale),
		   error_message = dialer.report_value(a.error_message, p_data->>'error_message', p_stale),
		   outcome = coalesce(store_provider_report.outcome, a.outcome)
	 WHERE a.id = store_provider_report.attempt_id;

	IF NOT store_provider_report.moves THEN
		IF store_provider_report.is_current AND p_pstatus IS DISTINCT FROM v_call.provider_status
		   AND v_call.status <> 'scheduled' THEN
			UPDATE dialer.scheduled_calls c
			   SET provider_status = coalesce(p_pstatus, c.provider_status), updated_at = pg_catalog.now()
			 WHERE c.id = v_call.id;
		END IF;
		PERFORM dialer.note_calls(ARRAY[v_call.id], ARRAY[store_provider_report.event],
								  ARRAY[store_provider_report.event_detail]);
		RETURN;
	END IF;
	PERFORM pg_catalog.count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
		v_call.id, v_call.status, store_provider_report.event, store_provider_report.new_status,
		store_provider_report.event_detail, outcome => store_provider_report.outcome,
		last_error => store_provider_report.last_error, provider_call_id => p_sid, provider_status => p_pstatus)]);
	PERFORM dialer.follow_outcome(v_call, store_provider_report.new_status, p_next);
END;
$$;
COMMENT ON FUNCTION dialer.store_provider_report(dialer.scheduled_calls, bigint, text, text, jsonb, boolean, boolean, boolean, text, text, text, jsonb, text, jsonb) IS
	'Internal: writes what apply_provider_status decided: the attempt''s fields and outcome class, and the call''s move with what its outcome''s rule says follows (dialer.follow_outcome), or the report as a note (dialer.note_calls)';

/*
 * Applies one status report of a provider to a call: the one place where callbacks,
 * JSON webhooks and reconciliation change a call's outcome.
 *
 *   call_id           pg_dialer's call id
 *   status            the provider's status (Twilio vocabulary, any spelling, see
 *                     normalize_provider_status); a status pg_dialer does not know is
 *                     recorded and moves nothing
 *   provider_call_id  the provider's id of the call (Twilio CallSid); it selects the
 *                     attempt.  NULL: the call's current attempt
 *   sequence          the provider's ordering of its reports for one provider call
 *                     (Twilio SequenceNumber); NULL when it has none
 *   attempt_data      what to store on the attempt: duration_seconds, answered_by,
 *                     sip_response_code, recording_url, transcript, error_code,
 *                     error_message (absent or null: keep what is stored)
 *   event_detail      what the event records about the report (never secrets)
 *   source            the event's name: callback, webhook, reconcile, ...
 *   dedupe_key        identifies the report within its attempt; default
 *                     provider_call_id/sequence (or /status without a sequence); stored
 *                     as <attempt>:<dedupe_key> in the event
 *
 * Rules:
 *   - A report whose dedupe_key the attempt has already recorded is a duplicate: nothing
 *     is written at all, the result says 'duplicate'.
 *   - Otherwise one event (named source) is appended, with from_status and to_status.
 *   - The attempt is the one with this provider_call_id; else the current attempt when
 *     it has no provider call id yet (the report came before the worker stored it: it is
 *     adopted); else the report matches no attempt ('unmatched': recorded, nothing moves).
 *   - Monotonic: a report with a sequence at or below one already applied to the attempt
 *     is stale: it only fills attempt fields still empty.  A provider status never moves
 *     back (queued < initiated < ringing < in-progress < final), and the call status
 *     never moves back (scheduled < dispatching < dialing < final).
 *   - Only the current attempt moves the call, and only from dispatching, dialing or
 *     unknown: under way -> dialing; final -> completed / busy / no_answer / failed /
 *     canceled with finished_at, or, for busy and no_answer when the retry policy allows
 *     (campaign's retry_busy / retry_no_answer / retry_delay over the provider's, and
 *     attempts - attempts_base < max_attempts, and before the deadline), back to
 *     scheduled after retry_delay with a retry_scheduled event.  An unknown call is
 *     resolved by its provider's word.  The worker is woken when a call leaves the
 *     provider's concurrency (final or re-scheduled).
 *
 * Returns {result: applied | stale | recorded | unmatched | duplicate | unknown_call,
 * call_id, attempt, status, previous_status}.
 */
CREATE FUNCTION dialer.apply_provider_status(
	call_id bigint,
	status text,
	provider_call_id text DEFAULT NULL,
	sequence bigint DEFAULT NULL,
	attempt_data jsonb DEFAULT '{}',
	event_detail jsonb DEFAULT '{}',
	source text DEFAULT 'callback',
	dedupe_key text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	p_call_id	bigint := apply_provider_status.call_id;
	p_sid		text := nullif(apply_provider_status.provider_call_id, '');
	p_seq		bigint := apply_provider_status.sequence;
	p_data		jsonb := coalesce(apply_provider_status.attempt_data, '{}');
	v_status	text := dialer.normalize_provider_status(apply_provider_status.status);
	v_outcome	text;
	v_call		dialer.scheduled_calls;
	v_look		record;
	v_att		dialer.call_attempts;
	v_current	boolean;
	v_stale		boolean := false;
	v_forward	boolean := false;
	v_new_pstatus text;
	v_moves		boolean;
	v_new_status text;
	v_error		text;
	v_kind		text;
	v_class		text;
	v_action	text;
	v_next_at	timestamptz;
	v_delay		interval;
	v_skipped	text;
	v_rule_set	text;
	v_result	text;
BEGIN
	IF p_call_id IS NULL OR v_status IS NULL OR v_status = '' THEN
		RAISE EXCEPTION 'apply_provider_status: call_id and status are required'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF jsonb_typeof(p_data) <> 'object' THEN
		RAISE EXCEPTION 'apply_provider_status: attempt_data must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	/* 1. the call, locked: reports of one call are applied one at a time */
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = p_call_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN jsonb_build_object('result', 'unknown_call', 'call_id', p_call_id);
	END IF;
	SELECT p.kind INTO v_kind FROM dialer.providers p WHERE p.name = v_call.provider;
	v_outcome := dialer.provider_status_outcome(v_status, v_kind);

	/* 2. the attempt it is about; a report already recorded changes nothing at all */
	SELECT * INTO v_look
	  FROM dialer.provider_report_attempt(p_call_id, v_call.attempts, p_sid,
			coalesce(apply_provider_status.dedupe_key, coalesce(p_sid, '-') || '/' || coalesce(p_seq::text, v_status)));
	v_att := v_look.attempt;
	IF v_look.duplicate THEN
		RETURN jsonb_build_object('result', 'duplicate', 'call_id', p_call_id, 'attempt', v_att.attempt,
								  'status', v_call.status, 'previous_status', v_call.status);
	END IF;
	v_current := v_att.id IS NOT NULL AND v_att.attempt = v_call.attempts;
	IF v_att.id IS NOT NULL THEN
		/* a report at or below a sequence already applied comes late: it only fills gaps */
		v_stale := p_seq IS NOT NULL AND v_look.last_sequence IS NOT NULL AND p_seq <= v_look.last_sequence;
		v_forward := NOT v_stale AND dialer.provider_status_advances(v_status, v_att.provider_status, v_kind);
		v_new_pstatus := CASE WHEN v_forward THEN v_status ELSE v_att.provider_status END;
	END IF;

	/* 3. the call: only its current attempt moves it, and only forward */
	v_new_status := v_call.status;
	v_moves := v_current AND NOT v_stale AND v_outcome IS NOT NULL
			   AND v_call.status = ANY (dialer.unsettled_statuses());
	IF v_moves THEN
		/* its outcome class, and what the class's rule says follows */
		v_class := dialer.outcome_of(v_kind, v_status, p_data->>'answered_by', p_data->>'error_code', NULL);
		IF v_class IS NOT NULL THEN
			SELECT n.action, n.next_attempt_at, n.retry_delay, n.skipped, n.rule_set
			  INTO v_action, v_next_at, v_delay, v_skipped, v_rule_set
			  FROM dialer.next_action(v_call, v_class) n;
		END IF;
		v_new_status := CASE v_action WHEN 'retry' THEN 'scheduled' WHEN 'hold' THEN 'held' ELSE v_outcome END;
		v_error := dialer.call_outcome_error(v_outcome, v_call.last_error, p_data);
	END IF;
	v_result := CASE
		WHEN v_att.id IS NULL THEN 'unmatched'
		WHEN v_stale THEN 'stale'
		WHEN v_new_status <> v_call.status OR v_forward THEN 'applied'
		ELSE 'recorded' END;

	/* 4. the writes, and the worker woken when a call leaves the provider's concurrency */
	PERFORM dialer.store_provider_report(
		call_row => v_call, attempt_id => v_att.id, provider_call_id => p_sid,
		provider_status => v_new_pstatus, attempt_data => p_data, stale => v_stale,
		is_current => v_current, moves => v_moves, new_status => v_outcome, outcome => v_class,
		last_error => v_error,
		next => dialer.next_action_detail(v_action, v_rule_set, v_class, v_att.attempt, v_next_at, v_delay, v_call),
		event => coalesce(apply_provider_status.source, 'callback'),
		event_detail => coalesce(apply_provider_status.event_detail, '{}') || jsonb_strip_nulls(jsonb_build_object(
			'provider_status', v_status, 'provider_call_id', p_sid, 'attempt', v_att.attempt,
			'sequence', p_seq, 'dedupe_key', v_look.report_key, 'result', v_result,
			'stale', CASE WHEN v_stale THEN true END,
			'unmatched', CASE WHEN v_att.id IS NULL THEN true END,
			'next_action', CASE WHEN v_action <> 'done' OR v_skipped IS NOT NULL THEN v_action END,
			'retry_skipped', v_skipped)));
	IF v_new_status <> v_call.status AND v_new_status <> 'dialing' THEN
		/* a concurrency slot is free (and maybe a retry is due); no warning per callback */
		PERFORM dialer.wake_worker_quietly();
	END IF;

	RETURN jsonb_build_object('result', v_result, 'call_id', p_call_id,
							  'attempt', CASE WHEN v_att.id IS NOT NULL THEN v_att.attempt END,
							  'status', v_new_status, 'previous_status', v_call.status);
END;
$$;
COMMENT ON FUNCTION dialer.apply_provider_status(bigint, text, text, bigint, jsonb, jsonb, text, text) IS
	'Applies one status report of a provider to a call (callbacks, webhooks, reconciliation): idempotent by dedupe_key, monotonic by sequence and status order, retry policy for busy/no_answer; returns {result, call_id, attempt, status, previous_status}';

/* ------------------------------------------------------------------------------------
 * Refusals
 * ------------------------------------------------------------------------------------ */

/*
 * Raises the error of a refused webhook.  PostgREST answers PTxyz with HTTP status xyz.
 * The message never says more than what kind of refusal it is: no secret, no hint of
 * which part of a signature was wrong.
 */
CREATE FUNCTION dialer.webhook_refuse(http_status int, message text, hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_code text := CASE http_status WHEN 401 THEN 'PT401' WHEN 403 THEN 'PT403' WHEN 415 THEN 'PT415'
									ELSE '22023' END;
BEGIN
	IF hint IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = v_code, MESSAGE = message;
	END IF;
	RAISE EXCEPTION USING ERRCODE = v_code, MESSAGE = message, HINT = hint;
END;
$$;
COMMENT ON FUNCTION dialer.webhook_refuse(int, text, text) IS
	'Internal: raises a webhook refusal (PT401, PT403, PT415 for PostgREST; 22023 -> 400 otherwise)';

/*
 * The HTTP request headers PostgREST passed (lower-case names), {} outside PostgREST.
 */
CREATE FUNCTION dialer.request_headers()
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
	SELECT coalesce(nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb, '{}'::jsonb);
$$;
COMMENT ON FUNCTION dialer.request_headers() IS
	'Internal: the request headers PostgREST set in request.headers, as jsonb ({} when none)';

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
	IF v_sid IS NULL OR v_sid = '' OR v_status IS NULL OR v_status = '' THEN
		PERFORM dialer.webhook_refuse(400, 'a status callback names CallSid and CallStatus');
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
 * every field but credentials.  source names the event.
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

	RETURN dialer.apply_provider_status(twilio_apply_fields.call_id, fields->>'CallStatus', fields->>'CallSid',
										twilio_apply_fields.sequence, v_data, v_detail, source);
END;
$$;
COMMENT ON FUNCTION dialer.twilio_apply_fields(bigint, jsonb, bigint, text) IS
	'Internal: applies the fields of an authentic Twilio status callback to a call (attempt data, event without credentials)';

/*
 * Serializes, per provider call id, the callback that looks a call up by its CallSid and
 * the worker storing that CallSid: a transaction-level advisory lock (in a key space of
 * pg_dialer's own).  Taken before the look-up, so that either the look-up sees the sid
 * stored, or the worker sees the callback kept in pending_callbacks.
 */
CREATE FUNCTION dialer.lock_provider_call_id(provider_call_id text)
RETURNS void
LANGUAGE sql
VOLATILE STRICT
AS $$
	SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_dialer provider_call_id'),
											pg_catalog.hashtext(provider_call_id));
$$;
COMMENT ON FUNCTION dialer.lock_provider_call_id(text) IS
	'Internal: transaction lock serializing a callback looked up by CallSid with the storing of that CallSid';

/*
 * Authentic callbacks that came before their call was known by its provider call id:
 * Twilio may post the first status callback before the worker has stored the CallSid of
 * its answer, and a callback posted straight to PostgREST carries no call id.  Such a
 * callback is kept here, and applied (then removed) when the sid is stored
 * (dialer.apply_pending_callbacks).  One that never finds its call (a call placed by
 * someone else on the same account) stays until dialer.cleanup() removes it.
 */
CREATE TABLE dialer.pending_callbacks (
	id					bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	provider			text NOT NULL REFERENCES dialer.providers (name) ON UPDATE CASCADE ON DELETE CASCADE,
	provider_call_id	text NOT NULL,
	sequence			bigint,
	fields				jsonb NOT NULL CHECK (jsonb_typeof(fields) = 'object'),
	received_at			timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dialer.pending_callbacks IS
	'Authentic Twilio status callbacks whose call was not yet known by its CallSid: applied when the sid is stored, removed by cleanup() when never matched';
COMMENT ON COLUMN dialer.pending_callbacks.provider IS 'The provider whose auth token signed it';
COMMENT ON COLUMN dialer.pending_callbacks.provider_call_id IS 'The CallSid it is about';
COMMENT ON COLUMN dialer.pending_callbacks.sequence IS 'Its SequenceNumber (the order they are applied in)';
COMMENT ON COLUMN dialer.pending_callbacks.fields IS 'Every form field as received (the signature was checked over them)';
COMMENT ON COLUMN dialer.pending_callbacks.received_at IS 'When it was received';
COMMENT ON COLUMN dialer.pending_callbacks.id IS 'Identity of the kept callback';
COMMENT ON SEQUENCE dialer.pending_callbacks_id_seq IS 'Identity of dialer.pending_callbacks.id';
CREATE INDEX pending_callbacks_provider_call_id_idx ON dialer.pending_callbacks (provider_call_id);
SELECT pg_catalog.pg_extension_config_dump('dialer.pending_callbacks', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('dialer.pending_callbacks', 'id'), '');

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
 * JSON webhooks (backend, voice_api)
 * ------------------------------------------------------------------------------------ */

/*
 * The call a JSON webhook names, and its provider: metadata.call_id when the body has it
 * (pg_dialer's id, as the worker sent it), else call_id, first as the provider's id of a
 * call of a backend or voice_api provider (then provider_call_id is that id), then as
 * pg_dialer's.  NULLs when no call matches.  Nothing here is trusted yet: it only finds
 * the secret the signature is checked with.
 */
CREATE FUNCTION dialer.json_webhook_call(doc jsonb, OUT call_id bigint, OUT provider text,
										 OUT provider_call_id text)
LANGUAGE plpgsql
STABLE
AS $$
#variable_conflict use_column
DECLARE
	v_ref		text;
BEGIN
	IF jsonb_typeof(doc->'metadata') = 'object' AND doc->'metadata' ? 'call_id' THEN
		v_ref := doc->'metadata'->>'call_id';
		IF v_ref ~ '^[1-9][0-9]{0,17}$' THEN
			SELECT c.id, c.provider INTO json_webhook_call.call_id, json_webhook_call.provider
			  FROM dialer.scheduled_calls c WHERE c.id = v_ref::bigint;
		END IF;
		RETURN;
	END IF;
	v_ref := CASE jsonb_typeof(doc->'call_id') WHEN 'string' THEN doc->>'call_id'
											   WHEN 'number' THEN doc->>'call_id' END;
	IF v_ref IS NOT NULL AND v_ref <> '' THEN
		SELECT c.id, c.provider, c.provider_call_id
		  INTO json_webhook_call.call_id, json_webhook_call.provider, json_webhook_call.provider_call_id
		  FROM dialer.scheduled_calls c JOIN dialer.providers p ON p.name = c.provider
		 WHERE c.provider_call_id = v_ref AND p.kind IN ('backend', 'voice_api')
		 ORDER BY c.id DESC LIMIT 1;
		IF json_webhook_call.call_id IS NULL AND v_ref ~ '^[1-9][0-9]{0,17}$' THEN
			SELECT c.id, c.provider INTO json_webhook_call.call_id, json_webhook_call.provider
			  FROM dialer.scheduled_calls c WHERE c.id = v_ref::bigint;
		END IF;
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.json_webhook_call(jsonb) IS
	'Internal: the call (id, provider, provider call id) a JSON webhook body names by metadata.call_id or call_id; NULLs when none';

/*
 * Refuses (400) an authentic JSON webhook whose fields are malformed: status missing or
 * not a string, duration not a non-negative number of seconds, sequence not a
 * non-negative integer, metadata not an object, recording_url not a string.
 */
CREATE FUNCTION dialer.json_webhook_check_fields(doc jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF jsonb_typeof(doc->'status') IS DISTINCT FROM 'string' OR doc->>'status' = '' THEN
		PERFORM dialer.webhook_refuse(400, 'status is required and must be a string');
	END IF;
	IF doc ? 'duration' AND jsonb_typeof(doc->'duration') <> 'null'
	   AND NOT (jsonb_typeof(doc->'duration') IN ('number', 'string')
				AND (doc->>'duration') ~ '^[0-9]{1,9}(\.[0-9]+)?$') THEN
		PERFORM dialer.webhook_refuse(400, 'duration must be a non-negative number of seconds');
	END IF;
	IF doc ? 'sequence' AND jsonb_typeof(doc->'sequence') <> 'null'
	   AND (doc->>'sequence') !~ '^[0-9]{1,18}$' THEN
		PERFORM dialer.webhook_refuse(400, 'sequence must be a non-negative integer');
	END IF;
	IF doc ? 'metadata' AND jsonb_typeof(doc->'metadata') NOT IN ('object', 'null') THEN
		PERFORM dialer.webhook_refuse(400, 'metadata must be a JSON object');
	END IF;
	IF doc ? 'recording_url' AND jsonb_typeof(doc->'recording_url') NOT IN ('string', 'null') THEN
		PERFORM dialer.webhook_refuse(400, 'recording_url must be a string');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.json_webhook_check_fields(jsonb) IS
	'Internal: raises the 400 refusal of a JSON webhook body with a malformed status, duration, sequence, metadata or recording_url';

/*
 * What an (authentic, checked) JSON webhook body tells about the attempt, in
 * apply_provider_status's attempt_data keys: the duration rounded to whole seconds, a
 * transcript that is not a string kept as its JSON text.
 */
CREATE FUNCTION dialer.json_webhook_attempt_data(doc jsonb)
RETURNS jsonb
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'duration_seconds', pg_catalog.round((doc->>'duration')::numeric)::int,
		'answered_by', doc->>'answered_by',
		'recording_url', nullif(doc->>'recording_url', ''),
		'transcript', CASE pg_catalog.jsonb_typeof(doc->'transcript')
						WHEN 'string' THEN nullif(doc->>'transcript', '')
						WHEN 'null' THEN NULL
						ELSE (doc->'transcript')::text END,
		'error_code', doc->>'error_code',
		'error_message', doc->>'error_message'));
$$;
COMMENT ON FUNCTION dialer.json_webhook_attempt_data(jsonb) IS
	'Internal: the attempt data (duration_seconds, answered_by, recording_url, transcript, error_code, error_message) of a JSON webhook body';

/*
 * Authenticates and applies one JSON webhook of a backend or voice_api provider.
 *
 *   body  the request body exactly as received (PostgREST passes the raw text to a
 *         function's single unnamed json parameter)
 *
 * Headers: X-Dialer-Timestamp (Unix seconds) and X-Dialer-Signature
 * ("sha256=" || hex HMAC-SHA256(webhook_secret, timestamp || '.' || body)).  Refused
 * when either is missing (401), the timestamp is more than 300 s away from now (401:
 * replay), or the signature does not match (403).
 *
 * The body: {call_id, status, metadata, transcript, recording_url, duration} (and
 * optionally provider_call_id, sequence, answered_by, error_code, error_message).  The
 * call is metadata.call_id when present (pg_dialer's id, as the worker sent it), else
 * call_id: first as the provider's id of a call (provider_call_id), then as pg_dialer's.
 */
CREATE FUNCTION dialer.json_webhook_ingest(body json)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_headers	jsonb := dialer.request_headers();
	v_ts		text := btrim(v_headers->>'x-dialer-timestamp');
	v_sig		text := lower(btrim(v_headers->>'x-dialer-signature'));
	v_raw		text := body::text;
	v_doc		jsonb;
	v_call		record;
	v_prov		dialer.providers;
	v_expected	text;
	v_data		jsonb;
BEGIN
	IF body IS NULL THEN
		PERFORM dialer.webhook_refuse(400, 'the webhook body is empty');
	END IF;
	IF v_ts IS NULL OR v_ts = '' OR v_sig IS NULL OR v_sig = '' THEN
		PERFORM dialer.webhook_refuse(401, 'X-Dialer-Timestamp and X-Dialer-Signature are required',
			'Sign timestamp || ''.'' || body with HMAC-SHA256 and the provider''s webhook_secret.');
	END IF;
	IF v_ts !~ '^[0-9]{1,12}$' THEN
		PERFORM dialer.webhook_refuse(401, 'X-Dialer-Timestamp is not a Unix time in seconds');
	END IF;
	IF abs(extract(epoch FROM now()) - v_ts::bigint) > 300 THEN
		PERFORM dialer.webhook_refuse(401, 'X-Dialer-Timestamp is more than 5 minutes away from the server''s clock',
			'A signed webhook is accepted for 5 minutes; check the sender''s clock.');
	END IF;

	v_doc := v_raw::jsonb;
	IF jsonb_typeof(v_doc) <> 'object' THEN
		PERFORM dialer.webhook_refuse(400, 'the webhook body must be a JSON object');
	END IF;

	/* the call (to find the secret; nothing is trusted before the signature matches) */
	v_call := dialer.json_webhook_call(v_doc);
	IF v_call.provider IS NOT NULL THEN
		SELECT * INTO v_prov FROM dialer.providers p
		 WHERE p.name = v_call.provider AND p.kind IN ('backend', 'voice_api') AND p.webhook_secret IS NOT NULL;
	END IF;
	IF v_prov.name IS NULL THEN
		/* unknown call, or a provider without a webhook secret: nothing can vouch for it */
		PERFORM dialer.webhook_refuse(403, 'X-Dialer-Signature does not match');
	END IF;

	v_expected := 'sha256=' || encode(dialer.hmac('sha256', convert_to(v_prov.webhook_secret, 'UTF8'),
												  convert_to(v_ts || '.' || v_raw, 'UTF8')), 'hex');
	IF NOT dialer.constant_time_equal(v_sig, v_expected) THEN
		PERFORM dialer.webhook_refuse(403, 'X-Dialer-Signature does not match');
	END IF;

	/* authentic from here on: the fields, then the report */
	PERFORM dialer.json_webhook_check_fields(v_doc);
	v_data := dialer.json_webhook_attempt_data(v_doc);
	RETURN dialer.apply_provider_status(
		v_call.call_id, v_doc->>'status',
		coalesce(CASE jsonb_typeof(v_doc->'provider_call_id') WHEN 'string' THEN v_doc->>'provider_call_id' END,
				 v_call.provider_call_id),
		CASE WHEN jsonb_typeof(v_doc->'sequence') <> 'null' THEN (v_doc->>'sequence')::bigint END,
		v_data,
		jsonb_build_object('via', v_prov.kind) || jsonb_strip_nulls(jsonb_build_object(
			'status', v_doc->>'status',
			'duration', v_doc->'duration',
			'recording_url', v_doc->'recording_url',
			'metadata', CASE WHEN octet_length((v_doc->'metadata')::text) <= 8192 THEN v_doc->'metadata' END,
			'transcript_chars', CASE WHEN v_doc ? 'transcript' THEN length(v_data->>'transcript') END,
			'timestamp', v_ts::bigint)),
		'webhook',
		'sha256:' || encode(sha256(convert_to(v_raw, 'UTF8')), 'hex'));
END;
$$;
COMMENT ON FUNCTION dialer.json_webhook_ingest(json) IS
	'Internal: authenticates a JSON webhook (HMAC-SHA256 of X-Dialer-Timestamp.body with the provider''s webhook_secret, 5-minute window) and applies it';

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

/*
 * JSON webhook of a backend or voice_api provider: POST with Content-Type
 * application/json; PostgREST hands the raw body to this single unnamed json parameter,
 * so the signature is checked over the exact bytes sent.
 */
CREATE FUNCTION dialer_api.provider_status_callback(json)
RETURNS json
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN dialer.json_webhook_ingest($1)::json;
END;
$$;
COMMENT ON FUNCTION dialer_api.provider_status_callback(json) IS
	'JSON status webhook of backend and voice_api providers: {call_id, status, metadata, transcript, recording_url, duration}, signed with X-Dialer-Timestamp and X-Dialer-Signature (HMAC-SHA256 of timestamp.body)';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer_api FROM PUBLIC;
