/*-------------------------------------------------------------------------
 *
 * lookup_report.h
 *	  pg_dialer's report of what a provider answered to a lookup or a search
 *	  (lookup_report.c): what every kind's reader shares.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/lookup_report.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_LOOKUP_REPORT_H
#define DIALER_LOOKUP_REPORT_H

#include "lib/stringinfo.h"

#include "http.h"

/*
 * Where a kind's call resource (the answer to a lookup, a JSON object) keeps
 * what a lookup reports: the names of its top-level fields, NULL for what it
 * does not have.  status is required.
 */
typedef struct LookupFields
{
	const char *status;
	const char *duration;		/* whole seconds */
	const char *answered_by;
	const char *recording_url;
	const char *transcript;		/* text, or any JSON value (kept as its text) */
} LookupFields;

/*
 * Where a kind's answer to a search (a JSON object) keeps its list of records
 * and, in each record, what a search reports: the names of the fields, NULL
 * for what its records do not have.  list, id and status are required.  What
 * identifies the call, when the kind names it, is reported for every record:
 * to, from and created_at as null when a record lacks them (then it is not
 * the call); idempotency_key only when a record has it (one that names none
 * may be the call).
 */
typedef struct SearchFields
{
	const char *list;			/* the top-level field holding the records */
	const char *id;
	const char *status;
	const char *duration;		/* whole seconds */
	const char *answered_by;
	const char *to;
	const char *from;
	const char *created_at;		/* any form timestamptz input reads */
	const char *idempotency_key;
} SearchFields;

extern const LookupFields lookup_json_fields;

extern char *report_lookup(const HttpRequest *http, const LookupFields *fields);
extern char *report_search_failed(const char *result, const char *why);
extern char *report_search(const char *body, const SearchFields *fields, bool more);

#endif							/* DIALER_LOOKUP_REPORT_H */
