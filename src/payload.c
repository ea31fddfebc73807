/*
 * payload.c
 *		Reading event payloads as the metric definitions do, and
 *		payload_dimensions(payload jsonb, keys text[]) for SQL.
 *
 * The rules are those of the SQL operators a definition is written in
 * terms of, so that what the fold counts is what a query over the events
 * would find:
 * - ma_payload_get() is #>: keys in objects, integer indexes (negative from
 *   the end) in arrays, SQL NULL for anything else;
 * - ma_payload_number() is a number or a numeric string (optional sign,
 *   digits with an optional fraction, an exponent of at most 3 digits,
 *   surrounding white space), cast through numeric: beyond +-1e300 or
 *   below 1e-300 in magnitude (but not 0) is non_numeric, as the sketch
 *   cannot index it and sums would overflow;
 * - ma_payload_text() is ->> / #>>: a string unquoted, a number or
 *   boolean as written, an object or array as JSON.
 * Dimension values are cut to MA_MAX_DIMENSION_CHARS characters; a key the
 * payload lacks (or a NULL payload) gives JSON null.  No SPI.
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/string.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "payload.h"
#include "pg_compat.h"

PG_FUNCTION_INFO_V1(metric_anomaly_payload_dimensions);

/*
 * The value at path in payload (in buf or in the payload), or NULL where #>
 * gives SQL NULL.  An empty path gives NULL too (definitions have none).
 */
JsonbValue *
ma_payload_get(Jsonb *payload, const MaPath *path, JsonbValue *buf)
{
	JsonbContainer *c;
	JsonbValue *v = NULL;

	if (payload == NULL || path->n == 0 || JB_ROOT_IS_SCALAR(payload))
		return NULL;
	c = &payload->root;
	for (int i = 0; i < path->n; i++)
	{
		if (JsonContainerIsObject(c))
			v = getKeyJsonValueFromContainer(c, path->elem[i], path->len[i], buf);
		else if (JsonContainerIsArray(c))
		{
			char	   *end;
			int			index;
			uint32		size = JsonContainerSize(c);

			errno = 0;
			index = strtoint(path->elem[i], &end, 10);
			if (end == path->elem[i] || *end != '\0' || errno != 0)
				return NULL;
			if (index < 0)
			{
				if (index == INT_MIN || (uint32) -index > size)
					return NULL;
				index = size + index;
			}
			v = getIthJsonbValueFromContainer(c, (uint32) index);
		}
		else
			return NULL;
		if (v == NULL)
			return NULL;
		if (i == path->n - 1)
			break;
		if (v->type != jbvBinary)
			return NULL;		/* a scalar has no members */
		c = v->val.binary.data;
	}
	return v;
}

/* \s of the regular expression the rule was first written with */
static inline bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * True when s (len bytes) is a number as the rule reads one:
 * ^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$
 */
static bool
numeric_string(const char *s, int len)
{
	int			i = 0;
	int			digits = 0;

	while (i < len && is_space(s[i]))
		i++;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		i++;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++, digits++;
	if (i < len && s[i] == '.')
	{
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, digits++;
	}
	if (digits == 0)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E'))
	{
		int			e = 0;

		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, e++;
		if (e < 1 || e > 3)
			return false;
	}
	while (i < len && is_space(s[i]))
		i++;
	return i == len;
}

/*
 * True when n is out of the range the fold takes: |n| > 1e300, or
 * 0 < |n| < 1e-300.  Exact (in numeric): called only near those bounds and
 * for 0, where the double may have rounded across them.
 */
static bool
numeric_out_of_range(Numeric n)
{
	Datum		a = DirectFunctionCall1(numeric_abs, NumericGetDatum(n));
	Datum		big = DirectFunctionCall3(numeric_in, CStringGetDatum("1e300"),
										  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	Datum		small = DirectFunctionCall3(numeric_in, CStringGetDatum("1e-300"),
											ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	Datum		zero = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));

	if (DatumGetBool(DirectFunctionCall2(numeric_gt, a, big)))
		return true;
	return DatumGetBool(DirectFunctionCall2(numeric_lt, a, small)) &&
		DatumGetBool(DirectFunctionCall2(numeric_ne, a, zero));
}

/*
 * numeric_float8_no_overflow(n), which prints n and reads the text back
 * with strtod(), without the text when the result is the same: n of at
 * most 16 significant digits whose integer M of them is at most 2^53, and
 * n = M 10^e with |e| <= 22, is one IEEE multiplication or division of two
 * exact doubles, rounded correctly as strtod() rounds the decimal text
 * (Clinger's fast path).  Reads the numeric's stored form (a header word,
 * a weight for the long form, base-10000 digits: the on-disk format, which
 * pg_upgrade keeps, so every release has it); anything else (NaN,
 * infinities, more digits) takes the text.  The text was a seventh of the
 * fold's work per event (perf, test/bench/metrics.sh).
 */
static double
numeric_double(Numeric n)
{
	static const double pow10[] = {
		1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
		1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
	};
	const char *p = (const char *) n + VARHDRSZ;
	uint16		header;
	bool		negative;
	int			weight;
	int			ndigits;
	const int16 *digits;
	uint64		m = 0;
	int			e;

	memcpy(&header, p, sizeof(header));
	if ((header & 0xC000) == 0x8000)
	{
		/* short: sign 0x2000, dscale 0x1F80, weight 0x007F (sign 0x0040) */
		negative = (header & 0x2000) != 0;
		weight = (header & 0x003F) | ((header & 0x0040) ? ~0x003F : 0);
		p += sizeof(uint16);
	}
	else if ((header & 0xC000) != 0xC000)
	{
		int16		w;

		/* long: sign 0x4000 and dscale, then an int16 weight */
		negative = (header & 0xC000) == 0x4000;
		memcpy(&w, p + sizeof(uint16), sizeof(w));
		weight = w;
		p += sizeof(uint16) + sizeof(int16);
	}
	else
		goto text;				/* NaN or an infinity */
	ndigits = (VARSIZE(n) - (p - (const char *) n)) / sizeof(int16);
	if (ndigits == 0)
		return 0.0;
	if (ndigits > 4)
		goto text;
	digits = (const int16 *) p;
	for (int i = 0; i < ndigits; i++)
		m = m * 10000 + (uint64) digits[i];
	e = 4 * (weight - (ndigits - 1));
	while (e < 0 && m % 10 == 0)
	{
		m /= 10;
		e++;
	}
	if (m > (UINT64CONST(1) << 53) || e > 22 || e < -22)
		goto text;
	{
		double		d = e >= 0 ? (double) m * pow10[e] : (double) m / pow10[-e];

		return negative ? -d : d;
	}

text:
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(n)));
}

/* True when d is 0, not finite, or within 1% of either bound. */
static inline bool
near_bounds(double d)
{
	double		a = fabs(d);

	return a == 0 || isinf(a) || (a > 0.99e300 && a < 1.01e300) ||
		(a > 0.99e-300 && a < 1.01e-300);
}

/*
 * Classifies v (NULL when the path gave nothing) as a value, setting *out
 * when it is one.  Only near the bounds does it go through numeric; else
 * strtod of the digits is what the cast through numeric gives.
 */
MaValueStatus
ma_payload_number(const JsonbValue *v, double *out)
{
	double		d;
	Numeric		n;

	if (v == NULL || v->type == jbvNull)
		return MA_VALUE_MISSING;
	if (v->type == jbvNumeric)
	{
		n = v->val.numeric;
		d = numeric_double(n);
	}
	else if (v->type == jbvString)
	{
		char	   *s;

		if (!numeric_string(v->val.string.val, v->val.string.len))
			return MA_VALUE_NON_NUMERIC;
		s = pnstrdup(v->val.string.val, v->val.string.len);
		d = strtod(s, NULL);
		n = near_bounds(d) ?
			DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
												ObjectIdGetDatum(InvalidOid),
												Int32GetDatum(-1))) : NULL;
		pfree(s);
	}
	else
		return MA_VALUE_WRONG_TYPE;
	if (near_bounds(d) && numeric_out_of_range(n))
		return MA_VALUE_NON_NUMERIC;
	*out = d;
	return MA_VALUE_OK;
}

/* The text ->> gives for v (not jbvNull), and its length in *len. */
char *
ma_payload_text(const JsonbValue *v, int *len)
{
	char	   *s;

	switch (v->type)
	{
		case jbvString:
			*len = v->val.string.len;
			return v->val.string.val;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			s = v->val.boolean ? "true" : "false";
			break;
		default:				/* jbvBinary: an object or array */
			s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			break;
	}
	*len = strlen(s);
	return s;
}

/*
 * The length of s (len bytes) cut to MA_MAX_DIMENSION_CHARS characters.
 * No more bytes than that are no more characters (and jsonb text holds no
 * NUL, where pg_mbcharcliplen() would stop), so most values skip the count.
 */
int
ma_dimension_clip(const char *s, int len)
{
	if (len <= MA_MAX_DIMENSION_CHARS)
		return len;
	return pg_mbcharcliplen(s, len, MA_MAX_DIMENSION_CHARS);
}

/*
 * {key: value, ...} for keys, vals[i] of lens[i] bytes, or JSON null where
 * vals[i] is NULL.
 */
Jsonb *
ma_dimensions_jsonb(const MaPath *keys, const char *const *vals, const int *lens)
{
	JsonbInState state = {0};

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < keys->n; i++)
	{
		JsonbValue	k;
		JsonbValue	v;

		k.type = jbvString;
		k.val.string.val = keys->elem[i];
		k.val.string.len = keys->len[i];
		if (vals[i] == NULL)
			v.type = jbvNull;
		else
		{
			v.type = jbvString;
			v.val.string.val = (char *) vals[i];
			v.val.string.len = lens[i];
		}
		pushJsonbValue(&state, WJB_KEY, &k);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(state.result);
}

Datum
metric_anomaly_payload_dimensions(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Datum	   *kd;
	bool	   *kn;
	int			nkeys;
	MaPath		keys;
	MaPath		one;
	const char **vals;
	int		   *lens;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &kd, &kn, &nkeys);
	keys.n = 0;
	keys.elem = palloc(sizeof(char *) * Max(nkeys, 1));
	keys.len = palloc(sizeof(int) * Max(nkeys, 1));
	vals = palloc(sizeof(char *) * Max(nkeys, 1));
	lens = palloc(sizeof(int) * Max(nkeys, 1));
	for (int i = 0; i < nkeys; i++)
	{
		JsonbValue	buf;
		JsonbValue *got;

		if (kn[i])
			continue;
		keys.elem[keys.n] = TextDatumGetCString(kd[i]);
		keys.len[keys.n] = strlen(keys.elem[keys.n]);
		/* a dimension is a top-level key, never an index */
		one.n = 1;
		one.elem = &keys.elem[keys.n];
		one.len = &keys.len[keys.n];
		got = (payload != NULL && JB_ROOT_IS_OBJECT(payload)) ?
			ma_payload_get(payload, &one, &buf) : NULL;
		if (got == NULL || got->type == jbvNull)
			vals[keys.n] = NULL;
		else
		{
			vals[keys.n] = ma_payload_text(got, &lens[keys.n]);
			lens[keys.n] = ma_dimension_clip(vals[keys.n], lens[keys.n]);
		}
		keys.n++;
	}
	PG_RETURN_JSONB_P(ma_dimensions_jsonb(&keys, vals, lens));
}
