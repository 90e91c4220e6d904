/*-------------------------------------------------------------------------
 *
 * json_read.c
 *	  Reads what a provider's JSON answer holds with the JSON parser's
 *	  callbacks, without building a jsonb: one top-level field (this runs for
 *	  every answer), as a scalar or as any JSON value's text, or the fields of
 *	  the objects of a top-level array (the records a search found).  A bad
 *	  answer is reported to the caller, never raised.
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

/* parser state of json_get_string and json_get_text */
typedef struct JsonFieldState
{
	const char *key;
	bool		containers;		/* an object or array value is wanted too */
	JsonLexContext *lex;
	int			depth;
	bool		is_object;
	bool		want;
	const char *start;			/* where the wanted object or array begins */
	char	   *result;
} JsonFieldState;

/*
 * An object or array begins: the wanted value, when it is one and
 * containers are wanted (its text runs from the current token).
 */
static void
jf_nest_start(JsonFieldState *st)
{
	if (st->want && st->containers)
		st->start = st->lex->token_start;
	st->depth++;
	st->want = false;
}

static void
jf_object_start(void *state)
{
	JsonFieldState *st = state;

	if (st->depth == 0)
		st->is_object = true;
	jf_nest_start(st);
}

/*
 * An object or array ends: when it is the wanted value, its text (up to the
 * token just read) is the result.
 */
static void
jf_nest_end(void *state)
{
	JsonFieldState *st = state;

	st->depth--;
	if (st->start && st->depth == 1)
	{
		st->result = pnstrdup(st->start, st->lex->prev_token_terminator - st->start);
		st->start = NULL;
	}
}

static void
jf_array_start(void *state)
{
	jf_nest_start((JsonFieldState *) state);
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

	if (st->want && (tokentype == JSON_TOKEN_STRING || tokentype == JSON_TOKEN_NUMBER ||
					 (st->containers && (tokentype == JSON_TOKEN_TRUE || tokentype == JSON_TOKEN_FALSE))))
		st->result = pstrdup(token);
	st->want = false;
}

/*
 * The value of a top-level key of a JSON object text, or NULL when absent or
 * null (or, unless containers, not a scalar); *valid is set to false when the
 * text is not a JSON object.
 */
static char *
json_get_field(const char *json, const char *key, bool containers, bool *valid)
{
	JsonFieldState st;
	JsonSemAction sem;
	JsonLexContext *lex;

	*valid = false;
	if (json == NULL)
		return NULL;
	lex = makeJsonLexContextCstringLen((char *) json, strlen(json), PG_UTF8, true);
	memset(&st, 0, sizeof(st));
	st.key = key;
	st.containers = containers;
	st.lex = lex;
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = jf_object_start;
	sem.object_end = jf_nest_end;
	sem.array_start = jf_array_start;
	sem.array_end = jf_nest_end;
	sem.object_field_start = jf_field_start;
	sem.scalar = jf_scalar;

	if (pg_parse_json(lex, &sem) != JSON_SUCCESS || !st.is_object)
		return NULL;
	*valid = true;
	return st.result;
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
	return json_get_field(json, key, false, valid);
}

/*
 * Like json_get_string, but an object or array value is given too, as its
 * JSON text as written (what ->> gives of it): for a field whose value may be
 * structured, such as a transcript.
 */
char *
json_get_text(const char *json, const char *key, bool *valid)
{
	return json_get_field(json, key, true, valid);
}

/* parser state of json_get_records */
typedef struct JsonRecordsState
{
	const char *array_key;
	const char *const *keys;
	int			nkeys;
	int			depth;			/* containers open */
	bool		is_object;		/* the text is a JSON object */
	bool		want_array;		/* the next value at depth 1 is array_key's */
	bool		in_array;		/* array_key's array is open (at depth 2) */
	bool		found_array;	/* array_key's value was an array */
	JsonRecord *cur;			/* the element being read */
	int			want_key;		/* index of the key whose value comes next, or
								 * -1 */
	List	   *records;
} JsonRecordsState;

/* A new element of the array: its record, with nothing read yet. */
static void
jr_new_record(JsonRecordsState *st, bool is_object)
{
	JsonRecord *rec = palloc0(sizeof(JsonRecord));

	rec->is_object = is_object;
	rec->values = palloc0(sizeof(char *) * Max(st->nkeys, 1));
	rec->present = palloc0(sizeof(bool) * Max(st->nkeys, 1));
	st->records = lappend(st->records, rec);
	st->cur = rec;
}

static void
jr_object_start(void *state)
{
	JsonRecordsState *st = state;

	if (st->depth == 0)
		st->is_object = true;
	else if (st->in_array && st->depth == 2)
		jr_new_record(st, true);
	st->depth++;
	st->want_array = false;
	st->want_key = -1;
}

static void
jr_array_start(void *state)
{
	JsonRecordsState *st = state;

	if (st->depth == 1 && st->want_array)
		st->in_array = st->found_array = true;
	else if (st->in_array && st->depth == 2)
		jr_new_record(st, false);
	st->depth++;
	st->want_array = false;
	st->want_key = -1;
}

static void
jr_object_end(void *state)
{
	((JsonRecordsState *) state)->depth--;
}

static void
jr_array_end(void *state)
{
	JsonRecordsState *st = state;

	st->depth--;
	if (st->depth == 1)
		st->in_array = false;
}

static void
jr_field_start(void *state, char *fname, bool isnull pg_attribute_unused())
{
	JsonRecordsState *st = state;
	int			i;

	st->want_key = -1;
	if (st->depth == 1)
		st->want_array = (!st->found_array && strcmp(fname, st->array_key) == 0);
	else if (st->in_array && st->depth == 3 && st->cur && st->cur->is_object)
	{
		for (i = 0; i < st->nkeys; i++)
		{
			if (st->keys[i] && strcmp(fname, st->keys[i]) == 0)
			{
				/* a key given twice: the last one counts, as in jsonb */
				st->cur->present[i] = true;
				st->cur->values[i] = NULL;
				st->want_key = i;
				break;
			}
		}
	}
}

static void
jr_scalar(void *state, char *token, JsonTokenType tokentype)
{
	JsonRecordsState *st = state;

	if (st->in_array && st->depth == 2)
		jr_new_record(st, false);
	else if (st->want_key >= 0 && tokentype != JSON_TOKEN_NULL)
		st->cur->values[st->want_key] = pstrdup(token);
	st->want_array = false;
	st->want_key = -1;
}

/*
 * The elements of the array that is the value of array_key in a JSON object
 * text, one JsonRecord each, in order: for an element that is an object, the
 * values of the keys asked for (a NULL key: none), as text (strings
 * unescaped; numbers, true and false as written; NULL when absent, null or
 * not a scalar) and whether each key is there at all (null included).  *valid is set to false when the text
 * is not a JSON object whose array_key is an array.  A bad answer is
 * reported, never raised.
 */
List *
json_get_records(const char *json, const char *array_key,
				 const char *const *keys, int nkeys, bool *valid)
{
	JsonRecordsState st;
	JsonSemAction sem;
	JsonLexContext *lex;

	*valid = false;
	if (json == NULL)
		return NIL;
	memset(&st, 0, sizeof(st));
	st.array_key = array_key;
	st.keys = keys;
	st.nkeys = nkeys;
	st.want_key = -1;
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = jr_object_start;
	sem.object_end = jr_object_end;
	sem.array_start = jr_array_start;
	sem.array_end = jr_array_end;
	sem.object_field_start = jr_field_start;
	sem.scalar = jr_scalar;

	lex = makeJsonLexContextCstringLen((char *) json, strlen(json), PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS || !st.is_object || !st.found_array)
		return NIL;
	*valid = true;
	return st.records;
}
