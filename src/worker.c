/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dispatcher's background worker: registration and main loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "postmaster/bgworker.h"

#include "pg_dialer.h"

/*
 * Registers the dispatcher with the postmaster (from _PG_init).
 */
void
dialer_register_worker(void)
{
}

void
dialer_worker_main(Datum main_arg)
{
	proc_exit(0);
}
