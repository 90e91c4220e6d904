/*-------------------------------------------------------------------------
 *
 * webhook_signature.h
 *	  The primitives of webhook authentication (webhook_signature.c): HMAC,
 *	  base64 and a constant-time comparison, for SQL and for C.
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
extern bytea *signature_hmac(const char *algorithm, const char *key, size_t keylen,
							 const char *message, size_t len);
extern text *signature_base64(const char *data, int len);

#endif							/* DIALER_WEBHOOK_SIGNATURE_H */
