-- pgTAP: the shape of schema dialer: the extension, tables, columns, statuses, indexes,
-- triggers, the API's signatures, and a COMMENT on every table and function.
-- Self-contained: runs in a transaction that is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(145);

-- the extension
SELECT has_extension('dialer', 'pg_dialer', 'pg_dialer is installed in schema dialer');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'pg_dialer'), (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_dialer'), 'the default version (pg_dialer.control)');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'pg_dialer'), false, 'not relocatable');
SELECT has_schema('dialer');

-- the tables
SELECT has_table('dialer', t, format('table dialer.%s exists', t))
  FROM unnest(ARRAY['scheduled_calls', 'call_attempts', 'call_events', 'providers', 'campaigns',
                    'do_not_call']) AS t;

-- columns of the queue
SELECT has_column('dialer', 'scheduled_calls', c, format('scheduled_calls.%s exists', c))
  FROM unnest(ARRAY['id', 'status', 'run_at', 'next_attempt_at', 'to_number', 'from_number',
                    'provider', 'mode', 'payload', 'campaign', 'dedupe_key', 'priority', 'attempts',
                    'max_attempts', 'timezone', 'deadline', 'provider_call_id', 'last_error',
                    'created_at', 'updated_at', 'finished_at']) AS c;
SELECT col_type_is('dialer', 'scheduled_calls', c, t, format('scheduled_calls.%s is %s', c, t))
  FROM (VALUES ('id', 'bigint'), ('status', 'text'), ('run_at', 'timestamp with time zone'),
               ('next_attempt_at', 'timestamp with time zone'), ('to_number', 'dialer.e164'),
               ('payload', 'jsonb'), ('priority', 'integer'), ('attempts', 'integer'),
               ('max_attempts', 'integer'), ('deadline', 'timestamp with time zone'),
               ('dedupe_key', 'text')) AS v(c, t);
SELECT col_not_null('dialer', 'scheduled_calls', c, format('scheduled_calls.%s is NOT NULL', c))
  FROM unnest(ARRAY['status', 'run_at', 'next_attempt_at', 'to_number', 'provider', 'payload',
                    'priority', 'attempts', 'max_attempts']) AS c;
SELECT col_is_pk('dialer', 'scheduled_calls', 'id', 'scheduled_calls.id is the primary key');
-- the E.164 rule (dialer.is_e164, the domain's check): + then 8 to 15 digits, the first not 0
SELECT is((SELECT array_agg(n ORDER BY n) FROM unnest(ARRAY['+12345678', '+123456789012345', '+1234567',
			'+1234567890123456', '+02345678', '12345678', '+1234 5678', '+1234567a', '', '+', '++12345678',
			'+44２０７９４６０９５８']) n WHERE dialer.is_e164(n)),
		  ARRAY['+12345678', '+123456789012345'], 'is_e164 accepts + and 8 to 15 digits (first not 0), nothing else');
SELECT throws_ok($$SELECT '+0123456789'::dialer.e164$$, '23514', NULL, 'the domain dialer.e164 refuses what is_e164 refuses');
SELECT is((SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
			WHERE i.indrelid = 'dialer.scheduled_calls'::regclass AND i.indisunique
			  AND i.indkey::text = (SELECT attnum::text FROM pg_attribute
									 WHERE attrelid = 'dialer.scheduled_calls'::regclass AND attname = 'dedupe_key')),
		  'CREATE UNIQUE INDEX scheduled_calls_dedupe_key_idx ON dialer.scheduled_calls USING btree (dedupe_key) WHERE (dedupe_key IS NOT NULL)',
		  'dedupe_key is unique (a partial index: calls without a key cost it nothing)');
SELECT col_default_is('dialer', 'scheduled_calls', 'status', 'scheduled', 'a call starts scheduled');
SELECT has_trigger('dialer', 'providers', 'providers_keep_calls',
	'scheduled_calls.provider has no foreign key: a trigger keeps a provider with calls from being deleted');

-- the statuses, exactly: the CHECK is the union of the open and final groups (written into
-- the catalog as their literal list)
SELECT is((SELECT pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conrelid = 'dialer.scheduled_calls'::regclass AND conname = 'scheduled_calls_status_check'),
		  format('CHECK ((status = ANY (%L::text[])))', dialer.open_statuses() || dialer.final_statuses()),
		  'the status check is the open and final groups');
SELECT set_eq(
	$$SELECT unnest(dialer.open_statuses() || dialer.final_statuses())$$,
	ARRAY['scheduled', 'dispatching', 'dialing', 'completed', 'no_answer', 'busy', 'failed',
	      'canceled', 'skipped', 'expired', 'unknown', 'held'],
	'the status check allows exactly the twelve statuses');
SELECT is((SELECT count(*)::int FROM pg_constraint
            WHERE conrelid = 'dialer.scheduled_calls'::regclass AND contype = 'c'
              AND pg_get_constraintdef(oid) ~ '\mstatus\M'), 1, 'one check constraint on status');
INSERT INTO dialer.providers (name, kind, base_url, account_sid, twiml_url) VALUES ('schema-test', 'twilio', 'https://api.twilio.com', 'AC1', 'https://app.example.com/t.xml');
CREATE TEMP TABLE tap_call AS
SELECT dialer.enqueue_call('+14155550100', run_at => '2030-01-01 10:00+00', provider => 'schema-test') AS id;
SELECT lives_ok(format('UPDATE dialer.scheduled_calls SET status = %L WHERE id = (SELECT id FROM tap_call)', s),
                format('status %s is accepted', s))
  FROM unnest(ARRAY['scheduled', 'dispatching', 'dialing', 'completed', 'no_answer', 'busy', 'failed',
                    'canceled', 'skipped', 'expired', 'unknown']) AS s;
SELECT throws_ok($$UPDATE dialer.scheduled_calls SET status = 'queued' WHERE id = (SELECT id FROM tap_call)$$,
                 '23514', NULL, 'any other status is refused');
SELECT throws_ok($$UPDATE dialer.scheduled_calls SET to_number = '+0123' WHERE id = (SELECT id FROM tap_call)$$,
                 '23514', NULL, 'the table itself refuses a number that is not E.164');

-- columns of the other tables
SELECT has_column('dialer', 'call_attempts', c, format('call_attempts.%s exists', c))
  FROM unnest(ARRAY['call_id', 'attempt', 'requested_at', 'http_status', 'provider_call_id',
                    'provider_status', 'duration_seconds', 'answered_by', 'error_code',
                    'error_message']) AS c;
SELECT fk_ok('dialer', 'call_attempts', 'call_id', 'dialer', 'scheduled_calls', 'id');
SELECT has_column('dialer', 'call_events', c, format('call_events.%s exists', c))
  FROM unnest(ARRAY['call_id', 'at', 'event', 'from_status', 'to_status', 'detail']) AS c;
SELECT has_trigger('dialer', 'scheduled_calls', 'call_events_follow_calls',
	'call_events.call_id has no foreign key: a statement trigger deletes the events of deleted calls');
SELECT has_column('dialer', 'providers', c, format('providers.%s exists', c))
  FROM unnest(ARRAY['name', 'kind', 'base_url', 'account_sid', 'auth_token', 'api_key_sid',
                    'api_key_secret', 'bearer_token', 'webhook_secret', 'from_number',
                    'status_callback_url', 'max_concurrency', 'calls_per_second']) AS c;
SELECT col_is_pk('dialer', 'providers', 'name', 'providers are named');
SELECT throws_ok($$INSERT INTO dialer.providers (name, kind, base_url) VALUES ('x', 'sip', 'https://x.example')$$,
                 '23514', NULL, 'provider kind is twilio, backend or voice_api');
SELECT col_is_pk('dialer', 'campaigns', 'name', 'campaigns are named');
SELECT col_is_pk('dialer', 'do_not_call', 'number', 'do_not_call is keyed by number');

-- indexes: the claim (due calls by priority then time), the wake-up time, the stats of a day
SELECT has_index('dialer', 'scheduled_calls', 'scheduled_calls_claim_idx',
                 ARRAY['provider', 'priority', 'next_attempt_at'], 'claim index');
SELECT is((SELECT pg_get_expr(indpred, indrelid) FROM pg_index
            WHERE indexrelid = 'dialer.scheduled_calls_claim_idx'::regclass),
          '(status = ''scheduled''::text)', 'the claim index covers scheduled calls only');
SELECT ok((SELECT (indoption[1] & 1) = 1 FROM pg_index
            WHERE indexrelid = 'dialer.scheduled_calls_claim_idx'::regclass),
          'the claim index orders priority descending');
SELECT ok((SELECT pg_get_indexdef(indexrelid) ~ 'next_attempt_at\)' AND pg_get_expr(indpred, indrelid) ~ 'scheduled'
             FROM pg_index WHERE indexrelid = 'dialer.scheduled_calls_next_idx'::regclass),
          'next-due index: next_attempt_at of scheduled calls');
SELECT has_index('dialer', 'scheduled_calls', 'scheduled_calls_run_at_idx', ARRAY['run_at'],
                 'stats-of-a-day index');
SELECT has_index('dialer', 'scheduled_calls', 'scheduled_calls_campaign_customer_idx',
                 ARRAY['campaign', 'customer_ref', 'run_at'], 'per-campaign index (campaign rules and stats)');
SELECT has_index('dialer', 'scheduled_calls', 'scheduled_calls_finished_idx', ARRAY['finished_at'],
                 'cleanup index');
SELECT has_index('dialer', 'call_events', 'call_events_call_id_idx', ARRAY['call_id', 'id'],
                 'events of a call index');
SELECT ok(EXISTS (SELECT 1 FROM pg_index i
                   WHERE i.indrelid = 'dialer.call_attempts'::regclass
                     AND i.indkey[0] = (SELECT attnum FROM pg_attribute
                                         WHERE attrelid = 'dialer.call_attempts'::regclass
                                           AND attname = 'call_id')),
          'attempts are indexed by call_id (cleanup cascades, call_details)');
-- every foreign key to the queue leads an index (cleanup's cascading deletes stay fast)
SELECT is_empty($$
	SELECT format('%s.%s', c.conrelid::regclass, a.attname)
	  FROM pg_constraint c
	  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
	 WHERE c.contype = 'f' AND c.confrelid = 'dialer.scheduled_calls'::regclass
	   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])$$,
	'every foreign key to scheduled_calls leads an index');

-- append-only events
SELECT has_trigger('dialer', 'call_events', 'call_events_append_only', 'UPDATE/DELETE trigger on call_events');
SELECT has_trigger('dialer', 'call_events', 'call_events_no_truncate', 'TRUNCATE trigger on call_events');
SELECT throws_ok('UPDATE dialer.call_events SET event = ''x''', '42501', 'dialer.call_events is append-only',
                 'events cannot be updated');
SELECT throws_ok('DELETE FROM dialer.call_events', '42501', 'dialer.call_events is append-only',
                 'events cannot be deleted');
SELECT throws_ok('TRUNCATE dialer.call_events', '42501', 'dialer.call_events is append-only',
                 'events cannot be truncated');
SELECT throws_ok('TRUNCATE dialer.scheduled_calls CASCADE', '42501', 'dialer.call_events is append-only',
                 'calls cannot be truncated (their events would stay behind)');

-- the API: names, named parameters, return types
SELECT has_function('dialer', 'enqueue_call',
	ARRAY['text', 'timestamp with time zone', 'text', 'jsonb', 'text', 'text', 'integer', 'integer',
	      'text', 'timestamp with time zone', 'boolean'], 'enqueue_call(...) exists');
SELECT is((SELECT array_to_string(proargnames, ',') FROM pg_proc
            WHERE oid = 'dialer.enqueue_call(text,timestamptz,text,jsonb,text,text,int,int,text,timestamptz,boolean)'::regprocedure),
          'to_number,run_at,provider,payload,campaign,dedupe_key,priority,max_attempts,timezone,deadline,late_ok',
          'enqueue_call parameter names');
SELECT is((SELECT pronargdefaults::int FROM pg_proc
            WHERE oid = 'dialer.enqueue_call(text,timestamptz,text,jsonb,text,text,int,int,text,timestamptz,boolean)'::regprocedure),
          10, 'every enqueue_call parameter but to_number has a default');
SELECT function_returns('dialer', 'enqueue_call',
	ARRAY['text', 'timestamp with time zone', 'text', 'jsonb', 'text', 'text', 'integer', 'integer',
	      'text', 'timestamp with time zone', 'boolean'], 'bigint', 'enqueue_call returns bigint');
SELECT function_returns('dialer', f, ARRAY['bigint'], r, format('%s(call_id bigint) returns %s', f, r))
  FROM (VALUES ('cancel_call', 'boolean'), ('retry_call', 'boolean'), ('call_details', 'jsonb')) AS v(f, r);
SELECT is((SELECT proargnames[1] FROM pg_proc WHERE oid = format('dialer.%s(bigint)', f)::regprocedure),
          'call_id', format('%s names its parameter call_id', f))
  FROM unnest(ARRAY['cancel_call', 'retry_call', 'call_details']) AS f;
SELECT function_returns('dialer', 'stats', ARRAY['date'], 'jsonb', 'stats(day date) returns jsonb');
SELECT function_returns('dialer', 'cleanup', ARRAY['interval'], 'bigint', 'cleanup(older_than interval) returns bigint');
SELECT is((SELECT proargnames[1] || '=' || pg_get_expr(proargdefaults, 0) FROM pg_proc
            WHERE oid = 'dialer.stats(date)'::regprocedure), 'day=CURRENT_DATE', 'stats(day DEFAULT current_date)');
SELECT is((SELECT proargnames[1] || '=' || pg_get_expr(proargdefaults, 0) FROM pg_proc
            WHERE oid = 'dialer.cleanup(interval)'::regprocedure), 'older_than=''30 days''::interval',
          'cleanup(older_than DEFAULT ''30 days'')');
SELECT has_function('dialer', 'worker_status', 'worker_status() exists');
SELECT has_function('dialer', 'grant_usage', ARRAY['name'], 'grant_usage(role_name) exists');

-- every function that runs as its owner pins its search_path
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_proc p
	 WHERE p.pronamespace = 'dialer'::regnamespace AND p.prosecdef
	   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')$$,
	'every SECURITY DEFINER function sets search_path');

-- a COMMENT on every table, view, sequence-free relation and function of the schema
SELECT is_empty($$
	SELECT c.oid::regclass::text FROM pg_class c
	 WHERE c.relnamespace = 'dialer'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
	   AND NOT EXISTS (SELECT 1 FROM pg_description d
	                    WHERE d.classoid = 'pg_class'::regclass AND d.objoid = c.oid AND d.objsubid = 0
	                      AND btrim(d.description) <> '')$$,
	'every table and view of schema dialer has a COMMENT');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_proc p
	 WHERE p.pronamespace = 'dialer'::regnamespace
	   AND NOT EXISTS (SELECT 1 FROM pg_description d
	                    WHERE d.classoid = 'pg_proc'::regclass AND d.objoid = p.oid
	                      AND btrim(d.description) <> '')$$,
	'every function of schema dialer has a COMMENT');
SELECT is_empty($$
	SELECT n.nspname FROM pg_namespace n
	 WHERE n.nspname IN ('dialer', 'dialer_api')
	   AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_dialer')
	                                         AND d.classid = 'pg_namespace'::regclass AND d.objid = n.oid)
	   AND obj_description(n.oid, 'pg_namespace') IS NULL$$,
	'every schema the extension creates has a COMMENT');
-- every object of the schema belongs to the extension (nothing left behind by DROP EXTENSION)
SELECT is_empty($$
	SELECT c.oid::regclass::text FROM pg_class c
	 WHERE c.relnamespace = 'dialer'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
	   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
	                      AND d.deptype IN ('e', 'i', 'a'))
	UNION ALL
	SELECT p.oid::regprocedure::text FROM pg_proc p
	 WHERE p.pronamespace = 'dialer'::regnamespace
	   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	                      AND d.deptype = 'e')$$,
	'every relation and function of schema dialer is a member of the extension');

SELECT * FROM finish();
ROLLBACK;
