/*-------------------------------------------------------------------------
 *
 * table_cache.h
 *	  Backend-local copies of small dialer tables, kept true to the
 *	  reader's snapshot (table_cache.c).
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

/* a snapshot with more transactions in progress is never taken for the same */
#define TABLE_COPY_MAX_XIP 64

/*
 * One backend-local copy of table dialer.<table>: its memory, and the version of
 * the table it holds (a row of dialer.cached_table_versions).  Declare it static
 * with the first two fields set; the rest is table_cache.c's.
 */
typedef struct TableCopy
{
	const char *table;			/* dialer.<table> */
	const char *name;			/* name of its memory context (a constant) */
	MemoryContext context;		/* the copy lives here (NULL before the first) */
	bool		loaded;			/* a copy is held */
	int64		version_xact;	/* the version it was read at: the change's */
	int64		version_command;	/* transaction and command */
	int64		read_xact;		/* the version table_copy_is_current() read */
	int64		read_command;

	/* the snapshot that version was last read under (see table_cache.c) */
	bool		checked;
	LocalTransactionId checked_lxid;
	SubTransactionId checked_subxid;
	CommandId	checked_curcid;
	TransactionId checked_xmin;
	TransactionId checked_xmax;
	uint32		checked_xcnt;
	TransactionId checked_xip[TABLE_COPY_MAX_XIP];
} TableCopy;

extern bool table_copy_is_current(TableCopy *copy);
extern MemoryContext table_copy_start_load(TableCopy *copy);
extern void table_copy_loaded(TableCopy *copy);

/* SQL-callable functions */
extern Datum dialer_cached_table_changed(PG_FUNCTION_ARGS);

#endif							/* DIALER_TABLE_CACHE_H */
