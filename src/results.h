/*-------------------------------------------------------------------------
 *
 * results.h
 *	  The storing of outcomes (results.c): finished requests collected into
 *	  a batch, stored together.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/results.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_RESULTS_H
#define DIALER_RESULTS_H

#include "provider.h"

extern void results_init(void);
extern bool results_waiting(void);
extern bool results_batch_full(void);
extern bool results_older_than(int ms);
extern void results_store(void);
extern void results_collect(bool stopping);
extern void results_fail_unsendable(ClaimedCall *c, const char *error);
extern void results_abandon_in_flight(void);

#endif							/* DIALER_RESULTS_H */
