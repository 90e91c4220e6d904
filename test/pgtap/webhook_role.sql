-- pg_prove database: dialer_roles
-- pgTAP: after deploy/roles.sql the webhook roles cannot create anything: no temporary
-- table (PostgreSQL grants TEMPORARY to PUBLIC), no table or function in any schema, no
-- schema; every other login role keeps its temporary tables.  Each refusal is a real
-- attempt made as the role, not only a catalog lookup.  Runs roles.sql in a transaction
-- that is rolled back (its own database, so no other test sees the change).
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(17);

-- an application login role that exists when roles.sql is run, and a role that is not a login
CREATE ROLE tap_roles_app LOGIN;
CREATE ROLE tap_roles_group NOLOGIN;
-- PUBLIC has TEMPORARY before (the premise of the test: PostgreSQL's default)
SELECT ok(has_database_privilege('public', current_database(), 'TEMPORARY'),
          'before roles.sql PUBLIC has TEMPORARY on the database (PostgreSQL''s default)');

\i deploy/roles.sql
SET LOCAL client_min_messages = warning;

SELECT ok(NOT has_database_privilege('public', current_database(), 'TEMPORARY'),
          'roles.sql revokes TEMPORARY on the database from PUBLIC');
SELECT ok(NOT has_database_privilege('dialer_webhook', current_database(), 'TEMPORARY'),
          'dialer_webhook has no TEMPORARY');
SELECT ok(NOT has_database_privilege('dialer_webhook_authenticator', current_database(), 'TEMPORARY'),
          'dialer_webhook_authenticator has no TEMPORARY');
SELECT ok(has_database_privilege('tap_roles_app', current_database(), 'TEMPORARY'),
          'a login role that had TEMPORARY through PUBLIC keeps it');
SELECT ok(NOT has_database_privilege('tap_roles_group', current_database(), 'TEMPORARY'),
          'a role that cannot log in is not given TEMPORARY');
SELECT is((SELECT count(*)::int FROM pg_namespace n
            WHERE has_schema_privilege('dialer_webhook', n.oid, 'CREATE')),
          0, 'dialer_webhook may CREATE in no schema');
-- the count above must be able to see a schema where it may create: it does for a schema
-- granted to PUBLIC (rolled back with the rest)
CREATE SCHEMA tap_roles_open;
GRANT CREATE ON SCHEMA tap_roles_open TO PUBLIC;
SELECT is((SELECT count(*)::int FROM pg_namespace n
            WHERE has_schema_privilege('dialer_webhook', n.oid, 'CREATE')),
          1, 'the check sees a schema where PUBLIC may create');
REVOKE CREATE ON SCHEMA tap_roles_open FROM PUBLIC;

-- real attempts, as the role requests run as
SET LOCAL ROLE dialer_webhook;
SELECT throws_ok('CREATE TEMP TABLE tap_roles_t (a int)', '42501', NULL,
                 'dialer_webhook cannot CREATE TEMP TABLE');
SELECT throws_ok('CREATE TABLE public.tap_roles_t (a int)', '42501', NULL,
                 'dialer_webhook cannot create a table in public');
SELECT throws_ok('CREATE TABLE dialer_api.tap_roles_t (a int)', '42501', NULL,
                 'dialer_webhook cannot create a table in dialer_api');
SELECT throws_ok('CREATE FUNCTION dialer_api.tap_roles_f() RETURNS int LANGUAGE sql AS ''SELECT 1''', '42501', NULL,
                 'dialer_webhook cannot create a function in dialer_api');
SELECT throws_ok('CREATE SCHEMA tap_roles_s', '42501', NULL,
                 'dialer_webhook cannot create a schema');
RESET ROLE;
SET LOCAL ROLE dialer_webhook_authenticator;
SELECT throws_ok('CREATE TEMP TABLE tap_roles_t2 (a int)', '42501', NULL,
                 'dialer_webhook_authenticator cannot CREATE TEMP TABLE');
RESET ROLE;
SET LOCAL ROLE tap_roles_app;
SELECT lives_ok('CREATE TEMP TABLE tap_roles_app_t (a int)', 'the application role still creates temporary tables');
RESET ROLE;

-- running it again changes nothing (idempotent): the app role keeps TEMPORARY, PUBLIC stays without
\i deploy/roles.sql
SET LOCAL client_min_messages = warning;
SELECT ok(NOT has_database_privilege('public', current_database(), 'TEMPORARY')
          AND has_database_privilege('tap_roles_app', current_database(), 'TEMPORARY'),
          'a second run of roles.sql leaves the TEMPORARY grants as they are');
SELECT ok(NOT has_database_privilege('dialer_webhook', current_database(), 'TEMPORARY'),
          'and dialer_webhook still without TEMPORARY');

SELECT * FROM finish();
ROLLBACK;
