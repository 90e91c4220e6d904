/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The dispatchers' shared state, one slot per served database: what
 *	  dialer.worker_status() and dialer.provider_status() report, and how a
 *	  committing transaction finds the latch of its database's dispatcher to
 *	  wake it.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "shmem.h"

DialerControl *dialer_control = NULL;

/* in a dispatcher, its own slot; NULL in other processes */
DialerShared *dialer_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* set by dialer.wake_worker() and dialer.providers_changed(), acted on at commit */
static bool wake_at_commit = false;
static bool providers_changed_at_commit = false;

PG_FUNCTION_INFO_V1(dialer_wake_worker);
PG_FUNCTION_INFO_V1(dialer_wake_worker_quietly);
PG_FUNCTION_INFO_V1(dialer_providers_changed);
PG_FUNCTION_INFO_V1(dialer_worker_status);
PG_FUNCTION_INFO_V1(dialer_provider_status);
PG_FUNCTION_INFO_V1(dialer_dispatchers);

/*
 * One slot per possible background worker: a server cannot run more
 * dispatchers than max_worker_processes.
 */
static Size
dialer_shmem_size(void)
{
	return add_size(offsetof(DialerControl, slots),
					mul_size(sizeof(DialerShared), max_worker_processes));
}

static void
dialer_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(dialer_shmem_size()));
}

static void
dialer_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	dialer_control = ShmemInitStruct("pg_dialer", dialer_shmem_size(), &found);
	if (!found)
	{
		int			i;

		memset(dialer_control, 0, dialer_shmem_size());
		SpinLockInit(&dialer_control->mutex);
		dialer_control->launcher_procno = -1;
		dialer_control->n_slots = max_worker_processes;
		for (i = 0; i < dialer_control->n_slots; i++)
		{
			SpinLockInit(&dialer_control->slots[i].mutex);
			dialer_control->slots[i].dispatcher_procno = -1;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The slot assigned to a database, or NULL (none assigned, or the library was
 * not preloaded).
 */
DialerShared *
dialer_slot_for_database(Oid dboid)
{
	int			i;

	if (dialer_control == NULL || !OidIsValid(dboid))
		return NULL;
	for (i = 0; i < dialer_control->n_slots; i++)
	{
		DialerShared *slot = &dialer_control->slots[i];
		bool		match;

		SpinLockAcquire(&slot->mutex);
		match = slot->in_use && slot->database_oid == dboid;
		SpinLockRelease(&slot->mutex);
		if (match)
			return slot;
	}
	return NULL;
}

/* Sets the launcher's latch, if a launcher runs. */
void
dialer_wake_launcher(void)
{
	int			procno;

	if (dialer_control == NULL)
		return;
	SpinLockAcquire(&dialer_control->mutex);
	procno = dialer_control->launcher_procno;
	SpinLockRelease(&dialer_control->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * The slot of this process's dispatcher, or of this database's dispatcher in
 * a backend.
 */
static DialerShared *
my_database_slot(void)
{
	return dialer_shared != NULL ? dialer_shared : dialer_slot_for_database(MyDatabaseId);
}

/*
 * Sets the latch of this database's dispatcher if one runs.  The latch is
 * found through the dispatcher's procno, never through a stored pointer.
 */
static void
wake_dispatcher_now(void)
{
	DialerShared *slot = my_database_slot();
	int			procno;

	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	procno = slot->dispatcher_procno;
	SpinLockRelease(&slot->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * Transaction callback: wake the dispatcher once the transaction that enqueued
 * calls has committed (its rows are visible by then), forget the wish on
 * abort.
 */
static void
dialer_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (providers_changed_at_commit && my_database_slot() != NULL)
			{
				DialerShared *slot = my_database_slot();

				SpinLockAcquire(&slot->mutex);
				slot->providers_version++;
				SpinLockRelease(&slot->mutex);
			}
			if (wake_at_commit || providers_changed_at_commit)
				wake_dispatcher_now();
			wake_at_commit = providers_changed_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction's calls are found at the next wake-up */
			wake_at_commit = providers_changed_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Installs the shared memory hooks and the commit callback.  Called from
 * _PG_init in the postmaster; the hooks and callback are inherited by every
 * backend.
 */
void
dialer_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = dialer_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = dialer_shmem_startup;
	RegisterXactCallback(dialer_xact_callback, NULL);
}

void
dialer_shared_set_state(const char *state)
{
	if (dialer_shared == NULL)
		return;
	SpinLockAcquire(&dialer_shared->mutex);
	strlcpy(dialer_shared->state, state, DIALER_STATE_LEN);
	SpinLockRelease(&dialer_shared->mutex);
}

/*
 * Records the dispatcher's last error for dialer.worker_status().  The caller
 * must never pass a secret: errors are built from statuses, codes and provider
 * names.
 */
void
dialer_shared_set_error(const char *fmt,...)
{
	char		buf[DIALER_ERROR_LEN];
	va_list		ap;

	if (dialer_shared == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	SpinLockAcquire(&dialer_shared->mutex);
	strlcpy(dialer_shared->last_error, buf, DIALER_ERROR_LEN);
	dialer_shared->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&dialer_shared->mutex);
}

/*
 * Adds n to one of the counters this dispatcher publishes (dispatched,
 * accepted, retried, failed), with its requests in flight.
 */
void
dialer_shared_count(uint64 *counter, int n, int in_flight)
{
	SpinLockAcquire(&dialer_shared->mutex);
	*counter += n;
	dialer_shared->in_flight = in_flight;
	SpinLockRelease(&dialer_shared->mutex);
}

/*
 * Whether a dispatcher serves the current database: the library is preloaded,
 * its launcher runs, and dialer.databases names the database.  (The launcher,
 * not a dispatcher, is what must run: a dispatcher may be starting.)  The one
 * home of that rule: dialer.is_served() and the warning below use it.
 */
bool
dialer_this_database_served(void)
{
	pid_t		launcher;

	if (dialer_control == NULL)
		return false;
	SpinLockAcquire(&dialer_control->mutex);
	launcher = dialer_control->launcher_pid;
	SpinLockRelease(&dialer_control->mutex);
	return launcher != 0 && dialer_database_is_served(get_database_name(MyDatabaseId));
}

/*
 * Warns, once per transaction that enqueues calls, when no dispatcher serves
 * this database: the calls would be accepted and then wait for ever.
 */
static void
warn_if_not_served(void)
{
	if (dialer_this_database_served())
		return;
	ereport(WARNING,
			(errmsg("no pg_dialer dispatcher serves database \"%s\": calls enqueued here are not dispatched",
					get_database_name(MyDatabaseId)),
			 dialer_control == NULL ?
			 errdetail("pg_dialer is not in shared_preload_libraries.") :
			 !dialer_database_is_served(get_database_name(MyDatabaseId)) ?
			 errdetail("dialer.databases does not name this database.") :
			 errdetail("The pg_dialer launcher is not running."),
			 dialer_control == NULL ?
			 errhint("Add pg_dialer to shared_preload_libraries and restart the server.") :
			 errhint("Add this database to dialer.databases (or set it to *) and reload the configuration.")));
}

/*
 * dialer.wake_worker(): wake the dispatcher when this transaction commits.
 */
Datum
dialer_wake_worker(PG_FUNCTION_ARGS)
{
	if (!wake_at_commit)
		warn_if_not_served();
	wake_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * dialer.wake_worker_quietly(): the same, without the warning: for webhooks,
 * whose callers are providers (a warning per callback would only fill the
 * log; the enqueue that made the call has warned).
 */
Datum
dialer_wake_worker_quietly(PG_FUNCTION_ARGS)
{
	wake_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * dialer.providers_changed(): tell the dispatcher, when this transaction
 * commits, to reload the provider configurations, and wake it.
 */
Datum
dialer_providers_changed(PG_FUNCTION_ARGS)
{
	providers_changed_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * dialer.worker_status(): one row for the dispatcher of the current database,
 * none when no dispatcher runs for it (or the library was not preloaded).
 * standby_wait_since and standby_wait_lsn are set while claimed calls wait
 * for standbys.
 */
Datum
dialer_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DialerShared *slot;
	DialerShared snap;
	Datum		values[13];
	bool		nulls[13];

	InitMaterializedSRF(fcinfo, 0);

	slot = my_database_slot();
	if (slot == NULL)
		PG_RETURN_VOID();

	SpinLockAcquire(&slot->mutex);
	memcpy(&snap, slot, sizeof(DialerShared));
	SpinLockRelease(&slot->mutex);

	if (snap.dispatcher_pid == 0 || snap.database_oid != MyDatabaseId)
		PG_RETURN_VOID();

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(snap.dispatcher_pid);
	values[1] = CStringGetTextDatum(snap.database);
	values[2] = CStringGetTextDatum(snap.state);
	values[3] = TimestampTzGetDatum(snap.started_at);
	values[4] = Int32GetDatum(snap.in_flight);
	values[5] = Int64GetDatum((int64) snap.dispatched);
	values[6] = Int64GetDatum((int64) snap.accepted);
	values[7] = Int64GetDatum((int64) snap.retried);
	values[8] = Int64GetDatum((int64) snap.failed);
	if (snap.last_error[0] != '\0')
	{
		values[9] = CStringGetTextDatum(snap.last_error);
		values[10] = TimestampTzGetDatum(snap.last_error_at);
	}
	else
		nulls[9] = nulls[10] = true;
	if (snap.standby_wait_since != 0)
	{
		values[11] = TimestampTzGetDatum(snap.standby_wait_since);
		values[12] = LSNGetDatum(snap.standby_wait_lsn);
	}
	else
		nulls[11] = nulls[12] = true;

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	PG_RETURN_VOID();
}

/*
 * dialer.provider_status(): the pacing state the current database's
 * dispatcher last published for each provider it loaded.
 */
Datum
dialer_provider_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DialerShared *slot;
	DialerProviderState states[DIALER_MAX_PUBLISHED_PROVIDERS];
	int			n = 0;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	slot = my_database_slot();
	if (slot == NULL)
		PG_RETURN_VOID();
	SpinLockAcquire(&slot->mutex);
	if (slot->dispatcher_pid != 0 && slot->database_oid == MyDatabaseId)
	{
		n = slot->n_providers;
		memcpy(states, slot->providers, sizeof(DialerProviderState) * n);
	}
	SpinLockRelease(&slot->mutex);

	for (i = 0; i < n; i++)
	{
		Datum		values[6];
		bool		nulls[6];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(states[i].name);
		values[1] = Int32GetDatum(states[i].in_flight);
		values[2] = Float8GetDatum(states[i].calls_per_second);
		/* the budget is at most a second's worth of calls */
		values[3] = Float8GetDatum(Max(0.0, Max(1.0, states[i].calls_per_second) - states[i].tokens));
		values[4] = Int32GetDatum(states[i].consecutive_failures);
		if (states[i].paused_until != 0)
			values[5] = TimestampTzGetDatum(states[i].paused_until);
		else
			nulls[5] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/*
 * dialer.dispatchers(): every database the launcher assigned a dispatcher
 * slot to, with the dispatcher's pid (NULL when none runs) and state.  It
 * names other databases, so EXECUTE is granted only by dialer.grant_monitoring().
 */
Datum
dialer_dispatchers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (dialer_control == NULL)
		PG_RETURN_VOID();

	for (i = 0; i < dialer_control->n_slots; i++)
	{
		DialerShared *slot = &dialer_control->slots[i];
		Datum		values[5];
		bool		nulls[5];
		bool		in_use;
		Oid			dboid;
		pid_t		pid;
		char		database[NAMEDATALEN];
		char		state[DIALER_STATE_LEN];
		TimestampTz started_at;

		SpinLockAcquire(&slot->mutex);
		in_use = slot->in_use;
		dboid = slot->database_oid;
		pid = slot->dispatcher_pid;
		strlcpy(database, slot->database, NAMEDATALEN);
		strlcpy(state, slot->state, DIALER_STATE_LEN);
		started_at = slot->started_at;
		SpinLockRelease(&slot->mutex);
		if (!in_use)
			continue;

		memset(nulls, 0, sizeof(nulls));
		values[0] = ObjectIdGetDatum(dboid);
		values[1] = CStringGetTextDatum(database);
		values[2] = Int32GetDatum(pid);
		nulls[2] = pid == 0;
		values[3] = CStringGetTextDatum(state);
		values[4] = TimestampTzGetDatum(started_at);
		nulls[4] = started_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
