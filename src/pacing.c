/*-------------------------------------------------------------------------
 *
 * pacing.c
 *	  The pacing of providers: the dispatcher's list of providers, reloaded
 *	  when dialer.providers changes, and for each the state that decides when
 *	  it may take calls: its calls-per-second bucket, a pause after a streak
 *	  of failures, and a stall at its max_concurrency while calls are due.
 *	  Also what dialer.provider_status() and worker_status() show of it.
 *
 *	  The providers live in TopMemoryContext and are never freed: a request
 *	  in flight and a claim held for the standbys point at theirs.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/pacing.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "pgtime.h"
#include "utils/timestamp.h"

#include "pacing.h"
#include "queue.h"
#include "settings.h"
#include "shmem.h"

/* how many failures in a row pause a provider */
#define STREAK_PAUSE	5

static List *providers = NIL;
static TimestampTz providers_loaded_at = 0;
static uint32 providers_version = 0;

/* The providers as last loaded (disabled or deleted ones have seen = false). */
List *
pacing_providers(void)
{
	return providers;
}

/* The enabled provider of that name, or NULL. */
DialerProvider *
pacing_seen_provider(const char *name)
{
	ListCell   *lc;

	foreach(lc, providers)
	{
		DialerProvider *p = lfirst(lc);

		if (p->seen && strcmp(p->name, name) == 0)
			return p;
	}
	return NULL;
}

/*
 * A fingerprint of where a provider's requests go and what they are signed
 * with: its URL and credentials.
 */
static uint32
provider_endpoint_hash(DialerProvider *p)
{
	const char *parts[] = {p->base_url, p->account_sid, p->auth_token,
	p->api_key_sid, p->api_key_secret, p->bearer_token};
	uint32		h = 0;
	size_t		i;

	for (i = 0; i < lengthof(parts); i++)
		h = hash_combine(h, parts[i] ? hash_bytes((const unsigned char *) parts[i], strlen(parts[i])) : 0);
	return h;
}

/*
 * After the providers were reloaded: a provider in a failure streak whose URL
 * or credentials changed (an operator fixing what made its requests fail) is
 * no longer paused, and its streak starts over.  Each provider keeps the
 * fingerprint of its last load to tell.
 */
static void
end_streaks_of_changed_providers(void)
{
	ListCell   *lc;

	foreach(lc, providers)
	{
		DialerProvider *p = lfirst(lc);
		uint32		h = provider_endpoint_hash(p);

		if (h == p->endpoint_hash)
			continue;
		if (p->consecutive_failures > 0)
		{
			ereport(LOG,
					(errmsg("pg_dialer: provider \"%s\" resumed: its URL or credentials changed after %d consecutive failures",
							p->name, p->consecutive_failures)));
			p->consecutive_failures = 0;
			if (!p->at_capacity)
				p->blocked_until = 0;
		}
		p->endpoint_hash = h;
	}
}

/* Makes the next pacing_reload_if_changed() load the providers (SIGHUP). */
void
pacing_reload_soon(void)
{
	providers_loaded_at = 0;
}

/*
 * Reloads the providers when a change to dialer.providers committed, and at
 * least every 10 s while the dispatcher is active.
 */
void
pacing_reload_if_changed(TimestampTz now)
{
	uint32		version;

	SpinLockAcquire(&dialer_shared->mutex);
	version = dialer_shared->providers_version;
	SpinLockRelease(&dialer_shared->mutex);
	if (providers_loaded_at == 0 || version != providers_version ||
		TimestampDifferenceExceeds(providers_loaded_at, now, 10000))
	{
		providers_version = version;
		providers = queue_load_providers(providers);
		providers_loaded_at = now;
		end_streaks_of_changed_providers();
	}
}

/* Refills the provider's calls-per-second bucket (at most a second's worth). */
void
pacing_refill_tokens(DialerProvider *p, TimestampTz now)
{
	double		burst = Max(1.0, p->calls_per_second);

	p->tokens = Min(burst, p->tokens + p->calls_per_second *
					(double) (now - p->tokens_at) / USECS_PER_SEC);
	p->tokens_at = now;
}

/* When the provider's next calls-per-second token is there. */
TimestampTz
pacing_next_token_at(DialerProvider *p, TimestampTz now)
{
	return TimestampTzPlusMilliseconds(now,
									   (int) Max(1.0, (1.0 - p->tokens) * 1000.0 / p->calls_per_second));
}

/*
 * Whether the provider is blocked now: returns the end of its block, or 0
 * when it may take calls (its block, if any, is then over).  A wake-up (a
 * final status, a new call) may have freed a slot: it lifts a block at
 * max_concurrency, not a pause after failures.
 */
TimestampTz
pacing_blocked_until(DialerProvider *p, TimestampTz now, bool woken)
{
	if (woken && p->at_capacity)
		p->blocked_until = 0;
	if (p->blocked_until > now)
		return p->blocked_until;
	p->blocked_until = 0;
	p->at_capacity = false;
	return 0;
}

/* Blocks the provider until its next calls-per-second token; returns when. */
TimestampTz
pacing_wait_for_token(DialerProvider *p, TimestampTz now)
{
	p->blocked_until = pacing_next_token_at(p, now);
	return p->blocked_until;
}

/*
 * A provider at its max_concurrency while calls of its are due: its calls in
 * progress hold every slot until a status callback ends one, or until one has
 * had no news for dialer.reconcile_after (then it stops counting and is
 * looked up).  Without callbacks arriving (webhooks not set up) that is a
 * stall the user should hear about: worker_status() says so while it lasts
 * (pacing_publish_stall), and the server log once, after a third of
 * dialer.reconcile_after with no slot freed.
 */
static void
note_stall(DialerProvider *p, TimestampTz now)
{
	int			due;
	TimestampTz frees_at;

	queue_provider_stall(p, &due, &frees_at);
	if (due == 0)
	{
		p->stalled_since = 0;
		p->stall_warned = false;
		return;
	}
	if (p->stalled_since == 0)
		p->stalled_since = now;
	p->stalled_due = due;
	p->stall_frees_at = frees_at;
	if (!p->stall_warned &&
		TimestampDifferenceExceeds(p->stalled_since, now, dialer_reconcile_after_s * 1000 / 3))
	{
		ereport(WARNING,
				(errmsg("pg_dialer: provider \"%s\" has been at its max_concurrency (%d) for %ld s while %d%s call(s) are due",
						p->name, p->max_concurrency, (long) ((now - p->stalled_since) / USECS_PER_SEC),
						due, due >= 10000 ? " or more" : ""),
				 errdetail("Its calls in progress hold every slot until a status callback ends one, or until one has had no news for dialer.reconcile_after (%d s): the first slot frees by itself at %s.",
						   dialer_reconcile_after_s,
						   frees_at != 0 ? timestamptz_to_str(frees_at) : "once reconciliation has looked its calls up"),
				 errhint("Check that the provider's status callbacks reach the webhook endpoint (README, \"Webhooks\"); or raise dialer.providers.max_concurrency.")));
		p->stall_warned = true;
	}
}

/*
 * The provider is at its max_concurrency: blocked for 1 s (or until a
 * callback wakes the dispatcher), and a stall noted when calls of its are
 * due.  Returns the end of the block.
 */
TimestampTz
pacing_at_capacity(DialerProvider *p, TimestampTz now)
{
	p->at_capacity = true;
	p->blocked_until = TimestampTzPlusMilliseconds(now, 1000);
	note_stall(p, now);
	return p->blocked_until;
}

/*
 * The provider took n calls: they use up its tokens, and its stall, if any,
 * is over.
 */
void
pacing_took_calls(DialerProvider *p, int n, TimestampTz now)
{
	if (p->stalled_since != 0 && p->stall_warned)
		ereport(LOG,
				(errmsg("pg_dialer: provider \"%s\" takes calls again after %ld s at its max_concurrency",
						p->name, (long) ((now - p->stalled_since) / USECS_PER_SEC))));
	p->stalled_since = 0;
	p->stall_warned = false;
	p->tokens -= n;
}

/*
 * A request of the provider ended with this outcome: adjusts its failure
 * streak.  After 5 failures in a row the provider is paused (1 s, doubling,
 * at most 60 s), so it cannot hold every slot while others wait.
 */
void
pacing_note_result(DialerProvider *p, DialerOutcome *out)
{
	p->in_flight--;
	if (strcmp(out->outcome, "accepted") == 0)
	{
		if (p->consecutive_failures >= STREAK_PAUSE)
			ereport(LOG,
					(errmsg("pg_dialer: provider \"%s\" resumed: a request succeeded after %d consecutive failures",
							p->name, p->consecutive_failures)));
		p->consecutive_failures = 0;
	}
	else if (strcmp(out->outcome, "retry") == 0 || out->http_status == 0)
		p->consecutive_failures++;

	if (p->consecutive_failures >= STREAK_PAUSE)
	{
		int			pause_ms = 1000 << Min(p->consecutive_failures - STREAK_PAUSE, 6);

		p->blocked_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Min(pause_ms, 60000));
		p->at_capacity = false; /* a failure pause is not lifted by a wake-up */
		/* the first pause of a streak, then every tenth failure */
		if (p->consecutive_failures == STREAK_PAUSE || p->consecutive_failures % 10 == 0)
			ereport(WARNING,
					(errmsg("pg_dialer: provider \"%s\" paused for %d ms after %d consecutive failures",
							p->name, Min(pause_ms, 60000), p->consecutive_failures),
					 errdetail("Last error: %s", out->error_message ? out->error_message : out->outcome),
					 errhint("See dialer.provider_health for its state; it resumes by itself when a request succeeds.")));
	}
}

/* The first enabled provider stalled at its max_concurrency, or NULL. */
static DialerProvider *
first_stalled_provider(void)
{
	ListCell   *lc;

	foreach(lc, providers)
	{
		DialerProvider *p = lfirst(lc);

		if (p->seen && p->at_capacity && p->stalled_since != 0)
			return p;
	}
	return NULL;
}

/*
 * When a provider's calls wait for its max_concurrency to free up, publishes
 * that as the dispatcher's state (rather than "idle"): which provider, its
 * limit, how many calls wait, and what frees a slot.  False when no provider
 * is stalled.
 */
bool
pacing_publish_stall(void)
{
	DialerProvider *p = first_stalled_provider();
	char		state[DIALER_STATE_LEN];
	char		at[64] = "";

	if (p == NULL)
		return false;
	if (p->stall_frees_at != 0)
	{
		pg_time_t	t = timestamptz_to_time_t(p->stall_frees_at);

		pg_strftime(at, sizeof(at), " (%H:%M:%S UTC)", pg_gmtime(&t));
	}
	snprintf(state, sizeof(state),
			 "waiting: provider %s at max_concurrency %d (%d%s calls due) until a status callback or reconciliation%s frees a slot",
			 p->name, p->max_concurrency, p->stalled_due, p->stalled_due >= 10000 ? "+" : "", at);
	dialer_shared_set_state(state);
	return true;
}

/*
 * Publishes each provider's pacing state for dialer.provider_status().
 */
void
pacing_publish_providers(void)
{
	ListCell   *lc;
	int			n = 0;

	SpinLockAcquire(&dialer_shared->mutex);
	foreach(lc, providers)
	{
		DialerProvider *p = lfirst(lc);
		DialerProviderState *st;

		if (!p->seen || n >= DIALER_MAX_PUBLISHED_PROVIDERS)
			continue;
		st = &dialer_shared->providers[n++];
		strlcpy(st->name, p->name, NAMEDATALEN);
		st->in_flight = p->in_flight;
		st->calls_per_second = p->calls_per_second;
		st->tokens = p->tokens;
		st->consecutive_failures = p->consecutive_failures;
		st->paused_until = p->consecutive_failures >= STREAK_PAUSE ? p->blocked_until : 0;
		st->at_capacity = p->at_capacity;
	}
	dialer_shared->n_providers = n;
	SpinLockRelease(&dialer_shared->mutex);
}
