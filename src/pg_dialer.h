/*-------------------------------------------------------------------------
 *
 * pg_dialer.h
 *	  Declarations shared by the files of pg_dialer: settings, shared state,
 *	  and the entry points of the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_DIALER_H
#define PG_DIALER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/spin.h"

#define DIALER_STATE_LEN		32
#define DIALER_ERROR_LEN		256

/* settings (src/settings.c) */
extern char *dialer_database;
extern bool dialer_enabled;
extern int	dialer_max_concurrency;
extern int	dialer_batch_size;
extern int	dialer_connect_timeout_ms;
extern int	dialer_request_timeout_ms;
extern int	dialer_max_response_kb;
extern int	dialer_shutdown_timeout_ms;
extern int	dialer_default_max_attempts;
extern int	dialer_retry_base_delay_ms;
extern int	dialer_retry_max_delay_ms;
extern char *dialer_allowed_numbers;
extern char *dialer_default_timezone;
extern char *dialer_call_window_start;
extern char *dialer_call_window_end;
extern int	dialer_reconcile_after_s;

extern void dialer_define_settings(void);

/*
 * What the running worker publishes about itself.  Only plain values: no pointer
 * into any process's memory is ever stored here.
 */
typedef struct DialerShared
{
	slock_t		mutex;
	pid_t		worker_pid;		/* 0 when no worker runs */
	int			worker_procno;	/* index into ProcGlobal->allProcs, or -1 */
	char		database[NAMEDATALEN];
	char		state[DIALER_STATE_LEN];
	TimestampTz started_at;
	int			in_flight;
	uint64		dispatched;
	uint64		accepted;
	uint64		retried;
	uint64		failed;
	char		last_error[DIALER_ERROR_LEN];
	TimestampTz last_error_at;
	uint32		providers_version;	/* bumped when a change to dialer.providers commits */
} DialerShared;

/* shared state (src/shmem.c) */
extern DialerShared *dialer_shared;
extern void dialer_shmem_init(void);
extern void dialer_shared_set_state(const char *state);
extern void dialer_shared_set_error(const char *fmt,...) pg_attribute_printf(1, 2);

/* plans independent of the queue's size (src/planner.c) */
extern void dialer_planner_init(void);

/* the worker (src/worker.c) */
extern void dialer_register_worker(void);
extern PGDLLEXPORT void dialer_worker_main(Datum main_arg);

#endif							/* PG_DIALER_H */
