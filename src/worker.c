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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_dialer.h"
#include "dispatch.h"

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
worker_exit(int code, Datum arg)
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

/* Stores the waiting outcomes and lookup answers, then frees them. */
static void
flush_outcomes(void)
{
	if (n_outcomes == 0 && lookups == NIL)
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
 * Records the outcome of a request that ended, counts it, and adjusts its
 * provider's failure streak (a provider that keeps failing is paused, so it
 * cannot hold every slot while others wait).
 */
static void
finish_request(DialerRequest *req, CURLcode result, long http_status)
{
	MemoryContext old = MemoryContextSwitchTo(outcome_cxt);
	DialerOutcome *out;
	DialerProvider *p = req->provider;
	ProviderVerdict verdict;

	if (req->lookup)
	{
		LookupResult *r = palloc0(sizeof(LookupResult));

		r->call_id = req->call.id;
		if (req->call.search)
			r->search = pstrdup(req->call.search);
		else
			r->provider_call_id = pstrdup(req->call.provider_call_id);
		r->http_status = result == CURLE_OK ? (int) http_status : 0;
		if (result == CURLE_OK)
			r->body = pstrdup(req->response.data);
		else
			r->error = pstrdup(req->errbuf[0] ? req->errbuf : curl_easy_strerror(result));
		if (n_outcomes == 0 && lookups == NIL)
			oldest_outcome = GetCurrentTimestamp();
		lookups = lappend(lookups, r);
		MemoryContextSwitchTo(old);
		http_release(req);
		return;
	}
	out = new_outcome();

	verdict = provider_finish(req, result, http_status, out);
	if (verdict == VERDICT_NEXT_PHASE && !shutdown_requested)
	{
		n_outcomes--;
		MemoryContextSwitchTo(old);
		http_start(req);
		return;
	}
	if (verdict == VERDICT_NEXT_PHASE)
	{
		/* the brief was answered but the call was not started: safe to retry */
		out->outcome = "retry";
		out->delay_ms = 0;
		out->error_code = pstrdup("shutdown");
		out->error_message = pstrdup("dispatcher stopped between /call/brief and /call/start");
	}
	MemoryContextSwitchTo(old);

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

	/* after 5 failures in a row, pause the provider: 1 s, doubling, at most 60 s */
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
	http_release(req);
}

/* Collects every finished request. */
static void
collect_finished(void)
{
	DialerRequest *req;
	CURLcode	result;
	long		http_status;

	while ((req = http_next_done(&result, &http_status)) != NULL)
		finish_request(req, result, http_status);
}

/*
 * Whether the walsender with this pid streams WAL for pg_basebackup: it holds
 * the temporary slot pg_basebackup creates (named pg_basebackup_<pid>).  Such a
 * stream reports a flush position only at WAL segment ends, and a backup is no
 * standby: it must not hold dispatching up for as long as it runs.
 */
static bool
streams_for_base_backup(pid_t pid)
{
	bool		found = false;
	int			i;

	if (ReplicationSlotCtl == NULL)
		return false;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots && !found; i++)
	{
		ReplicationSlot *slot = &ReplicationSlotCtl->replication_slots[i];

		if (!slot->in_use)
			continue;
		SpinLockAcquire(&slot->mutex);
		found = slot->active_pid == pid &&
			slot->data.persistency == RS_TEMPORARY &&
			strncmp(NameStr(slot->data.name), "pg_basebackup_", 14) == 0;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return found;
}

/*
 * Whether the connected physical standbys have flushed the WAL up to lsn, as
 * dialer.standby_wait asks: at least one of them (any) or every one (all).
 * A standby counts while its walsender streams or catches up and once it has
 * reported a flush position; a logical walsender (connected to a database)
 * feeds a subscriber, which cannot be promoted, and pg_basebackup's WAL stream
 * (no flush position with --no-slot, else its temporary slot) feeds a backup.
 * With no standby connected there is nothing to wait for.  Reads the walsenders' shared state, as
 * pg_stat_replication does, with no transaction.
 */
static bool
standbys_have_flushed(XLogRecPtr lsn, int *n_standbys, int *n_flushed)
{
	int			i;

	*n_standbys = 0;
	*n_flushed = 0;
	if (dialer_standby_wait == STANDBY_WAIT_OFF || WalSndCtl == NULL)
		return true;
	for (i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *walsnd = &WalSndCtl->walsnds[i];
		pid_t		pid;
		WalSndState state;
		XLogRecPtr	flush;
		PGPROC	   *proc;

		SpinLockAcquire(&walsnd->mutex);
		pid = walsnd->pid;
		state = walsnd->state;
		flush = walsnd->flush;
		SpinLockRelease(&walsnd->mutex);
		if (pid == 0 || (state != WALSNDSTATE_STREAMING && state != WALSNDSTATE_CATCHUP) ||
			XLogRecPtrIsInvalid(flush))
			continue;
		proc = BackendPidGetProc(pid);
		if (proc == NULL || OidIsValid(proc->databaseId) || streams_for_base_backup(pid))
			continue;
		(*n_standbys)++;
		if (flush >= lsn)
			(*n_flushed)++;
	}
	if (*n_standbys == 0)
		return true;
	if (dialer_standby_wait == STANDBY_WAIT_ANY)
		return *n_flushed > 0;
	return *n_flushed == *n_standbys;
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
		if ((n_outcomes > 0 || lookups != NIL) &&
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
		DialerRequest *req = http_new_request(p, c);
		MemoryContext old = MemoryContextSwitchTo(req->cxt);
		char	   *error = NULL;
		bool		ok = provider_prepare(req, &error);

		MemoryContextSwitchTo(old);
		p->in_flight++;
		if (ok)
		{
			http_start(req);
			count(&dialer_shared->dispatched, 1);
		}
		else
		{
			DialerOutcome *out;

			old = MemoryContextSwitchTo(outcome_cxt);
			out = new_outcome();
			out->call_id = c->id;
			out->attempt = c->attempt;
			out->outcome = "failed";
			out->error_code = pstrdup("not_sendable");
			out->error_message = pstrdup(error);
			out->responded_at = GetCurrentTimestamp();
			MemoryContextSwitchTo(old);
			p->in_flight--;
			http_release(req);
			count(&dialer_shared->failed, 1);
			dialer_shared_set_error("call " INT64_FORMAT ": %s", c->id, error);
		}
	}
	http_kick();
}

/*
 * One dispatch round: for each enabled provider, claim as many due calls as
 * the global concurrency, the provider's calls-per-second budget, its share of
 * the slots and its max_concurrency allow, and start them.  Returns the time
 * the worker should next look at the queue (0: only when woken or when slots
 * free up).  Sets *more when a claim came back full (more calls are due now),
 * and *waiting when a provider waits for its own requests to finish.
 */
static TimestampTz
dispatch_round(int cap, bool woken, bool *more, bool *waiting)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;
	List	   *blocked = NIL;
	ListCell   *lc;
	int			n_seen = 0;
	int			claimed = 0;
	TimestampTz search_token_at = 0;	/* a search waits for this token */

	*more = false;
	*waiting = false;
	foreach(lc, providers)
		if (((DialerProvider *) lfirst(lc))->seen)
			n_seen++;

	foreach(lc, providers)
	{
		DialerProvider *p = lfirst(lc);
		int			share = n_seen > 1 ? Max(cap * 3 / 4, 1) : cap;
		double		burst = Max(1.0, p->calls_per_second);
		int			allowance;
		int			capacity;
		List	   *calls;

		if (!p->seen)
			continue;
		/* a wake-up (a final status, a new call) may have freed a slot: look again */
		if (woken && p->at_capacity)
			p->blocked_until = 0;
		if (p->blocked_until > now)
		{
			blocked = lappend(blocked, p->name);
			if (next == 0 || p->blocked_until < next)
				next = p->blocked_until;
			continue;
		}
		p->blocked_until = 0;
		p->at_capacity = false;

		/* refill the calls-per-second bucket */
		p->tokens = Min(burst, p->tokens + p->calls_per_second *
						(double) (now - p->tokens_at) / USECS_PER_SEC);
		p->tokens_at = now;

		/*
		 * Claim at most a quarter of the slots at a time: the first requests
		 * leave while the rest are claimed, so slots freed together refill
		 * sooner and do not stay in lockstep.
		 */
		allowance = Min(dialer_batch_size, cap - http_in_flight());
		allowance = Min(allowance, Max(cap / 4, 1));
		allowance = Min(allowance, share - p->in_flight);
		allowance = Min(allowance, (int) p->tokens);
		if (allowance < 1)
		{
			blocked = lappend(blocked, p->name);
			if (p->tokens < 1)
			{
				/* wait for the next token */
				p->blocked_until = TimestampTzPlusMilliseconds(now,
															   (int) Max(1.0, (1.0 - p->tokens) * 1000.0 / p->calls_per_second));
				if (next == 0 || p->blocked_until < next)
					next = p->blocked_until;
			}
			else
				*waiting = true;	/* slots will free up when requests finish */
			continue;
		}

		calls = queue_claim(p, allowance, &capacity);
		if (capacity == 0)
		{
			/* at max_concurrency: look again in a second, or when a callback wakes us */
			blocked = lappend(blocked, p->name);
			p->at_capacity = true;
			p->blocked_until = TimestampTzPlusMilliseconds(now, 1000);
			if (next == 0 || p->blocked_until < next)
				next = p->blocked_until;
			continue;
		}
		p->tokens -= list_length(calls);
		claimed += list_length(calls);
		if (list_length(calls) == Min(allowance, capacity))
			*more = true;

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
			return 0;
		}
		start_calls(p, calls);
	}

	/* calls whose provider's word is overdue: look them up */
	if (reconcile_at != 0 && reconcile_at <= now && cap - http_in_flight() > 0)
	{
		List	   *todo = queue_claim_reconciliations(Min(100, cap - http_in_flight()));

		foreach(lc, todo)
		{
			ClaimedCall *c = lfirst(lc);
			ListCell   *pc;

			foreach(pc, providers)
			{
				DialerProvider *p = lfirst(pc);

				if (p->seen && strcmp(p->name, c->provider) == 0)
				{
					DialerRequest *req = http_new_request(p, c);
					MemoryContext old = MemoryContextSwitchTo(req->cxt);

					provider_lookup_prepare(req);
					MemoryContextSwitchTo(old);
					http_start(req);
					claimed++;
					break;
				}
			}
		}
	}

	/*
	 * Unknown calls without a provider call id: searched for at their provider by
	 * what was sent.  A search is a request like a call: it takes a free slot and
	 * one of the provider's calls-per-second tokens (what the due calls left of
	 * them); without a token the round comes back when the next one is due.
	 */
	if (reconcile_at != 0 && reconcile_at <= now && searches_idle_until <= now)
	{
		bool		tried = false;
		int			found = 0;

		foreach(lc, providers)
		{
			DialerProvider *p = lfirst(lc);
			double		burst = Max(1.0, p->calls_per_second);
			int			allowance;
			List	   *todo;
			ListCell   *tc;

			if (!p->seen || !provider_can_search(p) ||
				(p->blocked_until > now && !p->at_capacity))
				continue;
			p->tokens = Min(burst, p->tokens + p->calls_per_second *
							(double) (now - p->tokens_at) / USECS_PER_SEC);
			p->tokens_at = now;
			if (p->tokens < 1)
			{
				TimestampTz token_at = TimestampTzPlusMilliseconds(now,
																   (int) Max(1.0, (1.0 - p->tokens) * 1000.0 / p->calls_per_second));

				if (search_token_at == 0 || token_at < search_token_at)
					search_token_at = token_at;
				continue;
			}
			allowance = Min((int) p->tokens, cap - http_in_flight());
			allowance = Min(allowance, Max(cap / 4, 1));
			if (allowance < 1)
				continue;
			todo = queue_claim_searches(p, allowance);
			tried = true;
			found += list_length(todo);
			foreach(tc, todo)
			{
				ClaimedCall *c = lfirst(tc);
				DialerRequest *req = http_new_request(p, c);
				MemoryContext old = MemoryContextSwitchTo(req->cxt);

				provider_search_prepare(req);
				MemoryContextSwitchTo(old);
				http_start(req);
				p->tokens -= 1;
				claimed++;
			}
			if (list_length(todo) == allowance)
				*more = true;
		}

		/*
		 * Nothing to search for (what is due is a lookup by provider id): do not
		 * ask again for a second, whatever the rounds in between.
		 */
		if (tried && found == 0)
			searches_idle_until = TimestampTzPlusMilliseconds(now, 1000);
	}

	/*
	 * When some provider still has due calls it could not take, the loop comes
	 * back as soon as slots free up: no need to ask when the next call is due.
	 */
	if (search_token_at != 0 && (next == 0 || search_token_at < next))
		next = search_token_at;
	if ((*more || *waiting) && next == 0)
		return 0;

	{
		TimestampTz due = queue_next_due(blocked, &reconcile_at);

		/*
		 * Calls due now that this round could not claim (rows locked by another
		 * session, a provider not loaded yet): look again shortly, not at once.
		 */
		if (due != 0 && due <= now && claimed == 0)
			due = TimestampTzPlusMilliseconds(now, 100);
		if (due != 0 && (next == 0 || due < next))
			next = due;
		if (reconcile_at != 0 && reconcile_at <= now && claimed == 0)
			reconcile_at = search_token_at != 0 ? search_token_at :
				TimestampTzPlusMilliseconds(now, 1000);
		if (reconcile_at != 0 && (next == 0 || reconcile_at < next))
			next = reconcile_at;
	}
	return next;
}

/*
 * How many slots must be free before the loop claims again for waiting calls:
 * a twentieth of them, so claims are not made one call at a time.
 */
static int
refill_threshold(int cap)
{
	return Max(1, Min(dialer_batch_size, cap / 20));
}

/*
 * Waits for the time the loop must next act, a latch wake-up or socket activity.
 * With requests in flight it waits on their sockets (checking the latch at
 * least every 10 ms); otherwise on the latch alone.
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
	if (n_outcomes > 0 || lookups != NIL)
		timeout_ms = timeout_ms < 0 ? 10 : Min(timeout_ms, 10);

	if (http_in_flight() > 0)
	{
		http_wait(timeout_ms < 0 ? 10 : Min(timeout_ms, 10));
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
 * then those still open are abandoned: unknown for Twilio (it may have placed
 * the call), retry for providers that dedupe by Idempotency-Key.
 */
static void
drain_and_exit(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dialer_shutdown_timeout_ms);
	DialerRequest *req;

	dialer_shared_set_state("stopping");
	while (http_in_flight() > 0 && GetCurrentTimestamp() < deadline)
	{
		http_wait(10);
		collect_finished();
	}
	while ((req = http_first_in_flight()) != NULL)
	{
		MemoryContext old;
		DialerOutcome *out;

		if (req->lookup)
		{
			/* nothing to record: the call is looked up again later */
			http_release(req);
			continue;
		}
		old = MemoryContextSwitchTo(outcome_cxt);
		out = new_outcome();

		out->call_id = req->call.id;
		out->attempt = req->call.attempt;
		out->responded_at = GetCurrentTimestamp();
		out->error_code = pstrdup("shutdown");
		if (req->provider->kind == PROVIDER_TWILIO)
		{
			out->outcome = "unknown";
			out->error_message = psprintf("dispatcher stopped after %d ms with the request in flight; the provider may have placed the call",
										  dialer_shutdown_timeout_ms);
		}
		else
		{
			out->outcome = "retry";
			out->delay_ms = 0;
			out->error_message = pstrdup("dispatcher stopped with the request in flight; it will be retried with the same Idempotency-Key");
		}
		MemoryContextSwitchTo(old);
		http_release(req);
	}
	flush_outcomes();
	ereport(LOG,
			(errmsg("pg_dialer dispatcher stopping")));
	proc_exit(1);
}

/*
 * The worker's entry point.
 */
void
dialer_worker_main(Datum main_arg)
{
	sigjmp_buf	local_sigjmp_buf;

	/*
	 * The loop's state lives in static storage, not in registers: the error
	 * recovery below comes back through siglongjmp, which would leave
	 * automatic variables changed since sigsetjmp with undefined values.
	 */
	static MemoryContext loop_cxt;
	static TimestampTz next_due = 0;
	static bool ready = false;
	static bool more = false;
	static bool waiting = false;
	static bool woken = true;	/* the latch was set: something changed */
	static bool recheck = false;	/* outcomes were stored: retries may be due */
	static int	errors_in_a_row = 0;

	int			slotno = DatumGetInt32(main_arg);
	Oid			dboid;
	char		dbname[NAMEDATALEN];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();

	/* the launcher assigned this slot to the database before starting the worker */
	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	if (dialer_control == NULL || slotno < 0 || slotno >= dialer_control->n_slots)
		elog(FATAL, "pg_dialer dispatcher started without a valid slot (%d)", slotno);
	dialer_shared = &dialer_control->slots[slotno];

	/* a database dropped in the meantime ends this worker with a FATAL error */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("pg_dialer dispatcher");
	/* a claim must be durable before its request leaves, whatever the server default */
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

	http_init();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer loop", ALLOCSET_DEFAULT_SIZES);
	outcome_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer outcomes", ALLOCSET_DEFAULT_SIZES);

	/*
	 * An error inside the loop (a failed claim or store) is logged and
	 * recorded, its transaction rolled back, and the loop goes on: requests in
	 * flight keep running and waiting outcomes are kept to be stored again.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
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
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		int			cap;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
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

		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);

		if (MyLatch->is_set)
		{
			ResetLatch(MyLatch);
			woken = true;
		}

		/*
		 * CREATE or DROP EXTENSION committed in this database: look again.  A
		 * DROP DATABASE (or the like) waiting for the database to be free: stop.
		 */
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

		if (!ready)
		{
			char	   *schema_version = queue_extension_version();

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
				continue;
			}
			note_extension_updated();
			{
				int			n = queue_recover();

				if (n > 0)
					ereport(LOG,
							(errmsg("pg_dialer: %d call(s) left dispatching by a previous dispatcher are now unknown", n),
							 errhint("They are never re-sent automatically; check them at the provider, then use dialer.retry_call() or leave them.")));
			}
			ready = true;
			woken = true;
			providers_loaded_at = 0;
		}
		if (settings_reloaded)
			reevaluate_parked_calls();

		collect_finished();
		cap = http_effective_concurrency(dialer_max_concurrency);
		now = GetCurrentTimestamp();

		/* start new requests first, so the pipeline stays full, then store outcomes */
		http_set_limit(cap);
		if (dialer_enabled &&
			(woken || recheck || (next_due != 0 && now >= next_due) ||
			 ((more || waiting) && cap - http_in_flight() >= refill_threshold(cap))))
		{
			uint32		version;

			SpinLockAcquire(&dialer_shared->mutex);
			version = dialer_shared->providers_version;
			SpinLockRelease(&dialer_shared->mutex);
			/* reload when a change committed, and at least every 10 s while active */
			if (providers_loaded_at == 0 || version != providers_version ||
				TimestampDifferenceExceeds(providers_loaded_at, now, 10000))
			{
				providers_version = version;
				providers = queue_load_providers(providers);
				providers_loaded_at = now;
			}
			dialer_shared_set_state("dispatching");
			next_due = dispatch_round(cap, woken, &more, &waiting);
			woken = recheck = false;
		}
		else if (!dialer_enabled)
		{
			dialer_shared_set_state("paused (dialer.enabled = off)");
			next_due = 0;
		}

		/*
		 * Store outcomes when a batch is full, when nothing is in flight, or
		 * when the slots are full anyway (the worker would only wait) and the
		 * oldest has waited 5 ms; while slots are free to refill, refilling comes
		 * first, up to 100 ms.
		 */
		if ((n_outcomes > 0 || lookups != NIL) &&
			(n_outcomes >= dialer_batch_size || http_in_flight() == 0 ||
			 (cap - http_in_flight() < refill_threshold(cap) &&
			  TimestampDifferenceExceeds(oldest_outcome, GetCurrentTimestamp(), 5)) ||
			 TimestampDifferenceExceeds(oldest_outcome, GetCurrentTimestamp(), 100)))
		{
			flush_outcomes();
			/* retries may be due sooner than anything else */
			recheck = true;
			continue;
		}

		errors_in_a_row = 0;
		if (dialer_enabled && http_in_flight() == 0 && n_outcomes == 0 && lookups == NIL)
			dialer_shared_set_state("idle");
		/* let the statistics collector (and so autovacuum) see the worker's work */
		pgstat_report_stat(http_in_flight() == 0);
		SpinLockAcquire(&dialer_shared->mutex);
		dialer_shared->in_flight = http_in_flight();
		SpinLockRelease(&dialer_shared->mutex);
		publish_providers();

		/* with free slots and more calls due, go straight back to claiming */
		if (dialer_enabled && more &&
			(http_in_flight() == 0 || cap - http_in_flight() >= refill_threshold(cap)))
			http_kick();
		else
			wait_for_work(next_due);
		if (MyLatch->is_set)
		{
			ResetLatch(MyLatch);
			woken = true;
		}
	}
}
