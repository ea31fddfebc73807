/*
 * aggregate.c
 *		Fold committed events into per-minute counts, exactly once, without
 *		writing to business_events.
 *
 * PgQ's rule.  Every event carries the id of the transaction that inserted
 * it (business_events.xid, DEFAULT pg_current_xact_id(): the top-level id,
 * also inside a savepoint).  worker_state.folded_snapshot is the position:
 * the events whose xid is visible in it have been counted.  A round takes a
 * new snapshot (round_snapshot) and folds the events visible in it but not
 * in folded_snapshot; then the round's snapshot becomes the position.  A
 * round is folded in batches of batch_size events in (xid, id) order; each
 * batch commits its counts together with the round's progress (round_xid,
 * round_id), so a crash at any point loses and repeats nothing, and the
 * worker_state row, locked by every batch, serialises concurrent passes.
 *
 * Why it holds:
 * - a transaction still open (or prepared, for two-phase commit) when a
 *   round's snapshot is taken is in its xip list, so its events are not in
 *   the round; once it commits they are visible in a later round's snapshot
 *   and not in the position, so exactly that later round counts them;
 * - rows of a rolled-back transaction or savepoint are never visible;
 * - ids commit out of order, but no id is compared: only xids and snapshots;
 * - xid8 is 64 bits wide and does not wrap.
 * Candidates are found through the (xid, id) index from the position's xmin
 * on, so a transaction left open holds the scan start back (as it holds
 * vacuum back) but never changes what is counted.
 *
 * No single event can stop a pass:
 * - ids are any bigint, negative ones and ones at the limits included;
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
#include "metrics.h"
#include "spi_util.h"

/* Zero-fill settings (see ma_aggregate_define_settings()). */
int			ma_fill_horizon_min = 7 * 24 * 60;
int			ma_fill_budget = 100000;

/*
 * The round's position, locked: the row of worker_state serialises
 * concurrent passes.  Snapshots and xids go back and forth as text.
 */
static MaStatement position_stmt = {
	"SELECT w.folded_snapshot::text, w.round_snapshot::text,"
	"       w.round_xid::text, w.round_id"
	"  FROM metric_anomaly.worker_state w FOR UPDATE",
	0, {InvalidOid}
};

/*
 * A new round's snapshot.  Taken by a statement after the lock above, so it
 * is never older than the position another pass committed.
 */
static MaStatement snapshot_stmt = {
	"SELECT pg_catalog.pg_current_snapshot()::text",
	0, {InvalidOid}
};

/*
 * The next events of the round whose snapshot is $2 and whose position is
 * $1: visible in $2, not in $1, in (xid, id) order from the start.  All of
 * them have xid >= xmin($1) and < xmax($2): one range scan of the
 * (xid, id) index.
 */
static MaStatement first_batch_stmt = {
	"SELECT e.event_type, e.event_timestamp, e.id, e.xid, e.payload"
	"  FROM metric_anomaly.business_events e"
	" WHERE e.xid >= pg_catalog.pg_snapshot_xmin($1::pg_catalog.pg_snapshot)"
	"   AND e.xid < pg_catalog.pg_snapshot_xmax($2::pg_catalog.pg_snapshot)"
	"   AND pg_catalog.pg_visible_in_snapshot(e.xid, $2::pg_catalog.pg_snapshot)"
	"   AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, $1::pg_catalog.pg_snapshot)"
	" ORDER BY e.xid, e.id LIMIT $3",
	3, {TEXTOID, TEXTOID, INT4OID}
};

/* The same, after the event (xid $4, id $5) that the last batch ended at. */
static MaStatement next_batch_stmt = {
	"SELECT e.event_type, e.event_timestamp, e.id, e.xid, e.payload"
	"  FROM metric_anomaly.business_events e"
	" WHERE (e.xid, e.id) > ($4::pg_catalog.xid8, $5)"
	"   AND e.xid < pg_catalog.pg_snapshot_xmax($2::pg_catalog.pg_snapshot)"
	"   AND pg_catalog.pg_visible_in_snapshot(e.xid, $2::pg_catalog.pg_snapshot)"
	"   AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, $1::pg_catalog.pg_snapshot)"
	" ORDER BY e.xid, e.id LIMIT $3",
	5, {TEXTOID, TEXTOID, INT4OID, TEXTOID, INT8OID}
};

/* Records the progress of a round that goes on. */
static MaStatement progress_stmt = {
	"UPDATE metric_anomaly.worker_state"
	"   SET round_snapshot = $1::pg_catalog.pg_snapshot,"
	"       round_xid = $2::pg_catalog.xid8, round_id = $3,"
	"       total_events = total_events + $4",
	4, {TEXTOID, TEXTOID, INT8OID, INT8OID}
};

/* Ends a round: its snapshot becomes the position. */
static MaStatement advance_stmt = {
	"UPDATE metric_anomaly.worker_state"
	"   SET folded_snapshot = $1::pg_catalog.pg_snapshot,"
	"       round_snapshot = NULL, round_xid = NULL, round_id = NULL,"
	"       total_events = total_events + $2",
	2, {TEXTOID, INT8OID}
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
 * Adds a batch's counts ($1 series, $2 minute, $3 events) to their
 * minutes, which detection then judges (again).
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

/*
 * The series of a batch, given as runs of consecutive minutes ($1 series,
 * $2 first minute, $3 last minute; a series' runs are apart).  A known
 * series whose filled minutes end right before one of its runs now has
 * them up to the run's end, or up to the last closed minute (before $4,
 * the first open one) if that comes first: so zero-fill passes over a
 * series with an event every minute instead of updating its row and
 * trying to insert the minute the batch just wrote (10,000 such series:
 * 206 ms of a steady pass of 941; this statement took 6 ms more).  A new series
 * is zero-filled from its first minute on, but from no earlier than $5
 * (the fill horizon) and no later than $4 (a first event dated in the
 * future must not leave the present unfilled).
 */
static MaStatement series_stmt = {
	"WITH r AS ("
	"    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS r(n, t0, t1)),"
	" advanced AS ("
	"    UPDATE metric_anomaly.series s"
	"       SET filled_until = LEAST(r.t1, $4 - interval '1 minute')"
	"      FROM r"
	"     WHERE s.metric_name = r.n AND s.filled_until = r.t0 - interval '1 minute'"
	"       AND r.t0 < $4"
	" RETURNING s.metric_name)"
	"INSERT INTO metric_anomaly.series (metric_name, filled_until)"
	"SELECT r.n, GREATEST(LEAST(min(r.t0), $4), $5) - interval '1 minute'"
	"  FROM r"
	" WHERE NOT EXISTS (SELECT FROM advanced a WHERE a.metric_name = r.n)"
	" GROUP BY r.n"
	"    ON CONFLICT (metric_name) DO NOTHING",
	5, {TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
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

/*
 * Deletes folded events dated before $1, at most $2.  Folded: visible in
 * the position (so an old-dated event not yet counted stays).
 */
static MaStatement purge_stmt = {
	"WITH w AS (SELECT w.folded_snapshot AS f FROM metric_anomaly.worker_state w)"
	"DELETE FROM metric_anomaly.business_events e"
	" WHERE e.ctid = ANY (ARRAY("
	"       SELECT c.ctid FROM metric_anomaly.business_events c, w"
	"        WHERE c.event_timestamp < $1"
	"          AND pg_catalog.pg_visible_in_snapshot(c.xid, w.f)"
	"        LIMIT $2))"
	"   AND pg_catalog.pg_visible_in_snapshot(e.xid, (SELECT w.f FROM w))",
	2, {TIMESTAMPTZOID, INT4OID}
};

/*
 * What one batch collects: the fold, the metric definitions' fold (NULL
 * without definitions), and the events it cannot count.
 */
typedef struct BatchFold
{
	MaFold	   *fold;
	MaMetricFold *metrics;
	int64	   *quarantined;	/* ids, in the batch's memory context */
	int			nquarantined;
	int			capacity;
	uint64		nread;			/* events read */
	uint64		last_xid;		/* the last one read (the highest) */
	int64		last_id;
} BatchFold;

static inline void
fold_event(BatchFold *batch, Datum name, Datum ts, Datum id, Datum xid,
		   Datum payload, bool payload_null)
{
	text	   *t;

	batch->nread++;
	batch->last_xid = DatumGetUInt64(xid);
	batch->last_id = DatumGetInt64(id);
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

	if (batch->metrics != NULL)
		ma_metrics_event(batch->metrics, name, ts, id, payload, payload_null);
	t = DatumGetTextPP(name);
	ma_fold_add(batch->fold, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
				DatumGetTimestampTz(ts));
	if ((Pointer) t != DatumGetPointer(name))
		pfree(t);
}

/* Folds events as the scan returns them, without a tuple table. */
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
	Datum		xid = slot_getattr(slot, 4, &isnull);
	bool		payload_null;
	Datum		payload = slot_getattr(slot, 5, &payload_null);

	fold_event(r->batch, name, ts, id, xid, payload, payload_null);
	return true;
}

/* Reads the events that stmt returns for args and folds them. */
static void
read_and_fold(MaStatement *stmt, Datum *args, BatchFold *batch)
{
	FoldReceiver receiver;

	ma_receiver_init(&receiver.pub, fold_receive);
	receiver.batch = batch;
	/* SPI reports a SELECT into another receiver as a utility */
	ma_execute_into(stmt, args, &receiver.pub, SPI_OK_UTILITY);
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

/* Orders fold entries by series, then minute. */
static int
entry_cmp(const void *a, const void *b)
{
	const MaFoldEntry *x = *(MaFoldEntry *const *) a;
	const MaFoldEntry *y = *(MaFoldEntry *const *) b;
	int			c = memcmp(x->key.name, y->key.name, Min(x->key.len, y->key.len));

	if (c != 0)
		return c;
	if (x->key.len != y->key.len)
		return x->key.len < y->key.len ? -1 : 1;
	if (x->key.minute != y->key.minute)
		return x->key.minute < y->key.minute ? -1 : 1;
	return 0;
}

/*
 * Records the series of a batch's n entries (reordered here) in
 * metric_anomaly.series as runs of consecutive minutes (series_stmt); the
 * arrays are built in cxt.
 */
static void
record_series(MemoryContext cxt, MaFoldEntry **entries, uint32 n,
			  TimestampTz first_open)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Datum	   *names = palloc(sizeof(Datum) * n);
	Datum	   *starts = palloc(sizeof(Datum) * n);
	Datum	   *ends = palloc(sizeof(Datum) * n);
	Datum		values[5];
	int			nruns = 0;

	qsort(entries, n, sizeof(MaFoldEntry *), entry_cmp);
	for (uint32 i = 0; i < n; i++)
	{
		MaFoldEntry *e = entries[i];
		MaFoldEntry *prev = i > 0 ? entries[i - 1] : NULL;

		if (prev != NULL && prev->key.len == e->key.len &&
			memcmp(prev->key.name, e->key.name, e->key.len) == 0 &&
			prev->key.minute + USECS_PER_MINUTE == e->key.minute)
		{
			ends[nruns - 1] = TimestampTzGetDatum(e->key.minute);
			continue;
		}
		names[nruns] = PointerGetDatum(cstring_to_text_with_len(e->key.name, e->key.len));
		starts[nruns] = TimestampTzGetDatum(e->key.minute);
		ends[nruns] = starts[nruns];
		nruns++;
	}
	values[0] = PointerGetDatum(construct_array(names, nruns, TEXTOID,
												-1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(starts, nruns, TIMESTAMPTZOID,
												sizeof(TimestampTz), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(ends, nruns, TIMESTAMPTZOID,
												sizeof(TimestampTz), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[3] = TimestampTzGetDatum(first_open);
	values[4] = TimestampTzGetDatum(fill_floor(first_open) + USECS_PER_MINUTE);
	MemoryContextSwitchTo(old);
	ma_execute(&series_stmt, values, NULL, SPI_OK_INSERT, 0);
}

/*
 * Folds the next batch_size events of the round under way (a new round
 * when none is), and records the round's progress or, when the round has
 * no more events, its end.  first_open is the pass's first open minute
 * (where a new series' zero-fill starts at the latest).  Returns how many
 * events it counted (quarantined ones are not) and sets *round_done when
 * the round ended.
 */
int64
ma_aggregate_batch(int batch_size, TimestampTz first_open, bool *round_done)
{
	MemoryContext cxt;
	MemoryContext old;
	SPITupleTable *tt;
	char	   *folded;
	char	   *round;
	char	   *round_xid;
	int64		round_id = 0;
	char		xidbuf[32];
	BatchFold	batch;
	MaFoldEntry **entries;
	uint32		ngroups;
	Datum	   *names;
	Datum	   *minutes;
	Datum	   *counts;
	Datum		values[5];
	int64		counted;

	if (ma_execute(&position_stmt, NULL, NULL, SPI_OK_SELECT, 0) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("metric_anomaly.worker_state must hold exactly one row")));
	tt = SPI_tuptable;
	folded = SPI_getvalue(tt->vals[0], tt->tupdesc, 1);
	round = SPI_getvalue(tt->vals[0], tt->tupdesc, 2);
	round_xid = SPI_getvalue(tt->vals[0], tt->tupdesc, 3);
	if (round_xid != NULL)
	{
		bool		isnull;

		round_id = DatumGetInt64(SPI_getbinval(tt->vals[0], tt->tupdesc, 4, &isnull));
	}
	if (folded == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("metric_anomaly.worker_state.folded_snapshot is null")));
	if (round == NULL)
	{
		ma_execute(&snapshot_stmt, NULL, NULL, SPI_OK_SELECT, 1);
		round = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		round_xid = NULL;
	}

	cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly fold",
								ALLOCSET_DEFAULT_SIZES);
	batch.fold = ma_fold_create(cxt, 256);
	batch.capacity = 16;
	batch.nquarantined = 0;
	batch.quarantined = MemoryContextAlloc(cxt, sizeof(int64) * batch.capacity);
	batch.nread = 0;
	batch.metrics = ma_metrics_begin(cxt, NULL);

	values[0] = CStringGetTextDatum(folded);
	values[1] = CStringGetTextDatum(round);
	values[2] = Int32GetDatum(batch_size);
	if (round_xid == NULL)
		read_and_fold(&first_batch_stmt, values, &batch);
	else
	{
		values[3] = CStringGetTextDatum(round_xid);
		values[4] = Int64GetDatum(round_id);
		read_and_fold(&next_batch_stmt, values, &batch);
	}
	counted = (int64) (batch.nread - batch.nquarantined);

	old = MemoryContextSwitchTo(cxt);
	if (batch.metrics != NULL && batch.nread > 0)
		ma_metrics_finish(batch.metrics);
	quarantine(&batch);
	ngroups = ma_fold_count(batch.fold);
	if (ngroups > 0)
	{
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
		record_series(cxt, entries, ngroups, first_open);
	}
	else
		MemoryContextSwitchTo(old);

	*round_done = batch.nread < (uint64) batch_size;
	if (*round_done)
	{
		values[0] = CStringGetTextDatum(round);
		values[1] = Int64GetDatum(counted);
		ma_execute(&advance_stmt, values, NULL, SPI_OK_UPDATE, 1);
	}
	else
	{
		snprintf(xidbuf, sizeof(xidbuf), UINT64_FORMAT, batch.last_xid);
		values[0] = CStringGetTextDatum(round);
		values[1] = CStringGetTextDatum(xidbuf);
		values[2] = Int64GetDatum(batch.last_id);
		values[3] = Int64GetDatum(counted);
		ma_execute(&progress_stmt, values, NULL, SPI_OK_UPDATE, 1);
	}

	MemoryContextDelete(cxt);
	return counted;
}
/*
 * Makes every minute of every known series up to last_closed exist as a
 * row (a minute without events is a 0), within the fill horizon and the
 * per-pass budget; definition series without events for the horizon rest
 * instead (metric_fill.c).  Returns the number of rows added.
 */
int64
ma_zero_fill(TimestampTz last_closed)
{
	Datum		args[3];

	args[0] = TimestampTzGetDatum(last_closed);
	args[1] = TimestampTzGetDatum(fill_floor(last_closed + USECS_PER_MINUTE));
	args[2] = Int64GetDatum(ma_fill_budget);
	ma_metrics_rest(last_closed, DatumGetTimestampTz(args[1]));
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
