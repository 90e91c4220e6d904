/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one background worker per server that starts a dispatcher
 *	  for each database served (dialer.databases) where the extension is
 *	  created, restarts those that stop, and stops those of databases no
 *	  longer served.
 *
 *	  The launcher connects to no database: it reads the shared catalog
 *	  pg_database, so finding databases costs no connection to each.  Whether
 *	  the extension exists in a database is only known inside it, so a
 *	  dispatcher is started once per served database; where the extension is
 *	  missing it exits at once and the launcher does not start it again until
 *	  CREATE EXTENSION pg_dialer commits there or the launcher itself
 *	  restarts.  What happens in other backends (CREATE EXTENSION committed, a
 *	  DROP DATABASE holding its database) reaches the launcher through the
 *	  shared slots, left there by the hooks of backend_hooks.c.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
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
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "launcher.h"
#include "settings.h"
#include "shmem.h"

/* how long a dispatcher that stopped waits before the launcher starts it again */
#define DISPATCHER_RESTART_MS	5000

/* the launcher's own view of each slot (launcher process only) */
typedef struct SlotLocal
{
	BackgroundWorkerHandle *handle; /* NULL: not started by this launcher */
	TimestampTz stopped_at;		/* seen stopped at (0: running or new) */
	TimestampTz event_at;		/* last CREATE EXTENSION in its database */
	TimestampTz launched_at;	/* when this launcher last started it */
	bool		warned;			/* a start failure was logged */
} SlotLocal;

static SlotLocal *slot_local = NULL;

/* databases found without the extension (launcher process only) */
static List *without_extension = NIL;

/* a database the launcher could not give a slot to was warned about */
static List *warned_no_slot = NIL;

/*
 * Registers the launcher with the postmaster (from _PG_init).  It is
 * restarted 5 seconds after it exits with an error or is terminated.
 */
void
dialer_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "pg_dialer", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "dialer_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pg_dialer launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_dialer launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

typedef struct DatabaseEntry
{
	Oid			oid;
	char		name[NAMEDATALEN];
} DatabaseEntry;

/*
 * The served databases that accept connections, read from pg_database.
 * Returned in the caller's memory context.
 */
static List *
served_databases(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		DatabaseEntry *e;
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate || !dialer_database_is_served(NameStr(db->datname)))
			continue;
		old = MemoryContextSwitchTo(caller);
		e = palloc(sizeof(DatabaseEntry));
		e->oid = db->oid;
		strlcpy(e->name, NameStr(db->datname), NAMEDATALEN);
		result = lappend(result, e);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return result;
}

/* The pid of a slot's dispatcher, 0 when it does not run. */
static pid_t
slot_pid(int i)
{
	DialerShared *slot = &dialer_control->slots[i];
	pid_t		pid = 0;

	if (slot_local[i].handle != NULL)
	{
		BgwHandleStatus st = GetBackgroundWorkerPid(slot_local[i].handle, &pid);

		if (st == BGWH_NOT_YET_STARTED)
			return -1;			/* starting: treated as running */
		if (st != BGWH_STARTED)
			return 0;
		return pid;
	}
	SpinLockAcquire(&slot->mutex);
	pid = slot->dispatcher_pid;
	SpinLockRelease(&slot->mutex);
	return pid;
}

/*
 * Starts the dispatcher of the database assigned to slot i.  Logs a WARNING
 * (once until it succeeds) when no background worker slot is free.
 */
static void
start_dispatcher(int i)
{
	DialerShared *slot = &dialer_control->slots[i];
	BackgroundWorker worker;
	Oid			dboid;
	char		name[NAMEDATALEN];
	MemoryContext old;
	bool		registered;

	SpinLockAcquire(&slot->mutex);
	dboid = slot->database_oid;
	strlcpy(name, slot->database, NAMEDATALEN);
	slot->no_extension = false;
	strlcpy(slot->state, "starting", DIALER_STATE_LEN);
	SpinLockRelease(&slot->mutex);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* the launcher restarts it, not the postmaster */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "pg_dialer", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "dialer_dispatcher_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_dialer dispatcher %s", name);
	strlcpy(worker.bgw_type, "pg_dialer dispatcher", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(i);
	memcpy(worker.bgw_extra, &dboid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	slot_local[i].stopped_at = 0;
	if (slot_local[i].handle != NULL)
		pfree(slot_local[i].handle);
	slot_local[i].handle = NULL;
	/* the handle outlives the pass */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &slot_local[i].handle);
	MemoryContextSwitchTo(old);
	if (registered)
	{
		slot_local[i].launched_at = GetCurrentTimestamp();
		slot_local[i].warned = false;
		return;
	}
	slot_local[i].handle = NULL;
	slot_local[i].stopped_at = GetCurrentTimestamp();
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->state, "not started: no worker slot", DIALER_STATE_LEN);
	SpinLockRelease(&slot->mutex);
	if (!slot_local[i].warned)
		ereport(WARNING,
				(errmsg("pg_dialer: could not start a dispatcher for database \"%s\": no background worker slot is free", name),
				 errdetail("max_worker_processes is %d; pg_dialer needs 1 for its launcher and 1 per database it serves, besides what other extensions (pg_cron, parallel query, logical replication) use.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes (server restart), or serve fewer databases with dialer.databases. Calls in \"%s\" wait until a dispatcher runs.", name)));
	slot_local[i].warned = true;
}

/* Gives a database a free slot, or returns -1 (warned once per database). */
static int
assign_slot(DatabaseEntry *db)
{
	int			i;

	for (i = 0; i < dialer_control->n_slots; i++)
	{
		DialerShared *slot = &dialer_control->slots[i];
		bool		taken;

		SpinLockAcquire(&slot->mutex);
		taken = slot->in_use;
		if (!taken)
		{
			slot->in_use = true;
			slot->database_oid = db->oid;
			strlcpy(slot->database, db->name, NAMEDATALEN);
			slot->dispatcher_pid = 0;
			slot->dispatcher_procno = -1;
			slot->started_at = 0;
			slot->dispatched = slot->accepted = slot->retried = slot->failed = 0;
			slot->last_error[0] = '\0';
			slot->last_error_at = 0;
			slot->no_extension = false;
			slot->recheck_extension = false;
			slot->held_by = 0;
			slot->held_until = 0;
			slot->n_providers = 0;
		}
		SpinLockRelease(&slot->mutex);
		if (!taken)
		{
			memset(&slot_local[i], 0, sizeof(SlotLocal));
			return i;
		}
	}
	if (!list_member_oid(warned_no_slot, db->oid))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		warned_no_slot = lappend_oid(warned_no_slot, db->oid);
		MemoryContextSwitchTo(old);
		ereport(WARNING,
				(errmsg("pg_dialer: no dispatcher slot left for database \"%s\"", db->name),
				 errdetail("pg_dialer has one slot per background worker (max_worker_processes = %d).", max_worker_processes),
				 errhint("Raise max_worker_processes, or serve fewer databases with dialer.databases.")));
	}
	return -1;
}

/* Frees a slot whose database is no longer served (its dispatcher has stopped). */
static void
release_slot(int i)
{
	DialerShared *slot = &dialer_control->slots[i];

	SpinLockAcquire(&slot->mutex);
	slot->in_use = false;
	slot->database_oid = InvalidOid;
	SpinLockRelease(&slot->mutex);
	if (slot_local[i].handle != NULL)
		pfree(slot_local[i].handle);
	memset(&slot_local[i], 0, sizeof(SlotLocal));
}

/*
 * Takes the databases where CREATE EXTENSION pg_dialer committed: they are
 * looked at again even if a dispatcher found no extension there before.
 */
static void
take_events(TimestampTz now)
{
	Oid			events[DIALER_EVENTS];
	int			n,
				i,
				j;
	bool		overflow;

	SpinLockAcquire(&dialer_control->mutex);
	n = dialer_control->n_events;
	memcpy(events, dialer_control->events, sizeof(Oid) * n);
	overflow = dialer_control->events_overflow;
	dialer_control->n_events = 0;
	dialer_control->events_overflow = false;
	SpinLockRelease(&dialer_control->mutex);

	if (overflow)
	{
		list_free(without_extension);
		without_extension = NIL;
	}
	for (i = 0; i < n; i++)
	{
		without_extension = list_delete_oid(without_extension, events[i]);
		for (j = 0; j < dialer_control->n_slots; j++)
		{
			DialerShared *slot = &dialer_control->slots[j];
			bool		match;

			SpinLockAcquire(&slot->mutex);
			match = slot->in_use && slot->database_oid == events[i];
			SpinLockRelease(&slot->mutex);
			if (match)
				slot_local[j].event_at = now;
		}
	}
}

/* Whether the database is in the list of served databases. */
static bool
database_listed(List *dbs, Oid dboid)
{
	ListCell   *lc;

	foreach(lc, dbs)
	{
		if (((DatabaseEntry *) lfirst(lc))->oid == dboid)
			return true;
	}
	return false;
}

/*
 * Stops the dispatchers of databases that are gone or no longer served, and
 * frees their slots once they have stopped.  Lowers *sleep_ms while one is
 * stopping.
 */
static void
stop_unserved(List *dbs, long *sleep_ms)
{
	int			i;

	for (i = 0; i < dialer_control->n_slots; i++)
	{
		DialerShared *slot = &dialer_control->slots[i];
		bool		in_use;
		Oid			dboid;
		pid_t		pid;

		SpinLockAcquire(&slot->mutex);
		in_use = slot->in_use;
		dboid = slot->database_oid;
		SpinLockRelease(&slot->mutex);
		if (!in_use || database_listed(dbs, dboid))
			continue;
		pid = slot_pid(i);
		if (pid > 0)
		{
			ereport(LOG,
					(errmsg("pg_dialer: stopping the dispatcher of database \"%s\": it is no longer served", slot->database)));
			kill(pid, SIGTERM);
			*sleep_ms = Min(*sleep_ms, 200);
		}
		else if (pid == 0)
			release_slot(i);
		else
			*sleep_ms = Min(*sleep_ms, 200);
	}
}

/*
 * Starts the dispatcher of a served database when it has none, unless a DROP
 * DATABASE (or the like) holds the database, or the extension was not there
 * the last time it looked and no CREATE EXTENSION was reported since; a
 * dispatcher that stopped is started again after DISPATCHER_RESTART_MS.
 * Lowers *sleep_ms to when it must look again.
 */
static void
tend_dispatcher(DatabaseEntry *db, TimestampTz now, long *sleep_ms)
{
	DialerShared *slot;
	bool		no_extension;
	pid_t		held_by;
	TimestampTz held_until;
	TimestampTz started_at;
	int			i;

	slot = dialer_slot_for_database(db->oid);
	if (slot == NULL)
	{
		i = assign_slot(db);
		if (i >= 0)
			start_dispatcher(i);
		return;
	}
	i = slot - dialer_control->slots;

	SpinLockAcquire(&slot->mutex);
	no_extension = slot->no_extension;
	held_by = slot->held_by;
	held_until = slot->held_until;
	started_at = slot->started_at;
	strlcpy(slot->database, db->name, NAMEDATALEN); /* renamed, perhaps */
	SpinLockRelease(&slot->mutex);

	if (slot_pid(i) != 0)
		return;					/* running or starting */
	if (held_by != 0 && held_until > now)
	{
		*sleep_ms = Min(*sleep_ms, 500);
		return;					/* DROP DATABASE or the like in progress */
	}
	if (no_extension)
	{
		/* started again only after a CREATE EXTENSION since it looked */
		if (slot_local[i].event_at > started_at)
			start_dispatcher(i);
		else
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			without_extension = lappend_oid(without_extension, db->oid);
			MemoryContextSwitchTo(old);
			release_slot(i);
		}
		return;
	}
	if (slot_local[i].stopped_at == 0)
	{
		if (slot_local[i].handle == NULL)
		{
			/* never started by this launcher */
			start_dispatcher(i);
			return;
		}

		/* it just stopped (an error, or terminated): wait a little */
		slot_local[i].stopped_at = now;
		if (started_at < slot_local[i].launched_at)
			ereport(WARNING,
					(errmsg("pg_dialer: the dispatcher of database \"%s\" exited before it could connect", db->name),
					 errdetail("The server log above has its error."),
					 errhint("It is started again in %d s.", DISPATCHER_RESTART_MS / 1000)));
	}
	if (TimestampDifferenceExceeds(slot_local[i].stopped_at, now, DISPATCHER_RESTART_MS))
		start_dispatcher(i);
	else
	{
		/* sleep until it is due */
		long		waited_ms = (long) ((now - slot_local[i].stopped_at) / 1000);

		*sleep_ms = Min(*sleep_ms, Max(DISPATCHER_RESTART_MS - waited_ms, 10));
	}
}

/* Forgets the databases without the extension that are gone or not served. */
static void
forget_unlisted_without_extension(List *dbs)
{
	List	   *keep = NIL;
	ListCell   *oc;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	foreach(oc, without_extension)
	{
		if (database_listed(dbs, lfirst_oid(oc)))
			keep = lappend_oid(keep, lfirst_oid(oc));
	}
	list_free(without_extension);
	without_extension = keep;
	MemoryContextSwitchTo(old);
}

/*
 * One pass: stop dispatchers of databases no longer served or gone, start
 * those of served databases, restart those that stopped.  Returns how long
 * to sleep (ms).
 */
static long
launcher_pass(void)
{
	TimestampTz now = GetCurrentTimestamp();
	List	   *dbs;
	ListCell   *lc;
	long		sleep_ms = dialer_launcher_naptime_s * 1000L;

	take_events(now);
	dbs = served_databases();
	stop_unserved(dbs, &sleep_ms);
	foreach(lc, dbs)
	{
		DatabaseEntry *db = lfirst(lc);

		if (!list_member_oid(without_extension, db->oid))
			tend_dispatcher(db, now, &sleep_ms);
	}
	forget_unlisted_without_extension(dbs);
	list_free_deep(dbs);
	return Max(sleep_ms, 10);
}

/* Clears the launcher's entry in shared memory when it exits. */
static void
launcher_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	SpinLockAcquire(&dialer_control->mutex);
	dialer_control->launcher_pid = 0;
	dialer_control->launcher_procno = -1;
	SpinLockRelease(&dialer_control->mutex);
}

/*
 * The launcher's entry point.
 */
void
dialer_launcher_main(Datum main_arg pg_attribute_unused())
{
	MemoryContext pass_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: only the shared catalogs (pg_database) are read */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pg_dialer launcher");

	slot_local = MemoryContextAllocZero(TopMemoryContext, sizeof(SlotLocal) * dialer_control->n_slots);
	SpinLockAcquire(&dialer_control->mutex);
	dialer_control->launcher_pid = MyProcPid;
	dialer_control->launcher_procno = MyProc->pgprocno;
	SpinLockRelease(&dialer_control->mutex);
	on_shmem_exit(launcher_exit, (Datum) 0);
	ereport(LOG,
			(errmsg("pg_dialer launcher started"),
			 errdetail("Serving dialer.databases = '%s'%s%s.", dialer_databases,
					   dialer_database[0] ? ", dialer.database = " : "", dialer_database)));

	pass_cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer launcher", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a database added to dialer.databases may have the extension */
			list_free(without_extension);
			without_extension = NIL;
		}
		MemoryContextSwitchTo(pass_cxt);
		MemoryContextReset(pass_cxt);
		sleep_ms = launcher_pass();
		MemoryContextSwitchTo(TopMemoryContext);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
