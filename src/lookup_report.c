/*-------------------------------------------------------------------------
 *
 * lookup_report.c
 *	  pg_dialer's report of what a provider answered to a lookup or a search
 *	  (reconciliation).  Each kind reads its own answers in its own file
 *	  (ProviderOps.read_lookup and read_search) and writes them in one form,
 *	  a JSON object in pg_dialer's field names, which
 *	  dialer.apply_reconciliation() and dialer.apply_search() apply: no SQL
 *	  function reads a provider's answer.  This file holds what every kind's
 *	  reader shares: the report's form, whole seconds and times in one
 *	  notation, and the reading of a call resource and of a list of records
 *	  whose fields a kind names (LookupFields, SearchFields).
 *
 *	  A lookup's report: {"status", "duration_seconds", "answered_by",
 *	  "recording_url", "transcript"}, each left out when not reported; or
 *	  {"error": why} when the answer says nothing usable.
 *
 *	  A search's report: {"records": [...], "listed": n, "more": bool}, where
 *	  listed counts every element of the provider's list (records holds the
 *	  objects among them) and more says a further page may hold more records
 *	  (a list in pages is newest first); or {"result": "failed" or
 *	  "not_offered", "error": why}.  A record: {"id", "status",
 *	  "duration_seconds", "answered_by"}, plus what identifies the call where
 *	  the kind's records carry it: "to" and "from", "created_at" (ISO 8601,
 *	  UTC) and "idempotency_key", each null when the record lacks it.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/lookup_report.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "json_read.h"
#include "lookup_report.h"

/*
 * The usual fields of a call's record in a JSON answer, which most kinds'
 * lookups read.
 */
const LookupFields lookup_json_fields = {
	.status = "status",
	.duration = "duration",
	.answered_by = "answered_by",
	.recording_url = "recording_url",
	.transcript = "transcript",
};

/* Appends "name": value (a JSON string, or null) to the object in buf. */
static void
report_text(StringInfo buf, const char *name, const char *value)
{
	if (buf->data[buf->len - 1] != '{')
		appendStringInfoString(buf, ", ");
	escape_json(buf, name);
	appendStringInfoString(buf, ": ");
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/* Appends "name": value to the object in buf when value is not NULL. */
static void
report_reported(StringInfo buf, const char *name, const char *value)
{
	if (value)
		report_text(buf, name, value);
}

/*
 * Appends "name": seconds to the object in buf when text is a whole number of
 * seconds (digits only, within an int).
 */
static void
report_seconds(StringInfo buf, const char *name, const char *text)
{
	long		seconds = 0;
	const char *p;

	if (text == NULL || text[0] == '\0')
		return;
	for (p = text; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return;
		seconds = seconds * 10 + (*p - '0');
		if (seconds > INT_MAX)
			return;
	}
	if (buf->data[buf->len - 1] != '{')
		appendStringInfoString(buf, ", ");
	escape_json(buf, name);
	appendStringInfo(buf, ": %ld", seconds);
}

/*
 * A provider's date and time in pg_dialer's notation (ISO 8601 in UTC, as
 * 2010-08-10T08:02:17+00:00), read as timestamptz input reads it (RFC 2822
 * dates included, a date without a zone in the dispatcher's TimeZone), or
 * NULL when it is not one.  Never raises: a bad date is the provider's.
 */
static char *
report_time(const char *text)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	int			tz;
	struct pg_tm tm;
	fsec_t		fsec;
	TimestampTz ts;
	char		buf[MAXDATELEN + 1];

	if (text == NULL ||
		ParseDateTime(text, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0 ||
		DecodeDateTime(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0)
		return NULL;
	switch (dtype)
	{
		case DTK_DATE:
			if (tm2timestamp(&tm, fsec, &tz, &ts) != 0)
				return NULL;
			break;
		case DTK_EPOCH:
			ts = SetEpochTimestamp();
			break;
		case DTK_LATE:
			return pstrdup("infinity");
		case DTK_EARLY:
			return pstrdup("-infinity");
		default:
			return NULL;
	}
	/* no time zone given: the broken-down time is UTC */
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return NULL;
	EncodeDateTime(&tm, fsec, true, 0, NULL, USE_XSD_DATES, buf);
	return pstrdup(buf);
}

/*
 * The report of a lookup whose answer is a JSON object with the fields named
 * in fields: the status and what comes with it, or the error when the lookup
 * failed (a transport error, an HTTP status other than 2xx) or its answer
 * has no status.
 */
char *
report_lookup(const HttpRequest *http, const LookupFields *fields)
{
	const char *body = http->response.data;
	StringInfoData buf;
	char	   *status = NULL;
	bool		valid;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (!http->completed)
		report_text(&buf, "error", http->error);
	else if (http->status < 200 || http->status > 299)
		report_text(&buf, "error", psprintf("HTTP %ld", http->status));
	else if ((status = json_get_string(body, fields->status, &valid)) == NULL ||
			 status[0] == '\0')
		report_text(&buf, "error", "answer without a status");
	else
	{
		report_text(&buf, "status", status);
		if (fields->duration)
			report_seconds(&buf, "duration_seconds", json_get_string(body, fields->duration, &valid));
		if (fields->answered_by)
			report_reported(&buf, "answered_by", json_get_string(body, fields->answered_by, &valid));
		if (fields->recording_url)
			report_reported(&buf, "recording_url", json_get_string(body, fields->recording_url, &valid));
		if (fields->transcript)
			report_reported(&buf, "transcript", json_get_text(body, fields->transcript, &valid));
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * The report of a search that found no list of records: result failed (no
 * usable answer) or not_offered (the provider does not offer the search), and
 * why.
 */
char *
report_search_failed(const char *result, const char *why)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	report_text(&buf, "result", result);
	report_text(&buf, "error", why);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * The report of a search whose (2xx) answer is a JSON object holding a list
 * of records, read with the field names in fields: each object of the list
 * as a record, listed counting every element; more when a further page may
 * hold more records (the kind knows from its answer).  An answer without the
 * list is a failed search.
 */
char *
report_search(const char *body, const SearchFields *fields, bool more)
{
	/* the order of the keys json_get_records reads */
	enum
	{
		K_ID, K_STATUS, K_DURATION, K_ANSWERED_BY, K_TO, K_FROM, K_CREATED_AT,
		K_IDEMPOTENCY_KEY, K_COUNT
	};
	const char *keys[K_COUNT];
	StringInfoData buf;
	List	   *records;
	ListCell   *lc;
	bool		valid;

	keys[K_ID] = fields->id;
	keys[K_STATUS] = fields->status;
	keys[K_DURATION] = fields->duration;
	keys[K_ANSWERED_BY] = fields->answered_by;
	keys[K_TO] = fields->to;
	keys[K_FROM] = fields->from;
	keys[K_CREATED_AT] = fields->created_at;
	keys[K_IDEMPOTENCY_KEY] = fields->idempotency_key;
	records = json_get_records(body, fields->list, keys, K_COUNT, &valid);
	if (!valid)
		return report_search_failed("failed", psprintf("answer without a %s list", fields->list));

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"records\": [");
	foreach(lc, records)
	{
		JsonRecord *r = lfirst(lc);

		if (!r->is_object)
			continue;
		if (buf.data[buf.len - 1] != '[')
			appendStringInfoString(&buf, ", ");
		appendStringInfoChar(&buf, '{');
		report_text(&buf, "id", r->values[K_ID]);
		report_reported(&buf, "status", r->values[K_STATUS]);
		report_seconds(&buf, "duration_seconds", r->values[K_DURATION]);
		report_reported(&buf, "answered_by", r->values[K_ANSWERED_BY]);
		/* what identifies the call: lacking what its kind has, it is not */
		if (fields->to)
			report_text(&buf, "to", r->values[K_TO]);
		if (fields->from)
			report_text(&buf, "from", r->values[K_FROM]);
		if (fields->created_at)
			report_text(&buf, "created_at", report_time(r->values[K_CREATED_AT]));
		/* a record that names no Idempotency-Key may be the call */
		if (fields->idempotency_key && r->present[K_IDEMPOTENCY_KEY])
			report_text(&buf, "idempotency_key", r->values[K_IDEMPOTENCY_KEY]);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfo(&buf, "], \"listed\": %d, \"more\": %s}",
					 list_length(records), more ? "true" : "false");
	return buf.data;
}
