/*-------------------------------------------------------------------------
 *
 * provider_twilio.h
 *	  The provider kind twilio (provider_twilio.c): Twilio's REST API, as
 *	  a table of operations that provider.c registers.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_twilio.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_PROVIDER_TWILIO_H
#define DIALER_PROVIDER_TWILIO_H

#include "provider.h"

extern const ProviderOps twilio_provider_ops;

#endif							/* DIALER_PROVIDER_TWILIO_H */
