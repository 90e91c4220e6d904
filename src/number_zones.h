/*-------------------------------------------------------------------------
 *
 * number_zones.h
 *	  The recipient's time zones from the number (number_zones.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/number_zones.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_NUMBER_ZONES_H
#define DIALER_NUMBER_ZONES_H

#include "fmgr.h"

/* SQL-callable functions */
extern Datum dialer_number_timezones(PG_FUNCTION_ARGS);

#endif							/* DIALER_NUMBER_ZONES_H */
