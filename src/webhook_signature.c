/*-------------------------------------------------------------------------
 *
 * webhook_signature.c
 *	  The primitives webhook authentication needs, as SQL-callable functions:
 *	  HMAC (SHA-1 for Twilio's X-Twilio-Signature, SHA-256 for the JSON
 *	  webhooks of backend and voice_api providers), single-line base64, a
 *	  constant-time comparison, and Twilio's whole signature algorithm.
 *
 *	  They use PostgreSQL's own implementations (common/hmac.h, common/base64.h,
 *	  timingsafe_bcmp from port), which the server binary exports: nothing
 *	  extra is linked into pg_dialer.so, and the server's OpenSSL (or its
 *	  built-in fallback) does the hashing.
 *
 *	  No function here ever reports a key or a message in an error.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/webhook_signature.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "webhook_signature.h"

PG_FUNCTION_INFO_V1(dialer_hmac);
PG_FUNCTION_INFO_V1(dialer_base64_encode);
PG_FUNCTION_INFO_V1(dialer_constant_time_equal);
PG_FUNCTION_INFO_V1(dialer_twilio_signature);

/*
 * The digest algorithms accepted by dialer.hmac(), with their output sizes.
 */
typedef struct HmacAlgorithm
{
	const char *name;
	pg_cryptohash_type type;
	int			digest_len;
} HmacAlgorithm;

static const HmacAlgorithm hmac_algorithms[] = {
	{"sha1", PG_SHA1, 20},
	{"sha224", PG_SHA224, 28},
	{"sha256", PG_SHA256, 32},
	{"sha384", PG_SHA384, 48},
	{"sha512", PG_SHA512, 64},
};

static const HmacAlgorithm *
lookup_algorithm(const char *name)
{
	for (size_t i = 0; i < lengthof(hmac_algorithms); i++)
	{
		if (pg_strcasecmp(name, hmac_algorithms[i].name) == 0)
			return &hmac_algorithms[i];
	}
	return NULL;
}

/*
 * dialer.hmac(algorithm text, key bytea, message bytea) RETURNS bytea
 *
 * The raw HMAC of message under key.  Errors name the algorithm only.
 */
Datum
dialer_hmac(PG_FUNCTION_ARGS)
{
	text	   *algorithm_t = PG_GETARG_TEXT_PP(0);
	bytea	   *key = PG_GETARG_BYTEA_PP(1);
	bytea	   *message = PG_GETARG_BYTEA_PP(2);
	char	   *algorithm = text_to_cstring(algorithm_t);
	const HmacAlgorithm *alg = lookup_algorithm(algorithm);
	pg_hmac_ctx *ctx;
	bytea	   *result;

	if (alg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid algorithm: %s", quote_literal_cstr(algorithm)),
				 errdetail("dialer.hmac supports sha1, sha224, sha256, sha384 and sha512."),
				 errhint("Twilio signs with sha1, JSON webhooks with sha256.")));

	result = (bytea *) palloc(VARHDRSZ + alg->digest_len);
	SET_VARSIZE(result, VARHDRSZ + alg->digest_len);

	/*
	 * With OpenSSL the context is tracked by the current resource owner, so
	 * it is released even if an error escapes between create and free.
	 */
	ctx = pg_hmac_create(alg->type);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create an HMAC context for %s", alg->name)));
	if (pg_hmac_init(ctx, (const uint8 *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) VARDATA_ANY(message), VARSIZE_ANY_EXHDR(message)) < 0 ||
		pg_hmac_final(ctx, (uint8 *) VARDATA(result), alg->digest_len) < 0)
	{
		const char *reason = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-%s: %s", alg->name, reason)));
	}
	pg_hmac_free(ctx);

	PG_FREE_IF_COPY(key, 1);
	PG_FREE_IF_COPY(message, 2);
	PG_RETURN_BYTEA_P(result);
}

/*
 * dialer.base64_encode(data bytea) RETURNS text
 *
 * Standard base64 (RFC 4648, with padding) on one line: encode(x, 'base64')
 * breaks lines every 76 characters, which no signature header contains.
 */
Datum
dialer_base64_encode(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	int			srclen = VARSIZE_ANY_EXHDR(data);
	int			dstlen;
	int			len;
	text	   *result;

	if (srclen > (int) ((MaxAllocSize - VARHDRSZ) / 4 * 3 - 3))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value too large to encode in base64")));

	dstlen = pg_b64_enc_len(srclen);
	result = (text *) palloc(VARHDRSZ + dstlen + 1);
	len = pg_b64_encode(VARDATA_ANY(data), srclen, VARDATA(result), dstlen + 1);
	if (len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encode value in base64")));
	SET_VARSIZE(result, VARHDRSZ + len);
	PG_FREE_IF_COPY(data, 0);
	PG_RETURN_TEXT_P(result);
}

/*
 * dialer.constant_time_equal(a text, b text) RETURNS boolean
 *
 * True when a and b are the same bytes, in time that depends only on their
 * lengths, never on where they differ: a signature is compared without
 * telling an attacker how much of his guess was right.  Strings of different
 * lengths are unequal at once (the length of a signature is public: it is
 * fixed by the algorithm and the encoding).
 */
Datum
dialer_constant_time_equal(PG_FUNCTION_ARGS)
{
	text	   *a = PG_GETARG_TEXT_PP(0);
	text	   *b = PG_GETARG_TEXT_PP(1);
	size_t		alen = VARSIZE_ANY_EXHDR(a);
	size_t		blen = VARSIZE_ANY_EXHDR(b);
	bool		equal;

	if (alen != blen)
		equal = false;
	else
		equal = (timingsafe_bcmp(VARDATA_ANY(a), VARDATA_ANY(b), alen) == 0);

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	PG_RETURN_BOOL(equal);
}

/*
 * One form field of a request, pointing into the jsonb it came from.
 */
typedef struct TwilioField
{
	const char *name;
	int			namelen;
	const char *value;
	int			valuelen;
} TwilioField;

/* byte order of the names, as Twilio sorts them */
static int
twilio_field_cmp(const void *a, const void *b)
{
	const TwilioField *fa = (const TwilioField *) a;
	const TwilioField *fb = (const TwilioField *) b;
	int			cmp = memcmp(fa->name, fb->name, Min(fa->namelen, fb->namelen));

	if (cmp != 0)
		return cmp;
	return (fa->namelen > fb->namelen) - (fa->namelen < fb->namelen);
}

/*
 * dialer.twilio_signature(auth_token text, url text, params jsonb) RETURNS text
 *
 * Twilio's X-Twilio-Signature of a request: base64 of HMAC-SHA1, keyed with the auth
 * token, of the full URL (query string included) followed by every POST field sorted
 * by name in byte order, each as name then value; all in UTF-8.  params is a JSON
 * object of strings (a form has nothing else); any other value is an error.
 */
Datum
dialer_twilio_signature(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(0);
	text	   *url = PG_GETARG_TEXT_PP(1);
	Jsonb	   *params = PG_GETARG_JSONB_P(2);
	TwilioField *fields;
	int			nfields = 0;
	int			maxfields;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	TwilioField cur = {0};
	StringInfoData msg;
	char	   *key;
	char	   *data;
	int			keylen;
	pg_hmac_ctx *ctx;
	uint8		digest[20];
	char		b64[32];
	int			b64len;

	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the fields of a Twilio request must be a JSON object")));

	maxfields = Max(JB_ROOT_COUNT(params), 1);
	fields = (TwilioField *) palloc(sizeof(TwilioField) * maxfields);
	it = JsonbIteratorInit(&params->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
		{
			cur.name = v.val.string.val;
			cur.namelen = v.val.string.len;
		}
		else if (r == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("every field of a Twilio request is a string")));
			cur.value = v.val.string.val;
			cur.valuelen = v.val.string.len;
			if (nfields < maxfields)
				fields[nfields++] = cur;
		}
	}
	qsort(fields, nfields, sizeof(TwilioField), twilio_field_cmp);

	initStringInfo(&msg);
	appendBinaryStringInfo(&msg, VARDATA_ANY(url), VARSIZE_ANY_EXHDR(url));
	for (int i = 0; i < nfields; i++)
	{
		appendBinaryStringInfo(&msg, fields[i].name, fields[i].namelen);
		appendBinaryStringInfo(&msg, fields[i].value, fields[i].valuelen);
	}

	/* Twilio signs UTF-8; a no-op in a UTF-8 database */
	keylen = VARSIZE_ANY_EXHDR(token);
	key = pg_server_to_any(VARDATA_ANY(token), keylen, PG_UTF8);
	if (key != VARDATA_ANY(token))
		keylen = strlen(key);
	data = pg_server_to_any(msg.data, msg.len, PG_UTF8);

	ctx = pg_hmac_create(PG_SHA1);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create an HMAC context for sha1")));
	if (pg_hmac_init(ctx, (const uint8 *) key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) data, data == msg.data ? (size_t) msg.len : strlen(data)) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		const char *reason = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-sha1: %s", reason)));
	}
	pg_hmac_free(ctx);

	b64len = pg_b64_encode((const char *) digest, sizeof(digest), b64, sizeof(b64));
	if (b64len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encode the signature in base64")));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(b64, b64len));
}
