/*-------------------------------------------------------------------------
 *
 * dispatch_round.h
 *	  The dispatch round (dispatch_round.c): claim and start what each
 *	  provider may take now, look up calls due for reconciliation, and say
 *	  when to look again; held while the standbys have not flushed a claim.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/dispatch_round.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_DISPATCH_ROUND_H
#define DIALER_DISPATCH_ROUND_H

#include "datatype/timestamp.h"

/* What a finished round found. */
typedef struct RoundResult
{
	TimestampTz next;			/* when to look at the queue again (0: only
								 * when woken or when slots free up) */
	bool		more_due;		/* a claim came back full: more calls are due
								 * now */
	bool		slots_awaited;	/* a provider waits for its own requests to
								 * finish */
} RoundResult;

extern int	dispatch_refill_threshold(int cap);
extern bool dispatch_round_run(int cap, bool woken, RoundResult *result);
extern bool dispatch_round_resume(RoundResult *result);
extern void dispatch_round_give_back(void);

#endif							/* DIALER_DISPATCH_ROUND_H */
