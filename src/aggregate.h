/*
 * aggregate.h
 *		Folding committed events, zero-filling series, purging old events.
 *
 * Every function runs inside the caller's transaction with SPI connected.
 */
#ifndef MA_AGGREGATE_H
#define MA_AGGREGATE_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern int	ma_fill_horizon_min;
extern int	ma_fill_budget;

extern void ma_aggregate_define_settings(void);
extern int64 ma_aggregate_batch(int batch_size, TimestampTz first_open,
								bool *round_done);
extern int64 ma_zero_fill(TimestampTz last_closed);
extern int64 ma_purge_events(TimestampTz older_than, int limit);

#endif							/* MA_AGGREGATE_H */
