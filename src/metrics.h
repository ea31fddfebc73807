/*
 * metrics.h
 *		Folding a batch of events into the metric definitions.
 */
#ifndef MA_METRICS_H
#define MA_METRICS_H

#include "postgres.h"

#include "metric_fold.h"

extern MaMetricFold *ma_metrics_begin(MemoryContext cxt, const char *only_metric);
extern void ma_metrics_event(MaMetricFold *fold, Datum type, Datum ts, Datum id,
							 Datum payload, bool payload_null);
extern int64 ma_metrics_finish(MaMetricFold *fold);
extern int64 ma_metrics_rest(TimestampTz last_closed, TimestampTz floor);

#endif							/* MA_METRICS_H */
