/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The dispatcher (worker.c): the background worker of one database,
 *	  started by the launcher.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_WORKER_H
#define DIALER_WORKER_H

#include "fmgr.h"

extern PGDLLEXPORT void dialer_worker_main(Datum main_arg);

#endif							/* DIALER_WORKER_H */
