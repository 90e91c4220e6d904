/*-------------------------------------------------------------------------
 *
 * provider.c
 *	  The providers' registry and the dispatcher's way to them: the table of
 *	  every kind of provider, and the functions that make a request for a
 *	  call (or a lookup, or a search), start it through the HTTP engine and
 *	  hand its answer to the provider's own code.  Each kind lives in its own
 *	  file and is reached only through its ProviderOps; none calls back here.
 *
 *	  A new kind of provider: a file provider_<kind>.c defining a ProviderOps
 *	  and its header provider_<kind>.h declaring it, a line in provider_kinds
 *	  below, and the kind in the CHECK constraint of dialer.providers.kind
 *	  (sql/install/parts/00_schema.sql).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http.h"
#include "provider.h"
#include "provider_backend.h"
#include "provider_twilio.h"
#include "provider_voice_api.h"

/* dialer_request() relies on it: an HttpRequest is its DialerRequest */
StaticAssertDecl(offsetof(DialerRequest, http) == 0,
				 "the HttpRequest must be the first member of a DialerRequest");

/* every kind of provider, by dialer.providers.kind */
static const ProviderOps *const provider_kinds[] = {
	&twilio_provider_ops,
	&backend_provider_ops,
	&voice_api_provider_ops,
};

/*
 * The operations of a kind of provider.  An unknown kind (the table's CHECK
 * constraint and this list disagree) is an error, never a guess.
 */
const ProviderOps *
provider_ops_for_kind(const char *kind, const char *provider)
{
	StringInfoData known;
	size_t		i;

	for (i = 0; i < lengthof(provider_kinds); i++)
	{
		if (strcmp(provider_kinds[i]->kind, kind) == 0)
			return provider_kinds[i];
	}
	initStringInfo(&known);
	for (i = 0; i < lengthof(provider_kinds); i++)
		appendStringInfo(&known, "%s%s", i > 0 ? ", " : "", provider_kinds[i]->kind);
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("pg_dialer: provider \"%s\" has kind \"%s\", which this library does not know",
					provider, kind),
			 errdetail("The kinds this library knows: %s.", known.data),
			 errhint("Install the pg_dialer library that matches the extension's schema, or change the provider's kind.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * A new request for call at provider, with its own memory context; the call
 * is copied in.
 */
static DialerRequest *
new_request(DialerProvider *provider, ClaimedCall *call)
{
	DialerRequest *req = dialer_request(http_new_request(sizeof(DialerRequest)));
	MemoryContext old = MemoryContextSwitchTo(req->http.cxt);

	req->provider = provider;
	req->call.id = call->id;
	req->call.attempt = call->attempt;
#define COPY(f) req->call.f = call->f ? pstrdup(call->f) : NULL
	COPY(to_number);
	COPY(from_number);
	COPY(mode);
	COPY(payload);
	COPY(message);
	COPY(url);
	COPY(script);
	COPY(base_url);
	COPY(idempotency_key);
	COPY(campaign);
	COPY(provider_call_id);
	COPY(search);
#undef COPY
	MemoryContextSwitchTo(old);
	return req;
}

/*
 * Makes and starts the request that places call at provider.  Returns NULL
 * (with *error set, in the caller's memory context) when the call cannot be
 * sent at all: a permanent failure, nothing was sent.
 */
DialerRequest *
provider_start_call(DialerProvider *provider, ClaimedCall *call, char **error)
{
	MemoryContext caller = CurrentMemoryContext;
	DialerRequest *req = new_request(provider, call);
	char	   *why = NULL;
	bool		ok;

	MemoryContextSwitchTo(req->http.cxt);
	ok = provider->ops->prepare(req, &why);
	MemoryContextSwitchTo(caller);
	if (!ok)
	{
		*error = pstrdup(why ? why : "the provider cannot send this call");
		http_release(&req->http);
		return NULL;
	}
	http_start(&req->http);
	return req;
}

/*
 * Makes and starts a lookup of call at provider (reconciliation by the
 * provider's call id).
 */
void
provider_start_lookup(DialerProvider *provider, ClaimedCall *call)
{
	DialerRequest *req = new_request(provider, call);
	MemoryContext old = MemoryContextSwitchTo(req->http.cxt);

	req->lookup = true;
	provider->ops->lookup(req);
	MemoryContextSwitchTo(old);
	http_start(&req->http);
}

/*
 * Whether an unknown call without a provider call id can be searched for at
 * this provider by what was sent.
 */
bool
provider_can_search(DialerProvider *provider)
{
	return provider->ops->search != NULL;
}

/*
 * Makes and starts a search for call at provider by what was sent
 * (call->search, from dialer.claim_searches).  Only where
 * provider_can_search().
 */
void
provider_start_search(DialerProvider *provider, ClaimedCall *call)
{
	DialerRequest *req = new_request(provider, call);
	MemoryContext old = MemoryContextSwitchTo(req->http.cxt);

	Assert(provider_can_search(provider));
	req->lookup = true;
	provider->ops->search(req);
	MemoryContextSwitchTo(old);
	http_start(&req->http);
}

/*
 * Interprets a finished request for its provider: fills in out, or sets up
 * the request's next phase (VERDICT_NEXT_PHASE; provider_continue sends it).
 */
ProviderVerdict
provider_finish(DialerRequest *req, DialerOutcome *out)
{
	out->call_id = req->call.id;
	out->attempt = req->call.attempt;
	out->http_status = (int) req->http.status;
	out->responded_at = GetCurrentTimestamp();
	return req->provider->ops->finish(req, out);
}

/*
 * pg_dialer's report of what a finished (or failed) lookup or search found,
 * read by its provider's kind.
 */
char *
provider_read_answer(DialerRequest *req)
{
	Assert(req->lookup);
	if (req->call.search)
		return req->provider->ops->read_search(req);
	return req->provider->ops->read_lookup(req);
}

/*
 * Sends the next phase a provider set up in provider_finish.
 */
void
provider_continue(DialerRequest *req)
{
	http_start(&req->http);
}

/*
 * Whether a request to provider whose answer was lost may be sent again.
 */
bool
provider_resend_safe(DialerProvider *provider)
{
	return provider->ops->resend_safe;
}

/*
 * Frees a finished or abandoned request.
 */
void
provider_release(DialerRequest *req)
{
	http_release(&req->http);
}
