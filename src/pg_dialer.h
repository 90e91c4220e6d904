/*-------------------------------------------------------------------------
 *
 * pg_dialer.h
 *	  The module entry point (pg_dialer.c): _PG_init, and the one SQL
 *	  function that lives beside it.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/pg_dialer.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_DIALER_H
#define PG_DIALER_H

#include "fmgr.h"

extern void _PG_init(void);

/* SQL-callable functions */
extern Datum dialer_is_valid_timezone(PG_FUNCTION_ARGS);

#endif							/* PG_DIALER_H */
