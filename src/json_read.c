/*-------------------------------------------------------------------------
 *
 * json_read.c
 *	  Reads one top-level field of a provider's JSON answer with the JSON
 *	  parser's callbacks, without building a jsonb: it runs for every answer,
 *	  and a bad answer is reported to the caller, never raised.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/json_read.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "json_read.h"

/* parser state of json_get_string */
typedef struct JsonFieldState
{
	const char *key;
	int			depth;
	bool		is_object;
	bool		want;
	char	   *result;
} JsonFieldState;

static void
jf_object_start(void *state)
{
	JsonFieldState *st = state;

	if (st->depth == 0)
		st->is_object = true;
	st->depth++;
	st->want = false;
}

static void
jf_nest_end(void *state)
{
	((JsonFieldState *) state)->depth--;
}

static void
jf_array_start(void *state)
{
	JsonFieldState *st = state;

	st->depth++;
	st->want = false;
}

static void
jf_field_start(void *state, char *fname, bool isnull pg_attribute_unused())
{
	JsonFieldState *st = state;

	st->want = (st->depth == 1 && st->result == NULL && strcmp(fname, st->key) == 0);
}

static void
jf_scalar(void *state, char *token, JsonTokenType tokentype)
{
	JsonFieldState *st = state;

	if (st->want && (tokentype == JSON_TOKEN_STRING || tokentype == JSON_TOKEN_NUMBER))
		st->result = pstrdup(token);
	st->want = false;
}

/*
 * The value of a top-level key of a JSON object text, as text (strings
 * unescaped, numbers as written), or NULL when absent, null or not a scalar.
 * *valid is set to false when the text is not a JSON object.  Uses the JSON
 * parser's callbacks, without building a jsonb: it runs for every provider
 * answer.  A bad answer is reported, never raised.
 */
char *
json_get_string(const char *json, const char *key, bool *valid)
{
	JsonFieldState st;
	JsonSemAction sem;
	JsonLexContext *lex;

	*valid = false;
	if (json == NULL)
		return NULL;
	memset(&st, 0, sizeof(st));
	st.key = key;
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = jf_object_start;
	sem.object_end = jf_nest_end;
	sem.array_start = jf_array_start;
	sem.array_end = jf_nest_end;
	sem.object_field_start = jf_field_start;
	sem.scalar = jf_scalar;

	lex = makeJsonLexContextCstringLen((char *) json, strlen(json), PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS || !st.is_object)
		return NULL;
	*valid = true;
	return st.result;
}
