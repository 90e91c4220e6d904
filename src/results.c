/*-------------------------------------------------------------------------
 *
 * results.c
 *	  The storing of outcomes: what finished requests came to, collected from
 *	  the HTTP engine, kept in a batch and stored together.  A call's request
 *	  gives an outcome (accepted, retry, failed, unknown) for
 *	  dialer.record_results(), a reconciliation lookup or search a report
 *	  of its answer (read by the provider's kind) for
 *	  dialer.apply_reconciliation() or dialer.apply_search().
 *
 *	  The batch lives in its own memory context, which survives the
 *	  dispatcher's error recovery: outcomes a failed store could not write
 *	  are stored with the next batch.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/results.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "call_outcome.h"
#include "http.h"
#include "pacing.h"
#include "provider.h"
#include "queue.h"
#include "results.h"
#include "settings.h"
#include "shmem.h"

/* outcomes waiting to be stored */
static DialerOutcome *outcomes = NULL;
static int	n_outcomes = 0;
static int	max_outcomes = 0;
static TimestampTz oldest_outcome = 0;
static MemoryContext outcome_cxt = NULL;

/* answers to reconciliation lookups waiting to be applied (in outcome_cxt) */
static List *lookups = NIL;

/* Creates the batch's memory context (once, when the dispatcher starts). */
void
results_init(void)
{
	outcome_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer outcomes", ALLOCSET_DEFAULT_SIZES);
}

/* Adds an outcome to the batch waiting to be stored (in outcome_cxt). */
static DialerOutcome *
new_outcome(void)
{
	MemoryContext old = MemoryContextSwitchTo(outcome_cxt);
	DialerOutcome *out;

	if (n_outcomes == max_outcomes)
	{
		max_outcomes = max_outcomes ? max_outcomes * 2 : 256;
		outcomes = outcomes ? repalloc(outcomes, sizeof(DialerOutcome) * max_outcomes)
			: palloc(sizeof(DialerOutcome) * max_outcomes);
	}
	MemoryContextSwitchTo(old);
	if (n_outcomes == 0)
		oldest_outcome = GetCurrentTimestamp();
	out = &outcomes[n_outcomes++];
	memset(out, 0, sizeof(DialerOutcome));
	return out;
}

/* Whether outcomes or lookup answers wait to be stored. */
bool
results_waiting(void)
{
	return n_outcomes > 0 || lookups != NIL;
}

/* Whether the waiting outcomes fill a batch (dialer.batch_size). */
bool
results_batch_full(void)
{
	return n_outcomes >= dialer_batch_size;
}

/* Whether the oldest waiting result has waited more than ms milliseconds. */
bool
results_older_than(int ms)
{
	return results_waiting() &&
		TimestampDifferenceExceeds(oldest_outcome, GetCurrentTimestamp(), ms);
}

/* Stores the waiting outcomes and lookup answers, then frees them. */
void
results_store(void)
{
	if (!results_waiting())
		return;
	queue_store(outcomes, n_outcomes);
	queue_store_lookups(lookups);
	lookups = NIL;
	n_outcomes = 0;
	max_outcomes = 0;
	outcomes = NULL;
	MemoryContextReset(outcome_cxt);
}

/*
 * Keeps what a lookup or search found, as its provider's kind reports it, to
 * be applied by dialer.apply_reconciliation() or dialer.apply_search() with
 * the next batch.
 */
static void
keep_lookup_answer(DialerRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(outcome_cxt);
	LookupResult *r = palloc0(sizeof(LookupResult));

	r->call_id = req->call.id;
	if (req->call.search)
		r->search = pstrdup(req->call.search);
	else
		r->provider_call_id = pstrdup(req->call.provider_call_id);
	r->http_status = req->http.completed ? (int) req->http.status : 0;
	r->report = provider_read_answer(req);
	if (!results_waiting())
		oldest_outcome = GetCurrentTimestamp();
	lookups = lappend(lookups, r);
	MemoryContextSwitchTo(old);
}

/*
 * Counts a call's outcome in the published counters (and its error), and
 * lets the provider's pacing see it.
 */
static void
note_outcome(DialerProvider *p, DialerOutcome *out)
{
	if (strcmp(out->outcome, "accepted") == 0)
		dialer_shared_count(&dialer_shared->accepted, 1, http_in_flight());
	else if (strcmp(out->outcome, "retry") == 0)
		dialer_shared_count(&dialer_shared->retried, 1, http_in_flight());
	else
		dialer_shared_count(&dialer_shared->failed, 1, http_in_flight());
	if (out->error_message && strcmp(out->outcome, "accepted") != 0)
		dialer_shared_set_error("call " INT64_FORMAT ": %s", out->call_id, out->error_message);
	pacing_note_result(p, out);
}

/*
 * Records what became of a request that ended: a lookup's answer is kept; a
 * call's answer goes to its provider, which says what happened (or sets up
 * the call's next phase, sent at once unless the dispatcher is stopping).
 */
static void
finish_request(DialerRequest *req, bool stopping)
{
	MemoryContext old;
	DialerOutcome *out;
	ProviderVerdict verdict;

	if (req->lookup)
	{
		keep_lookup_answer(req);
		provider_release(req);
		return;
	}

	out = new_outcome();
	old = MemoryContextSwitchTo(outcome_cxt);
	verdict = provider_finish(req, out);
	if (verdict == VERDICT_NEXT_PHASE && stopping)
	{
		/* the first phase was answered, the call not started */
		outcome_stopped_between_phases(out);
		verdict = VERDICT_DONE;
	}
	MemoryContextSwitchTo(old);
	if (verdict == VERDICT_NEXT_PHASE)
	{
		n_outcomes--;
		provider_continue(req);
		return;
	}
	note_outcome(req->provider, out);
	provider_release(req);
}

/*
 * Collects every finished request into the batch.  While the dispatcher is
 * stopping, a call with a second phase to send ends after its first.
 */
void
results_collect(bool stopping)
{
	HttpRequest *http;

	while ((http = http_next_done()) != NULL)
		finish_request(dialer_request(http), stopping);
}

/*
 * A call that cannot be sent at all fails at once: its outcome waits with
 * the others to be stored.
 */
void
results_fail_unsendable(ClaimedCall *c, const char *error)
{
	DialerOutcome *out = new_outcome();
	MemoryContext old = MemoryContextSwitchTo(outcome_cxt);

	out->call_id = c->id;
	out->attempt = c->attempt;
	outcome_not_sendable(out, error);
	MemoryContextSwitchTo(old);
	dialer_shared_count(&dialer_shared->failed, 1, http_in_flight());
	dialer_shared_set_error("call " INT64_FORMAT ": %s", c->id, error);
}

/*
 * At shutdown, the requests still in flight are abandoned: unknown for a
 * provider where a re-send is not safe (it may have placed the call), retry
 * for providers that dedupe by Idempotency-Key.  A lookup has nothing
 * to record: the call is looked up again later.
 */
void
results_abandon_in_flight(void)
{
	HttpRequest *http;

	while ((http = http_first_in_flight()) != NULL)
	{
		DialerRequest *req = dialer_request(http);
		MemoryContext old;
		DialerOutcome *out;

		if (req->lookup)
		{
			provider_release(req);
			continue;
		}
		out = new_outcome();
		old = MemoryContextSwitchTo(outcome_cxt);
		out->call_id = req->call.id;
		out->attempt = req->call.attempt;
		outcome_abandoned(out, provider_resend_safe(req->provider));
		MemoryContextSwitchTo(old);
		provider_release(req);
	}
}
