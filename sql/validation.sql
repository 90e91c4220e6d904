--
-- validation: every argument check of dialer.enqueue_call(), its error (SQLSTATE,
-- message naming the argument and the value, DETAIL, HINT), and that nothing was written.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE EXTENSION pg_dialer;
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, twiml_url)
VALUES ('default', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
        'twilio-auth-token-SECRET', '+15005550006', 'https://app.example.com/twiml/reminder.xml');
INSERT INTO dialer.providers (name, kind, base_url, bearer_token, webhook_secret)
VALUES ('backend', 'backend', 'https://calls.example.com', 'backend-bearer-SECRET', 'backend-hook-SECRET');
-- after each error: its SQLSTATE, and how many calls and events exist (always 0 here)
\set written 'SELECT :''LAST_ERROR_SQLSTATE'' AS sqlstate, (SELECT count(*) FROM dialer.scheduled_calls) AS calls, (SELECT count(*) FROM dialer.call_events) AS events;'
--
-- to_number: E.164 is "+", then 8 to 15 digits, the first not 0
--
SELECT dialer.enqueue_call(NULL);
:written
SELECT dialer.enqueue_call('');
:written
SELECT dialer.enqueue_call('+04155550123');
:written
SELECT dialer.enqueue_call('04155550123');
:written
SELECT dialer.enqueue_call('14155550123');
:written
SELECT dialer.enqueue_call('+1234567');
:written
SELECT dialer.enqueue_call('+1234567890123456');
:written
SELECT dialer.enqueue_call('+1 415 555 0123');
:written
SELECT dialer.enqueue_call('+1-415-555-0123');
:written
SELECT dialer.enqueue_call('+14155550123 ');
:written
SELECT dialer.enqueue_call('+1415555O123');
:written
--
-- run_at and deadline
--
SELECT dialer.enqueue_call('+14155550123', run_at => NULL);
:written
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00',
                           deadline => '2030-03-15 10:00:00+00');
:written
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00',
                           deadline => '2030-03-15 09:59:59+00');
:written
-- infinite times are refused: 'infinity' never falls due, '-infinity' is no moment at all
SELECT dialer.enqueue_call('+14155550123', run_at => 'infinity');
:written
SELECT dialer.enqueue_call('+14155550123', run_at => '-infinity');
:written
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00', deadline => 'infinity');
:written
-- a run_at more than dialer.late_tolerance in the past (yesterday's reminder) is refused unless
-- late_ok => true (the DETAIL says how late: see test/pgtap/late_run_at.sql)
\set VERBOSITY terse
SELECT dialer.enqueue_call('+14155550123', run_at => '2020-01-01 09:00:00+00');
\set VERBOSITY default
:written
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00', deadline => '-infinity');
:written
--
-- timezone
--
SELECT dialer.enqueue_call('+14155550123', timezone => 'Mars/Olympus_Mons');
:written
SELECT dialer.enqueue_call('+14155550123', timezone => '');
:written
SELECT dialer.enqueue_call('+14155550123', timezone => 'europe/paris ');
:written
--
-- provider: unknown names are refused; the detail lists provider names, never secrets
--
SELECT dialer.enqueue_call('+14155550123', provider => 'twilio-prod');
:written
SELECT dialer.enqueue_call('+14155550123', provider => NULL);
:written
--
-- payload: a JSON object of at most 64 kB
--
SELECT dialer.enqueue_call('+14155550123', payload => '[{"message": "hi"}]');
:written
SELECT dialer.enqueue_call('+14155550123', payload => '"hello"');
:written
SELECT dialer.enqueue_call('+14155550123', payload => '42');
:written
SELECT dialer.enqueue_call('+14155550123', payload => 'null');
:written
SELECT dialer.enqueue_call('+14155550123', payload => NULL);
:written
-- {"m": "xxx..."} is 9 bytes plus the string: 65537 bytes
SELECT dialer.enqueue_call('+14155550123', payload => jsonb_build_object('m', repeat('x', 65528)));
:written
SELECT dialer.enqueue_call('+14155550123', payload => jsonb_build_object('m', repeat('é', 40000)));
:written
SELECT dialer.enqueue_call('+14155550123', payload => '{"from": "+0800"}');
:written
SELECT dialer.enqueue_call('+14155550123', payload => '{"from": 14155550100}');
:written
SELECT dialer.enqueue_call('+14155550123', provider => 'backend', payload => '{"mode": "LATER"}');
:written
-- a Twilio call must have something to say: payload.message, payload.url or payload.twiml_url,
-- else its provider's twiml_url (refused at enqueue, not at dispatch)
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number)
VALUES ('mute', 'twilio', 'https://api.twilio.com', 'AC00000000000000000000000000000000',
        'twilio-auth-token-SECRET', '+15005550006');
SELECT dialer.enqueue_call('+14155550123', provider => 'mute');
:written
SELECT dialer.enqueue_call('+14155550123', provider => 'mute', payload => '{"message": null, "note": "x"}');
:written
--
-- priority, max_attempts, dedupe_key, campaign
--
SELECT dialer.enqueue_call('+14155550123', priority => 1001);
:written
SELECT dialer.enqueue_call('+14155550123', priority => -1001);
:written
SELECT dialer.enqueue_call('+14155550123', priority => NULL);
:written
SELECT dialer.enqueue_call('+14155550123', max_attempts => 0);
:written
SELECT dialer.enqueue_call('+14155550123', max_attempts => 21);
:written
SELECT dialer.enqueue_call('+14155550123', dedupe_key => repeat('k', 201));
:written
SELECT dialer.enqueue_call('+14155550123', campaign => repeat('c', 64));
:written
-- the first failing check wins: the number is checked before the payload
SELECT dialer.enqueue_call('0', payload => '[]', priority => 5000);
:written
--
-- the limits themselves are accepted
--
SELECT dialer.enqueue_call('+12345678', run_at => '2030-03-15 10:00:00+00') AS shortest;
SELECT dialer.enqueue_call('+123456789012345', run_at => '2030-03-15 10:00:00+00') AS longest;
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00',
                           deadline => '2030-03-15 10:00:00.000001+00') AS deadline_just_after;
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00',
                           payload => jsonb_build_object('m', repeat('x', 65527))) AS payload_64kb;
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00',
                           priority => 1000, max_attempts => 20, dedupe_key => repeat('k', 200),
                           campaign => repeat('c', 63), timezone => 'America/New_York') AS upper_limits;
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00',
                           priority => -1000, max_attempts => 1) AS lower_limits;
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00', provider => 'backend',
                           payload => '{"mode": "brief_start", "from": "+14155550100"}') AS backend_call;
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00', provider => 'mute',
                           payload => '{"message": "Hello"}') AS mute_with_message;
SELECT dialer.enqueue_call('+14155550123', run_at => '2030-03-15 10:00:00+00', provider => 'mute',
                           payload => '{"url": "https://app.example.com/twiml.xml"}') AS mute_with_url;
SELECT id, to_number, from_number, provider, mode, priority, max_attempts, timezone, deadline,
       length(dedupe_key) AS key_len, length(campaign) AS campaign_len,
       octet_length(payload::text) AS payload_bytes
  FROM dialer.scheduled_calls ORDER BY id;
--
-- calling policy windows: checked when written, with the same kind of error
--
INSERT INTO dialer.calling_policies (name) VALUES ('validation');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('validation', '{1,8}', '08:00', '21:00');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('validation', '{0}', '08:00', '21:00');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('validation', '{}', '08:00', '21:00');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('validation', '{1,NULL}', '08:00', '21:00');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('validation', '{1}', '21:00', '08:00');
INSERT INTO dialer.policy_windows (policy, weekdays, starts, ends) VALUES ('validation', '{6,7}', '10:00', '24:00');
UPDATE dialer.policy_windows SET weekdays = '{9}' WHERE policy = 'validation';
SELECT policy, weekdays, starts, ends FROM dialer.policy_windows WHERE policy = 'validation';
DROP EXTENSION pg_dialer;
DROP SCHEMA dialer;
