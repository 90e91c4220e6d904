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

-- Tell a running PostgREST to re-read the functions it may call.
NOTIFY pgrst, 'reload schema';
