/*-------------------------------------------------------------------------
 *
 * dispatch.h
 *	  What the worker loop, the queue, the HTTP engine and the providers share:
 *	  a provider's configuration, a claimed call, a request in flight and its
 *	  outcome.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_DISPATCH_H
#define DIALER_DISPATCH_H

#include "postgres.h"

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#define DIALER_NAME_LEN 64

typedef enum ProviderKind
{
	PROVIDER_TWILIO,
	PROVIDER_BACKEND,
	PROVIDER_VOICE_API
} ProviderKind;

/*
 * One row of dialer.providers, as loaded at the start of a dispatch round, plus
 * the worker's own pacing state for it (kept across rounds by name).
 */
typedef struct DialerProvider
{
	char		name[DIALER_NAME_LEN];
	ProviderKind kind;
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
	char	   *machine_detection;
	double		calls_per_second;
	int			max_concurrency;	/* 0: no limit on calls in progress */
	bool		seen;			/* present in the latest load */

	/* pacing, kept across reloads */
	double		tokens;
	TimestampTz tokens_at;
	TimestampTz blocked_until;	/* 0: not blocked */
	bool		at_capacity;	/* blocked only because max_concurrency is reached */
	int			in_flight;
	int			consecutive_failures;

	bool		status_callback_call_id;	/* twilio: append call_id=<id> to
											 * status_callback_url */
} DialerProvider;

/*
 * A call returned by dialer.claim_calls(), ready to be sent.
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
	char	   *search;			/* search by what was sent: JSON from dialer.claim_searches */
} ClaimedCall;

/*
 * What happened to one request, as dialer.record_results() stores it.
 */
typedef struct DialerOutcome
{
	int64		call_id;
	int			attempt;
	const char *outcome;		/* accepted, retry, failed, unknown */
	int			http_status;	/* 0: none */
	char	   *provider_call_id;
	char	   *error_code;
	char	   *error_message;
	char	   *more_info;
	int			delay_ms;
	TimestampTz responded_at;
} DialerOutcome;

/*
 * A request in flight.  Everything it owns lives in its own memory context,
 * deleted when the request is done; curl keeps a pointer to it as PRIVATE.
 */
typedef struct DialerRequest
{
	dlist_node	node;
	MemoryContext cxt;
	CURL	   *easy;
	struct curl_slist *headers;
	DialerProvider *provider;	/* valid while in flight: providers are never freed */
	ClaimedCall call;
	int			phase;			/* backend BRIEF_START: 0 brief, 1 start */
	bool		lookup;			/* a reconciliation GET, not a call */
	StringInfoData response;
	size_t		max_response;
	bool		too_large;
	int			retry_after_s;	/* from a Retry-After header, -1 if none */
	char		errbuf[CURL_ERROR_SIZE];
	TimestampTz started_at;
	/* at most one send per request (see http.c before_send) */
	bool		send_once;		/* a POST: libcurl may not send it again */
	int			sends;			/* times libcurl was about to send it */
	bool		resend_refused; /* it was sent, the connection died, the re-send was stopped */
} DialerRequest;

/* What a provider makes of a finished request. */
typedef enum ProviderVerdict
{
	VERDICT_DONE,				/* outcome filled in */
	VERDICT_NEXT_PHASE			/* the provider set up the next request on req */
} ProviderVerdict;

/* http.c: the libcurl multi engine */
extern void http_init(void);
extern int	http_effective_concurrency(int wanted);
extern DialerRequest *http_new_request(DialerProvider *provider, ClaimedCall *call);
extern void http_prepare(DialerRequest *req, const char *url);
extern void http_prepare_get(DialerRequest *req, const char *url);
extern void http_prepare_lookup(DialerRequest *req, const char *collection, const char *bearer);
extern void http_add_header(DialerRequest *req, const char *fmt,...) pg_attribute_printf(2, 3);
extern void http_set_body(DialerRequest *req, const char *body, const char *content_type);
extern void http_start(DialerRequest *req);
extern void http_set_limit(int cap);
extern int	http_in_flight(void);
extern void http_kick(void);
extern void http_wait(long timeout_ms);
extern DialerRequest *http_next_done(CURLcode *result, long *http_status);
extern DialerRequest *http_first_in_flight(void);
extern void http_release(DialerRequest *req);
extern bool http_transport_error_before_send(CURLcode code);
extern char *json_get_string(const char *json, const char *key, bool *valid);

/* providers: provider_twilio.c, provider_backend.c, provider_voice_api.c */
extern bool twilio_prepare(DialerRequest *req, char **error);
extern ProviderVerdict twilio_finish(DialerRequest *req, CURLcode result, long http_status, DialerOutcome *out);
extern bool backend_prepare(DialerRequest *req, char **error);
extern ProviderVerdict backend_finish(DialerRequest *req, CURLcode result, long http_status, DialerOutcome *out);
extern bool voice_api_prepare(DialerRequest *req, char **error);
extern void twilio_lookup_prepare(DialerRequest *req);
extern void backend_lookup_prepare(DialerRequest *req);
extern void voice_api_lookup_prepare(DialerRequest *req);
extern void twilio_search_prepare(DialerRequest *req);
extern void backend_search_prepare(DialerRequest *req);
extern ProviderVerdict voice_api_finish(DialerRequest *req, CURLcode result, long http_status, DialerOutcome *out);

/* provider.c: what all providers share */
extern bool provider_prepare(DialerRequest *req, char **error);
extern void provider_lookup_prepare(DialerRequest *req);
extern bool provider_can_search(DialerProvider *provider);
extern void provider_search_prepare(DialerRequest *req);
extern ProviderVerdict provider_finish(DialerRequest *req, CURLcode result, long http_status, DialerOutcome *out);
extern void outcome_from_http(DialerRequest *req, CURLcode result, long http_status,
							  bool resend_safe, DialerOutcome *out);
extern void outcome_accepted_with_id(DialerRequest *req, DialerOutcome *out);

/* queue.c: claiming and storing, in short transactions */
extern int	queue_recover(void);
extern int	queue_reevaluate_parked(void);
extern List *queue_load_providers(List *known);
extern List *queue_claim(DialerProvider *provider, int max_calls, int *capacity);
extern void queue_release(List *calls);
extern void queue_store(DialerOutcome *outcomes, int n);
extern TimestampTz queue_next_due(List *blocked_names, TimestampTz *reconcile_at);
extern List *queue_claim_reconciliations(int max_calls);
extern List *queue_claim_searches(DialerProvider *provider, int max_calls);

/* A provider's answer to a reconciliation lookup. */
typedef struct LookupResult
{
	int64		call_id;
	char	   *provider_call_id;
	char	   *search;			/* a search by what was sent: what was searched (JSON) */
	int			http_status;
	char	   *body;
	char	   *error;
} LookupResult;

extern void queue_store_lookups(List *results);
extern char *queue_extension_version(void);

#endif							/* DIALER_DISPATCH_H */
