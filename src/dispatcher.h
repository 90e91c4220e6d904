/*-------------------------------------------------------------------------
 *
 * dispatcher.h
 *	  The dispatcher (dispatcher.c): the background worker of one database,
 *	  started by the launcher by the name of its entry point.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/dispatcher.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_DISPATCHER_H
#define DIALER_DISPATCHER_H

#include "fmgr.h"

extern PGDLLEXPORT void dialer_dispatcher_main(Datum main_arg);

#endif							/* DIALER_DISPATCHER_H */
