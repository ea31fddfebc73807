/*
 * detect.c
 *		The 3-sigma rule over a window of history: pure statistics, no SPI.
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
