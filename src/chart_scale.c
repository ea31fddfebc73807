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
 * Decimals that print every multiple of step exactly: 1 for 0.5, 2 for
 * 0.25 (a 2.5 step needs one more than its magnitude), 0 for steps >= 1.
 */
static int
step_decimals(double step)
{
	int			d;
	double		scaled;

	if (!(step > 0) || !isfinite(step))
		return 0;
	d = (int) ceil(-log10(step) - 1e-9);
	if (d < 0)
		d = 0;
	if (d > 15)
		d = 15;
	scaled = step * pow(10, d);
	if (d < 15 && fabs(scaled - round(scaled)) > 1e-6 * scaled)
		d++;
	return d;
}

/* v times 10^e, in two steps so that neither overflows nor underflows. */
static double
scale10(double v, int e)
{
	int			half = e / 2;

	return v * pow(10, half) * pow(10, e - half);
}

/* Writes |v| with d decimals and thousands separators: "1,234,567.5". */
static void
format_grouped(double v, int d, char *buf, size_t len)
{
	char		plain[64];
	char	   *dot;
	int			intlen,
				i,
				o = 0;

	snprintf(plain, sizeof(plain), "%.*f", d, v);
	dot = strchr(plain, '.');
	intlen = dot ? (int) (dot - plain) : (int) strlen(plain);
	for (i = 0; plain[i] && o < (int) len - 1; i++)
	{
		int			left = intlen - i;	/* digits left of the point */

		if (i < intlen && i > 0 && plain[i - 1] != '-' && left % 3 == 0 &&
			o < (int) len - 2)
			buf[o++] = ',';
		buf[o++] = plain[i];
	}
	buf[o] = '\0';
}

/*
 * Formats v in the axis format f; "0" for zero whatever the format, so the
 * origin reads plainly.
 */
static void
format_in(const ChartValueFormat *f, double v, char *buf, size_t len)
{
	static const char *si[] = {"", "k", "M", "G", "T"};

	v -= f->offset;
	if (v == 0 || fabs(v) < f->step * 1e-6)
	{
		snprintf(buf, len, "0");
		return;
	}
	switch (f->kind)
	{
		case CHART_FORMAT_PLAIN:
			snprintf(buf, len, "%.*f", f->decimals, v);
			break;
		case CHART_FORMAT_GROUPED:
			format_grouped(v, f->decimals, buf, len);
			break;
		case CHART_FORMAT_SI:
			snprintf(buf, len, "%.*f%s", f->decimals,
					 scale10(v, -3 * f->exponent), si[f->exponent]);
			break;
		case CHART_FORMAT_SCI:
			snprintf(buf, len, "%.*fe%d", f->decimals,
					 scale10(v, -f->exponent), f->exponent);
			break;
	}
}

/*
 * Chooses the format of an axis whose ticks are multiples of step of at
 * most amax in magnitude (offset already subtracted):
 *	plain			below 10,000, at most 5 decimals: "0.25", "9500"
 *	grouped			below 10^15 when no SI suffix fits: "12,500", "1,234,562"
 *	SI				10^6 to 10^15 when 2 decimals suffice: "0.2M" .. "1.2M"
 *	scientific		beyond 10^15, or finer steps than 10^-5, with one
 *					exponent for the axis: "1.5e-300", "2.0e-300"
 */
static void
choose_format(double amax, double step, ChartValueFormat *f)
{
	int			e = amax > 0 ? (int) floor(log10(amax) + 1e-12) : 0;
	int			d = step_decimals(step);

	f->step = step;
	if (amax == 0)
	{
		f->kind = CHART_FORMAT_PLAIN;
		f->decimals = 0;
	}
	else if (e >= 15 || d > 5)
	{
		f->kind = CHART_FORMAT_SCI;
		f->exponent = e;
		f->decimals = step_decimals(scale10(step, -e));
	}
	else if (e >= 6 && step_decimals(scale10(step, -3 * (e / 3))) <= 2)
	{
		f->kind = CHART_FORMAT_SI;
		f->exponent = e / 3;
		f->decimals = step_decimals(scale10(step, -3 * (e / 3)));
	}
	else if (e >= 4)
	{
		f->kind = CHART_FORMAT_GROUPED;
		f->decimals = d;
	}
	else
	{
		f->kind = CHART_FORMAT_PLAIN;
		f->decimals = d;
	}
}

/*
 * Writes the shared offset off, exact to the power of ten unit it is a
 * multiple of, shortest form: "+1e9", "-2.5e12", "+1000".
 */
static void
format_offset(double off, double unit, char *buf, size_t len)
{
	int			e = (int) floor(log10(fabs(off)) + 1e-12);
	int			d = (int) floor(log10(fabs(off)) + 1e-12) -
		(int) floor(log10(unit) + 1e-12);
	char		m[48];
	int			n;

	if (d < 0)
		d = 0;
	if (d > 16)
		d = 16;
	snprintf(m, sizeof(m), "%.*f", d, scale10(fabs(off), -e));
	/* shortest mantissa: drop trailing zeros and a bare point */
	n = (int) strlen(m);
	while (n > 1 && strchr(m, '.') && (m[n - 1] == '0' || m[n - 1] == '.'))
	{
		bool		dot = m[n - 1] == '.';

		m[--n] = '\0';
		if (dot)
			break;
	}
	if (e >= 0 && e < 4 && unit >= 1)
		snprintf(buf, len, "%s%.0f", off < 0 ? "-" : "+", fabs(off));
	else
		snprintf(buf, len, "%s%se%d", off < 0 ? "-" : "+", m, e);
}

/*
 * Chooses the one label format of an axis with the given ticks (see
 * choose_format).  When the ticks differ in less than their sixth
 * significant digit (1e9 .. 1e9 + 1), labels show the difference from a
 * shared round offset instead, written once in offset_label ("+1e9"), the
 * way matplotlib's ScalarFormatter does.
 */
void
chart_value_format(const double *v, int n, double step, ChartValueFormat *f,
				   char *offset_label, size_t len)
{
	double		amax = 0;
	int			i;

	memset(f, 0, sizeof(*f));
	if (offset_label && len)
		offset_label[0] = '\0';
	for (i = 0; i < n; i++)
		amax = fmax(amax, fabs(v[i]));
	if (n >= 2 && step > 0 && amax / step >= 1e6 && offset_label)
	{
		/*
		 * The roundest offset (the largest power of ten unit) that still
		 * leaves residuals of fewer than five digits of step: 1e9 rather
		 * than 999999999.9 for ticks around a billion.
		 */
		double		unit = pow(10, ceil(log10(v[n - 1] - v[0] + step)));
		double		best = 0,
					best_unit = 0;

		for (; isfinite(unit) && unit <= amax * 10; unit *= 10)
		{
			double		off = round(v[0] / unit) * unit;
			double		r = 0;

			for (i = 0; i < n; i++)
				r = fmax(r, fabs(v[i] - off));
			if (off == 0 || r / step >= 1e5)
				continue;
			best = off;
			best_unit = unit;
		}
		if (best != 0)
		{
			amax = 0;
			for (i = 0; i < n; i++)
				amax = fmax(amax, fabs(v[i] - best));
			choose_format(amax, step, f);
			f->offset = best;
			format_offset(best, best_unit, offset_label, len);
			return;
		}
	}
	choose_format(amax, step, f);
}

/*
 * Chooses up to max_ticks round values inside [lo, hi] and labels them in
 * one format for the axis (chart_value_format).  Any finite range works,
 * from 1e-300 to 1e300: the span is computed from halves so that it cannot
 * overflow.
 */
void
chart_value_ticks(double lo, double hi, int max_ticks, ChartTicks *out)
{
	static const double mult[] = {1, 2, 2.5, 5, 10};
	double		half_span = hi / 2 - lo / 2;
	double		mag,
				step = 0;
	double		k;
	int			i;
	ChartValueFormat f;

	out->n = 0;
	out->offset_label[0] = '\0';
	if (max_ticks < 2)
		max_ticks = 2;
	if (max_ticks > CHART_MAX_TICKS)
		max_ticks = CHART_MAX_TICKS;
	if (!(half_span > 0) || !isfinite(half_span))
	{
		out->v[0] = lo;
		out->step = fabs(lo) > 0 ? fabs(lo) : 1;
		out->n = 1;
		chart_value_format(out->v, 1, out->step, &f, NULL, 0);
		format_in(&f, lo, out->label[0], sizeof(out->label[0]));
		return;
	}
	/*
	 * Steps of at least a thousand units in the last place of the ends, so
	 * that float noise in k * step stays far below the labels' precision.
	 */
	mag = pow(10, floor(log10(fmax(half_span / max_ticks * 2,
								   fmax(fabs(lo), fabs(hi)) * 2.2e-13))));
	for (i = 0; i < 5; i++)
	{
		step = mult[i] * mag;
		if (floor(hi / step) - ceil(lo / step) + 1 <= max_ticks)
			break;
	}
	out->step = step;
	for (k = ceil(lo / step); out->n < CHART_MAX_TICKS; k += 1)
	{
		double		t = k * step;

		if (!isfinite(t) || (t > hi && t - hi > step * 1e-9))
			break;
		if (fabs(t) < step * 1e-9)
			t = 0;
		out->v[out->n++] = t;
	}
	chart_value_format(out->v, out->n, step, &f, out->offset_label,
					   sizeof(out->offset_label));
	for (i = 0; i < out->n; i++)
		format_in(&f, out->v[i], out->label[i], sizeof(out->label[0]));
}

/*
 * Formats one value v for a tick step (a single label, e.g. a tooltip):
 * the format chart_value_ticks would choose for an axis with v on it.
 */
void
chart_format_value(double v, double step, char *buf, size_t len)
{
	ChartValueFormat f;

	chart_value_format(&v, 1, step, &f, NULL, 0);
	format_in(&f, v, buf, len);
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
	int			frac;			/* decimals of the second shown */
} TimeStep;

/*
 * Formats t in local time with fmt followed by frac decimals of the
 * second ("12:00:00.250"); the time is rounded to those decimals first, so
 * 0.1 s steps do not print as .099.
 */
static void
format_time_frac(double t, const char *fmt, int frac, ChartUtcOffsetFn offset,
				 void *arg, char *buf, size_t len)
{
	double		unit = pow(10, frac);
	double		local = t + (offset ? offset(t, arg) : 0);
	double		ticks = round(local * unit);
	time_t		sec = (time_t) floor(ticks / unit);
	long		part = (long) (ticks - (double) sec * unit);
	struct tm	tm;
	size_t		n;

	gmtime_r(&sec, &tm);
	n = strftime(buf, len, fmt, &tm);
	if (n == 0 && len > 0)
		buf[0] = '\0';
	else
		snprintf(buf + n, len - n, ".%0*ld", frac, part);
}

/*
 * Chooses up to max_ticks round local times inside [t0, t1] and labels them:
 * HH:MM:SS.fffff (steps from 10 microseconds, the finest that Unix seconds
 * in a double resolve today, to half a second), HH:MM:SS, HH:MM (a
 * midnight shows the date instead), Mon DD, Mon YYYY or YYYY depending on
 * the step, up to a century.
 */
void
chart_time_ticks(double t0, double t1, int max_ticks,
				 ChartUtcOffsetFn offset, void *arg, ChartTicks *out)
{
	static const TimeStep steps[] = {
		{1e-5, 0, "%H:%M:%S", 5}, {2e-5, 0, "%H:%M:%S", 5},
		{5e-5, 0, "%H:%M:%S", 5}, {1e-4, 0, "%H:%M:%S", 4},
		{2e-4, 0, "%H:%M:%S", 4}, {5e-4, 0, "%H:%M:%S", 4},
		{0.001, 0, "%H:%M:%S", 3}, {0.002, 0, "%H:%M:%S", 3},
		{0.005, 0, "%H:%M:%S", 3}, {0.01, 0, "%H:%M:%S", 2},
		{0.02, 0, "%H:%M:%S", 2}, {0.05, 0, "%H:%M:%S", 2},
		{0.1, 0, "%H:%M:%S", 1}, {0.2, 0, "%H:%M:%S", 1},
		{0.5, 0, "%H:%M:%S", 1},
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
		double		k;

		/* k * step, not a running sum: 0.1 s steps would drift */
		for (k = ceil(local0 / step); out->n < CHART_MAX_TICKS; k += 1)
		{
			double		t = from_local(k * step, offset, arg);
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
			if (st->frac > 0)
				format_time_frac(t, fmt, st->frac, offset, arg,
								 out->label[out->n], sizeof(out->label[0]));
			else
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
