/*
 * detect_robust.c
 *		The robust method, the default: pure statistics, no SPI.
 *
 * A point is judged by up to three baselines, each a level and a robust
 * sigma (1.4826 * MAD) of its values:
 *
 *	- recent: the previous window points (at least min_points of them),
 *	  fitted with a resistant line (baseline_fit) so that the level follows
 *	  a trend or a daily cycle: a median over 360 points lags a cycle by
 *	  half its window (on the demo's day replayed at 24 phases and seeds, a
 *	  300-point median gave 16 false alerts on normal series, the line
 *	  none), and the line over 360 points took NAB from 48.29 to 51.36
 *	  standard and 14.2 to 9.4 false flags per 10,000 (README);
 *	- daily and weekly: lag samples at the same time of day (of week) in
 *	  each of the last MA_SEASONS_BACK seasons, MA_SEASON_HALF samples
 *	  MA_SEASON_STEP_S apart either side; used once at least
 *	  MA_SEASON_MIN_SEASONS seasons have a sample.  Until then the point is
 *	  judged by the baselines it has: the fallback is the recent baseline.
 *
 * The point is anomalous when EVERY baseline used puts it outside its band
 * level +- sensitivity * scale, on the same watched side: a level a
 * seasonal baseline expects at this hour is not flagged because the last
 * hours were lower, and a new level that has lasted half a window is not
 * flagged because the same hour last week was different.
 *
 * The sustained-shift test also flags a point: when, for every baseline
 * used, the last MA_SHIFT_POINTS points (this one and the ones before it
 * in the recent window) all lie on the same watched side, each beyond
 * sensitivity / sqrt(MA_SHIFT_POINTS) scales.  Its score is sqrt(k) times
 * the smallest |score| of the k, the smallest and not the mean so that one
 * spike does not pass for a shift.  A deviation too shallow for any single
 * minute is news once it lasts: the demo's collapse to 30 % at the trough
 * of its daily cycle sits about 4.4 Poisson sigmas down each minute (the
 * point test at 6 missed it on 15 of 24 phases and seeds of the demo's
 * day), and about -9.8 as a shift (caught on all 24).  On NAB it cost
 * 48.88 -> 48.29 standard (README).  The novelty guard then compares with
 * the least extreme point of the run.
 *
 * score = (value - level) / scale of the nearest baseline (the one of
 * smallest |score|), so |score| > sensitivity exactly when the point is
 * anomalous (on a watched side); expected, lower and upper are that
 * baseline's.
 *
 * The novelty guard: a point outside every band is still normal when the
 * recent window's residuals from its line, less the newest
 * MA_NOVELTY_SKIP points, hold MA_NOVELTY_REPEATS or more separate
 * excursions (runs of consecutive points) at least as far on the same
 * side: what the series has done
 * twice within the window (an idle machine's recurring bursts) is its
 * behaviour, however far from the median.  One earlier incident does not
 * count as behaviour, so a second collapse within the window is flagged;
 * an incident lasting up to MA_NOVELTY_SKIP points is compared with the
 * points before it and stays anomalous throughout.  On NAB this cut the
 * false alerts by about two thirds (README).
 *
 * The contamination guard is the median: an anomaly shifts neither the
 * median nor the MAD by more than one rank, whatever its size (nor the
 * line's slope by more than a rank of the last third's median), so a
 * collapse does not widen the band that judges the minutes after it (mean
 * and standard deviation of the 3-sigma rule let a 10-minute collapse widen
 * the demo's band fourfold for three hours).  A new level takes over once
 * it holds half the window.
 *
 * Floors of the scale:
 *	- counts (every recent value a non-negative integer): the Poisson
 *	  deviation sqrt(max(level, 1)), so a series of 0 to 5 events a minute
 *	  is not flagged at every blip, while 40 a minute falling to 0 still is;
 *	- MAD 0 (more than half the values equal): 1.2533 * the mean absolute
 *	  deviation from the median (the normal-consistent constant);
 *	- always MA_REL_FLOOR * |median| and a rounding tolerance, so that a
 *	  flat series does not flag a change in the ninth digit.
 */
#include "postgres.h"

#include <math.h>

#include "detect.h"
#include "order_stat.h"

#define MAD_TO_SIGMA	1.4826
#define MEANDEV_TO_SIGMA 1.2533
#define MA_REL_FLOOR	0.01
#define FLAT_TOLERANCE	1e-9
#define SEASON_MIN_VALUES 5

static bool
all_counts(const double *v, int n)
{
	for (int i = 0; i < n; i++)
		if (v[i] < 0 || v[i] != floor(v[i]) || v[i] > 1e15)
			return false;
	return n > 0;
}

/*
 * The level and floored robust sigma of values[0..n-1] into b.  Without
 * trend: their median, and 1.4826 * the MAD.  With trend (the recent
 * baseline, values in time order at positions 0..n-1): Tukey's resistant
 * line, projected to position n, the point judged:
 *	slope = (median of the last third - median of the first third)
 *			/ (n - third), the distance between the thirds' centres;
 *	level = median of values[i] + slope * (n - i);
 *	scale = 1.4826 * the MAD of the residuals from that line.
 * Each third's median ignores up to half of that third, so a collapse in
 * the last minutes tilts the line by a rank or so, as it moves a median;
 * the median without trend is the same fit with slope 0.  Fewer than
 * MA_TREND_MIN_POINTS values get no slope.
 */
static void
baseline_fit(const double *values, int n, bool trend, bool counts,
			 MaBaseline *b)
{
	double	   *w = palloc(sizeof(double) * n);
	double		slope = 0.0;
	double		m;
	double		dev = 0.0;
	double		scale;

	if (trend && n >= MA_TREND_MIN_POINTS)
	{
		int			third = n / 3;
		double		first;

		memcpy(w, values, sizeof(double) * third);
		first = ma_median(w, third);
		memcpy(w, values + n - third, sizeof(double) * third);
		slope = (ma_median(w, third) - first) / (double) (n - third);
	}
	for (int i = 0; i < n; i++)
		w[i] = values[i] + slope * (n - i);
	m = ma_median(w, n);
	for (int i = 0; i < n; i++)
	{
		w[i] = fabs(values[i] + slope * (n - i) - m);
		dev += w[i];
	}
	scale = MAD_TO_SIGMA * ma_median(w, n);
	if (scale == 0.0)
		scale = MEANDEV_TO_SIGMA * dev / n;
	if (counts)
		scale = Max(scale, sqrt(Max(m, 1.0)));
	scale = Max(scale, MA_REL_FLOOR * fabs(m));
	scale = Max(scale, FLAT_TOLERANCE * Max(1.0, fabs(m)));
	pfree(w);

	b->used = true;
	b->n = n;
	b->median = m;
	b->slope = slope;
	b->scale = scale;
}

/*
 * Residuals of recent[0..n-1] from baseline b (the value expected at
 * position i is median - slope * (n - i)) into out.
 */
static void
residuals(const MaBaseline *b, const double *recent, int n, double *out)
{
	for (int i = 0; i < n; i++)
		out[i] = recent[i] + b->slope * (n - i) - b->median;
}

/*
 * Runs of consecutive values among v[0..n-1] at or beyond value: at or
 * above it when up, at or below it otherwise.
 */
static int
count_excursions(const double *v, int n, double value, bool up)
{
	int			runs = 0;
	bool		in_run = false;

	for (int i = 0; i < n; i++)
	{
		bool		beyond = up ? v[i] >= value : v[i] <= value;

		if (beyond && !in_run)
			runs++;
		in_run = beyond;
	}
	return runs;
}

/*
 * The sustained-shift score of baseline b for value and the points before
 * it: sqrt(MA_SHIFT_POINTS) times the smallest |score| of the last
 * MA_SHIFT_POINTS points, signed, when they all lie on the same side of
 * the baseline (its line, for the recent one); 0 otherwise or with fewer
 * points.  Taking the smallest, not the mean, keeps one spike from passing
 * for a shift.  *nearest is the residual of that smallest |score|, for the
 * novelty guard.
 */
static double
shift_score(const MaBaseline *b, const double *recent, int nrecent,
			double value, double *nearest)
{
	double		lo = b->score;
	double		sign = b->score > 0 ? 1.0 : -1.0;

	*nearest = value - b->median;
	if (nrecent < MA_SHIFT_POINTS - 1 || b->score == 0.0)
		return 0.0;
	for (int i = nrecent - (MA_SHIFT_POINTS - 1); i < nrecent; i++)
	{
		double		res = recent[i] + b->slope * (nrecent - i) - b->median;
		double		sc = res / b->scale;

		if (sc * sign <= 0.0)
			return 0.0;
		if (fabs(sc) < fabs(lo))
		{
			lo = sc;
			*nearest = res;
		}
	}
	return sqrt((double) MA_SHIFT_POINTS) * lo;
}

/*
 * Judges value (finite) by the baselines in; returns false, with r->b[*]
 * unused, when not even the recent baseline has enough history.
 */
bool
ma_robust(const MaRobustInput *in, double value, MaRobust *r)
{
	bool		above = true;
	bool		below = true;
	bool		shift_up = true;
	bool		shift_down = true;
	double		nearest = 0.0;
	double		other;
	double		k = in->sensitivity;
	double	   *resid;

	memset(r, 0, sizeof(*r));
	r->value = value;
	r->sensitivity = k;
	r->direction = in->direction;
	if (in->nrecent < Max(1, in->min_points))
		return false;

	r->counts = all_counts(in->recent, in->nrecent);
	baseline_fit(in->recent, in->nrecent, true, r->counts,
				 &r->b[MA_BASELINE_RECENT]);
	for (int s = MA_BASELINE_DAILY; s < MA_BASELINES; s++)
	{
		r->b[s].seasons = in->seasons[s];
		if (in->seasons[s] >= MA_SEASON_MIN_SEASONS &&
			in->nseasonal[s] >= SEASON_MIN_VALUES)
			baseline_fit(in->seasonal[s], in->nseasonal[s], false, r->counts,
						 &r->b[s]);
	}

	r->judge = MA_BASELINE_RECENT;
	for (int s = 0; s < MA_BASELINES; s++)
	{
		MaBaseline *b = &r->b[s];

		if (!b->used)
			continue;
		b->lower = b->median - k * b->scale;
		b->upper = b->median + k * b->scale;
		b->score = (value - b->median) / b->scale;
		above = above && b->score > k;
		below = below && b->score < -k;
		/* the guard compares a run with its least extreme point (recent's) */
		b->shift = shift_score(b, in->recent, in->nrecent, value,
							   s == MA_BASELINE_RECENT ? &nearest : &other);
		shift_up = shift_up && b->shift > k;
		shift_down = shift_down && b->shift < -k;
		if (fabs(b->score) < fabs(r->b[r->judge].score))
			r->judge = s;
	}
	r->outside_band = above || below;
	r->shifted = shift_up || shift_down;
	/* the guard compares residuals from the recent line */
	resid = palloc(sizeof(double) * in->nrecent);
	residuals(&r->b[MA_BASELINE_RECENT], in->recent, in->nrecent, resid);
	if (above || below)
	{
		r->repeats = count_excursions(resid, in->nrecent - MA_NOVELTY_SKIP,
									  value - r->b[MA_BASELINE_RECENT].median,
									  above);
		if (r->repeats >= MA_NOVELTY_REPEATS)
			above = below = false;
	}
	if ((shift_up || shift_down) && !above && !below)
	{
		r->repeats = count_excursions(resid, in->nrecent - MA_NOVELTY_SKIP,
									  nearest, shift_up);
		if (r->repeats >= MA_NOVELTY_REPEATS)
			shift_up = shift_down = false;
	}
	pfree(resid);
	r->expected = r->b[r->judge].median;
	r->lower = r->b[r->judge].lower;
	r->upper = r->b[r->judge].upper;
	r->score = r->b[r->judge].score;
	r->shift_score = r->b[r->judge].shift;
	r->is_anomaly = (above && in->direction != MA_DIRECTION_DOWN) ||
		(below && in->direction != MA_DIRECTION_UP);
	if (r->is_anomaly)
		r->test = "point";
	else if ((shift_up && in->direction != MA_DIRECTION_DOWN) ||
			 (shift_down && in->direction != MA_DIRECTION_UP))
	{
		r->is_anomaly = true;
		r->test = "shift";
	}
	return true;
}

const char *
ma_baseline_name(int b)
{
	switch (b)
	{
		case MA_BASELINE_DAILY:
			return "daily";
		case MA_BASELINE_WEEKLY:
			return "weekly";
	}
	return "recent";
}

/*
 * The last point at or before `at` among ts[0..n-1] (sorted ascending),
 * or -1.
 */
static int
last_at_or_before(const TimestampTz *ts, int n, TimestampTz at)
{
	int			lo = 0;
	int			hi = n;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (ts[mid] <= at)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

/* qsort() order of TimestampTz values (or of records that begin with one). */
int
ma_cmp_time(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return x < y ? -1 : x > y;
}

/*
 * Puts the points ts/values[0..n-1] in time order, each time once (points
 * of equal time have equal values: rows read twice); returns how many are
 * left.  Points already in order cost one walk.
 */
int
ma_season_sort(TimestampTz *ts, double *values, int n)
{
	TimestampTz *pairs;
	int			m = 0;
	int			i;

	for (i = 1; i < n; i++)
		if (ts[i] <= ts[i - 1])
			break;
	if (i >= n)
		return n;

	pairs = palloc(sizeof(TimestampTz) * 2 * n);
	for (i = 0; i < n; i++)
	{
		pairs[2 * i] = ts[i];
		memcpy(&pairs[2 * i + 1], &values[i], sizeof(double));
	}
	qsort(pairs, n, 2 * sizeof(TimestampTz), ma_cmp_time);
	for (i = 0; i < n; i++)
	{
		if (m > 0 && ts[m - 1] == pairs[2 * i])
			continue;
		ts[m] = pairs[2 * i];
		memcpy(&values[m], &pairs[2 * i + 1], sizeof(double));
		m++;
	}
	pfree(pairs);
	return m;
}

/*
 * Collects into out (MA_SEASON_SAMPLES long) the lag samples of time t for
 * a season of period_s seconds from a stream sorted by time: for each of
 * the last MA_SEASONS_BACK seasons and each lag t - k * period + j * step
 * (|j| <= MA_SEASON_HALF), the last point at or before the lag, if it lies
 * within one step of it.  Returns the number of samples; *seasons is the
 * number of seasons with at least one.  At one point a minute every lag is
 * a stored minute, which is what the worker reads.
 */
int
ma_season_gather(const TimestampTz *ts, const double *values, int n,
				 TimestampTz t, int period_s, double *out, int *seasons)
{
	int64		step = (int64) MA_SEASON_STEP_S * USECS_PER_SEC;
	int			nout = 0;

	*seasons = 0;
	for (int k = 1; k <= MA_SEASONS_BACK; k++)
	{
		bool		any = false;

		for (int j = -MA_SEASON_HALF; j <= MA_SEASON_HALF; j++)
		{
			TimestampTz lag = t - (int64) k * period_s * USECS_PER_SEC + j * step;
			int			i = last_at_or_before(ts, n, lag);

			if (i >= 0 && lag - ts[i] < step && ts[i] < t)
			{
				out[nout++] = values[i];
				any = true;
			}
		}
		if (any)
			(*seasons)++;
	}
	return nout;
}
