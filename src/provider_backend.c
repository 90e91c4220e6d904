/*-------------------------------------------------------------------------
 *
 * provider_backend.c
 *	  The customer's own AI-call backend.  Mode DIRECT posts /call/start with
 *	  the ready script; mode BRIEF_START posts /call/brief first and starts the
 *	  call with the script it returns.  JSON bodies, an optional bearer token,
 *	  and an Idempotency-Key that is the same for every retry of a call's run,
 *	  so the backend can drop a duplicate and a lost answer can be retried.
 *	  Reconciliation reads GET /call/{call_id}, or searches by the
 *	  Idempotency-Key; this file reads every answer the backend gives.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_backend.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "utils/json.h"

#include "call_outcome.h"
#include "http.h"
#include "json_read.h"
#include "lookup_report.h"
#include "provider.h"
#include "provider_backend.h"

/*
 * The host of an http(s) URL, lower-cased, or NULL when url is not http(s).
 */
static char *
url_host(const char *url)
{
	const char *p;
	const char *end;
	char	   *host;
	int			i;

	if (pg_strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else if (pg_strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else
		return NULL;
	if (strpbrk(p, "@") && strpbrk(p, "@") < (strpbrk(p, "/") ? strpbrk(p, "/") : p + strlen(p)))
		return NULL;			/* no credentials in per-call URLs */
	end = p;
	while (*end && *end != '/' && *end != ':' && *end != '?' && *end != '#')
		end++;
	if (end == p)
		return NULL;
	host = pnstrdup(p, end - p);
	for (i = 0; host[i]; i++)
		host[i] = tolower((unsigned char) host[i]);
	return host;
}

/* The base URL of this call: payload.base_url when its host is allowed. */
static char *
backend_base_url(DialerRequest *req, char **error)
{
	DialerProvider *p = req->provider;
	char	   *host;
	ListCell   *lc;

	if (req->call.base_url == NULL)
		return pstrdup(p->base_url);
	host = url_host(req->call.base_url);
	if (host == NULL)
	{
		*error = pstrdup("payload.base_url is not an http(s) URL without credentials");
		return NULL;
	}
	foreach(lc, p->allowed_hosts)
	{
		if (pg_strcasecmp((char *) lfirst(lc), host) == 0)
		{
			char	   *u = pstrdup(req->call.base_url);
			int			len = strlen(u);

			while (len > 0 && u[len - 1] == '/')
				u[--len] = '\0';
			return u;
		}
	}
	*error = psprintf("payload.base_url host \"%s\" is not in allowed_hosts of provider %s", host, p->name);
	return NULL;
}

/*
 * Sets up one JSON POST to base + path.  The script is NULL for the brief.
 */
static void
backend_request(DialerRequest *req, const char *base, const char *path, const char *script)
{
	DialerProvider *p = req->provider;
	ClaimedCall *c = &req->call;
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"call_id\": " INT64_FORMAT ", \"attempt\": %d, \"to_number\": ",
					 c->id, c->attempt);
	escape_json(&body, c->to_number);
	if (c->from_number || p->from_number)
	{
		appendStringInfoString(&body, ", \"from_number\": ");
		escape_json(&body, c->from_number ? c->from_number : p->from_number);
	}
	if (script)
	{
		appendStringInfoString(&body, ", \"script\": ");
		escape_json(&body, script);
	}
	appendStringInfo(&body, ", \"mode\": \"%s\", \"metadata\": %s}",
					 c->mode ? c->mode : "DIRECT", c->payload ? c->payload : "{}");

	http_prepare(&req->http, psprintf("%s%s", base, path));
	http_set_bearer_auth(&req->http, p->bearer_token);
	http_add_header(&req->http, "Idempotency-Key: %s%s", c->idempotency_key, script ? "" : "-brief");
	http_add_header(&req->http, "X-Dialer-Call-Id: " INT64_FORMAT, c->id);
	http_set_body(&req->http, body.data, "application/json");
}

/*
 * The call's first request: /call/brief for BRIEF_START, else /call/start with
 * the ready script.
 */
static bool
backend_prepare(DialerRequest *req, char **error)
{
	ClaimedCall *c = &req->call;
	char	   *base = backend_base_url(req, error);

	if (base == NULL)
		return false;

	/* the second phase keeps this base URL: the provider may be reloaded */
	req->call.base_url = MemoryContextStrdup(req->http.cxt, base);
	if (c->mode && strcmp(c->mode, "BRIEF_START") == 0)
	{
		req->phase = 0;
		backend_request(req, base, "/call/brief", NULL);
		return true;
	}
	if (c->script == NULL && c->message == NULL)
	{
		*error = pstrdup("mode DIRECT needs payload.script (or payload.message)");
		return false;
	}
	req->phase = 1;
	backend_request(req, base, "/call/start", c->script ? c->script : c->message);
	return true;
}

/*
 * GET {base_url}/call/{call_id}: the backend's record of the call.
 */
static void
backend_lookup(DialerRequest *req)
{
	DialerProvider *p = req->provider;

	http_prepare_get(&req->http, psprintf("%s/call/%s", p->base_url,
										  http_escape(req->call.provider_call_id)));
	http_set_bearer_auth(&req->http, p->bearer_token);
}

/*
 * GET {base_url}/call?idempotency_key=KEY: the calls the backend holds for the
 * Idempotency-Key of the call's last attempt, as {"calls": [{"call_id", "status",
 * ...}]}, for an unknown call without a call id.  This lookup is optional in the
 * backend contract: any answer but a 2xx with a calls list leaves the call unknown.
 */
static void
backend_search(DialerRequest *req)
{
	DialerProvider *p = req->provider;
	bool		valid;
	char	   *key = json_get_string(req->call.search, "idempotency_key", &valid);

	http_prepare_get(&req->http, psprintf("%s/call?idempotency_key=%s", p->base_url,
										  http_escape(key)));
	http_set_bearer_auth(&req->http, p->bearer_token);
}

/*
 * The answer to a lookup: the backend's record of the call, a JSON object with the
 * usual fields (status, duration, answered_by, recording_url, transcript),
 * as pg_dialer's report.
 */
static char *
backend_read_lookup(DialerRequest *req)
{
	return report_lookup(&req->http, &lookup_json_fields);
}

/* where the answer to a search by Idempotency-Key keeps its records */
static const SearchFields backend_search_fields = {
	.list = "calls",
	.id = "call_id",
	.status = "status",
	.duration = "duration",
	.answered_by = "answered_by",
	.idempotency_key = "idempotency_key",
};

/*
 * The answer to a search by Idempotency-Key ({"calls": [...]}), as
 * pg_dialer's report.  A record that names an Idempotency-Key reports it (it
 * must be the one sent); one that names none may be the call.  Any answer
 * but a 2xx means the backend does not offer the search (it is optional in
 * the backend contract).
 */
static char *
backend_read_search(DialerRequest *req)
{
	HttpRequest *http = &req->http;

	if (!http->completed)
		return report_search_failed("failed", http->error);
	if (http->status < 200 || http->status > 299)
		return report_search_failed("not_offered",
									psprintf("the backend answered HTTP %ld to GET /call?idempotency_key=: it offers no lookup by Idempotency-Key",
											 http->status));
	return report_search(http->response.data, &backend_search_fields, false);
}

/*
 * The brief's 2xx answer carries the script: start the call with it.  The
 * start's 2xx answer carries the backend's call id.  A lost answer is retried
 * (the Idempotency-Key makes that safe).
 */
static ProviderVerdict
backend_finish(DialerRequest *req, DialerOutcome *out)
{
	HttpRequest *http = &req->http;
	bool		valid;

	if (outcome_is_2xx(http))
	{
		if (req->phase == 0)
		{
			char	   *script = json_get_string(http->response.data, "script", &valid);

			if (script == NULL || script[0] == '\0')
			{
				out->outcome = "failed";
				out->error_code = pstrdup("bad_brief");
				out->error_message = psprintf("provider %s answered /call/brief without a script", req->provider->name);
				return VERDICT_DONE;
			}
			script = MemoryContextStrdup(http->cxt, script);
			req->phase = 1;
			backend_request(req, req->call.base_url, "/call/start", script);
			return VERDICT_NEXT_PHASE;
		}
		outcome_accepted_with_id(http, req->provider->name, out);
		return VERDICT_DONE;
	}
	outcome_from_http(http, req->provider->name, req->call.attempt,
					  backend_provider_ops.resend_safe, out);
	if (http->status > 0 && !http->too_large)
	{
		char	   *msg = json_get_string(http->response.data, "error", &valid);

		if (msg == NULL && valid)
			msg = json_get_string(http->response.data, "message", &valid);
		if (msg)
			out->error_message = psprintf("provider %s answered HTTP %ld: %s", req->provider->name, http->status, msg);
	}
	return VERDICT_DONE;
}

/*
 * Every request carries the Idempotency-Key of the call's run: a request whose
 * answer was lost may be sent again.
 */
const ProviderOps backend_provider_ops = {
	.kind = "backend",
	.resend_safe = true,
	.prepare = backend_prepare,
	.finish = backend_finish,
	.lookup = backend_lookup,
	.read_lookup = backend_read_lookup,
	.search = backend_search,
	.read_search = backend_read_search,
};
