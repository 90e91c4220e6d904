/*-------------------------------------------------------------------------
 *
 * backend_hooks.c
 *	  What pg_dialer runs in every backend, beside the launcher and the
 *	  dispatchers: the hooks through which a backend tells them about CREATE
 *	  EXTENSION, DROP EXTENSION and DROP DATABASE, DROP EXTENSION's tidying
 *	  up (dialer.before_drop()), and dialer.is_served().
 *
 *	  An object access hook notes CREATE and DROP EXTENSION pg_dialer; at
 *	  commit a transaction callback reports them through shared memory (the
 *	  launcher's events, the database's slot) and wakes the launcher and the
 *	  database's dispatcher.
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
 * src/backend_hooks.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "backend_hooks.h"
#include "settings.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(dialer_is_served);

/* the hooks they replace (chained) */
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
 * CREATE or DROP EXTENSION pg_dialer committed: tells the launcher about a
 * new extension (its events), and this database's dispatcher to look at the
 * catalog again; wakes both.
 */
static void
report_extension_change(void)
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
		procno = slot->database_oid == MyDatabaseId ? slot->dispatcher_procno : -1;
		SpinLockRelease(&slot->mutex);
		if (procno >= 0)
			SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	}
	dialer_wake_launcher();
}

/*
 * At commit: report CREATE or DROP EXTENSION pg_dialer.  At the end of a
 * transaction whatever its outcome: let go of a database a command held.
 */
static void
hooks_xact_callback(XactEvent event, void *arg pg_attribute_unused())
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
				report_extension_change();
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
	pid = slot->dispatcher_pid;
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
		pid = slot->dispatcher_pid;
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
 * and start it again only after its restart delay.)  Before DROP EXTENSION
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
dialer_backend_hooks_init(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = dialer_object_access;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = dialer_process_utility;
	RegisterXactCallback(hooks_xact_callback, NULL);
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
