/*
 * detect.h
 *		The 3-sigma rule: pure statistics, no SPI.
 */
#ifndef MA_DETECT_H
#define MA_DETECT_H

#include "postgres.h"

typedef enum MaDirection
{
	MA_DIRECTION_BOTH,
	MA_DIRECTION_UP,
	MA_DIRECTION_DOWN
} MaDirection;

typedef struct MaThreeSigma
{
	int			n;				/* points of history used */
	double		value;
	double		sigma;
	double		mean;
	double		std_dev;		/* population standard deviation */
	double		upper;			/* mean + sigma * std_dev */
	double		lower;			/* mean - sigma * std_dev */
	bool		flat;			/* std_dev is 0 up to rounding */
	double		z_score;		/* undefined (not finite) when flat */
	MaDirection direction;
	bool		is_anomaly;
} MaThreeSigma;

extern void ma_three_sigma(const double *history, int n, double value,
						   double sigma, MaDirection direction,
						   MaThreeSigma *result);
extern const char *ma_direction_name(MaDirection direction);
extern bool ma_direction_parse(const char *name, MaDirection *direction);

#endif							/* MA_DETECT_H */
