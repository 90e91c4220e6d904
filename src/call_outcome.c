/*-------------------------------------------------------------------------
 *
 * call_outcome.c
 *	  The outcome rules every provider shares: turning an HTTP answer or a
 *	  transport failure into accepted, retry, failed or unknown; the retry
 *	  delay (exponential backoff with full jitter, honouring Retry-After);
 *	  and the outcomes of a call that could not be sent or was abandoned when
 *	  the dispatcher stopped.  Whether a lost answer may be retried depends
 *	  on the provider (resend_safe: it dedupes by Idempotency-Key), which
 *	  the caller says.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/call_outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "utils/timestamp.h"

#include "call_outcome.h"
#include "json_read.h"
#include "settings.h"

/*
 * Whether the provider answered with a 2xx status (a body over the size cap
 * still counts: the provider took the request).
 */
bool
outcome_is_2xx(const HttpRequest *http)
{
	return (http->completed || http->too_large) &&
		http->status >= 200 && http->status < 300;
}

/*
 * A 2xx answer of a provider that answers in JSON: the call is placed; its
 * id is the answer's call_id (or id).  An answer without a readable id still
 * means the provider took the call, so it is accepted, with a note.
 */
void
outcome_accepted_with_id(const HttpRequest *http, const char *provider,
						 DialerOutcome *out)
{
	bool		valid;

	out->outcome = "accepted";
	out->provider_call_id = json_get_string(http->response.data, "call_id", &valid);
	if (out->provider_call_id == NULL && valid)
		out->provider_call_id = json_get_string(http->response.data, "id", &valid);
	if (out->provider_call_id == NULL)
	{
		out->error_code = pstrdup("unreadable_response");
		out->error_message = psprintf("provider %s accepted the call without a readable call_id",
									  provider);
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
 * The outcome of a request that got no answer: retry when nothing was sent or
 * sending again is safe, else unknown (the provider may have placed the call).
 */
static void
outcome_without_answer(const HttpRequest *http, const char *provider,
					   int attempt, bool resend_safe, DialerOutcome *out)
{
	bool		unsent = !http->resend_refused && http->sent_nothing;

	out->http_status = 0;
	out->error_code = pstrdup(unsent ? "connect_failed" :
							  http->timed_out ? "timeout" : "transport_error");
	if (http->resend_refused)
		out->error_message = psprintf("request to provider %s was sent on a reused connection that closed before any answer (%s): the answer was lost",
									  provider,
									  http->errbuf[0] ? http->errbuf : "connection closed");
	else if (http->timed_out && unsent)
		out->error_message = psprintf("could not connect to provider %s within %d ms",
									  provider, dialer_connect_timeout_ms);
	else if (http->timed_out)
		out->error_message = psprintf("no answer from provider %s within %d ms",
									  provider, dialer_request_timeout_ms);
	else
		out->error_message = psprintf("request to provider %s failed: %s",
									  provider, http->error);
	if (unsent || resend_safe)
	{
		out->outcome = "retry";
		out->delay_ms = retry_delay_ms(attempt, -1);
	}
	else
	{
		out->outcome = "unknown";
		out->error_message = psprintf("%s; the provider may have placed the call, so it is not re-sent",
									  out->error_message);
	}
}

/*
 * The outcome of a request that did not succeed, by what happened:
 *	- nothing was sent (connection refused, DNS, TLS handshake): retry;
 *	- no answer after sending (timeout, reset, empty reply, or a dead reused
 *	  connection whose silent re-send http.c stopped): retry when sending
 *	  again is safe (resend_safe: the provider dedupes by Idempotency-Key),
 *	  else unknown, since the provider may have placed the call;
 *	- HTTP 408, 425, 429 and 5xx: retry after the backoff or Retry-After;
 *	- any other HTTP status: a permanent failure.
 * The provider fills in its own error code and message afterwards when its
 * answer has them.
 */
void
outcome_from_http(const HttpRequest *http, const char *provider,
				  int attempt, bool resend_safe, DialerOutcome *out)
{
	long		status = http->status;

	if (!http->completed && !(http->too_large && status > 0))
	{
		outcome_without_answer(http, provider, attempt, resend_safe, out);
		return;
	}

	out->error_code = psprintf("http_%ld", status);
	if (http->too_large)
		out->error_message = psprintf("provider %s answered HTTP %ld with a body over dialer.max_response_size",
									  provider, status);
	else
		out->error_message = psprintf("provider %s answered HTTP %ld", provider, status);

	if (status == 408 || status == 425 || status == 429 || status >= 500)
	{
		out->outcome = "retry";
		out->delay_ms = retry_delay_ms(attempt, http->retry_after_s);
	}
	else
		out->outcome = "failed";
}

/*
 * A call that cannot be sent at all (no caller id, nothing to say, a base_url
 * not allowed): a permanent failure, nothing was sent.
 */
void
outcome_not_sendable(DialerOutcome *out, const char *error)
{
	out->outcome = "failed";
	out->error_code = pstrdup("not_sendable");
	out->error_message = pstrdup(error);
	out->responded_at = GetCurrentTimestamp();
}

/*
 * A request still in flight when the dispatcher stopped after
 * dialer.shutdown_timeout: unknown when a re-send is not safe (the provider
 * may have placed the call), else retried at once with the same
 * Idempotency-Key.
 */
void
outcome_abandoned(DialerOutcome *out, bool resend_safe)
{
	out->responded_at = GetCurrentTimestamp();
	out->error_code = pstrdup("shutdown");
	if (!resend_safe)
	{
		out->outcome = "unknown";
		out->error_message = psprintf("dispatcher stopped after %d ms with the request in flight; the provider may have placed the call",
									  dialer_shutdown_timeout_ms);
	}
	else
	{
		out->outcome = "retry";
		out->delay_ms = 0;
		out->error_message = pstrdup("dispatcher stopped with the request in flight; it will be retried with the same Idempotency-Key");
	}
}

/*
 * The first phase of a two-phase call was answered but the dispatcher stopped
 * before the second left: nothing was placed, so it is safe to retry at once.
 */
void
outcome_stopped_between_phases(DialerOutcome *out)
{
	out->outcome = "retry";
	out->delay_ms = 0;
	out->error_code = pstrdup("shutdown");
	out->error_message = pstrdup("dispatcher stopped between /call/brief and /call/start");
}
