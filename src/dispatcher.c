/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  The dispatcher: the background worker of one database that claims due
 *	  calls, sends them through the HTTP engine and stores what the providers
 *	  answered.  This file is its process and its main loop; one turn of the
 *	  loop is in dispatch_round.c, the pacing of providers in pacing.c, the
 *	  storing of outcomes in results.c, waiting for standbys in standby.c.
 *
 *	  It sleeps on its latch: enqueue_call sets it when its transaction
 *	  commits, and otherwise the dispatcher wakes when the next call is due.
 *	  While requests are in flight it waits on their sockets instead.  A call
 *	  is claimed and committed before its request leaves; a call the
 *	  dispatcher may have sent but whose outcome it never stored is found
 *	  'dispatching' by the next dispatcher and becomes 'unknown', never
 *	  re-sent.
 *
 *	  The loop is in one of three states.  Not ready: the extension's schema
 *	  must be there and match the library, and the calls a previous
 *	  dispatcher left 'dispatching' become 'unknown'.  Dispatching: each turn
 *	  collects finished requests, runs a dispatch round when one is due,
 *	  stores outcomes, publishes its state and waits.  Waiting for standbys:
 *	  a round claimed calls that the standbys dialer.standby_wait names have
 *	  not flushed yet (otherwise a failover would find them 'scheduled' and
 *	  dial them again); they are held, unsent, and no other call is claimed,
 *	  while the loop goes on collecting, storing, and taking signals and
 *	  wake-ups.  Once the standbys have the claim the round goes on; a
 *	  dispatcher stopped meanwhile gives the claim back.
 *
 *	  The dispatcher runs only on a primary; after a promotion the new
 *	  primary's dispatcher finds the claims that reached it 'dispatching' and
 *	  makes them 'unknown'.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/dispatcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
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

#include "dispatch_round.h"
#include "dispatcher.h"
#include "http.h"
#include "pacing.h"
#include "queue.h"
#include "results.h"
#include "settings.h"
#include "shmem.h"
#include "standby.h"

/* The main loop's states (see the banner). */
typedef enum DispatcherState
{
	DISPATCHER_NOT_READY,
	DISPATCHER_DISPATCHING,
	DISPATCHER_WAITING_FOR_STANDBYS
} DispatcherState;

/* set by the SIGTERM handler: finish in-flight requests, then exit */
static volatile sig_atomic_t shutdown_requested = false;

/* set on SIGHUP: the calling-window settings may have changed */
static bool settings_reloaded = false;

/* the schema version the dispatcher last warned about, while it waits for an update */
static char awaited_update_from[NAMEDATALEN] = "";

/*
 * The main loop's state.  It lives in static storage, not in registers: the
 * error recovery in dialer_dispatcher_main comes back through siglongjmp,
 * which would leave automatic variables changed since sigsetjmp with
 * undefined values (what -Wclobbered warns about).
 */
static MemoryContext loop_cxt = NULL;
static DispatcherState state = DISPATCHER_NOT_READY;
static TimestampTz next_due = 0;
static bool more = false;		/* the last claim came back full */
static bool slots_awaited = false;	/* a provider waits for its own requests */
static bool woken = true;		/* the latch was set: something changed */
static bool recheck = false;	/* outcomes were stored: retries may be due */
static int	errors_in_a_row = 0;

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	shutdown_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Clears what the dispatcher published about itself, when it exits (the
 * slot stays assigned to the database: the launcher decides what comes
 * next).
 */
static void
dispatcher_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	if (dialer_shared == NULL)
		return;
	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->dispatcher_pid = 0;
	dialer_shared->dispatcher_procno = -1;
	dialer_shared->in_flight = 0;
	dialer_shared->n_providers = 0;
	strlcpy(dialer_shared->state, dialer_shared->no_extension ? "no extension" : "stopped",
			DIALER_STATE_LEN);
	SpinLockRelease(&dialer_shared->mutex);
	ereport(LOG,
			(errmsg("pg_dialer dispatcher for database \"%s\" stopped", dialer_shared->database)));
}

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

	/* a database dropped in the meantime ends this process (FATAL) */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("pg_dialer dispatcher");

	/* a claim must be durable before its request leaves, whatever the default */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	StartTransactionCommand();
	strlcpy(dbname, get_database_name(MyDatabaseId), NAMEDATALEN);
	CommitTransactionCommand();

	SpinLockAcquire(&dialer_shared->mutex);
	strlcpy(dialer_shared->database, dbname, NAMEDATALEN);
	dialer_shared->dispatcher_pid = MyProcPid;
	dialer_shared->dispatcher_procno = MyProc->pgprocno;
	dialer_shared->no_extension = false;
	dialer_shared->recheck_extension = false;
	strlcpy(dialer_shared->state, "starting", DIALER_STATE_LEN);
	dialer_shared->started_at = GetCurrentTimestamp();
	dialer_shared->in_flight = 0;
	dialer_shared->n_providers = 0;
	SpinLockRelease(&dialer_shared->mutex);
	on_shmem_exit(dispatcher_exit, (Datum) 0);
	ereport(LOG,
			(errmsg("pg_dialer dispatcher started for database \"%s\"", dialer_shared->database)));
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
	char		state_text[DIALER_STATE_LEN];

	snprintf(state_text, sizeof(state_text),
			 "waiting for ALTER EXTENSION pg_dialer UPDATE (schema %s, library %s)",
			 schema_version, PG_DIALER_VERSION);
	dialer_shared_set_state(state_text);
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

/*
 * Makes the dispatcher ready to dispatch: the extension must be there (else
 * the dispatcher exits) with the schema of this library (else it waits for
 * ALTER EXTENSION pg_dialer UPDATE, and returns false), and the calls a
 * previous dispatcher left 'dispatching' become 'unknown'.  A claim still
 * held for the standbys (an error came while it waited) is given back first:
 * its calls were never sent.
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
	dispatch_round_give_back();
	n = queue_recover();
	if (n > 0)
		ereport(LOG,
				(errmsg("pg_dialer: %d call(s) left dispatching by a previous dispatcher are now unknown", n),
				 errhint("They are never re-sent automatically; check them at the provider, then use dialer.retry_call() or leave them.")));
	state = DISPATCHER_DISPATCHING;
	woken = true;
	pacing_reload_soon();
	return true;
}

/*
 * An error inside the loop (a failed claim or store) is logged and recorded,
 * its transaction rolled back, and the loop goes on: requests in flight keep
 * running and waiting outcomes are kept to be stored again.  After more than
 * ten errors in a row the dispatcher exits (and is restarted).
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
	state = DISPATCHER_NOT_READY;
	woken = true;
	pg_usleep(Min(errors_in_a_row, 5) * 200000L);
}

/*
 * Stops: no new claims, and a claim held for the standbys is given back;
 * in-flight requests get dialer.shutdown_timeout to end, then those still
 * open are abandoned (results.c says how) and the outcomes stored.
 */
static void
drain_and_exit(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dialer_shutdown_timeout_ms);

	dispatch_round_give_back();
	dialer_shared_set_state("stopping");
	while (http_in_flight() > 0 && GetCurrentTimestamp() < deadline)
	{
		http_wait(10);
		results_collect(true);
	}
	results_abandon_in_flight();
	results_store();
	ereport(LOG,
			(errmsg("pg_dialer dispatcher stopping")));
	proc_exit(1);
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
		pacing_reload_soon();
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
		state = DISPATCHER_NOT_READY;
	}
	if (dialer_shared->held_by != 0 && dialer_shared->held_until > GetCurrentTimestamp())
		shutdown_requested = true;
	SpinLockRelease(&dialer_shared->mutex);
	if (shutdown_requested)
		drain_and_exit();
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
 * Takes what a round did: when it is over, what it found (the loop
 * dispatches on); when it holds a claim, the loop waits for the standbys.
 */
static void
took_round(bool over, const RoundResult *result)
{
	if (!over)
	{
		state = DISPATCHER_WAITING_FOR_STANDBYS;
		return;
	}
	state = DISPATCHER_DISPATCHING;
	next_due = result->next;
	more = result->more_due;
	slots_awaited = result->slots_awaited;
}

/*
 * Runs a dispatch round when there may be something to do: the dispatcher
 * was woken, outcomes were stored, a call fell due, or slots freed up for
 * calls that are waiting.  A wake-up that comes while the round holds a
 * claim for the standbys is kept for the next round.
 */
static void
dispatch_if_due(int cap)
{
	TimestampTz now = GetCurrentTimestamp();
	RoundResult result;
	bool		was_woken = woken;

	if (!dialer_enabled)
	{
		dialer_shared_set_state("paused (dialer.enabled = off)");
		next_due = 0;
		return;
	}
	if (woken || recheck || (next_due != 0 && now >= next_due) ||
		((more || slots_awaited) && cap - http_in_flight() >= dispatch_refill_threshold(cap)))
	{
		pacing_reload_if_changed(now);
		dialer_shared_set_state("dispatching");
		woken = recheck = false;
		took_round(dispatch_round_run(cap, was_woken, &result), &result);
	}
}

/*
 * Waiting for standbys: once they have flushed the held claim, its calls
 * leave and the round goes on.
 */
static void
send_when_flushed(void)
{
	RoundResult result;

	if (standby_hold_released())
		took_round(dispatch_round_resume(&result), &result);
}

/*
 * Whether the waiting outcomes are to be stored now: when a batch is full,
 * when nothing is in flight, or when the slots are full anyway (the
 * dispatcher would only wait) and the oldest has waited 5 ms; while slots are
 * free to refill, refilling comes first, up to 100 ms.
 */
static bool
time_to_store(int cap)
{
	if (!results_waiting())
		return false;
	return results_batch_full() || http_in_flight() == 0 ||
		(cap - http_in_flight() < dispatch_refill_threshold(cap) && results_older_than(5)) ||
		results_older_than(100);
}

/*
 * Publishes the dispatcher's state, counters and providers, and lets the
 * statistics collector (and so autovacuum) see the dispatcher's work.  While
 * a claim waits for the standbys, the state says so (standby.c).
 */
static void
publish_state(void)
{
	if (state == DISPATCHER_DISPATCHING && dialer_enabled &&
		http_in_flight() == 0 && !results_waiting() && !pacing_publish_stall())
		dialer_shared_set_state("idle");
	pgstat_report_stat(http_in_flight() == 0);
	SpinLockAcquire(&dialer_shared->mutex);
	dialer_shared->in_flight = http_in_flight();
	SpinLockRelease(&dialer_shared->mutex);
	pacing_publish_providers();
}

/*
 * Waits for the time the loop must next act, a latch wake-up or socket
 * activity.  With requests in flight it waits on their sockets and the latch
 * together (http_wait); otherwise on the latch alone.  Outcomes waiting to be
 * stored bring the loop back within 10 ms (time_to_store).  While a claim is
 * held for the standbys nothing else is due (no round runs): the loop looks
 * again every STANDBY_POLL_MS, since the walsenders do not wake this process.
 */
static void
wait_for_work(TimestampTz until)
{
	long		timeout_ms = -1;

	if (state == DISPATCHER_WAITING_FOR_STANDBYS)
		timeout_ms = STANDBY_POLL_MS;
	else if (until != 0)
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
 * Whether the loop goes straight back to claiming: calls are due and slots
 * are free for them.
 */
static bool
claim_again_now(int cap)
{
	return state == DISPATCHER_DISPATCHING && dialer_enabled && more &&
		(http_in_flight() == 0 || cap - http_in_flight() >= dispatch_refill_threshold(cap));
}

/*
 * The dispatcher's entry point: attach to the database's slot, then loop.
 * Each turn of the loop takes signals and requests, makes sure the schema is
 * ready, collects finished requests, starts new ones (first, so the pipeline
 * stays full) or sends a held claim the standbys have flushed, stores
 * outcomes, publishes its state and waits.
 */
void
dialer_dispatcher_main(Datum main_arg)
{
	sigjmp_buf	local_sigjmp_buf;

	attach_to_slot(main_arg);
	http_init();
	results_init();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer loop", ALLOCSET_DEFAULT_SIZES);

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
		if (state == DISPATCHER_NOT_READY && !become_ready())
			continue;
		if (settings_reloaded)
			reevaluate_parked_calls();

		results_collect(shutdown_requested);
		cap = http_effective_concurrency(dialer_max_concurrency);
		http_set_limit(cap);
		if (state == DISPATCHER_WAITING_FOR_STANDBYS)
			send_when_flushed();
		else
			dispatch_if_due(cap);
		if (time_to_store(cap))
		{
			results_store();
			/* retries may be due sooner than anything else */
			recheck = true;
			continue;
		}

		errors_in_a_row = 0;
		publish_state();
		/* with free slots and more calls due, go straight back to claiming */
		if (claim_again_now(cap))
			http_kick();
		else
			wait_for_work(next_due);
		take_latch();
	}
}
