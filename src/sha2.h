/*
 * sha2.h
 *		SHA-256, SHA-384, SHA-512 and HMAC over them (FIPS 180-4, RFC 2104),
 *		in plain C without PostgreSQL headers.
 *
 * PostgreSQL offers HMAC only from version 14 (common/hmac.h) and its SHA-2
 * API changed shape between 13 and 14; this file gives the JWT code one API
 * on every supported server and lets the JWT decoder be built and fuzzed
 * outside the server.
 */
#ifndef MA_SHA2_H
#define MA_SHA2_H

#include <stddef.h>
#include <stdint.h>

#define MA_SHA2_MAX_DIGEST 64

typedef enum MaShaAlg
{
	MA_SHA256,
	MA_SHA384,
	MA_SHA512
} MaShaAlg;

/* Digest length in bytes of alg: 32, 48 or 64. */
extern size_t ma_sha2_digest_len(MaShaAlg alg);

/* out (ma_sha2_digest_len(alg) bytes) = alg(msg). */
extern void ma_sha2(MaShaAlg alg, const uint8_t *msg, size_t len, uint8_t *out);

/*
 * out (ma_sha2_digest_len(alg) bytes) = HMAC-alg(key, msg); keys longer than
 * the block are hashed first, as RFC 2104 says.
 */
extern void ma_hmac_sha2(MaShaAlg alg, const uint8_t *key, size_t keylen,
						 const uint8_t *msg, size_t msglen, uint8_t *out);

/*
 * True when the n bytes at a and b are equal, in a time that depends on n
 * only (never on where they differ).
 */
extern int	ma_equal_const_time(const uint8_t *a, const uint8_t *b, size_t n);

#endif							/* MA_SHA2_H */
