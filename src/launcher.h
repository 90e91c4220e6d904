/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher (launcher.c): its registration, its entry point, and the
 *	  hooks through which backends report CREATE/DROP EXTENSION and DROP
 *	  DATABASE to it.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/launcher.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_LAUNCHER_H
#define DIALER_LAUNCHER_H

#include "fmgr.h"

extern void dialer_register_launcher(void);
extern PGDLLEXPORT void dialer_launcher_main(Datum main_arg);
extern void dialer_launcher_hooks_init(void);

/* SQL-callable functions */
extern Datum dialer_is_served(PG_FUNCTION_ARGS);

#endif							/* DIALER_LAUNCHER_H */
