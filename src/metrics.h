/*
 * metrics.h
 *		Folding a batch of events into the metric definitions.
 */
#ifndef MA_METRICS_H
#define MA_METRICS_H

#include "postgres.h"

extern int64 ma_metrics_fold_batch(const char *folded, const char *round,
								   const char *lo_xid, int64 lo_id,
								   uint64 hi_xid, int64 hi_id);

#endif							/* MA_METRICS_H */
