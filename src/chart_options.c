/*
 * chart_options.c
 *		The jsonb options of the chart aggregates, read key by key:
 *
 *			MaChartOptions o;
 *			JsonbValue v;
 *
 *			if (ma_chart_options_begin(&o, jb, "heatmap", example))
 *				while (ma_chart_options_next(&o, &v))
 *					... o.key, v ...
 *
 * Every chart says the same things about bad options: an options value that
 * is not an object, a value of the wrong type, a size outside the canvas
 * limits and an unknown key are errors naming the chart and the key.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "chart.h"
#include "chart_options.h"

/*
 * Starts reading jb; false when there are no options (NULL).  example is a
 * valid options object for the hint of the error a non-object gets.
 */
bool
ma_chart_options_begin(MaChartOptions *o, Jsonb *jb, const char *chart, const char *example)
{
	o->chart = chart;
	o->it = NULL;
	o->key = NULL;
	if (jb == NULL)
		return false;
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s options must be a JSON object", chart),
				 errhint("Pass for example '%s'.", example)));
	o->it = JsonbIteratorInit(&jb->root);
	return true;
}

/* The next value, its key in o->key; false at the end. */
bool
ma_chart_options_next(MaChartOptions *o, JsonbValue *v)
{
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&o->it, v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			o->key = pnstrdup(v->val.string.val, v->val.string.len);
		else if (tok == WJB_VALUE)
			return true;
	}
	return false;
}

/* The value of o->key is not what it must be (expected: "a string"). */
void
ma_chart_option_error(const MaChartOptions *o, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s option \"%s\"", o->chart, o->key),
			 errdetail("The option \"%s\" must be %s.", o->key, expected)));
}

/* o->key is no option of the chart; valid lists them in a sentence. */
void
ma_chart_option_unknown(const MaChartOptions *o, const char *valid)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown %s option \"%s\"", o->chart, o->key),
			 errhint("Valid options are %s.", valid)));
}

char *
ma_chart_option_string(const MaChartOptions *o, const JsonbValue *v)
{
	if (v->type != jbvString)
		ma_chart_option_error(o, "a string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

double
ma_chart_option_number(const MaChartOptions *o, const JsonbValue *v)
{
	if (v->type != jbvNumeric)
		ma_chart_option_error(o, "a number");
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											  NumericGetDatum(v->val.numeric)));
}

/*
 * When o->key is "width" or "height": checks the value (whole pixels within
 * the canvas limits), stores it and returns true.  Otherwise false.
 */
bool
ma_chart_option_size(const MaChartOptions *o, const JsonbValue *v, int *width, int *height)
{
	bool		is_width = strcmp(o->key, "width") == 0;
	double		d;

	if (!is_width && strcmp(o->key, "height") != 0)
		return false;
	d = ma_chart_option_number(o, v);
	if (d != floor(d) || d < CHART_MIN_SIZE || d > CHART_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chart %s must be between %d and %d pixels", o->key,
						CHART_MIN_SIZE, CHART_MAX_SIZE),
				 errdetail("The %s given was %g.", o->key, d)));
	if (is_width)
		*width = (int) d;
	else
		*height = (int) d;
	return true;
}
