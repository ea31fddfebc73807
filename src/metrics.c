/*
 * metrics.c
 *		Metrics beyond counts: the definitions fold the events of each batch
 *		in the batch's transaction.
 *
 * The aggregation pass (aggregate.c) loads the definitions once per batch
 * (ma_metrics_begin(): one scan of the small metric_definitions table),
 * hands every event of its scan to the in-memory fold (metric_fold.c) as
 * it counts it, and then writes what the fold collected
 * (ma_metrics_finish()) with a few statements whose size is the batch's
 * points, not its events: business keys, skipped-event counters, series
 * (with the cap), points merged into metric_points, their values in
 * aggregated_metrics, and the derived metrics (fold_derived()).  All of it
 * commits with the round's progress, so the definitions fold exactly once
 * for the same reason the counts do.
 *
 * metric_anomaly.fold_definitions() is the same fold for SQL over a range
 * of already-folded events with its own scan (backfill_metric() calls it
 * for one new definition).
 *
 * Measured (test/bench/metrics.sh, 1,000,000 events, three definitions,
 * 44,643 points): the set-based PL/pgSQL fold this replaces read each
 * batch's events again and took 58 s against 1.7 s for one GROUP BY
 * statement.  Since, reading the range by its index in order, writing
 * points in series order (point_cmp()), keying metric_points by series
 * name with no second index (instead of jsonb dimensions and an index by
 * metric), folding the cursor's rows in a receiver (fold_cursor()),
 * finding a series' last point without a probe (metric_fold.c) and
 * converting numbers without their text (payload.c) took the backend's
 * CPU time for fold_definitions() from 2.42 s to 1.35-1.67 s, against
 * 1.75-1.83 s for the statement (perf stat, alternating, three each, at
 * load 6-7 on 2 cores).  What is left is mostly writing: per point a
 * speculative insert into metric_points and one into aggregated_metrics,
 * 45 MB of WAL in all (the statement fills a new table and writes none).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "tcop/pquery.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "fold.h"
#include "metrics.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(metric_anomaly_fold_definitions);

/*
 * The definitions that read events: the enabled ones, or only_metric ($1)
 * alone, enabled or not.  Resolutions are whole seconds (the trigger allows
 * 1, 5, 15 and 60 minutes).
 */
static MaStatement defs_stmt = {
	"SELECT d.metric_name, d.event_types, d.aggregate, d.threshold, d.value_path,"
	"       d.dimensions, d.filter,"
	"       pg_catalog.date_part('epoch', d.resolution)::int8 * 1000000,"
	"       d.business_key"
	"  FROM metric_anomaly.metric_definitions d"
	" WHERE d.event_types IS NOT NULL"
	"   AND CASE WHEN $1 IS NULL THEN d.enabled ELSE d.metric_name = $1 END"
	" ORDER BY d.metric_name",
	1, {TEXTOID}
};

/*
 * Keys are forgotten in event time: once the metric has counted an event
 * dated dedup_horizon after them.
 */
static MaStatement forget_keys_stmt = {
	"DELETE FROM metric_anomaly.metric_seen_keys k"
	" USING (SELECT d.metric_name, d.dedup_horizon,"
	"               (SELECT pg_catalog.max(s.event_timestamp) FROM metric_anomaly.metric_seen_keys s"
	"                 WHERE s.metric_name = d.metric_name) AS newest"
	"          FROM metric_anomaly.metric_definitions d"
	"         WHERE d.business_key IS NOT NULL) x"
	" WHERE k.metric_name = x.metric_name"
	"   AND k.event_timestamp < x.newest - x.dedup_horizon",
	0, {InvalidOid}
};

/*
 * Remembers the batch's business keys (each at most once per metric) and
 * returns the ordinals of those no earlier batch counted.
 */
static MaStatement keys_stmt = {
	"WITH c AS ("
	"    SELECT * FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]),"
	"                             pg_catalog.unnest($3::int8[]), pg_catalog.unnest($4::timestamptz[]))"
	"           WITH ORDINALITY AS c(m, k, id, ts, o)),"
	" ins AS ("
	"    INSERT INTO metric_anomaly.metric_seen_keys AS s"
	"           (metric_name, business_key, event_id, event_timestamp)"
	"    SELECT c.m, c.k, c.id, c.ts FROM c"
	"        ON CONFLICT (metric_name, business_key) DO NOTHING"
	"    RETURNING s.metric_name, s.business_key)"
	"SELECT c.o FROM c JOIN ins ON ins.metric_name = c.m AND ins.business_key = c.k",
	4, {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID}
};

static MaStatement skipped_stmt = {
	"INSERT INTO metric_anomaly.metric_skipped_events AS s"
	"       (metric_name, reason, events, last_event_id, last_seen_at)"
	"SELECT u.m, u.r, u.n, u.l, pg_catalog.now()"
	"  FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]),"
	"                  pg_catalog.unnest($3::int8[]), pg_catalog.unnest($4::int8[])) AS u(m, r, n, l)"
	"    ON CONFLICT (metric_name, reason) DO UPDATE"
	"   SET events = s.events + excluded.events,"
	"       last_event_id = excluded.last_event_id, last_seen_at = excluded.last_seen_at",
	4, {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID}
};

/*
 * Resolves the batch's series ($1 metric, $2 dimension values; distinct):
 * known series as they are; new ones admitted in dimension order while the
 * metric has fewer than max_series, the others go to the metric's
 * {"_other": true} series.  A series name is at most 200 characters, as
 * alerting keys series (alert.c): a longer one keeps its first 182 and a
 * hash.  Returns, per input ordinal, whether it overflowed and its series
 * name.  Once per batch over its series, not its points or events.
 */
static MaStatement series_stmt = {
	"WITH ds AS ("
	"    SELECT * FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::jsonb[]))"
	"           WITH ORDINALITY AS ds(metric_name, dims, o)),"
	" known AS ("
	"    SELECT ds.o, s.series_name"
	"      FROM ds"
	"      JOIN metric_anomaly.metric_series s"
	"        ON s.metric_name = ds.metric_name AND s.dimensions = ds.dims),"
	" newd AS ("
	"    SELECT ds.o, ds.metric_name, ds.dims, d.max_series,"
	"           CASE WHEN pg_catalog.length(f.name) <= 200 THEN f.name"
	"                ELSE pg_catalog.left(f.name, 182) || '#' || pg_catalog.left(pg_catalog.md5(ds.dims::text), 16) || '}'"
	"           END AS series_name,"
	"           pg_catalog.row_number() OVER (PARTITION BY ds.metric_name ORDER BY ds.dims)"
	"           + (SELECT pg_catalog.count(*) FROM metric_anomaly.metric_series s"
	"               WHERE s.metric_name = ds.metric_name AND s.dimensions <> '{\"_other\": true}') AS rank"
	"      FROM ds"
	"      JOIN metric_anomaly.metric_definitions d ON d.metric_name = ds.metric_name"
	"      CROSS JOIN LATERAL ("
	"            SELECT ds.metric_name || CASE WHEN ds.dims = '{}' THEN ''"
	"                   ELSE '{' || (SELECT pg_catalog.string_agg(x.k || '=' || coalesce(ds.dims ->> x.k, ''), ',' ORDER BY x.o)"
	"                                  FROM pg_catalog.unnest(d.dimensions) WITH ORDINALITY AS x(k, o)) || '}' END AS name) f"
	"     WHERE NOT EXISTS (SELECT 1 FROM known kn WHERE kn.o = ds.o)),"
	" admitted AS ("
	"    INSERT INTO metric_anomaly.metric_series (metric_name, dimensions, series_name)"
	"    SELECT n.metric_name, n.dims, n.series_name FROM newd n WHERE n.rank <= n.max_series"
	"    UNION ALL"
	"    SELECT DISTINCT n.metric_name, '{\"_other\": true}'::jsonb, n.metric_name || '{other}'"
	"      FROM newd n WHERE n.rank > n.max_series"
	"        ON CONFLICT DO NOTHING)"
	"SELECT kn.o, false, kn.series_name FROM known kn"
	" UNION ALL "
	"SELECT n.o, n.rank > n.max_series,"
	"       CASE WHEN n.rank <= n.max_series THEN n.series_name ELSE n.metric_name || '{other}' END"
	"  FROM newd n",
	2, {TEXTARRAYOID, JSONBARRAYOID}
};

/*
 * Merges the batch's points ($1 metric, $2 dimension values of the series,
 * $3 bucket, $4 series name, $5 count, $6 sum, $7 min, $8 max, $9 within,
 * $10 sketch; one per (metric, series, bucket)) into metric_points, their
 * values into aggregated_metrics (re-judged), and gives count and sum
 * metrics of 1 minute zero-filled series (fill_horizon and fill_budget
 * bound that work as for counts); a resting series (metric_fill.c) wakes
 * up from its new point's minute.
 */
static MaStatement points_stmt = {
	"WITH pts AS ("
	"    INSERT INTO metric_anomaly.metric_points AS p"
	"           (metric_name, dimensions, bucket, series_name, count, sum, min, max, within, sketch)"
	"    SELECT * FROM ROWS FROM ("
	"           pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::jsonb[]),"
	"           pg_catalog.unnest($3::timestamptz[]), pg_catalog.unnest($4::text[]),"
	"           pg_catalog.unnest($5::int8[]), pg_catalog.unnest($6::float8[]),"
	"           pg_catalog.unnest($7::float8[]), pg_catalog.unnest($8::float8[]),"
	"           pg_catalog.unnest($9::int8[]), pg_catalog.unnest($10::bytea[]))"
	"        ON CONFLICT (series_name, bucket) DO UPDATE"
	"       SET count = p.count + excluded.count,"
	"           sum = p.sum + excluded.sum,"
	"           min = LEAST(p.min, excluded.min),"
	"           max = GREATEST(p.max, excluded.max),"
	"           within = p.within + excluded.within,"
	"           sketch = metric_anomaly.sketch_merge(p.sketch, excluded.sketch),"
	"           folded_xid = pg_catalog.pg_current_xact_id()"
	"    RETURNING p.metric_name, p.series_name, p.bucket, p.count, p.sum, p.min, p.max,"
	"              p.within, p.sketch),"
	" filled AS ("
	"    INSERT INTO metric_anomaly.series AS s (metric_name, filled_until)"
	"    SELECT pts.series_name,"
	"           LEAST(pg_catalog.min(pts.bucket), pg_catalog.date_trunc('minute', pg_catalog.now())) - interval '1 minute'"
	"      FROM pts JOIN metric_anomaly.metric_definitions d ON d.metric_name = pts.metric_name"
	"     WHERE d.aggregate IN ('count', 'sum') AND d.resolution = interval '1 minute'"
	"     GROUP BY pts.series_name"
	"        ON CONFLICT (metric_name) DO UPDATE SET filled_until = excluded.filled_until"
	"     WHERE s.filled_until = 'infinity')"
	"INSERT INTO metric_anomaly.aggregated_metrics AS a"
	"       (metric_name, metric_timestamp, metric_value, sample_count)"
	"SELECT pts.series_name, pts.bucket,"
	"       CASE d.aggregate"
	"            WHEN 'count' THEN pts.count::double precision"
	"            WHEN 'sum' THEN pts.sum"
	"            WHEN 'avg' THEN pts.sum / pts.count"
	"            WHEN 'min' THEN pts.min"
	"            WHEN 'max' THEN pts.max"
	"            WHEN 'rate' THEN pts.within::double precision / pts.count"
	"            WHEN 'quantile' THEN metric_anomaly.sketch_quantile(pts.sketch, d.quantile)"
	"       END,"
	"       pts.count"
	"  FROM pts JOIN metric_anomaly.metric_definitions d ON d.metric_name = pts.metric_name"
	"    ON CONFLICT (metric_name, metric_timestamp) DO UPDATE"
	"   SET metric_value = excluded.metric_value,"
	"       sample_count = excluded.sample_count,"
	"       needs_eval = true",
	10, {TEXTARRAYOID, JSONBARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
		 FLOAT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, INT8ARRAYOID, BYTEAARRAYOID}
};

static MaStatement derived_stmt = {
	"SELECT metric_anomaly.fold_derived()",
	0, {InvalidOid}
};

/*
 * The events of a range of a round, for fold_definitions(): visible in $2
 * and not in $1, from $1's xmin on (range_first_stmt) or after event
 * ($3, $4) (range_next_stmt), up to event ($5, $6), in (xid, id) order as a
 * pass reads them: one range scan of the (xid, id) index ($3 and $4 are
 * unused by the first).  Planned for a cursor's first rows
 * (CURSOR_OPT_FAST_PLAN): planned for all of them, the planner reads the
 * whole table and sorts it, which for 1,000,000 events took 615-718 ms
 * against 260-508 ms for the index scan (EXPLAIN ANALYZE, both twice), a
 * tenth of the fold (test/bench/metrics.sh).
 */
static MaStatement range_first_stmt = {
	"SELECT e.event_type, e.event_timestamp, e.id, e.payload"
	"  FROM metric_anomaly.business_events e"
	" WHERE e.xid >= pg_catalog.pg_snapshot_xmin($1)"
	"   AND (e.xid, e.id) <= ($5, $6)"
	"   AND pg_catalog.pg_visible_in_snapshot(e.xid, $2)"
	"   AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, $1)"
	" ORDER BY e.xid, e.id",
	6, {PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, XID8OID, INT8OID},
	NULL, CURSOR_OPT_FAST_PLAN
};

static MaStatement range_next_stmt = {
	"SELECT e.event_type, e.event_timestamp, e.id, e.payload"
	"  FROM metric_anomaly.business_events e"
	" WHERE (e.xid, e.id) > ($3, $4)"
	"   AND (e.xid, e.id) <= ($5, $6)"
	"   AND pg_catalog.pg_visible_in_snapshot(e.xid, $2)"
	"   AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, $1)"
	" ORDER BY e.xid, e.id",
	6, {PG_SNAPSHOTOID, PG_SNAPSHOTOID, XID8OID, INT8OID, XID8OID, INT8OID},
	NULL, CURSOR_OPT_FAST_PLAN
};

static MaMetricAgg
parse_agg(const char *s)
{
	static const char *const names[] = {"count", "sum", "avg", "min", "max", "quantile", "rate"};

	for (int i = 0; i < lengthof(names); i++)
		if (strcmp(s, names[i]) == 0)
			return (MaMetricAgg) i;
	/* the trigger lets no other aggregate through for event types */
	elog(ERROR, "metric_anomaly: unknown aggregate \"%s\"", s);
	return MA_AGG_COUNT;		/* keep the compiler quiet */
}

/* A text[] column as a path (n = 0 for NULL); NULL elements are skipped. */
static MaPath
path_of(HeapTuple tup, TupleDesc desc, int col)
{
	MaPath		p = {0, NULL, NULL};
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (isnull)
		return p;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	p.elem = palloc(sizeof(char *) * Max(n, 1));
	p.len = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		p.elem[p.n] = TextDatumGetCString(elems[i]);
		p.len[p.n] = strlen(p.elem[p.n]);
		p.n++;
	}
	return p;
}

/*
 * Loads the definitions that read events (see defs_stmt) into cxt and
 * returns an empty fold for them, or NULL when there are none.
 */
MaMetricFold *
ma_metrics_begin(MemoryContext cxt, const char *only_metric)
{
	Datum		arg;
	char		argnull = only_metric == NULL ? 'n' : ' ';
	uint64		n;
	MaMetricDef *defs;
	MemoryContext old;
	MemoryContext fcxt;

	arg = only_metric == NULL ? (Datum) 0 : CStringGetTextDatum(only_metric);
	n = ma_execute(&defs_stmt, &arg, &argnull, SPI_OK_SELECT, 0);
	if (n == 0)
		return NULL;
	fcxt = AllocSetContextCreate(cxt, "metric_anomaly metric fold",
								 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(fcxt);
	defs = palloc0(sizeof(MaMetricDef) * n);
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MaMetricDef *def = &defs[i];
		bool		isnull;
		Datum		d;

		def->name = SPI_getvalue(tup, desc, 1);
		def->event_types = path_of(tup, desc, 2);
		def->agg = parse_agg(SPI_getvalue(tup, desc, 3));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		def->threshold = isnull ? 0 : DatumGetFloat8(d);
		def->value_path = path_of(tup, desc, 5);
		def->dimensions = path_of(tup, desc, 6);
		d = SPI_getbinval(tup, desc, 7, &isnull);
		def->filter = isnull ? NULL : DatumGetJsonbPCopy(d);
		def->resolution = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		def->business_key = path_of(tup, desc, 9);
		if (def->agg == MA_AGG_COUNT)
			def->value_path.n = 0;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	return ma_metric_fold_create(fcxt, defs, (int) n);
}

/*
 * Folds one event of the batch: type (text), ts (timestamptz), id (int8),
 * payload (jsonb, detoasted only when a definition reads the type).
 * Events the pass quarantines (see ma_fold_in_range()) are not folded.
 */
void
ma_metrics_event(MaMetricFold *fold, Datum type, Datum ts, Datum id,
				 Datum payload, bool payload_null)
{
	text	   *t = DatumGetTextPP(type);
	Jsonb	   *jb;

	if (!ma_fold_in_range(DatumGetTimestampTz(ts)) ||
		!ma_metric_fold_reads(fold, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
		return;
	jb = payload_null ? NULL : DatumGetJsonbP(payload);
	ma_metric_fold_event(fold, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
						 DatumGetTimestampTz(ts), DatumGetInt64(id), jb);
	if (jb != NULL && (Pointer) jb != DatumGetPointer(payload))
		pfree(jb);
}

static Datum
int8_array(int64 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* A one-dimensional array of n datums of type elemtype, with nulls. */
static Datum
array_of(Datum *d, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, elemtype,
											  typlen, typbyval, typalign));
}

/*
 * Settles the held-back keyed events: remembers their keys and merges
 * those no earlier batch counted, counting the others as duplicates.
 */
static void
settle_keys(MaMetricFold *fold)
{
	int			n;
	MaKeyedEvent *ev = ma_metric_fold_keyed(fold, &n);
	MaMetricDef *defs;
	int			ndefs;
	Datum	   *names;
	Datum	   *keys;
	int64	   *ids;
	Datum	   *tss;
	bool	   *fresh;
	Datum		args[4];
	uint64		got;

	if (n == 0)
		return;
	defs = ma_metric_fold_defs(fold, &ndefs);
	names = palloc(sizeof(Datum) * n);
	keys = palloc(sizeof(Datum) * n);
	ids = palloc(sizeof(int64) * n);
	tss = palloc(sizeof(Datum) * n);
	fresh = palloc0(sizeof(bool) * n);
	for (int i = 0; i < n; i++)
	{
		names[i] = CStringGetTextDatum(defs[ev[i].def].name);
		keys[i] = CStringGetTextDatum(ev[i].key);
		ids[i] = ev[i].id;
		tss[i] = TimestampTzGetDatum(ev[i].ts);
	}
	args[0] = array_of(names, NULL, n, TEXTOID);
	args[1] = array_of(keys, NULL, n, TEXTOID);
	args[2] = int8_array(ids, n);
	args[3] = array_of(tss, NULL, n, TIMESTAMPTZOID);
	got = ma_execute(&keys_stmt, args, NULL, SPI_OK_SELECT, 0);
	for (uint64 i = 0; i < got; i++)
	{
		bool		isnull;
		int64		o = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1, &isnull));

		fresh[o - 1] = true;
	}
	SPI_freetuptable(SPI_tuptable);
	for (int i = 0; i < n; i++)
		ma_metric_fold_admit(fold, &ev[i], fresh[i]);
}

/* Adds the batch's skipped events to metric_skipped_events. */
static void
count_skipped(MaMetricFold *fold)
{
	int			ndefs;
	MaMetricDef *defs = ma_metric_fold_defs(fold, &ndefs);
	int			cap = ndefs * MA_SKIP_NREASONS;
	Datum	   *names = palloc(sizeof(Datum) * cap);
	Datum	   *reasons = palloc(sizeof(Datum) * cap);
	int64	   *events = palloc(sizeof(int64) * cap);
	int64	   *last = palloc(sizeof(int64) * cap);
	int			n = 0;
	Datum		args[4];

	for (int d = 0; d < ndefs; d++)
		for (int r = 0; r < MA_SKIP_NREASONS; r++)
		{
			if (defs[d].skipped[r] == 0)
				continue;
			names[n] = CStringGetTextDatum(defs[d].name);
			reasons[n] = CStringGetTextDatum(ma_skip_reason_names[r]);
			events[n] = defs[d].skipped[r];
			last[n] = defs[d].skipped_last_id[r];
			n++;
		}
	if (n == 0)
		return;
	args[0] = array_of(names, NULL, n, TEXTOID);
	args[1] = array_of(reasons, NULL, n, TEXTOID);
	args[2] = int8_array(events, n);
	args[3] = int8_array(last, n);
	ma_execute(&skipped_stmt, args, NULL, SPI_OK_INSERT, 0);
}

/* What the batch's series resolved to (see series_stmt). */
typedef struct ResolvedSeries
{
	int			n;
	Datum	   *dims;			/* jsonb, of the series or {"_other": true} */
	Datum	   *names;			/* text */
	bool	   *overflow;
} ResolvedSeries;

/* Resolves the batch's series against metric_series (with the cap). */
static ResolvedSeries
resolve_series(MaMetricFold *fold)
{
	ResolvedSeries r;
	MaMetricSeries *series = ma_metric_fold_series(fold, &r.n);
	int			ndefs;
	MaMetricDef *defs = ma_metric_fold_defs(fold, &ndefs);
	Datum	   *names = palloc(sizeof(Datum) * Max(r.n, 1));
	Datum		args[2];
	Datum		other;
	uint64		got;

	r.dims = palloc(sizeof(Datum) * Max(r.n, 1));
	r.names = palloc0(sizeof(Datum) * Max(r.n, 1));
	r.overflow = palloc0(sizeof(bool) * Max(r.n, 1));
	if (r.n == 0)
		return r;
	for (int i = 0; i < r.n; i++)
	{
		names[i] = CStringGetTextDatum(defs[series[i].def].name);
		r.dims[i] = JsonbPGetDatum(ma_metric_fold_dims_jsonb(fold, &series[i]));
	}
	args[0] = array_of(names, NULL, r.n, TEXTOID);
	args[1] = array_of(r.dims, NULL, r.n, JSONBOID);
	got = ma_execute(&series_stmt, args, NULL, SPI_OK_SELECT, 0);
	if (got != (uint64) r.n)
		elog(ERROR, "metric_anomaly: %d series resolved to " UINT64_FORMAT, r.n, got);
	other = DirectFunctionCall1(jsonb_in, CStringGetDatum("{\"_other\": true}"));
	for (uint64 i = 0; i < got; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		o = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));

		r.overflow[o - 1] = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		r.names[o - 1] = CStringGetTextDatum(SPI_getvalue(tup, desc, 3));
		if (r.overflow[o - 1])
			r.dims[o - 1] = other;
	}
	SPI_freetuptable(SPI_tuptable);
	return r;
}

/*
 * Orders points by (definition, series, bucket): a series' points then go
 * into neighbouring entries of the unique indexes of metric_points and
 * aggregated_metrics one after the other, instead of in the hash table's
 * order all over them.
 */
static int
point_cmp(const void *a, const void *b)
{
	const MaMetricPoint *p = *(MaMetricPoint *const *) a;
	const MaMetricPoint *q = *(MaMetricPoint *const *) b;

	if (p->key.def != q->key.def)
		return p->key.def < q->key.def ? -1 : 1;
	if (p->series != q->series)
		return p->series < q->series ? -1 : 1;
	if (p->key.bucket != q->key.bucket)
		return p->key.bucket < q->key.bucket ? -1 : 1;
	return 0;
}

/*
 * Merges the batch's points into their series; returns the number of
 * values written.
 */
static int64
write_points(MaMetricFold *fold)
{
	ResolvedSeries r = resolve_series(fold);
	uint32		n;
	MaMetricPoint **pts = ma_metric_fold_points(fold, r.overflow, &n);
	int			ndefs;
	MaMetricDef *defs = ma_metric_fold_defs(fold, &ndefs);
	Datum	   *otherdims = palloc0(sizeof(Datum) * Max(ndefs, 1));
	Datum	   *othernames = palloc0(sizeof(Datum) * Max(ndefs, 1));
	Datum	   *col[10];
	bool	   *valnull = palloc(sizeof(bool) * Max(n, 1));
	bool	   *sknull = palloc(sizeof(bool) * Max(n, 1));
	int64	   *counts = palloc(sizeof(int64) * Max(n, 1));
	int64	   *within = palloc(sizeof(int64) * Max(n, 1));
	Datum		args[10];

	if (n == 0)
		return 0;
	qsort(pts, n, sizeof(MaMetricPoint *), point_cmp);
	for (int c = 0; c < 10; c++)
		col[c] = palloc(sizeof(Datum) * n);
	for (uint32 i = 0; i < n; i++)
	{
		MaMetricPoint *p = pts[i];
		int			d = p->key.def;
		const MaMetricDef *def = &defs[d];

		col[0][i] = CStringGetTextDatum(def->name);
		if (p->series >= 0)
		{
			col[1][i] = r.dims[p->series];
			col[3][i] = r.names[p->series];
		}
		else
		{
			if (othernames[d] == (Datum) 0)
			{
				othernames[d] = CStringGetTextDatum(psprintf("%s{other}", def->name));
				otherdims[d] = DirectFunctionCall1(jsonb_in,
												   CStringGetDatum("{\"_other\": true}"));
			}
			col[1][i] = otherdims[d];
			col[3][i] = othernames[d];
		}
		col[2][i] = TimestampTzGetDatum(p->key.bucket);
		counts[i] = p->count;
		/* a count keeps no values: NULL sum, min and max, as SQL's sum() of none */
		valnull[i] = def->agg == MA_AGG_COUNT;
		col[5][i] = Float8GetDatum(p->sum);
		col[6][i] = Float8GetDatum(p->min);
		col[7][i] = Float8GetDatum(p->max);
		within[i] = p->within;
		sknull[i] = p->sketch == NULL;
		if (p->sketch != NULL)
		{
			Size		len = ma_sketch_serialized_size(p->sketch);
			bytea	   *b = palloc(VARHDRSZ + len);

			SET_VARSIZE(b, VARHDRSZ + len);
			ma_sketch_serialize(p->sketch, VARDATA(b));
			col[9][i] = PointerGetDatum(b);
		}
	}
	args[0] = array_of(col[0], NULL, n, TEXTOID);
	args[1] = array_of(col[1], NULL, n, JSONBOID);
	args[2] = array_of(col[2], NULL, n, TIMESTAMPTZOID);
	args[3] = array_of(col[3], NULL, n, TEXTOID);
	args[4] = int8_array(counts, n);
	args[5] = array_of(col[5], valnull, n, FLOAT8OID);
	args[6] = array_of(col[6], valnull, n, FLOAT8OID);
	args[7] = array_of(col[7], valnull, n, FLOAT8OID);
	args[8] = int8_array(within, n);
	args[9] = array_of(col[9], sknull, n, BYTEAOID);
	return (int64) ma_execute(&points_stmt, args, NULL, SPI_OK_INSERT, 0);
}

/*
 * Writes what the fold collected, in the current transaction, and drops
 * the fold.  Returns the number of series values written.
 */
int64
ma_metrics_finish(MaMetricFold *fold)
{
	int64		written;

	ma_execute(&forget_keys_stmt, NULL, NULL, SPI_OK_DELETE, 0);
	settle_keys(fold);
	count_skipped(fold);
	written = write_points(fold);
	ma_execute(&derived_stmt, NULL, NULL, SPI_OK_SELECT, 1);
	return written;
}

/*
 * Folds the events of a cursor (type, timestamp, id, payload) as the
 * executor returns them: a receiver of PortalRunFetch() sees each row in
 * the scan's slot, where SPI_cursor_fetch() would first copy it into a
 * tuple table (spi_printtup() alone was 4% of fold_definitions() in perf,
 * test/bench/metrics.sh, before the tuples' memory and their reading).
 */
typedef struct EventReceiver
{
	DestReceiver pub;
	MaMetricFold *fold;
} EventReceiver;

static bool
event_receive(TupleTableSlot *slot, DestReceiver *self)
{
	EventReceiver *r = (EventReceiver *) self;

	slot_getallattrs(slot);
	ma_metrics_event(r->fold, slot->tts_values[0], slot->tts_values[1],
					 slot->tts_values[2], slot->tts_values[3], slot->tts_isnull[3]);
	return true;
}

/* Folds every event the (open) cursor portal returns. */
static void
fold_cursor(MaMetricFold *fold, Portal portal)
{
	EventReceiver receiver;

	ma_receiver_init(&receiver.pub, event_receive);
	receiver.fold = fold;
	PortalRunFetch(portal, FETCH_FORWARD, FETCH_ALL, &receiver.pub);
}

/*
 * fold_definitions(folded, round, lo_xid, lo_id, hi_xid, hi_id,
 * only_metric): folds the events of the range (see range_first_stmt) into the
 * enabled definitions, or into only_metric alone, enabled or not; returns
 * the number of series values written.
 */
Datum
metric_anomaly_fold_definitions(PG_FUNCTION_ARGS)
{
	Datum		args[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	MemoryContext cxt;
	MaMetricFold *fold;
	Portal		portal;
	int64		written = 0;
	char	   *only = PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6));

	for (int i = 0; i < 6; i++)
	{
		if (PG_ARGISNULL(i))
		{
			nulls[i] = 'n';
			args[i] = (Datum) 0;
		}
		else
			args[i] = PG_GETARG_DATUM(i);
	}
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(4) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("folded, round, hi_xid and hi_id must not be null")));

	ma_spi_connect();
	cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly fold_definitions",
								ALLOCSET_DEFAULT_SIZES);
	fold = ma_metrics_begin(cxt, only);
	if (fold != NULL)
	{
		portal = ma_open_cursor(PG_ARGISNULL(2) ? &range_first_stmt : &range_next_stmt,
								args, nulls);
		fold_cursor(fold, portal);
		SPI_cursor_close(portal);
		written = ma_metrics_finish(fold);
	}
	MemoryContextDelete(cxt);
	ma_spi_finish();
	PG_RETURN_INT64(written);
}
