/*
 * aggregate.c
 *		Claim unprocessed events, fold them into per-minute counts, mark them.
 *
 * One call of ma_aggregate_batch() claims at most batch_size events (marking
 * them processed), folds them in memory (fold.c) and adds the counts to
 * aggregated_metrics; the caller commits, so claiming, folding and marking
 * are one atomic unit.  Claiming re-checks "NOT is_processed" on the row it
 * updates, so two sessions can never both count an event.
 *
 * No single event can stop a pass:
 * - ids are any bigint, negative ones and ones at the limits included: the
 *   claim ranges are computed without overflow;
 * - an event dated outside the range the rest of the pipeline can compute
 *   with (ma_fold_in_range(): every timestamp but the first and last month
 *   PostgreSQL accepts) is moved to quarantined_events, with the reason,
 *   instead of being counted;
 * - zero-fill writes no minute older than metric_anomaly.fill_horizon
 *   before the pass and at most metric_anomaly.fill_budget rows per pass,
 *   so the cost of a pass does not depend on how old one event is.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "fold.h"
#include "spi_util.h"

/* Zero-fill settings (see ma_aggregate_define_settings()). */
int			ma_fill_horizon_min = 7 * 24 * 60;
int			ma_fill_budget = 100000;

/*
 * Claims the pending events among ids [$1, $2]: one range scan of the
 * partial index of pending events, updating as it goes.  The bounds come
 * from C, where they are computed without overflow ($1 + n would overflow
 * next to the bigint limit and stop every pass).
 */
static MaStatement claim_stmt = {
	"UPDATE metric_anomaly.business_events e"
	"   SET is_processed = true"
	" WHERE NOT e.is_processed AND e.id >= $1 AND e.id <= $2"
	" RETURNING e.event_type, e.event_timestamp, e.id",
	2, {INT8OID, INT8OID}
};

/* Keeps a copy of the claimed events $1 that cannot be counted, and why. */
static MaStatement quarantine_stmt = {
	"INSERT INTO metric_anomaly.quarantined_events"
	"       (id, event_type, event_timestamp, payload, reason)"
	"SELECT e.id, e.event_type, e.event_timestamp, e.payload, $2"
	"  FROM metric_anomaly.business_events e"
	" WHERE e.id = ANY ($1)",
	2, {INT8ARRAYOID, TEXTOID}
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

/*
 * A new series is zero-filled from its first minute on, but from no earlier
 * than $4 (the fill horizon) and no later than $3 (the first open minute:
 * a first event dated in the future must not leave the present unfilled).
 */

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
	"SELECT u.n, GREATEST(LEAST(min(u.t), $3), $4)"
	"            - interval '1 minute'"
	"  FROM unnest($1::text[], $2::timestamptz[]) AS u(n, t)"
	" GROUP BY u.n"
	"    ON CONFLICT (metric_name) DO NOTHING",
	4, {TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/*
 * Zero-fills every series behind $1 (the last closed minute), the furthest
 * behind first: none from before $2 (the minute before the fill horizon),
 * and at most $3 rows in all.  A series the budget cuts short keeps its
 * place at the front for the next pass.
 */
static MaStatement fill_stmt = {
	"WITH due AS ("
	"    SELECT s.metric_name, GREATEST(s.filled_until, $2) AS old"
	"      FROM metric_anomaly.series s"
	"     WHERE s.filled_until < $1"
	"     ORDER BY s.filled_until, s.metric_name FOR UPDATE),"
	" sized AS ("
	"    SELECT due.metric_name, due.old,"
	"           (pg_catalog.date_part('epoch', $1 - due.old) / 60)::int8 AS need"
	"      FROM due),"
	" granted AS ("
	"    SELECT sized.metric_name, sized.old,"
	"           LEAST(sized.need, GREATEST(0::int8,"
	"               $3 - (pg_catalog.sum(sized.need) OVER w - sized.need))) AS n"
	"      FROM sized"
	"    WINDOW w AS (ORDER BY sized.old, sized.metric_name"
	"                 ROWS UNBOUNDED PRECEDING)),"
	" moved AS ("
	"    UPDATE metric_anomaly.series s"
	"       SET filled_until = granted.old + granted.n * interval '1 minute'"
	"      FROM granted"
	"     WHERE s.metric_name = granted.metric_name AND granted.n > 0"
	" RETURNING s.metric_name, granted.old, s.filled_until AS new)"
	"INSERT INTO metric_anomaly.aggregated_metrics"
	"       (metric_name, metric_timestamp, metric_value, sample_count)"
	"SELECT moved.metric_name, g, 0, 0"
	"  FROM moved, pg_catalog.generate_series(moved.old + interval '1 minute',"
	"                                         moved.new, interval '1 minute') AS g"
	"    ON CONFLICT (metric_name, metric_timestamp) DO NOTHING",
	3, {TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}
};

static MaStatement purge_stmt = {
	"DELETE FROM metric_anomaly.business_events e"
	" WHERE e.ctid = ANY (ARRAY(SELECT c.ctid FROM metric_anomaly.business_events c"
	"                           WHERE c.event_timestamp < $1 AND c.is_processed"
	"                           LIMIT $2))"
	"   AND e.is_processed",
	2, {TIMESTAMPTZOID, INT4OID}
};

/* What one batch collects: the fold, and the events it cannot count. */
typedef struct BatchFold
{
	MaFold	   *fold;
	int64	   *quarantined;	/* ids, in the batch's memory context */
	int			nquarantined;
	int			capacity;
} BatchFold;

static inline void
fold_event(BatchFold *batch, Datum name, Datum ts, Datum id)
{
	text	   *t;

	if (!ma_fold_in_range(DatumGetTimestampTz(ts)))
	{
		if (batch->nquarantined == batch->capacity)
		{
			batch->capacity *= 2;
			batch->quarantined = repalloc(batch->quarantined,
										  sizeof(int64) * batch->capacity);
		}
		batch->quarantined[batch->nquarantined++] = DatumGetInt64(id);
		return;
	}

	t = DatumGetTextPP(name);
	ma_fold_add(batch->fold, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
				DatumGetTimestampTz(ts));
	if ((Pointer) t != DatumGetPointer(name))
		pfree(t);
}

#if PG_VERSION_NUM >= 140000
/* Folds claimed events as the UPDATE returns them, without a tuple table. */
typedef struct FoldReceiver
{
	DestReceiver pub;
	BatchFold  *batch;
} FoldReceiver;

static bool
fold_receive(TupleTableSlot *slot, DestReceiver *self)
{
	FoldReceiver *r = (FoldReceiver *) self;
	bool		isnull;
	Datum		name = slot_getattr(slot, 1, &isnull);
	Datum		ts = slot_getattr(slot, 2, &isnull);
	Datum		id = slot_getattr(slot, 3, &isnull);

	fold_event(r->batch, name, ts, id);
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
 * Claims the events of [first, last] and folds them.
 */
static uint64
claim_and_fold(int64 first, int64 last, BatchFold *batch)
{
	Datum		args[2];

	args[0] = Int64GetDatum(first);
	args[1] = Int64GetDatum(last);
#if PG_VERSION_NUM >= 140000
	{
		FoldReceiver receiver;

		memset(&receiver, 0, sizeof(receiver));
		receiver.pub.receiveSlot = fold_receive;
		receiver.pub.rStartup = fold_startup;
		receiver.pub.rShutdown = fold_shutdown;
		receiver.pub.rDestroy = fold_destroy;
		receiver.pub.mydest = DestNone;
		receiver.batch = batch;
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

			fold_event(batch,
					   SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull),
					   SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull),
					   SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull));
		}
		SPI_freetuptable(tt);
		return n;
	}
#endif
}

/* Keeps the batch's uncountable events in quarantined_events. */
static void
quarantine(BatchFold *batch)
{
	Datum		values[2];
	Datum	   *ids;

	if (batch->nquarantined == 0)
		return;
	ids = palloc(sizeof(Datum) * batch->nquarantined);
	for (int i = 0; i < batch->nquarantined; i++)
		ids[i] = Int64GetDatum(batch->quarantined[i]);
	values[0] = PointerGetDatum(construct_array(ids, batch->nquarantined, INT8OID,
												sizeof(int64), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[1] = CStringGetTextDatum("event_timestamp is outside the range metric_anomaly can compute with");
	ma_execute(&quarantine_stmt, values, NULL, SPI_OK_INSERT, 0);
}

/*
 * Returns the highest event id so far (PG_INT64_MIN when there is none):
 * the end of what a pass claims.
 */
int64
ma_last_event_id(void)
{
	bool		isnull;
	Datum		d;

	ma_execute(&last_id_stmt, NULL, NULL, SPI_OK_SELECT, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? PG_INT64_MIN : DatumGetInt64(d);
}

/* Starts a pass's walk over the ids up to last_id. */
void
ma_claim_start(MaClaimCursor *cursor, int64 last_id)
{
	cursor->next_id = PG_INT64_MIN;
	cursor->last_id = last_id;
	cursor->done = false;
}

/*
 * The oldest minute zero-fill writes in a pass whose first open minute is
 * first_open, less one minute (a filled_until): fill_horizon minutes back,
 * and never before the first minute PostgreSQL can represent.
 */
static TimestampTz
fill_floor(TimestampTz first_open)
{
	int64		back = ((int64) ma_fill_horizon_min + 1) * USECS_PER_MINUTE;

	if (first_open < MIN_TIMESTAMP + back)
		return MIN_TIMESTAMP;
	return first_open - back;
}

/*
 * Claims, folds and marks the pending events among the batch_size ids that
 * start at the lowest pending id at or after the cursor, if that is at most
 * its last id, and moves the cursor past them.  first_open is the pass's
 * first open minute (where a new series' zero-fill starts at the latest).
 * Returns how many events it folded, or -1 when no pending event is left up
 * to the cursor's last id.
 */
int64
ma_aggregate_batch(int batch_size, MaClaimCursor *cursor, TimestampTz first_open)
{
	MemoryContext cxt;
	MemoryContext old;
	Datum		arg;
	bool		isnull;
	int64		first;
	int64		last;
	uint64		nclaimed;
	BatchFold	batch;
	MaFoldEntry **entries;
	uint32		ngroups;
	Datum	   *names;
	Datum	   *minutes;
	Datum	   *counts;
	Datum		values[4];

	if (cursor->done)
		return -1;
	arg = Int64GetDatum(cursor->next_id);
	if (ma_execute(&first_pending_stmt, &arg, NULL, SPI_OK_SELECT, 1) == 0)
		return -1;
	first = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	if (first > cursor->last_id)
		return -1;
	/* first <= last_id, so neither difference nor sum overflows */
	if ((uint64) cursor->last_id - (uint64) first < (uint64) batch_size)
	{
		last = cursor->last_id;
		cursor->done = true;
	}
	else
	{
		last = first + (batch_size - 1);
		cursor->next_id = last + 1;
	}

	cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly fold",
								ALLOCSET_DEFAULT_SIZES);
	batch.fold = ma_fold_create(cxt, 256);
	batch.capacity = 16;
	batch.nquarantined = 0;
	batch.quarantined = MemoryContextAlloc(cxt, sizeof(int64) * batch.capacity);
	nclaimed = claim_and_fold(first, last, &batch);

	old = MemoryContextSwitchTo(cxt);
	quarantine(&batch);
	ngroups = ma_fold_count(batch.fold);
	if (ngroups == 0)
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return 0;
	}
	entries = ma_fold_entries(batch.fold);
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
	values[2] = TimestampTzGetDatum(first_open);
	values[3] = TimestampTzGetDatum(fill_floor(first_open) + USECS_PER_MINUTE);
	ma_execute(&series_stmt, values, NULL, SPI_OK_INSERT, 0);

	MemoryContextDelete(cxt);
	return (int64) (nclaimed - batch.nquarantined);
}

/*
 * Makes every minute of every known series up to last_closed exist as a
 * row (a minute without events is a 0), within the fill horizon and the
 * per-pass budget.  Returns the number of rows added.
 */
int64
ma_zero_fill(TimestampTz last_closed)
{
	Datum		args[3];

	args[0] = TimestampTzGetDatum(last_closed);
	args[1] = TimestampTzGetDatum(fill_floor(last_closed + USECS_PER_MINUTE));
	args[2] = Int64GetDatum(ma_fill_budget);
	return (int64) ma_execute(&fill_stmt, args, NULL, SPI_OK_INSERT, 0);
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

/* Defines the settings of aggregation; called from _PG_init(). */
void
ma_aggregate_define_settings(void)
{
	DefineCustomIntVariable("metric_anomaly.fill_horizon",
							"How far back zero-fill writes minutes without events.",
							"A series is zero-filled from its first event or from this long before the pass, whichever is later; events older than that are still counted.",
							&ma_fill_horizon_min,
							7 * 24 * 60, 1, 366 * 24 * 60,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("metric_anomaly.fill_budget",
							"Most zero rows one pass writes.",
							"Series still behind are filled further by the next pass, the furthest behind first.",
							&ma_fill_budget,
							100000, 1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}
