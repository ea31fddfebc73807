/*
 * isolate.h
 *		One series' detection or alerting in a subtransaction of its own: a
 *		failure is recorded against the series and the pass goes on.
 */
#ifndef MA_ISOLATE_H
#define MA_ISOLATE_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef void (*MaSeriesWork) (void *arg);

/*
 * Runs work(arg) in a subtransaction; on an error, rolls it back, records
 * the error against metric in metric_anomaly.series (stage is "detection"
 * or "alerting"), logs a WARNING and returns false.  When stage is
 * detection, the series' rows waiting for a verdict up to last_closed are
 * marked done without one, so that a series that cannot be judged does not
 * grow the work of every later pass.
 */
extern bool ma_run_isolated(MaSeriesWork work, void *arg, const char *metric,
							const char *stage, TimestampTz last_closed);

/*
 * Runs work(arg) in a subtransaction; on an error, rolls it back, discards
 * the error and returns false.  For work over several series at once, which
 * the caller then does again one series at a time with ma_run_isolated(),
 * so that the one that failed is the only one recorded and skipped.
 */
extern bool ma_try_isolated(MaSeriesWork work, void *arg);

#endif							/* MA_ISOLATE_H */
