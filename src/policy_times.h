/*-------------------------------------------------------------------------
 *
 * policy_times.h
 *	  The time-of-day rules of calling policies: weekday windows, blackout
 *	  days and the general window (policy_times.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/policy_times.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_POLICY_TIMES_H
#define DIALER_POLICY_TIMES_H

#include "fmgr.h"

/* SQL-callable functions */
extern Datum dialer_closed_rule(PG_FUNCTION_ARGS);

#endif							/* DIALER_POLICY_TIMES_H */
