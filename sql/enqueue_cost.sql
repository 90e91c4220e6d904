--
-- enqueue_cost: enqueue cost per call is flat from the first call of a fresh installation,
-- in one statement or many, in one session: no plan depends on the queue having been empty.
-- Counted in buffer accesses (pg_stat_get_xact_blocks_fetched over the extension's tables
-- and indexes, read after each call within the statement), never timed.
--
SET client_min_messages = warning;
CREATE EXTENSION pg_dialer;
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url, enabled)
VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
        'twilio-auth-token-SECRET', '+15005550006', 'https://app.example.com/twiml.xml', false);
-- a fresh installation, vacuumed: its statistics say every table is empty
VACUUM dialer.scheduled_calls, dialer.call_events, dialer.call_attempts;
SELECT relname, relpages, reltuples FROM pg_class
 WHERE oid IN ('dialer.scheduled_calls'::regclass, 'dialer.call_events'::regclass) ORDER BY relname;
-- the lookup of a call by id (what the foreign-key check of call_attempts runs) goes through
-- the index even now
EXPLAIN (COSTS OFF) SELECT 1 FROM ONLY dialer.scheduled_calls x WHERE id = 1 FOR KEY SHARE OF x;
EXPLAIN (COSTS OFF) SELECT id FROM dialer.scheduled_calls WHERE dedupe_key = 'k';
-- buffers the extension's relations have fetched in this transaction so far
CREATE FUNCTION pg_temp.fetched(tick int) RETURNS bigint LANGUAGE sql VOLATILE AS $$
	SELECT sum(pg_stat_get_xact_blocks_fetched(c.oid))::bigint + 0 * tick
	  FROM pg_class c WHERE c.relnamespace = 'dialer'::regnamespace AND c.relkind IN ('r', 'i')
$$;
-- 10,000 calls in one statement, the buffer count read after each
CREATE TEMP TABLE cost1 AS
SELECT g, dialer.enqueue_call('+1415' || (5000000 + g)::text, run_at => '2030-03-15 10:00:00+00') AS id,
       pg_temp.fetched(g) AS fetched
  FROM generate_series(1, 10000) g;
CREATE TEMP TABLE per_call1 AS
SELECT g, fetched - lag(fetched) OVER (ORDER BY g) AS blocks FROM cost1;
-- the first calls (2nd to 11th: the 1st has no predecessor) against the last ten
SELECT (SELECT max(blocks) FROM per_call1 WHERE g > 9990) <= 2 * (SELECT min(blocks) FROM per_call1 WHERE g BETWEEN 2 AND 11)
       AS last_within_twice_first,
       (SELECT max(blocks) FROM per_call1 WHERE g > 1) < 200 AS no_call_reads_the_queue;
-- the same again, in the same session, with 10,000 calls already there
CREATE TEMP TABLE cost2 AS
SELECT g, dialer.enqueue_call('+1416' || (5000000 + g)::text, run_at => '2030-03-15 10:00:00+00') AS id,
       pg_temp.fetched(g) AS fetched
  FROM generate_series(1, 10000) g;
SELECT (SELECT max(b) FROM (SELECT fetched - lag(fetched) OVER (ORDER BY g) AS b FROM cost2) s)
       <= 2 * (SELECT min(blocks) FROM per_call1 WHERE g BETWEEN 2 AND 11) AS warm_within_twice_fresh;
SELECT count(*) AS calls, count(*) FILTER (WHERE status = 'scheduled') AS scheduled FROM dialer.scheduled_calls;
-- enqueue_calls: 1,000 and then 10,000 elements in one statement each cost the same per element
DROP EXTENSION pg_dialer;
CREATE EXTENSION pg_dialer;
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url, enabled)
VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
        'twilio-auth-token-SECRET', '+15005550006', 'https://app.example.com/twiml.xml', false);
VACUUM dialer.scheduled_calls, dialer.call_events, dialer.call_attempts;
CREATE TEMP TABLE bulk_cost (n int, blocks bigint);
CREATE FUNCTION pg_temp.bulk(n int, prefix text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	b0 bigint := pg_temp.fetched(0);
BEGIN
	PERFORM count(*) FROM dialer.enqueue_calls(
		(SELECT jsonb_agg(jsonb_build_object('to_number', prefix || (5000000 + g)::text,
											 'run_at', '2030-03-15 10:00:00+00', 'dedupe_key', prefix || g))
		   FROM generate_series(1, n) g));
	RETURN pg_temp.fetched(1) - b0;
END;
$$;
INSERT INTO bulk_cost VALUES (1000, pg_temp.bulk(1000, '+1417'));
INSERT INTO bulk_cost VALUES (10000, pg_temp.bulk(10000, '+1418'));
SELECT (SELECT blocks::numeric / n FROM bulk_cost WHERE n = 10000)
       <= 1.5 * (SELECT blocks::numeric / n FROM bulk_cost WHERE n = 1000) AS bulk_per_element_flat;
SELECT count(*) AS calls, count(DISTINCT dedupe_key) AS keys FROM dialer.scheduled_calls;
-- the worker's claim on a warm queue whose statistics say no scheduled call is due yet (the
-- 11,000 above are due in 2030), when 5,000 due calls arrive: claiming 10 walks the claim
-- index and stops, it does not read and sort every due call
UPDATE dialer.providers SET enabled = true;
ANALYZE dialer.scheduled_calls;
SELECT count(*) FROM dialer.enqueue_calls(
	(SELECT jsonb_agg(jsonb_build_object('to_number', '+1419' || (5000000 + g)::text,
										 'run_at', now() - interval '1 minute'))
	   FROM generate_series(1, 5000) g));
-- index entries the extension's index scans have returned in this transaction so far
CREATE FUNCTION pg_temp.index_entries(tick int) RETURNS bigint LANGUAGE sql VOLATILE AS $$
	SELECT sum(pg_stat_get_xact_tuples_returned(c.oid))::bigint + 0 * tick
	  FROM pg_class c WHERE c.relnamespace = 'dialer'::regnamespace AND c.relkind = 'i'
$$;
CREATE TEMP TABLE claim_cost AS SELECT pg_temp.index_entries(0) AS before;
SELECT count(*) AS claimed FROM dialer.claim_calls('default', 10, 'UTC', '00:00', '24:00', '');
SELECT pg_temp.index_entries(1) - before < 500 AS claim_reads_few_entries FROM claim_cost;
-- storing the answers to those 10 requests, while 4,990 other calls are in progress (dialing,
-- no callback yet) and the statistics say none is: each call of the batch is found by its id,
-- not by reading every call in progress
UPDATE dialer.scheduled_calls SET status = 'dialing', attempts = 1, provider_call_id = 'CA' || md5(id::text)
 WHERE status = 'scheduled' AND run_at < now();
CREATE TEMP TABLE store_cost AS
SELECT pg_temp.index_entries(2) AS before,
       array_agg(id ORDER BY id) AS ids, array_agg(attempts ORDER BY id) AS attempts
  FROM dialer.scheduled_calls WHERE status = 'dispatching';
SELECT dialer.record_results(ids, attempts, array_fill('accepted'::text, ARRAY[10]), array_fill(201, ARRAY[10]),
							 ARRAY(SELECT 'CA' || md5(g::text || 'x') FROM generate_series(1, 10) g),
							 array_fill(NULL::text, ARRAY[10]), array_fill(NULL::text, ARRAY[10]),
							 array_fill(NULL::text, ARRAY[10]), array_fill(0, ARRAY[10]), array_fill(now(), ARRAY[10]))
  FROM store_cost;
SELECT count(*) FILTER (WHERE status = 'dialing') AS dialing, count(*) FILTER (WHERE status = 'dispatching') AS dispatching
  FROM dialer.scheduled_calls;
SELECT pg_temp.index_entries(3) - before < 500 AS store_reads_few_entries FROM store_cost;
-- giving back 10 claims (a dispatcher stopping while its claim waited for standbys) while
-- 5,000 calls are dialing and the statistics say none is: each call found by its id too
SELECT count(*) FROM dialer.enqueue_calls(
	(SELECT jsonb_agg(jsonb_build_object('to_number', '+1420' || (5000000 + g)::text,
										 'run_at', now() - interval '1 minute'))
	   FROM generate_series(1, 10) g));
CREATE TEMP TABLE release_cost AS
SELECT array_agg(id ORDER BY id) AS ids, array_agg(attempt ORDER BY id) AS attempts
  FROM dialer.claim_calls('default', 10, 'UTC', '00:00', '24:00', '');
ALTER TABLE release_cost ADD COLUMN before bigint;
UPDATE release_cost SET before = pg_temp.index_entries(4);
SELECT dialer.release_claims(ids, attempts) AS released FROM release_cost;
SELECT count(*) FILTER (WHERE status = 'dialing') AS dialing, count(*) FILTER (WHERE status = 'scheduled' AND run_at < now()) AS due_again
  FROM dialer.scheduled_calls;
SELECT pg_temp.index_entries(5) - before < 500 AS release_reads_few_entries FROM release_cost;
DROP EXTENSION pg_dialer;
DROP SCHEMA dialer;
