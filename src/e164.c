/*-------------------------------------------------------------------------
 *
 * e164.c
 *	  The E.164 rule for phone numbers: "+", then 8 to 15 digits, the first
 *	  not 0.  dialer.is_e164(text) is its one home in SQL: the domain
 *	  dialer.e164 checks it, and so do the enqueue rules (dialer.call_rule)
 *	  and the campaigns.  Written in C because it runs for every number
 *	  enqueued, often twice (the rules, then the domain of the column): a
 *	  regular expression costs about thirty times as much.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/e164.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "e164.h"

/* "+", then E164_MIN_DIGITS to E164_MAX_DIGITS digits, the first not 0 */
#define E164_MIN_DIGITS 8
#define E164_MAX_DIGITS 15

PG_FUNCTION_INFO_V1(dialer_is_e164);

/*
 * True when the len bytes at s are an E.164 number.
 */
static bool
text_is_e164(const char *s, int len)
{
	int			i;

	if (len < 1 + E164_MIN_DIGITS || len > 1 + E164_MAX_DIGITS)
		return false;
	if (s[0] != '+' || s[1] < '1' || s[1] > '9')
		return false;
	for (i = 2; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

/*
 * dialer.is_e164(number text) returns boolean: IMMUTABLE, STRICT.
 */
Datum
dialer_is_e164(PG_FUNCTION_ARGS)
{
	text	   *number = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BOOL(text_is_e164(VARDATA_ANY(number), VARSIZE_ANY_EXHDR(number)));
}
