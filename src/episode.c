/*
 * episode.c
 *		The alerting state machine of one series and source: pure C, no SPI.
 *
 * Points come in stream order.  For each point:
 *
 *	- a point at or before the last point seen is ignored, so judging a
 *	  minute twice never alerts twice (last_minute still moves only
 *	  forward);
 *	- a point without a verdict (too little history, detection disabled)
 *	  is neither a breach nor a recovery: it changes no streak;
 *	- an episode opens when at least `need` of the last `window` judged
 *	  points breached (need = window: `need` consecutive points) and
 *	  reports FIRING; its start is the oldest breaching point of those, at
 *	  one minute a step, so a rule's start is unchanged by N of M;
 *	- it closes after resolve_after consecutive normal points and reports
 *	  RESOLVED;
 *	- an episode opening less than cooldown after the previous firing of the
 *	  same series and source, or before `oldest` (a backfill), is muted:
 *	  tracked, but it reports neither its FIRING nor its RESOLVED.
 */
#include "postgres.h"

#include <limits.h>

#include "episode.h"

/* A fresh state: never fired, nothing seen. */
void
ma_episode_init(MaEpisodeState *st)
{
	memset(st, 0, sizeof(*st));
	st->last_minute = DT_NOBEGIN;
}

/* Never fired, and neither an open episode nor a streak under way. */
bool
ma_episode_idle(const MaEpisodeState *st)
{
	return !st->firing && !st->muted && !st->has_fired &&
		st->breach_streak == 0 && st->ok_streak == 0 && st->recent == 0;
}

static int
popcount64(uint64 x)
{
	int			n = 0;

	while (x)
	{
		x &= x - 1;
		n++;
	}
	return n;
}

/* Steps back from the newest point to the oldest set bit of mask. */
static int
oldest_bit(uint64 x)
{
	int			i = -1;

	while (x)
	{
		x >>= 1;
		i++;
	}
	return i;
}

/* Feeds one point; returns what the point makes the episode report. */
MaEpisodeEvent
ma_episode_step(const MaEpisodeRule *rule, MaEpisodeState *st,
				TimestampTz minute, bool judged, bool breach)
{
	uint64		mask;
	int			window = Max(1, Min(rule->window, MA_EPISODE_MAX_WINDOW));

	if (minute <= st->last_minute)
		return MA_EPISODE_NONE;	/* seen before: never alert twice */
	st->last_minute = minute;
	if (!judged)
		return MA_EPISODE_NONE;

	mask = window == 64 ? ~UINT64CONST(0) : (UINT64CONST(1) << window) - 1;
	st->recent = ((st->recent << 1) | (breach ? 1 : 0)) & mask;

	if (breach)
	{
		st->ok_streak = 0;
		if (st->breach_streak < INT_MAX)
			st->breach_streak++;
		if (!st->firing && popcount64(st->recent) >= rule->need)
		{
			st->firing = true;
			st->has_start = true;
			st->episode_start = minute -
				(int64) oldest_bit(st->recent) * 60 * USECS_PER_SEC;
			st->muted = (st->has_fired && rule->cooldown_us > 0 &&
						 minute - st->last_fired_at < rule->cooldown_us) ||
				minute < rule->oldest;
			if (!st->muted)
			{
				st->has_fired = true;
				st->last_fired_at = minute;
				return MA_EPISODE_FIRING;
			}
		}
	}
	else
	{
		st->breach_streak = 0;
		if (st->firing && ++st->ok_streak >= rule->resolve_after)
		{
			bool		was_muted = st->muted;

			st->firing = false;
			st->muted = false;
			st->ok_streak = 0;
			st->recent = 0;
			if (!was_muted)
				return MA_EPISODE_RESOLVED;
		}
	}
	return MA_EPISODE_NONE;
}

const char *
ma_episode_event_name(MaEpisodeEvent ev)
{
	switch (ev)
	{
		case MA_EPISODE_FIRING:
			return "firing";
		case MA_EPISODE_RESOLVED:
			return "resolved";
		case MA_EPISODE_NONE:
			break;
	}
	return NULL;
}
