/*
 * metric_fold.h
 *		Folding a batch of events into the metric definitions in memory.
 *
 * Pure computation, no SPI: metrics.c loads the definitions, feeds the
 * batch's events as the scan returns them, and writes back what the fold
 * collected (points, skipped events, business keys) in the batch's
 * transaction.
 */
#ifndef MA_METRIC_FOLD_H
#define MA_METRIC_FOLD_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "payload.h"
#include "sketch.h"

typedef enum MaMetricAgg
{
	MA_AGG_COUNT,
	MA_AGG_SUM,
	MA_AGG_AVG,
	MA_AGG_MIN,
	MA_AGG_MAX,
	MA_AGG_QUANTILE,
	MA_AGG_RATE
} MaMetricAgg;

/* Why an event was skipped (the reasons of metric_skipped_events). */
typedef enum MaSkipReason
{
	MA_SKIP_MISSING,
	MA_SKIP_NON_NUMERIC,
	MA_SKIP_WRONG_TYPE,
	MA_SKIP_DUPLICATE,
	MA_SKIP_NREASONS
} MaSkipReason;

extern const char *const ma_skip_reason_names[MA_SKIP_NREASONS];

/* One base definition (not a ratio or backlog), as the fold reads it. */
typedef struct MaMetricDef
{
	char	   *name;
	MaPath		event_types;
	MaMetricAgg agg;
	double		threshold;		/* rate only */
	MaPath		value_path;		/* n = 0 for count */
	MaPath		dimensions;
	Jsonb	   *filter;			/* NULL: none */
	int64		resolution;		/* microseconds */
	MaPath		business_key;	/* n = 0: none */
	int			value_slot;		/* definitions with equal value paths share one */
	/* what the fold skipped, per reason */
	int64		skipped[MA_SKIP_NREASONS];
	int64		skipped_last_id[MA_SKIP_NREASONS];
} MaMetricDef;

/* A series point's key: (definition, dimension values, bucket). */
typedef struct MaMetricPointKey
{
	int			def;			/* index into the fold's definitions */
	const char *dims;			/* encoded dimension values (see metric_fold.c) */
	int			dimslen;
	TimestampTz bucket;
} MaMetricPointKey;

/* One series point of the batch, with its mergeable state. */
typedef struct MaMetricPoint
{
	MaMetricPointKey key;
	int			series;			/* index into the batch's series; -1: _other */
	int64		count;
	double		sum;
	double		min;
	double		max;
	int64		within;			/* values <= threshold (rates) */
	MaSketch   *sketch;			/* quantiles only, else NULL */
} MaMetricPoint;

/* A keyed event the batch holds back until its key is known to be new. */
typedef struct MaKeyedEvent
{
	int			def;
	char	   *key;			/* NUL-terminated */
	int64		id;
	TimestampTz ts;
	MaMetricPointKey point;		/* where it goes when its key is new */
	double		value;
} MaKeyedEvent;

/* A series (definition, dimension values) the batch has points of. */
typedef struct MaMetricSeries
{
	int			def;
	const char *dims;			/* as in MaMetricPointKey */
	int			dimslen;
} MaMetricSeries;

typedef struct MaMetricFold MaMetricFold;

extern MaMetricFold *ma_metric_fold_create(MemoryContext cxt, MaMetricDef *defs,
										   int ndefs);
extern bool ma_metric_fold_reads(MaMetricFold *fold, const char *type, int len);
extern void ma_metric_fold_event(MaMetricFold *fold, const char *type, int len,
								 TimestampTz ts, int64 id, Jsonb *payload);
extern MaKeyedEvent *ma_metric_fold_keyed(MaMetricFold *fold, int *n);
extern void ma_metric_fold_admit(MaMetricFold *fold, MaKeyedEvent *ev, bool fresh);
extern MaMetricSeries *ma_metric_fold_series(MaMetricFold *fold, int *n);
extern MaMetricPoint **ma_metric_fold_points(MaMetricFold *fold, const bool *overflow,
											 uint32 *n);
extern MaMetricDef *ma_metric_fold_defs(MaMetricFold *fold, int *n);
extern Jsonb *ma_metric_fold_dims_jsonb(MaMetricFold *fold, const MaMetricSeries *s);

#endif							/* MA_METRIC_FOLD_H */
