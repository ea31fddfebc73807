/*
 * chart_options.h
 *		The jsonb options of the chart aggregates (line_chart, heatmap),
 *		read key by key with one set of checks and error messages.
 */
#ifndef MA_CHART_OPTIONS_H
#define MA_CHART_OPTIONS_H

#include "utils/jsonb.h"

#include "pg_compat.h"

typedef struct MaChartOptions
{
	const char *chart;			/* "line_chart", "heatmap": named in errors */
	JsonbIterator *it;
	char	   *key;			/* the key of the value last read */
} MaChartOptions;

extern bool ma_chart_options_begin(MaChartOptions *o, Jsonb *jb, const char *chart,
								   const char *example);
extern bool ma_chart_options_next(MaChartOptions *o, JsonbValue *v);
extern void ma_chart_option_error(const MaChartOptions *o, const char *expected) pg_attribute_noreturn();
extern void ma_chart_option_unknown(const MaChartOptions *o, const char *valid) pg_attribute_noreturn();
extern char *ma_chart_option_string(const MaChartOptions *o, const JsonbValue *v);
extern double ma_chart_option_number(const MaChartOptions *o, const JsonbValue *v);
extern bool ma_chart_option_size(const MaChartOptions *o, const JsonbValue *v,
								 int *width, int *height);

#endif							/* MA_CHART_OPTIONS_H */
