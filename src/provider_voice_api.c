/*-------------------------------------------------------------------------
 *
 * provider_voice_api.c
 *	  A generic voice API: POST {base_url}/calls with
 *	  {phone_number, message, metadata: {call_id, ...}} and a bearer key; the
 *	  answer's call_id is stored.  An Idempotency-Key is sent as for backends.
 *	  Reconciliation reads GET /calls/{call_id}; there is no search.  This
 *	  file reads every answer the voice API gives.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_voice_api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"

#include "call_outcome.h"
#include "http.h"
#include "lookup_report.h"
#include "provider.h"
#include "provider_voice_api.h"

/*
 * POST {base_url}/calls with the message to speak and the call's metadata.
 */
static bool
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

	http_prepare(&req->http, psprintf("%s/calls", p->base_url));
	http_set_bearer_auth(&req->http, p->bearer_token);
	http_add_header(&req->http, "Idempotency-Key: %s", c->idempotency_key);
	http_add_header(&req->http, "X-Dialer-Call-Id: " INT64_FORMAT, c->id);
	http_set_body(&req->http, body.data, "application/json");
	return true;
}

/*
 * GET {base_url}/calls/{call_id}: the voice API's record of the call.
 */
static void
voice_api_lookup(DialerRequest *req)
{
	DialerProvider *p = req->provider;

	http_prepare_get(&req->http, psprintf("%s/calls/%s", p->base_url,
										  http_escape(req->call.provider_call_id)));
	http_set_bearer_auth(&req->http, p->bearer_token);
}

/*
 * The answer to a lookup: the voice API's record of the call, a JSON object with the
 * usual fields (status, duration, answered_by, recording_url, transcript),
 * as pg_dialer's report.
 */
static char *
voice_api_read_lookup(DialerRequest *req)
{
	return report_lookup(&req->http, &lookup_json_fields);
}

/*
 * A 2xx answer carries the voice API's call id; anything else follows the
 * shared outcome rules (a lost answer is retried: the Idempotency-Key makes
 * that safe).
 */
static ProviderVerdict
voice_api_finish(DialerRequest *req, DialerOutcome *out)
{
	if (outcome_is_2xx(&req->http))
		outcome_accepted_with_id(&req->http, req->provider->name, out);
	else
		outcome_from_http(&req->http, req->provider->name, req->call.attempt,
						  voice_api_provider_ops.resend_safe, out);
	return VERDICT_DONE;
}

/* The voice API cannot be searched by what was sent: no search operation. */
const ProviderOps voice_api_provider_ops = {
	.kind = "voice_api",
	.resend_safe = true,
	.prepare = voice_api_prepare,
	.finish = voice_api_finish,
	.lookup = voice_api_lookup,
	.read_lookup = voice_api_read_lookup,
	.search = NULL,
	.read_search = NULL,
};
