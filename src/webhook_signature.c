/*-------------------------------------------------------------------------
 *
 * webhook_signature.c
 *	  The primitives webhook authentication needs, as SQL-callable functions:
 *	  HMAC (SHA-1 and SHA-256 are what providers sign with), single-line
 *	  base64 and a constant-time comparison; the HMAC and base64 also for C
 *	  (a provider kind's own signature algorithm is in its file).
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
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "webhook_signature.h"

PG_FUNCTION_INFO_V1(dialer_hmac);
PG_FUNCTION_INFO_V1(dialer_base64_encode);
PG_FUNCTION_INFO_V1(dialer_constant_time_equal);

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
 * The HMAC of message under key, with the digest algorithm named, as a new
 * bytea.  Errors name the algorithm only.
 */
bytea *
signature_hmac(const char *algorithm, const char *key, size_t keylen,
			   const char *message, size_t len)
{
	const HmacAlgorithm *alg = lookup_algorithm(algorithm);
	pg_hmac_ctx *ctx;
	bytea	   *result;

	if (alg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid algorithm: %s", quote_literal_cstr(algorithm)),
				 errdetail("dialer.hmac supports sha1, sha224, sha256, sha384 and sha512."),
				 errhint("Webhook signatures use sha1 or sha256.")));

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
	if (pg_hmac_init(ctx, (const uint8 *) key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) message, len) < 0 ||
		pg_hmac_final(ctx, (uint8 *) VARDATA(result), alg->digest_len) < 0)
	{
		const char *reason = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-%s: %s", alg->name, reason)));
	}
	pg_hmac_free(ctx);
	return result;
}

/*
 * dialer.hmac(algorithm text, key bytea, message bytea) RETURNS bytea
 *
 * The raw HMAC of message under key.  Errors name the algorithm only.
 */
Datum
dialer_hmac(PG_FUNCTION_ARGS)
{
	text	   *algorithm = PG_GETARG_TEXT_PP(0);
	bytea	   *key = PG_GETARG_BYTEA_PP(1);
	bytea	   *message = PG_GETARG_BYTEA_PP(2);
	bytea	   *result;

	result = signature_hmac(text_to_cstring(algorithm),
							VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
							VARDATA_ANY(message), VARSIZE_ANY_EXHDR(message));
	PG_FREE_IF_COPY(key, 1);
	PG_FREE_IF_COPY(message, 2);
	PG_RETURN_BYTEA_P(result);
}

/*
 * Standard base64 (RFC 4648, with padding) of len bytes at data, on one line,
 * as a new text.
 */
text *
signature_base64(const char *data, int len)
{
	int			dstlen;
	int			outlen;
	text	   *result;

	if (len > (int) ((MaxAllocSize - VARHDRSZ) / 4 * 3 - 3))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value too large to encode in base64")));

	dstlen = pg_b64_enc_len(len);
	result = (text *) palloc(VARHDRSZ + dstlen + 1);
	outlen = pg_b64_encode(data, len, VARDATA(result), dstlen + 1);
	if (outlen < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encode value in base64")));
	SET_VARSIZE(result, VARHDRSZ + outlen);
	return result;
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
	text	   *result = signature_base64(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));

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
