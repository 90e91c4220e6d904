/*-------------------------------------------------------------------------
 *
 * provider_twilio.c
 *	  Twilio's REST API: POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json,
 *	  form-encoded, HTTP Basic with the account SID and auth token (or an API
 *	  key SID and secret).  Twilio has no idempotency key, so a request whose
 *	  answer was lost is never re-sent: the call becomes unknown.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "pg_dialer.h"
#include "dispatch.h"

#define TWIML_MAX_LEN 4000

/* Appends name=value, form-encoded. */
static void
append_form(StringInfo buf, const char *name, const char *value)
{
	char	   *v = curl_easy_escape(NULL, value, 0);

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pg_dialer could not encode a form field")));
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	appendStringInfo(buf, "%s=%s", name, v);
	curl_free(v);
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
bool
twilio_prepare(DialerRequest *req, char **error)
{
	DialerProvider *p = req->provider;
	ClaimedCall *c = &req->call;
	const char *from = c->from_number ? c->from_number : p->from_number;
	StringInfoData url;
	StringInfoData body;
	char	   *sid;

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
		 * The call id rides in the query string (the proxy passes it on), unless
		 * the provider posts straight to PostgREST, which refuses a query string:
		 * its callbacks are then matched by CallSid.
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

	sid = curl_easy_escape(NULL, p->account_sid, 0);
	initStringInfo(&url);
	appendStringInfo(&url, "%s/2010-04-01/Accounts/%s/Calls.json", p->base_url, sid);
	curl_free(sid);

	http_prepare(req, url.data);
	if (p->api_key_sid && p->api_key_secret)
	{
		curl_easy_setopt(req->easy, CURLOPT_USERNAME, p->api_key_sid);
		curl_easy_setopt(req->easy, CURLOPT_PASSWORD, p->api_key_secret);
	}
	else
	{
		curl_easy_setopt(req->easy, CURLOPT_USERNAME, p->account_sid);
		curl_easy_setopt(req->easy, CURLOPT_PASSWORD, p->auth_token);
	}
	http_add_header(req, "X-Dialer-Call-Id: " INT64_FORMAT, c->id);
	http_set_body(req, body.data, "application/x-www-form-urlencoded");
	return true;
}

/*
 * GET {base_url}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json: the
 * call resource, with its current status, duration and answered_by.
 */
void
twilio_lookup_prepare(DialerRequest *req)
{
	DialerProvider *p = req->provider;
	char	   *sid = curl_easy_escape(NULL, p->account_sid ? p->account_sid : "", 0);
	char	   *call = curl_easy_escape(NULL, req->call.provider_call_id, 0);

	http_prepare_get(req, psprintf("%s/2010-04-01/Accounts/%s/Calls/%s.json", p->base_url, sid, call));
	curl_free(sid);
	curl_free(call);
	if (p->api_key_sid && p->api_key_secret)
	{
		curl_easy_setopt(req->easy, CURLOPT_USERNAME, p->api_key_sid);
		curl_easy_setopt(req->easy, CURLOPT_PASSWORD, p->api_key_secret);
	}
	else if (p->account_sid && p->auth_token)
	{
		curl_easy_setopt(req->easy, CURLOPT_USERNAME, p->account_sid);
		curl_easy_setopt(req->easy, CURLOPT_PASSWORD, p->auth_token);
	}
}

/* Appends &name=value to a query string, URL-encoded (the name too: "StartTime>"). */
static void
append_query(StringInfo buf, const char *name, const char *value)
{
	char	   *n = curl_easy_escape(NULL, name, 0);
	char	   *v = curl_easy_escape(NULL, value ? value : "", 0);

	if (n == NULL || v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pg_dialer could not encode a query parameter")));
	appendStringInfo(buf, "%c%s=%s", strchr(buf->data, '?') ? '&' : '?', n, v);
	curl_free(n);
	curl_free(v);
}

/*
 * GET {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json?To=..&From=..
 * &StartTime>=..&PageSize=50: Twilio's calls made to To from From that started at
 * or after the claim of the call's last attempt, newest first (the search for an
 * unknown call without a sid; dialer.apply_search picks the record).
 */
void
twilio_search_prepare(DialerRequest *req)
{
	DialerProvider *p = req->provider;
	const char *search = req->call.search;
	char	   *sid = curl_easy_escape(NULL, p->account_sid ? p->account_sid : "", 0);
	bool		valid;
	StringInfoData url;

	initStringInfo(&url);
	appendStringInfo(&url, "%s/2010-04-01/Accounts/%s/Calls.json", p->base_url, sid);
	curl_free(sid);
	append_query(&url, "To", json_get_string(search, "to", &valid));
	append_query(&url, "From", json_get_string(search, "from", &valid));
	append_query(&url, "StartTime>", json_get_string(search, "after", &valid));
	append_query(&url, "PageSize", "50");
	http_prepare_get(req, url.data);
	if (p->api_key_sid && p->api_key_secret)
	{
		curl_easy_setopt(req->easy, CURLOPT_USERNAME, p->api_key_sid);
		curl_easy_setopt(req->easy, CURLOPT_PASSWORD, p->api_key_secret);
	}
	else if (p->account_sid && p->auth_token)
	{
		curl_easy_setopt(req->easy, CURLOPT_USERNAME, p->account_sid);
		curl_easy_setopt(req->easy, CURLOPT_PASSWORD, p->auth_token);
	}
}

/*
 * 2xx: the call was created; its sid is stored (a 2xx whose body cannot be read
 * still means Twilio created the call: accepted without a sid, never re-sent).
 * Otherwise Twilio's error JSON (code, message, more_info) goes on the attempt.
 */
ProviderVerdict
twilio_finish(DialerRequest *req, CURLcode result, long http_status, DialerOutcome *out)
{
	bool		valid;

	if (http_status >= 200 && http_status < 300 && (result == CURLE_OK || req->too_large))
	{
		out->outcome = "accepted";
		out->provider_call_id = req->too_large ? NULL : json_get_string(req->response.data, "sid", &valid);
		if (out->provider_call_id == NULL)
		{
			out->error_code = pstrdup("unreadable_response");
			out->error_message = psprintf("Twilio answered HTTP %ld without a readable call sid", http_status);
		}
		return VERDICT_DONE;
	}

	outcome_from_http(req, result, http_status, false, out);
	if (http_status > 0 && !req->too_large)
	{
		char	   *code = json_get_string(req->response.data, "code", &valid);
		char	   *message = valid ? json_get_string(req->response.data, "message", &valid) : NULL;

		if (code)
			out->error_code = code;
		if (message)
			out->error_message = psprintf("Twilio error %s: %s", code ? code : "?", message);
		if (valid)
			out->more_info = json_get_string(req->response.data, "more_info", &valid);
	}
	return VERDICT_DONE;
}
