/*
 * detect.h
 *		Detection methods (3-sigma, robust): pure statistics, no SPI.
 */
#ifndef MA_DETECT_H
#define MA_DETECT_H

#include "postgres.h"

#include "datatype/timestamp.h"

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


/*
 * The robust method (the default): see detect.c for the rule.
 */
#define MA_BASELINE_RECENT	0
#define MA_BASELINE_DAILY	1
#define MA_BASELINE_WEEKLY	2
#define MA_BASELINES		3

/* Seasons back a seasonal baseline looks, and lag samples per season. */
#define MA_SEASONS_BACK		3
#define MA_SEASON_HALF		3	/* samples either side of the same time */
#define MA_SEASON_STEP_S	300 /* seconds between lag samples */
#define MA_SEASON_SAMPLES	(MA_SEASONS_BACK * (2 * MA_SEASON_HALF + 1))
#define MA_SEASON_MIN_SEASONS	2	/* seasons with a sample to be used */

/*
 * The novelty guard: a point is not anomalous when the recent window, less
 * its newest MA_NOVELTY_SKIP points, holds MA_NOVELTY_REPEATS separate
 * excursions at least as far on the same side.
 */
#define MA_NOVELTY_SKIP		15
#define MA_NOVELTY_REPEATS	2

/*
 * The sustained-shift test: the last MA_SHIFT_POINTS points (this one and
 * the ones before it) all beyond sensitivity / sqrt(MA_SHIFT_POINTS)
 * scales, on the same side.
 */
#define MA_SHIFT_POINTS		5

/*
 * The resistant line needs MA_TREND_MIN_POINTS recent points, thirds of
 * 30: a deviation of k points moves a third's median by k ranks, which in
 * a third of 13 (a window of 40) tilts the line after 3 points of a
 * shallow shift and hides it; fewer points get the median (slope 0).
 */
#define MA_TREND_MIN_POINTS	90

#define MA_DAY_S			86400
#define MA_WEEK_S			(7 * 86400)

typedef struct MaBaseline
{
	bool		used;			/* had enough history to judge */
	int			n;				/* values it pooled */
	int			seasons;		/* seasons with a sample (seasonal only) */
	double		median;			/* the level expected at the point judged */
	double		slope;			/* per point: recent only, else 0 */
	double		scale;			/* robust sigma, floors applied */
	double		lower;
	double		upper;
	double		score;			/* (value - median) / scale */
	double		shift;			/* sustained-shift score, 0 if none */
} MaBaseline;

typedef struct MaRobustInput
{
	const double *recent;		/* previous points, gaps left out */
	int			nrecent;
	int			min_points;		/* recent points needed to judge */
	const double *seasonal[MA_BASELINES];	/* [1], [2]: lag samples */
	int			nseasonal[MA_BASELINES];
	int			seasons[MA_BASELINES];
	double		sensitivity;
	MaDirection direction;
} MaRobustInput;

typedef struct MaRobust
{
	double		value;
	double		sensitivity;
	MaDirection direction;
	bool		counts;			/* the recent values are all counts */
	MaBaseline	b[MA_BASELINES];
	int			judge;			/* baseline that judged: the nearest */
	int			repeats;		/* earlier excursions as far (novelty) */
	bool		outside_band;	/* every baseline put it outside */
	bool		shifted;		/* every baseline saw a sustained shift */
	const char *test;			/* "point", "shift" or NULL: what flagged */
	double		shift_score;	/* the judging baseline's shift */
	double		expected;
	double		lower;
	double		upper;
	double		score;
	bool		is_anomaly;
} MaRobust;

extern bool ma_robust(const MaRobustInput *in, double value, MaRobust *r);
extern const char *ma_baseline_name(int b);

/* qsort() order of TimestampTz values (or of records that begin with one). */
extern int	ma_cmp_time(const void *a, const void *b);

/* Seasonal lag samples of a stream kept sorted by time. */
extern int	ma_season_sort(TimestampTz *ts, double *values, int n);
extern int	ma_season_gather(const TimestampTz *ts, const double *values, int n,
							 TimestampTz t, int period_s, double *out,
							 int *seasons);

/* A metric's detection settings, resolved (no NULLs left). */
typedef enum MaMethod
{
	MA_METHOD_ROBUST,
	MA_METHOD_THREE_SIGMA
} MaMethod;

#define MA_DEFAULT_SENSITIVITY	6.0
/*
 * robust's window when window_size is not set: 360 points (six hours a
 * minute) met NAB's targets with the resistant line and follows the demo's
 * daily cycle (README); 3-sigma keeps metric_anomaly.window (180).
 */
#define MA_ROBUST_WINDOW	360
/* robust alerts on 2 anomalous of 20 judged minutes; 3-sigma, as the seed, on 1 */
#define MA_DEFAULT_ALERT_AFTER	2
#define MA_DEFAULT_ALERT_WINDOW 20

typedef struct MaDetectSettings
{
	MaMethod	method;
	double		sigma;			/* 3-sigma */
	double		sensitivity;	/* robust */
	int			window;			/* window_size; 0: the method's default */
	int			sigma_window;	/* 3-sigma's default, metric_anomaly.window */
	int			min_points;
	MaDirection direction;
	bool		daily;
	bool		weekly;
	int			alert_after;	/* N of M; 0: the method's default */
	int			alert_window;
} MaDetectSettings;

/* One verdict of either method. */
typedef struct MaVerdict
{
	MaMethod	method;
	bool		judged;
	bool		is_anomaly;
	double		expected;
	double		lower;
	double		upper;
	double		score;
	MaThreeSigma sigma;
	MaRobust	robust;
} MaVerdict;

extern void ma_detect_point(const MaDetectSettings *s,
							const double *recent, int nrecent,
							const TimestampTz *sts, const double *svals, int sn,
							TimestampTz t, double value, MaVerdict *v);
extern void ma_detect_alert_rule(const MaDetectSettings *s, int *need, int *window);
extern int	ma_detect_window(const MaDetectSettings *s);
extern const char *ma_method_name(MaMethod m);
extern bool ma_method_parse(const char *name, MaMethod *m);

#endif							/* MA_DETECT_H */
