/*-------------------------------------------------------------------------
 *
 * pg_dialer.c
 *	  Module entry point: defines the settings, reserves shared memory,
 *	  installs the hooks and registers the launcher (which starts one
 *	  dispatcher per served database) when loaded from
 *	  shared_preload_libraries.  Also dialer.is_valid_timezone(), a check the
 *	  SQL needs and that only C can do cheaply.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/pg_dialer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"

#include "backend_hooks.h"
#include "launcher.h"
#include "pg_dialer.h"
#include "planner.h"
#include "settings.h"
#include "shmem.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(dialer_is_valid_timezone);

/*
 * Settings are defined in every process that loads the library; shared
 * memory, the launcher and the dispatchers exist only when the library is
 * preloaded, which is how it must be deployed (a backend that loads it on
 * demand can still enqueue calls: they wait for a server started with the
 * library preloaded).
 *
 * Under pg_upgrade (IsBinaryUpgrade) nothing more is set up: pg_upgrade
 * starts the servers with the libraries of shared_preload_libraries, and a
 * launcher or dispatcher would connect to databases that are being dumped
 * or restored and could even dial calls from the old cluster.  The launcher
 * and the dispatchers start with the upgraded server's first normal start.
 */
void
_PG_init(void)
{
	dialer_define_settings();
	dialer_planner_init();

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;

	dialer_shmem_init();
	dialer_backend_hooks_init();
	dialer_register_launcher();
}

/*
 * dialer.is_valid_timezone(name): true when PostgreSQL can load the zone, the same
 * test the TimeZone setting applies.  Cheaper than a scan of pg_timezone_names.
 */
Datum
dialer_is_valid_timezone(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	pg_tz	   *tz;

	if (strlen(name) == 0 || strlen(name) > 64)
		PG_RETURN_BOOL(false);
	tz = pg_tzset(name);
	PG_RETURN_BOOL(tz != NULL && pg_tz_acceptable(tz));
}
