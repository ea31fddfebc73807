/*
 * rate_limit.h
 *		A sliding-window rate limit: at most `limit` events in any 60
 *		seconds.  Pure code: no SPI, no clock of its own (callers pass the
 *		time in microseconds).
 */
#ifndef MA_RATE_LIMIT_H
#define MA_RATE_LIMIT_H

#include "postgres.h"

#define MA_RATE_WINDOW_US	INT64CONST(60000000)

typedef struct MaRateLimit
{
	int			limit;			/* events per window; 0 = no limit */
	int			next;			/* ring position of the oldest event */
	int64	   *events;			/* limit entries, 0 = unused */
} MaRateLimit;

extern void ma_rate_set_limit(MaRateLimit *r, int limit, MemoryContext cxt);
extern int64 ma_rate_wait_us(const MaRateLimit *r, int64 now);
extern int	ma_rate_free(const MaRateLimit *r, int64 now, int cap);
extern void ma_rate_take(MaRateLimit *r, int64 now);

#endif							/* MA_RATE_LIMIT_H */
