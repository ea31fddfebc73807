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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "detect.h"
#include "detect_sql.h"
#include "episode.h"
#include "metric_anomaly.h"
#include "pg_compat.h"

PG_FUNCTION_INFO_V1(metric_anomaly_three_sigma);
PG_FUNCTION_INFO_V1(metric_anomaly_check_detection_settings);

/*
 * The evidence is built as a jsonb value directly, not as text parsed by
 * jsonb_in(): parsing was 18% of a steady-state pass over 10,000 seasonal
 * series (perf).  Numbers go through numeric_in() from their shortest
 * decimal text, as jsonb_in() takes them, so the values are the same; a
 * whole number below 2^53 (a count, a median of counts, a number of
 * points), which that text writes exactly, is made by int64_to_numeric()
 * without the text (numeric_in() was 3% of a steady seasonal pass).
 *
 * An object is a JsonbValue whose pairs are put in jsonb's order of keys
 * (shorter first, then bytewise: no key repeats) and converted once by
 * JsonbValueToJsonb(), which gives the bytes pushJsonbValue() gives; that
 * copied every pair into a growing parse state and sorted the keys when
 * the object closed, and building the evidence took 12% of such a pass.
 */
#define JB_MAX_PAIRS	16

typedef struct JbObject
{
	int			n;
	JsonbPair	pairs[JB_MAX_PAIRS];
} JbObject;

/* The value of a new pair of o with this key (a string that outlives o). */
static JsonbValue *
jb_key(JbObject *o, const char *key)
{
	JsonbPair  *p;

	if (o->n == JB_MAX_PAIRS)
		elog(ERROR, "metric_anomaly: evidence object has more than %d keys", JB_MAX_PAIRS);
	p = &o->pairs[o->n];
	p->key.type = jbvString;
	p->key.val.string.val = (char *) key;
	p->key.val.string.len = strlen(key);
	p->order = o->n++;
	return &p->value;
}

/* Whether key a comes before key b in jsonb's order. */
static inline bool
jb_key_before(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len < b->val.string.len;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len) < 0;
}

/*
 * Sets v to the object o (whose pairs it uses), its keys in jsonb's order:
 * by insertion, as a qsort() of so few pairs took 2.5% of a steady pass
 * over 10,000 seasonal series (perf).
 */
static void
jb_object(JbObject *o, JsonbValue *v)
{
	for (int i = 1; i < o->n; i++)
	{
		JsonbPair	p = o->pairs[i];
		int			j = i;

		for (; j > 0 && jb_key_before(&p.key, &o->pairs[j - 1].key); j--)
			o->pairs[j] = o->pairs[j - 1];
		o->pairs[j] = p;
	}
	v->type = jbvObject;
	v->val.object.nPairs = o->n;
	v->val.object.pairs = o->pairs;
}

static Jsonb *
jb_finish(JbObject *o)
{
	JsonbValue	v;

	jb_object(o, &v);
	return JsonbValueToJsonb(&v);
}

static void
jb_int(JbObject *o, const char *key, int64 i)
{
	JsonbValue *v = jb_key(o, key);

	v->type = jbvNumeric;
	v->val.numeric = int64_to_numeric(i);
}

/* A finite number, or null (NaN and infinity are not JSON). */
static void
jb_number(JbObject *o, const char *key, double d)
{
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (!isfinite(d))
		jb_key(o, key)->type = jbvNull;
	else if (fabs(d) < 9007199254740992.0 && d == floor(d))
		jb_int(o, key, (int64) d);
	else
	{
		JsonbValue *v = jb_key(o, key);

		double_to_shortest_decimal_buf(d, num);
		v->type = jbvNumeric;
		v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
															 CStringGetDatum(num),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
	}
}

static void
jb_bool(JbObject *o, const char *key, bool b)
{
	JsonbValue *v = jb_key(o, key);

	v->type = jbvBool;
	v->val.boolean = b;
}

/* A string, or null when NULL. */
static void
jb_string(JbObject *o, const char *key, const char *str)
{
	JsonbValue *v = jb_key(o, key);

	if (str == NULL)
		v->type = jbvNull;
	else
	{
		v->type = jbvString;
		v->val.string.val = (char *) str;
		v->val.string.len = strlen(str);
	}
}

/*
 * Returns the evidence of an evaluation: method, value, mean, std_dev,
 * upper_boundary, lower_boundary, z_score (null for a flat history), sigma,
 * window (points of history used), direction, flat and is_anomaly.
 */
Jsonb *
ma_three_sigma_context(const MaThreeSigma *r)
{
	JbObject	o = {0};

	jb_string(&o, "method", "3-sigma");
	jb_number(&o, "value", r->value);
	jb_number(&o, "mean", r->mean);
	jb_number(&o, "std_dev", r->std_dev);
	jb_number(&o, "upper_boundary", r->upper);
	jb_number(&o, "lower_boundary", r->lower);
	jb_number(&o, "z_score", r->z_score);
	jb_number(&o, "sigma", r->sigma);
	jb_int(&o, "window", r->n);
	jb_string(&o, "direction", ma_direction_name(r->direction));
	jb_bool(&o, "flat", r->flat);
	jb_bool(&o, "is_anomaly", r->is_anomaly);
	return jb_finish(&o);
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
append_baseline(JbObject *baselines, JbObject *o, const MaRobust *r, int b)
{
	const MaBaseline *bl = &r->b[b];

	if (!bl->used)
		return;
	jb_int(o, "n", bl->n);
	if (b != MA_BASELINE_RECENT)
		jb_int(o, "seasons", bl->seasons);
	jb_number(o, "median", bl->median);
	if (b == MA_BASELINE_RECENT)
		jb_number(o, "slope", bl->slope);
	jb_number(o, "scale", bl->scale);
	jb_number(o, "score", bl->score);
	jb_number(o, "shift_score", bl->shift);
	jb_object(o, jb_key(baselines, ma_baseline_name(b)));
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
	JbObject	o = {0};
	JbObject	baselines = {0};
	JbObject	bl[MA_BASELINES] = {{0}};

	jb_string(&o, "method", "robust");
	jb_number(&o, "value", r->value);
	jb_number(&o, "expected", r->expected);
	jb_number(&o, "upper_boundary", r->upper);
	jb_number(&o, "lower_boundary", r->lower);
	jb_number(&o, "score", r->score);
	jb_number(&o, "sensitivity", r->sensitivity);
	jb_string(&o, "direction", ma_direction_name(r->direction));
	jb_bool(&o, "counts", r->counts);
	jb_string(&o, "judged_by", ma_baseline_name(r->judge));
	for (int b = 0; b < MA_BASELINES; b++)
		append_baseline(&baselines, &bl[b], r, b);
	jb_object(&baselines, jb_key(&o, "baselines"));
	jb_bool(&o, "outside_band", r->outside_band);
	jb_bool(&o, "shifted", r->shifted);
	jb_int(&o, "repeats", r->repeats);
	jb_string(&o, "test", r->test);
	jb_bool(&o, "is_anomaly", r->is_anomaly);
	return jb_finish(&o);
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
