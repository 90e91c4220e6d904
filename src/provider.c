/*-------------------------------------------------------------------------
 *
 * provider.c
 *	  What every provider shares: choosing the provider's code by kind, turning
 *	  an HTTP answer or a transport failure into an outcome, and the retry
 *	  delay (exponential backoff with full jitter, honouring Retry-After).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "utils/timestamp.h"

#include "pg_dialer.h"
#include "dispatch.h"

/*
 * Sets up req's first HTTP request for its provider.  False (with *error set)
 * when the call cannot be sent at all: a permanent failure, nothing was sent.
 */
bool
provider_prepare(DialerRequest *req, char **error)
{
	switch (req->provider->kind)
	{
		case PROVIDER_TWILIO:
			return twilio_prepare(req, error);
		case PROVIDER_BACKEND:
			return backend_prepare(req, error);
		case PROVIDER_VOICE_API:
			return voice_api_prepare(req, error);
	}
	*error = pstrdup("unknown provider kind");
	return false;
}

/*
 * Sets up req as a lookup of its call at the provider (reconciliation).
 */
void
provider_lookup_prepare(DialerRequest *req)
{
	req->lookup = true;
	switch (req->provider->kind)
	{
		case PROVIDER_TWILIO:
			twilio_lookup_prepare(req);
			break;
		case PROVIDER_BACKEND:
			backend_lookup_prepare(req);
			break;
		case PROVIDER_VOICE_API:
			voice_api_lookup_prepare(req);
			break;
	}
}

/*
 * Whether an unknown call without a provider call id can be searched for at this
 * provider by what was sent: Twilio (its Calls list) and backends (by
 * Idempotency-Key, when the backend offers it); the voice API cannot.
 */
bool
provider_can_search(DialerProvider *provider)
{
	return provider->kind == PROVIDER_TWILIO || provider->kind == PROVIDER_BACKEND;
}

/*
 * Sets up req as a search for its call by what was sent (req->call.search, from
 * dialer.claim_searches).  Only for providers where provider_can_search().
 */
void
provider_search_prepare(DialerRequest *req)
{
	req->lookup = true;
	if (req->provider->kind == PROVIDER_TWILIO)
		twilio_search_prepare(req);
	else
		backend_search_prepare(req);
}

/*
 * Interprets a finished HTTP request for its provider.
 */
ProviderVerdict
provider_finish(DialerRequest *req, CURLcode result, long http_status, DialerOutcome *out)
{
	out->call_id = req->call.id;
	out->attempt = req->call.attempt;
	out->http_status = (int) http_status;
	out->responded_at = GetCurrentTimestamp();
	switch (req->provider->kind)
	{
		case PROVIDER_TWILIO:
			return twilio_finish(req, result, http_status, out);
		case PROVIDER_BACKEND:
			return backend_finish(req, result, http_status, out);
		case PROVIDER_VOICE_API:
			return voice_api_finish(req, result, http_status, out);
	}
	return VERDICT_DONE;
}

/*
 * A 2xx answer of a JSON provider (backend, voice API): the call is placed; its
 * id is the answer's call_id (or id).  An answer without a readable id still
 * means the provider took the call, so it is accepted, with a note.
 */
void
outcome_accepted_with_id(DialerRequest *req, DialerOutcome *out)
{
	bool		valid;

	out->outcome = "accepted";
	out->provider_call_id = json_get_string(req->response.data, "call_id", &valid);
	if (out->provider_call_id == NULL && valid)
		out->provider_call_id = json_get_string(req->response.data, "id", &valid);
	if (out->provider_call_id == NULL)
	{
		out->error_code = pstrdup("unreadable_response");
		out->error_message = psprintf("provider %s accepted the call without a readable call_id",
									  req->provider->name);
	}
}

/*
 * Full-jitter exponential backoff: a random delay up to
 * min(dialer.retry_max_delay, dialer.retry_base_delay * 2^(attempt-1)), and
 * never less than the provider's Retry-After.
 */
static int
retry_delay_ms(int attempt, int retry_after_s)
{
	double		cap = (double) dialer_retry_base_delay_ms;
	int			delay;
	int			i;

	for (i = 1; i < attempt && cap < dialer_retry_max_delay_ms; i++)
		cap *= 2;
	cap = Min(cap, (double) dialer_retry_max_delay_ms);
	delay = (int) (pg_prng_double(&pg_global_prng_state) * cap);
	if (retry_after_s >= 0)
		delay = Max(delay, retry_after_s * 1000);
	return delay;
}

/*
 * The outcome of a request that did not succeed, by what happened:
 *	- nothing was sent (connection refused, DNS, TLS handshake): retry;
 *	- no answer after sending (timeout, reset, empty reply, or a dead reused
 *	  connection whose silent re-send http.c stopped): retry when sending
 *	  again is safe (resend_safe: the provider dedupes by Idempotency-Key), else
 *	  unknown, since the provider may have placed the call;
 *	- HTTP 408, 425, 429 and 5xx: retry after the backoff or Retry-After;
 *	- any other HTTP status: a permanent failure.
 * The provider fills in its own error code and message afterwards when its
 * answer has them.
 */
void
outcome_from_http(DialerRequest *req, CURLcode result, long http_status,
				  bool resend_safe, DialerOutcome *out)
{
	if (result != CURLE_OK && !(req->too_large && http_status > 0))
	{
		long		request_size = 0;
		bool		unsent;

		/* nothing was written to the wire: sending again cannot place a second call */
		curl_easy_getinfo(req->easy, CURLINFO_REQUEST_SIZE, &request_size);
		unsent = !req->resend_refused &&
			(http_transport_error_before_send(result) || request_size == 0);

		out->http_status = 0;
		out->error_code = pstrdup(unsent ? "connect_failed" :
								  result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport_error");
		if (req->resend_refused)
			out->error_message = psprintf("request to provider %s was sent on a reused connection that closed before any answer (%s): the answer was lost",
										  req->provider->name,
										  req->errbuf[0] ? req->errbuf : "connection closed");
		else if (result == CURLE_OPERATION_TIMEDOUT && unsent)
			out->error_message = psprintf("could not connect to provider %s within %d ms",
										  req->provider->name, dialer_connect_timeout_ms);
		else if (result == CURLE_OPERATION_TIMEDOUT)
			out->error_message = psprintf("no answer from provider %s within %d ms",
										  req->provider->name, dialer_request_timeout_ms);
		else
			out->error_message = psprintf("request to provider %s failed: %s",
										  req->provider->name,
										  req->errbuf[0] ? req->errbuf : curl_easy_strerror(result));
		if (unsent || resend_safe)
		{
			out->outcome = "retry";
			out->delay_ms = retry_delay_ms(req->call.attempt, -1);
		}
		else
		{
			out->outcome = "unknown";
			out->error_message = psprintf("%s; the provider may have placed the call, so it is not re-sent",
										  out->error_message);
		}
		return;
	}

	out->error_code = psprintf("http_%ld", http_status);
	if (req->too_large)
		out->error_message = psprintf("provider %s answered HTTP %ld with a body over dialer.max_response_size",
									  req->provider->name, http_status);
	else
		out->error_message = psprintf("provider %s answered HTTP %ld", req->provider->name, http_status);

	if (http_status == 408 || http_status == 425 || http_status == 429 || http_status >= 500)
	{
		out->outcome = "retry";
		out->delay_ms = retry_delay_ms(req->call.attempt, req->retry_after_s);
	}
	else
		out->outcome = "failed";
}
