/*
 * report.c
 *		The C side of scheduled reports.
 *
 * The schedule itself is metric_anomaly.run_due_reports() (SQL, in the
 * install script): which reports are due, one run per report per slot,
 * skips below the sample minimum, rendering, the outbox rows and the
 * retention of old PNGs.  It is plain SQL over the same tables a user reads,
 * so pg_regress drives it with a fixed as_of.  Here are the two calls into
 * it: the worker runs it once per pass (pass.c), and the delivery worker
 * fetches a run's PNG for the alert that delivers it instead of rendering a
 * chart (delivery.c).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "report.h"
#include "spi_util.h"

static MaStatement run_stmt = {
	"SELECT metric_anomaly.run_due_reports(pg_catalog.now())",
	0, {InvalidOid}, NULL
};

static MaStatement png_stmt = {
	"SELECT r.png FROM metric_anomaly.report_runs r"
	" WHERE r.alert_id = $1 AND r.status = 'rendered'",
	1, {INT8OID}, NULL
};

/* See report.h. */
int64
ma_run_due_reports(void)
{
	bool		isnull;
	Datum		d;

	ma_execute(&run_stmt, NULL, NULL, SPI_OK_SELECT, 1);
	if (SPI_processed != 1)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt32(d);
}

/* See report.h. */
char *
ma_report_png(int64 alert_id, size_t *len, MemoryContext keep)
{
	Datum		arg = Int64GetDatum(alert_id);
	bool		isnull;
	Datum		d;
	bytea	   *b;
	char	   *png;

	ma_execute(&png_stmt, &arg, NULL, SPI_OK_SELECT, 1);
	if (SPI_processed != 1)
		return NULL;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return NULL;
	b = DatumGetByteaPP(d);
	*len = VARSIZE_ANY_EXHDR(b);
	png = MemoryContextAlloc(keep, *len);
	memcpy(png, VARDATA_ANY(b), *len);
	return png;
}
