/*
 * The roles PostgREST uses for pg_dialer's webhooks.  Run as the owner of the extension
 * (a superuser), in the database where pg_dialer is installed, after
 * CREATE EXTENSION pg_dialer, and again after the extension is re-created:
 *
 *   psql -d app -v ON_ERROR_STOP=1 -v webhook_password='...' -f deploy/roles.sql
 *
 * (webhook_password is optional: without it the login role keeps the password it has,
 * or none, for clusters that authenticate it otherwise, e.g. with a client certificate.)
 *
 *   dialer_webhook                the role the webhook requests run as: it may execute the
 *                                 functions of schema dialer_api and nothing else (no
 *                                 table, no other function, no use of schema dialer)
 *   dialer_webhook_authenticator  the role PostgREST logs in as: it has no privilege of its
 *                                 own (NOINHERIT) and may only switch to dialer_webhook
 *
 * Neither can create anything: no schema, no object in any schema, no temporary table
 * (TEMPORARY on this database is revoked from PUBLIC and kept for the other login roles,
 * see below).
 *
 * Idempotent: re-running it changes nothing.
 */
\set ON_ERROR_STOP on

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_dialer') THEN
		RAISE EXCEPTION 'pg_dialer is not installed in database %', current_database()
			USING HINT = 'Run CREATE EXTENSION pg_dialer first, in the database PostgREST connects to.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'dialer_webhook') THEN
		CREATE ROLE dialer_webhook NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'dialer_webhook_authenticator') THEN
		CREATE ROLE dialer_webhook_authenticator LOGIN NOINHERIT;
	END IF;
END;
$$;

ALTER ROLE dialer_webhook NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
ALTER ROLE dialer_webhook_authenticator LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
	CONNECTION LIMIT 50;
\if :{?webhook_password}
ALTER ROLE dialer_webhook_authenticator PASSWORD :'webhook_password';
\endif
COMMENT ON ROLE dialer_webhook IS 'pg_dialer webhooks: may execute the functions of schema dialer_api, nothing else';
COMMENT ON ROLE dialer_webhook_authenticator IS 'PostgREST login for pg_dialer webhooks: may only become dialer_webhook';

GRANT dialer_webhook TO dialer_webhook_authenticator;

-- A webhook is one short call; PostgREST 12 applies these role settings per request.
ALTER ROLE dialer_webhook SET statement_timeout = '5s';
ALTER ROLE dialer_webhook SET lock_timeout = '2s';
ALTER ROLE dialer_webhook SET idle_in_transaction_session_timeout = '10s';
-- a refused request is logged by the server without the body (phone numbers)
ALTER ROLE dialer_webhook SET log_parameter_max_length_on_error = 0;

-- Exactly the ingest functions (the extension revokes them from PUBLIC).
GRANT USAGE ON SCHEMA dialer_api TO dialer_webhook;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dialer_api TO dialer_webhook;

-- Nothing else of pg_dialer, even if someone granted it by mistake.
REVOKE ALL ON SCHEMA dialer FROM dialer_webhook, dialer_webhook_authenticator;
REVOKE ALL ON ALL TABLES IN SCHEMA dialer FROM dialer_webhook, dialer_webhook_authenticator;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA dialer FROM dialer_webhook, dialer_webhook_authenticator;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer FROM dialer_webhook, dialer_webhook_authenticator;
REVOKE ALL ON SCHEMA dialer_api FROM dialer_webhook_authenticator;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer_api FROM dialer_webhook_authenticator;

/*
 * Nothing created by the webhook roles either.  PostgreSQL grants TEMPORARY on every
 * database to PUBLIC, which PostgREST's roles would inherit, and REVOKE ... FROM
 * dialer_webhook cannot take back a privilege PUBLIC holds.  So TEMPORARY on this database
 * is revoked from PUBLIC, and given back explicitly to every other role that can log in
 * and had it through PUBLIC (the application keeps its temporary tables).  This happens
 * once, while PUBLIC still has it: a later run changes nothing, and a role created
 * afterwards needs GRANT TEMPORARY ON DATABASE ... TO it to create temporary tables.
 * Schemas: a schema where PUBLIC (or the webhook roles) may CREATE is refused: revoke that
 * first (PostgreSQL 15 no longer grants CREATE on schema public to PUBLIC, but a database
 * upgraded from an older release keeps it).
 */
DO $$
DECLARE
	v_db		text := pg_catalog.current_database();
	v_roles		text[];
	v_schemas	text[];
BEGIN
	IF pg_catalog.has_database_privilege('public', v_db, 'TEMPORARY') THEN
		SELECT pg_catalog.array_agg(r.rolname ORDER BY r.rolname) INTO v_roles
		  FROM pg_catalog.pg_roles r
		 WHERE r.rolcanlogin AND NOT r.rolsuper
		   AND r.rolname NOT IN ('dialer_webhook', 'dialer_webhook_authenticator')
		   AND r.rolname !~ '^pg_';
		EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', v_db);
		IF v_roles IS NOT NULL THEN
			EXECUTE pg_catalog.format('GRANT TEMPORARY ON DATABASE %I TO %s', v_db,
				(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(x), ', ') FROM pg_catalog.unnest(v_roles) x));
		END IF;
		RAISE NOTICE 'TEMPORARY on database % revoked from PUBLIC; kept for %', v_db,
			coalesce(pg_catalog.array_to_string(v_roles, ', '), 'no other login role');
	END IF;
	EXECUTE pg_catalog.format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM dialer_webhook, dialer_webhook_authenticator', v_db);

	SELECT pg_catalog.array_agg(n.nspname ORDER BY n.nspname) INTO v_schemas
	  FROM pg_catalog.pg_namespace n
	 WHERE n.nspname !~ '^pg_(temp|toast_temp)_'
	   AND (pg_catalog.has_schema_privilege('dialer_webhook', n.oid, 'CREATE')
			OR pg_catalog.has_schema_privilege('dialer_webhook_authenticator', n.oid, 'CREATE'));
	IF v_schemas IS NOT NULL THEN
		RAISE EXCEPTION 'the webhook roles could create objects in schema %', pg_catalog.array_to_string(v_schemas, ', ')
			USING DETAIL = 'PUBLIC, or one of the webhook roles, has CREATE on these schemas.',
				  HINT = 'REVOKE CREATE ON SCHEMA ... FROM PUBLIC (and grant it to the roles that need it), then run deploy/roles.sql again.';
	END IF;
	IF pg_catalog.has_database_privilege('dialer_webhook', v_db, 'CREATE')
	   OR pg_catalog.has_database_privilege('dialer_webhook', v_db, 'TEMPORARY')
	   OR pg_catalog.has_database_privilege('dialer_webhook_authenticator', v_db, 'TEMPORARY') THEN
		RAISE EXCEPTION 'the webhook roles still have CREATE or TEMPORARY on database %', v_db
			USING HINT = 'They hold it through a role they are members of: revoke it there.';
	END IF;
END;
$$;

-- Tell a running PostgREST to re-read the functions it may call.
NOTIFY pgrst, 'reload schema';
