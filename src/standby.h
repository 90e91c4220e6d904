/*-------------------------------------------------------------------------
 *
 * standby.h
 *	  Waiting for standbys (standby.c): whether the standbys
 *	  dialer.standby_wait names have flushed a claim, and the claim held
 *	  until they have.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/standby.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_STANDBY_H
#define DIALER_STANDBY_H

#include "access/xlogdefs.h"

/* how often the dispatcher looks again while a claim is held (ms) */
#define STANDBY_POLL_MS 10

extern bool standby_hold_begin(XLogRecPtr lsn, int n_calls);
extern bool standby_hold_released(void);
extern void standby_hold_abandon(void);

#endif							/* DIALER_STANDBY_H */
