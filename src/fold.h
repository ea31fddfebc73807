/*
 * fold.h
 *		Folding events into per-metric, per-minute counts in memory.
 *
 * Pure computation, no SPI: the aggregation step feeds it the claimed
 * events and reads back one entry per (metric, minute).
 */
#ifndef MA_FOLD_H
#define MA_FOLD_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef struct MaFoldKey
{
	const char *name;			/* not NUL-terminated */
	int			len;
	TimestampTz minute;
} MaFoldKey;

typedef struct MaFoldEntry
{
	MaFoldKey	key;
	int64		count;
	uint32		hash;
	char		status;			/* used by simplehash */
} MaFoldEntry;

typedef struct MaFold MaFold;

extern MaFold *ma_fold_create(MemoryContext cxt, uint32 expected);
extern void ma_fold_add(MaFold *fold, const char *name, int len, TimestampTz ts);
extern uint32 ma_fold_count(MaFold *fold);
extern MaFoldEntry **ma_fold_entries(MaFold *fold);
extern TimestampTz ma_minute_floor(TimestampTz ts);
extern bool ma_fold_in_range(TimestampTz ts);

/*
 * Events are counted when dated at least this long after the first and
 * before the last instant PostgreSQL represents: detection reaches back up
 * to metric_anomaly.window minutes (at most 7 days) before a minute and
 * alerting forward from it, and that arithmetic must not leave the range.
 */
#define MA_FOLD_MARGIN		(INT64CONST(30) * USECS_PER_DAY)

#endif							/* MA_FOLD_H */
