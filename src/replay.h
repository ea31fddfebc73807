/*
 * replay.h
 *		A series judged as a stream, as the worker judges it: detection
 *		(ma_detect_point) then the episode state machine (episode.c), in
 *		memory.  Used by detect_series() and backtest().
 */
#ifndef MA_REPLAY_H
#define MA_REPLAY_H

#include "postgres.h"

#include "detect.h"
#include "episode.h"

/* Most points one call of detect_series() or backtest() judges. */
#define MA_REPLAY_MAX_POINTS	1000000

typedef struct MaReplay
{
	MaDetectSettings s;
	MaEpisodeRule rule;
	MaEpisodeState st;
	int			cap;
	int			nvals;			/* non-NULL values so far, input order */
	double	   *vals;
	int			sn;				/* the same, sorted by time */
	TimestampTz *sts;
	double	   *svals;
} MaReplay;

extern void ma_replay_init(MaReplay *r, const MaDetectSettings *s, int capacity);
extern MaEpisodeEvent ma_replay_point(MaReplay *r, TimestampTz t, bool isnull,
									  double value, MaVerdict *v);

#endif							/* MA_REPLAY_H */
