/*-------------------------------------------------------------------------
 *
 * dispatch_round.c
 *	  The dispatch round: for each enabled provider, claim what it may take
 *	  now and start those requests; then the reconciliation lookups and
 *	  searches that are due; and say when the queue must be looked at next.
 *
 *	  A claim is committed before its requests leave, and must also be on the
 *	  standbys dialer.standby_wait names (standby.h): when they have not
 *	  flushed it yet, the round is held with the claimed calls unsent, and
 *	  the dispatcher's loop goes on with everything else.  Once the standbys
 *	  have the claim, dispatch_round_resume() starts the calls and carries on
 *	  with the next provider; if the dispatcher must stop first, the claims
 *	  are given back (dispatch_round_give_back).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/dispatch_round.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "dispatch_round.h"
#include "http.h"
#include "pacing.h"
#include "provider.h"
#include "queue.h"
#include "results.h"
#include "settings.h"
#include "shmem.h"
#include "standby.h"

/*
 * What one dispatch round has found so far, passed between its steps.  It
 * lives in static storage (current), its lists in round_cxt: a round held for the
 * standbys goes on in a later turn of the dispatcher's loop.
 */
typedef struct DispatchRound
{
	int			cap;			/* requests the dispatcher may run at once */
	bool		woken;			/* the latch was set: something changed */
	TimestampTz now;
	TimestampTz next;			/* when to look again (0: when woken) */
	List	   *blocked;		/* names of providers that cannot take calls */
	int			claimed;		/* requests started in this round */
	TimestampTz search_token_at;	/* a search waits for this token */
	bool		more;			/* a claim came back full: more are due now */
	bool		slots_awaited;	/* a provider waits for its own requests */
	int			share;			/* the slots one provider may hold */
	int			next_provider;	/* the provider to claim for next (its index) */
	DialerProvider *held_provider;	/* whose claim waits for the standbys */
	List	   *held;			/* its claimed calls, not sent yet */
} DispatchRound;

static DispatchRound current;
static MemoryContext round_cxt = NULL;

/* when the next call falls due for reconciliation (0: none) */
static TimestampTz reconcile_at = 0;

/* no search for calls without a provider id was due at the last try: none before this */
static TimestampTz searches_idle_until = 0;

/* Lowers *next to t, when t is set and earlier (0 means "not set"). */
static void
earliest(TimestampTz *next, TimestampTz t)
{
	if (t != 0 && (*next == 0 || t < *next))
		*next = t;
}

/*
 * How many slots must be free before the loop claims again for waiting calls:
 * a fiftieth of them (2 of 100), so claims are not made one call at a time,
 * yet a slot freed by a slow provider does not wait long for others.  (A
 * twentieth kept W2 of make bench, 100 ms answers at concurrency 100, at 1.09
 * times its ideal time against 1.08, three runs each, back to back.)
 */
int
dispatch_refill_threshold(int cap)
{
	return Max(1, Min(dialer_batch_size, cap / 50));
}

/*
 * The most slots one claim (of calls, or of searches) may take: half of them,
 * so that the first requests leave while the rest are claimed and slots freed
 * together do not stay in lockstep.  Half rather than a quarter: a quarter
 * made twice as many claim transactions in a burst (805 against about 420 for
 * 20,000 calls at 100 slots), each with its commit and its statement's fixed
 * cost; all the slots at once made more, smaller stores.
 */
static int
claim_share(int cap)
{
	return Max(cap / 2, 1);
}

/* Notes a provider that cannot take calls in this round, until t (0: unknown). */
static void
note_blocked(DispatchRound *r, DialerProvider *p, TimestampTz t)
{
	r->blocked = lappend(r->blocked, p->name);
	earliest(&r->next, t);
}

/*
 * Starts the requests of claimed calls.  A call that cannot be sent at all
 * (no caller id, nothing to say, a base_url not allowed) fails at once.
 */
static void
start_calls(DialerProvider *p, List *calls)
{
	ListCell   *lc;

	foreach(lc, calls)
	{
		ClaimedCall *c = lfirst(lc);
		char	   *error = NULL;

		if (provider_start_call(p, c, &error) != NULL)
		{
			p->in_flight++;
			dialer_shared_count(&dialer_shared->dispatched, 1, http_in_flight());
		}
		else
			results_fail_unsendable(c, error);
	}
	http_kick();
}

/*
 * Claims as many due calls of provider p as the global concurrency, its
 * calls-per-second budget, its share of the slots and its max_concurrency
 * allow, and starts them once their claim is on the standbys.  False when
 * the standbys have not flushed the claim yet: the calls are held in the
 * round, unsent.
 */
static bool
claim_and_start(DispatchRound *r, DialerProvider *p)
{
	int			allowance;
	int			capacity;
	List	   *calls;

	pacing_refill_tokens(p, r->now);

	allowance = Min(dialer_batch_size, r->cap - http_in_flight());
	allowance = Min(allowance, claim_share(r->cap));
	allowance = Min(allowance, r->share - p->in_flight);
	allowance = Min(allowance, (int) p->tokens);
	if (allowance < 1)
	{
		if (p->tokens < 1)
			note_blocked(r, p, pacing_wait_for_token(p, r->now));
		else
		{
			note_blocked(r, p, 0);
			r->slots_awaited = true;	/* slots free up when requests finish */
		}
		return true;
	}

	calls = queue_claim(p, allowance, &capacity);
	if (capacity == 0)
	{
		/* at max_concurrency: look again in 1 s, or when a callback wakes us */
		note_blocked(r, p, pacing_at_capacity(p, r->now));
		return true;
	}
	pacing_took_calls(p, list_length(calls), r->now);
	r->claimed += list_length(calls);
	if (list_length(calls) == Min(allowance, capacity))
		r->more = true;

	/*
	 * XactLastCommitEnd is the end of the claim's own commit record, just
	 * written by queue_claim (synchronous_commit = on: flushed locally):
	 * exactly what a standby must hold to know the calls were claimed.
	 * XactLastRecEnd is already reset by the commit, and
	 * pg_current_wal_flush_lsn() would add other sessions' WAL and wait
	 * longer than needed.
	 */
	if (calls != NIL && !standby_hold_begin(XactLastCommitEnd, list_length(calls)))
	{
		r->held_provider = p;
		r->held = calls;
		return false;
	}
	start_calls(p, calls);
	return true;
}

/*
 * Claims and starts calls for each enabled provider from the round's next
 * one on.  False when a claim is held for the standbys.
 */
static bool
claim_for_providers(DispatchRound *r)
{
	List	   *providers = pacing_providers();

	while (r->next_provider < list_length(providers))
	{
		DialerProvider *p = list_nth(providers, r->next_provider++);
		TimestampTz blocked_until;

		if (!p->seen)
			continue;
		blocked_until = pacing_blocked_until(p, r->now, r->woken);
		if (blocked_until != 0)
			note_blocked(r, p, blocked_until);
		else if (!claim_and_start(r, p))
			return false;
	}
	return true;
}

/*
 * Calls whose provider's word is overdue and that have a provider call id:
 * looked up at their provider, as many as there are free slots (at most 100).
 */
static void
start_lookups(DispatchRound *r)
{
	List	   *todo;
	ListCell   *lc;

	if (r->cap - http_in_flight() <= 0)
		return;
	todo = queue_claim_reconciliations(Min(100, r->cap - http_in_flight()));
	foreach(lc, todo)
	{
		ClaimedCall *c = lfirst(lc);
		DialerProvider *p = pacing_seen_provider(c->provider);

		if (p == NULL)
			continue;
		provider_start_lookup(p, c);
		r->claimed++;
	}
}

/*
 * Unknown calls without a provider call id: searched for at their provider by
 * what was sent.  A search is a request like a call: it takes a free slot and
 * one of the provider's calls-per-second tokens (what the due calls left of
 * them); without a token the round comes back when the next one is due.
 */
static void
start_searches(DispatchRound *r)
{
	bool		tried = false;
	int			found = 0;
	ListCell   *lc;

	foreach(lc, pacing_providers())
	{
		DialerProvider *p = lfirst(lc);
		int			allowance;
		List	   *todo;
		ListCell   *tc;

		if (!p->seen || !provider_can_search(p) ||
			(p->blocked_until > r->now && !p->at_capacity))
			continue;
		pacing_refill_tokens(p, r->now);
		if (p->tokens < 1)
		{
			earliest(&r->search_token_at, pacing_next_token_at(p, r->now));
			continue;
		}
		allowance = Min((int) p->tokens, r->cap - http_in_flight());
		allowance = Min(allowance, claim_share(r->cap));
		if (allowance < 1)
			continue;
		todo = queue_claim_searches(p, allowance);
		tried = true;
		found += list_length(todo);
		foreach(tc, todo)
		{
			provider_start_search(p, lfirst(tc));
			p->tokens -= 1;
			r->claimed++;
		}
		if (list_length(todo) == allowance)
			r->more = true;
	}

	/*
	 * Nothing to search for (what is due is a lookup by provider id): do not
	 * ask again for a second, whatever the rounds in between.
	 */
	if (tried && found == 0)
		searches_idle_until = TimestampTzPlusMilliseconds(r->now, 1000);
}

/*
 * When the dispatcher should next look at the queue, at the end of a round
 * (0: only when woken or when slots free up).
 */
static TimestampTz
next_look(DispatchRound *r)
{
	TimestampTz due;

	earliest(&r->next, r->search_token_at);

	/*
	 * When some provider still has due calls it could not take, the loop
	 * comes back as soon as slots free up: no need to ask when the next call
	 * is due.
	 */
	if ((r->more || r->slots_awaited) && r->next == 0)
		return 0;

	due = queue_next_due(r->blocked, &reconcile_at);

	/*
	 * Calls due now that this round could not claim (rows locked by another
	 * session, a provider not loaded yet): look again shortly, not at once.
	 */
	if (due != 0 && due <= r->now && r->claimed == 0)
		due = TimestampTzPlusMilliseconds(r->now, 100);
	earliest(&r->next, due);
	if (reconcile_at != 0 && reconcile_at <= r->now && r->claimed == 0)
		reconcile_at = r->search_token_at != 0 ? r->search_token_at :
			TimestampTzPlusMilliseconds(r->now, 1000);
	earliest(&r->next, reconcile_at);
	return r->next;
}

/*
 * Takes the round from its next provider to its end: claims and starts
 * calls, then the lookups and searches that are due, and fills in what the
 * round found.  False when a claim is held for the standbys.
 */
static bool
go_on(DispatchRound *r, RoundResult *result)
{
	MemoryContext old = MemoryContextSwitchTo(round_cxt);

	if (!claim_for_providers(r))
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	if (reconcile_at != 0 && reconcile_at <= r->now)
	{
		start_lookups(r);
		if (searches_idle_until <= r->now)
			start_searches(r);
	}
	result->more_due = r->more;
	result->slots_awaited = r->slots_awaited;
	result->next = next_look(r);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Runs a dispatch round with cap requests at most in flight; woken says the
 * latch was set since the last round.  Returns true with *result filled in
 * when the round is over; false when a claim is held for the standbys (then
 * dispatch_round_resume() or dispatch_round_give_back() comes next).
 */
bool
dispatch_round_run(int cap, bool woken, RoundResult *result)
{
	ListCell   *lc;
	int			n_seen = 0;

	Assert(current.held == NIL);
	if (round_cxt == NULL)
		round_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer dispatch round",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(round_cxt);
	memset(&current, 0, sizeof(current));
	current.cap = cap;
	current.woken = woken;
	current.now = GetCurrentTimestamp();

	foreach(lc, pacing_providers())
	{
		if (((DialerProvider *) lfirst(lc))->seen)
			n_seen++;
	}
	current.share = n_seen > 1 ? Max(cap * 3 / 4, 1) : cap;
	return go_on(&current, result);
}

/*
 * The standbys have flushed the held claim: starts its calls and takes the
 * round on from the next provider.  Returns as dispatch_round_run() does.
 */
bool
dispatch_round_resume(RoundResult *result)
{
	List	   *calls = current.held;
	MemoryContext old;

	/* no longer held: an error from here on must not give them back */
	current.held = NIL;
	old = MemoryContextSwitchTo(round_cxt);
	start_calls(current.held_provider, calls);
	MemoryContextSwitchTo(old);
	current.held_provider = NULL;
	return go_on(&current, result);
}

/*
 * Gives back a claim held for the standbys, when the dispatcher must stop
 * (or start over) before they have flushed it: its calls are scheduled again
 * as they were (dialer.release_claims), since no request of theirs left.
 * Nothing when no claim is held.
 */
void
dispatch_round_give_back(void)
{
	if (current.held == NIL)
		return;
	standby_hold_abandon();
	queue_release(current.held);
	current.held = NIL;
	current.held_provider = NULL;
}
