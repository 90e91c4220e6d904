/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The dispatchers' shared state (shmem.c): one slot per served database,
 *	  the launcher's control block, and the functions that publish into them
 *	  or wake the processes they name.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_SHMEM_H
#define DIALER_SHMEM_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "storage/spin.h"

#define DIALER_STATE_LEN		192
#define DIALER_ERROR_LEN		256

/* how many providers a dispatcher publishes for dialer.provider_status() */
#define DIALER_MAX_PUBLISHED_PROVIDERS	32

/*
 * A provider's pacing state as the dispatcher last published it (the rest of
 * a provider's health comes from the tables).
 */
typedef struct DialerProviderState
{
	char		name[NAMEDATALEN];
	int			in_flight;
	double		calls_per_second;
	double		tokens;			/* calls-per-second budget left (at most a
								 * second's worth) */
	int			consecutive_failures;
	TimestampTz paused_until;	/* 0: not paused for failures */
	bool		at_capacity;	/* waiting for max_concurrency to free up */
} DialerProviderState;

/*
 * One dispatcher slot: what the dispatcher of one database publishes about
 * itself, and the requests other processes leave for it or for the launcher.
 * Only plain values: no pointer into any process's memory is ever stored here.
 * The launcher assigns a slot to a database before starting its dispatcher;
 * in a dispatcher, dialer_shared points to its own slot.
 */
typedef struct DialerShared
{
	slock_t		mutex;
	bool		in_use;			/* assigned to database_oid by the launcher */
	Oid			database_oid;
	pid_t		dispatcher_pid; /* 0 when no dispatcher runs */
	int			dispatcher_procno;	/* index into ProcGlobal->allProcs, or -1 */
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
	uint32		providers_version;	/* bumped when a change to
									 * dialer.providers commits */
	TimestampTz standby_wait_since; /* 0, or since when claimed calls wait for
									 * standbys */
	XLogRecPtr	standby_wait_lsn;	/* the claim's commit LSN they wait for */

	/* set by the dispatcher when it exits because the extension is not there */
	bool		no_extension;
	/* set by a backend when CREATE or DROP EXTENSION pg_dialer commits */
	bool		recheck_extension;
	/* set while a backend needs the database free (DROP DATABASE, ...) */
	pid_t		held_by;
	TimestampTz held_until;

	int			n_providers;
	DialerProviderState providers[DIALER_MAX_PUBLISHED_PROVIDERS];
} DialerShared;

/* how many databases a server can hold in the launcher's events ring */
#define DIALER_EVENTS 64

/*
 * The launcher's shared state and the dispatcher slots.
 */
typedef struct DialerControl
{
	slock_t		mutex;
	pid_t		launcher_pid;
	int			launcher_procno;
	/* databases where CREATE EXTENSION pg_dialer committed, for the launcher */
	int			n_events;
	Oid			events[DIALER_EVENTS];
	bool		events_overflow;
	int			n_slots;
	DialerShared slots[FLEXIBLE_ARRAY_MEMBER];
} DialerControl;

extern DialerControl *dialer_control;
extern DialerShared *dialer_shared;

extern void dialer_shmem_init(void);
extern void dialer_shared_set_state(const char *state);
extern void dialer_shared_set_error(const char *fmt,...) pg_attribute_printf(1, 2);
extern void dialer_shared_count(uint64 *counter, int n, int in_flight);
extern DialerShared *dialer_slot_for_database(Oid dboid);
extern void dialer_wake_launcher(void);
extern bool dialer_this_database_served(void);

/* SQL-callable functions */
extern Datum dialer_wake_worker(PG_FUNCTION_ARGS);
extern Datum dialer_wake_worker_quietly(PG_FUNCTION_ARGS);
extern Datum dialer_providers_changed(PG_FUNCTION_ARGS);
extern Datum dialer_worker_status(PG_FUNCTION_ARGS);
extern Datum dialer_provider_status(PG_FUNCTION_ARGS);
extern Datum dialer_dispatchers(PG_FUNCTION_ARGS);

#endif							/* DIALER_SHMEM_H */
