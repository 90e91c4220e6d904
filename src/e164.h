/*-------------------------------------------------------------------------
 *
 * e164.h
 *	  The E.164 rule for phone numbers (e164.c).
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_E164_H
#define DIALER_E164_H

/* "+", then E164_MIN_DIGITS to E164_MAX_DIGITS digits, the first not 0 */
#define E164_MIN_DIGITS 8
#define E164_MAX_DIGITS 15

extern bool dialer_text_is_e164(const char *s, int len);

#endif							/* DIALER_E164_H */
