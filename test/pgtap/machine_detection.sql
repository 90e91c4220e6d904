-- pgTAP: answering machines (issue 23, items 1 and 2), in SQL.
--   - the enqueue rules of a payload's machine detection (dialer.machine_detection_rule, called by
--     dialer.call_rule): each refusal names the key and its value, writes nothing, and is the same
--     for enqueue_call and enqueue_calls; detection and send_digits together are refused naming
--     both, whether the detection is the call's or its provider's; Twilio's ranges at their edges;
--   - the mapping rows: every AnsweredBy word to its outcome class, for every kind;
--   - the verdict of an asynchronous detection (dialer.apply_machine_verdict): kept on the
--     attempt and used by the final status; a late, repeated, conflicting or unmatched verdict
--     changes nothing.
-- Everything is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(58);

INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, status_callback_url)
VALUES ('tap-amd', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000',
        'https://hooks.example/twilio/status-callback'),
       ('tap-amd-nocb', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000', NULL);
INSERT INTO dialer.providers (name, kind, base_url, account_sid, auth_token, from_number, status_callback_url,
                              machine_detection)
VALUES ('tap-amd-detects', 'twilio', 'https://api.twilio.example', 'AC' || repeat('0', 32), 'tok', '+15550100000',
        'https://hooks.example/twilio/status-callback', 'DetectMessageEnd');
INSERT INTO dialer.providers (name, kind, base_url) VALUES ('tap-amd-backend', 'backend', 'https://backend.example');

CREATE TEMP TABLE before AS SELECT (SELECT count(*) FROM dialer.scheduled_calls) AS calls,
                                   (SELECT count(*) FROM dialer.call_events) AS events;
CREATE FUNCTION pg_temp.unchanged() RETURNS boolean LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM dialer.scheduled_calls) = b.calls AND (SELECT count(*) FROM dialer.call_events) = b.events
	  FROM before b
$$;
-- the error enqueue_call raises for a payload: SQLSTATE, message and detail; NULL when it is
-- accepted (the call is then taken back)
CREATE FUNCTION pg_temp.refusal(provider text, payload jsonb) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE s text; m text; d text;
BEGIN
	PERFORM dialer.enqueue_call('+14155550123', provider => provider, payload => payload || '{"message": "hi"}');
	RAISE EXCEPTION 'accepted' USING ERRCODE = 'P0099';
EXCEPTION WHEN SQLSTATE 'P0099' THEN
	RETURN NULL;
WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
	RETURN ARRAY[s, m, d];
END;
$$;
-- the reason enqueue_calls(atomic => false) gives for the same call
CREATE FUNCTION pg_temp.bulk_reason(provider text, payload jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT r.reason || ': ' || r.message
	  FROM dialer.enqueue_calls(jsonb_build_array(jsonb_build_object('to_number', '+14155550123', 'provider', provider,
			'payload', payload || '{"message": "hi"}')), atomic => false) r
$$;

/* ------------------------------------------------------------------ refused at enqueue */

SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "enable"}'))[1:2],
          ARRAY['22023', 'invalid payload.machine_detection: ''enable'''], 'machine_detection is Enable, DetectMessageEnd or none');
SELECT alike((pg_temp.refusal('tap-amd', '{"machine_detection": "enable"}'))[3], '%Enable%DetectMessageEnd%none%', '... the detail says which');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "async_amd": "true"}'))[2],
          'invalid payload.async_amd: ''true''', 'async_amd is a JSON boolean, not a string');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_timeout": 2}'))[2],
          'invalid payload.machine_detection_timeout: ''2''', 'MachineDetectionTimeout below 3 s');
SELECT alike((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_timeout": 60}'))[3],
          '%whole number of seconds from 3 to 59%', '... and above 59 s, saying the range');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_timeout": 30.5}'))[2],
          'invalid payload.machine_detection_timeout: ''30.5''', '... a whole number');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_speech_threshold": 999}'))[2],
          'invalid payload.machine_detection_speech_threshold: ''999''', 'MachineDetectionSpeechThreshold below 1000 ms');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_speech_threshold": 6001}'))[2],
          'invalid payload.machine_detection_speech_threshold: ''6001''', '... above 6000 ms');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_speech_end_threshold": 499}'))[2],
          'invalid payload.machine_detection_speech_end_threshold: ''499''', 'MachineDetectionSpeechEndThreshold below 500 ms');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_speech_end_threshold": 5001}'))[2],
          'invalid payload.machine_detection_speech_end_threshold: ''5001''', '... above 5000 ms');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_silence_timeout": 1999}'))[2],
          'invalid payload.machine_detection_silence_timeout: ''1999''', 'MachineDetectionSilenceTimeout below 2000 ms');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_silence_timeout": "5000"}'))[2],
          'invalid payload.machine_detection_silence_timeout: ''5000''', '... a number, not a string');
SELECT is((pg_temp.refusal('tap-amd', '{"send_digits": "12x"}'))[2], 'invalid payload.send_digits: ''12x''',
          'send_digits: digits, A-D, #, *, w and W only');
SELECT is((pg_temp.refusal('tap-amd', jsonb_build_object('send_digits', repeat('1', 33))))[1], '22023', '... at most 32');
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection_timeout": 30}'))[2],
          'invalid payload.machine_detection_timeout: ''30''', 'a tuning setting without detection is refused');
SELECT alike((pg_temp.refusal('tap-amd', '{"async_amd": true}'))[3],
          '%tunes answering-machine detection, which is off for this call%', '... and so is async_amd true');
SELECT is((pg_temp.refusal('tap-amd-detects', '{"machine_detection": "none", "machine_detection_timeout": 30}'))[2],
          'invalid payload.machine_detection_timeout: ''30''', '... also when the call turns its provider''s detection off');
SELECT is(pg_temp.refusal('tap-amd-detects', '{"machine_detection_timeout": 30}'), NULL,
          'a tuning setting with the provider''s detection is accepted');

-- detection with send_digits: refused naming both, whoever asked for the detection
SELECT is((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "send_digits": "1234#"}'))[2],
          'invalid payload.send_digits: ''1234#''', 'the call''s detection with send_digits is refused');
SELECT alike((pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "send_digits": "1234#"}'))[3],
            'payload.send_digits and machine detection (MachineDetection=Enable, from payload.machine_detection) cannot go together%',
            '... the detail names both');
SELECT alike((pg_temp.refusal('tap-amd-detects', '{"send_digits": "ww12"}'))[3],
            '%MachineDetection=DetectMessageEnd, from provider ''tap-amd-detects''%',
            'the provider''s detection with send_digits is refused, naming the provider');
SELECT is(pg_temp.refusal('tap-amd-detects', '{"send_digits": "ww12", "machine_detection": "none"}'), NULL,
          '... unless the call turns detection off');
SELECT is(pg_temp.refusal('tap-amd', '{"send_digits": "W1234#*ABCD"}'), NULL, 'send_digits alone is accepted');

-- asynchronous: the verdict needs the status callback URL
SELECT alike((pg_temp.refusal('tap-amd-nocb', '{"machine_detection": "Enable", "async_amd": true}'))[3],
            'Asynchronous detection posts its verdict to the provider''s status_callback_url, and provider ''tap-amd-nocb'' has none.',
            'async_amd without a status_callback_url is refused');
SELECT throws_ok($$UPDATE dialer.providers SET async_amd = true WHERE name = 'tap-amd-nocb'$$, '23514', NULL,
                 '... and a provider cannot be asynchronous without one');
SELECT is(pg_temp.refusal('tap-amd', '{"machine_detection": "DetectMessageEnd", "async_amd": true, "machine_detection_timeout": 59,
                          "machine_detection_speech_threshold": 6000, "machine_detection_speech_end_threshold": 500,
                          "machine_detection_silence_timeout": 10000}'), NULL,
          'every setting at the edge of its range is accepted');
SELECT is(pg_temp.refusal('tap-amd', '{"machine_detection": "Enable", "machine_detection_timeout": 3,
                          "machine_detection_speech_threshold": 1000, "machine_detection_speech_end_threshold": 5000,
                          "machine_detection_silence_timeout": 2000}'), NULL, '... at either edge');

-- a kind that does not detect machines
SELECT is((pg_temp.refusal('tap-amd-backend', '{"machine_detection": "Enable"}'))[2],
          'invalid payload.machine_detection: ''Enable''', 'a kind without machine detection refuses the keys');
SELECT alike((pg_temp.refusal('tap-amd-backend', '{"machine_detection": "Enable"}'))[3],
            'A call of provider kind backend can neither ask for answering-machine detection nor send digits%', '... naming the kind');

-- enqueue_calls reports the same rules
SELECT is(pg_temp.bulk_reason('tap-amd', '{"machine_detection": "Enable", "send_digits": "1"}'),
          'machine_detection_send_digits: invalid payload.send_digits: ''1''', 'enqueue_calls refuses detection with send_digits');
SELECT is(pg_temp.bulk_reason('tap-amd-detects', '{"send_digits": "1"}'),
          'machine_detection_send_digits: invalid payload.send_digits: ''1''', '... also the provider''s detection');
SELECT is(pg_temp.bulk_reason('tap-amd', '{"machine_detection": "Enable", "machine_detection_timeout": 0}'),
          'machine_detection_setting: invalid payload.machine_detection_timeout: ''0''', '... and a setting out of range');
SELECT is(pg_temp.bulk_reason('tap-amd-nocb', '{"machine_detection": "Enable", "async_amd": true}'),
          'machine_detection_callback: invalid payload.async_amd: ''true''', '... and async without a callback URL');
SELECT ok(pg_temp.unchanged(), 'nothing was written by the refused elements');

-- a campaign's payload gives detection to its calls, and is held to the same rules
CREATE VIEW public.tap_amd_src AS SELECT 'c1'::text AS customer_ref, '+14155550188'::text AS phone;
INSERT INTO dialer.campaigns (name, source, provider, payload)
VALUES ('tap_amd_camp', 'public.tap_amd_src', 'tap-amd',
        '{"message": "hi", "machine_detection": "DetectMessageEnd", "send_digits": "1"}');
SELECT is((SELECT reason || ': ' || detail FROM dialer.campaign_candidates('tap_amd_camp') LIMIT 1),
          'invalid_payload: invalid payload.send_digits: ''1'' (payload.send_digits and machine detection (MachineDetection=DetectMessageEnd, from payload.machine_detection) cannot go together: Twilio ignores MachineDetection when SendDigits is sent, so the call would not be detected.)',
          'a campaign whose payload asks for detection and send_digits: its candidate is invalid_payload, saying why');

/* ------------------------------------------------------------------ the mapping rows */

SELECT results_eq(
	$$SELECT v, dialer.outcome_of(k, 'completed', v, NULL, NULL)
	    FROM unnest(ARRAY['twilio', 'backend', 'voice_api']) k,
	         unnest(ARRAY['human', 'machine_start', 'machine_end_beep', 'machine_end_silence', 'machine_end_other',
	                      'fax', 'unknown', NULL]) WITH ORDINALITY v ORDER BY k, ordinality$$,
	$$SELECT v, o FROM (VALUES (1, 'human', 'answered'), (2, 'machine_start', 'voicemail_no_message'),
	                          (3, 'machine_end_beep', 'voicemail_left'), (4, 'machine_end_silence', 'voicemail_left'),
	                          (5, 'machine_end_other', 'voicemail_left'), (6, 'fax', 'fax'), (7, 'unknown', 'answered'),
	                          (8, NULL, 'answered')) m(n, v, o),
	                  generate_series(1, 3) ORDER BY generate_series, n$$,
	'every AnsweredBy word maps to its class, for every kind (absent: answered)');
SELECT is((SELECT count(*)::int FROM dialer.outcome_signals WHERE signal = 'answered_by' AND kind IS NULL), 7,
          'seven answered_by rows, every kind''s');
SELECT is(dialer.outcome_of('twilio', 'no-answer', 'machine_start', NULL, NULL), 'no_answer',
          'who answered refines only an answered call');

/* ------------------------------------------------------------------ the verdict in */

-- a call as the dispatcher leaves it once Twilio accepted it: dialing, its attempt stored
CREATE FUNCTION pg_temp.dialing(sid text, provider text DEFAULT 'tap-amd') RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
	INSERT INTO dialer.scheduled_calls (status, run_at, next_attempt_at, to_number, from_number, provider, attempts,
	                                    max_attempts, provider_call_id)
	VALUES ('dialing', now(), now(), '+14155550100', '+15550100000', provider, 1, 3, sid) RETURNING id INTO v_id;
	INSERT INTO dialer.call_attempts (call_id, attempt, requested_at, provider_call_id, http_status)
	VALUES (v_id, 1, now(), sid, 201);
	RETURN v_id;
END;
$$;
CREATE FUNCTION pg_temp.att(call_id bigint) RETURNS dialer.call_attempts LANGUAGE sql AS $$
	SELECT a FROM dialer.call_attempts a WHERE a.call_id = $1 ORDER BY attempt DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.snap(call_id bigint) RETURNS text LANGUAGE sql AS $$
	SELECT (SELECT to_jsonb(c)::text FROM dialer.scheduled_calls c WHERE c.id = $1)
	    || (SELECT jsonb_agg(to_jsonb(a) ORDER BY a.id)::text FROM dialer.call_attempts a WHERE a.call_id = $1)
$$;

SELECT pg_temp.dialing('CA01') AS c1 \gset
SELECT is(dialer.apply_machine_verdict(:c1, 'machine_end_beep', 'CA01')->>'result', 'applied', 'a verdict during the call is applied');
SELECT is((pg_temp.att(:c1)).answered_by, 'machine_end_beep', '... kept on the attempt');
SELECT is((SELECT detail->>'outcome_when_answered' FROM dialer.call_events WHERE call_id = :c1 AND event = 'machine_detection'),
          'voicemail_left', '... and its event says what it will mean');
SELECT is((SELECT status FROM dialer.scheduled_calls WHERE id = :c1), 'dialing', '... moving nothing');
SELECT pg_temp.snap(:c1) AS s1 \gset
SELECT is(dialer.apply_machine_verdict(:c1, 'machine_end_beep', 'CA01')->>'result', 'duplicate', 'the same verdict twice is a duplicate');
SELECT is(pg_temp.snap(:c1) || (SELECT count(*) FROM dialer.call_events WHERE call_id = :c1)::text,
          :'s1' || '1', '... writing nothing at all');
SELECT is(dialer.apply_machine_verdict(:c1, 'human', 'CA01')->>'result', 'conflicting', 'another verdict is conflicting');
SELECT is((pg_temp.att(:c1)).answered_by, 'machine_end_beep', '... the first is kept');
SELECT is(dialer.apply_machine_verdict(:c1, 'fax', 'CA99')->>'result', 'unmatched', 'a verdict for another CallSid is unmatched');
SELECT is(pg_temp.snap(:c1), :'s1', '... changing nothing');
-- the final status without AnsweredBy (asynchronous mode) takes the attempt's verdict
SELECT is(dialer.apply_provider_status(:c1, 'completed', 'CA01', 5, '{}')->>'status', 'completed', 'the final status completes the call');
SELECT is((pg_temp.att(:c1)).outcome, 'voicemail_left', '... its class from the verdict: voicemail_left');
SELECT is((SELECT outcome FROM dialer.call_events WHERE call_id = :c1 AND event = 'callback' AND to_status = 'completed'),
          'voicemail_left', '... on the event too');

-- a verdict after the final status is late: the class stays
SELECT pg_temp.dialing('CA02') AS c2 \gset
SELECT is(dialer.apply_provider_status(:c2, 'completed', 'CA02', 5, '{}')->>'status', 'completed', 'a call completed without a verdict');
SELECT is((pg_temp.att(:c2)).outcome, 'answered', '... is answered');
SELECT pg_temp.snap(:c2) AS s2 \gset
SELECT is(dialer.apply_machine_verdict(:c2, 'machine_start', 'CA02')->>'result', 'late', 'a verdict after it is late');
SELECT is(pg_temp.snap(:c2), :'s2', '... changing neither call nor attempt');
SELECT is(dialer.apply_machine_verdict(:c2, 'machine_start', 'CA02')->>'result', 'duplicate', '... and again, a duplicate');

-- a status callback carrying AnsweredBy (synchronous mode) decides the class itself
SELECT pg_temp.dialing('CA03') AS c3 \gset
SELECT is(dialer.apply_provider_status(:c3, 'completed', 'CA03', 5, '{"answered_by": "fax"}')->>'status', 'completed',
          'a final status with answered_by fax');
SELECT is(ARRAY[(pg_temp.att(:c3)).outcome, (pg_temp.att(:c3)).answered_by], ARRAY['fax', 'fax'], '... is the class fax');

SELECT * FROM finish();
ROLLBACK;
