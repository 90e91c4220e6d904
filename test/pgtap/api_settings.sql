-- pgTAP: the dialer.* settings: each exists with its default, unit, range and context; the
-- prefix is reserved; bad values are refused.  Values of reload-time (sighup) settings cannot
-- be SET in a session, so their checks are exercised through pg_file_settings, which
-- validates every line of the configuration files without applying anything: run_all.sh
-- starts the cluster with include_if_exists = 'pgtap_settings.conf', and this test writes
-- candidate lines there (then empties it again).
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;

SELECT plan(86);

-- name, default, unit, context, type, min, max
CREATE TEMP TABLE expected_settings (name text, boot_val text, unit text, context text, vartype text,
                                     min_val text, max_val text);
INSERT INTO expected_settings VALUES
	('dialer.database',             '',         NULL, 'sighup',     'string',  NULL, NULL),
	('dialer.databases',            '*',        NULL, 'sighup',     'string',  NULL, NULL),
	('dialer.launcher_naptime',     '10',       's',  'sighup',     'integer', '1', '3600'),
	('dialer.enabled',              'on',       NULL, 'sighup',     'bool',    NULL, NULL),
	('dialer.max_concurrency',      '100',      NULL, 'sighup',     'integer', '1', '10000'),
	('dialer.batch_size',           '500',      NULL, 'sighup',     'integer', '1', '10000'),
	('dialer.connect_timeout',      '5000',     'ms', 'sighup',     'integer', '100', '300000'),
	('dialer.request_timeout',      '30000',    'ms', 'sighup',     'integer', '100', '600000'),
	('dialer.max_response_size',    '1024',     'kB', 'sighup',     'integer', '1', '1048576'),
	('dialer.shutdown_timeout',     '10000',    'ms', 'sighup',     'integer', '0', '600000'),
	('dialer.default_max_attempts', '3',        NULL, 'user',       'integer', '1', '20'),
	('dialer.retry_base_delay',     '2000',     'ms', 'sighup',     'integer', '0', '3600000'),
	('dialer.retry_max_delay',      '600000',   'ms', 'sighup',     'integer', '0', '86400000'),
	('dialer.allowed_numbers',      '',         NULL, 'sighup',     'string',  NULL, NULL),
	('dialer.default_timezone',     'UTC',      NULL, 'sighup',     'string',  NULL, NULL),
	('dialer.call_window_start',    '08:00',    NULL, 'sighup',     'string',  NULL, NULL),
	('dialer.call_window_end',      '21:00',    NULL, 'sighup',     'string',  NULL, NULL),
	('dialer.reconcile_after',      '900',      's',  'sighup',     'integer', '10', '604800'),
	('dialer.standby_wait',         'all',      NULL, 'sighup',     'enum',    NULL, NULL),
	('dialer.standby_wait_timeout', '10000',    'ms', 'sighup',     'integer', '100', '3600000');

-- 18 x 2: each setting exists, with its default, unit, context, type and range
SELECT ok(EXISTS (SELECT 1 FROM pg_settings s WHERE s.name = e.name), format('%s exists', e.name))
  FROM expected_settings e ORDER BY e.name;
SELECT is((SELECT row(s.boot_val, s.unit, s.context, s.vartype, s.min_val, s.max_val)::text
             FROM pg_settings s WHERE s.name = e.name),
          row(e.boot_val, e.unit, e.context, e.vartype, e.min_val, e.max_val)::text,
          format('%s: default %s%s, %s', e.name, coalesce(nullif(e.boot_val, ''), '(empty)'),
                 coalesce(' ' || e.unit, ''), e.context))
  FROM expected_settings e ORDER BY e.name;
SELECT is_empty($$SELECT name FROM pg_settings WHERE name LIKE 'dialer.%' AND coalesce(short_desc, '') = ''$$,
                'every dialer.* setting has a description');
SELECT is((SELECT setting FROM pg_settings WHERE name = 'dialer.databases'), 'dialer_test',
          'the test cluster serves dialer_test only (dialer_tap and dialer_regress get no dispatcher)');

-- the prefix is reserved: a misspelt setting is an error, not a silent placeholder
SELECT throws_ok($$SET dialer.max_concurency = 5$$, '42602',
                 'invalid configuration parameter name "dialer.max_concurency"', 'a misspelt dialer.* setting is refused');
SELECT throws_ok($$SELECT set_config('dialer.nonexistent', '1', true)$$, '42602', NULL,
                 'set_config of an unknown dialer.* setting is refused');

-- the user-settable one: range checked
SELECT throws_ok($$SET LOCAL dialer.default_max_attempts = 0$$, '22023',
                 '0 is outside the valid range for parameter "dialer.default_max_attempts" (1 .. 20)',
                 'default_max_attempts 0 is refused');
SELECT throws_ok($$SET LOCAL dialer.default_max_attempts = 21$$, '22023', NULL, 'default_max_attempts 21 is refused');
SELECT throws_ok($$SET LOCAL dialer.default_max_attempts = 'three'$$, '22023', NULL, 'default_max_attempts three is refused');
SELECT lives_ok($$SET LOCAL dialer.default_max_attempts = 20$$, 'default_max_attempts 20 is accepted');
SELECT is(current_setting('dialer.default_max_attempts'), '20', 'and is in effect for the session');
SELECT lives_ok($$RESET dialer.default_max_attempts$$, 'RESET dialer.default_max_attempts');

-- the server-wide ones cannot be changed by a session at all, whatever the value
SELECT throws_ok($$SET dialer.call_window_start = '25:00'$$, '55P02', NULL, 'SET dialer.call_window_start is refused');
SELECT throws_ok($$SET dialer.call_window_start = '09:00'$$, '55P02', NULL, 'even to a good value');
SELECT throws_ok($$SELECT set_config('dialer.default_timezone', 'Mars/Base', true)$$, '55P02', NULL,
                 'set_config(dialer.default_timezone) is refused');
SELECT throws_ok($$SET dialer.allowed_numbers = '+14155550100'$$, '55P02', NULL, 'SET dialer.allowed_numbers is refused');
SELECT throws_ok($$SET dialer.enabled = off$$, '55P02', NULL, 'SET dialer.enabled is refused');
SELECT throws_ok($$SET dialer.databases = 'other'$$, '55P02', NULL, 'SET dialer.databases is refused (server-wide)');

-- the checks of the configuration file values, through pg_file_settings
CREATE TEMP TABLE candidate_lines (n serial, line text, good boolean, what text);
INSERT INTO candidate_lines (line, good, what) VALUES
	('dialer.call_window_start = ''25:00''',   false, 'hour 25'),
	('dialer.call_window_start = ''08:60''',   false, 'minute 60'),
	('dialer.call_window_start = ''8:00''',    false, 'one-digit hour'),
	('dialer.call_window_start = ''08:00:00''', false, 'seconds'),
	('dialer.call_window_end = ''24:01''',     false, 'after 24:00'),
	('dialer.call_window_end = ''24:00''',     true,  '24:00'),
	('dialer.call_window_start = ''00:00''',   true,  '00:00'),
	('dialer.default_timezone = ''Mars/Base''', false, 'unknown zone'),
	('dialer.default_timezone = ''''',         false, 'empty zone'),
	('dialer.default_timezone = ''America/New_York''', true, 'IANA zone'),
	('dialer.allowed_numbers = ''+1415''',     false, 'short number'),
	('dialer.allowed_numbers = ''14155550100''', false, 'number without +'),
	('dialer.allowed_numbers = ''+14155550100;+14155550101''', false, 'semicolon list'),
	('dialer.allowed_numbers = ''+14155550100, +14155550101''', true, 'list of two'),
	('dialer.allowed_numbers = ''''',          true,  'empty list'),
	('dialer.max_concurrency = 0',             false, 'max_concurrency 0'),
	('dialer.max_concurrency = 10001',         false, 'max_concurrency 10001'),
	('dialer.connect_timeout = ''10s''',       true,  'connect_timeout with a unit'),
	('dialer.max_response_size = ''2GB''',     false, 'response cap over 1 GB'),
	('dialer.enabled = maybe',                 false, 'enabled maybe'),
	('dialer.standby_wait = sometimes',        false, 'standby_wait sometimes'),
	('dialer.standby_wait = any',              true,  'standby_wait any'),
	('dialer.standby_wait = off',              true,  'standby_wait off'),
	('dialer.standby_wait_timeout = ''50ms''', false, 'standby_wait_timeout under 100 ms'),
		('dialer.dispatch_everything = on',        false, 'misspelt setting'),
	('dialer.databases = ''*''',               true,  'databases *'),
	('dialer.databases = ''app, billing''',    true,  'databases: a list of two'),
	('dialer.databases = ''*, app''',          false, 'databases: * with names'),
	('dialer.databases = ''''',                false, 'databases: empty');

-- pg_file_settings validates only the last line of a name, so each candidate is written alone
CREATE FUNCTION pg_temp.write_tap_conf(lines text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('COPY (SELECT unnest(%L::text[])) TO %L', lines,
	               current_setting('data_directory') || '/pgtap_settings.conf');
END;
$$;
CREATE FUNCTION pg_temp.accepted(line text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	v_found boolean;
	v_error text;
BEGIN
	PERFORM pg_temp.write_tap_conf(ARRAY[line]);
	SELECT true, f.error INTO v_found, v_error FROM pg_file_settings f
	 WHERE f.sourcefile LIKE '%/pgtap_settings.conf' AND f.sourceline = 1;
	RETURN CASE WHEN v_found THEN v_error IS NULL END;
END;
$$;
SELECT position('pgtap_settings.conf' IN pg_read_file(current_setting('config_file'))) > 0 AS has_tap_conf \gset
\if :has_tap_conf
SELECT is(pg_temp.accepted(c.line), c.good,
          format('%s: %s', c.what, CASE WHEN c.good THEN 'accepted' ELSE 'refused' END))
  FROM candidate_lines c ORDER BY c.n;
\o /dev/null
SELECT pg_temp.write_tap_conf('{}');
\o
SELECT is((SELECT count(*)::int FROM pg_file_settings WHERE sourcefile LIKE '%/pgtap_settings.conf'), 0,
          'the test configuration file is empty again');
\else
SELECT skip('the cluster does not include pgtap_settings.conf (start it with test/run_all.sh)',
            (SELECT count(*)::int + 1 FROM candidate_lines));
\endif

SELECT * FROM finish();
ROLLBACK;
