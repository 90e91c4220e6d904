/*-------------------------------------------------------------------------
 *
 * standby.h
 *	  Whether the standbys dialer.standby_wait names have flushed a claim
 *	  (standby.c).
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

extern bool standbys_have_flushed(XLogRecPtr lsn, int *n_standbys, int *n_flushed);

#endif							/* DIALER_STANDBY_H */
