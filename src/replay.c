/*
 * replay.c
 *		A series judged as a stream, as the worker judges it; no SPI.
 *
 * Points are judged in input order, each by the points before it in that
 * order only (online):
 *	- the recent baseline is the previous window_size non-NULL values in
 *	  input order, whatever their timestamps;
 *	- seasonal baselines sample the earlier points by timestamp (a copy kept
 *	  sorted by time; a repeated or backward timestamp is inserted after the
 *	  points of equal time);
 *	- a NULL value is a gap: not judged, not history;
 *	- alerting sees each point through ma_episode_step(), which ignores a
 *	  point at or before the latest time it has seen (as the worker never
 *	  alerts twice for a minute): a repeated or backward timestamp is
 *	  judged but neither opens nor resolves an episode.
 * For a series one point a minute without gaps this is exactly the
 * worker's decision at every minute (sql/detect.sql checks it).
 */
#include "postgres.h"

#include "alert.h"
#include "replay.h"

/* capacity: an upper bound of the points to come. */
void
ma_replay_init(MaReplay *r, const MaDetectSettings *s, int capacity)
{
	memset(r, 0, sizeof(*r));
	r->s = *s;
	{
		int			need;
		int			window;

		ma_detect_alert_rule(s, &need, &window);
		ma_alert_replay_rule(&r->rule, need, window);
	}
	ma_episode_init(&r->st);
	r->cap = Max(capacity, 1);
	r->vals = palloc(sizeof(double) * r->cap);
	r->sts = palloc(sizeof(TimestampTz) * r->cap);
	r->svals = palloc(sizeof(double) * r->cap);
}

/* Inserts (t, value) into the time-sorted copy, after equal times. */
static void
sorted_insert(MaReplay *r, TimestampTz t, double value)
{
	int			lo = 0;
	int			hi = r->sn;

	if (r->sn == 0 || r->sts[r->sn - 1] <= t)
		lo = r->sn;				/* in order: the usual case */
	else
	{
		while (lo < hi)
		{
			int			mid = lo + (hi - lo) / 2;

			if (r->sts[mid] <= t)
				lo = mid + 1;
			else
				hi = mid;
		}
		memmove(&r->sts[lo + 1], &r->sts[lo], sizeof(TimestampTz) * (r->sn - lo));
		memmove(&r->svals[lo + 1], &r->svals[lo], sizeof(double) * (r->sn - lo));
	}
	r->sts[lo] = t;
	r->svals[lo] = value;
	r->sn++;
}

/* Judges the next point; returns the alert it makes (MA_EPISODE_NONE). */
MaEpisodeEvent
ma_replay_point(MaReplay *r, TimestampTz t, bool isnull, double value,
				MaVerdict *v)
{
	if (isnull)
	{
		memset(v, 0, sizeof(*v));
		v->method = r->s.method;
		return ma_episode_step(&r->rule, &r->st, t, false, false);
	}
	if (r->nvals >= r->cap)
		elog(ERROR, "metric_anomaly: replay capacity exceeded");
	{
		int			first = Max(0, r->nvals - ma_detect_window(&r->s));

		ma_detect_point(&r->s, &r->vals[first], r->nvals - first,
						r->sts, r->svals, r->sn, t, value, v);
	}
	r->vals[r->nvals++] = value;
	sorted_insert(r, t, value);
	return ma_episode_step(&r->rule, &r->st, t, v->judged, v->is_anomaly);
}
