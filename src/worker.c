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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
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

/* set on SIGHUP: the calling-window settings may have changed */
static bool settings_reloaded = false;

/*
 * Registers the dispatcher with the postmaster (from _PG_init).  It is
 * restarted 5 seconds after it exits with an error or is terminated.
 */
void
dialer_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "pg_dialer", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "dialer_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pg_dialer dispatcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_dialer dispatcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Clears what the worker published about itself, when it exits. */
static void
worker_exit(int code, Datum arg)
{
	if (dialer_shared == NULL)
		return;
	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->worker_pid = 0;
	dialer_shared->worker_procno = -1;
	dialer_shared->in_flight = 0;
	strlcpy(dialer_shared->state, "stopped", DIALER_STATE_LEN);
	SpinLockRelease(&dialer_shared->mutex);
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
	 * When some provider still has due calls it could not take, the loop comes
	 * back as soon as slots free up: no need to ask when the next call is due.
	 */
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
			reconcile_at = TimestampTzPlusMilliseconds(now, 1000);
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
	MemoryContext loop_cxt;
	TimestampTz next_due = 0;
	bool		ready = false;
	bool		more = false;
	bool		waiting = false;
	bool		woken = true;	/* the latch was set: something changed */
	bool		recheck = false;	/* outcomes were stored: retries may be due */
	int			errors_in_a_row = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(dialer_database, NULL, 0);
	pgstat_report_appname("pg_dialer dispatcher");
	/* a claim must be durable before its request leaves, whatever the server default */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->worker_pid = MyProcPid;
	dialer_shared->worker_procno = MyProc->pgprocno;
	strlcpy(dialer_shared->database, dialer_database, NAMEDATALEN);
	strlcpy(dialer_shared->state, "starting", DIALER_STATE_LEN);
	dialer_shared->started_at = GetCurrentTimestamp();
	dialer_shared->in_flight = 0;
	SpinLockRelease(&dialer_shared->mutex);
	on_shmem_exit(worker_exit, (Datum) 0);

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

		if (!ready)
		{
			if (!queue_extension_ready())
			{
				dialer_shared_set_state("waiting for CREATE EXTENSION");
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 10000L, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				continue;
			}
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
