/*
 * chart_scale.h
 *		Axis ticks for charts: round numbers for values, round local times
 *		(seconds, minutes, hours, days, months, years) for time axes.
 *		Pure C, see chart.h.
 */
#ifndef MA_CHART_SCALE_H
#define MA_CHART_SCALE_H

#include <stdbool.h>
#include <stddef.h>

#define CHART_MAX_TICKS	64

typedef struct ChartTicks
{
	int			n;
	double		v[CHART_MAX_TICKS];
	char		label[CHART_MAX_TICKS][32];
	double		step;
	char		offset_label[48];	/* "+1e9" when labels are differences
									 * from it; "" otherwise */
} ChartTicks;

/* How an axis writes its values: one kind for all its labels. */
typedef enum ChartFormatKind
{
	CHART_FORMAT_PLAIN,			/* 0.25, 9500 */
	CHART_FORMAT_GROUPED,		/* 12,500 */
	CHART_FORMAT_SI,			/* 1.2M (exponent: 1 k, 2 M, 3 G, 4 T) */
	CHART_FORMAT_SCI			/* 1.5e-300 (exponent: the power of ten) */
} ChartFormatKind;

typedef struct ChartValueFormat
{
	ChartFormatKind kind;
	int			decimals;
	int			exponent;
	double		offset;			/* subtracted before formatting */
	double		step;
} ChartValueFormat;

/*
 * Seconds east of UTC in the viewer's time zone at Unix time t (seconds);
 * the zone's abbreviation goes to abbrev when that is not NULL.
 */
typedef int (*ChartUtcOffsetFn) (double t, void *arg);

extern void chart_value_ticks(double lo, double hi, int max_ticks,
							  ChartTicks *out);
extern void chart_format_value(double v, double step, char *buf, size_t len);
extern void chart_value_format(const double *v, int n, double step,
							   ChartValueFormat *f, char *offset_label,
							   size_t len);
extern void chart_time_ticks(double t0, double t1, int max_ticks,
							 ChartUtcOffsetFn offset, void *arg,
							 ChartTicks *out);
extern void chart_format_time(double t, const char *fmt,
							  ChartUtcOffsetFn offset, void *arg,
							  char *buf, size_t len);

#endif							/* MA_CHART_SCALE_H */
