/*-------------------------------------------------------------------------
 *
 * backend_hooks.h
 *	  What runs in every backend (backend_hooks.c): the hooks that report
 *	  CREATE/DROP EXTENSION and DROP DATABASE to the launcher and the
 *	  dispatchers, and dialer.is_served().
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/backend_hooks.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_BACKEND_HOOKS_H
#define DIALER_BACKEND_HOOKS_H

#include "fmgr.h"

extern void dialer_backend_hooks_init(void);

/* SQL-callable functions */
extern Datum dialer_is_served(PG_FUNCTION_ARGS);

#endif							/* DIALER_BACKEND_HOOKS_H */
