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
 *	  notation, and the reading of a call resource whose fields a kind names.
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

/* Starts the report of a search's list of records in buf. */
void
report_search_begin(StringInfo buf)
{
	initStringInfo(buf);
	appendStringInfoString(buf, "{\"records\": [");
}

/* Adds a record to the report of a search started in buf. */
void
report_search_record(StringInfo buf, const SearchRecord *rec)
{
	if (buf->data[buf->len - 1] != '[')
		appendStringInfoString(buf, ", ");
	appendStringInfoChar(buf, '{');
	report_text(buf, "id", rec->id);
	report_reported(buf, "status", rec->status);
	report_seconds(buf, "duration_seconds", rec->duration);
	report_reported(buf, "answered_by", rec->answered_by);
	if (rec->has_to_from)
	{
		report_text(buf, "to", rec->to);
		report_text(buf, "from", rec->from);
	}
	if (rec->has_created_at)
		report_text(buf, "created_at", report_time(rec->created_at));
	if (rec->has_idempotency_key)
		report_text(buf, "idempotency_key", rec->idempotency_key);
	appendStringInfoChar(buf, '}');
}

/*
 * Ends the report of a search started in buf: listed elements in the
 * provider's list, more when a further page may hold more.
 */
char *
report_search_end(StringInfo buf, int listed, bool more)
{
	appendStringInfo(buf, "], \"listed\": %d, \"more\": %s}", listed, more ? "true" : "false");
	return buf->data;
}
