/*-------------------------------------------------------------------------
 *
 * e164.h
 *	  The E.164 rule for phone numbers (e164.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/e164.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_E164_H
#define DIALER_E164_H

#include "fmgr.h"

/* SQL-callable functions */
extern Datum dialer_is_e164(PG_FUNCTION_ARGS);

#endif							/* DIALER_E164_H */
