/*-------------------------------------------------------------------------
 *
 * webhook_signature.h
 *	  The SQL-callable primitives of webhook authentication
 *	  (webhook_signature.c): HMAC, base64, a constant-time comparison and
 *	  Twilio's signature.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/webhook_signature.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_WEBHOOK_SIGNATURE_H
#define DIALER_WEBHOOK_SIGNATURE_H

#include "fmgr.h"

extern Datum dialer_hmac(PG_FUNCTION_ARGS);
extern Datum dialer_base64_encode(PG_FUNCTION_ARGS);
extern Datum dialer_constant_time_equal(PG_FUNCTION_ARGS);
extern Datum dialer_twilio_signature(PG_FUNCTION_ARGS);

#endif							/* DIALER_WEBHOOK_SIGNATURE_H */
