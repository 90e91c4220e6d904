/*-------------------------------------------------------------------------
 *
 * provider_voice_api.h
 *	  The provider kind voice_api (provider_voice_api.c): a generic voice API, as
 *	  a table of operations that provider.c registers.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_voice_api.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_PROVIDER_VOICE_API_H
#define DIALER_PROVIDER_VOICE_API_H

#include "provider.h"

extern const ProviderOps voice_api_provider_ops;

#endif							/* DIALER_PROVIDER_VOICE_API_H */
