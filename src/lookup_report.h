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
 * One record a search found, as its kind read it (the provider's own words,
 * not yet pg_dialer's).  What identifies the call is reported only when the
 * kind's records carry it (has_*): then a record that lacks it is not the
 * call.
 */
typedef struct SearchRecord
{
	const char *id;
	const char *status;
	const char *duration;		/* whole seconds are reported */
	const char *answered_by;
	bool		has_to_from;
	const char *to;
	const char *from;
	bool		has_created_at;
	const char *created_at;		/* any form timestamptz input reads */
	bool		has_idempotency_key;
	const char *idempotency_key;
} SearchRecord;

extern const LookupFields lookup_json_fields;

extern char *report_lookup(const HttpRequest *http, const LookupFields *fields);
extern char *report_search_failed(const char *result, const char *why);
extern void report_search_begin(StringInfo buf);
extern void report_search_record(StringInfo buf, const SearchRecord *rec);
extern char *report_search_end(StringInfo buf, int listed, bool more);

#endif							/* DIALER_LOOKUP_REPORT_H */
