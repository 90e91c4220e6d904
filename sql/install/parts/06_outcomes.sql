/*
 * pg_dialer: outcome classes, and what follows each, as data.
 *
 *   dialer.outcome_classes    what became of an attempt, in pg_dialer's words: answered,
 *                             voicemail_left, voicemail_no_message, no_answer, busy, fax,
 *                             bad_number, blocked, rejected, provider_error, canceled, lost
 *   dialer.provider_statuses  a provider's call statuses: their order, the call status each
 *                             leads to, and its outcome class (per kind; kind NULL: the
 *                             vocabulary every kind speaks)
 *   dialer.outcome_signals    the provider's other words that decide a class: an error code,
 *                             who answered (Twilio's AnsweredBy), the HTTP status of a refused
 *                             request
 *   dialer.outcome_rule_sets, dialer.outcome_rules
 *                             what follows each class: done, retry (after these delays, up to
 *                             these attempts), suppress the number (do-not-call ledger, with
 *                             the reason), hold for an operator; whether its attempts count
 *                             toward a calling policy's per-recipient cap.  A campaign names
 *                             its rule set; the set 'default' reproduces 0.2.0.
 *   dialer.outcome_of(), dialer.next_action()   the two decisions, each in one place
 *
 * Transport-level decisions stay in C (src/call_outcome.c): a 429 with Retry-After, a
 * connection refused, an answer lost (unknown).  Everything from a class on is decided here.
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * Outcome classes.
 */
CREATE TABLE dialer.outcome_classes (
	outcome				text PRIMARY KEY CHECK (outcome ~ '^[a-z_]{1,40}$'),
	position			int NOT NULL UNIQUE,
	description			text NOT NULL
);
COMMENT ON TABLE dialer.outcome_classes IS
	'What became of an attempt, in pg_dialer''s words (call_attempts.outcome, call_events.outcome); decided from the provider''s words by dialer.outcome_of()';
COMMENT ON COLUMN dialer.outcome_classes.outcome IS 'The class';
COMMENT ON COLUMN dialer.outcome_classes.position IS 'Order of the classes in the docs';
COMMENT ON COLUMN dialer.outcome_classes.description IS 'What it means';

INSERT INTO dialer.outcome_classes (outcome, position, description) VALUES
	('answered',				1,	'a person (or a party the provider could not tell apart) answered'),
	('voicemail_left',			2,	'an answering machine answered and the message was played after its greeting'),
	('voicemail_no_message',	3,	'an answering machine answered; no message was left'),
	('no_answer',				4,	'it rang out unanswered'),
	('busy',					5,	'the line was busy'),
	('fax',						6,	'a fax machine answered'),
	('bad_number',				7,	'the number does not exist or is not valid'),
	('blocked',					8,	'the call is not allowed: carrier, country, forbidden or premium number'),
	('rejected',				9,	'the provider refused the request (credentials, configuration, payload): no call was placed'),
	('provider_error',			10,	'the provider or the network failed'),
	('canceled',				11,	'canceled at the provider'),
	('lost',					12,	'the answer was lost: the call may have been placed; never re-sent automatically');

/*
 * A provider's call statuses, normalized (dialer.normalize_provider_status): their order (a
 * status never moves back), the call status each leads to (dialing while under way; NULL:
 * recorded, moves nothing), and the outcome class of a final one.
 */
CREATE TABLE dialer.provider_statuses (
	kind				text REFERENCES dialer.provider_kinds (kind),
	status				text NOT NULL,
	rank				int NOT NULL CHECK (rank BETWEEN 0 AND 5),
	call_status			text REFERENCES dialer.call_statuses (status),
	outcome				text REFERENCES dialer.outcome_classes (outcome),
	UNIQUE NULLS NOT DISTINCT (kind, status),
	CONSTRAINT final_has_outcome CHECK ((rank = 5) = (outcome IS NOT NULL))
);
COMMENT ON TABLE dialer.provider_statuses IS
	'A provider''s call statuses (normalized): their order, the call status each leads to, the outcome class of a final one; kind NULL: every kind''s (Twilio''s words, which the JSON webhooks speak too)';
COMMENT ON COLUMN dialer.provider_statuses.kind IS 'The provider kind whose word it is (NULL: every kind''s); a kind''s own row wins';
COMMENT ON COLUMN dialer.provider_statuses.status IS 'The status, normalized (lower case, - for _)';
COMMENT ON COLUMN dialer.provider_statuses.rank IS 'Its order: 0 accepted (the dispatcher''s mark), 1 to 4 under way, 5 final; a status never moves back';
COMMENT ON COLUMN dialer.provider_statuses.call_status IS 'The call status it leads to (NULL: recorded, moves nothing)';
COMMENT ON COLUMN dialer.provider_statuses.outcome IS 'The outcome class of a final status (refined by dialer.outcome_signals)';

INSERT INTO dialer.provider_statuses (kind, status, rank, call_status, outcome) VALUES
	(NULL,	'accepted',		0,	NULL,			NULL),
	(NULL,	'queued',		1,	'dialing',		NULL),
	(NULL,	'initiated',	2,	'dialing',		NULL),
	(NULL,	'ringing',		3,	'dialing',		NULL),
	(NULL,	'in-progress',	4,	'dialing',		NULL),
	(NULL,	'completed',	5,	'completed',	'answered'),
	(NULL,	'busy',			5,	'busy',			'busy'),
	(NULL,	'no-answer',	5,	'no_answer',	'no_answer'),
	(NULL,	'failed',		5,	'failed',		'provider_error'),
	(NULL,	'canceled',		5,	'canceled',		'canceled');

/*
 * The provider's other words that decide an outcome class: an error code (over every other
 * word), who answered (refines answered), the HTTP status of a refused request (value: the
 * status, or its family 4xx / 5xx).
 */
CREATE TABLE dialer.outcome_signals (
	kind				text REFERENCES dialer.provider_kinds (kind),
	signal				text NOT NULL CHECK (signal IN ('error_code', 'answered_by', 'http_status')),
	value				text NOT NULL,
	outcome				text NOT NULL REFERENCES dialer.outcome_classes (outcome),
	UNIQUE NULLS NOT DISTINCT (kind, signal, value)
);
COMMENT ON TABLE dialer.outcome_signals IS
	'Provider words that decide an outcome class: error_code (wins over all), answered_by (refines answered), http_status of a refused request (the status or its family, 4xx / 5xx); kind NULL: every kind''s';
COMMENT ON COLUMN dialer.outcome_signals.kind IS 'The provider kind whose word it is (NULL: every kind''s, e.g. the dispatcher''s own transport error codes); a kind''s own row wins';
COMMENT ON COLUMN dialer.outcome_signals.signal IS 'Which word: error_code, answered_by or http_status';
COMMENT ON COLUMN dialer.outcome_signals.value IS 'The word';
COMMENT ON COLUMN dialer.outcome_signals.outcome IS 'The class it decides';

-- who answered: Twilio's AnsweredBy (answering-machine detection, with its status callback or
-- its own), which the JSON webhooks speak too (answered_by); absent: answered
INSERT INTO dialer.outcome_signals (kind, signal, value, outcome) VALUES
	(NULL,	'answered_by',	'human',				'answered'),
	(NULL,	'answered_by',	'unknown',				'answered'),
	(NULL,	'answered_by',	'machine_start',		'voicemail_no_message'),
	(NULL,	'answered_by',	'machine_end_beep',		'voicemail_left'),
	(NULL,	'answered_by',	'machine_end_silence',	'voicemail_left'),
	(NULL,	'answered_by',	'machine_end_other',	'voicemail_left'),
	(NULL,	'answered_by',	'fax',					'fax');

-- the dispatcher's own words (src/call_outcome.c) and HTTP's, for every kind
INSERT INTO dialer.outcome_signals (kind, signal, value, outcome) VALUES
	(NULL,	'error_code',	'not_sendable',			'rejected'),
	(NULL,	'error_code',	'connect_failed',		'provider_error'),
	(NULL,	'error_code',	'timeout',				'provider_error'),
	(NULL,	'error_code',	'transport_error',		'provider_error'),
	(NULL,	'http_status',	'4xx',					'rejected'),
	(NULL,	'http_status',	'408',					'provider_error'),
	(NULL,	'http_status',	'425',					'provider_error'),
	(NULL,	'http_status',	'429',					'provider_error'),
	(NULL,	'http_status',	'5xx',					'provider_error');

/*
 * The row of dialer.provider_statuses for a (normalized) status of a kind: the kind's own,
 * else every kind's; none for a word pg_dialer does not know.
 *
 * This and the other lookups of outcome data below that read a table are PL/pgSQL, not
 * SQL: a SQL function whose body reads a table is not inlined, and is planned again at
 * each call (a status callback made seven such calls), where PL/pgSQL keeps its plan for
 * the session.
 */
CREATE FUNCTION dialer.provider_status_row(kind text, status text)
RETURNS dialer.provider_statuses
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
	v_row dialer.provider_statuses;
BEGIN
	SELECT s.* INTO v_row FROM dialer.provider_statuses s
	 WHERE s.status = provider_status_row.status
	   AND (s.kind = provider_status_row.kind OR s.kind IS NULL)
	 ORDER BY s.kind NULLS LAST LIMIT 1;
	RETURN v_row;
END;
$$;
COMMENT ON FUNCTION dialer.provider_status_row(text, text) IS
	'Internal: the dialer.provider_statuses row of a normalized status for a kind (its own, else every kind''s); NULL when unknown';

/*
 * The class a word of a kind decides (dialer.outcome_signals): the kind's own row, else
 * every kind's; of several values (an HTTP status and its family), the first given.
 */
CREATE FUNCTION dialer.signal_outcome(kind text, signal text, words text[])
RETURNS text
LANGUAGE plpgsql
STABLE PARALLEL SAFE
SET plan_cache_mode = force_generic_plan	-- else planned again at each call (custom plans cost no more)
AS $$
BEGIN
	RETURN (SELECT s.outcome FROM dialer.outcome_signals s
			 WHERE s.signal = signal_outcome.signal AND s.value = ANY (words)
			   AND (s.kind = signal_outcome.kind OR s.kind IS NULL)
			 ORDER BY s.kind NULLS LAST, array_position(words, s.value) LIMIT 1);
END;
$$;
COMMENT ON FUNCTION dialer.signal_outcome(text, text, text[]) IS
	'Internal: the outcome class dialer.outcome_signals gives a word (the first of words that has a row) of a signal for a kind (its own row, else every kind''s); NULL when none';

/*
 * The outcome class of what a provider said about an attempt: a known error code first;
 * else a final status's class, refined by who answered when it was answered; else the HTTP
 * status of a refused request (exact, then its family).  NULL: no outcome yet (under way,
 * accepted, a word pg_dialer does not know).
 */
CREATE FUNCTION dialer.outcome_of(kind text, provider_status text, answered_by text, error_code text,
								  http_status int)
RETURNS text
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
	v_status_class text := (dialer.provider_status_row(kind, provider_status)).outcome;
BEGIN
	RETURN coalesce(
		dialer.signal_outcome(kind, 'error_code', ARRAY[error_code]),
		CASE WHEN v_status_class = 'answered'
			 THEN coalesce(dialer.signal_outcome(kind, 'answered_by', ARRAY[answered_by]), v_status_class)
			 ELSE v_status_class END,
		CASE WHEN http_status NOT BETWEEN 200 AND 299
			 THEN dialer.signal_outcome(kind, 'http_status', ARRAY[http_status::text, left(http_status::text, 1) || 'xx']) END);
END;
$$;
COMMENT ON FUNCTION dialer.outcome_of(text, text, text, text, int) IS
	'Internal: The outcome class of what a provider said about an attempt (kind, normalized status, answered_by, error code, HTTP status of the request): error code first, then the status''s class refined by who answered, then the HTTP status; NULL when there is no outcome yet';

/*
 * Rule sets: what follows each outcome class.  'default' is pg_dialer's own (0.2.0's
 * behaviour) and cannot be changed; a campaign names another (dialer.campaigns.outcome_rules).
 */
CREATE TABLE dialer.outcome_rule_sets (
	name				text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
	description			text
);
COMMENT ON TABLE dialer.outcome_rule_sets IS
	'Named sets of next-action rules (dialer.outcome_rules); a campaign names one (campaigns.outcome_rules), else ''default'' (0.2.0''s behaviour, which cannot be changed: copy it with dialer.copy_outcome_rules)';
COMMENT ON COLUMN dialer.outcome_rule_sets.name IS 'The set''s name (letters, digits, _ . -; at most 63)';
COMMENT ON COLUMN dialer.outcome_rule_sets.description IS 'Free text for people';

CREATE TABLE dialer.outcome_rules (
	rule_set			text NOT NULL REFERENCES dialer.outcome_rule_sets (name) ON UPDATE CASCADE ON DELETE CASCADE,
	outcome				text NOT NULL REFERENCES dialer.outcome_classes (outcome),
	action				text NOT NULL CHECK (action IN ('done', 'retry', 'suppress', 'hold')),
	retry_delays		interval[] CHECK (retry_delays IS NULL OR (cardinality(retry_delays) BETWEEN 1 AND 20
											AND array_position(retry_delays, NULL) IS NULL
											AND '0'::interval <= ALL (retry_delays))),
	max_attempts		int CHECK (max_attempts BETWEEN 1 AND 20),
	enabled_by			text CHECK (enabled_by IN ('retry_busy', 'retry_no_answer')),
	counts_toward_cap	boolean NOT NULL DEFAULT true,
	description			text,
	PRIMARY KEY (rule_set, outcome),
	CONSTRAINT retry_settings_only_for_retry CHECK (action = 'retry'
		OR (retry_delays IS NULL AND max_attempts IS NULL AND enabled_by IS NULL)),
	CONSTRAINT not_for_lost CHECK (outcome <> 'lost')
);
COMMENT ON TABLE dialer.outcome_rules IS
	'What follows an outcome class in a rule set: done, retry, suppress (the number goes to the do-not-call ledger with the reason) or hold (the call waits in status held for an operator); a class a set does not name follows the default set''s rule';
COMMENT ON COLUMN dialer.outcome_rules.rule_set IS 'The rule set (dialer.outcome_rule_sets)';
COMMENT ON COLUMN dialer.outcome_rules.outcome IS 'The outcome class (lost is not ruled here: an unknown call is settled by reconciliation or an operator)';
COMMENT ON COLUMN dialer.outcome_rules.action IS 'done: the call ends in its status; retry: back in the queue after a delay, while attempts are left and before the deadline; suppress: the call ends, and its number is added to dialer.do_not_call with the reason; hold: the call waits in status held until an operator retries (dialer.retry_call) or cancels it';
COMMENT ON COLUMN dialer.outcome_rules.retry_delays IS 'retry: the delay before the 1st, 2nd, ... retry of a run (the last repeats); NULL: the campaign''s retry_delay, else the provider''s';
COMMENT ON COLUMN dialer.outcome_rules.max_attempts IS 'retry: attempts a run may make when this class is the last outcome (NULL: the call''s max_attempts)';
COMMENT ON COLUMN dialer.outcome_rules.enabled_by IS 'retry: only when this retry setting of the campaign (else of the provider) is on, else done: how the default set keeps 0.2.0''s retry_busy and retry_no_answer';
COMMENT ON COLUMN dialer.outcome_rules.counts_toward_cap IS 'Whether an attempt of this class counts toward a calling policy''s per-recipient cap (an attempt the provider refused outright never counts)';
COMMENT ON COLUMN dialer.outcome_rules.description IS 'Free text for people';

INSERT INTO dialer.outcome_rule_sets (name, description) VALUES
	('default', 'pg_dialer''s own: busy and no_answer retried when the campaign''s (else the provider''s) retry_busy / retry_no_answer is on, after its retry_delay; everything else done');
INSERT INTO dialer.outcome_rules (rule_set, outcome, action, enabled_by)
SELECT 'default', k.outcome,
	   CASE WHEN k.outcome IN ('busy', 'no_answer') THEN 'retry' ELSE 'done' END,
	   CASE k.outcome WHEN 'busy' THEN 'retry_busy' WHEN 'no_answer' THEN 'retry_no_answer' END
  FROM dialer.outcome_classes k
 WHERE k.outcome <> 'lost'
 ORDER BY k.position;

-- campaigns name their rule set (the column is in 00_schema.sql, its key here)
ALTER TABLE dialer.campaigns ADD CONSTRAINT campaigns_outcome_rules_fkey
	FOREIGN KEY (outcome_rules) REFERENCES dialer.outcome_rule_sets (name) ON UPDATE CASCADE;

/*
 * The default rule set is pg_dialer's own: its rows are not changed by hand (a pg_dump
 * could not keep the change), a set of one's own is (dialer.copy_outcome_rules).
 */
CREATE FUNCTION dialer.outcome_rules_guard()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	-- the set a row of either table belongs to, before and after
	v_old text := CASE WHEN TG_OP <> 'INSERT' THEN coalesce(to_jsonb(OLD)->>'rule_set', to_jsonb(OLD)->>'name') END;
	v_new text := CASE WHEN TG_OP <> 'DELETE' THEN coalesce(to_jsonb(NEW)->>'rule_set', to_jsonb(NEW)->>'name') END;
BEGIN
	IF 'default' IN (v_old, v_new) THEN
		RAISE EXCEPTION 'the outcome rule set "default" cannot be changed'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'It is pg_dialer''s own, and reproduces its behaviour of 0.2.0.',
				  HINT = 'Copy it with SELECT dialer.copy_outcome_rules(''default'', ''mine''), change the copy, and name it in dialer.campaigns.outcome_rules.';
	END IF;
	RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
COMMENT ON FUNCTION dialer.outcome_rules_guard() IS
	'Trigger: refuses changes to the rule set ''default'' (pg_dialer''s own)';
CREATE TRIGGER outcome_rules_guard BEFORE INSERT OR UPDATE OR DELETE ON dialer.outcome_rules
	FOR EACH ROW EXECUTE FUNCTION dialer.outcome_rules_guard();
CREATE TRIGGER outcome_rule_sets_guard BEFORE INSERT OR UPDATE OR DELETE ON dialer.outcome_rule_sets
	FOR EACH ROW EXECUTE FUNCTION dialer.outcome_rules_guard();

-- pg_dump keeps the rule sets people made (the default set comes with the extension)
SELECT pg_catalog.pg_extension_config_dump('dialer.outcome_rule_sets', 'WHERE name <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('dialer.outcome_rules', 'WHERE rule_set <> ''default''');

/*
 * A new rule set with the rules of another: the way to change what follows an outcome.
 */
CREATE FUNCTION dialer.copy_outcome_rules(source text, name text, description text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM dialer.outcome_rule_sets s WHERE s.name = copy_outcome_rules.source) THEN
		RAISE EXCEPTION 'outcome rule set % does not exist', coalesce(quote_literal(source), 'NULL')
			USING ERRCODE = 'no_data_found',
				  HINT = 'SELECT name FROM dialer.outcome_rule_sets lists them; ''default'' is pg_dialer''s own.';
	END IF;
	INSERT INTO dialer.outcome_rule_sets (name, description)
	VALUES (copy_outcome_rules.name, coalesce(copy_outcome_rules.description, format('copy of %s', source)));
	INSERT INTO dialer.outcome_rules (rule_set, outcome, action, retry_delays, max_attempts, enabled_by,
									  counts_toward_cap, description)
	SELECT copy_outcome_rules.name, r.outcome, r.action, r.retry_delays, r.max_attempts, r.enabled_by,
		   r.counts_toward_cap, r.description
	  FROM dialer.outcome_rules r WHERE r.rule_set = copy_outcome_rules.source;
	RETURN copy_outcome_rules.name;
END;
$$;
COMMENT ON FUNCTION dialer.copy_outcome_rules(text, text, text) IS
	'Creates the outcome rule set name with the rules of the set source (e.g. ''default''), to be changed and named by campaigns; returns name';

/*
 * The rule that follows an outcome class for a call: its campaign's rule set's, else the
 * default set's.  NULL for lost (not ruled here).
 */
CREATE FUNCTION dialer.outcome_rule(campaign text, outcome text)
RETURNS dialer.outcome_rules
LANGUAGE plpgsql
STABLE PARALLEL SAFE
SET plan_cache_mode = force_generic_plan	-- else planned again at each call (custom plans cost no more)
AS $$
DECLARE
	v_rule dialer.outcome_rules;
BEGIN
	SELECT r.* INTO v_rule FROM dialer.outcome_rules r
	 WHERE r.outcome = outcome_rule.outcome
	   AND r.rule_set IN ('default', (SELECT k.outcome_rules FROM dialer.campaigns k WHERE k.name = outcome_rule.campaign))
	 ORDER BY r.rule_set = 'default' LIMIT 1;
	RETURN v_rule;
END;
$$;
COMMENT ON FUNCTION dialer.outcome_rule(text, text) IS
	'Internal: the rule (dialer.outcome_rules) that follows an outcome class for a call of campaign: its rule set''s, else the default set''s';

/*
 * What follows an outcome for a call whose current attempt just ended with it (call_row
 * as it was before): its rule's action, and for a retry, when: retried when the rule says
 * retry (and its enabled_by setting, the campaign's over the provider's, is on), the run's
 * attempts (attempts - attempts_base) are below the rule's max_attempts (else the call's),
 * and the retry, after the rule's delay for this retry (else the campaign's, else the
 * provider's retry_delay), comes before the deadline; else done, with skipped naming what
 * refused it (attempts_exhausted, deadline).  Exactly one row (done for a NULL outcome).
 */
CREATE FUNCTION dialer.next_action(call_row dialer.scheduled_calls, outcome text)
RETURNS TABLE (action text, next_attempt_at timestamptz, retry_delay interval, skipped text, rule_set text)
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN d.act <> 'retry' THEN d.act
				WHEN NOT d.allowed OR d.exhausted OR d.late THEN 'done'
				ELSE 'retry' END,
		   d.next_at, d.delay,
		   CASE WHEN d.act = 'retry' AND d.allowed AND d.exhausted THEN 'attempts_exhausted'
				WHEN d.act = 'retry' AND d.allowed AND d.late THEN 'deadline' END,
		   d.rule_set
	  FROM (SELECT coalesce(r.action, 'done') AS act, r.rule_set,
				   CASE r.enabled_by WHEN 'retry_busy' THEN coalesce(k.retry_busy, p.retry_busy, false)
									 WHEN 'retry_no_answer' THEN coalesce(k.retry_no_answer, p.retry_no_answer, false)
									 ELSE p.name IS NOT NULL END AS allowed,
				   x.delay,
				   pg_catalog.now() + coalesce(x.delay, interval '0') AS next_at,
				   coalesce((call_row).attempts - (call_row).attempts_base
							>= coalesce(r.max_attempts, (call_row).max_attempts), false) AS exhausted,
				   coalesce(pg_catalog.now() + coalesce(x.delay, interval '0') >= (call_row).deadline, false) AS late
			  FROM (SELECT 1) one
			  -- in FROM: looked up once (as (f()).* it would be called once per column)
			  LEFT JOIN LATERAL dialer.outcome_rule((call_row).campaign, outcome) r ON true
			  LEFT JOIN dialer.providers p ON p.name = (call_row).provider
			  LEFT JOIN dialer.campaigns k ON k.name = (call_row).campaign
			 CROSS JOIN LATERAL (
					SELECT coalesce(r.retry_delays[least(greatest((call_row).attempts - (call_row).attempts_base, 1),
														 cardinality(r.retry_delays))],
									k.retry_delay, p.retry_delay) AS delay) x) d;
$$;
COMMENT ON FUNCTION dialer.next_action(dialer.scheduled_calls, text) IS
	'Internal: what follows an outcome class for a call (its campaign''s rule set, else the default set''s): done, retry (when, or what refused it: attempts_exhausted, deadline), suppress or hold';

/*
 * Suppressing a number by rule: it goes to the do-not-call ledger (unless it is there
 * already) with the outcome and rule set as the reason; its scheduled calls are skipped at
 * once (trigger dialer.do_not_call_added).
 */
CREATE FUNCTION dialer.suppress_number(number text, outcome text, rule_set text, call_id bigint)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	WITH added AS (
		INSERT INTO dialer.do_not_call (number, reason, source)
		VALUES (number, format('outcome %s of call %s (outcome rule set %s: suppress)', outcome, call_id, rule_set),
				'pg_dialer outcome rule')
		ON CONFLICT (number) DO NOTHING
		RETURNING 1
	)
	SELECT EXISTS (SELECT 1 FROM added);
$$;
COMMENT ON FUNCTION dialer.suppress_number(text, text, text, bigint) IS
	'Internal: adds a number to dialer.do_not_call because an outcome rule says suppress (reason: the outcome, call and rule set; source: pg_dialer outcome rule); false when it was listed already';

/*
 * What an outcome's next action carries to dialer.follow_outcome() and into its event: the
 * action and rule set, and for a retry the outcome, attempt, when, the delay and the run's
 * attempts (the detail of the retry_scheduled event).  NULL when there is no action.
 */
CREATE FUNCTION dialer.next_action_detail(action text, rule_set text, outcome text, attempt int,
										  next_attempt_at timestamptz, retry_delay interval,
										  call_row dialer.scheduled_calls)
RETURNS jsonb
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN action IS NOT NULL THEN
		jsonb_build_object('action', action, 'rule_set', rule_set, 'reason', outcome, 'attempt', attempt)
		|| CASE WHEN action = 'retry' THEN
			jsonb_build_object('next_attempt_at', next_attempt_at, 'retry_delay', retry_delay::text,
							   'attempts_used', (call_row).attempts - (call_row).attempts_base,
							   'max_attempts', (call_row).max_attempts)
		   ELSE '{}' END END;
$$;
COMMENT ON FUNCTION dialer.next_action_detail(text, text, text, int, timestamptz, interval, dialer.scheduled_calls) IS
	'Internal: the next action of an outcome as jsonb (action, rule_set, reason, attempt; for a retry next_attempt_at, retry_delay, attempts_used, max_attempts), for dialer.follow_outcome()';

/*
 * Does what an outcome's rule says follows (next, from dialer.next_action_detail), for a
 * call that has just moved to outcome_status: retry moves it back to the queue
 * (retry_scheduled), hold to held; suppress adds its number to the do-not-call ledger and
 * notes it on the call (suppressed); done, or no next, does nothing.
 */
CREATE FUNCTION dialer.follow_outcome(call_row dialer.scheduled_calls, outcome_status text, next jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	CASE next->>'action'
		WHEN 'retry' THEN
			PERFORM count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
				(call_row).id, outcome_status, 'retry_scheduled', 'scheduled', next - 'action',
				next_attempt_at => (next->>'next_attempt_at')::timestamptz)]);
		WHEN 'hold' THEN
			PERFORM count(*) FROM dialer.move_calls(ARRAY[dialer.make_move(
				(call_row).id, outcome_status, 'held', 'held', next - 'action')]);
		WHEN 'suppress' THEN
			PERFORM dialer.note_calls(ARRAY[(call_row).id], ARRAY['suppressed'],
				ARRAY[(next - 'action') || jsonb_build_object(
					'number', (call_row).to_number,
					'added_to_do_not_call', dialer.suppress_number((call_row).to_number, next->>'reason',
																   next->>'rule_set', (call_row).id))]);
		ELSE
			NULL;
	END CASE;
END;
$$;
COMMENT ON FUNCTION dialer.follow_outcome(dialer.scheduled_calls, text, jsonb) IS
	'Internal: does what an outcome''s rule says follows for a call that just moved to outcome_status: retry (back to the queue), hold (held), suppress (the number to dialer.do_not_call, noted on the call)';

/* ------------------------------------------------------------------------------------
 * Provider statuses
 * ------------------------------------------------------------------------------------ */

/*
 * A provider's call status in Twilio's vocabulary (queued, initiated, ringing,
 * in-progress, completed, busy, no-answer, failed, canceled), whatever its spelling:
 * case, '_' for '-', cancelled, answered, in_progress.  Others are returned as given
 * (lower case): they are recorded but move nothing.
 */
CREATE FUNCTION dialer.normalize_provider_status(status text)
RETURNS text
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE pg_catalog.replace(pg_catalog.lower(pg_catalog.btrim(status)), '_', '-')
		WHEN 'cancelled' THEN 'canceled'
		WHEN 'answered' THEN 'in-progress'
		WHEN 'noanswer' THEN 'no-answer'
		ELSE pg_catalog.replace(pg_catalog.lower(pg_catalog.btrim(status)), '_', '-') END;
$$;
COMMENT ON FUNCTION dialer.normalize_provider_status(text) IS
	'Internal: a provider status in Twilio''s spelling (no_answer -> no-answer, cancelled -> canceled, answered -> in-progress)';

/*
 * The order of a (normalized) provider status of a kind (dialer.provider_statuses):
 * accepted (the dispatcher's mark) 0, queued 1, initiated 2, ringing 3, in-progress 4, any
 * final status 5; NULL for a status pg_dialer does not know.
 */
CREATE FUNCTION dialer.provider_status_rank(status text, kind text DEFAULT NULL)
RETURNS int
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT (dialer.provider_status_row(kind, status)).rank;
$$;
COMMENT ON FUNCTION dialer.provider_status_rank(text, text) IS
	'Internal: order of a (normalized) provider status of a kind (dialer.provider_statuses): 0 accepted .. 4 in-progress, 5 final; NULL when unknown';

/*
 * The call status a (normalized) provider status of a kind leads to
 * (dialer.provider_statuses): dialing while the call is under way, else the outcome.
 * NULL for a status that moves nothing or that pg_dialer does not know.
 */
CREATE FUNCTION dialer.provider_status_outcome(status text, kind text DEFAULT NULL)
RETURNS text
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
	SELECT (dialer.provider_status_row(kind, status)).call_status;
$$;
COMMENT ON FUNCTION dialer.provider_status_outcome(text, text) IS
	'Internal: the call status a (normalized) provider status of a kind leads to (dialer.provider_statuses): dialing, completed, busy, no_answer, failed, canceled; NULL when it moves nothing or is unknown';

/*
 * Whether an attempt's provider status moves from old_status to new_status (both
 * normalized): only forward in provider_status_rank's order, a repeated status under way
 * included, a final one not; from a status pg_dialer does not know, to any it knows.
 */
CREATE FUNCTION dialer.provider_status_advances(new_status text, old_status text, kind text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
STABLE PARALLEL SAFE
AS $$
DECLARE
	v_new int := dialer.provider_status_rank(new_status, kind);
	v_old int := dialer.provider_status_rank(old_status, kind);
BEGIN
	RETURN v_new IS NOT NULL
		   AND (old_status IS NULL OR v_old IS NULL OR v_new > v_old OR (v_new = v_old AND v_new < 5));
END;
$$;
COMMENT ON FUNCTION dialer.provider_status_advances(text, text, text) IS
	'Internal: true when an attempt''s provider status may move from old_status to new_status (forward only; an unknown old status may be left)';
