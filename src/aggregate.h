/*
 * aggregate.h
 *		Claiming and folding events, zero-filling series, purging old events.
 *
 * Every function runs inside the caller's transaction with SPI connected.
 */
#ifndef MA_AGGREGATE_H
#define MA_AGGREGATE_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* Where a pass's walk over the event ids stands. */
typedef struct MaClaimCursor
{
	int64		next_id;		/* claim from this id on */
	int64		last_id;		/* claim no event beyond this id */
	bool		done;			/* the last batch reached last_id */
} MaClaimCursor;

extern int	ma_fill_horizon_min;
extern int	ma_fill_budget;

extern void ma_aggregate_define_settings(void);
extern int64 ma_last_event_id(void);
extern void ma_claim_start(MaClaimCursor *cursor, int64 last_id);
extern int64 ma_aggregate_batch(int batch_size, MaClaimCursor *cursor,
								TimestampTz first_open);
extern int64 ma_zero_fill(TimestampTz last_closed);
extern int64 ma_purge_events(TimestampTz older_than, int limit);

#endif							/* MA_AGGREGATE_H */
