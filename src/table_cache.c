/*-------------------------------------------------------------------------
 *
 * table_cache.c
 *	  Backend-local copies of small dialer tables, kept true to the
 *	  reader's snapshot: the version a copy was read at, the check of that
 *	  version, and the statement trigger that moves it.
 *
 *	  A module that copies a table (number_zones.c: libphonenumber's map)
 *	  asks table_copy_is_current() before it uses its copy.  The table's
 *	  version is a row of dialer.cached_table_versions: the transaction and
 *	  command of its last change, written by dialer.cached_table_changed(),
 *	  a statement trigger on the copied table.  The check reads that row
 *	  under the caller's snapshot, the copy is read again under that same
 *	  snapshot when the version differs, and so a copy always matches what
 *	  the reader's snapshot sees: a change is used exactly from the first
 *	  snapshot that sees it committed (or, in the changing transaction,
 *	  from its next command), a rolled-back change never.  A transaction
 *	  and command are never used twice, so a version names one state of the
 *	  table.
 *
 *	  Relcache invalidation is not used for this: PostgreSQL makes a
 *	  commit visible to new snapshots a moment before it sends the commit's
 *	  invalidations, and a reader starting in that moment would read new
 *	  rows elsewhere but use the old copy.
 *
 *	  The check costs one indexed read per snapshot, not per call: it is
 *	  skipped while the active snapshot sees what the one the version was
 *	  last read under saw: the same transaction, subtransaction and command
 *	  (this backend's own changes), and the same xmin, xmax and transactions
 *	  in progress (everyone else's).  A snapshot taken during recovery, one
 *	  whose subtransactions overflowed, or one with more than
 *	  TABLE_COPY_MAX_XIP transactions in progress is never taken for the
 *	  same: the version is read again.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/table_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "table_cache.h"

PG_FUNCTION_INFO_V1(dialer_cached_table_changed);

static void version_row_missing(const char *table) pg_attribute_noreturn();

/*
 * The error for a copied table with no version row (a damaged installation).
 */
static void
version_row_missing(const char *table)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("dialer.cached_table_versions has no row for table dialer.%s", table),
			 errdetail("Each table that backends copy has its version there, written by its trigger."),
			 errhint("Reinstall the extension: DROP EXTENSION pg_dialer; CREATE EXTENSION pg_dialer;")));
}

/*
 * Whether a snapshot can be compared with another by the fields a TableCopy
 * keeps: an MVCC snapshot of a primary whose transactions in progress are all
 * listed, and not too many.
 */
static bool
snapshot_comparable(Snapshot snapshot)
{
	return snapshot->snapshot_type == SNAPSHOT_MVCC && !snapshot->takenDuringRecovery &&
		!snapshot->suboverflowed && snapshot->xcnt <= TABLE_COPY_MAX_XIP;
}

/*
 * Remembers the active snapshot as the one the copy's version was last read
 * under (or nothing, when it cannot be compared).
 */
static void
table_copy_remember_snapshot(TableCopy *copy)
{
	Snapshot	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : NULL;

	copy->checked = snapshot != NULL && snapshot_comparable(snapshot);
	if (!copy->checked)
		return;
	copy->checked_lxid = MyProc->lxid;
	copy->checked_subxid = GetCurrentSubTransactionId();
	copy->checked_curcid = snapshot->curcid;
	copy->checked_xmin = snapshot->xmin;
	copy->checked_xmax = snapshot->xmax;
	copy->checked_xcnt = snapshot->xcnt;
	if (snapshot->xcnt > 0)
		memcpy(copy->checked_xip, snapshot->xip, sizeof(TransactionId) * snapshot->xcnt);
}

/*
 * True when the active snapshot sees what the one the copy's version was last
 * read under saw.  This backend's changes: the same transaction,
 * subtransaction (a rollback to a savepoint starts a new one) and command.
 * The others': the same xmin, xmax and transactions in progress, so the same
 * transactions committed (a transaction that ends changes xmax or leaves the
 * list; PostgreSQL itself reuses a snapshot on the same grounds).
 */
static bool
table_copy_same_snapshot(TableCopy *copy)
{
	Snapshot	snapshot;

	if (!copy->loaded || !copy->checked || !ActiveSnapshotSet())
		return false;
	snapshot = GetActiveSnapshot();
	return snapshot_comparable(snapshot) &&
		copy->checked_lxid == MyProc->lxid &&
		copy->checked_subxid == GetCurrentSubTransactionId() &&
		copy->checked_curcid == snapshot->curcid &&
		TransactionIdEquals(copy->checked_xmin, snapshot->xmin) &&
		TransactionIdEquals(copy->checked_xmax, snapshot->xmax) &&
		copy->checked_xcnt == snapshot->xcnt &&
		(snapshot->xcnt == 0 ||
		 memcmp(copy->checked_xip, snapshot->xip, sizeof(TransactionId) * snapshot->xcnt) == 0);
}

/*
 * True when the copy holds the version of its table that the active snapshot
 * sees.  False when there is no copy or it is out of date: the caller then
 * reads the table again, in the same call (so under the same snapshot), between
 * table_copy_start_load() and table_copy_loaded().
 */
bool
table_copy_is_current(TableCopy *copy)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;

	if (table_copy_same_snapshot(copy))
		return true;

	args[0] = CStringGetTextDatum(copy->table);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT changed_in, changed_at FROM dialer.cached_table_versions WHERE table_name = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read dialer.cached_table_versions");
	if (SPI_processed != 1)
		version_row_missing(copy->table);
	copy->read_xact = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	copy->read_command = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();

	if (copy->loaded && copy->read_xact == copy->version_xact &&
		copy->read_command == copy->version_command)
	{
		table_copy_remember_snapshot(copy);
		return true;
	}
	return false;
}

/*
 * Before a copy is read again: drops the old one and returns the empty memory
 * context the new one goes in (under CacheMemoryContext, created the first
 * time, reset after).
 */
MemoryContext
table_copy_start_load(TableCopy *copy)
{
	copy->loaded = false;
	if (copy->context == NULL)
		copy->context = AllocSetContextCreateInternal(CacheMemoryContext, copy->name,
													  ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(copy->context);
	return copy->context;
}

/*
 * After a copy was read, under the snapshot table_copy_is_current() read the
 * version under: the copy holds that version.
 */
void
table_copy_loaded(TableCopy *copy)
{
	copy->version_xact = copy->read_xact;
	copy->version_command = copy->read_command;
	copy->loaded = true;
	table_copy_remember_snapshot(copy);
}

/*
 * dialer.cached_table_changed(): statement trigger (after INSERT, UPDATE, DELETE,
 * TRUNCATE) on a table that backends copy.  Writes the table's new version, the
 * current transaction and command, into dialer.cached_table_versions: a reader
 * whose snapshot sees the change sees the new version with it, and reads the
 * table again.  Changes to one copied table are serialized by that row's lock.
 */
Datum
dialer_cached_table_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			argtypes[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		args[3];
	const char *table;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dialer.cached_table_changed() is a trigger function"),
				 errdetail("It was called outside a trigger."),
				 errhint("It runs by itself when a table that backends copy changes.")));

	table = RelationGetRelationName(trigdata->tg_relation);
	args[0] = Int64GetDatum((int64) U64FromFullTransactionId(GetTopFullTransactionId()));
	args[1] = Int64GetDatum((int64) GetCurrentCommandId(false));
	args[2] = CStringGetTextDatum(table);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("UPDATE dialer.cached_table_versions SET changed_in = $1, changed_at = $2 WHERE table_name = $3",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write dialer.cached_table_versions");
	if (SPI_processed != 1)
		version_row_missing(table);
	SPI_finish();
	return PointerGetDatum(NULL);
}
