/*
 * chart_scale.c
 *		Axis ticks: round values ("nice numbers": 1, 2, 2.5, 5 times a power
 *		of ten) and round local times chosen for the span, the way
 *		matplotlib's MaxNLocator and AutoDateLocator do.  Times are Unix
 *		seconds; the caller supplies the viewer's UTC offset so that ticks
 *		fall on local round minutes, hours and midnights.  Pure C.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chart_scale.h"

/*
 * Chooses up to max_ticks round values inside [lo, hi].
 */
void
chart_value_ticks(double lo, double hi, int max_ticks, ChartTicks *out)
{
	static const double mult[] = {1, 2, 2.5, 5, 10};
	double		span = hi - lo;
	double		mag,
				step = 0;
	double		v;
	int			i;

	out->n = 0;
	if (max_ticks < 2)
		max_ticks = 2;
	if (max_ticks > CHART_MAX_TICKS)
		max_ticks = CHART_MAX_TICKS;
	if (!(span > 0) || !isfinite(span))
	{
		out->v[0] = lo;
		out->step = 1;
		out->n = 1;
		chart_format_value(lo, 1, out->label[0], sizeof(out->label[0]));
		return;
	}
	mag = pow(10, floor(log10(span / max_ticks)));
	for (i = 0; i < 5; i++)
	{
		step = mult[i] * mag;
		if (floor(hi / step) - ceil(lo / step) + 1 <= max_ticks)
			break;
	}
	out->step = step;
	for (v = ceil(lo / step); v * step <= hi * (1 + 1e-12) + 1e-300 && out->n < CHART_MAX_TICKS; v += 1)
	{
		double		t = v * step;

		if (fabs(t) < step * 1e-9)
			t = 0;
		out->v[out->n] = t;
		chart_format_value(t, step, out->label[out->n], sizeof(out->label[0]));
		out->n++;
	}
}

/*
 * Formats v with as many decimals as the tick step needs; large magnitudes
 * get a k, M, G or T suffix.
 */
void
chart_format_value(double v, double step, char *buf, size_t len)
{
	static const char *suffix[] = {"", "k", "M", "G", "T"};
	int			k = 0;
	int			decimals;
	double		a = fmax(fabs(v), fabs(step));

	while (a >= 1e6 && k < 4)
	{
		a /= 1000;
		v /= 1000;
		step /= 1000;
		k++;
	}
	decimals = step > 0 ? (int) ceil(-log10(step) - 1e-9) : 0;
	if (decimals < 0)
		decimals = 0;
	if (decimals > 9)
		decimals = 9;
	/* 2.5-type steps need one more decimal than their magnitude */
	if (step > 0 && fabs(step * pow(10, decimals) - round(step * pow(10, decimals))) > 1e-6)
		decimals++;
	snprintf(buf, len, "%.*f%s", decimals, v, suffix[k]);
	if (strcmp(buf, "-0") == 0)
		snprintf(buf, len, "0");
}

/* Splits local time t (Unix seconds) into broken-down fields. */
static void
local_tm(double t, ChartUtcOffsetFn offset, void *arg, struct tm *tm)
{
	time_t		lt = (time_t) floor(t + (offset ? offset(t, arg) : 0));

	gmtime_r(&lt, tm);
}

/* Unix time of the local wall-clock time given as seconds since the epoch. */
static double
from_local(double local, ChartUtcOffsetFn offset, void *arg)
{
	double		guess;

	if (!offset)
		return local;
	guess = local - offset(local, arg);
	return local - offset(guess, arg);
}

/* Formats t in local time with a strftime format. */
void
chart_format_time(double t, const char *fmt, ChartUtcOffsetFn offset,
				  void *arg, char *buf, size_t len)
{
	struct tm	tm;

	local_tm(t, offset, arg, &tm);
	if (strftime(buf, len, fmt, &tm) == 0 && len > 0)
		buf[0] = '\0';
}

typedef struct TimeStep
{
	double		seconds;		/* 0 for calendar months */
	int			months;
	const char *fmt;
} TimeStep;

/*
 * Chooses up to max_ticks round local times inside [t0, t1] and labels them:
 * HH:MM:SS, HH:MM (a midnight shows the date instead), Mon DD, Mon YYYY or
 * YYYY depending on the step.
 */
void
chart_time_ticks(double t0, double t1, int max_ticks,
				 ChartUtcOffsetFn offset, void *arg, ChartTicks *out)
{
	static const TimeStep steps[] = {
		{1, 0, "%H:%M:%S"}, {2, 0, "%H:%M:%S"}, {5, 0, "%H:%M:%S"},
		{10, 0, "%H:%M:%S"}, {15, 0, "%H:%M:%S"}, {30, 0, "%H:%M:%S"},
		{60, 0, "%H:%M"}, {120, 0, "%H:%M"}, {300, 0, "%H:%M"},
		{600, 0, "%H:%M"}, {900, 0, "%H:%M"}, {1800, 0, "%H:%M"},
		{3600, 0, "%H:%M"}, {7200, 0, "%H:%M"}, {10800, 0, "%H:%M"},
		{14400, 0, "%H:%M"}, {21600, 0, "%H:%M"}, {43200, 0, "%H:%M"},
		{86400, 0, "%b %d"}, {172800, 0, "%b %d"}, {604800, 0, "%b %d"},
		{0, 1, "%b %Y"}, {0, 2, "%b %Y"}, {0, 3, "%b %Y"}, {0, 6, "%b %Y"},
		{0, 12, "%Y"}, {0, 24, "%Y"}, {0, 60, "%Y"}, {0, 120, "%Y"},
		{0, 240, "%Y"}, {0, 600, "%Y"}, {0, 1200, "%Y"}
	};
	int			nsteps = sizeof(steps) / sizeof(steps[0]);
	int			si;
	double		span = t1 - t0;
	const TimeStep *st = NULL;

	out->n = 0;
	if (max_ticks < 2)
		max_ticks = 2;
	if (max_ticks > CHART_MAX_TICKS)
		max_ticks = CHART_MAX_TICKS;
	if (!(span > 0))
		return;

	for (si = 0; si < nsteps; si++)
	{
		double		approx = steps[si].seconds > 0 ? steps[si].seconds
			: steps[si].months * 30.44 * 86400;

		st = &steps[si];
		if (span / approx <= max_ticks - 1)
			break;
	}
	out->step = st->seconds > 0 ? st->seconds : st->months * 30.44 * 86400;

	if (st->seconds > 0)
	{
		/* steps divide a day (or are whole weeks): walk local seconds */
		double		step = st->seconds;
		double		local0 = t0 + (offset ? offset(t0, arg) : 0);
		double		l;

		for (l = ceil(local0 / step) * step; out->n < CHART_MAX_TICKS; l += step)
		{
			double		t = from_local(l, offset, arg);
			const char *fmt = st->fmt;
			struct tm	tm;

			if (t > t1 + 1e-6)
				break;
			if (t < t0 - 1e-6)
				continue;
			local_tm(t, offset, arg, &tm);
			if (step < 86400 && tm.tm_hour == 0 && tm.tm_min == 0 &&
				tm.tm_sec == 0 && span > 3 * 3600)
				fmt = "%b %d";
			out->v[out->n] = t;
			chart_format_time(t, fmt, offset, arg, out->label[out->n],
							  sizeof(out->label[0]));
			out->n++;
		}
	}
	else
	{
		/* calendar months: the first of the month, local midnight */
		struct tm	tm;
		int			m;

		local_tm(t0, offset, arg, &tm);
		m = tm.tm_year * 12 + tm.tm_mon;
		m = ((m + st->months - 1) / st->months) * st->months;
		for (; out->n < CHART_MAX_TICKS; m += st->months)
		{
			struct tm	b = {0};
			double		t;

			b.tm_year = m / 12;
			b.tm_mon = m % 12;
			b.tm_mday = 1;
			t = from_local((double) timegm(&b), offset, arg);
			if (t > t1 + 1e-6)
				break;
			if (t < t0 - 1e-6)
				continue;
			out->v[out->n] = t;
			chart_format_time(t, (st->months < 12 && b.tm_mon == 0) ? "%Y" : st->fmt,
							  offset, arg, out->label[out->n],
							  sizeof(out->label[0]));
			out->n++;
		}
	}
}
