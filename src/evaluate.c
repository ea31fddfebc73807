/*
 * evaluate.c
 *		The detection step of a pass.
 *
 * Rows of aggregated_metrics with needs_eval set (new minutes, zero-filled
 * minutes, and minutes a late event changed) are evaluated once their minute
 * is closed.  One cursor reads, per series, its settings (its definition's
 * detection under the non-NULL columns of its metric_anomaly.metrics row,
 * as series_settings() merges them; parsed by the code that parses
 * detect_series() settings), the dirty rows together with the window of
 * history before them, and, for the robust method, the seasonal lag samples
 * of the dirty minutes (MA_SEASON_SAMPLES per season and dirty minute, read
 * by primary key, and only once the series is two seasons old: a young
 * series costs no seasonal reads).  Each dirty point is judged by
 * ma_detect_point() (detect.c), exactly as detect_series() judges it, and
 * the verdicts are written back in batches, in the caller's transaction.
 * Cost per point is O(window log window) for robust (two medians), O(window)
 * for 3-sigma; memory is one fetch of FETCH_SERIES series and at most
 * FLUSH_POINTS verdicts.  Series are judged GROUP_SERIES to a
 * subtransaction, and a group in which one fails again one series to a
 * subtransaction (isolate.c): the one that fails is recorded and skipped.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "alert.h"
#include "detect.h"
#include "detect_cache.h"
#include "detect_cache_sql.h"
#include "detect_sql.h"
#include "evaluate.h"
#include "isolate.h"
#include "metric_anomaly.h"
#include "spi_util.h"

#define FETCH_SERIES	1000
#define FLUSH_POINTS	10000

/*
 * Series judged in one subtransaction.  A subtransaction a series cost
 * about 2% of a steady pass (on 13 to 15 the end of each walks every
 * setting while the pass has set some); one that fails is judged again
 * one series at a time (judge_group()).
 */
#define GROUP_SERIES	32

/*
 * Seconds past a seasonal range a pass reads at most when the backend
 * holds what it reads: with 1500 the six ranges of a series are read once
 * in 25 minutes, not each minute, and a range held is 60 rows at most (64
 * with the allocator's rounding: 6 kB a series).  It must stay well under
 * a day: the query relies on held seasonal rows ending over a day before
 * the held window does.  The reach of a read is cut so that it ends on a
 * minute of the series' own phase (its name's hash, modulo 25): series
 * judged for the first time in the same pass (all of them, after a
 * restart) would otherwise all read their ranges again in the same later
 * pass, every 25 minutes; so a pass reads about a 25th of them.
 */
#define SEASON_PREFETCH_S	1500

/* how far a dirty minute's seasonal samples reach before and after it */
#define SEASON_BEFORE_US	((int64) (MA_SEASON_HALF + 1) * MA_SEASON_STEP_S * USECS_PER_SEC)
#define SEASON_AFTER_US		((int64) MA_SEASON_HALF * MA_SEASON_STEP_S * USECS_PER_SEC)

/*
 * Per series with rows to evaluate: its settings, the minutes to evaluate,
 * and its rows from window minutes before the first of them to the last, as
 * arrays in time order.  The history comes from the primary key index
 * alone (it includes metric_value).
 */
static MaStatement pending_stmt = {
	"WITH d AS ("
	"    SELECT n.metric_name, array_agg(n.metric_timestamp) AS dirty,"
	"           min(n.metric_timestamp) AS lo, max(n.metric_timestamp) AS hi"
	"      FROM metric_anomaly.aggregated_metrics n"
	"     WHERE n.needs_eval AND n.metric_timestamp <= $1"
	"     GROUP BY n.metric_name),"
	" s AS ("
	"    SELECT d.metric_name, d.dirty, d.lo, d.hi,"
	"           coalesce((st.settings OPERATOR(pg_catalog.->>) 'window_size')::numeric::int,"
	"                    CASE WHEN coalesce(st.settings OPERATOR(pg_catalog.->>) 'method', 'robust') = 'robust'"
	"                         THEN $6 ELSE $2 END) AS win,"
	"           coalesce(c.enabled, true) AS enabled,"
	"           st.settings,"
	"           coalesce(st.settings OPERATOR(pg_catalog.->>) 'method', 'robust') = 'robust' AS robust,"
	"           coalesce(st.settings OPERATOR(pg_catalog.->>) 'seasonality', 'auto') AS seasonality"
	"      FROM d LEFT JOIN metric_anomaly.metrics c"
	"        ON c.metric_name = d.metric_name"
	/*
	 * series_settings() inline, the same rule: over 2,000 series a call
	 * each takes 37 ms (a SQL function with its own search_path), these
	 * joins 1.7 ms (the metrics row alone 0.7 ms), in a pass judging one
	 * minute of each that takes 210 ms.
	 */
	"      LEFT JOIN metric_anomaly.metric_definitions md"
	"        ON md.metric_name = pg_catalog.split_part(d.metric_name, '{', 1)"
	"       AND EXISTS (SELECT 1 FROM metric_anomaly.metric_series ms"
	"                    WHERE ms.series_name = coalesce(md.numerator, md.metric_name)"
	"                          OPERATOR(pg_catalog.||) pg_catalog.substr(d.metric_name, pg_catalog.length(md.metric_name) + 1)"
	"                      AND ms.metric_name = coalesce(md.numerator, md.metric_name))"
	"     CROSS JOIN LATERAL (SELECT coalesce(md.detection, '{}')"
	"                                OPERATOR(pg_catalog.||) coalesce(pg_catalog.jsonb_strip_nulls("
	"                                    pg_catalog.to_jsonb(c) OPERATOR(pg_catalog.-) 'metric_name'"
	"                                    OPERATOR(pg_catalog.-) 'enabled'"
	"                                    OPERATOR(pg_catalog.-) 'description'), '{}') AS settings"
	/*
	 * once a row (OFFSET 0 keeps the planner from pulling the expression
	 * up into each of the five places that read it: 10,000 series with a
	 * metrics row each took 330 ms to build their settings, not 66)
	 */
	"                         OFFSET 0) st),"
	/*
	 * what this backend holds of the series (detect_cache.h; all NULL
	 * when nothing), by a lookup in its hash table: a join with arrays of
	 * what is held was planned as a nested loop (the dirty series are
	 * estimated at one row), 53 s for 10,000 series.  The held window
	 * serves when every dirty minute comes after it and the window starts
	 * inside it: then only the rows after it are read (and not the first
	 * minute, which only a dirty minute before it could move).  The
	 * lookup is STABLE, so the query is one nested loop in the order of
	 * the dirty minutes' index, and the cursor hands out series as it
	 * reads them: a series' entry changes only once its own row has been
	 * judged (series_hold()).  (A fence here, an OFFSET 0 or a VOLATILE
	 * lookup, loses that order: the rows are then all read and sorted by
	 * name before the first comes out, a cold pass's windows included,
	 * 100 MB of temporary file for 10,000 series.)
	 */
	" w AS ("
	"    SELECT s.*, coalesce(c.wuntil < s.lo AND c.wfrom <= s.lo - s.win * interval '1 minute', false) AS wcached,"
	"           c.wuntil AS held, c.first AS held_first, c.periods AS held_periods,"
	"           c.s0 AS held_s0, c.s1 AS held_s1"
	"      FROM s CROSS JOIN LATERAL metric_anomaly.detect_cache_held(s.metric_name) c),"
	" f AS ("
	"    SELECT w.*, CASE WHEN NOT w.robust THEN NULL"
	"                     WHEN w.wcached AND w.held_first IS NOT NULL THEN w.held_first"
	"                     ELSE (SELECT min(fm.metric_timestamp)"
	"                             FROM metric_anomaly.aggregated_metrics fm"
	"                            WHERE fm.metric_name = w.metric_name) END AS first"
	"      FROM w),"
	/*
	 * seasonal periods worth reading (bits: 1 daily, 2 weekly): the series
	 * has two seasons back.  Periods are intervals of hours, not days: a
	 * season is 24 hours (MA_DAY_S), as ma_season_gather() takes its lags,
	 * and a day of an interval is one of the session's calendar, which on
	 * the day daylight saving time begins or ends in its zone is 23 or 25
	 * hours (the ranges read then missed every lag sample, and the worker
	 * judged without the seasonal baselines detect_series() used).
	 */
	" m AS ("
	"    SELECT f.*,"
	"           CASE WHEN f.robust AND f.seasonality IN ('auto', 'daily')"
	"                 AND f.first <= f.hi - 2 * interval '24 hours' + $3 * interval '1 second'"
	"                THEN 1 ELSE 0 END"
	"         + CASE WHEN f.robust AND f.seasonality IN ('auto', 'weekly')"
	"                 AND f.first <= f.hi - 2 * interval '168 hours' + $3 * interval '1 second'"
	"                THEN 2 ELSE 0 END AS pmask"
	"      FROM f),"
	/*
	 * the held seasonal ranges serve when the window does (so no dirty
	 * minute lies in them: they end over a day before it), the periods
	 * are the same, and the ranges of the dirty minutes lie inside them
	 */
	" p AS ("
	/*
	 * (a CASE, not a subquery: the planner copies the expression into each
	 * place that reads periods, and as a subquery it ran five times a
	 * series, about 10 us)
	 */
	"    SELECT m.*, CASE m.pmask WHEN 0 THEN '{}'::interval[]"
	"                             WHEN 1 THEN '{24 hours}'::interval[]"
	"                             WHEN 2 THEN '{168 hours}'::interval[]"
	"                             ELSE '{24 hours, 168 hours}'::interval[] END AS periods,"
	"           coalesce(m.wcached AND m.held_periods = m.pmask"
	"                    AND m.held_s0 <= m.lo - ($3 + $4) * interval '1 second'"
	"                    AND m.hi + $3 * interval '1 second' <= m.held_s1, false) AS scached,"
	/* the prefetch in seconds, to the series' phase (SEASON_PREFETCH_S) */
	"           CASE WHEN $7 < 60 THEN $7"
	"                ELSE $7 - 60 * ((pg_catalog.floor(pg_catalog.date_part('epoch', m.hi) / 60)::int8"
	"                                 + (pg_catalog.hashtext(m.metric_name) OPERATOR(pg_catalog.&) 1023))"
	"                                % ($7 / 60))::int4 END AS reach"
	"      FROM m)"
	"SELECT p.metric_name, p.settings, p.enabled, p.dirty, h.ts, h.vals, z.sts, z.svals,"
	"       p.wcached, p.scached, p.win, p.first, p.pmask, p.reach"
	"  FROM p CROSS JOIN LATERAL ("
	"        SELECT array_agg(o.metric_timestamp) AS ts,"
	"               array_agg(o.metric_value) AS vals"
	"          FROM (SELECT a.metric_timestamp, a.metric_value"
	"                  FROM metric_anomaly.aggregated_metrics a"
	"                 WHERE a.metric_name = p.metric_name"
	"                   AND a.metric_timestamp >= CASE WHEN p.wcached"
	"                                                  THEN p.held + interval '1 microsecond'"
	"                                                  ELSE p.lo - p.win * interval '1 minute' END"
	"                   AND a.metric_timestamp <= p.hi"
	"                 ORDER BY a.metric_timestamp) o) h"
	/*
	 * seasonal samples: the new minutes grouped into islands (a gap of more
	 * than the 35 minutes a range widens by starts a new one), and for each
	 * island, period and season k back one range of the index: the island
	 * moved k periods back and widened by the lag samples' reach, 15
	 * minutes after (up to $7 seconds more when the backend holds what it
	 * reads: the next reach / 60 minutes then read no seasonal rows) and 20 before (one
	 * step more, where a missing minute's sample is the point before it, as
	 * in detect_series()).  So a backlog
	 * reads about its own span six times, and minutes far apart (a late
	 * event a year back) do not make a range of the years between them.
	 * Ranges overlap for an island over a day long, and the rows they share
	 * come twice; ma_season_sort() puts the rows in time order and takes
	 * those as one (equal times, equal values): a DISTINCT cost more than
	 * the reads (0.6 of 1.0 ms a series), and so did an ORDER BY in the
	 * aggregates, which begins two sorts for every series, also for the
	 * many that read nothing here (about 50 ms of a steady pass over 10,000
	 * seasonal series).
	 */
	"  CROSS JOIN LATERAL ("
	"        SELECT array_agg(a.metric_timestamp) AS sts, array_agg(a.metric_value) AS svals"
	"          FROM (SELECT min(g.t) AS t0, max(g.t) AS t1"
	"                  FROM (SELECT b.t, count(*) FILTER (WHERE b.brk) OVER (ORDER BY b.t) AS island"
	"                          FROM (SELECT d.t, d.t - pg_catalog.lag(d.t) OVER (ORDER BY d.t)"
	"                                            > (2 * $3 + $4) * interval '1 second' AS brk"
	"                                  FROM unnest(p.dirty) AS d(t)) b) g"
	"                 GROUP BY g.island) r,"
	"               unnest(p.periods) AS q(period), generate_series(1, $5) AS k,"
	/*
	 * one index range per range (OFFSET 0 keeps the subquery from being
	 * flattened into a join): flattened, the planner (which takes the
	 * unnests for ten rows each, so 300 ranges) chose, once a series had
	 * about a thousand rows, to read all of them and filter (10,000 such
	 * series: the query 0.4 s a pass, then 2.1 to 3.1 s)
	 */
	"               LATERAL (SELECT a.metric_timestamp, a.metric_value"
	"                          FROM metric_anomaly.aggregated_metrics a"
	"                         WHERE a.metric_name = p.metric_name"
	"                           AND a.metric_timestamp > r.t0 - k * q.period - ($3 + $4) * interval '1 second'"
	"                           AND a.metric_timestamp <= r.t1 - k * q.period + ($3 + p.reach) * interval '1 second'"
	"                        OFFSET 0) a"
	/*
	 * only series with periods whose held ranges do not serve: a test of p
	 * alone at this level, which the planner makes a one-time filter that
	 * skips the whole subquery (inside it, on the dirty minutes, it cost a
	 * steady pass of 10,000 series 76 ms of the statement's 197 in islands
	 * of no rows)
	 */
	"         WHERE p.periods <> '{}' AND NOT p.scached) z"
	" ORDER BY p.metric_name",
	7, {TIMESTAMPTZOID, INT4OID, INT4OID, INT4OID, INT4OID, INT4OID, INT4OID}
};

/*
 * The verdicts of a flush, as arrays of equal length.  The unnests are in
 * a select list, where they stream (ProjectSet): unnest() in FROM first
 * copies its rows into a tuplestore, which for FLUSH_POINTS verdicts of
 * about 540 bytes of evidence each passed work_mem and went to a
 * temporary file (16 ms of the statement's 141, in a steady pass).
 *
 * A verdict is written only while the row still holds the value judged
 * and still needs it (on a row another transaction changed meanwhile, the
 * UPDATE tests these again on the row's new version; passes themselves
 * are serialised): an UPDATE by hand committed while the pass ran leaves
 * the row dirty for the next pass instead of under a verdict of a value
 * it no longer holds, and a row deleted meanwhile gets none.  The
 * statement returns the positions of the verdicts it wrote, and only
 * those go to alerting.
 */
static MaStatement verdict_stmt = {
	"UPDATE metric_anomaly.aggregated_metrics a"
	"   SET is_anomaly = u.anomaly, anomaly_context = u.context,"
	"       needs_eval = false"
	"  FROM (SELECT unnest($1::text[]) AS n, unnest($2::timestamptz[]) AS t,"
	"               unnest($3::float8[]) AS v, unnest($4::bool[]) AS anomaly,"
	"               unnest($5::jsonb[]) AS context,"
	"               pg_catalog.generate_subscripts($1, 1) AS i) u"
	" WHERE a.metric_name = u.n AND a.metric_timestamp = u.t"
	"   AND a.metric_value = u.v AND a.needs_eval"
	" RETURNING u.i",
	5, {TEXTARRAYOID, TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID, BOOLARRAYOID,
	JSONBARRAYOID}
};

/* One series read from the cursor: settings, then its rows in time order. */
typedef struct Series
{
	char	   *name;
	MaDetectSettings settings;
	bool		enabled;
	int			n;
	TimestampTz *ts;
	double	   *values;
	bool	   *target;
	/* seasonal lag samples of the dirty minutes, in time order */
	int			sn;
	TimestampTz *sts;
	double	   *svals;
	/* the dirty minutes, and what the query made of the held rows */
	int			ndirty;
	TimestampTz *dirty;
	bool		wcached;		/* ts/values: held rows, then rows read */
	bool		scached;		/* sts/svals: held rows only */
	int			win;			/* minutes of window the query reads */
	bool		has_first;
	TimestampTz first;
	int			periods;
	int			reach;			/* seconds the seasonal ranges read ahead */
} Series;

/* Verdicts waiting to be written. */
typedef struct Verdicts
{
	MemoryContext cxt;
	int			n;
	int			cap;
	MaEvaluatedPoint *points;
} Verdicts;

static void
verdicts_add(Verdicts *v, const Series *s, int i, const MaVerdict *r)
{
	MaEvaluatedPoint *p;

	if (v->n == v->cap)
	{
		v->cap = v->cap ? v->cap * 2 : 1024;
		v->points = v->points ?
			repalloc(v->points, sizeof(MaEvaluatedPoint) * v->cap) :
			MemoryContextAlloc(v->cxt, sizeof(MaEvaluatedPoint) * v->cap);
	}
	p = &v->points[v->n++];
	/* the series' memory is reset before the verdicts are written */
	if (v->n > 1 && strcmp(v->points[v->n - 2].metric_name, s->name) == 0)
		p->metric_name = v->points[v->n - 2].metric_name;
	else
		p->metric_name = MemoryContextStrdup(v->cxt, s->name);
	p->minute = s->ts[i];
	p->value = s->values[i];
	p->evaluated = r != NULL && r->judged;
	p->is_anomaly = p->evaluated ? r->is_anomaly : false;
	p->method = ma_method_name(s->settings.method);
	ma_detect_alert_rule(&s->settings, &p->alert_after, &p->alert_window);
	if (p->evaluated)
	{
		MemoryContext old = MemoryContextSwitchTo(v->cxt);

		p->context = ma_verdict_context(r);
		MemoryContextSwitchTo(old);
	}
	else
		p->context = NULL;
}

/*
 * Writes the pending verdicts and hands those written to alerting, in
 * their order (by series, then minute).
 */
static void
verdicts_flush(Verdicts *v)
{
	Datum	   *names;
	Datum	   *minutes;
	Datum	   *vals;
	Datum	   *flags;
	Datum	   *contexts;
	bool	   *ctxnulls;
	bool	   *written;
	Datum		values[5];
	int			dims[1];
	int			lbs[1] = {1};
	uint64		nwritten;
	int			kept = 0;

	MemoryContext old;

	if (v->n == 0)
		return;

	old = MemoryContextSwitchTo(v->cxt);
	names = palloc(sizeof(Datum) * v->n);
	minutes = palloc(sizeof(Datum) * v->n);
	vals = palloc(sizeof(Datum) * v->n);
	flags = palloc(sizeof(Datum) * v->n);
	contexts = palloc(sizeof(Datum) * v->n);
	ctxnulls = palloc(sizeof(bool) * v->n);
	for (int i = 0; i < v->n; i++)
	{
		names[i] = CStringGetTextDatum(v->points[i].metric_name);
		minutes[i] = TimestampTzGetDatum(v->points[i].minute);
		vals[i] = Float8GetDatum(v->points[i].value);
		flags[i] = BoolGetDatum(v->points[i].is_anomaly);
		contexts[i] = PointerGetDatum(v->points[i].context);
		ctxnulls[i] = v->points[i].context == NULL;
	}
	dims[0] = v->n;
	values[0] = PointerGetDatum(construct_array(names, v->n, TEXTOID,
												-1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(minutes, v->n, TIMESTAMPTZOID,
												sizeof(TimestampTz), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(vals, v->n, FLOAT8OID,
												sizeof(float8), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(flags, v->n, BOOLOID,
												1, true, TYPALIGN_CHAR));
	values[4] = PointerGetDatum(construct_md_array(contexts, ctxnulls, 1, dims, lbs,
												   JSONBOID, -1, false,
												   TYPALIGN_INT));
	nwritten = ma_execute(&verdict_stmt, values, NULL, SPI_OK_UPDATE_RETURNING, 0);

	/* keep the points written, in their order */
	written = palloc0(sizeof(bool) * v->n);
	for (uint64 r = 0; r < nwritten; r++)
	{
		bool		isnull;
		int			i = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
													SPI_tuptable->tupdesc, 1, &isnull));

		written[i - 1] = true;
	}
	SPI_freetuptable(SPI_tuptable);
	for (int i = 0; i < v->n; i++)
		if (written[i])
			v->points[kept++] = v->points[i];

	/* outbox rows commit with the verdicts, or neither does */
	ma_alerts_after_detection(v->points, kept);
	MemoryContextSwitchTo(old);

	v->n = 0;
}

/* Evaluates every dirty point of a complete series. */
static int64
series_evaluate(Series *s, Verdicts *v)
{
	int64		evaluated = 0;

	for (int i = 0; i < s->n; i++)
	{
		int			first;
		MaVerdict	r;

		if (!s->target[i])
			continue;
		if (!s->enabled)
		{
			verdicts_add(v, s, i, NULL);
			continue;
		}
		first = Max(0, i - ma_detect_window(&s->settings));
		ma_detect_point(&s->settings, &s->values[first], i - first,
						s->sts, s->svals, s->sn, s->ts[i], s->values[i], &r);
		verdicts_add(v, s, i, &r);
		if (r.judged)
			evaluated++;
	}
	return evaluated;
}

/*
 * Points *out at the elements of a one-dimensional array of a fixed-size,
 * 8-byte type without NULLs; returns their number.
 */
static int
array_elements(Datum d, Oid elemtype, void **out)
{
	ArrayType  *a = DatumGetArrayTypeP(d);

	if (ARR_HASNULL(a) || ARR_ELEMTYPE(a) != elemtype || ARR_NDIM(a) != 1)
		elog(ERROR, "metric_anomaly: unexpected array in the detection query");
	*out = ARR_DATA_PTR(a);
	return ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
}

/*
 * Opens the pending query's cursor planned without JIT.  Its estimated
 * cost (one nested loop per series) passes jit_above_cost at a few
 * thousand series, and compiling it took 65 ms of a pass on a quiet
 * machine and over 1 s at load 12, for a query whose work is index
 * descents, not expressions (test/bench/detect.sh, README).
 */
static Portal
open_pending(Datum *args)
{
	int			nest = NewGUCNestLevel();
	Portal		portal;

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	portal = ma_open_cursor(&pending_stmt, args, NULL);
	AtEOXact_GUC(true, nest);
	return portal;
}

/*
 * The window of a series whose query read only the rows after what the
 * backend holds: the held rows from the window's start, then those.
 */
static void
window_merge(Series *s, const MaDcacheEntry *e, TimestampTz *rts,
			 double *rvals, int rn)
{
	TimestampTz start = s->dirty[0] - (int64) s->win * USECS_PER_MINUTE;
	int			first = 0;
	int			n;

	if (rn > 0 && rts[0] <= e->wuntil)
		elog(ERROR, "metric_anomaly: detection read rows its cache holds");
	while (first < e->window.n && e->window.ts[first] < start)
		first++;
	n = e->window.n - first;
	s->ts = palloc(sizeof(TimestampTz) * Max(n + rn, 1));
	s->values = palloc(sizeof(double) * Max(n + rn, 1));
	memcpy(s->ts, e->window.ts + first, sizeof(TimestampTz) * n);
	memcpy(s->values, e->window.vals + first, sizeof(double) * n);
	memcpy(s->ts + n, rts, sizeof(TimestampTz) * rn);
	memcpy(s->values + n, rvals, sizeof(double) * rn);
	s->n = n + rn;
}

/* Fills s from one row of the pending query. */
static void
series_read(Series *s, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		d;
	void	   *p;
	TimestampTz *rts = NULL;
	double	   *rvals = NULL;
	int			rn = 0;
	const MaDcacheEntry *held = NULL;

	s->name = SPI_getvalue(tup, desc, 1);
	ma_detect_settings_defaults(&s->settings);
	ma_detect_settings_apply(&s->settings,
							 DatumGetJsonbP(SPI_getbinval(tup, desc, 2, &isnull)));
	s->enabled = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	s->wcached = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
	s->scached = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	s->win = DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull));
	d = SPI_getbinval(tup, desc, 12, &isnull);
	s->has_first = !isnull;
	s->first = isnull ? 0 : DatumGetTimestampTz(d);
	s->periods = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
	s->reach = DatumGetInt32(SPI_getbinval(tup, desc, 14, &isnull));
	if (s->wcached || s->scached)
	{
		held = ma_dcache_lookup(s->name);
		if (held == NULL)
			elog(ERROR, "metric_anomaly: detection's cache lost an entry its query used");
	}

	/*
	 * The dirty minutes, in time order: the query aggregates them without
	 * an ORDER BY, which on 13 to 15 sorts every group, also one of a
	 * single row, and they come in the index's order anyway.
	 */
	s->ndirty = array_elements(SPI_getbinval(tup, desc, 4, &isnull), TIMESTAMPTZOID, &p);
	s->dirty = p;
	for (int i = 1; i < s->ndirty; i++)
		if (s->dirty[i] <= s->dirty[i - 1])
		{
			s->dirty = palloc(sizeof(TimestampTz) * s->ndirty);
			memcpy(s->dirty, p, sizeof(TimestampTz) * s->ndirty);
			qsort(s->dirty, s->ndirty, sizeof(TimestampTz), ma_cmp_time);
			break;
		}
	d = SPI_getbinval(tup, desc, 5, &isnull);
	if (!isnull)
	{
		rn = array_elements(d, TIMESTAMPTZOID, &p);
		rts = p;
		if (array_elements(SPI_getbinval(tup, desc, 6, &isnull), FLOAT8OID, &p) != rn)
			elog(ERROR, "metric_anomaly: arrays of unequal length in the detection query");
		rvals = p;
	}
	if (s->wcached)
		window_merge(s, held, rts, rvals, rn);
	else
	{
		s->n = rn;
		s->ts = rts;
		s->values = rvals;
	}

	s->sn = 0;
	s->sts = NULL;
	s->svals = NULL;
	if (s->scached && s->periods != 0)
	{
		int			cap = ma_dcache_season_count(held);

		s->sts = palloc(sizeof(TimestampTz) * Max(cap, 1));
		s->svals = palloc(sizeof(double) * Max(cap, 1));
		s->sn = ma_dcache_season_rows(held, s->sts, s->svals);
	}
	else
	{
		d = SPI_getbinval(tup, desc, 7, &isnull);
		if (!isnull)
		{
			int			sn = array_elements(d, TIMESTAMPTZOID, &p);

			/* in the query's order: copied, to be sorted */
			s->sts = palloc(sizeof(TimestampTz) * sn);
			memcpy(s->sts, p, sizeof(TimestampTz) * sn);
			if (array_elements(SPI_getbinval(tup, desc, 8, &isnull), FLOAT8OID, &p) != sn)
				elog(ERROR, "metric_anomaly: arrays of unequal length in the detection query");
			s->svals = palloc(sizeof(double) * sn);
			memcpy(s->svals, p, sizeof(double) * sn);
			s->sn = ma_season_sort(s->sts, s->svals, sn);
		}
	}

	/* both lists are in time order: mark the dirty minutes in one walk */
	s->target = palloc0(sizeof(bool) * Max(s->n, 1));
	for (int i = 0, j = 0; i < s->n && j < s->ndirty; i++)
	{
		while (j < s->ndirty && s->dirty[j] < s->ts[i])
			j++;
		if (j < s->ndirty && s->dirty[j] == s->ts[i])
			s->target[i] = true;
	}
}

/*
 * Keeps what the next pass of a judged series needs: its window's rows
 * from a window before its last dirty minute, its first minute, and its
 * seasonal ranges' rows (those just read, which reach s->reach seconds
 * further, at most twice SEASON_PREFETCH_S) from its last dirty minute's
 * reach on.
 */
static void
series_hold(const Series *s)
{
	MaDcacheEntry *e = ma_dcache_open(s->name);
	TimestampTz hi;

	StaticAssertStmt(2 * SEASON_PREFETCH_S + MA_SEASON_HALF * MA_SEASON_STEP_S < MA_DAY_S / 2,
					 "seasonal prefetch must stay well under a day");
	ma_detect_cache_count(s->wcached, s->scached && s->periods != 0);
	if (e == NULL || s->ndirty == 0)
		return;
	hi = s->dirty[s->ndirty - 1];
	ma_dcache_set_window(e, s->ts, s->values, s->n,
						 hi - (int64) s->win * USECS_PER_MINUTE, hi);
	e->first = s->has_first ? s->first : 0;
	if (s->periods == 0)
		ma_dcache_set_season(e, 0, 0, 0, NULL, NULL, 0);
	else if (!s->scached)
	{
		/* the last island of dirty minutes, as the query groups them */
		int			i = s->ndirty - 1;

		while (i > 0 && s->dirty[i] - s->dirty[i - 1] <= SEASON_BEFORE_US + SEASON_AFTER_US)
			i--;
		ma_dcache_set_season(e, s->periods, s->dirty[i] - SEASON_BEFORE_US,
							 hi + SEASON_AFTER_US + (int64) s->reach * USECS_PER_SEC,
							 s->sts, s->svals, s->sn);
	}
	ma_dcache_trim_season(e, hi - SEASON_BEFORE_US);
}

/* One series' detection. */
typedef struct SeriesJob
{
	HeapTuple	tup;
	TupleDesc	desc;
	Verdicts   *v;
	int64		evaluated;
	Series		s;
} SeriesJob;

static void
series_job(void *arg)
{
	SeriesJob  *job = (SeriesJob *) arg;

	series_read(&job->s, job->tup, job->desc);
	job->evaluated = series_evaluate(&job->s, job->v);
}

/*
 * Consecutive series judged in one subtransaction: those of jobs[0..n),
 * up to the one after which the verdicts waiting reach FLUSH_POINTS (done
 * says how many).
 */
typedef struct SeriesGroup
{
	SeriesJob	jobs[GROUP_SERIES];
	int			n;
	int			done;
	Verdicts   *v;
} SeriesGroup;

static void
group_job(void *arg)
{
	SeriesGroup *g = (SeriesGroup *) arg;

	for (g->done = 0; g->done < g->n;)
	{
		series_job(&g->jobs[g->done++]);
		if (g->v->n >= FLUSH_POINTS)
			break;
	}
}

/* Keeps what a judged series' next pass needs, or forgets what it held. */
static void
series_done(SeriesJob *job, bool ok, bool hold)
{
	if (!hold)
		return;
	if (ok)
		series_hold(&job->s);
	else
		ma_dcache_remove(SPI_getvalue(job->tup, job->desc, 1));
}

/*
 * Judges the series of rows [row, row + n) of a fetch, one group in one
 * subtransaction; returns how many it judged (fewer than n when the
 * verdicts waiting reach FLUSH_POINTS).  When one of them fails, the group
 * is rolled back and its series judged again one per subtransaction, so
 * that only the one that failed is recorded and leaves no verdict behind.
 */
static int
judge_group(SeriesGroup *g, SPITupleTable *tt, uint64 row, int n,
			TimestampTz last_closed, bool hold, int64 *evaluated)
{
	int			before = g->v->n;

	g->n = n;
	for (int k = 0; k < n; k++)
	{
		g->jobs[k].tup = tt->vals[row + k];
		g->jobs[k].desc = tt->tupdesc;
		g->jobs[k].v = g->v;
		g->jobs[k].evaluated = 0;
	}
	if (ma_try_isolated(group_job, g))
	{
		for (int k = 0; k < g->done; k++)
		{
			*evaluated += g->jobs[k].evaluated;
			series_done(&g->jobs[k], true, hold);
		}
		return g->done;
	}

	g->v->n = before;
	for (int k = 0; k < n; k++)
	{
		SeriesJob  *job = &g->jobs[k];
		int			start = g->v->n;
		bool		ok;

		job->evaluated = 0;
		ok = ma_run_isolated(series_job, job, SPI_getvalue(job->tup, job->desc, 1),
							 "detection", last_closed);
		if (ok)
			*evaluated += job->evaluated;
		else
			g->v->n = start;
		series_done(job, ok, hold);
		if (g->v->n >= FLUSH_POINTS)
			return k + 1;
	}
	return n;
}

/*
 * Evaluates every row that needs it and whose minute is at or before
 * last_closed; returns the number of points judged (points with too little
 * history are marked done without a verdict and are not counted).
 */
int64
ma_evaluate_pending(TimestampTz last_closed)
{
	MemoryContext cxt;
	MemoryContext series_cxt;
	MemoryContext old;
	Datum		args[7];
	Portal		portal;
	Verdicts	v = {0};
	SeriesGroup *g;
	int64		evaluated = 0;
	bool		hold;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly evaluate",
								ALLOCSET_DEFAULT_SIZES);
	series_cxt = AllocSetContextCreate(cxt, "metric_anomaly series",
									   ALLOCSET_DEFAULT_SIZES);
	v.cxt = AllocSetContextCreate(cxt, "metric_anomaly verdicts",
								  ALLOCSET_DEFAULT_SIZES);
	g = MemoryContextAllocZero(cxt, sizeof(SeriesGroup));
	g->v = &v;

	args[0] = TimestampTzGetDatum(last_closed);
	args[1] = Int32GetDatum(ma_window);
	args[2] = Int32GetDatum(MA_SEASON_HALF * MA_SEASON_STEP_S);
	args[3] = Int32GetDatum(MA_SEASON_STEP_S);
	args[4] = Int32GetDatum(MA_SEASONS_BACK);
	args[5] = Int32GetDatum(MA_ROBUST_WINDOW);
	/* before the cursor's snapshot (detect_cache_sql.c) */
	hold = ma_detect_cache_begin();
	args[6] = Int32GetDatum(hold ? SEASON_PREFETCH_S : 0);
	portal = open_pending(args);

	for (;;)
	{
		SPITupleTable *tt;
		uint64		nrows;

		SPI_cursor_fetch(portal, true, FETCH_SERIES);
		/* writing verdicts runs statements, which reset these globals */
		nrows = SPI_processed;
		tt = SPI_tuptable;
		if (nrows == 0)
			break;
		for (uint64 row = 0; row < nrows;)
		{
			old = MemoryContextSwitchTo(series_cxt);
			row += judge_group(g, tt, row, (int) Min(nrows - row, GROUP_SERIES),
							   last_closed, hold, &evaluated);
			MemoryContextSwitchTo(old);
			MemoryContextReset(series_cxt);

			if (v.n >= FLUSH_POINTS)
			{
				verdicts_flush(&v);
				MemoryContextReset(v.cxt);
				v.points = NULL;
				v.cap = 0;
			}
		}
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	verdicts_flush(&v);
	if (hold)
		ma_detect_cache_end();

	MemoryContextDelete(cxt);
	return evaluated;
}
