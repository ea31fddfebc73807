/*
 * rate_limit.c
 *		A sliding-window rate limit for outbound requests.
 *
 * The platforms count messages per bot in a sliding minute (WeCom and
 * DingTalk robots 20: the 21st is refused, and DingTalk then mutes the robot
 * for ten minutes).  A fixed window or an even spacing would either overrun
 * that or delay the first alerts of a burst needlessly, so the limit keeps
 * the times of the last `limit` events in a ring: an event may happen when
 * the oldest of them is a full window old.  A burst of `limit` goes out at
 * once; the rest follow as the first ones age out of the window.  Memory is
 * one int64 per allowed event; no SPI.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "rate_limit.h"

/* Sets the limit; a changed limit starts with an empty window. */
void
ma_rate_set_limit(MaRateLimit *r, int limit, MemoryContext cxt)
{
	if (r->limit == limit && (limit == 0 || r->events != NULL))
		return;
	if (r->events)
		pfree(r->events);
	r->events = limit > 0 ? MemoryContextAllocZero(cxt, sizeof(int64) * limit) : NULL;
	r->limit = limit;
	r->next = 0;
}

/* Microseconds from now until the next event may happen (0: now). */
int64
ma_rate_wait_us(const MaRateLimit *r, int64 now)
{
	int64		oldest;

	if (r->limit == 0)
		return 0;
	oldest = r->events[r->next];
	if (oldest == 0 || now - oldest >= MA_RATE_WINDOW_US)
		return 0;
	return MA_RATE_WINDOW_US - (now - oldest);
}

/* Events that may happen now, at most cap. */
int
ma_rate_free(const MaRateLimit *r, int64 now, int cap)
{
	int			n = 0;

	if (r->limit == 0)
		return cap;
	/* the ring runs from the oldest event: count until one is recent */
	for (int i = 0; i < r->limit && n < cap; i++)
	{
		int64		t = r->events[(r->next + i) % r->limit];

		if (t != 0 && now - t < MA_RATE_WINDOW_US)
			break;
		n++;
	}
	return n;
}

/* Counts an event at now. */
void
ma_rate_take(MaRateLimit *r, int64 now)
{
	if (r->limit == 0)
		return;
	r->events[r->next] = now;
	r->next = (r->next + 1) % r->limit;
}
