/*-------------------------------------------------------------------------
 *
 * number_zones.c
 *	  The recipient's time zones from the number: the longest prefix of an
 *	  E.164 number found in dialer.number_timezones (libphonenumber's prefix
 *	  map) gives its IANA zones.  dialer.number_timezones(text) is the one
 *	  home of that lookup in SQL.
 *
 *	  Written in C because the claim asks it for every call under a calling
 *	  policy: as SQL, each lookup probed the table's index once per possible
 *	  prefix length (up to 15 descents), which cost a policy claim about half
 *	  its extra work.  Here each backend keeps the map (a few thousand rows)
 *	  in a hash table and looks a number up with at most as many hash probes
 *	  as the map's longest prefix has digits.
 *
 *	  The copy stays true to the caller's snapshot through table_cache.c:
 *	  every change to dialer.number_timezones moves the table's version, and
 *	  a lookup under a snapshot that sees another version than the copy's
 *	  reads the map again (a change is used from the first snapshot that
 *	  sees it, a rolled-back change never).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/number_zones.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "number_zones.h"
#include "table_cache.h"

/* an E.164 number has at most 15 digits: no longer prefix can match one */
#define ZONE_PREFIX_MAX_DIGITS 15

/* one row of dialer.number_timezones */
typedef struct ZonePrefix
{
	char		prefix[ZONE_PREFIX_MAX_DIGITS + 1]; /* the key */
	ArrayType  *zones;			/* NULL: libphonenumber's Etc/Unknown */
} ZonePrefix;

/* this backend's copy of the map: the hash table, its longest key, its version */
static HTAB *zone_map = NULL;
static int	zone_map_longest = 0;
static TableCopy zone_map_copy = {
	.table = "number_timezones",
	.name = "pg_dialer number time zones",
};

PG_FUNCTION_INFO_V1(dialer_number_timezones);

/*
 * Reads dialer.number_timezones into a fresh hash table, in the copy's memory
 * context (the previous copy's memory is freed), under the snapshot its version
 * was just read under.
 */
static void
zone_map_load(void)
{
	HASHCTL		ctl;
	uint64		i;
	int			longest = 0;
	MemoryContext context;

	zone_map = NULL;
	context = table_copy_start_load(&zone_map_copy);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ZONE_PREFIX_MAX_DIGITS + 1;
	ctl.entrysize = sizeof(ZonePrefix);
	ctl.hcxt = context;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT prefix, zones, zones = '{Etc/Unknown}' FROM dialer.number_timezones",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read dialer.number_timezones");

	{
		HTAB	   *map = hash_create("pg_dialer number time zones",
									  Max(SPI_processed, 64), &ctl,
									  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	row = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			char	   *prefix = SPI_getvalue(row, desc, 1);
			bool		isnull;
			Datum		zones;
			bool		unknown;
			ZonePrefix *entry;
			int			len = strlen(prefix);

			/* the table's CHECK allows 1 to 15 digits */
			if (len < 1 || len > ZONE_PREFIX_MAX_DIGITS)
				continue;
			zones = SPI_getbinval(row, desc, 2, &isnull);
			unknown = DatumGetBool(SPI_getbinval(row, desc, 3, &isnull));
			entry = (ZonePrefix *) hash_search(map, prefix, HASH_ENTER, NULL);
			entry->zones = NULL;
			if (!unknown)
			{
				MemoryContext caller = MemoryContextSwitchTo(context);

				entry->zones = DatumGetArrayTypePCopy(zones);
				MemoryContextSwitchTo(caller);
			}
			longest = Max(longest, len);
		}
		zone_map = map;
	}
	zone_map_longest = longest;
	SPI_finish();
	table_copy_loaded(&zone_map_copy);
}

/*
 * dialer.number_timezones(number text) returns text[]: STABLE, STRICT.  The IANA
 * zones of the longest prefix of the number (digits after an optional "+") in
 * dialer.number_timezones; NULL when no prefix is known or the map says
 * Etc/Unknown.
 */
Datum
dialer_number_timezones(PG_FUNCTION_ARGS)
{
	text	   *number = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(number);
	int			len = VARSIZE_ANY_EXHDR(number);
	char		key[ZONE_PREFIX_MAX_DIGITS + 1];
	int			n;

	if (!table_copy_is_current(&zone_map_copy))
		zone_map_load();

	if (len > 0 && s[0] == '+')
	{
		s++;
		len--;
	}
	for (n = Min(len, zone_map_longest); n >= 1; n--)
	{
		ZonePrefix *entry;

		memcpy(key, s, n);
		key[n] = '\0';
		entry = (ZonePrefix *) hash_search(zone_map, key, HASH_FIND, NULL);
		if (entry == NULL)
			continue;
		if (entry->zones == NULL)
			PG_RETURN_NULL();
		PG_RETURN_ARRAYTYPE_P(DatumGetArrayTypePCopy(PointerGetDatum(entry->zones)));
	}
	PG_RETURN_NULL();
}
