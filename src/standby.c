/*-------------------------------------------------------------------------
 *
 * standby.c
 *	  Waiting for standbys: whether the streaming standbys that could be
 *	  promoted have flushed the WAL up to a position, as dialer.standby_wait
 *	  asks, and the claim the dispatcher holds until they have.  The
 *	  dispatcher asks before the requests of a claim leave, so that a
 *	  failover never finds a call it dialled still 'scheduled'.  Reads the
 *	  walsenders' and the replication slots' shared state, as
 *	  pg_stat_replication does, with no transaction.
 *
 *	  The walsenders do not wake the dispatcher when a standby replies: while
 *	  a claim is held, the dispatcher's loop asks again every
 *	  STANDBY_POLL_MS, and goes on meanwhile with everything but new claims.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/standby.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "replication/slot.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "shmem.h"
#include "standby.h"

/* the claim held until the standbys have flushed it (hold_since 0: none) */
static XLogRecPtr hold_lsn = InvalidXLogRecPtr;
static int	hold_calls = 0;
static TimestampTz hold_since = 0;
static TimestampTz hold_warn_at = 0;
static bool hold_warned = false;

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
 * Whether the requests of n_calls calls, claimed by the transaction whose
 * commit record ends at lsn, may leave now: the standbys dialer.standby_wait
 * names have flushed it.  With synchronous replication the commit itself
 * waited for the synchronous standbys (the dispatcher commits with
 * synchronous_commit = on, i.e. remote flush), so their walsenders already
 * report the LSN and this is true at once.  When it is false, the claim is
 * held from now on: worker_status() says "waiting for standbys", since when
 * and for which LSN, until standby_hold_released() or
 * standby_hold_abandon().
 */
bool
standby_hold_begin(XLogRecPtr lsn, int n_calls)
{
	int			n_standbys;
	int			n_flushed;

	if (standbys_have_flushed(lsn, &n_standbys, &n_flushed))
		return true;
	hold_lsn = lsn;
	hold_calls = n_calls;
	hold_since = GetCurrentTimestamp();
	hold_warn_at = TimestampTzPlusMilliseconds(hold_since, dialer_standby_wait_timeout_ms);
	hold_warned = false;
	publish_standby_wait(hold_since, lsn);
	return false;
}

/*
 * Warns that the held claim has waited past dialer.standby_wait_timeout (in
 * the log and in worker_status()'s last error), and again each period: the
 * calls stay claimed and unsent.
 */
static void
warn_held(TimestampTz now, int n_standbys, int n_flushed)
{
	long		waited_ms = (long) ((now - hold_since) / 1000);

	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("pg_dialer: %d claimed call(s) have waited %ld ms for standbys to flush their claim; they are not sent meanwhile",
					hold_calls, waited_ms),
			 errdetail("The claim's commit LSN is %X/%X; %d of the %d connected standby(s) have flushed it (dialer.standby_wait = %s).",
					   LSN_FORMAT_ARGS(hold_lsn), n_flushed, n_standbys,
					   dialer_standby_wait == STANDBY_WAIT_ANY ? "any" : "all"),
			 errhint("Check the standbys in pg_stat_replication: one that stops replying is dropped after wal_sender_timeout, and the calls then leave.")));
	dialer_shared_set_error("waiting %ld ms for standbys to flush claim LSN %X/%X (%d of %d flushed)",
							waited_ms, LSN_FORMAT_ARGS(hold_lsn), n_flushed, n_standbys);
	hold_warned = true;
	hold_warn_at = TimestampTzPlusMilliseconds(now, dialer_standby_wait_timeout_ms);
}

/*
 * Whether the standbys have now flushed the held claim (as dialer.standby_wait
 * says now: a reload may have changed it).  Then the hold ends, and when it
 * was warned about, the log says the calls leave.  Otherwise warns when the
 * period is over.
 */
bool
standby_hold_released(void)
{
	int			n_standbys;
	int			n_flushed;
	TimestampTz now;

	if (standbys_have_flushed(hold_lsn, &n_standbys, &n_flushed))
	{
		publish_standby_wait(0, InvalidXLogRecPtr);
		if (hold_warned)
			ereport(LOG,
					(errmsg("pg_dialer: the standbys flushed claim LSN %X/%X after %ld ms; sending its %d call(s)",
							LSN_FORMAT_ARGS(hold_lsn), (long) ((GetCurrentTimestamp() - hold_since) / 1000),
							hold_calls)));
		hold_since = 0;
		return true;
	}
	now = GetCurrentTimestamp();
	if (now >= hold_warn_at)
		warn_held(now, n_standbys, n_flushed);
	return false;
}

/*
 * Ends the hold without sending: the dispatcher gives the claim back.
 */
void
standby_hold_abandon(void)
{
	if (hold_since != 0)
		publish_standby_wait(0, InvalidXLogRecPtr);
	hold_since = 0;
}
