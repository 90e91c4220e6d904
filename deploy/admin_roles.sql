/*
 * The roles PostgREST uses for pg_dialer's admin API (schema dialer_admin, served by
 * deploy/postgrest-admin.conf).  Run as the owner of the extension (a superuser), in the
 * database where pg_dialer is installed, after CREATE EXTENSION pg_dialer (and again after
 * the extension is re-created):
 *
 *   psql -d app -v ON_ERROR_STOP=1 -v admin_password='...' -f deploy/admin_roles.sql
 *
 * (admin_password is optional, as webhook_password is in deploy/roles.sql.)
 *
 *   dialer_admin_authenticator  the role PostgREST logs in as: no privilege of its own
 *                               (NOINHERIT); it becomes the role named by the JWT's "role"
 *                               claim, which must be one of:
 *   dialer_viewer               read only: GET /calls, /campaigns, /provider_health,
 *                               /rpc/call, /rpc/stats, /rpc/pending_customers
 *   dialer_operator             everything of the viewer, and enqueue, cancel, retry, run a
 *                               campaign now, pause/resume campaigns and providers, cleanup
 *   dialer_frontend             POST /rpc/frontend_enqueue only (its purpose and caller come
 *                               from the JWT's "purpose" and "sub" claims)
 *
 * A request without a JWT is refused (no anonymous role).  None of these roles may use schema
 * dialer: every function of dialer_admin runs as the extension owner.  Idempotent.
 */
\set ON_ERROR_STOP on

DO $$
DECLARE
	r text;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_dialer') THEN
		RAISE EXCEPTION 'pg_dialer is not installed in database %', current_database()
			USING HINT = 'Run CREATE EXTENSION pg_dialer first, in the database PostgREST connects to.';
	END IF;
	FOREACH r IN ARRAY ARRAY['dialer_viewer', 'dialer_operator', 'dialer_frontend'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'dialer_admin_authenticator') THEN
		CREATE ROLE dialer_admin_authenticator LOGIN NOINHERIT;
	END IF;
END;
$$;

ALTER ROLE dialer_viewer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
ALTER ROLE dialer_operator NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
ALTER ROLE dialer_frontend NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
ALTER ROLE dialer_admin_authenticator LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
	CONNECTION LIMIT 50;
\if :{?admin_password}
ALTER ROLE dialer_admin_authenticator PASSWORD :'admin_password';
\endif
COMMENT ON ROLE dialer_viewer IS 'pg_dialer admin API, read only (JWT role claim dialer_viewer)';
COMMENT ON ROLE dialer_operator IS 'pg_dialer admin API, everything (JWT role claim dialer_operator)';
COMMENT ON ROLE dialer_frontend IS 'pg_dialer admin API for application frontends: dialer_admin.frontend_enqueue only';
COMMENT ON ROLE dialer_admin_authenticator IS 'PostgREST login for the pg_dialer admin API: may only become dialer_viewer, dialer_operator or dialer_frontend';

GRANT dialer_viewer, dialer_operator, dialer_frontend TO dialer_admin_authenticator;

-- short requests; a refused request is logged without its parameters (phone numbers)
ALTER ROLE dialer_viewer SET statement_timeout = '10s';
ALTER ROLE dialer_operator SET statement_timeout = '60s';
ALTER ROLE dialer_frontend SET statement_timeout = '5s';
ALTER ROLE dialer_viewer SET log_parameter_max_length_on_error = 0;
ALTER ROLE dialer_operator SET log_parameter_max_length_on_error = 0;
ALTER ROLE dialer_frontend SET log_parameter_max_length_on_error = 0;

-- start from nothing (re-runs, and anything granted by mistake)
REVOKE ALL ON SCHEMA dialer, dialer_admin FROM dialer_viewer, dialer_operator, dialer_frontend, dialer_admin_authenticator;
REVOKE ALL ON ALL TABLES IN SCHEMA dialer, dialer_admin FROM dialer_viewer, dialer_operator, dialer_frontend, dialer_admin_authenticator;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA dialer FROM dialer_viewer, dialer_operator, dialer_frontend, dialer_admin_authenticator;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA dialer, dialer_admin FROM dialer_viewer, dialer_operator, dialer_frontend, dialer_admin_authenticator;

GRANT USAGE ON SCHEMA dialer_admin TO dialer_viewer, dialer_operator, dialer_frontend;

-- reading: viewer and operator
GRANT SELECT ON dialer_admin.calls, dialer_admin.campaigns, dialer_admin.provider_health
	TO dialer_viewer, dialer_operator;
GRANT EXECUTE ON FUNCTION dialer_admin.call(bigint), dialer_admin.stats(date),
	dialer_admin.pending_customers(text, int)
	TO dialer_viewer, dialer_operator;
-- the view dialer_admin.campaigns reads its rows through this one function of schema dialer
-- (a view calls functions with its reader's rights); the role still has no use of schema dialer
GRANT EXECUTE ON FUNCTION dialer.admin_campaigns() TO dialer_viewer, dialer_operator;

-- writing: operator
GRANT EXECUTE ON FUNCTION
	dialer_admin.enqueue_call(text, timestamptz, text, jsonb, text, text, int, int, text, timestamptz, boolean),
	dialer_admin.enqueue_calls(jsonb, boolean),
	dialer_admin.cancel_call(bigint), dialer_admin.retry_call(bigint),
	dialer_admin.run_campaign(text, int),
	dialer_admin.set_campaign_enabled(text, boolean), dialer_admin.set_provider_enabled(text, boolean),
	dialer_admin.cleanup(interval)
	TO dialer_operator;

-- the frontend: one function
GRANT EXECUTE ON FUNCTION dialer_admin.frontend_enqueue(text) TO dialer_frontend;

-- Tell a running PostgREST to re-read what it may serve.
NOTIFY pgrst, 'reload schema';
