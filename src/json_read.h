/*-------------------------------------------------------------------------
 *
 * json_read.h
 *	  Reading a provider's JSON answer (json_read.c): one top-level field,
 *	  or the fields of the objects of a top-level array.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/json_read.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_JSON_READ_H
#define DIALER_JSON_READ_H

#include "nodes/pg_list.h"

/* One element of a JSON array, as json_get_records() reads it. */
typedef struct JsonRecord
{
	bool		is_object;		/* the element is an object */
	char	  **values;			/* per key asked for: its value as text, or
								 * NULL */
	bool	   *present;		/* per key asked for: it is there (null
								 * included) */
} JsonRecord;

extern char *json_get_string(const char *json, const char *key, bool *valid);
extern char *json_get_text(const char *json, const char *key, bool *valid);
extern List *json_get_records(const char *json, const char *array_key,
							  const char *const *keys, int nkeys, bool *valid);

#endif							/* DIALER_JSON_READ_H */
