/*
 * aggregate.c
 *		Claim unprocessed events, fold them into per-minute counts, mark them.
 *
 * One call of ma_aggregate_batch() claims at most batch_size events (marking
 * them processed), folds them in memory (fold.c) and adds the counts to
 * aggregated_metrics; the caller commits, so claiming, folding and marking
 * are one atomic unit.  Claiming re-checks "NOT is_processed" on the row it
 * updates, so two sessions can never both count an event.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "fold.h"
#include "spi_util.h"

static MaStatement claim_stmt = {
	"UPDATE metric_anomaly.business_events e"
	"   SET is_processed = true"
	" WHERE e.ctid = ANY (ARRAY(SELECT c.ctid FROM metric_anomaly.business_events c"
	"                           WHERE NOT c.is_processed ORDER BY c.id LIMIT $1))"
	"   AND NOT e.is_processed"
	" RETURNING e.event_type, e.event_timestamp",
	1, {INT4OID}
};

static MaStatement upsert_stmt = {
	"INSERT INTO metric_anomaly.aggregated_metrics AS m"
	"       (metric_name, metric_timestamp, metric_value, sample_count)"
	"SELECT u.n, u.t, u.c::float8, u.c"
	"  FROM unnest($1::text[], $2::timestamptz[], $3::int8[]) AS u(n, t, c)"
	"    ON CONFLICT (metric_name, metric_timestamp) DO UPDATE"
	"   SET metric_value = m.metric_value + excluded.metric_value,"
	"       sample_count = m.sample_count + excluded.sample_count,"
	"       needs_eval = true",
	3, {TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID}
};

static MaStatement series_stmt = {
	"INSERT INTO metric_anomaly.series (metric_name, filled_until)"
	"SELECT u.n, min(u.t) - interval '1 minute'"
	"  FROM unnest($1::text[], $2::timestamptz[]) AS u(n, t)"
	" GROUP BY u.n"
	"    ON CONFLICT (metric_name) DO NOTHING",
	2, {TEXTARRAYOID, TIMESTAMPTZARRAYOID}
};

static MaStatement fill_stmt = {
	"WITH due AS ("
	"    SELECT s.metric_name, s.filled_until FROM metric_anomaly.series s"
	"     WHERE s.filled_until < $1 FOR UPDATE),"
	" moved AS ("
	"    UPDATE metric_anomaly.series s SET filled_until = $1 FROM due"
	"     WHERE s.metric_name = due.metric_name"
	" RETURNING s.metric_name, due.filled_until AS old)"
	"INSERT INTO metric_anomaly.aggregated_metrics"
	"       (metric_name, metric_timestamp, metric_value, sample_count)"
	"SELECT moved.metric_name, g, 0, 0"
	"  FROM moved, generate_series(moved.old + interval '1 minute', $1,"
	"                              interval '1 minute') AS g"
	"    ON CONFLICT (metric_name, metric_timestamp) DO NOTHING",
	1, {TIMESTAMPTZOID}
};

static MaStatement purge_stmt = {
	"DELETE FROM metric_anomaly.business_events e"
	" WHERE e.ctid = ANY (ARRAY(SELECT c.ctid FROM metric_anomaly.business_events c"
	"                           WHERE c.event_timestamp < $1 AND c.is_processed"
	"                           LIMIT $2))"
	"   AND e.is_processed",
	2, {TIMESTAMPTZOID, INT4OID}
};

/*
 * Claims, folds and marks at most batch_size events; returns how many.
 */
int64
ma_aggregate_batch(int batch_size)
{
	MemoryContext cxt;
	MemoryContext old;
	Datum		arg;
	uint64		nclaimed;
	MaFold	   *fold;
	MaFoldEntry **entries;
	uint32		ngroups;
	Datum	   *names;
	Datum	   *minutes;
	Datum	   *counts;
	Datum		values[3];
	SPITupleTable *tuptable;

	arg = Int32GetDatum(batch_size);
	nclaimed = ma_execute(&claim_stmt, &arg, NULL, SPI_OK_UPDATE_RETURNING, 0);
	if (nclaimed == 0)
		return 0;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly fold",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);

	fold = ma_fold_create(cxt, 256);
	tuptable = SPI_tuptable;
	for (uint64 i = 0; i < nclaimed; i++)
	{
		HeapTuple	tuple = tuptable->vals[i];
		bool		isnull;
		Datum		name = SPI_getbinval(tuple, tuptable->tupdesc, 1, &isnull);
		Datum		ts = SPI_getbinval(tuple, tuptable->tupdesc, 2, &isnull);
		text	   *t = DatumGetTextPP(name);

		ma_fold_add(fold, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
					DatumGetTimestampTz(ts));
		if ((Pointer) t != DatumGetPointer(name))
			pfree(t);
	}
	SPI_freetuptable(tuptable);

	ngroups = ma_fold_count(fold);
	entries = ma_fold_entries(fold);
	names = palloc(sizeof(Datum) * ngroups);
	minutes = palloc(sizeof(Datum) * ngroups);
	counts = palloc(sizeof(Datum) * ngroups);
	for (uint32 i = 0; i < ngroups; i++)
	{
		names[i] = PointerGetDatum(cstring_to_text_with_len(entries[i]->key.name,
															entries[i]->key.len));
		minutes[i] = TimestampTzGetDatum(entries[i]->key.minute);
		counts[i] = Int64GetDatum(entries[i]->count);
	}
	values[0] = PointerGetDatum(construct_array(names, ngroups, TEXTOID,
												-1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(minutes, ngroups, TIMESTAMPTZOID,
												sizeof(TimestampTz), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(counts, ngroups, INT8OID,
												sizeof(int64), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	MemoryContextSwitchTo(old);

	ma_execute(&upsert_stmt, values, NULL, SPI_OK_INSERT, 0);
	ma_execute(&series_stmt, values, NULL, SPI_OK_INSERT, 0);

	MemoryContextDelete(cxt);
	return (int64) nclaimed;
}

/*
 * Makes every minute of every known series up to last_closed exist as a
 * row: a minute without events is a 0.  Returns the number of rows added.
 */
int64
ma_zero_fill(TimestampTz last_closed)
{
	Datum		arg = TimestampTzGetDatum(last_closed);

	return (int64) ma_execute(&fill_stmt, &arg, NULL, SPI_OK_INSERT, 0);
}

/*
 * Deletes at most limit processed events older than older_than; returns how
 * many it deleted.
 */
int64
ma_purge_events(TimestampTz older_than, int limit)
{
	Datum		args[2];

	args[0] = TimestampTzGetDatum(older_than);
	args[1] = Int32GetDatum(limit);
	return (int64) ma_execute(&purge_stmt, args, NULL, SPI_OK_DELETE, 0);
}
