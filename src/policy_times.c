/*-------------------------------------------------------------------------
 *
 * policy_times.c
 *	  The time-of-day rules of calling policies: dialer.closed_rule() says
 *	  which window or blackout rule of a set of policies, or of the general
 *	  calling window, is closed at an instant in one of the recipient's
 *	  zones.  It is the one home of those rules; dialer.compliance_verdict,
 *	  dialer.next_time_opening and dialer.batch_verdicts call it.
 *
 *	  Written in C because the claim asks it at every batch of calls under a
 *	  policy, and dialer.next_time_opening asks it for each candidate
 *	  opening: as SQL it read dialer.policy_windows and
 *	  dialer.blackout_dates through a union of three plans at each call,
 *	  about 45 microseconds, a large part of what a policy added to a claim.
 *	  Here each backend keeps the policies' windows and blackout calendars,
 *	  and the blackout days, in hash tables (a few hundred rows), dropped
 *	  whenever one of the three tables changes (table_cache.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/policy_times.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "policy_times.h"
#include "table_cache.h"

/* policy and calendar names are at most 80 characters (their tables' CHECKs) */
#define POLICY_NAME_KEY 128

/* one row of dialer.policy_windows: open on the weekdays of the mask, [starts, ends) */
typedef struct PolicyWindow
{
	int			weekdays;		/* bit d set: open on ISO weekday d (1 Monday) */
	TimeADT		starts;
	TimeADT		ends;
} PolicyWindow;

/* a policy's time-of-day rules */
typedef struct PolicyTimes
{
	char		name[POLICY_NAME_KEY];	/* the key */
	int			nwindows;		/* 0: the policy restricts no time of day */
	PolicyWindow *windows;
	int			ncalendars;
	char	  **calendars;		/* its blackout calendars */
} PolicyTimes;

/* one row of dialer.blackout_dates */
typedef struct BlackoutKey
{
	char		calendar[POLICY_NAME_KEY];
	DateADT		day;
} BlackoutKey;

typedef struct BlackoutDay
{
	BlackoutKey key;
	char	   *name;			/* the holiday, named in the rule's detail */
} BlackoutDay;

/* an instant as the recipient's clock and calendar in one zone read it */
typedef struct LocalInstant
{
	const char *zone;
	bool		known;			/* false: a NULL zone or instant, or an
								 * infinite one */
	DateADT		date;
	TimeADT		time;
	int			isodow;			/* 1 Monday .. 7 Sunday */
} LocalInstant;

/* this backend's copy of the three tables, and what it was read from */
static HTAB *policy_times = NULL;
static HTAB *blackout_days = NULL;
static MemoryContext policy_times_context = NULL;
static Oid	policy_times_relids[3] = {InvalidOid, InvalidOid, InvalidOid};
static bool policy_times_stale = true;
static bool policy_times_callback_registered = false;

static const char *const iso_day_names[] = {
	"", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"
};

PG_FUNCTION_INFO_V1(dialer_closed_rule);

/*
 * Relcache callback: the copy is stale once one of its tables changed (or on a
 * reset of every relation).  Only a flag is set: the next call reads them again.
 */
static void
policy_times_invalidate(Datum arg pg_attribute_unused(), Oid relid)
{
	size_t		i;

	if (relid == InvalidOid)
		policy_times_stale = true;
	for (i = 0; i < lengthof(policy_times_relids); i++)
		if (relid == policy_times_relids[i])
			policy_times_stale = true;
}

/* a copy of a text datum as a C string in the cache's context */
static char *
cache_string(HeapTuple row, TupleDesc desc, int column)
{
	char	   *s = SPI_getvalue(row, desc, column);

	return MemoryContextStrdup(policy_times_context, s ? s : "");
}

/*
 * Reads the policies' blackout calendars, their windows and the blackout days
 * into fresh hash tables, in a memory context of its own under
 * CacheMemoryContext (the previous copy's is reset).
 */
static void
policy_times_load(void)
{
	HASHCTL		ctl;
	uint64		i;
	HTAB	   *map;
	HTAB	   *days;

	/* no copy until both maps are read (an error midway leaves none) */
	policy_times = NULL;
	blackout_days = NULL;
	table_cache_start_load(&policy_times_context, "pg_dialer policy times",
						   policy_times_invalidate, &policy_times_callback_registered);
	policy_times_relids[0] = table_cache_relid("calling_policies", "dialer.closed_rule()");
	policy_times_relids[1] = table_cache_relid("policy_windows", "dialer.closed_rule()");
	policy_times_relids[2] = table_cache_relid("blackout_dates", "dialer.closed_rule()");
	policy_times_stale = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the policies and their calendars */
	if (SPI_execute("SELECT p.name, cardinality(p.blackout_calendars), c.cal "
					"FROM dialer.calling_policies p "
					"LEFT JOIN LATERAL unnest(p.blackout_calendars) WITH ORDINALITY c(cal, n) ON true "
					"ORDER BY p.name, c.n", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read dialer.calling_policies");
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = POLICY_NAME_KEY;
	ctl.entrysize = sizeof(PolicyTimes);
	ctl.hcxt = policy_times_context;
	map = hash_create("pg_dialer policy times", Max(SPI_processed, 16), &ctl,
					  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(row, desc, 1);
		bool		isnull;
		bool		found;
		int			ncal;
		PolicyTimes *entry;

		if (strlen(name) >= POLICY_NAME_KEY)
			continue;
		entry = (PolicyTimes *) hash_search(map, name, HASH_ENTER, &found);
		if (!found)
		{
			ncal = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
			entry->nwindows = 0;
			entry->windows = NULL;
			entry->ncalendars = 0;
			entry->calendars = (char **)
				MemoryContextAlloc(policy_times_context, sizeof(char *) * Max(ncal, 1));
		}
		SPI_getbinval(row, desc, 3, &isnull);
		if (!isnull)
			entry->calendars[entry->ncalendars++] = cache_string(row, desc, 3);
	}

	/* their windows, weekdays as a mask */
	if (SPI_execute("SELECT w.policy, w.starts, w.ends, "
					"(SELECT coalesce(sum(DISTINCT 1 << d), 0)::int FROM unnest(w.weekdays) d), "
					"count(*) OVER (PARTITION BY w.policy) "
					"FROM dialer.policy_windows w", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read dialer.policy_windows");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(row, desc, 1);
		bool		isnull;
		PolicyTimes *entry;
		PolicyWindow *w;

		if (strlen(name) >= POLICY_NAME_KEY)
			continue;
		entry = (PolicyTimes *) hash_search(map, name, HASH_FIND, NULL);
		if (entry == NULL)
			continue;			/* the foreign key rules it out */
		if (entry->windows == NULL)
			entry->windows = (PolicyWindow *)
				MemoryContextAlloc(policy_times_context,
								   sizeof(PolicyWindow) * DatumGetInt64(SPI_getbinval(row, desc, 5, &isnull)));
		w = &entry->windows[entry->nwindows++];
		w->starts = DatumGetTimeADT(SPI_getbinval(row, desc, 2, &isnull));
		w->ends = DatumGetTimeADT(SPI_getbinval(row, desc, 3, &isnull));
		w->weekdays = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
	}

	/* the blackout days */
	if (SPI_execute("SELECT b.calendar, b.day, b.name FROM dialer.blackout_dates b",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read dialer.blackout_dates");
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(BlackoutKey);
	ctl.entrysize = sizeof(BlackoutDay);
	ctl.hcxt = policy_times_context;
	days = hash_create("pg_dialer blackout days", Max(SPI_processed, 64), &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *calendar = SPI_getvalue(row, desc, 1);
		bool		isnull;
		BlackoutKey key;
		BlackoutDay *entry;

		if (strlen(calendar) >= POLICY_NAME_KEY)
			continue;
		memset(&key, 0, sizeof(key));
		strcpy(key.calendar, calendar);
		key.day = DatumGetDateADT(SPI_getbinval(row, desc, 2, &isnull));
		entry = (BlackoutDay *) hash_search(days, &key, HASH_ENTER, NULL);
		entry->name = cache_string(row, desc, 3);
	}
	SPI_finish();
	policy_times = map;
	blackout_days = days;
}

/*
 * The local date, time of day and ISO weekday of instant at in zone (as
 * "at AT TIME ZONE zone" reads it: a zone name, abbreviation or POSIX spec).
 */
static LocalInstant
local_instant(TimestampTz at, text *zone)
{
	LocalInstant l;
	Timestamp	lt;

	memset(&l, 0, sizeof(l));
	l.zone = zone ? text_to_cstring(zone) : NULL;
	if (zone == NULL)
		return l;
	lt = DatumGetTimestamp(DirectFunctionCall2(timestamptz_zone, PointerGetDatum(zone),
											   TimestampTzGetDatum(at)));
	if (TIMESTAMP_NOT_FINITE(lt))
		return l;
	l.known = true;
	l.date = (DateADT) (lt / USECS_PER_DAY);
	if (lt < (Timestamp) l.date * USECS_PER_DAY)
		l.date--;				/* before 2000-01-01: round down */
	l.time = lt - (Timestamp) l.date * USECS_PER_DAY;
	l.isodow = j2day(l.date + POSTGRES_EPOCH_JDATE);
	if (l.isodow == 0)
		l.isodow = 7;
	return l;
}

/* is one of the policy's windows open at the local instant? */
static bool
policy_window_open(const PolicyTimes *p, const LocalInstant *l)
{
	int			i;

	for (i = 0; i < p->nwindows; i++)
	{
		const PolicyWindow *w = &p->windows[i];

		if ((w->weekdays & (1 << l->isodow)) && l->time >= w->starts && l->time < w->ends)
			return true;
	}
	return false;
}

/* the blackout day of one of the policy's calendars at the local instant, if any */
static BlackoutDay *
policy_blackout(const PolicyTimes *p, const LocalInstant *l, int *calendar)
{
	int			i;

	for (i = 0; i < p->ncalendars; i++)
	{
		BlackoutKey key;
		BlackoutDay *day;

		if (strlen(p->calendars[i]) >= POLICY_NAME_KEY)
			continue;
		memset(&key, 0, sizeof(key));
		strcpy(key.calendar, p->calendars[i]);
		key.day = l->date;
		day = (BlackoutDay *) hash_search(blackout_days, &key, HASH_FIND, NULL);
		if (day != NULL)
		{
			*calendar = i;
			return day;
		}
	}
	return NULL;
}

/* the output text of a date or time datum (DateStyle applies, as in format()) */
static char *
datum_text(PGFunction out, Datum value)
{
	return DatumGetCString(DirectFunctionCall1(out, value));
}

/*
 * dialer.closed_rule(policies text[], zones text[], at timestamptz, ws time,
 * we time) returns table (policy, rule, timezone, detail): the first rule closed
 * at instant at in one of the zones, no row when every rule is open in every
 * zone.  The order: a blackout day of a policy's calendars (rule blackout), then
 * a policy none of whose windows is open (rule window), then the general window
 * [ws, we) (policy dialer.call_window, rule window; we = 00:00 or 24:00 is the end
 * of the day; no general window when ws or we is NULL).  Within one kind, the
 * first policy in the order of the array (callers pass them sorted by name, as
 * dialer.policies_covering returns them) and the first zone closed.  Where the
 * local time is not known (a NULL zone or instant), a policy's windows are closed
 * (fail closed) and blackouts and the general window say nothing; a policy that
 * does not exist closes nothing.
 */
Datum
dialer_closed_rule(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *policy_names = NULL;
	bool	   *policy_nulls = NULL;
	int			npolicies = 0;
	Datum	   *zone_names;
	bool	   *zone_nulls;
	int			nzones;
	LocalInstant *local;
	PolicyTimes **policies;
	TimestampTz at;
	const char *policy = NULL;
	const char *rule = NULL;
	const char *zone = NULL;
	char	   *detail = NULL;
	int			i,
				z;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(1))
		return (Datum) 0;
	at = PG_ARGISNULL(2) ? DT_NOBEGIN : PG_GETARG_TIMESTAMPTZ(2);

	if (policy_times == NULL || policy_times_stale)
		policy_times_load();

	if (!PG_ARGISNULL(0))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
						  &policy_names, &policy_nulls, &npolicies);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &zone_names, &zone_nulls, &nzones);

	local = (LocalInstant *) palloc(sizeof(LocalInstant) * Max(nzones, 1));
	for (z = 0; z < nzones; z++)
		local[z] = local_instant(at, zone_nulls[z] ? NULL : DatumGetTextPP(zone_names[z]));

	policies = (PolicyTimes **) palloc0(sizeof(PolicyTimes *) * Max(npolicies, 1));
	for (i = 0; i < npolicies; i++)
	{
		char	   *name;

		if (policy_nulls[i])
			continue;
		name = TextDatumGetCString(policy_names[i]);
		if (strlen(name) < POLICY_NAME_KEY)
			policies[i] = (PolicyTimes *) hash_search(policy_times, name, HASH_FIND, NULL);
	}

	/* a blackout day */
	for (i = 0; i < npolicies && rule == NULL; i++)
		for (z = 0; z < nzones && policies[i] != NULL && rule == NULL; z++)
		{
			BlackoutDay *day;
			int			calendar;

			if (!local[z].known)
				continue;
			day = policy_blackout(policies[i], &local[z], &calendar);
			if (day == NULL)
				continue;
			policy = policies[i]->name;
			rule = "blackout";
			zone = local[z].zone;
			detail = psprintf("%s %s (calendar %s)", day->name,
							  datum_text(date_out, DateADTGetDatum(day->key.day)),
							  policies[i]->calendars[calendar]);
		}

	/* a policy's windows */
	for (i = 0; i < npolicies && rule == NULL; i++)
		for (z = 0; z < nzones && policies[i] != NULL && policies[i]->nwindows > 0 && rule == NULL; z++)
		{
			if (local[z].known && policy_window_open(policies[i], &local[z]))
				continue;
			policy = policies[i]->name;
			rule = "window";
			zone = local[z].zone;
			if (!local[z].known)
				detail = pstrdup("no window of the policy is open: the local time is not known");
			else
				detail = psprintf("no window of the policy is open on %s %02d:%02d local time",
								  iso_day_names[local[z].isodow],
								  (int) (local[z].time / USECS_PER_HOUR),
								  (int) (local[z].time % USECS_PER_HOUR / USECS_PER_MINUTE));
		}

	/* the general window */
	if (rule == NULL && !PG_ARGISNULL(3) && !PG_ARGISNULL(4))
	{
		TimeADT		ws = PG_GETARG_TIMEADT(3);
		TimeADT		we = PG_GETARG_TIMEADT(4);
		bool		to_midnight = (we == 0 || we == USECS_PER_DAY);

		for (z = 0; z < nzones && rule == NULL; z++)
		{
			if (!local[z].known ||
				(local[z].time >= ws && (local[z].time < we || to_midnight)))
				continue;
			policy = "dialer.call_window";
			rule = "window";
			zone = local[z].zone;
			detail = psprintf("outside %s-%s local time",
							  datum_text(time_out, TimeADTGetDatum(ws)),
							  datum_text(time_out, TimeADTGetDatum(we)));
		}
	}

	if (rule != NULL)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = CStringGetTextDatum(policy);
		values[1] = CStringGetTextDatum(rule);
		if (zone != NULL)
			values[2] = CStringGetTextDatum(zone);
		else
			nulls[2] = true;
		values[3] = CStringGetTextDatum(detail);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
