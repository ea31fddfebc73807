/*
 * backtest.c
 *		The SQL functions detect_series() and backtest(): a series replayed
 *		through the worker's detection and alerting code (replay.c).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "detect_sql.h"
#include "replay.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(metric_anomaly_detect_series);
PG_FUNCTION_INFO_V1(metric_anomaly_backtest);

#define OUT_COLUMNS 9

/* The caller's tuplestore for a materialized result. */
static Tuplestorestate *
start_result(FunctionCallInfo fcinfo, TupleDesc *desc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	Tuplestorestate *store;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	*desc = CreateTupleDescCopy(*desc);
	store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = *desc;
	return store;
}

static void
put_double(Datum *values, bool *nulls, int col, double d, bool have)
{
	nulls[col] = !have || !isfinite(d);
	values[col] = nulls[col] ? (Datum) 0 : Float8GetDatum(d);
}

/* Judges one point and appends its row. */
static void
emit_point(MaReplay *r, Tuplestorestate *store, TupleDesc desc, int n,
		   TimestampTz t, bool isnull, double value, bool keep)
{
	MaVerdict	v;
	MaEpisodeEvent ev = ma_replay_point(r, t, isnull, value, &v);
	Datum		values[OUT_COLUMNS];
	bool		nulls[OUT_COLUMNS];
	const char *alert = ma_episode_event_name(ev);

	if (!keep)
		return;
	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(n);
	values[1] = TimestampTzGetDatum(t);
	put_double(values, nulls, 2, value, !isnull);
	put_double(values, nulls, 3, v.expected, v.judged);
	put_double(values, nulls, 4, v.lower, v.judged);
	put_double(values, nulls, 5, v.upper, v.judged);
	put_double(values, nulls, 6, v.score, v.judged);
	values[7] = BoolGetDatum(v.is_anomaly);
	nulls[7] = isnull;
	nulls[8] = alert == NULL;
	values[8] = alert ? CStringGetTextDatum(alert) : (Datum) 0;
	tuplestore_putvalues(store, desc, values, nulls);
}

static void
too_many_points(int64 n)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("too many points to judge at once: " INT64_FORMAT, n),
			 errdetail("At most %d points are judged in one call.", MA_REPLAY_MAX_POINTS),
			 errhint("Split the series into shorter ranges.")));
}

/*
 * detect_series(ts timestamptz[], value float8[], settings jsonb): one row
 * per element, in input order, judged as a stream (replay.c).
 */
Datum
metric_anomaly_detect_series(PG_FUNCTION_ARGS)
{
	ArrayType  *ts_array = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *value_array = PG_GETARG_ARRAYTYPE_P(1);
	Jsonb	   *settings = PG_GETARG_JSONB_P(2);
	MaDetectSettings s;
	Datum	   *ts;
	bool	   *ts_nulls;
	Datum	   *vals;
	bool	   *val_nulls;
	int			nts;
	int			nvals;
	TupleDesc	desc;
	Tuplestorestate *store;
	MaReplay	r;

	if (ARR_NDIM(ts_array) > 1 || ARR_NDIM(value_array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("ts and value must be one-dimensional arrays")));
	ma_detect_settings_defaults(&s);
	ma_detect_settings_apply(&s, settings);

	deconstruct_array(ts_array, TIMESTAMPTZOID, sizeof(TimestampTz),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ts, &ts_nulls, &nts);
	deconstruct_array(value_array, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &vals, &val_nulls, &nvals);
	if (nts != nvals)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("ts and value have different lengths: %d and %d", nts, nvals),
				 errdetail("Each value needs the timestamp of its point.")));
	if (nts > MA_REPLAY_MAX_POINTS)
		too_many_points(nts);
	for (int i = 0; i < nts; i++)
	{
		if (ts_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("ts contains a NULL at position %d", i + 1),
					 errdetail("Every point needs a timestamp; a NULL value (not timestamp) marks a gap.")));
		if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(ts[i])))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ts contains an infinite timestamp at position %d", i + 1)));
		if (!val_nulls[i] && !isfinite(DatumGetFloat8(vals[i])))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value contains a NaN or infinite value at position %d", i + 1),
					 errhint("Replace it with NULL, which is a gap.")));
	}

	store = start_result(fcinfo, &desc);
	ma_replay_init(&r, &s, nts);
	for (int i = 0; i < nts; i++)
	{
		CHECK_FOR_INTERRUPTS();
		emit_point(&r, store, desc, i + 1, DatumGetTimestampTz(ts[i]),
				   val_nulls[i], val_nulls[i] ? 0 : DatumGetFloat8(vals[i]), true);
	}
	return (Datum) 0;
}

/* History a verdict at since may use: the window and the seasons back. */
static Interval *
warm_up(const MaDetectSettings *s)
{
	int64		us = (int64) ma_detect_window(s) * 60 * USECS_PER_SEC;

	if (s->method == MA_METHOD_ROBUST && (s->daily || s->weekly))
		us = Max(us, (int64) MA_SEASONS_BACK * (s->weekly ? MA_WEEK_S : MA_DAY_S) * USECS_PER_SEC +
				 (int64) MA_SEASON_HALF * MA_SEASON_STEP_S * USECS_PER_SEC);
	{
		Interval   *iv = palloc0(sizeof(Interval));

		iv->time = us;
		return iv;
	}
}

static MaStatement metric_settings_stmt = {
	"SELECT metric_anomaly.series_settings($1)",
	1, {TEXTOID}
};

static MaStatement backtest_rows_stmt = {
	"SELECT a.metric_timestamp, a.metric_value"
	"  FROM metric_anomaly.aggregated_metrics a"
	" WHERE a.metric_name = $1 AND a.metric_timestamp >= $2 - $4"
	"   AND a.metric_timestamp < $3"
	" ORDER BY a.metric_timestamp",
	4, {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INTERVALOID}
};

/*
 * backtest(metric_name, since, until, settings): the stored minutes of a
 * metric in [since, until) replayed with its settings (series_settings():
 * its definition's detection, its metric_anomaly.metrics row) overridden
 * by settings; the minutes before since
 * that a verdict may use are read as history, and alerting starts idle at
 * since.
 */
Datum
metric_anomaly_backtest(PG_FUNCTION_ARGS)
{
	Datum		name = PG_GETARG_DATUM(0);
	TimestampTz since = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz until = PG_GETARG_TIMESTAMPTZ(2);
	Jsonb	   *settings = PG_GETARG_JSONB_P(3);
	MaDetectSettings s;
	Datum		args[4];
	TupleDesc	desc;
	Tuplestorestate *store;
	MaReplay	r;
	uint64		nrows;
	int			n = 0;
	int			ret;

	if (TIMESTAMP_NOT_FINITE(since) || TIMESTAMP_NOT_FINITE(until) || until <= since)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backtest needs finite since < until")));
	if ((until - since) / (60 * USECS_PER_SEC) > MA_REPLAY_MAX_POINTS)
		too_many_points((until - since) / (60 * USECS_PER_SEC));
	ma_detect_settings_defaults(&s);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	if (ma_execute(&metric_settings_stmt, &name, NULL, SPI_OK_SELECT, 0) == 1)
	{
		bool		isnull;

		ma_detect_settings_apply(&s, DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0],
																  SPI_tuptable->tupdesc, 1, &isnull)));
	}
	ma_detect_settings_apply(&s, settings);

	args[0] = name;
	args[1] = TimestampTzGetDatum(since);
	args[2] = TimestampTzGetDatum(until);
	args[3] = PointerGetDatum(warm_up(&s));
	nrows = ma_execute(&backtest_rows_stmt, args, NULL, SPI_OK_SELECT, 0);
	if (nrows > (uint64) MA_REPLAY_MAX_POINTS * 2)
		too_many_points((int64) nrows);

	store = start_result(fcinfo, &desc);
	ma_replay_init(&r, &s, (int) nrows);
	for (uint64 i = 0; i < nrows; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];
		TimestampTz t = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		double		v = DatumGetFloat8(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		bool		keep = t >= since;

		if (!keep)
		{
			/* history: judged for the state it builds, alerting idle */
			MaVerdict	verdict;

			(void) ma_replay_point(&r, t, false, v, &verdict);
			ma_episode_init(&r.st);
			continue;
		}
		CHECK_FOR_INTERRUPTS();
		emit_point(&r, store, desc, ++n, t, false, v, true);
	}
	SPI_finish();
	return (Datum) 0;
}
