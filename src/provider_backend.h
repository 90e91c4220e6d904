/*-------------------------------------------------------------------------
 *
 * provider_backend.h
 *	  The provider kind backend (provider_backend.c): the customer's own AI-call backend, as
 *	  a table of operations that provider.c registers.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/provider_backend.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_PROVIDER_BACKEND_H
#define DIALER_PROVIDER_BACKEND_H

#include "provider.h"

extern const ProviderOps backend_provider_ops;

#endif							/* DIALER_PROVIDER_BACKEND_H */
