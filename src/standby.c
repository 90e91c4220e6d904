/*-------------------------------------------------------------------------
 *
 * standby.c
 *	  Whether the streaming standbys that could be promoted have flushed the
 *	  WAL up to a position, as dialer.standby_wait asks.  The dispatcher asks
 *	  before the requests of a claim leave, so that a failover never finds a
 *	  call it dialled still 'scheduled'.  Reads the walsenders' and the
 *	  replication slots' shared state, as pg_stat_replication does, with no
 *	  transaction.
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

#include "settings.h"
#include "standby.h"

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
bool
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
