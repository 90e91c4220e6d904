/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The dialer.* configuration settings, with checks that reject a bad value
 *	  when it is set instead of when the dispatcher first needs it.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "pgtime.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "settings.h"

char	   *dialer_database = NULL;
char	   *dialer_databases = NULL;
int			dialer_launcher_naptime_s = 10;
bool		dialer_enabled = true;
int			dialer_max_concurrency = 100;
int			dialer_batch_size = 500;
int			dialer_connect_timeout_ms = 5000;
int			dialer_request_timeout_ms = 30000;
int			dialer_max_response_kb = 1024;
int			dialer_shutdown_timeout_ms = 10000;
int			dialer_default_max_attempts = 3;
int			dialer_late_tolerance_s = 300;
int			dialer_retry_base_delay_ms = 2000;
int			dialer_retry_max_delay_ms = 600000;
char	   *dialer_allowed_numbers = NULL;
char	   *dialer_default_timezone = NULL;
char	   *dialer_call_window_start = NULL;
char	   *dialer_call_window_end = NULL;
int			dialer_reconcile_after_s = 900;
int			dialer_standby_wait = STANDBY_WAIT_ALL;
int			dialer_standby_wait_timeout_ms = 10000;

static const struct config_enum_entry standby_wait_options[] = {
	{"off", STANDBY_WAIT_OFF, false},
	{"any", STANDBY_WAIT_ANY, false},
	{"all", STANDBY_WAIT_ALL, false},
	{NULL, 0, false}
};

/*
 * dialer.databases: * alone, or a list of database names.
 */
static bool
check_database_list(char **newval, void **extra pg_attribute_unused(),
					GucSource source pg_attribute_unused())
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		ok;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("List the databases to serve, or * for every database where the extension is created.");
		return false;
	}
	raw = pstrdup(*newval);
	ok = SplitIdentifierString(raw, ',', &names);
	if (!ok)
		GUC_check_errdetail("\"%s\" is not a comma-separated list of database names.", *newval);
	else if (list_length(names) > 1)
	{
		foreach(lc, names)
		{
			if (strcmp((char *) lfirst(lc), "*") == 0)
			{
				GUC_check_errdetail("* stands alone: it already means every database.");
				ok = false;
			}
		}
	}
	list_free(names);
	pfree(raw);
	return ok;
}

/*
 * A time of day written HH:MM (00:00 to 24:00).
 */
static bool
check_time_of_day(char **newval, void **extra pg_attribute_unused(),
				  GucSource source pg_attribute_unused())
{
	const char *s = *newval;
	int			h,
				m;

	if (s == NULL || strlen(s) != 5 || !isdigit((unsigned char) s[0]) ||
		!isdigit((unsigned char) s[1]) || s[2] != ':' ||
		!isdigit((unsigned char) s[3]) || !isdigit((unsigned char) s[4]))
	{
		GUC_check_errdetail("A time of day is written HH:MM, for example 08:00.");
		return false;
	}
	h = (s[0] - '0') * 10 + (s[1] - '0');
	m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > 24 || m > 59 || (h == 24 && m != 0))
	{
		GUC_check_errdetail("\"%s\" is not a time of day between 00:00 and 24:00.", s);
		return false;
	}
	return true;
}

/*
 * A time zone PostgreSQL can load.
 */
static bool
check_timezone_name(char **newval, void **extra pg_attribute_unused(),
					GucSource source pg_attribute_unused())
{
	pg_tz	   *tz;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("A time zone name is required, for example UTC or America/New_York.");
		return false;
	}
	tz = pg_tzset(*newval);
	if (tz == NULL || !pg_tz_acceptable(tz))
	{
		GUC_check_errdetail("Time zone \"%s\" is not known to PostgreSQL.", *newval);
		GUC_check_errhint("Use an IANA name from pg_timezone_names, such as Europe/Berlin.");
		return false;
	}
	return true;
}

/*
 * A comma-separated list of E.164 numbers (spaces allowed around commas), or empty.
 */
static bool
check_number_list(char **newval, void **extra pg_attribute_unused(),
				  GucSource source pg_attribute_unused())
{
	const char *p = *newval;

	if (p == NULL)
		return true;
	while (*p)
	{
		const char *start;
		int			digits = 0;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		start = p;
		if (*p != '+' || p[1] < '1' || p[1] > '9')
		{
			GUC_check_errdetail("Entry starting at \"%.20s\" is not an E.164 number (+ then 8 to 15 digits).", start);
			return false;
		}
		p++;
		while (isdigit((unsigned char) *p))
		{
			p++;
			digits++;
		}
		if (digits < 8 || digits > 15 || (*p != '\0' && *p != ',' && *p != ' '))
		{
			GUC_check_errdetail("Entry starting at \"%.20s\" is not an E.164 number (+ then 8 to 15 digits).", start);
			return false;
		}
	}
	return true;
}

/*
 * Defines every dialer.* setting and reserves the prefix, so a misspelt
 * dialer.something is an error instead of a silently ignored placeholder.
 */
void
dialer_define_settings(void)
{
	DefineCustomStringVariable("dialer.databases",
							   "Databases a dispatcher serves: * (every database where the extension is created) or a comma-separated list of names.",
							   "The launcher starts one dispatcher per served database where CREATE EXTENSION pg_dialer was run.",
							   &dialer_databases, "*",
							   PGC_SIGHUP, GUC_LIST_INPUT, check_database_list, NULL, NULL);

	DefineCustomStringVariable("dialer.database",
							   "Deprecated (0.1.0): the one database served.",
							   "When set, it replaces dialer.databases = '*': only this database is served.",
							   &dialer_database, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.launcher_naptime",
							"How often the launcher looks for new and dropped databases.",
							"CREATE and DROP EXTENSION and DROP DATABASE wake it at once; this catches the rest (a database created from a template that has the extension).",
							&dialer_launcher_naptime_s, 10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomBoolVariable("dialer.enabled",
							 "Whether the dispatcher places calls.",
							 "When off, due calls wait in the queue; nothing is lost.",
							 &dialer_enabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.max_concurrency",
							"Requests the dispatcher runs at once, over all providers.",
							"Each needs a file descriptor; the dispatcher caps it below its descriptor limit and says so.",
							&dialer_max_concurrency, 100, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.batch_size",
							"Calls claimed, or outcomes stored, per transaction.",
							NULL,
							&dialer_batch_size, 500, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.connect_timeout",
							"Time allowed to connect to a provider.",
							NULL,
							&dialer_connect_timeout_ms, 5000, 100, 300000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.request_timeout",
							"Time allowed for a whole provider request, connection included.",
							NULL,
							&dialer_request_timeout_ms, 30000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.max_response_size",
							"Largest provider response body accepted.",
							"A larger answer aborts the request and is treated as a provider error.",
							&dialer_max_response_kb, 1024, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.shutdown_timeout",
							"Time in-flight requests get to finish when the dispatcher stops.",
							"Calls whose outcome is still unknown then become unknown.",
							&dialer_shutdown_timeout_ms, 10000, 0, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.default_max_attempts",
							"Attempts a call gets when neither the call nor its campaign says.",
							NULL,
							&dialer_default_max_attempts, 3, 1, 20,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.late_tolerance",
							"How far in the past a call's run_at may be; an earlier one is refused unless the enqueue says late_ok.",
							"A call meant for a time long past (yesterday's reminder) would otherwise be dialled at once.",
							&dialer_late_tolerance_s, 300, 0, 7 * 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.retry_base_delay",
							"First retry delay; it doubles each attempt (full jitter).",
							NULL,
							&dialer_retry_base_delay_ms, 2000, 0, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.retry_max_delay",
							"Longest retry delay.",
							NULL,
							&dialer_retry_max_delay_ms, 600000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomStringVariable("dialer.allowed_numbers",
							   "When set, the only numbers that may be called (comma-separated E.164).",
							   "Any other due call is skipped with a warning event: the pilot's test-number guard.",
							   &dialer_allowed_numbers, "",
							   PGC_SIGHUP, 0, check_number_list, NULL, NULL);

	DefineCustomStringVariable("dialer.default_timezone",
							   "Time zone of calling windows when neither the call nor its campaign names one.",
							   NULL,
							   &dialer_default_timezone, "UTC",
							   PGC_SIGHUP, 0, check_timezone_name, NULL, NULL);

	DefineCustomStringVariable("dialer.call_window_start",
							   "Local time of day from which calls may start (HH:MM).",
							   NULL,
							   &dialer_call_window_start, "08:00",
							   PGC_SIGHUP, 0, check_time_of_day, NULL, NULL);

	DefineCustomStringVariable("dialer.call_window_end",
							   "Local time of day by which calls must have started (HH:MM).",
							   NULL,
							   &dialer_call_window_end, "21:00",
							   PGC_SIGHUP, 0, check_time_of_day, NULL, NULL);

	DefineCustomIntVariable("dialer.reconcile_after",
							"A call dialing this long without a final status is looked up at its provider.",
							NULL,
							&dialer_reconcile_after_s, 900, 10, 7 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	DefineCustomEnumVariable("dialer.standby_wait",
							 "Which connected physical standbys must have flushed a claim before its calls are sent.",
							 "all: every streaming standby; any: at least one; off: none (a failover may re-dial). "
							 "With no standby connected nothing is waited for.",
							 &dialer_standby_wait, STANDBY_WAIT_ALL, standby_wait_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("dialer.standby_wait_timeout",
							"How long claimed calls wait for standbys before the dispatcher warns.",
							"The calls stay claimed and unsent; the dispatcher keeps waiting and warns again each period.",
							&dialer_standby_wait_timeout_ms, 10000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	MarkGUCPrefixReserved("dialer");
}

/*
 * Whether dialer.databases (or the deprecated dialer.database) names the
 * database.
 */
bool
dialer_database_is_served(const char *dbname)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		served = false;

	if (dialer_databases == NULL || strcmp(dialer_databases, "*") == 0)
	{
		if (dialer_database != NULL && dialer_database[0] != '\0')
			return strcmp(dialer_database, dbname) == 0;
		return true;
	}
	raw = pstrdup(dialer_databases);
	if (SplitIdentifierString(raw, ',', &names))
	{
		foreach(lc, names)
		{
			if (strcmp((char *) lfirst(lc), dbname) == 0)
				served = true;
		}
	}
	list_free(names);
	pfree(raw);
	return served;
}
