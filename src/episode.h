/*
 * episode.h
 *		The alerting state machine of one series and source: pure C, no SPI.
 *
 * alert.c runs it over the verdicts of each pass, with its state kept in
 * metric_anomaly.alert_episodes; detect_series() and backtest() run the very
 * same code over a replayed stream, with the state in memory.
 */
#ifndef MA_EPISODE_H
#define MA_EPISODE_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* N of M: M is at most this many points. */
#define MA_EPISODE_MAX_WINDOW	60

/* The rule an episode follows. */
typedef struct MaEpisodeRule
{
	int			need;			/* breaching points among the last `window` */
	int			window;			/* M of N of M; need <= window */
	int			resolve_after;	/* consecutive normal points that resolve */
	int64		cooldown_us;	/* 0: none */
	TimestampTz oldest;			/* episodes opening before are muted;
								 * DT_NOBEGIN: no age limit */
} MaEpisodeRule;

/* The state of one series and source. */
typedef struct MaEpisodeState
{
	bool		firing;
	bool		muted;
	bool		has_start;
	TimestampTz episode_start;
	int			breach_streak;	/* consecutive breaching points */
	int			ok_streak;		/* consecutive normal points while firing */
	uint64		recent;			/* bit i: the point i steps back breached */
	TimestampTz last_minute;	/* DT_NOBEGIN when new */
	bool		has_fired;
	TimestampTz last_fired_at;
} MaEpisodeState;

typedef enum MaEpisodeEvent
{
	MA_EPISODE_NONE,
	MA_EPISODE_FIRING,
	MA_EPISODE_RESOLVED
} MaEpisodeEvent;

extern void ma_episode_init(MaEpisodeState *st);
extern MaEpisodeEvent ma_episode_step(const MaEpisodeRule *rule,
									  MaEpisodeState *st, TimestampTz minute,
									  bool judged, bool breach);
extern bool ma_episode_idle(const MaEpisodeState *st);
extern const char *ma_episode_event_name(MaEpisodeEvent ev);

#endif							/* MA_EPISODE_H */
