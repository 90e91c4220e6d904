/*-------------------------------------------------------------------------
 *
 * provider_twilio.h
 *	  The provider kind twilio (provider_twilio.c): Twilio's REST API, as
 *	  a table of operations that provider.c registers, and the SQL functions
 *	  of Twilio's status callbacks (their URL, their signature).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_twilio.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_PROVIDER_TWILIO_H
#define DIALER_PROVIDER_TWILIO_H

#include "fmgr.h"

#include "provider.h"

extern const ProviderOps twilio_provider_ops;

extern Datum dialer_twilio_callback_url(PG_FUNCTION_ARGS);
extern Datum dialer_twilio_signature(PG_FUNCTION_ARGS);

#endif							/* DIALER_PROVIDER_TWILIO_H */
