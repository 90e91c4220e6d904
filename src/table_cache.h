/*-------------------------------------------------------------------------
 *
 * table_cache.h
 *	  Backend-local copies of small dialer tables (table_cache.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/table_cache.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_TABLE_CACHE_H
#define DIALER_TABLE_CACHE_H

#include "fmgr.h"
#include "utils/inval.h"

extern Oid	table_cache_relid(const char *relname, const char *reader);
extern void table_cache_start_load(MemoryContext *context, const char *name,
								   RelcacheCallbackFunction callback, bool *registered);

/* SQL-callable functions */
extern Datum dialer_cached_table_changed(PG_FUNCTION_ARGS);

#endif							/* DIALER_TABLE_CACHE_H */
