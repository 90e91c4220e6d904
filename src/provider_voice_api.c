/*-------------------------------------------------------------------------
 *
 * provider_voice_api.c
 *	  A generic voice API: POST {base_url}/calls with
 *	  {phone_number, message, metadata: {call_id, ...}} and a bearer key; the
 *	  answer's call_id is stored.  An Idempotency-Key is sent as for backends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"

#include "pg_dialer.h"
#include "dispatch.h"

bool
voice_api_prepare(DialerRequest *req, char **error)
{
	DialerProvider *p = req->provider;
	ClaimedCall *c = &req->call;
	StringInfoData body;

	if (c->message == NULL && c->script == NULL)
	{
		*error = pstrdup("voice_api calls need payload.message");
		return false;
	}
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"phone_number\": ");
	escape_json(&body, c->to_number);
	appendStringInfoString(&body, ", \"message\": ");
	escape_json(&body, c->message ? c->message : c->script);
	if (c->from_number || p->from_number)
	{
		appendStringInfoString(&body, ", \"from_number\": ");
		escape_json(&body, c->from_number ? c->from_number : p->from_number);
	}
	appendStringInfo(&body, ", \"metadata\": {\"call_id\": " INT64_FORMAT ", \"attempt\": %d",
					 c->id, c->attempt);
	if (c->campaign)
	{
		appendStringInfoString(&body, ", \"campaign\": ");
		escape_json(&body, c->campaign);
	}
	appendStringInfo(&body, ", \"payload\": %s}}", c->payload ? c->payload : "{}");

	http_prepare(req, psprintf("%s/calls", p->base_url));
	if (p->bearer_token)
		http_add_header(req, "Authorization: Bearer %s", p->bearer_token);
	http_add_header(req, "Idempotency-Key: %s", c->idempotency_key);
	http_add_header(req, "X-Dialer-Call-Id: " INT64_FORMAT, c->id);
	http_set_body(req, body.data, "application/json");
	return true;
}

/*
 * GET {base_url}/calls/{call_id}: the voice API's record of the call.
 */
void
voice_api_lookup_prepare(DialerRequest *req)
{
	DialerProvider *p = req->provider;
	http_prepare_lookup(req, psprintf("%s/calls", p->base_url), p->bearer_token);
}

ProviderVerdict
voice_api_finish(DialerRequest *req, CURLcode result, long http_status, DialerOutcome *out)
{
	if ((result == CURLE_OK || req->too_large) && http_status >= 200 && http_status < 300)
	{
		outcome_accepted_with_id(req, out);
		return VERDICT_DONE;
	}
	outcome_from_http(req, result, http_status, true, out);
	return VERDICT_DONE;
}
