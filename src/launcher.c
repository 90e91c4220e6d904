/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one background worker per server that starts a dispatcher
 *	  for each database served (dialer.databases) where the extension is
 *	  created, and the hooks through which other backends tell it about
 *	  CREATE EXTENSION, DROP EXTENSION and DROP DATABASE.
 *
 *	  The launcher connects to no database: it reads the shared catalog
 *	  pg_database, so finding databases costs no connection to each.  Whether
 *	  the extension exists in a database is only known inside it, so a
 *	  dispatcher is started once per served database; where the extension is
 *	  missing it exits at once and the launcher does not start it again until
 *	  CREATE EXTENSION pg_dialer commits there (an object access hook in every
 *	  backend reports that at commit through shared memory) or the launcher
 *	  itself restarts.
 *
 *	  DROP DATABASE (and the other commands that need a database without
 *	  connections: RENAME, SET TABLESPACE, use as a CREATE DATABASE template)
 *	  would wait for the dispatcher and fail.  A ProcessUtility hook stops the
 *	  database's dispatcher first and holds the launcher off until the
 *	  command's transaction has ended, so that the launcher, woken then, sees
 *	  what the command did (a database gone, or renamed).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "launcher.h"
#include "settings.h"
#include "shmem.h"

/* how long a dispatcher that stopped waits before the launcher starts it again */
#define DISPATCHER_RESTART_MS	5000

PG_FUNCTION_INFO_V1(dialer_is_served);

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

/* hooks (every backend) */
static object_access_hook_type prev_object_access_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/* CREATE or DROP EXTENSION pg_dialer in this transaction, acted on at commit */
static Oid	created_extension = InvalidOid;
static bool extension_created_at_commit = false;
static bool extension_dropped_at_commit = false;

/* the slot a command of this transaction holds (hold_database), let go at its end */
static DialerShared *held_slot = NULL;

static void release_database(DialerShared *slot);

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

/* ---------------------------------------------------------------- launcher */

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
	pid = slot->worker_pid;
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
			slot->worker_pid = 0;
			slot->worker_procno = -1;
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

/* ---------------------------------------------------------------- hooks */

/*
 * Notes CREATE and DROP EXTENSION pg_dialer in this transaction.  The name
 * of a new extension is not visible yet at post-create time, so its oid is
 * kept and compared at pre-commit.
 */
static void
dialer_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (classId != ExtensionRelationId)
		return;
	if (access == OAT_POST_CREATE)
		created_extension = objectId;
	else if (access == OAT_DROP)
	{
		char	   *name = get_extension_name(objectId);

		if (name != NULL && strcmp(name, "pg_dialer") == 0)
			extension_dropped_at_commit = true;
	}
}

/*
 * At commit: tell the launcher about a new extension, and this database's
 * dispatcher to look at the catalog again.  At the end of a transaction
 * whatever its outcome: let go of a database a command held.
 */
static void
launcher_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (OidIsValid(created_extension) &&
				get_extension_oid("pg_dialer", true) == created_extension)
				extension_created_at_commit = true;
			created_extension = InvalidOid;
			break;
		case XACT_EVENT_COMMIT:
			if ((extension_created_at_commit || extension_dropped_at_commit) && dialer_control != NULL)
			{
				DialerShared *slot = dialer_slot_for_database(MyDatabaseId);

				if (extension_created_at_commit)
				{
					SpinLockAcquire(&dialer_control->mutex);
					if (dialer_control->n_events < DIALER_EVENTS)
						dialer_control->events[dialer_control->n_events++] = MyDatabaseId;
					else
						dialer_control->events_overflow = true;
					SpinLockRelease(&dialer_control->mutex);
				}
				if (slot != NULL)
				{
					int			procno;

					SpinLockAcquire(&slot->mutex);
					slot->recheck_extension = true;
					procno = slot->database_oid == MyDatabaseId ? slot->worker_procno : -1;
					SpinLockRelease(&slot->mutex);
					if (procno >= 0)
						SetLatch(&ProcGlobal->allProcs[procno].procLatch);
				}
				dialer_wake_launcher();
			}
			created_extension = InvalidOid;
			extension_created_at_commit = extension_dropped_at_commit = false;
			/* visible now: the woken launcher sees what was done */
			release_database(held_slot);
			held_slot = NULL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			created_extension = InvalidOid;
			extension_created_at_commit = extension_dropped_at_commit = false;
			release_database(held_slot);
			held_slot = NULL;
			break;
		default:
			break;
	}
}

/*
 * Stops the dispatcher of a database that a command needs free of
 * connections, and keeps the launcher from starting it again until the
 * transaction ends (release_database() from the transaction callback) or
 * 60 s have passed.  Only for the database's owner or a superuser, the roles
 * the command itself accepts.
 */
static void
hold_database(const char *dbname, const char *command)
{
	Oid			dboid;
	DialerShared *slot;
	pid_t		pid;
	TimestampTz deadline;

	if (dbname == NULL || dialer_control == NULL)
		return;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return;
	slot = dialer_slot_for_database(dboid);
	if (slot == NULL)
		return;

	/* a transaction holds one database at a time (those commands run alone) */
	if (held_slot != NULL && held_slot != slot)
		release_database(held_slot);
	held_slot = slot;
	SpinLockAcquire(&slot->mutex);
	slot->held_by = MyProcPid;
	slot->held_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
	pid = slot->worker_pid;
	SpinLockRelease(&slot->mutex);
	if (pid == 0)
		return;

	ereport(LOG,
			(errmsg("pg_dialer: stopping the dispatcher of database \"%s\" for %s", dbname, command)));
	kill(pid, SIGTERM);
	/* it lets requests in flight end within dialer.shutdown_timeout */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), dialer_shutdown_timeout_ms + 2000);
	while (GetCurrentTimestamp() < deadline)
	{
		SpinLockAcquire(&slot->mutex);
		pid = slot->worker_pid;
		SpinLockRelease(&slot->mutex);
		if (pid == 0)
			break;
		CHECK_FOR_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* Lets the launcher start the held database's dispatcher again (if it still exists). */
static void
release_database(DialerShared *slot)
{
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	if (slot->held_by == MyProcPid)
	{
		slot->held_by = 0;
		slot->held_until = 0;
	}
	SpinLockRelease(&slot->mutex);
	dialer_wake_launcher();
}

/* The value of a CREATE/ALTER DATABASE option, or NULL. */
static const char *
database_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, name) == 0 && d->arg != NULL)
			return defGetString(d);
	}
	return NULL;
}

/*
 * Whether a statement is a DROP EXTENSION that drops pg_dialer, created in
 * this database.
 */
static bool
drops_this_extension(Node *stmt)
{
	ListCell   *lc;

	if (!IsA(stmt, DropStmt) || ((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, ((DropStmt *) stmt)->objects)
	{
		if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), "pg_dialer") == 0)
			return OidIsValid(get_extension_oid("pg_dialer", true));
	}
	return false;
}

/*
 * Before DROP EXTENSION pg_dialer: the extension's own SQL tidies up after it
 * (dialer.before_drop(): its pg_cron job, warnings about calls still to be
 * placed), in the dropping transaction, so that a DROP that fails rolls it
 * back.  Nothing when the function is not there (a schema older than this
 * library).
 */
static void
run_before_drop(void)
{
	bool		isnull;
	bool		present;

	SPI_connect();
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('dialer.before_drop()') IS NOT NULL", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: could not look for dialer.before_drop()");
	present = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (present && SPI_execute("SELECT dialer.before_drop()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: dialer.before_drop() failed");
	SPI_finish();
}

/*
 * Before a command that needs a database without connections, stops that
 * database's dispatcher; when the command's transaction has ended, the
 * transaction callback lets the launcher decide again.  (Released here, as
 * the command returns, the launcher would look before the commit: it would
 * see the database still there, take its dispatcher for one that stopped,
 * and look again only DISPATCHER_RESTART_MS later.)  Before DROP EXTENSION
 * pg_dialer, runs dialer.before_drop().
 */
static void
dialer_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (IsA(stmt, DropdbStmt))
		hold_database(((DropdbStmt *) stmt)->dbname, "DROP DATABASE");
	else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
		hold_database(((RenameStmt *) stmt)->subname, "ALTER DATABASE RENAME");
	else if (IsA(stmt, AlterDatabaseStmt) &&
			 database_option(((AlterDatabaseStmt *) stmt)->options, "tablespace") != NULL)
		hold_database(((AlterDatabaseStmt *) stmt)->dbname, "ALTER DATABASE SET TABLESPACE");
	else if (IsA(stmt, CreatedbStmt))
		hold_database(database_option(((CreatedbStmt *) stmt)->options, "template"),
					  "CREATE DATABASE ... TEMPLATE");
	else if (drops_this_extension(stmt))
		run_before_drop();

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params,
								  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * Installs the hooks through which every backend reports to the launcher
 * (from _PG_init, in the postmaster; inherited by every backend).
 */
void
dialer_launcher_hooks_init(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = dialer_object_access;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = dialer_process_utility;
	RegisterXactCallback(launcher_xact_callback, NULL);
}

/*
 * dialer.is_served(): whether a dispatcher serves the current database: the
 * library is preloaded, a launcher runs, and dialer.databases names it.
 */
Datum
dialer_is_served(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(dialer_this_database_served());
}
