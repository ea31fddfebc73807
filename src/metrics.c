/*
 * metrics.c
 *		Metrics beyond counts: the aggregation pass hands each batch of a
 *		round to the metric definitions.
 *
 * The per-event work is set-based SQL (metric_anomaly.fold_definitions(),
 * in the install script): it reads the batch's events again through the
 * (xid, id) index, with the same bounds the batch was read with, and
 * merges them into metric_points, aggregated_metrics and the counters of
 * skipped events, in the batch's transaction.  So the definitions fold
 * exactly once for the same reason the counts do: their state commits
 * together with the round's progress.  With no enabled definition the call
 * costs one index probe of metric_definitions per batch.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "metrics.h"
#include "spi_util.h"

static MaStatement fold_stmt = {
	"SELECT metric_anomaly.fold_definitions($1::pg_catalog.pg_snapshot,"
	"       $2::pg_catalog.pg_snapshot, $3::pg_catalog.xid8, $4,"
	"       $5::pg_catalog.xid8, $6)",
	6, {TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT8OID}
};

/*
 * Folds the batch of the round (position folded, snapshot round) that
 * starts after event (lo_xid, lo_id) (at the round's start when lo_xid is
 * NULL) and ends at event (hi_xid, hi_id), inclusive.  Returns the number
 * of series points written.
 */
int64
ma_metrics_fold_batch(const char *folded, const char *round,
					  const char *lo_xid, int64 lo_id,
					  uint64 hi_xid, int64 hi_id)
{
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	char		hibuf[32];
	bool		isnull;
	Datum		d;

	snprintf(hibuf, sizeof(hibuf), UINT64_FORMAT, hi_xid);
	values[0] = CStringGetTextDatum(folded);
	values[1] = CStringGetTextDatum(round);
	if (lo_xid == NULL)
	{
		nulls[2] = 'n';
		nulls[3] = 'n';
		values[2] = (Datum) 0;
		values[3] = (Datum) 0;
	}
	else
	{
		values[2] = CStringGetTextDatum(lo_xid);
		values[3] = Int64GetDatum(lo_id);
	}
	values[4] = CStringGetTextDatum(hibuf);
	values[5] = Int64GetDatum(hi_id);
	ma_execute(&fold_stmt, values, nulls, SPI_OK_SELECT, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}
