/*-------------------------------------------------------------------------
 *
 * call_outcome.h
 *	  What happened to a request, as dialer.record_results() stores it, and
 *	  the rules every provider shares for deciding it (call_outcome.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/call_outcome.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_CALL_OUTCOME_H
#define DIALER_CALL_OUTCOME_H

#include "datatype/timestamp.h"

#include "http.h"

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

extern bool outcome_is_2xx(const HttpRequest *http);
extern void outcome_from_http(const HttpRequest *http, const char *provider,
							  int attempt, bool resend_safe, DialerOutcome *out);
extern void outcome_accepted_with_id(const HttpRequest *http, const char *provider,
									 DialerOutcome *out);
extern void outcome_not_sendable(DialerOutcome *out, const char *error);
extern void outcome_abandoned(DialerOutcome *out, bool resend_safe);
extern void outcome_stopped_between_phases(DialerOutcome *out);

#endif							/* DIALER_CALL_OUTCOME_H */
