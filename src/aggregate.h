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

extern int64 ma_last_event_id(void);
extern int64 ma_aggregate_batch(int batch_size, int64 *next_id, int64 last_id);
extern int64 ma_zero_fill(TimestampTz last_closed);
extern int64 ma_purge_events(TimestampTz older_than, int limit);

#endif							/* MA_AGGREGATE_H */
