/*
 * detect_sql.c
 *		The evidence of a 3-sigma evaluation as jsonb, and the SQL function
 *		metric_anomaly.three_sigma().
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "detect.h"
#include "detect_sql.h"

PG_FUNCTION_INFO_V1(metric_anomaly_three_sigma);

static void
append_number(StringInfo buf, const char *key, double v)
{
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	appendStringInfo(buf, ", \"%s\": ", key);
	if (isfinite(v))
	{
		double_to_shortest_decimal_buf(v, num);
		appendStringInfoString(buf, num);
	}
	else
		appendStringInfoString(buf, "null");
}

/*
 * Returns the evidence of an evaluation: method, value, mean, std_dev,
 * upper_boundary, lower_boundary, z_score (null for a flat history), sigma,
 * window (points of history used), direction, flat and is_anomaly.
 */
Jsonb *
ma_three_sigma_context(const MaThreeSigma *r)
{
	StringInfoData buf;
	Jsonb	   *result;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"method\": \"3-sigma\"");
	append_number(&buf, "value", r->value);
	append_number(&buf, "mean", r->mean);
	append_number(&buf, "std_dev", r->std_dev);
	append_number(&buf, "upper_boundary", r->upper);
	append_number(&buf, "lower_boundary", r->lower);
	append_number(&buf, "z_score", r->z_score);
	append_number(&buf, "sigma", r->sigma);
	appendStringInfo(&buf, ", \"window\": %d, \"direction\": \"%s\", \"flat\": %s, \"is_anomaly\": %s}",
					 r->n, ma_direction_name(r->direction),
					 r->flat ? "true" : "false",
					 r->is_anomaly ? "true" : "false");
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												CStringGetDatum(buf.data)));
	pfree(buf.data);
	return result;
}

/*
 * three_sigma(history float8[], value float8, sigma float8 DEFAULT 3.0)
 *
 * NULL elements of history are ignored; NaN or infinite values anywhere are
 * an error, as is a history without a single value.
 */
Datum
metric_anomaly_three_sigma(PG_FUNCTION_ARGS)
{
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	double		value = PG_GETARG_FLOAT8(1);
	double		sigma = PG_GETARG_FLOAT8(2);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	double	   *history;
	int			n = 0;
	MaThreeSigma r;

	if (!isfinite(sigma) || sigma <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sigma must be a finite number greater than 0")));
	if (!isfinite(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value must be finite"),
				 errdetail("NaN and infinity cannot be compared with a band.")));

	deconstruct_array(array, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &nelems);
	history = palloc(sizeof(double) * Max(nelems, 1));
	for (int i = 0; i < nelems; i++)
	{
		double		v;

		if (nulls[i])
			continue;
		v = DatumGetFloat8(elems[i]);
		if (!isfinite(v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("history contains a NaN or infinite value at position %d", i + 1),
					 errhint("Filter such values out, or replace them with NULL, which is ignored.")));
		history[n++] = v;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("history contains no values"),
				 errdetail("At least one non-NULL value is needed to compute a mean.")));

	ma_three_sigma(history, n, value, sigma, MA_DIRECTION_BOTH, &r);
	if (!isfinite(r.mean) || !isfinite(r.std_dev) ||
		!isfinite(r.upper) || !isfinite(r.lower))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("history values are too large to evaluate"),
				 errdetail("Their mean or standard deviation overflows double precision.")));

	PG_RETURN_JSONB_P(ma_three_sigma_context(&r));
}
