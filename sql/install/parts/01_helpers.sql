/*
 * pg_dialer: small helpers every part uses.
 *
 * dialer.raise_bad_argument()      the standard error of an argument a function does not take
 * dialer.is_valid_timezone()       whether PostgreSQL knows a time zone name
 * dialer.wake_worker()             wakes the dispatcher at commit (C, src/backend_hooks.c)
 * dialer.require_role(), grant_to() the grant helpers' checks and common part
 * dialer.lock_call()               a call's row locked, or the standard error for an unknown id
 * dialer.hmac(), constant_time_equal() and base64 for the webhooks' signatures
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/* C helpers (src/pg_dialer.c, src/shmem.c) */

CREATE FUNCTION dialer.wake_worker()
RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dialer_wake_worker';
COMMENT ON FUNCTION dialer.wake_worker() IS
	'Wakes the dispatcher when the current transaction commits (nothing happens on rollback); warns, once per transaction, when no dispatcher serves this database';

CREATE FUNCTION dialer.wake_worker_quietly()
RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dialer_wake_worker_quietly';
COMMENT ON FUNCTION dialer.wake_worker_quietly() IS
	'Internal: dialer.wake_worker() without the warning when no dispatcher serves this database (webhooks)';

CREATE FUNCTION dialer.is_valid_timezone(name text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'dialer_is_valid_timezone';
COMMENT ON FUNCTION dialer.is_valid_timezone(text) IS
	'True when name is a time zone PostgreSQL knows (IANA names such as Europe/Paris)';

/*
 * Raises the error for a bad argument of an API function: SQLSTATE 22023 unless given,
 * a message naming the argument and its value, a detail saying what is accepted, and a
 * hint.  One place, so every validation error has the same shape.
 */
CREATE FUNCTION dialer.raise_bad_argument(argument text, value text, detail text, hint text,
										  errcode text DEFAULT '22023')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'invalid %: %', argument,
		CASE WHEN value IS NULL THEN 'NULL'
			 WHEN length(value) > 80 THEN quote_literal(left(value, 77) || '...')
			 ELSE quote_literal(value) END
		USING ERRCODE = errcode, DETAIL = detail, HINT = hint;
END;
$$;
COMMENT ON FUNCTION dialer.raise_bad_argument(text, text, text, text, text) IS
	'Internal: raises the standard "invalid <argument>: <value>" error of the API';

/*
 * Raises the standard error unless role_name names an existing role: the grant
 * helpers' one check.
 */
CREATE FUNCTION dialer.require_role(role_name name)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF role_name IS NULL OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
		PERFORM dialer.raise_bad_argument('role_name', role_name::text, 'No role has this name.',
			'Create the role first (CREATE ROLE ...).', '42704');
	END IF;
END;
$$;
COMMENT ON FUNCTION dialer.require_role(name) IS 'Internal: raises "invalid role_name" unless the role exists';

/*
 * Locks and returns one call, or raises the standard error for an unknown id.
 */
CREATE FUNCTION dialer.lock_call(call_id bigint)
RETURNS dialer.scheduled_calls
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_call dialer.scheduled_calls;
BEGIN
	IF call_id IS NULL THEN
		PERFORM dialer.raise_bad_argument('call_id', NULL, 'A call id is required.', 'Pass the id enqueue_call returned.', '22004');
	END IF;
	SELECT * INTO v_call FROM dialer.scheduled_calls c WHERE c.id = lock_call.call_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'call % does not exist', call_id
			USING ERRCODE = 'no_data_found',
				  DETAIL = 'No row of dialer.scheduled_calls has this id (dialer.cleanup() may have removed it).',
				  HINT = 'Pass an id returned by dialer.enqueue_call().';
	END IF;
	RETURN v_call;
END;
$$;
COMMENT ON FUNCTION dialer.lock_call(bigint) IS 'Internal: locks a call FOR UPDATE, or raises "call N does not exist"';

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
 * What every grant helper does (dialer.grant_usage, dialer.grant_monitoring, ...): checks
 * that role_name names a role, grants it USAGE on schema dialer, then each of grants,
 * written 'PRIVILEGES ON OBJECTS' (the helpers' own constant text, never input).
 */
CREATE FUNCTION dialer.grant_to(role_name name, VARIADIC grants text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	g text;
BEGIN
	PERFORM dialer.require_role(role_name);
	EXECUTE format('GRANT USAGE ON SCHEMA dialer TO %I', role_name);
	FOREACH g IN ARRAY grants LOOP
		EXECUTE format('GRANT %s TO %I', g, role_name);
	END LOOP;
END;
$$;
COMMENT ON FUNCTION dialer.grant_to(name, text[]) IS
	'Internal: checks a role, grants it USAGE on schema dialer and each of the given privileges (the grant helpers'' common part)';
