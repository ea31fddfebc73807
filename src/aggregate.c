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
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "fold.h"
#include "spi_util.h"

/*
 * Claims the pending events among ids [$1, $1 + $2): one range scan of the
 * partial index of pending events, updating as it goes.
 */
static MaStatement claim_stmt = {
	"UPDATE metric_anomaly.business_events e"
	"   SET is_processed = true"
	" WHERE NOT e.is_processed AND e.id >= $1 AND e.id < $1 + $2"
	" RETURNING e.event_type, e.event_timestamp",
	2, {INT8OID, INT8OID}
};

/*
 * The lowest pending id from $1 on.  Seeking from where the previous batch
 * ended skips the index entries of rows claimed earlier in the same
 * transaction, which no scan can mark dead yet.
 */
static MaStatement first_pending_stmt = {
	"SELECT e.id FROM metric_anomaly.business_events e"
	" WHERE NOT e.is_processed AND e.id >= $1 ORDER BY e.id LIMIT 1",
	1, {INT8OID}
};

/* The highest id so far: a pass claims no further, so it ends. */
static MaStatement last_id_stmt = {
	"SELECT max(e.id) FROM metric_anomaly.business_events e",
	0, {InvalidOid}
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

static inline void
fold_event(MaFold *fold, Datum name, Datum ts)
{
	text	   *t = DatumGetTextPP(name);

	ma_fold_add(fold, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
				DatumGetTimestampTz(ts));
	if ((Pointer) t != DatumGetPointer(name))
		pfree(t);
}

#if PG_VERSION_NUM >= 140000
/* Folds claimed events as the UPDATE returns them, without a tuple table. */
typedef struct FoldReceiver
{
	DestReceiver pub;
	MaFold	   *fold;
} FoldReceiver;

static bool
fold_receive(TupleTableSlot *slot, DestReceiver *self)
{
	FoldReceiver *r = (FoldReceiver *) self;
	bool		isnull;
	Datum		name = slot_getattr(slot, 1, &isnull);
	Datum		ts = slot_getattr(slot, 2, &isnull);

	fold_event(r->fold, name, ts);
	return true;
}

static void
fold_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
fold_shutdown(DestReceiver *self)
{
}

static void
fold_destroy(DestReceiver *self)
{
}
#endif

/*
 * Claims the events of [first, first + batch_size) and folds them.
 */
static uint64
claim_and_fold(int64 first, int batch_size, MaFold *fold)
{
	Datum		args[2];

	args[0] = Int64GetDatum(first);
	args[1] = Int64GetDatum(batch_size);
#if PG_VERSION_NUM >= 140000
	{
		FoldReceiver receiver;

		memset(&receiver, 0, sizeof(receiver));
		receiver.pub.receiveSlot = fold_receive;
		receiver.pub.rStartup = fold_startup;
		receiver.pub.rShutdown = fold_shutdown;
		receiver.pub.rDestroy = fold_destroy;
		receiver.pub.mydest = DestNone;
		receiver.fold = fold;
		return ma_execute_into(&claim_stmt, args, &receiver.pub,
							   SPI_OK_UPDATE_RETURNING);
	}
#else
	{
		uint64		n;
		SPITupleTable *tt;

		n = ma_execute(&claim_stmt, args, NULL, SPI_OK_UPDATE_RETURNING, 0);
		tt = SPI_tuptable;
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			fold_event(fold,
					   SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull),
					   SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
		}
		SPI_freetuptable(tt);
		return n;
	}
#endif
}

/*
 * Returns the highest event id so far (0 when there is none): the end of
 * what a pass claims.
 */
int64
ma_last_event_id(void)
{
	bool		isnull;
	Datum		d;

	ma_execute(&last_id_stmt, NULL, NULL, SPI_OK_SELECT, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * Claims, folds and marks the pending events among the batch_size ids that
 * start at the lowest pending id at or after *next_id, if that is at most
 * last_id, and moves *next_id past them.  Returns how many events it
 * folded, or -1 when no pending event is left in [*next_id, last_id].
 */
int64
ma_aggregate_batch(int batch_size, int64 *next_id, int64 last_id)
{
	MemoryContext cxt;
	MemoryContext old;
	Datum		arg;
	bool		isnull;
	int64		first;
	uint64		nclaimed;
	MaFold	   *fold;
	MaFoldEntry **entries;
	uint32		ngroups;
	Datum	   *names;
	Datum	   *minutes;
	Datum	   *counts;
	Datum		values[3];

	arg = Int64GetDatum(*next_id);
	if (ma_execute(&first_pending_stmt, &arg, NULL, SPI_OK_SELECT, 1) == 0)
		return -1;
	first = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	if (first > last_id)
		return -1;
	*next_id = first + batch_size;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly fold",
								ALLOCSET_DEFAULT_SIZES);
	fold = ma_fold_create(cxt, 256);
	nclaimed = claim_and_fold(first, batch_size, fold);
	if (nclaimed == 0)
	{
		MemoryContextDelete(cxt);
		return 0;
	}

	old = MemoryContextSwitchTo(cxt);
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
