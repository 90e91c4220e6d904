/*-------------------------------------------------------------------------
 *
 * pg_dialer.c
 *	  Module entry point: defines the settings, reserves shared memory,
 *	  installs the hooks and registers the launcher (which starts one
 *	  dispatcher per served database) when loaded from
 *	  shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"

#include "pg_dialer.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(dialer_is_valid_timezone);

/*
 * Settings are defined in every process that loads the library; shared memory,
 * the launcher and the dispatchers exist only when the library is preloaded,
 * which is how it must be deployed (a backend that loads it on demand can still enqueue calls: they wait
 * for a server started with the library preloaded).
 */
void
_PG_init(void)
{
	dialer_define_settings();
	dialer_planner_init();

	if (!process_shared_preload_libraries_in_progress)
		return;

	dialer_shmem_init();
	dialer_launcher_hooks_init();
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
