/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  The launcher (launcher.c): its registration and its entry point.
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

#endif							/* DIALER_LAUNCHER_H */
