/*-------------------------------------------------------------------------
 *
 * table_cache.c
 *	  What the backend-local copies of small dialer tables share: the
 *	  statement trigger that tells every backend a copied table changed, and
 *	  the lookup of such a table by name.
 *
 *	  A module that copies a table (number_zones.c: libphonenumber's map)
 *	  registers a relcache callback and drops its copy when the table's relid
 *	  comes by.  Plain DML sends no relcache invalidation, so each copied
 *	  table carries dialer.cached_table_changed() as a statement trigger: it
 *	  sends one.  The backend that made the change sees it at its next
 *	  command, the others once the change commits, and a rolled-back change
 *	  is undone the same way.
 *
 *	  Not exactly at commit: PostgreSQL makes a commit visible to new
 *	  snapshots a moment before it sends the commit's invalidations, so a
 *	  transaction that starts in that moment reads the new rows but may still
 *	  use the old copy.  That is why only the number map is copied (a change
 *	  to it wakes no call); the policies' windows and blackout days, whose
 *	  changes make parked calls due at once (and wake the worker in that
 *	  very moment), are read by SQL under the statement's snapshot.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/table_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "table_cache.h"

PG_FUNCTION_INFO_V1(dialer_cached_table_changed);

/*
 * The relid of table dialer.<relname>, which the SQL function reader copies;
 * an error naming both when the table is missing (a damaged installation).
 */
Oid
table_cache_relid(const char *relname, const char *reader)
{
	Oid			schema = get_namespace_oid("dialer", false);
	Oid			relid = get_relname_relid(relname, schema);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table dialer.%s does not exist", relname),
				 errdetail("%s reads it.", reader),
				 errhint("Reinstall the extension: DROP EXTENSION pg_dialer; CREATE EXTENSION pg_dialer;")));
	return relid;
}

/*
 * What a copy does before it reads its table(s) again: registers its relcache
 * callback, once per backend, and gives it an empty memory context of its own
 * under CacheMemoryContext (created the first time, reset after, which frees
 * the previous copy).  name must be a string constant: the context keeps the
 * pointer.
 */
void
table_cache_start_load(MemoryContext *context, const char *name,
					   RelcacheCallbackFunction callback, bool *registered)
{
	if (!*registered)
	{
		CacheRegisterRelcacheCallback(callback, (Datum) 0);
		*registered = true;
	}
	if (*context == NULL)
		*context = AllocSetContextCreateInternal(CacheMemoryContext, name, ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(*context);
}

/*
 * dialer.cached_table_changed(): statement trigger (after INSERT, UPDATE, DELETE,
 * TRUNCATE) on a table that backends copy, telling every backend that its copy
 * is out of date.
 */
Datum
dialer_cached_table_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dialer.cached_table_changed() is a trigger function"),
				 errdetail("It was called outside a trigger."),
				 errhint("It runs by itself when a table that backends copy changes.")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
