/*
 * pass.h
 *		One aggregation pass: fold, zero-fill, detect, purge.
 */
#ifndef MA_PASS_H
#define MA_PASS_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef struct MaPassResult
{
	int64		events;			/* events folded */
	bool		more;			/* stopped early with events still pending */
} MaPassResult;

extern MaPassResult ma_run_pass(TimestampTz as_of, bool own_transactions,
								int time_budget_ms);
extern void ma_record_error(const char *message);

#endif							/* MA_PASS_H */
