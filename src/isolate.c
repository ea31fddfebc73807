/*
 * isolate.c
 *		One series' detection or alerting in a subtransaction of its own.
 *
 * A subtransaction costs one to two microseconds when it writes nothing
 * (no XID is assigned; test/bench/detect.sh measures the pass with it), so
 * an error in one series, whatever its cause, rolls back that series' work
 * only: alerting gives every series one, detection a group of series
 * (evaluate.c), judged again one to a subtransaction when one of them
 * fails (ma_try_isolated(), then ma_run_isolated()).  The error goes into
 * the series' row (detect_errors, detect_last_error, detect_last_error_at)
 * where users see it, and into the server log.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "isolate.h"
#include "spi_util.h"

static MaStatement record_stmt = {
	"UPDATE metric_anomaly.series s"
	"   SET detect_errors = s.detect_errors + 1,"
	"       detect_last_error = pg_catalog.left($2 || ': ' || $3, 500),"
	"       detect_last_error_at = pg_catalog.now()"
	" WHERE s.metric_name = $1",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

static MaStatement skip_stmt = {
	"UPDATE metric_anomaly.aggregated_metrics a"
	"   SET needs_eval = false, is_anomaly = false, anomaly_context = NULL"
	" WHERE a.metric_name = $1 AND a.needs_eval AND a.metric_timestamp <= $2",
	2, {TEXTOID, TIMESTAMPTZOID}
};

static void
record_error(const char *metric, const char *stage, const char *message,
			 TimestampTz last_closed)
{
	Datum		args[3];

	args[0] = CStringGetTextDatum(metric);
	args[1] = CStringGetTextDatum(stage);
	args[2] = CStringGetTextDatum(message ? message : "unknown error");
	ma_execute(&record_stmt, args, NULL, SPI_OK_UPDATE, 0);
	if (strcmp(stage, "detection") == 0)
	{
		args[1] = TimestampTzGetDatum(last_closed);
		ma_execute(&skip_stmt, args, NULL, SPI_OK_UPDATE, 0);
	}
}

/*
 * Runs work(arg) in a subtransaction; on an error, rolls it back and
 * returns the error (in the caller's memory context), else NULL.
 */
static ErrorData *
run_subtransaction(MaSeriesWork work, void *arg)
{
	MemoryContext old = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(old);
	PG_TRY();
	{
		work(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(old);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return edata;
}

/* See isolate.h. */
bool
ma_try_isolated(MaSeriesWork work, void *arg)
{
	ErrorData  *edata = run_subtransaction(work, arg);

	if (edata == NULL)
		return true;
	FreeErrorData(edata);
	return false;
}

/* See isolate.h. */
bool
ma_run_isolated(MaSeriesWork work, void *arg, const char *metric,
				const char *stage, TimestampTz last_closed)
{
	ErrorData  *edata = run_subtransaction(work, arg);

	if (edata == NULL)
		return true;
	ereport(WARNING,
			(errmsg("metric_anomaly: %s of series \"%s\" failed: %s",
					stage, metric, edata->message),
			 errdetail("The pass goes on without it; metric_anomaly.series records the error.")));
	record_error(metric, stage, edata->message, last_closed);
	FreeErrorData(edata);
	return false;
}
