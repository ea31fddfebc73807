/*
 * jwt.h
 *		Decoding and HMAC verification of JSON Web Tokens (RFC 7519, JWS
 *		compact serialisation of RFC 7515), in plain C without PostgreSQL
 *		headers, so that it can be built, measured and fuzzed on its own.
 *
 * Use: ma_jwt_decode() (size, structure, base64url, header, algorithm), then
 * ma_jwt_signature_ok() with each candidate secret, then ma_jwt_read_claims()
 * (the claims are parsed only once the signature is known good), then
 * ma_jwt_check_time().  Each step that fails says why in jwt->detail, a
 * sentence that never contains the token's signature or any secret.
 */
#ifndef MA_JWT_H
#define MA_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "sha2.h"

/*
 * Longest token accepted, in bytes: the usual limit of an HTTP header line
 * (8 KB in nginx's default large_client_header_buffers), far above a real
 * token (200 to 1,500 bytes).
 */
#define MA_JWT_MAX_TOKEN 8192

/* Deepest nesting of arrays and objects accepted in the header and claims. */
#define MA_JWT_MAX_DEPTH 32

typedef enum MaJwtStatus
{
	MA_JWT_OK = 0,
	MA_JWT_TOO_LARGE,			/* over MA_JWT_MAX_TOKEN bytes */
	MA_JWT_MALFORMED,			/* not three dot-separated parts */
	MA_JWT_BAD_BASE64,			/* a part is not unpadded base64url */
	MA_JWT_BAD_JSON,			/* header or claims not a JSON object in UTF-8 */
	MA_JWT_UNSUPPORTED_ALG,		/* alg other than HS256, HS384, HS512 */
	MA_JWT_UNSUPPORTED_HEADER,	/* crit, or a typ other than JWT */
	MA_JWT_BAD_SIGNATURE,		/* no secret gives this signature */
	MA_JWT_BAD_CLAIM,			/* exp or nbf is not a finite number */
	MA_JWT_EXPIRED,				/* exp + leeway is not after now */
	MA_JWT_NOT_YET_VALID		/* nbf is after now + leeway */
} MaJwtStatus;

typedef struct MaJwt
{
	MaShaAlg	alg;
	const char *signing_input;	/* "header.payload", inside the token */
	size_t		signing_len;
	uint8_t		signature[MA_SHA2_MAX_DIGEST];
	size_t		signature_len;
	const char *claims;			/* the decoded payload (JSON text, UTF-8) */
	size_t		claims_len;
	int			has_exp;
	int			has_nbf;
	double		exp;			/* seconds since 1970-01-01 00:00 UTC */
	double		nbf;
	char		detail[200];	/* why a step failed, a full sentence */
} MaJwt;

/*
 * Checks the size and structure of token (len bytes, need not be
 * NUL-terminated), decodes its three parts, parses the header and picks the
 * algorithm.  buf (at least len bytes) receives the decoded header and claims;
 * jwt points into token and buf afterwards.
 */
extern MaJwtStatus ma_jwt_decode(const char *token, size_t len,
								 uint8_t *buf, size_t buflen, MaJwt *jwt);

/* True when the token's signature is HMAC(key, signing input), in constant time. */
extern int	ma_jwt_signature_ok(const MaJwt *jwt, const uint8_t *key, size_t keylen);

/*
 * Parses the claims: a JSON object (strict RFC 8259, UTF-8, at most
 * MA_JWT_MAX_DEPTH deep, no \u0000, exponents within +-1000 so that
 * PostgreSQL's jsonb takes every accepted text) whose exp and nbf, when
 * present, are finite numbers.  Fills jwt->exp and jwt->nbf.
 */
extern MaJwtStatus ma_jwt_read_claims(MaJwt *jwt);

/*
 * Checks the times of a token at now (seconds since the epoch) with leeway
 * seconds of tolerance for clock skew: expired when now >= exp + leeway (when
 * verify_exp), not yet valid when now + leeway < nbf.
 */
extern MaJwtStatus ma_jwt_check_time(MaJwt *jwt, double now, double leeway,
									 int verify_exp);

/*
 * Decodes strict base64url (RFC 4648 section 5) without padding into out
 * (at least 3 * len / 4 bytes) and returns the decoded length, or -1 with
 * *bad_pos at the first offending character: one outside the alphabet
 * (padding included), a length of 4k + 1, or a last character whose unused
 * low bits are not zero (which would let several texts carry one value).
 */
extern long ma_base64url_decode(const char *in, size_t len, uint8_t *out,
								size_t *bad_pos);

#endif							/* MA_JWT_H */
