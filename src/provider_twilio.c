/*-------------------------------------------------------------------------
 *
 * provider_twilio.c
 *	  Twilio's REST API: POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json,
 *	  form-encoded, HTTP Basic with the account SID and auth token (or an API
 *	  key SID and secret).  Twilio has no idempotency key, so a request whose
 *	  answer was lost is never re-sent: the call becomes unknown.
 *	  Reconciliation reads the call resource by sid, or searches Twilio's
 *	  Calls list by what was sent.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_twilio.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "call_outcome.h"
#include "http.h"
#include "json_read.h"
#include "provider.h"
#include "provider_twilio.h"

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
 * The Calls.json create request.  What the call says: payload.twiml_url or
 * payload.url as Url; else payload.message spoken through Twiml; else the
 * provider's twiml_url.
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
		char	   *cb = p->status_callback_call_id ?
		psprintf("%s%scall_id=" INT64_FORMAT, p->status_callback_url,
				 strchr(p->status_callback_url, '?') ? "&" : "?", c->id) :
		pstrdup(p->status_callback_url);

		append_form(&body, "StatusCallback", cb);
		append_form(&body, "StatusCallbackMethod", "POST");
		append_form(&body, "StatusCallbackEvent", "initiated");
		append_form(&body, "StatusCallbackEvent", "ringing");
		append_form(&body, "StatusCallbackEvent", "answered");
		append_form(&body, "StatusCallbackEvent", "completed");
	}
	if (p->ring_timeout > 0)
		append_form(&body, "Timeout", psprintf("%d", p->ring_timeout));
	if (p->machine_detection)
		append_form(&body, "MachineDetection", p->machine_detection);

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
 * for an unknown call without a sid; dialer.apply_search picks the record).
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
	.search = twilio_search,
};
