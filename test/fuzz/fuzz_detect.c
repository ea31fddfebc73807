/*
 * fuzz_detect.c
 *		libFuzzer target for the 3-sigma core (src/detect.c) and the
 *		direction parser: any finite history (evaluate.c passes finite
 *		values only; magnitudes whose squares overflow included), any value
 *		(NaN and infinities too), any sigma the settings and the metrics
 *		table's CHECK allow (0 < sigma <= 100) and any direction.
 *
 * Input: byte 0 picks the direction, then doubles: sigma, value, history;
 * a non-finite history value is read as 0 and sigma is folded into range.
 * Checks the rule's own promises: a value inside [lower, upper] of a
 * non-flat finite band is normal; "up" never flags a value below the
 * mean, "down" never one above; the parser accepts exactly the names
 * ma_direction_name returns.
 */
#include "postgres.h"

#include <math.h>

#include "detect.h"
#include "pg_stubs.h"

#define MAX_HISTORY 10080		/* a week of minutes, evaluate.c's bound */

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	double		history[MAX_HISTORY];
	double		sigma,
				value;
	int			n;
	MaDirection dir;
	MaDirection parsed;
	MaThreeSigma r;
	char		name[32];

	if (size < 1 + 3 * sizeof(double))
		return 0;
	dir = (MaDirection) (data[0] % 3);
	memcpy(&sigma, data + 1, sizeof(double));
	memcpy(&value, data + 1 + sizeof(double), sizeof(double));
	n = (int) ((size - 1 - 2 * sizeof(double)) / sizeof(double));
	if (n > MAX_HISTORY)
		n = MAX_HISTORY;
	memcpy(history, data + 1 + 2 * sizeof(double), n * sizeof(double));
	for (int i = 0; i < n; i++)
		if (!isfinite(history[i]))
			history[i] = 0;
	if (!isfinite(sigma) || sigma == 0)
		sigma = 3;
	sigma = fmin(fabs(sigma), 100.0);

	ma_three_sigma(history, n, value, sigma, dir, &r);

	if (r.n != n)
		abort();
	if (!r.flat && isfinite(r.lower) && isfinite(r.upper) &&
		value >= r.lower && value <= r.upper && r.is_anomaly)
		abort();
	if (r.is_anomaly && dir == MA_DIRECTION_UP && value < r.mean)
		abort();
	if (r.is_anomaly && dir == MA_DIRECTION_DOWN && value > r.mean)
		abort();

	/* The parser: round trip, and arbitrary text never crashes it. */
	if (!ma_direction_parse(ma_direction_name(dir), &parsed) || parsed != dir)
		abort();
	n = Min(size - 1, sizeof(name) - 1);
	memcpy(name, data + 1, n);
	name[n] = '\0';
	if (ma_direction_parse(name, &parsed) &&
		strcmp(ma_direction_name(parsed), name) != 0)
		abort();
	fuzz_free_all();
	return 0;
}
