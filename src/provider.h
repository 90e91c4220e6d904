/*-------------------------------------------------------------------------
 *
 * provider.h
 *	  Providers (provider.c): a provider's configuration, a call ready to be
 *	  sent, a request made for it, and the table of operations each kind of
 *	  provider implements in its own file (provider_<kind>.c, with its header
 *	  provider_<kind>.h), registered by kind in provider.c.  A kind's file
 *	  reads every answer of its kind: to a call, a lookup, a search.
 *
 *	  The dispatcher talks to providers only through the functions at the end
 *	  of this file; a provider file calls only downwards (call_outcome.h,
 *	  lookup_report.h, json_read.h, http.h, webhook_signature.h), never back
 *	  into provider.c.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_PROVIDER_H
#define DIALER_PROVIDER_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

#include "call_outcome.h"
#include "http.h"

#define DIALER_NAME_LEN 64

typedef struct ProviderOps ProviderOps;

/*
 * One row of dialer.providers, as loaded at the start of a dispatch round, plus
 * the dispatcher's own pacing state for it (kept across rounds by name).
 */
typedef struct DialerProvider
{
	char		name[DIALER_NAME_LEN];
	const ProviderOps *ops;		/* its kind's operations */
	char	   *base_url;		/* without trailing slash */
	char	   *account_sid;
	char	   *auth_token;		/* secret */
	char	   *api_key_sid;
	char	   *api_key_secret; /* secret */
	char	   *bearer_token;	/* secret */
	char	   *from_number;
	char	   *twiml_url;
	char	   *status_callback_url;
	List	   *allowed_hosts;	/* of char * */
	int			ring_timeout;	/* 0: not sent */
	char	   *machine_detection;	/* NULL: none (a call's payload may ask) */
	bool		async_amd;		/* detection in the background, verdict to
								 * status_callback_url */
	double		calls_per_second;
	int			max_concurrency;	/* 0: no limit on calls in progress */
	bool		seen;			/* present in the latest load */

	/* pacing, kept across reloads */
	double		tokens;
	TimestampTz tokens_at;
	TimestampTz blocked_until;	/* 0: not blocked */
	bool		at_capacity;	/* blocked only because max_concurrency is
								 * reached */
	int			in_flight;
	int			consecutive_failures;
	uint32		endpoint_hash;	/* of its URL and credentials at the last load
								 * (pacing.c) */
	TimestampTz stalled_since;	/* at max_concurrency with due calls waiting
								 * since (0: not stalled) */
	int			stalled_due;	/* due calls waiting at the last look */
	TimestampTz stall_frees_at; /* when reconciliation frees its first slot */
	bool		stall_warned;	/* the stall was logged */

	bool		status_callback_call_id;	/* append call_id=<id> to
											 * status_callback_url */
} DialerProvider;

/*
 * A call claimed from the queue (dialer.claim_calls(), or for reconciliation
 * dialer.claim_reconciliations() and dialer.claim_searches()), ready to be
 * sent.
 */
typedef struct ClaimedCall
{
	int64		id;
	int			attempt;
	char	   *to_number;
	char	   *from_number;
	char	   *mode;
	char	   *payload;		/* JSON object text */
	char	   *message;
	char	   *url;
	char	   *script;
	char	   *base_url;
	char	   *idempotency_key;
	char	   *campaign;
	char	   *provider_call_id;	/* reconciliation: the call to look up */
	char	   *provider;		/* reconciliation: its provider's name */
	char	   *search;			/* search by what was sent: JSON from
								 * dialer.claim_searches */
} ClaimedCall;

/*
 * A request made for a call: an HTTP request (first member, so the HTTP
 * engine's HttpRequest is this request) with the call and its provider.
 * Everything it owns lives in http.cxt.
 */
typedef struct DialerRequest
{
	HttpRequest http;
	DialerProvider *provider;	/* valid while in flight: providers are never
								 * freed */
	ClaimedCall call;
	int			phase;			/* a call in two requests: 0 the first, 1 the
								 * second */
	bool		lookup;			/* a reconciliation GET, not a call */
} DialerRequest;

/* The request an HttpRequest returned by the HTTP engine belongs to. */
static inline DialerRequest *
dialer_request(HttpRequest *http)
{
	return (DialerRequest *) http;
}

/* What a provider makes of a finished request. */
typedef enum ProviderVerdict
{
	VERDICT_DONE,				/* outcome filled in */
	VERDICT_NEXT_PHASE			/* the provider set up the next request on req */
} ProviderVerdict;

/*
 * What a kind of provider does.  prepare, finish, lookup and read_lookup are
 * required; search and read_search are both NULL when the provider cannot be
 * searched by what was sent.  Everything the dispatcher needs to know of a
 * kind is here: nothing outside the kind's file asks which kind it is.
 */
struct ProviderOps
{
	const char *kind;			/* dialer.providers.kind */

	/*
	 * Whether a request whose answer was lost may be sent again: the provider
	 * dedupes by Idempotency-Key.
	 */
	bool		resend_safe;

	/*
	 * Sets up req's first HTTP request; false (with *error set) when the call
	 * cannot be sent at all.
	 */
	bool		(*prepare) (DialerRequest *req, char **error);

	/*
	 * Fills in out from req's finished request, or sets up req's next phase.
	 */
	ProviderVerdict (*finish) (DialerRequest *req, DialerOutcome *out);

	/* Sets up req as a lookup of req->call.provider_call_id. */
	void		(*lookup) (DialerRequest *req);

	/*
	 * pg_dialer's report of what req's lookup found (lookup_report.c: a JSON
	 * object for dialer.apply_reconciliation), whether it was answered or
	 * failed.
	 */
	char	   *(*read_lookup) (DialerRequest *req);

	/* Sets up req as a search by what was sent (req->call.search). */
	void		(*search) (DialerRequest *req);

	/*
	 * pg_dialer's report of what req's search found (lookup_report.c: a JSON
	 * object for dialer.apply_search), whether it was answered or failed.
	 */
	char	   *(*read_search) (DialerRequest *req);
};

/* provider.c: the registry, and what the dispatcher asks of providers */
extern const ProviderOps *provider_ops_for_kind(const char *kind, const char *provider);
extern DialerRequest *provider_start_call(DialerProvider *provider, ClaimedCall *call,
										  char **error);
extern void provider_start_lookup(DialerProvider *provider, ClaimedCall *call);
extern bool provider_can_search(DialerProvider *provider);
extern void provider_start_search(DialerProvider *provider, ClaimedCall *call);
extern ProviderVerdict provider_finish(DialerRequest *req, DialerOutcome *out);
extern char *provider_read_answer(DialerRequest *req);
extern void provider_continue(DialerRequest *req);
extern bool provider_resend_safe(DialerProvider *provider);
extern void provider_release(DialerRequest *req);

#endif							/* DIALER_PROVIDER_H */
