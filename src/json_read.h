/*-------------------------------------------------------------------------
 *
 * json_read.h
 *	  Reading one field of a provider's JSON answer (json_read.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/json_read.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_JSON_READ_H
#define DIALER_JSON_READ_H

extern char *json_get_string(const char *json, const char *key, bool *valid);

#endif							/* DIALER_JSON_READ_H */
