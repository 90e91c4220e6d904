/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dispatcher: a background worker that claims due calls, sends them
 *	  through the HTTP engine and stores what the providers answered.
 *
 *	  It sleeps on its latch: enqueue_call sets it when its transaction commits,
 *	  and otherwise the worker wakes when the next call is due.  While requests
 *	  are in flight it waits on their sockets instead.  A call is claimed and
 *	  committed before its request leaves; a call the worker may have sent but
 *	  whose outcome it never stored is found 'dispatching' by the next worker
 *	  and becomes 'unknown', never re-sent.
 *
 *	  With streaming standbys, a claim must also be on the standbys that could
 *	  be promoted before its requests leave (dialer.standby_wait): otherwise a
 *	  failover would find the call 'scheduled' and dial it again.  The worker
 *	  runs only on a primary; after a promotion the new primary's worker finds
 *	  the claims that reached it 'dispatching' and makes them 'unknown'.
 *
 *	  The worker talks to providers through provider.h (which places each
 *	  call through the HTTP engine and reads its answer), to the tables
 *	  through queue.h, and drives the HTTP engine's waiting itself.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "pgtime.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "call_outcome.h"
#include "http.h"
#include "provider.h"
#include "queue.h"
#include "settings.h"
#include "shmem.h"
#include "standby.h"
#include "worker.h"

/* set by the SIGTERM handler: finish in-flight requests, then exit */
static volatile sig_atomic_t shutdown_requested = false;

/* outcomes waiting to be stored */
static DialerOutcome *outcomes = NULL;
static int	n_outcomes = 0;
static int	max_outcomes = 0;
static TimestampTz oldest_outcome = 0;
static MemoryContext outcome_cxt = NULL;

/* answers to reconciliation lookups waiting to be applied (in outcome_cxt) */
static List *lookups = NIL;

static List *providers = NIL;
static TimestampTz providers_loaded_at = 0;
static uint32 providers_version = 0;

/* when the next call falls due for reconciliation (0: none) */
static TimestampTz reconcile_at = 0;

/* no search for calls without a provider id was due at the last try: none before this */
static TimestampTz searches_idle_until = 0;

/* set on SIGHUP: the calling-window settings may have changed */
static bool settings_reloaded = false;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Clears what the worker published about itself, when it exits (the slot
 * stays assigned to the database: the launcher decides what comes next).
 */
static void
worker_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	if (dialer_shared == NULL)
		return;
	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->worker_pid = 0;
	dialer_shared->worker_procno = -1;
	dialer_shared->in_flight = 0;
	dialer_shared->n_providers = 0;
	strlcpy(dialer_shared->state, dialer_shared->no_extension ? "no extension" : "stopped",
			DIALER_STATE_LEN);
	SpinLockRelease(&dialer_shared->mutex);
	ereport(LOG,
			(errmsg("pg_dialer dispatcher for database \"%s\" stopped", dialer_shared->database)));
}

/*
 * Publishes each provider's pacing state for dialer.provider_status().
 */
static void
publish_providers(void)
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
		st->paused_until = p->consecutive_failures >= 5 ? p->blocked_until : 0;
		st->at_capacity = p->at_capacity;
	}
	dialer_shared->n_providers = n;
	SpinLockRelease(&dialer_shared->mutex);
}

/*
 * Exits when the extension is not (or no longer) created in the database:
 * the launcher starts a dispatcher again when CREATE EXTENSION commits.
 */
static void
exit_without_extension(void)
{
	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->no_extension = true;
	SpinLockRelease(&dialer_shared->mutex);
	ereport(LOG,
			(errmsg("pg_dialer dispatcher for database \"%s\" exiting: the extension pg_dialer is not created there",
					dialer_shared->database),
			 errhint("CREATE EXTENSION pg_dialer in that database starts a dispatcher again.")));
	proc_exit(0);
}

/* the schema version the dispatcher last warned about, while it waits for an update */
static char awaited_update_from[NAMEDATALEN] = "";

/*
 * Whether the extension's schema in this database is the one this library
 * was built for.  The library's SQL (claims, stores, recovery) is written for
 * its own schema: a new library installed and loaded before ALTER EXTENSION
 * pg_dialer UPDATE would fail on the old tables.
 */
static bool
schema_matches_library(const char *schema_version)
{
	return strcmp(schema_version, PG_DIALER_VERSION) == 0;
}

/*
 * Waits about 2 s for ALTER EXTENSION pg_dialer UPDATE, touching nothing in the
 * queue: publishes the reason in worker_status() and warns once per schema
 * version seen.  Returns early on a signal (SIGTERM, SIGHUP) or a wake-up, so
 * the loop handles it; the caller checks the version again.
 */
static void
wait_for_extension_update(const char *schema_version)
{
	char		state[DIALER_STATE_LEN];

	snprintf(state, sizeof(state),
			 "waiting for ALTER EXTENSION pg_dialer UPDATE (schema %s, library %s)",
			 schema_version, PG_DIALER_VERSION);
	dialer_shared_set_state(state);
	if (strcmp(awaited_update_from, schema_version) != 0)
	{
		strlcpy(awaited_update_from, schema_version, sizeof(awaited_update_from));
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_dialer dispatcher for database \"%s\" is waiting: the extension's schema is version %s, the library is version %s",
						dialer_shared->database, schema_version, PG_DIALER_VERSION),
				 errdetail("No call is dispatched, recovered or changed until the schema matches the library."),
				 errhint("Run ALTER EXTENSION pg_dialer UPDATE in database \"%s\".",
						 dialer_shared->database)));
	}
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 2000L, PG_WAIT_EXTENSION);
}

/*
 * Logs that the schema now matches the library, when the dispatcher waited
 * for ALTER EXTENSION pg_dialer UPDATE: dispatching resumes.
 */
static void
note_extension_updated(void)
{
	if (awaited_update_from[0] == '\0')
		return;
	ereport(LOG,
			(errmsg("pg_dialer dispatcher for database \"%s\": the extension was updated from %s to %s, dispatching resumes",
					dialer_shared->database, awaited_update_from, PG_DIALER_VERSION)));
	awaited_update_from[0] = '\0';
}

/* Adds n to one of the published counters, with the requests in flight. */
static void
count(uint64 *counter, int n)
{
	SpinLockAcquire(&dialer_shared->mutex);
	*counter += n;
	dialer_shared->in_flight = http_in_flight();
	SpinLockRelease(&dialer_shared->mutex);
}

/* Adds an outcome to the batch waiting to be stored. */
static DialerOutcome *
new_outcome(void)
{
	if (n_outcomes == max_outcomes)
	{
		MemoryContext old = MemoryContextSwitchTo(outcome_cxt);

		max_outcomes = max_outcomes ? max_outcomes * 2 : 256;
		outcomes = outcomes ? repalloc(outcomes, sizeof(DialerOutcome) * max_outcomes)
			: palloc(sizeof(DialerOutcome) * max_outcomes);
		MemoryContextSwitchTo(old);
	}
	if (n_outcomes == 0)
		oldest_outcome = GetCurrentTimestamp();
	memset(&outcomes[n_outcomes], 0, sizeof(DialerOutcome));
	return &outcomes[n_outcomes++];
}

/* Whether outcomes or lookup answers wait to be stored. */
static bool
results_waiting(void)
{
	return n_outcomes > 0 || lookups != NIL;
}

/* Stores the waiting outcomes and lookup answers, then frees them. */
static void
flush_outcomes(void)
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
 * Keeps the provider's answer to a lookup or search, to be applied by
 * dialer.apply_reconciliation() or dialer.apply_search() with the next batch.
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
	if (req->http.completed)
		r->body = pstrdup(req->http.response.data);
	else
		r->error = pstrdup(req->http.error);
	if (!results_waiting())
		oldest_outcome = GetCurrentTimestamp();
	lookups = lappend(lookups, r);
	MemoryContextSwitchTo(old);
}

/*
 * Counts an outcome and adjusts its provider's failure streak: after 5
 * failures in a row the provider is paused (1 s, doubling, at most 60 s), so
 * it cannot hold every slot while others wait.
 */
static void
note_provider_result(DialerProvider *p, DialerOutcome *out)
{
	p->in_flight--;
	if (strcmp(out->outcome, "accepted") == 0)
	{
		if (p->consecutive_failures >= 5)
			ereport(LOG,
					(errmsg("pg_dialer: provider \"%s\" resumed: a request succeeded after %d consecutive failures",
							p->name, p->consecutive_failures)));
		p->consecutive_failures = 0;
		count(&dialer_shared->accepted, 1);
	}
	else if (strcmp(out->outcome, "retry") == 0)
	{
		p->consecutive_failures++;
		count(&dialer_shared->retried, 1);
	}
	else
	{
		if (out->http_status == 0)
			p->consecutive_failures++;
		count(&dialer_shared->failed, 1);
	}
	if (out->error_message && strcmp(out->outcome, "accepted") != 0)
		dialer_shared_set_error("call " INT64_FORMAT ": %s", out->call_id, out->error_message);

	if (p->consecutive_failures >= 5)
	{
		int			pause_ms = 1000 << Min(p->consecutive_failures - 5, 6);

		p->blocked_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), Min(pause_ms, 60000));
		p->at_capacity = false; /* a failure pause is not lifted by a wake-up */
		/* the first pause of a streak, then every tenth failure */
		if (p->consecutive_failures == 5 || p->consecutive_failures % 10 == 0)
			ereport(WARNING,
					(errmsg("pg_dialer: provider \"%s\" paused for %d ms after %d consecutive failures",
							p->name, Min(pause_ms, 60000), p->consecutive_failures),
					 errdetail("Last error: %s", out->error_message ? out->error_message : out->outcome),
					 errhint("See dialer.provider_health for its state; it resumes by itself when a request succeeds.")));
	}
}

/*
 * Records what became of a request that ended: a lookup's answer is kept; a
 * call's answer goes to its provider, which says what happened (or sets up
 * the call's next phase, sent at once unless the worker is stopping).
 */
static void
finish_request(DialerRequest *req)
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

	old = MemoryContextSwitchTo(outcome_cxt);
	out = new_outcome();
	verdict = provider_finish(req, out);
	if (verdict == VERDICT_NEXT_PHASE && shutdown_requested)
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
	note_provider_result(req->provider, out);
	provider_release(req);
}

/* Collects every finished request. */
static void
collect_finished(void)
{
	HttpRequest *http;

	while ((http = http_next_done()) != NULL)
		finish_request(dialer_request(http));
}

/* Publishes (since != 0) or clears what claimed calls wait for. */
static void
publish_standby_wait(TimestampTz since, XLogRecPtr lsn)
{
	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->standby_wait_since = since;
	dialer_shared->standby_wait_lsn = lsn;
	strlcpy(dialer_shared->state, since != 0 ? "waiting for standbys" : "dispatching",
			DIALER_STATE_LEN);
	SpinLockRelease(&dialer_shared->mutex);
}

/*
 * Waits until the claim whose commit record ends at lsn is flushed by the
 * standbys dialer.standby_wait names, before any request of the claim leaves.
 * With synchronous replication the commit itself waited for the synchronous
 * standbys (the worker commits with synchronous_commit = on, i.e. remote
 * flush), so their walsenders already report the LSN and this returns at once.
 *
 * Sleeps on the latch in 10 ms steps (the walsenders do not wake this
 * process), or on the sockets of requests already in flight, which keep being
 * collected and stored meanwhile; reloads the configuration on SIGHUP.  Past
 * dialer.standby_wait_timeout it warns (the log, worker_status()) and keeps
 * waiting: the calls stay claimed and unsent.  Returns false when the worker
 * must stop first; the caller then gives the claims back.
 */
static bool
wait_for_standbys(XLogRecPtr lsn, int n_calls)
{
	TimestampTz since = 0;
	TimestampTz warn_at = 0;
	bool		latch_seen = false;
	bool		warned = false;
	bool		go = true;

	for (;;)
	{
		int			n_standbys;
		int			n_flushed;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			providers_loaded_at = 0;
		}
		if (standbys_have_flushed(lsn, &n_standbys, &n_flushed))
			break;
		if (shutdown_requested)
		{
			go = false;
			break;
		}
		now = GetCurrentTimestamp();
		if (since == 0)
		{
			since = now;
			warn_at = TimestampTzPlusMilliseconds(now, dialer_standby_wait_timeout_ms);
			publish_standby_wait(since, lsn);
		}
		else if (now >= warn_at)
		{
			long		waited_ms = (long) ((now - since) / 1000);

			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("pg_dialer: %d claimed call(s) have waited %ld ms for standbys to flush their claim; they are not sent meanwhile",
							n_calls, waited_ms),
					 errdetail("The claim's commit LSN is %X/%X; %d of the %d connected standby(s) have flushed it (dialer.standby_wait = %s).",
							   LSN_FORMAT_ARGS(lsn), n_flushed, n_standbys,
							   dialer_standby_wait == STANDBY_WAIT_ANY ? "any" : "all"),
					 errhint("Check the standbys in pg_stat_replication: one that stops replying is dropped after wal_sender_timeout, and the calls then leave.")));
			dialer_shared_set_error("waiting %ld ms for standbys to flush claim LSN %X/%X (%d of %d flushed)",
									waited_ms, LSN_FORMAT_ARGS(lsn), n_flushed, n_standbys);
			warned = true;
			warn_at = TimestampTzPlusMilliseconds(now, dialer_standby_wait_timeout_ms);
		}

		if (http_in_flight() > 0)
		{
			http_wait(10);
			collect_finished();
		}
		else
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10L, PG_WAIT_EXTENSION);
		if (MyLatch->is_set)
		{
			ResetLatch(MyLatch);
			latch_seen = true;
		}
		if (results_waiting() &&
			TimestampDifferenceExceeds(oldest_outcome, GetCurrentTimestamp(), 100))
			flush_outcomes();
	}

	if (since != 0)
	{
		publish_standby_wait(0, InvalidXLogRecPtr);
		if (warned && go)
			ereport(LOG,
					(errmsg("pg_dialer: the standbys flushed claim LSN %X/%X after %ld ms; sending its %d call(s)",
							LSN_FORMAT_ARGS(lsn), (long) ((GetCurrentTimestamp() - since) / 1000), n_calls)));
	}
	/* a wake-up taken here is the main loop's: give it back */
	if (latch_seen)
		SetLatch(MyLatch);
	return go;
}

/*
 * A call that cannot be sent at all fails at once: its outcome waits with
 * the others to be stored.
 */
static void
fail_unsendable(ClaimedCall *c, const char *error)
{
	MemoryContext old = MemoryContextSwitchTo(outcome_cxt);
	DialerOutcome *out = new_outcome();

	out->call_id = c->id;
	out->attempt = c->attempt;
	outcome_not_sendable(out, error);
	MemoryContextSwitchTo(old);
	count(&dialer_shared->failed, 1);
	dialer_shared_set_error("call " INT64_FORMAT ": %s", c->id, error);
}

/*
 * Starts the requests of the calls just claimed.  A call that cannot be sent
 * at all (no caller id, nothing to say, a base_url not allowed) fails at once.
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
			count(&dialer_shared->dispatched, 1);
		}
		else
			fail_unsendable(c, error);
	}
	http_kick();
}

/*
 * What one dispatch round has found so far, passed between its steps.
 */
typedef struct DispatchRound
{
	int			cap;			/* requests the worker may run at once */
	bool		woken;			/* the latch was set: something changed */
	TimestampTz now;
	TimestampTz next;			/* when to look again (0: when woken) */
	List	   *blocked;		/* names of providers that cannot take calls */
	int			claimed;		/* requests started in this round */
	TimestampTz search_token_at;	/* a search waits for this token */
	bool		more;			/* a claim came back full: more are due now */
	bool		waiting;		/* a provider waits for its own requests */
} DispatchRound;

/* Lowers *next to t, when t is set and earlier (0 means "not set"). */
static void
earliest(TimestampTz *next, TimestampTz t)
{
	if (t != 0 && (*next == 0 || t < *next))
		*next = t;
}

/* Refills the provider's calls-per-second bucket (at most a second's worth). */
static void
refill_tokens(DialerProvider *p, TimestampTz now)
{
	double		burst = Max(1.0, p->calls_per_second);

	p->tokens = Min(burst, p->tokens + p->calls_per_second *
					(double) (now - p->tokens_at) / USECS_PER_SEC);
	p->tokens_at = now;
}

/* When the provider's next calls-per-second token is there. */
static TimestampTz
next_token_at(DialerProvider *p, TimestampTz now)
{
	return TimestampTzPlusMilliseconds(now,
									   (int) Max(1.0, (1.0 - p->tokens) * 1000.0 / p->calls_per_second));
}

/*
 * Whether the provider may take calls in this round; if not, it is noted as
 * blocked and the round's next look covers the end of its block.
 */
static bool
provider_open(DispatchRound *r, DialerProvider *p)
{
	/* a wake-up (a final status, a new call) may have freed a slot */
	if (r->woken && p->at_capacity)
		p->blocked_until = 0;
	if (p->blocked_until > r->now)
	{
		r->blocked = lappend(r->blocked, p->name);
		earliest(&r->next, p->blocked_until);
		return false;
	}
	p->blocked_until = 0;
	p->at_capacity = false;
	return true;
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

/*
 * A provider at its max_concurrency while calls of its are due: its calls in
 * progress hold every slot until a status callback ends one, or until one has
 * had no news for dialer.reconcile_after (then it stops counting and is
 * looked up).  Without callbacks arriving (webhooks not set up) that is a
 * stall the user should hear about: worker_status() says so while it lasts
 * (publish_state), and the server log once, after a third of
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

/* The provider took calls again: its stall, if any, is over. */
static void
end_stall(DialerProvider *p, TimestampTz now)
{
	if (p->stalled_since != 0 && p->stall_warned)
		ereport(LOG,
				(errmsg("pg_dialer: provider \"%s\" takes calls again after %ld s at its max_concurrency",
						p->name, (long) ((now - p->stalled_since) / USECS_PER_SEC))));
	p->stalled_since = 0;
	p->stall_warned = false;
}

/*
 * Claims as many due calls of provider p as the global concurrency, its
 * calls-per-second budget, its share of the slots and its max_concurrency
 * allow, and starts them once their claim is on the standbys.  False when the
 * worker must stop while the claim waited for standbys (the claim was given
 * back).
 */
static bool
claim_and_start(DispatchRound *r, DialerProvider *p, int share)
{
	int			allowance;
	int			capacity;
	List	   *calls;

	refill_tokens(p, r->now);

	allowance = Min(dialer_batch_size, r->cap - http_in_flight());
	allowance = Min(allowance, claim_share(r->cap));
	allowance = Min(allowance, share - p->in_flight);
	allowance = Min(allowance, (int) p->tokens);
	if (allowance < 1)
	{
		r->blocked = lappend(r->blocked, p->name);
		if (p->tokens < 1)
		{
			/* wait for the next token */
			p->blocked_until = next_token_at(p, r->now);
			earliest(&r->next, p->blocked_until);
		}
		else
			r->waiting = true;	/* slots will free up when requests finish */
		return true;
	}

	calls = queue_claim(p, allowance, &capacity);
	if (capacity == 0)
	{
		/* at max_concurrency: look again in 1 s, or when a callback wakes us */
		r->blocked = lappend(r->blocked, p->name);
		p->at_capacity = true;
		p->blocked_until = TimestampTzPlusMilliseconds(r->now, 1000);
		earliest(&r->next, p->blocked_until);
		note_stall(p, r->now);
		return true;
	}
	end_stall(p, r->now);
	p->tokens -= list_length(calls);
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
	if (calls != NIL && !wait_for_standbys(XactLastCommitEnd, list_length(calls)))
	{
		/* stopping while the claim waited: nothing left, give the calls back */
		queue_release(calls);
		return false;
	}
	start_calls(p, calls);
	return true;
}

/* The enabled provider of that name, or NULL. */
static DialerProvider *
seen_provider(const char *name)
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
		DialerProvider *p = seen_provider(c->provider);

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

	foreach(lc, providers)
	{
		DialerProvider *p = lfirst(lc);
		int			allowance;
		List	   *todo;
		ListCell   *tc;

		if (!p->seen || !provider_can_search(p) ||
			(p->blocked_until > r->now && !p->at_capacity))
			continue;
		refill_tokens(p, r->now);
		if (p->tokens < 1)
		{
			earliest(&r->search_token_at, next_token_at(p, r->now));
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
 * When the worker should next look at the queue, at the end of a round (0:
 * only when woken or when slots free up).
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
	if ((r->more || r->waiting) && r->next == 0)
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
 * One dispatch round: for each enabled provider, claim and start what it may
 * take now; then the reconciliation lookups and searches that are due.
 * Returns the time the worker should next look at the queue (0: only when
 * woken or when slots free up).  Sets *more_due when a claim came back full
 * (more calls are due now), and *slots_awaited when a provider waits for its
 * own requests to finish.
 */
static TimestampTz
dispatch_round(int cap, bool was_woken, bool *more_due, bool *slots_awaited)
{
	DispatchRound r;
	ListCell   *lc;
	int			n_seen = 0;
	int			share;

	memset(&r, 0, sizeof(r));
	r.cap = cap;
	r.woken = was_woken;
	r.now = GetCurrentTimestamp();
	*more_due = false;
	*slots_awaited = false;

	foreach(lc, providers)
	{
		if (((DialerProvider *) lfirst(lc))->seen)
			n_seen++;
	}
	share = n_seen > 1 ? Max(cap * 3 / 4, 1) : cap;

	foreach(lc, providers)
	{
		DialerProvider *p = lfirst(lc);

		if (!p->seen || !provider_open(&r, p))
			continue;
		if (!claim_and_start(&r, p, share))
		{
			*more_due = r.more;
			*slots_awaited = r.waiting;
			return 0;
		}
	}
	if (reconcile_at != 0 && reconcile_at <= r.now)
	{
		start_lookups(&r);
		if (searches_idle_until <= r.now)
			start_searches(&r);
	}
	*more_due = r.more;
	*slots_awaited = r.waiting;
	return next_look(&r);
}

/*
 * How many slots must be free before the loop claims again for waiting calls:
 * a fiftieth of them (2 of 100), so claims are not made one call at a time,
 * yet a slot freed by a slow provider does not wait long for others.  (A
 * twentieth kept W2 of make bench, 100 ms answers at concurrency 100, at 1.09
 * times its ideal time against 1.08, three runs each, back to back.)
 */
static int
refill_threshold(int cap)
{
	return Max(1, Min(dialer_batch_size, cap / 50));
}

/*
 * Waits for the time the loop must next act, a latch wake-up or socket activity.
 * With requests in flight it waits on their sockets and the latch together
 * (http_wait); otherwise on the latch alone.  Outcomes waiting to be stored
 * bring the loop back within 10 ms (time_to_store).
 */
static void
wait_for_work(TimestampTz until)
{
	long		timeout_ms = -1;

	if (until != 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		timeout_ms = until <= now ? 0 : (long) ((until - now + 999) / 1000);
	}
	if (results_waiting())
		timeout_ms = timeout_ms < 0 ? 10 : Min(timeout_ms, 10);

	if (http_in_flight() > 0)
	{
		http_wait(timeout_ms);
		return;
	}
	if (timeout_ms == 0)
		return;
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout_ms > 0 ? WL_TIMEOUT : 0),
					 timeout_ms, PG_WAIT_EXTENSION);
}

/*
 * After a reload of the settings: calls parked for a calling window are looked at
 * again with the new window settings, so none waits for a window that no longer
 * applies.  The flag is cleared first: an error here is reported by the loop and the
 * calls are still looked at when they fall due.
 */
static void
reevaluate_parked_calls(void)
{
	int			n;

	settings_reloaded = false;
	n = queue_reevaluate_parked();
	if (n > 0)
		ereport(LOG,
				(errmsg("pg_dialer: %d call(s) waiting for a calling window re-scheduled after the settings were reloaded", n)));
}


/*
 * Stops: no new claims; in-flight requests get dialer.shutdown_timeout to end,
 * then those still open are abandoned: unknown for a provider where a re-send
 * is not safe (Twilio: it may have placed the call), retry for providers that
 * dedupe by Idempotency-Key.
 */
static void
drain_and_exit(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dialer_shutdown_timeout_ms);
	HttpRequest *http;

	dialer_shared_set_state("stopping");
	while (http_in_flight() > 0 && GetCurrentTimestamp() < deadline)
	{
		http_wait(10);
		collect_finished();
	}
	while ((http = http_first_in_flight()) != NULL)
	{
		DialerRequest *req = dialer_request(http);
		MemoryContext old;
		DialerOutcome *out;

		if (req->lookup)
		{
			/* nothing to record: the call is looked up again later */
			provider_release(req);
			continue;
		}
		old = MemoryContextSwitchTo(outcome_cxt);
		out = new_outcome();
		out->call_id = req->call.id;
		out->attempt = req->call.attempt;
		outcome_abandoned(out, provider_resend_safe(req->provider));
		MemoryContextSwitchTo(old);
		provider_release(req);
	}
	flush_outcomes();
	ereport(LOG,
			(errmsg("pg_dialer dispatcher stopping")));
	proc_exit(1);
}

/*
 * The main loop's state.  It lives in static storage, not in registers: the
 * error recovery in dialer_worker_main comes back through siglongjmp, which
 * would leave automatic variables changed since sigsetjmp with undefined
 * values (what -Wclobbered warns about).
 */
static MemoryContext loop_cxt = NULL;
static TimestampTz next_due = 0;
static bool ready = false;		/* the schema matches and recovery ran */
static bool more = false;		/* the last claim came back full */
static bool waiting = false;	/* a provider waits for its own requests */
static bool woken = true;		/* the latch was set: something changed */
static bool recheck = false;	/* outcomes were stored: retries may be due */
static int	errors_in_a_row = 0;

/*
 * Connects to the database of the slot the launcher assigned, and publishes
 * in the slot that this dispatcher runs.
 */
static void
attach_to_slot(Datum main_arg)
{
	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;
	char		dbname[NAMEDATALEN];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();

	/* the launcher assigned this slot to the database before starting us */
	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	if (dialer_control == NULL || slotno < 0 || slotno >= dialer_control->n_slots)
		elog(FATAL, "pg_dialer dispatcher started without a valid slot (%d)", slotno);
	dialer_shared = &dialer_control->slots[slotno];

	/* a database dropped in the meantime ends this worker with a FATAL error */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("pg_dialer dispatcher");

	/* a claim must be durable before its request leaves, whatever the default */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	StartTransactionCommand();
	strlcpy(dbname, get_database_name(MyDatabaseId), NAMEDATALEN);
	CommitTransactionCommand();

	SpinLockAcquire(&dialer_shared->mutex);
	strlcpy(dialer_shared->database, dbname, NAMEDATALEN);
	dialer_shared->worker_pid = MyProcPid;
	dialer_shared->worker_procno = MyProc->pgprocno;
	dialer_shared->no_extension = false;
	dialer_shared->recheck_extension = false;
	strlcpy(dialer_shared->state, "starting", DIALER_STATE_LEN);
	dialer_shared->started_at = GetCurrentTimestamp();
	dialer_shared->in_flight = 0;
	dialer_shared->n_providers = 0;
	SpinLockRelease(&dialer_shared->mutex);
	on_shmem_exit(worker_exit, (Datum) 0);
	ereport(LOG,
			(errmsg("pg_dialer dispatcher started for database \"%s\"", dialer_shared->database)));
}

/*
 * An error inside the loop (a failed claim or store) is logged and recorded,
 * its transaction rolled back, and the loop goes on: requests in flight keep
 * running and waiting outcomes are kept to be stored again.  After more than
 * ten errors in a row the worker exits (and is restarted).
 */
static void
recover_from_error(void)
{
	ErrorData  *edata;

	error_context_stack = NULL;
	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(loop_cxt);
	edata = CopyErrorData();
	EmitErrorReport();
	dialer_shared_set_error("%s", edata->message);
	AbortOutOfAnyTransaction();
	FlushErrorState();
	pgstat_report_activity(STATE_IDLE, NULL);
	RESUME_INTERRUPTS();
	if (++errors_in_a_row > 10)
		proc_exit(1);
	ready = false;
	woken = true;
	pg_usleep(Min(errors_in_a_row, 5) * 200000L);
}

/* A set latch means something changed: note it and reset the latch. */
static void
take_latch(void)
{
	if (MyLatch->is_set)
	{
		ResetLatch(MyLatch);
		woken = true;
	}
}

/*
 * Acts on SIGHUP (reload, look at the providers and parked calls again) and
 * on SIGTERM (drain and exit).
 */
static void
take_signals(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		providers_loaded_at = 0;
		woken = true;
		settings_reloaded = true;
	}
	if (shutdown_requested)
		drain_and_exit();
}

/*
 * Acts on what other backends left in the slot: CREATE or DROP EXTENSION
 * committed in this database (look again), or a DROP DATABASE (or the like)
 * waiting for the database to be free (stop).
 */
static void
take_slot_requests(void)
{
	SpinLockAcquire(&dialer_shared->mutex);
	if (dialer_shared->recheck_extension)
	{
		dialer_shared->recheck_extension = false;
		ready = false;
	}
	if (dialer_shared->held_by != 0 && dialer_shared->held_until > GetCurrentTimestamp())
		shutdown_requested = true;
	SpinLockRelease(&dialer_shared->mutex);
	if (shutdown_requested)
		drain_and_exit();
}

/*
 * Makes the worker ready to dispatch: the extension must be there (else the
 * worker exits) with the schema of this library (else it waits for ALTER
 * EXTENSION pg_dialer UPDATE, and returns false), and the calls a previous
 * dispatcher left 'dispatching' become 'unknown'.
 */
static bool
become_ready(void)
{
	char	   *schema_version = queue_extension_version();
	int			n;

	if (schema_version == NULL)
	{
		/*
		 * Nothing can be stored without the extension's tables: requests
		 * still in flight are abandoned with it.
		 */
		exit_without_extension();
	}
	if (!schema_matches_library(schema_version))
	{
		/* touch nothing until ALTER EXTENSION pg_dialer UPDATE */
		wait_for_extension_update(schema_version);
		return false;
	}
	note_extension_updated();
	n = queue_recover();
	if (n > 0)
		ereport(LOG,
				(errmsg("pg_dialer: %d call(s) left dispatching by a previous dispatcher are now unknown", n),
				 errhint("They are never re-sent automatically; check them at the provider, then use dialer.retry_call() or leave them.")));
	ready = true;
	woken = true;
	providers_loaded_at = 0;
	return true;
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

/*
 * Reloads the providers when a change to dialer.providers committed, and at
 * least every 10 s while the worker is active.
 */
static void
reload_providers_if_changed(TimestampTz now)
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

/*
 * Runs a dispatch round when there may be something to do: the worker was
 * woken, outcomes were stored, a call fell due, or slots freed up for calls
 * that are waiting.
 */
static void
dispatch_if_due(int cap)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!dialer_enabled)
	{
		dialer_shared_set_state("paused (dialer.enabled = off)");
		next_due = 0;
		return;
	}
	if (woken || recheck || (next_due != 0 && now >= next_due) ||
		((more || waiting) && cap - http_in_flight() >= refill_threshold(cap)))
	{
		reload_providers_if_changed(now);
		dialer_shared_set_state("dispatching");
		next_due = dispatch_round(cap, woken, &more, &waiting);
		woken = recheck = false;
	}
}

/*
 * Whether the waiting outcomes are to be stored now: when a batch is full,
 * when nothing is in flight, or when the slots are full anyway (the worker
 * would only wait) and the oldest has waited 5 ms; while slots are free to
 * refill, refilling comes first, up to 100 ms.
 */
static bool
time_to_store(int cap)
{
	if (!results_waiting())
		return false;
	return n_outcomes >= dialer_batch_size || http_in_flight() == 0 ||
		(cap - http_in_flight() < refill_threshold(cap) &&
		 TimestampDifferenceExceeds(oldest_outcome, GetCurrentTimestamp(), 5)) ||
		TimestampDifferenceExceeds(oldest_outcome, GetCurrentTimestamp(), 100);
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
 * The worker's state while a provider's calls wait for its max_concurrency to
 * free up (rather than "idle"): which provider, its limit, how many calls
 * wait, and what frees a slot.
 */
static void
publish_stall(DialerProvider *p)
{
	char		state[DIALER_STATE_LEN];
	char		at[64] = "";

	if (p->stall_frees_at != 0)
	{
		pg_time_t	t = timestamptz_to_time_t(p->stall_frees_at);

		pg_strftime(at, sizeof(at), " (%H:%M:%S UTC)", pg_gmtime(&t));
	}
	snprintf(state, sizeof(state),
			 "waiting: provider %s at max_concurrency %d (%d%s calls due) until a status callback or reconciliation%s frees a slot",
			 p->name, p->max_concurrency, p->stalled_due, p->stalled_due >= 10000 ? "+" : "", at);
	dialer_shared_set_state(state);
}

/*
 * Publishes the worker's state, counters and providers, and lets the
 * statistics collector (and so autovacuum) see the worker's work.
 */
static void
publish_state(void)
{
	if (dialer_enabled && http_in_flight() == 0 && !results_waiting())
	{
		DialerProvider *stalled = first_stalled_provider();

		if (stalled != NULL)
			publish_stall(stalled);
		else
			dialer_shared_set_state("idle");
	}
	pgstat_report_stat(http_in_flight() == 0);
	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->in_flight = http_in_flight();
	SpinLockRelease(&dialer_shared->mutex);
	publish_providers();
}

/*
 * The worker's entry point: attach to the database's slot, then loop.  Each
 * turn of the loop takes signals and requests, makes sure the schema is
 * ready, collects finished requests, starts new ones (first, so the pipeline
 * stays full), stores outcomes, publishes its state and waits.
 */
void
dialer_worker_main(Datum main_arg)
{
	sigjmp_buf	local_sigjmp_buf;

	attach_to_slot(main_arg);
	http_init();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer loop", ALLOCSET_DEFAULT_SIZES);
	outcome_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer outcomes", ALLOCSET_DEFAULT_SIZES);

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
		recover_from_error();
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		int			cap;

		CHECK_FOR_INTERRUPTS();
		take_signals();
		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		take_latch();
		take_slot_requests();
		if (!ready && !become_ready())
			continue;
		if (settings_reloaded)
			reevaluate_parked_calls();

		collect_finished();
		cap = http_effective_concurrency(dialer_max_concurrency);
		http_set_limit(cap);
		dispatch_if_due(cap);
		if (time_to_store(cap))
		{
			flush_outcomes();
			/* retries may be due sooner than anything else */
			recheck = true;
			continue;
		}

		errors_in_a_row = 0;
		publish_state();
		/* with free slots and more calls due, go straight back to claiming */
		if (dialer_enabled && more &&
			(http_in_flight() == 0 || cap - http_in_flight() >= refill_threshold(cap)))
			http_kick();
		else
			wait_for_work(next_due);
		take_latch();
	}
}
