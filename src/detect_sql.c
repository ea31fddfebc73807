/*
 * detect_sql.c
 *		The evidence of a verdict (3-sigma, robust) as jsonb, detection
 *		settings from jsonb (the keys of metric_anomaly.metrics, for the
 *		worker and detect_series() alike), and metric_anomaly.three_sigma().
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
#include "utils/numeric.h"

#include "detect.h"
#include "detect_sql.h"
#include "episode.h"
#include "metric_anomaly.h"

PG_FUNCTION_INFO_V1(metric_anomaly_three_sigma);
PG_FUNCTION_INFO_V1(metric_anomaly_check_detection_settings);

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

/* Evidence of one baseline of the robust method, or nothing if unused. */
static void
append_baseline(StringInfo buf, const MaRobust *r, int b, bool *first)
{
	const MaBaseline *bl = &r->b[b];

	if (!bl->used)
		return;
	appendStringInfo(buf, "%s\"%s\": {\"n\": %d", *first ? "" : ", ",
					 ma_baseline_name(b), bl->n);
	if (b != MA_BASELINE_RECENT)
		appendStringInfo(buf, ", \"seasons\": %d", bl->seasons);
	append_number(buf, "median", bl->median);
	if (b == MA_BASELINE_RECENT)
		append_number(buf, "slope", bl->slope);
	append_number(buf, "scale", bl->scale);
	append_number(buf, "score", bl->score);
	append_number(buf, "shift_score", bl->shift);
	appendStringInfoChar(buf, '}');
	*first = false;
}

/*
 * Evidence of a robust verdict: method, value, expected, lower_boundary and
 * upper_boundary (the band charts draw), score, sensitivity, direction,
 * counts, judged_by (the nearest baseline), baselines (each used one with
 * its points, seasons, median (the level expected at this point), slope
 * (recent: per point), scale and score), outside_band (every
 * baseline put it outside its band), shifted (every baseline saw a
 * sustained shift), repeats (earlier excursions as far, for the novelty
 * guard), test (which test flagged it: "point" or "shift"; null when
 * normal) and is_anomaly.
 */
static Jsonb *
robust_context(const MaRobust *r)
{
	StringInfoData buf;
	Jsonb	   *result;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"method\": \"robust\"");
	append_number(&buf, "value", r->value);
	append_number(&buf, "expected", r->expected);
	append_number(&buf, "upper_boundary", r->upper);
	append_number(&buf, "lower_boundary", r->lower);
	append_number(&buf, "score", r->score);
	append_number(&buf, "sensitivity", r->sensitivity);
	appendStringInfo(&buf, ", \"direction\": \"%s\", \"counts\": %s, \"judged_by\": \"%s\", \"baselines\": {",
					 ma_direction_name(r->direction),
					 r->counts ? "true" : "false", ma_baseline_name(r->judge));
	for (int b = 0; b < MA_BASELINES; b++)
		append_baseline(&buf, r, b, &first);
	appendStringInfo(&buf, "}, \"outside_band\": %s", r->outside_band ? "true" : "false");
	appendStringInfo(&buf, ", \"shifted\": %s", r->shifted ? "true" : "false");
	appendStringInfo(&buf, ", \"repeats\": %d", r->repeats);
	if (r->test)
		appendStringInfo(&buf, ", \"test\": \"%s\"", r->test);
	else
		appendStringInfoString(&buf, ", \"test\": null");
	appendStringInfo(&buf, ", \"is_anomaly\": %s}", r->is_anomaly ? "true" : "false");
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												CStringGetDatum(buf.data)));
	pfree(buf.data);
	return result;
}

/* The evidence of a verdict of either method; NULL when not judged. */
Jsonb *
ma_verdict_context(const MaVerdict *v)
{
	if (!v->judged)
		return NULL;
	if (v->method == MA_METHOD_THREE_SIGMA)
		return ma_three_sigma_context(&v->sigma);
	return robust_context(&v->robust);
}

/* Parses auto (daily and weekly), daily, weekly or none. */
bool
ma_seasonality_parse(const char *name, bool *daily, bool *weekly)
{
	if (strcmp(name, "auto") == 0)
		*daily = *weekly = true;
	else if (strcmp(name, "daily") == 0)
	{
		*daily = true;
		*weekly = false;
	}
	else if (strcmp(name, "weekly") == 0)
	{
		*daily = false;
		*weekly = true;
	}
	else if (strcmp(name, "none") == 0)
		*daily = *weekly = false;
	else
		return false;
	return true;
}

/* The settings of a metric without a row in metric_anomaly.metrics. */
void
ma_detect_settings_defaults(MaDetectSettings *s)
{
	s->method = MA_METHOD_ROBUST;
	s->sigma = ma_sigma;
	s->sensitivity = MA_DEFAULT_SENSITIVITY;
	s->window = 0;
	s->sigma_window = ma_window;
	s->min_points = ma_min_points;
	s->direction = MA_DIRECTION_BOTH;
	s->daily = s->weekly = true;
	s->alert_after = 0;
	s->alert_window = 0;
}

static void
settings_error(const char *key, const char *rule)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("setting \"%s\" must be %s", key, rule),
			 errhint("The settings are those of metric_anomaly.metrics; README lists them.")));
}

static double
settings_number(JsonbValue *v, const char *key, double lo, double hi, bool integer)
{
	double		d;

	if (v->type != jbvNumeric)
		settings_error(key, integer ? "an integer" : "a number");
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
										   NumericGetDatum(v->val.numeric)));
	if (!(d >= lo && d <= hi) || (integer && d != floor(d)))
	{
		char	   *rule = integer ? psprintf("an integer from %g to %g", lo, hi) :
			psprintf("a number greater than %g and at most %g", lo, hi);

		settings_error(key, rule);
	}
	return d;
}

static char *
settings_string(JsonbValue *v, const char *key, const char *choices)
{
	if (v->type != jbvString)
		settings_error(key, choices);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Applies the keys of a jsonb object over s: method, sigma, sensitivity,
 * window_size, min_points, direction, seasonality, alert_after and
 * alert_window, with the bounds of metric_anomaly.metrics.  A JSON null
 * leaves the setting as it is; any other key is an error.
 */
void
ma_detect_settings_apply(MaDetectSettings *s, Jsonb *settings)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(settings))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("detection settings must be a JSON object"),
				 errhint("Pass settings such as '{\"method\": \"3-sigma\"}'.")));
	it = JsonbIteratorInit(&settings->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		char	   *str;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		if (strcmp(key, "method") != 0 && strcmp(key, "sigma") != 0 &&
			strcmp(key, "sensitivity") != 0 && strcmp(key, "window_size") != 0 &&
			strcmp(key, "min_points") != 0 && strcmp(key, "direction") != 0 &&
			strcmp(key, "seasonality") != 0 && strcmp(key, "alert_after") != 0 &&
			strcmp(key, "alert_window") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown detection setting \"%s\"", key),
					 errhint("Known settings: method, sigma, sensitivity, window_size, min_points, direction, seasonality, alert_after, alert_window.")));
		if (v.type == jbvNull)
			continue;
		if (strcmp(key, "method") == 0)
		{
			str = settings_string(&v, key, "\"robust\" or \"3-sigma\"");
			if (!ma_method_parse(str, &s->method))
				settings_error(key, "\"robust\" or \"3-sigma\"");
		}
		else if (strcmp(key, "sigma") == 0)
			s->sigma = settings_number(&v, key, 0, 100, false);
		else if (strcmp(key, "sensitivity") == 0)
			s->sensitivity = settings_number(&v, key, 0, 100, false);
		else if (strcmp(key, "window_size") == 0)
			s->window = (int) settings_number(&v, key, 2, 10080, true);
		else if (strcmp(key, "min_points") == 0)
			s->min_points = (int) settings_number(&v, key, 2, 10080, true);
		else if (strcmp(key, "direction") == 0)
		{
			str = settings_string(&v, key, "\"both\", \"up\" or \"down\"");
			if (!ma_direction_parse(str, &s->direction))
				settings_error(key, "\"both\", \"up\" or \"down\"");
		}
		else if (strcmp(key, "seasonality") == 0)
		{
			str = settings_string(&v, key, "\"auto\", \"daily\", \"weekly\" or \"none\"");
			if (!ma_seasonality_parse(str, &s->daily, &s->weekly))
				settings_error(key, "\"auto\", \"daily\", \"weekly\" or \"none\"");
		}
		else if (strcmp(key, "alert_after") == 0)
			s->alert_after = (int) settings_number(&v, key, 1, MA_EPISODE_MAX_WINDOW, true);
		else
			s->alert_window = (int) settings_number(&v, key, 1, MA_EPISODE_MAX_WINDOW, true);
	}
	if (s->sigma == 0 || s->sensitivity == 0)
		settings_error(s->sigma == 0 ? "sigma" : "sensitivity",
					   "a number greater than 0 and at most 100");
}

/*
 * check_detection_settings(settings jsonb): raises the error
 * ma_detect_settings_apply() raises for settings detect_series() would
 * refuse; the metric_definitions trigger checks a definition's detection
 * with it, so a definition is refused when it is written, not when the
 * worker first reads it.
 */
Datum
metric_anomaly_check_detection_settings(PG_FUNCTION_ARGS)
{
	MaDetectSettings s;

	ma_detect_settings_defaults(&s);
	ma_detect_settings_apply(&s, PG_GETARG_JSONB_P(0));
	PG_RETURN_VOID();
}
