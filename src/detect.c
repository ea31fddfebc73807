/*
 * detect.c
 *		The 3-sigma rule over a window of history, and ma_detect_point(), the
 *		one entry the worker and detect_series() judge a point through:
 *		pure statistics, no SPI.  The robust method is detect_robust.c.
 *
 * A value is anomalous when it lies strictly outside mean +- sigma * std_dev
 * of the history (population standard deviation), on the sides the
 * direction watches.  A value exactly on a boundary is normal.
 *
 * A flat history (std_dev 0 up to rounding) has no band to speak of: there
 * the value is anomalous when it differs from the mean by more than the
 * rounding tolerance, 1e-9 relative to max(1, |mean|); z_score is undefined.
 * So a series constant at 100 that jumps to 300 is flagged, a series that
 * stays at 0 is not, and 0.1 + 0.2 against a history of 0.3 is not.
 */
#include "postgres.h"

#include <math.h>

#include "detect.h"

#define FLAT_TOLERANCE 1e-9

/*
 * Evaluates value against history[0..n-1] (n >= 1, all finite).  Costs two
 * passes over the history: mean first, then the squared deviations from it,
 * which stays accurate for large values with a small spread.
 */
void
ma_three_sigma(const double *history, int n, double value, double sigma,
			   MaDirection direction, MaThreeSigma *r)
{
	double		sum = 0.0;
	double		sq = 0.0;
	double		tolerance;
	bool		above;
	bool		below;

	Assert(n >= 1);
	for (int i = 0; i < n; i++)
		sum += history[i];
	r->mean = sum / n;
	for (int i = 0; i < n; i++)
	{
		double		d = history[i] - r->mean;

		sq += d * d;
	}

	r->n = n;
	r->value = value;
	r->sigma = sigma;
	r->direction = direction;
	r->std_dev = sqrt(sq / n);
	r->upper = r->mean + sigma * r->std_dev;
	r->lower = r->mean - sigma * r->std_dev;

	tolerance = FLAT_TOLERANCE * Max(1.0, fabs(r->mean));
	r->flat = r->std_dev <= tolerance;
	if (r->flat)
	{
		r->z_score = NAN;
		above = value - r->mean > tolerance;
		below = r->mean - value > tolerance;
	}
	else
	{
		r->z_score = (value - r->mean) / r->std_dev;
		above = value > r->upper;
		below = value < r->lower;
	}

	r->is_anomaly = (above && direction != MA_DIRECTION_DOWN) ||
		(below && direction != MA_DIRECTION_UP);
}

const char *
ma_direction_name(MaDirection direction)
{
	switch (direction)
	{
		case MA_DIRECTION_UP:
			return "up";
		case MA_DIRECTION_DOWN:
			return "down";
		case MA_DIRECTION_BOTH:
			break;
	}
	return "both";
}

/* Parses "both", "up" or "down"; returns false for anything else. */
bool
ma_direction_parse(const char *name, MaDirection *direction)
{
	if (strcmp(name, "both") == 0)
		*direction = MA_DIRECTION_BOTH;
	else if (strcmp(name, "up") == 0)
		*direction = MA_DIRECTION_UP;
	else if (strcmp(name, "down") == 0)
		*direction = MA_DIRECTION_DOWN;
	else
		return false;
	return true;
}

/*
 * The N of M a series alerts by: its settings', or its method's default
 * (2 of 20 for robust; 1 for 3-sigma, as before).
 */
void
ma_detect_alert_rule(const MaDetectSettings *s, int *need, int *window)
{
	if (s->alert_after > 0)
	{
		*need = s->alert_after;
		*window = Max(s->alert_after, s->alert_window);
	}
	else if (s->method == MA_METHOD_ROBUST)
	{
		*need = MA_DEFAULT_ALERT_AFTER;
		*window = Max(MA_DEFAULT_ALERT_WINDOW, s->alert_window);
	}
	else
	{
		*need = 1;
		*window = Max(1, s->alert_window);
	}
}

/*
 * The points of history a series' verdict uses: window_size when set,
 * else MA_ROBUST_WINDOW for robust and metric_anomaly.window for 3-sigma
 * (as the seed).
 */
int
ma_detect_window(const MaDetectSettings *s)
{
	if (s->window > 0)
		return s->window;
	return s->method == MA_METHOD_ROBUST ? MA_ROBUST_WINDOW : s->sigma_window;
}

const char *
ma_method_name(MaMethod m)
{
	return m == MA_METHOD_THREE_SIGMA ? "3-sigma" : "robust";
}

/* Parses "robust" or "3-sigma"; returns false for anything else. */
bool
ma_method_parse(const char *name, MaMethod *m)
{
	if (strcmp(name, "robust") == 0)
		*m = MA_METHOD_ROBUST;
	else if (strcmp(name, "3-sigma") == 0)
		*m = MA_METHOD_THREE_SIGMA;
	else
		return false;
	return true;
}

/*
 * Judges value at time t with the metric's method: recent[0..nrecent-1]
 * are the previous points (at most ma_detect_window() of them, oldest first) and
 * sts/svals[0..sn-1] the earlier points the seasonal baselines may sample,
 * sorted by time.  The worker and detect_series() both judge through here.
 * A point with fewer than min_points of recent history is not judged.
 */
void
ma_detect_point(const MaDetectSettings *s, const double *recent, int nrecent,
				const TimestampTz *sts, const double *svals, int sn,
				TimestampTz t, double value, MaVerdict *v)
{
	memset(v, 0, sizeof(*v));
	v->method = s->method;
	if (nrecent < s->min_points || nrecent == 0)
		return;
	v->judged = true;
	if (s->method == MA_METHOD_THREE_SIGMA)
	{
		ma_three_sigma(recent, nrecent, value, s->sigma, s->direction, &v->sigma);
		v->is_anomaly = v->sigma.is_anomaly;
		v->expected = v->sigma.mean;
		v->lower = v->sigma.lower;
		v->upper = v->sigma.upper;
		v->score = v->sigma.z_score;
	}
	else
	{
		double		daily[MA_SEASON_SAMPLES];
		double		weekly[MA_SEASON_SAMPLES];
		MaRobustInput in = {0};

		in.recent = recent;
		in.nrecent = nrecent;
		in.min_points = s->min_points;
		in.sensitivity = s->sensitivity;
		in.direction = s->direction;
		if (s->daily)
		{
			in.nseasonal[MA_BASELINE_DAILY] =
				ma_season_gather(sts, svals, sn, t, MA_DAY_S, daily,
								 &in.seasons[MA_BASELINE_DAILY]);
			in.seasonal[MA_BASELINE_DAILY] = daily;
		}
		if (s->weekly)
		{
			in.nseasonal[MA_BASELINE_WEEKLY] =
				ma_season_gather(sts, svals, sn, t, MA_WEEK_S, weekly,
								 &in.seasons[MA_BASELINE_WEEKLY]);
			in.seasonal[MA_BASELINE_WEEKLY] = weekly;
		}
		v->judged = ma_robust(&in, value, &v->robust);
		v->is_anomaly = v->robust.is_anomaly;
		v->expected = v->robust.expected;
		v->lower = v->robust.lower;
		v->upper = v->robust.upper;
		v->score = v->robust.score;
	}
}
