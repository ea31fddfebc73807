/*
 * report.h
 *		Scheduled reports: the worker's call into the schedule, and the PNG
 *		of a report run for the delivery of its alert.
 */
#ifndef MA_REPORT_H
#define MA_REPORT_H

#include "postgres.h"

/*
 * Runs the reports due now (metric_anomaly.run_due_reports()); SPI
 * connected, in the caller's transaction.  Returns the runs recorded.
 */
extern int64 ma_run_due_reports(void);

/*
 * The PNG of the report run that alert alert_id delivers, copied into
 * keep, or NULL (the run was purged); SPI connected.
 */
extern char *ma_report_png(int64 alert_id, size_t *len, MemoryContext keep);

#endif							/* MA_REPORT_H */
