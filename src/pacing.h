/*-------------------------------------------------------------------------
 *
 * pacing.h
 *	  The pacing of providers (pacing.c): the dispatcher's providers, their
 *	  calls-per-second buckets, failure pauses and stalls at max_concurrency.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/pacing.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_PACING_H
#define DIALER_PACING_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

#include "call_outcome.h"
#include "provider.h"

extern List *pacing_providers(void);
extern DialerProvider *pacing_seen_provider(const char *name);
extern void pacing_reload_soon(void);
extern void pacing_reload_if_changed(TimestampTz now);
extern void pacing_refill_tokens(DialerProvider *p, TimestampTz now);
extern TimestampTz pacing_next_token_at(DialerProvider *p, TimestampTz now);
extern TimestampTz pacing_blocked_until(DialerProvider *p, TimestampTz now, bool woken);
extern TimestampTz pacing_wait_for_token(DialerProvider *p, TimestampTz now);
extern TimestampTz pacing_at_capacity(DialerProvider *p, TimestampTz now);
extern void pacing_took_calls(DialerProvider *p, int n, TimestampTz now);
extern void pacing_note_result(DialerProvider *p, DialerOutcome *out);
extern bool pacing_publish_stall(void);
extern void pacing_publish_providers(void);

#endif							/* DIALER_PACING_H */
