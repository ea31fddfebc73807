/*
 * sketch_sql.c
 *		SQL interface of the quantile sketch (sketch.c): the aggregates
 *		sketch(float8) and sketch_union(bytea), sketch_merge(bytea, bytea)
 *		and sketch_quantile(bytea, float8).  No SPI.
 *
 * The aggregates keep an MaSketch in the aggregate context and serialise it
 * once, in the final function (which leaves the state intact, so a window
 * or a hashed aggregate may call it more than once).
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "pg_compat.h"
#include "sketch.h"

PG_FUNCTION_INFO_V1(metric_anomaly_sketch_add);
PG_FUNCTION_INFO_V1(metric_anomaly_sketch_union_add);
PG_FUNCTION_INFO_V1(metric_anomaly_sketch_final);
PG_FUNCTION_INFO_V1(metric_anomaly_sketch_merge);
PG_FUNCTION_INFO_V1(metric_anomaly_sketch_quantile);

static MaSketch *
read_sketch(bytea *b)
{
	return ma_sketch_deserialize(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
}

static bytea *
write_sketch(const MaSketch *s)
{
	Size		len = ma_sketch_serialized_size(s);
	bytea	   *out = palloc(VARHDRSZ + len);

	SET_VARSIZE(out, VARHDRSZ + len);
	ma_sketch_serialize(s, VARDATA(out));
	return out;
}

/* The state of the calling aggregate, created in its context when NULL. */
static MaSketch *
agg_state(FunctionCallInfo fcinfo)
{
	MemoryContext aggcxt;
	MemoryContext old;
	MaSketch   *s;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "sketch transition function called outside an aggregate");
	if (!PG_ARGISNULL(0))
		return (MaSketch *) PG_GETARG_POINTER(0);
	old = MemoryContextSwitchTo(aggcxt);
	s = ma_sketch_create();
	MemoryContextSwitchTo(old);
	return s;
}

/* sketch(value float8): NULLs are skipped, NaN and infinities refused. */
Datum
metric_anomaly_sketch_add(PG_FUNCTION_ARGS)
{
	MaSketch   *s = agg_state(fcinfo);
	MemoryContext aggcxt;
	MemoryContext old;
	double		v;

	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(s);
	v = PG_GETARG_FLOAT8(1);
	if (!isfinite(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a sketch cannot hold NaN or infinity")));
	AggCheckCallContext(fcinfo, &aggcxt);
	old = MemoryContextSwitchTo(aggcxt);
	ma_sketch_add(s, v);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

/* sketch_union(sketch bytea): NULLs are skipped. */
Datum
metric_anomaly_sketch_union_add(PG_FUNCTION_ARGS)
{
	MaSketch   *s = agg_state(fcinfo);
	MemoryContext aggcxt;
	MemoryContext old;
	MaSketch   *other;

	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(s);
	other = read_sketch(PG_GETARG_BYTEA_PP(1));
	AggCheckCallContext(fcinfo, &aggcxt);
	old = MemoryContextSwitchTo(aggcxt);
	ma_sketch_merge(s, other);
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

/* Final function of both aggregates: NULL when no value was added. */
Datum
metric_anomaly_sketch_final(PG_FUNCTION_ARGS)
{
	MaSketch   *s;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	s = (MaSketch *) PG_GETARG_POINTER(0);
	if (s->count == 0)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(write_sketch(s));
}

/* sketch_merge(a, b): the sketch of both; a NULL side is empty. */
Datum
metric_anomaly_sketch_merge(PG_FUNCTION_ARGS)
{
	MaSketch   *s;

	if (PG_ARGISNULL(0) && PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0))
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	s = read_sketch(PG_GETARG_BYTEA_PP(0));
	ma_sketch_merge(s, read_sketch(PG_GETARG_BYTEA_PP(1)));
	PG_RETURN_BYTEA_P(write_sketch(s));
}

/* sketch_quantile(sketch, q): q in [0, 1]; NULL for an empty sketch. */
Datum
metric_anomaly_sketch_quantile(PG_FUNCTION_ARGS)
{
	double		q = PG_GETARG_FLOAT8(1);
	MaSketch   *s;

	if (!(q >= 0.0 && q <= 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quantile must be between 0 and 1"),
				 errhint("Use 0.95 for the 95th percentile.")));
	s = read_sketch(PG_GETARG_BYTEA_PP(0));
	if (s->count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(ma_sketch_quantile(s, q));
}
