/*-------------------------------------------------------------------------
 *
 * provider_twilio.c
 *	  Twilio's REST API: POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json,
 *	  form-encoded, HTTP Basic with the account SID and auth token (or an API
 *	  key SID and secret).  Twilio has no idempotency key, so a request whose
 *	  answer was lost is never re-sent: the call becomes unknown.
 *	  Reconciliation reads the call resource by sid, or searches Twilio's
 *	  Calls list by what was sent; this file reads every answer Twilio gives
 *	  (to a create, a lookup, a search).  Also here: the StatusCallback URL
 *	  of a call, built once for the request and for the webhooks' signature
 *	  check (dialer.twilio_callback_url), and Twilio's signature of a
 *	  callback (dialer.twilio_signature).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_twilio.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "call_outcome.h"
#include "http.h"
#include "json_read.h"
#include "lookup_report.h"
#include "provider.h"
#include "provider_twilio.h"
#include "webhook_signature.h"

PG_FUNCTION_INFO_V1(dialer_twilio_callback_url);
PG_FUNCTION_INFO_V1(dialer_twilio_signature);

#define TWIML_MAX_LEN 4000

/* Appends name=value, form-encoded. */
static void
append_form(StringInfo buf, const char *name, const char *value)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	appendStringInfo(buf, "%s=%s", name, http_escape(value));
}

/*
 * HTTP Basic authentication: the API key SID and secret when the provider has
 * both, else the account SID and auth token.
 */
static void
twilio_set_auth(DialerRequest *req)
{
	DialerProvider *p = req->provider;

	if (p->api_key_sid && p->api_key_secret)
		http_set_basic_auth(&req->http, p->api_key_sid, p->api_key_secret);
	else if (p->account_sid && p->auth_token)
		http_set_basic_auth(&req->http, p->account_sid, p->auth_token);
}

/* {base_url}/2010-04-01/Accounts/{AccountSid}: every request's prefix. */
static char *
account_url(DialerProvider *p)
{
	return psprintf("%s/2010-04-01/Accounts/%s", p->base_url,
					http_escape(p->account_sid));
}

/* Appends s with the five XML special characters escaped. */
static void
append_xml_escaped(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '&':
				appendStringInfoString(buf, "&amp;");
				break;
			case '<':
				appendStringInfoString(buf, "&lt;");
				break;
			case '>':
				appendStringInfoString(buf, "&gt;");
				break;
			case '"':
				appendStringInfoString(buf, "&quot;");
				break;
			case '\'':
				appendStringInfoString(buf, "&apos;");
				break;
			default:
				appendStringInfoChar(buf, *s);
		}
	}
}

/*
 * The URL a call's status callbacks are posted to (StatusCallback, what
 * Twilio signs): the provider's status_callback_url with call_id=<id>
 * appended to its query string ('?' or '&'), or without a call id the URL as
 * configured.  Its one implementation: the create request sends it, and
 * dialer.twilio_callback_url() gives it to the webhooks' signature check.
 */
static char *
callback_url(const char *configured, bool with_call_id, int64 call_id)
{
	if (!with_call_id)
		return pstrdup(configured);
	return psprintf("%s%scall_id=" INT64_FORMAT, configured,
					strchr(configured, '?') ? "&" : "?", call_id);
}

/*
 * dialer.twilio_callback_url(status_callback_url text, call_id bigint)
 * RETURNS text
 *
 * The StatusCallback URL of a call, as the dispatcher sends it
 * (callback_url); NULL for a NULL status_callback_url, the URL as configured
 * for a NULL call_id.
 */
Datum
dialer_twilio_callback_url(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(callback_url(text_to_cstring(PG_GETARG_TEXT_PP(0)),
												  !PG_ARGISNULL(1),
												  PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1))));
}

/*
 * The tuning settings of machine detection: the payload key of each and the
 * form field it sets (their ranges are checked at enqueue:
 * dialer.machine_detection_ranges()).
 */
static const struct
{
	const char *key;
	const char *field;
}			detection_settings[] = {
	{"machine_detection_timeout", "MachineDetectionTimeout"},
	{"machine_detection_speech_threshold", "MachineDetectionSpeechThreshold"},
	{"machine_detection_speech_end_threshold", "MachineDetectionSpeechEndThreshold"},
	{"machine_detection_silence_timeout", "MachineDetectionSilenceTimeout"},
};

/*
 * Appends a call's answering-machine detection and digits to its create
 * request: MachineDetection from payload.machine_detection (none: no
 * detection), else from the provider; with it AsyncAmd, its callback (the
 * call's status callback URL, signed and checked as the status callbacks
 * are) and the tuning settings the payload gives; SendDigits from
 * payload.send_digits.  The rules (values, ranges, no detection with
 * SendDigits, an asynchronous verdict needs a status_callback_url) are
 * checked at enqueue (dialer.machine_detection_rule); a provider changed
 * since then can still make detection and SendDigits meet: such a call is not
 * sent (Twilio would ignore the detection), false with *error set.
 */
static bool
append_machine_detection(StringInfo body, DialerProvider *p, ClaimedCall *c, char **error)
{
	const char *mode = p->machine_detection;
	bool		async = p->async_amd;
	char	   *digits = NULL;
	bool		asked;
	bool		valid;

	/* most payloads hold none of the keys: their names are looked for first */
	asked = c->payload != NULL && (strstr(c->payload, "machine_detection") != NULL ||
								   strstr(c->payload, "async_amd") != NULL ||
								   strstr(c->payload, "send_digits") != NULL);
	if (asked)
	{
		char	   *v = json_get_string(c->payload, "machine_detection", &valid);

		if (v != NULL)
			mode = strcmp(v, "none") == 0 ? NULL : v;
		v = json_get_text(c->payload, "async_amd", &valid);
		if (v != NULL)
			async = strcmp(v, "true") == 0;
		digits = json_get_string(c->payload, "send_digits", &valid);
	}
	if (digits != NULL && mode != NULL)
	{
		*error = psprintf("payload.send_digits and MachineDetection=%s cannot go together (Twilio ignores the detection when SendDigits is sent)",
						  mode);
		return false;
	}
	if (digits != NULL)
		append_form(body, "SendDigits", digits);
	if (mode == NULL)
		return true;

	append_form(body, "MachineDetection", mode);
	for (int i = 0; asked && i < (int) lengthof(detection_settings); i++)
	{
		char	   *v = json_get_text(c->payload, detection_settings[i].key, &valid);

		if (v != NULL)
			append_form(body, detection_settings[i].field,
						psprintf("%d", (int) strtod(v, NULL)));
	}

	/*
	 * Without a status callback URL (a provider changed since the enqueue)
	 * the verdict could go nowhere: detection is then synchronous.
	 */
	if (async && p->status_callback_url)
	{
		append_form(body, "AsyncAmd", "true");
		append_form(body, "AsyncAmdStatusCallback",
					callback_url(p->status_callback_url, p->status_callback_call_id, c->id));
		append_form(body, "AsyncAmdStatusCallbackMethod", "POST");
	}
	return true;
}

/*
 * The Calls.json create request.  What the call says: payload.twiml_url or
 * payload.url as Url; else payload.message spoken through Twiml; else the
 * provider's twiml_url.  Then the status callback, Timeout, and the call's
 * machine detection (append_machine_detection).
 */
static bool
twilio_prepare(DialerRequest *req, char **error)
{
	DialerProvider *p = req->provider;
	ClaimedCall *c = &req->call;
	const char *from = c->from_number ? c->from_number : p->from_number;
	StringInfoData body;

	if (from == NULL)
	{
		*error = psprintf("no caller id: the call has no payload.from and provider %s has no from_number", p->name);
		return false;
	}
	if (p->account_sid == NULL || (p->auth_token == NULL && p->api_key_secret == NULL))
	{
		*error = psprintf("provider %s lacks Twilio credentials (account_sid with auth_token or api_key_sid/api_key_secret)", p->name);
		return false;
	}

	initStringInfo(&body);
	append_form(&body, "To", c->to_number);
	append_form(&body, "From", from);
	if (c->url)
		append_form(&body, "Url", c->url);
	else if (c->message)
	{
		StringInfoData twiml;

		initStringInfo(&twiml);
		appendStringInfoString(&twiml, "<Response><Say>");
		append_xml_escaped(&twiml, c->message);
		appendStringInfoString(&twiml, "</Say></Response>");
		if (twiml.len > TWIML_MAX_LEN)
		{
			*error = psprintf("payload.message makes %d characters of TwiML; Twilio accepts at most %d",
							  twiml.len, TWIML_MAX_LEN);
			return false;
		}
		append_form(&body, "Twiml", twiml.data);
	}
	else if (p->twiml_url)
		append_form(&body, "Url", p->twiml_url);
	else
	{
		*error = psprintf("nothing to say: the call's payload has no message, url or twiml_url and provider %s has no twiml_url", p->name);
		return false;
	}
	if (p->status_callback_url)
	{
		/*
		 * The call id rides in the query string (the proxy passes it on),
		 * unless the provider posts straight to PostgREST, which refuses a
		 * query string: its callbacks are then matched by CallSid.
		 */
		append_form(&body, "StatusCallback",
					callback_url(p->status_callback_url, p->status_callback_call_id, c->id));
		append_form(&body, "StatusCallbackMethod", "POST");
		append_form(&body, "StatusCallbackEvent", "initiated");
		append_form(&body, "StatusCallbackEvent", "ringing");
		append_form(&body, "StatusCallbackEvent", "answered");
		append_form(&body, "StatusCallbackEvent", "completed");
	}
	if (p->ring_timeout > 0)
		append_form(&body, "Timeout", psprintf("%d", p->ring_timeout));
	if (!append_machine_detection(&body, p, c, error))
		return false;

	http_prepare(&req->http, psprintf("%s/Calls.json", account_url(p)));
	twilio_set_auth(req);
	http_add_header(&req->http, "X-Dialer-Call-Id: " INT64_FORMAT, c->id);
	http_set_body(&req->http, body.data, "application/x-www-form-urlencoded");
	return true;
}

/*
 * GET {base_url}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json: the
 * call resource, with its current status, duration and answered_by.
 */
static void
twilio_lookup(DialerRequest *req)
{
	http_prepare_get(&req->http, psprintf("%s/Calls/%s.json", account_url(req->provider),
										  http_escape(req->call.provider_call_id)));
	twilio_set_auth(req);
}

/* Appends &name=value to a query string, URL-encoded (the name too: "StartTime>"). */
static void
append_query(StringInfo buf, const char *name, const char *value)
{
	appendStringInfo(buf, "%c%s=%s", strchr(buf->data, '?') ? '&' : '?',
					 http_escape(name), http_escape(value));
}

/*
 * GET {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json?To=..&From=..
 * &StartTime>=..&PageSize=50: Twilio's calls made to To from From that started
 * at or after the claim of the call's last attempt, newest first (the search
 * for an unknown call without a sid; twilio_read_search reads the answer,
 * dialer.apply_search picks the record).
 */
static void
twilio_search(DialerRequest *req)
{
	const char *search = req->call.search;
	bool		valid;
	StringInfoData url;

	initStringInfo(&url);
	appendStringInfo(&url, "%s/Calls.json", account_url(req->provider));
	append_query(&url, "To", json_get_string(search, "to", &valid));
	append_query(&url, "From", json_get_string(search, "from", &valid));
	append_query(&url, "StartTime>", json_get_string(search, "after", &valid));
	append_query(&url, "PageSize", "50");
	http_prepare_get(&req->http, url.data);
	twilio_set_auth(req);
}

/* what a lookup reads of Twilio's call resource */
static const LookupFields twilio_lookup_fields = {
	.status = "status",
	.duration = "duration",
	.answered_by = "answered_by",
};

/*
 * The answer to a lookup: the call resource's status, duration and
 * answered_by, as pg_dialer's report.
 */
static char *
twilio_read_lookup(DialerRequest *req)
{
	return report_lookup(&req->http, &twilio_lookup_fields);
}

/* where a page of Twilio's Calls list keeps its records */
static const SearchFields twilio_search_fields = {
	.list = "calls",
	.id = "sid",
	.status = "status",
	.duration = "duration",
	.answered_by = "answered_by",
	.to = "to",
	.from = "from",
	.created_at = "date_created",
};

/*
 * The answer to a search: a page of Twilio's Calls list ({"calls": [...],
 * "next_page_uri": ...}), newest first, as pg_dialer's report.  A record is
 * the call only if its to and from are what was sent and it was created at or
 * after the claim: each record reports those (null when it lacks one).  A
 * next_page_uri says more records may follow.
 */
static char *
twilio_read_search(DialerRequest *req)
{
	HttpRequest *http = &req->http;
	bool		valid;

	if (!http->completed)
		return report_search_failed("failed", http->error);
	if (http->status < 200 || http->status > 299)
		return report_search_failed("failed", psprintf("the provider answered HTTP %ld", http->status));
	return report_search(http->response.data, &twilio_search_fields,
						 json_get_string(http->response.data, "next_page_uri", &valid) != NULL);
}

/*
 * 2xx: the call was created; its sid is stored (a 2xx whose body cannot be read
 * still means Twilio created the call: accepted without a sid, never re-sent).
 * Otherwise Twilio's error JSON (code, message, more_info) goes on the attempt.
 */
static ProviderVerdict
twilio_finish(DialerRequest *req, DialerOutcome *out)
{
	HttpRequest *http = &req->http;
	bool		valid;

	if (outcome_is_2xx(http))
	{
		out->outcome = "accepted";
		out->provider_call_id = http->too_large ? NULL : json_get_string(http->response.data, "sid", &valid);
		if (out->provider_call_id == NULL)
		{
			out->error_code = pstrdup("unreadable_response");
			out->error_message = psprintf("Twilio answered HTTP %ld without a readable call sid", http->status);
		}
		return VERDICT_DONE;
	}

	outcome_from_http(http, req->provider->name, req->call.attempt,
					  twilio_provider_ops.resend_safe, out);
	if (http->status > 0 && !http->too_large)
	{
		char	   *code = json_get_string(http->response.data, "code", &valid);
		char	   *message = valid ? json_get_string(http->response.data, "message", &valid) : NULL;

		if (code)
			out->error_code = code;
		if (message)
			out->error_message = psprintf("Twilio error %s: %s", code ? code : "?", message);
		if (valid)
			out->more_info = json_get_string(http->response.data, "more_info", &valid);
	}
	return VERDICT_DONE;
}

/*
 * Twilio has no idempotency key: a request whose answer was lost is never
 * sent again.
 */
const ProviderOps twilio_provider_ops = {
	.kind = "twilio",
	.resend_safe = false,
	.prepare = twilio_prepare,
	.finish = twilio_finish,
	.lookup = twilio_lookup,
	.read_lookup = twilio_read_lookup,
	.search = twilio_search,
	.read_search = twilio_read_search,
};

/*
 * One form field of a status callback, pointing into the jsonb it came from.
 */
typedef struct TwilioField
{
	const char *name;
	int			namelen;
	const char *value;
	int			valuelen;
} TwilioField;

/* byte order of the names, as Twilio sorts them */
static int
twilio_field_cmp(const void *a, const void *b)
{
	const TwilioField *fa = (const TwilioField *) a;
	const TwilioField *fb = (const TwilioField *) b;
	int			cmp = memcmp(fa->name, fb->name, Min(fa->namelen, fb->namelen));

	if (cmp != 0)
		return cmp;
	return (fa->namelen > fb->namelen) - (fa->namelen < fb->namelen);
}

/*
 * dialer.twilio_signature(auth_token text, url text, params jsonb) RETURNS text
 *
 * Twilio's X-Twilio-Signature of a request: base64 of HMAC-SHA1, keyed with the auth
 * token, of the full URL (query string included) followed by every POST field sorted
 * by name in byte order, each as name then value; all in UTF-8.  params is a JSON
 * object of strings (a form has nothing else); any other value is an error.
 */
Datum
dialer_twilio_signature(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(0);
	text	   *url = PG_GETARG_TEXT_PP(1);
	Jsonb	   *params = PG_GETARG_JSONB_P(2);
	TwilioField *fields;
	int			nfields = 0;
	int			maxfields;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	TwilioField cur = {0};
	StringInfoData msg;
	char	   *key;
	char	   *data;
	int			keylen;
	bytea	   *mac;

	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the fields of a Twilio request must be a JSON object")));

	maxfields = Max(JB_ROOT_COUNT(params), 1);
	fields = (TwilioField *) palloc(sizeof(TwilioField) * maxfields);
	it = JsonbIteratorInit(&params->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
		{
			cur.name = v.val.string.val;
			cur.namelen = v.val.string.len;
		}
		else if (r == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("every field of a Twilio request is a string")));
			cur.value = v.val.string.val;
			cur.valuelen = v.val.string.len;
			if (nfields < maxfields)
				fields[nfields++] = cur;
		}
	}
	qsort(fields, nfields, sizeof(TwilioField), twilio_field_cmp);

	initStringInfo(&msg);
	appendBinaryStringInfo(&msg, VARDATA_ANY(url), VARSIZE_ANY_EXHDR(url));
	for (int i = 0; i < nfields; i++)
	{
		appendBinaryStringInfo(&msg, fields[i].name, fields[i].namelen);
		appendBinaryStringInfo(&msg, fields[i].value, fields[i].valuelen);
	}

	/* Twilio signs UTF-8; a no-op in a UTF-8 database */
	keylen = VARSIZE_ANY_EXHDR(token);
	key = pg_server_to_any(VARDATA_ANY(token), keylen, PG_UTF8);
	if (key != VARDATA_ANY(token))
		keylen = strlen(key);
	data = pg_server_to_any(msg.data, msg.len, PG_UTF8);

	mac = signature_hmac("sha1", key, keylen, data, data == msg.data ? (size_t) msg.len : strlen(data));
	PG_RETURN_TEXT_P(signature_base64(VARDATA(mac), VARSIZE(mac) - VARHDRSZ));
}
