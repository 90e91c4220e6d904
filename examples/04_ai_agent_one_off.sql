/*
 * Example 4: one-off calls at a given UTC time through the customer's own AI-call backend.
 *
 * Two modes of the backend provider (payload.mode):
 *   DIRECT       the payload carries the ready script: POST {base_url}/call/start
 *   BRIEF_START  the payload carries a brief: POST {base_url}/call/brief returns the script,
 *                then POST {base_url}/call/start starts the call with it
 * Requests carry an Idempotency-Key, so the backend can recognise a retried request.
 * The whole payload reaches the backend as the request's "metadata": agent, language,
 * customer and quote below are for the backend to use (pg_dialer reads only mode, script
 * and base_url).
 *
 * Replaces: a FastAPI service with SQLite and a polling thread.
 *
 *   psql -v ON_ERROR_STOP=1 -d mydb -f examples/04_ai_agent_one_off.sql
 *   psql -v ON_ERROR_STOP=1 -v call_at='2026-12-01 18:00:00+00' -d mydb -f examples/04_ai_agent_one_off.sql
 *
 * Needs pg_dialer (pg_cron is not used).  One-shot per call_at: loading it again with
 * the same call_at adds nothing (dedupe keys); another call_at schedules two more calls.
 *
 * psql variables (-v name=value):
 *   provider   a provider of kind backend (default: example_ai_backend, created DISABLED:
 *              set its base_url and bearer_token, then enable it)
 *   call_at    when to call, a timestamptz (default: tomorrow 18:00 UTC; 'now' calls now)
 */
\set ON_ERROR_STOP 1
\if :{?provider}
\else
\set provider example_ai_backend
\endif
\if :{?call_at}
\else
SELECT to_char(((now() AT TIME ZONE 'UTC')::date + 1 + time '18:00'), 'YYYY-MM-DD HH24:MI:SS"+00"') AS call_at \gset
\endif

BEGIN;

INSERT INTO dialer.providers (name, kind, base_url, bearer_token, calls_per_second, max_concurrency, enabled)
VALUES ('example_ai_backend', 'backend', 'https://ai-calls.example.com', 'replace-with-your-backend-token', 5, 20, false)
ON CONFLICT (name) DO NOTHING;

-- DIRECT: the agent's script is ready.
SELECT dialer.enqueue_call(
	to_number	=> '+14155550123',
	run_at		=> :'call_at',
	provider	=> :'provider',
	payload		=> jsonb_build_object(
		'mode', 'DIRECT',
		'script', 'Hi Sam, this is Ava, the virtual assistant of Example Motors. Your 2021 Corolla is ready for pickup. '
				  'We are open until 6 pm today. Would you like me to book a pickup time?',
		'agent', 'ava',
		'language', 'en-US',
		'customer', jsonb_build_object('name', 'Sam Rivera', 'vehicle', '2021 Toyota Corolla')),
	campaign	=> 'ai_agent_example',
	dedupe_key	=> 'ai-agent-example:direct:' || (:'call_at'::timestamptz AT TIME ZONE 'UTC')::text,
	timezone	=> 'America/Los_Angeles',
	deadline	=> :'call_at'::timestamptz + interval '2 hours') AS direct_call_id;

-- BRIEF_START: the backend writes the script from a brief.
SELECT dialer.enqueue_call(
	to_number	=> '+14155550124',
	run_at		=> :'call_at',
	provider	=> :'provider',
	payload		=> jsonb_build_object(
		'mode', 'BRIEF_START',
		'purpose', 'Follow up on the service quote sent yesterday and offer to book the work.',
		'agent', 'ava',
		'language', 'en-US',
		'customer', jsonb_build_object('name', 'Jordan Lee', 'vehicle', '2018 Mazda CX-5'),
		'quote', jsonb_build_object('id', 'Q-2291', 'total_usd', 640, 'items', jsonb_build_array('front brake pads', 'rotor resurfacing'))),
	campaign	=> 'ai_agent_example',
	dedupe_key	=> 'ai-agent-example:brief:' || (:'call_at'::timestamptz AT TIME ZONE 'UTC')::text,
	timezone	=> 'America/Los_Angeles',
	deadline	=> :'call_at'::timestamptz + interval '2 hours') AS brief_call_id;

COMMIT;

SELECT id, mode, to_number, run_at, status
  FROM dialer.scheduled_calls
 WHERE campaign = 'ai_agent_example' AND run_at = :'call_at'::timestamptz
 ORDER BY id;

/*
 * Follow a call: SELECT dialer.call_details(<id>);   cancel it: SELECT dialer.cancel_call(<id>);
 */
