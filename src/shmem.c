/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The dispatcher's shared state: what dialer.worker_status() reports, and
 *	  how a committing transaction finds the worker's latch to wake it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
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

#include "pg_dialer.h"

DialerShared *dialer_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* set by dialer.wake_worker() and dialer.providers_changed(), acted on at commit */
static bool wake_at_commit = false;
static bool providers_changed_at_commit = false;

PG_FUNCTION_INFO_V1(dialer_wake_worker);
PG_FUNCTION_INFO_V1(dialer_providers_changed);
PG_FUNCTION_INFO_V1(dialer_worker_status);

static void
dialer_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DialerShared)));
}

static void
dialer_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	dialer_shared = ShmemInitStruct("pg_dialer", sizeof(DialerShared), &found);
	if (!found)
	{
		memset(dialer_shared, 0, sizeof(DialerShared));
		SpinLockInit(&dialer_shared->mutex);
		dialer_shared->worker_procno = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Sets the worker's latch if a worker runs.  The latch is found through the
 * worker's procno, never through a stored pointer.
 */
static void
wake_worker_now(void)
{
	int			procno;

	if (dialer_shared == NULL)
		return;
	SpinLockAcquire(&dialer_shared->mutex);
	procno = dialer_shared->worker_procno;
	SpinLockRelease(&dialer_shared->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * Transaction callback: wake the worker once the transaction that enqueued calls
 * has committed (its rows are visible by then), forget the wish on abort.
 */
static void
dialer_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (providers_changed_at_commit && dialer_shared != NULL)
			{
				SpinLockAcquire(&dialer_shared->mutex);
				dialer_shared->providers_version++;
				SpinLockRelease(&dialer_shared->mutex);
			}
			if (wake_at_commit || providers_changed_at_commit)
				wake_worker_now();
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
 * Records the worker's last error for dialer.worker_status().  The caller must
 * never pass a secret: errors are built from statuses, codes and provider names.
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
 * dialer.wake_worker(): wake the dispatcher when this transaction commits.
 */
Datum
dialer_wake_worker(PG_FUNCTION_ARGS)
{
	wake_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * dialer.providers_changed(): tell the worker, when this transaction commits, to
 * reload the provider configurations, and wake it.
 */
Datum
dialer_providers_changed(PG_FUNCTION_ARGS)
{
	providers_changed_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * dialer.worker_status(): one row for the running worker, none when no worker
 * runs (or the library was not preloaded).  standby_wait_since and
 * standby_wait_lsn are set while claimed calls wait for standbys.
 */
Datum
dialer_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DialerShared snap;
	Datum		values[13];
	bool		nulls[13];

	InitMaterializedSRF(fcinfo, 0);

	if (dialer_shared == NULL)
		PG_RETURN_VOID();

	SpinLockAcquire(&dialer_shared->mutex);
	memcpy(&snap, dialer_shared, sizeof(DialerShared));
	SpinLockRelease(&dialer_shared->mutex);

	if (snap.worker_pid == 0)
		PG_RETURN_VOID();

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(snap.worker_pid);
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
