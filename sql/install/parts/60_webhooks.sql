/*
 * pg_dialer: call outcomes coming back from the providers: the webhooks.
 *
 *   dialer_api.provider_status_callback    JSON webhooks of the kinds that send them
 *                                          (provider_kinds.json_webhooks: HMAC-SHA256 of
 *                                          timestamp.body with the provider's webhook_secret)
 *   dialer_api.twilio_status_callback      Twilio's form callbacks, in its kind's own part
 *                                          (61_kind_twilio.sql)
 *
 * The schema dialer_api holds only these ingest functions: it is the one schema PostgREST
 * exposes, to a role that may execute them and nothing else (deploy/roles.sql).  They are
 * SECURITY DEFINER with a pinned search_path; everything they do is done by the internal
 * functions below, in schema dialer, which no other role may run:
 *
 *   dialer.apply_provider_status()  applies one status report of a provider to a call
 *                                   (40_reports.sql): webhooks and the dispatcher's
 *                                   reconciliation both use it.
 *   dialer.json_webhook_ingest()    authenticates, then applies.
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
		  JOIN dialer.provider_kinds k ON k.kind = p.kind
		 WHERE c.provider_call_id = v_ref AND k.json_webhooks
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
		SELECT p.* INTO v_prov FROM dialer.providers p JOIN dialer.provider_kinds k ON k.kind = p.kind
		 WHERE p.name = v_call.provider AND k.json_webhooks AND p.webhook_secret IS NOT NULL;
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
	'JSON status webhook of the providers whose kind sends one (provider_kinds.json_webhooks: backend, voice_api): {call_id, status, metadata, transcript, recording_url, duration}, signed with X-Dialer-Timestamp and X-Dialer-Signature (HMAC-SHA256 of timestamp.body)';
