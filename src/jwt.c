/*
 * jwt.c
 *		Decoding and HMAC verification of JSON Web Tokens, in plain C (no
 *		PostgreSQL headers, no allocation, no SPI).
 *
 * The rules, strictest reading of RFC 7515/7519 where libraries differ:
 * - exactly three dot-separated parts; the header and claims non-empty;
 * - unpadded base64url, canonical (unused bits zero), so a token has one
 *   spelling and a changed last character is never the same signature;
 * - the header a JSON object whose alg is exactly HS256, HS384 or HS512
 *   ("none", "hs256", RS256 and everything else refused: the caller never
 *   chooses the algorithm by the token alone), typ absent or JWT / at+jwt,
 *   and no crit (we understand no extension);
 * - the signature compared in constant time, and its length first (public);
 * - the claims parsed only after the signature matched;
 * - header and claims strict JSON in UTF-8; the members this code reads
 *   (alg, typ, crit, exp, nbf) compared after unescaping and refused when
 *   repeated, so no other JSON parser can read a different alg or exp from
 *   the same text.
 */
#include "jwt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest member name or string value this code needs to look at. */
#define NAME_CAP 16

/* Largest |exponent| of a JSON number (PostgreSQL's numeric refuses more). */
#define MAX_EXPONENT 1000

#if defined(__GNUC__)
static void set_detail(MaJwt *jwt, const char *fmt,...) __attribute__((format(printf, 2, 3)));
#endif

static void
set_detail(MaJwt *jwt, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(jwt->detail, sizeof(jwt->detail), fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- base64url */

static int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

long
ma_base64url_decode(const char *in, size_t len, uint8_t *out, size_t *bad_pos)
{
	uint32_t	acc = 0;
	int			bits = 0;
	long		n = 0;

	if (len % 4 == 1)
	{
		*bad_pos = len - 1;
		return -1;
	}
	for (size_t i = 0; i < len; i++)
	{
		int			v = b64url_value((unsigned char) in[i]);

		if (v < 0)
		{
			*bad_pos = i;
			return -1;
		}
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[n++] = (uint8_t) (acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* 2 or 4 bits left over: they must be zero in the canonical spelling. */
	if (acc != 0)
	{
		*bad_pos = len - 1;
		return -1;
	}
	return n;
}

/* --------------------------------------------------------------------- JSON */

/*
 * A strict RFC 8259 reader over len bytes.  Every function returns 1 on
 * success with in->p past what it read, or 0 with in->why saying what is
 * wrong at in->p.
 */
typedef struct JsonIn
{
	const uint8_t *start;
	const uint8_t *p;
	const uint8_t *end;
	const char *why;
} JsonIn;

static int
json_fail(JsonIn *in, const char *why)
{
	in->why = why;
	return 0;
}

static void
json_skip_ws(JsonIn *in)
{
	while (in->p < in->end &&
		   (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
		in->p++;
}

/*
 * Length of the well-formed UTF-8 sequence at p (1 to 4), or 0: no overlong
 * forms, no surrogates, nothing above U+10FFFF (RFC 3629).
 */
static int
utf8_len(const uint8_t *p, const uint8_t *end)
{
	uint8_t		c = p[0];
	int			n;
	uint8_t		lo = 0x80,
				hi = 0xBF;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	}
	else
		return 0;
	if (end - p < n)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

static int
hex4(const uint8_t *p, uint32_t *out)
{
	uint32_t	v = 0;

	for (int i = 0; i < 4; i++)
	{
		uint8_t		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return 0;
	}
	*out = v;
	return 1;
}

/* Appends code point cp as UTF-8 to out while it fits in cap bytes. */
static void
put_utf8(uint32_t cp, char *out, size_t cap, size_t *n)
{
	uint8_t		b[4];
	int			k;

	if (cp < 0x80)
		b[0] = (uint8_t) cp, k = 1;
	else if (cp < 0x800)
		b[0] = 0xC0 | (cp >> 6), b[1] = 0x80 | (cp & 0x3F), k = 2;
	else if (cp < 0x10000)
		b[0] = 0xE0 | (cp >> 12), b[1] = 0x80 | ((cp >> 6) & 0x3F),
			b[2] = 0x80 | (cp & 0x3F), k = 3;
	else
		b[0] = 0xF0 | (cp >> 18), b[1] = 0x80 | ((cp >> 12) & 0x3F),
			b[2] = 0x80 | ((cp >> 6) & 0x3F), b[3] = 0x80 | (cp & 0x3F), k = 4;
	for (int i = 0; i < k; i++, (*n)++)
		if (out != NULL && *n < cap)
			out[*n] = (char) b[i];
}

/*
 * Reads a string (in->p at its opening quote).  When out is given, its
 * unescaped text goes there, NUL-terminated, and *outlen is the full
 * unescaped length (more than cap - 1 means it was cut).
 */
static int
json_string(JsonIn *in, char *out, size_t cap, size_t *outlen)
{
	size_t		n = 0;

	in->p++;
	for (;;)
	{
		uint8_t		c;

		if (in->p >= in->end)
			return json_fail(in, "a string is not closed");
		c = *in->p;
		if (c == '"')
			break;
		if (c < 0x20)
			return json_fail(in, "a string contains a control character");
		if (c == '\\')
		{
			uint32_t	cp;

			if (in->end - in->p < 2)
				return json_fail(in, "a string ends inside an escape");
			c = in->p[1];
			in->p += 2;
			switch (c)
			{
				case '"':
				case '\\':
				case '/':
					cp = c;
					break;
				case 'b':
					cp = '\b';
					break;
				case 'f':
					cp = '\f';
					break;
				case 'n':
					cp = '\n';
					break;
				case 'r':
					cp = '\r';
					break;
				case 't':
					cp = '\t';
					break;
				case 'u':
					if (in->end - in->p < 4 || !hex4(in->p, &cp))
						return json_fail(in, "a \\u escape needs four hex digits");
					in->p += 4;
					if (cp == 0)
						return json_fail(in, "\\u0000 is not allowed");
					if (cp >= 0xDC00 && cp <= 0xDFFF)
						return json_fail(in, "a low surrogate escape has no high surrogate before it");
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						uint32_t	lo;

						if (in->end - in->p < 6 || in->p[0] != '\\' || in->p[1] != 'u' ||
							!hex4(in->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
							return json_fail(in, "a high surrogate escape has no low surrogate after it");
						in->p += 6;
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					}
					break;
				default:
					in->p -= 2;
					return json_fail(in, "a string contains an unknown escape");
			}
			put_utf8(cp, out, cap, &n);
			continue;
		}
		else
		{
			int			k = utf8_len(in->p, in->end);

			if (k == 0)
				return json_fail(in, "a string is not valid UTF-8");
			for (int i = 0; i < k; i++, n++)
				if (out != NULL && n < cap)
					out[n] = (char) in->p[i];
			in->p += k;
		}
	}
	in->p++;
	if (out != NULL)
	{
		out[n < cap ? n : cap - 1] = '\0';
		*outlen = n;
	}
	return 1;
}

static int
json_digits(JsonIn *in)
{
	const uint8_t *s = in->p;

	while (in->p < in->end && *in->p >= '0' && *in->p <= '9')
		in->p++;
	return in->p > s;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, exponent within +-1000. */
static int
json_number(JsonIn *in)
{
	if (in->p < in->end && *in->p == '-')
		in->p++;
	if (in->p < in->end && *in->p == '0')
		in->p++;
	else if (!json_digits(in))
		return json_fail(in, "a number has no digits");
	if (in->p < in->end && *in->p == '.')
	{
		in->p++;
		if (!json_digits(in))
			return json_fail(in, "a number has no digits after its decimal point");
	}
	if (in->p < in->end && (*in->p == 'e' || *in->p == 'E'))
	{
		long		e = 0;

		in->p++;
		if (in->p < in->end && (*in->p == '+' || *in->p == '-'))
			in->p++;
		if (in->p >= in->end || *in->p < '0' || *in->p > '9')
			return json_fail(in, "a number has no digits in its exponent");
		for (; in->p < in->end && *in->p >= '0' && *in->p <= '9'; in->p++)
		{
			e = e * 10 + (*in->p - '0');
			if (e > MAX_EXPONENT)
				return json_fail(in, "a number's exponent is out of range");
		}
	}
	return 1;
}

static int
json_literal(JsonIn *in, const char *word)
{
	size_t		n = strlen(word);

	if ((size_t) (in->end - in->p) < n || memcmp(in->p, word, n) != 0)
		return json_fail(in, "unexpected character");
	in->p += n;
	return 1;
}

/* Called for every member of the top-level object; returns MA_JWT_OK or why not. */
typedef MaJwtStatus (*MemberFn) (void *arg, const char *name, size_t namelen,
								 const uint8_t *value, const uint8_t *value_end);

static int	json_value(JsonIn *in, int depth);

static int
json_container(JsonIn *in, int depth, int is_object)
{
	uint8_t		close = is_object ? '}' : ']';

	if (depth > MA_JWT_MAX_DEPTH)
		return json_fail(in, "objects and arrays are nested too deeply");
	in->p++;
	json_skip_ws(in);
	if (in->p < in->end && *in->p == close)
	{
		in->p++;
		return 1;
	}
	for (;;)
	{
		if (is_object)
		{
			if (in->p >= in->end || *in->p != '"')
				return json_fail(in, "an object member has no name");
			if (!json_string(in, NULL, 0, NULL))
				return 0;
			json_skip_ws(in);
			if (in->p >= in->end || *in->p != ':')
				return json_fail(in, "an object member name has no colon after it");
			in->p++;
		}
		if (!json_value(in, depth))
			return 0;
		json_skip_ws(in);
		if (in->p < in->end && *in->p == ',')
		{
			in->p++;
			json_skip_ws(in);
			continue;
		}
		if (in->p < in->end && *in->p == close)
		{
			in->p++;
			return 1;
		}
		return json_fail(in, is_object ? "an object is not closed" : "an array is not closed");
	}
}

/* Reads any value, with leading white space; depth counts enclosing containers. */
static int
json_value(JsonIn *in, int depth)
{
	json_skip_ws(in);
	if (in->p >= in->end)
		return json_fail(in, "a value is missing");
	switch (*in->p)
	{
		case '{':
			return json_container(in, depth + 1, 1);
		case '[':
			return json_container(in, depth + 1, 0);
		case '"':
			return json_string(in, NULL, 0, NULL);
		case 't':
			return json_literal(in, "true");
		case 'f':
			return json_literal(in, "false");
		case 'n':
			return json_literal(in, "null");
		default:
			if (*in->p == '-' || (*in->p >= '0' && *in->p <= '9'))
				return json_number(in);
			return json_fail(in, "unexpected character");
	}
}

/*
 * Reads text (len bytes) as one JSON object, handing each top-level member
 * to fn.  what names the part in the detail ("header" or "claims set").
 */
static MaJwtStatus
json_top_object(const uint8_t *text, size_t len, const char *what,
				MemberFn fn, void *arg, MaJwt *jwt)
{
	JsonIn		in = {text, text, text + len, NULL};

	json_skip_ws(&in);
	if (in.p >= in.end || *in.p != '{')
	{
		set_detail(jwt, "The %s must be a JSON object.", what);
		return MA_JWT_BAD_JSON;
	}
	in.p++;
	json_skip_ws(&in);
	if (in.p < in.end && *in.p == '}')
		in.p++;
	else
		for (;;)
		{
			char		name[NAME_CAP];
			size_t		namelen;
			const uint8_t *value;
			MaJwtStatus st;

			if (in.p >= in.end || *in.p != '"')
			{
				in.why = "an object member has no name";
				goto bad;
			}
			if (!json_string(&in, name, sizeof(name), &namelen))
				goto bad;
			json_skip_ws(&in);
			if (in.p >= in.end || *in.p != ':')
			{
				in.why = "an object member name has no colon after it";
				goto bad;
			}
			in.p++;
			json_skip_ws(&in);
			value = in.p;
			if (!json_value(&in, 1))
				goto bad;
			if ((st = fn(arg, name, namelen, value, in.p)) != MA_JWT_OK)
				return st;
			json_skip_ws(&in);
			if (in.p < in.end && *in.p == ',')
			{
				in.p++;
				json_skip_ws(&in);
				continue;
			}
			if (in.p < in.end && *in.p == '}')
			{
				in.p++;
				break;
			}
			in.why = "an object is not closed";
			goto bad;
		}
	json_skip_ws(&in);
	if (in.p == in.end)
		return MA_JWT_OK;
	in.why = "text follows the object";
bad:
	set_detail(jwt, "The %s is not valid JSON at byte %zu: %s.", what,
			   (size_t) (in.p - in.start) + 1, in.why);
	return MA_JWT_BAD_JSON;
}

/* True when the member name (namelen bytes, unescaped) is word. */
static int
name_is(const char *name, size_t namelen, const char *word)
{
	return namelen == strlen(word) && strcmp(name, word) == 0;
}

/* Unescapes the string value at value into out (cap bytes); 0 if not a string. */
static int
string_value(const uint8_t *value, const uint8_t *end, char *out, size_t cap,
			 size_t *len)
{
	JsonIn		in = {value, value, end, NULL};

	return *value == '"' && json_string(&in, out, cap, len);
}

/* Copies a printable ASCII rendering of s (at most 20 characters) into out. */
static void
printable(const char *s, size_t len, char *out, size_t cap)
{
	size_t		n = 0;

	for (size_t i = 0; i < len && s[i] != '\0' && n + 1 < cap && i < 20; i++)
		out[n++] = (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '"') ? s[i] : '?';
	out[n] = '\0';
}

/* ------------------------------------------------------------------- header */

/* strcasecmp for ASCII, without a locale. */
static int
ascii_equal_ci(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++)
	{
		char		x = (*a >= 'A' && *a <= 'Z') ? *a + 32 : *a;
		char		y = (*b >= 'A' && *b <= 'Z') ? *b + 32 : *b;

		if (x != y)
			return 0;
	}
	return *a == *b;
}

typedef struct HeaderState
{
	MaJwt	   *jwt;
	int			seen_alg;
	int			seen_typ;
	char		alg[NAME_CAP];
	size_t		alg_len;
	int			alg_is_string;
	int			crit;
	int			typ_ok;
} HeaderState;

static MaJwtStatus
header_member(void *arg, const char *name, size_t namelen,
			  const uint8_t *value, const uint8_t *value_end)
{
	HeaderState *h = arg;

	if (name_is(name, namelen, "alg"))
	{
		if (h->seen_alg++)
		{
			set_detail(h->jwt, "The header has more than one alg member.");
			return MA_JWT_BAD_JSON;
		}
		h->alg_is_string = string_value(value, value_end, h->alg,
										sizeof(h->alg), &h->alg_len);
	}
	else if (name_is(name, namelen, "typ"))
	{
		char		typ[NAME_CAP];
		size_t		typ_len;

		if (h->seen_typ++)
		{
			set_detail(h->jwt, "The header has more than one typ member.");
			return MA_JWT_BAD_JSON;
		}
		/* RFC 7515 4.1.9: media types compare ignoring case. */
		h->typ_ok = string_value(value, value_end, typ, sizeof(typ), &typ_len) &&
			typ_len == strlen(typ) &&
			(ascii_equal_ci(typ, "JWT") || ascii_equal_ci(typ, "application/jwt") ||
			 ascii_equal_ci(typ, "at+jwt"));
	}
	else if (name_is(name, namelen, "crit"))
		h->crit = 1;
	return MA_JWT_OK;
}

/* Picks the algorithm named by the header, or says why the header is refused. */
static MaJwtStatus
header_algorithm(const HeaderState *h, MaJwt *jwt)
{
	static const struct
	{
		const char *name;
		MaShaAlg	alg;
	}			algs[] = {
		{"HS256", MA_SHA256}, {"HS384", MA_SHA384}, {"HS512", MA_SHA512}
	};
	char		shown[24];

	if (h->crit)
	{
		set_detail(jwt, "The header lists critical extensions (crit), which this verifier does not implement.");
		return MA_JWT_UNSUPPORTED_HEADER;
	}
	if (h->seen_typ && !h->typ_ok)
	{
		set_detail(jwt, "The header's typ is not JWT.");
		return MA_JWT_UNSUPPORTED_HEADER;
	}
	if (!h->seen_alg || !h->alg_is_string)
	{
		set_detail(jwt, "The header has no alg string.");
		return MA_JWT_UNSUPPORTED_ALG;
	}
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (name_is(h->alg, h->alg_len, algs[i].name))
		{
			jwt->alg = algs[i].alg;
			return MA_JWT_OK;
		}
	printable(h->alg, h->alg_len, shown, sizeof(shown));
	set_detail(jwt, "The header's alg is \"%s\"; only HS256, HS384 and HS512 are accepted.", shown);
	return MA_JWT_UNSUPPORTED_ALG;
}

/* ---------------------------------------------------------------- the token */

static const char *const part_names[] = {"header", "payload", "signature"};

/* Base64url characters of the longest HMAC (SHA-512: 64 bytes). */
#define MAX_SIGNATURE_CHARS ((MA_SHA2_MAX_DIGEST * 4 + 2) / 3)

/* Decodes part number which of token into out; -1 (with the detail) when bad. */
static long
decode_part(const char *token, const char *part, size_t len, uint8_t *out,
			int which, MaJwt *jwt)
{
	size_t		bad;
	long		n = ma_base64url_decode(part, len, out, &bad);

	if (n < 0)
		set_detail(jwt, "The %s part is not unpadded base64url at character %zu of the token.",
				   part_names[which], (size_t) (part - token) + bad + 1);
	return n;
}

MaJwtStatus
ma_jwt_decode(const char *token, size_t len, uint8_t *buf, size_t buflen,
			  MaJwt *jwt)
{
	const char *part[3];
	size_t		part_len[3];
	size_t		nparts = 1;
	uint8_t    *header;
	uint8_t    *claims;
	long		header_len;
	long		claims_len;
	long		sig_len;
	HeaderState h;
	MaJwtStatus st;

	memset(jwt, 0, sizeof(*jwt));
	if (len > MA_JWT_MAX_TOKEN)
	{
		set_detail(jwt, "The token has %zu bytes; at most %d are accepted.",
				   len, MA_JWT_MAX_TOKEN);
		return MA_JWT_TOO_LARGE;
	}
	if (buflen < len)
	{
		set_detail(jwt, "The decoding buffer is too small.");
		return MA_JWT_TOO_LARGE;
	}

	part[0] = token;
	for (size_t i = 0; i < len; i++)
		if (token[i] == '.')
		{
			if (nparts < 3)
			{
				part_len[nparts - 1] = token + i - part[nparts - 1];
				part[nparts] = token + i + 1;
			}
			nparts++;
		}
	if (nparts != 3)
	{
		set_detail(jwt, "A JWT has three base64url parts separated by dots; this one has %zu%s.",
				   nparts, nparts == 5 ? " (an encrypted JWE, which is not supported)" : "");
		return MA_JWT_MALFORMED;
	}
	part_len[2] = token + len - part[2];
	if (part_len[0] == 0 || part_len[1] == 0)
	{
		set_detail(jwt, "The %s part is empty.", part_len[0] == 0 ? "header" : "payload");
		return MA_JWT_MALFORMED;
	}

	/*
	 * The header first, so that a token of another algorithm (whose
	 * signature may be much longer) is refused as such.  Header and claims
	 * go into buf; each decodes to at most 3/4 of its text.
	 */
	header = buf;
	if ((header_len = decode_part(token, part[0], part_len[0], header, 0, jwt)) < 0)
		return MA_JWT_BAD_BASE64;
	memset(&h, 0, sizeof(h));
	h.jwt = jwt;
	st = json_top_object(header, header_len, "header", header_member, &h, jwt);
	if (st == MA_JWT_OK)
		st = header_algorithm(&h, jwt);
	if (st != MA_JWT_OK)
		return st;

	claims = buf + (part_len[0] * 3) / 4;
	if ((claims_len = decode_part(token, part[1], part_len[1], claims, 1, jwt)) < 0)
		return MA_JWT_BAD_BASE64;
	jwt->claims = (const char *) claims;
	jwt->claims_len = claims_len;

	/* A signature longer than any digest is wrong whatever it says. */
	if (part_len[2] > MAX_SIGNATURE_CHARS)
	{
		set_detail(jwt, "The signature has %zu characters, more than an HMAC gives.",
				   part_len[2]);
		return MA_JWT_BAD_SIGNATURE;
	}
	if ((sig_len = decode_part(token, part[2], part_len[2], jwt->signature, 2, jwt)) < 0)
		return MA_JWT_BAD_BASE64;
	jwt->signature_len = sig_len;
	jwt->signing_input = token;
	jwt->signing_len = part_len[0] + 1 + part_len[1];
	return MA_JWT_OK;
}

int
ma_jwt_signature_ok(const MaJwt *jwt, const uint8_t *key, size_t keylen)
{
	uint8_t		mac[MA_SHA2_MAX_DIGEST];
	size_t		n = ma_sha2_digest_len(jwt->alg);
	int			ok;

	/* The length of a signature is public; only its bytes need hiding. */
	if (jwt->signature_len != n)
		return 0;
	ma_hmac_sha2(jwt->alg, key, keylen, (const uint8_t *) jwt->signing_input,
				 jwt->signing_len, mac);
	ok = ma_equal_const_time(mac, jwt->signature, n);
	memset(mac, 0, sizeof(mac));
	return ok;
}

/* ------------------------------------------------------------------- claims */

/* Reads a NumericDate member (exp or nbf) into *out. */
static MaJwtStatus
numeric_date(MaJwt *jwt, const char *name, int *seen, double *out,
			 const uint8_t *value, const uint8_t *value_end)
{
	char		num[64];
	size_t		n = value_end - value;
	char	   *endp;

	if ((*seen)++)
	{
		set_detail(jwt, "The claims set has more than one %s member.", name);
		return MA_JWT_BAD_JSON;
	}
	if (!(*value == '-' || (*value >= '0' && *value <= '9')) || n >= sizeof(num))
	{
		set_detail(jwt, "The %s claim must be a number of seconds since 1970-01-01 00:00 UTC.", name);
		return MA_JWT_BAD_CLAIM;
	}
	memcpy(num, value, n);
	num[n] = '\0';
	*out = strtod(num, &endp);
	if (!isfinite(*out))
	{
		set_detail(jwt, "The %s claim is out of range.", name);
		return MA_JWT_BAD_CLAIM;
	}
	return MA_JWT_OK;
}

static MaJwtStatus
claims_member(void *arg, const char *name, size_t namelen,
			  const uint8_t *value, const uint8_t *value_end)
{
	MaJwt	   *jwt = arg;

	if (name_is(name, namelen, "exp"))
		return numeric_date(jwt, "exp", &jwt->has_exp, &jwt->exp, value, value_end);
	if (name_is(name, namelen, "nbf"))
		return numeric_date(jwt, "nbf", &jwt->has_nbf, &jwt->nbf, value, value_end);
	return MA_JWT_OK;
}

MaJwtStatus
ma_jwt_read_claims(MaJwt *jwt)
{
	jwt->has_exp = jwt->has_nbf = 0;
	return json_top_object((const uint8_t *) jwt->claims, jwt->claims_len,
						   "claims set", claims_member, jwt, jwt);
}

/*
 * Writes t (seconds since the epoch) as "YYYY-MM-DD HH:MM:SS UTC", or as a
 * number when it is beyond the years 1 to 9999.
 */
static void
format_time(double t, char *out, size_t cap)
{
	time_t		tt;
	struct tm  *tm;

	if (t > -62135596800.0 && t < 253402300800.0)
	{
		tt = (time_t) floor(t);
		tm = gmtime(&tt);
		if (tm != NULL && strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", tm) > 0)
			return;
	}
	snprintf(out, cap, "%.0f", t);
}

MaJwtStatus
ma_jwt_check_time(MaJwt *jwt, double now, double leeway, int verify_exp)
{
	char		when[40];

	if (verify_exp && jwt->has_exp && now >= jwt->exp + leeway)
	{
		format_time(jwt->exp, when, sizeof(when));
		set_detail(jwt, "The token expired at %s (exp %.0f); the leeway is %.0f s.",
				   when, jwt->exp, leeway);
		return MA_JWT_EXPIRED;
	}
	if (jwt->has_nbf && now + leeway < jwt->nbf)
	{
		format_time(jwt->nbf, when, sizeof(when));
		set_detail(jwt, "The token is valid from %s (nbf %.0f); the leeway is %.0f s.",
				   when, jwt->nbf, leeway);
		return MA_JWT_NOT_YET_VALID;
	}
	return MA_JWT_OK;
}
